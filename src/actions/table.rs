//! The `corporate_actions` table of a store: the current [`ActionSet`] and the upsert that
//! replaces it.
//!
//! SEAM: this first version keeps the set in memory only; persistence (committed atomically in
//! the store, on S3 too) replaces the body of `open` and `upsert` without changing the API.

use std::sync::{Arc, RwLock};

use object_store::ObjectStore;

use super::{ActionSet, CorporateAction, Merged};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the store is read-only: corporate actions cannot be written")]
    ReadOnly,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

pub struct ActionsTable {
    #[allow(dead_code)]
    object_store: Arc<dyn ObjectStore>,
    read_only: bool,
    current: RwLock<Arc<ActionSet>>,
}

impl std::fmt::Debug for ActionsTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActionsTable")
            .field("events", &self.snapshot().len())
            .finish_non_exhaustive()
    }
}

impl ActionsTable {
    /// Opens the table of the store at `object_store`.
    pub async fn open(object_store: Arc<dyn ObjectStore>, read_only: bool) -> Result<Self> {
        Ok(ActionsTable {
            object_store,
            read_only,
            current: RwLock::new(Arc::new(ActionSet::default())),
        })
    }

    /// The current version.
    pub fn snapshot(&self) -> Arc<ActionSet> {
        Arc::clone(&self.current.read().expect("actions lock"))
    }

    /// Reloads the newest committed version (another process may have committed).
    pub async fn refresh(&self) -> Result<Arc<ActionSet>> {
        Ok(self.snapshot())
    }

    /// Upserts `events` by (symbol, ex_date, kind) as one commit: all of them or none.
    pub async fn upsert(&self, events: Vec<CorporateAction>) -> Result<Merged> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        let mut current = self.current.write().expect("actions lock");
        let merged = current.merge(events);
        if merged.changed() {
            *current = Arc::new(merged.set.clone());
        }
        Ok(merged)
    }
}
