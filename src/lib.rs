//! tickvault: a time-series storage engine for market data.
//!
//! OHLCV bars live as Parquet files partitioned per interval, symbol and year on an object store,
//! listed by an atomic catalog ([`catalog`]), and queried with SQL through DataFusion
//! ([`query`]). [`Store`] is the front door.

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
pub mod storage;
pub mod store;
pub mod sync;
pub mod units;
pub mod wal;
pub mod write;

pub use store::{
    Error, ImportSummary, LoadRequest, LoadedBars, Result, Store, StoreOptions, TransferSummary,
};

/// An error and its causes on one line (HTTP clients hide the useful part in `source`).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}
