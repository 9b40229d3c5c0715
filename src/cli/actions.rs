//! `tickvault actions import FILE.csv` and `tickvault actions list [SYMBOL]`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;

use crate::Store;
use crate::actions::input::read_events_csv;
use crate::actions::{Merged, SOURCE_IMPORT, sql};
use crate::format::{Format, write_stream};
use crate::model::Symbol;

#[derive(Debug, Args)]
pub struct ActionsArgs {
    #[command(subcommand)]
    pub command: ActionsCommand,
}

#[derive(Debug, Subcommand)]
pub enum ActionsCommand {
    /// Import splits and dividends from a CSV file whose header names symbol, ex_date, kind
    /// (split or dividend), ratio (new shares per old: 4 for 4:1, 0.1 for 1:10) and amount
    /// (cash per share). All or nothing: one bad row imports nothing.
    Import {
        /// The CSV file.
        file: PathBuf,
    },
    /// List the corporate actions the store holds, of one symbol or of all.
    List {
        symbol: Option<String>,
        /// Output format; `table` on a terminal, `csv` otherwise.
        #[arg(long, value_enum)]
        format: Option<Format>,
    },
}

/// Whether the command only reads (the store is then opened read-only).
pub fn is_read_only(args: &ActionsArgs) -> bool {
    matches!(args.command, ActionsCommand::List { .. })
}

pub async fn actions_cmd(store: &Store, args: ActionsArgs) -> anyhow::Result<i32> {
    match args.command {
        ActionsCommand::Import { file } => {
            let now = store.clock().now_micros();
            let events = read_events_csv(&file, SOURCE_IMPORT, now)?;
            let count = events.len();
            let merged = store.import_actions(events).await?;
            println!(
                "imported {count} corporate actions from {}: {} new, {} updated, {} unchanged",
                file.display(),
                merged.inserted,
                merged.updated,
                merged.unchanged
            );
            print_disagreements(&mut std::io::stdout(), &merged)?;
            Ok(0)
        }
        ActionsCommand::List { symbol, format } => {
            let symbol = symbol
                .as_deref()
                .map(Symbol::new)
                .transpose()
                .map_err(|e| anyhow::anyhow!("symbol: {e}"))?;
            let set = store.actions().snapshot();
            let batch = match &symbol {
                Some(s) => sql::batch(set.for_symbol(s)),
                None => sql::batch(set.iter()),
            };
            let format = format.unwrap_or(if std::io::stdout().is_terminal() {
                Format::Table
            } else {
                Format::Csv
            });
            let stream = Box::pin(RecordBatchStreamAdapter::new(
                sql::schema(),
                futures::stream::iter([Ok(batch)]),
            ));
            let stdout = std::io::BufWriter::new(std::io::stdout());
            let (_, mut out) = write_stream(stream, format, stdout)
                .await
                .context("writing the list")?;
            out.flush()?;
            Ok(0)
        }
    }
}

/// One line per disagreement between sources: `DISAGREEMENT AAPL 2020-08-31: ...`.
pub fn print_disagreements(out: &mut impl Write, merged: &Merged) -> std::io::Result<()> {
    for d in &merged.disagreements {
        writeln!(out, "DISAGREEMENT {d}")?;
    }
    Ok(())
}
