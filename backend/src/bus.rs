//! The bus between servers sharing a PostgreSQL database (NATS core, `--bus nats://…`): hints
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

/// A message between servers.
#[derive(Debug, Clone, PartialEq)]
pub enum BusMessage {
    /// Document `doc` is at version `upto`; `rows` are the newest rows (in order, ending at
    /// `upto`), or empty when they were too big to send inline.
    Rows {
        node: String,
        doc: String,
        upto: i64,
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
                rows,
            } => {
                out.put_u8(1);
                put_str(&mut out, node);
                put_str(&mut out, doc);
                out.put_i64(*upto);
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
    /// Messages dropped because the queue was full (the bus is hung or slow).
    pub dropped: AtomicU64,
    /// Messages received from other servers.
    pub received: AtomicU64,
}

impl Bus {
    /// A bus at `url` (`nats://host:port`) for server `node`; nothing connects before
    /// [`Bus::run`].
    pub fn new(url: &str, node: &str) -> Result<Arc<Bus>, String> {
        if !url.starts_with("nats://") {
            return Err(format!(
                "unsupported bus URL {url:?}: use nats://host:port (NATS core)"
            ));
        }
        let (out, rx) = mpsc::channel(QUEUE);
        Ok(Arc::new(Bus {
            node: node.to_string(),
            url: url.to_string(),
            out,
            rx: std::sync::Mutex::new(Some(rx)),
            connected: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
            received: AtomicU64::new(0),
        }))
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
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
        let events = Arc::downgrade(&self);
        let options = async_nats::ConnectOptions::new()
            .name(format!("quire-server {}", self.node))
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
        let client = tokio::select! {
            _ = shutdown.cancelled() => return,
            client = options.connect(self.url.as_str()) => match client {
                Ok(client) => client,
                Err(err) => {
                    tracing::error!(%err, url = %self.url, "cannot use the bus; running without it (the tail check carries changes)");
                    return;
                }
            },
        };
        let subscribed = async {
            let docs = client.subscribe(DOC_SUBJECT).await?;
            let nodes = client.subscribe(NODE_SUBJECT).await?;
            Ok::<_, async_nats::SubscribeError>(futures_util::stream::select(docs, nodes))
        };
        let mut incoming = match subscribed.await {
            Ok(incoming) => incoming,
            Err(err) => {
                tracing::error!(%err, "cannot subscribe on the bus; running without it");
                return;
            }
        };
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seen: HashMap<String, Instant> = HashMap::new();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                Some(message) = rx.recv() => {
                    // A hung bus blocks here, the queue fills and publishers drop: no one waits.
                    let _ = client.publish(message.subject(), message.encode()).await;
                }
                Some(message) = incoming.next() => {
                    let Some(message) = BusMessage::decode(&message.payload) else {
                        tracing::debug!("malformed bus message ignored");
                        continue;
                    };
                    self.received.fetch_add(1, Ordering::Relaxed);
                    self.deliver(message, &documents, &mut seen);
                }
                _ = heartbeat.tick() => {
                    let beat = BusMessage::Heartbeat { node: self.node.clone() };
                    let _ = client.publish(NODE_SUBJECT, beat.encode()).await;
                    let now = Instant::now();
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
        let leaving = BusMessage::Leaving {
            node: self.node.clone(),
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
            let _ = client.publish(NODE_SUBJECT, leaving.encode()).await;
            let _ = client.flush().await;
        })
        .await;
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
                doc, upto, rows, ..
            } => documents.peer_rows(&doc, upto, rows),
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
