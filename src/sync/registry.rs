//! What the registry and the coverage ledger hold: tracked symbols with their sync status, the
//! ranges fetched per series, rows put in quarantine and the history of job runs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::calendar::Calendar;
use crate::model::{Interval, Symbol};

/// A tracked symbol, as `POST /v1/symbols` registers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SymbolSpec {
    pub symbol: Symbol,
    pub intervals: Vec<Interval>,
    /// The name of a configured provider.
    pub provider: String,
    /// First bar wanted, µs UTC.
    pub since: i64,
    pub calendar: Calendar,
    /// µs UTC.
    pub added_at: i64,
}

/// Where a series is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeriesState {
    /// Registered, never synced.
    New,
    /// Its history is being fetched.
    Backfilling,
    /// Synced successfully within `stale_after`.
    Fresh,
    /// Its last successful sync is older than `stale_after` (only ever computed, see
    /// [`SeriesStatus::effective_state`]).
    Stale,
    /// The last attempt failed; retried at `next_retry`.
    Failing,
}

impl SeriesState {
    pub fn as_str(self) -> &'static str {
        match self {
            SeriesState::New => "new",
            SeriesState::Backfilling => "backfilling",
            SeriesState::Fresh => "fresh",
            SeriesState::Stale => "stale",
            SeriesState::Failing => "failing",
        }
    }
}

/// The sync status of one tracked (symbol, interval).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeriesStatus {
    pub state: SeriesState,
    /// Last successful sync, µs UTC.
    pub last_update: Option<i64>,
    /// Open time of the newest bar stored by a sync, µs UTC.
    pub last_bar: Option<i64>,
    pub last_error: Option<String>,
    /// Consecutive failed attempts.
    pub attempts: u32,
    /// Not retried before this, µs UTC.
    pub next_retry: Option<i64>,
    /// Rows and requests of all syncs so far.
    pub rows_fetched: u64,
    pub requests: u64,
}

impl Default for SeriesStatus {
    fn default() -> Self {
        Self {
            state: SeriesState::New,
            last_update: None,
            last_bar: None,
            last_error: None,
            attempts: 0,
            next_retry: None,
            rows_fetched: 0,
            requests: 0,
        }
    }
}

impl SeriesStatus {
    /// The state to show: a fresh series whose last sync is older than `stale_after` is stale.
    pub fn effective_state(&self, now: i64, stale_after_us: i64) -> SeriesState {
        match (self.state, self.last_update) {
            (SeriesState::Fresh, Some(t)) if now - t > stale_after_us => SeriesState::Stale,
            (SeriesState::Fresh, None) => SeriesState::Stale,
            (s, _) => s,
        }
    }
}

/// A range `[start, end)` (µs UTC) fetched from a provider, with how many bars it held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Covered {
    pub start: i64,
    pub end: i64,
    pub rows: u64,
    pub source: String,
    pub fetched_at: i64,
}

/// A row a provider sent that broke a rule, kept aside with the reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quarantined {
    pub symbol: Symbol,
    pub interval: Interval,
    pub ts: Option<i64>,
    pub open: Option<f64>,
    pub high: Option<f64>,
    pub low: Option<f64>,
    pub close: Option<f64>,
    pub volume: Option<f64>,
    /// The row as received when it could not be read into fields.
    pub raw: Option<String>,
    pub reason: String,
    pub provider: String,
    pub fetched_at: i64,
}

/// One run of a job, for `sync_runs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncRun {
    pub job: String,
    /// µs UTC.
    pub started: i64,
    pub finished: i64,
    /// `ok`, `partial` (some series failed) or `failed`.
    pub outcome: String,
    pub rows: u64,
    pub requests: u64,
    pub error: Option<String>,
}

/// A tracked series: a symbol at one of its intervals.
pub type SeriesId = (Symbol, Interval);

/// Everything the stage 2 sync knows, rebuilt from its log.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncState {
    pub symbols: BTreeMap<Symbol, SymbolSpec>,
    #[serde(with = "entries")]
    pub status: BTreeMap<SeriesId, SeriesStatus>,
    /// Per series, sorted by start; ranges may touch or overlap (a forced refetch).
    #[serde(with = "entries")]
    pub coverage: BTreeMap<SeriesId, Vec<Covered>>,
    /// Oldest first, at most [`MAX_QUARANTINE`].
    pub quarantine: std::collections::VecDeque<Quarantined>,
    /// Oldest first, at most [`MAX_RUNS`].
    pub runs: std::collections::VecDeque<SyncRun>,
    /// Quarantined rows dropped to respect the cap.
    pub quarantine_dropped: u64,
}

/// JSON object keys must be strings: maps keyed by a series are written as lists of pairs.
mod entries {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<K: Serialize, V: Serialize, S: Serializer>(
        map: &BTreeMap<K, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.iter())
    }

    pub(super) fn deserialize<'de, K, V, D>(d: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(d)?.into_iter().collect())
    }
}

/// Quarantine and run history are bounded so the state stays small; the oldest go first.
pub const MAX_QUARANTINE: usize = 100_000;
pub const MAX_RUNS: usize = 10_000;

/// A change to the sync state; commits are lists of these.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Start tracking a symbol, or change how it is tracked.
    Track {
        spec: SymbolSpec,
    },
    /// Stop tracking; with `purge` its coverage is forgotten too (its bars are deleted apart).
    Untrack {
        symbol: Symbol,
        purge: bool,
    },
    Status {
        symbol: Symbol,
        interval: Interval,
        status: SeriesStatus,
    },
    Cover {
        symbol: Symbol,
        interval: Interval,
        range: Covered,
    },
    /// Forget what was fetched in `[start, end)`: the next sync treats it as unknown.
    Forget {
        symbol: Symbol,
        interval: Interval,
        start: i64,
        end: i64,
    },
    Quarantine {
        rows: Vec<Quarantined>,
    },
    Run {
        run: SyncRun,
    },
}

impl SyncState {
    pub fn apply(&mut self, op: &Op) {
        match op {
            Op::Track { spec } => {
                for interval in &spec.intervals {
                    self.status
                        .entry((spec.symbol.clone(), *interval))
                        .or_default();
                }
                // Intervals no longer wanted stop being tracked.
                self.status
                    .retain(|(s, i), _| s != &spec.symbol || spec.intervals.contains(i));
                self.symbols.insert(spec.symbol.clone(), spec.clone());
            }
            Op::Untrack { symbol, purge } => {
                self.symbols.remove(symbol);
                self.status.retain(|(s, _), _| s != symbol);
                if *purge {
                    self.coverage.retain(|(s, _), _| s != symbol);
                }
            }
            Op::Status {
                symbol,
                interval,
                status,
            } => {
                // A status for a series no longer tracked (a race with untrack) is dropped.
                if let Some(s) = self.status.get_mut(&(symbol.clone(), *interval)) {
                    *s = status.clone();
                }
            }
            Op::Cover {
                symbol,
                interval,
                range,
            } => {
                let ranges = self
                    .coverage
                    .entry((symbol.clone(), *interval))
                    .or_default();
                let at = ranges.partition_point(|r| r.start <= range.start);
                ranges.insert(at, range.clone());
            }
            Op::Forget {
                symbol,
                interval,
                start,
                end,
            } => {
                if let Some(ranges) = self.coverage.get_mut(&(symbol.clone(), *interval)) {
                    *ranges = forget(std::mem::take(ranges), *start, *end);
                }
            }
            Op::Quarantine { rows } => {
                self.quarantine.extend(rows.iter().cloned());
                while self.quarantine.len() > MAX_QUARANTINE {
                    self.quarantine.pop_front();
                    self.quarantine_dropped += 1;
                }
            }
            Op::Run { run } => {
                self.runs.push_back(run.clone());
                while self.runs.len() > MAX_RUNS {
                    self.runs.pop_front();
                }
            }
        }
    }

    /// The covered ranges of a series merged into disjoint `[start, end)` spans.
    pub fn covered_spans(&self, id: &SeriesId) -> Vec<(i64, i64)> {
        merge_spans(
            self.coverage
                .get(id)
                .map(|r| r.iter().map(|c| (c.start, c.end)).collect())
                .unwrap_or_default(),
        )
    }
}

/// Cuts `[start, end)` out of the ranges; a range that straddles it keeps the parts outside.
/// The row count stays with the pieces as an upper bound (it cannot be split exactly).
fn forget(ranges: Vec<Covered>, start: i64, end: i64) -> Vec<Covered> {
    let mut out = Vec::with_capacity(ranges.len());
    for r in ranges {
        if r.end <= start || r.start >= end {
            out.push(r);
            continue;
        }
        if r.start < start {
            out.push(Covered {
                end: start,
                ..r.clone()
            });
        }
        if r.end > end {
            out.push(Covered { start: end, ..r });
        }
    }
    out.sort_by_key(|r| r.start);
    out
}

/// Sorts spans and merges those that touch or overlap.
pub fn merge_spans(mut spans: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    spans.retain(|(a, b)| a < b);
    spans.sort_unstable();
    let mut out: Vec<(i64, i64)> = Vec::with_capacity(spans.len());
    for (a, b) in spans {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// `[start, end)` minus the (merged, sorted) spans.
pub fn subtract_spans(start: i64, end: i64, spans: &[(i64, i64)]) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut cursor = start;
    for &(a, b) in spans {
        if b <= cursor {
            continue;
        }
        if a >= end {
            break;
        }
        if a > cursor {
            out.push((cursor, a.min(end)));
        }
        cursor = cursor.max(b);
        if cursor >= end {
            break;
        }
    }
    if cursor < end {
        out.push((cursor, end));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cov(start: i64, end: i64) -> Covered {
        Covered {
            start,
            end,
            rows: 1,
            source: "t".into(),
            fetched_at: 0,
        }
    }

    #[test]
    fn spans_merge_and_subtract() {
        assert_eq!(
            merge_spans(vec![(5, 7), (0, 2), (2, 3), (6, 9), (4, 4)]),
            vec![(0, 3), (5, 9)]
        );
        let spans = merge_spans(vec![(0, 3), (5, 9)]);
        assert_eq!(subtract_spans(0, 10, &spans), vec![(3, 5), (9, 10)]);
        assert_eq!(subtract_spans(1, 2, &spans), vec![]);
        assert_eq!(subtract_spans(-5, 1, &spans), vec![(-5, 0)]);
        assert_eq!(subtract_spans(0, 10, &[]), vec![(0, 10)]);
    }

    #[test]
    fn forget_cuts_a_hole_and_keeps_the_rest() {
        let kept = forget(vec![cov(0, 10), cov(20, 30), cov(40, 50)], 5, 25);
        let spans: Vec<_> = kept.iter().map(|c| (c.start, c.end)).collect();
        assert_eq!(spans, vec![(0, 5), (25, 30), (40, 50)]);
        let kept = forget(vec![cov(0, 100)], 40, 60);
        let spans: Vec<_> = kept.iter().map(|c| (c.start, c.end)).collect();
        assert_eq!(spans, vec![(0, 40), (60, 100)]);
    }

    #[test]
    fn track_untrack_and_statuses() {
        let sym = Symbol::new("AAPL").unwrap();
        let spec = SymbolSpec {
            symbol: sym.clone(),
            intervals: vec![Interval::D1, Interval::M1],
            provider: "yahoo".into(),
            since: 0,
            calendar: Calendar::UsEquity,
            added_at: 0,
        };
        let mut s = SyncState::default();
        s.apply(&Op::Track { spec: spec.clone() });
        assert_eq!(s.status.len(), 2);
        s.apply(&Op::Cover {
            symbol: sym.clone(),
            interval: Interval::D1,
            range: cov(0, 10),
        });
        // Re-tracking with fewer intervals drops the others' status but keeps coverage.
        s.apply(&Op::Track {
            spec: SymbolSpec {
                intervals: vec![Interval::D1],
                ..spec
            },
        });
        assert_eq!(s.status.len(), 1);
        s.apply(&Op::Untrack {
            symbol: sym.clone(),
            purge: false,
        });
        assert!(s.status.is_empty());
        assert_eq!(s.covered_spans(&(sym.clone(), Interval::D1)), vec![(0, 10)]);
        s.apply(&Op::Untrack {
            symbol: sym.clone(),
            purge: true,
        });
        assert!(s.coverage.is_empty());
    }
}
