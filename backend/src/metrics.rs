//! Counters and histograms behind `/metrics` (Prometheus text exposition format 0.0.4).
//!
//! Hand-written rather than a metrics crate: a fixed set of series, each a relaxed atomic, so
//! the hot path (one update in, N relays out) costs a few uncontended atomic adds.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::Duration;

static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::default);

/// The process's metrics (one server per process; `/metrics` is per process anyway).
pub fn get() -> &'static Metrics {
    &METRICS
}

/// Kinds of error counted in `quire_errors_total{kind}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A frame that does not decode, or an update the CRDT rejects (1007).
    InvalidPayload,
    /// A WebSocket protocol error or a message over the size limit.
    Protocol,
    /// A text frame (1003).
    UnsupportedData,
    /// A commit or load that failed because the database was away (retried).
    Store,
    /// A client too slow to keep up, dropped (1013).
    SlowClient,
    /// A REST or WebSocket request refused for a missing, invalid or expired token (401).
    Unauthenticated,
    /// A request refused because the token does not allow it (403), or a read-only
    /// connection's update refused with permission-denied.
    Forbidden,
}

const ERROR_KINDS: [(ErrorKind, &str); 7] = [
    (ErrorKind::InvalidPayload, "invalid_payload"),
    (ErrorKind::Protocol, "protocol"),
    (ErrorKind::UnsupportedData, "unsupported_data"),
    (ErrorKind::Store, "store"),
    (ErrorKind::SlowClient, "slow_client"),
    (ErrorKind::Unauthenticated, "unauthenticated"),
    (ErrorKind::Forbidden, "forbidden"),
];

/// Limits counted in `quire_limit_hits_total{limit}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    MessageSize,
    BodySize,
    ConnectionsPerIp,
    MessageRate,
    Documents,
    DocumentSize,
    /// Every slot of `--max-connections` taken: accepting paused.
    Connections,
    /// A socket closed for sending no whole request head within `--header-timeout-secs`.
    HeaderTimeout,
    /// A connection closed because its updates cost far more work than their size explains.
    UpdateWork,
    /// A document refused (or an idle one unloaded) at `--max-memory-bytes`.
    Memory,
}

const LIMITS: [(Limit, &str); 10] = [
    (Limit::MessageSize, "message_size"),
    (Limit::BodySize, "body_size"),
    (Limit::ConnectionsPerIp, "connections_per_ip"),
    (Limit::MessageRate, "message_rate"),
    (Limit::Documents, "documents"),
    (Limit::DocumentSize, "document_size"),
    (Limit::Connections, "connections"),
    (Limit::HeaderTimeout, "header_timeout"),
    (Limit::UpdateWork, "update_work"),
    (Limit::Memory, "memory"),
];

/// Upper bounds of the latency histograms' buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A latency histogram: cumulative-on-render buckets, sum in nanoseconds, count.
#[derive(Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS.len()],
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_nanos
            .fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, n) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += n.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count();
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// Every series quire exports.
#[derive(Default)]
pub struct Metrics {
    pub connections_total: AtomicU64,
    /// Updates received (WebSocket Update/SyncStep2 messages and REST changes) that changed a
    /// document.
    pub updates_in: AtomicU64,
    /// Op-log rows other servers committed, applied here (tail check, catch-up before reads,
    /// rows found under the lock at commit).
    pub rows_from_peers: AtomicU64,
    /// Times the tail check found an open document behind the stored version (rows another
    /// server committed that no bus hint brought).
    pub tail_catch_ups: AtomicU64,
    /// From another server's commit (its clock, sent with the bus hint) to its rows applied
    /// here, for rows the bus carried or announced.
    pub peer_apply_lag: Histogram,
    /// Update frames sent to connections (relays and sync replies).
    pub updates_out: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub messages_in: AtomicU64,
    /// Op-log group commits (one transaction each).
    pub oplog_append: Histogram,
    /// Within a commit, taking the document's row (the UPDATE that hands out its versions):
    /// one round trip plus any wait for another server's commit to the same document.
    pub row_lock_wait: Histogram,
    /// From the start of a round (updates taken from the inbox) to its relays queued on every
    /// connection: apply + commit + fan-out.
    pub broadcast: Histogram,
    errors: [AtomicU64; ERROR_KINDS.len()],
    limits: [AtomicU64; LIMITS.len()],
}

impl Metrics {
    pub fn error(&self, kind: ErrorKind) {
        if let Some(i) = ERROR_KINDS.iter().position(|(k, _)| *k == kind) {
            self.errors[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn limit_hit(&self, limit: Limit) {
        if let Some(i) = LIMITS.iter().position(|(l, _)| *l == limit) {
            self.limits[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn limit_hits(&self, limit: Limit) -> u64 {
        LIMITS
            .iter()
            .position(|(l, _)| *l == limit)
            .map_or(0, |i| self.limits[i].load(Ordering::Relaxed))
    }

    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The exposition text; `connections` and `documents` are the current gauges.
    pub fn render(
        &self,
        connections: usize,
        documents: usize,
        loading: usize,
        webhooks: Option<&crate::webhooks::Counts>,
    ) -> String {
        let mut out = String::with_capacity(4096);
        let gauge = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        let counter = |out: &mut String, name: &str, help: &str, v: &AtomicU64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        };
        gauge(
            &mut out,
            "quire_connections",
            "WebSocket connections open now.",
            connections as u64,
        );
        counter(
            &mut out,
            "quire_connections_total",
            "WebSocket connections accepted since start.",
            &self.connections_total,
        );
        gauge(
            &mut out,
            "quire_documents_open",
            "Documents in memory now.",
            documents as u64,
        );
        gauge(
            &mut out,
            "quire_documents_loading",
            "Documents loading from the store now.",
            loading as u64,
        );
        gauge(
            &mut out,
            "quire_heap_bytes",
            "Live heap bytes, as the allocator counts them (--max-memory-bytes holds them).",
            crate::memory::heap_bytes() as u64,
        );
        counter(
            &mut out,
            "quire_messages_in_total",
            "Yjs protocol messages received over WebSockets.",
            &self.messages_in,
        );
        counter(
            &mut out,
            "quire_updates_in_total",
            "Updates that changed a document (WebSocket and REST), each one op-log row.",
            &self.updates_in,
        );
        counter(
            &mut out,
            "quire_rows_from_peers_total",
            "Op-log rows other servers sharing the database committed, applied and relayed here.",
            &self.rows_from_peers,
        );
        counter(
            &mut out,
            "quire_updates_out_total",
            "Update messages sent to WebSocket connections (relays and sync replies).",
            &self.updates_out,
        );
        if let Some(hooks) = webhooks {
            let _ = writeln!(
                out,
                "# HELP quire_webhook_deliveries_total Webhook events by outcome: delivered, retried (an attempt failed), failed (every attempt did), dropped (a queue was full).\n# TYPE quire_webhook_deliveries_total counter"
            );
            for (result, n) in [
                ("delivered", &hooks.delivered),
                ("retried", &hooks.retried),
                ("failed", &hooks.failed),
                ("dropped", &hooks.dropped),
            ] {
                let n = n.load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "quire_webhook_deliveries_total{{result=\"{result}\"}} {n}"
                );
            }
        }
        counter(
            &mut out,
            "quire_bytes_in_total",
            "Bytes of WebSocket messages received.",
            &self.bytes_in,
        );
        counter(
            &mut out,
            "quire_bytes_out_total",
            "Bytes of WebSocket messages sent.",
            &self.bytes_out,
        );
        self.oplog_append.render(
            &mut out,
            "quire_oplog_append_seconds",
            "Time to commit one group of updates to the op log.",
        );
        self.row_lock_wait.render(
            &mut out,
            "quire_row_lock_wait_seconds",
            "Time a commit takes to lock the document's row and take its versions (a round trip plus any wait for another server's commit).",
        );
        self.peer_apply_lag.render(
            &mut out,
            "quire_peer_apply_lag_seconds",
            "Time from another server's commit to its rows applied here (rows a bus hint carried or announced; the committing server's clock).",
        );
        counter(
            &mut out,
            "quire_tail_catch_ups_total",
            "Times the tail check found an open document behind the stored version.",
            &self.tail_catch_ups,
        );
        self.broadcast.render(
            &mut out,
            "quire_broadcast_seconds",
            "Time from taking a round of updates from a document's inbox to queueing their relays (apply, commit, fan-out).",
        );
        let _ = writeln!(
            out,
            "# HELP quire_errors_total Errors by kind.\n# TYPE quire_errors_total counter"
        );
        for ((_, name), n) in ERROR_KINDS.iter().zip(&self.errors) {
            let _ = writeln!(
                out,
                "quire_errors_total{{kind=\"{name}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP quire_limit_hits_total Requests, messages and connections refused by a configured limit.\n# TYPE quire_limit_hits_total counter"
        );
        for ((_, name), n) in LIMITS.iter().zip(&self.limits) {
            let _ = writeln!(
                out,
                "quire_limit_hits_total{{limit=\"{name}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_series() {
        let m = Metrics::default();
        m.limit_hit(Limit::MessageRate);
        m.error(ErrorKind::Forbidden);
        m.oplog_append.observe(Duration::from_micros(300));
        let text = m.render(3, 2, 0, None);
        assert!(text.contains("quire_connections 3\n"));
        assert!(text.contains("quire_documents_open 2\n"));
        assert!(text.contains("quire_limit_hits_total{limit=\"message_rate\"} 1\n"));
        assert!(text.contains("quire_errors_total{kind=\"forbidden\"} 1\n"));
        assert!(text.contains("quire_oplog_append_seconds_bucket{le=\"0.0005\"} 1\n"));
        assert!(text.contains("quire_oplog_append_seconds_count 1\n"));
    }
}
