//! Replays a concurrent editing trace (`shared/traces/concurrent`, the clownschool format)
//! through a quire server with one real WebSocket client per agent. Each agent sends its
//! transactions in order, each only once it has received (relayed by the server) every
//! transaction its `parents` name, so the server sees the causality the trace recorded; the
//! server's final text must equal `endContent`. The updates come from [`crate::trace`]: each
//! typed on exactly its parents' state.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::Message;
use yrs::sync::{Message as YMessage, SyncMessage};

use crate::client::{connect_ws, update_frame};
use crate::trace::{load_trace, trace_updates};

/// What a replay did.
#[derive(Debug)]
pub struct ReplayReport {
    pub doc: String,
    pub agents: usize,
    pub txns: usize,
    pub final_text: String,
    pub end_content: String,
    pub elapsed: Duration,
}

impl ReplayReport {
    pub fn matches(&self) -> bool {
        self.final_text == self.end_content
    }
}

/// Replays the trace at `path` into a new document `doc` on the server at `http_addr`
/// (`host:port`; WebSockets at `/ws/{doc}`, the text read through the REST API).
pub async fn replay_concurrent(
    path: &std::path::Path,
    http_addr: std::net::SocketAddr,
    doc: &str,
    timeout: Duration,
) -> Result<ReplayReport, String> {
    let started = Instant::now();
    let trace = load_trace(path)?;
    let updates = trace_updates(&trace)?;
    let agents = updates.num_agents;
    let txns = updates.updates.len();
    let index: Arc<HashMap<Vec<u8>, usize>> = Arc::new(
        updates
            .updates
            .iter()
            .map(|u| (u.update.clone(), u.txn))
            .collect(),
    );
    // Per agent: transactions it has (received or sent), and a wake-up for its writer.
    // A transaction that changes nothing (an empty update) is not relayed by the server:
    // every agent counts it as had from the start.
    let empty: HashSet<usize> = updates
        .updates
        .iter()
        .filter(|u| {
            use yrs::updates::decoder::Decode;
            yrs::Update::decode_v1(&u.update).is_ok_and(|d| d.is_empty())
        })
        .map(|u| u.txn)
        .collect();
    let has: Arc<Vec<Mutex<HashSet<usize>>>> =
        Arc::new((0..agents).map(|_| Mutex::new(empty.clone())).collect());
    let wake: Arc<Vec<Notify>> = Arc::new((0..agents).map(|_| Notify::new()).collect());
    // For a timeout's report: what each agent's writer waits for, and how its socket ended.
    let waiting: Arc<Vec<Mutex<String>>> =
        Arc::new((0..agents).map(|_| Mutex::new(String::new())).collect());
    let ended: Arc<Vec<Mutex<String>>> =
        Arc::new((0..agents).map(|_| Mutex::new(String::new())).collect());
    let report = |waiting: &[Mutex<String>], ended: &[Mutex<String>]| -> String {
        waiting
            .iter()
            .zip(ended)
            .map(|(w, e)| format!("{} {}", w.lock().unwrap(), e.lock().unwrap()))
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let url = format!("ws://{http_addr}/ws/{doc}");
    let mut tasks = Vec::new();
    // Nobody types before every agent has its (empty) initial sync: the server's sync reply
    // is its merged state, which matches no single transaction, so an agent joining after
    // the first edits would never count them as received (the stall seen under CI load).
    let (start, started_rx) = tokio::sync::watch::channel(false);
    let mut synced = Vec::new();
    for agent in 0..agents {
        let ws = connect_ws(&url)
            .await
            .map_err(|e| format!("agent {agent} cannot connect to {url}: {e}"))?;
        let (mut sink, mut stream) = ws.split();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Vec<u8>>();
        // Our own SyncStep1 (we hold nothing) asks for the server's state: its SyncStep2
        // tells us the handshake is done.
        let _ = tx.send(quire_wire::sync_step1(&yrs::StateVector::default()).into());
        tokio::spawn(async move {
            while let Some(frame) = rx.recv().await {
                if sink.send(Message::Binary(frame.into())).await.is_err() {
                    break;
                }
            }
        });
        {
            let (index, has, wake, tx) = (index.clone(), has.clone(), wake.clone(), tx.clone());
            let ended = ended.clone();
            let (synced_tx, synced_rx) = tokio::sync::oneshot::channel::<()>();
            synced.push(synced_rx);
            let mut synced_tx = Some(synced_tx);
            tokio::spawn(async move {
                let mut unknown = 0usize;
                let why = loop {
                    let msg = match stream.next().await {
                        Some(Ok(msg)) => msg,
                        Some(Err(e)) => break format!("socket error: {e}"),
                        None => break "socket closed by the server".to_string(),
                    };
                    let Message::Binary(frame) = msg else {
                        continue;
                    };
                    for msg in quire_wire::decode_messages(&frame).unwrap_or_default() {
                        match msg {
                            YMessage::Sync(SyncMessage::SyncStep1(_)) => {
                                // We hold nothing the server lacks: an empty update.
                                let _ = tx.send(quire_wire::sync_step2(vec![0, 0]).into());
                            }
                            YMessage::Sync(SyncMessage::SyncStep2(_)) if synced_tx.is_some() => {
                                let _ = synced_tx.take().map(|s| s.send(()));
                            }
                            YMessage::Sync(SyncMessage::Update(u) | SyncMessage::SyncStep2(u)) => {
                                if let Some(&txn) = index.get(&u) {
                                    has[agent].lock().unwrap().insert(txn);
                                    wake[agent].notify_one();
                                } else if !u.is_empty() && u != [0, 0] {
                                    unknown += 1;
                                }
                            }
                            _ => {}
                        }
                    }
                };
                *ended[agent].lock().unwrap() =
                    format!("({why}; {unknown} updates received that are no trace txn)");
            });
        }
        let mine: Vec<(usize, Vec<usize>, Vec<u8>)> = updates
            .updates
            .iter()
            .filter(|u| u.agent == agent)
            .map(|u| {
                let parents = trace.txns[u.txn].parents.clone().unwrap_or_else(|| {
                    if u.txn == 0 {
                        vec![]
                    } else {
                        vec![u.txn - 1]
                    }
                });
                (u.txn, parents, u.update.clone())
            })
            .collect();
        let (has, wake, waiting) = (has.clone(), wake.clone(), waiting.clone());
        let mut started = started_rx.clone();
        tasks.push(tokio::spawn(async move {
            if started.wait_for(|s| *s).await.is_err() {
                return Err(format!("agent {agent}: the replay stopped before it began"));
            }
            for (txn, parents, update) in mine {
                loop {
                    let missing: Vec<usize> = {
                        let h = has[agent].lock().unwrap();
                        parents.iter().filter(|p| !h.contains(p)).copied().collect()
                    };
                    if missing.is_empty() {
                        break;
                    }
                    *waiting[agent].lock().unwrap() =
                        format!("agent {agent} waits to send txn {txn} for {missing:?}");
                    // Woken on each received transaction; the timeout only guards a lost wake.
                    let _ =
                        tokio::time::timeout(Duration::from_millis(200), wake[agent].notified())
                            .await;
                }
                has[agent].lock().unwrap().insert(txn);
                if tx.send(update_frame(&update)).is_err() {
                    return Err(format!("agent {agent}: socket closed"));
                }
            }
            *waiting[agent].lock().unwrap() = format!("agent {agent} sent all its txns");
            Ok(())
        }));
    }
    let deadline = Instant::now() + timeout;
    for (agent, s) in synced.into_iter().enumerate() {
        let left = deadline.saturating_duration_since(Instant::now());
        if !matches!(tokio::time::timeout(left, s).await, Ok(Ok(()))) {
            return Err(format!(
                "agent {agent} got no initial sync from the server within {timeout:?}"
            ));
        }
    }
    let _ = start.send(true);
    for t in tasks {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, t).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => return Err(e),
            Ok(Err(e)) => return Err(format!("agent task failed: {e}")),
            Err(_) => {
                return Err(format!(
                    "replay did not finish within {timeout:?}: {}",
                    report(&waiting, &ended)
                ));
            }
        }
    }
    // Every agent has every transaction: then the server has committed them all.
    loop {
        let done = has.iter().all(|h| h.lock().unwrap().len() == txns);
        if done {
            break;
        }
        if Instant::now() > deadline {
            let missing: Vec<Vec<usize>> = has
                .iter()
                .map(|h| {
                    let h = h.lock().unwrap();
                    (0..txns).filter(|t| !h.contains(t)).take(10).collect()
                })
                .collect();
            return Err(format!(
                "after {timeout:?} agents still lack (first 10 each) {missing:?}: {}",
                report(&waiting, &ended)
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = crate::http::get(http_addr, &format!("/api/documents/{doc}/text")).await?;
    if r.status != 200 {
        return Err(format!("GET text: {r:?}"));
    }
    Ok(ReplayReport {
        doc: doc.to_string(),
        agents,
        txns,
        final_text: r.body,
        end_content: updates.end_content,
        elapsed: started.elapsed(),
    })
}
