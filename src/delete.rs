//! Deleting a time range of one series: every file that holds rows in the range is rewritten
//! without them (or dropped when nothing is left), and adds and removes land in one commit, so a
//! reader sees the range either whole or gone.

use std::sync::Arc;

use arrow::array::{BooleanArray, RecordBatch};
use arrow::compute::filter_record_batch;
use futures::{StreamExt, TryStreamExt};

use crate::batch::ts_column;
use crate::catalog::{self, Catalog, FileMeta, Transaction};
use crate::model::{Interval, Symbol};
use crate::storage::read_bars;
use crate::write::{self, delete_quietly, write_file};

const MAX_REDOS: u32 = 32;

/// What a delete did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DeleteSummary {
    pub rows: u64,
    pub files_removed: usize,
    pub files_added: usize,
}

/// Deletes the bars of `symbol` at `interval` with `start <= ts < end` (µs UTC).
pub async fn delete_range(
    catalog: &Catalog,
    symbol: &Symbol,
    interval: Interval,
    start: i64,
    end: i64,
) -> write::Result<DeleteSummary> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let snapshot = catalog.refresh().await?;
        let touched: Vec<FileMeta> = snapshot
            .partitions
            .iter()
            .filter(|(k, _)| &k.symbol == symbol && k.interval == interval)
            .flat_map(|(_, files)| files.iter())
            .filter(|f| f.min_ts < end && f.max_ts >= start)
            .cloned()
            .collect();
        if touched.is_empty() {
            return Ok(DeleteSummary::default());
        }
        let rewritten: Vec<(FileMeta, Option<FileMeta>, u64)> =
            futures::stream::iter(touched.clone())
                .map(|f| {
                    let store = Arc::clone(catalog.store());
                    async move { rewrite_without(&store, f, start, end).await }
                })
                .buffer_unordered(4)
                .try_collect()
                .await?;
        let added: Vec<FileMeta> = rewritten.iter().filter_map(|r| r.1.clone()).collect();
        let summary = DeleteSummary {
            rows: rewritten.iter().map(|r| r.2).sum(),
            files_removed: touched.len(),
            files_added: added.len(),
        };
        let txn = Transaction {
            base: snapshot.seq,
            operation: "delete".into(),
            read: touched.iter().map(FileMeta::partition).collect(),
            add: added.clone(),
            remove: touched.iter().map(|f| f.path.clone()).collect(),
        };
        match catalog.commit(txn).await {
            Ok(_) => return Ok(summary),
            Err(e) => {
                delete_quietly(catalog.store(), &added).await;
                match e {
                    catalog::Error::Conflict { .. } if attempt < MAX_REDOS => continue,
                    e => return Err(e.into()),
                }
            }
        }
    }
}

/// Writes `file`'s rows outside `[start, end)` to a new file; `None` when none are left.
async fn rewrite_without(
    store: &Arc<dyn object_store::ObjectStore>,
    file: FileMeta,
    start: i64,
    end: i64,
) -> write::Result<(FileMeta, Option<FileMeta>, u64)> {
    let rows: RecordBatch = read_bars(store, file.recorded()).await?;
    let keep: BooleanArray = ts_column(&rows)
        .values()
        .iter()
        .map(|ts| Some(*ts < start || *ts >= end))
        .collect();
    let kept = filter_record_batch(&rows, &keep).expect("mask matches the batch");
    let deleted = (rows.num_rows() - kept.num_rows()) as u64;
    if kept.num_rows() == 0 {
        return Ok((file, None, deleted));
    }
    let new = write_file(store, &file.partition(), kept).await?;
    Ok((file, Some(new), deleted))
}
