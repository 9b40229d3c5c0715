//! The SQL views `bars_split_adjusted` and `bars_adjusted`: `bars` with every row adjusted by
//! the events known when the query runs. A table over `bars` that maps its batches, so filters
//! on symbol, interval and ts still prune files and row groups; filters on prices are applied
//! above the adjustment (the stored statistics are of raw prices).

use std::fmt;
use std::sync::{Arc, Weak};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column as PhysColumn;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::StreamExt;

use super::apply::{Columns, FactorsBySeries, adjust_mixed};
use super::{Adjust, Adjuster, Adjustment};
use crate::actions::ActionSet;
use crate::model::{BARS_SCHEMA, COL_SYMBOL, COL_TIMEFRAME, COL_TS, Interval, Symbol};

/// The views and what each applies.
pub const VIEWS: [(&str, Adjust); 2] = [
    ("bars_split_adjusted", Adjust::Splits),
    ("bars_adjusted", Adjust::All),
];

/// `bars`, adjusted.
pub struct AdjustedBars {
    bars: Arc<dyn TableProvider>,
    adjust: Adjust,
    /// Weak: the store owns the adjuster, and the session that holds this view is the
    /// adjuster's own.
    adjuster: Weak<Adjuster>,
}

impl fmt::Debug for AdjustedBars {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdjustedBars")
            .field("adjust", &self.adjust)
            .finish_non_exhaustive()
    }
}

impl AdjustedBars {
    pub fn new(bars: Arc<dyn TableProvider>, adjust: Adjust, adjuster: Weak<Adjuster>) -> Self {
        Self {
            bars,
            adjust,
            adjuster,
        }
    }
}

/// Whether a filter reads only the columns an adjustment leaves alone (and that `bars` prunes
/// on): such a filter means the same on raw and adjusted rows.
fn on_key_columns(filter: &Expr) -> bool {
    filter
        .column_refs()
        .iter()
        .all(|c| [COL_SYMBOL, COL_TIMEFRAME, COL_TS].contains(&c.name.as_str()))
}

#[async_trait]
impl TableProvider for AdjustedBars {
    fn schema(&self) -> SchemaRef {
        BARS_SCHEMA.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        let keys: Vec<&Expr> = filters
            .iter()
            .copied()
            .filter(|f| on_key_columns(f))
            .collect();
        let mut inner = self.bars.supports_filters_pushdown(&keys)?.into_iter();
        Ok(filters
            .iter()
            .map(|f| {
                if on_key_columns(f) {
                    inner
                        .next()
                        .unwrap_or(TableProviderFilterPushDown::Unsupported)
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let all: Vec<usize> = (0..BARS_SCHEMA.fields().len()).collect();
        let wanted = projection.cloned().unwrap_or(all);
        // The adjustment needs each row's series and open time.
        let mut read = wanted.clone();
        for name in [COL_SYMBOL, COL_TIMEFRAME, COL_TS] {
            let i = BARS_SCHEMA.index_of(name)?;
            if !read.contains(&i) {
                read.push(i);
            }
        }
        let keys: Vec<Expr> = filters
            .iter()
            .filter(|f| on_key_columns(f))
            .cloned()
            .collect();
        let input = self.bars.scan(state, Some(&read), &keys, limit).await?;
        let adjusted: Arc<dyn ExecutionPlan> = Arc::new(AdjustExec::new(
            input,
            self.adjust,
            Weak::clone(&self.adjuster),
        ));
        if read == wanted {
            return Ok(adjusted);
        }
        let schema = adjusted.schema();
        let exprs: Vec<(Arc<dyn PhysicalExpr>, String)> = (0..wanted.len())
            .map(|i| {
                let name = schema.field(i).name().clone();
                (
                    Arc::new(PhysColumn::new(&name, i)) as Arc<dyn PhysicalExpr>,
                    name,
                )
            })
            .collect();
        Ok(Arc::new(ProjectionExec::try_new(exprs, adjusted)?))
    }
}

/// Adjusts the batches of a scan of `bars`; rows, order and partitions are the input's.
#[derive(Debug)]
pub struct AdjustExec {
    input: Arc<dyn ExecutionPlan>,
    adjust: Adjust,
    adjuster: Weak<Adjuster>,
    properties: Arc<PlanProperties>,
}

impl AdjustExec {
    fn new(input: Arc<dyn ExecutionPlan>, adjust: Adjust, adjuster: Weak<Adjuster>) -> Self {
        let properties = Arc::clone(input.properties());
        Self {
            input,
            adjust,
            adjuster,
            properties,
        }
    }
}

impl DisplayAs for AdjustExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "AdjustExec: adjust={}", self.adjust)
    }
}

impl ExecutionPlan for AdjustExec {
    fn name(&self) -> &str {
        "AdjustExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(AdjustExec::new(
            children.swap_remove(0),
            self.adjust,
            Weak::clone(&self.adjuster),
        )))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let schema = input.schema();
        let adjuster = self.adjuster.upgrade().ok_or_else(|| {
            DataFusionError::Execution("the store of this query is closed".into())
        })?;
        // Events known when the query runs.
        let actions = adjuster.actions().snapshot();
        let adjustment = Adjustment::new(self.adjust, None);
        let cols = Columns::of(&schema)
            .ok_or_else(|| DataFusionError::Internal("adjusted scan without ts".into()))?;
        let state = Arc::new(tokio::sync::Mutex::new(FactorsBySeries::new()));
        let stream = input.then(move |batch| {
            let (adjuster, actions, cols, state) = (
                Arc::clone(&adjuster),
                Arc::clone(&actions),
                cols.clone(),
                Arc::clone(&state),
            );
            async move {
                let batch = batch?;
                let mut known = state.lock().await;
                add_series(&adjuster, &actions, &adjustment, &batch, &mut known).await?;
                Ok(adjust_mixed(&batch, &cols, &known)?)
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

/// Plans the series of `batch` not planned yet (the adjuster caches their previous closes).
async fn add_series(
    adjuster: &Adjuster,
    actions: &ActionSet,
    adjustment: &Adjustment,
    batch: &RecordBatch,
    known: &mut FactorsBySeries,
) -> Result<()> {
    let schema = batch.schema();
    let symbols = batch
        .column(schema.index_of(COL_SYMBOL)?)
        .as_string::<i32>();
    let intervals = batch
        .column(schema.index_of(COL_TIMEFRAME)?)
        .as_string::<i32>();
    let mut last: Option<(&str, &str)> = None;
    for i in 0..batch.num_rows() {
        let key = (symbols.value(i), intervals.value(i));
        if last == Some(key) || known.get(key.0).is_some_and(|m| m.contains_key(key.1)) {
            last = Some(key);
            continue;
        }
        last = Some(key);
        let (Ok(symbol), Ok(interval)) = (Symbol::stored(key.0), key.1.parse::<Interval>()) else {
            continue;
        };
        let (factors, _) = adjuster
            .plan_series(actions, &symbol, interval, adjustment)
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        known
            .entry(key.0.to_string())
            .or_default()
            .insert(key.1.to_string(), Arc::new(factors));
    }
    Ok(())
}
