//! `tickvault import`: CSV and Parquet files of bars (and their corporate actions) into the
//! store, all or nothing.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Args;

use crate::Store;
use crate::import::{self, ImportOptions};
use crate::model::{Interval, Symbol};

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Timeframe (bar size) of the imported rows: 1m 5m 15m 30m 1h 4h 1d 1w (`--interval` is
    /// its old name).
    #[arg(long = "timeframe", alias = "interval", default_value = "1d")]
    pub interval: String,
    /// Symbol for files without a symbol column.
    #[arg(long, conflicts_with = "symbol_pattern")]
    pub symbol: Option<String>,
    /// Regex applied to each file name; its first capture group is the symbol
    /// (e.g. 'DA-(.+)-T-' turns DA-AAPL-T-2021-04-21.csv into AAPL).
    #[arg(long)]
    pub symbol_pattern: Option<String>,
    /// Time zone of timestamps without an offset (e.g. America/New_York).
    #[arg(long, default_value = "UTC")]
    pub tz: String,
    /// A naive time that a daylight-saving change repeats (the fall-back hour) is refused
    /// unless this says which instant it is: `earliest` (before the change), `latest` (after
    /// it), or `infer` (from row order: the first pass is before the change, and the rows after
    /// the clock steps back are after it). A time the change skips is always refused.
    #[arg(long, default_value = "refuse", value_parser = ["refuse", "earliest", "latest", "infer"])]
    pub ambiguous: String,
    /// The unit of epoch integers: s, ms, us or ns. Without it the magnitude decides where it
    /// is unambiguous (1e8..1e10 seconds, 1e11..1e13 ms, 1e14..1e16 µs, from 1e17 ns: 1973
    /// to 2286 in each) and other integers are refused.
    #[arg(long, value_parser = ["s", "ms", "us", "ns"])]
    pub epoch_unit: Option<String>,
    /// Read every file as this format, whatever its name, and take every file of a directory
    /// (not only .csv, .csv.gz and .parquet): for vendors' .txt or .dat files. CSV files may be
    /// gzip-compressed (told by their first bytes). Without it, a file named here is read
    /// whatever its name (its first bytes tell Parquet, gzip CSV or CSV apart).
    #[arg(long, value_parser = ["csv", "parquet"])]
    pub format: Option<String>,
    /// Ignore the split_coefficient and dividend_amount columns: import the bars without their
    /// corporate actions (by default a CSV's events go into the corporate_actions table, and a
    /// bad one refuses the import).
    #[arg(long)]
    pub skip_events: bool,
    /// What an event of the split_coefficient / dividend_amount columns that breaks a rule (a
    /// coefficient <= 0 or not a number, a negative amount, an amount not below the previous
    /// close) does: `refuse` the whole import, naming file, line and rule (nothing is stored),
    /// or `skip` it: the bars and every good event are imported, and each skipped event is
    /// listed with its file, line and rule.
    #[arg(long, default_value = "refuse", value_parser = ["refuse", "skip"])]
    pub bad_events: String,
    /// Files or directories (searched recursively for .csv, .csv.gz and .parquet, or for every
    /// file with --format).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
}

pub async fn import_cmd(store: &Store, args: ImportArgs) -> anyhow::Result<i32> {
    let started = Instant::now();
    let interval: Interval = args
        .interval
        .parse()
        .map_err(|e| anyhow::anyhow!("--timeframe: {e}"))?;
    let symbol = args
        .symbol
        .as_deref()
        .map(Symbol::new)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--symbol: {e}"))?;
    let symbol_pattern = args
        .symbol_pattern
        .as_deref()
        .map(regex::Regex::new)
        .transpose()
        .context("--symbol-pattern")?;
    let tz: chrono_tz::Tz = args
        .tz
        .parse()
        .map_err(|e| anyhow::anyhow!("--tz {:?}: {e}", args.tz))?;
    let ambiguous: import::Ambiguous = args.ambiguous.parse().map_err(anyhow::Error::msg)?;
    let epoch_unit = args
        .epoch_unit
        .as_deref()
        .map(str::parse::<import::EpochUnit>)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let format = args
        .format
        .as_deref()
        .map(str::parse::<import::InputFormat>)
        .transpose()
        .map_err(anyhow::Error::msg)?;
    let opts = Arc::new(ImportOptions {
        interval,
        symbol,
        symbol_pattern,
        tz,
        ambiguous,
        epoch_unit,
        format,
        skip_events: args.skip_events,
        bad_events: args.bad_events.parse().map_err(anyhow::Error::msg)?,
    });
    let files = import::collect_inputs_as(&args.paths, format)?;
    if files.is_empty() {
        match format {
            Some(_) => bail!("no files found in the given paths"),
            None => bail!(
                "no .csv, .csv.gz or .parquet files found in the given paths (--format csv or \
                 --format parquet reads every file of a directory, whatever its name)"
            ),
        }
    }
    let progress = progress_bar(files.len() as u64);
    let result = store.import_files(&files, opts, || progress.inc(1)).await;
    progress.finish_and_clear();
    let summary = result?;
    let secs = started.elapsed().as_secs_f64();
    let duplicates = match summary.duplicates {
        0 => String::new(),
        n => format!(" ({n} more rows repeated a key earlier in their file and replaced it)"),
    };
    println!(
        "imported {} files, {} rows{duplicates}, {} symbols, {} partitions ({} files, {} bytes) in {:.2}s ({:.0} rows/s)",
        summary.files,
        summary.rows,
        summary.symbols,
        summary.write.partitions,
        summary.write.files_added,
        summary.write.bytes_written,
        secs,
        summary.rows as f64 / secs.max(1e-9)
    );
    let a = &summary.actions;
    if a.inserted + a.updated + a.unchanged > 0 {
        println!(
            "corporate actions (split_coefficient, dividend_amount columns): {} new, {} updated, {} unchanged",
            a.inserted, a.updated, a.unchanged
        );
    }
    super::actions::print_disagreements(&mut std::io::stdout(), a)?;
    if !summary.events_skipped.is_empty() {
        println!(
            "corporate actions skipped (--bad-events skip): {}",
            summary.events_skipped.len()
        );
        for r in &summary.events_skipped {
            println!("  SKIPPED {r}");
        }
    }
    Ok(0)
}

fn progress_bar(len: u64) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} files {elapsed_precise}")
            .expect("valid template"),
    );
    bar
}
