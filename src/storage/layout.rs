//! The path layout of the historical store:
//! `bars/timeframe=<t>/symbol=<encoded>/year=<y>/<unique>.parquet`.
//!
//! Stores written before the `interval` column was renamed `timeframe` hold files under
//! `bars/interval=<t>/...`. Their catalog records each file's path as written, and reads go by
//! that path, so those files keep their names; [`ParquetFilePath::parse`] accepts both keys.
//! New files are always written under `timeframe=`.
//!
//! Hive-style keys so DuckDB, Spark, polars and DataFusion listing tables read the tree. Symbols
//! are percent-encoded outside `[A-Za-z0-9._-]`, which is reversible and path-safe on every
//! object store and file system (`A/B` becomes `A%2FB`; `..` stays inside `symbol=..`).

use std::fmt;

use object_store::path::Path;

use crate::model::{Interval, Symbol};

pub const BARS_PREFIX: &str = "bars";
/// The partition key of the bar size in new paths.
pub(super) const TIMEFRAME_KEY: &str = "timeframe";
/// The same key in paths written before the rename, still read.
pub(super) const LEGACY_TIMEFRAME_KEY: &str = "interval";

/// One partition of the table: a series' bars in one UTC year.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKey {
    pub interval: Interval,
    pub symbol: Symbol,
    pub year: i32,
}

impl PartitionKey {
    /// The directory that holds this partition's files.
    pub fn dir(&self) -> String {
        format!(
            "{BARS_PREFIX}/{TIMEFRAME_KEY}={}/symbol={}/year={}",
            self.interval,
            encode_symbol(self.symbol.as_str()),
            self.year
        )
    }
}

impl fmt::Display for PartitionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.symbol, self.interval, self.year)
    }
}

/// The path of one Parquet file of bars, relative to the store root.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ParquetFilePath {
    pub partition: PartitionKey,
    /// Unique within the partition (a UUID for files we write).
    pub name: String,
}

impl ParquetFilePath {
    pub fn new_unique(partition: PartitionKey) -> Self {
        let name = uuid::Uuid::new_v4().simple().to_string();
        Self { partition, name }
    }

    pub fn to_path(&self) -> Path {
        Path::parse(self.to_string()).expect("encoded paths are valid object paths")
    }

    /// Parses a path written by [`ParquetFilePath::to_path`], or by an older version under
    /// `interval=` (its partition is the same; printing it gives the current layout, so a reader
    /// keeps the path the catalog recorded); `None` for anything else.
    pub fn parse(path: &str) -> Option<Self> {
        let rest = path.strip_prefix(BARS_PREFIX)?.strip_prefix('/')?;
        let mut parts = rest.split('/');
        let (key, value) = parts.next()?.split_once('=')?;
        if key != TIMEFRAME_KEY && key != LEGACY_TIMEFRAME_KEY {
            return None;
        }
        let interval = value.parse().ok()?;
        let symbol = decode_symbol(parts.next()?.strip_prefix("symbol=")?)?;
        let year = parts.next()?.strip_prefix("year=")?.parse().ok()?;
        let name = parts.next()?.strip_suffix(".parquet")?.to_string();
        if parts.next().is_some() || name.is_empty() {
            return None;
        }
        let symbol = Symbol::stored(&symbol).ok()?;
        Some(Self {
            partition: PartitionKey {
                interval,
                symbol,
                year,
            },
            name,
        })
    }
}

impl fmt::Display for ParquetFilePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}.parquet", self.partition.dir(), self.name)
    }
}

/// The object path of a path string from the catalog. Catalog paths are already encoded, so
/// they are taken as they are (`Path::from` would percent-encode the `%` of `%2F` again).
pub fn object_path(path: &str) -> Path {
    Path::parse(path).unwrap_or_else(|_| Path::from(path))
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

/// Percent-encodes every byte outside `[A-Za-z0-9._-]` (upper-case hex).
pub fn encode_symbol(symbol: &str) -> String {
    let mut out = String::with_capacity(symbol.len());
    for &b in symbol.as_bytes() {
        if is_unreserved(b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Inverse of [`encode_symbol`]; `None` if the text is not a valid encoding.
pub fn decode_symbol(encoded: &str) -> Option<String> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = encoded.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn awkward_symbols_round_trip() {
        for s in [
            "AAPL", "BRK.B", "BTC-USD", "^GSPC", "EURUSD=X", "ES=F", "A/B", "..", ".", "a b",
            "%41", "日経",
        ] {
            let key = PartitionKey {
                interval: Interval::D1,
                symbol: Symbol::new(s).unwrap(),
                year: 2024,
            };
            let path = ParquetFilePath::new_unique(key);
            let text = path.to_path().to_string();
            assert_eq!(ParquetFilePath::parse(&text).as_ref(), Some(&path), "{s}");
            assert!(text.starts_with("bars/timeframe=1d/symbol="), "{text}");
            let segment = text.split('/').nth(2).unwrap();
            assert!(!segment.contains(['/', '\\', ' ']), "{segment}");
        }
        assert_eq!(encode_symbol("^GSPC"), "%5EGSPC");
        assert_eq!(encode_symbol("A/B"), "A%2FB");
    }

    #[test]
    fn reads_paths_written_before_the_rename() {
        let old = ParquetFilePath::parse("bars/interval=1m/symbol=%5EGSPC/year=2021/ab12.parquet")
            .unwrap();
        let new = ParquetFilePath::parse("bars/timeframe=1m/symbol=%5EGSPC/year=2021/ab12.parquet")
            .unwrap();
        assert_eq!(old, new);
        assert_eq!(old.partition.interval, Interval::M1);
        assert_eq!(old.partition.symbol.as_str(), "^GSPC");
        assert_eq!(
            old.to_string(),
            "bars/timeframe=1m/symbol=%5EGSPC/year=2021/ab12.parquet"
        );
    }

    #[test]
    fn rejects_foreign_paths() {
        for p in [
            "bars/interval=1d/symbol=A/year=2024",
            "bars/interval=2d/symbol=A/year=2024/x.parquet",
            "bars/timeframe=2d/symbol=A/year=2024/x.parquet",
            "bars/interval=1d/symbol=%ZZ/year=2024/x.parquet",
            "bars/timeframe=1d/symbol=%ZZ/year=2024/x.parquet",
            "bars/frame=1d/symbol=A/year=2024/x.parquet",
            "bars/1d/symbol=A/year=2024/x.parquet",
            "other/interval=1d/symbol=A/year=2024/x.parquet",
            "other/timeframe=1d/symbol=A/year=2024/x.parquet",
        ] {
            assert_eq!(ParquetFilePath::parse(p), None, "{p}");
        }
    }

    proptest! {
        #[test]
        fn encoding_round_trips(s in "\\PC{1,32}") {
            let enc = encode_symbol(&s);
            prop_assert!(enc.bytes().all(|b| is_unreserved(b) || b == b'%'));
            prop_assert_eq!(decode_symbol(&enc), Some(s));
        }
    }
}
