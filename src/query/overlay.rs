//! Live rows laid over stored rows: the scan of `bars` when the live tier holds rows for a
//! series the query reads.
//!
//! Output partitions are the stored scan's partitions, each with the rows whose key the live
//! tier holds removed, followed by one partition per live series. Every partition stays sorted
//! by ts within one series, so the orderings the stored scan declares still hold.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{SchemaRef, TimestampMicrosecondType};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, LexOrdering, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties,
};
use futures::StreamExt;

/// A series by name: (symbol, interval), as a stored file's partition values and the live
/// tier's series give it.
pub(super) type SeriesName = (String, String);

/// The ts values the live tier holds per series, sorted: stored rows with these keys are hidden.
pub(super) type Shadow = Arc<HashMap<SeriesName, Vec<i64>>>;

/// Where the key columns are in the stored scan's output.
#[derive(Debug, Clone, Copy)]
pub(super) struct KeyColumns {
    pub symbol: usize,
    pub interval: usize,
    pub ts: usize,
}

/// A series' live rows, in the overlay's output schema.
#[derive(Debug, Clone)]
pub(super) struct LiveSeries {
    pub name: SeriesName,
    pub batches: Vec<RecordBatch>,
}

#[derive(Debug)]
pub(super) struct LiveOverlayExec {
    stored: Arc<dyn ExecutionPlan>,
    keys: KeyColumns,
    shadow: Shadow,
    /// Columns of the stored output to emit (the query's projection).
    projection: Vec<usize>,
    /// One entry per live series: its rows, already in the output schema.
    live: Vec<LiveSeries>,
    /// Orderings in the output schema, declared only if the stored scan declares an ordering.
    orderings: Vec<LexOrdering>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl LiveOverlayExec {
    pub(super) fn new(
        stored: Arc<dyn ExecutionPlan>,
        keys: KeyColumns,
        shadow: Shadow,
        projection: Vec<usize>,
        live: Vec<LiveSeries>,
        orderings: Vec<LexOrdering>,
    ) -> Result<Self> {
        let schema = Arc::new(stored.schema().project(&projection)?);
        let declared = if stored.output_ordering().is_some() {
            orderings.clone()
        } else {
            Vec::new()
        };
        let eq = EquivalenceProperties::new_with_orderings(Arc::clone(&schema), declared);
        let partitions = stored.output_partitioning().partition_count() + live.len();
        let properties = PlanProperties::new(
            eq,
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(Self {
            stored,
            keys,
            shadow,
            projection,
            live,
            orderings,
            schema,
            properties: Arc::new(properties),
        })
    }
}

impl LiveOverlayExec {
    /// The scan of the stored files, whose partitions come first.
    pub(super) fn stored(&self) -> &Arc<dyn ExecutionPlan> {
        &self.stored
    }

    /// The series of the partitions after the stored ones, in order.
    pub(super) fn live_series(&self) -> impl Iterator<Item = SeriesName> + '_ {
        self.live.iter().map(|l| l.name.clone())
    }
}

impl DisplayAs for LiveOverlayExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "LiveOverlayExec: live_series={}, shadowed_series={}",
            self.live.len(),
            self.shadow.len()
        )
    }
}

impl ExecutionPlan for LiveOverlayExec {
    fn name(&self) -> &str {
        "LiveOverlayExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.stored]
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
        Ok(Arc::new(LiveOverlayExec::new(
            children.swap_remove(0),
            self.keys,
            Arc::clone(&self.shadow),
            self.projection.clone(),
            self.live.clone(),
            self.orderings.clone(),
        )?))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let stored_partitions = self.stored.output_partitioning().partition_count();
        if partition >= stored_partitions {
            let batches = self.live[partition - stored_partitions].batches.clone();
            return Ok(Box::pin(MemoryStream::try_new(
                batches,
                Arc::clone(&self.schema),
                None,
            )?));
        }
        let input = self.stored.execute(partition, context)?;
        let (keys, shadow, projection) =
            (self.keys, Arc::clone(&self.shadow), self.projection.clone());
        let stream = input.map(move |batch| {
            let batch = hide_shadowed(batch?, keys, &shadow)?;
            Ok(batch.project(&projection)?)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            stream,
        )))
    }
}

/// Removes the rows of a stored batch whose key the live tier holds. A batch comes from one
/// file, so its symbol and interval are the same on every row.
fn hide_shadowed(batch: RecordBatch, keys: KeyColumns, shadow: &Shadow) -> Result<RecordBatch> {
    if batch.num_rows() == 0 {
        return Ok(batch);
    }
    let symbol = batch.column(keys.symbol).as_string::<i32>().value(0);
    let interval = batch.column(keys.interval).as_string::<i32>().value(0);
    let Some(live_ts) = shadow.get(&(symbol.to_string(), interval.to_string())) else {
        return Ok(batch);
    };
    let ts = batch
        .column(keys.ts)
        .as_primitive::<TimestampMicrosecondType>();
    let (first, last) = (ts.value(0), ts.value(ts.len() - 1));
    let (lo, hi) = (first.min(last), first.max(last));
    let from = live_ts.partition_point(|&t| t < lo);
    if from == live_ts.len() || live_ts[from] > hi {
        return Ok(batch); // no live key inside this batch's range
    }
    let keep: BooleanArray = ts
        .values()
        .iter()
        .map(|t| Some(live_ts.binary_search(t).is_err()))
        .collect();
    debug_assert_eq!(ts.null_count(), 0);
    Ok(filter_record_batch(&batch, &keep)?)
}
