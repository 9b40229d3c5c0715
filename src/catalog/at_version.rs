//! Time travel's errors: a version that does not exist yet, or one the log or GC no longer
//! holds ([`Catalog::snapshot_at`] reads a version).

#[cfg(doc)]
use super::Catalog;
use crate::error::ErrorKind;

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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::catalog::{Catalog, Error, FileMeta, Seq, Snapshot, Transaction, log_path};
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

    /// Commits bars/f0..f6 one by one with a checkpoint every 3, then removes f1 (commit 8).
    async fn seven_files(store: &Arc<dyn ObjectStore>) -> Catalog {
        let files = (0..7).map(|i| file(&format!("bars/f{i}"), i)).collect();
        let cat = crate::catalog::tests::commit_one_by_one(store, 3, files).await;
        let base = cat.snapshot().seq;
        cat.commit(Transaction {
            base,
            operation: "rm".into(),
            remove: vec!["bars/f1".into()],
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
            let want: Vec<String> = (0..v).map(|i| format!("bars/f{i}")).collect();
            assert_eq!(paths(&at), want, "version {v}");
        }
        let latest = cat.snapshot_at(8).await.unwrap();
        assert_eq!(
            paths(&latest),
            [
                "bars/f0", "bars/f2", "bars/f3", "bars/f4", "bars/f5", "bars/f6"
            ]
        );
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
