//! WebSocket clients of quire-server for tests: [`Client`], a Yjs peer holding a yrs document,
//! and [`RawConn`], which sends whatever bytes a test wants and reports how the server closed.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use yrs::sync::{Message as YMessage, SyncMessage};
use yrs::updates::decoder::Decode;
use yrs::{Doc, GetString, Origin, ReadTxn, StateVector, Text, TextRef, Transact, Update};

/// Default time limit of the waits in this module.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The name of the shared text quire serves: `ydoc.getText('content')` (crate quire-wire).
pub use quire_wire::TEXT_NAME;

/// Origin of transactions that apply what the server sent (not echoed back).
const REMOTE: &str = "quire-tests-remote";

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How a connection ended, as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseInfo {
    /// The close code the server sent; `None` when the connection ended without a close frame.
    pub code: Option<u16>,
    /// The close reason, or what went wrong when there was no close frame.
    pub reason: String,
}

/// Encodes one y-protocols message (one message per frame, as y-websocket sends).
pub fn encode_message(msg: &YMessage) -> Vec<u8> {
    quire_wire::encode(msg).into()
}

/// `[0][2] update`: an Update message around `update` (v1 encoding).
pub fn update_frame(update: &[u8]) -> Vec<u8> {
    quire_wire::update(update.to_vec()).into()
}

/// `[0][0] stateVector`: SyncStep1.
pub fn sync_step1_frame(sv: &StateVector) -> Vec<u8> {
    quire_wire::sync_step1(sv).into()
}

/// A yrs document as a Yjs browser client has it: positions in UTF-16 code units.
pub fn client_doc() -> Doc {
    quire_wire::new_doc()
}

/// The UTF-16 offset of char index `chars` in `s`. Panics past the end.
pub fn utf16_offset(s: &str, chars: usize) -> u32 {
    let mut units = 0usize;
    let mut iter = s.chars();
    for i in 0..chars {
        let c = iter.next().unwrap_or_else(|| {
            panic!(
                "char position {chars} is past the end of a {i}-char text {:?}",
                preview(s)
            )
        });
        units += c.len_utf16();
    }
    units as u32
}

/// A long text shortened for messages.
pub fn preview(s: &str) -> String {
    const MAX: usize = 400;
    if s.chars().count() <= MAX {
        s.to_string()
    } else {
        let head: String = s.chars().take(MAX / 2).collect();
        let tail: String = s
            .chars()
            .rev()
            .take(MAX / 2)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("{head}…[{} chars]…{tail}", s.chars().count())
    }
}

/// Opens a WebSocket within [`DEFAULT_TIMEOUT`].
pub async fn connect_ws(url: &str) -> Result<Ws, tungstenite::Error> {
    match tokio::time::timeout(
        DEFAULT_TIMEOUT,
        tokio_tungstenite::connect_async(url.to_string()),
    )
    .await
    {
        Ok(result) => result.map(|(ws, _response)| ws),
        Err(_) => Err(tungstenite::Error::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("WebSocket handshake with {url} took over {DEFAULT_TIMEOUT:?}"),
        ))),
    }
}

enum Out {
    Frame(Message),
    Flush(oneshot::Sender<()>),
}

/// What a connection's background tasks share with its handle.
#[derive(Default)]
struct Shared {
    close: Mutex<Option<CloseInfo>>,
    synced: AtomicBool,
    frames_received: AtomicU64,
    /// SyncStep2 messages seen by a [`RawConn`] (for [`RawConn::sync_barrier`]).
    sync_step2_received: AtomicU64,
    /// A frame from the server this client could not decode.
    protocol_error: Mutex<Option<String>>,
    /// Reasons of the permission-denied messages (`[2][0] reason`) received.
    denied: Mutex<Vec<String>>,
    /// Presence (awareness) states the server sent, by client id: their JSON.
    presence: Mutex<std::collections::HashMap<u64, String>>,
}

/// Records a permission-denied message (`[2][0] reason`) if `frame` is one.
fn record_denied(frame: &[u8], shared: &Shared) {
    if frame.starts_with(&[2]) {
        if let Ok(msgs) = quire_wire::decode_messages(frame) {
            if let Some(YMessage::Auth(reason)) = msgs.into_iter().next() {
                shared
                    .denied
                    .lock()
                    .unwrap()
                    .push(reason.unwrap_or_default());
            }
        }
    }
}

/// The socket plumbing both clients share: a writer task fed by a channel and a reader task
/// that hands every binary frame to `on_binary` and records the close.
struct Conn {
    out: mpsc::UnboundedSender<Out>,
    shared: Arc<Shared>,
    changes: watch::Receiver<u64>,
    tasks: Vec<JoinHandle<()>>,
}

impl Conn {
    fn spawn<F>(ws: Ws, on_binary: F) -> Conn
    where
        F: FnMut(&[u8], &mpsc::UnboundedSender<Out>, &Shared) + Send + 'static,
    {
        Conn::spawn_with(ws, mpsc::unbounded_channel(), on_binary)
    }

    /// Like [`Conn::spawn`] with an outgoing queue made (and perhaps fed) beforehand.
    fn spawn_with<F>(
        ws: Ws,
        (out_tx, out_rx): (mpsc::UnboundedSender<Out>, mpsc::UnboundedReceiver<Out>),
        on_binary: F,
    ) -> Conn
    where
        F: FnMut(&[u8], &mpsc::UnboundedSender<Out>, &Shared) + Send + 'static,
    {
        let (sink, stream) = ws.split();
        let shared = Arc::new(Shared::default());
        let (changed, changes) = watch::channel(0u64);
        let writer = tokio::spawn(write_loop(sink, out_rx));
        let reader = tokio::spawn(read_loop(
            stream,
            out_tx.clone(),
            shared.clone(),
            changed,
            on_binary,
        ));
        Conn {
            out: out_tx,
            shared,
            changes,
            tasks: vec![writer, reader],
        }
    }

    fn send(&self, msg: Message) {
        // A closed connection drops the frame, as a real socket would; tests see the close.
        let _ = self.out.send(Out::Frame(msg));
    }

    async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.out.send(Out::Flush(tx)).is_ok() {
            let _ = tokio::time::timeout(DEFAULT_TIMEOUT, rx).await;
        }
    }

    fn closed(&self) -> Option<CloseInfo> {
        self.shared.close.lock().unwrap().clone()
    }

    async fn wait_closed(&self, timeout: Duration) -> Option<CloseInfo> {
        let mut changes = self.changes.clone();
        let wait = async {
            loop {
                if let Some(info) = self.closed() {
                    return info;
                }
                if changes.changed().await.is_err() {
                    // The reader is gone; it always records a close first.
                    return self.closed().unwrap_or(CloseInfo {
                        code: None,
                        reason: "reader task ended".into(),
                    });
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.ok()
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

async fn write_loop(mut sink: SplitSink<Ws, Message>, mut rx: mpsc::UnboundedReceiver<Out>) {
    while let Some(out) = rx.recv().await {
        match out {
            Out::Frame(msg) => {
                let closing = matches!(msg, Message::Close(_));
                // feed + flush when the queue is empty: fewer syscalls for bursts.
                if sink.feed(msg).await.is_err() {
                    break;
                }
                if closing {
                    let _ = sink.flush().await;
                    break;
                }
                if rx.is_empty() && sink.flush().await.is_err() {
                    break;
                }
            }
            Out::Flush(done) => {
                let _ = sink.flush().await;
                let _ = done.send(());
            }
        }
    }
    // Answer flushes queued after a failure, so no waiter hangs.
    while let Ok(out) = rx.try_recv() {
        if let Out::Flush(done) = out {
            let _ = done.send(());
        }
    }
}

async fn read_loop<F>(
    mut stream: SplitStream<Ws>,
    out: mpsc::UnboundedSender<Out>,
    shared: Arc<Shared>,
    changed: watch::Sender<u64>,
    mut on_binary: F,
) where
    F: FnMut(&[u8], &mpsc::UnboundedSender<Out>, &Shared),
{
    let record = |info: CloseInfo| {
        let mut close = shared.close.lock().unwrap();
        if close.is_none() {
            *close = Some(info);
        }
    };
    while let Some(msg) = stream.next().await {
        match msg {
            Ok(Message::Binary(bytes)) => {
                shared.frames_received.fetch_add(1, Ordering::Relaxed);
                on_binary(&bytes, &out, &shared);
            }
            Ok(Message::Close(frame)) => {
                record(match frame {
                    Some(f) => CloseInfo {
                        code: Some(u16::from(f.code)),
                        reason: f.reason.to_string(),
                    },
                    None => CloseInfo {
                        code: None,
                        reason: "close frame without a code".into(),
                    },
                });
                // Keep reading: tungstenite sends the close reply and then ends the stream.
            }
            Ok(Message::Text(text)) => {
                *shared.protocol_error.lock().unwrap() =
                    Some(format!("server sent a text frame: {text:?}"));
            }
            Ok(_) => {}
            Err(err) => {
                record(CloseInfo {
                    code: None,
                    reason: format!("connection failed: {err}"),
                });
                break;
            }
        }
        changed.send_modify(|n| *n += 1);
    }
    record(CloseInfo {
        code: None,
        reason: "connection ended without a close frame".into(),
    });
    changed.send_modify(|n| *n += 1);
}

/// A Yjs peer: a yrs document synced with one quire document over one WebSocket, like a
/// y-websocket client. Local edits go out as one Update message per frame; whatever the server
/// sends is applied in the background.
///
/// Positions in [`Client::insert`] and [`Client::delete`] count Unicode chars (code points);
/// the document itself measures UTF-16 units, as Yjs does, and the client converts.
pub struct Client {
    url: String,
    doc: Doc,
    text: TextRef,
    conn: Conn,
}

impl Client {
    /// Connects and completes the sync handshake; panics if that fails within the default
    /// timeout.
    pub async fn connect(url: &str) -> Client {
        match Client::try_connect(url).await {
            Ok(client) => client,
            Err(err) => panic!("client could not connect to {url}: {err}"),
        }
    }

    /// Connects, sends SyncStep1, and waits for the server's SyncStep2.
    pub async fn try_connect(url: &str) -> Result<Client, String> {
        Client::try_connect_with_doc(url, client_doc()).await
    }

    /// Like [`Client::try_connect`] with a document of the caller's (its content is offered to
    /// the server during the handshake, as a reconnecting client's is).
    pub async fn try_connect_with_doc(url: &str, doc: Doc) -> Result<Client, String> {
        let ws = connect_ws(url).await.map_err(|e| e.to_string())?;
        let text = doc.get_or_insert_text(TEXT_NAME);
        // Local changes become Update frames. Observe before the reader task starts: the
        // observer needs the document to itself for a moment.
        let (out, out_rx) = mpsc::unbounded_channel();
        let local = out.clone();
        doc.observe_update_v1("quire-tests-client", move |txn, event| {
            let remote = txn.origin() == Some(&Origin::from(REMOTE));
            if !remote {
                let _ = local.send(Out::Frame(Message::Binary(
                    update_frame(&event.update).into(),
                )));
            }
        })
        .map_err(|e| format!("cannot observe the document: {e}"))?;
        let sv = doc.transact().state_vector();
        let _ = out.send(Out::Frame(Message::Binary(sync_step1_frame(&sv).into())));
        let reader_doc = doc.clone();
        let conn = Conn::spawn_with(ws, (out, out_rx), move |frame, out, shared| {
            record_denied(frame, shared);
            if let Err(err) = apply_frame(&reader_doc, frame, out, shared) {
                *shared.protocol_error.lock().unwrap() = Some(err);
            }
        });
        let client = Client {
            url: url.to_string(),
            doc,
            text,
            conn,
        };
        let shared = client.conn.shared.clone();
        client
            .wait_for(DEFAULT_TIMEOUT, || shared.synced.load(Ordering::Relaxed))
            .await
            .map_err(|_| {
                format!(
                    "no SyncStep2 within {DEFAULT_TIMEOUT:?} (close: {:?}, protocol error: {:?})",
                    client.closed(),
                    client.protocol_error()
                )
            })?;
        Ok(client)
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Announces presence (an awareness state) for awareness client `id` with `clock` (higher
    /// than the last one for that id); `json` "null" removes it.
    pub fn set_presence(&self, id: u64, clock: u32, json: &str) {
        let mut clients = std::collections::HashMap::new();
        clients.insert(
            yrs::ClientID::new(id),
            yrs::sync::awareness::AwarenessUpdateEntry {
                clock,
                json: json.into(),
            },
        );
        let frame = quire_wire::awareness(yrs::sync::AwarenessUpdate { clients });
        let _ = self.conn.out.send(Out::Frame(Message::Binary(frame)));
    }

    /// The presence states the server has sent, by awareness client id.
    pub fn presence(&self) -> std::collections::HashMap<u64, String> {
        self.conn.shared.presence.lock().unwrap().clone()
    }

    /// Waits until the presence states satisfy `pred`; panics after `timeout`.
    pub async fn wait_presence(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&std::collections::HashMap<u64, String>) -> bool,
    ) {
        let shared = self.conn.shared.clone();
        if self
            .wait_for(timeout, || pred(&shared.presence.lock().unwrap()))
            .await
            .is_err()
        {
            panic!(
                "client on {}: timed out after {timeout:?} waiting until {what}; presence: {:?}",
                self.url,
                self.presence()
            );
        }
    }

    pub fn doc(&self) -> &Doc {
        &self.doc
    }

    /// The shared text now.
    pub fn text(&self) -> String {
        self.text.get_string(&self.doc.transact())
    }

    pub fn len_chars(&self) -> usize {
        self.text().chars().count()
    }

    /// Inserts `s` at char position `pos`.
    pub fn insert(&self, pos: usize, s: &str) {
        let mut txn = self.doc.transact_mut();
        let current = self.text.get_string(&txn);
        let at = utf16_offset(&current, pos);
        self.text.insert(&mut txn, at, s);
    }

    /// Appends `s`.
    pub fn push(&self, s: &str) {
        let mut txn = self.doc.transact_mut();
        self.text.push(&mut txn, s);
    }

    /// Deletes `len` chars from char position `pos`.
    pub fn delete(&self, pos: usize, len: usize) {
        let mut txn = self.doc.transact_mut();
        let current = self.text.get_string(&txn);
        let start = utf16_offset(&current, pos);
        let end = utf16_offset(&current, pos + len);
        self.text.remove_range(&mut txn, start, end - start);
    }

    /// Deletes `del` chars at char position `pos`, then inserts `ins` there, in one transaction.
    pub fn splice(&self, pos: usize, del: usize, ins: &str) {
        self.edit_with(|_| Some((pos, del, ins.to_string())));
    }

    /// Lets `choose` pick a splice `(pos, del, ins)` (in chars) from the current text and applies
    /// it in the same transaction, so remote updates cannot move the text in between.
    pub fn edit_with(&self, choose: impl FnOnce(&str) -> Option<(usize, usize, String)>) {
        let mut txn = self.doc.transact_mut();
        let current = self.text.get_string(&txn);
        let Some((pos, del, ins)) = choose(&current) else {
            return;
        };
        let start = utf16_offset(&current, pos);
        if del > 0 {
            let end = utf16_offset(&current, pos + del);
            self.text.remove_range(&mut txn, start, end - start);
        }
        if !ins.is_empty() {
            self.text.insert(&mut txn, start, &ins);
        }
    }

    /// Waits until every frame queued so far was written to the socket.
    pub async fn flush(&self) {
        self.conn.flush().await;
    }

    pub fn state_vector(&self) -> StateVector {
        self.doc.transact().state_vector()
    }

    /// The whole document state as one v1 update.
    pub fn encode_state(&self) -> Vec<u8> {
        self.doc
            .transact()
            .encode_state_as_update_v1(&StateVector::default())
    }

    /// Binary frames received from the server so far.
    pub fn frames_received(&self) -> u64 {
        self.conn.shared.frames_received.load(Ordering::Relaxed)
    }

    /// How the connection ended, if it has.
    pub fn closed(&self) -> Option<CloseInfo> {
        self.conn.closed()
    }

    /// Reasons of the permission-denied messages received so far.
    pub fn permission_denied(&self) -> Vec<String> {
        self.conn.shared.denied.lock().unwrap().clone()
    }

    /// A frame from the server this client could not decode or apply.
    pub fn protocol_error(&self) -> Option<String> {
        self.conn.shared.protocol_error.lock().unwrap().clone()
    }

    /// Polls `pred` after every frame from the server until it holds or `timeout` passes.
    async fn wait_for(&self, timeout: Duration, mut pred: impl FnMut() -> bool) -> Result<(), ()> {
        let mut changes = self.conn.changes.clone();
        let wait = async {
            loop {
                changes.borrow_and_update();
                if pred() {
                    return;
                }
                if changes.changed().await.is_err() {
                    // No more frames will come; one last look.
                    if pred() {
                        return;
                    }
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.map_err(|_| ())
    }

    /// Waits until the text equals `expected`; panics with both texts if it does not within
    /// `timeout`.
    pub async fn wait_for_text(&self, expected: &str, timeout: Duration) {
        if self
            .wait_for(timeout, || self.text() == expected)
            .await
            .is_err()
        {
            let actual = self.text();
            let common = actual
                .chars()
                .zip(expected.chars())
                .take_while(|(a, b)| a == b)
                .count();
            panic!(
                "client on {} did not reach the expected text within {timeout:?}\n  expected ({} chars): {:?}\n  actual   ({} chars): {:?}\n  first difference at char {common}; connection: {}{}",
                self.url,
                expected.chars().count(),
                preview(expected),
                actual.chars().count(),
                preview(&actual),
                self.describe_state(),
                self.protocol_error()
                    .map(|e| format!("; protocol error: {e}"))
                    .unwrap_or_default(),
            );
        }
    }

    /// Waits until `pred(text)` holds; panics with `what` and the text if it does not within
    /// `timeout`.
    pub async fn wait_until(&self, what: &str, timeout: Duration, pred: impl Fn(&str) -> bool) {
        if self.wait_for(timeout, || pred(&self.text())).await.is_err() {
            panic!(
                "client on {}: timed out after {timeout:?} waiting until {what}\n  text ({} chars): {:?}\n  connection: {}",
                self.url,
                self.len_chars(),
                preview(&self.text()),
                self.describe_state()
            );
        }
    }

    fn describe_state(&self) -> String {
        match self.closed() {
            None => format!("open, {} frames received", self.frames_received()),
            Some(info) => format!(
                "closed with {:?} {:?} after {} frames",
                info.code,
                info.reason,
                self.frames_received()
            ),
        }
    }

    /// Waits for the connection to end; panics if it is still open after `timeout`.
    pub async fn wait_closed(&self, timeout: Duration) -> CloseInfo {
        match self.conn.wait_closed(timeout).await {
            Some(info) => info,
            None => panic!(
                "client on {} still open after {timeout:?} (text {:?})",
                self.url,
                preview(&self.text())
            ),
        }
    }

    /// Flushes, sends a normal close, and waits (briefly) for the server's answer.
    pub async fn close(self) {
        self.flush().await;
        self.conn.send(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        })));
        let _ = self.conn.wait_closed(Duration::from_secs(5)).await;
    }
}

/// Applies one frame from the server to `doc`, answering SyncStep1 with SyncStep2.
fn apply_frame(
    doc: &Doc,
    frame: &[u8],
    out: &mpsc::UnboundedSender<Out>,
    shared: &Shared,
) -> Result<(), String> {
    let msgs = quire_wire::decode_messages(frame)
        .map_err(|e| format!("undecodable frame from the server: {e}"))?;
    for msg in msgs {
        match msg {
            YMessage::Sync(SyncMessage::SyncStep1(sv)) => {
                // Not `quire_wire::sync_reply`: this client has no holdback (it applies what
                // the server sends directly, as it always has), so what yrs keeps pending goes
                // merged into the state, as before.
                let diff = doc.transact().encode_state_as_update_v1(&sv);
                let reply = quire_wire::sync_step2(diff);
                let _ = out.send(Out::Frame(Message::Binary(reply)));
            }
            YMessage::Sync(SyncMessage::SyncStep2(update)) => {
                apply_update(doc, &update)?;
                shared.synced.store(true, Ordering::Relaxed);
            }
            YMessage::Sync(SyncMessage::Update(update)) => apply_update(doc, &update)?,
            YMessage::Awareness(update) => {
                let mut presence = shared.presence.lock().unwrap();
                for (id, entry) in update.clients {
                    if &*entry.json == "null" {
                        presence.remove(&id.get());
                    } else {
                        presence.insert(id.get(), entry.json.to_string());
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

fn apply_update(doc: &Doc, bytes: &[u8]) -> Result<(), String> {
    let update =
        Update::decode_v1(bytes).map_err(|e| format!("undecodable update from the server: {e}"))?;
    doc.transact_mut_with(REMOTE)
        .apply_update(update)
        .map_err(|e| format!("update from the server does not apply: {e}"))
}

/// A WebSocket that sends exactly what the test says and drains what the server sends.
pub struct RawConn {
    url: String,
    conn: Conn,
}

impl RawConn {
    /// Opens the socket; the error tells why the handshake failed (e.g. `Http` with a status).
    pub async fn connect(url: &str) -> Result<RawConn, tungstenite::Error> {
        let ws = connect_ws(url).await?;
        Ok(RawConn {
            url: url.to_string(),
            conn: Conn::spawn(ws, |frame, _, shared| {
                record_denied(frame, shared);
                // Only SyncStep2 is looked at: a frame starting [0][1].
                if frame.starts_with(&[0, 1]) {
                    shared.sync_step2_received.fetch_add(1, Ordering::Relaxed);
                }
            }),
        })
    }

    pub fn send_binary(&self, bytes: impl Into<Vec<u8>>) {
        self.conn.send(Message::Binary(bytes.into().into()));
    }

    pub fn send_text(&self, text: &str) {
        self.conn.send(Message::Text(text.into()));
    }

    pub fn send(&self, msg: Message) {
        self.conn.send(msg);
    }

    pub async fn flush(&self) {
        self.conn.flush().await;
    }

    pub fn frames_received(&self) -> u64 {
        self.conn.shared.frames_received.load(Ordering::Relaxed)
    }

    /// Reasons of the permission-denied messages received so far.
    pub fn permission_denied(&self) -> Vec<String> {
        self.conn.shared.denied.lock().unwrap().clone()
    }

    /// Sends SyncStep1 and waits for the server's SyncStep2 answer. The server handles one
    /// connection's messages in order and answers only after committing what came before, so
    /// on return everything sent earlier on this connection is applied and durable.
    pub async fn sync_barrier(&self, timeout: Duration) {
        let counter = &self.conn.shared.sync_step2_received;
        let before = counter.load(Ordering::Relaxed);
        self.send_binary(sync_step1_frame(&StateVector::default()));
        let mut changes = self.conn.changes.clone();
        let wait = async {
            while counter.load(Ordering::Relaxed) == before {
                if changes.changed().await.is_err() {
                    break;
                }
            }
        };
        let done = tokio::time::timeout(timeout, wait).await.is_ok();
        if !done || counter.load(Ordering::Relaxed) == before {
            panic!(
                "raw connection to {}: no SyncStep2 answer within {timeout:?} (close: {:?})",
                self.url,
                self.closed()
            );
        }
    }

    pub fn closed(&self) -> Option<CloseInfo> {
        self.conn.closed()
    }

    /// Waits for the server to close the socket; panics if it is still open after `timeout`.
    pub async fn wait_closed(&self, timeout: Duration) -> CloseInfo {
        match self.conn.wait_closed(timeout).await {
            Some(info) => info,
            None => panic!(
                "raw connection to {} still open after {timeout:?}",
                self.url
            ),
        }
    }

    /// Waits for the server to close the socket; `None` if it is still open after `timeout`.
    pub async fn try_wait_closed(&self, timeout: Duration) -> Option<CloseInfo> {
        self.conn.wait_closed(timeout).await
    }

    /// Sends a normal close and waits briefly for the answer.
    pub async fn close(self) {
        self.conn.send(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        })));
        let _ = self.conn.wait_closed(Duration::from_secs(5)).await;
    }
}
