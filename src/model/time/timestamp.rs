//! Timestamp parsing (import files, the API's and the CLI's times): a fast hand-rolled path
//! for the ISO 8601 / RFC 3339 shapes, US `M/D/YYYY` dates and epoch integers, and a chrono
//! fallback for a few rarer shapes.
//!
//! All results are microseconds since the Unix epoch, UTC.

use chrono::{DateTime, LocalResult, NaiveDate, NaiveDateTime, Offset, TimeZone};
use chrono_tz::Tz;

use crate::model::MICROS_PER_DAY;

const MICROS_PER_SECOND: i64 = 1_000_000;

/// Why a timestamp was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TsError {
    /// Not in any of the accepted shapes, or an impossible date or time.
    Unparsable,
    /// A naive local time that the time zone skips (a daylight-saving gap).
    NonexistentLocal,
    /// A naive local time that happens twice (a daylight-saving fall-back), with no
    /// [`Ambiguous`] choice given.
    AmbiguousLocal,
    /// With [`Ambiguous::Infer`]: the rows through a repeated hour are not in time order.
    AmbiguousOrder,
    /// An epoch integer whose unit its magnitude does not tell (see [`EpochUnit`]).
    AmbiguousEpoch,
}

/// How a naive local time that happens twice (the hour a daylight-saving change repeats) is
/// read. A local time the change skips is always refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ambiguous {
    /// Refuse it: the text does not say which instant is meant.
    #[default]
    Refuse,
    /// The earlier instant (the offset in force before the change).
    Earliest,
    /// The later instant (the offset after the change).
    Latest,
    /// From the order of the rows, as a time-ordered file goes: the first pass through the
    /// repeated hour is before the change; once the wall clock steps back (or repeats), the
    /// rest are after it. A second step back within the hour is refused.
    Infer,
}

impl std::str::FromStr for Ambiguous {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "refuse" => Ok(Ambiguous::Refuse),
            "earliest" => Ok(Ambiguous::Earliest),
            "latest" => Ok(Ambiguous::Latest),
            "infer" => Ok(Ambiguous::Infer),
            _ => Err(format!(
                "{s:?} is not one of refuse, earliest, latest, infer"
            )),
        }
    }
}

/// The unit of epoch integers. Without one the magnitude decides, but only where it is
/// unambiguous: |v| in [1e8, 1e10) is seconds, [1e11, 1e13) milliseconds, [1e14, 1e16)
/// microseconds, [1e17, 9.2e18] nanoseconds, so every unit covers 1973-03-03 to 2286-11-20
/// (and the same span before 1970 for negative values). Anything else (`86400000`: a day in ms,
/// or 1972 in seconds? `86400000000`: 1972 in ms, or year 4707 in seconds?) is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EpochUnit {
    Seconds,
    Millis,
    Micros,
    Nanos,
}

impl std::str::FromStr for EpochUnit {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "s" => Ok(EpochUnit::Seconds),
            "ms" => Ok(EpochUnit::Millis),
            "us" => Ok(EpochUnit::Micros),
            "ns" => Ok(EpochUnit::Nanos),
            _ => Err(format!("{s:?} is not one of s, ms, us, ns")),
        }
    }
}

/// Parses one timestamp into microseconds since the epoch (UTC); `None` if it is not one.
///
/// Accepted, fast path first:
/// - `YYYY-MM-DD`: a date; always 00:00 UTC of that date (`tz` is ignored: daily bars are
///   stamped 00:00 UTC).
/// - `YYYY-MM-DD HH:MM`, `YYYY-MM-DD HH:MM:SS`, `YYYY-MM-DD HH:MM:SS.f` (1 to 9 fraction digits,
///   truncated to microseconds), with `T` or a space between date and time, optionally followed
///   by `Z` or an offset `+HH:MM` / `-HH:MM` / `+HHMM` / `+HH` (RFC 3339, and the pandas shape
///   `2013-01-01 22:00:00.295000+00:00`).
/// - `M/D/YYYY`, `M/D/YYYY H:MM`, `M/D/YYYY H:MM:SS`, optionally with ` AM`/` PM` (US order).
/// - An integer: epoch seconds, milliseconds, microseconds or nanoseconds, chosen by magnitude
///   where that is unambiguous (see [`EpochUnit`]); other integers are refused.
/// - Fallback through chrono: RFC 3339 and RFC 2822 in general, `YYYY/MM/DD[ HH:MM[:SS[.f]]]`.
///
/// A date-time without an offset is a local time in `tz`. One that a daylight-saving change
/// makes ambiguous, or skips, is rejected (the import's `--ambiguous` can resolve the former).
pub fn parse_timestamp(s: &str, tz: Tz) -> Option<i64> {
    TsParser::new(tz).parse(s.as_bytes()).ok()
}

/// A reusable timestamp parser: caches the UTC offset of the last local day it converted, so
/// naive local times in a zone cost about as much as UTC ones.
#[derive(Debug, Clone)]
pub(crate) struct TsParser {
    tz: Tz,
    is_utc: bool,
    /// Local day number (days since 1970-01-01 in local time) whose offset is cached.
    cached_day: i64,
    /// Offset (local minus UTC, µs) valid for the whole of `cached_day`.
    cached_offset: i64,
    ambiguous: Ambiguous,
    /// With [`Ambiguous::Infer`], per series of the input (each symbol is read in its own row
    /// order): the last ambiguous local time read, its local day, and whether the clock had
    /// stepped back (the rows are after the change).
    infer: Vec<Option<(i64, i64, bool)>>,
    /// The series the next timestamps belong to (an index into `infer`).
    series: usize,
    /// `None`: by magnitude.
    epoch_unit: Option<EpochUnit>,
}

impl TsParser {
    /// Says which series (the input's symbol slot) the next timestamps belong to: `infer` reads
    /// each series in its own row order, so one symbol's repeated hour never decides another's.
    pub(crate) fn set_series(&mut self, series: usize) {
        self.series = series;
    }

    pub(crate) fn new(tz: Tz) -> Self {
        // Other zones without transitions go through the per-day cache, which is nearly as fast.
        let is_utc = matches!(tz, Tz::UTC | Tz::Etc__UTC);
        Self {
            tz,
            is_utc,
            cached_day: i64::MIN,
            cached_offset: 0,
            ambiguous: Ambiguous::Refuse,
            infer: Vec::new(),
            series: 0,
            epoch_unit: None,
        }
    }

    /// How ambiguous local times and epoch integers are read.
    pub(crate) fn with(mut self, ambiguous: Ambiguous, epoch_unit: Option<EpochUnit>) -> Self {
        self.ambiguous = ambiguous;
        self.epoch_unit = epoch_unit;
        self
    }

    pub(crate) fn tz(&self) -> Tz {
        self.tz
    }

    /// Parses a field (surrounding ASCII whitespace is ignored).
    pub(crate) fn parse(&mut self, s: &[u8]) -> Result<i64, TsError> {
        let s = s.trim_ascii();
        if let Some(parsed) = parse_iso(s) {
            return self.resolve(parsed);
        }
        if let Some(parsed) = parse_us(s) {
            return self.resolve(parsed);
        }
        if let Some(v) = parse_epoch(s) {
            return self.epoch(v);
        }
        self.parse_fallback(s)
    }

    fn resolve(&mut self, p: Parsed) -> Result<i64, TsError> {
        match p {
            Parsed::Date(us) | Parsed::Utc(us) => Ok(us),
            Parsed::Local(us) => self.local_to_utc(us),
        }
    }

    /// Converts a wall-clock time in `tz` (as µs since 1970-01-01T00:00 local) to UTC.
    pub(crate) fn local_to_utc(&mut self, local_us: i64) -> Result<i64, TsError> {
        if self.is_utc {
            return Ok(local_us);
        }
        let day = local_us.div_euclid(MICROS_PER_DAY);
        if day == self.cached_day {
            return Ok(local_us - self.cached_offset);
        }
        let utc = self.local_to_utc_slow(local_us)?;
        // Cache the day if one offset holds from its first to its last microsecond.
        let start = self.single_offset(day * MICROS_PER_DAY);
        let end = self.single_offset(day * MICROS_PER_DAY + MICROS_PER_DAY - 1);
        if let (Some(a), Some(b)) = (start, end)
            && a == b
        {
            self.cached_day = day;
            self.cached_offset = a;
        }
        Ok(utc)
    }

    /// An epoch integer in the configured unit, else by magnitude.
    pub(crate) fn epoch(&self, v: i64) -> Result<i64, TsError> {
        let unit = match self.epoch_unit {
            Some(u) => u,
            None => epoch_unit_of(v).ok_or(TsError::AmbiguousEpoch)?,
        };
        let us = match unit {
            EpochUnit::Seconds => v.checked_mul(MICROS_PER_SECOND),
            EpochUnit::Millis => v.checked_mul(1_000),
            EpochUnit::Micros => Some(v),
            EpochUnit::Nanos => Some(v.div_euclid(1_000)),
        };
        us.ok_or(TsError::Unparsable)
    }

    fn local_to_utc_slow(&mut self, local_us: i64) -> Result<i64, TsError> {
        let naive = DateTime::from_timestamp_micros(local_us)
            .ok_or(TsError::Unparsable)?
            .naive_utc();
        match self.tz.from_local_datetime(&naive) {
            LocalResult::Single(t) => Ok(t.timestamp_micros()),
            LocalResult::Ambiguous(a, b) => {
                let (a, b) = (a.timestamp_micros(), b.timestamp_micros());
                let (earliest, latest) = (a.min(b), a.max(b));
                match self.ambiguous {
                    Ambiguous::Refuse => Err(TsError::AmbiguousLocal),
                    Ambiguous::Earliest => Ok(earliest),
                    Ambiguous::Latest => Ok(latest),
                    Ambiguous::Infer => {
                        let after = self.infer_after_change(local_us)?;
                        Ok(if after { latest } else { earliest })
                    }
                }
            }
            LocalResult::None => Err(TsError::NonexistentLocal),
        }
    }

    /// Whether an ambiguous local time, read in row order, is after the change: it is once the
    /// wall clock stepped back (or repeated) within the same local day's repeated hour.
    fn infer_after_change(&mut self, local_us: i64) -> Result<bool, TsError> {
        let day = local_us.div_euclid(MICROS_PER_DAY);
        if self.infer.len() <= self.series {
            self.infer.resize(self.series + 1, None);
        }
        let state = &mut self.infer[self.series];
        let after = match *state {
            Some((last_day, last, after)) if last_day == day && local_us <= last => {
                if after {
                    return Err(TsError::AmbiguousOrder);
                }
                true
            }
            Some((last_day, _, after)) if last_day == day => after,
            _ => false,
        };
        *state = Some((day, local_us, after));
        Ok(after)
    }

    /// The zone's offset (µs) at a local time, if that local time maps to exactly one instant.
    fn single_offset(&self, local_us: i64) -> Option<i64> {
        let naive = DateTime::from_timestamp_micros(local_us)?.naive_utc();
        match self.tz.offset_from_local_datetime(&naive) {
            LocalResult::Single(off) => {
                Some(i64::from(off.fix().local_minus_utc()) * MICROS_PER_SECOND)
            }
            _ => None,
        }
    }

    fn parse_fallback(&mut self, s: &[u8]) -> Result<i64, TsError> {
        let s = std::str::from_utf8(s).map_err(|_| TsError::Unparsable)?;
        if let Ok(t) = DateTime::parse_from_rfc3339(s) {
            return Ok(t.timestamp_micros());
        }
        if let Ok(t) = DateTime::parse_from_rfc2822(s) {
            return Ok(t.timestamp_micros());
        }
        // chrono's %Y takes any number of digits: insist on four (`11/5/19` is not year 11).
        let b = s.as_bytes();
        if b.len() < 5 || !b[..4].iter().all(u8::is_ascii_digit) || b[4] != b'/' {
            return Err(TsError::Unparsable);
        }
        for fmt in ["%Y/%m/%d %H:%M:%S%.f", "%Y/%m/%d %H:%M"] {
            if let Ok(t) = NaiveDateTime::parse_from_str(s, fmt) {
                return self.local_to_utc(t.and_utc().timestamp_micros());
            }
        }
        if let Ok(d) = NaiveDate::parse_from_str(s, "%Y/%m/%d") {
            return Ok(d.and_hms_opt(0, 0, 0).unwrap().and_utc().timestamp_micros());
        }
        Err(TsError::Unparsable)
    }
}

/// What the fast paths found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Parsed {
    /// A date alone: 00:00 UTC of it.
    Date(i64),
    /// A date-time with an explicit offset, already converted to UTC.
    Utc(i64),
    /// A naive date-time: µs since 1970-01-01T00:00 in local wall-clock terms.
    Local(i64),
}

#[inline]
fn digit(b: u8) -> Option<u32> {
    let d = b.wrapping_sub(b'0');
    (d < 10).then_some(d as u32)
}

#[inline]
fn two_digits(s: &[u8], at: usize) -> Option<u32> {
    Some(digit(*s.get(at)?)? * 10 + digit(*s.get(at + 1)?)?)
}

#[inline]
fn four_digits(s: &[u8], at: usize) -> Option<u32> {
    Some(two_digits(s, at)? * 100 + two_digits(s, at + 2)?)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if is_leap(y) => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's `days_from_civil`).
pub(crate) fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// µs of a validated date (and time of day); `None` if any field is out of range.
#[inline]
fn civil_micros(y: u32, mo: u32, d: u32, h: u32, mi: u32, sec: u32, micros: u32) -> Option<i64> {
    let y = i64::from(y);
    if !(1..=12).contains(&mo)
        || d == 0
        || d > days_in_month(y, mo)
        || h > 23
        || mi > 59
        || sec > 59
    {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + i64::from(h * 3600 + mi * 60 + sec);
    Some(secs * MICROS_PER_SECOND + i64::from(micros))
}

/// Parses `.f` fraction digits starting at `at` (which holds the first digit); returns the value
/// in µs (truncated) and the position after the digits.
#[inline]
fn fraction(s: &[u8], mut at: usize) -> Option<(u32, usize)> {
    let start = at;
    let mut micros = 0u32;
    while let Some(d) = s.get(at).copied().and_then(digit) {
        if at - start < 6 {
            micros = micros * 10 + d;
        }
        at += 1;
    }
    let n = at - start;
    if n == 0 || n > 9 {
        return None;
    }
    for _ in n..6 {
        micros *= 10;
    }
    Some((micros, at))
}

/// The ISO 8601 / RFC 3339 shapes, hand-rolled.
fn parse_iso(s: &[u8]) -> Option<Parsed> {
    if s.len() < 10 || s[4] != b'-' || s[7] != b'-' {
        return None;
    }
    let y = four_digits(s, 0)?;
    let mo = two_digits(s, 5)?;
    let d = two_digits(s, 8)?;
    if s.len() == 10 {
        return civil_micros(y, mo, d, 0, 0, 0, 0).map(Parsed::Date);
    }
    if !matches!(s[10], b'T' | b't' | b' ') || s.len() < 16 || s[13] != b':' {
        return None;
    }
    let h = two_digits(s, 11)?;
    let mi = two_digits(s, 14)?;
    let mut at = 16;
    let mut sec = 0;
    let mut micros = 0;
    if s.get(at) == Some(&b':') {
        sec = two_digits(s, at + 1)?;
        at += 3;
        if matches!(s.get(at), Some(b'.' | b',')) {
            (micros, at) = fraction(s, at + 1)?;
        }
    }
    let local = civil_micros(y, mo, d, h, mi, sec, micros)?;
    if at == s.len() {
        return Some(Parsed::Local(local));
    }
    if s[at] == b' ' {
        at += 1; // `2021-01-01 10:00:00 +0000`
    }
    let offset_secs = parse_offset(&s[at..])?;
    Some(Parsed::Utc(
        local - i64::from(offset_secs) * MICROS_PER_SECOND,
    ))
}

/// `Z`, `+HH:MM`, `-HH:MM`, `+HHMM`, `+HH` (the whole of `s`); seconds east of UTC.
fn parse_offset(s: &[u8]) -> Option<i32> {
    match s {
        [b'Z' | b'z'] => return Some(0),
        [b'U', b'T', b'C'] => return Some(0),
        _ => {}
    }
    let sign = match s.first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let h = two_digits(s, 1)?;
    let m = match s.len() {
        3 => 0,
        5 => two_digits(s, 3)?,
        6 if s[3] == b':' => two_digits(s, 4)?,
        _ => return None,
    };
    if h > 23 || m > 59 {
        return None;
    }
    Some(sign * (h * 3600 + m * 60) as i32)
}

/// Parses 1 or 2 digits at `at`; returns the value and the position after them.
#[inline]
fn one_or_two_digits(s: &[u8], at: usize) -> Option<(u32, usize)> {
    let a = digit(*s.get(at)?)?;
    match s.get(at + 1).copied().and_then(digit) {
        Some(b) => Some((a * 10 + b, at + 2)),
        None => Some((a, at + 1)),
    }
}

/// `M/D/YYYY`, `M/D/YYYY H:MM`, `M/D/YYYY H:MM:SS[.f]`, optionally ` AM`/` PM`.
fn parse_us(s: &[u8]) -> Option<Parsed> {
    let (mo, at) = one_or_two_digits(s, 0)?;
    if s.get(at) != Some(&b'/') {
        return None;
    }
    let (d, at) = one_or_two_digits(s, at + 1)?;
    if s.get(at) != Some(&b'/') {
        return None;
    }
    let y = four_digits(s, at + 1)?;
    let mut at = at + 5;
    if at == s.len() {
        return civil_micros(y, mo, d, 0, 0, 0, 0).map(Parsed::Date);
    }
    if !matches!(s[at], b' ' | b'T') {
        return None;
    }
    let (mut h, next) = one_or_two_digits(s, at + 1)?;
    if s.get(next) != Some(&b':') {
        return None;
    }
    let mi = two_digits(s, next + 1)?;
    at = next + 3;
    let mut sec = 0;
    let mut micros = 0;
    if s.get(at) == Some(&b':') {
        sec = two_digits(s, at + 1)?;
        at += 3;
        if s.get(at) == Some(&b'.') {
            (micros, at) = fraction(s, at + 1)?;
        }
    }
    match &s[at..] {
        [] => {}
        [b' ', a, m] if m.eq_ignore_ascii_case(&b'm') => {
            if !(1..=12).contains(&h) {
                return None;
            }
            match a.to_ascii_lowercase() {
                b'a' => h %= 12,
                b'p' => h = h % 12 + 12,
                _ => return None,
            }
        }
        _ => return None,
    }
    civil_micros(y, mo, d, h, mi, sec, micros).map(Parsed::Local)
}

/// An integer (an epoch in some unit).
fn parse_epoch(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s.first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut v: i64 = 0;
    for &b in digits {
        v = v.checked_mul(10)?.checked_add(i64::from(digit(b)?))?;
    }
    Some(if neg { -v } else { v })
}

/// The unit an epoch integer's magnitude gives, where it gives one (see [`EpochUnit`]): each
/// unit's band maps to 1973-03-03 .. 2286-11-20, and the bands leave gaps between them.
pub(crate) fn epoch_unit_of(v: i64) -> Option<EpochUnit> {
    const E8: u64 = 100_000_000;
    let a = v.unsigned_abs();
    [
        (EpochUnit::Seconds, 1),
        (EpochUnit::Millis, 1_000),
        (EpochUnit::Micros, 1_000_000),
        (EpochUnit::Nanos, 1_000_000_000),
    ]
    .into_iter()
    .find(|&(_, scale)| a >= E8 * scale && a / scale < E8 * 100)
    .map(|(unit, _)| unit)
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;

    const UTC: Tz = Tz::UTC;
    const NY: Tz = Tz::America__New_York;

    /// µs of a UTC date-time, through chrono (the reference).
    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32, us: u32) -> i64 {
        NaiveDate::from_ymd_opt(y, mo, d)
            .unwrap()
            .and_hms_micro_opt(h, mi, s, us)
            .unwrap()
            .and_utc()
            .timestamp_micros()
    }

    fn p(s: &str, tz: Tz) -> Option<i64> {
        parse_timestamp(s, tz)
    }

    #[test]
    fn civil_matches_chrono() {
        for (y, m, d) in [
            (1970, 1, 1),
            (1969, 12, 31),
            (2000, 2, 29),
            (1900, 3, 1),
            (1, 1, 1),
            (9999, 12, 31),
            (2024, 2, 29),
            (2021, 4, 21),
        ] {
            let want = NaiveDate::from_ymd_opt(y, m, d)
                .unwrap()
                .signed_duration_since(NaiveDate::from_ymd_opt(1970, 1, 1).unwrap())
                .num_days();
            assert_eq!(days_from_civil(i64::from(y), m, d), want, "{y}-{m}-{d}");
        }
    }

    #[test]
    fn rfc3339() {
        let t = utc(2021, 4, 21, 13, 30, 0, 0);
        assert_eq!(p("2021-04-21T13:30:00Z", UTC), Some(t));
        assert_eq!(p("2021-04-21T13:30:00z", NY), Some(t)); // offset given: tz ignored
        assert_eq!(p("2021-04-21T15:30:00+02:00", UTC), Some(t));
        assert_eq!(p("2021-04-21T09:30:00-04:00", UTC), Some(t));
        assert_eq!(p("2021-04-21T15:30:00+0200", UTC), Some(t));
        assert_eq!(p("2021-04-21T15:30:00+02", UTC), Some(t));
        assert_eq!(p("2021-04-21T13:30:00.5Z", UTC), Some(t + 500_000));
        assert_eq!(p("2021-04-21T13:30:00.123456Z", UTC), Some(t + 123_456));
        assert_eq!(p("2021-04-21T13:30:00.123456789Z", UTC), Some(t + 123_456));
        assert_eq!(p("2021-04-21t13:30:00Z", UTC), Some(t));
        assert_eq!(p("  2021-04-21T13:30:00Z ", UTC), Some(t));
        // Before the epoch.
        assert_eq!(
            p("1969-12-31T23:59:59.5Z", UTC),
            Some(utc(1969, 12, 31, 23, 59, 59, 500_000))
        );
    }

    #[test]
    fn iso_naive_and_pandas_shapes() {
        let t = utc(2013, 1, 1, 22, 0, 0, 295_000);
        assert_eq!(p("2013-01-01 22:00:00.295000+00:00", UTC), Some(t));
        assert_eq!(p("2013-01-01 22:00:00.295000+00:00", NY), Some(t));
        assert_eq!(p("2013-01-01 22:00:00.295", UTC), Some(t));
        assert_eq!(p("2013-01-01T22:00:00.295", UTC), Some(t));
        assert_eq!(p("2013-01-01 22:00:00 +0000", UTC), Some(t - 295_000));
        assert_eq!(p("2013-01-01 22:00:00 UTC", NY), Some(t - 295_000));
        assert_eq!(
            p("2013-01-01 22:00", UTC),
            Some(utc(2013, 1, 1, 22, 0, 0, 0))
        );
        assert_eq!(
            p("2013-01-01T22:00", UTC),
            Some(utc(2013, 1, 1, 22, 0, 0, 0))
        );
        assert_eq!(
            p("2013-01-01T22:00Z", UTC),
            Some(utc(2013, 1, 1, 22, 0, 0, 0))
        );
        assert_eq!(
            p("2013-01-01 22:00:59", UTC),
            Some(utc(2013, 1, 1, 22, 0, 59, 0))
        );
    }

    #[test]
    fn dates_are_midnight_utc_whatever_the_zone() {
        let t = utc(2021, 4, 21, 0, 0, 0, 0);
        assert_eq!(p("2021-04-21", UTC), Some(t));
        assert_eq!(p("2021-04-21", NY), Some(t));
        assert_eq!(p("4/21/2021", NY), Some(t));
        assert_eq!(p("2021/04/21", NY), Some(t));
        assert_eq!(p("2020-02-29", UTC), Some(utc(2020, 2, 29, 0, 0, 0, 0)));
    }

    #[test]
    fn naive_times_are_local_in_tz() {
        // New York is UTC-5 in November (after the DST end on 2019-11-03) and UTC-4 in summer.
        assert_eq!(
            p("2019-11-05 09:30", NY),
            Some(utc(2019, 11, 5, 14, 30, 0, 0))
        );
        assert_eq!(
            p("2019-07-05 09:30:00", NY),
            Some(utc(2019, 7, 5, 13, 30, 0, 0))
        );
        let tokyo = Tz::Asia__Tokyo;
        assert_eq!(
            p("2021-01-04 09:00:00", tokyo),
            Some(utc(2021, 1, 4, 0, 0, 0, 0))
        );
    }

    #[test]
    fn dst_gap_and_overlap() {
        // 2021-03-14 02:30 does not exist in New York.
        let mut parser = TsParser::new(NY);
        assert_eq!(
            parser.parse(b"2021-03-14 02:30:00"),
            Err(TsError::NonexistentLocal)
        );
        assert_eq!(p("2021-03-14 02:30:00", NY), None);
        // Around the gap on the same day the offsets differ, the day is never cached wrongly.
        assert_eq!(
            parser.parse(b"2021-03-14 01:59:00"),
            Ok(utc(2021, 3, 14, 6, 59, 0, 0))
        );
        assert_eq!(
            parser.parse(b"2021-03-14 03:00:00"),
            Ok(utc(2021, 3, 14, 7, 0, 0, 0))
        );
        assert_eq!(
            parser.parse(b"2021-03-14 01:59:00"),
            Ok(utc(2021, 3, 14, 6, 59, 0, 0))
        );
        // 2021-11-07 01:30 happens twice: refused unless a choice is given.
        assert_eq!(p("2021-11-07 01:30", NY), None);
        assert_eq!(
            parser.parse(b"2021-11-07 01:30"),
            Err(TsError::AmbiguousLocal)
        );
        let mut earliest = TsParser::new(NY).with(Ambiguous::Earliest, None);
        assert_eq!(
            earliest.parse(b"2021-11-07 01:30"),
            Ok(utc(2021, 11, 7, 5, 30, 0, 0))
        );
        let mut latest = TsParser::new(NY).with(Ambiguous::Latest, None);
        assert_eq!(
            latest.parse(b"2021-11-07 01:30"),
            Ok(utc(2021, 11, 7, 6, 30, 0, 0))
        );
        assert_eq!(
            latest.parse(b"2021-03-14 02:30"),
            Err(TsError::NonexistentLocal),
            "a skipped time is refused whatever the choice"
        );
        assert_eq!(
            p("2021-11-07 03:30", NY),
            Some(utc(2021, 11, 7, 8, 30, 0, 0))
        );
    }

    #[test]
    fn cache_crosses_days_correctly() {
        let mut parser = TsParser::new(NY);
        let reference = |s: &str| {
            let naive = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").unwrap();
            NY.from_local_datetime(&naive)
                .earliest()
                .unwrap()
                .timestamp_micros()
        };
        for day in 1..=31 {
            for hm in ["00:00", "01:30", "03:00", "09:30", "23:59"] {
                let s = format!("2021-03-{day:02} {hm}");
                if s == "2021-03-14 02:30" {
                    continue;
                }
                assert_eq!(parser.parse(s.as_bytes()), Ok(reference(&s)), "{s}");
            }
        }
    }

    #[test]
    fn us_dates() {
        let ny = |s| p(s, NY);
        assert_eq!(ny("11/5/2019 9:30"), Some(utc(2019, 11, 5, 14, 30, 0, 0)));
        assert_eq!(ny("11/05/2019 09:30"), Some(utc(2019, 11, 5, 14, 30, 0, 0)));
        assert_eq!(
            ny("11/5/2019 15:59:30"),
            Some(utc(2019, 11, 5, 20, 59, 30, 0))
        );
        assert_eq!(
            ny("11/5/2019 3:59:30 PM"),
            Some(utc(2019, 11, 5, 20, 59, 30, 0))
        );
        assert_eq!(ny("11/5/2019 12:00 am"), Some(utc(2019, 11, 5, 5, 0, 0, 0)));
        assert_eq!(
            ny("11/5/2019 12:00 PM"),
            Some(utc(2019, 11, 5, 17, 0, 0, 0))
        );
        assert_eq!(p("1/2/2020 0:00", UTC), Some(utc(2020, 1, 2, 0, 0, 0, 0)));
        assert_eq!(ny("13/5/2019 9:30"), None);
        assert_eq!(ny("11/5/2019 13:00 PM"), None);
        assert_eq!(ny("11/5/19 9:30"), None);
        assert_eq!(ny("11/5/19"), None);
        assert_eq!(ny("21/4/21 9:30"), None);
    }

    #[test]
    fn epochs_by_magnitude() {
        let t = utc(2021, 4, 21, 13, 30, 0, 0);
        let secs = t / 1_000_000;
        assert_eq!(p(&secs.to_string(), NY), Some(t));
        assert_eq!(p(&(secs * 1_000).to_string(), NY), Some(t));
        assert_eq!(p(&t.to_string(), NY), Some(t));
        assert_eq!(p(&(t * 1_000 + 999).to_string(), NY), Some(t));
        // Band edges: each unit covers |v| in [1e8, 1e10) times its scale.
        assert_eq!(epoch_unit_of(100_000_000), Some(EpochUnit::Seconds));
        assert_eq!(epoch_unit_of(9_999_999_999), Some(EpochUnit::Seconds));
        assert_eq!(epoch_unit_of(-100_000_000), Some(EpochUnit::Seconds));
        assert_eq!(epoch_unit_of(10_000_000_000), None);
        assert_eq!(epoch_unit_of(99_999_999_999), None);
        assert_eq!(epoch_unit_of(100_000_000_000), Some(EpochUnit::Millis));
        assert_eq!(epoch_unit_of(9_999_999_999_999), Some(EpochUnit::Millis));
        assert_eq!(epoch_unit_of(10_000_000_000_000), None);
        assert_eq!(epoch_unit_of(100_000_000_000_000), Some(EpochUnit::Micros));
        assert_eq!(epoch_unit_of(10_000_000_000_000_000), None);
        assert_eq!(
            epoch_unit_of(100_000_000_000_000_000),
            Some(EpochUnit::Nanos)
        );
        assert_eq!(epoch_unit_of(i64::MAX), Some(EpochUnit::Nanos));
        assert_eq!(epoch_unit_of(i64::MIN), Some(EpochUnit::Nanos));
        assert_eq!(epoch_unit_of(0), None);
        assert_eq!(epoch_unit_of(99_999_999), None);
    }

    /// Issue 16, point 11: `86400000` was read as seconds (1972-09-27) and `86400000000` as
    /// year 4707. Neither magnitude tells its unit, so both are refused unless it is given.
    #[test]
    fn epochs_whose_magnitude_is_ambiguous_are_refused_unless_the_unit_is_given() {
        let mut auto = TsParser::new(UTC);
        for v in ["86400000", "86400000000", "0", "-86400"] {
            assert_eq!(
                auto.parse(v.as_bytes()),
                Err(TsError::AmbiguousEpoch),
                "{v}"
            );
        }
        let with = |unit| TsParser::new(UTC).with(Ambiguous::Refuse, Some(unit));
        let day = 86_400_000_000;
        assert_eq!(with(EpochUnit::Millis).parse(b"86400000"), Ok(day));
        assert_eq!(with(EpochUnit::Seconds).parse(b"86400"), Ok(day));
        assert_eq!(with(EpochUnit::Micros).parse(b"86400000000"), Ok(day));
        assert_eq!(with(EpochUnit::Nanos).parse(b"86400000000001"), Ok(day));
        assert_eq!(with(EpochUnit::Seconds).parse(b"-86400"), Ok(-day));
        assert_eq!(with(EpochUnit::Seconds).parse(b"0"), Ok(0));
        // A given unit is used even where the magnitude would say another.
        assert_eq!(
            with(EpochUnit::Millis).parse(b"1618999200"),
            Ok(1_618_999_200_000)
        );
        assert_eq!(
            with(EpochUnit::Seconds).parse(b"9223372036854775807"),
            Err(TsError::Unparsable),
            "overflow"
        );
        assert_eq!(p("99999999999999999999", UTC), None); // overflows i64
    }

    #[test]
    fn fallbacks() {
        assert_eq!(
            p("Wed, 21 Apr 2021 13:30:00 +0000", UTC),
            Some(utc(2021, 4, 21, 13, 30, 0, 0))
        );
        assert_eq!(
            p("2021/04/21 09:30:00", NY),
            Some(utc(2021, 4, 21, 13, 30, 0, 0))
        );
        assert_eq!(
            p("2021/04/21 09:30", NY),
            Some(utc(2021, 4, 21, 13, 30, 0, 0))
        );
    }

    #[test]
    fn rejects() {
        for s in [
            "",
            "abc",
            "2021-02-30",
            "2021-13-01",
            "2021-04-21 24:00",
            "2021-04-21 12:60",
            "2021-04-21 12:00:60",
            "2021-04-21 12",
            "2021-04-21T12:00:00+25:00",
            "2021-04-21T12:00:00Zjunk",
            "2021-04-21T12:00:00.Z",
            "2021-4-21",
            "1.5",
            "-",
            "12:00",
        ] {
            assert_eq!(p(s, UTC), None, "{s:?}");
        }
    }

    #[test]
    fn infer_reads_the_repeated_hour_in_row_order() {
        let mut parser = TsParser::new(NY).with(Ambiguous::Infer, None);
        let mut read = |t: &str| parser.parse(t.as_bytes());
        assert_eq!(read("2021-11-07 00:59"), Ok(utc(2021, 11, 7, 4, 59, 0, 0)));
        assert_eq!(read("2021-11-07 01:00"), Ok(utc(2021, 11, 7, 5, 0, 0, 0)));
        assert_eq!(read("2021-11-07 01:59"), Ok(utc(2021, 11, 7, 5, 59, 0, 0)));
        // The clock steps back: from here on, after the change (EST, UTC-5).
        assert_eq!(read("2021-11-07 01:00"), Ok(utc(2021, 11, 7, 6, 0, 0, 0)));
        assert_eq!(read("2021-11-07 01:30"), Ok(utc(2021, 11, 7, 6, 30, 0, 0)));
        assert_eq!(read("2021-11-07 02:00"), Ok(utc(2021, 11, 7, 7, 0, 0, 0)));
        // Hourly bars repeat the same wall-clock time.
        let mut hourly = TsParser::new(NY).with(Ambiguous::Infer, None);
        assert_eq!(
            hourly.parse(b"2022-11-06 01:00"),
            Ok(utc(2022, 11, 6, 5, 0, 0, 0))
        );
        assert_eq!(
            hourly.parse(b"2022-11-06 01:00"),
            Ok(utc(2022, 11, 6, 6, 0, 0, 0))
        );
        // Rows out of time order cannot be told apart: a second step back is refused.
        let mut descending = TsParser::new(NY).with(Ambiguous::Infer, None);
        assert!(descending.parse(b"2021-11-07 01:59").is_ok());
        assert!(descending.parse(b"2021-11-07 01:58").is_ok());
        assert_eq!(
            descending.parse(b"2021-11-07 01:57"),
            Err(TsError::AmbiguousOrder)
        );
    }

    /// One file of two symbols: A's rows stop inside the first pass, then B's start; B's 01:00
    /// is its own first pass, not A's clock stepping back.
    #[test]
    fn infer_reads_each_series_in_its_own_row_order() {
        let mut parser = TsParser::new(NY).with(Ambiguous::Infer, None);
        parser.set_series(0);
        assert_eq!(
            parser.parse(b"2021-11-07 01:30"),
            Ok(utc(2021, 11, 7, 5, 30, 0, 0))
        );
        parser.set_series(1);
        assert_eq!(
            parser.parse(b"2021-11-07 01:00"),
            Ok(utc(2021, 11, 7, 5, 0, 0, 0))
        );
        parser.set_series(0);
        assert_eq!(
            parser.parse(b"2021-11-07 01:00"),
            Ok(utc(2021, 11, 7, 6, 0, 0, 0)),
            "A's clock stepped back"
        );
    }
}
