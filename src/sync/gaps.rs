//! Finding what to fetch: expected bars (the calendar) minus stored bars minus ranges already
//! fetched, grouped into provider-sized chunks. Pure functions over sorted timestamps (µs UTC).

use crate::calendar::Calendar;
use crate::model::Interval;

use super::registry::subtract_spans;

/// The open time after which bars are not complete yet: a bar counts only once it has ended.
pub fn horizon(interval: Interval, now: i64) -> i64 {
    now - interval.micros() + 1
}

/// Bars the calendar expects in `[start, end)` that fall outside `covered` (merged spans).
pub fn expected_uncovered(
    calendar: Calendar,
    interval: Interval,
    start: i64,
    end: i64,
    covered: &[(i64, i64)],
) -> Vec<i64> {
    subtract_spans(start, end, covered)
        .into_iter()
        .flat_map(|(a, b)| calendar.expected_bars(interval, a, b))
        .collect()
}

/// `expected` minus `stored`; both sorted ascending.
pub fn missing(expected: &[i64], stored: &[i64]) -> Vec<i64> {
    let mut out = Vec::new();
    let mut s = stored.iter().peekable();
    for &t in expected {
        while s.next_if(|v| **v < t).is_some() {}
        if s.peek() != Some(&&t) {
            out.push(t);
        }
    }
    out
}

/// Groups missing bars (sorted) into requests `[start, end)` no longer than `max_range`: each
/// chunk starts at a missing bar and ends after the last missing bar that fits, so bars already
/// stored between two missing ones cost nothing extra when they share a chunk, and a chunk
/// never asks for time past the bars it needs.
pub fn chunks(missing: &[i64], interval: Interval, max_range: i64) -> Vec<(i64, i64)> {
    let step = interval.micros();
    let max_range = max_range.max(step);
    let mut out = Vec::new();
    let mut i = 0;
    while i < missing.len() {
        let start = missing[i];
        let limit = start.saturating_add(max_range);
        let mut j = i;
        while j + 1 < missing.len() && missing[j + 1] + step <= limit {
            j += 1;
        }
        out.push((start, missing[j] + step));
        i = j + 1;
    }
    out
}

/// Splits `[start, end)` into chunks of at most `max_range`, dropping those where the calendar
/// expects no bar (a forced refetch of a range).
pub fn forced_chunks(
    calendar: Calendar,
    interval: Interval,
    start: i64,
    end: i64,
    max_range: i64,
) -> Vec<(i64, i64)> {
    let expected = calendar.expected_bars(interval, start, end);
    chunks(&expected, interval, max_range)
}

/// How far a fetched chunk counts as covered. Bars that ended less than `settle` ago may still
/// be published late, so a chunk's empty tail within that window is not recorded as known-empty
/// (it is asked again next time); everything up to the last bar received always is.
pub fn covered_end(
    chunk: (i64, i64),
    last_bar: Option<i64>,
    interval: Interval,
    now: i64,
    settle: i64,
) -> i64 {
    let settled = now - settle - interval.micros() + 1;
    let received = last_bar.map_or(i64::MIN, |t| t + interval.micros());
    settled.max(received).clamp(chunk.0, chunk.1)
}

#[cfg(test)]
mod properties;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::MICROS_PER_DAY;

    fn day(y: i32, m: u32, d: u32) -> i64 {
        chrono::NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_micros()
    }

    #[test]
    fn missing_walks_both_lists() {
        assert_eq!(missing(&[1, 2, 3, 5, 8], &[0, 2, 5, 6]), vec![1, 3, 8]);
        assert_eq!(missing(&[1, 2], &[]), vec![1, 2]);
        assert!(missing(&[], &[1]).is_empty());
    }

    #[test]
    fn chunks_respect_the_provider_range() {
        let d = MICROS_PER_DAY;
        let m: Vec<i64> = (0..10).map(|i| i * d).collect();
        // 4 days a chunk: [0,4) [4,8) [8,10).
        assert_eq!(
            chunks(&m, Interval::D1, 4 * d),
            vec![(0, 4 * d), (4 * d, 8 * d), (8 * d, 10 * d)]
        );
        // Two far-apart holes: two chunks, each just its hole.
        assert_eq!(
            chunks(&[0, 100 * d], Interval::D1, 30 * d),
            vec![(0, d), (100 * d, 101 * d)]
        );
        // An unlimited provider: one chunk.
        assert_eq!(chunks(&m, Interval::D1, i64::MAX / 4), vec![(0, 10 * d)]);
    }

    #[test]
    fn a_deleted_week_is_one_chunk_of_its_trading_days() {
        let (start, end) = (day(2020, 11, 23), day(2020, 11, 30));
        let covered = vec![(day(2000, 1, 1), start), (end, day(2021, 1, 1))];
        let expected = expected_uncovered(
            Calendar::UsEquity,
            Interval::D1,
            day(2000, 1, 1),
            day(2021, 1, 1),
            &covered,
        );
        // Thanksgiving (26th) is not expected; the rest of the week is.
        assert_eq!(
            expected,
            vec![
                day(2020, 11, 23),
                day(2020, 11, 24),
                day(2020, 11, 25),
                day(2020, 11, 27)
            ]
        );
        let c = chunks(&expected, Interval::D1, 365 * MICROS_PER_DAY);
        assert_eq!(c, vec![(day(2020, 11, 23), day(2020, 11, 28))]);
    }

    #[test]
    fn recent_empty_tails_are_not_known_empty() {
        let d = MICROS_PER_DAY;
        let now = 100 * d;
        // An old chunk is covered whole, even if empty.
        assert_eq!(covered_end((0, 10 * d), None, Interval::D1, now, d), 10 * d);
        // A recent chunk with nothing received is covered up to what has settled.
        assert_eq!(
            covered_end((90 * d, 99 * d), None, Interval::D1, now, d),
            98 * d + 1
        );
        // What was received is always covered.
        assert_eq!(
            covered_end((90 * d, 99 * d), Some(98 * d), Interval::D1, now, d),
            99 * d
        );
    }
}
