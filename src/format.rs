//! Result formats: table, CSV, JSON, NDJSON, Arrow IPC stream and Parquet, written batch by
//! batch so a large result never sits whole in memory (except `table`, which needs widths).

use std::io::Write;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
    Ndjson,
    Arrow,
    Parquet,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("arrow: {0}")]
    Arrow(#[from] ArrowError),
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("query: {0}")]
    Query(#[from] datafusion::error::DataFusionError),
    #[error("output: {0}")]
    Io(#[from] std::io::Error),
}

/// Writes batches in one format; `finish` closes the document (JSON array end, IPC footer).
pub enum BatchWriter<W: Write + Send> {
    Table(W, Vec<RecordBatch>),
    Csv(arrow::csv::Writer<W>),
    Json(arrow::json::ArrayWriter<W>),
    Ndjson(arrow::json::LineDelimitedWriter<W>),
    Arrow(arrow::ipc::writer::StreamWriter<W>),
    Parquet(parquet::arrow::ArrowWriter<W>),
}

impl<W: Write + Send> BatchWriter<W> {
    pub fn new(format: Format, schema: &SchemaRef, out: W) -> Result<Self, Error> {
        Ok(match format {
            Format::Table => BatchWriter::Table(out, Vec::new()),
            Format::Csv => BatchWriter::Csv(
                arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(out),
            ),
            // Explicit nulls: every object has every column, so readers see one shape.
            Format::Json => BatchWriter::Json(
                arrow::json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build(out),
            ),
            Format::Ndjson => BatchWriter::Ndjson(
                arrow::json::WriterBuilder::new()
                    .with_explicit_nulls(true)
                    .build(out),
            ),
            Format::Arrow => {
                BatchWriter::Arrow(arrow::ipc::writer::StreamWriter::try_new(out, schema)?)
            }
            Format::Parquet => {
                let props = parquet::file::properties::WriterProperties::builder()
                    .set_compression(parquet::basic::Compression::ZSTD(Default::default()))
                    .build();
                BatchWriter::Parquet(parquet::arrow::ArrowWriter::try_new(
                    out,
                    std::sync::Arc::clone(schema),
                    Some(props),
                )?)
            }
        })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<(), Error> {
        match self {
            BatchWriter::Table(_, batches) => batches.push(batch.clone()),
            BatchWriter::Csv(w) => w.write(batch)?,
            BatchWriter::Json(w) => w.write(batch)?,
            BatchWriter::Ndjson(w) => w.write(batch)?,
            BatchWriter::Arrow(w) => w.write(batch)?,
            BatchWriter::Parquet(w) => w.write(batch)?,
        }
        Ok(())
    }

    pub fn finish(self) -> Result<W, Error> {
        Ok(match self {
            BatchWriter::Table(mut out, batches) => {
                writeln!(
                    out,
                    "{}",
                    arrow::util::pretty::pretty_format_batches(&batches)?
                )?;
                out
            }
            BatchWriter::Csv(w) => w.into_inner(),
            BatchWriter::Json(mut w) => {
                w.finish()?;
                w.into_inner()
            }
            BatchWriter::Ndjson(mut w) => {
                w.finish()?;
                w.into_inner()
            }
            BatchWriter::Arrow(mut w) => {
                w.finish()?;
                w.into_inner()?
            }
            BatchWriter::Parquet(w) => w.into_inner()?,
        })
    }
}

/// Drains a stream into `out` in `format`; returns the number of rows written.
pub async fn write_stream<W: Write + Send>(
    mut stream: SendableRecordBatchStream,
    format: Format,
    out: W,
) -> Result<(u64, W), Error> {
    let schema = stream.schema();
    let mut writer = BatchWriter::new(format, &schema, out)?;
    let mut rows = 0;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        rows += batch.num_rows() as u64;
        writer.write(&batch)?;
    }
    Ok((rows, writer.finish()?))
}
