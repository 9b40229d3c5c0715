//! `/v1/sql` and `/v1/bars`: read-only SQL and the backtest loader, streamed.

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, header};
use axum::response::Response;
use serde::Deserialize;

use super::App;
use super::error::ApiError;
use super::extract::{Path, Query};
use std::sync::Arc;

use super::output::{CacheFill, QuerySlot, cached_response, parse_format, stream_response};
use super::repeatable::is_repeatable;
use super::result_cache::{CacheKey, StoreVersion};
use super::timeframe::timeframe_param;
use crate::adjust::{Adjust, Adjustment, Applied, parse_as_of};
use crate::model::time::parse_time;
use crate::model::{Interval, Symbol};
use crate::{LoadRequest, TableVersion};

#[derive(Debug, Deserialize)]
pub(super) struct SqlParams {
    q: Option<String>,
    format: Option<String>,
    /// Read this table version (a catalog commit number) instead of the latest.
    version: Option<u64>,
    /// Read the version this named snapshot pins.
    snapshot: Option<String>,
}

/// The response header that says which table version an answer read.
pub(super) const VERSION_HEADER: &str = "x-tickvault-version";

/// `?version=` and `?snapshot=`, at most one.
fn table_version(version: Option<u64>, snapshot: Option<String>) -> Result<TableVersion, ApiError> {
    TableVersion::from_options(version, snapshot).map_err(|_| {
        ApiError::bad_param(
            "snapshot",
            "give ?version= or ?snapshot=, not both (a snapshot names its version)",
        )
    })
}

/// Says which version the answer read.
fn with_version(mut response: Response, version: u64) -> Response {
    response
        .headers_mut()
        .insert(VERSION_HEADER, axum::http::HeaderValue::from(version));
    response
}

/// `GET /v1/sql?q=SELECT...`
pub(super) async fn sql_get(
    State(app): State<App>,
    Query(params): Query<SqlParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let sql = params
        .q
        .filter(|q| !q.trim().is_empty())
        .ok_or_else(|| ApiError::bad_param("q", "missing: put the SQL in ?q="))?;
    let version = table_version(params.version, params.snapshot)?;
    run_sql(app, &sql, params.format.as_deref(), &headers, version).await
}

/// `POST /v1/sql` with the SQL as the body, or JSON `{"sql": "..."}`.
pub(super) async fn sql_post(
    State(app): State<App>,
    Query(params): Query<SqlParams>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(body_error)?;
    let version = table_version(params.version, params.snapshot)?;
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let sql = if is_json {
        #[derive(Deserialize)]
        struct SqlBody {
            sql: String,
        }
        serde_json::from_slice::<SqlBody>(&body)
            .map_err(|e| {
                ApiError::bad_param("body", format!("expected {{\"sql\": \"...\"}}: {e}"))
            })?
            .sql
    } else {
        String::from_utf8(body.to_vec())
            .map_err(|_| ApiError::bad_param("body", "the SQL is not UTF-8"))?
    };
    if sql.trim().is_empty() {
        return Err(ApiError::bad_param(
            "body",
            "empty: send the SQL as the body",
        ));
    }
    run_sql(app, &sql, params.format.as_deref(), &headers, version).await
}

/// Turns a body extraction failure (too large, unreadable) into a JSON error.
pub(super) fn body_error(rejection: BytesRejection) -> ApiError {
    let status = rejection.status();
    let code = if status == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        "body_too_large"
    } else {
        "bad_body"
    };
    ApiError::new(status, code, rejection.body_text())
}

async fn run_sql(
    app: App,
    sql: &str,
    format: Option<&str>,
    headers: &HeaderMap,
    version: TableVersion,
) -> Result<Response, ApiError> {
    let format = parse_format(format, headers)?;
    let store = app.store()?;
    if version != TableVersion::Latest {
        // Rebuilding a version reads the log: it takes a query slot first.
        let slot = QuerySlot::acquire(&app)?;
        if let Some(view) = store.view(&version).await? {
            // A past version does not change: nothing to cache against, nothing live to lay
            // over.
            let read = view.version();
            let sql = sql.to_owned();
            let response = stream_response(slot, format, async move {
                let engine = view.engine();
                let stream = match engine.range_read(&sql) {
                    Some(stream) => stream,
                    None => engine.execute(engine.sql(&sql).await?).await?,
                };
                Ok((stream, None))
            })
            .await?;
            return Ok(with_version(response, read));
        }
    }
    let store_version = StoreVersion::of(&store);
    let key = app
        .results
        .enabled()
        .then(|| CacheKey::new(sql, format, store_version));
    if let Some(body) = key.as_ref().and_then(|k| app.results.get(k)) {
        return Ok(with_version(
            cached_response(format, body),
            store_version.commit(),
        ));
    }
    let slot = QuerySlot::acquire(&app)?;
    let sql = sql.to_owned();
    let cache = Arc::clone(&app.results);
    let response = stream_response(slot, format, async move {
        let engine = store.engine();
        // A range read is repeatable: it names no function.
        let (stream, repeatable) = match engine.range_read(&sql) {
            Some(stream) => (stream, true),
            None => {
                let query = engine.sql(&sql).await?;
                let repeatable = is_repeatable(query.logical_plan());
                (engine.execute(query).await?, repeatable)
            }
        };
        let fill = key
            .filter(|_| repeatable)
            .map(|key| CacheFill::new(cache, key, store));
        Ok((stream, fill))
    })
    .await?;
    // The latest version as the request began (a commit while it plans may be read too).
    Ok(with_version(response, store_version.commit()))
}

#[derive(Debug, Deserialize)]
pub(super) struct BarsParams {
    symbols: Option<String>,
    timeframe: Option<String>,
    /// The old name of `timeframe`, still accepted.
    interval: Option<String>,
    start: Option<String>,
    end: Option<String>,
    columns: Option<String>,
    format: Option<String>,
    /// Fetch missing ranges from the provider first (read-through).
    fill: Option<bool>,
    /// `none` (default), `splits` or `all`.
    adjust: Option<String>,
    /// Point in time: only events with ex-date <= this date.
    as_of: Option<String>,
    /// Read this table version (a catalog commit number) instead of the latest.
    version: Option<u64>,
    /// Read the version this named snapshot pins.
    snapshot: Option<String>,
}

/// `GET /v1/bars/{symbol}?timeframe&start&end&columns&format`
pub(super) async fn bars_one(
    State(app): State<App>,
    Path(symbol): Path<String>,
    Query(params): Query<BarsParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if params.symbols.is_some() {
        return Err(ApiError::bad_param(
            "symbols",
            "not allowed with /v1/bars/{symbol}; use /v1/bars?symbols=A,B",
        ));
    }
    load(app, vec![symbol], params, &headers).await
}

/// `GET /v1/bars?symbols=AAPL,MSFT&timeframe&start&end&columns&format`: rows ordered by (ts, symbol).
pub(super) async fn bars_many(
    State(app): State<App>,
    Query(params): Query<BarsParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let symbols: Vec<String> = params
        .symbols
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    if symbols.is_empty() {
        return Err(ApiError::bad_param(
            "symbols",
            "missing: give one or more symbols, e.g. ?symbols=AAPL,MSFT",
        ));
    }
    load(app, symbols, params, &headers).await
}

async fn load(
    app: App,
    symbols: Vec<String>,
    params: BarsParams,
    headers: &HeaderMap,
) -> Result<Response, ApiError> {
    let format = parse_format(params.format.as_deref(), headers)?;
    for s in &symbols {
        Symbol::new(s).map_err(|e| ApiError::bad_param("symbol", format!("{s:?}: {e}")))?;
    }
    let interval: Interval =
        timeframe_param(params.timeframe.as_deref(), params.interval.as_deref())?
            .unwrap_or(Interval::D1);
    let start = params
        .start
        .as_deref()
        .map(|s| parse_time(s).map_err(|e| ApiError::bad_param("start", e)))
        .transpose()?;
    let end = params
        .end
        .as_deref()
        .map(|s| parse_time(s).map_err(|e| ApiError::bad_param("end", e)))
        .transpose()?;
    if let (Some(s), Some(e)) = (start, end)
        && s >= e
    {
        return Err(ApiError::bad_param(
            "end",
            "must be after start (start is inclusive, end exclusive)",
        ));
    }
    let columns = params.columns.as_deref().map(column_list).transpose()?;
    let adjustment = adjustment(params.adjust.as_deref(), params.as_of.as_deref())?;
    let version = table_version(params.version, params.snapshot)?;
    if version != TableVersion::Latest && params.fill == Some(true) {
        return Err(ApiError::bad_param(
            "fill",
            "not with ?version= or ?snapshot=: a past version is read as it was committed",
        ));
    }
    let store = app.store()?;
    // Rebuilding a version reads the log: it takes a query slot first.
    let early_slot = (version != TableVersion::Latest)
        .then(|| QuerySlot::acquire(&app))
        .transpose()?;
    let view = store.view(&version).await?;
    let read = view
        .as_ref()
        .map_or_else(|| store.table_version(), |v| v.version());
    let syncer = app.syncer()?;
    let parsed: Vec<Symbol> = symbols
        .iter()
        .map(|s| Symbol::new(s).expect("checked above"))
        .collect();
    let filled = syncer
        .before_read(&parsed, interval, (start, end), params.fill == Some(true))
        .await?;
    let request = LoadRequest {
        symbols,
        interval,
        start,
        end,
        columns,
        adjustment,
    };
    let slot = match early_slot {
        Some(slot) => slot,
        None => QuerySlot::acquire(&app)?,
    };
    // The events applied are known once the load is planned, before the first row: a header.
    let applied = Arc::new(std::sync::OnceLock::new());
    let applied_in = Arc::clone(&applied);
    let mut response = stream_response(slot, format, async move {
        let loaded = match &view {
            Some(view) => view.load_bars_adjusted(&request).await,
            None => store.load_bars_adjusted(&request).await,
        };
        let loaded = loaded.map_err(|e| match e {
            crate::Error::UnknownColumn(e) => ApiError::bad_param("columns", e),
            e => e.into(),
        })?;
        let _ = applied_in.set(loaded.applied);
        Ok((loaded.stream, None))
    })
    .await?;
    if !adjustment.is_none() {
        let value = adjustments_header(applied.get().map_or(&[][..], Vec::as_slice));
        response.headers_mut().insert(
            ADJUSTMENTS_HEADER,
            axum::http::HeaderValue::from_str(&value).expect("ascii header"),
        );
    }
    response = with_version(response, read);
    if let Some(f) = filled {
        // What the read fetched first: `requests=2; rows=390; chunks=2; failures=0`.
        let value = format!(
            "requests={}; rows={}; chunks={}; failures={}",
            f.requests,
            f.rows,
            f.chunks,
            f.failures.len()
        );
        response.headers_mut().insert(
            FILL_HEADER,
            axum::http::HeaderValue::from_str(&value).expect("ascii header"),
        );
    }
    Ok(response)
}

/// `?columns=ts,close`: one or more names, each once (a repeated name would repeat a key of
/// every JSON object; an empty list would answer rows without values).
fn column_list(param: &str) -> Result<Vec<String>, ApiError> {
    let names: Vec<String> = param
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect();
    if names.is_empty() {
        return Err(ApiError::bad_param(
            "columns",
            "empty: name one or more columns (columns=ts,close), or leave it out for all",
        ));
    }
    if let Some((i, name)) = names
        .iter()
        .enumerate()
        .find(|(i, n)| names[..*i].contains(n))
    {
        return Err(ApiError::bad_param(
            "columns",
            format!("{name:?} is listed twice (column {})", i + 1),
        ));
    }
    Ok(names)
}

/// The response header that says what a `fill=true` read fetched.
pub(super) const FILL_HEADER: &str = "x-tickvault-fill";

/// The response header of an adjusted read: the events applied, `; `-separated
/// (`AAPL 2020-08-31 split ratio=4 factor=0.25`), or `none`.
pub(super) const ADJUSTMENTS_HEADER: &str = "x-tickvault-adjustments";

/// Past this, the header lists the first events and how many more there are (a client's
/// header limit is often 8-16 KiB).
const MAX_ADJUSTMENTS_HEADER: usize = 6 * 1024;

/// `adjust=` and `as_of=`, checked.
fn adjustment(adjust: Option<&str>, as_of: Option<&str>) -> Result<Adjustment, ApiError> {
    let adjust: Adjust = adjust
        .unwrap_or("none")
        .parse()
        .map_err(|e| ApiError::bad_param("adjust", e))?;
    let as_of = as_of
        .map(|d| parse_as_of(d).map_err(|e| ApiError::bad_param("as_of", e)))
        .transpose()?;
    if as_of.is_some() && adjust == Adjust::None {
        return Err(ApiError::bad_param(
            "as_of",
            "needs adjust=splits or adjust=all (raw bars are the same on every date)",
        ));
    }
    Ok(Adjustment::new(adjust, as_of))
}

/// The value of [`ADJUSTMENTS_HEADER`].
fn adjustments_header(applied: &[Applied]) -> String {
    if applied.is_empty() {
        return "none".to_string();
    }
    let mut out = String::new();
    for (i, a) in applied.iter().enumerate() {
        let entry = a.to_string();
        if out.len() + entry.len() > MAX_ADJUSTMENTS_HEADER {
            out.push_str(&format!("; and {} more", applied.len() - i));
            break;
        }
        if i > 0 {
            out.push_str("; ");
        }
        out.push_str(&entry);
    }
    // Symbols are visible characters, but may be outside ASCII: a header value must not be.
    out.chars()
        .map(|c| {
            if c.is_ascii() && !c.is_ascii_control() {
                c
            } else {
                '?'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::column_list;

    #[test]
    fn column_lists_name_each_column_once() {
        assert_eq!(column_list("ts, close").unwrap(), ["ts", "close"]);
        for bad in ["", " ", ",", "close,close", "ts,close,ts"] {
            let e = column_list(bad).unwrap_err();
            assert!(e.message().starts_with("columns:"), "{bad:?}: {e}");
        }
        assert!(
            column_list("close,close")
                .unwrap_err()
                .message()
                .contains("twice")
        );
    }
}
