//! The HTTP server: routes, the WebSocket upgrade, health, and graceful shutdown (done once,
//! here, by [`shut_down`]).

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Extension;
use axum::{Json, Router};
use serde_json::json;
use std::net::SocketAddr;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

use crate::config::Config;
use crate::connection;
pub use crate::context::{Context, Health};
use crate::documents::Documents;
use crate::listener::ConnectionSlot;
use crate::metrics::{self, Limit};
use crate::problem::Problem;
use crate::protocol::validate_doc_id;
use crate::store::{DocState, Store, StoreError};

/// Read and write buffer of each WebSocket.
const SOCKET_BUFFER_BYTES: usize = 4 * 1024;

/// How long shutdown waits for connections to send their 1001 close frames once every
/// document has flushed (and told its connections to close).
const CLOSE_GRACE: Duration = Duration::from_secs(2);

#[derive(Clone)]
struct AppState {
    ctx: Arc<Context>,
    documents: Arc<Documents>,
}

/// A running server's parts, for `main` and for tests that embed it.
pub struct Server {
    ctx: Arc<Context>,
    documents: Arc<Documents>,
}

impl Server {
    /// Connects to the store (running migrations) and prepares the server.
    pub async fn new(mut config: Config) -> Result<Server, StoreError> {
        config.node_id = Some(crate::context::node_id(&config));
        let bus = match &config.bus {
            Some(url) if !config.database_url.starts_with("postgres") => {
                return Err(StoreError::Locked(format!(
                    "--bus {url} needs a PostgreSQL --database-url: the bus connects servers that share one database, and SQLite serves a single process"
                )));
            }
            Some(url) => Some(
                crate::bus::Bus::new(url, config.node_id.as_deref().unwrap_or_default())
                    .map_err(StoreError::Locked)?,
            ),
            None => None,
        };
        for url in &config.webhooks {
            crate::webhooks::Target::parse(url).map_err(StoreError::Locked)?;
        }
        let mut store = Store::connect(&config.database_url).await?;
        store.set_checkpoint_ops(config.history_checkpoint_ops);
        let ctx = Arc::new(Context::new(config, store, bus));
        if ctx.auth.enabled() {
            tracing::info!("access control on: every WebSocket and REST request needs a token (mint them with POST /api/tokens)");
        } else {
            tracing::warn!("no --auth-secret (QUIRE_AUTH_SECRET) set: quire is OPEN, anyone who can reach it can read, change and delete every document; set a secret before exposing it to a network");
        }
        // Revoked tokens stay revoked across restarts.
        let revoked = ctx.store.revoked_tokens().await?;
        if !revoked.is_empty() {
            tracing::info!(count = revoked.len(), "revoked tokens loaded");
        }
        ctx.auth.revoke(
            revoked
                .into_iter()
                .map(|(jti, exp)| (jti, u64::try_from(exp).unwrap_or(0))),
        );
        let documents = Documents::new(ctx.clone());
        if let Some(bus) = &ctx.bus {
            ctx.tracker
                .spawn(bus.clone().run(documents.clone(), ctx.shutdown.clone()));
        }
        if ctx.store.backend() == crate::store::Backend::Postgres && ctx.auth.enabled() {
            // Other servers sharing the database revoke tokens too: their revocations apply
            // here within a second (connections re-check their token on a timer).
            let ctx = ctx.clone();
            let shutdown = ctx.shutdown.clone();
            ctx.tracker.clone().spawn(async move {
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    if let Ok(revoked) = ctx.store.revoked_tokens().await {
                        ctx.auth.revoke(
                            revoked
                                .into_iter()
                                .map(|(jti, exp)| (jti, u64::try_from(exp).unwrap_or(0))),
                        );
                    }
                }
            });
        }
        if ctx.store.backend() == crate::store::Backend::Postgres && ctx.config.tail_check_ms > 0 {
            // Other servers may share this database: their commits reach our clients this way.
            let interval = std::time::Duration::from_millis(ctx.config.tail_check_ms);
            ctx.tracker.spawn(documents.clone().tail_check(interval));
        }
        Ok(Server { ctx, documents })
    }

    pub fn router(&self) -> Router {
        let state = AppState {
            ctx: self.ctx.clone(),
            documents: self.documents.clone(),
        };
        Router::new()
            .route("/ws/{doc}", get(websocket))
            .route("/healthz", get(|| async { "ok\n" }))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics_text))
            .nest(
                "/api",
                crate::api::router(self.ctx.clone(), self.documents.clone()),
            )
            // The browser editor (web/dist, embedded): `/`, `/d/{doc}`, `/assets/*`.
            .merge(crate::web::router())
            .with_state(state)
            .layer(axum::middleware::from_fn_with_state(
                Arc::new(crate::origin::OriginPolicy::new(
                    self.ctx.config.listen,
                    &self.ctx.config.cors_origins,
                    &self.ctx.config.allowed_hosts,
                )),
                crate::origin::guard,
            ))
            // Tokens in `?token=` never reach a log line, at any level.
            .layer(
                TraceLayer::new_for_http().make_span_with(|req: &axum::extract::Request| {
                    tracing::debug_span!(
                        "request",
                        method = %req.method(),
                        uri = %crate::auth::redacted_uri(req.uri()),
                        version = ?req.version(),
                    )
                }),
            )
    }

    /// The shared context (store, health, shutdown token): for tests that embed the server.
    pub fn context(&self) -> &Arc<Context> {
        &self.ctx
    }

    /// The open documents: for tests that drive document actors without sockets
    /// (`Documents::join`, `Command::Messages`).
    pub fn documents(&self) -> &Arc<Documents> {
        &self.documents
    }

    /// Shuts down a server that was never served (embedded in a test), as [`Server::serve`]
    /// does after its signal: see [`shut_down`].
    pub async fn shutdown(self) {
        shut_down(&self.ctx).await;
    }

    /// Serves until `signal` completes, then shuts down: stop accepting, flush every document
    /// to the store, close every socket with 1001, close the store.
    pub async fn serve(
        self,
        listener: TcpListener,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let ctx = self.ctx.clone();
        let token = ctx.shutdown.clone();
        tokio::spawn(async move {
            signal.await;
            tracing::info!("shutting down: flushing documents");
            token.cancel();
        });
        let max_connections = match ctx.config.max_connections {
            0 => {
                crate::listener::default_max_connections(crate::listener::raise_descriptor_limit())
            }
            max => {
                crate::listener::raise_descriptor_limit();
                max
            }
        };
        tracing::info!(max_connections, "accepting connections");
        crate::listener::serve(
            listener,
            self.router(),
            max_connections,
            Duration::from_secs(ctx.config.header_timeout_secs.max(1)),
            ctx.shutdown.clone(),
        )
        .await;
        shut_down(&ctx).await;
        Ok(())
    }
}

/// The one way down: cancel everything; wait (up to `--shutdown-grace-secs`) for every document
/// actor to commit, write its final snapshot and tell its connections to close with 1001; wait
/// (briefly) for those connection tasks to send the close frames; close the store.
async fn shut_down(ctx: &Context) {
    ctx.shutdown.cancel();
    let grace = Duration::from_secs(ctx.config.shutdown_grace_secs);
    ctx.tracker.close();
    if tokio::time::timeout(grace, ctx.tracker.wait())
        .await
        .is_err()
    {
        tracing::error!("documents did not flush within {} s; unflushed edits stay with their clients, which resend them on reconnect", grace.as_secs());
    }
    ctx.connections.close();
    if tokio::time::timeout(CLOSE_GRACE, ctx.connections.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            open = ctx.open_connections(),
            "connections still open after shutdown"
        );
    }
    ctx.store.close().await;
    tracing::info!("shutdown complete");
}

async fn websocket(
    State(state): State<AppState>,
    Path(doc): Path<String>,
    RawQuery(query): RawQuery,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    connection_slot: Option<Extension<ConnectionSlot>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    if let Err(msg) = validate_doc_id(&doc) {
        return (StatusCode::BAD_REQUEST, format!("{msg}\n")).into_response();
    }
    // Access first: nothing about the document is revealed to a request without a token.
    let token = crate::auth::query_token(query.as_deref());
    let access = match state.ctx.auth.check(token.as_deref(), Some(&doc), false) {
        Ok(access) => access,
        Err(err) => {
            metrics::get().error(err.metric());
            tracing::info!(doc = %doc, %err, "WebSocket refused");
            return err.problem();
        }
    };
    let slot = match peer {
        Some(Extension(ConnectInfo(addr))) => {
            let max = state.ctx.config.max_connections_per_ip;
            match state.ctx.ip_limiter.acquire(addr.ip(), max) {
                Some(slot) => Some(slot),
                None => {
                    metrics::get().limit_hit(Limit::ConnectionsPerIp);
                    return Problem::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "too-many-connections",
                        "Too many connections",
                        format!("{} already has {max} WebSocket connections open (--max-connections-per-ip)", addr.ip()),
                    )
                    .into_response();
                }
            }
        }
        None => None,
    };
    if !state.documents.is_open(&doc) && state.documents.at_capacity() {
        return Problem::unavailable(state.documents.refuse_one_more()).into_response();
    }
    // A deleted document's id stays dead: refuse before the upgrade, so a reconnecting client
    // sees a plain 404. (An open document exists, so the common case needs no query.)
    if !state.documents.is_open(&doc) {
        match state.ctx.store.state(&doc).await {
            Ok(DocState::Deleted) => {
                return Problem::not_found(format!("document {doc:?} was deleted")).into_response()
            }
            Ok(_) => {}
            Err(err) => {
                return Problem::unavailable(format!("the database is unavailable: {err}"))
                    .into_response()
            }
        }
    }
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    let limit = state.ctx.config.max_message_bytes;
    // The socket's place under --max-connections goes with it into the WebSocket's life.
    let connection_slot = connection_slot.and_then(|Extension(slot)| slot.take());
    upgrade
        .max_message_size(limit)
        .max_frame_size(limit)
        // tungstenite's 128 KiB defaults would cost 256 KiB per idle connection; typing-size
        // frames need a few KiB, and bigger messages still grow the buffers as needed.
        .read_buffer_size(SOCKET_BUFFER_BYTES)
        .write_buffer_size(SOCKET_BUFFER_BYTES)
        .on_upgrade(move |socket| {
            // Tracked like the actors, so shutdown waits for this connection's close frame.
            let connections = state.ctx.connections.clone();
            connections.track_future(async move {
                let _slots = (slot, connection_slot);
                connection::serve(socket, doc.into(), access, state.documents, state.ctx).await
            })
        })
}

async fn readyz(State(state): State<AppState>) -> Response {
    let ctx = &state.ctx;
    let ping = tokio::time::timeout(Duration::from_secs(2), ctx.store.ping()).await;
    let store = match ping {
        Ok(Ok(())) => {
            ctx.health.store_ok(true);
            Ok(())
        }
        Ok(Err(err)) => {
            ctx.health.store_error(&err);
            Err(err.to_string())
        }
        Err(_) => Err("database did not answer within 2 s".to_string()),
    };
    let body = json!({
        "ready": store.is_ok() && !ctx.shutdown.is_cancelled(),
        "store": match &store { Ok(()) => "ok".to_string(), Err(e) => e.clone() },
        "shutting_down": ctx.shutdown.is_cancelled(),
        "documents_open": state.documents.open_count(),
        "documents_loading": ctx.health.loading.load(Ordering::Relaxed),
        "connections": ctx.open_connections(),
        "node": ctx.node_id,
        // The bus is for latency only: a node without it is slower across servers, still ready.
        "bus": match &ctx.bus {
            None => "none",
            Some(bus) if bus.is_connected() => "connected",
            Some(_) => "disconnected",
        },
    });
    let status = if store.is_ok() && !ctx.shutdown.is_cancelled() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

/// `/metrics`: Prometheus text exposition.
async fn metrics_text(State(state): State<AppState>) -> Response {
    let ctx = &state.ctx;
    let mut body = metrics::get().render(
        ctx.open_connections(),
        state.documents.open_count(),
        ctx.health.loading.load(Ordering::Relaxed),
        ctx.webhooks.as_ref().map(|w| &*w.counts),
    );
    if let Some(bus) = &ctx.bus {
        use std::fmt::Write;
        let _ = write!(
            body,
            "# HELP quire_bus_connected 1 while the bus to the other servers is connected.\n\
             # TYPE quire_bus_connected gauge\nquire_bus_connected {}\n\
             # HELP quire_bus_received_total Messages received from other servers on the bus.\n\
             # TYPE quire_bus_received_total counter\nquire_bus_received_total {}\n\
             # HELP quire_bus_dropped_total Messages not published because the bus queue was full (hung or slow bus).\n\
             # TYPE quire_bus_dropped_total counter\nquire_bus_dropped_total {}\n",
            u8::from(bus.is_connected()),
            bus.received.load(Ordering::Relaxed),
            bus.dropped.load(Ordering::Relaxed),
        );
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
