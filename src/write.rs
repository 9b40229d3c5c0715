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
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::batch::{SeriesBatch, SeriesKey, sort_dedup, split_by_year, ts_column};
use crate::catalog::{self, Catalog, FileMeta, Snapshot, Transaction};
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
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a write did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteSummary {
    /// Rows given, after dedupe within the write.
    pub rows: u64,
    pub partitions: usize,
    pub files_added: usize,
    pub files_removed: usize,
    pub bytes_written: u64,
}

/// New rows of one partition, sorted by ts with unique keys.
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

/// Writes bars through the catalog: one commit for the whole call (all or nothing).
pub async fn write(
    catalog: &Catalog,
    series: Vec<SeriesBatch>,
    operation: &str,
) -> Result<WriteSummary> {
    let parts = Arc::new(partition_rows(series));
    if parts.is_empty() {
        return Ok(WriteSummary::default());
    }
    let mut attempt = 0;
    loop {
        attempt += 1;
        let snapshot = catalog.refresh().await?;
        let staged = stage(catalog.store(), &snapshot, &parts).await?;
        let summary = WriteSummary {
            rows: parts.iter().map(|p| p.rows.num_rows() as u64).sum(),
            partitions: parts.len(),
            files_added: staged.add.len(),
            files_removed: staged.remove.len(),
            bytes_written: staged.add.iter().map(|f| f.bytes).sum(),
        };
        let txn = Transaction {
            base: snapshot.seq,
            operation: operation.to_string(),
            read: parts.iter().map(|p| p.key.clone()).collect(),
            add: staged.add.clone(),
            remove: staged.remove,
        };
        match catalog.commit(txn).await {
            Ok(_) => return Ok(summary),
            Err(e) => {
                // The staged files were never referenced: delete them now rather than at GC.
                delete_quietly(catalog.store(), &staged.add).await;
                match e {
                    catalog::Error::Conflict { .. } if attempt < MAX_REDOS => {
                        tracing::info!("write conflicted ({e}); redoing against the new snapshot");
                        tokio::time::sleep(backoff(attempt)).await;
                    }
                    e => return Err(e.into()),
                }
            }
        }
    }
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

/// Files written for a change, not yet committed.
#[derive(Debug, Default)]
pub(crate) struct Staged {
    pub add: Vec<FileMeta>,
    pub remove: Vec<String>,
}

/// Writes the new file of every partition, in parallel; nothing is committed.
async fn stage(
    store: &Arc<dyn ObjectStore>,
    snapshot: &Arc<Snapshot>,
    parts: &Arc<Vec<PartitionRows>>,
) -> Result<Staged> {
    let parallelism = std::thread::available_parallelism().map_or(2, |n| n.get()) * 2;
    let results: Vec<Result<(FileMeta, Vec<String>)>> = futures::stream::iter(0..parts.len())
        .map(|i| {
            let (store, snapshot, parts) =
                (Arc::clone(store), Arc::clone(snapshot), Arc::clone(parts));
            async move {
                tokio::spawn(async move { stage_partition(&store, &snapshot, &parts[i]).await })
                    .await?
            }
        })
        .buffer_unordered(parallelism)
        .collect()
        .await;
    let mut staged = Staged::default();
    let mut first_error = None;
    for r in results {
        match r {
            Ok((file, removed)) => {
                staged.add.push(file);
                staged.remove.extend(removed);
            }
            Err(e) => first_error = first_error.or(Some(e)),
        }
    }
    if let Some(e) = first_error {
        delete_quietly(store, &staged.add).await;
        return Err(e);
    }
    Ok(staged)
}

/// Merges one partition's new rows with the existing files they overlap and writes the result.
async fn stage_partition(
    store: &Arc<dyn ObjectStore>,
    snapshot: &Snapshot,
    part: &PartitionRows,
) -> Result<(FileMeta, Vec<String>)> {
    let ts = ts_column(&part.rows).values();
    let (new_min, new_max) = (ts[0], ts[ts.len() - 1]);
    let overlapped: Vec<&FileMeta> = snapshot
        .partitions
        .get(&part.key)
        .map(|files| {
            files
                .iter()
                .filter(|f| f.min_ts <= new_max && f.max_ts >= new_min)
                .collect()
        })
        .unwrap_or_default();
    let merged = if overlapped.is_empty() {
        part.rows.clone()
    } else {
        let old: Vec<RecordBatch> = futures::stream::iter(&overlapped)
            .then(|f| read_bars(store, &f.path))
            .try_collect()
            .await?;
        let mut all = old;
        all.push(part.rows.clone()); // last, so new rows win
        sort_dedup(&all)
    };
    let file = write_file(store, &part.key, merged).await?;
    Ok((file, overlapped.iter().map(|f| f.path.clone()).collect()))
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
    store
        .put(&path.to_path(), PutPayload::from(encoded.bytes))
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
    })
}
