//! A real `quire-server` process for a test: built once per test process, started on a free
//! port over a fresh database (SQLite file or PostgreSQL database of its own), killed on drop.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sqlx::Connection;

/// How long a server may take from spawn to its `listening on` line.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a SIGTERM'd server may take to flush and exit.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The default PostgreSQL the tests use when `QUIRE_TEST_PG_URL` is not set.
pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Which store a test server runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Sqlite,
    Postgres,
}

impl StoreKind {
    pub const ALL: [StoreKind; 2] = [StoreKind::Sqlite, StoreKind::Postgres];

    pub fn name(self) -> &'static str {
        match self {
            StoreKind::Sqlite => "sqlite",
            StoreKind::Postgres => "postgres",
        }
    }
}

static BUILD: OnceLock<Result<PathBuf, String>> = OnceLock::new();
static COUNTER: AtomicUsize = AtomicUsize::new(0);

fn next_id() -> usize {
    COUNTER.fetch_add(1, Ordering::Relaxed)
}

/// The `quire-server` binary, built once per test process with the cargo running the tests
/// (`$CARGO build -p quire-backend --bin quire-server`, same profile and target dir).
pub fn server_binary() -> PathBuf {
    match BUILD.get_or_init(build_server) {
        Ok(path) => path.clone(),
        Err(msg) => panic!("{msg}"),
    }
}

/// The target directory and profile of the running test executable, found from its own path
/// (`<target>[/<triple>]/<profile>/deps/<test>`, or `<profile>/<bin>` for a binary such as
/// `replay-concurrent`; the target root holds CACHEDIR.TAG), so a
/// shared target dir, `CARGO_TARGET_DIR` and `--target-dir` all work; `CARGO_TARGET_DIR` is the
/// fallback when the executable is not under a target dir.
fn target_dir_and_profile() -> (Option<PathBuf>, String) {
    let exe = std::env::current_exe().ok();
    let profile_dir = exe
        .as_deref()
        .and_then(Path::parent) // deps, or <profile> for a binary
        .and_then(|p| {
            if p.file_name().is_some_and(|n| n == "deps") {
                p.parent()
            } else {
                Some(p)
            }
        });
    let profile = profile_dir
        .and_then(|p| p.file_name())
        .map_or("debug".to_string(), |n| n.to_string_lossy().into_owned());
    let root = profile_dir
        .and_then(Path::parent)
        .into_iter()
        .flat_map(|r| [Some(r), r.parent()])
        .flatten()
        .find(|r| r.join("CACHEDIR.TAG").exists())
        .map(Path::to_path_buf);
    let root = root.or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR").map(|d| {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                crate::workspace_root().join(d)
            }
        })
    });
    (root, profile)
}

fn build_server() -> Result<PathBuf, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_string());
    let (target_dir, profile) = target_dir_and_profile();
    let mut cmd = Command::new(&cargo);
    cmd.args([
        "build",
        "-p",
        "quire-backend",
        "--bin",
        "quire-server",
        "--quiet",
        "--message-format=json-render-diagnostics",
    ]);
    match profile.as_str() {
        "debug" => {}
        "release" => {
            cmd.arg("--release");
        }
        other => {
            cmd.args(["--profile", other]);
        }
    }
    if let Some(dir) = &target_dir {
        cmd.arg("--target-dir").arg(dir);
    }
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let started = Instant::now();
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {cargo} to build quire-server: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "building quire-server failed ({}): `{cargo} build -p quire-backend --bin quire-server` (see its errors above)",
            out.status
        ));
    }
    let mut exe = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] == "compiler-artifact" && msg["target"]["name"] == "quire-server" {
            if let Some(path) = msg["executable"].as_str() {
                exe = Some(PathBuf::from(path));
            }
        }
    }
    let exe = exe.ok_or("cargo built quire-server but did not name its executable")?;
    if started.elapsed() > Duration::from_secs(5) {
        eprintln!(
            "built {} in {:.1} s",
            exe.display(),
            started.elapsed().as_secs_f64()
        );
    }
    Ok(exe)
}

/// A scratch directory removed on drop, unless the test is failing (then its path is printed,
/// so the server log in it can be read).
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        remove_stale_dirs();
        let path = std::env::temp_dir().join(format!(
            "quire-test-{label}-{}-{}-{}",
            std::process::id(),
            next_id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos())
        ));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept {} for inspection", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// The PostgreSQL server the tests use (`QUIRE_TEST_PG_URL`, else [`DEFAULT_PG_URL`]).
pub fn pg_admin_url() -> String {
    std::env::var("QUIRE_TEST_PG_URL").unwrap_or_else(|_| DEFAULT_PG_URL.to_string())
}

/// A PostgreSQL database of one test's own, dropped (best effort) with it.
pub struct PgDatabase {
    admin_url: String,
    name: String,
    url: String,
}

impl PgDatabase {
    /// Creates `quire_test_<pid>_<n>`. Panics with directions when PostgreSQL is unreachable:
    /// the PostgreSQL tests never skip themselves.
    pub async fn create() -> PgDatabase {
        let admin_url = pg_admin_url();
        let name = format!("quire_test_{}_{}", std::process::id(), next_id());
        let mut conn = match tokio::time::timeout(
            Duration::from_secs(10),
            sqlx::PgConnection::connect(&admin_url),
        )
        .await
        {
            Ok(Ok(conn)) => conn,
            Ok(Err(err)) => panic!("{}", pg_unreachable(&admin_url, &err.to_string())),
            Err(_) => panic!("{}", pg_unreachable(&admin_url, "no answer within 10 s")),
        };
        drop_stale_databases(&mut conn).await;
        // A left-over of an earlier process that had our pid.
        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("cannot drop stale database {name}: {e}"));
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("cannot create database {name} on {admin_url}: {e}"));
        let _ = conn.close().await;
        let url = replace_db_name(&admin_url, &name);
        PgDatabase {
            admin_url,
            name,
            url,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

/// True if process `pid` is gone (its test databases and directories are left-overs).
fn process_gone(pid: u32) -> bool {
    pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
}

/// Drops, once per process, the databases failed tests of dead test processes kept for
/// inspection (`quire_test_<pid>_<n>`).
async fn drop_stale_databases(conn: &mut sqlx::PgConnection) {
    static DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if DONE.swap(true, Ordering::Relaxed) || !Path::new("/proc/self").exists() {
        return;
    }
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'quire\\_test\\_%'")
            .fetch_all(&mut *conn)
            .await
            .unwrap_or_default();
    for name in names {
        let pid = name
            .strip_prefix("quire_test_")
            .and_then(|rest| rest.split('_').next())
            .and_then(|pid| pid.parse::<u32>().ok());
        if pid.is_some_and(process_gone) {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .execute(&mut *conn)
                .await;
        }
    }
}

/// Removes, once per process, scratch directories of dead test processes.
fn remove_stale_dirs() {
    static DONE: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if DONE.swap(true, Ordering::Relaxed) || !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        // quire-test-<label>-<pid>-<n>-<nanos>
        let Some(rest) = name.strip_prefix("quire-test-") else {
            continue;
        };
        let pid = rest.split('-').nth(1).and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(process_gone) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn pg_unreachable(url: &str, err: &str) -> String {
    format!(
        "PostgreSQL is not reachable at {url} ({err}).\n\
         The PostgreSQL tests need a server: run the README test command `./scripts/test.sh`, \
         which starts one, or start one yourself and set QUIRE_TEST_PG_URL=postgres://USER@HOST:PORT/postgres"
    )
}

/// `postgres://u@h:p/db?x` with `db` replaced by `name`.
fn replace_db_name(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept PostgreSQL database {} for inspection", self.name);
            return;
        }
        // Drop may run inside a runtime: use a thread with a runtime of its own.
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        let dropper = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let work = async {
                    let mut conn = sqlx::PgConnection::connect(&admin_url).await.ok()?;
                    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                        .execute(&mut conn)
                        .await
                        .ok()?;
                    let _ = conn.close().await;
                    Some(())
                };
                let _ = tokio::time::timeout(Duration::from_secs(10), work).await;
            });
        });
        let _ = dropper.join();
    }
}

/// A running `quire-server` child process over a database that outlives restarts.
pub struct TestServer {
    kind: StoreKind,
    database_url: String,
    extra_args: Vec<String>,
    child: Option<Child>,
    addr: SocketAddr,
    /// Where the next start listens: port 0 (a free one) unless `restart_same_port` set it.
    listen: String,
    log_path: PathBuf,
    /// `RUST_LOG` for the child (else `QUIRE_TEST_SERVER_LOG`, else `info`).
    log_filter: Option<String>,
    starts: usize,
    // Dropped after the child is killed (fields drop in order, and Drop kills first).
    _pg: Option<PgDatabase>,
    dir: TempDir,
}

impl TestServer {
    /// Starts a server on a fresh database of `kind`, listening on a free port, with
    /// `extra_args` appended to its command line.
    pub async fn start(kind: StoreKind, extra_args: &[&str]) -> TestServer {
        let dir = TempDir::new(kind.name());
        let (database_url, pg) = match kind {
            StoreKind::Sqlite => (
                format!("sqlite:{}", dir.path().join("quire.db").display()),
                None,
            ),
            StoreKind::Postgres => {
                let db = PgDatabase::create().await;
                (db.url().to_string(), Some(db))
            }
        };
        let mut server = TestServer {
            kind,
            database_url,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            child: None,
            addr: "127.0.0.1:0".parse().unwrap(),
            listen: "127.0.0.1:0".to_string(),
            log_path: dir.path().join("server-0.log"),
            log_filter: None,
            starts: 0,
            _pg: pg,
            dir,
        };
        server.spawn().await;
        server
    }

    async fn spawn(&mut self) {
        let binary = tokio::task::spawn_blocking(server_binary)
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        self.log_path = self.dir.path().join(format!("server-{}.log", self.starts));
        self.starts += 1;
        // Append mode: the stdout reader appends to the same file.
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", self.log_path.display()));
        let mut child = Command::new(&binary)
            .arg("--listen")
            .arg(&self.listen)
            .arg("--database-url")
            .arg(&self.database_url)
            .args(&self.extra_args)
            .env(
                "RUST_LOG",
                self.log_filter.clone().unwrap_or_else(|| {
                    std::env::var("QUIRE_TEST_SERVER_LOG").unwrap_or_else(|_| "info".into())
                }),
            )
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));

        // A thread reads stdout: the `listening on` line, then everything else into the log.
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = tokio::sync::oneshot::channel::<SocketAddr>();
        let log_path = self.log_path.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            let mut log = std::fs::OpenOptions::new()
                .append(true)
                .open(&log_path)
                .ok();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.is_some() {
                    let addr = line
                        .strip_prefix("listening on ")
                        .and_then(|a| a.trim().parse::<SocketAddr>().ok());
                    if let Some(addr) = addr {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(addr);
                        }
                        continue;
                    }
                }
                if let Some(log) = log.as_mut() {
                    let _ = writeln!(log, "{line}");
                }
            }
        });
        self.child = Some(child);
        match tokio::time::timeout(START_TIMEOUT, rx).await {
            Ok(Ok(addr)) => self.addr = addr,
            Ok(Err(_)) => {
                let status = self.reap(Duration::from_secs(5));
                panic!(
                    "quire-server exited before listening ({status:?}):\n{}",
                    self.log_tail()
                );
            }
            Err(_) => panic!(
                "quire-server did not print `listening on` within {} s:\n{}",
                START_TIMEOUT.as_secs(),
                self.log_tail()
            ),
        }
    }

    pub fn kind(&self) -> StoreKind {
        self.kind
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://ADDR/ws/DOC`.
    pub fn ws_url(&self, doc: &str) -> String {
        format!("ws://{}/ws/{doc}", self.addr)
    }

    /// `ws://ADDR/ws`: what a y-websocket provider takes as its server URL.
    pub fn ws_base_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    pub fn database_url(&self) -> &str {
        &self.database_url
    }

    /// The scratch directory (SQLite file, server logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The current run's server log (stderr and stray stdout lines).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The last lines of the current run's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let from = lines.len().saturating_sub(60);
        format!(
            "--- {} (last {} lines) ---\n{}\n---",
            self.log_path.display(),
            lines.len() - from,
            lines[from..].join("\n")
        )
    }

    /// SIGKILL: no flush, no goodbye. The database keeps what was committed.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits for the server to flush and exit; panics unless it exits cleanly.
    #[allow(unsafe_code)] // kill(2)
    pub async fn stop(&mut self) {
        let Some(child) = self.child.as_ref() else {
            return;
        };
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        let status = loop {
            if let Some(status) = self.reap(Duration::ZERO) {
                break Some(status);
            }
            if Instant::now() >= deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        match status {
            Some(status) if status.success() => {}
            Some(status) => panic!(
                "quire-server exited with {status} after SIGTERM:\n{}",
                self.log_tail()
            ),
            None => {
                self.kill9();
                panic!(
                    "quire-server did not exit within {} s of SIGTERM:\n{}",
                    STOP_TIMEOUT.as_secs(),
                    self.log_tail()
                )
            }
        }
    }

    /// Waits up to `timeout` for the child to exit; `None` if it is still running.
    fn reap(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut()?;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    self.child = None;
                    return Some(status);
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                _ => return None,
            }
        }
    }

    /// Starts a server on a database the caller runs (e.g. a private PostgreSQL cluster that a
    /// test stops and starts), with `extra_args` appended to its command line.
    pub async fn start_on(database_url: &str, extra_args: &[&str]) -> TestServer {
        let dir = TempDir::new("custom");
        let mut server = TestServer {
            kind: if database_url.starts_with("sqlite:") {
                StoreKind::Sqlite
            } else {
                StoreKind::Postgres
            },
            database_url: database_url.to_string(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            child: None,
            addr: "127.0.0.1:0".parse().unwrap(),
            listen: "127.0.0.1:0".to_string(),
            log_path: dir.path().join("server-0.log"),
            log_filter: None,
            starts: 0,
            _pg: None,
            dir,
        };
        server.spawn().await;
        server
    }

    /// Like [`TestServer::restart`], but listening on the same address as before, so clients
    /// that reconnect on their own (the stock y-websocket provider) find it again.
    pub async fn restart_same_port(&mut self) {
        self.kill9();
        self.listen = self.addr.to_string();
        self.spawn().await;
    }

    /// Starts the server again on the same database (stopping it with SIGKILL first if it is
    /// still running). It listens on a new port: take URLs from the server after this.
    pub async fn restart(&mut self) {
        self.kill9();
        self.listen = "127.0.0.1:0".to_string();
        self.spawn().await;
    }

    /// [`TestServer::restart`] with `RUST_LOG=filter` (e.g. to check what debug logs hold).
    pub async fn restart_logging(&mut self, filter: &str) {
        self.log_filter = Some(filter.to_string());
        self.restart().await;
    }

    /// True while the child process runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("{}", self.log_tail());
        }
    }
}

/// A private nats-server on a free loopback port, ended when dropped (the cluster tests start
/// their own, never the machine's). `QUIRE_NATS_SERVER` names the binary (scripts/test.sh sets
/// it); otherwise `nats-server` on PATH or in /usr/sbin.
/// Which program a [`BusServer`] runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BusKind {
    Nats,
    Redis,
}

/// A private bus server (nats-server or redis-server) on its own free port, for the cluster
/// tests; ended when dropped.
pub struct BusServer {
    child: Option<Child>,
    port: u16,
    kind: BusKind,
}

impl BusServer {
    pub async fn nats() -> BusServer {
        BusServer::start(BusKind::Nats).await
    }

    pub async fn redis() -> BusServer {
        BusServer::start(BusKind::Redis).await
    }

    pub async fn start(kind: BusKind) -> BusServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut bus = BusServer {
            child: None,
            port,
            kind,
        };
        bus.spawn().await;
        bus
    }

    fn binary(&self) -> PathBuf {
        let (var, name, package) = match self.kind {
            BusKind::Nats => ("QUIRE_NATS_SERVER", "nats-server", "nats-server"),
            BusKind::Redis => ("QUIRE_REDIS_SERVER", "redis-server", "redis-server"),
        };
        if let Ok(path) = std::env::var(var) {
            return PathBuf::from(path);
        }
        for dir in std::env::var("PATH")
            .unwrap_or_default()
            .split(':')
            .chain(["/usr/sbin", "/usr/bin"])
        {
            let candidate = Path::new(dir).join(name);
            if candidate.is_file() {
                return candidate;
            }
        }
        panic!("{name} not found: install it (Debian: apt-get install {package}) or set {var}; scripts/test.sh does this");
    }

    async fn spawn(&mut self) {
        let port = self.port.to_string();
        let args: Vec<&str> = match self.kind {
            BusKind::Nats => vec!["-a", "127.0.0.1", "-p", &port],
            // Pub/sub only: nothing saved, nothing read from a config file.
            BusKind::Redis => vec![
                "--bind",
                "127.0.0.1",
                "--port",
                &port,
                "--save",
                "",
                "--appendonly",
                "no",
            ],
        };
        let binary = self.binary();
        let child = Command::new(&binary)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "{} did not listen within 10 s",
                binary.display()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self) -> String {
        match self.kind {
            BusKind::Nats => format!("nats://127.0.0.1:{}", self.port),
            BusKind::Redis => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// kill -9.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn().await;
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`): a hung bus.
    pub fn pause(&self, stop: bool) {
        if let Some(child) = &self.child {
            let signal = if stop { "-STOP" } else { "-CONT" };
            let _ = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status();
        }
    }
}

impl Drop for BusServer {
    fn drop(&mut self) {
        self.pause(false);
        self.kill9();
    }
}

#[cfg(test)]
mod tests {
    use super::replace_db_name;

    #[test]
    fn db_name_in_url() {
        assert_eq!(
            replace_db_name("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            replace_db_name("postgres://u:p@h/db?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(replace_db_name("postgres://h:1", "x"), "postgres://h:1/x");
    }
}
