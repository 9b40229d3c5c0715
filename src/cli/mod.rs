//! The `tickvault` command line: argument parsing and the commands' output. `main.rs` only calls
//! [`run`], which opens the store and hands each command to its module below. The top layer
//! beside the server: it uses the library, and nothing in the library uses it.

pub mod actions;
pub mod bars;
pub mod demo;
pub mod import;
pub mod ingest;
pub mod maintenance;
pub mod snapshot;
pub mod sql;
pub mod sync;
pub mod wal;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use crate::Store;
use crate::config::{Config, GlobalOverrides, Overrides};
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
    Import(import::ImportArgs),
    /// Send NDJSON or CSV bars to a running server's live tier (POST /v1/write).
    Ingest(ingest::IngestArgs),
    /// Run a read-only SQL query over `bars` and the views from sql/.
    Sql(sql::SqlArgs),
    /// Load bars of one or more symbols (the backtest loader), raw or adjusted.
    Bars(bars::BarsArgs),
    /// Rows, files, bytes and time range per timeframe and symbol.
    Stats(maintenance::StatsArgs),
    /// Merge partitions that have several files into one file each.
    Compact,
    /// Delete files no commit references, after a grace period.
    Gc(maintenance::GcArgs),
    /// Check the commit log and the catalog against the files; exits non-zero on a problem.
    Check(maintenance::CheckArgs),
    /// Track symbols for stage 2 of the sync (add, list, remove).
    Symbols(sync::SymbolsArgs),
    /// Run stage 2 once: fetch what tracked symbols lack (or a forced range) from providers.
    Backfill(sync::BackfillArgs),
    /// Delete a range of one symbol's bars (stage 2 heals it if the symbol is tracked).
    Delete(sync::DeleteArgs),
    /// The write-ahead log's damage report: list damaged segments kept aside, or clear them.
    Wal(wal::WalArgs),
    /// Corporate actions (splits and dividends): import your own from CSV, or list them.
    Actions(actions::ActionsArgs),
    /// Named snapshots: table versions pinned for reproducible reads (create, list, delete).
    Snapshot(snapshot::SnapshotArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub overrides: Overrides,
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
        Command::Wal(args) => return wal::wal_cmd(&config, args),
        _ => {}
    }
    let read_only = match &cli.command {
        Command::Sql(_) | Command::Bars(_) | Command::Stats(_) | Command::Check(_) => true,
        Command::Actions(args) => actions::is_read_only(args),
        Command::Snapshot(args) => snapshot::is_read_only(args),
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
        Command::Import(args) => import::import_cmd(&store, args).await,
        Command::Actions(args) => actions::actions_cmd(&store, args).await,
        Command::Sql(args) => sql::sql_cmd(&store, args).await,
        Command::Snapshot(args) => snapshot::snapshot_cmd(&store, args).await,
        Command::Bars(args) => bars::bars_cmd(&store, args).await,
        Command::Stats(args) => maintenance::stats_cmd(&store, args),
        Command::Compact => maintenance::compact_cmd(&store).await,
        Command::Gc(args) => maintenance::gc_cmd(&store, args).await,
        Command::Check(args) => maintenance::check_cmd(&store, args).await,
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
