//! tickvault as a library, without the server: open a store with a live tier, write and ingest
//! bars, record a split, keep the store moving with the scheduler, query with SQL, load
//! adjusted bars for a backtest, and shut down cleanly.
//!
//! `cargo run --example library`. `cargo test` runs it too, so it cannot drift from the API.

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use tickvault::actions::CorporateAction;
use tickvault::adjust::{Adjust, Adjustment};
use tickvault::batch::{BarBuilder, SeriesBatch, SeriesKey};
use tickvault::live::LiveOptions;
use tickvault::model::{Interval, Symbol};
use tickvault::sync::scheduler::{Job, Scheduler, SchedulerSettings};
use tickvault::{LoadRequest, Store, StoreOptions};

/// 2021-01-04 00:00 UTC, in µs (every time in tickvault is µs since the epoch, UTC).
const JAN_4: i64 = 1_609_718_400_000_000;
const DAY: i64 = 86_400_000_000;

/// Daily bars of one symbol from `JAN_4`, one per close.
fn daily(symbol: &str, closes: &[f64]) -> anyhow::Result<SeriesBatch> {
    let mut bars = BarBuilder::with_capacity(closes.len());
    for (i, &close) in closes.iter().enumerate() {
        let ts = JAN_4 + i as i64 * DAY;
        bars.push_checked(
            Interval::D1,
            ts,
            close,
            close + 1.0,
            close - 1.0,
            close,
            1e6,
            None,
            None,
        )?;
    }
    Ok(SeriesBatch {
        key: SeriesKey {
            symbol: Symbol::new(symbol)?,
            interval: Interval::D1,
        },
        batch: bars.finish(),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let url = dir.path().join("store");
    let options = StoreOptions {
        live: Some(LiveOptions::new(dir.path().join("wal"))),
        ..StoreOptions::default()
    };
    let store = Arc::new(Store::open_with_options(url.to_str().unwrap(), &options).await?);

    // Straight into Parquet (one commit, upsert by symbol, interval and ts) ...
    store
        .write_series(vec![daily("AAPL", &[258.0, 262.0, 131.0])?], "example")
        .await?;
    // ... or into the live tier: durable in the WAL and visible to queries when it returns.
    store
        .ingest(vec![daily("MSFT", &[217.7, 217.9, 212.3])?])
        .await?;
    // A 2:1 split of AAPL on its third day: adjusted reads halve the bars before it.
    let split = CorporateAction::split(
        Symbol::new("AAPL")?,
        chrono::NaiveDate::from_ymd_opt(2021, 1, 6).unwrap(),
        2.0,
        "example",
        store.clock().now_micros(),
    )?;
    store.actions().upsert(vec![split]).await?;

    // The background jobs a server runs, here only the transfer of the live tier into Parquet
    // every minute. With a syncer (`Syncer::open` with providers) it also backfills tracked
    // symbols and follows their newest bars.
    let settings = SchedulerSettings::manual(Duration::from_secs(3600))
        .run_every(Job::Transfer, Duration::from_secs(60));
    let scheduler = Scheduler::start(Arc::clone(&store), None, settings);

    let summary = store
        .query("SELECT symbol, count(*) AS bars, max(close) AS top FROM bars GROUP BY symbol ORDER BY symbol")
        .await?;
    println!("{}", arrow::util::pretty::pretty_format_batches(&summary)?);

    // The backtest loader: Arrow batches ordered by (ts, symbol), split-adjusted.
    let request = LoadRequest {
        symbols: vec!["AAPL".into(), "MSFT".into()],
        interval: Interval::D1,
        start: Some(JAN_4),
        end: Some(JAN_4 + 3 * DAY), // [start, end)
        columns: Some(vec!["ts".into(), "symbol".into(), "close".into()]),
        adjustment: Adjustment::new(Adjust::All, None),
    };
    let batches: Vec<_> = store.load_bars(&request).await?.try_collect().await?;
    println!("{}", arrow::util::pretty::pretty_format_batches(&batches)?);
    let closes: Vec<f64> = batches
        .iter()
        .flat_map(|b| {
            let close = b.column(2).as_any();
            let close = close.downcast_ref::<arrow::array::Float64Array>().unwrap();
            close.values().to_vec()
        })
        .collect();
    assert_eq!(closes, [129.0, 217.7, 131.0, 217.9, 131.0, 212.3]);

    // Stops the jobs, waits for a run in flight, then moves the live tier into Parquet.
    if let Some(last) = scheduler.shutdown().await {
        println!("moved {} live rows into Parquet", last?.rows());
    }
    assert_eq!(store.live().map(|l| l.read().rows()), Some(0));
    Ok(())
}

#[test]
fn the_example_runs() {
    main().unwrap();
}

/// The README's library block is an excerpt of this file: each of its lines is here, in order.
#[test]
fn the_readme_shows_lines_of_this_program_in_order() {
    let readme = include_str!("../README.md");
    let section = &readme[readme
        .find("## Library")
        .expect("README has a Library section")..];
    let block = section
        .split("```rust\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the Library section has a rust block");
    let program: Vec<&str> = include_str!("library.rs").lines().map(str::trim).collect();
    let mut at = 0;
    for line in block.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match program[at..].iter().position(|p| *p == line) {
            Some(i) => at += i + 1,
            None => panic!("README line not in examples/library.rs after line {at}: {line}"),
        }
    }
}
