//! The catalog: which files make up the table, changed only by atomic commits.
//!
//! The catalog is the Delta Lake log of the table rooted at `bars/` (see [`delta`] for the
//! actions): commit `n` is `bars/_delta_log/<n, 20 digits>.json`, created with
//! `PutMode::Create`, so of two writers racing for the same number exactly one wins; the loser
//! reloads, checks whether the winner touched a partition it read, and either retries at the next
//! number or reports a conflict so its caller redoes the work. Version 0 holds the protocol and
//! the table's metadata. Every `checkpoint_every` versions a Parquet checkpoint
//! (`<n>.checkpoint.parquet`) holds the whole table and `_delta_log/_last_checkpoint` points at
//! it. Loading reads that pointer, the checkpoint, then the commits after it by number until one
//! is missing: no listing.
//!
//! A store of the format before (`_catalog/`, see [`legacy`]) is read as it is until a writer
//! opens it: that converts it once into version 0 of the Delta log.

mod at_version;
mod checkpoint;
pub mod delta;
pub mod legacy;
mod log_check;
mod snapshot;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};

pub use at_version::VersionError;
pub use legacy::CATALOG_PREFIX;
pub use snapshot::{Checkpoint, Commit, FileMeta, MissingFile, Seq, Snapshot, Tombstone};

use crate::clock::{self, Clock};
use crate::error::ErrorKind;
use crate::storage::{JsonError, PartitionKey, create_object};
use delta::{Action, Entry, Metadata, Protocol};

/// The Delta log of the `bars` table.
pub const DELTA_LOG: &str = "bars/_delta_log";
const LAST_CHECKPOINT: &str = "bars/_delta_log/_last_checkpoint";
/// How many commits past the snapshot to request at once while catching up.
const PROBE_BATCH: u64 = 8;
/// How many commits we remember the partitions of, to tell real conflicts from harmless races.
const HISTORY: usize = 4096;
const MAX_COMMIT_ATTEMPTS: usize = 50;
/// Removed files and old log entries are kept this long unless told otherwise (gc_grace).
const DEFAULT_RETENTION: Duration = Duration::from_secs(3600);
/// Checkpoints a time-travel read looks back through before it starts at version 0.
const TRAVEL_CHECKPOINT_PROBES: u64 = 16;

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
    /// A log entry that cannot be a commit of this log (torn, garbage, or another Delta writer's
    /// that tickvault does not understand): nothing after it can be read or written until an
    /// operator repairs it (`check` names it too). Readers keep the table as of the entry before.
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

/// `_delta_log/_last_checkpoint`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LastCheckpoint {
    version: u64,
    size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    size_in_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    num_of_add_files: Option<u64>,
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

/// Which log the catalog follows.
#[derive(Debug, Clone)]
enum Table {
    /// No table yet: a new store (a writer creates version 0 before its first commit).
    None,
    /// A store of the format before, not yet converted (read as it is).
    Legacy,
    /// The Delta log, with the table's metadata (written again into every checkpoint).
    Delta(Box<Metadata>),
}

pub struct Catalog {
    store: Arc<dyn ObjectStore>,
    current: RwLock<Arc<Snapshot>>,
    table: RwLock<Table>,
    history: std::sync::Mutex<History>,
    /// Serializes this process's commits; other processes are handled by `PutMode::Create`.
    commit_lock: tokio::sync::Mutex<()>,
    checkpoint_every: u64,
    /// A reader's catalog follows other processes' commits and never makes its own.
    read_only: bool,
    /// Stamps commits (`committed_at`) and tombstones; GC measures its grace on it.
    clock: Arc<dyn Clock>,
    /// The retention a new table's properties name (gc_grace).
    retention: Duration,
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Catalog")
            .field("seq", &self.snapshot().seq)
            .finish()
    }
}

/// The log entry of version `seq`.
pub fn log_path(seq: Seq) -> Path {
    Path::from(format!("{DELTA_LOG}/{:020}.json", seq.0))
}

fn checkpoint_path(version: u64) -> Path {
    Path::from(format!("{DELTA_LOG}/{version:020}.checkpoint.parquet"))
}

fn io_error(path: &Path) -> impl FnOnce(object_store::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_string(),
        source,
    }
}

/// The bytes at `path`; `None` if there are none.
async fn get_bytes(store: &Arc<dyn ObjectStore>, path: &Path) -> Result<Option<Bytes>> {
    match store.get(path).await {
        Ok(r) => Ok(Some(r.bytes().await.map_err(io_error(path))?)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(io_error(path)(e)),
    }
}

/// Log entry `version`, decoded; `None` if there is none.
async fn read_entry(store: &Arc<dyn ObjectStore>, version: u64) -> Result<Option<Entry>> {
    let path = log_path(Seq(version));
    let Some(bytes) = get_bytes(store, &path).await? else {
        return Ok(None);
    };
    delta::decode_commit(version, &bytes)
        .map(Some)
        .map_err(|reason| Error::BrokenLog {
            path: path.to_string(),
            reason,
        })
}

/// The table at a checkpoint, and its metadata.
async fn read_checkpoint(
    store: &Arc<dyn ObjectStore>,
    version: u64,
) -> Result<Option<(Snapshot, Metadata)>> {
    let path = checkpoint_path(version);
    let Some(bytes) = get_bytes(store, &path).await? else {
        return Ok(None);
    };
    let broken = |reason: String| Error::BrokenLog {
        path: path.to_string(),
        reason,
    };
    let actions = checkpoint::decode(bytes).map_err(|e| broken(e.to_string()))?;
    let mut files = Vec::new();
    let mut tombstones = Vec::new();
    let (mut protocol, mut metadata) = (None, None);
    for a in actions {
        match a {
            Action::Add(a) => files.push(a.to_file().map_err(&broken)?),
            Action::Remove(r) => tombstones.push(r.to_tombstone().map_err(&broken)?),
            Action::Protocol(p) => protocol = Some(p),
            Action::MetaData(m) => metadata = Some(m),
            Action::Txn(_) => return Err(broken("it holds a txn (another Delta writer's)".into())),
            Action::CommitInfo(_) => {}
        }
    }
    let protocol = protocol.ok_or_else(|| broken("it has no protocol".into()))?;
    if let Some(p) = delta::protocol_problem(&protocol) {
        return Err(broken(p));
    }
    let metadata = metadata.ok_or_else(|| broken("it has no metaData".into()))?;
    if let Some(p) = metadata.problem() {
        return Err(broken(format!("its metaData has {p}")));
    }
    let snapshot = Snapshot::from_checkpoint(Checkpoint {
        seq: Seq(version),
        files,
        tombstones,
    });
    Ok(Some((snapshot, metadata)))
}

/// The table as of version 0 (its first entry).
fn first_snapshot(entry: &Entry) -> Result<Snapshot> {
    let empty = Snapshot::default();
    let mut snapshot = empty.apply(&entry.commit)?;
    snapshot.tombstones.extend(entry.tombstones.iter().cloned());
    Ok(snapshot)
}

impl Catalog {
    /// Loads the catalog: latest checkpoint, then every commit after it. A store not yet
    /// converted from `_catalog/` is read in that format.
    pub async fn load(store: Arc<dyn ObjectStore>) -> Result<Self> {
        let catalog = Catalog {
            store,
            current: RwLock::new(Arc::new(Snapshot::default())),
            table: RwLock::new(Table::None),
            history: Default::default(),
            commit_lock: tokio::sync::Mutex::new(()),
            checkpoint_every: 100,
            read_only: false,
            clock: clock::system(),
            retention: DEFAULT_RETENTION,
        };
        // A start that cannot be read (a damaged checkpoint, a broken version 0) fails the
        // load: there is no earlier table to fall back on, and an empty one would be a lie.
        catalog.load_start().await?;
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

    /// Reads where loading starts: the newest checkpoint, else version 0, else the old format.
    async fn load_start(&self) -> Result<()> {
        let pointer = get_bytes(&self.store, &Path::from(LAST_CHECKPOINT)).await?;
        if let Some(bytes) = pointer {
            let last: LastCheckpoint =
                serde_json::from_slice(&bytes).map_err(|source| Error::Corrupt {
                    path: LAST_CHECKPOINT.to_string(),
                    source,
                })?;
            let (snapshot, metadata) = read_checkpoint(&self.store, last.version)
                .await?
                .ok_or_else(|| Error::BrokenLog {
                    path: checkpoint_path(last.version).to_string(),
                    reason: "_last_checkpoint names it, but it is missing".into(),
                })?;
            self.reset(snapshot, Table::Delta(Box::new(metadata)));
            return Ok(());
        }
        if self.start_at_version_zero().await? {
            return Ok(());
        }
        if let Some(snapshot) = legacy::load(&self.store).await? {
            self.reset(snapshot, Table::Legacy);
        }
        Ok(())
    }

    /// Starts from log entry 0 if there is one.
    async fn start_at_version_zero(&self) -> Result<bool> {
        let Some(entry) = read_entry(&self.store, 0).await? else {
            return Ok(false);
        };
        let snapshot = first_snapshot(&entry)?;
        let metadata = entry
            .metadata
            .expect("version 0 is checked to hold metaData");
        self.reset(snapshot, Table::Delta(Box::new(metadata)));
        Ok(true)
    }

    fn reset(&self, snapshot: Snapshot, table: Table) {
        *self.current.write().expect("lock") = Arc::new(snapshot);
        *self.table.write().expect("lock") = table;
        *self.history.lock().expect("lock") = History::default();
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

    /// The retention (gc_grace) a table this catalog creates names in its properties.
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
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

    /// Whether the catalog is the Delta log (false for a new store or one not yet converted).
    pub fn is_delta(&self) -> bool {
        matches!(*self.table.read().expect("lock"), Table::Delta(_))
    }

    /// The current snapshot. Cheap; the snapshot never changes under its holder.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        Arc::clone(&self.current.read().expect("lock"))
    }

    /// Reads commits made since the current snapshot (by this or another process). One GET
    /// when nothing is new (the common case before a commit and for a polling reader); while
    /// catching up, the next `PROBE_BATCH` commits are requested at once.
    pub async fn refresh(&self) -> Result<Arc<Snapshot>> {
        let table = self.table.read().expect("lock").clone();
        match table {
            Table::Delta(_) => {}
            // A writer may have created (or converted into) the Delta log since.
            Table::None | Table::Legacy => {
                if !self.start_at_version_zero().await? {
                    if matches!(table, Table::Legacy) {
                        let base = self.snapshot().as_ref().clone();
                        let next = legacy::follow(&self.store, base).await?;
                        let mut current = self.current.write().expect("lock");
                        // A concurrent refresh may have read further.
                        if next.seq > current.seq {
                            *current = Arc::new(next);
                        }
                    }
                    return Ok(self.snapshot());
                }
            }
        }
        let base = self.snapshot();
        match read_entry(&self.store, base.seq.0 + 1).await? {
            None => return Ok(base),
            Some(entry) => self.install(base.seq.next(), &entry.commit)?,
        }
        loop {
            let base = self.snapshot();
            let seqs: Vec<Seq> = (1..=PROBE_BATCH).map(|i| Seq(base.seq.0 + i)).collect();
            let fetched: Vec<Result<Option<Entry>>> = futures::stream::iter(seqs.clone())
                .map(|s| {
                    let store = Arc::clone(&self.store);
                    async move { read_entry(&store, s.0).await }
                })
                .buffered(PROBE_BATCH as usize)
                .collect()
                .await;
            let mut applied = 0;
            for (seq, result) in seqs.into_iter().zip(fetched) {
                match result? {
                    Some(entry) => {
                        self.install(seq, &entry.commit)?;
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
        debug_assert_eq!(commit.seq, at, "decoded entries carry their own number");
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

    /// Makes sure the Delta table exists, so commits can follow: creates version 0 of a new
    /// store's log, or converts a store of the format before (`_catalog/`) into it. A writer's
    /// store calls this on open.
    pub async fn ensure_table(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly("creating the table".into()));
        }
        loop {
            self.refresh().await?;
            let table = self.table.read().expect("lock").clone();
            let snapshot = self.snapshot();
            let (commit, tombstones) = match table {
                Table::Delta(_) => return Ok(()),
                Table::None => (
                    Commit {
                        seq: Seq(0),
                        committed_at: self.clock.now_micros(),
                        operation: "create".into(),
                        add: vec![],
                        remove: vec![],
                    },
                    vec![],
                ),
                Table::Legacy => {
                    // End the old log first: an old writer's commit either lands before the
                    // marker (and is converted) or fails.
                    if !legacy::end_log(&self.store, snapshot.seq).await? {
                        continue;
                    }
                    (
                        Commit {
                            seq: Seq(0),
                            committed_at: self.clock.now_micros(),
                            operation: "convert".into(),
                            add: snapshot.files().cloned().collect(),
                            remove: vec![],
                        },
                        snapshot.tombstones.clone(),
                    )
                }
            };
            let metadata = Metadata::bars(commit.committed_at.div_euclid(1000), self.retention);
            let body = delta::encode_commit(
                &commit,
                Some(&Protocol::tickvault()),
                Some(&metadata),
                &BTreeMap::new(),
                &tombstones,
            );
            let created = create_object(&self.store, &log_path(Seq(0)), body).await?;
            if created && commit.operation == "convert" {
                tracing::info!(
                    "converted the catalog from {CATALOG_PREFIX}/ (commit {}, {} files, {} \
                     removed files in grace) into the Delta log {DELTA_LOG}/, version 0",
                    snapshot.seq,
                    commit.add.len(),
                    tombstones.len()
                );
            }
            // Ours or a racing writer's: read it back either way.
            if !self.start_at_version_zero().await? {
                return Err(Error::BrokenLog {
                    path: log_path(Seq(0)).to_string(),
                    reason: "created, but gone when read back".into(),
                });
            }
        }
    }

    /// Commits a transaction atomically; returns the new snapshot.
    pub async fn commit(&self, txn: Transaction) -> Result<Arc<Snapshot>> {
        if self.read_only {
            return Err(Error::ReadOnly(txn.operation));
        }
        let _guard = self.commit_lock.lock().await;
        if !self.is_delta() {
            self.ensure_table().await?;
        }
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
            let wanted: BTreeSet<&String> = commit.remove.iter().collect();
            let removed: BTreeMap<String, FileMeta> = snapshot
                .files()
                .filter(|f| wanted.contains(&f.path))
                .map(|f| (f.path.clone(), f.clone()))
                .collect();
            let body = delta::encode_commit(&commit, None, None, &removed, &[]);
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

    /// Writes a Parquet checkpoint of the current snapshot and points `_last_checkpoint` at it.
    pub async fn write_checkpoint(&self) -> Result<Seq> {
        if !self.is_delta() {
            self.ensure_table().await?;
        }
        let metadata = match &*self.table.read().expect("lock") {
            Table::Delta(m) => m.as_ref().clone(),
            _ => unreachable!("ensure_table leaves the table in the Delta log or fails"),
        };
        let snapshot = self.snapshot();
        let mut actions = vec![
            Action::Protocol(Protocol::tickvault()),
            Action::MetaData(metadata),
        ];
        // tickvault keeps no per-file modification time; readers use it for display only.
        actions.extend(
            snapshot
                .files()
                .map(|f| Action::Add(delta::Add::from_file(f, 0, true))),
        );
        actions.extend(
            snapshot
                .tombstones
                .iter()
                .map(|t| Action::Remove(delta::Remove::of(&t.path, None, t.removed_at, false))),
        );
        let body = checkpoint::encode(&actions).map_err(|e| Error::BrokenLog {
            path: checkpoint_path(snapshot.seq.0).to_string(),
            reason: e.to_string(),
        })?;
        let path = checkpoint_path(snapshot.seq.0);
        let size_in_bytes = body.len() as u64;
        self.store
            .put(&path, PutPayload::from(body))
            .await
            .map_err(io_error(&path))?;
        let pointer = LastCheckpoint {
            version: snapshot.seq.0,
            size: actions.len() as u64,
            size_in_bytes: Some(size_in_bytes),
            num_of_add_files: Some(snapshot.file_count() as u64),
        };
        let last = Path::from(LAST_CHECKPOINT);
        self.store
            .put(
                &last,
                PutPayload::from(serde_json::to_vec(&pointer).expect("json")),
            )
            .await
            .map_err(io_error(&last))?;
        Ok(snapshot.seq)
    }

    /// The table as of version `version`: the current snapshot, or the newest checkpoint at or
    /// before it and the commits after, read by number (no listing). A version whose log was
    /// cleaned up is [`VersionError::Gone`]; one past the latest [`VersionError::Unknown`].
    pub async fn snapshot_at(&self, version: u64) -> Result<Arc<Snapshot>> {
        let current = self.refresh().await?;
        if current.seq.0 == version && self.is_delta() {
            return Ok(current);
        }
        let unavailable = |reason: String| Error::from(VersionError::Gone { version, reason });
        if !self.is_delta() {
            return Err(unavailable(
                "this store's catalog is not yet the Delta log (a writer converts it on open)"
                    .into(),
            ));
        }
        if version > current.seq.0 {
            return Err(VersionError::Unknown {
                version,
                latest: current.seq.0,
            }
            .into());
        }
        let mut start = None;
        let every = self.checkpoint_every;
        let mut probe = version / every * every;
        for _ in 0..TRAVEL_CHECKPOINT_PROBES {
            if probe == 0 {
                break;
            }
            if let Some((s, _)) = read_checkpoint(&self.store, probe).await? {
                start = Some(s);
                break;
            }
            probe -= every;
        }
        let mut snapshot = match start {
            Some(s) => s,
            None => match read_entry(&self.store, 0).await? {
                Some(entry) => first_snapshot(&entry)?,
                None => {
                    return Err(unavailable(
                        "its log was cleaned up (no checkpoint at or before it and no version 0)"
                            .into(),
                    ));
                }
            },
        };
        while snapshot.seq.0 < version {
            let at = snapshot.seq.0 + 1;
            let entry = read_entry(&self.store, at).await?.ok_or_else(|| {
                unavailable(format!(
                    "log entry {} is gone (cleaned up)",
                    log_path(Seq(at))
                ))
            })?;
            snapshot = snapshot.apply(&entry.commit)?;
        }
        Ok(Arc::new(snapshot))
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

    /// A catalog over `store`, checkpointing every `every` versions, after one commit per file.
    pub(super) async fn commit_one_by_one(
        store: &Arc<dyn ObjectStore>,
        every: u64,
        files: Vec<FileMeta>,
    ) -> Catalog {
        let cat = Catalog::load(Arc::clone(store))
            .await
            .unwrap()
            .with_checkpoint_every(every);
        for f in files {
            let base = cat.snapshot().seq;
            cat.commit(add(base, vec![f])).await.unwrap();
        }
        cat
    }

    #[tokio::test]
    async fn commits_survive_reload_and_checkpoints() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let files = (0..7)
            .map(|i| file(&format!("bars/f{i}"), "A", i))
            .collect();
        let cat = commit_one_by_one(&store, 3, files).await;
        let base = cat.snapshot().seq;
        cat.commit(Transaction {
            base,
            operation: "rm".into(),
            remove: vec!["bars/f1".into()],
            ..Default::default()
        })
        .await
        .unwrap();
        let reloaded = Catalog::load(store).await.unwrap();
        let snap = reloaded.snapshot();
        assert_eq!(snap.seq, Seq(8));
        let paths: Vec<_> = snap.files().map(|f| f.path.clone()).collect();
        assert_eq!(
            paths,
            [
                "bars/f0", "bars/f2", "bars/f3", "bars/f4", "bars/f5", "bars/f6"
            ]
        );
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

    /// Overwrites log entry `at` (as a hand edit or a foreign writer might).
    async fn put_raw(store: &Arc<dyn ObjectStore>, at: Seq, body: &[u8]) {
        store
            .put(&log_path(at), body.to_vec().into())
            .await
            .unwrap();
    }

    /// Overwrites log entry `at` with `commit`, encoded as tickvault would.
    async fn put_entry(store: &Arc<dyn ObjectStore>, at: Seq, commit: &Commit) {
        let body = delta::encode_commit(commit, None, None, &BTreeMap::new(), &[]);
        put_raw(store, at, &body).await;
    }

    #[tokio::test]
    async fn a_torn_or_garbage_entry_is_named_and_stops_writes_not_reads() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let writer = Catalog::load(Arc::clone(&store)).await.unwrap();
        writer
            .commit(add(Seq(0), vec![bars_file("A", 0)]))
            .await
            .unwrap();
        for garbage in [&b"{\"add\":{\"path\""[..], b"", b"\x00\xff not json"] {
            put_raw(&store, Seq(2), garbage).await;
            let err = writer
                .commit(add(Seq(1), vec![bars_file("C", 0)]))
                .await
                .unwrap_err();
            match &err {
                Error::BrokenLog { path, .. } => {
                    assert_eq!(path, "bars/_delta_log/00000000000000000002.json")
                }
                other => panic!("expected a broken log entry, got {other}"),
            }
            // Loading still works (readers see the table before it); the log check names it.
            let reader = Catalog::load(Arc::clone(&store)).await.unwrap();
            assert_eq!(reader.snapshot().seq, Seq(1));
            assert_eq!(reader.snapshot().file_count(), 1);
            let problems = reader.check_log().await.unwrap();
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert!(
                problems[0].starts_with("bars/_delta_log/00000000000000000002.json: not a commit"),
                "{problems:?}"
            );
        }
        // Repaired, it applies and writes go on.
        let repaired = Commit {
            seq: Seq(2),
            committed_at: 0,
            operation: "import".into(),
            add: vec![bars_file("B", 0)],
            remove: vec![],
        };
        put_entry(&store, Seq(2), &repaired).await;
        writer
            .commit(add(Seq(1), vec![bars_file("C", 0)]))
            .await
            .unwrap();
        assert_eq!(writer.snapshot().file_count(), 3);
        assert!(writer.check_log().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn another_writers_commit_stops_writes_and_says_why_while_reads_go_on() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let writer = Catalog::load(Arc::clone(&store)).await.unwrap();
        writer
            .commit(add(Seq(0), vec![bars_file("A", 0)]))
            .await
            .unwrap();
        let foreign: [(&[u8], &str); 3] = [
            (
                br#"{"add":{"path":"timeframe=1d/symbol=X/part-0.parquet","partitionValues":{"timeframe":"1d","symbol":"X"},"size":10,"modificationTime":0,"dataChange":true}}"#,
                "lacks tickvault's tags",
            ),
            (br#"{"cdc":{"path":"x"}}"#, "does not understand"),
            (
                br#"{"protocol":{"minReaderVersion":1,"minWriterVersion":2}}"#,
                "changes the protocol",
            ),
        ];
        for (body, why) in foreign {
            put_raw(&store, Seq(2), body).await;
            let err = writer
                .commit(add(Seq(1), vec![bars_file("C", 0)]))
                .await
                .unwrap_err();
            assert!(
                matches!(&err, Error::BrokenLog { reason, .. } if reason.contains(why)),
                "{err}"
            );
            let reader = Catalog::load(Arc::clone(&store)).await.unwrap().read_only();
            assert_eq!(reader.snapshot().seq, Seq(1));
            assert_eq!(reader.snapshot().file_count(), 1);
        }
    }

    #[tokio::test]
    async fn the_log_check_names_bad_names_gaps_and_actions() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let cat = Catalog::load(Arc::clone(&store)).await.unwrap();
        let a = bars_file("A", 0);
        cat.commit(add(Seq(0), vec![a.clone()])).await.unwrap();
        cat.write_checkpoint().await.unwrap();
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
            .put(&Path::from("bars/_delta_log/3.json"), "{}".into())
            .await
            .unwrap();
        let problems = cat.check_log().await.unwrap();
        let expect = [
            "bars/_delta_log/00000000000000000002.json: commit 2 removes bars/nope, which is not in the catalog",
            "bars/_delta_log/00000000000000000002.json: not part of the table",
            "bars/_delta_log/00000000000000000004.json: adds bars/",
            "bars/_delta_log/3.json: not a commit",
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

    #[tokio::test]
    async fn a_commit_is_delta_json_lines_and_version_zero_holds_protocol_and_metadata() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let cat = Catalog::load(Arc::clone(&store)).await.unwrap();
        let f = bars_file("^GSPC", 7);
        cat.commit(add(Seq(0), vec![f.clone()])).await.unwrap();
        let lines = |v: u64| {
            let store = Arc::clone(&store);
            async move {
                let bytes = get_bytes(&store, &log_path(Seq(v))).await.unwrap().unwrap();
                String::from_utf8(bytes.to_vec())
                    .unwrap()
                    .lines()
                    .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                    .collect::<Vec<_>>()
            }
        };
        let v0 = lines(0).await;
        let keys: Vec<String> = v0
            .iter()
            .map(|a| a.as_object().unwrap().keys().next().unwrap().clone())
            .collect();
        assert_eq!(keys, ["commitInfo", "protocol", "metaData"]);
        assert_eq!(v0[1]["protocol"]["minWriterVersion"], 7);
        assert_eq!(v0[1]["protocol"]["writerFeatures"][0], "tickvault-catalog");
        assert_eq!(
            v0[2]["metaData"]["partitionColumns"],
            serde_json::json!(["timeframe", "symbol"])
        );
        let v1 = lines(1).await;
        assert_eq!(v1[0]["commitInfo"]["operation"], "WRITE");
        let a = &v1[1]["add"];
        let path = a["path"].as_str().unwrap();
        assert!(
            path.starts_with("timeframe=1d/symbol=%255EGSPC/year=2024/"),
            "{path}"
        );
        assert_eq!(a["partitionValues"]["symbol"], "^GSPC");
        assert_eq!(a["size"], 10);
        assert!(
            get_bytes(&store, &Path::from(LAST_CHECKPOINT))
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn checkpoints_are_parquet_and_loading_starts_there() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let files = (0..3).map(|i| bars_file("A/B", i)).collect();
        let cat = commit_one_by_one(&store, 2, files).await;
        let base = cat.snapshot().seq;
        let gone = cat.snapshot().files().next().unwrap().path.clone();
        cat.commit(Transaction {
            base,
            operation: "delete".into(),
            remove: vec![gone],
            ..Default::default()
        })
        .await
        .unwrap();
        let pointer = get_bytes(&store, &Path::from(LAST_CHECKPOINT))
            .await
            .unwrap()
            .unwrap();
        let pointer: serde_json::Value = serde_json::from_slice(&pointer).unwrap();
        assert_eq!(pointer["version"], 4);
        let parquet = get_bytes(&store, &checkpoint_path(4))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&parquet[..4], b"PAR1");
        // The commits the checkpoint covers are not needed to load.
        for v in 0..=4 {
            store.delete(&log_path(Seq(v))).await.unwrap();
        }
        let reloaded = Catalog::load(Arc::clone(&store)).await.unwrap();
        let (a, b) = (cat.snapshot(), reloaded.snapshot());
        assert_eq!(b.seq, Seq(4));
        assert_eq!(b.files().collect::<Vec<_>>(), a.files().collect::<Vec<_>>());
        assert_eq!(b.tombstones, a.tombstones);
        assert_eq!(b.tombstones.len(), 1);
        assert!(reloaded.is_delta());
    }

    #[tokio::test]
    async fn snapshot_at_reads_old_versions_and_names_a_cleaned_one() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let files = (0..7).map(|i| bars_file("A", i)).collect();
        let cat = commit_one_by_one(&store, 3, files).await;
        for v in 0..=7u64 {
            let s = cat.snapshot_at(v).await.unwrap();
            assert_eq!((s.seq, s.file_count()), (Seq(v), v as usize));
        }
        let err = cat.snapshot_at(8).await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::Version(VersionError::Unknown {
                    version: 8,
                    latest: 7
                })
            ),
            "{err}"
        );
        // Log cleanup of versions 0..=3 (covered by checkpoint 3): 4 and later still read.
        for v in 0..=3 {
            store.delete(&log_path(Seq(v))).await.unwrap();
        }
        store.delete(&checkpoint_path(6)).await.unwrap();
        assert_eq!(cat.snapshot_at(5).await.unwrap().file_count(), 5);
        let err = cat.snapshot_at(2).await.unwrap_err();
        assert!(
            err.kind() == ErrorKind::VersionGone && err.to_string().contains("table version 2"),
            "{err}"
        );
    }

    /// Commits of the format before the Delta log, for a store to convert.
    fn old_commits() -> Vec<Commit> {
        let (a, b, c) = (
            bars_file("^GSPC", 0),
            bars_file("A/B", 0),
            bars_file("BRK.B", 5),
        );
        vec![
            Commit {
                seq: Seq(1),
                committed_at: 1_000_000,
                operation: "import".into(),
                add: vec![a.clone(), b.clone()],
                remove: vec![],
            },
            Commit {
                seq: Seq(2),
                committed_at: 2_000_123,
                operation: "compact".into(),
                add: vec![c],
                remove: vec![a.path],
            },
            Commit {
                seq: Seq(3),
                committed_at: 3_000_000,
                operation: "import".into(),
                add: vec![bars_file("^GSPC", 9)],
                remove: vec![],
            },
        ]
    }

    #[tokio::test]
    async fn an_old_store_is_read_as_it_is_and_converted_once_by_a_writer() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        legacy::write_old_log(&store, &old_commits(), Some(Seq(2))).await;
        let before = Catalog::load(Arc::clone(&store)).await.unwrap().read_only();
        let old = before.snapshot();
        assert_eq!(
            (old.seq, old.file_count(), old.tombstones.len()),
            (Seq(3), 3, 1)
        );
        assert!(!before.is_delta());
        assert!(
            before.ensure_table().await.is_err(),
            "readers never convert"
        );
        assert!(
            get_bytes(&store, &log_path(Seq(0)))
                .await
                .unwrap()
                .is_none()
        );

        let writer = Catalog::load(Arc::clone(&store)).await.unwrap();
        writer.ensure_table().await.unwrap();
        let converted = writer.snapshot();
        assert_eq!(converted.seq, Seq(0));
        assert_eq!(
            converted.files().collect::<Vec<_>>(),
            old.files().collect::<Vec<_>>()
        );
        assert_eq!(converted.tombstones, old.tombstones);
        // The old log is ended, so an old writer cannot commit to it any more.
        let marker = get_bytes(&store, &legacy::log_path(Seq(4)))
            .await
            .unwrap()
            .unwrap();
        assert!(String::from_utf8_lossy(&marker).contains("bars/_delta_log"));
        // A second writer's open finds the table; a reader of the old log follows it too.
        let again = Catalog::load(Arc::clone(&store)).await.unwrap();
        again.ensure_table().await.unwrap();
        assert_eq!(again.snapshot().seq, Seq(0));
        before.refresh().await.unwrap();
        assert!(before.is_delta());
        assert_eq!(before.snapshot().file_count(), 3);
        let v0 = get_bytes(&store, &log_path(Seq(0))).await.unwrap().unwrap();
        let v0 = String::from_utf8(v0.to_vec()).unwrap();
        assert!(v0.contains(r#""tickvaultOperation":"convert""#), "{v0}");
        assert_eq!(v0.matches(r#"{"remove":"#).count(), 1);
        assert_eq!(v0.matches(r#"{"add":"#).count(), 3);
        // Commits follow at version 1.
        writer
            .commit(add(Seq(0), vec![bars_file("NEW", 0)]))
            .await
            .unwrap();
        assert_eq!(writer.snapshot().seq, Seq(1));
        assert_eq!(
            Catalog::load(store).await.unwrap().snapshot().file_count(),
            4
        );
    }

    #[tokio::test]
    async fn a_conversion_interrupted_after_ending_the_old_log_is_finished_by_the_next_writer() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        legacy::write_old_log(&store, &old_commits(), None).await;
        assert!(legacy::end_log(&store, Seq(3)).await.unwrap());
        // Ending it at an older number finds a commit there, not the marker: refused.
        assert!(!legacy::end_log(&store, Seq(2)).await.unwrap());
        let reader = Catalog::load(Arc::clone(&store)).await.unwrap().read_only();
        assert_eq!(reader.snapshot().file_count(), 3);
        let writer = Catalog::load(Arc::clone(&store)).await.unwrap();
        writer.ensure_table().await.unwrap();
        assert_eq!(writer.snapshot().file_count(), 3);
        assert!(writer.is_delta());
    }

    #[tokio::test]
    async fn a_reader_of_an_old_store_follows_its_commits() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let commits = old_commits();
        legacy::write_old_log(&store, &commits[..2], None).await;
        let reader = Catalog::load(Arc::clone(&store)).await.unwrap().read_only();
        assert_eq!(reader.snapshot().file_count(), 2);
        legacy::write_old_log(&store, &commits, None).await;
        reader.refresh().await.unwrap();
        assert_eq!(reader.snapshot().seq, Seq(3));
        assert_eq!(reader.snapshot().file_count(), 3);
        assert!(!reader.is_delta());
    }

    #[tokio::test]
    async fn the_tables_retention_properties_follow_gc_grace() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let cat = Catalog::load(Arc::clone(&store))
            .await
            .unwrap()
            .with_retention(Duration::from_secs(7200));
        cat.ensure_table().await.unwrap();
        let v0 = get_bytes(&store, &log_path(Seq(0))).await.unwrap().unwrap();
        let v0 = String::from_utf8(v0.to_vec()).unwrap();
        for key in [
            "delta.deletedFileRetentionDuration",
            "delta.logRetentionDuration",
        ] {
            assert!(
                v0.contains(&format!(r#""{key}":"interval 7200 seconds""#)),
                "{v0}"
            );
        }
    }

    #[tokio::test]
    async fn a_damaged_checkpoint_fails_the_load_naming_it_not_an_empty_table() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let cat = Catalog::load(Arc::clone(&store))
            .await
            .unwrap()
            .with_checkpoint_every(1);
        cat.commit(add(Seq(0), vec![bars_file("A", 0)]))
            .await
            .unwrap();
        let path = checkpoint_path(1);
        let bytes = get_bytes(&store, &path).await.unwrap().unwrap();
        store
            .put(&path, bytes[..bytes.len() / 2].to_vec().into())
            .await
            .unwrap();
        let err = Catalog::load(Arc::clone(&store)).await.unwrap_err();
        assert!(
            matches!(&err, Error::BrokenLog { path, .. }
                if path == "bars/_delta_log/00000000000000000001.checkpoint.parquet"),
            "{err}"
        );
    }
}
