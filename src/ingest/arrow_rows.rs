//! Arrow batches in the `bars` schema (an Arrow IPC write body, [`crate::Store::ingest_batch`])
//! into validated series batches, as strictly as NDJSON lines are read: every column is one of
//! `bars` and appears once; values convert exactly (a timestamp finer than a microsecond, or a
//! `trades` value past 64 bits, is refused, never rounded or dropped); every row error names
//! the 1-based row.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Int64Array, RecordBatch, StringArray, StringViewArray,
    TimestampMicrosecondArray, UInt32Array,
};
use arrow::compute::{cast, take_record_batch};
use arrow::datatypes::{DataType, Float64Type, Int64Type, Schema, TimeUnit};
use arrow::util::display::array_value_to_string;

use crate::batch::{SeriesBatch, SeriesKey};
use crate::model::{
    BARS_SCHEMA, COL_SYMBOL, COL_TIMEFRAME, FILE_SCHEMA, Interval, Rule, Symbol, check_bar,
};

/// The name of the `timeframe` column before it was renamed, still accepted in place of it.
const LEGACY_TIMEFRAME: &str = "interval";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The columns themselves: unknown, doubled, missing or of a type a bar cannot use.
    #[error("{0}")]
    Column(String),
    /// A value (1-based row across the input); nothing was applied.
    #[error("row {row}: {message}")]
    Row { row: usize, message: String },
}

/// The value columns after `ts`, in file-schema order.
const VALUES: [&str; 5] = ["open", "high", "low", "close", "volume"];

/// Where each `bars` column is in a batch.
#[derive(Debug, Clone, Copy)]
pub struct Columns {
    symbol: usize,
    interval: usize,
    ts: usize,
    values: [usize; 5],
    vwap: Option<usize>,
    trades: Option<usize>,
}

fn is_text(dt: &DataType) -> bool {
    match dt {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, v) => is_text(v),
        _ => false,
    }
}

/// Maps a schema's columns to `bars`: unknown, doubled and missing columns are refused by name,
/// and so are types a column cannot take.
pub fn check_columns(schema: &Schema) -> Result<Columns, Error> {
    let known: Vec<&str> = BARS_SCHEMA
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    let mut at: Vec<Option<usize>> = vec![None; known.len()];
    let mut given: Vec<&str> = vec![""; known.len()];
    for (i, field) in schema.fields().iter().enumerate() {
        let name = match field.name().as_str() {
            LEGACY_TIMEFRAME => COL_TIMEFRAME,
            name => name,
        };
        let k = known.iter().position(|k| *k == name).ok_or_else(|| {
            Error::Column(format!(
                "unknown column {name:?} (bars has {})",
                known.join(", ")
            ))
        })?;
        if at[k].replace(i).is_some() {
            if given[k] != field.name() {
                return Err(Error::Column(format!(
                    "columns {:?} and {:?} both give the timeframe ({LEGACY_TIMEFRAME:?} is its \
                     old name); give one",
                    given[k],
                    field.name()
                )));
            }
            return Err(Error::Column(format!("column {name:?} appears twice")));
        }
        given[k] = field.name();
        let dt = field.data_type();
        let fits = match name {
            COL_SYMBOL | COL_TIMEFRAME => is_text(dt),
            "ts" => matches!(dt, DataType::Timestamp(..)),
            "trades" => dt.is_integer(),
            _ => dt.is_integer() || dt.is_floating(),
        };
        if !fits {
            let wanted = match name {
                COL_SYMBOL | COL_TIMEFRAME => "text",
                "ts" => "a timestamp (any unit)",
                "trades" => "an integer",
                _ => "a number",
            };
            return Err(Error::Column(format!(
                "column {:?} is {dt}; it must be {wanted}",
                field.name()
            )));
        }
    }
    let find = |name: &str| {
        at[known
            .iter()
            .position(|k| *k == name)
            .expect("a bars column")]
    };
    let required =
        |name: &str| find(name).ok_or_else(|| Error::Column(format!("missing column {name:?}")));
    Ok(Columns {
        symbol: required("symbol")?,
        interval: required(COL_TIMEFRAME)?,
        ts: required("ts")?,
        values: [
            required(VALUES[0])?,
            required(VALUES[1])?,
            required(VALUES[2])?,
            required(VALUES[3])?,
            required(VALUES[4])?,
        ],
        vwap: find("vwap"),
        trades: find("trades"),
    })
}

/// Splits a `bars` batch into per-series file-schema batches, checking every row.
pub fn split_bars(batch: &RecordBatch) -> Result<Vec<SeriesBatch>, Error> {
    let cols = check_columns(&batch.schema())?;
    let n = batch.num_rows();
    let column_error =
        |name: &str, e: arrow::error::ArrowError| Error::Column(format!("column {name:?}: {e}"));
    let text = |i: usize, name: &str| Text::new(batch.column(i)).map_err(|e| column_error(name, e));
    let symbols = text(cols.symbol, "symbol")?;
    let intervals = text(cols.interval, COL_TIMEFRAME)?;
    let ts_raw = batch.column(cols.ts);
    let DataType::Timestamp(unit, _) = ts_raw.data_type() else {
        unreachable!("checked by check_columns")
    };
    let unit = *unit;
    // The raw integers of the timestamp column; no time zone is applied (they are UTC).
    let ts_values = cast(ts_raw, &DataType::Int64).map_err(|e| column_error("ts", e))?;
    let ts_values = ts_values.as_primitive::<Int64Type>();
    let float = |i: usize, name: &str| -> Result<ArrayRef, Error> {
        cast(batch.column(i), &DataType::Float64).map_err(|e| column_error(name, e))
    };
    let values: Vec<ArrayRef> = cols
        .values
        .iter()
        .zip(VALUES)
        .map(|(&i, name)| float(i, name))
        .collect::<Result<_, _>>()?;
    let vwap = match cols.vwap {
        Some(i) => float(i, "vwap")?,
        None => arrow::array::new_null_array(&DataType::Float64, n),
    };
    let trades = match cols.trades {
        Some(i) => {
            cast(batch.column(i), &DataType::Int64).map_err(|e| column_error("trades", e))?
        }
        None => arrow::array::new_null_array(&DataType::Int64, n),
    };
    let f64s: Vec<&arrow::array::Float64Array> = values
        .iter()
        .map(|a| a.as_primitive::<Float64Type>())
        .collect();
    let vwaps = vwap.as_primitive::<Float64Type>();
    let trade_counts = trades.as_primitive::<Int64Type>();

    let mut ts_us: Vec<i64> = Vec::with_capacity(n);
    let mut groups: BTreeMap<SeriesKey, Vec<u32>> = BTreeMap::new();
    let mut last: Option<(usize, SeriesKey)> = None;
    for row in 0..n {
        let bad = |message: String| Error::Row {
            row: row + 1,
            message,
        };
        let null = |name: &str| bad(format!("{name} is null"));
        let symbol = symbols.get(row).ok_or_else(|| null("symbol"))?;
        let interval = intervals.get(row).ok_or_else(|| null(COL_TIMEFRAME))?;
        let key = match &last {
            Some((prev, key))
                if symbols.get(*prev) == Some(symbol) && intervals.get(*prev) == Some(interval) =>
            {
                key.clone()
            }
            _ => {
                let symbol = Symbol::new(symbol).map_err(|e| bad(e.to_string()))?;
                let interval: Interval = interval.parse().map_err(|e: Rule| bad(e.to_string()))?;
                SeriesKey { symbol, interval }
            }
        };
        if ts_values.is_null(row) {
            return Err(null("ts"));
        }
        let ts = to_micros(ts_values.value(row), unit).map_err(bad)?;
        let mut v = [0.0; 5];
        for (k, a) in f64s.iter().enumerate() {
            if a.is_null(row) {
                return Err(null(VALUES[k]));
            }
            v[k] = a.value(row);
        }
        let vwap = (!vwaps.is_null(row)).then(|| vwaps.value(row));
        let count = if trade_counts.is_null(row) {
            let given = cols.trades.map(|i| batch.column(i));
            if let Some(given) = given.filter(|g| !g.is_null(row)) {
                return Err(bad(format!(
                    "trades {} does not fit a 64-bit integer",
                    array_value_to_string(given, row).unwrap_or_default()
                )));
            }
            None
        } else {
            Some(trade_counts.value(row))
        };
        check_bar(key.interval, ts, v[0], v[1], v[2], v[3], v[4], vwap, count)
            .map_err(|rule| bad(rule.to_string()))?;
        ts_us.push(ts);
        groups.entry(key.clone()).or_default().push(row as u32);
        last = Some((row, key));
    }
    let ts: ArrayRef = Arc::new(TimestampMicrosecondArray::from(ts_us).with_timezone("UTC"));
    let mut columns = vec![ts];
    columns.extend(values);
    columns.push(vwap);
    columns.push(trades);
    let file_rows = RecordBatch::try_new(FILE_SCHEMA.clone(), columns)
        .map_err(|e| Error::Column(e.to_string()))?;
    // One series (the common case) needs no copy.
    if groups.len() == 1 {
        let (key, _) = groups.pop_first().expect("one group");
        return Ok(vec![SeriesBatch {
            key,
            batch: file_rows,
        }]);
    }
    groups
        .into_iter()
        .map(|(key, rows)| {
            let batch = take_record_batch(&file_rows, &UInt32Array::from(rows))
                .map_err(|e| Error::Column(e.to_string()))?;
            Ok(SeriesBatch { key, batch })
        })
        .collect()
}

/// A text column read row by row, never materialized: a dictionary or string view column can
/// point every row at one long value, so casting it to plain strings could allocate far more
/// than the input holds (the values are checked as symbols and intervals, which are short).
enum Text {
    Plain(StringArray),
    View(StringViewArray),
    Dictionary { keys: Int64Array, values: Box<Text> },
}

impl Text {
    fn new(array: &ArrayRef) -> Result<Self, arrow::error::ArrowError> {
        if let Some(d) = array.as_any_dictionary_opt() {
            let keys = cast(d.keys(), &DataType::Int64)?;
            return Ok(Text::Dictionary {
                keys: keys.as_primitive::<Int64Type>().clone(),
                values: Box::new(Text::new(d.values())?),
            });
        }
        if let Some(v) = array.as_string_view_opt() {
            return Ok(Text::View(v.clone()));
        }
        // Utf8 as it is, LargeUtf8 as the same bytes with narrower offsets.
        Ok(Text::Plain(
            cast(array, &DataType::Utf8)?.as_string::<i32>().clone(),
        ))
    }

    fn len(&self) -> usize {
        match self {
            Text::Plain(a) => a.len(),
            Text::View(a) => a.len(),
            Text::Dictionary { keys, .. } => keys.len(),
        }
    }

    /// The row's text; `None` when null (or a dictionary key points at no value).
    fn get(&self, row: usize) -> Option<&str> {
        if row >= self.len() {
            return None;
        }
        match self {
            Text::Plain(a) => (!a.is_null(row)).then(|| a.value(row)),
            Text::View(a) => (!a.is_null(row)).then(|| a.value(row)),
            Text::Dictionary { keys, values } => {
                let key = (!keys.is_null(row)).then(|| keys.value(row))?;
                values.get(usize::try_from(key).ok()?)
            }
        }
    }
}

/// A timestamp in `unit` as µs; one finer than a microsecond, or past i64 µs, is refused.
fn to_micros(v: i64, unit: TimeUnit) -> Result<i64, String> {
    let out_of_range = || {
        format!(
            "ts {v} ({}) is outside the supported range",
            unit_name(unit)
        )
    };
    match unit {
        TimeUnit::Second => v.checked_mul(1_000_000).ok_or_else(out_of_range),
        TimeUnit::Millisecond => v.checked_mul(1_000).ok_or_else(out_of_range),
        TimeUnit::Microsecond => Ok(v),
        TimeUnit::Nanosecond if v % 1_000 == 0 => Ok(v / 1_000),
        TimeUnit::Nanosecond => Err(format!(
            "ts {v} (epoch nanoseconds) is finer than a microsecond"
        )),
    }
}

fn unit_name(unit: TimeUnit) -> &'static str {
    match unit {
        TimeUnit::Second => "epoch seconds",
        TimeUnit::Millisecond => "epoch milliseconds",
        TimeUnit::Microsecond => "epoch microseconds",
        TimeUnit::Nanosecond => "epoch nanoseconds",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float32Array, Int32Array, TimestampSecondArray, UInt64Array};
    use arrow::datatypes::Field;

    const T0: i64 = 1_609_459_200; // 2021-01-01T00:00:00Z, seconds

    fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        let fields: Vec<Field> = columns
            .iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect();
        let arrays = columns.into_iter().map(|(_, a)| a).collect();
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap()
    }

    fn columns(n: usize) -> Vec<(&'static str, ArrayRef)> {
        let minutes: Vec<i64> = (0..n as i64).map(|i| T0 + 60 * i).collect();
        vec![
            ("symbol", Arc::new(StringArray::from(vec!["A"; n]))),
            ("timeframe", Arc::new(StringArray::from(vec!["1m"; n]))),
            ("ts", Arc::new(TimestampSecondArray::from(minutes))),
            ("open", Arc::new(Float32Array::from(vec![1.0; n]))),
            ("high", Arc::new(Int32Array::from(vec![2; n]))),
            (
                "low",
                Arc::new(arrow::array::Float64Array::from(vec![0.5; n])),
            ),
            (
                "close",
                Arc::new(arrow::array::Float64Array::from(vec![1.5; n])),
            ),
            ("volume", Arc::new(UInt64Array::from(vec![10; n]))),
        ]
    }

    #[test]
    fn exact_conversions_are_accepted() {
        let mut cols = columns(3);
        cols.push(("trades", Arc::new(UInt64Array::from(vec![1, 2, 3]))));
        let out = split_bars(&batch(cols)).unwrap();
        assert_eq!(out.len(), 1);
        let b = &out[0].batch;
        assert_eq!(b.schema(), *FILE_SCHEMA);
        assert_eq!(crate::batch::ts_column(b).value(2), (T0 + 120) * 1_000_000);
    }

    #[test]
    fn dictionary_and_view_text_is_read_row_by_row() {
        let mut c = columns(3);
        let symbols: arrow::array::DictionaryArray<arrow::datatypes::Int8Type> =
            vec![Some("A"), Some("B"), Some("A")].into_iter().collect();
        c[0].1 = Arc::new(symbols);
        c[1].1 = Arc::new(StringViewArray::from(vec!["1m"; 3]));
        let out = split_bars(&batch(c)).unwrap();
        let keys: Vec<(&str, usize)> = out
            .iter()
            .map(|s| (s.key.symbol.as_str(), s.batch.num_rows()))
            .collect();
        assert_eq!(keys, vec![("A", 2), ("B", 1)]);
        let mut c = columns(3);
        let symbols: arrow::array::DictionaryArray<arrow::datatypes::Int8Type> =
            vec![Some("A"), None, Some("A")].into_iter().collect();
        c[0].1 = Arc::new(symbols);
        assert_eq!(
            split_bars(&batch(c)).unwrap_err().to_string(),
            "row 2: symbol is null"
        );
    }

    #[test]
    fn text_pointing_every_row_at_one_long_value_is_never_expanded() {
        // 1M rows whose symbols are all one 1 MiB value: expanded, 1 TiB.
        let n = 1 << 20;
        let minutes = || -> Vec<i64> { (0..n as i64).map(|i| T0 + 60 * i).collect() };
        let keys = arrow::array::Int8Array::from(vec![0; n]);
        let values = StringArray::from(vec!["X".repeat(1 << 20)]);
        let symbols = arrow::array::DictionaryArray::<arrow::datatypes::Int8Type>::try_new(
            keys,
            Arc::new(values),
        )
        .unwrap();
        let long = "Y".repeat(1 << 20);
        let views = StringViewArray::from_iter_values(std::iter::repeat_n(long.as_str(), 4));
        let mut c = columns(0);
        c[0].1 = Arc::new(symbols);
        c[1].1 = Arc::new(StringArray::from(vec!["1m"; n]));
        c[2].1 = Arc::new(TimestampSecondArray::from(minutes()));
        for v in &mut c[3..] {
            v.1 = Arc::new(arrow::array::Int8Array::from(vec![1; n]));
        }
        let e = split_bars(&batch(c)).unwrap_err().to_string();
        assert!(
            e.starts_with("row 1: symbol \"XXX") && e.len() < 300,
            "{}",
            &e[..300.min(e.len())]
        );
        // Views sharing one long string are read in place too.
        let mut c = columns(4);
        c[1].1 = Arc::new(views);
        let e = split_bars(&batch(c)).unwrap_err().to_string();
        assert!(
            e.starts_with("row 1: unknown timeframe \"YYY") && e.len() < 300,
            "{}",
            &e[..100]
        );
    }

    #[test]
    fn the_old_column_name_interval_is_read_as_timeframe() {
        let mut c = columns(2);
        c[1].0 = "interval";
        let out = split_bars(&batch(c)).unwrap();
        assert_eq!(out[0].key.interval, Interval::M1);
        assert_eq!(out[0].batch.num_rows(), 2);
        let mut c = columns(2);
        c.push(("interval", Arc::new(StringArray::from(vec!["1m"; 2]))));
        assert_eq!(
            split_bars(&batch(c)).unwrap_err().to_string(),
            "columns \"timeframe\" and \"interval\" both give the timeframe (\"interval\" is its \
             old name); give one"
        );
        let mut c = columns(2);
        c[1] = ("interval", Arc::new(Float32Array::from(vec![1.0; 2])));
        assert_eq!(
            split_bars(&batch(c)).unwrap_err().to_string(),
            "column \"interval\" is Float32; it must be text"
        );
    }

    #[test]
    fn errors_name_the_column_or_the_row() {
        let err =
            |cols: Vec<(&'static str, ArrayRef)>| split_bars(&batch(cols)).unwrap_err().to_string();
        let mut c = columns(2);
        c.remove(4);
        assert_eq!(err(c), "missing column \"high\"");
        let mut c = columns(2);
        c.push(("open", Arc::new(Float32Array::from(vec![1.0; 2]))));
        assert_eq!(err(c), "column \"open\" appears twice");
        let mut c = columns(2);
        c.push(("notes", Arc::new(StringArray::from(vec!["x"; 2]))));
        assert!(err(c).starts_with("unknown column \"notes\""));
        let mut c = columns(2);
        c[2].1 = Arc::new(arrow::array::TimestampNanosecondArray::from(vec![
            T0 * 1_000_000_000,
            T0 * 1_000_000_000 + 60_000_000_500,
        ]));
        assert_eq!(
            err(c),
            "row 2: ts 1609459260000000500 (epoch nanoseconds) is finer than a microsecond"
        );
        let mut c = columns(2);
        c[2].1 = Arc::new(TimestampSecondArray::from(vec![T0, i64::MAX / 10]));
        assert!(err(c).starts_with("row 2: ts"), "out of range");
        let mut c = columns(2);
        c[1].1 = Arc::new(StringArray::from(vec![Some("1m"), None]));
        assert_eq!(err(c), "row 2: timeframe is null");
        let mut c = columns(2);
        c[3].1 = Arc::new(Float32Array::from(vec![Some(1.0), None]));
        assert_eq!(err(c), "row 2: open is null");
        let mut c = columns(2);
        c.push(("trades", Arc::new(UInt64Array::from(vec![u64::MAX, 1]))));
        assert_eq!(
            err(c),
            "row 1: trades 18446744073709551615 does not fit a 64-bit integer"
        );
        let mut c = columns(2);
        c.push(("trades", Arc::new(Float32Array::from(vec![1.0; 2]))));
        assert!(err(c).contains("\"trades\" is Float32; it must be an integer"));
        let mut c = columns(2);
        c[2].1 = Arc::new(Int32Array::from(vec![1, 2]));
        assert!(err(c).contains("\"ts\" is Int32; it must be a timestamp"));
    }
}
