//! Where an import's CPU goes, one step at a time on one thread: parsing files, grouping rows
//! into partitions, and encoding each partition's Parquet file (nothing is written).
//!
//!   cargo bench --bench encode -- DIR [--interval 1d] [--symbol-pattern REGEX]
//!
//! With the 504 daily S&P 500 files this shows the per-file cost of the layout: 10,276 files of
//! about 230 rows each, where zstd's per-column-chunk setup outweighs the rows.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tickvault::import::{self, ImportOptions};
use tickvault::storage::encode_bars;
use tickvault::write::partition_rows;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1).cloned())
    };
    let Some(dir) = args
        .iter()
        .skip(1)
        .find(|a| !a.starts_with('-') && std::path::Path::new(a).is_dir())
    else {
        eprintln!("encode bench: pass a directory of bar files; skipping");
        return;
    };
    let mut options = ImportOptions::default();
    if let Some(interval) = arg("--interval") {
        options.interval = interval.parse().expect("--interval");
    }
    if let Some(pattern) = arg("--symbol-pattern") {
        options.symbol_pattern = Some(regex::Regex::new(&pattern).expect("--symbol-pattern"));
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("dir entry").path())
        .collect();
    files.sort();

    let t = Instant::now();
    let mut series = Vec::new();
    for f in &files {
        series.extend(import::read_file(f, &options).expect("parses"));
    }
    let parse = t.elapsed();
    let rows: usize = series.iter().map(|s| s.batch.num_rows()).sum();

    let t = Instant::now();
    let partitions = partition_rows(series);
    let group = t.elapsed();

    let t = Instant::now();
    let mut bytes = 0;
    for p in &partitions {
        bytes += encode_bars(&p.rows, p.key.interval)
            .expect("encodes")
            .bytes
            .len();
    }
    let encode = t.elapsed();

    let per = |d: Duration, n: usize| d.as_secs_f64() * 1e6 / n as f64;
    println!(
        "{} files, {rows} rows, {} partitions, {:.1} bytes/row",
        files.len(),
        partitions.len(),
        bytes as f64 / rows as f64
    );
    println!(
        "parse     {:>8.0} ms  {:>7.2} µs/row",
        parse.as_secs_f64() * 1e3,
        per(parse, rows)
    );
    println!(
        "partition {:>8.0} ms  {:>7.2} µs/row",
        group.as_secs_f64() * 1e3,
        per(group, rows)
    );
    println!(
        "encode    {:>8.0} ms  {:>7.1} µs/file",
        encode.as_secs_f64() * 1e3,
        per(encode, partitions.len())
    );
}
