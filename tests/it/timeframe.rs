//! The `timeframe` column, named `interval` before: stores written under the old path names keep
//! opening and answering while new files go under `bars/timeframe=`, SQL filters on it unquoted,
//! and the command line still takes the old flag name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tickvault::{LoadRequest, Store};

use crate::cli::{ok, tickvault};
use crate::common::{DAY, MINUTE, T2021, bars, contents, row};

/// Every regular file under `dir`, relative to it, with `/` separators.
fn files_under(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap();
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Rewrites a store as versions before the rename wrote it: data files under `bars/interval=`
/// and the log entries naming those paths.
fn to_old_layout(root: &Path) {
    let bars_dir = root.join("bars");
    for entry in std::fs::read_dir(&bars_dir).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().into_owned();
        let old = name.replace("timeframe=", "interval=");
        std::fs::rename(bars_dir.join(&name), bars_dir.join(old)).unwrap();
    }
    // The Delta log's paths are relative to `bars/`.
    for rel in files_under(&bars_dir.join("_delta_log")) {
        let path = bars_dir.join("_delta_log").join(rel);
        let text = std::fs::read_to_string(&path).unwrap();
        let text = text.replace("\"path\":\"timeframe=", "\"path\":\"interval=");
        std::fs::write(&path, text).unwrap();
    }
    for rel in files_under(root) {
        assert!(!rel.contains("timeframe="), "{rel}");
        let text = std::fs::read(root.join(&rel)).unwrap();
        assert!(
            !text.windows(10).any(|w| w == b"timeframe="),
            "{rel} still names the new layout"
        );
    }
}

async fn open(root: &Path) -> Store {
    Store::open(root.to_str().unwrap()).await.unwrap()
}

fn catalog_paths(store: &Store) -> Vec<String> {
    let mut paths: Vec<String> = store
        .catalog()
        .snapshot()
        .files()
        .map(|f| f.path.clone())
        .collect();
    paths.sort();
    paths
}

async fn count(store: &Store, sql: &str) -> i64 {
    use arrow::array::AsArray;
    let batches = store.query(sql).await.unwrap();
    batches[0]
        .column(0)
        .as_primitive::<arrow::datatypes::Int64Type>()
        .value(0)
}

#[tokio::test]
async fn a_store_written_before_the_rename_opens_answers_and_takes_new_writes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let first = [
        row("A", "1d", T2021 - 5 * DAY, 1.0), // 2020
        row("A", "1d", T2021, 2.0),
        row("A", "1d", T2021 + DAY, 3.0),
        row("B", "1m", T2021, 5.0),
        row("B", "1m", T2021 + MINUTE, 6.0),
    ];
    let mut model: BTreeMap<(String, String, i64), f64> = first
        .iter()
        .map(|r| ((r.0.clone(), r.1.clone(), r.2), r.3))
        .collect();
    {
        let store = open(&root).await;
        store.write(&bars(&first)).await.unwrap();
    }
    to_old_layout(&root);

    let store = open(&root).await;
    let old = catalog_paths(&store);
    assert_eq!(old.len(), 3);
    assert!(
        old.iter().all(|p| p.starts_with("bars/interval=")),
        "{old:?}"
    );
    assert_eq!(contents(&store).await, model);
    let report = store.check().await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert!(report.orphans.is_empty(), "{:?}", report.orphans);
    assert_eq!(report.files_checked, 3);
    // The column reads well in SQL: no quotes.
    assert_eq!(
        count(&store, "SELECT count(*) FROM bars WHERE timeframe = '1d'").await,
        3
    );
    assert_eq!(
        count(
            &store,
            "SELECT count(*) FROM bars WHERE symbol = 'B' AND timeframe = '1m' \
             AND ts >= '2021-01-04T00:00:00Z' AND ts < '2021-01-05T00:00:00Z'"
        )
        .await,
        2
    );
    let loaded = store
        .load_bars_collect(&LoadRequest {
            symbols: vec!["A".into()],
            interval: "1d".parse().unwrap(),
            start: Some(T2021),
            end: None,
            columns: Some(vec!["ts".into(), "close".into()]),
            adjustment: tickvault::adjust::Adjustment::NONE,
        })
        .await
        .unwrap();
    assert_eq!(crate::common::f64_values(&loaded, 1), [2.0, 3.0]);

    // A new bar in a partition of old files: the new file goes under timeframe=, the old ones
    // stay where they are, and reads see both.
    let added = row("A", "1d", T2021 + 2 * DAY, 4.0);
    model.insert((added.0.clone(), added.1.clone(), added.2), added.3);
    store.write(&bars(&[added])).await.unwrap();
    let paths = catalog_paths(&store);
    let new: Vec<&String> = paths.iter().filter(|p| !old.contains(p)).collect();
    assert_eq!(new.len(), 1);
    assert!(
        new[0].starts_with("bars/timeframe=1d/symbol=A/year=2021/"),
        "{}",
        new[0]
    );
    assert!(old.iter().all(|p| paths.contains(p)));
    assert_eq!(contents(&store).await, model);

    // Deleting from an old file rewrites what is left under timeframe=.
    let deleted = store
        .delete_range(
            &tickvault::model::Symbol::new("B").unwrap(),
            "1m".parse().unwrap(),
            T2021,
            T2021 + MINUTE,
        )
        .await
        .unwrap();
    assert_eq!(deleted.rows, 1);
    model.remove(&("B".to_string(), "1m".to_string(), T2021));
    // Rewriting a bar of an old file replaces that file with one under timeframe=.
    let changed = row("A", "1d", T2021 + DAY, 3.5);
    model.insert((changed.0.clone(), changed.1.clone(), changed.2), changed.3);
    store.write(&bars(&[changed])).await.unwrap();
    store.compact().await.unwrap();
    store.gc(Duration::ZERO).await.unwrap();
    assert_eq!(contents(&store).await, model);
    let paths = catalog_paths(&store);
    assert_eq!(
        paths
            .iter()
            .map(|p| p.rsplit_once('/').unwrap().0)
            .collect::<Vec<_>>(),
        [
            "bars/interval=1d/symbol=A/year=2020",
            "bars/timeframe=1d/symbol=A/year=2021",
            "bars/timeframe=1d/symbol=A/year=2021",
            "bars/timeframe=1m/symbol=B/year=2021",
        ]
    );
    // gc removed the replaced old files; the data files on disk are exactly the catalog's.
    assert_eq!(
        files_under(&root)
            .into_iter()
            .filter(|p| p.starts_with("bars/") && !p.starts_with("bars/_delta_log/"))
            .collect::<Vec<_>>(),
        paths
    );
    let report = store.check().await.unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    drop(store);
    let store = open(&root).await;
    assert_eq!(contents(&store).await, model);
}

#[tokio::test]
async fn the_old_column_name_is_gone_from_sql_and_the_error_names_the_new_one() {
    let store = Store::open("memory://").await.unwrap();
    store
        .write(&bars(&[row("A", "1d", T2021, 1.0)]))
        .await
        .unwrap();
    assert_eq!(
        count(&store, "SELECT count(*) FROM bars WHERE timeframe = '1d'").await,
        1
    );
    let e = store
        .query("SELECT count(*) FROM bars WHERE \"interval\" = '1d'")
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("timeframe"), "{e}");
    for (table, column) in [("bars", 1), ("latest", 3), ("bars_daily", 1)] {
        let schema = store.sql(&format!("SELECT * FROM {table}")).await.unwrap();
        let name = schema.schema().field(column).name().clone();
        assert!(name.contains("timeframe"), "{table}: {name}");
    }
}

fn csv(dir: &Path, name: &str, minute: i64) -> PathBuf {
    let path = dir.join(name);
    let ts = T2021 / 1_000_000 + 60 * minute;
    std::fs::write(
        &path,
        format!("symbol,ts,open,high,low,close,volume\nM,{ts},1,2,0.5,1.5,10\n"),
    )
    .unwrap();
    path
}

#[test]
fn the_command_line_takes_timeframe_and_still_interval() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let a = csv(dir.path(), "a.csv", 0);
    let b = csv(dir.path(), "b.csv", 1);
    ok(&tickvault(
        &store,
        &["import", "--timeframe", "1m", a.to_str().unwrap()],
    ));
    ok(&tickvault(
        &store,
        &["import", "--interval", "1m", b.to_str().unwrap()],
    ));
    let out = tickvault(
        &store,
        &[
            "import",
            "--timeframe",
            "1m",
            "--interval",
            "1d",
            a.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    let out = ok(&tickvault(
        &store,
        &[
            "sql",
            "--format",
            "csv",
            "SELECT symbol, timeframe, count(*) AS n FROM bars WHERE timeframe = '1m' GROUP BY symbol, timeframe",
        ],
    ));
    assert_eq!(out, "symbol,timeframe,n\nM,1m,2\n");
    let stats = ok(&tickvault(&store, &["stats"]));
    assert!(stats.starts_with("timeframe "), "{stats}");
    let out = ok(&tickvault(
        &store,
        &[
            "delete",
            "M",
            "--interval",
            "1m",
            "--start",
            "2021-01-04T00:00:00Z",
            "--end",
            "2021-01-04T00:01:00Z",
        ],
    ));
    assert!(out.starts_with("deleted 1 rows of M 1m"), "{out}");
    let out = ok(&tickvault(
        &store,
        &[
            "delete",
            "M",
            "--timeframe",
            "1m",
            "--start",
            "2021-01-04T00:00:00Z",
            "--end",
            "2021-01-05T00:00:00Z",
        ],
    ));
    assert!(out.starts_with("deleted 1 rows of M 1m"), "{out}");
    let help = ok(&tickvault(&store, &["import", "--help"]));
    assert!(help.contains("--timeframe <"), "{help}");
}

#[tokio::test]
async fn http_reads_take_timeframe_and_still_interval() {
    use reqwest::StatusCode;
    let store = Store::open("memory://").await.unwrap();
    store
        .write(&bars(&[
            row("A", "1d", T2021, 1.0),
            row("A", "1m", T2021, 2.0),
            row("A", "1m", T2021 + MINUTE, 3.0),
        ]))
        .await
        .unwrap();
    let server = crate::server::TestServer::start(
        tickvault::config::Config::default(),
        std::sync::Arc::new(store),
    )
    .await;
    let rows = |path: &'static str| {
        let server = &server;
        async move {
            let r = server.get(path).await;
            assert_eq!(r.status(), StatusCode::OK, "{path}");
            let v: serde_json::Value = r.json().await.unwrap();
            v.as_array().unwrap().clone()
        }
    };
    for path in [
        "/v1/bars/A?timeframe=1m&format=json",
        "/v1/bars/A?interval=1m&format=json",
        "/v1/bars/A?timeframe=1m&interval=1m&format=json",
        "/v1/bars?symbols=A&interval=1m&format=json",
    ] {
        let got = rows(path).await;
        assert_eq!(got.len(), 2, "{path}");
        assert_eq!(got[0]["timeframe"], "1m", "{path}");
        assert!(got[0].get("interval").is_none(), "{path}");
    }
    assert_eq!(rows("/v1/bars/A?format=json").await.len(), 1);
    let m = crate::server::expect_error(
        server
            .get("/v1/bars?symbols=A&timeframe=1m&interval=1d")
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_parameter",
    )
    .await;
    assert_eq!(
        m,
        "timeframe: timeframe \"1m\" and interval \"1d\" disagree (interval is the old name of \
         timeframe; give one)"
    );
    server.stop().await;
}

#[tokio::test]
async fn http_writes_take_timeframe_and_still_interval() {
    use reqwest::StatusCode;
    let wal = tempfile::tempdir().unwrap();
    let (server, _store) =
        crate::live::live_server(tickvault::config::Config::default(), wal.path()).await;
    let csv = |minute: u32| {
        format!("date,open,high,low,close,volume\n2024-01-02 14:{minute},1,2,1,1.5,10\n")
    };
    for (query, minute) in [
        ("timeframe=1m", 30),
        ("interval=1m", 31),
        ("timeframe=1m&interval=1m", 32),
    ] {
        let r = server
            .post(
                &format!("/v1/write?{query}&symbol=A"),
                "text/csv",
                csv(minute).into_bytes(),
            )
            .await;
        assert_eq!(r.status(), StatusCode::OK, "{query}");
    }
    let m = crate::server::expect_error(
        server
            .post(
                "/v1/write?timeframe=1m&interval=1d&symbol=A",
                "text/csv",
                csv(33).into_bytes(),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "invalid_parameter",
    )
    .await;
    assert!(
        m.starts_with("timeframe: timeframe \"1m\" and interval \"1d\" disagree"),
        "{m}"
    );
    let r = server
        .post_sql("SELECT count(*) AS n FROM bars WHERE symbol = 'A' AND timeframe = '1m'")
        .await;
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v[0]["n"], 3);
    server.stop().await;
}
