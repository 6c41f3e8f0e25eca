//! One WebSocket connection: reads and validates frames for its document actor, and writes the
//! actor's messages, pings and the final close frame.
//!
//! Reading and writing run concurrently in one task. The actor never waits on this connection
//! (it drops it when its outbound queue is full), and this connection waits on the actor only
//! through the actor's bounded inbox, which is back-pressure, not a deadlock: the actor never
//! waits on any connection.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};

use crate::document::{CloseReason, Command, ConnId};
use crate::documents::Documents;
use crate::protocol::{self, close};
use crate::server::Context;

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// Frames written before one flush.
const WRITE_BATCH: usize = 256;

/// How long a socket closed over unreadable input stays open so the client reads the close.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// Serves one upgraded WebSocket on document `doc_id` until either side closes it.
pub async fn serve(
    socket: WebSocket,
    doc_id: Arc<str>,
    documents: Arc<Documents>,
    ctx: Arc<Context>,
) {
    let conn: ConnId = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
    let _guard = ctx.health.connection_opened();
    let (mut sink, stream) = socket.split();
    tracing::debug!(doc = %doc_id, conn, "connection open");

    let (mut out_rx, mut kick_rx, inbox) = loop {
        let (out_tx, out_rx) = mpsc::channel(ctx.config.outbound_queue);
        let (kick_tx, kick_rx) = oneshot::channel();
        match documents.join(&doc_id, conn, out_tx, kick_tx).await {
            Ok(Some(inbox)) => break (out_rx, kick_rx, inbox),
            Ok(None) => continue,
            Err(reason) => {
                let _ = sink.send(close_message(&reason)).await;
                return;
            }
        }
    };

    let ping_every = Duration::from_secs(ctx.config.ping_secs.max(1));
    let reader = read_frames(stream, inbox.clone(), conn, ping_every * 3);
    tokio::pin!(reader);
    let mut ping = tokio::time::interval(ping_every);
    ping.tick().await;

    let reason: Option<CloseReason> = loop {
        tokio::select! {
            why = &mut reader => break why,
            frame = out_rx.recv() => match frame {
                Some(frame) => {
                    // Write what is queued, then flush once: one syscall for a burst.
                    let mut ok = sink.feed(Message::Binary(frame)).await.is_ok();
                    for _ in 0..WRITE_BATCH {
                        let Ok(frame) = out_rx.try_recv() else { break };
                        ok = ok && sink.feed(Message::Binary(frame)).await.is_ok();
                    }
                    if !ok || sink.flush().await.is_err() {
                        break None;
                    }
                }
                // The actor dropped us; the reason comes through the kick channel.
                None => break Some((&mut kick_rx).await.unwrap_or_else(|_| {
                    CloseReason::new(close::INTERNAL_ERROR, "document closed unexpectedly; reconnect")
                })),
            },
            why = &mut kick_rx => {
                break Some(why.unwrap_or_else(|_| CloseReason::new(close::INTERNAL_ERROR, "document closed unexpectedly; reconnect")));
            }
            _ = ping.tick() => {
                if sink.send(Message::Ping(Bytes::new())).await.is_err() {
                    break None;
                }
            }
        }
    };

    // A message over the limit (or a broken frame) is left unread in the socket, and closing a
    // socket with unread data makes the kernel send a reset that can overtake our close frame:
    // the client would see 1006 instead of 1009 (and a y-websocket client would reconnect and
    // resend the same update). Those bytes cannot be drained through the WebSocket, so keep the
    // socket open a moment for the client to read the close frame.
    let linger = reason
        .as_ref()
        .is_some_and(|r| matches!(r.code, close::MESSAGE_TOO_BIG | 1002));
    if let Some(reason) = reason {
        tracing::debug!(doc = %doc_id, conn, code = reason.code, reason = %reason.reason, "closing");
        let _ = sink.send(close_message(&reason)).await;
    }
    let _ = sink.close().await;
    // The inbox may be full while the document waits for the database; the socket is already
    // closed, so tell the actor without holding anything up.
    if let Err(mpsc::error::TrySendError::Full(leave)) = inbox.try_send(Command::Leave { conn }) {
        tokio::spawn(async move {
            let _ = inbox.send(leave).await;
        });
    }
    if linger {
        tokio::time::sleep(CLOSE_LINGER).await;
    }
}

/// Reads frames until the socket ends or must be closed; returns the close to send, if any.
async fn read_frames(
    mut stream: futures_util::stream::SplitStream<WebSocket>,
    inbox: mpsc::Sender<Command>,
    conn: ConnId,
    silence_limit: Duration,
) -> Option<CloseReason> {
    loop {
        let frame = match tokio::time::timeout(silence_limit, stream.next()).await {
            Err(_) => {
                return Some(CloseReason::new(
                    close::GOING_AWAY,
                    format!(
                        "no frame or pong for {} s; reconnect",
                        silence_limit.as_secs()
                    ),
                ))
            }
            Ok(None) => return None,
            Ok(Some(Err(err))) => return read_error(err),
            Ok(Some(Ok(frame))) => frame,
        };
        match frame {
            Message::Binary(bytes) => match protocol::decode_frame(&bytes) {
                Ok(msgs) if msgs.is_empty() => {}
                Ok(msgs) => {
                    if inbox.send(Command::Messages { conn, msgs }).await.is_err() {
                        return Some(CloseReason::new(
                            close::INTERNAL_ERROR,
                            "document closed; reconnect",
                        ));
                    }
                }
                Err(err) => return Some(CloseReason::new(close::INVALID_PAYLOAD, err.to_string())),
            },
            Message::Text(_) => {
                return Some(CloseReason::new(
                    close::UNSUPPORTED_DATA,
                    "text frames are not accepted: speak the binary Yjs sync protocol",
                ))
            }
            Message::Ping(_) | Message::Pong(_) => {}
            Message::Close(_) => return None,
        }
    }
}

fn read_error(err: axum::Error) -> Option<CloseReason> {
    use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
    let inner = err.into_inner();
    match inner.downcast_ref::<WsError>() {
        Some(WsError::Capacity(CapacityError::MessageTooLong { size, max_size })) => {
            Some(CloseReason::new(
                close::MESSAGE_TOO_BIG,
                format!("message of {size} bytes exceeds the {max_size}-byte limit"),
            ))
        }
        Some(WsError::Capacity(other)) => {
            Some(CloseReason::new(close::MESSAGE_TOO_BIG, other.to_string()))
        }
        Some(WsError::Protocol(p)) => Some(CloseReason::new(1002, format!("protocol error: {p}"))),
        _ => None,
    }
}

fn close_message(reason: &CloseReason) -> Message {
    // A close reason may hold at most 123 bytes.
    let mut text = reason.reason.clone();
    while text.len() > 123 {
        text.pop();
    }
    Message::Close(Some(CloseFrame {
        code: reason.code,
        reason: text.into(),
    }))
}
