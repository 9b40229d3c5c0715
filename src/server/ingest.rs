//! `POST /v1/write`: bars into the live tier (durable when answered).

use std::sync::atomic::Ordering;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};

use super::App;
use super::error::ApiError;
use super::extract::Query;
use super::query::body_error;
use super::timeframe::timeframe_param;
use crate::error::ErrorKind;
use crate::ingest::{BodyFormat, CsvParams, parse_body};
use crate::model::Symbol;

#[derive(Debug, Deserialize)]
pub(super) struct WriteParams {
    /// CSV bodies: the bars' timeframe (default 1d).
    timeframe: Option<String>,
    /// The old name of `timeframe`, still accepted.
    interval: Option<String>,
    /// CSV bodies without a symbol column: their symbol.
    symbol: Option<String>,
}

/// `POST /v1/write`: all rows or none. Answered once the rows are in the WAL (fsynced) and
/// visible to queries.
pub(super) async fn write(
    State(app): State<App>,
    Query(params): Query<WriteParams>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let rejected = |e: ApiError| {
        app.ingest_rejected.fetch_add(1, Ordering::Relaxed);
        e
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let format = BodyFormat::from_content_type(content_type).ok_or_else(|| {
        rejected(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!(
                "Content-Type {content_type:?} is not a bars format; send {}",
                BodyFormat::ACCEPTED
            ),
        ))
    })?;
    let body = body.map_err(|e| rejected(body_error(e)))?;
    let csv = CsvParams {
        interval: timeframe_param(params.timeframe.as_deref(), params.interval.as_deref())
            .map_err(rejected)?,
        symbol: params
            .symbol
            .as_deref()
            .map(Symbol::new)
            .transpose()
            .map_err(|e| rejected(ApiError::bad_param("symbol", e)))?,
    };
    let store = app.store()?;
    // Parsing a large body is CPU work: keep it off the async workers.
    let series = tokio::task::spawn_blocking(move || parse_body(format, body, &csv))
        .await
        // A panic while parsing goes on to the server's panic net (a JSON 500, counted).
        .map_err(|e| match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(e) => ApiError::internal(e.to_string()),
        })?
        .map_err(|e| rejected(ApiError::of_kind(ErrorKind::InvalidRow, e.to_string())))?;
    let rows: usize = series.iter().map(|s| s.batch.num_rows()).sum();
    // Every parser checks the rules row by row as it reads; no second pass here.
    let lsn = store
        .ingest_checked(series)
        .await
        .map_err(|e| rejected(e.into()))?;
    Ok(Json(json!({ "rows": rows, "lsn": lsn })))
}
