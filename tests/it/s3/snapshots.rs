//! Time travel and named snapshots on a real S3 server: snapshots are objects created with
//! create-only puts (two creators of one name: exactly one wins), a reader process sees them,
//! and a pinned version survives upserts, compaction and GC with zero grace.

use std::time::Duration;

use tickvault::error::ErrorKind;
use tickvault::storage::StoreSettings;
use tickvault::{Store, StoreOptions};

use super::moto;
use crate::common::{DAY, T2021, bars, row};

fn options(endpoint: &str, read_only: bool) -> StoreOptions {
    StoreOptions {
        storage: StoreSettings {
            s3: moto::s3_config(endpoint),
            ..Default::default()
        },
        read_only,
        ..Default::default()
    }
}

const SUMS: &str = "SELECT symbol, count(*) AS n, sum(close) AS s FROM bars GROUP BY symbol \
                    ORDER BY symbol";

fn sums(batches: Vec<arrow::array::RecordBatch>) -> String {
    arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_on_s3_is_created_once_read_by_a_reader_and_survives_gc() {
    let server = moto::shared();
    let bucket = server.bucket("snapshots").await;
    let url = format!("s3://{bucket}/store");
    let writer = Store::open_with_options(&url, &options(&server.endpoint, false))
        .await
        .unwrap();
    let other = Store::open_with_options(&url, &options(&server.endpoint, false))
        .await
        .unwrap();
    let rows: Vec<_> = (0..10)
        .flat_map(|d| {
            [
                row("^GSPC", "1d", T2021 + d * DAY, 100.0 + d as f64),
                row("A/B", "1d", T2021 + d * DAY, 5.0 + d as f64),
            ]
        })
        .collect();
    writer.write(&bars(&rows)).await.unwrap();
    let pinned_sums = sums(writer.query(SUMS).await.unwrap());

    // Two processes create the same name at once: one snapshot, one clear refusal.
    let (a, b) = tokio::join!(
        writer.create_snapshot("race", None),
        other.create_snapshot("race", None)
    );
    let errors: Vec<_> = [&a, &b]
        .into_iter()
        .filter_map(|r| r.as_ref().err())
        .collect();
    assert_eq!(errors.len(), 1, "{a:?} {b:?}");
    assert_eq!(errors[0].kind(), ErrorKind::SnapshotExists);
    let version = a.or(b).unwrap().version;

    // Upserts, a compaction and GC with zero grace.
    for i in 0..6 {
        writer
            .write(&bars(&[row("^GSPC", "1d", T2021 + i * DAY, 1.0)]))
            .await
            .unwrap();
    }
    writer.compact().await.unwrap();
    let gc = writer.gc(Duration::ZERO).await.unwrap();
    assert!(gc.kept_for_snapshots > 0, "{gc:?}");
    assert_ne!(sums(writer.query(SUMS).await.unwrap()), pinned_sums);

    // A reader process lists the snapshot and reads exactly what was pinned.
    let reader = Store::open_with_options(&url, &options(&server.endpoint, true))
        .await
        .unwrap();
    let listed = reader.snapshots().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].name.as_str(), listed[0].version),
        ("race", version)
    );
    let view = reader.at_snapshot("race").await.unwrap();
    assert_eq!(view.version(), version);
    assert_eq!(sums(view.query(SUMS).await.unwrap()), pinned_sums);
    let view = writer.at(version).await.unwrap();
    assert_eq!(sums(view.query(SUMS).await.unwrap()), pinned_sums);
}
