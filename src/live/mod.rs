//! The live tier: acknowledged writes, durable in the WAL and queryable at once, until a
//! transfer moves them into Parquet.
//!
//! One committer thread owns the WAL. Writers hand it their rows; it appends everything that
//! is waiting, fsyncs once (group commit), applies the rows to the in-memory tier in LSN order
//! (so memory and replay agree on which write came last), and only then acknowledges.

mod codec;
mod tier;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, oneshot};

use crate::batch::SeriesBatch;
use crate::clock::Clock;
use crate::wal::{Lsn, Wal, WalStats};

pub use tier::{Generation, Latest, ROW_BYTES, SeriesView, TierState};

/// How the live tier is set up.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    pub wal_dir: PathBuf,
    /// Memory the tier may hold (estimated at [`ROW_BYTES`] a row); past it writes get
    /// [`Error::Busy`] until a transfer frees room.
    pub max_bytes: usize,
    /// Past this the transfer job is woken early.
    pub transfer_bytes: usize,
}

impl LiveOptions {
    pub fn new(wal_dir: impl Into<PathBuf>) -> Self {
        Self {
            wal_dir: wal_dir.into(),
            max_bytes: 512 << 20,
            transfer_bytes: 128 << 20,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "the live tier is full ({bytes} of {max} bytes) while it moves rows to Parquet; retry shortly"
    )]
    Busy { bytes: usize, max: usize },
    #[error("cannot open the WAL in {dir}: {source}")]
    Open { dir: String, source: std::io::Error },
    #[error("WAL record {lsn} cannot be decoded: {message}")]
    Decode { lsn: Lsn, message: String },
    /// The WAL could not be written or synced; writes are refused until a restart.
    #[error("the WAL failed ({0}); writes are refused until the server restarts")]
    WalFailed(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What start-up read back from the WAL.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    pub records: usize,
    pub rows: u64,
    pub torn_tail_bytes: u64,
    /// Damaged segments whose copies are still kept aside (until an operator clears them).
    pub damaged: Vec<DamageReport>,
    pub duration: Duration,
}

/// One damaged WAL segment, as `/v1/status` reports it.
#[derive(Debug, Clone)]
pub struct DamageReport {
    /// The byte-exact copy of the segment as found.
    pub path: String,
    /// Byte offsets of the damage in it.
    pub offsets: Vec<u64>,
    /// Good records read from it (kept in the log).
    pub records_kept: usize,
    /// Found at this start, rather than kept from an earlier one.
    pub new: bool,
}

/// Running totals for status and metrics.
#[derive(Debug, Default)]
pub struct LiveCounters {
    pub rows_ingested: AtomicU64,
    pub writes: AtomicU64,
    pub busy_rejections: AtomicU64,
    pub group_commits: AtomicU64,
}

/// Rows frozen for a transfer, and the WAL position they cover.
#[derive(Debug)]
pub struct Frozen {
    pub upto: Lsn,
    pub generations: Vec<Arc<Generation>>,
}

impl Frozen {
    /// The frozen rows as series batches, oldest generation first (so newer rows win when the
    /// write path merges them).
    pub fn series(&self) -> Vec<SeriesBatch> {
        let mut out = Vec::new();
        for g in &self.generations {
            for (key, rows) in &g.series {
                out.extend(rows.chunks().iter().map(|c| SeriesBatch {
                    key: key.clone(),
                    batch: c.clone(),
                }));
            }
        }
        out
    }

    pub fn rows(&self) -> usize {
        self.generations.iter().map(|g| g.rows).sum()
    }
}

enum Command {
    Append {
        payload: Vec<u8>,
        series: Vec<SeriesBatch>,
        reply: oneshot::Sender<Result<Lsn>>,
    },
    Freeze {
        reply: oneshot::Sender<Result<Frozen>>,
    },
    Truncate {
        upto: Lsn,
        reply: oneshot::Sender<()>,
    },
}

/// The live tier and its WAL.
pub struct Live {
    options: LiveOptions,
    state: Arc<RwLock<TierState>>,
    commands: Mutex<mpsc::Sender<Command>>,
    wal_stats: Arc<Mutex<WalStats>>,
    failed: Arc<Mutex<Option<String>>>,
    counters: Arc<LiveCounters>,
    recovery: RecoveryReport,
    /// Woken when the tier passes `transfer_bytes`.
    pressure: Arc<Notify>,
    /// One transfer at a time.
    pub(crate) transfer_lock: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live")
            .field("wal_dir", &self.options.wal_dir)
            .finish_non_exhaustive()
    }
}

impl Live {
    /// Opens the WAL, replays it into memory and starts the committer thread.
    /// `clock` stamps when each series last got rows (`latest`'s `updated_at`).
    pub fn open(options: LiveOptions, clock: Arc<dyn Clock>) -> Result<Live> {
        let started = Instant::now();
        let (wal, replay) = Wal::open(&options.wal_dir).map_err(|source| Error::Open {
            dir: options.wal_dir.display().to_string(),
            source,
        })?;
        let mut state = TierState::default();
        let mut rows = 0u64;
        let now = clock.now_micros();
        for record in &replay.records {
            let series = codec::decode(&record.payload).map_err(|message| Error::Decode {
                lsn: record.lsn,
                message,
            })?;
            rows += series
                .iter()
                .map(|s| s.batch.num_rows() as u64)
                .sum::<u64>();
            state.apply(record.lsn, series, now);
        }
        let recovery = RecoveryReport {
            records: replay.records.len(),
            rows,
            torn_tail_bytes: replay.torn_tail_bytes,
            damaged: replay
                .damaged
                .iter()
                .map(|d| DamageReport {
                    path: d.moved_to.display().to_string(),
                    offsets: d.offsets.clone(),
                    records_kept: d.recovered,
                    new: d.new,
                })
                .collect(),
            duration: started.elapsed(),
        };
        let state = Arc::new(RwLock::new(state));
        let wal_stats = Arc::new(Mutex::new(wal.stats()));
        let failed = Arc::new(Mutex::new(None));
        let counters = Arc::new(LiveCounters::default());
        let (tx, rx) = mpsc::channel();
        let committer = Committer {
            wal,
            state: Arc::clone(&state),
            wal_stats: Arc::clone(&wal_stats),
            failed: Arc::clone(&failed),
            counters: Arc::clone(&counters),
            clock,
        };
        std::thread::Builder::new()
            .name("tickvault-wal".into())
            .spawn(move || committer.run(rx))
            .map_err(|source| Error::Open {
                dir: options.wal_dir.display().to_string(),
                source,
            })?;
        Ok(Live {
            options,
            state,
            commands: Mutex::new(tx),
            wal_stats,
            failed,
            counters,
            recovery,
            pressure: Arc::new(Notify::new()),
            transfer_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// Makes validated rows durable and visible; returns the write's LSN once it is fsynced.
    /// Refused with [`Error::Busy`] while the tier is over its memory cap.
    pub async fn write(&self, series: Vec<SeriesBatch>) -> Result<Lsn> {
        if let Some(reason) = self.failed.lock().expect("lock").clone() {
            return Err(Error::WalFailed(reason));
        }
        let bytes = self.bytes();
        if bytes >= self.options.max_bytes {
            self.counters
                .busy_rejections
                .fetch_add(1, Ordering::Relaxed);
            self.pressure.notify_one();
            return Err(Error::Busy {
                bytes,
                max: self.options.max_bytes,
            });
        }
        let rows: u64 = series.iter().map(|s| s.batch.num_rows() as u64).sum();
        let payload = codec::encode(&series);
        let (reply, done) = oneshot::channel();
        self.send(Command::Append {
            payload,
            series,
            reply,
        })?;
        let lsn = done.await.map_err(|_| self.stopped())??;
        self.counters.writes.fetch_add(1, Ordering::Relaxed);
        self.counters
            .rows_ingested
            .fetch_add(rows, Ordering::Relaxed);
        if self.bytes() >= self.options.transfer_bytes {
            self.pressure.notify_one();
        }
        Ok(lsn)
    }

    /// Freezes what the tier holds (with any generation a failed transfer left) for a transfer.
    pub async fn freeze(&self) -> Result<Frozen> {
        let (reply, done) = oneshot::channel();
        self.send(Command::Freeze { reply })?;
        done.await.map_err(|_| self.stopped())?
    }

    /// After a transfer committed: drops the frozen rows from memory, then the WAL segments
    /// they were read from.
    pub async fn release(&self, frozen: &Frozen) -> Result<()> {
        self.state
            .write()
            .expect("tier lock")
            .release(&frozen.generations);
        let (reply, done) = oneshot::channel();
        self.send(Command::Truncate {
            upto: frozen.upto,
            reply,
        })?;
        done.await.map_err(|_| self.stopped())
    }

    fn send(&self, command: Command) -> Result<()> {
        self.commands
            .lock()
            .expect("lock")
            .send(command)
            .map_err(|_| self.stopped())
    }

    fn stopped(&self) -> Error {
        Error::WalFailed(
            self.failed
                .lock()
                .expect("lock")
                .clone()
                .unwrap_or_else(|| "the WAL thread stopped".into()),
        )
    }

    /// See [`TierState::forget_deleted`].
    pub fn forget_deleted(&self, key: &crate::batch::SeriesKey, start: i64, end: i64) {
        self.state
            .write()
            .expect("tier lock")
            .forget_deleted(key, start, end);
    }

    /// A read lock on the tier (queries hold it while they pick the series they need).
    pub fn read(&self) -> RwLockReadGuard<'_, TierState> {
        self.state.read().expect("tier lock")
    }

    pub fn bytes(&self) -> usize {
        self.read().bytes()
    }

    pub fn options(&self) -> &LiveOptions {
        &self.options
    }

    pub fn wal_stats(&self) -> WalStats {
        *self.wal_stats.lock().expect("lock")
    }

    pub fn wal_failure(&self) -> Option<String> {
        self.failed.lock().expect("lock").clone()
    }

    pub fn counters(&self) -> &LiveCounters {
        &self.counters
    }

    pub fn recovery(&self) -> &RecoveryReport {
        &self.recovery
    }

    /// Notified when the tier should be transferred early.
    pub fn pressure(&self) -> &Arc<Notify> {
        &self.pressure
    }
}

/// The WAL's owner: group commit, then apply in LSN order, then acknowledge.
struct Committer {
    wal: Wal,
    state: Arc<RwLock<TierState>>,
    wal_stats: Arc<Mutex<WalStats>>,
    failed: Arc<Mutex<Option<String>>>,
    counters: Arc<LiveCounters>,
    clock: Arc<dyn Clock>,
}

type Appends = Vec<(Vec<u8>, Vec<SeriesBatch>, oneshot::Sender<Result<Lsn>>)>;

/// A group commit takes what is waiting up to this many payload bytes.
const GROUP_BYTES: usize = 64 << 20;

impl Committer {
    fn run(mut self, commands: mpsc::Receiver<Command>) {
        let mut pending: Vec<Command> = Vec::new();
        while let Ok(first) = commands.recv() {
            pending.push(first);
            let mut bytes = 0;
            while bytes < GROUP_BYTES {
                match commands.try_recv() {
                    Ok(c) => {
                        if let Command::Append { payload, .. } = &c {
                            bytes += payload.len();
                        }
                        pending.push(c);
                    }
                    Err(_) => break,
                }
            }
            let mut appends = Vec::new();
            for command in pending.drain(..) {
                match command {
                    Command::Append {
                        payload,
                        series,
                        reply,
                    } => appends.push((payload, series, reply)),
                    other => {
                        self.commit(std::mem::take(&mut appends));
                        self.control(other);
                    }
                }
            }
            self.commit(appends);
            *self.wal_stats.lock().expect("lock") = self.wal.stats();
        }
    }

    fn failure(&self) -> Option<String> {
        self.failed.lock().expect("lock").clone()
    }

    fn fail(&self, reason: String) {
        tracing::error!("WAL failed: {reason}; refusing writes until restart");
        *self.failed.lock().expect("lock") = Some(reason);
    }

    fn commit(&mut self, appends: Appends) {
        if appends.is_empty() {
            return;
        }
        if let Some(reason) = self.failure() {
            for (_, _, reply) in appends {
                let _ = reply.send(Err(Error::WalFailed(reason.clone())));
            }
            return;
        }
        let payloads: Vec<&[u8]> = appends.iter().map(|(p, _, _)| p.as_slice()).collect();
        match self.wal.append(&payloads) {
            Ok(lsns) => {
                self.counters.group_commits.fetch_add(1, Ordering::Relaxed);
                let now = self.clock.now_micros();
                let mut replies = Vec::with_capacity(appends.len());
                {
                    let mut state = self.state.write().expect("tier lock");
                    for ((_, series, reply), lsn) in appends.into_iter().zip(lsns) {
                        state.apply(lsn, series, now);
                        replies.push((reply, lsn));
                    }
                }
                for (reply, lsn) in replies {
                    let _ = reply.send(Ok(lsn));
                }
            }
            Err(e) => {
                self.fail(e.to_string());
                for (_, _, reply) in appends {
                    let _ = reply.send(Err(Error::WalFailed(e.to_string())));
                }
            }
        }
    }

    fn control(&mut self, command: Command) {
        match command {
            Command::Freeze { reply } => {
                let frozen = self
                    .wal
                    .rotate()
                    .map(|upto| Frozen {
                        upto,
                        generations: self.state.write().expect("tier lock").freeze(upto),
                    })
                    .map_err(|e| Error::WalFailed(format!("cannot start a WAL segment: {e}")));
                let _ = reply.send(frozen);
            }
            Command::Truncate { upto, reply } => {
                if let Err(e) = self.wal.truncate(upto) {
                    // Harmless for correctness: replay of transferred rows is idempotent.
                    tracing::warn!("could not delete transferred WAL segments: {e}");
                }
                *self.wal_stats.lock().expect("lock") = self.wal.stats();
                let _ = reply.send(());
            }
            Command::Append { .. } => unreachable!("appends are committed in groups"),
        }
    }
}
