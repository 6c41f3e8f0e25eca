//! A real concurrent editing session (three agents, `clownschool`) delivered out of causal
//! order, each agent's updates over its own connection: first all of the last agent's updates
//! (which build on the others'), then a kill -9, then the other agents' updates interleaved
//! round-robin without waiting for their dependencies. The server must hold updates until what
//! they build on arrives, keep them durably meanwhile, and end with exactly `endContent`, also
//! after restarts.

use std::time::{Duration, Instant};

use quire_tests::client::update_frame;
use quire_tests::trace::{load_trace_updates, merged_text, TraceUpdates};
use quire_tests::{both_stores, trace_path, Client, RawConn, StoreKind, TestServer};

const TRACE: &str = "concurrent/clownschool.json.gz";
const CONVERGE: Duration = Duration::from_secs(60);

both_stores!(trace_out_of_order, 150);

async fn trace_updates() -> TraceUpdates {
    let path = trace_path(TRACE);
    assert!(
        path.exists(),
        "{} is missing (set QUIRE_TRACES_DIR to the traces directory)",
        path.display()
    );
    tokio::task::spawn_blocking(move || {
        let updates = load_trace_updates(&path).unwrap_or_else(|e| panic!("{e}"));
        updates
            .verify()
            .unwrap_or_else(|e| panic!("replaying {} locally: {e}", path.display()));
        updates
    })
    .await
    .expect("trace replay panicked")
}

async fn connect_agents(server: &TestServer, doc: &str, n: usize) -> Vec<RawConn> {
    let mut conns = Vec::new();
    for _ in 0..n {
        conns.push(
            RawConn::connect(&server.ws_url(doc))
                .await
                .expect("agent connection"),
        );
    }
    conns
}

async fn trace_out_of_order(kind: StoreKind) {
    // Build the updates while the server starts.
    let (updates, mut server) = tokio::join!(trace_updates(), TestServer::start(kind, &[]));
    let doc = "clownschool";
    let n = updates.num_agents;
    assert!(n >= 2, "a concurrent trace has several agents");
    let last = n - 1;
    let started = Instant::now();

    // Phase 1: the last agent sends everything it typed before anyone else says a word. Its
    // updates build on the others', so the server can integrate little or nothing of it: it
    // must hold them, durably.
    let conns = connect_agents(&server, doc, n).await;
    let by_agent = updates.by_agent();
    for update in &by_agent[last] {
        conns[last].send_binary(update_frame(update));
    }
    conns[last].sync_barrier(CONVERGE).await;
    let partial = merged_text(by_agent[last].iter().copied()).unwrap();
    assert_ne!(partial, updates.end_content);
    let early = Client::connect(&server.ws_url(doc)).await;
    assert_eq!(
        early.text(),
        partial,
        "with only agent {last}'s updates the text is what they integrate to on their own"
    );
    drop(early);
    drop(conns);

    // The held updates survive kill -9 only through the op log.
    server.kill9();
    server.restart().await;

    // Phase 2: every other agent's updates over its own connection, round-robin.
    let conns = connect_agents(&server, doc, n).await;
    let order: Vec<(usize, &[u8])> = updates
        .round_robin()
        .into_iter()
        .filter(|(agent, _)| *agent != last)
        .collect();
    for (agent, update) in &order {
        conns[*agent].send_binary(update_frame(update));
    }
    for conn in &conns {
        conn.flush().await;
    }

    let reader = Client::connect(&server.ws_url(doc)).await;
    // An agent closed by the server would have dropped the rest of its updates: say so at
    // once rather than wait for a text that cannot come.
    let deadline = Instant::now() + CONVERGE;
    while reader.text() != updates.end_content && Instant::now() < deadline {
        for (agent, conn) in conns.iter().enumerate() {
            if let Some(close) = conn.closed() {
                panic!(
                    "agent {agent}'s connection was closed mid-send: {close:?}\n{}",
                    server.log_tail()
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    reader
        .wait_for_text(&updates.end_content, Duration::ZERO)
        .await;
    eprintln!(
        "{}: {} updates from {n} agents converged in {:.1} s (agent {last} sent its {} updates first: they integrated to {} chars alone)",
        kind.name(),
        updates.updates.len(),
        started.elapsed().as_secs_f64(),
        by_agent[last].len(),
        partial.chars().count()
    );
    for (agent, conn) in conns.iter().enumerate() {
        assert_eq!(
            conn.closed(),
            None,
            "agent {agent}'s connection was closed\n{}",
            server.log_tail()
        );
    }
    for conn in &conns {
        conn.sync_barrier(CONVERGE).await;
    }
    drop(reader);
    drop(conns);

    // kill -9: the op log (and any snapshot taken meanwhile) must rebuild the same text.
    server.kill9();
    server.restart().await;
    let after_crash = Client::connect(&server.ws_url(doc)).await;
    assert_eq!(
        after_crash.text(),
        updates.end_content,
        "text after kill -9 and restart"
    );
    drop(after_crash);

    // SIGTERM: the final snapshot must hold it too.
    server.stop().await;
    server.restart().await;
    let after_stop = Client::connect(&server.ws_url(doc)).await;
    assert_eq!(
        after_stop.text(),
        updates.end_content,
        "text after SIGTERM and restart"
    );
}
