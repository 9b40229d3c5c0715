//! The sync state in SQL: `symbols`, `coverage`, `quarantine` and `sync_runs`, built from the
//! in-memory state at each scan.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
    UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::log::SyncLog;
use super::registry::SyncState;
use crate::model::{COL_TIMEFRAME, Symbol, ts_type};
use crate::query::QueryEngine;
use crate::query::snapshot_table::SnapshotTable;

fn ts(values: impl IntoIterator<Item = Option<i64>>) -> ArrayRef {
    Arc::new(TimestampMicrosecondArray::from_iter(values).with_timezone("UTC"))
}

fn strings<S: AsRef<str>>(values: impl IntoIterator<Item = Option<S>>) -> ArrayRef {
    Arc::new(StringArray::from_iter(values))
}

fn u64s(values: impl IntoIterator<Item = u64>) -> ArrayRef {
    Arc::new(UInt64Array::from_iter_values(values))
}

fn f64s(values: impl IntoIterator<Item = Option<f64>>) -> ArrayRef {
    Arc::new(Float64Array::from_iter(values))
}

fn schema(fields: Vec<(&str, DataType, bool)>) -> SchemaRef {
    Arc::new(Schema::new(
        fields
            .into_iter()
            .map(|(n, t, nullable)| Field::new(n, t, nullable))
            .collect::<Vec<_>>(),
    ))
}

fn batch(schema: &SchemaRef, columns: Vec<ArrayRef>) -> RecordBatch {
    RecordBatch::try_new(Arc::clone(schema), columns).expect("columns match the schema")
}

fn symbols_schema() -> SchemaRef {
    schema(vec![
        ("symbol", DataType::Utf8, false),
        (COL_TIMEFRAME, DataType::Utf8, false),
        ("provider", DataType::Utf8, false),
        ("calendar", DataType::Utf8, false),
        ("since", ts_type(), false),
        ("state", DataType::Utf8, false),
        ("last_update", ts_type(), true),
        ("last_bar", ts_type(), true),
        ("last_error", DataType::Utf8, true),
        ("attempts", DataType::UInt64, false),
        ("next_retry", ts_type(), true),
        ("rows_fetched", DataType::UInt64, false),
        ("requests", DataType::UInt64, false),
        ("reads", DataType::UInt64, false),
    ])
}

fn symbols_batch(
    state: &SyncState,
    reads: &HashMap<Symbol, u64>,
    stale_after_us: i64,
    now: i64,
) -> RecordBatch {
    let rows: Vec<_> = state
        .status
        .iter()
        .filter_map(|(id, st)| Some((id, st, state.symbols.get(&id.0)?)))
        .collect();
    batch(
        &symbols_schema(),
        vec![
            strings(rows.iter().map(|(id, _, _)| Some(id.0.as_str()))),
            strings(rows.iter().map(|(id, _, _)| Some(id.1.as_str()))),
            strings(rows.iter().map(|(_, _, spec)| Some(spec.provider.as_str()))),
            strings(rows.iter().map(|(_, _, spec)| Some(spec.calendar.as_str()))),
            ts(rows.iter().map(|(_, _, spec)| Some(spec.since))),
            strings(
                rows.iter()
                    .map(|(_, st, _)| Some(st.effective_state(now, stale_after_us).as_str())),
            ),
            ts(rows.iter().map(|(_, st, _)| st.last_update)),
            ts(rows.iter().map(|(_, st, _)| st.last_bar)),
            strings(rows.iter().map(|(_, st, _)| st.last_error.as_deref())),
            u64s(rows.iter().map(|(_, st, _)| u64::from(st.attempts))),
            ts(rows.iter().map(|(_, st, _)| st.next_retry)),
            u64s(rows.iter().map(|(_, st, _)| st.rows_fetched)),
            u64s(rows.iter().map(|(_, st, _)| st.requests)),
            u64s(
                rows.iter()
                    .map(|(id, _, _)| reads.get(&id.0).copied().unwrap_or(0)),
            ),
        ],
    )
}

fn coverage_schema() -> SchemaRef {
    schema(vec![
        ("symbol", DataType::Utf8, false),
        (COL_TIMEFRAME, DataType::Utf8, false),
        ("start", ts_type(), false),
        ("end", ts_type(), false),
        ("rows", DataType::UInt64, false),
        ("has_data", DataType::Boolean, false),
        ("source", DataType::Utf8, false),
        ("fetched_at", ts_type(), false),
    ])
}

fn coverage_batch(state: &SyncState) -> RecordBatch {
    let rows: Vec<_> = state
        .coverage
        .iter()
        .flat_map(|(id, ranges)| ranges.iter().map(move |c| (id, c)))
        .collect();
    batch(
        &coverage_schema(),
        vec![
            strings(rows.iter().map(|(id, _)| Some(id.0.as_str()))),
            strings(rows.iter().map(|(id, _)| Some(id.1.as_str()))),
            ts(rows.iter().map(|(_, c)| Some(c.start))),
            ts(rows.iter().map(|(_, c)| Some(c.end))),
            u64s(rows.iter().map(|(_, c)| c.rows)),
            Arc::new(BooleanArray::from_iter(
                rows.iter().map(|(_, c)| Some(c.rows > 0)),
            )),
            strings(rows.iter().map(|(_, c)| Some(c.source.as_str()))),
            ts(rows.iter().map(|(_, c)| Some(c.fetched_at))),
        ],
    )
}

fn quarantine_schema() -> SchemaRef {
    schema(vec![
        ("symbol", DataType::Utf8, false),
        (COL_TIMEFRAME, DataType::Utf8, false),
        ("ts", ts_type(), true),
        ("open", DataType::Float64, true),
        ("high", DataType::Float64, true),
        ("low", DataType::Float64, true),
        ("close", DataType::Float64, true),
        ("volume", DataType::Float64, true),
        ("raw", DataType::Utf8, true),
        ("reason", DataType::Utf8, false),
        ("provider", DataType::Utf8, false),
        ("fetched_at", ts_type(), false),
    ])
}

fn quarantine_batch(state: &SyncState) -> RecordBatch {
    let q = &state.quarantine;
    batch(
        &quarantine_schema(),
        vec![
            strings(q.iter().map(|r| Some(r.symbol.as_str()))),
            strings(q.iter().map(|r| Some(r.interval.as_str()))),
            ts(q.iter().map(|r| r.ts)),
            f64s(q.iter().map(|r| r.open)),
            f64s(q.iter().map(|r| r.high)),
            f64s(q.iter().map(|r| r.low)),
            f64s(q.iter().map(|r| r.close)),
            f64s(q.iter().map(|r| r.volume)),
            strings(q.iter().map(|r| r.raw.as_deref())),
            strings(q.iter().map(|r| Some(r.reason.as_str()))),
            strings(q.iter().map(|r| Some(r.provider.as_str()))),
            ts(q.iter().map(|r| Some(r.fetched_at))),
        ],
    )
}

fn runs_schema() -> SchemaRef {
    schema(vec![
        ("job", DataType::Utf8, false),
        ("start", ts_type(), false),
        ("end", ts_type(), false),
        ("duration_ms", DataType::Float64, false),
        ("outcome", DataType::Utf8, false),
        ("rows", DataType::UInt64, false),
        ("requests", DataType::UInt64, false),
        ("error", DataType::Utf8, true),
    ])
}

fn runs_batch(state: &SyncState) -> RecordBatch {
    let r = &state.runs;
    batch(
        &runs_schema(),
        vec![
            strings(r.iter().map(|x| Some(x.job.as_str()))),
            ts(r.iter().map(|x| Some(x.started))),
            ts(r.iter().map(|x| Some(x.finished))),
            f64s(
                r.iter()
                    .map(|x| Some((x.finished - x.started) as f64 / 1000.0)),
            ),
            strings(r.iter().map(|x| Some(x.outcome.as_str()))),
            u64s(r.iter().map(|x| x.rows)),
            u64s(r.iter().map(|x| x.requests)),
            strings(r.iter().map(|x| x.error.as_deref())),
        ],
    )
}

/// Registers the four tables in the engine's SQL context.
pub fn register(
    engine: &QueryEngine,
    log: &Arc<SyncLog>,
    reads: &Arc<Mutex<HashMap<Symbol, u64>>>,
    stale_after_us: i64,
) -> datafusion::error::Result<()> {
    let ctx = engine.context();
    let (l, r) = (Arc::clone(log), Arc::clone(reads));
    ctx.register_table(
        "symbols",
        Arc::new(SnapshotTable::new(
            symbols_schema(),
            Box::new(move || {
                let reads = r.lock().expect("reads lock").clone();
                symbols_batch(&l.state(), &reads, stale_after_us, l.clock().now_micros())
            }),
        )),
    )?;
    let l = Arc::clone(log);
    ctx.register_table(
        "coverage",
        Arc::new(SnapshotTable::new(
            coverage_schema(),
            Box::new(move || coverage_batch(&l.state())),
        )),
    )?;
    let l = Arc::clone(log);
    ctx.register_table(
        "quarantine",
        Arc::new(SnapshotTable::new(
            quarantine_schema(),
            Box::new(move || quarantine_batch(&l.state())),
        )),
    )?;
    let l = Arc::clone(log);
    ctx.register_table(
        "sync_runs",
        Arc::new(SnapshotTable::new(
            runs_schema(),
            Box::new(move || runs_batch(&l.state())),
        )),
    )?;
    Ok(())
}
