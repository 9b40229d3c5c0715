//! Prometheus metrics in the text exposition format, kept by hand: a few counters and one
//! latency histogram per route need no framework.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the request latency histogram buckets.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 30.0,
];

#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<RequestKey, u64>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    errors: Mutex<BTreeMap<&'static str, u64>>,
    query_rows: AtomicU64,
    query_bytes: AtomicU64,
    queries_running: AtomicU64,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct RequestKey {
    route: String,
    method: String,
    status: u16,
}

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; LATENCY_BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Store-wide gauges, read at scrape time.
#[derive(Debug, Default)]
pub struct StoreGauges {
    pub files: u64,
    pub bytes: u64,
    pub rows: u64,
    pub series: u64,
    pub uptime_seconds: f64,
    pub query_tasks: u64,
    /// Result cache: answers sent from it, answers computed, bytes held.
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_bytes: u64,
    pub live_rows: u64,
    pub live_bytes: u64,
    pub wal_segments: u64,
    pub wal_bytes: u64,
    pub wal_damaged_segments: u64,
    pub wal_failed: bool,
    pub rows_ingested: u64,
    pub busy_rejections: u64,
    pub ingest_rejected: u64,
    pub transfer: crate::sync::scheduler::JobState,
    pub compact: crate::sync::scheduler::JobState,
}

impl Metrics {
    /// `latency` is the time to the response head; a streamed body may run longer.
    pub fn record_request(&self, route: &str, method: &str, status: u16, latency: Duration) {
        let key = RequestKey {
            route: route.to_string(),
            method: method.to_string(),
            status,
        };
        *self
            .requests
            .lock()
            .expect("metrics lock")
            .entry(key)
            .or_default() += 1;
        let secs = latency.as_secs_f64();
        let mut latency = self.latency.lock().expect("metrics lock");
        let h = latency.entry(route.to_string()).or_default();
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    pub fn record_error(&self, code: &'static str) {
        *self
            .errors
            .lock()
            .expect("metrics lock")
            .entry(code)
            .or_default() += 1;
    }

    pub fn add_query_output(&self, rows: u64, bytes: u64) {
        self.query_rows.fetch_add(rows, Ordering::Relaxed);
        self.query_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn query_started(&self) {
        self.queries_running.fetch_add(1, Ordering::Relaxed);
    }

    pub fn query_ended(&self) {
        self.queries_running.fetch_sub(1, Ordering::Relaxed);
    }

    pub fn queries_running(&self) -> u64 {
        self.queries_running.load(Ordering::Relaxed)
    }

    pub fn render(&self, store: &StoreGauges) -> String {
        let mut out = String::with_capacity(4096);
        let _ = writeln!(
            out,
            "# HELP tickvault_http_requests_total HTTP requests by route, method and status.\n\
             # TYPE tickvault_http_requests_total counter"
        );
        for (k, n) in self.requests.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                out,
                "tickvault_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{}\"}} {n}",
                escape(&k.route),
                k.method,
                k.status
            );
        }
        let _ = writeln!(
            out,
            "# HELP tickvault_http_request_duration_seconds Time to the response head by route.\n\
             # TYPE tickvault_http_request_duration_seconds histogram"
        );
        for (route, h) in self.latency.lock().expect("metrics lock").iter() {
            let route = escape(route);
            for (bound, n) in LATENCY_BUCKETS.iter().zip(h.counts) {
                let _ = writeln!(
                    out,
                    "tickvault_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {n}"
                );
            }
            let _ = writeln!(
                out,
                "tickvault_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}\n\
                 tickvault_http_request_duration_seconds_sum{{route=\"{route}\"}} {}\n\
                 tickvault_http_request_duration_seconds_count{{route=\"{route}\"}} {}",
                h.count, h.sum, h.count
            );
        }
        let _ = writeln!(
            out,
            "# HELP tickvault_errors_total Error responses by code.\n# TYPE tickvault_errors_total counter"
        );
        for (code, n) in self.errors.lock().expect("metrics lock").iter() {
            let _ = writeln!(out, "tickvault_errors_total{{code=\"{code}\"}} {n}");
        }
        let (t, c) = (&store.transfer, &store.compact);
        let scalars: Vec<(&str, &str, &str, String)> = vec![
            (
                "tickvault_query_rows_total",
                "counter",
                "Rows sent in query and bar responses.",
                self.query_rows.load(Ordering::Relaxed).to_string(),
            ),
            (
                "tickvault_query_bytes_total",
                "counter",
                "Bytes sent in query and bar response bodies.",
                self.query_bytes.load(Ordering::Relaxed).to_string(),
            ),
            (
                "tickvault_queries_running",
                "gauge",
                "Queries running now.",
                self.queries_running().to_string(),
            ),
            (
                "tickvault_query_tasks",
                "gauge",
                "Query tasks alive on the query runtime; above queries_running while cancelled \
                 queries wind down.",
                store.query_tasks.to_string(),
            ),
            (
                "tickvault_query_cache_hits_total",
                "counter",
                "SQL answers sent from the result cache.",
                store.cache_hits.to_string(),
            ),
            (
                "tickvault_query_cache_misses_total",
                "counter",
                "SQL answers not in the result cache (computed).",
                store.cache_misses.to_string(),
            ),
            (
                "tickvault_query_cache_bytes",
                "gauge",
                "Bytes of answers the result cache holds.",
                store.cache_bytes.to_string(),
            ),
            (
                "tickvault_catalog_files",
                "gauge",
                "Parquet files in the catalog.",
                store.files.to_string(),
            ),
            (
                "tickvault_catalog_bytes",
                "gauge",
                "Bytes of the Parquet files in the catalog.",
                store.bytes.to_string(),
            ),
            (
                "tickvault_catalog_rows",
                "gauge",
                "Rows in the catalog's Parquet files.",
                store.rows.to_string(),
            ),
            (
                "tickvault_catalog_series",
                "gauge",
                "Stored (symbol, timeframe) series.",
                store.series.to_string(),
            ),
            (
                "tickvault_uptime_seconds",
                "gauge",
                "Seconds since the server started.",
                format!("{:.3}", store.uptime_seconds),
            ),
            (
                "tickvault_live_rows",
                "gauge",
                "Rows in the live tier.",
                store.live_rows.to_string(),
            ),
            (
                "tickvault_live_bytes",
                "gauge",
                "Estimated bytes of the live tier.",
                store.live_bytes.to_string(),
            ),
            (
                "tickvault_wal_segments",
                "gauge",
                "WAL segment files.",
                store.wal_segments.to_string(),
            ),
            (
                "tickvault_wal_bytes",
                "gauge",
                "Bytes of the WAL segments.",
                store.wal_bytes.to_string(),
            ),
            (
                "tickvault_wal_damaged_segments",
                "gauge",
                "Damaged WAL segments kept aside (found at this or an earlier start) until `tickvault wal clear-damage`.",
                store.wal_damaged_segments.to_string(),
            ),
            (
                "tickvault_wal_failed",
                "gauge",
                "1 when the WAL failed and writes are refused.",
                u8::from(store.wal_failed).to_string(),
            ),
            (
                "tickvault_ingest_rows_total",
                "counter",
                "Rows acknowledged by writes.",
                store.rows_ingested.to_string(),
            ),
            (
                "tickvault_ingest_busy_total",
                "counter",
                "Writes refused because the live tier was full.",
                store.busy_rejections.to_string(),
            ),
            (
                "tickvault_ingest_rejected_total",
                "counter",
                "Write requests refused (bad body, bad rows, busy).",
                store.ingest_rejected.to_string(),
            ),
            (
                "tickvault_transfer_runs_total",
                "counter",
                "Transfers of the live tier into Parquet.",
                t.runs.to_string(),
            ),
            (
                "tickvault_transfer_failures_total",
                "counter",
                "Transfers that failed.",
                t.failures.to_string(),
            ),
            (
                "tickvault_transfer_last_rows",
                "gauge",
                "Rows moved by the last transfer.",
                t.last_rows.to_string(),
            ),
            (
                "tickvault_transfer_last_files",
                "gauge",
                "Files written by the last transfer.",
                t.last_files.to_string(),
            ),
            (
                "tickvault_transfer_last_duration_seconds",
                "gauge",
                "Duration of the last transfer.",
                (t.last_duration_ms.unwrap_or(0.0) / 1000.0).to_string(),
            ),
            (
                "tickvault_transfer_last_run_timestamp_seconds",
                "gauge",
                "Unix time the last transfer started.",
                t.last_started.unwrap_or(0.0).to_string(),
            ),
            (
                "tickvault_compaction_runs_total",
                "counter",
                "Compaction runs.",
                c.runs.to_string(),
            ),
            (
                "tickvault_compaction_failures_total",
                "counter",
                "Compaction runs that failed.",
                c.failures.to_string(),
            ),
        ];
        for (name, kind, help, value) in scalars {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        out
    }
}

/// A metric family's `# HELP` and `# TYPE` lines.
pub(super) fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value escaped as the text format requires.
pub(super) fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.record_request("/v1/sql", "GET", 200, Duration::from_micros(800));
        m.record_request("/v1/sql", "GET", 200, Duration::from_millis(40));
        m.record_request("/v1/sql", "POST", 400, Duration::from_millis(2));
        let text = m.render(&StoreGauges::default());
        assert!(text.contains(
            "tickvault_http_requests_total{route=\"/v1/sql\",method=\"GET\",status=\"200\"} 2"
        ));
        assert!(text.contains("_bucket{route=\"/v1/sql\",le=\"0.001\"} 1\n"));
        assert!(text.contains("_bucket{route=\"/v1/sql\",le=\"0.0025\"} 2\n"));
        assert!(text.contains("_bucket{route=\"/v1/sql\",le=\"0.05\"} 3\n"));
        assert!(text.contains("_count{route=\"/v1/sql\"} 3\n"));
    }
}
