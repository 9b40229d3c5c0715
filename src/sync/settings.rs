//! A provider's config table, `[providers.NAME]`: which adapter, where, with which credentials,
//! and how calls behave (rate limit, concurrency, timeout, retries, circuit breaker).

use serde::{Deserialize, Serialize};

use super::provider::{ProviderKind, UpstreamPolicy};
use crate::units::Seconds;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub kind: ProviderKind,
    /// The API's base URL (default: the public API of `kind`).
    #[serde(default)]
    pub base_url: Option<String>,
    /// API key (Polygon `apiKey`, Alpaca `APCA-API-KEY-ID`). Every key of the table can also
    /// be set by `TICKVAULT_PROVIDER_<NAME>_<KEY>` and `--provider NAME.KEY=VALUE` (see
    /// `config`).
    #[serde(default)]
    pub api_key: Option<String>,
    /// API secret (Alpaca `APCA-API-SECRET-KEY`).
    #[serde(default)]
    pub api_secret: Option<String>,
    /// CSV providers: URL with `{symbol}`, `{start}`, `{end}` (YYYYMMDD) and `{interval}`,
    /// relative to `base_url` or absolute.
    #[serde(default)]
    pub url_template: Option<String>,
    /// At most this many requests in any `rate_window` (default: a minute); 0 or absent is
    /// unlimited.
    #[serde(default)]
    pub requests_per_minute: Option<u32>,
    #[serde(default = "default_rate_window")]
    pub rate_window: Seconds,
    #[serde(default = "default_concurrency")]
    pub max_concurrency: usize,
    #[serde(default = "default_timeout")]
    pub timeout: Seconds,
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    #[serde(default = "default_backoff_base")]
    pub backoff_base: Seconds,
    #[serde(default = "default_backoff_max")]
    pub backoff_max: Seconds,
    /// Consecutive failures that open the circuit, and how long it stays open.
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    #[serde(default = "default_breaker_open")]
    pub breaker_open: Seconds,
}

fn default_rate_window() -> Seconds {
    Seconds(60.0)
}
fn default_concurrency() -> usize {
    4
}
fn default_timeout() -> Seconds {
    Seconds(30.0)
}
fn default_retries() -> u32 {
    4
}
fn default_backoff_base() -> Seconds {
    Seconds(0.5)
}
fn default_backoff_max() -> Seconds {
    Seconds(30.0)
}
fn default_breaker_failures() -> u32 {
    5
}
fn default_breaker_open() -> Seconds {
    Seconds(60.0)
}

impl ProviderConfig {
    /// A provider of `kind` at `base_url` with every other setting at its default.
    pub fn new(kind: ProviderKind, base_url: Option<String>) -> Self {
        Self {
            kind,
            base_url,
            api_key: None,
            api_secret: None,
            url_template: None,
            requests_per_minute: None,
            rate_window: default_rate_window(),
            max_concurrency: default_concurrency(),
            timeout: default_timeout(),
            max_retries: default_retries(),
            backoff_base: default_backoff_base(),
            backoff_max: default_backoff_max(),
            breaker_failures: default_breaker_failures(),
            breaker_open: default_breaker_open(),
        }
    }

    pub fn policy(&self) -> UpstreamPolicy {
        UpstreamPolicy {
            timeout: self.timeout.duration(),
            rate_limit: self.requests_per_minute.filter(|n| *n > 0),
            rate_window: self.rate_window.duration(),
            max_concurrency: self.max_concurrency.max(1),
            max_retries: self.max_retries,
            backoff_base: self.backoff_base.duration(),
            backoff_max: self.backoff_max.duration(),
            breaker_failures: self.breaker_failures.max(1),
            breaker_open: self.breaker_open.duration(),
            ..UpstreamPolicy::default()
        }
    }
}

/// What a user asks to track, as given (HTTP body or CLI flags).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackRequest {
    pub symbol: String,
    #[serde(default)]
    pub timeframes: Option<Vec<String>>,
    /// The old name of `timeframes`, still accepted.
    #[serde(default)]
    pub intervals: Option<Vec<String>>,
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub since: Option<String>,
    #[serde(default)]
    pub calendar: Option<String>,
}

/// Full history when `since` is not given: 1990-01-01.
pub const DEFAULT_SINCE: i64 = 631_152_000_000_000;

/// The configured providers by name (`[providers.NAME]`).
pub type Providers = std::collections::BTreeMap<String, ProviderConfig>;

/// Checks a track request against the configured providers; errors name the field.
/// `added_at` (µs UTC) is when the symbol is added (the syncer's clock).
pub fn make_spec(
    providers: &Providers,
    default_provider: Option<&str>,
    req: TrackRequest,
    added_at: i64,
) -> Result<super::registry::SymbolSpec, (&'static str, String)> {
    use crate::calendar::Calendar;
    use crate::model::{Interval, Symbol};
    let symbol = Symbol::new(&req.symbol).map_err(|e| ("symbol", e.to_string()))?;
    let given = match (req.timeframes, req.intervals) {
        (Some(t), Some(i)) if t != i => {
            return Err((
                "timeframes",
                format!(
                    "timeframes {t:?} and intervals {i:?} disagree (intervals is the old name \
                     of timeframes; give one)"
                ),
            ));
        }
        (t, i) => t.or(i),
    };
    let intervals = given
        .unwrap_or_else(|| vec!["1d".into()])
        .iter()
        .map(|i| {
            i.parse::<Interval>()
                .map_err(|e| ("timeframes", e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let provider = req
        .provider
        .or_else(|| default_provider.map(str::to_string))
        .ok_or((
            "provider",
            "missing, and no default_provider is configured".to_string(),
        ))?;
    let kind = providers.get(&provider).map(|p| p.kind);
    let calendar = match req.calendar {
        Some(c) => c.parse::<Calendar>().map_err(|e| ("calendar", e))?,
        None if kind == Some(ProviderKind::Binance) => Calendar::AlwaysOpen,
        None => Calendar::UsEquity,
    };
    let since = match req.since {
        Some(s) => crate::model::time::parse_time(&s).map_err(|e| ("since", e))?,
        None => DEFAULT_SINCE,
    };
    Ok(super::registry::SymbolSpec {
        symbol,
        intervals,
        provider,
        since,
        calendar,
        added_at,
    })
}
