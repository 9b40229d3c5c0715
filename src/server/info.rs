//! What the server knows about itself and the store: health, readiness, symbols, status,
//! metrics, the OpenAPI document, and the maintenance trigger.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::App;
use super::error::ApiError;
use super::metrics::StoreGauges;
use crate::maintenance::SeriesStats;
use crate::sync::scheduler::Job;

/// The OpenAPI 3 document of every route (a test keeps it equal to the router).
pub const OPENAPI: &str = include_str!("openapi.json");

pub(super) async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

pub(super) async fn ready(State(app): State<App>) -> Response {
    match app.store() {
        Ok(_) => Json(json!({ "ready": true })).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Store-wide totals from the catalog's per-series stats, the live tier and the jobs.
fn gauges(app: &App, store: Option<&crate::Store>, stats: &[SeriesStats]) -> StoreGauges {
    use std::sync::atomic::Ordering::Relaxed;
    let mut g = StoreGauges {
        uptime_seconds: app.started.elapsed().as_secs_f64(),
        query_tasks: app.queries.running(),
        cache_hits: app.results.hits.load(Relaxed),
        cache_misses: app.results.misses.load(Relaxed),
        cache_bytes: app.results.size().1 as u64,
        ingest_rejected: app.ingest_rejected.load(Relaxed),
        transfer: app.job_state(Job::Transfer),
        compact: app.job_state(Job::Compact),
        ..Default::default()
    };
    if let Some(live) = store.and_then(|s| s.live()) {
        {
            let tier = live.read();
            g.live_rows = tier.rows() as u64;
            g.live_bytes = tier.bytes() as u64;
        }
        let wal = live.wal_stats();
        g.wal_segments = wal.segments as u64;
        g.wal_bytes = wal.bytes;
        g.wal_damaged_segments = live.recovery().damaged.len() as u64;
        g.wal_failed = live.wal_failure().is_some();
        g.rows_ingested = live.counters().rows_ingested.load(Relaxed);
        g.busy_rejections = live.counters().busy_rejections.load(Relaxed);
    }
    for s in stats {
        g.series += 1;
        g.rows += s.rows;
        g.files += s.files as u64;
        g.bytes += s.bytes;
    }
    g
}

/// `GET /v1/status`: storage totals, uptime and version.
pub(super) async fn status(State(app): State<App>) -> Result<Json<Value>, ApiError> {
    let store = app.store()?;
    let stats = store.stats();
    let g = gauges(&app, Some(&store), &stats);
    let symbols: std::collections::BTreeSet<_> = stats.iter().map(|s| &s.symbol).collect();
    Ok(Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": g.uptime_seconds,
        "store": store.url(),
        "catalog_version": store.catalog().snapshot().seq.0,
        // What `x-tickvault-version` says of a read of the latest version, and what
        // `?version=` takes.
        "table_version": store.table_version(),
        "symbols": symbols.len(),
        "series": g.series,
        "rows": g.rows,
        "files": g.files,
        "bytes": g.bytes,
        "queries_running": app.metrics.queries_running(),
        "query_tasks": g.query_tasks,
        "read_only": store.is_read_only(),
        "requests": store.requests(),
        "disk_cache": store.disk_cache().map(|c| c.counts()),
        "live": live_status(&app, &store),
        "jobs": {
            "transfer": app.job_state(Job::Transfer),
            "compact": app.job_state(Job::Compact),
        },
    })))
}

/// The live tier, its WAL and the ingest counters.
fn live_status(app: &App, store: &crate::Store) -> Value {
    use std::sync::atomic::Ordering::Relaxed;
    let Some(live) = store.live() else {
        return Value::Null;
    };
    let (rows, bytes, series) = {
        let tier = live.read();
        (tier.rows(), tier.bytes(), tier.series_count())
    };
    let wal = live.wal_stats();
    let recovery = live.recovery();
    let c = live.counters();
    json!({
        "rows": rows,
        "bytes": bytes,
        "series": series,
        "max_bytes": live.options().max_bytes,
        "wal": {
            "dir": live.options().wal_dir.display().to_string(),
            "segments": wal.segments,
            "bytes": wal.bytes,
            "next_lsn": wal.next_lsn,
            "failed": live.wal_failure(),
        },
        "recovery": {
            "records": recovery.records,
            "rows": recovery.rows,
            "duration_ms": recovery.duration.as_secs_f64() * 1000.0,
            "torn_tail_bytes": recovery.torn_tail_bytes,
            "damaged_segments": recovery.damaged.iter().map(|d| json!({
                "moved_to": d.path, "offsets": d.offsets, "records_kept": d.records_kept,
                "new": d.new,
            })).collect::<Vec<_>>(),
        },
        "ingest": {
            "rows": c.rows_ingested.load(Relaxed),
            "writes": c.writes.load(Relaxed),
            "group_commits": c.group_commits.load(Relaxed),
            "busy_rejections": c.busy_rejections.load(Relaxed),
            "rejected_requests": app.ingest_rejected.load(Relaxed),
        },
    })
}

/// `GET /metrics` in the Prometheus text format.
pub(super) async fn metrics(State(app): State<App>) -> Response {
    let store = app.store().ok();
    let stats = store.as_ref().map(|s| s.stats()).unwrap_or_default();
    let mut text = app.metrics.render(&gauges(&app, store.as_deref(), &stats));
    text.push_str(&super::sync_metrics::render(&app));
    if let Some(store) = &store {
        text.push_str(&super::store_metrics::render(store));
    }
    let mut response = text.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

pub(super) async fn openapi() -> Response {
    let mut response = OPENAPI.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// `POST /v1/compact` (write scope): merges partitions with several files.
pub(super) async fn compact(State(app): State<App>) -> Result<Json<Value>, ApiError> {
    let store = app.store()?;
    let s = store.compact().await?;
    Ok(Json(json!({
        "partitions_compacted": s.partitions_compacted,
        "files_removed": s.files_removed,
        "files_added": s.files_added,
        "partitions_conflicted": s.partitions_conflicted,
    })))
}

pub(super) async fn not_found() -> ApiError {
    ApiError::not_found("no such route; see /v1/openapi.json")
}

pub(super) async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not take that method; see /v1/openapi.json",
    )
}
