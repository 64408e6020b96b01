//! The seed study's greeter, re-done on the wasmlink guest SDK: one greeting in every string
//! convention, an error, and byte and Arrow echoes.
//!
//! The SDK exports `wasmlink_abi_version`, `wasmlink_alloc` and `wasmlink_free`;
//! `export_seed_allocator!` adds `allocate`/`deallocate` for the older conventions.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{ArrayRef, Int64Array, RecordBatch};
use wasmlink_guest::export;

wasmlink_guest::export_seed_allocator!();

fn greeting(name: &str) -> String {
    format!("Hello, {name}!")
}

/// ABI v1: `greet("World")` is `"Hello, World!"`.
#[export]
pub fn greet(name: &str) -> String {
    greeting(name)
}

/// The same in the "seed" convention (`f(ptr, len) -> &(ptr, len)`).
#[export(convention = "seed")]
pub fn greet_seed(name: &str) -> String {
    greeting(name)
}

/// The same in the "cstring" convention (NUL-terminated in and out).
#[export(convention = "cstring")]
pub fn greet_c(name: &str) -> String {
    greeting(name)
}

/// The same in the "ptrlen" convention (`(ptr << 32) | len`).
#[export(convention = "ptrlen")]
pub fn greet_ptrlen(name: String) -> String {
    greeting(&name)
}

/// Always fails: status 1 with "you asked me to fail: INPUT".
#[export]
pub fn fail(input: &str) -> Result<String, String> {
    Err(format!("you asked me to fail: {input}"))
}

/// The input bytes, unchanged.
#[export]
pub fn echo(input: &[u8]) -> Vec<u8> {
    input.to_vec()
}

/// Each input batch, unchanged (decoded without copying, written once to the output stream).
#[export]
pub fn echo_arrow(batch: RecordBatch) -> RecordBatch {
    batch
}

/// Each input batch as a new batch: every column a new array (the input's buffers, not the
/// input's `Arc`s), so the SDK encodes an output stream and the host copies it out (the
/// "copy in, copy out" case of BENCHMARKS.md; `echo_arrow` is the in-place pass-through).
#[export]
pub fn echo_copy_arrow(batch: RecordBatch) -> Result<RecordBatch, String> {
    let columns: Vec<ArrayRef> = batch
        .columns()
        .iter()
        .map(|c| arrow_array::make_array(c.to_data()))
        .collect();
    RecordBatch::try_new(batch.schema(), columns).map_err(|e| e.to_string())
}

/// The ten-line guest of docs/abi.md: doubles the Int64 column `x`.
#[export]
pub fn double(batch: RecordBatch) -> Result<RecordBatch, String> {
    let x = batch
        .column_by_name("x")
        .ok_or("no column `x`")?
        .as_primitive::<Int64Type>();
    let doubled: Int64Array = x.iter().map(|v| v.map(|v| v * 2)).collect();
    RecordBatch::try_from_iter([("x", Arc::new(doubled) as ArrayRef)]).map_err(|e| e.to_string())
}

/// In place: ASCII-uppercases every Utf8 column and negates every Int64 column of the input.
#[export(in_place)]
pub fn shout_in_place(batch: &mut wasmlink_guest::InPlaceBatch) -> Result<(), String> {
    use arrow_schema::DataType;
    let types: Vec<DataType> = batch
        .batch()
        .schema()
        .fields()
        .iter()
        .map(|f| f.data_type().clone())
        .collect();
    for (column, data_type) in types.iter().enumerate() {
        match data_type {
            DataType::Utf8 => batch.string_values_mut(column)?.make_ascii_uppercase(),
            DataType::Int64 => {
                for v in batch.primitive_values_mut::<Int64Type>(column)? {
                    *v = v.wrapping_neg();
                }
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn greets() {
        assert_eq!(super::greet("World"), "Hello, World!");
        assert_eq!(super::fail("x").unwrap_err(), "you asked me to fail: x");
    }
}
