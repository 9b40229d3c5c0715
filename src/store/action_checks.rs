//! What the store adds to events given to it: the dividend rule against the bars it holds, and
//! the import of users' events as one commit.

use std::collections::{BTreeMap, HashSet};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, TimestampMicrosecondType};

use super::{LoadRequest, Result, Store};
use crate::actions::input::{SESSION_INTERVAL, SourcedEvent, check_previous_close, close_before};
use crate::actions::{ActionKind, Merged, Refused};
use crate::adjust::Adjustment;
use crate::import::BadEvents;
use crate::model::Symbol;
use crate::model::time::date_us;

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
        match self
            .previous_close_failures(events)
            .await?
            .into_iter()
            .next()
        {
            Some((_, refused)) => Err(refused.into()),
            None => Ok(()),
        }
    }

    /// The events of an import, as `policy` has them: a dividend failing its previous close
    /// refuses the import, or with [`BadEvents::Skip`] joins `skipped` (each skipped event,
    /// of the files' rows or of this check, is logged).
    pub(crate) async fn screen_import_events(
        &self,
        events: Vec<SourcedEvent>,
        skipped: &mut Vec<Refused>,
        policy: BadEvents,
    ) -> Result<Vec<SourcedEvent>> {
        let events = match policy {
            BadEvents::Refuse => {
                self.check_previous_closes(&events).await?;
                events
            }
            BadEvents::Skip => {
                let mut failures = self.previous_close_failures(&events).await?;
                failures.sort_by_key(|(i, _)| *i);
                let bad: HashSet<usize> = failures.iter().map(|(i, _)| *i).collect();
                skipped.extend(failures.into_iter().map(|(_, r)| r));
                events
                    .into_iter()
                    .enumerate()
                    .filter(|(i, _)| !bad.contains(i))
                    .map(|(_, e)| e)
                    .collect()
            }
        };
        for r in skipped.iter() {
            tracing::warn!("corporate action skipped (--bad-events skip): {r}");
        }
        Ok(events)
    }

    /// Each dividend of `events` (by index) whose amount is not below its previous close, with
    /// the rule: those whose input tells the close first, in order, then those checked against
    /// the store's bars, by symbol.
    async fn previous_close_failures(
        &self,
        events: &[SourcedEvent],
    ) -> Result<Vec<(usize, Refused)>> {
        let mut failures = Vec::new();
        let mut ask: BTreeMap<&Symbol, Vec<(usize, &SourcedEvent)>> = BTreeMap::new();
        for (i, e) in events.iter().enumerate() {
            if e.event.kind != ActionKind::Dividend {
                continue;
            }
            match e.previous_close {
                Some(close) => {
                    if let Err(r) = check_previous_close(e, Some(close)) {
                        failures.push((i, r));
                    }
                }
                None => ask.entry(&e.event.symbol).or_default().push((i, e)),
            }
        }
        for (symbol, dividends) in ask {
            let last = dividends.iter().map(|(_, e)| e.event.ex_date).max();
            let request = LoadRequest {
                symbols: vec![symbol.as_str().to_string()],
                interval: SESSION_INTERVAL,
                start: None,
                end: last.map(date_us),
                columns: Some(vec!["ts".into(), "close".into()]),
                adjustment: Adjustment::NONE,
            };
            let batches = self.load_bars_collect(&request).await?;
            let bars = session_closes(&batches);
            for (i, e) in dividends {
                let close = close_before(&bars, SESSION_INTERVAL, e.event.ex_date);
                if let Err(r) = check_previous_close(e, close) {
                    failures.push((i, r));
                }
            }
        }
        Ok(failures)
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
