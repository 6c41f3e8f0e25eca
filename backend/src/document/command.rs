//! What connections and the REST API send to a document, and what it answers.

use bytes::Bytes;
use editor_core::search::Searcher;
use tokio::sync::{mpsc, oneshot};

use std::sync::Arc;

use yrs::sync::AwarenessUpdate;

use crate::edit::{Edit, EditError};
use crate::protocol::Incoming;
use crate::store::OpRow;

/// Identifies a connection for the lifetime of the process.
pub type ConnId = u64;

/// Why a connection is being closed: a WebSocket close code and a human-readable reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReason {
    pub code: u16,
    pub reason: String,
}

impl CloseReason {
    pub fn new(code: u16, reason: impl Into<String>) -> CloseReason {
        CloseReason {
            code,
            reason: reason.into(),
        }
    }
}

/// What connections and the REST API send to a document actor.
pub enum Command {
    /// Attach a connection. `ack` is answered once the document's stored state is loaded and the
    /// initial SyncStep1 and awareness are queued, or with the close to send when the document
    /// was deleted; a dropped `ack` means "retry the join".
    Join {
        conn: ConnId,
        out: mpsc::Sender<Bytes>,
        kick: oneshot::Sender<CloseReason>,
        /// Its token's subject, which names its rows.
        author: Option<Arc<str>>,
        ack: oneshot::Sender<Result<(), CloseReason>>,
    },
    Leave {
        conn: ConnId,
    },
    Messages {
        conn: ConnId,
        msgs: Vec<Incoming>,
    },
    /// A REST request; its reply is sent after the round's commit, so nothing a REST client
    /// reads or is told it wrote can be lost.
    Api(ApiRequest),
    /// `--max-documents` are open and another is wanted: unload now if still idle.
    Evict,
    /// Another server committed rows to this document (or deleted it): read them.
    CatchUp,
    /// Something another server said on the bus.
    Peer(PeerMessage),
}

/// Where a REST change comes from: its op-log row's origin (`rest:…`) and author (the token's
/// subject, when there is one).
#[derive(Debug, Clone)]
pub struct Source {
    pub origin: &'static str,
    pub author: Option<Arc<str>>,
}

impl From<&'static str> for Source {
    fn from(origin: &'static str) -> Source {
        Source {
            origin,
            author: None,
        }
    }
}

/// The answer to an [`ApiRequest`].
pub type Reply<T> = oneshot::Sender<Result<T, DocError>>;

/// What the REST API asks of a document.
pub enum ApiRequest {
    /// The text; at `version` if given and current (else `Stale`: read it from the op log).
    Text {
        version: Option<i64>,
        reply: Reply<TextAt>,
    },
    /// Applies edits made on `version` (default: current). An older version is answered with
    /// `Stale`: the caller applies the edits on that version and sends the result as `Update`.
    Edits {
        version: Option<i64>,
        edits: Vec<Edit>,
        source: Source,
        reply: Reply<Applied>,
    },
    /// Makes the text equal to `text` with a minimal edit script.
    ReplaceText {
        text: String,
        source: Source,
        reply: Reply<Applied>,
    },
    /// Applies a Yjs update (v1), as if a client had sent it.
    Update {
        update: Vec<u8>,
        source: Source,
        reply: Reply<Applied>,
    },
    /// The whole document as one update (v1), and its version.
    EncodeState { reply: Reply<(Vec<u8>, i64)> },
    /// The version and length now.
    Info { reply: Reply<Applied> },
    Search {
        searcher: Box<Searcher>,
        limit: usize,
        context: usize,
        reply: Reply<SearchResult>,
    },
    Complete {
        prefix: String,
        limit: usize,
        reply: Reply<Vec<(String, u32)>>,
    },
    /// Deletes the document: closes its connections, leaves a tombstone.
    Delete { reply: Reply<()> },
}

/// Why an [`ApiRequest`] was not done.
#[derive(Debug, thiserror::Error)]
pub enum DocError {
    #[error("no such document")]
    NotFound,
    /// The version asked for is older than the current one: the caller reads the op log.
    #[error("version is older than the current {current}")]
    Stale { current: i64 },
    #[error("unknown version {version}: the document's current version is {current}")]
    UnknownVersion { version: i64, current: i64 },
    #[error(transparent)]
    Edit(#[from] EditError),
    #[error("invalid update: {0}")]
    InvalidUpdate(String),
    #[error("{0}")]
    Unavailable(String),
    /// The change would grow the document past `--max-document-bytes`.
    #[error("{0}")]
    TooLarge(String),
}

/// The text at a version.
#[derive(Debug, Clone)]
pub struct TextAt {
    pub text: String,
    pub version: i64,
}

/// A document after a change.
#[derive(Debug, Clone, Copy)]
pub struct Applied {
    pub version: i64,
    pub length: u64,
}

#[derive(Debug, Clone)]
pub struct SearchHit {
    pub offset: usize,
    pub length: usize,
    /// Zero-based line and column (chars).
    pub line: usize,
    pub column: usize,
    pub context: String,
    /// Where the match starts in `context`, in chars.
    pub context_offset: usize,
}

#[derive(Debug, Clone)]
pub struct SearchResult {
    pub hits: Vec<SearchHit>,
    pub total: usize,
    pub version: i64,
}

impl ApiRequest {
    /// Answers the request with `err` without doing it.
    pub fn refuse(self, err: DocError) {
        fn no<T>(reply: Reply<T>, err: DocError) {
            let _ = reply.send(Err(err));
        }
        match self {
            ApiRequest::Text { reply, .. } => no(reply, err),
            ApiRequest::Edits { reply, .. }
            | ApiRequest::ReplaceText { reply, .. }
            | ApiRequest::Update { reply, .. }
            | ApiRequest::Info { reply } => no(reply, err),
            ApiRequest::EncodeState { reply } => no(reply, err),
            ApiRequest::Search { reply, .. } => no(reply, err),
            ApiRequest::Complete { reply, .. } => no(reply, err),
            ApiRequest::Delete { reply } => no(reply, err),
        }
    }
}

/// What another server said about this document on the bus (crate::bus).
#[derive(Debug)]
pub enum PeerMessage {
    /// It committed rows up to `upto` at `committed_at` (Unix ms, its clock); `rows` are the
    /// newest of them (empty if too big to send).
    Rows {
        upto: i64,
        rows: Vec<OpRow>,
        committed_at: u64,
    },
    /// A presence change of one of its clients.
    Awareness {
        node: Arc<str>,
        update: AwarenessUpdate,
    },
    /// It stopped (or went silent): its clients' presence goes.
    NodeGone { node: Arc<str> },
}
