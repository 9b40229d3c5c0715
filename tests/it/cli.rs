//! The `tickvault` binary, run for real over a store in a temporary directory, importing the real
//! data fixtures in tests/fixtures.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub(crate) fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Runs the binary over `store` (never the environment's store).
pub(crate) fn tickvault(store: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tickvault"))
        .arg("--store")
        .arg(store)
        .args(args)
        .env_remove("TICKVAULT_STORE")
        .output()
        .expect("run tickvault")
}

/// The stdout of a run that must have succeeded (else its exit code and both streams).
pub(crate) fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn sql_csv(store: &Path, sql: &str) -> String {
    ok(&tickvault(store, &["sql", "--format", "csv", sql]))
}

fn import_daily(store: &Path) -> String {
    let f = fixtures();
    ok(&tickvault(
        store,
        &[
            "import",
            "--symbol-pattern",
            "DA-(.+)-T-",
            f.join("DA-AAPL-T-2021-04-21.csv").to_str().unwrap(),
            f.join("DA-MSFT-T-2021-04-21.csv").to_str().unwrap(),
            f.join("DA-BRK.B-T-2021-04-21.csv").to_str().unwrap(),
        ],
    ))
}

/// Data lines of a fixture CSV (without the header).
fn data_lines(name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(fixtures().join(name)).unwrap();
    text.lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn every_command_has_help() {
    let dir = tempfile::tempdir().unwrap();
    for cmd in [
        vec![],
        vec!["import"],
        vec!["sql"],
        vec!["stats"],
        vec!["compact"],
        vec!["gc"],
        vec!["check"],
        vec!["symbols"],
        vec!["symbols", "add"],
        vec!["symbols", "list"],
        vec!["symbols", "remove"],
        vec!["backfill"],
        vec!["delete"],
        vec!["wal"],
        vec!["wal", "damage"],
        vec!["wal", "clear-damage"],
        vec!["snapshot"],
        vec!["snapshot", "create"],
        vec!["snapshot", "list"],
        vec!["snapshot", "delete"],
    ] {
        let mut args = cmd.clone();
        args.push("--help");
        let out = ok(&tickvault(dir.path(), &args));
        assert!(out.contains("Usage: tickvault"), "{cmd:?}: {out}");
    }
}

#[test]
fn imports_real_daily_bars_and_answers_sql() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    let out = import_daily(store);
    let lines = data_lines("DA-AAPL-T-2021-04-21.csv").len();
    let total = lines
        + data_lines("DA-MSFT-T-2021-04-21.csv").len()
        + data_lines("DA-BRK.B-T-2021-04-21.csv").len();
    assert!(
        out.contains(&format!("imported 3 files, {total} rows, 3 symbols")),
        "{out}"
    );

    let counts = sql_csv(
        store,
        "SELECT symbol, count(*) AS n FROM bars GROUP BY symbol ORDER BY symbol",
    );
    assert_eq!(
        counts,
        format!(
            "symbol,n\nAAPL,{lines}\nBRK.B,{}\nMSFT,{}\n",
            data_lines("DA-BRK.B-T-2021-04-21.csv").len(),
            data_lines("DA-MSFT-T-2021-04-21.csv").len()
        )
    );
    // The split day, value for value against the source line.
    let source = data_lines("DA-AAPL-T-2021-04-21.csv")
        .into_iter()
        .find(|l| l.starts_with("2020-08-31,"))
        .unwrap();
    let f: Vec<&str> = source.split(',').collect();
    let got = sql_csv(
        store,
        "SELECT open, high, low, close, volume FROM bars WHERE symbol = 'AAPL' AND ts = '2020-08-31T00:00:00Z'",
    );
    let want: Vec<f64> = [f[1], f[2], f[3], f[4], f[6]]
        .iter()
        .map(|v| v.parse().unwrap())
        .collect();
    let got_vals: Vec<f64> = got
        .lines()
        .nth(1)
        .unwrap()
        .split(',')
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(got_vals, want);

    // Re-importing the same files is an upsert: the counts stay.
    import_daily(store);
    assert_eq!(
        sql_csv(store, "SELECT count(*) AS n FROM bars"),
        format!("n\n{total}\n")
    );

    let stats = ok(&tickvault(store, &["stats"]));
    assert!(
        stats.contains("AAPL") && stats.contains(&lines.to_string()),
        "{stats}"
    );
    let check = ok(&tickvault(store, &["check"]));
    assert!(check.contains("0 problems"), "{check}");
}

#[test]
fn imports_real_minute_bars_in_new_york_time() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    let file = fixtures().join("alphavantage_MSFT_1min_2020-11-23_2020-12-18_extended_hours.csv");
    let out = ok(&tickvault(
        store,
        &[
            "import",
            "--interval",
            "1m",
            "--symbol",
            "MSFT",
            "--tz",
            "America/New_York",
            file.to_str().unwrap(),
        ],
    ));
    let lines = data_lines("alphavantage_MSFT_1min_2020-11-23_2020-12-18_extended_hours.csv");
    assert!(out.contains(&format!("{} rows", lines.len())), "{out}");
    // Newest first in the file: line 2 is 2020-12-18 20:00 New York = 2020-12-19 01:00 UTC.
    let newest: Vec<&str> = lines[0].split(',').collect();
    assert_eq!(newest[0], "2020-12-18 20:00:00");
    let got = sql_csv(
        store,
        "SELECT max(ts) AS t, last_value(close ORDER BY ts) AS c FROM bars",
    );
    assert_eq!(got, format!("t,c\n2020-12-19T01:00:00Z,{}\n", newest[4]));
    // The oldest line, converted here independently of the importer.
    let oldest = lines.last().unwrap().split(',').next().unwrap().to_string();
    let naive = chrono::NaiveDateTime::parse_from_str(&oldest, "%Y-%m-%d %H:%M:%S").unwrap();
    let utc = naive
        .and_local_timezone(chrono_tz::America::New_York)
        .unwrap()
        .with_timezone(&chrono::Utc);
    assert_eq!(
        sql_csv(store, "SELECT min(ts) AS t FROM bars"),
        format!("t\n{}\n", utc.format("%Y-%m-%dT%H:%M:%SZ"))
    );
}

#[test]
fn a_bad_row_imports_nothing_and_names_file_line_and_rule() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("input");
    std::fs::create_dir(&input).unwrap();
    std::fs::copy(
        fixtures().join("DA-AAPL-T-2021-04-21.csv"),
        input.join("AAPL.csv"),
    )
    .unwrap();
    std::fs::write(
        input.join("ZZZ.csv"),
        "timestamp,open,high,low,close,volume\n2021-01-04,10,11,9,10.5,100\n2021-01-05,10,9.5,9,10.5,100\n",
    )
    .unwrap();
    let store = dir.path().join("store");
    let out = tickvault(&store, &["import", input.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ZZZ.csv") && err.contains("line 3") && err.contains("high 9.5 is below"),
        "{err}"
    );
    // Nothing of the import was committed, not even the good file.
    assert_eq!(sql_csv(&store, "SELECT count(*) AS n FROM bars"), "n\n0\n");
}

#[test]
fn sql_output_formats() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    import_daily(&store);
    let q = "SELECT symbol, ts, close FROM bars WHERE symbol = 'MSFT' AND ts < '1999-11-04' ORDER BY ts";
    let json = ok(&tickvault(&store, &["sql", "--format", "json", q]));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 3);
    assert_eq!(v[0]["symbol"], "MSFT");
    let ndjson = ok(&tickvault(&store, &["sql", "--format", "ndjson", q]));
    assert_eq!(ndjson.lines().count(), 3);

    let arrow_file = dir.path().join("out.arrow");
    ok(&tickvault(
        &store,
        &[
            "sql",
            "--format",
            "arrow",
            "--output",
            arrow_file.to_str().unwrap(),
            q,
        ],
    ));
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::fs::File::open(&arrow_file).unwrap(), None)
            .unwrap();
    let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, 3);

    let pq = dir.path().join("out.parquet");
    ok(&tickvault(
        &store,
        &[
            "sql",
            "--format",
            "parquet",
            "--output",
            pq.to_str().unwrap(),
            q,
        ],
    ));
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&pq).unwrap(),
    )
    .unwrap()
    .build()
    .unwrap();
    let rows: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, 3);

    let table = ok(&tickvault(&store, &["sql", "--format", "table", q]));
    assert!(table.contains("| MSFT   |"), "{table}");
}

#[test]
fn vendor_files_are_imported_whatever_their_extension() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let stooq = dir.path().join("stooq");
    std::fs::create_dir_all(&stooq).unwrap();
    let day = |d: u32, close: f64| format!("2021-01-{d:02},{close},{close},{close},{close},100\n");
    let header = "Date,Open,High,Low,Close,Volume\n";
    std::fs::write(
        stooq.join("aapl.us.txt"),
        format!("{header}{}{}", day(4, 1.0), day(5, 2.0)),
    )
    .unwrap();
    std::fs::write(
        stooq.join("msft.us.txt"),
        format!("{header}{}", day(4, 3.0)),
    )
    .unwrap();
    let stooq_arg = stooq.to_str().unwrap();
    // A directory of .txt files: nothing to import, and the error says what would.
    let out = tickvault(&store, &["import", stooq_arg]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no .csv, .csv.gz or .parquet files found") && err.contains("--format csv"),
        "{err}"
    );
    // A file named directly is read whatever its extension.
    let file = stooq.join("msft.us.txt");
    let out = ok(&tickvault(&store, &["import", file.to_str().unwrap()]));
    assert!(out.starts_with("imported 1 files, 1 rows"), "{out}");
    // --format csv reads every file of the directory.
    let out = ok(&tickvault(
        &store,
        &["import", "--format", "csv", stooq_arg],
    ));
    assert!(out.starts_with("imported 2 files, 3 rows"), "{out}");
    assert_eq!(
        sql_csv(
            &store,
            "SELECT symbol, count(*) AS n, sum(close) AS c FROM bars GROUP BY symbol ORDER BY symbol"
        ),
        "symbol,n,c\naapl.us,2,3.0\nmsft.us,1,3.0\n"
    );
    // --format parquet on CSV text names the file it cannot read, and imports nothing.
    let out = tickvault(&store, &["import", "--format", "parquet", stooq_arg]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("aapl.us.txt"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn refused_sql_and_broken_store_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    import_daily(&store);
    let out = tickvault(&store, &["sql", "DROP VIEW bars_daily"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("read-only"));

    // Delete a data file behind the catalog's back: check must say so and fail.
    let victim = walk(&store.join("bars"))
        .into_iter()
        .find(|p| p.to_string_lossy().contains("symbol=MSFT"))
        .unwrap();
    std::fs::remove_file(&victim).unwrap();
    let out = tickvault(&store, &["check"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("PROBLEM"));
}

#[test]
fn symbols_are_stored_path_safe() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let csv = dir.path().join("in.csv");
    std::fs::write(
        &csv,
        "symbol,date,open,high,low,close,volume\n^GSPC,2021-01-04,1,2,0.5,1.5,0\nA/B,2021-01-04,1,2,0.5,1.5,0\n..,2021-01-04,1,2,0.5,1.5,0\nEURUSD=X,2021-01-04,1,2,0.5,1.5,0\n",
    )
    .unwrap();
    ok(&tickvault(&store, &["import", csv.to_str().unwrap()]));
    let dirs: Vec<String> = std::fs::read_dir(store.join("bars/timeframe=1d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut dirs = dirs;
    dirs.sort();
    assert_eq!(
        dirs,
        [
            "symbol=%5EGSPC",
            "symbol=..",
            "symbol=A%2FB",
            "symbol=EURUSD%3DX"
        ]
    );
    assert_eq!(
        sql_csv(&store, "SELECT symbol FROM bars ORDER BY symbol"),
        "symbol\n..\nA/B\nEURUSD=X\n^GSPC\n"
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn two_processes_importing_at_once_both_land() {
    // Two real processes commit to one store at the same time; `PutMode::Create` on the commit
    // log makes one of each racing pair lose, reload and retry.
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let f = fixtures();
    let spawn = |name: &str| {
        Command::new(env!("CARGO_BIN_EXE_tickvault"))
            .arg("--store")
            .arg(&store)
            .args(["import", "--symbol-pattern", "DA-(.+)-T-"])
            .arg(f.join(name))
            .env_remove("TICKVAULT_STORE")
            .spawn()
            .unwrap()
    };
    for _round in 0..3 {
        let mut a = spawn("DA-AAPL-T-2021-04-21.csv");
        let mut b = spawn("DA-MSFT-T-2021-04-21.csv");
        assert!(a.wait().unwrap().success());
        assert!(b.wait().unwrap().success());
    }
    let want = format!(
        "symbol,n\nAAPL,{}\nMSFT,{}\n",
        data_lines("DA-AAPL-T-2021-04-21.csv").len(),
        data_lines("DA-MSFT-T-2021-04-21.csv").len()
    );
    assert_eq!(
        sql_csv(
            &store,
            "SELECT symbol, count(*) AS n FROM bars GROUP BY symbol ORDER BY symbol"
        ),
        want
    );
    let commits = std::fs::read_dir(store.join("bars/_delta_log"))
        .unwrap()
        .filter(|e| {
            let name = e.as_ref().unwrap().file_name();
            name.to_string_lossy().ends_with(".json")
        })
        .count();
    assert_eq!(commits, 7, "version 0, then six imports, six commits");
    assert!(ok(&tickvault(&store, &["check"])).contains("0 problems"));
}

/// Stage 2 from the command line against a fake Yahoo on loopback: add, backfill, delete,
/// heal, list, and remove with purge.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn symbols_backfill_and_delete_from_the_command_line() {
    let fake = tickvault::sync::fake_upstream::FakeUpstream::start(crate::sync::daily_data())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("data");
    let config = dir.path().join("tickvault.toml");
    std::fs::write(
        &config,
        format!(
            "default_provider = \"yahoo\"\nsettle = \"0s\"\n[providers.yahoo]\nkind = \"yahoo\"\nbase_url = \"{}\"\n",
            fake.base_url()
        ),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut all = vec!["--config", config.to_str().unwrap()];
        all.extend_from_slice(args);
        let store = store.clone();
        let all: Vec<String> = all.iter().map(|s| s.to_string()).collect();
        async move {
            tokio::task::spawn_blocking(move || {
                let refs: Vec<&str> = all.iter().map(String::as_str).collect();
                tickvault(&store, &refs)
            })
            .await
            .unwrap()
        }
    };
    let out = ok(&run(&["symbols", "add", "AAPL", "--since", "2021-01-01"]).await);
    assert!(out.contains("tracking AAPL"), "{out}");
    // A bad request names the field and registers nothing.
    let bad = run(&["symbols", "add", "MSFT", "--interval", "2d"]).await;
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("timeframes: unknown timeframe \"2d\""),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    let out = ok(&run(&["backfill"]).await);
    // The chart and the symbol's corporate actions.
    assert!(
        out.starts_with("checked 1 series, fetched 1 (1 chunks, 2 requests): 75 rows"),
        "{out}"
    );
    assert!(
        out.contains("corporate actions: 1 requests, 0 new or changed, 0 refused"),
        "{out}"
    );
    let out = ok(&run(&[
        "delete",
        "AAPL",
        "--start",
        "2021-02-01",
        "--end",
        "2021-03-01",
    ])
    .await);
    assert!(out.contains("deleted 19 rows of AAPL 1d"), "{out}");
    let out = ok(&run(&["backfill"]).await);
    assert!(out.contains("2 requests): 19 rows"), "{out}");
    let out = ok(&run(&["symbols", "list"]).await);
    assert!(
        out.contains("AAPL\t1d\tyahoo\tus-equity\tfresh\t2021-04-21T00:00:00Z"),
        "{out}"
    );
    assert_eq!(sql_csv(&store, "SELECT count(*) AS n FROM bars"), "n\n75\n");
    // Each backfill (a process of its own) asked for the bars and for the events once.
    assert_eq!(fake.requests().len(), 4);
    assert_eq!(fake.requests().iter().filter(|r| r.actions).count(), 2);
    let out = ok(&run(&["symbols", "remove", "AAPL", "--purge"]).await);
    assert!(out.contains("deleted 75 rows"), "{out}");
    assert_eq!(sql_csv(&store, "SELECT count(*) AS n FROM bars"), "n\n0\n");
}

/// Issue 16, case 5: New York minutes 00:58-01:59, the repeated 01:00-01:59, then 02:00, on
/// the day the clocks fall back (123 rows, 123 distinct instants).
fn fall_back_csv(dir: &Path) -> PathBuf {
    let mut csv = String::from("ts,open,high,low,close,volume\n");
    let mut close = 0;
    let mut push = |h: u32, m: u32| {
        close += 1;
        csv.push_str(&format!(
            "2024-11-03 {h:02}:{m:02},1,{close},1,{close},10\n"
        ));
    };
    push(0, 58);
    push(0, 59);
    for _ in 0..2 {
        for m in 0..60 {
            push(1, m);
        }
    }
    push(2, 0);
    let path = dir.join("fall.csv");
    std::fs::write(&path, csv).unwrap();
    path
}

fn import_ny(store: &Path, file: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "import",
        "--tz",
        "America/New_York",
        "--symbol",
        "SPY",
        "--interval",
        "1m",
    ];
    args.extend_from_slice(extra);
    args.push(file.to_str().unwrap());
    tickvault(store, &args)
}

#[test]
fn an_ambiguous_fall_back_hour_is_refused_unless_told_how_to_read_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = fall_back_csv(dir.path());

    // By default: refused, naming the file, the line and the rule; nothing stored.
    let store = dir.path().join("refused");
    let out = import_ny(&store, &file, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("fall.csv line 4:")
            && stderr.contains("\"2024-11-03 01:00\" is ambiguous in America/New_York")
            && stderr.contains("--ambiguous"),
        "{stderr}"
    );
    assert_eq!(sql_csv(&store, "SELECT count(*) AS n FROM bars"), "n\n0\n");

    // infer: the first pass is EDT (UTC-4), the pass after the clock steps back EST (UTC-5).
    let store = dir.path().join("infer");
    let out = ok(&import_ny(&store, &file, &["--ambiguous", "infer"]));
    assert!(
        out.contains("imported 1 files, 123 rows, 1 symbols"),
        "{out}"
    );
    assert_eq!(
        sql_csv(&store, "SELECT count(DISTINCT ts) AS n FROM bars"),
        "n\n123\n"
    );
    let at = |store: &Path, utc: &str| {
        sql_csv(
            store,
            &format!(
                "SELECT CAST(close AS BIGINT) AS close FROM bars WHERE ts = '{utc}'::timestamptz"
            ),
        )
    };
    assert_eq!(at(&store, "2024-11-03T04:58:00Z"), "close\n1\n");
    assert_eq!(at(&store, "2024-11-03T05:00:00Z"), "close\n3\n");
    assert_eq!(at(&store, "2024-11-03T06:00:00Z"), "close\n63\n");
    assert_eq!(at(&store, "2024-11-03T06:59:00Z"), "close\n122\n");
    assert_eq!(at(&store, "2024-11-03T07:00:00Z"), "close\n123\n");

    // earliest / latest read both passes as the same instants: the count printed is the count
    // stored, and the repeated keys are reported as such.
    for (choice, first_0100) in [("earliest", "05:00"), ("latest", "06:00")] {
        let store = dir.path().join(choice);
        let out = ok(&import_ny(&store, &file, &["--ambiguous", choice]));
        assert!(
            out.contains(
                "imported 1 files, 63 rows (60 more rows repeated a key earlier in their file \
                 and replaced it), 1 symbols"
            ),
            "{choice}: {out}"
        );
        assert_eq!(
            sql_csv(&store, "SELECT count(*) AS n FROM bars"),
            "n\n63\n",
            "{choice}"
        );
        // The later row of the file wins its key.
        assert_eq!(
            at(&store, &format!("2024-11-03T{first_0100}:00Z")),
            "close\n63\n",
            "{choice}"
        );
    }
}

#[test]
fn a_local_time_the_spring_forward_skips_is_always_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("spring.csv");
    std::fs::write(
        &file,
        "ts,open,high,low,close,volume\n2024-03-10 01:59,1,1,1,1,1\n2024-03-10 02:30,1,1,1,1,1\n",
    )
    .unwrap();
    for extra in [
        &[][..],
        &["--ambiguous", "earliest"],
        &["--ambiguous", "infer"],
    ] {
        let out = import_ny(&dir.path().join("store"), &file, extra);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{extra:?}");
        assert!(
            stderr.contains("spring.csv line 3:")
                && stderr.contains("\"2024-03-10 02:30\" does not exist in America/New_York"),
            "{extra:?}: {stderr}"
        );
    }
}

/// Issue 16, point 11: `86400000` was read as seconds and `86400000000` as year 4707.
#[test]
fn epoch_integers_whose_unit_the_magnitude_does_not_tell_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    for (value, unit) in [("86400000", "ms"), ("86400000000", "us")] {
        let file = dir.path().join(format!("e{value}.csv"));
        std::fs::write(
            &file,
            format!("ts,open,high,low,close,volume\n{value},1,1,1,1,1\n"),
        )
        .unwrap();
        let store = dir.path().join(format!("s{value}"));
        let out = tickvault(&store, &["import", "--symbol", "X", file.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{value}");
        assert!(
            stderr.contains(&format!("e{value}.csv line 2: epoch integer {value}"))
                && stderr.contains("--epoch-unit"),
            "{stderr}"
        );
        // Told the unit, it is read in it: one day after the epoch.
        let out = ok(&tickvault(
            &store,
            &[
                "import",
                "--symbol",
                "X",
                "--epoch-unit",
                unit,
                file.to_str().unwrap(),
            ],
        ));
        assert!(out.contains("1 rows"), "{out}");
        assert_eq!(
            sql_csv(
                &store,
                "SELECT count(*) AS n FROM bars WHERE ts = '1970-01-02T00:00:00Z'::timestamptz"
            ),
            "n\n1\n",
            "{unit}"
        );
    }
    // A magnitude that does tell its unit needs no flag.
    let file = dir.path().join("seconds.csv");
    std::fs::write(
        &file,
        "ts,open,high,low,close,volume\n1618963200,1,1,1,1,1\n",
    )
    .unwrap();
    let store = dir.path().join("seconds");
    ok(&tickvault(
        &store,
        &["import", "--symbol", "X", file.to_str().unwrap()],
    ));
    assert_eq!(
        sql_csv(
            &store,
            "SELECT count(*) AS n FROM bars WHERE ts = '2021-04-21'::timestamptz"
        ),
        "n\n1\n"
    );
}

/// Item 9 of issue 16, on the Delta log: a torn log entry is named by `check` and by writes
/// (not "gave up committing after 50 attempts").
#[test]
fn a_torn_log_entry_is_named_by_check_and_by_writes() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("data");
    import_daily(&store);
    let entry = store.join("bars/_delta_log/00000000000000000001.json");
    let text = std::fs::read(&entry).unwrap();
    std::fs::write(&entry, &text[..text.len() / 2]).unwrap();

    let out = tickvault(&store, &["check"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{said}");
    assert!(
        said.contains("PROBLEM bars/_delta_log/00000000000000000001.json: not a commit"),
        "{said}"
    );

    let f = fixtures();
    let out = tickvault(
        &store,
        &[
            "import",
            "--symbol-pattern",
            "DA-(.+)-T-",
            f.join("DA-AAPL-T-2021-04-21.csv").to_str().unwrap(),
        ],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("catalog log entry bars/_delta_log/00000000000000000001.json is broken"),
        "{err}"
    );
    assert!(!err.contains("attempts"), "{err}");
}

/// Every key by flag, variable or file, in their order, as `tickvault config` shows it; and the
/// store's keys are global flags: after `stats` they reach the S3 client (which then fails to
/// connect to a closed port, saying where it tried).
#[test]
fn config_keys_by_file_variable_and_flag_reach_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tickvault.toml");
    std::fs::write(
        &file,
        "query_timeout = \"5s\"\nmax_body = \"1MiB\"\ngc_grace = \"2h\"\n[s3]\nregion = \"file\"\n",
    )
    .unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tickvault"))
            .arg("--config")
            .arg(&file)
            .args(args)
            .env_clear()
            .env("TICKVAULT_MAX_BODY", "2MiB")
            .env("TICKVAULT_QUERY_TIMEOUT", "6s")
            .env("TICKVAULT_S3_REGION", "env")
            .output()
            .expect("run tickvault")
    };
    let shown = ok(&run(&[
        "config",
        "--query-timeout",
        "7s",
        "--s3-endpoint",
        "http://127.0.0.1:9",
        "--s3-allow-http",
    ]));
    for line in [
        "query_timeout = \"7s\"",
        "max_body = \"2MiB\"",
        "gc_grace = \"7200s\"",
        "region = \"env\"",
        "endpoint = \"http://127.0.0.1:9\"",
        "allow_http = true",
    ] {
        assert!(shown.lines().any(|l| l == line), "{line}: {shown}");
    }
    let out = run(&[
        "--store",
        "s3://bucket/prefix",
        "stats",
        "--s3-endpoint",
        "http://127.0.0.1:1",
        "--s3-allow-http",
        "--s3-access-key-id",
        "id",
        "--s3-secret-access-key",
        "secret",
        "--s3-max-retries",
        "0",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("http://127.0.0.1:1/"), "{stderr}");
    let out = run(&["config", "--max-body", "12XB"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("--max-body"),
        "{stderr}"
    );
}
