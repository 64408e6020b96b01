//! The search engine's analysis stage: text to index terms, in one module.
//!
//! `analyze(batch) -> batch`, an ABI v1 Arrow function (docs/abi.md). Input: any columns plus
//! `text` (Utf8, non-null). Output: the same columns plus `terms` (List<Utf8>): the words of
//! [`wasmlink_search::tokens`], each lowercased, stop words and overlong words dropped, the rest
//! stemmed (Snowball English, [`wasmlink_search::Normalizer`]). The result is the tokenize
//! module followed by the normalize module, without the list of words between them: as an
//! analyzer in Lucene or Tantivy, one unit turns text into terms. `wasmlink index` runs this
//! module; tokenize and normalize stay for pipelines that put a stage of their own between the
//! two (examples/search/pipeline.toml).
//!
//! One normaliser (and its cache of recent words) lives as long as the instance, across calls;
//! the cache never changes a result.
//!
//! Needs no capabilities at all: its policy grants nothing (examples/search/analyze.toml).

use std::cell::RefCell;
use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{Field, Schema};
use wasmlink_guest::export;
use wasmlink_search::{Normalizer, tokens};

thread_local! {
    static NORMALIZER: RefCell<Normalizer> = RefCell::new(Normalizer::new());
}

/// Analyzes the `text` column of a batch (see the crate documentation).
#[export]
pub fn analyze(batch: RecordBatch) -> Result<RecordBatch, String> {
    let schema = batch.schema();
    let (index, _) = schema
        .column_with_name("text")
        .ok_or("input batch has no `text` column")?;
    let text = batch.column(index);
    let text = text
        .as_string_opt::<i32>()
        .ok_or_else(|| format!("column `text` is {}, expected Utf8", text.data_type()))?;
    let bytes: usize = text.value_data().len();
    // Terms are about a sixth of the text's bytes in words and shorter than the words.
    let mut list = ListBuilder::with_capacity(
        StringBuilder::with_capacity(bytes / 6, bytes / 2),
        batch.num_rows(),
    );
    NORMALIZER.with_borrow_mut(|normalizer| -> Result<(), String> {
        for row in 0..text.len() {
            if text.is_null(row) {
                return Err(format!("row {row}: `text` is null"));
            }
            for word in tokens(text.value(row)) {
                if let Some(term) = normalizer.term_ref(word) {
                    list.values().append_value(term);
                }
            }
            list.append(true);
        }
        Ok(())
    })?;
    let terms: ArrayRef = Arc::new(list.finish());

    let mut fields: Vec<Field> = Vec::with_capacity(schema.fields().len() + 1);
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len() + 1);
    for (i, field) in schema.fields().iter().enumerate() {
        fields.push(field.as_ref().clone());
        columns.push(batch.column(i).clone());
    }
    fields.push(Field::new("terms", terms.data_type().clone(), false));
    columns.push(terms);
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| format!("cannot build the output batch: {e}"))
}

