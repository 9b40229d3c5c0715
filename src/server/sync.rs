//! Stage 2 over HTTP: the symbol registry (`/v1/symbols`), forced backfills, deleting a range
//! of bars, the job triggers (`POST /v1/sync/{job}`) and `GET /v1/sync/status`.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::App;
use super::error::ApiError;
use super::extract::{Path, Query, body_rejection};
use super::timeframe::timeframe_param;
use crate::error::ErrorKind;
use crate::model::time::{parse_time, rfc3339};
use crate::model::{Interval, Symbol};
use crate::sync::scheduler::{Job, JobReport};
use crate::sync::settings::{TrackRequest, make_spec};
use crate::sync::syncer::BackfillRequest;

fn symbol_param(s: &str) -> Result<Symbol, ApiError> {
    Symbol::new(s).map_err(|e| ApiError::bad_param("symbol", e))
}

fn time_param(name: &str, v: Option<&str>) -> Result<Option<i64>, ApiError> {
    v.map(|s| parse_time(s).map_err(|e| ApiError::bad_param(name, e)))
        .transpose()
}

fn opt_time(us: Option<i64>) -> Value {
    us.map_or(Value::Null, |t| Value::String(rfc3339(t)))
}

/// `GET /v1/symbols`: every stored series and every tracked one, with its sync status.
pub(super) async fn list(State(app): State<App>) -> Result<Json<Value>, ApiError> {
    let store = app.store()?;
    let syncer = app.syncer()?;
    let state = syncer.refresh().await?;
    let stale_after = i64::try_from(syncer.options().stale_after.as_micros()).unwrap_or(i64::MAX);
    let now = syncer.clock().now_micros();
    let mut rows: BTreeMap<(String, Interval), serde_json::Map<String, Value>> = BTreeMap::new();
    for s in store.stats() {
        let mut row = serde_json::Map::new();
        row.insert("rows".into(), json!(s.rows));
        row.insert("files".into(), json!(s.files));
        row.insert("bytes".into(), json!(s.bytes));
        row.insert("first_ts".into(), json!(rfc3339(s.first_ts)));
        row.insert("last_ts".into(), json!(rfc3339(s.last_ts)));
        rows.insert((s.symbol.as_str().to_string(), s.interval), row);
    }
    for ((symbol, interval), status) in &state.status {
        let Some(spec) = state.symbols.get(symbol) else {
            continue;
        };
        let row = rows
            .entry((symbol.as_str().to_string(), *interval))
            .or_insert_with(|| {
                let mut row = serde_json::Map::new();
                row.insert("rows".into(), json!(0));
                row.insert("files".into(), json!(0));
                row.insert("bytes".into(), json!(0));
                row.insert("first_ts".into(), Value::Null);
                row.insert("last_ts".into(), Value::Null);
                row
            });
        let sync = json!({
            "provider": spec.provider,
            "calendar": spec.calendar.as_str(),
            "since": rfc3339(spec.since),
            "state": status.effective_state(now, stale_after).as_str(),
            "last_update": opt_time(status.last_update),
            "last_bar": opt_time(status.last_bar),
            "last_error": status.last_error,
            "attempts": status.attempts,
            "next_retry": opt_time(status.next_retry),
            "rows_fetched": status.rows_fetched,
            "requests": status.requests,
        });
        row.insert("tracked".into(), json!(true));
        row.insert("sync".into(), sync);
    }
    let out: Vec<Value> = rows
        .into_iter()
        .map(|((symbol, interval), mut row)| {
            row.entry("tracked").or_insert(json!(false));
            row.insert("symbol".into(), json!(symbol));
            row.insert("timeframe".into(), json!(interval.as_str()));
            Value::Object(row)
        })
        .collect();
    Ok(Json(Value::Array(out)))
}

/// `POST /v1/symbols` (write): `{symbol, timeframes, provider, since, calendar}` (`intervals`,
/// the old name of `timeframes`, is accepted too). Starts
/// tracking (or changes how); stage 2 fills its history on its next run.
pub(super) async fn track(
    State(app): State<App>,
    body: Result<Json<TrackRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(body) = body.map_err(|e| body_rejection(e.status(), e.body_text()))?;
    let syncer = app.syncer()?;
    let added_at = syncer.clock().now_micros();
    let spec = make_spec(
        &app.config.providers,
        app.config.default_provider.as_deref(),
        body,
        added_at,
    )
    .map_err(|(field, e)| ApiError::bad_param(field, e))?;
    let answer = json!({
        "symbol": spec.symbol.as_str(),
        "timeframes": spec.intervals.iter().map(|i| i.as_str()).collect::<Vec<_>>(),
        "provider": spec.provider,
        "since": rfc3339(spec.since),
        "calendar": spec.calendar.as_str(),
    });
    syncer.track(spec).await?;
    Ok((StatusCode::CREATED, Json(answer)))
}

#[derive(Debug, Deserialize)]
pub(super) struct UntrackParams {
    purge: Option<bool>,
}

/// `DELETE /v1/symbols/{symbol}?purge=true` (write): stops tracking; bars stay unless purged.
pub(super) async fn untrack(
    State(app): State<App>,
    Path(symbol): Path<String>,
    Query(params): Query<UntrackParams>,
) -> Result<Json<Value>, ApiError> {
    let symbol = symbol_param(&symbol)?;
    let purge = params.purge.unwrap_or(false);
    let deleted = app.syncer()?.untrack(&symbol, purge).await?;
    Ok(Json(json!({
        "symbol": symbol.as_str(),
        "tracked": false,
        "purged": purge,
        "rows_deleted": deleted,
    })))
}

#[derive(Debug, Deserialize)]
pub(super) struct RangeParams {
    timeframe: Option<String>,
    /// The old name of `timeframe`, still accepted.
    interval: Option<String>,
    start: Option<String>,
    end: Option<String>,
}

/// `POST /v1/symbols/{symbol}/backfill?start&end` (write): fetches the range again now, even
/// where it is stored or covered, and answers what it did.
pub(super) async fn backfill_symbol(
    State(app): State<App>,
    Path(symbol): Path<String>,
    Query(params): Query<RangeParams>,
) -> Result<Json<Value>, ApiError> {
    let symbol = symbol_param(&symbol)?;
    let syncer = app.syncer()?;
    if !syncer.refresh().await?.symbols.contains_key(&symbol) {
        return Err(ApiError::of_kind(
            ErrorKind::NotTracked,
            format!("{symbol} is not tracked; POST /v1/symbols first"),
        ));
    }
    let start = time_param("start", params.start.as_deref())?.unwrap_or(i64::MIN + 1);
    let end = time_param("end", params.end.as_deref())?.unwrap_or(i64::MAX);
    if start >= end {
        return Err(ApiError::bad_param("end", "must be after start"));
    }
    let request = BackfillRequest {
        symbols: Some(vec![symbol]),
        range: Some((start, end)),
        force: params.start.is_some() || params.end.is_some(),
    };
    let summary = syncer.backfill(&request).await?;
    Ok(Json(serde_json::to_value(summary).unwrap_or(Value::Null)))
}

/// `DELETE /v1/bars/{symbol}?timeframe&start&end` (write): removes the range atomically; the
/// ledger forgets it, so stage 2 heals it if the symbol is tracked.
pub(super) async fn delete_bars(
    State(app): State<App>,
    Path(symbol): Path<String>,
    Query(params): Query<RangeParams>,
) -> Result<Json<Value>, ApiError> {
    let symbol = symbol_param(&symbol)?;
    let interval: Interval =
        timeframe_param(params.timeframe.as_deref(), params.interval.as_deref())?
            .ok_or_else(|| ApiError::bad_param("timeframe", "missing, e.g. timeframe=1d"))?;
    let start = time_param("start", params.start.as_deref())?
        .ok_or_else(|| ApiError::bad_param("start", "missing"))?;
    let end = time_param("end", params.end.as_deref())?
        .ok_or_else(|| ApiError::bad_param("end", "missing"))?;
    if start >= end {
        return Err(ApiError::bad_param("end", "must be after start"));
    }
    let s = app
        .syncer()?
        .delete_bars(&symbol, interval, start, end)
        .await?;
    Ok(Json(json!({
        "symbol": symbol.as_str(),
        "timeframe": interval.as_str(),
        "start": rfc3339(start),
        "end": rfc3339(end),
        "rows_deleted": s.rows,
        "files_removed": s.files_removed,
        "files_added": s.files_added,
    })))
}

/// `POST /v1/sync/{job}` (write): runs a job now (transfer, backfill, live, compact, gc) and
/// answers what it did.
pub(super) async fn run_job(
    State(app): State<App>,
    Path(job): Path<String>,
) -> Result<Json<JobReport>, ApiError> {
    let job = Job::parse(&job)
        .ok_or_else(|| ApiError::not_found(format!("no job {job:?} (jobs: {})", Job::names())))?;
    Ok(Json(app.scheduler()?.run(job).await?))
}

/// `GET /v1/sync/status`: each job's last and next run; each provider's requests, errors,
/// rate-limit waits and circuit state; tracked series by state.
pub(super) async fn status(State(app): State<App>) -> Result<Json<Value>, ApiError> {
    let syncer = app.syncer()?;
    let state = syncer.refresh().await?;
    let jobs: serde_json::Map<String, Value> = Job::ALL
        .into_iter()
        .map(|j| {
            let mut v = serde_json::to_value(app.job_state(j)).unwrap_or(Value::Null);
            v["enabled"] = json!(app.config.job_enabled(j.name()));
            (j.name().to_string(), v)
        })
        .collect();
    let providers: serde_json::Map<String, Value> = syncer
        .providers()
        .map(|p| {
            let mut v = serde_json::to_value(p.upstream.stats()).unwrap_or(Value::Null);
            v["kind"] = json!(p.adapter.kind());
            (p.name.clone(), v)
        })
        .collect();
    let stale_after = i64::try_from(syncer.options().stale_after.as_micros()).unwrap_or(i64::MAX);
    let now = syncer.clock().now_micros();
    let mut states: BTreeMap<&str, u64> = BTreeMap::new();
    for status in state.status.values() {
        *states
            .entry(status.effective_state(now, stale_after).as_str())
            .or_default() += 1;
    }
    Ok(Json(json!({
        "jobs": jobs,
        "providers": providers,
        "series": states,
        "quarantined": state.quarantine.len(),
        "quarantine_dropped": state.quarantine_dropped,
    })))
}
