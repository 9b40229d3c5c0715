//! Polygon aggregates: `/v2/aggs/ticker/{symbol}/range/{n}/{unit}/{from_ms}/{to_ms}` with
//! `apiKey`, paginated by `next_url` (which does not carry the key). Bars are asked
//! `adjusted=false`: as traded (Polygon's default adjusts them for splits as of the request).
//!
//! `t` is the bar's start in ms; daily bars of US stocks start at 00:00 New York and are mapped
//! to 00:00 UTC of that date, weekly bars (stamped on the Sunday that starts Polygon's week) to
//! the Monday.
//!
//! Corporate actions: `/v3/reference/splits` (`split_from` old shares become `split_to` new
//! ones on `execution_date`) and `/v3/reference/dividends` (`cash_amount` per share on
//! `ex_dividend_date`), both paginated by `next_url`.

use chrono::NaiveDate;
use serde_json::Value;

use super::convert::{UNLIMITED_RANGE, encode, floor_ms, join, map_midnight_stamp, ohlcv_row};
use super::{
    FetchError, FetchRequest, Fetched, FetchedActions, Provider, RawBar, Rejected, Upstream,
};
use crate::actions::{CorporateAction, parse_ex_date};
use crate::model::{Interval, MICROS_PER_DAY, Symbol};

/// Rows per page Polygon serves at most (`limit=50000`).
pub(crate) const PAGE_LIMIT: usize = 50_000;
/// Pages followed before the answer is judged to loop.
const MAX_PAGES: u32 = 10_000;
/// Events per page of the reference endpoints (`limit=1000`, their maximum).
const REFERENCE_LIMIT: usize = 1000;
/// Two splits of one symbol with the same ratio this close together are one split listed
/// twice (Polygon lists SHOP's 1:10 of 2022 on 06-22 and on 06-29): a second split of the same
/// ratio within a month does not happen.
const DUPLICATE_SPLIT_DAYS: i64 = 30;

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
                "/v2/aggs/ticker/{}/range/{n}/{unit}/{}/{}?adjusted=false&sort=asc&limit={PAGE_LIMIT}&apiKey={}",
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
        let key = self
            .api_key
            .as_deref()
            .ok_or_else(|| FetchError::Invalid("polygon needs api_key".into()))?;
        let recorded_at = up.clock().now_micros();
        let mut out = FetchedActions::default();
        let mut splits = Vec::new();
        for (path, date_field) in [
            ("/v3/reference/splits", "execution_date"),
            ("/v3/reference/dividends", "ex_dividend_date"),
        ] {
            let mut url = join(
                &self.base_url,
                &format!(
                    "{path}?ticker={}&{date_field}.gte={start}&{date_field}.lte={end}\
                     &limit={REFERENCE_LIMIT}&apiKey={}",
                    encode(symbol.as_str()),
                    encode(key),
                ),
            );
            let mut pages = 0;
            loop {
                let page = up
                    .get(&url, &[], |body| {
                        parse_reference(body, symbol, self.kind(), recorded_at)
                    })
                    .await?;
                out.requests += 1;
                pages += 1;
                for action in page.actions {
                    if action.ratio.is_some() {
                        splits.push(action);
                    } else {
                        out.actions.push(action);
                    }
                }
                out.rejected.extend(page.rejected);
                let Some(next) = page.next_url else {
                    break;
                };
                if pages >= MAX_PAGES {
                    return Err(FetchError::Malformed {
                        url: crate::sync::upstream::redact(&url),
                        message: format!("next_url still present after {MAX_PAGES} pages"),
                    });
                }
                let sep = if next.contains('?') { '&' } else { '?' };
                url = format!("{next}{sep}apiKey={}", encode(key));
            }
        }
        let (kept, duplicates) = dedup_splits(splits);
        out.actions.extend(kept);
        out.rejected.extend(duplicates);
        Ok(out)
    }
}

/// One page of a reference endpoint: the asked symbol's events.
#[derive(Debug, Default)]
pub(crate) struct ReferencePage {
    pub actions: Vec<CorporateAction>,
    pub rejected: Vec<Rejected>,
    pub next_url: Option<String>,
}

/// Parses a page of `/v3/reference/splits` or `/v3/reference/dividends`; rows of other tickers
/// are skipped, rows that break a rule rejected with it.
pub(crate) fn parse_reference(
    body: &[u8],
    symbol: &Symbol,
    source: &str,
    recorded_at: i64,
) -> Result<ReferencePage, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not reference JSON: {e}"))?;
    if !v.is_object() {
        return Err("reference answer is not an object".into());
    }
    if let Some(status) = v["status"].as_str()
        && !matches!(status, "OK" | "DELAYED")
    {
        return Err(format!(
            "status {status}: {}",
            v["error"].as_str().or(v["message"].as_str()).unwrap_or("")
        ));
    }
    let mut page = ReferencePage {
        next_url: v["next_url"].as_str().map(str::to_string),
        ..ReferencePage::default()
    };
    let rows = match &v["results"] {
        Value::Null => return Ok(page),
        Value::Array(rows) => rows,
        _ => return Err("`results` is not an array".into()),
    };
    for row in rows {
        if !row["ticker"]
            .as_str()
            .is_some_and(|t| t.eq_ignore_ascii_case(symbol.as_str()))
        {
            continue;
        }
        let reject = |reason: String| Rejected {
            ts: None,
            raw: row.to_string(),
            reason,
        };
        let built = if let Some(date) = row.get("execution_date") {
            let (from, to) = (row["split_from"].as_f64(), row["split_to"].as_f64());
            date_of(date).and_then(|d| match (from, to) {
                (Some(from), Some(to)) => {
                    CorporateAction::split(symbol.clone(), d, to / from, source, recorded_at)
                        .map_err(|r| r.to_string())
                }
                _ => Err("`split_from` or `split_to` is not a number".into()),
            })
        } else if let Some(date) = row.get("ex_dividend_date") {
            date_of(date).and_then(|d| match row["cash_amount"].as_f64() {
                Some(amount) => {
                    CorporateAction::dividend(symbol.clone(), d, amount, source, recorded_at)
                        .map_err(|r| r.to_string())
                }
                None => Err("`cash_amount` is not a number".into()),
            })
        } else {
            Err("neither `execution_date` nor `ex_dividend_date`".into())
        };
        match built {
            Ok(action) => page.actions.push(action),
            Err(reason) => page.rejected.push(reject(reason)),
        }
    }
    Ok(page)
}

fn date_of(v: &Value) -> Result<NaiveDate, String> {
    let s = v
        .as_str()
        .ok_or_else(|| format!("date {v} is not a string"))?;
    parse_ex_date(s).map_err(|r| r.to_string())
}

/// Keeps one of each split listed twice: the same ratio within [`DUPLICATE_SPLIT_DAYS`] of a
/// later listing is the same split; the later date is kept (a split shows in the traded prices
/// from its real ex-date on, never before). The dropped listings come back as rejected.
pub(crate) fn dedup_splits(
    mut splits: Vec<CorporateAction>,
) -> (Vec<CorporateAction>, Vec<Rejected>) {
    splits.sort_by_key(|s| std::cmp::Reverse(s.ex_date));
    let mut kept: Vec<CorporateAction> = Vec::new();
    let mut dropped = Vec::new();
    for split in splits {
        let twin = kept.iter().find(|k| {
            k.symbol == split.symbol
                && k.same_values(&split)
                && (k.ex_date - split.ex_date).num_days() <= DUPLICATE_SPLIT_DAYS
        });
        match twin {
            Some(twin) => dropped.push(Rejected {
                ts: None,
                raw: format!(
                    "{} split {} on {}",
                    split.symbol,
                    split.ratio.unwrap_or(f64::NAN),
                    split.ex_date
                ),
                reason: format!(
                    "the same split as the one listed on {} (within {DUPLICATE_SPLIT_DAYS} days)",
                    twin.ex_date
                ),
            }),
            None => kept.push(split),
        }
    }
    kept.reverse();
    (kept, dropped)
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
        FetchRequest::new(Symbol::new(symbol).unwrap(), interval, 0, 0)
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

    fn reference(file: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/fixtures/providers/polygon/{file}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn date(s: &str) -> NaiveDate {
        parse_ex_date(s).unwrap()
    }

    #[test]
    fn splits_of_the_recorded_answer_and_the_shop_duplicate() {
        let body = reference("v3__reference__splits.json");
        let shop = Symbol::new("SHOP").unwrap();
        let page = parse_reference(&body, &shop, "polygon", 5).unwrap();
        assert!(page.next_url.is_none() && page.rejected.is_empty());
        // Polygon lists SHOP's 1:10 on 2022-06-22 and on 2022-06-29.
        assert_eq!(page.actions.len(), 2);
        let (kept, dropped) = dedup_splits(page.actions);
        assert_eq!(kept.len(), 1);
        assert_eq!(
            (kept[0].ex_date, kept[0].ratio, kept[0].recorded_at),
            (date("2022-06-29"), Some(10.0), 5)
        );
        assert_eq!(dropped.len(), 1);
        assert!(dropped[0].raw.contains("2022-06-22"), "{:?}", dropped[0]);
        // 2 old shares become 1: a reverse split.
        let brw = parse_reference(&body, &Symbol::new("BRW").unwrap(), "polygon", 0).unwrap();
        assert_eq!(brw.actions[0].ratio, Some(0.5));
        let cig = parse_reference(&body, &Symbol::new("CIG.C").unwrap(), "polygon", 0).unwrap();
        assert_eq!(cig.actions[0].ratio, Some(4.0 / 3.0));
        assert!(
            parse_reference(&body, &Symbol::new("AAPL").unwrap(), "polygon", 0)
                .unwrap()
                .actions
                .is_empty()
        );
    }

    #[test]
    fn dividends_of_the_recorded_answer() {
        let body = reference("v3__reference__dividends.json");
        let page = parse_reference(&body, &Symbol::new("CSSEN").unwrap(), "polygon", 0).unwrap();
        assert!(page.rejected.is_empty());
        assert!(!page.actions.is_empty());
        let first = &page.actions[0];
        assert_eq!(
            (first.ex_date, first.kind, first.amount, first.ratio),
            (
                date("2025-06-12"),
                crate::actions::ActionKind::Dividend,
                Some(0.59375),
                None
            )
        );
    }

    #[test]
    fn bad_reference_rows_are_rejected_one_by_one() {
        let body = br#"{"status":"OK","results":[
            {"execution_date":"2022-06-29","split_from":1,"split_to":10,"ticker":"SHOP"},
            {"execution_date":"2022-07-01","split_from":0,"split_to":10,"ticker":"SHOP"},
            {"execution_date":"2022-07-02","split_from":1,"split_to":-3,"ticker":"SHOP"},
            {"execution_date":"2022-13-01","split_from":1,"split_to":2,"ticker":"SHOP"},
            {"ex_dividend_date":"2022-07-03","cash_amount":-1,"ticker":"SHOP"},
            {"ex_dividend_date":"2022-07-04","ticker":"SHOP"}],
            "next_url":"https://api.polygon.io/v3/reference/splits?cursor=abc"}"#;
        let page = parse_reference(body, &Symbol::new("SHOP").unwrap(), "polygon", 0).unwrap();
        assert_eq!(page.actions.len(), 1);
        let reasons: Vec<&str> = page.rejected.iter().map(|r| r.reason.as_str()).collect();
        assert_eq!(reasons.len(), 5, "{reasons:?}");
        assert!(reasons[0].contains("split ratio inf"), "{reasons:?}");
        assert!(reasons[1].contains("split ratio -3"), "{reasons:?}");
        assert!(reasons[2].contains("not a date"), "{reasons:?}");
        assert!(reasons[3].contains("amount -1"), "{reasons:?}");
        assert!(reasons[4].contains("cash_amount"), "{reasons:?}");
        assert!(page.next_url.unwrap().ends_with("cursor=abc"));
        assert!(
            parse_reference(
                br#"{"status":"ERROR","error":"bad key"}"#,
                &Symbol::new("SHOP").unwrap(),
                "polygon",
                0
            )
            .is_err()
        );
    }
}
