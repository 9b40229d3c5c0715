//! The five APIs of the fake: request parsing, bar and event selection and paging, answer
//! encoding, and the faults applied on top.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::Response;
use axum::routing::get;
use chrono::{Datelike, Duration, NaiveDate, TimeZone};
use chrono_tz::America::New_York;
use serde_json::{Value, json};

use super::{Fault, LoggedRequest, Shared};
use crate::actions::{ActionKind, CorporateAction};
use crate::model::{Interval, MICROS_PER_DAY};
use crate::sync::provider::RawBar;

type Params = Query<HashMap<String, String>>;
type St = State<Arc<Shared>>;

pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v8/finance/chart/{symbol}", get(yahoo))
        .route(
            "/v2/aggs/ticker/{symbol}/range/{n}/{unit}/{from}/{to}",
            get(polygon),
        )
        .route("/v2/stocks/bars", get(alpaca_multi))
        .route("/v2/stocks/{symbol}/bars", get(alpaca_single))
        .route("/v3/reference/splits", get(polygon_splits))
        .route("/v3/reference/dividends", get(polygon_dividends))
        .route("/v1/corporate-actions", get(alpaca_actions))
        .route("/api/v3/klines", get(binance))
        .route("/csv/{symbol}", get(csv))
        .with_state(shared)
}

pub(super) fn date_us(d: NaiveDate) -> i64 {
    d.and_hms_opt(0, 0, 0)
        .expect("midnight exists")
        .and_utc()
        .timestamp_micros()
}

fn utc_date(us: i64) -> NaiveDate {
    chrono::DateTime::from_timestamp_micros(us)
        .expect("timestamp in range")
        .date_naive()
}

/// `h:m` New York time on date `d`, µs UTC.
fn new_york_us(d: NaiveDate, h: u32, m: u32) -> i64 {
    let local = d.and_hms_opt(h, m, 0).expect("valid time");
    New_York
        .from_local_datetime(&local)
        .earliest()
        .expect("09:30 and 00:00 exist in New York")
        .timestamp_micros()
}

/// The session open (09:30 New York) of a date: when a split or dividend with that ex-date
/// takes effect, and the instant Yahoo stamps its events with.
pub(super) fn session_open_us(d: NaiveDate) -> i64 {
    new_york_us(d, 9, 30)
}

/// The trading date of a bar: its date for daily and weekly bars, the New York date of its open
/// time for intraday ones.
pub(super) fn trading_date(interval: Interval, ts: i64) -> NaiveDate {
    if interval.is_intraday() {
        chrono::DateTime::from_timestamp_micros(ts)
            .expect("timestamp in range")
            .with_timezone(&New_York)
            .date_naive()
    } else {
        utc_date(ts)
    }
}

/// What a request asked for, for the log and fault matching.
struct Asked {
    provider: &'static str,
    symbol: String,
    interval: Option<Interval>,
    start: Option<i64>,
    end: Option<i64>,
    actions: bool,
}

/// An answer before faults that act on the transport.
struct Reply {
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
    headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn json(status: StatusCode, v: &Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: serde_json::to_vec(v).expect("JSON encodes"),
            headers: Vec::new(),
        }
    }

    fn text(status: StatusCode, text: String) -> Reply {
        Reply {
            status,
            content_type: "text/plain",
            body: text.into_bytes(),
            headers: Vec::new(),
        }
    }
}

/// The faults that change the bars of an answer.
#[derive(Debug, Default, Clone, Copy)]
struct Shape {
    empty: bool,
    duplicated: bool,
    reversed: bool,
    wrong_symbol: bool,
    nan: bool,
}

impl Shape {
    fn of(fault: Option<&Fault>) -> Shape {
        let mut s = Shape::default();
        match fault {
            Some(Fault::Empty) => s.empty = true,
            Some(Fault::Duplicated) => s.duplicated = true,
            Some(Fault::OutOfOrder) => s.reversed = true,
            Some(Fault::WrongSymbol) => s.wrong_symbol = true,
            Some(Fault::NaN) => s.nan = true,
            _ => {}
        }
        s
    }

    /// Applies the bar faults to one page of (API stamp, bar) rows.
    fn apply(self, mut rows: Vec<(i64, RawBar)>) -> Vec<(i64, RawBar)> {
        if self.empty {
            return Vec::new();
        }
        if self.nan
            && let Some(first) = rows.first_mut()
        {
            first.1.close = f64::NAN;
        }
        if self.duplicated {
            rows = rows.into_iter().flat_map(|r| [r.clone(), r]).collect();
        }
        if self.reversed {
            rows.reverse();
        }
        rows
    }

    fn symbol(self, symbol: &str) -> &str {
        if self.wrong_symbol { "WRONG" } else { symbol }
    }
}

/// Serves one request: picks the fault, renders the answer, logs it, applies the transport
/// faults.
async fn serve(
    shared: &Shared,
    asked: Asked,
    uri: &Uri,
    render: impl FnOnce(Shape) -> Reply,
) -> Response {
    let at = Instant::now();
    let fault = shared.take_fault(asked.provider, &asked.symbol);
    let reply = match &fault {
        Some(Fault::Status { code, retry_after }) => {
            let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut r = Reply::json(status, &json!({"error": "injected fault", "status": code}));
            if let Some(after) = retry_after {
                r.headers.push(("retry-after", after.to_string()));
            }
            r
        }
        Some(Fault::Malformed) => Reply {
            status: StatusCode::OK,
            content_type: "text/html",
            body:
                b"<html><head><title>Bad gateway</title></head><body>upstream hiccup</body></html>"
                    .to_vec(),
            headers: Vec::new(),
        },
        other => render(Shape::of(other.as_ref())),
    };
    shared.log.lock().expect("log lock").push(LoggedRequest {
        provider: asked.provider,
        symbol: asked.symbol,
        interval: asked.interval,
        start: asked.start,
        end: asked.end,
        status: reply.status.as_u16(),
        at,
        path_and_query: uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default(),
        actions: asked.actions,
    });
    if let Some(Fault::Delay(d)) = &fault {
        tokio::time::sleep(*d).await;
    }
    let full_len = reply.body.len();
    let body = match &fault {
        Some(Fault::Reset) => {
            let half = bytes::Bytes::from(reply.body[..full_len / 2].to_vec());
            let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = vec![
                Ok(half),
                Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "injected reset",
                )),
            ];
            Body::from_stream(futures::stream::iter(chunks))
        }
        Some(Fault::Truncated) => {
            let half = bytes::Bytes::from(reply.body[..full_len / 2].to_vec());
            Body::from_stream(futures::stream::iter([Ok::<_, std::io::Error>(half)]))
        }
        _ => Body::from(reply.body),
    };
    let mut response = Response::new(body);
    *response.status_mut() = reply.status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(reply.content_type),
    );
    if matches!(fault, Some(Fault::Truncated)) {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(full_len));
    }
    for (k, v) in reply.headers {
        if let Ok(v) = HeaderValue::from_str(&v) {
            headers.insert(k, v);
        }
    }
    response
}

/// How an API serves prices.
#[derive(Debug, Clone, Copy)]
enum Prices {
    Raw,
    /// Split-adjusted as of this instant.
    SplitAdjustedAsOf(i64),
}

/// Rows of a series with their API stamps, `lo <= stamp <= hi`, sorted.
fn select(
    shared: &Shared,
    symbol: &str,
    interval: Interval,
    stamp: impl Fn(i64) -> i64,
    lo: i64,
    hi: i64,
    prices: Prices,
) -> Vec<(i64, RawBar)> {
    let data = shared.data.lock().expect("data lock");
    let bars = match prices {
        Prices::Raw => data.bars(symbol, interval).to_vec(),
        Prices::SplitAdjustedAsOf(now) => data.split_adjusted(symbol, interval, now),
    };
    bars.into_iter()
        .map(|b| (stamp(b.ts), b))
        .filter(|(t, _)| (lo..=hi).contains(t))
        .collect()
}

/// The events of `symbol` public at the fake's now with ex-date in `[from, to]`.
fn public_events(
    shared: &Shared,
    symbol: &str,
    from: NaiveDate,
    to: NaiveDate,
) -> Vec<CorporateAction> {
    let now = shared.now();
    shared
        .data
        .lock()
        .expect("data lock")
        .public_actions(symbol, now)
        .into_iter()
        .filter(|a| (from..=to).contains(&a.ex_date))
        .collect()
}

fn bad_request(asked: Asked, message: String) -> (Asked, Reply) {
    (
        asked,
        Reply::json(StatusCode::BAD_REQUEST, &json!({"error": message})),
    )
}

fn number(p: &HashMap<String, String>, k: &str) -> Option<i64> {
    p.get(k).and_then(|v| v.parse().ok())
}

/// A stored symbol spelled as asked, or as given when none matches.
fn stored(shared: &Shared, asked: &str, normalize: impl Fn(&str) -> String) -> String {
    shared
        .data
        .lock()
        .expect("data lock")
        .resolve(asked, normalize)
        .unwrap_or_else(|| asked.to_string())
}

// ---------------------------------------------------------------------------------------------
// Yahoo

fn yahoo_interval(s: &str) -> Option<Interval> {
    Some(match s {
        "1m" => Interval::M1,
        "5m" => Interval::M5,
        "15m" => Interval::M15,
        "30m" => Interval::M30,
        "60m" | "1h" => Interval::H1,
        "1d" => Interval::D1,
        "1wk" => Interval::W1,
        _ => return None,
    })
}

/// Yahoo stamps daily and weekly bars with the session open (09:30 New York).
fn yahoo_stamp(interval: Interval, ts: i64) -> i64 {
    if interval.is_intraday() {
        ts
    } else {
        new_york_us(utc_date(ts), 9, 30)
    }
}

fn yahoo_error(status: StatusCode, code: &str, description: String) -> Reply {
    Reply::json(
        status,
        &json!({"chart": {"result": null, "error": {"code": code, "description": description}}}),
    )
}

/// The `events` object of a chart: the public events with session-open stamps in `[lo, hi]`
/// seconds, dividend amounts split-adjusted as of the fake's now like the prices.
fn yahoo_events(shared: &Shared, symbol: &str, lo: i64, hi: i64) -> Value {
    let now = shared.now();
    let data = shared.data.lock().expect("data lock");
    let (mut splits, mut dividends) = (serde_json::Map::new(), serde_json::Map::new());
    for a in data.public_actions(symbol, now) {
        let stamp = session_open_us(a.ex_date).div_euclid(1_000_000);
        if !(lo..=hi).contains(&stamp) {
            continue;
        }
        match (a.kind, a.ratio, a.amount) {
            (ActionKind::Split, Some(ratio), _) => {
                // Yahoo writes a ratio as whole numbers: 4:1, 1:10, 3:2.
                let (numerator, denominator) = whole_ratio(ratio);
                splits.insert(
                    stamp.to_string(),
                    json!({"date": stamp, "numerator": numerator, "denominator": denominator,
                           "splitRatio": format!("{numerator}:{denominator}")}),
                );
            }
            (ActionKind::Dividend, _, Some(amount)) => {
                let factor = data.split_factor(symbol, a.ex_date, now);
                dividends.insert(
                    stamp.to_string(),
                    json!({"amount": amount / factor, "date": stamp}),
                );
            }
            _ => {}
        }
    }
    let mut events = json!({});
    if !splits.is_empty() {
        events["splits"] = Value::Object(splits);
    }
    if !dividends.is_empty() {
        events["dividends"] = Value::Object(dividends);
    }
    events
}

/// A ratio as the smallest whole numerator and denominator (up to 1000).
fn whole_ratio(ratio: f64) -> (f64, f64) {
    (1..=1000)
        .map(|d| (ratio * d as f64, d as f64))
        .find(|(n, _)| (n - n.round()).abs() < 1e-9)
        .map(|(n, d)| (n.round(), d))
        .unwrap_or((ratio, 1.0))
}

async fn yahoo(
    State(shared): St,
    Path(symbol): Path<String>,
    Query(p): Params,
    uri: Uri,
) -> Response {
    // `1mo` and `3mo` charts are how adapters read events: answered with events only.
    let events_only = matches!(p.get("interval").map(String::as_str), Some("1mo" | "3mo"));
    let interval = p.get("interval").and_then(|i| yahoo_interval(i));
    let (p1, p2) = (number(&p, "period1"), number(&p, "period2"));
    let asked = Asked {
        provider: "yahoo",
        symbol: symbol.clone(),
        interval,
        start: p1.map(|s| s * 1_000_000),
        end: p2.map(|s| s * 1_000_000),
        actions: events_only,
    };
    let (true, Some(p1), Some(p2)) = (interval.is_some() || events_only, p1, p2) else {
        let err = yahoo_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Unprocessable Entity",
            "Invalid input - interval, period1 and period2 are required".into(),
        );
        return serve(&shared, asked, &uri, |_| err).await;
    };
    let limit_days = match interval {
        Some(Interval::M1) => Some(7),
        Some(Interval::M5 | Interval::M15 | Interval::M30) => Some(60),
        Some(Interval::H1) => Some(730),
        _ => None,
    };
    let with_events = p
        .get("events")
        .is_some_and(|e| e.contains("split") || e.contains("div"));
    let now = shared.now();
    let shared2 = Arc::clone(&shared);
    serve(&shared, asked, &uri, move |shape| {
        if let Some(days) = limit_days
            && p2 - p1 > days * 86_400
        {
            return yahoo_error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Unprocessable Entity",
                format!(
                    "{} data not available for startTime={p1} and endTime={p2}. Only {days} days \
                     worth of {} granularity data are allowed to be fetched per request.",
                    p["interval"], p["interval"]
                ),
            );
        }
        if !shared2.data.lock().expect("data lock").has_symbol(&symbol) {
            return yahoo_error(
                StatusCode::NOT_FOUND,
                "Not Found",
                "No data found, symbol may be delisted".into(),
            );
        }
        let rows = match interval {
            Some(interval) if !events_only => select(
                &shared2,
                &symbol,
                interval,
                |ts| yahoo_stamp(interval, ts),
                p1 * 1_000_000,
                p2 * 1_000_000 - 1,
                Prices::SplitAdjustedAsOf(now),
            ),
            _ => Vec::new(),
        };
        let rows = shape.apply(rows);
        let mut meta = json!({
            "currency": "USD", "symbol": shape.symbol(&symbol), "exchangeName": "NMS",
            "instrumentType": "EQUITY", "gmtoffset": -18000, "timezone": "EST",
            "exchangeTimezoneName": "America/New_York", "dataGranularity": p["interval"],
            "range": "",
        });
        let mut result = json!({"meta": {}, "indicators": {"quote": [{}]}});
        if !rows.is_empty() {
            let col = |f: fn(&RawBar) -> f64| -> Vec<Value> {
                rows.iter().map(|(_, b)| json!(f(b))).collect()
            };
            result["timestamp"] = json!(
                rows.iter()
                    .map(|(t, _)| t.div_euclid(1_000_000))
                    .collect::<Vec<_>>()
            );
            result["indicators"] = json!({
                "quote": [{
                    "open": col(|b| b.open), "high": col(|b| b.high), "low": col(|b| b.low),
                    "close": col(|b| b.close), "volume": col(|b| b.volume),
                }],
                "adjclose": [{"adjclose": col(|b| b.close)}],
            });
        }
        if with_events {
            let events = yahoo_events(&shared2, &symbol, p1, p2);
            if events.as_object().is_some_and(|e| !e.is_empty()) {
                result["events"] = events;
            }
        }
        meta["regularMarketPrice"] = json!(rows.last().map(|(_, b)| b.close));
        result["meta"] = meta;
        Reply::json(
            StatusCode::OK,
            &json!({"chart": {"result": [result], "error": null}}),
        )
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Polygon

fn polygon_interval(n: &str, unit: &str) -> Option<Interval> {
    Some(match (n, unit) {
        ("1", "minute") => Interval::M1,
        ("5", "minute") => Interval::M5,
        ("15", "minute") => Interval::M15,
        ("30", "minute") => Interval::M30,
        ("1", "hour") | ("60", "minute") => Interval::H1,
        ("4", "hour") => Interval::H4,
        ("1", "day") => Interval::D1,
        ("1", "week") => Interval::W1,
        _ => return None,
    })
}

/// Polygon's ms stamp: daily bars at 00:00 New York, weekly at the Sunday before.
fn polygon_stamp_ms(interval: Interval, ts: i64) -> i64 {
    let us = match interval {
        Interval::D1 => new_york_us(utc_date(ts), 0, 0),
        Interval::W1 => new_york_us(utc_date(ts) - Duration::days(1), 0, 0),
        _ => ts,
    };
    us.div_euclid(1000)
}

/// A `from`/`to` bound: ms, or a date (`to` dates include the whole day).
fn polygon_bound(s: &str, upper: bool) -> Option<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Some(ms);
    }
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()?;
    let ms = date_us(d) / 1000;
    Some(if upper { ms + 86_400_000 - 1 } else { ms })
}

async fn polygon(
    State(shared): St,
    Path((symbol, n, unit, from, to)): Path<(String, String, String, String, String)>,
    Query(p): Params,
    uri: Uri,
) -> Response {
    let interval = polygon_interval(&n, &unit);
    let (from, to) = (polygon_bound(&from, false), polygon_bound(&to, true));
    let asked = Asked {
        provider: "polygon",
        symbol: symbol.clone(),
        interval,
        start: from.map(|ms| ms * 1000),
        end: to.map(|ms| (ms + 1) * 1000),
        actions: false,
    };
    let (reply_asked, early) = match (interval, from, to) {
        _ if p.get("apiKey").is_none_or(|k| k.is_empty()) => (
            asked,
            Some(Reply::json(
                StatusCode::UNAUTHORIZED,
                &json!({"status": "ERROR", "request_id": "fake",
                        "error": "API Key was not provided"}),
            )),
        ),
        (Some(_), Some(_), Some(_)) => (asked, None),
        _ => {
            let (a, r) = bad_request(asked, "bad multiplier, timespan, from or to".into());
            (a, Some(r))
        }
    };
    if let Some(reply) = early {
        return serve(&shared, reply_asked, &uri, |_| reply).await;
    }
    let (interval, from, to) = (interval.unwrap(), from.unwrap(), to.unwrap());
    let limit = number(&p, "limit").unwrap_or(5000).clamp(1, 50_000) as usize;
    let page = limit.min(shared.page_size("polygon", 50_000));
    // Polygon adjusts unless asked `adjusted=false`.
    let adjusted = p.get("adjusted").is_none_or(|a| a != "false");
    let prices = if adjusted {
        Prices::SplitAdjustedAsOf(shared.now())
    } else {
        Prices::Raw
    };
    let shared2 = Arc::clone(&shared);
    serve(&shared, reply_asked, &uri, move |shape| {
        let rows = select(
            &shared2,
            &symbol,
            interval,
            |ts| polygon_stamp_ms(interval, ts),
            from,
            to,
            prices,
        );
        let next = rows.get(page).map(|(t, _)| {
            format!(
                "{}/v2/aggs/ticker/{}/range/{n}/{unit}/{t}/{to}?cursor=fake{t}&adjusted={adjusted}&sort=asc&limit={limit}",
                shared2.base_url,
                crate::sync::provider::encode_symbol(&symbol)
            )
        });
        let rows = shape.apply(rows.into_iter().take(page).collect());
        let results: Vec<Value> = rows
            .iter()
            .map(|(t, b)| {
                json!({"v": b.volume, "vw": b.vwap.unwrap_or(b.close), "o": b.open, "c": b.close,
                       "h": b.high, "l": b.low, "t": t, "n": b.trades.unwrap_or(1)})
            })
            .collect();
        let mut v = json!({
            "ticker": shape.symbol(&symbol), "queryCount": results.len(),
            "resultsCount": results.len(), "adjusted": adjusted, "status": "OK",
            "request_id": "fake", "count": results.len(),
        });
        if !results.is_empty() {
            v["results"] = Value::Array(results);
        }
        if let Some(next) = next {
            v["next_url"] = json!(next);
        }
        Reply::json(StatusCode::OK, &v)
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Alpaca

fn alpaca_interval(s: &str) -> Option<Interval> {
    Some(match s {
        "1Min" | "1T" => Interval::M1,
        "5Min" | "5T" => Interval::M5,
        "15Min" | "15T" => Interval::M15,
        "30Min" | "30T" => Interval::M30,
        "1Hour" | "1H" => Interval::H1,
        "4Hour" | "4H" => Interval::H4,
        "1Day" | "1D" => Interval::D1,
        "1Week" | "1W" => Interval::W1,
        _ => return None,
    })
}

/// Alpaca's stamp: daily and weekly bars at 00:00 New York.
fn alpaca_stamp(interval: Interval, ts: i64) -> i64 {
    if interval.is_intraday() {
        ts
    } else {
        new_york_us(utc_date(ts), 0, 0)
    }
}

/// RFC 3339 or a date, µs.
fn alpaca_time(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_micros())
        .or_else(|| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok().map(date_us))
}

async fn alpaca_multi(
    State(shared): St,
    Query(p): Params,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let symbol = p
        .get("symbols")
        .and_then(|s| s.split(',').next())
        .unwrap_or("")
        .to_string();
    alpaca(shared, symbol, p, headers, uri, true).await
}

async fn alpaca_single(
    State(shared): St,
    Path(symbol): Path<String>,
    Query(p): Params,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    alpaca(shared, symbol, p, headers, uri, false).await
}

async fn alpaca(
    shared: Arc<Shared>,
    symbol: String,
    p: HashMap<String, String>,
    headers: HeaderMap,
    uri: Uri,
    multi: bool,
) -> Response {
    let interval = p.get("timeframe").and_then(|t| alpaca_interval(t));
    let start = p.get("start").and_then(|s| alpaca_time(s));
    let end = p.get("end").and_then(|s| alpaca_time(s));
    let asked = Asked {
        provider: "alpaca",
        symbol: symbol.clone(),
        interval,
        start,
        end: end.map(|e| e + 1),
        actions: false,
    };
    let keyed = ["APCA-API-KEY-ID", "APCA-API-SECRET-KEY"]
        .iter()
        .all(|h| headers.get(*h).is_some_and(|v| !v.is_empty()));
    if !keyed {
        let reply = Reply::json(StatusCode::UNAUTHORIZED, &json!({"message": "forbidden."}));
        return serve(&shared, asked, &uri, |_| reply).await;
    }
    let Some(interval) = interval else {
        let (asked, reply) = bad_request(asked, "invalid timeframe".into());
        return serve(&shared, asked, &uri, |_| reply).await;
    };
    let token = p
        .get("page_token")
        .and_then(|t| t.strip_prefix("fake"))
        .and_then(|t| t.parse::<i64>().ok());
    let from = token.or(start).unwrap_or(i64::MIN);
    let to = end.unwrap_or(i64::MAX);
    let limit = number(&p, "limit").unwrap_or(1000).clamp(1, 10_000) as usize;
    let page = limit.min(shared.page_size("alpaca", 10_000));
    let shared2 = Arc::clone(&shared);
    serve(&shared, asked, &uri, move |shape| {
        let rows = select(
            &shared2,
            &symbol,
            interval,
            |ts| alpaca_stamp(interval, ts),
            from,
            to,
            Prices::Raw,
        );
        let next = rows.get(page).map(|(t, _)| format!("fake{t}"));
        let rows = shape.apply(rows.into_iter().take(page).collect());
        let bars: Vec<Value> = rows
            .iter()
            .map(|(t, b)| {
                let t = chrono::DateTime::from_timestamp_micros(*t)
                    .expect("timestamp in range")
                    .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
                json!({"t": t, "o": b.open, "h": b.high, "l": b.low, "c": b.close,
                       "v": b.volume, "n": b.trades.unwrap_or(1), "vw": b.vwap.unwrap_or(b.close)})
            })
            .collect();
        let answered = shape.symbol(&symbol);
        let v = if multi {
            let mut by_symbol = serde_json::Map::new();
            if !bars.is_empty() {
                by_symbol.insert(answered.to_string(), Value::Array(bars));
            }
            json!({"bars": by_symbol, "next_page_token": next})
        } else {
            json!({"bars": bars, "symbol": answered, "next_page_token": next})
        };
        Reply::json(StatusCode::OK, &v)
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Corporate actions: Polygon reference endpoints, Alpaca /v1/corporate-actions

fn ymd(s: Option<&String>) -> Option<NaiveDate> {
    s.and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
}

/// Offset of the page a cursor or page token names (`fake<offset>`).
fn page_offset(token: Option<&String>) -> usize {
    token
        .and_then(|t| t.strip_prefix("fake"))
        .and_then(|t| t.parse().ok())
        .unwrap_or(0)
}

async fn polygon_splits(State(shared): St, Query(p): Params, uri: Uri) -> Response {
    polygon_reference(shared, p, uri, ActionKind::Split).await
}

async fn polygon_dividends(State(shared): St, Query(p): Params, uri: Uri) -> Response {
    polygon_reference(shared, p, uri, ActionKind::Dividend).await
}

async fn polygon_reference(
    shared: Arc<Shared>,
    p: HashMap<String, String>,
    uri: Uri,
    kind: ActionKind,
) -> Response {
    let (path, date_field) = match kind {
        ActionKind::Split => ("/v3/reference/splits", "execution_date"),
        ActionKind::Dividend => ("/v3/reference/dividends", "ex_dividend_date"),
    };
    let symbol = p.get("ticker").cloned().unwrap_or_default();
    let from = ymd(p.get(&format!("{date_field}.gte"))).unwrap_or(NaiveDate::MIN);
    let to = ymd(p.get(&format!("{date_field}.lte"))).unwrap_or(NaiveDate::MAX);
    let asked = Asked {
        provider: "polygon",
        symbol: symbol.clone(),
        interval: None,
        start: p.get(&format!("{date_field}.gte")).and(Some(date_us(from))),
        end: p
            .get(&format!("{date_field}.lte"))
            .and(Some(date_us(to) + MICROS_PER_DAY)),
        actions: true,
    };
    if p.get("apiKey").is_none_or(|k| k.is_empty()) {
        let reply = Reply::json(
            StatusCode::UNAUTHORIZED,
            &json!({"status": "ERROR", "request_id": "fake",
                    "error": "API Key was not provided"}),
        );
        return serve(&shared, asked, &uri, |_| reply).await;
    }
    let limit = number(&p, "limit").unwrap_or(10).clamp(1, 1000) as usize;
    let page = limit.min(shared.page_size("polygon", 1000));
    let offset = page_offset(p.get("cursor"));
    let shared2 = Arc::clone(&shared);
    serve(&shared, asked, &uri, move |shape| {
        let events: Vec<CorporateAction> = public_events(&shared2, &symbol, from, to)
            .into_iter()
            .filter(|a| a.kind == kind)
            .collect();
        let results: Vec<Value> = if shape.empty {
            Vec::new()
        } else {
            events
                .iter()
                .skip(offset)
                .take(page)
                .map(|a| {
                    let ticker = shape.symbol(&symbol);
                    match kind {
                        ActionKind::Split => {
                            let (to, from) = whole_ratio(a.ratio.unwrap_or(1.0));
                            json!({"execution_date": a.ex_date.to_string(), "split_from": from,
                                   "split_to": to, "ticker": ticker})
                        }
                        ActionKind::Dividend => json!({
                            "cash_amount": a.amount, "dividend_type": "CD",
                            "ex_dividend_date": a.ex_date.to_string(), "ticker": ticker}),
                    }
                })
                .collect()
        };
        let mut v = json!({"results": results, "status": "OK", "request_id": "fake"});
        if events.len() > offset + page && !shape.empty {
            let keep: Vec<String> = p
                .iter()
                .filter(|(k, _)| k.as_str() != "apiKey" && k.as_str() != "cursor")
                .map(|(k, v)| format!("{k}={}", crate::sync::provider::encode_symbol(v)))
                .collect();
            v["next_url"] = json!(format!(
                "{}{path}?cursor=fake{}&{}",
                shared2.base_url,
                offset + page,
                keep.join("&")
            ));
        }
        Reply::json(StatusCode::OK, &v)
    })
    .await
}

async fn alpaca_actions(
    State(shared): St,
    Query(p): Params,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let symbol = p
        .get("symbols")
        .and_then(|s| s.split(',').next())
        .unwrap_or("")
        .to_string();
    let from = ymd(p.get("start")).unwrap_or(NaiveDate::MIN);
    let to = ymd(p.get("end")).unwrap_or(NaiveDate::MAX);
    let asked = Asked {
        provider: "alpaca",
        symbol: symbol.clone(),
        interval: None,
        start: p.get("start").and(Some(date_us(from))),
        end: p.get("end").and(Some(date_us(to) + MICROS_PER_DAY)),
        actions: true,
    };
    let keyed = ["APCA-API-KEY-ID", "APCA-API-SECRET-KEY"]
        .iter()
        .all(|h| headers.get(*h).is_some_and(|v| !v.is_empty()));
    if !keyed {
        let reply = Reply::json(StatusCode::UNAUTHORIZED, &json!({"message": "forbidden."}));
        return serve(&shared, asked, &uri, |_| reply).await;
    }
    let types: Vec<String> = p
        .get("types")
        .map(|t| t.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    let wants = |t: &str| types.is_empty() || types.iter().any(|x| x == t);
    let limit = number(&p, "limit").unwrap_or(100).clamp(1, 1000) as usize;
    let page = limit.min(shared.page_size("alpaca", 1000));
    let offset = page_offset(p.get("page_token"));
    let shared2 = Arc::clone(&shared);
    serve(&shared, asked, &uri, move |shape| {
        let events: Vec<(&'static str, CorporateAction)> =
            public_events(&shared2, &symbol, from, to)
                .into_iter()
                .filter_map(|a| {
                    let list = match (a.kind, a.ratio) {
                        (ActionKind::Split, Some(r)) if r >= 1.0 => "forward_splits",
                        (ActionKind::Split, _) => "reverse_splits",
                        (ActionKind::Dividend, _) => "cash_dividends",
                    };
                    let t = &list[..list.len() - 1];
                    wants(t).then_some((list, a))
                })
                .collect();
        let mut by_kind = serde_json::Map::new();
        if !shape.empty {
            for (list, a) in events.iter().skip(offset).take(page) {
                let row = match a.kind {
                    ActionKind::Split => {
                        let (new, old) = whole_ratio(a.ratio.unwrap_or(1.0));
                        json!({"symbol": shape.symbol(&symbol), "new_rate": new, "old_rate": old,
                               "ex_date": a.ex_date.to_string(),
                               "process_date": a.ex_date.to_string()})
                    }
                    ActionKind::Dividend => json!({
                        "symbol": shape.symbol(&symbol), "rate": a.amount, "special": false,
                        "foreign": false, "ex_date": a.ex_date.to_string(),
                        "process_date": a.ex_date.to_string()}),
                };
                by_kind
                    .entry(list.to_string())
                    .or_insert_with(|| Value::Array(Vec::new()))
                    .as_array_mut()
                    .expect("array")
                    .push(row);
            }
        }
        let next = (events.len() > offset + page && !shape.empty)
            .then(|| format!("fake{}", offset + page));
        Reply::json(
            StatusCode::OK,
            &json!({"corporate_actions": by_kind, "next_page_token": next}),
        )
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// Binance

fn binance_name(symbol: &str) -> String {
    symbol
        .chars()
        .filter(|c| !matches!(c, '-' | '/'))
        .collect::<String>()
        .to_ascii_uppercase()
}

/// Binance's decimal strings.
fn dec(x: f64) -> String {
    if x.is_nan() {
        "NaN".into()
    } else {
        format!("{x}")
    }
}

async fn binance(State(shared): St, Query(p): Params, uri: Uri) -> Response {
    let asked_symbol = p.get("symbol").cloned().unwrap_or_default();
    let symbol = stored(&shared, &asked_symbol, binance_name);
    let interval = p.get("interval").and_then(|i| i.parse::<Interval>().ok());
    let (start_ms, end_ms) = (number(&p, "startTime"), number(&p, "endTime"));
    let asked = Asked {
        provider: "binance",
        symbol: symbol.clone(),
        interval,
        start: start_ms.map(|ms| ms * 1000),
        end: end_ms.map(|ms| (ms + 1) * 1000),
        actions: false,
    };
    let known = shared.data.lock().expect("data lock").has_symbol(&symbol);
    let invalid_symbol = json!({"code": -1121, "msg": "Invalid symbol."});
    if !known {
        let reply = Reply::json(StatusCode::BAD_REQUEST, &invalid_symbol);
        return serve(&shared, asked, &uri, |_| reply).await;
    }
    let Some(interval) = interval else {
        let reply = Reply::json(
            StatusCode::BAD_REQUEST,
            &json!({"code": -1120, "msg": "Invalid interval."}),
        );
        return serve(&shared, asked, &uri, |_| reply).await;
    };
    let limit = number(&p, "limit").unwrap_or(500).clamp(1, 1000) as usize;
    let page = limit.min(shared.page_size("binance", 1000));
    let shared2 = Arc::clone(&shared);
    serve(&shared, asked, &uri, move |shape| {
        if shape.wrong_symbol {
            return Reply::json(StatusCode::BAD_REQUEST, &invalid_symbol);
        }
        let rows = select(
            &shared2,
            &symbol,
            interval,
            |ts| ts,
            start_ms.map_or(i64::MIN, |ms| ms * 1000),
            end_ms.map_or(i64::MAX, |ms| ms * 1000 + 999),
            Prices::Raw,
        );
        let rows = shape.apply(rows.into_iter().take(page).collect());
        let step_ms = interval.micros() / 1000;
        let klines: Vec<Value> = rows
            .iter()
            .map(|(t, b)| {
                let open_ms = t.div_euclid(1000);
                let quote = b.vwap.unwrap_or(b.close) * b.volume;
                json!([
                    open_ms,
                    dec(b.open),
                    dec(b.high),
                    dec(b.low),
                    dec(b.close),
                    dec(b.volume),
                    open_ms + step_ms - 1,
                    dec(quote),
                    b.trades.unwrap_or(1),
                    dec(b.volume / 2.0),
                    dec(quote / 2.0),
                    "0"
                ])
            })
            .collect();
        Reply::json(StatusCode::OK, &Value::Array(klines))
    })
    .await
}

// ---------------------------------------------------------------------------------------------
// CSV (Stooq style)

async fn csv(
    State(shared): St,
    Path(symbol): Path<String>,
    Query(p): Params,
    uri: Uri,
) -> Response {
    let day = |k: &str| {
        p.get(k)
            .and_then(|s| NaiveDate::parse_from_str(s, "%Y%m%d").ok())
    };
    let (s, e) = (day("s"), day("e"));
    let interval = match p.get("i").map(String::as_str) {
        Some("w") => Interval::W1,
        _ => Interval::D1,
    };
    let asked = Asked {
        provider: "csv",
        symbol: symbol.clone(),
        interval: Some(interval),
        start: s.map(date_us),
        end: e.map(|e| date_us(e) + MICROS_PER_DAY),
        actions: false,
    };
    let shared2 = Arc::clone(&shared);
    serve(&shared, asked, &uri, move |shape| {
        let rows = select(
            &shared2,
            &symbol,
            interval,
            |ts| ts,
            s.map_or(i64::MIN, date_us),
            e.map_or(i64::MAX, |e| date_us(e) + MICROS_PER_DAY - 1),
            Prices::Raw,
        );
        let rows = shape.apply(rows);
        if rows.is_empty() {
            return Reply::text(StatusCode::OK, "No data".into());
        }
        let mut out = String::new();
        if shape.wrong_symbol {
            out.push_str("Symbol,");
        }
        out.push_str("Date,Open,High,Low,Close,Volume\n");
        for (t, b) in rows {
            if shape.wrong_symbol {
                out.push_str("WRONG,");
            }
            let d = utc_date(t);
            out.push_str(&format!(
                "{:04}-{:02}-{:02},{},{},{},{},{}\n",
                d.year(),
                d.month(),
                d.day(),
                dec(b.open),
                dec(b.high),
                dec(b.low),
                dec(b.close),
                dec(b.volume)
            ));
        }
        Reply::text(StatusCode::OK, out)
    })
    .await
}
