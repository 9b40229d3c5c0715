//! Configuration: one TOML file, every key overridable by a `TICKVAULT_*` environment variable
//! and by a flag. Precedence: flag, then environment, then file, then the default.
//!
//! Each key is declared once, in `config_keys!` below: its field, default, flag, variable and
//! doc comment (which is also the flag's help). The file is read into the struct by serde, the
//! variables and flags are applied through [`KEYS`], and `--help` lists every flag with its file
//! key, variable and default. The keys of `[providers.NAME]` tables are the fields of
//! [`crate::sync::settings::ProviderConfig`], set by `TICKVAULT_PROVIDER_<NAME>_<KEY>` and
//! `--provider NAME.KEY=VALUE`.

use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::sync::scheduler::{Job, SchedulerSettings};
pub use crate::units::{ByteSize, Seconds, parse_duration};
pub use flags::{GlobalOverrides, Overrides};
pub use keys::{Commands, Key};

mod flags;
mod keys;
mod providers;

keys::config_keys! {
    /// The effective configuration of a tickvault process.
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    #[serde(default, deny_unknown_fields)]
    pub struct Config {
        /// Where the store lives: a directory, `file:///abs/path`, `memory://` or
        /// `s3://bucket/prefix`.
        store: String = "./data".into(),
            flag "store", env "TICKVAULT_STORE", All;
        /// Address `serve` listens on, e.g. 127.0.0.1:8080 (non-loopback needs tokens).
        listen: String = "127.0.0.1:8080".into(),
            flag "listen", env "TICKVAULT_LISTEN", Serve;
        /// Bearer tokens, SCOPE:TOKEN (read or write); with none, the server only binds to
        /// loopback. The flag repeats; flags or the variable replace the file's tokens.
        tokens: Vec<Token> = Vec::new(),
            flag "token", env "TICKVAULT_TOKENS", Serve;
        /// Largest request body accepted, e.g. 16MiB.
        max_body: ByteSize = ByteSize(16 << 20),
            flag "max-body", env "TICKVAULT_MAX_BODY", Serve;
        /// A query running longer than this is cancelled, e.g. 30s.
        query_timeout: Seconds = Seconds(30.0),
            flag "query-timeout", env "TICKVAULT_QUERY_TIMEOUT", Serve;
        /// Memory one query may use for sorts, joins and aggregations, e.g. 1GiB.
        query_memory: ByteSize = ByteSize(1 << 30),
            flag "query-memory", env "TICKVAULT_QUERY_MEMORY", Serve;
        /// Queries running at once; more are answered 429.
        max_concurrent_queries: usize = 16,
            flag "max-concurrent-queries", env "TICKVAULT_MAX_CONCURRENT_QUERIES", Serve;
        /// Memory for finished SQL answers sent again while the store is unchanged, e.g. 64MiB
        /// (0 turns the cache off).
        query_cache: ByteSize = ByteSize(64 << 20),
            flag "query-cache", env "TICKVAULT_QUERY_CACHE", Serve;
        /// The WAL directory, local even when the store is on S3. Default: `_wal` inside a
        /// local store's directory, else `./data/_wal`.
        wal_dir: Option<String> = None,
            flag "wal-dir", env "TICKVAULT_WAL_DIR", Serve;
        /// How often the live tier moves into Parquet (stage 1 of the sync), e.g. 60s.
        transfer_interval: Seconds = Seconds(60.0),
            flag "transfer-interval", env "TICKVAULT_TRANSFER_INTERVAL", Serve;
        /// Past this much live data a transfer starts early, e.g. 128MiB.
        transfer_threshold: ByteSize = ByteSize(128 << 20),
            flag "transfer-threshold", env "TICKVAULT_TRANSFER_THRESHOLD", Serve;
        /// Memory the live tier may hold; past it writes are answered 429 until a transfer
        /// frees it, e.g. 512MiB.
        live_max_memory: ByteSize = ByteSize(512 << 20),
            flag "live-max-memory", env "TICKVAULT_LIVE_MAX_MEMORY", Serve;
        /// How often partitions with many small files are compacted, e.g. 5m.
        compact_interval: Seconds = Seconds(300.0),
            flag "compact-interval", env "TICKVAULT_COMPACT_INTERVAL", Serve;
        /// How often files no commit references are deleted (after `gc_grace`), e.g. 1h.
        gc_interval: Seconds = Seconds(3600.0),
            flag "gc-interval", env "TICKVAULT_GC_INTERVAL", Serve;
        /// How long an unreferenced file is kept before GC deletes it, e.g. 1h.
        gc_grace: Seconds = Seconds(3600.0),
            flag "gc-grace", env "TICKVAULT_GC_GRACE", Serve;
        /// How often stage 2 (backfill and gap healing) runs, e.g. 3h.
        backfill_interval: Seconds = Seconds(3.0 * 3600.0),
            flag "backfill-interval", env "TICKVAULT_BACKFILL_INTERVAL", Serve;
        /// The first stage 2 run this long after start, e.g. 30s.
        backfill_delay: Seconds = Seconds(30.0),
            flag "backfill-delay", env "TICKVAULT_BACKFILL_DELAY", Serve;
        /// A tracked series not synced successfully for this long is stale, e.g. 3h.
        stale_after: Seconds = Seconds(3.0 * 3600.0),
            flag "stale-after", env "TICKVAULT_STALE_AFTER", Serve;
        /// A failing series is retried after this, doubling up to `retry_max`, e.g. 1m.
        retry_base: Seconds = Seconds(60.0),
            flag "retry-base", env "TICKVAULT_RETRY_BASE", Serve;
        /// Longest retry delay of a failing series, e.g. 1h.
        retry_max: Seconds = Seconds(3600.0),
            flag "retry-max", env "TICKVAULT_RETRY_MAX", Serve;
        /// Bars that ended less than this ago and came back empty are asked again next sync
        /// instead of being recorded as known-empty (vendors publish late), e.g. 1h.
        settle: Seconds = Seconds(3600.0),
            flag "settle", env "TICKVAULT_SETTLE", Serve;
        /// Stage 2 reads a tracked symbol's corporate actions again when it last read them
        /// longer ago than this (and in every sync that fetches Yahoo bars of it: their prices
        /// come split-adjusted and the splits after them make them raw again), e.g. 24h.
        actions_every: Seconds = Seconds(24.0 * 3600.0),
            flag "actions-every", env "TICKVAULT_ACTIONS_EVERY", Serve;
        /// How often the newest bars of tracked intraday symbols are fetched into the live
        /// tier, e.g. 15m.
        live_interval: Seconds = Seconds(900.0),
            flag "live-interval", env "TICKVAULT_LIVE_INTERVAL", Serve;
        /// Jobs that do not run on their own (still runnable by hand): any of `transfer`,
        /// `compact`, `gc`, `backfill`, `live`. The flag repeats.
        disabled_jobs: Vec<String> = Vec::new(),
            flag "disable-job", env "TICKVAULT_DISABLED_JOBS", Serve;
        /// The provider for reads that fill symbols nobody registered, and for `symbols add`.
        default_provider: Option<String> = None,
            flag "default-provider", env "TICKVAULT_DEFAULT_PROVIDER", Serve;
        /// A local directory caching Parquet files of a remote store (LRU); unset for none.
        cache_dir: Option<String> = None,
            flag "cache-dir", env "TICKVAULT_CACHE_DIR", All;
        /// The disk cache's budget, e.g. 10GiB.
        cache_max_bytes: ByteSize = ByteSize(10 << 30),
            flag "cache-max-bytes", env "TICKVAULT_CACHE_MAX_BYTES", All;
        /// The operator guarantees a single writer: run even on a store without conditional
        /// writes.
        single_writer: bool = false,
            flag "single-writer", env "TICKVAULT_SINGLE_WRITER", All;
        /// Serve as a reader of a store another process writes: no writes, no jobs, and new
        /// commits are picked up by polling.
        read_only: bool = false,
            flag "read-only", env "TICKVAULT_READ_ONLY", Serve;
        /// How often a server polls for catalog commits made by other processes (a writer, a
        /// CLI import), e.g. 5s.
        follow_interval: Seconds = Seconds(5.0),
            flag "follow-interval", env "TICKVAULT_FOLLOW_INTERVAL", Serve;
    }
    [s3] {
        /// The S3 endpoint, e.g. http://127.0.0.1:9000 for MinIO (default: AWS, or
        /// `AWS_ENDPOINT_URL`).
        endpoint: Option<String>, flag "s3-endpoint", env "TICKVAULT_S3_ENDPOINT";
        /// The S3 region (default: `AWS_REGION`, else us-east-1).
        region: Option<String>, flag "s3-region", env "TICKVAULT_S3_REGION";
        /// The access key id (default: `AWS_ACCESS_KEY_ID`, else the AWS credential chain).
        access_key_id: Option<String>, flag "s3-access-key-id", env "TICKVAULT_S3_ACCESS_KEY_ID";
        /// The secret access key (default: `AWS_SECRET_ACCESS_KEY`); masked by `config`.
        secret_access_key: Option<String>,
            flag "s3-secret-access-key", env "TICKVAULT_S3_SECRET_ACCESS_KEY";
        /// A session token (default: `AWS_SESSION_TOKEN`); masked by `config`.
        session_token: Option<String>, flag "s3-session-token", env "TICKVAULT_S3_SESSION_TOKEN";
        /// Path-style requests, `https://endpoint/bucket/key` (MinIO, Ceph).
        path_style: bool, flag "s3-path-style", env "TICKVAULT_S3_PATH_STYLE";
        /// Allow a plain `http://` endpoint (also `AWS_ALLOW_HTTP`).
        allow_http: bool, flag "s3-allow-http", env "TICKVAULT_S3_ALLOW_HTTP";
        /// One request's time limit, in seconds.
        request_timeout: f64, flag "s3-request-timeout", env "TICKVAULT_S3_REQUEST_TIMEOUT";
        /// Retries of a failed request (5xx, 429, SlowDown, connection errors).
        max_retries: usize, flag "s3-max-retries", env "TICKVAULT_S3_MAX_RETRIES";
        /// No retry starts later than this many seconds after the first attempt.
        retry_timeout: f64, flag "s3-retry-timeout", env "TICKVAULT_S3_RETRY_TIMEOUT";
    }
    tables {
        /// Upstream market-data APIs by name: `[providers.yahoo] kind = "yahoo"`.
        providers: crate::sync::settings::Providers;
        /// How to reach an `s3://` store: its keys are declared in `[s3]` above.
        s3: crate::storage::S3Config;
    }
}

/// The least `query_memory` accepted: below it even small sorts and aggregations fail.
pub const MIN_QUERY_MEMORY: u64 = 1 << 20;
/// The least `max_body` accepted: room for a small write or a SQL statement.
pub const MIN_MAX_BODY: u64 = 1 << 10;
/// The least `live_max_memory` accepted: room for a few live batches.
pub const MIN_LIVE_MEMORY: u64 = 1 << 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Read,
    /// Write also allows read.
    Write,
}

impl Scope {
    pub fn allows(self, needed: Scope) -> bool {
        self >= needed
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Token {
    pub token: String,
    pub scope: Scope,
    /// Who holds it, for logs.
    #[serde(default)]
    pub name: Option<String>,
}

impl std::str::FromStr for Token {
    type Err = String;

    /// `SCOPE:TOKEN`, as in `TICKVAULT_TOKENS=write:s3cret,read:n0tebooks`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (scope, token) = s
            .split_once(':')
            .ok_or_else(|| "a token is written SCOPE:TOKEN, e.g. read:abc123".to_string())?;
        let scope = match scope {
            "read" => Scope::Read,
            "write" => Scope::Write,
            other => return Err(format!("unknown token scope {other:?} (read or write)")),
        };
        // Only emptiness here: clap repeats a refused value in its error, so what a token is
        // made of is checked by `Config::validate`, whose message never shows it.
        if token.is_empty() {
            return Err("empty token".into());
        }
        Ok(Token {
            token: token.to_string(),
            scope,
            name: None,
        })
    }
}

/// Refuses a token no client could send: a bearer token travels in an HTTP header, so it must
/// be visible ASCII without spaces. The message never repeats the token.
fn check_token(token: &str) -> Result<(), String> {
    if token.is_empty() {
        return Err("empty token".into());
    }
    if let Some((at, c)) = token
        .chars()
        .enumerate()
        .find(|(_, c)| !c.is_ascii_graphic())
    {
        let what = if c.is_whitespace() {
            "whitespace"
        } else if c.is_ascii_control() {
            "a control character"
        } else {
            "a non-ASCII character"
        };
        return Err(format!(
            "the token has {what} at character {}; a token must be visible ASCII (no spaces) \
             to be sent as Authorization: Bearer <token>",
            at + 1
        ));
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading config {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config {path}: {source}")]
    Parse {
        path: String,
        source: Box<toml::de::Error>,
    },
    /// A bad value in a variable or a flag: `given` names both, e.g.
    /// `TICKVAULT_MAX_BODY (max_body)`.
    #[error("config: {given}: {message}")]
    Value { given: String, message: String },
    #[error("config: unknown key {0:?}")]
    UnknownKey(String),
    #[error("config: {0}")]
    Invalid(String),
}

impl Config {
    /// The file's values (or the defaults without a file), then the `TICKVAULT_*` variables,
    /// then the flags; checked.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Self, Error> {
        Self::load_with(file, overrides, |k| std::env::var(k).ok())
    }

    /// [`Config::load`] with the environment read through `var` (tests pass a map).
    pub fn load_with(
        file: Option<&Path>,
        overrides: &Overrides,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, Error> {
        let mut config = match file {
            Some(path) => Self::read(path)?,
            None => Config::default(),
        };
        config.override_with(overrides, &var)?;
        config.validate()?;
        Ok(config)
    }

    fn read(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text).map_err(|source| Error::Parse {
            path: path.display().to_string(),
            source: Box::new(source),
        })
    }

    /// What comes after the file, lowest first: the standard `AWS_*` variables (only where the
    /// file leaves an S3 key unset), the `TICKVAULT_*` variables, the flags. The providers'
    /// keys likewise: `TICKVAULT_PROVIDER_<NAME>_<KEY>`, then `--provider NAME.KEY=VALUE`.
    fn override_with(
        &mut self,
        overrides: &Overrides,
        var: &impl Fn(&str) -> Option<String>,
    ) -> Result<(), Error> {
        self.s3.apply_aws_env(var).map_err(Error::Invalid)?;
        for key in KEYS {
            if let Some(text) = var(key.env) {
                (key.apply)(self, &text).map_err(|message| Error::Value {
                    given: format!("{} ({})", key.env, key.file_name()),
                    message,
                })?;
            }
        }
        for (key, text) in overrides.values() {
            (key.apply)(self, text).map_err(|message| Error::Value {
                given: format!("--{} ({})", key.flag, key.file_name()),
                message,
            })?;
        }
        providers::apply(&mut self.providers, var, overrides.providers())
    }

    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    pub fn validate(&self) -> Result<(), Error> {
        self.listen_addr()?;
        if self.max_concurrent_queries == 0 {
            return Err(Error::Invalid(
                "max_concurrent_queries must be at least 1".into(),
            ));
        }
        if self.query_timeout.0.is_nan() || self.query_timeout.0 <= 0.0 {
            return Err(Error::Invalid("query_timeout must be positive".into()));
        }
        for (name, v) in [
            ("transfer_interval", self.transfer_interval),
            ("compact_interval", self.compact_interval),
            ("gc_interval", self.gc_interval),
            ("backfill_interval", self.backfill_interval),
            ("stale_after", self.stale_after),
            ("retry_base", self.retry_base),
            ("retry_max", self.retry_max),
            ("live_interval", self.live_interval),
            ("actions_every", self.actions_every),
        ] {
            if v.0.is_nan() || v.0 <= 0.0 {
                return Err(Error::Invalid(format!("{name} must be positive")));
            }
        }
        // Limits so small that every request they govern fails are mistakes, not settings:
        // `query_memory = 0` accepted every query, then failed every sort.
        for (name, value, least) in [
            (
                "query_memory",
                self.query_memory,
                ByteSize(MIN_QUERY_MEMORY),
            ),
            ("max_body", self.max_body, ByteSize(MIN_MAX_BODY)),
            (
                "live_max_memory",
                self.live_max_memory,
                ByteSize(MIN_LIVE_MEMORY),
            ),
            ("transfer_threshold", self.transfer_threshold, ByteSize(1)),
        ] {
            if value < least {
                return Err(Error::Invalid(format!(
                    "{name} = {value} is below the least useful value, {least}"
                )));
            }
        }
        if self.transfer_threshold > self.live_max_memory {
            return Err(Error::Invalid(format!(
                "transfer_threshold ({}) must not be above live_max_memory ({})",
                self.transfer_threshold, self.live_max_memory
            )));
        }
        if let Some(job) = self.disabled_jobs.iter().find(|j| Job::parse(j).is_none()) {
            return Err(Error::Invalid(format!(
                "disabled_jobs: unknown job {job:?} (jobs: {})",
                Job::names()
            )));
        }
        if let Some(name) = &self.default_provider
            && !self.providers.contains_key(name)
        {
            return Err(Error::Invalid(format!(
                "default_provider = {name:?} is not a configured provider"
            )));
        }
        for (name, p) in &self.providers {
            crate::sync::provider::build(p)
                .map_err(|e| Error::Invalid(format!("providers.{name}: {e}")))?;
        }
        self.s3.validate().map_err(Error::Invalid)?;
        if self.follow_interval.0.is_nan() || self.follow_interval.0 <= 0.0 {
            return Err(Error::Invalid("follow_interval must be positive".into()));
        }
        for (i, t) in self.tokens.iter().enumerate() {
            check_token(&t.token).map_err(|e| {
                let name = t
                    .name
                    .as_deref()
                    .map(|n| format!(" {n:?}"))
                    .unwrap_or_default();
                Error::Invalid(format!(
                    "token {} of {} ({} scope{name}, value ***): {e}",
                    i + 1,
                    self.tokens.len(),
                    t.scope.as_str()
                ))
            })?;
        }
        Ok(())
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, Error> {
        self.listen.parse().map_err(|e| {
            Error::Invalid(format!(
                "listen = {:?} is not an IP:port address ({e})",
                self.listen
            ))
        })
    }

    /// The WAL directory: `wal_dir`, else `_wal` in a local store's directory, else
    /// `./data/_wal` (the WAL is always on local disk).
    pub fn wal_path(&self) -> std::path::PathBuf {
        if let Some(dir) = &self.wal_dir {
            return dir.into();
        }
        match crate::storage::StoreUrl::parse(&self.store) {
            Ok(crate::storage::StoreUrl::Local(path)) => path.join("_wal"),
            _ => std::path::PathBuf::from("./data/_wal"),
        }
    }

    /// How the store is opened for serving: the query memory pool and the live tier (none
    /// for a read-only server).
    pub fn store_options(&self) -> crate::StoreOptions {
        let bytes = |b: ByteSize| usize::try_from(b.0).unwrap_or(usize::MAX);
        let live = (!self.read_only).then(|| crate::live::LiveOptions {
            wal_dir: self.wal_path(),
            max_bytes: bytes(self.live_max_memory),
            transfer_bytes: bytes(self.transfer_threshold),
        });
        crate::StoreOptions {
            query_memory_limit: Some(bytes(self.query_memory)),
            live,
            ..self.command_store_options(self.read_only)
        }
    }

    /// How a command opens the store: no live tier; `read_only` for commands that only read.
    pub fn command_store_options(&self, read_only: bool) -> crate::StoreOptions {
        crate::StoreOptions {
            storage: crate::storage::StoreSettings {
                s3: self.s3.clone(),
                cache_dir: self.cache_dir.as_ref().map(Into::into),
                cache_max_bytes: self.cache_max_bytes.0,
            },
            read_only,
            single_writer: self.single_writer,
            gc_grace: self.gc_grace.duration(),
            ..Default::default()
        }
    }

    /// The stage 2 providers, built from their config tables.
    pub fn providers(&self) -> Result<Vec<crate::sync::syncer::ProviderHandle>, Error> {
        self.providers
            .iter()
            .map(|(name, p)| {
                let adapter = crate::sync::provider::build(p)
                    .map_err(|e| Error::Invalid(format!("providers.{name}: {e}")))?;
                Ok(crate::sync::syncer::ProviderHandle::new(
                    name,
                    adapter,
                    p.policy(),
                ))
            })
            .collect()
    }

    pub fn sync_options(&self) -> crate::sync::syncer::SyncOptions {
        crate::sync::syncer::SyncOptions {
            stale_after: self.stale_after.duration(),
            retry_base: self.retry_base.duration(),
            retry_max: self.retry_max.duration(),
            settle: self.settle.duration(),
            actions_every: self.actions_every.duration(),
            default_provider: self.default_provider.clone(),
            ..Default::default()
        }
    }

    pub fn job_enabled(&self, job: &str) -> bool {
        !self.disabled_jobs.iter().any(|j| j == job)
    }

    /// What the scheduler runs on its own: every enabled job at its interval, following other
    /// processes' commits. (A read-only store runs only the following; the scheduler knows.)
    pub fn scheduler_settings(&self) -> SchedulerSettings {
        let interval = |job| match job {
            Job::Transfer => self.transfer_interval,
            Job::Compact => self.compact_interval,
            Job::Gc => self.gc_interval,
            Job::Backfill => self.backfill_interval,
            Job::Live => self.live_interval,
        };
        SchedulerSettings {
            every: Job::ALL
                .into_iter()
                .filter(|j| self.job_enabled(j.name()))
                .map(|j| (j, interval(j).duration()))
                .collect(),
            backfill_delay: self.backfill_delay.duration(),
            follow: Some(self.follow_interval.duration()),
            gc_grace: self.gc_grace.duration(),
        }
    }

    /// The effective config as TOML with every secret replaced by `***`.
    pub fn to_masked_toml(&self) -> String {
        let mut masked = self.clone();
        for t in &mut masked.tokens {
            t.token = "***".into();
        }
        masked.s3 = masked.s3.masked();
        for p in masked.providers.values_mut() {
            for secret in [&mut p.api_key, &mut p.api_secret] {
                if secret.is_some() {
                    *secret = Some("***".into());
                }
            }
        }
        toml::to_string(&masked).expect("config serializes")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn flags(values: &[(&str, &str)]) -> Overrides {
        let mut overrides = Overrides::default();
        for (key, value) in values {
            overrides.set(key, *value).unwrap();
        }
        overrides
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    /// `tickvault ARGS` with the global flags, a `serve` that takes the server flags and a
    /// `sql` that takes none of its own, as the CLI builds them.
    fn parse_flags(args: &[&str]) -> Result<Overrides, clap::Error> {
        use clap::{Args, FromArgMatches};
        let cmd = GlobalOverrides::augment_args(clap::Command::new("tickvault"))
            .subcommand(Overrides::augment_args(clap::Command::new("serve")))
            .subcommand(clap::Command::new("sql").arg(clap::Arg::new("query")));
        let m =
            cmd.try_get_matches_from(std::iter::once("tickvault").chain(args.iter().copied()))?;
        let mut overrides = GlobalOverrides::from_arg_matches(&m)?.0;
        if let Some(("serve", sub)) = m.subcommand() {
            overrides = overrides.and(&Overrides::from_arg_matches(sub)?);
        }
        Ok(overrides)
    }

    /// The defaults, then `file`, `env` and `flags`, unchecked.
    fn resolve(file: &str, env: &[(&str, &str)], flags: &[&str]) -> Result<Config, Error> {
        let mut c = Config::from_toml(file).unwrap();
        let var = |k: &str| {
            env.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        };
        c.override_with(&parse_flags(flags).unwrap(), &var)?;
        Ok(c)
    }

    #[test]
    fn every_key_is_set_by_the_file_a_variable_and_a_flag() {
        for key in KEYS {
            let sample = key.kind.sample;
            let by_env = resolve("", &[(key.env, sample)], &[]).unwrap();
            assert_ne!(by_env, Config::default(), "{}: sample = default", key.toml);
            assert_eq!((key.show)(&by_env), sample, "{}", key.toml);

            // The file holds only this key, written as serde writes it.
            let written: toml::Table = toml::from_str(&toml::to_string(&by_env).unwrap()).unwrap();
            let mut file = toml::Table::new();
            let (table, name) = match key.toml.split_once('.') {
                Some((table, name)) => (Some(table), name),
                None => (None, key.toml),
            };
            let section = match table {
                Some(t) => written[t].as_table().unwrap(),
                None => &written,
            };
            let value = section
                .get(name)
                .unwrap_or_else(|| panic!("{} is not a key of the file", key.toml))
                .clone();
            match table {
                Some(t) => {
                    let inner = toml::Table::from_iter([(name.to_string(), value)]);
                    file.insert(t.into(), toml::Value::Table(inner));
                }
                None => {
                    file.insert(name.into(), value);
                }
            }
            let by_file = resolve(&toml::to_string(&file).unwrap(), &[], &[]).unwrap();
            assert_eq!(by_file, by_env, "{} by file", key.toml);

            // Server keys after `serve`; the others after any command (global flags).
            let command = match key.commands {
                Commands::Serve => "serve",
                Commands::All => "sql",
            };
            let flag = format!("--{}", key.flag);
            let switch = format!("--{}={sample}", key.flag);
            let args = match key.kind.switch {
                true => vec![command, &switch],
                false => vec![command, &flag, sample],
            };
            assert_eq!(resolve("", &[], &args).unwrap(), by_env, "{args:?}");
        }
    }

    #[test]
    fn keys_follow_the_naming_rule_and_cover_every_field() {
        let mut c = Config::default();
        for key in KEYS {
            let env = format!("TICKVAULT_{}", key.toml.replace('.', "_").to_uppercase());
            assert_eq!(key.env, env, "{}", key.toml);
            let flag = match key.toml {
                "tokens" => "token".to_string(),
                "disabled_jobs" => "disable-job".to_string(),
                t => t.replace(['.', '_'], "-"),
            };
            assert_eq!(key.flag, flag, "{}", key.toml);
            (key.apply)(&mut c, key.kind.sample).unwrap();
        }
        // With every key set, the file written holds exactly the declared keys (and the tables):
        // a field added to Config or S3Config without a declaration fails here.
        let written: toml::Table = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
        let mut fields: Vec<String> = written
            .iter()
            .flat_map(|(name, value)| match (name.as_str(), value) {
                ("s3", toml::Value::Table(t)) => t.keys().map(|k| format!("s3.{k}")).collect(),
                ("providers", _) => vec![],
                _ => vec![name.clone()],
            })
            .collect();
        let mut declared: Vec<String> = KEYS.iter().map(|k| k.toml.to_string()).collect();
        fields.sort();
        declared.sort();
        assert_eq!(fields, declared);
    }

    #[test]
    fn a_flag_beats_a_variable_beats_the_file_beats_the_default() {
        let file = "query_timeout = \"5s\"\ncache_max_bytes = \"1GiB\"\n[s3]\nregion = \"file\"\n";
        let env = [
            ("TICKVAULT_QUERY_TIMEOUT", "6s"),
            ("TICKVAULT_S3_REGION", "env"),
            ("AWS_REGION", "aws"),
            ("AWS_ACCESS_KEY_ID", "aws-key"),
        ];
        let flags = ["serve", "--query-timeout", "7s", "--s3-region", "flag"];
        let c = resolve("", &[], &[]).unwrap();
        assert_eq!((c.query_timeout, c.s3.region), (Seconds(30.0), None));
        let c = resolve(file, &[], &[]).unwrap();
        assert_eq!(c.query_timeout, Seconds(5.0));
        assert_eq!(c.s3.region.as_deref(), Some("file"));
        let c = resolve(file, &env[2..], &[]).unwrap();
        assert_eq!(c.s3.region.as_deref(), Some("file"), "the file beats AWS_*");
        assert_eq!(c.s3.access_key_id.as_deref(), Some("aws-key"), "AWS_* fill");
        let c = resolve("", &env[2..], &[]).unwrap();
        assert_eq!(
            c.s3.region.as_deref(),
            Some("aws"),
            "AWS_* beat the default"
        );
        let c = resolve(file, &env, &[]).unwrap();
        assert_eq!(c.query_timeout, Seconds(6.0));
        assert_eq!(c.s3.region.as_deref(), Some("env"));
        let c = resolve(file, &env, &flags).unwrap();
        assert_eq!(c.query_timeout, Seconds(7.0));
        assert_eq!(c.s3.region.as_deref(), Some("flag"));
        assert_eq!(
            c.cache_max_bytes,
            ByteSize(1 << 30),
            "untouched keys keep the file's"
        );

        // Lists: a repeated flag is the comma list; flags replace the file's and the variable's.
        let file = "[[tokens]]\ntoken = \"f\"\nscope = \"read\"\n";
        let env = [("TICKVAULT_TOKENS", "write:e")];
        let repeated = ["serve", "--token", "read:a", "--token", "write:b"];
        let c = resolve(file, &env, &repeated).unwrap();
        let tokens: Vec<&str> = c.tokens.iter().map(|t| t.token.as_str()).collect();
        assert_eq!(tokens, ["a", "b"]);
        assert_eq!(
            c,
            resolve(file, &env, &["serve", "--token", "read:a,write:b"]).unwrap()
        );
        // A switch alone is true; `=false` turns off what the file turned on.
        let c = resolve("read_only = true\n", &[], &["serve", "--read-only=false"]).unwrap();
        assert!(!c.read_only);
        assert!(
            resolve("", &[], &["serve", "--read-only"])
                .unwrap()
                .read_only
        );
        let c = resolve("read_only = true\n", &[("TICKVAULT_READ_ONLY", "0")], &[]).unwrap();
        assert!(!c.read_only, "a variable turns off what the file turned on");
        // An empty variable unsets an optional key.
        let c = resolve("cache_dir = \"/c\"\n", &[("TICKVAULT_CACHE_DIR", "")], &[]).unwrap();
        assert_eq!(c.cache_dir, None);
    }

    #[test]
    fn bad_values_are_refused_naming_the_key_and_where_it_was_set() {
        let e = resolve("", &[("TICKVAULT_MAX_BODY", "12XB")], &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("TICKVAULT_MAX_BODY (max_body)") && e.contains("12XB"),
            "{e}"
        );
        let e = resolve("", &[("TICKVAULT_S3_PATH_STYLE", "maybe")], &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("TICKVAULT_S3_PATH_STYLE ([s3] path_style)"),
            "{e}"
        );
        let e = resolve("", &[("TICKVAULT_S3_MAX_RETRIES", "2.5")], &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("TICKVAULT_S3_MAX_RETRIES"), "{e}");
        // A token's value is never repeated.
        let e = resolve("", &[("TICKVAULT_TOKENS", "admin:s3cret")], &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("TICKVAULT_TOKENS (tokens)") && !e.contains("s3cret"),
            "{e}"
        );
        // A flag is refused by the command line parser, naming the flag.
        for args in [
            &["serve", "--max-body", "12XB"][..],
            &["sql", "--s3-request-timeout", "soon", "select 1"],
        ] {
            let e = parse_flags(args).unwrap_err().to_string();
            assert!(e.contains(args[1]) && e.contains(args[2]), "{e}");
        }
        let e = Config::load_with(None, &flags(&[("max_body", "12XB")]), no_env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--max-body (max_body)"), "{e}");
        let mut overrides = Overrides::default();
        let e = overrides.set("max_bodyy", "1MiB").unwrap_err().to_string();
        assert!(e.contains("max_bodyy"), "{e}");
        // In the file: the file and the key (unknown keys too, top-level or in [s3]).
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tickvault.toml");
        for (text, key) in [
            ("max_body = \"12XB\"\n", "max_body"),
            ("lisen = \"x\"\n", "lisen"),
            ("[s3]\nendpont = \"x\"\n", "endpont"),
        ] {
            std::fs::write(&path, text).unwrap();
            let e = Config::load_with(Some(&path), &Overrides::default(), no_env)
                .unwrap_err()
                .to_string();
            assert!(
                e.contains(&path.display().to_string()) && e.contains(key),
                "{e}"
            );
        }
    }

    #[test]
    fn s3_flags_after_any_command_reach_the_store_settings() {
        let flags = [
            "sql",
            "--s3-endpoint",
            "http://127.0.0.1:9000",
            "--s3-allow-http",
            "--s3-max-retries",
            "2",
            "--cache-dir",
            "/var/cache/tv",
            "select 1",
        ];
        let overrides = parse_flags(&flags).unwrap();
        let c = Config::load_with(None, &overrides, no_env).unwrap();
        let storage = c.command_store_options(true).storage;
        assert_eq!(
            storage.s3.endpoint.as_deref(),
            Some("http://127.0.0.1:9000")
        );
        assert!(storage.s3.allow_http);
        assert_eq!(storage.s3.max_retries, 2);
        assert_eq!(storage.cache_dir, Some("/var/cache/tv".into()));
        // Server flags belong to `serve`.
        assert!(parse_flags(&["sql", "--listen", "0.0.0.0:1", "select 1"]).is_err());
    }

    #[test]
    fn provider_keys_by_file_variable_and_flag() {
        let keys = providers::keys();
        assert_eq!(keys.len(), 14, "{keys:?}");
        assert!(
            keys.contains(&"kind") && keys.contains(&"breaker_open"),
            "{keys:?}"
        );
        let file = "[providers.yahoo]\nkind = \"yahoo\"\ntimeout = \"5s\"\nmax_retries = 2\n";
        let c = resolve(file, &[], &[]).unwrap();
        assert_eq!(c.providers["yahoo"].timeout, Seconds(5.0));
        let env = [
            ("TICKVAULT_PROVIDER_YAHOO_TIMEOUT", "6s"),
            ("TICKVAULT_PROVIDER_YAHOO_API_KEY", "12345"),
            ("TICKVAULT_PROVIDER_YAHOO_REQUESTS_PER_MINUTE", "60"),
        ];
        let c = resolve(file, &env, &[]).unwrap();
        let yahoo = &c.providers["yahoo"];
        assert_eq!(yahoo.timeout, Seconds(6.0));
        assert_eq!(
            yahoo.api_key.as_deref(),
            Some("12345"),
            "digits stay a string"
        );
        assert_eq!(yahoo.requests_per_minute, Some(60));
        assert_eq!(yahoo.max_retries, 2, "the file's other keys stay");
        let flags = [
            "serve",
            "--provider",
            "yahoo.timeout=7s",
            "--provider",
            "poly.kind=polygon",
            "--provider",
            "poly.base_url=http://127.0.0.1:9",
        ];
        let c = resolve(file, &env, &flags).unwrap();
        assert_eq!(c.providers["yahoo"].timeout, Seconds(7.0));
        let poly = &c.providers["poly"];
        assert_eq!(poly.kind, crate::sync::provider::ProviderKind::Polygon);
        assert_eq!(poly.base_url.as_deref(), Some("http://127.0.0.1:9"));
        assert_eq!(
            poly.max_concurrency, 4,
            "a provider the flags add has the defaults"
        );

        // Refusals name the provider, the key and where it was set.
        let e = resolve(file, &[("TICKVAULT_PROVIDER_YAHOO_TIMEOUT", "soon")], &[])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("TICKVAULT_PROVIDER_YAHOO_TIMEOUT ([providers.yahoo] timeout)"),
            "{e}"
        );
        let e = resolve(
            file,
            &[],
            &["serve", "--provider", "yahoo.max_concurrency=lots"],
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("--provider yahoo.max_concurrency"), "{e}");
        let e = resolve("", &[], &["serve", "--provider", "poly.api_key=k"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("[providers.poly]") && e.contains("kind"), "{e}");
        for bad in ["yahoo.timeot=1s", "yahoo=1", "timeout=1s"] {
            let e = parse_flags(&["serve", "--provider", bad])
                .unwrap_err()
                .to_string();
            assert!(e.contains("--provider") && e.contains(bad), "{e}");
        }
        let mut overrides = Overrides::default();
        overrides.set("providers.yahoo.timeout", "8s").unwrap();
        assert!(overrides.set("providers.yahoo.timeot", "8s").is_err());
        let c = Config::load_with(None, &overrides, no_env);
        assert!(c.unwrap_err().to_string().contains("kind"));
    }

    #[test]
    fn file_then_overrides_and_masked_output() {
        let text = r#"
            store = "/srv/bars"
            listen = "0.0.0.0:9000"
            max_body = "1MiB"
            query_timeout = 5
            cache_dir = "/var/cache/tv"
            [s3]
            endpoint = "http://127.0.0.1:9000"
            allow_http = true
            path_style = true
            access_key_id = "AKIDEXAMPLE"
            secret_access_key = "wJalrXUtnFEMI"
            [[tokens]]
            token = "s3cret"
            scope = "write"
            name = "ops"
        "#;
        let dir = std::env::temp_dir().join(format!("tv-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tickvault.toml");
        std::fs::write(&path, text).unwrap();
        let overrides = flags(&[("query_timeout", "2s")]);
        let c = Config::load_with(Some(&path), &overrides, no_env).unwrap();
        assert_eq!(c.store, "/srv/bars");
        assert_eq!(c.max_body, ByteSize(1 << 20));
        assert_eq!(c.query_timeout, Seconds(2.0));
        assert_eq!(c.tokens[0].scope, Scope::Write);
        assert_eq!(c.s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(c.s3.path_style);
        let options = c.command_store_options(true);
        assert_eq!(options.storage.cache_dir, Some("/var/cache/tv".into()));
        assert!(options.read_only && options.live.is_none());
        let shown = c.to_masked_toml();
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(!shown.contains("wJalrXUtnFEMI"), "{shown}");
        assert!(
            shown.contains("AKIDEXAMPLE"),
            "the key id is not secret: {shown}"
        );
        assert!(shown.contains("***"));
        assert_eq!(Config::from_toml(&shown).unwrap().listen, "0.0.0.0:9000");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_config_names_the_key() {
        let e = Config::from_toml("listen = 5\n").unwrap_err().to_string();
        assert!(e.contains("listen"), "{e}");
        let e = Config::from_toml("lisen = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("lisen"), "{e}");
        let c = Config {
            listen: "localhost".into(),
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("listen"));
        assert!("admin:x".parse::<Token>().is_err());
        assert_eq!("read:abc".parse::<Token>().unwrap().scope, Scope::Read);
    }

    #[test]
    fn tokens_that_cannot_travel_in_a_header_are_refused_without_showing_them() {
        for (token, what) in [
            ("ab cd", "whitespace"),
            ("abcd\t", "whitespace"),
            ("ab\u{7f}", "control"),
            ("pässwort", "non-ASCII"),
        ] {
            let mut bad: Token = format!("write:{token}").parse().unwrap();
            bad.name = Some("ci".into());
            let c = Config {
                tokens: vec!["read:fine".parse().unwrap(), bad],
                ..Config::default()
            };
            let e = c.validate().unwrap_err().to_string();
            assert!(
                e.contains("token 2 of 2") && e.contains("\"ci\"") && e.contains(what),
                "{e}"
            );
            assert!(!e.contains(token), "the message shows the token: {e}");
        }
    }

    #[test]
    fn limits_that_would_fail_every_request_are_refused_naming_the_key() {
        for (key, config) in [
            (
                "query_memory",
                Config {
                    query_memory: ByteSize(0),
                    ..Config::default()
                },
            ),
            (
                "max_body",
                Config {
                    max_body: ByteSize(0),
                    ..Config::default()
                },
            ),
            (
                "live_max_memory",
                Config {
                    live_max_memory: ByteSize(0),
                    transfer_threshold: ByteSize(0),
                    ..Config::default()
                },
            ),
        ] {
            let e = config.validate().unwrap_err().to_string();
            assert!(e.contains(key), "{key}: {e}");
        }
        let overrides = flags(&[("query_memory", "0")]);
        let e = Config::load_with(None, &overrides, no_env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("query_memory = 0"), "{e}");
        let smallest = Config {
            query_memory: ByteSize(MIN_QUERY_MEMORY),
            ..Config::default()
        };
        smallest.validate().unwrap();
    }

    #[test]
    fn actions_every_reaches_stage_2() {
        let dir = std::env::temp_dir().join(format!("tv-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("tickvault.toml");
        std::fs::write(&path, "actions_every = \"6h\"\n").unwrap();
        let c = Config::load_with(Some(&path), &Overrides::default(), no_env).unwrap();
        assert_eq!(
            c.sync_options().actions_every,
            Duration::from_secs(6 * 3600)
        );
        let default = Config::default().sync_options().actions_every;
        assert_eq!(default, Duration::from_secs(24 * 3600));
        let overrides = flags(&[("actions_every", "0s")]);
        let e = Config::load_with(Some(&path), &overrides, no_env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("actions_every must be positive"), "{e}");
    }
}
