//! `quire-server`: see `quire-server --help`.

use clap::Parser;
use quire_backend::{Config, Server};
use tracing_subscriber::EnvFilter;

// Counts live heap bytes for `--max-memory-bytes` and `quire_heap_bytes`.
#[global_allocator]
static ALLOCATOR: quire_backend::memory::Counting = quire_backend::memory::Counting;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Logs go to stderr; stdout carries only the `listening on` line scripts wait for.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let mut config = Config::parse();
    if let Some(path) = config.auth_secret_file.take() {
        match std::fs::read_to_string(&path) {
            Ok(text) if !text.trim().is_empty() => {
                config.auth_secret = Some(text.trim().to_string())
            }
            Ok(_) => {
                eprintln!(
                    "quire-server: {} is empty: put the token-signing secret in it",
                    path.display()
                );
                return std::process::ExitCode::FAILURE;
            }
            Err(err) => {
                eprintln!(
                    "quire-server: cannot read --auth-secret-file {}: {err}",
                    path.display()
                );
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    let listen = config.listen;
    let database = redact(&config.database_url);
    let server = match Server::new(config).await {
        Ok(server) => server,
        Err(err) => {
            eprintln!("quire-server: cannot open the database {database}: {err}");
            eprintln!("check --database-url / QUIRE_DATABASE_URL (sqlite:PATH or postgres://user@host/db) and that the database is running");
            return std::process::ExitCode::FAILURE;
        }
    };
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(err) => {
            eprintln!("quire-server: cannot listen on {listen}: {err}");
            eprintln!("choose another address with --listen HOST:PORT (or QUIRE_LISTEN)");
            return std::process::ExitCode::FAILURE;
        }
    };
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    tracing::info!(%addr, %database, "quire-server listening: open http://{addr}/ (WebSocket at ws://{addr}/ws/DOC)");
    // Tests and scripts read this line to learn the port when started with port 0.
    println!("listening on {addr}");
    if let Err(err) = server.serve(listener, shutdown_signal()).await {
        eprintln!("quire-server: {err}");
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Hides a password in a database URL before it is logged.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}
