//! Fuzz target: pipeline TOML files through `PipelineSpec::from_toml`. Oracle:
//! `wasmlink_fuzz::pipeline_toml`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wasmlink_fuzz::pipeline_toml(data));
