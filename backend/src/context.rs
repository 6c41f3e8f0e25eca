//! What every part of the server shares: settings, the store, health, the shutdown token, and
//! the trackers of the tasks shutdown waits for (document actors, WebSocket connections).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Auth;
use crate::config::Config;
use crate::limits::IpLimiter;
use crate::store::{Store, StoreError};

/// What every part of the server shares.
pub struct Context {
    pub config: Config,
    /// This server's name (`--node-id`, or random).
    pub node_id: String,
    /// The bus to the other servers sharing the database (`--bus`), if any.
    pub bus: Option<Arc<crate::bus::Bus>>,
    pub store: Store,
    pub health: Health,
    /// Cancelled once on SIGTERM/Ctrl-C; everything that runs watches it.
    pub shutdown: CancellationToken,
    /// Document actors, so shutdown can wait for their final flush.
    pub tracker: TaskTracker,
    /// WebSocket connection tasks, so shutdown can wait for their close frames (and
    /// `/readyz` and `/metrics` can count them).
    pub connections: TaskTracker,
    /// Token checks (open when no secret is configured); shared with the REST gate.
    pub auth: Arc<Auth>,
    /// WebSocket connections per client IP.
    pub ip_limiter: IpLimiter,
    /// Committed versions, for the change feed's waiters.
    pub feed: crate::feed::Feed,
    /// `--webhook` deliveries, when any URL is configured.
    pub webhooks: Option<crate::webhooks::Webhooks>,
    /// Documents rebuilt at older versions (history, time travel).
    pub versions: crate::versions::VersionCache,
}

impl Context {
    /// A context for a server on `store`, with nothing running yet.
    pub fn new(config: Config, store: Store, bus: Option<Arc<crate::bus::Bus>>) -> Context {
        // `main` has already read `--auth-secret-file` into `auth_secret`.
        let auth = Arc::new(Auth::new(config.auth_secret.clone()));
        let node_id = node_id(&config);
        let shutdown = CancellationToken::new();
        let targets: Vec<_> = config
            .webhooks
            .iter()
            .filter_map(|url| {
                crate::webhooks::Target::parse(url)
                    .map_err(|err| tracing::error!(%err, "webhook URL ignored"))
                    .ok()
            })
            .collect();
        let webhooks = (!targets.is_empty()).then(|| {
            if config.webhook_secret.is_none() {
                tracing::warn!("webhooks are unsigned: set --webhook-secret so receivers can check they come from this server");
            }
            crate::webhooks::Webhooks::start(
                targets,
                config.webhook_secret.clone(),
                std::time::Duration::from_millis(config.webhook_debounce_ms),
                node_id.clone(),
                shutdown.clone(),
            )
        });
        Context {
            bus,
            node_id,
            config,
            store,
            health: Health {
                store_ok: AtomicBool::new(true),
                ..Health::default()
            },
            shutdown,
            tracker: TaskTracker::new(),
            connections: TaskTracker::new(),
            auth,
            ip_limiter: IpLimiter::default(),
            feed: crate::feed::Feed::default(),
            webhooks,
            versions: crate::versions::VersionCache::default(),
        }
    }

    /// Open WebSocket connections.
    pub fn open_connections(&self) -> usize {
        self.connections.len()
    }
}

/// Live state behind `/readyz`.
#[derive(Default)]
pub struct Health {
    store_ok: AtomicBool,
    last_store_error: Mutex<Option<String>>,
    pub loading: AtomicUsize,
}

impl Health {
    pub fn store_ok(&self, ok: bool) {
        self.store_ok.store(ok, Ordering::Relaxed);
    }

    pub fn store_error(&self, err: &StoreError) {
        self.store_ok.store(false, Ordering::Relaxed);
        *self
            .last_store_error
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(err.to_string());
    }
}

/// This server's name: `--node-id`, or a random one.
pub fn node_id(config: &Config) -> String {
    config.node_id.clone().unwrap_or_else(|| {
        use std::hash::{BuildHasher, RandomState};
        format!("{:016x}", RandomState::new().hash_one(std::process::id()))
    })
}
