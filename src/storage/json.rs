//! Small JSON objects in the store, as the catalog and the sync state keep their logs: read
//! one if it is there, and create one only if nothing is (`PutMode::Create`), which is what
//! lets two writers race for a log entry with exactly one winner.

use std::sync::Arc;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};

#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    #[error("I/O at {path}: {source}")]
    Io {
        path: String,
        source: object_store::Error,
    },
    #[error("{path} is corrupt: {source}")]
    Corrupt {
        path: String,
        source: serde_json::Error,
    },
}

/// Reads and parses the object at `path`; `None` if there is none.
pub async fn get_json<T: serde::de::DeserializeOwned>(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
) -> Result<Option<T>, JsonError> {
    let io = |source| JsonError::Io {
        path: path.to_string(),
        source,
    };
    match store.get(path).await {
        Ok(r) => {
            let bytes = r.bytes().await.map_err(io)?;
            serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| JsonError::Corrupt {
                    path: path.to_string(),
                    source,
                })
        }
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(io(e)),
    }
}

/// Writes `body` at `path` only if nothing is there. `Ok(false)`: another writer was first.
pub async fn create_object(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    body: Vec<u8>,
) -> Result<bool, JsonError> {
    let opts = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    match store.put_opts(path, PutPayload::from(body), opts).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
        Err(source) => Err(JsonError::Io {
            path: path.to_string(),
            source,
        }),
    }
}
