//! Adjusted reads, computed when reading and never stored.
//!
//! Stored bars are as traded; a read that asks for `adjust=splits|all` multiplies each bar by
//! the factors of the events after it (`factors`), picked by `plan` (which events, as of which
//! date) and applied to Arrow batches by `apply`. The one input that needs the store is a
//! dividend's previous close C; [`Adjuster`] reads it (from the symbol's daily bars when they
//! are stored, else from the series being read) and keeps it per series until the catalog, the
//! live rows of that series or the symbol's dividends change.

pub mod apply;
pub mod factors;
pub mod plan;
pub mod view;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Float64Type, TimestampMicrosecondType};
use chrono::NaiveDate;
use datafusion::common::ScalarValue;
use datafusion::prelude::{col, lit};
use futures::TryStreamExt;

pub use factors::{Factors, Multiplier, Step};
pub use plan::{Adjust, Adjustment, Applied, BadEvent, effective_time, parse_as_of};

use crate::actions::{ActionKind, ActionSet, ActionsTable, CorporateAction};
use crate::batch::SeriesKey;
use crate::calendar::Calendar;
use crate::catalog::Catalog;
use crate::error::ErrorKind;
use crate::live::Live;
use crate::model::{
    BARS_SCHEMA, COL_SYMBOL, COL_TIMEFRAME, COL_TS, Interval, MICROS_PER_DAY, Symbol,
};
use crate::query::QueryEngine;
use crate::storage::PartitionKey;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    BadEvent(#[from] BadEvent),
    #[error("reading the previous close of {symbol} before {ex_date}: {source}")]
    Read {
        symbol: String,
        ex_date: NaiveDate,
        source: datafusion::error::DataFusionError,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::BadEvent(_) => ErrorKind::InvalidCorporateAction,
            // Reading a previous close fails as a query would (a timeout, a resource limit).
            Error::Read { source, .. } => crate::query::datafusion_kind(source),
        }
    }
}

/// Which trading calendar a symbol follows (the sync registry knows); `None`: us-equity.
pub type CalendarLookup = Arc<dyn Fn(&Symbol) -> Option<Calendar> + Send + Sync>;

/// How far back a previous close is first looked for; a longer gap reads the whole series
/// before the ex-date.
const CLOSE_WINDOW_US: i64 = 14 * MICROS_PER_DAY;

/// The factors of a read, per symbol, and the events they apply.
#[derive(Debug, Default, Clone)]
pub struct ReadPlan {
    pub factors: HashMap<String, Arc<Factors>>,
    pub applied: Vec<Applied>,
}

/// What the previous closes of a series were computed from: they stay right while it is the
/// same.
#[derive(Debug, Clone, PartialEq)]
struct Basis {
    commit: u64,
    /// The live tier's LSN, when it held rows of a series the closes may come from.
    live_lsn: Option<u64>,
    dividends: Vec<CorporateAction>,
}

#[derive(Debug)]
struct Closes {
    basis: Basis,
    by_ex_date: HashMap<NaiveDate, Option<f64>>,
}

/// Plans adjusted reads for a store: finds the events, reads and caches previous closes.
pub struct Adjuster {
    engine: QueryEngine,
    catalog: Arc<Catalog>,
    live: Option<Arc<Live>>,
    actions: Arc<ActionsTable>,
    calendars: RwLock<Option<CalendarLookup>>,
    /// Per (symbol, interval read): the previous close of each dividend.
    closes: Mutex<HashMap<(Symbol, Interval), Arc<Closes>>>,
}

impl std::fmt::Debug for Adjuster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Adjuster").finish_non_exhaustive()
    }
}

impl Adjuster {
    pub fn new(
        engine: QueryEngine,
        catalog: Arc<Catalog>,
        live: Option<Arc<Live>>,
        actions: Arc<ActionsTable>,
    ) -> Self {
        Self {
            engine,
            catalog,
            live,
            actions,
            calendars: RwLock::new(None),
            closes: Mutex::new(HashMap::new()),
        }
    }

    pub fn actions(&self) -> &Arc<ActionsTable> {
        &self.actions
    }

    /// Where symbols' calendars come from (the sync registry sets this).
    pub fn set_calendars(&self, lookup: CalendarLookup) {
        *self.calendars.write().expect("calendars lock") = Some(lookup);
    }

    pub fn calendar(&self, symbol: &Symbol) -> Calendar {
        self.calendars
            .read()
            .expect("calendars lock")
            .as_ref()
            .and_then(|f| f(symbol))
            .unwrap_or(Calendar::UsEquity)
    }

    /// Series cached (for tests that check repeated reads hit the cache).
    pub fn cached_series(&self) -> usize {
        self.closes.lock().expect("closes lock").len()
    }

    /// The factors of each of `symbols` read at `interval` under `adjustment`, and the events
    /// that change bars at or after `start`.
    pub async fn plan_read(
        &self,
        symbols: &[String],
        interval: Interval,
        adjustment: &Adjustment,
        start: Option<i64>,
    ) -> Result<ReadPlan> {
        let mut out = ReadPlan::default();
        if adjustment.is_none() {
            return Ok(out);
        }
        let actions = self.actions.snapshot();
        for name in symbols {
            let Ok(symbol) = Symbol::new(name) else {
                continue;
            };
            if out.factors.contains_key(name) {
                continue;
            }
            let (factors, applied) = self
                .plan_series(&actions, &symbol, interval, adjustment)
                .await?;
            out.applied.extend(
                applied
                    .into_iter()
                    .filter(|a| start.is_none_or(|s| a.effective > s)),
            );
            if !factors.is_identity() {
                out.factors.insert(name.clone(), Arc::new(factors));
            }
        }
        Ok(out)
    }

    /// The factors of one series under `adjustment`, with the events `actions` holds.
    pub async fn plan_series(
        &self,
        actions: &ActionSet,
        symbol: &Symbol,
        interval: Interval,
        adjustment: &Adjustment,
    ) -> Result<(Factors, Vec<Applied>)> {
        let events = actions.for_symbol(symbol);
        if !events.iter().any(|e| adjustment.takes(e)) {
            return Ok((Factors::default(), Vec::new()));
        }
        let calendar = self.calendar(symbol);
        let needs_closes = events
            .iter()
            .any(|e| e.kind == ActionKind::Dividend && adjustment.takes(e));
        let closes = if needs_closes {
            Some(self.closes(symbol, interval, events, calendar).await?)
        } else {
            None
        };
        let close = |e: &CorporateAction| {
            closes
                .as_ref()
                .and_then(|c| c.by_ex_date.get(&e.ex_date).copied().flatten())
        };
        let effective = |d| effective_time(d, interval, calendar);
        Ok(plan::plan(events, adjustment, effective, close)?)
    }

    fn has_series(&self, key: &SeriesKey) -> bool {
        let partition = |year| PartitionKey {
            interval: key.interval,
            symbol: key.symbol.clone(),
            year,
        };
        let stored = self
            .catalog
            .snapshot()
            .partitions
            .range(partition(i32::MIN)..=partition(i32::MAX))
            .any(|(_, files)| !files.is_empty());
        stored || self.live_holds(key)
    }

    fn live_holds(&self, key: &SeriesKey) -> bool {
        self.live
            .as_ref()
            .is_some_and(|l| l.read().may_hold(key, i64::MIN, i64::MAX))
    }

    /// The series a dividend's previous close is read from, in order of preference: the
    /// symbol's daily bars when stored, then the series being read.
    fn close_sources(&self, symbol: &Symbol, interval: Interval) -> Vec<Interval> {
        let daily = SeriesKey {
            symbol: symbol.clone(),
            interval: Interval::D1,
        };
        if interval != Interval::D1 && self.has_series(&daily) {
            vec![Interval::D1, interval]
        } else {
            vec![interval]
        }
    }

    fn basis(
        &self,
        symbol: &Symbol,
        sources: &[Interval],
        dividends: Vec<CorporateAction>,
    ) -> Basis {
        let live_lsn = self.live.as_ref().and_then(|l| {
            let state = l.read();
            let touched = sources.iter().any(|&interval| {
                let key = SeriesKey {
                    symbol: symbol.clone(),
                    interval,
                };
                state.may_hold(&key, i64::MIN, i64::MAX)
            });
            touched.then_some(state.active.max_lsn)
        });
        Basis {
            commit: self.catalog.snapshot().seq.0,
            live_lsn,
            dividends,
        }
    }

    /// The previous close of every dividend of `symbol`, cached per series read.
    async fn closes(
        &self,
        symbol: &Symbol,
        interval: Interval,
        events: &[CorporateAction],
        calendar: Calendar,
    ) -> Result<Arc<Closes>> {
        let dividends: Vec<CorporateAction> = events
            .iter()
            .filter(|e| e.kind == ActionKind::Dividend)
            .cloned()
            .collect();
        let sources = self.close_sources(symbol, interval);
        let basis = self.basis(symbol, &sources, dividends);
        let key = (symbol.clone(), interval);
        if let Some(hit) = self.closes.lock().expect("closes lock").get(&key)
            && hit.basis == basis
        {
            return Ok(Arc::clone(hit));
        }
        let mut by_ex_date = HashMap::new();
        for d in &basis.dividends {
            let mut close = None;
            for &source in &sources {
                let before = effective_time(d.ex_date, source, calendar);
                close = self
                    .previous_close(symbol, source, before)
                    .await
                    .map_err(|e| Error::Read {
                        symbol: symbol.to_string(),
                        ex_date: d.ex_date,
                        source: e,
                    })?;
                if close.is_some() {
                    break;
                }
            }
            by_ex_date.insert(d.ex_date, close);
        }
        let closes = Arc::new(Closes { basis, by_ex_date });
        self.closes
            .lock()
            .expect("closes lock")
            .insert(key, Arc::clone(&closes));
        Ok(closes)
    }

    /// The raw close of the last bar of (symbol, interval) that opens before `before`.
    async fn previous_close(
        &self,
        symbol: &Symbol,
        interval: Interval,
        before: i64,
    ) -> datafusion::error::Result<Option<f64>> {
        for start in [Some(before.saturating_sub(CLOSE_WINDOW_US)), None] {
            if let Some(close) = self.last_close(symbol, interval, start, before).await? {
                return Ok(Some(close));
            }
        }
        Ok(None)
    }

    async fn last_close(
        &self,
        symbol: &Symbol,
        interval: Interval,
        start: Option<i64>,
        end: i64,
    ) -> datafusion::error::Result<Option<f64>> {
        let ts = BARS_SCHEMA.index_of(COL_TS)?;
        let close = BARS_SCHEMA.index_of("close")?;
        let stream = match self.engine.load_series(
            &[symbol.to_string()],
            interval,
            start,
            Some(end),
            &[ts, close],
        ) {
            Some(stream) => stream,
            // Live rows in the range: the planner lays them over the stored ones.
            None => {
                let ts_lit = |v: i64| {
                    lit(ScalarValue::TimestampMicrosecond(
                        Some(v),
                        Some("UTC".into()),
                    ))
                };
                let mut predicate = col(COL_SYMBOL)
                    .eq(lit(symbol.as_str()))
                    .and(col(COL_TIMEFRAME).eq(lit(interval.as_str())))
                    .and(col(COL_TS).lt(ts_lit(end)));
                if let Some(s) = start {
                    predicate = predicate.and(col(COL_TS).gt_eq(ts_lit(s)));
                }
                self.engine
                    .context()
                    .table("bars")
                    .await?
                    .filter(predicate)?
                    .select_columns(&[COL_TS, "close"])?
                    .sort(vec![col(COL_TS).sort(false, false)])?
                    .limit(0, Some(1))?
                    .execute_stream()
                    .await?
            }
        };
        let batches: Vec<RecordBatch> = stream.try_collect().await?;
        // The loader streams ascending; the plan above descending with one row: take the row
        // with the greatest ts either way.
        let mut best: Option<(i64, f64)> = None;
        for b in &batches {
            let t = b.column(0).as_primitive::<TimestampMicrosecondType>();
            let c = b.column(1).as_primitive::<Float64Type>();
            for i in 0..b.num_rows() {
                if best.is_none_or(|(bt, _)| t.value(i) > bt) {
                    best = Some((t.value(i), c.value(i)));
                }
            }
        }
        Ok(best.map(|(_, c)| c))
    }
}
