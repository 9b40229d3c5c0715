//! Engines other than tickvault read the table through its Delta log (`bars/_delta_log/`) and
//! see exactly what tickvault sees: deltalake, polars (`scan_delta`) and DuckDB's delta
//! extension each give the same per-symbol count, sum(close), min(ts) and max(ts) as tickvault's
//! own SQL, at the latest version and at an older one, after appends, upserts that replace
//! files, compactions, a delete and GC, past a checkpoint, on local disk and on S3 (moto).
//! A plain glob of the same directory does NOT agree: it also reads replaced files that GC's
//! grace keeps, which is why the log is the table.
//!
//! The engines run in Python (`tests/delta_readers.py`, packages from
//! `tests/delta_readers.requirements.txt`, installed here when missing).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use object_store::ObjectStoreExt;
use tickvault::model::Symbol;
use tickvault::storage::StoreSettings;
use tickvault::{Store, StoreOptions};

use crate::common::{DAY, MINUTE, T2021, row, series};
use crate::s3::moto;

/// Every symbol needs encoding in a path except `BRK.B`, whose dot must survive as is.
const SYMBOLS: [&str; 4] = ["^GSPC", "A/B", "BRK.B", "AAPL"];
const READERS: [&str; 3] = ["deltalake", "polars", "duckdb"];

/// What one engine says of one symbol. Closes are multiples of 0.25 well below 2^40, so every
/// sum is exact in f64 whatever the order of addition, and equality is exact.
#[derive(Debug, Clone, PartialEq)]
struct Agg {
    count: i64,
    sum_close: f64,
    min_ts: i64,
    max_ts: i64,
}

type Answer = BTreeMap<String, Agg>;

/// The table at one version, as tickvault answered when that version was the latest.
struct Seen {
    version: u64,
    answer: Answer,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/delta_readers.py")
}

/// Installs the readers from PyPI once if this Python lacks them, so `cargo test` works on a
/// fresh machine (`.ci/run` installs them up front as well).
fn ensure_installed() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let has = || {
            Command::new("python3")
                .args([
                    "-c",
                    "import deltalake, polars, pyarrow, duckdb, duckdb_extension_delta, \
                     duckdb_extension_httpfs",
                ])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if has() {
            return;
        }
        let requirements =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/delta_readers.requirements.txt");
        let pip = |extra: &[&str]| {
            Command::new("python3")
                .args(["-m", "pip", "install", "--quiet", "-r"])
                .arg(&requirements)
                .args(extra)
                .status()
                .expect("python3 is needed for the Delta reader tests")
                .success()
        };
        // A distribution's own Python refuses plain installs (PEP 668): then into the user's site.
        let installed = pip(&[]) || pip(&["--user", "--break-system-packages"]);
        assert!(
            installed && has(),
            "could not install {} from PyPI for the Delta reader tests",
            requirements.display()
        );
    });
}

/// Runs `delta_readers.py` with `args` and the S3 environment; its stdout, or a panic with its
/// stderr.
fn python(args: &[&str], env: &[(&str, String)]) -> String {
    let out = Command::new("python3")
        .arg(script())
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("running python3");
    assert!(
        out.status.success(),
        "delta_readers.py {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// One engine's answer for the table at `version` (`None`: the latest).
fn read_with(reader: &str, table: &str, version: Option<u64>, env: &[(&str, String)]) -> Answer {
    let version = version.map_or("latest".to_string(), |v| v.to_string());
    let out = python(&["read", table, &version, reader], env);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    let symbols = json["symbols"].as_object().expect("a symbols object");
    symbols
        .iter()
        .map(|(symbol, a)| {
            let int = |k: &str| a[k].as_i64().unwrap_or_else(|| panic!("{k} in {a}"));
            let agg = Agg {
                count: int("count"),
                sum_close: a["sum_close"].as_f64().unwrap(),
                min_ts: int("min_ts"),
                max_ts: int("max_ts"),
            };
            (symbol.clone(), agg)
        })
        .collect()
}

/// tickvault's own answer, through its SQL.
async fn tickvault_answer(store: &Store) -> Answer {
    let batches = store
        .query(
            "SELECT symbol, count(*) AS n, sum(close) AS s, arrow_cast(min(ts), 'Int64') AS lo, \
             arrow_cast(max(ts), 'Int64') AS hi FROM bars GROUP BY symbol",
        )
        .await
        .unwrap();
    let mut out = Answer::new();
    for b in batches {
        let col = |i: usize| b.column(i).as_any();
        let sym = col(0).downcast_ref::<arrow::array::StringArray>().unwrap();
        let n = col(1).downcast_ref::<arrow::array::Int64Array>().unwrap();
        let s = col(2).downcast_ref::<arrow::array::Float64Array>().unwrap();
        let lo = col(3).downcast_ref::<arrow::array::Int64Array>().unwrap();
        let hi = col(4).downcast_ref::<arrow::array::Int64Array>().unwrap();
        for i in 0..b.num_rows() {
            let agg = Agg {
                count: n.value(i),
                sum_close: s.value(i),
                min_ts: lo.value(i),
                max_ts: hi.value(i),
            };
            out.insert(sym.value(i).to_string(), agg);
        }
    }
    out
}

/// The table version the store is at: the version a Delta reader names to see this state.
fn table_version(store: &Store) -> u64 {
    store.catalog().snapshot().seq.0
}

/// Writes the history the readers must follow; returns the table at an older version and at
/// the latest.
async fn build(store: &Store) -> (Seen, Seen) {
    let mut replaced = 0;
    // Appends day by day, round robin, one commit each; every 7th commit instead rewrites an
    // earlier day of its symbol (an upsert: the file holding that day is replaced).
    for i in 0..88i64 {
        let symbol = SYMBOLS[i as usize % SYMBOLS.len()];
        let day = i / 4;
        let (ts, close) = if i % 7 == 6 {
            (T2021 + day / 2 * DAY, 1000.0 + i as f64 * 0.5)
        } else {
            (T2021 + day * DAY, i as f64 + 0.25)
        };
        let mut batches = vec![series(&[row(symbol, "1d", ts, close)])];
        if i % 10 == 9 {
            // A second timeframe of one symbol in the same commit.
            let minutes: Vec<_> = (0..3)
                .map(|m| {
                    row(
                        "AAPL",
                        "1m",
                        T2021 + i * 10 * MINUTE + m * MINUTE,
                        0.5 * m as f64,
                    )
                })
                .collect();
            batches.push(series(&minutes));
        }
        replaced += store
            .write_series(batches, "write")
            .await
            .unwrap()
            .files_removed;
    }
    assert!(replaced > 0, "some writes replaced files");
    let compacted = store.compact().await.unwrap();
    assert!(compacted.files_removed > 0, "{compacted:?}");
    // No grace: every replaced file so far is deleted, none of which the older version reads.
    let gc = store.gc(Duration::ZERO).await.unwrap();
    assert!(gc.removed_deleted > 0, "{gc:?}");
    let older = Seen {
        version: table_version(store),
        answer: tickvault_answer(store).await,
    };

    // Upserts into the compacted files (each replaces one), a delete, appends, a compaction.
    for j in 0..12i64 {
        let symbol = SYMBOLS[j as usize % SYMBOLS.len()];
        let summary = store
            .write_series(
                vec![series(&[row(
                    symbol,
                    "1d",
                    T2021 + j * DAY,
                    2000.0 + j as f64,
                )])],
                "write",
            )
            .await
            .unwrap();
        assert!(summary.files_removed > 0, "an upsert replaces a file");
    }
    let deleted = store
        .delete_range(
            &Symbol::new("BRK.B").unwrap(),
            "1d".parse().unwrap(),
            T2021 + 3 * DAY,
            T2021 + 6 * DAY,
        )
        .await
        .unwrap();
    assert!(deleted.rows > 0, "{deleted:?}");
    for k in 0..6i64 {
        let symbol = SYMBOLS[k as usize % SYMBOLS.len()];
        let rows = [row(
            symbol,
            "1d",
            T2021 + (40 + k) * DAY,
            3000.25 + k as f64,
        )];
        store
            .write_series(vec![series(&rows)], "write")
            .await
            .unwrap();
    }
    store.compact().await.unwrap();
    // A grace longer than the test: every file replaced since the first GC stays on disk.
    let gc = store.gc(Duration::from_secs(3600)).await.unwrap();
    assert!(
        gc.removed_deleted == 0 && gc.kept_in_grace > 0,
        "replaced files kept: {gc:?}"
    );
    let latest = Seen {
        version: table_version(store),
        answer: tickvault_answer(store).await,
    };
    assert!(
        older.version < 100 && latest.version > 100,
        "the history crosses a checkpoint: versions {} and {}",
        older.version,
        latest.version
    );
    assert_ne!(older.answer, latest.answer, "the versions differ");
    (older, latest)
}

/// Checks that tickvault wrote the Delta log `<store>/bars/_delta_log/`, with a checkpoint.
async fn delta_log(store: &Store, store_uri: &str) {
    let exists = |path: &'static str| async move {
        match store
            .object_store()
            .head(&object_store::path::Path::from(path))
            .await
        {
            Ok(_) => true,
            Err(object_store::Error::NotFound { .. }) => false,
            Err(e) => panic!("looking for {path}: {e}"),
        }
    };
    assert!(
        exists("bars/_delta_log/00000000000000000000.json").await,
        "tickvault wrote no Delta log at {store_uri}/bars/_delta_log/"
    );
    // Past 100 versions the log has a checkpoint, which readers of the latest version start from.
    assert!(
        exists("bars/_delta_log/00000000000000000100.checkpoint.parquet").await
            && exists("bars/_delta_log/_last_checkpoint").await,
        "no checkpoint at version 100 in {store_uri}/bars/_delta_log/"
    );
}

/// The whole comparison for a store at `store_uri`, opened by `store`.
async fn readers_agree(store: &Store, store_uri: &str, env: &[(&str, String)]) {
    ensure_installed();
    let (older, latest) = build(store).await;
    delta_log(store, store_uri).await;
    let table = format!("{store_uri}/bars");
    for reader in READERS {
        for (seen, version) in [
            (&latest, None),
            (&latest, Some(latest.version)),
            (&older, Some(older.version)),
        ] {
            let got = read_with(reader, &table, version, env);
            assert_eq!(
                got, seen.answer,
                "{reader} at version {version:?} of {table} disagrees with tickvault \
                 (version {})",
                seen.version
            );
        }
    }
    // The same directory by glob: the files kept in grace are read as well.
    let glob = read_with("glob", &table, None, env);
    assert_ne!(glob, latest.answer, "a glob of {table} should double count");
    assert!(
        glob.iter()
            .any(|(s, g)| latest.answer.get(s).is_some_and(|t| g.count > t.count)),
        "the glob counts more rows than the table for some symbol: {glob:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engines_read_the_table_exactly_on_local_disk() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let uri = root.to_str().unwrap().to_string();
    let store = Store::open(&uri).await.unwrap();
    readers_agree(&store, &uri, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engines_read_the_table_exactly_on_s3() {
    let server = moto::shared();
    let bucket = server.bucket("delta-readers").await;
    let uri = format!("s3://{bucket}/store");
    let options = StoreOptions {
        storage: StoreSettings {
            s3: server.config(),
            ..Default::default()
        },
        ..Default::default()
    };
    let store = Store::open_with_options(&uri, &options).await.unwrap();
    let env = [
        ("AWS_ENDPOINT_URL", server.endpoint.clone()),
        ("AWS_ACCESS_KEY_ID", "testing".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "testing".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
    ];
    readers_agree(&store, &uri, &env).await;
}
