//! Corporate actions (splits and cash dividends) as data: the `corporate_actions` table.
//!
//! Bars are stored as traded; an adjusted read multiplies them by factors built from these
//! events when reading. [`ActionSet`] is one immutable version of the table in memory, merged
//! by key (symbol, ex_date, kind).

mod event;
pub mod input;
mod log;
pub mod sql;
pub mod table;
mod text;

use std::collections::BTreeMap;

pub use event::{
    ActionKind, ActionRule, CorporateAction, check_amount_below_close, parse_ex_date, simple_ratio,
};

pub use input::{Refused, SourcedEvent};
pub use table::ActionsTable;
pub use text::Value;

use crate::model::Symbol;

/// Source name of events a user imported (CLI, HTTP, import of a CSV with event columns).
pub const SOURCE_IMPORT: &str = "import";

/// One version of the table: every symbol's events in ex-date order, then kind.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ActionSet {
    by_symbol: BTreeMap<Symbol, Vec<CorporateAction>>,
}

/// Two sources that say different things about one event. The stored event is kept unless the
/// incoming one is the user's own (`import`).
#[derive(Debug, Clone, PartialEq)]
pub struct Disagreement {
    pub stored: CorporateAction,
    pub incoming: CorporateAction,
    /// Whether the incoming event replaced the stored one.
    pub replaced: bool,
}

/// What merging a batch of events into a set did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Merged {
    pub set: ActionSet,
    pub inserted: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub disagreements: Vec<Disagreement>,
}

impl Merged {
    /// Whether the set differs from the one merged into (a new version must be committed).
    pub fn changed(&self) -> bool {
        self.inserted + self.updated > 0
    }
}

impl ActionSet {
    pub fn from_events(events: impl IntoIterator<Item = CorporateAction>) -> Self {
        ActionSet::default().merge(events).set
    }

    /// The events of `symbol`, in ex-date order.
    pub fn for_symbol(&self, symbol: &Symbol) -> &[CorporateAction] {
        self.by_symbol.get(symbol).map(Vec::as_slice).unwrap_or(&[])
    }

    /// Every event, by symbol then ex-date.
    pub fn iter(&self) -> impl Iterator<Item = &CorporateAction> {
        self.by_symbol.values().flatten()
    }

    pub fn len(&self) -> usize {
        self.by_symbol.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_symbol.is_empty()
    }

    /// Upserts `events` by key. Same values: unchanged (the first record stays). Same source,
    /// new values: the source corrected itself, updated. Another source, new values: reported
    /// as a [`Disagreement`]; replaced only when the incoming event is the user's own import.
    pub fn merge(&self, events: impl IntoIterator<Item = CorporateAction>) -> Merged {
        let mut out = Merged {
            set: self.clone(),
            ..Merged::default()
        };
        for event in events {
            let list = out.set.by_symbol.entry(event.symbol.clone()).or_default();
            let at =
                list.binary_search_by(|e| (e.ex_date, e.kind).cmp(&(event.ex_date, event.kind)));
            match at {
                Err(i) => {
                    list.insert(i, event);
                    out.inserted += 1;
                }
                Ok(i) if list[i].same_values(&event) => out.unchanged += 1,
                Ok(i) if list[i].source == event.source => {
                    list[i] = event;
                    out.updated += 1;
                }
                Ok(i) => {
                    let replaced = event.source == SOURCE_IMPORT;
                    out.disagreements.push(Disagreement {
                        stored: list[i].clone(),
                        incoming: event.clone(),
                        replaced,
                    });
                    if replaced {
                        list[i] = event;
                        out.updated += 1;
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use chrono::NaiveDate;

    use super::*;

    fn day(s: &str) -> NaiveDate {
        parse_ex_date(s).unwrap()
    }

    fn split(sym: &str, date: &str, ratio: f64, source: &str) -> CorporateAction {
        CorporateAction::split(Symbol::new(sym).unwrap(), day(date), ratio, source, 0).unwrap()
    }

    #[test]
    fn merge_upserts_by_key_and_reports_disagreements() {
        let set = ActionSet::from_events([
            split("SHOP", "2022-06-29", 10.0, "polygon"),
            split("SHOP", "2022-06-29", 10.0, "polygon"),
        ]);
        assert_eq!(set.len(), 1, "a duplicate is one event");

        let m = set.merge([split("SHOP", "2022-06-29", 5.0, "yahoo")]);
        assert!(!m.changed());
        assert_eq!(m.disagreements.len(), 1);
        assert!(!m.disagreements[0].replaced);
        assert_eq!(
            m.set.for_symbol(&Symbol::new("SHOP").unwrap())[0].ratio,
            Some(10.0)
        );

        let m = set.merge([split("SHOP", "2022-06-29", 5.0, SOURCE_IMPORT)]);
        assert!(m.changed() && m.disagreements[0].replaced);
        assert_eq!(
            m.set.for_symbol(&Symbol::new("SHOP").unwrap())[0].ratio,
            Some(5.0)
        );

        let m = set.merge([split("SHOP", "2022-06-29", 5.0, "polygon")]);
        assert_eq!(
            (m.updated, m.disagreements.len()),
            (1, 0),
            "a source corrects itself"
        );
    }

    #[test]
    fn events_are_kept_in_ex_date_order() {
        let set = ActionSet::from_events([
            split("A", "2024-06-10", 10.0, "x"),
            split("A", "2021-07-20", 4.0, "x"),
        ]);
        let dates: Vec<_> = set
            .for_symbol(&Symbol::new("A").unwrap())
            .iter()
            .map(|e| e.ex_date)
            .collect();
        assert_eq!(dates, vec![day("2021-07-20"), day("2024-06-10")]);
    }
}
