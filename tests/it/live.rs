//! The live tier: ingest visible at once and laid over Parquet by key, WAL replay, transfer into
//! Parquet, a model test with restarts, and `POST /v1/write` over HTTP.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::memory::InMemory;
use proptest::prelude::*;
use reqwest::StatusCode;
use serde_json::Value;
use tickvault::config::{ByteSize, Config, Token};
use tickvault::live::LiveOptions;
use tickvault::{Store, StoreOptions};

use crate::common::{
    DAY, MINUTE, Row, T2021, bars, check_loads, check_range_reads, contents, model_summary, row,
    series_summary,
};
use crate::server::{TestServer, expect_error};
use crate::store::arb_row;

fn live_options(wal: &Path) -> StoreOptions {
    StoreOptions {
        live: Some(LiveOptions::new(wal)),
        ..Default::default()
    }
}

async fn open(object_store: &Arc<dyn ObjectStore>, wal: &Path) -> Store {
    Store::open_with_store(Arc::clone(object_store), "mem", &live_options(wal))
        .await
        .unwrap()
}

fn model_of(rows: &[Row]) -> BTreeMap<(String, String, i64), f64> {
    rows.iter()
        .map(|r| ((r.0.clone(), r.1.clone(), r.2), r.3))
        .collect()
}

#[tokio::test]
async fn ingested_rows_are_visible_at_once_and_replace_stored_rows_by_key() {
    let wal = tempfile::tempdir().unwrap();
    let object_store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let store = open(&object_store, wal.path()).await;
    let stored = [
        row("A", "1d", T2021, 1.0),
        row("A", "1d", T2021 + DAY, 1.0),
        row("A", "1d", T2021 + 2 * DAY, 1.0),
        row("B", "1d", T2021, 1.0),
    ];
    store.write(&bars(&stored)).await.unwrap();
    let live = [
        row("A", "1d", T2021 + DAY, 9.0),     // replaces a stored row
        row("A", "1d", T2021 + 3 * DAY, 7.0), // new, after the stored ones
        row("A", "1d", T2021 - DAY, 5.0),     // new, before them
    ];
    store.ingest_batch(&bars(&live)).await.unwrap();
    let mut want = model_of(&stored);
    want.extend(model_of(&live));
    // `contents` reads in key order and fails on a duplicate or out-of-order row.
    assert_eq!(contents(&store).await, want);

    // Ordered by time without an explicit sort over the merged sources.
    let batches = store
        .query(
            "SELECT arrow_cast(ts, 'Int64') AS t, close FROM bars WHERE symbol = 'A' ORDER BY ts",
        )
        .await
        .unwrap();
    let closes = crate::common::f64_values(&batches, 1);
    assert_eq!(closes, vec![5.0, 1.0, 9.0, 1.0, 7.0]);
    let count = store.query("SELECT count(*) FROM bars").await.unwrap();
    let count = count[0]
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .unwrap()
        .value(0);
    assert_eq!(
        count, 6,
        "a count must not come from Parquet statistics alone"
    );

    // The latest price per symbol is the newest bar that reached the live tier.
    let latest = store
        .query("SELECT symbol, price FROM latest")
        .await
        .unwrap();
    assert_eq!(latest[0].num_rows(), 1);

    // Transfer: the rows move into Parquet, leave memory, and the WAL is truncated.
    let live_tier = store.live().unwrap();
    assert!(live_tier.wal_stats().bytes > 0);
    let summary = store.transfer().await.unwrap();
    assert_eq!(summary.rows, 3);
    assert_eq!(live_tier.read().rows(), 0);
    assert_eq!(contents(&store).await, want);
    let log = live_tier.wal_stats();
    assert_eq!(
        (log.segments, log.bytes),
        (1, 0),
        "only the new, empty segment is left"
    );

    // A restart has nothing to replay and sees the same rows.
    drop(store);
    let store = open(&object_store, wal.path()).await;
    assert_eq!(store.live().unwrap().recovery().records, 0);
    assert_eq!(contents(&store).await, want);
    assert!(store.check().await.unwrap().is_clean());
}

#[tokio::test]
async fn acknowledged_rows_survive_a_restart_through_the_wal() {
    let wal = tempfile::tempdir().unwrap();
    let object_store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let store = open(&object_store, wal.path()).await;
    let mut want = BTreeMap::new();
    for i in 0..50 {
        let rows = [
            row("BTC-USD", "1m", T2021 + i * MINUTE, i as f64 + 1.0),
            row("A/B", "1m", T2021 + (i % 7) * MINUTE, i as f64 + 1.0),
        ];
        store.ingest_batch(&bars(&rows)).await.unwrap();
        want.extend(model_of(&rows));
    }
    // Concurrent writers share group commits and every one is durable when answered.
    let store = Arc::new(store);
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for i in 0..20 {
                    let r = [row("ES=F", "1m", T2021 + (w * 100 + i) * MINUTE, 3.0)];
                    store.ingest_batch(&bars(&r)).await.unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    for w in 0..8 {
        for i in 0..20 {
            want.insert(
                ("ES=F".into(), "1m".into(), T2021 + (w * 100 + i) * MINUTE),
                3.0,
            );
        }
    }
    assert_eq!(contents(&store).await, want);
    drop(store);

    let store = open(&object_store, wal.path()).await;
    let recovery = store.live().unwrap().recovery().clone();
    assert_eq!(recovery.records, 50 + 160);
    assert_eq!(contents(&store).await, want);
    assert_eq!(
        store.catalog().snapshot().files().count(),
        0,
        "nothing was transferred"
    );
}

#[tokio::test]
async fn bad_rows_are_refused_whole_and_the_tier_is_capped() {
    let wal = tempfile::tempdir().unwrap();
    let object_store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let mut options = live_options(wal.path());
    options.live.as_mut().unwrap().max_bytes = 10 * tickvault::live::ROW_BYTES;
    let store = Store::open_with_store(Arc::clone(&object_store), "mem", &options)
        .await
        .unwrap();
    let good = row("A", "1d", T2021, 1.0);
    let mut bad = bars(&[good.clone(), row("A", "1d", T2021 + DAY + 1, 1.0)]);
    let e = store.ingest_batch(&bad).await.unwrap_err().to_string();
    assert!(e.contains("row 2") && e.contains("00:00 UTC"), "{e}");
    bad = bars(&[row("A", "1x", T2021, 1.0)]);
    let e = store.ingest_batch(&bad).await.unwrap_err().to_string();
    assert!(e.contains("row 1: unknown timeframe \"1x\""), "{e}");
    assert_eq!(store.live().unwrap().read().rows(), 0);

    // Past the cap, writes are refused as busy until a transfer frees the tier.
    let rows: Vec<Row> = (0..10)
        .map(|i| row("A", "1d", T2021 + i * DAY, 1.0))
        .collect();
    store.ingest_batch(&bars(&rows)).await.unwrap();
    let e = store
        .ingest_batch(&bars(&[row("A", "1d", T2021 + 20 * DAY, 1.0)]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            tickvault::Error::Live(tickvault::live::Error::Busy { .. })
        ),
        "{e}"
    );
    store.transfer().await.unwrap();
    store
        .ingest_batch(&bars(&[row("A", "1d", T2021 + 20 * DAY, 1.0)]))
        .await
        .unwrap();
    assert_eq!(contents(&store).await.len(), 11);
}

#[derive(Debug, Clone)]
enum Op {
    Ingest(Vec<Row>),
    Transfer,
    Compact,
    Restart,
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec(arb_row(), 1..8).prop_map(Op::Ingest),
        2 => Just(Op::Transfer),
        1 => Just(Op::Compact),
        2 => Just(Op::Restart),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random interleavings of writes, transfers, compactions and restarts: every query equals
    /// a BTreeMap model where the last write of a key wins.
    #[test]
    fn live_tier_matches_model(
        base in prop::collection::vec(arb_row(), 0..10),
        ops in prop::collection::vec(arb_op(), 1..14),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let wal = tempfile::tempdir().unwrap();
            let object_store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
            let mut store = open(&object_store, wal.path()).await;
            let mut model = BTreeMap::new();
            if !base.is_empty() {
                store.write(&bars(&base)).await.unwrap();
                model.extend(model_of(&base));
            }
            for op in ops {
                let transferred = matches!(op, Op::Transfer);
                match op {
                    Op::Ingest(rows) => {
                        store.ingest_batch(&bars(&rows)).await.unwrap();
                        for r in rows {
                            model.insert((r.0, r.1, r.2), r.3);
                        }
                    }
                    Op::Transfer => { store.transfer().await.unwrap(); }
                    Op::Compact => { store.compact().await.unwrap(); }
                    Op::Restart => {
                        drop(store);
                        store = open(&object_store, wal.path()).await;
                    }
                }
                prop_assert_eq!(&contents(&store).await, &model);
                prop_assert_eq!(series_summary(&store).await, model_summary(&model));
                // Range reads with live rows in range go to DataFusion; none are left after a
                // transfer, so then every one takes the short path.
                let (short, asked) = check_range_reads(&store, &model).await;
                let (merged, loads) = check_loads(&store, &model).await;
                if transferred {
                    prop_assert_eq!(short, asked);
                    prop_assert_eq!(merged, loads);
                }
            }
            prop_assert!(store.check().await.unwrap().is_clean());
            Ok(())
        })?;
    }
}

// ---- over HTTP ----

pub(crate) async fn live_server(config: Config, wal: &Path) -> (TestServer, Arc<Store>) {
    live_server_on(Arc::new(InMemory::new()), config, wal).await
}

async fn live_server_on(
    object_store: Arc<dyn ObjectStore>,
    config: Config,
    wal: &Path,
) -> (TestServer, Arc<Store>) {
    let mut options = live_options(wal);
    options.live.as_mut().unwrap().max_bytes = config.live_max_memory.0 as usize;
    let store = Arc::new(
        Store::open_with_store(object_store, "mem", &options)
            .await
            .unwrap(),
    );
    (TestServer::start(config, Arc::clone(&store)).await, store)
}

const NDJSON: &str = "application/x-ndjson";

fn ndjson_line(symbol: &str, ts: &str, high: f64, low: f64, volume: f64) -> String {
    format!(
        r#"{{"symbol":"{symbol}","timeframe":"1m","ts":"{ts}","open":{low},"high":{high},"low":{low},"close":{low},"volume":{volume}}}"#
    )
}

#[tokio::test]
async fn write_endpoint_takes_ndjson_csv_and_arrow() {
    let wal = tempfile::tempdir().unwrap();
    let (server, store) = live_server(Config::default(), wal.path()).await;
    let body = [
        ndjson_line("AAPL", "2024-01-02T14:30:00Z", 2.0, 1.0, 10.0),
        ndjson_line("AAPL", "2024-01-02T14:31:00Z", 2.0, 1.0, 10.0),
        // epoch nanoseconds; `interval`, the old name of `timeframe`, is still read
        r#"{"symbol":"MSFT","interval":"1m","ts":1704205800000000000,"open":1,"high":2,"low":1,"close":1.5,"volume":3,"vwap":1.4,"trades":7}"#.to_string(),
    ]
    .join("\n");
    let r = server.post("/v1/write", NDJSON, body.into_bytes()).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["rows"], 3);
    // Visible to the next query, without a transfer.
    let r = server
        .post_sql("SELECT count(*) AS n FROM bars WHERE symbol = 'AAPL'")
        .await;
    let v: Value = r.json().await.unwrap();
    assert_eq!(v[0]["n"], 2);

    let csv = "date,open,high,low,close,volume\n2024-01-02 14:32,1,2,1,1.5,10\n";
    // `interval`, the old name of `timeframe`, is still accepted.
    let r = server
        .post("/v1/write?interval=1m&symbol=AAPL", "text/csv", csv.into())
        .await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let csv = "ticker,ts,open,high,low,close,volume\nNVDA,2024-01-02,1,2,1,1.5,10\n";
    let r = server
        .post("/v1/write", "text/csv; charset=utf-8", csv.into())
        .await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());

    let batch = bars(&[
        row("SPY", "1d", T2021, 4.0),
        row("SPY", "1d", T2021 + DAY, 5.0),
    ]);
    let mut ipc = Vec::new();
    {
        let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut ipc, &batch.schema()).unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap();
    }
    let r = server
        .post("/v1/write", "application/vnd.apache.arrow.stream", ipc)
        .await;
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let got = contents(&store).await;
    assert_eq!(got.len(), 3 + 1 + 1 + 2);
    assert_eq!(
        got[&("SPY".to_string(), "1d".to_string(), T2021 + DAY)],
        5.0
    );

    // Transfer on demand, then status and metrics tell what happened.
    let r = server
        .client
        .post(server.url("/v1/sync/transfer"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["rows"], 7);
    let status = server.status().await;
    assert_eq!(status["live"]["rows"], 0);
    assert_eq!(status["live"]["ingest"]["rows"], 7);
    assert_eq!(status["jobs"]["transfer"]["runs"], 1);
    assert_eq!(status["jobs"]["transfer"]["last_rows"], 7);
    assert_eq!(status["rows"], 7);
    let metrics = server.get("/metrics").await.text().await.unwrap();
    for line in [
        "tickvault_live_rows 0",
        "tickvault_ingest_rows_total 7",
        "tickvault_transfer_runs_total 1",
        "tickvault_transfer_last_rows 7",
        "tickvault_wal_segments 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
    assert_eq!(contents(&store).await, got);
    server.stop().await;
}

#[tokio::test]
async fn write_endpoint_refuses_bad_input_whole() {
    let wal = tempfile::tempdir().unwrap();
    let config = Config {
        max_body: ByteSize(64 << 10),
        ..Config::default()
    };
    let (server, store) = live_server(config, wal.path()).await;
    let good = ndjson_line("AAPL", "2024-01-02T14:30:00Z", 2.0, 1.0, 10.0);
    let cases: Vec<(String, &str)> = vec![
        (
            ndjson_line("AAPL", "2024-01-02T14:31:00Z", 0.5, 1.0, 10.0),
            "high",
        ),
        (
            ndjson_line("AAPL", "2024-01-02T14:31:00Z", 2.0, 1.0, -1.0),
            "volume",
        ),
        (
            ndjson_line("AAPL", "2024-01-02T14:31:30Z", 2.0, 1.0, 1.0),
            "multiple",
        ),
        (ndjson_line("AAPL", "yesterday", 2.0, 1.0, 1.0), "ts"),
        (
            ndjson_line("", "2024-01-02T14:31:00Z", 2.0, 1.0, 1.0),
            "symbol",
        ),
        (good.replace("\"1m\"", "\"2m\""), "unknown timeframe \"2m\""),
        (good.replace(",\"volume\":10", ""), "volume"),
        (good.replace("\"open\":1", "\"open\":\"x\""), "expected f64"),
        ("not json".to_string(), "line 2"),
    ];
    for (bad_line, rule) in cases {
        // A good row, then the bad one: nothing of the request is applied.
        let body = format!("{good}\n{bad_line}\n");
        let m = expect_error(
            server.post("/v1/write", NDJSON, body.into_bytes()).await,
            StatusCode::BAD_REQUEST,
            "invalid_row",
        )
        .await;
        assert!(m.contains("line 2"), "{m}");
        assert!(m.contains(rule), "{rule}: {m}");
    }
    // CSV: NaN and a bad number, named by line.
    let csv =
        "symbol,ts,open,high,low,close,volume\nA,2024-01-02,1,2,1,1,1\nA,2024-01-03,NaN,2,1,1,1\n";
    let m = expect_error(
        server.post("/v1/write", "text/csv", csv.into()).await,
        StatusCode::BAD_REQUEST,
        "invalid_row",
    )
    .await;
    assert!(m.contains("line 3"), "{m}");
    let m = expect_error(
        server
            .post(
                "/v1/write",
                "text/csv",
                "ts,open,high,low,close,volume\n2024-01-02,1,2,1,1,1\n".into(),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_row",
    )
    .await;
    assert!(m.contains("symbol"), "{m}");
    expect_error(
        server
            .post(
                "/v1/write",
                "application/vnd.apache.arrow.stream",
                b"garbage".to_vec(),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_row",
    )
    .await;
    expect_error(
        server
            .post("/v1/write?timeframe=7m", "text/csv", "a\n".into())
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_parameter",
    )
    .await;
    expect_error(
        server
            .post("/v1/write", "application/json", good.clone().into_bytes())
            .await,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    let huge = format!("{good}\n").repeat(2000);
    expect_error(
        server.post("/v1/write", NDJSON, huge.into_bytes()).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
    )
    .await;
    assert_eq!(
        store.live().unwrap().read().rows(),
        0,
        "nothing was applied"
    );
    let status = server.status().await;
    assert_eq!(status["live"]["ingest"]["rejected_requests"], 15);
    server.stop().await;
}

#[tokio::test]
async fn write_needs_a_write_token_and_a_full_tier_answers_429() {
    let wal = tempfile::tempdir().unwrap();
    let config = Config {
        tokens: vec![
            "read:r3ad".parse::<Token>().unwrap(),
            "write:wr1te".parse::<Token>().unwrap(),
        ],
        live_max_memory: ByteSize(3 * tickvault::live::ROW_BYTES as u64),
        transfer_threshold: ByteSize(tickvault::live::ROW_BYTES as u64),
        ..Config::default()
    };
    // A store that cannot take files: transfers fail, so the tier stays full.
    let failing = crate::common::TestStore::new(Arc::new(InMemory::new()));
    failing
        .fail_data_puts
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let (server, _store) = live_server_on(failing, config, wal.path()).await;
    let line = |m: u32| ndjson_line("AAPL", &format!("2024-01-02T14:{m:02}:00Z"), 2.0, 1.0, 1.0);
    let send = |token: Option<&'static str>, body: String| {
        let mut request = server
            .client
            .post(server.url("/v1/write"))
            .header("content-type", NDJSON)
            .body(body);
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        async move { request.send().await.unwrap() }
    };
    expect_error(
        send(None, line(0)).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    )
    .await;
    expect_error(
        send(Some("r3ad"), line(0)).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    )
    .await;
    let body = [line(0), line(1), line(2)].join("\n");
    assert_eq!(send(Some("wr1te"), body).await.status(), StatusCode::OK);
    let r = send(Some("wr1te"), line(3)).await;
    assert_eq!(r.headers()["retry-after"], "1");
    expect_error(r, StatusCode::TOO_MANY_REQUESTS, "busy").await;
    server.stop().await;
}

#[tokio::test]
async fn ingest_command_sends_files_in_chunks() {
    use std::process::Command;
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base) = crate::server::spawn_server(&dir.path().join("data"), "serve", &[]);
    let ndjson: String = (0..50)
        .map(|m| {
            format!(
                "{}\n",
                ndjson_line("QQQ", &format!("2024-01-02T14:{m:02}:00Z"), 2.0, 1.0, 1.0)
            )
        })
        .collect();
    let file = dir.path().join("bars.ndjson");
    std::fs::write(&file, ndjson).unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tickvault"))
            .arg("ingest")
            .args(["--server", &base])
            .args(args)
            .env_remove("TICKVAULT_TOKEN")
            .output()
            .unwrap()
    };
    let out = run(&["--chunk", "1KiB", file.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("ingested 50 rows in"), "{stderr}");
    assert!(!stderr.contains("in 1 request"), "1 KiB chunks: {stderr}");

    let csv = dir.path().join("iwm.csv");
    std::fs::write(
        &csv,
        "date,open,high,low,close,volume\n2024-01-02,1,2,1,1.5,10\n2024-01-03,1,2,1,1.5,10\n",
    )
    .unwrap();
    let out = run(&["--symbol", "IWM", "--interval", "1d", csv.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    std::fs::write(
        &csv,
        "date,open,high,low,close,volume\n2024-01-02,1,0.5,1,1.5,10\n",
    )
    .unwrap();
    let out = run(&["--symbol", "IWM", csv.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("line 2") && stderr.contains("high"),
        "{stderr}"
    );

    let r = reqwest::Client::new()
        .post(format!("{base}/v1/sql"))
        .body("SELECT symbol, count(*) AS n FROM bars GROUP BY symbol ORDER BY symbol")
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v,
        serde_json::json!([{"symbol": "IWM", "n": 2}, {"symbol": "QQQ", "n": 50}])
    );
    child.kill().unwrap();
    child.wait().unwrap();
}

/// Sends SQL; returns whether the result cache answered, and the body.
async fn ask(server: &TestServer, sql: &str, format: &str) -> (bool, String) {
    let r = server
        .client
        .post(server.url(&format!("/v1/sql?format={format}")))
        .body(sql.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let hit = r
        .headers()
        .get("x-tickvault-cache")
        .is_some_and(|v| v == "hit");
    (hit, r.text().await.unwrap())
}

#[tokio::test]
async fn repeated_sql_comes_from_the_cache_until_the_store_changes() {
    let wal = tempfile::tempdir().unwrap();
    let (server, store) = live_server(Config::default(), wal.path()).await;
    let sql = "SELECT symbol, close FROM bars ORDER BY ts, symbol";
    store
        .write(&bars(&[row("AAA", "1m", T2021, 10.0)]))
        .await
        .unwrap();
    let (hit, first) = ask(&server, sql, "csv").await;
    assert!(!hit);
    assert_eq!(first, "symbol,close\nAAA,10.0\n");
    assert_eq!(ask(&server, sql, "csv").await, (true, first.clone()));
    // Another format is another answer.
    assert!(!ask(&server, sql, "json").await.0);

    // A live write changes the answer: the next request computes it again.
    let line = ndjson_line("BBB", "2021-01-04T00:01:00Z", 21.0, 20.0, 5.0);
    let r = server.post("/v1/write", NDJSON, line.into_bytes()).await;
    assert_eq!(r.status(), StatusCode::OK);
    let (hit, after_ingest) = ask(&server, sql, "csv").await;
    assert!(!hit);
    assert_eq!(after_ingest, "symbol,close\nAAA,10.0\nBBB,20.0\n");
    assert_eq!(ask(&server, sql, "csv").await, (true, after_ingest));

    // So does a commit: a library write, and a transfer of the live rows.
    store
        .write(&bars(&[row("AAA", "1m", T2021, 11.0)]))
        .await
        .unwrap();
    let (hit, after_write) = ask(&server, sql, "csv").await;
    assert!(!hit);
    assert_eq!(after_write, "symbol,close\nAAA,11.0\nBBB,20.0\n");
    store.transfer().await.unwrap();
    assert_eq!(ask(&server, sql, "csv").await, (false, after_write));

    // Answers that change by themselves are never kept.
    let clock = "SELECT now() AS t, count(*) AS n FROM bars";
    assert!(!ask(&server, clock, "csv").await.0);
    assert!(!ask(&server, clock, "csv").await.0);

    let r = server.get("/metrics").await;
    let metrics = r.text().await.unwrap();
    assert!(
        metrics.contains("tickvault_query_cache_hits_total 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_zero_query_cache_turns_the_cache_off() {
    let wal = tempfile::tempdir().unwrap();
    let config = Config {
        query_cache: ByteSize(0),
        ..Config::default()
    };
    let (server, store) = live_server(config, wal.path()).await;
    store
        .write(&bars(&[row("AAA", "1m", T2021, 10.0)]))
        .await
        .unwrap();
    for _ in 0..3 {
        assert!(!ask(&server, "SELECT count(*) FROM bars", "csv").await.0);
    }
}

// ---- a damaged WAL ----

/// The WAL segments (`wal-*.log`) in `dir`, by name.
fn wal_segments(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with("wal-") && n.ends_with(".log")
        })
        .collect();
    v.sort();
    v
}

/// Byte offsets of the records in a segment (header: magic, length u32 LE, CRC, LSN).
fn record_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut at = 0;
    while at + 20 <= bytes.len() {
        out.push(at);
        at += 20 + u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
    }
    out
}

fn wal_cli(wal: &Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tickvault"))
        .arg("wal")
        .args(["--wal-dir", wal.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap()
}

/// Issue 16, case 2: five one-row writes, a byte flipped inside the third record, a restart.
/// The restart used to report the damage but start again at LSN 1, so the next acknowledged
/// writes reused LSNs 1-3 and the restart after that dropped them as duplicates (and forgot the
/// damage). Now they get LSNs 6-8 and survive; the report lasts until an operator clears it.
#[tokio::test]
async fn writes_acknowledged_after_a_damaged_wal_restart_survive_the_next_restart() {
    let wal = tempfile::tempdir().unwrap();
    let object_store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let rows: Vec<Row> = (0..8)
        .map(|i| row("SPY", "1m", T2021 + i * MINUTE, i as f64 + 1.0))
        .collect();
    let store = open(&object_store, wal.path()).await;
    for (i, r) in rows[..5].iter().enumerate() {
        let lsn = store
            .ingest_batch(&bars(std::slice::from_ref(r)))
            .await
            .unwrap();
        assert_eq!(lsn, i as u64 + 1);
    }
    drop(store);
    let [segment] = wal_segments(wal.path()).try_into().unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    let third = record_offsets(&bytes)[2];
    bytes[third + 21] ^= 0x20; // inside its payload
    std::fs::write(&segment, &bytes).unwrap();

    let store = open(&object_store, wal.path()).await;
    let live = store.live().unwrap();
    let damaged = &live.recovery().damaged;
    assert_eq!(damaged.len(), 1);
    assert_eq!(damaged[0].records_kept, 4);
    assert_eq!(damaged[0].offsets, vec![third as u64]);
    assert!(damaged[0].new);
    assert_eq!(live.wal_stats().next_lsn, 6, "no LSN is handed out twice");
    let survivors: Vec<Row> = [0, 1, 3, 4].iter().map(|&i| rows[i].clone()).collect();
    assert_eq!(contents(&store).await, model_of(&survivors));
    for (i, r) in rows[5..].iter().enumerate() {
        let lsn = store
            .ingest_batch(&bars(std::slice::from_ref(r)))
            .await
            .unwrap();
        assert_eq!(lsn, 6 + i as u64);
    }
    drop(store);

    let mut want: Vec<Row> = survivors.clone();
    want.extend_from_slice(&rows[5..]);
    let store = open(&object_store, wal.path()).await;
    assert_eq!(
        contents(&store).await,
        model_of(&want),
        "acknowledged writes survive"
    );
    let damaged = &store.live().unwrap().recovery().damaged;
    assert_eq!(damaged.len(), 1, "the damage is still reported");
    assert!(!damaged[0].new);
    assert_eq!(damaged[0].records_kept, 4);
    // What the status shows.
    let store = Arc::new(store);
    let server = TestServer::start(Config::default(), Arc::clone(&store)).await;
    let status = server.status().await;
    let reported = &status["live"]["recovery"]["damaged_segments"];
    assert_eq!(reported.as_array().unwrap().len(), 1, "{status}");
    assert_eq!(reported[0]["records_kept"], 4);
    assert_eq!(reported[0]["new"], false);
    let metrics = server.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("tickvault_wal_damaged_segments 1"),
        "{metrics}"
    );
    server.stop().await;
    drop(store);

    // The operator looks, then clears the report; the damaged bytes move to the archive.
    let out = wal_cli(wal.path(), &["damage"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("1 damaged WAL segment(s)"), "{stdout}");
    let archive = tempfile::tempdir().unwrap();
    let out = wal_cli(
        wal.path(),
        &[
            "clear-damage",
            "--move-to",
            archive.path().to_str().unwrap(),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("cleared 1 damaged WAL segment(s)"),
        "{stdout}"
    );
    let archived: Vec<_> = std::fs::read_dir(archive.path()).unwrap().collect();
    assert_eq!(archived.len(), 1);
    assert_eq!(
        std::fs::read(archived[0].as_ref().unwrap().path()).unwrap(),
        bytes
    );
    assert_eq!(wal_cli(wal.path(), &["damage"]).status.code(), Some(0));

    let store = open(&object_store, wal.path()).await;
    assert!(store.live().unwrap().recovery().damaged.is_empty());
    assert_eq!(contents(&store).await, model_of(&want));
}

/// `tickvault ingest` sends a file in chunks; a refused row is named by its line in the file,
/// not in the chunk the server saw.
#[tokio::test]
async fn ingest_errors_name_the_line_in_the_whole_file() {
    use std::process::Command;
    let dir = tempfile::tempdir().unwrap();
    let (mut child, base) = crate::server::spawn_server(&dir.path().join("data"), "serve", &[]);
    let run = |file: &Path, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tickvault"))
            .arg("ingest")
            .args(["--server", &base, "--chunk", "1KiB"])
            .args(args)
            .arg(file)
            .env_remove("TICKVAULT_TOKEN")
            .output()
            .unwrap()
    };
    // NDJSON: line 37 of 50 has high below low.
    let ndjson: String = (0..50)
        .map(|m| {
            let (high, low) = if m == 36 { (0.5, 1.0) } else { (2.0, 1.0) };
            format!(
                "{}\n",
                ndjson_line("QQQ", &format!("2024-01-02T14:{m:02}:00Z"), high, low, 1.0)
            )
        })
        .collect();
    let file = dir.path().join("bars.ndjson");
    std::fs::write(&file, ndjson).unwrap();
    let out = run(&file, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("line 37:"), "{stderr}");
    assert!(
        !stderr.contains("chunk 1 of"),
        "the bad line is past the first chunk: {stderr}"
    );

    // CSV: each chunk repeats the header; line 61 of the file (the 60th row) is bad.
    let mut csv = String::from("date,open,high,low,close,volume\n");
    for d in 0..100 {
        let high = if d == 59 { "0.5" } else { "2" };
        csv.push_str(&format!(
            "{},1,{high},1,1.5,10\n",
            chrono::NaiveDate::from_ymd_opt(2000, 1, 1).unwrap() + chrono::Days::new(d)
        ));
    }
    let file = dir.path().join("iwm.csv");
    std::fs::write(&file, csv).unwrap();
    let out = run(&file, &["--symbol", "IWM", "--interval", "1d"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("line 61:"), "{stderr}");
    assert!(!stderr.contains("chunk 1 of"), "{stderr}");
    child.kill().unwrap();
    child.wait().unwrap();
}
