//! A local disk cache of whole Parquet files in front of a remote store, evicting the least
//! recently used past a byte budget, so repeated backtests over the same years read local disk.
//!
//! Only bar files are cached: their names are unique and their bytes never change, so a cached
//! copy can never be stale. On a miss the whole file is fetched with one GET (a backtest reads
//! most of it anyway) and later reads of any range are served from disk.

use std::collections::HashMap;
use std::fmt;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    Attributes, CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use serde::Serialize;

/// What the cache did, for `/metrics`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct CacheCounts {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub bytes: u64,
    pub files: u64,
}

#[derive(Debug)]
struct Entry {
    size: u64,
    last_used: u64,
}

#[derive(Debug, Default)]
struct Index {
    entries: HashMap<String, Entry>,
    bytes: u64,
    clock: u64,
}

/// The cache directory and its LRU index.
#[derive(Debug)]
pub struct DiskCache {
    dir: PathBuf,
    max_bytes: u64,
    index: Mutex<Index>,
    /// One fill per file at a time, so concurrent readers of a cold file fetch it once.
    fills: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
}

impl DiskCache {
    /// Opens (creating) the cache directory and indexes what it already holds, oldest first.
    pub fn open(dir: impl Into<PathBuf>, max_bytes: u64) -> std::io::Result<Self> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir)?;
        let mut found = Vec::new();
        collect_files(&dir, &dir, &mut found)?;
        found.sort_by_key(|(_, _, modified)| *modified);
        let mut index = Index::default();
        for (key, size, _) in found {
            index.clock += 1;
            index.bytes += size;
            let last_used = index.clock;
            index.entries.insert(key, Entry { size, last_used });
        }
        let cache = Self {
            dir,
            max_bytes,
            index: Mutex::new(index),
            fills: Mutex::default(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        };
        cache.evict_over_budget();
        Ok(cache)
    }

    pub fn counts(&self) -> CacheCounts {
        let index = self.index.lock().expect("lock");
        CacheCounts {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            evictions: self.evictions.load(Ordering::Relaxed),
            bytes: index.bytes,
            files: index.entries.len() as u64,
        }
    }

    fn local_path(&self, key: &str) -> PathBuf {
        self.dir.join(key)
    }

    /// The cached file's size, marking it used; `None` on a miss.
    fn touch(&self, key: &str) -> Option<u64> {
        let mut index = self.index.lock().expect("lock");
        index.clock += 1;
        let clock = index.clock;
        let entry = index.entries.get_mut(key)?;
        entry.last_used = clock;
        Some(entry.size)
    }

    /// Stores a fetched file (atomically: temp file then rename) and evicts past the budget.
    fn insert(&self, key: &str, bytes: &[u8]) -> std::io::Result<()> {
        let path = self.local_path(key);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let tmp = self
            .dir
            .join(format!(".tmp-{}", uuid::Uuid::new_v4().simple()));
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, &path)?;
        {
            let mut index = self.index.lock().expect("lock");
            index.clock += 1;
            let last_used = index.clock;
            let size = bytes.len() as u64;
            if let Some(old) = index
                .entries
                .insert(key.to_string(), Entry { size, last_used })
            {
                index.bytes -= old.size;
            }
            index.bytes += size;
        }
        self.evict_over_budget();
        Ok(())
    }

    fn evict_over_budget(&self) {
        let mut index = self.index.lock().expect("lock");
        while index.bytes > self.max_bytes {
            let Some(oldest) = index
                .entries
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            let entry = index.entries.remove(&oldest).expect("present");
            index.bytes -= entry.size;
            // A reader holding the file open keeps reading it; on failure it is merely orphaned.
            let _ = std::fs::remove_file(self.local_path(&oldest));
            self.evictions.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn fill_lock(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut fills = self.fills.lock().expect("lock");
        Arc::clone(fills.entry(key.to_string()).or_default())
    }

    fn fill_done(&self, key: &str) {
        self.fills.lock().expect("lock").remove(key);
    }
}

fn collect_files(
    root: &FsPath,
    dir: &FsPath,
    out: &mut Vec<(String, u64, std::time::SystemTime)>,
) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let meta = entry.metadata()?;
        let name = entry.file_name();
        if meta.is_dir() {
            collect_files(root, &path, out)?;
        } else if name.to_string_lossy().starts_with(".tmp-") {
            let _ = std::fs::remove_file(&path); // a fill cut short by a crash
        } else if let Ok(rel) = path.strip_prefix(root) {
            let key = rel
                .to_string_lossy()
                .replace(std::path::MAIN_SEPARATOR, "/");
            out.push((key, meta.len(), meta.modified()?));
        }
    }
    Ok(())
}

/// Reads `ranges` of a local file in one blocking call.
fn read_ranges(path: PathBuf, ranges: Vec<Range<u64>>) -> std::io::Result<Vec<Bytes>> {
    let mut file = std::fs::File::open(path)?;
    ranges
        .into_iter()
        .map(|r| {
            file.seek(SeekFrom::Start(r.start))?;
            let mut buf = vec![0; (r.end - r.start) as usize];
            file.read_exact(&mut buf)?;
            Ok(Bytes::from(buf))
        })
        .collect()
}

/// A store whose bar files are read through a [`DiskCache`].
#[derive(Debug)]
pub struct CachingStore {
    inner: Arc<dyn ObjectStore>,
    cache: Arc<DiskCache>,
}

impl CachingStore {
    pub fn new(inner: Arc<dyn ObjectStore>, cache: Arc<DiskCache>) -> Self {
        Self { inner, cache }
    }

    fn cacheable(location: &Path, options: &GetOptions) -> bool {
        let p = location.as_ref();
        p.starts_with("bars/")
            && p.ends_with(".parquet")
            && options.if_match.is_none()
            && options.if_none_match.is_none()
            && options.if_modified_since.is_none()
            && options.if_unmodified_since.is_none()
            && options.version.is_none()
    }

    /// Makes sure the file is cached and returns its size.
    async fn ensure_cached(&self, location: &Path) -> object_store::Result<u64> {
        let key = location.as_ref();
        if let Some(size) = self.cache.touch(key) {
            self.cache.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(size);
        }
        let lock = self.cache.fill_lock(key);
        let _guard = lock.lock().await;
        if let Some(size) = self.cache.touch(key) {
            self.cache.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(size);
        }
        self.cache.misses.fetch_add(1, Ordering::Relaxed);
        let filled = self.fill(location).await;
        self.cache.fill_done(key);
        filled
    }

    /// Fetches the whole file with one GET into the cache; returns its size.
    async fn fill(&self, location: &Path) -> object_store::Result<u64> {
        let bytes = self.inner.get(location).await?.bytes().await?;
        let cache = Arc::clone(&self.cache);
        let key = location.as_ref().to_string();
        let size = bytes.len() as u64;
        tokio::task::spawn_blocking(move || cache.insert(&key, &bytes))
            .await
            .map_err(|e| generic(e.to_string()))?
            .map_err(|e| generic(format!("writing the disk cache: {e}")))?;
        Ok(size)
    }

    async fn read_cached(
        &self,
        location: &Path,
        ranges: Vec<Range<u64>>,
    ) -> object_store::Result<Vec<Bytes>> {
        let path = self.cache.local_path(location.as_ref());
        tokio::task::spawn_blocking(move || read_ranges(path, ranges))
            .await
            .map_err(|e| generic(e.to_string()))?
            .map_err(|e| generic(format!("reading the disk cache: {e}")))
    }
}

use object_store::ObjectStoreExt;

fn generic(message: String) -> object_store::Error {
    object_store::Error::Generic {
        store: "disk cache",
        source: message.into(),
    }
}

impl fmt::Display for CachingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DiskCached({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for CachingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        if !Self::cacheable(location, &options) {
            return self.inner.get_opts(location, options).await;
        }
        let size = self.ensure_cached(location).await?;
        let range = match &options.range {
            Some(r) => r.as_range(size).map_err(|e| generic(e.to_string()))?,
            None => 0..size,
        };
        let meta = ObjectMeta {
            location: location.clone(),
            last_modified: chrono::DateTime::UNIX_EPOCH,
            size,
            e_tag: None,
            version: None,
        };
        let bytes = if options.head {
            Bytes::new()
        } else {
            self.read_cached(location, vec![range.clone()])
                .await?
                .pop()
                .expect("one range")
        };
        Ok(GetResult {
            payload: GetResultPayload::Stream(Box::pin(futures::stream::once(async { Ok(bytes) }))),
            meta,
            range,
            attributes: Attributes::default(),
        })
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        if !Self::cacheable(location, &GetOptions::default()) {
            return self.inner.get_ranges(location, ranges).await;
        }
        let size = self.ensure_cached(location).await?;
        if let Some(r) = ranges.iter().find(|r| r.end > size || r.start > r.end) {
            return Err(generic(format!(
                "range {r:?} is outside {location} ({size} bytes)"
            )));
        }
        self.read_cached(location, ranges.to_vec()).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        // Deleted files are unreferenced; their cached copies age out of the LRU.
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    use crate::storage::counting::CountingStore;

    #[tokio::test]
    async fn second_read_is_local_and_lru_evicts_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let remote = CountingStore::new(Arc::new(InMemory::new()));
        let stats = remote.stats();
        let remote: Arc<dyn ObjectStore> = Arc::new(remote);
        let file = |n: u8| Path::from(format!("bars/timeframe=1d/symbol=A/year=2020/{n}.parquet"));
        for n in 0..3 {
            remote.put(&file(n), vec![n; 100].into()).await.unwrap();
        }
        let cache = Arc::new(DiskCache::open(dir.path(), 250).unwrap());
        let store = CachingStore::new(Arc::clone(&remote), Arc::clone(&cache));
        let before = stats.snapshot();
        assert_eq!(
            store.get_range(&file(0), 10..20).await.unwrap()[..],
            [0; 10]
        );
        assert_eq!(
            stats.snapshot().since(&before).get,
            1,
            "a miss fetches the file"
        );
        let got = store.get_ranges(&file(0), &[0..5, 95..100]).await.unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(stats.snapshot().since(&before).gets(), 1, "hits are local");
        store.get_range(&file(1), 0..1).await.unwrap();
        store.get_range(&file(0), 0..1).await.unwrap(); // file 0 is now the newest
        store.get_range(&file(2), 0..1).await.unwrap(); // 300 > 250: evicts file 1
        let c = cache.counts();
        assert_eq!((c.files, c.bytes, c.evictions), (2, 200, 1), "{c:?}");
        assert!(!dir.path().join(file(1).as_ref()).exists());
        assert!(dir.path().join(file(0).as_ref()).exists());
        // A restarted process finds the cached files.
        let reopened = DiskCache::open(dir.path(), 250).unwrap();
        assert_eq!(reopened.counts().files, 2);
        // A range past the end is an error, as from the remote store.
        assert!(store.get_range(&file(0), 150..160).await.is_err());
        assert!(store.get_ranges(&file(0), &[0..1, 150..160]).await.is_err());
        // Other objects pass through untouched.
        remote
            .put(&Path::from("_catalog/x.json"), "{}".into())
            .await
            .unwrap();
        store.get(&Path::from("_catalog/x.json")).await.unwrap();
        assert_eq!(cache.counts().files, 2);
    }
}
