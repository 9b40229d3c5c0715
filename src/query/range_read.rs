//! Answering a [`RangeQuery`] without the planner: the catalog names the series' files that
//! overlap the range, each file's page index names the pages that hold it, and only those pages
//! are decoded (and fetched, in the ranges the object store coalesces them into). Files of a series never overlap in time, so reading them in order
//! yields the rows sorted by ts with one row per key, as the `bars` table promises.
//!
//! A series whose live rows span the range (by their first and last ts, checked without
//! merging them) is left to DataFusion, whose scan lays the live tier over the stored rows
//! (`overlay`): the short path is for history.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use arrow::array::{ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{SchemaRef, TimestampMicrosecondType};
use datafusion::datasource::physical_plan::ParquetFileReaderFactory;
use datafusion::error::Result;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;
use parquet::arrow::ParquetRecordBatchStreamBuilder;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, RowSelection};
use parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStream};
use parquet::file::metadata::ParquetMetaData;
use parquet::file::page_index::column_index::ColumnIndexMetaData;
use parquet::file::statistics::Statistics;

use super::range_query::RangeQuery;
use super::series_merge::{ConstantColumn, merge_series};
use super::table::{ScanCounters, TableSource, partitioned_file};
use crate::batch::SeriesKey;
use crate::catalog::{FileMeta, Snapshot};
use crate::live::Live;
use crate::model::{BARS_SCHEMA, COL_TS, FILE_SCHEMA, Interval, Symbol, year_of};
use crate::storage::PartitionKey;

/// A function applied to every batch of one series.
pub type SeriesMap = Arc<dyn Fn(RecordBatch) -> Result<RecordBatch> + Send + Sync>;

/// Rows decoded per batch.
pub(super) const BATCH_ROWS: usize = 8192;

pub(super) struct RangeReader {
    source: TableSource,
    live: Option<Arc<Live>>,
    /// The same cached-footer readers the DataFusion scan uses, so both share one footer cache.
    files: Arc<dyn ParquetFileReaderFactory>,
    counters: Arc<ScanCounters>,
}

impl std::fmt::Debug for RangeReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RangeReader").finish_non_exhaustive()
    }
}

/// The inclusive ts bounds of a query's half-open range; `None` if it is empty.
fn bounds(q: &RangeQuery) -> Option<(i64, i64)> {
    let lo = q.start.unwrap_or(i64::MIN);
    let hi = q.end.map_or(Some(i64::MAX), |end| end.checked_sub(1))?;
    (lo <= hi).then_some((lo, hi))
}

impl RangeReader {
    pub(super) fn new(
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

    /// The query's rows, streamed file by file; `None` when the query is DataFusion's to answer
    /// (a key that is not stored verbatim, or live rows in the range).
    pub(super) fn read(&self, q: &RangeQuery) -> Option<SendableRecordBatchStream> {
        if q.interval.is_some() {
            return self.read_all(std::slice::from_ref(q), BATCH_ROWS)?.pop();
        }
        // Every interval of the symbol: a read per interval (most find no files), merged on ts.
        let per_interval = Interval::ALL
            .iter()
            .map(|i| RangeQuery {
                interval: Some(i.as_str().to_string()),
                ..q.clone()
            })
            .collect();
        self.read_merged(per_interval)
    }

    /// Reads of several series (the same columns and limit each) merged into one stream sorted
    /// by ts, ties going to the earlier query; the limit applies to the merged rows.
    pub(super) fn read_merged(
        &self,
        queries: Vec<RangeQuery>,
    ) -> Option<SendableRecordBatchStream> {
        self.read_merged_mapped(queries, &|_| None)
    }

    /// [`RangeReader::read_merged`], each series' batches first passed through the function
    /// `map` gives for its symbol (adjusted reads multiply prices there, one series at a time).
    /// The batches `map` sees hold the query's columns and ts.
    pub(super) fn read_merged_mapped(
        &self,
        mut queries: Vec<RangeQuery>,
        map: &dyn Fn(&str) -> Option<SeriesMap>,
    ) -> Option<SendableRecordBatchStream> {
        let columns = queries.first()?.columns.clone();
        let limit = queries[0].limit;
        let ts = BARS_SCHEMA.index_of(COL_TS).expect("bars has ts");
        // The merge needs ts; when it is not asked for it is read, merged on, then dropped.
        let ts_at = columns.iter().position(|&c| c == ts).unwrap_or_else(|| {
            for q in &mut queries {
                q.columns.push(ts);
            }
            columns.len()
        });
        // Each series holds a batch or two while the merge waits on the others: smaller
        // batches when there are many keep that bounded.
        let batch_rows = (BATCH_ROWS * 16 / queries.len()).clamp(1024, BATCH_ROWS);
        let inputs = self
            .read_all(&queries, batch_rows)?
            .into_iter()
            .zip(&queries)
            .map(|(input, q)| match map(&q.symbol) {
                None => input,
                Some(f) => {
                    let schema = input.schema();
                    let mapped = input.map(move |batch| f(batch?));
                    Box::pin(RecordBatchStreamAdapter::new(schema, mapped))
                        as SendableRecordBatchStream
                }
            })
            .collect();
        let schema = Arc::new(
            BARS_SCHEMA
                .project(&queries[0].columns)
                .expect("valid columns"),
        );
        // Symbol and interval are fixed per series: built from which series a row came from.
        let constants = queries[0]
            .columns
            .iter()
            .enumerate()
            .filter_map(|(index, &c)| {
                let value = |q: &RangeQuery| match c {
                    0 => Some(q.symbol.clone()),
                    1 => q.interval.clone(),
                    _ => None,
                };
                let values = queries.iter().map(value).collect::<Option<Vec<String>>>()?;
                Some(ConstantColumn { index, values })
            })
            .collect();
        let merged = merge_series(schema, inputs, ts_at, constants, BATCH_ROWS);
        let output: Vec<usize> = (0..columns.len()).collect();
        let schema = Arc::new(merged.schema().project(&output).expect("valid columns"));
        let mut remaining = limit.unwrap_or(usize::MAX);
        let rows = merged
            .map(move |batch| {
                let batch = batch?;
                let batch = batch.slice(0, batch.num_rows().min(remaining));
                remaining -= batch.num_rows();
                Ok(batch.project(&output)?)
            })
            .take_while(|batch| {
                let more = batch.as_ref().map_or(true, |b| b.num_rows() > 0);
                std::future::ready(more)
            });
        Some(Box::pin(RecordBatchStreamAdapter::new(schema, rows)))
    }

    /// One stream per query (each naming its interval), all from one catalog snapshot, in
    /// batches of at most `batch_rows`; `None` if any query is DataFusion's to answer.
    pub(super) fn read_all(
        &self,
        queries: &[RangeQuery],
        batch_rows: usize,
    ) -> Option<Vec<SendableRecordBatchStream>> {
        let mut reads = Vec::with_capacity(queries.len());
        for q in queries {
            let symbol = Symbol::new(&q.symbol).ok()?;
            let named = q.interval.as_deref()?;
            let interval: Interval = named.parse().ok()?;
            // `symbol = 'aapl'` must not find AAPL: only a key that names itself exactly is
            // looked up.
            if symbol.as_str() != q.symbol || interval.as_str() != named {
                return None;
            }
            reads.push((SeriesKey { symbol, interval }, q, bounds(q)));
        }

        // Live rows first, then the catalog: a transfer commits to Parquet before it drops rows
        // from memory, so a row missing from the first look is in the second.
        if let Some(live) = &self.live {
            let state = live.read();
            let live_in_range = |(key, _, range): &(SeriesKey, _, Option<(i64, i64)>)| {
                range.is_some_and(|(lo, hi)| state.may_hold(key, lo, hi))
            };
            if reads.iter().any(live_in_range) {
                return None;
            }
        }
        let snapshot = self.source.snapshot();
        self.counters.scans.fetch_add(1, Ordering::Relaxed);
        let streams = reads
            .into_iter()
            .map(|(key, q, range)| {
                let schema = Arc::new(BARS_SCHEMA.project(&q.columns).expect("valid columns"));
                let Some((lo, hi)) = range else {
                    return Box::pin(RecordBatchStreamAdapter::new(
                        schema,
                        futures::stream::empty(),
                    )) as SendableRecordBatchStream;
                };
                let files = self.files_in_range(&snapshot, key, lo, hi);
                let read = SeriesRead {
                    files: Arc::clone(&self.files),
                    query: q.clone(),
                    schema,
                    lo,
                    hi,
                    batch_rows,
                };
                read.stream(files)
            })
            .collect();
        Some(streams)
    }

    /// The series' files that overlap `lo..=hi`, in time order.
    fn files_in_range(
        &self,
        snapshot: &Snapshot,
        key: SeriesKey,
        lo: i64,
        hi: i64,
    ) -> Vec<FileMeta> {
        let partition = |year| PartitionKey {
            interval: key.interval,
            symbol: key.symbol.clone(),
            year,
        };
        let series: Vec<&FileMeta> = snapshot
            .partitions
            .range(partition(year_of(lo))..=partition(year_of(hi)))
            .flat_map(|(_, files)| files.iter())
            .collect();
        let files: Vec<FileMeta> = series
            .iter()
            .filter(|f| f.max_ts >= lo && f.min_ts <= hi)
            .map(|f| (*f).clone())
            .collect();
        self.counters.record_files(series.len(), files.len());
        files
    }
}

/// One query's read of its series' files.
struct SeriesRead {
    files: Arc<dyn ParquetFileReaderFactory>,
    query: RangeQuery,
    schema: SchemaRef,
    lo: i64,
    hi: i64,
    batch_rows: usize,
}

type FileStream = ParquetRecordBatchStream<Box<dyn AsyncFileReader>>;

/// Where the stream is: the files still to open, the one being read, the rows still wanted.
struct Cursor {
    pending: std::vec::IntoIter<FileMeta>,
    current: Option<FileStream>,
    remaining: usize,
}

impl SeriesRead {
    fn stream(self, files: Vec<FileMeta>) -> SendableRecordBatchStream {
        let schema = Arc::clone(&self.schema);
        let cursor = Cursor {
            pending: files.into_iter(),
            current: None,
            remaining: self.query.limit.unwrap_or(usize::MAX),
        };
        let read = Arc::new(self);
        let rows = futures::stream::unfold(Some(cursor), move |cursor| {
            let read = Arc::clone(&read);
            async move {
                let mut cursor = cursor?;
                match read.next(&mut cursor).await {
                    Ok(Some(batch)) => Some((Ok(batch), Some(cursor))),
                    Ok(None) => None,
                    // An error ends the stream.
                    Err(e) => Some((Err(e), None)),
                }
            }
        });
        Box::pin(RecordBatchStreamAdapter::new(schema, rows))
    }

    /// The next non-empty batch of the query's rows.
    async fn next(&self, cursor: &mut Cursor) -> Result<Option<RecordBatch>> {
        while cursor.remaining > 0 {
            let Some(current) = cursor.current.as_mut() else {
                match cursor.pending.next() {
                    Some(file) => cursor.current = Some(self.open(&file).await?),
                    None => return Ok(None),
                }
                continue;
            };
            let Some(decoded) = current.next().await.transpose()? else {
                cursor.current = None;
                continue;
            };
            let rows = self.in_range(&decoded);
            let rows = rows.start..rows.end.min(rows.start.saturating_add(cursor.remaining));
            if rows.is_empty() {
                continue;
            }
            cursor.remaining -= rows.len();
            return Ok(Some(self.output(&decoded.slice(rows.start, rows.len()))?));
        }
        Ok(None)
    }

    /// Opens a file at the pages that hold the range, decoding ts and the columns asked for.
    async fn open(&self, file: &FileMeta) -> Result<FileStream> {
        let hint = (file.footer_bytes > 0).then_some(file.footer_bytes as usize);
        // (`AsyncFileReader` implies Send; the stream builder wants the box without it.)
        let mut reader: Box<dyn AsyncFileReader> = self.files.create_reader(
            0,
            partitioned_file(file),
            hint,
            &ExecutionPlanMetricsSet::new(),
        )?;
        let options = ArrowReaderOptions::new().with_schema(FILE_SCHEMA.clone());
        let metadata = ArrowReaderMetadata::load_async(&mut reader, options).await?;
        let (row_groups, selection) = pages_in_range(metadata.metadata(), self.lo, self.hi);
        let mut file_columns = vec![0]; // ts, to find the range's edges
        for &i in &self.query.columns {
            if let Some(c) = file_column(i).filter(|c| *c != 0) {
                file_columns.push(c);
            }
        }
        let mask = ProjectionMask::roots(metadata.parquet_schema(), file_columns);
        Ok(
            ParquetRecordBatchStreamBuilder::new_with_metadata(reader, metadata)
                .with_row_groups(row_groups)
                .with_row_selection(selection)
                .with_projection(mask)
                .with_batch_size(self.batch_rows)
                .build()?,
        )
    }

    fn interval(&self) -> &str {
        self.query
            .interval
            .as_deref()
            .expect("a series read names its interval")
    }

    /// The rows of a decoded (ts-sorted) batch that fall in the range.
    fn in_range(&self, batch: &RecordBatch) -> Range<usize> {
        let ts = batch
            .column_by_name(COL_TS)
            .expect("ts is always decoded")
            .as_primitive::<TimestampMicrosecondType>()
            .values();
        ts.partition_point(|&t| t < self.lo)..ts.partition_point(|&t| t <= self.hi)
    }

    fn output(&self, rows: &RecordBatch) -> Result<RecordBatch> {
        let n = rows.num_rows();
        let columns: Vec<ArrayRef> = self
            .query
            .columns
            .iter()
            .map(|&i| match i {
                0 => Arc::new(StringArray::new_repeated(&self.query.symbol, n)) as ArrayRef,
                1 => Arc::new(StringArray::new_repeated(self.interval(), n)),
                _ => Arc::clone(
                    rows.column_by_name(BARS_SCHEMA.field(i).name())
                        .expect("column decoded"),
                ),
            })
            .collect();
        Ok(RecordBatch::try_new(Arc::clone(&self.schema), columns)?)
    }
}

/// A `bars` column's index in the file, if it is stored there (symbol and interval are not).
fn file_column(bars_index: usize) -> Option<usize> {
    bars_index.checked_sub(2)
}

/// The row groups and, within them, the rows of the pages whose ts may lie in `lo..=hi`. Pages
/// are chosen by the ts column's page index; a row group without one (it has one page) is chosen
/// by its ts statistics and read whole.
fn pages_in_range(metadata: &ParquetMetaData, lo: i64, hi: i64) -> (Vec<usize>, RowSelection) {
    let mut groups = Vec::new();
    let mut ranges: Vec<Range<usize>> = Vec::new();
    let mut offset = 0;
    for (g, group) in metadata.row_groups().iter().enumerate() {
        let rows = group.num_rows() as usize;
        let pages = ts_pages(metadata, g, rows)
            .unwrap_or_else(|| vec![(0..rows, group_ts_span(metadata, g))]);
        let wanted: Vec<Range<usize>> = pages
            .into_iter()
            .filter(|(_, span)| span.is_none_or(|(min, max)| max >= lo && min <= hi))
            .map(|(rows, _)| rows)
            .collect();
        if wanted.is_empty() {
            continue;
        }
        groups.push(g);
        ranges.extend(wanted.into_iter().map(|r| r.start + offset..r.end + offset));
        offset += rows;
    }
    (
        groups,
        RowSelection::from_consecutive_ranges(ranges.into_iter(), offset),
    )
}

/// A row group's min and max ts, from its statistics.
fn group_ts_span(metadata: &ParquetMetaData, group: usize) -> Option<(i64, i64)> {
    match metadata.row_group(group).column(0).statistics()? {
        Statistics::Int64(s) => s.min_opt().copied().zip(s.max_opt().copied()),
        _ => None,
    }
}

/// The ts column's pages in a row group: their rows and, where recorded, their min and max ts.
type Page = (Range<usize>, Option<(i64, i64)>);

fn ts_pages(metadata: &ParquetMetaData, group: usize, rows: usize) -> Option<Vec<Page>> {
    let ColumnIndexMetaData::INT64(index) = metadata.column_index()?.get(group)?.first()? else {
        return None;
    };
    let locations = metadata
        .offset_index()?
        .get(group)?
        .first()?
        .page_locations();
    let starts: Vec<usize> = locations
        .iter()
        .map(|p| p.first_row_index as usize)
        .collect();
    Some(
        starts
            .iter()
            .enumerate()
            .map(|(i, &start)| {
                let end = starts.get(i + 1).copied().unwrap_or(rows);
                let span = index.min_value(i).zip(index.max_value(i));
                (start..end, span.map(|(min, max)| (*min, *max)))
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use parquet::file::metadata::{PageIndexPolicy, ParquetMetaDataReader};

    use super::*;
    use crate::batch::BarBuilder;
    use crate::storage::encode_bars;

    const MINUTE: i64 = 60_000_000;
    const START: i64 = 1_609_459_200_000_000; // 2021-01-01

    /// The metadata of a file of two months of minute bars: a row group per month, several
    /// pages each.
    fn two_months() -> ParquetMetaData {
        let interval: Interval = "1m".parse().unwrap();
        let mut bars = BarBuilder::with_capacity(84_960);
        for i in 0..84_960i64 {
            let price = 100.0 + (i % 977) as f64 / 100.0;
            bars.push_checked(
                interval,
                START + i * MINUTE,
                price,
                price,
                price,
                price,
                1.0,
                None,
                None,
            )
            .unwrap();
        }
        let file = encode_bars(&bars.finish(), interval).unwrap();
        ParquetMetaDataReader::new()
            .with_page_index_policy(PageIndexPolicy::Required)
            .parse_and_finish(&file.bytes)
            .unwrap()
    }

    fn selected(metadata: &ParquetMetaData, from: i64, to: i64) -> (Vec<usize>, usize) {
        let (groups, selection) =
            pages_in_range(metadata, START + from * MINUTE, START + to * MINUTE - 1);
        (groups, selection.row_count())
    }

    #[test]
    fn a_file_without_a_page_index_is_chosen_by_its_statistics() {
        let interval: Interval = "1d".parse().unwrap();
        let day = 1440 * MINUTE;
        let mut bars = BarBuilder::with_capacity(300);
        for i in 0..300i64 {
            bars.push_checked(
                interval,
                START + i * day,
                1.0,
                1.0,
                1.0,
                1.0,
                1.0,
                None,
                None,
            )
            .unwrap();
        }
        let file = encode_bars(&bars.finish(), interval).unwrap();
        let metadata = ParquetMetaDataReader::new()
            .with_page_index_policy(PageIndexPolicy::Optional)
            .parse_and_finish(&file.bytes)
            .unwrap();
        assert!(metadata.offset_index().is_none(), "one page: no page index");
        assert_eq!(selected(&metadata, 10 * 1440, 11 * 1440), (vec![0], 300));
        assert_eq!(selected(&metadata, -1440, 0).0, Vec::<usize>::new());
        assert_eq!(
            selected(&metadata, 300 * 1440, 301 * 1440).0,
            Vec::<usize>::new()
        );
    }

    #[test]
    fn only_pages_that_overlap_the_range_are_selected() {
        let metadata = two_months();
        assert_eq!(metadata.num_row_groups(), 2);
        let january = metadata.row_group(0).num_rows() as usize;
        let (first_page, _) = ts_pages(&metadata, 0, january).unwrap()[0].clone();
        assert!(first_page.len() < january, "January has several pages");

        // An hour early in January: the first page only.
        assert_eq!(selected(&metadata, 60, 120), (vec![0], first_page.len()));
        // An hour in February: nothing of January.
        let (groups, rows) = selected(&metadata, 50_000, 50_060);
        assert_eq!(groups, vec![1]);
        assert!(rows < metadata.row_group(1).num_rows() as usize);
        // Across the month boundary: the last page of January and the first of February.
        let (groups, rows) = selected(&metadata, 44_630, 44_650);
        assert_eq!(groups, vec![0, 1]);
        assert!(rows < 84_960 / 2, "{rows}");
        // Before the file or after it: nothing.
        assert_eq!(selected(&metadata, -100, -10).0, Vec::<usize>::new());
        assert_eq!(selected(&metadata, 90_000, 90_010).0, Vec::<usize>::new());
    }
}
