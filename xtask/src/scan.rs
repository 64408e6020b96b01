//! Finding WebAssembly modules inside an arbitrary binary blob.
//!
//! componentize-py's native extension embeds its wasm shared libraries in two ways:
//!
//! * as zstd frames (`include_bytes!` of `*.so.zst` files), found by scanning for the zstd
//!   frame magic and decompressing each candidate with a bounded streaming decoder;
//! * as raw, uncompressed modules (wit-component's built-in `libdl.so`), found by scanning
//!   for the wasm magic and measuring the module by walking its section headers.
//!
//! Everything here works on untrusted bytes: candidates that fail to decode are skipped,
//! nothing panics, and decompression is capped so that garbage cannot allocate without bound.

use std::io::Read;

use memchr::memmem;
use wasmparser::{Chunk, KnownCustom, Name, Parser, Payload};

/// Magic number that starts every zstd frame (`0xFD2FB528`, little-endian).
pub const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Preamble of a core WebAssembly module: `\0asm` followed by version 1.
pub const WASM_MAGIC: [u8; 8] = *b"\0asm\x01\0\0\0";

/// Default cap on the decompressed size of one zstd frame (64 MiB).
pub const DEFAULT_FRAME_LIMIT: usize = 64 << 20;

/// How an embedded module was stored in the scanned blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// A zstd frame that decompressed to a wasm module.
    Zstd,
    /// The module's bytes appear verbatim.
    Raw,
}

/// A wasm module found inside a blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundModule {
    /// Offset in the blob of the zstd frame or of the raw module.
    pub offset: usize,
    /// How the module was stored.
    pub encoding: Encoding,
    /// The module's bytes (decompressed if needed).
    pub bytes: Vec<u8>,
}

/// What [`inspect_module`] learnt from a module's custom sections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModuleInfo {
    /// Whether the module has a `dylink.0` custom section, i.e. is a shared library.
    pub has_dylink: bool,
    /// The module name from the `name` custom section, if any.
    pub module_name: Option<String>,
}

/// Decompresses every zstd frame in `data` whose output starts with the wasm magic.
///
/// Each occurrence of [`ZSTD_MAGIC`] is tried as the start of a frame. Candidates whose first
/// decompressed bytes are not [`WASM_MAGIC`], that fail to decode, that are truncated, or whose
/// output would exceed `limit` bytes are skipped.
pub fn zstd_wasm_frames(data: &[u8], limit: usize) -> Vec<FoundModule> {
    memmem::find_iter(data, &ZSTD_MAGIC)
        .filter_map(|offset| {
            let bytes = decompress_wasm_frame(&data[offset..], limit)?;
            Some(FoundModule {
                offset,
                encoding: Encoding::Zstd,
                bytes,
            })
        })
        .collect()
}

/// Decompresses the single zstd frame at the start of `frame` (trailing bytes are ignored).
///
/// Returns `None` unless the frame decodes completely to at most `limit` bytes that start with
/// the wasm magic.
fn decompress_wasm_frame(frame: &[u8], limit: usize) -> Option<Vec<u8>> {
    let decoder = zstd::stream::read::Decoder::with_buffer(frame)
        .ok()?
        .single_frame();
    // One byte over the limit tells an over-long output from one that fits exactly.
    let mut reader = decoder.take(u64::try_from(limit).ok()?.saturating_add(1));

    // Look at the first bytes before committing to decompressing the whole frame.
    let mut out = vec![0; WASM_MAGIC.len()];
    reader.read_exact(&mut out).ok()?;
    if out != WASM_MAGIC {
        return None;
    }
    // A truncated or corrupt frame makes the decoder report an error rather than end-of-file.
    reader.read_to_end(&mut out).ok()?;
    (out.len() <= limit).then_some(out)
}

/// Finds every uncompressed core wasm module in `data`.
///
/// Each occurrence of [`WASM_MAGIC`] is measured with [`wasm_module_len`]; candidates with no
/// complete section after the preamble are skipped.
pub fn raw_wasm_modules(data: &[u8]) -> Vec<FoundModule> {
    memmem::find_iter(data, &WASM_MAGIC)
        .filter_map(|offset| {
            let len = wasm_module_len(&data[offset..]);
            (len > WASM_MAGIC.len()).then(|| FoundModule {
                offset,
                encoding: Encoding::Raw,
                bytes: data[offset..offset + len].to_vec(),
            })
        })
        .collect()
}

/// Length of the wasm module at the start of `data`, which may be followed by unrelated bytes.
///
/// Walks the section headers with [`wasmparser::Parser`] and returns the end of the last section
/// that parsed, so the walk stops at the first byte that does not start a known (id <= 13),
/// in-order section lying entirely within `data`. Returns 0 if `data` does not start with a module preamble.
pub fn wasm_module_len(data: &[u8]) -> usize {
    if !data.starts_with(&WASM_MAGIC) {
        return 0;
    }
    let mut parser = Parser::new(0);
    let mut offset = 0;
    let mut end = 0;
    while offset < data.len() {
        let (consumed, payload) = match parser.parse(&data[offset..], true) {
            Ok(Chunk::Parsed { consumed, payload }) => (consumed, payload),
            // Unreachable with `eof == true`; stop rather than loop.
            Ok(Chunk::NeedMoreData(_)) | Err(_) => break,
        };
        offset += consumed;
        match payload {
            Payload::Version { .. } => end = offset,
            Payload::CodeSectionStart { range, .. } => {
                // Jump over the function bodies: only the section's extent matters here.
                parser.skip_section();
                offset = range.end;
                end = range.end;
            }
            // wasmparser reports section ids it does not know (> 13) as unknown sections rather
            // than errors; for us they mark the end of the module.
            Payload::UnknownSection { .. } | Payload::End(_) => break,
            other => {
                if let Some((_, range)) = other.as_section() {
                    end = range.end;
                }
            }
        }
    }
    end
}

/// Reads a module's `dylink.0` and `name` custom sections.
///
/// Parsing stops quietly at the first malformed section; whatever was learnt before is returned.
pub fn inspect_module(module: &[u8]) -> ModuleInfo {
    let mut info = ModuleInfo::default();
    for payload in Parser::new(0).parse_all(module) {
        let Ok(payload) = payload else { break };
        let Payload::CustomSection(section) = payload else {
            continue;
        };
        match section.as_known() {
            KnownCustom::Dylink0(_) => info.has_dylink = true,
            KnownCustom::Name(names) => {
                for name in names.into_iter().map_while(Result::ok) {
                    if let Name::Module { name, .. } = name {
                        info.module_name = Some(name.to_owned());
                    }
                }
            }
            _ => {}
        }
    }
    info
}

/// Whether `needle` occurs in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    memmem::find(haystack, needle).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Appends `value` as unsigned LEB128.
    fn leb(out: &mut Vec<u8>, mut value: usize) {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }

    /// Appends a custom section called `name` holding `payload`.
    fn custom_section(out: &mut Vec<u8>, name: &str, payload: &[u8]) {
        let mut body = Vec::new();
        leb(&mut body, name.len());
        body.extend_from_slice(name.as_bytes());
        body.extend_from_slice(payload);
        out.push(0);
        leb(out, body.len());
        out.extend_from_slice(&body);
    }

    /// A module with an optional `dylink.0` section (an empty mem-info subsection), an empty
    /// type section and an optional `name` section carrying a module name.
    fn module(dylink: bool, name: Option<&str>) -> Vec<u8> {
        let mut m = WASM_MAGIC.to_vec();
        if dylink {
            // Subsection 1 (WASM_DYLINK_MEM_INFO): four zero LEBs.
            custom_section(&mut m, "dylink.0", &[1, 4, 0, 0, 0, 0]);
        }
        m.extend_from_slice(&[1, 1, 0]); // type section, zero types
        if let Some(name) = name {
            let mut sub = Vec::new();
            leb(&mut sub, name.len());
            sub.extend_from_slice(name.as_bytes());
            let mut payload = vec![0]; // subsection 0: module name
            leb(&mut payload, sub.len());
            payload.extend_from_slice(&sub);
            custom_section(&mut m, "name", &payload);
        }
        m
    }

    /// Deterministic pseudo-random filler (xorshift64*), free of both magics.
    fn noise(len: usize, mut seed: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(len);
        while out.len() < len {
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            out.extend_from_slice(&seed.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
        }
        out.truncate(len);
        assert!(!contains(&out, &ZSTD_MAGIC) && !contains(&out, &WASM_MAGIC));
        out
    }

    #[test]
    fn finds_zstd_frame_in_noise() {
        let wasm = module(true, Some("libfoo.so"));
        let frame = zstd::encode_all(&wasm[..], 3).unwrap();
        let mut blob = noise(1000, 1);
        let at = blob.len();
        blob.extend_from_slice(&frame);
        blob.extend_from_slice(&noise(1000, 2));

        let found = zstd_wasm_frames(&blob, DEFAULT_FRAME_LIMIT);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].offset, at);
        assert_eq!(found[0].encoding, Encoding::Zstd);
        assert_eq!(found[0].bytes, wasm);
        let info = inspect_module(&found[0].bytes);
        assert!(info.has_dylink);
        assert_eq!(info.module_name.as_deref(), Some("libfoo.so"));
    }

    #[test]
    fn skips_frames_that_are_not_wasm_truncated_or_garbage() {
        let not_wasm = zstd::encode_all(&b"just some text, not a module"[..], 3).unwrap();
        let wasm_frame = zstd::encode_all(&module(true, None)[..], 3).unwrap();
        let truncated = &wasm_frame[..wasm_frame.len() - 3];

        let mut blob = noise(64, 3);
        blob.extend_from_slice(&not_wasm);
        blob.extend_from_slice(&noise(64, 4));
        blob.extend_from_slice(&ZSTD_MAGIC); // a magic followed by junk
        blob.extend_from_slice(&noise(64, 5));
        blob.extend_from_slice(truncated);
        assert!(zstd_wasm_frames(&blob, DEFAULT_FRAME_LIMIT).is_empty());
        // Ends right after a bare magic.
        assert!(zstd_wasm_frames(&ZSTD_MAGIC, DEFAULT_FRAME_LIMIT).is_empty());
    }

    #[test]
    fn frame_limit_is_enforced() {
        // A module padded with a large custom section compresses to almost nothing.
        let mut wasm = WASM_MAGIC.to_vec();
        custom_section(&mut wasm, "pad", &vec![0; 100_000]);
        let frame = zstd::encode_all(&wasm[..], 3).unwrap();
        assert!(frame.len() < 1000);

        assert_eq!(zstd_wasm_frames(&frame, wasm.len()).len(), 1);
        assert!(zstd_wasm_frames(&frame, wasm.len() - 1).is_empty());
        assert!(zstd_wasm_frames(&frame, 4).is_empty());
    }

    #[test]
    fn finds_raw_module_and_measures_it() {
        let wasm = module(true, None);
        let mut blob = noise(500, 6);
        let at = blob.len();
        blob.extend_from_slice(&wasm);
        // An unknown section id followed by a plausible size: must end the walk, not extend it.
        blob.extend_from_slice(&[0x63, 2, 0, 0]);
        blob.extend_from_slice(&noise(500, 7));

        let found = raw_wasm_modules(&blob);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].offset, at);
        assert_eq!(found[0].encoding, Encoding::Raw);
        assert_eq!(found[0].bytes, wasm);
    }

    #[test]
    fn module_length_stops_at_bad_or_out_of_range_sections() {
        let wasm = module(false, Some("m"));
        assert_eq!(wasm_module_len(&wasm), wasm.len());

        // A section whose size runs past the end of the data.
        let mut cut = wasm.clone();
        cut.extend_from_slice(&[0, 0x7f, 1, b'x']);
        assert_eq!(wasm_module_len(&cut), wasm.len());

        // A known section out of order: the type section must come before the function section.
        let mut bad_order = WASM_MAGIC.to_vec();
        bad_order.extend_from_slice(&[3, 1, 0]); // function section, zero functions
        bad_order.extend_from_slice(&[1, 1, 0]); // type section: out of order
        assert_eq!(wasm_module_len(&bad_order), 11);

        // Only the preamble, or not a module at all.
        assert_eq!(wasm_module_len(&WASM_MAGIC), 8);
        assert_eq!(wasm_module_len(b"\0asm\x0d\0\x01\0"), 0);
        assert_eq!(wasm_module_len(&[]), 0);
        assert!(raw_wasm_modules(&WASM_MAGIC).is_empty());
    }

    #[test]
    fn inspect_reports_dylink_and_name() {
        assert_eq!(
            inspect_module(&module(false, None)),
            ModuleInfo {
                has_dylink: false,
                module_name: None
            }
        );
        assert_eq!(
            inspect_module(&module(true, Some("libc.so"))),
            ModuleInfo {
                has_dylink: true,
                module_name: Some("libc.so".into())
            }
        );
        // Garbage after the preamble must not panic.
        let mut junk = WASM_MAGIC.to_vec();
        junk.extend_from_slice(&noise(256, 8));
        let _ = inspect_module(&junk);
    }
}
