//! Stage 2 figures for the README: a loopback provider serves the 504-symbol real daily set
//! (1999-2021) in Yahoo chart v8 format; tickvault tracks every symbol and backfills it all with
//! the rate limit off, then syncs again (nothing should be fetched), then heals deleted ranges.
//! Requests include the corporate-actions requests (one per symbol and sync that reads them).
//!
//!   cargo bench --bench backfill [-- --data DIR] [--symbols N]
//!
//! DIR defaults to ../shared/data/daily/sp500_alphavantage_daily_adjusted/daily_adjusted. The
//! store is a fresh directory on local disk. Prints a Markdown table.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tickvault::Store;
use tickvault::calendar::Calendar;
use tickvault::model::{Interval, Symbol};
use tickvault::sync::fake_upstream::{FakeData, FakeUpstream};
use tickvault::sync::provider::{self, ProviderConfig, ProviderKind, UpstreamPolicy};
use tickvault::sync::registry::SymbolSpec;
use tickvault::sync::syncer::{BackfillRequest, ProviderHandle, SyncOptions, Syncer};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn day(y: i32, m: u32, d: u32) -> i64 {
    chrono::NaiveDate::from_ymd_opt(y, m, d)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_micros()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let data_dir = arg(&args, "--data").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/data/daily/sp500_alphavantage_daily_adjusted/daily_adjusted")
    });
    let limit = arg(&args, "--symbols").map(|v| v.parse().unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(data_dir, limit));
}

async fn run(data_dir: PathBuf, limit: Option<usize>) {
    let data = FakeData::load_daily_dir(&data_dir, limit).unwrap();
    let symbols = data.symbols();
    let upstream_rows: usize = symbols
        .iter()
        .map(|s| data.bars(s, Interval::D1).len())
        .sum();
    let fake = FakeUpstream::start(data).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path().to_str().unwrap()).await.unwrap());
    let adapter = ProviderConfig::new(ProviderKind::Yahoo, Some(fake.base_url()));
    let policy = UpstreamPolicy {
        rate_limit: None,
        max_concurrency: 8,
        ..UpstreamPolicy::default()
    };
    let handle = ProviderHandle::new("yahoo", provider::build(&adapter).unwrap(), policy);
    let syncer = Syncer::open(Arc::clone(&store), vec![handle], SyncOptions::default())
        .await
        .unwrap();
    for s in &symbols {
        syncer
            .track(SymbolSpec {
                symbol: Symbol::new(s).unwrap(),
                intervals: vec![Interval::D1],
                provider: "yahoo".into(),
                since: day(1999, 11, 1),
                calendar: Calendar::UsEquity,
                added_at: 0,
            })
            .await
            .unwrap();
    }

    let started = Instant::now();
    let full = syncer.backfill(&BackfillRequest::default()).await.unwrap();
    let full_time = started.elapsed();
    assert!(
        full.failures.is_empty(),
        "{:?}",
        &full.failures[..3.min(full.failures.len())]
    );
    let stored: u64 = store.stats().iter().map(|s| s.rows).sum();
    assert_eq!(
        stored as usize, upstream_rows,
        "every upstream bar is stored"
    );

    let started = Instant::now();
    let second = syncer.backfill(&BackfillRequest::default()).await.unwrap();
    let second_time = started.elapsed();

    // Gap heal: one quarter of 2015 deleted from ten symbols, then one stage 2 run.
    let (from, to) = (day(2015, 4, 1), day(2015, 7, 1));
    let started = Instant::now();
    let mut deleted = 0;
    for s in symbols.iter().take(10) {
        deleted += syncer
            .delete_bars(&Symbol::new(s).unwrap(), Interval::D1, from, to)
            .await
            .unwrap()
            .rows;
    }
    let delete_time = started.elapsed();
    let started = Instant::now();
    let heal = syncer.backfill(&BackfillRequest::default()).await.unwrap();
    let heal_time = started.elapsed();
    assert_eq!(heal.rows, deleted);

    let secs = |d: Duration| format!("{:.2} s", d.as_secs_f64());
    let requests = |s: &tickvault::sync::syncer::BackfillSummary| {
        format!("{} ({} for events)", s.requests, s.action_requests)
    };
    println!("| step | time | requests | rows |");
    println!("|---|---|---|---|");
    println!(
        "| backfill {} symbols from empty (rate limit off) | {} | {} | {} ({:.0} rows/s) |",
        symbols.len(),
        secs(full_time),
        requests(&full),
        full.rows,
        full.rows as f64 / full_time.as_secs_f64()
    );
    println!(
        "| second sync (nothing missing) | {} | {} | {} |",
        secs(second_time),
        requests(&second),
        second.rows
    );
    println!(
        "| delete 2015-Q2 from 10 symbols | {} | - | {deleted} deleted |",
        secs(delete_time)
    );
    println!(
        "| heal those gaps (one stage 2 run) | {} | {} | {} |",
        secs(heal_time),
        requests(&heal),
        heal.rows
    );
}
