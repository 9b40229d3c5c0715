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
        // Refused as what they are, not reported as unsupported SQL.
        "ALTER TABLE bars ADD COLUMN x INT",
        "USE other",
        "SELECT * INTO t FROM bars",
        "WITH s AS (SELECT 1) INSERT INTO bars SELECT * FROM bars",
        "EXPLAIN ANALYZE COPY (SELECT 1) TO '/tmp/x.csv'",
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

/// The read-only guard looks at the parsed statement, never at the words of an error: a query
/// whose failure quotes "DML not supported" is a query that failed, and queries that only read
/// (EXPLAIN ANALYZE runs one) pass.
#[tokio::test]
async fn the_read_only_guard_judges_the_statement_not_the_message() {
    let store = Store::open("memory://").await.unwrap();
    store
        .write(&bars(&[row("A", "1d", T2021, 1.0)]))
        .await
        .unwrap();
    for sql in [
        // DataFusion refuses two columns of one name, quoting them: "… Utf8(\"DML not
        // supported\") …" was taken for the guard's own refusal.
        "SELECT 'DML not supported', 'DML not supported'",
        "SELECT * FROM \"DML not supported\"",
        "SELECT * FROM bars WHERE \"DDL not supported\" = 1",
    ] {
        let err = store.query(sql).await.unwrap_err();
        assert!(
            matches!(
                err,
                tickvault::Error::Query(tickvault::query::Error::DataFusion(_))
            ),
            "{sql}: {err}"
        );
        assert!(err.to_string().contains("not supported"), "{sql}: {err}");
    }
    assert!(
        text(&store, "SELECT 'DDL not supported: INSERT INTO bars' AS m")
            .await
            .contains("DDL not supported: INSERT INTO bars")
    );
    assert!(
        text(&store, "EXPLAIN ANALYZE SELECT count(*) FROM bars")
            .await
            .contains("output_rows")
    );
    // More than one statement is refused whole, and nothing of it runs.
    let err = store
        .query("SELECT 1; INSERT INTO bars SELECT * FROM bars")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("single SQL statement"), "{err}");
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
        "SELECT symbol, source_timeframe, day, open, high, low, close, volume, bars \
         FROM bars_daily ORDER BY day",
    )
    .await;
    let want = "\
+--------+------------------+----------------------+------+------+------+-------+--------+------+
| symbol | source_timeframe | day                  | open | high | low  | close | volume | bars |
+--------+------------------+----------------------+------+------+------+-------+--------+------+
| X      | 1m               | 2021-01-04T00:00:00Z | 10.0 | 13.0 | 9.0  | 11.0  | 30.0   | 3    |
| X      | 1m               | 2021-01-05T00:00:00Z | 20.0 | 21.0 | 19.0 | 20.0  | 10.0   | 1    |
+--------+------------------+----------------------+------+------+------+-------+--------+------+";
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

/// `ORDER BY ts LIMIT n` over several series of one symbol: DataFusion merges the series'
/// partitions, each of which must read its own files in time order. With DataFusion 55's file
/// work stealing, a partition that finished early took another's next file and the merge
/// returned rows out of order (the store property test found it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_by_ts_with_a_limit_across_series_is_ordered() {
    let store = Store::open("memory://").await.unwrap();
    let mut rows = Vec::new();
    // One short series and one spanning five years (five files), so one partition finishes
    // long before the other.
    rows.push(row("S", "1d", T2021 + DAY, 1.0));
    for d in 0..5 * 365 {
        rows.push(row("S", "1m", T2021 - 1000 * DAY + d * DAY + MINUTE, 2.0));
    }
    store.write(&bars(&rows)).await.unwrap();
    for _ in 0..20 {
        let batches = store
            .query("SELECT ts FROM bars WHERE symbol = 'S' ORDER BY ts LIMIT 1500")
            .await
            .unwrap();
        let ts: Vec<i64> = batches
            .iter()
            .flat_map(|b| {
                b.column(0)
                    .as_any()
                    .downcast_ref::<arrow::array::TimestampMicrosecondArray>()
                    .unwrap()
                    .values()
                    .to_vec()
            })
            .collect();
        assert_eq!(ts.len(), 1500);
        assert!(ts.is_sorted(), "rows out of order");
    }
}
