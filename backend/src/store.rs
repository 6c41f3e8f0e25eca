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

/// PostgreSQL accepts at most 65,535 bind parameters per statement; 5 per op row.
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
    /// Who sent it (a connection id), for history.
    pub origin: Option<String>,
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

    /// Creates the document if it does not exist and reads what loading it needs.
    ///
    /// A snapshot whose checksum does not match is skipped (an older one, or the full op log, is
    /// used instead), so a damaged snapshot costs load time, never data.
    pub async fn load(&self, doc_id: &str) -> Result<StoredDoc, StoreError> {
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

        let mut stored = StoredDoc::default();
        let snapshots = sqlx::query(
            "SELECT seq, state_v1, crc32 FROM snapshots WHERE doc_id = $1 ORDER BY seq DESC LIMIT 3",
        )
        .bind(doc_id)
        .fetch_all(&self.pool)
        .await?;
        for row in snapshots {
            let seq: i64 = row.try_get(0)?;
            let state: Vec<u8> = row.try_get(1)?;
            let crc: i64 = row.try_get(2)?;
            if i64::from(crc32fast::hash(&state)) == crc {
                stored.snapshot = Some((seq, state));
                break;
            }
            tracing::error!(
                doc = doc_id,
                seq,
                "snapshot checksum mismatch; using an older state"
            );
        }
        let after = stored.snapshot.as_ref().map_or(0, |(seq, _)| *seq);
        let rows = sqlx::query(
            "SELECT seq, update_v1 FROM ops WHERE doc_id = $1 AND seq > $2 ORDER BY seq",
        )
        .bind(doc_id)
        .bind(after)
        .fetch_all(&self.pool)
        .await?;
        stored.ops = rows.iter().map(op_row).collect::<Result<_, _>>()?;
        Ok(stored)
    }

    /// Appends `ops` to the op log in one transaction (group commit). Returns how many rows were
    /// new: a retry after an ambiguous failure finds its rows already there and adds nothing.
    pub async fn append(&self, doc_id: &str, ops: &[NewOp]) -> Result<u64, StoreError> {
        if ops.is_empty() {
            return Ok(0);
        }
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        let mut inserted = 0;
        for chunk in ops.chunks(OPS_PER_INSERT) {
            let mut sql = String::from(
                "INSERT INTO ops (doc_id, seq, update_v1, received_ms, origin) VALUES ",
            );
            for i in 0..chunk.len() {
                let b = i * 5;
                if i > 0 {
                    sql.push(',');
                }
                sql.push_str(&format!(
                    "(${},${},${},${},${})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5
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
                    .bind(op.origin.as_deref());
            }
            inserted += query.execute(&mut *tx).await?.rows_affected();
        }
        sqlx::query("UPDATE documents SET updated_ms = $1 WHERE id = $2")
            .bind(now)
            .bind(doc_id)
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

    /// Closes the pool, waiting for in-flight queries.
    pub async fn close(&self) {
        self.pool.close().await;
    }
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
