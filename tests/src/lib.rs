//! quire's end-to-end test harness: the real `quire-server` process on a fresh database,
//! Yjs clients that talk to it, and editing traces turned into updates.
//!
//! # Layout
//! - [`server`]: [`TestServer`] builds `quire-server` once per test process (with the cargo
//!   running the tests), starts it on a free port over SQLite (a temp dir) or PostgreSQL (a
//!   database of the test's own, on `QUIRE_TEST_PG_URL`), and stops, kills and restarts it.
//! - [`chaos`]: editors that type through crashes, containment checks, the stock JS chaos
//!   client and a private PostgreSQL cluster a test may stop and start.
//! - [`client`]: [`Client`], a yrs document synced over one WebSocket like a y-websocket
//!   client; [`RawConn`], which sends arbitrary bytes and reports the close code and reason.
//! - [`http`]: a tiny HTTP/1.1 client (any method, headers, binary bodies) for the health
//!   endpoints and the REST API.
//! - [`replay`]: a concurrent trace replayed through a server, one client per agent honouring
//!   `parents` (the `replay-concurrent` binary).
//! - [`trace`]: editing traces (`shared/traces`) as one yrs update per transaction, each typed
//!   on exactly its parents' state, for out-of-order delivery tests and replay tools.
//!
//! Every wait has a time limit and panics with what it saw, so a failing test says why.

pub mod balancer;
pub mod chaos;
pub mod client;
pub mod http;
pub mod js;
pub mod replay;
pub mod server;
pub mod trace;

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use client::{Client, CloseInfo, RawConn, DEFAULT_TIMEOUT};
pub use server::{StoreKind, TestServer};

/// The workspace root (`tests/..`).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// `shared/traces/<rel>`: the trace collection beside the repository (`QUIRE_TRACES_DIR`
/// overrides where it is).
pub fn trace_path(rel: &str) -> PathBuf {
    let dir = std::env::var_os("QUIRE_TRACES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            workspace_root()
                .parent()
                .map(|p| p.join("shared/traces"))
                .unwrap_or_else(|| PathBuf::from("shared/traces"))
        });
    dir.join(rel)
}

/// Polls `check` every 20 ms until it returns `Some`, or panics with `what` after `timeout`.
pub async fn poll_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting until {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl TestServer {
    /// `GET path` on this server.
    pub async fn get(&self, path: &str) -> http::Response {
        http::get(self.addr(), path)
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", self.log_tail()))
    }

    /// `method path` with `headers` and `body` on this server.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> http::Response {
        http::request(self.addr(), method, path, headers, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\n{}", self.log_tail()))
    }

    /// `method path` with a JSON body.
    pub async fn send_json(
        &self,
        method: &str,
        path: &str,
        body: &serde_json::Value,
    ) -> http::Response {
        self.request(
            method,
            path,
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
        .await
    }

    /// Creates a document through the REST API; returns its id.
    pub async fn create_document(&self, text: &str) -> String {
        let r = self
            .send_json(
                "POST",
                "/api/documents",
                &serde_json::json!({ "text": text }),
            )
            .await;
        assert_eq!(r.status, 201, "create: {r:?}");
        r.json()["id"].as_str().expect("an id").to_string()
    }

    /// The text of a document through the REST API (panics unless 200).
    pub async fn text(&self, id: &str) -> String {
        let r = self.get(&format!("/api/documents/{id}/text")).await;
        assert_eq!(r.status, 200, "GET text of {id}: {r:?}");
        r.body
    }

    /// Panics unless `/healthz` answers 200.
    pub async fn assert_healthy(&self) {
        let r = self.get("/healthz").await;
        assert_eq!(r.status, 200, "/healthz said {r:?}\n{}", self.log_tail());
    }

    /// `/readyz` as JSON.
    pub async fn readyz(&self) -> serde_json::Value {
        self.get("/readyz").await.json()
    }
}

/// Runs a test body within `limit`, after the server binary is built (a first build may take
/// minutes and does not count against the test's own time).
pub async fn bounded<F: Future>(limit: Duration, body: F) -> F::Output {
    tokio::task::spawn_blocking(server::server_binary)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
    match tokio::time::timeout(limit, body).await {
        Ok(v) => v,
        Err(_) => panic!("test did not finish within {limit:?}"),
    }
}

/// Defines `mod $name { fn sqlite(); fn postgres(); }` running `async fn $name(StoreKind)` on
/// each store, each bounded to `$secs` seconds.
#[macro_export]
macro_rules! both_stores {
    ($name:ident, $secs:expr) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                $crate::bounded(
                    ::std::time::Duration::from_secs($secs),
                    super::$name($crate::StoreKind::Sqlite),
                )
                .await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                $crate::bounded(
                    ::std::time::Duration::from_secs($secs),
                    super::$name($crate::StoreKind::Postgres),
                )
                .await
            }
        }
    };
}

/// A small deterministic PRNG (xorshift64*) so a random test is reproducible: by default its
/// seed is fixed per test (a hash of its label), so every run checks the same cases;
/// `QUIRE_TEST_SEED=N` replays seed N and `QUIRE_TEST_SEED=random` explores from the clock.
pub struct Rng(u64);

impl Rng {
    /// Seeded from `QUIRE_TEST_SEED` if set, else from `label`; prints the seed with `label`.
    pub fn from_env(label: &str) -> Rng {
        let seed = match std::env::var("QUIRE_TEST_SEED").ok().as_deref() {
            Some("random") => clock_seed(),
            Some(s) => s
                .parse()
                .unwrap_or_else(|_| panic!("QUIRE_TEST_SEED={s:?}: give a number, or `random`")),
            // FNV-1a: the same label gives the same seed on every machine and build.
            None => label.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            }),
        };
        eprintln!("{label}: QUIRE_TEST_SEED={seed}");
        Rng::new(seed)
    }

    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// A seed from the clock, for opt-in exploration (`QUIRE_TEST_SEED=random`, `QUIRE_SIM_SEED=random`).
pub fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}
