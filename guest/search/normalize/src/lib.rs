//! The search engine's third stage: words to index terms.
//!
//! `normalize(batch) -> batch`, an ABI v1 Arrow function (docs/abi.md). Input: any columns plus
//! `tokens` (List<Utf8>, from the tokenize stage). Output: the same columns, except that
//! `tokens` is replaced by `terms` (List<Utf8>): each word lowercased, stop words and overlong
//! words dropped, the rest stemmed (Snowball English), see [`wasmlink_search::Normalizer`].
//!
//! One normaliser (and its cache of recent words) lives as long as the instance, across calls;
//! the cache never changes a result.
//!
//! Needs no capabilities at all: its policy grants nothing (examples/search/normalize.toml).

use std::cell::RefCell;
use std::sync::Arc;

use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::cast::AsArray;
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use wasmlink_guest::export;
use wasmlink_search::Normalizer;

thread_local! {
    static NORMALIZER: RefCell<Normalizer> = RefCell::new(Normalizer::new());
}

/// Normalises the `tokens` column of a batch (see the crate documentation).
#[export]
pub fn normalize(batch: RecordBatch) -> Result<RecordBatch, String> {
    let schema = batch.schema();
    let (index, field) = schema
        .column_with_name("tokens")
        .ok_or("input batch has no `tokens` column")?;
    let list = batch.column(index);
    let list = match field.data_type() {
        DataType::List(item) if *item.data_type() == DataType::Utf8 => list.as_list::<i32>(),
        other => return Err(format!("column `tokens` is {other}, expected List<Utf8>")),
    };
    let words = list.values().as_string::<i32>();
    let offsets = list.value_offsets();
    let mut out = ListBuilder::with_capacity(
        StringBuilder::with_capacity(words.len(), words.value_data().len()),
        batch.num_rows(),
    );
    NORMALIZER.with_borrow_mut(|normalizer| -> Result<(), String> {
        for row in 0..list.len() {
            if list.is_null(row) {
                return Err(format!("row {row}: `tokens` is null"));
            }
            for i in offsets[row] as usize..offsets[row + 1] as usize {
                if words.is_null(i) {
                    return Err(format!("row {row}: a token is null"));
                }
                if let Some(term) = normalizer.term_ref(words.value(i)) {
                    out.values().append_value(term);
                }
            }
            out.append(true);
        }
        Ok(())
    })?;
    let terms: ArrayRef = Arc::new(out.finish());

    let mut fields: Vec<Field> = Vec::with_capacity(schema.fields().len());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for (i, f) in schema.fields().iter().enumerate() {
        if i != index {
            fields.push(f.as_ref().clone());
            columns.push(batch.column(i).clone());
        }
    }
    fields.push(Field::new("terms", terms.data_type().clone(), false));
    columns.push(terms);
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| format!("cannot build the output batch: {e}"))
}
