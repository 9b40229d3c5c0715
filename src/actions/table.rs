//! The `corporate_actions` table of a store: the current [`ActionSet`], kept equal to its log in
//! the store (see [`super::log`] for the layout), and the upsert that commits a new version.
//!
//! Opening never lists: it reads the checkpoint pointer, the checkpoint it names, then the
//! commits after it by number until one is missing (a store without events costs two GETs).
//! Following other processes costs one GET of the next version when nothing is new (and one
//! of the pointer when the last look was long ago: see [`RECHECK_AFTER`]). An upsert merges
//! into the newest version and commits the changed events as the next version with a
//! create-only put; losing the race for that number means reloading and redoing the merge, so
//! two writers' upserts both survive. A version that cannot be read, or a commit missing while
//! a later one is there (a gap), is an error naming it, never an empty or partial table. The
//! checkpoint pointer is written only after the checkpoint it names is complete, and GC never
//! deletes the commits after the checkpoint the pointer names.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::log::{self, Checkpoint, Commit, LastCheckpoint, Listing, Record};
use super::{ActionSet, CorporateAction, Merged};
use crate::clock::{self, Clock};
use crate::storage::{JsonError, create_object, get_json};

const MAX_COMMIT_ATTEMPTS: usize = 50;
/// How many commits past the current version are requested at once while catching up.
const PROBE_BATCH: u64 = 8;
/// A refresh also reads the checkpoint pointer when its last complete read of the log started
/// longer ago than this: GC may then have removed versions the reader never read (see
/// [`MIN_GC_GRACE`]), and the pointer leads past them.
const RECHECK_AFTER: Duration = Duration::from_secs(5 * 60);
/// GC keeps old versions at least this long whatever grace it is given: twice
/// [`RECHECK_AFTER`], so a reader or writer that refreshed within it never misses a version
/// GC removed (it reads the pointer instead), and a writer never reuses a removed version's
/// number.
pub const MIN_GC_GRACE: Duration = Duration::from_secs(10 * 60);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the store is read-only: corporate actions cannot be written")]
    ReadOnly,
    #[error("corporate actions I/O at {path}: {source}")]
    Io {
        path: String,
        source: object_store::Error,
    },
    /// A version that cannot be read: the table is not loaded past it until an operator
    /// repairs it.
    #[error("corporate actions version {path} is damaged: {reason}")]
    Damaged { path: String, reason: String },
    #[error("gave up committing corporate actions after {0} attempts against concurrent writers")]
    TooManyAttempts(usize),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<JsonError> for Error {
    fn from(e: JsonError) -> Self {
        match e {
            JsonError::Io { path, source } => Error::Io { path, source },
            JsonError::Corrupt { path, source } => Error::Damaged {
                path,
                reason: source.to_string(),
            },
        }
    }
}

fn damaged(path: &Path, reason: impl Into<String>) -> Error {
    Error::Damaged {
        path: path.to_string(),
        reason: reason.into(),
    }
}

/// What GC did to the table's old versions.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct GcSummary {
    pub versions_deleted: usize,
}

pub struct ActionsTable {
    object_store: Arc<dyn ObjectStore>,
    read_only: bool,
    /// (version, the table at it); version 0 is the empty table before any commit.
    current: RwLock<(u64, Arc<ActionSet>)>,
    /// Serializes this process's commits; other processes are handled by `PutMode::Create`.
    commit_lock: tokio::sync::Mutex<()>,
    /// When the last refresh that read the log up to its end started.
    synced_at: Mutex<Instant>,
    recheck_after: Duration,
    /// Stamps commits; GC measures its grace on it.
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for ActionsTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActionsTable")
            .field("version", &self.version())
            .field("events", &self.snapshot().len())
            .finish_non_exhaustive()
    }
}

impl ActionsTable {
    /// Opens the table of the store at `object_store`: a GET of the checkpoint pointer, the
    /// checkpoint it names, then the commits after it. Never a LIST (unless the pointer names
    /// a checkpoint that is gone).
    pub async fn open(object_store: Arc<dyn ObjectStore>, read_only: bool) -> Result<Self> {
        let started = Instant::now();
        let (version, set) = load(&object_store).await?;
        Ok(ActionsTable {
            object_store,
            read_only,
            current: RwLock::new((version, set)),
            commit_lock: tokio::sync::Mutex::new(()),
            synced_at: Mutex::new(started),
            recheck_after: RECHECK_AFTER,
            clock: clock::system(),
        })
    }

    /// Stamps commits with this clock's time instead of the system's.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The current version.
    pub fn snapshot(&self) -> Arc<ActionSet> {
        Arc::clone(&self.current.read().expect("actions lock").1)
    }

    /// The number of the current version (0 before the first commit); it rises with every
    /// commit this process makes or reads.
    pub fn version(&self) -> u64 {
        self.current.read().expect("actions lock").0
    }

    /// Reloads the newest committed version (another process may have committed): one GET
    /// when nothing is new. On an error the current version stays.
    pub async fn refresh(&self) -> Result<Arc<ActionSet>> {
        let started = Instant::now();
        let synced = *self.synced_at.lock().expect("actions lock");
        let (version, base) = {
            let c = self.current.read().expect("actions lock");
            (c.0, Arc::clone(&c.1))
        };
        let (mut version, mut set) = follow(&self.object_store, version, base).await?;
        if started.duration_since(synced) >= self.recheck_after {
            // Long enough for GC to have removed versions after ours, which a GET cannot tell
            // from "nothing new": the pointer leads past them.
            if read_pointer(&self.object_store)
                .await?
                .is_some_and(|p| p > version)
            {
                (version, set) = load(&self.object_store).await?;
            }
        }
        self.install(version, set);
        *self.synced_at.lock().expect("actions lock") = started;
        Ok(self.snapshot())
    }

    fn install(&self, version: u64, set: Arc<ActionSet>) {
        let mut current = self.current.write().expect("actions lock");
        // A concurrent refresh may have gone further already.
        if version > current.0 {
            *current = (version, set);
        }
    }

    /// Upserts `events` by (symbol, ex_date, kind) as one commit: all of them or none. Nothing
    /// is committed when nothing changes. Disagreements between sources are returned in the
    /// [`Merged`] and logged.
    pub async fn upsert(&self, events: Vec<CorporateAction>) -> Result<Merged> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        let _guard = self.commit_lock.lock().await;
        for _ in 0..MAX_COMMIT_ATTEMPTS {
            self.refresh().await?;
            let (version, base) = {
                let c = self.current.read().expect("actions lock");
                (c.0, Arc::clone(&c.1))
            };
            let merged = base.merge(events.iter().cloned());
            if !merged.changed() {
                report(&merged);
                return Ok(merged);
            }
            let put = log::changed(&base, &merged.set, &events);
            let commit = Commit {
                version: version + 1,
                committed_at: self.clock.now_micros(),
                put: put.iter().map(Record::of).collect(),
            };
            let body = serde_json::to_vec(&commit).expect("commit serializes");
            if !create_object(&self.object_store, &log::log_path(commit.version), body).await? {
                tracing::debug!(
                    "corporate actions version {} lost a race; redoing the merge",
                    commit.version
                );
                continue;
            }
            self.install(commit.version, Arc::new(merged.set.clone()));
            if commit.version.is_multiple_of(log::CHECKPOINT_EVERY) {
                // Best effort: a missing checkpoint only makes the next load read more.
                if let Err(e) = self.write_checkpoint(commit.version, &merged.set).await {
                    tracing::warn!(
                        "corporate actions checkpoint {} failed: {e}",
                        commit.version
                    );
                }
            }
            report(&merged);
            return Ok(merged);
        }
        Err(Error::TooManyAttempts(MAX_COMMIT_ATTEMPTS))
    }

    /// Writes the checkpoint of `version`, then points [`log::LAST_CHECKPOINT`] at it: the
    /// pointer never names a checkpoint that is not complete.
    async fn write_checkpoint(&self, version: u64, set: &ActionSet) -> Result<()> {
        let path = log::checkpoint_path(version);
        let body = serde_json::to_vec(&Checkpoint::of(version, set)).expect("checkpoint json");
        if !create_object(&self.object_store, &path, body).await? {
            // Only the writer of commit `version` writes its checkpoint: this one is foreign.
            return Err(damaged(
                &path,
                "already there before its commit's writer wrote it",
            ));
        }
        write_pointer(&self.object_store, version).await
    }

    /// Deletes old versions no reader needs: those before the newest checkpoint written more
    /// than `grace` (at least [`MIN_GC_GRACE`]) ago, and not after the one the pointer names
    /// (a loader reads every commit after that). Lists the prefix: maintenance only.
    pub async fn gc(&self, grace: Duration) -> Result<GcSummary> {
        self.gc_with(grace.max(MIN_GC_GRACE)).await
    }

    async fn gc_with(&self, grace: Duration) -> Result<GcSummary> {
        let pointer = read_pointer(&self.object_store).await?.unwrap_or(0);
        let listing = list(&self.object_store).await?;
        // A checkpoint the pointer missed (its write failed, or the store predates it): point
        // at it now, for the next GC; this one still keeps what loaders of the old pointer
        // may be reading.
        if let Some(&newest) = listing.checkpoints.keys().next_back()
            && newest > pointer
            && !self.read_only
        {
            write_pointer(&self.object_store, newest).await?;
        }
        // What a loader of the pointer reads must follow it without a gap.
        if let Some((missing, there)) = listing.gap_after(pointer) {
            return Err(damaged(
                &log::log_path(missing),
                format!("missing, but version {there} is there: the log has a gap"),
            ));
        }
        // Past chrono's range: nothing is that old.
        let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
        let mut summary = GcSummary::default();
        for path in listing.collectable(self.clock.now(), grace, pointer) {
            match self.object_store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(source) => {
                    return Err(Error::Io {
                        path: path.to_string(),
                        source,
                    });
                }
            }
            summary.versions_deleted += 1;
        }
        Ok(summary)
    }
}

/// Logs each disagreement between sources (the caller gets them in the [`Merged`] too).
fn report(merged: &Merged) {
    for d in &merged.disagreements {
        tracing::warn!("corporate actions: {d}");
    }
}

async fn list(store: &Arc<dyn ObjectStore>) -> Result<Listing> {
    let mut listing = Listing::default();
    let mut stream = store.list(Some(&Path::from(log::PREFIX)));
    while let Some(meta) = stream.next().await {
        let meta = meta.map_err(|source| Error::Io {
            path: log::PREFIX.to_string(),
            source,
        })?;
        listing.add(meta);
    }
    Ok(listing)
}

/// The version the checkpoint pointer names, `None` before the first checkpoint.
async fn read_pointer(store: &Arc<dyn ObjectStore>) -> Result<Option<u64>> {
    let path = Path::from(log::LAST_CHECKPOINT);
    Ok(get_json::<LastCheckpoint>(store, &path)
        .await?
        .map(|p| p.version))
}

async fn write_pointer(store: &Arc<dyn ObjectStore>, version: u64) -> Result<()> {
    let path = Path::from(log::LAST_CHECKPOINT);
    let body = serde_json::to_vec(&LastCheckpoint { version }).expect("pointer json");
    store
        .put(&path, PutPayload::from(body))
        .await
        .map_err(|source| Error::Io {
            path: path.to_string(),
            source,
        })?;
    Ok(())
}

/// The checkpoint of `version`, `None` if there is none.
async fn read_checkpoint(store: &Arc<dyn ObjectStore>, version: u64) -> Result<Option<ActionSet>> {
    let path = log::checkpoint_path(version);
    let Some(cp) = get_json::<Checkpoint>(store, &path).await? else {
        return Ok(None);
    };
    if cp.version != version {
        return Err(damaged(
            &path,
            format!(
                "it records version {} but its name says {version}",
                cp.version
            ),
        ));
    }
    let events = decode(&path, cp.events)?;
    Ok(Some(ActionSet::from_events(events)))
}

/// The newest version: the checkpoint the pointer names (or the empty table before the first),
/// then the commits after it. A pointer naming a checkpoint that is gone (GC removed it under a
/// stale pointer) makes it list the prefix instead.
async fn load(store: &Arc<dyn ObjectStore>) -> Result<(u64, Arc<ActionSet>)> {
    let (start, set) = match read_pointer(store).await? {
        None => (0, ActionSet::default()),
        Some(v) => match read_checkpoint(store, v).await? {
            Some(set) => (v, set),
            None => {
                tracing::warn!(
                    "corporate actions: the checkpoint pointer names version {v}, whose \
                     checkpoint is gone; listing the versions instead"
                );
                let listing = list(store).await?;
                let (version, set) = load_listed(store, &listing).await?;
                return follow(store, version, Arc::new(set)).await;
            }
        },
    };
    follow(store, start, Arc::new(set)).await
}

/// `base` (the table at `version`) with every commit after it applied, read by number until
/// one is missing: one GET when nothing is new, two for one new commit; while catching up, as
/// many at once as were read so far, up to [`PROBE_BATCH`]. A commit missing while a later
/// one is there is a gap in the log: an error naming it.
async fn follow(
    store: &Arc<dyn ObjectStore>,
    mut version: u64,
    base: Arc<ActionSet>,
) -> Result<(u64, Arc<ActionSet>)> {
    let mut set: Option<ActionSet> = None;
    let mut applied: u64 = 0;
    loop {
        let window = applied.clamp(1, PROBE_BATCH);
        let numbers: Vec<u64> = (version + 1..=version + window).collect();
        let fetched: Vec<Option<Vec<CorporateAction>>> = futures::stream::iter(numbers)
            .map(|v| read_commit(store, v))
            .buffered(PROBE_BATCH as usize)
            .try_collect()
            .await?;
        let found = fetched.iter().take_while(|c| c.is_some()).count();
        let later = fetched[found..].iter().position(Option::is_some);
        for put in fetched.into_iter().take(found).flatten() {
            set = Some(log::apply(set.as_ref().unwrap_or(&base), put));
            version += 1;
            applied += 1;
        }
        if found as u64 == window {
            continue;
        }
        let Some(later) = later else {
            return Ok((version, set.map_or(base, Arc::new)));
        };
        // A later commit is there: the missing one was being written as we asked (the
        // requests run at once), or the log has a gap.
        let missing = version + 1;
        let Some(put) = read_commit(store, missing).await? else {
            return Err(damaged(
                &log::log_path(missing),
                format!(
                    "missing, but version {} is there: the log has a gap",
                    missing + later as u64
                ),
            ));
        };
        set = Some(log::apply(set.as_ref().unwrap_or(&base), put));
        version = missing;
        applied += 1;
    }
}

/// The table as `listing` shows it: the newest checkpoint, then every commit after it, which
/// must follow it without a gap.
async fn load_listed(store: &Arc<dyn ObjectStore>, listing: &Listing) -> Result<(u64, ActionSet)> {
    let (start, mut set) = match listing.checkpoints.keys().next_back() {
        None => (0, ActionSet::default()),
        Some(&v) => {
            let set = read_checkpoint(store, v)
                .await?
                .ok_or_else(|| damaged(&log::checkpoint_path(v), "listed, but gone when read"))?;
            (v, set)
        }
    };
    if let Some((missing, there)) = listing.gap_after(start) {
        return Err(damaged(
            &log::log_path(missing),
            format!("missing, but version {there} is there: the log has a gap"),
        ));
    }
    let after: Vec<u64> = listing.log.range(start + 1..).map(|(v, _)| *v).collect();
    let commits: Vec<(u64, Option<Vec<CorporateAction>>)> = futures::stream::iter(after)
        .map(|v| async move { read_commit(store, v).await.map(|c| (v, c)) })
        .buffered(8)
        .try_collect()
        .await?;
    let mut version = start;
    for (v, put) in commits {
        let put = put.ok_or_else(|| damaged(&log::log_path(v), "listed, but gone when read"))?;
        set = log::apply(&set, put);
        version = v;
    }
    Ok((version, set))
}

/// Commit `version`'s events, `None` if there is no such commit yet.
async fn read_commit(
    store: &Arc<dyn ObjectStore>,
    version: u64,
) -> Result<Option<Vec<CorporateAction>>> {
    let path = log::log_path(version);
    let Some(commit) = get_json::<Commit>(store, &path).await? else {
        return Ok(None);
    };
    if commit.version != version {
        return Err(damaged(
            &path,
            format!(
                "it records version {} but its name says {version}",
                commit.version
            ),
        ));
    }
    decode(&path, commit.put).map(Some)
}

fn decode(path: &Path, records: Vec<Record>) -> Result<Vec<CorporateAction>> {
    records
        .into_iter()
        .map(|r| r.into_event().map_err(|reason| damaged(path, reason)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actions::{SOURCE_IMPORT, parse_ex_date};
    use crate::model::Symbol;
    use crate::storage::CountingStore;
    use object_store::PutPayload;
    use object_store::memory::InMemory;

    fn split(sym: &str, date: &str, ratio: f64, source: &str) -> CorporateAction {
        CorporateAction::split(
            Symbol::new(sym).unwrap(),
            parse_ex_date(date).unwrap(),
            ratio,
            source,
            7,
        )
        .unwrap()
    }

    fn dividend(sym: &str, date: &str, amount: f64) -> CorporateAction {
        CorporateAction::dividend(
            Symbol::new(sym).unwrap(),
            parse_ex_date(date).unwrap(),
            amount,
            SOURCE_IMPORT,
            7,
        )
        .unwrap()
    }

    fn memory() -> Arc<dyn ObjectStore> {
        Arc::new(InMemory::new())
    }

    async fn open(store: &Arc<dyn ObjectStore>) -> ActionsTable {
        ActionsTable::open(Arc::clone(store), false).await.unwrap()
    }

    async fn paths(store: &Arc<dyn ObjectStore>) -> Vec<String> {
        let mut out: Vec<String> = store
            .list(None)
            .map(|m| m.unwrap().location.to_string())
            .collect()
            .await;
        out.sort();
        out
    }

    #[tokio::test]
    async fn upserts_survive_a_reopen_and_a_no_op_commits_nothing() {
        let store = memory();
        let t = open(&store).await;
        let m = t
            .upsert(vec![
                split("AAPL", "2020-08-31", 4.0, "yahoo"),
                dividend("AAPL", "2020-11-06", 0.205),
            ])
            .await
            .unwrap();
        assert_eq!((m.inserted, t.version()), (2, 1));
        let again = t
            .upsert(vec![split("AAPL", "2020-08-31", 4.0, "polygon")])
            .await
            .unwrap();
        assert_eq!((again.unchanged, t.version()), (1, 1));
        assert_eq!(
            paths(&store).await,
            ["corporate_actions/_log/00000000000000000001.json"]
        );

        let reopened = open(&store).await;
        assert_eq!(reopened.version(), 1);
        assert_eq!(*reopened.snapshot(), *t.snapshot());
        let aapl = Symbol::new("AAPL").unwrap();
        assert_eq!(reopened.snapshot().for_symbol(&aapl).len(), 2);
    }

    #[tokio::test]
    async fn an_empty_store_opens_with_two_gets_and_no_list_and_a_follower_one_get() {
        let counting = CountingStore::new(memory());
        let stats = counting.stats();
        let store: Arc<dyn ObjectStore> = Arc::new(counting);
        let t = open(&store).await;
        let c = stats.snapshot();
        assert_eq!(
            (c.list, c.gets(), c.total()),
            (0, 2, 2),
            "pointer, version 1: {c}"
        );
        assert!(t.snapshot().is_empty());
        let before = stats.snapshot();
        t.refresh().await.unwrap();
        let c = stats.snapshot().since(&before);
        assert_eq!((c.gets(), c.total()), (1, 1), "{c}");
    }

    #[tokio::test]
    async fn opening_past_checkpoints_reads_the_pointer_and_never_lists() {
        let counting = CountingStore::new(memory());
        let stats = counting.stats();
        let store: Arc<dyn ObjectStore> = Arc::new(counting);
        let t = open(&store).await;
        let n = 2 * log::CHECKPOINT_EVERY + 3;
        for i in 0..n {
            // Eighths: exact in JSON (serde_json may parse other decimals 1 ULP off, which the
            // merge tolerates but this comparison would not).
            let day = format!("2000-01-{:02}", i % 28 + 1);
            t.upsert(vec![dividend("KO", &day, (i + 1) as f64 / 8.0)])
                .await
                .unwrap();
        }
        // The pointer names the newest checkpoint, which is complete.
        let pointer: LastCheckpoint = get_json(&store, &Path::from(log::LAST_CHECKPOINT))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(pointer.version, 2 * log::CHECKPOINT_EVERY);
        let before = stats.snapshot();
        let fresh = open(&store).await;
        let c = stats.snapshot().since(&before);
        // Pointer, checkpoint, then versions 101, 102, 103..104 (104 missing): no listing.
        assert_eq!((c.list, c.gets()), (0, 2 + 1 + 1 + 2), "{c}");
        assert_eq!((fresh.version(), &*fresh.snapshot()), (n, &*t.snapshot()));
        let before = stats.snapshot();
        fresh.refresh().await.unwrap();
        let c = stats.snapshot().since(&before);
        assert_eq!((c.gets(), c.total()), (1, 1), "nothing new: {c}");
    }

    #[tokio::test]
    async fn a_pointer_naming_a_missing_checkpoint_falls_back_on_a_listing() {
        let store = memory();
        let t = open(&store).await;
        for i in 0..log::CHECKPOINT_EVERY + 2 {
            t.upsert(vec![split("S", "2001-01-02", 1.0 + i as f64, "x")])
                .await
                .unwrap();
        }
        // A stale pointer (a writer that stalled between its checkpoint and its pointer)
        // naming a checkpoint GC removed.
        write_pointer(&store, 7).await.unwrap();
        let fresh = open(&store).await;
        assert_eq!(fresh.version(), log::CHECKPOINT_EVERY + 2);
        assert_eq!(*fresh.snapshot(), *t.snapshot());
    }

    #[tokio::test]
    async fn two_writers_racing_both_land() {
        let store = memory();
        let a = Arc::new(open(&store).await);
        let b = Arc::new(open(&store).await);
        let mut tasks = Vec::new();
        for i in 0..10 {
            for (t, sym) in [(&a, "A"), (&b, "B")] {
                let t = Arc::clone(t);
                let e = split(sym, &format!("2020-01-{:02}", i + 1), 2.0, "x");
                tasks.push(tokio::spawn(async move { t.upsert(vec![e]).await }));
            }
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
        let fresh = open(&store).await;
        assert_eq!(fresh.version(), 20);
        assert_eq!(fresh.snapshot().len(), 20);
        // b never saw a's last commits until it refreshes; then the same table.
        assert_eq!(*b.refresh().await.unwrap(), *fresh.snapshot());
        assert_eq!(*a.refresh().await.unwrap(), *fresh.snapshot());
    }

    #[tokio::test]
    async fn a_reader_sees_new_commits_after_refresh_and_cannot_write() {
        let store = memory();
        let writer = open(&store).await;
        let reader = ActionsTable::open(Arc::clone(&store), true).await.unwrap();
        writer
            .upsert(vec![split("NVDA", "2021-07-20", 4.0, "import")])
            .await
            .unwrap();
        assert!(reader.snapshot().is_empty());
        assert_eq!(reader.refresh().await.unwrap().len(), 1);
        assert!(matches!(
            reader.upsert(vec![dividend("X", "2020-01-02", 1.0)]).await,
            Err(Error::ReadOnly)
        ));
    }

    #[tokio::test]
    async fn checkpoints_bound_loading_and_gc_removes_what_no_reader_needs() {
        let store = memory();
        let t = open(&store).await;
        let n = log::CHECKPOINT_EVERY + 3;
        for i in 0..n {
            t.upsert(vec![dividend("KO", "2000-01-03", 0.01 * (i + 1) as f64)])
                .await
                .unwrap();
        }
        assert!(
            store
                .head(&log::checkpoint_path(log::CHECKPOINT_EVERY))
                .await
                .is_ok()
        );
        // The default grace keeps everything a minute-old checkpoint would let go.
        assert_eq!(t.gc(Duration::ZERO).await.unwrap().versions_deleted, 0);
        let gone = t.gc_with(Duration::ZERO).await.unwrap();
        assert_eq!(gone.versions_deleted as u64, log::CHECKPOINT_EVERY);
        let fresh = open(&store).await;
        assert_eq!(fresh.version(), n);
        assert_eq!(*fresh.snapshot(), *t.snapshot());
        let ko = Symbol::new("KO").unwrap();
        assert_eq!(
            fresh.snapshot().for_symbol(&ko)[0].amount,
            Some(0.01 * n as f64)
        );
    }

    #[tokio::test]
    async fn a_reader_behind_a_gc_reads_the_pointer_and_catches_up_without_listing() {
        let store = memory();
        let writer = open(&store).await;
        let counting = CountingStore::new(Arc::clone(&store));
        let stats = counting.stats();
        let mut reader = ActionsTable::open(Arc::new(counting), true).await.unwrap();
        let n = log::CHECKPOINT_EVERY + 2;
        for i in 0..n {
            writer
                .upsert(vec![split("S", "2001-01-02", 1.0 + i as f64, "x")])
                .await
                .unwrap();
        }
        assert_eq!(
            writer
                .gc_with(Duration::ZERO)
                .await
                .unwrap()
                .versions_deleted as u64,
            log::CHECKPOINT_EVERY
        );
        // Version 1 is gone: a GET of it says "nothing new" within the recheck time (GC
        // cannot have removed a version a reader that recent needs)...
        reader.refresh().await.unwrap();
        assert_eq!(reader.version(), 0);
        // ... past it, the pointer leads to the checkpoint.
        reader.recheck_after = Duration::ZERO;
        let before = stats.snapshot();
        reader.refresh().await.unwrap();
        let c = stats.snapshot().since(&before);
        assert_eq!(reader.version(), n);
        assert_eq!(*reader.snapshot(), *writer.snapshot());
        assert_eq!(c.list, 0, "{c}");
        // Caught up, nothing new: the GET of the next version and the pointer's.
        let before = stats.snapshot();
        reader.refresh().await.unwrap();
        let c = stats.snapshot().since(&before);
        assert_eq!((c.gets(), c.total()), (2, 2), "{c}");
    }

    #[tokio::test]
    async fn gc_deletes_nothing_a_loader_of_the_pointer_needs() {
        let store = memory();
        let t = open(&store).await;
        let n = log::CHECKPOINT_EVERY + 2;
        for i in 0..n {
            t.upsert(vec![split("S", "2001-01-02", 1.0 + i as f64, "x")])
                .await
                .unwrap();
        }
        // Without the pointer (its write failed), a loader starts from version 1: GC keeps
        // everything, and points at the checkpoint for next time.
        let pointer = Path::from(log::LAST_CHECKPOINT);
        store.delete(&pointer).await.unwrap();
        assert_eq!(t.gc_with(Duration::ZERO).await.unwrap().versions_deleted, 0);
        let fresh = open(&store).await;
        assert_eq!((fresh.version(), &*fresh.snapshot()), (n, &*t.snapshot()));
        let gone = t.gc_with(Duration::ZERO).await.unwrap();
        assert_eq!(gone.versions_deleted as u64, log::CHECKPOINT_EVERY);
        let fresh = open(&store).await;
        assert_eq!((fresh.version(), &*fresh.snapshot()), (n, &*t.snapshot()));
    }

    #[tokio::test]
    async fn a_damaged_version_is_an_error_naming_it_never_an_empty_table() {
        let store = memory();
        let t = open(&store).await;
        t.upsert(vec![split("A", "2020-01-02", 2.0, "x")])
            .await
            .unwrap();
        let put = |path: Path, body: &'static str| {
            let store = Arc::clone(&store);
            async move { store.put(&path, PutPayload::from(body)).await.unwrap() }
        };
        put(log::log_path(2), "{not json").await;
        let err = ActionsTable::open(Arc::clone(&store), true)
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("corporate_actions/_log/00000000000000000002.json is damaged"),
            "{err}"
        );
        // The follower keeps the version it has and says why it cannot go on.
        assert!(matches!(t.refresh().await, Err(Error::Damaged { .. })));
        assert_eq!(t.snapshot().len(), 1);
        assert!(
            t.upsert(vec![split("B", "2020-01-02", 2.0, "x")])
                .await
                .is_err()
        );

        // A valid JSON entry whose event breaks a rule, or whose number is wrong.
        put(
            log::log_path(2),
            r#"{"version":2,"committed_at":0,"put":[{"symbol":"A","ex_date":"2020-01-03","kind":"split","ratio":"-4","source":"x","recorded_at":0}]}"#,
        )
        .await;
        let err = ActionsTable::open(Arc::clone(&store), true)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("ratio Some(-4.0)"), "{err}");
        put(
            log::log_path(2),
            r#"{"version":9,"committed_at":0,"put":[]}"#,
        )
        .await;
        let err = ActionsTable::open(Arc::clone(&store), true)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("records version 9"), "{err}");

        // A gap: version 4 without 3. Opening asks for 3 and 4 at once and sees it.
        put(
            log::log_path(2),
            r#"{"version":2,"committed_at":0,"put":[]}"#,
        )
        .await;
        put(
            log::log_path(4),
            r#"{"version":4,"committed_at":0,"put":[]}"#,
        )
        .await;
        let err = ActionsTable::open(Arc::clone(&store), true)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains(
                "_log/00000000000000000003.json is damaged: missing, but version 4 is there"
            ),
            "{err}"
        );
        // GC, which lists, sees a gap anywhere and deletes nothing.
        put(
            log::log_path(3),
            r#"{"version":3,"committed_at":0,"put":[]}"#,
        )
        .await;
        store.delete(&log::log_path(2)).await.unwrap();
        let err = t.gc_with(Duration::ZERO).await.unwrap_err();
        assert!(err.to_string().contains("the log has a gap"), "{err}");
        assert!(store.head(&log::log_path(1)).await.is_ok());
    }
}
