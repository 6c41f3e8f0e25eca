//! `quire`: the terminal editor. See `quire edit --help`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use quire_term::app::{App, Settings};
use quire_term::live::{color_for, parse_hex, Session, User};
use quire_term::net;

#[derive(Parser)]
#[command(
    name = "quire",
    version,
    about = "quire's terminal editor: local files and live quire documents"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Edit a local file, or a live document on a quire server.
    ///
    ///   quire edit notes.txt                         a local file (created when first saved)
    ///   quire edit http://127.0.0.1:8080/DOC         a live document (also …/d/DOC, ws://…/ws/DOC)
    ///   quire edit --server http://HOST:PORT DOC     the same, server and document apart
    Edit {
        /// A file, or the URL of a live document (http://HOST:PORT/DOC).
        target: String,
        /// The quire server (http://HOST:PORT or ws://HOST:PORT/ws); TARGET is then a document id.
        #[arg(long, value_name = "URL")]
        server: Option<String>,
        /// Live mode: keep a local copy of the document in FILE (written as it changes, on
        /// Ctrl-S and on quit).
        #[arg(long, value_name = "FILE")]
        save: Option<PathBuf>,
        /// An access token, for a server started with --auth-secret (also `?token=` in the URL).
        #[arg(long, env = "QUIRE_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Your name, as collaborators see it next to your cursor.
        #[arg(long, env = "QUIRE_NAME")]
        name: Option<String>,
        /// Your colour as #rrggbb (default: picked from your name).
        #[arg(long, env = "QUIRE_COLOR", value_name = "#RRGGBB")]
        color: Option<String>,
        /// Columns per tab stop.
        #[arg(long, env = "QUIRE_TAB_WIDTH", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=32))]
        tab_width: u16,
    },
}

fn main() -> ExitCode {
    let Command::Edit {
        target,
        server,
        save,
        token,
        name,
        color,
        tab_width,
    } = Cli::parse().command;
    let name = name
        .or_else(|| std::env::var("USER").ok())
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| "terminal".into());
    let color = match color {
        Some(c) if parse_hex(&c).is_some() => c.to_lowercase(),
        Some(c) => {
            eprintln!("quire: --color {c}: expected #rrggbb");
            return ExitCode::from(2);
        }
        None => color_for(&name).to_string(),
    };
    let settings = Settings {
        tab_width: tab_width as usize,
        user: User { name, color },
    };
    let live = match &server {
        Some(server) => Some(net::doc_url(server, &target).map(|url| (url, target.clone()))),
        None if target.starts_with("http://")
            || target.starts_with("https://")
            || target.starts_with("ws://")
            || target.starts_with("wss://") =>
        {
            Some(net::split_doc_url(&target))
        }
        None => None,
    };
    let live = live.map(|r| {
        r.map(|(url, doc)| match &token {
            Some(t) => (net::with_token(&url, t), doc),
            None => (url, doc),
        })
    });
    let app = match live {
        Some(Ok((url, doc))) => {
            let session = Session::new(url, doc, settings.user.clone());
            App::open_live(session, save, settings)
        }
        Some(Err(e)) => {
            eprintln!("quire: {e}");
            return ExitCode::from(2);
        }
        None => {
            if save.is_some() {
                eprintln!("quire: --save is for live documents; a file is saved with Ctrl-S");
                return ExitCode::from(2);
            }
            match App::open_file(&PathBuf::from(&target), settings) {
                Ok(app) => app,
                Err(e) => {
                    eprintln!("quire: cannot open {target}: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    };
    match quire_term::runner::run(app) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quire: {e}");
            ExitCode::FAILURE
        }
    }
}
