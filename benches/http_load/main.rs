//! A small HTTP load generator for the README's latency figures: N concurrent clients, each
//! sending the same GET back to back for a while; prints latency percentiles as one JSON line.
//!
//!   cargo bench --bench http_load -- --url 'http://127.0.0.1:8080/v1/sql?q=...' --clients 32 --seconds 10
//!
//! It runs on one thread so it takes as little CPU from the server as it can.
//!
//! Two more modes measure ingest (see benches/ingest_bench.py):
//!
//!   http_load --write arrow|ndjson --base URL --batch 10000 --clients 8 --seconds 5
//!   http_load --visible --base URL --seconds 5
//!
//! `--write` sends bodies built before the clock starts (distinct keys, so the live tier grows
//! and transfers run as they would) and prints bars/s. `--visible` writes one bar at a time and
//! queries it right after the acknowledgement, printing write and write-to-visible latencies.

use std::time::{Duration, Instant};

mod ingest_load;

pub(crate) fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(format) = arg(&args, "--write") {
        return ingest_load::write_throughput(&args, &format);
    }
    if args.iter().any(|a| a == "--visible") {
        return ingest_load::visible_latency(&args);
    }
    let Some(url) = arg(&args, "--url") else {
        eprintln!("usage: http_load --url URL [--clients N] [--seconds S] [--warmup S]");
        return;
    };
    let clients: usize = arg(&args, "--clients").map_or(1, |v| v.parse().unwrap());
    let seconds: f64 = arg(&args, "--seconds").map_or(10.0, |v| v.parse().unwrap());
    let warmup: f64 = arg(&args, "--warmup").map_or(1.0, |v| v.parse().unwrap());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut latencies = runtime.block_on(async {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(clients)
            .build()
            .unwrap();
        let start = Instant::now();
        let measure_from = start + Duration::from_secs_f64(warmup);
        let end = measure_from + Duration::from_secs_f64(seconds);
        let tasks: Vec<_> = (0..clients)
            .map(|_| {
                let (client, url) = (client.clone(), url.clone());
                tokio::spawn(async move {
                    let mut seen = Vec::new();
                    loop {
                        let t = Instant::now();
                        if t >= end {
                            break;
                        }
                        let response = client.get(&url).send().await.expect("request");
                        assert!(response.status().is_success(), "{}", response.status());
                        let _ = response.bytes().await.expect("body");
                        if t >= measure_from {
                            seen.push(t.elapsed());
                        }
                    }
                    seen
                })
            })
            .collect();
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    latencies.sort();
    let pct = |p: f64| {
        let i = ((latencies.len() as f64 - 1.0) * p).round() as usize;
        latencies[i].as_secs_f64() * 1e3
    };
    println!(
        "{{\"clients\": {clients}, \"requests\": {}, \"rps\": {:.0}, \"p50_ms\": {:.3}, \"p90_ms\": {:.3}, \"p99_ms\": {:.3}, \"max_ms\": {:.3}}}",
        latencies.len(),
        latencies.len() as f64 / seconds,
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0)
    );
}
