//! Deterministic simulation: 2–8 replicas and the REAL server parts (the document actor and the
//! SQLite store, built with `quire_backend::Server::new`) in one process, talking through
//! channels (`Documents::join`, `Command::Messages`) instead of sockets, over a simulated
//! network that reorders, duplicates, delays and drops messages, disconnects and reconnects
//! replicas (which resync with SyncStep1/2), and crashes and restarts the server from its store.
//! Half the cases (odd seeds) also reorder and drop frames inside one connection. Replicas
//! take remote updates through `quire_holdback`, as quire's own Rust clients do.
//!
//! Each server incarnation runs on a tokio runtime of its own; a crash drops that runtime, which
//! stops every actor at whatever await it was in (mid-commit included), like kill -9 would: the
//! store keeps what was committed, everything else is gone. A clean restart shuts down
//! gracefully (final snapshot).
//!
//! Replicas insert (ASCII, multi-byte, emoji), delete, replace, undo and redo (yrs
//! `UndoManager`) at random positions. Invariants:
//! - after every restart: whatever any replica had received from the server is in the store;
//! - after quiescence: every replica and the server hold identical text and state; the server's
//!   state reloaded from its store equals it; nothing any replica saw is missing; no panic.
//!
//! Cases: `QUIRE_SIM_CASES` (default 1000); seeds: `QUIRE_SIM_SEED` (default 1; `random`: the clock),
//! case `i` uses seed `QUIRE_SIM_SEED + i`; `QUIRE_SIM_CHAOTIC_NET=1|0`: every case or none on
//! the chaotic network. A failing case prints its seed and the command that
//! replays exactly that case.

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use quire_backend::document::{ApiRequest, CloseReason, Command, ConnId};
use quire_backend::holdback::Holdback;
use quire_backend::protocol::decode_frame;
use quire_backend::store::Loaded;
use quire_backend::{Config, Server};
use quire_tests::client::{client_doc, sync_step1_frame, update_frame, utf16_offset, TEXT_NAME};
use quire_tests::trace::merged_text;
use quire_tests::Rng;
use tokio::runtime::Runtime;
use tokio::sync::{mpsc, oneshot};
use yrs::encoding::read::Cursor;
use yrs::sync::{Message, MessageReader, SyncMessage};
use yrs::undo::Options as UndoOptions;
use yrs::updates::decoder::{Decode, DecoderV1};
use yrs::{
    Doc, GetString, Origin, ReadTxn, StateVector, Text, TextRef, Transact, UndoManager, Update,
};

const REMOTE: &str = "sim-remote";

/// Text pieces replicas type: ASCII, Latin-1, CJK, non-BMP emoji, a multi-code-point emoji.
const PIECES: &[&str] = &[
    "a", "b", "xyz", " ", "\n", "é", "ü", "中文", "🦀", "😀", "👍🏽", "ß", "∑", "e\u{301}",
];

#[derive(Default)]
struct Stats {
    cases: u64,
    edits: u64,
    undos: u64,
    redos: u64,
    delivered: u64,
    duplicated: u64,
    dropped: u64,
    reconnects: u64,
    crashes: u64,
    clean_restarts: u64,
    pending_witnesses: u64,
    chaotic_cases: u64,
}

/// The first seed of the default run.
const DEFAULT_SEED: u64 = 1;

#[test]
fn simulation() {
    let cases: u64 = env_u64("QUIRE_SIM_CASES").unwrap_or(1000);
    // Fixed by default so every run checks the same cases; `random` explores from the clock.
    let base = match std::env::var("QUIRE_SIM_SEED").ok().as_deref() {
        Some("random") => quire_tests::clock_seed(),
        _ => env_u64("QUIRE_SIM_SEED").unwrap_or(DEFAULT_SEED),
    };
    eprintln!("simulation: {cases} cases from QUIRE_SIM_SEED={base}");
    let dir = scratch_dir();
    let url = format!("sqlite:{}", dir.join("sim.db").display());
    let started = Instant::now();
    let mut stats = Stats::default();
    let mut server = Incarnation::start(&url);
    let max_steps = env_u64("QUIRE_SIM_STEPS").map(|k| k as usize);
    for i in 0..cases {
        let seed = base.wrapping_add(i);
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            run_case_steps(seed, max_steps, &mut server, &url, &mut stats)
        }));
        if let Err(panic) = result {
            eprintln!(
                "\nsimulation case {i} FAILED with seed {seed}. Replay exactly this case with:\n  \
                 QUIRE_SIM_SEED={seed} QUIRE_SIM_CASES=1 cargo test -p quire-tests --test simulation -- --nocapture\n"
            );
            if let Some(k) = shrink(seed, &url) {
                eprintln!(
                    "shrunk: the first {k} steps of case {seed} already fail; replay with:\n  \
                     QUIRE_SIM_SEED={seed} QUIRE_SIM_STEPS={k} QUIRE_SIM_CASES=1 cargo test -p quire-tests --test simulation -- --nocapture\n"
                );
            }
            std::panic::resume_unwind(panic);
        }
    }
    stats.cases = cases;
    server.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!(
        "simulation: {} cases ({} on the chaotic network) in {:.1} s: {} edits, {} undos, {} redos; {} messages delivered, \
         {} duplicated, {} dropped; {} reconnects; {} server crashes, {} clean restarts ({} witnesses with pending updates checked by state vector); 0 losses",
        stats.cases,
        stats.chaotic_cases,
        started.elapsed().as_secs_f64(),
        stats.edits,
        stats.undos,
        stats.redos,
        stats.delivered,
        stats.duplicated,
        stats.dropped,
        stats.reconnects,
        stats.crashes,
        stats.clean_restarts,
        stats.pending_witnesses
    );
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a number"))
    })
}

/// A scratch directory on tmpfs when there is one (the store fsyncs every commit).
fn scratch_dir() -> PathBuf {
    let base = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let dir = base.join(format!(
        "quire-sim-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One run of the server: its own runtime, so a crash can drop everything it was doing.
struct Incarnation {
    rt: Runtime,
    server: Option<Server>,
    next_conn: ConnId,
}

impl Incarnation {
    fn start(url: &str) -> Incarnation {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mut config = Config::defaults();
        config.database_url = url.to_string();
        // Snapshots every few ops, so reloads combine snapshots and op-log tails.
        config.snapshot_ops = 7;
        let server = rt
            .block_on(Server::new(config))
            .unwrap_or_else(|e| panic!("cannot start the embedded server: {e}"));
        Incarnation {
            rt,
            server: Some(server),
            next_conn: 1,
        }
    }

    /// A stand-in while one incarnation is down and the next not yet started.
    fn empty() -> Incarnation {
        Incarnation {
            rt: tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap(),
            server: None,
            next_conn: 1,
        }
    }

    fn server(&self) -> &Server {
        self.server.as_ref().expect("running")
    }

    /// Graceful: every actor commits and snapshots, the store closes.
    fn shutdown(mut self) {
        let server = self.server.take().expect("running");
        self.rt.block_on(server.shutdown());
    }

    /// kill -9: the runtime is dropped with every actor wherever it was. SQLite runs on worker
    /// threads of its own, so a commit already handed to one may still land: we wait until the
    /// store's connections are closed, as the kernel would have rolled back or finished it before
    /// a restarted process could read the file (otherwise that late commit would take op-log
    /// sequence numbers the restarted server then reuses: two writers, which the real server
    /// rules out by being one process).
    fn crash(mut self) {
        let server = self.server.take().expect("running");
        let store = server.context().store.clone();
        drop(server);
        self.rt.shutdown_timeout(Duration::ZERO);
        let closer = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        closer.block_on(store.close());
    }

    /// Waits until the actor has handled everything sent to it so far (a REST `Info` request
    /// goes through the same inbox and is answered after the round's commit and relays).
    fn barrier(&self, doc: &str) {
        let documents = self.server().documents().clone();
        self.rt
            .block_on(documents.request(doc, |reply| ApiRequest::Info { reply }))
            .unwrap_or_else(|e| panic!("the actor did not answer: {e}"));
    }

    /// The server's text (its mirror) and its whole state (the CRDT).
    fn server_state(&self, doc: &str) -> (String, Vec<u8>) {
        let documents = self.server().documents().clone();
        self.rt.block_on(async {
            let text = documents
                .request(doc, |reply| ApiRequest::Text {
                    version: None,
                    reply,
                })
                .await
                .unwrap_or_else(|e| panic!("text: {e}"))
                .text;
            let (state, _) = documents
                .request(doc, |reply| ApiRequest::EncodeState { reply })
                .await
                .unwrap_or_else(|e| panic!("state: {e}"));
            (text, state)
        })
    }

    /// The document as a fresh load from the store builds it.
    fn stored_doc(&self, doc: &str) -> Doc {
        let store = &self.server().context().store;
        match self.rt.block_on(store.load(doc, false)) {
            Ok(Loaded::Doc(stored)) => quire_backend::document::build_doc(doc, &stored),
            Ok(Loaded::Missing) => client_doc(),
            Ok(Loaded::Deleted) => panic!("document {doc} is deleted"),
            Err(e) => panic!("cannot load {doc} from the store: {e}"),
        }
    }
}

/// A replica's connection: the actor's inbox and the frames in flight each way.
struct Link {
    conn: ConnId,
    inbox: mpsc::Sender<Command>,
    out: mpsc::Receiver<Bytes>,
    kick: oneshot::Receiver<CloseReason>,
    up: Vec<Vec<u8>>,
    down: Vec<Bytes>,
}

struct Replica {
    doc: Doc,
    text: TextRef,
    undo: UndoManager,
    /// Only what the server sent: what this replica saw of the others (and of itself, echoed
    /// through sync steps). Everything in it must be durable.
    seen: Doc,
    /// Updates received but not yet integrated, for `doc` and `seen` (quire_backend::holdback:
    /// yrs alone integrates out-of-order blocks behind holes and can misplace them).
    holdback: Holdback,
    seen_holdback: Holdback,
    /// Local updates not yet handed to a link.
    outgoing: Arc<Mutex<Vec<Vec<u8>>>>,
    link: Option<Link>,
}

impl Replica {
    /// `client`: the replica's yrs client id, from the case's seed, so a case replays exactly
    /// (the order of concurrent inserts depends on client ids).
    fn new(client: u64) -> Replica {
        let doc = Doc::with_options(yrs::Options {
            client_id: yrs::ClientID::new(client),
            offset_kind: yrs::OffsetKind::Utf16,
            ..yrs::Options::default()
        });
        let text = doc.get_or_insert_text(TEXT_NAME);
        let outgoing = Arc::new(Mutex::new(Vec::new()));
        let sink = outgoing.clone();
        doc.observe_update_v1("sim-replica", move |txn, event| {
            if txn.origin() != Some(&Origin::from(REMOTE)) {
                sink.lock().unwrap().push(event.update.clone());
            }
        })
        .unwrap();
        let mut undo = UndoManager::with_options(UndoOptions {
            // Every local transaction is its own undo step: time must not matter.
            capture_timeout_millis: 0,
            ..UndoOptions::default()
        });
        undo.expand_scope(&doc, &text);
        Replica {
            doc,
            text,
            undo,
            seen: client_doc(),
            holdback: Holdback::default(),
            seen_holdback: Holdback::default(),
            outgoing,
            link: None,
        }
    }

    fn text(&self) -> String {
        self.text.get_string(&self.doc.transact())
    }

    /// Moves local updates onto the link (lost if disconnected: resync brings them later).
    fn flush_outgoing(&mut self) {
        let updates = std::mem::take(&mut *self.outgoing.lock().unwrap());
        if let Some(link) = self.link.as_mut() {
            link.up.extend(updates.iter().map(|u| update_frame(u)));
        }
    }

    fn edit(&mut self, rng: &mut Rng, stats: &mut Stats) {
        let roll = rng.below(100);
        if roll < 8 {
            stats.undos += 1;
            self.undo.undo_blocking();
        } else if roll < 12 {
            stats.redos += 1;
            self.undo.redo_blocking();
        } else {
            stats.edits += 1;
            let mut txn = self.doc.transact_mut();
            let current = self.text.get_string(&txn);
            let len = current.chars().count();
            let kind = rng.below(10);
            let insert: String = (0..1 + rng.below(3)).map(|_| *rng.pick(PIECES)).collect();
            if kind < 5 || len == 0 {
                let pos = rng.below(len + 1);
                let at = utf16_offset(&current, pos);
                self.text.insert(&mut txn, at, &insert);
            } else {
                let pos = rng.below(len);
                let del = 1 + rng.below((len - pos).min(6));
                let start = utf16_offset(&current, pos);
                let end = utf16_offset(&current, pos + del);
                self.text.remove_range(&mut txn, start, end - start);
                if kind >= 8 {
                    self.text.insert(&mut txn, start, &insert);
                }
            }
        }
        self.flush_outgoing();
    }

    /// Handles one frame from the server, as a y-websocket client does.
    fn receive(&mut self, frame: &[u8]) {
        let mut decoder = DecoderV1::new(Cursor::new(frame));
        let msgs: Vec<Message> = MessageReader::new(&mut decoder)
            .collect::<Result<_, _>>()
            .unwrap_or_else(|e| panic!("the server sent a frame that does not decode: {e}"));
        for msg in msgs {
            match msg {
                Message::Sync(SyncMessage::SyncStep1(sv)) => {
                    // As the server answers: the integrated state, then what still waits.
                    let reply = self.doc.transact().encode_diff_v1(&sv);
                    if let Some(link) = self.link.as_mut() {
                        link.up
                            .push(yrs::updates::encoder::Encode::encode_v1(&Message::Sync(
                                SyncMessage::SyncStep2(reply),
                            )));
                        for u in self.holdback.unsettled_batched(8) {
                            link.up.push(update_frame(&u));
                        }
                    }
                }
                Message::Sync(SyncMessage::SyncStep2(u) | SyncMessage::Update(u)) => {
                    for (doc, holdback) in [
                        (&self.doc, &mut self.holdback),
                        (&self.seen, &mut self.seen_holdback),
                    ] {
                        let update = Update::decode_v1(&u).expect("server update decodes");
                        holdback
                            .apply(&mut doc.transact_mut_with(REMOTE), &u, update)
                            .expect("server update applies");
                    }
                }
                _ => {}
            }
        }
    }
}

fn connect(server: &mut Incarnation, doc: &str, replica: &mut Replica) {
    assert!(replica.link.is_none());
    let conn = server.next_conn;
    server.next_conn += 1;
    let documents = server.server().documents().clone();
    let link = loop {
        let (out_tx, out_rx) = mpsc::channel(4096);
        let (kick_tx, kick_rx) = oneshot::channel();
        match server
            .rt
            .block_on(documents.join(doc, conn, out_tx, kick_tx, None))
        {
            Ok(Some(inbox)) => {
                break Link {
                    conn,
                    inbox,
                    out: out_rx,
                    kick: kick_rx,
                    up: Vec::new(),
                    down: Vec::new(),
                }
            }
            Ok(None) => continue,
            Err(reason) => panic!("join refused: {reason:?}"),
        }
    };
    replica.link = Some(link);
    // A (re)connecting client opens with SyncStep1; its local changes arrive through the
    // server's SyncStep1, answered with SyncStep2.
    replica.outgoing.lock().unwrap().clear();
    let sv = replica.doc.transact().state_vector();
    replica
        .link
        .as_mut()
        .unwrap()
        .up
        .push(sync_step1_frame(&sv));
}

fn disconnect(server: &Incarnation, replica: &mut Replica) {
    if let Some(link) = replica.link.take() {
        let _ = server
            .rt
            .block_on(link.inbox.send(Command::Leave { conn: link.conn }));
    }
}

/// Hands one frame to the actor (decoded as the connection task does).
fn to_server(server: &Incarnation, link: &Link, frame: &[u8]) {
    let msgs = decode_frame(frame)
        .unwrap_or_else(|e| panic!("an honest frame does not decode: {e}: {frame:?}"));
    server
        .rt
        .block_on(link.inbox.send(Command::Messages {
            conn: link.conn,
            msgs,
        }))
        .unwrap_or_else(|_| panic!("the actor's inbox closed"));
    if std::env::var("QUIRE_SIM_DEBUG").as_deref() == Ok("2") {
        let doc = DEBUG_DOC.with(|d| d.borrow().clone());
        server.barrier(&doc);
        let (_, state) = server.server_state(&doc);
        let mem = client_doc();
        mem.transact_mut()
            .apply_update(Update::decode_v1(&state).unwrap())
            .unwrap();
        let stored = server.stored_doc(&doc);
        let u = Update::decode_v1(&frame[3..]).ok();
        let rows = server
            .rt
            .block_on(server.server().context().store.op_count(&doc))
            .unwrap_or(-1);
        eprintln!(
            "to_server frame {:?} rows {rows}: mem {:?} stored {:?} {}",
            &frame[..2],
            text_of(&mem),
            text_of(&stored),
            if text_of(&mem) == text_of(&stored) {
                ""
            } else {
                "<<<<<< DIFF"
            }
        );
        if let Some(u) = u {
            eprintln!("    update: {u:?}");
        }
    }
}

thread_local! {
    static DEBUG_DOC: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Moves what the actor produced so far onto the links, after a barrier.
fn pump(server: &Incarnation, doc: &str, replicas: &mut [Replica]) {
    if replicas.iter().all(|r| r.link.is_none()) {
        // Nobody connected: nothing to pump (and the document may not exist yet).
        return;
    }
    server.barrier(doc);
    if std::env::var_os("QUIRE_SIM_DEBUG").is_some() {
        let (text, state) = server.server_state(doc);
        let d = client_doc();
        d.transact_mut()
            .apply_update(Update::decode_v1(&state).unwrap())
            .unwrap();
        let crdt = text_of(&d);
        eprintln!(
            "pump: {} {:?}",
            if text == crdt { "same" } else { "DIFF" },
            crdt
        );
        if text != crdt {
            eprintln!("      mirror {text:?}");
        }
    }
    for r in replicas.iter_mut() {
        if let Some(link) = r.link.as_mut() {
            while let Ok(frame) = link.out.try_recv() {
                link.down.push(frame);
            }
            if let Ok(reason) = link.kick.try_recv() {
                panic!("the server closed an honest replica's connection: {reason:?}");
            }
        }
    }
}

/// Picks an in-flight frame (any of them: reordering), maybe keeps a copy (duplication) or
/// loses it (drop).
fn take_frame<T: Clone>(
    queue: &mut Vec<T>,
    rng: &mut Rng,
    lossy: bool,
    stats: &mut Stats,
) -> Option<T> {
    if queue.is_empty() {
        return None;
    }
    // One connection is FIFO (TCP): delays reorder frames only across connections, and a
    // connection loses frames only as the tail of its queue when it drops. A chaotic case
    // also reorders and drops frames inside a connection, as a hostile or broken client may:
    // updates then arrive before their client's earlier ones (quire_holdback's work).
    let chaotic = lossy && chaotic();
    let i = if chaotic { rng.below(queue.len()) } else { 0 };
    if chaotic && rng.below(100) < 4 {
        stats.dropped += 1;
        queue.remove(i);
        return None;
    }
    stats.delivered += 1;
    if lossy && rng.below(100) < 6 {
        stats.duplicated += 1;
        return Some(queue[i].clone());
    }
    Some(queue.remove(i))
}

/// Shrinks failing case `seed`: the fewest random steps (then quiescence and the checks) that
/// still fail, on a fresh server over the same store. Cases are 30–120 steps of milliseconds,
/// so trying every prefix in turn is quick.
fn shrink(seed: u64, url: &str) -> Option<usize> {
    let quiet = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut found = None;
    let mut server = Incarnation::start(url);
    for k in 0..120 {
        if server.server.is_none() {
            // A trial failed mid-restart: start again.
            server = Incarnation::start(url);
        }
        let failed = std::panic::catch_unwind(AssertUnwindSafe(|| {
            run_case_steps(seed, Some(k), &mut server, url, &mut Stats::default())
        }))
        .is_err();
        if failed {
            found = Some(k);
            break;
        }
    }
    std::panic::set_hook(quiet);
    found
}

/// Whether the running case reorders and drops frames inside one connection too.
fn chaotic() -> bool {
    CHAOTIC.with(|c| c.get())
}

/// Whether case `seed` runs on the chaotic network: every case with `QUIRE_SIM_CHAOTIC_NET=1`,
/// none with `=0`, by default the odd seeds (half the cases), so a seed alone replays a case.
fn chaotic_case(seed: u64) -> bool {
    FORCE_CHAOTIC.with(|f| f.get())
        || match std::env::var("QUIRE_SIM_CHAOTIC_NET").as_deref() {
            Ok("0") => false,
            Ok(_) => true,
            Err(_) => seed % 2 == 1,
        }
}

thread_local! {
    static CHAOTIC: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static FORCE_CHAOTIC: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Chaotic-network cases that once failed, replayed in the default run (a few ms each).
/// 5067: gaps inside a connection left the server with pending blocks; yrs' merged encoding
/// of them (`encode_state_as_update_v1`, then used for SyncStep2) moved a block from clock 21
/// to clock 36, which every replica integrated and the server never had.
/// 5172: relaying what a gap-filling update newly integrated (an earlier fix) left a replica
/// with pending blocks the server did not have.
/// 779613: the witness check compared against the store's document re-encoded with its
/// pending blocks merged in, which dropped blocks integrated after a gap.
#[test]
fn chaotic_net_regressions() {
    FORCE_CHAOTIC.with(|f| f.set(true));
    let dir = scratch_dir();
    let url = format!("sqlite:{}", dir.join("sim.db").display());
    let mut stats = Stats::default();
    let mut server = Incarnation::start(&url);
    for seed in [5067, 5172, 779613] {
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            run_case(seed, &mut server, &url, &mut stats)
        }));
        if let Err(panic) = result {
            eprintln!(
                "chaotic-network regression case {seed} FAILED. Replay with:\n  \
                 QUIRE_SIM_CHAOTIC_NET=1 QUIRE_SIM_SEED={seed} QUIRE_SIM_CASES=1 cargo test -p quire-tests --test simulation simulation -- --nocapture"
            );
            std::panic::resume_unwind(panic);
        }
    }
    server.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The op-log rows the server held in case 5067 (updates of clients 1834026082249 and
/// 3993952040691, the latter's with gaps in its clocks). yrs alone integrates some gapped
/// blocks behind holes, keeps the rest pending, and its merged encoding puts the pending block
/// `3993952040691#21` ("\né") at clock 36. Through the holdback, a peer syncing from this
/// document (integrated state, then the unsettled rows as they came) ends up with exactly the
/// server's state, and nobody has a block at a clock its client never wrote.
#[test]
fn gapped_rows_sync_without_misplaced_blocks() {
    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }
    const ROWS: &[&str] = &[
        "0101c9bfe4a3b03500040107636f6e74656e740565cc81200a00",
        "0101c9bfe4a3b03504c4c9bfe4a3b03500c9bfe4a3b035010378797a01c9bfe4a3b035010001",
        "0101f3edded09e740184f3edded09e74000b65cc81f09f918df09f8fbd00",
        "0001f3edded09e74010904",
        "0101f3edded09e7409c4c9bfe4a3b03501c9bfe4a3b0350209e2889178797a65cc8100",
        "0101f3edded09e7412c4f3edded09e740df3edded09e740e042065cc8100",
        "0101f3edded09e741584f3edded09e7411030ac3a901f3edded09e74011101",
        "0101f3edded09e7423c4f3edded09e740df3edded09e741202c39f02c9bfe4a3b035010101f3edded09e74020d011e05",
    ];
    let rows: Vec<Vec<u8>> = ROWS.iter().map(|r| hex(r)).collect();
    let misplaced = |bytes: &[u8]| {
        let update = Update::decode_v1(bytes).unwrap();
        format!("{update:?}").contains("<3993952040691#36>")
    };
    let feed = |doc: &Doc, holdback: &mut Holdback, bytes: &[u8]| {
        let update = Update::decode_v1(bytes).unwrap();
        holdback
            .apply(&mut doc.transact_mut(), bytes, update)
            .unwrap();
    };
    let server = quire_backend::document::server_doc();
    let mut server_hb = Holdback::default();
    for row in &rows {
        feed(&server, &mut server_hb, row);
    }
    assert!(
        !server_hb.is_empty(),
        "these rows leave blocks waiting for missing ones"
    );
    let state = server.transact().encode_diff_v1(&StateVector::default());
    assert!(
        !misplaced(&state),
        "the integrated state has a block at #36"
    );
    let peer = client_doc();
    let mut peer_hb = Holdback::default();
    feed(&peer, &mut peer_hb, &state);
    for bytes in server_hb.unsettled() {
        feed(&peer, &mut peer_hb, bytes);
    }
    assert_eq!(text_of(&peer), text_of(&server));
    assert_eq!(
        peer.transact().state_vector(),
        server.transact().state_vector()
    );
    assert_eq!(
        peer_hb.unsettled().collect::<Vec<_>>(),
        server_hb.unsettled().collect::<Vec<_>>(),
        "the peer waits for the same updates"
    );
}

fn run_case(seed: u64, slot: &mut Incarnation, url: &str, stats: &mut Stats) {
    run_case_steps(seed, None, slot, url, stats)
}

/// Runs case `seed`, stopping its random phase after `max_steps` steps when given (then the
/// same quiescence and checks): the shrinker's smaller versions of a failing case.
fn run_case_steps(
    seed: u64,
    max_steps: Option<usize>,
    slot: &mut Incarnation,
    url: &str,
    stats: &mut Stats,
) {
    let mut rng = Rng::new(seed);
    let chaotic = chaotic_case(seed);
    CHAOTIC.with(|c| c.set(chaotic));
    stats.chaotic_cases += u64::from(chaotic);
    let doc = match max_steps {
        None => format!("sim-{seed}"),
        Some(k) => format!("sim-{seed}-{k}"),
    };
    DEBUG_DOC.with(|d| *d.borrow_mut() = doc.clone());
    let n = 2 + rng.below(7);
    let steps = 30 + rng.below(90);
    let mut replicas: Vec<Replica> = (0..n)
        .map(|k| Replica::new(1 + k as u64 + (rng.next_u64() % (1 << 40)) * 8))
        .collect();
    for r in replicas.iter_mut() {
        if rng.below(4) != 0 {
            connect(slot, &doc, r);
        }
    }
    for _ in 0..max_steps.map_or(steps, |k| k.min(steps)) {
        let i = rng.below(n);
        match rng.below(100) {
            0..=34 => replicas[i].edit(&mut rng, stats),
            35..=59 => {
                let r = &mut replicas[i];
                if let Some(link) = r.link.as_mut() {
                    if let Some(frame) = take_frame(&mut link.up, &mut rng, true, stats) {
                        to_server(slot, link, &frame);
                    }
                }
            }
            60..=84 => {
                let r = &mut replicas[i];
                let frame = r
                    .link
                    .as_mut()
                    .and_then(|link| take_frame(&mut link.down, &mut rng, true, stats));
                if let Some(frame) = frame {
                    r.receive(&frame);
                }
            }
            85..=92 => pump(slot, &doc, &mut replicas),
            93..=97 => {
                if replicas[i].link.is_some() {
                    disconnect(slot, &mut replicas[i]);
                } else {
                    stats.reconnects += 1;
                    connect(slot, &doc, &mut replicas[i]);
                }
            }
            _ => {
                // Server restart: a crash (most of the time) or a clean shutdown.
                for r in replicas.iter_mut() {
                    r.link = None;
                }
                let placeholder = Incarnation::empty();
                let old = std::mem::replace(slot, placeholder);
                let clean = rng.below(4) == 0;
                if std::env::var_os("QUIRE_SIM_DEBUG").is_some() {
                    eprintln!("restart: clean={clean}");
                }
                if clean {
                    stats.clean_restarts += 1;
                    old.shutdown();
                } else {
                    stats.crashes += 1;
                    old.crash();
                }
                *slot = Incarnation::start(url);
                // Whatever any replica received from the server survived.
                let stored = slot.stored_doc(&doc);
                for (k, r) in replicas.iter().enumerate() {
                    // A replica holding updates that wait for missing dependencies is checked by
                    // state vector only here: merging its pending blocks with the server's can
                    // integrate content neither side has integrated (see TESTING.md); the full
                    // check runs at quiescence.
                    if r.seen.transact().has_missing_updates() || !r.seen_holdback.is_empty() {
                        assert_sv_contains(
                            &stored,
                            &r.seen,
                            &format!("after a restart, replica {k}"),
                        );
                        stats.pending_witnesses += 1;
                    } else {
                        assert_contains(&stored, &r.seen, &format!("after a restart, replica {k}"));
                    }
                }
            }
        }
    }

    // Quiescence: everyone reconnects over a reliable network and syncs.
    for r in replicas.iter_mut() {
        disconnect(slot, r);
    }
    for r in replicas.iter_mut() {
        connect(slot, &doc, r);
    }
    for round in 0.. {
        assert!(round < 100, "no quiescence after 100 rounds");
        let mut moved = false;
        for r in replicas.iter_mut() {
            r.flush_outgoing();
            let link = r.link.as_mut().unwrap();
            for frame in std::mem::take(&mut link.up) {
                moved = true;
                to_server(slot, link, &frame);
            }
        }
        pump(slot, &doc, &mut replicas);
        for r in replicas.iter_mut() {
            let frames = std::mem::take(&mut r.link.as_mut().unwrap().down);
            for frame in frames {
                moved = true;
                r.receive(&frame);
            }
        }
        if !moved {
            break;
        }
    }

    let (server_text, server_state) = slot.server_state(&doc);
    let server_doc = client_doc();
    server_doc
        .transact_mut()
        .apply_update(Update::decode_v1(&server_state).unwrap())
        .unwrap();
    let crdt_text = text_of(&server_doc);
    assert_eq!(
        server_text, crdt_text,
        "the server's mirror and CRDT differ"
    );
    let server_sv = server_doc.transact().state_vector();
    for (k, r) in replicas.iter().enumerate() {
        assert!(
            // (`seen` may keep some: it lacks the replica's own edits, which the server does
            // not send back.)
            r.holdback.is_empty(),
            "replica {k} still has updates it could not integrate: {}; its state vector {:?}",
            r.holdback.describe(),
            r.doc.transact().state_vector()
        );
        assert_eq!(
            r.text(),
            server_text,
            "replica {k} of {n} did not converge with the server"
        );
        assert_eq!(
            r.doc.transact().state_vector(),
            server_sv,
            "replica {k}'s state vector differs from the server's"
        );
        assert_contains(&server_doc, &r.seen, &format!("at the end, replica {k}"));
        assert_contains(&server_doc, &r.doc, &format!("at the end, replica {k}"));
    }
    let stored = slot.stored_doc(&doc);
    if text_of(&stored) != server_text && std::env::var_os("QUIRE_SIM_DEBUG").is_some() {
        let store = &slot.server().context().store;
        if let Ok(Loaded::Doc(rows)) = slot.rt.block_on(store.load(&doc, false)) {
            let d = quire_backend::document::server_doc();
            for (_, bytes) in rows.snapshot.iter() {
                d.transact_mut()
                    .apply_update(Update::decode_v1(bytes).unwrap())
                    .unwrap();
            }
            for op in &rows.ops {
                d.transact_mut()
                    .apply_update(Update::decode_v1(&op.update_v1).unwrap())
                    .unwrap();
            }
            eprintln!(
                "snapshot: {:?}, {} ops; one txn per row gives {:?}; pending {:?}",
                rows.snapshot.as_ref().map(|s| s.0),
                rows.ops.len(),
                text_of(&d),
                stored
                    .transact()
                    .store()
                    .pending_update()
                    .map(|p| p.missing.clone())
            );
        }
    }
    assert_eq!(
        text_of(&stored),
        server_text,
        "the state reloaded from the store differs from the server's"
    );
    assert_eq!(
        stored.transact().state_vector(),
        server_sv,
        "the store's state vector differs from the server's"
    );
    for r in replicas.iter_mut() {
        disconnect(slot, r);
    }
}

fn text_of(doc: &Doc) -> String {
    let txn = doc.transact();
    txn.get_text(TEXT_NAME)
        .map(|t| t.get_string(&txn))
        .unwrap_or_default()
}

/// Panics unless `big`'s state vector dominates `small`'s.
fn assert_sv_contains(big: &Doc, small: &Doc, what: &str) {
    let big_sv: StateVector = big.transact().state_vector();
    for (client, clock) in small.transact().state_vector().iter() {
        assert!(
            big_sv.get(client) >= *clock,
            "{what}: had client {client}'s ops up to clock {clock}, the server only up to {}",
            big_sv.get(client)
        );
    }
}

/// Panics unless `big` holds everything `small` holds: its state vector dominates, and merging
/// `small` in (deletions included) changes nothing.
fn assert_contains(big: &Doc, small: &Doc, what: &str) {
    assert_sv_contains(big, small, what);
    let big_sv: StateVector = big.transact().state_vector();
    for (client, clock) in small.transact().state_vector().iter() {
        assert!(
            big_sv.get(client) >= *clock,
            "{what}: had client {client}'s ops up to clock {clock}, the server only up to {}",
            big_sv.get(client)
        );
    }
    // Integrated state only (`encode_diff`): yrs' encoding of pending blocks can misplace
    // them (quire_backend::holdback).
    let big_state = big.transact().encode_diff_v1(&StateVector::default());
    let small_state = small.transact().encode_diff_v1(&StateVector::default());
    let merged = merged_text([big_state.as_slice(), small_state.as_slice()]).unwrap();
    let alone = merged_text([big_state.as_slice()]).unwrap();
    assert_eq!(merged, alone, "{what}: had edits the server lost");
}
