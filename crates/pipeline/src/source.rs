//! Readers of the sources, cut into batches of exactly `batch_rows` rows (the last may have
//! fewer; a directory's batches also end at [`DIR_BATCH_BYTES`] of content). Every source is
//! deterministic, so a resumed run can skip what was committed.

use std::cell::Cell;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow_array::{ArrayRef, BinaryArray, RecordBatch, StringArray, UInt64Array};
use arrow_buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{ArrowError, DataType, Field, Schema};

use super::{MAX_LINE_BYTES, PipelineError, Progress, Source};
use wasmlink_host::exchange::IpcReader;
use wasmlink_host::plugin::IpcError;

/// A stream of batches, each `Err` a fatal one-line error.
pub(crate) type Batches = Box<dyn Iterator<Item = Result<RecordBatch, PipelineError>> + Send>;

/// Counts the bytes read through it.
struct Counting<R> {
    inner: R,
    count: Arc<Progress>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.bytes_read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl<R: Seek> Seek for Counting<R> {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(pos)
    }
}

fn open(path: &Path) -> Result<File, PipelineError> {
    File::open(path).map_err(|e| PipelineError::io(path, format!("cannot open: {e}")))
}

fn arrow_err(path: &Path, e: ArrowError) -> PipelineError {
    PipelineError::source(path, e.to_string().replace('\n', " "))
}

/// Fails a read once a line grows past `max` bytes (so a file without newlines is never read
/// whole), recording the 1-based number of that line in `too_long`.
struct LineLimit<R> {
    inner: R,
    max: usize,
    /// Bytes of the current line so far.
    len: usize,
    /// Newlines seen.
    lines: u64,
    too_long: Arc<AtomicU64>,
}

impl<R> LineLimit<R> {
    fn new(inner: R, max: usize) -> LineLimit<R> {
        LineLimit {
            inner,
            max,
            len: 0,
            lines: 0,
            too_long: Arc::default(),
        }
    }
}

impl<R: Read> Read for LineLimit<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        for &b in &buf[..n] {
            if b == b'\n' {
                self.lines += 1;
                self.len = 0;
            } else {
                self.len += 1;
                if self.len > self.max {
                    self.too_long.store(self.lines + 1, Ordering::Relaxed);
                    return Err(std::io::Error::other(format!(
                        "line {} is longer than {} bytes",
                        self.lines + 1,
                        self.max
                    )));
                }
            }
        }
        Ok(n)
    }
}

/// The error for a line past the limit.
fn line_too_long(path: &Path, line: u64, max: usize, kind: &str) -> PipelineError {
    PipelineError::Source {
        path: path.to_path_buf(),
        line: Some(line),
        message: format!(
            "line longer than {max} bytes (the limit of a {kind} source; is it {kind}?)"
        ),
    }
}

/// Infers the schema of a JSON Lines file from every line, reading one line at a time through
/// a [`LineLimit`]; an error names the line.
fn infer_jsonl_schema(
    path: &Path,
    file: &mut File,
    max_line: usize,
) -> Result<arrow_schema::Schema, PipelineError> {
    let limited = LineLimit::new(&mut *file, max_line);
    let too_long = limited.too_long.clone();
    let mut reader = BufReader::new(limited);
    let line_no = Cell::new(0u64);
    let failure: Cell<Option<PipelineError>> = Cell::new(None);
    let mut buf = Vec::new();
    let values = std::iter::from_fn(|| {
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(e) => {
                    let line = too_long.load(Ordering::Relaxed);
                    failure.set(Some(if line > 0 {
                        line_too_long(path, line, max_line, "JSON Lines")
                    } else {
                        PipelineError::io(path, format!("cannot read: {e}"))
                    }));
                    return Some(Err(ArrowError::JsonError(String::new())));
                }
            }
            line_no.set(line_no.get() + 1);
            if buf.iter().all(|b| b.is_ascii_whitespace()) {
                continue;
            }
            return Some(
                serde_json::from_slice::<serde_json::Value>(&buf).map_err(|e| {
                    // serde_json says "... at line 1 column C" of this one line.
                    let m = e.to_string();
                    let m = m.rsplit_once(" at line ").map_or(m.as_str(), |(m, _)| m);
                    failure.set(Some(PipelineError::Source {
                        path: path.to_path_buf(),
                        line: Some(line_no.get()),
                        message: format!("not valid JSON: {m} at column {}", e.column()),
                    }));
                    ArrowError::JsonError(String::new())
                }),
            );
        }
    });
    let schema = arrow_json::reader::infer_json_schema_from_iterator(values);
    schema.map_err(|e| {
        failure.take().unwrap_or_else(|| PipelineError::Source {
            path: path.to_path_buf(),
            line: Some(line_no.get()),
            message: e.to_string().replace('\n', " "),
        })
    })
}

/// Opens `source`; `bytes` counts the bytes read.
pub(crate) fn open_source(
    source: &Source,
    batch_rows: usize,
    bytes: Arc<Progress>,
) -> Result<Batches, PipelineError> {
    open_source_limited(source, batch_rows, bytes, MAX_LINE_BYTES)
}

/// As [`open_source`], with `max_line` as the longest line of a JSON Lines or CSV source.
pub(crate) fn open_source_limited(
    source: &Source,
    batch_rows: usize,
    bytes: Arc<Progress>,
    max_line: usize,
) -> Result<Batches, PipelineError> {
    let inner: Batches = match source {
        Source::JsonLines { path } => {
            let mut file = open(path)?;
            let schema = infer_jsonl_schema(path, &mut file, max_line)?;
            file.rewind()
                .map_err(|e| PipelineError::io(path, e.to_string()))?;
            let limited = LineLimit::new(
                Counting {
                    inner: file,
                    count: bytes,
                },
                max_line,
            );
            let too_long = limited.too_long.clone();
            let reader = arrow_json::ReaderBuilder::new(Arc::new(schema))
                .with_batch_size(batch_rows)
                .build(BufReader::new(limited))
                .map_err(|e| arrow_err(path, e))?;
            let p = path.clone();
            Box::new(reader.map(move |r| {
                r.map_err(|e| match too_long.load(Ordering::Relaxed) {
                    0 => arrow_err(&p, e),
                    line => line_too_long(&p, line, max_line, "JSON Lines"),
                })
            }))
        }
        Source::Csv { path } => {
            // Lines are bounded as for JSON Lines: a file without newlines is never read whole.
            let mut file = open(path)?;
            let format = arrow_csv::reader::Format::default().with_header(true);
            let limited = LineLimit::new(&mut file, max_line);
            let too_long = limited.too_long.clone();
            let inferred = format.infer_schema(&mut BufReader::new(limited), None);
            let (schema, _) = inferred.map_err(|e| match too_long.load(Ordering::Relaxed) {
                0 => arrow_err(path, e),
                line => line_too_long(path, line, max_line, "CSV"),
            })?;
            file.rewind()
                .map_err(|e| PipelineError::io(path, e.to_string()))?;
            let limited = LineLimit::new(
                Counting {
                    inner: file,
                    count: bytes,
                },
                max_line,
            );
            let too_long = limited.too_long.clone();
            let reader = arrow_csv::ReaderBuilder::new(Arc::new(schema))
                .with_format(format)
                .with_batch_size(batch_rows)
                .build(limited)
                .map_err(|e| arrow_err(path, e))?;
            let p = path.clone();
            Box::new(reader.map(move |r| {
                r.map_err(|e| match too_long.load(Ordering::Relaxed) {
                    0 => arrow_err(&p, e),
                    line => line_too_long(&p, line, max_line, "CSV"),
                })
            }))
        }
        Source::Arrow { path } => {
            let mut file = open(path)?;
            let mut magic = [0u8; 6];
            let is_file = file.read_exact(&mut magic).is_ok() && &magic == b"ARROW1";
            file.rewind()
                .map_err(|e| PipelineError::io(path, e.to_string()))?;
            // Untrusted: read one message at a time by the host's checked reader, which checks
            // every buffer of a message against its body before arrow builds arrays (and
            // arrow then validates the arrays). A panic in arrow all the same is caught and
            // ends the stream with an error.
            fn bad(path: &Path, m: String) -> PipelineError {
                PipelineError::source(path, m.replace('\n', " "))
            }
            fn ipc_err(path: &Path, e: IpcError) -> PipelineError {
                bad(path, e.to_string())
            }
            let counted = BufReader::new(Counting {
                inner: file,
                count: bytes,
            });
            let reader = crate::catch_quiet(|| {
                if is_file {
                    IpcReader::file(counted)
                } else {
                    IpcReader::stream(counted)
                }
            })
            .map_err(|m| bad(path, format!("bad Arrow IPC data: {m}")))?
            .map_err(|e| ipc_err(path, e))?;
            let p = path.clone();
            let mut inner = Some(reader);
            Box::new(std::iter::from_fn(move || {
                let it = inner.as_mut()?;
                let r = match crate::catch_quiet(|| it.next()) {
                    Ok(None) => None,
                    Ok(Some(r)) => Some(r.map_err(|e| ipc_err(&p, e))),
                    Err(m) => Some(Err(bad(&p, format!("bad Arrow IPC data: {m}")))),
                };
                if !matches!(r, Some(Ok(_))) {
                    inner = None;
                }
                r
            }))
        }
        Source::Parquet { path } => Box::new(super::parquet_io::open(
            open(path)?,
            path,
            batch_rows,
            Some(bytes),
        )?),
        Source::Dir {
            path,
            extensions,
            binary,
            include,
            exclude,
        } => {
            let files = dir_files(path, extensions, include, exclude)?;
            // Cut here, by rows and bytes: not re-cut (and copied) by `Rebatch`.
            return Ok(Box::new(DirBatches {
                root: path.clone(),
                files: files.into_iter(),
                batch_rows,
                batch_bytes: DIR_BATCH_BYTES,
                binary: *binary,
                bytes,
            }));
        }
        Source::Batches(batches) => {
            let total: usize = batches.iter().map(|b| b.get_array_memory_size()).sum();
            bytes.bytes_read.fetch_add(total as u64, Ordering::Relaxed);
            Box::new(batches.clone().into_iter().map(Ok))
        }
    };
    Ok(Box::new(Rebatch {
        inner,
        pending: Vec::new(),
        rows: 0,
        batch_rows,
        done: false,
    }))
}

/// Compiles one glob pattern of a `Source::Dir` (`*` and `?` stay within a directory); `Err`
/// is globset's reason, without the pattern it would repeat. As in ripgrep's `-g` and
/// .gitignore, a pattern without a `/` matches a name at any depth (`*.md` is `**/*.md`).
pub(crate) fn glob(pattern: &str) -> Result<globset::Glob, String> {
    let anywhere;
    let pattern = if pattern.contains('/') {
        pattern
    } else {
        anywhere = format!("**/{pattern}");
        &anywhere
    };
    globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map_err(|e| e.kind().to_string())
}

/// Compiles glob patterns (see `Source::Dir`); `field` names them in errors.
pub(crate) fn globs(field: &str, patterns: &[String]) -> Result<globset::GlobSet, PipelineError> {
    let bad = |message: String| PipelineError::Spec {
        stage: None,
        field: field.to_string(),
        message,
    };
    let mut set = globset::GlobSetBuilder::new();
    for p in patterns {
        set.add(glob(p).map_err(|m| bad(format!("bad pattern `{p}`: {m}")))?);
    }
    set.build().map_err(|e| bad(e.kind().to_string()))
}

/// The files a directory source reads, in order: (path relative to `root`, `/`-separated;
/// full path). See `Source::Dir` for the filters.
pub(crate) fn dir_files(
    root: &Path,
    extensions: &[String],
    include: &[String],
    exclude: &[String],
) -> Result<Vec<(String, PathBuf)>, PipelineError> {
    let wanted: Vec<String> = extensions.iter().map(|e| e.to_ascii_lowercase()).collect();
    let include_set = globs("source.include", include)?;
    let exclude_set = globs("source.exclude", exclude)?;
    let relative = |path: &Path| -> String {
        let rel = path.strip_prefix(root).unwrap_or(path);
        let parts: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        parts.join("/")
    };
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries = std::fs::read_dir(&dir)
            .map_err(|e| PipelineError::io(&dir, format!("cannot list: {e}")))?;
        for entry in entries {
            let entry = entry.map_err(|e| PipelineError::io(&dir, format!("cannot list: {e}")))?;
            let path = entry.path();
            // The type from the directory entry (no system call on most file systems); a
            // symbolic link is followed, as before, with one `stat` of its target.
            let ty = entry
                .file_type()
                .map_err(|e| PipelineError::io(&path, e.to_string()))?;
            let ty = if ty.is_symlink() {
                std::fs::metadata(&path)
                    .map_err(|e| PipelineError::io(&path, e.to_string()))?
                    .file_type()
            } else {
                ty
            };
            let rel = relative(&path);
            if exclude_set.is_match(&rel) {
                continue;
            }
            if ty.is_dir() {
                stack.push(path);
            } else if ty.is_file() {
                let ext = path
                    .extension()
                    .map(|e| e.to_string_lossy().to_ascii_lowercase());
                let by_extension = wanted.is_empty() || ext.is_some_and(|e| wanted.contains(&e));
                let by_pattern = include.is_empty() || include_set.is_match(&rel);
                if by_extension && by_pattern {
                    out.push((rel, path));
                }
            }
        }
    }
    // Component by component, so `a/b` sorts before `a-b`.
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

/// A directory source's batch ends at `batch-rows` files or as soon as the content it has read
/// reaches this many bytes, whichever comes first. Without it, 64 large pages made batches of
/// 23 MB (the Rust docs), and every stage's linear memory grew to hold the largest batch it
/// saw, in every worker: the peak memory of `wasmlink index` followed the largest pages, not
/// the batch size. 4 MiB rather than 8: with `wasmlink index`'s 256 documents a batch, the
/// Rust docs index faster (fewer segments to write and merge) in less memory (157 MiB peak,
/// where 64 documents and 8 MiB took 166; BENCHMARKS.md). A file larger than this is a batch
/// of its own.
pub const DIR_BATCH_BYTES: usize = 4 << 20;

struct DirBatches {
    root: PathBuf,
    files: std::vec::IntoIter<(String, PathBuf)>,
    batch_rows: usize,
    batch_bytes: usize,
    binary: bool,
    bytes: Arc<Progress>,
}

impl DirBatches {
    /// Reads the next batch of files (up to `batch_rows` files or `batch_bytes` of content)
    /// straight into one Arrow values buffer (no copy per file); `None` when none are left.
    fn read_batch(&mut self) -> Option<Result<RecordBatch, PipelineError>> {
        let mut names = Vec::new();
        // Room for a whole batch at once: growing by doubling copied each batch's bytes about
        // twice more and faulted in fresh pages every time (only the pages written count).
        let mut values: Vec<u8> = Vec::with_capacity(self.batch_bytes.min(64 << 20));
        let mut offsets: Vec<i32> = vec![0];
        let mut sizes = Vec::new();
        while names.len() < self.batch_rows && values.len() < self.batch_bytes {
            let Some((rel, p)) = self.files.next() else {
                break;
            };
            let size = match self.read_file(&p, &mut values) {
                Ok(size) => size,
                Err(e) => return Some(Err(e)),
            };
            let end = match i32::try_from(values.len()) {
                Ok(end) => end,
                Err(_) => {
                    return Some(Err(PipelineError::source(
                        &p,
                        "the batch that reaches this file holds over 2 GiB of content (Arrow's \
                         32-bit offsets); exclude files this large",
                    )));
                }
            };
            sizes.push(size);
            offsets.push(end);
            names.push(rel);
        }
        if names.is_empty() {
            return None;
        }
        Some(self.assemble(names, offsets, values, sizes))
    }

    /// Appends the content of `p` to `values` (as text, made valid UTF-8, unless binary);
    /// returns the file's size.
    fn read_file(&self, p: &Path, values: &mut Vec<u8>) -> Result<u64, PipelineError> {
        let start = values.len();
        File::open(p)
            .and_then(|mut f| f.read_to_end(values))
            .map_err(|e| PipelineError::io(p, format!("cannot read: {e}")))?;
        let size = values.len() - start;
        self.bytes
            .bytes_read
            .fetch_add(size as u64, Ordering::Relaxed);
        if !self.binary && std::str::from_utf8(&values[start..]).is_err() {
            let text = String::from_utf8_lossy(&values[start..]).into_owned();
            values.truncate(start);
            values.extend_from_slice(text.as_bytes());
        }
        Ok(size as u64)
    }

    /// The batch of `names` and their content.
    fn assemble(
        &self,
        names: Vec<String>,
        offsets: Vec<i32>,
        values: Vec<u8>,
        sizes: Vec<u64>,
    ) -> Result<RecordBatch, PipelineError> {
        let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
        let values = Buffer::from_vec(values);
        let content: ArrayRef = if self.binary {
            Arc::new(
                BinaryArray::try_new(offsets, values, None)
                    .map_err(|e| PipelineError::source(&self.root, e.to_string()))?,
            )
        } else {
            Arc::new(
                StringArray::try_new(offsets, values, None)
                    .map_err(|e| PipelineError::source(&self.root, e.to_string()))?,
            )
        };
        let schema = Schema::new(vec![
            Field::new("path", DataType::Utf8, false),
            Field::new(
                "content",
                if self.binary {
                    DataType::Binary
                } else {
                    DataType::Utf8
                },
                false,
            ),
            Field::new("size", DataType::UInt64, false),
        ]);
        RecordBatch::try_new(
            Arc::new(schema),
            vec![
                Arc::new(StringArray::from(names)),
                content,
                Arc::new(UInt64Array::from(sizes)),
            ],
        )
        .map_err(|e| PipelineError::source(&self.root, e.to_string()))
    }
}

impl Iterator for DirBatches {
    type Item = Result<RecordBatch, PipelineError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.read_batch()
    }
}

/// Re-cuts batches of any size into batches of exactly `batch_rows` rows.
struct Rebatch {
    inner: Batches,
    pending: Vec<RecordBatch>,
    rows: usize,
    batch_rows: usize,
    done: bool,
}

impl Rebatch {
    fn take(&mut self, n: usize) -> Result<RecordBatch, PipelineError> {
        let pending = std::mem::take(&mut self.pending);
        let all = if pending.len() == 1 {
            pending.into_iter().next().unwrap_or_else(|| unreachable!())
        } else {
            let schema = pending[0].schema();
            arrow_select::concat::concat_batches(&schema, &pending).map_err(|e| {
                PipelineError::Engine(format!("source: batches do not concatenate: {e}"))
            })?
        };
        let n = n.min(all.num_rows());
        let rest = all.num_rows() - n;
        if rest > 0 {
            self.pending.push(all.slice(n, rest));
        }
        self.rows = rest;
        Ok(if rest > 0 { all.slice(0, n) } else { all })
    }
}

impl Iterator for Rebatch {
    type Item = Result<RecordBatch, PipelineError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.rows >= self.batch_rows {
                return Some(self.take(self.batch_rows));
            }
            if self.done {
                return if self.rows > 0 {
                    Some(self.take(self.rows))
                } else {
                    None
                };
            }
            match self.inner.next() {
                Some(Ok(b)) => {
                    if b.num_rows() > 0 {
                        self.rows += b.num_rows();
                        self.pending.push(b);
                    }
                }
                Some(Err(e)) => {
                    self.done = true;
                    self.pending.clear();
                    self.rows = 0;
                    return Some(Err(e));
                }
                None => self.done = true,
            }
        }
    }
}
