//! Adjusted and point-in-time reads: against vendors' own adjusted prices (Alpha Vantage's
//! `adjusted_close`, Yahoo's `adjclose`), through the loader, HTTP, the CLI and the SQL views.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, TimestampMicrosecondType};
use chrono::NaiveDate;
use reqwest::StatusCode;
use tickvault::actions::CorporateAction;
use tickvault::adjust::{Adjust, Adjustment};
use tickvault::config::Config;
use tickvault::import::ImportOptions;
use tickvault::model::{Interval, Symbol};
use tickvault::{LoadRequest, Store};

use crate::cli::fixtures;
use crate::common::{DAY, MINUTE, bars, row};
use crate::server::TestServer;

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn midnight(s: &str) -> i64 {
    day(s)
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
        .timestamp_micros()
}

fn sym(s: &str) -> Symbol {
    Symbol::new(s).unwrap()
}

fn split(s: &str, date: &str, ratio: f64) -> CorporateAction {
    CorporateAction::split(sym(s), day(date), ratio, "import", 0).unwrap()
}

fn dividend(s: &str, date: &str, amount: f64) -> CorporateAction {
    CorporateAction::dividend(sym(s), day(date), amount, "import", 0).unwrap()
}

fn load(
    symbols: &[&str],
    interval: &str,
    start: Option<i64>,
    end: Option<i64>,
    adjustment: Adjustment,
) -> LoadRequest {
    LoadRequest {
        symbols: symbols.iter().map(|s| s.to_string()).collect(),
        interval: interval.parse().unwrap(),
        start,
        end,
        columns: None,
        adjustment,
    }
}

fn all() -> Adjustment {
    Adjustment::new(Adjust::All, None)
}

/// ts -> (close, volume) of a loader answer.
fn closes(batches: &[RecordBatch]) -> BTreeMap<i64, (f64, f64)> {
    let mut out = BTreeMap::new();
    for b in batches {
        let s = b.schema();
        let ts = b
            .column(s.index_of("ts").unwrap())
            .as_primitive::<TimestampMicrosecondType>();
        let close = b
            .column(s.index_of("close").unwrap())
            .as_primitive::<Float64Type>();
        let volume = b
            .column(s.index_of("volume").unwrap())
            .as_primitive::<Float64Type>();
        for i in 0..b.num_rows() {
            out.insert(ts.value(i), (close.value(i), volume.value(i)));
        }
    }
    out
}

/// The Alpha Vantage AAPL daily adjusted file: raw bars imported, its split and dividend
/// columns upserted as events; returns (date -> adjusted_close) from the file.
async fn aapl_alpha_vantage(store: &Store) -> BTreeMap<i64, f64> {
    let path = fixtures().join("DA-AAPL-T-2021-04-21.csv");
    let options = ImportOptions {
        symbol: Some(sym("AAPL")),
        ..ImportOptions::default()
    };
    store
        .import_files(std::slice::from_ref(&path), Arc::new(options), || {})
        .await
        .unwrap();
    let mut reader = csv::Reader::from_path(&path).unwrap();
    let headers = reader.headers().unwrap().clone();
    let at = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (t, adj, div, split_c) = (
        at("timestamp"),
        at("adjusted_close"),
        at("dividend_amount"),
        at("split_coefficient"),
    );
    let mut events = Vec::new();
    let mut adjusted = BTreeMap::new();
    for record in reader.records() {
        let r = record.unwrap();
        let date = &r[t];
        let ratio: f64 = r[split_c].parse().unwrap();
        if ratio != 1.0 {
            events.push(split("AAPL", date, ratio));
        }
        let amount: f64 = r[div].parse().unwrap();
        if amount != 0.0 {
            events.push(dividend("AAPL", date, amount));
        }
        adjusted.insert(midnight(date), r[adj].parse::<f64>().unwrap());
    }
    assert!(events.len() > 30, "the file's 4 splits and its dividends");
    store.actions().upsert(events).await.unwrap();
    adjusted
}

#[tokio::test]
async fn all_adjusted_closes_equal_alpha_vantage_adjusted_close() {
    let store = Store::open("memory://").await.unwrap();
    let vendor = aapl_alpha_vantage(&store).await;
    let req = load(
        &["AAPL"],
        "1d",
        Some(midnight("2019-01-01")),
        Some(midnight("2022-01-01")),
        all(),
    );
    let loaded = store.load_bars_adjusted(&req).await.unwrap();
    // The header of an HTTP answer and the CLI list these: the events after the range start.
    let listed: Vec<String> = loaded.applied.iter().map(|a| a.to_string()).collect();
    assert!(
        listed
            .iter()
            .any(|a| a.starts_with("AAPL 2020-08-31 split ratio=4")),
        "{listed:?}"
    );
    assert!(
        listed.iter().all(|a| a.as_str() >= "AAPL 2019"),
        "{listed:?}"
    );
    let batches: Vec<RecordBatch> = futures::TryStreamExt::try_collect(loaded.stream)
        .await
        .unwrap();
    let ours = closes(&batches);
    assert_eq!(ours.len(), 580, "2019-01-02 .. 2021-04-21");
    for (ts, (close, _)) in &ours {
        let want = vendor[ts];
        assert!(
            (close / want - 1.0).abs() < 1e-3,
            "{ts}: ours {close}, Alpha Vantage {want}"
        );
    }
    for (date, want) in [
        ("2020-08-28", 124.405824223),
        ("2020-11-05", 118.646918312),
        ("2020-11-06", 118.512352791),
    ] {
        let got = ours[&midnight(date)].0;
        assert!((got / want - 1.0).abs() < 1e-4, "{date}: {got} vs {want}");
    }
    // Raw reads are untouched: 2020-08-28 closed at 499.23 before the 4:1 split.
    let raw = store
        .load_bars_collect(&load(
            &["AAPL"],
            "1d",
            Some(midnight("2020-08-28")),
            Some(midnight("2020-08-29")),
            Adjustment::NONE,
        ))
        .await
        .unwrap();
    assert_eq!(closes(&raw)[&midnight("2020-08-28")].0, 499.23);
}

#[tokio::test]
async fn consecutive_adjusted_closes_move_as_yahoo_adjclose() {
    let text = std::fs::read_to_string(
        fixtures().join("providers/yahoo/chart-AAPL-2020-08-31-to-2020-11-07.json"),
    )
    .unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let result = &json["response"]["bodyJson"]["chart"]["result"][0];
    let ny = chrono_tz::America::New_York;
    let date_of = |secs: i64| {
        chrono::DateTime::from_timestamp(secs, 0)
            .unwrap()
            .with_timezone(&ny)
            .date_naive()
    };
    let times: Vec<i64> = result["timestamp"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_i64().unwrap())
        .collect();
    let quote = &result["indicators"]["quote"][0];
    let value = |v: &serde_json::Value, i: usize| v.as_array().unwrap()[i].as_f64().unwrap();
    let store = Store::open("memory://").await.unwrap();
    let mut rows = Vec::new();
    for (i, &t) in times.iter().enumerate() {
        let ts = date_of(t)
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_micros();
        rows.push(row("AAPL", "1d", ts, value(&quote["close"], i)));
    }
    store.write(&bars(&rows)).await.unwrap();
    let mut events = Vec::new();
    for (_, s) in result["events"]["splits"].as_object().unwrap() {
        let ratio = s["numerator"].as_f64().unwrap() / s["denominator"].as_f64().unwrap();
        let d = date_of(s["date"].as_i64().unwrap());
        events.push(CorporateAction::split(sym("AAPL"), d, ratio, "yahoo", 0).unwrap());
    }
    for (_, v) in result["events"]["dividends"].as_object().unwrap() {
        let d = date_of(v["date"].as_i64().unwrap());
        events.push(
            CorporateAction::dividend(sym("AAPL"), d, v["amount"].as_f64().unwrap(), "yahoo", 0)
                .unwrap(),
        );
    }
    assert_eq!(events.len(), 2);
    store.actions().upsert(events).await.unwrap();
    let batches = store
        .load_bars_collect(&load(&["AAPL"], "1d", None, None, all()))
        .await
        .unwrap();
    let ours: Vec<f64> = closes(&batches).values().map(|c| c.0).collect();
    let adjclose = &result["indicators"]["adjclose"][0]["adjclose"];
    assert_eq!(ours.len(), times.len());
    for i in 1..ours.len() {
        let (theirs, mine) = (
            value(adjclose, i) / value(adjclose, i - 1),
            ours[i] / ours[i - 1],
        );
        assert!(
            (theirs - mine).abs() < 1e-6,
            "bar {i}: Yahoo {theirs}, ours {mine}"
        );
    }
    // Without the dividend the ratio across its ex-date is off: the test can fail.
    let split_only = store
        .load_bars_collect(&load(
            &["AAPL"],
            "1d",
            None,
            None,
            Adjustment::new(Adjust::Splits, None),
        ))
        .await
        .unwrap();
    let raw: Vec<f64> = closes(&split_only).values().map(|c| c.0).collect();
    let worst = (1..raw.len())
        .map(|i| ((value(adjclose, i) / value(adjclose, i - 1)) - raw[i] / raw[i - 1]).abs())
        .fold(0.0, f64::max);
    assert!(worst > 1e-4, "{worst}");
}

/// One minute bar: close, volume 10.
fn minute(symbol: &str, ts: i64, close: f64) -> crate::common::Row {
    row(symbol, "1m", ts, close)
}

#[tokio::test]
async fn an_intraday_split_applies_from_the_new_york_day_not_utc_midnight() {
    let store = Store::open("memory://").await.unwrap();
    // 2020-08-31 (summer): 00:00 New York is 04:00 UTC; the session opens at 13:30 UTC.
    let ex = midnight("2020-08-31");
    let hour = 60 * MINUTE;
    let rows = vec![
        // Friday 15:59 New York, the last regular bar before the split.
        minute(
            "AAPL",
            midnight("2020-08-28") + 19 * hour + 59 * MINUTE,
            499.0,
        ),
        // Sunday 20:15 New York = Monday 00:15 UTC: after 00:00 UTC, still the day before.
        minute("AAPL", ex + 15 * MINUTE, 499.0),
        // Monday 08:00 New York: pre-market trades on the new basis already.
        minute("AAPL", ex + 12 * hour, 126.0),
        // Monday 09:30 New York: the first regular bar after the split.
        minute("AAPL", ex + 13 * hour + 30 * MINUTE, 127.0),
    ];
    store.write(&bars(&rows)).await.unwrap();
    store
        .actions()
        .upsert(vec![split("AAPL", "2020-08-31", 4.0)])
        .await
        .unwrap();
    let got = closes(
        &store
            .load_bars_collect(&load(
                &["AAPL"],
                "1m",
                None,
                None,
                Adjustment::new(Adjust::Splits, None),
            ))
            .await
            .unwrap(),
    );
    let values: Vec<(f64, f64)> = got.values().copied().collect();
    assert_eq!(
        values,
        vec![(124.75, 40.0), (124.75, 40.0), (126.0, 10.0), (127.0, 10.0)]
    );
}

#[tokio::test]
async fn point_in_time_reads_apply_only_events_known_that_day() {
    let store = Store::open("memory://").await.unwrap();
    let days = [
        "2020-08-27",
        "2020-08-28",
        "2020-08-31",
        "2020-09-01",
        "2020-11-05",
        "2020-11-06",
    ];
    let closes_raw = [500.04, 499.23, 129.04, 134.18, 119.03, 118.69];
    let rows: Vec<_> = days
        .iter()
        .zip(closes_raw)
        .map(|(d, c)| row("AAPL", "1d", midnight(d), c))
        .collect();
    store.write(&bars(&rows)).await.unwrap();
    store
        .actions()
        .upsert(vec![
            split("AAPL", "2020-08-31", 4.0),
            dividend("AAPL", "2020-11-06", 0.205),
        ])
        .await
        .unwrap();
    let read = |as_of: Option<&str>| {
        let store = &store;
        let req = load(
            &["AAPL"],
            "1d",
            None,
            None,
            Adjustment::new(Adjust::All, as_of.map(day)),
        );
        async move {
            let loaded = store.load_bars_adjusted(&req).await.unwrap();
            let applied: Vec<NaiveDate> = loaded.applied.iter().map(|a| a.event.ex_date).collect();
            let batches: Vec<RecordBatch> = futures::TryStreamExt::try_collect(loaded.stream)
                .await
                .unwrap();
            (
                closes(&batches).values().map(|c| c.0).collect::<Vec<_>>(),
                applied,
            )
        }
    };
    // Before the split was known: raw prices.
    let (v, applied) = read(Some("2020-08-30")).await;
    assert_eq!(v, closes_raw);
    assert!(applied.is_empty());
    // Between the split and the dividend: split-adjusted only.
    let (v, applied) = read(Some("2020-11-05")).await;
    assert_eq!(v[..2], [125.01, 124.8075]);
    assert_eq!(v[2..], closes_raw[2..]);
    assert_eq!(applied, vec![day("2020-08-31")]);
    // Now: both; the dividend factor uses the close before its ex-date.
    let (v, applied) = read(None).await;
    let f = 1.0 - 0.205 / 119.03;
    assert!((v[0] - 500.04 / 4.0 * f).abs() < 1e-9);
    assert!((v[4] - 119.03 * f).abs() < 1e-9);
    assert_eq!(v[5], 118.69);
    assert_eq!(applied.len(), 2);
}

#[tokio::test]
async fn a_dividend_after_the_range_uses_the_close_before_its_ex_date() {
    let store = Store::open("memory://").await.unwrap();
    let rows = vec![
        row("KO", "1d", midnight("2021-01-04"), 50.0),
        row("KO", "1d", midnight("2021-03-12"), 40.0),
        row("KO", "1d", midnight("2021-03-15"), 41.0),
    ];
    store.write(&bars(&rows)).await.unwrap();
    store
        .actions()
        .upsert(vec![dividend("KO", "2021-03-15", 0.42)])
        .await
        .unwrap();
    // The read ends in January; the factor needs the March 12 close all the same.
    let req = load(&["KO"], "1d", None, Some(midnight("2021-02-01")), all());
    let got = closes(&store.load_bars_collect(&req).await.unwrap());
    assert!((got[&midnight("2021-01-04")].0 - 50.0 * (1.0 - 0.42 / 40.0)).abs() < 1e-12);
    // Repeated loads reuse the close read once: the only reads are of the range's own bars.
    assert_eq!(store.adjuster().cached_series(), 1);
    let before = store.requests();
    store
        .load_bars_collect(&load(
            &["KO"],
            "1d",
            None,
            Some(midnight("2021-02-01")),
            Adjustment::NONE,
        ))
        .await
        .unwrap();
    let raw_reads = store.requests().since(&before);
    let before = store.requests();
    for _ in 0..3 {
        store.load_bars_collect(&req).await.unwrap();
    }
    let adjusted_reads = store.requests().since(&before);
    assert!(raw_reads.total() > 0);
    assert_eq!(
        adjusted_reads.total(),
        3 * raw_reads.total(),
        "{adjusted_reads} vs 3 x {raw_reads}"
    );
}

#[tokio::test]
async fn daily_closes_are_preferred_for_intraday_dividends() {
    let store = Store::open("memory://").await.unwrap();
    let ex = midnight("2021-03-15");
    store
        .write(&bars(&[
            row("KO", "1d", midnight("2021-03-12"), 40.0),
            row("KO", "1d", ex, 41.0),
        ]))
        .await
        .unwrap();
    // The last minute bar before the ex-date closes at 39.5 (post-market); the daily 40.
    store
        .write(&bars(&[
            minute("KO", midnight("2021-03-12") + 21 * 60 * MINUTE, 39.5),
            minute("KO", ex + 14 * 60 * MINUTE, 41.0),
        ]))
        .await
        .unwrap();
    store
        .actions()
        .upsert(vec![dividend("KO", "2021-03-15", 0.4)])
        .await
        .unwrap();
    let got = closes(
        &store
            .load_bars_collect(&load(&["KO"], "1m", None, None, all()))
            .await
            .unwrap(),
    );
    let first = got.values().next().unwrap().0;
    assert!((first - 39.5 * (1.0 - 0.4 / 40.0)).abs() < 1e-12, "{first}");
}

#[tokio::test]
async fn live_rows_are_adjusted_like_stored_ones() {
    let dir = tempfile::tempdir().unwrap();
    let options = tickvault::StoreOptions {
        live: Some(tickvault::live::LiveOptions::new(dir.path().join("wal"))),
        ..Default::default()
    };
    let store = Store::open_with_options(dir.path().join("store").to_str().unwrap(), &options)
        .await
        .unwrap();
    let t = midnight("2021-03-10");
    store
        .write(&bars(&[row("A", "1d", t, 100.0), row("B", "1d", t, 10.0)]))
        .await
        .unwrap();
    store
        .ingest_batch(&bars(&[
            row("A", "1d", t + DAY, 102.0),
            row("B", "1d", t + DAY, 11.0),
        ]))
        .await
        .unwrap();
    store
        .actions()
        .upsert(vec![
            split("A", "2021-03-12", 2.0),
            dividend("B", "2021-03-12", 1.1),
        ])
        .await
        .unwrap();
    let got = store
        .load_bars_collect(&load(&["A", "B"], "1d", None, None, all()))
        .await
        .unwrap();
    let mut by_key = BTreeMap::new();
    for b in &got {
        let s = b.column(0).as_string::<i32>();
        let ts = b.column(2).as_primitive::<TimestampMicrosecondType>();
        let c = b.column(6).as_primitive::<Float64Type>();
        for i in 0..b.num_rows() {
            by_key.insert((s.value(i).to_string(), ts.value(i)), c.value(i));
        }
    }
    let f = 1.0 - 1.1 / 11.0;
    assert_eq!(by_key[&("A".to_string(), t)], 50.0);
    assert_eq!(by_key[&("A".to_string(), t + DAY)], 51.0);
    assert!((by_key[&("B".to_string(), t)] - 10.0 * f).abs() < 1e-12);
    assert!((by_key[&("B".to_string(), t + DAY)] - 11.0 * f).abs() < 1e-12);
}

/// A store with AAPL's 2020 daily bars around its split and dividend, and both events.
async fn aapl_2020() -> Arc<Store> {
    let store = Store::open("memory://").await.unwrap();
    let days = [
        "2020-08-27",
        "2020-08-28",
        "2020-08-31",
        "2020-11-05",
        "2020-11-06",
    ];
    let raw = [500.04, 499.23, 129.04, 119.03, 118.69];
    let rows: Vec<_> = days
        .iter()
        .zip(raw)
        .map(|(d, c)| row("AAPL", "1d", midnight(d), c))
        .collect();
    store.write(&bars(&rows)).await.unwrap();
    store
        .write(&bars(&[row("MSFT", "1d", midnight("2020-08-28"), 228.91)]))
        .await
        .unwrap();
    store
        .actions()
        .upsert(vec![
            split("AAPL", "2020-08-31", 4.0),
            dividend("AAPL", "2020-11-06", 0.205),
        ])
        .await
        .unwrap();
    Arc::new(store)
}

/// close per row of a JSON answer.
async fn json_closes(r: reqwest::Response) -> Vec<f64> {
    let rows: Vec<serde_json::Value> = r.json().await.unwrap();
    rows.iter().map(|r| r["close"].as_f64().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_reads_take_adjust_and_as_of_and_say_what_they_applied() {
    let store = aapl_2020().await;
    let server = TestServer::start(Config::default(), Arc::clone(&store)).await;
    let r = server
        .get("/v1/bars/AAPL?interval=1d&adjust=splits&format=json")
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    let header = r.headers()["x-tickvault-adjustments"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(header, "AAPL 2020-08-31 split ratio=4 factor=0.25");
    assert_eq!(
        json_closes(r).await,
        vec![125.01, 124.8075, 129.04, 119.03, 118.69]
    );

    let r = server
        .get("/v1/bars?symbols=AAPL,MSFT&interval=1d&adjust=all&as_of=2020-09-01&end=2020-09-01")
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.headers()["x-tickvault-adjustments"],
        "AAPL 2020-08-31 split ratio=4 factor=0.25"
    );
    // (ts, symbol) order: AAPL 08-27, AAPL 08-28, MSFT 08-28, AAPL 08-31.
    assert_eq!(json_closes(r).await, vec![125.01, 124.8075, 228.91, 129.04]);

    let r = server
        .get("/v1/bars/AAPL?adjust=all&start=2020-11-01")
        .await;
    let header = r.headers()["x-tickvault-adjustments"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        header, "AAPL 2020-11-06 dividend amount=0.205 close=119.03 factor=0.998277745",
        "the split is before the range"
    );

    // SQL over an adjusted view is answered again after the events change (a cached answer
    // would be keyed by the bars' version only).
    let sql = "/v1/sql?q=SELECT%20close%20FROM%20bars_adjusted%20WHERE%20symbol%3D%27MSFT%27";
    assert_eq!(json_closes(server.get(sql).await).await, vec![228.91]);
    assert_eq!(json_closes(server.get(sql).await).await, vec![228.91]);
    store
        .actions()
        .upsert(vec![split("MSFT", "2020-09-01", 2.0)])
        .await
        .unwrap();
    assert_eq!(json_closes(server.get(sql).await).await, vec![114.455]);

    // No adjustment: no header.
    let r = server.get("/v1/bars/AAPL").await;
    assert!(r.headers().get("x-tickvault-adjustments").is_none());
    assert_eq!(json_closes(r).await[0], 500.04);
    // Adjusted, nothing applies: the header says so.
    let r = server
        .get("/v1/bars/MSFT?adjust=all&as_of=2020-08-31")
        .await;
    assert_eq!(r.headers()["x-tickvault-adjustments"], "none");

    for (query, param) in [
        ("adjust=split", "adjust"),
        ("adjust=", "adjust"),
        ("adjust=all&as_of=2020-13-01", "as_of"),
        ("adjust=all&as_of=yesterday", "as_of"),
        ("as_of=2020-09-01", "as_of"),
    ] {
        for path in ["/v1/bars/AAPL", "/v1/bars?symbols=AAPL"] {
            let sep = if path.contains('?') { '&' } else { '?' };
            let r = server.get(&format!("{path}{sep}{query}")).await;
            assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path} {query}");
            let body: serde_json::Value = r.json().await.unwrap();
            let message = body["error"].as_str().unwrap();
            assert!(
                message.starts_with(&format!("{param}:")),
                "{query}: {message}"
            );
        }
    }

    // An event whose factor would be 0 or less (a dividend above the close before it) refuses
    // the adjusted read, naming the event; raw reads are not affected.
    store
        .actions()
        .upsert(vec![dividend("MSFT", "2020-08-31", 300.0)])
        .await
        .unwrap();
    let r = server.get("/v1/bars/MSFT?adjust=all").await;
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "bad_corporate_action");
    let message = body["error"].as_str().unwrap();
    assert!(
        message.contains("MSFT 2020-08-31 dividend") && message.contains("previous close 228.91"),
        "{message}"
    );
    assert_eq!(server.get("/v1/bars/MSFT").await.status(), StatusCode::OK);
}

#[tokio::test]
async fn sql_views_adjust_bars_and_keep_pruning() {
    let store = aapl_2020().await;
    let q = |sql: &str| {
        let store = Arc::clone(&store);
        let sql = sql.to_string();
        async move {
            let batches = store.query(&sql).await.unwrap();
            crate::common::f64_values(&batches, 0)
        }
    };
    assert_eq!(
        q("SELECT close FROM bars_split_adjusted WHERE symbol = 'AAPL' ORDER BY ts").await,
        vec![125.01, 124.8075, 129.04, 119.03, 118.69]
    );
    let f = 1.0 - 0.205 / 119.03;
    let adjusted = q("SELECT close FROM bars_adjusted WHERE symbol = 'AAPL' ORDER BY ts").await;
    assert!(
        (adjusted[0] - 125.01 * f).abs() < 1e-9 && adjusted[4] == 118.69,
        "{adjusted:?}"
    );
    // A filter on a price compares adjusted prices (raw 499.23 is not below 200).
    assert_eq!(
        q("SELECT close FROM bars_split_adjusted WHERE symbol = 'AAPL' AND close < 126 AND ts < '2020-09-01' ORDER BY ts").await,
        vec![125.01, 124.8075]
    );
    // Volume follows splits; the same columns as `bars`.
    assert_eq!(
        q("SELECT volume FROM bars_split_adjusted WHERE symbol = 'AAPL' ORDER BY ts LIMIT 1").await,
        vec![40.0]
    );
    let cols = |t: &str| {
        let store = Arc::clone(&store);
        let t = t.to_string();
        async move {
            store
                .sql(&format!("SELECT * FROM {t}"))
                .await
                .unwrap()
                .schema()
                .as_arrow()
                .clone()
        }
    };
    assert_eq!(cols("bars_adjusted").await, cols("bars").await);
    // Symbol and ts filters still prune files: MSFT's file is not read.
    let before = store.engine().scan_stats();
    q("SELECT close FROM bars_adjusted WHERE symbol = 'AAPL' AND ts >= '2020-01-01'").await;
    let after = store.engine().scan_stats();
    assert_eq!(after.files_scanned - before.files_scanned, 1);
    assert_eq!(after.files_pruned - before.files_pruned, 1);
    // The library loader and the view agree.
    let loaded = closes(
        &store
            .load_bars_collect(&load(&["AAPL"], "1d", None, None, all()))
            .await
            .unwrap(),
    );
    let from_view: Vec<f64> = loaded.values().map(|c| c.0).collect();
    assert_eq!(
        from_view,
        q("SELECT close FROM bars_adjusted WHERE symbol = 'AAPL' ORDER BY ts").await
    );
    // Stored statistics are of raw prices, so a filter on a price must not prune with them:
    // AAPL's 2019 file holds one raw close of 180, 45 split-adjusted.
    store
        .write(&bars(&[row("AAPL", "1d", midnight("2019-06-03"), 180.0)]))
        .await
        .unwrap();
    assert_eq!(
        q("SELECT close FROM bars_split_adjusted WHERE symbol = 'AAPL' AND close < 100").await,
        vec![45.0]
    );
}

#[derive(clap::Parser)]
struct BarsCli {
    #[command(flatten)]
    args: tickvault::cli::bars::BarsArgs,
}

#[tokio::test]
async fn the_cli_read_adjusts_and_lists_the_events() {
    use tickvault::cli::bars::{BarsArgs, write_bars};
    use tickvault::format::Format;
    let store = aapl_2020().await;
    let args = |extra: &[&str]| {
        let mut argv = vec![
            "bars",
            "AAPL",
            "--to",
            "2020-09-01",
            "--columns",
            "ts,close,volume",
        ];
        argv.extend_from_slice(extra);
        <BarsCli as clap::Parser>::try_parse_from(argv)
            .unwrap()
            .args
    };
    let run = |a: BarsArgs| {
        let store = Arc::clone(&store);
        async move {
            let mut notes = Vec::new();
            let out = write_bars(&store, &a, Format::Csv, Vec::new(), &mut notes).await;
            out.map(|o| {
                (
                    String::from_utf8(o).unwrap(),
                    String::from_utf8(notes).unwrap(),
                )
            })
        }
    };
    let (out, notes) = run(args(&["--adjust", "splits"])).await.unwrap();
    assert_eq!(
        out,
        "ts,close,volume\n2020-08-27T00:00:00Z,125.01,40.0\n2020-08-28T00:00:00Z,124.8075,40.0\n2020-08-31T00:00:00Z,129.04,10.0\n"
    );
    assert_eq!(
        notes,
        "adjusted (splits): AAPL 2020-08-31 split ratio=4 factor=0.25\n"
    );
    let (out, notes) = run(args(&["--adjust", "all", "--as-of", "2020-08-30"]))
        .await
        .unwrap();
    assert!(out.contains("500.04"), "{out}");
    assert_eq!(notes, "adjusted (all): no event applies to these bars\n");
    let (out, notes) = run(args(&[])).await.unwrap();
    assert!(out.contains("500.04") && notes.is_empty());
    for (extra, flag) in [
        (&["--adjust", "some"][..], "--adjust"),
        (&["--adjust", "all", "--as-of", "2020-02-30"][..], "--as-of"),
        (&["--as-of", "2020-09-01"][..], "--as-of"),
    ] {
        let e = run(args(extra)).await.unwrap_err().to_string();
        assert!(e.starts_with(flag), "{extra:?}: {e}");
    }
}

#[tokio::test]
async fn the_tickvault_binary_reads_bars_and_refuses_bad_flags() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    {
        let store = Store::open(path.to_str().unwrap()).await.unwrap();
        let days = ["2020-08-28", "2020-08-31"];
        let rows: Vec<_> = days
            .iter()
            .zip([499.23, 129.04])
            .map(|(d, c)| row("AAPL", "1d", midnight(d), c))
            .collect();
        store.write(&bars(&rows)).await.unwrap();
    }
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tickvault"))
            .arg("--store")
            .arg(&path)
            .arg("bars")
            .args(args)
            .env_remove("TICKVAULT_STORE")
            .output()
            .unwrap()
    };
    let out = run(&[
        "AAPL",
        "--from",
        "2020-08-28",
        "--columns",
        "ts,close",
        "--adjust",
        "all",
        "--format",
        "csv",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "ts,close\n2020-08-28T00:00:00Z,499.23\n2020-08-31T00:00:00Z,129.04\n"
    );
    // This process knows no events: it says so rather than pass raw prices off as adjusted.
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("adjusted (all): no event applies"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (args, flag) in [
        (&["AAPL", "--adjust", "dividends"][..], "--adjust"),
        (
            &["AAPL", "--adjust", "all", "--as-of", "31/08/2020"][..],
            "--as-of",
        ),
        (&["AAPL", "--timeframe", "2d"][..], "--timeframe"),
    ] {
        let out = run(args);
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn intraday_events_follow_the_calendar_the_registry_gives_a_symbol() {
    use tickvault::calendar::Calendar;
    use tickvault::sync::provider::{self, ProviderConfig, ProviderKind, UpstreamPolicy};
    use tickvault::sync::registry::SymbolSpec;
    use tickvault::sync::syncer::{ProviderHandle, SyncOptions, Syncer};
    let store = Arc::new(Store::open("memory://").await.unwrap());
    // No request is made: tracking only records the symbol.
    let config = ProviderConfig::new(ProviderKind::Binance, Some("http://127.0.0.1:9".into()));
    let handle = ProviderHandle::new(
        "up",
        provider::build(&config).unwrap(),
        UpstreamPolicy::default(),
    );
    let syncer = Syncer::open(Arc::clone(&store), vec![handle], SyncOptions::default())
        .await
        .unwrap();
    syncer
        .track(SymbolSpec {
            symbol: sym("COIN-USD"),
            intervals: vec![Interval::M1],
            provider: "up".into(),
            since: midnight("2021-01-01"),
            calendar: Calendar::AlwaysOpen,
            added_at: 0,
        })
        .await
        .unwrap();
    // 2021-03-15 03:59 UTC: the day of the split in UTC (24x7), still the 14th in New York.
    let ex = midnight("2021-03-15");
    let at = ex + 4 * 60 * MINUTE - MINUTE;
    for s in ["COIN-USD", "XYZ"] {
        store
            .write(&bars(&[minute(s, ex - MINUTE, 20.0), minute(s, at, 10.0)]))
            .await
            .unwrap();
    }
    store
        .actions()
        .upsert(vec![
            split("COIN-USD", "2021-03-15", 2.0),
            split("XYZ", "2021-03-15", 2.0),
        ])
        .await
        .unwrap();
    let adjusted = |s: &'static str| {
        let store = Arc::clone(&store);
        async move {
            let req = load(
                &[s],
                "1m",
                None,
                None,
                Adjustment::new(Adjust::Splits, None),
            );
            let got = closes(&store.load_bars_collect(&req).await.unwrap());
            got.values().map(|c| c.0).collect::<Vec<_>>()
        }
    };
    assert_eq!(
        adjusted("COIN-USD").await,
        vec![10.0, 10.0],
        "24x7: from 00:00 UTC"
    );
    assert_eq!(
        adjusted("XYZ").await,
        vec![10.0, 5.0],
        "untracked: us-equity, New York"
    );
}
