//! Conversions the adapters share: path encoding, dates and the daily/weekly alignment.

use chrono::{Datelike, Duration, NaiveDate};

use crate::model::time::{date_us, utc_date};
use crate::model::{Interval, MICROS_PER_DAY};

/// Longest chunk for APIs without a range limit: 200 years, far from i64 overflow.
pub(crate) const UNLIMITED_RANGE: i64 = 200 * 365 * MICROS_PER_DAY;

/// Percent-encodes a symbol for a URL path segment or query value: everything but the RFC 3986
/// unreserved characters, so `^GSPC`, `EURUSD=X`, `ES=F` and `BTC/USD` stay one segment.
pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Joins a base URL and a path that starts with `/`.
pub(crate) fn join(base: &str, path: &str) -> String {
    format!("{}{}", base.trim_end_matches('/'), path)
}

/// The Monday that starts the week of `d`; a Sunday belongs to the week after it, as the APIs
/// that start weeks on Sunday (Polygon) stamp a Monday-to-Friday week with its Sunday.
pub(crate) fn week_monday(d: NaiveDate) -> NaiveDate {
    match d.weekday().num_days_from_monday() {
        6 => d + Duration::days(1),
        n => d - Duration::days(n as i64),
    }
}

/// A bar's open time on our grid from the date the API dated it: daily bars at 00:00 UTC of
/// the date, weekly bars at 00:00 UTC of the week's Monday.
pub(crate) fn dated_bar_us(interval: Interval, d: NaiveDate) -> i64 {
    match interval {
        Interval::W1 => date_us(week_monday(d)),
        _ => date_us(d),
    }
}

/// A daily or weekly bar whose API stamp is midnight of an exchange in the Americas or UTC
/// (Polygon, Alpaca: 04:00/05:00 UTC), mapped by its UTC date; intraday stamps are kept.
pub(crate) fn map_midnight_stamp(interval: Interval, us: i64) -> Option<i64> {
    if interval.is_intraday() {
        return Some(us);
    }
    utc_date(us).map(|d| dated_bar_us(interval, d))
}

/// `YYYYMMDD` of an instant's UTC date.
pub(crate) fn yyyymmdd(us: i64) -> String {
    utc_date(us)
        .map(|d| d.format("%Y%m%d").to_string())
        .unwrap_or_default()
}

/// `ms` rounded down / up from µs.
pub(crate) fn floor_ms(us: i64) -> i64 {
    us.div_euclid(1000)
}

pub(crate) fn floor_secs(us: i64) -> i64 {
    us.div_euclid(1_000_000)
}

pub(crate) fn ceil_secs(us: i64) -> i64 {
    -((-us).div_euclid(1_000_000))
}

/// A JSON number as f64; `null` or a non-number is `None`.
pub(crate) fn num(v: Option<&serde_json::Value>) -> Option<f64> {
    v.and_then(serde_json::Value::as_f64)
}

/// One aggregate row in the `{t, o, h, l, c, v, vw, n}` shape Polygon and Alpaca share, its open
/// time already read from `t` (`None` if it could not be): a bar, or the row rejected with why.
pub(crate) fn ohlcv_row(
    row: &serde_json::Value,
    ts: Option<i64>,
    bad_ts: &str,
) -> Result<super::RawBar, super::Rejected> {
    let f = |k: &str| num(row.get(k));
    match (ts, f("o"), f("h"), f("l"), f("c"), f("v")) {
        (Some(ts), Some(open), Some(high), Some(low), Some(close), Some(volume)) => {
            Ok(super::RawBar {
                ts,
                open,
                high,
                low,
                close,
                volume,
                vwap: f("vw"),
                trades: row["n"].as_i64(),
            })
        }
        (ts, ..) => Err(super::Rejected {
            ts,
            raw: row.to_string(),
            reason: if ts.is_none() {
                bad_ts.to_string()
            } else {
                "some of o, h, l, c, v are missing or null".into()
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_symbols_for_paths() {
        assert_eq!(encode("^GSPC"), "%5EGSPC");
        assert_eq!(encode("BRK.B"), "BRK.B");
        assert_eq!(encode("EURUSD=X"), "EURUSD%3DX");
        assert_eq!(encode("ES=F"), "ES%3DF");
        assert_eq!(encode("BTC/USD"), "BTC%2FUSD");
    }

    #[test]
    fn weeks_start_on_monday() {
        let d = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        // 2021-02-01 is a Monday.
        assert_eq!(week_monday(d(2021, 2, 1)), d(2021, 2, 1));
        assert_eq!(week_monday(d(2021, 2, 5)), d(2021, 2, 1));
        assert_eq!(week_monday(d(2021, 2, 6)), d(2021, 2, 1));
        assert_eq!(week_monday(d(2021, 1, 31)), d(2021, 2, 1));
        let monday = dated_bar_us(Interval::W1, d(2021, 2, 3));
        assert!(Interval::W1.check_alignment(monday).is_ok());
        assert_eq!(ceil_secs(1_500_000), 2);
        assert_eq!(ceil_secs(2_000_000), 2);
        assert_eq!(floor_secs(-1), -1);
    }
}
