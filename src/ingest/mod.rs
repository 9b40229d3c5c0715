//! Bodies of `POST /v1/write`: NDJSON, CSV or an Arrow IPC stream, parsed into validated series
//! batches. Any bad row refuses the whole body with its line (or row) and the rule it broke.

pub mod arrow_rows;
pub mod ipc;

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use arrow::compute::concat_batches;
use bytes::Bytes;
use serde::Deserialize;

use crate::batch::{BarBuilder, SeriesBatch, SeriesKey};
use crate::import::{ImportOptions, read_csv_bytes};
use crate::model::time::parse_timestamp;
use crate::model::{Interval, Symbol, either_timeframe};

/// The body formats, by `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    Ndjson,
    Csv,
    Arrow,
}

impl BodyFormat {
    pub const ACCEPTED: &str =
        "application/x-ndjson, text/csv or application/vnd.apache.arrow.stream";

    /// The format of a `Content-Type` value (parameters such as `charset` are ignored).
    pub fn from_content_type(value: &str) -> Option<Self> {
        let essence = value.split(';').next()?.trim().to_ascii_lowercase();
        match essence.as_str() {
            "application/x-ndjson" | "application/ndjson" | "application/jsonl" => {
                Some(Self::Ndjson)
            }
            "text/csv" => Some(Self::Csv),
            "application/vnd.apache.arrow.stream" => Some(Self::Arrow),
            _ => None,
        }
    }
}

/// A body that cannot be written; nothing of it was applied.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BodyError(pub String);

/// Options a CSV body takes from the query string (NDJSON and Arrow rows carry their own).
#[derive(Debug, Clone, Default)]
pub struct CsvParams {
    pub interval: Option<Interval>,
    pub symbol: Option<Symbol>,
}

/// Parses a body into series batches whose rows have all passed the rules (each parser checks
/// them as it reads).
pub fn parse_body(
    format: BodyFormat,
    body: Bytes,
    csv: &CsvParams,
) -> Result<Vec<SeriesBatch>, BodyError> {
    match format {
        BodyFormat::Ndjson => parse_ndjson(&body),
        BodyFormat::Csv => {
            let options = ImportOptions {
                interval: csv.interval.unwrap_or(Interval::D1),
                symbol: csv.symbol.clone(),
                ..ImportOptions::default()
            };
            read_csv_bytes(Path::new("body"), &body, &options).map_err(|e| BodyError(e.to_string()))
        }
        BodyFormat::Arrow => parse_arrow(body),
    }
}

/// A timestamp as NDJSON gives it: RFC 3339 text (or another format the importer reads) or an
/// integer of epoch nanoseconds.
#[derive(Deserialize)]
#[serde(untagged)]
enum TsValue<'a> {
    Nanos(i64),
    #[serde(borrow)]
    Text(Cow<'a, str>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Line<'a> {
    #[serde(borrow)]
    symbol: Cow<'a, str>,
    /// The bar size; `interval`, its old name, is accepted as well.
    #[serde(borrow, default)]
    timeframe: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    interval: Option<Cow<'a, str>>,
    #[serde(borrow)]
    ts: TsValue<'a>,
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    volume: f64,
    #[serde(default)]
    vwap: Option<f64>,
    #[serde(default)]
    trades: Option<i64>,
}

/// One bar per line; blank lines are skipped. Errors name the 1-based line.
pub fn parse_ndjson(body: &[u8]) -> Result<Vec<SeriesBatch>, BodyError> {
    let mut series: HashMap<SeriesKey, BarBuilder> = HashMap::new();
    let mut order: Vec<SeriesKey> = Vec::new();
    let mut last: Option<(String, String, SeriesKey)> = None;
    for (i, raw) in body.split(|&b| b == b'\n').enumerate() {
        let line_no = i + 1;
        let bad = |m: String| BodyError(format!("line {line_no}: {m}"));
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        if raw.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let line: Line = serde_json::from_slice(raw).map_err(|e| bad(e.to_string()))?;
        let timeframe =
            either_timeframe(line.timeframe.as_deref(), line.interval.as_deref()).map_err(bad)?;
        let Some(timeframe) = timeframe else {
            return Err(bad("missing field `timeframe`".into()));
        };
        let key = match &last {
            Some((s, iv, key)) if *s == line.symbol && iv == timeframe => key.clone(),
            _ => {
                let symbol = Symbol::new(&line.symbol).map_err(|e| bad(e.to_string()))?;
                let interval: Interval = timeframe
                    .parse()
                    .map_err(|e: crate::model::Rule| bad(e.to_string()))?;
                let key = SeriesKey { symbol, interval };
                last = Some((line.symbol.to_string(), timeframe.to_string(), key.clone()));
                key
            }
        };
        let ts = match &line.ts {
            TsValue::Nanos(ns) if ns % 1000 == 0 => ns / 1000,
            TsValue::Nanos(ns) => {
                return Err(bad(format!(
                    "ts {ns} (epoch nanoseconds) is finer than a microsecond"
                )));
            }
            TsValue::Text(t) => parse_timestamp(t, chrono_tz::UTC).ok_or_else(|| {
                bad(format!(
                    "cannot parse ts {t:?} (expected RFC 3339 or an integer of epoch nanoseconds)"
                ))
            })?,
        };
        let builder = match series.get_mut(&key) {
            Some(b) => b,
            None => {
                order.push(key.clone());
                series.entry(key.clone()).or_default()
            }
        };
        builder
            .push_checked(
                key.interval,
                ts,
                line.open,
                line.high,
                line.low,
                line.close,
                line.volume,
                line.vwap,
                line.trades,
            )
            .map_err(|rule| bad(rule.to_string()))?;
    }
    Ok(order
        .into_iter()
        .map(|key| {
            let batch = series.remove(&key).expect("builder").finish();
            SeriesBatch { key, batch }
        })
        .collect())
}

/// An Arrow IPC stream in the `bars` schema (vwap and trades may be missing; integer and float
/// types convert to the stored ones exactly). The stream is checked against the body before it
/// is decoded ([`ipc`]); errors name the 1-based row across the stream's batches.
pub fn parse_arrow(body: Bytes) -> Result<Vec<SeriesBatch>, BodyError> {
    let (schema, batches) = ipc::read_stream(body).map_err(|e| BodyError(e.to_string()))?;
    arrow_rows::check_columns(&schema).map_err(|e| BodyError(e.to_string()))?;
    let all = concat_batches(&schema, &batches).map_err(|e| BodyError(e.to_string()))?;
    arrow_rows::split_bars(&all).map_err(|e| BodyError(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ndjson_lines_group_by_series_and_name_bad_lines() {
        let body = br#"{"symbol":"AAPL","timeframe":"1m","ts":"2024-01-02T14:30:00Z","open":1,"high":2,"low":0.5,"close":1.5,"volume":10}
{"symbol":"MSFT","interval":"1m","ts":1704205860000000000,"open":1,"high":2,"low":0.5,"close":1.5,"volume":10,"vwap":1.2,"trades":4}

{"symbol":"AAPL","interval":"1m","ts":"2024-01-02T14:31:00Z","open":1,"high":2,"low":0.5,"close":1.5,"volume":10}
"#;
        let series = parse_ndjson(body).unwrap();
        assert_eq!(series.len(), 2);
        assert_eq!(series[0].key.symbol.as_str(), "AAPL");
        assert_eq!(series[0].batch.num_rows(), 2);

        let bad = br#"{"symbol":"AAPL","interval":"1m","ts":"2024-01-02T14:30:00Z","open":1,"high":2,"low":0.5,"close":1.5,"volume":10}
{"symbol":"AAPL","interval":"1m","ts":"2024-01-02T14:31:00Z","open":1,"high":0.1,"low":0.5,"close":1.5,"volume":10}"#;
        let e = parse_ndjson(bad).unwrap_err().to_string();
        assert!(e.starts_with("line 2:") && e.contains("high"), "{e}");
        let e = parse_ndjson(br#"{"symbol":"A","interval":"1m","ts":"x"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("line 1:"), "{e}");
        let e = parse_ndjson(br#"{"symbol":"A","timeframe":"2m","ts":0,"open":1,"high":1,"low":1,"close":1,"volume":1}"#)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("line 1: unknown timeframe \"2m\""), "{e}");
        let e = parse_ndjson(br#"{"symbol":"A","interval":"1m","ts":0,"open":1,"high":1,"low":1,"close":1,"volume":1,"clsoe":2}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("clsoe"), "{e}");
    }

    #[test]
    fn ndjson_takes_timeframe_or_its_old_name_interval() {
        let line = |fields: &str| {
            format!(
                r#"{{"symbol":"A",{fields}"ts":0,"open":1,"high":1,"low":1,"close":1,"volume":1}}"#
            )
        };
        let body = [
            line(r#""timeframe":"1m","#),
            line(r#""interval":"1m","#),
            line(r#""timeframe":"1m","interval":"1m","#),
        ]
        .join("\n");
        let series = parse_ndjson(body.as_bytes()).unwrap();
        assert_eq!(series.len(), 1);
        assert_eq!(series[0].key.interval, Interval::M1);
        assert_eq!(series[0].batch.num_rows(), 3);
        let e = parse_ndjson(line(r#""timeframe":"1m","interval":"1d","#).as_bytes())
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "line 1: timeframe \"1m\" and interval \"1d\" disagree (interval is the old name of \
             timeframe; give one)"
        );
        let e = parse_ndjson(line("").as_bytes()).unwrap_err().to_string();
        assert_eq!(e, "line 1: missing field `timeframe`");
    }

    #[test]
    fn content_types() {
        assert_eq!(
            BodyFormat::from_content_type("text/csv; charset=utf-8"),
            Some(BodyFormat::Csv)
        );
        assert_eq!(
            BodyFormat::from_content_type("application/x-ndjson"),
            Some(BodyFormat::Ndjson)
        );
        assert_eq!(BodyFormat::from_content_type("application/json"), None);
    }
}
