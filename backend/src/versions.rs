//! A document as it was at an older version, rebuilt from the op log off the actor: its text,
//! edits made on it (returned as a Yjs update to merge like a concurrent editor's), and the char
//! counts of op-log rows stored without them.
//!
//! The actor keeps only the current version; anything older is a snapshot plus op-log rows,
//! replayed here on a copy in a blocking task.

use std::sync::Mutex;

use editor_core::{GapBuffer, TextBuffer};
use yrs::{Doc, Transact};

use crate::document::build_doc;
use crate::edit::{self, Edit, EditError};
use crate::mirror::{doc_text, text_of, Mirror, TEXT_NAME};
use crate::store::{AtError, Store, StoredDoc};

/// Why an older version could not be rebuilt.
#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    /// The version is not in the op log any more, or the store failed.
    #[error(transparent)]
    At(#[from] AtError),
    /// An edit's position is out of range in that version's text.
    #[error(transparent)]
    Edit(#[from] EditError),
    /// The blocking task that rebuilt it panicked.
    #[error("rebuilding the version failed")]
    Rebuild,
}

/// Documents rebuilt at older versions, kept so that the next request for a version at or a
/// little after one of them replays a few op-log rows (or none) instead of rebuilding: the
/// history slider, the texts around a page of changes, blame at versions asked for again. The
/// most recently used few, several versions of one document allowed.
#[derive(Default)]
pub struct VersionCache {
    docs: Mutex<Vec<(String, i64, Doc)>>,
}

/// Rebuilt versions kept (all documents together).
const CACHED_VERSIONS: usize = 8;

impl VersionCache {
    /// Takes the newest rebuild of document `id` in `version - within ..= version`.
    fn take(&self, id: &str, version: i64, within: i64) -> Option<(i64, Doc)> {
        let mut docs = self.docs.lock().unwrap_or_else(|e| e.into_inner());
        let i = docs
            .iter()
            .enumerate()
            .filter(|(_, (d, at, _))| d == id && *at <= version && version - *at <= within)
            .max_by_key(|(_, (_, at, _))| *at)
            .map(|(i, _)| i)?;
        let (_, at, doc) = docs.remove(i);
        Some((at, doc))
    }

    pub fn put(&self, id: &str, version: i64, doc: Doc) {
        let mut docs = self.docs.lock().unwrap_or_else(|e| e.into_inner());
        docs.retain(|(d, at, _)| !(d == id && *at == version));
        docs.push((id.to_string(), version, doc));
        if docs.len() > CACHED_VERSIONS {
            docs.remove(0);
        }
    }
}

/// Document `id` rebuilt at `version`: from the cache when it holds one a little older (the
/// rows in between replayed onto it), else from the newest snapshot or checkpoint at or before
/// the version and the rows after it. Give it back with [`VersionCache::put`] when done.
pub async fn doc_at(
    store: &Store,
    cache: &VersionCache,
    id: &str,
    version: i64,
) -> Result<Doc, VersionError> {
    // Replaying more rows than a checkpoint is apart costs more than loading the checkpoint.
    let within = store.checkpoint_ops().max(2_000);
    if let Some((at, doc)) = cache.take(id, version, within) {
        let ops = store
            .ops_between(id, at, version)
            .await
            .map_err(|e| VersionError::At(e.into()))?;
        // Dense rows continue the cached version; a gap (compacted rows) means rebuilding.
        if ops.len() as i64 == version - at {
            return tokio::task::spawn_blocking(move || {
                use yrs::updates::decoder::Decode;
                for op in ops {
                    if let Ok(update) = yrs::Update::decode_v1(&op.update_v1) {
                        let _ = doc.transact_mut().apply_update(update);
                    }
                }
                doc
            })
            .await
            .map_err(|_| VersionError::Rebuild);
        }
    }
    let stored = store.load_at(id, version).await?;
    let doc_id = id.to_string();
    tokio::task::spawn_blocking(move || build_doc(&doc_id, &stored))
        .await
        .map_err(|_| VersionError::Rebuild)
}

/// The text of document `id` at `version`.
pub async fn text_at(
    store: &Store,
    cache: &VersionCache,
    id: &str,
    version: i64,
) -> Result<String, VersionError> {
    let doc = doc_at(store, cache, id, version).await?;
    let text = doc_text(&doc);
    cache.put(id, version, doc);
    Ok(text)
}

/// `edits` made on document `id` as it was at `version`, by a new client: the Yjs update to
/// merge into the live document.
pub async fn edits_at(
    store: &Store,
    id: &str,
    version: i64,
    edits: Vec<Edit>,
) -> Result<Vec<u8>, VersionError> {
    let stored = store.load_at(id, version).await?;
    let doc_id = id.to_string();
    let update = tokio::task::spawn_blocking(move || apply_at_version(&doc_id, &stored, &edits))
        .await
        .map_err(|_| VersionError::Rebuild)??;
    Ok(update)
}

/// Char counts of op-log rows stored without them (updates from WebSocket clients and Yjs
/// imports: the actor does not walk the text per update), by replaying them on a copy that
/// observes each one's delta; stored back so each row is replayed once. Rows that cannot be
/// replayed (compacted) are left out.
pub async fn replay_counts(store: &Store, id: &str, seqs: &[i64]) -> Vec<(i64, (i64, i64))> {
    let (Some(&first), Some(&last)) = (seqs.iter().min(), seqs.iter().max()) else {
        return Vec::new();
    };
    let Ok(base) = store.load_at(id, first - 1).await else {
        return Vec::new();
    };
    let Ok(ops) = store.ops_between(id, first - 1, last).await else {
        return Vec::new();
    };
    let doc_id = id.to_string();
    let counts = tokio::task::spawn_blocking(move || {
        use yrs::updates::decoder::Decode;
        use yrs::Transact;
        let doc = build_doc(&doc_id, &base);
        let mirror = Mirror::attach(&doc);
        mirror.lock().take_counts();
        let mut out = Vec::new();
        for op in ops {
            if let Ok(update) = yrs::Update::decode_v1(&op.update_v1) {
                let _ = doc.transact_mut().apply_update(update);
            }
            let (ins, del) = mirror.lock().take_counts();
            out.push((op.seq, (ins as i64, del as i64)));
        }
        out
    })
    .await
    .unwrap_or_default();
    let rows: Vec<(i64, i64, i64)> = counts
        .iter()
        .filter(|(seq, _)| seqs.contains(seq))
        .map(|&(seq, (ins, del))| (seq, ins, del))
        .collect();
    if let Err(err) = store.set_counts(id, &rows).await {
        tracing::debug!(doc = id, %err, "could not store history counts");
    }
    counts
}

/// Applies `edits` to the document as `stored` (an older version) holds it, as a new client,
/// and returns that client's update (v1) for the live document. CPU work: run it off the
/// async threads for big documents.
fn apply_at_version(
    doc_id: &str,
    stored: &StoredDoc,
    edits: &[Edit],
) -> Result<Vec<u8>, EditError> {
    let doc = build_doc(doc_id, stored);
    let text = doc.get_or_insert_text(TEXT_NAME);
    let mut txn = doc.transact_mut();
    let buf = GapBuffer::from_text(&text_of(&txn, &text));
    let planned = edit::plan(&buf, edits)?;
    edit::apply(&mut txn, &text, &planned);
    Ok(txn.encode_update_v1())
}

/// The texts of document `id` at each of `wanted`, oldest first: each rebuilt by replaying
/// forward from the one before when that is near, else from its nearest checkpoint.
pub async fn texts_at(
    store: &Store,
    cache: &VersionCache,
    id: &str,
    wanted: &[i64],
) -> Result<Vec<(i64, String)>, VersionError> {
    let mut wanted = wanted.to_vec();
    wanted.sort_unstable();
    wanted.dedup();
    let mut out = Vec::with_capacity(wanted.len());
    for version in wanted {
        out.push((version, text_at(store, cache, id, version).await?));
    }
    Ok(out)
}
