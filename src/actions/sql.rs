//! `corporate_actions` in SQL (and the rows `actions list` and the HTTP endpoint answer with):
//! built from the table's current version each time it is scanned.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, Date32Array, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use chrono::NaiveDate;

use super::{ActionsTable, CorporateAction};
use crate::model::ts_type;
use crate::query::QueryEngine;
use crate::query::snapshot_table::SnapshotTable;

/// The table's name in SQL.
pub const TABLE: &str = "corporate_actions";

pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("symbol", DataType::Utf8, false),
        Field::new("ex_date", DataType::Date32, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("ratio", DataType::Float64, true),
        Field::new("amount", DataType::Float64, true),
        Field::new("source", DataType::Utf8, false),
        Field::new("recorded_at", ts_type(), false),
    ]))
}

fn days_since_epoch(d: NaiveDate) -> i32 {
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
    (d - epoch).num_days() as i32
}

/// The rows of `events`, in the order given.
pub fn batch<'a>(events: impl IntoIterator<Item = &'a CorporateAction>) -> RecordBatch {
    let events: Vec<&CorporateAction> = events.into_iter().collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(
            events.iter().map(|e| e.symbol.as_str()),
        )),
        Arc::new(Date32Array::from_iter_values(
            events.iter().map(|e| days_since_epoch(e.ex_date)),
        )),
        Arc::new(StringArray::from_iter_values(
            events.iter().map(|e| e.kind.as_str()),
        )),
        Arc::new(Float64Array::from_iter(events.iter().map(|e| e.ratio))),
        Arc::new(Float64Array::from_iter(events.iter().map(|e| e.amount))),
        Arc::new(StringArray::from_iter_values(
            events.iter().map(|e| e.source.as_str()),
        )),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(events.iter().map(|e| e.recorded_at))
                .with_timezone("UTC"),
        ),
    ];
    RecordBatch::try_new(schema(), columns).expect("columns match the schema")
}

/// Registers `corporate_actions`, read from `table`'s current version at each query.
pub fn register(engine: &QueryEngine, table: &Arc<ActionsTable>) -> datafusion::error::Result<()> {
    let table = Arc::clone(table);
    engine.context().register_table(
        TABLE,
        Arc::new(SnapshotTable::new(
            schema(),
            Box::new(move || batch(table.snapshot().iter())),
        )),
    )?;
    Ok(())
}
