//! Malformed input costs the sender its connection (with the right close code and a reason),
//! never the server, the document, or the other clients of the document.

use std::time::Duration;

use quire_backend::protocol::close;
use quire_tests::client::{client_doc, update_frame, TEXT_NAME};
use quire_tests::{both_stores, Client, RawConn, StoreKind, TestServer};
use tokio_tungstenite::tungstenite::{self, Message};
use yrs::{ReadTxn, StateVector, Text, Transact};

const WAIT: Duration = Duration::from_secs(10);
const MAX_MESSAGE: usize = 4096;

both_stores!(malformed_input_is_refused, 60);

/// A valid update inserting `text` from a client nobody else knows.
fn foreign_update(text: &str) -> Vec<u8> {
    let doc = client_doc();
    let t = doc.get_or_insert_text(TEXT_NAME);
    t.push(&mut doc.transact_mut(), text);
    let update = doc
        .transact()
        .encode_state_as_update_v1(&StateVector::default());
    update
}

/// An update of one item whose content is a value nested `depth` arrays deep.
fn nested_arrays(depth: usize) -> Vec<u8> {
    // One client, one block, client 1 at clock 0, Any content (8) in root "content", one value.
    let mut update = vec![1, 1, 1, 0, 8, 1, 7];
    update.extend_from_slice(TEXT_NAME.as_bytes());
    update.push(1);
    for _ in 0..depth {
        update.extend_from_slice(&[117, 1]);
    }
    update.extend_from_slice(&[126, 0]);
    update
}

async fn malformed_input_is_refused(kind: StoreKind) {
    let max = MAX_MESSAGE.to_string();
    let server = TestServer::start(kind, &["--max-message-bytes", &max]).await;
    let doc = "malformed";
    let url = server.ws_url(doc);
    let writer = Client::connect(&url).await;
    let watcher = Client::connect(&url).await;
    writer.push("stable ✓ 🦀");
    let mut expected = writer.text();
    watcher.wait_for_text(&expected, WAIT).await;

    let mut valid_then_truncated = update_frame(&foreign_update("EVIL"));
    valid_then_truncated.extend_from_slice(&[0, 2, 0x80]);
    let mut valid_then_unknown_sync = update_frame(&foreign_update("EVIL"));
    valid_then_unknown_sync.extend_from_slice(&[0, 9, 1, 0]);

    let cases: Vec<(&str, Message, u16)> = vec![
        (
            "truncated varint (update length)",
            Message::Binary(vec![0, 2, 0x80].into()),
            close::INVALID_PAYLOAD,
        ),
        (
            "truncated varint (state vector length)",
            Message::Binary(vec![0, 0, 0xff].into()),
            close::INVALID_PAYLOAD,
        ),
        (
            "unknown message tag inside sync",
            Message::Binary(vec![0, 7, 1, 0].into()),
            close::INVALID_PAYLOAD,
        ),
        (
            "garbage update bytes",
            Message::Binary(vec![0, 2, 5, 0xff, 0xff, 0xff, 0xff, 0xff].into()),
            close::INVALID_PAYLOAD,
        ),
        (
            "huge declared length",
            Message::Binary(
                vec![
                    0, 2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 1, 2, 3,
                ]
                .into(),
            ),
            close::INVALID_PAYLOAD,
        ),
        (
            "huge declared length (fits in u32)",
            Message::Binary(vec![0, 2, 0xff, 0xff, 0xff, 0xff, 0x07, 1, 2, 3].into()),
            close::INVALID_PAYLOAD,
        ),
        // Counts claiming far more than the bytes that follow: decoding them used to reserve
        // memory for the claim (~512 MB for the first one) before failing.
        (
            "update claiming 2^28 clients (8 bytes)",
            Message::Binary(vec![0, 2, 5, 0x80, 0x80, 0x80, 0x80, 0x01].into()),
            close::INVALID_PAYLOAD,
        ),
        (
            "SyncStep1 claiming 2^28 clocks",
            Message::Binary(vec![0, 0, 5, 0x80, 0x80, 0x80, 0x80, 0x01].into()),
            close::INVALID_PAYLOAD,
        ),
        (
            "awareness claiming 2^28 states",
            Message::Binary(vec![1, 5, 0x80, 0x80, 0x80, 0x80, 0x01].into()),
            close::INVALID_PAYLOAD,
        ),
        (
            "a value nested 1,000 arrays deep",
            Message::Binary(update_frame(&nested_arrays(1000)).into()),
            close::INVALID_PAYLOAD,
        ),
        (
            "empty binary frame",
            Message::Binary(Vec::new().into()),
            close::INVALID_PAYLOAD,
        ),
        (
            "valid update followed by a truncated message in the same frame",
            Message::Binary(valid_then_truncated.into()),
            close::INVALID_PAYLOAD,
        ),
        (
            "valid update followed by an unknown sync message in the same frame",
            Message::Binary(valid_then_unknown_sync.into()),
            close::INVALID_PAYLOAD,
        ),
        (
            "text frame",
            Message::Text("{\"type\":\"sync\"}".into()),
            close::UNSUPPORTED_DATA,
        ),
        (
            "message over the size limit",
            Message::Binary(update_frame(&vec![7u8; 3 * MAX_MESSAGE]).into()),
            close::MESSAGE_TOO_BIG,
        ),
    ];

    for (i, (name, msg, code)) in cases.into_iter().enumerate() {
        let raw = RawConn::connect(&url)
            .await
            .unwrap_or_else(|e| panic!("{name}: cannot connect: {e}"));
        raw.send(msg);
        let info = raw.try_wait_closed(WAIT).await.unwrap_or_else(|| {
            panic!(
                "{name}: the server did not close the connection within {WAIT:?}\n{}",
                server.log_tail()
            )
        });
        assert_eq!(
            info.code,
            Some(code),
            "{name}: expected close code {code}, got {info:?}\n{}",
            server.log_tail()
        );
        assert!(
            !info.reason.is_empty(),
            "{name}: close {code} without a reason"
        );

        server.assert_healthy().await;
        assert_eq!(watcher.text(), expected, "{name}: the document changed");
        // The honest clients keep working on the same document.
        writer.push(&format!(" #{i}"));
        expected = writer.text();
        watcher.wait_for_text(&expected, WAIT).await;
        assert_eq!(
            writer.closed(),
            None,
            "{name}: the honest writer was closed"
        );
        assert_eq!(
            watcher.closed(),
            None,
            "{name}: the honest watcher was closed"
        );
    }

    // Invalid document ids are refused before the upgrade.
    let long = "x".repeat(129);
    for id in [
        "bad%20id",
        long.as_str(),
        "%C3%A9t%C3%A9",
        "semi;colon",
        "a%2Fb",
    ] {
        match RawConn::connect(&server.ws_url(id)).await {
            Err(tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 400, "document id {id:?}: {response:?}");
                let body = response.body().as_deref().unwrap_or_default();
                assert!(
                    !body.is_empty(),
                    "document id {id:?}: 400 without an explanation"
                );
            }
            Err(other) => panic!("document id {id:?}: expected HTTP 400, got {other}"),
            Ok(_) => panic!("document id {id:?} was accepted"),
        }
    }
    server.assert_healthy().await;

    let fresh = Client::connect(&url).await;
    assert_eq!(
        fresh.text(),
        expected,
        "the document after all the bad input"
    );
    assert!(!expected.contains("EVIL"));
}
