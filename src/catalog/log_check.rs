//! Validating the commit log itself, for `check`: every entry's name, number and actions, and
//! whether loading reaches it. Loading trusts the log (it reads by number and stops at the first
//! missing entry), so this is where a damaged or hand-edited log is named.

use futures::StreamExt;
use object_store::path::Path;

use super::delta::{self, Entry};
use super::{
    Catalog, Commit, DELTA_LOG, Error, FileMeta, Result, first_snapshot, get_bytes, log_path,
};
use crate::storage::ParquetFilePath;

/// Log entries read at once.
const READ_AHEAD: usize = 16;

/// Whether a file of `_delta_log/` other than a commit is one the Delta protocol has there.
fn is_log_file(name: &str) -> bool {
    name == "_last_checkpoint"
        || name
            .strip_suffix(".checkpoint.parquet")
            .is_some_and(|d| d.len() == 20 && d.bytes().all(|b| b.is_ascii_digit()))
}

/// The number in a log entry's name (`<20 digits>.json`), if it is one.
fn entry_number(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".json")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// What is wrong with one added file's record, judged on its own.
fn add_problem(f: &FileMeta) -> Option<String> {
    let Some(parsed) = ParquetFilePath::parse(&f.path) else {
        return Some(format!(
            "adds {}, which is not a path of the bars layout",
            f.path
        ));
    };
    if parsed.partition != f.partition() {
        return Some(format!(
            "adds {} as partition {}, but its path says {}",
            f.path,
            f.partition(),
            parsed.partition
        ));
    }
    if f.rows == 0 || f.bytes == 0 {
        return Some(format!(
            "adds {} with {} rows and {} bytes",
            f.path, f.rows, f.bytes
        ));
    }
    if f.min_ts > f.max_ts {
        return Some(format!("adds {} with min_ts after max_ts", f.path));
    }
    if f.footer_bytes > f.bytes {
        return Some(format!(
            "adds {} with a footer longer than the file",
            f.path
        ));
    }
    None
}

/// What is wrong with a commit, judged on its own (numbering aside).
fn commit_problems(commit: &Commit) -> Vec<String> {
    let mut problems = Vec::new();
    if commit.operation.trim().is_empty() {
        problems.push("has no operation".to_string());
    }
    problems.extend(commit.add.iter().filter_map(add_problem));
    let mut seen = std::collections::HashSet::new();
    for path in commit.add.iter().map(|f| &f.path).chain(&commit.remove) {
        if !seen.insert(path) {
            problems.push(format!("names {path} twice"));
        }
    }
    problems
}

impl Catalog {
    /// Problems of the commit log, each naming the entry. Lists `bars/_delta_log/` and reads
    /// every entry: maintenance only. Commits are replayed from version 0 when the log still
    /// starts there, so a removal of a file no earlier commit added is found too.
    pub async fn check_log(&self) -> Result<Vec<String>> {
        let mut entries: Vec<(u64, Path)> = Vec::new();
        let mut problems = Vec::new();
        let mut listing = self.store.list(Some(&Path::from(DELTA_LOG)));
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|source| Error::Io {
                path: DELTA_LOG.to_string(),
                source,
            })?;
            let name = meta.location.filename().unwrap_or("");
            match entry_number(name) {
                Some(n) => entries.push((n, meta.location)),
                None if is_log_file(name) => {}
                None => problems.push(format!(
                    "{}: not a commit (names are 20 digits and .json); loading never reads it",
                    meta.location
                )),
            }
        }
        entries.sort();
        // Load what was committed while we listed, so a good entry is never called unreachable.
        // A refresh that fails on a broken entry is what the checks below name.
        let _ = self.refresh().await;
        let loaded = self.snapshot().seq;
        let starts_at_zero = entries.first().map(|(n, _)| *n) == Some(0);
        let mut replay = None;
        // Read a few at a time (a remote store answers each GET in a round trip), in order.
        let mut fetched = futures::stream::iter(entries)
            .map(|(n, path)| async move {
                let got = get_bytes(&self.store, &path).await;
                (n, path, got)
            })
            .buffered(READ_AHEAD);
        while let Some((n, path, got)) = fetched.next().await {
            let entry: Entry = match got? {
                None => continue, // removed while we listed
                Some(bytes) => match delta::decode_commit(n, &bytes) {
                    Ok(entry) => entry,
                    Err(reason) => {
                        problems.push(format!(
                            "{path}: not a commit tickvault can apply: {reason}; no commit can \
                             be made after it"
                        ));
                        replay = None;
                        continue;
                    }
                },
            };
            let commit = &entry.commit;
            if n == 0 {
                replay = match (starts_at_zero, first_snapshot(&entry)) {
                    (true, Ok(s)) => Some(s),
                    (_, Err(e)) => {
                        problems.push(format!("{path}: {e}"));
                        None
                    }
                    (false, _) => None,
                };
            }
            let own = commit_problems(commit);
            problems.extend(own.iter().map(|p| format!("{path}: {p}")));
            if n > loaded.0 && own.is_empty() {
                problems.push(format!(
                    "{path}: not part of the table: loading stops before it, at {}",
                    log_path(loaded.next())
                ));
            }
            replay = match replay {
                Some(state) if n == 0 => Some(state),
                Some(state) if state.seq.next() == commit.seq => match state.apply(commit) {
                    Ok(next) => Some(next),
                    Err(e) => {
                        problems.push(format!("{path}: {e}"));
                        None
                    }
                },
                _ => None,
            };
        }
        Ok(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_are_twenty_digits_and_json() {
        assert_eq!(entry_number("00000000000000000042.json"), Some(42));
        assert_eq!(entry_number("42.json"), None);
        assert_eq!(entry_number("0000000000000000004x.json"), None);
        assert_eq!(entry_number("00000000000000000042.json.tmp"), None);
    }
}
