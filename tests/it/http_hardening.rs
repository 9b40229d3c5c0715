//! The HTTP API against hostile or careless clients: damaged Arrow bodies, lengths that claim
//! more than the body holds, strict Arrow writes, bounded metrics labels, JSON for every error,
//! ambiguous parameters, bearer tokens, deleted bars in `latest`, hidden characters in symbols
//! and server paths in 500s.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, DictionaryArray, Float64Array, Int64Array, LargeStringArray, RecordBatch,
    StringArray, StringViewArray, TimestampMicrosecondArray, TimestampNanosecondArray, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Int8Type, Schema};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tickvault::config::{ByteSize, Config, Token};
use tickvault::live::LiveOptions;
use tickvault::{Store, StoreOptions};

use crate::common::{DAY, Rng, T2021, bars, row};
use crate::server::{TestServer, expect_error};

const ARROW: &str = "application/vnd.apache.arrow.stream";
const NDJSON: &str = "application/x-ndjson";

/// A server over a memory store with a live tier (its WAL in `wal`).
async fn live_server(config: Config, wal: &std::path::Path) -> (TestServer, Arc<Store>) {
    let options = StoreOptions {
        live: Some(LiveOptions::new(wal)),
        ..Default::default()
    };
    let store = Arc::new(
        Store::open_with_options("memory://", &options)
            .await
            .unwrap(),
    );
    (TestServer::start(config, Arc::clone(&store)).await, store)
}

fn ipc(batches: &[RecordBatch]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut out, &batches[0].schema()).unwrap();
    for b in batches {
        w.write(b).unwrap();
    }
    w.finish().unwrap();
    drop(w);
    out
}

/// Daily bars with nulls in vwap (so validity bitmaps are sent) and a dictionary-encoded symbol.
fn varied_batch(first_day: i64, n: usize) -> RecordBatch {
    let symbols: DictionaryArray<Int8Type> =
        (0..n).map(|i| ["AAPL", "MSFT", "BRK.B"][i % 3]).collect();
    let close: Vec<f64> = (0..n).map(|i| 100.0 + i as f64).collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(symbols),
        Arc::new(StringArray::from(vec!["1d"; n])),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(
                (0..n).map(|i| T2021 + (first_day + (i / 3) as i64) * DAY),
            )
            .with_timezone("UTC"),
        ),
        Arc::new(Float64Array::from(close.clone())),
        Arc::new(Float64Array::from_iter_values(
            close.iter().map(|c| c + 1.0),
        )),
        Arc::new(Float64Array::from_iter_values(
            close.iter().map(|c| c - 1.0),
        )),
        Arc::new(Float64Array::from(close.clone())),
        Arc::new(Float64Array::from(vec![1000.0; n])),
        Arc::new(Float64Array::from_iter(
            (0..n).map(|i| (i % 2 == 0).then_some(100.5 + i as f64)),
        )),
        Arc::new(Int64Array::from_iter(
            (0..n).map(|i| (i % 3 != 0).then_some(i as i64)),
        )),
    ];
    let fields: Vec<Field> = [
        ("symbol", columns[0].data_type().clone(), false),
        ("timeframe", DataType::Utf8, false),
        ("ts", columns[2].data_type().clone(), false),
        ("open", DataType::Float64, false),
        ("high", DataType::Float64, false),
        ("low", DataType::Float64, false),
        ("close", DataType::Float64, false),
        ("volume", DataType::Float64, false),
        ("vwap", DataType::Float64, true),
        ("trades", DataType::Int64, true),
    ]
    .into_iter()
    .map(|(n, t, null)| Field::new(n, t, null))
    .collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
}

/// Minute bars with string-view symbols, large-string intervals and nanosecond timestamps.
fn views_batch() -> RecordBatch {
    let n = 6;
    let columns: Vec<(&str, ArrayRef)> = vec![
        (
            "symbol",
            Arc::new(StringViewArray::from(vec!["A SYMBOL LONGER THAN 12"; n])),
        ),
        ("timeframe", Arc::new(LargeStringArray::from(vec!["1m"; n]))),
        (
            "ts",
            Arc::new(
                TimestampNanosecondArray::from_iter_values(
                    (0..n as i64).map(|i| (T2021 + i * 60_000_000) * 1000),
                )
                .with_timezone("UTC"),
            ),
        ),
        ("open", Arc::new(Float64Array::from(vec![1.0; n]))),
        ("high", Arc::new(Float64Array::from(vec![2.0; n]))),
        ("low", Arc::new(Float64Array::from(vec![0.5; n]))),
        ("close", Arc::new(Float64Array::from(vec![1.5; n]))),
        ("volume", Arc::new(Int64Array::from(vec![10; n]))),
    ];
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, a)| Field::new(*name, a.data_type().clone(), false))
        .collect();
    let arrays = columns.into_iter().map(|(_, a)| a).collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrow_bodies_with_flipped_bits_are_200_or_400_and_the_server_lives() {
    let wal = tempfile::tempdir().unwrap();
    let (server, _store) = live_server(Config::default(), wal.path()).await;
    let bodies = [
        ipc(&[varied_batch(0, 12)]),
        ipc(&[varied_batch(0, 4), varied_batch(10, 5)]),
        ipc(&[bars(&[
            row("SPY", "1d", T2021, 4.0),
            row("SPY", "1d", T2021 + DAY, 5.0),
        ])]),
        ipc(&[views_batch()]),
    ];
    for body in &bodies {
        let r = server.post("/v1/write", ARROW, body.clone()).await;
        assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    }
    let (mut ok, mut refused) = (0, 0);
    // More with TICKVAULT_FUZZ_TRIALS (and another seed with TICKVAULT_FUZZ_SEED).
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let mut rng = Rng::new(env("TICKVAULT_FUZZ_SEED", 0x5eed_1234_abcd_0001));
    let trials = env("TICKVAULT_FUZZ_TRIALS", 2000) as usize;
    for trial in 0..trials {
        let mut body = bodies[trial % bodies.len()].clone();
        // Odd trials flip bits; even ones overwrite bytes with values lengths and counts are
        // made of (all ones, a sign bit, zero, anything).
        for _ in 0..1 + rng.below(4) {
            let at = rng.index(body.len());
            if trial % 2 == 1 {
                body[at] ^= 1 << rng.below(8);
            } else {
                body[at] = [0xff, 0x7f, 0x80, 0x00, rng.next() as u8][rng.index(5)];
            }
        }
        let r = server.post("/v1/write", ARROW, body).await;
        let status = r.status();
        let answer: Value = r
            .json()
            .await
            .unwrap_or_else(|e| panic!("trial {trial}: {status} without a JSON body: {e}"));
        match status {
            StatusCode::OK => ok += 1,
            StatusCode::BAD_REQUEST => {
                refused += 1;
                assert!(
                    answer["error"].as_str().is_some_and(|m| !m.is_empty()),
                    "{answer}"
                );
            }
            other => panic!("trial {trial}: {other} {answer}"),
        }
    }
    assert!(refused > trials / 4, "{ok} accepted, {refused} refused");
    eprintln!("{trials} damaged bodies: {ok} accepted, {refused} refused with 400");
    assert_eq!(server.get("/health").await.status(), StatusCode::OK);
    let metrics = server.get("/metrics").await.text().await.unwrap();
    assert!(!metrics.contains("internal_panic"), "{metrics}");
}

/// Offsets (into `body`) of every message's metadata: (message start, metadata range).
fn messages(body: &[u8]) -> Vec<(usize, std::ops::Range<usize>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 8 <= body.len() {
        let len = i32::from_le_bytes(body[at + 4..at + 8].try_into().unwrap()) as usize;
        if len == 0 {
            break;
        }
        let meta = at + 8..at + 8 + len;
        let message = arrow::ipc::root_as_message(&body[meta.clone()]).unwrap();
        let next = meta.end + message.bodyLength() as usize;
        out.push((at, meta));
        at = next;
    }
    out
}

/// Replaces the one occurrence of `old` (little-endian i64) in `range` of `body` with `new`.
fn patch_i64(body: &mut [u8], range: std::ops::Range<usize>, old: i64, new: i64) {
    let needle = old.to_le_bytes();
    let hits: Vec<usize> = (range.start..range.end - 7)
        .filter(|&i| body[i..i + 8] == needle)
        .collect();
    assert_eq!(hits.len(), 1, "{old} appears {} times", hits.len());
    body[hits[0]..hits[0] + 8].copy_from_slice(&new.to_le_bytes());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lengths_claiming_more_than_the_body_holds_are_refused_before_allocating() {
    let wal = tempfile::tempdir().unwrap();
    let (server, store) = live_server(Config::default(), wal.path()).await;
    // 137,438,953,664 bytes: the allocation that aborted the process.
    const HUGE: i64 = 137_438_953_664;
    let rows = 7;
    let good = ipc(&[bars(
        &(0..rows)
            .map(|i| row("SPY", "1d", T2021 + i * DAY, 4.0))
            .collect::<Vec<_>>(),
    )]);
    let msgs = messages(&good);
    assert_eq!(msgs.len(), 2, "a schema and one batch");
    let (batch_at, batch_meta) = msgs[1].clone();
    let batch = arrow::ipc::root_as_message(&good[batch_meta.clone()]).unwrap();
    let body_len = batch.bodyLength();
    let rb = batch.header_as_record_batch().unwrap();
    let last_buffer = rb.buffers().unwrap().iter().next_back().unwrap().length();
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();
    // The metadata length prefix.
    let mut b = good.clone();
    b[batch_at + 4..batch_at + 8].copy_from_slice(&0x7fff_fff0_i32.to_le_bytes());
    cases.push(("metadata", b));
    // The message's body length.
    let mut b = good.clone();
    patch_i64(&mut b, batch_meta.clone(), body_len, HUGE);
    cases.push(("body of", b));
    // The batch's row count (also every column node's length).
    let mut b = good.clone();
    let meta = &good[batch_meta.clone()];
    let needle = rows.to_le_bytes();
    let first = (0..meta.len() - 7)
        .find(|&i| meta[i..i + 8] == needle)
        .unwrap();
    b[batch_meta.start + first..batch_meta.start + first + 8].copy_from_slice(&HUGE.to_le_bytes());
    cases.push(("rows", b));
    // A buffer's length.
    let mut b = good.clone();
    let needle = last_buffer.to_le_bytes();
    let last = (0..meta.len() - 7)
        .rev()
        .find(|&i| meta[i..i + 8] == needle)
        .unwrap();
    b[batch_meta.start + last..batch_meta.start + last + 8].copy_from_slice(&HUGE.to_le_bytes());
    cases.push(("buffer", b));
    for (what, body) in cases {
        let m = expect_error(
            server.post("/v1/write", ARROW, body).await,
            StatusCode::BAD_REQUEST,
            "invalid_row",
        )
        .await;
        assert!(m.contains("Arrow IPC") && m.contains(what), "{what}: {m}");
    }
    assert_eq!(
        store.live().unwrap().read().rows(),
        0,
        "nothing was applied"
    );
    assert_eq!(server.get("/health").await.status(), StatusCode::OK);
}

fn arrow_rows_body(columns: Vec<(&str, ArrayRef)>) -> Vec<u8> {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
        .collect();
    let arrays = columns.into_iter().map(|(_, a)| a).collect();
    ipc(&[RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap()])
}

fn base_columns(ts: ArrayRef) -> Vec<(&'static str, ArrayRef)> {
    let n = ts.len();
    let one = || -> ArrayRef { Arc::new(Float64Array::from(vec![1.0; n])) };
    vec![
        ("symbol", Arc::new(StringArray::from(vec!["A"; n]))),
        ("timeframe", Arc::new(StringArray::from(vec!["1m"; n]))),
        ("ts", ts),
        ("open", one()),
        ("high", one()),
        ("low", one()),
        ("close", one()),
        ("volume", one()),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arrow_writes_are_as_strict_as_ndjson() {
    let wal = tempfile::tempdir().unwrap();
    let (server, store) = live_server(Config::default(), wal.path()).await;
    let minute_ns = 60_000_000_000_i64;
    let t0 = T2021 * 1000;
    let ns = |extra: i64| -> ArrayRef {
        Arc::new(
            TimestampNanosecondArray::from(vec![t0, t0 + minute_ns, t0 + 2 * minute_ns + extra])
                .with_timezone("UTC"),
        )
    };
    // Whole microseconds in nanoseconds are fine.
    let r = server
        .post("/v1/write", ARROW, arrow_rows_body(base_columns(ns(0))))
        .await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let mut cases: Vec<(Vec<u8>, &[&str])> = Vec::new();
    // A sub-microsecond timestamp is refused, not truncated, by row.
    cases.push((
        arrow_rows_body(base_columns(ns(1))),
        &["row 3", "finer than a microsecond"],
    ));
    // A column twice.
    let mut twice = base_columns(ns(0));
    twice.push(("close", Arc::new(Float64Array::from(vec![2.0; 3]))));
    cases.push((arrow_rows_body(twice), &["\"close\" appears twice"]));
    // An unknown column.
    let mut extra = base_columns(ns(0));
    extra.push(("clsoe", Arc::new(Float64Array::from(vec![2.0; 3]))));
    cases.push((arrow_rows_body(extra), &["unknown column \"clsoe\""]));
    // Trades past i64, by row.
    let mut big = base_columns(ns(0));
    big.push(("trades", Arc::new(UInt64Array::from(vec![1, 2, u64::MAX]))));
    cases.push((
        arrow_rows_body(big),
        &["row 3", "trades 18446744073709551615"],
    ));
    // Float trades (NDJSON refuses 4.5 as trades too).
    let mut float_trades = base_columns(ns(0));
    float_trades.push(("trades", Arc::new(Float64Array::from(vec![1.0, 2.5, 3.0]))));
    cases.push((arrow_rows_body(float_trades), &["\"trades\"", "integer"]));
    // A null required value, by row and column.
    let mut null_close = base_columns(ns(0));
    null_close[6].1 = Arc::new(Float64Array::from(vec![Some(1.0), None, Some(1.0)]));
    cases.push((arrow_rows_body(null_close), &["row 2", "close is null"]));
    // A timestamp given as plain integers is ambiguous (NDJSON integers are nanoseconds).
    let ints = base_columns(Arc::new(Int64Array::from(vec![1, 2, 3])));
    cases.push((arrow_rows_body(ints), &["\"ts\"", "timestamp"]));
    for (body, wanted) in cases {
        let m = expect_error(
            server.post("/v1/write", ARROW, body).await,
            StatusCode::BAD_REQUEST,
            "invalid_row",
        )
        .await;
        for w in wanted {
            assert!(m.contains(w), "{w:?} not in {m}");
        }
    }
    // Rows are numbered across the stream's batches.
    let first = bars(&[row("B", "1d", T2021, 4.0), row("B", "1d", T2021 + DAY, 4.0)]);
    let second = bars(&[
        row("B", "1d", T2021 + 2 * DAY, 4.0),
        row("B", "1d", T2021 + 1, 4.0),
    ]);
    let m = expect_error(
        server.post("/v1/write", ARROW, ipc(&[first, second])).await,
        StatusCode::BAD_REQUEST,
        "invalid_row",
    )
    .await;
    assert!(m.contains("row 4") && m.contains("00:00 UTC"), "{m}");
    assert_eq!(
        store.live().unwrap().read().rows(),
        3,
        "only the good write"
    );
}

#[tokio::test]
async fn metrics_labels_stay_bounded_whatever_methods_and_paths_are_sent() {
    let store = Arc::new(Store::open("memory://").await.unwrap());
    let server = TestServer::start(Config::default(), store).await;
    let series = |text: &str| {
        text.lines()
            .filter(|l| l.starts_with("tickvault_http_requests_total{"))
            .count()
    };
    let before = series(&server.get("/metrics").await.text().await.unwrap());
    for i in 0..60 {
        let method = Method::from_bytes(format!("BREW{i}").as_bytes()).unwrap();
        let r = server
            .client
            .request(method, server.url("/health"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        let r = server.get(&format!("/no/such/route/{i}")).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
    }
    let text = server.get("/metrics").await.text().await.unwrap();
    // The 60 methods are one series and the 60 paths another (plus /metrics itself).
    assert!(series(&text) <= before + 3, "{text}");
    assert!(text.contains(
        "tickvault_http_requests_total{route=\"/health\",method=\"other\",status=\"405\"} 60"
    ));
    assert!(text.contains(
        "tickvault_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"} 60"
    ));
    assert!(!text.contains("BREW"), "{text}");
    server.stop().await;
}

#[tokio::test]
async fn every_rejection_is_a_json_error() {
    let store = Arc::new(Store::open("memory://").await.unwrap());
    let config = Config {
        max_body: ByteSize(1024),
        ..Config::default()
    };
    let server = TestServer::start(config, store).await;
    let get = |path: &'static str| server.get(path);
    // Query strings axum cannot read.
    expect_error(
        get("/v1/bars?symbols=A&fill=maybe").await,
        StatusCode::BAD_REQUEST,
        "invalid_parameter",
    )
    .await;
    expect_error(
        get("/v1/sql?q=SELECT%201&q=SELECT%202").await,
        StatusCode::BAD_REQUEST,
        "invalid_parameter",
    )
    .await;
    // A path parameter that is not UTF-8.
    expect_error(
        get("/v1/bars/%FF%FE").await,
        StatusCode::BAD_REQUEST,
        "invalid_path",
    )
    .await;
    expect_error(
        server
            .client
            .delete(server.url("/v1/symbols/%C3%28"))
            .send()
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_path",
    )
    .await;
    // Unknown routes and methods.
    expect_error(get("/v2/nothing").await, StatusCode::NOT_FOUND, "not_found").await;
    expect_error(
        server
            .client
            .put(server.url("/v1/sql"))
            .send()
            .await
            .unwrap(),
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
    // Bodies past max_body, as SQL and as JSON.
    expect_error(
        server
            .client
            .post(server.url("/v1/sql"))
            .body(vec![b' '; 4096])
            .send()
            .await
            .unwrap(),
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
    )
    .await;
    expect_error(
        server
            .client
            .post(server.url("/v1/symbols"))
            .header("content-type", "application/json")
            .body(vec![b' '; 4096])
            .send()
            .await
            .unwrap(),
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn column_lists_must_name_each_column_once() {
    let store = Arc::new(Store::open("memory://").await.unwrap());
    store
        .write(&bars(&[row("A", "1d", T2021, 1.0)]))
        .await
        .unwrap();
    let server = TestServer::start(Config::default(), store).await;
    for path in [
        "/v1/bars/A?columns=close,close",
        "/v1/bars/A?columns=",
        "/v1/bars?symbols=A&columns=ts,close,ts",
        "/v1/bars?symbols=A&columns=,",
    ] {
        let m = expect_error(
            server.get(path).await,
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
        )
        .await;
        assert!(m.starts_with("columns:"), "{path}: {m}");
    }
    let r = server.get("/v1/bars/A?columns=ts,close&format=json").await;
    assert_eq!(r.status(), StatusCode::OK);
    let rows: Value = r.json().await.unwrap();
    assert_eq!(rows[0].as_object().unwrap().len(), 2, "{rows}");
    server.stop().await;
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let store = Arc::new(Store::open("memory://").await.unwrap());
    let config = Config {
        tokens: vec!["read:n0tebooks".parse::<Token>().unwrap()],
        ..Config::default()
    };
    let server = TestServer::start(config, store).await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let r = server
            .client
            .get(server.url("/v1/status"))
            .header("authorization", format!("{scheme} n0tebooks"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{scheme}");
    }
    for value in [
        "Bearer n0tebook",
        "Bearer n0tebooks2",
        "Basic n0tebooks",
        "n0tebooks",
    ] {
        let r = server
            .client
            .get(server.url("/v1/status"))
            .header("authorization", value)
            .send()
            .await
            .unwrap();
        expect_error(r, StatusCode::UNAUTHORIZED, "unauthorized").await;
    }
    server.stop().await;
}

async fn latest_symbols(server: &TestServer) -> Vec<(String, String)> {
    let r = server
        .post_sql("SELECT symbol, ts FROM latest ORDER BY symbol")
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let rows: Value = r.json().await.unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["symbol"].as_str().unwrap().to_string(),
                r["ts"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latest_never_shows_a_deleted_bar() {
    let wal = tempfile::tempdir().unwrap();
    let (server, _store) = live_server(Config::default(), wal.path()).await;
    let line = |symbol: &str, day: &str| {
        format!(
            r#"{{"symbol":"{symbol}","timeframe":"1d","ts":"{day}T00:00:00Z","open":1,"high":2,"low":0.5,"close":1.5,"volume":10}}"#
        )
    };
    let body = [
        line("A", "2024-01-02"),
        line("A", "2024-01-03"),
        line("B", "2024-01-03"),
    ]
    .join("\n");
    let r = server.post("/v1/write", NDJSON, body.into_bytes()).await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    assert_eq!(latest_symbols(&server).await.len(), 2);
    // Deleting A's first bar leaves its latest (the 3rd) alone.
    let delete = |range: &'static str| {
        server
            .client
            .delete(server.url(&format!("/v1/bars/A?timeframe=1d&{range}")))
            .send()
    };
    let r = delete("start=2024-01-02&end=2024-01-03").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    assert_eq!(
        latest_symbols(&server).await[0],
        ("A".to_string(), "2024-01-03T00:00:00Z".to_string())
    );
    // Deleting the bar the latest price came from removes it; B is untouched.
    let r = delete("start=2024-01-03&end=2024-01-04").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let latest = latest_symbols(&server).await;
    assert_eq!(
        latest,
        vec![("B".to_string(), "2024-01-03T00:00:00Z".to_string())]
    );
    let r = server
        .post_sql("SELECT count(*) AS n FROM bars WHERE symbol = 'A'")
        .await;
    assert_eq!(r.json::<Value>().await.unwrap()[0]["n"], 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symbols_with_hidden_characters_are_refused_at_every_entrance() {
    let wal = tempfile::tempdir().unwrap();
    let (server, store) = live_server(Config::default(), wal.path()).await;
    for (symbol, code) in [
        ("AA\u{200B}PL", "U+200B"),
        ("\u{202E}LPAA", "U+202E"),
        ("A\u{00A0}B", "U+00A0"),
    ] {
        let line = format!(
            r#"{{"symbol":"{symbol}","timeframe":"1d","ts":"2024-01-02T00:00:00Z","open":1,"high":2,"low":0.5,"close":1.5,"volume":10}}"#
        );
        let m = expect_error(
            server.post("/v1/write", NDJSON, line.into_bytes()).await,
            StatusCode::BAD_REQUEST,
            "invalid_row",
        )
        .await;
        assert!(m.contains("line 1") && m.contains(code), "{m}");
        let csv = format!("symbol,ts,open,high,low,close,volume\n{symbol},2024-01-02,1,2,1,1,1\n");
        let m = expect_error(
            server.post("/v1/write", "text/csv", csv.into_bytes()).await,
            StatusCode::BAD_REQUEST,
            "invalid_row",
        )
        .await;
        assert!(m.contains(code), "{m}");
        let arrow = ipc(&[bars(&[row(symbol, "1d", T2021, 1.0)])]);
        let m = expect_error(
            server.post("/v1/write", ARROW, arrow).await,
            StatusCode::BAD_REQUEST,
            "invalid_row",
        )
        .await;
        assert!(m.contains("row 1") && m.contains(code), "{m}");
        let encoded: String = symbol.bytes().map(|b| format!("%{b:02X}")).collect();
        let m = expect_error(
            server.get(&format!("/v1/bars/{encoded}")).await,
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
        )
        .await;
        assert!(m.contains(code), "{m}");
    }
    assert_eq!(store.live().unwrap().read().rows(), 0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_show_no_absolute_paths() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let store = Arc::new(Store::open(root.to_str().unwrap()).await.unwrap());
    store
        .write(&bars(&[row("A", "1d", T2021, 1.0)]))
        .await
        .unwrap();
    // A data file that vanished underneath the store: reading it fails on the server's side.
    let file = store
        .catalog()
        .snapshot()
        .files()
        .next()
        .unwrap()
        .path
        .clone();
    std::fs::remove_file(root.join(&file)).unwrap();
    let server = TestServer::start(Config::default(), store).await;
    let r = server.post_sql("SELECT sum(close) FROM bars").await;
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert!(status.is_server_error(), "{status} {body}");
    let message = body["error"].as_str().unwrap();
    assert!(!message.contains(root.to_str().unwrap()), "{message}");
    assert!(
        message.contains(&file),
        "the file is named relative to the store: {message}"
    );
    server.stop().await;
}
