//! Yahoo chart v8: `/v8/finance/chart/{symbol}?period1&period2&interval`, no key.
//!
//! Daily and weekly bars are stamped with the session open instant (14:30 UTC for New York in
//! winter); they are mapped to 00:00 UTC of the local trading date (weekly: its Monday) using
//! the exchange's time zone from `meta`.

use chrono::{FixedOffset, NaiveDate, TimeZone};
use serde_json::Value;

use super::convert::{UNLIMITED_RANGE, ceil_secs, dated_bar_us, encode, floor_secs, join, num};
use super::{FetchError, FetchRequest, Fetched, Provider, RawBar, Rejected, Upstream};
use crate::model::{Interval, MICROS_PER_DAY};

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
        let url = join(
            &self.base_url,
            &format!(
                "/v8/finance/chart/{}?period1={}&period2={}&interval={interval}\
                 &includePrePost=false&events=div,split",
                encode(req.symbol.as_str()),
                floor_secs(start),
                ceil_secs(req.end),
            ),
        );
        match up.get(&url, &[], |body| parse_chart(body, req)).await? {
            Chart::Bars(mut fetched) => {
                fetched.requests = 1;
                Ok(fetched)
            }
            Chart::Error { code, description } if code.eq_ignore_ascii_case("Not Found") => {
                Err(FetchError::Status {
                    status: 404,
                    url,
                    body: description,
                    retry_after: None,
                })
            }
            Chart::Error { code, description } => Err(FetchError::Invalid(format!(
                "yahoo refused {} {}: {code}: {description}",
                req.symbol, req.interval
            ))),
        }
    }
}

/// A chart answer: bars, or the error Yahoo reported in `chart.error`.
#[derive(Debug)]
pub(crate) enum Chart {
    Bars(Fetched),
    Error { code: String, description: String },
}

/// The bar stamps' time zone: `exchangeTimezoneName`, else the fixed `gmtoffset`.
enum Zone {
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
    Ok(Chart::Bars(fetched))
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
        FetchRequest {
            symbol: Symbol::new(symbol).unwrap(),
            interval,
            start: 0,
            end: 0,
        }
    }

    fn bars(file: &str, symbol: &str, interval: Interval) -> Fetched {
        match parse_chart(&body(file), &req(symbol, interval)).unwrap() {
            Chart::Bars(f) => f,
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
        let Chart::Bars(f) = parse_chart(body, &req("AAPL", Interval::M1)).unwrap() else {
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
}
