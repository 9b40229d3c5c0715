//! Puts a file in one request, or as a multipart upload when it is large, so a big file is
//! sent in parallel parts and a failed part is retried alone.

use std::sync::Arc;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

/// Files above this go up in parts (S3's smallest part is 5 MiB).
pub const MULTIPART_THRESHOLD: usize = 16 << 20;
const PART_SIZE: usize = 8 << 20;
/// Parts in flight at once per file.
const PARTS_IN_FLIGHT: usize = 4;

pub async fn put_file(
    store: &Arc<dyn ObjectStore>,
    path: &Path,
    bytes: Bytes,
) -> object_store::Result<()> {
    if bytes.len() <= MULTIPART_THRESHOLD {
        store.put(path, PutPayload::from(bytes)).await?;
        return Ok(());
    }
    let upload = store.put_multipart(path).await?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
    for part in bytes.chunks(PART_SIZE) {
        writer.wait_for_capacity(PARTS_IN_FLIGHT).await?;
        writer.write(part);
    }
    writer.finish().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::CountingStore;
    use object_store::memory::InMemory;

    #[tokio::test]
    async fn large_files_go_in_parts_and_arrive_whole() {
        let counting = CountingStore::new(Arc::new(InMemory::new()));
        let stats = counting.stats();
        let store: Arc<dyn ObjectStore> = Arc::new(counting);
        let big: Bytes = (0..MULTIPART_THRESHOLD + PART_SIZE + 7)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<_>>()
            .into();
        let path = Path::from("bars/big.parquet");
        put_file(&store, &path, big.clone()).await.unwrap();
        assert_eq!(
            stats.snapshot().put,
            4,
            "three 8 MiB parts and a 7-byte tail"
        );
        assert_eq!(store.get(&path).await.unwrap().bytes().await.unwrap(), big);
        put_file(&store, &Path::from("small"), Bytes::from_static(b"x"))
            .await
            .unwrap();
        assert_eq!(stats.snapshot().put, 5);
    }
}
