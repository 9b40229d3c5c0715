//! The write path: split bars by partition, merge each partition's new rows with the files they
//! overlap (upsert, last write wins), write the new files, then commit adds and removes together.
//!
//! Invariant kept here: the files of a partition never overlap in time, so a key lives in exactly
//! one file and a query needs no dedupe. New rows that fall inside the time span of existing
//! files replace those files (copy-on-write); rows past them go to a new file (an append).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::RecordBatch;
use futures::{StreamExt, TryStreamExt};
use object_store::{ObjectStore, ObjectStoreExt};

use crate::batch::{SeriesBatch, SeriesKey, check_batch, sort_dedup, split_by_year, ts_column};
use crate::catalog::{self, Catalog, FileMeta, Snapshot, Transaction};
use crate::error::ErrorKind;
use crate::storage::{self, ParquetFilePath, PartitionKey, encode_bars, read_bars};

/// How many times a write is redone after losing a partition to a concurrent writer.
const MAX_REDOS: u32 = 32;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Storage(#[from] storage::Error),
    #[error(transparent)]
    Catalog(#[from] catalog::Error),
    #[error("background task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The named snapshots could not be read (GC keeps what they pin, so it stops).
    #[error(transparent)]
    Snapshots(#[from] crate::snapshots::Error),
    /// A row breaks a rule (rows numbered from 1 within its series batch); nothing was written.
    #[error("{series} row {row}: {rule}")]
    InvalidRow {
        series: String,
        row: usize,
        rule: crate::model::Rule,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Storage(e) => e.kind(),
            Error::Catalog(e) => e.kind(),
            Error::Task(_) => ErrorKind::Internal,
            Error::Snapshots(e) => e.kind(),
            Error::InvalidRow { .. } => ErrorKind::InvalidRow,
        }
    }
}

/// What a write did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteSummary {
    /// Rows given to the write (before merging duplicates).
    pub rows: u64,
    pub partitions: usize,
    pub files_added: usize,
    pub files_removed: usize,
    pub bytes_written: u64,
}

/// Rows of one partition, sorted by ts with unique keys.
#[derive(Debug, Clone)]
pub struct PartitionRows {
    pub key: PartitionKey,
    pub rows: RecordBatch,
}

/// Groups series batches into per-partition sorted, deduplicated rows. Batches of the same series
/// are combined in the order given, so a later batch wins over an earlier one.
pub fn partition_rows(series: Vec<SeriesBatch>) -> Vec<PartitionRows> {
    let mut by_series: BTreeMap<SeriesKey, Vec<RecordBatch>> = BTreeMap::new();
    for s in series {
        if s.batch.num_rows() > 0 {
            by_series.entry(s.key).or_default().push(s.batch);
        }
    }
    let mut out = Vec::new();
    for (key, batches) in by_series {
        let sorted = sort_dedup(&batches);
        for (year, rows) in split_by_year(&sorted) {
            out.push(PartitionRows {
                key: PartitionKey {
                    interval: key.interval,
                    symbol: key.symbol.clone(),
                    year,
                },
                rows,
            });
        }
    }
    out
}

/// Checks every row of every series against the rules; the error names the series and row.
pub fn check_series(series: &[SeriesBatch]) -> Result<()> {
    for s in series {
        check_batch(s.key.interval, &s.batch).map_err(|(row, rule)| Error::InvalidRow {
            series: format!("{} {}", s.key.symbol, s.key.interval),
            row: row + 1,
            rule,
        })?;
    }
    Ok(())
}

/// Rows a [`Writer`] holds in memory before it spills them to uncommitted files.
pub const DEFAULT_BUFFER_ROWS: usize = 4_000_000;

/// A write built up from many pushes (an import of many files) that still lands as one commit.
///
/// Pushed rows are buffered; past `buffer_rows` they are spilled, per partition, to files that
/// no commit references yet, so memory stays bounded however large the import. `finish` merges
/// each partition's spilled files, buffered rows and overlapping existing files (in that order
/// of precedence: later wins) and commits everything at once. A failure at any point leaves the
/// table as it was; spilled files are deleted (or, after a crash, collected by `gc`).
pub struct Writer<'a> {
    catalog: &'a Catalog,
    operation: String,
    buffer: Vec<SeriesBatch>,
    buffered_rows: usize,
    buffer_limit: usize,
    spilled: BTreeMap<PartitionKey, Vec<FileMeta>>,
    rows_pushed: u64,
}

impl<'a> Writer<'a> {
    pub fn new(catalog: &'a Catalog, operation: &str) -> Self {
        Self {
            catalog,
            operation: operation.to_string(),
            buffer: Vec::new(),
            buffered_rows: 0,
            buffer_limit: DEFAULT_BUFFER_ROWS,
            spilled: BTreeMap::new(),
            rows_pushed: 0,
        }
    }

    pub fn with_buffer_rows(mut self, rows: usize) -> Self {
        self.buffer_limit = rows.max(1);
        self
    }

    /// Adds bars; later pushes win over earlier ones on the same key. Every row is checked
    /// against the rules first: a bad row refuses the whole push.
    pub async fn push(&mut self, series: Vec<SeriesBatch>) -> Result<()> {
        check_series(&series)?;
        self.push_checked(series).await
    }

    /// [`Writer::push`] without the rule check, for rows already checked.
    pub(crate) async fn push_checked(&mut self, series: Vec<SeriesBatch>) -> Result<()> {
        for s in series {
            self.buffered_rows += s.batch.num_rows();
            self.rows_pushed += s.batch.num_rows() as u64;
            self.buffer.push(s);
        }
        if self.buffered_rows >= self.buffer_limit {
            self.spill().await?;
        }
        Ok(())
    }

    async fn spill(&mut self) -> Result<()> {
        let parts = partition_rows(std::mem::take(&mut self.buffer));
        self.buffered_rows = 0;
        let store = self.catalog.store();
        let written: Vec<Result<FileMeta>> = futures::stream::iter(parts)
            .map(|p| {
                let store = Arc::clone(store);
                async move {
                    tokio::spawn(async move { write_file(&store, &p.key, p.rows).await }).await?
                }
            })
            .buffered(parallelism())
            .collect()
            .await;
        for file in written {
            let file = file?;
            self.spilled.entry(file.partition()).or_default().push(file);
        }
        Ok(())
    }

    /// Deletes what was spilled; for a write that will not be finished.
    pub async fn abort(self) {
        let spilled: Vec<FileMeta> = self.spilled.into_values().flatten().collect();
        delete_quietly(self.catalog.store(), &spilled).await;
    }

    /// Merges and commits everything pushed.
    pub async fn finish(mut self) -> Result<WriteSummary> {
        let result = self.commit().await;
        // Spilled files are inputs, never referenced unless reused as-is by the commit.
        let store = self.catalog.store();
        let reused: std::collections::HashSet<String> = match &result {
            Ok((_, added)) => added.iter().cloned().collect(),
            Err(_) => Default::default(),
        };
        let leftovers: Vec<FileMeta> = std::mem::take(&mut self.spilled)
            .into_values()
            .flatten()
            .filter(|f| !reused.contains(&f.path))
            .collect();
        delete_quietly(store, &leftovers).await;
        result.map(|(summary, _)| summary)
    }

    async fn commit(&mut self) -> Result<(WriteSummary, Vec<String>)> {
        let mut inputs: BTreeMap<PartitionKey, PartitionInput> = BTreeMap::new();
        for (key, files) in &self.spilled {
            inputs.insert(
                key.clone(),
                PartitionInput {
                    key: key.clone(),
                    spilled: files.clone(),
                    rows: None,
                },
            );
        }
        for part in partition_rows(std::mem::take(&mut self.buffer)) {
            let input = inputs
                .entry(part.key.clone())
                .or_insert_with(|| PartitionInput {
                    key: part.key.clone(),
                    spilled: Vec::new(),
                    rows: None,
                });
            input.rows = Some(part.rows);
        }
        let inputs = Arc::new(inputs.into_values().collect::<Vec<_>>());
        if inputs.is_empty() {
            return Ok((WriteSummary::default(), Vec::new()));
        }
        let store = self.catalog.store();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let snapshot = self.catalog.refresh().await?;
            let staged = stage(store, &snapshot, &inputs).await?;
            let summary = WriteSummary {
                rows: self.rows_pushed,
                partitions: inputs.len(),
                files_added: staged.add.len(),
                files_removed: staged.remove.len(),
                bytes_written: staged.add.iter().map(|f| f.bytes).sum(),
            };
            let txn = Transaction {
                base: snapshot.seq,
                operation: self.operation.clone(),
                read: inputs.iter().map(|p| p.key.clone()).collect(),
                add: staged.add.clone(),
                remove: staged.remove,
            };
            match self.catalog.commit(txn).await {
                Ok(_) => return Ok((summary, staged.add.iter().map(|f| f.path.clone()).collect())),
                Err(e) => {
                    // Never referenced: delete now rather than at GC. Reused spilled files stay
                    // until `finish` decides.
                    delete_quietly(store, &staged.fresh).await;
                    match e {
                        catalog::Error::Conflict { .. } if attempt < MAX_REDOS => {
                            tracing::info!(
                                "write conflicted ({e}); redoing against the new snapshot"
                            );
                            tokio::time::sleep(backoff(attempt)).await;
                        }
                        e => return Err(e.into()),
                    }
                }
            }
        }
    }
}

fn parallelism() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()) * 2
}

/// Exponential backoff with full jitter, so racing writers stop colliding: up to 2^n ms, at most
/// half a second.
fn backoff(attempt: u32) -> std::time::Duration {
    let cap_ms = (1u64 << attempt.min(9)).min(500);
    let jitter = (uuid::Uuid::new_v4().as_u128() % (cap_ms as u128 * 1000)) as u64;
    std::time::Duration::from_micros(jitter)
}

pub(crate) async fn delete_quietly(store: &Arc<dyn ObjectStore>, files: &[FileMeta]) {
    for f in files {
        if let Err(e) = store.delete(&crate::storage::object_path(&f.path)).await {
            tracing::warn!("could not delete unreferenced file {}: {e}", f.path);
        }
    }
}

/// What a write brings to one partition: rows spilled to uncommitted files (oldest first), then
/// rows still in memory (newest).
#[derive(Debug, Clone)]
struct PartitionInput {
    key: PartitionKey,
    spilled: Vec<FileMeta>,
    rows: Option<RecordBatch>,
}

impl PartitionInput {
    fn ts_range(&self) -> (i64, i64) {
        let mut range = (i64::MAX, i64::MIN);
        for f in &self.spilled {
            range = (range.0.min(f.min_ts), range.1.max(f.max_ts));
        }
        if let Some(rows) = &self.rows {
            let ts = ts_column(rows).values();
            range = (range.0.min(ts[0]), range.1.max(ts[ts.len() - 1]));
        }
        range
    }
}

/// Files a write adds and removes, not yet committed.
#[derive(Debug, Default)]
struct Staged {
    add: Vec<FileMeta>,
    remove: Vec<String>,
    /// Added files written by this attempt (the rest are reused spilled files).
    fresh: Vec<FileMeta>,
}

/// Writes the new file of every partition, in parallel; nothing is committed.
async fn stage(
    store: &Arc<dyn ObjectStore>,
    snapshot: &Arc<Snapshot>,
    inputs: &Arc<Vec<PartitionInput>>,
) -> Result<Staged> {
    let results: Vec<Result<(FileMeta, bool, Vec<String>)>> =
        futures::stream::iter(0..inputs.len())
            .map(|i| {
                let (store, snapshot, inputs) =
                    (Arc::clone(store), Arc::clone(snapshot), Arc::clone(inputs));
                async move {
                    tokio::spawn(
                        async move { stage_partition(&store, &snapshot, &inputs[i]).await },
                    )
                    .await?
                }
            })
            .buffer_unordered(parallelism())
            .collect()
            .await;
    let mut staged = Staged::default();
    let mut first_error = None;
    for r in results {
        match r {
            Ok((file, fresh, removed)) => {
                if fresh {
                    staged.fresh.push(file.clone());
                }
                staged.add.push(file);
                staged.remove.extend(removed);
            }
            Err(e) => first_error = first_error.or(Some(e)),
        }
    }
    if let Some(e) = first_error {
        delete_quietly(store, &staged.fresh).await;
        return Err(e);
    }
    Ok(staged)
}

/// Merges one partition's input with the existing files it overlaps and writes the result.
/// Returns the file to add, whether it was written now, and the files it replaces.
async fn stage_partition(
    store: &Arc<dyn ObjectStore>,
    snapshot: &Snapshot,
    input: &PartitionInput,
) -> Result<(FileMeta, bool, Vec<String>)> {
    let (new_min, new_max) = input.ts_range();
    let overlapped: Vec<&FileMeta> = snapshot
        .partitions
        .get(&input.key)
        .map(|files| {
            files
                .iter()
                .filter(|f| f.min_ts <= new_max && f.max_ts >= new_min)
                .collect()
        })
        .unwrap_or_default();
    let removed = overlapped.iter().map(|f| f.path.clone()).collect();
    // A single spilled file that touches nothing already stored is final as it is.
    if let ([only], None, true) = (input.spilled.as_slice(), &input.rows, overlapped.is_empty()) {
        return Ok((only.clone(), false, removed));
    }
    // Oldest first, so the newest rows win: stored files, then spilled files, then memory.
    let to_read: Vec<&FileMeta> = overlapped.iter().copied().chain(&input.spilled).collect();
    let mut batches: Vec<RecordBatch> = futures::stream::iter(to_read)
        .then(|f| read_bars(store, f.recorded()))
        .try_collect()
        .await?;
    batches.extend(input.rows.clone());
    let merged = if batches.len() == 1 {
        batches.pop().expect("one batch")
    } else {
        sort_dedup(&batches)
    };
    let file = write_file(store, &input.key, merged).await?;
    Ok((file, true, removed))
}

/// Encodes sorted, unique rows of one partition and puts them at a new unique path.
pub(crate) async fn write_file(
    store: &Arc<dyn ObjectStore>,
    key: &PartitionKey,
    rows: RecordBatch,
) -> Result<FileMeta> {
    let interval = key.interval;
    let encoded = tokio::task::spawn_blocking(move || encode_bars(&rows, interval)).await??;
    let path = ParquetFilePath::new_unique(key.clone());
    let bytes = encoded.bytes.len() as u64;
    storage::put_file(store, &path.to_path(), encoded.bytes)
        .await
        .map_err(storage::Error::from)?;
    Ok(FileMeta {
        path: path.to_string(),
        symbol: key.symbol.clone(),
        interval: key.interval,
        year: key.year,
        rows: encoded.rows,
        bytes,
        min_ts: encoded.min_ts,
        max_ts: encoded.max_ts,
        footer_bytes: encoded.footer_bytes,
        crc32: encoded.crc32,
    })
}
