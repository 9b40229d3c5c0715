//! The library's front door: open a store, write bars, run SQL, load bars for backtests, and
//! the maintenance jobs.

mod action_checks;
mod version;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::prelude::{DataFrame, col, lit};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStore;

use crate::actions::ActionsTable;
use crate::adjust::apply::{Columns, FactorsBySeries, adjust_mixed, adjust_series};
use crate::adjust::view::{AdjustedBars, VIEWS};
use crate::adjust::{Adjuster, Adjustment, Applied};
use crate::batch::{SeriesBatch, SeriesKey};
use crate::catalog::{self, Catalog};
use crate::clock::{self, Clock};
use crate::error::ErrorKind;
use crate::import::{self, ImportOptions};
use crate::live::{self, Live, LiveOptions};
use crate::maintenance::{self, CheckReport, CompactSummary, GcSummary, SeriesStats};
use crate::model::{BARS_SCHEMA, COL_SYMBOL, COL_TIMEFRAME, COL_TS, Interval, Symbol};
use crate::query::{self, QueryEngine, SeriesMap};
use crate::storage::{
    self, DiskCache, OpenedStore, RequestCounts, RequestStats, StoreSettings, StoreUrl,
    open_object_store,
};
use crate::write::{self, WriteSummary, Writer};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;

pub use version::{TableVersion, TableView};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Storage(#[from] storage::Error),
    #[error(transparent)]
    Catalog(#[from] catalog::Error),
    #[error(transparent)]
    Write(#[from] write::Error),
    #[error(transparent)]
    Query(#[from] query::Error),
    /// A row that breaks a rule; nothing of the request was applied.
    #[error("row {row}: {message}")]
    InvalidRow { row: usize, message: String },
    #[error("invalid input: {0}")]
    InvalidInput(String),
    #[error("invalid input: {0}")]
    UnknownColumn(UnknownColumn),
    #[error(transparent)]
    Import(#[from] crate::import::ImportError),
    #[error(transparent)]
    Live(#[from] live::Error),
    #[error("this store was opened without a live tier (no WAL directory)")]
    NoLiveTier,
    #[error(transparent)]
    Preflight(#[from] storage::PreflightError),
    #[error(transparent)]
    Actions(#[from] crate::actions::table::Error),
    /// A corporate action that breaks a rule; nothing of the input was applied.
    #[error(transparent)]
    Refused(#[from] crate::actions::Refused),
    #[error(transparent)]
    Adjust(#[from] crate::adjust::Error),
    #[error(transparent)]
    Snapshots(#[from] crate::snapshots::Error),
}

impl From<datafusion::error::DataFusionError> for Error {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        Error::Query(query::Error::DataFusion(e))
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// What happened (the HTTP API's status and code follow from it).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Storage(e) => e.kind(),
            Error::Catalog(e) => e.kind(),
            Error::Write(e) => e.kind(),
            Error::Query(e) => e.kind(),
            Error::InvalidRow { .. } | Error::InvalidInput(_) | Error::UnknownColumn(_) => {
                ErrorKind::InvalidInput
            }
            Error::Import(e) => e.kind(),
            Error::Live(e) => e.kind(),
            Error::NoLiveTier => ErrorKind::WalUnavailable,
            Error::Preflight(e) => e.kind(),
            Error::Actions(e) => e.kind(),
            Error::Refused(_) => ErrorKind::InvalidCorporateAction,
            Error::Adjust(e) => e.kind(),
            Error::Snapshots(e) => e.kind(),
        }
    }

    /// The damaged data file behind this error, if that is what it is. (Transparent wrappers
    /// hide their inner error from `source()`, so the variants are matched here.)
    pub fn damage(&self) -> Option<&storage::DamagedFile> {
        match self {
            Error::Storage(storage::Error::Damaged(d))
            | Error::Write(write::Error::Storage(storage::Error::Damaged(d))) => Some(d),
            Error::Query(query::Error::DataFusion(e))
            | Error::Adjust(crate::adjust::Error::Read { source: e, .. }) => {
                storage::find_damage(e)
            }
            _ => None,
        }
    }
}

/// What a backtest asks for: symbols, one interval, a time range `[start, end)` in µs, columns.
#[derive(Debug, Clone)]
pub struct LoadRequest {
    pub symbols: Vec<String>,
    pub interval: Interval,
    pub start: Option<i64>,
    pub end: Option<i64>,
    /// `None` for every column of `bars`.
    pub columns: Option<Vec<String>>,
    /// Raw prices ([`Adjustment::NONE`]) or adjusted by splits and dividends, as of a date.
    pub adjustment: Adjustment,
}

/// A load's rows, and the corporate actions an adjusted load applied to them (those that
/// change a bar at or after the request's start).
pub struct LoadedBars {
    pub stream: SendableRecordBatchStream,
    pub applied: Vec<Applied>,
}

/// What an import did.
#[derive(Debug, Clone)]
pub struct ImportSummary {
    pub files: usize,
    /// Distinct keys within each file (a key in two files counts in both; the later file's
    /// row is kept).
    pub rows: usize,
    /// Rows replaced by a later row with the same key in the same file.
    pub duplicates: usize,
    pub symbols: usize,
    pub write: WriteSummary,
    /// The corporate actions of the files' `split_coefficient` / `dividend_amount` columns, as
    /// merged into the table (disagreements with other sources included).
    pub actions: crate::actions::Merged,
    /// Events of those columns that broke a rule and were left out (`--bad-events skip`):
    /// where each was (file and line or row) and the rule.
    pub events_skipped: Vec<crate::actions::Refused>,
}

/// How a store is opened.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Memory that running queries together may hold; `None` is unlimited.
    pub query_memory_limit: Option<usize>,
    /// The live tier and its WAL; `None` for a store that is only written through imports.
    pub live: Option<LiveOptions>,
    /// S3 connection settings and the local disk cache.
    pub storage: StoreSettings,
    /// A reader: never commits, and skips the conditional-write check.
    pub read_only: bool,
    /// The operator guarantees one writer, so a store without conditional writes is accepted.
    pub single_writer: bool,
    /// The time of day for everything the store opens: catalog and corporate-action commits,
    /// the live tier, GC, and (unless told otherwise) a syncer and scheduler over the store.
    pub clock: Arc<dyn Clock>,
    /// GC's grace period, which a table this store creates (or converts) names as its Delta
    /// retention properties, so other engines' VACUUM keeps what tickvault's GC keeps.
    pub gc_grace: std::time::Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            query_memory_limit: None,
            live: None,
            storage: StoreSettings::default(),
            read_only: false,
            single_writer: false,
            clock: clock::system(),
            gc_grace: std::time::Duration::from_secs(3600),
        }
    }
}

/// What a transfer of the live tier into Parquet did.
#[derive(Debug, Clone, Default)]
pub struct TransferSummary {
    pub rows: u64,
    pub write: WriteSummary,
    /// Every WAL record up to this LSN is now in Parquet.
    pub upto_lsn: u64,
    pub duration: Duration,
}

/// An open store.
pub struct Store {
    url: String,
    object_store: Arc<dyn ObjectStore>,
    requests: RequestStats,
    cache: Option<Arc<DiskCache>>,
    catalog: Arc<Catalog>,
    live: Option<Arc<Live>>,
    engine: QueryEngine,
    actions: Arc<ActionsTable>,
    adjuster: Arc<Adjuster>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the store at a URL: a path, `file:///abs`, `memory://` or `s3://bucket/prefix`.
    pub async fn open(url: &str) -> Result<Self> {
        Self::open_with_options(url, &StoreOptions::default()).await
    }

    /// Opens a store with options (a server sets its query memory limit this way). A remote
    /// store is checked first: bucket and credentials, and for a writer, conditional writes.
    pub async fn open_with_options(url: &str, options: &StoreOptions) -> Result<Self> {
        let parsed = StoreUrl::parse(url)?;
        let opened = open_object_store(&parsed, &options.storage)?;
        let label = parsed.to_string();
        if matches!(parsed, StoreUrl::S3 { .. }) {
            storage::check_reachable(&opened.store, &label).await?;
            if !options.read_only {
                match storage::check_conditional_writes(&opened.store, &label).await {
                    Err(e @ storage::PreflightError::NoConditionalWrites { .. })
                        if options.single_writer =>
                    {
                        tracing::warn!("{e}; going on because single_writer = true");
                    }
                    other => other?,
                }
            }
        }
        Self::open_opened(opened, &label, options).await
    }

    /// Opens a store over an object store the caller built (tests inject failures this way).
    pub async fn open_with(object_store: Arc<dyn ObjectStore>, label: &str) -> Result<Self> {
        Self::open_with_store(object_store, label, &StoreOptions::default()).await
    }

    pub async fn open_with_store(
        object_store: Arc<dyn ObjectStore>,
        label: &str,
        options: &StoreOptions,
    ) -> Result<Self> {
        Self::open_opened(OpenedStore::wrap(object_store), label, options).await
    }

    async fn open_opened(opened: OpenedStore, label: &str, options: &StoreOptions) -> Result<Self> {
        let object_store = opened.store;
        let clock = Arc::clone(&options.clock);
        let mut catalog = Catalog::load(Arc::clone(&object_store))
            .await?
            .with_clock(Arc::clone(&clock))
            .with_retention(options.gc_grace);
        if options.read_only {
            catalog = catalog.read_only();
        } else {
            // A writer's open creates the table's log, or converts a store of the old format.
            catalog.ensure_table().await?;
        }
        let catalog = Arc::new(catalog);
        let live = match options.live.clone() {
            Some(_) if options.read_only => {
                return Err(Error::InvalidInput(
                    "a read-only store has no live tier (it takes no writes)".into(),
                ));
            }
            Some(live_options) => {
                let live_clock = Arc::clone(&clock);
                let live =
                    tokio::task::spawn_blocking(move || Live::open(live_options, live_clock))
                        .await
                        .map_err(|e| Error::Write(write::Error::Task(e)))??;
                Some(Arc::new(live))
            }
            None => None,
        };
        let engine = QueryEngine::new(
            Arc::clone(&catalog),
            Arc::clone(&object_store),
            live.clone(),
            options.query_memory_limit,
        )
        .await?;
        let actions = Arc::new(
            ActionsTable::open(Arc::clone(&object_store), options.read_only)
                .await
                .map_err(Error::Actions)?
                .with_clock(Arc::clone(&clock)),
        );
        crate::actions::sql::register(&engine, &actions)?;
        let adjuster = Arc::new(Adjuster::new(
            engine.clone(),
            Arc::clone(&catalog),
            live.clone(),
            Arc::clone(&actions),
        ));
        let bars = engine.context().table_provider("bars").await?;
        for (name, adjust) in VIEWS {
            let view = AdjustedBars::new(Arc::clone(&bars), adjust, Arc::downgrade(&adjuster));
            engine.context().register_table(name, Arc::new(view))?;
        }
        Ok(Self {
            url: label.to_string(),
            object_store,
            requests: opened.requests,
            cache: opened.cache,
            catalog,
            live,
            engine,
            actions,
            adjuster,
            clock,
        })
    }

    /// The clock the store was opened with (see [`StoreOptions::clock`]).
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Requests made to the object store so far, by kind (cache hits are not requests).
    pub fn requests(&self) -> RequestCounts {
        self.requests.snapshot()
    }

    /// The local disk cache of Parquet files, when `cache_dir` is set.
    pub fn disk_cache(&self) -> Option<&Arc<DiskCache>> {
        self.cache.as_ref()
    }

    /// Whether this store was opened as a reader.
    pub fn is_read_only(&self) -> bool {
        self.catalog.is_read_only()
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.object_store
    }

    pub fn engine(&self) -> &QueryEngine {
        &self.engine
    }

    /// Writes bars given per series: every row validated, one commit.
    pub async fn write_series(
        &self,
        series: Vec<SeriesBatch>,
        operation: &str,
    ) -> Result<WriteSummary> {
        let mut writer = self.writer(operation);
        writer.push(series).await?;
        Ok(writer.finish().await?)
    }

    /// A write built from many pushes that lands as one commit, with bounded memory (imports).
    pub fn writer(&self, operation: &str) -> Writer<'_> {
        Writer::new(&self.catalog, operation)
    }

    /// Writes a batch in the `bars` schema (vwap and trades may be absent). Upsert: a row whose
    /// (symbol, interval, ts) exists replaces it; within the batch the last row wins. Every row
    /// is validated first; one bad row refuses the whole batch (rows numbered from 1).
    pub async fn write(&self, batch: &RecordBatch) -> Result<WriteSummary> {
        // Checked here, so errors number rows as the caller's batch does.
        let series = split_bars_batch(batch)?;
        let mut writer = self.writer("write");
        writer.push_checked(series).await?;
        Ok(writer.finish().await?)
    }

    /// The `corporate_actions` table: splits and dividends that adjusted reads apply.
    pub fn actions(&self) -> &Arc<ActionsTable> {
        &self.actions
    }

    /// Plans adjusted reads (and caches the closes dividends need); the sync registry tells it
    /// symbols' calendars.
    pub fn adjuster(&self) -> &Arc<Adjuster> {
        &self.adjuster
    }

    /// The live tier, when the store was opened with one.
    pub fn live(&self) -> Option<&Arc<Live>> {
        self.live.as_ref()
    }

    /// Writes bars into the live tier: durable in the WAL and visible to queries when this
    /// returns. Every row is checked first; one bad row refuses the whole write.
    pub async fn ingest(&self, series: Vec<SeriesBatch>) -> Result<u64> {
        write::check_series(&series)?;
        self.ingest_checked(series).await
    }

    /// [`Store::ingest`] for rows already checked (the HTTP body parsers validate as they read).
    pub(crate) async fn ingest_checked(&self, series: Vec<SeriesBatch>) -> Result<u64> {
        let live = self.live.as_ref().ok_or(Error::NoLiveTier)?;
        Ok(live.write(series).await?)
    }

    /// [`Store::ingest`] for a batch in the `bars` schema (rows numbered from 1 in errors).
    pub async fn ingest_batch(&self, batch: &RecordBatch) -> Result<u64> {
        let series = split_bars_batch(batch)?;
        self.ingest_checked(series).await
    }

    /// Stage 1 of the sync: moves the live tier into Parquet through the write path. Rows leave
    /// memory, and their WAL segments are deleted, only after the catalog commit; a crash
    /// before that replays them and the next transfer writes them again (upsert: no duplicates).
    pub async fn transfer(&self) -> Result<TransferSummary> {
        let live = self.live.as_ref().ok_or(Error::NoLiveTier)?;
        let _one_at_a_time = live.transfer_lock.lock().await;
        let started = std::time::Instant::now();
        let frozen = live.freeze().await?;
        let rows = frozen.rows() as u64;
        let write = if rows == 0 {
            WriteSummary::default()
        } else {
            let mut writer = self.writer("transfer");
            writer.push_checked(frozen.series()).await?;
            writer.finish().await?
        };
        live.release(&frozen).await?;
        Ok(TransferSummary {
            rows,
            write,
            upto_lsn: frozen.upto,
            duration: started.elapsed(),
        })
    }

    /// Deletes the bars of one series with `start <= ts < end` (µs UTC), atomically. Live rows
    /// are moved into Parquet first, so none of the range survives in memory to come back.
    pub async fn delete_range(
        &self,
        symbol: &Symbol,
        interval: Interval,
        start: i64,
        end: i64,
    ) -> Result<crate::delete::DeleteSummary> {
        if start >= end {
            return Err(Error::InvalidInput(
                "empty range: start must be before end".into(),
            ));
        }
        if self.live.as_ref().is_some_and(|l| l.read().rows() > 0) {
            self.transfer().await?;
        }
        let summary =
            crate::delete::delete_range(&self.catalog, symbol, interval, start, end).await?;
        if let Some(live) = &self.live {
            let key = SeriesKey {
                symbol: symbol.clone(),
                interval,
            };
            live.forget_deleted(&key, start, end);
        }
        Ok(summary)
    }

    /// Imports files (CSV, gzip CSV, Parquet) as one commit: all or nothing. Files are parsed in
    /// parallel and pushed in the order given, so a later file wins on a duplicate key; the
    /// writer spills to uncommitted files past its buffer, so memory stays bounded.
    /// `on_file` is called after each file (a progress bar).
    ///
    /// Corporate actions in the files' `split_coefficient` / `dividend_amount` columns are
    /// checked with the bars (a bad one refuses the import, or with `BadEvents::Skip` is left
    /// out and listed in the summary) and committed to the
    /// `corporate_actions` table once the bars are: a refused import stores neither. Should
    /// that second commit fail, the bars stay and importing again stores the events (upserts).
    pub async fn import_files(
        &self,
        files: &[PathBuf],
        options: Arc<ImportOptions>,
        mut on_file: impl FnMut(),
    ) -> Result<ImportSummary> {
        let parallelism = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut reads = futures::stream::iter(files.iter().cloned())
            .map(|path| {
                let options = Arc::clone(&options);
                tokio::task::spawn_blocking(move || import::read_file_with_events(&path, &options))
            })
            .buffered(parallelism);
        let mut writer = self.writer("import");
        let (mut rows, mut duplicates, mut symbols) = (0usize, 0usize, BTreeSet::new());
        let (mut events, mut events_skipped) = (Vec::new(), Vec::new());
        while let Some(result) = reads.next().await {
            let pushed = match result {
                Ok(Ok(contents)) => {
                    events.extend(contents.events);
                    events_skipped.extend(contents.skipped);
                    let series = contents.series;
                    let repeated = import::repeated_keys(&series);
                    rows += series.iter().map(|s| s.batch.num_rows()).sum::<usize>() - repeated;
                    duplicates += repeated;
                    symbols.extend(series.iter().map(|s| s.key.symbol.clone()));
                    writer.push(series).await.map_err(Error::from)
                }
                Ok(Err(e)) => Err(e.into()),
                Err(e) => Err(Error::Write(write::Error::Task(e))),
            };
            if let Err(e) = pushed {
                writer.abort().await;
                return Err(e);
            }
            on_file();
        }
        let events = match self
            .screen_import_events(events, &mut events_skipped, options.bad_events)
            .await
        {
            Ok(events) => events,
            Err(e) => {
                writer.abort().await;
                return Err(e);
            }
        };
        let write = writer.finish().await?;
        let actions = if events.is_empty() {
            crate::actions::Merged::default()
        } else {
            let recorded_at = self.clock.now_micros();
            let events = events
                .into_iter()
                .map(|e| crate::actions::CorporateAction {
                    recorded_at,
                    ..e.event
                })
                .collect();
            self.actions.upsert(events).await?
        };
        Ok(ImportSummary {
            files: files.len(),
            rows,
            duplicates,
            symbols: symbols.len(),
            write,
            actions,
            events_skipped,
        })
    }

    /// Plans read-only SQL.
    pub async fn sql(&self, sql: &str) -> Result<DataFrame> {
        Ok(self.engine.sql(sql).await?)
    }

    /// Runs read-only SQL and collects the result.
    pub async fn query(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        Ok(self.sql(sql).await?.collect().await?)
    }

    /// Streams bars for a backtest, ordered by (ts, symbol), adjusted as the request asks.
    pub async fn load_bars(&self, req: &LoadRequest) -> Result<SendableRecordBatchStream> {
        Ok(self.load_bars_adjusted(req).await?.stream)
    }

    /// [`Store::load_bars`], and the corporate actions it applied.
    pub async fn load_bars_adjusted(&self, req: &LoadRequest) -> Result<LoadedBars> {
        let columns = load_columns(req)?;
        let plan = self
            .adjuster
            .plan_read(&req.symbols, req.interval, &req.adjustment, req.start)
            .await?;
        load_from(&self.engine, req, columns, plan).await
    }

    /// Loads bars and collects them (convenience for small requests and tests).
    pub async fn load_bars_collect(&self, req: &LoadRequest) -> Result<Vec<RecordBatch>> {
        Ok(self.load_bars(req).await?.try_collect().await?)
    }

    pub async fn compact(&self) -> Result<CompactSummary> {
        Ok(maintenance::compact(&self.catalog, maintenance::COMPACT_MAX_FILES).await?)
    }

    /// Deletes unreferenced files and old versions of the corporate actions table, each once
    /// no reader can need it any more (after `grace`).
    pub async fn gc(&self, grace: Duration) -> Result<GcSummary> {
        let mut summary = maintenance::gc(&self.catalog, grace).await?;
        summary.action_versions_deleted = self.actions.gc(grace).await?.versions_deleted;
        Ok(summary)
    }

    pub async fn check(&self) -> Result<CheckReport> {
        Ok(maintenance::check(&self.catalog, false).await?)
    }

    /// [`Store::check`], and every file read whole and checked against its checksums.
    pub async fn check_deep(&self) -> Result<CheckReport> {
        Ok(maintenance::check(&self.catalog, true).await?)
    }

    pub fn stats(&self) -> Vec<SeriesStats> {
        maintenance::stats(&self.catalog)
    }
}

/// The columns of `bars` a load asks for, by index; the request checked first.
fn load_columns(req: &LoadRequest) -> Result<Vec<usize>> {
    if req.symbols.is_empty() {
        return Err(Error::InvalidInput("no symbols requested".into()));
    }
    match &req.columns {
        None => Ok((0..BARS_SCHEMA.fields().len()).collect()),
        Some(names) => names
            .iter()
            .map(|c| BARS_SCHEMA.index_of(c).map_err(|_| unknown_column(c)))
            .collect::<Result<Vec<usize>>>(),
    }
}

/// A load through `engine` (the latest version's or one version's), adjusted as `plan` says.
async fn load_from(
    engine: &QueryEngine,
    req: &LoadRequest,
    columns: Vec<usize>,
    plan: crate::adjust::ReadPlan,
) -> Result<LoadedBars> {
    let applied = plan.applied;
    let factors = plan.factors;
    let map = |symbol: &str| -> Option<SeriesMap> {
        let f = Arc::clone(factors.get(symbol)?);
        Some(Arc::new(move |batch: RecordBatch| {
            let cols = Columns::of(&batch.schema()).ok_or_else(no_ts)?;
            Ok(adjust_series(batch, &cols, &f, false)?)
        }))
    };
    if let Some(stream) = engine.load_series_mapped(
        &req.symbols,
        req.interval,
        req.start,
        req.end,
        &columns,
        &map,
    ) {
        return Ok(LoadedBars { stream, applied });
    }
    let ts_lit = |v: i64| {
        lit(ScalarValue::TimestampMicrosecond(
            Some(v),
            Some("UTC".into()),
        ))
    };
    let mut predicate = col(COL_TIMEFRAME)
        .eq(lit(req.interval.as_str()))
        .and(col(COL_SYMBOL).in_list(req.symbols.iter().map(|s| lit(s.as_str())).collect(), false));
    if let Some(start) = req.start {
        predicate = predicate.and(col(COL_TS).gt_eq(ts_lit(start)));
    }
    if let Some(end) = req.end {
        predicate = predicate.and(col(COL_TS).lt(ts_lit(end)));
    }
    let mut df = engine
        .context()
        .table("bars")
        .await?
        .filter(predicate)?
        .sort(vec![
            col(COL_TS).sort(true, false),
            col(COL_SYMBOL).sort(true, false),
        ])?;
    // An adjustment needs each row's series and open time; they are dropped after it.
    let mut read = columns.clone();
    if !factors.is_empty() {
        for name in [COL_SYMBOL, COL_TIMEFRAME, COL_TS] {
            let i = BARS_SCHEMA.index_of(name).expect("bars column");
            if !read.contains(&i) {
                read.push(i);
            }
        }
    }
    if req.columns.is_some() || read.len() != columns.len() {
        let names: Vec<&str> = read
            .iter()
            .map(|&i| BARS_SCHEMA.field(i).name().as_str())
            .collect();
        df = df.select_columns(&names)?;
    }
    let stream = df.execute_stream().await?;
    if factors.is_empty() {
        return Ok(LoadedBars { stream, applied });
    }
    let mut by_series = FactorsBySeries::new();
    for (symbol, f) in factors {
        by_series
            .entry(symbol)
            .or_default()
            .insert(req.interval.as_str().to_string(), f);
    }
    let output: Vec<usize> = (0..columns.len()).collect();
    let schema = Arc::new(
        stream
            .schema()
            .project(&output)
            .map_err(DataFusionError::from)?,
    );
    let adjusted = stream.map(move |batch| -> datafusion::error::Result<RecordBatch> {
        let batch = batch?;
        let cols = Columns::of(&batch.schema()).ok_or_else(no_ts)?;
        Ok(adjust_mixed(&batch, &cols, &by_series)?.project(&output)?)
    });
    Ok(LoadedBars {
        stream: Box::pin(RecordBatchStreamAdapter::new(schema, adjusted)),
        applied,
    })
}

/// An adjusted read's batch without ts (the loader always reads it): a bug, not bad input.
fn no_ts() -> DataFusionError {
    DataFusionError::Internal("an adjusted read lost its ts column".into())
}

/// A column asked for that `bars` does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown column {name:?} (bars has {known})")]
pub struct UnknownColumn {
    pub name: String,
    /// The columns `bars` has, comma-separated.
    pub known: String,
}

/// An error naming a column `bars` does not have, and the ones it has.
fn unknown_column(name: &str) -> Error {
    let known: Vec<&str> = BARS_SCHEMA
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    Error::UnknownColumn(UnknownColumn {
        name: name.to_string(),
        known: known.join(", "),
    })
}

/// Splits a `bars`-schema batch into per-series file-schema batches, validating every row.
pub(crate) fn split_bars_batch(batch: &RecordBatch) -> Result<Vec<SeriesBatch>> {
    use crate::ingest::arrow_rows::{Error as E, split_bars};
    split_bars(batch).map_err(|e| match e {
        E::Column(message) => Error::InvalidInput(message),
        E::Row { row, message } => Error::InvalidRow { row, message },
    })
}
