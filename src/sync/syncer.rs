//! The stage 2 service: the registry, the ledger and the providers together. It plans what each
//! tracked series lacks, fetches it chunk by chunk, writes it through the normal write path and
//! only then records what it learned, so a crash costs at most the chunks in flight.
//!
//! Each backfill also refreshes the corporate actions of the symbols it looks at (one events
//! request per symbol and sync at most, Polygon two: splits and dividends), so a new split is
//! known without refetching bars, and gives the splits to adapters whose prices come adjusted
//! (Yahoo) so they return bars as traded.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Serialize;

use super::gaps;
use super::log::{self, SyncLog};
use super::provider::{FetchError, FetchRequest, KnownSplits, Provider, Upstream, UpstreamPolicy};
use super::registry::{
    Covered, Op, SeriesId, SeriesState, SeriesStatus, SymbolSpec, SyncRun, SyncState,
};
use super::validate::{Checked, check_fetched};
use crate::actions::{ActionKind, CorporateAction, check_amount_below_close};
use crate::batch::{SeriesBatch, SeriesKey};
use crate::calendar::Calendar;
use crate::clock::{Clock, micros};
use crate::model::time::{date_us, rfc3339};
use crate::model::{Interval, MICROS_PER_DAY, Symbol};
use crate::{LoadRequest, Store};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Log(#[from] log::Error),
    #[error(transparent)]
    Store(#[from] crate::Error),
    #[error("storing corporate actions: {0}")]
    Actions(#[from] crate::actions::table::Error),
    #[error("{0}")]
    Invalid(String),
    #[error("{0} is not tracked")]
    NotTracked(Symbol),
    /// A fetch task panicked or was cancelled (the message says which, and a panic's message).
    #[error("a fetch task failed: {0}")]
    FetchTask(#[from] tokio::task::JoinError),
    #[error("registering the sync tables: {0}")]
    Tables(datafusion::error::DataFusionError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn kind(&self) -> crate::error::ErrorKind {
        use crate::error::ErrorKind;
        match self {
            Error::Log(e) => e.kind(),
            Error::Store(e) => e.kind(),
            Error::Actions(e) => e.kind(),
            Error::Invalid(_) => ErrorKind::InvalidInput,
            Error::NotTracked(_) => ErrorKind::NotTracked,
            Error::FetchTask(_) | Error::Tables(_) => ErrorKind::Internal,
        }
    }
}

/// How the stage 2 job behaves.
#[derive(Debug, Clone)]
pub struct SyncOptions {
    /// A series whose last successful sync is older than this is stale.
    pub stale_after: Duration,
    /// A failing series waits `retry_base · 2^(attempts-1)`, at most `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Bars that ended less than this ago and came back empty may still be published: their
    /// range is asked again next time instead of being recorded as known-empty.
    pub settle: Duration,
    /// Chunks fetched at once across all providers (each provider also has its own bound).
    pub concurrency: usize,
    /// For reads that fill symbols nobody registered.
    pub default_provider: Option<String>,
    /// A backfill asks again for the corporate actions of a symbol whose events this process
    /// last read longer ago than this (and always when its provider needs the splits to return
    /// raw bars of this sync: Yahoo).
    pub actions_every: Duration,
    /// The time of day for retry schedules, coverage, the ledger's commits and the providers'
    /// circuit breakers; `None` is the store's clock.
    pub clock: Option<Arc<dyn Clock>>,
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            stale_after: Duration::from_secs(3 * 3600),
            retry_base: Duration::from_secs(60),
            retry_max: Duration::from_secs(3600),
            settle: Duration::from_secs(3600),
            concurrency: 16,
            default_provider: None,
            actions_every: Duration::from_secs(24 * 3600),
            clock: None,
        }
    }
}

/// A configured provider: its adapter and its HTTP client with its policy.
#[derive(Debug)]
pub struct ProviderHandle {
    pub name: String,
    pub adapter: Arc<dyn Provider>,
    pub upstream: Upstream,
    /// Requests for corporate actions since start (also in the upstream's request count).
    action_requests: AtomicU64,
}

impl ProviderHandle {
    pub fn new(name: &str, adapter: Arc<dyn Provider>, policy: UpstreamPolicy) -> Self {
        Self {
            name: name.to_string(),
            adapter,
            upstream: Upstream::new(name, policy),
            action_requests: AtomicU64::new(0),
        }
    }

    /// Requests for corporate actions since start.
    pub fn action_requests(&self) -> u64 {
        self.action_requests.load(Ordering::Relaxed)
    }
}

/// Which series a backfill looks at and how.
#[derive(Debug, Clone, Default)]
pub struct BackfillRequest {
    /// Only these symbols (all tracked ones when `None`).
    pub symbols: Option<Vec<Symbol>>,
    /// Only this range `[start, end)` (µs UTC) instead of the whole history.
    pub range: Option<(i64, i64)>,
    /// Fetch the range again even where it is stored or covered.
    pub force: bool,
}

/// What a backfill (or a fill on read) did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BackfillSummary {
    pub series_checked: usize,
    pub series_fetched: usize,
    pub chunks: usize,
    pub requests: u64,
    pub rows: u64,
    pub quarantined: u64,
    /// `symbol interval: error` for each series that failed.
    pub failures: Vec<String>,
    /// The ranges fetched, `symbol interval start..end` (RFC 3339).
    pub fetched: Vec<String>,
    /// Of `requests`, those for corporate actions.
    pub action_requests: u64,
    /// Corporate actions new or changed in the store.
    pub actions_stored: u64,
    /// Events a provider sent that broke a rule (logged, never stored).
    pub actions_rejected: u64,
    /// Events two sources disagree on (logged; the stored one is kept).
    pub action_disagreements: u64,
    /// `symbol: error` for each symbol whose events could not be read.
    pub action_failures: Vec<String>,
    pub duration_ms: f64,
}

/// The plan for one series: what to ask its provider for.
struct SeriesPlan {
    id: SeriesId,
    provider: Arc<ProviderHandle>,
    chunks: Vec<(i64, i64)>,
    /// The provider's splits of the symbol, read in this sync (for [`Provider::needs_splits`]).
    splits: Option<Arc<KnownSplits>>,
}

/// A symbol whose corporate actions a sync asks for, over `[since, today]`.
struct ActionsTarget {
    symbol: Symbol,
    provider: Arc<ProviderHandle>,
    since: i64,
}

/// A chunk after its fetch.
struct ChunkResult {
    id: SeriesId,
    chunk: (i64, i64),
    provider: String,
    outcome: std::result::Result<Checked, FetchError>,
    requests: u32,
}

pub struct Syncer {
    store: Arc<Store>,
    log: Arc<SyncLog>,
    providers: BTreeMap<String, Arc<ProviderHandle>>,
    options: SyncOptions,
    /// Reads per symbol since start: the most-read symbols are synced first.
    reads: Arc<Mutex<HashMap<Symbol, u64>>>,
    /// One backfill at a time; fills on read run beside it.
    backfill_lock: tokio::sync::Mutex<()>,
    /// When this process last read each symbol's corporate actions (µs UTC).
    actions_read: Mutex<HashMap<Symbol, i64>>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Syncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Syncer")
            .field("providers", &self.providers.keys())
            .finish_non_exhaustive()
    }
}

impl Syncer {
    pub async fn open(
        store: Arc<Store>,
        providers: Vec<ProviderHandle>,
        options: SyncOptions,
    ) -> Result<Self> {
        let clock = Arc::clone(options.clock.as_ref().unwrap_or(store.clock()));
        let log = Arc::new(
            SyncLog::load(Arc::clone(store.object_store()))
                .await?
                .with_clock(Arc::clone(&clock)),
        );
        let reads = Arc::new(Mutex::new(HashMap::new()));
        super::tables::register(store.engine(), &log, &reads, micros(options.stale_after))
            .map_err(Error::Tables)?;
        // Adjusted intraday reads date an ex-date in the symbol's calendar time zone.
        let registry = Arc::clone(&log);
        store.adjuster().set_calendars(Arc::new(move |symbol| {
            registry
                .state()
                .symbols
                .get(symbol)
                .map(|spec| spec.calendar)
        }));
        Ok(Self {
            store,
            log,
            providers: providers
                .into_iter()
                .map(|mut p| {
                    p.upstream.set_clock(Arc::clone(&clock));
                    (p.name.clone(), Arc::new(p))
                })
                .collect(),
            options,
            reads,
            backfill_lock: tokio::sync::Mutex::new(()),
            actions_read: Mutex::new(HashMap::new()),
            clock,
        })
    }

    pub fn options(&self) -> &SyncOptions {
        &self.options
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The clock the syncer (and its providers' circuit breakers) read the time from.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The current state (registry, ledger, quarantine, runs).
    pub fn state(&self) -> Arc<SyncState> {
        self.log.state()
    }

    /// Reads what other processes (a CLI beside a server) committed.
    pub async fn refresh(&self) -> Result<Arc<SyncState>> {
        Ok(self.log.refresh().await?)
    }

    pub fn providers(&self) -> impl Iterator<Item = &Arc<ProviderHandle>> {
        self.providers.values()
    }

    fn provider(&self, name: &str) -> Result<&Arc<ProviderHandle>> {
        self.providers.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.providers.keys().map(String::as_str).collect();
            Error::Invalid(format!(
                "unknown provider {name:?} (configured: {})",
                if known.is_empty() {
                    "none; add a [providers.NAME] table to the config".to_string()
                } else {
                    known.join(", ")
                }
            ))
        })
    }

    /// Counts a read of these symbols (popularity orders the backfill).
    pub fn note_reads<'a>(&self, symbols: impl IntoIterator<Item = &'a Symbol>) {
        let mut reads = self.reads.lock().expect("reads lock");
        for s in symbols {
            *reads.entry(s.clone()).or_default() += 1;
        }
    }

    pub fn reads_of(&self, symbol: &Symbol) -> u64 {
        self.reads
            .lock()
            .expect("reads lock")
            .get(symbol)
            .copied()
            .unwrap_or(0)
    }

    /// Starts tracking a symbol (or changes how). Checked before anything is recorded.
    pub async fn track(&self, spec: SymbolSpec) -> Result<()> {
        let provider = self.provider(&spec.provider)?;
        if spec.intervals.is_empty() {
            return Err(Error::Invalid("timeframes: give at least one".into()));
        }
        if let Some(i) = spec
            .intervals
            .iter()
            .find(|i| !provider.adapter.supports(**i))
        {
            return Err(Error::Invalid(format!(
                "provider {} ({}) does not serve {i} bars",
                spec.provider,
                provider.adapter.kind()
            )));
        }
        self.log.commit(vec![Op::Track { spec }]).await?;
        Ok(())
    }

    /// Stops tracking a symbol. With `purge` its bars and coverage go too: the ledger forgets
    /// first, so a crash in between can only leave bars that a sync would not fetch again.
    pub async fn untrack(&self, symbol: &Symbol, purge: bool) -> Result<u64> {
        let state = self.log.refresh().await?;
        let Some(spec) = state.symbols.get(symbol) else {
            return Err(Error::NotTracked(symbol.clone()));
        };
        let intervals = spec.intervals.clone();
        self.log
            .commit(vec![Op::Untrack {
                symbol: symbol.clone(),
                purge,
            }])
            .await?;
        let mut deleted = 0;
        if purge {
            for interval in intervals {
                deleted += self
                    .store
                    .delete_range(symbol, interval, i64::MIN + 1, i64::MAX)
                    .await?
                    .rows;
            }
        }
        Ok(deleted)
    }

    /// Deletes stored bars in `[start, end)`; the ledger forgets the range first, so stage 2
    /// heals it if the symbol is tracked.
    pub async fn delete_bars(
        &self,
        symbol: &Symbol,
        interval: Interval,
        start: i64,
        end: i64,
    ) -> Result<crate::delete::DeleteSummary> {
        if start >= end {
            return Err(Error::Invalid("start must be before end".into()));
        }
        self.log
            .commit(vec![Op::Forget {
                symbol: symbol.clone(),
                interval,
                start,
                end,
            }])
            .await?;
        Ok(self
            .store
            .delete_range(symbol, interval, start, end)
            .await?)
    }

    /// Records a job run in `sync_runs`.
    pub async fn record_run(&self, run: SyncRun) -> Result<()> {
        self.log.commit(vec![Op::Run { run }]).await?;
        Ok(())
    }

    /// Stage 2: for each tracked series (most read first), fetch what it lacks.
    pub async fn backfill(&self, request: &BackfillRequest) -> Result<BackfillSummary> {
        let _one_at_a_time = self.backfill_lock.lock().await;
        let started = Instant::now();
        let state = self.log.refresh().await?;
        let now = self.clock.now_micros();
        let mut series: Vec<(SeriesId, &SymbolSpec)> = state
            .status
            .iter()
            .filter_map(|(id, status)| {
                let spec = state.symbols.get(&id.0)?;
                if let Some(only) = &request.symbols
                    && !only.contains(&id.0)
                {
                    return None;
                }
                // A failing series waits out its backoff unless asked for by name.
                let waiting = status.next_retry.is_some_and(|t| t > now);
                (!waiting || request.symbols.is_some()).then_some((id.clone(), spec))
            })
            .collect();
        {
            let reads = self.reads.lock().expect("reads lock");
            series.sort_by_key(|(id, _)| {
                let status = &state.status[id];
                (
                    std::cmp::Reverse(reads.get(&id.0).copied().unwrap_or(0)),
                    status.last_update.unwrap_or(i64::MIN),
                )
            });
        }
        let mut plans = Vec::with_capacity(series.len());
        for (id, spec) in &series {
            let provider = Arc::clone(self.provider(&spec.provider)?);
            let range = request.range.unwrap_or((spec.since, i64::MAX));
            let start = range.0.max(spec.since);
            let chunks = self
                .plan(
                    &state,
                    id,
                    spec.calendar,
                    &provider,
                    (start, range.1),
                    request.force,
                    now,
                )
                .await?;
            plans.push(SeriesPlan {
                id: id.clone(),
                provider,
                chunks,
                splits: None,
            });
        }
        let mut summary = BackfillSummary {
            series_checked: plans.len(),
            ..Default::default()
        };
        let since: HashMap<&Symbol, i64> = series.iter().map(|(id, s)| (&id.0, s.since)).collect();
        let targets = self.actions_targets(&plans, |s| since.get(s).copied(), now);
        let events = self.read_actions(targets, &mut plans, &mut summary).await;
        // Series with work to do show as backfilling while it runs.
        let starting: Vec<Op> = plans
            .iter()
            .filter(|p| !p.chunks.is_empty())
            .filter_map(|p| {
                let mut status = state.status.get(&p.id)?.clone();
                (status.state == SeriesState::New).then(|| {
                    status.state = SeriesState::Backfilling;
                    status_op(&p.id, status)
                })
            })
            .collect();
        self.log.commit(starting).await?;
        let outcome = self.execute(plans, &mut summary, true).await;
        // Stored after the bars, so dividends are checked against the closes just fetched.
        self.store_actions(events, &mut summary).await?;
        summary.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        outcome.map(|_| summary)
    }

    /// Read-through: fetches what `symbols` lack in `[start, end)` before a read answers. A
    /// symbol nobody registered uses the default provider and a calendar that fits it.
    pub async fn fill(
        &self,
        symbols: &[Symbol],
        interval: Interval,
        start: i64,
        end: i64,
    ) -> Result<BackfillSummary> {
        let started = Instant::now();
        let state = self.log.refresh().await?;
        let now = self.clock.now_micros();
        let mut plans = Vec::new();
        for symbol in symbols {
            let (provider, calendar) = match state.symbols.get(symbol) {
                Some(spec) => (self.provider(&spec.provider)?, spec.calendar),
                None => {
                    let name = self.options.default_provider.as_deref().ok_or_else(|| {
                        Error::Invalid(format!(
                            "fill: {symbol} is not tracked and no default_provider is configured"
                        ))
                    })?;
                    let provider = self.provider(name)?;
                    (provider, default_calendar(provider.adapter.kind()))
                }
            };
            if !provider.adapter.supports(interval) {
                return Err(Error::Invalid(format!(
                    "fill: provider {} does not serve {interval} bars",
                    provider.name
                )));
            }
            let id = (symbol.clone(), interval);
            let provider = Arc::clone(provider);
            let chunks = self
                .plan(&state, &id, calendar, &provider, (start, end), false, now)
                .await?;
            plans.push(SeriesPlan {
                id,
                provider,
                chunks,
                splits: None,
            });
        }
        let mut summary = BackfillSummary {
            series_checked: plans.len(),
            ..Default::default()
        };
        let targets = self.actions_targets(
            &plans,
            // A read may reach before the tracked `since`: Yahoo needs every split after it.
            |s| {
                Some(
                    state
                        .symbols
                        .get(s)
                        .map_or(start, |spec| spec.since.min(start)),
                )
            },
            now,
        );
        let events = self.read_actions(targets, &mut plans, &mut summary).await;
        self.execute(plans, &mut summary, false).await?;
        self.store_actions(events, &mut summary).await?;
        summary.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        Ok(summary)
    }

    /// What every read of bars does first: counts the read (popularity orders the backfill)
    /// and, with `fill`, fetches what the symbols lack in `[start, end)` (a start is needed;
    /// the end defaults to now).
    pub async fn before_read(
        &self,
        symbols: &[Symbol],
        interval: Interval,
        (start, end): (Option<i64>, Option<i64>),
        fill: bool,
    ) -> Result<Option<BackfillSummary>> {
        self.note_reads(symbols);
        if !fill {
            return Ok(None);
        }
        let start = start.ok_or_else(|| Error::Invalid("start: fill needs a start".into()))?;
        let end = end.unwrap_or_else(|| self.clock.now_micros());
        Ok(Some(self.fill(symbols, interval, start, end).await?))
    }

    /// The backtest loader with read-through: [`Syncer::before_read`], then the bars as
    /// [`Store::load_bars`] streams them.
    pub async fn load_bars(
        &self,
        request: &LoadRequest,
        fill: bool,
    ) -> Result<(
        Option<BackfillSummary>,
        datafusion::execution::SendableRecordBatchStream,
    )> {
        let symbols = request
            .symbols
            .iter()
            .map(|s| Symbol::new(s).map_err(|e| Error::Invalid(format!("symbol {s:?}: {e}"))))
            .collect::<Result<Vec<_>>>()?;
        let range = (request.start, request.end);
        let filled = self
            .before_read(&symbols, request.interval, range, fill)
            .await?;
        Ok((filled, self.store.load_bars(request).await?))
    }

    /// The live updater: the newest bars of tracked intraday series, since the last bar a sync
    /// stored (at most `LIVE_LOOKBACK` back), into the live tier, so `latest` and queries see
    /// them within one interval of the job. Nothing is recorded as covered: bars of the current
    /// day may still change upstream, and stage 2 settles them later.
    pub async fn live_update(&self) -> Result<BackfillSummary> {
        const LIVE_LOOKBACK: i64 = 24 * 3600 * 1_000_000;
        let started = Instant::now();
        let state = self.log.refresh().await?;
        let now = self.clock.now_micros();
        let mut summary = BackfillSummary::default();
        let mut series = Vec::new();
        for ((symbol, interval), status) in &state.status {
            let Some(spec) = state.symbols.get(symbol) else {
                continue;
            };
            if !interval.is_intraday() || status.next_retry.is_some_and(|t| t > now) {
                continue;
            }
            let provider = Arc::clone(self.provider(&spec.provider)?);
            let start = status
                .last_bar
                .map_or(now - LIVE_LOOKBACK, |t| t.max(now - LIVE_LOOKBACK))
                .max(spec.since);
            series.push(((symbol.clone(), *interval), provider, (start, now)));
        }
        summary.series_checked = series.len();
        let failed = Arc::new(Mutex::new(HashSet::new()));
        let results: Vec<_> = futures::stream::iter(series)
            .map(|(id, provider, chunk)| {
                let failed = Arc::clone(&failed);
                tokio::spawn(async move { fetch_chunk(id, provider, chunk, None, failed).await })
            })
            .buffer_unordered(self.options.concurrency.max(1))
            .collect()
            .await;
        let mut batches = Vec::new();
        let mut ops = Vec::new();
        for result in results {
            let Some(result) = result? else {
                continue;
            };
            summary.requests += u64::from(result.requests);
            summary.chunks += 1;
            match result.outcome {
                Ok(checked) => {
                    summary.rows += checked.rows;
                    summary.quarantined += checked.quarantined.len() as u64;
                    if !checked.quarantined.is_empty() {
                        ops.push(Op::Quarantine {
                            rows: checked.quarantined,
                        });
                    }
                    if let Some(bars) = checked.bars {
                        summary.series_fetched += 1;
                        batches.push(SeriesBatch {
                            key: SeriesKey {
                                symbol: result.id.0.clone(),
                                interval: result.id.1,
                            },
                            batch: bars,
                        });
                    }
                }
                Err(e) => summary
                    .failures
                    .push(format!("{} {}: {e}", result.id.0, result.id.1)),
            }
        }
        if !batches.is_empty() {
            if self.store.live().is_some() {
                self.store.ingest(batches).await?;
            } else {
                self.store.write_series(batches, "live").await?;
            }
        }
        self.log.commit(ops).await?;
        summary.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        Ok(summary)
    }

    /// The symbols of `plans` whose corporate actions this sync reads: those whose provider
    /// serves them and that were not read within `actions_every`, or whose provider needs the
    /// splits to return raw bars for a chunk of this sync. One per symbol.
    fn actions_targets(
        &self,
        plans: &[SeriesPlan],
        since: impl Fn(&Symbol) -> Option<i64>,
        now: i64,
    ) -> Vec<ActionsTarget> {
        let read = self.actions_read.lock().expect("actions lock");
        let every = micros(self.options.actions_every);
        let mut targets: BTreeMap<&Symbol, ActionsTarget> = BTreeMap::new();
        for plan in plans {
            let adapter = &plan.provider.adapter;
            if !adapter.serves_actions() || targets.contains_key(&plan.id.0) {
                continue;
            }
            let stale = read.get(&plan.id.0).is_none_or(|t| now - t >= every);
            let needed = adapter.needs_splits() && !plan.chunks.is_empty();
            if let (true, Some(since)) = (stale || needed, since(&plan.id.0)) {
                targets.insert(
                    &plan.id.0,
                    ActionsTarget {
                        symbol: plan.id.0.clone(),
                        provider: Arc::clone(&plan.provider),
                        since,
                    },
                );
            }
        }
        targets.into_values().collect()
    }

    /// Reads the corporate actions of `targets` (one request per symbol, Polygon two), hands
    /// each symbol's splits to its plans when their adapter needs them, and returns the valid
    /// events to store. A symbol whose events cannot be read is reported in `action_failures`;
    /// its bars are still fetched (an adapter that needs the splits then asks for them itself).
    async fn read_actions(
        &self,
        targets: Vec<ActionsTarget>,
        plans: &mut [SeriesPlan],
        summary: &mut BackfillSummary,
    ) -> Vec<CorporateAction> {
        if targets.is_empty() {
            return Vec::new();
        }
        let today = self.clock.now().date_naive();
        let clock = &self.clock;
        let results: Vec<_> = futures::stream::iter(targets)
            .map(|t| async move {
                let since = chrono::DateTime::from_timestamp_micros(t.since)
                    .map_or(chrono::NaiveDate::MIN, |d| d.date_naive());
                let before = t.provider.upstream.stats().requests;
                let asked_at = clock.now_micros();
                let result = t
                    .provider
                    .adapter
                    .fetch_actions(&t.provider.upstream, &t.symbol, since.min(today), today)
                    .await;
                let requests = match &result {
                    Ok(f) => u64::from(f.requests),
                    Err(_) => t.provider.upstream.stats().requests.saturating_sub(before),
                };
                t.provider
                    .action_requests
                    .fetch_add(requests, Ordering::Relaxed);
                (t, asked_at, requests, result)
            })
            .buffer_unordered(self.options.concurrency.max(1))
            .collect()
            .await;
        let mut events = Vec::new();
        let mut splits: HashMap<Symbol, Arc<KnownSplits>> = HashMap::new();
        for (target, asked_at, requests, result) in results {
            summary.requests += requests;
            summary.action_requests += requests;
            let fetched = match result {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!("corporate actions of {}: {e}", target.symbol);
                    summary
                        .action_failures
                        .push(format!("{}: {e}", target.symbol));
                    continue;
                }
            };
            for rejected in &fetched.rejected {
                tracing::warn!(
                    "provider {} sent a corporate action of {} that is refused ({}): {}",
                    target.provider.name,
                    target.symbol,
                    rejected.reason,
                    rejected.raw
                );
            }
            summary.actions_rejected += fetched.rejected.len() as u64;
            let mut actions = fetched.actions;
            // Only the asked symbol's events with an ex-date that has come.
            actions.retain(|a| a.symbol == target.symbol && a.ex_date <= today);
            for a in &mut actions {
                a.source = target.provider.name.clone();
            }
            if target.provider.adapter.needs_splits() {
                splits.insert(
                    target.symbol.clone(),
                    Arc::new(KnownSplits::from_actions(&actions, asked_at)),
                );
            }
            self.actions_read
                .lock()
                .expect("actions lock")
                .insert(target.symbol.clone(), asked_at);
            events.extend(actions);
        }
        for plan in plans.iter_mut() {
            plan.splits = splits.get(&plan.id.0).cloned();
        }
        events
    }

    /// Upserts provider events into the store in one commit, after refusing each dividend that
    /// is not below the stored daily close of the last session before its ex-date (checked
    /// where that close is stored).
    async fn store_actions(
        &self,
        mut events: Vec<CorporateAction>,
        summary: &mut BackfillSummary,
    ) -> Result<()> {
        let refused = self.check_dividends(&mut events).await?;
        summary.actions_rejected += refused as u64;
        if !events.is_empty() {
            let merged = self.store.actions().upsert(events).await?;
            summary.actions_stored += (merged.inserted + merged.updated) as u64;
            summary.action_disagreements += merged.disagreements.len() as u64;
            for d in &merged.disagreements {
                tracing::warn!(
                    "sources disagree on the {} of {} on {}: {} says {:?}/{:?}, {} says {:?}/{:?}; kept {}",
                    d.stored.kind,
                    d.stored.symbol,
                    d.stored.ex_date,
                    d.stored.source,
                    d.stored.ratio,
                    d.stored.amount,
                    d.incoming.source,
                    d.incoming.ratio,
                    d.incoming.amount,
                    if d.replaced {
                        &d.incoming.source
                    } else {
                        &d.stored.source
                    },
                );
            }
        }
        Ok(())
    }

    /// Removes the dividends among `events` whose amount is not below the stored raw daily close
    /// of the last session before their ex-date (the back-adjustment factor 1 - amount/close
    /// would be <= 0), logging each; returns how many. Dividends with no stored close within two
    /// weeks before them are kept unchecked.
    async fn check_dividends(&self, events: &mut Vec<CorporateAction>) -> Result<usize> {
        const LOOKBACK_DAYS: i64 = 14;
        let mut by_symbol: BTreeMap<Symbol, (chrono::NaiveDate, chrono::NaiveDate)> =
            BTreeMap::new();
        for e in events.iter().filter(|e| e.kind == ActionKind::Dividend) {
            let span = by_symbol
                .entry(e.symbol.clone())
                .or_insert((e.ex_date, e.ex_date));
            span.0 = span.0.min(e.ex_date);
            span.1 = span.1.max(e.ex_date);
        }
        let mut closes: HashMap<Symbol, BTreeMap<i64, f64>> = HashMap::new();
        for (symbol, (first, last)) in by_symbol {
            let start = date_us(first) - LOOKBACK_DAYS * MICROS_PER_DAY;
            closes.insert(
                symbol.clone(),
                self.stored_closes(&symbol, start, date_us(last)).await?,
            );
        }
        let before = events.len();
        events.retain(|e| {
            let (ActionKind::Dividend, Some(amount)) = (e.kind, e.amount) else {
                return true;
            };
            let ex = date_us(e.ex_date);
            let previous = closes
                .get(&e.symbol)
                .and_then(|c| c.range(ex - LOOKBACK_DAYS * MICROS_PER_DAY..ex).next_back());
            match previous.map(|(_, close)| check_amount_below_close(amount, *close)) {
                Some(Err(rule)) => {
                    tracing::warn!(
                        "provider {} sent a dividend of {} on {} that is refused: {rule}",
                        e.source,
                        e.symbol,
                        e.ex_date
                    );
                    false
                }
                _ => true,
            }
        });
        Ok(before - events.len())
    }

    /// Closes of the stored daily bars of a symbol with open time in `[start, end)`, by ts.
    async fn stored_closes(
        &self,
        symbol: &Symbol,
        start: i64,
        end: i64,
    ) -> Result<BTreeMap<i64, f64>> {
        let batches = self
            .store
            .load_bars_collect(&LoadRequest {
                symbols: vec![symbol.to_string()],
                interval: Interval::D1,
                start: Some(start),
                end: Some(end),
                columns: Some(vec!["ts".into(), "close".into()]),
                adjustment: crate::adjust::Adjustment::NONE,
            })
            .await?;
        let mut out = BTreeMap::new();
        for b in &batches {
            let ts = b
                .column(0)
                .as_any()
                .downcast_ref::<arrow::array::TimestampMicrosecondArray>()
                .expect("ts column");
            let close = b
                .column(1)
                .as_any()
                .downcast_ref::<arrow::array::Float64Array>()
                .expect("close column");
            for i in 0..b.num_rows() {
                out.insert(ts.value(i), close.value(i));
            }
        }
        Ok(out)
    }

    /// The chunks one series needs in `range`: expected bars not covered and not stored.
    #[allow(clippy::too_many_arguments)]
    async fn plan(
        &self,
        state: &SyncState,
        id: &SeriesId,
        calendar: Calendar,
        provider: &ProviderHandle,
        range: (i64, i64),
        force: bool,
        now: i64,
    ) -> Result<Vec<(i64, i64)>> {
        let (symbol, interval) = (&id.0, id.1);
        let start = range.0;
        let end = range.1.min(gaps::horizon(interval, now));
        if start >= end {
            return Ok(Vec::new());
        }
        let max_range = provider.adapter.max_range(interval);
        if force {
            return Ok(gaps::forced_chunks(
                calendar, interval, start, end, max_range,
            ));
        }
        let covered = state.covered_spans(id);
        let expected = gaps::expected_uncovered(calendar, interval, start, end, &covered);
        let (Some(first), Some(last)) = (expected.first(), expected.last()) else {
            return Ok(Vec::new());
        };
        let stored = self
            .stored_timestamps(symbol, interval, *first, last + 1)
            .await?;
        let missing = gaps::missing(&expected, &stored);
        Ok(gaps::chunks(&missing, interval, max_range))
    }

    /// Open times of the bars stored for a series in `[start, end)`, ascending.
    async fn stored_timestamps(
        &self,
        symbol: &Symbol,
        interval: Interval,
        start: i64,
        end: i64,
    ) -> Result<Vec<i64>> {
        let batches = self
            .store
            .load_bars_collect(&LoadRequest {
                symbols: vec![symbol.to_string()],
                interval,
                start: Some(start),
                end: Some(end),
                columns: Some(vec!["ts".into()]),
                adjustment: crate::adjust::Adjustment::NONE,
            })
            .await?;
        let mut out = Vec::new();
        for b in &batches {
            let ts = b
                .column(0)
                .as_any()
                .downcast_ref::<arrow::array::TimestampMicrosecondArray>()
                .expect("ts column");
            out.extend_from_slice(ts.values());
        }
        Ok(out)
    }

    /// Fetches every chunk of the plans, writes the bars in batches, then records coverage and
    /// status. `update_status` is false for fills on read (they do not speak for the series).
    async fn execute(
        &self,
        plans: Vec<SeriesPlan>,
        summary: &mut BackfillSummary,
        update_status: bool,
    ) -> Result<()> {
        let state = self.log.state();
        let now = self.clock.now_micros();
        let mut ctx = RunContext::default();
        let mut nothing_to_do = Vec::new();
        let mut jobs = Vec::new();
        for plan in plans {
            let status = state.status.get(&plan.id).cloned().unwrap_or_default();
            if plan.chunks.is_empty() {
                if update_status {
                    nothing_to_do.push(status_op(&plan.id, succeeded(status, now)));
                }
                continue;
            }
            summary.series_fetched += 1;
            summary.chunks += plan.chunks.len();
            ctx.remaining.insert(plan.id.clone(), plan.chunks.len());
            ctx.statuses.insert(plan.id.clone(), status);
            for chunk in plan.chunks {
                jobs.push((
                    plan.id.clone(),
                    Arc::clone(&plan.provider),
                    chunk,
                    plan.splits.clone(),
                ));
            }
        }
        self.log.commit(nothing_to_do).await?;
        let failed_set = Arc::clone(&ctx.failed);
        let mut results = futures::stream::iter(jobs)
            .map(move |(id, provider, chunk, splits)| {
                let failed = Arc::clone(&failed_set);
                tokio::spawn(async move { fetch_chunk(id, provider, chunk, splits, failed).await })
            })
            .buffer_unordered(self.options.concurrency.max(1));
        let mut batch = WriteBatch::default();
        // Group commit: take every chunk that is ready, write them together, repeat. When
        // fetching is the slow part each chunk is written as soon as it arrives, so a crash
        // costs only chunks in flight; when writing is, chunks queue up and share a commit.
        while let Some(first) = results.next().await {
            let mut ready = vec![first];
            while ready.len() < 256 {
                match futures::FutureExt::now_or_never(results.next()) {
                    Some(Some(more)) => ready.push(more),
                    _ => break,
                }
            }
            for result in ready {
                let Some(result) = result? else {
                    continue; // skipped: its series already failed
                };
                self.take_result(result, &mut batch, &mut ctx, summary, update_status, now);
            }
            self.flush(&mut batch).await?;
        }
        Ok(())
    }

    /// Folds one fetched chunk into the summary, the series' status and the write batch.
    fn take_result(
        &self,
        result: ChunkResult,
        batch: &mut WriteBatch,
        ctx: &mut RunContext,
        summary: &mut BackfillSummary,
        update_status: bool,
        now: i64,
    ) {
        summary.requests += u64::from(result.requests);
        let status = ctx.statuses.get_mut(&result.id).expect("planned series");
        status.requests += u64::from(result.requests);
        match &result.outcome {
            Ok(checked) => {
                summary.rows += checked.rows;
                summary.quarantined += checked.quarantined.len() as u64;
                summary.fetched.push(format!(
                    "{} {} {}..{}",
                    result.id.0,
                    result.id.1,
                    rfc3339(result.chunk.0),
                    rfc3339(result.chunk.1)
                ));
                status.rows_fetched += checked.rows;
                status.last_bar = status.last_bar.max(checked.last_bar);
            }
            Err(e) => {
                ctx.failed.lock().expect("lock").insert(result.id.clone());
                summary
                    .failures
                    .push(format!("{} {}: {e}", result.id.0, result.id.1));
                let attempts = status.attempts + 1;
                let wait = micros(self.options.retry_base)
                    .saturating_mul(1i64 << (attempts - 1).min(30))
                    .min(micros(self.options.retry_max));
                *status = SeriesStatus {
                    state: SeriesState::Failing,
                    last_error: Some(e.to_string()),
                    attempts,
                    next_retry: Some(self.clock.now_micros() + wait),
                    ..status.clone()
                };
            }
        }
        let left = ctx.remaining.get_mut(&result.id).expect("planned series");
        *left -= 1;
        let done = *left == 0 || result.outcome.is_err();
        let id = result.id.clone();
        batch.add(result, now, micros(self.options.settle));
        if done && update_status {
            let status = ctx.statuses[&id].clone();
            let status = if ctx.failed.lock().expect("lock").contains(&id) {
                status
            } else {
                succeeded(status, self.clock.now_micros())
            };
            batch.ops.push(status_op(&id, status));
        }
    }

    /// Writes the batch's bars (one commit), then records what they taught (one state commit).
    async fn flush(&self, batch: &mut WriteBatch) -> Result<()> {
        let WriteBatch { series, ops, .. } = std::mem::take(batch);
        if !series.is_empty() {
            self.store.write_series(series, "backfill").await?;
        }
        self.log.commit(ops).await?;
        Ok(())
    }
}

/// What one run tracks per series.
#[derive(Default)]
struct RunContext {
    /// Chunks not yet back.
    remaining: HashMap<SeriesId, usize>,
    statuses: HashMap<SeriesId, SeriesStatus>,
    /// A series that failed once in this run is not asked again until its retry time.
    failed: Arc<Mutex<HashSet<SeriesId>>>,
}

/// Bars fetched but not yet written, and the ledger entries that wait for them.
#[derive(Default)]
struct WriteBatch {
    series: Vec<SeriesBatch>,
    ops: Vec<Op>,
}

impl WriteBatch {
    fn add(&mut self, result: ChunkResult, now: i64, settle: i64) {
        let (symbol, interval) = result.id.clone();
        let Ok(checked) = result.outcome else {
            return;
        };
        if !checked.quarantined.is_empty() {
            self.ops.push(Op::Quarantine {
                rows: checked.quarantined,
            });
        }
        let end = gaps::covered_end(result.chunk, checked.last_bar, interval, now, settle);
        if end > result.chunk.0 {
            self.ops.push(Op::Cover {
                symbol: symbol.clone(),
                interval,
                range: Covered {
                    start: result.chunk.0,
                    end,
                    rows: checked.rows,
                    source: result.provider,
                    fetched_at: now,
                },
            });
        }
        if let Some(bars) = checked.bars {
            self.series.push(SeriesBatch {
                key: SeriesKey { symbol, interval },
                batch: bars,
            });
        }
    }
}

fn status_op(id: &SeriesId, status: SeriesStatus) -> Op {
    Op::Status {
        symbol: id.0.clone(),
        interval: id.1,
        status,
    }
}

fn succeeded(status: SeriesStatus, now: i64) -> SeriesStatus {
    SeriesStatus {
        state: SeriesState::Fresh,
        last_update: Some(now),
        last_error: None,
        attempts: 0,
        next_retry: None,
        ..status
    }
}

/// The calendar a provider's symbols usually follow, for symbols nobody registered.
pub fn default_calendar(kind: &str) -> Calendar {
    match kind {
        "binance" => Calendar::AlwaysOpen,
        _ => Calendar::UsEquity,
    }
}

async fn fetch_chunk(
    id: SeriesId,
    provider: Arc<ProviderHandle>,
    chunk: (i64, i64),
    splits: Option<Arc<KnownSplits>>,
    failed: Arc<Mutex<HashSet<SeriesId>>>,
) -> Option<ChunkResult> {
    if failed.lock().expect("lock").contains(&id) {
        return None;
    }
    let request = FetchRequest {
        splits,
        ..FetchRequest::new(id.0.clone(), id.1, chunk.0, chunk.1)
    };
    let before = provider.upstream.stats().requests;
    let fetched = provider.adapter.fetch(&provider.upstream, &request).await;
    let fetched_at = provider.upstream.clock().now_micros();
    let (outcome, requests) = match fetched {
        Ok(f) => {
            let requests = f.requests;
            let checked = check_fetched(&id.0, id.1, chunk, f, &provider.name, fetched_at);
            (Ok(checked), requests)
        }
        // Requests made by a call that failed are not reported by the adapter: count them from
        // the client (approximate when chunks of one provider run at once).
        Err(e) => {
            let made = provider.upstream.stats().requests.saturating_sub(before);
            (Err(e), made.min(u64::from(u32::MAX)) as u32)
        }
    };
    Some(ChunkResult {
        id,
        chunk,
        provider: provider.name.clone(),
        outcome,
        requests,
    })
}
