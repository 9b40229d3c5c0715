//! Yahoo chart v8: `/v8/finance/chart/{symbol}?period1&period2&interval`, no key.
//!
//! Daily and weekly bars are stamped with the session open instant (14:30 UTC for New York in
//! winter); they are mapped to 00:00 UTC of the local trading date (weekly: its Monday) using
//! the exchange's time zone from `meta`.
//!
//! Yahoo's prices are split-adjusted as of the moment of the request (NVDA 2021-02-01 closed at
//! 529.48; asked in 2025, Yahoo says 13.237 = 529.48 / 4 / 10). The adapter returns bars as
//! traded: it multiplies each bar's prices by the ratios of every split with a later ex-date
//! up to the request (and divides its volume by them). The chart answer lists the events of
//! its own range only, so the splits after it come from the caller ([`FetchRequest::splits`],
//! asked once per sync) or from one events request of its own.

use std::collections::BTreeMap;

use chrono::{FixedOffset, NaiveDate, TimeZone};
use serde_json::Value;

use super::convert::{UNLIMITED_RANGE, ceil_secs, dated_bar_us, encode, floor_secs, join, num};
use super::{
    FetchError, FetchRequest, Fetched, FetchedActions, Provider, RawBar, Rejected, Upstream,
};
use crate::actions::CorporateAction;
use crate::model::time::{date_us, utc_date};
use crate::model::{Interval, MICROS_PER_DAY, Symbol};

/// A range that ends less than this before the request is asked up to the request instead, so
/// the chart's own events cover every split up to it (live updates need no events request).
const NOW_SLACK: i64 = 3600 * 1_000_000;

/// Significant digits of Yahoo's prices: it sends 32-bit floats (13.237 arrives as
/// 13.237000465393066), so digits beyond these are noise that a split ratio would magnify.
const PRICE_DIGITS: i32 = 7;

#[derive(Debug)]
pub struct Yahoo {
    base_url: String,
}

impl Yahoo {
    pub fn new(base_url: Option<String>) -> Self {
        Self {
            base_url: base_url.unwrap_or_else(|| "https://query1.finance.yahoo.com".into()),
        }
    }
}

/// Yahoo's name of an interval; 4h is not served.
pub(crate) fn interval_param(interval: Interval) -> Option<&'static str> {
    Some(match interval {
        Interval::M1 => "1m",
        Interval::M5 => "5m",
        Interval::M15 => "15m",
        Interval::M30 => "30m",
        Interval::H1 => "60m",
        Interval::H4 => return None,
        Interval::D1 => "1d",
        Interval::W1 => "1wk",
    })
}

/// The longest `period2 - period1` Yahoo accepts per request, µs.
pub(crate) fn range_limit(interval: Interval) -> i64 {
    match interval {
        Interval::M1 => 7 * MICROS_PER_DAY,
        Interval::M5 | Interval::M15 | Interval::M30 => 60 * MICROS_PER_DAY,
        Interval::H1 | Interval::H4 => 730 * MICROS_PER_DAY,
        Interval::D1 | Interval::W1 => UNLIMITED_RANGE,
    }
}

#[async_trait::async_trait]
impl Provider for Yahoo {
    fn kind(&self) -> &'static str {
        "yahoo"
    }

    fn supports(&self, interval: Interval) -> bool {
        interval_param(interval).is_some()
    }

    fn max_range(&self, interval: Interval) -> i64 {
        range_limit(interval)
    }

    fn serves_actions(&self) -> bool {
        true
    }

    fn needs_splits(&self) -> bool {
        true
    }

    async fn fetch(&self, up: &Upstream, req: &FetchRequest) -> Result<Fetched, FetchError> {
        let interval = interval_param(req.interval).ok_or_else(|| {
            FetchError::Invalid(format!("yahoo does not serve {} bars", req.interval))
        })?;
        // A daily bar is stamped with its session open, which for exchanges east of UTC is
        // before 00:00 UTC of its date: start a day early so none is lost (the caller trims).
        let start = if req.interval.is_intraday() {
            req.start
        } else {
            req.start - MICROS_PER_DAY
        };
        let now = up.clock().now_micros();
        // A range ending about now is asked up to now (within the range limit): its answer
        // then lists every split after its bars.
        let end = if req.end < now
            && now - req.end <= NOW_SLACK
            && now - start <= range_limit(req.interval)
        {
            now
        } else {
            req.end
        };
        let url = join(
            &self.base_url,
            &format!(
                "/v8/finance/chart/{}?period1={}&period2={}&interval={interval}\
                 &includePrePost=false&events=div,split",
                encode(req.symbol.as_str()),
                floor_secs(start),
                ceil_secs(end),
            ),
        );
        let (mut fetched, events, zone) =
            match up.get(&url, &[], |body| parse_chart(body, req)).await? {
                Chart::Bars {
                    fetched,
                    events,
                    zone,
                } => (fetched, events, zone),
                Chart::Error { code, description } if code.eq_ignore_ascii_case("Not Found") => {
                    return Err(FetchError::Status {
                        status: 404,
                        url,
                        body: description,
                        retry_after: None,
                    });
                }
                Chart::Error { code, description } => {
                    return Err(FetchError::Invalid(format!(
                        "yahoo refused {} {}: {code}: {description}",
                        req.symbol, req.interval
                    )));
                }
            };
        fetched.requests = 1;
        if fetched.bars.is_empty() {
            return Ok(fetched);
        }
        let mut splits = BTreeMap::new();
        let chart_reaches_now = ceil_secs(end) * 1_000_000 >= now;
        match &req.splits {
            Some(known) => splits.extend(known.splits.iter().copied()),
            None if chart_reaches_now => {}
            None => {
                let from = utc_date(start).unwrap_or(NaiveDate::MIN);
                let to = utc_date(now).unwrap_or(NaiveDate::MAX);
                let own = self.fetch_actions(up, &req.symbol, from, to).await?;
                fetched.requests += own.requests;
                splits.extend(
                    own.actions
                        .iter()
                        .filter_map(|a| Some((a.ex_date, a.ratio?))),
                );
            }
        }
        // The chart's own events are the freshest for its range.
        splits.extend(events.splits());
        let intraday = req.interval.is_intraday();
        unadjust(&mut fetched.bars, &splits, |ts| {
            if intraday {
                zone.local_date(ts.div_euclid(1_000_000))
            } else {
                utc_date(ts)
            }
        });
        Ok(fetched)
    }

    async fn fetch_actions(
        &self,
        up: &Upstream,
        symbol: &Symbol,
        start: NaiveDate,
        end: NaiveDate,
    ) -> Result<FetchedActions, FetchError> {
        // Events are stamped with their session open, a day either side of 00:00 UTC of the
        // ex-date; the answer is asked up to now, as its dividend amounts are divided by every
        // split up to now (and multiplied back below).
        let now = up.clock().now_micros();
        let from = date_us(start) - MICROS_PER_DAY;
        let to = now.max(date_us(end) + 2 * MICROS_PER_DAY);
        let url = join(
            &self.base_url,
            &format!(
                "/v8/finance/chart/{}?period1={}&period2={}&interval=1mo\
                 &includePrePost=false&events=div,split",
                encode(symbol.as_str()),
                floor_secs(from),
                ceil_secs(to),
            ),
        );
        let req = FetchRequest::new(symbol.clone(), Interval::D1, from, to);
        let events = match up.get(&url, &[], |body| parse_chart(body, &req)).await? {
            Chart::Bars { events, .. } => events,
            Chart::Error { code, description } if code.eq_ignore_ascii_case("Not Found") => {
                return Err(FetchError::Status {
                    status: 404,
                    url,
                    body: description,
                    retry_after: None,
                });
            }
            Chart::Error { code, description } => {
                return Err(FetchError::Invalid(format!(
                    "yahoo refused the events of {symbol}: {code}: {description}"
                )));
            }
        };
        let mut out = events.into_actions(symbol, self.kind(), now);
        out.actions.retain(|a| (start..=end).contains(&a.ex_date));
        out.requests = 1;
        Ok(out)
    }
}

/// `x` rounded to `digits` significant digits.
fn round_significant(x: f64, digits: i32) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let magnitude = x.abs().log10().floor() as i32;
    let exponent = digits - 1 - magnitude;
    if exponent >= 0 {
        let scale = 10f64.powi(exponent);
        (x * scale).round() / scale
    } else {
        let scale = 10f64.powi(-exponent);
        (x / scale).round() * scale
    }
}

/// Turns bars split-adjusted as of the request back into bars as traded: each bar's prices are
/// multiplied by the product of the ratios of the splits whose ex-date is after the bar's
/// trading date (`trading_date` of its open time), its volume divided by it. A split applies
/// from its ex-date's session open, so every bar of an earlier date, intraday ones included,
/// was divided by it.
pub(crate) fn unadjust(
    bars: &mut [RawBar],
    splits: &BTreeMap<NaiveDate, f64>,
    trading_date: impl Fn(i64) -> Option<NaiveDate>,
) {
    if splits.is_empty() {
        return;
    }
    for bar in bars.iter_mut() {
        let Some(date) = trading_date(bar.ts) else {
            continue;
        };
        let factor: f64 = splits
            .range(date.succ_opt().unwrap_or(date)..)
            .map(|(_, r)| r)
            .product();
        if factor == 1.0 {
            continue;
        }
        for price in [&mut bar.open, &mut bar.high, &mut bar.low, &mut bar.close] {
            *price = round_significant(*price * factor, PRICE_DIGITS);
        }
        if let Some(vwap) = &mut bar.vwap {
            *vwap = round_significant(*vwap * factor, PRICE_DIGITS);
        }
        let whole = bar.volume.fract() == 0.0;
        bar.volume /= factor;
        if whole {
            bar.volume = bar.volume.round();
        }
    }
}

/// A chart answer: bars (split-adjusted as Yahoo sends them) with the events of its range and
/// the exchange's time zone, or the error Yahoo reported in `chart.error`.
#[derive(Debug)]
pub(crate) enum Chart {
    Bars {
        fetched: Fetched,
        events: Events,
        zone: Zone,
    },
    Error {
        code: String,
        description: String,
    },
}

/// One event of a chart's `events`, its stamp (the ex-date's session open) mapped to the
/// exchange's date.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Event {
    Split { ex_date: NaiveDate, ratio: f64 },
    Dividend { ex_date: NaiveDate, amount: f64 },
}

/// The `events` of a chart answer: splits (`numerator`/`denominator` new shares per old) and
/// dividends (`amount`, split-adjusted as of the request like the prices).
#[derive(Debug, Default)]
pub(crate) struct Events {
    pub events: Vec<Event>,
    /// Events that could not be read (no date, no numbers).
    pub unreadable: Vec<Rejected>,
}

impl Events {
    /// The splits whose ratio is usable (finite, above 0), by ex-date.
    pub(super) fn splits(&self) -> impl Iterator<Item = (NaiveDate, f64)> + '_ {
        self.events.iter().filter_map(|e| match e {
            Event::Split { ex_date, ratio } if ratio.is_finite() && *ratio > 0.0 => {
                Some((*ex_date, *ratio))
            }
            _ => None,
        })
    }

    /// The events as corporate actions of `symbol`, dividend amounts multiplied back by the
    /// splits after them; events the rules refuse are rejected with the rule.
    pub(super) fn into_actions(
        self,
        symbol: &Symbol,
        source: &str,
        recorded_at: i64,
    ) -> FetchedActions {
        let splits: BTreeMap<NaiveDate, f64> = self.splits().collect();
        let mut out = FetchedActions {
            rejected: self.unreadable,
            ..FetchedActions::default()
        };
        for event in self.events {
            let built = match &event {
                Event::Split { ex_date, ratio } => {
                    CorporateAction::split(symbol.clone(), *ex_date, *ratio, source, recorded_at)
                }
                Event::Dividend { ex_date, amount } => {
                    let later: f64 = splits
                        .range(ex_date.succ_opt().unwrap_or(*ex_date)..)
                        .map(|(_, r)| r)
                        .product();
                    let raw = if later == 1.0 {
                        *amount
                    } else {
                        round_significant(amount * later, PRICE_DIGITS)
                    };
                    CorporateAction::dividend(symbol.clone(), *ex_date, raw, source, recorded_at)
                }
            };
            match built {
                Ok(action) => out.actions.push(action),
                Err(rule) => out.rejected.push(Rejected {
                    ts: None,
                    raw: format!("{event:?}"),
                    reason: rule.to_string(),
                }),
            }
        }
        out
    }
}

/// Reads `result.events`.
fn parse_events(result: &Value, zone: &Zone) -> Events {
    let mut out = Events::default();
    let events = &result["events"];
    for (kind, list) in [
        ("splits", &events["splits"]),
        ("dividends", &events["dividends"]),
    ] {
        let Some(list) = list.as_object() else {
            continue;
        };
        for (key, e) in list {
            let unreadable = |reason: &str| Rejected {
                ts: None,
                raw: format!("events.{kind}.{key}: {e}"),
                reason: reason.to_string(),
            };
            let Some(ex_date) = e["date"]
                .as_i64()
                .or_else(|| key.parse().ok())
                .and_then(|secs| zone.local_date(secs))
            else {
                out.unreadable.push(unreadable("no valid `date`"));
                continue;
            };
            let event = if kind == "splits" {
                match (num(e.get("numerator")), num(e.get("denominator"))) {
                    (Some(n), Some(d)) => Event::Split {
                        ex_date,
                        ratio: n / d,
                    },
                    _ => {
                        out.unreadable
                            .push(unreadable("`numerator` or `denominator` is not a number"));
                        continue;
                    }
                }
            } else {
                match num(e.get("amount")) {
                    Some(amount) => Event::Dividend { ex_date, amount },
                    None => {
                        out.unreadable.push(unreadable("`amount` is not a number"));
                        continue;
                    }
                }
            };
            out.events.push(event);
        }
    }
    out
}

/// The bar stamps' time zone: `exchangeTimezoneName`, else the fixed `gmtoffset`.
#[derive(Debug)]
pub(crate) enum Zone {
    Named(chrono_tz::Tz),
    Fixed(FixedOffset),
}

impl Zone {
    fn of(meta: &Value) -> Zone {
        if let Some(tz) = meta["exchangeTimezoneName"]
            .as_str()
            .and_then(|n| n.parse::<chrono_tz::Tz>().ok())
        {
            return Zone::Named(tz);
        }
        let offset = meta["gmtoffset"].as_i64().unwrap_or(0) as i32;
        Zone::Fixed(FixedOffset::east_opt(offset).unwrap_or(FixedOffset::east_opt(0).unwrap()))
    }

    fn local_date(&self, secs: i64) -> Option<NaiveDate> {
        Some(match self {
            Zone::Named(tz) => tz.timestamp_opt(secs, 0).single()?.date_naive(),
            Zone::Fixed(off) => off.timestamp_opt(secs, 0).single()?.date_naive(),
        })
    }
}

/// Parses a chart v8 body for `req`. An `Err` is a malformed answer.
pub(crate) fn parse_chart(body: &[u8], req: &FetchRequest) -> Result<Chart, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not chart JSON: {e}"))?;
    let chart = v.get("chart").ok_or("no `chart` object")?;
    if let Some(err) = chart.get("error").filter(|e| !e.is_null()) {
        return Ok(Chart::Error {
            code: err["code"].as_str().unwrap_or("").to_string(),
            description: err["description"].as_str().unwrap_or("").to_string(),
        });
    }
    let result = chart["result"]
        .get(0)
        .ok_or("`chart.result` is empty and `chart.error` is null")?;
    let meta = &result["meta"];
    let answered = meta["symbol"].as_str().ok_or("no `meta.symbol`")?;
    if !answered.eq_ignore_ascii_case(req.symbol.as_str()) {
        return Err(format!(
            "answer is for {answered}, asked for {}",
            req.symbol
        ));
    }
    let empty = Vec::new();
    let stamps = match &result["timestamp"] {
        Value::Null => &empty,
        Value::Array(a) => a,
        _ => return Err("`timestamp` is not an array".into()),
    };
    let quote = &result["indicators"]["quote"][0];
    let column = |name: &str| -> Result<&[Value], String> {
        match &quote[name] {
            Value::Null => Ok(&[]),
            Value::Array(a) if a.len() == stamps.len() => Ok(a),
            Value::Array(a) => Err(format!(
                "indicators.quote[0].{name} has {} values for {} timestamps",
                a.len(),
                stamps.len()
            )),
            _ => Err(format!("indicators.quote[0].{name} is not an array")),
        }
    };
    let (open, high, low, close, volume) = (
        column("open")?,
        column("high")?,
        column("low")?,
        column("close")?,
        column("volume")?,
    );
    let zone = Zone::of(meta);
    let events = parse_events(result, &zone);
    let mut fetched = Fetched::default();
    for (i, stamp) in stamps.iter().enumerate() {
        let secs = stamp
            .as_i64()
            .ok_or_else(|| format!("timestamp[{i}] is not an integer: {stamp}"))?;
        let at = |c: &[Value]| num(c.get(i));
        let ohlc = [at(open), at(high), at(low), at(close)];
        let vol = at(volume);
        // A row of nulls is a minute without trades that Yahoo lists anyway: no bar.
        if ohlc.iter().all(Option::is_none) {
            continue;
        }
        let ts = if req.interval.is_intraday() {
            Some(secs * 1_000_000)
        } else {
            zone.local_date(secs).map(|d| dated_bar_us(req.interval, d))
        };
        let raw = || {
            let cell = |c: &[Value]| c.get(i).cloned().unwrap_or(Value::Null);
            serde_json::json!({
                "timestamp": stamp, "open": cell(open), "high": cell(high),
                "low": cell(low), "close": cell(close), "volume": cell(volume),
            })
            .to_string()
        };
        match (ts, ohlc, vol) {
            (Some(ts), [Some(open), Some(high), Some(low), Some(close)], Some(volume)) => {
                fetched.bars.push(RawBar {
                    ts,
                    open,
                    high,
                    low,
                    close,
                    volume,
                    vwap: None,
                    trades: None,
                })
            }
            (None, ..) => fetched.rejected.push(Rejected {
                ts: None,
                raw: raw(),
                reason: format!("timestamp {secs} is out of range"),
            }),
            (Some(ts), ..) => fetched.rejected.push(Rejected {
                ts: Some(ts),
                raw: raw(),
                reason: "some of open, high, low, close, volume are null".into(),
            }),
        }
    }
    Ok(Chart::Bars {
        fetched,
        events,
        zone,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Symbol;

    const DIR: &str = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/providers/yahoo/"
    );

    /// The recorded body of a fixture (`response.bodyJson`).
    fn body(file: &str) -> Vec<u8> {
        let text = std::fs::read_to_string(format!("{DIR}{file}")).unwrap();
        let v: Value = serde_json::from_str(&text).unwrap();
        serde_json::to_vec(&v["response"]["bodyJson"]).unwrap()
    }

    fn req(symbol: &str, interval: Interval) -> FetchRequest {
        FetchRequest::new(Symbol::new(symbol).unwrap(), interval, 0, 0)
    }

    fn bars(file: &str, symbol: &str, interval: Interval) -> Fetched {
        match parse_chart(&body(file), &req(symbol, interval)).unwrap() {
            Chart::Bars { fetched, .. } => fetched,
            other => panic!("{other:?}"),
        }
    }

    fn us(s: &str) -> i64 {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_micros()
    }

    #[test]
    fn aapl_daily_maps_session_opens_to_utc_midnight() {
        let f = bars(
            "chart-AAPL-2020-08-31-to-2020-11-07.json",
            "aapl",
            Interval::D1,
        );
        assert_eq!(f.bars.len(), 49);
        assert!(f.rejected.is_empty());
        let b = &f.bars[1];
        assert_eq!(b.ts, us("2020-09-01T00:00:00Z"));
        let r2 = |x: f64| (x * 100.0).round() / 100.0;
        assert_eq!(
            [r2(b.open), r2(b.high), r2(b.low), r2(b.close)],
            [132.76, 134.80, 130.53, 134.18]
        );
        assert_eq!(b.volume, 151_948_100.0);
        // Summer (EDT) and winter (EST) session opens both land on their date.
        assert_eq!(f.bars[0].ts, us("2020-08-31T00:00:00Z"));
        assert_eq!(f.bars.last().unwrap().ts, us("2020-11-06T00:00:00Z"));
        assert!(
            f.bars
                .iter()
                .all(|b| Interval::D1.check_alignment(b.ts).is_ok())
        );
    }

    #[test]
    fn exchanges_east_of_utc_and_fx_keep_their_dates() {
        // Jakarta opens at 02:00 UTC, Oslo at 08:00 UTC, EURUSD=X is stamped 00:00 London.
        for (file, sym, first) in [
            (
                "chart-WSKT.JK-2020-01-01-to-2020-01-03.json",
                "WSKT.JK",
                "2020-01-02",
            ),
            (
                "chart-AZT.OL-2020-01-01-to-2020-01-03.json",
                "AZT.OL",
                "2020-01-02",
            ),
            (
                "chart-EURUSD=X-2020-01-01-to-2020-01-03.json",
                "EURUSD=X",
                "2020-01-01",
            ),
        ] {
            let f = bars(file, sym, Interval::D1);
            assert_eq!(f.bars[0].ts, us(&format!("{first}T00:00:00Z")), "{file}");
        }
    }

    #[test]
    fn weekly_maps_to_monday() {
        let f = bars(
            "chart-AAPL-2020-08-31-to-2020-11-07.json",
            "AAPL",
            Interval::W1,
        );
        // 2020-09-03 (a Thursday) belongs to the week of Monday 2020-08-31.
        assert_eq!(f.bars[3].ts, us("2020-08-31T00:00:00Z"));
        assert!(
            f.bars
                .iter()
                .all(|b| Interval::W1.check_alignment(b.ts).is_ok())
        );
    }

    #[test]
    fn empty_weekend_answer_is_no_bars() {
        let f = bars(
            "chart-AAPL-2025-02-01-to-2025-02-02-includePrePost-false-interval-1m.json",
            "AAPL",
            Interval::M1,
        );
        assert!(f.bars.is_empty() && f.rejected.is_empty());
    }

    #[test]
    fn malformed_fixtures_give_clear_errors() {
        for file in [
            "chart-notimestamp-quotes-length.fake.json",
            "chart-notimestamp-weird-quote.fake.json",
        ] {
            let err = parse_chart(&body(file), &req("AAPL", Interval::D1)).unwrap_err();
            assert!(err.contains("has 1 values for 0 timestamps"), "{err}");
        }
        let err = parse_chart(
            &body("chart-AAPL-2020-01-01-to-2020-01-03.json"),
            &req("MSFT", Interval::D1),
        )
        .unwrap_err();
        assert_eq!(err, "answer is for AAPL, asked for MSFT");
        assert!(parse_chart(b"<html>", &req("AAPL", Interval::D1)).is_err());
    }

    #[test]
    fn nulls_skip_or_reject() {
        let body = br#"{"chart":{"result":[{"meta":{"symbol":"AAPL","gmtoffset":0},
            "timestamp":[60,120,180],
            "indicators":{"quote":[{"open":[1,null,1],"high":[2,null,2],"low":[0.5,null,0.5],
            "close":[1.5,null,null],"volume":[10,null,10]}]}}],"error":null}}"#;
        let Chart::Bars { fetched: f, .. } = parse_chart(body, &req("AAPL", Interval::M1)).unwrap()
        else {
            panic!()
        };
        assert_eq!(f.bars.len(), 1);
        assert_eq!(f.rejected.len(), 1);
        assert_eq!(f.rejected[0].ts, Some(180_000_000));
        let not_found = br#"{"chart":{"result":null,"error":{"code":"Not Found","description":"No data found, symbol may be delisted"}}}"#;
        assert!(matches!(
            parse_chart(not_found, &req("NOPE", Interval::D1)).unwrap(),
            Chart::Error { code, .. } if code == "Not Found"
        ));
    }

    fn date(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn chart_events(file: &str, symbol: &str) -> (Events, Fetched) {
        match parse_chart(&body(file), &req(symbol, Interval::D1)).unwrap() {
            Chart::Bars {
                fetched, events, ..
            } => (events, fetched),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn events_of_the_recorded_charts() {
        let aapl = Symbol::new("AAPL").unwrap();
        let (events, _) = chart_events("chart-AAPL-2020-08-31-to-2020-11-07.json", "AAPL");
        let got = events.into_actions(&aapl, "yahoo", 7);
        assert!(got.rejected.is_empty(), "{:?}", got.rejected);
        let mut got: Vec<_> = got
            .actions
            .iter()
            .map(|a| (a.ex_date, a.kind, a.ratio, a.amount, a.recorded_at))
            .collect();
        got.sort_by_key(|a| a.0);
        use crate::actions::ActionKind::{Dividend, Split};
        // Stamped at the New York session open (13:30 UTC in summer, 14:30 in winter).
        assert_eq!(
            got,
            vec![
                (date("2020-08-31"), Split, Some(4.0), None, 7),
                (date("2020-11-06"), Dividend, None, Some(0.205), 7),
            ]
        );
        let (events, _) = chart_events(NVDA, "NVDA");
        assert_eq!(
            events.splits().collect::<Vec<_>>(),
            vec![(date("2021-07-20"), 4.0)]
        );
    }

    const NVDA: &str = "historical-via-chart-NVDA-split-2021-02-01-to-2022-01-31.csv.json";

    /// NVDA recorded in 2025: Yahoo's 2021 prices are divided by the 4:1 of 2021-07-20 (in the
    /// answer's events) and the 10:1 of 2024-06-10 (after the answer's range: it comes from the
    /// events request up to now).
    fn nvda_raw() -> Vec<RawBar> {
        let (events, mut fetched) = chart_events(NVDA, "NVDA");
        let mut splits: BTreeMap<NaiveDate, f64> = events.splits().collect();
        splits.insert(date("2024-06-10"), 10.0);
        unadjust(&mut fetched.bars, &splits, utc_date);
        fetched.bars
    }

    #[test]
    fn nvda_is_unadjusted_to_the_prices_as_traded() {
        let bars = nvda_raw();
        let first = &bars[0];
        assert_eq!(first.ts, us("2021-02-01T00:00:00Z"));
        // Yahoo: 13.237000465393066 and 217,204,000; as traded: 529.48 and 5,430,100.
        assert_eq!(first.close, 529.48);
        assert_eq!(first.volume, 5_430_100.0);
        // From the ex-date on only the later 10:1 is taken out.
        let at = |d: &str| bars.iter().find(|b| b.ts == us(d)).unwrap();
        let (before, on) = (at("2021-07-19T00:00:00Z"), at("2021-07-20T00:00:00Z"));
        assert_eq!((before.close, on.close), (751.19, 186.12));

        // Every close of 2021-02-01..04-21 matches Alpha Vantage's raw close.

        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/sample/DA-NVDA-T-2021-04-21.csv.gz"
        );
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap()),
            &mut text,
        )
        .unwrap();
        let av: std::collections::HashMap<i64, f64> = text
            .lines()
            .skip(1)
            .map(|l| {
                let f: Vec<&str> = l.split(',').collect();
                (
                    crate::model::time::date_us(date(f[0])),
                    f[4].parse().unwrap(),
                )
            })
            .collect();
        let mut compared = 0;
        for b in &bars {
            if let Some(close) = av.get(&b.ts) {
                assert!((b.close / close - 1.0).abs() < 1e-6, "{b:?} vs {close}");
                compared += 1;
            }
        }
        assert_eq!(compared, 56);
    }

    #[test]
    fn tsla_2010_06_29_is_stored_as_traded() {
        // Yahoo's TSLA 2010-06-29 asked in 2025: the prices as traded (19, 25, 17.54, 23.89;
        // 18,766,300 shares) divided by the 5:1 of 2020-08-31 and the 3:1 of 2022-08-25, sent
        // as 32-bit floats (close 1.5926666...).
        let yahoo = |x: f64| (x / 15.0) as f32 as f64;
        let mut bars = vec![RawBar {
            ts: us("2010-06-29T00:00:00Z"),
            open: yahoo(19.0),
            high: yahoo(25.0),
            low: yahoo(17.54),
            close: yahoo(23.89),
            volume: 281_494_500.0,
            vwap: None,
            trades: None,
        }];
        assert_eq!((bars[0].close * 10_000.0).round(), 15_927.0);
        let splits = BTreeMap::from([(date("2020-08-31"), 5.0), (date("2022-08-25"), 3.0)]);
        unadjust(&mut bars, &splits, utc_date);
        let b = &bars[0];
        assert_eq!([b.open, b.high, b.low, b.close], [19.0, 25.0, 17.54, 23.89]);
        assert_eq!(b.volume, 18_766_300.0);
    }

    #[test]
    fn a_split_applies_from_its_ex_date_session_open_to_intraday_bars() {
        // 2020-08-28 (Friday) minutes were divided by AAPL's 4:1 of 2020-08-31; the minutes of
        // the ex-date itself were not. New York dates, not UTC ones: 23:59 New York on Friday
        // is Saturday in UTC.
        let bar = |ts: &str, close: f64| RawBar {
            ts: us(ts),
            open: close,
            high: close,
            low: close,
            close,
            volume: 400.0,
            vwap: None,
            trades: None,
        };
        let mut bars = vec![
            bar("2020-08-28T19:59:00Z", 124.5),
            bar("2020-08-29T03:59:00Z", 124.5),
            bar("2020-08-31T13:30:00Z", 127.5),
        ];
        let splits = BTreeMap::from([(date("2020-08-31"), 4.0)]);
        let zone = Zone::Named(chrono_tz::America::New_York);
        unadjust(&mut bars, &splits, |ts| {
            zone.local_date(ts.div_euclid(1_000_000))
        });
        let closes: Vec<f64> = bars.iter().map(|b| b.close).collect();
        assert_eq!(closes, vec![498.0, 498.0, 127.5]);
        assert_eq!(bars[0].volume, 100.0);
    }

    #[test]
    fn bad_events_are_rejected_one_by_one() {
        let body = br#"{"chart":{"result":[{"meta":{"symbol":"AAPL","gmtoffset":0},
            "events":{"splits":{"1598880600":{"date":1598880600,"numerator":4,"denominator":0},
                                "1600000000":{"date":1600000000,"numerator":2,"denominator":1},
                                "1600100000":{"date":1600100000,"numerator":"x","denominator":1}},
                      "dividends":{"1604673000":{"amount":-0.2,"date":1604673000},
                                   "1604700000":{"amount":0.2,"date":1604700000}}},
            "indicators":{"quote":[{}]}}],"error":null}}"#;
        let Chart::Bars { events, .. } = parse_chart(body, &req("AAPL", Interval::D1)).unwrap()
        else {
            panic!()
        };
        // An infinite ratio takes no part in un-adjusting.
        assert_eq!(events.splits().count(), 1);
        let got = events.into_actions(&Symbol::new("AAPL").unwrap(), "yahoo", 0);
        assert_eq!(got.actions.len(), 2, "{:?}", got.actions);
        let reasons: Vec<&str> = got.rejected.iter().map(|r| r.reason.as_str()).collect();
        assert_eq!(reasons.len(), 3, "{reasons:?}");
        assert!(
            reasons.iter().any(|r| r.contains("split ratio inf")),
            "{reasons:?}"
        );
        assert!(
            reasons.iter().any(|r| r.contains("amount -0.2")),
            "{reasons:?}"
        );
        assert!(
            reasons.iter().any(|r| r.contains("not a number")),
            "{reasons:?}"
        );
    }

    #[test]
    fn dividends_before_a_split_are_multiplied_back() {
        // AAPL's 2020-08-07 dividend (0.82 as paid) arrives divided by the 4:1 of 2020-08-31.
        let events = Events {
            events: vec![
                Event::Dividend {
                    ex_date: date("2020-08-07"),
                    amount: 0.205,
                },
                Event::Split {
                    ex_date: date("2020-08-31"),
                    ratio: 4.0,
                },
            ],
            unreadable: Vec::new(),
        };
        let got = events.into_actions(&Symbol::new("AAPL").unwrap(), "yahoo", 0);
        assert_eq!(got.actions[0].amount, Some(0.82));
    }

    #[test]
    fn significant_digits() {
        assert_eq!(round_significant(13.237000465393066 * 40.0, 7), 529.48);
        assert_eq!(round_significant(0.000123456789, 7), 0.0001234568);
        assert_eq!(round_significant(123_456_789.0, 7), 123_456_800.0);
        assert_eq!(round_significant(0.0, 7), 0.0);
    }
}
