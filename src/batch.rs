//! Columnar batches of bars for one series (symbol + interval), and the pure operations the
//! write path needs on them: build, validate, sort with last-write-wins dedupe, split by year.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Float64Array, Int64Array, RecordBatch, TimestampMicrosecondArray, UInt32Array,
};
use arrow::compute::{concat_batches, take_record_batch};

use crate::model::{FILE_SCHEMA, Interval, Rule, Symbol, check_bar, year_of};

/// One series: the bars of a symbol at an interval.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SeriesKey {
    pub symbol: Symbol,
    pub interval: Interval,
}

/// Bars of one series in the file schema ([`FILE_SCHEMA`]), in any order.
#[derive(Debug, Clone)]
pub struct SeriesBatch {
    pub key: SeriesKey,
    pub batch: RecordBatch,
}

/// Builds a file-schema batch row by row (import, ingest).
#[derive(Debug, Default)]
pub struct BarBuilder {
    ts: Vec<i64>,
    open: Vec<f64>,
    high: Vec<f64>,
    low: Vec<f64>,
    close: Vec<f64>,
    volume: Vec<f64>,
    vwap: Vec<Option<f64>>,
    trades: Vec<Option<i64>>,
}

impl BarBuilder {
    pub fn with_capacity(n: usize) -> Self {
        Self {
            ts: Vec::with_capacity(n),
            open: Vec::with_capacity(n),
            high: Vec::with_capacity(n),
            low: Vec::with_capacity(n),
            close: Vec::with_capacity(n),
            volume: Vec::with_capacity(n),
            vwap: Vec::with_capacity(n),
            trades: Vec::with_capacity(n),
        }
    }

    /// Appends a bar after checking it against the rules for `interval`.
    #[allow(clippy::too_many_arguments)]
    pub fn push_checked(
        &mut self,
        interval: Interval,
        ts: i64,
        open: f64,
        high: f64,
        low: f64,
        close: f64,
        volume: f64,
        vwap: Option<f64>,
        trades: Option<i64>,
    ) -> Result<(), Rule> {
        check_bar(interval, ts, open, high, low, close, volume, vwap, trades)?;
        self.ts.push(ts);
        self.open.push(open);
        self.high.push(high);
        self.low.push(low);
        self.close.push(close);
        self.volume.push(volume);
        self.vwap.push(vwap);
        self.trades.push(trades);
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.ts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ts.is_empty()
    }

    pub fn finish(self) -> RecordBatch {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(TimestampMicrosecondArray::from(self.ts).with_timezone("UTC")),
            Arc::new(Float64Array::from(self.open)),
            Arc::new(Float64Array::from(self.high)),
            Arc::new(Float64Array::from(self.low)),
            Arc::new(Float64Array::from(self.close)),
            Arc::new(Float64Array::from(self.volume)),
            Arc::new(Float64Array::from(self.vwap)),
            Arc::new(Int64Array::from(self.trades)),
        ];
        RecordBatch::try_new(FILE_SCHEMA.clone(), columns).expect("columns match FILE_SCHEMA")
    }
}

/// The ts column of a file-schema batch.
pub fn ts_column(batch: &RecordBatch) -> &TimestampMicrosecondArray {
    batch
        .column(0)
        .as_any()
        .downcast_ref::<TimestampMicrosecondArray>()
        .expect("column 0 of a file-schema batch is ts")
}

fn f64_column(batch: &RecordBatch, i: usize) -> &Float64Array {
    batch
        .column(i)
        .as_any()
        .downcast_ref::<Float64Array>()
        .expect("float column")
}

/// Checks every row of a file-schema batch; returns the first bad row's index and rule.
pub fn check_batch(interval: Interval, batch: &RecordBatch) -> Result<(), (usize, Rule)> {
    let ts = ts_column(batch);
    let (open, high, low, close, volume, vwap) = (
        f64_column(batch, 1),
        f64_column(batch, 2),
        f64_column(batch, 3),
        f64_column(batch, 4),
        f64_column(batch, 5),
        f64_column(batch, 6),
    );
    let trades = batch
        .column(7)
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("trades column");
    for row in 0..batch.num_rows() {
        let opt_f = |a: &Float64Array| (!a.is_null(row)).then(|| a.value(row));
        let vwap = opt_f(vwap);
        let trades = (!trades.is_null(row)).then(|| trades.value(row));
        if [ts.is_null(row), open.is_null(row), high.is_null(row)]
            .into_iter()
            .chain([low.is_null(row), close.is_null(row), volume.is_null(row)])
            .any(|n| n)
        {
            return Err((row, Rule::NotFinite("a required column (null)")));
        }
        check_bar(
            interval,
            ts.value(row),
            open.value(row),
            high.value(row),
            low.value(row),
            close.value(row),
            volume.value(row),
            vwap,
            trades,
        )
        .map_err(|rule| (row, rule))?;
    }
    Ok(())
}

/// Concatenates batches in order and returns them sorted by ts with one row per ts: where a ts
/// appears more than once, the row that came last wins (upsert, last write wins).
pub fn sort_dedup(batches: &[RecordBatch]) -> RecordBatch {
    // One batch needs no copy (the live tier calls this for every write).
    let all = match batches {
        [one] => one.clone(),
        _ => concat_batches(&FILE_SCHEMA, batches).expect("batches share FILE_SCHEMA"),
    };
    let ts = ts_column(&all).values();
    let n = ts.len();
    if ts.windows(2).all(|w| w[0] < w[1]) {
        return all; // already strictly increasing: the common case for imports and appends
    }
    let mut order: Vec<u32> = (0..n as u32).collect();
    // Stable: equal timestamps keep input order, so the last of a run is the newest write.
    order.sort_by_key(|&i| ts[i as usize]);
    let mut keep: Vec<u32> = Vec::with_capacity(n);
    for (pos, &i) in order.iter().enumerate() {
        let is_last_of_run = order
            .get(pos + 1)
            .is_none_or(|&next| ts[next as usize] != ts[i as usize]);
        if is_last_of_run {
            keep.push(i);
        }
    }
    take_record_batch(&all, &UInt32Array::from(keep)).expect("indices in range")
}

/// Splits a sorted batch into (year, slice) runs; the partition a row belongs to is its UTC year.
pub fn split_by_year(sorted: &RecordBatch) -> Vec<(i32, RecordBatch)> {
    let ts = ts_column(sorted).values();
    let mut out = Vec::new();
    let mut start = 0;
    while start < ts.len() {
        let year = year_of(ts[start]);
        let end = start + ts[start..].partition_point(|&t| year_of(t) == year);
        out.push((year, sorted.slice(start, end - start)));
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(rows: &[(i64, f64)]) -> RecordBatch {
        let mut b = BarBuilder::default();
        for &(ts, close) in rows {
            b.push_checked(
                Interval::M1,
                ts * 60_000_000,
                close,
                close,
                close,
                close,
                1.0,
                None,
                None,
            )
            .unwrap();
        }
        b.finish()
    }

    fn pairs(b: &RecordBatch) -> Vec<(i64, f64)> {
        let ts = ts_column(b);
        let close = f64_column(b, 4);
        (0..b.num_rows())
            .map(|i| (ts.value(i) / 60_000_000, close.value(i)))
            .collect()
    }

    #[test]
    fn last_write_wins() {
        let out = sort_dedup(&[batch(&[(3, 1.0), (1, 1.0), (3, 2.0)]), batch(&[(1, 5.0)])]);
        assert_eq!(pairs(&out), vec![(1, 5.0), (3, 2.0)]);
    }

    #[test]
    fn splits_years() {
        // 2020-12-31T23:59Z and 2021-01-01T00:00Z
        let t = 1_609_459_200 / 60;
        let out = split_by_year(&batch(&[(t - 1, 1.0), (t, 1.0), (t + 1, 1.0)]));
        let years: Vec<_> = out.iter().map(|(y, b)| (*y, b.num_rows())).collect();
        assert_eq!(years, vec![(2020, 1), (2021, 2)]);
    }
}
