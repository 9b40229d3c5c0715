//! Trading calendars: which bars a symbol should have. Stage 2 of the sync compares these with
//! what is stored to find gaps.
//!
//! - `us-equity`: NYSE sessions, 09:30-16:00 New York (13:00 on early-close days), weekdays
//!   minus exchange holidays and special closures;
//! - `24x7`: every bar (crypto);
//! - `fx`: Sunday 17:00 to Friday 17:00 New York.
//!
//! Bars are identified by their open time (µs UTC), aligned as the `bars` table requires: daily
//! bars at 00:00 UTC of the trading date, weekly bars on Monday 00:00 UTC, intraday bars from
//! the session open in steps of the interval.

use chrono::{Datelike, Duration, NaiveDate, NaiveTime, TimeZone, Weekday};
use chrono_tz::America::New_York;

use crate::model::time::{date_us, utc_date};
use crate::model::{Interval, MICROS_PER_DAY};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Calendar {
    #[serde(rename = "us-equity")]
    UsEquity,
    #[serde(rename = "24x7")]
    AlwaysOpen,
    #[serde(rename = "fx")]
    Fx,
}

impl std::str::FromStr for Calendar {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "us-equity" => Ok(Calendar::UsEquity),
            "24x7" => Ok(Calendar::AlwaysOpen),
            "fx" => Ok(Calendar::Fx),
            other => Err(format!(
                "unknown calendar {other:?} (expected us-equity, 24x7 or fx)"
            )),
        }
    }
}

/// Days the NYSE was closed outside its regular holiday rules.
const SPECIAL_CLOSURES: [(i32, u32, u32); 10] = [
    (2001, 9, 11), // September 11
    (2001, 9, 12),
    (2001, 9, 13),
    (2001, 9, 14),
    (2004, 6, 11),  // President Reagan's funeral
    (2007, 1, 2),   // President Ford's funeral
    (2012, 10, 29), // Hurricane Sandy
    (2012, 10, 30),
    (2018, 12, 5), // President G. H. W. Bush's funeral
    (2025, 1, 9),  // President Carter's funeral
];

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("valid date")
}

/// The `n`th (1-based) `weekday` of a month; `n = 0` is the last.
fn nth_weekday(year: i32, month: u32, weekday: Weekday, n: u32) -> NaiveDate {
    if n == 0 {
        let next = if month == 12 {
            date(year + 1, 1, 1)
        } else {
            date(year, month + 1, 1)
        };
        let mut d = next - Duration::days(1);
        while d.weekday() != weekday {
            d -= Duration::days(1);
        }
        return d;
    }
    let mut d = date(year, month, 1);
    while d.weekday() != weekday {
        d += Duration::days(1);
    }
    d + Duration::weeks(i64::from(n - 1))
}

/// Easter Sunday (Gregorian), by the anonymous computus.
fn easter(year: i32) -> NaiveDate {
    let a = year % 19;
    let b = year / 100;
    let c = year % 100;
    let d = b / 4;
    let e = b % 4;
    let f = (b + 8) / 25;
    let g = (b - f + 1) / 3;
    let h = (19 * a + b - d - g + 15) % 30;
    let i = c / 4;
    let k = c % 4;
    let l = (32 + 2 * e + 2 * i - h - k) % 7;
    let m = (a + 11 * h + 22 * l) / 451;
    let month = (h + l - 7 * m + 114) / 31;
    let day = (h + l - 7 * m + 114) % 31 + 1;
    date(year, month as u32, day as u32)
}

/// A fixed-date holiday as observed: Saturday moves to Friday, Sunday to Monday.
fn observed(d: NaiveDate) -> NaiveDate {
    match d.weekday() {
        Weekday::Sat => d - Duration::days(1),
        Weekday::Sun => d + Duration::days(1),
        _ => d,
    }
}

/// NYSE holidays of a year (regular rules and special closures).
pub fn nyse_holidays(year: i32) -> Vec<NaiveDate> {
    let mut days = Vec::with_capacity(12);
    // New Year's Day: on a Saturday it is not observed on the Friday before (NYSE rule 51).
    let new_year = date(year, 1, 1);
    if new_year.weekday() != Weekday::Sat {
        days.push(observed(new_year));
    }
    if year >= 1998 {
        days.push(nth_weekday(year, 1, Weekday::Mon, 3)); // Martin Luther King Jr. Day
    }
    days.push(nth_weekday(year, 2, Weekday::Mon, 3)); // Washington's Birthday
    days.push(easter(year) - Duration::days(2)); // Good Friday
    days.push(nth_weekday(year, 5, Weekday::Mon, 0)); // Memorial Day
    if year >= 2022 {
        days.push(observed(date(year, 6, 19))); // Juneteenth
    }
    days.push(observed(date(year, 7, 4))); // Independence Day
    days.push(nth_weekday(year, 9, Weekday::Mon, 1)); // Labor Day
    days.push(nth_weekday(year, 11, Weekday::Thu, 4)); // Thanksgiving
    days.push(observed(date(year, 12, 25))); // Christmas
    days.extend(
        SPECIAL_CLOSURES
            .iter()
            .filter(|(y, _, _)| *y == year)
            .map(|&(y, m, d)| date(y, m, d)),
    );
    days.sort();
    days
}

/// Whether the NYSE closes at 13:00 that day: July 3, the day after Thanksgiving and Christmas
/// Eve, when they are trading days.
fn nyse_early_close(d: NaiveDate) -> bool {
    let weekday_before_holiday = |m, day| {
        d == date(d.year(), m, day)
            && !matches!(d.weekday(), Weekday::Fri | Weekday::Sat | Weekday::Sun)
    };
    weekday_before_holiday(7, 3)
        || weekday_before_holiday(12, 24)
        || d == nth_weekday(d.year(), 11, Weekday::Thu, 4) + Duration::days(1)
}

fn is_weekend(d: NaiveDate) -> bool {
    matches!(d.weekday(), Weekday::Sat | Weekday::Sun)
}

/// µs UTC of a New York wall-clock time on a date.
fn new_york_us(d: NaiveDate, hour: u32, minute: u32) -> i64 {
    let naive = d.and_time(NaiveTime::from_hms_opt(hour, minute, 0).expect("valid time"));
    New_York
        .from_local_datetime(&naive)
        .earliest()
        .expect("session times exist in New York")
        .timestamp_micros()
}

impl Calendar {
    pub fn as_str(self) -> &'static str {
        match self {
            Calendar::UsEquity => "us-equity",
            Calendar::AlwaysOpen => "24x7",
            Calendar::Fx => "fx",
        }
    }

    /// The instant (µs UTC) trading date `d` begins in the calendar's time zone: 00:00 New York
    /// for US equities (so the evening bars of the day before, after 00:00 UTC, are still of
    /// that day), 00:00 UTC for 24x7 and fx, whose intraday bars are dated by UTC day.
    pub fn day_start(self, d: NaiveDate) -> i64 {
        match self {
            Calendar::UsEquity => new_york_us(d, 0, 0),
            Calendar::AlwaysOpen | Calendar::Fx => date_us(d),
        }
    }

    /// Whether bars are expected on this date (for daily bars: is it a trading day).
    pub fn is_trading_day(self, d: NaiveDate) -> bool {
        match self {
            Calendar::UsEquity => !is_weekend(d) && !nyse_holidays(d.year()).contains(&d),
            Calendar::AlwaysOpen => true,
            Calendar::Fx => !is_weekend(d),
        }
    }

    /// The open periods `[start, end)` (µs UTC) whose intraday bars are dated on `d`.
    fn sessions(self, d: NaiveDate) -> Vec<(i64, i64)> {
        match self {
            Calendar::UsEquity if self.is_trading_day(d) => {
                let close = if nyse_early_close(d) { 13 } else { 16 };
                vec![(new_york_us(d, 9, 30), new_york_us(d, close, 0))]
            }
            Calendar::UsEquity => Vec::new(),
            Calendar::AlwaysOpen => vec![(date_us(d), date_us(d) + MICROS_PER_DAY)],
            // The UTC day, less the weekend close (Friday 17:00 to Sunday 17:00 New York).
            Calendar::Fx => {
                let (start, end) = (date_us(d), date_us(d) + MICROS_PER_DAY);
                let friday = d - Duration::days(
                    (d.weekday().num_days_from_monday() as i64 - 4).rem_euclid(7),
                );
                let closed = (
                    new_york_us(friday, 17, 0),
                    new_york_us(friday + Duration::days(2), 17, 0),
                );
                let mut open = Vec::new();
                if start < closed.0 {
                    open.push((start, end.min(closed.0)));
                }
                if end > closed.1 {
                    open.push((start.max(closed.1), end));
                }
                open.retain(|(a, b)| a < b);
                open
            }
        }
    }

    /// Open times (µs UTC) of the bars expected in `[start, end)`, ascending.
    pub fn expected_bars(self, interval: Interval, start: i64, end: i64) -> Vec<i64> {
        let mut out = Vec::new();
        if start >= end {
            return out;
        }
        // A day either side: New York sessions cross UTC midnight for intraday bars of fx.
        let (first, last) = (
            utc_date(start).expect("timestamp in range") - Duration::days(1),
            utc_date(end - 1).expect("timestamp in range") + Duration::days(1),
        );
        let mut d = first;
        while d <= last {
            match interval {
                Interval::D1 => {
                    if self.is_trading_day(d) {
                        out.push(date_us(d));
                    }
                }
                Interval::W1 => {
                    let week_has_trading = d.weekday() == Weekday::Mon
                        && (0..7).any(|k| self.is_trading_day(d + Duration::days(k)));
                    if week_has_trading {
                        out.push(date_us(d));
                    }
                }
                _ => {
                    let step = interval.micros();
                    for (open, close) in self.sessions(d) {
                        // Sessions start on the interval grid except US equities' 09:30 open.
                        let mut t = if self == Calendar::UsEquity {
                            open
                        } else {
                            open + (step - open.rem_euclid(step)) % step
                        };
                        while t < close {
                            out.push(t);
                            t += step;
                        }
                    }
                }
            }
            d += Duration::days(1);
        }
        out.retain(|&t| t >= start && t < end);
        out.sort_unstable();
        out.dedup();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(y: i32, m: u32, d: u32) -> i64 {
        date_us(date(y, m, d))
    }

    #[test]
    fn nyse_holidays_of_known_years() {
        let days = |y| {
            nyse_holidays(y)
                .iter()
                .map(|d| d.format("%m-%d").to_string())
                .collect::<Vec<_>>()
        };
        // NYSE's published 2024 and 2021 holidays.
        assert_eq!(
            days(2024),
            [
                "01-01", "01-15", "02-19", "03-29", "05-27", "06-19", "07-04", "09-02", "11-28",
                "12-25"
            ]
        );
        // 2021: New Year's Day 2022 fell on a Saturday and was not observed on Dec 31.
        assert_eq!(
            days(2021),
            [
                "01-01", "01-18", "02-15", "04-02", "05-31", "07-05", "09-06", "11-25", "12-24"
            ]
        );
        assert!(nyse_early_close(date(2024, 7, 3)));
        assert!(nyse_early_close(date(2024, 11, 29)));
        assert!(!nyse_early_close(date(2021, 12, 24)), "a holiday that year");
    }

    #[test]
    fn us_equity_intraday_sessions_follow_new_york_time() {
        let cal = Calendar::UsEquity;
        // A winter day: 09:30 New York is 14:30 UTC; 390 one-minute bars.
        let bars = cal.expected_bars(Interval::M1, us(2024, 1, 2), us(2024, 1, 3));
        assert_eq!(bars.len(), 390);
        assert_eq!(bars[0], us(2024, 1, 2) + (14 * 60 + 30) * 60_000_000);
        // A summer day is an hour earlier in UTC; an early close has 210 bars.
        let bars = cal.expected_bars(Interval::M1, us(2024, 7, 3), us(2024, 7, 4));
        assert_eq!(bars.len(), 210);
        assert_eq!(bars[0], us(2024, 7, 3) + (13 * 60 + 30) * 60_000_000);
        assert!(
            cal.expected_bars(Interval::M5, us(2024, 7, 4), us(2024, 7, 5))
                .is_empty()
        );
        assert_eq!(
            cal.expected_bars(Interval::H1, us(2024, 1, 2), us(2024, 1, 3))
                .len(),
            7
        );
        // Weekly bars on Mondays of weeks with a trading day.
        let weeks = cal.expected_bars(Interval::W1, us(2024, 1, 1), us(2024, 2, 1));
        assert_eq!(
            weeks,
            vec![
                us(2024, 1, 1),
                us(2024, 1, 8),
                us(2024, 1, 15),
                us(2024, 1, 22),
                us(2024, 1, 29)
            ]
        );
    }

    #[test]
    fn crypto_and_fx() {
        let day = Calendar::AlwaysOpen.expected_bars(Interval::M1, us(2024, 3, 9), us(2024, 3, 10));
        assert_eq!(day.len(), 1440);
        // FX: a Friday closes at 17:00 New York (22:00 UTC in winter), a Sunday opens then.
        let friday = Calendar::Fx.expected_bars(Interval::H1, us(2024, 1, 5), us(2024, 1, 6));
        assert_eq!(friday.len(), 22);
        let saturday = Calendar::Fx.expected_bars(Interval::H1, us(2024, 1, 6), us(2024, 1, 7));
        assert!(saturday.is_empty());
        let sunday = Calendar::Fx.expected_bars(Interval::H1, us(2024, 1, 7), us(2024, 1, 8));
        assert_eq!(sunday.len(), 2);
        let daily = Calendar::Fx.expected_bars(Interval::D1, us(2024, 1, 1), us(2024, 1, 8));
        assert_eq!(daily.len(), 5);
    }

    #[test]
    fn days_start_at_midnight_in_the_calendar_time_zone() {
        // New York is UTC-4 in summer, UTC-5 in winter.
        let hour = 3_600_000_000;
        assert_eq!(
            Calendar::UsEquity.day_start(date(2020, 8, 31)),
            us(2020, 8, 31) + 4 * hour
        );
        assert_eq!(
            Calendar::UsEquity.day_start(date(2024, 1, 2)),
            us(2024, 1, 2) + 5 * hour
        );
        assert_eq!(
            Calendar::AlwaysOpen.day_start(date(2024, 1, 2)),
            us(2024, 1, 2)
        );
    }

    #[test]
    fn easter_dates() {
        assert_eq!(easter(2024), date(2024, 3, 31));
        assert_eq!(easter(2021), date(2021, 4, 4));
        assert_eq!(easter(2000), date(2000, 4, 23));
    }
}
