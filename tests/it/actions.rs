//! Corporate actions as data: the `corporate_actions` table committed in the store, filled by
//! imports of Alpha Vantage's daily adjusted CSVs and users' own files, read in SQL, over HTTP
//! and by the CLI; bad events refused with file and line, disagreements reported.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Float64Type;
use object_store::ObjectStore;
use object_store::memory::InMemory;
use reqwest::StatusCode;
use serde_json::Value;
use tickvault::actions::{ActionKind, CorporateAction, SOURCE_IMPORT, parse_ex_date};
use tickvault::config::{Config, Seconds};
use tickvault::import::{BadEvents, ImportOptions};
use tickvault::model::Symbol;
use tickvault::{Store, StoreOptions};

use crate::cli::fixtures;
use crate::cli::{ok, tickvault};
use crate::server::TestServer;

fn aapl() -> Symbol {
    Symbol::new("AAPL").unwrap()
}

fn day(s: &str) -> chrono::NaiveDate {
    parse_ex_date(s).unwrap()
}

fn split(sym: &str, date: &str, ratio: f64, source: &str) -> CorporateAction {
    CorporateAction::split(Symbol::new(sym).unwrap(), day(date), ratio, source, 1).unwrap()
}

fn av_options() -> Arc<ImportOptions> {
    Arc::new(ImportOptions {
        symbol_pattern: Some(regex::Regex::new("DA-(.+)-T-").unwrap()),
        ..ImportOptions::default()
    })
}

async fn import(store: &Store, files: &[PathBuf]) -> tickvault::Result<tickvault::ImportSummary> {
    store.import_files(files, av_options(), || {}).await
}

/// One f64 per row of a one-column result.
fn f64s(batches: &[RecordBatch]) -> Vec<Option<f64>> {
    batches
        .iter()
        .flat_map(|b| {
            let a = b.column(0).as_primitive::<Float64Type>();
            (0..a.len())
                .map(|i| (!a.is_null(i)).then(|| a.value(i)))
                .collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn an_alpha_vantage_import_stores_its_splits_and_dividends() {
    let store = Store::open("memory://").await.unwrap();
    let summary = import(&store, &[fixtures().join("DA-AAPL-T-2021-04-21.csv")])
        .await
        .unwrap();
    let set = store.actions().snapshot();
    let events = set.for_symbol(&aapl());
    let find = |date: &str, kind: ActionKind| {
        events
            .iter()
            .find(|e| e.ex_date == day(date) && e.kind == kind)
            .unwrap_or_else(|| panic!("no {kind} on {date}: {events:?}"))
    };
    assert_eq!(find("2020-08-31", ActionKind::Split).ratio, Some(4.0));
    assert_eq!(find("2020-11-06", ActionKind::Dividend).amount, Some(0.205));
    // Alpha Vantage writes 7:1 as 7.00000700001.
    assert_eq!(find("2014-06-09", ActionKind::Split).ratio, Some(7.0));
    assert!(events.iter().all(|e| e.source == SOURCE_IMPORT));
    let splits = events
        .iter()
        .filter(|e| e.kind == ActionKind::Split)
        .count();
    assert_eq!(splits, 4, "2000, 2005, 2014, 2020: {events:?}");
    assert_eq!(summary.actions.inserted, events.len());

    let got = store
        .query(
            "SELECT ratio FROM corporate_actions WHERE symbol = 'AAPL' \
             AND ex_date = DATE '2020-08-31' AND kind = 'split'",
        )
        .await
        .unwrap();
    assert_eq!(f64s(&got), [Some(4.0)]);
    let got = store
        .query(
            "SELECT amount FROM corporate_actions WHERE symbol = 'AAPL' \
             AND ex_date = DATE '2020-11-06'",
        )
        .await
        .unwrap();
    assert_eq!(f64s(&got), [Some(0.205)]);

    // The same file again changes nothing: no new version.
    let version = store.actions().version();
    let again = import(&store, &[fixtures().join("DA-AAPL-T-2021-04-21.csv")])
        .await
        .unwrap();
    assert_eq!(again.actions.inserted + again.actions.updated, 0);
    assert_eq!(store.actions().version(), version);
}

/// A copy of the AAPL fixture's header and rows from 2020-11-02 to 2020-11-09, with `edit`
/// applied to the line that starts with `date`.
fn av_file(dir: &Path, date: &str, edit: impl Fn(&str) -> String) -> (PathBuf, usize) {
    let text = std::fs::read_to_string(fixtures().join("DA-AAPL-T-2021-04-21.csv")).unwrap();
    let mut lines: Vec<String> = vec![text.lines().next().unwrap().to_string()];
    lines.extend(
        text.lines()
            .filter(|l| {
                l.as_bytes()[0].is_ascii_digit()
                    && &l[..10] >= "2020-11-02"
                    && &l[..10] <= "2020-11-09"
            })
            .map(str::to_string),
    );
    let at = lines.iter().position(|l| l.starts_with(date)).unwrap();
    lines[at] = edit(&lines[at]);
    let path = dir.join("DA-AAPL-T-2021-04-21.csv");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    (path, at + 1)
}

/// Replaces field `i` (0-based) of a CSV line.
fn set_field(line: &str, i: usize, value: &str) -> String {
    let mut f: Vec<&str> = line.split(',').collect();
    f[i] = value;
    f.join(",")
}

#[tokio::test]
async fn a_bad_event_in_an_import_refuses_the_import_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    // Fields: timestamp,open,high,low,close,adjusted_close,volume,dividend_amount,split_coefficient
    let cases: [(&str, usize, &str, &str); 5] = [
        (
            "2020-11-06",
            8,
            "0",
            "ratio 0 must be a finite number above 0",
        ),
        ("2020-11-06", 8, "-4", "ratio -4 must be"),
        ("2020-11-06", 8, "nan", "ratio NaN must be"),
        (
            "2020-11-06",
            7,
            "-0.205",
            "amount -0.205 must be a finite number >= 0",
        ),
        // The close of 2020-11-05 in the file is 119.03.
        (
            "2020-11-06",
            7,
            "150",
            "dividend amount 150 is not below the previous close 119.03",
        ),
    ];
    for (date, field, value, rule) in cases {
        let (path, line) = av_file(dir.path(), date, |l| set_field(l, field, value));
        let store = Store::open("memory://").await.unwrap();
        let err = import(&store, std::slice::from_ref(&path))
            .await
            .unwrap_err()
            .to_string();
        let at = format!("{} line {line}", path.display());
        assert!(err.contains(&at) && err.contains(rule), "{value}: {err}");
        assert!(store.actions().snapshot().is_empty(), "{value}");
        assert_eq!(store.actions().version(), 0);
        assert_eq!(store.catalog().snapshot().file_count(), 0, "no bars either");
    }
}

#[tokio::test]
async fn skip_events_imports_the_bars_of_a_file_whose_events_break_a_rule() {
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = av_file(dir.path(), "2020-11-06", |l| set_field(l, 7, "150"));
    let store = Store::open("memory://").await.unwrap();
    let options = ImportOptions {
        skip_events: true,
        ..(*av_options()).clone()
    };
    let summary = store
        .import_files(&[path], Arc::new(options), || {})
        .await
        .unwrap();
    assert_eq!(summary.rows, 6);
    assert!(store.actions().snapshot().is_empty());
    assert_eq!(store.actions().version(), 0);
}

/// The AAPL rows of 2020-11-02..09 with the 2020-11-06 dividend (0.205) made 150, above the
/// previous close (119.03), and a good 2:1 split on 2020-11-09: (path, line of the dividend).
fn one_bad_event(dir: &Path) -> (PathBuf, usize) {
    let (path, line) = av_file(dir, "2020-11-06", |l| set_field(l, 7, "150"));
    let text = std::fs::read_to_string(&path).unwrap();
    let text: Vec<String> = text
        .lines()
        .map(|l| {
            if l.starts_with("2020-11-09") {
                set_field(l, 8, "2.0")
            } else {
                l.to_string()
            }
        })
        .collect();
    std::fs::write(&path, text.join("\n") + "\n").unwrap();
    (path, line)
}

const BAD_DIVIDEND: &str = "dividend amount 150 is not below the previous close 119.03";

#[tokio::test]
async fn bad_events_skip_imports_the_bars_and_good_events_and_names_the_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (path, line) = one_bad_event(dir.path());
    let store = Store::open("memory://").await.unwrap();
    // By default the bad event refuses the import whole.
    let err = import(&store, std::slice::from_ref(&path))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!("{} line {line}: {BAD_DIVIDEND}", path.display())),
        "{err}"
    );
    assert_eq!(store.catalog().snapshot().file_count(), 0);
    assert_eq!(store.actions().version(), 0);

    let skip = Arc::new(ImportOptions {
        bad_events: BadEvents::Skip,
        ..(*av_options()).clone()
    });
    let summary = store
        .import_files(std::slice::from_ref(&path), Arc::clone(&skip), || {})
        .await
        .unwrap();
    assert_eq!(summary.rows, 6);
    assert_eq!(summary.actions.inserted, 1, "the split");
    let skipped: Vec<String> = summary
        .events_skipped
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        skipped,
        [format!("{} line {line}: {BAD_DIVIDEND}", path.display())]
    );
    let set = store.actions().snapshot();
    let events: Vec<_> = set
        .for_symbol(&aapl())
        .iter()
        .map(|e| (e.ex_date, e.kind, e.ratio))
        .collect();
    assert_eq!(events, [(day("2020-11-09"), ActionKind::Split, Some(2.0))]);

    // A dividend on a file's first row is checked against the store's bars: skipped too,
    // while the file's bars and its good events land.
    let later = dir.path().join("later");
    std::fs::create_dir(&later).unwrap();
    let second = later.join("DA-AAPL-T-2021-04-21.csv");
    std::fs::write(
        &second,
        "timestamp,open,high,low,close,adjusted_close,volume,dividend_amount,split_coefficient\n\
         2020-11-06,118.32,119.2,116.13,118.69,118.5,114457922,150,1.0\n\
         2020-11-10,115.55,117.59,114.13,115.97,115.8,138023390,0.1,1.0\n",
    )
    .unwrap();
    let summary = store
        .import_files(std::slice::from_ref(&second), skip, || {})
        .await
        .unwrap();
    assert_eq!(summary.rows, 2);
    let skipped: Vec<String> = summary
        .events_skipped
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert!(
        skipped[0].starts_with(&format!("{} line 2: {BAD_DIVIDEND}", second.display())),
        "{skipped:?}"
    );
    let amounts: Vec<_> = store
        .actions()
        .snapshot()
        .for_symbol(&aapl())
        .iter()
        .map(|e| (e.ex_date, e.amount))
        .collect();
    assert_eq!(
        amounts,
        [(day("2020-11-09"), None), (day("2020-11-10"), Some(0.1))]
    );
}

#[test]
fn cli_import_bad_events_refuses_by_default_and_skip_lists_what_it_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let (path, line) = one_bad_event(dir.path());
    let store = dir.path().join("store");
    let file = path.to_str().unwrap();
    let args = ["import", "--symbol-pattern", "DA-(.+)-T-", file];
    let out = tickvault(&store, &args);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{file} line {line}: {BAD_DIVIDEND}")),
        "{err}"
    );
    let count = ["sql", "--format", "csv", "SELECT count(*) AS n FROM bars"];
    assert_eq!(ok(&tickvault(&store, &count)).trim(), "n\n0");

    let out = ok(&tickvault(
        &store,
        &[&args[..3], &["--bad-events", "skip", file]].concat(),
    ));
    assert!(out.contains("imported 1 files, 6 rows"), "{out}");
    assert!(out.contains(": 1 new"), "{out}");
    assert!(
        out.contains(&format!(
            "corporate actions skipped (--bad-events skip): 1\n  SKIPPED {file} line {line}: {BAD_DIVIDEND}\n"
        )),
        "{out}"
    );
    assert_eq!(ok(&tickvault(&store, &count)).trim(), "n\n6");
    let listed = ok(&tickvault(
        &store,
        &["actions", "list", "AAPL", "--format", "csv"],
    ));
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(
        listed.contains("\nAAPL,2020-11-09,split,2.0,,import,"),
        "{listed}"
    );
    let bad = tickvault(&store, &["import", "--bad-events", "maybe", file]);
    assert!(!bad.status.success());
}

#[tokio::test]
async fn a_dividend_is_checked_against_the_stores_previous_close() {
    let store = Store::open("memory://").await.unwrap();
    import(&store, &[fixtures().join("DA-AAPL-T-2021-04-21.csv")])
        .await
        .unwrap();
    let version = store.actions().version();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("events.csv");
    std::fs::write(
        &path,
        "symbol,ex_date,kind,ratio,amount\n\
         MSFT,2021-02-17,dividend,,0.56\n\
         AAPL,2020-11-06,dividend,,119.03\n",
    )
    .unwrap();
    let events = tickvault::actions::input::read_events_csv(&path, SOURCE_IMPORT, 1).unwrap();
    let err = store.import_actions(events).await.unwrap_err().to_string();
    assert!(
        err.contains(&format!("{} line 3", path.display()))
            && err.contains("not below the previous close 119.03"),
        "{err}"
    );
    assert_eq!(
        store.actions().version(),
        version,
        "nothing of the file is stored"
    );
    assert!(
        store
            .actions()
            .snapshot()
            .for_symbol(&Symbol::new("MSFT").unwrap())
            .is_empty()
    );
}

#[tokio::test]
async fn two_sources_disagreeing_is_reported_not_silently_overwritten() {
    let store = Store::open("memory://").await.unwrap();
    store
        .actions()
        .upsert(vec![split("SHOP", "2022-06-29", 10.0, "polygon")])
        .await
        .unwrap();
    let m = store
        .actions()
        .upsert(vec![split("SHOP", "2022-06-29", 5.0, "yahoo")])
        .await
        .unwrap();
    assert_eq!(m.disagreements.len(), 1);
    let text = m.disagreements[0].to_string();
    assert!(
        text.contains("polygon says split 10") && text.contains("yahoo says split 5"),
        "{text}"
    );
    let shop = Symbol::new("SHOP").unwrap();
    assert_eq!(
        store.actions().snapshot().for_symbol(&shop)[0].ratio,
        Some(10.0)
    );
}

#[tokio::test]
async fn a_read_only_store_reads_the_table_and_sees_new_commits_after_refresh() {
    let os: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let writer = Store::open_with(Arc::clone(&os), "mem").await.unwrap();
    writer
        .actions()
        .upsert(vec![split("NVDA", "2021-07-20", 4.0, "import")])
        .await
        .unwrap();
    let options = StoreOptions {
        read_only: true,
        ..Default::default()
    };
    let reader = Store::open_with_store(Arc::clone(&os), "mem", &options)
        .await
        .unwrap();
    assert_eq!(reader.actions().snapshot().len(), 1);
    writer
        .actions()
        .upsert(vec![split("NVDA", "2024-06-10", 10.0, "import")])
        .await
        .unwrap();
    let count = "SELECT count(*) FROM corporate_actions";
    let n = |b: &[RecordBatch]| {
        b[0].column(0)
            .as_primitive::<arrow::datatypes::Int64Type>()
            .value(0)
    };
    assert_eq!(n(&reader.query(count).await.unwrap()), 1);
    reader.actions().refresh().await.unwrap();
    assert_eq!(n(&reader.query(count).await.unwrap()), 2);
    assert!(reader.actions().upsert(vec![]).await.is_err());
    // And a reopened store keeps both.
    let reopened = Store::open_with(os, "mem").await.unwrap();
    assert_eq!(*reopened.actions().snapshot(), *writer.actions().snapshot());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_lists_corporate_actions_and_sql_sees_new_commits() {
    let os: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    // The server follows other processes' commits on its store's clock, moved by the test.
    let clock = tickvault::clock::ManualClock::new(1_750_000_000_000_000);
    let options = StoreOptions {
        clock: Arc::<tickvault::clock::ManualClock>::clone(&clock),
        ..Default::default()
    };
    let store = Arc::new(
        Store::open_with_store(Arc::clone(&os), "mem", &options)
            .await
            .unwrap(),
    );
    import(
        &store,
        &[
            fixtures().join("DA-AAPL-T-2021-04-21.csv"),
            fixtures().join("DA-BRK.B-T-2021-04-21.csv"),
        ],
    )
    .await
    .unwrap();
    let config = Config {
        follow_interval: Seconds(5.0),
        ..Config::default()
    };
    let server = TestServer::start(config, Arc::clone(&store)).await;
    let r = server.get("/v1/corporate-actions?symbols=BRK.B,AAPL").await;
    assert_eq!(r.status(), StatusCode::OK);
    let rows: Vec<Value> = r.json().await.unwrap();
    let brk: Vec<&Value> = rows.iter().filter(|r| r["symbol"] == "BRK.B").collect();
    assert_eq!(brk.len(), 1, "{rows:?}");
    assert_eq!(brk[0]["kind"], "split");
    assert_eq!(brk[0]["ratio"], 50.0);
    assert_eq!(brk[0]["ex_date"], "2010-01-21");
    assert_eq!(brk[0]["source"], "import");
    assert!(
        rows.iter()
            .any(|r| r["symbol"] == "AAPL" && r["ex_date"] == "2020-11-06" && r["amount"] == 0.205)
    );

    let csv = server
        .get("/v1/corporate-actions?symbols=BRK.B&format=csv")
        .await
        .text()
        .await
        .unwrap();
    let mut lines = csv.lines();
    assert_eq!(
        lines.next().unwrap(),
        "symbol,ex_date,kind,ratio,amount,source,recorded_at"
    );
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("BRK.B,2010-01-21,split,50.0,,import,"),
        "{csv}"
    );
    let none: Vec<Value> = server
        .get("/v1/corporate-actions?symbols=MSFT")
        .await
        .json()
        .await
        .unwrap();
    assert!(none.is_empty());
    let all: Vec<Value> = server
        .get("/v1/corporate-actions")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(all.len(), rows.len());
    let bad = server.get("/v1/corporate-actions?symbols=%20,").await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    // Another process commits: the follow loop picks it up, and SQL (result cache and all)
    // answers with it.
    let sql = "SELECT count(*) AS n FROM corporate_actions WHERE symbol = 'ZZZ'";
    let n = |body: Value| body[0]["n"].as_i64().unwrap();
    assert_eq!(n(server.post_sql(sql).await.json().await.unwrap()), 0);
    let other = Store::open_with(Arc::clone(&os), "mem").await.unwrap();
    other
        .actions()
        .upsert(vec![split("ZZZ", "2020-01-02", 2.0, "import")])
        .await
        .unwrap();
    // Not before the follow tick.
    assert_eq!(n(server.post_sql(sql).await.json().await.unwrap()), 0);
    clock.advance(Duration::from_secs(5));
    let mut seen = 0;
    for _ in 0..100 {
        seen = n(server.post_sql(sql).await.json().await.unwrap());
        if seen == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(seen, 1, "the server followed the other process's commit");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_imports_and_lists_events_and_refuses_a_bad_file_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let file = dir.path().join("events.csv");
    std::fs::write(
        &file,
        "symbol,ex_date,kind,ratio,amount\n\
         TSLA,2020-08-31,split,5,\n\
         TSLA,2022-08-25,split,3,\n\
         KO,2021-03-12,dividend,,0.42\n",
    )
    .unwrap();
    let out = ok(&tickvault(
        &store,
        &["actions", "import", file.to_str().unwrap()],
    ));
    assert!(out.contains("imported 3 corporate actions"), "{out}");
    assert!(out.contains("3 new"), "{out}");
    let listed = ok(&tickvault(
        &store,
        &["actions", "list", "TSLA", "--format", "csv"],
    ));
    let lines: Vec<&str> = listed.lines().collect();
    assert_eq!(
        lines[0],
        "symbol,ex_date,kind,ratio,amount,source,recorded_at"
    );
    assert_eq!(lines.len(), 3, "{listed}");
    assert!(
        lines[1].starts_with("TSLA,2020-08-31,split,5.0,,import,"),
        "{listed}"
    );
    assert!(
        lines[2].starts_with("TSLA,2022-08-25,split,3.0,,import,"),
        "{listed}"
    );
    let all = ok(&tickvault(&store, &["actions", "list", "--format", "csv"]));
    assert_eq!(all.lines().count(), 4, "{all}");

    // A bad row: nothing of the file is stored.
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "symbol,ex_date,kind,ratio,amount\n\
         NEW,2020-01-02,split,2,\n\
         NEW,2020-01-03,split,0,\n",
    )
    .unwrap();
    let out = tickvault(&store, &["actions", "import", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{} line 3", bad.display())) && err.contains("ratio 0"),
        "{err}"
    );
    let all = ok(&tickvault(&store, &["actions", "list", "--format", "csv"]));
    assert!(!all.contains("NEW"), "{all}");

    // Another source said something else: the import (the user's own data) wins, and says so.
    {
        let s = Store::open(store.to_str().unwrap()).await.unwrap();
        s.actions()
            .upsert(vec![split("KO", "2012-08-13", 3.0, "yahoo")])
            .await
            .unwrap();
    }
    let fix = dir.path().join("fix.csv");
    std::fs::write(
        &fix,
        "symbol,ex_date,kind,ratio,amount\nKO,2012-08-13,split,2,\n",
    )
    .unwrap();
    let out = ok(&tickvault(
        &store,
        &["actions", "import", fix.to_str().unwrap()],
    ));
    assert!(
        out.contains("DISAGREEMENT KO 2012-08-13: yahoo says split 3, import says split 2"),
        "{out}"
    );
    for cmd in [
        vec!["actions"],
        vec!["actions", "import"],
        vec!["actions", "list"],
    ] {
        let mut args = cmd.clone();
        args.push("--help");
        let out = ok(&tickvault(&store, &args));
        assert!(out.contains("Usage: tickvault"), "{cmd:?}: {out}");
    }
}

#[test]
fn cli_import_of_alpha_vantage_files_stores_their_events() {
    let dir = tempfile::tempdir().unwrap();
    let out = ok(&tickvault(
        dir.path(),
        &[
            "import",
            "--symbol-pattern",
            "DA-(.+)-T-",
            fixtures()
                .join("DA-AAPL-T-2021-04-21.csv")
                .to_str()
                .unwrap(),
        ],
    ));
    assert!(
        out.contains("corporate actions (split_coefficient, dividend_amount columns): 39 new"),
        "{out}"
    );
    let listed = ok(&tickvault(
        dir.path(),
        &["actions", "list", "AAPL", "--format", "csv"],
    ));
    assert!(
        listed.contains("\nAAPL,2020-08-31,split,4.0,,import,"),
        "{listed}"
    );
    assert!(
        listed.contains("\nAAPL,2020-11-06,dividend,,0.205,import,"),
        "{listed}"
    );
    assert!(
        listed.contains("\nAAPL,2014-06-09,split,7.0,,import,"),
        "{listed}"
    );
}
