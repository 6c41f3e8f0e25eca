//! Webhooks (issue 15) through a real quire-server on SQLite and PostgreSQL, delivered to a
//! receiver the test runs: created, changed and deleted events in order, signed with
//! HMAC-SHA256, retried after failures, changes carrying their version and the previous
//! event's, and a receiver that never answers holding up neither edits nor the other receiver.

use std::time::Duration;

use quire_backend::webhooks::signature;
use quire_tests::{both_stores, Client, StoreKind, TestServer};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(30);
const SECRET: &str = "webhook-test-secret";

both_stores!(
    webhooks_are_signed_ordered_retried_and_never_block_edits,
    120
);

/// A request the receiver got: its headers (names lowercased) and body.
#[derive(Debug)]
struct Received {
    headers: Vec<(String, String)>,
    body: String,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

/// A webhook receiver on 127.0.0.1: answers the first `failures` requests with 500, the rest
/// with 204, and reports every request. `hang`: accepts and never answers.
async fn receiver(failures: usize, hang: bool) -> (u16, mpsc::UnboundedReceiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut served = 0;
        let mut held = Vec::new();
        while let Ok((mut socket, _)) = listener.accept().await {
            if hang {
                held.push(socket);
                continue;
            }
            let Some(request) = read_request(&mut socket).await else {
                continue;
            };
            let status = if served < failures {
                "500 Internal Server Error"
            } else {
                "204 No Content"
            };
            served += 1;
            let _ = socket
                .write_all(
                    format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .as_bytes(),
                )
                .await;
            let _ = tx.send(request);
        }
    });
    (port, rx)
}

async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<Received> {
    let mut data = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).to_string();
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = data[head_end + 4..].to_vec();
    while body.len() < length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some(Received {
        headers,
        body: String::from_utf8_lossy(&body).to_string(),
    })
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Received>) -> Received {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .expect("no webhook within the wait")
        .expect("receiver stopped")
}

/// The signature the receiver expects (`signature` itself is checked against RFC 4231's
/// vectors in the server's unit tests).
fn sign(body: &str) -> String {
    signature(SECRET, body.as_bytes())
}

async fn webhooks_are_signed_ordered_retried_and_never_block_edits(kind: StoreKind) {
    let (port, mut rx) = receiver(2, false).await;
    let (stuck, _stuck_rx) = receiver(0, true).await;
    let hook = format!("http://127.0.0.1:{port}/hook");
    let stuck = format!("http://127.0.0.1:{stuck}/never");
    let server = TestServer::start(
        kind,
        &[
            "--webhook",
            &hook,
            "--webhook",
            &stuck,
            "--webhook-secret",
            SECRET,
            "--webhook-debounce-ms",
            "200",
        ],
    )
    .await;
    let r = server
        .send_json(
            "POST",
            "/api/documents",
            &json!({"name": "hooked", "text": "a"}),
        )
        .await;
    assert_eq!(r.status, 201, "{r:?}");
    let id = r.json()["id"].as_str().unwrap().to_string();

    // Created: refused twice, delivered on the third attempt, the same delivery each time.
    let mut attempts = Vec::new();
    for _ in 0..3 {
        attempts.push(next(&mut rx).await);
    }
    for (i, a) in attempts.iter().enumerate() {
        assert_eq!(a.header("quire-event"), Some("document.created"));
        assert_eq!(
            a.header("quire-delivery-attempt"),
            Some((i + 1).to_string().as_str())
        );
        assert_eq!(
            a.header("quire-delivery"),
            attempts[0].header("quire-delivery")
        );
        assert_eq!(
            a.header("quire-signature"),
            Some(sign(&a.body).as_str()),
            "signature"
        );
        assert_eq!(a.header("content-type"), Some("application/json"));
    }
    let created = attempts[0].json();
    assert_eq!(
        (created["document"].as_str(), created["name"].as_str()),
        (Some(id.as_str()), Some("hooked"))
    );

    let changed = next(&mut rx).await.json();
    assert_eq!(changed["event"], "document.changed", "{changed}");
    assert_eq!(
        (
            changed["version"].as_i64(),
            changed["previous_version"].as_i64()
        ),
        (Some(1), None)
    );

    // Typing: debounced events, each carrying the previous one's version, ending at the last.
    let ws = Client::connect(&server.ws_url(&id)).await;
    for c in "bcdefghijk".chars() {
        ws.push(&c.to_string());
        ws.flush().await;
    }
    ws.wait_for_text("abcdefghijk", WAIT).await;
    let mut last = 1;
    while last < 11 {
        let e = next(&mut rx).await;
        assert_eq!(e.header("quire-signature"), Some(sign(&e.body).as_str()));
        let e = e.json();
        assert_eq!(e["event"], "document.changed", "{e}");
        assert_eq!(e["previous_version"].as_i64(), Some(last), "{e}");
        last = e["version"].as_i64().unwrap();
        assert!(last > e["previous_version"].as_i64().unwrap(), "{e}");
        // What changed is one request away.
        let diff = server
            .get(&format!(
                "/api/documents/{id}/diff?from={}&to={last}",
                e["previous_version"]
            ))
            .await;
        assert_eq!(diff.status, 200, "{diff:?}");
    }
    assert_eq!(last, 11);

    // The stuck receiver holds up nothing: REST edits are answered as always.
    for i in 0..20 {
        let r = server
            .send_json(
                "POST",
                &format!("/api/documents/{id}/edits"),
                &json!({"edits": [{"pos": 0, "insert": i.to_string()}]}),
            )
            .await;
        assert_eq!(r.status, 200, "{r:?}");
    }
    while last < 31 {
        let e = next(&mut rx).await.json();
        assert_eq!(e["event"], "document.changed", "{e}");
        assert_eq!(e["previous_version"].as_i64(), Some(last), "{e}");
        last = e["version"].as_i64().unwrap();
    }
    assert_eq!(last, 31);

    let r = server
        .request("DELETE", &format!("/api/documents/{id}"), &[], b"")
        .await;
    assert_eq!(r.status, 204);
    let e = next(&mut rx).await.json();
    assert_eq!(
        (e["event"].as_str(), e["document"].as_str()),
        (Some("document.deleted"), Some(id.as_str())),
        "{e}"
    );

    // The receiver reports a request once it has answered it; the server counts the delivery
    // once it has read that answer, a moment later: wait for the counters to catch up.
    let count = |metrics: &str, result: &str| -> u64 {
        let key = format!("quire_webhook_deliveries_total{{result=\"{result}\"}} ");
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {metrics}"))
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let metrics = server.get("/metrics").await.body;
        // Two from the refusals above (and the stuck receiver's once its attempts time out);
        // at least created, changed at 1, 11 and 31, and deleted delivered.
        if count(&metrics, "retried") >= 2 && count(&metrics, "delivered") >= 5 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{metrics}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
