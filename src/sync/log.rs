//! The sync state's durable form: an append-only log of commits, each a list of [`Op`]s, in the
//! store beside the catalog, with periodic checkpoints. Same scheme as the catalog: commit `n`
//! is `_sync/log/<n, 20 digits>.json` created with `PutMode::Create`, so two processes (a server
//! and a CLI) never overwrite each other; a loser reads the winner's commit and appends after
//! it. Ops are upserts, so applying them in log order gives every process the same state.

use std::sync::{Arc, RwLock};

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::clock::{self, Clock};
use crate::storage::{JsonError, create_object, get_json};
use serde::{Deserialize, Serialize};

use super::registry::{Op, SyncState};

const LOG_DIR: &str = "_sync/log";
const CHECKPOINT_DIR: &str = "_sync/checkpoint";
const LAST_CHECKPOINT: &str = "_sync/_last_checkpoint";
const CHECKPOINT_EVERY: u64 = 200;
const MAX_ATTEMPTS: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("sync state I/O at {path}: {source}")]
    Io {
        path: String,
        source: object_store::Error,
    },
    #[error("sync state entry {path} is corrupt: {source}")]
    Corrupt {
        path: String,
        source: serde_json::Error,
    },
    #[error("gave up committing sync state after {0} attempts against concurrent writers")]
    TooManyAttempts(usize),
    /// An entry that names another number than its own: skipping it would loop forever.
    #[error(
        "sync state log entry {path} is broken: it records seq {found} but its name says {expected}"
    )]
    BrokenLog {
        path: String,
        found: u64,
        expected: u64,
    },
}

impl From<JsonError> for Error {
    fn from(e: JsonError) -> Self {
        match e {
            JsonError::Io { path, source } => Error::Io { path, source },
            JsonError::Corrupt { path, source } => Error::Corrupt { path, source },
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct Commit {
    seq: u64,
    /// µs UTC.
    at: i64,
    ops: Vec<Op>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Checkpoint {
    seq: u64,
    state: SyncState,
}

#[derive(Debug, Serialize, Deserialize)]
struct Pointer {
    seq: u64,
}

/// The sync state in memory, kept equal to the log.
#[derive(Debug)]
pub struct SyncLog {
    store: Arc<dyn ObjectStore>,
    current: RwLock<(u64, Arc<SyncState>)>,
    commit_lock: tokio::sync::Mutex<()>,
    /// Stamps commits (`at`).
    clock: Arc<dyn Clock>,
}

fn log_path(seq: u64) -> Path {
    Path::from(format!("{LOG_DIR}/{seq:020}.json"))
}

fn checkpoint_path(seq: u64) -> Path {
    Path::from(format!("{CHECKPOINT_DIR}/{seq:020}.json"))
}

impl SyncLog {
    /// Stamps commits with this clock's time instead of the system's.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The clock commits are stamped with.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Loads the newest checkpoint and every commit after it (no listing).
    pub async fn load(store: Arc<dyn ObjectStore>) -> Result<Self, Error> {
        let start = match get_json::<Pointer>(&store, &Path::from(LAST_CHECKPOINT)).await? {
            Some(p) => {
                let path = checkpoint_path(p.seq);
                let cp: Checkpoint = get_json(&store, &path).await?.ok_or_else(|| Error::Io {
                    path: path.to_string(),
                    source: object_store::Error::NotFound {
                        path: path.to_string(),
                        source: "the checkpoint pointer names a missing checkpoint".into(),
                    },
                })?;
                (cp.seq, cp.state)
            }
            None => (0, SyncState::default()),
        };
        let log = SyncLog {
            store,
            current: RwLock::new((start.0, Arc::new(start.1))),
            commit_lock: tokio::sync::Mutex::new(()),
            clock: clock::system(),
        };
        log.refresh().await?;
        Ok(log)
    }

    /// The current state; it never changes under its holder.
    pub fn state(&self) -> Arc<SyncState> {
        Arc::clone(&self.current.read().expect("lock").1)
    }

    pub fn seq(&self) -> u64 {
        self.current.read().expect("lock").0
    }

    /// Applies commits made by other processes since the current state.
    pub async fn refresh(&self) -> Result<Arc<SyncState>, Error> {
        loop {
            let seq = self.seq();
            let path = log_path(seq + 1);
            let Some(commit) = get_json::<Commit>(&self.store, &path).await? else {
                return Ok(self.state());
            };
            if commit.seq != seq + 1 {
                return Err(Error::BrokenLog {
                    path: path.to_string(),
                    found: commit.seq,
                    expected: seq + 1,
                });
            }
            self.install(&commit);
        }
    }

    fn install(&self, commit: &Commit) {
        let mut current = self.current.write().expect("lock");
        if commit.seq != current.0 + 1 {
            return; // applied by a concurrent refresh
        }
        let mut next = (*current.1).clone();
        for op in &commit.ops {
            next.apply(op);
        }
        *current = (commit.seq, Arc::new(next));
    }

    /// Appends `ops` atomically; returns the state after them. If another process committed
    /// first, its commit is read and ours goes after it.
    pub async fn commit(&self, ops: Vec<Op>) -> Result<Arc<SyncState>, Error> {
        if ops.is_empty() {
            return Ok(self.state());
        }
        let _guard = self.commit_lock.lock().await;
        let mut commit = Commit { seq: 0, at: 0, ops };
        for _ in 0..MAX_ATTEMPTS {
            self.refresh().await?;
            commit.seq = self.seq() + 1;
            commit.at = self.clock.now_micros();
            let body = serde_json::to_vec(&commit).expect("commit serializes");
            // Losing the race only means reading the winner's commit and going after it.
            if !create_object(&self.store, &log_path(commit.seq), body).await? {
                continue;
            }
            self.install(&commit);
            // Best effort: a missing checkpoint only makes the next load read more.
            if commit.seq.is_multiple_of(CHECKPOINT_EVERY)
                && let Err(e) = self.write_checkpoint().await
            {
                tracing::warn!("sync state checkpoint failed: {e}");
            }
            return Ok(self.state());
        }
        Err(Error::TooManyAttempts(MAX_ATTEMPTS))
    }

    /// Writes the full state at the current commit and points `_last_checkpoint` at it. Old
    /// commits stay (they are small); loading starts from the checkpoint.
    pub async fn write_checkpoint(&self) -> Result<(), Error> {
        let (seq, state) = {
            let c = self.current.read().expect("lock");
            (c.0, Arc::clone(&c.1))
        };
        let path = checkpoint_path(seq);
        let body = serde_json::to_vec(&Checkpoint {
            seq,
            state: (*state).clone(),
        })
        .expect("checkpoint serializes");
        let io = |path: &Path| {
            let path = path.to_string();
            move |source| Error::Io { path, source }
        };
        self.store
            .put(&path, PutPayload::from(body))
            .await
            .map_err(io(&path))?;
        let pointer = Path::from(LAST_CHECKPOINT);
        let body = serde_json::to_vec(&Pointer { seq }).expect("json");
        self.store
            .put(&pointer, PutPayload::from(body))
            .await
            .map_err(io(&pointer))?;
        // Commits two checkpoints back are no longer needed by any loader (one that read the
        // previous pointer still finds every commit after it), so the log stays bounded.
        if let Some(old) = seq.checked_sub(2 * CHECKPOINT_EVERY) {
            for s in old.saturating_sub(CHECKPOINT_EVERY) + 1..=old {
                let _ = self.store.delete(&log_path(s)).await;
            }
            let _ = self.store.delete(&checkpoint_path(old)).await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Interval, Symbol};
    use crate::sync::registry::Covered;
    use object_store::memory::InMemory;

    fn cover(sym: &str, start: i64) -> Op {
        Op::Cover {
            symbol: Symbol::new(sym).unwrap(),
            interval: Interval::D1,
            range: Covered {
                start,
                end: start + 1,
                rows: 0,
                source: "t".into(),
                fetched_at: 0,
            },
        }
    }

    #[tokio::test]
    async fn two_writers_interleave_and_a_reload_sees_both() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let a = SyncLog::load(Arc::clone(&store)).await.unwrap();
        let b = SyncLog::load(Arc::clone(&store)).await.unwrap();
        for i in 0..CHECKPOINT_EVERY + 5 {
            a.commit(vec![cover("A", i as i64)]).await.unwrap();
            // b never refreshed: its commit lands after a's, not over it.
            b.commit(vec![cover("B", i as i64)]).await.unwrap();
        }
        let reloaded = SyncLog::load(store).await.unwrap();
        assert_eq!(reloaded.seq(), 2 * (CHECKPOINT_EVERY + 5));
        assert_eq!(*reloaded.state(), *b.refresh().await.unwrap());
        let state = reloaded.state();
        for sym in ["A", "B"] {
            let id = (Symbol::new(sym).unwrap(), Interval::D1);
            assert_eq!(state.coverage[&id].len() as u64, CHECKPOINT_EVERY + 5);
        }
    }

    #[tokio::test]
    async fn an_entry_whose_seq_disagrees_with_its_name_is_an_error_not_a_hang() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let log = SyncLog::load(Arc::clone(&store)).await.unwrap();
        log.commit(vec![cover("A", 0)]).await.unwrap();
        let stray = Commit {
            seq: 9,
            at: 0,
            ops: vec![cover("B", 0)],
        };
        let body = serde_json::to_vec(&stray).unwrap();
        store.put(&log_path(2), body.into()).await.unwrap();
        // Before, refresh read entry 2, skipped it as "already applied" and read it again forever.
        let err = tokio::time::timeout(std::time::Duration::from_secs(5), log.refresh())
            .await
            .expect("refresh returns")
            .unwrap_err();
        assert!(
            matches!(&err, Error::BrokenLog { path, found: 9, expected: 2 }
                if path == "_sync/log/00000000000000000002.json"),
            "{err}"
        );
        assert!(log.commit(vec![cover("C", 0)]).await.is_err());
    }
}
