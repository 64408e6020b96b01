//! Data exchange with a plugin: bytes, strings and Apache Arrow batches through guest memory.
//!
//! The wire contract is docs/abi.md (ABI v1): the guest exports `wasmlink_alloc`,
//! `wasmlink_free` and functions `f(in_ptr, in_len) -> *const ResultRecord`. The policy's `abi`
//! field selects an older convention instead (`seed`, `cstring`, `ptrlen`).
//!
//! Copies: the input is written straight into memory the guest allocated (Arrow batches are
//! encoded by `arrow_ipc::writer::StreamEncoder` into zero-copy segments that are copied once,
//! into the guest); the output is copied once out of guest memory into an aligned host buffer
//! and decoded without further copies. A gathered output (status 3: the guest lists the
//! segments of its output, e.g. the Rust SDK's Arrow streams over the batches' own buffers) is
//! copied segment by segment into that one buffer, so the guest need not join them first.
//! [`Instance::call_bytes_with`] reads the output in place,
//! with no copy at all, while the store is borrowed.
//!
//! Every pointer and length the guest hands back is checked before a byte is read: inside the
//! memory, no `ptr + len` overflow, no more than `limits.output` bytes.

use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_buffer::{Buffer, MutableBuffer};
use arrow_ipc::writer::StreamEncoder;
use wasmtime::{Memory, Store, TypedFunc};

use super::{AbiViolation, Instance, OutputTooLarge, PluginError, PluginState};
use crate::policy::Abi;

mod compat;
mod ipc;

pub use ipc::{IpcReader, decode_stream, encode_stream, read_ipc};

/// ABI version this host speaks (docs/abi.md).
pub const ABI_VERSION: i32 = 1;

const STATUS_OK: u32 = 0;
const STATUS_ERR: u32 = 1;
const STATUS_IN_PLACE: u32 = 2;
const STATUS_GATHERED: u32 = 3;
/// Longest guest error message shown.
const MAX_MESSAGE: usize = 4096;

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
    /// Status 3: the output, gathered from the segments the guest listed, already copied out.
    Gathered(Buffer),
}

/// The output of a byte or stream call: still in guest memory (status 0, to be freed), or
/// gathered into a host buffer already (status 3).
enum ByteOutput {
    InGuest { ptr: u32, len: u32, cap: u32 },
    Copied(Buffer),
}

/// Status 3: copies the segments listed at `[ptr, ptr+len)` (each `u32 address, u32 length`,
/// little-endian) in order into one host buffer (64-byte aligned, so Arrow decodes it without
/// copying). Every segment is checked, and the total held to `max_out`, before anything is
/// allocated or copied.
fn gather(data: &[u8], ptr: u32, len: u32, max_out: u64) -> wasmtime::Result<Buffer> {
    if !len.is_multiple_of(8) {
        return Err(violation(format!(
            "a gathered result of {len} bytes is not a list of (u32 address, u32 length) segments"
        )));
    }
    let list = &data[ptr as usize..ptr as usize + len as usize];
    let segment = |entry: &[u8]| {
        let word =
            |i: usize| u32::from_le_bytes([entry[i], entry[i + 1], entry[i + 2], entry[i + 3]]);
        (word(0), word(4))
    };
    let mut total = 0u64;
    for (i, entry) in list.chunks_exact(8).enumerate() {
        let (at, n) = segment(entry);
        check_range(
            data.len(),
            at,
            n,
            &format!("segment {i} of the gathered output"),
        )?;
        total += u64::from(n);
        if total > max_out {
            return Err(wasmtime::Error::new(OutputTooLarge));
        }
    }
    let mut out = MutableBuffer::with_capacity(total as usize);
    for entry in list.chunks_exact(8) {
        let (at, n) = segment(entry);
        out.extend_from_slice(&data[at as usize..at as usize + n as usize]);
    }
    Ok(out.into())
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
                    let arrays = ipc::read_in_place(data, in_ptr, len, &schema, &cols)?;
                    if cap > 0 {
                        funcs.free.call(&mut *store, (ptr as i32, cap as i32, 1))?;
                    }
                    Raw::InPlace(cols.into_iter().zip(arrays).collect())
                }
                STATUS_GATHERED => {
                    // Before the input is freed: segments may lie inside it (columns returned
                    // as they came in).
                    let out = gather(data, ptr, olen, max_out)?;
                    if cap > 0 {
                        funcs.free.call(&mut *store, (ptr as i32, cap as i32, 1))?;
                    }
                    Raw::Gathered(out)
                }
                other => {
                    return Err(violation(format!(
                        "unknown result status {other} (docs/abi.md knows 0, 1, 2 and 3)"
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
        let r = self.ready();
        if r.abi.alloc_free.is_none() {
            let f = abi_funcs(r.instance, &mut r.store)?;
            r.abi.alloc_free = Some((f.alloc, f.free));
        }
        if !r.abi.functions.contains_key(function) {
            let f = r
                .instance
                .get_typed_func::<(i32, i32), i32>(&mut r.store, function)
                .map_err(|_| {
                    violation(format!(
                        "`{function}` is not an ABI function `(i32, i32) -> i32` (docs/abi.md)"
                    ))
                })?;
            r.abi.functions.insert(function.to_string(), f);
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

    /// An ABI v1 call whose result must be output bytes: the guest's error (status 1) and an
    /// in-place result (status 2) become errors here, once for byte and stream calls.
    fn byte_output(
        &mut self,
        function: &str,
        len: usize,
        pieces: &[&[u8]],
    ) -> Result<ByteOutput, PluginError> {
        match self.raw_wasmlink(function, len, pieces, None)? {
            Raw::InPlace(_) => Err(self.fail_abi(
                function,
                violation("returned an in-place result (status 2) from a byte call"),
            )),
            Raw::Err(message) => Err(PluginError::Guest {
                plugin: self.plugin_name().to_string(),
                function: function.to_string(),
                message,
            }),
            Raw::Ok { ptr, len, cap } => Ok(ByteOutput::InGuest { ptr, len, cap }),
            Raw::Gathered(out) => Ok(ByteOutput::Copied(out)),
        }
    }

    fn call_pieces_with<R>(
        &mut self,
        function: &str,
        len: usize,
        pieces: &[&[u8]],
        read: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, PluginError> {
        match self.abi() {
            Abi::Wasmlink => match self.byte_output(function, len, pieces)? {
                ByteOutput::InGuest { ptr, len, cap } => {
                    let mem = memory_of(self).map_err(|e| self.fail_abi(function, e))?;
                    let data = mem.data(self.store_mut());
                    let out = read(&data[ptr as usize..ptr as usize + len as usize]);
                    self.release(function, ptr, cap)?;
                    Ok(out)
                }
                ByteOutput::Copied(out) => Ok(read(out.as_slice())),
            },
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
                let bytes = compat::call(self, conv, function, input)?;
                Ok(read(&bytes))
            }
        }
    }

    fn abi(&self) -> Abi {
        self.plugin.policy.abi
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
        // One copy out, into a 64-byte aligned host buffer (a gathered output comes that way);
        // decoding is zero-copy.
        let out = match self.abi() {
            Abi::Wasmlink => match self.byte_output(function, len, &pieces)? {
                ByteOutput::InGuest { ptr, len, cap } => self.copy_out(function, ptr, len, cap)?,
                ByteOutput::Copied(out) => out,
            },
            _ => self.call_pieces_with(function, len, &pieces, |b: &[u8]| Buffer::from(b))?,
        };
        decode_stream(out).map_err(|e| {
            self.poison();
            host_err(&name, format!("returned {e}"))
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
                let out = self.copy_out(function, ptr, len, cap)?;
                self.decode_one(function, batch, out)
            }
            Raw::Gathered(out) => self.decode_one(function, batch, out),
        }
    }

    /// Copies a status-0 output out of guest memory into an aligned host buffer, then frees it.
    fn copy_out(
        &mut self,
        function: &str,
        ptr: u32,
        len: u32,
        cap: u32,
    ) -> Result<Buffer, PluginError> {
        let mem = memory_of(self).map_err(|e| self.fail_abi(function, e))?;
        let data = mem.data(self.store_mut());
        let out = Buffer::from(&data[ptr as usize..ptr as usize + len as usize]);
        self.release(function, ptr, cap)?;
        Ok(out)
    }

    /// Decodes an output stream (copied out already) into the one batch `call_arrow` returns.
    fn decode_one(
        &mut self,
        function: &str,
        batch: &RecordBatch,
        out: Buffer,
    ) -> Result<RecordBatch, PluginError> {
        let batches = decode_stream(out).map_err(|e| {
            self.poison();
            PluginError::Abi {
                plugin: self.plugin_name().to_string(),
                function: function.to_string(),
                message: format!("returned {e}"),
            }
        })?;
        self.one_batch(function, batch, batches)
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

/// The schema of a batch as `Arc`, re-exported for callers building batches.
pub type SchemaRef = Arc<arrow_schema::Schema>;
