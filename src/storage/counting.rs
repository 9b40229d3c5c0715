//! Counts the requests a store makes, by kind, and the bytes they move: what a remote store
//! bills and what makes it slow.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, UploadPart,
};
use serde::Serialize;

/// The kinds of request counted. A LIST is one listing (S3 pages it by 1,000 keys); a DELETE
/// is one object; a multipart upload counts each part as a PUT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    Get,
    RangedGet,
    Head,
    Put,
    List,
    Delete,
    Copy,
}

impl RequestKind {
    pub const ALL: [RequestKind; 7] = [
        RequestKind::Get,
        RequestKind::RangedGet,
        RequestKind::Head,
        RequestKind::Put,
        RequestKind::List,
        RequestKind::Delete,
        RequestKind::Copy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Get => "get",
            RequestKind::RangedGet => "ranged_get",
            RequestKind::Head => "head",
            RequestKind::Put => "put",
            RequestKind::List => "list",
            RequestKind::Delete => "delete",
            RequestKind::Copy => "copy",
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    requests: [AtomicU64; 7],
    bytes_read: AtomicU64,
    bytes_written: AtomicU64,
}

/// A point-in-time copy of the counters; subtract two to see what an operation cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct RequestCounts {
    pub get: u64,
    pub ranged_get: u64,
    pub head: u64,
    pub put: u64,
    pub list: u64,
    pub delete: u64,
    pub copy: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
}

impl RequestCounts {
    pub fn get(&self, kind: RequestKind) -> u64 {
        match kind {
            RequestKind::Get => self.get,
            RequestKind::RangedGet => self.ranged_get,
            RequestKind::Head => self.head,
            RequestKind::Put => self.put,
            RequestKind::List => self.list,
            RequestKind::Delete => self.delete,
            RequestKind::Copy => self.copy,
        }
    }

    /// Every GET, whole or ranged.
    pub fn gets(&self) -> u64 {
        self.get + self.ranged_get
    }

    pub fn total(&self) -> u64 {
        RequestKind::ALL.iter().map(|k| self.get(*k)).sum()
    }

    /// What happened between `earlier` and `self`.
    pub fn since(&self, earlier: &RequestCounts) -> RequestCounts {
        RequestCounts {
            get: self.get - earlier.get,
            ranged_get: self.ranged_get - earlier.ranged_get,
            head: self.head - earlier.head,
            put: self.put - earlier.put,
            list: self.list - earlier.list,
            delete: self.delete - earlier.delete,
            copy: self.copy - earlier.copy,
            bytes_read: self.bytes_read - earlier.bytes_read,
            bytes_written: self.bytes_written - earlier.bytes_written,
        }
    }
}

impl fmt::Display for RequestCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for kind in RequestKind::ALL {
            write!(f, "{}={} ", kind.as_str(), self.get(kind))?;
        }
        write!(
            f,
            "bytes_read={} bytes_written={}",
            self.bytes_read, self.bytes_written
        )
    }
}

/// A handle on a [`CountingStore`]'s counters that outlives the store's type erasure.
#[derive(Debug, Clone, Default)]
pub struct RequestStats(Arc<Counters>);

impl RequestStats {
    pub fn snapshot(&self) -> RequestCounts {
        let c = &self.0;
        let n = |k: RequestKind| c.requests[k as usize].load(Ordering::Relaxed);
        RequestCounts {
            get: n(RequestKind::Get),
            ranged_get: n(RequestKind::RangedGet),
            head: n(RequestKind::Head),
            put: n(RequestKind::Put),
            list: n(RequestKind::List),
            delete: n(RequestKind::Delete),
            copy: n(RequestKind::Copy),
            bytes_read: c.bytes_read.load(Ordering::Relaxed),
            bytes_written: c.bytes_written.load(Ordering::Relaxed),
        }
    }

    fn count(&self, kind: RequestKind) {
        self.0.requests[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    fn read(&self, bytes: u64) {
        self.0.bytes_read.fetch_add(bytes, Ordering::Relaxed);
    }

    fn written(&self, bytes: u64) {
        self.0.bytes_written.fetch_add(bytes, Ordering::Relaxed);
    }
}

/// Wraps a store and counts what passes through. `get_ranges` is left to the trait's default,
/// which merges nearby ranges and issues one ranged GET per merged range through `get_opts`,
/// so what is counted is what an S3 client sends.
#[derive(Debug)]
pub struct CountingStore {
    inner: Arc<dyn ObjectStore>,
    stats: RequestStats,
}

impl CountingStore {
    pub fn new(inner: Arc<dyn ObjectStore>) -> Self {
        Self {
            inner,
            stats: RequestStats::default(),
        }
    }

    pub fn stats(&self) -> RequestStats {
        self.stats.clone()
    }
}

impl fmt::Display for CountingStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Counting({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for CountingStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.stats.count(RequestKind::Put);
        self.stats.written(payload.content_length() as u64);
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        let upload = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(CountingUpload {
            inner: upload,
            stats: self.stats.clone(),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let kind = if options.head {
            RequestKind::Head
        } else if options.range.is_some() {
            RequestKind::RangedGet
        } else {
            RequestKind::Get
        };
        self.stats.count(kind);
        tracing::trace!(?kind, %location, range = ?options.range, "object store GET");
        let result = self.inner.get_opts(location, options).await?;
        if kind != RequestKind::Head {
            self.stats.read(result.range.end - result.range.start);
        }
        Ok(result)
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let stats = self.stats.clone();
        let counted = locations
            .inspect(move |p| {
                if p.is_ok() {
                    stats.count(RequestKind::Delete);
                }
            })
            .boxed();
        self.inner.delete_stream(counted)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.stats.count(RequestKind::List);
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.stats.count(RequestKind::List);
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.stats.count(RequestKind::List);
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.stats.count(RequestKind::Copy);
        self.inner.copy_opts(from, to, options).await
    }
}

#[derive(Debug)]
struct CountingUpload {
    inner: Box<dyn MultipartUpload>,
    stats: RequestStats,
}

#[async_trait]
impl MultipartUpload for CountingUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.stats.count(RequestKind::Put);
        self.stats.written(data.content_length() as u64);
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        self.inner.complete().await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.inner.abort().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn counts_each_kind_and_the_bytes() {
        let store = CountingStore::new(Arc::new(InMemory::new()));
        let stats = store.stats();
        let p = Path::from("a/b.bin");
        store.put(&p, vec![7u8; 1000].into()).await.unwrap();
        store.get(&p).await.unwrap().bytes().await.unwrap();
        store.get_range(&p, 10..20).await.unwrap();
        // Two close ranges are one request; a far one is another.
        store.get_ranges(&p, &[0..10, 20..30]).await.unwrap();
        store.head(&p).await.unwrap();
        store.list_with_delimiter(None).await.unwrap();
        store.delete(&p).await.unwrap();
        let c = stats.snapshot();
        assert_eq!(
            (c.put, c.get, c.ranged_get, c.head, c.list, c.delete),
            (1, 1, 2, 1, 1, 1),
            "{c}"
        );
        assert_eq!(c.bytes_written, 1000);
        assert_eq!(c.bytes_read, 1000 + 10 + 30);
    }
}
