//! Every error the HTTP API returns: `{"error": "...", "code": "..."}` with a fitting status.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use datafusion::error::DataFusionError;

use crate::error::ErrorKind;
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
pub(super) const PANIC_CODE: &str = "internal_panic";

/// Put on error responses so the metrics layer can count errors by code.
#[derive(Debug, Clone, Copy)]
pub(super) struct ErrorCode(pub &'static str);

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
        Self::of_kind(ErrorKind::Internal, message)
    }

    /// An error of a kind: the one place a kind of failure gets its status and code.
    pub fn of_kind(kind: ErrorKind, message: impl Into<String>) -> Self {
        let (status, code) = match kind {
            ErrorKind::InvalidInput => (StatusCode::BAD_REQUEST, "invalid_request"),
            ErrorKind::InvalidRow => (StatusCode::BAD_REQUEST, "invalid_row"),
            ErrorKind::InvalidCorporateAction => {
                (StatusCode::UNPROCESSABLE_ENTITY, "bad_corporate_action")
            }
            ErrorKind::InvalidSql => (StatusCode::BAD_REQUEST, "sql_error"),
            ErrorKind::SqlLimit => (StatusCode::BAD_REQUEST, "sql_limit"),
            ErrorKind::QueryFailed => (StatusCode::BAD_REQUEST, "query_failed"),
            ErrorKind::ReadOnly => (StatusCode::FORBIDDEN, "read_only"),
            ErrorKind::NotTracked => (StatusCode::NOT_FOUND, "not_tracked"),
            ErrorKind::Conflict => (StatusCode::CONFLICT, "conflict"),
            ErrorKind::UnknownVersion => (StatusCode::NOT_FOUND, "unknown_version"),
            ErrorKind::VersionGone => (StatusCode::GONE, "version_gone"),
            ErrorKind::UnknownSnapshot => (StatusCode::NOT_FOUND, "unknown_snapshot"),
            ErrorKind::SnapshotExists => (StatusCode::CONFLICT, "snapshot_exists"),
            ErrorKind::Busy => (StatusCode::TOO_MANY_REQUESTS, "busy"),
            // Ours to fix, so a 500, and counted by its code.
            ErrorKind::Damaged => (StatusCode::INTERNAL_SERVER_ERROR, "damaged_file"),
            ErrorKind::MemoryLimit => (StatusCode::INSUFFICIENT_STORAGE, "memory_limit"),
            ErrorKind::WalUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "wal_unavailable"),
            ErrorKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        let error = Self::new(status, code, message);
        match kind {
            ErrorKind::Busy => error.with_retry_after(1),
            _ => error,
        }
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
        Self::of_kind(query::datafusion_kind(e), datafusion_message(e))
    }
}

/// A query error's message: the damaged file, the memory limit with what to do about it, the
/// root cause for the user's SQL (DataFusion's wrappers say nothing to a client), or all of it.
fn datafusion_message(e: &DataFusionError) -> String {
    if let Some(damage) = find_damage(e) {
        return damaged_message(damage);
    }
    let root = e.find_root();
    match (query::datafusion_kind(e), root) {
        (_, DataFusionError::ResourcesExhausted(msg)) => format!(
            "the query needs more memory than the server's query memory limit allows; narrow it \
             (fewer symbols, a shorter range, fewer groups) or raise query_memory: {msg}"
        ),
        (ErrorKind::InvalidSql | ErrorKind::QueryFailed, _) => root.to_string(),
        _ => e.to_string(),
    }
}

fn damaged_message(e: &DamagedFile) -> String {
    format!("{e}; the query was stopped rather than answered from it")
}

impl From<query::Error> for ApiError {
    fn from(e: query::Error) -> Self {
        match e {
            query::Error::DataFusion(e) => Self::from_datafusion(&e),
            e => Self::of_kind(e.kind(), e.to_string()),
        }
    }
}

impl From<store::Error> for ApiError {
    fn from(e: store::Error) -> Self {
        let message = match (e.damage(), &e) {
            (Some(damage), _) => damaged_message(damage),
            (_, store::Error::Query(query::Error::DataFusion(source)))
            | (_, store::Error::Adjust(crate::adjust::Error::Read { source, .. })) => {
                datafusion_message(source)
            }
            _ => e.to_string(),
        };
        Self::of_kind(e.kind(), message)
    }
}

impl From<crate::sync::syncer::Error> for ApiError {
    fn from(e: crate::sync::syncer::Error) -> Self {
        match e {
            crate::sync::syncer::Error::Store(e) => e.into(),
            e => Self::of_kind(e.kind(), e.to_string()),
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
pub(super) fn redact_paths(message: &str) -> String {
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
    use axum::http::StatusCode;
    use datafusion::error::DataFusionError;

    use super::{ApiError, redact_paths};
    use crate::sync::syncer;
    use crate::{catalog, live, query, store, write};

    fn status_and_code(e: impl Into<ApiError>) -> (StatusCode, &'static str) {
        let e = e.into();
        (e.status, e.code)
    }

    /// A task that panicked or was cancelled is ours (500 `internal`), and the message says
    /// which and carries the panic's message; it was a 400 `invalid_request` for a sync.
    #[tokio::test]
    async fn failed_tasks_are_internal_errors_that_say_what_failed() {
        let panicked = tokio::spawn(async { panic!("boom in the task") })
            .await
            .unwrap_err();
        let e = ApiError::from(syncer::Error::from(panicked));
        assert_eq!(
            (e.status, e.code),
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        );
        assert!(e.message().contains("boom in the task"), "{e}");

        let pending = tokio::spawn(std::future::pending::<()>());
        pending.abort();
        let cancelled = pending.await.unwrap_err();
        let e = ApiError::from(syncer::Error::from(cancelled));
        assert_eq!(
            (e.status, e.code),
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        );
        assert!(e.message().contains("cancelled"), "{e}");

        let panicked = tokio::task::spawn_blocking(|| panic!("boom while encoding"))
            .await
            .unwrap_err();
        let e = ApiError::from(store::Error::Write(write::Error::Task(panicked)));
        assert_eq!(
            (e.status, e.code),
            (StatusCode::INTERNAL_SERVER_ERROR, "internal")
        );
        assert!(e.message().contains("boom while encoding"), "{e}");
    }

    /// Each kind keeps the status and code clients branch on, through every wrapper.
    #[test]
    fn kinds_keep_their_status_and_code() {
        let df = |e: DataFusionError| store::Error::Query(query::Error::DataFusion(e));
        let cases: Vec<(store::Error, StatusCode, &str)> = vec![
            (
                store::Error::InvalidInput("x".into()),
                StatusCode::BAD_REQUEST,
                "invalid_request",
            ),
            (
                df(DataFusionError::Plan("no table".into())),
                StatusCode::BAD_REQUEST,
                "sql_error",
            ),
            (
                df(DataFusionError::Execution("cast".into())),
                StatusCode::BAD_REQUEST,
                "query_failed",
            ),
            (
                df(DataFusionError::ResourcesExhausted("pool".into())),
                StatusCode::INSUFFICIENT_STORAGE,
                "memory_limit",
            ),
            (
                df(DataFusionError::Internal("bug".into())),
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
            ),
            (
                store::Error::Query(query::Error::ReadOnly("INSERT".into())),
                StatusCode::FORBIDDEN,
                "read_only",
            ),
            (
                store::Error::Catalog(catalog::Error::ReadOnly("import".into())),
                StatusCode::FORBIDDEN,
                "read_only",
            ),
            (
                store::Error::Live(live::Error::Busy { bytes: 2, max: 1 }),
                StatusCode::TOO_MANY_REQUESTS,
                "busy",
            ),
            (
                store::Error::Live(live::Error::WalFailed("disk".into())),
                StatusCode::SERVICE_UNAVAILABLE,
                "wal_unavailable",
            ),
            (
                store::Error::NoLiveTier,
                StatusCode::SERVICE_UNAVAILABLE,
                "wal_unavailable",
            ),
            (
                store::Error::Write(write::Error::Catalog(catalog::Error::TooManyAttempts(50))),
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
            ),
        ];
        for (e, status, code) in cases {
            let shown = e.to_string();
            assert_eq!(status_and_code(e), (status, code), "{shown}");
        }
        let busy = ApiError::from(store::Error::Live(live::Error::Busy { bytes: 2, max: 1 }));
        assert_eq!(busy.retry_after_secs, Some(1));
        assert_eq!(
            status_and_code(syncer::Error::Invalid("start must be before end".into())),
            (StatusCode::BAD_REQUEST, "invalid_request")
        );
        // The memory limit's message says what to do; the user's SQL gets the root cause.
        let e = ApiError::from(df(DataFusionError::ResourcesExhausted("pool".into())));
        assert!(e.message().contains("raise query_memory: pool"), "{e}");
    }

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
