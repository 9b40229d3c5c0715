//! Configuration: one TOML file, every key overridable by a `TICKVAULT_*` environment variable
//! and by a flag. Precedence: flag, then environment, then file, then the default.

use std::net::SocketAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use crate::units::{ByteSize, Seconds, parse_duration};

/// The effective configuration of a tickvault process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the store lives: a directory, `file:///abs/path`, `memory://` or `s3://bucket/prefix`.
    pub store: String,
    /// Address `serve` listens on.
    pub listen: String,
    /// Bearer tokens; with none, the server only binds to loopback.
    pub tokens: Vec<Token>,
    /// Largest request body accepted (e.g. `16MiB`).
    pub max_body: ByteSize,
    /// A query running longer than this is cancelled (e.g. `30s`).
    pub query_timeout: Seconds,
    /// Memory one query may use for sorts, joins and aggregations (e.g. `1GiB`).
    pub query_memory: ByteSize,
    /// Queries running at once; more are answered 429.
    pub max_concurrent_queries: usize,
    /// Memory for finished SQL answers sent again while the store is unchanged (`0` turns
    /// the cache off).
    pub query_cache: ByteSize,
    /// The WAL directory (local even when the store is on S3). Default: `_wal` inside a local
    /// store's directory, else `./data/_wal`.
    pub wal_dir: Option<String>,
    /// How often the live tier moves into Parquet (stage 1 of the sync).
    pub transfer_interval: Seconds,
    /// Past this much live data a transfer starts early.
    pub transfer_threshold: ByteSize,
    /// Memory the live tier may hold; past it writes are answered 429 until a transfer frees it.
    pub live_max_memory: ByteSize,
    /// How often partitions with many small files are compacted.
    pub compact_interval: Seconds,
    /// How often files no commit references are deleted (after `gc_grace`).
    pub gc_interval: Seconds,
    pub gc_grace: Seconds,
    /// How often stage 2 (backfill and gap healing) runs, and its first run after start.
    pub backfill_interval: Seconds,
    pub backfill_delay: Seconds,
    /// A tracked series not synced successfully for this long is stale.
    pub stale_after: Seconds,
    /// A failing series is retried after `retry_base`, doubling up to `retry_max`.
    pub retry_base: Seconds,
    pub retry_max: Seconds,
    /// Bars that ended less than this ago and came back empty are asked again next sync
    /// instead of being recorded as known-empty (vendors publish late).
    pub settle: Seconds,
    /// Stage 2 reads a tracked symbol's corporate actions again when it last read them longer
    /// ago than this (and in every sync that fetches Yahoo bars of it: their prices come
    /// split-adjusted and the splits after them make them raw again).
    pub actions_every: Seconds,
    /// How often the newest bars of tracked intraday symbols are fetched into the live tier.
    pub live_interval: Seconds,
    /// Jobs that do not run on their own (still runnable by hand): any of `transfer`,
    /// `compact`, `gc`, `backfill`, `live`.
    pub disabled_jobs: Vec<String>,
    /// The provider for reads that fill symbols nobody registered.
    pub default_provider: Option<String>,
    /// Upstream market-data APIs by name: `[providers.yahoo] kind = "yahoo"`.
    pub providers: crate::sync::settings::Providers,
    /// How to reach an `s3://` store: endpoint, region, credentials, retries.
    pub s3: crate::storage::S3Config,
    /// A local directory caching Parquet files of a remote store (LRU); unset for none.
    pub cache_dir: Option<String>,
    /// The disk cache's budget.
    pub cache_max_bytes: ByteSize,
    /// The operator guarantees a single writer: run even on a store without conditional writes.
    pub single_writer: bool,
    /// Serve as a reader: no writes, no jobs, follow other processes' commits by polling.
    pub read_only: bool,
    /// How often a server polls for catalog commits made by other processes.
    pub follow_interval: Seconds,
}

/// The least `query_memory` accepted: below it even small sorts and aggregations fail.
pub const MIN_QUERY_MEMORY: u64 = 1 << 20;
/// The least `max_body` accepted: room for a small write or a SQL statement.
pub const MIN_MAX_BODY: u64 = 1 << 10;
/// The least `live_max_memory` accepted: room for a few live batches.
pub const MIN_LIVE_MEMORY: u64 = 1 << 20;

/// Jobs the scheduler knows.
pub const JOBS: [&str; 5] = ["transfer", "compact", "gc", "backfill", "live"];

impl Default for Config {
    fn default() -> Self {
        Self {
            store: "./data".into(),
            listen: "127.0.0.1:8080".into(),
            tokens: Vec::new(),
            max_body: ByteSize(16 << 20),
            query_timeout: Seconds(30.0),
            query_memory: ByteSize(1 << 30),
            max_concurrent_queries: 16,
            query_cache: ByteSize(64 << 20),
            wal_dir: None,
            transfer_interval: Seconds(60.0),
            transfer_threshold: ByteSize(128 << 20),
            live_max_memory: ByteSize(512 << 20),
            compact_interval: Seconds(300.0),
            gc_interval: Seconds(3600.0),
            gc_grace: Seconds(3600.0),
            backfill_interval: Seconds(3.0 * 3600.0),
            backfill_delay: Seconds(30.0),
            stale_after: Seconds(3.0 * 3600.0),
            retry_base: Seconds(60.0),
            retry_max: Seconds(3600.0),
            settle: Seconds(3600.0),
            actions_every: Seconds(24.0 * 3600.0),
            live_interval: Seconds(900.0),
            disabled_jobs: Vec::new(),
            default_provider: None,
            providers: Default::default(),
            s3: Default::default(),
            cache_dir: None,
            cache_max_bytes: ByteSize(10 << 30),
            single_writer: false,
            read_only: false,
            follow_interval: Seconds(5.0),
        }
    }
}

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

/// Values given on the command line or in `TICKVAULT_*` variables (clap reads both); `None`
/// leaves the file's value or the default.
#[derive(Debug, Default, Clone, clap::Args)]
pub struct Overrides {
    /// Address to listen on, e.g. 127.0.0.1:8080 (non-loopback needs tokens).
    #[arg(long, env = "TICKVAULT_LISTEN")]
    pub listen: Option<String>,
    /// A bearer token SCOPE:TOKEN (read or write); repeat for several. Replaces the file's tokens.
    #[arg(long = "token", env = "TICKVAULT_TOKENS", value_delimiter = ',')]
    pub tokens: Vec<Token>,
    /// Largest request body, e.g. 16MiB.
    #[arg(long, env = "TICKVAULT_MAX_BODY")]
    pub max_body: Option<ByteSize>,
    /// Query time limit, e.g. 30s.
    #[arg(long, env = "TICKVAULT_QUERY_TIMEOUT")]
    pub query_timeout: Option<Seconds>,
    /// Query memory limit, e.g. 1GiB.
    #[arg(long, env = "TICKVAULT_QUERY_MEMORY")]
    pub query_memory: Option<ByteSize>,
    /// Queries running at once before the server answers 429.
    #[arg(long, env = "TICKVAULT_MAX_CONCURRENT_QUERIES")]
    pub max_concurrent_queries: Option<usize>,
    /// Memory for cached SQL answers, e.g. 64MiB; 0 turns the cache off.
    #[arg(long, env = "TICKVAULT_QUERY_CACHE")]
    pub query_cache: Option<ByteSize>,
    /// WAL directory (local), e.g. /var/lib/tickvault/wal.
    #[arg(long, env = "TICKVAULT_WAL_DIR")]
    pub wal_dir: Option<String>,
    /// How often the live tier moves into Parquet, e.g. 60s.
    #[arg(long, env = "TICKVAULT_TRANSFER_INTERVAL")]
    pub transfer_interval: Option<Seconds>,
    /// Live data that starts a transfer early, e.g. 128MiB.
    #[arg(long, env = "TICKVAULT_TRANSFER_THRESHOLD")]
    pub transfer_threshold: Option<ByteSize>,
    /// Memory cap of the live tier (writes get 429 past it), e.g. 512MiB.
    #[arg(long, env = "TICKVAULT_LIVE_MAX_MEMORY")]
    pub live_max_memory: Option<ByteSize>,
    /// How often small files are compacted, e.g. 5m.
    #[arg(long, env = "TICKVAULT_COMPACT_INTERVAL")]
    pub compact_interval: Option<Seconds>,
    /// How often unreferenced files are deleted, e.g. 1h.
    #[arg(long, env = "TICKVAULT_GC_INTERVAL")]
    pub gc_interval: Option<Seconds>,
    /// How long unreferenced files are kept before GC, e.g. 1h.
    #[arg(long, env = "TICKVAULT_GC_GRACE")]
    pub gc_grace: Option<Seconds>,
    /// How often stage 2 (backfill, gap healing) runs, e.g. 3h.
    #[arg(long, env = "TICKVAULT_BACKFILL_INTERVAL")]
    pub backfill_interval: Option<Seconds>,
    /// Delay of the first stage 2 run after start, e.g. 30s.
    #[arg(long, env = "TICKVAULT_BACKFILL_DELAY")]
    pub backfill_delay: Option<Seconds>,
    /// A series not synced for this long is stale, e.g. 3h.
    #[arg(long, env = "TICKVAULT_STALE_AFTER")]
    pub stale_after: Option<Seconds>,
    /// First retry delay of a failing series, e.g. 1m (doubles each time).
    #[arg(long, env = "TICKVAULT_RETRY_BASE")]
    pub retry_base: Option<Seconds>,
    /// Longest retry delay of a failing series, e.g. 1h.
    #[arg(long, env = "TICKVAULT_RETRY_MAX")]
    pub retry_max: Option<Seconds>,
    /// Empty answers for bars that ended less than this ago are asked again, e.g. 1h.
    #[arg(long, env = "TICKVAULT_SETTLE")]
    pub settle: Option<Seconds>,
    /// Corporate actions of a tracked symbol are read again after this, e.g. 24h.
    #[arg(long, env = "TICKVAULT_ACTIONS_EVERY")]
    pub actions_every: Option<Seconds>,
    /// How often the newest intraday bars are fetched into the live tier, e.g. 15m.
    #[arg(long, env = "TICKVAULT_LIVE_INTERVAL")]
    pub live_interval: Option<Seconds>,
    /// Jobs that do not run on their own: transfer, compact, gc, backfill, live (comma list).
    #[arg(
        long = "disable-job",
        env = "TICKVAULT_DISABLED_JOBS",
        value_delimiter = ','
    )]
    pub disabled_jobs: Vec<String>,
    /// The provider for reads that fill symbols nobody registered.
    #[arg(long, env = "TICKVAULT_DEFAULT_PROVIDER")]
    pub default_provider: Option<String>,
    /// Serve as a reader of a store another process writes: no writes, no jobs, and new
    /// commits are picked up by polling.
    #[arg(long, env = "TICKVAULT_READ_ONLY")]
    pub read_only: bool,
    /// How often a server polls for commits made by other processes (a writer, a CLI import), e.g. 5s.
    #[arg(long, env = "TICKVAULT_FOLLOW_INTERVAL")]
    pub follow_interval: Option<Seconds>,
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
    #[error("config: {0}")]
    Invalid(String),
}

impl Config {
    /// The file's values (or the defaults without a file), then the overrides.
    pub fn load(
        file: Option<&Path>,
        store: Option<&str>,
        overrides: &Overrides,
    ) -> Result<Self, Error> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                Self::from_toml(&text).map_err(|source| Error::Parse {
                    path: path.display().to_string(),
                    source: Box::new(source),
                })?
            }
            None => Config::default(),
        };
        if let Some(store) = store {
            config.store = store.to_string();
        }
        let o = overrides.clone();
        if let Some(v) = o.listen {
            config.listen = v;
        }
        if !o.tokens.is_empty() {
            config.tokens = o.tokens;
        }
        if let Some(v) = o.max_body {
            config.max_body = v;
        }
        if let Some(v) = o.query_timeout {
            config.query_timeout = v;
        }
        if let Some(v) = o.query_memory {
            config.query_memory = v;
        }
        if let Some(v) = o.max_concurrent_queries {
            config.max_concurrent_queries = v;
        }
        if let Some(v) = o.query_cache {
            config.query_cache = v;
        }
        if let Some(v) = o.wal_dir {
            config.wal_dir = Some(v);
        }
        if let Some(v) = o.transfer_interval {
            config.transfer_interval = v;
        }
        if let Some(v) = o.transfer_threshold {
            config.transfer_threshold = v;
        }
        if let Some(v) = o.live_max_memory {
            config.live_max_memory = v;
        }
        if let Some(v) = o.compact_interval {
            config.compact_interval = v;
        }
        let durations = [
            (o.gc_interval, &mut config.gc_interval),
            (o.gc_grace, &mut config.gc_grace),
            (o.backfill_interval, &mut config.backfill_interval),
            (o.backfill_delay, &mut config.backfill_delay),
            (o.stale_after, &mut config.stale_after),
            (o.retry_base, &mut config.retry_base),
            (o.retry_max, &mut config.retry_max),
            (o.live_interval, &mut config.live_interval),
            (o.settle, &mut config.settle),
            (o.actions_every, &mut config.actions_every),
        ];
        for (value, slot) in durations {
            if let Some(v) = value {
                *slot = v;
            }
        }
        if !o.disabled_jobs.is_empty() {
            config.disabled_jobs = o.disabled_jobs;
        }
        if let Some(v) = o.default_provider {
            config.default_provider = Some(v);
        }
        if o.read_only {
            config.read_only = true;
        }
        if let Some(v) = o.follow_interval {
            config.follow_interval = v;
        }
        // Storage settings apply to every command, so they are read here rather than by clap.
        config
            .apply_storage_env(|k| std::env::var(k).ok())
            .map_err(Error::Invalid)?;
        for (name, provider) in &mut config.providers {
            provider.apply_env(name, |k| std::env::var(k).ok());
        }
        config.validate()?;
        Ok(config)
    }

    /// `TICKVAULT_CACHE_DIR`, `TICKVAULT_CACHE_MAX_BYTES`, `TICKVAULT_SINGLE_WRITER` and the
    /// S3 variables (see [`crate::storage::S3Config::apply_env`]).
    pub fn apply_storage_env(
        &mut self,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<(), String> {
        if let Some(v) = var("TICKVAULT_CACHE_DIR") {
            self.cache_dir = (!v.is_empty()).then_some(v);
        }
        if let Some(v) = var("TICKVAULT_CACHE_MAX_BYTES") {
            self.cache_max_bytes = v
                .parse()
                .map_err(|e| format!("TICKVAULT_CACHE_MAX_BYTES: {e}"))?;
        }
        if let Some(v) = var("TICKVAULT_SINGLE_WRITER") {
            self.single_writer = matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes");
        }
        self.s3.apply_env(&var)
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
        if let Some(job) = self
            .disabled_jobs
            .iter()
            .find(|j| !JOBS.contains(&j.as_str()))
        {
            return Err(Error::Invalid(format!(
                "disabled_jobs: unknown job {job:?} (jobs: {})",
                JOBS.join(", ")
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
        let overrides = Overrides {
            query_timeout: Some(Seconds(2.0)),
            ..Default::default()
        };
        let c = Config::load(Some(&path), None, &overrides).unwrap();
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
        let overrides = Overrides {
            query_memory: Some("0".parse().unwrap()),
            ..Default::default()
        };
        let e = Config::load(None, None, &overrides)
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
        let c = Config::load(Some(&path), None, &Overrides::default()).unwrap();
        assert_eq!(
            c.sync_options().actions_every,
            Duration::from_secs(6 * 3600)
        );
        let default = Config::default().sync_options().actions_every;
        assert_eq!(default, Duration::from_secs(24 * 3600));
        let overrides = Overrides {
            actions_every: Some(Seconds(0.0)),
            ..Default::default()
        };
        let e = Config::load(Some(&path), None, &overrides)
            .unwrap_err()
            .to_string();
        assert!(e.contains("actions_every must be positive"), "{e}");
    }
}
