//! Warm query latencies over an existing store, for `benches/compare.py` (which runs DuckDB over
//! the same Parquet files in the same run and prints the table for the README).
//!
//!   cargo bench --bench queries -- --store DIR [--runs N] [--json] [--only NAME]
//!
//! Each query runs once to warm caches, then `--runs` times; we report median and min in ms.
//! Setup (opening the store, planning is included in each run as a user would pay it).

use std::time::Instant;

use futures::StreamExt;
use tickvault::{LoadRequest, Store};

/// (name, SQL). `{DAY}` etc. are filled from the synthetic set's calendar.
const QUERIES: &[(&str, &str)] = &[
    (
        "one_symbol_one_day",
        "SELECT * FROM bars WHERE symbol = 'AAAK' AND timeframe = '1m' \
         AND ts >= '2022-06-15T00:00:00Z' AND ts < '2022-06-16T00:00:00Z' ORDER BY ts",
    ),
    (
        "one_symbol_year_daily",
        "SELECT date_trunc('day', ts) AS day, first_value(open ORDER BY ts) AS open, max(high) AS high, \
         min(low) AS low, last_value(close ORDER BY ts) AS close, sum(volume) AS volume \
         FROM bars WHERE symbol = 'AAAK' AND timeframe = '1m' \
         AND ts >= '2022-01-01T00:00:00Z' AND ts < '2023-01-01T00:00:00Z' GROUP BY 1 ORDER BY 1",
    ),
    (
        "last_close_every_symbol_one_day",
        "SELECT symbol, last_value(close ORDER BY ts) AS close FROM bars \
         WHERE timeframe = '1m' AND ts >= '2022-06-15T00:00:00Z' AND ts < '2022-06-16T00:00:00Z' \
         GROUP BY symbol ORDER BY symbol",
    ),
    (
        "avg_volume_per_symbol",
        "SELECT symbol, avg(volume) AS avg_volume FROM bars GROUP BY symbol ORDER BY symbol",
    ),
    (
        "daily_vwap_one_month",
        "SELECT symbol, date_trunc('day', ts) AS day, \
         sum((high + low + close) / 3 * volume) / sum(volume) AS vwap FROM bars \
         WHERE timeframe = '1m' AND ts >= '2022-06-01T00:00:00Z' AND ts < '2022-07-01T00:00:00Z' \
         GROUP BY 1, 2 ORDER BY 1, 2",
    ),
    (
        "latest_ts_per_symbol",
        "SELECT symbol, max(ts) AS latest FROM bars GROUP BY symbol ORDER BY symbol",
    ),
];

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median and min ms of reading every row of the stream `run` starts, after one warm-up run.
async fn time_stream<F, Fut>(runs: usize, run: F) -> (f64, f64, usize)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = datafusion::execution::SendableRecordBatchStream>,
{
    let mut times = Vec::with_capacity(runs);
    let mut rows = 0;
    for i in 0..=runs {
        let t = Instant::now();
        let mut stream = run().await;
        let mut n = 0;
        while let Some(b) = stream.next().await {
            n += b.expect("query runs").num_rows();
        }
        if i > 0 {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        rows = n;
    }
    let min = times.iter().copied().fold(f64::INFINITY, f64::min);
    (median(times), min, rows)
}

async fn time_sql(store: &Store, sql: &str, runs: usize) -> (f64, f64, usize) {
    time_stream(runs, || async {
        store.engine().sql_stream(sql).await.expect("query plans")
    })
    .await
}

/// `sql` through DataFusion's planner even when the engine would answer it without (a range
/// read), to show what the short path saves.
async fn time_planned(store: &Store, sql: &str, runs: usize) -> (f64, f64, usize) {
    time_stream(runs, || async {
        let engine = store.engine();
        let query = engine.sql(sql).await.expect("query plans");
        engine.execute(query).await.expect("query runs")
    })
    .await
}

async fn time_load(store: &Store, runs: usize) -> (f64, f64, usize) {
    let symbols: Vec<String> = [
        "AAAA", "AAAB", "AAAC", "AAAD", "AAAE", "AAAF", "AAAG", "AAAH", "AAAI", "AAAJ",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let req = LoadRequest {
        symbols,
        interval: "1m".parse().unwrap(),
        start: Some(1_640_995_200_000_000), // 2022-01-01
        end: Some(1_672_531_200_000_000),   // 2023-01-01
        columns: None,
        adjustment: tickvault::adjust::Adjustment::NONE,
    };
    time_stream(runs, || async {
        store.load_bars(&req).await.expect("load plans")
    })
    .await
}

/// Where a query's time goes: planning SQL to a logical plan, physical planning, execution.
async fn breakdown(store: &Store, sql: &str, runs: usize) -> (f64, f64, f64) {
    let (mut plan, mut physical, mut exec) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..=runs {
        let t0 = Instant::now();
        let df = store.engine().sql(sql).await.expect("plans");
        let t1 = Instant::now();
        let task = df.task_ctx();
        let physical_plan = df.create_physical_plan().await.expect("physical plan");
        let t2 = Instant::now();
        let batches = datafusion::physical_plan::collect(physical_plan, std::sync::Arc::new(task))
            .await
            .expect("runs");
        let t3 = Instant::now();
        assert!(!batches.is_empty());
        if i > 0 {
            plan.push((t1 - t0).as_secs_f64() * 1e3);
            physical.push((t2 - t1).as_secs_f64() * 1e3);
            exec.push((t3 - t2).as_secs_f64() * 1e3);
        }
    }
    (median(plan), median(physical), median(exec))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let Some(store_url) = arg("--store").or_else(|| std::env::var("TICKVAULT_BENCH_STORE").ok())
    else {
        eprintln!("queries bench: pass --store DIR (or TICKVAULT_BENCH_STORE); skipping");
        return;
    };
    let runs: usize = arg("--runs").map_or(15, |r| r.parse().expect("--runs N"));
    let json = args.iter().any(|a| a == "--json");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = Store::open(&store_url).await.expect("open store");
        // `--only NAME`: time one query (to profile it).
        let only = arg("--only");
        let wanted = |name: &str| only.as_deref().is_none_or(|o| o == name);
        let mut results = Vec::new();
        for (name, sql) in QUERIES.iter().filter(|(name, _)| wanted(name)) {
            let (med, min, rows) = time_sql(&store, sql, runs).await;
            results.push((name.to_string(), med, min, rows));
        }
        if wanted("one_symbol_one_day_planned") {
            let (med, min, rows) = time_planned(&store, QUERIES[0].1, runs).await;
            results.push(("one_symbol_one_day_planned".to_string(), med, min, rows));
        }
        if wanted("load_10_symbols_1_year") {
            let (med, min, rows) = time_load(&store, runs).await;
            results.push(("load_10_symbols_1_year".to_string(), med, min, rows));
        }
        if args.iter().any(|a| a == "--breakdown") {
            let (plan, physical, exec) = breakdown(&store, QUERIES[0].1, runs).await;
            eprintln!(
                "one_symbol_one_day breakdown (median ms): sql->logical {plan:.3}, physical {physical:.3}, execute {exec:.3}"
            );
        }
        for (name, med, min, rows) in &results {
            if json {
                println!(
                    "{{\"query\":\"{name}\",\"median_ms\":{med:.3},\"min_ms\":{min:.3},\"rows\":{rows}}}"
                );
            } else {
                println!("{name:<34} median {med:>9.3} ms   min {min:>9.3} ms   rows {rows}");
            }
        }
    });
}
