//! Errors as every layer shows them: what kind of failure an error is, the same word at every
//! layer (each module's error says its kind with `kind()`, delegating to the errors it wraps,
//! and the HTTP API maps a kind to a status and a code in one place, `server::error`), and an
//! error with its causes on one line.

/// What happened, as a caller branches on it. Each kind is one HTTP status and `code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Input that cannot be used: a bad parameter, an unknown column, a refused option.
    InvalidInput,
    /// A written row breaks a rule; nothing of the write was applied.
    InvalidRow,
    /// A corporate action breaks a rule; nothing of the input was applied.
    InvalidCorporateAction,
    /// SQL that does not parse or plan (a syntax error, an unknown table or column).
    InvalidSql,
    /// SQL too long or nested too deep to plan safely.
    SqlLimit,
    /// A query that planned but failed on the data (a cast of a value that does not fit, ...).
    QueryFailed,
    /// A change asked of something that only reads: SQL that is not a query, a read-only store.
    ReadOnly,
    /// A symbol the sync registry does not track.
    NotTracked,
    /// A concurrent change touched what this one was computed from; redo it.
    Conflict,
    /// Full for the moment (the live tier while it moves rows to Parquet); retry shortly.
    Busy,
    /// A query needs more memory than the query memory limit allows.
    MemoryLimit,
    /// Writes cannot be taken: the WAL failed, or the store has no live tier.
    WalUnavailable,
    /// A data file failed its checksum.
    Damaged,
    /// A table version newer than the latest commit.
    UnknownVersion,
    /// A table version that can no longer be read: its log entries were cleaned up or GC
    /// deleted its data files.
    VersionGone,
    /// A named snapshot that does not exist.
    UnknownSnapshot,
    /// A named snapshot created under a name already taken.
    SnapshotExists,
    /// A failure on our side: storage I/O, a corrupt or inconsistent catalog, a task that
    /// panicked or was cancelled, a bug.
    Internal,
}

/// An error and its causes on one line (HTTP clients hide the useful part in `source`).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn the_chain_is_one_line_of_each_cause() {
        let e = Outer(std::io::Error::other("inner"));
        assert_eq!(error_chain(&e), "outer: inner");
        assert_eq!(error_chain(&std::io::Error::other("alone")), "alone");
    }
}
