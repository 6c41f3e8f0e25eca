//! kill -9 in the middle of a stream of edits: whatever a collaborator had received before the
//! crash is in the restarted server's state (the server commits to the op log before it
//! relays), and the writer's unsent edits arrive when it reconnects with its document.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use quire_tests::trace::merged_text;
use quire_tests::{both_stores, Client, Rng, StoreKind, TestServer};

const WAIT: Duration = Duration::from_secs(15);

both_stores!(kill9_mid_stream_loses_nothing_seen, 60);

async fn kill9_mid_stream_loses_nothing_seen(kind: StoreKind) {
    let mut server = TestServer::start(kind, &[]).await;
    let doc = "crash";
    let writer = Arc::new(Client::connect(&server.ws_url(doc)).await);
    let reader = Client::connect(&server.ws_url(doc)).await;
    let mut rng = Rng::from_env(&format!("kill9_mid_stream ({})", kind.name()));
    let kill_after = Duration::from_millis(100 + rng.below(400) as u64);

    let stop = Arc::new(AtomicBool::new(false));
    let editor = {
        let (writer, stop) = (writer.clone(), stop.clone());
        let mut rng = Rng::new(rng.next_u64());
        tokio::spawn(async move {
            let mut edits = 0u32;
            while !stop.load(Ordering::Relaxed) && edits < 50_000 {
                if edits % 7 == 6 {
                    let (r1, r2) = (rng.next_u64(), rng.next_u64());
                    writer.edit_with(|text| {
                        let len = text.chars().count();
                        (len > 10).then(|| {
                            let pos = (r1 % (len as u64 - 4)) as usize;
                            (pos, 1 + (r2 % 3) as usize, String::new())
                        })
                    });
                } else {
                    writer.push(&format!("{edits} ✓ 🦀 ü "));
                }
                edits += 1;
                if edits.is_multiple_of(3) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                } else {
                    tokio::task::yield_now().await;
                }
            }
            edits
        })
    };

    reader
        .wait_until("the reader received edits", WAIT, |t| !t.is_empty())
        .await;
    tokio::time::sleep(kill_after).await;
    server.kill9();
    // The reader's connection ends; everything it received before is applied by then.
    reader.wait_closed(WAIT).await;
    stop.store(true, Ordering::Relaxed);
    let edits = editor.await.expect("editor panicked");

    let seen_state = reader.encode_state();
    let seen_sv = reader.state_vector();
    let seen_text = reader.text();
    assert!(!seen_text.is_empty());

    server.restart().await;
    let url = server.ws_url(doc);
    let fresh = Client::connect(&url).await;
    let fresh_sv = fresh.state_vector();
    let fresh_text = fresh.text();
    eprintln!(
        "{}: killed after {kill_after:?}; writer made {edits} edits, the reader had {} chars, the restarted server {} chars",
        kind.name(),
        seen_text.chars().count(),
        fresh_text.chars().count()
    );

    // Everything the reader saw is there: its state vector is dominated...
    for (client, clock) in seen_sv.iter() {
        assert!(
            fresh_sv.get(client) >= *clock,
            "the reader had client {client}'s ops up to clock {clock}, the restarted server only up to {}",
            fresh_sv.get(client)
        );
    }
    // ...and merging what the reader had (deletions included) changes nothing.
    let merged = merged_text([fresh.encode_state().as_slice(), seen_state.as_slice()]).unwrap();
    assert_eq!(
        merged, fresh_text,
        "the reader had edits the restarted server lost"
    );
    // The server holds nothing the writer did not type.
    let writer_text = writer.text();
    let merged = merged_text([
        writer.encode_state().as_slice(),
        fresh.encode_state().as_slice(),
    ])
    .unwrap();
    assert_eq!(merged, writer_text, "the server has edits nobody typed");

    // The writer reconnects with its document: what never reached the server arrives now.
    let writer_doc = writer.doc().clone();
    drop(Arc::try_unwrap(writer).ok().expect("editor task ended"));
    let rejoined = Client::try_connect_with_doc(&url, writer_doc)
        .await
        .unwrap_or_else(|e| panic!("writer cannot reconnect: {e}"));
    assert_eq!(rejoined.text(), writer_text);
    fresh.wait_for_text(&writer_text, WAIT).await;
    let check = Client::connect(&url).await;
    assert_eq!(check.text(), writer_text);
    assert_eq!(check.state_vector(), rejoined.state_vector());
}
