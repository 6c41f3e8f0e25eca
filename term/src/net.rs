//! The WebSocket to a quire server, kept open: connect, pass frames both ways, notice when the
//! server goes away, reconnect with backoff.
//!
//! It runs on a thread of its own (a single-threaded tokio runtime) and knows nothing of Yjs:
//! every binary frame received becomes a [`NetEvent::Frame`] for the editor's loop, and the
//! editor writes frames through the sender it gets with [`NetEvent::Connected`] — a new one per
//! connection, so nothing meant for a dead socket reaches the next one (the sync handshake on
//! reconnect carries whatever was missed, as y-websocket does).
//!
//! Liveness: a WebSocket ping every 10 s; a connection on which nothing arrived for 30 s counts as
//! dead (y-websocket's rule). Backoff between attempts: 100 ms doubling up to 3 s, back to the
//! start once a connection got an answer. What retrying cannot fix stops it: the upgrade refused
//! with 401, 403 or 404 (no or a bad token, another document's token, a deleted document), and
//! the close codes 4404 (document deleted) and 4401 (token expired).

use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use quire_wire::close;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const PING_EVERY: Duration = Duration::from_secs(10);
const SILENCE_LIMIT: Duration = Duration::from_secs(30);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(3);
/// Close codes after which reconnecting is pointless: document deleted, token expired.
const CLOSE_FINAL: [u16; 2] = [close::DOCUMENT_DELETED, close::TOKEN_EXPIRED];

/// What the connection tells the editor.
#[derive(Debug)]
pub enum NetEvent {
    /// An attempt to connect started (1 = the first since the last good connection).
    Connecting { attempt: u32 },
    /// The socket is open; frames sent here go out on it, one message per frame.
    Connected(mpsc::UnboundedSender<Vec<u8>>),
    /// A binary frame from the server.
    Frame(Vec<u8>),
    /// The connection failed or ended; the next attempt starts after `retry_in`.
    Disconnected { reason: String, retry_in: Duration },
    /// The server refused the document for good (deleted); no more attempts.
    Refused { reason: String },
}

/// The connection thread; stopping it flushes what was queued and closes the socket.
pub struct Net {
    stop: Option<oneshot::Sender<()>>,
    done: std_mpsc::Receiver<()>,
    thread: Option<JoinHandle<()>>,
}

impl Net {
    /// Starts connecting to `url` (ws://…) and reports through `emit`.
    pub fn start(url: String, emit: Box<dyn Fn(NetEvent) + Send>) -> std::io::Result<Net> {
        let (stop, stop_rx) = oneshot::channel();
        let (done_tx, done) = std_mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("quire-net".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a tokio runtime");
                rt.block_on(run(url, emit, stop_rx));
                let _ = done_tx.send(());
            })?;
        Ok(Net {
            stop: Some(stop),
            done,
            thread: Some(thread),
        })
    }

    /// Sends what is queued, closes the socket and ends the thread, waiting at most `limit`.
    pub fn stop(mut self, limit: Duration) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if self.done.recv_timeout(limit).is_ok() {
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }
}

fn backoff(failures: u32) -> Duration {
    let d = FIRST_BACKOFF.saturating_mul(1 << failures.min(10));
    d.min(MAX_BACKOFF)
}

enum Ended {
    Stopped,
    Lost {
        reason: String,
        code: Option<u16>,
        answered: bool,
    },
}

async fn run(url: String, emit: Box<dyn Fn(NetEvent) + Send>, mut stop: oneshot::Receiver<()>) {
    let mut failures = 0u32;
    loop {
        emit(NetEvent::Connecting {
            attempt: failures + 1,
        });
        let attempt = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio_tungstenite::connect_async(url.as_str()),
        );
        let reason = tokio::select! {
            _ = &mut stop => return,
            r = attempt => match r {
                Ok(Ok((ws, _))) => {
                    let (tx, rx) = mpsc::unbounded_channel();
                    emit(NetEvent::Connected(tx));
                    match connection(ws, rx, &*emit, &mut stop).await {
                        Ended::Stopped => return,
                        Ended::Lost { reason, code, answered } => {
                            if code.is_some_and(|c| CLOSE_FINAL.contains(&c)) {
                                emit(NetEvent::Refused { reason });
                                return;
                            }
                            if answered {
                                failures = 0;
                            }
                            reason
                        }
                    }
                }
                Ok(Err(tungstenite::Error::Http(resp)))
                    if matches!(resp.status().as_u16(), 401 | 403 | 404) =>
                {
                    let body = resp
                        .body()
                        .as_deref()
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                        .unwrap_or_default();
                    let detail = serde_json::from_str::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v["detail"].as_str().map(str::to_string))
                        .unwrap_or(body);
                    emit(NetEvent::Refused {
                        reason: format!("HTTP {}: {}", resp.status(), detail.trim()),
                    });
                    return;
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no answer within {} s", CONNECT_TIMEOUT.as_secs()),
            }
        };
        let retry_in = backoff(failures);
        failures = failures.saturating_add(1);
        emit(NetEvent::Disconnected { reason, retry_in });
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(retry_in) => {}
        }
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connection(
    ws: Ws,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    emit: &(dyn Fn(NetEvent) + Send),
    stop: &mut oneshot::Receiver<()>,
) -> Ended {
    let (mut sink, mut stream) = ws.split();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    let mut last_heard = Instant::now();
    let mut answered = false;
    let mut close: Option<(u16, String)> = None;
    let mut editor_gone = false;
    let lost = |reason: String, close: Option<(u16, String)>, answered| {
        let (code, reason) = match close {
            Some((code, why)) if why.is_empty() => {
                (Some(code), format!("closed by the server ({code})"))
            }
            Some((code, why)) => (Some(code), format!("closed by the server ({code} {why})")),
            None => (None, reason),
        };
        Ended::Lost {
            reason,
            code,
            answered,
        }
    };
    loop {
        tokio::select! {
            _ = &mut *stop => {
                while let Ok(frame) = rx.try_recv() {
                    let _ = sink.feed(Message::Binary(frame.into())).await;
                }
                let _ = sink
                    .send(Message::Close(Some(CloseFrame {
                        code: CloseCode::Normal,
                        reason: "".into(),
                    })))
                    .await;
                let _ = tokio::time::timeout(Duration::from_millis(500), async {
                    while let Some(Ok(_)) = stream.next().await {}
                })
                .await;
                return Ended::Stopped;
            }
            msg = stream.next() => match msg {
                Some(Ok(Message::Binary(bytes))) => {
                    last_heard = Instant::now();
                    answered = true;
                    emit(NetEvent::Frame(bytes.to_vec()));
                }
                Some(Ok(Message::Close(frame))) => {
                    close = Some(frame.map_or((1005, String::new()), |f| {
                        (u16::from(f.code), f.reason.to_string())
                    }));
                }
                Some(Ok(_)) => last_heard = Instant::now(),
                Some(Err(e)) => return lost(e.to_string(), close, answered),
                None => return lost("connection closed".into(), close, answered),
            },
            out = rx.recv(), if !editor_gone => match out {
                Some(frame) => {
                    if let Err(e) = sink.send(Message::Binary(frame.into())).await {
                        return lost(e.to_string(), close, answered);
                    }
                }
                None => editor_gone = true,
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > SILENCE_LIMIT {
                    return lost(format!("nothing heard for {} s", SILENCE_LIMIT.as_secs()), None, answered);
                }
                if let Err(e) = sink.send(Message::Ping(Vec::new().into())).await {
                    return lost(e.to_string(), close, answered);
                }
            }
        }
    }
}

/// The WebSocket URL of document `doc` on the server at `server`:
/// - `ws://host:port/ws` (y-websocket's server URL) → `ws://host:port/ws/DOC`;
/// - `http://host:port` or `ws://host:port` (any path not ending in `/ws`) → `…/ws/DOC`.
///
/// A query string (`?token=…`) is kept. `https://` and `wss://` are refused: this build has no
/// TLS.
pub fn doc_url(server: &str, doc: &str) -> Result<String, String> {
    let (scheme, rest) = split_scheme(server)?;
    let (rest, query) = split_query(rest);
    let rest = rest.trim_end_matches('/');
    if doc.is_empty() {
        return Err("the document id is empty".into());
    }
    if rest.ends_with("/ws") {
        Ok(format!("{scheme}://{rest}/{doc}{query}"))
    } else {
        Ok(format!("{scheme}://{rest}/ws/{doc}{query}"))
    }
}

/// Splits a document address into its WebSocket URL and document id:
/// `http://host/DOC`, `http://host/d/DOC` (the browser editor's address), `ws://host/ws/DOC`,
/// each with an optional query string (`?token=…`), which is kept.
pub fn split_doc_url(url: &str) -> Result<(String, String), String> {
    let (scheme, rest) = split_scheme(url)?;
    let (rest, query) = split_query(rest);
    let rest = rest.trim_end_matches('/');
    let (host_path, doc) = rest.rsplit_once('/').ok_or_else(|| {
        format!("{url} names no document: use URL/DOC, e.g. http://127.0.0.1:8080/notes")
    })?;
    if doc.is_empty() {
        return Err(format!("{url} names no document"));
    }
    let base = host_path
        .strip_suffix("/d")
        .or_else(|| host_path.strip_suffix("/ws"))
        .unwrap_or(host_path);
    Ok((
        format!("{scheme}://{base}/ws/{doc}{query}"),
        doc.to_string(),
    ))
}

/// Adds `token=TOKEN` to `url`'s query string.
pub fn with_token(url: &str, token: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}token={token}")
}

/// `("host/path", "?query")`; the query is empty when there is none.
fn split_query(rest: &str) -> (&str, &str) {
    match rest.find('?') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    }
}

fn split_scheme(url: &str) -> Result<(&'static str, &str), String> {
    if let Some(rest) = url.strip_prefix("http://") {
        Ok(("ws", rest))
    } else if let Some(rest) = url.strip_prefix("ws://") {
        Ok(("ws", rest))
    } else if url.starts_with("https://") || url.starts_with("wss://") {
        Err(format!(
            "{url}: TLS (https/wss) is not supported by this build; use http:// or ws://"
        ))
    } else {
        Err(format!("{url}: expected an http:// or ws:// URL"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            doc_url("http://127.0.0.1:8080", "notes").unwrap(),
            "ws://127.0.0.1:8080/ws/notes"
        );
        assert_eq!(doc_url("ws://h:1/ws/", "a.b").unwrap(), "ws://h:1/ws/a.b");
        assert_eq!(
            split_doc_url("http://127.0.0.1:8080/notes").unwrap(),
            (
                "ws://127.0.0.1:8080/ws/notes".to_string(),
                "notes".to_string()
            )
        );
        assert_eq!(
            split_doc_url("http://h/d/x1").unwrap(),
            ("ws://h/ws/x1".to_string(), "x1".to_string())
        );
        assert_eq!(
            split_doc_url("ws://h:9/ws/x1").unwrap(),
            ("ws://h:9/ws/x1".to_string(), "x1".to_string())
        );
        assert_eq!(
            split_doc_url("http://h:1/d/x1?token=abc.def").unwrap(),
            ("ws://h:1/ws/x1?token=abc.def".to_string(), "x1".to_string())
        );
        assert_eq!(
            with_token(&doc_url("http://h:1", "x").unwrap(), "t"),
            "ws://h:1/ws/x?token=t"
        );
        assert!(split_doc_url("http://h").is_err());
        assert!(split_doc_url("https://h/x").is_err());
        assert_eq!(backoff(0), FIRST_BACKOFF);
        assert_eq!(backoff(30), MAX_BACKOFF);
    }
}
