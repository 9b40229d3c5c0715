//! tickvault: a time-series storage engine for market data.
//!
//! OHLCV bars live as Parquet files partitioned per timeframe, symbol and year on an object store,
//! listed by an atomic catalog ([`catalog`]), and queried with SQL through DataFusion
//! ([`query`]). [`Store`] is the front door.
//!
//! # Layers
//!
//! Read the crate top-down from here. Each layer imports only from the layers listed before
//! it, never from one after it:
//!
//! 1. [`model`] (symbols, intervals, schemas, the rules a bar obeys; [`model::time`] parses and
//!    formats times), [`units`] (sizes and durations as configured), [`error`] (what kind of
//!    failure an error is; an error and its causes on one line), [`clock`] (the one source of
//!    the current time, injected everywhere).
//! 2. [`batch`] (a series' bars as Arrow columns), [`calendar`] (the sessions a symbol
//!    should have), [`format`](mod@format) (results as CSV, JSON, Arrow, Parquet or a table).
//! 3. [`storage`]: the object store, the path layout and the Parquet encoding.
//! 4. [`catalog`]: which files make up the table, changed by atomic commits; every commit is
//!    a table version that time travel reads ([`catalog::Catalog::snapshot_at`]). Then
//!    [`snapshots`]: versions pinned under a name.
//! 5. [`wal`], then [`live`]: acknowledged writes, durable and queryable before they reach
//!    Parquet.
//! 6. [`write`](mod@write), [`delete`], [`maintenance`]: changing the stored files through
//!    the catalog.
//! 7. [`query`]: SQL over the stored files and the live tier (DataFusion).
//! 8. [`actions`] (corporate actions as data), then [`adjust`] (adjusted reads from them).
//! 9. [`import`] (bar files) and [`ingest`] (HTTP write bodies): parsing input into validated
//!    batches; nothing is stored there.
//! 10. [`store`]: the front door that ties the layers before it together.
//! 11. [`sync`]: keeping a store in step with upstream providers, and [`sync::scheduler`],
//!     the background jobs (transfer, compaction, GC, backfill, live) for the server and a
//!     library user alike.
//! 12. [`config`]: one file, `TICKVAULT_*` variables and flags.
//! 13. [`server`] (the HTTP API) and [`cli`] (the `tickvault` command), side by side; nothing
//!     imports them.

pub mod actions;
pub mod adjust;
pub mod batch;
pub mod calendar;
pub mod catalog;
pub mod cli;
pub mod clock;
pub mod config;
pub mod delete;
pub mod error;
pub mod format;
pub mod import;
pub mod ingest;
pub mod live;
pub mod maintenance;
pub mod model;
pub mod query;
pub mod server;
pub mod snapshots;
pub mod storage;
pub mod store;
pub mod sync;
pub mod units;
pub mod wal;
pub mod write;

pub use store::{
    Error, ImportSummary, LoadRequest, LoadedBars, Result, Store, StoreOptions, TableVersion,
    TableView, TransferSummary,
};
