//! Events as users give them: a CSV file (`tickvault actions import FILE.csv`) with a header
//! naming `symbol`, `ex_date`, `kind`, and `ratio` (splits) or `amount` (dividends), and the
//! checks an event needs the store's bars for. Every error names the file and line (or what
//! stands for them) and the rule; one bad row refuses the whole input.

use std::path::Path;

use chrono::NaiveDate;

use super::{ActionKind, ActionRule, CorporateAction, check_amount_below_close, parse_ex_date};
use crate::model::time::date_us;
use crate::model::{Interval, Symbol};

/// An event and where it came from, for errors: `events.csv line 3`.
#[derive(Debug, Clone, PartialEq)]
pub struct SourcedEvent {
    pub event: CorporateAction,
    pub origin: String,
    /// The raw close of the last session before the ex-date, when the input itself tells it
    /// (an imported bar file); else the store's bars are asked.
    pub previous_close: Option<f64>,
}

/// Input refused: where, and the rule or problem.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct Refused {
    pub origin: String,
    pub message: String,
}

impl Refused {
    fn new(origin: impl Into<String>, message: impl ToString) -> Self {
        Refused {
            origin: origin.into(),
            message: message.to_string(),
        }
    }
}

const COLUMNS: [&str; 5] = ["symbol", "ex_date", "kind", "ratio", "amount"];

/// Reads an events CSV. `recorded_at` (µs) and `source` go on every event.
pub fn read_events_csv(
    path: &Path,
    source: &str,
    recorded_at: i64,
) -> Result<Vec<SourcedEvent>, Refused> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| Refused::new(&name, e))?;
    parse_events_csv(&name, &bytes, source, recorded_at)
}

/// [`read_events_csv`] over bytes in memory; `name` stands for the file in errors.
pub fn parse_events_csv(
    name: &str,
    bytes: &[u8],
    source: &str,
    recorded_at: i64,
) -> Result<Vec<SourcedEvent>, Refused> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .from_reader(bytes);
    let headers = reader.headers().map_err(|e| Refused::new(name, e))?.clone();
    let names: Vec<String> = headers
        .iter()
        .map(|h| h.trim().trim_start_matches('\u{feff}').to_ascii_lowercase())
        .collect();
    if names.iter().all(String::is_empty) {
        return Err(Refused::new(
            name,
            format!("empty file (expected a header: {})", COLUMNS.join(",")),
        ));
    }
    let position = |column: &str| names.iter().position(|n| n == column);
    let mut at = [None; 5];
    for (i, column) in COLUMNS.iter().enumerate() {
        at[i] = position(column);
    }
    for (i, column) in COLUMNS.iter().enumerate().take(3) {
        if at[i].is_none() {
            return Err(Refused::new(
                name,
                format!(
                    "no {column} column in the header (expected {})",
                    COLUMNS.join(",")
                ),
            ));
        }
    }
    if at[3].is_none() && at[4].is_none() {
        return Err(Refused::new(
            name,
            "no ratio or amount column in the header (ratio for splits, amount for dividends)",
        ));
    }
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| Refused::new(name, e))?;
        let line = line_of(bytes, record.position());
        let origin = format!("{name} line {line}");
        if record.len() != headers.len() {
            return Err(Refused::new(
                origin,
                format!(
                    "has {} fields but the header has {}",
                    record.len(),
                    headers.len()
                ),
            ));
        }
        let field = |i: Option<usize>| i.map_or("", |i| record[i].trim());
        let event = row_event(
            field(at[0]),
            field(at[1]),
            field(at[2]),
            field(at[3]),
            field(at[4]),
            source,
            recorded_at,
        )
        .map_err(|message| Refused::new(&origin, message))?;
        out.push(SourcedEvent {
            event,
            origin,
            previous_close: None,
        });
    }
    Ok(out)
}

/// The 1-based line a record starts on, blank lines and CRLF line ends counted.
fn line_of(bytes: &[u8], position: Option<&csv::Position>) -> u64 {
    let Some(p) = position else { return 0 };
    let mut start = (p.byte() as usize).min(bytes.len());
    while start < bytes.len() && matches!(bytes[start], b'\n' | b'\r') {
        start += 1;
    }
    1 + bytes[..start].iter().filter(|&&b| b == b'\n').count() as u64
}

fn row_event(
    symbol: &str,
    ex_date: &str,
    kind: &str,
    ratio: &str,
    amount: &str,
    source: &str,
    recorded_at: i64,
) -> Result<CorporateAction, String> {
    let symbol = Symbol::new(symbol).map_err(|e| e.to_string())?;
    let ex_date = parse_ex_date(ex_date).map_err(|e| e.to_string())?;
    let kind: ActionKind = kind
        .to_ascii_lowercase()
        .parse()
        .map_err(|e: ActionRule| e.to_string())?;
    let number = |column: &str, text: &str| -> Result<f64, String> {
        text.parse::<f64>()
            .map_err(|_| format!("cannot parse {column} {text:?} as a number"))
    };
    match kind {
        ActionKind::Split => {
            if !amount.is_empty() {
                return Err(format!(
                    "a split has a ratio, not an amount (amount {amount:?}; leave it empty)"
                ));
            }
            if ratio.is_empty() {
                return Err("a split needs a ratio (new shares per old: 4 for 4:1)".into());
            }
            let ratio = number("ratio", ratio)?;
            CorporateAction::split(symbol, ex_date, ratio, source, recorded_at)
        }
        ActionKind::Dividend => {
            if !ratio.is_empty() {
                return Err(format!(
                    "a dividend has an amount, not a ratio (ratio {ratio:?}; leave it empty)"
                ));
            }
            if amount.is_empty() {
                return Err("a dividend needs an amount (cash per share)".into());
            }
            let amount = number("amount", amount)?;
            CorporateAction::dividend(symbol, ex_date, amount, source, recorded_at)
        }
    }
    .map_err(|e| e.to_string())
}

/// The close of the last bar that ended by 00:00 UTC of `ex_date`, among bars given as
/// (ts, close) of one interval in time order.
pub fn close_before(bars: &[(i64, f64)], interval: Interval, ex_date: NaiveDate) -> Option<f64> {
    let limit = date_us(ex_date);
    let ended = bars.partition_point(|(ts, _)| ts.saturating_add(interval.micros()) <= limit);
    ended.checked_sub(1).map(|i| bars[i].1)
}

/// Checks a dividend against the previous close, if known.
pub fn check_previous_close(e: &SourcedEvent, close: Option<f64>) -> Result<(), Refused> {
    match (e.event.kind, e.event.amount, close) {
        (ActionKind::Dividend, Some(amount), Some(close)) => {
            check_amount_below_close(amount, close).map_err(|rule| {
                Refused::new(
                    &e.origin,
                    format!(
                        "{rule} (the raw close of the last session before {})",
                        e.event.ex_date
                    ),
                )
            })
        }
        _ => Ok(()),
    }
}

/// The daily interval, whose bars are the sessions a previous close is read from.
pub const SESSION_INTERVAL: Interval = Interval::D1;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<SourcedEvent>, Refused> {
        parse_events_csv("ev.csv", text.as_bytes(), "import", 5)
    }

    #[test]
    fn a_users_file_reads_into_events() {
        let got = parse(
            "symbol,ex_date,kind,ratio,amount\r\n\
             AAPL,2020-08-31,split,4,\r\n\
             \r\n\
             AAPL,2020-11-06,dividend,,0.205\r\n\
             BRK.B, 2010-01-21 ,SPLIT,50.0000005,\r\n",
        )
        .unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].event.ratio, Some(4.0));
        assert_eq!(got[1].event.amount, Some(0.205));
        assert_eq!(got[1].origin, "ev.csv line 4");
        assert_eq!(
            got[2].event.ratio,
            Some(50.0),
            "rounded to the simple ratio"
        );
        assert_eq!(got[2].origin, "ev.csv line 5");
        assert_eq!(got[2].event.source, "import");
    }

    #[test]
    fn each_bad_row_names_its_line_and_rule() {
        let head = "symbol,ex_date,kind,ratio,amount\n";
        let cases = [
            (
                "A,2020-01-02,split,0,",
                "ratio 0 must be a finite number above 0",
            ),
            ("A,2020-01-02,split,-4,", "ratio -4 must be"),
            ("A,2020-01-02,split,inf,", "ratio inf must be"),
            ("A,2020-01-02,split,NaN,", "ratio NaN must be"),
            (
                "A,2020-01-02,dividend,,-0.5",
                "amount -0.5 must be a finite number >= 0",
            ),
            (
                "A,2020-02-30,split,2,",
                "ex_date \"2020-02-30\" is not a date",
            ),
            ("A,yesterday,split,2,", "is not a date"),
            ("A,2020-01-02,merger,2,", "unknown kind \"merger\""),
            ("A,2020-01-02,split,two,", "cannot parse ratio \"two\""),
            ("A,2020-01-02,split,,", "a split needs a ratio"),
            ("A,2020-01-02,dividend,,", "a dividend needs an amount"),
            (
                "A,2020-01-02,split,2,1",
                "a split has a ratio, not an amount",
            ),
            ("A,2020-01-02,split,2", "has 4 fields but the header has 5"),
        ];
        for (row, message) in cases {
            let text = format!("{head}B,2020-01-02,split,2,\n{row}\n");
            let err = parse(&text).unwrap_err();
            assert_eq!(err.origin, "ev.csv line 3", "{row}");
            assert!(err.message.contains(message), "{row}: {err}");
        }
        assert!(parse("").unwrap_err().message.contains("expected a header"));
        let err = parse("symbol,date,kind,ratio\nA,2020-01-02,split,2\n").unwrap_err();
        assert!(err.message.contains("no ex_date column"), "{err}");
    }

    #[test]
    fn the_previous_close_is_the_last_session_before_the_ex_date() {
        let d = |s: &str| parse_ex_date(s).unwrap();
        let bars = [
            (date_us(d("2020-11-04")), 115.0),
            (date_us(d("2020-11-05")), 118.69),
            (date_us(d("2020-11-06")), 118.0),
        ];
        assert_eq!(
            close_before(&bars, Interval::D1, d("2020-11-06")),
            Some(118.69)
        );
        assert_eq!(close_before(&bars, Interval::D1, d("2020-11-04")), None);
        assert_eq!(
            close_before(&bars, Interval::D1, d("2021-01-04")),
            Some(118.0)
        );
        // A weekly bar that ends after the ex-date is not a session before it.
        let week = [(date_us(d("2020-11-02")), 120.0)];
        assert_eq!(close_before(&week, Interval::W1, d("2020-11-06")), None);
        assert_eq!(
            close_before(&week, Interval::W1, d("2020-11-09")),
            Some(120.0)
        );
    }
}
