//! Requests a remote store is asked for: none wasted on the query path, and none at all for
//! files the disk cache holds.

use tickvault::storage::{RequestCounts, StoreSettings};
use tickvault::{LoadRequest, Store, StoreOptions};

use super::moto;
use crate::common::*;

/// A quarter of minute bars for `symbols` symbols (one file per symbol and year).
async fn fill(store: &Store, symbols: usize) {
    let mut rows = Vec::new();
    for s in 0..symbols {
        for m in 0..(90 * 24 * 60) {
            rows.push(row(&format!("S{s}"), "1m", T2021 + m * MINUTE, m as f64));
        }
    }
    store.write(&bars(&rows)).await.unwrap();
}

const ONE_DAY: &str = "SELECT count(*), sum(volume), max(high) FROM bars \
     WHERE symbol = 'S1' AND timeframe = '1m' \
     AND ts >= '2021-02-01T00:00:00Z' AND ts < '2021-02-02T00:00:00Z'";

async fn cost(store: &Store, sql: &str) -> RequestCounts {
    let before = store.requests();
    let out = store.query(sql).await.unwrap();
    assert_eq!(f64_or_count(&out), 1440, "{sql}");
    store.requests().since(&before)
}

fn f64_or_count(batches: &[arrow::array::RecordBatch]) -> i64 {
    use arrow::array::AsArray;
    batches[0]
        .column(0)
        .as_primitive::<arrow::datatypes::Int64Type>()
        .value(0)
}

fn s3_options(endpoint: &str, cache_dir: Option<std::path::PathBuf>) -> StoreOptions {
    StoreOptions {
        storage: StoreSettings {
            s3: moto::s3_config(endpoint),
            cache_dir,
            cache_max_bytes: 1 << 30,
        },
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warm_one_day_query_lists_nothing_and_makes_one_get() {
    let server = moto::shared();
    let bucket = server.bucket("requests").await;
    let url = format!("s3://{bucket}/hist");
    let writer = Store::open_with_options(&url, &s3_options(&server.endpoint, None))
        .await
        .unwrap();
    fill(&writer, 3).await;

    let reader = Store::open_with_options(&url, &s3_options(&server.endpoint, None))
        .await
        .unwrap();
    let cold = cost(&reader, ONE_DAY).await;
    let warm = cost(&reader, ONE_DAY).await;
    println!("one symbol, one day on S3: cold {cold}; warm {warm}");
    assert_eq!(cold.list, 0, "no LIST on the query path: {cold}");
    // One GET of the file's tail (footer and page indexes, whose length the catalog records),
    // one of the day's pages; warm, the footer and indexes come from the cache.
    assert_eq!(cold.gets(), 2, "{cold}");
    assert_eq!(warm.list, 0, "{warm}");
    assert_eq!(warm.gets(), 1, "{warm}");
    assert_eq!(warm.put + warm.delete + warm.head, 0, "{warm}");

    // The same on local disk.
    let dir = tempfile::tempdir().unwrap();
    let local = Store::open(dir.path().to_str().unwrap()).await.unwrap();
    fill(&local, 3).await;
    let local = Store::open(dir.path().to_str().unwrap()).await.unwrap();
    let (cold_l, warm_l) = (cost(&local, ONE_DAY).await, cost(&local, ONE_DAY).await);
    assert_eq!((cold_l.list, warm_l.list), (0, 0));
    assert_eq!(
        (cold_l.gets(), warm_l.gets()),
        (2, 1),
        "{cold_l} / {warm_l}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_disk_cache_answers_repeated_backtests_without_s3() {
    let server = moto::shared();
    let bucket = server.bucket("cache").await;
    let url = format!("s3://{bucket}");
    let cache_dir = tempfile::tempdir().unwrap();
    let opts = s3_options(&server.endpoint, Some(cache_dir.path().to_path_buf()));
    let writer = Store::open_with_options(&url, &s3_options(&server.endpoint, None))
        .await
        .unwrap();
    fill(&writer, 4).await;
    let expected = contents(&writer).await;

    let load = LoadRequest {
        symbols: (0..4).map(|s| format!("S{s}")).collect(),
        interval: "1m".parse().unwrap(),
        start: None,
        end: None,
        columns: None,
        adjustment: tickvault::adjust::Adjustment::NONE,
    };
    let rows = |batches: &[arrow::array::RecordBatch]| -> usize {
        batches.iter().map(|b| b.num_rows()).sum()
    };
    let store = Store::open_with_options(&url, &opts).await.unwrap();
    let before = store.requests();
    assert_eq!(
        rows(&store.load_bars_collect(&load).await.unwrap()),
        expected.len()
    );
    let cold = store.requests().since(&before);
    assert_eq!(cold.gets(), 4, "one whole-file GET per file: {cold}");

    let before = store.requests();
    assert_eq!(
        rows(&store.load_bars_collect(&load).await.unwrap()),
        expected.len()
    );
    let warm = store.requests().since(&before);
    assert_eq!(warm.gets(), 0, "{warm}");
    assert_eq!(contents(&store).await, expected);

    // A new process with the same cache directory pays nothing either.
    drop(store);
    let restarted = Store::open_with_options(&url, &opts).await.unwrap();
    let before = restarted.requests();
    assert_eq!(
        rows(&restarted.load_bars_collect(&load).await.unwrap()),
        expected.len()
    );
    assert_eq!(restarted.requests().since(&before).gets(), 0);
    let counts = restarted.disk_cache().unwrap().counts();
    assert_eq!(counts.files, 4);
    assert!(counts.hits > 0 && counts.misses == 0, "{counts:?}");
}
