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

use tracing::Instrument;

use crate::auth::{now_secs, Access};
use crate::context::Context;
use crate::document::{CloseReason, Command, ConnId};
use crate::documents::Documents;
use crate::limits::TokenBucket;
use crate::metrics::{self, ErrorKind, Limit};
use crate::protocol::{self, close};

static NEXT_CONN: AtomicU64 = AtomicU64::new(1);

/// Frames written before one flush.
const WRITE_BATCH: usize = 256;

/// How long a socket closed over unreadable input stays open so the client reads the close.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// Serves one upgraded WebSocket on document `doc_id`, with what `access` allows, until either
/// side closes it. Its logs carry the document and connection ids (a `conn` span).
pub async fn serve(
    socket: WebSocket,
    doc_id: Arc<str>,
    access: Access,
    documents: Arc<Documents>,
    ctx: Arc<Context>,
) {
    let conn: ConnId = NEXT_CONN.fetch_add(1, Ordering::Relaxed);
    let span = tracing::info_span!("conn", doc = %doc_id, conn, role = access.role.as_str());
    serve_conn(socket, doc_id, conn, access, documents, ctx)
        .instrument(span)
        .await
}

async fn serve_conn(
    socket: WebSocket,
    doc_id: Arc<str>,
    conn: ConnId,
    access: Access,
    documents: Arc<Documents>,
    ctx: Arc<Context>,
) {
    metrics::get()
        .connections_total
        .fetch_add(1, Ordering::Relaxed);
    let (mut sink, stream) = socket.split();
    tracing::debug!("connection open");

    let author: Option<Arc<str>> = access.sub.as_deref().map(Arc::from);
    let mut served_stored = false;
    let (mut out_rx, mut kick_rx, inbox, out) = loop {
        let (out_tx, out_rx) = mpsc::channel(ctx.config.outbound_queue);
        let (kick_tx, kick_rx) = oneshot::channel();
        let joining = documents.join(&doc_id, conn, out_tx.clone(), kick_tx, author.clone());
        tokio::pin!(joining);
        let joined = tokio::select! {
            joined = &mut joining => joined,
            // The document is busy (a costly update, a slow load): the client gets the
            // committed state from the store meanwhile instead of an empty editor.
            _ = tokio::time::sleep(Duration::from_millis(ctx.config.join_wait_ms)), if !served_stored => {
                served_stored = true;
                send_stored_state(&mut sink, &ctx, &doc_id).await;
                joining.await
            }
        };
        match joined {
            Ok(Some(inbox)) => break (out_rx, kick_rx, inbox, out_tx),
            Ok(None) => continue,
            Err(reason) => {
                count_close(&reason);
                let _ = sink.send(close_message(&reason)).await;
                return;
            }
        }
    };
    // The token's expiry, as a deadline on this connection.
    let expires = access.exp.map(|exp| {
        tokio::time::Instant::now() + Duration::from_secs(exp.saturating_sub(now_secs()))
    });
    let expiry = tokio::time::sleep_until(
        expires.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(86_400 * 365)),
    );
    tokio::pin!(expiry);
    // Revocation: a token with an id is re-checked whenever any token is revoked.
    let mut revocations = ctx.auth.revocations();
    // Check once at the start too: the token may have been revoked since the upgrade.
    revocations.mark_changed();
    let mut watch_revocations = access.jti.is_some();
    let limits = ReadLimits {
        read_only: !access.role.can_write(),
        bucket: TokenBucket::new(ctx.config.max_messages_per_sec, ctx.config.message_burst),
        rate: ctx.config.max_messages_per_sec,
        out,
    };

    let ping_every = Duration::from_secs(ctx.config.ping_secs.max(1));
    let reader = read_frames(stream, inbox.clone(), conn, ping_every * 3, limits);
    tokio::pin!(reader);
    let mut ping = tokio::time::interval(ping_every);
    ping.tick().await;

    let reason: Option<CloseReason> = loop {
        tokio::select! {
            why = &mut reader => break why,
            frame = out_rx.recv() => match frame {
                Some(frame) => {
                    // Write what is queued, then flush once: one syscall for a burst.
                    count_out(&frame);
                    let mut ok = sink.feed(Message::Binary(frame)).await.is_ok();
                    for _ in 0..WRITE_BATCH {
                        let Ok(frame) = out_rx.try_recv() else { break };
                        count_out(&frame);
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
            _ = &mut expiry, if expires.is_some() => {
                break Some(CloseReason::new(
                    close::TOKEN_EXPIRED,
                    "access token expired; reconnect with a new token",
                ));
            }
            changed = revocations.changed(), if watch_revocations => {
                match (changed, access.jti.as_deref()) {
                    (Ok(()), Some(jti)) if ctx.auth.is_revoked(jti) => {
                        tracing::info!("closing: the connection's access token was revoked");
                        break Some(CloseReason::new(
                            close::TOKEN_EXPIRED,
                            "access token revoked; reconnect with a new token",
                        ));
                    }
                    (Ok(()), _) => {}
                    (Err(_), _) => watch_revocations = false,
                }
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
        count_close(&reason);
        tracing::debug!(code = reason.code, reason = %reason.reason, "closing");
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

/// Sends a joining client the document as committed in the store: the newest snapshot and
/// each later row as Updates, then an empty SyncStep2. The actor's own sync follows once the
/// join completes (what it repeats, the client ignores).
async fn send_stored_state(
    sink: &mut futures_util::stream::SplitSink<WebSocket, Message>,
    ctx: &Context,
    doc_id: &str,
) {
    let stored = match ctx.store.load(doc_id, false).await {
        Ok(crate::store::Loaded::Doc(stored)) => stored,
        _ => return,
    };
    tracing::info!(
        rows = stored.ops.len(),
        "document busy: sending the stored state before the join completes"
    );
    // The snapshot and the rows as updates, then an empty SyncStep2: a client counts itself
    // synced at a SyncStep2, so it comes once the client has everything stored.
    let snapshot = stored.snapshot.map(|(_, state)| protocol::update(state));
    let rows = stored
        .ops
        .into_iter()
        .map(|op| protocol::update(op.update_v1));
    let synced = protocol::sync_step2(vec![0, 0]);
    for frame in snapshot
        .into_iter()
        .chain(rows)
        .chain(std::iter::once(synced))
    {
        count_out(&frame);
        if sink.feed(Message::Binary(frame)).await.is_err() {
            return;
        }
    }
    let _ = sink.flush().await;
}

/// What the reader enforces besides well-formedness.
struct ReadLimits {
    /// Updates are refused with permission-denied (awareness still goes through: a viewer's
    /// cursor is shown like anyone's).
    read_only: bool,
    bucket: Option<TokenBucket>,
    rate: u32,
    /// This connection's outbound queue, for the permission-denied answers.
    out: mpsc::Sender<Bytes>,
}

/// Counts a frame going out.
fn count_out(frame: &Bytes) {
    let m = metrics::get();
    m.bytes_out.fetch_add(frame.len() as u64, Ordering::Relaxed);
    // `[0][1]` SyncStep2 and `[0][2]` Update.
    if frame.len() > 1 && frame[0] == 0 && matches!(frame[1], 1 | 2) {
        m.updates_out.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counts why a connection was closed, when it is an error or a limit.
fn count_close(reason: &CloseReason) {
    let m = metrics::get();
    match reason.code {
        close::INVALID_PAYLOAD => m.error(ErrorKind::InvalidPayload),
        close::MESSAGE_TOO_BIG => m.limit_hit(Limit::MessageSize),
        close::UNSUPPORTED_DATA => m.error(ErrorKind::UnsupportedData),
        close::TRY_AGAIN_LATER => m.error(ErrorKind::SlowClient),
        close::RATE_LIMITED => m.limit_hit(Limit::MessageRate),
        close::TOKEN_EXPIRED => m.error(ErrorKind::Unauthenticated),
        1002 => m.error(ErrorKind::Protocol),
        _ => {}
    }
}

/// Reads frames until the socket ends or must be closed; returns the close to send, if any.
async fn read_frames(
    mut stream: futures_util::stream::SplitStream<WebSocket>,
    inbox: mpsc::Sender<Command>,
    conn: ConnId,
    silence_limit: Duration,
    mut limits: ReadLimits,
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
            Message::Binary(bytes) => {
                // A read-only connection's updates are refused undecoded: decoding costs work
                // that nothing would come of.
                let decoded = if limits.read_only {
                    protocol::decode_frame_read_only(&bytes)
                } else {
                    protocol::decode_frame(&bytes).map(|msgs| (msgs, 0))
                };
                let (msgs, refused) = match decoded {
                    Ok(decoded) => decoded,
                    Err(err) => {
                        tracing::info!(bytes = bytes.len(), error = %err, "frame refused");
                        return Some(CloseReason::new(close::INVALID_PAYLOAD, err.to_string()));
                    }
                };
                let m = metrics::get();
                m.bytes_in.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                let count = msgs.len() + refused;
                if count == 0 {
                    continue;
                }
                m.messages_in.fetch_add(count as u64, Ordering::Relaxed);
                if let Some(bucket) = &mut limits.bucket {
                    if !bucket.take(count) {
                        tracing::info!(rate = limits.rate, "message rate limit hit");
                        return Some(CloseReason::new(
                            close::RATE_LIMITED,
                            format!(
                                "more than {} messages per second; slow down and reconnect",
                                limits.rate
                            ),
                        ));
                    }
                }
                refuse_updates(refused, &limits.out);
                if msgs.is_empty() {
                    continue;
                }
                if inbox.send(Command::Messages { conn, msgs }).await.is_err() {
                    return Some(CloseReason::new(
                        close::INTERNAL_ERROR,
                        "document closed; reconnect",
                    ));
                }
            }
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

/// Answers each of a read-only connection's `refused` updates with the protocol's
/// permission-denied message.
fn refuse_updates(refused: usize, out: &mpsc::Sender<Bytes>) {
    for _ in 0..refused {
        metrics::get().error(ErrorKind::Forbidden);
        tracing::debug!("update from a read-only connection refused");
        // A full queue means the client is not reading; the actor will close it.
        let _ = out.try_send(protocol::permission_denied(
            "read-only access: this connection's token does not allow changes",
        ));
    }
}
