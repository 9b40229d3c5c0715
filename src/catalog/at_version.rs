//! Time travel: the table as of one commit. Built from the newest checkpoint at or before it and
//! the commits after that checkpoint up to it, read by number; the current snapshot is not
//! touched. (The format-specific part of the catalog: a new log format re-implements
//! [`Catalog::snapshot_at`] with the same contract.)

use std::sync::Arc;

use futures::StreamExt;

use super::{
    CHECKPOINT_DIR, Catalog, Checkpoint, Commit, Error, Result, Seq, Snapshot, checkpoint_path,
    log_path,
};
use crate::error::ErrorKind;
use crate::storage::{JsonError, get_json};

/// Log entries requested at once while rebuilding an old version.
const READ_AHEAD: usize = 16;

/// A version of the table that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VersionError {
    /// Newer than the newest commit.
    #[error("table version {version} does not exist: the latest version is {latest}")]
    Unknown { version: u64, latest: u64 },
    /// Older than what the log still holds, or whose data files were deleted by GC.
    #[error("table version {version} is no longer readable: {reason}")]
    Gone { version: u64, reason: String },
}

impl VersionError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            VersionError::Unknown { .. } => ErrorKind::UnknownVersion,
            VersionError::Gone { .. } => ErrorKind::VersionGone,
        }
    }
}

impl Catalog {
    /// The table as of commit `version` (0 is the empty table before the first commit): the
    /// newest checkpoint at or before it, then the commits up to it. Fails with
    /// [`VersionError::Unknown`] past the latest commit and [`VersionError::Gone`] when a log
    /// entry it needs is missing. Whether the version's data files still exist is not checked
    /// here (GC deletes files, not log entries).
    pub async fn snapshot_at(&self, version: u64) -> Result<Arc<Snapshot>> {
        let latest = self.refresh().await?;
        if version == latest.seq.0 {
            return Ok(latest);
        }
        if version > latest.seq.0 {
            return Err(VersionError::Unknown {
                version,
                latest: latest.seq.0,
            }
            .into());
        }
        let mut snapshot = match self.newest_checkpoint_at_or_before(Seq(version)).await? {
            Some(seq) => {
                let path = checkpoint_path(seq);
                let cp: Checkpoint = get_json(&self.store, &path).await?.ok_or_else(|| {
                    Error::from(VersionError::Gone {
                        version,
                        reason: format!("its checkpoint {path} disappeared while being read"),
                    })
                })?;
                Snapshot::from_checkpoint(cp)
            }
            None => Snapshot::default(),
        };
        let seqs: Vec<Seq> = (snapshot.seq.0 + 1..=version).map(Seq).collect();
        let mut entries = futures::stream::iter(seqs)
            .map(|s| {
                let store = Arc::clone(&self.store);
                async move { (s, get_json::<Commit>(&store, &log_path(s)).await) }
            })
            .buffered(READ_AHEAD);
        while let Some((seq, entry)) = entries.next().await {
            let commit = entry.map_err(Error::from)?.ok_or_else(|| {
                Error::from(VersionError::Gone {
                    version,
                    reason: format!("log entry {} was cleaned up", log_path(seq)),
                })
            })?;
            if commit.seq != seq {
                return Err(Error::BrokenLog {
                    path: log_path(seq).to_string(),
                    reason: format!("it records seq {} but its name says {seq}", commit.seq),
                });
            }
            snapshot = snapshot.apply(&commit)?;
        }
        Ok(Arc::new(snapshot))
    }

    /// The newest checkpoint at or before `seq`, by listing the checkpoints (time travel is
    /// not on the hot path; checkpoints are few).
    async fn newest_checkpoint_at_or_before(&self, seq: Seq) -> Result<Option<Seq>> {
        let mut newest = None;
        let mut listing = self
            .store
            .list(Some(&object_store::path::Path::from(CHECKPOINT_DIR)));
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|source| {
                Error::from(JsonError::Io {
                    path: CHECKPOINT_DIR.to_string(),
                    source,
                })
            })?;
            let found = meta
                .location
                .filename()
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|n| n.parse::<u64>().ok())
                .map(Seq)
                .filter(|s| *s <= seq);
            newest = newest.max(found);
        }
        Ok(newest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{FileMeta, Transaction};
    use crate::model::{Interval, Symbol};
    use object_store::memory::InMemory;
    use object_store::{ObjectStore, ObjectStoreExt};

    fn file(path: &str, min_ts: i64) -> FileMeta {
        FileMeta {
            path: path.to_string(),
            symbol: Symbol::new("A").unwrap(),
            interval: Interval::D1,
            year: 2024,
            rows: 1,
            bytes: 10,
            min_ts,
            max_ts: min_ts,
            footer_bytes: 0,
            crc32: vec![],
        }
    }

    fn paths(s: &Snapshot) -> Vec<String> {
        s.files().map(|f| f.path.clone()).collect()
    }

    /// Commits f0..f6 one by one with a checkpoint every 3, then removes f1 (commit 8).
    async fn seven_files(store: &Arc<dyn ObjectStore>) -> Catalog {
        let cat = Catalog::load(Arc::clone(store))
            .await
            .unwrap()
            .with_checkpoint_every(3);
        for i in 0..7 {
            let base = cat.snapshot().seq;
            cat.commit(Transaction {
                base,
                operation: "test".into(),
                add: vec![file(&format!("f{i}"), i)],
                ..Default::default()
            })
            .await
            .unwrap();
        }
        let base = cat.snapshot().seq;
        cat.commit(Transaction {
            base,
            operation: "rm".into(),
            remove: vec!["f1".into()],
            ..Default::default()
        })
        .await
        .unwrap();
        cat
    }

    #[tokio::test]
    async fn every_version_reads_back_as_it_was_committed() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let cat = seven_files(&store).await;
        assert!(cat.snapshot_at(0).await.unwrap().files().next().is_none());
        for v in 1..=7u64 {
            let at = cat.snapshot_at(v).await.unwrap();
            assert_eq!(at.version(), v);
            let want: Vec<String> = (0..v).map(|i| format!("f{i}")).collect();
            assert_eq!(paths(&at), want, "version {v}");
        }
        let latest = cat.snapshot_at(8).await.unwrap();
        assert_eq!(paths(&latest), ["f0", "f2", "f3", "f4", "f5", "f6"]);
        // The current snapshot is untouched by reading old ones.
        assert_eq!(cat.snapshot().seq, Seq(8));
    }

    #[tokio::test]
    async fn a_version_past_the_latest_is_unknown() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let cat = seven_files(&store).await;
        let err = cat.snapshot_at(9).await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::Version(VersionError::Unknown {
                    version: 9,
                    latest: 8
                })
            ),
            "{err}"
        );
        assert_eq!(err.kind(), ErrorKind::UnknownVersion);
        assert!(err.to_string().contains("version 9"), "{err}");
    }

    #[tokio::test]
    async fn a_version_whose_log_entries_are_gone_says_which() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let cat = seven_files(&store).await;
        // Entries 1 and 2 cleaned up: version 2 has no checkpoint before it to start from.
        for s in [1, 2] {
            store.delete(&log_path(Seq(s))).await.unwrap();
        }
        let err = cat.snapshot_at(2).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::VersionGone, "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("version 2") && msg.contains("00000000000000000001.json"),
            "{msg}"
        );
        // Versions from the checkpoint at 3 on still read.
        assert_eq!(paths(&cat.snapshot_at(4).await.unwrap()).len(), 4);
    }
}
