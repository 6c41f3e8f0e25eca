//! The bus between servers sharing a PostgreSQL database (NATS core, `--bus nats://…`, or Redis
//! pub/sub, `--bus redis://…`): hints
//! that a document moved ("document D is now at version S", with the rows inline when small),
//! presence (awareness), and heartbeats.
//!
//! It is for latency, never for safety: every row is in PostgreSQL before it is hinted, and a
//! hint that is lost, duplicated, reordered or late, or a bus that is down or hung, is healed by
//! reading the rows from the op log (the tail check, faster while the bus is away; see
//! `Documents::tail_check`). Publishing never waits: messages go through a bounded queue to
//! the bus task and are dropped when it is full. Presence crosses servers only here (it is never
//! stored); a server that stops sending heartbeats for [`NODE_TIMEOUT`] has its clients' presence
//! removed everywhere.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::documents::Documents;
use crate::store::OpRow;

/// Subject of document hints and presence.
const DOC_SUBJECT: &str = "quire.doc";
/// Subject of heartbeats and departures.
const NODE_SUBJECT: &str = "quire.node";
/// Messages queued for the bus before new ones are dropped.
const QUEUE: usize = 4096;
/// Rows are sent inline up to this many bytes per hint; past it the hint names the version only.
const INLINE_BYTES: usize = 64 * 1024;
/// How often a server says it is alive.
const HEARTBEAT: Duration = Duration::from_millis(500);
/// A server silent this long is gone: its clients' presence is removed.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(2);
/// A publish that takes longer than this means the bus is hung.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);
/// Connecting (and subscribing) may take this long before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// Reconnect backoff bounds (Redis; NATS reconnects by itself).
const RETRY_MIN: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(4);

/// Now, in Unix milliseconds (hints carry their commit time for the lag metric).
pub fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Payloads from other servers, whichever bus carries them.
type Incoming = std::pin::Pin<Box<dyn futures_util::Stream<Item = Vec<u8>> + Send>>;

/// The publishing half of a bus connection.
enum Link {
    Nats(async_nats::Client),
    Redis(redis::aio::MultiplexedConnection),
}

impl Link {
    /// Connects to `bus.url` and subscribes to both subjects.
    async fn connect(bus: Arc<Bus>) -> Result<(Link, Incoming), String> {
        if bus.url.starts_with("redis://") {
            let client = redis::Client::open(bus.url.as_str()).map_err(|e| e.to_string())?;
            let mut pubsub = client.get_async_pubsub().await.map_err(|e| e.to_string())?;
            pubsub
                .subscribe(&[DOC_SUBJECT, NODE_SUBJECT])
                .await
                .map_err(|e| e.to_string())?;
            let out = client
                .get_multiplexed_async_connection()
                .await
                .map_err(|e| e.to_string())?;
            let incoming = pubsub
                .into_on_message()
                .map(|message| message.get_payload_bytes().to_vec());
            bus.connected.store(true, Ordering::Relaxed);
            tracing::info!("bus connected");
            return Ok((Link::Redis(out), Box::pin(incoming)));
        }
        let events = Arc::downgrade(&bus);
        let options = async_nats::ConnectOptions::new()
            .name(format!("quire-server {}", bus.node))
            .retry_on_initial_connect()
            .event_callback(move |event| {
                let events = events.clone();
                async move {
                    if let Some(bus) = events.upgrade() {
                        match event {
                            async_nats::Event::Connected => {
                                bus.connected.store(true, Ordering::Relaxed);
                                tracing::info!("bus connected");
                            }
                            async_nats::Event::Disconnected => {
                                bus.connected.store(false, Ordering::Relaxed);
                                tracing::warn!("bus disconnected; the tail check carries changes until it is back");
                            }
                            other => tracing::debug!(%other, "bus event"),
                        }
                    }
                }
            });
        // With retry_on_initial_connect this returns at once; NATS reconnects by itself.
        let client = options
            .connect(bus.url.as_str())
            .await
            .map_err(|e| e.to_string())?;
        let docs = client
            .subscribe(DOC_SUBJECT)
            .await
            .map_err(|e| e.to_string())?;
        let nodes = client
            .subscribe(NODE_SUBJECT)
            .await
            .map_err(|e| e.to_string())?;
        let incoming =
            futures_util::stream::select(docs, nodes).map(|message| message.payload.to_vec());
        Ok((Link::Nats(client), Box::pin(incoming)))
    }

    async fn publish(&mut self, subject: &'static str, payload: Bytes) -> Result<(), String> {
        let sent = async {
            match self {
                Link::Nats(client) => client
                    .publish(subject, payload)
                    .await
                    .map_err(|e| e.to_string()),
                Link::Redis(conn) => redis::cmd("PUBLISH")
                    .arg(subject)
                    .arg(payload.as_ref())
                    .query_async::<i64>(conn)
                    .await
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
            }
        };
        tokio::time::timeout(PUBLISH_TIMEOUT, sent)
            .await
            .map_err(|_| "publish timed out (bus hung)".to_string())?
    }

    async fn flush(&mut self) {
        if let Link::Nats(client) = self {
            let _ = tokio::time::timeout(Duration::from_secs(1), client.flush()).await;
        }
    }
}

/// The next payload of the link's subscription; `None` when it ended.
async fn next_incoming(link: &mut Option<(Link, Incoming)>) -> Option<Vec<u8>> {
    match link {
        Some((_, incoming)) => incoming.next().await,
        None => std::future::pending().await,
    }
}

/// A message between servers.
#[derive(Debug, Clone, PartialEq)]
pub enum BusMessage {
    /// Document `doc` is at version `upto`, committed at `committed_at` (Unix ms, the sender's
    /// clock); `rows` are the newest rows (in order, ending at `upto`), or empty when they were
    /// too big to send inline.
    Rows {
        node: String,
        doc: String,
        upto: i64,
        committed_at: u64,
        rows: Vec<OpRow>,
    },
    /// An awareness update (v1) from one of `node`'s clients of `doc`.
    Awareness {
        node: String,
        doc: String,
        update: Vec<u8>,
    },
    Heartbeat {
        node: String,
    },
    /// `node` is shutting down: its clients' presence goes now.
    Leaving {
        node: String,
    },
}

impl BusMessage {
    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::new();
        let put_str = |out: &mut BytesMut, s: &str| {
            out.put_u32(s.len() as u32);
            out.put_slice(s.as_bytes());
        };
        match self {
            BusMessage::Rows {
                node,
                doc,
                upto,
                committed_at,
                rows,
            } => {
                out.put_u8(1);
                put_str(&mut out, node);
                put_str(&mut out, doc);
                out.put_i64(*upto);
                out.put_u64(*committed_at);
                out.put_u32(rows.len() as u32);
                for row in rows {
                    out.put_i64(row.seq);
                    out.put_u32(row.update_v1.len() as u32);
                    out.put_slice(&row.update_v1);
                }
            }
            BusMessage::Awareness { node, doc, update } => {
                out.put_u8(2);
                put_str(&mut out, node);
                put_str(&mut out, doc);
                out.put_slice(update);
            }
            BusMessage::Heartbeat { node } => {
                out.put_u8(3);
                put_str(&mut out, node);
            }
            BusMessage::Leaving { node } => {
                out.put_u8(4);
                put_str(&mut out, node);
            }
        }
        out.freeze()
    }

    /// Decodes a message; `None` for anything malformed (a bus is shared infrastructure).
    pub fn decode(mut buf: &[u8]) -> Option<BusMessage> {
        fn take_str(buf: &mut &[u8]) -> Option<String> {
            let len = take_u32(buf)? as usize;
            let bytes = take_bytes(buf, len)?;
            String::from_utf8(bytes.to_vec()).ok()
        }
        fn take_u32(buf: &mut &[u8]) -> Option<u32> {
            (buf.remaining() >= 4).then(|| buf.get_u32())
        }
        fn take_i64(buf: &mut &[u8]) -> Option<i64> {
            (buf.remaining() >= 8).then(|| buf.get_i64())
        }
        fn take_bytes<'a>(buf: &mut &'a [u8], len: usize) -> Option<&'a [u8]> {
            if buf.len() < len {
                return None;
            }
            let (head, rest) = buf.split_at(len);
            *buf = rest;
            Some(head)
        }
        let kind = *buf.first()?;
        buf = &buf[1..];
        let node = take_str(&mut buf)?;
        let message = match kind {
            1 => {
                let doc = take_str(&mut buf)?;
                let upto = take_i64(&mut buf)?;
                let committed_at = take_i64(&mut buf)? as u64;
                let count = take_u32(&mut buf)? as usize;
                let mut rows = Vec::with_capacity(count.min(1024));
                for _ in 0..count {
                    let seq = take_i64(&mut buf)?;
                    let len = take_u32(&mut buf)? as usize;
                    rows.push(OpRow {
                        seq,
                        update_v1: take_bytes(&mut buf, len)?.to_vec(),
                    });
                }
                BusMessage::Rows {
                    node,
                    doc,
                    upto,
                    committed_at,
                    rows,
                }
            }
            2 => {
                let doc = take_str(&mut buf)?;
                BusMessage::Awareness {
                    node,
                    doc,
                    update: buf.to_vec(),
                }
            }
            3 => BusMessage::Heartbeat { node },
            4 => BusMessage::Leaving { node },
            _ => return None,
        };
        Some(message)
    }

    fn subject(&self) -> &'static str {
        match self {
            BusMessage::Rows { .. } | BusMessage::Awareness { .. } => DOC_SUBJECT,
            BusMessage::Heartbeat { .. } | BusMessage::Leaving { .. } => NODE_SUBJECT,
        }
    }
}

/// What the rest of the server holds of the bus: a queue to it and its state.
pub struct Bus {
    node: String,
    url: String,
    out: mpsc::Sender<BusMessage>,
    rx: std::sync::Mutex<Option<mpsc::Receiver<BusMessage>>>,
    connected: AtomicBool,
    /// Our own heartbeats come back within [`NODE_TIMEOUT`]: the bus is not only connected but
    /// moving messages (a hung bus server keeps its TCP connections open).
    echoing: AtomicBool,
    /// Messages dropped because the queue was full (the bus is hung or slow).
    pub dropped: AtomicU64,
    /// Messages received from other servers.
    pub received: AtomicU64,
}

impl Bus {
    /// A bus at `url` (`nats://host:port` or `redis://host:port`) for server `node`; nothing connects before
    /// [`Bus::run`].
    pub fn new(url: &str, node: &str) -> Result<Arc<Bus>, String> {
        if !(url.starts_with("nats://") || url.starts_with("redis://")) {
            return Err(format!(
                "unsupported bus URL {url:?}: use nats://host:port (NATS core) or redis://host:port (Redis pub/sub)"
            ));
        }
        let (out, rx) = mpsc::channel(QUEUE);
        Ok(Arc::new(Bus {
            node: node.to_string(),
            url: url.to_string(),
            out,
            rx: std::sync::Mutex::new(Some(rx)),
            connected: AtomicBool::new(false),
            echoing: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            received: AtomicU64::new(0),
        }))
    }

    /// Connected, and carrying our own heartbeats back to us.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed) && self.echoing.load(Ordering::Relaxed)
    }

    fn send(&self, message: BusMessage) {
        if self.out.try_send(message).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Tells the others that `doc` is now at `upto`, with `rows` (the newest, ending at
    /// `upto`) inline when small.
    pub fn publish_rows(&self, doc: &str, upto: i64, rows: Vec<OpRow>) {
        let bytes: usize = rows.iter().map(|r| r.update_v1.len()).sum();
        let rows = if bytes <= INLINE_BYTES {
            rows
        } else {
            Vec::new()
        };
        self.send(BusMessage::Rows {
            node: self.node.clone(),
            doc: doc.to_string(),
            upto,
            committed_at: unix_millis(),
            rows,
        });
    }

    /// Sends a presence change of one of this server's clients.
    pub fn publish_awareness(&self, doc: &str, update: Vec<u8>) {
        self.send(BusMessage::Awareness {
            node: self.node.clone(),
            doc: doc.to_string(),
            update,
        });
    }

    /// Connects (retrying while the bus is away), publishes what is queued and heartbeats,
    /// hands what other servers send to `documents`, and watches their heartbeats. Until
    /// `shutdown`, then says it is leaving.
    pub async fn run(self: Arc<Self>, documents: Arc<Documents>, shutdown: CancellationToken) {
        let Some(mut rx) = self.rx.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        let mut link: Option<(Link, Incoming)> = None;
        let mut backoff = RETRY_MIN;
        let retry = tokio::time::sleep(Duration::ZERO);
        tokio::pin!(retry);
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seen: HashMap<String, Instant> = HashMap::new();
        let mut last_echo = Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = &mut retry, if link.is_none() => {
                    match tokio::time::timeout(CONNECT_TIMEOUT, Link::connect(self.clone())).await {
                        Ok(Ok(connected)) => {
                            backoff = RETRY_MIN;
                            last_echo = Instant::now();
                            link = Some(connected);
                        }
                        outcome => {
                            let err = match outcome {
                                Ok(Err(err)) => err,
                                _ => "timed out".to_string(),
                            };
                            tracing::warn!(%err, url = %self.url, retry_in = ?backoff, "cannot reach the bus; the tail check carries changes meanwhile");
                            retry.as_mut().reset(tokio::time::Instant::now() + backoff);
                            backoff = (backoff * 2).min(RETRY_MAX);
                        }
                    }
                }
                Some(message) = rx.recv() => {
                    // A hung bus blocks here at most PUBLISH_TIMEOUT while the queue fills and
                    // publishers drop: no one waits on the bus.
                    if let Some((out, _)) = &mut link {
                        if let Err(err) = out.publish(message.subject(), message.encode()).await {
                            self.lost(&mut link, &err, retry.as_mut());
                        }
                    } else {
                        self.dropped.fetch_add(1, Ordering::Relaxed);
                    }
                }
                message = next_incoming(&mut link), if link.is_some() => {
                    let Some(payload) = message else {
                        self.lost(&mut link, "subscription ended", retry.as_mut());
                        continue;
                    };
                    let Some(message) = BusMessage::decode(&payload) else {
                        tracing::debug!("malformed bus message ignored");
                        continue;
                    };
                    if let BusMessage::Heartbeat { node } = &message {
                        if *node == self.node {
                            last_echo = Instant::now();
                            self.echoing.store(true, Ordering::Relaxed);
                            continue;
                        }
                    }
                    self.received.fetch_add(1, Ordering::Relaxed);
                    self.deliver(message, &documents, &mut seen);
                }
                _ = heartbeat.tick() => {
                    if let Some((out, _)) = &mut link {
                        let beat = BusMessage::Heartbeat { node: self.node.clone() };
                        if let Err(err) = out.publish(NODE_SUBJECT, beat.encode()).await {
                            self.lost(&mut link, &err, retry.as_mut());
                        }
                    }
                    let now = Instant::now();
                    if now.duration_since(last_echo) > NODE_TIMEOUT
                        && self.echoing.swap(false, Ordering::Relaxed)
                    {
                        tracing::warn!("the bus stopped carrying messages (hung?); the tail check carries changes until it does again");
                    }
                    let gone: Vec<String> = seen
                        .iter()
                        .filter(|(_, at)| now.duration_since(**at) > NODE_TIMEOUT)
                        .map(|(node, _)| node.clone())
                        .collect();
                    for node in gone {
                        seen.remove(&node);
                        tracing::info!(%node, "server silent on the bus; its clients' presence removed");
                        documents.node_gone(&node);
                    }
                }
            }
        }
        if let Some((mut out, _)) = link {
            let leaving = BusMessage::Leaving {
                node: self.node.clone(),
            };
            let _ = out.publish(NODE_SUBJECT, leaving.encode()).await;
            out.flush().await;
        }
    }

    /// The link failed: drop it and reconnect after the current backoff. (NATS reconnects by
    /// itself and never gets here for a broken connection, only for a hung one.)
    fn lost(
        &self,
        link: &mut Option<(Link, Incoming)>,
        err: &str,
        retry: std::pin::Pin<&mut tokio::time::Sleep>,
    ) {
        if let Some((Link::Nats(_), _)) = link {
            tracing::warn!(%err, "bus publish failed; message dropped");
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        tracing::warn!(%err, "bus connection lost; the tail check carries changes until it is back");
        *link = None;
        self.connected.store(false, Ordering::Relaxed);
        self.dropped.fetch_add(1, Ordering::Relaxed);
        retry.reset(tokio::time::Instant::now() + RETRY_MIN);
    }

    fn deliver(
        &self,
        message: BusMessage,
        documents: &Documents,
        seen: &mut HashMap<String, Instant>,
    ) {
        let from = match &message {
            BusMessage::Rows { node, .. }
            | BusMessage::Awareness { node, .. }
            | BusMessage::Heartbeat { node }
            | BusMessage::Leaving { node } => node.clone(),
        };
        if from == self.node {
            return;
        }
        match message {
            BusMessage::Leaving { node } => {
                seen.remove(&node);
                documents.node_gone(&node);
                return;
            }
            BusMessage::Rows {
                doc,
                upto,
                rows,
                committed_at,
                ..
            } => documents.peer_rows(&doc, upto, rows, committed_at),
            BusMessage::Awareness { node, doc, update } => {
                documents.peer_awareness(&doc, &node, update)
            }
            BusMessage::Heartbeat { .. } => {}
        }
        seen.insert(from, Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_garbage_is_refused() {
        let messages = [
            BusMessage::Rows {
                node: "a".into(),
                doc: "doc.1".into(),
                upto: 7,
                committed_at: 1_796_000_000_000,
                rows: vec![
                    OpRow {
                        seq: 6,
                        update_v1: vec![1, 2, 3],
                    },
                    OpRow {
                        seq: 7,
                        update_v1: vec![],
                    },
                ],
            },
            BusMessage::Awareness {
                node: "b".into(),
                doc: "d".into(),
                update: vec![9; 10],
            },
            BusMessage::Heartbeat { node: "c".into() },
            BusMessage::Leaving { node: "c".into() },
        ];
        for message in messages {
            let bytes = message.encode();
            assert_eq!(BusMessage::decode(&bytes), Some(message.clone()));
            for cut in 0..bytes.len() {
                if let Some(decoded) = BusMessage::decode(&bytes[..cut]) {
                    // Only awareness carries an open-ended tail.
                    assert!(
                        matches!(decoded, BusMessage::Awareness { .. }),
                        "{decoded:?}"
                    );
                }
            }
        }
        assert_eq!(BusMessage::decode(&[9, 0, 0, 0, 0]), None);
        assert_eq!(BusMessage::decode(&[1, 0xff, 0xff, 0xff, 0xff]), None);
    }
}
