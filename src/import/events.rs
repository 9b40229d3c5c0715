//! Corporate actions in bar files: the `split_coefficient` and `dividend_amount` columns of
//! Alpha Vantage's daily adjusted CSVs. A row's values are checked as it is read; once the file
//! is read, each event gets its date, and a dividend the close of the file's previous bar.

use std::collections::HashMap;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, TimestampMicrosecondType};
use chrono::NaiveDate;

use super::{BadEvents, ImportError, ImportOptions, Location, RowError, optional_f64};
use crate::actions::Refused;
use crate::actions::input::{SourcedEvent, close_before};
use crate::actions::{
    ActionRule, CorporateAction, SOURCE_IMPORT, check_amount_below_close, simple_ratio,
};
use crate::batch::SeriesBatch;
use crate::model::Symbol;

/// One event value of a row: `None` for no event, an error for a value that breaks a rule
/// (kept only with [`BadEvents::Skip`]).
pub(super) type EventValue = Result<Option<f64>, RowError>;

/// The event values of one row, before the file is read whole.
#[derive(Debug, Clone)]
pub(super) struct RowEvents {
    pub slot: usize,
    pub ts: i64,
    pub split: EventValue,
    pub dividend: EventValue,
}

impl RowEvents {
    /// The row's events, `None` if it has none (good or bad).
    pub(super) fn of(
        slot: usize,
        ts: i64,
        split: EventValue,
        dividend: EventValue,
    ) -> Option<Self> {
        let none = |v: &EventValue| matches!(v, Ok(None));
        (!none(&split) || !none(&dividend)).then_some(RowEvents {
            slot,
            ts,
            split,
            dividend,
        })
    }
}

/// A row's event value as `policy` has it: a bad one refuses the row (the file) unless bad
/// events are skipped, when it is kept to be listed.
pub(super) fn screen(value: EventValue, policy: BadEvents) -> Result<EventValue, RowError> {
    match (value, policy) {
        (Err(e), BadEvents::Refuse) => Err(e),
        (value, _) => Ok(value),
    }
}

/// A split coefficient: `None` for 1 (or empty), an error unless finite and above 0.
pub(super) fn split_coefficient(raw: &[u8]) -> Result<Option<f64>, RowError> {
    split_value(optional_f64(raw, "split_coefficient")?)
}

/// A dividend amount: `None` for 0 (or empty), an error unless finite and >= 0.
pub(super) fn dividend_amount(raw: &[u8]) -> Result<Option<f64>, RowError> {
    dividend_value(optional_f64(raw, "dividend_amount")?)
}

/// [`split_coefficient`] of a parsed value.
pub(super) fn split_value(value: Option<f64>) -> Result<Option<f64>, RowError> {
    let Some(r) = value else {
        return Ok(None);
    };
    if !r.is_finite() || r <= 0.0 {
        return Err(ActionRule::BadRatio(r).into());
    }
    Ok((simple_ratio(r) != 1.0).then_some(r))
}

/// [`dividend_amount`] of a parsed value.
pub(super) fn dividend_value(value: Option<f64>) -> Result<Option<f64>, RowError> {
    let Some(a) = value else {
        return Ok(None);
    };
    if !a.is_finite() || a < 0.0 {
        return Err(ActionRule::BadAmount(a).into());
    }
    Ok((a != 0.0).then_some(a))
}

/// The events of a file read whole: `found[i]` was on the row at `at[i]`; `symbols` are the
/// sink's slots and `series` its bars. An event that breaks a rule refuses the file, or with
/// [`BadEvents::Skip`] is left out and returned with the rule among the skipped.
pub(super) fn resolve(
    path: &std::path::Path,
    opts: &ImportOptions,
    symbols: &[Symbol],
    series: &[SeriesBatch],
    found: Vec<RowEvents>,
    at: &[Location],
) -> Result<(Vec<SourcedEvent>, Vec<Refused>), ImportError> {
    // Stamped with the store's clock when the import commits them (`Store::import_files`).
    let recorded_at = 0;
    // Each symbol's bars, once: (ts, close) in time order.
    let mut bars_of: HashMap<usize, Vec<(i64, f64)>> = HashMap::new();
    let mut out = Vec::new();
    let mut skipped = Vec::new();
    for (f, &at) in found.into_iter().zip(at) {
        let origin = format!("{} {at}", path.display());
        let mut reject = |error: RowError| match opts.bad_events {
            BadEvents::Refuse => Err(ImportError::Row {
                path: path.to_path_buf(),
                at,
                error,
            }),
            BadEvents::Skip => {
                skipped.push(Refused {
                    origin: origin.clone(),
                    message: error.to_string(),
                });
                Ok(())
            }
        };
        let symbol = &symbols[f.slot];
        let ex_date = ex_date(f.ts, opts);
        let bars = bars_of.entry(f.slot).or_insert_with(|| {
            let mut bars = series
                .iter()
                .find(|s| &s.key.symbol == symbol)
                .map(|s| closes(&s.batch))
                .unwrap_or_default();
            bars.sort_by_key(|(ts, _)| *ts);
            bars
        });
        let previous_close = close_before(bars, opts.interval, ex_date);
        let split = f.split.and_then(|ratio| {
            ratio
                .map(|r| {
                    CorporateAction::split(symbol.clone(), ex_date, r, SOURCE_IMPORT, recorded_at)
                })
                .transpose()
                .map_err(RowError::from)
        });
        match split {
            Ok(None) => {}
            Ok(Some(event)) => out.push(SourcedEvent {
                event,
                origin: origin.clone(),
                previous_close,
            }),
            Err(e) => reject(e)?,
        }
        let dividend = f.dividend.and_then(|amount| {
            amount
                .map(|a| {
                    if let Some(close) = previous_close {
                        check_amount_below_close(a, close)?;
                    }
                    CorporateAction::dividend(
                        symbol.clone(),
                        ex_date,
                        a,
                        SOURCE_IMPORT,
                        recorded_at,
                    )
                })
                .transpose()
                .map_err(RowError::from)
        });
        match dividend {
            Ok(None) => {}
            Ok(Some(event)) => out.push(SourcedEvent {
                event,
                origin: origin.clone(),
                previous_close,
            }),
            Err(e) => reject(e)?,
        }
    }
    Ok((out, skipped))
}

/// The date of a row: its UTC date (daily and weekly bars open at 00:00 UTC), or for intraday
/// bars the local date in the import's zone.
fn ex_date(ts: i64, opts: &ImportOptions) -> NaiveDate {
    let t = chrono::DateTime::from_timestamp_micros(ts).expect("a checked bar time");
    if opts.interval.is_intraday() {
        t.with_timezone(&opts.tz).date_naive()
    } else {
        t.date_naive()
    }
}

/// (ts, close) of a file-schema batch.
fn closes(batch: &RecordBatch) -> Vec<(i64, f64)> {
    let ts = batch
        .column_by_name(crate::model::COL_TS)
        .expect("file schema")
        .as_primitive::<TimestampMicrosecondType>();
    let close = batch
        .column_by_name("close")
        .expect("file schema")
        .as_primitive::<Float64Type>();
    ts.values()
        .iter()
        .copied()
        .zip(close.values().iter().copied())
        .collect()
}
