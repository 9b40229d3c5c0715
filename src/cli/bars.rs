//! `tickvault bars`: the backtest loader from the command line, raw or adjusted.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::adjust::{Adjust, Adjustment, parse_as_of};
use crate::format::{Format, write_stream};
use crate::model::Interval;
use crate::model::time::parse_time;
use crate::{LoadRequest, Store, TableVersion};

#[derive(Debug, Args)]
pub struct BarsArgs {
    /// One or more symbols; rows come ordered by (ts, symbol).
    #[arg(required = true)]
    pub symbols: Vec<String>,
    /// First bar (inclusive): RFC 3339 or YYYY-MM-DD (midnight UTC).
    #[arg(long)]
    pub from: Option<String>,
    /// End (exclusive): RFC 3339 or YYYY-MM-DD (midnight UTC).
    #[arg(long)]
    pub to: Option<String>,
    /// Bar length: 1m 5m 15m 30m 1h 4h 1d 1w.
    #[arg(long, visible_alias = "interval", default_value = "1d")]
    pub timeframe: String,
    /// Prices as stored (`none`), split-adjusted (`splits`) or split- and dividend-adjusted
    /// (`all`); the events applied are listed on stderr.
    #[arg(long, default_value = "none")]
    pub adjust: String,
    /// Point in time: apply only events with ex-date <= this date (YYYY-MM-DD).
    #[arg(long)]
    pub as_of: Option<String>,
    /// Comma-separated columns of `bars` [default: all].
    #[arg(long)]
    pub columns: Option<String>,
    /// Output format; `table` on a terminal, `csv` otherwise.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Write the rows to this file instead of standard output.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Load from this table version (a catalog commit number) as it was committed; raw only.
    #[arg(long, value_name = "N", conflicts_with = "snapshot")]
    pub version: Option<u64>,
    /// Load from the table version this named snapshot pins; raw only.
    #[arg(long, value_name = "NAME")]
    pub snapshot: Option<String>,
}

/// What the arguments ask for, checked before the store is read.
pub fn request(args: &BarsArgs) -> anyhow::Result<LoadRequest> {
    let interval: Interval = args
        .timeframe
        .parse()
        .map_err(|e| anyhow::anyhow!("--timeframe: {e}"))?;
    let time = |flag: &str, v: &Option<String>| {
        v.as_deref()
            .map(|s| parse_time(s).map_err(|e| anyhow::anyhow!("{flag}: {e}")))
            .transpose()
    };
    let (start, end) = (time("--from", &args.from)?, time("--to", &args.to)?);
    if let (Some(s), Some(e)) = (start, end)
        && s >= e
    {
        anyhow::bail!("--to: must be after --from (--from is inclusive, --to exclusive)");
    }
    let adjust: Adjust = args
        .adjust
        .parse()
        .map_err(|e| anyhow::anyhow!("--adjust: {e}"))?;
    let as_of = args
        .as_of
        .as_deref()
        .map(|s| parse_as_of(s).map_err(|e| anyhow::anyhow!("--as-of: {e}")))
        .transpose()?;
    if as_of.is_some() && adjust == Adjust::None {
        anyhow::bail!("--as-of: needs --adjust splits or --adjust all (raw bars do not change)");
    }
    let columns = args.columns.as_deref().map(|c| {
        c.split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect()
    });
    Ok(LoadRequest {
        symbols: args.symbols.clone(),
        interval,
        start,
        end,
        columns,
        adjustment: Adjustment::new(adjust, as_of),
    })
}

pub async fn bars_cmd(store: &Store, args: BarsArgs) -> anyhow::Result<i32> {
    let format = args.format.unwrap_or(
        if std::io::stdout().is_terminal() && args.output.is_none() {
            Format::Table
        } else {
            Format::Csv
        },
    );
    let mut err = std::io::stderr();
    match &args.output {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            write_bars(
                store,
                &args,
                format,
                std::io::BufWriter::new(file),
                &mut err,
            )
            .await?;
        }
        None => {
            let out = std::io::BufWriter::new(std::io::stdout());
            write_bars(store, &args, format, out, &mut err).await?;
        }
    }
    Ok(0)
}

/// Loads the bars `args` ask for into `out`, and says on `notes` which events were applied
/// (one line each: `adjusted (all): AAPL 2020-08-31 split ratio=4 factor=0.25`).
pub async fn write_bars<W: Write + Send>(
    store: &Store,
    args: &BarsArgs,
    format: Format,
    out: W,
    notes: &mut impl Write,
) -> anyhow::Result<W> {
    let request = request(args)?;
    let version = TableVersion::from_options(args.version, args.snapshot.clone())?;
    let loaded = match store.view(&version).await? {
        Some(view) => view.load_bars_adjusted(&request).await?,
        None => store.load_bars_adjusted(&request).await?,
    };
    let adjust = request.adjustment.adjust;
    if adjust != Adjust::None {
        if loaded.applied.is_empty() {
            writeln!(notes, "adjusted ({adjust}): no event applies to these bars")?;
        }
        for a in &loaded.applied {
            writeln!(notes, "adjusted ({adjust}): {a}")?;
        }
    }
    let (_, mut out) = write_stream(loaded.stream, format, out).await?;
    out.flush()?;
    Ok(out)
}
