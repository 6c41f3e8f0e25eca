//! The document actor: one task per open document, the async shell around its [`Replica`].
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
//!
//! The REST API talks to it through the same inbox ([`Command::Api`]): its edits are applied
//! and committed in rounds like anyone's, and its answers, reads included, wait for the round's
//! commit.
//!
//! What the document does with each command lives in [`Replica`] (no I/O); the actor owns the
//! inbox, the rounds, the group commit, the connections' queues, timers, snapshots, unloading
//! and shutdown.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::command::{ApiRequest, CloseReason, Command, ConnId, DocError, Reply};
use super::replica::{Replica, ReplicaLimits};
use crate::context::Context;
use crate::documents::Documents;
use crate::metrics::{self, ErrorKind};
use crate::protocol::close;
use crate::store::{Loaded, StoredDoc};

/// Commands handled in one round at most, so one round's commit stays bounded and one round's
/// relays fit several times into a client's outbound queue.
const MAX_ROUND: usize = 512;

/// A connection's side of the actor: where its frames go and how it is closed.
struct Conn {
    out: mpsc::Sender<Bytes>,
    kick: Option<oneshot::Sender<CloseReason>>,
}

pub(crate) struct Actor {
    id: Arc<str>,
    generation: u64,
    /// Create the document if the store has none (a WebSocket opened it; the REST API does not
    /// create documents implicitly).
    create: bool,
    ctx: Arc<Context>,
    documents: Weak<Documents>,
    rx: mpsc::Receiver<Command>,
    /// The document itself; `None` until loaded.
    replica: Option<Replica>,
    conns: HashMap<ConnId, Conn>,
    /// The length the documents row records.
    recorded_length: i64,
    /// REST replies produced this round, sent after the commit.
    replies: Vec<Box<dyn FnOnce() + Send>>,
    /// A delete asked for this round, done after the commit.
    delete: Option<Reply<()>>,
    compaction: Option<JoinHandle<()>>,
    idle_since: Option<Instant>,
    /// Shared with [`Documents`]: when this document became idle (0: busy), after each round.
    idle_mark: Arc<AtomicU64>,
    /// Asked to unload now (`Command::Evict`) to make room for another document.
    evict: bool,
    /// When the current round took its first command (for the broadcast latency histogram).
    round_started: Instant,
}

enum Load {
    Ready,
    Missing,
    Deleted,
    ShutDown,
}

impl Actor {
    pub(crate) fn new(
        id: Arc<str>,
        generation: u64,
        create: bool,
        ctx: Arc<Context>,
        documents: Weak<Documents>,
        rx: mpsc::Receiver<Command>,
        idle_mark: Arc<AtomicU64>,
    ) -> Actor {
        Actor {
            id,
            generation,
            create,
            ctx,
            documents,
            rx,
            replica: None,
            conns: HashMap::new(),
            recorded_length: 0,
            replies: Vec::new(),
            delete: None,
            compaction: None,
            idle_since: Some(Instant::now()),
            idle_mark,
            evict: false,
            round_started: Instant::now(),
        }
    }

    fn limits(&self) -> ReplicaLimits {
        let cfg = &self.ctx.config;
        ReplicaLimits {
            max_document_bytes: cfg.max_document_bytes,
            snapshot_ops: cfg.snapshot_ops,
            snapshot_bytes: cfg.snapshot_bytes,
        }
    }

    /// The loaded document (`run` serves nothing before it is).
    fn replica(&mut self) -> &mut Replica {
        self.replica
            .as_mut()
            .expect("the actor handles commands only once its document has loaded")
    }

    pub(crate) async fn run(mut self) {
        let shutdown = self.ctx.shutdown.clone();
        // Nothing is served before the stored state has loaded: an empty document sent to a
        // client would merge back as "everything deleted" in no CRDT, but it would show the
        // user an empty page and let them start typing into the wrong state.
        self.ctx.health.loading.fetch_add(1, Ordering::Relaxed);
        let loaded = self.load().await;
        self.ctx.health.loading.fetch_sub(1, Ordering::Relaxed);
        match loaded {
            Load::Ready => {}
            Load::ShutDown => {
                self.unregister();
                return;
            }
            Load::Missing => return self.refuse_all(false),
            Load::Deleted => return self.refuse_all(true),
        }
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                cmd = self.rx.recv() => {
                    let Some(cmd) = cmd else { break };
                    self.round_started = Instant::now();
                    self.handle(cmd);
                    for _ in 1..MAX_ROUND {
                        match self.rx.try_recv() {
                            Ok(cmd) => self.handle(cmd),
                            Err(_) => break,
                        }
                    }
                    self.finish_round().await;
                    if self.finish_delete().await {
                        return;
                    }
                    if std::mem::take(&mut self.evict) && self.try_unload(true).await {
                        return;
                    }
                    self.publish_idle();
                }
                _ = tick.tick() => {
                    let timeout_ms = self.ctx.config.awareness_timeout_secs * 1000;
                    self.replica().expire_awareness(now_ms(), timeout_ms);
                    self.finish_round().await;
                    self.record_length().await;
                    if self.try_unload(false).await {
                        return;
                    }
                    self.publish_idle();
                }
            }
        }
        self.shut_down().await;
    }

    /// Reads the newest snapshot and the op log after it, retrying while the store is away.
    async fn read_stored(&mut self) -> Result<StoredDoc, Load> {
        let mut delay = Duration::from_millis(100);
        loop {
            let started = Instant::now();
            match self.ctx.store.load(&self.id, self.create).await {
                Ok(Loaded::Missing) => return Err(Load::Missing),
                Ok(Loaded::Deleted) => return Err(Load::Deleted),
                Ok(Loaded::Doc(stored)) => {
                    self.ctx.health.store_ok(true);
                    tracing::debug!(
                        doc = %self.id,
                        ops = stored.ops.len(),
                        snapshot = stored.snapshot.is_some(),
                        ms = started.elapsed().as_secs_f64() * 1e3,
                        "document read"
                    );
                    return Ok(stored);
                }
                Err(err) => {
                    self.ctx.health.store_error(&err);
                    metrics::get().error(ErrorKind::Store);
                    tracing::warn!(doc = %self.id, %err, "cannot load document; retrying");
                    tokio::select! {
                        _ = self.ctx.shutdown.cancelled() => return Err(Load::ShutDown),
                        _ = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    /// Loads the document, or reloads it keeping connections and presence (after yrs failed
    /// mid-update).
    async fn load(&mut self) -> Load {
        let stored = match self.read_stored().await {
            Ok(stored) => stored,
            Err(load) => return load,
        };
        match self.replica.as_mut() {
            Some(replica) => replica.reload(&stored),
            None => self.replica = Some(Replica::load(self.id.clone(), &stored, self.limits())),
        }
        let (last_seq, length) = {
            let replica = self.replica();
            (replica.last_seq(), replica.length())
        };
        self.recorded_length = length;
        if stored.recorded != (last_seq, length) {
            // Rows written before the document's version and length were recorded.
            let _ = self.ctx.store.set_stats(&self.id, last_seq, length).await;
        }
        Load::Ready
    }

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Join {
                conn,
                out,
                kick,
                ack,
            } => {
                self.conns.insert(
                    conn,
                    Conn {
                        out,
                        kick: Some(kick),
                    },
                );
                self.replica().join(conn);
                self.idle_since = None;
                let _ = ack.send(Ok(()));
            }
            Command::Leave { conn } => {
                self.conns.remove(&conn);
                self.replica().leave(conn);
            }
            Command::Evict => self.evict = true,
            Command::Api(request) => {
                if self.conns.is_empty() {
                    // REST use keeps a document loaded like a connection does.
                    self.idle_since = Some(Instant::now());
                }
                self.handle_api(request);
            }
            Command::Messages { conn, msgs } => {
                let replica = self.replica();
                for msg in msgs {
                    replica.receive(conn, msg);
                }
            }
        }
        self.send_kicks();
        self.note_idle();
    }

    /// Closes the connections the replica kicked.
    fn send_kicks(&mut self) {
        for (conn, reason) in self.replica().take_kicks() {
            if let Some(mut c) = self.conns.remove(&conn) {
                if let Some(kick) = c.kick.take() {
                    let _ = kick.send(reason);
                }
            }
        }
    }

    /// Starts the idle clock when the last connection went.
    fn note_idle(&mut self) {
        if self.conns.is_empty() && self.idle_since.is_none() {
            self.idle_since = Some(Instant::now());
        }
    }

    fn handle_api(&mut self, request: ApiRequest) {
        let replica = self.replica();
        match request {
            ApiRequest::Info { reply } => {
                let result = Ok(replica.info());
                self.reply(reply, result);
            }
            ApiRequest::Text { version, reply } => {
                let result = replica.text(version);
                self.reply(reply, result);
            }
            ApiRequest::Edits {
                version,
                edits,
                origin,
                reply,
            } => {
                let result = replica.edit(version, &edits, origin);
                self.reply(reply, result);
            }
            ApiRequest::ReplaceText {
                text,
                origin,
                reply,
            } => {
                let result = replica.replace_text(&text, origin);
                self.reply(reply, result);
            }
            ApiRequest::Update {
                update,
                origin,
                reply,
            } => {
                let result = replica.apply_update(update, origin);
                self.reply(reply, result);
            }
            ApiRequest::EncodeState { reply } => {
                let result = Ok((replica.encode_state(), replica.last_seq()));
                self.reply(reply, result);
            }
            ApiRequest::Search {
                searcher,
                limit,
                context,
                reply,
            } => {
                let result = Ok(replica.search(&searcher, limit, context));
                self.reply(reply, result);
            }
            ApiRequest::Complete {
                prefix,
                limit,
                reply,
            } => {
                let result = Ok(replica.complete(&prefix, limit));
                self.reply(reply, result);
            }
            ApiRequest::Delete { reply } => {
                if let Some(earlier) = self.delete.replace(reply) {
                    // Two deletes in one round: both succeed with the one delete.
                    self.replies.push(Box::new(move || {
                        let _ = earlier.send(Ok(()));
                    }));
                }
            }
        }
    }

    /// Queues `result` for after the round's commit.
    fn reply<T: Send + 'static>(&mut self, reply: Reply<T>, result: Result<T, DocError>) {
        self.replies.push(Box::new(move || {
            let _ = reply.send(result);
        }));
    }

    /// Syncs the mirror and records a changed length on the documents row (for listings).
    async fn record_length(&mut self) {
        let (last_seq, length) = {
            let replica = self.replica();
            (replica.last_seq(), replica.length())
        };
        if length != self.recorded_length
            && self
                .ctx
                .store
                .set_stats(&self.id, last_seq, length)
                .await
                .is_ok()
        {
            self.recorded_length = length;
        }
    }

    /// Commits the round's rows, then sends what the round produced.
    async fn finish_round(&mut self) {
        let had_updates = self.replica().has_ops();
        self.commit().await;
        for reply in std::mem::take(&mut self.replies) {
            reply();
        }
        loop {
            let outbox = self.replica().take_outbox();
            if outbox.is_empty() {
                break;
            }
            let mut overflowed = Vec::new();
            let mut gone = Vec::new();
            for (id, frame) in outbox.deliveries() {
                let Some(conn) = self.conns.get(&id) else {
                    continue;
                };
                match conn.out.try_send(frame.clone()) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => overflowed.push(id),
                    // Its socket task ended; its Leave may still be on the way.
                    Err(mpsc::error::TrySendError::Closed(_)) => gone.push(id),
                }
            }
            gone.sort_unstable();
            gone.dedup();
            for id in gone {
                self.conns.remove(&id);
                self.replica().leave(id);
            }
            overflowed.sort_unstable();
            overflowed.dedup();
            for id in overflowed {
                // Its queue is full, so it has missed updates: close it; reconnecting resyncs.
                self.replica().kick(
                    id,
                    CloseReason::new(
                        close::TRY_AGAIN_LATER,
                        "client too slow: outbound queue overflowed; reconnect to resync",
                    ),
                );
            }
            self.send_kicks();
            self.note_idle();
        }
        if had_updates {
            metrics::get()
                .broadcast
                .observe(self.round_started.elapsed());
        }
        if self.replica().needs_reload() {
            // The in-memory doc may be damaged; the store holds only good updates.
            let _ = self.load().await;
        }
        self.maybe_compact();
    }

    async fn commit(&mut self) {
        let replica = self.replica();
        let ops = replica.take_ops();
        if ops.is_empty() {
            return;
        }
        // The length is known cheaply only when the mirror is in sync; otherwise the tick
        // records it.
        let (last_seq, length) = (replica.last_seq(), replica.known_length());
        let mut delay = Duration::from_millis(50);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let started = Instant::now();
            match self
                .ctx
                .store
                .append(&self.id, &ops, last_seq, length)
                .await
            {
                Ok(inserted) => {
                    metrics::get().oplog_append.observe(started.elapsed());
                    if inserted < ops.len() as u64 && attempt == 1 {
                        tracing::error!(doc = %self.id, "op-log sequence numbers already taken: is another server writing this document?");
                    }
                    self.ctx.health.store_ok(true);
                    break;
                }
                Err(err) => {
                    self.ctx.health.store_error(&err);
                    metrics::get().error(ErrorKind::Store);
                    tracing::warn!(doc = %self.id, %err, attempt, updates = ops.len(), "op-log append failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
        if let Some(length) = length {
            self.recorded_length = length;
        }
    }

    /// Starts a background snapshot when the op-log tail passed a threshold. Encoding happens
    /// here (milliseconds); the write does not hold up the next round.
    fn maybe_compact(&mut self) {
        if self.compaction.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        let Some((seq, state)) = self.replica().snapshot_due() else {
            return;
        };
        let (store, id) = (self.ctx.store.clone(), self.id.clone());
        let retention = self.ctx.config.op_retention();
        self.compaction = Some(tokio::spawn(async move {
            if let Err(err) = store.save_snapshot(&id, seq, &state, 2, retention).await {
                // The op log still holds everything; the next threshold tries again.
                tracing::warn!(doc = %id, %err, "snapshot failed");
            }
        }));
    }

    /// Tells [`Documents`] whether this document could unload now, and since when.
    fn publish_idle(&mut self) {
        let busy = self.replica().has_ops();
        let mark = match self.idle_since {
            Some(since) if self.conns.is_empty() && !busy => crate::documents::idle_mark(since),
            _ => 0,
        };
        self.idle_mark.store(mark, Ordering::Relaxed);
    }

    /// Unloads the document when it has had no connection for the idle timeout (or at once if
    /// `now`, to make room) and everything is durable. Returns true when the actor should stop.
    async fn try_unload(&mut self, now: bool) -> bool {
        let idle = self
            .idle_since
            .is_some_and(|t| now || t.elapsed() >= self.ctx.config.idle_unload());
        if !idle || !self.conns.is_empty() || self.replica().has_ops() {
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
        self.record_length().await;
        if let Some(h) = self.compaction.take() {
            let _ = h.await;
        }
        if let Some((seq, state)) = self.replica().final_snapshot() {
            let retention = self.ctx.config.op_retention();
            if let Err(err) = self
                .ctx
                .store
                .save_snapshot(&self.id, seq, &state, 2, retention)
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

    /// Does a delete asked for this round (after its commit). Returns true when the document
    /// is gone and the actor should stop.
    async fn finish_delete(&mut self) -> bool {
        let Some(reply) = self.delete.take() else {
            return false;
        };
        if let Some(h) = self.compaction.take() {
            let _ = h.await;
        }
        if let Err(err) = self.ctx.store.delete(&self.id).await {
            self.ctx.health.store_error(&err);
            let _ = reply.send(Err(DocError::Unavailable(format!(
                "cannot delete the document now: {err}"
            ))));
            return false;
        }
        tracing::info!(doc = %self.id, "document deleted");
        for (_, conn) in self.conns.drain() {
            if let Some(kick) = conn.kick {
                let _ = kick.send(CloseReason::new(
                    close::DOCUMENT_DELETED,
                    "document deleted",
                ));
            }
        }
        let _ = reply.send(Ok(()));
        self.refuse_all(true);
        true
    }

    /// Stops an actor whose document does not exist (`deleted`: any more): answers whatever is
    /// queued. A join to a document that was never created is dropped, so the connection
    /// retries with an actor that creates it.
    fn refuse_all(&mut self, deleted: bool) {
        self.unregister();
        self.rx.close();
        while let Ok(cmd) = self.rx.try_recv() {
            match cmd {
                Command::Join { ack, .. } if deleted => {
                    let _ = ack.send(Err(CloseReason::new(
                        close::DOCUMENT_DELETED,
                        "document deleted",
                    )));
                }
                Command::Api(request) => request.refuse(DocError::NotFound),
                _ => {}
            }
        }
    }

    fn unregister(&self) {
        if let Some(documents) = self.documents.upgrade() {
            documents.remove(&self.id, self.generation);
        }
    }
}

/// The awareness clock: milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
