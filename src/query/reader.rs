//! Parquet readers for DataFusion scans and range reads: every byte of a file with checksums is
//! checked before it is decoded, and cached footers always carry the page indexes.
//!
//! DataFusion reads a footer without its page indexes, caches that, and then loads the indexes
//! with a second request on every query without caching them: one GET per file per query that a
//! remote store bills and waits for. Asking for the indexes with the footer caches both, and
//! since our files record how long footer plus indexes are (`FileMeta::footer_bytes`), a cold
//! file costs one ranged GET before its data and a warm one none.
//!
//! A file with checksums (`FileMeta::crc32`, see `storage::checksum`) is read by
//! [`VerifiedReader`]: its tail is fetched and checked before the footer is parsed and cached,
//! and every range the decoder asks for is checked unit by unit. A mismatch is an error naming
//! the file ([`DamagedFile`]), never rows. Files written before checksums are read as before.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::ParquetFileReaderFactory;
use datafusion::datasource::physical_plan::parquet::{
    CachedParquetFileReaderFactory, CachedParquetMetaData,
};
use datafusion::execution::cache::cache_manager::{CachedFileMetadataEntry, FileMetadataCache};
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use futures::FutureExt;
use futures::future::BoxFuture;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::errors::ParquetError;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};

use crate::storage::{DamagedFile, Recorded, Units};

/// Creates a [`VerifiedReader`] for files that carry their [`Recorded`] checksums as an
/// extension, and the cached-footer reader for the others.
#[derive(Debug)]
pub(super) struct ReaderFactory {
    store: Arc<dyn ObjectStore>,
    metadata_cache: Arc<FileMetadataCache>,
    unverified: CachedParquetFileReaderFactory,
}

impl ReaderFactory {
    pub(super) fn new(store: Arc<dyn ObjectStore>, metadata_cache: Arc<FileMetadataCache>) -> Self {
        let unverified =
            CachedParquetFileReaderFactory::new(Arc::clone(&store), Arc::clone(&metadata_cache));
        Self {
            store,
            metadata_cache,
            unverified,
        }
    }
}

impl ParquetFileReaderFactory for ReaderFactory {
    fn create_reader(
        &self,
        partition_index: usize,
        file: PartitionedFile,
        metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> datafusion::error::Result<Box<dyn AsyncFileReader + Send>> {
        if let Some(recorded) = file
            .extension::<Arc<Recorded>>()
            .filter(|r| r.is_verified())
        {
            return Ok(Box::new(VerifiedReader {
                store: Arc::clone(&self.store),
                metadata_cache: Arc::clone(&self.metadata_cache),
                meta: file.object_meta.clone(),
                recorded: Arc::clone(recorded),
                footer: None,
            }));
        }
        let inner =
            self.unverified
                .create_reader(partition_index, file, metadata_size_hint, metrics)?;
        Ok(Box::new(IndexedReader(inner)))
    }
}

/// Reads a file without checksums, asking for the page indexes with the footer.
struct IndexedReader(Box<dyn AsyncFileReader + Send>);

impl AsyncFileReader for IndexedReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        self.0.get_bytes(range)
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        self.0.get_byte_ranges(ranges)
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        let options = options
            .cloned()
            .unwrap_or_default()
            .with_page_index_policy(PageIndexPolicy::Optional);
        async move { self.0.get_metadata(Some(&options)).await }.boxed()
    }
}

/// Reads a file with checksums: nothing reaches the decoder unchecked.
struct VerifiedReader {
    store: Arc<dyn ObjectStore>,
    metadata_cache: Arc<FileMetadataCache>,
    meta: ObjectMeta,
    recorded: Arc<Recorded>,
    /// The checked footer and the read units it defines, once loaded.
    footer: Option<(Arc<ParquetMetaData>, Arc<Units>)>,
}

fn damaged(e: DamagedFile) -> ParquetError {
    ParquetError::External(Box::new(e))
}

fn store_error(e: object_store::Error) -> ParquetError {
    ParquetError::External(Box::new(e))
}

impl VerifiedReader {
    fn damaged(&self, detail: String) -> ParquetError {
        damaged(DamagedFile {
            path: self.recorded.path.clone(),
            detail,
        })
    }

    /// A failed read: a file of another size than was written (replaced, truncated) is damage,
    /// anything else is the store's error. Asks the store only when a read failed.
    async fn read_failed(&self, e: object_store::Error) -> ParquetError {
        match self.store.head(&self.meta.location).await {
            Ok(head) if head.size != self.recorded.size => self.damaged(format!(
                "it holds {} bytes but {} were written",
                head.size, self.recorded.size
            )),
            _ => store_error(e),
        }
    }

    /// The footer (from the cache, else fetched and checked) and the file's read units.
    async fn footer(&mut self) -> parquet::errors::Result<(Arc<ParquetMetaData>, Arc<Units>)> {
        if let Some(footer) = &self.footer {
            return Ok(footer.clone());
        }
        let cached = self
            .metadata_cache
            .get(&self.meta.location)
            .filter(|entry| entry.is_valid_for(&self.meta))
            .and_then(|entry| {
                let parquet = entry
                    .file_metadata
                    .as_any()
                    .downcast_ref::<CachedParquetMetaData>()?;
                Some(Arc::clone(parquet.parquet_metadata()))
            });
        let metadata = match cached {
            Some(metadata) => metadata,
            None => {
                let start = self.recorded.tail_start().ok_or_else(|| {
                    damaged(DamagedFile {
                        path: self.recorded.path.clone(),
                        detail: "its recorded footer length does not fit the file".into(),
                    })
                })?;
                let tail = match self
                    .store
                    .get_range(&self.meta.location, start..self.recorded.size)
                    .await
                {
                    Ok(tail) => tail,
                    Err(e) => return Err(self.read_failed(e).await),
                };
                let metadata = Arc::new(self.recorded.parse_tail(&tail).map_err(damaged)?);
                self.metadata_cache.put(
                    &self.meta.location,
                    CachedFileMetadataEntry::new(
                        self.meta.clone(),
                        Arc::new(CachedParquetMetaData::new(Arc::clone(&metadata))),
                    ),
                );
                metadata
            }
        };
        let units = Arc::new(self.recorded.units(&metadata).map_err(damaged)?);
        self.footer = Some((Arc::clone(&metadata), Arc::clone(&units)));
        Ok((metadata, units))
    }

    /// Fetches `ranges` widened to whole units, checks them, and returns exactly `ranges`.
    async fn fetch(&mut self, ranges: Vec<Range<u64>>) -> parquet::errors::Result<Vec<Bytes>> {
        let (_, units) = self.footer().await?;
        let widened: Vec<Range<u64>> = ranges.iter().map(|r| units.covering(r)).collect();
        let fetched = match self.store.get_ranges(&self.meta.location, &widened).await {
            Ok(fetched) => fetched,
            Err(e) => return Err(self.read_failed(e).await),
        };
        ranges
            .iter()
            .zip(&widened)
            .zip(fetched)
            .map(|((want, got), bytes)| {
                if want.is_empty() {
                    return Ok(Bytes::new());
                }
                if bytes.len() as u64 != got.end - got.start {
                    return Err(self.damaged(format!(
                        "a read of bytes {}..{} returned {} bytes",
                        got.start,
                        got.end,
                        bytes.len()
                    )));
                }
                self.recorded
                    .verify(&units, got.start, &bytes)
                    .map_err(damaged)?;
                let from = (want.start - got.start) as usize;
                Ok(bytes.slice(from..from + (want.end - want.start) as usize))
            })
            .collect()
    }
}

impl AsyncFileReader for VerifiedReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            let mut got = self.fetch(vec![range]).await?;
            Ok(got.pop().expect("one range asked, one returned"))
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        self.fetch(ranges).boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move { Ok(self.footer().await?.0) }.boxed()
    }
}
