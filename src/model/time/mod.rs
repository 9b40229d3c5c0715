//! Times as the store keeps them (µs since the Unix epoch, UTC) and as people and APIs write
//! them: the one place that parses and formats them. Reading the current time is the clock's
//! job ([`crate::clock`]), not this module's.

pub(crate) mod timestamp;

use chrono::{DateTime, NaiveDate, SecondsFormat};

pub use timestamp::{Ambiguous, EpochUnit, parse_timestamp};

/// RFC 3339 or `YYYY-MM-DD` (midnight UTC), as µs since the epoch: the import's timestamp
/// parser with naive times in UTC, so the API, the CLI and the sync settings accept what
/// `tickvault import` does.
pub fn parse_time(s: &str) -> Result<i64, String> {
    parse_timestamp(s, chrono_tz::UTC).ok_or_else(|| {
        format!("{s:?} is not an RFC 3339 time (2021-03-01T14:30:00Z) or a date (2021-03-01)")
    })
}

/// RFC 3339 in UTC (`Z`) with as many fraction digits as the time needs; a time chrono cannot
/// represent (beyond ±262,000 years) as its µs.
pub fn rfc3339(us: i64) -> String {
    DateTime::from_timestamp_micros(us)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| us.to_string())
}

/// A date written `YYYY-MM-DD`, around spaces (an ex-date, an `as_of`).
pub fn parse_date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok()
}

/// 00:00 UTC of `d`, µs.
pub fn date_us(d: NaiveDate) -> i64 {
    d.and_time(chrono::NaiveTime::MIN)
        .and_utc()
        .timestamp_micros()
}

/// The UTC date of an instant in µs; `None` beyond what chrono represents.
pub fn utc_date(us: i64) -> Option<NaiveDate> {
    DateTime::from_timestamp_micros(us).map(|t| t.date_naive())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        parse_date(s).unwrap()
    }

    #[test]
    fn dates_parse_as_year_month_day() {
        assert_eq!(
            parse_date(" 2020-08-31 "),
            NaiveDate::from_ymd_opt(2020, 8, 31)
        );
        assert_eq!(
            parse_date("2020-02-29"),
            NaiveDate::from_ymd_opt(2020, 2, 29)
        );
        for bad in [
            "",
            "2021-02-29",
            "2020-13-01",
            "31/08/2020",
            "2020-08-31T00:00:00Z",
        ] {
            assert_eq!(parse_date(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn times_parse_as_utc_micros() {
        assert_eq!(parse_time("1970-01-02").unwrap(), 86_400_000_000);
        assert_eq!(
            parse_time("1970-01-01T00:00:01+01:00").unwrap(),
            -3_599_000_000
        );
        assert_eq!(
            parse_time("2021-03-01 14:30:00").unwrap(),
            1_614_609_000_000_000
        );
        assert!(parse_time("2021-13-01").is_err());
        assert!(parse_time("yesterday").unwrap_err().contains("yesterday"));
    }

    #[test]
    fn rfc3339_shows_the_fraction_the_time_has() {
        assert_eq!(rfc3339(1_612_155_600_000_000), "2021-02-01T05:00:00Z");
        assert_eq!(rfc3339(1_612_155_600_250_000), "2021-02-01T05:00:00.250Z");
        assert_eq!(
            rfc3339(1_612_155_600_000_001),
            "2021-02-01T05:00:00.000001Z"
        );
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999999Z");
        assert_eq!(rfc3339(i64::MAX), i64::MAX.to_string());
    }

    #[test]
    fn formatted_times_parse_back() {
        for us in [0, -1, 1_612_155_600_250_000, 253_402_300_799_000_000] {
            assert_eq!(parse_time(&rfc3339(us)), Ok(us), "{us}");
        }
    }

    #[test]
    fn dates_and_their_midnights() {
        assert_eq!(date_us(day("1970-01-02")), 86_400_000_000);
        assert_eq!(date_us(day("1969-12-31")), -86_400_000_000);
        assert_eq!(utc_date(86_400_000_000), Some(day("1970-01-02")));
        assert_eq!(utc_date(86_400_000_000 - 1), Some(day("1970-01-01")));
        assert_eq!(utc_date(-1), Some(day("1969-12-31")));
        assert_eq!(utc_date(i64::MIN), None);
        for d in ["0001-01-01", "2020-02-29", "9999-12-31"] {
            assert_eq!(utc_date(date_us(day(d))), Some(day(d)));
        }
    }
}
