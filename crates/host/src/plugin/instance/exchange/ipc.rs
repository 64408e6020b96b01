//! Arrow IPC as the exchange reads it from guests and files and writes it for them.
//!
//! Every IPC byte that comes from outside the host (a guest's output, its in-place result, a
//! file given to `wasmlink call --arrow`) is untrusted. Before arrow builds an array from a
//! message, the message is checked here: its body lies inside the stream, every buffer lies
//! inside its body, no node has a negative length, a union's type-id and offset buffers cover
//! its length, and the body is not compressed. Arrow then validates the arrays themselves
//! (offsets, UTF-8, null counts), since nothing here skips its validation. The checks read
//! the metadata only: linear in the number of buffers, no copy of any body.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_buffer::Buffer;
use arrow_ipc::{Message, MessageHeader, MetadataVersion};
use arrow_schema::{ArrowError, DataType, Field, Fields, UnionMode};

use super::{SchemaRef, violation};
use crate::plugin::error::IpcError;

const CONTINUATION: u32 = 0xFFFF_FFFF;

fn eos() -> String {
    ArrowError::IpcError("Unexpected End of Stream".into()).to_string()
}

/// An arrow error, as compressed (refused) or malformed IPC.
fn arrow_err(e: ArrowError) -> IpcError {
    let m = e.to_string();
    if m.to_ascii_lowercase().contains("compress") {
        IpcError::Compressed(m)
    } else {
        IpcError::Malformed(m)
    }
}

/// Checks a record batch message (or a dictionary's data) against the `body_len` bytes of its
/// body, before arrow slices a buffer out of it. `fields` are the columns it holds, when known:
/// then a union's buffers are checked against its length too.
/// Runs one of arrow's decoders with its internal asserts (a typed buffer whose length is no
/// multiple of its width, ...) turned into an error: `Err(Ok(e))` is arrow's error,
/// `Err(Err(text))` an assert it hit. The checks of `check_batch` come first; this is the
/// second guard, so a guest can never panic the host through its IPC bytes.
fn guarded<T>(f: impl FnOnce() -> Result<T, ArrowError>) -> Result<T, Result<ArrowError, String>> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(Ok),
        Err(p) => {
            let text = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a buffer arrow cannot read".into());
            Err(Err(format!("malformed buffer ({text})")))
        }
    }
}

fn check_batch(
    rb: &arrow_ipc::RecordBatch<'_>,
    body_len: usize,
    fields: Option<&Fields>,
    version: MetadataVersion,
) -> Result<(), IpcError> {
    if let Some(c) = rb.compression() {
        return Err(IpcError::Compressed(format!(
            "the record batch is compressed ({:?})",
            c.codec()
        )));
    }
    if rb.length() < 0 {
        return Err(IpcError::Malformed(format!(
            "a record batch has a negative length {}",
            rb.length()
        )));
    }
    let buffers: Vec<(i64, i64)> = rb
        .buffers()
        .map(|b| b.iter().map(|b| (b.offset(), b.length())).collect())
        .unwrap_or_default();
    for (i, &(offset, length)) in buffers.iter().enumerate() {
        let end = u64::try_from(offset)
            .ok()
            .zip(u64::try_from(length).ok())
            .and_then(|(o, l)| o.checked_add(l));
        if end.is_none_or(|end| end > body_len as u64) {
            return Err(IpcError::Malformed(format!(
                "buffer {i} (offset {offset}, length {length}) lies outside its message's \
                 {body_len}-byte body"
            )));
        }
        // The format pads every buffer to 8 bytes; arrow slices typed buffers from these
        // offsets and panics on one it cannot align.
        if offset % 8 != 0 {
            return Err(IpcError::Malformed(format!(
                "buffer {i} (offset {offset}) is not aligned to 8 bytes, as the Arrow IPC \
                 format requires"
            )));
        }
    }
    let nodes: Vec<(i64, i64)> = rb
        .nodes()
        .map(|n| n.iter().map(|n| (n.length(), n.null_count())).collect())
        .unwrap_or_default();
    for (i, &(length, nulls)) in nodes.iter().enumerate() {
        if length < 0 || nulls < 0 || nulls > length {
            return Err(IpcError::Malformed(format!(
                "field node {i} has length {length} and null count {nulls}"
            )));
        }
    }
    if let Some(fields) = fields
        && fields.iter().any(|f| has_union(f.data_type()))
    {
        let mut walk = Walk {
            nodes,
            buffers,
            variadic: rb
                .variadicBufferCounts()
                .map(|v| v.iter().collect())
                .unwrap_or_default(),
            next: (0, 0, 0),
            v4: version < MetadataVersion::V5,
        };
        for f in fields {
            walk.field(f)?;
        }
    }
    Ok(())
}

fn has_union(t: &DataType) -> bool {
    match t {
        DataType::Union(..) => true,
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::ListView(f)
        | DataType::LargeListView(f)
        | DataType::FixedSizeList(f, _)
        | DataType::Map(f, _) => has_union(f.data_type()),
        DataType::Struct(fs) => fs.iter().any(|f| has_union(f.data_type())),
        DataType::RunEndEncoded(a, b) => has_union(a.data_type()) || has_union(b.data_type()),
        _ => false,
    }
}

/// The nodes and buffers of a record batch, consumed field by field in the order arrow reads
/// them, to check what arrow slices by a node's length rather than by validation (unions).
struct Walk {
    nodes: Vec<(i64, i64)>,
    buffers: Vec<(i64, i64)>,
    variadic: Vec<i64>,
    /// The next node, buffer and variadic count.
    next: (usize, usize, usize),
    v4: bool,
}

impl Walk {
    fn short() -> IpcError {
        IpcError::Malformed("a record batch lists fewer nodes or buffers than its schema".into())
    }

    fn node(&mut self) -> Result<u64, IpcError> {
        let n = self.nodes.get(self.next.0).ok_or_else(Self::short)?;
        self.next.0 += 1;
        Ok(n.0 as u64)
    }

    fn buffer(&mut self) -> Result<u64, IpcError> {
        let b = self.buffers.get(self.next.1).ok_or_else(Self::short)?;
        self.next.1 += 1;
        Ok(b.1 as u64)
    }

    fn skip(&mut self, buffers: usize) -> Result<(), IpcError> {
        for _ in 0..buffers {
            self.buffer()?;
        }
        Ok(())
    }

    fn field(&mut self, f: &Field) -> Result<(), IpcError> {
        use DataType::*;
        match f.data_type() {
            Null => {
                self.node()?;
            }
            Utf8 | Binary | LargeUtf8 | LargeBinary => {
                self.node()?;
                self.skip(3)?;
            }
            Utf8View | BinaryView => {
                let n = *self.variadic.get(self.next.2).ok_or_else(Self::short)?;
                self.next.2 += 1;
                self.node()?;
                self.skip(
                    usize::try_from(n)
                        .map_err(|_| Self::short())?
                        .saturating_add(2),
                )?;
            }
            List(c) | LargeList(c) | Map(c, _) => {
                self.node()?;
                self.skip(2)?;
                self.field(c)?;
            }
            ListView(c) | LargeListView(c) => {
                self.node()?;
                self.skip(3)?;
                self.field(c)?;
            }
            FixedSizeList(c, _) => {
                self.node()?;
                self.skip(1)?;
                self.field(c)?;
            }
            Struct(children) => {
                self.node()?;
                self.skip(1)?;
                for c in children {
                    self.field(c)?;
                }
            }
            RunEndEncoded(a, b) => {
                self.node()?;
                self.field(a)?;
                self.field(b)?;
            }
            Union(children, mode) => {
                let len = self.node()?;
                if self.v4 {
                    self.skip(1)?;
                }
                let type_ids = self.buffer()?;
                let offsets = match mode {
                    UnionMode::Dense => Some(self.buffer()?),
                    UnionMode::Sparse => None,
                };
                if type_ids < len || offsets.is_some_and(|o| o / 4 < len) {
                    return Err(IpcError::Malformed(format!(
                        "the union column `{}` of length {len} has shorter type-id or offset \
                         buffers",
                        f.name()
                    )));
                }
                for (_, c) in children.iter() {
                    self.field(c)?;
                }
            }
            _ => {
                self.node()?;
                self.skip(2)?;
            }
        }
        Ok(())
    }
}

/// The value field of dictionary `id` in `fields`, searched depth first.
#[allow(deprecated)]
fn dictionary_values(fields: &Fields, id: i64) -> Option<Field> {
    for f in fields {
        if let DataType::Dictionary(_, values) = f.data_type()
            && f.dict_id() == Some(id)
        {
            return Some(Field::new("values", values.as_ref().clone(), true));
        }
        let children: Option<Fields> = match f.data_type() {
            DataType::List(c)
            | DataType::LargeList(c)
            | DataType::ListView(c)
            | DataType::LargeListView(c)
            | DataType::FixedSizeList(c, _)
            | DataType::Map(c, _) => Some(vec![c.clone()].into()),
            DataType::Struct(cs) => Some(cs.clone()),
            DataType::RunEndEncoded(a, b) => Some(vec![a.clone(), b.clone()].into()),
            DataType::Union(cs, _) => Some(cs.iter().map(|(_, c)| c.clone()).collect()),
            _ => None,
        };
        if let Some(found) = children.and_then(|cs| dictionary_values(&cs, id)) {
            return Some(found);
        }
    }
    None
}

/// Builds batches from checked messages, one at a time.
#[derive(Default)]
struct Decoder {
    schema: Option<SchemaRef>,
    dictionaries: HashMap<i64, arrow_array::ArrayRef>,
    batches: Vec<RecordBatch>,
}

impl Decoder {
    /// Checks one message against its `body` and decodes it.
    fn message(&mut self, message: Message<'_>, body: &Buffer) -> Result<(), IpcError> {
        let missing =
            || IpcError::Malformed(ArrowError::IpcError("Missing schema".into()).to_string());
        let version = message.version();
        match message.header_type() {
            MessageHeader::Schema => {
                if self.schema.is_some() {
                    return Err(IpcError::Malformed(
                        ArrowError::IpcError(
                            "Not expecting a schema when messages are read".into(),
                        )
                        .to_string(),
                    ));
                }
                let fb = message
                    .header_as_schema()
                    .ok_or_else(|| IpcError::Malformed("unreadable schema message".into()))?;
                let schema = arrow_ipc::convert::try_fb_to_schema(fb).map_err(arrow_err)?;
                self.schema = Some(Arc::new(schema));
            }
            MessageHeader::RecordBatch => {
                let schema = self.schema.clone().ok_or_else(missing)?;
                let rb = message
                    .header_as_record_batch()
                    .ok_or_else(|| IpcError::Malformed("unreadable record batch message".into()))?;
                check_batch(&rb, body.len(), Some(schema.fields()), version)?;
                let dictionaries = &self.dictionaries;
                let batch = guarded(|| {
                    arrow_ipc::reader::read_record_batch(
                        body,
                        rb,
                        schema,
                        dictionaries,
                        None,
                        &version,
                    )
                })
                .map_err(|e| e.map_or_else(IpcError::Malformed, arrow_err))?;
                self.batches.push(batch);
            }
            MessageHeader::DictionaryBatch => {
                let schema = self.schema.clone().ok_or_else(missing)?;
                let dict = message
                    .header_as_dictionary_batch()
                    .ok_or_else(|| IpcError::Malformed("unreadable dictionary message".into()))?;
                let data = dict.data().ok_or_else(|| {
                    IpcError::Malformed("a dictionary batch holds no data".into())
                })?;
                let values: Option<Fields> =
                    dictionary_values(schema.fields(), dict.id()).map(|f| vec![f].into());
                check_batch(&data, body.len(), values.as_ref(), version)?;
                arrow_ipc::reader::read_dictionary(
                    body,
                    dict,
                    &schema,
                    &mut self.dictionaries,
                    &version,
                )
                .map_err(arrow_err)?;
            }
            MessageHeader::NONE => {}
            t => {
                return Err(IpcError::Malformed(format!(
                    "unsupported message type {t:?} in an Arrow IPC stream"
                )));
            }
        }
        Ok(())
    }
}

fn word(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
}

/// Decodes an IPC stream held in `buf`, checking every message before arrow builds arrays
/// from it (module docs), refusing compression and trailing bytes. Bodies are not copied: the
/// batches share `buf` (unless a buffer is misaligned for its type, which arrow copies).
///
/// # Errors
///
/// [`IpcError::Truncated`], [`IpcError::Compressed`] or [`IpcError::Malformed`].
pub fn decode_stream(buf: Buffer) -> Result<Vec<RecordBatch>, IpcError> {
    let bytes = buf.as_slice();
    let mut decoder = Decoder::default();
    let mut at = 0usize;
    while at < bytes.len() {
        let first = word(bytes, at).ok_or_else(|| IpcError::Truncated(eos()))?;
        let (size, meta_at) = if first == CONTINUATION {
            let size = word(bytes, at + 4).ok_or_else(|| IpcError::Truncated(eos()))?;
            (size as usize, at + 8)
        } else {
            (first as usize, at + 4)
        };
        if size == 0 {
            // The end-of-stream marker: nothing may follow it.
            if meta_at < bytes.len() {
                return Err(IpcError::Malformed(
                    ArrowError::IpcError("Unexpected EOS".into()).to_string(),
                ));
            }
            break;
        }
        let meta = bytes
            .get(meta_at..meta_at.saturating_add(size))
            .ok_or_else(|| IpcError::Truncated(eos()))?;
        let message = arrow_ipc::root_as_message(meta)
            .map_err(|e| IpcError::Malformed(format!("Unable to get root as message: {e:?}")))?;
        let body_at = meta_at + size;
        let body_len = usize::try_from(message.bodyLength()).map_err(|_| {
            IpcError::Malformed(format!(
                "a message declares a body of {} bytes",
                message.bodyLength()
            ))
        })?;
        if body_len > bytes.len() - body_at {
            return Err(IpcError::Truncated(eos()));
        }
        let body = buf.slice_with_length(body_at, body_len);
        decoder.message(message, &body)?;
        at = body_at + body_len;
    }
    Ok(decoder.batches)
}

/// A file block's offset, metadata length and body length, checked to be non-negative and to
/// lie before the footer at `footer_at` (shared by the in-memory and the streaming reader).
fn block_span(block: &arrow_ipc::Block, footer_at: u64) -> Result<(u64, u64, u64), IpcError> {
    let bad = |m: &str| IpcError::File(m.to_string());
    let span = |v: i64| u64::try_from(v).ok();
    let (Some(at), Some(meta_len), Some(body_len)) = (
        span(block.offset()),
        span(i64::from(block.metaDataLength())),
        span(block.bodyLength()),
    ) else {
        return Err(bad("a block has a negative offset or length"));
    };
    if at
        .checked_add(meta_len)
        .and_then(|b| b.checked_add(body_len))
        .is_none_or(|end| end > footer_at)
    {
        return Err(bad("a block lies outside the file"));
    }
    Ok((at, meta_len, body_len))
}

/// Reads Arrow IPC bytes in either the stream or the file format, checked as
/// [`decode_stream`] checks a stream; a file's blocks are checked to lie inside it.
///
/// # Errors
///
/// [`IpcError::File`] for a malformed file, else as [`decode_stream`].
pub fn read_ipc(bytes: &[u8]) -> Result<Vec<RecordBatch>, IpcError> {
    if bytes.starts_with(b"ARROW1") {
        return read_file(bytes).map_err(|e| match e {
            IpcError::Malformed(m) | IpcError::Truncated(m) => IpcError::File(m),
            other => other,
        });
    }
    decode_stream(Buffer::from(bytes))
}

fn read_file(bytes: &[u8]) -> Result<Vec<RecordBatch>, IpcError> {
    let bad = |m: &str| IpcError::File(m.to_string());
    let n = bytes.len();
    let trailer: [u8; 10] = n
        .checked_sub(10)
        .and_then(|t| bytes[t..].try_into().ok())
        .ok_or_else(|| bad("the file is too short"))?;
    let footer_len = arrow_ipc::reader::read_footer_length(trailer)
        .map_err(|e| IpcError::File(e.to_string()))?;
    let footer_end = n - 10;
    let footer_at = footer_end
        .checked_sub(footer_len)
        .filter(|&at| at >= 8)
        .ok_or_else(|| bad("the footer is longer than the file"))?;
    let footer = arrow_ipc::root_as_footer(&bytes[footer_at..footer_end])
        .map_err(|e| IpcError::File(format!("Unable to get root as footer: {e:?}")))?;
    let fb_schema = footer
        .schema()
        .ok_or_else(|| bad("the footer holds no schema"))?;
    let schema = arrow_ipc::convert::try_fb_to_schema(fb_schema).map_err(arrow_err)?;
    let mut decoder = Decoder {
        schema: Some(Arc::new(schema)),
        ..Decoder::default()
    };
    // One copy into an aligned buffer; the batches share it.
    let buf = Buffer::from(bytes);
    let blocks = footer
        .dictionaries()
        .into_iter()
        .flatten()
        .chain(footer.recordBatches().into_iter().flatten());
    for block in blocks {
        // In memory, so every span fits a usize once it lies before the footer.
        let (at, meta_len, body_len) = block_span(block, footer_at as u64)?;
        let (at, meta_len, body_len) = (at as usize, meta_len as usize, body_len as usize);
        let body_at = at + meta_len;
        let meta = &bytes[at..body_at];
        let meta = match word(meta, 0) {
            Some(CONTINUATION) if meta.len() >= 8 => &meta[8..],
            Some(_) => &meta[4..],
            None => return Err(bad("a block's metadata is too short")),
        };
        let message = arrow_ipc::root_as_message(meta)
            .map_err(|e| IpcError::File(format!("Unable to get root as message: {e:?}")))?;
        if message.header_type() == MessageHeader::Schema {
            return Err(bad("a block holds a second schema"));
        }
        let body = buf.slice_with_length(body_at, body_len);
        decoder.message(message, &body)?;
    }
    Ok(decoder.batches)
}

/// Reads Arrow IPC from a file or a pipe one batch at a time, each message checked as
/// [`decode_stream`] checks one before arrow builds arrays from it; memory holds one message.
/// [`IpcReader::stream`] reads the stream format from any reader, [`IpcReader::file`] the
/// file format (its footer and blocks) from a seekable one. After an error the iterator ends.
pub struct IpcReader<R> {
    inner: R,
    decoder: Decoder,
    /// The file format: the blocks still to read (offset, metadata length, body length) and
    /// how to seek to one. `None` for a stream.
    file: Option<(Blocks, SeekFn<R>)>,
    done: bool,
}

/// A file's blocks: offset, metadata length, body length.
type Blocks = std::collections::VecDeque<(u64, usize, usize)>;
type SeekFn<R> = fn(&mut R, u64) -> std::io::Result<()>;

/// Reads exactly `len` bytes, allocating as they arrive (a declared length is not trusted).
fn read_len(r: &mut impl std::io::Read, len: usize) -> Result<Vec<u8>, IpcError> {
    use std::io::Read;
    let mut v = Vec::with_capacity(len.min(64 << 20));
    r.by_ref()
        .take(len as u64)
        .read_to_end(&mut v)
        .map_err(|e| IpcError::Malformed(format!("cannot read: {e}")))?;
    if v.len() < len {
        return Err(IpcError::Truncated(eos()));
    }
    Ok(v)
}

impl<R: std::io::Read> IpcReader<R> {
    /// Reads the stream format; the schema message is read (and checked) here.
    ///
    /// # Errors
    ///
    /// As [`decode_stream`], for the schema message.
    pub fn stream(inner: R) -> Result<IpcReader<R>, IpcError> {
        let mut reader = IpcReader {
            inner,
            decoder: Decoder::default(),
            file: None,
            done: false,
        };
        while reader.decoder.schema.is_none() {
            if !reader.next_message()? {
                return Err(IpcError::Truncated(eos()));
            }
        }
        Ok(reader)
    }

    /// The schema of the batches.
    pub fn schema(&self) -> SchemaRef {
        self.decoder
            .schema
            .clone()
            .unwrap_or_else(|| Arc::new(arrow_schema::Schema::empty()))
    }

    /// Reads and decodes the next message of a stream; `false` at its end.
    fn next_message(&mut self) -> Result<bool, IpcError> {
        let mut word = [0u8; 4];
        let n = read_some(&mut self.inner, &mut word)?;
        let first = match n {
            0 => None,
            4 => Some(u32::from_le_bytes(word)),
            _ => return Err(IpcError::Truncated(eos())),
        };
        let Some(first) = first else {
            return Ok(false);
        };
        let size = if first == CONTINUATION {
            let w = read_len(&mut self.inner, 4)?;
            u32::from_le_bytes([w[0], w[1], w[2], w[3]])
        } else {
            first
        };
        if size == 0 {
            if read_some(&mut self.inner, &mut [0u8; 1])? > 0 {
                return Err(IpcError::Malformed(
                    ArrowError::IpcError("Unexpected EOS".into()).to_string(),
                ));
            }
            return Ok(false);
        }
        let meta = read_len(&mut self.inner, size as usize)?;
        let message = arrow_ipc::root_as_message(&meta)
            .map_err(|e| IpcError::Malformed(format!("Unable to get root as message: {e:?}")))?;
        let body_len = usize::try_from(message.bodyLength()).map_err(|_| {
            IpcError::Malformed(format!(
                "a message declares a body of {} bytes",
                message.bodyLength()
            ))
        })?;
        let body = Buffer::from(read_len(&mut self.inner, body_len)?);
        self.decoder.message(message, &body)?;
        Ok(true)
    }

    /// Reads and decodes the next block of a file; `false` after the last.
    fn next_block(&mut self) -> Result<bool, IpcError> {
        let Some((blocks, seek)) = &mut self.file else {
            return Ok(false);
        };
        let Some((at, meta_len, body_len)) = blocks.pop_front() else {
            return Ok(false);
        };
        seek(&mut self.inner, at).map_err(|e| IpcError::File(format!("cannot seek: {e}")))?;
        let meta = read_len(&mut self.inner, meta_len).map_err(as_file)?;
        let meta = match word(&meta, 0) {
            Some(CONTINUATION) if meta.len() >= 8 => &meta[8..],
            Some(_) => &meta[4..],
            None => return Err(IpcError::File("a block's metadata is too short".into())),
        };
        let message = arrow_ipc::root_as_message(meta)
            .map_err(|e| IpcError::File(format!("Unable to get root as message: {e:?}")))?;
        let body = Buffer::from(read_len(&mut self.inner, body_len).map_err(as_file)?);
        self.decoder.message(message, &body).map_err(as_file)?;
        Ok(true)
    }
}

/// Fills `buf` unless the reader ends first; how many bytes were read.
fn read_some(r: &mut impl std::io::Read, buf: &mut [u8]) -> Result<usize, IpcError> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(IpcError::Malformed(format!("cannot read: {e}"))),
        }
    }
    Ok(n)
}

fn as_file(e: IpcError) -> IpcError {
    match e {
        IpcError::Malformed(m) | IpcError::Truncated(m) => IpcError::File(m),
        other => other,
    }
}

impl<R: std::io::Read + std::io::Seek> IpcReader<R> {
    /// Reads the file format: its footer (schema and block list) is read and checked here,
    /// every block is checked to lie before the footer.
    ///
    /// # Errors
    ///
    /// [`IpcError::File`] for a malformed footer.
    pub fn file(mut inner: R) -> Result<IpcReader<R>, IpcError> {
        use std::io::SeekFrom;
        let bad = |m: &str| IpcError::File(m.to_string());
        let io = |e: std::io::Error| IpcError::File(format!("cannot read: {e}"));
        let n = inner.seek(SeekFrom::End(0)).map_err(io)?;
        let trailer_at = n
            .checked_sub(10)
            .ok_or_else(|| bad("the file is too short"))?;
        inner.seek(SeekFrom::Start(trailer_at)).map_err(io)?;
        let trailer: [u8; 10] = read_len(&mut inner, 10)
            .map_err(as_file)?
            .try_into()
            .map_err(|_| bad("the file is too short"))?;
        let footer_len = arrow_ipc::reader::read_footer_length(trailer)
            .map_err(|e| IpcError::File(e.to_string()))?;
        let footer_at = trailer_at
            .checked_sub(footer_len as u64)
            .filter(|&at| at >= 8)
            .ok_or_else(|| bad("the footer is longer than the file"))?;
        inner.seek(SeekFrom::Start(footer_at)).map_err(io)?;
        let footer_bytes = read_len(&mut inner, footer_len).map_err(as_file)?;
        let footer = arrow_ipc::root_as_footer(&footer_bytes)
            .map_err(|e| IpcError::File(format!("Unable to get root as footer: {e:?}")))?;
        let fb_schema = footer
            .schema()
            .ok_or_else(|| bad("the footer holds no schema"))?;
        let schema = arrow_ipc::convert::try_fb_to_schema(fb_schema).map_err(arrow_err)?;
        let mut blocks = std::collections::VecDeque::new();
        for block in footer
            .dictionaries()
            .into_iter()
            .flatten()
            .chain(footer.recordBatches().into_iter().flatten())
        {
            let (at, meta_len, body_len) = block_span(block, footer_at)?;
            blocks.push_back((at, meta_len as usize, body_len as usize));
        }
        Ok(IpcReader {
            inner,
            decoder: Decoder {
                schema: Some(Arc::new(schema)),
                ..Decoder::default()
            },
            file: Some((blocks, |r: &mut R, at| {
                r.seek(SeekFrom::Start(at)).map(|_| ())
            })),
            done: false,
        })
    }
}

impl<R: std::io::Read> Iterator for IpcReader<R> {
    type Item = Result<RecordBatch, IpcError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            if let Some(batch) = self.decoder.batches.pop() {
                return Some(Ok(batch));
            }
            let more = if self.file.is_some() {
                self.next_block()
            } else {
                self.next_message()
            };
            match more {
                Ok(true) => {}
                Ok(false) => self.done = true,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        self.decoder.batches.pop().map(Ok)
    }
}

impl<R> std::fmt::Debug for IpcReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IpcReader")
            .field("file", &self.file.is_some())
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

/// Encodes batches as one Arrow IPC stream (for files and tests).
///
/// # Errors
///
/// [`IpcError::NoBatch`] for an empty slice; [`IpcError::Encode`] if arrow cannot write them.
pub fn encode_stream(batches: &[RecordBatch]) -> Result<Vec<u8>, IpcError> {
    let Some(first) = batches.first() else {
        return Err(IpcError::NoBatch);
    };
    let mut w = arrow_ipc::writer::StreamWriter::try_new(Vec::new(), &first.schema())
        .map_err(IpcError::Encode)?;
    for b in batches {
        w.write(b).map_err(IpcError::Encode)?;
    }
    w.into_inner().map_err(IpcError::Encode)
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
pub(super) fn read_in_place(
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
                .get(o..o.saturating_add(4))
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| bad("is truncated"))
        };
        let (meta_len, meta_at) = if word(at)? == 0xFFFF_FFFF {
            (word(at + 4)? as usize, at + 8)
        } else {
            (word(at)? as usize, at + 4)
        };
        let meta = region
            .get(meta_at..meta_at.saturating_add(meta_len))
            .ok_or_else(|| bad("is truncated"))?;
        let message =
            arrow_ipc::root_as_message(meta).map_err(|_| bad("has a corrupt message header"))?;
        let body_start = meta_at + meta_len;
        if message.header_as_record_batch().is_some() {
            break (message, body_start);
        }
        at = body_start
            .saturating_add(usize::try_from(message.bodyLength()).map_err(|_| bad("is corrupt"))?);
    };
    let rb = message
        .header_as_record_batch()
        .ok_or_else(|| bad("has no record batch"))?;
    let body_len = usize::try_from(message.bodyLength()).map_err(|_| bad("is corrupt"))?;
    let body = region
        .get(body_start..body_start.saturating_add(body_len))
        .ok_or_else(|| bad("body is truncated"))?;
    // The guest may have changed more than values: every buffer and node is checked again.
    check_batch(&rb, body_len, Some(schema.fields()), message.version())
        .map_err(|e| bad(&format!("is no longer valid: {e}")))?;
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
    let projected = guarded(|| {
        arrow_ipc::reader::read_record_batch(
            &Buffer::from(host),
            rb,
            schema.clone(),
            &std::collections::HashMap::new(),
            Some(cols),
            &message.version(),
        )
    })
    .map_err(|e| match e {
        Ok(e) => bad(&format!("does not decode: {e}")),
        Err(m) => bad(&format!("does not decode: {m}")),
    })?;
    Ok(projected.columns().to_vec())
}
