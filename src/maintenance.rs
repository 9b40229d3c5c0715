//! Keeping the store tidy and honest: compaction, garbage collection, consistency checks, stats.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::batch::sort_dedup;
use crate::catalog::{self, Catalog, FileMeta, Snapshot, Transaction};
use crate::model::{Interval, Symbol};
use crate::storage::{ParquetFilePath, PartitionKey, object_path, read_bars, read_footer};
use crate::write::{self, write_file};

/// A partition is compacted when it has more files than this, or overlapping files.
pub const COMPACT_MAX_FILES: usize = 4;

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CompactSummary {
    pub partitions_compacted: usize,
    pub files_removed: usize,
    pub files_added: usize,
    /// Partitions skipped because a concurrent writer changed them; the next run retries.
    pub partitions_conflicted: usize,
}

/// Whether a partition's files need merging: too many, or overlapping in time.
pub fn needs_compaction(files: &[FileMeta], max_files: usize) -> bool {
    files.len() > max_files || files.windows(2).any(|w| w[1].min_ts <= w[0].max_ts)
}

/// Merges the files of every partition that has more than `max_files` files or overlapping ones
/// into one file each; each partition is its own commit so one conflict does not undo others.
pub async fn compact(catalog: &Catalog, max_files: usize) -> write::Result<CompactSummary> {
    let snapshot = catalog.refresh().await?;
    let mut summary = CompactSummary::default();
    for (key, files) in &snapshot.partitions {
        if !needs_compaction(files, max_files) {
            continue;
        }
        let store = catalog.store();
        let batches: Vec<RecordBatch> = futures::stream::iter(files.iter())
            .then(|f| read_bars(store, f.recorded()))
            .try_collect()
            .await?;
        // Files are in time order; if any overlap (never written so, but repairable), the
        // later-listed file wins, which is the best order the catalog can give.
        let merged = sort_dedup(&batches);
        let file = write_file(store, key, merged).await?;
        // Based on the snapshot the files were read from: if this partition changed since, the
        // commit reports a conflict and the next run compacts the new state.
        let txn = Transaction {
            base: snapshot.seq,
            operation: "compact".into(),
            add: vec![file.clone()],
            remove: files.iter().map(|f| f.path.clone()).collect(),
            read: [key.clone()].into(),
        };
        match catalog.commit(txn).await {
            Ok(_) => {
                summary.partitions_compacted += 1;
                summary.files_removed += files.len();
                summary.files_added += 1;
            }
            Err(catalog::Error::Conflict { .. }) => {
                write::delete_quietly(store, &[file]).await;
                summary.partitions_conflicted += 1;
            }
            Err(e) => {
                write::delete_quietly(store, &[file]).await;
                return Err(e.into());
            }
        }
    }
    Ok(summary)
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct GcSummary {
    /// Files deleted that a commit had removed, past the grace period.
    pub removed_deleted: usize,
    /// Files deleted that no commit ever referenced (a writer died before committing).
    pub orphans_deleted: usize,
    /// Unreferenced files still inside the grace period.
    pub kept_in_grace: usize,
    /// Files the latest version no longer references but a named snapshot's version does:
    /// kept, whatever the grace, for as long as the snapshot exists.
    pub kept_for_snapshots: usize,
    pub bytes_deleted: u64,
    /// Old versions of the corporate actions table deleted (see `ActionsTable::gc`).
    pub action_versions_deleted: usize,
}

/// Whether a path under `bars/` is the table's own log (never data, never GC's).
fn is_table_log(path: &str) -> bool {
    path.strip_prefix(catalog::DELTA_LOG)
        .is_some_and(|rest| rest.starts_with('/'))
}

/// Deletes files under `bars/` that the catalog does not reference, once they have been
/// unreferenced for longer than `grace` (so a reader holding an older snapshot never loses a
/// file under it). Files of a version a named snapshot pins are kept whatever the grace (see
/// [`pinned_files`]). Lists the store: maintenance only, never on the query path.
pub async fn gc(catalog: &Catalog, grace: Duration) -> write::Result<GcSummary> {
    let snapshot = catalog.refresh().await?;
    let referenced: HashSet<&str> = snapshot.files().map(|f| f.path.as_str()).collect();
    let pinned = pinned_files(catalog).await?;
    let removed_at: BTreeMap<&str, i64> = snapshot
        .tombstones
        .iter()
        .map(|t| (t.path.as_str(), t.removed_at))
        .collect();
    let now = catalog.clock().now_micros();
    let grace_us = grace.as_micros() as i64;
    let store = catalog.store();
    let mut summary = GcSummary::default();
    let mut listing = store.list(Some(&Path::from(crate::storage::BARS_DIR)));
    while let Some(meta) = listing.next().await {
        let meta = meta.map_err(crate::storage::Error::from)?;
        let path = meta.location.to_string();
        if referenced.contains(path.as_str()) || is_table_log(&path) {
            continue;
        }
        if pinned.contains(&path) {
            summary.kept_for_snapshots += 1;
            continue;
        }
        let tombstone = removed_at.get(path.as_str()).copied();
        let unreferenced_since = tombstone.unwrap_or(meta.last_modified.timestamp_micros());
        if now - unreferenced_since < grace_us {
            summary.kept_in_grace += 1;
            continue;
        }
        match store.delete(&meta.location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(crate::storage::Error::from(e).into()),
        }
        summary.bytes_deleted += meta.size;
        if tombstone.is_some() {
            summary.removed_deleted += 1;
        } else {
            summary.orphans_deleted += 1;
        }
    }
    Ok(summary)
}

/// Every file that a version pinned by a named snapshot references. A pinned version that
/// cannot be rebuilt (its log entries gone) fails the call: GC then deletes nothing rather than
/// guess which files that version needs.
pub async fn pinned_files(catalog: &Catalog) -> write::Result<HashSet<String>> {
    let mut files = HashSet::new();
    for version in crate::snapshots::pinned_versions(catalog.store()).await? {
        let at = catalog.snapshot_at(version).await?;
        files.extend(at.files().map(|f| f.path.clone()));
    }
    Ok(files)
}

/// The files of `at` (an older version of the table) that no longer exist: GC deleted them
/// once a later commit replaced them. Only files the latest version does not reference are
/// looked at (one HEAD each): the latest version's own files are the store's live data.
pub async fn missing_files(catalog: &Catalog, at: &Snapshot) -> write::Result<Vec<String>> {
    let latest = catalog.snapshot();
    let current: HashSet<&str> = latest.files().map(|f| f.path.as_str()).collect();
    // Owned paths: a stream over borrowed ones is not `Send` for every lifetime.
    let replaced: Vec<String> = at
        .files()
        .filter(|f| !current.contains(f.path.as_str()))
        .map(|f| f.path.clone())
        .collect();
    let store = Arc::clone(catalog.store());
    let heads: Vec<(String, std::result::Result<(), object_store::Error>)> =
        futures::stream::iter(replaced)
            .map(|path| {
                let store = Arc::clone(&store);
                async move {
                    let head = store.head(&object_path(&path)).await.map(|_| ());
                    (path, head)
                }
            })
            .buffer_unordered(16)
            .collect()
            .await;
    let mut missing = Vec::new();
    for (path, head) in heads {
        match head {
            Ok(()) => {}
            Err(object_store::Error::NotFound { .. }) => missing.push(path),
            Err(e) => return Err(crate::storage::Error::from(e).into()),
        }
    }
    missing.sort();
    Ok(missing)
}

/// What `check` found.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    pub files_checked: usize,
    /// Problems that make the store wrong: missing or damaged files, catalog/file disagreement.
    pub problems: Vec<String>,
    /// Unreferenced files under `bars/` (harmless; `gc` deletes them).
    pub orphans: Vec<String>,
    /// Files written before checksums: a deep check reads them, but cannot tell damage from data.
    pub unverified: Vec<String>,
}

impl CheckReport {
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the commit log (names, numbers, actions) and the catalog against the files: every
/// file exists with its recorded size, its footer agrees with the catalog (rows, ts range,
/// schema) and its checksum, and partitions hold no overlapping files. `deep` also reads every
/// file whole, checks every byte against its checksums and decodes every row.
pub async fn check(catalog: &Catalog, deep: bool) -> write::Result<CheckReport> {
    let snapshot = match catalog.refresh().await {
        // The log check below names the broken entry; check the table as loaded.
        Err(catalog::Error::BrokenLog { .. } | catalog::Error::Inconsistent(_)) => {
            catalog.snapshot()
        }
        result => result?,
    };
    let store = catalog.store();
    let mut report = CheckReport::default();
    report.problems.extend(catalog.check_log().await?);
    for (key, files) in &snapshot.partitions {
        if files.windows(2).any(|w| w[1].min_ts <= w[0].max_ts) {
            report.problems.push(format!(
                "partition {key}: files overlap in time (run compact)"
            ));
        }
    }
    let results: Vec<(String, Option<String>)> = futures::stream::iter(snapshot.files())
        .map(|f| async move { (f.path.clone(), check_file(store, f, deep).await.err()) })
        .buffer_unordered(8)
        .collect()
        .await;
    report.files_checked = results.len();
    if deep {
        report.unverified = snapshot
            .files()
            .filter(|f| f.crc32.is_empty())
            .map(|f| f.path.clone())
            .collect();
    }
    report.problems.extend(
        results
            .into_iter()
            .filter_map(|(p, e)| e.map(|e| format!("{p}: {e}"))),
    );
    let referenced: HashSet<&str> = snapshot.files().map(|f| f.path.as_str()).collect();
    let mut listing = store.list(Some(&Path::from(crate::storage::BARS_DIR)));
    while let Some(meta) = listing.next().await {
        let meta = meta.map_err(crate::storage::Error::from)?;
        let path = meta.location.to_string();
        if !referenced.contains(path.as_str()) && !is_table_log(&path) {
            report.orphans.push(path);
        }
    }
    report.problems.sort();
    Ok(report)
}

/// An error reading a file, without repeating the file's name.
fn file_error(e: crate::storage::Error) -> String {
    match e {
        crate::storage::Error::Damaged(d) => format!("damaged: {}", d.detail),
        e => e.to_string(),
    }
}

async fn check_file(store: &Arc<dyn ObjectStore>, f: &FileMeta, deep: bool) -> Result<(), String> {
    let path = object_path(&f.path);
    let parsed = ParquetFilePath::parse(&f.path).ok_or("path is not in the bars layout")?;
    if parsed.partition != f.partition() {
        return Err(format!(
            "path says partition {} but the catalog says {}",
            parsed.partition,
            f.partition()
        ));
    }
    let head = store.head(&path).await.map_err(|e| e.to_string())?;
    if head.size != f.bytes {
        return Err(format!(
            "size {} but the catalog says {}",
            head.size, f.bytes
        ));
    }
    let meta = read_footer(
        store,
        &f.recorded(),
        head.size,
        f.footer_bytes.max(64 * 1024),
    )
    .await
    .map_err(|e| format!("unreadable footer: {}", file_error(e)))?;
    let schema = parquet::arrow::parquet_to_arrow_schema(
        meta.file_metadata().schema_descr(),
        meta.file_metadata().key_value_metadata(),
    )
    .map_err(|e| format!("unreadable schema: {e}"))?;
    if schema.fields() != crate::model::FILE_SCHEMA.fields() {
        return Err("schema differs from the bars file schema".into());
    }
    let rows: i64 = meta.row_groups().iter().map(|rg| rg.num_rows()).sum();
    if rows as u64 != f.rows {
        return Err(format!("{rows} rows but the catalog says {}", f.rows));
    }
    let (min, max) = ts_range_from_footer(&meta).ok_or("no ts statistics in the footer")?;
    if (min, max) != (f.min_ts, f.max_ts) {
        return Err(format!(
            "ts range {min}..{max} but the catalog says {}..{}",
            f.min_ts, f.max_ts
        ));
    }
    if deep {
        let rows = read_bars(store, f.recorded()).await.map_err(file_error)?;
        let ts = crate::batch::ts_column(&rows).values();
        if ts.len() as u64 != f.rows {
            return Err(format!(
                "{} rows decoded but the catalog says {}",
                ts.len(),
                f.rows
            ));
        }
        if ts.windows(2).any(|w| w[0] >= w[1]) {
            return Err("rows are not in strictly increasing ts order".into());
        }
        if (ts.first(), ts.last()) != (Some(&f.min_ts), Some(&f.max_ts)) {
            return Err("decoded ts range differs from the catalog's".into());
        }
    }
    Ok(())
}

fn ts_range_from_footer(meta: &parquet::file::metadata::ParquetMetaData) -> Option<(i64, i64)> {
    use parquet::file::statistics::Statistics;
    let mut range: Option<(i64, i64)> = None;
    for rg in meta.row_groups() {
        let Some(Statistics::Int64(s)) = rg.column(0).statistics() else {
            return None;
        };
        let (lo, hi) = (*s.min_opt()?, *s.max_opt()?);
        range = Some(range.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
    }
    range
}

/// Storage figures for one series, from the catalog alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesStats {
    pub interval: Interval,
    pub symbol: Symbol,
    pub rows: u64,
    pub files: usize,
    pub bytes: u64,
    pub first_ts: i64,
    pub last_ts: i64,
}

pub fn stats(catalog: &Catalog) -> Vec<SeriesStats> {
    let snapshot = catalog.snapshot();
    let mut out: BTreeMap<(Interval, &Symbol), SeriesStats> = BTreeMap::new();
    for (
        PartitionKey {
            interval, symbol, ..
        },
        files,
    ) in &snapshot.partitions
    {
        let entry = out
            .entry((*interval, symbol))
            .or_insert_with(|| SeriesStats {
                interval: *interval,
                symbol: symbol.clone(),
                rows: 0,
                files: 0,
                bytes: 0,
                first_ts: i64::MAX,
                last_ts: i64::MIN,
            });
        for f in files.iter() {
            entry.rows += f.rows;
            entry.files += 1;
            entry.bytes += f.bytes;
            entry.first_ts = entry.first_ts.min(f.min_ts);
            entry.last_ts = entry.last_ts.max(f.max_ts);
        }
    }
    out.into_values().collect()
}
