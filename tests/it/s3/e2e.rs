//! The `tickvault` binary against S3: import, serve, SIGKILL in the middle of a transfer,
//! restart, and the data equals a local-disk run of the same steps; and a read-only server
//! following a writer.

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use super::moto;
use crate::cli::fixtures;
use crate::server::spawn_server_env;

fn tickvault(store: &str, args: &[&str], env: &[(&str, String)]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_tickvault"))
        .arg("--store")
        .arg(store)
        .args(args)
        .env_remove("TICKVAULT_STORE")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tickvault {args:?}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn import_daily(store: &str, env: &[(&str, String)]) {
    let f = fixtures();
    let files: Vec<String> = ["AAPL", "MSFT", "BRK.B"]
        .iter()
        .map(|s| {
            f.join(format!("DA-{s}-T-2021-04-21.csv"))
                .display()
                .to_string()
        })
        .collect();
    let mut args = vec!["import", "--symbol-pattern", "DA-(.+)-T-"];
    args.extend(files.iter().map(String::as_str));
    tickvault(store, &args, env);
}

/// Every row, in key order, as the server answers it.
async fn dump(base: &str) -> String {
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/sql?format=csv"))
        .body("SELECT * FROM bars ORDER BY timeframe, symbol, ts")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    r.text().await.unwrap()
}

/// Live writes: 40 symbols × 2,000 minutes, so a transfer writes 40 files and takes a while.
fn live_body(value: f64) -> String {
    let mut body = String::new();
    for s in 0..40 {
        for m in 0..2000i64 {
            let ts = (1_704_067_200_000_000 + m * 60_000_000) * 1000;
            body.push_str(&format!(
                "{{\"symbol\":\"L{s}\",\"timeframe\":\"1m\",\"ts\":{ts},\"open\":{value},\"high\":{value},\"low\":{value},\"close\":{value},\"volume\":{m}}}\n"
            ));
        }
    }
    body
}

async fn post_write(base: &str, body: String) {
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/write"))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{:?}", r.text().await);
}

/// Import, serve, live writes, a transfer killed part-way (S3 only), restart: the rows served.
async fn run_steps(store: &str, wal: &Path, env: &[(&str, String)], kill: bool) -> String {
    import_daily(store, env);
    let wal_arg = wal.to_str().unwrap();
    let args = ["--wal-dir", wal_arg, "--disable-job", "transfer"];
    let (mut child, base) = spawn_server_env(OsStr::new(store), "serve", &args, env);
    post_write(&base, live_body(1.0)).await;
    post_write(&base, live_body(2.0)).await;
    if kill {
        let transfer = tokio::spawn({
            let base = base.clone();
            async move {
                reqwest::Client::new()
                    .post(format!("{base}/v1/sync/transfer"))
                    .send()
                    .await
            }
        });
        // Let the transfer put some files, then SIGKILL before it commits.
        tokio::time::sleep(Duration::from_millis(150)).await;
        child.kill().unwrap();
        child.wait().unwrap();
        let answered = transfer.await.unwrap().map(|r| r.status().is_success());
        println!("transfer answered before the kill: {answered:?}");
    } else {
        child.kill().unwrap();
        child.wait().unwrap();
    }
    let (mut child, base) = spawn_server_env(OsStr::new(store), "serve", &args, env);
    let r = reqwest::Client::new()
        .post(format!("{base}/v1/sync/transfer"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let rows = dump(&base).await;
    child.kill().unwrap();
    child.wait().unwrap();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_serve_kill_9_mid_transfer_restart_equals_the_local_disk_run() {
    let server = moto::shared();
    let bucket = server.bucket("e2e").await;
    let env = server.env();
    let dir = tempfile::tempdir().unwrap();
    let s3_url = format!("s3://{bucket}/tickvault");
    let on_s3 = run_steps(&s3_url, &dir.path().join("wal-s3"), &env, true).await;
    let local = dir.path().join("local");
    let on_disk = run_steps(
        local.to_str().unwrap(),
        &dir.path().join("wal-local"),
        &[],
        false,
    )
    .await;
    let lines = on_s3.lines().count();
    let daily: usize = ["AAPL", "MSFT", "BRK.B"]
        .iter()
        .map(|s| {
            let text = std::fs::read_to_string(fixtures().join(format!("DA-{s}-T-2021-04-21.csv")));
            text.unwrap()
                .lines()
                .skip(1)
                .filter(|l| !l.is_empty())
                .count()
        })
        .sum();
    assert_eq!(
        lines,
        1 + daily + 80_000,
        "header, daily fixtures, live rows"
    );
    assert!(on_s3 == on_disk, "S3 and local disk hold different rows");

    // The CLI reads the same from S3, and counts what it asked for.
    let out = tickvault(
        &s3_url,
        &[
            "sql",
            "--requests",
            "--format",
            "csv",
            "SELECT count(*) AS n FROM bars",
        ],
        &env,
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("n\n{}", lines - 1)
    );
    let stats = tickvault(&s3_url, &["stats", "--requests"], &env);
    let text = String::from_utf8_lossy(&stats.stdout);
    assert!(text.contains("requests: get="), "{text}");
    // Opening a store never lists: the catalog and the corporate actions table are read by
    // name (the start-up check lists once).
    assert!(text.contains("list=1 "), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_server_follows_the_writer_and_refuses_writes() {
    let server = moto::shared();
    let bucket = server.bucket("follow").await;
    let env = server.env();
    let url = format!("s3://{bucket}");
    import_daily(&url, &env);
    let (mut reader, base) = spawn_server_env(
        OsStr::new(&url),
        "serve",
        &["--read-only", "--follow-interval", "200ms"],
        &env,
    );
    let count = |base: String| async move {
        let r = reqwest::Client::new()
            .post(format!("{base}/v1/sql?format=json"))
            .body("SELECT count(*) AS n FROM bars")
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        v[0]["n"].as_u64().unwrap()
    };
    let first = count(base.clone()).await;
    assert!(first > 0);

    // Another process writes; the follower picks it up by polling.
    let writer = tickvault::Store::open_with_options(
        &url,
        &tickvault::StoreOptions {
            storage: tickvault::storage::StoreSettings {
                s3: server.config(),
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await
    .unwrap();
    writer
        .write(&crate::common::bars(&[crate::common::row(
            "NEW",
            "1d",
            crate::common::T2021,
            1.0,
        )]))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while count(base.clone()).await != first + 1 {
        assert!(
            Instant::now() < deadline,
            "the follower never saw the commit"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let client = reqwest::Client::new();
    let r = client
        .post(format!("{base}/v1/write"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert!(r.text().await.unwrap().contains("read-only"));
    let r = client
        .post(format!("{base}/v1/compact"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("tickvault_store_requests_total{kind=\"ranged_get\"}"),
        "{metrics}"
    );
    let status: Value = client
        .get(format!("{base}/v1/status"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["read_only"], true);
    assert_eq!(
        status["requests"]["put"], 0,
        "a reader writes nothing: {status}"
    );
    reader.kill().unwrap();
    reader.wait().unwrap();
}
