//! `tickvault serve`: the HTTP API over a store (axum).
//!
//! The server binds first and opens the store in the background, so `/health` answers at once
//! and `/ready` turns true when the catalog is loaded. Every `/v1` route and `/metrics` need a
//! bearer token when tokens are configured; without tokens the server only listens on loopback.

mod actions;
mod auth;
mod error;
mod executor;
mod extract;
mod info;
mod ingest;
mod jobs;
mod metrics;
mod output;
mod query;
mod repeatable;
mod result_cache;
mod snapshots;
mod store_metrics;
mod sync;
mod sync_metrics;
mod timeframe;

use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::handler::Handler;
use axum::http::Method;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter, on};
use axum::serve::ListenerExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

pub use error::ApiError;
pub use info::OPENAPI;
pub use metrics::Metrics;

use crate::Store;
use crate::config::{Config, Scope};
use crate::sync::syncer::Syncer;

/// Shared by every handler.
#[derive(Clone)]
pub struct App(Arc<AppInner>);

pub struct AppInner {
    pub config: Config,
    store: OnceLock<Arc<Store>>,
    sync: OnceLock<Arc<Syncer>>,
    pub metrics: Metrics,
    query_slots: Arc<Semaphore>,
    /// Where queries run, apart from the runtime that answers requests.
    queries: executor::QueryExecutor,
    /// Finished SQL answers, sent again while the store is unchanged.
    pub results: Arc<result_cache::ResultCache>,
    started: Instant,
    /// The background jobs; started when the store is loaded.
    scheduler: OnceLock<Arc<crate::sync::scheduler::Scheduler>>,
    /// Write requests refused (bad body, bad rows, busy).
    pub ingest_rejected: AtomicU64,
    /// The configured tokens as requests are checked against them.
    token_digests: Vec<auth::TokenDigest>,
}

impl std::ops::Deref for App {
    type Target = AppInner;
    fn deref(&self) -> &AppInner {
        &self.0
    }
}

impl App {
    pub fn new(config: Config) -> Self {
        let slots = config.max_concurrent_queries;
        App(Arc::new(AppInner {
            store: OnceLock::new(),
            sync: OnceLock::new(),
            metrics: Metrics::default(),
            query_slots: Arc::new(Semaphore::new(slots)),
            // Like the server's own runtime: without threads there is no server.
            queries: executor::QueryExecutor::new().expect("the query runtime starts"),
            results: Arc::new(result_cache::ResultCache::new(
                usize::try_from(config.query_cache.0).unwrap_or(usize::MAX),
            )),
            started: Instant::now(),
            scheduler: OnceLock::new(),
            ingest_rejected: AtomicU64::new(0),
            token_digests: auth::TokenDigest::all(&config.tokens),
            config,
        }))
    }

    /// Makes the store available; `/ready` is true from here on.
    pub fn set_store(&self, store: Arc<Store>) {
        let _ = self.store.set(store);
    }

    pub fn store(&self) -> Result<Arc<Store>, ApiError> {
        self.store.get().cloned().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                "the server is still loading the catalog",
            )
            .with_retry_after(1)
        })
    }
}

impl App {
    /// Stage 2 (providers, registry, ledger); ready with the store.
    pub fn syncer(&self) -> Result<Arc<Syncer>, ApiError> {
        self.sync.get().cloned().ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                "the server is still loading the catalog",
            )
            .with_retry_after(1)
        })
    }

    pub fn set_syncer(&self, syncer: Arc<Syncer>) {
        let _ = self.sync.set(syncer);
    }
}

/// One route as the router serves it and the OpenAPI document describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub method: Method,
    pub path: &'static str,
    /// `None`: open to anyone (health and readiness probes).
    pub scope: Option<Scope>,
}

/// Builds the router and the list of its routes from one table, so the two cannot drift.
pub fn router(app: App) -> (Router, Vec<Route>) {
    use Method as M;
    let read = Some(Scope::Read);
    let write = Some(Scope::Write);
    let table: Vec<(Route, MethodRouter<App>)> = vec![
        endpoint(M::GET, "/health", None, info::health),
        endpoint(M::GET, "/ready", None, info::ready),
        endpoint(M::GET, "/metrics", read, info::metrics),
        endpoint(M::GET, "/v1/openapi.json", read, info::openapi),
        endpoint(M::GET, "/v1/sql", read, query::sql_get),
        endpoint(M::POST, "/v1/sql", read, query::sql_post),
        endpoint(M::GET, "/v1/bars", read, query::bars_many),
        endpoint(M::GET, "/v1/bars/{symbol}", read, query::bars_one),
        endpoint(M::GET, "/v1/corporate-actions", read, actions::list),
        endpoint(M::GET, "/v1/symbols", read, sync::list),
        endpoint(M::POST, "/v1/symbols", write, sync::track),
        endpoint(M::DELETE, "/v1/symbols/{symbol}", write, sync::untrack),
        endpoint(
            M::POST,
            "/v1/symbols/{symbol}/backfill",
            write,
            sync::backfill_symbol,
        ),
        endpoint(M::DELETE, "/v1/bars/{symbol}", write, sync::delete_bars),
        endpoint(M::GET, "/v1/status", read, info::status),
        endpoint(M::GET, "/v1/snapshots", read, snapshots::list),
        endpoint(M::POST, "/v1/snapshots", write, snapshots::create),
        endpoint(M::GET, "/v1/snapshots/{name}", read, snapshots::get),
        endpoint(M::DELETE, "/v1/snapshots/{name}", write, snapshots::delete),
        endpoint(M::POST, "/v1/compact", write, info::compact),
        endpoint(M::POST, "/v1/write", write, ingest::write),
        endpoint(M::GET, "/v1/sync/status", read, sync::status),
        endpoint(M::POST, "/v1/sync/{job}", write, sync::run_job),
    ];
    let mut router = Router::new();
    let mut routes = Vec::new();
    for (r, handler) in table {
        let handler = match r.scope {
            Some(Scope::Read) => {
                handler.route_layer(middleware::from_fn_with_state(app.clone(), auth::read))
            }
            Some(Scope::Write) => {
                handler.route_layer(middleware::from_fn_with_state(app.clone(), auth::write))
            }
            None => handler,
        };
        router = router.route(r.path, handler);
        routes.push(r);
    }
    let router = router
        .fallback(info::not_found)
        .method_not_allowed_fallback(info::method_not_allowed)
        .layer(DefaultBodyLimit::max(
            usize::try_from(app.config.max_body.0).unwrap_or(usize::MAX),
        ))
        .layer(middleware::from_fn(catch_panic))
        .layer(middleware::from_fn_with_state(app.clone(), track))
        .with_state(app);
    (router, routes)
}

/// A route and its handler for one method; the method router is made from the same method the
/// route records, so the two cannot disagree.
fn endpoint<H, T>(
    method: Method,
    path: &'static str,
    scope: Option<Scope>,
    handler: H,
) -> (Route, MethodRouter<App>)
where
    H: Handler<T, App>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).expect("a method axum routes");
    (
        Route {
            method,
            path,
            scope,
        },
        on(filter, handler),
    )
}

/// Counts every request by route, method and status, and its time to the response head.
/// Labels are bounded whatever clients send: a path no route matches counts as `unmatched`, a
/// method outside the standard ones as `other`.
async fn track(State(app): State<App>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let method = method_label(request.method());
    let response = next.run(request).await;
    if let Some(code) = response.extensions().get::<error::ErrorCode>() {
        app.metrics.record_error(code.0);
    }
    app.metrics.record_request(
        &route,
        method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// The metrics label of a request method: one of the standard methods, else `other`.
fn method_label(method: &Method) -> &'static str {
    const STANDARD: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::CONNECT,
        Method::OPTIONS,
        Method::TRACE,
        Method::PATCH,
    ];
    STANDARD
        .iter()
        .find(|m| *m == method)
        .map_or("other", |m| m.as_str())
}

/// The safety net under every handler: a panic becomes a JSON 500 `internal_panic` (counted in
/// `/metrics` by the error code) instead of a dropped connection. Handlers turn the panics of
/// their blocking tasks back into panics (`resume_unwind`) so they end here too.
async fn catch_panic(request: Request, next: Next) -> Response {
    use futures::FutureExt;
    use std::panic::AssertUnwindSafe;
    match AssertUnwindSafe(next.run(request)).catch_unwind().await {
        Ok(response) => response,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!("a request handler panicked: {what}");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                error::PANIC_CODE,
                "the server failed on this request (an internal error, logged)",
            )
            .into_response()
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "refusing to listen on {0} without tokens: anyone who can reach it could read the store. \
         Configure tokens ([[tokens]] in the config file, --token SCOPE:TOKEN or \
         TICKVAULT_TOKENS) or listen on a loopback address such as 127.0.0.1:8080"
    )]
    OpenWithoutTokens(SocketAddr),
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] crate::config::Error),
    #[error("opening the store: {0}")]
    Store(#[from] crate::Error),
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
    #[error("opening the sync state: {0}")]
    Sync(String),
}

/// A bound server, not yet serving.
pub struct Server {
    listener: TcpListener,
    app: App,
    /// Printed to stderr once every request can be answered (scripts wait for it).
    ready_message: Option<String>,
}

impl Server {
    /// Checks the config's security rules and binds the listen address.
    pub async fn bind(config: Config) -> Result<Self, Error> {
        let addr = config.listen_addr()?;
        if config.tokens.is_empty() && !addr.ip().is_loopback() {
            return Err(Error::OpenWithoutTokens(addr));
        }
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| Error::Bind { addr, source })?;
        Ok(Self {
            listener,
            app: App::new(config),
            ready_message: None,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("bound listener")
    }

    pub fn app(&self) -> &App {
        &self.app
    }

    /// Prints `message` to stderr when the store and the sync state are loaded.
    pub fn announce_when_ready(&mut self, message: String) {
        self.ready_message = Some(message);
    }

    /// Serves until `shutdown` resolves, then lets in-flight requests finish. `open` yields the
    /// store (opened here, after binding, so probes answer while the catalog loads).
    pub async fn serve(
        self,
        open: impl Future<Output = Result<Arc<Store>, crate::Error>>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let addr = self.local_addr();
        if self.app.config.tokens.is_empty() {
            tracing::warn!(
                "no tokens configured: serving without authentication, on loopback only"
            );
            eprintln!("tickvault: no tokens configured, so only this machine can connect ({addr})");
        }
        let (router, _) = router(self.app.clone());
        // Responses stream in several writes: without TCP_NODELAY, Nagle's algorithm holds the
        // last one until the client's (delayed, up to 40 ms) ACK of the one before.
        let listener = self.listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!("could not set TCP_NODELAY: {e}");
            }
        });
        let serving = axum::serve(listener, router).with_graceful_shutdown(shutdown);
        let app = self.app.clone();
        let ready_message = self.ready_message.clone();
        let opening = async move {
            let store = open.await?;
            if let Some(live) = store.live() {
                let r = live.recovery();
                tracing::info!(
                    "WAL replayed: {} records, {} rows in {:.0?}",
                    r.records,
                    r.rows,
                    r.duration
                );
            }
            let providers = app.config.providers()?;
            let syncer = Syncer::open(Arc::clone(&store), providers, app.config.sync_options())
                .await
                .map_err(|e| Error::Sync(e.to_string()))?;
            app.set_syncer(Arc::new(syncer));
            app.set_store(Arc::clone(&store));
            app.start_scheduler(store)
                .map_err(|e| Error::Sync(e.message().to_string()))?;
            tracing::info!("store loaded; ready");
            if let Some(message) = ready_message {
                eprint!("{message}");
            }
            std::future::pending::<Result<(), Error>>().await
        };
        tokio::select! {
            served = serving => served?,
            failed = opening => return failed,
        }
        // Requests in flight have finished: stop the jobs, then move what the live tier holds
        // into Parquet, so a restart has nothing to replay (the WAL would recover it anyway).
        if let Some(scheduler) = self.app.scheduler.get() {
            match scheduler.shutdown().await {
                Some(Ok(report)) => {
                    eprintln!("tickvault: moved {} live rows into Parquet", report.rows())
                }
                Some(Err(e)) => eprintln!(
                    "tickvault: final transfer failed ({e}); the WAL keeps the rows for the next start"
                ),
                None => {}
            }
        }
        Ok(())
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    eprintln!("tickvault: shutting down; finishing requests in flight");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        let brew = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_label(&brew), "other");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_handler_answers_a_json_500_counted_by_code() {
        let app = App::new(Config::default());
        let router = Router::new()
            .route(
                "/boom",
                axum::routing::get(|| async {
                    if true {
                        panic!("a bug");
                    }
                    "unreachable"
                }),
            )
            .layer(middleware::from_fn(catch_panic))
            .layer(middleware::from_fn_with_state(app.clone(), track))
            .with_state(app.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move { axum::serve(listener, router).await });
        for _ in 0..2 {
            let r = reqwest::get(format!("http://{addr}/boom")).await.unwrap();
            assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(body["code"], error::PANIC_CODE, "{body}");
        }
        let text = app.metrics.render(&metrics::StoreGauges::default());
        assert!(
            text.contains("tickvault_errors_total{code=\"internal_panic\"} 2"),
            "{text}"
        );
        server.abort();
    }
}
