//! What a physical plan over `bars` knows about series: the stored scan beneath a node, and
//! which series each partition reads. The plan rewrites of `series_aggregate` and
//! `stored_extremes` use these to prove a rewrite keeps the answer.

use std::sync::Arc;

use datafusion::common::ScalarValue;
use datafusion::datasource::physical_plan::{FileScanConfig, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::projection::ProjectionExpr;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};

use super::overlay::{LiveOverlayExec, SeriesName};
use super::table::STORE_URL;
use crate::model::{COL_SYMBOL, COL_TIMEFRAME, COL_TS};

/// The key columns: constant within a series (symbol, interval) or its time (ts).
pub(super) fn is_key_column(name: &str) -> bool {
    matches!(name, COL_SYMBOL | COL_TIMEFRAME | COL_TS)
}

/// `expr` is the column `name` itself, not an expression that took its name.
pub(super) fn is_plain_column(expr: &Arc<dyn PhysicalExpr>, name: &str) -> bool {
    expr.downcast_ref::<Column>()
        .is_some_and(|c| c.name() == name)
}

/// Every key column in `projection` is the column itself: none was computed or renamed into
/// a key's name.
pub(super) fn keeps_key_columns(projection: &[ProjectionExpr]) -> bool {
    projection
        .iter()
        .all(|p| !is_key_column(&p.alias) || is_plain_column(&p.expr, &p.alias))
}

/// The Parquet scan of this store's files that `plan` is, if it is one whose key columns are
/// the columns themselves (a projection pushed into the scan could have renamed them).
pub(super) fn stored_scan(plan: &Arc<dyn ExecutionPlan>) -> Option<&FileScanConfig> {
    let config = plan
        .downcast_ref::<DataSourceExec>()?
        .data_source()
        .downcast_ref::<FileScanConfig>()?;
    let source = config.file_source();
    if !config.object_store_url.as_str().starts_with(STORE_URL) || !source.is::<ParquetSource>() {
        return None;
    }
    if let Some(projection) = source.projection()
        && !keeps_key_columns(projection.as_ref())
    {
        return None;
    }
    Some(config)
}

/// The series each file group of a stored scan reads; `None` unless every group holds files
/// of one series and each partition reads only its own group (DataFusion lets an idle
/// partition take a sibling's files unless the scan preserves order).
fn file_group_series(config: &FileScanConfig) -> Option<Vec<SeriesName>> {
    if !config.preserve_order {
        return None;
    }
    config
        .file_groups
        .iter()
        .map(|group| {
            let mut names = group
                .iter()
                .map(|file| match file.partition_values.as_slice() {
                    [
                        ScalarValue::Utf8(Some(symbol)),
                        ScalarValue::Utf8(Some(interval)),
                    ] => Some((symbol.clone(), interval.clone())),
                    _ => None,
                });
            let first = names.next()??;
            names.all(|n| n.as_ref() == Some(&first)).then_some(first)
        })
        .collect()
}

/// A node that keeps each input partition's rows in the same output partition and passes the
/// key columns through under their own names.
fn keeps_partitions_and_keys(plan: &Arc<dyn ExecutionPlan>) -> bool {
    let any = plan.as_ref();
    if let Some(projection) = any.downcast_ref::<ProjectionExec>() {
        return keeps_key_columns(projection.expr());
    }
    if let Some(filter) = any.downcast_ref::<FilterExec>() {
        return filter.projection().is_none();
    }
    if let Some(sort) = any.downcast_ref::<SortExec>() {
        return sort.preserve_partitioning();
    }
    any.is::<CooperativeExec>()
}

/// The series every output partition of `plan` reads, when each reads exactly one: true of the
/// `bars` scan (one file group per series, then one partition per live series) and of the
/// filters, projections and sorts above it that keep partitions apart.
pub(super) fn partition_series(plan: &Arc<dyn ExecutionPlan>) -> Option<Vec<SeriesName>> {
    if let Some(config) = stored_scan(plan) {
        return file_group_series(config);
    }
    if plan.is::<EmptyExec>() {
        // No rows, so no series: any name will do.
        let partitions = plan.output_partitioning().partition_count();
        return Some(vec![(String::new(), String::new()); partitions]);
    }
    if let Some(overlay) = plan.downcast_ref::<LiveOverlayExec>() {
        let mut series = partition_series(overlay.stored())?;
        series.extend(overlay.live_series());
        return Some(series);
    }
    if keeps_partitions_and_keys(plan) {
        return partition_series(plan.children()[0]);
    }
    None
}
