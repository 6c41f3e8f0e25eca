//! The store (`quire_backend::store`) tested directly, without a server: the same cases on
//! SQLite (a temp file) and PostgreSQL (a database of the test's own).
//!
//! Op payloads are opaque to the store, so fixed bytes stand in for Yjs updates. Op retention
//! compares receive times with the clock; instead of sleeping, a test backdates rows through a
//! connection of its own, so every case is deterministic.

use std::time::Duration;

use quire_backend::store::{AtError, DocState, Loaded, NewOp, Store, StoreError, StoredDoc};
use quire_tests::server::{PgDatabase, TempDir};
use sqlx::AnyPool;

/// A store on a fresh database, and a raw pool on the same database for what the store's API
/// does not expose (backdating and damaging rows). Holds the database so it outlives the test.
struct Fixture {
    store: Store,
    raw: AnyPool,
    _dir: Option<TempDir>,
    _pg: Option<PgDatabase>,
}

impl Fixture {
    async fn sqlite() -> Fixture {
        let dir = TempDir::new("store");
        let url = format!("sqlite:{}", dir.path().join("quire.db").display());
        let store = Store::connect(&url).await.expect("open SQLite store");
        let raw = AnyPool::connect(&url).await.expect("raw SQLite pool");
        Fixture {
            store,
            raw,
            _dir: Some(dir),
            _pg: None,
        }
    }

    async fn postgres() -> Fixture {
        let pg = PgDatabase::create().await;
        let store = Store::connect(pg.url())
            .await
            .expect("open PostgreSQL store");
        let raw = AnyPool::connect(pg.url())
            .await
            .expect("raw PostgreSQL pool");
        Fixture {
            store,
            raw,
            _dir: None,
            _pg: Some(pg),
        }
    }

    /// Makes every op of `doc` look received at the Unix epoch, i.e. older than any retention.
    async fn backdate_ops(&self, doc: &str) {
        sqlx::query("UPDATE ops SET received_ms = 0 WHERE doc_id = $1")
            .bind(doc)
            .execute(&self.raw)
            .await
            .expect("backdate ops");
    }

    /// Overwrites the state of `doc`'s snapshot at `seq` without fixing its checksum.
    async fn damage_snapshot(&self, doc: &str, seq: i64) {
        sqlx::query("UPDATE snapshots SET state_v1 = $1 WHERE doc_id = $2 AND seq = $3")
            .bind(&b"damaged"[..])
            .bind(doc)
            .bind(seq)
            .execute(&self.raw)
            .await
            .expect("damage snapshot");
    }
}

/// Defines `mod $case { sqlite(); postgres(); }` running `async fn $case(&Fixture)` on each.
macro_rules! on_both {
    ($case:ident) => {
        mod $case {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let fx = super::Fixture::sqlite().await;
                bounded(super::$case(&fx)).await;
                fx.store.close().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let fx = super::Fixture::postgres().await;
                bounded(super::$case(&fx)).await;
                fx.store.close().await;
            }

            async fn bounded(case: impl std::future::Future<Output = ()>) {
                tokio::time::timeout(std::time::Duration::from_secs(60), case)
                    .await
                    .expect("store case did not finish within 60 s");
            }
        }
    };
}

/// The payload of op `seq`: distinct per seq so order and identity can be checked.
fn payload(seq: i64) -> Vec<u8> {
    format!("update-{seq}").into_bytes()
}

fn op(seq: i64) -> NewOp {
    NewOp {
        seq,
        update_v1: payload(seq),
        origin: Some(format!("conn-{}", seq % 2)),
        chars: Some((seq as u64, 0)),
        author: (seq % 3 == 0).then(|| "ada".into()),
        inserted: None,
    }
}

fn ops(seqs: std::ops::RangeInclusive<i64>) -> Vec<NewOp> {
    seqs.map(op).collect()
}

/// Creates `doc` (as a WebSocket connection would) and appends ops `1..=n`.
async fn doc_with_ops(store: &Store, doc: &str, n: i64) {
    assert!(matches!(
        store.load(doc, true).await.unwrap(),
        Loaded::Doc(_)
    ));
    assert_eq!(commit(store, doc, &ops(1..=n), 0, Some(n)).await, 1);
}

/// Commits `ops` as a server holding `known` would (a fresh batch name, no retry); the seq of
/// the first.
async fn commit(store: &Store, doc: &str, ops: &[NewOp], known: i64, length: Option<i64>) -> i64 {
    store
        .commit(
            doc,
            ops,
            known,
            &format!("test/{known}/{}", ops.len()),
            false,
            length,
        )
        .await
        .unwrap()
        .first_seq
}

fn loaded(l: Loaded) -> StoredDoc {
    match l {
        Loaded::Doc(d) => d,
        other => panic!("expected a document, got {other:?}"),
    }
}

fn seqs(d: &StoredDoc) -> Vec<i64> {
    d.ops.iter().map(|o| o.seq).collect()
}

/// Every op's payload is the one appended under its seq.
fn assert_payloads(d: &StoredDoc) {
    for o in &d.ops {
        assert_eq!(o.update_v1, payload(o.seq), "payload of seq {}", o.seq);
    }
}

fn snapshot_seq(d: &StoredDoc) -> Option<i64> {
    d.snapshot.as_ref().map(|(seq, _)| *seq)
}

async fn append_and_load(fx: &Fixture) {
    let s = &fx.store;
    let fresh = loaded(s.load("doc", true).await.unwrap());
    assert!(fresh.snapshot.is_none() && fresh.ops.is_empty());
    assert_eq!((fresh.recorded, fresh.last_seq()), ((0, 0), 0));
    assert_eq!(s.state("doc").await.unwrap(), DocState::Live);

    assert_eq!(commit(s, "doc", &ops(1..=3), 0, Some(30)).await, 1);
    // Without a length the recorded one stays.
    assert_eq!(commit(s, "doc", &ops(4..=5), 3, None).await, 4);

    let d = loaded(s.load("doc", false).await.unwrap());
    assert_eq!(seqs(&d), [1, 2, 3, 4, 5]);
    assert_payloads(&d);
    assert!(d.snapshot.is_none());
    assert_eq!((d.recorded, d.last_seq()), ((5, 30), 5));
    let meta = s.meta("doc").await.unwrap().expect("meta");
    assert_eq!((meta.version, meta.length), (5, 30));
    assert_eq!(s.op_count("doc").await.unwrap(), 5);

    let between = s.ops_between("doc", 1, 3).await.unwrap();
    assert_eq!(between.iter().map(|o| o.seq).collect::<Vec<_>>(), [2, 3]);

    let history = s.history("doc", 5, 2).await.unwrap();
    let rows: Vec<_> = history
        .iter()
        .map(|h| (h.seq, h.origin.as_deref(), h.chars))
        .collect();
    assert_eq!(
        rows,
        [
            (4, Some("conn-0"), Some((4, 0))),
            (3, Some("conn-1"), Some((3, 0)))
        ]
    );

    // More rows than one INSERT statement takes still land in one call, in order.
    let many = ops(6..=2_505);
    assert_eq!(commit(s, "doc", &many, 5, None).await, 6);
    let d = loaded(s.load("doc", false).await.unwrap());
    assert_eq!(seqs(&d), (1..=2_505).collect::<Vec<_>>());
    assert_payloads(&d);
}
on_both!(append_and_load);

async fn writers_sharing_a_document(fx: &Fixture) {
    let s = &fx.store;
    doc_with_ops(s, "doc", 2).await;
    // Two servers both holding version 2 commit: the store numbers them one after the other,
    // and the second learns the first's rows (what it must apply and relay), never a clash.
    assert_eq!(commit(s, "doc", &ops(3..=4), 2, Some(4)).await, 3);
    let second = s
        .commit("doc", &[op(5)], 2, "other/1", false, Some(99))
        .await
        .unwrap();
    assert_eq!(second.first_seq, 5);
    assert!(second.missed.snapshot.is_none());
    assert_eq!(second.missed.upto, 4);
    assert_eq!(
        second.missed.ops.iter().map(|o| o.seq).collect::<Vec<_>>(),
        [3, 4]
    );
    let d = loaded(s.load("doc", false).await.unwrap());
    assert_eq!(seqs(&d), [1, 2, 3, 4, 5]);
    assert_payloads(&d);
    // The second writer's length was measured without the first's rows: not recorded.
    assert_eq!(d.recorded, (5, 4));
    // A version is never moved back, nor a length recorded for a version already passed.
    s.set_stats("doc", 3, 1).await.unwrap();
    let d = loaded(s.load("doc", false).await.unwrap());
    assert_eq!(d.recorded, (5, 4));
}
on_both!(writers_sharing_a_document);

async fn retried_commits(fx: &Fixture) {
    let s = &fx.store;
    doc_with_ops(s, "doc", 2).await;
    let first = s
        .commit("doc", &ops(3..=4), 2, "node/1/7", false, None)
        .await
        .unwrap();
    assert_eq!(first.first_seq, 3);
    // The reply was lost (say the connection dropped around COMMIT): the retry finds its rows.
    let again = s
        .commit("doc", &ops(3..=4), 2, "node/1/7", true, None)
        .await
        .unwrap();
    assert_eq!(again.first_seq, 3);
    assert_eq!(s.op_count("doc").await.unwrap(), 4);
    // A retry of a batch that never landed writes it.
    let late = s
        .commit("doc", &[op(5)], 4, "node/1/8", true, None)
        .await
        .unwrap();
    assert_eq!(late.first_seq, 5);
    let d = loaded(s.load("doc", false).await.unwrap());
    assert_eq!(seqs(&d), [1, 2, 3, 4, 5]);
    assert_payloads(&d);
}
on_both!(retried_commits);

async fn conflicts_fail_loudly(fx: &Fixture) {
    let s = &fx.store;
    doc_with_ops(s, "doc", 2).await;
    // A server claiming a version the store never gave out is a bug: an error, nothing written.
    assert!(matches!(
        s.commit("doc", &[op(11)], 10, "x/1", false, None).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.op_count("doc").await.unwrap(), 2);
    // A deleted document takes no rows.
    s.delete("doc").await.unwrap();
    assert!(matches!(
        s.commit("doc", &[op(3)], 2, "x/2", false, None).await,
        Err(StoreError::Deleted)
    ));
}
on_both!(conflicts_fail_loudly);

async fn catching_up_past_compacted_rows(fx: &Fixture) {
    let s = &fx.store;
    doc_with_ops(s, "doc", 6).await;
    let rows = s.catch_up("doc", 2, 4).await.unwrap();
    assert!(rows.snapshot.is_none());
    assert_eq!(rows.ops.iter().map(|o| o.seq).collect::<Vec<_>>(), [3, 4]);
    fx.backdate_ops("doc").await;
    s.save_snapshot("doc", 4, b"state-4", 3, Some(Duration::from_secs(3_600)))
        .await
        .unwrap();
    // Rows 3 and 4 are gone: a server holding 2 gets the snapshot and what follows it.
    let rows = s.catch_up("doc", 2, 6).await.unwrap();
    assert_eq!(rows.snapshot, Some((4, b"state-4".to_vec())));
    assert_eq!(rows.ops.iter().map(|o| o.seq).collect::<Vec<_>>(), [5, 6]);
    assert_eq!(rows.upto, 6);
    assert_eq!(
        s.tail("doc").await.unwrap(),
        quire_backend::store::Tail::Live(6)
    );
    assert_eq!(
        s.tails(&["doc".into(), "nope".into()]).await.unwrap(),
        [("doc".to_string(), 6)]
    );
}
on_both!(catching_up_past_compacted_rows);

async fn snapshot_then_load(fx: &Fixture) {
    let s = &fx.store;
    doc_with_ops(s, "doc", 5).await;
    s.save_snapshot("doc", 3, b"state-3", 2, None)
        .await
        .unwrap();
    let d = loaded(s.load("doc", false).await.unwrap());
    assert_eq!(d.snapshot, Some((3, b"state-3".to_vec())));
    assert_eq!(seqs(&d), [4, 5]);
    assert_payloads(&d);
    assert_eq!(d.last_seq(), 5);
    // No op retention: the op log is whole.
    assert_eq!(s.op_count("doc").await.unwrap(), 5);

    // Saving the same seq again keeps the first state.
    s.save_snapshot("doc", 3, b"other", 2, None).await.unwrap();
    s.save_snapshot("doc", 5, b"state-5", 2, None)
        .await
        .unwrap();
    let d = loaded(s.load("doc", false).await.unwrap());
    assert_eq!(d.snapshot, Some((5, b"state-5".to_vec())));
    assert!(d.ops.is_empty());
    assert_eq!(d.last_seq(), 5);
    let at3 = s.load_at("doc", 3).await.unwrap();
    assert_eq!(at3.snapshot, Some((3, b"state-3".to_vec())));
}
on_both!(snapshot_then_load);

async fn damaged_snapshot_is_skipped(fx: &Fixture) {
    let s = &fx.store;
    doc_with_ops(s, "doc", 6).await;
    s.save_snapshot("doc", 2, b"state-2", 3, None)
        .await
        .unwrap();
    s.save_snapshot("doc", 4, b"state-4", 3, None)
        .await
        .unwrap();
    fx.damage_snapshot("doc", 4).await;
    let d = loaded(s.load("doc", false).await.unwrap());
    assert_eq!(d.snapshot, Some((2, b"state-2".to_vec())));
    assert_eq!(seqs(&d), [3, 4, 5, 6]);
    assert_payloads(&d);

    fx.damage_snapshot("doc", 2).await;
    let d = loaded(s.load("doc", false).await.unwrap());
    assert!(d.snapshot.is_none());
    assert_eq!(seqs(&d), [1, 2, 3, 4, 5, 6]);
}
on_both!(damaged_snapshot_is_skipped);

async fn snapshot_retention(fx: &Fixture) {
    let s = &fx.store;
    doc_with_ops(s, "doc", 5).await;
    for seq in 1..=4 {
        let state = format!("state-{seq}").into_bytes();
        s.save_snapshot("doc", seq, &state, 2, None).await.unwrap();
    }
    // Only the newest two (3 and 4) are kept; without them, versions below build from ops.
    let at2 = s.load_at("doc", 2).await.unwrap();
    assert!(at2.snapshot.is_none());
    assert_eq!(seqs(&at2), [1, 2]);
    assert_eq!(snapshot_seq(&s.load_at("doc", 3).await.unwrap()), Some(3));
    assert_eq!(snapshot_seq(&s.load_at("doc", 4).await.unwrap()), Some(4));

    // Keeping zero snapshots keeps one: the one just saved.
    s.save_snapshot("doc", 5, b"state-5", 0, None)
        .await
        .unwrap();
    assert!(s.load_at("doc", 4).await.unwrap().snapshot.is_none());
    assert_eq!(snapshot_seq(&s.load_at("doc", 5).await.unwrap()), Some(5));
}
on_both!(snapshot_retention);

async fn op_retention(fx: &Fixture) {
    let s = &fx.store;
    doc_with_ops(s, "doc", 6).await;
    let hour = Some(Duration::from_secs(3_600));

    // Ops younger than the retention stay, even when a snapshot covers them.
    s.save_snapshot("doc", 2, b"state-2", 3, hour)
        .await
        .unwrap();
    assert_eq!(s.op_count("doc").await.unwrap(), 6);

    // Old ops covered by the snapshot go; old ops after it stay.
    fx.backdate_ops("doc").await;
    s.save_snapshot("doc", 4, b"state-4", 3, hour)
        .await
        .unwrap();
    assert_eq!(s.op_count("doc").await.unwrap(), 2);
    let d = loaded(s.load("doc", false).await.unwrap());
    assert_eq!(d.snapshot, Some((4, b"state-4".to_vec())));
    assert_eq!(seqs(&d), [5, 6]);
    assert_payloads(&d);
    assert_eq!(d.last_seq(), 6);
    let history: Vec<i64> = s
        .history("doc", i64::MAX, 10)
        .await
        .unwrap()
        .iter()
        .map(|h| h.seq)
        .collect();
    assert_eq!(history, [6, 5]);

    // Versions at a kept snapshot, or after one with the ops between, still build...
    let at2 = s.load_at("doc", 2).await.unwrap();
    assert_eq!((snapshot_seq(&at2), seqs(&at2)), (Some(2), vec![]));
    let at6 = s.load_at("doc", 6).await.unwrap();
    assert_eq!((snapshot_seq(&at6), seqs(&at6)), (Some(4), vec![5, 6]));
    // ...versions that need compacted ops do not, and say the oldest that does.
    for version in [1, 3] {
        match s.load_at("doc", version).await {
            Err(AtError::Compacted { version: v, oldest }) => assert_eq!((v, oldest), (version, 2)),
            other => panic!("load_at {version}: expected Compacted, got {other:?}"),
        }
    }
}
on_both!(op_retention);

async fn load_at_version(fx: &Fixture) {
    let s = &fx.store;
    doc_with_ops(s, "doc", 4).await;
    let at0 = s.load_at("doc", 0).await.unwrap();
    assert!(at0.snapshot.is_none() && at0.ops.is_empty());
    let at2 = s.load_at("doc", 2).await.unwrap();
    assert!(at2.snapshot.is_none());
    assert_eq!(seqs(&at2), [1, 2]);
    assert_payloads(&at2);
    assert_eq!(at2.recorded, (2, 0));

    s.save_snapshot("doc", 3, b"state-3", 2, None)
        .await
        .unwrap();
    // A snapshot newer than the version is not used.
    assert_eq!(seqs(&s.load_at("doc", 2).await.unwrap()), [1, 2]);
    let at4 = s.load_at("doc", 4).await.unwrap();
    assert_eq!((snapshot_seq(&at4), seqs(&at4)), (Some(3), vec![4]));
    assert_eq!(at4.last_seq(), 4);

    // A version past the last op finds too few ops and is reported as compacted (today's
    // behaviour: callers check the version against the document's first).
    match s.load_at("doc", 9).await {
        Err(AtError::Compacted { version, oldest }) => assert_eq!((version, oldest), (9, 0)),
        other => panic!("expected Compacted, got {other:?}"),
    }
}
on_both!(load_at_version);

async fn deletion(fx: &Fixture) {
    let s = &fx.store;
    doc_with_ops(s, "doc", 3).await;
    doc_with_ops(s, "kept", 2).await;
    s.save_snapshot("doc", 2, b"state-2", 2, None)
        .await
        .unwrap();
    s.delete("doc").await.unwrap();

    assert_eq!(s.state("doc").await.unwrap(), DocState::Deleted);
    assert!(matches!(
        s.load("doc", false).await.unwrap(),
        Loaded::Deleted
    ));
    // The id stays taken: neither a connection nor a create brings it back.
    assert!(matches!(
        s.load("doc", true).await.unwrap(),
        Loaded::Deleted
    ));
    assert!(!s.create("doc", Some("again")).await.unwrap());
    assert!(s.meta("doc").await.unwrap().is_none());
    assert!(s.rename("doc", Some("x")).await.unwrap().is_none());
    assert_eq!(s.op_count("doc").await.unwrap(), 0);
    assert!(s.load_at("doc", 0).await.unwrap().snapshot.is_none());
    let listed: Vec<String> = s
        .list(None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(listed, ["kept"]);

    // Other documents are untouched.
    let kept = loaded(s.load("kept", false).await.unwrap());
    assert_eq!(seqs(&kept), [1, 2]);
}
on_both!(deletion);

async fn unknown_and_created_documents(fx: &Fixture) {
    let s = &fx.store;
    assert!(matches!(
        s.load("nope", false).await.unwrap(),
        Loaded::Missing
    ));
    assert_eq!(s.state("nope").await.unwrap(), DocState::Missing);
    assert!(s.meta("nope").await.unwrap().is_none());
    assert_eq!(s.op_count("nope").await.unwrap(), 0);
    // Committing to an unknown document fails and stores nothing.
    assert!(matches!(
        s.commit("nope", &ops(1..=1), 0, "x/1", false, None).await,
        Err(StoreError::Deleted)
    ));
    assert_eq!(s.op_count("nope").await.unwrap(), 0);
    assert_eq!(s.state("nope").await.unwrap(), DocState::Missing);

    assert!(s.create("b", Some("Bee")).await.unwrap());
    assert!(!s.create("b", None).await.unwrap());
    assert!(s.create("a", None).await.unwrap());
    assert!(s.create("c", None).await.unwrap());
    let meta = s.meta("b").await.unwrap().expect("meta of b");
    assert_eq!(
        (meta.name.as_deref(), meta.version, meta.length),
        (Some("Bee"), 0, 0)
    );
    let renamed = s.rename("b", None).await.unwrap().expect("renamed b");
    assert_eq!(renamed.name, None);
    s.set_stats("b", 7, 11).await.unwrap();
    let meta = s.meta("b").await.unwrap().expect("meta of b");
    assert_eq!((meta.version, meta.length), (7, 11));

    let ids = |page: Vec<quire_backend::store::DocMeta>| -> Vec<String> {
        page.into_iter().map(|m| m.id).collect()
    };
    assert_eq!(ids(s.list(None, 2).await.unwrap()), ["a", "b"]);
    assert_eq!(ids(s.list(Some("b"), 2).await.unwrap()), ["c"]);
}
on_both!(unknown_and_created_documents);

#[tokio::test]
async fn unsupported_url_is_refused() {
    match Store::connect("mysql://localhost/quire").await {
        Err(StoreError::UnsupportedUrl(url)) => assert_eq!(url, "mysql://localhost/quire"),
        Err(other) => panic!("expected UnsupportedUrl, got {other}"),
        Ok(_) => panic!("a MySQL URL was accepted"),
    }
}
