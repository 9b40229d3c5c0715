//! SQL over the store: a DataFusion session with the `bars` table, the views from `sql/`, and a
//! read-only guard for user SQL.

mod bounded;
mod cooperative;
mod latest;
mod overlay;
mod reader;
mod repeatable;
mod series_aggregate;
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
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use object_store::ObjectStore;

pub use bounded::execute_bounded;
pub use repeatable::is_repeatable;
pub use table::{BarsTable, STORE_URL, ScanCounters, ScanStats};
pub use views::SQL_FILES;

use crate::catalog::Catalog;
use crate::live::Live;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// User SQL that would change something or reach outside the store.
    #[error("read-only: {0}")]
    ReadOnly(String),
    #[error("{0}")]
    DataFusion(#[from] DataFusionError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A DataFusion session over one store.
#[derive(Clone)]
pub struct QueryEngine {
    ctx: SessionContext,
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
        let config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema("tickvault", "public");
        let mut runtime = RuntimeEnvBuilder::new();
        if let Some(limit) = memory_limit {
            runtime = runtime
                .with_memory_limit(limit, 1.0)
                .with_disk_manager_builder(
                    DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
                );
        }
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime.build_arc()?)
            .with_default_features()
            // After DataFusion's own rules, which place the aggregates these two rewrite.
            .with_physical_optimizer_rule(Arc::new(stored_extremes::TsExtremesFromCatalog))
            .with_physical_optimizer_rule(Arc::new(series_aggregate::GroupBySeries))
            .with_physical_optimizer_rule(Arc::new(cooperative::YieldInJoins))
            .build();
        let ctx = SessionContext::new_with_state(state);
        let date_trunc = datafusion::execution::FunctionRegistry::udf(&ctx, "date_trunc")?;
        ctx.register_udf(datafusion::logical_expr::ScalarUDF::new_from_impl(
            utc_date_trunc::UtcDateTrunc::new(date_trunc),
        ));
        let url = url::Url::parse(STORE_URL).expect("valid url");
        ctx.register_object_store(&url, store);
        let counters = Arc::new(ScanCounters::default());
        ctx.register_table(
            "bars",
            Arc::new(BarsTable::new(catalog, live.clone(), Arc::clone(&counters))),
        )?;
        ctx.register_table("latest", Arc::new(latest::table(live)))?;
        views::register(&ctx).await?;
        Ok(Self { ctx, counters })
    }

    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    pub fn scan_stats(&self) -> ScanStats {
        self.counters.get()
    }

    /// Plans user SQL: queries only. DDL, DML (INSERT, COPY), `SET` and other statements are
    /// refused, and the session has no way to reach local files (no URL tables, no file
    /// functions).
    pub async fn sql(&self, sql: &str) -> Result<DataFrame> {
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        self.ctx
            .sql_with_options(sql, options)
            .await
            .map_err(|e| match e {
                DataFusionError::Plan(msg)
                    if msg.contains("not supported") && is_guard_message(&msg) =>
                {
                    Error::ReadOnly(format!(
                        "only queries are allowed ({msg}); tickvault SQL cannot create, change or \
                         copy tables"
                    ))
                }
                e => Error::DataFusion(e),
            })
    }

    /// Runs user SQL and streams the result.
    pub async fn sql_stream(&self, sql: &str) -> Result<SendableRecordBatchStream> {
        self.execute(self.sql(sql).await?).await
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

fn is_guard_message(msg: &str) -> bool {
    ["DDL", "DML", "Statement"].iter().any(|k| msg.contains(k))
}
