//! The scheduler: the background jobs that keep a store in shape and in sync, for the server and
//! for a library user alike (a backtest harness that wants its store fresh without HTTP).
//!
//! Each job is a task on a fixed grid of ticks `first, first + every, …` read from the store's
//! [`Clock`]. A run that overruns skips the ticks it missed instead of running back to back.
//! The transfer also runs early when the live tier passes its memory mark. Every run, on a tick
//! or asked for with [`Scheduler::run`], is recorded in the job's [`JobState`] and (unless it
//! found nothing to do) in `sync_runs`. [`Scheduler::shutdown`] cancels the tasks, waits for
//! the runs in flight, then moves what the live tier holds into Parquet.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::registry::SyncRun;
use super::syncer::{self, BackfillRequest, BackfillSummary, Syncer};
use crate::clock::{Clock, micros};
use crate::maintenance::{CompactSummary, GcSummary};
use crate::{Store, TransferSummary};

/// Declares the jobs once: their names, and the config keys and HTTP paths made from them.
macro_rules! jobs {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// A background job. This enum is the one list of jobs: the names in `disabled_jobs`,
        /// the `<name>_interval` config keys, `POST /v1/sync/<name>` and `/v1/sync/status` all
        /// come from it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Job {
            $($(#[$doc])* $variant,)*
        }

        impl Job {
            pub const ALL: [Job; [$($name),*].len()] = [$(Job::$variant),*];

            /// Its name: `transfer`, `compact`, `gc`, `backfill`, `live`.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Job::$variant => $name,)*
                }
            }

            /// The config key of its interval, e.g. `transfer_interval`.
            pub const fn interval_key(self) -> &'static str {
                match self {
                    $(Job::$variant => concat!($name, "_interval"),)*
                }
            }

            /// The HTTP path that runs it now, e.g. `/v1/sync/transfer`.
            pub const fn path(self) -> &'static str {
                match self {
                    $(Job::$variant => concat!("/v1/sync/", $name),)*
                }
            }
        }
    };
}

jobs! {
    /// Stage 1: the live tier into Parquet.
    Transfer => "transfer",
    /// Small files of a partition merged into one.
    Compact => "compact",
    /// Files no commit references deleted, after the grace period.
    Gc => "gc",
    /// Stage 2: what each tracked series lacks, fetched from its provider.
    Backfill => "backfill",
    /// The newest bars of tracked intraday series into the live tier.
    Live => "live",
}

impl Job {
    /// The job with this name.
    pub fn parse(name: &str) -> Option<Job> {
        Job::ALL.into_iter().find(|j| j.name() == name)
    }

    /// Every job's name, comma-separated (for messages that list them).
    pub fn names() -> String {
        Job::ALL.map(Job::name).join(", ")
    }
}

impl fmt::Display for Job {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the scheduler runs on its own, and how.
#[derive(Debug, Clone)]
pub struct SchedulerSettings {
    /// The jobs that run on a timer, each with its interval. A job left out runs only when
    /// asked ([`Scheduler::run`]). Jobs that cannot run are not started: the transfer without
    /// a live tier, backfill and live without a syncer, every job on a read-only store.
    pub every: BTreeMap<Job, Duration>,
    /// The first backfill runs this long after start; later ones every interval after it.
    pub backfill_delay: Duration,
    /// How often commits of other processes (catalog, corporate actions, sync ledger) are
    /// read; `None`: never.
    pub follow: Option<Duration>,
    /// GC deletes an unreferenced file only once it has been so for this long (a reader may
    /// still hold a snapshot that names it).
    pub gc_grace: Duration,
}

impl SchedulerSettings {
    /// Nothing on a timer and no following; add jobs with [`SchedulerSettings::run_every`].
    pub fn manual(gc_grace: Duration) -> Self {
        Self {
            every: BTreeMap::new(),
            backfill_delay: Duration::ZERO,
            follow: None,
            gc_grace,
        }
    }

    /// Runs `job` on a timer, every `every`.
    pub fn run_every(mut self, job: Job, every: Duration) -> Self {
        self.every.insert(job, every);
        self
    }
}

/// What a job did last and when it runs next (`/v1/sync/status`, `/v1/status`, `/metrics`).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
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
    /// Since the scheduler started: rows moved (transfer) or partitions merged (compaction).
    pub total_rows: u64,
    /// Unix seconds.
    pub next_run: Option<f64>,
}

/// A transfer's report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TransferReport {
    pub rows: u64,
    pub partitions: usize,
    pub files_added: usize,
    pub files_removed: usize,
    pub bytes_written: u64,
    /// Every WAL record up to this LSN is in Parquet.
    pub upto_lsn: u64,
    pub duration_ms: f64,
}

impl From<TransferSummary> for TransferReport {
    fn from(s: TransferSummary) -> Self {
        Self {
            rows: s.rows,
            partitions: s.write.partitions,
            files_added: s.write.files_added,
            files_removed: s.write.files_removed,
            bytes_written: s.write.bytes_written,
            upto_lsn: s.upto_lsn,
            duration_ms: s.duration.as_secs_f64() * 1000.0,
        }
    }
}

/// What one run of a job did. Serialises as the job's own summary.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum JobReport {
    Transfer(TransferReport),
    Compact(CompactSummary),
    Gc(GcSummary),
    Backfill(BackfillSummary),
    Live(BackfillSummary),
}

impl JobReport {
    /// What the job status counts as rows: rows moved (transfer), partitions merged
    /// (compaction), rows fetched (backfill, live).
    pub fn rows(&self) -> u64 {
        match self {
            JobReport::Transfer(t) => t.rows,
            JobReport::Compact(c) => c.partitions_compacted as u64,
            JobReport::Gc(_) => 0,
            JobReport::Backfill(s) | JobReport::Live(s) => s.rows,
        }
    }

    /// Files written (transfer, compaction) or deleted (GC).
    pub fn files(&self) -> u64 {
        match self {
            JobReport::Transfer(t) => t.files_added as u64,
            JobReport::Compact(c) => c.files_added as u64,
            JobReport::Gc(g) => (g.removed_deleted + g.orphans_deleted) as u64,
            JobReport::Backfill(_) | JobReport::Live(_) => 0,
        }
    }

    /// Requests made to providers.
    pub fn requests(&self) -> u64 {
        match self {
            JobReport::Backfill(s) | JobReport::Live(s) => s.requests,
            _ => 0,
        }
    }

    /// Some series failed while the job as a whole ran.
    pub fn partial(&self) -> Option<String> {
        match self {
            JobReport::Backfill(s) | JobReport::Live(s) => s
                .failures
                .first()
                .map(|first| format!("{} series failed, e.g. {first}", s.failures.len())),
            _ => None,
        }
    }
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error(transparent)]
    Store(#[from] crate::Error),
    #[error(transparent)]
    Sync(#[from] syncer::Error),
    /// Backfill and live need a syncer; the scheduler was started without one.
    #[error("the {0} job needs a syncer (providers); this scheduler has none")]
    NoSyncer(Job),
    /// A bug: the run panicked. The job stays scheduled.
    #[error("the {job} run panicked: {message}")]
    Panicked { job: Job, message: String },
}

/// The background jobs of one store. Dropping it cancels the jobs' timers (a run in flight
/// finishes); [`Scheduler::shutdown`] also waits for them and runs the final transfer.
pub struct Scheduler {
    shared: Arc<Shared>,
    cancel: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl fmt::Debug for Scheduler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scheduler")
            .field("settings", &self.shared.settings)
            .finish_non_exhaustive()
    }
}

struct Shared {
    store: Arc<Store>,
    syncer: Option<Arc<Syncer>>,
    settings: SchedulerSettings,
    clock: Arc<dyn Clock>,
    states: BTreeMap<Job, Mutex<JobState>>,
}

impl Scheduler {
    /// Starts a task per job the settings put on a timer (and can run here) and one that
    /// follows other processes' commits, on the store's clock. Call inside a tokio runtime.
    pub fn start(
        store: Arc<Store>,
        syncer: Option<Arc<Syncer>>,
        settings: SchedulerSettings,
    ) -> Scheduler {
        let clock = Arc::clone(store.clock());
        let shared = Arc::new(Shared {
            states: Job::ALL
                .into_iter()
                .map(|j| (j, Mutex::default()))
                .collect(),
            store,
            syncer,
            settings,
            clock,
        });
        let cancel = CancellationToken::new();
        let mut tasks = Vec::new();
        let now = shared.clock.now_micros();
        if let Some(every) = shared.settings.follow {
            let (shared, cancel) = (Arc::clone(&shared), cancel.clone());
            let ticks = Ticks::new(now.saturating_add(micros(every)), every);
            tasks.push(tokio::spawn(follow_loop(shared, ticks, cancel)));
        }
        if !shared.store.is_read_only() {
            for (&job, &every) in &shared.settings.every {
                if !shared.can_run(job) {
                    continue;
                }
                let delay = match job {
                    Job::Backfill => shared.settings.backfill_delay,
                    _ => every,
                };
                let ticks = Ticks::new(now.saturating_add(micros(delay)), every);
                let (shared, cancel) = (Arc::clone(&shared), cancel.clone());
                tasks.push(tokio::spawn(job_loop(shared, job, ticks, cancel)));
            }
        }
        Scheduler {
            shared,
            cancel,
            tasks: Mutex::new(tasks),
        }
    }

    /// Runs `job` now (beside its timer) and records it like a scheduled run.
    pub async fn run(&self, job: Job) -> Result<JobReport, JobError> {
        self.shared.run(job).await
    }

    /// What `job` did last and when it runs next.
    pub fn state(&self, job: Job) -> JobState {
        self.shared.state(job)
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.shared.store
    }

    pub fn syncer(&self) -> Option<&Arc<Syncer>> {
        self.shared.syncer.as_ref()
    }

    /// Stops the jobs: no new run starts, runs in flight finish, then what the live tier holds
    /// is moved into Parquet (so a restart has nothing to replay; the WAL would recover it
    /// anyway). Returns that final transfer's result; `None` without a live tier.
    pub async fn shutdown(&self) -> Option<Result<JobReport, JobError>> {
        self.cancel.cancel();
        let tasks = std::mem::take(&mut *self.tasks.lock().expect("scheduler lock"));
        for task in tasks {
            if let Err(e) = task.await
                && e.is_panic()
            {
                tracing::error!("a scheduler task panicked: {e}");
            }
        }
        let store = &self.shared.store;
        if store.live().is_none() || store.is_read_only() {
            return None;
        }
        Some(self.shared.run(Job::Transfer).await)
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// The tick grid of a job: `next`, `next + every`, …. After a run, the next tick is the first
/// one after the run ended, so ticks missed while it ran are skipped, not run back to back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ticks {
    /// µs UTC.
    next: i64,
    every: i64,
}

impl Ticks {
    fn new(first: i64, every: Duration) -> Self {
        Self {
            next: first,
            // A zero interval would spin (config refuses it; a library user might not).
            every: micros(every).max(1),
        }
    }

    /// Moves to the first tick after `now`, the time a run ended.
    fn after_run(&mut self, now: i64) {
        if self.next > now {
            return; // an early run (memory pressure): the grid stays
        }
        let missed = (now - self.next) / self.every;
        self.next = self
            .next
            .saturating_add(self.every.saturating_mul(missed + 1));
    }
}

/// One job's task: wait for its tick (or, for the transfer, memory pressure), run, repeat,
/// until cancelled. A run in flight is never interrupted.
async fn job_loop(shared: Arc<Shared>, job: Job, mut ticks: Ticks, cancel: CancellationToken) {
    let pressure = match job {
        Job::Transfer => shared.store.live().map(|l| Arc::clone(l.pressure())),
        _ => None,
    };
    loop {
        shared.update(job, |s| s.next_run = Some(unix_seconds(ticks.next)));
        let pressed = async {
            match &pressure {
                Some(p) => p.notified().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            () = shared.clock.sleep_until(ticks.next) => {}
            () = pressed => {}
        }
        // Recorded in the job's state; the error is logged there too.
        let _ = shared.run(job).await;
        ticks.after_run(shared.clock.now_micros());
    }
}

/// Picks up catalog, corporate-action and sync-ledger commits made by other processes (a
/// writer, or a CLI `import` beside a server): one GET of the next log entry each when nothing
/// is new.
async fn follow_loop(shared: Arc<Shared>, mut ticks: Ticks, cancel: CancellationToken) {
    loop {
        tokio::select! {
            biased;
            () = cancel.cancelled() => return,
            () = shared.clock.sleep_until(ticks.next) => {}
        }
        shared.follow().await;
        ticks.after_run(shared.clock.now_micros());
    }
}

fn unix_seconds(us: i64) -> f64 {
    us as f64 / 1e6
}

impl Shared {
    fn state(&self, job: Job) -> JobState {
        self.states[&job].lock().expect("job lock").clone()
    }

    fn update(&self, job: Job, f: impl FnOnce(&mut JobState)) {
        f(&mut self.states[&job].lock().expect("job lock"));
    }

    /// Whether this scheduler has what `job` needs.
    fn can_run(&self, job: Job) -> bool {
        match job {
            Job::Transfer => self.store.live().is_some(),
            Job::Backfill | Job::Live => self.syncer.is_some(),
            Job::Compact | Job::Gc => true,
        }
    }

    fn syncer(&self, job: Job) -> Result<&Arc<Syncer>, JobError> {
        self.syncer.as_ref().ok_or(JobError::NoSyncer(job))
    }

    /// Runs a job now and records it: in its state, and in `sync_runs` unless it found nothing
    /// to do (an idle transfer every minute would drown the history).
    async fn run(&self, job: Job) -> Result<JobReport, JobError> {
        let started = self.clock.now_micros();
        let result = match std::panic::AssertUnwindSafe(self.run_once(job))
            .catch_unwind()
            .await
        {
            Ok(result) => result,
            Err(panic) => Err(JobError::Panicked {
                job,
                message: panic_message(panic.as_ref()),
            }),
        };
        let finished = self.clock.now_micros();
        self.update(job, |s| {
            s.runs += 1;
            s.last_started = Some(unix_seconds(started));
            s.last_duration_ms = Some(finished.saturating_sub(started).max(0) as f64 / 1000.0);
            match &result {
                Ok(report) => {
                    s.last_outcome = Some("ok");
                    s.last_error = None;
                    s.last_rows = report.rows();
                    s.last_files = report.files();
                    s.total_rows += report.rows();
                }
                Err(e) => {
                    s.failures += 1;
                    s.last_outcome = Some("failed");
                    s.last_error = Some(e.to_string());
                }
            }
        });
        let (outcome, rows, requests, error) = match &result {
            Ok(r) => match r.partial() {
                Some(partial) => {
                    tracing::warn!("{job}: {partial}");
                    ("partial", r.rows(), r.requests(), Some(partial))
                }
                None => ("ok", r.rows(), r.requests(), None),
            },
            Err(e) => {
                tracing::warn!("{job} failed: {e}");
                ("failed", 0, 0, Some(e.to_string()))
            }
        };
        let idle = outcome == "ok" && rows == 0 && requests == 0;
        if let (Some(syncer), false) = (&self.syncer, idle) {
            let run = SyncRun {
                job: job.name().to_string(),
                started,
                finished,
                outcome: outcome.to_string(),
                rows,
                requests,
                error,
            };
            if let Err(e) = syncer.record_run(run).await {
                tracing::warn!("recording the {job} run failed: {e}");
            }
        }
        result
    }

    async fn run_once(&self, job: Job) -> Result<JobReport, JobError> {
        Ok(match job {
            Job::Transfer => JobReport::Transfer(transfer(&self.store).await?.into()),
            Job::Compact => JobReport::Compact(self.store.compact().await?),
            Job::Gc => JobReport::Gc(self.store.gc(self.settings.gc_grace).await?),
            Job::Backfill => JobReport::Backfill(
                self.syncer(job)?
                    .backfill(&BackfillRequest::default())
                    .await?,
            ),
            Job::Live => JobReport::Live(self.syncer(job)?.live_update().await?),
        })
    }

    async fn follow(&self) {
        if let Err(e) = self.store.catalog().refresh().await {
            tracing::warn!("following the catalog failed (will retry): {e}");
        }
        if let Err(e) = self.store.actions().refresh().await {
            tracing::warn!("following the corporate actions failed (will retry): {e}");
        }
        if let Some(syncer) = &self.syncer
            && let Err(e) = syncer.refresh().await
        {
            tracing::warn!("following the sync ledger failed (will retry): {e}");
        }
    }
}

/// Runs a transfer (stage 1) and logs it.
async fn transfer(store: &Store) -> crate::Result<TransferSummary> {
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

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreOptions;
    use crate::clock::ManualClock;
    use crate::live::LiveOptions;

    const T0: i64 = 1_750_000_000_000_000;
    const MINUTE: Duration = Duration::from_secs(60);

    async fn live_store(clock: &Arc<ManualClock>, wal: &std::path::Path) -> Arc<Store> {
        let options = StoreOptions {
            live: Some(LiveOptions::new(wal)),
            clock: Arc::clone(clock) as Arc<dyn Clock>,
            ..StoreOptions::default()
        };
        Arc::new(
            Store::open_with_options("memory://", &options)
                .await
                .unwrap(),
        )
    }

    fn every_minute(job: Job) -> SchedulerSettings {
        SchedulerSettings::manual(Duration::from_secs(3600)).run_every(job, MINUTE)
    }

    /// Polls until `done` holds (the scheduler's tasks run between polls); fails after 10 s.
    async fn until(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(tokio::time::Instant::now() < deadline, "never: {what}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn secs(us: i64) -> Option<f64> {
        Some(unix_seconds(us))
    }

    #[tokio::test]
    async fn a_job_runs_at_each_interval_boundary_and_exactly_then() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(T0);
        let store = live_store(&clock, dir.path()).await;
        let scheduler = Scheduler::start(store, None, every_minute(Job::Transfer));
        clock.until_sleepers(1).await;
        assert_eq!(
            scheduler.state(Job::Transfer).next_run,
            secs(T0 + 60_000_000)
        );
        for tick in 1..=3 {
            let at = T0 + tick * 60_000_000;
            clock.set(at - 1);
            tokio::task::yield_now().await;
            let state = scheduler.state(Job::Transfer);
            assert_eq!(state.runs, (tick - 1) as u64, "ran before its tick");
            assert_eq!(clock.sleepers(), 1);
            clock.set(at);
            until("the tick's run", || {
                scheduler.state(Job::Transfer).runs == tick as u64
            })
            .await;
            let state = scheduler.state(Job::Transfer);
            assert_eq!(state.last_started, secs(at));
            assert_eq!(state.last_outcome, Some("ok"));
            until("the next tick is set", || {
                scheduler.state(Job::Transfer).next_run == secs(at + 60_000_000)
            })
            .await;
        }
        // The compaction was not put on a timer: it never ran.
        assert_eq!(scheduler.state(Job::Compact).runs, 0);
    }

    #[tokio::test]
    async fn a_run_that_overruns_skips_the_ticks_it_missed() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(T0);
        let store = live_store(&clock, dir.path()).await;
        let live = Arc::clone(store.live().unwrap());
        let scheduler = Scheduler::start(store, None, every_minute(Job::Transfer));
        clock.until_sleepers(1).await;
        // The run of the first tick waits for the transfer lock while 2.5 minutes pass.
        let held = live.transfer_lock.lock().await;
        clock.set(T0 + 60_000_000);
        until("the run started", || clock.sleepers() == 0).await;
        clock.set(T0 + 210_000_000);
        drop(held);
        until("the run ended", || scheduler.state(Job::Transfer).runs == 1).await;
        let state = scheduler.state(Job::Transfer);
        assert_eq!(state.last_started, secs(T0 + 60_000_000));
        assert_eq!(state.last_duration_ms, Some(150_000.0));
        // The ticks at 2 and 3 minutes were missed: the next run is at 4, not at once.
        clock.until_sleepers(1).await;
        assert_eq!(
            scheduler.state(Job::Transfer).next_run,
            secs(T0 + 240_000_000)
        );
        clock.set(T0 + 240_000_000 - 1);
        tokio::task::yield_now().await;
        assert_eq!(scheduler.state(Job::Transfer).runs, 1);
        clock.set(T0 + 240_000_000);
        until("the 4-minute run", || {
            scheduler.state(Job::Transfer).runs == 2
        })
        .await;
        assert_eq!(
            scheduler.state(Job::Transfer).last_started,
            secs(T0 + 240_000_000)
        );
    }

    #[tokio::test]
    async fn shutdown_waits_for_the_run_in_flight_then_transfers_and_stops_the_timers() {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(T0);
        let store = live_store(&clock, dir.path()).await;
        let live = Arc::clone(store.live().unwrap());
        let scheduler = Arc::new(Scheduler::start(
            store,
            None,
            every_minute(Job::Transfer).run_every(Job::Compact, MINUTE),
        ));
        clock.until_sleepers(2).await;
        let held = live.transfer_lock.lock().await;
        clock.set(T0 + 60_000_000);
        // The compaction ran and waits for its next tick; the transfer is in flight.
        until("the compaction ran and the transfer started", || {
            scheduler.state(Job::Compact).runs == 1 && clock.sleepers() == 1
        })
        .await;
        let stopping = tokio::spawn({
            let scheduler = Arc::clone(&scheduler);
            async move { scheduler.shutdown().await }
        });
        // Shutdown waits for the run in flight.
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
        assert!(!stopping.is_finished());
        assert_eq!(scheduler.state(Job::Transfer).runs, 0);
        drop(held);
        let last = stopping
            .await
            .unwrap()
            .expect("a live tier: a final transfer");
        assert!(last.is_ok(), "{last:?}");
        // The run in flight, then the final transfer.
        assert_eq!(scheduler.state(Job::Transfer).runs, 2);
        // No timer is left: time passes and nothing runs.
        assert_eq!(clock.sleepers(), 0);
        clock.set(T0 + 3_600_000_000);
        tokio::task::yield_now().await;
        assert_eq!(scheduler.state(Job::Transfer).runs, 2);
        assert_eq!(scheduler.state(Job::Compact).runs, 1);
    }

    #[test]
    fn ticks_skip_what_an_overrunning_run_missed() {
        let mut t = Ticks::new(100, Duration::from_micros(10));
        // A run that ends before the next tick keeps the grid.
        t.after_run(100);
        assert_eq!(t.next, 110);
        t.after_run(115);
        assert_eq!(t.next, 120);
        // A run from 120 to 145 missed 130 and 140: next is 150, not 130.
        t.after_run(145);
        assert_eq!(t.next, 150);
        // Ending exactly on a tick: that tick passed while running.
        t.after_run(160);
        assert_eq!(t.next, 170);
        // An early run (memory pressure) before the tick leaves it be.
        t.after_run(165);
        assert_eq!(t.next, 170);
    }

    #[test]
    fn names_keys_and_paths_come_from_the_one_list() {
        assert_eq!(Job::names(), "transfer, compact, gc, backfill, live");
        for job in Job::ALL {
            assert_eq!(Job::parse(job.name()), Some(job));
            assert_eq!(job.interval_key(), format!("{}_interval", job.name()));
            assert_eq!(job.path(), format!("/v1/sync/{}", job.name()));
        }
        assert_eq!(Job::parse("follow"), None);
    }
}
