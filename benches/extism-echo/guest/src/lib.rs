//! An Extism plug-in for the echo benchmark (`benches/echo.rs`).
//!
//! `echo` is the idiomatic form from the extism-pdk documentation: `#[plugin_fn]` turns
//! `echo(Vec<u8>)` into an export that reads the call's input from the Extism kernel
//! (`extism_pdk::input()`, which calls the kernel's `input_load_u64` once per 8 bytes) and
//! makes its return value the call's output (`Memory::from_bytes`: the kernel's `alloc`, then
//! `store_u64` once per 8 bytes).
//!
//! The two other exports split that cost for the benchmark:
//! - `input_len` reads the input the same way but returns only its length (8 bytes, LE);
//! - `noop` reads nothing, so a call of it costs the host's copy of the input into the
//!   kernel's memory plus Extism's call overhead.

use extism_pdk::*;

/// Returns the call's input as its output.
#[plugin_fn]
pub fn echo(input: Vec<u8>) -> FnResult<Vec<u8>> {
    Ok(input)
}

/// Reads the call's input and returns its length as 8 little-endian bytes.
#[plugin_fn]
pub fn input_len(input: Vec<u8>) -> FnResult<Vec<u8>> {
    Ok((input.len() as u64).to_le_bytes().to_vec())
}

/// Returns at once, without reading the input or setting an output.
#[unsafe(no_mangle)]
pub extern "C" fn noop() -> i32 {
    0
}
