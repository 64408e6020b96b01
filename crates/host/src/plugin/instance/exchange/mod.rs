//! Data exchange with a plugin: bytes, strings and Apache Arrow batches through guest memory.
//!
//! The wire contract is docs/abi.md (ABI v1): the guest exports `wasmlink_alloc`,
//! `wasmlink_free` and functions `f(in_ptr, in_len) -> *const ResultRecord`. The policy's `abi`
//! field selects an older convention instead (`seed`, `cstring`, `ptrlen`).
//!
//! Copies: the input is written straight into memory the guest allocated (Arrow batches are
//! encoded by `arrow_ipc::writer::StreamEncoder` into zero-copy segments that are copied once,
//! into the guest); the output is copied once out of guest memory into an aligned host buffer
//! and decoded without further copies. [`Instance::call_bytes_with`] reads the output in place,
//! with no copy at all, while the store is borrowed.
//!
//! Every pointer and length the guest hands back is checked before a byte is read: inside the
//! memory, no `ptr + len` overflow, no more than `limits.output` bytes.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_buffer::Buffer;
use arrow_ipc::reader::StreamDecoder;
use arrow_ipc::writer::StreamEncoder;
use wasmtime::{Memory, Store, TypedFunc};

use crate::plugin::{Instance, Plugin, PluginError, PluginState};
use crate::policy::Abi;

/// ABI version this host speaks (docs/abi.md).
pub const ABI_VERSION: i32 = 1;

const STATUS_OK: u32 = 0;
const STATUS_ERR: u32 = 1;
const STATUS_IN_PLACE: u32 = 2;
/// Longest guest error message shown.
const MAX_MESSAGE: usize = 4096;

/// A guest broke the ABI; becomes [`PluginError::Abi`] and poisons the instance.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct AbiViolation(pub String);

/// The guest returned more than `limits.output` bytes.
#[derive(Debug, thiserror::Error)]
#[error("returned data over the limit")]
pub(crate) struct OutputTooLarge;

fn violation(msg: impl Into<String>) -> wasmtime::Error {
    wasmtime::Error::new(AbiViolation(msg.into()))
}

/// Checks that `[ptr, ptr + len)` lies inside `memory`, without overflow.
fn check_range(memory_len: usize, ptr: u32, len: u32, what: &str) -> wasmtime::Result<usize> {
    let start = ptr as usize;
    let end = ptr
        .checked_add(len)
        .ok_or_else(|| violation(format!("{what} {ptr:#x}+{len} overflows 32 bits")))?
        as usize;
    if end > memory_len {
        return Err(violation(format!(
            "{what} {ptr:#x}+{len} is outside the guest's {memory_len}-byte memory"
        )));
    }
    Ok(start)
}

/// What a raw call produced: output bytes in guest memory, or the guest's error message.
enum Raw {
    Ok {
        ptr: u32,
        len: u32,
        cap: u32,
    },
    Err(String),
    /// Status 2: the guest rewrote these columns inside the input; their arrays, read back.
    InPlace(Vec<(usize, arrow_array::ArrayRef)>),
}

#[derive(Clone)]
struct AbiFuncs {
    alloc: TypedFunc<(i32, i32), i32>,
    free: TypedFunc<(i32, i32, i32), ()>,
}

fn memory_of(inst: &mut Instance) -> wasmtime::Result<Memory> {
    inst.memory()
        .ok_or_else(|| violation("the module exports no `memory` (docs/abi.md)"))
}

fn abi_funcs(
    instance: wasmtime::Instance,
    store: &mut Store<PluginState>,
) -> wasmtime::Result<AbiFuncs> {
    let alloc = instance
        .get_typed_func::<(i32, i32), i32>(&mut *store, "wasmlink_alloc")
        .map_err(|_| {
            violation(
                "does not export `wasmlink_alloc(size: i32, align: i32) -> i32` (docs/abi.md); \
                 for modules of another convention set `abi` in the policy",
            )
        })?;
    let free = instance
        .get_typed_func::<(i32, i32, i32), ()>(&mut *store, "wasmlink_free")
        .map_err(|_| {
            violation("does not export `wasmlink_free(ptr, size, align)` (docs/abi.md)")
        })?;
    Ok(AbiFuncs { alloc, free })
}

/// Allocates `len` bytes in the guest and copies the pieces of `input` there, in order.
fn write_input(
    store: &mut Store<PluginState>,
    memory: Memory,
    alloc: impl FnOnce(&mut Store<PluginState>, u32) -> wasmtime::Result<u32>,
    len: usize,
    pieces: &[&[u8]],
) -> wasmtime::Result<u32> {
    let len32 = u32::try_from(len).map_err(|_| {
        violation(format!(
            "an input of {len} bytes does not fit a wasm32 guest"
        ))
    })?;
    let ptr = alloc(store, len32)?;
    if ptr == 0 && len32 > 0 {
        return Err(violation(format!(
            "the guest allocator returned NULL for {len} bytes of input"
        )));
    }
    let data = memory.data_mut(&mut *store);
    let start = check_range(
        data.len(),
        ptr,
        len32,
        "the input buffer the guest allocated at",
    )?;
    let mut at = start;
    for p in pieces {
        data[at..at + p.len()].copy_from_slice(p);
        at += p.len();
    }
    Ok(ptr)
}

impl Instance {
    fn raw_wasmlink(
        &mut self,
        function: &str,
        len: usize,
        pieces: &[&[u8]],
        in_place_schema: Option<SchemaRef>,
    ) -> Result<Raw, PluginError> {
        let max_out = self.limits().output;
        let mem = match memory_of(self) {
            Ok(m) => m,
            Err(e) => return Err(self.fail_abi(function, e)),
        };
        if let Err(e) = self.abi_exports(function) {
            return Err(self.fail_abi(function, e));
        }
        self.guarded_abi(function, move |store, abi| {
            let (funcs, f) = abi.get(function)?;
            let in_ptr = write_input(
                store,
                mem,
                |s, n| Ok(funcs.alloc.call(s, (n as i32, 64))? as u32),
                len,
                pieces,
            )?;
            let rec = f.call(&mut *store, (in_ptr as i32, len as i32))? as u32;
            let data = mem.data(&*store);
            let at = check_range(data.len(), rec, 16, "the result record at")?;
            let word = |i: usize| {
                u32::from_le_bytes([
                    data[at + 4 * i],
                    data[at + 4 * i + 1],
                    data[at + 4 * i + 2],
                    data[at + 4 * i + 3],
                ])
            };
            let (status, ptr, olen, cap) = (word(0), word(1), word(2), word(3));
            check_range(data.len(), ptr, olen, "the output")?;
            if cap != 0 && cap < olen {
                return Err(violation(format!(
                    "the result record's capacity {cap} is less than its length {olen}"
                )));
            }
            if olen as u64 > max_out {
                return Err(wasmtime::Error::new(OutputTooLarge));
            }
            let raw = match status {
                STATUS_OK => Raw::Ok {
                    ptr,
                    len: olen,
                    cap,
                },
                STATUS_ERR => {
                    let start = ptr as usize;
                    let end = start + (olen as usize).min(MAX_MESSAGE);
                    let msg = String::from_utf8_lossy(&data[start..end]).into_owned();
                    if cap > 0 {
                        funcs.free.call(&mut *store, (ptr as i32, cap as i32, 1))?;
                    }
                    Raw::Err(msg)
                }
                STATUS_IN_PLACE => {
                    let Some(schema) = in_place_schema else {
                        return Err(violation(
                            "returned an in-place result (status 2) from a byte call",
                        ));
                    };
                    if olen % 4 != 0 {
                        return Err(violation(format!(
                            "an in-place result of {olen} bytes is not a list of u32 column indices"
                        )));
                    }
                    let start = ptr as usize;
                    let mut cols: Vec<usize> = data[start..start + olen as usize]
                        .chunks_exact(4)
                        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize)
                        .collect();
                    cols.sort_unstable();
                    cols.dedup();
                    if let Some(bad) = cols.iter().find(|&&c| c >= schema.fields().len()) {
                        return Err(violation(format!(
                            "an in-place result names column {bad}, but the batch has {}",
                            schema.fields().len()
                        )));
                    }
                    let arrays = read_in_place(data, in_ptr, len, &schema, &cols)?;
                    if cap > 0 {
                        funcs.free.call(&mut *store, (ptr as i32, cap as i32, 1))?;
                    }
                    Raw::InPlace(cols.into_iter().zip(arrays).collect())
                }
                other => {
                    return Err(violation(format!(
                        "unknown result status {other} (docs/abi.md knows 0, 1 and 2)"
                    )));
                }
            };
            if len > 0 {
                funcs
                    .free
                    .call(&mut *store, (in_ptr as i32, len as i32, 64))?;
            }
            Ok(raw)
        })
    }

    /// The allocator pair and `function` as an ABI function, looked up once per instance.
    /// Looks up the allocator pair and `function` as an ABI function, once per instance, into
    /// the instance's [`AbiCache`] (read back with [`AbiCache::get`]).
    fn abi_exports(&mut self, function: &str) -> wasmtime::Result<()> {
        if self.abi_cache().alloc_free.is_none() {
            let (instance, store) = self.instance_handle();
            let f = abi_funcs(instance, store)?;
            self.abi_cache().alloc_free = Some((f.alloc, f.free));
        }
        if !self.abi_cache().functions.contains_key(function) {
            let (instance, store) = self.instance_handle();
            let f = instance
                .get_typed_func::<(i32, i32), i32>(&mut *store, function)
                .map_err(|_| {
                    violation(format!(
                        "`{function}` is not an ABI function `(i32, i32) -> i32` (docs/abi.md)"
                    ))
                })?;
            self.abi_cache().functions.insert(function.to_string(), f);
        }
        Ok(())
    }

    fn fail_abi(&mut self, function: &str, e: wasmtime::Error) -> PluginError {
        self.poison();
        PluginError::Abi {
            plugin: self.plugin_name().to_string(),
            function: function.to_string(),
            message: e.to_string(),
        }
    }

    /// Frees an ABI v1 output after it has been read.
    fn release(&mut self, function: &str, ptr: u32, cap: u32) -> Result<(), PluginError> {
        if cap == 0 {
            return Ok(());
        }
        if let Err(e) = self.abi_exports(function) {
            return Err(self.fail_abi(function, e));
        }
        self.guarded_abi(function, move |store, abi| {
            let (funcs, _) = abi.get(function)?;
            funcs.free.call(&mut *store, (ptr as i32, cap as i32, 1))
        })
    }

    /// Calls a byte function and hands its output to `read` in place, in guest memory, with no
    /// copy. Follows the policy's `abi` convention.
    pub fn call_bytes_with<R>(
        &mut self,
        function: &str,
        input: &[u8],
        read: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, PluginError> {
        self.call_pieces_with(function, input.len(), &[input], read)
    }

    fn call_pieces_with<R>(
        &mut self,
        function: &str,
        len: usize,
        pieces: &[&[u8]],
        read: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, PluginError> {
        match self.abi() {
            Abi::Wasmlink => {
                let raw = self.raw_wasmlink(function, len, pieces, None)?;
                match raw {
                    Raw::InPlace(_) => Err(self.fail_abi(
                        function,
                        violation("returned an in-place result (status 2) from a byte call"),
                    )),
                    Raw::Err(message) => Err(PluginError::Guest {
                        plugin: self.plugin_name().to_string(),
                        function: function.to_string(),
                        message,
                    }),
                    Raw::Ok { ptr, len, cap } => {
                        let mem = memory_of(self).map_err(|e| self.fail_abi(function, e))?;
                        let data = mem.data(self.store_mut());
                        let out = read(&data[ptr as usize..ptr as usize + len as usize]);
                        self.release(function, ptr, cap)?;
                        Ok(out)
                    }
                }
            }
            conv => {
                let mut joined = Vec::new();
                let input: &[u8] = if pieces.len() == 1 {
                    pieces[0]
                } else {
                    for p in pieces {
                        joined.extend_from_slice(p);
                    }
                    &joined
                };
                let bytes = crate::plugin::exchange::compat::call(self, conv, function, input)?;
                Ok(read(&bytes))
            }
        }
    }

    fn abi(&self) -> Abi {
        self.abi_convention()
    }

    /// Calls a byte function: bytes in, bytes out (one copy each way).
    pub fn call_bytes(&mut self, function: &str, input: &[u8]) -> Result<Vec<u8>, PluginError> {
        self.call_bytes_with(function, input, <[u8]>::to_vec)
    }

    /// Calls a string function. Output that is not UTF-8 is an ABI error.
    pub fn call_str(&mut self, function: &str, input: &str) -> Result<String, PluginError> {
        let out = self.call_bytes(function, input.as_bytes())?;
        String::from_utf8(out).map_err(|e| {
            self.poison();
            PluginError::Abi {
                plugin: self.plugin_name().to_string(),
                function: function.to_string(),
                message: format!("returned a string that is not UTF-8: {e}"),
            }
        })
    }

    /// Calls an Arrow function with one batch and returns the batches it produced.
    pub fn call_arrow_stream(
        &mut self,
        function: &str,
        batches: &[RecordBatch],
    ) -> Result<Vec<RecordBatch>, PluginError> {
        if let [one] = batches
            && self.abi() == Abi::Wasmlink
        {
            // One batch may come back in place (status 2).
            return self.call_arrow_v1(function, one).map(|b| vec![b]);
        }
        let schema = match batches.first() {
            Some(b) => b.schema(),
            None => {
                return Err(PluginError::Abi {
                    plugin: self.plugin_name().to_string(),
                    function: function.to_string(),
                    message: "an Arrow call needs at least one batch".into(),
                });
            }
        };
        let host_err = |plugin: &str, msg: String| PluginError::Abi {
            plugin: plugin.to_string(),
            function: function.to_string(),
            message: msg,
        };
        let name = self.plugin_name().to_string();
        let mut encoder = StreamEncoder::try_new(&schema)
            .map_err(|e| host_err(&name, format!("cannot encode the input batch: {e}")))?;
        let mut segments: Vec<Buffer> = Vec::new();
        for b in batches {
            segments.extend(
                encoder
                    .encode(b)
                    .map_err(|e| host_err(&name, format!("cannot encode the input batch: {e}")))?,
            );
        }
        segments.extend(
            encoder
                .finish()
                .map_err(|e| host_err(&name, format!("cannot encode the input batch: {e}")))?,
        );
        let pieces: Vec<&[u8]> = segments.iter().map(|b| b.as_slice()).collect();
        let len: usize = pieces.iter().map(|p| p.len()).sum();
        let out = self.call_pieces_with(function, len, &pieces, |bytes| {
            // One copy out, into a 64-byte aligned host buffer; decoding is zero-copy.
            Buffer::from(bytes)
        })?;
        decode_stream(out).map_err(|msg| {
            self.poison();
            host_err(&name, msg)
        })
    }

    /// Calls an Arrow function with one batch and returns its one output batch (several
    /// output batches are concatenated). If the guest transforms the batch in place (status 2),
    /// only the columns it rewrote are read back; the others are the input's own arrays.
    pub fn call_arrow(
        &mut self,
        function: &str,
        batch: &RecordBatch,
    ) -> Result<RecordBatch, PluginError> {
        if self.abi() == Abi::Wasmlink {
            return self.call_arrow_v1(function, batch);
        }
        let out = self.call_arrow_stream(function, std::slice::from_ref(batch))?;
        self.one_batch(function, batch, out)
    }

    fn call_arrow_v1(
        &mut self,
        function: &str,
        batch: &RecordBatch,
    ) -> Result<RecordBatch, PluginError> {
        let name = self.plugin_name().to_string();
        let host_err = |msg: String| PluginError::Abi {
            plugin: name.clone(),
            function: function.to_string(),
            message: msg,
        };
        let schema = batch.schema();
        let mut encoder = StreamEncoder::try_new(&schema)
            .map_err(|e| host_err(format!("cannot encode the input batch: {e}")))?;
        let mut segments = encoder
            .encode(batch)
            .map_err(|e| host_err(format!("cannot encode the input batch: {e}")))?;
        segments.extend(
            encoder
                .finish()
                .map_err(|e| host_err(format!("cannot encode the input batch: {e}")))?,
        );
        let pieces: Vec<&[u8]> = segments.iter().map(|b| b.as_slice()).collect();
        let len: usize = pieces.iter().map(|p| p.len()).sum();
        match self.raw_wasmlink(function, len, &pieces, Some(schema.clone()))? {
            Raw::Err(message) => Err(PluginError::Guest {
                plugin: name,
                function: function.to_string(),
                message,
            }),
            Raw::InPlace(changed) => {
                let mut columns = batch.columns().to_vec();
                for (i, array) in changed {
                    columns[i] = array;
                }
                RecordBatch::try_new(schema, columns).map_err(|e| {
                    self.poison();
                    host_err(format!(
                        "rewrote columns in place into an invalid batch: {e}"
                    ))
                })
            }
            Raw::Ok { ptr, len, cap } => {
                let mem = memory_of(self).map_err(|e| self.fail_abi(function, e))?;
                let data = mem.data(self.store_mut());
                let out = Buffer::from(&data[ptr as usize..ptr as usize + len as usize]);
                self.release(function, ptr, cap)?;
                let batches = decode_stream(out).map_err(|msg| {
                    self.poison();
                    host_err(msg)
                })?;
                self.one_batch(function, batch, batches)
            }
        }
    }

    fn one_batch(
        &mut self,
        function: &str,
        batch: &RecordBatch,
        out: Vec<RecordBatch>,
    ) -> Result<RecordBatch, PluginError> {
        let name = self.plugin_name().to_string();
        match out.len() {
            1 => Ok(out.into_iter().next().unwrap_or_else(|| batch.clone())),
            0 => Err(PluginError::Abi {
                plugin: name,
                function: function.to_string(),
                message: "returned an Arrow stream with no batch".into(),
            }),
            _ => {
                let schema = out[0].schema();
                arrow_select::concat::concat_batches(&schema, &out).map_err(|e| PluginError::Abi {
                    plugin: name,
                    function: function.to_string(),
                    message: format!("returned batches that do not concatenate: {e}"),
                })
            }
        }
    }
}

/// How many IPC buffers a column of type `t` has (Arrow IPC format, depth first), or `None`
/// for types this host does not map (it then reads the whole body back).
fn ipc_buffer_count(t: &arrow_schema::DataType) -> Option<usize> {
    use arrow_schema::DataType::*;
    Some(match t {
        Boolean
        | Int8
        | Int16
        | Int32
        | Int64
        | UInt8
        | UInt16
        | UInt32
        | UInt64
        | Float16
        | Float32
        | Float64
        | Date32
        | Date64
        | Time32(_)
        | Time64(_)
        | Timestamp(_, _)
        | Duration(_)
        | Interval(_)
        | Decimal128(_, _)
        | Decimal256(_, _)
        | FixedSizeBinary(_) => 2,
        Utf8 | Binary | LargeUtf8 | LargeBinary => 3,
        List(f) | LargeList(f) | Map(f, _) => 2 + ipc_buffer_count(f.data_type())?,
        FixedSizeList(f, _) => 1 + ipc_buffer_count(f.data_type())?,
        Struct(fields) => {
            let mut n = 1;
            for f in fields {
                n += ipc_buffer_count(f.data_type())?;
            }
            n
        }
        _ => return None,
    })
}

/// Reads back, from the input region of guest memory, the columns `cols` the guest rewrote in
/// place: only their buffers are copied (into a zeroed host body that the others never touch).
fn read_in_place(
    data: &[u8],
    in_ptr: u32,
    in_len: usize,
    schema: &SchemaRef,
    cols: &[usize],
) -> wasmtime::Result<Vec<arrow_array::ArrayRef>> {
    if cols.is_empty() {
        // A pass-through: nothing to read back (and no body-sized buffer to allocate).
        return Ok(Vec::new());
    }
    let region = &data[in_ptr as usize..in_ptr as usize + in_len];
    let bad = |m: &str| violation(format!("after an in-place call, the input stream {m}"));
    // Find the record batch message (after the schema message).
    let mut at = 0usize;
    let (message, body_start) = loop {
        let word = |o: usize| -> wasmtime::Result<u32> {
            region
                .get(o..o + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| bad("is truncated"))
        };
        let (meta_len, meta_at) = if word(at)? == 0xFFFF_FFFF {
            (word(at + 4)? as usize, at + 8)
        } else {
            (word(at)? as usize, at + 4)
        };
        let meta = region
            .get(meta_at..meta_at + meta_len)
            .ok_or_else(|| bad("is truncated"))?;
        let message =
            arrow_ipc::root_as_message(meta).map_err(|_| bad("has a corrupt message header"))?;
        let body_start = meta_at + meta_len;
        if message.header_as_record_batch().is_some() {
            break (message, body_start);
        }
        at = body_start + usize::try_from(message.bodyLength()).map_err(|_| bad("is corrupt"))?;
    };
    let rb = message
        .header_as_record_batch()
        .ok_or_else(|| bad("has no record batch"))?;
    let body_len = usize::try_from(message.bodyLength()).map_err(|_| bad("is corrupt"))?;
    let body = region
        .get(body_start..body_start + body_len)
        .ok_or_else(|| bad("body is truncated"))?;
    let buffers = rb.buffers().ok_or_else(|| bad("lists no buffers"))?;
    let counts: Option<Vec<usize>> = schema
        .fields()
        .iter()
        .map(|f| ipc_buffer_count(f.data_type()))
        .collect();
    let host = match counts {
        Some(counts) if counts.iter().sum::<usize>() == buffers.len() => {
            let mut first = Vec::with_capacity(counts.len());
            let mut n = 0;
            for c in &counts {
                first.push(n);
                n += c;
            }
            let spans = cols.iter().flat_map(|&col| {
                (first[col]..first[col] + counts[col]).map(|b| {
                    let buf = buffers.get(b);
                    (buf.offset() as usize, buf.length() as usize)
                })
            });
            // The host body only reaches as far as the last rewritten buffer: the decoder
            // skips the other columns without touching their bytes.
            let end = spans
                .clone()
                .map(|(o, l)| o.saturating_add(l))
                .max()
                .unwrap_or(0);
            if end > body_len {
                return Err(bad("has a buffer outside its body"));
            }
            let mut host = arrow_buffer::MutableBuffer::from_len_zeroed(end);
            for (o, l) in spans {
                host.as_slice_mut()[o..o + l].copy_from_slice(&body[o..o + l]);
            }
            host
        }
        // A type whose buffers are not mapped here: read the whole body back.
        _ => {
            let mut host = arrow_buffer::MutableBuffer::from_len_zeroed(body_len);
            host.as_slice_mut().copy_from_slice(body);
            host
        }
    };
    let projected = arrow_ipc::reader::read_record_batch(
        &Buffer::from(host),
        rb,
        schema.clone(),
        &std::collections::HashMap::new(),
        Some(cols),
        &message.version(),
    )
    .map_err(|e| bad(&format!("does not decode: {e}")))?;
    Ok(projected.columns().to_vec())
}

/// Decodes an IPC stream held in `buf`, refusing compression and trailing garbage.
pub fn decode_stream(mut buf: Buffer) -> Result<Vec<RecordBatch>, String> {
    let mut decoder = StreamDecoder::new();
    let mut out = Vec::new();
    loop {
        let before = buf.len();
        match decoder.decode(&mut buf) {
            Ok(Some(b)) => out.push(b),
            Ok(None) => {
                if buf.is_empty() || buf.len() == before {
                    break;
                }
            }
            Err(e) => {
                let m = e.to_string();
                return Err(if m.to_ascii_lowercase().contains("compress") {
                    format!("returned compressed Arrow IPC, which wasmlink refuses: {m}")
                } else {
                    format!("returned malformed Arrow IPC: {m}")
                });
            }
        }
    }
    decoder
        .finish()
        .map_err(|e| format!("returned a truncated Arrow IPC stream: {e}"))?;
    Ok(out)
}

/// Reads Arrow IPC bytes in either the stream or the file format.
pub fn read_ipc(bytes: &[u8]) -> Result<Vec<RecordBatch>, String> {
    if bytes.starts_with(b"ARROW1") {
        let reader = arrow_ipc::reader::FileReader::try_new(std::io::Cursor::new(bytes), None)
            .map_err(|e| format!("not a valid Arrow IPC file: {e}"))?;
        return reader
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("not a valid Arrow IPC file: {e}"));
    }
    decode_stream(Buffer::from(bytes)).map_err(|m| m.replacen("returned ", "", 1))
}

/// Encodes batches as one Arrow IPC stream (for files and tests).
pub fn encode_stream(batches: &[RecordBatch]) -> Result<Vec<u8>, String> {
    let Some(first) = batches.first() else {
        return Err("no batch to encode".into());
    };
    let mut w = arrow_ipc::writer::StreamWriter::try_new(Vec::new(), &first.schema())
        .map_err(|e| e.to_string())?;
    for b in batches {
        w.write(b).map_err(|e| e.to_string())?;
    }
    w.into_inner().map_err(|e| e.to_string())
}

impl Plugin {
    /// [`Instance::call_bytes`] on a pooled instance.
    pub fn call_bytes(&self, function: &str, input: &[u8]) -> Result<Vec<u8>, PluginError> {
        self.instance()?.call_bytes(function, input)
    }

    /// [`Instance::call_str`] on a pooled instance.
    pub fn call_str(&self, function: &str, input: &str) -> Result<String, PluginError> {
        self.instance()?.call_str(function, input)
    }

    /// [`Instance::call_arrow`] on a pooled instance.
    pub fn call_arrow(
        &self,
        function: &str,
        batch: &RecordBatch,
    ) -> Result<RecordBatch, PluginError> {
        self.instance()?.call_arrow(function, batch)
    }
}

/// Shared by the compatibility conventions: the guest's `allocate`/`deallocate`.
pub(crate) mod compat {
    use super::*;

    pub(crate) fn call(
        inst: &mut Instance,
        conv: Abi,
        function: &str,
        input: &[u8],
    ) -> Result<Vec<u8>, PluginError> {
        let max_out = inst.limits().output;
        let mem = memory_of(inst).map_err(|e| inst.fail_abi(function, e))?;
        let (instance, _) = inst.instance_handle();
        let fname = function.to_string();
        let input_len = input.len();
        inst.guarded(function, move |store| {
            let allocate = instance
                .get_typed_func::<i32, i32>(&mut *store, "allocate")
                .map_err(|_| violation("does not export `allocate(size: i32) -> i32`"))?;
            let deallocate = instance
                .get_typed_func::<(i32, i32), ()>(&mut *store, "deallocate")
                .map_err(|_| violation("does not export `deallocate(ptr: i32, size: i32)`"))?;
            let (in_len, nul) = match conv {
                Abi::Cstring => {
                    if input.contains(&0) {
                        return Err(violation("the input contains a NUL byte, which a C string cannot carry"));
                    }
                    (input_len + 1, true)
                }
                _ => (input_len, false),
            };
            let terminator: &[u8] = if nul { &[0] } else { &[] };
            let in_ptr = write_input(
                store,
                mem,
                |s, n| Ok(allocate.call(s, n as i32)? as u32),
                in_len,
                &[input, terminator],
            )?;
            let (optr, olen) = match conv {
                Abi::Seed => {
                    let f = instance
                        .get_typed_func::<(i32, i32), i32>(&mut *store, &fname)
                        .map_err(|_| violation(format!("`{fname}` is not `(ptr: i32, len: i32) -> i32` (seed convention)")))?;
                    let rec = f.call(&mut *store, (in_ptr as i32, input_len as i32))? as u32;
                    let data = mem.data(&*store);
                    let at = check_range(data.len(), rec, 8, "the (ptr, len) record at")?;
                    let w = |i: usize| u32::from_le_bytes([data[at + i], data[at + i + 1], data[at + i + 2], data[at + i + 3]]);
                    (w(0), w(4))
                }
                Abi::Ptrlen => {
                    let f = instance
                        .get_typed_func::<(i32, i32), i64>(&mut *store, &fname)
                        .map_err(|_| violation(format!("`{fname}` is not `(ptr: i32, len: i32) -> i64` (ptrlen convention)")))?;
                    let packed = f.call(&mut *store, (in_ptr as i32, input_len as i32))? as u64;
                    ((packed >> 32) as u32, packed as u32)
                }
                _ => {
                    let f = instance
                        .get_typed_func::<i32, i32>(&mut *store, &fname)
                        .map_err(|_| violation(format!("`{fname}` is not `(ptr: i32) -> i32` (cstring convention)")))?;
                    let p = f.call(&mut *store, in_ptr as i32)? as u32;
                    let data = mem.data(&*store);
                    let start = check_range(data.len(), p, 0, "the returned string at")?;
                    let limit = (data.len() - start).min(max_out as usize + 1);
                    let n = data[start..start + limit]
                        .iter()
                        .position(|&b| b == 0)
                        .ok_or_else(|| {
                            if limit > max_out as usize {
                                wasmtime::Error::new(OutputTooLarge)
                            } else {
                                violation(format!("the string returned at {p:#x} has no NUL before the end of memory"))
                            }
                        })?;
                    (p, n as u32)
                }
            };
            let data = mem.data(&*store);
            let start = check_range(data.len(), optr, olen, "the output")?;
            if olen as u64 > max_out {
                return Err(wasmtime::Error::new(OutputTooLarge));
            }
            let out = data[start..start + olen as usize].to_vec();
            let out_size = if nul { olen + 1 } else { olen };
            if optr != 0 {
                deallocate.call(&mut *store, (optr as i32, out_size as i32))?;
            }
            deallocate.call(&mut *store, (in_ptr as i32, in_len as i32))?;
            Ok(out)
        })
    }
}

/// The schema of a batch as `Arc`, re-exported for callers building batches.
pub type SchemaRef = Arc<arrow_schema::Schema>;
