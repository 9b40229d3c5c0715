//! The catalog format before the Delta log (`_catalog/`): read to serve stores not yet converted
//! and to convert them. Commit `n` was `_catalog/log/<n, 20 digits>.json`, checkpoints
//! `_catalog/checkpoint/<n>.json` behind `_catalog/_last_checkpoint`.
//!
//! Conversion ends this log with a marker entry (create-only, like a commit), so a tickvault of
//! the old format can no longer commit to it (it cannot parse the marker and stops writing) and
//! a commit it raced in before the marker is part of what is converted.

use std::sync::Arc;

use futures::StreamExt;
use object_store::ObjectStore;
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use super::snapshot::{Checkpoint, Commit, Seq, Snapshot};
use super::{Error, Result};
use crate::storage::{create_object, get_json};

pub const CATALOG_PREFIX: &str = "_catalog";
const LOG_DIR: &str = "_catalog/log";
const CHECKPOINT_DIR: &str = "_catalog/checkpoint";
const LAST_CHECKPOINT: &str = "_catalog/_last_checkpoint";
/// Where the marker says the table went.
pub const CONVERTED_TO: &str = "bars/_delta_log";

pub fn log_path(seq: Seq) -> Path {
    Path::from(format!("{LOG_DIR}/{:020}.json", seq.0))
}

fn checkpoint_path(seq: Seq) -> Path {
    Path::from(format!("{CHECKPOINT_DIR}/{:020}.json", seq.0))
}

#[derive(Debug, Serialize, Deserialize)]
struct LastCheckpoint {
    seq: Seq,
}

/// The entry that ends an old log once its table is converted.
#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    converted_to: String,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum LogEntry {
    Commit(Commit),
    #[expect(dead_code, reason = "only its presence matters: the log ends there")]
    Marker(Marker),
}

/// The old catalog as of its last commit; `None` if the store has no `_catalog/` at all.
pub async fn load(store: &Arc<dyn ObjectStore>) -> Result<Option<Snapshot>> {
    let pointer: Option<LastCheckpoint> = get_json(store, &Path::from(LAST_CHECKPOINT)).await?;
    let start = match pointer {
        Some(p) => Some(p.seq),
        None if get_json::<serde_json::Value>(store, &log_path(Seq(1)))
            .await?
            .is_none() =>
        {
            newest_listed_checkpoint(store).await?
        }
        None => None,
    };
    let snapshot = match start {
        Some(seq) => {
            let path = checkpoint_path(seq);
            let cp: Checkpoint = get_json(store, &path).await?.ok_or_else(|| Error::Io {
                path: path.to_string(),
                source: object_store::Error::NotFound {
                    path: path.to_string(),
                    source: "the checkpoint pointer names a missing checkpoint".into(),
                },
            })?;
            Snapshot::from_checkpoint(cp)
        }
        None => Snapshot::default(),
    };
    let snapshot = follow(store, snapshot).await?;
    Ok((start.is_some() || snapshot.seq > Seq(0)).then_some(snapshot))
}

/// `snapshot` and the old log's commits after it, read by number up to the first missing one
/// (or the conversion marker).
pub async fn follow(store: &Arc<dyn ObjectStore>, mut snapshot: Snapshot) -> Result<Snapshot> {
    loop {
        let at = snapshot.seq.next();
        let path = log_path(at);
        match get_json::<LogEntry>(store, &path).await? {
            None | Some(LogEntry::Marker(_)) => return Ok(snapshot),
            Some(LogEntry::Commit(c)) => {
                if c.seq != at {
                    return Err(Error::BrokenLog {
                        path: path.to_string(),
                        reason: format!("it records seq {} but its name says {at}", c.seq),
                    });
                }
                snapshot = snapshot.apply(&c)?;
            }
        }
    }
}

/// Ends the old log after `at` with the conversion marker; `false` if an old writer committed
/// `at + 1` first (reload and convert that too).
pub async fn end_log(store: &Arc<dyn ObjectStore>, at: Seq) -> Result<bool> {
    let body = serde_json::to_vec(&Marker {
        converted_to: CONVERTED_TO.into(),
    })
    .expect("json");
    match create_object(store, &log_path(at.next()), body).await? {
        true => Ok(true),
        // Ours from an earlier, interrupted conversion is as good as new.
        false => Ok(matches!(
            get_json::<LogEntry>(store, &log_path(at.next())).await?,
            Some(LogEntry::Marker(_))
        )),
    }
}

async fn newest_listed_checkpoint(store: &Arc<dyn ObjectStore>) -> Result<Option<Seq>> {
    let mut newest = None;
    let mut listing = store.list(Some(&Path::from(CHECKPOINT_DIR)));
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

/// Writes an old-format store's catalog: commits (and a checkpoint at `checkpoint_at`), as the
/// format before the Delta log did. Test support for conversion.
#[cfg(any(test, feature = "test-support"))]
pub async fn write_old_log(
    store: &Arc<dyn ObjectStore>,
    commits: &[Commit],
    checkpoint_at: Option<Seq>,
) {
    use object_store::ObjectStoreExt;
    let mut snapshot = Snapshot::default();
    for c in commits {
        let body = serde_json::to_vec_pretty(c).expect("json");
        store.put(&log_path(c.seq), body.into()).await.expect("put");
        snapshot = snapshot.apply(c).expect("old commits apply");
        if Some(c.seq) == checkpoint_at {
            let body = serde_json::to_vec(&snapshot.to_checkpoint()).expect("json");
            store
                .put(&checkpoint_path(c.seq), body.into())
                .await
                .expect("put");
            let body = serde_json::to_vec(&LastCheckpoint { seq: c.seq }).expect("json");
            store
                .put(&Path::from(LAST_CHECKPOINT), body.into())
                .await
                .expect("put");
        }
    }
}
