//! Arrow IPC stream bodies, read defensively.
//!
//! arrow-ipc trusts what a stream declares: a flipped bit in a length makes it allocate that
//! length (an abort, not an error), and a few malformed layouts reach its panics. So every
//! message is framed and checked here first, against the body it must come from: metadata and
//! body lengths, each buffer's range and that it holds whole values, each column's row and null
//! counts and validity bitmap, the number of buffers for the column types. Only flat columns of
//! the types a bar can use are accepted (integers, floats, timestamps, text, string views,
//! dictionary-encoded text); compressed bodies are refused (a decompressor can be made to write
//! any amount) and so are delta dictionaries (each would copy the dictionary again). What passes
//! is decoded by arrow-ipc with full validation, zero-copy from the body, so nothing allocated
//! exceeds it.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::buffer::Buffer;
use arrow::datatypes::SchemaRef;
use arrow::ipc::{self, MessageHeader, MetadataVersion};
use bytes::Bytes;

/// A body that is not an Arrow IPC stream this server reads; the message says where and what.
#[derive(Debug, thiserror::Error)]
#[error("not a valid Arrow IPC stream: {0}")]
pub struct IpcError(String);

fn bad(message: impl Into<String>) -> IpcError {
    IpcError(message.into())
}

/// The stream's schema and record batches, decoded from `body`.
pub fn read_stream(body: Bytes) -> Result<(SchemaRef, Vec<RecordBatch>), IpcError> {
    let data = Buffer::from(body);
    let mut reader = Reader {
        data: &data,
        pos: 0,
        message: 0,
    };
    let mut schema: Option<(SchemaRef, Vec<Column>)> = None;
    let mut dictionaries: HashMap<i64, ArrayRef> = HashMap::new();
    let mut batches = Vec::new();
    while let Some((message, body)) = reader.next()? {
        let n = reader.message;
        let at = |e: String| bad(format!("message {n}: {e}"));
        let version = message.version();
        if version < MetadataVersion::V4 || version > MetadataVersion::V5 {
            return Err(at(format!(
                "metadata version {version:?} (this server reads V4 and V5)"
            )));
        }
        match message.header_type() {
            MessageHeader::Schema => {
                if schema.is_some() {
                    return Err(at("a second schema".into()));
                }
                let fb = message
                    .header_as_schema()
                    .ok_or_else(|| at("a schema message without its schema".into()))?;
                let columns = check_schema(fb).map_err(at)?;
                schema = Some((Arc::new(ipc::convert::fb_to_schema(fb)), columns));
            }
            MessageHeader::RecordBatch => {
                let (schema, columns) = schema
                    .as_ref()
                    .ok_or_else(|| at("a record batch before the schema".into()))?;
                let fb = message
                    .header_as_record_batch()
                    .ok_or_else(|| at("a record batch message without its batch".into()))?;
                let layouts: Vec<(&str, Layout)> = columns
                    .iter()
                    .map(|c| (c.name.as_str(), c.layout))
                    .collect();
                check_batch(fb, &layouts, body.len()).map_err(at)?;
                let batch = ipc::reader::read_record_batch(
                    &body,
                    fb,
                    Arc::clone(schema),
                    &dictionaries,
                    None,
                    &version,
                )
                .map_err(|e| at(e.to_string()))?;
                batches.push(batch);
            }
            MessageHeader::DictionaryBatch => {
                let (schema, columns) = schema
                    .as_ref()
                    .ok_or_else(|| at("a dictionary before the schema".into()))?;
                let fb = message
                    .header_as_dictionary_batch()
                    .ok_or_else(|| at("a dictionary message without its batch".into()))?;
                if fb.isDelta() {
                    return Err(at("delta dictionaries are not accepted".into()));
                }
                let id = fb.id();
                let column = columns
                    .iter()
                    .find(|c| c.dictionary.is_some_and(|d| d.id == id))
                    .ok_or_else(|| at(format!("dictionary id {id} is not in the schema")))?;
                let values = column.dictionary.expect("found by its dictionary").values;
                let data = fb
                    .data()
                    .ok_or_else(|| at(format!("dictionary {id} without data")))?;
                check_batch(data, &[(column.name.as_str(), values)], body.len()).map_err(at)?;
                ipc::reader::read_dictionary(&body, fb, schema, &mut dictionaries, &version)
                    .map_err(|e| at(e.to_string()))?;
            }
            other => {
                return Err(at(format!(
                    "a {other:?} message (expected a schema, dictionary or record batch)"
                )));
            }
        }
    }
    let (schema, _) = schema.ok_or_else(|| bad("no schema message"))?;
    Ok((schema, batches))
}

/// Walks the encapsulated messages of a stream: `[0xFFFFFFFF] <i32 length> <flatbuffer
/// Message> <body>`, until the end marker (length 0) or the end of the body.
struct Reader<'a> {
    data: &'a Buffer,
    pos: usize,
    /// The number (from 1) of the message last read, for errors.
    message: usize,
}

const CONTINUATION: [u8; 4] = [0xff; 4];

impl<'a> Reader<'a> {
    fn next(&mut self) -> Result<Option<(ipc::Message<'a>, Buffer)>, IpcError> {
        let data: &'a [u8] = self.data.as_slice();
        if self.pos == data.len() {
            return Ok(None);
        }
        self.message += 1;
        let n = self.message;
        let word = |at: usize| -> Result<[u8; 4], IpcError> {
            data.get(at..at + 4)
                .map(|w| w.try_into().expect("four bytes"))
                .ok_or_else(|| bad(format!("message {n}: the body ends inside its length")))
        };
        let mut at = self.pos;
        let mut prefix = word(at)?;
        if prefix == CONTINUATION {
            at += 4;
            prefix = word(at)?;
        }
        at += 4;
        let meta_len = i32::from_le_bytes(prefix);
        if meta_len == 0 {
            // The end-of-stream marker; what follows it is not read.
            self.pos = data.len();
            return Ok(None);
        }
        let left = data.len() - at;
        let meta_len = usize::try_from(meta_len)
            .ok()
            .filter(|&l| l <= left)
            .ok_or_else(|| {
                bad(format!(
                    "message {n} declares {meta_len} bytes of metadata; the body has {left} left"
                ))
            })?;
        let meta = &data[at..at + meta_len];
        at += meta_len;
        let message = ipc::root_as_message(meta)
            .map_err(|e| bad(format!("message {n}: metadata is not a valid message: {e}")))?;
        let left = data.len() - at;
        let body_len = message.bodyLength();
        let body_len = usize::try_from(body_len)
            .ok()
            .filter(|&l| l <= left)
            .ok_or_else(|| {
                bad(format!(
                    "message {n} declares a body of {body_len} bytes; the body has {left} left"
                ))
            })?;
        let body = self.data.slice_with_length(at, body_len);
        self.pos = at + body_len;
        Ok(Some((message, body)))
    }
}

/// How a column's values are laid out in buffers, for the types accepted, with the width in
/// bytes of the typed buffer (arrow panics on a typed buffer whose length is not a multiple).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Fixed-width values (integers, floats, timestamps): validity, values.
    Fixed(usize),
    /// Strings with offsets of this width: validity, offsets, bytes.
    Offsets(usize),
    /// String views (16 bytes each): validity, views, then a declared number of data buffers.
    View,
    /// Dictionary keys of this width: validity, keys (the values come in dictionary messages).
    Keys(usize),
}

impl Layout {
    /// The buffers a column of this layout takes (a view column adds its data buffers).
    fn buffers(self) -> usize {
        match self {
            Layout::Fixed(_) | Layout::Keys(_) | Layout::View => 2,
            Layout::Offsets(_) => 3,
        }
    }

    /// The width of the typed second buffer (values, offsets, views or keys).
    fn width(self) -> usize {
        match self {
            Layout::Fixed(w) | Layout::Offsets(w) | Layout::Keys(w) => w,
            Layout::View => 16,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Dictionary {
    id: i64,
    values: Layout,
}

#[derive(Debug, Clone)]
struct Column {
    name: String,
    layout: Layout,
    dictionary: Option<Dictionary>,
}

/// Accepts flat columns of integer, float, timestamp or text types (text may be dictionary
/// encoded); anything else (and every shape arrow-ipc would panic on) is refused by name.
fn check_schema(fb: ipc::Schema) -> Result<Vec<Column>, String> {
    if fb.endianness() != ipc::Endianness::Little {
        return Err("big-endian data is not accepted".into());
    }
    let fields = fb.fields().ok_or("the schema has no fields")?;
    let mut columns: Vec<Column> = Vec::with_capacity(fields.len());
    for field in fields.iter() {
        let name = field.name().unwrap_or_default().to_string();
        let refuse = |what: String| {
            format!(
                "column {name:?}: {what} is not accepted (a bar column is an integer, a float, \
                 a timestamp or text)"
            )
        };
        if field.children().is_some_and(|c| !c.is_empty()) {
            return Err(refuse("a nested type".into()));
        }
        let layout = value_layout(&field).map_err(&refuse)?;
        let dictionary = match field.dictionary() {
            None => None,
            Some(d) => {
                let index = d
                    .indexType()
                    .ok_or_else(|| refuse("a dictionary without index type".into()))?;
                if !matches!(index.bitWidth(), 8 | 16 | 32 | 64) {
                    return Err(refuse(format!(
                        "a dictionary index of {} bits",
                        index.bitWidth()
                    )));
                }
                if !matches!(layout, Layout::Offsets(_) | Layout::View) {
                    return Err(refuse("a dictionary of non-text values".into()));
                }
                let id = d.id();
                if let Some(other) = columns.iter().find(|c| {
                    c.dictionary
                        .is_some_and(|o| o.id == id && o.values != layout)
                }) {
                    return Err(format!(
                        "columns {:?} and {name:?} share dictionary {id} with different types",
                        other.name
                    ));
                }
                Some((
                    Dictionary { id, values: layout },
                    index.bitWidth() as usize / 8,
                ))
            }
        };
        columns.push(Column {
            name,
            layout: dictionary.map_or(layout, |(_, width)| Layout::Keys(width)),
            dictionary: dictionary.map(|(d, _)| d),
        });
    }
    Ok(columns)
}

/// The layout of a field's value type, if it is one a bar column can use.
fn value_layout(field: &ipc::Field) -> Result<Layout, String> {
    use ipc::Type;
    let t = field.type_type();
    let missing = || format!("a {t:?} type without its parameters");
    Ok(match t {
        Type::Int => {
            let int = field.type_as_int().ok_or_else(missing)?;
            if !matches!(int.bitWidth(), 8 | 16 | 32 | 64) {
                return Err(format!("an integer of {} bits", int.bitWidth()));
            }
            Layout::Fixed(int.bitWidth() as usize / 8)
        }
        Type::FloatingPoint => {
            let float = field.type_as_floating_point().ok_or_else(missing)?;
            match float.precision() {
                ipc::Precision::HALF => Layout::Fixed(2),
                ipc::Precision::SINGLE => Layout::Fixed(4),
                ipc::Precision::DOUBLE => Layout::Fixed(8),
                other => return Err(format!("a float of precision {other:?}")),
            }
        }
        Type::Timestamp => {
            let ts = field.type_as_timestamp().ok_or_else(missing)?;
            if !ipc::TimeUnit::ENUM_VALUES.contains(&ts.unit()) {
                return Err(format!("a timestamp in unit {:?}", ts.unit()));
            }
            Layout::Fixed(8)
        }
        Type::Utf8 => Layout::Offsets(4),
        Type::LargeUtf8 => Layout::Offsets(8),
        Type::Utf8View => Layout::View,
        other => return Err(format!("type {other:?}")),
    })
}

/// Checks a record batch's nodes and buffers against the columns it must hold and the body it
/// points into, before arrow-ipc reads them.
fn check_batch(
    fb: ipc::RecordBatch,
    columns: &[(&str, Layout)],
    body_len: usize,
) -> Result<(), String> {
    if fb.compression().is_some() {
        return Err(
            "compressed record batches are not accepted; send the stream uncompressed".into(),
        );
    }
    let rows = fb.length();
    // Every accepted type stores at least one byte a row (bit-packed validity aside).
    if rows < 0 || rows as u64 > body_len as u64 {
        return Err(format!(
            "a batch of {rows} rows in a body of {body_len} bytes"
        ));
    }
    let nodes = fb.nodes().ok_or("a record batch without field nodes")?;
    let buffers = fb.buffers().ok_or("a record batch without buffers")?;
    let variadic: Vec<i64> = fb
        .variadicBufferCounts()
        .map(|v| v.iter().collect())
        .unwrap_or_default();
    if nodes.len() != columns.len() {
        return Err(format!(
            "{} field nodes for {} columns",
            nodes.len(),
            columns.len()
        ));
    }
    let views = columns.iter().filter(|c| c.1 == Layout::View).count();
    if variadic.len() != views {
        return Err(format!(
            "{} variadic buffer counts for {views} string view columns",
            variadic.len()
        ));
    }
    let mut expected = 0usize;
    let mut counts = variadic.iter();
    for (_, layout) in columns {
        expected += layout.buffers();
        if *layout == Layout::View {
            let extra = *counts.next().expect("one count a view column");
            expected += usize::try_from(extra)
                .ok()
                .filter(|&e| e <= buffers.len())
                .ok_or_else(|| format!("a string view column with {extra} data buffers"))?;
        }
    }
    if buffers.len() != expected {
        return Err(format!(
            "{} buffers where the columns need {expected}",
            buffers.len()
        ));
    }
    for (i, b) in buffers.iter().enumerate() {
        let end = b.offset().checked_add(b.length());
        if b.offset() < 0 || b.length() < 0 || end.is_none_or(|e| e as u64 > body_len as u64) {
            return Err(format!(
                "buffer {i} at {} of {} bytes lies outside the message body of {body_len} bytes",
                b.offset(),
                b.length()
            ));
        }
    }
    let mut first_buffer = 0usize;
    let mut counts = variadic.iter();
    for (node, (name, layout)) in nodes.iter().zip(columns) {
        if node.length() != rows {
            return Err(format!(
                "column {name:?} has {} rows in a batch of {rows}",
                node.length()
            ));
        }
        if !(0..=rows).contains(&node.null_count()) {
            return Err(format!(
                "column {name:?} declares {} nulls in {rows} rows",
                node.null_count()
            ));
        }
        let validity = buffers.get(first_buffer).length() as u64;
        if node.null_count() > 0 && validity * 8 < rows as u64 {
            return Err(format!(
                "column {name:?}: a validity bitmap of {validity} bytes for {rows} rows"
            ));
        }
        let typed = buffers.get(first_buffer + 1).length() as u64;
        if !typed.is_multiple_of(layout.width() as u64) {
            return Err(format!(
                "column {name:?}: a buffer of {typed} bytes for values {} bytes wide",
                layout.width()
            ));
        }
        first_buffer += layout.buffers();
        if *layout == Layout::View {
            first_buffer += *counts.next().expect("counted above") as usize;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Float64Array, Int64Array, StringArray, StringViewArray};
    use arrow::datatypes::{Field, Schema};

    fn stream(batch: &RecordBatch) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = ipc::writer::StreamWriter::try_new(&mut out, &batch.schema()).unwrap();
        w.write(batch).unwrap();
        w.write(batch).unwrap();
        w.finish().unwrap();
        drop(w);
        out
    }

    fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
        let fields: Vec<Field> = columns
            .iter()
            .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
            .collect();
        let arrays = columns.into_iter().map(|(_, a)| a).collect();
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).unwrap()
    }

    #[test]
    fn reads_what_arrow_writes() {
        let b = batch(vec![
            (
                "s",
                Arc::new(StringArray::from(vec![Some("a"), None, Some("c")])),
            ),
            (
                "v",
                Arc::new(StringViewArray::from(vec![
                    "x",
                    "longer than twelve bytes",
                    "y",
                ])),
            ),
            (
                "f",
                Arc::new(Float64Array::from(vec![Some(1.0), None, Some(3.0)])),
            ),
            ("i", Arc::new(Int64Array::from(vec![1, 2, 3]))),
        ]);
        let (schema, batches) = read_stream(Bytes::from(stream(&b))).unwrap();
        assert_eq!(schema, b.schema());
        assert_eq!(batches, vec![b.clone(), b]);
    }

    #[test]
    fn refuses_types_a_bar_cannot_use_by_column() {
        let b = batch(vec![(
            "flag",
            Arc::new(arrow::array::BooleanArray::from(vec![true])) as ArrayRef,
        )]);
        let e = read_stream(Bytes::from(stream(&b)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"flag\"") && e.contains("Bool"), "{e}");
        let list = arrow::array::ListArray::from_iter_primitive::<arrow::datatypes::Int32Type, _, _>(
            vec![Some(vec![Some(1)])],
        );
        let b = batch(vec![("l", Arc::new(list) as ArrayRef)]);
        let e = read_stream(Bytes::from(stream(&b)))
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"l\"") && e.contains("nested"), "{e}");
    }

    #[test]
    fn refuses_a_typed_buffer_that_is_not_whole_values() {
        // Offsets of three strings: 16 bytes at 0; claim 15 (arrow would panic on it).
        let b = batch(vec![(
            "s",
            Arc::new(StringArray::from(vec!["a", "bb", "ccc"])) as ArrayRef,
        )]);
        let mut body = stream(&b);
        let mut buffer = [0u8; 16];
        buffer[8..].copy_from_slice(&16i64.to_le_bytes());
        let at: Vec<usize> = (0..body.len() - 16)
            .filter(|&i| body[i..i + 16] == buffer)
            .collect();
        assert_eq!(at.len(), 2, "the offsets buffer of each batch");
        body[at[0] + 8..at[0] + 16].copy_from_slice(&15i64.to_le_bytes());
        let e = read_stream(Bytes::from(body)).unwrap_err().to_string();
        assert!(e.contains("\"s\"") && e.contains("15 bytes"), "{e}");
    }

    #[test]
    fn refuses_truncated_and_empty_bodies() {
        let b = batch(vec![(
            "i",
            Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef,
        )]);
        let full = stream(&b);
        for len in [0, 3, 7, 12, full.len() / 2, full.len() - 9] {
            assert!(
                read_stream(Bytes::copy_from_slice(&full[..len])).is_err(),
                "{len}"
            );
        }
        // Without the end marker the stream still reads (as StreamReader does).
        assert!(read_stream(Bytes::copy_from_slice(&full[..full.len() - 8])).is_ok());
    }
}
