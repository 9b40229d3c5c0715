//! Time travel from the front door: a read-only view of one version of the table, and the
//! named snapshots that pin versions for reproducible backtests.
//!
//! A version is a catalog commit number. A view of it reads the files that version listed, as
//! they were committed: live rows (acknowledged writes not yet transferred to Parquet) are
//! never part of a version, whichever version it is.

use std::sync::Arc;

use arrow::array::RecordBatch;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::prelude::DataFrame;
use futures::TryStreamExt;

use super::{Error, LoadRequest, LoadedBars, Result, Store, load_columns, load_from};
use crate::catalog::{self, Snapshot, VersionError};
use crate::maintenance;
use crate::query::QueryEngine;
use crate::snapshots::{self, NamedSnapshot, SnapshotName};

/// Which version of the table a read names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum TableVersion {
    /// The latest commit, with the live tier laid over it.
    #[default]
    Latest,
    /// One commit, as it was committed.
    Version(u64),
    /// The version a named snapshot pins.
    Snapshot(String),
}

impl TableVersion {
    /// From a `version` and a `snapshot` option (`?version=`/`?snapshot=`, `--version`/
    /// `--snapshot`): at most one of them.
    pub fn from_options(version: Option<u64>, snapshot: Option<String>) -> Result<Self> {
        match (version, snapshot) {
            (Some(_), Some(_)) => Err(Error::InvalidInput(
                "give a version or a snapshot name, not both".into(),
            )),
            (Some(v), None) => Ok(TableVersion::Version(v)),
            (None, Some(name)) => Ok(TableVersion::Snapshot(name)),
            (None, None) => Ok(TableVersion::Latest),
        }
    }
}

/// One version of the table, read-only: SQL and loads over the files it listed, without the
/// live tier. The corporate actions and adjusted views (`bars_adjusted`, ...) are not part of
/// it; `latest` is empty.
pub struct TableView {
    snapshot: Arc<Snapshot>,
    engine: QueryEngine,
}

impl std::fmt::Debug for TableView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableView")
            .field("version", &self.version())
            .finish_non_exhaustive()
    }
}

impl TableView {
    /// The version this view reads.
    pub fn version(&self) -> u64 {
        self.snapshot.version()
    }

    /// The version's file list.
    pub fn snapshot(&self) -> &Arc<Snapshot> {
        &self.snapshot
    }

    /// The DataFusion session over this version.
    pub fn engine(&self) -> &QueryEngine {
        &self.engine
    }

    /// Plans read-only SQL over this version.
    pub async fn sql(&self, sql: &str) -> Result<DataFrame> {
        Ok(self.engine.sql(sql).await?)
    }

    /// Runs read-only SQL over this version and collects the result.
    pub async fn query(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        Ok(self.sql(sql).await?.collect().await?)
    }

    /// Streams bars of this version, ordered by (ts, symbol). Raw prices only: an adjusted
    /// read applies today's corporate actions, which are not part of a version.
    pub async fn load_bars(&self, req: &LoadRequest) -> Result<SendableRecordBatchStream> {
        Ok(self.load_bars_adjusted(req).await?.stream)
    }

    /// [`TableView::load_bars`] in the shape of [`Store::load_bars_adjusted`] (nothing applied).
    pub async fn load_bars_adjusted(&self, req: &LoadRequest) -> Result<LoadedBars> {
        let columns = load_columns(req)?;
        if !req.adjustment.is_none() {
            return Err(Error::InvalidInput(format!(
                "adjusted reads are of the latest version only; table version {} is read \
                 raw (adjust=none)",
                self.version()
            )));
        }
        load_from(&self.engine, req, columns, Default::default()).await
    }

    /// Loads bars of this version and collects them.
    pub async fn load_bars_collect(&self, req: &LoadRequest) -> Result<Vec<RecordBatch>> {
        Ok(self.load_bars(req).await?.try_collect().await?)
    }
}

impl Store {
    /// The latest table version (the last catalog commit this store has seen).
    pub fn table_version(&self) -> u64 {
        self.catalog.snapshot().version()
    }

    /// A read-only view of table version `version`, as committed (no live rows). A version
    /// past the latest is [`VersionError::Unknown`]; one whose log entries were cleaned up, or
    /// whose files GC deleted since later commits replaced them, is [`VersionError::Gone`]
    /// (a named snapshot keeps its version readable).
    pub async fn at(&self, version: u64) -> Result<TableView> {
        let snapshot = self.readable_version(version).await?;
        let engine = self.engine.at(Arc::clone(&snapshot)).await?;
        Ok(TableView { snapshot, engine })
    }

    /// A read-only view of the version the named snapshot pins.
    pub async fn at_snapshot(&self, name: &str) -> Result<TableView> {
        let pinned = self.snapshot(name).await?;
        self.at(pinned.version).await
    }

    /// The view a read names; `None` for the latest version (read through the store itself,
    /// live tier included).
    pub async fn view(&self, version: &TableVersion) -> Result<Option<TableView>> {
        match version {
            TableVersion::Latest => Ok(None),
            TableVersion::Version(v) => self.at(*v).await.map(Some),
            TableVersion::Snapshot(name) => self.at_snapshot(name).await.map(Some),
        }
    }

    /// Version `version`'s file list, if every file of it still exists.
    async fn readable_version(&self, version: u64) -> Result<Arc<Snapshot>> {
        let snapshot = self.catalog.snapshot_at(version).await?;
        let missing = maintenance::missing_files(&self.catalog, &snapshot).await?;
        if let Some(first) = missing.first() {
            return Err(catalog::Error::from(VersionError::Gone {
                version,
                reason: format!(
                    "GC deleted {} of its files ({first}{}) after later commits replaced them; \
                     a named snapshot keeps a version's files",
                    missing.len(),
                    if missing.len() > 1 { ", ..." } else { "" }
                ),
            })
            .into());
        }
        Ok(snapshot)
    }

    /// Pins a table version (the latest when `None`) under `name`, so GC keeps every file it
    /// needs for as long as the snapshot exists. A name already taken is
    /// [`snapshots::Error::Exists`]; the existing snapshot is left as it was.
    pub async fn create_snapshot(&self, name: &str, version: Option<u64>) -> Result<NamedSnapshot> {
        let name = SnapshotName::new(name)?;
        if self.is_read_only() {
            return Err(catalog::Error::ReadOnly(format!("creating snapshot {name}")).into());
        }
        let version = match version {
            Some(v) => v,
            None => self.catalog.refresh().await?.version(),
        };
        self.readable_version(version).await?;
        let created = self.clock.now_micros();
        let pinned = snapshots::create(&self.object_store, &name, version, created).await?;
        // A GC that listed the snapshots before this one existed may have deleted files of an
        // old version since they were checked: check again now that GC sees the pin.
        if let Err(e) = self.readable_version(version).await {
            let _ = snapshots::delete(&self.object_store, &name).await;
            return Err(e);
        }
        Ok(pinned)
    }

    /// Every named snapshot, by name.
    pub async fn snapshots(&self) -> Result<Vec<NamedSnapshot>> {
        Ok(snapshots::list(&self.object_store).await?)
    }

    /// The named snapshot `name`.
    pub async fn snapshot(&self, name: &str) -> Result<NamedSnapshot> {
        let name = SnapshotName::new(name)?;
        Ok(snapshots::get(&self.object_store, &name).await?)
    }

    /// Deletes the named snapshot `name` (the table is not changed; GC may then delete files
    /// only its version needed). Returns what it pinned.
    pub async fn delete_snapshot(&self, name: &str) -> Result<NamedSnapshot> {
        let name = SnapshotName::new(name)?;
        if self.is_read_only() {
            return Err(catalog::Error::ReadOnly(format!("deleting snapshot {name}")).into());
        }
        Ok(snapshots::delete(&self.object_store, &name).await?)
    }
}
