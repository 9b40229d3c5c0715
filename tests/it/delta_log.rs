//! The catalog as a Delta log: an old-format store (`_catalog/`) is read as it is by readers and
//! converted once, keeping every row and file, by the first writer that opens it.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use tickvault::catalog::{Commit, Seq, legacy};
use tickvault::{Store, StoreOptions};

use crate::common::{DAY, T2021, bars, contents, row};

async fn open(root: &std::path::Path, read_only: bool) -> Store {
    let options = StoreOptions {
        read_only,
        ..Default::default()
    };
    Store::open_with_options(root.to_str().unwrap(), &options)
        .await
        .unwrap()
}

/// Rewrites a store's catalog as the format before the Delta log wrote it: one old commit per
/// file, and one that removes a replaced file (its tombstone must survive the conversion).
async fn to_old_format(root: &std::path::Path) -> usize {
    let store = open(root, true).await;
    let snapshot = store.catalog().snapshot();
    let files: Vec<_> = snapshot.files().cloned().collect();
    let removed = snapshot.tombstones.clone();
    drop(store);
    let mut commits: Vec<Commit> = files
        .iter()
        .enumerate()
        .map(|(i, f)| Commit {
            seq: Seq(i as u64 + 1),
            committed_at: T2021 + i as i64,
            operation: "import".into(),
            add: vec![f.clone()],
            remove: vec![],
        })
        .collect();
    // A replaced file: added, then removed (GC has not deleted it yet).
    if let Some(t) = removed.first() {
        let mut gone = files[0].clone();
        gone.path = t.path.clone();
        commits.insert(
            0,
            Commit {
                seq: Seq(0),
                committed_at: T2021 - 2,
                operation: "import".into(),
                add: vec![gone],
                remove: vec![],
            },
        );
        commits.push(Commit {
            seq: Seq(0),
            committed_at: T2021 + 1000,
            operation: "compact".into(),
            add: vec![],
            remove: vec![t.path.clone()],
        });
    }
    for (i, c) in commits.iter_mut().enumerate() {
        c.seq = Seq(i as u64 + 1);
    }
    std::fs::remove_dir_all(root.join("bars/_delta_log")).unwrap();
    let os: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(root).unwrap());
    legacy::write_old_log(&os, &commits, Some(Seq(2))).await;
    files.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_format_store_is_read_as_it_is_and_converted_by_the_first_writer() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    {
        let store = open(root, false).await;
        let mut rows = Vec::new();
        for (i, sym) in ["^GSPC", "A/B", "BRK.B"].into_iter().enumerate() {
            for d in 0..5 {
                rows.push(row(sym, "1d", T2021 + d * DAY, (i * 10) as f64 + d as f64));
            }
        }
        store.write(&bars(&rows)).await.unwrap();
        // A second write replaces a file: its tombstone is what the old log must carry over.
        store
            .write(&bars(&[row("^GSPC", "1d", T2021, 99.0)]))
            .await
            .unwrap();
        store.compact().await.unwrap();
    }
    let before = contents(&open(root, true).await).await;
    assert_eq!(before.len(), 15);
    let files = to_old_format(root).await;
    assert!(!root.join("bars/_delta_log").exists());

    // A reader keeps reading the old log and converts nothing.
    let reader = open(root, true).await;
    assert!(!reader.catalog().is_delta());
    assert_eq!(contents(&reader).await, before);
    assert!(!root.join("bars/_delta_log").exists());

    // The first writer converts it into version 0, with every file and the tombstone.
    let writer = open(root, false).await;
    assert!(writer.catalog().is_delta());
    let snapshot = writer.catalog().snapshot();
    assert_eq!((snapshot.seq, snapshot.file_count()), (Seq(0), files));
    assert_eq!(snapshot.tombstones.len(), 1);
    assert_eq!(contents(&writer).await, before);
    assert!(writer.check().await.unwrap().is_clean());
    // Writes go on in the new log; the reader follows it.
    writer
        .write(&bars(&[row("NEW", "1d", T2021, 1.0)]))
        .await
        .unwrap();
    assert!(
        root.join("bars/_delta_log/00000000000000000001.json")
            .exists()
    );
    reader.catalog().refresh().await.unwrap();
    assert_eq!(contents(&reader).await.len(), 16);
}
