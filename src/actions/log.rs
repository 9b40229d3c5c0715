//! The durable form of the `corporate_actions` table, under `corporate_actions/` in the store.
//!
//! Version `n` of the table is commit `n` of a log: `corporate_actions/_log/<n, 20 digits>.json`
//! holds the events that commit put (by key), created with `PutMode::Create`, so of two writers
//! racing for one number exactly one wins. Every [`CHECKPOINT_EVERY`] versions a checkpoint
//! (`corporate_actions/_checkpoint/<n>.json`, also create-only) holds the whole table at `n`,
//! and once it is written `corporate_actions/_last_checkpoint` is pointed at it. Loading reads
//! that pointer, the checkpoint it names, then the commits after it by number until one is
//! missing: no listing (as the bars catalog). Only GC lists the prefix, and a pointer naming a
//! checkpoint that is gone (a rare race with GC) makes the loader list instead.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use object_store::ObjectMeta;
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use super::{ActionKind, ActionSet, CorporateAction, parse_ex_date};
use crate::model::Symbol;

/// Everything of the table lives under this prefix of the store.
pub(super) const PREFIX: &str = "corporate_actions";
const LOG_DIR: &str = "corporate_actions/_log";
const CHECKPOINT_DIR: &str = "corporate_actions/_checkpoint";
/// The pointer at the newest checkpoint: `{"version": n}`, overwritten after each checkpoint.
pub(super) const LAST_CHECKPOINT: &str = "corporate_actions/_last_checkpoint";
/// A checkpoint of the whole table every this many versions; loading reads at most this many
/// commits after it.
pub(super) const CHECKPOINT_EVERY: u64 = 50;

pub(super) fn log_path(version: u64) -> Path {
    Path::from(format!("{LOG_DIR}/{version:020}.json"))
}

pub(super) fn checkpoint_path(version: u64) -> Path {
    Path::from(format!("{CHECKPOINT_DIR}/{version:020}.json"))
}

/// One event as stored. Read back, it must still pass the rules it was written under.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Record {
    symbol: Symbol,
    ex_date: String,
    kind: ActionKind,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "exact_f64")]
    ratio: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "exact_f64")]
    amount: Option<f64>,
    source: String,
    recorded_at: i64,
}

/// Ratios and amounts as JSON strings of their shortest exact decimal: serde_json (built
/// without `float_roundtrip`, which would rebuild half the dependency tree) may read a JSON
/// number back one ULP off, and a stored value must read back bit for bit.
mod exact_f64 {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub(super) fn serialize<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(x) => s.serialize_str(&x.to_string()),
            None => s.serialize_none(),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(text) => text
                .parse::<f64>()
                .map(Some)
                .map_err(|_| D::Error::custom(format!("{text:?} is not a number"))),
            None => Ok(None),
        }
    }
}

impl Record {
    pub(super) fn of(e: &CorporateAction) -> Self {
        Record {
            symbol: e.symbol.clone(),
            ex_date: e.ex_date.format("%Y-%m-%d").to_string(),
            kind: e.kind,
            ratio: e.ratio,
            amount: e.amount,
            source: e.source.clone(),
            recorded_at: e.recorded_at,
        }
    }

    /// The event, or what makes it one no writer could have stored.
    pub(super) fn into_event(self) -> Result<CorporateAction, String> {
        let ex_date = parse_ex_date(&self.ex_date).map_err(|e| e.to_string())?;
        let valid = match self.kind {
            ActionKind::Split => {
                self.amount.is_none() && self.ratio.is_some_and(|r| r.is_finite() && r > 0.0)
            }
            ActionKind::Dividend => {
                self.ratio.is_none() && self.amount.is_some_and(|a| a.is_finite() && a >= 0.0)
            }
        };
        if !valid {
            return Err(format!(
                "{} {} {}: ratio {:?} / amount {:?} break the rules of a {}",
                self.symbol, self.ex_date, self.kind, self.ratio, self.amount, self.kind
            ));
        }
        Ok(CorporateAction {
            symbol: self.symbol,
            ex_date,
            kind: self.kind,
            ratio: self.ratio,
            amount: self.amount,
            source: self.source,
            recorded_at: self.recorded_at,
        })
    }
}

/// Commit `version`: the events it put, each replacing the event of its key.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Commit {
    pub version: u64,
    /// µs UTC.
    pub committed_at: i64,
    pub put: Vec<Record>,
}

/// The whole table at `version`.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Checkpoint {
    pub version: u64,
    pub events: Vec<Record>,
}

impl Checkpoint {
    pub(super) fn of(version: u64, set: &ActionSet) -> Self {
        Checkpoint {
            version,
            events: set.iter().map(Record::of).collect(),
        }
    }
}

/// The content of [`LAST_CHECKPOINT`].
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct LastCheckpoint {
    pub version: u64,
}

/// What one LIST of the prefix shows: log entries and checkpoints by version.
#[derive(Debug, Default)]
pub(super) struct Listing {
    pub log: BTreeMap<u64, ObjectMeta>,
    pub checkpoints: BTreeMap<u64, ObjectMeta>,
    /// Objects under the prefix that are neither (reported by nobody, touched by nobody).
    pub other: Vec<String>,
}

impl Listing {
    pub(super) fn add(&mut self, meta: ObjectMeta) {
        let location = meta.location.to_string();
        let version = |dir: &str| {
            location
                .strip_prefix(dir)?
                .strip_prefix('/')?
                .strip_suffix(".json")
                .filter(|n| n.len() == 20)?
                .parse::<u64>()
                .ok()
        };
        if let Some(v) = version(LOG_DIR) {
            self.log.insert(v, meta);
        } else if let Some(v) = version(CHECKPOINT_DIR) {
            self.checkpoints.insert(v, meta);
        } else {
            self.other.push(location);
        }
    }

    /// The first version after `version` missing from the log while a later one is there:
    /// (missing, the next one there).
    pub(super) fn gap_after(&self, version: u64) -> Option<(u64, u64)> {
        (version + 1..)
            .zip(self.log.range(version + 1..).map(|(v, _)| *v))
            .find(|(expect, v)| v != expect)
    }

    /// What GC may delete: every log entry and checkpoint older than the newest checkpoint
    /// written at least `grace` before `now` (a reader past it needs none of them) and not
    /// after `pointer`, the checkpoint loaders start from (they need every commit after it);
    /// never the newest log entry.
    pub(super) fn collectable(
        &self,
        now: DateTime<Utc>,
        grace: chrono::Duration,
        pointer: u64,
    ) -> Vec<Path> {
        let Some(floor) = self
            .checkpoints
            .range(..=pointer)
            .rev()
            .find(|(_, m)| {
                now.checked_sub_signed(grace)
                    .is_some_and(|cutoff| m.last_modified <= cutoff)
            })
            .map(|(v, _)| *v)
        else {
            return Vec::new();
        };
        let newest_log = self.log.keys().next_back().copied();
        let log = self
            .log
            .iter()
            .filter(|(v, _)| **v <= floor && Some(**v) != newest_log);
        let checkpoints = self.checkpoints.range(..floor);
        log.chain(checkpoints)
            .map(|(_, m)| m.location.clone())
            .collect()
    }
}

/// The table after `put`: each event replaces the one of its key (a log entry is applied as
/// written; the merge rules ran before it was committed).
pub(super) fn apply(set: &ActionSet, put: Vec<CorporateAction>) -> ActionSet {
    let mut next = set.clone();
    for event in put {
        let list = next.by_symbol.entry(event.symbol.clone()).or_default();
        match list.binary_search_by(|e| (e.ex_date, e.kind).cmp(&(event.ex_date, event.kind))) {
            Ok(i) => list[i] = event,
            Err(i) => list.insert(i, event),
        }
    }
    next
}

/// The events of `after` that differ from `before` among the keys of `incoming`: what a commit
/// of a merge must record.
pub(super) fn changed(
    before: &ActionSet,
    after: &ActionSet,
    incoming: &[CorporateAction],
) -> Vec<CorporateAction> {
    let find = |set: &ActionSet, e: &CorporateAction| -> Option<CorporateAction> {
        let list = set.for_symbol(&e.symbol);
        list.binary_search_by(|x| (x.ex_date, x.kind).cmp(&(e.ex_date, e.kind)))
            .ok()
            .map(|i| list[i].clone())
    };
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<CorporateAction> = Vec::new();
    for e in incoming {
        if !seen.insert(e.key()) {
            continue;
        }
        let Some(now) = find(after, e) else { continue };
        if find(before, e).as_ref() != Some(&now) {
            out.push(now);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_read_back_bit_for_bit() {
        // Values serde_json's default number parser is known to read one ULP off.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut amounts = vec![0.9400000000000001, 0.1 + 0.2, 118.646918312, 1e-7 / 3.0];
        for _ in 0..2000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            amounts.push((x >> 11) as f64 / (1u64 << 53) as f64 * 1000.0);
        }
        let day = chrono::NaiveDate::from_ymd_opt(2020, 11, 6).unwrap();
        for amount in amounts {
            let event =
                CorporateAction::dividend(Symbol::new("A").unwrap(), day, amount, "x", 0).unwrap();
            let json = serde_json::to_string(&Record::of(&event)).unwrap();
            let back: Record = serde_json::from_str(&json).unwrap();
            let back = back.into_event().unwrap();
            assert_eq!(back.amount.unwrap().to_bits(), amount.to_bits(), "{json}");
        }
    }

    fn meta(path: Path, age_s: i64, now: DateTime<Utc>) -> ObjectMeta {
        ObjectMeta {
            location: path,
            last_modified: now - chrono::Duration::seconds(age_s),
            size: 1,
            e_tag: None,
            version: None,
        }
    }

    #[test]
    fn names_parse_and_strays_are_kept_apart() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let mut l = Listing::default();
        l.add(meta(log_path(3), 0, now));
        l.add(meta(checkpoint_path(50), 0, now));
        l.add(meta(Path::from("corporate_actions/_log/3.json"), 0, now));
        l.add(meta(Path::from("corporate_actions/notes.txt"), 0, now));
        assert_eq!(l.log.keys().collect::<Vec<_>>(), [&3]);
        assert_eq!(l.checkpoints.keys().collect::<Vec<_>>(), [&50]);
        assert_eq!(l.other.len(), 2);
    }

    #[test]
    fn gc_keeps_what_a_reader_may_need() {
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let mut l = Listing::default();
        for v in 1..=120 {
            l.add(meta(log_path(v), 1000, now));
        }
        l.add(meta(checkpoint_path(50), 900, now));
        l.add(meta(checkpoint_path(100), 10, now));
        let grace = chrono::Duration::seconds(60);
        let gone = l.collectable(now, grace, 100);
        // The checkpoint at 100 is younger than the grace: a reader at 60 still follows the log.
        assert_eq!(gone.len(), 50, "{gone:?}");
        assert!(gone.contains(&log_path(50)) && !gone.contains(&log_path(51)));
        assert!(!gone.contains(&checkpoint_path(50)));
        // Past the grace, everything before the newest checkpoint goes.
        let gone = l.collectable(now, chrono::Duration::seconds(5), 100);
        assert_eq!(gone.len(), 101);
        assert!(gone.contains(&checkpoint_path(50)) && !gone.contains(&checkpoint_path(100)));
        assert!(!gone.contains(&log_path(101)));
        // Loaders start from the pointer: nothing after the checkpoint it names goes.
        let gone = l.collectable(now, chrono::Duration::seconds(5), 50);
        assert_eq!(gone.len(), 50);
        assert!(gone.contains(&log_path(50)) && !gone.contains(&log_path(51)));
        assert!(
            l.collectable(now, chrono::Duration::seconds(5), 0)
                .is_empty()
        );
        // Without a checkpoint old enough, nothing.
        assert!(
            l.collectable(now, chrono::Duration::seconds(5000), 100)
                .is_empty()
        );
        assert!(l.collectable(now, chrono::Duration::MAX, 100).is_empty());
    }
}
