//! Back-adjustment factors as pure arithmetic.
//!
//! An event multiplies the prices of every bar that opens before it takes effect: a split of
//! `ratio` new shares per old by `1 / ratio` (and volume by `ratio`), a cash dividend of `amount`
//! by `1 - amount / C`, C being the raw close of the last session before the ex-date (volume
//! unchanged). A bar's factor is the product over the events after it, so [`Factors`] is a step
//! function of the bar's open time: constant between two events, 1 after the last.

use std::ops::Range;

/// What one event does to the bars that open before `effective`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    /// µs UTC: bars that open before this are multiplied; bars at or after it are not.
    pub effective: i64,
    /// Multiplies open, high, low, close and vwap.
    pub price: f64,
    /// Multiplies volume.
    pub volume: f64,
}

/// An event whose factor would not be a finite number above 0.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FactorError {
    #[error("split ratio {0} must be a finite number above 0")]
    Ratio(f64),
    #[error(
        "dividend amount {amount} is not below the previous close {close} \
         (the factor 1 - amount/close would be {factor})"
    )]
    Dividend {
        amount: f64,
        close: f64,
        factor: f64,
    },
}

impl Step {
    /// A split of `ratio` new shares per old (4 for 4:1, 0.1 for 1:10).
    pub fn split(effective: i64, ratio: f64) -> Result<Step, FactorError> {
        if !ratio.is_finite() || ratio <= 0.0 {
            return Err(FactorError::Ratio(ratio));
        }
        Ok(Step {
            effective,
            price: 1.0 / ratio,
            volume: ratio,
        })
    }

    /// A cash dividend of `amount` per share, `previous_close` the raw close of the last
    /// session before the ex-date.
    pub fn dividend(effective: i64, amount: f64, previous_close: f64) -> Result<Step, FactorError> {
        let factor = 1.0 - amount / previous_close;
        if !(factor.is_finite() && factor > 0.0 && factor <= 1.0) {
            return Err(FactorError::Dividend {
                amount,
                close: previous_close,
                factor,
            });
        }
        Ok(Step {
            effective,
            price: factor,
            volume: 1.0,
        })
    }
}

/// The product of the steps after each bar, as a step function of the bar's open time.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Factors {
    /// Distinct effective times, ascending.
    bounds: Vec<i64>,
    /// `price[i]` for a bar with `bounds[i - 1] <= ts < bounds[i]`; `price[bounds.len()]` is 1
    /// (a bar after every event).
    price: Vec<f64>,
    volume: Vec<f64>,
}

/// The multipliers of one bar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Multiplier {
    pub price: f64,
    pub volume: f64,
}

impl Multiplier {
    pub const ONE: Multiplier = Multiplier {
        price: 1.0,
        volume: 1.0,
    };

    pub fn is_one(self) -> bool {
        self == Multiplier::ONE
    }

    /// The multiplier that undoes this one.
    pub fn inverse(self) -> Multiplier {
        Multiplier {
            price: 1.0 / self.price,
            volume: 1.0 / self.volume,
        }
    }
}

impl Factors {
    pub fn new(steps: impl IntoIterator<Item = Step>) -> Self {
        let mut steps: Vec<Step> = steps.into_iter().collect();
        steps.sort_by_key(|s| s.effective);
        // Two events effective at once (a split and a dividend on one ex-date) are one step.
        let mut merged: Vec<Step> = Vec::with_capacity(steps.len());
        for s in steps {
            match merged.last_mut() {
                Some(last) if last.effective == s.effective => {
                    last.price *= s.price;
                    last.volume *= s.volume;
                }
                _ => merged.push(s),
            }
        }
        let n = merged.len();
        let (mut price, mut volume) = (vec![1.0; n + 1], vec![1.0; n + 1]);
        for i in (0..n).rev() {
            price[i] = price[i + 1] * merged[i].price;
            volume[i] = volume[i + 1] * merged[i].volume;
        }
        Factors {
            bounds: merged.iter().map(|s| s.effective).collect(),
            price,
            volume,
        }
    }

    /// No event: every bar is as stored.
    pub fn is_identity(&self) -> bool {
        self.bounds.is_empty()
    }

    /// The latest effective time: bars at or after it are unchanged.
    pub fn last_effective(&self) -> Option<i64> {
        self.bounds.last().copied()
    }

    fn segment(&self, ts: i64) -> usize {
        self.bounds.partition_point(|&b| b <= ts)
    }

    fn multiplier(&self, segment: usize) -> Multiplier {
        Multiplier {
            price: self.price[segment],
            volume: self.volume[segment],
        }
    }

    /// The multipliers of a bar that opens at `ts`.
    pub fn at(&self, ts: i64) -> Multiplier {
        self.multiplier(self.segment(ts))
    }

    /// The time range `[start, end)` of the segment holding `ts`.
    fn segment_range(&self, segment: usize) -> (i64, i64) {
        let start = if segment == 0 {
            i64::MIN
        } else {
            self.bounds[segment - 1]
        };
        let end = self.bounds.get(segment).copied().unwrap_or(i64::MAX);
        (start, end)
    }

    /// The rows of `ts` (in any order) in runs that share a multiplier, runs of 1 left out.
    /// Sorted input gives one run per event crossed.
    pub fn runs(&self, ts: &[i64]) -> Vec<(Range<usize>, Multiplier)> {
        let mut out: Vec<(Range<usize>, Multiplier)> = Vec::new();
        if self.is_identity() {
            return out;
        }
        let mut i = 0;
        while i < ts.len() {
            let segment = self.segment(ts[i]);
            let (lo, hi) = self.segment_range(segment);
            let start = i;
            while i < ts.len() && ts[i] >= lo && ts[i] < hi {
                i += 1;
            }
            let m = self.multiplier(segment);
            if !m.is_one() {
                out.push((start..i, m));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_bar_takes_the_events_after_it() {
        // AAPL 2020: 4:1 split effective at 100, dividend 0.205 on a close of 119.03 at 200.
        let f = Factors::new([
            Step::dividend(200, 0.205, 119.03).unwrap(),
            Step::split(100, 4.0).unwrap(),
        ]);
        let div = 1.0 - 0.205 / 119.03;
        assert_eq!(
            f.at(99),
            Multiplier {
                price: 0.25 * div,
                volume: 4.0
            }
        );
        assert_eq!(
            f.at(100),
            Multiplier {
                price: div,
                volume: 1.0
            }
        );
        assert_eq!(
            f.at(199),
            Multiplier {
                price: div,
                volume: 1.0
            }
        );
        assert_eq!(f.at(200), Multiplier::ONE);
        assert_eq!(f.last_effective(), Some(200));
        assert!(Factors::new([]).at(0).is_one());
    }

    #[test]
    fn runs_cover_the_adjusted_rows_only() {
        let f = Factors::new([Step::split(10, 2.0).unwrap(), Step::split(20, 5.0).unwrap()]);
        let runs = f.runs(&[1, 5, 10, 15, 20, 25]);
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].0, 0..2);
        assert_eq!(runs[0].1.volume, 10.0);
        assert_eq!(runs[1].0, 2..4);
        assert_eq!(runs[1].1.volume, 5.0);
        // Unsorted rows (a merged batch of several series) still get their own factor.
        let runs = f.runs(&[25, 1, 15]);
        assert_eq!(
            runs.iter().map(|r| r.0.clone()).collect::<Vec<_>>(),
            vec![1..2, 2..3]
        );
    }

    #[test]
    fn impossible_events_are_refused() {
        assert!(Step::split(0, 0.0).is_err());
        assert!(Step::split(0, f64::NAN).is_err());
        assert!(Step::dividend(0, 130.0, 129.0).is_err());
        assert!(Step::dividend(0, 1.0, 0.0).is_err());
        assert!(Step::dividend(0, -1.0, 10.0).is_err());
        assert_eq!(Step::dividend(0, 0.0, 10.0).unwrap().price, 1.0);
    }

    /// An event for the property tests: effective time and a split ratio or a dividend.
    fn event() -> impl Strategy<Value = Step> {
        let time = -50i64..50;
        prop_oneof![
            (
                time.clone(),
                prop::sample::select(vec![0.1, 0.25, 0.5, 1.5, 2.0, 3.0, 4.0, 7.0, 10.0])
            )
                .prop_map(|(t, r)| Step::split(t, r).unwrap()),
            (time, 0.0f64..5.0, 5.5f64..500.0)
                .prop_map(|(t, a, c)| Step::dividend(t, a, c).unwrap()),
        ]
    }

    proptest! {
        /// The step function equals the direct definition: the product over the events whose
        /// effective time is after the bar.
        #[test]
        fn factors_equal_the_product_over_later_events(
            steps in prop::collection::vec(event(), 0..12),
            bars in prop::collection::vec(-60i64..60, 0..40),
        ) {
            let f = Factors::new(steps.clone());
            for &ts in &bars {
                let (mut price, mut volume) = (1.0f64, 1.0f64);
                for s in steps.iter().filter(|s| s.effective > ts) {
                    price *= s.price;
                    volume *= s.volume;
                }
                let got = f.at(ts);
                prop_assert!((got.price - price).abs() <= 1e-12 * price.abs().max(1.0), "{ts}: {got:?} vs {price}");
                prop_assert!((got.volume - volume).abs() <= 1e-12 * volume.abs().max(1.0));
            }
            // Runs give every row its own multiplier, whatever the order.
            let expected: Vec<Multiplier> = bars.iter().map(|&t| f.at(t)).collect();
            let mut from_runs = vec![Multiplier::ONE; bars.len()];
            for (range, m) in f.runs(&bars) {
                for i in range {
                    from_runs[i] = m;
                }
            }
            prop_assert_eq!(from_runs, expected);
        }
    }
}
