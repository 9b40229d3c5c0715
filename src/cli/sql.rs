//! `tickvault sql`: a read-only query over `bars` and the views, to standard output or a file.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::format::{Format, write_stream};
use crate::{Store, TableVersion};

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
    /// Query this table version (a catalog commit number) as it was committed.
    #[arg(long, value_name = "N", conflicts_with = "snapshot")]
    pub version: Option<u64>,
    /// Query the table version this named snapshot pins.
    #[arg(long, value_name = "NAME")]
    pub snapshot: Option<String>,
    /// The query.
    pub query: String,
}

pub async fn sql_cmd(store: &Store, args: SqlArgs) -> anyhow::Result<i32> {
    let format = args.format.unwrap_or(
        if std::io::stdout().is_terminal() && args.output.is_none() {
            Format::Table
        } else {
            Format::Csv
        },
    );
    let before = store.requests();
    let version = TableVersion::from_options(args.version, args.snapshot)?;
    let stream = match store.view(&version).await? {
        Some(view) => view.engine().sql_stream(&args.query).await?,
        None => store.engine().sql_stream(&args.query).await?,
    };
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
