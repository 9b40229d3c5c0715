//! The catalog: which files make up the table, changed only by atomic commits.
//!
//! An append-only log in the store: commit `n` is `_catalog/log/<n, 20 digits>.json`, created with
//! `PutMode::Create`, so of two writers racing for the same number exactly one wins; the loser
//! reloads, checks whether the winner touched a partition it read, and either retries at the next
//! number or reports a conflict so its caller redoes the work. Every `checkpoint_every` commits a
//! checkpoint (`_catalog/checkpoint/<n>.json`) holds the full file list, and
//! `_catalog/_last_checkpoint` points at it. Loading reads that pointer, the checkpoint, then the
//! commits after it by number until one is missing: no listing.

mod at_version;
mod log_check;
mod snapshot;

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

pub use at_version::VersionError;
pub use snapshot::{Checkpoint, Commit, FileMeta, MissingFile, Seq, Snapshot, Tombstone};

use crate::clock::{self, Clock};
use crate::error::ErrorKind;
use crate::storage::{JsonError, PartitionKey, create_object, get_json};

pub const CATALOG_PREFIX: &str = "_catalog";
const LOG_DIR: &str = "_catalog/log";
const CHECKPOINT_DIR: &str = "_catalog/checkpoint";
const LAST_CHECKPOINT: &str = "_catalog/_last_checkpoint";
/// How many commits past the snapshot to request at once while catching up.
const PROBE_BATCH: u64 = 8;
/// How many commits we remember the partitions of, to tell real conflicts from harmless races.
const HISTORY: usize = 4096;
const MAX_COMMIT_ATTEMPTS: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("catalog I/O at {path}: {source}")]
    Io {
        path: String,
        source: object_store::Error,
    },
    #[error("catalog entry {path} is corrupt: {source}")]
    Corrupt {
        path: String,
        source: serde_json::Error,
    },
    #[error("catalog is inconsistent: {0}")]
    Inconsistent(#[from] MissingFile),
    /// A concurrent commit changed a partition this change was computed from; redo the change.
    #[error("conflict: commit {winner} changed {what} that this change was based on; redo it")]
    Conflict { winner: Seq, what: String },
    #[error("gave up committing after {0} attempts against concurrent writers")]
    TooManyAttempts(usize),
    /// A log entry that cannot be a commit of this log: nothing after it can be read or written
    /// until an operator repairs it (`check` names it too).
    #[error("catalog log entry {path} is broken: {reason}")]
    BrokenLog { path: String, reason: String },
    #[error("this store is open read-only; {0} needs a writer")]
    ReadOnly(String),
    /// A version asked for by time travel that cannot be read (see `snapshot_at`).
    #[error(transparent)]
    Version(#[from] VersionError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Conflict { .. } => ErrorKind::Conflict,
            Error::ReadOnly(_) => ErrorKind::ReadOnly,
            Error::Version(e) => e.kind(),
            Error::Io { .. }
            | Error::Corrupt { .. }
            | Error::Inconsistent(_)
            | Error::TooManyAttempts(_)
            | Error::BrokenLog { .. } => ErrorKind::Internal,
        }
    }
}

impl From<JsonError> for Error {
    fn from(e: JsonError) -> Self {
        match e {
            JsonError::Io { path, source } => Error::Io { path, source },
            JsonError::Corrupt { path, source } => Error::Corrupt { path, source },
        }
    }
}

/// A change to commit: files to add and remove, and the partitions whose contents it was
/// computed from (a concurrent change to one of them is a conflict).
#[derive(Debug, Clone, Default)]
pub struct Transaction {
    pub base: Seq,
    pub operation: String,
    pub add: Vec<FileMeta>,
    pub remove: Vec<String>,
    pub read: BTreeSet<PartitionKey>,
}

#[derive(Debug, Serialize, Deserialize)]
struct LastCheckpoint {
    seq: Seq,
}

/// The partitions changed by each recent commit.
#[derive(Debug, Default)]
struct History {
    entries: VecDeque<(Seq, BTreeSet<PartitionKey>)>,
}

impl History {
    fn push(&mut self, seq: Seq, touched: BTreeSet<PartitionKey>) {
        self.entries.push_back((seq, touched));
        while self.entries.len() > HISTORY {
            self.entries.pop_front();
        }
    }

    /// The first commit after `base` that touched one of `read`; `Err(())` if history is too short.
    fn first_conflict(
        &self,
        base: Seq,
        read: &BTreeSet<PartitionKey>,
    ) -> Result<Option<(Seq, PartitionKey)>, ()> {
        // Only called when commits followed `base`: we must remember all of them.
        match self.entries.front() {
            Some((oldest, _)) if oldest.0 <= base.0 + 1 => {}
            _ => return Err(()),
        }
        for (seq, touched) in self.entries.iter().filter(|(s, _)| *s > base) {
            if let Some(p) = touched.intersection(read).next() {
                return Ok(Some((*seq, p.clone())));
            }
        }
        Ok(None)
    }
}

pub struct Catalog {
    store: Arc<dyn ObjectStore>,
    current: RwLock<Arc<Snapshot>>,
    history: std::sync::Mutex<History>,
    /// Serializes this process's commits; other processes are handled by `PutMode::Create`.
    commit_lock: tokio::sync::Mutex<()>,
    checkpoint_every: u64,
    /// A reader's catalog follows other processes' commits and never makes its own.
    read_only: bool,
    /// Stamps commits (`committed_at`) and tombstones; GC measures its grace on it.
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("seq", &self.snapshot().seq)
            .finish()
    }
}

pub fn log_path(seq: Seq) -> Path {
    Path::from(format!("{LOG_DIR}/{:020}.json", seq.0))
}

fn checkpoint_path(seq: Seq) -> Path {
    Path::from(format!("{CHECKPOINT_DIR}/{:020}.json", seq.0))
}

impl Catalog {
    /// Loads the catalog: latest checkpoint, then every commit after it.
    pub async fn load(store: Arc<dyn ObjectStore>) -> Result<Self> {
        let catalog = Catalog {
            store,
            current: RwLock::new(Arc::new(Snapshot::default())),
            history: Default::default(),
            commit_lock: tokio::sync::Mutex::new(()),
            checkpoint_every: 100,
            read_only: false,
            clock: clock::system(),
        };
        let start = catalog.latest_checkpoint().await?;
        *catalog.current.write().expect("lock") = Arc::new(start);
        match catalog.refresh().await {
            // Readers keep the table as of the entry before; commits and `check` report it.
            Err(e @ (Error::BrokenLog { .. } | Error::Inconsistent(_))) => {
                tracing::error!("{e}")
            }
            result => {
                result?;
            }
        }
        Ok(catalog)
    }

    pub fn with_checkpoint_every(mut self, n: u64) -> Self {
        self.checkpoint_every = n.max(1);
        self
    }

    /// Stamps commits with this clock's time instead of the system's.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The clock commits are stamped with.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Makes every commit fail with [`Error::ReadOnly`].
    pub fn read_only(mut self) -> Self {
        self.read_only = true;
        self
    }

    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    pub fn store(&self) -> &Arc<dyn ObjectStore> {
        &self.store
    }

    async fn latest_checkpoint(&self) -> Result<Snapshot> {
        let pointer: Option<LastCheckpoint> =
            get_json(&self.store, &Path::from(LAST_CHECKPOINT)).await?;
        let seq = match pointer {
            Some(p) => Some(p.seq),
            // No pointer: normally a new store. If old commits were cleaned up the pointer must
            // exist; should it have been lost, find the newest checkpoint by listing (rare).
            None if get_json::<Commit>(&self.store, &log_path(Seq(1)))
                .await?
                .is_none() =>
            {
                self.newest_listed_checkpoint().await?
            }
            None => None,
        };
        let Some(seq) = seq else {
            return Ok(Snapshot::default());
        };
        let path = checkpoint_path(seq);
        let cp: Checkpoint = get_json(&self.store, &path)
            .await?
            .ok_or_else(|| Error::Io {
                path: path.to_string(),
                source: object_store::Error::NotFound {
                    path: path.to_string(),
                    source: "the checkpoint pointer names a missing checkpoint".into(),
                },
            })?;
        Ok(Snapshot::from_checkpoint(cp))
    }

    async fn newest_listed_checkpoint(&self) -> Result<Option<Seq>> {
        let mut newest = None;
        let mut listing = self.store.list(Some(&Path::from(CHECKPOINT_DIR)));
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|source| Error::Io {
                path: CHECKPOINT_DIR.to_string(),
                source,
            })?;
            let seq = meta
                .location
                .filename()
                .and_then(|n| n.strip_suffix(".json"))
                .and_then(|n| n.parse::<u64>().ok());
            newest = newest.max(seq.map(Seq));
        }
        Ok(newest)
    }

    /// The current snapshot. Cheap; the snapshot never changes under its holder.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.current.read().expect("lock"))
    }

    /// Reads commits made since the current snapshot (by this or another process). One GET
    /// when nothing is new (the common case before a commit and for a polling reader); while
    /// catching up, the next `PROBE_BATCH` commits are requested at once.
    pub async fn refresh(&self) -> Result<Arc<Snapshot>> {
        let base = self.snapshot();
        match get_json::<Commit>(&self.store, &log_path(base.seq.next())).await? {
            None => return Ok(base),
            Some(commit) => self.install(base.seq.next(), &commit)?,
        }
        loop {
            let base = self.snapshot();
            let seqs: Vec<Seq> = (1..=PROBE_BATCH).map(|i| Seq(base.seq.0 + i)).collect();
            let fetched: Vec<Result<Option<Commit>, JsonError>> =
                futures::stream::iter(seqs.clone())
                    .map(|s| {
                        let store = Arc::clone(&self.store);
                        async move { get_json::<Commit>(&store, &log_path(s)).await }
                    })
                    .buffered(PROBE_BATCH as usize)
                    .collect()
                    .await;
            let mut applied = 0;
            for (seq, result) in seqs.into_iter().zip(fetched) {
                match result? {
                    Some(commit) => {
                        self.install(seq, &commit)?;
                        applied += 1;
                    }
                    None => break,
                }
            }
            if applied < PROBE_BATCH {
                return Ok(self.snapshot());
            }
        }
    }

    /// Applies a commit that is durably in the log, as entry `at`, to the in-memory state.
    fn install(&self, at: Seq, commit: &Commit) -> Result<()> {
        // An entry that names another number is not "already applied": skipping it would leave
        // the snapshot behind the log forever, and every commit would lose its race for `at`.
        if commit.seq != at {
            return Err(Error::BrokenLog {
                path: log_path(at).to_string(),
                reason: format!("it records seq {} but its name says {at}", commit.seq),
            });
        }
        let mut current = self.current.write().expect("lock");
        if commit.seq != current.seq.next() {
            return Ok(()); // already applied by a concurrent refresh
        }
        let removed = current.partition_of_paths(&commit.remove);
        let touched = commit.touched(&removed);
        let next = current.apply(commit)?;
        *current = Arc::new(next);
        self.history.lock().expect("lock").push(commit.seq, touched);
        Ok(())
    }

    /// Commits a transaction atomically; returns the new snapshot.
    pub async fn commit(&self, txn: Transaction) -> Result<Arc<Snapshot>> {
        if self.read_only {
            return Err(Error::ReadOnly(txn.operation));
        }
        let _guard = self.commit_lock.lock().await;
        for _ in 0..MAX_COMMIT_ATTEMPTS {
            let snapshot = self.refresh().await?;
            if snapshot.seq != txn.base {
                let conflict = self
                    .history
                    .lock()
                    .expect("lock")
                    .first_conflict(txn.base, &txn.read);
                match conflict {
                    Ok(None) => {}
                    Ok(Some((winner, partition))) => {
                        return Err(Error::Conflict {
                            winner,
                            what: format!("partition {partition}"),
                        });
                    }
                    // The change is older than the commits we remember: assume the worst.
                    Err(()) => {
                        return Err(Error::Conflict {
                            winner: snapshot.seq,
                            what: "the table".to_string(),
                        });
                    }
                }
            }
            let commit = Commit {
                seq: snapshot.seq.next(),
                committed_at: self.clock.now_micros(),
                operation: txn.operation.clone(),
                add: txn.add.clone(),
                remove: txn.remove.clone(),
            };
            // Validate before publishing: a commit that cannot apply must never reach the log.
            snapshot.apply(&commit)?;
            let body = serde_json::to_vec_pretty(&commit).expect("commit serializes");
            if !create_object(&self.store, &log_path(commit.seq), body).await? {
                tracing::debug!("commit {} lost a race; reloading", commit.seq);
                continue;
            }
            self.install(commit.seq, &commit)?;
            if commit.seq.0.is_multiple_of(self.checkpoint_every) {
                // Best effort: a missing checkpoint only makes the next load read more.
                if let Err(e) = self.write_checkpoint().await {
                    tracing::warn!("checkpoint at {} failed: {e}", commit.seq);
                }
            }
            return Ok(self.snapshot());
        }
        Err(Error::TooManyAttempts(MAX_COMMIT_ATTEMPTS))
    }

    /// Writes a checkpoint of the current snapshot and points `_last_checkpoint` at it.
    pub async fn write_checkpoint(&self) -> Result<Seq> {
        let snapshot = self.snapshot();
        let body = serde_json::to_vec(&snapshot.to_checkpoint()).expect("checkpoint serializes");
        let path = checkpoint_path(snapshot.seq);
        let io = |source| Error::Io {
            path: path.to_string(),
            source,
        };
        self.store
            .put(&path, PutPayload::from(body))
            .await
            .map_err(io)?;
        let pointer = serde_json::to_vec(&LastCheckpoint { seq: snapshot.seq }).expect("json");
        self.store
            .put(&Path::from(LAST_CHECKPOINT), PutPayload::from(pointer))
            .await
            .map_err(|source| Error::Io {
                path: LAST_CHECKPOINT.to_string(),
                source,
            })?;
        Ok(snapshot.seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Interval, Symbol};
    use object_store::memory::InMemory;

    fn file(path: &str, symbol: &str, min_ts: i64) -> FileMeta {
        FileMeta {
            path: path.to_string(),
            symbol: Symbol::new(symbol).unwrap(),
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

    fn add(base: Seq, files: Vec<FileMeta>) -> Transaction {
        Transaction {
            base,
            operation: "test".into(),
            read: files.iter().map(FileMeta::partition).collect(),
            add: files,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn commits_survive_reload_and_checkpoints() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let cat = Catalog::load(Arc::clone(&store))
            .await
            .unwrap()
            .with_checkpoint_every(3);
        for i in 0..7 {
            let base = cat.snapshot().seq;
            cat.commit(add(base, vec![file(&format!("f{i}"), "A", i)]))
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
        let reloaded = Catalog::load(store).await.unwrap();
        let snap = reloaded.snapshot();
        assert_eq!(snap.seq, Seq(8));
        let paths: Vec<_> = snap.files().map(|f| f.path.clone()).collect();
        assert_eq!(paths, ["f0", "f2", "f3", "f4", "f5", "f6"]);
        assert_eq!(snap.tombstones.len(), 1);
    }

    #[tokio::test]
    async fn racing_writers_one_wins_other_retries_or_conflicts() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let a = Catalog::load(Arc::clone(&store)).await.unwrap();
        let b = Catalog::load(Arc::clone(&store)).await.unwrap();
        a.commit(add(Seq(0), vec![file("a1", "A", 0)]))
            .await
            .unwrap();
        // b is still at seq 0: a different partition commits after a reload.
        b.commit(add(Seq(0), vec![file("b1", "B", 0)]))
            .await
            .unwrap();
        // A change based on a stale view of partition A is a conflict.
        let err = b
            .commit(add(Seq(0), vec![file("b2", "A", 5)]))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Conflict { winner: Seq(1), .. }),
            "{err}"
        );
        let snap = Catalog::load(store).await.unwrap().snapshot();
        assert_eq!(snap.file_count(), 2);
    }

    #[tokio::test]
    async fn change_older_than_remembered_history_is_a_conflict() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let a = Catalog::load(Arc::clone(&store))
            .await
            .unwrap()
            .with_checkpoint_every(1);
        a.commit(add(Seq(0), vec![file("a1", "A", 0)]))
            .await
            .unwrap();
        // Loaded from the checkpoint at seq 1, it never saw commit 1 itself: a change based on
        // seq 0 cannot be checked against it, so it is refused rather than guessed.
        let b = Catalog::load(Arc::clone(&store)).await.unwrap();
        let err = b
            .commit(add(Seq(0), vec![file("b1", "B", 0)]))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Conflict { .. }), "{err}");
    }

    /// A bars-layout file record, as `check_log` expects of real commits.
    fn bars_file(symbol: &str, min_ts: i64) -> FileMeta {
        let mut f = file("", symbol, min_ts);
        f.path = crate::storage::ParquetFilePath::new_unique(f.partition()).to_string();
        f
    }

    /// Overwrites log entry `at` with `commit` (as a hand edit or a foreign writer might).
    async fn put_entry(store: &Arc<dyn ObjectStore>, at: Seq, commit: &Commit) {
        let body = serde_json::to_vec(commit).unwrap();
        store.put(&log_path(at), body.into()).await.unwrap();
    }

    #[tokio::test]
    async fn an_entry_whose_seq_disagrees_with_its_name_is_reported_not_retried() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let writer = Catalog::load(Arc::clone(&store)).await.unwrap();
        writer
            .commit(add(Seq(0), vec![bars_file("A", 0)]))
            .await
            .unwrap();
        // Entry 2 says it is commit 7.
        let mut stray = Commit {
            seq: Seq(7),
            committed_at: 0,
            operation: "import".into(),
            add: vec![bars_file("B", 0)],
            remove: vec![],
        };
        put_entry(&store, Seq(2), &stray).await;
        let err = writer
            .commit(add(Seq(1), vec![bars_file("C", 0)]))
            .await
            .unwrap_err();
        match &err {
            Error::BrokenLog { path, reason } => {
                assert_eq!(path, "_catalog/log/00000000000000000002.json");
                assert!(reason.contains("seq 7"), "{reason}");
            }
            other => panic!("expected a broken log entry, got {other}"),
        }
        // Loading still works (readers see the table before it); the log check names it.
        let reader = Catalog::load(Arc::clone(&store)).await.unwrap();
        assert_eq!(reader.snapshot().seq, Seq(1));
        let problems = reader.check_log().await.unwrap();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("_catalog/log/00000000000000000002.json: records seq 7"),
            "{problems:?}"
        );
        // Repaired, it applies and writes go on.
        stray.seq = Seq(2);
        put_entry(&store, Seq(2), &stray).await;
        writer
            .commit(add(Seq(1), vec![bars_file("C", 0)]))
            .await
            .unwrap();
        assert_eq!(writer.snapshot().file_count(), 3);
        assert!(writer.check_log().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn the_log_check_names_bad_names_gaps_and_actions() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let cat = Catalog::load(Arc::clone(&store)).await.unwrap();
        let a = bars_file("A", 0);
        cat.commit(add(Seq(0), vec![a.clone()])).await.unwrap();
        assert!(cat.check_log().await.unwrap().is_empty());
        let commit = |seq, add: Vec<FileMeta>, remove: Vec<String>| Commit {
            seq: Seq(seq),
            committed_at: 0,
            operation: "x".into(),
            add,
            remove,
        };
        // Entry 2 removes a file nobody added; entry 4 follows a gap; a stray name.
        put_entry(&store, Seq(2), &commit(2, vec![], vec!["bars/nope".into()])).await;
        let mut bad = bars_file("B", 5);
        bad.min_ts = 9;
        put_entry(&store, Seq(4), &commit(4, vec![bad], vec![])).await;
        store
            .put(&Path::from("_catalog/log/3.json"), "{}".into())
            .await
            .unwrap();
        let problems = cat.check_log().await.unwrap();
        let expect = [
            "_catalog/log/00000000000000000002.json: commit 2 removes bars/nope, which is not in the catalog",
            "_catalog/log/00000000000000000002.json: not part of the table",
            "_catalog/log/00000000000000000004.json: adds bars/",
            "_catalog/log/3.json: not a commit",
        ];
        for e in expect {
            assert!(
                problems.iter().any(|p| p.starts_with(e)),
                "missing {e:?} in {problems:?}"
            );
        }
        assert_eq!(problems.len(), 4, "{problems:?}");
    }

    #[tokio::test]
    async fn removing_unknown_file_never_reaches_the_log() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let cat = Catalog::load(Arc::clone(&store)).await.unwrap();
        let err = cat
            .commit(Transaction {
                remove: vec!["nope".into()],
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Inconsistent(_)));
        assert!(store.head(&log_path(Seq(1))).await.is_err());
    }
}
