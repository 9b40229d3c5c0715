//! Which events an adjusted read applies, and the factors they make: pure, given the previous
//! closes the dividends need.

use std::fmt;
use std::str::FromStr;

use chrono::NaiveDate;

use super::factors::{FactorError, Factors, Step};
use crate::actions::{ActionKind, CorporateAction};
use crate::calendar::Calendar;
use crate::model::Interval;
use crate::model::time::{date_us, parse_date};

/// Which events an adjusted read applies: `none` (raw, as stored), `splits`, or `all` (splits
/// and cash dividends).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Adjust {
    #[default]
    None,
    Splits,
    All,
}

impl Adjust {
    pub fn as_str(self) -> &'static str {
        match self {
            Adjust::None => "none",
            Adjust::Splits => "splits",
            Adjust::All => "all",
        }
    }

    fn takes(self, kind: ActionKind) -> bool {
        match self {
            Adjust::None => false,
            Adjust::Splits => kind == ActionKind::Split,
            Adjust::All => true,
        }
    }
}

impl fmt::Display for Adjust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Adjust {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "none" => Ok(Adjust::None),
            "splits" => Ok(Adjust::Splits),
            "all" => Ok(Adjust::All),
            other => Err(format!(
                "unknown adjustment {other:?} (expected none, splits or all)"
            )),
        }
    }
}

/// How a read adjusts its bars: which events, and up to which ex-date (point in time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Adjustment {
    pub adjust: Adjust,
    /// Only events with `ex_date <= as_of`: the prices a backtest would have seen that day.
    pub as_of: Option<NaiveDate>,
}

impl Adjustment {
    /// Raw bars, as stored.
    pub const NONE: Adjustment = Adjustment {
        adjust: Adjust::None,
        as_of: None,
    };

    pub fn new(adjust: Adjust, as_of: Option<NaiveDate>) -> Self {
        Self { adjust, as_of }
    }

    pub fn is_none(&self) -> bool {
        self.adjust == Adjust::None
    }

    /// Whether the read applies this event.
    pub fn takes(&self, event: &CorporateAction) -> bool {
        self.adjust.takes(event.kind) && self.as_of.is_none_or(|d| event.ex_date <= d)
    }
}

/// Parses `as_of`: a date, `YYYY-MM-DD`.
pub fn parse_as_of(s: &str) -> Result<NaiveDate, String> {
    parse_date(s).ok_or_else(|| format!("{s:?} is not a date (expected YYYY-MM-DD)"))
}

/// When an event on `ex_date` takes effect for bars of `interval` (µs UTC): daily and weekly
/// bars are dated at 00:00 UTC of their trading date, so from the ex-date's; intraday bars
/// from the start of the ex-date in the symbol's calendar time zone (New York for US
/// equities), so the evening bars of the day before, which open after 00:00 UTC, are still
/// adjusted, and the ex-date's pre-market and session are not.
pub fn effective_time(ex_date: NaiveDate, interval: Interval, calendar: Calendar) -> i64 {
    if interval.is_intraday() {
        calendar.day_start(ex_date)
    } else {
        date_us(ex_date)
    }
}

/// An event a read applied, with what it multiplied.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub event: CorporateAction,
    /// µs UTC: bars before it were multiplied.
    pub effective: i64,
    pub price_factor: f64,
    pub volume_factor: f64,
    /// The raw close a dividend's factor was computed from.
    pub previous_close: Option<f64>,
}

impl fmt::Display for Applied {
    /// `AAPL 2020-08-31 split ratio=4 factor=0.25`,
    /// `AAPL 2020-11-06 dividend amount=0.205 close=119.03 factor=0.998278`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &self.event;
        write!(f, "{} {} {}", e.symbol, e.ex_date, e.kind)?;
        if let Some(r) = e.ratio {
            write!(f, " ratio={r}")?;
        }
        if let Some(a) = e.amount {
            write!(f, " amount={a}")?;
        }
        if let Some(c) = self.previous_close {
            write!(f, " close={c}")?;
        }
        write!(f, " factor={}", round_sig(self.price_factor, 9))
    }
}

/// `x` to `digits` significant digits, for display.
fn round_sig(x: f64, digits: i32) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(digits - 1 - x.abs().log10().floor() as i32);
    (x * scale).round() / scale
}

/// An event whose factor cannot be computed: the read is refused rather than answered wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "corporate action {symbol} {ex_date} {kind} ({source_name}): {rule}; correct or delete the \
     event, then read again"
)]
pub struct BadEvent {
    pub symbol: String,
    pub ex_date: NaiveDate,
    pub kind: ActionKind,
    pub source_name: String,
    pub rule: FactorError,
}

/// The factors of one series under `adjustment`, and the events applied.
///
/// `effective` says when an ex-date takes effect for the series; `previous_close` gives a
/// dividend's C, or `None` when the series has no bar before it (the event then changes no bar
/// and is left out).
pub fn plan(
    events: &[CorporateAction],
    adjustment: &Adjustment,
    effective: impl Fn(NaiveDate) -> i64,
    previous_close: impl Fn(&CorporateAction) -> Option<f64>,
) -> Result<(Factors, Vec<Applied>), BadEvent> {
    let mut steps = Vec::new();
    let mut applied = Vec::new();
    for event in events.iter().filter(|e| adjustment.takes(e)) {
        let at = effective(event.ex_date);
        let bad = |rule| BadEvent {
            symbol: event.symbol.to_string(),
            ex_date: event.ex_date,
            kind: event.kind,
            source_name: event.source.clone(),
            rule,
        };
        let (step, close) = match event.kind {
            ActionKind::Split => {
                let ratio = event.ratio.unwrap_or(f64::NAN);
                (Step::split(at, ratio).map_err(bad)?, None)
            }
            ActionKind::Dividend => {
                let Some(close) = previous_close(event) else {
                    continue;
                };
                let amount = event.amount.unwrap_or(f64::NAN);
                (Step::dividend(at, amount, close).map_err(bad)?, Some(close))
            }
        };
        steps.push(step);
        applied.push(Applied {
            event: event.clone(),
            effective: at,
            price_factor: step.price,
            volume_factor: step.volume,
            previous_close: close,
        });
    }
    Ok((Factors::new(steps), applied))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Symbol;
    use proptest::prelude::*;

    fn day(s: &str) -> NaiveDate {
        parse_as_of(s).unwrap()
    }

    fn aapl() -> Vec<CorporateAction> {
        let s = Symbol::new("AAPL").unwrap();
        vec![
            CorporateAction::split(s.clone(), day("2020-08-31"), 4.0, "import", 0).unwrap(),
            CorporateAction::dividend(s, day("2020-11-06"), 0.205, "import", 0).unwrap(),
        ]
    }

    fn midnight(d: NaiveDate) -> i64 {
        effective_time(d, Interval::D1, Calendar::UsEquity)
    }

    #[test]
    fn modes_and_as_of_pick_the_events() {
        let events = aapl();
        let close = |_: &CorporateAction| Some(119.03);
        let pick = |a: Adjustment| {
            plan(&events, &a, midnight, close)
                .unwrap()
                .1
                .iter()
                .map(|a| a.event.kind)
                .collect::<Vec<_>>()
        };
        assert!(pick(Adjustment::NONE).is_empty());
        assert_eq!(
            pick(Adjustment::new(Adjust::Splits, None)),
            [ActionKind::Split]
        );
        assert_eq!(
            pick(Adjustment::new(Adjust::All, None)),
            [ActionKind::Split, ActionKind::Dividend]
        );
        // The day before the dividend's ex-date a backtest knew only the split.
        assert_eq!(
            pick(Adjustment::new(Adjust::All, Some(day("2020-11-05")))),
            [ActionKind::Split]
        );
        assert_eq!(
            pick(Adjustment::new(Adjust::All, Some(day("2020-11-06")))).len(),
            2
        );
        assert!(pick(Adjustment::new(Adjust::All, Some(day("2020-08-30")))).is_empty());
    }

    #[test]
    fn a_dividend_without_a_bar_before_it_changes_nothing_and_a_bad_one_is_refused() {
        let events = aapl();
        let all = Adjustment::new(Adjust::All, None);
        let (_, applied) = plan(&events, &all, midnight, |_| None).unwrap();
        assert_eq!(applied.len(), 1, "only the split");
        let err = plan(&events, &all, midnight, |_| Some(0.2)).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("AAPL 2020-11-06 dividend") && text.contains("previous close 0.2"),
            "{text}"
        );
    }

    #[test]
    fn applied_events_read_as_one_line() {
        let (_, applied) = plan(
            &aapl(),
            &Adjustment::new(Adjust::All, None),
            midnight,
            |_| Some(119.03),
        )
        .unwrap();
        assert_eq!(
            applied[0].to_string(),
            "AAPL 2020-08-31 split ratio=4 factor=0.25"
        );
        assert_eq!(
            applied[1].to_string(),
            "AAPL 2020-11-06 dividend amount=0.205 close=119.03 factor=0.998277745"
        );
    }

    #[test]
    fn intraday_events_take_effect_at_the_start_of_the_new_york_day() {
        let d = day("2020-08-31");
        // 00:00 New York on 2020-08-31 is 04:00 UTC (summer time).
        assert_eq!(
            effective_time(d, Interval::M1, Calendar::UsEquity),
            midnight(d) + 4 * 3_600_000_000
        );
        assert_eq!(
            effective_time(d, Interval::M1, Calendar::AlwaysOpen),
            midnight(d)
        );
        assert_eq!(
            effective_time(d, Interval::W1, Calendar::UsEquity),
            midnight(d)
        );
    }

    #[test]
    fn bad_parameters_name_what_is_expected() {
        assert!(
            "adjusted"
                .parse::<Adjust>()
                .unwrap_err()
                .contains("none, splits or all")
        );
        assert_eq!("splits".parse::<Adjust>().unwrap(), Adjust::Splits);
        assert!(
            parse_as_of("2020-02-30")
                .unwrap_err()
                .contains("YYYY-MM-DD")
        );
    }

    fn events() -> impl Strategy<Value = Vec<CorporateAction>> {
        let s = Symbol::new("X").unwrap();
        let event = (0i64..60, any::<bool>(), 1u32..8).prop_map(move |(d, split, n)| {
            let date = day("2020-01-01") + chrono::Duration::days(d);
            if split {
                CorporateAction::split(s.clone(), date, f64::from(n), "x", 0).unwrap()
            } else {
                CorporateAction::dividend(s.clone(), date, f64::from(n) / 10.0, "x", 0).unwrap()
            }
        });
        prop::collection::vec(event, 0..10)
    }

    proptest! {
        /// A read as of a date gives every bar exactly the factor of the events up to that date:
        /// adding any event after it changes nothing.
        #[test]
        fn point_in_time_reads_never_use_a_later_event(
            known in events(),
            later in events(),
            as_of_day in 0i64..60,
            bars in prop::collection::vec(0i64..70, 1..30),
        ) {
            let as_of = day("2020-01-01") + chrono::Duration::days(as_of_day);
            let adjustment = Adjustment::new(Adjust::All, Some(as_of));
            let close = |_: &CorporateAction| Some(10.0);
            let (f, applied) = plan(&known, &adjustment, midnight, close).unwrap();
            prop_assert!(applied.iter().all(|a| a.event.ex_date <= as_of));
            let mut all = known.clone();
            all.extend(later.into_iter().filter(|e| e.ex_date > as_of));
            let (g, _) = plan(&all, &adjustment, midnight, close).unwrap();
            let only_known: Vec<_> = known.iter().filter(|e| e.ex_date <= as_of).cloned().collect();
            let (h, _) = plan(&only_known, &Adjustment::new(Adjust::All, None), midnight, close).unwrap();
            for d in bars {
                let ts = midnight(day("2020-01-01") + chrono::Duration::days(d));
                prop_assert_eq!(f.at(ts), g.at(ts));
                prop_assert_eq!(f.at(ts), h.at(ts));
            }
        }
    }
}
