//! SQL over the store: a DataFusion session with the `bars` table, the views from `sql/`, and a
//! read-only guard for user SQL.

mod bounded;
mod concat_operator;
mod cooperative;
mod function_memory;
mod latest;
pub mod limits;
mod overlay;
mod range_query;
mod range_read;
mod read_only;
mod reader;
mod series_aggregate;
mod series_merge;
mod series_plan;
pub mod snapshot_table;
mod stored_extremes;
mod table;
mod utc_date_trunc;
mod views;

use std::sync::Arc;

use datafusion::dataframe::DataFrame;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::ScalarUDF;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use datafusion::sql::sqlparser::parser::ParserError;
use object_store::ObjectStore;

pub use bounded::execute_bounded;
pub use range_read::SeriesMap;
pub use table::{BarsTable, STORE_URL, ScanCounters, ScanStats, TableSource};
pub use views::SQL_FILES;

use crate::catalog::{Catalog, Snapshot};
use crate::error::ErrorKind;
use datafusion::datasource::physical_plan::ParquetFileReaderFactory;
use range_query::RangeQuery;
use range_read::RangeReader;

use crate::live::Live;
use crate::model::Interval;
use reader::ReaderFactory;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// User SQL that would change something or reach outside the store.
    #[error("read-only: {0}")]
    ReadOnly(String),
    /// User SQL too long or nested too deep to plan safely (see `limits`).
    #[error("SQL over a limit: {0}")]
    Limit(#[from] limits::LimitError),
    #[error("{0}")]
    DataFusion(#[from] DataFusionError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::ReadOnly(_) => ErrorKind::ReadOnly,
            Error::Limit(_) => ErrorKind::SqlLimit,
            Error::DataFusion(e) => datafusion_kind(e),
        }
    }
}

/// What a DataFusion error says happened: a damaged file anywhere in its chain, the memory
/// limit, the user's SQL (it does not plan, or fails on the data), or ours.
pub fn datafusion_kind(e: &DataFusionError) -> ErrorKind {
    if crate::storage::find_damage(e).is_some() {
        return ErrorKind::Damaged;
    }
    match e.find_root() {
        DataFusionError::ResourcesExhausted(_) => ErrorKind::MemoryLimit,
        DataFusionError::SQL(..)
        | DataFusionError::Plan(_)
        | DataFusionError::SchemaError(..)
        | DataFusionError::NotImplemented(_)
        | DataFusionError::Configuration(_) => ErrorKind::InvalidSql,
        DataFusionError::Execution(_) | DataFusionError::ArrowError(..) => ErrorKind::QueryFailed,
        _ => ErrorKind::Internal,
    }
}

/// A DataFusion session over one store.
#[derive(Clone)]
pub struct QueryEngine {
    ctx: SessionContext,
    counters: Arc<ScanCounters>,
    ranges: Arc<RangeReader>,
    /// What engines over other versions of the table share with this one.
    shared: Shared,
}

/// The parts of an engine that engines over other versions of the table share with it.
#[derive(Clone)]
struct Shared {
    store: Arc<dyn ObjectStore>,
    /// One memory pool for every running query, one footer cache.
    runtime: Arc<datafusion::execution::runtime_env::RuntimeEnv>,
    files: Arc<dyn ParquetFileReaderFactory>,
    counters: Arc<ScanCounters>,
}

impl std::fmt::Debug for QueryEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEngine").finish_non_exhaustive()
    }
}

impl QueryEngine {
    /// A session over the store; `memory_limit` caps what all running queries together may hold
    /// for sorts, joins and aggregations (past it a query fails with "Resources exhausted"
    /// instead of the process running out of memory; nothing spills to disk).
    pub async fn new(
        catalog: Arc<Catalog>,
        store: Arc<dyn ObjectStore>,
        live: Option<Arc<Live>>,
        memory_limit: Option<usize>,
    ) -> Result<Self> {
        let mut runtime = RuntimeEnvBuilder::new();
        if let Some(limit) = memory_limit {
            runtime = runtime
                .with_memory_limit(limit, 1.0)
                .with_disk_manager_builder(
                    DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
                );
        }
        let runtime = runtime.build_arc()?;
        // One reader factory for DataFusion's scans and range reads: footers (with their page
        // indexes) are cached once, in the runtime's cache.
        let files: Arc<dyn ParquetFileReaderFactory> = Arc::new(ReaderFactory::new(
            Arc::clone(&store),
            runtime.cache_manager.get_file_metadata_cache(),
        ));
        let parts = Shared {
            store,
            runtime,
            files,
            counters: Arc::new(ScanCounters::default()),
        };
        Self::build(TableSource::Latest(catalog), live, parts).await
    }

    /// A session over one version of the table, as committed: no live rows, no `latest`
    /// prices (the `latest` table is empty). It shares this engine's memory limit (the pool
    /// is one), footer cache and scan counters. Tables registered on this engine after it was
    /// built (corporate actions, adjusted views, sync tables) are not in it.
    pub async fn at(&self, snapshot: Arc<Snapshot>) -> Result<Self> {
        Self::build(TableSource::At(snapshot), None, self.shared.clone()).await
    }

    async fn build(source: TableSource, live: Option<Arc<Live>>, shared: Shared) -> Result<Self> {
        let mut config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema("tickvault", "public");
        // Each scan partition reads one series in time order, and plans rely on it. With work
        // stealing an idle partition takes files queued for another, and DataFusion 55 allows
        // that even under a merge that needs the order once a limit is pushed into the scan:
        // `ORDER BY ts LIMIT n` over two series returned rows out of order.
        config
            .options_mut()
            .execution
            .enable_file_stream_work_stealing = false;
        config.options_mut().sql_parser.recursion_limit =
            datafusion::config::ConfigNonZeroUsize::try_new(limits::PARSER_RECURSION_LIMIT)?;
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(Arc::clone(&shared.runtime))
            .with_default_features()
            // After DataFusion's own rules, which place the aggregates these two rewrite.
            .with_physical_optimizer_rule(Arc::new(stored_extremes::TsExtremesFromCatalog))
            .with_physical_optimizer_rule(Arc::new(series_aggregate::GroupBySeries))
            .with_physical_optimizer_rule(Arc::new(cooperative::YieldInJoins))
            .build();
        let mut ctx = SessionContext::new_with_state(state);
        let date_trunc = datafusion::execution::FunctionRegistry::udf(&ctx, "date_trunc")?;
        ctx.register_udf(datafusion::logical_expr::ScalarUDF::new_from_impl(
            utc_date_trunc::UtcDateTrunc::new(date_trunc),
        ));
        // Every function's results count against the query memory pool (see
        // `function_memory`); views planned below see the wrapped functions.
        let pool = Arc::clone(&ctx.runtime_env().memory_pool);
        let mut functions: Vec<_> = ctx.state().scalar_functions().values().cloned().collect();
        // The registry lists a function once per alias; wrap it once.
        functions.sort_by(|a, b| a.name().cmp(b.name()));
        functions.dedup_by(|a, b| a.name() == b.name());
        for udf in functions {
            if let Some(counted) = function_memory::wrap(udf, &pool) {
                ctx.register_udf(counted);
            }
        }
        // `a || b` on strings as a counted function too (see `concat_operator`).
        let concat = ScalarUDF::new_from_impl(concat_operator::ConcatOperator::new());
        let concat = function_memory::wrap(Arc::new(concat), &pool).expect("not exempt");
        datafusion::execution::FunctionRegistry::register_expr_planner(
            &mut ctx,
            Arc::new(concat_operator::ConcatPlanner {
                function: Arc::new(concat),
            }),
        )?;
        let url = url::Url::parse(STORE_URL).expect("valid url");
        ctx.register_object_store(&url, Arc::clone(&shared.store));
        let ranges = Arc::new(RangeReader::new(
            source.clone(),
            live.clone(),
            Arc::clone(&shared.files),
            Arc::clone(&shared.counters),
        ));
        ctx.register_table(
            "bars",
            Arc::new(BarsTable::new(
                source,
                live.clone(),
                Arc::clone(&shared.files),
                Arc::clone(&shared.counters),
            )),
        )?;
        ctx.register_table("latest", Arc::new(latest::table(live)))?;
        views::register(&ctx).await?;
        Ok(Self {
            ctx,
            counters: Arc::clone(&shared.counters),
            ranges,
            shared,
        })
    }

    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    pub fn scan_stats(&self) -> ScanStats {
        self.counters.get()
    }

    /// Plans user SQL: queries only. DDL, DML (INSERT, COPY), `SET` and other statements are
    /// refused from the parsed statement before anything plans them (see `read_only`), and the
    /// session has no way to reach local files (no URL tables, no file functions). SQL over a
    /// limit of `limits` is refused before it is planned.
    pub async fn sql(&self, sql: &str) -> Result<DataFrame> {
        let state = self.ctx.state();
        let statement = parse(&state, sql)?;
        if let Some(what) = read_only::refusal(&statement) {
            return Err(read_only_error(&what));
        }
        let plan = state.statement_to_plan(statement).await?;
        // A second line behind the statement check: a plan that would still change something.
        SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false)
            .verify_plan(&plan)
            .map_err(|e| read_only_error(&e.strip_backtrace()))?;
        Ok(self.ctx.execute_logical_plan(plan).await?)
    }

    /// Runs user SQL and streams the result. A read of one series over a time range skips the
    /// planner (see [`QueryEngine::range_read`]).
    pub async fn sql_stream(&self, sql: &str) -> Result<SendableRecordBatchStream> {
        if let Some(stream) = self.range_read(sql) {
            return Ok(stream);
        }
        self.execute(self.sql(sql).await?).await
    }

    /// The answer to `sql` if it reads one series over a time range (`range_query` says which
    /// queries those are) and no live rows fall in that range: read from the catalog and the
    /// Parquet pages directly, without DataFusion's planner, which costs more than reading a
    /// day of bars. `None` for every other query.
    pub fn range_read(&self, sql: &str) -> Option<SendableRecordBatchStream> {
        self.ranges.read(&range_query::recognize(sql)?)
    }

    /// Several series over one time range in (ts, symbol) order, read like a range read and
    /// merged on ts (see `series_merge`): the backtest loader. `columns` index `bars`. `None`
    /// when a series has live rows in the range; DataFusion's plan lays those over the stored.
    pub fn load_series(
        &self,
        symbols: &[String],
        interval: Interval,
        start: Option<i64>,
        end: Option<i64>,
        columns: &[usize],
    ) -> Option<SendableRecordBatchStream> {
        self.load_series_mapped(symbols, interval, start, end, columns, &|_| None)
    }

    /// [`QueryEngine::load_series`] with each series' batches passed through the function
    /// `map` gives for its symbol before the merge (see `RangeReader::read_merged_mapped`).
    pub fn load_series_mapped(
        &self,
        symbols: &[String],
        interval: Interval,
        start: Option<i64>,
        end: Option<i64>,
        columns: &[usize],
        map: &dyn Fn(&str) -> Option<SeriesMap>,
    ) -> Option<SendableRecordBatchStream> {
        let mut symbols = symbols.to_vec();
        symbols.sort();
        symbols.dedup();
        let queries: Vec<RangeQuery> = symbols
            .into_iter()
            .map(|symbol| RangeQuery {
                symbol,
                interval: Some(interval.as_str().to_string()),
                start,
                end,
                columns: columns.to_vec(),
                limit: None,
            })
            .collect();
        self.ranges.read_merged_mapped(queries, map)
    }

    /// Streams a planned query's result; a scan of many series reads a few at a time (see
    /// `bounded`), so streaming everything does not hold every series in memory at once.
    pub async fn execute(&self, query: DataFrame) -> Result<SendableRecordBatchStream> {
        let context = Arc::new(query.task_ctx());
        let width = context.session_config().target_partitions().max(1) * 2;
        let plan = query.create_physical_plan().await?;
        Ok(bounded::execute_bounded(plan, context, width)?)
    }
}

/// Parses one statement within the limits: the text is measured before the parser runs and
/// the statement before anything plans it.
fn parse(state: &SessionState, sql: &str) -> Result<datafusion::sql::parser::Statement> {
    limits::check_text(sql)?;
    let dialect = state.config().options().sql_parser.dialect;
    let statement = state
        .sql_to_statement(sql, &dialect)
        .map_err(|e| match e.find_root() {
            DataFusionError::SQL(parser, _)
                if matches!(**parser, ParserError::RecursionLimitExceeded) =>
            {
                Error::Limit(limits::parser_recursion_error())
            }
            _ => Error::DataFusion(e),
        })?;
    limits::check_statement(&statement)?;
    Ok(statement)
}

/// The refusal of SQL that is not a query; `what` says what it is.
fn read_only_error(what: &str) -> Error {
    Error::ReadOnly(format!(
        "only queries are allowed, not {what}; tickvault SQL cannot create, change or copy tables"
    ))
}
