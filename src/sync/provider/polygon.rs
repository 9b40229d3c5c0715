//! Polygon aggregates: `/v2/aggs/ticker/{symbol}/range/{n}/{unit}/{from_ms}/{to_ms}` with
//! `apiKey`, paginated by `next_url` (which does not carry the key).
//!
//! `t` is the bar's start in ms; daily bars of US stocks start at 00:00 New York and are mapped
//! to 00:00 UTC of that date, weekly bars (stamped on the Sunday that starts Polygon's week) to
//! the Monday.

use serde_json::Value;

use super::convert::{UNLIMITED_RANGE, encode, floor_ms, join, map_midnight_stamp, ohlcv_row};
use super::{FetchError, FetchRequest, Fetched, Provider, RawBar, Rejected, Upstream};
use crate::model::{Interval, MICROS_PER_DAY};

/// Rows per page Polygon serves at most (`limit=50000`).
pub(crate) const PAGE_LIMIT: usize = 50_000;
/// Pages followed before the answer is judged to loop.
const MAX_PAGES: u32 = 10_000;

#[derive(Debug)]
pub struct Polygon {
    base_url: String,
    api_key: Option<String>,
}

impl Polygon {
    pub fn new(base_url: Option<String>, api_key: Option<String>) -> Self {
        Self {
            base_url: base_url.unwrap_or_else(|| "https://api.polygon.io".into()),
            api_key,
        }
    }
}

/// Polygon's `{multiplier}/{timespan}` of an interval.
pub(crate) fn timespan(interval: Interval) -> (u32, &'static str) {
    match interval {
        Interval::M1 => (1, "minute"),
        Interval::M5 => (5, "minute"),
        Interval::M15 => (15, "minute"),
        Interval::M30 => (30, "minute"),
        Interval::H1 => (1, "hour"),
        Interval::H4 => (4, "hour"),
        Interval::D1 => (1, "day"),
        Interval::W1 => (1, "week"),
    }
}

#[async_trait::async_trait]
impl Provider for Polygon {
    fn kind(&self) -> &'static str {
        "polygon"
    }

    fn supports(&self, _interval: Interval) -> bool {
        true
    }

    /// 43,200 bars: 30 days of 24-hour 1m bars, so one chunk is one page even for crypto.
    fn max_range(&self, interval: Interval) -> i64 {
        (interval.micros() * 43_200).min(UNLIMITED_RANGE)
    }

    async fn fetch(&self, up: &Upstream, req: &FetchRequest) -> Result<Fetched, FetchError> {
        let key = self
            .api_key
            .as_deref()
            .ok_or_else(|| FetchError::Invalid("polygon needs api_key".into()))?;
        let (n, unit) = timespan(req.interval);
        // Weeks are stamped on the Sunday before their Monday.
        let start = match req.interval {
            Interval::W1 => req.start - MICROS_PER_DAY,
            _ => req.start,
        };
        // `to` is inclusive.
        let mut url = join(
            &self.base_url,
            &format!(
                "/v2/aggs/ticker/{}/range/{n}/{unit}/{}/{}?adjusted=true&sort=asc&limit={PAGE_LIMIT}&apiKey={}",
                encode(req.symbol.as_str()),
                floor_ms(start),
                floor_ms(req.end - 1),
                encode(key),
            ),
        );
        let mut fetched = Fetched::default();
        loop {
            let page = up.get(&url, &[], |body| parse_aggs(body, req)).await?;
            fetched.requests += 1;
            fetched.bars.extend(page.bars);
            fetched.rejected.extend(page.rejected);
            let Some(next) = page.next_url else {
                return Ok(fetched);
            };
            if fetched.requests >= MAX_PAGES {
                return Err(FetchError::Malformed {
                    url: crate::sync::upstream::redact(&url),
                    message: format!("next_url still present after {MAX_PAGES} pages"),
                });
            }
            let sep = if next.contains('?') { '&' } else { '?' };
            url = format!("{next}{sep}apiKey={}", encode(key));
        }
    }
}

/// One page of aggregates.
#[derive(Debug, Default)]
pub(crate) struct Page {
    pub bars: Vec<RawBar>,
    pub rejected: Vec<Rejected>,
    pub next_url: Option<String>,
}

pub(crate) fn parse_aggs(body: &[u8], req: &FetchRequest) -> Result<Page, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not aggregates JSON: {e}"))?;
    if !v.is_object() {
        return Err("aggregates answer is not an object".into());
    }
    if let Some(status) = v["status"].as_str()
        && !matches!(status, "OK" | "DELAYED")
    {
        return Err(format!(
            "status {status}: {}",
            v["error"].as_str().or(v["message"].as_str()).unwrap_or("")
        ));
    }
    if let Some(ticker) = v["ticker"].as_str()
        && !ticker.eq_ignore_ascii_case(req.symbol.as_str())
    {
        return Err(format!("answer is for {ticker}, asked for {}", req.symbol));
    }
    let mut page = Page {
        next_url: v["next_url"].as_str().map(str::to_string),
        ..Page::default()
    };
    let rows = match &v["results"] {
        Value::Null => return Ok(page),
        Value::Array(rows) => rows,
        _ => return Err("`results` is not an array".into()),
    };
    for row in rows {
        let t = row["t"].as_i64();
        let ts = t.and_then(|ms| map_midnight_stamp(req.interval, ms * 1000));
        match ohlcv_row(row, ts, "no valid `t`") {
            Ok(bar) => page.bars.push(bar),
            Err(rejected) => page.rejected.push(rejected),
        }
    }
    Ok(page)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Symbol;

    fn req(symbol: &str, interval: Interval) -> FetchRequest {
        FetchRequest {
            symbol: Symbol::new(symbol).unwrap(),
            interval,
            start: 0,
            end: 0,
        }
    }

    #[test]
    fn aapl_daily_2005() {
        let body = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/providers/polygon/v2__aggs__ticker__AAPL__range__1__day__2005-04-01__2005-04-04.json"
        ))
        .unwrap();
        let page = parse_aggs(&body, &req("AAPL", Interval::D1)).unwrap();
        assert!(page.next_url.is_none() && page.rejected.is_empty());
        assert_eq!(
            page.bars[0],
            RawBar {
                // t = 2005-04-01 05:00 UTC (00:00 New York) → 00:00 UTC of 2005-04-01.
                ts: 1_112_313_600_000_000,
                open: 1.5032,
                high: 1.5064,
                low: 1.4489,
                close: 1.4604,
                volume: 642_646_396.0,
                vwap: Some(1.469),
                trades: Some(82_132),
            }
        );
        // Monday 2005-04-04.
        assert_eq!(page.bars[1].ts, 1_112_572_800_000_000);
        let err = parse_aggs(&body, &req("MSFT", Interval::D1)).unwrap_err();
        assert_eq!(err, "answer is for AAPL, asked for MSFT");
    }

    #[test]
    fn nulls_and_pages() {
        let body = br#"{"ticker":"X:BTCUSD","status":"OK","results":[
            {"t":1612137600000,"o":1,"h":2,"l":0.5,"c":null,"v":3}],
            "next_url":"https://api.polygon.io/v2/aggs/ticker/X:BTCUSD/range/1/week/1/2?cursor=abc"}"#;
        let page = parse_aggs(body, &req("X:BTCUSD", Interval::W1)).unwrap();
        assert!(page.bars.is_empty());
        // A Monday stays a Monday.
        assert_eq!(page.rejected[0].ts, Some(1_612_137_600_000_000));
        assert!(page.next_url.unwrap().ends_with("cursor=abc"));
        // Sunday 2021-01-31 05:00 UTC is the week of Monday 2021-02-01.
        let body =
            br#"{"ticker":"AAPL","results":[{"t":1612069200000,"o":1,"h":2,"l":0.5,"c":1,"v":3}]}"#;
        let page = parse_aggs(body, &req("AAPL", Interval::W1)).unwrap();
        assert_eq!(page.bars[0].ts, 1_612_137_600_000_000);
        assert!(
            parse_aggs(
                br#"{"status":"ERROR","error":"bad key"}"#,
                &req("AAPL", Interval::W1)
            )
            .is_err()
        );
    }
}
