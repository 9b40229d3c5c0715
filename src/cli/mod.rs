//! The `tickvault` command line: argument parsing and the commands' output. `main.rs` only calls
//! [`run`].

pub mod actions;
pub mod bars;
pub mod demo;
pub mod ingest;
pub mod sync;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use crate::Store;
use crate::config::{Config, GlobalOverrides, Overrides};
use crate::format::{Format, write_stream};
use crate::import::{self, ImportOptions};
use crate::model::time::rfc3339;
use crate::model::{Interval, Symbol};
use crate::server::{Server, shutdown_signal};

#[derive(Debug, Parser)]
#[command(
    name = "tickvault",
    version,
    about = "A time-series store for OHLCV market data: Parquet on an object store, SQL through DataFusion."
)]
pub struct Cli {
    /// `--store` and the other keys of where the store is and how to reach it.
    #[command(flatten)]
    pub global: GlobalOverrides,
    /// A TOML config file (see `tickvault config`).
    #[arg(long, global = true, env = "TICKVAULT_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the HTTP API (SQL, bars, symbols, status, metrics) until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Import a real sample of daily bars (15 S&P 500 stocks) if the store is empty, then serve.
    Demo(ServeArgs),
    /// Print the effective configuration (file, environment and flags) with secrets masked.
    Config(ServeArgs),
    /// Import CSV or Parquet files of bars (all or nothing: one bad row imports nothing).
    Import(ImportArgs),
    /// Send NDJSON or CSV bars to a running server's live tier (POST /v1/write).
    Ingest(IngestArgs),
    /// Run a read-only SQL query over `bars` and the views from sql/.
    Sql(SqlArgs),
    /// Load bars of one or more symbols (the backtest loader), raw or adjusted.
    Bars(bars::BarsArgs),
    /// Rows, files, bytes and time range per timeframe and symbol.
    Stats(StatsArgs),
    /// Merge partitions that have several files into one file each.
    Compact,
    /// Delete files no commit references, after a grace period.
    Gc(GcArgs),
    /// Check the commit log and the catalog against the files; exits non-zero on a problem.
    Check(CheckArgs),
    /// Track symbols for stage 2 of the sync (add, list, remove).
    Symbols(sync::SymbolsArgs),
    /// Run stage 2 once: fetch what tracked symbols lack (or a forced range) from providers.
    Backfill(sync::BackfillArgs),
    /// Delete a range of one symbol's bars (stage 2 heals it if the symbol is tracked).
    Delete(sync::DeleteArgs),
    /// The write-ahead log's damage report: list damaged segments kept aside, or clear them.
    Wal(WalArgs),
    /// Corporate actions (splits and dividends): import your own from CSV, or list them.
    Actions(actions::ActionsArgs),
}

#[derive(Debug, Args)]
pub struct WalArgs {
    /// The WAL directory [default: the config's `wal_dir`, else `_wal` in a local store].
    #[arg(long, global = true)]
    pub wal_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: WalCommand,
}

#[derive(Debug, Subcommand)]
pub enum WalCommand {
    /// List the damaged segments kept aside (exits 1 when there are some).
    Damage,
    /// Clear the damage report once it has been looked at: delete the damaged copies, or move
    /// them elsewhere with --move-to. Their good records are in the log already.
    ClearDamage {
        /// Move the copies into this directory instead of deleting them.
        #[arg(long)]
        move_to: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub overrides: Overrides,
}

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

#[derive(Debug, Args)]
pub struct IngestArgs {
    /// The server's base URL.
    #[arg(
        long,
        env = "TICKVAULT_SERVER",
        default_value = "http://127.0.0.1:8080"
    )]
    pub server: String,
    /// A bearer token with write scope.
    #[arg(long, env = "TICKVAULT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Body format [default: by the file name, .csv is csv, anything else ndjson].
    #[arg(long, value_parser = ["ndjson", "csv"])]
    pub format: Option<String>,
    /// CSV: the bars' timeframe (NDJSON rows carry their own; `--interval` is its old name).
    #[arg(long = "timeframe", alias = "interval")]
    pub interval: Option<String>,
    /// CSV without a symbol column: the symbol.
    #[arg(long)]
    pub symbol: Option<String>,
    /// Largest request; bigger input is sent in several requests of whole lines, each all or
    /// nothing (keep it under the server's max_body).
    #[arg(long, default_value = "8MiB")]
    pub chunk: crate::config::ByteSize,
    /// The file to send, or - for standard input.
    #[arg(default_value = "-")]
    pub file: PathBuf,
}

#[derive(Debug, Args)]
pub struct SqlArgs {
    /// Output format; `table` on a terminal, `csv` otherwise.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Write the result to this file instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Print the object store requests the query made (by kind, with bytes) to stderr.
    #[arg(long)]
    pub requests: bool,
    /// The query.
    pub query: String,
}

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

use crate::config::parse_duration;

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Also read every data file whole, verify every byte against the checksums recorded when
    /// it was written, and decode every row (files written before checksums are listed as
    /// unverified).
    #[arg(long)]
    pub deep: bool,
}

/// Runs a parsed command line; returns the process exit code.
pub async fn run(cli: Cli) -> anyhow::Result<i32> {
    let overrides = match &cli.command {
        Command::Serve(a) | Command::Demo(a) | Command::Config(a) => {
            cli.global.0.clone().and(&a.overrides)
        }
        _ => cli.global.0.clone(),
    };
    let config = Config::load(cli.config.as_deref(), &overrides)?;
    match cli.command {
        Command::Config(_) => {
            print!("{}", config.to_masked_toml());
            return Ok(0);
        }
        Command::Serve(_) => return serve_cmd(config, false).await,
        Command::Ingest(args) => return ingest::ingest_cmd(args).await,
        Command::Demo(_) => return serve_cmd(config, true).await,
        Command::Wal(args) => return wal_cmd(&config, args),
        _ => {}
    }
    let read_only = match &cli.command {
        Command::Sql(_) | Command::Bars(_) | Command::Stats(_) | Command::Check(_) => true,
        Command::Actions(args) => actions::is_read_only(args),
        _ => false,
    };
    let store = Store::open_with_options(&config.store, &config.command_store_options(read_only))
        .await
        .with_context(|| format!("opening store {}", config.store))?;
    let store = Arc::new(store);
    match cli.command {
        Command::Symbols(args) => sync::symbols_cmd(&config, store, args).await,
        Command::Backfill(args) => sync::backfill_cmd(&config, store, args).await,
        Command::Delete(args) => sync::delete_cmd(&config, store, args).await,
        Command::Serve(_)
        | Command::Demo(_)
        | Command::Config(_)
        | Command::Ingest(_)
        | Command::Wal(_) => {
            unreachable!("handled above")
        }
        Command::Import(args) => import_cmd(&store, args).await,
        Command::Actions(args) => actions::actions_cmd(&store, args).await,
        Command::Sql(args) => sql_cmd(&store, args).await,
        Command::Bars(args) => bars::bars_cmd(&store, args).await,
        Command::Stats(args) => stats_cmd(&store, args),
        Command::Compact => {
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
        Command::Gc(args) => {
            let s = store.gc(args.grace).await?;
            println!(
                "deleted {} removed and {} orphaned files ({} bytes); {} unreferenced files kept within the grace period; {} old corporate actions versions deleted",
                s.removed_deleted,
                s.orphans_deleted,
                s.bytes_deleted,
                s.kept_in_grace,
                s.action_versions_deleted
            );
            Ok(0)
        }
        Command::Check(args) => {
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
    }
}

/// `tickvault wal damage` and `tickvault wal clear-damage`: they touch only the damaged copies,
/// so they are safe beside a running server (whose status shows the report it started with
/// until it restarts).
fn wal_cmd(config: &Config, args: WalArgs) -> anyhow::Result<i32> {
    let dir = args.wal_dir.unwrap_or_else(|| config.wal_path());
    match args.command {
        WalCommand::Damage => {
            let report = crate::wal::damage_report(&dir)
                .with_context(|| format!("reading the WAL in {}", dir.display()))?;
            for d in &report {
                println!(
                    "DAMAGED {}: damage at byte offset(s) {:?}, {} good record(s) kept in the log",
                    d.moved_to.display(),
                    d.offsets,
                    d.recovered
                );
            }
            println!(
                "{} damaged WAL segment(s) in {}",
                report.len(),
                dir.display()
            );
            Ok(if report.is_empty() { 0 } else { 1 })
        }
        WalCommand::ClearDamage { move_to } => {
            let cleared = crate::wal::clear_damage(&dir, move_to.as_deref())
                .with_context(|| format!("clearing the damage in {}", dir.display()))?;
            for path in &cleared {
                match &move_to {
                    Some(_) => println!("moved to {}", path.display()),
                    None => println!("deleted {}", path.display()),
                }
            }
            println!("cleared {} damaged WAL segment(s)", cleared.len());
            Ok(0)
        }
    }
}

/// Binds, then opens the store (importing the sample first for the demo) and serves.
async fn serve_cmd(config: Config, demo: bool) -> anyhow::Result<i32> {
    let mut server = Server::bind(config.clone()).await?;
    let addr = server.local_addr();
    let mut ready = format!("tickvault: serving {} on http://{addr}\n", config.store);
    if demo {
        ready.push_str(&demo::examples(&format!("http://{addr}")));
    }
    server.announce_when_ready(ready);
    let options = config.store_options();
    let store_url = config.store.clone();
    let open = async move {
        let store = Store::open_with_options(&store_url, &options).await?;
        if demo {
            let rows = demo::import_sample_if_empty(&store).await?;
            if rows > 0 {
                eprintln!(
                    "tickvault demo: imported {rows} rows of real daily bars into {store_url}"
                );
            } else {
                eprintln!("tickvault demo: {store_url} already holds data; serving it as it is");
            }
        }
        Ok(Arc::new(store))
    };
    server.serve(open, shutdown_signal()).await?;
    Ok(0)
}

async fn import_cmd(store: &Store, args: ImportArgs) -> anyhow::Result<i32> {
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
    actions::print_disagreements(&mut std::io::stdout(), a)?;
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

async fn sql_cmd(store: &Store, args: SqlArgs) -> anyhow::Result<i32> {
    let format = args.format.unwrap_or(
        if std::io::stdout().is_terminal() && args.output.is_none() {
            Format::Table
        } else {
            Format::Csv
        },
    );
    let before = store.requests();
    let stream = store.engine().sql_stream(&args.query).await?;
    match &args.output {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            let (_, mut out) = write_stream(stream, format, std::io::BufWriter::new(file)).await?;
            out.flush()?;
        }
        None => {
            let stdout = std::io::stdout();
            let (_, mut out) =
                write_stream(stream, format, std::io::BufWriter::new(stdout)).await?;
            out.flush()?;
        }
    }
    if args.requests {
        eprintln!("requests: {}", store.requests().since(&before));
    }
    Ok(0)
}

fn stats_cmd(store: &Store, args: StatsArgs) -> anyhow::Result<i32> {
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
