//! Named snapshots: a table version pinned under a name, for reproducible backtests.
//!
//! Each is one small JSON object, `_snapshots/<name>.json`, created with `PutMode::Create`, so
//! two creators of one name race with exactly one winner, on S3 as on disk. A snapshot only
//! names a version; what keeps that version readable is GC (and any log cleanup), which keep
//! every file and log entry a pinned version needs for as long as its snapshot exists.

use std::collections::BTreeSet;
use std::sync::Arc;

use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};

use crate::error::ErrorKind;
use crate::storage::{JsonError, create_object, get_json};

/// Where named snapshots live, beside the table (not inside `bars/`).
pub const SNAPSHOTS_DIR: &str = "_snapshots";
/// The longest name allowed.
pub const MAX_NAME_LEN: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid snapshot name {name:?}: {reason}")]
    InvalidName { name: String, reason: String },
    #[error("a snapshot named {0:?} already exists")]
    Exists(String),
    #[error("no snapshot named {0:?}")]
    NotFound(String),
    #[error("named snapshots: {0}")]
    Storage(#[from] JsonError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidName { .. } => ErrorKind::InvalidInput,
            Error::Exists(_) => ErrorKind::SnapshotExists,
            Error::NotFound(_) => ErrorKind::UnknownSnapshot,
            Error::Storage(_) => ErrorKind::Internal,
        }
    }
}

/// A snapshot name: 1 to 64 of `A-Z a-z 0-9 . _ -`, and not `.` or `..` (it is a file name).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SnapshotName(String);

impl SnapshotName {
    pub fn new(name: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidName {
            name: name.to_string(),
            reason: reason.to_string(),
        };
        if name.is_empty() {
            return Err(invalid("empty"));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(invalid(&format!(
                "{} characters; at most {MAX_NAME_LEN}",
                name.chars().count()
            )));
        }
        if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(invalid(&format!(
                "{c:?} is not allowed; use letters, digits, '.', '_' and '-'"
            )));
        }
        if name == "." || name == ".." {
            return Err(invalid("not a usable name"));
        }
        Ok(Self(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn path(&self) -> Path {
        Path::from(format!("{SNAPSHOTS_DIR}/{}.json", self.0))
    }
}

impl std::fmt::Display for SnapshotName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A table version pinned under a name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedSnapshot {
    pub name: String,
    /// The table version (catalog commit number) it pins.
    pub version: u64,
    /// When it was created, µs since the epoch (UTC).
    pub created: i64,
}

/// Pins `version` as `name`; fails with [`Error::Exists`] if the name is taken.
pub async fn create(
    store: &Arc<dyn ObjectStore>,
    name: &SnapshotName,
    version: u64,
    created: i64,
) -> Result<NamedSnapshot> {
    let snapshot = NamedSnapshot {
        name: name.0.clone(),
        version,
        created,
    };
    let body = serde_json::to_vec_pretty(&snapshot).expect("a snapshot serializes");
    if !create_object(store, &name.path(), body).await? {
        return Err(Error::Exists(name.0.clone()));
    }
    Ok(snapshot)
}

/// The snapshot named `name`; [`Error::NotFound`] if there is none.
pub async fn get(store: &Arc<dyn ObjectStore>, name: &SnapshotName) -> Result<NamedSnapshot> {
    get_json::<NamedSnapshot>(store, &name.path())
        .await?
        .ok_or_else(|| Error::NotFound(name.0.clone()))
}

/// Every named snapshot, by name. Lists `_snapshots/` (a handful of objects).
pub async fn list(store: &Arc<dyn ObjectStore>) -> Result<Vec<NamedSnapshot>> {
    let mut paths = Vec::new();
    let mut listing = store.list(Some(&Path::from(SNAPSHOTS_DIR)));
    while let Some(meta) = listing.next().await {
        let meta = meta.map_err(|source| JsonError::Io {
            path: SNAPSHOTS_DIR.to_string(),
            source,
        })?;
        if meta.location.extension() == Some("json") {
            paths.push(meta.location);
        }
    }
    let mut out = Vec::with_capacity(paths.len());
    for path in paths {
        // Deleted between the listing and the read: no longer a snapshot.
        if let Some(s) = get_json::<NamedSnapshot>(store, &path).await? {
            out.push(s);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Deletes the snapshot named `name` (its version is no longer kept by GC); [`Error::NotFound`]
/// if there is none.
pub async fn delete(store: &Arc<dyn ObjectStore>, name: &SnapshotName) -> Result<NamedSnapshot> {
    let snapshot = get(store, name).await?;
    let path = name.path();
    match store.delete(&path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(snapshot),
        Err(source) => Err(JsonError::Io {
            path: path.to_string(),
            source,
        }
        .into()),
    }
}

/// The versions named snapshots pin: GC and log cleanup keep what these need.
pub async fn pinned_versions(store: &Arc<dyn ObjectStore>) -> Result<BTreeSet<u64>> {
    Ok(list(store).await?.into_iter().map(|s| s.version).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    #[test]
    fn names_are_1_to_64_of_letters_digits_dot_underscore_dash() {
        for good in ["a", "backtest-2024.Q1_v2", &"x".repeat(64), "..a", "-"] {
            assert_eq!(SnapshotName::new(good).unwrap().as_str(), good);
        }
        let cases = [
            ("", "empty"),
            (&"x".repeat(65) as &str, "65 characters"),
            ("a/b", "'/'"),
            ("a b", "' '"),
            ("é", "'é'"),
            ("..", "not a usable name"),
            (".", "not a usable name"),
        ];
        for (bad, reason) in cases {
            let e = SnapshotName::new(bad).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput);
            assert!(e.to_string().contains(reason), "{bad:?}: {e}");
        }
    }

    #[tokio::test]
    async fn create_list_get_delete_and_a_name_taken_once() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let a = SnapshotName::new("a").unwrap();
        let b = SnapshotName::new("b.1").unwrap();
        create(&store, &b, 7, 100).await.unwrap();
        create(&store, &a, 3, 200).await.unwrap();
        let e = create(&store, &a, 9, 300).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::SnapshotExists);
        assert!(e.to_string().contains("\"a\""), "{e}");
        // The first stays as it was.
        assert_eq!(get(&store, &a).await.unwrap().version, 3);
        let names: Vec<(String, u64)> = list(&store)
            .await
            .unwrap()
            .into_iter()
            .map(|s| (s.name, s.version))
            .collect();
        assert_eq!(names, [("a".to_string(), 3), ("b.1".to_string(), 7)]);
        assert_eq!(
            pinned_versions(&store).await.unwrap(),
            BTreeSet::from([3, 7])
        );
        assert_eq!(delete(&store, &a).await.unwrap().version, 3);
        let e = delete(&store, &a).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnknownSnapshot);
        let e = get(&store, &a).await.unwrap_err();
        assert!(e.to_string().contains("no snapshot named \"a\""), "{e}");
        assert_eq!(pinned_versions(&store).await.unwrap(), BTreeSet::from([7]));
    }
}
