//! Query results as streamed HTTP bodies: the format from `?format=` or `Accept`, limits on
//! concurrency and time, and errors that arrive before the first row turned into a status code.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use super::App;
use super::error::ApiError;
use crate::format::{BatchWriter, Format};

/// The output formats the API speaks (the CLI's `table` is not one of them).
pub fn parse_format(param: Option<&str>, headers: &HeaderMap) -> Result<Format, ApiError> {
    if let Some(name) = param {
        return match name.to_ascii_lowercase().as_str() {
            "json" => Ok(Format::Json),
            "ndjson" | "jsonl" => Ok(Format::Ndjson),
            "csv" => Ok(Format::Csv),
            "arrow" => Ok(Format::Arrow),
            "parquet" => Ok(Format::Parquet),
            other => Err(ApiError::bad_param(
                "format",
                format!("unknown format {other:?} (json, ndjson, csv, arrow or parquet)"),
            )),
        };
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    // The first media type we speak, in the client's order; JSON otherwise.
    for item in accept.split(',') {
        let media = item.split(';').next().unwrap_or("").trim();
        let format = match media.to_ascii_lowercase().as_str() {
            "application/json" => Format::Json,
            "application/x-ndjson" | "application/jsonl" => Format::Ndjson,
            "text/csv" => Format::Csv,
            "application/vnd.apache.arrow.stream" => Format::Arrow,
            "application/vnd.apache.parquet" | "application/x-parquet" => Format::Parquet,
            _ => continue,
        };
        return Ok(format);
    }
    Ok(Format::Json)
}

pub fn content_type(format: Format) -> &'static str {
    match format {
        Format::Json => "application/json",
        Format::Ndjson => "application/x-ndjson",
        Format::Csv => "text/csv; charset=utf-8",
        Format::Arrow => "application/vnd.apache.arrow.stream",
        Format::Parquet => "application/vnd.apache.parquet",
        Format::Table => "text/plain; charset=utf-8",
    }
}

/// A query slot: at most `max_concurrent_queries` run at once; the permit lives as long as the
/// response body streams.
pub struct QuerySlot {
    _permit: OwnedSemaphorePermit,
    app: App,
    pub deadline: Instant,
}

impl QuerySlot {
    pub fn acquire(app: &App) -> Result<Self, ApiError> {
        let permit = Arc::clone(&app.query_slots)
            .try_acquire_owned()
            .map_err(|_| {
                ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too_many_queries",
                    format!(
                        "{} queries are running, the server's limit; retry shortly",
                        app.config.max_concurrent_queries
                    ),
                )
                .with_retry_after(1)
            })?;
        app.metrics.query_started();
        Ok(Self {
            _permit: permit,
            app: app.clone(),
            deadline: Instant::now() + app.config.query_timeout.duration(),
        })
    }

    pub fn timeout_error(&self) -> ApiError {
        timeout_error(self.app.config.query_timeout.duration())
    }
}

impl Drop for QuerySlot {
    fn drop(&mut self) {
        self.app.metrics.query_ended();
    }
}

fn timeout_error(limit: Duration) -> ApiError {
    ApiError::new(
        StatusCode::GATEWAY_TIMEOUT,
        "query_timeout",
        format!(
            "the query ran longer than the server's query time limit ({:.1}s) and was cancelled; \
             narrow it or raise query_timeout",
            limit.as_secs_f64()
        ),
    )
}

/// Runs `plan` within the slot's deadline, waits for the first batch (so an error or timeout
/// before any output still gets its status code) and streams the rest in `format`.
pub async fn stream_response(
    slot: QuerySlot,
    format: Format,
    plan: impl Future<Output = Result<SendableRecordBatchStream, ApiError>>,
) -> Result<Response, ApiError> {
    let mut stream = tokio::time::timeout_at(slot.deadline, plan)
        .await
        .map_err(|_| slot.timeout_error())??;
    let first = match tokio::time::timeout_at(slot.deadline, stream.next()).await {
        Err(_) => return Err(slot.timeout_error()),
        Ok(Some(Err(e))) => return Err(ApiError::from_datafusion(&e)),
        Ok(Some(Ok(batch))) => Some(batch),
        Ok(None) => None,
    };
    let sink = Sink::default();
    let writer = BatchWriter::new(format, &stream.schema(), sink.clone())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let state = BodyState {
        stream,
        first,
        writer: Some(writer),
        sink,
        slot,
        rows: 0,
        bytes: 0,
    };
    let body = futures::stream::unfold(state, |mut state| async move {
        let chunk = state.next_chunk().await?;
        Some((chunk, state))
    });
    let mut response = Response::new(Body::from_stream(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(format)),
    );
    Ok(response)
}

/// A `Write` whose bytes are taken out after each batch and sent as one body chunk.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl Sink {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().expect("sink lock"))
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("sink lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

struct BodyState {
    stream: SendableRecordBatchStream,
    first: Option<arrow::array::RecordBatch>,
    /// `None` once the document is finished.
    writer: Option<BatchWriter<Sink>>,
    sink: Sink,
    slot: QuerySlot,
    rows: u64,
    bytes: u64,
}

impl BodyState {
    /// The next non-empty chunk, `None` at the end, or an error that aborts the body (the
    /// client sees a broken transfer, never a silently short result).
    async fn next_chunk(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        loop {
            self.writer.as_ref()?;
            let batch = match self.first.take() {
                Some(batch) => Some(batch),
                None => match tokio::time::timeout_at(self.slot.deadline, self.stream.next()).await
                {
                    Err(_) => return Some(Err(self.fail(self.slot.timeout_error().message))),
                    Ok(Some(Err(e))) => return Some(Err(self.fail(e.to_string()))),
                    Ok(Some(Ok(batch))) => Some(batch),
                    Ok(None) => None,
                },
            };
            let written = match batch {
                Some(batch) => {
                    self.rows += batch.num_rows() as u64;
                    let writer = self.writer.as_mut().expect("checked above");
                    writer.write(&batch)
                }
                None => {
                    let writer = self.writer.take().expect("checked above");
                    writer.finish().map(|_| ())
                }
            };
            if let Err(e) = written {
                return Some(Err(self.fail(e.to_string())));
            }
            let chunk = self.sink.take();
            self.bytes += chunk.len() as u64;
            if self.writer.is_none() {
                // The document is complete: count the response once.
                self.slot
                    .app
                    .metrics
                    .add_query_output(self.rows, self.bytes);
            }
            if !chunk.is_empty() {
                return Some(Ok(Bytes::from(chunk)));
            }
        }
    }

    fn fail(&mut self, message: String) -> std::io::Error {
        tracing::warn!("query stream aborted after {} rows: {message}", self.rows);
        self.writer = None;
        self.slot
            .app
            .metrics
            .add_query_output(self.rows, self.bytes);
        self.slot.app.metrics.record_error("stream_aborted");
        std::io::Error::other(message)
    }
}
