//! Bearer tokens with read and write scopes. With no tokens configured every request is let
//! through (the server then listens on loopback only).

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::App;
use super::error::ApiError;
use crate::config::Scope;
use crate::error::ErrorKind;

pub(super) async fn read(State(app): State<App>, request: Request, next: Next) -> Response {
    check(&app, Scope::Read, request, next).await
}

pub(super) async fn write(State(app): State<App>, request: Request, next: Next) -> Response {
    if app.config.read_only {
        // Checked before the token: no token makes a replica writable.
        return ApiError::of_kind(
            ErrorKind::ReadOnly,
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

/// A configured token as the server compares it: its SHA-256, so comparing takes the same time
/// whatever the token's length or content.
pub(super) struct TokenDigest {
    digest: [u8; 32],
    scope: Scope,
}

impl TokenDigest {
    pub(super) fn all(tokens: &[crate::config::Token]) -> Vec<TokenDigest> {
        tokens
            .iter()
            .map(|t| TokenDigest {
                digest: sha256(t.token.as_bytes()),
                scope: t.scope,
            })
            .collect()
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

/// The token of an `Authorization: Bearer <token>` value; the scheme is case-insensitive
/// (RFC 7235) and may be followed by any number of spaces.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

fn authorize(app: &App, needed: Scope, headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    if app.config.tokens.is_empty() {
        return Ok(());
    }
    let unauthorized = |msg: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", msg);
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| unauthorized("missing token: send Authorization: Bearer <token>"))?;
    let presented = value
        .to_str()
        .ok()
        .and_then(bearer_token)
        .ok_or_else(|| unauthorized("the Authorization header must be: Bearer <token>"))?;
    // Digests of equal length compared in full against every token: the time taken tells
    // nothing about any token, its length included.
    let presented = sha256(presented.as_bytes());
    let mut granted = None;
    for t in &app.token_digests {
        if constant_time_eq(&t.digest, &presented) {
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

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(&sha256(b"abc"), &sha256(b"abc")));
        assert!(!constant_time_eq(&sha256(b"abc"), &sha256(b"abd")));
        assert!(!constant_time_eq(&sha256(b"abc"), &sha256(b"abcd")));
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for v in [
            "Bearer s3cret",
            "bearer s3cret",
            "BEARER s3cret",
            "bEaReR   s3cret ",
        ] {
            assert_eq!(bearer_token(v), Some("s3cret"), "{v}");
        }
        for v in [
            "Basic s3cret",
            "Bearer",
            "Bearer ",
            "Bearers3cret",
            "Token s3cret",
        ] {
            assert_eq!(bearer_token(v), None, "{v}");
        }
    }
}
