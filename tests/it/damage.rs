//! Damaged data files (issue 16, item 6): a byte flipped or a file swapped is detected when
//! read and named (relative to the store), never decoded into rows; `check --deep` finds it;
//! files written before checksums still read.

use std::path::{Path, PathBuf};

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use futures::TryStreamExt;
use tickvault::batch::{BarBuilder, SeriesBatch, SeriesKey};
use tickvault::model::{Interval, Symbol};
use tickvault::{LoadRequest, Store, StoreOptions};

use crate::cli::tickvault;
use crate::common::{DAY, MINUTE, Rng};

/// 2021-01-01T00:00:00Z.
const T0: i64 = 1_609_459_200_000_000;

/// One series of `n` bars from `start`, `step` apart, with prices that differ per row.
fn series(symbol: &str, interval: &str, start: i64, step: i64, n: i64) -> SeriesBatch {
    let interval: Interval = interval.parse().unwrap();
    let mut bars = BarBuilder::with_capacity(n as usize);
    for i in 0..n {
        let p = 100.0 + (i % 997) as f64 / 10.0;
        let trades = (i % 4 != 0).then_some(i % 90);
        let vwap = (i % 3 != 0).then_some(p + 0.1);
        bars.push_checked(
            interval,
            start + i * step,
            p,
            p + 0.5,
            p - 0.5,
            p + 0.2,
            (i * 37 % 5000) as f64,
            vwap,
            trades,
        )
        .unwrap();
    }
    SeriesBatch {
        key: SeriesKey {
            symbol: Symbol::new(symbol).unwrap(),
            interval,
        },
        batch: bars.finish(),
    }
}

/// A store with 24/7 minute bars (rows groups of three pages, with a page index), a few
/// session-like minute bars (one page per row group) and daily bars over two years.
async fn build(dir: &Path) {
    let store = Store::open(dir.to_str().unwrap()).await.unwrap();
    let mut writer = store.writer("test");
    writer
        .push(vec![
            series("CRY", "1m", T0, MINUTE, 59 * 1440),
            series("EQ", "1m", T0 + 3 * DAY, MINUTE, 3000),
            series("DLY", "1d", T0 - 200 * DAY, DAY, 400),
        ])
        .await
        .unwrap();
    writer.finish().await.unwrap();
}

/// The questions asked after each flip: the planner's full scan, range reads of single pages
/// and the loader.
const SCAN: &str = "SELECT * FROM bars ORDER BY symbol, timeframe, ts";
const RANGES: [&str; 3] = [
    "SELECT * FROM bars WHERE symbol = 'CRY' AND timeframe = '1m' AND ts >= '2021-01-15T00:00:00Z' AND ts < '2021-01-16T00:00:00Z'",
    "SELECT * FROM bars WHERE symbol = 'CRY' AND timeframe = '1m' AND ts >= '2021-02-20T00:00:00Z' AND ts < '2021-02-21T00:00:00Z'",
    "SELECT * FROM bars WHERE symbol = 'DLY' AND timeframe = '1d'",
];

fn one(batches: Vec<RecordBatch>) -> RecordBatch {
    let schema = batches[0].schema();
    concat_batches(&schema, &batches).unwrap()
}

/// Every answer, or the error each question met.
async fn answers(store: &Store) -> Vec<Result<RecordBatch, String>> {
    let mut out = vec![store.query(SCAN).await.map(one).map_err(|e| e.to_string())];
    for sql in RANGES {
        let stream = store.engine().range_read(sql).expect("a range read");
        out.push(
            stream
                .try_collect::<Vec<_>>()
                .await
                .map(one)
                .map_err(|e| e.to_string()),
        );
    }
    let load = LoadRequest {
        symbols: vec!["CRY".into(), "EQ".into()],
        interval: "1m".parse().unwrap(),
        start: Some(T0 + 2 * DAY),
        end: Some(T0 + 6 * DAY),
        columns: None,
        adjustment: tickvault::adjust::Adjustment::NONE,
    };
    out.push(
        store
            .load_bars_collect(&load)
            .await
            .map(one)
            .map_err(|e| e.to_string()),
    );
    out
}

async fn open_reader(dir: &Path) -> Store {
    let options = StoreOptions {
        read_only: true,
        ..Default::default()
    };
    Store::open_with_options(dir.to_str().unwrap(), &options)
        .await
        .unwrap()
}

/// The store's data files: (path relative to the store, size).
async fn data_files(dir: &Path) -> Vec<(String, u64)> {
    let store = open_reader(dir).await;
    let snapshot = store.catalog().snapshot();
    snapshot
        .files()
        .map(|f| (f.path.clone(), f.bytes))
        .collect()
}

fn flip(path: &Path, offset: u64, mask: u8) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset as usize] ^= mask;
    std::fs::write(path, bytes).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_bytes_in_data_files_are_named_never_served() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path()).await;
    let intact = answers(&open_reader(dir.path()).await).await;
    let intact: Vec<RecordBatch> = intact.into_iter().map(Result::unwrap).collect();
    let files = data_files(dir.path()).await;
    assert_eq!(files.len(), 4, "{files:?}");
    let seed = 0x5eed_u64;
    let mut rng = Rng::new(seed);
    let (mut detected, mut trials) = (0, 0);
    for trial in 0..48 {
        let (rel, size) = &files[rng.below(files.len() as u64) as usize];
        // Half the flips land in the last 2 KB (footer and page indexes), half anywhere.
        let offset = if trial % 2 == 0 {
            size - 1 - rng.below((*size).min(2048))
        } else {
            rng.below(*size)
        };
        let mask = 1u8 << rng.below(8);
        let path = dir.path().join(rel);
        flip(&path, offset, mask);
        // A fresh process's view: nothing cached from before the flip.
        let got = answers(&open_reader(dir.path()).await).await;
        flip(&path, offset, mask);
        trials += 1;
        let mut failed = false;
        for (q, (got, want)) in got.iter().zip(&intact).enumerate() {
            match got {
                Ok(batch) => assert_eq!(
                    batch, want,
                    "seed {seed:#x} trial {trial}: query {q} returned altered rows after a flip \
                     at {offset} of {rel}"
                ),
                Err(message) => {
                    failed = true;
                    assert!(
                        message.contains(&format!("data file {rel} is damaged")),
                        "seed {seed:#x} trial {trial}: query {q} failed without naming {rel}: \
                         {message}"
                    );
                    assert!(!message.contains(dir.path().to_str().unwrap()), "{message}");
                }
            }
        }
        detected += failed as usize;
    }
    eprintln!("{detected} of {trials} flips detected");
    // Most flips land in bytes some question reads (the magic number at the start is read by
    // none, and a range read skips other pages).
    assert!(
        detected * 2 > trials,
        "{detected} of {trials} flips detected"
    );
    // Every flip was put back: the store reads as before.
    let again = answers(&open_reader(dir.path()).await).await;
    assert!(again.into_iter().map(Result::unwrap).eq(intact));
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The files of one series, largest first.
fn series_files(files: &[(String, u64)], symbol: &str) -> Vec<(String, u64)> {
    let mut out: Vec<_> = files
        .iter()
        .filter(|(p, _)| p.contains(&format!("symbol={symbol}/")))
        .cloned()
        .collect();
    out.sort_by_key(|(_, size)| std::cmp::Reverse(*size));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swapped_data_file_is_a_clear_error_and_check_finds_it() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path()).await;
    let files = data_files(dir.path()).await;
    let (victim, _) = &series_files(&files, "EQ")[0];
    let (other, _) = &series_files(&files, "DLY")[0];
    std::fs::copy(dir.path().join(other), dir.path().join(victim)).unwrap();

    let out = tickvault(
        dir.path(),
        &["sql", "SELECT count(*), sum(close) FROM bars"],
    );
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains(&format!("data file {victim} is damaged")),
        "{said}"
    );
    assert!(!said.contains("panicked"), "{said}");

    let out = tickvault(dir.path(), &["check"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(said.contains(&format!("PROBLEM {victim}: size")), "{said}");

    // A write into the damaged partition refuses to merge with it and commits nothing.
    let store = Store::open(dir.path().to_str().unwrap()).await.unwrap();
    let before = store.catalog().snapshot().seq;
    let err = store
        .write_series(
            vec![series("EQ", "1m", T0 + 3 * DAY + 10 * MINUTE, MINUTE, 1)],
            "test",
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.damage().map(|d| d.path.as_str()),
        Some(victim.as_str()),
        "{err}"
    );
    assert_eq!(store.catalog().refresh().await.unwrap().seq, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_deep_reads_every_byte_and_finds_a_flip_the_plain_check_cannot() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path()).await;
    let out = tickvault(dir.path(), &["check", "--deep"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("before checksums"), "{}", text(&out));

    let files = data_files(dir.path()).await;
    let (victim, _) = &series_files(&files, "CRY")[0];
    // A byte of the first page's values: not in the footer, so only reading the data sees it.
    flip(&dir.path().join(victim), 200, 0x10);
    assert!(tickvault(dir.path(), &["check"]).status.success());
    let out = tickvault(dir.path(), &["check", "--deep"]);
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains(&format!("PROBLEM {victim}: damaged: bytes ")),
        "{said}"
    );
}

/// Removes the checksums from every commit, as a store written before them has none.
fn strip_checksums(dir: &Path) {
    let log = dir.join("bars/_delta_log");
    for entry in std::fs::read_dir(&log).unwrap() {
        let path: PathBuf = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let mut out = String::new();
        for line in text.lines() {
            let mut action: serde_json::Value = serde_json::from_str(line).unwrap();
            let tags = action.get_mut("add").and_then(|a| a.get_mut("tags"));
            if let Some(tags) = tags.and_then(|t| t.as_object_mut()) {
                tags.remove("tickvault.crc32").unwrap();
            }
            out.push_str(&serde_json::to_string(&action).unwrap());
            out.push('\n');
        }
        std::fs::write(&path, out).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_written_before_checksums_still_read_and_check_deep_says_so() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path()).await;
    let with = answers(&open_reader(dir.path()).await).await;
    strip_checksums(dir.path());
    let store = open_reader(dir.path()).await;
    assert!(
        store
            .catalog()
            .snapshot()
            .files()
            .all(|f| f.crc32.is_empty())
    );
    let without = answers(&store).await;
    assert_eq!(
        with.into_iter().map(Result::unwrap).collect::<Vec<_>>(),
        without.into_iter().map(Result::unwrap).collect::<Vec<_>>()
    );
    let out = tickvault(dir.path(), &["check", "--deep"]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("4 files were written before checksums: read, but not verified"),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swapped_file_without_checksums_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path()).await;
    strip_checksums(dir.path());
    let files = data_files(dir.path()).await;
    for (victim, other) in [("EQ", "DLY"), ("DLY", "CRY"), ("CRY", "EQ")] {
        let (victim, _) = &series_files(&files, victim)[0];
        let (other, _) = &series_files(&files, other)[0];
        let saved = std::fs::read(dir.path().join(victim)).unwrap();
        std::fs::copy(dir.path().join(other), dir.path().join(victim)).unwrap();
        for sql in [SCAN, RANGES[0], RANGES[2]] {
            let out = tickvault(dir.path(), &["sql", "--format", "csv", sql]);
            let said = text(&out);
            assert!(
                !said.contains("panicked"),
                "{victim} swapped, {sql}: {said}"
            );
            assert_ne!(out.status.code(), Some(101), "{said}");
        }
        std::fs::write(dir.path().join(victim), saved).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_file_is_a_500_naming_it_relative_to_the_store_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path()).await;
    let files = data_files(dir.path()).await;
    let (victim, size) = &series_files(&files, "DLY")[0];
    flip(&dir.path().join(victim), size - 20, 0x01); // in the footer
    let (_child, base) = crate::server::spawn_server(dir.path(), "serve", &[]);
    let response = reqwest::get(format!(
        "{base}/v1/sql?q=SELECT+count(*)+FROM+bars+WHERE+symbol%3D%27DLY%27"
    ))
    .await
    .unwrap();
    assert_eq!(
        response.status(),
        reqwest::StatusCode::INTERNAL_SERVER_ERROR
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], "damaged_file", "{body}");
    let message = body["error"].as_str().unwrap();
    assert!(
        message.contains(&format!("data file {victim} is damaged")),
        "{message}"
    );
    assert!(!message.contains(dir.path().to_str().unwrap()), "{message}");
    let metrics = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("tickvault_errors_total{code=\"damaged_file\"} 1"),
        "{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_name_store_files_relative_to_the_store() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path()).await;
    let files = data_files(dir.path()).await;
    let (victim, _) = &series_files(&files, "DLY")[0];
    std::fs::remove_file(dir.path().join(victim)).unwrap();
    let (_child, base) = crate::server::spawn_server(dir.path(), "serve", &[]);
    let response = reqwest::get(format!(
        "{base}/v1/sql?q=SELECT+count(*)+FROM+bars+WHERE+symbol%3D%27DLY%27"
    ))
    .await
    .unwrap();
    assert_eq!(
        response.status(),
        reqwest::StatusCode::INTERNAL_SERVER_ERROR
    );
    let body: serde_json::Value = response.json().await.unwrap();
    let message = body["error"].as_str().unwrap();
    let root = dir.path().canonicalize().unwrap();
    assert!(!message.contains(root.to_str().unwrap()), "{message}");
    assert!(message.contains(victim.as_str()), "{message}");
}
