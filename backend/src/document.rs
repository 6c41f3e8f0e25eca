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
//!
//! The REST API talks to it through the same inbox ([`Command::Api`]): its edits are applied
//! and committed in rounds like anyone's, and its answers, reads included, wait for the round's
//! commit. Its text mirror (see `mirror.rs`) serves REST reads, search and autocomplete.

use std::collections::{HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use editor_core::search::Searcher;
use editor_core::TextBuffer;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use yrs::sync::{Awareness, AwarenessUpdate};
use yrs::updates::decoder::Decode;
use yrs::{ClientID, Doc, OffsetKind, Options, ReadTxn, StateVector, Transact, Update};

use crate::context::Context;
use crate::documents::Documents;
use crate::edit::{self, Edit, EditError};
use crate::metrics::{self, ErrorKind, Limit};
use crate::mirror::{doc_text, text_of, Mirror, TEXT_NAME};
use crate::protocol::{self, close, Incoming};
use crate::store::{Loaded, NewOp, StoredDoc};
use quire_holdback::{Delivery, Holdback};

/// Commands handled in one round at most, so one round's commit stays bounded and one round's
/// relays fit several times into a client's outbound queue.
const MAX_ROUND: usize = 512;

/// Updates still waiting (crate quire-holdback) are sent one message each to a syncing
/// client up to this many; more go as one merged update, so a long out-of-order burst cannot
/// overflow the client's queue.
const MAX_SEPARATE_UNSETTLED: usize = 64;

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

/// What connections and the REST API send to a document actor.
pub enum Command {
    /// Attach a connection. `ack` is answered once the document's stored state is loaded and the
    /// initial SyncStep1 and awareness are queued, or with the close to send when the document
    /// was deleted; a dropped `ack` means "retry the join".
    Join {
        conn: ConnId,
        out: mpsc::Sender<Bytes>,
        kick: oneshot::Sender<CloseReason>,
        ack: oneshot::Sender<Result<(), CloseReason>>,
    },
    Leave {
        conn: ConnId,
    },
    Messages {
        conn: ConnId,
        msgs: Vec<Incoming>,
    },
    /// A REST request; its reply is sent after the round's commit, so nothing a REST client
    /// reads or is told it wrote can be lost.
    Api(ApiRequest),
    /// `--max-documents` are open and another is wanted: unload now if still idle.
    Evict,
}

/// The answer to an [`ApiRequest`].
pub type Reply<T> = oneshot::Sender<Result<T, DocError>>;

/// What the REST API asks of a document.
pub enum ApiRequest {
    /// The text; at `version` if given and current (else `Stale`: read it from the op log).
    Text {
        version: Option<i64>,
        reply: Reply<TextAt>,
    },
    /// Applies edits made on `version` (default: current). An older version is answered with
    /// `Stale`: the caller applies the edits on that version and sends the result as `Update`.
    Edits {
        version: Option<i64>,
        edits: Vec<Edit>,
        origin: &'static str,
        reply: Reply<Applied>,
    },
    /// Makes the text equal to `text` with a minimal edit script.
    ReplaceText {
        text: String,
        origin: &'static str,
        reply: Reply<Applied>,
    },
    /// Applies a Yjs update (v1), as if a client had sent it.
    Update {
        update: Vec<u8>,
        origin: &'static str,
        reply: Reply<Applied>,
    },
    /// The whole document as one update (v1), and its version.
    EncodeState { reply: Reply<(Vec<u8>, i64)> },
    /// The version and length now.
    Info { reply: Reply<Applied> },
    Search {
        searcher: Box<Searcher>,
        limit: usize,
        context: usize,
        reply: Reply<SearchResult>,
    },
    Complete {
        prefix: String,
        limit: usize,
        reply: Reply<Vec<(String, u32)>>,
    },
    /// Deletes the document: closes its connections, leaves a tombstone.
    Delete { reply: Reply<()> },
}

/// Why an [`ApiRequest`] was not done.
#[derive(Debug, thiserror::Error)]
pub enum DocError {
    #[error("no such document")]
    NotFound,
    /// The version asked for is older than the current one: the caller reads the op log.
    #[error("version is older than the current {current}")]
    Stale { current: i64 },
    #[error("unknown version {version}: the document's current version is {current}")]
    UnknownVersion { version: i64, current: i64 },
    #[error(transparent)]
    Edit(#[from] EditError),
    #[error("invalid update: {0}")]
    InvalidUpdate(String),
    #[error("{0}")]
    Unavailable(String),
    /// The change would grow the document past `--max-document-bytes`.
    #[error("{0}")]
    TooLarge(String),
}

/// The text at a version.
#[derive(Debug, Clone)]
pub struct TextAt {
    pub text: String,
    pub version: i64,
}

/// A document after a change.
#[derive(Debug, Clone, Copy)]
pub struct Applied {
    pub version: i64,
    pub length: u64,
}

#[derive(Debug, Clone)]
pub struct SearchHit {
    pub offset: usize,
    pub length: usize,
    /// Zero-based line and column (chars).
    pub line: usize,
    pub column: usize,
    pub context: String,
    /// Where the match starts in `context`, in chars.
    pub context_offset: usize,
}

#[derive(Debug, Clone)]
pub struct SearchResult {
    pub hits: Vec<SearchHit>,
    pub total: usize,
    pub version: i64,
}
struct Conn {
    out: mpsc::Sender<Bytes>,
    kick: Option<oneshot::Sender<CloseReason>>,
    /// Awareness client ids this connection announced; removed when it closes.
    clients: HashSet<ClientID>,
    /// Outbox entries before this index were queued before the connection joined (this
    /// round): it gets their content through its sync instead. Relayed to it, updates the
    /// server integrated before it joined would reach it ahead of the sync, out of order, and
    /// a plain yrs client would echo them back as one composite update.
    joined_at: usize,
}

enum Target {
    All,
    AllBut(ConnId),
    One(ConnId),
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
    awareness: Awareness,
    /// Updates received but not yet fully integrated (crate `quire-holdback`).
    holdback: Holdback,
    /// The text as an editor-core buffer and word index, as of version `mirror_seq` (brought up
    /// to date by `sync_mirror` when read; see `mirror.rs` for why not on every update).
    mirror: Mirror,
    mirror_seq: i64,
    /// The length the documents row records.
    recorded_length: i64,
    conns: HashMap<ConnId, Conn>,
    last_seq: i64,
    /// Updates applied this round, waiting for the group commit.
    uncommitted: Vec<NewOp>,
    /// Messages produced this round, sent after the commit.
    outbox: Vec<(Target, Bytes)>,
    /// REST replies produced this round, sent after the commit.
    replies: Vec<Box<dyn FnOnce() + Send>>,
    /// A delete asked for this round, done after the commit.
    delete: Option<Reply<()>>,
    ops_since_snapshot: u64,
    bytes_since_snapshot: u64,
    compaction: Option<JoinHandle<()>>,
    /// Set when yrs failed mid-update: the in-memory doc may be damaged, so it is rebuilt from
    /// the store (which holds only good updates) after the round's commit.
    needs_rebuild: bool,
    idle_since: Option<Instant>,
    /// Shared with [`Documents`]: when this document became idle (0: busy), after each round.
    idle_mark: Arc<AtomicU64>,
    /// Asked to unload now (`Command::Evict`) to make room for another document.
    evict: bool,
    /// Approximate size of the encoded document: its state when loaded plus every update
    /// recorded since (an over-estimate: deletes and overlaps shrink the real state).
    approx_bytes: u64,
    /// When the current round took its first command (for the broadcast latency histogram).
    round_started: Instant,
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
            awareness: Awareness::new(new_doc()),
            holdback: Holdback::default(),
            mirror: Mirror::default(),
            mirror_seq: 0,
            recorded_length: 0,
            conns: HashMap::new(),
            last_seq: 0,
            uncommitted: Vec::new(),
            outbox: Vec::new(),
            replies: Vec::new(),
            delete: None,
            ops_since_snapshot: 0,
            bytes_since_snapshot: 0,
            compaction: None,
            needs_rebuild: false,
            idle_since: Some(Instant::now()),
            idle_mark,
            evict: false,
            approx_bytes: 0,
            round_started: Instant::now(),
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
                    self.expire_awareness();
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

    /// Loads the newest snapshot and the op log after it, retrying while the store is away.
    async fn load(&mut self) -> Load {
        let mut delay = Duration::from_millis(100);
        loop {
            let started = Instant::now();
            match self.ctx.store.load(&self.id, self.create).await {
                Ok(Loaded::Missing) => return Load::Missing,
                Ok(Loaded::Deleted) => return Load::Deleted,
                Ok(Loaded::Doc(stored)) => {
                    self.ctx.health.store_ok(true);
                    let (doc, holdback) = load_doc(&self.id, &stored);
                    self.mirror = Mirror::from_text(&doc_text(&doc));
                    self.awareness = Awareness::new(doc);
                    self.holdback = holdback;
                    self.last_seq = stored.last_seq();
                    self.mirror_seq = self.last_seq;
                    let length = self.mirror.len_chars() as i64;
                    self.recorded_length = length;
                    if stored.recorded != (self.last_seq, length) {
                        // Rows written before the document's version and length were recorded.
                        let _ = self
                            .ctx
                            .store
                            .set_stats(&self.id, self.last_seq, length)
                            .await;
                    }
                    self.approx_bytes = self.encode_state().len() as u64;
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
                    return Load::Ready;
                }
                Err(err) => {
                    self.ctx.health.store_error(&err);
                    metrics::get().error(ErrorKind::Store);
                    tracing::warn!(doc = %self.id, %err, "cannot load document; retrying");
                    tokio::select! {
                        _ = self.ctx.shutdown.cancelled() => return Load::ShutDown,
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
                        joined_at: self.outbox.len(),
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
                let _ = ack.send(Ok(()));
            }
            Command::Leave { conn } => self.remove_conn(conn),
            Command::Evict => self.evict = true,
            Command::Api(request) => {
                if self.conns.is_empty() {
                    // REST use keeps a document loaded like a connection does.
                    self.idle_since = Some(Instant::now());
                }
                self.handle_api(request);
            }
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
                // The integrated state only, then every update not yet integrated as it came:
                // yrs' own encoding of pending state can misplace blocks (crate quire-holdback).
                let diff = self.awareness.doc().transact().encode_diff_v1(&sv);
                self.outbox
                    .push((Target::One(conn), protocol::sync_step2(diff)));
                for bytes in self.holdback.unsettled_batched(MAX_SEPARATE_UNSETTLED) {
                    self.outbox
                        .push((Target::One(conn), protocol::update(bytes)));
                }
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
        if let Err(DocError::TooLarge(why)) = self.check_size(bytes.len()) {
            // Refused like a read-only client's update, without closing: a close would make
            // the client reconnect and send the same update again, for ever.
            tracing::info!(doc = %self.id, conn, bytes = bytes.len(), "update refused: document size limit");
            self.outbox
                .push((Target::One(conn), protocol::permission_denied(&why)));
            return;
        }
        match self.integrate(&bytes, update) {
            Ok(true) => self.record(bytes, format!("conn-{conn}"), Target::AllBut(conn), None),
            Ok(false) => {}
            Err(Rejected::Invalid(err)) => {
                self.kick(
                    conn,
                    CloseReason::new(close::INVALID_PAYLOAD, format!("invalid update: {err}")),
                );
            }
            Err(Rejected::Panicked) => {
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

    /// Refuses a change of `extra` bytes that would take the document past its size limit.
    fn check_size(&self, extra: usize) -> Result<(), DocError> {
        let max = self.ctx.config.max_document_bytes;
        if max > 0 && self.approx_bytes + extra as u64 > max {
            metrics::get().limit_hit(Limit::DocumentSize);
            return Err(DocError::TooLarge(format!(
                "document {} is at its size limit: about {} bytes now, {extra} more would pass the {max}-byte limit (--max-document-bytes)",
                self.id, self.approx_bytes
            )));
        }
        Ok(())
    }

    /// Applies an update to the document; true if it changed something worth a row.
    fn integrate(&mut self, bytes: &[u8], update: Update) -> Result<bool, Rejected> {
        let doc = self.awareness.doc();
        let holdback = &mut self.holdback;
        // yrs integrates untrusted input; contain a panic to this update and this connection.
        let result = catch_unwind(AssertUnwindSafe(|| {
            let mut txn = doc.transact_mut();
            let before = txn.state_vector();
            // Blocks starting at or past our clock for their client are not a resend (a row
            // for them is never wrong; a missing row loses them on reload and stalls peers
            // waiting for the relay).
            let beyond = update
                .state_vector_lower()
                .iter()
                .any(|(client, clock)| *clock >= before.get(client));
            let delivery = holdback
                .apply(&mut txn, bytes, update)
                .map_err(|e| e.to_string())?;
            match delivery {
                Delivery::Held => return Ok(true),
                Delivery::Duplicate => return Ok(false),
                Delivery::Applied => {}
            }
            if txn.has_missing_updates() {
                // yrs merges pending blocks with every later update that touches them, and for
                // some crafted pending updates that merge panics: stored, such an update would
                // make an honest client's next update fail, and that row be lost on reload.
                // Merge the pending part now (cheap: the diff from our own state vector), so
                // such an update panics here, is refused and never stored (found by
                // tests/fuzz_smoke.rs).
                let sv = txn.state_vector();
                let _ = txn.encode_state_as_update_v1(&sv);
            }
            // Unchanged state vector and no deletions: a resend of what we have, so no row.
            // While updates wait for missing dependencies, store everything to be safe: the
            // pending set survives a restart only through the op log.
            Ok::<bool, String>(
                beyond
                    || txn.state_vector() != before
                    || !txn.delete_set().is_empty()
                    || txn.has_missing_updates(),
            )
        }));
        match result {
            Ok(Ok(changed)) => Ok(changed),
            Ok(Err(err)) => {
                self.needs_rebuild = true;
                Err(Rejected::Invalid(err))
            }
            Err(_) => {
                self.needs_rebuild = true;
                Err(Rejected::Panicked)
            }
        }
    }

    /// Adds an applied update to the round: a new op-log row, relayed to `relay` after commit.
    /// `chars`: what it inserted and deleted, when known without walking the text (history
    /// computes the rest by replay).
    fn record(&mut self, bytes: Vec<u8>, origin: String, relay: Target, chars: Option<(u64, u64)>) {
        self.last_seq += 1;
        self.ops_since_snapshot += 1;
        self.bytes_since_snapshot += bytes.len() as u64;
        self.approx_bytes += bytes.len() as u64;
        metrics::get().updates_in.fetch_add(1, Ordering::Relaxed);
        let frame = protocol::update(bytes.clone());
        self.uncommitted.push(NewOp {
            seq: self.last_seq,
            update_v1: bytes,
            origin: Some(origin),
            chars,
        });
        self.outbox.push((relay, frame));
    }

    /// Brings the mirror up to the document's current version: one walk of the text and a diff,
    /// however many updates arrived since.
    fn sync_mirror(&mut self) {
        if self.mirror_seq == self.last_seq {
            return;
        }
        let doc = self.awareness.doc();
        let text = doc.get_or_insert_text(TEXT_NAME);
        let current = text_of(&doc.transact(), &text);
        self.mirror.sync(&current);
        self.mirror_seq = self.last_seq;
    }

    /// Syncs the mirror and records a changed length on the documents row (for listings).
    async fn record_length(&mut self) {
        self.sync_mirror();
        let length = self.mirror.len_chars() as i64;
        if length != self.recorded_length
            && self
                .ctx
                .store
                .set_stats(&self.id, self.last_seq, length)
                .await
                .is_ok()
        {
            self.recorded_length = length;
        }
    }

    fn handle_api(&mut self, request: ApiRequest) {
        if !matches!(
            request,
            ApiRequest::Delete { .. } | ApiRequest::EncodeState { .. }
        ) {
            self.sync_mirror();
        }
        match request {
            ApiRequest::Info { reply } => {
                let result = Ok(self.applied());
                self.reply(reply, result);
            }
            ApiRequest::Text { version, reply } => {
                let result = self.check_version(version).map(|()| TextAt {
                    text: self.mirror.text(),
                    version: self.last_seq,
                });
                self.reply(reply, result);
            }
            ApiRequest::Edits {
                version,
                edits,
                origin,
                reply,
            } => {
                let inserted: usize = edits.iter().map(|e| e.insert.len()).sum();
                let result = self
                    .check_version(version)
                    .and_then(|()| self.check_size(inserted))
                    .and_then(|()| self.edit_locally(&edits, origin));
                self.reply(reply, result);
            }
            ApiRequest::ReplaceText {
                text,
                origin,
                reply,
            } => {
                let edits = edit::diff(&self.mirror.text(), &text);
                let inserted: usize = edits.iter().map(|e| e.insert.len()).sum();
                let result = self
                    .check_size(inserted)
                    .and_then(|()| self.edit_locally(&edits, origin));
                self.reply(reply, result);
            }
            ApiRequest::Update {
                update,
                origin,
                reply,
            } => {
                let decoded = catch_unwind(|| Update::decode_v1(&update))
                    .map_err(|_| "the decoder panicked on it".to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()));
                let decoded = decoded
                    .map_err(DocError::InvalidUpdate)
                    .and_then(|d| self.check_size(update.len()).map(|()| d));
                let result = match decoded {
                    Err(err) => Err(err),
                    Ok(decoded) => match self.integrate(&update, decoded) {
                        Ok(changed) => {
                            if changed {
                                self.record(update, origin.to_string(), Target::All, None);
                                self.sync_mirror();
                            }
                            Ok(self.applied())
                        }
                        Err(Rejected::Invalid(err)) => Err(DocError::InvalidUpdate(err)),
                        Err(Rejected::Panicked) => {
                            Err(DocError::InvalidUpdate("rejected by the CRDT".to_string()))
                        }
                    },
                };
                self.reply(reply, result);
            }
            ApiRequest::EncodeState { reply } => {
                let result = Ok((self.encode_state(), self.last_seq));
                self.reply(reply, result);
            }
            ApiRequest::Search {
                searcher,
                limit,
                context,
                reply,
            } => {
                let result = Ok(self.search(&searcher, limit, context));
                self.reply(reply, result);
            }
            ApiRequest::Complete {
                prefix,
                limit,
                reply,
            } => {
                let result = Ok(self.mirror.words().top_k(&prefix, limit));
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

    /// The version and length now (the mirror is in sync when this is called).
    fn applied(&self) -> Applied {
        Applied {
            version: self.last_seq,
            length: self.mirror.len_chars() as u64,
        }
    }

    /// Ok when `version` is absent or current.
    fn check_version(&self, version: Option<i64>) -> Result<(), DocError> {
        match version {
            None => Ok(()),
            Some(v) if v == self.last_seq => Ok(()),
            Some(v) if v < self.last_seq && v >= 0 => Err(DocError::Stale {
                current: self.last_seq,
            }),
            Some(v) => Err(DocError::UnknownVersion {
                version: v,
                current: self.last_seq,
            }),
        }
    }

    /// Makes `edits` on the live document as the server's own yrs client: one update, one
    /// op-log row, relayed to every connection.
    /// The mirror is in sync when this is called, and the same edits keep it so.
    fn edit_locally(&mut self, edits: &[Edit], origin: &'static str) -> Result<Applied, DocError> {
        let planned = edit::plan(self.mirror.buffer(), edits)?;
        if planned.is_empty() {
            return Ok(self.applied());
        }
        let doc = self.awareness.doc();
        let text = doc.get_or_insert_text(TEXT_NAME);
        let result = catch_unwind(AssertUnwindSafe(|| {
            let mut txn = doc.transact_mut();
            edit::apply(&mut txn, &text, &planned);
            txn.encode_update_v1()
        }));
        match result {
            Ok(update) => {
                let inserted = edits.iter().map(|e| e.insert.chars().count() as u64).sum();
                let deleted = edits.iter().map(|e| e.delete).sum();
                self.record(
                    update,
                    origin.to_string(),
                    Target::All,
                    Some((inserted, deleted)),
                );
                for e in edits {
                    self.mirror.apply_edit(e);
                }
                self.mirror_seq = self.last_seq;
                Ok(self.applied())
            }
            Err(_) => {
                // Checked positions cannot make yrs fail; if it does anyway, reload.
                self.needs_rebuild = true;
                tracing::error!(doc = %self.id, "yrs panicked applying checked edits; document will be reloaded");
                Err(DocError::Unavailable(
                    "the edit could not be applied; the document is reloading, retry".into(),
                ))
            }
        }
    }

    fn search(&self, searcher: &Searcher, limit: usize, context: usize) -> SearchResult {
        let buf = self.mirror.buffer();
        let mut hits = Vec::new();
        let mut total = 0;
        for m in searcher.find_iter(buf) {
            total += 1;
            if hits.len() >= limit {
                continue;
            }
            let start = m.chars.start;
            let (line, column) = buf.char_to_line_col(start).unwrap_or((0, 0));
            let line_start = start - column;
            let line_end = buf
                .line_to_char(line + 1)
                .map(|next| next - 1)
                .unwrap_or(buf.len_chars());
            let from = start.saturating_sub(context).max(line_start);
            let to = (m.chars.end + context).min(line_end).max(m.chars.end);
            hits.push(SearchHit {
                offset: start,
                length: m.chars.len(),
                line,
                column,
                context: buf.slice(from..to).unwrap_or_default(),
                context_offset: start - from,
            });
        }
        SearchResult {
            hits,
            total,
            version: self.last_seq,
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
        let had_updates = !self.uncommitted.is_empty();
        self.commit().await;
        for reply in std::mem::take(&mut self.replies) {
            reply();
        }
        while !self.outbox.is_empty() {
            let mut overflowed = Vec::new();
            let mut gone = Vec::new();
            for (index, (target, frame)) in std::mem::take(&mut self.outbox).into_iter().enumerate()
            {
                for (&id, conn) in &self.conns {
                    if index < conn.joined_at {
                        continue;
                    }
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
            for conn in self.conns.values_mut() {
                conn.joined_at = 0;
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
        if had_updates {
            metrics::get()
                .broadcast
                .observe(self.round_started.elapsed());
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
        // The length is known cheaply only when the mirror is in sync; otherwise the tick
        // records it.
        let length = (self.mirror_seq == self.last_seq).then(|| self.mirror.len_chars() as i64);
        let mut delay = Duration::from_millis(50);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let started = Instant::now();
            match self
                .ctx
                .store
                .append(&self.id, &self.uncommitted, self.last_seq, length)
                .await
            {
                Ok(inserted) => {
                    metrics::get().oplog_append.observe(started.elapsed());
                    if inserted < self.uncommitted.len() as u64 && attempt == 1 {
                        tracing::error!(doc = %self.id, "op-log sequence numbers already taken: is another server writing this document?");
                    }
                    self.ctx.health.store_ok(true);
                    break;
                }
                Err(err) => {
                    self.ctx.health.store_error(&err);
                    metrics::get().error(ErrorKind::Store);
                    tracing::warn!(doc = %self.id, %err, attempt, updates = self.uncommitted.len(), "op-log append failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
        if let Some(length) = length {
            self.recorded_length = length;
        }
        self.uncommitted.clear();
    }

    /// Reloads the document from the store after yrs failed mid-update.
    async fn rebuild(&mut self) {
        let states = self.awareness.update().ok();
        if matches!(self.load().await, Load::Ready) {
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
        if self.has_pending() {
            // Wait until they integrate: the op log has them in their original form.
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

    /// True while updates wait for missing dependencies (held back, or pending inside yrs). A
    /// snapshot is the integrated state only, and loading replays just the rows after it, so
    /// none is written then: the op log keeps the updates as they came, and a snapshot follows
    /// once they have integrated.
    fn has_pending(&self) -> bool {
        !self.holdback.is_empty() || self.awareness.doc().transact().has_missing_updates()
    }

    /// The integrated state as one update (updates still waiting are not in it).
    fn encode_state(&self) -> Vec<u8> {
        self.awareness
            .doc()
            .transact()
            .encode_diff_v1(&StateVector::default())
    }

    /// Tells [`Documents`] whether this document could unload now, and since when.
    fn publish_idle(&self) {
        let mark = match self.idle_since {
            Some(since) if self.conns.is_empty() && self.uncommitted.is_empty() => {
                crate::documents::idle_mark(since)
            }
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
        self.record_length().await;
        if let Some(h) = self.compaction.take() {
            let _ = h.await;
        }
        if self.ops_since_snapshot > 0 && !self.has_pending() {
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

enum Load {
    Ready,
    Missing,
    Deleted,
    ShutDown,
}

/// Why an update was not integrated.
enum Rejected {
    Invalid(String),
    Panicked,
}

impl ApiRequest {
    /// Answers the request with `err` without doing it.
    pub fn refuse(self, err: DocError) {
        fn no<T>(reply: Reply<T>, err: DocError) {
            let _ = reply.send(Err(err));
        }
        match self {
            ApiRequest::Text { reply, .. } => no(reply, err),
            ApiRequest::Edits { reply, .. }
            | ApiRequest::ReplaceText { reply, .. }
            | ApiRequest::Update { reply, .. }
            | ApiRequest::Info { reply } => no(reply, err),
            ApiRequest::EncodeState { reply } => no(reply, err),
            ApiRequest::Search { reply, .. } => no(reply, err),
            ApiRequest::Complete { reply, .. } => no(reply, err),
            ApiRequest::Delete { reply } => no(reply, err),
        }
    }
}

/// A fresh yrs document as the server keeps it. Garbage collection is off: it would replace
/// deleted content by tombstones that updates arriving out of order may still refer to, and
/// history replays need the full content. Offsets are UTF-16 code units, as in Yjs, so text
/// positions and deltas agree with what browser clients count.
pub fn new_doc() -> Doc {
    Doc::with_options(Options {
        skip_gc: true,
        offset_kind: OffsetKind::Utf16,
        ..Options::default()
    })
}

/// Builds a document from its newest snapshot and the op log after it. A row that does not
/// decode is logged and skipped rather than making the whole document unloadable.
pub fn build_doc(id: &str, stored: &StoredDoc) -> Doc {
    load_doc(id, stored).0
}

/// [`build_doc`], also returning the updates that are still not integrated, exactly as the
/// live actor had them: rows go through the same [`Holdback`].
pub fn load_doc(id: &str, stored: &StoredDoc) -> (Doc, Holdback) {
    let doc = new_doc();
    let mut holdback = Holdback::default();
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
            // A held row is applied later, inside another row's turn, where yrs could still
            // fail on it: contain that too rather than leave the document unloadable.
            let applied = catch_unwind(AssertUnwindSafe(|| {
                Update::decode_v1(bytes)
                    .map_err(|e| e.to_string())
                    .and_then(|u| {
                        holdback
                            .apply(&mut txn, bytes, u)
                            .map_err(|e| e.to_string())
                    })
            }))
            .unwrap_or_else(|_| Err("yrs panicked on it".to_string()));
            if let Err(err) = applied {
                tracing::error!(doc = id, seq, %err, "stored update does not apply; skipped");
            }
        }
    }
    (doc, holdback)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
