//! Stage 2 in the Prometheus text format: per provider, requests, errors, retries, throttled
//! answers, rate-limit waits and circuit state; per tracked series, its freshness lag; jobs.

use std::fmt::Write;

use super::App;
use super::metrics::{escape as label, header};
use crate::sync::scheduler::{Job, JobState};
use crate::sync::upstream::UpstreamStats;

/// Reads one counter out of a provider's stats, or out of a job's.
type StatFn = fn(&UpstreamStats) -> f64;
type JobFn = fn(&JobState) -> u64;

pub(super) fn render(app: &App) -> String {
    let mut out = String::new();
    let Ok(syncer) = app.syncer() else {
        return out;
    };
    let stats: Vec<_> = syncer.providers().map(|p| p.upstream.stats()).collect();
    let counters: [(&str, &str, StatFn); 7] = [
        (
            "tickvault_provider_requests_total",
            "HTTP requests sent.",
            |s| s.requests as f64,
        ),
        (
            "tickvault_provider_errors_total",
            "Failed requests (after which a retry may follow).",
            |s| s.errors as f64,
        ),
        (
            "tickvault_provider_retries_total",
            "Requests retried.",
            |s| s.retries as f64,
        ),
        (
            "tickvault_provider_throttled_total",
            "429 and 503 answers.",
            |s| s.throttled as f64,
        ),
        (
            "tickvault_provider_rate_limit_waits_total",
            "Requests that waited for the rate limit.",
            |s| s.rate_limit_waits as f64,
        ),
        (
            "tickvault_provider_circuit_opens_total",
            "Times the circuit breaker opened.",
            |s| s.circuit_opens as f64,
        ),
        (
            "tickvault_provider_bytes_total",
            "Response bytes received.",
            |s| s.bytes as f64,
        ),
    ];
    for (name, help, value) in counters {
        header(&mut out, name, "counter", help);
        for s in &stats {
            let _ = writeln!(
                out,
                "{name}{{provider=\"{}\"}} {}",
                label(&s.provider),
                value(s)
            );
        }
    }
    header(
        &mut out,
        "tickvault_provider_action_requests_total",
        "counter",
        "HTTP requests for corporate actions (also in tickvault_provider_requests_total).",
    );
    for p in syncer.providers() {
        let _ = writeln!(
            out,
            "tickvault_provider_action_requests_total{{provider=\"{}\"}} {}",
            label(&p.name),
            p.action_requests()
        );
    }
    header(
        &mut out,
        "tickvault_provider_circuit_open",
        "gauge",
        "1 while the provider's circuit is open or half-open.",
    );
    for s in &stats {
        let open = u8::from(s.circuit != "closed");
        let _ = writeln!(
            out,
            "tickvault_provider_circuit_open{{provider=\"{}\"}} {open}",
            label(&s.provider)
        );
    }
    header(
        &mut out,
        "tickvault_symbol_freshness_lag_seconds",
        "gauge",
        "Seconds since the tracked series last synced successfully (since it was added, if never).",
    );
    let state = syncer.state();
    let now = syncer.clock().now_micros();
    for ((symbol, interval), status) in &state.status {
        let Some(spec) = state.symbols.get(symbol) else {
            continue;
        };
        let since = status.last_update.unwrap_or(spec.added_at);
        let _ = writeln!(
            out,
            "tickvault_symbol_freshness_lag_seconds{{symbol=\"{}\",timeframe=\"{interval}\"}} {}",
            label(symbol.as_str()),
            (now - since).max(0) as f64 / 1e6
        );
    }
    let job_counters: [(&str, &str, JobFn); 2] = [
        (
            "tickvault_job_runs_total",
            "Runs of each scheduled job since start.",
            |j| j.runs,
        ),
        (
            "tickvault_job_failures_total",
            "Failed runs of each scheduled job since start.",
            |j| j.failures,
        ),
    ];
    for (name, help, value) in job_counters {
        header(&mut out, name, "counter", help);
        for job in Job::ALL {
            let state = app.job_state(job);
            let _ = writeln!(out, "{name}{{job=\"{}\"}} {}", job.name(), value(&state));
        }
    }
    let _ = writeln!(
        out,
        "# HELP tickvault_quarantined_rows Rows from providers held in quarantine.\n\
         # TYPE tickvault_quarantined_rows gauge\ntickvault_quarantined_rows {}",
        state.quarantine.len()
    );
    out
}
