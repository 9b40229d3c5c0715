//! One corporate action: a split or a cash dividend of one symbol on one ex-date.
//!
//! Stored bars are as traded (raw); these events are what turns them into adjusted prices when
//! reading. Every entrance (provider, import, CLI, HTTP) builds events through
//! [`CorporateAction::split`] / [`CorporateAction::dividend`], which apply the rules below.

use std::fmt;
use std::str::FromStr;

use chrono::NaiveDate;

use crate::model::Symbol;
use crate::model::time::parse_date;

/// What kind of action an event is; the key of an event is (symbol, ex_date, kind).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Split,
    Dividend,
}

impl ActionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionKind::Split => "split",
            ActionKind::Dividend => "dividend",
        }
    }
}

impl fmt::Display for ActionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ActionKind {
    type Err = ActionRule;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "split" => Ok(ActionKind::Split),
            "dividend" => Ok(ActionKind::Dividend),
            other => Err(ActionRule::UnknownKind(other.to_string())),
        }
    }
}

/// A rule an event broke. The message names the rule; callers add where (file and line, or
/// request row).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ActionRule {
    #[error("unknown kind {0:?} (expected split or dividend)")]
    UnknownKind(String),
    #[error("split ratio {0} must be a finite number above 0 (new shares per old: 4 for 4:1)")]
    BadRatio(f64),
    #[error("dividend amount {0} must be a finite number >= 0")]
    BadAmount(f64),
    #[error("dividend amount {amount} is not below the previous close {close}")]
    AmountNotBelowClose { amount: f64, close: f64 },
    #[error("ex_date {0:?} is not a date (expected YYYY-MM-DD)")]
    BadDate(String),
}

/// One event. A split has `ratio` (new shares per old) and no `amount`; a dividend has `amount`
/// (cash per share) and no `ratio`.
#[derive(Debug, Clone, PartialEq)]
pub struct CorporateAction {
    pub symbol: Symbol,
    pub ex_date: NaiveDate,
    pub kind: ActionKind,
    pub ratio: Option<f64>,
    pub amount: Option<f64>,
    /// Provider name (`yahoo`, `polygon`, ...) or `import`.
    pub source: String,
    /// When tickvault learned of it, µs UTC.
    pub recorded_at: i64,
}

impl CorporateAction {
    /// A split of `ratio` new shares per old, rounded to the nearest simple ratio (vendor noise
    /// such as 7.00000700001 for 7:1).
    pub fn split(
        symbol: Symbol,
        ex_date: NaiveDate,
        ratio: f64,
        source: &str,
        recorded_at: i64,
    ) -> Result<Self, ActionRule> {
        if !ratio.is_finite() || ratio <= 0.0 {
            return Err(ActionRule::BadRatio(ratio));
        }
        Ok(CorporateAction {
            symbol,
            ex_date,
            kind: ActionKind::Split,
            ratio: Some(simple_ratio(ratio)),
            amount: None,
            source: source.to_string(),
            recorded_at,
        })
    }

    /// A cash dividend of `amount` per share. Whether it is below the previous close is checked
    /// where the bars are known ([`check_amount_below_close`]).
    pub fn dividend(
        symbol: Symbol,
        ex_date: NaiveDate,
        amount: f64,
        source: &str,
        recorded_at: i64,
    ) -> Result<Self, ActionRule> {
        if !amount.is_finite() || amount < 0.0 {
            return Err(ActionRule::BadAmount(amount));
        }
        Ok(CorporateAction {
            symbol,
            ex_date,
            kind: ActionKind::Dividend,
            ratio: None,
            amount: Some(amount),
            source: source.to_string(),
            recorded_at,
        })
    }

    /// The upsert key.
    pub fn key(&self) -> (&Symbol, NaiveDate, ActionKind) {
        (&self.symbol, self.ex_date, self.kind)
    }

    /// Whether two events for the same key say the same thing (source and time aside).
    pub fn same_values(&self, other: &CorporateAction) -> bool {
        fn close(a: Option<f64>, b: Option<f64>) -> bool {
            match (a, b) {
                (Some(a), Some(b)) => (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0),
                (None, None) => true,
                _ => false,
            }
        }
        self.kind == other.kind
            && close(self.ratio, other.ratio)
            && close(self.amount, other.amount)
    }
}

/// The dividend rule that needs the bars: the amount must be below the raw close of the last
/// session before the ex-date (else the back-adjustment factor 1 - amount/close is <= 0).
pub fn check_amount_below_close(amount: f64, previous_close: f64) -> Result<(), ActionRule> {
    if amount >= previous_close {
        return Err(ActionRule::AmountNotBelowClose {
            amount,
            close: previous_close,
        });
    }
    Ok(())
}

/// Parses an ex-date written as `YYYY-MM-DD`.
pub fn parse_ex_date(s: &str) -> Result<NaiveDate, ActionRule> {
    parse_date(s).ok_or_else(|| ActionRule::BadDate(s.to_string()))
}

/// The nearest ratio p/q with q <= 100 when it is within 1e-5 (relative) of `x`, else `x`.
/// Vendors write 7:1 as 7.00000700001 and 1:3 as 0.333333; a split is always a ratio of small
/// whole numbers, so rounding makes two sources agree and keeps factors exact.
pub fn simple_ratio(x: f64) -> f64 {
    // Real splits are ratios of small numbers (3:2, 7:1, 1:35); a larger bound would round
    // nearly every number to something.
    const MAX_DENOMINATOR: u64 = 100;
    const TOLERANCE: f64 = 1e-5;
    // Continued-fraction convergents give the best rational approximations in order.
    let (mut p0, mut q0, mut p1, mut q1) = (0u64, 1u64, 1u64, 0u64);
    let mut rest = x;
    for _ in 0..32 {
        let a = rest.floor();
        if a > 1e12 {
            break;
        }
        let a_int = a as u64;
        let (p2, q2) = (a_int * p1 + p0, a_int * q1 + q0);
        if q2 > MAX_DENOMINATOR {
            break;
        }
        (p0, q0, p1, q1) = (p1, q1, p2, q2);
        let candidate = p1 as f64 / q1 as f64;
        if ((candidate - x) / x).abs() <= TOLERANCE {
            return candidate;
        }
        let frac = rest - a;
        if frac <= f64::EPSILON {
            break;
        }
        rest = 1.0 / frac;
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendor_noise_rounds_to_the_simple_ratio() {
        assert_eq!(simple_ratio(7.00000700001), 7.0);
        assert_eq!(simple_ratio(4.0), 4.0);
        assert_eq!(simple_ratio(0.1), 0.1);
        assert_eq!(simple_ratio(0.333333), 1.0 / 3.0);
        assert_eq!(simple_ratio(1.5), 1.5);
        assert_eq!(simple_ratio(1.0000001), 1.0);
        // Not near any small ratio: kept as given.
        assert_eq!(simple_ratio(std::f64::consts::PI), std::f64::consts::PI);
    }

    #[test]
    fn bad_events_are_refused_with_the_rule() {
        let s = Symbol::new("AAPL").unwrap();
        let d = NaiveDate::from_ymd_opt(2020, 8, 31).unwrap();
        for bad in [0.0, -4.0, f64::NAN, f64::INFINITY] {
            assert!(matches!(
                CorporateAction::split(s.clone(), d, bad, "import", 0),
                Err(ActionRule::BadRatio(_))
            ));
        }
        assert!(CorporateAction::dividend(s.clone(), d, -0.1, "import", 0).is_err());
        assert!(CorporateAction::dividend(s, d, 0.205, "import", 0).is_ok());
        assert!(check_amount_below_close(130.0, 129.0).is_err());
        assert!(check_amount_below_close(0.205, 129.0).is_ok());
        assert!("merger".parse::<ActionKind>().is_err());
        assert!(parse_ex_date("2020-13-01").is_err());
        assert_eq!(parse_ex_date("2020-08-31").unwrap(), d);
    }
}
