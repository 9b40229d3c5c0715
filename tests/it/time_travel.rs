//! Time travel and named snapshots through the public API, the HTTP API and the binary: every
//! version reads back exactly what a read at its time returned; a named snapshot survives
//! upserts, compaction, deletes and GC with zero grace; bad versions and names are refused and
//! change nothing. Only public calls, so these hold whatever the catalog's log format.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{AsArray, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{Float64Type, Int64Type, TimestampMicrosecondType};
use object_store::ObjectStore;
use object_store::memory::InMemory;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tickvault::adjust::{Adjust, Adjustment};
use tickvault::config::{Config, Token};
use tickvault::error::ErrorKind;
use tickvault::live::LiveOptions;
use tickvault::model::{Interval, Symbol};
use tickvault::{LoadRequest, Store, StoreOptions, TableVersion};

use crate::cli::{fixtures, ok, tickvault};
use crate::common::{DAY, Row, T2021, bars, row};
use crate::server::{TestServer, expect_error};

/// Every row in key order: (symbol, timeframe, ts) -> close.
type Rows = BTreeMap<(String, String, i64), f64>;
/// Per symbol: (rows, sum of close). Closes are whole numbers, so sums are exact in any order.
type Sums = BTreeMap<String, (i64, f64)>;

const ROWS_SQL: &str = "SELECT symbol, timeframe, arrow_cast(ts, 'Int64') AS t, close FROM bars \
                        ORDER BY symbol, timeframe, ts";
const SUMS_SQL: &str =
    "SELECT symbol, count(*) AS n, sum(close) AS s FROM bars GROUP BY symbol ORDER BY symbol";

fn rows_of(batches: &[RecordBatch]) -> Rows {
    let mut out = Rows::new();
    for b in batches {
        let sym = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        let tf = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
        let ts = b.column(2).as_any().downcast_ref::<Int64Array>().unwrap();
        let close = b.column(3).as_any().downcast_ref::<Float64Array>().unwrap();
        for i in 0..b.num_rows() {
            let key = (sym.value(i).into(), tf.value(i).into(), ts.value(i));
            assert!(out.insert(key, close.value(i)).is_none(), "a row twice");
        }
    }
    out
}

fn sums_of(batches: &[RecordBatch]) -> Sums {
    let mut out = Sums::new();
    for b in batches {
        let sym = b.column(0).as_string::<i32>();
        let n = b.column(1).as_primitive::<Int64Type>();
        let s = b.column(2).as_primitive::<Float64Type>();
        for i in 0..b.num_rows() {
            out.insert(sym.value(i).to_string(), (n.value(i), s.value(i)));
        }
    }
    out
}

/// What the backtest loader returns: (ts, close) in its order.
fn loaded(batches: &[RecordBatch]) -> Vec<(i64, f64)> {
    let mut out = Vec::new();
    for b in batches {
        let ts = b.column(0).as_primitive::<TimestampMicrosecondType>();
        let close = b.column(1).as_primitive::<Float64Type>();
        out.extend((0..b.num_rows()).map(|i| (ts.value(i), close.value(i))));
    }
    out
}

fn load_request(symbols: &[&str]) -> LoadRequest {
    LoadRequest {
        symbols: symbols.iter().map(|s| s.to_string()).collect(),
        interval: Interval::D1,
        start: None,
        end: None,
        columns: Some(vec!["ts".into(), "close".into()]),
        adjustment: Adjustment::NONE,
    }
}

/// `n` daily bars of `symbol` from day `from`, closes `base + day`.
fn days(symbol: &str, from: i64, n: i64, base: f64) -> Vec<Row> {
    (from..from + n)
        .map(|d| row(symbol, "1d", T2021 + d * DAY, base + d as f64))
        .collect()
}

/// What a read of the latest version returns now: version, rows, loader output.
async fn observe(store: &Store) -> (u64, Rows, Vec<(i64, f64)>) {
    let version = store.table_version();
    let rows = rows_of(&store.query(ROWS_SQL).await.unwrap());
    let load = loaded(
        &store
            .load_bars_collect(&load_request(&["A", "B"]))
            .await
            .unwrap(),
    );
    (version, rows, load)
}

#[tokio::test]
async fn every_version_reads_back_what_a_read_at_its_time_returned() {
    let store = Store::open("memory://").await.unwrap();
    assert_eq!(store.table_version(), 0);
    let mut seen = Vec::new();
    store
        .write(&bars(
            &[days("A", 0, 4, 10.0), days("B", 0, 3, 20.0)].concat(),
        ))
        .await
        .unwrap();
    seen.push(observe(&store).await);
    // An upsert: two closes of A replaced, one day added.
    store
        .write(&bars(&[
            row("A", "1d", T2021 + DAY, 50.0),
            row("A", "1d", T2021 + 2 * DAY, 51.0),
            row("A", "1d", T2021 + 9 * DAY, 52.0),
        ]))
        .await
        .unwrap();
    seen.push(observe(&store).await);
    // Appends in several files, then a compaction merges them.
    for d in 10..15 {
        store.write(&bars(&days("A", d, 1, 30.0))).await.unwrap();
    }
    seen.push(observe(&store).await);
    let compacted = store.compact().await.unwrap();
    assert!(compacted.partitions_compacted >= 1, "{compacted:?}");
    let before_compaction = seen.last().unwrap().1.clone();
    let (v, rows, load) = observe(&store).await;
    assert_eq!(rows, before_compaction, "a compaction changes no row");
    // A delete of a range of A.
    let a = Symbol::new("A").unwrap();
    store
        .delete_range(&a, Interval::D1, T2021, T2021 + 2 * DAY)
        .await
        .unwrap();
    seen.push(observe(&store).await);
    // Each step changed what a read returns (or the comparisons below prove nothing).
    for w in seen.windows(2) {
        assert_ne!(w[0].1, w[1].1, "versions {} and {}", w[0].0, w[1].0);
    }
    seen.push((v, rows, load));

    for (version, rows, load) in &seen {
        let view = store.at(*version).await.unwrap();
        assert_eq!(view.version(), *version);
        assert_eq!(
            &rows_of(&view.query(ROWS_SQL).await.unwrap()),
            rows,
            "v{version}"
        );
        let got = view
            .load_bars_collect(&load_request(&["A", "B"]))
            .await
            .unwrap();
        assert_eq!(&loaded(&got), load, "loader at v{version}");
        // The planner's path too (a filter the fast paths do not take).
        let one = view
            .query("SELECT count(*) AS n FROM bars WHERE close > 0 AND symbol = 'A'")
            .await
            .unwrap();
        let n = one[0].column(0).as_primitive::<Int64Type>().value(0);
        assert_eq!(n as usize, rows.keys().filter(|k| k.0 == "A").count());
    }
    // Version 0 is the empty table.
    let empty = store.at(0).await.unwrap();
    assert!(rows_of(&empty.query(ROWS_SQL).await.unwrap()).is_empty());

    // Past the latest: unknown, named.
    let latest = store.table_version();
    let err = store.at(latest + 1).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnknownVersion, "{err}");
    assert!(
        err.to_string()
            .contains(&format!("version {} does not exist", latest + 1)),
        "{err}"
    );

    // GC with zero grace deletes the files later commits replaced: those versions are gone,
    // with an error that says so; the latest still reads.
    store.gc(Duration::ZERO).await.unwrap();
    let err = store.at(seen[0].0).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::VersionGone, "{err}");
    assert!(
        err.to_string().contains(&format!(
            "table version {} is no longer readable",
            seen[0].0
        )),
        "{err}"
    );
    let current = rows_of(&store.query(ROWS_SQL).await.unwrap());
    let view = store.at(latest).await.unwrap();
    assert_eq!(rows_of(&view.query(ROWS_SQL).await.unwrap()), current);
}

#[tokio::test]
async fn a_version_is_what_was_committed_without_live_rows() {
    let wal = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        live: Some(LiveOptions::new(wal.path())),
        ..Default::default()
    };
    let object_store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let store = Store::open_with_store(object_store, "mem", &options)
        .await
        .unwrap();
    store.write(&bars(&days("A", 0, 3, 10.0))).await.unwrap();
    let committed = rows_of(&store.query(ROWS_SQL).await.unwrap());
    let version = store.table_version();
    // A live row that replaces a stored one, and a new one.
    store
        .ingest_batch(&bars(&[
            row("A", "1d", T2021, 99.0),
            row("A", "1d", T2021 + 5 * DAY, 98.0),
        ]))
        .await
        .unwrap();
    let latest = rows_of(&store.query(ROWS_SQL).await.unwrap());
    assert_eq!(latest.len(), 4);
    assert_eq!(store.table_version(), version, "ingest does not commit");
    let view = store.at(version).await.unwrap();
    assert_eq!(rows_of(&view.query(ROWS_SQL).await.unwrap()), committed);
    let load = view.load_bars_collect(&load_request(&["A"])).await.unwrap();
    assert_eq!(
        loaded(&load),
        committed.iter().map(|(k, c)| (k.2, *c)).collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn a_named_snapshot_survives_upserts_compaction_delete_and_gc_with_zero_grace() {
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().to_str().unwrap().to_string();
    let store = Store::open(&url).await.unwrap();
    let symbols = ["^GSPC", "BRK.B", "A"];
    for (i, s) in symbols.iter().enumerate() {
        store
            .write(&bars(&days(s, 0, 20, 100.0 * (i + 1) as f64)))
            .await
            .unwrap();
    }
    let pinned = store.create_snapshot("bt-2021.q1_v1", None).await.unwrap();
    assert_eq!(pinned.version, store.table_version());
    let sums = sums_of(&store.query(SUMS_SQL).await.unwrap());
    let rows = rows_of(&store.query(ROWS_SQL).await.unwrap());
    assert_eq!(sums.len(), 3);

    // Upserts past a checkpoint (every 100 commits), appends, a compaction, a delete.
    for i in 0..105 {
        let s = symbols[i % 3];
        let day = (i % 20) as i64;
        store
            .write(&bars(&[row(s, "1d", T2021 + day * DAY, 1000.0 + i as f64)]))
            .await
            .unwrap();
    }
    for d in 20..26 {
        store.write(&bars(&days("A", d, 1, 7.0))).await.unwrap();
    }
    store.compact().await.unwrap();
    let gspc = Symbol::new("^GSPC").unwrap();
    store
        .delete_range(&gspc, Interval::D1, T2021, T2021 + 5 * DAY)
        .await
        .unwrap();
    let gc = store.gc(Duration::ZERO).await.unwrap();
    assert!(gc.kept_for_snapshots > 0, "{gc:?}");
    assert!(gc.removed_deleted > 0, "{gc:?}");
    assert_ne!(sums_of(&store.query(SUMS_SQL).await.unwrap()), sums);

    let check = |store: Store| {
        let (sums, rows) = (sums.clone(), rows.clone());
        async move {
            let view = store.at_snapshot("bt-2021.q1_v1").await.unwrap();
            assert_eq!(view.version(), pinned.version);
            assert_eq!(sums_of(&view.query(SUMS_SQL).await.unwrap()), sums);
            assert_eq!(rows_of(&view.query(ROWS_SQL).await.unwrap()), rows);
            let load = view
                .load_bars_collect(&load_request(&["^GSPC"]))
                .await
                .unwrap();
            let want: Vec<(i64, f64)> = rows
                .iter()
                .filter(|(k, _)| k.0 == "^GSPC")
                .map(|(k, c)| (k.2, *c))
                .collect();
            assert_eq!(loaded(&load), want);
            store
        }
    };
    let store = check(store).await;
    // Another process opening the store sees the snapshot and reads it the same.
    drop(store);
    let reopened = check(Store::open(&url).await.unwrap()).await;
    let listed = reopened.snapshots().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].name.as_str(), listed[0].version),
        ("bt-2021.q1_v1", pinned.version)
    );

    // Deleted, the snapshot keeps nothing: GC deletes its files and the version is gone.
    reopened.delete_snapshot("bt-2021.q1_v1").await.unwrap();
    let gc = reopened.gc(Duration::ZERO).await.unwrap();
    assert!(
        gc.removed_deleted > 0 && gc.kept_for_snapshots == 0,
        "{gc:?}"
    );
    let err = reopened.at(pinned.version).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::VersionGone, "{err}");
}

#[tokio::test]
async fn bad_versions_and_snapshot_names_are_refused_and_change_nothing() {
    let object_store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let store = Store::open_with_store(Arc::clone(&object_store), "mem", &StoreOptions::default())
        .await
        .unwrap();
    store.write(&bars(&days("A", 0, 3, 10.0))).await.unwrap();
    let first = store.table_version();
    let long = "x".repeat(65);
    for (bad, says) in [
        ("", "empty"),
        (long.as_str(), "65 characters"),
        ("a/b", "'/'"),
        ("snap shot", "' '"),
        ("..", "not a usable name"),
    ] {
        let err = store.create_snapshot(bad, None).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}: {err}");
        assert!(err.to_string().contains("invalid snapshot name"), "{err}");
        assert!(err.to_string().contains(says), "{bad:?}: {err}");
        let err = store.at_snapshot(bad).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}: {err}");
    }
    let longest = "x".repeat(64);
    assert_eq!(
        store.create_snapshot(&longest, None).await.unwrap().name,
        longest
    );
    store.delete_snapshot(&longest).await.unwrap();

    store.create_snapshot("keep", None).await.unwrap();
    store.write(&bars(&days("A", 5, 1, 10.0))).await.unwrap();
    let latest = store.table_version();
    let err = store
        .create_snapshot("keep", Some(latest))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SnapshotExists, "{err}");
    assert!(err.to_string().contains("\"keep\" already exists"), "{err}");
    assert_eq!(store.snapshot("keep").await.unwrap().version, first);

    let err = store
        .create_snapshot("future", Some(latest + 5))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnknownVersion, "{err}");
    assert!(err.to_string().contains(&format!("version {}", latest + 5)));

    for err in [
        store.at_snapshot("nope").await.unwrap_err(),
        store.delete_snapshot("nope").await.unwrap_err(),
        store.snapshot("nope").await.unwrap_err(),
    ] {
        assert_eq!(err.kind(), ErrorKind::UnknownSnapshot, "{err}");
        assert!(
            err.to_string().contains("no snapshot named \"nope\""),
            "{err}"
        );
    }
    let err = TableVersion::from_options(Some(1), Some("keep".into())).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);

    // An adjusted read applies today's corporate actions: refused at a version.
    let mut adjusted = load_request(&["A"]);
    adjusted.adjustment = Adjustment::new(Adjust::Splits, None);
    let err = store
        .at(first)
        .await
        .unwrap()
        .load_bars(&adjusted)
        .await
        .err()
        .unwrap();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(
        err.to_string().contains(&format!("table version {first}")),
        "{err}"
    );

    // A reader cannot create or delete snapshots, and reads them like a writer.
    let reader = Store::open_with_store(
        object_store,
        "mem",
        &StoreOptions {
            read_only: true,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let err = reader.create_snapshot("r", None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ReadOnly, "{err}");
    let err = reader.delete_snapshot("keep").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ReadOnly, "{err}");
    assert_eq!(reader.at_snapshot("keep").await.unwrap().version(), first);

    // Nothing above changed the table or the snapshots.
    assert_eq!(store.table_version(), latest);
    let names: Vec<(String, u64)> = store
        .snapshots()
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.name, s.version))
        .collect();
    assert_eq!(names, [("keep".to_string(), first)]);
}

/// The value of `x-tickvault-version`.
fn version_header(r: &reqwest::Response) -> u64 {
    r.headers()
        .get("x-tickvault-version")
        .unwrap_or_else(|| panic!("no x-tickvault-version on {}", r.url()))
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

async fn json_body(r: reqwest::Response) -> Value {
    r.json::<Value>().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_reads_name_a_version_or_a_snapshot_and_say_which_they_read() {
    let store = Arc::new(Store::open("memory://").await.unwrap());
    store
        .write(&bars(
            &[days("A", 0, 4, 10.0), days("B", 0, 2, 20.0)].concat(),
        ))
        .await
        .unwrap();
    let v1 = store.table_version();
    store
        .write(&bars(&[row("A", "1d", T2021, 77.0)]))
        .await
        .unwrap();
    let v2 = store.table_version();
    let server = TestServer::start(Config::default(), Arc::clone(&store)).await;
    assert_eq!(server.status().await["table_version"], json!(v2));

    let q = "SELECT%20symbol,%20count(*)%20AS%20n,%20sum(close)%20AS%20s%20FROM%20bars%20GROUP%20BY%20symbol%20ORDER%20BY%20symbol";
    let r = server.get(&format!("/v1/sql?q={q}&format=json")).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(version_header(&r), v2);
    let latest = json_body(r).await;
    assert_eq!(latest[0]["s"], json!(77.0 + 11.0 + 12.0 + 13.0));
    let r = server
        .get(&format!("/v1/sql?q={q}&format=json&version={v1}"))
        .await;
    assert_eq!(version_header(&r), v1);
    let old = json_body(r).await;
    assert_eq!(old[0]["s"], json!(10.0 + 11.0 + 12.0 + 13.0));
    assert_eq!(old[1], latest[1]);
    // POST takes the version in the query string.
    let r = server
        .client
        .post(server.url(&format!("/v1/sql?format=json&version={v1}")))
        .body("SELECT count(*) AS n FROM bars WHERE symbol = 'A' AND close = 10")
        .send()
        .await
        .unwrap();
    assert_eq!(version_header(&r), v1);
    assert_eq!(json_body(r).await, json!([{"n": 1}]));
    // The loader, both routes.
    let r = server
        .get(&format!(
            "/v1/bars?symbols=A&columns=close&format=json&version={v1}"
        ))
        .await;
    assert_eq!(version_header(&r), v1);
    assert_eq!(json_body(r).await[0], json!({"close": 10.0}));
    let r = server.get("/v1/bars/A?columns=close&format=json").await;
    assert_eq!(version_header(&r), v2);
    assert_eq!(json_body(r).await[0], json!({"close": 77.0}));

    // Named snapshots.
    let post = |b: Value| {
        server
            .client
            .post(server.url("/v1/snapshots"))
            .json(&b)
            .send()
    };
    let r = post(json!({"name": "bt", "version": v1})).await.unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let created = json_body(r).await;
    assert_eq!(created["name"], json!("bt"));
    assert_eq!(created["version"], json!(v1));
    let msg = expect_error(
        post(json!({"name": "bt"})).await.unwrap(),
        StatusCode::CONFLICT,
        "snapshot_exists",
    )
    .await;
    assert!(msg.contains("\"bt\""), "{msg}");
    expect_error(
        post(json!({"name": "a/b"})).await.unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_request",
    )
    .await;
    expect_error(
        post(json!({"name": "later", "version": v2 + 10}))
            .await
            .unwrap(),
        StatusCode::NOT_FOUND,
        "unknown_version",
    )
    .await;
    let list = json_body(server.get("/v1/snapshots").await).await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["version"], json!(v1));
    assert!(
        list[0]["created"].as_str().unwrap().ends_with('Z'),
        "{list}"
    );
    assert_eq!(
        json_body(server.get("/v1/snapshots/bt").await).await,
        list[0]
    );
    let r = server
        .get(&format!("/v1/sql?q={q}&format=json&snapshot=bt"))
        .await;
    assert_eq!(version_header(&r), v1);
    assert_eq!(json_body(r).await, old);
    let r = server
        .get("/v1/bars/A?columns=close&format=json&snapshot=bt")
        .await;
    assert_eq!(version_header(&r), v1);

    // Bad inputs: clear errors, nothing changed.
    let both = server
        .get(&format!("/v1/sql?q={q}&version={v1}&snapshot=bt"))
        .await;
    expect_error(both, StatusCode::BAD_REQUEST, "invalid_parameter").await;
    let both = server
        .get(&format!("/v1/bars/A?version={v1}&snapshot=bt"))
        .await;
    expect_error(both, StatusCode::BAD_REQUEST, "invalid_parameter").await;
    let fill = server
        .get(&format!(
            "/v1/bars/A?version={v1}&fill=true&start=2021-01-04"
        ))
        .await;
    let msg = expect_error(fill, StatusCode::BAD_REQUEST, "invalid_parameter").await;
    assert!(msg.starts_with("fill:"), "{msg}");
    let msg = expect_error(
        server
            .get(&format!("/v1/sql?q={q}&version={}", v2 + 1))
            .await,
        StatusCode::NOT_FOUND,
        "unknown_version",
    )
    .await;
    assert!(msg.contains(&format!("version {}", v2 + 1)), "{msg}");
    expect_error(
        server.get(&format!("/v1/sql?q={q}&version=abc")).await,
        StatusCode::BAD_REQUEST,
        "invalid_parameter",
    )
    .await;
    expect_error(
        server.get("/v1/bars/A?snapshot=nope").await,
        StatusCode::NOT_FOUND,
        "unknown_snapshot",
    )
    .await;
    expect_error(
        server.get("/v1/snapshots/nope").await,
        StatusCode::NOT_FOUND,
        "unknown_snapshot",
    )
    .await;

    // Deleted, the version is no longer kept: after GC it is gone (410).
    let delete = || server.client.delete(server.url("/v1/snapshots/bt")).send();
    assert_eq!(delete().await.unwrap().status(), StatusCode::OK);
    expect_error(
        delete().await.unwrap(),
        StatusCode::NOT_FOUND,
        "unknown_snapshot",
    )
    .await;
    store.gc(Duration::ZERO).await.unwrap();
    let msg = expect_error(
        server.get(&format!("/v1/sql?q={q}&version={v1}")).await,
        StatusCode::GONE,
        "version_gone",
    )
    .await;
    assert!(msg.contains(&format!("table version {v1}")), "{msg}");
    assert_eq!(store.table_version(), v2);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creating_and_deleting_snapshots_over_http_needs_the_write_scope() {
    let store = Arc::new(Store::open("memory://").await.unwrap());
    store.write(&bars(&days("A", 0, 2, 1.0))).await.unwrap();
    let config = Config {
        tokens: vec![
            "read:r3ad-token".parse::<Token>().unwrap(),
            "write:wr1te-token".parse::<Token>().unwrap(),
        ],
        ..Config::default()
    };
    let server = TestServer::start(config, Arc::clone(&store)).await;
    let create = |token: &str| {
        server
            .client
            .post(server.url("/v1/snapshots"))
            .bearer_auth(token)
            .json(&json!({"name": "s"}))
            .send()
    };
    let delete = |token: &str| {
        server
            .client
            .delete(server.url("/v1/snapshots/s"))
            .bearer_auth(token)
            .send()
    };
    let list = || {
        server
            .client
            .get(server.url("/v1/snapshots"))
            .bearer_auth("r3ad-token")
            .send()
    };
    let forbidden = create("r3ad-token").await.unwrap();
    expect_error(forbidden, StatusCode::FORBIDDEN, "forbidden").await;
    assert_eq!(json_body(list().await.unwrap()).await, json!([]));
    assert_eq!(
        create("wr1te-token").await.unwrap().status(),
        StatusCode::CREATED
    );
    let forbidden = delete("r3ad-token").await.unwrap();
    expect_error(forbidden, StatusCode::FORBIDDEN, "forbidden").await;
    assert_eq!(json_body(list().await.unwrap()).await[0]["name"], "s");
    assert_eq!(
        delete("wr1te-token").await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(json_body(list().await.unwrap()).await, json!([]));
    server.stop().await;
}

#[test]
fn cli_snapshots_pin_versions_that_sql_reads_after_a_delete_and_gc() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| tickvault(dir.path(), args);
    let stderr = |out: &std::process::Output| String::from_utf8_lossy(&out.stderr).to_string();
    let f = fixtures();
    ok(&run(&[
        "import",
        "--symbol-pattern",
        "DA-(.+)-T-",
        f.join("DA-AAPL-T-2021-04-21.csv").to_str().unwrap(),
        f.join("DA-BRK.B-T-2021-04-21.csv").to_str().unwrap(),
    ]));
    let sql =
        "SELECT symbol, count(*) AS n, sum(close) AS s FROM bars GROUP BY symbol ORDER BY symbol";
    let before = ok(&run(&["sql", "--format", "csv", sql]));
    let load = ["bars", "AAPL", "--columns", "ts,close", "--format", "csv"];
    let loaded_before = ok(&run(&load));
    let version: u64 = ok(&run(&["snapshot", "create", "before-delete"]))
        .trim()
        .parse()
        .unwrap();
    ok(&run(&[
        "delete",
        "AAPL",
        "--start",
        "2021-02-01",
        "--end",
        "2021-03-01",
    ]));
    let gc = ok(&run(&["gc", "--grace", "0s"]));
    assert!(gc.contains("files kept for named snapshots"), "{gc}");
    assert_ne!(ok(&run(&["sql", "--format", "csv", sql])), before);
    let by_name = ["sql", "--format", "csv", "--snapshot", "before-delete", sql];
    assert_eq!(ok(&run(&by_name)), before);
    let by_version = version.to_string();
    let by_version = ["sql", "--format", "csv", "--version", &by_version, sql];
    assert_eq!(ok(&run(&by_version)), before);
    assert_ne!(ok(&run(&load)), loaded_before);
    let load_pinned = [&load[..], &["--snapshot", "before-delete"]].concat();
    assert_eq!(ok(&run(&load_pinned)), loaded_before);
    let adjusted = [&load_pinned[..], &["--adjust", "splits"]].concat();
    let refused = run(&adjusted);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("adjusted reads are of the latest version only"),
        "{}",
        stderr(&refused)
    );
    let list = ok(&run(&["snapshot", "list"]));
    let fields: Vec<&str> = list.trim_end().split('\t').collect();
    assert_eq!(fields.len(), 3, "{list}");
    assert_eq!(fields[0], "before-delete");
    assert_eq!(fields[1], version.to_string());
    assert!(fields[2].ends_with('Z'), "{list}");

    // Refusals: exit non-zero, say why, change nothing.
    let again = run(&["snapshot", "create", "before-delete", "--version", "1"]);
    assert!(!again.status.success());
    assert!(
        stderr(&again).contains("\"before-delete\" already exists"),
        "{}",
        stderr(&again)
    );
    let both = run(&["sql", "--version", "1", "--snapshot", "before-delete", sql]);
    assert!(!both.status.success());
    assert!(
        stderr(&both).contains("cannot be used with"),
        "{}",
        stderr(&both)
    );
    let future = run(&["sql", "--version", "999999", sql]);
    assert!(!future.status.success());
    assert!(
        stderr(&future).contains("version 999999 does not exist"),
        "{}",
        stderr(&future)
    );
    let bad = run(&["snapshot", "create", "no/slash"]);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("invalid snapshot name"),
        "{}",
        stderr(&bad)
    );
    assert_eq!(ok(&run(&["snapshot", "list"])), list);

    ok(&run(&["snapshot", "delete", "before-delete"]));
    assert_eq!(ok(&run(&["snapshot", "list"])), "");
    let gone = run(&["snapshot", "delete", "before-delete"]);
    assert!(!gone.status.success());
    assert!(
        stderr(&gone).contains("no snapshot named"),
        "{}",
        stderr(&gone)
    );
}
