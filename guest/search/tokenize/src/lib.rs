//! The search engine's second stage: text to words.
//!
//! `tokenize(batch) -> batch`, an ABI v1 Arrow function (docs/abi.md). Input: any columns plus
//! `text` (Utf8, non-null). Output: the same columns plus `tokens` (List<Utf8>, the words of
//! [`wasmlink_search::tokenize`] in order). The text is carried over: the index stores it for
//! snippets and phrase queries.
//!
//! Needs no capabilities at all: its policy grants nothing (examples/search/tokenize.toml).

use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{Field, Schema};
use wasmlink_guest::export;
use wasmlink_search::tokens;

/// Tokenizes the `text` column of a batch (see the crate documentation).
#[export]
pub fn tokenize(batch: RecordBatch) -> Result<RecordBatch, String> {
    let schema = batch.schema();
    let (index, _) = schema
        .column_with_name("text")
        .ok_or("input batch has no `text` column")?;
    let text = batch.column(index);
    let text = text
        .as_string_opt::<i32>()
        .ok_or_else(|| format!("column `text` is {}, expected Utf8", text.data_type()))?;
    let bytes: usize = text.value_data().len();
    let mut list = ListBuilder::with_capacity(
        StringBuilder::with_capacity(bytes / 6, bytes),
        batch.num_rows(),
    );
    for row in 0..text.len() {
        if text.is_null(row) {
            return Err(format!("row {row}: `text` is null"));
        }
        for word in tokens(text.value(row)) {
            list.values().append_value(word);
        }
        list.append(true);
    }
    let tokens: ArrayRef = Arc::new(list.finish());

    let mut fields: Vec<Field> = Vec::with_capacity(schema.fields().len());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for (i, field) in schema.fields().iter().enumerate() {
        fields.push(field.as_ref().clone());
        columns.push(batch.column(i).clone());
    }
    fields.push(Field::new("tokens", tokens.data_type().clone(), false));
    columns.push(tokens);
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| format!("cannot build the output batch: {e}"))
}
