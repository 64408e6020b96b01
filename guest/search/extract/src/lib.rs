//! The search engine's first stage: documents to title and plain text.
//!
//! `extract(batch) -> batch`, an ABI v1 Arrow function (docs/abi.md). Input columns:
//! `path` (Utf8, required: its extension picks HTML, Markdown or plain text, see
//! [`wasmlink_search::DocKind::from_path`]; anything else is read as plain text) and `content`
//! (Binary, LargeBinary, Utf8 or LargeUtf8: the file's bytes). Output: `path`, `title`, `text`
//! (Utf8, non-null), one row per input row, except that HTML pages that only redirect
//! (mdBook's and rustdoc's stubs for moved pages) are dropped. Other input columns are not
//! carried over. A null `path` or `content` is an error naming the row.
//!
//! Needs no capabilities: its policy grants nothing (examples/search/extract.toml).

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use wasmlink_guest::export;
use wasmlink_search::{DocKind, extract as extract_doc, skip_reason, skip_reason_for_path};

/// The bytes of row `row` of a content column, whatever its (supported) type.
fn content_bytes(column: &dyn Array, row: usize) -> &[u8] {
    match column.data_type() {
        DataType::Binary => column.as_binary::<i32>().value(row),
        DataType::LargeBinary => column.as_binary::<i64>().value(row),
        DataType::Utf8 => column.as_string::<i32>().value(row).as_bytes(),
        DataType::LargeUtf8 => column.as_string::<i64>().value(row).as_bytes(),
        _ => &[],
    }
}

/// Extracts every document of a batch (see the crate documentation).
#[export]
pub fn extract(batch: RecordBatch) -> Result<RecordBatch, String> {
    let path = batch
        .column_by_name("path")
        .ok_or("input batch has no `path` column")?;
    let path = path
        .as_string_opt::<i32>()
        .ok_or_else(|| format!("column `path` is {}, expected Utf8", path.data_type()))?;
    let content = batch
        .column_by_name("content")
        .ok_or("input batch has no `content` column")?;
    if !matches!(
        content.data_type(),
        DataType::Binary | DataType::LargeBinary | DataType::Utf8 | DataType::LargeUtf8
    ) {
        return Err(format!(
            "column `content` is {}, expected Binary or Utf8",
            content.data_type()
        ));
    }
    let mut paths = Vec::with_capacity(batch.num_rows());
    let mut titles = Vec::with_capacity(batch.num_rows());
    let mut texts = Vec::with_capacity(batch.num_rows());
    let mut skips = Vec::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        if path.is_null(row) {
            return Err(format!("row {row}: `path` is null"));
        }
        if content.is_null(row) {
            return Err(format!(
                "row {row}: `content` of {:?} is null",
                path.value(row)
            ));
        }
        let p = path.value(row);
        paths.push(p);
        // Path rules first: such a page is not even parsed.
        let reason = skip_reason_for_path(p).or_else(|| {
            let kind = DocKind::from_path(p).unwrap_or(DocKind::Text);
            let doc = extract_doc(content_bytes(content.as_ref(), row), kind);
            let reason = skip_reason(p, &doc);
            if reason.is_none() {
                titles.push(doc.title);
                texts.push(doc.text);
            }
            reason
        });
        match reason {
            Some(r) => {
                titles.push(String::new());
                texts.push(String::new());
                skips.push(r.name());
            }
            None => skips.push(""),
        }
    }
    let schema = Schema::new(vec![
        Field::new("path", DataType::Utf8, false),
        Field::new("title", DataType::Utf8, false),
        Field::new("text", DataType::Utf8, false),
        Field::new("skip", DataType::Utf8, false),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(StringArray::from(paths)),
            Arc::new(StringArray::from(titles)),
            Arc::new(StringArray::from(texts)),
            Arc::new(StringArray::from(skips)),
        ],
    )
    .map_err(|e| format!("cannot build the output batch: {e}"))
}
