//! Bearer tokens with read and write scopes. With no tokens configured every request is let
//! through (the server then listens on loopback only).

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::App;
use super::error::ApiError;
use crate::config::Scope;

pub async fn read(State(app): State<App>, request: Request, next: Next) -> Response {
    check(&app, Scope::Read, request, next).await
}

pub async fn write(State(app): State<App>, request: Request, next: Next) -> Response {
    if app.config.read_only {
        // Checked before the token: no token makes a replica writable.
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "read_only",
            "this server is a read-only replica (--read-only); send writes to the writer",
        )
        .into_response();
    }
    check(&app, Scope::Write, request, next).await
}

async fn check(app: &App, needed: Scope, request: Request, next: Next) -> Response {
    match authorize(app, needed, request.headers()) {
        Ok(()) => next.run(request).await,
        Err(e) => e.into_response(),
    }
}

fn authorize(app: &App, needed: Scope, headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let tokens = &app.config.tokens;
    if tokens.is_empty() {
        return Ok(());
    }
    let unauthorized = |msg: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", msg);
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("missing token: send Authorization: Bearer <token>"))?;
    let presented = value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(|| unauthorized("the Authorization header must be: Bearer <token>"))?;
    // Compare against every token in constant time, so timing tells nothing about a token.
    let mut granted = None;
    for t in tokens {
        if constant_time_eq(t.token.as_bytes(), presented.as_bytes()) {
            granted = Some(t.scope);
        }
    }
    let scope = granted.ok_or_else(|| unauthorized("unknown token"))?;
    if !scope.allows(needed) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "this token has the {} scope; this route needs {}",
                scope.as_str(),
                needed.as_str()
            ),
        ));
    }
    Ok(())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
