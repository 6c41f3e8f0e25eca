//! The clownschool concurrent trace (three agents) replayed through the real server on
//! PostgreSQL by the `replay-concurrent` binary: one WebSocket client per agent, each sending a
//! transaction only once the server has relayed it all of that transaction's `parents`; the
//! server's final text must equal `endContent` (the binary exits 0 only then).

use std::time::Duration;

use quire_tests::{bounded, trace_path, StoreKind, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clownschool_through_the_server() {
    // The binary's own timeout comes first, so a stall prints what each agent waits for.
    bounded(Duration::from_secs(240), async {
        let path = trace_path("concurrent/clownschool.json.gz");
        let server = TestServer::start(StoreKind::Postgres, &[]).await;
        let addr = server.addr().to_string();
        let out = tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_replay-concurrent"))
                .arg(&path)
                .arg("--server")
                .arg(addr)
                .args(["--timeout", "200"])
                .output()
        })
        .await
        .unwrap()
        .expect("run replay-concurrent");
        let stdout = String::from_utf8_lossy(&out.stdout);
        eprintln!("{stdout}");
        assert!(
            out.status.success() && stdout.starts_with("ok:"),
            "replay-concurrent failed: {stdout}{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            server.log_tail()
        );
    })
    .await
}
