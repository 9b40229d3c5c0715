//! Pruning is real: a selective query opens only the files it needs, and the catalog never lists.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use object_store::memory::InMemory;
use tickvault::Store;

use crate::common::*;

#[tokio::test]
async fn selective_query_opens_one_file() {
    let test_store = TestStore::new(Arc::new(InMemory::new()));
    let store = Store::open_with(Arc::<TestStore>::clone(&test_store), "test")
        .await
        .unwrap();
    // 4 symbols x 3 years of daily bars = 12 files.
    let mut rows = Vec::new();
    for sym in ["AAA", "BBB", "CCC", "DDD"] {
        for d in 0..1080 {
            // 2021-01-04 .. 2023-12-19
            rows.push(row(sym, "1d", T2021 + d * DAY, 100.0 + d as f64));
        }
    }
    store.write(&bars(&rows)).await.unwrap();
    assert_eq!(store.catalog().snapshot().file_count(), 12);
    test_store.take_data_reads();
    let lists_before = test_store.lists.load(Ordering::SeqCst);

    let one_day = T2021 + 400 * DAY; // in 2022
    let batches = store
        .query(&format!(
            "SELECT close FROM bars WHERE symbol = 'BBB' AND ts = arrow_cast({one_day}, 'Timestamp(Microsecond, Some(\"UTC\"))')"
        ))
        .await
        .unwrap();
    let closes = crate::common::f64_values(&batches, 0);
    assert_eq!(closes, vec![500.0]);
    let cold = test_store.read_requests();
    let reads = test_store.take_data_reads();
    assert_eq!(reads.len(), 1, "{reads:?}");
    assert!(reads[0].contains("symbol=BBB/year=2022/"), "{reads:?}");
    // Footers are cached: the same query again reads only data, with fewer requests.
    let one_day_sql = format!(
        "SELECT close FROM bars WHERE symbol = 'BBB' AND ts = arrow_cast({one_day}, 'Timestamp(Microsecond, Some(\"UTC\"))')"
    );
    store.query(&one_day_sql).await.unwrap();
    let warm = test_store.read_requests();
    test_store.take_data_reads();
    assert!(warm < cold, "warm {warm} requests, cold {cold}");
    let stats = store.engine().scan_stats();
    assert_eq!(stats.files_scanned, 2);
    assert_eq!(stats.files_pruned, 22);
    assert_eq!(stats.unpruned_scans, 0);

    // A time range over two symbols: two symbols x the one year it touches.
    store
        .query(
            "SELECT count(*) FROM bars WHERE symbol IN ('AAA', 'DDD') \
             AND ts >= '2023-02-01T00:00:00Z' AND ts < '2023-03-01T00:00:00Z'",
        )
        .await
        .unwrap();
    let reads = test_store.take_data_reads();
    assert_eq!(reads.len(), 2, "{reads:?}");
    assert!(reads.iter().all(|r| r.contains("year=2023")), "{reads:?}");

    // No listing on the query path.
    assert_eq!(test_store.lists.load(Ordering::SeqCst), lists_before);
}

#[tokio::test]
async fn value_filters_cannot_prune_files_but_stay_correct() {
    let store = Store::open("memory://").await.unwrap();
    store
        .write(&bars(&[
            row("A", "1d", T2021, 1.0),
            row("B", "1d", T2021, 2.0),
        ]))
        .await
        .unwrap();
    // A filter on a value column cannot prune files, but the answer is still right.
    let batches = store
        .query("SELECT symbol FROM bars WHERE close * 2 = 4")
        .await
        .unwrap();
    let n: usize = batches.iter().map(|b| b.num_rows()).sum();
    assert_eq!(n, 1);
    assert_eq!(store.engine().scan_stats().files_scanned, 2);
}

/// The text of a query's physical plan.
async fn physical_plan(store: &Store, sql: &str) -> String {
    let batches = store.query(&format!("EXPLAIN {sql}")).await.unwrap();
    let plans = batches[0]
        .column(1)
        .as_any()
        .downcast_ref::<arrow::array::StringArray>()
        .unwrap();
    plans.value(arrow::array::Array::len(plans) - 1).to_string()
}

#[tokio::test]
async fn first_and_last_bar_per_symbol_come_from_the_catalog() {
    let test_store = TestStore::new(Arc::new(InMemory::new()));
    let store = Store::open_with(Arc::<TestStore>::clone(&test_store), "test")
        .await
        .unwrap();
    let mut rows = Vec::new();
    for (k, sym) in ["AAA", "BBB", "CCC"].iter().enumerate() {
        for d in 0..(500 + 100 * k as i64) {
            rows.push(row(sym, "1d", T2021 + d * DAY, 1.0 + d as f64));
        }
    }
    store.write(&bars(&rows)).await.unwrap();
    test_store.take_data_reads();

    let sql = "SELECT symbol, arrow_cast(min(ts), 'Int64') AS first, \
               arrow_cast(max(ts), 'Int64') AS last FROM bars GROUP BY symbol ORDER BY symbol";
    let plan = physical_plan(&store, sql).await;
    assert!(!plan.contains(".parquet"), "{plan}");
    let batches = store.query(sql).await.unwrap();
    assert_eq!(test_store.take_data_reads(), Vec::<String>::new());
    let last = batches[0]
        .column(2)
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .unwrap();
    let expected: Vec<i64> = (0..3).map(|k| T2021 + (499 + 100 * k) * DAY).collect();
    assert_eq!(last.values().to_vec(), expected);

    // Filtered by time, the files' ranges do not answer it: the data is read.
    let sql = "SELECT arrow_cast(max(ts), 'Int64') FROM bars WHERE symbol = 'CCC' \
               AND ts < '2022-01-01T00:00:00Z'";
    let batches = store.query(sql).await.unwrap();
    assert!(!test_store.take_data_reads().is_empty());
    let last = batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::Int64Array>()
        .unwrap();
    assert_eq!(last.value(0), 1_640_908_800_000_000); // 2021-12-31
}

#[tokio::test]
async fn grouping_by_symbol_aggregates_each_series_without_a_hash_table() {
    let store = Store::open("memory://").await.unwrap();
    let mut rows = Vec::new();
    for sym in ["AAA", "BBB"] {
        for d in 0..400 {
            rows.push(row(
                sym,
                "1d",
                T2021 + d * DAY,
                if sym == "AAA" { 2.0 } else { 4.0 },
            ));
        }
    }
    store.write(&bars(&rows)).await.unwrap();
    let sql = "SELECT symbol, avg(close) AS c FROM bars GROUP BY symbol ORDER BY symbol";
    let plan = physical_plan(&store, sql).await;
    assert!(plan.contains("SeriesPartialAggregateExec"), "{plan}");
    let batches = store.query(sql).await.unwrap();
    assert_eq!(f64_values(&batches, 1), vec![2.0, 4.0]);
    // Grouped by a value column, the ordinary aggregate runs.
    let plan = physical_plan(&store, "SELECT close, count(*) FROM bars GROUP BY close").await;
    assert!(!plan.contains("SeriesPartialAggregateExec"), "{plan}");
}

/// Rows of `SELECT * FROM bars` read through `execute_bounded` with `width`: (symbol, ts) in
/// arrival order.
async fn arrival_order(store: &Store, width: usize) -> Vec<(String, i64)> {
    use arrow::array::AsArray;
    use futures::StreamExt;
    let query = store
        .sql("SELECT symbol, arrow_cast(ts, 'Int64') FROM bars")
        .await
        .unwrap();
    let context = Arc::new(query.task_ctx());
    let plan = query.create_physical_plan().await.unwrap();
    let mut stream = tickvault::query::execute_bounded(plan, context, width).unwrap();
    let mut rows = Vec::new();
    while let Some(batch) = stream.next().await {
        let batch = batch.unwrap();
        let symbols = batch.column(0).as_string::<i32>();
        let ts = batch
            .column(1)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap();
        for i in 0..batch.num_rows() {
            rows.push((symbols.value(i).to_string(), ts.value(i)));
        }
    }
    rows
}

/// The most series whose first and last rows enclose one position of the stream.
fn most_series_open_at_once(rows: &[(String, i64)]) -> usize {
    let mut span: std::collections::BTreeMap<&str, (usize, usize)> = Default::default();
    for (i, (symbol, _)) in rows.iter().enumerate() {
        span.entry(symbol).and_modify(|s| s.1 = i).or_insert((i, i));
    }
    (0..rows.len())
        .map(|i| span.values().filter(|(a, b)| *a <= i && i <= *b).count())
        .max()
        .unwrap_or(0)
}

#[tokio::test]
async fn streaming_every_series_reads_a_bounded_number_at_once() {
    let store = Store::open("memory://").await.unwrap();
    let symbols = ["A", "B", "C", "D", "E", "F", "G"];
    let mut rows = Vec::new();
    for sym in symbols {
        for d in 0..800 {
            rows.push(row(sym, "1d", T2021 + d * DAY, 1.0));
        }
    }
    store.write(&bars(&rows)).await.unwrap();
    let mut expected: Vec<(String, i64)> = rows.iter().map(|r| (r.0.clone(), r.2)).collect();
    expected.sort();
    for width in [1, 2, 3] {
        let mut got = arrival_order(&store, width).await;
        assert!(most_series_open_at_once(&got) <= width, "width {width}");
        got.sort();
        assert_eq!(got, expected, "width {width}");
    }
    // Without a bound every series is read at once.
    let everything = arrival_order(&store, 100).await;
    assert_eq!(everything.len(), expected.len());
}

/// A read of one series over a time range skips the planner and returns exactly the rows asked
/// for, also across a page boundary and a row group (month) boundary of a two-month file.
#[tokio::test]
async fn range_reads_cross_pages_and_row_groups() {
    use futures::TryStreamExt;
    let store = Store::open_with(Arc::new(InMemory::new()), "test")
        .await
        .unwrap();
    let start = 1_640_995_200_000_000; // 2022-01-01T00:00:00Z
    let minutes = 60 * 24 * 59; // January and February
    let rows: Vec<Row> = (0..minutes)
        .map(|i| row("PG", "1m", start + i * MINUTE, i as f64))
        .collect();
    store.write(&bars(&rows)).await.unwrap();
    let at = |minute: i64| {
        chrono::DateTime::from_timestamp_micros(start + minute * MINUTE)
            .unwrap()
            .to_rfc3339()
    };
    let february = 31 * 24 * 60;
    for (from, to) in [
        (1000, 1060),
        (20_000, 21_000),
        (february - 30, february + 30),
    ] {
        let sql = format!(
            "SELECT ts, close FROM bars WHERE symbol = 'PG' AND timeframe = '1m' \
             AND ts >= '{}' AND ts < '{}' ORDER BY ts",
            at(from),
            at(to)
        );
        let expected: Vec<f64> = (from..to).map(|i| i as f64).collect();
        let stream = store.engine().range_read(&sql).expect("a range read");
        let batches: Vec<_> = stream.try_collect().await.unwrap();
        assert_eq!(f64_values(&batches, 1), expected, "{sql}");
        let planned = store.query(&sql).await.unwrap();
        assert_eq!(f64_values(&planned, 1), expected, "{sql}");
    }
}
