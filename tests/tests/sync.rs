//! Sync through a real quire-server: concurrent Rust clients, the stock JS client, restarts and
//! idle unloading, each on SQLite and on PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use quire_backend::protocol::close;
use quire_tests::js::JsClient;
use quire_tests::trace::merged_text;
use quire_tests::{both_stores, poll_until, Client, Rng, StoreKind, TestServer};

const WAIT: Duration = Duration::from_secs(15);

/// Pieces the random editors type: multi-byte, non-BMP, combining and flag sequences.
const PIECES: &[&str] = &[
    "a", "hé", "ß", "😀", "日本", "𝄞x", "e\u{301}", "🇺🇳", " ", "\n", "🦀🦀", "Ω",
];

both_stores!(concurrent_clients_converge, 60);
both_stores!(stock_js_client_converges, 60);
both_stores!(restart_keeps_text, 60);
both_stores!(idle_document_unloads, 60);

/// Three clients edit the same document at once; they, and a late joiner, end with the text
/// that merging all their edits gives.
async fn concurrent_clients_converge(kind: StoreKind) {
    let server = TestServer::start(kind, &[]).await;
    let url = server.ws_url("converge");
    let mut rng = Rng::from_env("concurrent_clients_converge");
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(Arc::new(Client::connect(&url).await));
    }

    let mut editors = Vec::new();
    for client in &clients {
        let client = client.clone();
        let mut rng = Rng::new(rng.next_u64());
        editors.push(tokio::spawn(async move {
            for step in 0..80 {
                let piece = rng.pick(PIECES).to_string();
                let (r1, r2, r3) = (rng.next_u64(), rng.next_u64(), rng.next_u64());
                client.edit_with(|text| {
                    let len = text.chars().count();
                    if len > 6 && r1 % 4 == 0 {
                        let pos = (r2 % (len as u64 - 1)) as usize;
                        let del = 1 + (r3 % 3).min((len - pos - 1) as u64) as usize;
                        Some((pos, del, String::new()))
                    } else {
                        Some(((r2 % (len as u64 + 1)) as usize, 0, piece))
                    }
                });
                if step % 4 == 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                } else {
                    tokio::task::yield_now().await;
                }
            }
            client.flush().await;
        }));
    }
    for editor in editors {
        editor.await.expect("editor task panicked");
    }

    // Every edit is in its author's own state: merging those is what everyone must reach.
    let states: Vec<Vec<u8>> = clients.iter().map(|c| c.encode_state()).collect();
    let expected = merged_text(states.iter().map(Vec::as_slice)).unwrap();
    assert!(
        expected.chars().count() > 50,
        "suspiciously little text: {expected:?}"
    );
    for client in &clients {
        client.wait_for_text(&expected, WAIT).await;
    }
    let late = Client::connect(&url).await;
    assert_eq!(
        late.text(),
        expected,
        "a late joiner must get the whole text"
    );
    for client in &clients {
        assert_eq!(client.closed(), None);
        assert_eq!(client.protocol_error(), None);
    }
    server.assert_healthy().await;
}

/// The stock JS client (yjs + y-websocket 3) and a Rust client edit around a non-BMP char and
/// each see the other's edits; positions agree in UTF-16 units.
async fn stock_js_client_converges(kind: StoreKind) {
    let server = TestServer::start(kind, &[]).await;
    let doc = "js-interop";
    let rust = Client::connect(&server.ws_url(doc)).await;
    let start = "Grüße 🌍 end";
    rust.push(start);
    rust.flush().await;
    // Make sure the server has it before the JS client syncs, so its insert position is
    // meaningful.
    Client::connect(&server.ws_url(doc))
        .await
        .wait_for_text(start, WAIT)
        .await;

    // UTF-16 offset 8 is right after the globe emoji (2 units).
    let after_js = "Grüße 🌍[js ✓ 𝄞] end";
    let rust_tail = " rust½🦀";
    let final_text = format!("{after_js}{rust_tail}");
    let js = JsClient::spawn(&[
        "--server".into(),
        server.ws_base_url(),
        "--doc".into(),
        doc.into(),
        "--insert".into(),
        "8".into(),
        "[js ✓ 𝄞]".into(),
        "--expect".into(),
        final_text.clone(),
        "--timeout-ms".into(),
        "30000".into(),
    ]);
    rust.wait_for_text(after_js, Duration::from_secs(30)).await;
    rust.push(rust_tail);
    rust.flush().await;
    let js_text = js.final_text(Duration::from_secs(40)).await;
    assert_eq!(js_text, final_text);
    rust.wait_for_text(&final_text, WAIT).await;
    let late = Client::connect(&server.ws_url(doc)).await;
    assert_eq!(late.text(), final_text);

    // And a JS late joiner reads it all.
    let js_late = JsClient::spawn(&[
        "--server".into(),
        server.ws_base_url(),
        "--doc".into(),
        doc.into(),
        "--expect".into(),
        final_text.clone(),
    ]);
    assert_eq!(
        js_late.final_text(Duration::from_secs(30)).await,
        final_text
    );
}

/// Text survives SIGTERM and kill -9 restarts; a clean shutdown closes sockets with 1001.
async fn restart_keeps_text(kind: StoreKind) {
    let mut server = TestServer::start(kind, &[]).await;
    let doc = "restart";
    let a = Client::connect(&server.ws_url(doc)).await;
    let b = Client::connect(&server.ws_url(doc)).await;
    a.push("before restart: ünïcödé 🚀\n");
    a.insert(0, "𝄞 ");
    a.insert(3, "日本語 ");
    a.delete(1, 1);
    let expected = a.text();
    // b seeing it means the server committed it (it relays only what is durable).
    b.wait_for_text(&expected, WAIT).await;

    server.stop().await;
    for (name, client) in [("a", &a), ("b", &b)] {
        let info = client.wait_closed(Duration::from_secs(5)).await;
        assert_eq!(
            info.code,
            Some(close::GOING_AWAY),
            "client {name} closed with {info:?}, expected 1001 on shutdown"
        );
        assert!(!info.reason.is_empty(), "1001 without a reason");
    }

    server.restart().await;
    let c = Client::connect(&server.ws_url(doc)).await;
    assert_eq!(c.text(), expected, "text after a SIGTERM restart");

    c.push("after restart ✓");
    let expected2 = c.text();
    Client::connect(&server.ws_url(doc))
        .await
        .wait_for_text(&expected2, WAIT)
        .await;
    server.kill9();
    server.restart().await;
    let d = Client::connect(&server.ws_url(doc)).await;
    assert_eq!(d.text(), expected2, "text after a kill -9 restart");
    server.assert_healthy().await;
}

/// With `--idle-unload-secs 1` a document nobody has open leaves memory and comes back intact.
async fn idle_document_unloads(kind: StoreKind) {
    let server = TestServer::start(kind, &["--idle-unload-secs", "1"]).await;
    let doc = "idle";
    let a = Client::connect(&server.ws_url(doc)).await;
    a.push("idle text 💤 ünïcödé");
    let expected = a.text();
    let b = Client::connect(&server.ws_url(doc)).await;
    b.wait_for_text(&expected, WAIT).await;
    let ready = server.readyz().await;
    assert_eq!(ready["documents_open"], 1, "readyz: {ready}");
    a.close().await;
    b.close().await;

    poll_until(
        "the idle document is unloaded (readyz documents_open == 0)",
        Duration::from_secs(15),
        || async {
            let ready = server.readyz().await;
            (ready["documents_open"] == 0).then_some(())
        },
    )
    .await;

    let c = Client::connect(&server.ws_url(doc)).await;
    assert_eq!(c.text(), expected, "text after unloading and reloading");
    let ready = server.readyz().await;
    assert_eq!(ready["documents_open"], 1, "readyz: {ready}");
    c.push(" ✓");
    let d = Client::connect(&server.ws_url(doc)).await;
    d.wait_for_text(&format!("{expected} ✓"), WAIT).await;
}
