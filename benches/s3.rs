//! tickvault on a loopback S3 server (moto_server) beside local disk: import throughput, and
//! for a one-symbol-one-day query and a 10-symbol-year load, cold (a freshly opened store: empty
//! footer cache, empty disk cache) and warm (the median of the next runs):
//! time, requests by kind and bytes read. Prints the README's table.
//!
//!   python3 ../shared/tools/gen_bars.py --symbols 50 --start 2021-01-01 --end 2023-12-31 \
//!       --interval 1m --format csv --out /tmp/tv-bench/synthetic_1m_csv
//!   cargo bench --bench s3 -- --csv /tmp/tv-bench/synthetic_1m_csv [--runs 5]

#[path = "../tests/it/s3/moto.rs"]
#[allow(dead_code)]
mod moto;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use tickvault::import::ImportOptions;
use tickvault::storage::{RequestCounts, StoreSettings};
use tickvault::{LoadRequest, Store, StoreOptions};

const ONE_DAY: &str = "SELECT * FROM bars WHERE symbol = 'AAAK' AND timeframe = '1m' \
     AND ts >= '2022-06-15T00:00:00Z' AND ts < '2022-06-16T00:00:00Z' ORDER BY ts";

fn load_request() -> LoadRequest {
    LoadRequest {
        symbols: (0..10)
            .map(|i| format!("AAA{}", (b'A' + i) as char))
            .collect(),
        interval: "1m".parse().unwrap(),
        start: Some(1_640_995_200_000_000), // 2022-01-01
        end: Some(1_672_531_200_000_000),   // 2023-01-01
        columns: None,
        adjustment: tickvault::adjust::Adjustment::NONE,
    }
}

struct Backend {
    name: &'static str,
    url: String,
    options: StoreOptions,
}

/// One measured operation: wall time and what it asked the store for.
struct Cost {
    ms: f64,
    rows: usize,
    requests: RequestCounts,
}

async fn run_query(store: &Store) -> Cost {
    let before = store.requests();
    let t = Instant::now();
    let mut stream = store.engine().sql_stream(ONE_DAY).await.unwrap();
    let mut rows = 0;
    while let Some(b) = stream.next().await {
        rows += b.unwrap().num_rows();
    }
    Cost {
        ms: t.elapsed().as_secs_f64() * 1e3,
        rows,
        requests: store.requests().since(&before),
    }
}

async fn run_load(store: &Store) -> Cost {
    let before = store.requests();
    let t = Instant::now();
    let mut stream = store.load_bars(&load_request()).await.unwrap();
    let mut rows = 0;
    while let Some(b) = stream.next().await {
        rows += b.unwrap().num_rows();
    }
    Cost {
        ms: t.elapsed().as_secs_f64() * 1e3,
        rows,
        requests: store.requests().since(&before),
    }
}

/// Cold: the first run in a freshly opened store. Warm: the median of `runs` more.
async fn cold_and_warm<F, Fut>(backend: &Backend, runs: usize, op: F) -> (Cost, Cost)
where
    F: Fn(Arc<Store>) -> Fut,
    Fut: std::future::Future<Output = Cost>,
{
    let store = Arc::new(
        Store::open_with_options(&backend.url, &backend.options)
            .await
            .unwrap(),
    );
    let cold = op(Arc::clone(&store)).await;
    let mut warm = Vec::new();
    for _ in 0..runs {
        warm.push(op(Arc::clone(&store)).await);
    }
    warm.sort_by(|a, b| a.ms.total_cmp(&b.ms));
    (cold, warm.swap_remove(runs / 2))
}

fn row(what: &str, backend: &str, c: &Cost) {
    let r = &c.requests;
    println!(
        "| {what} | {backend} | {:.1} ms | {} | {} | {} | {} | {:.2} MB |",
        c.ms,
        c.rows,
        r.list,
        r.get,
        r.ranged_get,
        r.bytes_read as f64 / 1e6
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let Some(csv) = arg("--csv").map(PathBuf::from) else {
        eprintln!("s3 bench: pass --csv DIR (see the header of benches/s3.rs); skipping");
        return;
    };
    let runs: usize = arg("--runs").map_or(5, |r| r.parse().expect("--runs N"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(bench(&csv, runs));
}

async fn bench(csv: &Path, runs: usize) {
    let server = moto::Moto::start();
    let bucket = server.bucket("bench").await;
    let work = tempfile::tempdir().unwrap();
    let s3 = StoreOptions {
        storage: StoreSettings {
            s3: server.config(),
            ..Default::default()
        },
        ..Default::default()
    };
    let backends = [
        Backend {
            name: "local disk",
            url: work.path().join("local").display().to_string(),
            options: StoreOptions::default(),
        },
        Backend {
            name: "S3",
            url: format!("s3://{bucket}/bench"),
            options: s3.clone(),
        },
        Backend {
            name: "S3 + disk cache",
            url: format!("s3://{bucket}/bench"),
            options: StoreOptions {
                storage: StoreSettings {
                    cache_dir: Some(work.path().join("cache")),
                    cache_max_bytes: 4 << 30,
                    ..s3.storage.clone()
                },
                ..s3.clone()
            },
        },
    ];
    let files = tickvault::import::collect_inputs(&[csv.to_path_buf()]).unwrap();
    let options = Arc::new(ImportOptions {
        interval: "1m".parse().unwrap(),
        symbol: None,
        symbol_pattern: None,
        tz: chrono_tz::UTC,
        ambiguous: Default::default(),
        epoch_unit: None,
        format: None,
        skip_events: false,
        bad_events: Default::default(),
    });
    println!("| import into | rows | time | rows/s | PUTs | MB written |");
    println!("|---|---:|---:|---:|---:|---:|");
    for b in &backends[..2] {
        let store = Store::open_with_options(&b.url, &b.options).await.unwrap();
        let before = store.requests();
        let t = Instant::now();
        let s = store
            .import_files(&files, Arc::clone(&options), || {})
            .await
            .unwrap();
        let secs = t.elapsed().as_secs_f64();
        let r = store.requests().since(&before);
        println!(
            "| {} | {} | {secs:.2} s | {:.2} M | {} | {:.0} |",
            b.name,
            s.rows,
            s.rows as f64 / secs / 1e6,
            r.put,
            r.bytes_written as f64 / 1e6
        );
    }
    println!();
    println!("| operation | store | time | rows | LIST | GET | ranged GET | read |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for b in &backends {
        let (cold, warm) = cold_and_warm(b, runs, |s| async move { run_query(&s).await }).await;
        row("one symbol, one day: cold", b.name, &cold);
        row("one symbol, one day: warm", b.name, &warm);
    }
    for b in &backends {
        let (cold, warm) = cold_and_warm(b, runs, |s| async move { run_load(&s).await }).await;
        row("10 symbols x 1 year: cold", b.name, &cold);
        row("10 symbols x 1 year: warm", b.name, &warm);
    }
}
