//! Shared test helpers: bar builders, and an object store wrapper that records reads and can be
//! told to fail writes.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::{Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use async_trait::async_trait;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use tickvault::model::BARS_SCHEMA;

/// xorshift64*: a seeded generator with no dependency, so a failing case replays from its seed.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed | 1) // an all-zero state would stay zero
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n`.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// An index into something `len` long.
    pub(crate) fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }
}

pub(crate) const DAY: i64 = 86_400_000_000;
pub(crate) const MINUTE: i64 = 60_000_000;
/// 2021-01-04T00:00:00Z, a Monday.
pub(crate) const T2021: i64 = 1_609_718_400_000_000;

/// One bar as tests describe it: (symbol, interval, ts µs, close); OHLC derived from close.
pub(crate) type Row = (String, String, i64, f64);

/// A `bars`-schema batch with open = close, high = close + 1, low = close - 1, volume = 10.
pub(crate) fn bars(rows: &[Row]) -> RecordBatch {
    let close: Vec<f64> = rows.iter().map(|r| r.3).collect();
    RecordBatch::try_new(
        BARS_SCHEMA.clone(),
        vec![
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.0.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.1.as_str()),
            )),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.2))
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
            Arc::new(Float64Array::from(vec![10.0; rows.len()])),
            Arc::new(Float64Array::from(vec![None; rows.len()])),
            Arc::new(arrow::array::Int64Array::from(vec![None; rows.len()])),
        ],
    )
    .unwrap()
}

/// The rows of ONE series (all with the first row's symbol and interval) as a `SeriesBatch`.
pub(crate) fn series(rows: &[Row]) -> tickvault::batch::SeriesBatch {
    assert!(
        rows.iter()
            .all(|r| (&r.0, &r.1) == (&rows[0].0, &rows[0].1)),
        "one series"
    );
    let b = bars(rows);
    tickvault::batch::SeriesBatch {
        key: tickvault::batch::SeriesKey {
            symbol: tickvault::model::Symbol::new(&rows[0].0).unwrap(),
            interval: rows[0].1.parse().unwrap(),
        },
        // Drop symbol and interval: a series batch is in the file schema.
        batch: b
            .project(&(2..b.num_columns()).collect::<Vec<_>>())
            .unwrap(),
    }
}

pub(crate) fn row(symbol: &str, interval: &str, ts: i64, close: f64) -> Row {
    (symbol.to_string(), interval.to_string(), ts, close)
}

/// The values of a Float64 column across batches, in order.
pub(crate) fn f64_values(batches: &[RecordBatch], column: usize) -> Vec<f64> {
    batches
        .iter()
        .flat_map(|b| {
            b.column(column)
                .as_any()
                .downcast_ref::<Float64Array>()
                .unwrap()
                .values()
                .to_vec()
        })
        .collect()
}

/// (symbol, interval, ts) -> close, read back through SQL in key order.
pub(crate) async fn contents(store: &tickvault::Store) -> BTreeMap<(String, String, i64), f64> {
    let batches = store
        .query("SELECT symbol, timeframe, arrow_cast(ts, 'Int64') AS t, close FROM bars ORDER BY symbol, timeframe, ts")
        .await
        .unwrap();
    let mut out = BTreeMap::new();
    let mut last_key = None;
    for b in batches {
        let sym = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        let int = b.column(1).as_any().downcast_ref::<StringArray>().unwrap();
        let ts = b
            .column(2)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap();
        let close = b.column(3).as_any().downcast_ref::<Float64Array>().unwrap();
        for i in 0..b.num_rows() {
            let key = (
                sym.value(i).to_string(),
                int.value(i).to_string(),
                ts.value(i),
            );
            assert!(
                last_key.as_ref() < Some(&key),
                "rows out of order or duplicated at {key:?}"
            );
            last_key = Some(key.clone());
            out.insert(key, close.value(i));
        }
    }
    out
}

/// Wraps a store: records the paths of data reads, and fails puts under `bars/` or of commits
/// when told to.
#[derive(Debug)]
pub(crate) struct TestStore {
    inner: Arc<dyn ObjectStore>,
    pub reads: Mutex<Vec<String>>,
    pub fail_commits: AtomicBool,
    pub fail_data_puts: AtomicBool,
    pub lists: AtomicUsize,
}

impl TestStore {
    pub(crate) fn new(inner: Arc<dyn ObjectStore>) -> Arc<Self> {
        Arc::new(Self {
            inner,
            reads: Mutex::new(Vec::new()),
            fail_commits: AtomicBool::new(false),
            fail_data_puts: AtomicBool::new(false),
            lists: AtomicUsize::new(0),
        })
    }

    /// Distinct Parquet files read since the last call.
    pub(crate) fn take_data_reads(&self) -> Vec<String> {
        let mut reads: Vec<String> = std::mem::take(&mut *self.reads.lock().unwrap())
            .into_iter()
            .filter(|p| p.ends_with(".parquet"))
            .collect();
        reads.sort();
        reads.dedup();
        reads
    }

    /// Read requests (GETs, ranged or not) to Parquet files since the last take.
    pub(crate) fn read_requests(&self) -> usize {
        self.reads
            .lock()
            .unwrap()
            .iter()
            .filter(|p| p.ends_with(".parquet"))
            .count()
    }

    fn injected(what: &str) -> object_store::Error {
        object_store::Error::Generic {
            store: "test",
            source: format!("injected failure: {what}").into(),
        }
    }
}

impl fmt::Display for TestStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TestStore({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for TestStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        let p = location.as_ref();
        let log = p.starts_with("bars/_delta_log/");
        if log && self.fail_commits.load(Ordering::SeqCst) {
            return Err(Self::injected("commit"));
        }
        if p.starts_with("bars/") && !log && self.fail_data_puts.load(Ordering::SeqCst) {
            return Err(Self::injected("data file"));
        }
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.reads.lock().unwrap().push(location.to_string());
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[std::ops::Range<u64>],
    ) -> object_store::Result<Vec<bytes::Bytes>> {
        self.reads.lock().unwrap().push(location.to_string());
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.lists.fetch_add(1, Ordering::SeqCst);
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.lists.fetch_add(1, Ordering::SeqCst);
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

/// Per series: (first ts, last ts) over every row, and (rows, sum of close, last ts) over rows
/// with close > 50 (series without such rows are absent).
pub(crate) type SeriesSummary = BTreeMap<(String, String), ((i64, i64), Option<(i64, f64, i64)>)>;

/// The per-series aggregates through SQL. The first query is answered from the catalog's
/// time ranges, the second by per-series partial aggregation (with partitions the filter
/// empties), so both plan rewrites are checked against a model.
pub(crate) async fn series_summary(store: &tickvault::Store) -> SeriesSummary {
    use arrow::array::{AsArray, Int64Array};
    let mut out = SeriesSummary::new();
    let extremes = store
        .query(
            "SELECT symbol, timeframe, arrow_cast(min(ts), 'Int64'), arrow_cast(max(ts), 'Int64') \
             FROM bars GROUP BY symbol, timeframe",
        )
        .await
        .unwrap();
    for b in &extremes {
        let (sym, int) = (
            b.column(0).as_string::<i32>(),
            b.column(1).as_string::<i32>(),
        );
        let min = b.column(2).as_any().downcast_ref::<Int64Array>().unwrap();
        let max = b.column(3).as_any().downcast_ref::<Int64Array>().unwrap();
        for i in 0..b.num_rows() {
            let key = (sym.value(i).to_string(), int.value(i).to_string());
            let previous = out.insert(key, ((min.value(i), max.value(i)), None));
            assert!(previous.is_none(), "two rows for one series");
        }
    }
    let filtered = store
        .query(
            "SELECT symbol, timeframe, count(*), sum(close), arrow_cast(max(ts), 'Int64') \
             FROM bars WHERE close > 50 GROUP BY symbol, timeframe",
        )
        .await
        .unwrap();
    for b in &filtered {
        let (sym, int) = (
            b.column(0).as_string::<i32>(),
            b.column(1).as_string::<i32>(),
        );
        let count = b.column(2).as_any().downcast_ref::<Int64Array>().unwrap();
        let sum = b.column(3).as_any().downcast_ref::<Float64Array>().unwrap();
        let max = b.column(4).as_any().downcast_ref::<Int64Array>().unwrap();
        for i in 0..b.num_rows() {
            let key = (sym.value(i).to_string(), int.value(i).to_string());
            let entry = out.get_mut(&key).expect("a filtered series is a series");
            assert!(entry.1.is_none(), "two rows for one series");
            entry.1 = Some((count.value(i), sum.value(i), max.value(i)));
        }
    }
    out
}

/// What [`series_summary`] must return for a model of the store.
pub(crate) fn model_summary(model: &BTreeMap<(String, String, i64), f64>) -> SeriesSummary {
    let mut out = SeriesSummary::new();
    for ((symbol, interval, ts), close) in model {
        let entry = out
            .entry((symbol.clone(), interval.clone()))
            .or_insert(((*ts, *ts), None));
        entry.0 = (entry.0.0.min(*ts), entry.0.1.max(*ts));
        if *close > 50.0 {
            let (n, sum, last) = entry.1.get_or_insert((0, 0.0, *ts));
            *n += 1;
            *sum += close;
            *last = (*last).max(*ts);
        }
    }
    out
}

/// Reads of one series over a time range, the queries the engine answers without its planner
/// (`QueryEngine::range_read`): for every series of the model and one that is absent, and for
/// every symbol without an interval, over several ranges, with and without a limit, the short
/// path's rows and DataFusion's equal the model. Returns how many queries took the short path and how many were asked.
pub(crate) async fn check_range_reads(
    store: &tickvault::Store,
    model: &BTreeMap<(String, String, i64), f64>,
) -> (usize, usize) {
    use futures::TryStreamExt;
    let rfc3339 = |ts: i64| {
        chrono::DateTime::from_timestamp_micros(ts)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
    };
    let mut series: Vec<(String, String)> =
        model.keys().map(|k| (k.0.clone(), k.1.clone())).collect();
    series.dedup();
    series.push(("ABSENT".into(), "1d".into()));
    let edge = T2021 - DAY;
    type Keep = Box<dyn Fn(i64) -> bool>;
    let ranges: Vec<(String, Keep)> = vec![
        (String::new(), Box::new(|_| true)),
        (
            format!(" AND ts >= '{}'", rfc3339(edge)),
            Box::new(move |t| t >= edge),
        ),
        (
            format!(" AND ts < '{}'", rfc3339(edge)),
            Box::new(move |t| t < edge),
        ),
        // A date alone means its midnight UTC, to both paths.
        (
            format!(" AND '{}' <= ts", &rfc3339(edge)[..10]),
            Box::new(move |t| t >= edge),
        ),
        (
            format!(
                " AND ts BETWEEN '{}' AND '{}'",
                rfc3339(edge - 4 * DAY),
                rfc3339(edge)
            ),
            Box::new(move |t| (edge - 4 * DAY..=edge).contains(&t)),
        ),
    ];
    let rows = |batches: &[RecordBatch]| -> Vec<(i64, f64)> {
        let ts = batches.iter().flat_map(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .unwrap()
                .values()
                .to_vec()
        });
        ts.zip(f64_values(batches, 1)).collect()
    };
    let (mut short, mut asked) = (0, 0);
    // Each series, then each symbol without an interval (every interval it has, by ts).
    let mut symbols: Vec<String> = series.iter().map(|s| s.0.clone()).collect();
    symbols.dedup();
    let reads = series
        .iter()
        .map(|(s, i)| (s.clone(), Some(i.clone())))
        .chain(symbols.into_iter().map(|s| (s, None)));
    for (symbol, interval) in reads {
        for (condition, keep) in &ranges {
            for limit in [None, Some(2)] {
                let interval_filter = interval
                    .as_ref()
                    .map(|i| format!(" AND timeframe = '{i}'"))
                    .unwrap_or_default();
                let sql = format!(
                    "SELECT ts, close FROM bars WHERE symbol = '{symbol}'{interval_filter}\
                     {condition} ORDER BY ts{}",
                    limit.map(|n| format!(" LIMIT {n}")).unwrap_or_default()
                );
                let mut expected: Vec<(i64, f64)> = model
                    .iter()
                    .filter(|(k, _)| {
                        k.0 == symbol && interval.as_ref().is_none_or(|i| &k.1 == i) && keep(k.2)
                    })
                    .map(|(k, close)| (k.2, *close))
                    .collect();
                expected.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
                expected.truncate(limit.unwrap_or(usize::MAX));
                // Across intervals two rows may share a ts, and ORDER BY ts leaves their order
                // (and which of them a limit keeps) open: compare what is determined.
                let comparable = |mut rows: Vec<(i64, f64)>| -> Vec<(i64, f64)> {
                    if interval.is_none() {
                        assert!(
                            rows.is_sorted_by_key(|r| r.0),
                            "{sql}: not ordered by ts: {rows:?}"
                        );
                        if limit.is_some() {
                            rows.iter_mut().for_each(|r| r.1 = 0.0);
                        }
                        rows.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
                    }
                    rows
                };
                let expected = comparable(expected);
                asked += 1;
                if let Some(stream) = store.engine().range_read(&sql) {
                    short += 1;
                    let batches: Vec<RecordBatch> = stream.try_collect().await.unwrap();
                    assert_eq!(comparable(rows(&batches)), expected, "short path: {sql}");
                }
                let planned = store.query(&sql).await.unwrap();
                assert_eq!(comparable(rows(&planned)), expected, "DataFusion: {sql}");
            }
        }
    }
    (short, asked)
}

/// The backtest loader over every symbol of the model (and one absent), for both intervals and
/// a range across the year boundary: rows in (ts, symbol) order equal to the model, whole and
/// with a projection that leaves out ts. Returns how many loads were answered by merging range
/// reads (`QueryEngine::load_series`) and how many were asked.
pub(crate) async fn check_loads(
    store: &tickvault::Store,
    model: &BTreeMap<(String, String, i64), f64>,
) -> (usize, usize) {
    use arrow::array::AsArray;
    use futures::TryStreamExt;
    let mut symbols: Vec<String> = model.keys().map(|k| k.0.clone()).collect();
    symbols.push("ABSENT".into());
    // Unsorted and with a duplicate: the loader sorts and dedups.
    symbols.reverse();
    let (lo, hi) = (T2021 - 5 * DAY, T2021);
    let (mut merged, mut asked) = (0, 0);
    for interval in ["1m", "1d"] {
        let mut expected: Vec<(i64, String, f64)> = model
            .iter()
            .filter(|(k, _)| k.1 == interval && (lo..hi).contains(&k.2))
            .map(|(k, close)| (k.2, k.0.clone(), *close))
            .collect();
        expected.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        for columns in [None, Some(vec!["close".to_string(), "symbol".to_string()])] {
            let req = tickvault::LoadRequest {
                symbols: symbols.clone(),
                interval: interval.parse().unwrap(),
                start: Some(lo),
                end: Some(hi),
                columns: columns.clone(),
                adjustment: tickvault::adjust::Adjustment::NONE,
            };
            let rows = |batches: &[RecordBatch]| -> Vec<(Option<i64>, String, f64)> {
                let mut out = Vec::new();
                for b in batches {
                    let symbol = b.column_by_name("symbol").unwrap().as_string::<i32>();
                    let close = b
                        .column_by_name("close")
                        .unwrap()
                        .as_primitive::<arrow::datatypes::Float64Type>();
                    let ts = b.column_by_name("ts").map(|c| {
                        c.as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
                            .clone()
                    });
                    for i in 0..b.num_rows() {
                        let t = ts.as_ref().map(|t| t.value(i));
                        out.push((t, symbol.value(i).to_string(), close.value(i)));
                    }
                }
                out
            };
            let want: Vec<(Option<i64>, String, f64)> = expected
                .iter()
                .map(|(t, s, c)| (columns.is_none().then_some(*t), s.clone(), *c))
                .collect();
            let indices: Vec<usize> = match &columns {
                None => (0..BARS_SCHEMA.fields().len()).collect(),
                Some(n) => n.iter().map(|c| BARS_SCHEMA.index_of(c).unwrap()).collect(),
            };
            asked += 1;
            if let Some(stream) =
                store
                    .engine()
                    .load_series(&symbols, req.interval, req.start, req.end, &indices)
            {
                merged += 1;
                let batches: Vec<RecordBatch> = stream.try_collect().await.unwrap();
                assert_eq!(rows(&batches), want, "merged load {interval} {columns:?}");
            }
            let batches = store.load_bars_collect(&req).await.unwrap();
            assert_eq!(rows(&batches), want, "load_bars {interval} {columns:?}");
            if let Some(first) = batches.first() {
                let schema = first.schema();
                let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                let expected_names: Vec<&str> = indices
                    .iter()
                    .map(|&i| BARS_SCHEMA.field(i).name().as_str())
                    .collect();
                assert_eq!(names, expected_names);
            }
        }
    }
    (merged, asked)
}
