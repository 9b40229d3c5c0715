//! Background jobs of the server: stage 1 transfer (on a timer, early under memory pressure,
//! on demand, and at shutdown) and compaction of small files, each with a status.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::App;
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
}

fn unix_now() -> f64 {
    chrono::Utc::now().timestamp_micros() as f64 / 1e6
}

/// Runs a transfer and records it in the job status.
pub async fn run_transfer(app: &App, store: &Store) -> crate::Result<TransferSummary> {
    let (started_unix, started) = (unix_now(), Instant::now());
    let result = store.transfer().await;
    app.jobs
        .transfer
        .finished(started_unix, started.elapsed(), &result, |s| {
            (s.rows, s.write.files_added as u64)
        });
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

/// Runs a compaction and records it in the job status.
pub async fn run_compact(
    app: &App,
    store: &Store,
) -> crate::Result<crate::maintenance::CompactSummary> {
    let (started_unix, started) = (unix_now(), Instant::now());
    let result = store.compact().await;
    app.jobs
        .compact
        .finished(started_unix, started.elapsed(), &result, |s| {
            (s.partitions_compacted as u64, s.files_added as u64)
        });
    if let Err(e) = &result {
        tracing::warn!("compaction failed: {e}");
    }
    result
}

/// Starts the transfer and compaction loops; they run until the runtime stops.
pub fn spawn(app: App, store: Arc<Store>) {
    if let Some(live) = store.live().cloned() {
        let (app, store) = (app.clone(), Arc::clone(&store));
        tokio::spawn(async move {
            let every = app.config.transfer_interval.duration();
            loop {
                app.jobs
                    .transfer
                    .update(|s| s.next_run = Some(unix_now() + every.as_secs_f64()));
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = live.pressure().notified() => {}
                }
                let _ = run_transfer(&app, &store).await;
            }
        });
    }
    tokio::spawn(async move {
        let every = app.config.compact_interval.duration();
        loop {
            app.jobs
                .compact
                .update(|s| s.next_run = Some(unix_now() + every.as_secs_f64()));
            tokio::time::sleep(every).await;
            let _ = run_compact(&app, &store).await;
        }
    });
}
