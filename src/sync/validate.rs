//! What a provider sent, made fit for `bars`: trimmed to the chunk asked for, sorted, one row
//! per timestamp (the last one sent wins), every row checked against the rules. Rows that break
//! a rule go to quarantine with the reason, never into `bars`.

use arrow::array::RecordBatch;

use super::provider::{Fetched, RawBar};
use super::registry::Quarantined;
use crate::batch::BarBuilder;
use crate::model::{Interval, Symbol};

/// A fetched chunk after validation.
#[derive(Debug)]
pub struct Checked {
    /// Valid bars in the file schema, sorted by ts, unique; `None` when there are none.
    pub bars: Option<RecordBatch>,
    pub rows: u64,
    pub last_bar: Option<i64>,
    pub quarantined: Vec<Quarantined>,
}

pub fn check_fetched(
    symbol: &Symbol,
    interval: Interval,
    (start, end): (i64, i64),
    fetched: Fetched,
    provider: &str,
    fetched_at: i64,
) -> Checked {
    let quarantine =
        |bar: Option<&RawBar>, ts: Option<i64>, raw: Option<String>, reason: String| Quarantined {
            symbol: symbol.clone(),
            interval,
            ts,
            open: bar.map(|b| b.open),
            high: bar.map(|b| b.high),
            low: bar.map(|b| b.low),
            close: bar.map(|b| b.close),
            volume: bar.map(|b| b.volume),
            raw,
            reason,
            provider: provider.to_string(),
            fetched_at,
        };
    let mut quarantined: Vec<Quarantined> = fetched
        .rejected
        .into_iter()
        .map(|r| quarantine(None, r.ts, Some(r.raw), r.reason))
        .collect();
    let mut bars: Vec<RawBar> = fetched
        .bars
        .into_iter()
        .filter(|b| b.ts >= start && b.ts < end)
        .collect();
    // Stable: among equal timestamps the order sent is kept, and the last one wins.
    bars.sort_by_key(|b| b.ts);
    let mut unique: Vec<RawBar> = Vec::with_capacity(bars.len());
    for b in bars {
        match unique.last_mut() {
            Some(last) if last.ts == b.ts => *last = b,
            _ => unique.push(b),
        }
    }
    let mut builder = BarBuilder::with_capacity(unique.len());
    for b in &unique {
        let pushed = builder.push_checked(
            interval, b.ts, b.open, b.high, b.low, b.close, b.volume, b.vwap, b.trades,
        );
        if let Err(rule) = pushed {
            quarantined.push(quarantine(Some(b), Some(b.ts), None, rule.to_string()));
        }
    }
    let rows = builder.len() as u64;
    let bars = (!builder.is_empty()).then(|| builder.finish());
    let last_bar = bars.as_ref().map(|b| {
        *crate::batch::ts_column(b)
            .values()
            .last()
            .expect("non-empty")
    });
    Checked {
        bars,
        rows,
        last_bar,
        quarantined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MICROS_PER_DAY;
    use crate::sync::provider::Rejected;

    fn bar(day: i64, close: f64) -> RawBar {
        RawBar {
            ts: day * MICROS_PER_DAY,
            open: close,
            high: close,
            low: close,
            close,
            volume: 1.0,
            vwap: None,
            trades: None,
        }
    }

    #[test]
    fn duplicates_order_range_and_bad_rows() {
        let fetched = Fetched {
            bars: vec![
                bar(3, 3.0),
                bar(1, 1.0),
                bar(3, 33.0), // sent later: wins
                bar(9, 9.0),  // outside the chunk: dropped
                bar(2, f64::NAN),
            ],
            rejected: vec![Rejected {
                ts: None,
                raw: "[null]".into(),
                reason: "close is null".into(),
            }],
            requests: 1,
        };
        let sym = Symbol::new("X").unwrap();
        let c = check_fetched(&sym, Interval::D1, (0, 5 * MICROS_PER_DAY), fetched, "t", 0);
        assert_eq!(c.rows, 2);
        assert_eq!(c.last_bar, Some(3 * MICROS_PER_DAY));
        let bars = c.bars.as_ref().unwrap();
        let closes = bars
            .column(4)
            .as_any()
            .downcast_ref::<arrow::array::Float64Array>()
            .unwrap();
        assert_eq!(closes.values().to_vec(), vec![1.0, 33.0]);
        assert_eq!(c.quarantined.len(), 2);
        assert!(
            c.quarantined[1].reason.contains("open is not a finite"),
            "{:?}",
            c.quarantined
        );
    }
}
