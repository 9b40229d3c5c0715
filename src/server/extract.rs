//! axum's `Query` and `Path` extractors with the API's JSON errors: axum answers a query string
//! or path parameter it cannot read with plain text; these answer `{"error", "code"}`.

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// The query string, deserialized; a bad one is a 400 `invalid_parameter`.
pub(super) struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(Query(v)),
            Err(e) => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_parameter",
                e.body_text(),
            )),
        }
    }
}

/// Path parameters, deserialized; one that cannot be read (not UTF-8 once percent-decoded) is
/// a 400 `invalid_path`.
pub(super) struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(e) => {
                let status = e.status();
                let code = if status.is_server_error() {
                    "internal"
                } else {
                    "invalid_path"
                };
                Err(ApiError::new(status, code, e.body_text()))
            }
        }
    }
}

/// A body axum could not read, as an API error: 413 past `max_body`, else 400 (axum's 415 and
/// 422 for JSON bodies included, as the API answers every other bad body).
pub(super) fn body_rejection(status: StatusCode, text: String) -> ApiError {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(status, "body_too_large", text),
        s if s.is_server_error() => ApiError::new(status, "internal", text),
        _ => ApiError::new(StatusCode::BAD_REQUEST, "invalid_body", text),
    }
}
