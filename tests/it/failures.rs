//! Failures between writing files and committing, and concurrent committers.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use object_store::ObjectStore;
use object_store::memory::InMemory;
use tickvault::Store;

use crate::common::*;

#[tokio::test]
async fn failed_commit_leaves_store_as_it_was_and_gc_removes_the_orphan() {
    let test_store = TestStore::new(Arc::new(InMemory::new()));
    let store = Store::open_with(Arc::<TestStore>::clone(&test_store), "test")
        .await
        .unwrap();
    store
        .write(&bars(&[row("A", "1d", T2021, 1.0)]))
        .await
        .unwrap();
    let before = contents(&store).await;
    let seq_before = store.catalog().snapshot().seq;

    test_store.fail_commits.store(true, Ordering::SeqCst);
    let err = store
        .write(&bars(&[
            row("A", "1d", T2021, 9.0),
            row("B", "1d", T2021, 2.0),
        ]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("injected failure"), "{err}");
    test_store.fail_commits.store(false, Ordering::SeqCst);

    assert_eq!(store.catalog().snapshot().seq, seq_before);
    assert_eq!(contents(&store).await, before);
    let reopened = Store::open_with(Arc::<TestStore>::clone(&test_store), "test")
        .await
        .unwrap();
    assert_eq!(contents(&reopened).await, before);
    assert!(reopened.check().await.unwrap().is_clean());
}

#[tokio::test]
async fn crash_before_commit_orphans_are_reported_and_collected() {
    // A writer that died after its file put: simulate by putting a file nobody commits.
    let object_store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let store = Store::open_with(Arc::clone(&object_store), "mem")
        .await
        .unwrap();
    store
        .write(&bars(&[row("A", "1d", T2021, 1.0)]))
        .await
        .unwrap();
    let good = store.catalog().snapshot().files().next().unwrap().clone();
    let bytes = object_store::ObjectStoreExt::get(&object_store, &good.path.as_str().into())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let orphan = "bars/timeframe=1d/symbol=A/year=2021/deadbeef.parquet";
    object_store::ObjectStoreExt::put(&object_store, &orphan.into(), bytes.into())
        .await
        .unwrap();

    let report = store.check().await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.orphans, vec![orphan.to_string()]);
    // Within the grace period it stays; past it, it goes.
    let gc = store.gc(Duration::from_secs(3600)).await.unwrap();
    assert_eq!((gc.orphans_deleted, gc.kept_in_grace), (0, 1));
    let gc = store.gc(Duration::ZERO).await.unwrap();
    assert_eq!(gc.orphans_deleted, 1);
    assert!(store.check().await.unwrap().orphans.is_empty());
    assert_eq!(contents(&store).await.len(), 1);
}

#[tokio::test]
async fn gc_deletes_replaced_files_only_after_grace() {
    let store = Store::open("memory://").await.unwrap();
    store
        .write(&bars(&[row("A", "1d", T2021, 1.0)]))
        .await
        .unwrap();
    store
        .write(&bars(&[row("A", "1d", T2021, 2.0)]))
        .await
        .unwrap();
    let gc = store.gc(Duration::from_secs(60)).await.unwrap();
    assert_eq!((gc.removed_deleted, gc.kept_in_grace), (0, 1));
    let gc = store.gc(Duration::ZERO).await.unwrap();
    assert_eq!(gc.removed_deleted, 1);
    assert_eq!(
        contents(&store).await.values().copied().collect::<Vec<_>>(),
        vec![2.0]
    );
    assert!(store.check().await.unwrap().is_clean());
}

#[tokio::test]
async fn failed_data_put_commits_nothing() {
    let test_store = TestStore::new(Arc::new(InMemory::new()));
    let store = Store::open_with(Arc::<TestStore>::clone(&test_store), "test")
        .await
        .unwrap();
    test_store.fail_data_puts.store(true, Ordering::SeqCst);
    assert!(
        store
            .write(&bars(&[row("A", "1d", T2021, 1.0)]))
            .await
            .is_err()
    );
    assert_eq!(store.catalog().snapshot().seq.0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_lose_nothing() {
    // Two independent processes' worth of state over one bucket, racing on the same and on
    // different partitions.
    let object_store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let a = Arc::new(
        Store::open_with(Arc::clone(&object_store), "a")
            .await
            .unwrap(),
    );
    let b = Arc::new(
        Store::open_with(Arc::clone(&object_store), "b")
            .await
            .unwrap(),
    );
    let mut tasks = Vec::new();
    for (w, store) in [Arc::clone(&a), Arc::clone(&b)].into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            for i in 0..15i64 {
                let rows = vec![
                    // Same partition for both writers, distinct keys.
                    row("SHARED", "1d", T2021 + (i * 2 + w as i64) * DAY, 1.0),
                    row(&format!("OWN{w}"), "1d", T2021 + i * DAY, 2.0),
                ];
                store.write(&bars(&rows)).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let fresh = Store::open_with(object_store, "c").await.unwrap();
    let got = contents(&fresh).await;
    assert_eq!(
        got.len(),
        60,
        "every acknowledged row is there exactly once"
    );
    assert!(fresh.check().await.unwrap().is_clean());
}
