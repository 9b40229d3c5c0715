//! Where bytes live: the store URL, the object store behind it, the layout of paths in it and
//! the Parquet encoding of bar files.

mod checksum;
mod counting;
mod disk_cache;
mod json;
mod layout;
mod parquet_io;
mod preflight;
mod s3;
mod upload;
mod url;

pub use checksum::{DamagedFile, Recorded, Units, find_damage};
pub use counting::{CountingStore, RequestCounts, RequestKind, RequestStats};
pub use disk_cache::{CacheCounts, CachingStore, DiskCache};
pub use json::{JsonError, create_object, get_json};
pub use layout::{
    BARS_PREFIX as BARS_DIR, ParquetFilePath, PartitionKey, decode_symbol, encode_symbol,
    object_path,
};
pub use parquet_io::{EncodedFile, encode_bars, read_bars, read_footer};
pub use preflight::{PreflightError, check_conditional_writes, check_reachable};
pub use s3::S3Config;
pub use upload::{MULTIPART_THRESHOLD, put_file};
pub use url::{OpenedStore, StoreSettings, StoreUrl, open_object_store};

use crate::error::ErrorKind;

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid store URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot create the store directory {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("object store: {0}")]
    ObjectStore(#[from] object_store::Error),
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("file {path} does not have the bars file schema: {reason}")]
    BadFileSchema { path: String, reason: String },
    #[error(transparent)]
    Damaged(#[from] DamagedFile),
    /// A task decoding or checking a file panicked or was cancelled.
    #[error("decoding a bar file: {0}")]
    Task(#[from] tokio::task::JoinError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidUrl { .. } => ErrorKind::InvalidInput,
            Error::Damaged(_) => ErrorKind::Damaged,
            Error::CreateDir { .. }
            | Error::ObjectStore(_)
            | Error::Parquet(_)
            | Error::Arrow(_)
            | Error::BadFileSchema { .. }
            | Error::Task(_) => ErrorKind::Internal,
        }
    }
}
