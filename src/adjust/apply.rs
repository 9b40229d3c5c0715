//! Multiplying the price and volume columns of a batch of bars by their [`Factors`].

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, RecordBatch};
use arrow::datatypes::{Float64Type, Schema, TimestampMicrosecondType};
use arrow::error::ArrowError;

use super::factors::{Factors, Multiplier};
use crate::model::{COL_SYMBOL, COL_TIMEFRAME, COL_TS};

/// Columns an adjustment multiplies by the price factor.
pub const PRICE_COLUMNS: [&str; 5] = ["open", "high", "low", "close", "vwap"];
/// The column multiplied by the volume factor (split ratios only).
pub const VOLUME_COLUMN: &str = "volume";

/// Where the columns an adjustment reads and writes are in a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Columns {
    pub ts: usize,
    pub prices: Vec<usize>,
    pub volume: Option<usize>,
}

impl Columns {
    /// `None` when the schema has no `ts` (a batch without it cannot be adjusted).
    pub fn of(schema: &Schema) -> Option<Columns> {
        Some(Columns {
            ts: schema.index_of(COL_TS).ok()?,
            prices: PRICE_COLUMNS
                .iter()
                .filter_map(|c| schema.index_of(c).ok())
                .collect(),
            volume: schema.index_of(VOLUME_COLUMN).ok(),
        })
    }
}

/// Per row multipliers, 1 where no run covers a row.
struct RowMultipliers {
    price: Vec<f64>,
    volume: Vec<f64>,
}

impl RowMultipliers {
    fn ones(rows: usize) -> Self {
        Self {
            price: vec![1.0; rows],
            volume: vec![1.0; rows],
        }
    }

    fn set(&mut self, offset: usize, runs: Vec<(std::ops::Range<usize>, Multiplier)>) {
        for (range, m) in runs {
            let range = range.start + offset..range.end + offset;
            self.price[range.clone()].fill(m.price);
            self.volume[range].fill(m.volume);
        }
    }
}

/// What a column is multiplied by: one value for every row, or one per row.
#[derive(Clone, Copy)]
enum By<'a> {
    All(f64),
    Rows(&'a [f64]),
}

/// Multiplies a Float64 column, in place when nothing else holds its buffers (the loader's
/// freshly decoded batches), else into new ones; nulls stay where they were.
fn scale(column: ArrayRef, by: By<'_>) -> Result<ArrayRef, ArrowError> {
    let values = column
        .as_primitive_opt::<Float64Type>()
        .ok_or_else(|| ArrowError::InvalidArgumentError("price columns are Float64".into()))?
        .clone();
    drop(column);
    let scaled = match values.into_builder() {
        Ok(mut builder) => {
            let slice = builder.values_slice_mut();
            match by {
                By::All(m) => slice.iter_mut().for_each(|v| *v *= m),
                By::Rows(ms) => slice.iter_mut().zip(ms).for_each(|(v, m)| *v *= m),
            }
            builder.finish()
        }
        Err(shared) => match by {
            By::All(m) => shared.unary(|v| v * m),
            By::Rows(ms) => {
                let out: Vec<f64> = shared.values().iter().zip(ms).map(|(v, m)| v * m).collect();
                Float64Array::new(out.into(), shared.nulls().cloned())
            }
        },
    };
    Ok(Arc::new(scaled))
}

/// The batch with its price columns multiplied by `price` and its volume by `volume`.
fn rebuild(
    batch: RecordBatch,
    cols: &Columns,
    price: By<'_>,
    volume: By<'_>,
) -> Result<RecordBatch, ArrowError> {
    let (schema, columns, _) = batch.into_parts();
    let columns = columns
        .into_iter()
        .enumerate()
        .map(|(i, column)| {
            if cols.prices.contains(&i) {
                scale(column, price)
            } else if cols.volume == Some(i) {
                scale(column, volume)
            } else {
                Ok(column)
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema, columns)
}

fn apply_rows(
    batch: RecordBatch,
    cols: &Columns,
    m: &RowMultipliers,
) -> Result<RecordBatch, ArrowError> {
    rebuild(batch, cols, By::Rows(&m.price), By::Rows(&m.volume))
}

fn ts_values<'a>(batch: &'a RecordBatch, cols: &Columns) -> &'a [i64] {
    batch
        .column(cols.ts)
        .as_primitive::<TimestampMicrosecondType>()
        .values()
}

/// Adjusts a batch of one series (`invert` undoes the adjustment instead). The batch is taken
/// whole so that its columns can be multiplied in place when it holds the only reference.
pub fn adjust_series(
    batch: RecordBatch,
    cols: &Columns,
    factors: &Factors,
    invert: bool,
) -> Result<RecordBatch, ArrowError> {
    let runs = factors.runs(ts_values(&batch, cols));
    let flip = |m: Multiplier| if invert { m.inverse() } else { m };
    match runs.as_slice() {
        [] => Ok(batch),
        // The common case: the whole batch between two events.
        [(range, m)] if range.len() == batch.num_rows() => {
            let m = flip(*m);
            rebuild(batch, cols, By::All(m.price), By::All(m.volume))
        }
        _ => {
            let mut rows = RowMultipliers::ones(batch.num_rows());
            rows.set(0, runs.iter().map(|(r, m)| (r.clone(), flip(*m))).collect());
            apply_rows(batch, cols, &rows)
        }
    }
}

/// The factors of each series of a batch that holds several: symbol, then interval.
pub type FactorsBySeries = HashMap<String, HashMap<String, Arc<Factors>>>;

/// Adjusts a batch that holds several series, each row by the factors of its own
/// (symbol, interval); a series `factors` does not hold is not adjusted.
pub fn adjust_mixed(
    batch: &RecordBatch,
    cols: &Columns,
    factors: &FactorsBySeries,
) -> Result<RecordBatch, ArrowError> {
    let schema = batch.schema();
    let symbol = batch
        .column(schema.index_of(COL_SYMBOL)?)
        .as_string_opt::<i32>()
        .ok_or_else(|| ArrowError::InvalidArgumentError("symbol is Utf8".into()))?;
    let interval = batch
        .column(schema.index_of(COL_TIMEFRAME)?)
        .as_string_opt::<i32>()
        .ok_or_else(|| ArrowError::InvalidArgumentError("interval is Utf8".into()))?;
    let ts = ts_values(batch, cols);
    let mut rows: Option<RowMultipliers> = None;
    let mut start = 0;
    while start < batch.num_rows() {
        let key = (symbol.value(start), interval.value(start));
        let mut end = start + 1;
        while end < batch.num_rows() && (symbol.value(end), interval.value(end)) == key {
            end += 1;
        }
        if let Some(f) = factors.get(key.0).and_then(|by| by.get(key.1)) {
            let runs = f.runs(&ts[start..end]);
            if !runs.is_empty() {
                rows.get_or_insert_with(|| RowMultipliers::ones(batch.num_rows()))
                    .set(start, runs);
            }
        }
        start = end;
    }
    match rows {
        None => Ok(batch.clone()),
        Some(rows) => apply_rows(batch.clone(), cols, &rows),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adjust::factors::Step;
    use crate::model::BARS_SCHEMA;
    use arrow::array::{Int64Array, StringArray, TimestampMicrosecondArray};
    use proptest::prelude::*;

    fn batch(rows: &[(i64, f64, Option<f64>)], symbols: &[&str]) -> RecordBatch {
        let n = rows.len();
        let close: Vec<f64> = rows.iter().map(|r| r.1).collect();
        let f = |v: Vec<f64>| Arc::new(Float64Array::from(v)) as ArrayRef;
        RecordBatch::try_new(
            BARS_SCHEMA.clone(),
            vec![
                Arc::new(StringArray::from_iter_values(
                    (0..n).map(|i| symbols[i % symbols.len()]),
                )),
                Arc::new(StringArray::from(vec!["1d"; n])),
                Arc::new(
                    TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.0))
                        .with_timezone("UTC"),
                ),
                f(close.clone()),
                f(close.iter().map(|c| c * 1.01).collect()),
                f(close.iter().map(|c| c * 0.99).collect()),
                f(close.clone()),
                f(close.iter().map(|c| c * 7.0).collect()),
                Arc::new(Float64Array::from(
                    rows.iter().map(|r| r.2).collect::<Vec<_>>(),
                )),
                Arc::new(Int64Array::from(vec![Some(3); n])),
            ],
        )
        .unwrap()
    }

    fn close_enough(a: &RecordBatch, b: &RecordBatch) -> bool {
        (0..a.num_columns()).all(|c| {
            match a
                .column(c)
                .as_primitive_opt::<arrow::datatypes::Float64Type>()
            {
                Some(x) => {
                    let y = b.column(c).as_primitive::<arrow::datatypes::Float64Type>();
                    x.nulls() == y.nulls()
                        && x.values()
                            .iter()
                            .zip(y.values())
                            .all(|(p, q)| (p - q).abs() <= 1e-12 * p.abs().max(1.0))
                }
                None => a.column(c) == b.column(c),
            }
        })
    }

    #[test]
    fn prices_and_volume_move_trades_and_keys_do_not() {
        let f = Factors::new([Step::split(10, 4.0).unwrap()]);
        let b = batch(&[(5, 400.0, Some(401.0)), (10, 101.0, None)], &["A"]);
        let cols = Columns::of(&b.schema()).unwrap();
        let out = adjust_series(b.clone(), &cols, &f, false).unwrap();
        let col = |i: usize| {
            out.column(i)
                .as_primitive::<arrow::datatypes::Float64Type>()
                .clone()
        };
        assert_eq!(col(6).values().to_vec(), vec![100.0, 101.0]);
        assert_eq!(col(7).values().to_vec(), vec![11200.0, 707.0]);
        assert_eq!(col(8).value(0), 100.25);
        assert!(col(8).is_null(1), "a null vwap stays null");
        assert_eq!(out.column(9), b.column(9), "trades are counts, not prices");
        assert_eq!(out.column(2), b.column(2));
    }

    #[test]
    fn a_batch_nothing_else_holds_is_adjusted_in_place_and_a_shared_one_is_copied() {
        let f = Factors::new([Step::split(10, 4.0).unwrap()]);
        let ptr = |b: &RecordBatch| b.column(6).as_primitive::<Float64Type>().values().as_ptr();
        let b = batch(&[(5, 400.0, None), (6, 404.0, None)], &["A"]);
        let cols = Columns::of(&b.schema()).unwrap();
        let before = ptr(&b);
        let out = adjust_series(b, &cols, &f, false).unwrap();
        assert_eq!(ptr(&out), before, "the loader's own batch: no new buffer");
        assert_eq!(close_of(&out), vec![100.0, 101.0]);

        let kept = batch(&[(5, 400.0, None)], &["A"]);
        let out = adjust_series(kept.clone(), &cols, &f, false).unwrap();
        assert_ne!(ptr(&out), ptr(&kept));
        assert_eq!(
            close_of(&kept),
            vec![400.0],
            "a batch someone else holds is not changed"
        );
        assert_eq!(close_of(&out), vec![100.0]);
    }

    fn close_of(b: &RecordBatch) -> Vec<f64> {
        b.column(6).as_primitive::<Float64Type>().values().to_vec()
    }

    #[test]
    fn mixed_batches_adjust_each_row_by_its_series() {
        let f = Arc::new(Factors::new([Step::split(10, 2.0).unwrap()]));
        let mut by = FactorsBySeries::new();
        by.entry("A".to_string())
            .or_default()
            .insert("1d".to_string(), f);
        let b = batch(
            &[(5, 10.0, None), (5, 10.0, None), (15, 10.0, None)],
            &["A", "B"],
        );
        let cols = Columns::of(&b.schema()).unwrap();
        let out = adjust_mixed(&b, &cols, &by).unwrap();
        let close = out
            .column(6)
            .as_primitive::<arrow::datatypes::Float64Type>();
        assert_eq!(close.values().to_vec(), vec![5.0, 10.0, 10.0]);
    }

    proptest! {
        /// Adjusting a batch then undoing it gives back the raw bars (to float precision), in
        /// any row order, with nulls where they were.
        #[test]
        fn adjusting_then_unadjusting_returns_the_raw_bar(
            steps in prop::collection::vec(
                (-50i64..50, prop::sample::select(vec![0.1, 0.5, 2.0, 3.0, 4.0, 7.0]), any::<bool>(), 0.0f64..5.0),
                0..8,
            ),
            rows in prop::collection::vec((-60i64..60, 6.0f64..1000.0, prop::option::of(6.0f64..1000.0)), 1..50),
            sorted in any::<bool>(),
        ) {
            let steps = steps.into_iter().map(|(t, r, split, a)| {
                if split { Step::split(t, r).unwrap() } else { Step::dividend(t, a, 5.5).unwrap() }
            });
            let f = Factors::new(steps);
            let mut rows = rows;
            if sorted {
                rows.sort_by_key(|r| r.0);
            }
            let raw = batch(&rows, &["A"]);
            let cols = Columns::of(&raw.schema()).unwrap();
            // `raw` shares its buffers with the batch adjusted: they must be copied, not changed.
            let adjusted = adjust_series(raw.clone(), &cols, &f, false).unwrap();
            // Each row was multiplied by its own factor.
            let c = adjusted.column(6).as_primitive::<Float64Type>();
            for (i, r) in rows.iter().enumerate() {
                let want = r.1 * f.at(r.0).price;
                prop_assert!((c.value(i) - want).abs() <= 1e-12 * want.abs().max(1.0));
            }
            // The adjusted batch owns its price buffers: undone in place.
            let back = adjust_series(adjusted, &cols, &f, true).unwrap();
            prop_assert!(close_enough(&raw, &back));
        }
    }
}
