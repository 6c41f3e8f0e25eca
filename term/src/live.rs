//! A live quire document: the yrs replica the editor's buffer mirrors, the Yjs sync protocol
//! over [`net`](crate::net), awareness (cursors, names, colours) and undo of one's own edits.
//!
//! # Text
//! The shared text is `ydoc.getText('content')` measured in UTF-16 code units
//! ([`quire_wire::new_doc`]), exactly as the browser's Yjs; the editor's buffer counts chars and
//! converts with its own `char_to_utf16` / `utf16_to_char`, so emoji and other non-BMP text stay
//! aligned. A local edit is made on the buffer and, in the same step, on the replica in a
//! transaction with origin [`LOCAL`]. Every other change of the text — received updates, undo and
//! redo — is observed as a Yjs delta and queued as [`Change`]s that the editor applies to its
//! buffer ([`Session::take_changes`]), moving its cursor with the text around it.
//!
//! # Protocol
//! On each connection the session sends SyncStep1 and its awareness state, answers the server's
//! SyncStep1 with SyncStep2 (everything made offline goes there), applies SyncStep2 and Updates,
//! and sends each local update as one Update message per frame. Frames are decoded and encoded
//! by crate quire-wire, the contract the server keeps too. Offline, nothing is queued: the
//! handshake of the next connection carries it. The state shown is *connecting*, *syncing*,
//! *synced* or *offline* with the time to the next attempt.
//!
//! # Awareness
//! The local state is what y-codemirror.next publishes, so browsers show this cursor and the
//! terminal shows theirs: `{"user": {"name", "color", "colorLight"}, "cursor": {"anchor", "head"}}`
//! where `anchor`/`head` are Yjs relative positions as JSON, written with every field Yjs's own
//! `RelativePosition` has (`type`, `tname`, `item`, `assoc`): y-codemirror.next hands the raw
//! JSON to `createAbsolutePositionFromRelativePosition`, which reads `item` and `type` without
//! checking for absence. Renewed every 15 s; states of others not renewed for 30 s are dropped;
//! on quit a `null` state says goodbye.
//!
//! # Undo
//! A yrs [`UndoManager`] tracking [`LOCAL`] transactions only, so Ctrl-Z takes back one's own
//! edits and never a collaborator's. Its steps are cut at cursor moves ([`Session::seal`]) and
//! after 500 ms without typing.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use editor_core::{GapBuffer, TextBuffer};
use quire_holdback::Holdback;
use quire_wire::new_doc;
use tokio::sync::mpsc::UnboundedSender;
use yrs::sync::time::{Clock, SystemClock};
use yrs::sync::{Awareness, Message, SyncMessage};
use yrs::types::Delta;
use yrs::undo::Options as UndoOptions;
use yrs::{
    Any, Assoc, ClientID, Doc, GetString, IndexScope, IndexedSequence, Observable, Origin, Out,
    ReadTxn, StickyIndex, Text, TextRef, Transact, UndoManager, ID,
};

use crate::net::{Net, NetEvent};

/// The shared text's name: `ydoc.getText('content')` (crate quire-wire).
pub use quire_wire::TEXT_NAME;
/// Origin of the transactions that carry the user's own edits (the ones undo tracks).
pub const LOCAL: &str = "quire-term-local";
/// Origin of the transactions that apply what the server sent.
const REMOTE: &str = "quire-term-remote";
const RENEW_EVERY: Duration = Duration::from_secs(15);
const EXPIRE_AFTER_MS: u64 = 30_000;

/// One step of a text delta, in UTF-16 code units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Retain(u32),
    Insert(String),
    Delete(u32),
    /// Something the buffer cannot mirror step by step (an embed): reload the whole text.
    Reload,
}

/// Who the user is, as others see them.
#[derive(Debug, Clone)]
pub struct User {
    pub name: String,
    /// `#rrggbb`.
    pub color: String,
}

/// The connection as the status bar shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Conn {
    Connecting {
        attempt: u32,
    },
    /// Connected; the server's state has not arrived yet.
    Syncing,
    Synced,
    Offline {
        reason: String,
        retry_at: Instant,
    },
    /// The server refused the document for good.
    Refused {
        reason: String,
    },
}

/// Someone else in the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub id: u64,
    pub name: String,
    pub color: String,
    /// `(anchor, head)` as char positions in the editor's buffer, when they publish a cursor.
    pub cursor: Option<(usize, usize)>,
}

/// One open live document.
pub struct Session {
    pub url: String,
    pub doc_name: String,
    doc: Doc,
    /// Remote updates not yet integrated (quire_holdback: yrs alone can misplace blocks that
    /// arrive before their client's earlier ones).
    holdback: Holdback,
    text: TextRef,
    awareness: Awareness,
    undo: UndoManager,
    changes: Arc<Mutex<Vec<Vec<Change>>>>,
    outbox: Arc<Mutex<Vec<Vec<u8>>>>,
    sender: Option<UnboundedSender<Vec<u8>>>,
    pub conn: Conn,
    /// Local edits made while not synced (the server may not have them yet).
    unsynced: bool,
    user: User,
    /// The awareness JSON last set, to publish only changes.
    published: Option<String>,
    last_renew: Instant,
    net: Option<Net>,
    peers: Vec<Peer>,
    peers_dirty: bool,
    /// Messages for the status line (protocol errors, refusals).
    pub notices: Vec<String>,
    /// Why the server refuses this replica's edits (a read-only token, a size limit).
    pub denied: Option<String>,
    /// The names Yjs clients published in awareness this session (kept after they leave), for
    /// who typed what.
    names: HashMap<u64, String>,
}

impl Session {
    /// A session for document `doc_name` at `url` (ws://…/ws/DOC), not connected yet.
    pub fn new(url: String, doc_name: String, user: User) -> Session {
        let doc = new_doc();
        let text = doc.get_or_insert_text(TEXT_NAME);
        let changes: Arc<Mutex<Vec<Vec<Change>>>> = Arc::default();
        let sink = changes.clone();
        text.observe("quire-term", move |txn, event| {
            if txn.origin() == Some(&Origin::from(LOCAL)) {
                return;
            }
            let steps = event
                .delta(txn)
                .iter()
                .map(|d| match d {
                    Delta::Retain(n, _) => Change::Retain(*n),
                    Delta::Deleted(n) => Change::Delete(*n),
                    Delta::Inserted(Out::Any(Any::String(s)), _) => Change::Insert(s.to_string()),
                    Delta::Inserted(..) => Change::Reload,
                })
                .collect();
            sink.lock().unwrap().push(steps);
        });
        let outbox: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
        let out = outbox.clone();
        doc.observe_update_v1("quire-term", move |txn, event| {
            if txn.origin() != Some(&Origin::from(REMOTE)) {
                out.lock().unwrap().push(event.update.clone());
            }
        })
        .expect("a fresh document accepts observers");
        let mut tracked = HashSet::new();
        tracked.insert(Origin::from(LOCAL));
        let mut undo = UndoManager::with_options(UndoOptions {
            capture_timeout_millis: 500,
            tracked_origins: tracked,
            ..UndoOptions::default()
        });
        undo.expand_scope(&doc, &text);
        let awareness = Awareness::new(doc.clone());
        let mut session = Session {
            holdback: Holdback::default(),
            url,
            doc_name,
            doc,
            text,
            awareness,
            undo,
            changes,
            outbox,
            sender: None,
            conn: Conn::Connecting { attempt: 1 },
            unsynced: false,
            user,
            published: None,
            last_renew: Instant::now(),
            net: None,
            peers: Vec::new(),
            peers_dirty: false,
            notices: Vec::new(),
            denied: None,
            names: HashMap::new(),
        };
        session.set_awareness(None);
        session
    }

    /// Starts the connection thread; its events must come back through [`Session::handle`].
    pub fn connect(&mut self, emit: Box<dyn Fn(NetEvent) + Send>) -> std::io::Result<()> {
        self.net = Some(Net::start(self.url.clone(), emit)?);
        Ok(())
    }

    /// The replica's text (for tests and the initial load).
    pub fn text(&self) -> String {
        self.text.get_string(&self.doc.transact())
    }

    /// This replica's Yjs client id.
    pub fn client_id(&self) -> u64 {
        self.doc.client_id().get()
    }

    /// Whether some local edits may not have reached the server.
    pub fn has_unsynced(&self) -> bool {
        self.unsynced
    }

    /// Sends one frame (one message, from quire_wire's encoders) if connected.
    fn send(&mut self, frame: impl Into<Vec<u8>>) {
        if let Some(tx) = &self.sender {
            if tx.send(frame.into()).is_err() {
                self.sender = None;
            }
        }
    }

    /// Sends the updates local transactions produced — while a socket is open, synced or not, as
    /// y-websocket does — or drops them offline: the next handshake carries them.
    fn flush_outbox(&mut self) {
        let updates = std::mem::take(&mut *self.outbox.lock().unwrap());
        if updates.is_empty() {
            return;
        }
        if self.sender.is_some() {
            for u in updates {
                self.send(quire_wire::update(u));
            }
        } else {
            self.unsynced = true;
        }
    }

    /// Makes the user's edit — `range` (chars of `buf`, which does not have the edit yet)
    /// becomes `text` — on the replica and sends it.
    pub fn local_edit(&mut self, buf: &GapBuffer, range: std::ops::Range<usize>, text: &str) {
        let (Ok(start), Ok(end)) = (buf.char_to_utf16(range.start), buf.char_to_utf16(range.end))
        else {
            return;
        };
        {
            let mut txn = self.doc.transact_mut_with(LOCAL);
            if end > start {
                self.text
                    .remove_range(&mut txn, start as u32, (end - start) as u32);
            }
            if !text.is_empty() {
                self.text.insert(&mut txn, start as u32, text);
            }
        }
        self.peers_dirty = true;
        self.flush_outbox();
    }

    /// Undoes the user's last step; the change arrives through [`Session::take_changes`].
    pub fn undo(&mut self) -> bool {
        let done = self.undo.undo_blocking();
        self.peers_dirty = true;
        self.flush_outbox();
        done
    }

    /// Redoes the last undone step.
    pub fn redo(&mut self) -> bool {
        let done = self.undo.redo_blocking();
        self.peers_dirty = true;
        self.flush_outbox();
        done
    }

    /// Ends the current undo step (the cursor moved).
    pub fn seal(&mut self) {
        self.undo.reset();
    }

    /// Text changes the buffer has not seen yet, one `Vec` per transaction, in order.
    pub fn take_changes(&mut self) -> Vec<Vec<Change>> {
        std::mem::take(&mut *self.changes.lock().unwrap())
    }

    /// Handles what the connection reported. Text changes are left for [`take_changes`].
    ///
    /// [`take_changes`]: Session::take_changes
    pub fn handle(&mut self, event: NetEvent) {
        match event {
            NetEvent::Connecting { attempt } => {
                if !matches!(self.conn, Conn::Refused { .. }) {
                    self.conn = Conn::Connecting { attempt };
                }
            }
            NetEvent::Connected(tx) => {
                self.sender = Some(tx);
                self.conn = Conn::Syncing;
                let sv = self.doc.transact().state_vector();
                self.send(quire_wire::sync_step1(&sv));
                self.send_own_awareness();
            }
            NetEvent::Frame(frame) => {
                if let Err(e) = self.receive(&frame) {
                    self.notices
                        .push(format!("bad message from the server: {e}"));
                }
            }
            NetEvent::Disconnected { reason, retry_in } => {
                self.sender = None;
                self.conn = Conn::Offline {
                    reason,
                    retry_at: Instant::now() + retry_in,
                };
                self.drop_peers();
            }
            NetEvent::Refused { reason } => {
                self.sender = None;
                self.conn = Conn::Refused { reason };
                self.drop_peers();
            }
        }
    }

    /// Forgets everyone else (y-websocket does the same when its socket closes).
    fn drop_peers(&mut self) {
        let me = self.doc.client_id();
        let others: Vec<_> = self
            .awareness
            .iter()
            .filter(|(id, s)| *id != me && s.data.is_some())
            .map(|(id, _)| id)
            .collect();
        for id in others {
            self.awareness.remove_state(id);
        }
        self.peers_dirty = true;
    }

    fn receive(&mut self, frame: &[u8]) -> Result<(), String> {
        // A truncated frame is refused whole, as the server refuses one.
        let messages = quire_wire::decode_messages(frame).map_err(|e| e.to_string())?;
        for msg in messages {
            match msg {
                Message::Sync(SyncMessage::SyncStep1(sv)) => {
                    // The integrated state, then what still waits, as it came (as the server
                    // answers; yrs' encoding of pending blocks can misplace them).
                    for reply in quire_wire::sync_reply(&self.doc, &self.holdback, &sv) {
                        self.send(reply);
                    }
                    // The server now gets everything this replica made offline.
                    if self.sender.is_some() {
                        self.unsynced = false;
                    }
                }
                Message::Sync(SyncMessage::SyncStep2(update)) => {
                    self.apply_remote(&update)?;
                    self.conn = Conn::Synced;
                }
                Message::Sync(SyncMessage::Update(update)) => self.apply_remote(&update)?,
                Message::Awareness(update) => {
                    self.awareness
                        .apply_update(update)
                        .map_err(|e| e.to_string())?;
                    self.peers_dirty = true;
                }
                Message::AwarenessQuery => self.send_own_awareness(),
                Message::Auth(Some(reason)) => {
                    self.notices
                        .push(format!("the server refused an edit: {reason}"));
                    self.denied = Some(reason);
                }
                Message::Auth(None) | Message::Custom(..) => {}
            }
        }
        Ok(())
    }

    fn apply_remote(&mut self, bytes: &[u8]) -> Result<(), String> {
        let update = quire_wire::decode_update(bytes).map_err(|e| e.to_string())?;
        let mut txn = self.doc.transact_mut_with(REMOTE);
        self.holdback
            .apply(&mut txn, bytes, update)
            .map_err(|e| e.to_string())?;
        drop(txn);
        self.peers_dirty = true;
        Ok(())
    }

    fn send_own_awareness(&mut self) {
        let me = self.doc.client_id();
        if let Ok(update) = self.awareness.update_with_clients([me]) {
            self.send(quire_wire::awareness(update));
        }
    }

    fn set_awareness(&mut self, cursor: Option<(serde_json::Value, serde_json::Value)>) {
        let mut state = serde_json::json!({
            "user": {
                "name": self.user.name,
                "color": self.user.color,
                "colorLight": format!("{}33", self.user.color),
            },
        });
        if let Some((anchor, head)) = cursor {
            state["cursor"] = serde_json::json!({ "anchor": anchor, "head": head });
        }
        let json = state.to_string();
        if self.published.as_deref() == Some(json.as_str()) {
            return;
        }
        self.awareness.set_local_state_raw(json.clone());
        self.published = Some(json);
        self.last_renew = Instant::now();
        self.send_own_awareness();
    }

    /// Publishes the user's selection (`anchor`, `head`: chars of `buf`) if it moved.
    pub fn publish_cursor(&mut self, buf: &GapBuffer, anchor: usize, head: usize) {
        let cursor = {
            let txn = self.doc.transact();
            let rel = |pos: usize| -> Option<serde_json::Value> {
                let idx = buf.char_to_utf16(pos.min(buf.len_chars())).ok()? as u32;
                // At the end yrs has no item to point at; Yjs then names the type itself.
                let si = self
                    .text
                    .sticky_index(&txn, idx, Assoc::After)
                    .unwrap_or_else(|| StickyIndex::from_type(&txn, &self.text, Assoc::After));
                Some(relative_position_json(&si))
            };
            match (rel(anchor), rel(head)) {
                (Some(a), Some(h)) => Some((a, h)),
                _ => None,
            }
        };
        self.set_awareness(cursor);
    }

    /// Renews the awareness state, drops others' stale ones, flushes pending updates.
    pub fn tick(&mut self, now: Instant) {
        if now.duration_since(self.last_renew) >= RENEW_EVERY {
            if let Some(json) = self.published.clone() {
                self.awareness.set_local_state_raw(json);
            }
            self.last_renew = now;
            self.send_own_awareness();
        }
        let me = self.doc.client_id();
        let wall = SystemClock.now();
        let stale: Vec<_> = self
            .awareness
            .iter()
            .filter(|(id, s)| {
                *id != me
                    && s.data.is_some()
                    && wall.saturating_sub(s.last_updated) > EXPIRE_AFTER_MS
            })
            .map(|(id, _)| id)
            .collect();
        for id in stale {
            self.awareness.remove_state(id);
            self.peers_dirty = true;
        }
        self.flush_outbox();
    }

    /// The others in the document, cursors mapped to char positions of `buf` (which must mirror
    /// the replica).
    pub fn peers(&mut self, buf: &GapBuffer) -> &[Peer] {
        if self.peers_dirty {
            self.peers_dirty = false;
            let me = self.doc.client_id();
            let txn = self.doc.transact();
            let mut peers: Vec<Peer> = self
                .awareness
                .iter()
                .filter(|(id, _)| *id != me)
                .filter_map(|(id, s)| {
                    let state: serde_json::Value = serde_json::from_str(s.data.as_deref()?).ok()?;
                    let user = &state["user"];
                    let name = user["name"].as_str().unwrap_or("Anonymous").to_string();
                    let color = user["color"]
                        .as_str()
                        .filter(|c| parse_hex(c).is_some())
                        .unwrap_or("#30bced")
                        .to_string();
                    let resolve = |v: &serde_json::Value| -> Option<usize> {
                        let si = parse_relative_position(v)?;
                        let off = si.get_offset(&txn)?;
                        let u16 = (off.index as usize).min(buf.len_utf16());
                        buf.utf16_to_char(u16)
                            .or_else(|_| buf.utf16_to_char(u16.saturating_sub(1)))
                            .ok()
                    };
                    let cursor = match (
                        resolve(&state["cursor"]["anchor"]),
                        resolve(&state["cursor"]["head"]),
                    ) {
                        (Some(a), Some(h)) => Some((a, h)),
                        _ => None,
                    };
                    Some(Peer {
                        id: id.get(),
                        name,
                        color,
                        cursor,
                    })
                })
                .collect();
            peers.sort_by(|a, b| a.name.cmp(&b.name).then(a.id.cmp(&b.id)));
            self.peers = peers;
        }
        &self.peers
    }

    /// Who typed the text: runs of chars in order, each with its author's name (`None` when
    /// unknown: a client that published no name while this session was open). Names come from
    /// this session's user and from the awareness states seen so far. Walks the whole text.
    pub fn authorship(&mut self) -> Vec<(usize, Option<String>)> {
        for (id, state) in self.awareness.iter() {
            let name = state
                .data
                .as_deref()
                .and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
                .and_then(|v| v["user"]["name"].as_str().map(str::to_string));
            if let Some(name) = name {
                self.names.insert(id.get(), name);
            }
        }
        let me = self.doc.client_id();
        let mut txn = self.doc.transact_mut();
        let now = txn.snapshot();
        // Against an empty snapshot every visible item counts as added: each chunk comes with
        // the id of the item it is from. Nothing changes, so nothing is sent.
        let chunks = self.text.diff_range(
            &mut txn,
            Some(&now),
            Some(&yrs::Snapshot::default()),
            |c: yrs::types::text::YChange| c.id,
        );
        drop(txn);
        let mut runs: Vec<(usize, Option<String>)> = Vec::new();
        for chunk in chunks {
            let Out::Any(Any::String(s)) = &chunk.insert else {
                continue;
            };
            let who = chunk.ychange.and_then(|id| {
                if id.client == me {
                    Some(self.user.name.clone())
                } else {
                    self.names.get(&id.client.get()).cloned()
                }
            });
            let n = s.chars().count();
            match runs.last_mut() {
                Some((len, last)) if *last == who => *len += n,
                _ => runs.push((n, who)),
            }
        }
        runs
    }

    /// Marks peers' cursors for recomputation (the buffer changed).
    pub fn text_changed(&mut self) {
        self.peers_dirty = true;
    }

    /// Says goodbye (a `null` awareness state), sends what is queued and closes the connection,
    /// waiting at most `limit`.
    pub fn shutdown(&mut self, limit: Duration) {
        self.flush_outbox();
        if self.sender.is_some() {
            self.awareness.clean_local_state();
            self.send_own_awareness();
        }
        self.sender = None;
        if let Some(net) = self.net.take() {
            net.stop(limit);
        }
    }
}

/// A Yjs `RelativePosition` as JSON, with all four fields as `JSON.stringify` writes Yjs's class
/// (`createRelativePositionFromTypeIndex` on a root type gives `type: null, tname: "content"`).
pub fn relative_position_json(si: &StickyIndex) -> serde_json::Value {
    let id = |id: &ID| serde_json::json!({ "client": id.client.get(), "clock": id.clock });
    let assoc = if si.assoc == Assoc::Before { -1 } else { 0 };
    match si.scope() {
        IndexScope::Relative(item) => serde_json::json!({
            "type": null, "tname": TEXT_NAME, "item": id(item), "assoc": assoc,
        }),
        IndexScope::Root(name) => serde_json::json!({
            "type": null, "tname": name.as_ref(), "item": null, "assoc": assoc,
        }),
        IndexScope::Nested(ty) => serde_json::json!({
            "type": id(ty), "tname": null, "item": null, "assoc": assoc,
        }),
    }
}

/// Reads a relative position as Yjs's `createRelativePositionFromJSON` does: `item` first, then
/// `tname`, then `type`; a negative `assoc` associates to the left.
pub fn parse_relative_position(v: &serde_json::Value) -> Option<StickyIndex> {
    let id = |v: &serde_json::Value| -> Option<ID> {
        let client = v.get("client")?.as_u64()?;
        let clock = u32::try_from(v.get("clock")?.as_u64()?).ok()?;
        Some(ID::new(ClientID::new(client), clock))
    };
    let assoc = match v.get("assoc").and_then(|a| a.as_i64()) {
        Some(a) if a < 0 => Assoc::Before,
        _ => Assoc::After,
    };
    let scope = if let Some(item) = v.get("item").and_then(id) {
        IndexScope::Relative(item)
    } else if let Some(name) = v.get("tname").and_then(|t| t.as_str()) {
        IndexScope::Root(name.into())
    } else {
        IndexScope::Nested(v.get("type").and_then(id)?)
    };
    Some(StickyIndex::new(scope, assoc))
}

/// `#rrggbb` as RGB.
pub fn parse_hex(c: &str) -> Option<(u8, u8, u8)> {
    let h = c.strip_prefix('#')?;
    if h.len() != 6 || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let n = u32::from_str_radix(h, 16).ok()?;
    Some(((n >> 16) as u8, (n >> 8) as u8, n as u8))
}

/// The browser editor's palette (web/src/prefs.js); a name always gets the same colour.
pub const PALETTE: [&str; 10] = [
    "#e5484d", "#f76b15", "#2f9e44", "#12a594", "#0b84e0", "#3e63dd", "#8e4ec6", "#d6409f",
    "#a0703c", "#697077",
];

/// The palette colour for `name`.
pub fn color_for(name: &str) -> &'static str {
    let h = name
        .bytes()
        .fold(2166136261u32, |h, b| (h ^ b as u32).wrapping_mul(16777619));
    PALETTE[h as usize % PALETTE.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> User {
        User {
            name: name.into(),
            color: "#e5484d".into(),
        }
    }

    /// Two sessions wired back to back: whatever one sends, the other receives.
    fn pump(
        from: &mut Session,
        from_rx: &mut tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>,
        to: &mut Session,
    ) {
        while let Ok(frame) = from_rx.try_recv() {
            to.handle(NetEvent::Frame(frame));
        }
        let _ = from;
    }

    fn connected(s: &mut Session) -> tokio::sync::mpsc::UnboundedReceiver<Vec<u8>> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        s.handle(NetEvent::Connected(tx));
        rx
    }

    #[test]
    fn relative_positions_match_yjs_json() {
        let mut s = Session::new("ws://x/ws/d".into(), "d".into(), user("a"));
        let buf = GapBuffer::from_text("");
        // Empty text: the position is the type's end.
        s.publish_cursor(&buf, 0, 0);
        let state: serde_json::Value =
            serde_json::from_str(s.published.as_deref().unwrap()).unwrap();
        assert_eq!(
            state["cursor"]["head"],
            serde_json::json!({"type": null, "tname": "content", "item": null, "assoc": 0})
        );
        assert_eq!(state["user"]["colorLight"], "#e5484d33");
        let mut buf = GapBuffer::from_text("");
        s.local_edit(&buf, 0..0, "a😀b");
        buf.insert(0, "a😀b").unwrap();
        s.publish_cursor(&buf, 1, 2);
        let state: serde_json::Value =
            serde_json::from_str(s.published.as_deref().unwrap()).unwrap();
        let head = &state["cursor"]["head"];
        assert_eq!(head["item"]["client"], s.client_id());
        // "a😀" is 3 UTF-16 units: the head (char 2) sits on "b", clock 3.
        assert_eq!(head["item"]["clock"], 3);
        assert_eq!(head["tname"], "content");
        assert!(head["type"].is_null());
        // And it reads back to the same char position.
        let si = parse_relative_position(head).unwrap();
        let txn = s.doc.transact();
        assert_eq!(si.get_offset(&txn).unwrap().index, 3);
    }

    type Outgoing = tokio::sync::mpsc::UnboundedReceiver<Vec<u8>>;

    /// Alice and Bob, connected back to back and synced.
    fn synced_pair() -> (Session, Outgoing, Session, Outgoing) {
        let mut a = Session::new("ws://x/ws/d".into(), "d".into(), user("alice"));
        let mut b = Session::new("ws://x/ws/d".into(), "d".into(), user("bob"));
        let mut arx = connected(&mut a);
        let mut brx = connected(&mut b);
        pump(&mut a, &mut arx, &mut b);
        pump(&mut b, &mut brx, &mut a);
        pump(&mut a, &mut arx, &mut b);
        (a, arx, b, brx)
    }

    #[test]
    fn authorship_names_each_run_by_who_typed_it() {
        let (mut a, mut arx, mut b, mut brx) = synced_pair();
        let mut abuf = GapBuffer::from_text("");
        a.local_edit(&abuf, 0..0, "héllo 😀");
        abuf.insert(0, "héllo 😀").unwrap();
        a.publish_cursor(&abuf, 0, 0);
        pump(&mut a, &mut arx, &mut b);
        let mut bbuf = GapBuffer::from_text(&b.text());
        b.local_edit(&bbuf, 5..5, ", bob");
        bbuf.insert(5, ", bob").unwrap();
        pump(&mut b, &mut brx, &mut a);
        assert_eq!(a.text(), "héllo, bob 😀");
        let named = |n: usize, who: &str| (n, Some(who.to_string()));
        // Bob's name came with his awareness when he connected.
        let runs = vec![named(5, "alice"), named(5, "bob"), named(2, "alice")];
        assert_eq!(a.authorship(), runs);
        // It stays known after his presence goes (he left, or it expired).
        let bob = yrs::ClientID::new(b.client_id());
        a.awareness.remove_state(bob);
        assert_eq!(a.authorship(), runs);
        // A client never seen is unknown.
        a.names.clear();
        assert_eq!(
            a.authorship(),
            vec![named(5, "alice"), (5, None), named(2, "alice")]
        );
        a.names.insert(b.client_id(), "bob".into());
        assert_eq!(b.authorship(), a.authorship());
        assert_eq!(
            a.text(),
            "héllo, bob 😀",
            "reading authorship changes nothing"
        );
    }

    #[test]
    fn two_sessions_sync_and_see_cursors() {
        let (mut a, mut arx, mut b, _brx) = synced_pair();
        assert_eq!((&a.conn, &b.conn), (&Conn::Synced, &Conn::Synced));
        let mut abuf = GapBuffer::from_text("");
        a.local_edit(&abuf, 0..0, "h😀llo");
        abuf.insert(0, "h😀llo").unwrap();
        a.publish_cursor(&abuf, 2, 2);
        pump(&mut a, &mut arx, &mut b);
        let changes = b.take_changes();
        assert_eq!(changes, vec![vec![Change::Insert("h😀llo".into())]]);
        let bbuf = GapBuffer::from_text(&b.text());
        let peers = b.peers(&bbuf).to_vec();
        assert_eq!(peers.len(), 1);
        assert_eq!(peers[0].name, "alice");
        assert_eq!(peers[0].cursor, Some((2, 2)));
        // b's undo does not touch a's text.
        assert!(!b.undo());
        assert!(a.undo());
        assert_eq!(a.text(), "");
        assert_eq!(a.take_changes(), vec![vec![Change::Delete(6)]]);
    }
}
