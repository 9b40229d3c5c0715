//! Every call to an upstream API goes through [`Upstream`]: a timeout, a rate limit, a bound on
//! concurrent requests, retries with exponential backoff and jitter that honour `Retry-After`,
//! a circuit breaker, and counters for `/v1/sync/status` and `/metrics`.
//!
//! The circuit breaker reads the injected [`Clock`] (its open period is part of the sync's
//! schedule, which tests drive on a manual clock). The rate limiter and the pauses between
//! retries of one call pace requests to a real server, so they stay on real (tokio) time.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::clock::{self, Clock, micros};
use crate::error::error_chain;

/// How calls to one provider behave.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamPolicy {
    /// One request, connect to last body byte.
    pub timeout: Duration,
    /// At most this many requests start in any `rate_window`; `None` is unlimited.
    pub rate_limit: Option<u32>,
    pub rate_window: Duration,
    pub max_concurrency: usize,
    /// Retries after the first attempt, for timeouts, resets, 429, 5xx and malformed bodies.
    pub max_retries: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// A `Retry-After` longer than this ends the call instead of blocking the job; the symbol
    /// is retried later by the stage 2 job's own backoff.
    pub max_retry_after: Duration,
    /// Consecutive failed requests that open the circuit.
    pub breaker_failures: u32,
    /// How long the circuit stays open before one trial request (half-open).
    pub breaker_open: Duration,
}

impl Default for UpstreamPolicy {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            rate_limit: None,
            rate_window: Duration::from_secs(60),
            max_concurrency: 4,
            max_retries: 4,
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
            breaker_failures: 5,
            breaker_open: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum FetchError {
    #[error("HTTP {status} from {url}: {body}")]
    Status {
        status: u16,
        url: String,
        body: String,
        /// The server's `Retry-After`, when it gave one.
        retry_after: Option<Duration>,
    },
    #[error("request to {url} failed: {message}")]
    Transport { url: String, message: String },
    #[error("malformed answer from {url}: {message}")]
    Malformed { url: String, message: String },
    #[error("circuit open for provider {provider} after repeated failures; next try in {}s", retry_in.as_secs())]
    CircuitOpen {
        provider: String,
        retry_in: Duration,
    },
    /// The request cannot be made at all (unsupported interval, missing key): not retried.
    #[error("{0}")]
    Invalid(String),
}

impl FetchError {
    /// Whether another attempt may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            FetchError::Status { status, .. } => *status == 429 || *status == 408 || *status >= 500,
            FetchError::Transport { .. } | FetchError::Malformed { .. } => true,
            FetchError::CircuitOpen { .. } | FetchError::Invalid(_) => false,
        }
    }

    /// Whether this says the provider is unhealthy (counts toward opening the circuit). A 404
    /// for an unknown symbol says nothing about the provider.
    fn is_provider_failure(&self) -> bool {
        self.is_transient()
    }
}

/// Counters of one provider since start.
#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    errors: AtomicU64,
    retries: AtomicU64,
    throttled: AtomicU64,
    rate_limit_waits: AtomicU64,
    rate_limit_wait_us: AtomicU64,
    circuit_rejections: AtomicU64,
    circuit_opens: AtomicU64,
    bytes: AtomicU64,
}

/// A provider's counters and circuit state, for status and metrics.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct UpstreamStats {
    pub provider: String,
    pub requests: u64,
    pub errors: u64,
    pub retries: u64,
    /// 429 and 503 answers.
    pub throttled: u64,
    pub rate_limit_waits: u64,
    pub rate_limit_wait_seconds: f64,
    pub circuit: &'static str,
    pub circuit_opens: u64,
    pub circuit_rejections: u64,
    pub bytes: u64,
}

/// An HTTP client for one provider with its policy.
#[derive(Debug)]
pub struct Upstream {
    name: String,
    http: reqwest::Client,
    policy: UpstreamPolicy,
    limiter: RateLimiter,
    permits: Semaphore,
    breaker: Mutex<Breaker>,
    counters: Counters,
    clock: Arc<dyn Clock>,
}

impl Upstream {
    pub fn new(name: &str, policy: UpstreamPolicy) -> Self {
        let http = reqwest::Client::builder()
            .timeout(policy.timeout)
            .user_agent(concat!("tickvault/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("HTTP client builds");
        Self {
            name: name.to_string(),
            limiter: RateLimiter::new(policy.rate_limit, policy.rate_window),
            permits: Semaphore::new(policy.max_concurrency.max(1)),
            breaker: Mutex::new(Breaker::default()),
            counters: Counters::default(),
            http,
            policy,
            clock: clock::system(),
        }
    }

    /// Reads the time of day (circuit breaker, `Retry-After` dates, `recorded_at`) from this
    /// clock instead of the system's. The syncer hands its clock to its providers this way.
    pub fn set_clock(&mut self, clock: Arc<dyn Clock>) {
        self.clock = clock;
    }

    /// The clock this client reads the time of day from.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn policy(&self) -> &UpstreamPolicy {
        &self.policy
    }

    /// GETs `url` with `headers` and parses the body with `parse` (an `Err` is a malformed
    /// answer), retrying transient failures.
    pub async fn get<T>(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        parse: impl Fn(&[u8]) -> Result<T, String>,
    ) -> Result<T, FetchError> {
        let mut attempt = 0;
        loop {
            let result = self.attempt(url, headers, &parse).await;
            let err = match result {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            if matches!(err, FetchError::CircuitOpen { .. }) {
                return Err(err);
            }
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
            if !err.is_transient() || attempt >= self.policy.max_retries {
                return Err(err);
            }
            let delay = match &err {
                FetchError::Status {
                    retry_after: Some(after),
                    ..
                } => {
                    if *after > self.policy.max_retry_after {
                        return Err(err);
                    }
                    *after
                }
                _ => backoff(&self.policy, attempt),
            };
            tracing::debug!(provider = %self.name, %url, ?delay, "retrying after: {err}");
            self.counters.retries.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    async fn attempt<T>(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        parse: &impl Fn(&[u8]) -> Result<T, String>,
    ) -> Result<T, FetchError> {
        let _permit = self.permits.acquire().await.expect("semaphore open");
        self.admit()?;
        // Held until the answer is in: the token's window starts when the request ends.
        let (_token, waited) = self.limiter.acquire().await;
        if let Some(waited) = waited {
            self.counters
                .rate_limit_waits
                .fetch_add(1, Ordering::Relaxed);
            self.counters
                .rate_limit_wait_us
                .fetch_add(waited.as_micros() as u64, Ordering::Relaxed);
        }
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let result = self.send(url, headers).await.and_then(|body| {
            parse(&body).map_err(|message| FetchError::Malformed {
                url: url.to_string(),
                message,
            })
        });
        let mut breaker = self.breaker.lock().expect("breaker lock");
        match &result {
            Ok(_) => breaker.success(),
            Err(e) if e.is_provider_failure() => {
                if breaker.failure(&self.policy, self.clock.now_micros()) {
                    self.counters.circuit_opens.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(provider = %self.name, "circuit opened: {e}");
                }
            }
            Err(_) => breaker.neutral(),
        }
        result
    }

    /// Lets a request through the circuit breaker, or refuses it.
    fn admit(&self) -> Result<(), FetchError> {
        let now = self.clock.now_micros();
        self.breaker
            .lock()
            .expect("breaker lock")
            .admit(now)
            .map_err(|until| {
                self.counters
                    .circuit_rejections
                    .fetch_add(1, Ordering::Relaxed);
                FetchError::CircuitOpen {
                    provider: self.name.clone(),
                    retry_in: Duration::from_micros(until.saturating_sub(now).max(0) as u64),
                }
            })
    }

    async fn send(&self, url: &str, headers: &[(&str, &str)]) -> Result<bytes::Bytes, FetchError> {
        let transport = |e: reqwest::Error| FetchError::Transport {
            url: url.to_string(),
            message: if e.is_timeout() {
                format!("timed out after {:?}", self.policy.timeout)
            } else {
                error_chain(&e)
            },
        };
        let mut request = self.http.get(url);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, self.clock.now()));
        let body = response.bytes().await.map_err(transport)?;
        self.counters
            .bytes
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        if status.is_success() {
            return Ok(body);
        }
        if status.as_u16() == 429 || status.as_u16() == 503 {
            self.counters.throttled.fetch_add(1, Ordering::Relaxed);
        }
        let mut text = String::from_utf8_lossy(&body).into_owned();
        text.truncate(300);
        Err(FetchError::Status {
            status: status.as_u16(),
            url: redact(url),
            body: text,
            retry_after,
        })
    }

    pub fn stats(&self) -> UpstreamStats {
        let c = &self.counters;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        UpstreamStats {
            provider: self.name.clone(),
            requests: load(&c.requests),
            errors: load(&c.errors),
            retries: load(&c.retries),
            throttled: load(&c.throttled),
            rate_limit_waits: load(&c.rate_limit_waits),
            rate_limit_wait_seconds: load(&c.rate_limit_wait_us) as f64 / 1e6,
            circuit: self
                .breaker
                .lock()
                .expect("breaker lock")
                .state_name(self.clock.now_micros()),
            circuit_opens: load(&c.circuit_opens),
            circuit_rejections: load(&c.circuit_rejections),
            bytes: load(&c.bytes),
        }
    }
}

/// Hides credentials passed in the query string (Polygon's `apiKey`) from errors and logs.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.query().is_some() => {
            let pairs: Vec<(String, String)> = u
                .query_pairs()
                .map(|(k, v)| {
                    let secret =
                        k.eq_ignore_ascii_case("apikey") || k.eq_ignore_ascii_case("token");
                    (
                        k.into_owned(),
                        if secret { "***".into() } else { v.into_owned() },
                    )
                })
                .collect();
            u.query_pairs_mut().clear().extend_pairs(pairs);
            u.to_string()
        }
        _ => url.to_string(),
    }
}

/// `Retry-After` as seconds or an HTTP date (how long after `now`).
fn parse_retry_after(v: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    if let Ok(secs) = v.trim().parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(v.trim()).ok()?;
    let secs = (at.timestamp_millis() - now.timestamp_millis()).max(0);
    Some(Duration::from_millis(secs as u64))
}

/// Exponential backoff with "equal jitter": half the step fixed, half random, so retries of many
/// symbols spread out but never come back at once.
fn backoff(policy: &UpstreamPolicy, attempt: u32) -> Duration {
    let step = policy
        .backoff_base
        .saturating_mul(1u32 << attempt.min(20))
        .min(policy.backoff_max);
    let half = step / 2;
    half + half.mul_f64(jitter())
}

/// A uniform number in [0, 1) from a small xorshift generator; jitter needs no crypto.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::AtomicU64;
    static STATE: AtomicU64 = AtomicU64::new(0);
    let mut x = STATE.load(Ordering::Relaxed);
    if x == 0 {
        // A random seed (the standard library's per-process hash keys), not the time.
        x = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
            | 1;
    }
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    STATE.store(x, Ordering::Relaxed);
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// `limit` tokens, each coming back `window` after the request that took it *finished*. The
/// provider counts arrivals, and a request arrives before it finishes, so no window of that
/// length ever holds more than `limit` arrivals however late a request travels (tokens that
/// came back `window` after they were taken let a delayed request land close to the next
/// ones).
#[derive(Debug)]
struct RateLimiter {
    limit: Option<usize>,
    window: Duration,
    /// Held by the caller that waits next, so callers are served in order.
    queue: tokio::sync::Mutex<()>,
    tokens: std::sync::Mutex<Tokens>,
    /// Signalled when a request finishes.
    finished: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct Tokens {
    in_flight: usize,
    /// When requests finished, oldest first; each token is out until `window` after.
    finished_at: VecDeque<Instant>,
}

/// A request's token: it starts coming back when this is dropped.
#[must_use]
struct RateToken<'a>(Option<&'a RateLimiter>);

impl Drop for RateToken<'_> {
    fn drop(&mut self) {
        if let Some(limiter) = self.0 {
            let mut tokens = limiter.tokens.lock().expect("rate limiter lock");
            tokens.in_flight -= 1;
            tokens.finished_at.push_back(Instant::now());
            limiter.finished.notify_waiters();
        }
    }
}

impl RateLimiter {
    fn new(limit: Option<u32>, window: Duration) -> Self {
        Self {
            limit: limit.filter(|n| *n > 0).map(|n| n as usize),
            window,
            queue: tokio::sync::Mutex::new(()),
            tokens: std::sync::Mutex::new(Tokens::default()),
            finished: tokio::sync::Notify::new(),
        }
    }

    /// Waits for a token; returns it and how long it waited, if it did.
    async fn acquire(&self) -> (RateToken<'_>, Option<Duration>) {
        let Some(limit) = self.limit else {
            return (RateToken(None), None);
        };
        let _turn = self.queue.lock().await;
        let started = Instant::now();
        let mut waited = false;
        loop {
            // Registered before looking, so a request finishing in between still wakes us.
            let finished = self.finished.notified();
            tokio::pin!(finished);
            finished.as_mut().enable();
            let free_at = {
                let mut tokens = self.tokens.lock().expect("rate limiter lock");
                let now = Instant::now();
                while tokens
                    .finished_at
                    .front()
                    .is_some_and(|t| *t + self.window <= now)
                {
                    tokens.finished_at.pop_front();
                }
                if tokens.in_flight + tokens.finished_at.len() < limit {
                    tokens.in_flight += 1;
                    return (RateToken(Some(self)), waited.then(|| started.elapsed()));
                }
                tokens.finished_at.front().map(|t| *t + self.window)
            };
            waited = true;
            match free_at {
                Some(at) => tokio::time::sleep_until(at).await,
                // Every token is in flight: the first to finish starts its window.
                None => finished.await,
            }
        }
    }
}

/// Closed → (N consecutive failures) → open → (after `breaker_open`) → half-open: one trial
/// request; success closes, failure opens again.
#[derive(Debug, Default)]
enum Breaker {
    #[default]
    Closed,
    Counting(u32),
    Open {
        /// µs UTC on the upstream's clock.
        until: i64,
    },
    HalfOpen,
}

impl Breaker {
    /// `now` and the refusal's "try again at" are µs UTC on the upstream's clock.
    fn admit(&mut self, now: i64) -> Result<(), i64> {
        match *self {
            Breaker::Closed | Breaker::Counting(_) => Ok(()),
            Breaker::Open { until } if now >= until => {
                *self = Breaker::HalfOpen;
                Ok(())
            }
            Breaker::Open { until } => Err(until),
            // The trial request is in flight; others wait for its verdict.
            Breaker::HalfOpen => Err(now.saturating_add(1_000_000)),
        }
    }

    fn success(&mut self) {
        *self = Breaker::Closed;
    }

    /// A request that neither proves nor disproves health (e.g. 404): ends a trial as a success.
    fn neutral(&mut self) {
        if matches!(self, Breaker::HalfOpen) {
            *self = Breaker::Closed;
        }
    }

    /// Records a failure; returns true if this opened the circuit.
    fn failure(&mut self, policy: &UpstreamPolicy, now: i64) -> bool {
        let failures = match *self {
            Breaker::Closed => 1,
            Breaker::Counting(n) => n + 1,
            Breaker::HalfOpen => u32::MAX,
            Breaker::Open { .. } => return false,
        };
        if failures >= policy.breaker_failures.max(1) {
            *self = Breaker::Open {
                until: now.saturating_add(micros(policy.breaker_open)),
            };
            true
        } else {
            *self = Breaker::Counting(failures);
            false
        }
    }

    fn state_name(&self, now: i64) -> &'static str {
        match self {
            Breaker::Closed | Breaker::Counting(_) => "closed",
            Breaker::Open { until } if now >= *until => "half-open",
            Breaker::Open { .. } => "open",
            Breaker::HalfOpen => "half-open",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn no_window_holds_more_than_the_limit_however_long_requests_take() {
        // A short window keeps the test fast; the rule is the same for a minute.
        let window = Duration::from_millis(200);
        let limiter = std::sync::Arc::new(RateLimiter::new(Some(5), window));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for i in 0..23u64 {
            let l = std::sync::Arc::clone(&limiter);
            tasks.push(tokio::spawn(async move {
                let (_token, _) = l.acquire().await;
                // Sent now; the provider sees it after a delay that differs per request
                // (up to 60 ms), and the answer comes back at once.
                let sent = Instant::now();
                let delay = Duration::from_millis((i * 37) % 61);
                tokio::time::sleep(delay).await;
                (sent, sent + delay)
            }));
        }
        let mut sent = Vec::new();
        let mut arrived = Vec::new();
        for t in tasks {
            let (s, a) = t.await.unwrap();
            sent.push(s - start);
            arrived.push(a - start);
        }
        for times in [&mut sent, &mut arrived] {
            times.sort();
            for (i, t) in times.iter().enumerate() {
                let in_window = times[i..].iter().take_while(|u| **u < *t + window).count();
                assert!(
                    in_window <= 5,
                    "{in_window} requests in the window after {t:?}"
                );
            }
        }
        // 23 requests at 5 a window need four full windows before the last batch.
        assert!(*sent.last().unwrap() >= window * 4);
    }

    #[tokio::test]
    async fn without_a_limit_nothing_waits() {
        let limiter = RateLimiter::new(None, Duration::from_secs(60));
        for _ in 0..100 {
            assert!(limiter.acquire().await.1.is_none());
        }
    }

    #[test]
    fn breaker_opens_half_opens_and_closes() {
        let policy = UpstreamPolicy {
            breaker_failures: 3,
            breaker_open: Duration::from_secs(10),
            ..Default::default()
        };
        let t0 = 1_700_000_000_000_000;
        let s = |secs: i64| t0 + secs * 1_000_000;
        let mut b = Breaker::default();
        assert!(!b.failure(&policy, t0));
        assert!(!b.failure(&policy, t0));
        assert!(b.failure(&policy, t0));
        assert_eq!(b.admit(s(5)), Err(s(10)));
        assert_eq!(b.state_name(s(10) - 1), "open");
        assert_eq!(b.state_name(s(10)), "half-open");
        // After the open period one trial goes through; the rest wait for it.
        assert!(b.admit(s(10)).is_ok());
        assert!(b.admit(s(10)).is_err());
        assert!(b.failure(&policy, s(11)));
        assert!(b.admit(s(21) - 1).is_err());
        assert!(b.admit(s(21)).is_ok());
        b.success();
        assert_eq!(b.state_name(t0), "closed");
        assert!(b.admit(t0).is_ok());
    }

    #[test]
    fn retry_after_and_backoff() {
        let now = chrono::DateTime::parse_from_rfc3339("2015-10-21T07:27:30Z")
            .unwrap()
            .to_utc();
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        let policy = UpstreamPolicy::default();
        for attempt in 0..10 {
            let d = backoff(&policy, attempt);
            let step = (policy.backoff_base * (1 << attempt)).min(policy.backoff_max);
            assert!(d >= step / 2 && d <= step, "attempt {attempt}: {d:?}");
        }
        assert_eq!(
            redact("http://x/a?apiKey=secret&limit=5"),
            "http://x/a?apiKey=***&limit=5"
        );
    }
}
