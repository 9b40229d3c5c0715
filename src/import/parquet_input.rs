//! Parquet input through the parquet crate's Arrow reader, reading only the mapped columns.

use std::fs::File;
use std::path::Path;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array, StringArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type, Int64Type, TimeUnit};
use arrow::error::ArrowError;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::events::{self, RowEvents};
use super::{
    Columns, FileContents, ImportError, ImportOptions, Location, RowError, Sink, file_symbol,
    float_to_trades, optional_f64, optional_trades, required_f64, ts_error,
};
use crate::model::time::timestamp::{TsError, TsParser};
use crate::model::{MICROS_PER_DAY, Rule};

const BATCH_ROWS: usize = 64 * 1024;

/// How the timestamp column encodes time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TsKind {
    /// Timestamp with a time zone: UTC instants.
    Instant(TimeUnit),
    /// Timestamp without a time zone: wall-clock times in the import's zone.
    Naive(TimeUnit),
    /// Days since the epoch: 00:00 UTC of that date.
    Date32,
    /// Milliseconds since the epoch.
    Date64,
    /// An integer epoch, unit by magnitude.
    Epoch,
    /// Text, through the string parser.
    Text,
}

fn is_text(dt: &DataType) -> bool {
    match dt {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, v) => is_text(v),
        _ => false,
    }
}

fn ts_kind(dt: &DataType) -> Option<TsKind> {
    Some(match dt {
        DataType::Timestamp(unit, Some(_)) => TsKind::Instant(*unit),
        DataType::Timestamp(unit, None) => TsKind::Naive(*unit),
        DataType::Date32 => TsKind::Date32,
        DataType::Date64 => TsKind::Date64,
        dt if dt.is_integer() => TsKind::Epoch,
        dt if is_text(dt) => TsKind::Text,
        _ => return None,
    })
}

pub(super) fn read_parquet(path: &Path, opts: &ImportOptions) -> Result<FileContents, ImportError> {
    let file = File::open(path).map_err(ImportError::io(path))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| ImportError::malformed(path, e))?;
    let schema = std::sync::Arc::clone(builder.schema());
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let mut cols = Columns::map(path, &names)?;
    if opts.skip_events {
        (cols.split, cols.dividend) = (None, None);
    }
    let unsupported = |i: usize| ImportError::UnsupportedColumnType {
        path: path.to_path_buf(),
        column: names[i].to_string(),
        data_type: schema.field(i).data_type().to_string(),
    };
    let ts_kind = ts_kind(schema.field(cols.ts).data_type()).ok_or_else(|| unsupported(cols.ts))?;
    let numeric = [cols.open, cols.high, cols.low, cols.close, cols.volume]
        .into_iter()
        .chain(cols.vwap)
        .chain(cols.trades)
        .chain(cols.split)
        .chain(cols.dividend);
    for i in numeric {
        let dt = schema.field(i).data_type();
        if !(dt.is_numeric() || is_text(dt)) {
            return Err(unsupported(i));
        }
    }
    if let Some(i) = cols.symbol
        && !is_text(schema.field(i).data_type())
    {
        return Err(unsupported(i));
    }

    // Read only the mapped columns; projected batches hold them in schema order.
    let mut wanted: Vec<usize> = [
        cols.ts,
        cols.open,
        cols.high,
        cols.low,
        cols.close,
        cols.volume,
    ]
    .into_iter()
    .chain(cols.vwap)
    .chain(cols.trades)
    .chain(cols.symbol)
    .chain(cols.split)
    .chain(cols.dividend)
    .collect();
    wanted.sort_unstable();
    let at = |i: usize| {
        wanted
            .binary_search(&i)
            .expect("mapped column is projected")
    };
    let rows_hint = builder.metadata().file_metadata().num_rows().max(0) as usize;
    let mask = ProjectionMask::roots(builder.parquet_schema(), wanted.iter().copied());
    let reader = builder
        .with_projection(mask)
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| ImportError::malformed(path, e))?;

    let symbol = match cols.symbol {
        Some(_) => None,
        None => Some(file_symbol(path, opts)?),
    };
    let mut sink = Sink::new(opts.interval, symbol, rows_hint);
    let mut ts_parser = TsParser::new(opts.tz).with(opts.ambiguous, opts.epoch_unit);
    let mut rows_before: u64 = 0;
    let (mut found, mut found_at) = (Vec::new(), Vec::new());
    for batch in reader {
        let batch = batch.map_err(|e| ImportError::malformed(path, e))?;
        let arrow_err = |e: ArrowError| ImportError::malformed(path, e);
        let ts = TsColumn::new(batch.column(at(cols.ts)), ts_kind).map_err(arrow_err)?;
        let num = |i: usize, int: bool| NumColumn::new(batch.column(at(i)), int);
        let open = num(cols.open, false).map_err(arrow_err)?;
        let high = num(cols.high, false).map_err(arrow_err)?;
        let low = num(cols.low, false).map_err(arrow_err)?;
        let close = num(cols.close, false).map_err(arrow_err)?;
        let volume = num(cols.volume, false).map_err(arrow_err)?;
        let vwap = cols
            .vwap
            .map(|i| num(i, false))
            .transpose()
            .map_err(arrow_err)?;
        let trades = cols
            .trades
            .map(|i| num(i, true))
            .transpose()
            .map_err(arrow_err)?;
        let symbols = cols
            .symbol
            .map(|i| cast(batch.column(at(i)), &DataType::Utf8))
            .transpose()
            .map_err(arrow_err)?;
        let symbols: Option<&StringArray> = symbols.as_ref().map(|a| a.as_string::<i32>());
        let split = cols
            .split
            .map(|i| num(i, false))
            .transpose()
            .map_err(arrow_err)?;
        let dividend = cols
            .dividend
            .map(|i| num(i, false))
            .transpose()
            .map_err(arrow_err)?;

        for row in 0..batch.num_rows() {
            let result = (|| -> Result<Option<RowEvents>, RowError> {
                let slot = match symbols {
                    Some(s) if s.is_null(row) => return Err(RowError::Null("symbol")),
                    Some(s) => sink.slot(s.value(row).as_bytes())?,
                    None => 0,
                };
                ts_parser.set_series(slot);
                let ts = ts.get(row, &mut ts_parser)?;
                let o = open.required(row, "open")?;
                let h = high.required(row, "high")?;
                let l = low.required(row, "low")?;
                let c = close.required(row, "close")?;
                let v = volume.required(row, "volume")?;
                let vw = match &vwap {
                    Some(a) => a.optional(row, "vwap")?,
                    None => None,
                };
                let n = match &trades {
                    Some(a) => a.trades(row)?,
                    None => None,
                };
                sink.push(slot, ts, o, h, l, c, v, vw, n)?;
                let split = match &split {
                    Some(a) => events::screen(
                        a.optional(row, "split_coefficient")
                            .and_then(events::split_value),
                        opts.bad_events,
                    )?,
                    None => Ok(None),
                };
                let dividend = match &dividend {
                    Some(a) => events::screen(
                        a.optional(row, "dividend_amount")
                            .and_then(events::dividend_value),
                        opts.bad_events,
                    )?,
                    None => Ok(None),
                };
                Ok(RowEvents::of(slot, ts, split, dividend))
            })();
            let at = Location::Row(rows_before + row as u64 + 1);
            match result {
                Ok(None) => {}
                Ok(Some(e)) => {
                    found.push(e);
                    found_at.push(at);
                }
                Err(error) => {
                    return Err(ImportError::Row {
                        path: path.to_path_buf(),
                        at,
                        error,
                    });
                }
            }
        }
        rows_before += batch.num_rows() as u64;
    }
    let symbols: Vec<_> = sink.series.iter().map(|(s, _)| s.clone()).collect();
    let series = sink.finish();
    let (events, skipped) = events::resolve(path, opts, &symbols, &series, found, &found_at)?;
    Ok(FileContents {
        series,
        events,
        skipped,
    })
}

/// The timestamp column of one batch, decoded to integers or text.
enum TsColumn {
    Ints(Int64Array, TsKind),
    Text(StringArray),
}

impl TsColumn {
    fn new(col: &ArrayRef, kind: TsKind) -> Result<Self, ArrowError> {
        Ok(match kind {
            TsKind::Text => TsColumn::Text(cast(col, &DataType::Utf8)?.as_string::<i32>().clone()),
            TsKind::Date32 => {
                let days = cast(col, &DataType::Int32)?;
                TsColumn::Ints(
                    cast(&days, &DataType::Int64)?
                        .as_primitive::<Int64Type>()
                        .clone(),
                    kind,
                )
            }
            _ => TsColumn::Ints(
                cast(col, &DataType::Int64)?
                    .as_primitive::<Int64Type>()
                    .clone(),
                kind,
            ),
        })
    }

    #[inline]
    fn get(&self, row: usize, parser: &mut TsParser) -> Result<i64, RowError> {
        match self {
            TsColumn::Text(a) => {
                if a.is_null(row) {
                    return Err(RowError::Null("timestamp"));
                }
                let s = a.value(row);
                parser
                    .parse(s.as_bytes())
                    .map_err(|e| ts_error(e, s.trim().to_string(), parser.tz()))
            }
            TsColumn::Ints(a, kind) => {
                if a.is_null(row) {
                    return Err(RowError::Null("timestamp"));
                }
                let v = a.value(row);
                let out_of_range = || RowError::Rule(Rule::TimestampOutOfRange);
                match *kind {
                    TsKind::Instant(unit) => unit_to_micros(v, unit).ok_or_else(out_of_range),
                    TsKind::Naive(unit) => {
                        let local = unit_to_micros(v, unit).ok_or_else(out_of_range)?;
                        parser.local_to_utc(local).map_err(|e| match e {
                            TsError::Unparsable => out_of_range(),
                            e => ts_error(e, naive_text(local), parser.tz()),
                        })
                    }
                    TsKind::Date32 => v.checked_mul(MICROS_PER_DAY).ok_or_else(out_of_range),
                    TsKind::Date64 => v.checked_mul(1_000).ok_or_else(out_of_range),
                    TsKind::Epoch => parser
                        .epoch(v)
                        .map_err(|e| ts_error(e, v.to_string(), parser.tz())),
                    TsKind::Text => unreachable!("text is decoded as TsColumn::Text"),
                }
            }
        }
    }
}

fn unit_to_micros(v: i64, unit: TimeUnit) -> Option<i64> {
    match unit {
        TimeUnit::Second => v.checked_mul(1_000_000),
        TimeUnit::Millisecond => v.checked_mul(1_000),
        TimeUnit::Microsecond => Some(v),
        TimeUnit::Nanosecond => Some(v.div_euclid(1_000)),
    }
}

fn naive_text(local_us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(local_us)
        .map(|t| t.naive_utc().to_string())
        .unwrap_or_else(|| local_us.to_string())
}

/// A numeric column of one batch: floats, integers (trades) or text to parse.
enum NumColumn {
    F64(Float64Array),
    I64(Int64Array),
    Text(StringArray),
}

impl NumColumn {
    fn new(col: &ArrayRef, integer: bool) -> Result<Self, ArrowError> {
        let dt = col.data_type();
        Ok(if is_text(dt) {
            NumColumn::Text(cast(col, &DataType::Utf8)?.as_string::<i32>().clone())
        } else if integer && dt.is_integer() {
            NumColumn::I64(
                cast(col, &DataType::Int64)?
                    .as_primitive::<Int64Type>()
                    .clone(),
            )
        } else {
            NumColumn::F64(
                cast(col, &DataType::Float64)?
                    .as_primitive::<Float64Type>()
                    .clone(),
            )
        })
    }

    #[inline]
    fn required(&self, row: usize, column: &'static str) -> Result<f64, RowError> {
        match self {
            NumColumn::F64(a) if !a.is_null(row) => Ok(a.value(row)),
            NumColumn::I64(a) if !a.is_null(row) => Ok(a.value(row) as f64),
            NumColumn::Text(a) if !a.is_null(row) => required_f64(a.value(row).as_bytes(), column),
            _ => Err(RowError::Null(column)),
        }
    }

    #[inline]
    fn optional(&self, row: usize, column: &'static str) -> Result<Option<f64>, RowError> {
        match self {
            NumColumn::F64(a) if !a.is_null(row) => Ok(Some(a.value(row))),
            NumColumn::I64(a) if !a.is_null(row) => Ok(Some(a.value(row) as f64)),
            NumColumn::Text(a) if !a.is_null(row) => optional_f64(a.value(row).as_bytes(), column),
            _ => Ok(None),
        }
    }

    #[inline]
    fn trades(&self, row: usize) -> Result<Option<i64>, RowError> {
        match self {
            NumColumn::I64(a) if !a.is_null(row) => Ok(Some(a.value(row))),
            NumColumn::F64(a) if !a.is_null(row) => {
                let f = a.value(row);
                float_to_trades(f)
                    .map(Some)
                    .ok_or_else(|| RowError::BadTrades(f.to_string()))
            }
            NumColumn::Text(a) if !a.is_null(row) => optional_trades(a.value(row).as_bytes()),
            _ => Ok(None),
        }
    }
}
