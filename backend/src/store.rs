//! The store: documents, the op log and snapshots, in PostgreSQL or SQLite behind one interface.
//!
//! The same SQL runs on both (sqlx's `Any` driver, `$N` placeholders, times as Unix ms); only the
//! migrations differ (`migrations/postgres`, `migrations/sqlite`) because the column types do.
//!
//! Durability contract: [`Store::commit`] returns only after the rows are committed. The document
//! actor relays nothing before that, so anything a collaborator has seen survives kill -9.
//!
//! Several servers may write one PostgreSQL database (a cluster, a rolling deploy): a commit takes
//! its sequence numbers from the document's row (`version`), under that row's lock, inside its own
//! transaction, so each document's op log is gap-free and in commit order, and an op-log conflict
//! is an error, never a silent drop. SQLite is the single-process embedded default: a second
//! process opening the same file is refused (`Store::connect`).

use std::collections::HashMap;
use std::fs::File;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor, Row};

static PG_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/postgres");
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/sqlite");

/// PostgreSQL accepts at most 65,535 bind parameters per statement (SQLite 32,766); 10 per op
/// row.
const OPS_PER_INSERT: usize = 2_000;
/// On SQLite, fewer: sqlx looks up every bound parameter by name among all of the statement's,
/// so one statement's cost grows with the square of its parameters.
const SQLITE_OPS_PER_INSERT: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL {0:?}: use postgres://… or sqlite:…")]
    UnsupportedUrl(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The document was deleted (by this server or another) before the commit.
    #[error("the document was deleted")]
    Deleted,
    /// The op log and the documents row disagree: a bug, never papered over.
    #[error("op-log conflict: {0}")]
    Conflict(String),
    #[error("{0}")]
    Locked(String),
}

/// Whether a document id is in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocState {
    Missing,
    Deleted,
    Live,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// One update to append to a document's op log.
#[derive(Debug, Clone)]
pub struct NewOp {
    pub seq: i64,
    pub update_v1: Vec<u8>,
    /// Who sent it (a connection id, or `rest:…`), for history.
    pub origin: Option<String>,
    /// Chars it inserted into and deleted from the text, for history, when known at once
    /// (otherwise history computes them by replay, once).
    pub chars: Option<(u64, u64)>,
    /// Who made it (see the `author` column), when known.
    pub author: Option<Arc<str>>,
    /// The Yjs ids it inserted (yrs `IdSet`, v1), for blame.
    pub inserted: Option<Vec<u8>>,
}

/// A stored op-log row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpRow {
    pub seq: i64,
    pub update_v1: Vec<u8>,
}

/// What loading a document needs: the newest valid snapshot and every op after it.
#[derive(Debug, Default)]
pub struct StoredDoc {
    /// `(seq covered, encoded state)`.
    pub snapshot: Option<(i64, Vec<u8>)>,
    /// Ops with `seq` above the snapshot's, in order.
    pub ops: Vec<OpRow>,
    /// The `(version, length)` the documents row records, to be corrected if stale.
    pub recorded: (i64, i64),
    /// This load created the document (a WebSocket connection to a new id).
    pub created: bool,
}

/// The outcome of [`Store::load`].
#[derive(Debug)]
pub enum Loaded {
    Doc(StoredDoc),
    /// No such document (and it was not to be created).
    Missing,
    /// Deleted: its id stays taken.
    Deleted,
}

/// A document's row: what listing and metadata show.
#[derive(Debug, Clone)]
pub struct DocMeta {
    pub id: String,
    pub name: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
    pub version: i64,
    pub length: i64,
}

/// One op-log row as history shows it.
#[derive(Debug, Clone)]
pub struct HistoryRow {
    pub seq: i64,
    pub received_ms: i64,
    pub origin: Option<String>,
    /// Who made it, when known.
    pub author: Option<String>,
    /// `None` for rows written before char counts were recorded.
    pub chars: Option<(i64, i64)>,
    /// The first version of the change it belongs to; `None` for rows written before changes
    /// were recorded.
    pub change_start: Option<i64>,
}

/// Rows by one author (or, without one, from one origin) with no pause longer than this between
/// them make one change.
pub const CHANGE_PAUSE_MS: i64 = 30_000;

/// What groups rows into one change: the author, or without one, where the row came from.
pub fn change_key<'a>(
    author: Option<&'a str>,
    origin: Option<&'a str>,
) -> (Option<&'a str>, Option<&'a str>) {
    match author {
        Some(a) => (Some(a), None),
        None => (None, origin),
    }
}

/// True when a row with `newer`'s key, time and version continues the change of the row with
/// `older`'s: the same key, versions one after the other, no pause over [`CHANGE_PAUSE_MS`].
pub fn continues_change(
    older: ((Option<&str>, Option<&str>), i64, i64),
    newer: ((Option<&str>, Option<&str>), i64, i64),
) -> bool {
    older.0 == newer.0 && newer.1 - older.1 <= CHANGE_PAUSE_MS && newer.2 == older.2 + 1
}

/// The newest committed row of a document as grouping into changes needs it.
#[derive(Debug, Clone)]
struct LastRow {
    seq: i64,
    author: Option<String>,
    origin: Option<String>,
    received_ms: i64,
    change_start: Option<i64>,
}

/// What blame needs of an op-log row: who made it and the Yjs ids it inserted.
#[derive(Debug, Clone)]
pub struct InsertedRow {
    pub seq: i64,
    pub author: Option<String>,
    /// The ids (yrs `IdSet`, v1), or for rows stored without them the update itself.
    pub ids: RowIds,
}

#[derive(Debug, Clone)]
pub enum RowIds {
    Inserted(Vec<u8>),
    Update(Vec<u8>),
}

/// A named version: the name, the version it named and that version's text.
#[derive(Debug, Clone)]
pub struct NamedVersion {
    pub name: String,
    pub version: i64,
    pub text: String,
    pub author: Option<String>,
    pub created_ms: i64,
}

/// Why the state as of a version cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum AtError {
    #[error("version {version} is no longer in the op log (it was compacted); the oldest version available is {oldest}")]
    Compacted { version: i64, oldest: i64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// `--history-checkpoint-ops` when the caller sets none.
pub const DEFAULT_CHECKPOINT_OPS: i64 = 10_000;

const META_COLUMNS: &str = "id, name, created_ms, updated_ms, version, length_chars";

/// The columns of [`history_row`].
const HISTORY_COLUMNS: &str =
    "seq, received_ms, origin, chars_inserted, chars_deleted, author, change_start";

/// A row of `SELECT` [`HISTORY_COLUMNS`].
fn history_row(row: &sqlx::any::AnyRow) -> Result<HistoryRow, StoreError> {
    let ins: Option<i64> = row.try_get(3)?;
    let del: Option<i64> = row.try_get(4)?;
    Ok(HistoryRow {
        seq: row.try_get(0)?,
        received_ms: row.try_get(1)?,
        origin: row.try_get(2)?,
        author: row.try_get(5)?,
        chars: ins.zip(del),
        change_start: row.try_get(6)?,
    })
}

/// The outcome of [`Store::commit`].
#[derive(Debug)]
pub struct Committed {
    /// The sequence number of the batch's first row; the others follow one by one.
    pub first_seq: i64,
    /// Rows other servers committed after the caller's version and before this batch: the
    /// caller applies them (and relays them) too, so it never holds a gap.
    pub missed: CatchUp,
}

/// Rows of a document after a version someone holds, up to a newer one.
#[derive(Debug, Default)]
pub struct CatchUp {
    /// Set when rows right after the holder's version were compacted away: the newest snapshot,
    /// to merge before `ops`.
    pub snapshot: Option<(i64, Vec<u8>)>,
    /// In order.
    pub ops: Vec<OpRow>,
    /// The version this brings the holder to.
    pub upto: i64,
}

impl CatchUp {
    pub fn is_empty(&self) -> bool {
        self.snapshot.is_none() && self.ops.is_empty()
    }
}

/// A document's version as the store has it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    Live(i64),
    /// Deleted, or never existed.
    Gone,
}

impl StoredDoc {
    /// The highest sequence number stored for the document (0 when it has none).
    pub fn last_seq(&self) -> i64 {
        let snap = self.snapshot.as_ref().map_or(0, |(seq, _)| *seq);
        self.ops.last().map_or(snap, |op| op.seq.max(snap))
    }
}

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// SQLite: the lock that keeps a second process off the file, held until [`Store::close`].
    file_lock: Arc<Mutex<Option<File>>>,
    /// Snapshots this many ops apart are kept as history checkpoints (0: none).
    checkpoint_ops: i64,
    /// The newest row this store committed per document, so the next commit continues its
    /// change without reading it back.
    last_rows: Arc<Mutex<HashMap<String, LastRow>>>,
}

impl Store {
    /// Connects, creating a SQLite file if needed, and runs the migrations.
    pub async fn connect(url: &str) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            return Err(StoreError::UnsupportedUrl(url.to_string()));
        };
        let options = AnyPoolOptions::new()
            .acquire_timeout(Duration::from_secs(5))
            .max_connections(if backend == Backend::Sqlite { 4 } else { 8 });
        let options = if backend == Backend::Sqlite {
            options.after_connect(|conn, _| {
                Box::pin(async move {
                    // WAL lets readers run beside the one writer; FULL makes each commit reach
                    // the disk, so an acknowledged edit survives power loss, not only kill -9.
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                         PRAGMA busy_timeout = 5000; PRAGMA foreign_keys = ON;",
                    )
                    .await?;
                    Ok(())
                })
            })
        } else {
            options
        };
        let file_lock = if backend == Backend::Sqlite {
            lock_sqlite_file(url)?
        } else {
            None
        };
        let url = if backend == Backend::Sqlite && !url.contains("mode=") {
            // Create the file on first run: `cargo run` needs nothing else.
            format!("{url}{}mode=rwc", if url.contains('?') { '&' } else { '?' })
        } else {
            url.to_string()
        };
        let pool = options.connect(&url).await?;
        match backend {
            Backend::Postgres => PG_MIGRATIONS.run(&pool).await?,
            Backend::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
        }
        Ok(Store {
            pool,
            backend,
            file_lock: Arc::new(Mutex::new(file_lock)),
            checkpoint_ops: DEFAULT_CHECKPOINT_OPS,
            last_rows: Arc::default(),
        })
    }

    /// Keeps a snapshot as a history checkpoint when the newest one is at least `ops` older
    /// (0: keep none; the text at an older version is then rebuilt from the newest snapshots
    /// or from the start of the op log).
    pub fn set_checkpoint_ops(&mut self, ops: u64) {
        self.checkpoint_ops = ops.min(i64::MAX as u64) as i64;
    }

    pub fn checkpoint_ops(&self) -> i64 {
        self.checkpoint_ops
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Checks the database answers (for `/readyz`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Reads what loading a document needs, creating the document first when `create` is set
    /// (a WebSocket connection creates its document; the REST API never does implicitly).
    ///
    /// A snapshot whose checksum does not match is skipped (an older one, or the full op log, is
    /// used instead), so a damaged snapshot costs load time, never data.
    pub async fn load(&self, doc_id: &str, create: bool) -> Result<Loaded, StoreError> {
        let mut created = false;
        if create {
            let now = now_ms();
            created = sqlx::query(
                "INSERT INTO documents (id, created_ms, updated_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(doc_id)
            .bind(now)
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected()
                == 1;
        }
        let row =
            sqlx::query("SELECT deleted_ms, version, length_chars FROM documents WHERE id = $1")
                .bind(doc_id)
                .fetch_optional(&self.pool)
                .await?;
        let Some(row) = row else {
            return Ok(Loaded::Missing);
        };
        if row.try_get::<Option<i64>, _>(0)?.is_some() {
            return Ok(Loaded::Deleted);
        }
        let recorded = (row.try_get(1)?, row.try_get(2)?);
        let (snapshot, after) = self.snapshot_at_most(doc_id, i64::MAX).await?;
        let rows = sqlx::query(
            "SELECT seq, update_v1 FROM ops WHERE doc_id = $1 AND seq > $2 ORDER BY seq",
        )
        .bind(doc_id)
        .bind(after)
        .fetch_all(&self.pool)
        .await?;
        Ok(Loaded::Doc(StoredDoc {
            snapshot,
            ops: rows.iter().map(op_row).collect::<Result<_, _>>()?,
            recorded,
            created,
        }))
    }

    /// The newest snapshot covering at most `seq` whose checksum matches, and the seq it covers
    /// (0 without one).
    async fn snapshot_at_most(
        &self,
        doc_id: &str,
        seq: i64,
    ) -> Result<(Option<(i64, Vec<u8>)>, i64), StoreError> {
        // The newest first; older ones only when its checksum fails.
        let mut snapshots = Vec::new();
        for limit in [1i64, 3] {
            snapshots = sqlx::query(
                "SELECT seq, state_v1, crc32 FROM snapshots WHERE doc_id = $1 AND seq <= $2 \
                 ORDER BY seq DESC LIMIT $3",
            )
            .bind(doc_id)
            .bind(seq)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
            let intact = snapshots.first().is_some_and(|row| {
                let state: Vec<u8> = row.try_get(1).unwrap_or_default();
                row.try_get::<i64, _>(2)
                    .is_ok_and(|crc| i64::from(crc32fast::hash(&state)) == crc)
            });
            if intact || snapshots.is_empty() {
                break;
            }
        }
        for row in snapshots {
            let seq: i64 = row.try_get(0)?;
            let state: Vec<u8> = row.try_get(1)?;
            let crc: i64 = row.try_get(2)?;
            if i64::from(crc32fast::hash(&state)) == crc {
                return Ok((Some((seq, state)), seq));
            }
            tracing::error!(
                doc = doc_id,
                seq,
                "snapshot checksum mismatch; using an older state"
            );
        }
        Ok((None, 0))
    }

    /// What building the document as of `version` needs: the newest snapshot at or before it
    /// and the ops after that up to `version`. Fails when ops in between were compacted away.
    pub async fn load_at(&self, doc_id: &str, version: i64) -> Result<StoredDoc, AtError> {
        let (snapshot, after) = self.snapshot_at_most(doc_id, version).await?;
        let rows = sqlx::query(
            "SELECT seq, update_v1 FROM ops WHERE doc_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq",
        )
        .bind(doc_id)
        .bind(after)
        .bind(version)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::from)?;
        let ops: Vec<OpRow> = rows
            .iter()
            .map(op_row)
            .collect::<Result<_, _>>()
            .map_err(StoreError::from)?;
        // Sequence numbers are dense, so a gap means compacted rows.
        if ops.len() as i64 != version - after {
            let oldest = self.oldest_version(doc_id).await?;
            return Err(AtError::Compacted { version, oldest });
        }
        Ok(StoredDoc {
            snapshot,
            ops,
            recorded: (version, 0),
            created: false,
        })
    }

    /// The oldest version that [`Store::load_at`] can still build.
    async fn oldest_version(&self, doc_id: &str) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "SELECT COALESCE((SELECT MIN(seq) FROM snapshots WHERE doc_id = $1), 0), \
                    COALESCE((SELECT MIN(seq) FROM ops WHERE doc_id = $1), 1)",
        )
        .bind(doc_id)
        .fetch_one(&self.pool)
        .await?;
        let snap: i64 = row.try_get(0)?;
        let first_op: i64 = row.try_get(1)?;
        Ok(if first_op <= 1 { 0 } else { snap })
    }

    /// Creates a document under a new id; false when the id is taken (by a live or deleted one).
    pub async fn create(&self, doc_id: &str, name: Option<&str>) -> Result<bool, StoreError> {
        let now = now_ms();
        let done = sqlx::query(
            "INSERT INTO documents (id, name, created_ms, updated_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(doc_id)
        .bind(name)
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Whether a document exists, was deleted, or never existed.
    pub async fn state(&self, doc_id: &str) -> Result<DocState, StoreError> {
        let row = sqlx::query("SELECT deleted_ms FROM documents WHERE id = $1")
            .bind(doc_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            None => DocState::Missing,
            Some(row) if row.try_get::<Option<i64>, _>(0)?.is_some() => DocState::Deleted,
            Some(_) => DocState::Live,
        })
    }

    /// A live document's row.
    pub async fn meta(&self, doc_id: &str) -> Result<Option<DocMeta>, StoreError> {
        let row = sqlx::query(&format!(
            "SELECT {META_COLUMNS} FROM documents WHERE id = $1 AND deleted_ms IS NULL"
        ))
        .bind(doc_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(meta_row).transpose().map_err(Into::into)
    }

    /// Up to `limit` live documents with ids after `after`, in id order (keyset pagination:
    /// stable while documents come and go).
    pub async fn list(&self, after: Option<&str>, limit: i64) -> Result<Vec<DocMeta>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {META_COLUMNS} FROM documents WHERE deleted_ms IS NULL AND id > $1 \
             ORDER BY id LIMIT $2"
        ))
        .bind(after.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(meta_row)
            .collect::<Result<_, _>>()
            .map_err(Into::into)
    }

    /// Renames a live document; `None` when there is none.
    pub async fn rename(
        &self,
        doc_id: &str,
        name: Option<&str>,
    ) -> Result<Option<DocMeta>, StoreError> {
        sqlx::query("UPDATE documents SET name = $1 WHERE id = $2 AND deleted_ms IS NULL")
            .bind(name)
            .bind(doc_id)
            .execute(&self.pool)
            .await?;
        self.meta(doc_id).await
    }

    /// Deletes a document: its row stays as a tombstone (so the id is never reused), its ops and
    /// snapshots go.
    pub async fn delete(&self, doc_id: &str) -> Result<(), StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE documents SET deleted_ms = $1, updated_ms = $1, name = NULL, version = 0, \
             length_chars = 0 WHERE id = $2",
        )
        .bind(now)
        .bind(doc_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM ops WHERE doc_id = $1")
            .bind(doc_id)
            .execute(&mut *tx)
            .await?;
        for table in [
            "snapshots",
            "doc_authors",
            "named_versions",
            "blame_segments",
        ] {
            sqlx::query(&format!("DELETE FROM {table} WHERE doc_id = $1"))
                .bind(doc_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records a document's length at `version` (and the version, if the row's is older: rows
    /// written before versions were recorded). Never moves the version back, and records no
    /// length for a version another server has passed.
    pub async fn set_stats(
        &self,
        doc_id: &str,
        version: i64,
        length: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE documents SET version = $1, length_chars = $2 WHERE id = $3 AND version <= $1",
        )
        .bind(version)
        .bind(length)
        .bind(doc_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The op-log rows with `after < seq <= upto`, in order.
    pub async fn ops_between(
        &self,
        doc_id: &str,
        after: i64,
        upto: i64,
    ) -> Result<Vec<OpRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, update_v1 FROM ops WHERE doc_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq",
        )
        .bind(doc_id)
        .bind(after)
        .bind(upto)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.iter().map(op_row).collect::<Result<_, _>>()?)
    }

    /// Records char counts of op-log rows that were stored without them (`(seq, inserted,
    /// deleted)`), once history has computed them.
    pub async fn set_counts(
        &self,
        doc_id: &str,
        counts: &[(i64, i64, i64)],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for &(seq, inserted, deleted) in counts {
            sqlx::query(
                "UPDATE ops SET chars_inserted = $1, chars_deleted = $2 WHERE doc_id = $3 AND seq = $4",
            )
            .bind(inserted)
            .bind(deleted)
            .bind(doc_id)
            .bind(seq)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Up to `limit` op-log rows with `seq > after`, oldest first (the change feed).
    pub async fn rows_after(
        &self,
        doc_id: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<HistoryRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {HISTORY_COLUMNS} FROM ops WHERE doc_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
        ))
        .bind(doc_id)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(|row| history_row(&row)).collect()
    }

    /// Up to `limit` op-log rows with `seq < before`, newest first.
    pub async fn history(
        &self,
        doc_id: &str,
        before: i64,
        limit: i64,
    ) -> Result<Vec<HistoryRow>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {HISTORY_COLUMNS} FROM ops WHERE doc_id = $1 AND seq < $2 \
             ORDER BY seq DESC LIMIT $3"
        ))
        .bind(doc_id)
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(|row| history_row(&row)).collect()
    }

    /// Who made each row with `after < seq <= upto` and what it inserted, in order.
    pub async fn inserted(
        &self,
        doc_id: &str,
        after: i64,
        upto: i64,
    ) -> Result<Vec<InsertedRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, author, inserted, CASE WHEN inserted IS NULL THEN update_v1 END FROM ops \
             WHERE doc_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq",
        )
        .bind(doc_id)
        .bind(after)
        .bind(upto)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let inserted: Option<Vec<u8>> = row.try_get(2)?;
            let ids = match inserted {
                Some(ids) => RowIds::Inserted(ids),
                None => RowIds::Update(row.try_get::<Option<Vec<u8>>, _>(3)?.unwrap_or_default()),
            };
            out.push(InsertedRow {
                seq: row.try_get(0)?,
                author: row.try_get(1)?,
                ids,
            });
        }
        Ok(out)
    }

    /// Where the document's blame segments end (0: it has none).
    pub async fn blame_segments_end(&self, doc_id: &str) -> Result<i64, StoreError> {
        let row =
            sqlx::query("SELECT COALESCE(MAX(upto_seq), 0) FROM blame_segments WHERE doc_id = $1")
                .bind(doc_id)
                .fetch_one(&self.pool)
                .await?;
        Ok(row.try_get(0)?)
    }

    /// Stores the blame segment of the rows in `(after, upto]` (another server's for the same
    /// end wins).
    pub async fn save_blame_segment(
        &self,
        doc_id: &str,
        after: i64,
        upto: i64,
        data: &[u8],
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO blame_segments (doc_id, after_seq, upto_seq, data) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (doc_id, upto_seq) DO NOTHING",
        )
        .bind(doc_id)
        .bind(after)
        .bind(upto)
        .bind(data)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The blame segments within `(after, upto]`, as `(after, upto, data)` in order of their end.
    pub async fn blame_segments(
        &self,
        doc_id: &str,
        after: i64,
        upto: i64,
    ) -> Result<Vec<(i64, i64, Vec<u8>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT after_seq, upto_seq, data FROM blame_segments \
             WHERE doc_id = $1 AND after_seq >= $2 AND upto_seq <= $3 ORDER BY upto_seq",
        )
        .bind(doc_id)
        .bind(after)
        .bind(upto)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Records which author each Yjs client id belongs to (the newest name wins).
    pub async fn set_authors(
        &self,
        doc_id: &str,
        authors: &[(u64, Arc<str>)],
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for (client, author) in authors {
            sqlx::query(
                "INSERT INTO doc_authors (doc_id, client_id, author) VALUES ($1, $2, $3) \
                 ON CONFLICT (doc_id, client_id) DO UPDATE SET author = excluded.author",
            )
            .bind(doc_id)
            .bind(*client as i64)
            .bind(&**author)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The Yjs client ids whose author is known, and their authors.
    pub async fn authors(&self, doc_id: &str) -> Result<Vec<(u64, String)>, StoreError> {
        let rows = sqlx::query("SELECT client_id, author FROM doc_authors WHERE doc_id = $1")
            .bind(doc_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get::<i64, _>(0)? as u64, row.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Names a version, keeping its text; false when the name is taken.
    pub async fn name_version(
        &self,
        doc_id: &str,
        named: &NamedVersion,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO named_versions (doc_id, name, version, text, author, created_ms) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (doc_id, name) DO NOTHING",
        )
        .bind(doc_id)
        .bind(&named.name)
        .bind(named.version)
        .bind(&named.text)
        .bind(named.author.as_deref())
        .bind(named.created_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// The document's named versions, newest version first, with their texts when `texts`.
    pub async fn named_versions(
        &self,
        doc_id: &str,
        name: Option<&str>,
    ) -> Result<Vec<NamedVersion>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, version, text, author, created_ms FROM named_versions \
             WHERE doc_id = $1 AND ($2 IS NULL OR name = $2) ORDER BY version DESC, created_ms DESC",
        )
        .bind(doc_id)
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(NamedVersion {
                    name: row.try_get(0)?,
                    version: row.try_get(1)?,
                    text: row.try_get(2)?,
                    author: row.try_get(3)?,
                    created_ms: row.try_get(4)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    /// Removes a version's name; false when there was none.
    pub async fn unname_version(&self, doc_id: &str, name: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM named_versions WHERE doc_id = $1 AND name = $2")
            .bind(doc_id)
            .bind(name)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Commits `ops` to the op log in one transaction (group commit) and returns the sequence
    /// number of the first; the others follow one by one. The numbers come from the document's
    /// row, under its lock, so servers sharing the database never take each other's. `known` is
    /// the version the caller holds: rows committed after it by others come back in
    /// [`Committed::missed`]. `batch` names this commit; with `retry` set (the previous attempt
    /// failed in a way that may have committed) rows already written under it are found and
    /// returned instead of being written twice. `length`, if known, is the text's length after
    /// the batch, recorded when no one else wrote in between.
    pub async fn commit(
        &self,
        doc_id: &str,
        ops: &[NewOp],
        known: i64,
        batch: &str,
        retry: bool,
        length: Option<i64>,
    ) -> Result<Committed, StoreError> {
        let n = ops.len() as i64;
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        if retry {
            let done = sqlx::query(
                "SELECT seq FROM ops WHERE doc_id = $1 AND seq > $2 AND batch = $3 ORDER BY seq LIMIT 1",
            )
            .bind(doc_id)
            .bind(known)
            .bind(batch)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(row) = done {
                let first_seq: i64 = row.try_get(0)?;
                let missed = missed_rows(&mut tx, doc_id, known, first_seq - 1).await?;
                tx.commit().await?;
                tracing::info!(
                    doc = doc_id,
                    batch,
                    first_seq,
                    "commit retried: it had landed"
                );
                return self.complete(doc_id, known, first_seq, missed).await;
            }
        }
        // The row's version is the last number given out (or, for rows written before versions
        // were recorded, the op log's highest).
        let greatest = match self.backend {
            Backend::Postgres => "GREATEST",
            Backend::Sqlite => "MAX",
        };
        let locking = std::time::Instant::now();
        let row = sqlx::query(&format!(
            "UPDATE documents SET \
               version = {greatest}(version, COALESCE((SELECT MAX(seq) FROM ops WHERE doc_id = $1), 0)) + $2, \
               length_chars = CASE WHEN version = $3 THEN COALESCE($4, length_chars) ELSE length_chars END, \
               updated_ms = $5 \
             WHERE id = $1 AND deleted_ms IS NULL RETURNING version"
        ))
        .bind(doc_id)
        .bind(n)
        .bind(known)
        .bind(length)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        crate::metrics::get()
            .row_lock_wait
            .observe(locking.elapsed());
        let Some(row) = row else {
            return Err(StoreError::Deleted);
        };
        let version: i64 = row.try_get(0)?;
        let base = version - n;
        if base < known {
            return Err(StoreError::Conflict(format!(
                "document {doc_id} is at version {base} in the store but this server holds {known}"
            )));
        }
        let missed = missed_rows(&mut tx, doc_id, known, base).await?;
        let mut prev = self.last_row(&mut tx, doc_id, base).await?;
        let per_insert = match self.backend {
            Backend::Postgres => OPS_PER_INSERT,
            Backend::Sqlite => SQLITE_OPS_PER_INSERT,
        };
        for (chunk_index, chunk) in ops.chunks(per_insert).enumerate() {
            let mut sql = String::from(
                "INSERT INTO ops (doc_id, seq, update_v1, received_ms, origin, chars_inserted, \
                 chars_deleted, batch, author, inserted, change_start) VALUES ",
            );
            for i in 0..chunk.len() {
                let b = i * 11;
                if i > 0 {
                    sql.push(',');
                }
                sql.push('(');
                for k in 1..=11 {
                    if k > 1 {
                        sql.push(',');
                    }
                    sql.push_str(&format!("${}", b + k));
                }
                sql.push(')');
            }
            let mut query = sqlx::query(&sql);
            for (i, op) in chunk.iter().enumerate() {
                let seq = base + 1 + (chunk_index * per_insert + i) as i64;
                let key = change_key(op.author.as_deref(), op.origin.as_deref());
                let start = match &prev {
                    Some(p)
                        if continues_change(
                            (
                                change_key(p.author.as_deref(), p.origin.as_deref()),
                                p.received_ms,
                                p.seq,
                            ),
                            (key, now, seq),
                        ) =>
                    {
                        p.change_start.unwrap_or(seq)
                    }
                    _ => seq,
                };
                prev = Some(LastRow {
                    seq,
                    author: op.author.as_deref().map(str::to_string),
                    origin: op.origin.clone(),
                    received_ms: now,
                    change_start: Some(start),
                });
                query = query
                    .bind(doc_id)
                    .bind(seq)
                    .bind(op.update_v1.as_slice())
                    .bind(now)
                    .bind(op.origin.as_deref())
                    .bind(op.chars.map(|c| c.0 as i64))
                    .bind(op.chars.map(|c| c.1 as i64))
                    .bind(batch)
                    .bind(op.author.as_deref())
                    .bind(op.inserted.as_deref())
                    .bind(start);
            }
            // A plain INSERT: a sequence number already taken is a bug and fails the commit.
            query.execute(&mut *tx).await?;
        }
        if let Err(err) = tx.commit().await {
            // Committed or not, the cached newest row can no longer be trusted.
            self.lock_last_rows().remove(doc_id);
            return Err(err.into());
        }
        if let Some(last) = prev {
            let mut rows = self.lock_last_rows();
            if rows.len() >= 10_000 {
                // A bound, not an eviction policy: a miss costs one read at the next commit.
                rows.clear();
            }
            rows.insert(doc_id.to_string(), last);
        }
        self.complete(doc_id, known, base + 1, missed).await
    }

    fn lock_last_rows(&self) -> std::sync::MutexGuard<'_, HashMap<String, LastRow>> {
        self.last_rows.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Row `seq` of the document as grouping needs it: what this store committed last when
    /// that is the row, else read back (another server wrote it, or this store just started).
    async fn last_row(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        doc_id: &str,
        seq: i64,
    ) -> Result<Option<LastRow>, StoreError> {
        if let Some(last) = self.lock_last_rows().get(doc_id).filter(|l| l.seq == seq) {
            return Ok(Some(last.clone()));
        }
        let row = sqlx::query(
            "SELECT author, origin, received_ms, change_start FROM ops WHERE doc_id = $1 AND seq = $2",
        )
        .bind(doc_id)
        .bind(seq)
        .fetch_optional(&mut **tx)
        .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(LastRow {
            seq,
            author: row.try_get(0)?,
            origin: row.try_get(1)?,
            received_ms: row.try_get(2)?,
            change_start: row.try_get(3)?,
        }))
    }

    /// [`Committed`] with the rows missed between `known` and `first_seq`, reading a snapshot
    /// when some of them were compacted away.
    async fn complete(
        &self,
        doc_id: &str,
        known: i64,
        first_seq: i64,
        missed: Vec<OpRow>,
    ) -> Result<Committed, StoreError> {
        let upto = first_seq - 1;
        let missed = if dense(&missed, known, upto) {
            CatchUp {
                snapshot: None,
                ops: missed,
                upto,
            }
        } else {
            self.catch_up(doc_id, known, upto).await?
        };
        Ok(Committed { first_seq, missed })
    }

    /// The document's version in the store now.
    pub async fn tail(&self, doc_id: &str) -> Result<Tail, StoreError> {
        let row = sqlx::query("SELECT version, deleted_ms FROM documents WHERE id = $1")
            .bind(doc_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(match row {
            Some(row) if row.try_get::<Option<i64>, _>(1)?.is_none() => Tail::Live(row.try_get(0)?),
            _ => Tail::Gone,
        })
    }

    /// The versions of several documents now (those not listed are deleted or missing).
    pub async fn tails(&self, ids: &[Arc<str>]) -> Result<Vec<(String, i64)>, StoreError> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let placeholders: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!(
                "SELECT id, version FROM documents WHERE deleted_ms IS NULL AND id IN ({})",
                placeholders.join(",")
            );
            let mut query = sqlx::query(&sql);
            for id in chunk {
                query = query.bind(&**id);
            }
            for row in query.fetch_all(&self.pool).await? {
                out.push((row.try_get(0)?, row.try_get(1)?));
            }
        }
        Ok(out)
    }

    /// What a server holding `known` needs to reach `upto`: the rows in between, or, when some
    /// were compacted away, the newest snapshot and the rows after it.
    pub async fn catch_up(
        &self,
        doc_id: &str,
        known: i64,
        upto: i64,
    ) -> Result<CatchUp, StoreError> {
        let ops = self.ops_between(doc_id, known, upto).await?;
        if dense(&ops, known, upto) {
            return Ok(CatchUp {
                snapshot: None,
                ops,
                upto,
            });
        }
        let (snapshot, after) = self.snapshot_at_most(doc_id, upto).await?;
        let ops = self.ops_between(doc_id, after, upto).await?;
        Ok(CatchUp {
            snapshot,
            ops,
            upto,
        })
    }

    /// Stores a snapshot covering every op up to `seq`, keeps the newest `keep_snapshots` and
    /// the history checkpoints (a snapshot at least `checkpoint_ops` after the previous
    /// checkpoint becomes one), and deletes ops covered by it that are older than
    /// `op_retention` (`None`: keep the op log), with the checkpoints they no longer follow.
    pub async fn save_snapshot(
        &self,
        doc_id: &str,
        seq: i64,
        state_v1: &[u8],
        keep_snapshots: usize,
        op_retention: Option<Duration>,
    ) -> Result<(), StoreError> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        if self.backend == Backend::Postgres {
            // One server at a time compacts a document; another that finds it busy skips (its
            // next threshold tries again). Released with the transaction.
            let row = sqlx::query("SELECT pg_try_advisory_xact_lock(hashtext($1))")
                .bind(doc_id)
                .fetch_one(&mut *tx)
                .await?;
            if !row.try_get::<bool, _>(0)? {
                return Ok(());
            }
        }
        let checkpoint = if self.checkpoint_ops > 0 {
            let row = sqlx::query(
                "SELECT COALESCE(MAX(seq), 0) FROM snapshots WHERE doc_id = $1 AND checkpoint = 1",
            )
            .bind(doc_id)
            .fetch_one(&mut *tx)
            .await?;
            seq - row.try_get::<i64, _>(0)? >= self.checkpoint_ops
        } else {
            false
        };
        sqlx::query(
            "INSERT INTO snapshots (doc_id, seq, state_v1, created_ms, crc32, checkpoint) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (doc_id, seq) DO NOTHING",
        )
        .bind(doc_id)
        .bind(seq)
        .bind(state_v1)
        .bind(now)
        .bind(i64::from(crc32fast::hash(state_v1)))
        .bind(i64::from(checkpoint))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM snapshots WHERE doc_id = $1 AND checkpoint = 0 AND seq NOT IN \
             (SELECT seq FROM snapshots WHERE doc_id = $1 ORDER BY seq DESC LIMIT $2)",
        )
        .bind(doc_id)
        .bind(keep_snapshots.max(1) as i64)
        .execute(&mut *tx)
        .await?;
        if let Some(retention) = op_retention {
            let cutoff = now - retention.as_millis() as i64;
            sqlx::query("DELETE FROM ops WHERE doc_id = $1 AND seq <= $2 AND received_ms < $3")
                .bind(doc_id)
                .bind(seq)
                .bind(cutoff)
                .execute(&mut *tx)
                .await?;
            // A checkpoint before the oldest op left rebuilds only its own version.
            sqlx::query(
                "DELETE FROM snapshots WHERE doc_id = $1 AND checkpoint = 1 \
                 AND seq < COALESCE((SELECT MIN(seq) FROM ops WHERE doc_id = $1), $2) - 1 \
                 AND seq NOT IN (SELECT seq FROM snapshots WHERE doc_id = $1 ORDER BY seq DESC LIMIT $3)",
            )
            .bind(doc_id)
            .bind(seq)
            .bind(keep_snapshots.max(1) as i64)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Number of op-log rows of a document (for tests and history).
    pub async fn op_count(&self, doc_id: &str) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) FROM ops WHERE doc_id = $1")
            .bind(doc_id)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }

    /// Records a revoked token id with its token's expiry (Unix seconds), pruning rows whose
    /// tokens have expired anyway. Returns once committed.
    pub async fn revoke_token(&self, jti: &str, expires_at: i64) -> Result<(), StoreError> {
        let now_secs = now_ms() / 1000;
        sqlx::query("DELETE FROM revoked_tokens WHERE expires_at <= $1")
            .bind(now_secs)
            .execute(&self.pool)
            .await?;
        sqlx::query(
            "INSERT INTO revoked_tokens (jti, expires_at, revoked_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (jti) DO NOTHING",
        )
        .bind(jti)
        .bind(expires_at)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The revoked token ids whose tokens have not expired, with their expiry (Unix seconds).
    pub async fn revoked_tokens(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query("SELECT jti, expires_at FROM revoked_tokens WHERE expires_at > $1")
            .bind(now_ms() / 1000)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    /// Closes the pool, waiting for in-flight queries, and lets another process open a SQLite
    /// file.
    pub async fn close(&self) {
        self.pool.close().await;
        self.file_lock
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
    }
}

fn meta_row(row: &AnyRow) -> Result<DocMeta, sqlx::Error> {
    Ok(DocMeta {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        created_ms: row.try_get(2)?,
        updated_ms: row.try_get(3)?,
        version: row.try_get(4)?,
        length: row.try_get(5)?,
    })
}

fn op_row(row: &AnyRow) -> Result<OpRow, sqlx::Error> {
    Ok(OpRow {
        seq: row.try_get(0)?,
        update_v1: row.try_get(1)?,
    })
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// True when `ops` are exactly the rows `known + 1 ..= upto`.
fn dense(ops: &[OpRow], known: i64, upto: i64) -> bool {
    ops.len() as i64 == upto - known && ops.first().is_none_or(|op| op.seq == known + 1)
}

/// The rows after `known` up to `upto`, read inside the commit's transaction.
async fn missed_rows(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    doc_id: &str,
    known: i64,
    upto: i64,
) -> Result<Vec<OpRow>, StoreError> {
    if upto <= known {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(
        "SELECT seq, update_v1 FROM ops WHERE doc_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq",
    )
    .bind(doc_id)
    .bind(known)
    .bind(upto)
    .fetch_all(&mut **tx)
    .await?;
    Ok(rows.iter().map(op_row).collect::<Result<_, _>>()?)
}

/// Takes an exclusive lock beside a SQLite database file (`PATH.lock`), so a second process on
/// the same file is refused: SQLite is the single-server default, and two servers numbering
/// one document's rows would have to share a database that can coordinate them (PostgreSQL).
/// In-memory databases need none.
fn lock_sqlite_file(url: &str) -> Result<Option<File>, StoreError> {
    let path = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let path = path.split('?').next().unwrap_or_default();
    if path.is_empty() || path.contains(":memory:") || url.contains("mode=memory") {
        return Ok(None);
    }
    let lock_path = format!("{path}.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| StoreError::Locked(format!("cannot open the lock file {lock_path}: {e}")))?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked(format!(
            "the SQLite database {path} is in use by another quire-server (lock {lock_path}): \
             SQLite serves one process; stop the other server, or run several on PostgreSQL \
             (--database-url postgres://…)"
        ))),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(StoreError::Locked(format!("cannot lock {lock_path}: {e}")))
        }
    }
}
