//! SQL: the read-only guard, the views from sql/, and results.

use arrow::util::pretty::pretty_format_batches;
use tickvault::Store;

use crate::common::*;

async fn text(store: &Store, sql: &str) -> String {
    pretty_format_batches(&store.query(sql).await.unwrap())
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn user_sql_is_read_only() {
    let store = Store::open("memory://").await.unwrap();
    store
        .write(&bars(&[row("A", "1d", T2021, 1.0)]))
        .await
        .unwrap();
    for sql in [
        "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '/etc/passwd'",
        "CREATE TABLE t AS SELECT 1",
        "CREATE VIEW v AS SELECT 1",
        "DROP VIEW bars_daily",
        "INSERT INTO bars SELECT * FROM bars",
        "COPY (SELECT 1) TO '/tmp/x.csv'",
        "SET datafusion.execution.batch_size = 1",
    ] {
        let err = store.query(sql).await.unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("read-only: "), "{sql}: {msg}");
    }
    // No URL tables: a path is not a table.
    let err = store
        .query("SELECT * FROM '/etc/passwd'")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
    // The views are still there, and queries still work.
    assert!(
        text(&store, "SELECT count(*) AS n FROM bars")
            .await
            .contains("| 1 |")
    );
}

#[tokio::test]
async fn malformed_sql_gets_datafusions_message() {
    let store = Store::open("memory://").await.unwrap();
    let err = store.query("SELEC 1").await.unwrap_err().to_string();
    assert!(err.contains("SELEC"), "{err}");
    let err = store
        .query("SELECT nope FROM bars")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope"), "{err}");
}

#[tokio::test]
async fn daily_resample_view() {
    let store = Store::open("memory://").await.unwrap();
    let day2 = T2021 + DAY;
    let open = |ts| T2021 + 14 * 60 * MINUTE + 30 * MINUTE + ts; // 14:30 UTC
    store
        .write(&bars(&[
            row("X", "1m", open(0), 10.0),
            row("X", "1m", open(MINUTE), 12.0),
            row("X", "1m", open(2 * MINUTE), 11.0),
            row("X", "1m", day2 + 15 * 60 * MINUTE, 20.0),
        ]))
        .await
        .unwrap();
    let got = text(
        &store,
        "SELECT symbol, source_interval, day, open, high, low, close, volume, bars \
         FROM bars_daily ORDER BY day",
    )
    .await;
    let want = "\
+--------+-----------------+----------------------+------+------+------+-------+--------+------+
| symbol | source_interval | day                  | open | high | low  | close | volume | bars |
+--------+-----------------+----------------------+------+------+------+-------+--------+------+
| X      | 1m              | 2021-01-04T00:00:00Z | 10.0 | 13.0 | 9.0  | 11.0  | 30.0   | 3    |
| X      | 1m              | 2021-01-05T00:00:00Z | 20.0 | 21.0 | 19.0 | 20.0  | 10.0   | 1    |
+--------+-----------------+----------------------+------+------+------+-------+--------+------+";
    assert_eq!(got, want);
}

#[tokio::test]
async fn daily_returns_view() {
    let store = Store::open("memory://").await.unwrap();
    store
        .write(&bars(&[
            row("X", "1d", T2021, 100.0),
            row("X", "1d", T2021 + DAY, 110.0),
            row("X", "1d", T2021 + 2 * DAY, 99.0),
            row("Y", "1d", T2021, 50.0),
        ]))
        .await
        .unwrap();
    let got = text(
        &store,
        "SELECT symbol, day, round(simple_return, 4) AS r FROM daily_returns ORDER BY symbol, day",
    )
    .await;
    let want = "\
+--------+----------------------+------+
| symbol | day                  | r    |
+--------+----------------------+------+
| X      | 2021-01-04T00:00:00Z |      |
| X      | 2021-01-05T00:00:00Z | 0.1  |
| X      | 2021-01-06T00:00:00Z | -0.1 |
| Y      | 2021-01-04T00:00:00Z |      |
+--------+----------------------+------+";
    assert_eq!(got, want);
}

#[tokio::test]
async fn information_schema_lists_tables_and_views() {
    let store = Store::open("memory://").await.unwrap();
    let got = text(
        &store,
        "SELECT table_name, table_type FROM information_schema.tables \
         WHERE table_schema = 'public' ORDER BY table_name",
    )
    .await;
    for name in ["bars", "bars_daily", "daily_returns", "daily_vwap"] {
        assert!(got.contains(name), "{got}");
    }
}
