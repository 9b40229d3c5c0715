//! The `bars` table for DataFusion: prunes files through the catalog before opening any, hands the
//! same predicate to the Parquet scan for row-group and page pruning, and declares the order the
//! files are in so `ORDER BY ts, symbol` merges instead of sorting.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{
    ArrayRef, BooleanArray, RecordBatch, StringArray, TimestampMicrosecondArray, UInt64Array,
};
use arrow::datatypes::{DataType, Field, FieldRef, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::stats::Precision;
use datafusion::common::{Column, DFSchema, ScalarValue, Statistics};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;

use datafusion::datasource::physical_plan::{
    FileGroup, FileScanConfigBuilder, ParquetFileReaderFactory, ParquetSource,
};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::error::Result;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::{LexOrdering, PhysicalSortExpr, expressions::Column as PhysColumn};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion_pruning::{PruningPredicate, PruningPredicateBuilder};

use chrono::{DateTime, Utc};
use object_store::ObjectMeta;

use super::overlay::{KeyColumns, LiveOverlayExec, LiveSeries, Shadow};
use crate::batch::{SeriesKey, ts_column};
use crate::catalog::{Catalog, FileMeta, Snapshot};
use crate::live::{Live, SeriesView};
use crate::model::{BARS_SCHEMA, COL_SYMBOL, COL_TIMEFRAME, COL_TS, FILE_SCHEMA};
use crate::storage::object_path;

/// The object store URL under which the store is registered with DataFusion.
pub const STORE_URL: &str = "tickvault://store";

/// Counts of the work scans did, so tests and `/metrics` can see pruning at work.
#[derive(Debug, Default)]
pub struct ScanCounters {
    pub scans: AtomicU64,
    pub files_considered: AtomicU64,
    pub files_pruned: AtomicU64,
    pub files_scanned: AtomicU64,
    /// Scans whose predicate could not be analysed, so every file was scanned.
    pub unpruned_scans: AtomicU64,
}

/// A point-in-time copy of [`ScanCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanStats {
    pub scans: u64,
    pub files_considered: u64,
    pub files_pruned: u64,
    pub files_scanned: u64,
    pub unpruned_scans: u64,
}

impl ScanCounters {
    /// Files a scan looked at in the catalog and how many of those it reads.
    pub(super) fn record_files(&self, considered: usize, scanned: usize) {
        self.files_considered
            .fetch_add(considered as u64, Ordering::Relaxed);
        self.files_pruned
            .fetch_add((considered - scanned) as u64, Ordering::Relaxed);
        self.files_scanned
            .fetch_add(scanned as u64, Ordering::Relaxed);
    }

    pub fn get(&self) -> ScanStats {
        ScanStats {
            scans: self.scans.load(Ordering::Relaxed),
            files_considered: self.files_considered.load(Ordering::Relaxed),
            files_pruned: self.files_pruned.load(Ordering::Relaxed),
            files_scanned: self.files_scanned.load(Ordering::Relaxed),
            unpruned_scans: self.unpruned_scans.load(Ordering::Relaxed),
        }
    }
}

/// Where a read takes the table's file list from.
#[derive(Debug, Clone)]
pub enum TableSource {
    /// The latest version: the catalog's snapshot as each scan plans (the live tier, when
    /// there is one, is laid over it).
    Latest(Arc<Catalog>),
    /// One version of the table as it was committed: a fixed file list, never a live row.
    At(Arc<Snapshot>),
}

impl TableSource {
    /// The file list a scan reads now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        match self {
            TableSource::Latest(catalog) => catalog.snapshot(),
            TableSource::At(snapshot) => Arc::clone(snapshot),
        }
    }
}

#[derive(Debug)]
pub struct BarsTable {
    source: TableSource,
    live: Option<Arc<Live>>,
    /// Readers whose footers (with page indexes) the session caches across queries; shared
    /// with the engine's range reads.
    files: Arc<dyn ParquetFileReaderFactory>,
    counters: Arc<ScanCounters>,
}

impl BarsTable {
    /// `live` is laid over the stored rows; give none with [`TableSource::At`] (a past
    /// version is what was committed then).
    pub fn new(
        source: TableSource,
        live: Option<Arc<Live>>,
        files: Arc<dyn ParquetFileReaderFactory>,
        counters: Arc<ScanCounters>,
    ) -> Self {
        Self {
            source,
            live,
            files,
            counters,
        }
    }
}

/// Index of a `bars` column in the scan's table schema (file columns, then symbol, interval).
fn scan_index(bars_index: usize) -> usize {
    match bars_index {
        0 => FILE_SCHEMA.fields().len(),     // symbol
        1 => FILE_SCHEMA.fields().len() + 1, // interval
        i => i - 2,
    }
}

fn partition_fields() -> Vec<FieldRef> {
    vec![
        Arc::new(Field::new(COL_SYMBOL, DataType::Utf8, false)),
        Arc::new(Field::new(COL_TIMEFRAME, DataType::Utf8, false)),
    ]
}

fn sort_key(schema: &SchemaRef, names: &[&str]) -> LexOrdering {
    let exprs = names.iter().map(|name| {
        let idx = schema.index_of(name).expect("column exists");
        PhysicalSortExpr::new_default(Arc::new(PhysColumn::new(name, idx)))
    });
    LexOrdering::new(exprs).expect("non-empty ordering")
}

fn ts_scalar(v: i64) -> ScalarValue {
    ScalarValue::TimestampMicrosecond(Some(v), Some("UTC".into()))
}

pub(super) fn partitioned_file(f: &FileMeta) -> PartitionedFile {
    let mut columns =
        vec![datafusion::common::ColumnStatistics::new_unknown(); FILE_SCHEMA.fields().len()];
    columns[0].min_value = Precision::Exact(ts_scalar(f.min_ts));
    columns[0].max_value = Precision::Exact(ts_scalar(f.max_ts));
    columns[0].null_count = Precision::Exact(0);
    let stats = Statistics {
        num_rows: Precision::Exact(f.rows as usize),
        total_byte_size: Precision::Inexact(f.bytes as usize),
        column_statistics: columns,
    };
    let meta = ObjectMeta {
        location: object_path(&f.path),
        last_modified: DateTime::<Utc>::UNIX_EPOCH,
        size: f.bytes,
        e_tag: None,
        version: None,
    };
    let mut file = PartitionedFile::new_from_meta(meta).with_partition_values(vec![
        ScalarValue::Utf8(Some(f.symbol.as_str().to_string())),
        ScalarValue::Utf8(Some(f.interval.as_str().to_string())),
    ]);
    if f.footer_bytes > 0 {
        file = file.with_metadata_size_hint(f.footer_bytes as usize);
    }
    if !f.crc32.is_empty() {
        // What the reader checks every byte against (`reader::VerifiedReader`).
        file = file.with_extension(Arc::new(f.recorded()));
    }
    file.with_statistics(Arc::new(stats))
}

/// Per-container (a file, or a live series) min/max of symbol, interval and ts, for pruning
/// before anything is opened.
struct ContainerStats<'a> {
    symbols: Vec<&'a str>,
    intervals: Vec<&'static str>,
    min_ts: Vec<i64>,
    max_ts: Vec<i64>,
    rows: Vec<u64>,
}

impl<'a> ContainerStats<'a> {
    fn of_files(files: &[&'a FileMeta]) -> Self {
        Self {
            symbols: files.iter().map(|f| f.symbol.as_str()).collect(),
            intervals: files.iter().map(|f| f.interval.as_str()).collect(),
            min_ts: files.iter().map(|f| f.min_ts).collect(),
            max_ts: files.iter().map(|f| f.max_ts).collect(),
            rows: files.iter().map(|f| f.rows).collect(),
        }
    }

    fn of_series(series: &'a [(SeriesKey, usize, i64, i64)]) -> Self {
        Self {
            symbols: series.iter().map(|s| s.0.symbol.as_str()).collect(),
            intervals: series.iter().map(|s| s.0.interval.as_str()).collect(),
            min_ts: series.iter().map(|s| s.2).collect(),
            max_ts: series.iter().map(|s| s.3).collect(),
            rows: series.iter().map(|s| s.1 as u64).collect(),
        }
    }

    fn values(&self, column: &Column, ts: &[i64]) -> Option<ArrayRef> {
        match column.name() {
            COL_SYMBOL => Some(Arc::new(StringArray::from(self.symbols.clone()))),
            COL_TIMEFRAME => Some(Arc::new(StringArray::from(self.intervals.clone()))),
            COL_TS => Some(Arc::new(
                TimestampMicrosecondArray::from(ts.to_vec()).with_timezone("UTC"),
            )),
            _ => None,
        }
    }
}

impl PruningStatistics for ContainerStats<'_> {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        self.values(column, &self.min_ts)
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        self.values(column, &self.max_ts)
    }

    fn num_containers(&self) -> usize {
        self.rows.len()
    }

    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        matches!(column.name(), COL_SYMBOL | COL_TIMEFRAME | COL_TS)
            .then(|| Arc::new(UInt64Array::from(vec![0u64; self.rows.len()])) as ArrayRef)
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        Some(Arc::new(UInt64Array::from(self.rows.clone())))
    }

    /// Every container holds one symbol and one interval, so whether it holds one of a set of
    /// values has an exact answer: an `IN` list of any length prunes with one hash lookup per
    /// container. (Min/max pruning would rewrite the list into a chain of ORs, one level per
    /// value, which overflowed the stack at a few thousand symbols.)
    fn contained(&self, column: &Column, values: &HashSet<ScalarValue>) -> Option<BooleanArray> {
        let wanted: HashSet<&str> = values
            .iter()
            .map(|v| match v {
                ScalarValue::Utf8(Some(s))
                | ScalarValue::LargeUtf8(Some(s))
                | ScalarValue::Utf8View(Some(s)) => Some(s.as_str()),
                // A null or another type: leave the answer to the filter.
                _ => None,
            })
            .collect::<Option<_>>()?;
        let answer = |held: &[&str]| held.iter().map(|v| Some(wanted.contains(v))).collect();
        match column.name() {
            COL_SYMBOL => Some(answer(&self.symbols)),
            COL_TIMEFRAME => Some(answer(&self.intervals)),
            _ => None,
        }
    }
}

/// Which containers a predicate may match; every one when it cannot be analysed.
fn prune(pruning: &Option<PruningPredicate>, stats: &ContainerStats) -> Vec<bool> {
    match pruning {
        None => vec![true; stats.num_containers()],
        Some(p) => p.prune(stats).unwrap_or_else(|e| {
            tracing::warn!("not pruning: {e}");
            vec![true; stats.num_containers()]
        }),
    }
}

/// Live rows for the series a query reads, taken before the catalog snapshot: a transfer
/// commits to Parquet before it drops rows from memory, so every row is in one of the two.
struct LiveRows {
    views: Vec<SeriesView>,
}

impl LiveRows {
    fn take(live: &Live, pruning: &Option<PruningPredicate>) -> Self {
        let state = live.read();
        let summaries = state.summaries();
        let mask = prune(pruning, &ContainerStats::of_series(&summaries));
        let wanted: HashSet<&SeriesKey> = summaries
            .iter()
            .zip(mask)
            .filter_map(|(s, keep)| keep.then_some(&s.0))
            .collect();
        Self {
            views: state.view(|key| wanted.contains(key)),
        }
    }

    /// The live ts per series, which hide stored rows with the same key.
    fn shadow(&self) -> Shadow {
        let mut map = HashMap::new();
        for v in &self.views {
            let mut ts: Vec<i64> = Vec::with_capacity(v.rows);
            for b in &v.batches {
                ts.extend_from_slice(ts_column(b).values());
            }
            map.insert(
                (
                    v.key.symbol.as_str().to_string(),
                    v.key.interval.as_str().to_string(),
                ),
                ts,
            );
        }
        Arc::new(map)
    }

    /// Each series' rows in the scan schema (file columns, symbol, interval), projected.
    fn partitions(&self, projection: &[usize]) -> Result<Vec<LiveSeries>> {
        let mut out = Vec::with_capacity(self.views.len());
        for v in &self.views {
            let mut batches = Vec::with_capacity(v.batches.len());
            for b in &v.batches {
                let n = b.num_rows();
                let mut columns = b.columns().to_vec();
                columns.push(Arc::new(StringArray::from(vec![v.key.symbol.as_str(); n])));
                columns.push(Arc::new(StringArray::from(vec![
                    v.key.interval.as_str();
                    n
                ])));
                let full = RecordBatch::try_new(scan_schema(), columns)?;
                batches.push(full.project(projection)?);
            }
            out.push(LiveSeries {
                name: (
                    v.key.symbol.as_str().to_string(),
                    v.key.interval.as_str().to_string(),
                ),
                batches,
            });
        }
        Ok(out)
    }
}

fn scan_schema() -> SchemaRef {
    static SCHEMA: std::sync::LazyLock<SchemaRef> = std::sync::LazyLock::new(|| {
        let mut fields: Vec<FieldRef> = FILE_SCHEMA.fields().iter().cloned().collect();
        fields.extend(partition_fields());
        Arc::new(arrow::datatypes::Schema::new(fields))
    });
    Arc::clone(&SCHEMA)
}

#[async_trait]
impl datafusion::catalog::TableProvider for BarsTable {
    fn schema(&self) -> SchemaRef {
        BARS_SCHEMA.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Inexact: files and row groups are pruned, rows are still filtered above the scan.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.counters.scans.fetch_add(1, Ordering::Relaxed);
        let full = scan_schema();
        let predicate = match conjunction(filters.iter().cloned()) {
            Some(expr) => {
                let df_schema = DFSchema::try_from(full.as_ref().clone())?;
                Some(state.create_physical_expr(expr, &df_schema)?)
            }
            None => None,
        };
        let pruning = predicate.as_ref().and_then(|pred| {
            PruningPredicateBuilder::new()
                // Long IN lists of symbols prune through `ContainerStats::contained`; the
                // default bound on the lists rewritten for min/max keeps that rewrite shallow.
                .with_file_schema(Arc::clone(&full))
                .try_build(Arc::clone(pred))
                .inspect_err(|e| {
                    tracing::warn!("scanning every file: predicate not analysable: {e}");
                    self.counters.unpruned_scans.fetch_add(1, Ordering::Relaxed);
                })
                .ok()
        });

        // Live rows first, then the catalog (see `LiveRows`).
        let live = self
            .live
            .as_ref()
            .map(|live| LiveRows::take(live, &pruning))
            .filter(|rows| !rows.views.is_empty());
        let snapshot = self.source.snapshot();
        let all: Vec<&FileMeta> = snapshot.files().collect();
        let mask = prune(&pruning, &ContainerStats::of_files(&all));
        let kept: Vec<&FileMeta> = all
            .iter()
            .zip(mask)
            .filter_map(|(f, keep)| keep.then_some(*f))
            .collect();
        self.counters.record_files(all.len(), kept.len());

        let output: Vec<usize> = match projection {
            Some(p) => p.iter().map(|&i| scan_index(i)).collect(),
            None => (0..BARS_SCHEMA.fields().len()).map(scan_index).collect(),
        };
        let Some(live) = live else {
            if kept.is_empty() {
                return Ok(Arc::new(EmptyExec::new(Arc::new(full.project(&output)?))));
            }
            return parquet_scan(&self.files, kept, predicate, output, limit);
        };

        // Stored rows are matched to live ones by key, so the stored scan also reads the key
        // columns; the overlay projects them away again. No limit below the overlay: hidden
        // rows would make a limited scan return too few.
        let mut inner = output.clone();
        for name in [COL_SYMBOL, COL_TIMEFRAME, COL_TS] {
            let index = full.index_of(name)?;
            if !inner.contains(&index) {
                inner.push(index);
            }
        }
        let position = |name: &str| -> Result<usize> {
            let index = full.index_of(name)?;
            Ok(inner
                .iter()
                .position(|&i| i == index)
                .expect("key column added"))
        };
        let keys = KeyColumns {
            symbol: position(COL_SYMBOL)?,
            interval: position(COL_TIMEFRAME)?,
            ts: position(COL_TS)?,
        };
        let stored = if kept.is_empty() {
            Arc::new(EmptyExec::new(Arc::new(full.project(&inner)?))) as Arc<dyn ExecutionPlan>
        } else {
            parquet_scan(&self.files, kept, predicate, inner, None)?
        };
        let output_schema = Arc::new(full.project(&output)?);
        Ok(Arc::new(LiveOverlayExec::new(
            stored,
            keys,
            live.shadow(),
            (0..output.len()).collect(),
            live.partitions(&output)?,
            orderings(&output_schema),
        )?))
    }
}

/// The orderings every scan partition has (one series, ascending ts), as far as `schema` has
/// the columns: by (ts, symbol, interval) and by (symbol, interval, ts).
pub(super) fn orderings(schema: &SchemaRef) -> Vec<LexOrdering> {
    [
        [COL_TS, COL_SYMBOL, COL_TIMEFRAME],
        [COL_SYMBOL, COL_TIMEFRAME, COL_TS],
    ]
    .iter()
    .filter_map(|names| {
        let present: Vec<&str> = names
            .iter()
            .copied()
            .take_while(|n| schema.index_of(n).is_ok())
            .collect();
        (!present.is_empty()).then(|| sort_key(schema, &present))
    })
    .collect()
}

/// The Parquet scan of the files kept: one file group per series, files in time order.
fn parquet_scan(
    files: &Arc<dyn ParquetFileReaderFactory>,
    kept: Vec<&FileMeta>,
    predicate: Option<Arc<dyn datafusion::physical_expr::PhysicalExpr>>,
    projection: Vec<usize>,
    limit: Option<usize>,
) -> Result<Arc<dyn ExecutionPlan>> {
    // Each group is sorted by ts with a constant symbol and interval, so both orderings hold
    // for every group.
    let mut series: BTreeMap<(&str, &str), Vec<&FileMeta>> = BTreeMap::new();
    for f in kept {
        series
            .entry((f.symbol.as_str(), f.interval.as_str()))
            .or_default()
            .push(f);
    }
    let groups: Vec<FileGroup> = series
        .into_values()
        .map(|mut files| {
            files.sort_by_key(|f| f.min_ts);
            FileGroup::new(files.into_iter().map(partitioned_file).collect())
        })
        .collect();

    let store_url = ObjectStoreUrl::parse(STORE_URL)?;
    let table_schema = TableSchema::builder(FILE_SCHEMA.clone())
        .with_table_partition_cols(partition_fields())
        .build();
    let full = Arc::clone(table_schema.table_schema());
    let mut source = ParquetSource::new(table_schema)
        .with_enable_page_index(true)
        .with_parquet_file_reader_factory(Arc::clone(files));
    if let Some(pred) = predicate {
        source = source.with_predicate(pred);
    }
    let config = FileScanConfigBuilder::new(store_url, Arc::new(source))
        .with_file_groups(groups)
        .with_output_ordering(orderings(&full))
        .with_projection_indices(Some(projection))?
        .with_limit(limit)
        .build();
    Ok(DataSourceExec::from_data_source(config))
}
