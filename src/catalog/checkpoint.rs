//! Delta checkpoints: the table at one version as a classic single-file Parquet checkpoint
//! (`_delta_log/<version>.checkpoint.parquet`, one action a row in the struct columns `txn`,
//! `add`, `remove`, `metaData`, `protocol` of PROTOCOL.md), built from and read back into the
//! same JSON actions the commits hold, through arrow's JSON codec.

use std::sync::{Arc, LazyLock};

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::delta::Action;

fn string() -> Field {
    Field::new("s", DataType::Utf8, true)
}

fn named(name: &str, ty: DataType) -> Field {
    Field::new(name, ty, true)
}

/// `map<string,string>` laid out as Spark writes it (`key_value` of `key`, `value`).
fn string_map(name: &str) -> Field {
    let entries = Field::new(
        "key_value",
        DataType::Struct(Fields::from(vec![
            Field::new("key", DataType::Utf8, false),
            Field::new("value", DataType::Utf8, true),
        ])),
        false,
    );
    named(name, DataType::Map(Arc::new(entries), false))
}

fn string_list(name: &str) -> Field {
    named(
        name,
        DataType::List(Arc::new(string().with_name("element"))),
    )
}

fn strukt(name: &str, fields: Vec<Field>) -> Field {
    named(name, DataType::Struct(Fields::from(fields)))
}

/// The checkpoint schema (PROTOCOL.md, "Checkpoint Schema"), every column nullable.
pub(crate) static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let utf8 = |n: &str| named(n, DataType::Utf8);
    let long = |n: &str| named(n, DataType::Int64);
    let int = |n: &str| named(n, DataType::Int32);
    let boolean = |n: &str| named(n, DataType::Boolean);
    Arc::new(Schema::new(vec![
        strukt(
            "txn",
            vec![utf8("appId"), long("version"), long("lastUpdated")],
        ),
        strukt(
            "add",
            vec![
                utf8("path"),
                string_map("partitionValues"),
                long("size"),
                long("modificationTime"),
                boolean("dataChange"),
                utf8("stats"),
                string_map("tags"),
            ],
        ),
        strukt(
            "remove",
            vec![
                utf8("path"),
                long("deletionTimestamp"),
                boolean("dataChange"),
                boolean("extendedFileMetadata"),
                string_map("partitionValues"),
                long("size"),
                string_map("tags"),
            ],
        ),
        strukt(
            "metaData",
            vec![
                utf8("id"),
                utf8("name"),
                utf8("description"),
                strukt("format", vec![utf8("provider"), string_map("options")]),
                utf8("schemaString"),
                string_list("partitionColumns"),
                string_map("configuration"),
                long("createdTime"),
            ],
        ),
        strukt(
            "protocol",
            vec![
                int("minReaderVersion"),
                int("minWriterVersion"),
                string_list("readerFeatures"),
                string_list("writerFeatures"),
            ],
        ),
    ]))
});

#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    #[error("encoding the checkpoint: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("the checkpoint's Parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("a checkpoint row is not an action tickvault understands: {0}")]
    Action(String),
}

/// The Parquet bytes of a checkpoint holding `actions` (no `commitInfo`: checkpoints have none).
pub(crate) fn encode(actions: &[Action]) -> Result<Vec<u8>, Error> {
    let mut lines = Vec::new();
    for a in actions
        .iter()
        .filter(|a| !matches!(a, Action::CommitInfo(_)))
    {
        serde_json::to_writer(&mut lines, a).expect("actions serialize");
        lines.push(b'\n');
    }
    let mut decoder = arrow::json::ReaderBuilder::new(Arc::clone(&SCHEMA))
        .with_batch_size(8192)
        .build_decoder()?;
    let mut batches: Vec<RecordBatch> = Vec::new();
    let mut rest: &[u8] = &lines;
    while !rest.is_empty() {
        let used = decoder.decode(rest)?;
        rest = &rest[used..];
        if let Some(batch) = decoder.flush()? {
            batches.push(batch);
        }
    }
    if let Some(batch) = decoder.flush()? {
        batches.push(batch);
    }
    let mut out = Vec::new();
    // zstd: a checkpoint of 100,000 files is a tenth of its plain size, and every Delta reader
    // decodes it.
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut writer = ArrowWriter::try_new(&mut out, Arc::clone(&SCHEMA), Some(props))?;
    for b in &batches {
        writer.write(b)?;
    }
    writer.close()?;
    Ok(out)
}

/// The actions of a checkpoint file (any writer's: unknown columns are ignored).
pub(crate) fn decode(bytes: Bytes) -> Result<Vec<Action>, Error> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)?.build()?;
    let mut actions = Vec::new();
    for batch in reader {
        let batch = batch?;
        let mut buf = Vec::new();
        let mut writer = arrow::json::LineDelimitedWriter::new(&mut buf);
        writer.write(&batch)?;
        writer.finish()?;
        drop(writer);
        for line in buf.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let value: serde_json::Value =
                serde_json::from_slice(line).map_err(|e| Error::Action(e.to_string()))?;
            // Each row holds one action: the one non-null column.
            let Some(object) = value.as_object() else {
                return Err(Error::Action("a row that is not an object".into()));
            };
            let (key, inner) = match object.iter().find(|(_, v)| !v.is_null()) {
                Some(kv) => kv,
                None => continue,
            };
            let single = serde_json::json!({ key: inner });
            let action: Action =
                serde_json::from_value(single).map_err(|e| Error::Action(format!("{key}: {e}")))?;
            actions.push(action);
        }
    }
    Ok(actions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::delta::{Add, Metadata, Protocol, Remove};
    use crate::catalog::snapshot::FileMeta;
    use crate::model::{Interval, Symbol};

    #[test]
    fn actions_round_trip_through_parquet() {
        let f = FileMeta {
            path: "bars/timeframe=1d/symbol=%5EGSPC/year=2024/a.parquet".into(),
            symbol: Symbol::new("^GSPC").unwrap(),
            interval: Interval::D1,
            year: 2024,
            rows: 7,
            bytes: 900,
            min_ts: 1,
            max_ts: 2,
            footer_bytes: 100,
            crc32: vec![9, 8],
        };
        let actions = vec![
            Action::Protocol(Protocol::tickvault()),
            Action::MetaData(Metadata::bars(5, std::time::Duration::from_secs(3600))),
            Action::Add(Add::from_file(&f, 3, true)),
            Action::Remove(Remove::of(
                "bars/timeframe=1d/symbol=A/year=2024/b.parquet",
                None,
                7_001,
                false,
            )),
        ];
        let bytes = encode(&actions).unwrap();
        assert_eq!(decode(Bytes::from(bytes)).unwrap(), actions);
    }
}
