//! Finished answers of recent SQL queries, sent again while the store is unchanged.
//!
//! Dashboards and notebooks send the same SQL over and over. Between two commits (or live
//! writes) its answer cannot change, so the encoded body is kept and sent again without
//! planning or reading anything. Every entry is tied to the store version it was computed at
//! (catalog commit and last live-tier write): any write makes older entries unreachable, and
//! they are dropped at the next insert. SQL calling functions whose value changes between
//! calls (`now()`, `random()`) is never kept, nor is an answer whose store version changed
//! while it ran. The cache holds at most its budget in bytes, least recently used out first;
//! an answer larger than an eighth of the budget streams as usual and is not kept.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::Bytes;

use crate::Store;
use crate::format::Format;

/// What a store's answers depend on: its last catalog commit, its last live write and the
/// version of its corporate actions (the `corporate_actions` table and adjusted reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StoreVersion {
    commit: u64,
    live_lsn: u64,
    actions: u64,
}

impl StoreVersion {
    /// The table version (catalog commit) of the answers.
    pub fn commit(&self) -> u64 {
        self.commit
    }

    pub fn of(store: &Store) -> Self {
        Self {
            commit: store.catalog().snapshot().seq.0,
            live_lsn: store.live().map_or(0, |l| l.read().active.max_lsn),
            actions: store.actions().version(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    sql: String,
    format: Format,
    version: StoreVersion,
}

impl CacheKey {
    pub fn new(sql: &str, format: Format, version: StoreVersion) -> Self {
        Self {
            sql: sql.to_string(),
            format,
            version,
        }
    }

    pub fn version(&self) -> StoreVersion {
        self.version
    }
}

#[derive(Debug, Default)]
struct Entries {
    map: HashMap<CacheKey, Entry>,
    bytes: usize,
    clock: u64,
}

#[derive(Debug)]
struct Entry {
    body: Bytes,
    last_used: u64,
}

/// The cache; a budget of 0 turns it off.
#[derive(Debug, Default)]
pub struct ResultCache {
    budget: usize,
    entries: Mutex<Entries>,
    pub hits: AtomicU64,
    pub misses: AtomicU64,
}

impl ResultCache {
    pub fn new(budget: usize) -> Self {
        Self {
            budget,
            ..Self::default()
        }
    }

    pub fn enabled(&self) -> bool {
        self.budget > 0
    }

    /// The largest answer kept.
    pub fn max_entry(&self) -> usize {
        self.budget / 8
    }

    pub fn get(&self, key: &CacheKey) -> Option<Bytes> {
        let mut entries = self.entries.lock().expect("cache lock");
        entries.clock += 1;
        let now = entries.clock;
        let found = entries.map.get_mut(key).map(|entry| {
            entry.last_used = now;
            entry.body.clone()
        });
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    pub fn insert(&self, key: CacheKey, body: Bytes) {
        if body.len() > self.max_entry() {
            return;
        }
        let mut entries = self.entries.lock().expect("cache lock");
        // Versions only move forward: answers for an older one can never be asked for again.
        let version = key.version;
        entries.map.retain(|k, _| k.version == version);
        entries.bytes = entries.map.values().map(|e| e.body.len()).sum();
        while entries.bytes + body.len() > self.budget {
            let Some(oldest) = entries
                .map
                .iter()
                .min_by_key(|(_, e)| e.last_used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            let removed = entries.map.remove(&oldest).expect("present");
            entries.bytes -= removed.body.len();
        }
        entries.clock += 1;
        let last_used = entries.clock;
        entries.bytes += body.len();
        if let Some(replaced) = entries.map.insert(key, Entry { body, last_used }) {
            entries.bytes -= replaced.body.len();
        }
    }

    /// (entries, bytes) held now.
    pub fn size(&self) -> (usize, usize) {
        let entries = self.entries.lock().expect("cache lock");
        (entries.map.len(), entries.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(sql: &str, commit: u64) -> CacheKey {
        CacheKey::new(
            sql,
            Format::Json,
            StoreVersion {
                commit,
                live_lsn: 0,
                actions: 0,
            },
        )
    }

    #[test]
    fn keeps_answers_per_version_within_the_budget() {
        let cache = ResultCache::new(800); // entries up to 100 bytes
        cache.insert(key("a", 1), Bytes::from(vec![1; 100]));
        cache.insert(key("b", 1), Bytes::from(vec![2; 100]));
        assert_eq!(cache.get(&key("a", 1)).unwrap().len(), 100);
        assert_eq!(
            cache.get(&key("a", 2)),
            None,
            "another version is another answer"
        );
        assert_eq!(cache.get(&key("a", 1).clone_with_format(Format::Csv)), None);

        // Too large to keep.
        cache.insert(key("big", 1), Bytes::from(vec![0; 101]));
        assert_eq!(cache.get(&key("big", 1)), None);

        // Past the budget the least recently used goes first: "b" (read before "a" was).
        for (i, name) in ["c", "d", "e", "f", "g", "h", "i"].iter().enumerate() {
            cache.get(&key("a", 1));
            cache.insert(key(name, 1), Bytes::from(vec![i as u8; 100]));
        }
        assert!(cache.get(&key("a", 1)).is_some());
        assert_eq!(cache.get(&key("b", 1)), None);
        assert_eq!(cache.size(), (8, 800));

        // A newer version drops every older answer.
        cache.insert(key("a", 2), Bytes::from(vec![9; 10]));
        assert_eq!(cache.size(), (1, 10));
        assert!(cache.hits.load(Ordering::Relaxed) >= 2);
    }

    impl CacheKey {
        fn clone_with_format(&self, format: Format) -> Self {
            Self {
                format,
                ..self.clone()
            }
        }
    }
}
