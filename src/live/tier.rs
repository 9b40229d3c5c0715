//! The in-memory tier: recent bars per series, sorted by ts with one row per key, and the latest
//! price per symbol.
//!
//! Rows live in generations. Writes go to the active generation; a transfer freezes it (a new
//! empty one takes its place) and drops the frozen one only after its rows are committed to
//! Parquet. Readers see active over frozen over Parquet.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;

use crate::batch::{SeriesBatch, SeriesKey, sort_dedup, ts_column};
use crate::model::{FILE_SCHEMA, Interval, Symbol};
use crate::wal::Lsn;

/// Rough memory of one row in the tier: eight 8-byte values plus validity and chunk overhead.
pub const ROW_BYTES: usize = 80;

/// Chunks are merged (amortised, like a binary counter) up to this many rows.
const CHUNK_ROWS: usize = 64 * 1024;

/// One series' rows: chunks sorted by ts, not overlapping, each sorted with unique ts.
#[derive(Debug, Clone, Default)]
pub struct SeriesRows {
    chunks: Vec<RecordBatch>,
    rows: usize,
}

fn bounds(batch: &RecordBatch) -> (i64, i64) {
    let ts = ts_column(batch).values();
    (ts[0], ts[ts.len() - 1])
}

impl SeriesRows {
    /// Upserts sorted, unique rows: a ts already present takes the new values.
    fn upsert(&mut self, rows: RecordBatch) {
        if rows.num_rows() == 0 {
            return;
        }
        let (new_min, _) = bounds(&rows);
        // The first chunk the new rows overlap or precede; the common case is an append.
        let from = self.chunks.partition_point(|c| bounds(c).1 < new_min);
        if from == self.chunks.len() {
            self.rows += rows.num_rows();
            self.chunks.push(rows);
        } else {
            let mut inputs: Vec<RecordBatch> = self.chunks.drain(from..).collect();
            inputs.push(rows);
            let merged = sort_dedup(&inputs);
            self.rows = self.chunks.iter().map(|c| c.num_rows()).sum::<usize>() + merged.num_rows();
            self.chunks.push(merged);
        }
        self.merge_tail();
    }

    /// Keeps the chunk count logarithmic: merges the last two while the older is not much
    /// bigger than the newer (non-overlapping, so a plain concatenation).
    fn merge_tail(&mut self) {
        while let [.., a, b] = self.chunks.as_slice() {
            let (a_rows, b_rows) = (a.num_rows(), b.num_rows());
            if a_rows > 2 * b_rows || a_rows + b_rows > CHUNK_ROWS {
                break;
            }
            let b = self.chunks.pop().expect("two chunks");
            let a = self.chunks.pop().expect("two chunks");
            self.chunks
                .push(concat_batches(&FILE_SCHEMA, [&a, &b]).expect("same schema"));
        }
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn min_ts(&self) -> Option<i64> {
        self.chunks.first().map(|c| bounds(c).0)
    }

    pub fn max_ts(&self) -> Option<i64> {
        self.chunks.last().map(|c| bounds(c).1)
    }

    pub fn chunks(&self) -> &[RecordBatch] {
        &self.chunks
    }

    /// Whether a row with this ts is held.
    fn holds(&self, ts: i64) -> bool {
        let i = self.chunks.partition_point(|c| bounds(c).1 < ts);
        self.chunks
            .get(i)
            .is_some_and(|c| ts_column(c).values().binary_search(&ts).is_ok())
    }
}

/// The rows of one generation.
#[derive(Debug, Default)]
pub struct Generation {
    pub series: BTreeMap<SeriesKey, SeriesRows>,
    pub rows: usize,
    /// The highest LSN whose rows are in this generation.
    pub max_lsn: Lsn,
}

/// The latest price of a symbol and the bar it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Latest {
    pub interval: Interval,
    /// The bar's open time (µs).
    pub ts: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
    /// When the bar was written (µs since the epoch).
    pub updated_at: i64,
}

impl Latest {
    /// When the bar ends: later ends are newer prices; at the same end the finer bar wins.
    fn rank(&self) -> (i64, std::cmp::Reverse<i64>) {
        (
            self.ts + self.interval.micros(),
            std::cmp::Reverse(self.interval.micros()),
        )
    }
}

/// A series as a reader sees it: its rows across generations, newest winning, as sorted batches.
#[derive(Debug, Clone)]
pub struct SeriesView {
    pub key: SeriesKey,
    pub rows: usize,
    pub batches: Vec<RecordBatch>,
}

/// Everything the tier holds, behind one lock.
#[derive(Debug, Default)]
pub struct TierState {
    pub active: Generation,
    /// Generations being transferred, oldest first.
    pub frozen: Vec<Arc<Generation>>,
    pub latest: HashMap<Symbol, Latest>,
}

impl TierState {
    /// Applies one acknowledged write (already validated; rows per series in write order).
    pub fn apply(&mut self, lsn: Lsn, series: Vec<SeriesBatch>, now_us: i64) {
        for s in series {
            let rows = sort_dedup(std::slice::from_ref(&s.batch));
            if rows.num_rows() == 0 {
                continue;
            }
            self.note_latest(&s.key, &rows, now_us);
            let entry = self.active.series.entry(s.key).or_default();
            let before = entry.rows();
            entry.upsert(rows);
            self.active.rows = self.active.rows + entry.rows() - before;
        }
        self.active.max_lsn = self.active.max_lsn.max(lsn);
    }

    fn note_latest(&mut self, key: &SeriesKey, rows: &RecordBatch, now_us: i64) {
        let last = rows.num_rows() - 1;
        let value = |i: usize| {
            rows.column(i)
                .as_any()
                .downcast_ref::<arrow::array::Float64Array>()
                .expect("float column")
                .value(last)
        };
        let candidate = Latest {
            interval: key.interval,
            ts: ts_column(rows).value(last),
            open: value(1),
            high: value(2),
            low: value(3),
            close: value(4),
            volume: value(5),
            updated_at: now_us,
        };
        match self.latest.get(&key.symbol) {
            Some(current) if current.rank() > candidate.rank() => {}
            _ => {
                self.latest.insert(key.symbol.clone(), candidate);
            }
        }
    }

    /// After `[start, end)` of `key`'s series was deleted from Parquet: drops the symbol's latest
    /// price if it came from a deleted bar (one the tier does not hold again since), so
    /// `latest` never shows a bar that is gone. The symbol is back with its next write.
    pub fn forget_deleted(&mut self, key: &SeriesKey, start: i64, end: i64) {
        let Some(latest) = self.latest.get(&key.symbol) else {
            return;
        };
        if latest.interval != key.interval || !(start..end).contains(&latest.ts) {
            return;
        }
        let held = self
            .frozen
            .iter()
            .map(|g| g.as_ref())
            .chain([&self.active])
            .filter_map(|g| g.series.get(key))
            .any(|rows| rows.holds(latest.ts));
        if !held {
            self.latest.remove(&key.symbol);
        }
    }

    /// Freezes the active generation for a transfer; returns every frozen generation.
    pub fn freeze(&mut self, upto: Lsn) -> Vec<Arc<Generation>> {
        let mut active = std::mem::take(&mut self.active);
        active.max_lsn = active.max_lsn.max(upto);
        if active.rows > 0 {
            self.frozen.push(Arc::new(active));
        }
        self.active.max_lsn = upto;
        self.frozen.clone()
    }

    /// Drops frozen generations once their rows are committed to Parquet.
    pub fn release(&mut self, transferred: &[Arc<Generation>]) {
        self.frozen
            .retain(|g| !transferred.iter().any(|t| Arc::ptr_eq(g, t)));
    }

    pub fn rows(&self) -> usize {
        self.active.rows + self.frozen.iter().map(|g| g.rows).sum::<usize>()
    }

    pub fn bytes(&self) -> usize {
        self.rows() * ROW_BYTES
    }

    pub fn series_count(&self) -> usize {
        let mut keys: Vec<&SeriesKey> = self.active.series.keys().collect();
        for g in &self.frozen {
            keys.extend(g.series.keys());
        }
        keys.sort();
        keys.dedup();
        keys.len()
    }

    /// Key, rows, min and max ts of every series, across generations.
    pub fn summaries(&self) -> Vec<(SeriesKey, usize, i64, i64)> {
        let mut by_key: BTreeMap<&SeriesKey, (usize, i64, i64)> = BTreeMap::new();
        for g in self.frozen.iter().map(|g| g.as_ref()).chain([&self.active]) {
            for (key, rows) in &g.series {
                let (Some(min), Some(max)) = (rows.min_ts(), rows.max_ts()) else {
                    continue;
                };
                let e = by_key.entry(key).or_insert((0, i64::MAX, i64::MIN));
                *e = (e.0 + rows.rows(), e.1.min(min), e.2.max(max));
            }
        }
        by_key
            .into_iter()
            .map(|(k, (rows, min, max))| (k.clone(), rows, min, max))
            .collect()
    }

    /// Whether any generation holds rows of `key` whose time span touches `lo..=hi` (by each
    /// generation's first and last bar of the series, as `summaries` reports them).
    pub fn may_hold(&self, key: &SeriesKey, lo: i64, hi: i64) -> bool {
        self.frozen
            .iter()
            .map(|g| g.as_ref())
            .chain([&self.active])
            .filter_map(|g| g.series.get(key))
            .any(|rows| match (rows.min_ts(), rows.max_ts()) {
                (Some(min), Some(max)) => max >= lo && min <= hi,
                _ => false,
            })
    }

    /// The series a reader wants (`keep`), merged across generations with the newest winning.
    pub fn view(&self, keep: impl Fn(&SeriesKey) -> bool) -> Vec<SeriesView> {
        let mut by_key: BTreeMap<&SeriesKey, Vec<&SeriesRows>> = BTreeMap::new();
        for g in self.frozen.iter().map(|g| g.as_ref()).chain([&self.active]) {
            for (key, rows) in g.series.iter().filter(|(k, r)| r.rows() > 0 && keep(k)) {
                by_key.entry(key).or_default().push(rows);
            }
        }
        by_key
            .into_iter()
            .map(|(key, parts)| {
                let batches: Vec<RecordBatch> = match parts.as_slice() {
                    [one] => one.chunks().to_vec(),
                    _ => {
                        let all: Vec<RecordBatch> = parts
                            .iter()
                            .flat_map(|p| p.chunks().iter().cloned())
                            .collect();
                        vec![sort_dedup(&all)]
                    }
                };
                SeriesView {
                    key: key.clone(),
                    rows: batches.iter().map(|b| b.num_rows()).sum(),
                    batches,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::BarBuilder;

    const MIN: i64 = 60_000_000;

    fn key(s: &str) -> SeriesKey {
        SeriesKey {
            symbol: Symbol::new(s).unwrap(),
            interval: Interval::M1,
        }
    }

    fn bars(rows: &[(i64, f64)]) -> RecordBatch {
        let mut b = BarBuilder::default();
        for &(m, c) in rows {
            b.push_checked(Interval::M1, m * MIN, c, c, c, c, 1.0, None, None)
                .unwrap();
        }
        b.finish()
    }

    fn closes(view: &SeriesView) -> Vec<(i64, f64)> {
        let all = concat_batches(&FILE_SCHEMA, &view.batches).unwrap();
        let close = all
            .column(4)
            .as_any()
            .downcast_ref::<arrow::array::Float64Array>()
            .unwrap();
        (0..all.num_rows())
            .map(|i| (ts_column(&all).value(i) / MIN, close.value(i)))
            .collect()
    }

    #[test]
    fn upserts_appends_and_corrections() {
        let mut t = TierState::default();
        for m in 0..1000 {
            let batch = bars(&[(m, m as f64)]);
            t.apply(
                m as u64 + 1,
                vec![SeriesBatch {
                    key: key("A"),
                    batch,
                }],
                0,
            );
        }
        // Corrections inside and at the end, plus a row before everything.
        t.apply(
            1001,
            vec![SeriesBatch {
                key: key("A"),
                batch: bars(&[(500, -1.0), (999, -2.0), (-5, -3.0)]),
            }],
            0,
        );
        let view = t.view(|_| true);
        let got = closes(&view[0]);
        assert_eq!(got.len(), 1001);
        assert_eq!(t.rows(), 1001);
        assert_eq!(got[0], (-5, -3.0));
        assert_eq!(got[501], (500, -1.0));
        assert_eq!(got[1000], (999, -2.0));
        assert!(got.windows(2).all(|w| w[0].0 < w[1].0));
        let chunks = t.active.series[&key("A")].chunks().len();
        assert!(chunks <= 12, "{chunks} chunks for 1001 rows");
    }

    #[test]
    fn newer_generation_wins_and_release_drops_frozen() {
        let mut t = TierState::default();
        t.apply(
            1,
            vec![SeriesBatch {
                key: key("A"),
                batch: bars(&[(1, 1.0), (2, 1.0)]),
            }],
            0,
        );
        let frozen = t.freeze(1);
        t.apply(
            2,
            vec![SeriesBatch {
                key: key("A"),
                batch: bars(&[(2, 2.0), (3, 2.0)]),
            }],
            0,
        );
        assert_eq!(
            closes(&t.view(|_| true)[0]),
            vec![(1, 1.0), (2, 2.0), (3, 2.0)]
        );
        t.release(&frozen);
        assert_eq!(closes(&t.view(|_| true)[0]), vec![(2, 2.0), (3, 2.0)]);
        assert_eq!(t.rows(), 2);
    }

    #[test]
    fn latest_price_is_the_newest_bar_end() {
        let mut t = TierState::default();
        t.apply(
            1,
            vec![SeriesBatch {
                key: key("A"),
                batch: bars(&[(10, 5.0), (11, 6.0)]),
            }],
            7,
        );
        // An older bar arriving later does not replace the newer price.
        t.apply(
            2,
            vec![SeriesBatch {
                key: key("A"),
                batch: bars(&[(3, 1.0)]),
            }],
            8,
        );
        let latest = &t.latest[&Symbol::new("A").unwrap()];
        assert_eq!(
            (latest.ts, latest.close, latest.updated_at),
            (11 * MIN, 6.0, 7)
        );
        // A correction of the same bar does.
        t.apply(
            3,
            vec![SeriesBatch {
                key: key("A"),
                batch: bars(&[(11, 6.5)]),
            }],
            9,
        );
        assert_eq!(t.latest[&Symbol::new("A").unwrap()].close, 6.5);
    }

    #[test]
    fn a_deleted_bar_is_no_longer_the_latest_price() {
        let a = Symbol::new("A").unwrap();
        let mut t = TierState::default();
        let write = |t: &mut TierState, lsn, rows: &[(i64, f64)]| {
            let batch = bars(rows);
            t.apply(
                lsn,
                vec![SeriesBatch {
                    key: key("A"),
                    batch,
                }],
                0,
            )
        };
        write(&mut t, 1, &[(10, 5.0), (11, 6.0)]);
        // Transferred: the rows leave the tier, the latest price stays.
        let frozen = t.freeze(1);
        t.release(&frozen);
        assert_eq!(t.latest[&a].ts, 11 * MIN);
        // A delete that misses the bar, or is of another interval, keeps it.
        t.forget_deleted(&key("A"), 0, 11 * MIN);
        let daily = SeriesKey {
            symbol: a.clone(),
            interval: Interval::D1,
        };
        t.forget_deleted(&daily, 0, 100 * MIN);
        assert_eq!(t.latest[&a].ts, 11 * MIN);
        // One that covers it drops it.
        t.forget_deleted(&key("A"), 11 * MIN, 12 * MIN);
        assert!(!t.latest.contains_key(&a));
        // A bar written again after the delete is held by the tier, so it stays.
        write(&mut t, 2, &[(11, 7.0)]);
        t.forget_deleted(&key("A"), 11 * MIN, 12 * MIN);
        assert_eq!(t.latest[&a].close, 7.0);
    }
}
