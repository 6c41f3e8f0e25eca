//! Accepting connections: at most `--max-connections` sockets open at once (HTTP and WebSocket
//! alike), request headers within `--header-timeout-secs`, TCP_NODELAY, and the process's
//! descriptor limit raised to what the system allows.
//!
//! axum's own `serve` has none of these bounds: 3,000 sockets that never sent a byte held 3,000
//! descriptors until `accept` failed with "Too many open files" for everyone. Here a socket
//! holds a slot from `accept` until it closes (a WebSocket carries its HTTP connection's slot
//! over, [`ConnectionSlot`]); when every slot is taken the server stops accepting (clients wait
//! in the kernel's backlog) instead of failing; a socket that has not sent a whole request head
//! in time is closed.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::metrics::{self, Limit};

/// Descriptors kept back from `--max-connections`' default for the database pool, the bus,
/// files and the listener itself.
const RESERVED_DESCRIPTORS: u64 = 256;

/// An accepted socket's place under `--max-connections`, in the request's extensions: the
/// WebSocket upgrade takes it so the slot stays taken while the WebSocket lives.
#[derive(Clone, Default)]
pub struct ConnectionSlot(Arc<Mutex<Option<OwnedSemaphorePermit>>>);

impl ConnectionSlot {
    /// The slot, to be held as long as the upgraded connection (None if already taken).
    pub fn take(&self) -> Option<OwnedSemaphorePermit> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

/// Raises the soft limit on open descriptors to the hard limit and returns it (None where it
/// cannot be read).
pub fn raise_descriptor_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read or write the struct passed by reference.
    #[allow(unsafe_code)]
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
    }
    Some(limit.rlim_cur)
}

/// `--max-connections 0`: the descriptor limit less a reserve for everything else.
pub fn default_max_connections(descriptors: Option<u64>) -> usize {
    let descriptors = descriptors.unwrap_or(1024);
    let max = descriptors.saturating_sub(RESERVED_DESCRIPTORS).max(64);
    usize::try_from(max)
        .unwrap_or(usize::MAX)
        .min(Semaphore::MAX_PERMITS)
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then stops accepting, lets
/// each HTTP connection finish its request, and returns once all of them have closed
/// (upgraded WebSockets are closed by the documents; see `server::shut_down`).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    max_connections: usize,
    header_timeout: Duration,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(max_connections));
    let connections = tokio_util::task::TaskTracker::new();
    loop {
        let permit = match slots.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                metrics::get().limit_hit(Limit::Connections);
                tracing::warn!(
                    max_connections,
                    "every connection slot is taken; waiting for one to close before accepting more"
                );
                tokio::select! {
                    permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                    _ = shutdown.cancelled() => break,
                }
            }
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    // Per-connection errors (reset before accept) and descriptor exhaustion:
                    // neither is the listener's end, so pause briefly and go on.
                    tracing::warn!(%err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        // Small frames (keystrokes) go out at once rather than waiting on delayed ACKs.
        let _ = stream.set_nodelay(true);
        let slot = ConnectionSlot(Arc::new(Mutex::new(Some(permit))));
        let router = router.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req.extensions_mut().insert(slot.clone());
                let router = router.clone();
                async move {
                    Ok::<_, Infallible>(
                        router
                            .oneshot(req.map(axum::body::Body::new))
                            .await
                            .unwrap_or_else(|never| match never {}),
                    )
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            tokio::pin!(conn);
            let result = tokio::select! {
                result = conn.as_mut() => result,
                _ = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(err) = result {
                if err.is_timeout() {
                    metrics::get().limit_hit(Limit::HeaderTimeout);
                    tracing::debug!(%peer, "closed a connection that sent no request in time");
                } else {
                    tracing::trace!(%peer, %err, "connection ended with an error");
                }
            }
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_leaves_descriptors_for_the_rest() {
        assert_eq!(default_max_connections(Some(20_000)), 19_744);
        assert_eq!(default_max_connections(Some(100)), 64);
        assert_eq!(default_max_connections(None), 768);
    }
}
