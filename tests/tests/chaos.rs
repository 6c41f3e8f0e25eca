//! Real processes under fire: quire-server on PostgreSQL, three Rust clients and one stock JS
//! Yjs client (yjs + y-websocket under node) typing random edits over real WebSockets with
//! random disconnects, while the server is killed with SIGKILL and restarted at random moments
//! (several times per run). A read-only observer witnesses what the server relayed: after each
//! restart, everything it had received is in the restarted server. At the end everyone
//! converges and nothing any client typed or saw is lost. Seed: `QUIRE_TEST_SEED` (printed).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quire_tests::chaos::{missing, random_editor, reconnect, state_of, JsChaos};
use quire_tests::{Client, Rng, StoreKind, TestServer};

const KILLS: usize = 4;
const RUST_EDITORS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_chaos_on_postgres_loses_nothing() {
    quire_tests::bounded(Duration::from_secs(90), chaos()).await
}

async fn chaos() {
    let started = Instant::now();
    let mut rng = Rng::from_env("kill9_chaos");
    let mut server = TestServer::start(StoreKind::Postgres, &["--snapshot-ops", "40"]).await;
    let doc = "chaos";
    let url = server.ws_url(doc);
    let deadline = || Instant::now() + Duration::from_secs(30);

    let mut observer = Client::connect(&url).await;
    let stop = Arc::new(AtomicBool::new(false));
    let edits = Arc::new(AtomicU64::new(0));
    let editors: Vec<_> = (0..RUST_EDITORS)
        .map(|_| {
            tokio::spawn(random_editor(
                url.clone(),
                rng.next_u64(),
                stop.clone(),
                edits.clone(),
            ))
        })
        .collect();
    let js = JsChaos::spawn(&server.ws_base_url(), doc, rng.next_u64(), 400);

    for kill in 0..KILLS {
        tokio::time::sleep(Duration::from_millis(300 + rng.below(900) as u64)).await;
        server.kill9();
        observer.wait_closed(Duration::from_secs(10)).await;
        let seen = state_of(observer.doc());
        server.restart_same_port().await;
        // Before anyone resends anything: is what the observer saw in the restarted server?
        let fresh = Client::connect(&url).await;
        if let Some(lost) = missing(&fresh.encode_state(), &seen) {
            panic!("after kill {kill}: the observer had seen {lost} that the server lost");
        }
        drop(fresh);
        let observer_doc = observer.doc().clone();
        drop(observer);
        observer = reconnect(&url, observer_doc, deadline()).await;
    }

    stop.store(true, Ordering::Relaxed);
    let mut rust = Vec::new();
    for e in editors {
        rust.push(e.await.expect("editor panicked"));
    }
    let report = js.finish(Duration::from_secs(40)).await;

    // Everyone converges on the server's text, which holds everything anyone typed or saw.
    let check = |what: String, state: Vec<u8>| {
        let url = url.clone();
        async move {
            let end = Instant::now() + Duration::from_secs(20);
            loop {
                let server_view = Client::connect(&url).await;
                match missing(&server_view.encode_state(), &state) {
                    None => return server_view,
                    Some(lost) if Instant::now() > end => {
                        panic!("the server lacks {lost} of {what}")
                    }
                    Some(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                }
            }
        }
    };
    check("the JS client".into(), report.state.clone()).await;
    for (k, c) in rust.iter().enumerate() {
        check(format!("Rust editor {k}"), c.encode_state()).await;
    }
    let final_view = check("the observer".into(), observer.encode_state()).await;
    let text = final_view.text();
    for (k, c) in rust.iter().enumerate() {
        c.wait_for_text(&text, Duration::from_secs(20)).await;
        assert!(
            c.closed().is_none(),
            "editor {k} was disconnected at the end"
        );
    }
    observer.wait_for_text(&text, Duration::from_secs(20)).await;
    assert_eq!(
        report.text, text,
        "the JS client's text differs from the server's"
    );
    // And it is durable: one more kill -9, and a fresh load has it all.
    server.kill9();
    server.restart_same_port().await;
    let after = Client::connect(&url).await;
    assert_eq!(after.text(), text, "the text changed across a last kill -9");
    eprintln!(
        "kill9_chaos: {KILLS} kills + 1, {} Rust edits, {} JS edits ({} JS reconnects), final text {} chars, 0 losses, {:.1} s",
        edits.load(Ordering::Relaxed),
        report.edits,
        report.reconnects,
        text.chars().count(),
        started.elapsed().as_secs_f64()
    );
}
