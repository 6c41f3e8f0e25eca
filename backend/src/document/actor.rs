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

use crate::webhooks::Notice;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::command::{
    ApiRequest, Applied, CloseReason, Command, ConnId, DocError, PeerMessage, Reply, SearchResult,
    TextAt,
};
use super::replica::{Replica, ReplicaLimits};
use crate::context::Context;
use crate::documents::{Documents, Marks};
use crate::metrics::{self, ErrorKind};
use crate::protocol::{close, Incoming};
use crate::store::{Backend, CatchUp, Loaded, OpRow, StoreError, StoredDoc, Tail};

/// Commands handled in one round at most, so one round's commit stays bounded and one round's
/// relays fit several times into a client's outbound queue.
const MAX_ROUND: usize = 512;

/// A connection's side of the actor: where its frames go and how it is closed.
struct Conn {
    out: mpsc::Sender<Bytes>,
    kick: Option<oneshot::Sender<CloseReason>>,
}

/// Updates of at least this many bytes (in one frame) are integrated with
/// `block_in_place`: a keystroke is tens of bytes, a paste a few KiB.
const BLOCKING_UPDATE_BYTES: usize = 4096;

fn multi_threaded() -> bool {
    tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread)
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
    /// REST replies produced this round, sent after the commit; given how far the commit moved
    /// the round's versions (`from` the first one, `by` how much).
    replies: Vec<Box<dyn FnOnce(i64, i64) + Send>>,
    /// Commits so far, naming each commit's batch of rows.
    commits: u64,
    /// Other servers may write this document (PostgreSQL): catch up before answering reads and
    /// joins.
    shared_store: bool,
    /// A bus hint said other servers are ahead and did not carry the rows: read them after the
    /// round. Holds when the oldest such commit was made (Unix ms), for the lag metric.
    behind: Option<u64>,
    /// A delete asked for this round, done after the commit.
    delete: Option<Reply<()>>,
    compaction: Option<JoinHandle<()>>,
    idle_since: Option<Instant>,
    /// Shared with [`Documents`]: when this document became idle (0: busy), and the version
    /// held (for the tail check that notices other servers' commits), after each round.
    marks: Arc<Marks>,
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
        marks: Arc<Marks>,
    ) -> Actor {
        let shared_store = ctx.store.backend() == Backend::Postgres;
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
            commits: 0,
            shared_store,
            behind: None,
            delete: None,
            compaction: None,
            idle_since: Some(Instant::now()),
            marks,
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
                    let mut round = vec![cmd];
                    while round.len() < MAX_ROUND {
                        match self.rx.try_recv() {
                            Ok(cmd) => round.push(cmd),
                            Err(_) => break,
                        }
                    }
                    // A joining client's sync and every REST answer include what other servers
                    // committed up to now.
                    let fresh = round.iter().any(|cmd| {
                        matches!(cmd, Command::Join { .. } | Command::Api(_) | Command::CatchUp)
                    });
                    if fresh && self.shared_store && !self.catch_up().await {
                        return self.gone(round);
                    }
                    for cmd in round {
                        self.handle(cmd);
                    }
                    if !self.finish_round().await {
                        return self.gone(Vec::new());
                    }
                    if let Some(committed_at) = self.behind.take() {
                        if !self.catch_up().await {
                            return self.gone(Vec::new());
                        }
                        observe_peer_lag(committed_at);
                        // Relays what it applied (no rows of its own to commit).
                        if !self.finish_round().await {
                            return self.gone(Vec::new());
                        }
                    }
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
                    if !self.finish_round().await {
                        return self.gone(Vec::new());
                    }
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
                    if let (true, Some(hooks)) = (stored.created, &self.ctx.webhooks) {
                        hooks.notify(Notice::Created {
                            doc: self.id.to_string(),
                            name: None,
                        });
                    }
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
        self.publish_version();
        Load::Ready
    }

    fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Join {
                conn,
                out,
                kick,
                author,
                ack,
            } => {
                self.conns.insert(
                    conn,
                    Conn {
                        out,
                        kick: Some(kick),
                    },
                );
                self.replica().join(conn, author);
                self.idle_since = None;
                let _ = ack.send(Ok(()));
            }
            Command::Leave { conn } => {
                self.conns.remove(&conn);
                self.replica().leave(conn);
            }
            Command::Evict => self.evict = true,
            // Done before the round (`catch_up`).
            Command::CatchUp => {}
            Command::Peer(message) => self.handle_peer(message),
            Command::Api(request) => {
                if self.conns.is_empty() {
                    // REST use keeps a document loaded like a connection does.
                    self.idle_since = Some(Instant::now());
                }
                self.handle_api(request);
            }
            Command::Messages { conn, msgs } => {
                let bytes: usize = msgs
                    .iter()
                    .map(|msg| match msg {
                        Incoming::Update { bytes, .. } => bytes.len(),
                        _ => 0,
                    })
                    .sum();
                let replica = self.replica();
                let receive = || {
                    for msg in msgs {
                        replica.receive(conn, msg);
                    }
                };
                // Integrating a big update can take seconds (concurrent inserts piled at one
                // position): off the runtime's worker, so other documents, joins (which get
                // the stored state meanwhile) and health checks go on.
                if bytes >= BLOCKING_UPDATE_BYTES && multi_threaded() {
                    tokio::task::block_in_place(receive);
                } else {
                    receive();
                }
            }
        }
        self.send_kicks();
        self.note_idle();
    }

    /// What another server said on the bus.
    fn handle_peer(&mut self, message: PeerMessage) {
        let replica = self.replica();
        match message {
            PeerMessage::Rows {
                upto,
                rows,
                committed_at,
            } => {
                let held = replica.last_seq();
                if upto <= held {
                    return; // Late or duplicated: already here.
                }
                let next = rows.iter().position(|row| row.seq == held + 1);
                let usable = !replica.has_ops()
                    && next.is_some_and(|i| {
                        rows[i..]
                            .iter()
                            .zip(held + 1..)
                            .all(|(row, seq)| row.seq == seq)
                            && rows.last().is_some_and(|row| row.seq == upto)
                    });
                match (usable, next) {
                    (true, Some(i)) => {
                        let rows: Vec<OpRow> = rows.into_iter().skip(i).collect();
                        let count = rows.len() as u64;
                        replica.catch_up(&CatchUp {
                            snapshot: None,
                            ops: rows,
                            upto,
                        });
                        metrics::get()
                            .rows_from_peers
                            .fetch_add(count, Ordering::Relaxed);
                        observe_peer_lag(committed_at);
                    }
                    // A gap (a lost or reordered hint, rows too big to send, or rows of our own
                    // in this round): the op log has them.
                    _ => {
                        let oldest = self.behind.map_or(committed_at, |b| b.min(committed_at));
                        self.behind = Some(oldest);
                    }
                }
            }
            PeerMessage::Awareness { node, update } => replica.receive_peer_awareness(node, update),
            PeerMessage::NodeGone { node } => replica.peer_gone(&node),
        }
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
                source,
                reply,
            } => {
                let result = replica.edit(version, &edits, source);
                self.reply(reply, result);
            }
            ApiRequest::ReplaceText {
                text,
                source,
                reply,
            } => {
                let result = replica.replace_text(&text, source);
                self.reply(reply, result);
            }
            ApiRequest::Update {
                update,
                source,
                reply,
            } => {
                let result = replica.apply_update(update, source);
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
                    self.replies.push(Box::new(move |_, _| {
                        let _ = earlier.send(Ok(()));
                    }));
                }
            }
        }
    }

    /// Queues `result` for after the round's commit.
    fn reply<T: Versioned + Send + 'static>(
        &mut self,
        reply: Reply<T>,
        result: Result<T, DocError>,
    ) {
        self.replies.push(Box::new(move |from, by| {
            let _ = reply.send(result.map(|mut value| {
                value.shift(from, by);
                value
            }));
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

    /// Commits the round's rows, then sends what the round produced. False when the document
    /// turned out deleted (by another server): the actor stops.
    async fn finish_round(&mut self) -> bool {
        let had_updates = self.replica().has_ops();
        let Some((from, by)) = self.commit().await else {
            return false;
        };
        for reply in std::mem::take(&mut self.replies) {
            reply(from, by);
        }
        let presence = self.replica().take_presence();
        if let Some(bus) = &self.ctx.bus {
            use yrs::updates::encoder::Encode;
            for update in presence {
                bus.publish_awareness(&self.id, update.encode_v1());
            }
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
        self.publish_version();
        true
    }

    /// Brings the replica up to the stored version (rows other servers committed). False when
    /// the document is gone (deleted by another server). A store that does not answer is not
    /// waited for: the commit will catch up under the row lock anyway.
    async fn catch_up(&mut self) -> bool {
        let held = self.replica().last_seq();
        let stored = match self.ctx.store.tail(&self.id).await {
            Ok(Tail::Live(version)) => version,
            Ok(Tail::Gone) => return false,
            Err(err) => {
                tracing::debug!(doc = %self.id, %err, "cannot read the stored version; serving what is held");
                return true;
            }
        };
        if stored <= held {
            return true;
        }
        match self.ctx.store.catch_up(&self.id, held, stored).await {
            Ok(rows) => {
                let count = rows.ops.len() as u64;
                self.replica().catch_up(&rows);
                metrics::get()
                    .rows_from_peers
                    .fetch_add(count, Ordering::Relaxed);
                tracing::debug!(doc = %self.id, from = held, to = stored, "caught up with other servers");
            }
            Err(err) => {
                tracing::debug!(doc = %self.id, %err, "cannot read other servers' rows; later");
            }
        }
        true
    }

    /// Tells [`Documents`] the version held (for the tail check).
    fn publish_version(&mut self) {
        let version = self.replica().last_seq();
        self.marks.version.store(version, Ordering::Relaxed);
        self.ctx.feed.committed(&self.id, version);
    }

    /// The document was deleted by another server: close every connection as a delete here
    /// does, answer what is queued, stop.
    fn gone(&mut self, unhandled: Vec<Command>) {
        tracing::info!(doc = %self.id, "document deleted by another server");
        self.close_all(CloseReason::new(
            close::DOCUMENT_DELETED,
            "document deleted",
        ));
        for reply in std::mem::take(&mut self.replies) {
            // Their rows, if any, were never committed: nothing was acknowledged.
            drop(reply);
        }
        if let Some(reply) = self.delete.take() {
            let _ = reply.send(Ok(()));
        }
        for cmd in unhandled {
            match cmd {
                Command::Join { ack, .. } => {
                    let _ = ack.send(Err(CloseReason::new(
                        close::DOCUMENT_DELETED,
                        "document deleted",
                    )));
                }
                Command::Api(request) => request.refuse(DocError::NotFound),
                _ => {}
            }
        }
        self.refuse_all(true);
    }

    /// Commits the round's rows (retrying while the store is away), takes the numbers the store
    /// gave them and applies what other servers committed before them. Returns the round's first
    /// provisional version and how far the commit moved it, or `None` when the document was
    /// deleted meanwhile.
    async fn commit(&mut self) -> Option<(i64, i64)> {
        let authors = self.replica().take_authors();
        if !authors.is_empty() {
            if let Err(err) = self.ctx.store.set_authors(&self.id, &authors).await {
                // Names, not edits: blame shows those clients' text as unattributed.
                tracing::warn!(doc = %self.id, %err, "could not store authors");
            }
        }
        let replica = self.replica();
        let ops = replica.take_ops();
        let Some(first) = ops.first() else {
            return Some((i64::MAX, 0));
        };
        let provisional_first = first.seq;
        let known = provisional_first - 1;
        // The length is known cheaply only when the mirror is in sync; otherwise the tick
        // records it.
        let length = replica.known_length();
        self.commits += 1;
        let batch = format!("{}/{}/{}", self.ctx.node_id, self.generation, self.commits);
        let mut delay = Duration::from_millis(50);
        let mut attempt = 0u32;
        let committed = loop {
            attempt += 1;
            let started = Instant::now();
            match self
                .ctx
                .store
                .commit(&self.id, &ops, known, &batch, attempt > 1, length)
                .await
            {
                Ok(committed) => {
                    metrics::get().oplog_append.observe(started.elapsed());
                    self.ctx.health.store_ok(true);
                    if let Some(hooks) = &self.ctx.webhooks {
                        hooks.notify(Notice::Changed {
                            doc: self.id.clone(),
                            version: committed.first_seq + ops.len() as i64 - 1,
                        });
                    }
                    break committed;
                }
                Err(StoreError::Deleted) => return None,
                Err(err) => {
                    self.ctx.health.store_error(&err);
                    metrics::get().error(ErrorKind::Store);
                    if matches!(err, StoreError::Conflict(_)) {
                        tracing::error!(doc = %self.id, %err, attempt, updates = ops.len(), "op-log conflict; retrying (nothing is relayed meanwhile)");
                    } else {
                        tracing::warn!(doc = %self.id, %err, attempt, updates = ops.len(), "op-log commit failed; retrying");
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        };
        let missed = committed.missed.ops.len() as u64;
        if missed > 0 || committed.missed.snapshot.is_some() {
            metrics::get()
                .rows_from_peers
                .fetch_add(missed, Ordering::Relaxed);
        }
        if let Some(bus) = &self.ctx.bus {
            let first = committed.first_seq;
            let rows: Vec<OpRow> = ops
                .iter()
                .zip(first..)
                .map(|(op, seq)| OpRow {
                    seq,
                    update_v1: op.update_v1.clone(),
                })
                .collect();
            bus.publish_rows(&self.id, first + ops.len() as i64 - 1, rows);
        }
        let in_place = committed.first_seq == provisional_first;
        let by = self.replica().committed(
            provisional_first,
            ops.len(),
            committed.first_seq,
            &committed.missed,
        );
        if in_place {
            if let Some(length) = length {
                self.recorded_length = length;
            }
        }
        Some((provisional_first, by))
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
            // Before the snapshot, which may compact the rows away.
            if let Err(err) = crate::blame::save_segments(&store, &id, seq).await {
                tracing::debug!(doc = %id, %err, "blame segment not written; blame reads the rows");
            }
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
        self.marks.idle.store(mark, Ordering::Relaxed);
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
        let _ = self.commit().await;
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
        self.close_all(CloseReason::new(close::GOING_AWAY, "server shutting down"));
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
        self.close_all(CloseReason::new(
            close::DOCUMENT_DELETED,
            "document deleted",
        ));
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

    /// Closes every connection with `reason`.
    fn close_all(&mut self, reason: CloseReason) {
        for (_, conn) in self.conns.drain() {
            if let Some(kick) = conn.kick {
                let _ = kick.send(reason.clone());
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

/// An answer that may name versions of the current round, which the commit can renumber.
trait Versioned {
    /// Moves versions at or after `from` by `by`.
    fn shift(&mut self, _from: i64, _by: i64) {}
}

fn shift(version: &mut i64, from: i64, by: i64) {
    if *version >= from {
        *version += by;
    }
}

impl Versioned for Applied {
    fn shift(&mut self, from: i64, by: i64) {
        shift(&mut self.version, from, by);
    }
}

impl Versioned for TextAt {
    fn shift(&mut self, from: i64, by: i64) {
        shift(&mut self.version, from, by);
    }
}

impl Versioned for SearchResult {
    fn shift(&mut self, from: i64, by: i64) {
        shift(&mut self.version, from, by);
    }
}

impl Versioned for (Vec<u8>, i64) {
    fn shift(&mut self, from: i64, by: i64) {
        shift(&mut self.1, from, by);
    }
}

impl Versioned for Vec<(String, u32)> {}

impl Versioned for () {}

/// Records the lag from another server's commit at `committed_at` (Unix ms, its clock) to now.
fn observe_peer_lag(committed_at: u64) {
    let lag = crate::bus::unix_millis().saturating_sub(committed_at);
    metrics::get()
        .peer_apply_lag
        .observe(Duration::from_millis(lag));
}
