//! What the store adds to events given to it: the dividend rule against the bars it holds, and
//! the import of users' events as one commit.

use std::collections::BTreeMap;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, TimestampMicrosecondType};

use super::input::{SESSION_INTERVAL, SourcedEvent, check_previous_close, close_before, day_start};
use super::{ActionKind, Merged};
use crate::model::Symbol;
use crate::{LoadRequest, Result, Store};

impl Store {
    /// Checks `events` (every dividend against the previous close) and upserts them as one
    /// commit: all or nothing.
    pub async fn import_actions(&self, events: Vec<SourcedEvent>) -> Result<Merged> {
        self.check_previous_closes(&events).await?;
        let events = events.into_iter().map(|e| e.event).collect();
        Ok(self.actions().upsert(events).await?)
    }

    /// Refuses a dividend whose amount is not below the raw close of the last session before
    /// its ex-date: the one the input tells, else the store's daily bars (when it has some).
    pub(crate) async fn check_previous_closes(&self, events: &[SourcedEvent]) -> Result<()> {
        let mut ask: BTreeMap<&Symbol, Vec<&SourcedEvent>> = BTreeMap::new();
        for e in events {
            if e.event.kind != ActionKind::Dividend {
                continue;
            }
            match e.previous_close {
                Some(close) => check_previous_close(e, Some(close))?,
                None => ask.entry(&e.event.symbol).or_default().push(e),
            }
        }
        for (symbol, dividends) in ask {
            let last = dividends.iter().map(|e| e.event.ex_date).max();
            let request = LoadRequest {
                symbols: vec![symbol.as_str().to_string()],
                interval: SESSION_INTERVAL,
                start: None,
                end: last.map(day_start),
                columns: Some(vec!["ts".into(), "close".into()]),
            };
            let batches = self.load_bars_collect(&request).await?;
            let bars = session_closes(&batches);
            for e in dividends {
                let close = close_before(&bars, SESSION_INTERVAL, e.event.ex_date);
                check_previous_close(e, close)?;
            }
        }
        Ok(())
    }
}

/// (ts, close) of batches with those two columns, in time order.
fn session_closes(batches: &[RecordBatch]) -> Vec<(i64, f64)> {
    let mut bars: Vec<(i64, f64)> = batches
        .iter()
        .flat_map(|b| {
            let ts = b.column(0).as_primitive::<TimestampMicrosecondType>();
            let close = b.column(1).as_primitive::<Float64Type>();
            ts.values()
                .iter()
                .copied()
                .zip(close.values().iter().copied())
                .collect::<Vec<_>>()
        })
        .collect();
    bars.sort_by_key(|(ts, _)| *ts);
    bars
}
