//! The store: documents, the op log and snapshots, in PostgreSQL or SQLite behind one interface.
//!
//! The same SQL runs on both (sqlx's `Any` driver, `$N` placeholders, times as Unix ms); only the
//! migrations differ (`migrations/postgres`, `migrations/sqlite`) because the column types do.
//!
//! Durability contract: [`Store::append`] returns only after the rows are committed. The document
//! actor relays nothing before that, so anything a collaborator has seen survives kill -9.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor, Row};

static PG_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/postgres");
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("../migrations/sqlite");

/// PostgreSQL accepts at most 65,535 bind parameters per statement; 7 per op row.
const OPS_PER_INSERT: usize = 2_000;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported database URL {0:?}: use postgres://… or sqlite:…")]
    UnsupportedUrl(String),
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
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
}

/// A stored op-log row.
#[derive(Debug, Clone)]
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
    /// `None` for rows written before char counts were recorded.
    pub chars: Option<(i64, i64)>,
}

/// Why the state as of a version cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum AtError {
    #[error("version {version} is no longer in the op log (it was compacted); the oldest version available is {oldest}")]
    Compacted { version: i64, oldest: i64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

const META_COLUMNS: &str = "id, name, created_ms, updated_ms, version, length_chars";

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
        Ok(Store { pool, backend })
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
        if create {
            let now = now_ms();
            sqlx::query(
                "INSERT INTO documents (id, created_ms, updated_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(doc_id)
            .bind(now)
            .bind(now)
            .execute(&self.pool)
            .await?;
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
        }))
    }

    /// The newest snapshot covering at most `seq` whose checksum matches, and the seq it covers
    /// (0 without one).
    async fn snapshot_at_most(
        &self,
        doc_id: &str,
        seq: i64,
    ) -> Result<(Option<(i64, Vec<u8>)>, i64), StoreError> {
        let snapshots = sqlx::query(
            "SELECT seq, state_v1, crc32 FROM snapshots WHERE doc_id = $1 AND seq <= $2 \
             ORDER BY seq DESC LIMIT 3",
        )
        .bind(doc_id)
        .bind(seq)
        .fetch_all(&self.pool)
        .await?;
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
        sqlx::query("DELETE FROM snapshots WHERE doc_id = $1")
            .bind(doc_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records a document's version and length (after a load found them stale).
    pub async fn set_stats(
        &self,
        doc_id: &str,
        version: i64,
        length: i64,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE documents SET version = $1, length_chars = $2 WHERE id = $3")
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

    /// Up to `limit` op-log rows with `seq < before`, newest first.
    pub async fn history(
        &self,
        doc_id: &str,
        before: i64,
        limit: i64,
    ) -> Result<Vec<HistoryRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT seq, received_ms, origin, chars_inserted, chars_deleted FROM ops \
             WHERE doc_id = $1 AND seq < $2 ORDER BY seq DESC LIMIT $3",
        )
        .bind(doc_id)
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let ins: Option<i64> = row.try_get(3)?;
            let del: Option<i64> = row.try_get(4)?;
            out.push(HistoryRow {
                seq: row.try_get(0)?,
                received_ms: row.try_get(1)?,
                origin: row.try_get(2)?,
                chars: ins.zip(del),
            });
        }
        Ok(out)
    }

    /// Appends `ops` to the op log in one transaction (group commit). Returns how many rows were
    /// new: a retry after an ambiguous failure finds its rows already there and adds nothing.
    /// `version` and `length` (if known) are the document's after these ops, recorded on its row.
    pub async fn append(
        &self,
        doc_id: &str,
        ops: &[NewOp],
        version: i64,
        length: Option<i64>,
    ) -> Result<u64, StoreError> {
        if ops.is_empty() {
            return Ok(0);
        }
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let mut inserted = 0;
        for chunk in ops.chunks(OPS_PER_INSERT) {
            let mut sql = String::from(
                "INSERT INTO ops (doc_id, seq, update_v1, received_ms, origin, chars_inserted, \
                 chars_deleted) VALUES ",
            );
            for i in 0..chunk.len() {
                let b = i * 7;
                if i > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!(
                    "(${},${},${},${},${},${},${})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6,
                    b + 7
                ));
            }
            sql.push_str(" ON CONFLICT (doc_id, seq) DO NOTHING");
            let mut query = sqlx::query(&sql);
            for op in chunk {
                query = query
                    .bind(doc_id)
                    .bind(op.seq)
                    .bind(op.update_v1.as_slice())
                    .bind(now)
                    .bind(op.origin.as_deref())
                    .bind(op.chars.map(|c| c.0 as i64))
                    .bind(op.chars.map(|c| c.1 as i64));
            }
            inserted += query.execute(&mut *tx).await?.rows_affected();
        }
        match length {
            Some(length) => sqlx::query(
                "UPDATE documents SET updated_ms = $1, version = $2, length_chars = $3 WHERE id = $4",
            )
            .bind(now)
            .bind(version)
            .bind(length)
            .bind(doc_id),
            None => sqlx::query("UPDATE documents SET updated_ms = $1, version = $2 WHERE id = $3")
                .bind(now)
                .bind(version)
                .bind(doc_id),
        }
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(inserted)
    }

    /// Stores a snapshot covering every op up to `seq`, keeps the newest `keep_snapshots`, and
    /// deletes ops covered by it that are older than `op_retention` (`None`: keep the op log).
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
        sqlx::query(
            "INSERT INTO snapshots (doc_id, seq, state_v1, created_ms, crc32) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (doc_id, seq) DO NOTHING",
        )
        .bind(doc_id)
        .bind(seq)
        .bind(state_v1)
        .bind(now)
        .bind(i64::from(crc32fast::hash(state_v1)))
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM snapshots WHERE doc_id = $1 AND seq NOT IN \
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

    /// Closes the pool, waiting for in-flight queries.
    pub async fn close(&self) {
        self.pool.close().await;
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

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
