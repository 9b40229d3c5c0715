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
use super::result_cache::{CacheKey, ResultCache, StoreVersion};
use crate::Store;
use crate::format::{BatchWriter, Format};

/// The output formats the API speaks (the CLI's `table` is not one of them).
pub(super) fn parse_format(param: Option<&str>, headers: &HeaderMap) -> Result<Format, ApiError> {
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

pub(super) fn content_type(format: Format) -> &'static str {
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
pub(super) struct QuerySlot {
    _permit: OwnedSemaphorePermit,
    app: App,
    pub deadline: Instant,
}

impl QuerySlot {
    pub(super) fn acquire(app: &App) -> Result<Self, ApiError> {
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

    pub(super) fn timeout_error(&self) -> ApiError {
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

/// An answer from the result cache: no query runs, so no slot is taken.
pub(super) fn cached_response(format: Format, body: Bytes) -> Response {
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(format)),
    );
    headers.insert("x-tickvault-cache", HeaderValue::from_static("hit"));
    response
}

/// Collects an answer as it streams, for the result cache: kept if it ends whole, within the
/// cache's entry limit, with the store still at the version it was computed at.
pub(super) struct CacheFill {
    cache: Arc<ResultCache>,
    key: CacheKey,
    store: Arc<Store>,
    body: Vec<u8>,
}

impl CacheFill {
    pub(super) fn new(cache: Arc<ResultCache>, key: CacheKey, store: Arc<Store>) -> Self {
        Self {
            cache,
            key,
            store,
            body: Vec::new(),
        }
    }

    /// Adds a chunk; `false` once the answer is too large to keep.
    fn add(&mut self, chunk: &[u8]) -> bool {
        self.body.extend_from_slice(chunk);
        self.body.len() <= self.cache.max_entry()
    }

    fn finish(self) {
        if StoreVersion::of(&self.store) == self.key.version() {
            self.cache.insert(self.key, Bytes::from(self.body));
        }
    }
}

/// Runs `plan` on the query runtime within the slot's deadline, waits for the first batch (so
/// an error or timeout before any output still gets its status code) and streams the rest in
/// `format`, encoded on the query runtime too. The slot lives as long as the body.
pub(super) async fn stream_response(
    slot: QuerySlot,
    format: Format,
    plan: impl Future<Output = Result<(SendableRecordBatchStream, Option<CacheFill>), ApiError>>
    + Send
    + 'static,
) -> Result<Response, ApiError> {
    let app = slot.app.clone();
    let start = async move {
        let (mut stream, fill) = plan.await?;
        let first = match stream.next().await {
            Some(Err(e)) => return Err(ApiError::from_datafusion(&e)),
            Some(Ok(batch)) => Some(batch),
            None => None,
        };
        let sink = Sink::default();
        let writer = BatchWriter::new(format, &stream.schema(), sink.clone())
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let state = Encoder {
            stream,
            first,
            writer: Some(writer),
            sink,
            app,
            rows: 0,
            fill,
        };
        let chunks = futures::stream::unfold(state, |mut state| async move {
            let chunk = state.next_chunk().await?;
            Some((chunk, state))
        });
        Ok(chunks.boxed())
    };
    let chunks = tokio::time::timeout_at(slot.deadline, slot.app.queries.execute(start))
        .await
        .map_err(|_| slot.timeout_error())??;
    let body = futures::stream::unfold(Some((chunks, slot)), |state| async move {
        let (mut chunks, slot) = state?;
        match tokio::time::timeout_at(slot.deadline, chunks.next()).await {
            Ok(Some(chunk)) => Some((chunk, Some((chunks, slot)))),
            Ok(None) => None,
            Err(_) => {
                // Dropping the chunks cancels the query.
                let message = slot.timeout_error().message;
                Some((Err(stream_aborted(&slot.app, message)), None))
            }
        }
    });
    let mut response = Response::new(Body::from_stream(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(format)),
    );
    Ok(response)
}

/// Logs and counts a body cut short; the client sees a broken transfer, never a silently short
/// result.
fn stream_aborted(app: &App, message: String) -> std::io::Error {
    tracing::warn!("query stream aborted: {message}");
    app.metrics.record_error("stream_aborted");
    std::io::Error::other(message)
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

/// Turns batches into body chunks on the query runtime.
struct Encoder {
    stream: SendableRecordBatchStream,
    first: Option<arrow::array::RecordBatch>,
    /// `None` once the document is finished or failed.
    writer: Option<BatchWriter<Sink>>,
    sink: Sink,
    app: App,
    rows: u64,
    /// Set while the answer may still go into the result cache.
    fill: Option<CacheFill>,
}

impl Encoder {
    /// The next non-empty chunk, `None` at the end, or an error that aborts the body.
    async fn next_chunk(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        loop {
            self.writer.as_ref()?;
            let batch = match self.first.take() {
                Some(batch) => Some(batch),
                None => match self.stream.next().await {
                    Some(Err(e)) => {
                        if crate::storage::find_damage(&e).is_some() {
                            self.app.metrics.record_error("damaged_file");
                        }
                        return Some(Err(self.fail(e.to_string())));
                    }
                    Some(Ok(batch)) => Some(batch),
                    None => None,
                },
            };
            let rows = batch.as_ref().map_or(0, |b| b.num_rows() as u64);
            let written = match batch {
                Some(batch) => {
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
            if let Some(fill) = &mut self.fill
                && !fill.add(&chunk)
            {
                self.fill = None;
            }
            if self.writer.is_none()
                && let Some(fill) = self.fill.take()
            {
                fill.finish();
            }
            // Counted as they go, so a body cut short still counts what it sent.
            self.rows += rows;
            self.app.metrics.add_query_output(rows, chunk.len() as u64);
            if !chunk.is_empty() {
                return Some(Ok(Bytes::from(chunk)));
            }
        }
    }

    fn fail(&mut self, message: String) -> std::io::Error {
        self.writer = None;
        self.fill = None;
        stream_aborted(&self.app, format!("{message} (after {} rows)", self.rows))
    }
}
