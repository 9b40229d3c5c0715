//! Import parsing: reads bar files (CSV, gzip CSV, Parquet), validates every row against the
//! model's rules and returns columnar batches per series. Pure parsing: nothing is stored here.
//!
//! # Columns
//! Header names are matched case-insensitively after trimming (and after a UTF-8 BOM):
//! - timestamp (required): `ts`, `timestamp`, `time`, `date`, `datetime` or `timestamp_utc`;
//! - `open`, `high`, `low`, `close`, `volume` (required);
//! - `vwap`, `trades` (optional; an empty cell is null; trades may be written `79` or `79.0`);
//! - `symbol` or `ticker` (optional).
//!
//! - `split_coefficient`, `dividend_amount` (optional, as in Alpha Vantage's daily adjusted
//!   CSVs): corporate actions on the row's date (its UTC date, or its local date in `tz` for
//!   intraday bars). A coefficient other than 1 is a split of that ratio, an amount above 0 a
//!   dividend; a coefficient <= 0 or not finite, a negative amount, or an amount not below the
//!   close of the file's previous bar is refused with the line (or Parquet row), or with
//!   [`BadEvents::Skip`] left out and listed; see [`read_file_with_events`].
//!
//! Other columns (`adjusted_close`, ...) are ignored: adjusted prices are computed when
//! reading. Two columns that name the same thing (say `date` and `time`) are an error rather
//! than a guess.
//!
//! # Symbols
//! Each row's symbol comes from the first of these that applies:
//! 1. the file's `symbol`/`ticker` column;
//! 2. [`ImportOptions::symbol`] (`--symbol`);
//! 3. [`ImportOptions::symbol_pattern`] (`--symbol-pattern`): its first capture group (or the
//!    whole match if it has none) applied to the file NAME, so `DA-(.+)-T-` turns
//!    `DA-AAPL-T-2021-04-21.csv` into `AAPL`; a file name it does not match is an error;
//! 4. the nearest `symbol=S` directory above the file (hive partitioning, as written by
//!    `gen_bars.py`: `symbol=AAPL/year=2021/part-0.parquet`), `S` percent-decoded;
//! 5. the file stem: the name without `.csv`, `.csv.gz` or `.parquet` (else without its last
//!    extension, after a `.gz`: `aapl.us.txt` gives `aapl.us`).
//!
//! # File formats
//! A file's name says its format when it ends `.csv`, `.csv.gz` or `.parquet`. Otherwise its
//! first bytes do: Parquet's magic `PAR1`, gzip's `1f 8b` (gzip-compressed CSV), else CSV. So a
//! file named directly is read whatever its extension (Stooq's `.txt`, a `.dat`, no extension).
//! [`ImportOptions::format`] (`--format csv|parquet`) reads every file as that format, whatever
//! its name; a CSV file that starts with gzip's magic is decompressed first.
//!
//! # Timestamps
//! See [`crate::model::time::parse_timestamp`]. Naive date-times are local times in [`ImportOptions::tz`]; bare
//! dates are 00:00 UTC of that date. A naive time a daylight-saving change skips is refused,
//! and one it repeats is refused unless [`ImportOptions::ambiguous`] says how to read it. Epoch
//! integers take [`ImportOptions::epoch_unit`], else the unit their magnitude tells (see
//! [`EpochUnit`]); one whose magnitude tells none is refused.
//!
//! # CSV details
//! The first row is the header; the delimiter is `,` unless the header line holds more `;`,
//! tabs or `|`. Fields are trimmed of ASCII whitespace before parsing. Errors name the file and
//! the 1-based line (the header is line 1). Every row of a file must have as many fields as the
//! header. The first bad row aborts the file.
//!
//! # Parquet details
//! Same column names. The timestamp column may be Timestamp (any unit; without a time zone its
//! values are naive local times in `tz`), Date32/Date64, an integer epoch (unit by magnitude, as
//! for CSV) or a string. Numeric columns of any numeric type (or strings) are read as f64.
//! Errors name the 1-based row.

mod csv_input;
mod events;
mod parquet_input;

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Component, Path, PathBuf};

use chrono_tz::Tz;

use crate::actions::ActionRule;
use crate::actions::Refused;
use crate::actions::input::SourcedEvent;
use crate::batch::{BarBuilder, SeriesBatch, SeriesKey};
use crate::model::{Interval, Rule, Symbol};

use crate::model::time::timestamp;
pub use crate::model::time::{Ambiguous, EpochUnit};
pub use csv_input::read_csv_bytes;

/// How to read import files.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The bars' interval (the CLI's default is 1d).
    pub interval: Interval,
    /// `--symbol`: the symbol of files without a symbol column.
    pub symbol: Option<Symbol>,
    /// `--symbol-pattern`: first capture group applied to the file name.
    pub symbol_pattern: Option<regex::Regex>,
    /// `--tz`: the zone of naive date-times (default UTC).
    pub tz: Tz,
    /// `--ambiguous`: how a naive time a daylight-saving change repeats is read (default:
    /// refused).
    pub ambiguous: Ambiguous,
    /// `--epoch-unit`: the unit of epoch integers (default: by magnitude, where unambiguous).
    pub epoch_unit: Option<EpochUnit>,
    /// `--format`: read every file as this format, whatever its name (default: by the name, else
    /// by the file's first bytes).
    pub format: Option<InputFormat>,
    /// `--skip-events`: ignore the `split_coefficient` / `dividend_amount` columns (bars only),
    /// for vendor files whose events break the rules.
    pub skip_events: bool,
    /// `--bad-events`: what an event of those columns that breaks a rule does (default: it
    /// refuses the import).
    pub bad_events: BadEvents,
}

/// What an import does with an event of its files' `split_coefficient` / `dividend_amount`
/// columns that breaks a rule (a coefficient <= 0, not finite or not a number, a negative
/// amount, an amount not below the previous close).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BadEvents {
    /// Refuse the import, naming the file, line (or row) and rule: nothing is stored.
    #[default]
    Refuse,
    /// Leave the event out, and list it (file, line, rule) in the summary and a warning: the
    /// bars and every good event are imported.
    Skip,
}

impl std::str::FromStr for BadEvents {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "refuse" => Ok(BadEvents::Refuse),
            "skip" => Ok(BadEvents::Skip),
            other => Err(format!(
                "unknown --bad-events {other:?} (expected refuse or skip)"
            )),
        }
    }
}

/// A format `--format` can force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// CSV, gzip-compressed or not (told by the file's first bytes).
    Csv,
    Parquet,
}

impl std::str::FromStr for InputFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "csv" => Ok(InputFormat::Csv),
            "parquet" => Ok(InputFormat::Parquet),
            other => Err(format!(
                "unknown format {other:?} (expected csv or parquet)"
            )),
        }
    }
}

impl Default for ImportOptions {
    /// Daily bars, symbol from the file, UTC.
    fn default() -> Self {
        Self {
            interval: Interval::D1,
            symbol: None,
            symbol_pattern: None,
            tz: Tz::UTC,
            ambiguous: Ambiguous::Refuse,
            epoch_unit: None,
            format: None,
            skip_events: false,
            bad_events: BadEvents::Refuse,
        }
    }
}

/// Where in a file a bad row is: a CSV line (the header is line 1) or a 1-based Parquet row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    Line(u64),
    Row(u64),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Line(n) => write!(f, "line {n}"),
            Location::Row(n) => write!(f, "row {n}"),
        }
    }
}

/// What is wrong with one row.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RowError {
    #[error("cannot parse {column} {value:?} as a number")]
    BadNumber { column: &'static str, value: String },
    #[error("cannot parse trades {0:?} as a whole number")]
    BadTrades(String),
    #[error(
        "cannot parse timestamp {0:?} (expected RFC 3339, YYYY-MM-DD[ HH:MM[:SS[.f]]], \
         M/D/YYYY[ H:MM[:SS]] or epoch seconds/ms/µs/ns)"
    )]
    BadTimestamp(String),
    #[error(
        "local time {value:?} does not exist in {tz} (skipped by a daylight-saving change; \
         refused whatever --ambiguous says)"
    )]
    NonexistentLocalTime { value: String, tz: String },
    #[error(
        "local time {value:?} is ambiguous in {tz} (a daylight-saving change repeats it); \
         --ambiguous earliest, latest or infer says which instant is meant"
    )]
    AmbiguousLocalTime { value: String, tz: String },
    #[error(
        "cannot infer which {value:?} is meant in {tz}: with --ambiguous infer the rows through \
         a repeated hour must be in time order (the clock steps back once)"
    )]
    AmbiguousOrder { value: String, tz: String },
    #[error(
        "epoch integer {0} has no unit its magnitude tells (seconds are read from 1e8 to 1e10, \
         milliseconds from 1e11 to 1e13, microseconds from 1e14 to 1e16, nanoseconds from 1e17: \
         1973 to 2286 in each); give --epoch-unit s, ms, us or ns"
    )]
    AmbiguousEpoch(String),
    #[error("{0} is missing (null)")]
    Null(&'static str),
    #[error("has {found} fields but the header has {expected}")]
    FieldCount { found: usize, expected: usize },
    #[error(transparent)]
    Rule(#[from] Rule),
    #[error(transparent)]
    Action(#[from] ActionRule),
}

/// An import failure. The message names the file, and for a bad row its line (CSV) or row
/// (Parquet) and the rule it broke.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{}: no such file or directory", .0.display())]
    NotFound(PathBuf),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Not readable as its format claims (corrupt Parquet, a CSV without a header, ...).
    #[error("{}: {message}", path.display())]
    Malformed { path: PathBuf, message: String },
    #[error("{}: {}", path.display(), missing_column_message(column))]
    MissingColumn { path: PathBuf, column: &'static str },
    #[error("{}: columns {first:?} and {second:?} both name the {role} column", path.display())]
    AmbiguousColumn {
        path: PathBuf,
        role: &'static str,
        first: String,
        second: String,
    },
    #[error("{}: column {column:?} has unsupported type {data_type}", path.display())]
    UnsupportedColumnType {
        path: PathBuf,
        column: String,
        data_type: String,
    },
    #[error("{}: --symbol-pattern {pattern:?} does not match the file name {name:?}", path.display())]
    SymbolPatternNoMatch {
        path: PathBuf,
        pattern: String,
        name: String,
    },
    /// The symbol taken from the file name or path is not a valid symbol.
    #[error("{}: {origin}: {rule}", path.display())]
    FileSymbol {
        path: PathBuf,
        origin: &'static str,
        rule: Rule,
    },
    #[error("{} {at}: {error}", path.display())]
    Row {
        path: PathBuf,
        at: Location,
        error: RowError,
    },
}

fn missing_column_message(column: &str) -> String {
    if column == Role::Ts.name() {
        format!(
            "no {column} column (expected one of {})",
            TS_ALIASES.join(", ")
        )
    } else {
        format!("no {column} column")
    }
}

impl ImportError {
    pub fn kind(&self) -> crate::error::ErrorKind {
        use crate::error::ErrorKind;
        match self {
            ImportError::Io { .. } => ErrorKind::Internal,
            ImportError::Row { .. } => ErrorKind::InvalidRow,
            ImportError::NotFound(_)
            | ImportError::Malformed { .. }
            | ImportError::MissingColumn { .. }
            | ImportError::AmbiguousColumn { .. }
            | ImportError::UnsupportedColumnType { .. }
            | ImportError::SymbolPatternNoMatch { .. }
            | ImportError::FileSymbol { .. } => ErrorKind::InvalidInput,
        }
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ImportError + '_ {
        move |source| ImportError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    fn malformed(path: &Path, message: impl fmt::Display) -> ImportError {
        ImportError::Malformed {
            path: path.to_path_buf(),
            message: message.to_string(),
        }
    }
}

/// The input formats, by file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Csv,
    CsvGz,
    Parquet,
}

const EXTENSIONS: [(&str, Format); 3] = [
    (".csv.gz", Format::CsvGz),
    (".csv", Format::Csv),
    (".parquet", Format::Parquet),
];

fn format_of(path: &Path) -> Option<Format> {
    let name = path.file_name()?.to_string_lossy().to_ascii_lowercase();
    EXTENSIONS
        .iter()
        .find(|(ext, _)| name.len() > ext.len() && name.ends_with(ext))
        .map(|&(_, f)| f)
}

const PARQUET_MAGIC: &[u8] = b"PAR1";
const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];

/// The format a file is read as: `forced` if given (CSV gzip-compressed if it starts like
/// gzip), else by its name, else by its first bytes (see the module docs).
fn resolve_format(path: &Path, forced: Option<InputFormat>) -> Result<Format, ImportError> {
    let starts_with = |magic: &[u8]| -> Result<bool, ImportError> {
        use std::io::Read;
        let mut head = [0u8; 4];
        let mut file = std::fs::File::open(path).map_err(ImportError::io(path))?;
        let mut n = 0;
        while n < magic.len() {
            match file.read(&mut head[n..magic.len()]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ImportError::io(path)(e)),
            }
        }
        Ok(&head[..n] == magic)
    };
    let csv = || -> Result<Format, ImportError> {
        Ok(if starts_with(GZIP_MAGIC)? {
            Format::CsvGz
        } else {
            Format::Csv
        })
    };
    match forced {
        Some(InputFormat::Parquet) => Ok(Format::Parquet),
        Some(InputFormat::Csv) => csv(),
        None => match format_of(path) {
            Some(f) => Ok(f),
            None if starts_with(PARQUET_MAGIC)? => Ok(Format::Parquet),
            None => csv(),
        },
    }
}

/// Expands files and directories into the input files to read.
///
/// Directories are walked recursively for files ending `.csv`, `.csv.gz` or `.parquet`
/// (case-insensitive), skipping hidden entries (names starting with `.`); each directory's files
/// are sorted by path. Arguments keep their order (later files win on duplicate timestamps when
/// imported in this order) and a file reached twice is listed once. A path that does not exist is
/// an error naming it. A file named directly is taken whatever its name (its first bytes tell
/// its format).
pub fn collect_inputs(paths: &[PathBuf]) -> Result<Vec<PathBuf>, ImportError> {
    collect_inputs_as(paths, None)
}

/// [`collect_inputs`], where a `format` (`--format`) makes a directory give every regular file
/// in it (hidden entries still skipped), whatever its name.
pub fn collect_inputs_as(
    paths: &[PathBuf],
    format: Option<InputFormat>,
) -> Result<Vec<PathBuf>, ImportError> {
    let any_name = format.is_some();
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    for path in paths {
        let meta = std::fs::metadata(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                ImportError::NotFound(path.clone())
            } else {
                ImportError::io(path)(e)
            }
        })?;
        let mut found = Vec::new();
        if meta.is_dir() {
            walk(path, any_name, &mut found)?;
            found.sort();
        } else {
            found.push(path.clone());
        }
        for f in found {
            if seen.insert(f.clone()) {
                out.push(f);
            }
        }
    }
    Ok(out)
}

fn walk(dir: &Path, any_name: bool, out: &mut Vec<PathBuf>) -> Result<(), ImportError> {
    for entry in std::fs::read_dir(dir).map_err(ImportError::io(dir))? {
        let entry = entry.map_err(ImportError::io(dir))?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        let meta = std::fs::metadata(&path).map_err(ImportError::io(&path))?;
        if meta.is_dir() {
            walk(&path, any_name, out)?;
        } else if meta.is_file() && (any_name || format_of(&path).is_some()) {
            out.push(path);
        }
    }
    Ok(())
}

/// Rows of one file's batches whose key an earlier row of the same file already gave (the
/// writer keeps the later row), so an import can say how many rows it stores.
pub fn repeated_keys(series: &[SeriesBatch]) -> usize {
    let mut by_key: HashMap<&SeriesKey, Vec<i64>> = HashMap::new();
    for s in series {
        by_key
            .entry(&s.key)
            .or_default()
            .extend(crate::batch::ts_column(&s.batch).values().iter());
    }
    by_key
        .into_values()
        .map(|mut ts| {
            ts.sort_unstable();
            ts.windows(2).filter(|w| w[0] == w[1]).count()
        })
        .sum()
}

/// What one file holds: its bars, and the corporate actions its event columns carry.
#[derive(Debug, Default)]
pub struct FileContents {
    pub series: Vec<SeriesBatch>,
    /// Checked against the file's own bars where it has the previous session; the others
    /// still need the store's (see `Store::import_files`).
    pub events: Vec<SourcedEvent>,
    /// With [`BadEvents::Skip`], the events left out: where each was and the rule it broke.
    pub skipped: Vec<Refused>,
}

/// Reads and validates one file; returns one [`SeriesBatch`] per symbol found, in order of first
/// appearance, rows in file order (the writer sorts and dedupes later, later rows winning). A
/// file without data rows gives no batches. The events of its `split_coefficient` and
/// `dividend_amount` columns are checked and dropped: [`read_file_with_events`] keeps them.
pub fn read_file(path: &Path, opts: &ImportOptions) -> Result<Vec<SeriesBatch>, ImportError> {
    read_file_with_events(path, opts).map(|c| c.series)
}

/// [`read_file`], with the corporate actions of a CSV's event columns.
pub fn read_file_with_events(
    path: &Path,
    opts: &ImportOptions,
) -> Result<FileContents, ImportError> {
    match resolve_format(path, opts.format)? {
        Format::Csv => csv_input::read_csv(path, opts, false),
        Format::CsvGz => csv_input::read_csv(path, opts, true),
        Format::Parquet => parquet_input::read_parquet(path, opts),
    }
}

// ---------------------------------------------------------------------------------------------
// Columns

const TS_ALIASES: [&str; 6] = [
    "ts",
    "timestamp",
    "time",
    "date",
    "datetime",
    "timestamp_utc",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Ts,
    Open,
    High,
    Low,
    Close,
    Volume,
    Vwap,
    Trades,
    Symbol,
    SplitCoefficient,
    DividendAmount,
}

impl Role {
    const COUNT: usize = 11;

    fn name(self) -> &'static str {
        match self {
            Role::Ts => "timestamp",
            Role::Open => "open",
            Role::High => "high",
            Role::Low => "low",
            Role::Close => "close",
            Role::Volume => "volume",
            Role::Vwap => "vwap",
            Role::Trades => "trades",
            Role::Symbol => "symbol",
            Role::SplitCoefficient => "split_coefficient",
            Role::DividendAmount => "dividend_amount",
        }
    }

    fn of(header: &str) -> Option<Role> {
        let name = header.trim().trim_start_matches('\u{feff}').trim();
        let lower = name.to_ascii_lowercase();
        let role = match lower.as_str() {
            n if TS_ALIASES.contains(&n) => Role::Ts,
            "open" => Role::Open,
            "high" => Role::High,
            "low" => Role::Low,
            "close" => Role::Close,
            "volume" => Role::Volume,
            "vwap" => Role::Vwap,
            "trades" => Role::Trades,
            "symbol" | "ticker" => Role::Symbol,
            "split_coefficient" => Role::SplitCoefficient,
            "dividend_amount" => Role::DividendAmount,
            _ => return None,
        };
        Some(role)
    }
}

/// Positions of the columns a file provides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Columns {
    ts: usize,
    open: usize,
    high: usize,
    low: usize,
    close: usize,
    volume: usize,
    vwap: Option<usize>,
    trades: Option<usize>,
    symbol: Option<usize>,
    split: Option<usize>,
    dividend: Option<usize>,
}

impl Columns {
    /// Maps header names to roles; errors name the missing or doubled column.
    fn map<S: AsRef<str>>(path: &Path, names: &[S]) -> Result<Columns, ImportError> {
        let mut found = [None::<usize>; Role::COUNT];
        for (i, name) in names.iter().enumerate() {
            let Some(role) = Role::of(name.as_ref()) else {
                continue;
            };
            if let Some(prev) = found[role as usize] {
                return Err(ImportError::AmbiguousColumn {
                    path: path.to_path_buf(),
                    role: role.name(),
                    first: names[prev].as_ref().trim().to_string(),
                    second: name.as_ref().trim().to_string(),
                });
            }
            found[role as usize] = Some(i);
        }
        let required = |role: Role| {
            found[role as usize].ok_or_else(|| ImportError::MissingColumn {
                path: path.to_path_buf(),
                column: role.name(),
            })
        };
        Ok(Columns {
            ts: required(Role::Ts)?,
            open: required(Role::Open)?,
            high: required(Role::High)?,
            low: required(Role::Low)?,
            close: required(Role::Close)?,
            volume: required(Role::Volume)?,
            vwap: found[Role::Vwap as usize],
            trades: found[Role::Trades as usize],
            symbol: found[Role::Symbol as usize],
            split: found[Role::SplitCoefficient as usize],
            dividend: found[Role::DividendAmount as usize],
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Symbols

/// The symbol of a file without a symbol column (see the module docs for the precedence).
fn file_symbol(path: &Path, opts: &ImportOptions) -> Result<Symbol, ImportError> {
    if let Some(s) = &opts.symbol {
        return Ok(s.clone());
    }
    let bad = |origin: &'static str| {
        move |rule| ImportError::FileSymbol {
            path: path.to_path_buf(),
            origin,
            rule,
        }
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Some(re) = &opts.symbol_pattern {
        let no_match = || ImportError::SymbolPatternNoMatch {
            path: path.to_path_buf(),
            pattern: re.as_str().to_string(),
            name: name.clone(),
        };
        let caps = re.captures(&name).ok_or_else(no_match)?;
        let m = if re.captures_len() > 1 {
            caps.get(1).ok_or_else(no_match)?
        } else {
            caps.get(0).expect("group 0 is the match")
        };
        return Symbol::new(m.as_str()).map_err(bad("symbol from --symbol-pattern"));
    }
    if let Some(s) = hive_symbol(path) {
        return Symbol::new(&s).map_err(bad("symbol from the symbol= directory"));
    }
    Symbol::new(file_stem(&name)).map_err(bad("symbol from the file name"))
}

/// The value of the nearest `symbol=...` directory above `path`, percent-decoded.
fn hive_symbol(path: &Path) -> Option<String> {
    path.parent()?.components().rev().find_map(|c| match c {
        Component::Normal(os) => {
            let s = os.to_string_lossy();
            let (key, value) = s.split_once('=')?;
            key.eq_ignore_ascii_case("symbol")
                .then(|| percent_decode(value))
        }
        _ => None,
    })
}

/// Decodes `%XX` escapes (as hive partitioning writes them); anything else is kept as is.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2]))
        {
            out.push(h * 16 + l);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// The file name without `.csv`, `.csv.gz` or `.parquet` (or its last extension otherwise, after
/// a `.gz`).
fn file_stem(name: &str) -> &str {
    let lower = name.to_ascii_lowercase();
    for (ext, _) in EXTENSIONS {
        if lower.len() > ext.len() && lower.ends_with(ext) {
            return &name[..name.len() - ext.len()];
        }
    }
    let name = match lower.strip_suffix(".gz") {
        Some(rest) if !rest.is_empty() => &name[..rest.len()],
        _ => name,
    };
    match name.rfind('.') {
        Some(i) if i > 0 => &name[..i],
        _ => name,
    }
}

// ---------------------------------------------------------------------------------------------
// Collecting rows per series

/// Builders per symbol, in order of first appearance.
struct Sink {
    interval: Interval,
    series: Vec<(Symbol, BarBuilder)>,
    /// The slot of the last symbol looked up (files are usually one symbol or grouped by symbol).
    last: usize,
    index: HashMap<String, usize>,
}

impl Sink {
    /// A sink whose rows all go to `symbol` (slot 0), or that learns symbols row by row.
    fn new(interval: Interval, symbol: Option<Symbol>, rows_hint: usize) -> Self {
        let mut sink = Sink {
            interval,
            series: Vec::new(),
            last: 0,
            index: HashMap::new(),
        };
        if let Some(s) = symbol {
            sink.index.insert(s.as_str().to_string(), 0);
            sink.series
                .push((s, BarBuilder::with_capacity(rows_hint.min(1 << 22))));
        }
        sink
    }

    /// The slot of a symbol given as raw bytes (trimmed), validating new symbols.
    #[inline]
    fn slot(&mut self, raw: &[u8]) -> Result<usize, RowError> {
        let raw = raw.trim_ascii();
        if let Some((sym, _)) = self.series.get(self.last)
            && sym.as_str().as_bytes() == raw
        {
            return Ok(self.last);
        }
        self.slot_slow(raw)
    }

    fn slot_slow(&mut self, raw: &[u8]) -> Result<usize, RowError> {
        let s = std::str::from_utf8(raw)
            .map_err(|_| Rule::BadSymbol(String::from_utf8_lossy(raw).into_owned()))?;
        if let Some(&i) = self.index.get(s) {
            self.last = i;
            return Ok(i);
        }
        let sym = Symbol::new(s)?;
        let i = self.series.len();
        self.index.insert(s.to_string(), i);
        self.series.push((sym, BarBuilder::with_capacity(1024)));
        self.last = i;
        Ok(i)
    }

    #[allow(clippy::too_many_arguments)]
    #[inline]
    fn push(
        &mut self,
        slot: usize,
        ts: i64,
        open: f64,
        high: f64,
        low: f64,
        close: f64,
        volume: f64,
        vwap: Option<f64>,
        trades: Option<i64>,
    ) -> Result<(), RowError> {
        self.series[slot].1.push_checked(
            self.interval,
            ts,
            open,
            high,
            low,
            close,
            volume,
            vwap,
            trades,
        )?;
        Ok(())
    }

    fn finish(self) -> Vec<SeriesBatch> {
        let interval = self.interval;
        self.series
            .into_iter()
            .filter(|(_, b)| !b.is_empty())
            .map(|(symbol, b)| SeriesBatch {
                key: SeriesKey { symbol, interval },
                batch: b.finish(),
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Field parsing shared by the readers

fn lossy(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw.trim_ascii()).into_owned()
}

#[inline]
fn parse_f64(raw: &[u8]) -> Option<f64> {
    let t = raw.trim_ascii();
    if t.is_empty() {
        return None;
    }
    std::str::from_utf8(t).ok()?.parse().ok()
}

/// A required number; empty or unparsable is an error naming the column and the text.
#[inline]
fn required_f64(raw: &[u8], column: &'static str) -> Result<f64, RowError> {
    parse_f64(raw).ok_or_else(|| RowError::BadNumber {
        column,
        value: lossy(raw),
    })
}

/// An optional number: empty is null.
#[inline]
fn optional_f64(raw: &[u8], column: &'static str) -> Result<Option<f64>, RowError> {
    if raw.trim_ascii().is_empty() {
        return Ok(None);
    }
    required_f64(raw, column).map(Some)
}

/// A trade count: empty is null; `79` and `79.0` are 79; `79.5` is an error.
#[inline]
fn optional_trades(raw: &[u8]) -> Result<Option<i64>, RowError> {
    let t = raw.trim_ascii();
    if t.is_empty() {
        return Ok(None);
    }
    let bad = || RowError::BadTrades(lossy(raw));
    let s = std::str::from_utf8(t).map_err(|_| bad())?;
    if let Ok(v) = s.parse::<i64>() {
        return Ok(Some(v));
    }
    let f: f64 = s.parse().map_err(|_| bad())?;
    float_to_trades(f).map(Some).ok_or_else(bad)
}

/// A whole float in i64 range as an integer.
fn float_to_trades(f: f64) -> Option<i64> {
    (f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e18).then_some(f as i64)
}

fn ts_error(e: timestamp::TsError, value: String, tz: Tz) -> RowError {
    match e {
        timestamp::TsError::Unparsable => RowError::BadTimestamp(value),
        timestamp::TsError::NonexistentLocal => RowError::NonexistentLocalTime {
            value,
            tz: tz.name().to_string(),
        },
        timestamp::TsError::AmbiguousLocal => RowError::AmbiguousLocalTime {
            value,
            tz: tz.name().to_string(),
        },
        timestamp::TsError::AmbiguousOrder => RowError::AmbiguousOrder {
            value,
            tz: tz.name().to_string(),
        },
        timestamp::TsError::AmbiguousEpoch => RowError::AmbiguousEpoch(value),
    }
}
