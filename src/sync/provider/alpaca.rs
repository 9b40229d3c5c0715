//! Alpaca market data v2: `/v2/stocks/bars?symbols&timeframe&start&end`, keys in the
//! `APCA-API-KEY-ID` / `APCA-API-SECRET-KEY` headers, paginated by `next_page_token`.
//!
//! Daily and weekly bars are stamped 00:00 New York (`2021-02-01T05:00:00Z`) and mapped to
//! 00:00 UTC of that date (weekly: its Monday).

use serde_json::Value;

use super::convert::{UNLIMITED_RANGE, encode, join, map_midnight_stamp, ohlcv_row, rfc3339};
use super::{FetchError, FetchRequest, Fetched, Provider, RawBar, Rejected, Upstream};
use crate::model::Interval;

/// Rows per page Alpaca serves at most (`limit=10000`).
pub(crate) const PAGE_LIMIT: usize = 10_000;
const MAX_PAGES: u32 = 10_000;

#[derive(Debug)]
pub struct Alpaca {
    base_url: String,
    key: Option<String>,
    secret: Option<String>,
}

impl Alpaca {
    pub fn new(base_url: Option<String>, key: Option<String>, secret: Option<String>) -> Self {
        Self {
            base_url: base_url.unwrap_or_else(|| "https://data.alpaca.markets".into()),
            key,
            secret,
        }
    }
}

/// Alpaca's `timeframe` of an interval.
pub(crate) fn timeframe(interval: Interval) -> &'static str {
    match interval {
        Interval::M1 => "1Min",
        Interval::M5 => "5Min",
        Interval::M15 => "15Min",
        Interval::M30 => "30Min",
        Interval::H1 => "1Hour",
        Interval::H4 => "4Hour",
        Interval::D1 => "1Day",
        Interval::W1 => "1Week",
    }
}

#[async_trait::async_trait]
impl Provider for Alpaca {
    fn kind(&self) -> &'static str {
        "alpaca"
    }

    fn supports(&self, _interval: Interval) -> bool {
        true
    }

    /// 9,000 bars of the interval: one page for stocks (at most 960 1m bars a day with
    /// extended hours), two for 24-hour crypto.
    fn max_range(&self, interval: Interval) -> i64 {
        (interval.micros() * 9_000).min(UNLIMITED_RANGE)
    }

    async fn fetch(&self, up: &Upstream, req: &FetchRequest) -> Result<Fetched, FetchError> {
        let (Some(key), Some(secret)) = (self.key.as_deref(), self.secret.as_deref()) else {
            return Err(FetchError::Invalid(
                "alpaca needs api_key and api_secret".into(),
            ));
        };
        let headers = [("APCA-API-KEY-ID", key), ("APCA-API-SECRET-KEY", secret)];
        // `end` is inclusive.
        let first = join(
            &self.base_url,
            &format!(
                "/v2/stocks/bars?symbols={}&timeframe={}&start={}&end={}&limit={PAGE_LIMIT}\
                 &adjustment=raw&feed=iex&sort=asc",
                encode(req.symbol.as_str()),
                timeframe(req.interval),
                encode(&rfc3339(req.start)),
                encode(&rfc3339(req.end - 1)),
            ),
        );
        let mut url = first.clone();
        let mut fetched = Fetched::default();
        loop {
            let page = up.get(&url, &headers, |body| parse_bars(body, req)).await?;
            fetched.requests += 1;
            fetched.bars.extend(page.bars);
            fetched.rejected.extend(page.rejected);
            let Some(token) = page.next_page_token else {
                return Ok(fetched);
            };
            if fetched.requests >= MAX_PAGES {
                return Err(FetchError::Malformed {
                    url,
                    message: format!("next_page_token still present after {MAX_PAGES} pages"),
                });
            }
            url = format!("{first}&page_token={}", encode(&token));
        }
    }
}

#[derive(Debug, Default)]
pub(crate) struct Page {
    pub bars: Vec<RawBar>,
    pub rejected: Vec<Rejected>,
    pub next_page_token: Option<String>,
}

/// Parses both shapes: multi-symbol `{"bars":{"SYM":[..]}}` and single-symbol
/// `{"bars":[..],"symbol":"SYM"}`.
pub(crate) fn parse_bars(body: &[u8], req: &FetchRequest) -> Result<Page, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not bars JSON: {e}"))?;
    if !v.is_object() {
        return Err("bars answer is not an object".into());
    }
    let asked = req.symbol.as_str();
    let empty = Vec::new();
    let rows = match &v["bars"] {
        Value::Null => &empty,
        Value::Array(rows) => {
            if let Some(s) = v["symbol"].as_str()
                && !s.eq_ignore_ascii_case(asked)
            {
                return Err(format!("answer is for {s}, asked for {asked}"));
            }
            rows
        }
        Value::Object(by_symbol) => {
            match by_symbol
                .iter()
                .find(|(s, _)| s.eq_ignore_ascii_case(asked))
            {
                Some((_, Value::Array(rows))) => rows,
                Some(_) => return Err(format!("bars.{asked} is not an array")),
                None => match by_symbol.keys().next() {
                    Some(other) => return Err(format!("answer is for {other}, asked for {asked}")),
                    None => &empty,
                },
            }
        }
        _ => return Err("`bars` is neither an object nor an array".into()),
    };
    let mut page = Page {
        next_page_token: v["next_page_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .map(str::to_string),
        ..Page::default()
    };
    for row in rows {
        let ts = row["t"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .and_then(|t| map_midnight_stamp(req.interval, t.timestamp_micros()));
        match ohlcv_row(row, ts, "no valid RFC 3339 `t`") {
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

    fn fixture(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/fixtures/providers/alpaca/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn req(symbol: &str, interval: Interval) -> FetchRequest {
        FetchRequest {
            symbol: Symbol::new(symbol).unwrap(),
            interval,
            start: 0,
            end: 0,
        }
    }

    fn us(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_micros()
    }

    #[test]
    fn daily_bars_and_page_token() {
        let page = parse_bars(
            &fixture("alpaca-py__test_get_bars.json"),
            &req("AAPL", Interval::D1),
        )
        .unwrap();
        assert_eq!(
            page.bars[0],
            RawBar {
                ts: us("2022-02-01T00:00:00Z"),
                open: 174.0,
                high: 174.84,
                low: 172.31,
                close: 174.61,
                volume: 85_998_033.0,
                vwap: Some(173.703516),
                trades: Some(732_412),
            }
        );
        assert_eq!(page.bars[1].ts, us("2022-02-02T00:00:00Z"));
        assert_eq!(
            page.next_page_token.as_deref(),
            Some("QUFQTHxEfDIwMjItMDItMDJUMDU6MDA6MDAuMDAwMDAwMDAwWg==")
        );
    }

    #[test]
    fn intraday_descending_multi_and_empty() {
        let page = parse_bars(
            &fixture("alpaca-trade-api-go__TestGetBars__1.json"),
            &req("AMZN", Interval::M15),
        )
        .unwrap();
        assert_eq!(page.bars.len(), 5);
        assert_eq!(page.bars[1].ts, us("2021-10-15T16:15:00Z"));
        assert_eq!(page.bars[1].open, 3379.5241);
        assert!(page.next_page_token.is_none());

        // Summer: 04:00 UTC is midnight in New York.
        let page = parse_bars(
            &fixture("alpaca-py__test_get_bars_desc.json"),
            &req("TSLA", Interval::D1),
        )
        .unwrap();
        let ts: Vec<i64> = page.bars.iter().map(|b| b.ts).collect();
        assert_eq!(ts[0], us("2023-09-27T00:00:00Z"));
        assert_eq!(ts[2], us("2023-09-25T00:00:00Z"));

        let multi = fixture("alpaca-trade-api-go__TestGetMultiBars__1.json");
        let page = parse_bars(&multi, &req("NIO", Interval::D1)).unwrap();
        assert_eq!(page.bars[2].close, 37.71);
        let err = parse_bars(
            &fixture("alpaca-py__test_get_bars.json"),
            &req("MSFT", Interval::D1),
        )
        .unwrap_err();
        assert_eq!(err, "answer is for AAPL, asked for MSFT");

        let page = parse_bars(
            &fixture("alpaca-py__test_get_bars_single_empty_response.json"),
            &req("AAPL", Interval::D1),
        )
        .unwrap();
        assert!(page.bars.is_empty() && page.next_page_token.is_none());

        let crypto = parse_bars(
            &fixture("alpaca-trade-api-go__TestGetCryptoBars__1.json"),
            &req("BCH/USD", Interval::M1),
        )
        .unwrap();
        assert_eq!(crypto.bars.len(), 11);
        assert_eq!(crypto.bars[0].volume, 3.67960285);
    }

    #[test]
    fn single_symbol_shape_and_nulls() {
        let body = br#"{"bars":[{"t":"2021-02-01T05:00:00Z","o":1,"h":2,"l":0.5,"c":1.5,"v":9},
            {"t":"2021-02-02T05:00:00Z","o":1,"h":2,"l":0.5,"c":null,"v":9}],
            "symbol":"AAPL","next_page_token":null}"#;
        let page = parse_bars(body, &req("AAPL", Interval::D1)).unwrap();
        assert_eq!(page.bars.len(), 1);
        assert_eq!(page.rejected[0].ts, Some(us("2021-02-02T00:00:00Z")));
        assert!(parse_bars(body, &req("MSFT", Interval::D1)).is_err());
    }
}
