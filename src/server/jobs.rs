//! Background jobs of the server: stage 1 transfer (on a timer, early under memory pressure,
//! on demand, and at shutdown) and compaction of small files, each with a status.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::{Value, json};

use super::App;
use super::error::ApiError;
use crate::sync::registry::SyncRun;
use crate::sync::syncer::{BackfillRequest, BackfillSummary};
use crate::{Store, TransferSummary};

/// What a job did last and when it runs next.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JobState {
    pub runs: u64,
    pub failures: u64,
    /// Unix seconds.
    pub last_started: Option<f64>,
    pub last_duration_ms: Option<f64>,
    pub last_outcome: Option<&'static str>,
    pub last_error: Option<String>,
    /// Rows moved (transfer) or partitions merged (compaction) by the last run.
    pub last_rows: u64,
    pub last_files: u64,
    /// Since the server started: rows moved (transfer) or partitions merged (compaction).
    pub total_rows: u64,
    /// Unix seconds.
    pub next_run: Option<f64>,
}

#[derive(Debug, Default)]
pub struct JobStatus(Mutex<JobState>);

impl JobStatus {
    pub fn get(&self) -> JobState {
        self.0.lock().expect("job lock").clone()
    }

    fn update(&self, f: impl FnOnce(&mut JobState)) {
        f(&mut self.0.lock().expect("job lock"));
    }

    fn finished<T, E: std::fmt::Display>(
        &self,
        started_unix: f64,
        elapsed: Duration,
        result: &Result<T, E>,
        rows_files: impl FnOnce(&T) -> (u64, u64),
    ) {
        self.update(|s| {
            s.runs += 1;
            s.last_started = Some(started_unix);
            s.last_duration_ms = Some(elapsed.as_secs_f64() * 1000.0);
            match result {
                Ok(v) => {
                    let (rows, files) = rows_files(v);
                    s.last_outcome = Some("ok");
                    s.last_error = None;
                    s.last_rows = rows;
                    s.last_files = files;
                    s.total_rows += rows;
                }
                Err(e) => {
                    s.failures += 1;
                    s.last_outcome = Some("failed");
                    s.last_error = Some(e.to_string());
                }
            }
        });
    }
}

#[derive(Debug, Default)]
pub struct Jobs {
    pub transfer: JobStatus,
    pub compact: JobStatus,
    pub gc: JobStatus,
    pub backfill: JobStatus,
    pub live: JobStatus,
}

/// The scheduler's jobs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    Transfer,
    Compact,
    Gc,
    Backfill,
    Live,
}

impl Job {
    pub const ALL: [Job; 5] = [
        Job::Transfer,
        Job::Compact,
        Job::Gc,
        Job::Backfill,
        Job::Live,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Job::Transfer => "transfer",
            Job::Compact => "compact",
            Job::Gc => "gc",
            Job::Backfill => "backfill",
            Job::Live => "live",
        }
    }

    pub fn parse(name: &str) -> Option<Job> {
        Job::ALL.into_iter().find(|j| j.name() == name)
    }

    fn interval(self, config: &crate::config::Config) -> Duration {
        match self {
            Job::Transfer => config.transfer_interval,
            Job::Compact => config.compact_interval,
            Job::Gc => config.gc_interval,
            Job::Backfill => config.backfill_interval,
            Job::Live => config.live_interval,
        }
        .duration()
    }
}

impl Jobs {
    pub fn status(&self, job: Job) -> &JobStatus {
        match job {
            Job::Transfer => &self.transfer,
            Job::Compact => &self.compact,
            Job::Gc => &self.gc,
            Job::Backfill => &self.backfill,
            Job::Live => &self.live,
        }
    }
}

fn unix_now() -> f64 {
    chrono::Utc::now().timestamp_micros() as f64 / 1e6
}

/// What a run did, for the job status, `sync_runs` and the HTTP answer.
struct Report {
    rows: u64,
    files: u64,
    requests: u64,
    /// Some series failed while the job as a whole ran.
    partial: Option<String>,
    detail: Value,
}

/// Runs a job now and records it: in its status, and in `sync_runs` unless it found nothing
/// to do (an idle transfer every minute would drown the history).
pub async fn run(app: &App, job: Job) -> Result<Value, ApiError> {
    let store = app.store()?;
    let (started_unix, started) = (unix_now(), Instant::now());
    let started_us = chrono::Utc::now().timestamp_micros();
    let result = run_inner(app, &store, job).await;
    app.jobs
        .status(job)
        .finished(started_unix, started.elapsed(), &result, |r| {
            (r.rows, r.files)
        });
    let (outcome, rows, requests, error) = match &result {
        Ok(r) if r.partial.is_some() => ("partial", r.rows, r.requests, r.partial.clone()),
        Ok(r) => ("ok", r.rows, r.requests, None),
        Err(e) => ("failed", 0, 0, Some(e.message().to_string())),
    };
    match &result {
        Ok(r) if r.partial.is_some() => {
            tracing::warn!("{}: {}", job.name(), r.partial.as_deref().unwrap_or(""))
        }
        Err(e) => tracing::warn!("{} failed: {}", job.name(), e.message()),
        Ok(_) => {}
    }
    let idle = outcome == "ok" && rows == 0 && requests == 0;
    if let (Ok(syncer), false) = (app.syncer(), idle) {
        let run = SyncRun {
            job: job.name().to_string(),
            started: started_us,
            finished: chrono::Utc::now().timestamp_micros(),
            outcome: outcome.to_string(),
            rows,
            requests,
            error,
        };
        if let Err(e) = syncer.record_run(run).await {
            tracing::warn!("recording the {} run failed: {e}", job.name());
        }
    }
    result.map(|r| r.detail)
}

async fn run_inner(app: &App, store: &Store, job: Job) -> Result<Report, ApiError> {
    Ok(match job {
        Job::Transfer => {
            let s = run_transfer(store).await?;
            Report {
                rows: s.rows,
                files: s.write.files_added as u64,
                requests: 0,
                partial: None,
                detail: json!({
                    "rows": s.rows,
                    "partitions": s.write.partitions,
                    "files_added": s.write.files_added,
                    "files_removed": s.write.files_removed,
                    "bytes_written": s.write.bytes_written,
                    "upto_lsn": s.upto_lsn,
                    "duration_ms": s.duration.as_secs_f64() * 1000.0,
                }),
            }
        }
        Job::Compact => {
            let s = store.compact().await?;
            Report {
                // The job status counts partitions merged as its "rows".
                rows: s.partitions_compacted as u64,
                files: s.files_added as u64,
                requests: 0,
                partial: None,
                detail: json!({
                    "partitions_compacted": s.partitions_compacted,
                    "files_removed": s.files_removed,
                    "files_added": s.files_added,
                    "partitions_conflicted": s.partitions_conflicted,
                }),
            }
        }
        Job::Gc => {
            let s = store.gc(app.config.gc_grace.duration()).await?;
            Report {
                rows: 0,
                files: (s.removed_deleted + s.orphans_deleted) as u64,
                requests: 0,
                partial: None,
                detail: serde_json::to_value(&s).unwrap_or(Value::Null),
            }
        }
        Job::Backfill | Job::Live => {
            let syncer = app.syncer()?;
            let s = if job == Job::Backfill {
                syncer.backfill(&BackfillRequest::default()).await?
            } else {
                syncer.live_update().await?
            };
            sync_report(s)
        }
    })
}

/// A stage 2 summary as a job report.
fn sync_report(s: BackfillSummary) -> Report {
    let partial = (!s.failures.is_empty())
        .then(|| format!("{} series failed, e.g. {}", s.failures.len(), s.failures[0]));
    Report {
        rows: s.rows,
        files: 0,
        requests: s.requests,
        partial,
        detail: serde_json::to_value(&s).unwrap_or(Value::Null),
    }
}

/// Runs a transfer (stage 1) and logs it.
async fn run_transfer(store: &Store) -> crate::Result<TransferSummary> {
    let result = store.transfer().await;
    match &result {
        Ok(s) if s.rows > 0 => tracing::info!(
            "transfer: {} rows into {} files in {:.0?}",
            s.rows,
            s.write.files_added,
            s.duration
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!("transfer failed (rows stay in the live tier): {e}"),
    }
    result
}

/// Picks up catalog, corporate-action and sync-ledger commits made by other processes (a writer, or a CLI
/// `import` beside this server): one GET of the next log entry each when nothing is new.
fn spawn_follow(app: App, store: Arc<Store>) {
    tokio::spawn(async move {
        let every = app.config.follow_interval.duration();
        loop {
            tokio::time::sleep(every).await;
            if let Err(e) = store.catalog().refresh().await {
                tracing::warn!("following the catalog failed (will retry): {e}");
            }
            if let Err(e) = store.actions().refresh().await {
                tracing::warn!("following the corporate actions failed (will retry): {e}");
            }
            if let Ok(syncer) = app.syncer()
                && let Err(e) = syncer.refresh().await
            {
                tracing::warn!("following the sync ledger failed (will retry): {e}");
            }
        }
    });
}

/// Starts a loop per enabled job; each runs until the runtime stops. The transfer also runs
/// early under memory pressure; stage 2 runs first after `backfill_delay`. Every server follows
/// other processes' commits; a read-only server runs no other job.
pub fn spawn(app: App, store: Arc<Store>) {
    spawn_follow(app.clone(), Arc::clone(&store));
    if app.config.read_only {
        return;
    }
    for job in Job::ALL {
        if !app.config.job_enabled(job.name()) {
            continue;
        }
        let needs = match job {
            Job::Transfer => store.live().is_some(),
            Job::Backfill | Job::Live => app.syncer().is_ok(),
            Job::Compact | Job::Gc => true,
        };
        if !needs {
            continue;
        }
        let (app, live) = (app.clone(), store.live().cloned());
        tokio::spawn(async move {
            let every = job.interval(&app.config);
            let mut wait = if job == Job::Backfill {
                app.config.backfill_delay.duration()
            } else {
                every
            };
            loop {
                app.jobs
                    .status(job)
                    .update(|s| s.next_run = Some(unix_now() + wait.as_secs_f64()));
                match (&live, job) {
                    (Some(live), Job::Transfer) => tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = live.pressure().notified() => {}
                    },
                    _ => tokio::time::sleep(wait).await,
                }
                let _ = run(&app, job).await;
                wait = every;
            }
        });
    }
}
