//! The catalog (the Delta log of `bars/`): what it costs to open, to commit to, and to read an
//! old version. Prints the README's tables.
//!
//! 1. Open: a catalog of 10,000 and 100,000 files (fake `FileMeta` records, no Parquet) built
//!    on local disk by commits of 5,000 adds, a checkpoint, then 5 commits of 100 adds after it.
//!    Each `Catalog::load` runs in a fresh child process (this program re-run with `--load`), so
//!    its memory is the process's: RSS after the load minus RSS before it, and the peak (VmHWM)
//!    minus RSS before it. Then one more one-file commit on that catalog.
//! 2. Commit: a one-file add and a compaction-like commit (100 removes + 1 add) on a small
//!    table, on local disk and on S3 (a loopback moto_server): wall time of `Catalog::commit`
//!    and the bytes of the log entry it wrote.
//! 3. Read at an old version: a store of 20 symbols x a year of daily bars written by 150
//!    commits (a checkpoint at version 100): the same SQL at the latest version
//!    (`Store::query`) and at versions 50 (replayed from version 0) and 120 (checkpoint 100 and
//!    20 entries), `Store::at(v)` then `TableView::query`.
//!
//!   cargo bench --bench catalog [-- --runs N]

#[path = "../tests/it/s3/moto.rs"]
#[allow(dead_code)]
mod moto;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Float64Array, Int64Array, RecordBatch, TimestampMicrosecondArray};
use object_store::local::LocalFileSystem;
use object_store::{ObjectStore, ObjectStoreExt};
use tickvault::Store;
use tickvault::batch::{SeriesBatch, SeriesKey};
use tickvault::catalog::{Catalog, FileMeta, Seq, Transaction, log_path};
use tickvault::model::{FILE_SCHEMA, Interval, Symbol};
use tickvault::storage::{ParquetFilePath, PartitionKey};

const DAY: i64 = 86_400_000_000;
/// 2015-01-01T00:00:00Z.
const T2015: i64 = 1_420_070_400_000_000;
/// 2023-01-01T00:00:00Z.
const T2023: i64 = 1_672_531_200_000_000;
const ADDS_PER_COMMIT: usize = 5_000;
const COMMITS_AFTER_CHECKPOINT: usize = 5;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn local(dir: &Path) -> Arc<dyn ObjectStore> {
    std::fs::create_dir_all(dir).unwrap();
    Arc::new(LocalFileSystem::new_with_prefix(dir).unwrap())
}

/// Fake file `i`: 10 years per symbol, one file per partition-year, 9 CRCs (8 column chunks of
/// one page each and the tail, as a small daily-bars file has).
fn fake_file(i: usize) -> FileMeta {
    let year = 2015 + (i % 10) as i32;
    let partition = PartitionKey {
        interval: Interval::M1,
        symbol: Symbol::new(&format!("S{:05}", i / 10)).unwrap(),
        year,
    };
    let min_ts = T2015 + (year - 2015) as i64 * 365 * DAY;
    FileMeta {
        path: ParquetFilePath::new_unique(partition.clone()).to_string(),
        symbol: partition.symbol,
        interval: partition.interval,
        year,
        rows: 98_280,
        bytes: 2_400_000 + i as u64,
        min_ts,
        max_ts: min_ts + 364 * DAY,
        footer_bytes: 6_000,
        crc32: (0..9)
            .map(|k| (i as u32).wrapping_mul(2_654_435_761) ^ k)
            .collect(),
    }
}

fn adds(files: Vec<FileMeta>, base: Seq) -> Transaction {
    Transaction {
        base,
        operation: "bench".into(),
        add: files,
        ..Default::default()
    }
}

async fn commit_files(cat: &Catalog, files: Vec<FileMeta>) {
    let base = cat.snapshot().seq;
    cat.commit(adds(files, base)).await.unwrap();
}

fn vm_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The child: loads the catalog at `dir` once, prints "ms retained_kb peak_kb files".
async fn load_child(dir: &Path) {
    let store = local(dir);
    let before = vm_kb("VmRSS:");
    let t = Instant::now();
    let cat = Catalog::load(store).await.unwrap();
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let after = vm_kb("VmRSS:");
    let peak = vm_kb("VmHWM:");
    println!(
        "{ms} {} {} {}",
        after.saturating_sub(before),
        peak.saturating_sub(before),
        cat.snapshot().file_count()
    );
}

fn dir_bytes(dir: &Path, suffix: &str) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(suffix))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

async fn open_figures(work: &Path, runs: usize) {
    println!(
        "| catalog | log | checkpoint | load (median of {runs}) | RSS retained | RSS peak | one-file commit after |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|");
    for total in [10_000usize, 100_000] {
        let dir = work.join(format!("open-{total}"));
        let cat = Catalog::load(local(&dir))
            .await
            .unwrap()
            .with_checkpoint_every(u64::MAX);
        let base = total - COMMITS_AFTER_CHECKPOINT * 100;
        let mut files = (0..total).map(fake_file);
        let mut done = 0;
        while done < base {
            let n = ADDS_PER_COMMIT.min(base - done);
            commit_files(&cat, files.by_ref().take(n).collect()).await;
            done += n;
        }
        cat.write_checkpoint().await.unwrap();
        for _ in 0..COMMITS_AFTER_CHECKPOINT {
            commit_files(&cat, files.by_ref().take(100).collect()).await;
        }
        let version = cat.snapshot().seq.0;
        drop(cat);
        let log = dir.join("bars/_delta_log");
        let checkpoint = dir_bytes(&log, ".checkpoint.parquet");
        let json = dir_bytes(&log, ".json");

        let exe = std::env::current_exe().unwrap();
        let (mut ms, mut retained, mut peak) = (vec![], vec![], vec![]);
        for _ in 0..runs {
            let out = std::process::Command::new(&exe)
                .arg("--load")
                .arg(&dir)
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            let line = String::from_utf8(out.stdout).unwrap();
            let v: Vec<f64> = line
                .split_whitespace()
                .map(|x| x.parse().unwrap())
                .collect();
            assert_eq!(v[3] as usize, total, "files loaded");
            ms.push(v[0]);
            retained.push(v[1] / 1024.0);
            peak.push(v[2] / 1024.0);
        }
        // One more commit on the big table: a commit validates against the whole snapshot.
        let cat = Catalog::load(local(&dir)).await.unwrap();
        let t = Instant::now();
        commit_files(&cat, vec![fake_file(total)]).await;
        let commit_ms = t.elapsed().as_secs_f64() * 1e3;
        println!(
            "| {total} files | v{version}: checkpoint + {COMMITS_AFTER_CHECKPOINT} commits ({:.1} MB JSON in all) | {:.2} MB | {:.0} ms | {:.0} MB | {:.0} MB | {:.1} ms |",
            json as f64 / 1e6,
            checkpoint as f64 / 1e6,
            median(ms),
            median(retained),
            median(peak),
            commit_ms,
        );
    }
}

/// Median ms and log bytes of one-file commits and of 100-removes-1-add commits.
async fn commit_figures(name: &str, store: Arc<dyn ObjectStore>, runs: usize) {
    let cat = Catalog::load(Arc::clone(&store)).await.unwrap();
    cat.ensure_table().await.unwrap();
    let entry_bytes = |seq: Seq| {
        let store = Arc::clone(&store);
        async move { store.head(&log_path(seq)).await.unwrap().size }
    };
    let mut next = 1_000_000;
    let mut one = (vec![], 0);
    let mut compact = (vec![], 0);
    for _ in 0..runs {
        let base = cat.snapshot().seq;
        let t = Instant::now();
        let s = cat.commit(adds(vec![fake_file(next)], base)).await.unwrap();
        one.0.push(t.elapsed().as_secs_f64() * 1e3);
        one.1 = entry_bytes(s.seq).await;
        next += 1;

        // Not timed: the 100 files the compaction replaces.
        let small: Vec<FileMeta> = (0..100).map(|k| fake_file(next + k * 10)).collect();
        next += 1000;
        let remove = small.iter().map(|f| f.path.clone()).collect();
        commit_files(&cat, small).await;
        let base = cat.snapshot().seq;
        let t = Instant::now();
        let s = cat
            .commit(Transaction {
                base,
                operation: "compact".into(),
                add: vec![fake_file(next)],
                remove,
                ..Default::default()
            })
            .await
            .unwrap();
        compact.0.push(t.elapsed().as_secs_f64() * 1e3);
        compact.1 = entry_bytes(s.seq).await;
        next += 1;
    }
    println!("| {name} | 1 add | {:.2} ms | {} B |", median(one.0), one.1);
    println!(
        "| {name} | 100 removes + 1 add | {:.2} ms | {} B |",
        median(compact.0),
        compact.1
    );
}

/// One symbol's daily bars on `days` (day numbers in 2023).
fn daily(symbol: &str, days: std::ops::Range<i64>, seed: u64) -> SeriesBatch {
    let ts: Vec<i64> = days.clone().map(|d| T2023 + d * DAY).collect();
    let close: Vec<f64> = days
        .map(|d| 100.0 + ((d as u64 * 7919 + seed * 104_729) % 1000) as f64 / 10.0)
        .collect();
    let n = ts.len();
    let f = |v: Vec<f64>| Arc::new(Float64Array::from(v)) as _;
    let batch = RecordBatch::try_new(
        FILE_SCHEMA.clone(),
        vec![
            Arc::new(TimestampMicrosecondArray::from(ts).with_timezone("UTC")),
            f(close.clone()),
            f(close.iter().map(|c| c + 1.0).collect()),
            f(close.iter().map(|c| c - 1.0).collect()),
            f(close.clone()),
            f(vec![1000.0; n]),
            f(close.clone()),
            Arc::new(Int64Array::from(vec![10i64; n])),
        ],
    )
    .unwrap();
    SeriesBatch {
        key: SeriesKey {
            symbol: Symbol::new(symbol).unwrap(),
            interval: Interval::D1,
        },
        batch,
    }
}

const SUMS: &str =
    "SELECT symbol, count(*) AS n, sum(close) AS s FROM bars GROUP BY symbol ORDER BY symbol";
const ONE_MONTH: &str = "SELECT * FROM bars WHERE symbol = 'S07' \
     AND ts >= '2023-01-01T00:00:00Z' AND ts < '2023-02-01T00:00:00Z' ORDER BY ts";

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

async fn version_figures(work: &Path, runs: usize) {
    let store = Store::open(&work.join("versions").display().to_string())
        .await
        .unwrap();
    let symbols: Vec<String> = (0..20).map(|i| format!("S{i:02}")).collect();
    const COMMITS: i64 = 150;
    for c in 0..COMMITS {
        let days = c * 365 / COMMITS..(c + 1) * 365 / COMMITS;
        let series = symbols
            .iter()
            .enumerate()
            .map(|(i, s)| daily(s, days.clone(), i as u64))
            .collect();
        store.write_series(series, "bench").await.unwrap();
    }
    let latest = store.table_version();
    println!(
        "| version | files | query | rows | open view (`Store::at`) | query (median of {runs}) |"
    );
    println!("|---|---:|---|---:|---:|---:|");
    for (name, sql) in [
        ("sums by symbol", SUMS),
        ("one symbol, one month", ONE_MONTH),
    ] {
        rows(&store.query(sql).await.unwrap()); // warm
        let mut ms = vec![];
        let mut n = 0;
        for _ in 0..runs {
            let t = Instant::now();
            n = rows(&store.query(sql).await.unwrap());
            ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        println!(
            "| latest (v{latest}) | {} | {name} | {n} | - | {:.1} ms |",
            store.catalog().snapshot().file_count(),
            median(ms)
        );
        for v in [120, 50] {
            let (mut open, mut ms) = (vec![], vec![]);
            let mut files = 0;
            for _ in 0..runs {
                let t = Instant::now();
                let view = store.at(v).await.unwrap();
                open.push(t.elapsed().as_secs_f64() * 1e3);
                files = view.snapshot().file_count();
                let t = Instant::now();
                n = rows(&view.query(sql).await.unwrap());
                ms.push(t.elapsed().as_secs_f64() * 1e3);
            }
            let how = if v >= 100 {
                "checkpoint 100 + 20 entries"
            } else {
                "version 0 + 50 entries"
            };
            println!(
                "| v{v} ({how}) | {files} | {name} | {n} | {:.1} ms | {:.1} ms |",
                median(open),
                median(ms)
            );
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if let Some(dir) = arg("--load") {
        rt.block_on(load_child(Path::new(&dir)));
        return;
    }
    let runs: usize = arg("--runs").map_or(5, |r| r.parse().expect("--runs N"));
    rt.block_on(async {
        let work = tempfile::tempdir().unwrap();
        open_figures(work.path(), runs).await;
        println!();
        println!("| store | commit | time (median of {runs}) | log entry |");
        println!("|---|---|---:|---:|");
        commit_figures("local disk", local(&work.path().join("commits")), runs).await;
        let server = moto::Moto::start();
        let bucket = server.bucket("bench").await;
        let s3 = moto::open(&server.endpoint, &bucket).store;
        commit_figures("S3 (moto)", s3, runs).await;
        println!();
        version_figures(work.path(), runs).await;
    });
}
