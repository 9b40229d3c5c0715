//! What an operator sees when the S3 side goes wrong: a clear error, at start where it can be,
//! never a hang past the configured timeouts, and nothing written.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tickvault::storage::S3Config;
use tickvault::{Store, StoreOptions};

use super::moto::{self, Moto};
use super::proxy::Proxy;
use crate::common::*;

fn options(s3: S3Config) -> StoreOptions {
    StoreOptions {
        storage: tickvault::storage::StoreSettings {
            s3,
            ..Default::default()
        },
        ..Default::default()
    }
}

async fn open(url: &str, s3: S3Config) -> tickvault::Result<Store> {
    Store::open_with_options(url, &options(s3)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_ignores_conditional_writes_is_refused_for_writers() {
    let server = moto::shared();
    let bucket = server.bucket("nocond").await;
    let proxy = Proxy::start(&server.endpoint).await;
    proxy.faults.strip_conditions.store(true, Ordering::SeqCst);
    let url = format!("s3://{bucket}/prefix");
    let err = open(&url, moto::s3_config(&proxy.endpoint))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("ignores conditional writes"), "{err}");
    assert!(
        err.contains("single_writer"),
        "the message says the way out: {err}"
    );

    // A reader needs no conditional writes.
    let reader = Store::open_with_options(
        &url,
        &StoreOptions {
            read_only: true,
            ..options(moto::s3_config(&proxy.endpoint))
        },
    )
    .await
    .unwrap();
    let e = reader.write(&bars(&[row("A", "1d", T2021, 1.0)])).await;
    assert!(e.unwrap_err().to_string().contains("read-only"));

    // The operator's promise of one writer lets it run.
    let writer = Store::open_with_options(
        &url,
        &StoreOptions {
            single_writer: true,
            ..options(moto::s3_config(&proxy.endpoint))
        },
    )
    .await
    .unwrap();
    writer
        .write(&bars(&[row("A", "1d", T2021, 1.0)]))
        .await
        .unwrap();
    assert_eq!(contents(&writer).await.len(), 1);

    // The same bucket straight to the server passes the check.
    open(&url, server.config()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_fail_at_start() {
    // This server checks signatures against its users; it has none, so every key is wrong.
    let server = Moto::start_with(true);
    let started = Instant::now();
    let err = open("s3://any-bucket", server.config())
        .await
        .unwrap_err()
        .to_string();
    println!("{err}");
    assert!(err.contains("access denied"), "{err}");
    assert!(
        err.contains("InvalidAccessKeyId"),
        "the S3 error code is shown: {err}"
    );
    assert!(
        err.contains("access_key_id"),
        "the message names the settings: {err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "no retry storm"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_bucket_fails_at_start() {
    let server = moto::shared();
    let err = open("s3://no-such-bucket-here/x", server.config())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("bucket does not exist"), "{err}");
    assert!(err.contains("s3://no-such-bucket-here/x"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried_and_nothing_is_lost() {
    let server = moto::shared();
    let bucket = server.bucket("slowdown").await;
    let proxy = Proxy::start(&server.endpoint).await;
    // Every third request is answered 503 SlowDown.
    proxy.faults.slow_down_every.store(3, Ordering::SeqCst);
    let url = format!("s3://{bucket}");
    let store = open(&url, moto::s3_config(&proxy.endpoint)).await.unwrap();
    let rows: Vec<Row> = (0..200)
        .map(|i| {
            row(
                ["A", "B", "C"][i % 3],
                "1m",
                T2021 + i as i64 * MINUTE,
                i as f64,
            )
        })
        .collect();
    store.write(&bars(&rows)).await.unwrap();
    store.compact().await.unwrap();
    let fresh = open(&url, moto::s3_config(&proxy.endpoint)).await.unwrap();
    assert_eq!(contents(&fresh).await.len(), 200);
    let slowed = proxy.faults.slowed_down.load(Ordering::SeqCst);
    assert!(
        slowed >= 3,
        "throttling was exercised ({slowed} SlowDown answers)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_or_stopped_server_fails_the_query_within_the_timeout() {
    let mut server = Moto::start();
    let bucket = server.bucket("hang").await;
    let proxy = Proxy::start(&server.endpoint).await;
    let s3 = S3Config {
        request_timeout: 1.0,
        max_retries: 1,
        retry_timeout: 2.0,
        ..moto::s3_config(&proxy.endpoint)
    };
    let url = format!("s3://{bucket}");
    let writer = open(&url, s3.clone()).await.unwrap();
    let rows: Vec<Row> = (0..50)
        .map(|i| row("A", "1h", T2021 + i * 3_600_000_000, 1.0))
        .collect();
    writer.write(&bars(&rows)).await.unwrap();

    // The catalog is loaded; then the server stops answering mid-way.
    let reader = open(&url, s3.clone()).await.unwrap();
    proxy.faults.hang.store(true, Ordering::SeqCst);
    let started = Instant::now();
    let err = reader
        .query("SELECT count(*), sum(close) FROM bars")
        .await
        .unwrap_err()
        .to_string();
    let took = started.elapsed();
    println!("hung server, after {took:?}: {err}");
    assert!(took < Duration::from_secs(15), "gave up after {took:?}");
    assert!(
        err.to_lowercase().contains("timed out") || err.contains("timeout"),
        "{err}"
    );

    // Straight to the server, which then dies.
    let reader = open(&url, moto::s3_config(&server.endpoint)).await.unwrap();
    server.stop();
    let started = Instant::now();
    let err = reader
        .query("SELECT count(*) FROM bars WHERE close > 0")
        .await
        .unwrap_err()
        .to_string();
    println!("stopped server, after {:?}: {err}", started.elapsed());
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    assert!(
        err.contains("bars/"),
        "the error names the file it could not read: {err}"
    );
}
