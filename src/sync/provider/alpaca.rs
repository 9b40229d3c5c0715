//! Alpaca market data v2: `/v2/stocks/bars?symbols&timeframe&start&end`, keys in the
//! `APCA-API-KEY-ID` / `APCA-API-SECRET-KEY` headers, paginated by `next_page_token`.
//!
//! Daily and weekly bars are stamped 00:00 New York (`2021-02-01T05:00:00Z`) and mapped to
//! 00:00 UTC of that date (weekly: its Monday). Bars are asked `adjustment=raw`: as traded.
//!
//! Corporate actions: `/v1/corporate-actions?symbols&types&start&end`, paginated by
//! `next_page_token`: forward and reverse splits (`old_rate` shares become `new_rate`) and cash
//! dividends (`rate` per share), each on its `ex_date`.

use chrono::NaiveDate;
use serde_json::Value;

use super::convert::{UNLIMITED_RANGE, encode, join, map_midnight_stamp, ohlcv_row};
use super::{
    FetchError, FetchRequest, Fetched, FetchedActions, Provider, RawBar, Rejected, Upstream,
};
use crate::actions::{CorporateAction, parse_ex_date};
use crate::model::time::rfc3339;
use crate::model::{Interval, Symbol};

/// Rows per page Alpaca serves at most (`limit=10000`).
pub(crate) const PAGE_LIMIT: usize = 10_000;
/// Events per page of `/v1/corporate-actions` (its maximum).
const ACTIONS_LIMIT: usize = 1000;
/// The kinds of corporate action tickvault stores.
const ACTION_TYPES: &str = "forward_split,reverse_split,cash_dividend";
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
        let headers = self.headers()?;
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
        let mut fetched = Fetched::default();
        fetched.requests = pages(
            up,
            &headers,
            &first,
            |body| {
                let page = parse_bars(body, req)?;
                Ok((page.next_page_token.clone(), page))
            },
            |page| {
                fetched.bars.extend(page.bars);
                fetched.rejected.extend(page.rejected);
            },
        )
        .await?;
        Ok(fetched)
    }

    fn serves_actions(&self) -> bool {
        true
    }

    async fn fetch_actions(
        &self,
        up: &Upstream,
        symbol: &Symbol,
        start: NaiveDate,
        end: NaiveDate,
    ) -> Result<FetchedActions, FetchError> {
        let headers = self.headers()?;
        let first = join(
            &self.base_url,
            &format!(
                "/v1/corporate-actions?symbols={}&types={}&start={start}&end={end}\
                 &limit={ACTIONS_LIMIT}&sort=asc",
                encode(symbol.as_str()),
                encode(ACTION_TYPES),
            ),
        );
        let recorded_at = up.clock().now_micros();
        let mut out = FetchedActions::default();
        out.requests = pages(
            up,
            &headers,
            &first,
            |body| {
                let page = parse_actions(body, symbol, self.kind(), recorded_at)?;
                Ok((page.next_page_token.clone(), page))
            },
            |page| {
                out.actions.extend(page.actions);
                out.rejected.extend(page.rejected);
            },
        )
        .await?;
        Ok(out)
    }
}

impl Alpaca {
    /// The key headers every request carries.
    fn headers(&self) -> Result<[(&'static str, &str); 2], FetchError> {
        match (self.key.as_deref(), self.secret.as_deref()) {
            (Some(key), Some(secret)) => {
                Ok([("APCA-API-KEY-ID", key), ("APCA-API-SECRET-KEY", secret)])
            }
            _ => Err(FetchError::Invalid(
                "alpaca needs api_key and api_secret".into(),
            )),
        }
    }
}

/// Follows `next_page_token` from `first` (at most [`MAX_PAGES`] pages), handing each parsed
/// page to `take`; returns the requests made. `parse` returns a page's token and the page.
async fn pages<P>(
    up: &Upstream,
    headers: &[(&str, &str)],
    first: &str,
    parse: impl Fn(&[u8]) -> Result<(Option<String>, P), String>,
    mut take: impl FnMut(P),
) -> Result<u32, FetchError> {
    let mut url = first.to_string();
    let mut requests = 0;
    loop {
        let (token, page) = up.get(&url, headers, &parse).await?;
        requests += 1;
        take(page);
        let Some(token) = token else {
            return Ok(requests);
        };
        if requests >= MAX_PAGES {
            return Err(FetchError::Malformed {
                url,
                message: format!("next_page_token still present after {MAX_PAGES} pages"),
            });
        }
        url = format!("{first}&page_token={}", encode(&token));
    }
}

/// One page of `/v1/corporate-actions`: the asked symbol's events.
#[derive(Debug, Default)]
pub(crate) struct ActionsPage {
    pub actions: Vec<CorporateAction>,
    pub rejected: Vec<Rejected>,
    pub next_page_token: Option<String>,
}

/// Parses a page of `/v1/corporate-actions` (`{"corporate_actions": {"forward_splits": [..],
/// "reverse_splits": [..], "cash_dividends": [..], ...}, "next_page_token"}`). Other kinds and
/// other symbols are skipped; rows that break a rule are rejected with it.
pub(crate) fn parse_actions(
    body: &[u8],
    symbol: &Symbol,
    source: &str,
    recorded_at: i64,
) -> Result<ActionsPage, String> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| format!("not corporate actions JSON: {e}"))?;
    if !v.is_object() {
        return Err("corporate actions answer is not an object".into());
    }
    let actions = match &v["corporate_actions"] {
        Value::Object(by_kind) => Some(by_kind),
        Value::Null => None,
        _ => return Err("`corporate_actions` is not an object".into()),
    };
    let mut page = ActionsPage {
        next_page_token: v["next_page_token"]
            .as_str()
            .filter(|t| !t.is_empty())
            .map(str::to_string),
        ..ActionsPage::default()
    };
    for kind in ["forward_splits", "reverse_splits", "cash_dividends"] {
        let rows = match actions.and_then(|a| a.get(kind)) {
            None | Some(Value::Null) => continue,
            Some(Value::Array(rows)) => rows,
            Some(_) => return Err(format!("corporate_actions.{kind} is not an array")),
        };
        for row in rows {
            if !row["symbol"]
                .as_str()
                .is_some_and(|s| s.eq_ignore_ascii_case(symbol.as_str()))
            {
                continue;
            }
            let ex_date = row["ex_date"]
                .as_str()
                .ok_or_else(|| "no `ex_date`".to_string())
                .and_then(|d| parse_ex_date(d).map_err(|r| r.to_string()));
            let built = ex_date.and_then(|d| {
                if kind == "cash_dividends" {
                    match row["rate"].as_f64() {
                        Some(amount) => CorporateAction::dividend(
                            symbol.clone(),
                            d,
                            amount,
                            source,
                            recorded_at,
                        )
                        .map_err(|r| r.to_string()),
                        None => Err("`rate` is not a number".into()),
                    }
                } else {
                    match (row["new_rate"].as_f64(), row["old_rate"].as_f64()) {
                        (Some(new), Some(old)) => CorporateAction::split(
                            symbol.clone(),
                            d,
                            new / old,
                            source,
                            recorded_at,
                        )
                        .map_err(|r| r.to_string()),
                        _ => Err("`new_rate` or `old_rate` is not a number".into()),
                    }
                }
            });
            match built {
                Ok(action) => page.actions.push(action),
                Err(reason) => page.rejected.push(Rejected {
                    ts: None,
                    raw: row.to_string(),
                    reason,
                }),
            }
        }
    }
    Ok(page)
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
        FetchRequest::new(Symbol::new(symbol).unwrap(), interval, 0, 0)
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

    fn actions(name: &str, symbol: &str) -> ActionsPage {
        parse_actions(&fixture(name), &Symbol::new(symbol).unwrap(), "alpaca", 3).unwrap()
    }

    fn date(s: &str) -> NaiveDate {
        parse_ex_date(s).unwrap()
    }

    #[test]
    fn corporate_actions_of_the_recorded_answers() {
        let first = "alpaca-py__test_get_corporate_actions__1.json";
        // 1 new share for 50 old: a reverse split.
        let mnts = actions(first, "MNTS");
        assert_eq!(
            (mnts.actions[0].ex_date, mnts.actions[0].ratio),
            (date("2023-08-24"), Some(0.02))
        );
        let sre = actions(first, "SRE");
        assert_eq!(
            (
                sre.actions[0].ex_date,
                sre.actions[0].ratio,
                sre.actions[0].recorded_at
            ),
            (date("2023-08-22"), Some(2.0), 3)
        );
        let fcf = actions(first, "FCF");
        assert_eq!(
            (fcf.actions[0].ex_date, fcf.actions[0].amount),
            (date("2023-05-04"), Some(0.125))
        );
        assert_eq!(
            fcf.next_page_token.as_deref(),
            Some("MDA3Q1ZSMDIwfDIwMjQtMDItMTV8NjBiZjkxYzItMDc0Ni00ZDliLThjOWUtYTgwYmIzMDhmZDkx")
        );
        // Stock dividends, unit splits, mergers and the rest are not stored.
        for other in [
            "MSBC", "TPBAU", "LVRO", "JUPW", "SRM", "GLOP", "EXR", "ORPHY", "IFN",
        ] {
            let page = actions(first, other);
            assert!(
                page.actions.is_empty() && page.rejected.is_empty(),
                "{other}"
            );
        }
        let last = actions("alpaca-py__test_get_corporate_actions__2.json", "ZMTBY");
        assert_eq!(last.actions[0].amount, Some(0.086928));
        assert!(last.next_page_token.is_none());
    }

    #[test]
    fn bad_corporate_actions_are_rejected_one_by_one() {
        let body = br#"{"corporate_actions":{
            "forward_splits":[{"symbol":"X","new_rate":2,"old_rate":1,"ex_date":"2023-08-22"},
                              {"symbol":"X","new_rate":2,"old_rate":0,"ex_date":"2023-08-23"},
                              {"symbol":"X","new_rate":2,"old_rate":1,"ex_date":"someday"}],
            "reverse_splits":[{"symbol":"X","new_rate":0,"old_rate":10,"ex_date":"2023-08-24"}],
            "cash_dividends":[{"symbol":"X","rate":-0.1,"ex_date":"2023-05-04"},
                              {"symbol":"X","ex_date":"2023-05-05"}]},
            "next_page_token":null}"#;
        let page = parse_actions(body, &Symbol::new("X").unwrap(), "alpaca", 0).unwrap();
        assert_eq!(page.actions.len(), 1);
        let reasons: Vec<&str> = page.rejected.iter().map(|r| r.reason.as_str()).collect();
        assert_eq!(reasons.len(), 5, "{reasons:?}");
        assert!(reasons[0].contains("split ratio inf"), "{reasons:?}");
        assert!(reasons[1].contains("not a date"), "{reasons:?}");
        assert!(reasons[2].contains("split ratio 0"), "{reasons:?}");
        assert!(reasons[3].contains("amount -0.1"), "{reasons:?}");
        assert!(reasons[4].contains("`rate`"), "{reasons:?}");
        assert!(parse_actions(b"[]", &Symbol::new("X").unwrap(), "alpaca", 0).is_err());
    }
}
