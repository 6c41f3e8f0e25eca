//! PostgreSQL goes away in the middle of an editing storm and comes back: the server keeps
//! serving (its document actors wait and retry their commits), `/readyz` reports the outage
//! with 503, and once the database is back everything converges and nothing is lost, also
//! across a kill -9 afterwards. The database is a private throwaway cluster of this test's own
//! (data under $TMPDIR/quire-pg-private, a free port): never the machine's shared PostgreSQL.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quire_tests::chaos::{missing, random_editor, PrivateCluster};
use quire_tests::{poll_until, Client, Rng, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_mid_storm_loses_nothing() {
    quire_tests::bounded(Duration::from_secs(120), outage()).await
}

async fn outage() {
    let started = Instant::now();
    let mut rng = Rng::from_env("pg_outage");
    let mut cluster = tokio::task::spawn_blocking(|| {
        let mut c = PrivateCluster::init();
        c.start();
        c
    })
    .await
    .unwrap();
    let mut server = TestServer::start_on(&cluster.url(), &[]).await;
    let doc = "outage";
    let url = server.ws_url(doc);
    let watcher = Client::connect(&url).await;

    let stop = Arc::new(AtomicBool::new(false));
    let edits = Arc::new(AtomicU64::new(0));
    let editors: Vec<_> = (0..3)
        .map(|_| {
            tokio::spawn(random_editor(
                url.clone(),
                rng.next_u64(),
                stop.clone(),
                edits.clone(),
            ))
        })
        .collect();
    watcher
        .wait_until("edits flow", Duration::from_secs(10), |t| {
            t.chars().count() > 20
        })
        .await;
    tokio::time::sleep(Duration::from_millis(200 + rng.below(500) as u64)).await;

    // The database goes away mid-storm.
    let before_outage = edits.load(Ordering::Relaxed);
    cluster = tokio::task::spawn_blocking(move || {
        cluster.stop();
        cluster
    })
    .await
    .unwrap();
    let outage_started = Instant::now();
    poll_until(
        "/readyz reports the outage",
        Duration::from_secs(15),
        || async {
            let r = server.get("/readyz").await;
            (r.status == 503).then_some(())
        },
    )
    .await;
    // Still serving: health is fine, the sockets stay open, editors keep typing.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.assert_healthy().await;
    assert!(server.is_running(), "the server died during the outage");
    assert!(
        watcher.closed().is_none(),
        "the watcher was disconnected: {:?}",
        watcher.closed()
    );
    let during = edits.load(Ordering::Relaxed) - before_outage;
    assert!(during > 0, "editors could not type during the outage");

    cluster = tokio::task::spawn_blocking(move || {
        cluster.start();
        cluster
    })
    .await
    .unwrap();
    let outage = outage_started.elapsed();
    poll_until("/readyz recovers", Duration::from_secs(30), || async {
        let r = server.get("/readyz").await;
        (r.status == 200).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let mut clients = Vec::new();
    for e in editors {
        clients.push(e.await.expect("editor panicked"));
    }

    // Everything anyone typed reached the server and everyone converges.
    let mut text = String::new();
    for (k, c) in clients.iter().enumerate() {
        let state = c.encode_state();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let view = Client::connect(&url).await;
            match missing(&view.encode_state(), &state) {
                None => {
                    text = view.text();
                    break;
                }
                Some(m) if Instant::now() > deadline => panic!("editor {k}: server lacks {m}"),
                Some(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
    for c in &clients {
        c.wait_for_text(&text, Duration::from_secs(20)).await;
    }
    watcher.wait_for_text(&text, Duration::from_secs(20)).await;

    // And it is all durable: kill -9, restart on the same database, compare.
    server.kill9();
    server.restart().await;
    let after = Client::connect(&server.ws_url(doc)).await;
    for (k, c) in clients.iter().enumerate() {
        if let Some(m) = missing(&after.encode_state(), &c.encode_state()) {
            panic!("after the outage and a kill -9, editor {k}'s {m} is lost");
        }
    }
    assert_eq!(after.text(), text);
    eprintln!(
        "pg_outage: 1 outage of {:.1} s; {} edits ({during} during the outage); final text {} chars; 0 losses; {:.1} s",
        outage.as_secs_f64(),
        edits.load(Ordering::Relaxed),
        text.chars().count(),
        started.elapsed().as_secs_f64()
    );
    drop(server);
    drop(cluster);
}
