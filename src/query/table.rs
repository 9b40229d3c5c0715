//! The `bars` table for DataFusion: prunes files through the catalog before opening any, hands the
//! same predicate to the Parquet scan for row-group and page pruning, and declares the order the
//! files are in so `ORDER BY ts, symbol` merges instead of sorting.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{ArrayRef, BooleanArray, StringArray, TimestampMicrosecondArray, UInt64Array};
use arrow::datatypes::{DataType, Field, FieldRef, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::stats::Precision;
use datafusion::common::{Column, DFSchema, ScalarValue, Statistics};
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::error::Result;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::{LexOrdering, PhysicalSortExpr, expressions::Column as PhysColumn};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion_pruning::PruningPredicateBuilder;

use chrono::{DateTime, Utc};
use object_store::ObjectMeta;

use crate::catalog::{Catalog, FileMeta};
use crate::model::{BARS_SCHEMA, COL_INTERVAL, COL_SYMBOL, COL_TS, FILE_SCHEMA};
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

#[derive(Debug)]
pub struct BarsTable {
    catalog: Arc<Catalog>,
    counters: Arc<ScanCounters>,
}

impl BarsTable {
    pub fn new(catalog: Arc<Catalog>, counters: Arc<ScanCounters>) -> Self {
        Self { catalog, counters }
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
        Arc::new(Field::new(COL_INTERVAL, DataType::Utf8, false)),
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

fn partitioned_file(f: &FileMeta) -> PartitionedFile {
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
    file.with_statistics(Arc::new(stats))
}

/// Per-file min/max of symbol, interval and ts, straight from the catalog.
struct CatalogStats<'a> {
    files: &'a [&'a FileMeta],
}

impl PruningStatistics for CatalogStats<'_> {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        self.values(column, |f| f.min_ts)
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        self.values(column, |f| f.max_ts)
    }

    fn num_containers(&self) -> usize {
        self.files.len()
    }

    fn null_counts(&self, column: &Column) -> Option<ArrayRef> {
        matches!(column.name(), COL_SYMBOL | COL_INTERVAL | COL_TS)
            .then(|| Arc::new(UInt64Array::from(vec![0u64; self.files.len()])) as ArrayRef)
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        Some(Arc::new(UInt64Array::from_iter_values(
            self.files.iter().map(|f| f.rows),
        )))
    }

    fn contained(&self, _column: &Column, _values: &HashSet<ScalarValue>) -> Option<BooleanArray> {
        None
    }
}

impl CatalogStats<'_> {
    fn values(&self, column: &Column, ts: impl Fn(&FileMeta) -> i64) -> Option<ArrayRef> {
        match column.name() {
            COL_SYMBOL => Some(Arc::new(StringArray::from_iter_values(
                self.files.iter().map(|f| f.symbol.as_str()),
            ))),
            COL_INTERVAL => Some(Arc::new(StringArray::from_iter_values(
                self.files.iter().map(|f| f.interval.as_str()),
            ))),
            COL_TS => Some(Arc::new(
                TimestampMicrosecondArray::from_iter_values(self.files.iter().map(|f| ts(f)))
                    .with_timezone("UTC"),
            )),
            _ => None,
        }
    }
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
        let snapshot = self.catalog.snapshot();
        let all: Vec<&FileMeta> = snapshot.files().collect();
        let considered = all.len();
        self.counters.scans.fetch_add(1, Ordering::Relaxed);
        self.counters
            .files_considered
            .fetch_add(considered as u64, Ordering::Relaxed);

        // The scan's own column order: file columns, then the partition columns.
        let table_schema = TableSchema::builder(FILE_SCHEMA.clone())
            .with_table_partition_cols(partition_fields())
            .build();
        let full = Arc::clone(table_schema.table_schema());
        let predicate = match conjunction(filters.iter().cloned()) {
            Some(expr) => {
                let df_schema = DFSchema::try_from(full.as_ref().clone())?;
                Some(state.create_physical_expr(expr, &df_schema)?)
            }
            None => None,
        };
        let kept: Vec<&FileMeta> = match &predicate {
            None => all,
            Some(pred) => match PruningPredicateBuilder::new()
                .with_file_schema(Arc::clone(&full))
                // Backtests ask for many symbols at once: keep long IN lists prunable.
                .with_max_in_list_size(100_000)
                .try_build(Arc::clone(pred))
                .and_then(|p| p.prune(&CatalogStats { files: &all }))
            {
                Ok(mask) => all
                    .iter()
                    .zip(mask)
                    .filter_map(|(f, keep)| keep.then_some(*f))
                    .collect(),
                Err(e) => {
                    tracing::warn!("scanning every file: predicate not analysable: {e}");
                    self.counters.unpruned_scans.fetch_add(1, Ordering::Relaxed);
                    all
                }
            },
        };
        self.counters
            .files_pruned
            .fetch_add((considered - kept.len()) as u64, Ordering::Relaxed);
        self.counters
            .files_scanned
            .fetch_add(kept.len() as u64, Ordering::Relaxed);

        if kept.is_empty() {
            let schema = match projection {
                Some(p) => Arc::new(BARS_SCHEMA.project(p)?),
                None => BARS_SCHEMA.clone(),
            };
            return Ok(Arc::new(EmptyExec::new(schema)));
        }
        let projection: Vec<usize> = match projection {
            Some(p) => p.iter().map(|&i| scan_index(i)).collect(),
            None => (0..BARS_SCHEMA.fields().len()).map(scan_index).collect(),
        };

        // One group per series, files in time order: each group is sorted by ts with a constant
        // symbol and interval, so both orderings below hold for every group.
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

        // Footers (with their page indexes) are cached across queries by the session's cache.
        let store_url = ObjectStoreUrl::parse(STORE_URL)?;
        let reader_factory = CachedParquetFileReaderFactory::new(
            state.runtime_env().object_store(&store_url)?,
            state.runtime_env().cache_manager.get_file_metadata_cache(),
        );
        let mut source = ParquetSource::new(table_schema)
            .with_enable_page_index(true)
            .with_parquet_file_reader_factory(Arc::new(reader_factory));
        if let Some(pred) = predicate {
            source = source.with_predicate(pred);
        }
        let config =
            FileScanConfigBuilder::new(ObjectStoreUrl::parse(STORE_URL)?, Arc::new(source))
                .with_file_groups(groups)
                .with_output_ordering(vec![
                    sort_key(&full, &[COL_TS, COL_SYMBOL, COL_INTERVAL]),
                    sort_key(&full, &[COL_SYMBOL, COL_INTERVAL, COL_TS]),
                ])
                .with_projection_indices(Some(projection))?
                .with_limit(limit)
                .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}
