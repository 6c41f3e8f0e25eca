//! Command line and environment configuration of `quire-server`.

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

/// quire-server: real-time collaborative text over the Yjs sync protocol, with every edit in a
/// durable op log (SQLite by default, PostgreSQL with a postgres:// URL).
#[derive(Debug, Clone, Parser)]
#[command(name = "quire-server", version)]
pub struct Config {
    /// Address to listen on: `IP:PORT`, `HOST:PORT` (e.g. `localhost:8080`) or a bare `PORT`
    /// (on 127.0.0.1).
    #[arg(long, env = "QUIRE_LISTEN", default_value = "127.0.0.1:8080", value_parser = parse_listen)]
    pub listen: SocketAddr,

    /// Database: `sqlite:PATH` (created if missing) or `postgres://user@host/db`.
    #[arg(long, env = "QUIRE_DATABASE_URL", default_value = "sqlite:quire.db")]
    pub database_url: String,

    /// Largest WebSocket message accepted, in bytes; a bigger one closes that connection (1009).
    #[arg(long, env = "QUIRE_MAX_MESSAGE_BYTES", default_value_t = 8 << 20)]
    pub max_message_bytes: usize,

    /// Largest REST request body accepted, in bytes; a bigger one is refused with 413.
    #[arg(long, env = "QUIRE_MAX_BODY_BYTES", default_value_t = 8 << 20)]
    pub max_body_bytes: usize,

    /// Messages queued for one client before it counts as stuck and is disconnected (1013).
    #[arg(long, env = "QUIRE_OUTBOUND_QUEUE", default_value_t = 4096)]
    pub outbound_queue: usize,

    /// Seconds a document with no connections stays in memory before it is unloaded.
    #[arg(long, env = "QUIRE_IDLE_UNLOAD_SECS", default_value_t = 30)]
    pub idle_unload_secs: u64,

    /// Write a snapshot once this many ops were appended since the last one.
    #[arg(long, env = "QUIRE_SNAPSHOT_OPS", default_value_t = 2000)]
    pub snapshot_ops: u64,

    /// Write a snapshot once this many op bytes were appended since the last one.
    #[arg(long, env = "QUIRE_SNAPSHOT_BYTES", default_value_t = 1 << 20)]
    pub snapshot_bytes: u64,

    /// Delete op-log rows covered by a snapshot once they are older than this many days
    /// (0 keeps the whole op log, which history and time travel read).
    #[arg(long, env = "QUIRE_OP_RETENTION_DAYS", default_value_t = 0)]
    pub op_retention_days: u64,

    /// The same in seconds, when set (wins over days): aggressive compaction, for tests and
    /// small disks; history and time travel then reach back only this far.
    #[arg(long, env = "QUIRE_OP_RETENTION_SECS", default_value_t = 0)]
    pub op_retention_secs: u64,

    /// The longest a change-feed long poll is held (`GET …/changes?wait=`), in seconds; a longer
    /// wait is answered after this long, with no rows.
    #[arg(long, env = "QUIRE_MAX_FEED_WAIT_SECS", default_value_t = 60)]
    pub max_feed_wait_secs: u64,

    /// Keep a snapshot as a history checkpoint every this many ops (0: none), so the text and
    /// blame at any older version are rebuilt from a nearby state, not from the first op.
    #[arg(long, env = "QUIRE_HISTORY_CHECKPOINT_OPS", default_value_t = 10_000)]
    pub history_checkpoint_ops: u64,

    /// Seconds between WebSocket pings; a client silent for three intervals is dropped.
    #[arg(long, env = "QUIRE_PING_SECS", default_value_t = 15)]
    pub ping_secs: u64,

    /// Seconds after which an awareness state that was not renewed is dropped.
    #[arg(long, env = "QUIRE_AWARENESS_TIMEOUT_SECS", default_value_t = 30)]
    pub awareness_timeout_secs: u64,

    /// Seconds shutdown waits for documents to flush before giving up.
    #[arg(long, env = "QUIRE_SHUTDOWN_GRACE_SECS", default_value_t = 20)]
    pub shutdown_grace_secs: u64,

    /// Secret that signs access tokens (HMAC-SHA256). When set (or `--auth-secret-file`), every
    /// WebSocket and REST request needs a token, and `POST /api/tokens` with this secret as
    /// bearer mints them. Unset: quire runs open (anyone who can reach it reads and writes).
    #[arg(long, env = "QUIRE_AUTH_SECRET", hide_env_values = true)]
    pub auth_secret: Option<String>,

    /// File holding the token-signing secret (surrounding whitespace ignored); an alternative
    /// to `--auth-secret` that keeps the secret out of the process list.
    #[arg(long, env = "QUIRE_AUTH_SECRET_FILE", conflicts_with = "auth_secret")]
    pub auth_secret_file: Option<std::path::PathBuf>,

    /// Origin of a browser page on another origin allowed to call the REST API (CORS), change
    /// documents and open WebSockets; repeat for several (the variable takes a comma-separated
    /// list), `*` for any. None: same-origin only (requests without `Origin` always pass).
    #[arg(
        long = "cors-origin",
        env = "QUIRE_CORS_ORIGINS",
        value_delimiter = ','
    )]
    pub cors_origins: Vec<String>,

    /// Host name this server answers to besides `localhost`, `127.0.0.1` and `[::1]` (which a
    /// loopback listener answers to); repeat for several (the variable takes a comma-separated
    /// list). A request for another name is refused with 421, which stops DNS rebinding. A
    /// server listening on a non-loopback address answers any name unless this is set.
    #[arg(
        long = "allowed-host",
        env = "QUIRE_ALLOWED_HOSTS",
        value_delimiter = ','
    )]
    pub allowed_hosts: Vec<String>,

    /// Live heap bytes the server holds before opening another document waits for an idle one
    /// to unload (and is refused with 503 when every open document is in use); 0: no budget.
    /// Default: half the physical memory.
    #[arg(long, env = "QUIRE_MAX_MEMORY_BYTES", default_value_t = default_memory_budget())]
    pub max_memory_bytes: u64,

    /// Milliseconds a joining WebSocket waits for its document (busy integrating a costly
    /// update, or loading) before it is sent the committed state from the store meanwhile.
    #[arg(long, env = "QUIRE_JOIN_WAIT_MS", default_value_t = 500)]
    pub join_wait_ms: u64,

    /// Sockets open at once, HTTP and WebSocket (0: the descriptor limit, raised to the
    /// system's hard limit at start, less 256). When all are taken the server stops accepting
    /// until one closes.
    #[arg(long, env = "QUIRE_MAX_CONNECTIONS", default_value_t = 0)]
    pub max_connections: usize,

    /// Seconds a connection has to send a whole request head (and an idle keep-alive connection
    /// to send its next one) before it is closed.
    #[arg(long, env = "QUIRE_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    pub header_timeout_secs: u64,

    /// WebSocket connections open at once from one IP address (0: no limit); one more is
    /// refused with 429 before the upgrade.
    #[arg(long, env = "QUIRE_MAX_CONNECTIONS_PER_IP", default_value_t = 256)]
    pub max_connections_per_ip: usize,

    /// Messages per second one WebSocket connection may send on average; a connection that
    /// exceeds it, beyond its burst, is closed with 4429. 0 (the default): no limit, since bulk
    /// importers and trace replays send thousands a second; 200 suits editors (fast typing
    /// sends about 30: an update and an awareness change per keystroke).
    #[arg(long, env = "QUIRE_MAX_MESSAGES_PER_SEC", default_value_t = 0)]
    pub max_messages_per_sec: u32,

    /// Messages a connection may send in a burst above the per-second rate (a paste, a
    /// reconnect's catch-up).
    #[arg(long, env = "QUIRE_MESSAGE_BURST", default_value_t = 2000)]
    pub message_burst: u32,

    /// Documents held in memory at once (0: no limit); opening one more unloads the one idle
    /// longest, or is refused (503 for REST and before a WebSocket upgrade) when all are in use.
    #[arg(long, env = "QUIRE_MAX_DOCUMENTS", default_value_t = 10_000)]
    pub max_documents: usize,

    /// Largest document, in bytes of its encoded Yjs state (approximate: the state when it was
    /// loaded plus every update since); an update that would pass it is refused (WebSocket:
    /// permission-denied message; REST: 413). 0: no limit.
    #[arg(long, env = "QUIRE_MAX_DOCUMENT_BYTES", default_value_t = 64 << 20)]
    pub max_document_bytes: u64,

    /// This server's name in a cluster (in logs and in the op log's batch names). Default: a
    /// random one per process.
    #[arg(long, env = "QUIRE_NODE_ID")]
    pub node_id: Option<String>,

    /// The bus to the other servers sharing the PostgreSQL database (`nats://host:port` or
    /// `redis://host:port`): hints
    /// that carry their commits and their clients' presence at once. Without it, several servers
    /// on one database are still correct (the tail check carries changes), just slower, and
    /// presence stays per server.
    #[arg(long, env = "QUIRE_BUS")]
    pub bus: Option<String>,

    /// On PostgreSQL, how often the open documents' stored versions are compared with the ones
    /// held, so rows other servers sharing the database committed reach this server's clients
    /// (milliseconds; 0: never, for a database only this server writes).
    #[arg(long, env = "QUIRE_TAIL_CHECK_MS", default_value_t = 500)]
    pub tail_check_ms: u64,

    /// POST a JSON event to this URL (http:// or https://) after documents change, are created
    /// or are deleted. Repeatable; QUIRE_WEBHOOKS takes a comma-separated list.
    #[arg(long = "webhook", env = "QUIRE_WEBHOOKS", value_delimiter = ',')]
    pub webhooks: Vec<String>,

    /// The key that signs webhook bodies: header `Quire-Signature: sha256=HEX`, the HMAC-SHA256
    /// of the body. Without it webhooks go unsigned.
    #[arg(long, env = "QUIRE_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,

    /// Milliseconds a document's changes are gathered into one `document.changed` webhook.
    #[arg(long, env = "QUIRE_WEBHOOK_DEBOUNCE_MS", default_value_t = 1000)]
    pub webhook_debounce_ms: u64,
}

impl Config {
    /// Defaults, as if no flag or variable were given (for tests and embedding).
    pub fn defaults() -> Config {
        Config::parse_from(["quire-server"])
    }

    pub fn idle_unload(&self) -> Duration {
        Duration::from_secs(self.idle_unload_secs)
    }

    pub fn op_retention(&self) -> Option<Duration> {
        if self.op_retention_secs > 0 {
            return Some(Duration::from_secs(self.op_retention_secs));
        }
        (self.op_retention_days > 0).then(|| Duration::from_secs(self.op_retention_days * 86_400))
    }
}

/// `--max-memory-bytes`' default: half the physical memory (4 GiB where it cannot be read).
fn default_memory_budget() -> u64 {
    crate::memory::physical_memory().unwrap_or(8 << 30) / 2
}

/// `--listen`: `IP:PORT`, `HOST:PORT` (resolved; `localhost` is 127.0.0.1) or a bare port on
/// 127.0.0.1.
pub fn parse_listen(value: &str) -> Result<SocketAddr, String> {
    use std::net::{Ipv4Addr, ToSocketAddrs};
    let value = value.trim();
    if let Ok(addr) = value.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Ok(port) = value.parse::<u16>() {
        return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    }
    let usage = "give PORT, HOST:PORT or IP:PORT (e.g. 8080, localhost:8080, 0.0.0.0:8080)";
    let Some((host, port)) = value.rsplit_once(':') else {
        return Err(format!("{value:?} is not an address: {usage}"));
    };
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{port:?} is not a port number (0-65535): {usage}"))?;
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    }
    let mut addrs: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|err| format!("cannot resolve {host:?} ({err}): {usage}"))?
        .collect();
    // Prefer IPv4, as the default does.
    addrs.sort_by_key(|a| !a.is_ipv4());
    addrs
        .into_iter()
        .next()
        .ok_or_else(|| format!("{host:?} has no address: {usage}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_takes_a_port_a_host_or_an_address() {
        let local = |port| SocketAddr::from(([127, 0, 0, 1], port));
        assert_eq!(parse_listen("8093"), Ok(local(8093)));
        assert_eq!(parse_listen("localhost:8093"), Ok(local(8093)));
        assert_eq!(parse_listen("LOCALHOST:0"), Ok(local(0)));
        assert_eq!(parse_listen("127.0.0.1:8080"), Ok(local(8080)));
        assert_eq!(
            parse_listen("0.0.0.0:80"),
            Ok(SocketAddr::from(([0, 0, 0, 0], 80)))
        );
        assert_eq!(
            parse_listen("[::1]:9000"),
            Ok("[::1]:9000".parse().unwrap())
        );
        for bad in [
            "",
            "localhost",
            "localhost:http",
            "8080:",
            "70000",
            "host:99999",
        ] {
            let err = parse_listen(bad).expect_err(bad);
            assert!(err.contains("e.g. 8080"), "{bad}: {err}");
        }
        let config = Config::try_parse_from(["quire-server", "--listen", "8093"]).unwrap();
        assert_eq!(config.listen, local(8093));
    }
}
