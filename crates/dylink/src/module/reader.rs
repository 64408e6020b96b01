//! [`ModuleInfo::parse_reader`]: the model read from a file without reading the code
//! section's bodies or the data segments' bytes.

use wasmparser::{Parser, Payload};

use super::{Builder, ModuleInfo, const_value};
use crate::error::ParseError;

/// The data section's id.
const DATA_SECTION_ID: u8 = 11;
/// A core module's header: magic and version 1.
const WASM_HEADER: [u8; 8] = *b"\0asm\x01\0\0\0";

/// Reads from `reader` until `buf` holds at least `want` bytes, or the module ends (`size`
/// bytes after `start`; `base` is `buf`'s offset).
fn fill_to<R: std::io::Read>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    base: u64,
    want: usize,
    size: u64,
) -> Result<(), ParseError> {
    use std::io::Read;
    if buf.len() >= want {
        return Ok(());
    }
    let at = base + buf.len() as u64;
    let more = ((want - buf.len()) as u64)
        .max(4096)
        .min(size.saturating_sub(at));
    reader
        .by_ref()
        .take(more)
        .read_to_end(buf)
        .map_err(|e| ParseError::new("data section", at as usize, format!("read error: {e}")))?;
    Ok(())
}

/// Drops `n` bytes from the front of `buf` (offset `base`, advanced by `n`), seeking `reader`
/// past those it does not hold. The caller has checked that they are within the module.
fn skip_bytes<R: std::io::Seek>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    base: &mut u64,
    n: u64,
    section: &str,
) -> Result<(), ParseError> {
    if (buf.len() as u64) >= n {
        buf.drain(..n as usize);
    } else {
        let ahead = n - buf.len() as u64;
        buf.clear();
        let ahead = i64::try_from(ahead)
            .map_err(|_| ParseError::new(section, *base as usize, "unexpected end-of-file"))?;
        reader
            .seek(std::io::SeekFrom::Current(ahead))
            .map_err(|e| ParseError::new(section, *base as usize, format!("read error: {e}")))?;
    }
    *base += n;
    Ok(())
}

/// Walks the data section at the start of `buf` (offset `base`) segment by segment, recording
/// each active segment of memory 0 as the whole-module parse does, without reading the
/// segments' bytes: they are skipped (dropped from `buf`, or sought past). Returns the offset
/// just after the section, where `buf` then starts. A hostile size is never allocated: each
/// step reads a header of a few bytes and checks every length against the file's size.
fn skip_data_section<R: std::io::Read + std::io::Seek>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    start_base: u64,
    size: u64,
    b: &mut Builder,
) -> Result<u64, ParseError> {
    use wasmparser::BinaryReader;
    let wp = |e| ParseError::from_wasmparser("data section", e);
    let eof = |at: u64| ParseError::new("data section", at as usize, "unexpected end-of-file");
    let mut base = start_base;
    // id, size, count: at most 11 bytes.
    fill_to(reader, buf, base, 16, size)?;
    let mut r = BinaryReader::new(&buf[1..], (base + 1) as usize);
    let len = r.read_var_u32().map_err(wp)?;
    let content = r.original_position() as u64;
    let end = content + u64::from(len);
    if end > size {
        return Err(eof(content));
    }
    let count = r.read_var_u32().map_err(wp)?;
    let header = r.original_position() as u64 - base;
    skip_bytes(reader, buf, &mut base, header, "data section")?;
    for _ in 0..count {
        let mut window = 64;
        let (hdr, data_len) = loop {
            fill_to(reader, buf, base, window, size)?;
            let mut r = BinaryReader::new(buf, base as usize);
            let parsed = (|| {
                let flags = r.read_var_u32()?;
                let (memory, expr) = match flags {
                    0 => (Some(0), Some(r.read::<wasmparser::ConstExpr<'_>>()?)),
                    1 => (None, None),
                    2 => {
                        let m = r.read_var_u32()?;
                        (Some(m), Some(r.read::<wasmparser::ConstExpr<'_>>()?))
                    }
                    // Not a segment: said below, as the whole-module parse says it.
                    _ => return Ok(None),
                };
                let data_len = r.read_var_u32()?;
                let value = match (memory, expr) {
                    (Some(0), Some(e)) => Some(const_value(&e)),
                    _ => None,
                };
                Ok(Some((r.original_position() as u64 - base, data_len, value)))
            })();
            match parsed {
                Ok(None) => {
                    return Err(ParseError::new(
                        "data section",
                        base as usize,
                        "invalid flags byte in data segment",
                    ));
                }
                Ok(Some((hdr, data_len, value))) => {
                    if let Some(v) = value {
                        b.data_segments.push((v, data_len));
                    }
                    break (hdr, data_len);
                }
                // A header longer than the window (a long constant expression): more bytes.
                Err(_) if buf.len() >= window && window < (1 << 16) => window *= 16,
                Err(e) => return Err(wp(e)),
            }
        };
        let next = base + hdr + u64::from(data_len);
        if next > end {
            return Err(eof(base + hdr));
        }
        skip_bytes(
            reader,
            buf,
            &mut base,
            hdr + u64::from(data_len),
            "data section",
        )?;
    }
    if base != end {
        return Err(ParseError::new(
            "data section",
            base as usize,
            "section size mismatch: unexpected data at the end of the section",
        ));
    }
    Ok(base)
}

impl ModuleInfo {
    /// [`ModuleInfo::parse`] from a reader, without reading the code section's bodies (skipped
    /// by the section's size, a seek) or the data segments' bytes (their headers walked, the
    /// bytes sought past): the parts of a module this model does not need. The same model and
    /// the same errors as [`ModuleInfo::parse`] for everything outside the function bodies and
    /// the segments' bytes (whose validity is the compiler's business). A loader whose compiled
    /// code is cached so reads neither the code nor the 3.1 MB of data of `libpython3.14.so`.
    ///
    /// Memory stays linear in the bytes actually present: a section size read from the module
    /// is never used to allocate, only to ask the reader for at most that many bytes.
    ///
    /// # Errors
    /// As [`ModuleInfo::parse`]; an I/O error of the reader is a [`ParseError`] naming the
    /// section being read and its offset.
    pub fn parse_reader<R: std::io::Read + std::io::Seek>(
        mut reader: R,
    ) -> Result<ModuleInfo, ParseError> {
        use std::io::{Read, SeekFrom};
        let io = |section: &str, offset: u64, e: std::io::Error| {
            ParseError::new(section, offset as usize, format!("read error: {e}"))
        };
        let start = reader
            .stream_position()
            .map_err(|e| io("module header", 0, e))?;
        let end = reader
            .seek(SeekFrom::End(0))
            .map_err(|e| io("module header", 0, e))?;
        reader
            .seek(SeekFrom::Start(start))
            .map_err(|e| io("module header", 0, e))?;
        let size = end.saturating_sub(start);
        let mut head = [0u8; 4];
        let got = (&mut reader)
            .take(4)
            .read(&mut head)
            .map_err(|e| io("module header", 0, e))?;
        if got == 0 {
            return Err(ParseError::new(
                "",
                0,
                "empty file, not a WebAssembly module",
            ));
        }
        if got < 4 || &head != b"\0asm" {
            return Err(ParseError::new(
                "",
                0,
                "not a WebAssembly module (bad magic number)",
            ));
        }
        reader
            .seek(SeekFrom::Start(start))
            .map_err(|e| io("module header", 0, e))?;
        let mut parser = Parser::new(0);
        let mut b = Builder::default();
        let mut section = "module header";
        // `buf` holds the module's bytes from offset `base` (relative to `start`) on; the
        // reader stands at `start + base + buf.len()`.
        let mut buf: Vec<u8> = Vec::new();
        let mut base: u64 = 0;
        let mut eof = false;
        // Whether the parser stands at a section's start (after the header or a section).
        let mut at_section = false;
        // Whether the next payload is the header that restarts the parser after a data section.
        let mut restarted = false;
        loop {
            if at_section && buf.first() == Some(&DATA_SECTION_ID) {
                section = "data section";
                base = skip_data_section(&mut reader, &mut buf, base, size, &mut b)?;
                // The parser starts again after it: a fresh one, fed a module header placed
                // just before the next section, so its offsets stay the file's.
                let mut next = WASM_HEADER.to_vec();
                next.extend_from_slice(&buf);
                buf = next;
                base -= WASM_HEADER.len() as u64;
                parser = Parser::new(base);
                restarted = true;
                at_section = false;
                continue;
            }
            let (payload, consumed) = match parser.parse(&buf, eof) {
                Ok(wasmparser::Chunk::NeedMoreData(hint)) => {
                    // Read what the parser says it needs (at least 64 KiB), in one read: a
                    // section comes whole (the 3.1 MB data section of libpython3.14.so is one
                    // copy, not four pieces each re-parsed and the buffer re-grown). The
                    // buffer grows only by what the file still has, whatever the hint claims.
                    let at = base + buf.len() as u64;
                    let left = size.saturating_sub(at);
                    let want = hint.max(64 * 1024).min(left);
                    let old = buf.len();
                    buf.reserve_exact(want as usize);
                    let n = (&mut reader)
                        .take(want)
                        .read_to_end(&mut buf)
                        .map_err(|e| {
                            buf.truncate(old);
                            io(section, at, e)
                        })?;
                    if n == 0 {
                        eof = true;
                    }
                    continue;
                }
                Ok(wasmparser::Chunk::Parsed { consumed, payload }) => (payload, consumed),
                Err(e) => return Err(ParseError::from_wasmparser(section, e)),
            };
            let skip = match &payload {
                Payload::CodeSectionStart { range, .. } => {
                    Some((range.end as u64).saturating_sub(base + consumed as u64))
                }
                _ => None,
            };
            let done = matches!(payload, Payload::End(_));
            if restarted && matches!(payload, Payload::Version { .. }) {
                // The header put before the rest of the module by the data section's skip.
                restarted = false;
            } else {
                section = b.payload(payload)?;
            }
            at_section = true;
            buf.drain(..consumed);
            base += consumed as u64;
            if let Some(skip) = skip {
                parser.skip_section();
                if base + skip > size {
                    return Err(ParseError::new(
                        "code section",
                        (base + skip) as usize,
                        "unexpected end-of-file",
                    ));
                }
                skip_bytes(&mut reader, &mut buf, &mut base, skip, "code section")?;
            }
            if done {
                break;
            }
        }
        b.finish(size as usize)
    }
}
