//! Errors say what happened: a task that panicked is an internal failure (a 500 naming the
//! panic), never a 400 blaming the request.

use std::sync::Arc;

use axum::http::StatusCode;
use tickvault::Store;
use tickvault::calendar::Calendar;
use tickvault::error::ErrorKind;
use tickvault::model::{Interval, Symbol};
use tickvault::server::ApiError;
use tickvault::sync::provider::{FetchRequest, Fetched, Provider, UpstreamPolicy};
use tickvault::sync::registry::SymbolSpec;
use tickvault::sync::syncer::{BackfillRequest, ProviderHandle, SyncOptions, Syncer};
use tickvault::sync::upstream::{FetchError, Upstream};

use crate::common::{DAY, T2021};

/// A provider whose every fetch panics (a bug in an adapter).
#[derive(Debug)]
struct PanickingProvider;

#[async_trait::async_trait]
impl Provider for PanickingProvider {
    fn kind(&self) -> &'static str {
        "panics"
    }

    fn supports(&self, _: Interval) -> bool {
        true
    }

    fn max_range(&self, _: Interval) -> i64 {
        365 * DAY
    }

    async fn fetch(&self, _: &Upstream, req: &FetchRequest) -> Result<Fetched, FetchError> {
        panic!("the adapter broke on {}", req.symbol)
    }
}

#[tokio::test]
async fn a_fetch_task_that_panics_is_an_internal_error_naming_the_panic() {
    let store = Arc::new(Store::open("memory://").await.unwrap());
    let handle = ProviderHandle::new("up", Arc::new(PanickingProvider), UpstreamPolicy::default());
    let syncer = Syncer::open(store, vec![handle], SyncOptions::default())
        .await
        .unwrap();
    syncer
        .track(SymbolSpec {
            symbol: Symbol::new("AAPL").unwrap(),
            intervals: vec![Interval::D1],
            provider: "up".into(),
            since: T2021,
            calendar: Calendar::UsEquity,
            added_at: 0,
        })
        .await
        .unwrap();
    let err = syncer
        .backfill(&BackfillRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal, "{err}");
    assert!(
        err.to_string().contains("the adapter broke on AAPL"),
        "{err}"
    );
    let api = ApiError::from(err);
    assert_eq!(api.status, StatusCode::INTERNAL_SERVER_ERROR, "{api}");
    assert_eq!(api.code, "internal");
    assert!(api.message().contains("panicked"), "{api}");
}
