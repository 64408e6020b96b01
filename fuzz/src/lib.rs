//! Oracles of the fuzz targets, shared by `fuzz_targets/*.rs` (thin: one call each) and by the
//! deterministic smoke tests below, which `cargo test` (from `fuzz/`, no sanitizer) runs on
//! generated inputs, their truncations and bit flips.
//!
//! - [`arrow_stream`]: bytes a guest returns as an Arrow IPC stream, through the host's
//!   validating decoder (`wasmlink_host::exchange::decode_stream`, and `read_ipc` for the file
//!   format): never a panic; an error has a one-line message; decoded batches are consistent and
//!   survive an encode/decode round trip unchanged.
//! - [`pipeline_toml`]: pipeline TOML text through `PipelineSpec::from_toml`: never a panic; an
//!   error is one line and names the file.

use std::path::Path;

use arrow_buffer::Buffer;
use wasmlink_host::exchange::{decode_stream, encode_stream, read_ipc};
use wasmlink_host::plugin::{HostConfig, PluginHost};
use wasmlink_pipeline::PipelineSpec;

/// The name pipeline errors must carry.
pub const TOML_ORIGIN: &str = "fuzz.toml";

/// Decodes `data` as a guest's Arrow IPC stream (and as IPC bytes in either format).
pub fn arrow_stream(data: &[u8]) {
    match decode_stream(Buffer::from(data)) {
        Ok(batches) => {
            for b in &batches {
                for c in b.columns() {
                    assert_eq!(
                        c.len(),
                        b.num_rows(),
                        "a column's length is not the row count"
                    );
                }
            }
            // What the host accepted, it can hand on: encoding and decoding again gives the
            // same batches. (A stream of a schema alone decodes to no batch, which
            // `encode_stream` refuses with `NoBatch`.)
            if batches.is_empty() {
                return one_more(data);
            }
            let bytes = encode_stream(&batches).expect("re-encode accepted batches");
            let again = decode_stream(Buffer::from(bytes)).expect("decode re-encoded batches");
            assert_eq!(batches, again, "round trip changed the batches");
        }
        Err(e) => one_line(&e.to_string()),
    }
    one_more(data);
}

/// The same bytes through `read_ipc`, which also takes the IPC file format.
fn one_more(data: &[u8]) {
    if let Err(e) = read_ipc(data) {
        one_line(&e.to_string());
    }
}

thread_local! {
    static HOST: PluginHost = PluginHost::new(HostConfig {
        pool_slots: 0,
        ..HostConfig::default()
    })
    .expect("plugin host");
}

/// Parses `data` (if UTF-8) as a pipeline file named [`TOML_ORIGIN`] whose relative paths
/// point into a directory that does not exist, so no module is ever loaded from disk.
pub fn pipeline_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let base = Path::new("/nonexistent/wasmlink-fuzz");
    HOST.with(|host| {
        if let Err(e) = PipelineSpec::from_toml(text, TOML_ORIGIN, base, host) {
            let shown = e.to_string();
            one_line(&shown);
            assert!(
                shown.contains(TOML_ORIGIN) || shown.contains("/nonexistent/"),
                "error names neither the file nor a path: {shown}"
            );
        }
    });
}

fn one_line(shown: &str) {
    assert!(!shown.trim().is_empty(), "empty error message");
    assert!(
        !shown.trim_end().contains('\n'),
        "error of several lines: {shown}"
    );
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Int32Array, RecordBatch, StringArray};
    use arrow_schema::{DataType, Field, Schema};

    use super::*;

    fn stream() -> Vec<u8> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int32, true),
            Field::new("s", DataType::Utf8, false),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int32Array::from(vec![Some(1), None, Some(3)])),
                Arc::new(StringArray::from(vec!["a", "bc", ""])),
            ],
        )
        .unwrap();
        encode_stream(&[batch.clone(), batch]).unwrap()
    }

    /// Every truncation and every single-bit flip of a valid stream.
    #[test]
    fn arrow_stream_smoke() {
        let good = stream();
        arrow_stream(&good);
        for n in 0..good.len() {
            arrow_stream(&good[..n]);
        }
        for i in 0..good.len() * 8 {
            let mut bad = good.clone();
            bad[i / 8] ^= 1 << (i % 8);
            arrow_stream(&bad);
        }
    }

    const TOMLS: &[&str] = &[
        "",
        "queue-depth = 2\n[source]\npath = \"in.jsonl\"\n[sink]\npath = \"out.jsonl\"\n\
         [[stage]]\nname = \"a\"\nmodule = \"a.wasm\"\nfunction = \"f\"\nworkers = 2\n",
        "[source]\nglob = \"[\"\n",
        "queue-depth = -1\n",
        "bogus = 1\n",
        "[[stage]]\nworkers = 18446744073709551615\n",
    ];

    /// Sample pipeline files, each truncated at every character boundary.
    #[test]
    fn pipeline_toml_smoke() {
        for text in TOMLS {
            for (i, _) in text.char_indices().chain([(text.len(), ' ')]) {
                pipeline_toml(text[..i].as_bytes());
            }
        }
    }
}
