//! Import tests on real data fixtures (`tests/fixtures/`, see NOTICE.md there) and small files
//! written to a temporary directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, Date32Array, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray, TimestampNanosecondArray,
};
use arrow::datatypes::{Field, Schema};
use chrono::NaiveDate;
use chrono_tz::Tz;
use parquet::arrow::ArrowWriter;

use super::*;
use crate::batch::ts_column;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32) -> i64 {
    NaiveDate::from_ymd_opt(y, mo, d)
        .unwrap()
        .and_hms_opt(h, mi, 0)
        .unwrap()
        .and_utc()
        .timestamp_micros()
}

fn opts(interval: Interval) -> ImportOptions {
    ImportOptions {
        interval,
        ..ImportOptions::default()
    }
}

fn pattern(re: &str) -> ImportOptions {
    ImportOptions {
        symbol_pattern: Some(regex::Regex::new(re).unwrap()),
        ..ImportOptions::default()
    }
}

fn ny(interval: Interval, symbol: &str) -> ImportOptions {
    ImportOptions {
        interval,
        symbol: Some(Symbol::new(symbol).unwrap()),
        tz: Tz::America__New_York,
        ..ImportOptions::default()
    }
}

/// The one batch a single-symbol file gives.
fn single(path: &Path, opts: &ImportOptions) -> SeriesBatch {
    let mut batches = read_file(path, opts).unwrap();
    assert_eq!(batches.len(), 1);
    batches.pop().unwrap()
}

fn f64s(b: &SeriesBatch, name: &str) -> Vec<f64> {
    let col = b.batch.column_by_name(name).unwrap();
    let a = col.as_any().downcast_ref::<Float64Array>().unwrap();
    a.values().to_vec()
}

fn opt_f64s(b: &SeriesBatch, name: &str) -> Vec<Option<f64>> {
    let col = b.batch.column_by_name(name).unwrap();
    let a = col.as_any().downcast_ref::<Float64Array>().unwrap();
    a.iter().collect()
}

fn trades(b: &SeriesBatch) -> Vec<Option<i64>> {
    let col = b.batch.column_by_name("trades").unwrap();
    let a = col.as_any().downcast_ref::<Int64Array>().unwrap();
    a.iter().collect()
}

fn tss(b: &SeriesBatch) -> Vec<i64> {
    ts_column(&b.batch).values().to_vec()
}

/// Writes a small file into `dir` and returns its path.
fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::write(&path, content).unwrap();
    path
}

fn err(path: &Path, opts: &ImportOptions) -> String {
    read_file(path, opts).unwrap_err().to_string()
}

// ---------------------------------------------------------------------------------------------
// Real data fixtures

#[test]
fn alphavantage_daily_aapl() {
    let path = fixture("DA-AAPL-T-2021-04-21.csv");
    let b = single(&path, &pattern("DA-(.+)-T-"));
    assert_eq!(b.key.symbol.as_str(), "AAPL");
    assert_eq!(b.key.interval, Interval::D1);
    assert_eq!(b.batch.num_rows(), 5402);
    assert_eq!(b.batch.schema(), *crate::model::FILE_SCHEMA);
    let ts = tss(&b);
    let (open, high, low, close, volume) = (
        f64s(&b, "open"),
        f64s(&b, "high"),
        f64s(&b, "low"),
        f64s(&b, "close"),
        f64s(&b, "volume"),
    );
    // First row: 1999-11-01,80.0,80.69,77.37,77.62,0.596878742448,2487300,0.0,1.0
    assert_eq!(ts[0], utc(1999, 11, 1, 0, 0));
    assert_eq!(
        (open[0], high[0], low[0], close[0], volume[0]),
        (80.0, 80.69, 77.37, 77.62, 2_487_300.0)
    );
    // The split day, raw (unadjusted): 2020-08-31,127.58,131.0,126.0,129.04,...,223505733
    let i = ts
        .iter()
        .position(|&t| t == utc(2020, 8, 31, 0, 0))
        .unwrap();
    assert_eq!(
        (open[i], high[i], low[i], close[i], volume[i]),
        (127.58, 131.0, 126.0, 129.04, 223_505_733.0)
    );
    // Last row: 2021-04-21,132.36,133.75,131.3001,133.5,133.5,68538237,0.0,1.0
    let n = ts.len() - 1;
    assert_eq!(ts[n], utc(2021, 4, 21, 0, 0));
    assert_eq!(
        (open[n], high[n], low[n], close[n], volume[n]),
        (132.36, 133.75, 131.3001, 133.5, 68_538_237.0)
    );
    // Oldest first, one row per day; no vwap or trades columns.
    assert!(ts.windows(2).all(|w| w[0] < w[1]));
    assert!(opt_f64s(&b, "vwap").iter().all(Option::is_none));
    assert!(trades(&b).iter().all(Option::is_none));
}

#[test]
fn alphavantage_daily_symbols_from_pattern_and_stem() {
    let re = pattern("DA-(.+)-T-");
    for (file, symbol, last_close) in [
        ("DA-MSFT-T-2021-04-21.csv", "MSFT", 260.58),
        ("DA-BRK.B-T-2021-04-21.csv", "BRK.B", 272.21),
    ] {
        let b = single(&fixture(file), &re);
        assert_eq!(b.key.symbol.as_str(), symbol);
        assert_eq!(b.batch.num_rows(), 5402);
        assert_eq!(*f64s(&b, "close").last().unwrap(), last_close);
    }
    // BRK.B traded at 2,140 before its 50:1 split in 2010: raw prices.
    let b = single(&fixture("DA-BRK.B-T-2021-04-21.csv"), &re);
    assert_eq!(f64s(&b, "open")[0], 2140.0);
    assert_eq!(f64s(&b, "volume")[0], 21600.0);
    // Without --symbol-pattern the symbol is the file stem.
    let b = single(&fixture("DA-MSFT-T-2021-04-21.csv"), &opts(Interval::D1));
    assert_eq!(b.key.symbol.as_str(), "DA-MSFT-T-2021-04-21");
    // --symbol wins over the pattern.
    let o = ImportOptions {
        symbol: Some(Symbol::new("MSFT.O").unwrap()),
        ..re.clone()
    };
    assert_eq!(
        single(&fixture("DA-MSFT-T-2021-04-21.csv"), &o)
            .key
            .symbol
            .as_str(),
        "MSFT.O"
    );
}

#[test]
fn mplfinance_us_dates_in_new_york() {
    // Date,Open,Close,High,Low,Volume with M/D/YYYY H:MM New York times and CRLF line ends.
    let path = fixture("mplfinance_SP500_NOV2019_IDay.csv");
    let b = single(&path, &ny(Interval::M1, "^GSPC"));
    assert_eq!(b.key.symbol.as_str(), "^GSPC");
    assert_eq!(b.batch.num_rows(), 1563);
    let ts = tss(&b);
    // 11/5/2019 9:30 New York (EST, after the 2019-11-03 DST end) is 14:30 UTC.
    assert_eq!(ts[0], utc(2019, 11, 5, 14, 30));
    // Columns are mapped by name, not position: 3080.8,3080.49,3081.47,3080.3 is O,C,H,L.
    assert_eq!(f64s(&b, "open")[0], 3080.8);
    assert_eq!(f64s(&b, "close")[0], 3080.49);
    assert_eq!(f64s(&b, "high")[0], 3081.47);
    assert_eq!(f64s(&b, "low")[0], 3080.3);
    assert_eq!(f64s(&b, "volume")[0], 0.0);
    // Last row: 11/8/2019 15:59,3091.16,3092.91,3092.91,3090.96,0
    assert_eq!(*ts.last().unwrap(), utc(2019, 11, 8, 20, 59));
    assert_eq!(*f64s(&b, "close").last().unwrap(), 3092.91);
    assert!(ts.windows(2).all(|w| w[0] < w[1]));
    // The same file read as UTC is five hours earlier.
    let o = ImportOptions {
        tz: Tz::UTC,
        ..ny(Interval::M1, "^GSPC")
    };
    assert_eq!(tss(&single(&path, &o))[0], utc(2019, 11, 5, 9, 30));
}

#[test]
fn alphavantage_extended_hours_newest_first() {
    let path = fixture("alphavantage_MSFT_1min_2020-11-23_2020-12-18_extended_hours.csv");
    let b = single(&path, &ny(Interval::M1, "MSFT"));
    assert_eq!(b.batch.num_rows(), 11190);
    let ts = tss(&b);
    // File order is kept (newest first): 2020-12-18 20:00:00,218.79,218.79,218.75,218.75,1102
    assert_eq!(ts[0], utc(2020, 12, 19, 1, 0));
    assert_eq!(f64s(&b, "open")[0], 218.79);
    assert_eq!(f64s(&b, "close")[0], 218.75);
    assert_eq!(f64s(&b, "volume")[0], 1102.0);
    // Last: 2020-11-23 04:01:00,211.5,211.5,211.5,211.5,162
    assert_eq!(*ts.last().unwrap(), utc(2020, 11, 23, 9, 1));
    assert_eq!(*f64s(&b, "volume").last().unwrap(), 162.0);
    assert!(ts.windows(2).all(|w| w[0] > w[1]));
    // As 5-minute bars, the second row (19:58) is off the grid.
    assert_eq!(
        err(&path, &ny(Interval::M5, "MSFT")),
        format!(
            "{} line 3: timestamp of a 5m bar must be on a whole multiple of the interval",
            path.display()
        )
    );
}

#[test]
fn gzip_csv_reads_like_plain() {
    let dir = tempfile::tempdir().unwrap();
    let src = fixture("DA-AAPL-T-2021-04-21.csv");
    let gz = dir.path().join("DA-AAPL-T-2021-04-21.CSV.GZ");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::fast(),
    );
    enc.write_all(&std::fs::read(&src).unwrap()).unwrap();
    enc.finish().unwrap();
    let re = pattern("DA-(.+)-T-");
    let (a, b) = (single(&src, &re), single(&gz, &re));
    assert_eq!(b.key, a.key);
    assert_eq!(b.batch, a.batch);
    // The stem drops .csv.gz whatever its case.
    assert_eq!(
        single(&gz, &opts(Interval::D1)).key.symbol.as_str(),
        "DA-AAPL-T-2021-04-21"
    );
}

#[test]
fn gen_bars_csv_shape() {
    // The header and rows exactly as /work/shared/tools/gen_bars.py writes them (pyarrow CSV).
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "AAAA.csv",
        "\"symbol\",\"ts\",\"open\",\"high\",\"low\",\"close\",\"volume\"\n\
         AAAA,2021-01-01T14:30:00.000000000Z,287.3523,287.5722,287.3214,287.4969,553\n\
         AAAA,2021-01-01T14:31:00.000000000Z,287.4926,287.7239,287.4661,287.6564,4840\n",
    );
    let b = single(&p, &opts(Interval::M1));
    assert_eq!(b.key.symbol.as_str(), "AAAA");
    assert_eq!(tss(&b), [utc(2021, 1, 1, 14, 30), utc(2021, 1, 1, 14, 31)]);
    assert_eq!(f64s(&b, "low"), [287.3214, 287.4661]);
    assert_eq!(f64s(&b, "volume"), [553.0, 4840.0]);
}

#[test]
fn gzip_crlf_error_lines() {
    // CRLF line ends and a blank line, gzipped: the error still names the physical line.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("Z.csv.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&p).unwrap(),
        flate2::Compression::fast(),
    );
    enc.write_all(
        b"ts,open,high,low,close,volume\r\n2021-01-04,1,1,1,1,1\r\n\r\n2021-01-05,1,1,2,1,1\r\n",
    )
    .unwrap();
    enc.finish().unwrap();
    assert_eq!(
        err(&p, &opts(Interval::D1)),
        format!("{} line 4: low 2 is above min(open, close) 1", p.display())
    );
}

#[test]
fn errors_are_send_sync_static() {
    fn check<T: Send + Sync + 'static + std::error::Error>() {}
    check::<ImportError>();
    check::<RowError>();
}

// ---------------------------------------------------------------------------------------------
// Inputs

#[test]
fn collect_inputs_walks_sorted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for name in [
        "b/z.csv",
        "b/a.CSV",
        "b/c/deep.csv.gz",
        "a.parquet",
        "notes.txt",
        ".hidden.csv",
        ".git/x.csv",
        "b/c/data.gz",
    ] {
        write(d, name, "");
    }
    let single_file = write(d, "elsewhere/one.csv", "");
    let got = collect_inputs(&[single_file.clone(), d.to_path_buf(), single_file]).unwrap();
    let rel: Vec<String> = got
        .iter()
        .map(|p| {
            p.strip_prefix(d)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/")
        })
        .collect();
    assert_eq!(
        rel,
        [
            "elsewhere/one.csv",
            "a.parquet",
            "b/a.CSV",
            "b/c/deep.csv.gz",
            "b/z.csv"
        ]
    );

    let missing = d.join("nope");
    let e = collect_inputs(&[d.to_path_buf(), missing.clone()]).unwrap_err();
    assert!(matches!(&e, ImportError::NotFound(p) if *p == missing));
    assert_eq!(
        e.to_string(),
        format!("{}: no such file or directory", missing.display())
    );
    // A file named directly is taken whatever its name.
    let txt = d.join("notes.txt");
    assert_eq!(
        collect_inputs(std::slice::from_ref(&txt)).unwrap(),
        std::slice::from_ref(&txt)
    );
    // With a format, a directory gives every regular file but hidden ones.
    let got = collect_inputs_as(&[d.join("b")], Some(InputFormat::Csv)).unwrap();
    let rel: Vec<String> = got
        .iter()
        .map(|p| {
            p.strip_prefix(d)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/")
        })
        .collect();
    assert_eq!(
        rel,
        ["b/a.CSV", "b/c/data.gz", "b/c/deep.csv.gz", "b/z.csv"]
    );
    assert_eq!(
        collect_inputs_as(&[d.to_path_buf()], Some(InputFormat::Parquet))
            .unwrap()
            .len(),
        7
    );
}

/// Stooq's daily file of AAPL as its site serves it (`aapl.us.txt`: a CSV by another name).
const STOOQ_LIKE: &str = "Date,Open,High,Low,Close,Volume\n\
                          2021-01-04,133.52,133.6116,126.76,129.41,143301887\n\
                          2021-01-05,128.89,131.74,128.43,131.01,97664898\n";

fn gzip(path: &Path, bytes: &[u8]) {
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(path).unwrap(),
        flate2::Compression::fast(),
    );
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap();
}

#[test]
fn a_file_of_any_name_is_read_by_its_first_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let days = [utc(2021, 1, 4, 0, 0), utc(2021, 1, 5, 0, 0)];
    let txt = write(d, "aapl.us.txt", STOOQ_LIKE);
    let b = single(&txt, &opts(Interval::D1));
    assert_eq!(b.key.symbol.as_str(), "aapl.us");
    assert_eq!(tss(&b), days);
    assert_eq!(f64s(&b, "close"), [129.41, 131.01]);
    // gzip by its magic, whatever the name; the stem drops .gz and the extension before it.
    let gz = d.join("aapl.us.txt.gz");
    gzip(&gz, STOOQ_LIKE.as_bytes());
    let g = single(&gz, &opts(Interval::D1));
    assert_eq!(g.key.symbol.as_str(), "aapl.us");
    assert_eq!(g.batch, b.batch);
    let dat = d.join("AAPL.dat");
    gzip(&dat, STOOQ_LIKE.as_bytes());
    assert_eq!(single(&dat, &opts(Interval::D1)).batch, b.batch);
    // Parquet by its magic; a file without an extension is fine too.
    let pq = d.join("AAPL");
    write_parquet(
        &pq,
        vec![
            (
                "date",
                Arc::new(Date32Array::from(vec![18631, 18632])) as ArrayRef,
            ),
            ("open", f64_array(&[133.52, 128.89])),
            ("high", f64_array(&[133.6116, 131.74])),
            ("low", f64_array(&[126.76, 128.43])),
            ("close", f64_array(&[129.41, 131.01])),
            ("volume", f64_array(&[143301887.0, 97664898.0])),
        ],
    );
    let p = single(&pq, &opts(Interval::D1));
    assert_eq!(p.key.symbol.as_str(), "AAPL");
    assert_eq!(p.batch, b.batch);
    // A known name still decides: a .csv is CSV even if it holds something else.
    let fake = d.join("X.csv");
    std::fs::copy(&pq, &fake).unwrap();
    assert!(read_file(&fake, &opts(Interval::D1)).is_err());
    // An empty file of another name is an (empty) CSV without a header: named in the error.
    let empty = write(d, "empty.txt", "");
    assert!(err(&empty, &opts(Interval::D1)).starts_with(&format!("{}:", empty.display())));
}

#[test]
fn a_forced_format_reads_every_file_as_it() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let txt = write(d, "in/aapl.us.txt", STOOQ_LIKE);
    let gz = d.join("in/msft.us.txt.gz");
    gzip(&gz, STOOQ_LIKE.as_bytes());
    write(d, "in/.listing", "not data");
    let csv = ImportOptions {
        format: Some(InputFormat::Csv),
        ..opts(Interval::D1)
    };
    let files = collect_inputs_as(&[d.join("in")], csv.format).unwrap();
    assert_eq!(files, [txt.clone(), gz.clone()]);
    for f in &files {
        assert_eq!(single(f, &csv).batch.num_rows(), 2, "{}", f.display());
    }
    // Without --format the directory offers nothing to import.
    assert!(collect_inputs(&[d.join("in")]).unwrap().is_empty());
    // Forced Parquet: a CSV is refused as a corrupt Parquet file, named.
    let parquet = ImportOptions {
        format: Some(InputFormat::Parquet),
        ..opts(Interval::D1)
    };
    let e = err(&txt, &parquet);
    assert!(e.starts_with(&format!("{}: ", txt.display())), "{e}");
    assert_eq!("csv".parse(), Ok(InputFormat::Csv));
    assert_eq!("parquet".parse(), Ok(InputFormat::Parquet));
    assert!("txt".parse::<InputFormat>().is_err());
}

#[test]
fn missing_file_is_io_error_naming_it() {
    let path = Path::new("/nonexistent/dir/AAPL.csv");
    let e = read_file(path, &opts(Interval::D1)).unwrap_err();
    assert!(matches!(&e, ImportError::Io { path: p, .. } if p == path));
    assert!(
        e.to_string().starts_with("/nonexistent/dir/AAPL.csv: "),
        "{e}"
    );
}

// ---------------------------------------------------------------------------------------------
// Columns, symbols and values

#[test]
fn headers_case_whitespace_bom_and_delimiters() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "X.csv",
        "\u{feff} Timestamp_UTC ; OPEN;High;low ;Close;Volume;VWAP;Trades;Adjusted_Close\n\
         2021-01-04;1;2;0.5;1.5;100;1.2;79.0;9\n\
         2021-01-05 ; 1.5 ;2;1;1.75; 50 ;;;\n",
    );
    let b = single(&p, &opts(Interval::D1));
    assert_eq!(b.key.symbol.as_str(), "X");
    assert_eq!(tss(&b), [utc(2021, 1, 4, 0, 0), utc(2021, 1, 5, 0, 0)]);
    assert_eq!(f64s(&b, "open"), [1.0, 1.5]);
    assert_eq!(f64s(&b, "volume"), [100.0, 50.0]);
    assert_eq!(opt_f64s(&b, "vwap"), [Some(1.2), None]);
    assert_eq!(trades(&b), [Some(79), None]);

    let p = write(
        dir.path(),
        "tabs.csv",
        "date\topen\thigh\tlow\tclose\tvolume\n2021-01-04\t1\t1\t1\t1\t0\n",
    );
    assert_eq!(single(&p, &opts(Interval::D1)).batch.num_rows(), 1);
}

#[test]
fn symbol_column_splits_series_in_first_appearance_order() {
    // The shape gen_bars.py writes: symbol first, RFC 3339 `Z` times.
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "mixed.csv",
        "symbol,ts,open,high,low,close,volume\n\
         MSFT,2021-01-04T14:30:00Z,10,11,9,10,5\n\
         AAPL,2021-01-04T14:30:00Z,20,21,19,20,6\n\
         MSFT,2021-01-04T14:31:00Z,10,11,9,10.5,7\n\
         AAPL,2021-01-04T14:30:00Z,20,21,19,20.5,8\n",
    );
    // The symbol column wins over --symbol.
    let o = ImportOptions {
        interval: Interval::M1,
        symbol: Some(Symbol::new("IGNORED").unwrap()),
        ..ImportOptions::default()
    };
    let batches = read_file(&p, &o).unwrap();
    let keys: Vec<&str> = batches.iter().map(|b| b.key.symbol.as_str()).collect();
    assert_eq!(keys, ["MSFT", "AAPL"]);
    assert!(batches.iter().all(|b| b.key.interval == Interval::M1));
    assert_eq!(f64s(&batches[0], "volume"), [5.0, 7.0]);
    // Duplicate timestamps are kept in file order (the writer keeps the last).
    assert_eq!(
        tss(&batches[1]),
        [utc(2021, 1, 4, 14, 30), utc(2021, 1, 4, 14, 30)]
    );
    assert_eq!(f64s(&batches[1], "close"), [20.0, 20.5]);
}

#[test]
fn header_only_file_gives_no_batches() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "E.csv", "ts,open,high,low,close,volume\n");
    assert!(read_file(&p, &opts(Interval::D1)).unwrap().is_empty());
}

#[test]
fn symbol_precedence_for_hive_paths() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "symbol=%5EGSPC/year=2021/part-0.csv",
        "ts,open,high,low,close,volume\n2021-01-04,1,1,1,1,1\n",
    );
    assert_eq!(single(&p, &opts(Interval::D1)).key.symbol.as_str(), "^GSPC");
    // --symbol-pattern and --symbol come first.
    assert_eq!(single(&p, &pattern("^(part)-")).key.symbol.as_str(), "part");
    let o = ImportOptions {
        symbol: Some(Symbol::new("SPX").unwrap()),
        ..ImportOptions::default()
    };
    assert_eq!(single(&p, &o).key.symbol.as_str(), "SPX");
    assert_eq!(percent_decode("BRK%2EB"), "BRK.B");
    assert_eq!(percent_decode("100%"), "100%");
    assert_eq!(percent_decode("a%zzb%41"), "a%zzbA");
    assert_eq!(file_stem("x.Parquet"), "x");
    assert_eq!(file_stem("x.y.csv.gz"), "x.y");
    assert_eq!(file_stem("BRK.B.csv"), "BRK.B");
}

// ---------------------------------------------------------------------------------------------
// Errors, with exact messages and line numbers

const HEADER: &str = "timestamp,open,high,low,close,volume\n";

/// A CSV of `good` valid daily rows followed by `bad`: the bad row is on line `good + 2`.
fn csv_with_bad_row(dir: &Path, name: &str, good: usize, bad: &str) -> PathBuf {
    let mut s = String::from(HEADER);
    for i in 0..good {
        s.push_str(&format!(
            "{},10,11,9,10,100\n",
            1_609_459_200 + i as i64 * 86_400
        ));
    }
    s.push_str(bad);
    s.push('\n');
    s.push_str("2030-01-01,1,1,1,1,1\n");
    write(dir, name, &s)
}

#[test]
fn rule_errors_name_file_line_and_rule() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = opts(Interval::D1);
    let cases = [
        (
            15,
            "2021-02-01,10,9.5,9,10,1",
            "line 17: high 9.5 is below max(open, close) 10",
        ),
        (
            0,
            "2021-02-01,10,11,10.5,10.2,1",
            "line 2: low 10.5 is above min(open, close) 10",
        ),
        (
            3,
            "2021-02-01,10,9,11,10,1",
            "line 5: low 11 is above min(open, close) 10",
        ),
        (
            4,
            "2021-02-01,10,11,9,10,-5",
            "line 6: volume -5 is negative",
        ),
        (
            2,
            "2021-01-01 10:00,10,11,9,10,1",
            "line 4: timestamp of a 1d bar must be at 00:00 UTC",
        ),
        (
            1,
            "2021-02-01,10,11,9,NaN,1",
            "line 3: close is not a finite number",
        ),
        (
            1,
            "2021-02-01,10,11,9,abc,1",
            "line 3: cannot parse close \"abc\" as a number",
        ),
        (
            1,
            "2021-02-01,10,11,9,,1",
            "line 3: cannot parse close \"\" as a number",
        ),
        (
            5,
            "2021-02-01,x1,11,9,10,1",
            "line 7: cannot parse open \"x1\" as a number",
        ),
        (
            1,
            "2021-02-30,10,11,9,10,1",
            "line 3: cannot parse timestamp \"2021-02-30\" (expected RFC 3339, \
             YYYY-MM-DD[ HH:MM[:SS[.f]]], M/D/YYYY[ H:MM[:SS]] or epoch seconds/ms/µs/ns)",
        ),
        (
            2,
            "2021-02-01,10,11,9,10",
            "line 4: has 5 fields but the header has 6",
        ),
        (
            2,
            "2021-02-01,10,11,9,10,1,7",
            "line 4: has 7 fields but the header has 6",
        ),
    ];
    for (i, (good, bad, want)) in cases.into_iter().enumerate() {
        let p = csv_with_bad_row(d, &format!("S{i}.csv"), good, bad);
        assert_eq!(err(&p, &o), format!("{} {want}", p.display()), "case {i}");
    }
    // The brief's example, verbatim.
    let e = ImportError::Row {
        path: PathBuf::from("data/AAPL.csv"),
        at: Location::Line(17),
        error: RowError::Rule(Rule::HighBelowBody {
            high: 9.5,
            max: 10.0,
        }),
    };
    assert_eq!(
        e.to_string(),
        "data/AAPL.csv line 17: high 9.5 is below max(open, close) 10"
    );
}

#[test]
fn line_numbers_count_physical_lines() {
    // A quoted field spanning two lines and a blank line: errors still name the real line.
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "Q.csv",
        "timestamp,open,high,low,close,volume,note\n\
         2021-01-04,1,1,1,1,1,\"two\nlines\"\n\
         \n\
         2021-01-05,1,1,1,1,-1,x\n",
    );
    assert_eq!(
        err(&p, &opts(Interval::D1)),
        format!("{} line 5: volume -1 is negative", p.display())
    );
}

#[test]
fn optional_column_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "T.csv",
        "ts,open,high,low,close,volume,vwap,trades\n\
         2021-01-04,1,1,1,1,1,1,79.0\n\
         2021-01-05,1,1,1,1,1,1,1.5\n",
    );
    assert_eq!(
        err(&p, &opts(Interval::D1)),
        format!(
            "{} line 3: cannot parse trades \"1.5\" as a whole number",
            p.display()
        )
    );
    let p = write(
        dir.path(),
        "V.csv",
        "ts,open,high,low,close,volume,vwap,trades\n2021-01-04,1,1,1,1,1,n/a,1\n",
    );
    assert_eq!(
        err(&p, &opts(Interval::D1)),
        format!(
            "{} line 2: cannot parse vwap \"n/a\" as a number",
            p.display()
        )
    );
    let p = write(
        dir.path(),
        "N.csv",
        "ts,open,high,low,close,volume,trades\n2021-01-04,1,1,1,1,1,-3\n",
    );
    assert_eq!(
        err(&p, &opts(Interval::D1)),
        format!("{} line 2: trades -3 is negative", p.display())
    );
}

#[test]
fn column_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = opts(Interval::D1);
    let p = write(
        d,
        "A.csv",
        "timestamp,open,high,low,close\n2021-01-04,1,1,1,1\n",
    );
    assert_eq!(err(&p, &o), format!("{}: no volume column", p.display()));
    assert!(matches!(
        read_file(&p, &o),
        Err(ImportError::MissingColumn {
            column: "volume",
            ..
        })
    ));
    let p = write(d, "B.csv", "when,open,high,low,close,volume\n");
    assert_eq!(
        err(&p, &o),
        format!(
            "{}: no timestamp column (expected one of ts, timestamp, time, date, datetime, \
             timestamp_utc)",
            p.display()
        )
    );
    let p = write(d, "C.csv", "Date,Time,Open,High,Low,Close,Volume\n");
    assert_eq!(
        err(&p, &o),
        format!(
            "{}: columns \"Date\" and \"Time\" both name the timestamp column",
            p.display()
        )
    );
    let p = write(d, "D.csv", "symbol,ticker,ts,open,high,low,close,volume\n");
    assert!(err(&p, &o).ends_with("both name the symbol column"));
    let p = write(d, "E.csv", "");
    assert_eq!(
        err(&p, &o),
        format!("{}: empty file (expected a header row)", p.display())
    );
}

#[test]
fn symbol_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = opts(Interval::D1);
    let long = "X".repeat(33);
    let p = write(
        d,
        "S.csv",
        &format!(
            "symbol,ts,open,high,low,close,volume\n\
             AAPL,2021-01-04,1,1,1,1,1\n AAPL ,2021-01-05,1,1,1,1,1\n{long},2021-01-04,1,1,1,1,1\n"
        ),
    );
    assert_eq!(
        err(&p, &o),
        format!(
            "{} line 4: symbol \"{long}\" must be 1 to 32 printable characters without \
             surrounding spaces",
            p.display()
        )
    );
    let p = write(
        d,
        "S2.csv",
        "symbol,ts,open,high,low,close,volume\n,2021-01-04,1,1,1,1,1\n",
    );
    assert!(err(&p, &o).contains(" line 2: symbol \"\" must be"));
    // Symbols from the file name are checked too.
    let p = write(d, &format!("{long}.csv"), "ts,open,high,low,close,volume\n");
    assert_eq!(
        err(&p, &o),
        format!(
            "{}: symbol from the file name: symbol \"{long}\" must be 1 to 32 printable \
             characters without surrounding spaces",
            p.display()
        )
    );
    let p = fixture("mplfinance_SP500_NOV2019_IDay.csv");
    assert_eq!(
        err(&p, &pattern("DA-(.+)-T-")),
        format!(
            "{}: --symbol-pattern \"DA-(.+)-T-\" does not match the file name \
             \"mplfinance_SP500_NOV2019_IDay.csv\"",
            p.display()
        )
    );
    // A pattern without a group takes the whole match.
    assert_eq!(
        single(&fixture("DA-AAPL-T-2021-04-21.csv"), &pattern("[A-Z]{4}"))
            .key
            .symbol
            .as_str(),
        "AAPL"
    );
}

#[test]
fn nonexistent_local_time_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "G.csv",
        "time,open,high,low,close,volume\n\
         2021-03-14 01:59:00,1,1,1,1,1\n\
         2021-03-14 02:30:00,1,1,1,1,1\n",
    );
    assert_eq!(
        err(&p, &ny(Interval::M1, "G")),
        format!(
            "{} line 3: local time \"2021-03-14 02:30:00\" does not exist in America/New_York \
             (skipped by a daylight-saving change; refused whatever --ambiguous says)",
            p.display()
        )
    );
}

#[test]
fn ambiguous_local_time_is_an_error_unless_resolved_and_repeats_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "H.csv",
        "time,open,high,low,close,volume\n\
         2021-11-07 00:30:00,1,1,1,1,1\n\
         2021-11-07 01:30:00,1,1,1,1,1\n\
         2021-11-07 01:30:00,1,1,1,1,1\n",
    );
    let o = ny(Interval::M30, "H");
    assert_eq!(
        err(&p, &o),
        format!(
            "{} line 3: local time \"2021-11-07 01:30:00\" is ambiguous in America/New_York \
             (a daylight-saving change repeats it); --ambiguous earliest, latest or infer says \
             which instant is meant",
            p.display()
        )
    );
    let read = |ambiguous| {
        read_file(
            &p,
            &ImportOptions {
                ambiguous,
                ..o.clone()
            },
        )
        .unwrap()
    };
    // infer: the repeat is the second pass, after the change.
    let inferred = read(Ambiguous::Infer);
    assert_eq!(
        tss(&inferred[0]),
        [
            utc(2021, 11, 7, 4, 30),
            utc(2021, 11, 7, 5, 30),
            utc(2021, 11, 7, 6, 30)
        ]
    );
    assert_eq!(repeated_keys(&inferred), 0);
    // earliest: both are the same instant, and the import counts the repeat.
    let earliest = read(Ambiguous::Earliest);
    assert_eq!(tss(&earliest[0])[1], utc(2021, 11, 7, 5, 30));
    assert_eq!(repeated_keys(&earliest), 1);
    assert_eq!(tss(&read(Ambiguous::Latest)[0])[2], utc(2021, 11, 7, 6, 30));
}

#[test]
fn every_timestamp_shape_in_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let t = utc(2021, 4, 21, 13, 30);
    let rows = [
        "2021-04-21T13:30:00Z",
        "2021-04-21T15:30:00+02:00",
        "2021-04-21T13:30:00.000000Z",
        "2021-04-21 09:30",
        "2021-04-21 09:30:00",
        "2021-04-21T09:30:00",
        "2021-04-21 13:30:00.000000+00:00",
        "4/21/2021 9:30",
        "4/21/2021 9:30:00",
        "1619011800",
        "1619011800000",
        "1619011800000000",
        "1619011800000000000",
    ];
    let mut s = String::from("datetime,open,high,low,close,volume\n");
    for r in rows {
        s.push_str(&format!("{r},1,1,1,1,1\n"));
    }
    let p = write(dir.path(), "ALL.csv", &s);
    let b = single(&p, &ny(Interval::M30, "ALL"));
    assert_eq!(tss(&b), vec![t; rows.len()]);
}

// ---------------------------------------------------------------------------------------------
// Parquet

fn write_parquet(path: &Path, columns: Vec<(&str, ArrayRef)>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let fields: Vec<Field> = columns
        .iter()
        .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
        .collect();
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
    .unwrap();
    let file = std::fs::File::create(path).unwrap();
    let mut w = ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

fn f64_array(v: &[f64]) -> ArrayRef {
    Arc::new(Float64Array::from(v.to_vec()))
}

#[test]
fn parquet_round_trip_gen_bars_layout() {
    // As gen_bars.py writes it: symbol=S/year=Y/part-0.parquet, ts timestamp[ns, UTC],
    // open..close f64, volume int64.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bars/symbol=AAPL/year=2021/part-0.parquet");
    let t0 = utc(2021, 1, 4, 14, 30);
    let ns: Vec<i64> = (0..3).map(|i| (t0 + i * 60_000_000) * 1_000).collect();
    write_parquet(
        &path,
        vec![
            (
                "ts",
                Arc::new(TimestampNanosecondArray::from(ns).with_timezone("UTC")),
            ),
            ("open", f64_array(&[10.0, 10.5, 11.0])),
            ("high", f64_array(&[11.0, 11.0, 11.5])),
            ("low", f64_array(&[9.5, 10.0, 10.5])),
            ("close", f64_array(&[10.5, 11.0, 11.25])),
            ("volume", Arc::new(Int64Array::from(vec![100, 200, 300]))),
        ],
    );
    let inputs = collect_inputs(&[dir.path().to_path_buf()]).unwrap();
    assert_eq!(inputs, std::slice::from_ref(&path));
    let b = single(&path, &opts(Interval::M1));
    assert_eq!(b.key.symbol.as_str(), "AAPL");
    assert_eq!(b.key.interval, Interval::M1);
    assert_eq!(tss(&b), [t0, t0 + 60_000_000, t0 + 120_000_000]);
    assert_eq!(f64s(&b, "open"), [10.0, 10.5, 11.0]);
    assert_eq!(f64s(&b, "close"), [10.5, 11.0, 11.25]);
    assert_eq!(f64s(&b, "volume"), [100.0, 200.0, 300.0]);
    assert_eq!(b.batch.schema(), *crate::model::FILE_SCHEMA);
}

#[test]
fn parquet_timestamp_encodings() {
    let dir = tempfile::tempdir().unwrap();
    let ones = || f64_array(&[1.0, 1.0]);
    let cols = |ts: ArrayRef| {
        vec![
            ("Open", ones()),
            ("High", ones()),
            ("Low", ones()),
            ("Close", ones()),
            ("Volume", ones()),
            ("Date", ts),
        ]
    };
    let d1 = utc(2021, 4, 21, 0, 0);
    let d2 = utc(2021, 4, 22, 0, 0);
    // Date32 and Int64 epoch seconds: daily bars.
    let p = dir.path().join("d32.parquet");
    write_parquet(&p, cols(Arc::new(Date32Array::from(vec![18738, 18739]))));
    assert_eq!(tss(&single(&p, &opts(Interval::D1))), [d1, d2]);
    let p = dir.path().join("epoch.parquet");
    write_parquet(
        &p,
        cols(Arc::new(Int64Array::from(vec![d1 / 1_000_000, d2 / 1_000]))),
    );
    assert_eq!(tss(&single(&p, &opts(Interval::D1))), [d1, d2]);
    // Strings go through the text parser.
    let p = dir.path().join("text.parquet");
    write_parquet(
        &p,
        cols(Arc::new(StringArray::from(vec!["2021-04-21", "4/22/2021"]))),
    );
    assert_eq!(tss(&single(&p, &opts(Interval::D1))), [d1, d2]);
    // A timestamp without a zone is a wall-clock time in --tz.
    let local_ms = [
        utc(2021, 4, 21, 9, 30) / 1_000,
        utc(2021, 11, 22, 9, 30) / 1_000,
    ];
    let p = dir.path().join("naive.parquet");
    write_parquet(
        &p,
        cols(Arc::new(TimestampMillisecondArray::from(local_ms.to_vec()))),
    );
    assert_eq!(
        tss(&single(&p, &ny(Interval::M1, "N"))),
        [utc(2021, 4, 21, 13, 30), utc(2021, 11, 22, 14, 30)]
    );
    // With a zone the values are instants, --tz is ignored.
    let p = dir.path().join("zoned.parquet");
    write_parquet(
        &p,
        cols(Arc::new(
            TimestampMillisecondArray::from(local_ms.to_vec()).with_timezone("America/New_York"),
        )),
    );
    assert_eq!(
        tss(&single(&p, &ny(Interval::M1, "N"))),
        [utc(2021, 4, 21, 9, 30), utc(2021, 11, 22, 9, 30)]
    );
    // Unsupported ts type.
    let p = dir.path().join("bad.parquet");
    write_parquet(&p, cols(f64_array(&[1.0, 2.0])));
    assert_eq!(
        err(&p, &opts(Interval::D1)),
        format!(
            "{}: column \"Date\" has unsupported type Float64",
            p.display()
        )
    );
}

#[test]
fn parquet_symbols_optional_columns_and_row_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("multi.parquet");
    let ts = |v: Vec<i64>| -> ArrayRef {
        Arc::new(TimestampNanosecondArray::from(v).with_timezone("UTC"))
    };
    let t = utc(2021, 1, 4, 0, 0) * 1_000;
    write_parquet(
        &p,
        vec![
            ("ticker", Arc::new(StringArray::from(vec!["A", "B", "A"]))),
            ("timestamp", ts(vec![t, t, t + 86_400_000_000_000])),
            ("open", f64_array(&[1.0, 2.0, 3.0])),
            ("high", f64_array(&[1.0, 2.0, 3.0])),
            ("low", f64_array(&[1.0, 2.0, 3.0])),
            ("close", f64_array(&[1.0, 2.0, 3.0])),
            ("volume", Arc::new(Int64Array::from(vec![1, 2, 3]))),
            (
                "vwap",
                Arc::new(Float64Array::from(vec![Some(1.0), None, Some(3.0)])),
            ),
            (
                "trades",
                Arc::new(Float64Array::from(vec![Some(79.0), Some(1.0), None])),
            ),
            ("extra", Arc::new(StringArray::from(vec!["x", "y", "z"]))),
        ],
    );
    let batches = read_file(&p, &opts(Interval::D1)).unwrap();
    assert_eq!(batches.len(), 2);
    assert_eq!(batches[0].key.symbol.as_str(), "A");
    assert_eq!(f64s(&batches[0], "close"), [1.0, 3.0]);
    assert_eq!(opt_f64s(&batches[0], "vwap"), [Some(1.0), Some(3.0)]);
    assert_eq!(trades(&batches[0]), [Some(79), None]);
    assert_eq!(batches[1].key.symbol.as_str(), "B");
    assert_eq!(opt_f64s(&batches[1], "vwap"), [None]);

    // Row errors name the 1-based row, counted across reader batches (64 Ki rows each).
    let n = 70_000usize;
    let base = utc(2021, 1, 4, 0, 0);
    let minutes: Vec<i64> = (0..n as i64)
        .map(|i| (base + i * 60_000_000) * 1_000)
        .collect();
    let mut high = vec![2.0; n];
    high[n - 2] = 0.5;
    let p = dir.path().join("big.parquet");
    write_parquet(
        &p,
        vec![
            ("ts", ts(minutes)),
            ("open", f64_array(&vec![1.0; n])),
            ("high", f64_array(&high)),
            ("low", f64_array(&vec![1.0; n])),
            ("close", f64_array(&vec![1.0; n])),
            ("volume", f64_array(&vec![1.0; n])),
        ],
    );
    assert_eq!(
        err(&p, &opts(Interval::M1)),
        format!(
            "{} row 69999: high 0.5 is below max(open, close) 1",
            p.display()
        )
    );
    // Nulls in required columns.
    let p = dir.path().join("nulls.parquet");
    write_parquet(
        &p,
        vec![
            ("ts", ts(vec![t, t])),
            ("open", f64_array(&[1.0, 1.0])),
            ("high", f64_array(&[1.0, 1.0])),
            ("low", f64_array(&[1.0, 1.0])),
            ("close", Arc::new(Float64Array::from(vec![Some(1.0), None]))),
            ("volume", f64_array(&[1.0, 1.0])),
        ],
    );
    assert_eq!(
        err(&p, &opts(Interval::D1)),
        format!("{} row 2: close is missing (null)", p.display())
    );
    // Missing column, and a file that is not Parquet.
    let p = dir.path().join("novol.parquet");
    write_parquet(&p, vec![("ts", ts(vec![t])), ("open", f64_array(&[1.0]))]);
    assert_eq!(
        err(&p, &opts(Interval::D1)),
        format!("{}: no high column", p.display())
    );
    let p = write(dir.path(), "junk.parquet", "not parquet at all");
    assert!(matches!(
        read_file(&p, &opts(Interval::D1)),
        Err(ImportError::Malformed { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Throughput (run with `cargo test --lib import -- --ignored --nocapture`; meaningful only in an
// optimised build)

#[test]
#[ignore]
fn throughput_csv() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("BIG.csv");
    let mut s = String::from("symbol,ts,open,high,low,close,volume\n");
    let n = 1_000_000i64;
    let t0 = 1_609_459_200i64; // 2021-01-01
    for i in 0..n {
        let secs = t0 + i * 60;
        let dt = chrono::DateTime::from_timestamp(secs, 0).unwrap();
        s.push_str(&format!(
            "AAAA,{},{:.4},{:.4},{:.4},{:.4},{}\n",
            dt.format("%Y-%m-%dT%H:%M:%SZ"),
            100.0 + (i % 97) as f64 * 0.01,
            101.0 + (i % 89) as f64 * 0.01,
            99.0 - (i % 83) as f64 * 0.01,
            100.5 + (i % 79) as f64 * 0.001,
            1000 + i % 5000
        ));
    }
    std::fs::write(&p, &s).unwrap();
    let o = opts(Interval::M1);
    let start = std::time::Instant::now();
    let b = read_file(&p, &o).unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(b[0].batch.num_rows(), n as usize);
    println!(
        "csv: {n} rows in {secs:.3}s = {:.0} rows/s ({:.0} MB/s)",
        n as f64 / secs,
        s.len() as f64 / secs / 1e6
    );
    // New York naive times.
    let p2 = dir.path().join("NY.csv");
    // Naive New York times, less the hours the 2021 and 2022 DST changes skip.
    let s2: String = s
        .replace('T', " ")
        .replace('Z', "")
        .lines()
        .filter(|l| !l.contains("2021-03-14 02:") && !l.contains("2022-03-13 02:"))
        .flat_map(|l| [l, "\n"])
        .collect();
    std::fs::write(&p2, &s2).unwrap();
    let o = ny(Interval::M1, "NY");
    let start = std::time::Instant::now();
    read_file(&p2, &o).unwrap();
    let secs = start.elapsed().as_secs_f64();
    println!("csv naive New York: {:.0} rows/s", n as f64 / secs);
}

#[test]
#[ignore]
fn throughput_sp500_daily() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/daily/sp500_alphavantage_daily_adjusted/daily_adjusted");
    if !dir.exists() {
        eprintln!("skipped: {} not found", dir.display());
        return;
    }
    let files = collect_inputs(&[dir]).unwrap();
    // Three files carry vendor dividends at or above the previous close, which refuse them.
    let o = ImportOptions {
        skip_events: true,
        ..pattern("DA-(.+)-T-")
    };
    let start = std::time::Instant::now();
    let mut rows = 0;
    for f in &files {
        for b in read_file(f, &o).unwrap() {
            rows += b.batch.num_rows();
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "sp500 daily: {} files, {rows} rows in {secs:.3}s = {:.0} rows/s",
        files.len(),
        rows as f64 / secs
    );
}

#[test]
fn event_columns_give_events_with_their_lines_even_after_crlf_and_blank_lines() {
    let dir = tempfile::tempdir().unwrap();
    let head = "timestamp,open,high,low,close,volume,dividend_amount,split_coefficient\r\n";
    let rows = "2020-11-05,1,2,1,2,10,0,1\r\n\r\n\
                2020-11-06,1,2,1,2,10,0.5,1\r\n\
                2020-11-09,1,2,1,2,10,0,2.00000200001\r\n";
    let path = write(dir.path(), "X.csv", &format!("{head}{rows}"));
    let got = read_file_with_events(&path, &opts(Interval::D1)).unwrap();
    let origins: Vec<(String, Option<f64>)> = got
        .events
        .iter()
        .map(|e| (e.origin.clone(), e.previous_close))
        .collect();
    let at = |line: u32| format!("{} line {line}", path.display());
    assert_eq!(origins, [(at(4), Some(2.0)), (at(5), Some(2.0))]);
    assert_eq!(got.events[1].event.ratio, Some(2.0));

    // A dividend not below the file's previous close names its line.
    let bad = rows.replace("0.5,1", "2,1");
    let path = write(dir.path(), "Y.csv", &format!("{head}{bad}"));
    let e = read_file_with_events(&path, &opts(Interval::D1)).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{} line 4: dividend amount 2 is not below the previous close 2",
            path.display()
        )
    );
    // The first bar's dividend has no previous close in the file: the store is asked later.
    let first = "timestamp,open,high,low,close,volume,dividend_amount\n2020-11-06,1,2,1,2,10,9\n";
    let path = write(dir.path(), "Z.csv", first);
    let got = read_file_with_events(&path, &opts(Interval::D1)).unwrap();
    assert_eq!(got.events[0].previous_close, None);
    // Bars written to the live tier ignore the columns.
    let body = format!("{head}{bad}");
    let o = ImportOptions {
        symbol: Some(Symbol::new("Y").unwrap()),
        ..opts(Interval::D1)
    };
    let series = read_csv_bytes(Path::new("body"), body.as_bytes(), &o).unwrap();
    assert_eq!(series[0].batch.num_rows(), 3);
}

#[test]
fn parquet_event_columns_give_events_with_their_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("AAPL.parquet");
    let days = |d: &[&str]| -> ArrayRef {
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        Arc::new(Date32Array::from_iter_values(d.iter().map(|s| {
            (NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap() - epoch).num_days() as i32
        })))
    };
    let f = |v: &[f64]| -> ArrayRef { Arc::new(Float64Array::from(v.to_vec())) };
    let columns = |dividend: f64| {
        vec![
            (
                "date",
                days(&["2020-08-28", "2020-08-31", "2020-11-05", "2020-11-06"]),
            ),
            ("open", f(&[500.0, 127.0, 117.0, 118.0])),
            ("high", f(&[510.0, 131.0, 120.0, 119.0])),
            ("low", f(&[490.0, 126.0, 116.0, 116.0])),
            ("close", f(&[499.23, 129.04, 119.03, 118.69])),
            ("volume", f(&[1.0, 1.0, 1.0, 1.0])),
            ("dividend_amount", f(&[0.0, 0.0, 0.0, dividend])),
            ("split_coefficient", f(&[1.0, 4.0, 1.0, 1.0])),
        ]
    };
    write_parquet(&path, columns(0.205));
    let got = read_file_with_events(&path, &opts(Interval::D1)).unwrap();
    let events: Vec<(String, Option<f64>, Option<f64>, String)> = got
        .events
        .iter()
        .map(|e| {
            let at = e.origin.rsplit(' ').next().unwrap().to_string();
            (
                e.event.ex_date.to_string(),
                e.event.ratio,
                e.event.amount,
                at,
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            ("2020-08-31".into(), Some(4.0), None, "2".into()),
            ("2020-11-06".into(), None, Some(0.205), "4".into()),
        ]
    );
    write_parquet(&path, columns(-1.0));
    let e = read_file_with_events(&path, &opts(Interval::D1)).unwrap_err();
    assert!(
        e.to_string()
            .ends_with("row 4: dividend amount -1 must be a finite number >= 0"),
        "{e}"
    );
    let skip = ImportOptions {
        skip_events: true,
        ..opts(Interval::D1)
    };
    assert!(
        read_file_with_events(&path, &skip)
            .unwrap()
            .events
            .is_empty()
    );
    // --bad-events skip: the split stays, the dividend is left out and named.
    let skip_bad = ImportOptions {
        bad_events: BadEvents::Skip,
        ..opts(Interval::D1)
    };
    let got = read_file_with_events(&path, &skip_bad).unwrap();
    assert_eq!(got.series[0].batch.num_rows(), 4);
    assert_eq!(got.events.len(), 1);
    assert_eq!(got.events[0].event.ratio, Some(4.0));
    assert_eq!(got.skipped.len(), 1);
    assert!(
        got.skipped[0]
            .to_string()
            .ends_with("row 4: dividend amount -1 must be a finite number >= 0"),
        "{}",
        got.skipped[0]
    );
}

#[test]
fn bad_events_skip_leaves_out_each_bad_event_and_names_its_line_and_rule() {
    let dir = tempfile::tempdir().unwrap();
    let head = "timestamp,open,high,low,close,volume,dividend_amount,split_coefficient\n";
    let rows = "2020-11-05,1,2,1,2,10,0,1\n\
                2020-11-06,1,2,1,2,10,5,0\n\
                2020-11-09,1,2,1,2,10,0.5,abc\n\
                2020-11-10,1,2,1,2,10,-1,4\n";
    let path = write(dir.path(), "X.csv", &format!("{head}{rows}"));
    let at = |line: u32| format!("{} line {line}", path.display());
    // By default the first bad value refuses the file.
    let e = read_file_with_events(&path, &opts(Interval::D1)).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}: split ratio 0 must be a finite number above 0 (new shares per old: 4 for 4:1)",
            at(3)
        )
    );
    let skip = ImportOptions {
        bad_events: BadEvents::Skip,
        ..opts(Interval::D1)
    };
    let got = read_file_with_events(&path, &skip).unwrap();
    assert_eq!(got.series[0].batch.num_rows(), 4, "every bar is kept");
    let kept: Vec<(String, Option<f64>, Option<f64>)> = got
        .events
        .iter()
        .map(|e| (e.origin.clone(), e.event.ratio, e.event.amount))
        .collect();
    assert_eq!(kept, [(at(4), None, Some(0.5)), (at(5), Some(4.0), None)]);
    let skipped: Vec<String> = got.skipped.iter().map(ToString::to_string).collect();
    assert_eq!(
        skipped,
        [
            format!(
                "{}: split ratio 0 must be a finite number above 0 (new shares per old: 4 for 4:1)",
                at(3)
            ),
            format!(
                "{}: dividend amount 5 is not below the previous close 2",
                at(3)
            ),
            format!(
                "{}: cannot parse split_coefficient \"abc\" as a number",
                at(4)
            ),
            format!("{}: dividend amount -1 must be a finite number >= 0", at(5)),
        ]
    );
}
