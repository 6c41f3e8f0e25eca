//! The document actor: one task per open document owns its yrs `Doc` and `Awareness`.
//!
//! Connections talk to it over one bounded inbox ([`Command`]); it answers over each connection's
//! bounded outbound queue and never waits on a connection, so a stuck client cannot stall it.
//!
//! It works in rounds. A round takes every command waiting in the inbox (up to a cap), applies
//! them, then commits the updates that changed the document to the op log in ONE transaction
//! (group commit), and only then sends what the round produced: relayed updates, sync replies,
//! awareness. Nothing leaves the server before it is durable, so whatever a collaborator has seen
//! survives kill -9; while a commit is in flight the next round's commands queue up and share
//! the next commit. If the database is away, the commit is retried with backoff and the document
//! waits (editors keep their edits locally and the inbox applies back-pressure).

use std::collections::{HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use yrs::sync::{Awareness, AwarenessUpdate};
use yrs::updates::decoder::Decode;
use yrs::{ClientID, Doc, Options, ReadTxn, StateVector, Transact, Update};

use crate::documents::Documents;
use crate::protocol::{self, close, Incoming};
use crate::server::Context;
use crate::store::{NewOp, StoredDoc};

/// Commands handled in one round at most, so one round's commit stays bounded and one round's
/// relays fit several times into a client's outbound queue.
const MAX_ROUND: usize = 512;

/// Identifies a connection for the lifetime of the process.
pub type ConnId = u64;

/// Why a connection is being closed: a WebSocket close code and a human-readable reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReason {
    pub code: u16,
    pub reason: String,
}

impl CloseReason {
    pub fn new(code: u16, reason: impl Into<String>) -> CloseReason {
        CloseReason {
            code,
            reason: reason.into(),
        }
    }
}

/// What connections send to a document actor.
pub enum Command {
    /// Attach a connection. `ack` is answered once the document's stored state is loaded and the
    /// initial SyncStep1 and awareness are queued; a dropped `ack` means "retry the join".
    Join {
        conn: ConnId,
        out: mpsc::Sender<Bytes>,
        kick: oneshot::Sender<CloseReason>,
        ack: oneshot::Sender<()>,
    },
    Leave {
        conn: ConnId,
    },
    Messages {
        conn: ConnId,
        msgs: Vec<Incoming>,
    },
}

struct Conn {
    out: mpsc::Sender<Bytes>,
    kick: Option<oneshot::Sender<CloseReason>>,
    /// Awareness client ids this connection announced; removed when it closes.
    clients: HashSet<ClientID>,
}

enum Target {
    All,
    AllBut(ConnId),
    One(ConnId),
}

pub(crate) struct Actor {
    id: Arc<str>,
    generation: u64,
    ctx: Arc<Context>,
    documents: Weak<Documents>,
    rx: mpsc::Receiver<Command>,
    awareness: Awareness,
    conns: HashMap<ConnId, Conn>,
    last_seq: i64,
    /// Updates applied this round, waiting for the group commit.
    uncommitted: Vec<NewOp>,
    /// Messages produced this round, sent after the commit.
    outbox: Vec<(Target, Bytes)>,
    ops_since_snapshot: u64,
    bytes_since_snapshot: u64,
    compaction: Option<JoinHandle<()>>,
    /// Set when yrs failed mid-update: the in-memory doc may be damaged, so it is rebuilt from
    /// the store (which holds only good updates) after the round's commit.
    needs_rebuild: bool,
    idle_since: Option<Instant>,
}

impl Actor {
    pub(crate) fn new(
        id: Arc<str>,
        generation: u64,
        ctx: Arc<Context>,
        documents: Weak<Documents>,
        rx: mpsc::Receiver<Command>,
    ) -> Actor {
        Actor {
            id,
            generation,
            ctx,
            documents,
            rx,
            awareness: Awareness::new(new_doc()),
            conns: HashMap::new(),
            last_seq: 0,
            uncommitted: Vec::new(),
            outbox: Vec::new(),
            ops_since_snapshot: 0,
            bytes_since_snapshot: 0,
            compaction: None,
            needs_rebuild: false,
            idle_since: Some(Instant::now()),
        }
    }

    pub(crate) async fn run(mut self) {
        let shutdown = self.ctx.shutdown.clone();
        // Nothing is served before the stored state has loaded: an empty document sent to a
        // client would merge back as "everything deleted" in no CRDT, but it would show the
        // user an empty page and let them start typing into the wrong state.
        self.ctx
            .health
            .loading
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let loaded = self.load().await;
        self.ctx
            .health
            .loading
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        if !loaded {
            self.unregister();
            return;
        }
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                cmd = self.rx.recv() => {
                    let Some(cmd) = cmd else { break };
                    self.handle(cmd);
                    for _ in 1..MAX_ROUND {
                        match self.rx.try_recv() {
                            Ok(cmd) => self.handle(cmd),
                            Err(_) => break,
                        }
                    }
                    self.finish_round().await;
                }
                _ = tick.tick() => {
                    self.expire_awareness();
                    self.finish_round().await;
                    if self.try_unload().await {
                        return;
                    }
                }
            }
        }
        self.shut_down().await;
    }

    /// Loads the newest snapshot and the op log after it, retrying while the store is away.
    /// Returns false if the server shut down first.
    async fn load(&mut self) -> bool {
        let mut delay = Duration::from_millis(100);
        loop {
            let started = Instant::now();
            match self.ctx.store.load(&self.id).await {
                Ok(stored) => {
                    self.ctx.health.store_ok(true);
                    let doc = build_doc(&self.id, &stored);
                    self.awareness = Awareness::new(doc);
                    self.last_seq = stored.last_seq();
                    self.ops_since_snapshot = stored.ops.len() as u64;
                    self.bytes_since_snapshot =
                        stored.ops.iter().map(|op| op.update_v1.len() as u64).sum();
                    tracing::debug!(
                        doc = %self.id,
                        ops = stored.ops.len(),
                        snapshot = stored.snapshot.is_some(),
                        ms = started.elapsed().as_secs_f64() * 1e3,
                        "document loaded"
                    );
                    return true;
                }
                Err(err) => {
                    self.ctx.health.store_error(&err);
                    tracing::warn!(doc = %self.id, %err, "cannot load document; retrying");
                    tokio::select! {
                        _ = self.ctx.shutdown.cancelled() => return false,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Join {
                conn,
                out,
                kick,
                ack,
            } => {
                let sv = self.awareness.doc().transact().state_vector();
                self.conns.insert(
                    conn,
                    Conn {
                        out,
                        kick: Some(kick),
                        clients: HashSet::new(),
                    },
                );
                self.idle_since = None;
                self.outbox
                    .push((Target::One(conn), protocol::sync_step1(&sv)));
                if let Ok(update) = self.awareness.update() {
                    if !update.clients.is_empty() {
                        self.outbox
                            .push((Target::One(conn), protocol::awareness(update)));
                    }
                }
                let _ = ack.send(());
            }
            Command::Leave { conn } => self.remove_conn(conn),
            Command::Messages { conn, msgs } => {
                for msg in msgs {
                    // A connection kicked earlier in this round may still have messages queued.
                    if !self.conns.contains_key(&conn) {
                        return;
                    }
                    self.handle_message(conn, msg);
                }
            }
        }
    }

    fn handle_message(&mut self, conn: ConnId, msg: Incoming) {
        match msg {
            Incoming::SyncStep1(sv) => {
                let diff = self
                    .awareness
                    .doc()
                    .transact()
                    .encode_state_as_update_v1(&sv);
                self.outbox
                    .push((Target::One(conn), protocol::sync_step2(diff)));
            }
            Incoming::Update { bytes, update } => self.apply_update(conn, bytes, update),
            Incoming::Awareness(update) => self.apply_awareness(conn, update),
            Incoming::AwarenessQuery => {
                if let Ok(update) = self.awareness.update() {
                    self.outbox
                        .push((Target::One(conn), protocol::awareness(update)));
                }
            }
        }
    }

    fn apply_update(&mut self, conn: ConnId, bytes: Vec<u8>, update: Update) {
        let doc = self.awareness.doc();
        // yrs integrates untrusted input; contain a panic to this update and this connection.
        let result = catch_unwind(AssertUnwindSafe(|| {
            let mut txn = doc.transact_mut();
            let before = txn.state_vector();
            txn.apply_update(update).map_err(|e| e.to_string())?;
            // Unchanged state vector and no deletions: a resend of what we have, so no row.
            // While updates wait for missing dependencies, store everything to be safe: the
            // pending set survives a restart only through the op log.
            Ok::<bool, String>(
                txn.state_vector() != before
                    || !txn.delete_set().is_empty()
                    || txn.has_missing_updates(),
            )
        }));
        match result {
            Ok(Ok(true)) => {
                self.last_seq += 1;
                self.ops_since_snapshot += 1;
                self.bytes_since_snapshot += bytes.len() as u64;
                let relay = protocol::update(bytes.clone());
                self.uncommitted.push(NewOp {
                    seq: self.last_seq,
                    update_v1: bytes,
                    origin: Some(format!("conn-{conn}")),
                });
                self.outbox.push((Target::AllBut(conn), relay));
            }
            Ok(Ok(false)) => {}
            Ok(Err(err)) => {
                self.needs_rebuild = true;
                self.kick(
                    conn,
                    CloseReason::new(close::INVALID_PAYLOAD, format!("invalid update: {err}")),
                );
            }
            Err(_) => {
                self.needs_rebuild = true;
                tracing::error!(doc = %self.id, conn, "yrs panicked applying an update; document will be reloaded");
                self.kick(
                    conn,
                    CloseReason::new(
                        close::INVALID_PAYLOAD,
                        "invalid update: rejected by the CRDT",
                    ),
                );
            }
        }
    }

    fn apply_awareness(&mut self, conn: ConnId, update: AwarenessUpdate) {
        if let Some(c) = self.conns.get_mut(&conn) {
            for (id, entry) in &update.clients {
                if &*entry.json == "null" {
                    c.clients.remove(id);
                } else {
                    c.clients.insert(*id);
                }
            }
        }
        if let Err(err) = self.awareness.apply_update(update.clone()) {
            self.kick(
                conn,
                CloseReason::new(
                    close::INVALID_PAYLOAD,
                    format!("invalid awareness update: {err}"),
                ),
            );
            return;
        }
        // Echoed to the sender too: a lone y-websocket client counts a silent socket as dead
        // after 30 s, and its 15 s awareness renewal coming back is what keeps it alive.
        self.outbox.push((Target::All, protocol::awareness(update)));
    }

    /// Removes awareness states not renewed within the timeout and tells everyone.
    fn expire_awareness(&mut self) {
        let now = now_ms();
        let timeout = self.ctx.config.awareness_timeout_secs * 1000;
        let stale: Vec<ClientID> = self
            .awareness
            .iter()
            .filter(|(_, state)| {
                state.data.is_some() && now.saturating_sub(state.last_updated) > timeout
            })
            .map(|(id, _)| id)
            .collect();
        self.remove_awareness(stale);
    }

    fn remove_awareness(&mut self, clients: Vec<ClientID>) {
        if clients.is_empty() {
            return;
        }
        for id in &clients {
            self.awareness.remove_state(*id);
        }
        if let Ok(update) = self.awareness.update_with_clients(clients) {
            self.outbox.push((Target::All, protocol::awareness(update)));
        }
    }

    fn remove_conn(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.remove(&conn) {
            let live: Vec<ClientID> = c
                .clients
                .into_iter()
                .filter(|id| self.awareness.meta(*id).is_some())
                .collect();
            self.remove_awareness(live);
        }
        if self.conns.is_empty() && self.idle_since.is_none() {
            self.idle_since = Some(Instant::now());
        }
    }

    fn kick(&mut self, conn: ConnId, reason: CloseReason) {
        if let Some(c) = self.conns.get_mut(&conn) {
            tracing::info!(doc = %self.id, conn, code = reason.code, reason = %reason.reason, "closing connection");
            if let Some(kick) = c.kick.take() {
                let _ = kick.send(reason);
            }
        }
        self.remove_conn(conn);
    }

    /// Commits the round's updates, then sends what the round produced.
    async fn finish_round(&mut self) {
        self.commit().await;
        while !self.outbox.is_empty() {
            let mut overflowed = Vec::new();
            let mut gone = Vec::new();
            for (target, frame) in std::mem::take(&mut self.outbox) {
                for (&id, conn) in &self.conns {
                    let wanted = match target {
                        Target::All => true,
                        Target::AllBut(except) => id != except,
                        Target::One(only) => id == only,
                    };
                    if wanted {
                        match conn.out.try_send(frame.clone()) {
                            Ok(()) => {}
                            Err(mpsc::error::TrySendError::Full(_)) => overflowed.push(id),
                            // Its socket task ended; its Leave may still be on the way.
                            Err(mpsc::error::TrySendError::Closed(_)) => gone.push(id),
                        }
                    }
                }
            }
            gone.sort_unstable();
            gone.dedup();
            for id in gone {
                self.remove_conn(id);
            }
            overflowed.sort_unstable();
            overflowed.dedup();
            for id in overflowed {
                // Its queue is full, so it has missed updates: close it; reconnecting resyncs.
                self.kick(
                    id,
                    CloseReason::new(
                        close::TRY_AGAIN_LATER,
                        "client too slow: outbound queue overflowed; reconnect to resync",
                    ),
                );
            }
        }
        if self.needs_rebuild {
            self.needs_rebuild = false;
            self.rebuild().await;
        }
        self.maybe_compact();
    }

    async fn commit(&mut self) {
        if self.uncommitted.is_empty() {
            return;
        }
        let mut delay = Duration::from_millis(50);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            match self.ctx.store.append(&self.id, &self.uncommitted).await {
                Ok(inserted) => {
                    if inserted < self.uncommitted.len() as u64 && attempt == 1 {
                        tracing::error!(doc = %self.id, "op-log sequence numbers already taken: is another server writing this document?");
                    }
                    self.ctx.health.store_ok(true);
                    break;
                }
                Err(err) => {
                    self.ctx.health.store_error(&err);
                    tracing::warn!(doc = %self.id, %err, attempt, updates = self.uncommitted.len(), "op-log append failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
        self.uncommitted.clear();
    }

    /// Reloads the document from the store after yrs failed mid-update.
    async fn rebuild(&mut self) {
        let states = self.awareness.update().ok();
        if self.load().await {
            if let Some(states) = states {
                let _ = self.awareness.apply_update(states);
            }
        }
    }

    /// Starts a background snapshot when the op-log tail passed a threshold. Encoding happens
    /// here (milliseconds); the write does not hold up the next round.
    fn maybe_compact(&mut self) {
        let cfg = &self.ctx.config;
        if self.ops_since_snapshot < cfg.snapshot_ops
            && self.bytes_since_snapshot < cfg.snapshot_bytes
        {
            return;
        }
        if self.compaction.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        let state = self.encode_state();
        let (store, id, seq) = (self.ctx.store.clone(), self.id.clone(), self.last_seq);
        let retention = cfg.op_retention();
        self.ops_since_snapshot = 0;
        self.bytes_since_snapshot = 0;
        self.compaction = Some(tokio::spawn(async move {
            if let Err(err) = store.save_snapshot(&id, seq, &state, 2, retention).await {
                // The op log still holds everything; the next threshold tries again.
                tracing::warn!(doc = %id, %err, "snapshot failed");
            }
        }));
    }

    fn encode_state(&self) -> Vec<u8> {
        self.awareness
            .doc()
            .transact()
            .encode_state_as_update_v1(&StateVector::default())
    }

    /// Unloads the document when it has had no connection for the idle timeout and everything
    /// is durable. Returns true when the actor should stop.
    async fn try_unload(&mut self) -> bool {
        let idle = self
            .idle_since
            .is_some_and(|t| t.elapsed() >= self.ctx.config.idle_unload());
        if !idle || !self.conns.is_empty() || !self.uncommitted.is_empty() {
            return false;
        }
        if let Some(h) = self.compaction.take() {
            let _ = h.await;
        }
        let Some(documents) = self.documents.upgrade() else {
            return true;
        };
        if !documents.remove_if_idle(&self.id, self.generation, &self.rx) {
            return false;
        }
        // Joins that raced in are dropped with their ack, so those connections retry and
        // start a fresh actor.
        self.rx.close();
        while self.rx.try_recv().is_ok() {}
        tracing::debug!(doc = %self.id, "document unloaded");
        true
    }

    async fn shut_down(&mut self) {
        self.commit().await;
        if let Some(h) = self.compaction.take() {
            let _ = h.await;
        }
        if self.ops_since_snapshot > 0 {
            let state = self.encode_state();
            if let Err(err) = self
                .ctx
                .store
                .save_snapshot(
                    &self.id,
                    self.last_seq,
                    &state,
                    2,
                    self.ctx.config.op_retention(),
                )
                .await
            {
                tracing::warn!(doc = %self.id, %err, "final snapshot failed; the op log has every update");
            }
        }
        for (_, conn) in self.conns.drain() {
            if let Some(kick) = conn.kick {
                let _ = kick.send(CloseReason::new(close::GOING_AWAY, "server shutting down"));
            }
        }
        self.unregister();
    }

    fn unregister(&self) {
        if let Some(documents) = self.documents.upgrade() {
            documents.remove(&self.id, self.generation);
        }
    }
}

/// A fresh yrs document as the server keeps it. Garbage collection is off: it would replace
/// deleted content by tombstones that updates arriving out of order may still refer to, and
/// history replays need the full content.
pub fn new_doc() -> Doc {
    Doc::with_options(Options {
        skip_gc: true,
        ..Options::default()
    })
}

/// Builds a document from its newest snapshot and the op log after it. A row that does not
/// decode is logged and skipped rather than making the whole document unloadable.
pub fn build_doc(id: &str, stored: &StoredDoc) -> Doc {
    let doc = new_doc();
    {
        let mut txn = doc.transact_mut();
        let rows = stored
            .snapshot
            .iter()
            .map(|(seq, state)| (*seq, state.as_slice()))
            .chain(
                stored
                    .ops
                    .iter()
                    .map(|op| (op.seq, op.update_v1.as_slice())),
            );
        for (seq, bytes) in rows {
            let applied = Update::decode_v1(bytes)
                .map_err(|e| e.to_string())
                .and_then(|u| txn.apply_update(u).map_err(|e| e.to_string()));
            if let Err(err) = applied {
                tracing::error!(doc = id, seq, %err, "stored update does not apply; skipped");
            }
        }
    }
    doc
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
