//! The open documents: a map from document id to its actor's inbox, opening actors on demand.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};

use crate::context::Context;
use crate::document::{
    Actor, ApiRequest, CloseReason, Command, ConnId, DocError, PeerMessage, Reply,
};
use crate::protocol::close;
use crate::store::OpRow;

/// Commands queued for one document before senders wait (back-pressure on the sockets).
const INBOX: usize = 1024;

/// How long a request for a new document waits for an idle one to unload and make room when
/// `--max-documents` are open.
const ROOM_WAIT: Duration = Duration::from_secs(2);

/// One open document: its actor's generation (telling a stopped actor's entry from its
/// successor's), inbox, and idle mark.
struct Entry {
    generation: u64,
    inbox: mpsc::Sender<Command>,
    marks: Arc<Marks>,
}

/// What an actor publishes for its registry after every round.
#[derive(Debug)]
pub(crate) struct Marks {
    /// 0 while it has connections or uncommitted updates, else when it became idle
    /// ([`idle_mark`]): what `--max-documents` evicts first.
    pub idle: AtomicU64,
    /// The version it holds (-1 until loaded), for the tail check.
    pub version: AtomicI64,
}

type OpenMap = HashMap<Arc<str>, Entry>;

/// An idle mark for a document idle since `since`: milliseconds since the process's first
/// mark, plus one so that 0 stays "busy".
pub(crate) fn idle_mark(since: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    // `since` before the first mark saturates to 1: still idle, and idlest.
    let epoch = *EPOCH.get_or_init(Instant::now);
    since.saturating_duration_since(epoch).as_millis() as u64 + 1
}

/// Why no actor inbox was handed out.
enum NoRoom {
    /// `--max-documents` are open and an idle one was asked to unload: retry shortly.
    Evicting,
    /// Full of documents in use: the refusal to give.
    Full(String),
}

pub struct Documents {
    ctx: Arc<Context>,
    open: Mutex<OpenMap>,
    next_generation: AtomicU64,
}

impl Documents {
    pub fn new(ctx: Arc<Context>) -> Arc<Documents> {
        Arc::new(Documents {
            ctx,
            open: Mutex::new(HashMap::new()),
            next_generation: AtomicU64::new(1),
        })
    }

    /// Number of documents in memory.
    pub fn open_count(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, OpenMap> {
        // A panic while holding this lock cannot leave the map inconsistent (single inserts and
        // removes), so a poisoned lock is still usable.
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True if `id` is in memory (so it exists and is not deleted).
    pub fn is_open(&self, id: &str) -> bool {
        self.lock().contains_key(id)
    }

    /// The inbox of `id`'s actor, starting the actor if the document is not open; a new actor
    /// creates the document in the store if `create` is set.
    /// At `--max-documents`, the one idle longest asks to unload (so opening one more does not
    /// have to wait for the idle timeout); `NoRoom::Full` when none is idle.
    fn inbox_now(
        self: &Arc<Self>,
        id: &str,
        create: bool,
    ) -> Result<(u64, mpsc::Sender<Command>), NoRoom> {
        let mut open = self.lock();
        if let Some(entry) = open.get(id) {
            return Ok((entry.generation, entry.inbox.clone()));
        }
        let max = self.ctx.config.max_documents;
        let over_memory = self.over_memory();
        if (max > 0 && open.len() >= max) || over_memory {
            let idlest = open
                .values()
                .map(|e| (e.marks.idle.load(Ordering::Relaxed), e))
                .filter(|(mark, _)| *mark > 0)
                .min_by_key(|(mark, _)| *mark);
            if let Some((_, entry)) = idlest {
                // Full inbox: it is not idle after all, and its next round says so.
                let _ = entry.inbox.try_send(Command::Evict);
                return Err(NoRoom::Evicting);
            }
            return Err(NoRoom::Full(self.no_room()));
        }
        let (tx, rx) = mpsc::channel(INBOX);
        let generation = self.next_generation.fetch_add(1, Ordering::Relaxed);
        let id: Arc<str> = id.into();
        let marks = Arc::new(Marks {
            idle: AtomicU64::new(0),
            version: AtomicI64::new(-1),
        });
        let actor = Actor::new(
            id.clone(),
            generation,
            create,
            self.ctx.clone(),
            Arc::downgrade(self),
            rx,
            marks.clone(),
        );
        self.ctx.tracker.spawn(actor.run());
        open.insert(
            id,
            Entry {
                generation,
                inbox: tx.clone(),
                marks,
            },
        );
        Ok((generation, tx))
    }

    /// [`Self::inbox_now`], waiting up to [`ROOM_WAIT`] while idle documents unload to make
    /// room; the refusal to give when none does.
    async fn inbox(
        self: &Arc<Self>,
        id: &str,
        create: bool,
    ) -> Result<(u64, mpsc::Sender<Command>), String> {
        let deadline = tokio::time::Instant::now() + ROOM_WAIT;
        loop {
            match self.inbox_now(id, create) {
                Ok(found) => return Ok(found),
                Err(NoRoom::Evicting) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                Err(NoRoom::Evicting) => {
                    self.count_no_room();
                    return Err(self.no_room());
                }
                Err(NoRoom::Full(why)) => {
                    self.count_no_room();
                    return Err(why);
                }
            }
        }
    }

    /// Past `--max-memory-bytes` (the live heap, see `memory`).
    fn over_memory(&self) -> bool {
        let budget = self.ctx.config.max_memory_bytes;
        budget > 0 && crate::memory::heap_bytes() as u64 > budget
    }

    /// Why one more document cannot open now.
    fn no_room(&self) -> String {
        if self.over_memory() {
            format!("the server holds its memory budget of {} bytes (--max-memory-bytes) with documents in use; retry when one closes, or raise --max-memory-bytes", self.ctx.config.max_memory_bytes)
        } else {
            too_many(self.ctx.config.max_documents)
        }
    }

    /// Counts a document refused for room and says why.
    pub fn refuse_one_more(&self) -> String {
        self.count_no_room();
        self.no_room()
    }

    fn count_no_room(&self) {
        let limit = if self.over_memory() {
            crate::metrics::Limit::Memory
        } else {
            crate::metrics::Limit::Documents
        };
        crate::metrics::get().limit_hit(limit);
    }

    /// True if `--max-documents` are open or the memory budget is spent, and no open document
    /// is idle, so one more cannot open.
    pub fn at_capacity(&self) -> bool {
        let max = self.ctx.config.max_documents;
        let over_memory = self.over_memory();
        let open = self.lock();
        ((max > 0 && open.len() >= max) || over_memory)
            && open
                .values()
                .all(|e| e.marks.idle.load(Ordering::Relaxed) == 0)
    }

    /// Attaches a connection to a document, waiting until its stored state has loaded. Returns
    /// the actor's inbox for the connection's messages. `Ok(None)` means the actor was
    /// unloading at that moment: make new channels and call again.
    pub async fn join(
        self: &Arc<Self>,
        id: &str,
        conn: ConnId,
        out: mpsc::Sender<Bytes>,
        kick: oneshot::Sender<CloseReason>,
        author: Option<Arc<str>>,
    ) -> Result<Option<mpsc::Sender<Command>>, CloseReason> {
        if self.ctx.shutdown.is_cancelled() {
            return Err(CloseReason::new(close::GOING_AWAY, "server shutting down"));
        }
        let (generation, inbox) = self
            .inbox(id, true)
            .await
            .map_err(|why| CloseReason::new(close::TRY_AGAIN_LATER, why))?;
        let (ack_tx, ack_rx) = oneshot::channel();
        if inbox
            .send(Command::Join {
                conn,
                out,
                kick,
                author,
                ack: ack_tx,
            })
            .await
            .is_err()
        {
            self.remove(id, generation);
            return Ok(None);
        }
        tokio::select! {
            ack = ack_rx => match ack {
                Ok(Ok(())) => Ok(Some(inbox)),
                Ok(Err(reason)) => Err(reason),
                Err(_) => {
                    self.remove(id, generation);
                    Ok(None)
                }
            },
            _ = self.ctx.shutdown.cancelled() => {
                Err(CloseReason::new(close::GOING_AWAY, "server shutting down"))
            }
        }
    }

    /// Sends a REST request to `id`'s actor (loading the document, never creating it) and waits
    /// for the answer. `make` builds the request around its reply channel; it is called again
    /// if the actor was unloading and the request has to go to its successor.
    pub async fn request<T>(
        self: &Arc<Self>,
        id: &str,
        make: impl Fn(Reply<T>) -> ApiRequest,
    ) -> Result<T, DocError> {
        for _ in 0..5 {
            if self.ctx.shutdown.is_cancelled() {
                break;
            }
            let (generation, inbox) = self.inbox(id, false).await.map_err(DocError::Unavailable)?;
            let (tx, rx) = oneshot::channel();
            if inbox.send(Command::Api(make(tx))).await.is_err() {
                self.remove(id, generation);
                continue;
            }
            tokio::select! {
                answer = rx => match answer {
                    Ok(result) => return result,
                    // Dropped unanswered: the actor unloaded with the request still queued.
                    Err(_) => self.remove(id, generation),
                },
                _ = self.ctx.shutdown.cancelled() => break,
            }
        }
        Err(DocError::Unavailable(if self.ctx.shutdown.is_cancelled() {
            "server shutting down".into()
        } else {
            "the document is busy reloading; retry".into()
        }))
    }

    /// Forgets `id` if it still maps to the actor of `generation`.
    pub(crate) fn remove(&self, id: &str, generation: u64) {
        let mut open = self.lock();
        if open.get(id).is_some_and(|e| e.generation == generation) {
            open.remove(id);
        }
    }

    /// Forgets `id` only if its inbox is empty, atomically with lookups, so no join can slip
    /// in between the check and the removal.
    pub(crate) fn remove_if_idle(
        &self,
        id: &str,
        generation: u64,
        inbox: &mpsc::Receiver<Command>,
    ) -> bool {
        let mut open = self.lock();
        if !inbox.is_empty() {
            return false;
        }
        if open.get(id).is_some_and(|e| e.generation == generation) {
            open.remove(id);
        }
        true
    }
}

impl Documents {
    /// Hands a bus message to `doc`'s actor if it is open here (dropped when its inbox is full:
    /// the tail check heals whatever a lost hint would have carried).
    fn to_peer(&self, doc: &str, message: PeerMessage) {
        let inbox = self.lock().get(doc).map(|e| e.inbox.clone());
        if let Some(inbox) = inbox {
            let _ = inbox.try_send(Command::Peer(message));
        }
    }

    /// Another server committed rows to `doc` up to `upto` (`rows`: the newest, if sent).
    /// `committed_at`: when, in Unix milliseconds on that server's clock.
    pub fn peer_rows(&self, doc: &str, upto: i64, rows: Vec<OpRow>, committed_at: u64) {
        self.to_peer(
            doc,
            PeerMessage::Rows {
                upto,
                rows,
                committed_at,
            },
        );
    }

    /// A presence change from one of `node`'s clients of `doc`.
    pub fn peer_awareness(&self, doc: &str, node: &str, update: Vec<u8>) {
        use yrs::updates::decoder::Decode;
        let Ok(update) = yrs::sync::AwarenessUpdate::decode_v1(&update) else {
            return;
        };
        self.to_peer(
            doc,
            PeerMessage::Awareness {
                node: node.into(),
                update,
            },
        );
    }

    /// `node` stopped or went silent: every open document drops its clients' presence.
    pub fn node_gone(&self, node: &str) {
        let node: Arc<str> = node.into();
        let inboxes: Vec<_> = self.lock().values().map(|e| e.inbox.clone()).collect();
        for inbox in inboxes {
            let _ = inbox.try_send(Command::Peer(PeerMessage::NodeGone { node: node.clone() }));
        }
    }

    /// Every `interval`, reads the stored versions of the open documents and asks each actor
    /// holding an older one (or a document deleted meanwhile) to catch up: how rows other servers
    /// sharing the database committed reach this server's clients. Runs until shutdown.
    /// While the bus is connected it carries changes and this runs ten times less often.
    pub async fn tail_check(self: Arc<Self>, interval: Duration) {
        let mut skipped = 0;
        loop {
            tokio::select! {
                _ = self.ctx.shutdown.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            // Looked at every interval, so a bus that goes away is noticed within one.
            let bus_up = self.ctx.bus.as_ref().is_some_and(|bus| bus.is_connected());
            if bus_up && skipped < 9 {
                skipped += 1;
                continue;
            }
            skipped = 0;
            let held: Vec<(Arc<str>, i64, mpsc::Sender<Command>)> = self
                .lock()
                .iter()
                .filter_map(|(id, e)| {
                    let version = e.marks.version.load(Ordering::Relaxed);
                    (version >= 0).then(|| (id.clone(), version, e.inbox.clone()))
                })
                .collect();
            if held.is_empty() {
                continue;
            }
            let ids: Vec<Arc<str>> = held.iter().map(|(id, _, _)| id.clone()).collect();
            let Ok(stored) = self.ctx.store.tails(&ids).await else {
                // The store is away: commits retry, and the next tick looks again.
                continue;
            };
            let stored: HashMap<String, i64> = stored.into_iter().collect();
            for (id, version, inbox) in held {
                let behind = stored.get(&*id).is_none_or(|&v| v > version);
                if behind {
                    crate::metrics::get()
                        .tail_catch_ups
                        .fetch_add(1, Ordering::Relaxed);
                    // A full inbox has a round coming, which catches up anyway when it serves.
                    let _ = inbox.try_send(Command::CatchUp);
                }
            }
        }
    }
}

/// The refusal when `--max-documents` documents are open and none could unload.
pub fn too_many(max: usize) -> String {
    format!("the server holds its limit of {max} open documents (--max-documents), all in use; retry when one closes, or raise --max-documents")
}
