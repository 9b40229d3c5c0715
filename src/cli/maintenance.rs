//! Looking after a store: `tickvault stats`, `compact`, `gc` and `check`.

use std::io::Write;
use std::time::Duration;

use clap::Args;

use crate::Store;
use crate::config::parse_duration;
use crate::model::time::rfc3339;

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Also print the object store requests this command made, by kind, with bytes moved
    /// (opening a store reads its catalog) and the disk cache's counters.
    #[arg(long)]
    pub requests: bool,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Keep unreferenced files younger than this (e.g. 30s, 15m, 1h, 7d), so readers holding an
    /// older snapshot never lose a file.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub grace: Duration,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Also read every data file whole, verify every byte against the checksums recorded when
    /// it was written, and decode every row (files written before checksums are listed as
    /// unverified).
    #[arg(long)]
    pub deep: bool,
}

/// `tickvault stats`: a line per series, then the totals.
pub fn stats_cmd(store: &Store, args: StatsArgs) -> anyhow::Result<i32> {
    let stats = store.stats();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    writeln!(
        out,
        "{:<9} {:<16} {:>12} {:>6} {:>14}  {:<20}  {:<20}",
        "timeframe", "symbol", "rows", "files", "bytes", "first", "last"
    )?;
    for s in &stats {
        writeln!(
            out,
            "{:<9} {:<16} {:>12} {:>6} {:>14}  {:<20}  {:<20}",
            s.interval.as_str(),
            s.symbol.as_str(),
            s.rows,
            s.files,
            s.bytes,
            rfc3339(s.first_ts),
            rfc3339(s.last_ts)
        )?;
    }
    let (rows, files, bytes) = stats.iter().fold((0u64, 0usize, 0u64), |a, s| {
        (a.0 + s.rows, a.1 + s.files, a.2 + s.bytes)
    });
    writeln!(
        out,
        "total: {} series, {rows} rows, {files} files, {bytes} bytes ({:.1} bytes/row)",
        stats.len(),
        bytes as f64 / rows.max(1) as f64
    )?;
    if args.requests {
        print_requests(&mut out, store)?;
    }
    Ok(0)
}

/// One line of request counts by kind, then the disk cache's line when there is a cache.
fn print_requests(out: &mut impl Write, store: &Store) -> std::io::Result<()> {
    writeln!(out, "requests: {}", store.requests())?;
    if let Some(cache) = store.disk_cache() {
        let c = cache.counts();
        writeln!(
            out,
            "disk cache: hits={} misses={} evictions={} files={} bytes={}",
            c.hits, c.misses, c.evictions, c.files, c.bytes
        )?;
    }
    Ok(())
}

/// `tickvault compact`: one file per partition.
pub async fn compact_cmd(store: &Store) -> anyhow::Result<i32> {
    let s = store.compact().await?;
    println!(
        "compacted {} partitions: {} files merged into {}{}",
        s.partitions_compacted,
        s.files_removed,
        s.files_added,
        if s.partitions_conflicted > 0 {
            format!(
                "; {} skipped after concurrent changes (run again)",
                s.partitions_conflicted
            )
        } else {
            String::new()
        }
    );
    Ok(0)
}

/// `tickvault gc`: deletes unreferenced files older than the grace period.
pub async fn gc_cmd(store: &Store, args: GcArgs) -> anyhow::Result<i32> {
    let s = store.gc(args.grace).await?;
    println!(
        "deleted {} removed and {} orphaned files ({} bytes); {} unreferenced files kept within the grace period; {} old corporate actions versions deleted{}",
        s.removed_deleted,
        s.orphans_deleted,
        s.bytes_deleted,
        s.kept_in_grace,
        s.action_versions_deleted,
        if s.kept_for_snapshots > 0 {
            format!("; {} files kept for named snapshots", s.kept_for_snapshots)
        } else {
            String::new()
        }
    );
    Ok(0)
}

/// `tickvault check`: exits 1 when the store has a problem.
pub async fn check_cmd(store: &Store, args: CheckArgs) -> anyhow::Result<i32> {
    let report = if args.deep {
        store.check_deep().await?
    } else {
        store.check().await?
    };
    for p in &report.problems {
        println!("PROBLEM {p}");
    }
    if !report.unverified.is_empty() {
        println!(
            "{} files were written before checksums: read, but not verified (e.g. {})",
            report.unverified.len(),
            report.unverified[0]
        );
    }
    println!(
        "checked {} files: {} problems, {} unreferenced files (gc deletes them)",
        report.files_checked,
        report.problems.len(),
        report.orphans.len()
    );
    Ok(if report.is_clean() { 0 } else { 1 })
}
