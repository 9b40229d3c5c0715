//! Grouping by series without hashing: the partial aggregate of `GROUP BY symbol` (or
//! `interval`, or both) over `bars`.
//!
//! DataFusion's partial aggregate looks up every row's group key in a hash table; for
//! `avg(volume) GROUP BY symbol` over the 15M-row set that was a third of the query. The
//! `bars` scan gives each series partitions of its own, so within one partition the key is a
//! constant: the partial aggregate runs without a key (plain accumulators, no table) and the
//! series' key is attached to its single output row. The final aggregate above is unchanged.

use std::fmt;
use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{Int64Type, SchemaRef};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::functions_aggregate::count::count_udaf;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::aggregate::AggregateExprBuilder;
use datafusion::physical_expr::expressions::lit;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode, PhysicalGroupBy};
use datafusion::physical_plan::execution_plan::replace_children_if_necessary;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
};
use futures::StreamExt;

use super::overlay::SeriesName;
use super::series_plan::{is_plain_column, partition_series};
use crate::model::{COL_SYMBOL, COL_TIMEFRAME};

/// The optimizer rule: swaps qualifying partial aggregates for [`SeriesPartialAggregateExec`].
#[derive(Debug, Default)]
pub(super) struct GroupBySeries;

impl PhysicalOptimizerRule for GroupBySeries {
    fn name(&self) -> &str {
        "GroupBySeries"
    }

    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| match SeriesPartialAggregateExec::try_new(&node)? {
            Some(exec) => Ok(Transformed::yes(Arc::new(exec) as Arc<dyn ExecutionPlan>)),
            None => Ok(Transformed::no(node)),
        })
        .map(|t| t.data)
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Which key column a group column is.
#[derive(Debug, Clone, Copy)]
enum SeriesKey {
    Symbol,
    Interval,
}

/// A partial aggregate grouped by series keys, run per partition without a key.
#[derive(Debug)]
pub(super) struct SeriesPartialAggregateExec {
    /// The aggregate this replaces: its schema and properties are ours, and it is what a
    /// rebuild with new children starts from.
    original: Arc<dyn ExecutionPlan>,
    /// The same aggregates without grouping, plus a row count (last column): a partition
    /// without rows must emit no group.
    ungrouped: Arc<AggregateExec>,
    keys: Vec<SeriesKey>,
    series: Vec<SeriesName>,
}

impl SeriesPartialAggregateExec {
    /// The replacement for `plan` if it is a partial aggregate grouped only by series keys over
    /// input whose partitions each read one series.
    fn try_new(plan: &Arc<dyn ExecutionPlan>) -> Result<Option<Self>> {
        let Some(aggregate) = plan.downcast_ref::<AggregateExec>() else {
            return Ok(None);
        };
        let group_by = aggregate.group_expr();
        if *aggregate.mode() != AggregateMode::Partial
            || !group_by.is_single()
            || group_by.is_empty()
            || aggregate.limit_options().is_some()
        {
            return Ok(None);
        }
        let keys: Option<Vec<SeriesKey>> = group_by
            .expr()
            .iter()
            .map(|(expr, _)| {
                if is_plain_column(expr, COL_SYMBOL) {
                    Some(SeriesKey::Symbol)
                } else if is_plain_column(expr, COL_TIMEFRAME) {
                    Some(SeriesKey::Interval)
                } else {
                    None
                }
            })
            .collect();
        let input = aggregate.input();
        let (Some(keys), Some(series)) = (keys, partition_series(input)) else {
            return Ok(None);
        };
        if series.len() != input.output_partitioning().partition_count() {
            return Ok(None);
        }

        let input_schema = aggregate.input_schema();
        let rows = AggregateExprBuilder::new(count_udaf(), vec![lit(1i64)])
            .schema(Arc::clone(&input_schema))
            .alias("__series_rows")
            .build()?;
        let mut aggregates = aggregate.aggr_expr().to_vec();
        aggregates.push(Arc::new(rows));
        let mut filters = aggregate.filter_expr().to_vec();
        filters.push(None);
        let ungrouped = AggregateExec::try_new(
            AggregateMode::Partial,
            PhysicalGroupBy::default(),
            aggregates,
            filters,
            Arc::clone(input),
            input_schema,
        )?;
        let states = ungrouped.schema().fields().len() - 1;
        if states + keys.len() != plan.schema().fields().len() {
            return Ok(None);
        }
        Ok(Some(Self {
            original: Arc::clone(plan),
            ungrouped: Arc::new(ungrouped),
            keys,
            series,
        }))
    }
}

impl DisplayAs for SeriesPartialAggregateExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let aggregates: Vec<&str> = self
            .ungrouped
            .aggr_expr()
            .iter()
            .map(|a| a.name())
            .collect();
        let aggregates = &aggregates[..aggregates.len() - 1];
        write!(
            f,
            "SeriesPartialAggregateExec: gby={:?}, aggr=[{}], series={}",
            self.keys,
            aggregates.join(", "),
            self.series.len()
        )
    }
}

impl ExecutionPlan for SeriesPartialAggregateExec {
    fn name(&self) -> &str {
        "SeriesPartialAggregateExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        // One row per partition satisfies any ordering the grouped aggregate declared.
        self.original.properties()
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![self.ungrouped.input()]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let original = replace_children_if_necessary(Arc::clone(&self.original), children)?;
        Ok(match Self::try_new(&original)? {
            Some(exec) => Arc::new(exec),
            None => original,
        })
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let (symbol, interval) = &self.series[partition];
        let keys: Vec<ArrayRef> = self
            .keys
            .iter()
            .map(|key| {
                let value = match key {
                    SeriesKey::Symbol => symbol,
                    SeriesKey::Interval => interval,
                };
                Arc::new(StringArray::from(vec![value.as_str()])) as ArrayRef
            })
            .collect();
        let schema = self.schema();
        let out_schema = Arc::clone(&schema);
        let states = self.ungrouped.execute(partition, context)?;
        let grouped = states.filter_map(move |batch| {
            let result = batch.and_then(|batch| attach_keys(&batch, &keys, &out_schema));
            futures::future::ready(result.transpose())
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, grouped)))
    }
}

/// The grouped aggregate's row for one partition: its series' keys, then the aggregate
/// states; nothing when the partition had no rows.
fn attach_keys(
    states: &RecordBatch,
    keys: &[ArrayRef],
    schema: &SchemaRef,
) -> Result<Option<RecordBatch>> {
    let rows = states.column(states.num_columns() - 1);
    let rows = rows.as_primitive::<Int64Type>();
    if rows.is_empty() || rows.value(0) == 0 {
        return Ok(None);
    }
    let mut columns = keys.to_vec();
    columns.extend_from_slice(&states.columns()[..states.num_columns() - 1]);
    Ok(Some(RecordBatch::try_new(Arc::clone(schema), columns)?))
}
