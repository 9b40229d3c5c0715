//! The gap and span arithmetic against a set model: a span `[a, b)` of integers is the set of
//! its points, so merging is a union, subtracting a difference, and the gaps are the model's
//! maximal runs of missing points.
//!
//! The contracts checked:
//! - `merge_spans`: sorted, non-empty spans that neither overlap nor touch, covering exactly the
//!   union of the input (empty and reversed spans cover nothing).
//! - `subtract_spans(start, end, merged)`: the maximal runs of `[start, end)` outside the spans,
//!   in order; nothing for an empty range.
//! - `missing`: the expected bars not stored, in order.
//! - `chunks`: every missing bar in exactly one chunk; a chunk starts at a missing bar, ends one
//!   interval after the last missing bar it holds, spans at most `max_range` (or one interval),
//!   and takes every following missing bar that fits (greedy, so as few chunks as possible).
//! - `expected_uncovered`: the calendar's bars of `[start, end)` outside the covered spans.
//! - `covered_end`: the end of the longest prefix of the chunk whose bars are all either
//!   received or settled (ended at least `settle` ago).

use std::collections::BTreeSet;

use proptest::prelude::*;

use super::*;
use crate::sync::registry::merge_spans;

/// The points of the spans (`[a, b)` with `a >= b` is empty).
fn points(spans: &[(i64, i64)]) -> BTreeSet<i64> {
    spans.iter().flat_map(|&(a, b)| a..b).collect()
}

/// The maximal runs of consecutive points, as spans.
fn runs(points: &BTreeSet<i64>) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    for &p in points {
        match out.last_mut() {
            Some(last) if last.1 == p => last.1 = p + 1,
            _ => out.push((p, p + 1)),
        }
    }
    out
}

/// Spans on a small domain, some empty or reversed, overlapping and touching often.
fn spans() -> impl Strategy<Value = Vec<(i64, i64)>> {
    prop::collection::vec(
        (-40i64..40, -3i64..20).prop_map(|(a, len)| (a, a + len)),
        0..8,
    )
}

fn interval() -> impl Strategy<Value = Interval> {
    prop::sample::select(Interval::ALL.to_vec())
}

fn calendar() -> impl Strategy<Value = Calendar> {
    prop::sample::select(vec![Calendar::UsEquity, Calendar::AlwaysOpen, Calendar::Fx])
}

/// 2020-11-20 00:00 UTC: the week of Thanksgiving follows (a holiday, a half day).
const BASE: i64 = 1_605_830_400_000_000;
const HOUR: i64 = 3_600_000_000;

proptest! {
    #[test]
    fn merged_spans_are_the_union_sorted_apart(input in spans()) {
        let merged = merge_spans(input.clone());
        prop_assert_eq!(points(&merged), points(&input));
        prop_assert!(merged.iter().all(|(a, b)| a < b));
        // Apart: a gap of at least one point between neighbours, so each span is a maximal run.
        prop_assert!(merged.windows(2).all(|w| w[0].1 < w[1].0));
        prop_assert_eq!(merged, runs(&points(&input)));
    }

    #[test]
    fn subtracting_spans_leaves_the_maximal_missing_runs(
        input in spans(),
        start in -50i64..50,
        len in -5i64..70,
    ) {
        let end = start + len;
        let merged = merge_spans(input);
        let covered = points(&merged);
        let model: BTreeSet<i64> = (start..end).filter(|p| !covered.contains(p)).collect();
        prop_assert_eq!(subtract_spans(start, end, &merged), runs(&model));
    }

    #[test]
    fn missing_is_the_set_difference_in_order(
        expected in prop::collection::btree_set(0i64..60, 0..40),
        stored in prop::collection::vec(0i64..60, 0..40),
    ) {
        let mut stored = stored;
        stored.sort_unstable();
        let stored_set: BTreeSet<i64> = stored.iter().copied().collect();
        let expected_list: Vec<i64> = expected.iter().copied().collect();
        let model: Vec<i64> = expected.difference(&stored_set).copied().collect();
        prop_assert_eq!(missing(&expected_list, &stored), model);
    }

    #[test]
    fn chunks_hold_every_missing_bar_once_within_the_range_greedily(
        slots in prop::collection::btree_set(0i64..200, 0..60),
        interval in interval(),
        max_slots in 0i64..40,
        offset in 0i64..3,
    ) {
        let step = interval.micros();
        // Missing bars on the interval's grid (offset: grids need not start at 0).
        let missing: Vec<i64> = slots.iter().map(|s| BASE + (s + offset) * step).collect();
        let max_range = max_slots * step + max_slots % 3; // not always a multiple of the step
        let got = chunks(&missing, interval, max_range);
        let limit = max_range.max(step);
        let mut seen = Vec::new();
        for (i, &(a, b)) in got.iter().enumerate() {
            let inside: Vec<i64> = missing.iter().copied().filter(|t| (a..b).contains(t)).collect();
            prop_assert_eq!(inside.first(), Some(&a), "a chunk starts at a missing bar");
            prop_assert_eq!(inside.last().map(|t| t + step), Some(b), "and ends after its last");
            prop_assert!(b - a <= limit, "{:?} longer than {}", (a, b), limit);
            // Greedy: the next missing bar would not have fitted.
            if let Some(&(next, _)) = got.get(i + 1) {
                prop_assert!(next + step > a + limit);
                prop_assert!(b <= next);
            }
            seen.extend(inside);
        }
        prop_assert_eq!(seen, missing);
    }

    #[test]
    fn expected_uncovered_is_the_calendars_bars_outside_the_covered_spans(
        calendar in calendar(),
        interval in interval(),
        start_h in 0i64..240,
        len_h in -2i64..240,
        covered_h in prop::collection::vec((0i64..480, 0i64..96), 0..6),
    ) {
        let (start, end) = (BASE + start_h * HOUR, BASE + (start_h + len_h) * HOUR);
        // Spans in hours, some not on the interval's grid.
        let covered = merge_spans(
            covered_h
                .iter()
                .map(|&(a, l)| (BASE + a * HOUR + 7, BASE + (a + l) * HOUR))
                .collect(),
        );
        let is_covered = |t: i64| covered.iter().any(|&(a, b)| (a..b).contains(&t));
        let model: Vec<i64> = calendar
            .expected_bars(interval, start, end)
            .into_iter()
            .filter(|&t| !is_covered(t))
            .collect();
        prop_assert_eq!(expected_uncovered(calendar, interval, start, end, &covered), model);
    }

    #[test]
    fn covered_end_is_the_longest_prefix_received_or_settled(
        interval in prop::sample::select(vec![Interval::M1, Interval::M5, Interval::H1]),
        chunk_start in 0i64..50,
        chunk_len in 0i64..50,
        last_bar in prop::option::of(0i64..100),
        now_slot in 0i64..120,
        settle_slots in 0i64..10,
    ) {
        // Positions in units of a sixth of a bar, so times fall off the grid too.
        let step = interval.micros();
        let unit = step / 6;
        let chunk = (BASE + chunk_start * unit, BASE + (chunk_start + chunk_len) * unit);
        let last_bar = last_bar.map(|b| BASE + b * unit);
        let (now, settle) = (BASE + now_slot * unit, settle_slots * unit);
        let got = covered_end(chunk, last_bar, interval, now, settle);
        // A bar opening at t is known once received (t <= last bar) or settled (it ended
        // `settle` before now). Both hold for every time before one that they hold for, so the
        // longest known prefix ends where the first unknown time is, or at the chunk's end.
        let known = |t: i64| last_bar.is_some_and(|l| t < l + step) || t + step <= now - settle;
        prop_assert!(chunk.0 <= got && got <= chunk.1, "{} outside {:?}", got, chunk);
        if got > chunk.0 {
            prop_assert!(known(chunk.0) && known(got - 1), "{} covers an unknown bar", got);
        }
        if got < chunk.1 {
            prop_assert!(!known(got), "{} stops before an unknown bar", got);
        }
    }
}
