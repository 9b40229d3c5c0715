//! Encoding bar files: sorted by ts, zstd, statistics with a page index, no dictionary for the
//! float columns, one row group per calendar month for intraday bars (so a day's query reads
//! one row group), and decoding them back for merges.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use bytes::Bytes;
use chrono::{DateTime, Datelike};
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};
use parquet::file::properties::{EnabledStatistics, WriterProperties};

use super::{Error, Result};
use crate::batch::ts_column;
use crate::model::{FILE_SCHEMA, Interval};

/// An encoded Parquet file and the facts the catalog records about it.
#[derive(Debug, Clone)]
pub struct EncodedFile {
    pub bytes: Bytes,
    pub rows: u64,
    pub min_ts: i64,
    pub max_ts: i64,
    /// The file's tail a reader needs before any data: page indexes, footer and the 8-byte
    /// trailer, so one ranged GET fetches them all.
    pub footer_bytes: u64,
}

fn writer_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::ZSTD(
            ZstdLevel::try_new(3).expect("valid level"),
        ))
        // Prices rarely repeat: dictionaries cost time and bytes for nothing.
        .set_dictionary_enabled(false)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_sorting_columns(Some(vec![SortingColumn {
            column_idx: 0,
            descending: false,
            nulls_first: false,
        }]))
        .set_max_row_group_row_count(Some(1 << 20))
        .build()
}

/// Month index (year * 12 + month) of a timestamp: row groups break where it changes.
fn month_of(ts_us: i64) -> i32 {
    DateTime::from_timestamp_micros(ts_us)
        .map(|t| t.year() * 12 + t.month0() as i32)
        .unwrap_or(0)
}

/// Encodes a non-empty batch that is sorted by ts with unique timestamps.
pub fn encode_bars(sorted: &RecordBatch, interval: Interval) -> Result<EncodedFile> {
    let ts = ts_column(sorted).values();
    assert!(!ts.is_empty(), "encode_bars needs at least one row");
    let mut writer =
        ArrowWriter::try_new(Vec::new(), FILE_SCHEMA.clone(), Some(writer_properties()))?;
    if interval.is_intraday() {
        let mut start = 0;
        while start < ts.len() {
            let month = month_of(ts[start]);
            let end = start + ts[start..].partition_point(|&t| month_of(t) == month);
            writer.write(&sorted.slice(start, end - start))?;
            writer.flush()?;
            start = end;
        }
    } else {
        writer.write(sorted)?;
    }
    let metadata = writer.finish()?;
    let bytes = Bytes::from(std::mem::take(writer.inner_mut()));
    let n = bytes.len() as u64;
    let footer_len = u32::from_le_bytes(
        bytes[n as usize - 8..n as usize - 4]
            .try_into()
            .expect("4 bytes"),
    );
    // The page indexes sit just before the footer: a reader that fetches from the first of
    // them gets footer and indexes in one request (one round trip less on S3).
    let index_start = metadata
        .row_groups()
        .iter()
        .flat_map(|rg| rg.columns())
        .flat_map(|c| [c.column_index_offset(), c.offset_index_offset()])
        .flatten()
        .min();
    let tail = index_start.map_or(footer_len as u64 + 8, |start| n - start as u64);
    Ok(EncodedFile {
        rows: ts.len() as u64,
        min_ts: ts[0],
        max_ts: ts[ts.len() - 1],
        footer_bytes: tail,
        bytes,
    })
}

/// Reads a whole bar file into one batch in the file schema: one GET, decoded in memory (files
/// are a partition-year, a few MB at most).
pub async fn read_bars(store: &Arc<dyn ObjectStore>, path: &str) -> Result<RecordBatch> {
    let bytes = store.get(&super::object_path(path)).await?.bytes().await?;
    let path = path.to_string();
    tokio::task::spawn_blocking(move || decode_bars(&path, bytes))
        .await
        .expect("decode task does not panic")
}

fn decode_bars(path: &str, bytes: Bytes) -> Result<RecordBatch> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes)?;
    if builder.schema().fields() != FILE_SCHEMA.fields() {
        return Err(Error::BadFileSchema {
            path: path.to_string(),
            reason: format!("found {:?}", builder.schema()),
        });
    }
    let batches = builder
        .with_batch_size(64 * 1024)
        .build()?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(concat_batches(&FILE_SCHEMA, &batches)?)
}

/// Reads a file's footer with one ranged GET of its last `hint` bytes (more if needed).
pub async fn read_footer(
    store: &Arc<dyn ObjectStore>,
    path: &str,
    file_size: u64,
    hint: u64,
) -> Result<ParquetMetaData> {
    let path = super::object_path(path);
    let mut want = hint.clamp(8, file_size);
    loop {
        let tail = store.get_range(&path, file_size - want..file_size).await?;
        let mut reader = ParquetMetaDataReader::new();
        match reader.try_parse_sized(&tail, file_size) {
            Ok(()) => return Ok(reader.finish()?),
            Err(parquet::errors::ParquetError::NeedMoreData(n))
                if (n as u64) <= file_size && n as u64 > want =>
            {
                want = n as u64;
            }
            Err(e) => return Err(e.into()),
        }
    }
}
