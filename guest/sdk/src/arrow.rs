//! Arrow functions: IPC stream in (decoded without copying), IPC stream out (a list of
//! segments over the output's own buffers, which the host gathers: one copy, made by the
//! host), and in-place rewrites of input columns.

use std::collections::BTreeSet;
use std::fmt::Display;
use std::ptr::NonNull;
use std::sync::Arc;

use arrow_array::types::ArrowPrimitiveType;
use arrow_array::{Array, RecordBatch};
use arrow_buffer::Buffer;
use arrow_ipc::reader::StreamDecoder;
use arrow_ipc::writer::{IpcWriteOptions, StreamEncoder};

use crate::{
    GuestStatic, IntoOutput, Output, STATUS_GATHERED, STATUS_IN_PLACE, addr, input_slice, publish,
    publish_result,
};

/// The "owner" of the input region for Arrow's reference counting. It frees nothing: the host
/// frees the region after the call. The SDK checks that no buffer still references it when
/// the function returns.
struct HostInput;

/// The input region as an Arrow [`Buffer`] without copying it, and the owner whose strong count
/// says whether anything still points into it.
fn input_buffer(ptr: i32, len: i32) -> Result<(Buffer, Arc<HostInput>), String> {
    // SAFETY: called from an exported wrapper with the host's (ptr, len), per the ABI.
    let bytes = unsafe { input_slice(ptr, len) };
    let Some(start) = NonNull::new(bytes.as_ptr().cast_mut()).filter(|_| !bytes.is_empty()) else {
        return Err("input is empty: expected an Arrow IPC stream".to_string());
    };
    let owner = Arc::new(HostInput);
    // SAFETY: [start, start+len) is the host-written input region, valid and unchanged by the
    // host until the call returns. `finish_input` refuses to return while any Buffer still
    // references it (the owner's strong count), so no Buffer outlives the call unnoticed.
    let buffer = unsafe { Buffer::from_custom_allocation(start, bytes.len(), owner.clone()) };
    Ok((buffer, owner))
}

/// Errors if a batch built over the input region is still alive after the function returned
/// (e.g. stashed in a static): the host frees that region right after the call.
fn finish_input(owner: Arc<HostInput>) -> Result<(), String> {
    if Arc::strong_count(&owner) != 1 {
        return Err(
            "the function kept a reference to its input batch after returning; \
                    copy what must outlive the call"
                .to_string(),
        );
    }
    Ok(())
}

fn decode_error(e: impl Display) -> String {
    format!("cannot decode the input Arrow IPC stream: {e}")
}

/// Every batch of the input stream, decoded zero-copy over the input region (buffers that are
/// not aligned for their type are copied unless `require_alignment`). Returns how many batches
/// the stream held (0 for a schema-only stream, whose `f` still ran once on an empty batch).
fn for_each_batch(
    buffer: &mut Buffer,
    require_alignment: bool,
    mut f: impl FnMut(RecordBatch) -> Result<(), String>,
) -> Result<usize, String> {
    let mut decoder = StreamDecoder::new().with_require_alignment(require_alignment);
    let mut count = 0;
    while let Some(batch) = decoder.decode(buffer).map_err(decode_error)? {
        f(batch)?;
        count += 1;
    }
    decoder.finish().map_err(decode_error)?;
    if count == 0 {
        // A stream with a schema and no batches: the function still runs once, on an empty
        // batch, so that the output has a schema.
        let schema = decoder
            .schema()
            .ok_or_else(|| decode_error("the stream has no schema message"))?;
        f(RecordBatch::new_empty(schema))?;
    }
    Ok(count)
}

fn encode_error(e: arrow_schema::ArrowError) -> String {
    format!("cannot encode the output batch: {e}")
}

/// An output stream has one schema: the first batch's.
fn same_schema(first: &arrow_schema::Schema, batch: &RecordBatch) -> Result<(), String> {
    if first != batch.schema_ref().as_ref() {
        return Err(format!(
            "output batches must share one schema: got {} after {first}",
            batch.schema(),
        ));
    }
    Ok(())
}

/// Encodes batches as one IPC stream (uncompressed, 64-byte aligned) of
/// segments: arrow-ipc's `StreamEncoder` gives the messages' metadata and padding as small new
/// buffers and the batches' body buffers as they are, without copying them. The host gathers
/// the segments into its own buffer (status 3, docs/abi.md): the only copy of the output.
struct GatheredStream {
    encoder: Option<(StreamEncoder, arrow_schema::SchemaRef)>,
    segments: Vec<Buffer>,
}

impl GatheredStream {
    fn new() -> Self {
        GatheredStream {
            encoder: None,
            segments: Vec::new(),
        }
    }

    fn write(&mut self, batch: &RecordBatch) -> Result<(), String> {
        let encoder = match &mut self.encoder {
            Some((encoder, schema)) => {
                same_schema(schema, batch)?;
                encoder
            }
            None => {
                let encoder = StreamEncoder::try_new_with_options(
                    &batch.schema(),
                    IpcWriteOptions::default(),
                )
                .map_err(encode_error)?;
                &mut self.encoder.insert((encoder, batch.schema())).0
            }
        };
        let segments = encoder.encode(batch).map_err(encode_error)?;
        self.segments.extend(segments);
        Ok(())
    }

    /// The end-of-stream marker appended: every segment of the stream, in order.
    fn finish(mut self) -> Result<Vec<Buffer>, String> {
        let (encoder, _) = self
            .encoder
            .ok_or("the function produced no output batch")?;
        let end = encoder
            .finish()
            .map_err(|e| format!("cannot encode the output stream: {e}"))?;
        self.segments.extend(end);
        Ok(self.segments)
    }
}

/// The buffers a gathered result's segments point into, kept alive until the host frees the
/// segment list (whose address is the first field), or until the next gathered result.
static GATHERED: GuestStatic<Option<(u32, Vec<Buffer>)>> =
    GuestStatic(std::cell::UnsafeCell::new(None));

/// Called by `wasmlink_free`: freeing a gathered result's segment list frees its buffers too.
pub(crate) fn release_gathered(list: u32) {
    // SAFETY: single-threaded guest (see GuestStatic); no other reference to GATHERED is alive.
    let held = unsafe { &mut *GATHERED.0.get() };
    if held.as_ref().is_some_and(|(at, _)| *at == list) {
        *held = None;
    }
}

/// The segment list of a gathered result (`u32 address, u32 length` each, little-endian), and
/// the buffers the host will read through it. A segment inside the input region (a column the
/// function returned as it came) is listed but not kept: the region is the host's, valid until
/// the host frees it, which it does only after gathering (docs/abi.md), and holding its buffer
/// would look like a function that kept its input.
fn segment_list(segments: Vec<Buffer>, region: (usize, usize)) -> (Vec<u8>, Vec<Buffer>) {
    let (start, len) = region;
    let mut list = Vec::with_capacity(segments.len() * 8);
    let mut keep = Vec::with_capacity(segments.len());
    for segment in segments {
        if segment.is_empty() {
            continue;
        }
        list.extend_from_slice(&addr(segment.as_ptr()).to_le_bytes());
        list.extend_from_slice(&(segment.len() as u32).to_le_bytes());
        let at = segment.as_ptr() as usize;
        if !(at >= start && at + segment.len() <= start + len) {
            keep.push(segment);
        }
    }
    (list, keep)
}

/// Encodes one batch as an IPC stream (a `RecordBatch` result of a byte function): its
/// segments joined into one buffer the host will own.
fn encode_batch(batch: &RecordBatch) -> Result<Vec<u8>, String> {
    let mut out = GatheredStream::new();
    out.write(batch)?;
    let segments = out.finish()?;
    let mut bytes = Vec::with_capacity(segments.iter().map(|s| s.len()).sum());
    for segment in &segments {
        bytes.extend_from_slice(segment);
    }
    Ok(bytes)
}

impl IntoOutput for RecordBatch {
    fn into_output(self) -> Result<Output, String> {
        encode_batch(&self).map(Output::Owned)
    }
}

/// The result of a function that takes a `RecordBatch`.
pub trait BatchOutput {
    /// The output batch, or the message for status 1.
    fn into_batch(self) -> Result<RecordBatch, String>;
}

impl BatchOutput for RecordBatch {
    fn into_batch(self) -> Result<RecordBatch, String> {
        Ok(self)
    }
}

impl<E: Display> BatchOutput for Result<RecordBatch, E> {
    fn into_batch(self) -> Result<RecordBatch, String> {
        self.map_err(|e| e.to_string())
    }
}

/// The result of an in-place function.
pub trait InPlaceOutput {
    /// `Ok`, or the message for status 1.
    fn into_in_place(self) -> Result<(), String>;
}

impl InPlaceOutput for () {
    fn into_in_place(self) -> Result<(), String> {
        Ok(())
    }
}

impl<E: Display> InPlaceOutput for Result<(), E> {
    fn into_in_place(self) -> Result<(), String> {
        self.map_err(|e| e.to_string())
    }
}

/// Whether `output` is `input` passed through: the same schema and rows, and every column the
/// very same array (`Arc::ptr_eq`) as the input's column at that index.
fn passes_through(input: &RecordBatch, output: &RecordBatch) -> bool {
    input.schema_ref() == output.schema_ref()
        && input.num_rows() == output.num_rows()
        && input.num_columns() == output.num_columns()
        && input
            .columns()
            .iter()
            .zip(output.columns())
            .all(|(a, b)| Arc::ptr_eq(a, b))
}

/// Arrow function: each input batch goes through `f`; the results form the output stream,
/// handed to the host as a gathered result (status 3).
///
/// If the stream holds a single batch and `f` returns it unchanged (same schema, every column
/// the input's own array), nothing is encoded: the result is status 2 (in place) with an empty
/// column list, which tells the host that the output is its own input batch (docs/abi.md).
pub fn call_arrow<R: BatchOutput>(ptr: i32, len: i32, mut f: impl FnMut(RecordBatch) -> R) -> i32 {
    let mut run = || -> Result<(u32, Output), String> {
        let (mut buffer, owner) = input_buffer(ptr, len)?;
        let region = (buffer.as_ptr() as usize, buffer.len());
        let mut out = GatheredStream::new();
        // The first output is held back until a second batch shows up, so that a single
        // pass-through batch can be answered without encoding it.
        let mut first: Option<RecordBatch> = None;
        let mut first_passes = false;
        let mut seen = 0usize;
        let decoded = for_each_batch(&mut buffer, false, |batch| {
            seen += 1;
            if seen == 1 {
                let input = batch.clone();
                let output = f(batch).into_batch()?;
                first_passes = passes_through(&input, &output);
                first = Some(output);
                return Ok(());
            }
            if let Some(held) = first.take() {
                out.write(&held)?;
            }
            out.write(&f(batch).into_batch()?)
        })?;
        drop(buffer);
        if decoded == 1 && first_passes {
            drop(first);
            finish_input(owner)?;
            return Ok((STATUS_IN_PLACE, Output::Static(&[])));
        }
        if let Some(held) = first.take() {
            out.write(&held)?;
        }
        let (list, keep) = segment_list(out.finish()?, region);
        finish_input(owner)?;
        // SAFETY: single-threaded guest (see GuestStatic); no other reference to GATHERED is
        // alive. A result the host never freed is dropped here.
        unsafe { *GATHERED.0.get() = Some((addr(list.as_ptr()), keep)) };
        Ok((STATUS_GATHERED, Output::Owned(list)))
    };
    match run() {
        Ok((status, output)) => publish(status, output),
        Err(message) => publish_result(Err(message)),
    }
}

/// In-place function: `f` rewrites columns of each input batch inside the input region; the
/// result lists the columns it took mutably (status 2).
pub fn call_in_place<R: InPlaceOutput>(
    ptr: i32,
    len: i32,
    mut f: impl FnMut(&mut InPlaceBatch) -> R,
) -> i32 {
    let mut run = || -> Result<Vec<u8>, String> {
        let (mut buffer, owner) = input_buffer(ptr, len)?;
        let region = (buffer.as_ptr() as usize, buffer.len());
        let mut changed = BTreeSet::new();
        // require_alignment: a buffer copied for alignment would not be inside the region.
        for_each_batch(&mut buffer, true, |batch| {
            let mut in_place = InPlaceBatch {
                batch,
                region,
                changed: BTreeSet::new(),
            };
            f(&mut in_place).into_in_place()?;
            changed.extend(in_place.changed);
            Ok(())
        })?;
        drop(buffer);
        finish_input(owner)?;
        Ok(changed
            .into_iter()
            .flat_map(|c: u32| c.to_le_bytes())
            .collect())
    };
    match run() {
        Ok(indices) => publish(STATUS_IN_PLACE, Output::Owned(indices)),
        Err(message) => publish_result(Err(message)),
    }
}

/// A batch of the input stream whose value buffers can be rewritten in place (same lengths).
///
/// Only the columns taken through [`InPlaceBatch::primitive_values_mut`] or
/// [`InPlaceBatch::string_values_mut`] are reported to the host as changed; the host reuses
/// every other column of its input as it is.
pub struct InPlaceBatch {
    batch: RecordBatch,
    /// The input region (address, length).
    region: (usize, usize),
    changed: BTreeSet<u32>,
}

impl InPlaceBatch {
    /// The batch, read-only.
    pub fn batch(&self) -> &RecordBatch {
        &self.batch
    }

    fn column(&self, column: usize) -> Result<&dyn Array, String> {
        let name = |c: usize| format!("column {c}");
        self.batch
            .columns()
            .get(column)
            .map(|c| c.as_ref())
            .ok_or_else(|| {
                format!(
                    "{} does not exist: the batch has {} columns",
                    name(column),
                    self.batch.num_columns()
                )
            })
    }

    /// Marks `column` changed and checks that `[ptr, ptr+bytes)` lies in the input region.
    fn take(&mut self, column: usize, ptr: *const u8, bytes: usize) -> Result<(), String> {
        let (start, len) = self.region;
        let (p, end) = (ptr as usize, (ptr as usize).checked_add(bytes));
        if bytes != 0 && (p < start || end.is_none_or(|e| e > start + len)) {
            return Err(format!(
                "column {column}: its values are not inside the input buffer"
            ));
        }
        self.changed.insert(column as u32);
        Ok(())
    }

    /// The values of a primitive column (e.g. `Int64Type`), mutable in place. Null slots hold
    /// unspecified values; the validity bitmap cannot be changed.
    pub fn primitive_values_mut<T: ArrowPrimitiveType>(
        &mut self,
        column: usize,
    ) -> Result<&mut [T::Native], String> {
        let (ptr, n) = {
            let array = self.column(column)?;
            let values = array
                .as_any()
                .downcast_ref::<arrow_array::PrimitiveArray<T>>()
                .ok_or_else(|| {
                    format!(
                        "column {column} is {}, not {}",
                        array.data_type(),
                        T::DATA_TYPE
                    )
                })?
                .values();
            (values.as_ptr(), values.len())
        };
        self.take(column, ptr.cast(), n * std::mem::size_of::<T::Native>())?;
        // SAFETY: the values lie inside the input region (checked by `take`), which the host
        // lent to this call and which nothing else reads while this &mut borrow of self lives
        // (the batch is only reachable through self). The decoder checked their alignment.
        Ok(unsafe { std::slice::from_raw_parts_mut(ptr.cast_mut(), n) })
    }

    /// The value bytes of a Utf8 column, mutable in place. They must stay valid UTF-8 (the host
    /// validates what it reads back); offsets and lengths cannot change.
    pub fn string_values_mut(&mut self, column: usize) -> Result<&mut [u8], String> {
        let (ptr, n) = {
            let array = self.column(column)?;
            let values = array
                .as_any()
                .downcast_ref::<arrow_array::StringArray>()
                .ok_or_else(|| format!("column {column} is {}, not Utf8", array.data_type()))?
                .values();
            (values.as_ptr(), values.len())
        };
        self.take(column, ptr, n)?;
        // SAFETY: as in primitive_values_mut: inside the lent input region, exclusively
        // borrowed through self for the lifetime of the slice.
        Ok(unsafe { std::slice::from_raw_parts_mut(ptr.cast_mut(), n) })
    }
}
