//! Adjusted vs raw load: 10 symbols x 1 year of minute bars (390 a session, 252 sessions), each
//! symbol with a split and four quarterly dividends in the year, loaded raw and `adjust=all`,
//! in process (the library loader) and over HTTP (`GET /v1/bars`, Arrow IPC). The store is built
//! in a temporary directory first (not timed); each case runs once to warm, then `--runs` times.
//!
//!   cargo bench --bench adjust [-- --runs N] [--json]
//!
//! Prints median and min ms per case and the adjusted/raw ratio (the budget is 1.2x).

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Float64Array, RecordBatch, TimestampMicrosecondArray};
use chrono::{Datelike, Duration, NaiveDate};
use futures::StreamExt;
use tickvault::actions::CorporateAction;
use tickvault::adjust::{Adjust, Adjustment};
use tickvault::batch::{SeriesBatch, SeriesKey};
use tickvault::calendar::Calendar;
use tickvault::config::Config;
use tickvault::model::{FILE_SCHEMA, Interval, Symbol};
use tickvault::server::Server;
use tickvault::{LoadRequest, Store};

const SYMBOLS: [&str; 10] = [
    "AAAA", "AAAB", "AAAC", "AAAD", "AAAE", "AAAF", "AAAG", "AAAH", "AAAI", "AAAJ",
];
const YEAR: i32 = 2022;

fn micros(d: NaiveDate) -> i64 {
    d.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_micros()
}

/// One symbol's minute bars of the year: a random walk around 100, halved by the split.
fn series(symbol: &str, seed: u64, split_at: i64) -> SeriesBatch {
    let (start, end) = (
        micros(NaiveDate::from_ymd_opt(YEAR, 1, 1).unwrap()),
        micros(NaiveDate::from_ymd_opt(YEAR + 1, 1, 1).unwrap()),
    );
    let ts = Calendar::UsEquity.expected_bars(Interval::M1, start, end);
    let mut state = seed | 1;
    let mut price = 100.0f64;
    let mut close = Vec::with_capacity(ts.len());
    for &t in &ts {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        price *= 1.0 + ((state % 2001) as f64 - 1000.0) / 1e6;
        close.push(if t >= split_at { price / 2.0 } else { price });
    }
    let n = ts.len();
    let f = |v: Vec<f64>| Arc::new(Float64Array::from(v)) as _;
    let batch = RecordBatch::try_new(
        FILE_SCHEMA.clone(),
        vec![
            Arc::new(TimestampMicrosecondArray::from(ts).with_timezone("UTC")),
            f(close.clone()),
            f(close.iter().map(|c| c * 1.001).collect()),
            f(close.iter().map(|c| c * 0.999).collect()),
            f(close.clone()),
            f(vec![1000.0; n]),
            f(close.clone()),
            Arc::new(arrow::array::Int64Array::from(vec![10i64; n])),
        ],
    )
    .expect("file schema");
    SeriesBatch {
        key: SeriesKey {
            symbol: Symbol::new(symbol).unwrap(),
            interval: Interval::M1,
        },
        batch,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Median and min ms of `run(false)` (raw) and `run(true)` (adjusted), taken in turns so that
/// a busy machine slows both alike; each runs once to warm first.
async fn time_pair<F, Fut>(runs: usize, run: F) -> [(f64, f64, usize); 2]
where
    F: Fn(bool) -> Fut,
    Fut: std::future::Future<Output = usize>,
{
    let mut times = [Vec::with_capacity(runs), Vec::with_capacity(runs)];
    let mut rows = [0, 0];
    for i in 0..=runs {
        for adjusted in [false, true] {
            let t = Instant::now();
            rows[adjusted as usize] = run(adjusted).await;
            if i > 0 {
                times[adjusted as usize].push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    [0, 1].map(|k| {
        let min = times[k].iter().copied().fold(f64::INFINITY, f64::min);
        (median(times[k].clone()), min, rows[k])
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let runs: usize = arg("--runs").map_or(15, |r| r.parse().expect("--runs N"));
    let json = args.iter().any(|a| a == "--json");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let url = dir.path().to_str().unwrap().to_string();
        let store = Store::open(&url).await.expect("open store");
        let split_day = NaiveDate::from_ymd_opt(YEAR, 6, 13).unwrap(); // a Monday
        let split_at = Calendar::UsEquity.day_start(split_day);
        let mut events = Vec::new();
        for (i, s) in SYMBOLS.iter().enumerate() {
            store
                .write_series(vec![series(s, i as u64 + 7, split_at)], "bench")
                .await
                .unwrap();
            let symbol = Symbol::new(s).unwrap();
            events.push(CorporateAction::split(symbol.clone(), split_day, 2.0, "import", 0).unwrap());
            for month in [2, 5, 8, 11] {
                let mut d = NaiveDate::from_ymd_opt(YEAR, month, 10).unwrap();
                while d.weekday().number_from_monday() > 5 {
                    d += Duration::days(1);
                }
                events.push(CorporateAction::dividend(symbol.clone(), d, 0.2, "import", 0).unwrap());
            }
        }
        store.actions().upsert(events).await.unwrap();
        let store = Arc::new(store);
        let (start, end) = (
            micros(NaiveDate::from_ymd_opt(YEAR, 1, 1).unwrap()),
            micros(NaiveDate::from_ymd_opt(YEAR + 1, 1, 1).unwrap()),
        );
        let request = |adjust| LoadRequest {
            symbols: SYMBOLS.iter().map(|s| s.to_string()).collect(),
            interval: Interval::M1,
            start: Some(start),
            end: Some(end),
            columns: None,
            adjustment: Adjustment::new(adjust, None),
        };
        let load = |adjust| {
            let store = Arc::clone(&store);
            let req = request(adjust);
            async move {
                let mut stream = store.load_bars(&req).await.expect("load");
                let mut n = 0;
                while let Some(b) = stream.next().await {
                    n += b.expect("rows").num_rows();
                }
                n
            }
        };
        let mut results = Vec::new();
        let pair = time_pair(runs, |adjusted| {
            load(if adjusted { Adjust::All } else { Adjust::None })
        })
        .await;
        for (name, (med, min, rows)) in ["in-process raw", "in-process adjusted"].into_iter().zip(pair) {
            results.push((name, med, min, rows));
        }

        let mut config = Config::default();
        config.listen = "127.0.0.1:0".into();
        config.query_cache = tickvault::config::ByteSize(0);
        let server = Server::bind(config).await.expect("bind");
        let base = format!("http://{}", server.local_addr());
        let served = Arc::clone(&store);
        tokio::spawn(server.serve(async move { Ok(served) }, std::future::pending()));
        let client = reqwest::Client::new();
        while !client
            .get(format!("{base}/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let get = |adjust: &str| {
            let url = format!(
                "{base}/v1/bars?symbols={}&interval=1m&start={YEAR}-01-01&end={}-01-01&format=arrow&adjust={adjust}",
                SYMBOLS.join(","),
                YEAR + 1
            );
            let client = client.clone();
            async move {
                let r = client.get(&url).send().await.expect("request");
                assert!(r.status().is_success(), "{}", r.status());
                let body = r.bytes().await.expect("body");
                let reader = arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None)
                    .expect("arrow stream");
                reader.map(|b| b.expect("batch").num_rows()).sum::<usize>()
            }
        };
        let pair = time_pair(runs, |adjusted| get(if adjusted { "all" } else { "none" })).await;
        for (name, (med, min, rows)) in ["http raw", "http adjusted"].into_iter().zip(pair) {
            results.push((name, med, min, rows));
        }
        for (name, med, min, rows) in &results {
            if json {
                println!("{{\"case\":\"{name}\",\"median_ms\":{med:.3},\"min_ms\":{min:.3},\"rows\":{rows}}}");
            } else {
                println!("{name:<22} median {med:>9.3} ms   min {min:>9.3} ms   rows {rows}");
            }
        }
        for pair in results.chunks(2) {
            println!(
                "{}: adjusted/raw = {:.3} (median), {:.3} (min)",
                pair[0].0.split(' ').next().unwrap(),
                pair[1].1 / pair[0].1,
                pair[1].2 / pair[0].2
            );
        }
    });
}
