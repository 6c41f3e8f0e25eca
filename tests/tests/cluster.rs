//! Several quire-server processes on one PostgreSQL database (issue 13): every server may write
//! every document. The store numbers each commit's rows under the document row's lock, so no
//! server can drop another's rows, and the tail check carries each server's commits to the
//! others' clients (no bus yet: slower, still correct).

use std::time::Duration;

use quire_backend::document::build_doc;
use quire_backend::mirror::doc_text;
use quire_backend::store::{Loaded, Store};
use quire_tests::server::PgDatabase;
use quire_tests::{Client, StoreKind, TestServer};

const NODES: usize = 3;
const TOKENS: usize = 60;
const WAIT: Duration = Duration::from_secs(30);

/// Issue 13, test 7 (failed before: "op-log sequence numbers already taken", and one server's
/// acknowledged rows silently dropped): three servers open the same new document at the same
/// instant, a writer on each types unique tokens; everyone converges on every token, each
/// server's REST text and a cold load from PostgreSQL have them all, and the op log is dense.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_servers_write_one_new_document() {
    quire_tests::bounded(Duration::from_secs(120), async {
        let pg = PgDatabase::create().await;
        let mut nodes = Vec::new();
        for i in 0..NODES {
            let id = format!("node-{i}");
            nodes.push(
                TestServer::start_on(pg.url(), &["--node-id", &id, "--tail-check-ms", "100"]).await,
            );
        }
        let doc = "cluster-new";
        // Connect all writers at once: each server creates the document and loads it empty.
        let writers = futures_util::future::join_all(nodes.iter().map(|n| {
            let url = n.ws_url(doc);
            async move { Client::connect(&url).await }
        }))
        .await;
        let mut expected = Vec::new();
        for round in 0..TOKENS {
            for (i, w) in writers.iter().enumerate() {
                let token = format!("<n{i}t{round}>");
                w.push(&token);
                expected.push(token);
            }
            if round % 10 == 9 {
                for w in &writers {
                    w.flush().await;
                }
            }
        }
        for w in &writers {
            w.flush().await;
        }
        let has_all = |text: &str| expected.iter().all(|t| text.contains(t.as_str()));
        for (i, w) in writers.iter().enumerate() {
            w.wait_until(&format!("writer {i} has every token"), WAIT, has_all)
                .await;
        }
        let text = writers[0].text();
        for (i, w) in writers.iter().enumerate() {
            assert_eq!(w.text(), text, "writer {i} converged");
        }
        for (i, node) in nodes.iter().enumerate() {
            let rest = node.text(doc).await;
            assert_eq!(
                rest, text,
                "server {i}'s REST text (caught up before answering)"
            );
        }
        let store = Store::connect(pg.url()).await.expect("connect");
        let Loaded::Doc(stored) = store.load(doc, false).await.expect("load") else {
            panic!("the document is missing");
        };
        assert_eq!(
            doc_text(&build_doc(doc, &stored)),
            text,
            "a cold load from PostgreSQL"
        );
        let seqs: Vec<i64> = stored.ops.iter().map(|op| op.seq).collect();
        let last = stored.last_seq();
        assert_eq!(seqs, (1..=last).collect::<Vec<_>>(), "the op log is dense");
        assert_eq!(
            stored.recorded.0, last,
            "the documents row records the last version"
        );
        store.close().await;
        for node in &nodes {
            assert!(
                !node.log().contains("op-log conflict"),
                "no conflicts: {}",
                node.log_tail()
            );
        }
    })
    .await
}

/// Issue 13, test 8 and the REST promise: two servers, no bus. A write acknowledged on one is
/// in the other's REST read at once (reads catch up first), and reaches the other's WebSocket
/// clients through the tail check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_on_one_server_is_read_on_another() {
    quire_tests::bounded(Duration::from_secs(60), async {
        let pg = PgDatabase::create().await;
        let a = TestServer::start_on(pg.url(), &["--tail-check-ms", "100"]).await;
        let b = TestServer::start_on(pg.url(), &["--tail-check-ms", "100"]).await;
        let id = a.create_document("hello").await;
        // Both have it open: a watcher on B.
        let watcher = Client::connect(&b.ws_url(&id)).await;
        watcher.wait_for_text("hello", WAIT).await;
        for i in 0..20 {
            let r = a
                .send_json(
                    "POST",
                    &format!("/api/documents/{id}/edits"),
                    &serde_json::json!({ "edits": [{ "pos": 0, "insert": format!("{i} ") }] }),
                )
                .await;
            assert_eq!(r.status, 200, "{r:?}");
            let version = r.json()["version"].as_i64().unwrap();
            let on_b = b.get(&format!("/api/documents/{id}/text")).await;
            assert!(
                on_b.body.starts_with(&format!("{i} ")),
                "B's REST read misses A's acknowledged write {i}: {:?}",
                on_b.body
            );
            let meta = b.get(&format!("/api/documents/{id}")).await.json();
            assert!(meta["version"].as_i64().unwrap() >= version, "{meta}");
        }
        let expected = a.text(&id).await;
        watcher.wait_for_text(&expected, WAIT).await;
        // And the other way: a WebSocket edit on B reaches A's REST.
        watcher.push(" bye");
        watcher.flush().await;
        let with_bye = format!("{expected} bye");
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let text = a.text(&id).await;
            if text == with_bye {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "A never saw B's edit: {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A delete on A closes B's connections as a delete on B would.
        let r = a
            .request("DELETE", &format!("/api/documents/{id}"), &[], b"")
            .await;
        assert_eq!(r.status, 204, "{r:?}");
        let closed = watcher.wait_closed(WAIT).await;
        assert_eq!(closed.code, Some(4404), "{closed:?}");
    })
    .await
}

/// SQLite serves one process: a second server on the same file refuses to start and says why.
#[tokio::test]
async fn a_second_server_on_one_sqlite_file_is_refused() {
    quire_tests::bounded(Duration::from_secs(30), async {
        let first = TestServer::start(StoreKind::Sqlite, &[]).await;
        let output = std::process::Command::new(quire_tests::server::server_binary())
            .args([
                "--listen",
                "127.0.0.1:0",
                "--database-url",
                first.database_url(),
            ])
            .output()
            .expect("run a second server");
        assert!(!output.status.success(), "the second server started");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("in use by another quire-server") && stderr.contains("PostgreSQL"),
            "{stderr}"
        );
        // The first is unharmed.
        assert_eq!(first.get("/readyz").await.status, 200);
    })
    .await
}
