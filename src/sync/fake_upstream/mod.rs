//! A loopback server that speaks the providers' APIs from bars held in memory, with fault
//! injection and a request log. Test support, behind the `test-support` feature (the tests and
//! benches turn it on): not library API.
//!
//! All five APIs are served at once (their paths do not collide), so one [`FakeUpstream`] is
//! the `base_url` of every adapter:
//!
//! - Yahoo `GET /v8/finance/chart/{symbol}`: daily and weekly bars stamped with the New York
//!   session open (09:30 local), `meta.exchangeTimezoneName` `America/New_York`; the real
//!   per-request range limits (1m: 7 days, 5m-30m: 60 days, 60m: 730 days) answer 422; an
//!   unknown symbol answers 404 `Not Found`.
//! - Polygon `GET /v2/aggs/ticker/{symbol}/range/{n}/{unit}/{from}/{to}` (needs `apiKey`):
//!   daily bars at 00:00 New York, weekly at the Sunday 00:00 New York before their Monday;
//!   pages of 50,000 rows chained by `next_url` (without the key, as the real API).
//! - Alpaca `GET /v2/stocks/bars` and `/v2/stocks/{symbol}/bars` (need the key headers):
//!   daily and weekly bars at 00:00 New York; pages of 10,000 chained by `next_page_token`.
//! - Binance `GET /api/v3/klines`: at most `limit` (default 500) and 1,000 rows.
//! - CSV `GET /csv/{symbol}?s=YYYYMMDD&e=YYYYMMDD&i=d|w` (Stooq style, `e` inclusive):
//!   `No data` when there is nothing.
//!
//! The request log records each request's symbol, interval and asked range as a half-open
//! `[start, end)` in µs: inclusive upper bounds (Polygon `to`, Alpaca `end`, Binance
//! `endTime`, CSV `e`) are turned exclusive by adding their unit (1 ms, 1 µs, 1 ms, 1 day).
//!
//! Bars are held as traded (raw), with each symbol's corporate actions, and the fake has its own
//! "now" (the real clock unless a test sets it). An event is public once its ex-date's session
//! opens (09:30 New York) at or before that now. Like the real APIs:
//! - Yahoo serves prices split-adjusted as of its now (prices divided by the ratios of every
//!   public split after the bar, volume multiplied), and the public events of the asked range
//!   in `events` (dividend amounts split-adjusted too). A chart asked at `interval=1mo` or
//!   `3mo` (what adapters use to read events) answers events only.
//! - Polygon aggregates honour `adjusted` (default `true`, split-adjusted as of its now);
//!   `/v3/reference/splits` and `/v3/reference/dividends` (`ticker`, date `.gte`/`.lte`,
//!   `limit`) page by `next_url`.
//! - Alpaca bars are raw; `/v1/corporate-actions` (`symbols`, `types`, `start`, `end`,
//!   `limit`) pages by `next_page_token`.

mod apis;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::NaiveDate;

use crate::actions::{ActionKind, CorporateAction};
use crate::model::Interval;
use crate::sync::provider::RawBar;

/// Bars the fake serves: per (symbol, interval), sorted by open time (our convention: daily
/// bars at 00:00 UTC, weekly on Monday 00:00 UTC), as traded; and each symbol's corporate
/// actions.
#[derive(Debug, Clone, Default)]
pub struct FakeData {
    series: BTreeMap<(String, Interval), Vec<RawBar>>,
    actions: BTreeMap<String, Vec<CorporateAction>>,
}

impl FakeData {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a series (sorted by `ts`, later duplicates win).
    pub fn insert(&mut self, symbol: &str, interval: Interval, mut bars: Vec<RawBar>) {
        bars.sort_by_key(|b| b.ts);
        bars.reverse();
        bars.dedup_by_key(|b| b.ts);
        bars.reverse();
        self.series.insert((symbol.to_string(), interval), bars);
    }

    /// Reads Alpha Vantage daily CSVs `DA-<SYM>-T-*.csv` (columns `timestamp,open,high,low,
    /// close,adjusted_close,volume,...`; oldest or newest first) from a directory, as 1d bars
    /// at 00:00 UTC. `limit` caps the number of files (in name order).
    pub fn load_daily_dir(dir: &Path, limit: Option<usize>) -> std::io::Result<Self> {
        let mut files: Vec<(String, std::path::PathBuf)> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let symbol = name
                    .strip_prefix("DA-")
                    .filter(|_| name.ends_with(".csv"))
                    .and_then(|rest| rest.rsplit_once("-T-"))
                    .map(|(symbol, _)| symbol.to_string())?;
                Some((symbol, e.path()))
            })
            .collect();
        files.sort_by(|a, b| a.1.cmp(&b.1));
        files.truncate(limit.unwrap_or(usize::MAX));
        let mut data = FakeData::new();
        for (symbol, path) in files {
            let bars = read_alpha_vantage_daily(&path)?;
            data.insert(&symbol, Interval::D1, bars);
        }
        Ok(data)
    }

    /// Sets a symbol's corporate actions (any order).
    pub fn set_actions(&mut self, symbol: &str, mut actions: Vec<CorporateAction>) {
        actions.sort_by_key(|a| (a.ex_date, a.kind));
        self.actions.insert(symbol.to_string(), actions);
    }

    /// A symbol's corporate actions, public or not yet, in ex-date order.
    pub fn actions(&self, symbol: &str) -> &[CorporateAction] {
        self.actions.get(symbol).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The actions of `symbol` public at `now`: those whose ex-date session opened by then.
    fn public_actions(&self, symbol: &str, now: i64) -> Vec<CorporateAction> {
        self.actions(symbol)
            .iter()
            .filter(|a| apis::session_open_us(a.ex_date) <= now)
            .cloned()
            .collect()
    }

    /// The product of the ratios of the splits public at `now` with ex-date after `date`: what
    /// an API that adjusts as of `now` divides the prices of a bar of `date` by.
    fn split_factor(&self, symbol: &str, date: NaiveDate, now: i64) -> f64 {
        self.actions(symbol)
            .iter()
            .filter(|a| {
                a.kind == ActionKind::Split
                    && a.ex_date > date
                    && apis::session_open_us(a.ex_date) <= now
            })
            .filter_map(|a| a.ratio)
            // A malformed event in the list (a test's bad input) does not change the prices.
            .filter(|r| r.is_finite() && *r > 0.0)
            .product()
    }

    /// A series as an API that adjusts for splits as of `now` serves it (Yahoo; Polygon's
    /// `adjusted=true`): prices divided by the later splits, volume multiplied.
    pub fn split_adjusted(&self, symbol: &str, interval: Interval, now: i64) -> Vec<RawBar> {
        self.bars(symbol, interval)
            .iter()
            .map(|b| {
                let date = apis::trading_date(interval, b.ts);
                adjust_bar(b, self.split_factor(symbol, date, now))
            })
            .collect()
    }

    /// Symbols with at least one series, sorted.
    pub fn symbols(&self) -> Vec<String> {
        let mut out: Vec<String> = self.series.keys().map(|(s, _)| s.clone()).collect();
        out.dedup();
        out
    }

    /// The bars of a series; empty if there is none.
    pub fn bars(&self, symbol: &str, interval: Interval) -> &[RawBar] {
        self.series
            .get(&(symbol.to_string(), interval))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    fn has_symbol(&self, symbol: &str) -> bool {
        self.series.keys().any(|(s, _)| s == symbol)
    }

    /// The stored symbol an API spelling refers to (`normalize` maps stored names to it).
    fn resolve(&self, asked: &str, normalize: impl Fn(&str) -> String) -> Option<String> {
        self.series
            .keys()
            .map(|(s, _)| s)
            .find(|s| normalize(s) == asked)
            .cloned()
    }
}

/// A bar with its prices divided by `factor` and its volume multiplied by it.
fn adjust_bar(b: &RawBar, factor: f64) -> RawBar {
    if factor == 1.0 {
        return b.clone();
    }
    RawBar {
        open: b.open / factor,
        high: b.high / factor,
        low: b.low / factor,
        close: b.close / factor,
        volume: b.volume * factor,
        vwap: b.vwap.map(|v| v / factor),
        ..b.clone()
    }
}

fn invalid(path: &Path, message: String) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("{}: {message}", path.display()),
    )
}

fn read_alpha_vantage_daily(path: &Path) -> std::io::Result<Vec<RawBar>> {
    let mut reader = csv::Reader::from_path(path).map_err(|e| invalid(path, e.to_string()))?;
    let headers: Vec<String> = reader
        .headers()
        .map_err(|e| invalid(path, e.to_string()))?
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| invalid(path, format!("no `{name}` column")))
    };
    let cols = [
        col("timestamp")?,
        col("open")?,
        col("high")?,
        col("low")?,
        col("close")?,
        col("volume")?,
    ];
    let mut bars = Vec::new();
    for (i, row) in reader.records().enumerate() {
        let row = row.map_err(|e| invalid(path, e.to_string()))?;
        let bad = |what: &str| invalid(path, format!("line {}: bad {what}", i + 2));
        let date = chrono::NaiveDate::parse_from_str(row.get(cols[0]).unwrap_or(""), "%Y-%m-%d")
            .map_err(|_| bad("timestamp"))?;
        let f = |k: usize, what: &str| -> std::io::Result<f64> {
            row.get(cols[k])
                .and_then(|x| x.trim().parse().ok())
                .ok_or_else(|| bad(what))
        };
        bars.push(RawBar {
            ts: apis::date_us(date),
            open: f(1, "open")?,
            high: f(2, "high")?,
            low: f(3, "low")?,
            close: f(4, "close")?,
            volume: f(5, "volume")?,
            vwap: None,
            trades: None,
        });
    }
    Ok(bars)
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct LoggedRequest {
    /// `yahoo`, `polygon`, `alpaca`, `binance` or `csv`.
    pub provider: &'static str,
    /// The stored symbol the request asked for (the API's spelling if none matches).
    pub symbol: String,
    pub interval: Option<Interval>,
    /// The asked range, half-open, µs.
    pub start: Option<i64>,
    pub end: Option<i64>,
    pub status: u16,
    pub at: Instant,
    pub path_and_query: String,
    /// Whether it asked for corporate actions rather than bars.
    pub actions: bool,
}

/// A fault to inject into matching requests.
#[derive(Debug, Clone)]
pub struct FaultRule {
    /// `None` matches every provider.
    pub provider: Option<&'static str>,
    /// `None` matches every symbol; otherwise the stored symbol, case-insensitive.
    pub symbol: Option<String>,
    /// How many requests it applies to; `None` until cleared.
    pub times: Option<u32>,
    pub fault: Fault,
}

impl FaultRule {
    /// A rule for every request until cleared.
    pub fn always(fault: Fault) -> Self {
        Self {
            provider: None,
            symbol: None,
            times: None,
            fault,
        }
    }

    /// A rule for the next `n` requests.
    pub fn times(n: u32, fault: Fault) -> Self {
        Self {
            times: Some(n),
            ..Self::always(fault)
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// Answer with this status (and `Retry-After` seconds).
    Status { code: u16, retry_after: Option<u32> },
    /// Wait this long, then answer normally: longer than the client timeout is a timeout.
    Delay(Duration),
    /// Send the headers and half the body, then abort the connection.
    Reset,
    /// Announce the full `Content-Length`, send half the body, then close.
    Truncated,
    /// 200 with an HTML page instead of the API's format.
    Malformed,
    /// A valid answer with no bars.
    Empty,
    /// Every bar of the page twice.
    Duplicated,
    /// The page's bars in reverse order.
    OutOfOrder,
    /// The answer claims another symbol (Binance klines name no symbol: it answers 400
    /// `Invalid symbol`, as the real API does for a symbol it does not know).
    WrongSymbol,
    /// The first bar's close is NaN as the API would encode it: `null` in Yahoo, Polygon and
    /// Alpaca JSON, the string `NaN` in Binance klines and CSV.
    NaN,
}

/// State shared by the handlers.
#[derive(Debug)]
struct Shared {
    base_url: String,
    data: Mutex<FakeData>,
    log: Mutex<Vec<LoggedRequest>>,
    faults: Mutex<Vec<FaultRule>>,
    page_sizes: Mutex<HashMap<String, usize>>,
    /// The fake's now (µs UTC); `None` follows the real clock.
    now: Mutex<Option<i64>>,
}

impl Shared {
    fn now(&self) -> i64 {
        self.now
            .lock()
            .expect("now lock")
            .unwrap_or_else(|| chrono::Utc::now().timestamp_micros())
    }

    /// The fault for this request: the first matching rule with uses left, which loses one.
    fn take_fault(&self, provider: &str, symbol: &str) -> Option<Fault> {
        let mut rules = self.faults.lock().expect("faults lock");
        let rule = rules.iter_mut().find(|r| {
            r.provider.is_none_or(|p| p == provider)
                && r.symbol
                    .as_deref()
                    .is_none_or(|s| s.eq_ignore_ascii_case(symbol))
                && r.times != Some(0)
        })?;
        if let Some(n) = &mut rule.times {
            *n -= 1;
        }
        Some(rule.fault.clone())
    }

    fn page_size(&self, provider: &str, default: usize) -> usize {
        self.page_sizes
            .lock()
            .expect("page sizes lock")
            .get(provider)
            .copied()
            .unwrap_or(default)
            .max(1)
    }
}

/// The fake server; stops when dropped.
#[derive(Debug)]
pub struct FakeUpstream {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeUpstream {
    /// Serves `data` on 127.0.0.1 at a free port.
    pub async fn start(data: FakeData) -> std::io::Result<FakeUpstream> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            base_url: format!("http://{addr}"),
            data: Mutex::new(data),
            log: Mutex::new(Vec::new()),
            faults: Mutex::new(Vec::new()),
            page_sizes: Mutex::new(HashMap::new()),
            now: Mutex::new(None),
        });
        let app = apis::router(Arc::clone(&shared));
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::warn!("fake upstream stopped: {e}");
            }
        });
        Ok(FakeUpstream { addr, shared, task })
    }

    /// `http://127.0.0.1:PORT`: the `base_url` for every adapter.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Replaces a series (e.g. new bars arrived upstream).
    pub fn set_data(&self, symbol: &str, interval: Interval, bars: Vec<RawBar>) {
        self.shared
            .data
            .lock()
            .expect("data lock")
            .insert(symbol, interval, bars);
    }

    /// Replaces a symbol's corporate actions.
    pub fn set_actions(&self, symbol: &str, actions: Vec<CorporateAction>) {
        self.shared
            .data
            .lock()
            .expect("data lock")
            .set_actions(symbol, actions);
    }

    /// Moves the fake's clock (µs UTC): events whose ex-date session opened by then are
    /// public, and adjusted prices are adjusted as of then.
    pub fn set_now(&self, now: i64) {
        *self.shared.now.lock().expect("now lock") = Some(now);
    }

    /// The fake's now (µs UTC).
    pub fn now(&self) -> i64 {
        self.shared.now()
    }

    /// The bars of a series as traded.
    pub fn raw_bars(&self, symbol: &str, interval: Interval) -> Vec<RawBar> {
        self.shared
            .data
            .lock()
            .expect("data lock")
            .bars(symbol, interval)
            .to_vec()
    }

    /// The bars of a series as Yahoo (and Polygon `adjusted=true`) serve them now:
    /// split-adjusted as of the fake's now.
    pub fn split_adjusted_bars(&self, symbol: &str, interval: Interval) -> Vec<RawBar> {
        let now = self.now();
        self.shared
            .data
            .lock()
            .expect("data lock")
            .split_adjusted(symbol, interval, now)
    }

    /// The corporate actions of a symbol public at the fake's now.
    pub fn public_actions(&self, symbol: &str) -> Vec<CorporateAction> {
        let now = self.now();
        self.shared
            .data
            .lock()
            .expect("data lock")
            .public_actions(symbol, now)
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.log.lock().expect("log lock").clone()
    }

    pub fn clear_log(&self) {
        self.shared.log.lock().expect("log lock").clear();
    }

    /// Adds a rule; the first matching rule with uses left applies to a request.
    pub fn inject(&self, rule: FaultRule) {
        self.shared.faults.lock().expect("faults lock").push(rule);
    }

    pub fn clear_faults(&self) {
        self.shared.faults.lock().expect("faults lock").clear();
    }

    /// Rows per page for `polygon`, `alpaca` or `binance` (a cap on top of the request's
    /// `limit`), to exercise pagination with few bars.
    pub fn set_page_size(&self, provider: &str, rows: usize) {
        self.shared
            .page_sizes
            .lock()
            .expect("page sizes lock")
            .insert(provider.to_string(), rows);
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}
