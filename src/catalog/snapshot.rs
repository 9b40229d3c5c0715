//! The catalog's data: file records, commits, checkpoints, and the in-memory snapshot they build.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::model::{Interval, Symbol};
use crate::storage::{PartitionKey, Recorded};

/// A commit's sequence number: commit `n` lives at `_catalog/log/<n, 20 digits>.json`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Seq(pub u64);

impl Seq {
    pub fn next(self) -> Seq {
        Seq(self.0 + 1)
    }
}

impl std::fmt::Display for Seq {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What the catalog knows of one Parquet file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    /// Relative to the store root.
    pub path: String,
    pub symbol: Symbol,
    pub interval: Interval,
    pub year: i32,
    pub rows: u64,
    pub bytes: u64,
    /// First and last bar open time, µs since the epoch (UTC).
    pub min_ts: i64,
    pub max_ts: i64,
    /// Parquet footer length plus trailer, so a reader fetches the footer in one request.
    #[serde(default)]
    pub footer_bytes: u64,
    /// CRC32 of each read unit of the file, checked whenever its bytes are read (see
    /// `storage::checksum`); empty for files written before checksums, read unverified.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub crc32: Vec<u32>,
}

impl FileMeta {
    /// What reads of this file are checked against.
    pub fn recorded(&self) -> Recorded {
        Recorded {
            path: self.path.clone(),
            size: self.bytes,
            footer_bytes: self.footer_bytes,
            crc32: self.crc32.clone(),
        }
    }

    pub fn partition(&self) -> PartitionKey {
        PartitionKey {
            interval: self.interval,
            symbol: self.symbol.clone(),
            year: self.year,
        }
    }
}

/// A removed file and when it was removed (µs), kept so GC waits out the grace period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tombstone {
    pub path: String,
    pub removed_at: i64,
}

/// One entry of the commit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Commit {
    pub seq: Seq,
    /// µs since the epoch.
    pub committed_at: i64,
    /// What made it: import, write, compact, gc, ...
    pub operation: String,
    pub add: Vec<FileMeta>,
    pub remove: Vec<String>,
}

impl Commit {
    /// Partitions this commit changed.
    pub fn touched(
        &self,
        removed_partitions: &BTreeMap<String, PartitionKey>,
    ) -> BTreeSet<PartitionKey> {
        let mut out: BTreeSet<PartitionKey> = self.add.iter().map(FileMeta::partition).collect();
        out.extend(
            self.remove
                .iter()
                .filter_map(|p| removed_partitions.get(p).cloned()),
        );
        out
    }
}

/// The full file list at a sequence number; start-up reads the latest one, then newer commits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: Seq,
    pub files: Vec<FileMeta>,
    #[serde(default)]
    pub tombstones: Vec<Tombstone>,
}

/// An immutable view of the table at one sequence number. Readers hold an `Arc<Snapshot>`, so a
/// commit never changes what a running query sees.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub seq: Seq,
    /// Files of each partition, sorted by `min_ts`; files of a partition never overlap in time.
    pub partitions: BTreeMap<PartitionKey, Arc<Vec<FileMeta>>>,
    pub tombstones: Vec<Tombstone>,
}

/// A commit's removal of a file the snapshot does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("commit {seq} removes {path}, which is not in the catalog")]
pub struct MissingFile {
    pub seq: Seq,
    pub path: String,
}

impl Snapshot {
    /// The table version this snapshot is: the number of the last commit it includes.
    pub fn version(&self) -> u64 {
        self.seq.0
    }

    pub fn from_checkpoint(cp: Checkpoint) -> Self {
        let mut s = Snapshot {
            seq: cp.seq,
            tombstones: cp.tombstones,
            ..Default::default()
        };
        let mut parts: BTreeMap<PartitionKey, Vec<FileMeta>> = BTreeMap::new();
        for f in cp.files {
            parts.entry(f.partition()).or_default().push(f);
        }
        for (k, mut files) in parts {
            files.sort_by_key(|f| f.min_ts);
            s.partitions.insert(k, Arc::new(files));
        }
        s
    }

    pub fn to_checkpoint(&self) -> Checkpoint {
        Checkpoint {
            seq: self.seq,
            files: self.files().cloned().collect(),
            tombstones: self.tombstones.clone(),
        }
    }

    pub fn files(&self) -> impl Iterator<Item = &FileMeta> {
        self.partitions.values().flat_map(|v| v.iter())
    }

    pub fn file_count(&self) -> usize {
        self.partitions.values().map(|v| v.len()).sum()
    }

    /// Map from file path to its partition, for the removes of a commit.
    pub fn partition_of_paths<'a>(
        &self,
        paths: impl IntoIterator<Item = &'a String>,
    ) -> BTreeMap<String, PartitionKey> {
        let wanted: BTreeSet<&String> = paths.into_iter().collect();
        self.files()
            .filter(|f| wanted.contains(&f.path))
            .map(|f| (f.path.clone(), f.partition()))
            .collect()
    }

    /// The snapshot after `commit`. Fails if the commit removes a file this snapshot lacks.
    pub fn apply(&self, commit: &Commit) -> Result<Snapshot, MissingFile> {
        let mut next = self.clone();
        next.seq = commit.seq;
        let removed_parts = self.partition_of_paths(&commit.remove);
        for path in &commit.remove {
            let key = removed_parts.get(path).ok_or_else(|| MissingFile {
                seq: commit.seq,
                path: path.clone(),
            })?;
            let files = next
                .partitions
                .get_mut(key)
                .expect("partition of a known file");
            let kept: Vec<FileMeta> = files.iter().filter(|f| &f.path != path).cloned().collect();
            if kept.is_empty() {
                next.partitions.remove(key);
            } else {
                *files = Arc::new(kept);
            }
            next.tombstones.push(Tombstone {
                path: path.clone(),
                removed_at: commit.committed_at,
            });
        }
        for f in &commit.add {
            let entry = next.partitions.entry(f.partition()).or_default();
            let mut files = entry.as_ref().clone();
            files.push(f.clone());
            files.sort_by_key(|f| f.min_ts);
            *entry = Arc::new(files);
        }
        Ok(next)
    }
}
