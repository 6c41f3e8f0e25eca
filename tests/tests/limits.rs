//! Abuse limits trip as configured, with a clear error or close code, while the server keeps
//! serving everyone else; `/metrics` counts each.

use std::time::Duration;

use quire_backend::protocol::close;
use quire_tests::client::{client_doc, update_frame, TEXT_NAME};
use quire_tests::http::metric;
use quire_tests::{both_stores, poll_until, Client, RawConn, StoreKind, TestServer};
use tokio_tungstenite::tungstenite;
use yrs::{ReadTxn, StateVector, Text, Transact};

const WAIT: Duration = Duration::from_secs(10);

both_stores!(document_size_limit, 60);

async fn limit_hits(server: &TestServer, limit: &str) -> f64 {
    let body = server.get("/metrics").await.body;
    metric(
        &body,
        &format!("quire_limit_hits_total{{limit=\"{limit}\"}}"),
    )
}

async fn ws_refusal(url: &str) -> u16 {
    match RawConn::connect(url).await {
        Ok(_) => panic!("{url}: the upgrade was accepted"),
        Err(tungstenite::Error::Http(resp)) => resp.status().as_u16(),
        Err(other) => panic!("{url}: {other}"),
    }
}

/// Two clients on `doc` still edit together.
async fn still_serving(server: &TestServer, doc: &str, text: &str) {
    let a = Client::connect(&server.ws_url(doc)).await;
    let b = Client::connect(&server.ws_url(doc)).await;
    a.push(text);
    b.wait_until("the edit is relayed", WAIT, |t| t.ends_with(text))
        .await;
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_ip() {
    let server = TestServer::start(StoreKind::Sqlite, &["--max-connections-per-ip", "3"]).await;
    let url = server.ws_url("per-ip");
    let first = Client::connect(&url).await;
    let _second = Client::connect(&url).await;
    let _third = RawConn::connect(&url).await.unwrap();
    assert_eq!(ws_refusal(&url).await, 429);
    assert_eq!(ws_refusal(&server.ws_url("other")).await, 429);
    assert_eq!(limit_hits(&server, "connections_per_ip").await, 2.0);
    // The open ones keep working; a closed one frees its slot.
    first.push("still here");
    first.close().await;
    let again = poll_until("a slot frees up", WAIT, || async {
        RawConn::connect(&url).await.ok()
    })
    .await;
    again.sync_barrier(WAIT).await;
    // REST is not a WebSocket connection.
    assert_eq!(server.get("/readyz").await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_rate_and_size() {
    let server = TestServer::start(
        StoreKind::Sqlite,
        &[
            "--max-messages-per-sec",
            "20",
            "--message-burst",
            "50",
            "--max-message-bytes",
            "4096",
        ],
    )
    .await;
    // Honest typing: 40 keystrokes at 25 ms apart (40 messages a second for a second, within
    // the burst) go through.
    let typist = Client::connect(&server.ws_url("rate")).await;
    let watcher = Client::connect(&server.ws_url("rate")).await;
    for i in 0..40 {
        typist.push(&(i % 10).to_string());
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    watcher
        .wait_until("40 keystrokes arrive", WAIT, |t| t.chars().count() == 40)
        .await;
    assert!(typist.closed().is_none());

    // A flood is closed with 4429; the others go on.
    let flood = RawConn::connect(&server.ws_url("rate")).await.unwrap();
    for _ in 0..200 {
        flood.send_binary(vec![3u8]); // awareness query
    }
    let closed = flood.wait_closed(WAIT).await;
    assert_eq!(closed.code, Some(close::RATE_LIMITED), "{closed:?}");
    assert!(closed.reason.contains("messages per second"), "{closed:?}");
    typist.push("!");
    watcher
        .wait_until("edit after the flood", WAIT, |t| t.ends_with('!'))
        .await;
    assert!(limit_hits(&server, "message_rate").await >= 1.0);

    // A message over the size limit: 1009.
    let big = RawConn::connect(&server.ws_url("rate")).await.unwrap();
    big.send_binary(update_frame(&vec![0u8; 10_000]));
    let closed = big.wait_closed(WAIT).await;
    assert_eq!(closed.code, Some(close::MESSAGE_TOO_BIG), "{closed:?}");
    assert!(limit_hits(&server, "message_size").await >= 1.0);
    still_serving(&server, "rate-2", "after").await;

    let body = server.get("/metrics").await.body;
    assert!(metric(&body, "quire_updates_in_total") >= 41.0, "{body}");
    assert!(metric(&body, "quire_updates_out_total") >= 41.0, "{body}");
    assert!(metric(&body, "quire_bytes_in_total") > 0.0);
    assert!(metric(&body, "quire_oplog_append_seconds_count") >= 1.0);
    assert!(metric(&body, "quire_broadcast_seconds_count") >= 1.0);
    assert!(metric(&body, "quire_connections_total") >= 6.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_in_memory_and_body_size() {
    let server = TestServer::start(
        StoreKind::Sqlite,
        &["--max-documents", "2", "--max-body-bytes", "1024"],
    )
    .await;
    let one = Client::connect(&server.ws_url("one")).await;
    let two = Client::connect(&server.ws_url("two")).await;
    let metrics = server.get("/metrics").await.body;
    assert_eq!(metric(&metrics, "quire_documents_open"), 2.0);
    assert_eq!(ws_refusal(&server.ws_url("three")).await, 503);
    assert!(limit_hits(&server, "documents").await >= 1.0);
    // The open ones are served.
    one.push("one");
    let other = Client::connect(&server.ws_url("one")).await;
    other.wait_for_text("one", WAIT).await;
    two.push("two");

    // A body over --max-body-bytes: 413, counted.
    let big = "x".repeat(2000);
    let r = server
        .request(
            "PUT",
            "/api/documents/one/text",
            &[("Content-Type", "text/plain")],
            big.as_bytes(),
        )
        .await;
    assert_eq!(r.status, 413, "{r:?}");
    assert!(limit_hits(&server, "body_size").await >= 1.0);
    assert_eq!(server.text("one").await, "one");
}

/// At `--max-documents`, the document idle longest unloads at once to make room (nothing is
/// lost: it reloads from the store); only documents in use make the server refuse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_documents_make_room() {
    let server = TestServer::start(StoreKind::Sqlite, &["--max-documents", "2"]).await;
    // Five documents through REST, two open at most: each request evicts the idlest.
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(server.create_document(&format!("doc {i}")).await);
    }
    for round in 0..2 {
        for (i, id) in ids.iter().enumerate() {
            let r = server
                .send_json(
                    "POST",
                    &format!("/api/documents/{id}/edits"),
                    &serde_json::json!({ "edits": [{ "pos": 0, "delete": 0, "insert": "+" }] }),
                )
                .await;
            assert_eq!(r.status, 200, "edit {i} in round {round}: {r:?}");
        }
    }
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(server.text(id).await, format!("++doc {i}"));
    }
    let metrics = server.get("/metrics").await.body;
    assert!(metric(&metrics, "quire_documents_open") <= 2.0, "{metrics}");
    assert_eq!(limit_hits(&server, "documents").await, 0.0);

    // Two documents with live connections are in use: a third is refused, over REST and
    // WebSocket, with a message saying what to do.
    let one = Client::connect(&server.ws_url(&ids[0])).await;
    let two = Client::connect(&server.ws_url(&ids[1])).await;
    one.wait_for_text("++doc 0", WAIT).await;
    two.wait_for_text("++doc 1", WAIT).await;
    let r = server.get(&format!("/api/documents/{}/text", ids[2])).await;
    assert_eq!(r.status, 503, "{r:?}");
    assert!(r.body.contains("--max-documents"), "{}", r.body);
    assert_eq!(ws_refusal(&server.ws_url(&ids[3])).await, 503);
    assert!(limit_hits(&server, "documents").await >= 2.0);

    // One closes: its document becomes idle and makes room, with its edits kept.
    one.push(" online");
    poll_until("the edit is stored", WAIT, || async {
        (server
            .get(&format!("/api/documents/{}/text", ids[0]))
            .await
            .body
            == "++doc 0 online")
            .then_some(())
    })
    .await;
    one.close().await;
    poll_until("a third document opens", WAIT, || async {
        (server
            .get(&format!("/api/documents/{}/text", ids[2]))
            .await
            .status
            == 200)
            .then_some(())
    })
    .await;
    assert_eq!(server.text(&ids[2]).await, "++doc 2");
    assert_eq!(server.text(&ids[0]).await, "++doc 0 online");
    two.push("!");
    let three = Client::connect(&server.ws_url(&ids[1])).await;
    three.wait_for_text("++doc 1!", WAIT).await;
}

fn foreign_update(text: &str) -> Vec<u8> {
    let doc = client_doc();
    let t = doc.get_or_insert_text(TEXT_NAME);
    t.push(&mut doc.transact_mut(), text);
    let update = doc
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    update
}

async fn document_size_limit(kind: StoreKind) {
    let server = TestServer::start(kind, &["--max-document-bytes", "4000"]).await;
    let url = server.ws_url("sized");
    let a = Client::connect(&url).await;
    let b = Client::connect(&url).await;
    a.push(&"small ".repeat(50));
    b.wait_until("300 chars", WAIT, |t| t.chars().count() == 300)
        .await;
    // A paste that would pass the limit is refused with permission-denied; nothing changes.
    a.push(&"🦀".repeat(2000));
    poll_until("the writer is told", WAIT, || async {
        (!a.permission_denied().is_empty()).then_some(())
    })
    .await;
    assert!(
        a.permission_denied()[0].contains("size limit"),
        "{:?}",
        a.permission_denied()
    );
    assert!(a.closed().is_none(), "a refused update does not close");
    // Small edits from others still go through.
    b.push("ok");
    poll_until("the small edit is stored", WAIT, || async {
        let t = server.text("sized").await;
        t.ends_with("ok").then_some(t)
    })
    .await;
    assert!(!server.text("sized").await.contains('🦀'));

    // REST: text and update import over the limit are 413 document-too-large.
    let r = server
        .request(
            "PUT",
            "/api/documents/sized/text",
            &[("Content-Type", "text/plain")],
            "y".repeat(5000).as_bytes(),
        )
        .await;
    assert_eq!(r.status, 413, "{r:?}");
    assert_eq!(r.json()["type"], "urn:quire:problem:document-too-large");
    let r = server
        .request(
            "POST",
            "/api/documents/sized/update",
            &[("Content-Type", "application/octet-stream")],
            &foreign_update(&"z".repeat(5000)),
        )
        .await;
    assert_eq!(r.status, 413, "{r:?}");
    assert!(!server.text("sized").await.contains('y'));
    assert!(limit_hits(&server, "document_size").await >= 3.0);
    still_serving(&server, "unsized", &"big is fine here ".repeat(100)).await;
}

/// Sockets that never send a request are closed after `--header-timeout-secs`, and at most
/// `--max-connections` sockets (WebSockets included) are open at once: past that the server
/// waits for one to close instead of running out of descriptors. Open WebSockets are not
/// touched by the request-head timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sockets_are_closed_and_sockets_are_capped() {
    use tokio::io::AsyncReadExt;
    let server = TestServer::start(
        StoreKind::Sqlite,
        &["--max-connections", "4", "--header-timeout-secs", "1"],
    )
    .await;
    let url = server.ws_url("capped");
    let a = Client::connect(&url).await;
    let b = Client::connect(&url).await;
    // Two WebSockets hold two slots; two silent sockets take the rest.
    let mut silent = Vec::new();
    for _ in 0..2 {
        silent.push(tokio::net::TcpStream::connect(server.addr()).await.unwrap());
    }
    // Every silent socket is closed by the server (EOF or reset), none by this test.
    for (i, socket) in silent.iter_mut().enumerate() {
        let mut buf = [0u8; 64];
        match tokio::time::timeout(WAIT, socket.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {}
            Ok(Ok(n)) => panic!("silent socket {i} was sent {n} bytes"),
            Err(_) => panic!("silent socket {i} still open after {WAIT:?}"),
        }
    }
    // Served once the silent sockets are gone; both limits were counted.
    let metrics = server.get("/metrics").await.body;
    assert!(
        metric(&metrics, "quire_limit_hits_total{limit=\"header_timeout\"}") >= 2.0,
        "{metrics}"
    );
    assert!(
        metric(&metrics, "quire_limit_hits_total{limit=\"connections\"}") >= 1.0,
        "{metrics}"
    );
    // The WebSockets outlived the timeout and still relay.
    a.push("still here");
    b.wait_until("relayed after the timeouts", WAIT, |t| t == "still here")
        .await;
    assert!(a.closed().is_none() && b.closed().is_none());
    a.close().await;
    b.close().await;
    still_serving(&server, "capped-2", "after").await;
}

/// `n` one-character inserts at the start of the text, each from its own client id
/// (`first_client`, `first_client + 1`, …): all concurrent, all siblings at one position.
fn piled_inserts(n: u64, first_client: u64) -> Vec<u8> {
    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8 & 0x7f) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    let mut update = Vec::new();
    varint(n, &mut update);
    for client in first_client..first_client + n {
        // One block of client `client` at clock 0: a string item (4) with no origins, in the
        // root text, holding "x".
        update.push(1);
        varint(client, &mut update);
        update.extend_from_slice(&[0, 4, 1, TEXT_NAME.len() as u8]);
        update.extend_from_slice(TEXT_NAME.as_bytes());
        update.extend_from_slice(&[1, b'x']);
    }
    update.push(0);
    update
}

/// Concurrent inserts piled at one position cost each batch more than the last (YATA compares
/// every new one with its siblings). The connection sending them is closed (1008) once their
/// work far exceeds what their size explains; what it sent is kept, and the document and its
/// other clients go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piled_up_concurrent_inserts_close_the_sender_not_the_document() {
    const BATCH: u64 = 2000;
    let server = TestServer::start(StoreKind::Sqlite, &[]).await;
    let url = server.ws_url("piled");
    let watcher = Client::connect(&url).await;
    let raw = RawConn::connect(&url).await.unwrap();
    let mut sent = 0;
    let info = loop {
        assert!(
            sent < 30,
            "{sent} batches accepted; the sender was never closed"
        );
        let before = raw.frames_received();
        raw.send_binary(update_frame(&piled_inserts(
            BATCH,
            1_000_000 + sent * BATCH,
        )));
        sent += 1;
        raw.send_binary(quire_tests::client::sync_step1_frame(
            &StateVector::default(),
        ));
        let closed = poll_until(
            "the batch answered or the sender closed",
            Duration::from_secs(120),
            || async {
                match raw.closed() {
                    Some(info) => Some(Some(info)),
                    None => (raw.frames_received() > before).then_some(None),
                }
            },
        )
        .await;
        if let Some(info) = closed {
            break info;
        }
    };
    eprintln!("closed after {sent} batches of {BATCH}: {}", info.reason);
    assert_eq!(info.code, Some(close::POLICY_VIOLATION), "{info:?}");
    assert!(info.reason.contains("one position"), "{info:?}");
    assert!(
        sent >= 2,
        "closed after the first batch, which costs little"
    );
    let metrics = server.get("/metrics").await.body;
    assert_eq!(
        metric(&metrics, "quire_limit_hits_total{limit=\"update_work\"}"),
        1.0
    );
    // Everything it sent before the close is there, for a new client and over REST.
    let fresh = Client::connect(&url).await;
    let text = fresh.text();
    assert!(text.chars().all(|c| c == 'x'), "{text:?}");
    assert!(
        (text.len() as u64).is_multiple_of(BATCH) && text.len() as u64 >= 2 * BATCH,
        "{} chars",
        text.len()
    );
    assert_eq!(server.get("/api/documents/piled/text").await.body, text);
    // The honest watcher was not closed, and its edits still go through.
    assert!(watcher.closed().is_none());
    watcher.insert(0, "!");
    fresh
        .wait_until("the watcher's edit arrives", WAIT, |t| {
            t.starts_with('!') || t.contains('!')
        })
        .await;
}

/// `--max-memory-bytes` holds the server's heap: past it, opening another document waits for
/// an idle one to unload and is refused (503) while every open document is in use. Once the
/// big document's client leaves, the next document opens (the big one unloads).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_budget_refuses_new_documents_until_idle_ones_unload() {
    // The heap of a server that has served one small document: the budget's base.
    let probe = TestServer::start(StoreKind::Sqlite, &[]).await;
    still_serving(&probe, "probe", "hello").await;
    let base = metric(&probe.get("/metrics").await.body, "quire_heap_bytes");
    assert!(base > 0.0, "the binary counts its heap");
    drop(probe);
    let budget = (base as u64 + (24 << 20)).to_string();
    let server = TestServer::start(StoreKind::Sqlite, &["--max-memory-bytes", &budget]).await;
    let url = server.ws_url("big");
    let big = Client::connect(&url).await;
    // Text in 1 MiB lines until the heap passes the budget.
    let line = format!("{}\n", "lorem ipsum dolor sit amet ".repeat(38_000));
    let mut added = 0;
    loop {
        let heap = metric(&server.get("/metrics").await.body, "quire_heap_bytes");
        if heap > budget.parse::<f64>().unwrap() {
            break;
        }
        assert!(
            added < 60,
            "the heap stayed at {heap} under {budget} after {added} MiB"
        );
        let body = serde_json::json!({"edits": [{"pos": 0, "insert": line}]}).to_string();
        let r = server
            .request(
                "POST",
                "/api/documents/big/edits",
                &[("Content-Type", "application/json")],
                body.as_bytes(),
            )
            .await;
        assert_eq!(r.status, 200, "{r:?}");
        added += 1;
    }
    eprintln!("heap base {base} bytes, budget {budget}, passed after {added} MiB of text");
    // In use and over budget: another document is refused before the upgrade.
    let refused = ws_refusal(&server.ws_url("another")).await;
    assert_eq!(refused, 503);
    let metrics = server.get("/metrics").await.body;
    assert!(metric(&metrics, "quire_limit_hits_total{limit=\"memory\"}") >= 1.0);
    // The big document's client leaves: the next document makes it unload and opens.
    big.close().await;
    still_serving(&server, "another", "fits now").await;
    let heap = metric(&server.get("/metrics").await.body, "quire_heap_bytes");
    eprintln!("heap after the big document unloaded: {heap} bytes");
}

/// While a document is busy integrating a costly update, a client that joins gets what is
/// committed from the store after `--join-wait-ms` instead of waiting for the actor; the rest
/// follows once the actor is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_joining_a_busy_document_gets_the_committed_state_at_once() {
    const PILE: u64 = 8000;
    let server = TestServer::start(StoreKind::Sqlite, &["--join-wait-ms", "50"]).await;
    let url = server.ws_url("busy");
    let raw = RawConn::connect(&url).await.unwrap();
    // A pile of concurrent inserts at one position (cheap into an empty spot), committed.
    raw.send_binary(update_frame(&piled_inserts(PILE, 1_000_000)));
    raw.sync_barrier(WAIT).await;
    // As many again next to them: seconds of work for the document's actor.
    let messages = || async {
        metric(
            &server.get("/metrics").await.body,
            "quire_messages_in_total",
        )
    };
    let before = messages().await;
    raw.send_binary(update_frame(&piled_inserts(PILE, 2_000_000)));
    poll_until("the costly update is read", WAIT, || async {
        (messages().await > before).then_some(())
    })
    .await;
    // Joining now waits behind it; the stored state comes first.
    let started = std::time::Instant::now();
    let fresh = Client::connect(&url).await;
    let synced_in = started.elapsed();
    let text = fresh.text();
    eprintln!("synced in {synced_in:?} with {} chars", text.len());
    assert_eq!(
        text.len() as u64,
        PILE,
        "the committed pile, not yet the second"
    );
    assert!(server.log().contains("sending the stored state"));
    // Other documents are served meanwhile: the costly update is off the runtime's workers.
    still_serving(&server, "elsewhere", "meanwhile").await;
    assert_eq!(
        fresh.text().len() as u64,
        PILE,
        "still integrating the second pile"
    );
    // Then the rest, once the actor is free.
    fresh
        .wait_until("the second pile arrives", Duration::from_secs(120), |t| {
            t.len() as u64 == 2 * PILE
        })
        .await;
}
