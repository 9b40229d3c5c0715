//! A loopback server that speaks the providers' APIs from bars held in memory, with fault
//! injection and a request log: for tests, benchmarks and trying a config offline.
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

mod apis;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::model::Interval;
use crate::sync::provider::RawBar;

/// Bars the fake serves: per (symbol, interval), sorted by open time (our convention: daily
/// bars at 00:00 UTC, weekly on Monday 00:00 UTC).
#[derive(Debug, Clone, Default)]
pub struct FakeData {
    series: BTreeMap<(String, Interval), Vec<RawBar>>,
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
}

impl Shared {
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
