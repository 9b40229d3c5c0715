//! One source of time for the whole crate.
//!
//! Everything that reads the time of day or waits for it (the syncer's retry schedule, the
//! catalog's commit timestamps, the live tier, the scheduler) takes an `Arc<dyn Clock>`. A server
//! or a library user passes [`SystemClock`]; tests pass a [`ManualClock`] and move time forward
//! themselves, so they assert exact times instead of sleeping and hoping.
//!
//! Times are microseconds since the Unix epoch (UTC), as everywhere in the data model.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use tokio::sync::{Notify, watch};

/// The time of day, and a way to wait for a later one.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Now, in microseconds since the Unix epoch (UTC).
    fn now_micros(&self) -> i64;

    /// Completes once [`Clock::now_micros`] has reached `deadline_us` (at once if it has).
    fn sleep_until(&self, deadline_us: i64) -> BoxFuture<'static, ()>;
}

impl dyn Clock {
    /// Now, as a UTC date-time.
    pub fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(self.now_micros()).unwrap_or_default()
    }

    /// Completes once `duration` has passed on this clock.
    pub fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        let deadline = self.now_micros().saturating_add(micros(duration));
        self.sleep_until(deadline)
    }
}

/// The clock to use when nothing else is asked for.
pub fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// A duration in whole microseconds, saturating.
pub fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

/// The operating system's wall clock; waits on the tokio timer.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_micros(&self) -> i64 {
        Utc::now().timestamp_micros()
    }

    fn sleep_until(&self, deadline_us: i64) -> BoxFuture<'static, ()> {
        let wait = deadline_us.saturating_sub(self.now_micros()).max(0) as u64;
        Box::pin(tokio::time::sleep(Duration::from_micros(wait)))
    }
}

/// A clock that stands still until a test moves it. Sleepers wake when a move reaches their
/// deadline; [`ManualClock::sleepers`] tells a test when the code under test is parked.
#[derive(Debug)]
pub struct ManualClock {
    now: watch::Sender<i64>,
    state: Arc<Sleepers>,
}

#[derive(Debug, Default)]
struct Sleepers {
    count: AtomicUsize,
    changed: Notify,
}

impl ManualClock {
    /// A clock reading `start_us` until moved.
    pub fn new(start_us: i64) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            now: watch::Sender::new(start_us),
            state: Arc::new(Sleepers::default()),
        })
    }

    /// A clock reading `at` until moved.
    pub fn at(at: DateTime<Utc>) -> Arc<ManualClock> {
        ManualClock::new(at.timestamp_micros())
    }

    /// Moves the clock forward by `duration`, waking every sleeper whose deadline it reaches.
    pub fn advance(&self, duration: Duration) {
        self.now
            .send_modify(|now| *now = now.saturating_add(micros(duration)));
    }

    /// Sets the clock to `at_us` (forward or back); sleepers whose deadline is reached wake.
    pub fn set(&self, at_us: i64) {
        self.now.send_replace(at_us);
    }

    /// How many sleeps on this clock are waiting now.
    pub fn sleepers(&self) -> usize {
        self.state.count.load(Ordering::SeqCst)
    }

    /// Waits until at least `n` sleeps are waiting on this clock (the code under test has
    /// parked itself), so a test can move the clock knowing who will see the move.
    pub async fn until_sleepers(&self, n: usize) {
        loop {
            let changed = self.state.changed.notified();
            if self.sleepers() >= n {
                return;
            }
            changed.await;
        }
    }
}

impl Clock for ManualClock {
    fn now_micros(&self) -> i64 {
        *self.now.borrow()
    }

    fn sleep_until(&self, deadline_us: i64) -> BoxFuture<'static, ()> {
        let mut now = self.now.subscribe();
        let state = Arc::clone(&self.state);
        Box::pin(async move {
            let _parked = Parked::new(state);
            // Err only if the clock is gone: nothing will ever move it, so never wake.
            if now.wait_for(|now| *now >= deadline_us).await.is_err() {
                std::future::pending::<()>().await;
            }
        })
    }
}

/// Counts a sleeper while it waits (also when its future is dropped unfinished).
struct Parked(Arc<Sleepers>);

impl Parked {
    fn new(state: Arc<Sleepers>) -> Parked {
        state.count.fetch_add(1, Ordering::SeqCst);
        state.changed.notify_waiters();
        Parked(state)
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        self.0.count.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_sleeper_wakes_when_the_manual_clock_reaches_its_deadline_and_not_before() {
        let clock = ManualClock::new(1_000);
        let dyn_clock: Arc<dyn Clock> = Arc::<ManualClock>::clone(&clock);
        let sleeper = tokio::spawn(dyn_clock.sleep(Duration::from_micros(500)));
        clock.until_sleepers(1).await;
        clock.advance(Duration::from_micros(499));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        assert_eq!(clock.sleepers(), 1);
        clock.advance(Duration::from_micros(1));
        sleeper.await.unwrap();
        assert_eq!(clock.sleepers(), 0);
        assert_eq!(dyn_clock.now_micros(), 1_500);
    }

    #[tokio::test]
    async fn a_deadline_already_passed_completes_at_once() {
        let clock = ManualClock::new(10);
        clock.sleep_until(10).await;
        clock.sleep_until(-5).await;
        SystemClock.sleep_until(0).await;
    }

    #[tokio::test]
    async fn a_dropped_sleep_is_no_longer_counted() {
        let clock = ManualClock::new(0);
        let sleep = clock.sleep_until(100);
        let waiting = tokio::spawn(sleep);
        clock.until_sleepers(1).await;
        waiting.abort();
        let _ = waiting.await;
        assert_eq!(clock.sleepers(), 0);
    }

    #[test]
    fn the_system_clock_reads_the_time_of_day() {
        let before = Utc::now().timestamp_micros();
        let now = SystemClock.now_micros();
        assert!(now >= before && now - before < 60_000_000);
    }
}
