//! Every error the HTTP API returns: `{"error": "...", "code": "..."}` with a fitting status.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use datafusion::error::DataFusionError;

use crate::storage::{DamagedFile, find_damage};
use crate::{query, store};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable, machine-readable: clients branch on it, `/metrics` counts by it.
    pub code: &'static str,
    pub message: String,
    pub retry_after_secs: Option<u64>,
}

/// The code of a response to a request whose handler panicked.
pub const PANIC_CODE: &str = "internal_panic";

/// Put on error responses so the metrics layer can count errors by code.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    /// A request parameter that cannot be used; the message names it.
    pub fn bad_param(name: &str, message: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_parameter",
            format!("{name}: {message}"),
        )
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// A data file that failed its checksum: ours to fix, so a 500, and counted by its code.
    pub fn damaged(e: &DamagedFile) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "damaged_file",
            format!("{e}; the query was stopped rather than answered from it"),
        )
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn with_retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    /// Classifies a query error: the user's SQL (400), the memory limit (507), or ours (500).
    pub fn from_datafusion(e: &DataFusionError) -> Self {
        if let Some(damage) = find_damage(e) {
            return Self::damaged(damage);
        }
        let root = e.find_root();
        match root {
            DataFusionError::ResourcesExhausted(msg) => Self::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "memory_limit",
                format!(
                    "the query needs more memory than the server's query memory limit allows; \
                     narrow it (fewer symbols, a shorter range, fewer groups) or raise \
                     query_memory: {msg}"
                ),
            ),
            DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_)
            | DataFusionError::Configuration(_) => {
                Self::new(StatusCode::BAD_REQUEST, "sql_error", root.to_string())
            }
            DataFusionError::Execution(_) | DataFusionError::ArrowError(..) => {
                Self::new(StatusCode::BAD_REQUEST, "query_failed", root.to_string())
            }
            _ => Self::internal(e.to_string()),
        }
    }
}

impl From<query::Error> for ApiError {
    fn from(e: query::Error) -> Self {
        match e {
            query::Error::ReadOnly(_) => {
                Self::new(StatusCode::FORBIDDEN, "read_only", e.to_string())
            }
            query::Error::Limit(_) => {
                Self::new(StatusCode::BAD_REQUEST, "sql_limit", e.to_string())
            }
            query::Error::DataFusion(e) => Self::from_datafusion(&e),
        }
    }
}

impl From<store::Error> for ApiError {
    fn from(e: store::Error) -> Self {
        if let Some(damage) = e.damage() {
            return Self::damaged(damage);
        }
        match e {
            store::Error::Query(e) => e.into(),
            store::Error::Adjust(crate::adjust::Error::BadEvent(_)) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "bad_corporate_action",
                e.to_string(),
            ),
            // Reading a dividend's previous close failed as a query would (a timeout, a
            // resource limit).
            store::Error::Adjust(crate::adjust::Error::Read { source, .. }) => {
                Self::from_datafusion(&source)
            }
            store::Error::InvalidInput(_) | store::Error::InvalidRow { .. } => {
                Self::new(StatusCode::BAD_REQUEST, "invalid_request", e.to_string())
            }
            store::Error::Write(crate::write::Error::InvalidRow { .. }) => {
                Self::new(StatusCode::BAD_REQUEST, "invalid_row", e.to_string())
            }
            store::Error::Live(crate::live::Error::Busy { .. }) => {
                Self::new(StatusCode::TOO_MANY_REQUESTS, "busy", e.to_string()).with_retry_after(1)
            }
            store::Error::Live(crate::live::Error::WalFailed(_)) | store::Error::NoLiveTier => {
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "wal_unavailable",
                    e.to_string(),
                )
            }
            store::Error::Write(crate::write::Error::Catalog(
                crate::catalog::Error::Conflict { .. },
            ))
            | store::Error::Catalog(crate::catalog::Error::Conflict { .. }) => {
                Self::new(StatusCode::CONFLICT, "conflict", e.to_string())
            }
            e => Self::internal(e.to_string()),
        }
    }
}

impl From<crate::sync::syncer::Error> for ApiError {
    fn from(e: crate::sync::syncer::Error) -> Self {
        use crate::sync::syncer::Error as E;
        match e {
            E::Store(e) => e.into(),
            E::Invalid(m) => Self::new(StatusCode::BAD_REQUEST, "invalid_request", m),
            E::NotTracked(_) => Self::new(StatusCode::NOT_FOUND, "not_tracked", e.to_string()),
            E::Log(_) | E::Actions(_) => Self::internal(e.to_string()),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let message = if self.status.is_server_error() {
            // The log keeps the full message; the client gets no server paths.
            tracing::warn!(code = self.code, "{}", self.message);
            redact_paths(&self.message)
        } else {
            self.message
        };
        let body = serde_json::json!({ "error": message, "code": self.code });
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after_secs {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"tickvault\""),
            );
        }
        response.extensions_mut().insert(ErrorCode(self.code));
        response
    }
}

/// Top-level directories of a store (and of the WAL beside it): a path through one is shown from
/// there on.
const STORE_DIRS: [&str; 5] = ["bars", "_catalog", "_sync", "_tickvault", "_wal"];

/// A message with every absolute filesystem path shown relative to the store when it lies in one
/// (`bars/timeframe=1d/...`) and as `.../<file name>` otherwise, so a client learns nothing of
/// the server's filesystem. Only paths of two components or more (`/a/b`) count.
pub fn redact_paths(message: &str) -> String {
    let starts_token =
        |prev: Option<char>| prev.is_none_or(|c| c.is_whitespace() || "\"'`([{<=,:".contains(c));
    let ends_token = |c: char| c.is_whitespace() || "\"'`)]}>,".contains(c);
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    let mut prev: Option<char> = None;
    while let Some(c) = rest.chars().next() {
        let path_start = c == '/'
            && starts_token(prev)
            && rest[1..]
                .chars()
                .next()
                .is_some_and(|n| n.is_alphanumeric() || "._-".contains(n));
        if path_start {
            let len = rest.find(ends_token).unwrap_or(rest.len());
            // Punctuation that ends a sentence or a message part is not part of the path.
            let path = rest[..len].trim_end_matches([':', '.', ';']);
            let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
            if parts.len() >= 2 {
                match parts.iter().rposition(|p| STORE_DIRS.contains(p)) {
                    Some(i) => out.push_str(&parts[i..].join("/")),
                    None => {
                        out.push_str(".../");
                        out.push_str(parts[parts.len() - 1]);
                    }
                }
            } else {
                out.push_str(path);
            }
            prev = path.chars().last();
            rest = &rest[path.len()..];
            continue;
        }
        out.push(c);
        prev = Some(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::redact_paths;

    #[test]
    fn absolute_paths_become_store_relative_or_hidden() {
        assert_eq!(
            redact_paths(
                "Generic LocalFileSystem error: Unable to open file /srv/data/bars/timeframe=1d/\
                 symbol=AAPL/year=2021/0f.parquet: No such file or directory (os error 2)"
            ),
            "Generic LocalFileSystem error: Unable to open file bars/timeframe=1d/symbol=AAPL/\
             year=2021/0f.parquet: No such file or directory (os error 2)"
        );
        assert_eq!(
            redact_paths("reading \"/home/me/store/_catalog/log/00000000000000000003.json\""),
            "reading \"_catalog/log/00000000000000000003.json\""
        );
        assert_eq!(
            redact_paths("WAL failed (/var/lib/tv-wal/wal-00000001.log)."),
            "WAL failed (.../wal-00000001.log)."
        );
        assert_eq!(
            redact_paths("a store under /srv/bars/x/bars/timeframe=1m/f.parquet"),
            "a store under bars/timeframe=1m/f.parquet"
        );
        // URLs, ratios and lone slashes are left alone.
        for same in [
            "s3://bucket/bars/x.parquet failed",
            "http://127.0.0.1:9000/bucket",
            "1 / 2 and a/b and /tmp",
            "",
        ] {
            assert_eq!(redact_paths(same), same);
        }
    }
}
