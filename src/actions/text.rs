//! How events and disagreements read in messages and logs.

use std::fmt;

use super::{ActionKind, CorporateAction, Disagreement};

/// What an event says: `split 4` or `dividend 0.205`.
pub struct Value<'a>(pub &'a CorporateAction);

impl fmt::Display for Value<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self.0;
        match e.kind {
            ActionKind::Split => write!(f, "split {}", e.ratio.unwrap_or(f64::NAN)),
            ActionKind::Dividend => write!(f, "dividend {}", e.amount.unwrap_or(f64::NAN)),
        }
    }
}

impl fmt::Display for Disagreement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (s, i) = (&self.stored, &self.incoming);
        write!(
            f,
            "{} {}: {} says {}, {} says {}; ",
            s.symbol,
            s.ex_date,
            s.source,
            Value(s),
            i.source,
            Value(i),
        )?;
        if self.replaced {
            write!(f, "replaced by the {} value", i.source)
        } else {
            write!(f, "kept the {} value", s.source)
        }
    }
}
