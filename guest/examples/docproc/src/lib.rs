//! The seed study's document processor, re-done on the wasmlink guest SDK.
//!
//! Input batch: `id: Int64, title: Utf8, content: Utf8, timestamp: Timestamp(Millisecond, None),
//! metadata: Map<Utf8, Utf8>`. Output batch: `id: Int64, title: Utf8` (trimmed),
//! `word_count: Int64` (whitespace-separated words of content), `content_length: Int64` (UTF-8
//! bytes of content), `tag_count: Int64` (metadata entries), `year: Int32` (UTC year of the
//! timestamp). A null input gives a null output in the columns derived from it.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::TimestampMillisecondType;
use arrow_array::{Array, ArrayRef, Int32Array, Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema, TimeUnit};
use chrono::Datelike;
use wasmlink_guest::export;

/// A column of `batch` by name, checked against the type it must have.
fn column<'a>(
    batch: &'a RecordBatch,
    name: &str,
    expected: &str,
    ok: impl Fn(&DataType) -> bool,
) -> Result<&'a ArrayRef, String> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| format!("input batch has no `{name}` column"))?;
    if !ok(column.data_type()) {
        return Err(format!(
            "column `{name}` is {}, expected {expected}",
            column.data_type()
        ));
    }
    Ok(column)
}

/// Processes one batch of documents (see the crate documentation).
#[export]
pub fn process(batch: RecordBatch) -> Result<RecordBatch, String> {
    let id = column(&batch, "id", "Int64", |t| *t == DataType::Int64)?;
    let title = column(&batch, "title", "Utf8", |t| *t == DataType::Utf8)?.as_string::<i32>();
    let content = column(&batch, "content", "Utf8", |t| *t == DataType::Utf8)?.as_string::<i32>();
    let timestamp = column(&batch, "timestamp", "Timestamp(Millisecond, None)", |t| {
        *t == DataType::Timestamp(TimeUnit::Millisecond, None)
    })?
    .as_primitive::<TimestampMillisecondType>();
    let metadata = column(&batch, "metadata", "Map<Utf8, Utf8>", |t| {
        matches!(t, DataType::Map(..))
    })?
    .as_map();

    let titles: StringArray = title.iter().map(|t| t.map(str::trim)).collect();
    let word_count: Int64Array = content
        .iter()
        .map(|c| c.map(|c| c.split_whitespace().count() as i64))
        .collect();
    let content_length: Int64Array = content.iter().map(|c| c.map(|c| c.len() as i64)).collect();
    let offsets = metadata.value_offsets();
    let tag_count: Int64Array = (0..metadata.len())
        .map(|i| {
            metadata
                .is_valid(i)
                .then(|| i64::from(offsets[i + 1] - offsets[i]))
        })
        .collect();
    let mut year = Vec::with_capacity(timestamp.len());
    for (row, ts) in timestamp.iter().enumerate() {
        year.push(match ts {
            None => None,
            Some(ms) => Some(
                arrow_array::temporal_conversions::timestamp_ms_to_datetime(ms)
                    .ok_or_else(|| format!("row {row}: timestamp {ms} ms is out of range"))?
                    .year(),
            ),
        });
    }

    let schema = Schema::new(vec![
        Field::new("id", DataType::Int64, true),
        Field::new("title", DataType::Utf8, true),
        Field::new("word_count", DataType::Int64, true),
        Field::new("content_length", DataType::Int64, true),
        Field::new("tag_count", DataType::Int64, true),
        Field::new("year", DataType::Int32, true),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            id.clone(),
            Arc::new(titles),
            Arc::new(word_count),
            Arc::new(content_length),
            Arc::new(tag_count),
            Arc::new(Int32Array::from(year)),
        ],
    )
    .map_err(|e| format!("cannot build the output batch: {e}"))
}
