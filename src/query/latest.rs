//! The `latest` table: the newest price per symbol that reached the live tier, with the bar it
//! came from.

use std::sync::{Arc, LazyLock};

use arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::snapshot_table::SnapshotTable;
use crate::live::Live;
use crate::model::{COL_TIMEFRAME, ts_type};

pub(super) static LATEST_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("symbol", DataType::Utf8, false),
        Field::new("ts", ts_type(), false),
        Field::new("price", DataType::Float64, false),
        Field::new(COL_TIMEFRAME, DataType::Utf8, false),
        Field::new("open", DataType::Float64, false),
        Field::new("high", DataType::Float64, false),
        Field::new("low", DataType::Float64, false),
        Field::new("close", DataType::Float64, false),
        Field::new("volume", DataType::Float64, false),
        Field::new("updated_at", ts_type(), false),
    ]))
});

/// The `latest` table: rebuilt from the live tier at each scan.
pub(super) fn table(live: Option<Arc<Live>>) -> SnapshotTable {
    SnapshotTable::new(
        LATEST_SCHEMA.clone(),
        Box::new(move || batch(live.as_deref())),
    )
}

fn batch(live: Option<&Live>) -> RecordBatch {
    let mut rows: Vec<(String, crate::live::Latest)> = match live {
        Some(live) => live
            .read()
            .latest
            .iter()
            .map(|(s, l)| (s.as_str().to_string(), l.clone()))
            .collect(),
        None => Vec::new(),
    };
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let f64s = |f: fn(&crate::live::Latest) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(
            rows.iter().map(|(_, l)| f(l)),
        ))
    };
    let times = |f: fn(&crate::live::Latest) -> i64| -> ArrayRef {
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(rows.iter().map(|(_, l)| f(l)))
                .with_timezone("UTC"),
        )
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(rows.iter().map(|(s, _)| s))),
        times(|l| l.ts),
        f64s(|l| l.close),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|(_, l)| l.interval.as_str()),
        )),
        f64s(|l| l.open),
        f64s(|l| l.high),
        f64s(|l| l.low),
        f64s(|l| l.close),
        f64s(|l| l.volume),
        times(|l| l.updated_at),
    ];
    RecordBatch::try_new(LATEST_SCHEMA.clone(), columns).expect("columns match the schema")
}
