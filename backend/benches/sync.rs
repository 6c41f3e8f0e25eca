//! End-to-end sync benchmark: the real `quire-server` binary on PostgreSQL, real WebSocket
//! clients on loopback.
//!
//! ```sh
//! cargo bench -p quire-backend --bench sync            # QUIRE_TEST_PG_URL, default 127.0.0.1:5432
//! QUIRE_BENCH_SERVER=/path/to/other/quire-server cargo bench -p quire-backend --bench sync
//! ```
//! (the second form measures another build, e.g. an older commit's, for side-by-side runs).
//!
//! Measures, and prints as a Markdown table for BENCHMARKS.md:
//! 1. automerge-paper replayed as 259,778 separate updates from one client while a second
//!    listens: updates/s end to end, writer→reader latency p50/p99 (closed loop, full speed);
//! 2. the same at 2,000 updates/s offered (latency p50/p99);
//! 3. opening the document holding the whole trace, after compaction (connect → SyncStep2);
//! 4. server memory: one open document with the whole history; 1,000 idle connections over 100
//!    documents; and after they close and the documents unload.
//!
//! `-- history` instead measures reading history (issue 15) on that document, on SQLite and
//! PostgreSQL: the first page of changes, blame, the text and blame at older versions (first
//! request and again), and slider steps (the text at consecutive versions).
//!
//! The updates are encoded once with yrs and cached under target/bench-cache: the load
//! generator only sends bytes, so it measures the server, not the client's CRDT.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use quire_wire::TEXT_NAME;
use sqlx::Connection;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use yrs::sync::{Message, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{GetString, StateVector, Text, Transact, Update};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const PACED_RATE: u64 = 2_000;
const PACED_COUNT: usize = 20_000;
const IDLE_DOCS: usize = 100;
const IDLE_CONNS: usize = 1_000;

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is accepted and ignored.
    let pg = std::env::var("QUIRE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let trace = trace_path();
    println!("sync bench: trace {}", trace.display());
    let (updates, end_content) = load_updates(&trace);
    println!(
        "sync bench: {} updates, {} final chars",
        updates.len(),
        end_content.chars().count()
    );

    if std::env::args().any(|a| a == "cluster") {
        return cluster(&rt, &pg, &updates);
    }
    if std::env::args().any(|a| a == "history") {
        return history(&rt, &pg, &updates);
    }
    let db = format!("quire_bench_{}", std::process::id());
    let db_url = rt.block_on(create_database(&pg, &db));
    let server = ServerProcess::start(&db_url);
    let addr = server.addr.clone();
    let mut rows: Vec<(String, String)> = Vec::new();

    rt.block_on(async {
        // 1. Closed loop, full speed.
        let full = stream(&addr, "paper", &updates, None).await;
        assert_eq!(
            full.text, end_content,
            "reader's text differs from endContent"
        );
        rows.push((
            "automerge-paper, 259,778 updates, closed loop".into(),
            format!(
                "{:.0} updates/s ({:.2} s); latency p50 {:.2} ms, p99 {:.2} ms",
                full.per_sec, full.secs, full.p50_ms, full.p99_ms
            ),
        ));
        println!("{rows:?}");

        // 2. Paced at 2k/s.
        let paced = stream(&addr, "paced", &updates[..PACED_COUNT], Some(PACED_RATE)).await;
        rows.push((
            format!("{PACED_COUNT} updates offered at {PACED_RATE}/s"),
            format!(
                "latency p50 {:.2} ms, p99 {:.2} ms (achieved {:.0}/s)",
                paced.p50_ms, paced.p99_ms, paced.per_sec
            ),
        ));
        println!("{:?}", rows.last());

        // 3. Open after compaction: wait for the document to unload, then time a fresh open.
        wait_unloaded(&addr).await;
        let mut opens = Vec::new();
        for i in 0..5 {
            let (ms, text) = open_document(&addr, "paper").await;
            if i == 0 {
                assert_eq!(
                    text, end_content,
                    "reopened document differs from endContent"
                );
            }
            opens.push(ms);
            wait_unloaded(&addr).await;
        }
        opens.sort_by(f64::total_cmp);
        rows.push((
            "open the whole-trace document (connect → SyncStep2), median of 5".into(),
            format!(
                "{:.1} ms (min {:.1}, max {:.1})",
                opens[2], opens[0], opens[4]
            ),
        ));
        println!("{:?}", rows.last());

        // 4. Memory, on a fresh server process over the same database: freed memory stays in
        // a process's allocator, so an RSS delta means something only in a process that never
        // held the document before.
        let fresh = ServerProcess::start(&db_url);
        let (server, addr) = (&fresh, fresh.addr.clone());
        drop(connect_synced(&addr, "warm-up").await);
        wait_unloaded(&addr).await;
        let base = server.rss_kib();
        let (holder, _) = connect_synced(&addr, "paper").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let with_doc = server.rss_kib();
        drop(holder);
        rows.push((
            "server RSS: one open document holding automerge-paper".into(),
            format!(
                "+{:.1} MiB over {:.1} MiB idle",
                (with_doc as f64 - base as f64) / 1024.0,
                base as f64 / 1024.0
            ),
        ));
        wait_unloaded(&addr).await;
        let before = server.rss_kib();
        let mut idle = Vec::with_capacity(IDLE_CONNS);
        for i in 0..IDLE_CONNS {
            idle.push(
                connect_synced(&addr, &format!("idle-{}", i % IDLE_DOCS))
                    .await
                    .0,
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let with_conns = server.rss_kib();
        let per_conn = (with_conns as f64 - before as f64) / IDLE_CONNS as f64;
        rows.push((
            format!("server RSS: {IDLE_CONNS} idle connections over {IDLE_DOCS} documents"),
            format!(
                "{per_conn:.1} KiB per connection (+{:.1} MiB)",
                (with_conns as f64 - before as f64) / 1024.0
            ),
        ));
        drop(idle);
        wait_unloaded(&addr).await;
        let after = server.rss_kib();
        rows.push((
            "server RSS after they close and the documents unload".into(),
            format!(
                "{:.1} MiB (was {:.1} MiB before they opened; documents open: 0)",
                after as f64 / 1024.0,
                before as f64 / 1024.0
            ),
        ));
        // Unloaded documents hold nothing: more open/unload cycles of the big document must
        // not grow the process.
        for _ in 0..10 {
            drop(connect_synced(&addr, "paper").await);
            wait_unloaded(&addr).await;
        }
        rows.push((
            "server RSS after 10 more open/unload cycles of the automerge-paper document".into(),
            format!("{:.1} MiB", server.rss_kib() as f64 / 1024.0),
        ));
        fresh.stop();
    });

    server.stop();
    rt.block_on(drop_database(&pg, &db));
    println!("\n| measurement | result |\n|---|---|");
    for (what, result) in &rows {
        println!("| {what} | {result} |");
    }
}

struct StreamStats {
    per_sec: f64,
    secs: f64,
    p50_ms: f64,
    p99_ms: f64,
    text: String,
}

/// Sends `updates` from a writer while a reader records when each arrives.
async fn stream(addr: &str, doc: &str, updates: &[Vec<u8>], rate: Option<u64>) -> StreamStats {
    stream_between(addr, addr, doc, updates, rate).await
}

/// [`stream`] with the writer on one server and the reader on another (or the same).
async fn stream_between(
    writer_addr: &str,
    reader_addr: &str,
    doc: &str,
    updates: &[Vec<u8>],
    rate: Option<u64>,
) -> StreamStats {
    let (mut reader, _) = connect_synced(reader_addr, doc).await;
    let (writer, _) = connect_synced(writer_addr, doc).await;
    let n = updates.len();
    let frames: Vec<WsMessage> = updates
        .iter()
        .map(|u| WsMessage::binary(Message::Sync(SyncMessage::Update(u.clone())).encode_v1()))
        .collect();
    let sent = Arc::new(Mutex::new(Vec::with_capacity(n)));
    let sent_w = sent.clone();
    let write = tokio::spawn(async move {
        let (mut sink, mut stream) = writer.split();
        // Drain what the server sends the writer (pings, awareness) so its socket never fills.
        let drain = tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
        let start = Instant::now();
        for (i, frame) in frames.into_iter().enumerate() {
            if let Some(rate) = rate {
                let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
                tokio::time::sleep_until(due.into()).await;
            }
            sent_w.lock().unwrap().push(Instant::now());
            sink.send(frame).await.expect("writer send");
        }
        (sink, drain)
    });
    let mut received = Vec::with_capacity(n);
    let mut payloads = Vec::with_capacity(n);
    let progress_every = (n / 10).max(1);
    while received.len() < n {
        let frame = tokio::time::timeout(Duration::from_secs(60), reader.next())
            .await
            .expect("reader waited 60 s for an update")
            .expect("reader socket ended")
            .expect("reader socket error");
        if let WsMessage::Binary(bytes) = frame {
            if let Ok(Message::Sync(SyncMessage::Update(u))) = Message::decode_v1(&bytes) {
                received.push(Instant::now());
                payloads.push(u);
                if received.len() % progress_every == 0 {
                    eprintln!("  {doc}: {}/{n} updates relayed", received.len());
                }
            }
        }
    }
    let (mut sink, drain) = write.await.unwrap();
    let _ = sink.close().await;
    drain.abort();
    let sent = sent.lock().unwrap();
    let mut lat: Vec<f64> = sent
        .iter()
        .zip(&received)
        .map(|(s, r)| r.duration_since(*s).as_secs_f64() * 1e3)
        .collect();
    lat.sort_by(f64::total_cmp);
    let secs = received[n - 1].duration_since(sent[0]).as_secs_f64();
    let doc = yrs::Doc::new();
    let text = doc.get_or_insert_text(TEXT_NAME);
    {
        let mut txn = doc.transact_mut();
        for u in payloads {
            txn.apply_update(Update::decode_v1(&u).unwrap()).unwrap();
        }
    }
    let text = text.get_string(&doc.transact());
    StreamStats {
        per_sec: n as f64 / secs,
        secs,
        p50_ms: lat[n / 2],
        p99_ms: lat[(n * 99 / 100).min(n - 1)],
        text,
    }
}

/// Connects and completes the handshake; returns the socket and the time it took.
async fn connect_synced(addr: &str, doc: &str) -> (Ws, Duration) {
    let started = Instant::now();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/{doc}"))
        .await
        .expect("connect");
    let step1 = Message::Sync(SyncMessage::SyncStep1(StateVector::default())).encode_v1();
    ws.send(WsMessage::binary(step1)).await.unwrap();
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(30), ws.next())
            .await
            .expect("sync timeout")
            .unwrap()
            .unwrap();
        if let WsMessage::Binary(bytes) = &frame {
            if let Ok(Message::Sync(SyncMessage::SyncStep2(_))) = Message::decode_v1(bytes) {
                return (ws, started.elapsed());
            }
        }
    }
}

/// Opens `doc` with a fresh client; returns milliseconds to SyncStep2 and the text it holds.
async fn open_document(addr: &str, doc: &str) -> (f64, String) {
    let started = Instant::now();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws/{doc}"))
        .await
        .unwrap();
    ws.send(WsMessage::binary(
        Message::Sync(SyncMessage::SyncStep1(StateVector::default())).encode_v1(),
    ))
    .await
    .unwrap();
    loop {
        if let WsMessage::Binary(bytes) = ws.next().await.unwrap().unwrap() {
            if let Ok(Message::Sync(SyncMessage::SyncStep2(u))) = Message::decode_v1(&bytes) {
                let ms = started.elapsed().as_secs_f64() * 1e3;
                let d = yrs::Doc::new();
                let t = d.get_or_insert_text(TEXT_NAME);
                d.transact_mut()
                    .apply_update(Update::decode_v1(&u).unwrap())
                    .unwrap();
                let text = t.get_string(&d.transact());
                return (ms, text);
            }
        }
    }
}

/// Waits until the server reports no open document (they unload after 1 s idle here).
async fn wait_unloaded(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if http_get(addr, "/readyz").contains("\"documents_open\":0") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "documents did not unload within 30 s"
        );
    }
}

fn http_get(addr: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

struct ServerProcess {
    child: Child,
    addr: String,
}

impl ServerProcess {
    fn start(db_url: &str) -> ServerProcess {
        ServerProcess::start_with(db_url, &[])
    }

    fn start_with(db_url: &str, extra: &[&str]) -> ServerProcess {
        // QUIRE_BENCH_SERVER: another build to compare against, side by side.
        let binary = std::env::var("QUIRE_BENCH_SERVER")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_quire-server").to_string());
        let mut child = Command::new(binary)
            .args([
                "--listen",
                "127.0.0.1:0",
                "--database-url",
                db_url,
                "--idle-unload-secs",
                "1",
                // 1,000 connections from one loopback address are the point of the memory rows.
                "--max-connections-per-ip",
                "0",
            ])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start quire-server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .expect("listening line")
            .to_string();
        ServerProcess { child, addr }
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

async fn create_database(pg: &str, db: &str) -> String {
    let mut conn = sqlx::PgConnection::connect(pg)
        .await
        .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {pg}: {e}; run ./scripts/test.sh once or set QUIRE_TEST_PG_URL"));
    sqlx::query(&format!("CREATE DATABASE {db}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let base = pg.rsplit_once('/').map_or(pg, |(b, _)| b);
    format!("{base}/{db}")
}

async fn drop_database(pg: &str, db: &str) {
    if let Ok(mut conn) = sqlx::PgConnection::connect(pg).await {
        let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
            .execute(&mut conn)
            .await;
    }
}

fn trace_path() -> PathBuf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/traces/sequential/automerge-paper.json.gz");
    assert!(
        path.exists(),
        "trace not found at {}: the shared/ folder must sit beside the project",
        path.display()
    );
    path
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Trace {
    end_content: String,
    txns: Vec<Txn>,
}

#[derive(serde::Deserialize)]
struct Txn {
    patches: Vec<(usize, usize, String)>,
}

/// One yrs update per trace transaction, built once and cached (building costs seconds: a local
/// yrs insert walks the item list).
fn load_updates(trace: &Path) -> (Vec<Vec<u8>>, String) {
    let mut json = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(trace).unwrap())
        .read_to_string(&mut json)
        .unwrap();
    let trace: Trace = serde_json::from_str(&json).expect("trace JSON");
    assert!(
        trace.end_content.is_ascii(),
        "this bench builds updates with byte offsets: use an ASCII trace"
    );
    let cache =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-cache/automerge-paper.updates");
    if let Ok(bytes) = std::fs::read(&cache) {
        let mut updates = Vec::new();
        let mut rest = &bytes[..];
        while rest.len() >= 4 {
            let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
            updates.push(rest[4..4 + len].to_vec());
            rest = &rest[4 + len..];
        }
        if updates.len() == trace.txns.len() {
            return (updates, trace.end_content);
        }
    }
    eprintln!(
        "sync bench: encoding {} yrs updates (once; cached in {})",
        trace.txns.len(),
        cache.display()
    );
    let doc = yrs::Doc::with_client_id(1);
    let text = doc.get_or_insert_text(TEXT_NAME);
    let updates = Arc::new(Mutex::new(Vec::with_capacity(trace.txns.len())));
    let sink = updates.clone();
    doc.observe_update_v1("bench", move |_, e: &yrs::UpdateEvent| {
        sink.lock().unwrap().push(e.update.clone())
    })
    .unwrap();
    for (i, txn) in trace.txns.iter().enumerate() {
        let mut t = doc.transact_mut();
        for (pos, del, ins) in &txn.patches {
            if *del > 0 {
                text.remove_range(&mut t, *pos as u32, *del as u32);
            }
            if !ins.is_empty() {
                text.insert(&mut t, *pos as u32, ins);
            }
        }
        drop(t);
        if i % 50_000 == 0 {
            eprintln!("  {i}/{}", trace.txns.len());
        }
    }
    assert_eq!(text.get_string(&doc.transact()), trace.end_content);
    let updates = std::mem::take(&mut *updates.lock().unwrap());
    let mut bytes = Vec::new();
    for u in &updates {
        bytes.extend_from_slice(&(u.len() as u32).to_le_bytes());
        bytes.extend_from_slice(u);
    }
    let _ = std::fs::create_dir_all(cache.parent().unwrap());
    let _ = std::fs::write(&cache, bytes);
    (updates, trace.end_content)
}

/// Relay latency between servers sharing one PostgreSQL database (`cargo bench -p
/// quire-backend --bench sync -- cluster`): a writer on server A, a reader on A (same node) or
/// on B (cross node, through the NATS bus, or through the tail check alone), paced at typing
/// rates; the rows alternate so they share the machine's state. Then one hot document with
/// writers on 1, 2 and 3 servers, and staleness with the bus killed. Needs nats-server
/// (`QUIRE_NATS_SERVER`, PATH or /usr/sbin) and redis-server (`QUIRE_REDIS_SERVER` or PATH).
fn cluster(rt: &tokio::runtime::Runtime, pg: &str, updates: &[Vec<u8>]) {
    const RATE: u64 = 200;
    const COUNT: usize = 4_000;
    let nats_bin = std::env::var("QUIRE_NATS_SERVER").unwrap_or_else(|_| {
        if Path::new("/usr/sbin/nats-server").exists() {
            "/usr/sbin/nats-server".into()
        } else {
            "nats-server".into()
        }
    });
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut nats = Command::new(nats_bin)
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nats-server");
    let redis_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut redis =
        Command::new(std::env::var("QUIRE_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into()))
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &redis_port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
    std::thread::sleep(Duration::from_millis(300));
    let bus = format!("nats://127.0.0.1:{port}");
    let redis_bus = format!("redis://127.0.0.1:{redis_port}");
    let db = format!("quire_bench_cluster_{}", std::process::id());
    let db_url = rt.block_on(create_database(pg, &db));
    let a = ServerProcess::start_with(&db_url, &["--bus", &bus, "--node-id", "a"]);
    let b = ServerProcess::start_with(&db_url, &["--bus", &bus, "--node-id", "b"]);
    let e = ServerProcess::start_with(&db_url, &["--bus", &bus, "--node-id", "e"]);
    let r1 = ServerProcess::start_with(&db_url, &["--bus", &redis_bus, "--node-id", "r1"]);
    let r2 = ServerProcess::start_with(&db_url, &["--bus", &redis_bus, "--node-id", "r2"]);
    let c = ServerProcess::start_with(&db_url, &["--node-id", "c"]);
    let d = ServerProcess::start_with(&db_url, &["--node-id", "d"]);
    std::thread::sleep(Duration::from_millis(500));
    let mut rows: Vec<(String, String)> = Vec::new();
    rt.block_on(async {
        for round in 0..2 {
            for (label, writer, reader) in [
                ("same node", &a, &a),
                ("cross node, NATS bus", &a, &b),
                ("cross node, Redis bus", &r1, &r2),
                ("cross node, no bus (tail check, 500 ms)", &c, &d),
            ] {
                let doc = format!("cluster-{round}-{}", label.len());
                let stats = stream_between(
                    &writer.addr,
                    &reader.addr,
                    &doc,
                    &updates[..COUNT],
                    Some(RATE),
                )
                .await;
                let row = (
                    format!("{label}: {COUNT} updates at {RATE}/s, run {}", round + 1),
                    format!(
                        "latency p50 {:.2} ms, p99 {:.2} ms",
                        stats.p50_ms, stats.p99_ms
                    ),
                );
                println!("{row:?}");
                rows.push(row);
            }
        }
        // One hot document, writers spread over 1, 2 and 3 servers.
        let nodes = [&a, &b, &e];
        for round in 0..2 {
            // Closed loop overloads the machine (the writers' own relays back up and the
            // servers close them as slow clients), so the heavy case is paced too.
            for (each, rate) in [(12_000, Some(4_000)), (2_000, Some(250))] {
                for spread in 1..=3 {
                    let doc = format!("hot-{round}-{spread}-{each}");
                    let addrs: Vec<&str> = nodes.iter().map(|n| n.addr.as_str()).collect();
                    let writers: Vec<&str> =
                        nodes[..spread].iter().map(|n| n.addr.as_str()).collect();
                    let row = hot_document(&doc, &writers, &addrs, each, rate).await;
                    println!("{row:?}");
                    rows.push(row);
                }
            }
        }
    });
    // Staleness while the bus is hung (SIGSTOP) and then down: the tail check (500 ms while the
    // bus is away) carries.
    let signal = |sig: &str| {
        let _ = Command::new("kill")
            .args([sig, &nats.id().to_string()])
            .status();
    };
    let mut staleness = |label: &str, doc: &str| {
        let stats = rt.block_on(stream_between(
            &a.addr,
            &b.addr,
            doc,
            &updates[..COUNT / 2],
            Some(RATE),
        ));
        let row = (
            format!(
                "cross node with the NATS bus {label}: {} updates at {RATE}/s",
                COUNT / 2
            ),
            format!(
                "staleness p50 {:.0} ms, p99 {:.0} ms",
                stats.p50_ms, stats.p99_ms
            ),
        );
        println!("{row:?}");
        rows.push(row);
    };
    signal("-STOP");
    staleness("hung (SIGSTOP)", "cluster-bus-hung");
    signal("-CONT");
    let _ = nats.kill();
    let _ = nats.wait();
    std::thread::sleep(Duration::from_millis(300));
    staleness("killed", "cluster-bus-down");
    a.stop();
    b.stop();
    e.stop();
    r1.stop();
    r2.stop();
    let _ = redis.kill();
    let _ = redis.wait();
    c.stop();
    d.stop();
    rt.block_on(drop_database(pg, &db));
    println!("\n| measurement | result |\n|---|---|");
    for (what, result) in rows {
        println!("| {what} | {result} |");
    }
}

/// Six writers, each typing `each` characters of its own text as fast as its socket allows
/// (closed loop) or at `rate` per second, into one document through the servers in `writers`
/// (round-robin); done when every server in `all` serves the whole text over REST. Commit and
/// row-lock p99 come from the servers' histograms (bucket bounds, so "≤").
async fn hot_document(
    doc: &str,
    writers: &[&str],
    all: &[&str],
    each: usize,
    rate: Option<u64>,
) -> (String, String) {
    const WRITERS: usize = 6;
    let before: Vec<String> = all.iter().map(|a| http_get(a, "/metrics")).collect();
    let frames: Vec<Vec<WsMessage>> = (0..WRITERS)
        .map(|w| {
            let ydoc = yrs::Doc::with_client_id(10_000 + w as u64);
            let text = ydoc.get_or_insert_text(TEXT_NAME);
            (0..each)
                .map(|i| {
                    let mut txn = ydoc.transact_mut();
                    text.insert(&mut txn, i as u32, "x");
                    let update = txn.encode_update_v1();
                    WsMessage::binary(Message::Sync(SyncMessage::Update(update)).encode_v1())
                })
                .collect()
        })
        .collect();
    let mut sockets = Vec::new();
    for w in 0..WRITERS {
        sockets.push(connect_synced(writers[w % writers.len()], doc).await.0);
    }
    let started = Instant::now();
    let tasks: Vec<_> = sockets
        .into_iter()
        .zip(frames)
        .map(|(ws, frames)| {
            tokio::spawn(async move {
                let (mut sink, mut stream) = ws.split();
                let drain =
                    tokio::spawn(async move { while let Some(Ok(_)) = stream.next().await {} });
                let start = Instant::now();
                for (i, frame) in frames.into_iter().enumerate() {
                    if let Some(rate) = rate {
                        let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
                        tokio::time::sleep_until(due.into()).await;
                    }
                    sink.send(frame).await.expect("writer send");
                }
                (sink, drain)
            })
        })
        .collect();
    let total = WRITERS * each;
    for addr in all {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let body = http_get(addr, &format!("/api/documents/{doc}/text"));
            let text = body.split("\r\n\r\n").nth(1).unwrap_or("");
            if text.chars().filter(|c| *c == 'x').count() >= total {
                break;
            }
            if Instant::now() > deadline {
                let slow: Vec<String> = all
                    .iter()
                    .map(|a| http_get(a, "/metrics"))
                    .flat_map(|m| {
                        m.lines()
                            .filter(|l| l.starts_with("quire_errors_total{kind=\"slow_client\"}"))
                            .map(str::to_string)
                            .collect::<Vec<_>>()
                    })
                    .collect();
                panic!("{addr} never had all {total} updates (writers closed as slow clients, per server: {slow:?})");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    for task in tasks {
        let (mut sink, drain) = task.await.unwrap();
        let _ = sink.close().await;
        drain.abort();
    }
    let after: Vec<String> = all.iter().map(|a| http_get(a, "/metrics")).collect();
    let p99 = |name: &str| {
        let mut buckets: Vec<(String, f64)> = Vec::new();
        for (b, a) in before.iter().zip(&after) {
            for (bound, n) in histogram(a, name) {
                let was = histogram(b, name)
                    .into_iter()
                    .find(|(x, _)| *x == bound)
                    .map_or(0.0, |(_, v)| v);
                match buckets.iter_mut().find(|(x, _)| *x == bound) {
                    Some((_, v)) => *v += n - was,
                    None => buckets.push((bound, n - was)),
                }
            }
        }
        let count = buckets.last().map_or(0.0, |(_, v)| *v);
        let bound = buckets
            .iter()
            .find(|(_, v)| *v >= count * 0.99)
            .map_or("?".to_string(), |(b, _)| b.clone());
        (bound, count)
    };
    let (commit_p99, commits) = p99("quire_oplog_append_seconds");
    let (lock_p99, _) = p99("quire_row_lock_wait_seconds");
    (
        format!(
            "one hot document, {WRITERS} writers × {each} updates on {} of 3 servers ({})",
            writers.len(),
            rate.map_or("closed loop".to_string(), |r| format!("{r}/s each"))
        ),
        format!(
            "{:.0} updates/s until every server serves all; {commits} commits, commit p99 ≤ {commit_p99} s, row lock p99 ≤ {lock_p99} s",
            total as f64 / secs
        ),
    )
}

/// The cumulative buckets `(le, count)` of histogram `name`, `+Inf` last.
fn histogram(metrics: &str, name: &str) -> Vec<(String, f64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    metrics
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(&prefix)?;
            let (bound, value) = rest.split_once("\"} ")?;
            Some((bound.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// Issue 15's figures: reading the history of the automerge-paper document stored as 259,778
/// rows (`cargo bench -p quire-backend --bench sync -- history`).
fn history(rt: &tokio::runtime::Runtime, pg: &str, updates: &[Vec<u8>]) {
    let versions = [1_000i64, 65_000, 130_000, 195_000, 259_000];
    let mut rows: Vec<(String, String)> = Vec::new();
    let dir = std::env::temp_dir().join(format!("quire-history-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sqlite = format!("sqlite:{}", dir.join("quire.db").display());
    let db = format!("quire_history_bench_{}", std::process::id());
    let pg_url = rt.block_on(create_database(pg, &db));
    for (store, url) in [("SQLite", sqlite.as_str()), ("PostgreSQL", pg_url.as_str())] {
        let server = ServerProcess::start(url);
        let addr = server.addr.clone();
        let loaded = rt.block_on(stream(&addr, "paper", updates, None));
        println!(
            "history bench: {store}: {} rows in {:.1} s",
            updates.len(),
            loaded.secs
        );
        let time = |path: &str| -> (f64, String) {
            let started = Instant::now();
            let body = http_get(&addr, path);
            let ms = started.elapsed().as_secs_f64() * 1e3;
            assert!(
                body.starts_with("HTTP/1.1 200"),
                "{path}: {}",
                &body[..body.len().min(300)]
            );
            (ms, body)
        };
        let median = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            v[v.len() / 2]
        };
        let mut row = |what: &str, first: f64, again: Vec<f64>| {
            let line = format!("first {first:.1} ms, then median {:.1} ms", median(again));
            println!("history bench: {store}: {what}: {line}");
            rows.push((format!("{store}: {what}"), line));
        };
        let (first, body) = time("/api/documents/paper/history");
        assert!(
            body.contains("\"changes\""),
            "{}",
            &body[..body.len().min(300)]
        );
        let again = (0..5)
            .map(|_| time("/api/documents/paper/history").0)
            .collect();
        row("first page of changes (20)", first, again);
        let (first, _) = time("/api/documents/paper/blame");
        let again = (0..5)
            .map(|_| time("/api/documents/paper/blame").0)
            .collect();
        row("blame of the current text", first, again);
        let mut firsts = Vec::new();
        for v in versions {
            firsts.push(time(&format!("/api/documents/paper/text?version={v}")).0);
        }
        let again = versions
            .iter()
            .map(|v| time(&format!("/api/documents/paper/text?version={v}")).0)
            .collect();
        row(
            "text at 5 older versions (median of firsts / of repeats)",
            median(firsts),
            again,
        );
        let mut firsts = Vec::new();
        for v in versions {
            firsts.push(time(&format!("/api/documents/paper/blame?version={v}")).0);
        }
        let again = versions
            .iter()
            .map(|v| time(&format!("/api/documents/paper/blame?version={v}")).0)
            .collect();
        row(
            "blame at 5 older versions (median of firsts / of repeats)",
            median(firsts),
            again,
        );
        let steps: Vec<f64> = (0..20)
            .map(|i| {
                time(&format!(
                    "/api/documents/paper/text?version={}",
                    130_000 + i
                ))
                .0
            })
            .collect();
        let first = steps[0];
        row(
            "slider: text at 20 consecutive versions from 130,000",
            first,
            steps[1..].to_vec(),
        );
        server.stop();
    }
    rt.block_on(drop_database(pg, &db));
    let _ = std::fs::remove_dir_all(&dir);
    println!("\n| measurement | result |\n|---|---|");
    for (what, result) in &rows {
        println!("| {what} | {result} |");
    }
}
