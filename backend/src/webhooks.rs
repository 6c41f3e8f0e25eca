//! Webhooks: `--webhook URL` (repeatable) is POSTed a JSON event after documents change, are
//! created or are deleted, signed with HMAC-SHA256 (`--webhook-secret`), so the programs around
//! quire hear of changes without polling.
//!
//! - `document.changed` carries the version, and the version of the previous `document.changed`
//!   sent for that document, so a receiver fetches exactly what changed
//!   (`GET /api/documents/{id}/diff?from=…&to=…` or `…/changes?since=…`). Changes are debounced
//!   per document (`--webhook-debounce-ms`): a burst of typing is one event.
//! - Only the server that committed a change reports it: in a cluster each change is sent once.
//! - Never in the way of edits: the actor's notice goes into a bounded queue without waiting
//!   (full: dropped and counted). One task per URL delivers events in order, retrying failures
//!   (a non-2xx answer, no answer within 10 s) with backoff from 0.5 s to 30 s, 8 attempts.
//!
//! Headers: `Quire-Event` (the event's name), `Quire-Delivery` (the event's id; the same on
//! every retry), `Quire-Delivery-Attempt`, and `Quire-Signature: sha256=HEX`, the HMAC-SHA256
//! of the body under the secret (absent without a secret).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Uri};
use hmac::{Hmac, Mac};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use sha2::Sha256;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Notices waiting for the dispatcher; more are dropped (and counted).
const NOTICE_QUEUE: usize = 4096;
/// Events waiting for one URL's delivery; more are dropped (and counted).
const DELIVERY_QUEUE: usize = 1024;
/// A delivery attempt's deadline: connect, send, and the receiver's answer.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
const ATTEMPTS: u32 = 8;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What happened, as the actors and the REST API report it.
#[derive(Debug, Clone)]
pub enum Notice {
    /// This server committed changes to `doc`, up to `version`.
    Changed {
        doc: Arc<str>,
        version: i64,
    },
    Created {
        doc: String,
        name: Option<String>,
    },
    Deleted {
        doc: String,
    },
}

/// The JSON body of a webhook.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// `document.changed`, `document.created` or `document.deleted`.
    pub event: &'static str,
    /// Unique per event; the same on every retry (also the `Quire-Delivery` header).
    pub id: String,
    pub document: String,
    /// When it was sent first (RFC 3339, UTC).
    pub time: String,
    /// `document.changed`: the version now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// `document.changed`: the version of the previous `document.changed` this server sent for
    /// the document, if any (changes since then are `GET …/changes?since=previous_version`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_version: Option<i64>,
    /// `document.created`: its name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The server that sent it (`--node-id`).
    pub node: String,
}

/// Counts behind `quire_webhook_deliveries_total`.
#[derive(Default)]
pub struct Counts {
    pub delivered: AtomicU64,
    pub retried: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
}

/// The webhooks of one server. See the module docs.
pub struct Webhooks {
    notices: mpsc::Sender<Notice>,
    pub counts: Arc<Counts>,
}

/// A `--webhook` URL, checked at start.
#[derive(Debug, Clone)]
pub struct Target {
    uri: Uri,
    host: String,
    port: u16,
    tls: bool,
}

impl Target {
    pub fn parse(url: &str) -> Result<Target, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("--webhook {url:?} is not a URL: {e}"))?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(format!("--webhook {url:?}: only http:// and https:// URLs")),
        };
        let host = uri
            .host()
            .ok_or_else(|| format!("--webhook {url:?} names no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if tls { 443 } else { 80 });
        Ok(Target {
            uri,
            host,
            port,
            tls,
        })
    }
}

impl Webhooks {
    /// Starts the dispatcher and one delivery task per target; they stop at `shutdown`.
    pub fn start(
        targets: Vec<Target>,
        secret: Option<String>,
        debounce: Duration,
        node: String,
        shutdown: CancellationToken,
    ) -> Webhooks {
        let counts = Arc::new(Counts::default());
        let secret = secret.map(Arc::<str>::from);
        let tls = targets.iter().any(|t| t.tls).then(tls_connector).flatten();
        let queues: Vec<mpsc::Sender<Event>> = targets
            .into_iter()
            .map(|target| {
                let (tx, rx) = mpsc::channel(DELIVERY_QUEUE);
                let deliver = Delivery {
                    target,
                    secret: secret.clone(),
                    counts: counts.clone(),
                    tls: tls.clone(),
                };
                tokio::spawn(deliver.run(rx, shutdown.clone()));
                tx
            })
            .collect();
        let (notices, rx) = mpsc::channel(NOTICE_QUEUE);
        let dispatcher = Dispatcher {
            queues,
            debounce,
            node,
            counts: counts.clone(),
            pending: HashMap::new(),
            sent: HashMap::new(),
        };
        tokio::spawn(dispatcher.run(rx, shutdown));
        Webhooks { notices, counts }
    }

    /// Reports something that happened; never waits.
    pub fn notify(&self, notice: Notice) {
        if self.notices.try_send(notice).is_err() {
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Debounces changes per document and hands events to every target's queue.
struct Dispatcher {
    queues: Vec<mpsc::Sender<Event>>,
    debounce: Duration,
    node: String,
    counts: Arc<Counts>,
    /// Documents changed since their last event: when the first change came, the version now.
    pending: HashMap<Arc<str>, (Instant, i64)>,
    /// The version each document's last `document.changed` carried.
    sent: HashMap<Arc<str>, i64>,
}

impl Dispatcher {
    async fn run(mut self, mut rx: mpsc::Receiver<Notice>, shutdown: CancellationToken) {
        loop {
            let due = self
                .pending
                .values()
                .map(|(at, _)| *at + self.debounce)
                .min();
            tokio::select! {
                notice = rx.recv() => match notice {
                    Some(notice) => self.take(notice),
                    None => return,
                },
                _ = sleep_until(due) => self.flush(Instant::now()),
                _ = shutdown.cancelled() => {
                    // What is due goes out now; deliveries in flight get their own grace.
                    self.flush(Instant::now() + self.debounce);
                    return;
                }
            }
        }
    }

    fn take(&mut self, notice: Notice) {
        match notice {
            Notice::Changed { doc, version } => {
                let entry = self.pending.entry(doc).or_insert((Instant::now(), version));
                entry.1 = entry.1.max(version);
            }
            Notice::Created { doc, name } => {
                let event = self.event("document.created", doc, |e| e.name = name);
                self.send(event);
            }
            Notice::Deleted { doc } => {
                // Changes still waiting go first, so the receiver sees them in order.
                if let Some((_, version)) = self.pending.remove(doc.as_str()) {
                    self.changed(Arc::from(doc.as_str()), version);
                }
                self.sent.remove(doc.as_str());
                let event = self.event("document.deleted", doc, |_| {});
                self.send(event);
            }
        }
    }

    /// Sends a `document.changed` for every document whose debounce ended by `now`.
    fn flush(&mut self, now: Instant) {
        let due: Vec<Arc<str>> = self
            .pending
            .iter()
            .filter(|(_, (at, _))| *at + self.debounce <= now)
            .map(|(doc, _)| doc.clone())
            .collect();
        for doc in due {
            if let Some((_, version)) = self.pending.remove(&doc) {
                self.changed(doc, version);
            }
        }
    }

    fn changed(&mut self, doc: Arc<str>, version: i64) {
        let previous = self.sent.insert(doc.clone(), version);
        if previous.is_some_and(|p| p >= version) {
            return;
        }
        let event = self.event("document.changed", doc.to_string(), |e| {
            e.version = Some(version);
            e.previous_version = previous;
        });
        self.send(event);
    }

    fn event(&self, kind: &'static str, doc: String, fill: impl FnOnce(&mut Event)) -> Event {
        let mut event = Event {
            event: kind,
            id: event_id(),
            document: doc,
            time: crate::api::rfc3339(crate::store::now_ms()),
            version: None,
            previous_version: None,
            name: None,
            node: self.node.clone(),
        };
        fill(&mut event);
        event
    }

    fn send(&self, event: Event) {
        for queue in &self.queues {
            if queue.try_send(event.clone()).is_err() {
                self.counts.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(event = event.event, doc = %event.document, "webhook queue full: event dropped");
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn event_id() -> String {
    let mut bytes = [0u8; 12];
    if getrandom::fill(&mut bytes).is_err() {
        // Unique enough for a delivery id when the OS has no randomness to give.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes.copy_from_slice(&nanos.to_le_bytes()[..12]);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `sha256=HEX`: the HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// One target's deliveries, in order.
struct Delivery {
    target: Target,
    secret: Option<Arc<str>>,
    counts: Arc<Counts>,
    tls: Option<tokio_rustls::TlsConnector>,
}

impl Delivery {
    async fn run(self, mut rx: mpsc::Receiver<Event>, shutdown: CancellationToken) {
        loop {
            let event = tokio::select! {
                event = rx.recv() => match event { Some(e) => e, None => return },
                _ = shutdown.cancelled() => return,
            };
            let body = serde_json::to_vec(&event).unwrap_or_default();
            let mut backoff = FIRST_BACKOFF;
            for attempt in 1..=ATTEMPTS {
                let result =
                    tokio::time::timeout(ATTEMPT_TIMEOUT, self.post(&event, &body, attempt)).await;
                let why = match result {
                    Ok(Ok(status)) if (200..300).contains(&status) => {
                        self.counts.delivered.fetch_add(1, Ordering::Relaxed);
                        break;
                    }
                    Ok(Ok(status)) => format!("answered {status}"),
                    Ok(Err(err)) => err,
                    Err(_) => format!("no answer within {} s", ATTEMPT_TIMEOUT.as_secs()),
                };
                if attempt == ATTEMPTS {
                    self.counts.failed.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(url = %self.target.uri, event = event.event, doc = %event.document, %why, "webhook not delivered after {ATTEMPTS} attempts; dropped");
                    break;
                }
                self.counts.retried.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(url = %self.target.uri, event = event.event, doc = %event.document, attempt, %why, "webhook delivery failed; retrying in {backoff:?}");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled() => return,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    /// One attempt: the status the receiver answered.
    async fn post(&self, event: &Event, body: &[u8], attempt: u32) -> Result<u16, String> {
        let t = &self.target;
        let tcp = tokio::net::TcpStream::connect((t.host.as_str(), t.port))
            .await
            .map_err(|e| format!("cannot connect to {}:{}: {e}", t.host, t.port))?;
        let _ = tcp.set_nodelay(true);
        let path = t.uri.path_and_query().map_or("/", |p| p.as_str());
        let host = match t.uri.port() {
            Some(port) => format!("{}:{port}", t.host),
            None => t.host.clone(),
        };
        let mut request = Request::post(path)
            .header("host", host)
            .header("content-type", "application/json")
            .header("user-agent", concat!("quire/", env!("CARGO_PKG_VERSION")))
            .header("quire-event", event.event)
            .header("quire-delivery", &event.id)
            .header("quire-delivery-attempt", attempt.to_string());
        if let Some(secret) = &self.secret {
            request = request.header("quire-signature", signature(secret, body));
        }
        let request = request
            .body(Body::from(body.to_vec()))
            .map_err(|e| e.to_string())?;
        if t.tls {
            let connector = self
                .tls
                .as_ref()
                .ok_or("no TLS roots could be loaded for https webhooks")?;
            let name = tokio_rustls::rustls::pki_types::ServerName::try_from(t.host.clone())
                .map_err(|e| format!("{}: {e}", t.host))?;
            let stream = connector
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS with {}: {e}", t.host))?;
            send(stream, request).await
        } else {
            send(tcp, request).await
        }
    }
}

async fn send<S>(io: S, request: Request<Body>) -> Result<u16, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    Ok(response.status().as_u16())
}

/// TLS for https webhooks, trusting the system's root certificates.
fn tls_connector() -> Option<tokio_rustls::TlsConnector> {
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    match rustls_native_certs::load_native_certs() {
        Ok(certs) => {
            roots.add_parsable_certificates(certs);
        }
        Err(err) => tracing::warn!(%err, "cannot read the system's root certificates"),
    }
    if roots.is_empty() {
        tracing::error!("no root certificates found: https webhooks cannot be delivered");
        return None;
    }
    // ring, which the build already has (async-nats); rustls now prefers aws-lc-rs for its
    // post-quantum key exchange, a large C build this one TLS client does not justify.
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Some(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_checked_at_start() {
        let t = Target::parse("http://127.0.0.1:9000/hook?x=1").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.tls), ("127.0.0.1", 9000, false));
        assert_eq!(t.uri.path_and_query().unwrap().as_str(), "/hook?x=1");
        let t = Target::parse("https://hooks.example.com/q").unwrap();
        assert_eq!((t.port, t.tls), (443, true));
        assert!(Target::parse("ftp://x/").is_err());
        assert!(Target::parse("/relative").is_err());
    }

    #[test]
    fn signatures_are_hmac_sha256_of_the_body() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn changes_are_debounced_per_document_and_carry_the_previous_version() {
        let (tx, mut rx) = mpsc::channel(16);
        let mut d = Dispatcher {
            queues: vec![tx],
            debounce: Duration::from_millis(500),
            node: "n".into(),
            counts: Arc::default(),
            pending: HashMap::new(),
            sent: HashMap::new(),
        };
        let doc: Arc<str> = Arc::from("d");
        for v in 1..=5 {
            d.take(Notice::Changed {
                doc: doc.clone(),
                version: v,
            });
        }
        d.flush(Instant::now());
        assert!(rx.try_recv().is_err(), "sent before the debounce ended");
        d.flush(Instant::now() + Duration::from_millis(500));
        let e = rx.try_recv().unwrap();
        assert_eq!(
            (e.event, e.version, e.previous_version),
            ("document.changed", Some(5), None)
        );
        d.take(Notice::Changed {
            doc: doc.clone(),
            version: 7,
        });
        d.take(Notice::Deleted { doc: "d".into() });
        let e = rx.try_recv().unwrap();
        assert_eq!((e.version, e.previous_version), (Some(7), Some(5)));
        assert_eq!(rx.try_recv().unwrap().event, "document.deleted");
    }
}
