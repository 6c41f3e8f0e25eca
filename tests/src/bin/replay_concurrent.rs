//! `replay-concurrent TRACE [--server HOST:PORT] [--timeout SECS]`: replays a concurrent editing trace (the
//! clownschool format) through a quire server with one real WebSocket client per agent,
//! honouring `parents`, and checks the server's final text equals `endContent` (exit 0), else
//! exits 1. Without `--server` it starts `quire-server` on a temporary SQLite database.
//!
//!     cargo run -p quire-tests --bin replay-concurrent -- ../shared/traces/concurrent/clownschool.json.gz

use std::time::Duration;

use quire_tests::replay::replay_concurrent;
use quire_tests::{StoreKind, TestServer};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: replay-concurrent TRACE [--server HOST:PORT] [--timeout SECS (600)]";
    let mut trace = None;
    let mut server_addr = None;
    let mut timeout = Duration::from_secs(600);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--server" => server_addr = it.next().cloned(),
            "--timeout" => match it.next().and_then(|t| t.parse::<f64>().ok()) {
                Some(secs) if secs > 0.0 => timeout = Duration::from_secs_f64(secs),
                _ => {
                    eprintln!("--timeout wants a positive number of seconds\n{usage}");
                    std::process::exit(2);
                }
            },
            "-h" | "--help" => {
                println!("{usage}");
                return;
            }
            _ if trace.is_none() => trace = Some(a.clone()),
            _ => {
                eprintln!("{usage}");
                std::process::exit(2);
            }
        }
    }
    let Some(trace) = trace else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let (_server, addr) = match server_addr {
        Some(a) => {
            let a = a
                .trim_start_matches("http://")
                .trim_start_matches("ws://")
                .trim_end_matches('/');
            let addr = tokio::net::lookup_host(a)
                .await
                .ok()
                .and_then(|mut i| i.next())
                .unwrap_or_else(|| {
                    eprintln!("cannot resolve {a}");
                    std::process::exit(2)
                });
            (None, addr)
        }
        None => {
            let s = TestServer::start(StoreKind::Sqlite, &[]).await;
            let addr = s.addr();
            (Some(s), addr)
        }
    };
    let doc = format!(
        "replay-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    );
    match replay_concurrent(trace.as_ref(), addr, &doc, timeout).await {
        Ok(r) if r.matches() => println!(
            "ok: {} transactions of {} agents replayed into {} on {addr} in {:.2} s; final text ({} chars) equals endContent",
            r.txns,
            r.agents,
            r.doc,
            r.elapsed.as_secs_f64(),
            r.final_text.chars().count()
        ),
        Ok(r) => {
            let common = r
                .final_text
                .chars()
                .zip(r.end_content.chars())
                .take_while(|(a, b)| a == b)
                .count();
            eprintln!(
                "MISMATCH: the server's text ({} chars) differs from endContent ({} chars) from char {common}",
                r.final_text.chars().count(),
                r.end_content.chars().count()
            );
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("replay failed: {e}");
            std::process::exit(1);
        }
    }
}
