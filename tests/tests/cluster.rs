//! Several quire-server processes on one PostgreSQL database (issue 13): every server may write
//! every document. The store numbers each commit's rows under the document row's lock, so no
//! server can drop another's rows, and the tail check carries each server's commits to the
//! others' clients (no bus yet: slower, still correct).

use std::time::Duration;

use quire_backend::document::build_doc;
use quire_backend::mirror::doc_text;
use quire_backend::store::{Loaded, Store};
use quire_tests::http::metric;
use quire_tests::server::{BusKind, BusServer, PgDatabase};
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
        assert_dense(&stored);
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

/// Waits until `node`'s `/readyz` reports the bus as `state`.
async fn wait_bus(node: &TestServer, state: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while node.get("/readyz").await.json()["bus"] != state {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the bus never became {state}: {}",
            node.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The stored op log continues the snapshot without a gap and ends at the recorded version.
fn assert_dense(stored: &quire_backend::store::StoredDoc) {
    let first = stored.snapshot.as_ref().map_or(1, |(seq, _)| seq + 1);
    let seqs: Vec<i64> = stored.ops.iter().map(|op| op.seq).collect();
    let last = stored.last_seq();
    assert_eq!(
        seqs,
        (first..=last).collect::<Vec<_>>(),
        "the op log is dense"
    );
    assert_eq!(
        stored.recorded.0, last,
        "the documents row records the last version"
    );
}

fn has_all(expected: &[String]) -> impl Fn(&str) -> bool + '_ {
    move |text: &str| expected.iter().all(|t| text.contains(t.as_str()))
}

/// With a bus: edits cross servers through its hints (the tail check is slowed to once a minute,
/// so it cannot be what carries them), presence crosses servers, and a server killed with -9
/// has its clients' presence removed on the others within a few seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bus_carries_edits_and_presence() {
    bus_carries_edits_and_presence(BusKind::Nats).await
}

/// The same over Redis pub/sub.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_bus_carries_edits_and_presence() {
    bus_carries_edits_and_presence(BusKind::Redis).await
}

async fn bus_carries_edits_and_presence(kind: BusKind) {
    quire_tests::bounded(Duration::from_secs(90), async {
        let pg = PgDatabase::create().await;
        let bus = BusServer::start(kind).await;
        let mut nodes = Vec::new();
        for i in 0..NODES {
            let id = format!("node-{i}");
            nodes.push(
                TestServer::start_on(
                    pg.url(),
                    &[
                        "--node-id",
                        &id,
                        "--bus",
                        &bus.url(),
                        "--tail-check-ms",
                        "60000",
                    ],
                )
                .await,
            );
        }
        for node in &nodes {
            wait_bus(node, "connected").await;
        }
        let doc = "bus-doc";
        let writers = futures_util::future::join_all(nodes.iter().map(|n| {
            let url = n.ws_url(doc);
            async move { Client::connect(&url).await }
        }))
        .await;
        let mut expected = Vec::new();
        for round in 0..20 {
            for (i, w) in writers.iter().enumerate() {
                let token = format!("<n{i}t{round}>");
                w.push(&token);
                expected.push(token);
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        for (i, w) in writers.iter().enumerate() {
            w.flush().await;
            w.wait_until(
                &format!("writer {i} has every token"),
                Duration::from_secs(15),
                has_all(&expected),
            )
            .await;
        }
        // Rows crossed through the bus: applied from hints, with their lag measured. While
        // every node writes, a node may get all its peers' rows as `missed` rows of its own
        // commits instead; a last edit from node 0 alone reaches the others only by the bus.
        writers[0].push("<last>");
        for w in &writers[1..] {
            w.wait_until("the last edit crossed", Duration::from_secs(15), |t| {
                t.contains("<last>")
            })
            .await;
        }
        for node in &nodes[1..] {
            let metrics = node.get("/metrics").await.body;
            assert!(metric(&metrics, "quire_rows_from_peers_total") > 0.0);
            assert!(metric(&metrics, "quire_peer_apply_lag_seconds_count") > 0.0);
        }
        // Presence: a client of node 0 appears on nodes 1 and 2.
        writers[0].set_presence(4242, 1, r#"{"user":{"name":"ann"}}"#);
        for w in &writers[1..] {
            w.wait_presence(
                "ann's presence crossed servers",
                Duration::from_secs(10),
                |p| p.get(&4242).is_some_and(|json| json.contains("ann")),
            )
            .await;
        }
        // kill -9 node 0: its heartbeats stop, and ann's presence goes everywhere else.
        let killed = std::time::Instant::now();
        nodes[0].kill9();
        for w in &writers[1..] {
            w.wait_presence("ann's presence removed", Duration::from_secs(10), |p| {
                !p.contains_key(&4242)
            })
            .await;
        }
        let gone_after = killed.elapsed();
        println!("presence of a killed server's client removed after {gone_after:?}");
        assert!(gone_after < Duration::from_secs(6), "{gone_after:?}");
        // The others go on converging.
        writers[1].push("<after-kill>");
        writers[1].flush().await;
        writers[2]
            .wait_until("the edit after the kill", Duration::from_secs(15), |t| {
                t.contains("<after-kill>")
            })
            .await;
    })
    .await
}

/// A bus that dies or hangs changes nothing but latency: edits keep crossing servers through
/// the tail check, and presence resumes when the bus is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bus_outage_costs_latency_only() {
    bus_outage_costs_latency_only(BusKind::Nats).await
}

/// The same with Redis as the bus (quire reconnects to Redis itself, with backoff).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_bus_outage_costs_latency_only() {
    bus_outage_costs_latency_only(BusKind::Redis).await
}

async fn bus_outage_costs_latency_only(kind: BusKind) {
    quire_tests::bounded(Duration::from_secs(90), async {
        let pg = PgDatabase::create().await;
        let mut bus = BusServer::start(kind).await;
        let args = |id: &'static str| -> Vec<String> {
            vec![
                "--node-id".into(),
                id.into(),
                "--bus".into(),
                bus.url(),
                "--tail-check-ms".into(),
                "200".into(),
            ]
        };
        let a_args = args("a");
        let b_args = args("b");
        let a = TestServer::start_on(
            pg.url(),
            &a_args.iter().map(String::as_str).collect::<Vec<_>>(),
        )
        .await;
        let b = TestServer::start_on(
            pg.url(),
            &b_args.iter().map(String::as_str).collect::<Vec<_>>(),
        )
        .await;
        let doc = "outage";
        let on_a = Client::connect(&a.ws_url(doc)).await;
        let on_b = Client::connect(&b.ws_url(doc)).await;
        let mut expected = Vec::new();
        fn type_some(on_a: &Client, on_b: &Client, expected: &mut Vec<String>, label: &str) {
            for i in 0..10 {
                let (w, name) = if i % 2 == 0 { (on_a, "a") } else { (on_b, "b") };
                let token = format!("<{label}-{name}{i}>");
                w.push(&token);
                expected.push(token);
            }
        }
        type_some(&on_a, &on_b, &mut expected, "before");
        bus.kill9();
        type_some(&on_a, &on_b, &mut expected, "killed");
        on_a.flush().await;
        on_b.flush().await;
        for w in [&on_a, &on_b] {
            w.wait_until("every token with the bus dead", WAIT, has_all(&expected))
                .await;
        }
        bus.restart().await;
        bus.pause(true);
        // A hung bus keeps its connections open: the servers notice their own heartbeats no
        // longer come back, and say so.
        for node in [&a, &b] {
            wait_bus(node, "disconnected").await;
        }
        type_some(&on_a, &on_b, &mut expected, "hung");
        on_a.flush().await;
        on_b.flush().await;
        for w in [&on_a, &on_b] {
            w.wait_until("every token with the bus hung", WAIT, has_all(&expected))
                .await;
        }
        bus.pause(false);
        // Presence resumes once the bus is back.
        on_a.set_presence(777, 1, r#"{"user":{"name":"bo"}}"#);
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut clock = 1;
        while !on_b.presence().contains_key(&777) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "presence never resumed: {}",
                b.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
            // As a client renews its state, until the bus carries it.
            clock += 1;
            on_a.set_presence(777, clock, r#"{"user":{"name":"bo"}}"#);
        }
        assert_eq!(on_a.text(), on_b.text());
    })
    .await
}

/// `--bus` needs PostgreSQL: on SQLite the server refuses to start and says why.
#[tokio::test]
async fn a_bus_on_sqlite_is_refused() {
    quire_tests::bounded(Duration::from_secs(30), async {
        let dir = quire_tests::server::TempDir::new("bus-sqlite");
        let url = format!("sqlite:{}", dir.path().join("q.db").display());
        let output = std::process::Command::new(quire_tests::server::server_binary())
            .args([
                "--listen",
                "127.0.0.1:0",
                "--database-url",
                &url,
                "--bus",
                "nats://127.0.0.1:4222",
            ])
            .output()
            .expect("run the server");
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("needs a PostgreSQL --database-url"),
            "{stderr}"
        );
    })
    .await
}

/// Publishes `messages` on the bus at `url` with NATS's text protocol: a shim standing in for a
/// bus that duplicates, reorders and delays.
async fn publish_raw(url: &str, messages: &[quire_backend::bus::BusMessage]) {
    use tokio::io::AsyncWriteExt;
    let addr = url.trim_start_matches("nats://");
    let mut conn = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to nats");
    let mut out = b"CONNECT {\"verbose\":false}\r\n".to_vec();
    for message in messages {
        let payload = message.encode();
        out.extend_from_slice(format!("PUB quire.doc {}\r\n", payload.len()).as_bytes());
        out.extend_from_slice(&payload);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"PING\r\n");
    conn.write_all(&out).await.expect("publish");
    let mut reply = [0u8; 256];
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        use tokio::io::AsyncReadExt;
        let mut seen = Vec::new();
        while !String::from_utf8_lossy(&seen).contains("PONG") {
            let n = conn.read(&mut reply).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&reply[..n]);
        }
    })
    .await;
}

/// Issue 13, test 5: hints duplicated, reordered, stale and truncated (a shim on the bus
/// replaying real rows out of order while writers type) cause no divergence and no extra row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicated_and_reordered_hints_change_nothing() {
    use quire_backend::bus::BusMessage;
    quire_tests::bounded(Duration::from_secs(90), async {
        let pg = PgDatabase::create().await;
        let nats = BusServer::nats().await;
        let mut nodes = Vec::new();
        for i in 0..2 {
            let id = format!("node-{i}");
            nodes.push(
                TestServer::start_on(
                    pg.url(),
                    &[
                        "--node-id",
                        &id,
                        "--bus",
                        &nats.url(),
                        "--tail-check-ms",
                        "200",
                    ],
                )
                .await,
            );
        }
        let doc = "shim";
        let a = Client::connect(&nodes[0].ws_url(doc)).await;
        let b = Client::connect(&nodes[1].ws_url(doc)).await;
        let store = Store::connect(pg.url()).await.expect("connect");
        let mut expected = Vec::new();
        for round in 0..6 {
            for (i, w) in [&a, &b].into_iter().enumerate() {
                for k in 0..5 {
                    let token = format!("<r{round}w{i}k{k}>");
                    w.push(&token);
                    expected.push(token);
                }
                w.flush().await;
            }
            // Replay what is stored so far, newest first, each hint twice, some claiming a
            // newer version than their rows reach, some with no rows at all.
            let stored = store.ops_between(doc, 0, i64::MAX).await.expect("rows");
            let last = stored.last().map_or(0, |r| r.seq);
            let mut shim = Vec::new();
            for row in stored.iter().rev() {
                let hint = BusMessage::Rows {
                    node: "shim".into(),
                    doc: doc.into(),
                    upto: row.seq,
                    committed_at: quire_backend::bus::unix_millis(),
                    rows: vec![row.clone()],
                };
                shim.push(hint.clone());
                shim.push(hint);
            }
            shim.push(BusMessage::Rows {
                node: "shim".into(),
                doc: doc.into(),
                upto: last + 3,
                committed_at: quire_backend::bus::unix_millis(),
                rows: stored.iter().rev().take(2).rev().cloned().collect(),
            });
            shim.push(BusMessage::Rows {
                node: "shim".into(),
                doc: doc.into(),
                upto: last,
                committed_at: quire_backend::bus::unix_millis(),
                rows: Vec::new(),
            });
            publish_raw(&nats.url(), &shim).await;
        }
        for w in [&a, &b] {
            w.wait_until("every token", WAIT, has_all(&expected)).await;
        }
        let text = a.text();
        assert_eq!(b.text(), text);
        for node in &nodes {
            assert_eq!(node.text(doc).await, text);
        }
        let Loaded::Doc(stored) = store.load(doc, false).await.expect("load") else {
            panic!("missing");
        };
        assert_eq!(doc_text(&build_doc(doc, &stored)), text);
        let seqs: Vec<i64> = stored.ops.iter().map(|op| op.seq).collect();
        assert_eq!(seqs, (1..=stored.last_seq()).collect::<Vec<_>>(), "dense");
        assert_eq!(stored.ops.len(), 60, "one row per push: hints add none");
        store.close().await;
    })
    .await
}

/// A token revoked on one server is refused on the others, and their live sockets using it close
/// (revocations are read from the shared database every second).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_one_server_holds_on_all() {
    const SECRET: &str = "cluster-test-secret-0123456789abcdef";
    quire_tests::bounded(Duration::from_secs(60), async {
        let pg = PgDatabase::create().await;
        let a = TestServer::start_on(pg.url(), &["--auth-secret", SECRET]).await;
        let b = TestServer::start_on(pg.url(), &["--auth-secret", SECRET]).await;
        let bearer = format!("Bearer {SECRET}");
        let json = [
            ("Authorization", bearer.as_str()),
            ("Content-Type", "application/json"),
        ];
        let minted = a
            .request(
                "POST",
                "/api/tokens",
                &json,
                serde_json::json!({"document": "rev", "role": "read-write", "expires_in": 600})
                    .to_string()
                    .as_bytes(),
            )
            .await;
        assert_eq!(minted.status, 201, "{minted:?}");
        let token = minted.json()["token"].as_str().unwrap().to_string();
        let on_b = Client::connect(&format!("{}?token={token}", b.ws_url("rev"))).await;
        let revoked = std::time::Instant::now();
        let r = a
            .request(
                "POST",
                "/api/tokens/revoke",
                &json,
                serde_json::json!({ "token": token }).to_string().as_bytes(),
            )
            .await;
        assert_eq!(r.status, 200, "{r:?}");
        let closed = on_b.wait_closed(WAIT).await;
        assert_eq!(closed.code, Some(4401), "{closed:?}");
        println!(
            "a socket on another server closed {:?} after the revocation",
            revoked.elapsed()
        );
        let with_token = format!("Bearer {token}");
        let r = b
            .request(
                "GET",
                "/api/documents/rev/text",
                &[("Authorization", with_token.as_str())],
                b"",
            )
            .await;
        assert_eq!(r.status, 401, "{r:?}");
    })
    .await
}

/// Issue 13, tests 1 and 2: three servers with a bus behind a load balancer; three Rust editors
/// and a stock JS client typing through it while a random server is killed with -9 and started
/// again, round after round. After each kill, a fresh client (on whichever server the balancer
/// picks) has everything an observer had seen, and the presence of a client of the killed
/// server goes from another server. At the end everyone converges, every server's REST text and
/// a cold load from PostgreSQL hold it all, and the op log is dense. Prints how long each
/// recovery took (BENCHMARKS.md, "Cluster").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_servers_mid_storm_loses_nothing() {
    use quire_tests::balancer::Balancer;
    use quire_tests::chaos::{missing, random_editor, reconnect, state_of, JsChaos};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    const ROUNDS: usize = 20;
    quire_tests::bounded(Duration::from_secs(300), async {
        let mut rng = quire_tests::Rng::from_env("cluster_kill9");
        let pg = PgDatabase::create().await;
        let nats = BusServer::nats().await;
        let mut nodes = Vec::new();
        for i in 0..NODES {
            let id = format!("node-{i}");
            nodes.push(
                TestServer::start_on(
                    pg.url(),
                    &["--node-id", &id, "--bus", &nats.url(), "--snapshot-ops", "40"],
                )
                .await,
            );
        }
        let balancer = Balancer::start(nodes.iter().map(|n| n.addr()).collect()).await;
        let doc = "storm";
        let url = balancer.ws_url(doc);
        let deadline = || std::time::Instant::now() + Duration::from_secs(30);
        let stop = Arc::new(AtomicBool::new(false));
        let edits = Arc::new(AtomicU64::new(0));
        let editors: Vec<_> = (0..3)
            .map(|_| tokio::spawn(random_editor(url.clone(), rng.next_u64(), stop.clone(), edits.clone())))
            .collect();
        let js = JsChaos::spawn(&format!("ws://{}/ws", balancer.addr()), doc, rng.next_u64(), 300);
        let mut observer = reconnect(&url, quire_tests::client::client_doc(), deadline()).await;
        let mut recovered = Vec::new();
        let mut presence_gone = Vec::new();
        for round in 0..ROUNDS {
            tokio::time::sleep(Duration::from_millis(200 + rng.below(500) as u64)).await;
            let victim = rng.below(NODES);
            // A client on the victim publishes presence; one on another server sees it.
            let marker = Client::connect(&nodes[victim].ws_url(doc)).await;
            let watcher = Client::connect(&nodes[(victim + 1) % NODES].ws_url(doc)).await;
            let marker_id = 90_000 + round as u64;
            marker.set_presence(marker_id, 1, r#"{"user":{"name":"marker"}}"#);
            watcher
                .wait_presence("the marker's presence crossed servers", WAIT, |p| {
                    p.contains_key(&marker_id)
                })
                .await;
            let seen = state_of(observer.doc());
            let killed = std::time::Instant::now();
            nodes[victim].kill9();
            let fresh = reconnect(&url, quire_tests::client::client_doc(), deadline()).await;
            if let Some(lost) = missing(&fresh.encode_state(), &seen) {
                panic!("round {round}: after killing server {victim}, the observer had seen {lost} that the cluster lost");
            }
            recovered.push(killed.elapsed());
            drop(fresh);
            watcher
                .wait_presence("the killed server's client's presence removed", WAIT, |p| {
                    !p.contains_key(&marker_id)
                })
                .await;
            presence_gone.push(killed.elapsed());
            drop((marker, watcher));
            nodes[victim].restart_same_port().await;
            if observer.closed().is_some() {
                let doc = observer.doc().clone();
                drop(observer);
                observer = reconnect(&url, doc, deadline()).await;
            }
        }
        stop.store(true, Ordering::Relaxed);
        let mut rust = Vec::new();
        for e in editors {
            rust.push(e.await.expect("editor panicked"));
        }
        let report = js.finish(Duration::from_secs(40)).await;
        // Everything anyone typed or saw is in the cluster; everyone converges on it.
        let mut states = vec![("the JS client".to_string(), report.state.clone())];
        for (k, c) in rust.iter().enumerate() {
            states.push((format!("Rust editor {k}"), c.encode_state()));
        }
        states.push(("the observer".into(), observer.encode_state()));
        let end = std::time::Instant::now() + Duration::from_secs(20);
        let view = loop {
            let view = reconnect(&url, quire_tests::client::client_doc(), deadline()).await;
            let lacking = states.iter().find_map(|(who, s)| missing(&view.encode_state(), s).map(|l| format!("{l} of {who}")));
            match lacking {
                None => break view,
                Some(l) if std::time::Instant::now() > end => panic!("the cluster lacks {l}"),
                Some(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        let text = view.text();
        for c in &rust {
            c.wait_for_text(&text, WAIT).await;
        }
        observer.wait_for_text(&text, WAIT).await;
        assert_eq!(report.text, text, "the JS client's text");
        let store = Store::connect(pg.url()).await.expect("connect");
        let Loaded::Doc(stored) = store.load(doc, false).await.expect("load") else {
            panic!("missing");
        };
        assert_eq!(doc_text(&build_doc(doc, &stored)), text, "a cold load from PostgreSQL");
        assert_dense(&stored);
        store.close().await;
        for (i, node) in nodes.iter().enumerate() {
            assert_eq!(node.text(doc).await, text, "server {i}'s REST text");
        }
        let median = |d: &mut Vec<Duration>| {
            d.sort();
            (d[d.len() / 2], d[d.len() - 1])
        };
        let (rec_median, rec_max) = median(&mut recovered);
        let (gone_median, gone_max) = median(&mut presence_gone);
        eprintln!(
            "cluster kill -9: {ROUNDS} kills, {} Rust edits, {} JS edits ({} JS reconnects), {} chars, 0 losses; \
             kill to a fresh client holding all seen: median {rec_median:?}, max {rec_max:?}; \
             kill to the killed server's presence gone elsewhere: median {gone_median:?}, max {gone_max:?}",
            edits.load(Ordering::Relaxed),
            report.edits,
            report.reconnects,
            text.chars().count()
        );
    })
    .await
}

/// Issue 13, test 4: PostgreSQL (a private cluster of this test's own) stops mid-storm under two
/// servers with a bus and starts again: both report unready meanwhile, nothing is lost (commits
/// cut around COMMIT are retried without duplicates), everyone converges.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_under_two_servers_loses_nothing() {
    use quire_tests::balancer::Balancer;
    use quire_tests::chaos::{missing, random_editor, PrivateCluster};
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    quire_tests::bounded(Duration::from_secs(150), async {
        let mut rng = quire_tests::Rng::from_env("cluster_pg_restart");
        let mut pg = tokio::task::spawn_blocking(|| {
            let mut c = PrivateCluster::init();
            c.start();
            c
        })
        .await
        .unwrap();
        let nats = BusServer::nats().await;
        let a = TestServer::start_on(&pg.url(), &["--node-id", "a", "--bus", &nats.url()]).await;
        let b = TestServer::start_on(&pg.url(), &["--node-id", "b", "--bus", &nats.url()]).await;
        let balancer = Balancer::start(vec![a.addr(), b.addr()]).await;
        let doc = "pg-restart";
        let url = balancer.ws_url(doc);
        let stop = Arc::new(AtomicBool::new(false));
        let edits = Arc::new(AtomicU64::new(0));
        let editors: Vec<_> = (0..4)
            .map(|_| {
                tokio::spawn(random_editor(
                    url.clone(),
                    rng.next_u64(),
                    stop.clone(),
                    edits.clone(),
                ))
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(500 + rng.below(500) as u64)).await;
        pg = tokio::task::spawn_blocking(move || {
            pg.stop();
            pg
        })
        .await
        .unwrap();
        for node in [&a, &b] {
            quire_tests::poll_until(
                "/readyz reports the outage",
                Duration::from_secs(15),
                || async { (node.get("/readyz").await.status == 503).then_some(()) },
            )
            .await;
        }
        tokio::time::sleep(Duration::from_millis(1000)).await;
        pg = tokio::task::spawn_blocking(move || {
            pg.start();
            pg
        })
        .await
        .unwrap();
        for node in [&a, &b] {
            quire_tests::poll_until("/readyz recovers", Duration::from_secs(30), || async {
                (node.get("/readyz").await.status == 200).then_some(())
            })
            .await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, Ordering::Relaxed);
        let mut clients = Vec::new();
        for e in editors {
            clients.push(e.await.expect("editor panicked"));
        }
        let states: Vec<Vec<u8>> = clients.iter().map(|c| c.encode_state()).collect();
        let end = std::time::Instant::now() + Duration::from_secs(30);
        let text = loop {
            let view = Client::connect(&url).await;
            match states.iter().find_map(|s| missing(&view.encode_state(), s)) {
                None => break view.text(),
                Some(m) if std::time::Instant::now() > end => panic!("the cluster lacks {m}"),
                Some(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        };
        for c in &clients {
            c.wait_for_text(&text, WAIT).await;
        }
        let store = Store::connect(&pg.url()).await.expect("connect");
        let Loaded::Doc(stored) = store.load(doc, false).await.expect("load") else {
            panic!("missing");
        };
        assert_eq!(doc_text(&build_doc(doc, &stored)), text, "a cold load");
        let seqs: Vec<i64> = stored.ops.iter().map(|op| op.seq).collect();
        assert_eq!(seqs, (1..=stored.last_seq()).collect::<Vec<_>>(), "dense");
        store.close().await;
        eprintln!(
            "cluster PostgreSQL restart: {} edits, {} chars, 0 losses",
            edits.load(Ordering::Relaxed),
            text.chars().count()
        );
    })
    .await
}

/// Issue 13, test 6: one server is paused (SIGSTOP) while another writes with aggressive
/// snapshots and op-log retention, so the rows the paused one lacks are compacted away before it
/// resumes. It finds the gap, merges the snapshot that covers it, and its clients converge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_server_catches_up_past_compacted_rows() {
    quire_tests::bounded(Duration::from_secs(90), async {
        let pg = PgDatabase::create().await;
        let aggressive = [
            "--snapshot-ops",
            "5",
            "--op-retention-secs",
            "1",
            "--tail-check-ms",
            "200",
        ];
        let a = TestServer::start_on(pg.url(), &aggressive).await;
        let b = TestServer::start_on(pg.url(), &aggressive).await;
        let doc = "compacted";
        let writer = Client::connect(&a.ws_url(doc)).await;
        let reader = Client::connect(&b.ws_url(doc)).await;
        writer.push("start ");
        writer.flush().await;
        reader.wait_for_text("start ", WAIT).await;
        let pid = b.pid().expect("running").to_string();
        let signal = |sig: &str| {
            std::process::Command::new("kill")
                .args([sig, &pid])
                .status()
                .expect("kill");
        };
        signal("-STOP");
        // Rows older than a second and covered by a snapshot go: write, wait, write again so
        // a later snapshot's retention sweep deletes the first ones.
        for round in 0..3 {
            for k in 0..10 {
                writer.push(&format!("<{round}.{k}>"));
            }
            writer.flush().await;
            tokio::time::sleep(Duration::from_millis(1_100)).await;
        }
        writer.push("end");
        writer.flush().await;
        let store = Store::connect(pg.url()).await.expect("connect");
        let oldest = store
            .ops_between(doc, 0, i64::MAX)
            .await
            .expect("rows")
            .first()
            .map_or(i64::MAX, |r| r.seq);
        assert!(
            oldest > 2,
            "the rows after the paused server's version were compacted (oldest row {oldest})"
        );
        signal("-CONT");
        let expected = writer.text();
        reader.wait_for_text(&expected, WAIT).await;
        assert_eq!(
            b.text(doc).await,
            expected,
            "the resumed server's REST text"
        );
        store.close().await;
    })
    .await
}
