//! The library's scheduler over a real store on a manual clock: the final transfer at shutdown
//! and a failing run that the next tick repairs. (Tick timing is tested in the unit tests.)

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt};
use tickvault::clock::{Clock, ManualClock};
use tickvault::live::LiveOptions;
use tickvault::sync::scheduler::{Job, JobReport, Scheduler, SchedulerSettings};
use tickvault::{Store, StoreOptions};

use crate::common::{DAY, T2021, TestStore, bars, contents, row};

const T0: i64 = 1_750_000_000_000_000;

async fn live_store(
    object_store: Arc<dyn ObjectStore>,
    clock: &Arc<ManualClock>,
    wal: &std::path::Path,
) -> Arc<Store> {
    let options = StoreOptions {
        live: Some(LiveOptions::new(wal)),
        clock: Arc::clone(clock) as Arc<dyn Clock>,
        ..StoreOptions::default()
    };
    Arc::new(
        Store::open_with_store(object_store, "mem", &options)
            .await
            .unwrap(),
    )
}

fn rows(n: i64) -> Vec<crate::common::Row> {
    (0..n)
        .map(|i| row("A", "1d", T2021 + i * DAY, 10.0 + i as f64))
        .collect()
}

/// Polls until `done` holds (the scheduler's tasks run between polls); fails after 10 s.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test]
async fn shutdown_moves_the_live_tier_into_parquet() {
    let wal = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let store = live_store(Arc::new(InMemory::new()), &clock, wal.path()).await;
    let rows = rows(5);
    store.ingest_batch(&bars(&rows)).await.unwrap();
    // No job on a timer: only the final transfer moves the rows.
    let settings = SchedulerSettings::manual(Duration::from_secs(3600));
    let scheduler = Scheduler::start(Arc::clone(&store), None, settings);
    let expected = contents(&store).await;
    assert_eq!(store.catalog().snapshot().file_count(), 0);
    let report = scheduler.shutdown().await.unwrap().unwrap();
    let JobReport::Transfer(transfer) = report else {
        panic!("not a transfer: {report:?}")
    };
    assert_eq!(transfer.rows, 5);
    assert_eq!(store.live().unwrap().read().rows(), 0);
    assert_eq!(store.catalog().snapshot().file_count(), 1);
    assert_eq!(contents(&store).await, expected);
    let state = scheduler.state(Job::Transfer);
    assert_eq!((state.runs, state.last_rows), (1, 5));
    assert_eq!(state.last_started, Some(T0 as f64 / 1e6));
    // The catalog commit is stamped by the store's clock.
    let log = tickvault::catalog::log_path(store.catalog().snapshot().seq);
    let entry = store.object_store().get(&log).await.unwrap();
    let entry = entry.bytes().await.unwrap();
    let first_line = entry.split(|&b| b == b'\n').next().unwrap();
    let info: serde_json::Value = serde_json::from_slice(first_line).unwrap();
    assert_eq!(info["commitInfo"]["tickvaultCommittedAt"], T0, "{info}");
    assert_eq!(info["commitInfo"]["timestamp"], T0 / 1000, "{info}");
}

#[tokio::test]
async fn a_failing_run_is_reported_and_the_next_tick_runs_again() {
    let wal = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(T0);
    let object_store = TestStore::new(Arc::new(InMemory::new()));
    let store = live_store(Arc::<TestStore>::clone(&object_store), &clock, wal.path()).await;
    store.ingest_batch(&bars(&rows(3))).await.unwrap();
    let settings = SchedulerSettings::manual(Duration::from_secs(3600))
        .run_every(Job::Transfer, Duration::from_secs(60));
    let scheduler = Scheduler::start(Arc::clone(&store), None, settings);
    clock.until_sleepers(1).await;

    object_store.fail_data_puts.store(true, Ordering::SeqCst);
    clock.set(T0 + 60_000_000);
    until("the failed run", || {
        scheduler.state(Job::Transfer).runs == 1
    })
    .await;
    let state = scheduler.state(Job::Transfer);
    assert_eq!(state.failures, 1);
    assert_eq!(state.last_outcome, Some("failed"));
    let error = state.last_error.unwrap();
    assert!(error.contains("injected failure"), "{error}");
    // Nothing acknowledged is lost: the rows wait in the live tier.
    assert_eq!(store.live().unwrap().read().rows(), 3);
    until("the next tick is set", || {
        scheduler.state(Job::Transfer).next_run == Some((T0 + 120_000_000) as f64 / 1e6)
    })
    .await;

    object_store.fail_data_puts.store(false, Ordering::SeqCst);
    clock.set(T0 + 120_000_000);
    until("the next run", || scheduler.state(Job::Transfer).runs == 2).await;
    let state = scheduler.state(Job::Transfer);
    assert_eq!(state.failures, 1);
    assert_eq!(state.last_outcome, Some("ok"));
    assert_eq!(state.last_error, None);
    assert_eq!(state.last_rows, 3);
    assert_eq!(store.live().unwrap().read().rows(), 0);
    assert_eq!(store.catalog().snapshot().file_count(), 1);
}
