//! `tickvault symbols add|list|remove`, `tickvault backfill` and `tickvault delete`: stage 2
//! from the command line, on the store directly (a running server sees the registry changes at
//! its next sync, as both append to the same log).

use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use crate::Store;
use crate::config::Config;
use crate::model::time::parse_time;
use crate::model::{Interval, Symbol};
use crate::sync::settings::{TrackRequest, make_spec};
use crate::sync::syncer::{BackfillRequest, BackfillSummary, Syncer};

#[derive(Debug, Args)]
pub struct SymbolsArgs {
    #[command(subcommand)]
    pub command: SymbolsCommand,
}

#[derive(Debug, Subcommand)]
pub enum SymbolsCommand {
    /// Track a symbol: stage 2 fills its history from `--since` and keeps it current.
    Add {
        symbol: String,
        /// Timeframes to keep, comma separated (1m 5m 15m 30m 1h 4h 1d 1w); `--interval` is
        /// the old name of this flag.
        #[arg(
            long = "timeframe",
            alias = "interval",
            value_delimiter = ',',
            default_value = "1d"
        )]
        intervals: Vec<String>,
        /// A provider name from the config [default: default_provider].
        #[arg(long)]
        provider: Option<String>,
        /// First bar wanted (RFC 3339 or YYYY-MM-DD) [default: 1990-01-01].
        #[arg(long)]
        since: Option<String>,
        /// us-equity, 24x7 or fx [default: 24x7 for binance, else us-equity].
        #[arg(long)]
        calendar: Option<String>,
    },
    /// List tracked symbols with their sync state.
    List,
    /// Stop tracking a symbol; its bars stay unless --purge.
    Remove {
        symbol: String,
        #[arg(long)]
        purge: bool,
    },
}

#[derive(Debug, Args)]
pub struct BackfillArgs {
    /// Only these symbols [default: every tracked symbol].
    pub symbols: Vec<String>,
    /// Start of a range to fetch (RFC 3339 or YYYY-MM-DD); with --end, fetched even if stored.
    #[arg(long)]
    pub start: Option<String>,
    /// End of the range (exclusive).
    #[arg(long)]
    pub end: Option<String>,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    pub symbol: String,
    /// The bars' timeframe (`--interval` is its old name).
    #[arg(long = "timeframe", alias = "interval", default_value = "1d")]
    pub interval: String,
    /// First bar to delete (inclusive).
    #[arg(long)]
    pub start: String,
    /// End of the range (exclusive).
    #[arg(long)]
    pub end: String,
}

async fn open(config: &Config, store: Arc<Store>) -> anyhow::Result<Syncer> {
    Ok(Syncer::open(store, config.providers()?, config.sync_options()).await?)
}

fn time(name: &str, v: &str) -> anyhow::Result<i64> {
    parse_time(v).map_err(|e| anyhow::anyhow!("--{name}: {e}"))
}

pub async fn symbols_cmd(
    config: &Config,
    store: Arc<Store>,
    args: SymbolsArgs,
) -> anyhow::Result<i32> {
    let syncer = open(config, store).await?;
    match args.command {
        SymbolsCommand::Add {
            symbol,
            intervals,
            provider,
            since,
            calendar,
        } => {
            let request = TrackRequest {
                symbol,
                timeframes: Some(intervals),
                intervals: None,
                provider,
                since,
                calendar,
            };
            let spec = make_spec(
                &config.providers,
                config.default_provider.as_deref(),
                request,
                syncer.clock().now_micros(),
            )
            .map_err(|(field, e)| anyhow::anyhow!("{field}: {e}"))?;
            let symbol = spec.symbol.clone();
            syncer.track(spec).await?;
            println!("tracking {symbol}; the next backfill fetches its history");
        }
        SymbolsCommand::List => {
            let state = syncer.state();
            let now = syncer.clock().now_micros();
            let stale = i64::try_from(syncer.options().stale_after.as_micros()).unwrap_or(i64::MAX);
            println!("symbol\ttimeframe\tprovider\tcalendar\tstate\tlast_bar\tlast_error");
            for ((symbol, interval), status) in &state.status {
                let Some(spec) = state.symbols.get(symbol) else {
                    continue;
                };
                println!(
                    "{symbol}\t{interval}\t{}\t{}\t{}\t{}\t{}",
                    spec.provider,
                    spec.calendar.as_str(),
                    status.effective_state(now, stale).as_str(),
                    status
                        .last_bar
                        .map(crate::model::time::rfc3339)
                        .unwrap_or_default(),
                    status.last_error.as_deref().unwrap_or("")
                );
            }
        }
        SymbolsCommand::Remove { symbol, purge } => {
            let symbol = Symbol::new(&symbol).map_err(|e| anyhow::anyhow!("symbol: {e}"))?;
            let deleted = syncer.untrack(&symbol, purge).await?;
            if purge {
                println!("stopped tracking {symbol}; deleted {deleted} rows");
            } else {
                println!("stopped tracking {symbol}; its bars are kept");
            }
        }
    }
    Ok(0)
}

pub async fn backfill_cmd(
    config: &Config,
    store: Arc<Store>,
    args: BackfillArgs,
) -> anyhow::Result<i32> {
    let syncer = open(config, store).await?;
    let symbols = if args.symbols.is_empty() {
        None
    } else {
        Some(
            args.symbols
                .iter()
                .map(|s| Symbol::new(s).map_err(|e| anyhow::anyhow!("symbol {s:?}: {e}")))
                .collect::<anyhow::Result<Vec<_>>>()?,
        )
    };
    let start = args
        .start
        .as_deref()
        .map(|v| time("start", v))
        .transpose()?;
    let end = args.end.as_deref().map(|v| time("end", v)).transpose()?;
    let force = start.is_some() || end.is_some();
    let range = force.then(|| (start.unwrap_or(i64::MIN + 1), end.unwrap_or(i64::MAX)));
    if let Some((s, e)) = range
        && s >= e
    {
        bail!("--end must be after --start");
    }
    let summary = syncer
        .backfill(&BackfillRequest {
            symbols,
            range,
            force,
        })
        .await
        .context("backfill")?;
    print_summary(&summary);
    Ok(if summary.failures.is_empty() { 0 } else { 1 })
}

pub fn print_summary(s: &BackfillSummary) {
    println!(
        "checked {} series, fetched {} ({} chunks, {} requests): {} rows, {} quarantined, {} failed, in {:.1}s",
        s.series_checked,
        s.series_fetched,
        s.chunks,
        s.requests,
        s.rows,
        s.quarantined,
        s.failures.len(),
        s.duration_ms / 1000.0
    );
    for f in &s.failures {
        println!("FAILED {f}");
    }
    if s.action_requests > 0 || !s.action_failures.is_empty() {
        println!(
            "corporate actions: {} requests, {} new or changed, {} refused, {} disagreements",
            s.action_requests, s.actions_stored, s.actions_rejected, s.action_disagreements
        );
    }
    for f in &s.action_failures {
        println!("EVENTS FAILED {f}");
    }
}

pub async fn delete_cmd(
    config: &Config,
    store: Arc<Store>,
    args: DeleteArgs,
) -> anyhow::Result<i32> {
    let syncer = open(config, store).await?;
    let symbol = Symbol::new(&args.symbol).map_err(|e| anyhow::anyhow!("symbol: {e}"))?;
    let interval: Interval = args
        .interval
        .parse()
        .map_err(|e| anyhow::anyhow!("--timeframe: {e}"))?;
    let (start, end) = (time("start", &args.start)?, time("end", &args.end)?);
    if start >= end {
        bail!("--end must be after --start");
    }
    let s = syncer.delete_bars(&symbol, interval, start, end).await?;
    println!(
        "deleted {} rows of {symbol} {interval} ({} files rewritten)",
        s.rows, s.files_removed
    );
    Ok(0)
}
