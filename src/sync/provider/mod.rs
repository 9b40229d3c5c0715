//! Upstream market-data providers: one trait, one adapter per API.
//!
//! An adapter knows its API's URLs, pagination, page and range limits, and how its answers map
//! to `bars` rows (timezone, units, seconds vs milliseconds, nulls). Every HTTP call goes through
//! [`Upstream`], which adds the timeout, rate limit, concurrency bound, retries and circuit
//! breaker, so adapters stay about formats only.

mod alpaca;
mod binance;
mod convert;
mod csv_http;
mod polygon;
mod yahoo;

use std::sync::Arc;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

pub use super::settings::ProviderConfig;
pub use super::upstream::{FetchError, Upstream, UpstreamPolicy};
use crate::actions::CorporateAction;
use crate::model::{Interval, Symbol};

pub use alpaca::Alpaca;
pub use binance::Binance;
pub use csv_http::CsvHttp;
pub use polygon::Polygon;
pub use yahoo::Yahoo;

#[cfg(any(test, feature = "test-support"))]
pub(crate) use convert::encode as encode_symbol;

/// Bars of one series with open time in `[start, end)` (µs UTC): one provider-sized chunk.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchRequest {
    pub symbol: Symbol,
    pub interval: Interval,
    pub start: i64,
    pub end: i64,
    /// The provider's own splits of the symbol, when the caller already asked for them in this
    /// sync. An adapter whose prices come split-adjusted as of the request
    /// ([`Provider::needs_splits`]) needs every split after its bars to return them raw: it
    /// trusts these as they are (a split whose ex-date session opens during the sync is missed
    /// for the ranges fetched after it), and without them asks for the splits itself unless
    /// its answer reaches the moment of the request.
    pub splits: Option<Arc<KnownSplits>>,
}

impl FetchRequest {
    pub fn new(symbol: Symbol, interval: Interval, start: i64, end: i64) -> Self {
        Self {
            symbol,
            interval,
            start,
            end,
            splits: None,
        }
    }
}

/// Splits of one symbol as one provider knew them at `as_of`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct KnownSplits {
    /// When the provider was asked (µs UTC): splits whose ex-date session opened later are
    /// not in `splits`.
    pub as_of: i64,
    /// Ex-date and ratio (new shares per old).
    pub splits: Vec<(NaiveDate, f64)>,
}

impl KnownSplits {
    /// The splits among `actions` (events of one symbol), known as of `as_of`.
    pub fn from_actions<'a>(
        actions: impl IntoIterator<Item = &'a CorporateAction>,
        as_of: i64,
    ) -> Self {
        let splits = actions
            .into_iter()
            .filter_map(|a| Some((a.ex_date, a.ratio?)))
            .collect();
        Self { as_of, splits }
    }
}

/// What one [`Provider::fetch_actions`] found: valid events of the asked symbol, the events the
/// rules refused (never stored), and HTTP requests made.
#[derive(Debug, Default)]
pub struct FetchedActions {
    pub actions: Vec<CorporateAction>,
    pub rejected: Vec<Rejected>,
    pub requests: u32,
}

/// One bar as a provider reported it, mapped to the `bars` conventions (open time in µs UTC,
/// aligned as the interval requires: daily bars at 00:00 UTC of the trading date) but not yet
/// validated: a bar that breaks a rule goes to quarantine, never into `bars`.
#[derive(Debug, Clone, PartialEq)]
pub struct RawBar {
    pub ts: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
    pub vwap: Option<f64>,
    pub trades: Option<i64>,
}

/// A row of a provider's answer that could not be mapped to a bar (e.g. some fields null).
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    /// Open time if it could be read, µs UTC.
    pub ts: Option<i64>,
    /// The row as the provider sent it, for the operator.
    pub raw: String,
    pub reason: String,
}

/// What one [`Provider::fetch`] found: bars (any order, possibly duplicated or outside the
/// range; the caller sorts, dedupes and trims), rows it could not map, and HTTP requests made.
#[derive(Debug, Default)]
pub struct Fetched {
    pub bars: Vec<RawBar>,
    pub rejected: Vec<Rejected>,
    pub requests: u32,
}

#[async_trait::async_trait]
pub trait Provider: Send + Sync + std::fmt::Debug {
    /// The adapter kind, e.g. `yahoo`.
    fn kind(&self) -> &'static str;

    /// Whether the API serves bars of this interval.
    fn supports(&self, interval: Interval) -> bool;

    /// The longest `[start, end)` one chunk covers at this interval (µs): the range the stage 2
    /// job asks for at once. Chosen so one chunk is one request where the API allows.
    fn max_range(&self, interval: Interval) -> i64;

    /// Fetches the bars of `req`, following the API's pagination. Every request goes through
    /// `upstream`.
    async fn fetch(&self, upstream: &Upstream, req: &FetchRequest) -> Result<Fetched, FetchError>;

    /// Whether the API serves corporate actions ([`Provider::fetch_actions`]).
    fn serves_actions(&self) -> bool {
        false
    }

    /// Whether the API's prices are split-adjusted as of the request, so [`Provider::fetch`]
    /// needs every split after its bars ([`FetchRequest::splits`]) to return them raw.
    fn needs_splits(&self) -> bool {
        false
    }

    /// The splits and cash dividends of `symbol` with ex-date in `[start, end]`, following the
    /// API's pagination, as raw per-share values (a dividend before a later split is not
    /// divided by it). Events the rules refuse are in `rejected`.
    async fn fetch_actions(
        &self,
        _upstream: &Upstream,
        symbol: &Symbol,
        _start: NaiveDate,
        _end: NaiveDate,
    ) -> Result<FetchedActions, FetchError> {
        Err(FetchError::Invalid(format!(
            "{} does not serve corporate actions (asked for {symbol})",
            self.kind()
        )))
    }
}

/// Which adapter a configured provider uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    Yahoo,
    Polygon,
    Alpaca,
    Binance,
    /// Daily CSV from a URL template (Stooq style).
    Csv,
}

/// Builds the adapter a config names.
pub fn build(config: &ProviderConfig) -> Result<Arc<dyn Provider>, String> {
    let base = config.base_url.clone();
    Ok(match config.kind {
        ProviderKind::Yahoo => Arc::new(Yahoo::new(base)),
        ProviderKind::Polygon => Arc::new(Polygon::new(base, config.api_key.clone())),
        ProviderKind::Alpaca => Arc::new(Alpaca::new(
            base,
            config.api_key.clone(),
            config.api_secret.clone(),
        )),
        ProviderKind::Binance => Arc::new(Binance::new(base)),
        ProviderKind::Csv => {
            let template = config
                .url_template
                .clone()
                .ok_or("a csv provider needs url_template")?;
            Arc::new(CsvHttp::new(base, template)?)
        }
    })
}
