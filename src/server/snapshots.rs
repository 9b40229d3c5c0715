//! `/v1/snapshots`: named snapshots, table versions pinned for reproducible reads.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::App;
use super::error::ApiError;
use super::extract::{Path, body_rejection};
use crate::model::time::rfc3339;
use crate::snapshots::NamedSnapshot;

/// A snapshot as the API shows it.
fn snapshot_json(s: &NamedSnapshot) -> Value {
    json!({
        "name": s.name,
        "version": s.version,
        "created": rfc3339(s.created),
    })
}

/// `GET /v1/snapshots`: every named snapshot, by name.
pub(super) async fn list(State(app): State<App>) -> Result<Json<Value>, ApiError> {
    let all = app.store()?.snapshots().await?;
    Ok(Json(Value::Array(all.iter().map(snapshot_json).collect())))
}

/// `GET /v1/snapshots/{name}`.
pub(super) async fn get(
    State(app): State<App>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(snapshot_json(&app.store()?.snapshot(&name).await?)))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateRequest {
    name: String,
    /// The version to pin; the latest when absent.
    version: Option<u64>,
}

/// `POST /v1/snapshots` `{"name": "...", "version": N}` (write): pins a version (the latest
/// without `version`); 201 with the snapshot, 409 if the name is taken.
pub(super) async fn create(
    State(app): State<App>,
    body: Result<Json<CreateRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Json(body) = body.map_err(|e| body_rejection(e.status(), e.body_text()))?;
    let created = app
        .store()?
        .create_snapshot(&body.name, body.version)
        .await?;
    Ok((StatusCode::CREATED, Json(snapshot_json(&created))))
}

/// `DELETE /v1/snapshots/{name}` (write): the snapshot it deleted.
pub(super) async fn delete(
    State(app): State<App>,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(snapshot_json(
        &app.store()?.delete_snapshot(&name).await?,
    )))
}
