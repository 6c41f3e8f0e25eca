//! The document as a replica with no I/O: the yrs `Doc`, the holdback, awareness, the text
//! mirror, and what the current round has produced but not yet committed or sent.
//!
//! Inputs are decoded messages ([`Replica::receive`]), joins and leaves, REST operations and
//! stored rows ([`Replica::load`]); outputs are values: the op-log rows to commit
//! ([`Replica::take_ops`]), the frames to send to which connection ([`Replica::take_outbox`]),
//! and the connections to close ([`Replica::take_kicks`]). The actor (`actor.rs`) is the async
//! shell that commits the rows and only then delivers the frames. The fuzz targets and the
//! unit tests below drive a replica directly.
//!
//! Invariants:
//! - Every row in [`Replica::take_ops`] carries the next sequence number after the previous
//!   one, and `last_seq` is the newest row's (stored or pending).
//! - A frame that relays an update is queued in the same call that queues its row; the actor
//!   sends nothing a round produced before that round's rows are committed.
//! - A connection sees outbox entries queued after it joined only: what was integrated before
//!   reaches it through its own sync, in order.
//! - `mirror` holds the text as of `mirror_seq`; [`Replica::sync_mirror`] brings it to
//!   `last_seq` before anything reads it.

use std::collections::{HashMap, HashSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use editor_core::search::Searcher;
use editor_core::TextBuffer;
use yrs::sync::{Awareness, AwarenessUpdate};
use yrs::updates::decoder::Decode;
use yrs::updates::encoder::Encode;
use yrs::{ClientID, Doc, IdSet, Options, ReadTxn, StateVector, Transact, Update};

use super::command::{
    Applied, CloseReason, ConnId, DocError, SearchHit, SearchResult, Source, TextAt,
};
use crate::blame::awareness_name;
use crate::edit::{self, Edit};
use crate::limits::WorkDebt;
use crate::metrics::{self, Limit};
use crate::mirror::{doc_text, text_of, Mirror, TEXT_NAME};
use crate::protocol::{self, close, Incoming};
use crate::store::{CatchUp, NewOp, StoredDoc};
use quire_holdback::{Delivery, Holdback};

/// The limits a replica enforces and the thresholds it reports on.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReplicaLimits {
    /// Refuse changes that would grow the encoded document past this many bytes (0: none).
    pub max_document_bytes: u64,
    /// A snapshot is due after this many rows since the last one...
    pub snapshot_ops: u64,
    /// ...or this many bytes of rows.
    pub snapshot_bytes: u64,
}

/// Who an outbox frame is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    All,
    AllBut(ConnId),
    One(ConnId),
}

/// A connection as the replica knows it.
#[derive(Debug)]
struct Peer {
    /// Awareness client ids this connection announced; removed when it leaves.
    clients: HashSet<ClientID>,
    /// Outbox entries before this index were queued before the connection joined (this
    /// round): it gets their content through its sync instead. Relayed to it, updates the
    /// replica integrated before it joined would reach it ahead of the sync, out of order, and
    /// a plain yrs client would echo them back as one composite update.
    joined_at: usize,
    /// Time its updates cost beyond their size's allowance (`limits::WorkDebt`).
    work: WorkDebt,
    /// Who it is: its token's subject (`verified`), or the name its awareness publishes.
    author: Option<Arc<str>>,
    verified: bool,
}

/// The frames a round produced, with who was connected when they were taken.
#[derive(Debug, Default)]
pub struct Outbox {
    frames: Vec<(Target, Bytes)>,
    /// Every connection and the first frame it may see.
    recipients: Vec<(ConnId, usize)>,
}

impl Outbox {
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Each frame for each connection it is for, frames in the order they were produced.
    pub fn deliveries(&self) -> impl Iterator<Item = (ConnId, &Bytes)> + '_ {
        self.frames
            .iter()
            .enumerate()
            .flat_map(move |(index, (target, frame))| {
                self.recipients
                    .iter()
                    .filter(move |(id, joined_at)| {
                        index >= *joined_at
                            && match *target {
                                Target::All => true,
                                Target::AllBut(except) => *id != except,
                                Target::One(only) => *id == only,
                            }
                    })
                    .map(move |(id, _)| (*id, frame))
            })
    }
}

/// Why an update was not integrated.
#[derive(Debug)]
enum Rejected {
    Invalid(String),
    Panicked,
}

/// One document's state on this server. See the module docs.
pub struct Replica {
    id: Arc<str>,
    limits: ReplicaLimits,
    awareness: Awareness,
    /// Updates received but not yet fully integrated (crate `quire-holdback`).
    holdback: Holdback,
    /// The text as an editor-core buffer and word index, as of version `mirror_seq` (brought up
    /// to date by `sync_mirror` when read; see `mirror.rs` for why not on every update).
    mirror: Mirror,
    mirror_seq: i64,
    last_seq: i64,
    peers: HashMap<ConnId, Peer>,
    /// Rows produced this round, waiting for the group commit.
    ops: Vec<NewOp>,
    /// Frames produced this round, sent after the commit.
    outbox: Vec<(Target, Bytes)>,
    /// Connections closed this round, and why.
    kicks: Vec<(ConnId, CloseReason)>,
    /// Presence changes of this server's clients, for the other servers (the bus).
    presence: Vec<AwarenessUpdate>,
    /// Awareness client ids other servers' clients announced, by server.
    remote: HashMap<Arc<str>, HashSet<ClientID>>,
    /// Set when yrs failed mid-update: the doc may be damaged, so it is to be reloaded from the
    /// store (which holds only good updates) after the round's commit.
    needs_reload: bool,
    /// Approximate size of the encoded document: its state when loaded plus every update
    /// recorded since (an over-estimate: deletes and overlaps shrink the real state).
    approx_bytes: u64,
    ops_since_snapshot: u64,
    bytes_since_snapshot: u64,
    /// Yjs client ids and their authors, as learned this session (`new_authors`: not yet
    /// stored).
    authors: HashMap<ClientID, Arc<str>>,
    new_authors: Vec<(ClientID, Arc<str>)>,
}

impl Replica {
    /// A replica of document `id` as the store holds it.
    pub fn load(id: Arc<str>, stored: &StoredDoc, limits: ReplicaLimits) -> Replica {
        let mut replica = Replica {
            id,
            limits,
            awareness: Awareness::new(server_doc()),
            holdback: Holdback::default(),
            mirror: Mirror::default(),
            mirror_seq: 0,
            last_seq: 0,
            peers: HashMap::new(),
            ops: Vec::new(),
            outbox: Vec::new(),
            kicks: Vec::new(),
            presence: Vec::new(),
            remote: HashMap::new(),
            needs_reload: false,
            approx_bytes: 0,
            ops_since_snapshot: 0,
            bytes_since_snapshot: 0,
            authors: HashMap::new(),
            new_authors: Vec::new(),
        };
        replica.install(stored);
        replica
    }

    /// Replaces the document with what the store holds, keeping connections and presence
    /// (after yrs failed mid-update; see [`Replica::needs_reload`]).
    pub fn reload(&mut self, stored: &StoredDoc) {
        let states = self.awareness.update().ok();
        self.install(stored);
        if let Some(states) = states {
            let _ = self.awareness.apply_update(states);
        }
    }

    fn install(&mut self, stored: &StoredDoc) {
        let (doc, holdback) = load_doc(&self.id, stored);
        self.mirror = Mirror::from_text(&doc_text(&doc));
        self.awareness = Awareness::new(doc);
        self.holdback = holdback;
        self.last_seq = stored.last_seq();
        self.mirror_seq = self.last_seq;
        self.needs_reload = false;
        self.approx_bytes = self.encode_state().len() as u64;
        self.ops_since_snapshot = stored.ops.len() as u64;
        self.bytes_since_snapshot = stored.ops.iter().map(|op| op.update_v1.len() as u64).sum();
    }

    pub fn id(&self) -> &Arc<str> {
        &self.id
    }

    /// The newest version: the sequence number of the newest row, committed or not.
    pub fn last_seq(&self) -> i64 {
        self.last_seq
    }

    pub fn has_peers(&self) -> bool {
        !self.peers.is_empty()
    }

    pub fn has_peer(&self, conn: ConnId) -> bool {
        self.peers.contains_key(&conn)
    }

    /// True when yrs failed mid-update: reload from the store after this round's commit.
    pub fn needs_reload(&self) -> bool {
        self.needs_reload
    }

    /// True while rows wait to be committed.
    pub fn has_ops(&self) -> bool {
        !self.ops.is_empty()
    }

    /// Attaches a connection: it is sent the replica's SyncStep1 and who is present. `author`:
    /// its token's subject, which then names its rows whatever its awareness says.
    pub fn join(&mut self, conn: ConnId, author: Option<Arc<str>>) {
        let sv = self.awareness.doc().transact().state_vector();
        self.peers.insert(
            conn,
            Peer {
                clients: HashSet::new(),
                joined_at: self.outbox.len(),
                work: WorkDebt::new(Instant::now()),
                verified: author.is_some(),
                author,
            },
        );
        self.outbox
            .push((Target::One(conn), protocol::sync_step1(&sv)));
        if let Ok(update) = self.awareness.update() {
            if !update.clients.is_empty() {
                self.outbox
                    .push((Target::One(conn), protocol::awareness(update)));
            }
        }
    }

    /// Detaches a connection; its presence is removed and everyone told.
    pub fn leave(&mut self, conn: ConnId) {
        if let Some(peer) = self.peers.remove(&conn) {
            let live: Vec<ClientID> = peer
                .clients
                .into_iter()
                .filter(|id| self.awareness.meta(*id).is_some())
                .collect();
            self.remove_awareness(live, true);
        }
    }

    /// Closes a connection for `reason` (see [`Replica::take_kicks`]).
    pub fn kick(&mut self, conn: ConnId, reason: CloseReason) {
        if self.peers.contains_key(&conn) {
            tracing::info!(doc = %self.id, conn, code = reason.code, reason = %reason.reason, "closing connection");
            self.kicks.push((conn, reason));
        }
        self.leave(conn);
    }

    /// Handles one message from a connection. Messages from a connection that left or was
    /// kicked (earlier in the round) are ignored.
    pub fn receive(&mut self, conn: ConnId, msg: Incoming) {
        if !self.peers.contains_key(&conn) {
            return;
        }
        match msg {
            Incoming::SyncStep1(sv) => {
                let reply = quire_wire::sync_reply(self.awareness.doc(), &self.holdback, &sv);
                for frame in reply {
                    self.outbox.push((Target::One(conn), frame));
                }
            }
            Incoming::Update { bytes, update } => {
                let started = Instant::now();
                let len = bytes.len();
                self.receive_update(conn, bytes, update);
                self.charge_work(conn, started.elapsed(), len);
            }
            Incoming::Awareness(update) => self.receive_awareness(conn, update),
            Incoming::AwarenessQuery => {
                if let Ok(update) = self.awareness.update() {
                    self.outbox
                        .push((Target::One(conn), protocol::awareness(update)));
                }
            }
        }
    }

    /// Closes a connection whose updates cost the document far more than their size explains
    /// (concurrent inserts piled at one position). What it sent is kept.
    fn charge_work(&mut self, conn: ConnId, spent: Duration, bytes: usize) {
        let Some(peer) = self.peers.get_mut(&conn) else {
            return;
        };
        if !peer.work.charge(spent, bytes, Instant::now()) {
            return;
        }
        let debt = peer.work.debt();
        metrics::get().limit_hit(Limit::UpdateWork);
        tracing::warn!(doc = %self.id, conn, ?debt, last_ms = spent.as_millis() as u64, bytes, "updates cost too much work to integrate");
        self.kick(
            conn,
            CloseReason::new(
                close::POLICY_VIOLATION,
                format!(
                    "your updates cost {} ms of work beyond their size (concurrent inserts piled at one position); reconnect later",
                    debt.as_millis()
                ),
            ),
        );
    }

    fn receive_update(&mut self, conn: ConnId, bytes: Vec<u8>, update: Update) {
        if let Err(DocError::TooLarge(why)) = self.check_size(bytes.len()) {
            // Refused like a read-only client's update, without closing: a close would make
            // the client reconnect and send the same update again, for ever.
            tracing::info!(doc = %self.id, conn, bytes = bytes.len(), "update refused: document size limit");
            self.outbox
                .push((Target::One(conn), protocol::permission_denied(&why)));
            return;
        }
        let inserted = update.insertions(true);
        match self.integrate(&bytes, update) {
            Ok(true) => {
                let author = self.peers.get(&conn).and_then(|p| p.author.clone());
                if let Some(author) = &author {
                    // Clients that never published a name are known by their connection's.
                    for (client, _) in inserted.iter() {
                        if !self.authors.contains_key(client) {
                            self.learn_author(*client, author.clone());
                        }
                    }
                }
                let origin = format!("conn-{conn}");
                self.record(
                    bytes,
                    origin,
                    Target::AllBut(conn),
                    None,
                    author,
                    Some(inserted),
                );
            }
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

    fn receive_awareness(&mut self, conn: ConnId, mut update: AwarenessUpdate) {
        // A connection speaks only for client ids it owns: ones it introduced, or ones no other
        // live connection (here or on another server) holds. Others' entries are dropped: a
        // forged state must not replace Alice's name or cursor, and stock clients re-send
        // the states they received, which need no relay.
        let owned_elsewhere = |id: &ClientID| {
            self.peers
                .iter()
                .any(|(c, p)| *c != conn && p.clients.contains(id))
                || self.remote.values().any(|ids| ids.contains(id))
        };
        let before = update.clients.len();
        update.clients.retain(|id, _| !owned_elsewhere(id));
        let dropped = before - update.clients.len();
        if dropped > 0 {
            tracing::debug!(
                conn,
                dropped,
                "awareness entries for other connections' clients dropped"
            );
        }
        if update.clients.is_empty() {
            return;
        }
        let mut named = Vec::new();
        if let Some(peer) = self.peers.get_mut(&conn) {
            for (id, entry) in &update.clients {
                if &*entry.json == "null" {
                    peer.clients.remove(id);
                } else {
                    peer.clients.insert(*id);
                    if let Some(name) = awareness_name(&entry.json) {
                        if !peer.verified {
                            peer.author = Some(name.clone());
                        }
                        named.push((*id, peer.author.clone().unwrap_or(name)));
                    }
                }
            }
        }
        for (id, author) in named {
            self.learn_author(id, author);
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
        self.presence.push(update.clone());
        self.outbox.push((Target::All, protocol::awareness(update)));
    }

    /// A presence change from a client of another server (`node`): applied and relayed to every
    /// connection here, never sent back to the bus.
    pub fn receive_peer_awareness(&mut self, node: Arc<str>, update: AwarenessUpdate) {
        let clients = self.remote.entry(node).or_default();
        for (id, entry) in &update.clients {
            if &*entry.json == "null" {
                clients.remove(id);
            } else {
                clients.insert(*id);
            }
        }
        if self.awareness.apply_update(update.clone()).is_ok() {
            self.outbox.push((Target::All, protocol::awareness(update)));
        }
    }

    /// Another server stopped or went silent: its clients' presence goes.
    pub fn peer_gone(&mut self, node: &str) {
        let Some(clients) = self.remote.remove(node) else {
            return;
        };
        let live: Vec<ClientID> = clients
            .into_iter()
            .filter(|id| self.awareness.meta(*id).is_some())
            .collect();
        self.remove_awareness(live, false);
    }

    /// Presence changes of this server's clients since the last call, for the other servers.
    pub fn take_presence(&mut self) -> Vec<AwarenessUpdate> {
        std::mem::take(&mut self.presence)
    }

    /// Removes presence not renewed within `timeout_ms` of `now_ms` (the awareness clock:
    /// milliseconds since the Unix epoch) and tells everyone.
    pub fn expire_awareness(&mut self, now_ms: u64, timeout_ms: u64) {
        let stale: Vec<ClientID> = self
            .awareness
            .iter()
            .filter(|(_, state)| {
                state.data.is_some() && now_ms.saturating_sub(state.last_updated) > timeout_ms
            })
            .map(|(id, _)| id)
            .collect();
        // Every server expires what it holds; none needs to hear it from another.
        self.remove_awareness(stale, false);
    }

    /// Removes presence states and tells every connection (and, if `publish`, the other
    /// servers: a client of ours left).
    fn remove_awareness(&mut self, clients: Vec<ClientID>, publish: bool) {
        if clients.is_empty() {
            return;
        }
        for id in &clients {
            self.awareness.remove_state(*id);
        }
        if let Ok(update) = self.awareness.update_with_clients(clients) {
            if publish {
                self.presence.push(update.clone());
            }
            self.outbox.push((Target::All, protocol::awareness(update)));
        }
    }

    /// Refuses a change of `extra` bytes that would take the document past its size limit.
    fn check_size(&self, extra: usize) -> Result<(), DocError> {
        let max = self.limits.max_document_bytes;
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
                self.needs_reload = true;
                Err(Rejected::Invalid(err))
            }
            Err(_) => {
                self.needs_reload = true;
                Err(Rejected::Panicked)
            }
        }
    }

    /// Records that Yjs client `client` types for `author` (stored after the round's commit).
    fn learn_author(&mut self, client: ClientID, author: Arc<str>) {
        if self.authors.get(&client) != Some(&author) {
            self.authors.insert(client, author.clone());
            self.new_authors.push((client, author));
        }
    }

    /// Client ids whose author was learned since the last call, to store.
    pub fn take_authors(&mut self) -> Vec<(u64, Arc<str>)> {
        std::mem::take(&mut self.new_authors)
            .into_iter()
            .map(|(client, author)| (client.get(), author))
            .collect()
    }

    /// Adds an applied update to the round: a new op-log row, relayed to `relay` after commit.
    /// `chars`: what it inserted and deleted, when known without walking the text (history
    /// computes the rest by replay). `inserted`: its Yjs ids, when already decoded.
    fn record(
        &mut self,
        bytes: Vec<u8>,
        origin: String,
        relay: Target,
        chars: Option<(u64, u64)>,
        author: Option<Arc<str>>,
        inserted: Option<IdSet>,
    ) {
        let inserted = inserted
            .or_else(|| Update::decode_v1(&bytes).ok().map(|u| u.insertions(true)))
            .map(|ids| ids.encode_v1());
        self.last_seq += 1;
        self.ops_since_snapshot += 1;
        self.bytes_since_snapshot += bytes.len() as u64;
        self.approx_bytes += bytes.len() as u64;
        metrics::get().updates_in.fetch_add(1, Ordering::Relaxed);
        let frame = protocol::update(bytes.clone());
        self.ops.push(NewOp {
            seq: self.last_seq,
            update_v1: bytes,
            origin: Some(origin),
            chars,
            author,
            inserted,
        });
        self.outbox.push((relay, frame));
    }

    /// The round's rows, to commit before anything in the outbox is sent.
    pub fn take_ops(&mut self) -> Vec<NewOp> {
        std::mem::take(&mut self.ops)
    }

    /// The round's frames, with who may see each. Connections that join later see only what
    /// is queued after them.
    pub fn take_outbox(&mut self) -> Outbox {
        let recipients = self
            .peers
            .iter_mut()
            .map(|(&id, peer)| (id, std::mem::take(&mut peer.joined_at)))
            .collect();
        Outbox {
            frames: std::mem::take(&mut self.outbox),
            recipients,
        }
    }

    /// The round's rows were committed from `first_seq` on (the store numbers them: another
    /// server may have committed rows since this replica's version, which come in `missed`).
    /// Applies and relays those first-hand, then takes the final numbers. Returns how far the
    /// round's own versions moved (REST answers given this round add it to theirs).
    pub fn committed(
        &mut self,
        provisional_first: i64,
        count: usize,
        first_seq: i64,
        missed: &CatchUp,
    ) -> i64 {
        let in_sync = self.mirror_seq == self.last_seq;
        let applied = self.apply_rows(missed);
        self.last_seq = first_seq + count as i64 - 1;
        self.mirror_seq = if in_sync && !applied {
            self.last_seq
        } else {
            // Others' changes are in the doc, not the mirror: the next read syncs it.
            i64::MIN
        };
        first_seq - provisional_first
    }

    /// Applies rows other servers committed after this replica's version (their update bytes
    /// as they came, or a snapshot first when rows were compacted away) and relays them to every
    /// connection. They are durable already, so the relay needs no commit of its own.
    pub fn catch_up(&mut self, rows: &CatchUp) {
        if rows.upto <= self.last_seq {
            return;
        }
        let in_sync = self.mirror_seq == self.last_seq;
        let applied = self.apply_rows(rows);
        self.last_seq = rows.upto;
        if in_sync && !applied {
            self.mirror_seq = self.last_seq;
        }
    }

    /// Integrates `rows` and queues their relay; true if anything changed the document.
    fn apply_rows(&mut self, rows: &CatchUp) -> bool {
        if rows.is_empty() {
            return false;
        }
        let before = self.awareness.doc().transact().state_vector();
        let mut changed = false;
        if let Some((_, state)) = &rows.snapshot {
            // Rows were compacted away: the snapshot covers them; what it adds goes out below
            // as one update (the state vector diff).
            changed |= self.integrate_row(state);
        }
        for op in &rows.ops {
            if self.integrate_row(&op.update_v1) && rows.snapshot.is_none() {
                self.outbox
                    .push((Target::All, protocol::update(op.update_v1.clone())));
            }
            changed = true;
        }
        if rows.snapshot.is_some() {
            let diff = self.awareness.doc().transact().encode_diff_v1(&before);
            self.outbox.push((Target::All, protocol::update(diff)));
        }
        let count = rows.ops.len() as u64;
        let bytes: u64 = rows.ops.iter().map(|op| op.update_v1.len() as u64).sum();
        self.ops_since_snapshot += count;
        self.bytes_since_snapshot += bytes;
        self.approx_bytes += bytes;
        changed
    }

    /// Integrates a committed row; false if it held nothing new or yrs refused it (then the
    /// replica reloads from the store after the round).
    fn integrate_row(&mut self, bytes: &[u8]) -> bool {
        let decoded = catch_unwind(|| Update::decode_v1(bytes));
        match decoded {
            Ok(Ok(update)) => match self.integrate(bytes, update) {
                Ok(changed) => changed,
                Err(err) => {
                    tracing::error!(doc = %self.id, ?err, "a committed row does not apply; reloading");
                    false
                }
            },
            _ => {
                tracing::error!(doc = %self.id, "a committed row does not decode; skipped");
                false
            }
        }
    }

    /// Connections closed since the last call, and the close to send each.
    pub fn take_kicks(&mut self) -> Vec<(ConnId, CloseReason)> {
        std::mem::take(&mut self.kicks)
    }

    /// Brings the mirror up to the document's current version: one walk of the text and a diff,
    /// however many updates arrived since.
    pub fn sync_mirror(&mut self) {
        if self.mirror_seq == self.last_seq {
            return;
        }
        let doc = self.awareness.doc();
        let text = doc.get_or_insert_text(TEXT_NAME);
        let current = text_of(&doc.transact(), &text);
        self.mirror.sync(&current);
        self.mirror_seq = self.last_seq;
    }

    /// The length in chars now (syncs the mirror).
    pub fn length(&mut self) -> i64 {
        self.sync_mirror();
        self.mirror.len_chars() as i64
    }

    /// The length in chars if known without walking the text (the mirror is in sync).
    pub fn known_length(&self) -> Option<i64> {
        (self.mirror_seq == self.last_seq).then(|| self.mirror.len_chars() as i64)
    }

    /// The version and length now.
    pub fn info(&mut self) -> Applied {
        self.sync_mirror();
        self.applied()
    }

    /// The version and length; the mirror is in sync when this is called.
    fn applied(&self) -> Applied {
        Applied {
            version: self.last_seq,
            length: self.mirror.len_chars() as u64,
        }
    }

    /// The text, if `version` is absent or current.
    pub fn text(&mut self, version: Option<i64>) -> Result<TextAt, DocError> {
        self.check_version(version)?;
        self.sync_mirror();
        Ok(TextAt {
            text: self.mirror.text(),
            version: self.last_seq,
        })
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

    /// Makes `edits` (on `version`, default current) as the server's own yrs client: one
    /// update, one row, relayed to every connection.
    pub fn edit(
        &mut self,
        version: Option<i64>,
        edits: &[Edit],
        source: impl Into<Source>,
    ) -> Result<Applied, DocError> {
        self.check_version(version)?;
        let inserted: usize = edits.iter().map(|e| e.insert.len()).sum();
        self.check_size(inserted)?;
        self.edit_locally(edits, source.into())
    }

    /// Makes the text equal to `text` with a minimal edit script.
    pub fn replace_text(
        &mut self,
        text: &str,
        source: impl Into<Source>,
    ) -> Result<Applied, DocError> {
        self.sync_mirror();
        let edits = edit::diff(&self.mirror.text(), text);
        let inserted: usize = edits.iter().map(|e| e.insert.len()).sum();
        self.check_size(inserted)?;
        self.edit_locally(&edits, source.into())
    }

    /// Applies edits checked against the mirror; the same edits keep the mirror in sync.
    fn edit_locally(&mut self, edits: &[Edit], source: Source) -> Result<Applied, DocError> {
        self.sync_mirror();
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
                    source.origin.to_string(),
                    Target::All,
                    Some((inserted, deleted)),
                    source.author,
                    None,
                );
                for e in edits {
                    self.mirror.apply_edit(e);
                }
                self.mirror_seq = self.last_seq;
                Ok(self.applied())
            }
            Err(_) => {
                // Checked positions cannot make yrs fail; if it does anyway, reload.
                self.needs_reload = true;
                tracing::error!(doc = %self.id, "yrs panicked applying checked edits; document will be reloaded");
                Err(DocError::Unavailable(
                    "the edit could not be applied; the document is reloading, retry".into(),
                ))
            }
        }
    }

    /// Applies a Yjs update (v1) as if a client had sent it, relayed to every connection.
    pub fn apply_update(
        &mut self,
        update: Vec<u8>,
        source: impl Into<Source>,
    ) -> Result<Applied, DocError> {
        let source = source.into();
        let decoded = catch_unwind(|| crate::protocol::decode_update(&update))
            .map_err(|_| "the decoder panicked on it".to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
            .map_err(DocError::InvalidUpdate)?;
        self.check_size(update.len())?;
        match self.integrate(&update, decoded) {
            Ok(changed) => {
                if changed {
                    let origin = source.origin.to_string();
                    self.record(update, origin, Target::All, None, source.author, None);
                }
                Ok(self.info())
            }
            Err(Rejected::Invalid(err)) => Err(DocError::InvalidUpdate(err)),
            Err(Rejected::Panicked) => {
                Err(DocError::InvalidUpdate("rejected by the CRDT".to_string()))
            }
        }
    }

    /// Up to `limit` matches of `searcher` with `context` chars around each, and their count.
    pub fn search(&mut self, searcher: &Searcher, limit: usize, context: usize) -> SearchResult {
        self.sync_mirror();
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

    /// The `limit` most frequent words starting with `prefix`, with their counts.
    pub fn complete(&mut self, prefix: &str, limit: usize) -> Vec<(String, u32)> {
        self.sync_mirror();
        self.mirror.words().top_k(prefix, limit)
    }

    /// True while updates wait for missing dependencies (held back, or pending inside yrs). A
    /// snapshot is the integrated state only, and loading replays just the rows after it, so
    /// none is written then: the op log keeps the updates as they came, and a snapshot follows
    /// once they have integrated.
    pub fn has_pending(&self) -> bool {
        !self.holdback.is_empty() || self.awareness.doc().transact().has_missing_updates()
    }

    /// The integrated state as one update (updates still waiting are not in it).
    pub fn encode_state(&self) -> Vec<u8> {
        self.awareness
            .doc()
            .transact()
            .encode_diff_v1(&StateVector::default())
    }

    /// A snapshot `(seq, state)` when the rows since the last one pass a threshold and nothing
    /// is pending; the counters restart as if it was written.
    pub fn snapshot_due(&mut self) -> Option<(i64, Vec<u8>)> {
        if self.ops_since_snapshot < self.limits.snapshot_ops
            && self.bytes_since_snapshot < self.limits.snapshot_bytes
        {
            return None;
        }
        if self.has_pending() {
            // Wait until they integrate: the op log has them in their original form.
            return None;
        }
        self.ops_since_snapshot = 0;
        self.bytes_since_snapshot = 0;
        Some((self.last_seq, self.encode_state()))
    }

    /// The snapshot to write before unloading: any row since the last one and nothing pending.
    pub fn final_snapshot(&self) -> Option<(i64, Vec<u8>)> {
        (self.ops_since_snapshot > 0 && !self.has_pending())
            .then(|| (self.last_seq, self.encode_state()))
    }

    /// The yrs document (for checks; changes go through the methods above).
    pub fn doc(&self) -> &Doc {
        self.awareness.doc()
    }
}

/// A fresh yrs document as the server keeps it: quire's options (crate quire-wire) with garbage
/// collection off, since it would replace deleted content by tombstones that updates arriving
/// out of order may still refer to, and history replays need the full content.
pub fn server_doc() -> Doc {
    Doc::with_options(Options {
        skip_gc: true,
        ..quire_wire::doc_options()
    })
}

/// Builds a document from its newest snapshot and the op log after it. A row that does not
/// decode is logged and skipped rather than making the whole document unloadable.
pub fn build_doc(id: &str, stored: &StoredDoc) -> Doc {
    load_doc(id, stored).0
}

/// [`build_doc`], also returning the updates that are still not integrated, exactly as the
/// live replica had them: rows go through the same [`Holdback`].
pub fn load_doc(id: &str, stored: &StoredDoc) -> (Doc, Holdback) {
    let doc = server_doc();
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
