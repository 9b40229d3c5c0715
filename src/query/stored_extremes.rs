//! `min(ts)` and `max(ts)` per series from the catalog instead of the data.
//!
//! The catalog records every file's first and last bar time when the file is written, and the
//! scan hands them to DataFusion as exact statistics. An aggregate that asks only for the
//! minimum or maximum ts, grouped by nothing or by symbol and interval, and whose rows are
//! filtered (if at all) by symbol and interval only, gets the same answer from two rows per
//! file, (symbol, interval, first ts) and (symbol, interval, last ts): "latest bar per symbol"
//! then reads no Parquet at all. Live rows still come from the live tier, as they are.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::config::ConfigOptions;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result;
use datafusion::physical_expr::utils::collect_columns;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::execution_plan::replace_children_if_necessary;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort::SortExec;

use super::overlay::LiveOverlayExec;
use super::series_plan::{is_key_column, is_plain_column, keeps_key_columns, stored_scan};
use super::table::orderings;
use crate::model::{COL_SYMBOL, COL_TIMEFRAME, COL_TS, FILE_SCHEMA};

/// The optimizer rule: answers qualifying aggregates from the files' recorded time ranges.
#[derive(Debug, Default)]
pub(super) struct TsExtremesFromCatalog;

impl PhysicalOptimizerRule for TsExtremesFromCatalog {
    fn name(&self) -> &str {
        "TsExtremesFromCatalog"
    }

    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_down(|node| {
            if !asks_only_ts_extremes(&node) || !reaches_scans_unchanged(node.children()[0]) {
                return Ok(Transformed::no(node));
            }
            // A scan with a file whose range is not recorded stays as it is.
            let input = Arc::clone(node.children()[0]).transform_up(|n| {
                let extremes = match stored_scan(&n) {
                    Some(config) => extremes_of_files(config, n.schema())?,
                    None => None,
                };
                Ok(match extremes {
                    Some(plan) => Transformed::yes(plan),
                    None => Transformed::no(n),
                })
            })?;
            Ok(Transformed::yes(replace_children_if_necessary(
                node,
                vec![input.data],
            )?))
        })
        .map(|t| t.data)
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// An aggregate over raw rows computing only `min(ts)`/`max(ts)`, grouped by nothing or by
/// series keys.
fn asks_only_ts_extremes(plan: &Arc<dyn ExecutionPlan>) -> bool {
    let Some(aggregate) = plan.downcast_ref::<AggregateExec>() else {
        return false;
    };
    let raw_input = matches!(
        aggregate.mode(),
        AggregateMode::Partial | AggregateMode::Single | AggregateMode::SinglePartitioned
    );
    let group_by = aggregate.group_expr();
    let by_series = group_by.is_single()
        && group_by
            .expr()
            .iter()
            .all(|(e, _)| is_plain_column(e, COL_SYMBOL) || is_plain_column(e, COL_TIMEFRAME));
    let extremes = aggregate.aggr_expr().iter().all(|a| {
        matches!(a.fun().name(), "min" | "max")
            && matches!(a.expressions().as_slice(), [e] if is_plain_column(e, COL_TS))
    });
    raw_input
        && by_series
        && extremes
        && !aggregate.aggr_expr().is_empty()
        && aggregate.filter_expr().iter().all(Option::is_none)
        && aggregate.limit_options().is_none()
}

/// Every path below `plan` ends at a stored scan (or nothing), through nodes that drop rows
/// only by symbol and interval and change no key column: so the extremes of each file's ts
/// give the extremes of what reaches the aggregate.
fn reaches_scans_unchanged(plan: &Arc<dyn ExecutionPlan>) -> bool {
    if let Some(config) = stored_scan(plan) {
        return config.limit.is_none()
            && plan
                .schema()
                .fields()
                .iter()
                .all(|f| is_key_column(f.name()));
    }
    let any = plan.as_ref();
    let passes = if let Some(filter) = any.downcast_ref::<FilterExec>() {
        filter.projection().is_none()
            && collect_columns(filter.predicate())
                .iter()
                .all(|c| matches!(c.name(), COL_SYMBOL | COL_TIMEFRAME))
    } else if let Some(projection) = any.downcast_ref::<ProjectionExec>() {
        keeps_key_columns(projection.expr())
    } else if let Some(sort) = any.downcast_ref::<SortExec>() {
        sort.fetch().is_none()
    } else {
        // The overlay hides stored rows that live rows with the same key replace: the same ts.
        any.is::<LiveOverlayExec>()
            || any.is::<EmptyExec>()
            || any.is::<RepartitionExec>()
            || any.is::<CoalescePartitionsExec>()
            || any.is::<CooperativeExec>()
    };
    passes && plan.children().iter().all(|c| reaches_scans_unchanged(c))
}

/// A file's recorded first and last ts, from the statistics the scan was given.
fn ts_range(file: &PartitionedFile) -> Option<(i64, i64)> {
    let ts = &file.statistics.as_ref()?.column_statistics[FILE_SCHEMA.index_of(COL_TS).ok()?];
    match (&ts.min_value, &ts.max_value) {
        (
            Precision::Exact(ScalarValue::TimestampMicrosecond(Some(min), _)),
            Precision::Exact(ScalarValue::TimestampMicrosecond(Some(max), _)),
        ) => Some((*min, *max)),
        _ => None,
    }
}

/// In place of a stored scan: per file group, its files' first and last rows' keys, sorted
/// by ts (each group is one series, so the scan's orderings still hold). `None` if a file's
/// range or series is not known.
fn extremes_of_files(
    config: &FileScanConfig,
    schema: SchemaRef,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let mut partitions = Vec::with_capacity(config.file_groups.len());
    for group in &config.file_groups {
        let mut rows: Vec<(i64, &str, &str)> = Vec::with_capacity(2 * group.len());
        for file in group.iter() {
            let (
                Some((min, max)),
                [
                    ScalarValue::Utf8(Some(symbol)),
                    ScalarValue::Utf8(Some(interval)),
                ],
            ) = (ts_range(file), file.partition_values.as_slice())
            else {
                return Ok(None);
            };
            rows.push((min, symbol, interval));
            rows.push((max, symbol, interval));
        }
        rows.sort_unstable();
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|field| -> ArrayRef {
                match field.name().as_str() {
                    COL_SYMBOL => Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
                    COL_TIMEFRAME => {
                        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2)))
                    }
                    _ => {
                        let ts =
                            TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.0));
                        match field.data_type() {
                            DataType::Timestamp(_, Some(zone)) => {
                                Arc::new(ts.with_timezone(zone.as_ref()))
                            }
                            _ => Arc::new(ts),
                        }
                    }
                }
            })
            .collect();
        partitions.push(vec![RecordBatch::try_new(Arc::clone(&schema), columns)?]);
    }
    let source = MemorySourceConfig::try_new(&partitions, Arc::clone(&schema), None)?
        .try_with_sort_information(orderings(&schema))?;
    Ok(Some(DataSourceExec::from_data_source(source)))
}
