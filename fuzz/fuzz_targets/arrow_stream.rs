//! Fuzz target: bytes a guest returns as an Arrow IPC stream, through the host's validating
//! decoder. Oracle: `wasmlink_fuzz::arrow_stream`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wasmlink_fuzz::arrow_stream(data));
