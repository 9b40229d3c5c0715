//! One store conformance suite, run on memory, local disk and a real S3 server: what tickvault
//! needs from an object store must hold on each of them.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt};
use tickvault::Store;
use tickvault::catalog::{Catalog, Transaction};

use super::moto;
use crate::common::*;

/// Rows of two symbols over a year boundary (two partitions each).
fn batch(close: f64) -> Vec<Row> {
    let mut rows = Vec::new();
    for sym in ["AAPL", "BRK.B"] {
        for d in 0..5 {
            rows.push(row(sym, "1d", T2021 - 2 * DAY + d * DAY, close + d as f64));
        }
    }
    rows
}

async fn writes_and_upserts(os: Arc<dyn ObjectStore>) {
    let store = Store::open_with(Arc::clone(&os), "suite").await.unwrap();
    store.write(&bars(&batch(1.0))).await.unwrap();
    // Upsert: the same keys with new values, plus one new key.
    let mut newer = batch(100.0);
    newer.truncate(3);
    newer.push(row("^GSPC", "1d", T2021, 7.0));
    store.write(&bars(&newer)).await.unwrap();
    let got = contents(&store).await;
    assert_eq!(got.len(), 11);
    assert_eq!(got[&("AAPL".into(), "1d".into(), T2021 - 2 * DAY)], 100.0);
    assert_eq!(got[&("AAPL".into(), "1d".into(), T2021 + 2 * DAY)], 5.0);
    // A second process sees exactly the same.
    let other = Store::open_with(os, "suite").await.unwrap();
    assert_eq!(contents(&other).await, got);
}

async fn compaction_and_gc(os: Arc<dyn ObjectStore>) {
    let store = Store::open_with(Arc::clone(&os), "suite").await.unwrap();
    for i in 0..6 {
        // Appends to one partition: each adds a file (compaction starts past 4).
        let rows: Vec<Row> = (0..3)
            .map(|d| row("ES=F", "1m", T2021 + (i * 3 + d) * MINUTE, i as f64))
            .collect();
        store.write(&bars(&rows)).await.unwrap();
    }
    let before = contents(&store).await;
    assert_eq!(store.catalog().snapshot().files().count(), 6);
    let c = store.compact().await.unwrap();
    assert_eq!(c.partitions_compacted, 1, "{c:?}");
    assert_eq!(store.catalog().snapshot().files().count(), 1);
    assert_eq!(contents(&store).await, before);
    let g = store.gc(Duration::ZERO).await.unwrap();
    assert_eq!(g.removed_deleted, c.files_removed, "{g:?}");
    let fresh = Store::open_with(os, "suite").await.unwrap();
    assert_eq!(contents(&fresh).await, before);
    let report = fresh.check().await.unwrap();
    assert!(report.is_clean() && report.orphans.is_empty(), "{report:?}");
}

async fn one_of_concurrent_committers_wins(os: Arc<dyn ObjectStore>) {
    let store = Store::open_with(Arc::clone(&os), "suite").await.unwrap();
    store.write(&bars(&batch(1.0))).await.unwrap();
    let original = store.catalog().snapshot().files().next().unwrap().clone();
    let partition = original.partition();
    // Four processes, each with its own catalog, all change the same partition from one base.
    let mut catalogs = Vec::new();
    for _ in 0..4 {
        catalogs.push(Arc::new(Catalog::load(Arc::clone(&os)).await.unwrap()));
    }
    let base = catalogs[0].snapshot().seq;
    let attempts = catalogs.iter().enumerate().map(|(i, catalog)| {
        let catalog = Arc::clone(catalog);
        // Each replaces the partition's file, as a compaction would.
        let replacement = tickvault::catalog::FileMeta {
            path: original
                .path
                .replace(".parquet", &format!("-racer{i}.parquet")),
            ..original.clone()
        };
        let txn = Transaction {
            base,
            operation: format!("racer {i}"),
            add: vec![replacement],
            remove: vec![original.path.clone()],
            read: [partition.clone()].into(),
        };
        tokio::spawn(async move { catalog.commit(txn).await })
    });
    let results = futures::future::join_all(attempts).await;
    let wins = results
        .iter()
        .filter(|r| r.as_ref().unwrap().is_ok())
        .count();
    assert_eq!(wins, 1, "exactly one racer commits: {results:?}");
    for r in results {
        if let Err(e) = r.unwrap() {
            assert!(e.to_string().contains("conflict"), "{e}");
        }
    }
    let after = Catalog::load(os).await.unwrap();
    assert_eq!(after.snapshot().seq.0, base.0 + 1);
}

async fn failure_between_file_write_and_commit(os: Arc<dyn ObjectStore>) {
    let test_store = TestStore::new(os);
    let store = Store::open_with(Arc::<TestStore>::clone(&test_store), "suite")
        .await
        .unwrap();
    store.write(&bars(&batch(1.0))).await.unwrap();
    let before = contents(&store).await;
    test_store.fail_commits.store(true, Ordering::SeqCst);
    let err = store.write(&bars(&batch(50.0))).await.unwrap_err();
    assert!(err.to_string().contains("injected failure"), "{err}");
    test_store.fail_commits.store(false, Ordering::SeqCst);
    assert_eq!(
        contents(&store).await,
        before,
        "nothing of the failed write shows"
    );
    let reopened = Store::open_with(Arc::<TestStore>::clone(&test_store), "suite")
        .await
        .unwrap();
    assert_eq!(contents(&reopened).await, before);
    let report = reopened.check().await.unwrap();
    assert!(
        report.is_clean() && report.orphans.is_empty(),
        "the writer deleted its files"
    );

    // A writer killed between its file put and its commit cannot clean up: its file is an
    // orphan that `check` reports and `gc` deletes, and no reader ever sees it.
    let any = reopened
        .catalog()
        .snapshot()
        .files()
        .next()
        .unwrap()
        .clone();
    let from = object_store::path::Path::from(any.path.as_str());
    let orphan = object_store::path::Path::from(any.path.replace(".parquet", "-crashed.parquet"));
    test_store.copy(&from, &orphan).await.unwrap();
    assert_eq!(contents(&reopened).await, before);
    assert_eq!(reopened.check().await.unwrap().orphans.len(), 1);
    let g = reopened.gc(Duration::ZERO).await.unwrap();
    assert_eq!(g.orphans_deleted, 1, "{g:?}");
    assert!(reopened.check().await.unwrap().orphans.is_empty());
    assert_eq!(contents(&reopened).await, before);
}

/// Runs every case, each on a fresh store from `fresh`.
async fn suite<F, Fut>(fresh: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Arc<dyn ObjectStore>>,
{
    writes_and_upserts(fresh().await).await;
    compaction_and_gc(fresh().await).await;
    one_of_concurrent_committers_wins(fresh().await).await;
    failure_between_file_write_and_commit(fresh().await).await;
}

#[tokio::test]
async fn conformance_memory() {
    suite(|| async { Arc::new(InMemory::new()) as Arc<dyn ObjectStore> }).await;
}

#[tokio::test]
async fn conformance_local_disk() {
    let dir = tempfile::tempdir().unwrap();
    let n = std::sync::atomic::AtomicUsize::new(0);
    suite(|| {
        let path = dir
            .path()
            .join(n.fetch_add(1, Ordering::SeqCst).to_string());
        async move {
            let url = tickvault::storage::StoreUrl::Local(path);
            tickvault::storage::open_object_store(&url, &Default::default())
                .unwrap()
                .store
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_s3() {
    let server = moto::shared();
    suite(|| async {
        let bucket = server.bucket("suite").await;
        moto::open(&server.endpoint, &bucket).store
    })
    .await;
}
