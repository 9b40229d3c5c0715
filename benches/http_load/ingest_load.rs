//! Ingest load: write throughput with pre-built bodies, and write-to-visible latency.
//! `--bodies N` sends exactly N bodies per client (to load a known number of rows).

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::TimestampMicrosecondArray;
use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use bytes::Bytes;
use tickvault::model::BARS_SCHEMA;

use crate::arg;

const MINUTE: i64 = 60_000_000;
/// 2020-01-01T00:00:00Z
const BASE_TS: i64 = 1_577_836_800_000_000;
/// Symbols each client spreads its writes over.
const SYMBOLS_PER_CLIENT: usize = 20;

/// Prices as a random walk in cents and varying volumes, so files compress like real bars do.
fn walk(seed: i64, n: usize) -> (Vec<f64>, Vec<f64>) {
    let mut x = (seed as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut cents: i64 = 10_000;
    let mut close = Vec::with_capacity(n);
    let mut volume = Vec::with_capacity(n);
    for _ in 0..n {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
        cents = (cents + (r % 21) as i64 - 10).max(100);
        close.push(cents as f64 / 100.0);
        volume.push((100 + (r >> 32) % 5000) as f64);
    }
    (close, volume)
}

fn rows(symbol: &str, first_ts: i64, n: usize) -> RecordBatch {
    let ts: Vec<i64> = (0..n as i64).map(|i| first_ts + i * MINUTE).collect();
    let (close, volume) = walk(first_ts, n);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![symbol; n])),
        Arc::new(StringArray::from(vec!["1m"; n])),
        Arc::new(TimestampMicrosecondArray::from(ts).with_timezone("UTC")),
        Arc::new(Float64Array::from(close.clone())),
        Arc::new(Float64Array::from_iter_values(
            close.iter().map(|c| c + 0.05),
        )),
        Arc::new(Float64Array::from_iter_values(
            close.iter().map(|c| c - 0.05),
        )),
        Arc::new(Float64Array::from(close)),
        Arc::new(Float64Array::from(volume)),
        Arc::new(Float64Array::from(vec![None; n])),
        Arc::new(Int64Array::from(vec![None; n])),
    ];
    RecordBatch::try_new(BARS_SCHEMA.clone(), columns).unwrap()
}

fn arrow_body(batch: &RecordBatch) -> Bytes {
    let mut out = Vec::new();
    let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut out, &batch.schema()).unwrap();
    w.write(batch).unwrap();
    w.finish().unwrap();
    drop(w);
    Bytes::from(out)
}

fn ndjson_body(symbol: &str, first_ts: i64, n: usize) -> Bytes {
    let mut out = String::with_capacity(n * 160);
    let (close, volume) = walk(first_ts, n);
    for i in 0..n {
        let ts = chrono::DateTime::from_timestamp_micros(first_ts + i as i64 * MINUTE)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let (c, v) = (close[i], volume[i]);
        out.push_str(&format!(
            "{{\"symbol\":\"{symbol}\",\"timeframe\":\"1m\",\"ts\":\"{ts}\",\"open\":{c},\"high\":{:.2},\"low\":{:.2},\"close\":{c},\"volume\":{v}}}\n",
            c + 0.05,
            c - 0.05
        ));
    }
    Bytes::from(out)
}

pub(crate) fn write_throughput(args: &[String], format: &str) {
    let base = arg(args, "--base").expect("--base URL");
    let batch: usize = arg(args, "--batch").map_or(10_000, |v| v.parse().unwrap());
    let clients: usize = arg(args, "--clients").map_or(1, |v| v.parse().unwrap());
    let seconds: f64 = arg(args, "--seconds").map_or(5.0, |v| v.parse().unwrap());
    // Bodies are built before the clock starts: enough for this rate over the whole run.
    let rate: f64 = arg(args, "--expect-rate").map_or(2e6, |v| v.parse().unwrap());
    let per_client = match arg(args, "--bodies") {
        Some(n) => n.parse().unwrap(),
        None => ((rate * seconds) / (batch * clients) as f64).ceil() as usize + 2,
    };
    let content_type = match format {
        "arrow" => "application/vnd.apache.arrow.stream",
        "ndjson" => "application/x-ndjson",
        other => panic!("--write {other}: arrow or ndjson"),
    };
    let started_build = Instant::now();
    let bodies: Vec<Vec<Bytes>> = (0..clients)
        .map(|c| {
            (0..per_client)
                .map(|j| {
                    let symbol = format!("C{c:02}S{:02}", j % SYMBOLS_PER_CLIENT);
                    let first = BASE_TS + (j / SYMBOLS_PER_CLIENT * batch) as i64 * MINUTE;
                    match format {
                        "arrow" => arrow_body(&rows(&symbol, first, batch)),
                        _ => ndjson_body(&symbol, first, batch),
                    }
                })
                .collect()
        })
        .collect();
    let body_bytes: usize = bodies.iter().flatten().map(|b| b.len()).sum();
    eprintln!(
        "built {} bodies ({:.0} MB) in {:.1?}",
        clients * per_client,
        body_bytes as f64 / 1e6,
        started_build.elapsed()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (bars, requests, elapsed, ran_out) = runtime.block_on(async {
        let client = reqwest::Client::new();
        let start = Instant::now();
        let end = start + Duration::from_secs_f64(seconds);
        let tasks: Vec<_> = bodies
            .into_iter()
            .map(|mine| {
                let (client, url) = (client.clone(), format!("{base}/v1/write"));
                tokio::spawn(async move {
                    let (mut bars, mut requests, mut busy) = (0usize, 0usize, 0usize);
                    let mut iter = mine.into_iter();
                    let mut next = iter.next();
                    while let Some(body) = next.clone() {
                        if Instant::now() >= end {
                            return (bars, requests, busy, false);
                        }
                        let r = client
                            .post(&url)
                            .header("content-type", content_type)
                            .body(body)
                            .send()
                            .await
                            .expect("request");
                        let status = r.status();
                        let text = r.bytes().await.expect("body");
                        if status.as_u16() == 429 {
                            busy += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                        assert!(
                            status.is_success(),
                            "{status}: {}",
                            String::from_utf8_lossy(&text)
                        );
                        bars += batch;
                        requests += 1;
                        next = iter.next();
                    }
                    (bars, requests, busy, true)
                })
            })
            .collect();
        let (mut bars, mut requests, mut ran_out) = (0, 0, false);
        for t in tasks {
            let (b, r, busy, out) = t.await.unwrap();
            if busy > 0 {
                eprintln!("a client was answered 429 {busy} times");
            }
            bars += b;
            requests += r;
            ran_out |= out;
        }
        (bars, requests, start.elapsed().as_secs_f64(), ran_out)
    });
    println!(
        "{{\"format\": \"{format}\", \"batch\": {batch}, \"clients\": {clients}, \"bars\": {bars}, \"requests\": {requests}, \"seconds\": {elapsed:.3}, \"bars_per_s\": {:.0}, \"mb_per_s\": {:.1}, \"ran_out_of_bodies\": {ran_out}}}",
        bars as f64 / elapsed,
        (body_bytes as f64 * bars as f64 / (clients * per_client * batch) as f64) / elapsed / 1e6,
    );
}

pub(crate) fn visible_latency(args: &[String]) {
    let base = arg(args, "--base").expect("--base URL");
    let seconds: f64 = arg(args, "--seconds").map_or(5.0, |v| v.parse().unwrap());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mut write, mut visible, mut total, mut polls) = (Vec::new(), Vec::new(), Vec::new(), 0);
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let end = Instant::now() + Duration::from_secs_f64(seconds);
        let mut i: i64 = 0;
        while Instant::now() < end {
            let ts = BASE_TS + i * MINUTE;
            let body = ndjson_body("VISIBLE", ts, 1);
            let rfc = chrono::DateTime::from_timestamp_micros(ts).unwrap().to_rfc3339();
            let sql = format!(
                "SELECT count(*) AS n FROM bars WHERE symbol = 'VISIBLE' AND timeframe = '1m' AND ts = '{rfc}'"
            );
            let t0 = Instant::now();
            let r = client
                .post(format!("{base}/v1/write"))
                .header("content-type", "application/x-ndjson")
                .body(body)
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success());
            let _ = r.bytes().await.unwrap();
            let t1 = Instant::now();
            loop {
                polls += 1;
                let r = client
                    .post(format!("{base}/v1/sql"))
                    .body(sql.clone())
                    .send()
                    .await
                    .unwrap();
                let v: serde_json::Value = r.json().await.unwrap();
                if v[0]["n"] == 1 {
                    break;
                }
            }
            let t2 = Instant::now();
            write.push(t1 - t0);
            visible.push(t2 - t1);
            total.push(t2 - t0);
            i += 1;
        }
    });
    let pct = |v: &mut Vec<Duration>, p: f64| {
        v.sort();
        v[((v.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1e3
    };
    let n = write.len();
    println!(
        "{{\"writes\": {n}, \"queries\": {polls}, \"write_p50_ms\": {:.3}, \"write_p99_ms\": {:.3}, \"ack_to_visible_p50_ms\": {:.3}, \"ack_to_visible_p99_ms\": {:.3}, \"send_to_visible_p50_ms\": {:.3}, \"send_to_visible_p99_ms\": {:.3}}}",
        pct(&mut write, 0.5),
        pct(&mut write, 0.99),
        pct(&mut visible, 0.5),
        pct(&mut visible, 0.99),
        pct(&mut total, 0.5),
        pct(&mut total, 0.99),
    );
}
