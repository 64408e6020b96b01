//! Apache Parquet for pipelines and `wasmlink call`: a guarded, streaming reader and the
//! sink's writer.
//!
//! The reader goes through [`Guarded`], which checks every byte range the file's metadata asks
//! for against the file's real length before anything is allocated or read, so a hostile
//! footer (a column chunk "of 2^60 bytes") is an error, not an allocation failure. It reads one
//! row group at a time (the arrow reader's own streaming), never the whole file.
//!
//! The writer ([`ParquetOut`]) closes a row group only after a whole batch, once it holds at
//! least `row_group_rows` rows, so row-group boundaries depend only on the batches and a
//! resumed run writes the same bytes as an uninterrupted one. After each closed row group the
//! sink records a checkpoint: the file's length and a footer describing the row groups so far
//! ([`ParquetOut::prefix_footer`]); the committed prefix plus that footer is a complete Parquet
//! file, which a resumed run re-reads and re-encodes ([`ParquetOut::resume`]).

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use arrow_array::RecordBatch;
use arrow_schema::{Schema, SchemaRef};
use bytes::Bytes;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader,
    ParquetRecordBatchReaderBuilder,
};
use parquet::basic::Compression;
use parquet::errors::ParquetError;
use parquet::file::metadata::{FileMetaData, KeyValue, ParquetMetaData, ParquetMetaDataWriter};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{ChunkReader, Length};

use super::{PipelineError, Progress};

/// The four bytes a Parquet file starts and ends with.
pub const PARQUET_MAGIC: &[u8; 4] = b"PAR1";

/// A file whose reads are checked against its length (taken once, when opened) and counted.
#[derive(Clone)]
struct Guarded {
    file: Arc<File>,
    len: u64,
    count: Option<Arc<Progress>>,
}

impl Guarded {
    fn range(&self, start: u64, length: u64) -> Result<(), ParquetError> {
        match start.checked_add(length) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(ParquetError::EOF(format!(
                "the metadata points at {length} byte(s) from offset {start}, past the end of \
                 the file ({} bytes)",
                self.len
            ))),
        }
    }

    fn counted(&self, n: u64) {
        if let Some(c) = &self.count {
            c.bytes_read.fetch_add(n, Ordering::Relaxed);
        }
    }
}

impl Length for Guarded {
    fn len(&self) -> u64 {
        self.len
    }
}

/// A reader that stops at the file's length and counts what it reads.
struct Counted {
    inner: BufReader<std::io::Take<File>>,
    count: Option<Arc<Progress>>,
}

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if let Some(c) = &self.count {
            c.bytes_read.fetch_add(n as u64, Ordering::Relaxed);
        }
        Ok(n)
    }
}

impl ChunkReader for Guarded {
    type T = Counted;

    fn get_read(&self, start: u64) -> Result<Counted, ParquetError> {
        self.range(start, 0)?;
        let mut f = self.file.try_clone()?;
        f.seek(SeekFrom::Start(start))?;
        Ok(Counted {
            inner: BufReader::new(f.take(self.len - start)),
            count: self.count.clone(),
        })
    }

    fn get_bytes(&self, start: u64, length: usize) -> Result<Bytes, ParquetError> {
        self.range(start, length as u64)?;
        let mut f = self.file.try_clone()?;
        f.seek(SeekFrom::Start(start))?;
        let mut buf = vec![0u8; length];
        f.read_exact(&mut buf)?;
        self.counted(length as u64);
        Ok(buf.into())
    }
}

/// Runs `f`, turning a panic into an error message. The parquet crate still asserts on some
/// malformed pages (e.g. a dictionary-encoded data page with no dictionary page before it),
/// which no check of the footer can rule out; a hostile file must give an error, not bring the
/// host down.
fn unpanic<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    crate::catch_quiet(f).map_err(|m| format!("the parquet reader failed: {}", one_line(m)))
}

fn one_line(e: impl std::fmt::Display) -> String {
    e.to_string().replace('\n', " ")
}

fn not_parquet(name: &Path, e: impl std::fmt::Display) -> PipelineError {
    PipelineError::source(name, format!("not a Parquet file: {}", one_line(e)))
}

/// A checkpoint error for a committed Parquet prefix that cannot be read back.
fn cannot_resume(name: &Path, e: &PipelineError) -> PipelineError {
    let message = match e {
        PipelineError::Source { message, .. } | PipelineError::Io { message, .. } => {
            message.clone()
        }
        e => e.to_string(),
    };
    PipelineError::checkpoint(name, format!("cannot resume: {message}"))
}

/// Checks the magic at both ends and reads the footer.
fn load(
    file: File,
    name: &Path,
    count: Option<Arc<Progress>>,
) -> Result<(Guarded, ArrowReaderMetadata), PipelineError> {
    let len = file
        .metadata()
        .map_err(|e| PipelineError::io(name, e.to_string()))?
        .len();
    let g = Guarded {
        file: Arc::new(file),
        len,
        count,
    };
    let mut head = [0u8; 4];
    let mut tail = [0u8; 4];
    let ends = len >= 12
        && (|| -> std::io::Result<()> {
            let mut f = g.file.as_ref();
            f.seek(SeekFrom::Start(0))?;
            f.read_exact(&mut head)?;
            f.seek(SeekFrom::Start(len - 4))?;
            f.read_exact(&mut tail)
        })()
        .is_ok();
    if !ends || &head != PARQUET_MAGIC {
        return Err(not_parquet(
            name,
            format!("{len} bytes, not starting with `PAR1` and ending with a footer"),
        ));
    }
    if &tail != PARQUET_MAGIC {
        return Err(not_parquet(
            name,
            "it does not end with `PAR1` (truncated, or still being written?)",
        ));
    }
    let meta = unpanic(|| ArrowReaderMetadata::load(&g, ArrowReaderOptions::new()))
        .map_err(|e| not_parquet(name, e))?
        .map_err(|e| not_parquet(name, e))?;
    check_chunks(meta.metadata(), len).map_err(|e| not_parquet(name, e))?;
    Ok((g, meta))
}

/// Checks that every column chunk the footer describes lies inside the file. The parquet
/// crate asserts (panics) on a negative offset or size (`ColumnChunkMetaData::byte_range`), and
/// would allocate a buffer of whatever size the footer claims.
fn check_chunks(meta: &ParquetMetaData, len: u64) -> Result<(), String> {
    for (i, group) in meta.row_groups().iter().enumerate() {
        if group.num_rows() < 0 {
            return Err(format!(
                "row group {i} has a negative row count ({})",
                group.num_rows()
            ));
        }
        for (j, c) in group.columns().iter().enumerate() {
            let start = c.dictionary_page_offset().unwrap_or(c.data_page_offset());
            let size = c.compressed_size();
            let inside = start >= 0
                && size >= 0
                && c.data_page_offset() >= 0
                && (start as u64)
                    .checked_add(size as u64)
                    .is_some_and(|end| end <= len);
            if !inside {
                return Err(format!(
                    "row group {i}, column {j} (`{}`): its chunk ({size} bytes at offset \
                     {start}) is not inside the file ({len} bytes)",
                    c.column_path().string()
                ));
            }
        }
    }
    Ok(())
}

/// A stream of the batches of a Parquet file, at most `batch_rows` rows each; each `Err` is a
/// one-line error naming the file.
pub(crate) struct ParquetBatches {
    reader: ParquetRecordBatchReader,
    name: std::path::PathBuf,
    failed: bool,
}

impl Iterator for ParquetBatches {
    type Item = Result<RecordBatch, PipelineError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let r = match unpanic(|| self.reader.next()) {
            Ok(r) => r?.map_err(one_line),
            Err(m) => Err(m),
        };
        Some(r.map_err(|e| {
            self.failed = true;
            PipelineError::source(&self.name, format!("bad Parquet data: {e}"))
        }))
    }
}

/// Opens a Parquet file for streaming in batches of `batch_rows` rows; `count` counts the bytes
/// read.
pub(crate) fn open(
    file: File,
    name: &Path,
    batch_rows: usize,
    count: Option<Arc<Progress>>,
) -> Result<ParquetBatches, PipelineError> {
    let (g, meta) = load(file, name, count)?;
    let reader = unpanic(|| {
        ParquetRecordBatchReaderBuilder::new_with_metadata(g, meta)
            .with_batch_size(batch_rows.max(1))
            .build()
    })
    .map_err(|e| not_parquet(name, e))?
    .map_err(|e| not_parquet(name, e))?;
    Ok(ParquetBatches {
        reader,
        name: name.to_path_buf(),
        failed: false,
    })
}

/// Reads every batch of the Parquet file `file`; `name` names it in errors, which are one line
/// (`NAME: not a Parquet file: ...`, `NAME: bad Parquet data: ...`). Byte ranges named by the
/// file's metadata are checked against its length before they are read, so a hostile or
/// truncated file gives an error rather than a panic or a huge allocation.
pub fn read_parquet(file: File, name: &Path) -> Result<Vec<RecordBatch>, PipelineError> {
    open(file, name, 64 * 1024, None)?.collect()
}

/// The properties of every Parquet file wasmlink writes: Snappy pages, and no row-group limit
/// of the writer's own (the caller closes row groups).
pub fn parquet_properties() -> WriterProperties {
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(None)
        .set_max_row_group_bytes(None)
        .build()
}

/// The Parquet encoding of `batches` as one file (one row group per 1 Mi rows, closed at batch
/// boundaries). With no batch, a file with no columns and no rows.
pub fn encode_parquet(batches: &[RecordBatch]) -> Result<Vec<u8>, PipelineError> {
    let enc = |e: ParquetError| PipelineError::Encode(one_line(e));
    let schema = batches
        .first()
        .map(|b| b.schema())
        .unwrap_or_else(|| Arc::new(Schema::empty()));
    let mut out = ParquetOut::new(schema, 1 << 20).map_err(enc)?;
    let mut bytes = Vec::new();
    for b in batches {
        let (data, _) = out.write(b).map_err(enc)?;
        bytes.extend_from_slice(&data);
    }
    bytes.extend_from_slice(&out.finish().map_err(enc)?);
    Ok(bytes)
}

/// The sink's Parquet writer: encodes into memory and hands back the bytes to append.
pub(crate) struct ParquetOut {
    writer: ArrowWriter<Vec<u8>>,
    pub schema: SchemaRef,
    row_group_rows: usize,
}

impl ParquetOut {
    pub(crate) fn new(
        schema: SchemaRef,
        row_group_rows: usize,
    ) -> Result<ParquetOut, ParquetError> {
        Ok(ParquetOut {
            writer: ArrowWriter::try_new(Vec::new(), schema.clone(), Some(parquet_properties()))?,
            schema,
            row_group_rows: row_group_rows.max(1),
        })
    }

    /// The bytes written since the last call.
    fn take(&mut self) -> Result<Vec<u8>, ParquetError> {
        self.writer.sync()?;
        Ok(std::mem::take(self.writer.inner_mut()))
    }

    /// Encodes a batch; closes the row group if it now holds `row_group_rows` rows or more.
    /// Returns the bytes to append and whether a row group was closed.
    pub(crate) fn write(&mut self, batch: &RecordBatch) -> Result<(Vec<u8>, bool), ParquetError> {
        self.writer.write(batch)?;
        let closed = self.writer.in_progress_rows() >= self.row_group_rows;
        if closed {
            self.writer.flush()?;
        }
        Ok((self.take()?, closed))
    }

    /// A footer for the row groups closed so far: the bytes written up to now plus this footer
    /// are a complete Parquet file (without the page indexes, which the final footer adds).
    pub(crate) fn prefix_footer(&self) -> Result<Vec<u8>, ParquetError> {
        let groups = self.writer.flushed_row_groups().to_vec();
        let Some(first) = groups.first() else {
            return Ok(Vec::new());
        };
        let rows = groups.iter().map(|g| g.num_rows()).sum();
        let kv = KeyValue::new(
            parquet::arrow::ARROW_SCHEMA_META_KEY.to_string(),
            parquet::arrow::encode_arrow_schema(&self.schema),
        );
        let file = FileMetaData::new(
            1,
            rows,
            None,
            Some(vec![kv]),
            first.schema_descr_ptr(),
            None,
        );
        let meta = ParquetMetaData::new(file, groups);
        let mut footer = Vec::new();
        ParquetMetaDataWriter::new(&mut footer, &meta).finish()?;
        Ok(footer)
    }

    /// Closes the last row group and writes the footer; returns the remaining bytes.
    pub(crate) fn finish(&mut self) -> Result<Vec<u8>, ParquetError> {
        self.writer.finish()?;
        self.take()
    }

    /// Rebuilds the writer of an interrupted run from its committed prefix: `prefix` (opened
    /// for reading) is that prefix followed by its footer. Its row groups are re-encoded one by
    /// one, each closed where it was, so the bytes handed to `append` are the committed prefix
    /// again and the writer knows every row group for the final footer.
    pub(crate) fn resume(
        prefix: File,
        name: &Path,
        row_group_rows: usize,
        append: &mut dyn FnMut(&[u8]) -> Result<(), PipelineError>,
    ) -> Result<ParquetOut, PipelineError> {
        let (g, meta) = load(prefix, name, None).map_err(|e| cannot_resume(name, &e))?;
        let bad = |e: ParquetError| {
            PipelineError::checkpoint(name, format!("cannot resume: {}", one_line(e)))
        };
        let mut out = ParquetOut::new(meta.schema().clone(), row_group_rows).map_err(bad)?;
        for i in 0..meta.metadata().num_row_groups() {
            let mut batches = ParquetBatches {
                reader: unpanic(|| {
                    ParquetRecordBatchReaderBuilder::new_with_metadata(g.clone(), meta.clone())
                        .with_row_groups(vec![i])
                        .with_batch_size(64 * 1024)
                        .build()
                })
                .map_err(|e| PipelineError::checkpoint(name, format!("cannot resume: {e}")))?
                .map_err(bad)?,
                name: name.to_path_buf(),
                failed: false,
            };
            for batch in &mut batches {
                let batch = batch.map_err(|e| cannot_resume(name, &e))?;
                out.writer.write(&batch).map_err(bad)?;
            }
            out.writer.flush().map_err(bad)?;
            let data = out.take().map_err(bad)?;
            append(&data)?;
        }
        Ok(out)
    }
}
