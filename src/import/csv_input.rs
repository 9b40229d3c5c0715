//! CSV (and gzip CSV) input: one pass with a reused `ByteRecord`, header positions mapped once.

use std::fs::File;
use std::io::{self, Cursor, Read};
use std::path::Path;

use csv::ByteRecord;

use super::events::{self, RowEvents};
use super::{
    BadEvents, Columns, FileContents, ImportError, ImportOptions, Location, RowError, Sink,
    file_symbol, lossy, optional_f64, optional_trades, required_f64, ts_error,
};
use crate::batch::SeriesBatch;
use crate::model::time::timestamp::TsParser;

/// Bytes per row of a typical bars CSV, to size the builders.
const BYTES_PER_ROW: u64 = 48;

pub(super) fn read_csv(
    path: &Path,
    opts: &ImportOptions,
    gzip: bool,
) -> Result<FileContents, ImportError> {
    let open = || -> io::Result<Box<dyn Read>> {
        let file = File::open(path)?;
        Ok(if gzip {
            Box::new(flate2::read::MultiGzDecoder::new(file))
        } else {
            Box::new(file)
        })
    };
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let rows_hint = if gzip { size * 4 } else { size } / BYTES_PER_ROW;
    read_csv_input(path, opts, rows_hint, true, true, &open)
}

/// CSV held in memory (an HTTP request body); `name` stands for it in errors. The symbol comes
/// from a symbol column or `opts.symbol`, never from the name. Event columns are ignored: bars
/// written to the live tier carry no corporate actions.
pub fn read_csv_bytes(
    name: &Path,
    bytes: &[u8],
    opts: &ImportOptions,
) -> Result<Vec<SeriesBatch>, ImportError> {
    let open = || -> io::Result<Box<dyn Read + '_>> { Ok(Box::new(bytes)) };
    let rows_hint = bytes.len() as u64 / BYTES_PER_ROW;
    read_csv_input(name, opts, rows_hint, false, false, &open).map(|c| c.series)
}

/// Reads CSV from `open()` (called again only to find the line of a bad row).
fn read_csv_input<'a>(
    path: &Path,
    opts: &ImportOptions,
    rows_hint: u64,
    symbol_from_name: bool,
    with_events: bool,
    open: &dyn Fn() -> io::Result<Box<dyn Read + 'a>>,
) -> Result<FileContents, ImportError> {
    let mut input = open().map_err(ImportError::io(path))?;
    let (prefix, delimiter) = sniff(&mut input).map_err(ImportError::io(path))?;
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(true)
        .flexible(true)
        .buffer_capacity(1 << 17)
        .from_reader(Cursor::new(prefix).chain(input));

    let headers = reader
        .byte_headers()
        .map_err(|e| csv_error(path, e))?
        .clone();
    if headers.iter().all(|h| h.trim_ascii().is_empty()) {
        return Err(ImportError::malformed(
            path,
            "empty file (expected a header row)",
        ));
    }
    let names: Vec<String> = headers
        .iter()
        .map(|h| String::from_utf8_lossy(h).into_owned())
        .collect();
    let mut cols = Columns::map(path, &names)?;
    if !with_events || opts.skip_events {
        (cols.split, cols.dividend) = (None, None);
    }
    let symbol = match (cols.symbol, &opts.symbol) {
        (Some(_), _) => None,
        (None, Some(s)) => Some(s.clone()),
        (None, None) if symbol_from_name => Some(file_symbol(path, opts)?),
        (None, None) => {
            return Err(ImportError::MissingColumn {
                path: path.to_path_buf(),
                column: "symbol",
            });
        }
    };
    let mut sink = Sink::new(opts.interval, symbol, rows_hint as usize);
    let mut ts_parser = TsParser::new(opts.tz).with(opts.ambiguous, opts.epoch_unit);
    let mut rec = ByteRecord::new();
    let n_fields = headers.len();
    // Rows with events and the byte each starts at (their lines are counted at the end).
    let mut found: Vec<(RowEvents, u64)> = Vec::new();
    while reader
        .read_byte_record(&mut rec)
        .map_err(|e| csv_error(path, e))?
    {
        match push_row(
            &rec,
            n_fields,
            &cols,
            opts.bad_events,
            &mut ts_parser,
            &mut sink,
        ) {
            Ok(None) => {}
            Ok(Some(events)) => found.push((events, rec.position().map_or(0, |p| p.byte()))),
            Err(error) => {
                let line = rec.position().map_or(0, |p| record_line(open, p));
                return Err(ImportError::Row {
                    path: path.to_path_buf(),
                    at: Location::Line(line),
                    error,
                });
            }
        }
    }
    let symbols: Vec<_> = sink.series.iter().map(|(s, _)| s.clone()).collect();
    let series = sink.finish();
    if found.is_empty() {
        return Ok(FileContents {
            series,
            ..FileContents::default()
        });
    }
    let starts: Vec<u64> = found.iter().map(|(_, b)| *b).collect();
    let at: Vec<Location> = lines_at(open, &starts)
        .map_err(ImportError::io(path))?
        .into_iter()
        .map(Location::Line)
        .collect();
    let rows: Vec<RowEvents> = found.into_iter().map(|(e, _)| e).collect();
    let (events, skipped) = events::resolve(path, opts, &symbols, &series, rows, &at)?;
    Ok(FileContents {
        series,
        events,
        skipped,
    })
}

/// Parses, validates and stores one record; returns its corporate actions, if it has some (a
/// bad one among them only when `bad_events` skips it).
#[inline]
fn push_row(
    rec: &ByteRecord,
    n_fields: usize,
    cols: &Columns,
    bad_events: BadEvents,
    ts_parser: &mut TsParser,
    sink: &mut Sink,
) -> Result<Option<RowEvents>, RowError> {
    if rec.len() != n_fields {
        return Err(RowError::FieldCount {
            found: rec.len(),
            expected: n_fields,
        });
    }
    let slot = match cols.symbol {
        Some(i) => sink.slot(&rec[i])?,
        None => 0,
    };
    ts_parser.set_series(slot);
    let raw_ts = &rec[cols.ts];
    let ts = ts_parser
        .parse(raw_ts)
        .map_err(|e| ts_error(e, lossy(raw_ts), ts_parser.tz()))?;
    let open = required_f64(&rec[cols.open], "open")?;
    let high = required_f64(&rec[cols.high], "high")?;
    let low = required_f64(&rec[cols.low], "low")?;
    let close = required_f64(&rec[cols.close], "close")?;
    let volume = required_f64(&rec[cols.volume], "volume")?;
    let vwap = match cols.vwap {
        Some(i) => optional_f64(&rec[i], "vwap")?,
        None => None,
    };
    let trades = match cols.trades {
        Some(i) => optional_trades(&rec[i])?,
        None => None,
    };
    sink.push(slot, ts, open, high, low, close, volume, vwap, trades)?;
    if cols.split.is_none() && cols.dividend.is_none() {
        return Ok(None);
    }
    let split = match cols.split {
        Some(i) => events::screen(events::split_coefficient(&rec[i]), bad_events)?,
        None => Ok(None),
    };
    let dividend = match cols.dividend {
        Some(i) => events::screen(events::dividend_amount(&rec[i]), bad_events)?,
        None => Ok(None),
    };
    Ok(RowEvents::of(slot, ts, split, dividend))
}

/// The 1-based line a record starts on.
///
/// The csv crate takes a record's position before it skips the line end of the previous record
/// (the `\n` of a CRLF) and any blank lines, so its line can be short by those. Only called for
/// the row that failed: reads the file again up to the record and counts the skipped newlines.
fn record_line<'a>(open: &dyn Fn() -> io::Result<Box<dyn Read + 'a>>, pos: &csv::Position) -> u64 {
    let count = || -> io::Result<u64> {
        let mut input = io::BufReader::new(open()?);
        io::copy(&mut (&mut input).take(pos.byte()), &mut io::sink())?;
        let mut skipped = 0;
        for b in input.bytes() {
            match b? {
                b'\n' => skipped += 1,
                b'\r' => {}
                _ => break,
            }
        }
        Ok(skipped)
    };
    pos.line() + count().unwrap_or(0)
}

/// The 1-based lines of records starting at the given bytes (ascending), as [`record_line`]
/// counts them, in one pass over the input.
fn lines_at<'a>(
    open: &dyn Fn() -> io::Result<Box<dyn Read + 'a>>,
    starts: &[u64],
) -> io::Result<Vec<u64>> {
    let mut input = open()?;
    let mut buf = vec![0u8; 1 << 16];
    // `buf[pos..len]` is unread; `at` is the input offset of `buf[pos]`.
    let (mut pos, mut len, mut at, mut line) = (0usize, 0usize, 0u64, 1u64);
    let mut out = Vec::with_capacity(starts.len());
    let mut fill = |buf: &mut [u8]| -> io::Result<usize> {
        loop {
            match input.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    };
    for &start in starts {
        // Line ends up to the record's start, then the ones the csv crate counts into its
        // position (a CRLF's \n, blank lines) up to the record's first byte.
        loop {
            if pos == len {
                len = fill(&mut buf)?;
                pos = 0;
                if len == 0 {
                    break;
                }
            }
            if at < start {
                let n = (len - pos).min(usize::try_from(start - at).unwrap_or(usize::MAX));
                line += buf[pos..pos + n].iter().filter(|&&b| b == b'\n').count() as u64;
                pos += n;
                at += n as u64;
                continue;
            }
            match buf[pos] {
                b'\n' => line += 1,
                b'\r' => {}
                _ => break,
            }
            pos += 1;
            at += 1;
        }
        out.push(line);
    }
    Ok(out)
}

fn csv_error(path: &Path, e: csv::Error) -> ImportError {
    let message = match e.position() {
        Some(p) => format!("line {}: {e}", p.line()),
        None => e.to_string(),
    };
    match e.into_kind() {
        csv::ErrorKind::Io(source) => ImportError::Io {
            path: path.to_path_buf(),
            source,
        },
        _ => ImportError::malformed(path, message),
    }
}

/// Reads the start of the input (at least the header line, up to 64 KiB) and picks the
/// delimiter: `,` unless the header line holds more `;`, tabs or `|`. Returns the bytes read.
fn sniff(input: &mut dyn Read) -> io::Result<(Vec<u8>, u8)> {
    let mut buf = vec![0u8; 8192];
    let mut n = 0;
    loop {
        if n == buf.len() {
            if n >= 1 << 16 {
                break;
            }
            buf.resize(n * 2, 0);
        }
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => {
                let had_newline = buf[n..n + k].contains(&b'\n');
                n += k;
                if had_newline {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(n);
    let line_end = buf.iter().position(|&b| b == b'\n').unwrap_or(n);
    let header = &buf[..line_end];
    let count = |d: u8| header.iter().filter(|&&b| b == d).count();
    let mut delimiter = b',';
    let mut best = count(b',');
    for d in [b';', b'\t', b'|'] {
        let c = count(d);
        if c > best {
            delimiter = d;
            best = c;
        }
    }
    Ok((buf, delimiter))
}
