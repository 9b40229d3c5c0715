//! Store URLs: a local path (`./data`, `/abs`, `file:///abs`), `memory://` or `s3://bucket/prefix`.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;

use super::counting::{CountingStore, RequestStats};
use super::disk_cache::{CachingStore, DiskCache};
use super::s3::{S3Config, open_s3};
use super::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    Local(PathBuf),
    Memory,
    S3 { bucket: String, prefix: String },
}

impl StoreUrl {
    pub fn parse(s: &str) -> Result<Self> {
        let invalid = |reason: &str| Error::InvalidUrl {
            url: s.to_string(),
            reason: reason.to_string(),
        };
        if s.is_empty() {
            return Err(invalid("empty"));
        }
        if s == "memory://" || s == "memory:" {
            return Ok(StoreUrl::Memory);
        }
        if let Some(rest) = s.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(invalid("missing bucket name"));
            }
            return Ok(StoreUrl::S3 {
                bucket: bucket.to_string(),
                prefix: prefix.trim_matches('/').to_string(),
            });
        }
        if let Some(rest) = s.strip_prefix("file://") {
            if !rest.starts_with('/') {
                return Err(invalid(
                    "file:// URLs need an absolute path (file:///abs/path)",
                ));
            }
            return Ok(StoreUrl::Local(PathBuf::from(rest)));
        }
        if let Some((scheme, _)) = s.split_once("://") {
            return Err(invalid(&format!(
                "unsupported scheme {scheme:?} (use a path, file://, memory:// or s3://)"
            )));
        }
        Ok(StoreUrl::Local(PathBuf::from(s)))
    }
}

impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::Local(p) => write!(f, "{}", p.display()),
            StoreUrl::Memory => f.write_str("memory://"),
            StoreUrl::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

/// How the store behind a URL is reached and cached (the `[s3]` table, `cache_dir`).
#[derive(Debug, Clone, Default)]
pub struct StoreSettings {
    pub s3: S3Config,
    /// A local directory caching remote Parquet files; `None` for no cache.
    pub cache_dir: Option<PathBuf>,
    pub cache_max_bytes: u64,
}

/// An opened object store with its request counters and disk cache.
#[derive(Debug, Clone)]
pub struct OpenedStore {
    pub store: Arc<dyn ObjectStore>,
    pub requests: RequestStats,
    pub cache: Option<Arc<DiskCache>>,
}

impl OpenedStore {
    /// Counts the requests of a store built elsewhere (tests inject failures this way).
    pub fn wrap(inner: Arc<dyn ObjectStore>) -> Self {
        let counting = CountingStore::new(inner);
        Self {
            requests: counting.stats(),
            store: Arc::new(counting),
            cache: None,
        }
    }
}

/// Opens the object store a URL names (a local directory is created if missing), counting its
/// requests and, with a `cache_dir`, reading Parquet files through the disk cache.
pub fn open_object_store(url: &StoreUrl, settings: &StoreSettings) -> Result<OpenedStore> {
    let raw: Arc<dyn ObjectStore> = match url {
        StoreUrl::Local(dir) => {
            std::fs::create_dir_all(dir).map_err(|source| Error::CreateDir {
                path: dir.display().to_string(),
                source,
            })?;
            let dir = dir.canonicalize().map_err(|source| Error::CreateDir {
                path: dir.display().to_string(),
                source,
            })?;
            // Writes go to a temporary file first and are renamed into place, so a reader never
            // sees a partial file.
            Arc::new(LocalFileSystem::new_with_prefix(dir)?)
        }
        StoreUrl::Memory => Arc::new(InMemory::new()),
        StoreUrl::S3 { bucket, prefix } => open_s3(bucket, prefix, &settings.s3)?,
    };
    let mut opened = OpenedStore::wrap(raw);
    if let Some(dir) = &settings.cache_dir {
        let cache =
            DiskCache::open(dir, settings.cache_max_bytes).map_err(|source| Error::CreateDir {
                path: dir.display().to_string(),
                source,
            })?;
        let cache = Arc::new(cache);
        opened.store = Arc::new(CachingStore::new(opened.store, Arc::clone(&cache)));
        opened.cache = Some(cache);
    }
    Ok(opened)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        assert_eq!(
            StoreUrl::parse("./data").unwrap(),
            StoreUrl::Local("./data".into())
        );
        assert_eq!(
            StoreUrl::parse("file:///tmp/x").unwrap(),
            StoreUrl::Local("/tmp/x".into())
        );
        assert_eq!(StoreUrl::parse("memory://").unwrap(), StoreUrl::Memory);
        assert_eq!(
            StoreUrl::parse("s3://bucket/a/b/").unwrap(),
            StoreUrl::S3 {
                bucket: "bucket".into(),
                prefix: "a/b".into()
            }
        );
        assert!(StoreUrl::parse("gs://x").is_err());
        assert!(StoreUrl::parse("file://rel").is_err());
        assert!(StoreUrl::parse("s3://").is_err());
    }
}
