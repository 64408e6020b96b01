//! Readers of the sources, cut into batches of exactly `batch_rows` rows (the last may have
//! fewer). Every source is deterministic, so a resumed run can skip what was committed.

use std::fs::File;
use std::io::{BufReader, Read, Seek};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use arrow_array::{ArrayRef, BinaryArray, RecordBatch, StringArray, UInt64Array};
use arrow_buffer::{Buffer, OffsetBuffer, ScalarBuffer};
use arrow_schema::{ArrowError, DataType, Field, Schema};

use super::{PipelineError, Progress, Source};

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

fn open(path: &Path) -> Result<File, PipelineError> {
    File::open(path).map_err(|e| PipelineError(format!("{}: cannot open: {e}", path.display())))
}

fn arrow_err(path: &Path, e: ArrowError) -> PipelineError {
    let m = e.to_string();
    PipelineError(format!("{}: {}", path.display(), m.replace('\n', " ")))
}

/// Opens `source`; `bytes` counts the bytes read.
pub(crate) fn open_source(
    source: &Source,
    batch_rows: usize,
    bytes: Arc<Progress>,
) -> Result<Batches, PipelineError> {
    let inner: Batches = match source {
        Source::JsonLines { path } => {
            let mut file = BufReader::new(open(path)?);
            let (schema, _) = arrow_json::reader::infer_json_schema_from_seekable(&mut file, None)
                .map_err(|e| arrow_err(path, e))?;
            file.rewind()
                .map_err(|e| PipelineError(format!("{}: {e}", path.display())))?;
            let reader = arrow_json::ReaderBuilder::new(Arc::new(schema))
                .with_batch_size(batch_rows)
                .build(BufReader::new(Counting {
                    inner: file.into_inner(),
                    count: bytes,
                }))
                .map_err(|e| arrow_err(path, e))?;
            let p = path.clone();
            Box::new(reader.map(move |r| r.map_err(|e| arrow_err(&p, e))))
        }
        Source::Csv { path } => {
            let mut file = open(path)?;
            let format = arrow_csv::reader::Format::default().with_header(true);
            let (schema, _) = format
                .infer_schema(&mut BufReader::new(&mut file), None)
                .map_err(|e| arrow_err(path, e))?;
            file.rewind()
                .map_err(|e| PipelineError(format!("{}: {e}", path.display())))?;
            let reader = arrow_csv::ReaderBuilder::new(Arc::new(schema))
                .with_format(format)
                .with_batch_size(batch_rows)
                .build(Counting {
                    inner: file,
                    count: bytes,
                })
                .map_err(|e| arrow_err(path, e))?;
            let p = path.clone();
            Box::new(reader.map(move |r| r.map_err(|e| arrow_err(&p, e))))
        }
        Source::Arrow { path } => {
            let mut file = open(path)?;
            let mut magic = [0u8; 6];
            let is_file = file.read_exact(&mut magic).is_ok() && &magic == b"ARROW1";
            file.rewind()
                .map_err(|e| PipelineError(format!("{}: {e}", path.display())))?;
            let p = path.clone();
            if is_file {
                let len = file.metadata().map(|m| m.len()).unwrap_or(0);
                bytes.bytes_read.fetch_add(len, Ordering::Relaxed);
                let reader = arrow_ipc::reader::FileReader::try_new(file, None)
                    .map_err(|e| arrow_err(path, e))?;
                Box::new(reader.map(move |r| r.map_err(|e| arrow_err(&p, e))))
            } else {
                let reader = arrow_ipc::reader::StreamReader::try_new(
                    BufReader::new(Counting {
                        inner: file,
                        count: bytes,
                    }),
                    None,
                )
                .map_err(|e| arrow_err(path, e))?;
                Box::new(reader.map(move |r| r.map_err(|e| arrow_err(&p, e))))
            }
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
            Box::new(DirBatches {
                root: path.clone(),
                files: files.into_iter(),
                batch_rows,
                binary: *binary,
                bytes,
            })
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
/// is globset's reason, without the pattern it would repeat.
pub(crate) fn glob(pattern: &str) -> Result<globset::Glob, String> {
    globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map_err(|e| e.kind().to_string())
}

/// Compiles glob patterns (see `Source::Dir`); `field` names them in errors.
pub(crate) fn globs(field: &str, patterns: &[String]) -> Result<globset::GlobSet, PipelineError> {
    let mut set = globset::GlobSetBuilder::new();
    for p in patterns {
        set.add(glob(p).map_err(|m| PipelineError(format!("{field}: bad pattern `{p}`: {m}")))?);
    }
    set.build()
        .map_err(|e| PipelineError(format!("{field}: {}", e.kind())))
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
            .map_err(|e| PipelineError(format!("{}: cannot list: {e}", dir.display())))?;
        for entry in entries {
            let entry =
                entry.map_err(|e| PipelineError(format!("{}: cannot list: {e}", dir.display())))?;
            let path = entry.path();
            let ty = std::fs::metadata(&path)
                .map_err(|e| PipelineError(format!("{}: {e}", path.display())))?;
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

struct DirBatches {
    root: PathBuf,
    files: std::vec::IntoIter<(String, PathBuf)>,
    batch_rows: usize,
    binary: bool,
    bytes: Arc<Progress>,
}

impl DirBatches {
    /// Reads a batch of files straight into one Arrow values buffer (no copy per file).
    fn read_batch(&mut self, files: Vec<(String, PathBuf)>) -> Result<RecordBatch, PipelineError> {
        let mut names = Vec::with_capacity(files.len());
        let mut values: Vec<u8> = Vec::new();
        let mut offsets: Vec<i32> = Vec::with_capacity(files.len() + 1);
        offsets.push(0);
        let mut sizes = Vec::with_capacity(files.len());
        for (rel, p) in files {
            let start = values.len();
            File::open(&p)
                .and_then(|mut f| f.read_to_end(&mut values))
                .map_err(|e| PipelineError(format!("{}: cannot read: {e}", p.display())))?;
            let size = values.len() - start;
            self.bytes
                .bytes_read
                .fetch_add(size as u64, Ordering::Relaxed);
            if !self.binary && std::str::from_utf8(&values[start..]).is_err() {
                let text = String::from_utf8_lossy(&values[start..]).into_owned();
                values.truncate(start);
                values.extend_from_slice(text.as_bytes());
            }
            let end = i32::try_from(values.len()).map_err(|_| {
                PipelineError(format!(
                    "{}: the batch that reaches this file holds over 2 GiB of content (Arrow's \
                     32-bit offsets); use a smaller batch-rows, or exclude files this large",
                    p.display()
                ))
            })?;
            offsets.push(end);
            names.push(rel);
            sizes.push(size as u64);
        }
        let offsets = OffsetBuffer::new(ScalarBuffer::from(offsets));
        let values = Buffer::from_vec(values);
        let content: ArrayRef = if self.binary {
            Arc::new(
                BinaryArray::try_new(offsets, values, None)
                    .map_err(|e| PipelineError(format!("{}: {e}", self.root.display())))?,
            )
        } else {
            Arc::new(
                StringArray::try_new(offsets, values, None)
                    .map_err(|e| PipelineError(format!("{}: {e}", self.root.display())))?,
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
        .map_err(|e| PipelineError(format!("{}: {e}", self.root.display())))
    }
}

impl Iterator for DirBatches {
    type Item = Result<RecordBatch, PipelineError>;

    fn next(&mut self) -> Option<Self::Item> {
        let files: Vec<(String, PathBuf)> = self.files.by_ref().take(self.batch_rows).collect();
        if files.is_empty() {
            return None;
        }
        Some(self.read_batch(files))
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
            arrow_select::concat::concat_batches(&schema, &pending)
                .map_err(|e| PipelineError(format!("source: batches do not concatenate: {e}")))?
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
