//! WAL payloads: one write's rows as an Arrow IPC stream, one message per series, each with
//! its symbol and interval as constant columns (the `bars` schema).

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;

use crate::batch::{SeriesBatch, SeriesKey};
use crate::model::{BARS_SCHEMA, FILE_SCHEMA, Interval, Symbol};

pub(super) fn encode(series: &[SeriesBatch]) -> Vec<u8> {
    let rows: usize = series.iter().map(|s| s.batch.num_rows()).sum();
    let mut out = Vec::with_capacity(rows * 72 + 1024);
    let mut writer = StreamWriter::try_new(&mut out, &BARS_SCHEMA).expect("in-memory writer");
    for s in series {
        let n = s.batch.num_rows();
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                s.key.symbol.as_str(),
                n,
            ))),
            Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
                s.key.interval.as_str(),
                n,
            ))),
        ];
        columns.extend(s.batch.columns().iter().cloned());
        let batch = RecordBatch::try_new(BARS_SCHEMA.clone(), columns).expect("bars schema");
        writer.write(&batch).expect("in-memory write");
    }
    writer.finish().expect("in-memory finish");
    drop(writer);
    out
}

pub(super) fn decode(payload: &[u8]) -> Result<Vec<SeriesBatch>, String> {
    let reader = StreamReader::try_new(payload, None).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| e.to_string())?;
        if batch.num_rows() == 0 {
            continue;
        }
        let text = |i: usize| -> Result<String, String> {
            let column = batch
                .column(i)
                .as_string_opt::<i32>()
                .ok_or("not a string column")?;
            if column.is_null(0) {
                return Err("null key".into());
            }
            Ok(column.value(0).to_string())
        };
        let symbol = Symbol::stored(&text(0)?).map_err(|e| e.to_string())?;
        let interval: Interval = text(1)?
            .parse()
            .map_err(|e: crate::model::Rule| e.to_string())?;
        let values = RecordBatch::try_new(FILE_SCHEMA.clone(), batch.columns()[2..].to_vec())
            .map_err(|e| e.to_string())?;
        out.push(SeriesBatch {
            key: SeriesKey { symbol, interval },
            batch: values,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::BarBuilder;

    #[test]
    fn round_trips() {
        let mut b = BarBuilder::default();
        b.push_checked(
            Interval::M1,
            60_000_000,
            1.0,
            2.0,
            0.5,
            1.5,
            10.0,
            Some(1.2),
            Some(3),
        )
        .unwrap();
        let series = vec![SeriesBatch {
            key: SeriesKey {
                symbol: Symbol::new("BRK.B").unwrap(),
                interval: Interval::M1,
            },
            batch: b.finish(),
        }];
        let back = decode(&encode(&series)).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].key, series[0].key);
        assert_eq!(back[0].batch, series[0].batch);
    }
}
