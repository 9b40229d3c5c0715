//! Checks a remote store once at start, so a wrong bucket, bad credentials or a store that would
//! let two writers corrupt the catalog fail loudly before anything is read or written.

use std::sync::Arc;

use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions};

/// Where the probe objects go; deleted right after.
const PROBE_DIR: &str = "_tickvault/probe";

#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error("{url}: the bucket does not exist (create it, or fix the bucket name / endpoint)")]
    BucketMissing { url: String },
    #[error(
        "{url}: access denied ({detail}); check s3.access_key_id / s3.secret_access_key \
         (or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY) and the bucket policy"
    )]
    AccessDenied { url: String, detail: String },
    #[error(
        "{url}: no S3 credentials: none are configured and the instance metadata service \
         (169.254.169.254) did not provide any; set s3.access_key_id and s3.secret_access_key \
         (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
    )]
    NoCredentials { url: String },
    #[error("{url}: cannot reach the store: {source}")]
    Unreachable {
        url: String,
        source: object_store::Error,
    },
    #[error(
        "{url} ignores conditional writes (If-None-Match: *): two writers could overwrite each \
         other's catalog commits. Use a store that honours them (AWS S3, MinIO, R2 do), or set \
         single_writer = true if you guarantee that only one tickvault process ever writes"
    )]
    NoConditionalWrites { url: String },
}

impl PreflightError {
    pub fn kind(&self) -> crate::error::ErrorKind {
        use crate::error::ErrorKind;
        match self {
            // The configuration names a store that cannot be used as it is.
            PreflightError::BucketMissing { .. }
            | PreflightError::AccessDenied { .. }
            | PreflightError::NoCredentials { .. }
            | PreflightError::NoConditionalWrites { .. } => ErrorKind::InvalidInput,
            PreflightError::Unreachable { .. } => ErrorKind::Internal,
        }
    }
}

/// Lists the catalog prefix once: proves the bucket exists and the credentials work.
pub async fn check_reachable(
    store: &Arc<dyn ObjectStore>,
    url: &str,
) -> Result<(), PreflightError> {
    match store
        .list_with_delimiter(Some(&Path::from("_catalog")))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) => Err(classify(e, url)),
    }
}

fn classify(e: object_store::Error, url: &str) -> PreflightError {
    let url = url.to_string();
    let text = crate::error::error_chain(&e);
    match &e {
        _ if text.contains("NoSuchBucket") => PreflightError::BucketMissing { url },
        // The AWS credential chain ends at the instance metadata service.
        _ if text.contains("169.254.169.254") => PreflightError::NoCredentials { url },
        object_store::Error::NotFound { .. } => PreflightError::BucketMissing { url },
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => PreflightError::AccessDenied {
            url,
            detail: s3_code(&text).unwrap_or("403").to_string(),
        },
        _ if text.contains("InvalidAccessKeyId")
            || text.contains("SignatureDoesNotMatch")
            || text.contains("AccessDenied") =>
        {
            PreflightError::AccessDenied {
                url,
                detail: s3_code(&text).unwrap_or("403").to_string(),
            }
        }
        _ => PreflightError::Unreachable { url, source: e },
    }
}

/// The S3 error code in an error's text, e.g. `InvalidAccessKeyId`.
fn s3_code(text: &str) -> Option<&str> {
    let start = text.find("<Code>")? + "<Code>".len();
    let len = text[start..].find("</Code>")?;
    Some(&text[start..start + len])
}

/// Creates a probe object twice with `PutMode::Create`: a store that honours conditional
/// writes refuses the second. Three requests (two PUTs, one DELETE).
pub async fn check_conditional_writes(
    store: &Arc<dyn ObjectStore>,
    url: &str,
) -> Result<(), PreflightError> {
    let probe = Path::from(format!("{PROBE_DIR}/{}", uuid::Uuid::new_v4().simple()));
    let create = || PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    store
        .put_opts(&probe, "first".into(), create())
        .await
        .map_err(|e| classify(e, url))?;
    let second = store.put_opts(&probe, "second".into(), create()).await;
    // Best effort: a leftover probe is a few bytes under _tickvault/.
    let _ = store.delete(&probe).await;
    match second {
        Err(object_store::Error::AlreadyExists { .. })
        | Err(object_store::Error::Precondition { .. }) => Ok(()),
        Ok(_) | Err(object_store::Error::NotImplemented { .. }) => {
            Err(PreflightError::NoConditionalWrites {
                url: url.to_string(),
            })
        }
        Err(e) => Err(classify(e, url)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn a_store_that_honours_create_passes() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        check_conditional_writes(&store, "memory://").await.unwrap();
        check_reachable(&store, "memory://").await.unwrap();
        let left = store.list_with_delimiter(None).await.unwrap();
        assert!(left.objects.is_empty(), "the probe is deleted");
    }

    #[test]
    fn s3_codes_are_found() {
        let t = "403: <Error><Code>InvalidAccessKeyId</Code><Message>x</Message></Error>";
        assert_eq!(s3_code(t), Some("InvalidAccessKeyId"));
    }
}
