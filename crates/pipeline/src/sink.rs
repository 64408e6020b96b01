//! The sink side: output and dead-letter files written to `PATH.tmp-<pid>`, the checkpoint
//! (`PATH.progress`), and the rename into place at the end.
//!
//! Each batch is encoded into memory first and appended to the temporary file in one write, so
//! the file's length after each batch is known exactly. A checkpoint syncs both temporary files
//! and then atomically replaces the progress file; a resumed run truncates the temporary files
//! to the recorded lengths, which removes anything written after the checkpoint.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_ipc::writer::StreamWriter;
use serde::{Deserialize, Serialize};

use super::parquet_io::ParquetOut;
use super::{PipelineError, Sink};

/// The checkpoint file's contents.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Checkpoint {
    /// Identifies the pipeline (source, batch size, stages' modules and functions, sink).
    pub fingerprint: String,
    /// The first sequence number not yet committed.
    pub next_seq: u64,
    pub output_tmp: Option<PathBuf>,
    pub output_bytes: u64,
    pub dead_tmp: Option<PathBuf>,
    pub dead_bytes: u64,
    pub batches_written: u64,
    pub rows_written: u64,
    pub failed_batches: u64,
    pub failed_rows: u64,
    /// Parquet sink only: a footer (base64) for the committed row groups, so that the
    /// committed prefix plus this footer is a complete Parquet file a resumed run re-reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parquet_footer: Option<String>,
}

fn io_err(path: &Path, what: &str, e: std::io::Error) -> PipelineError {
    PipelineError(format!("{}: {what}: {e}", path.display()))
}

/// `PATH` + `suffix`.
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// A temporary file appended to in whole records.
pub(crate) struct TmpFile {
    pub tmp: PathBuf,
    pub target: PathBuf,
    file: File,
    pub bytes: u64,
}

impl TmpFile {
    /// Creates `target.tmp-<pid>`, or reopens `resume_from` truncated to `bytes`.
    fn open(target: &Path, resume_from: Option<(&Path, u64)>) -> Result<TmpFile, PipelineError> {
        TmpFile::open_avoiding(target, resume_from, None)
    }

    /// As [`TmpFile::open`]; a fresh file is never named `avoid`.
    fn open_avoiding(
        target: &Path,
        resume_from: Option<(&Path, u64)>,
        avoid: Option<&Path>,
    ) -> Result<TmpFile, PipelineError> {
        if let Some(parent) = target.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)
                .map_err(|e| io_err(parent, "cannot create directory", e))?;
        }
        match resume_from {
            Some((tmp, bytes)) => {
                let file = OpenOptions::new()
                    .write(true)
                    .open(tmp)
                    .map_err(|e| io_err(tmp, "cannot reopen to resume", e))?;
                let len = file
                    .metadata()
                    .map_err(|e| io_err(tmp, "cannot resume", e))?
                    .len();
                if len < bytes {
                    return Err(PipelineError(format!(
                        "{}: cannot resume: {len} bytes, but the checkpoint committed {bytes}",
                        tmp.display()
                    )));
                }
                file.set_len(bytes)
                    .map_err(|e| io_err(tmp, "cannot truncate to resume", e))?;
                let mut t = TmpFile {
                    tmp: tmp.to_path_buf(),
                    target: target.to_path_buf(),
                    file,
                    bytes,
                };
                use std::io::Seek;
                t.file
                    .seek(std::io::SeekFrom::Start(bytes))
                    .map_err(|e| io_err(tmp, "cannot resume", e))?;
                Ok(t)
            }
            None => {
                let mut tmp = with_suffix(target, &format!(".tmp-{}", std::process::id()));
                if Some(tmp.as_path()) == avoid {
                    // Resumed in the same process: the old temporary file is still being read.
                    tmp = with_suffix(&tmp, "-1");
                }
                let file = File::create(&tmp).map_err(|e| io_err(&tmp, "cannot create", e))?;
                Ok(TmpFile {
                    tmp,
                    target: target.to_path_buf(),
                    file,
                    bytes: 0,
                })
            }
        }
    }

    fn append(&mut self, data: &[u8]) -> Result<(), PipelineError> {
        self.file
            .write_all(data)
            .map_err(|e| io_err(&self.tmp, "cannot write", e))?;
        self.bytes += data.len() as u64;
        Ok(())
    }

    fn sync(&mut self) -> Result<(), PipelineError> {
        self.file
            .sync_data()
            .map_err(|e| io_err(&self.tmp, "cannot sync", e))
    }

    fn commit(mut self) -> Result<(), PipelineError> {
        self.sync()?;
        drop(self.file);
        std::fs::rename(&self.tmp, &self.target).map_err(|e| {
            PipelineError(format!(
                "cannot rename {} to {}: {e}",
                self.tmp.display(),
                self.target.display()
            ))
        })
    }
}

enum Format {
    Arrow(Option<Box<(StreamWriter<Vec<u8>>, arrow_schema::SchemaRef)>>),
    JsonLines,
    Csv,
    /// The writer (created with the first batch) and the row-group size.
    Parquet(Option<Box<ParquetOut>>, usize),
}

/// Where written batches and dead letters go, with the checkpoint.
pub(crate) struct Output {
    format: Option<Format>,
    out: Option<TmpFile>,
    dead: Option<TmpFile>,
    progress: Option<PathBuf>,
    pub state: Checkpoint,
    /// Parquet sink only: the state as of the last closed row group, which is what a
    /// checkpoint records (the rows after it are computed again by a resumed run).
    committed: Option<Checkpoint>,
}

/// The checkpoint file of a pipeline: next to its output, else next to its dead-letter file.
pub(crate) fn progress_path(sink: &Sink, dead_letter: Option<&Path>) -> Option<PathBuf> {
    sink.path()
        .or(dead_letter)
        .map(|p| with_suffix(p, ".progress"))
}

fn read_checkpoint(path: &Path) -> Result<Option<Checkpoint>, PipelineError> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
            PipelineError(format!(
                "{}: not a pipeline checkpoint: {e}",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path, "cannot read", e)),
    }
}

impl Output {
    /// Opens the outputs: fresh ones (removing an earlier run's checkpoint and temporary
    /// files), or, with `resume` and a checkpoint of the same pipeline, the committed ones.
    pub(crate) fn open(
        sink: &Sink,
        dead_letter: Option<&Path>,
        fingerprint: &str,
        resume: bool,
    ) -> Result<Output, PipelineError> {
        let progress = progress_path(sink, dead_letter);
        let previous = match &progress {
            Some(p) => read_checkpoint(p)?,
            None if resume => {
                return Err(PipelineError(
                    "--resume needs a sink path or a dead-letter file to keep a checkpoint next \
                     to"
                    .into(),
                ));
            }
            None => None,
        };
        let resumed = match previous {
            Some(cp) if resume => {
                if cp.fingerprint != fingerprint {
                    return Err(PipelineError(format!(
                        "{}: cannot resume: the checkpoint is of a different pipeline (source, \
                         batch size, stages or sink changed); run without --resume to start over",
                        progress.as_deref().unwrap_or(Path::new("")).display()
                    )));
                }
                Some(cp)
            }
            Some(cp) => {
                // Starting over: the earlier run's temporary files are garbage now.
                for t in cp.output_tmp.iter().chain(&cp.dead_tmp) {
                    let _ = std::fs::remove_file(t);
                }
                if let Some(p) = &progress {
                    let _ = std::fs::remove_file(p);
                }
                None
            }
            None => None,
        };
        let reopen = |target: Option<&Path>, tmp: &Option<PathBuf>, bytes: u64| {
            target
                .map(|t| TmpFile::open(t, tmp.as_deref().map(|p| (p, bytes))))
                .transpose()
        };
        let cp = resumed.clone().unwrap_or_default();
        let out = reopen(sink.path(), &cp.output_tmp, cp.output_bytes)?;
        let dead = reopen(dead_letter, &cp.dead_tmp, cp.dead_bytes)?;
        let format = match sink {
            Sink::Arrow(_) => Some(Format::Arrow(None)),
            Sink::JsonLines(_) => Some(Format::JsonLines),
            Sink::Csv(_) => Some(Format::Csv),
            Sink::Parquet { row_group_rows, .. } => Some(Format::Parquet(None, *row_group_rows)),
            Sink::None => None,
        };
        let mut state = cp;
        let mut out = out;
        let mut format = format;
        let mut old_tmp = None;
        if let (Some(Format::Parquet(writer, rows)), Some(prefix)) = (&mut format, &mut out)
            && state.output_bytes > 0
        {
            // Re-read the committed row groups into a new temporary file and writer.
            let (fresh, w) = resume_parquet(prefix, &state, *rows)?;
            state.output_bytes = fresh.bytes;
            *writer = Some(Box::new(w));
            old_tmp = Some(std::mem::replace(prefix, fresh).tmp);
        }
        state.fingerprint = fingerprint.to_string();
        state.output_tmp = out.as_ref().map(|t| t.tmp.clone());
        state.dead_tmp = dead.as_ref().map(|t| t.tmp.clone());
        let committed = matches!(format, Some(Format::Parquet(..))).then(|| state.clone());
        let mut output = Output {
            format,
            out,
            dead,
            progress,
            state,
            committed,
        };
        if let Some(old) = old_tmp {
            // The checkpoint now names the new file: the old one can go.
            output.checkpoint()?;
            let _ = std::fs::remove_file(old);
        }
        Ok(output)
    }

    /// Appends a batch of the last stage.
    pub(crate) fn write(&mut self, seq: u64, batch: &RecordBatch) -> Result<(), PipelineError> {
        let resumed_header = self.state.output_bytes > 0;
        let mut closed_row_group = false;
        if let (Some(format), Some(out)) = (&mut self.format, &mut self.out) {
            let target = out.target.clone();
            let enc_err = |e: arrow_schema::ArrowError| {
                PipelineError(format!("{}: cannot encode: {e}", target.display()))
            };
            let data: Vec<u8> = match format {
                Format::Arrow(writer) => {
                    let slot = match writer {
                        Some(b) => b,
                        None => {
                            let mut w = StreamWriter::try_new(Vec::new(), &batch.schema())
                                .map_err(enc_err)?;
                            if resumed_header {
                                // The schema message is already in the committed bytes.
                                w.get_mut().clear();
                            }
                            writer.insert(Box::new((w, batch.schema())))
                        }
                    };
                    let (w, schema) = (&mut slot.0, &slot.1);
                    if schema.as_ref() != batch.schema().as_ref() {
                        return Err(PipelineError(format!(
                            "{}: batch {seq} has a different schema from the first batch written",
                            out.target.display()
                        )));
                    }
                    w.write(batch).map_err(enc_err)?;
                    std::mem::take(w.get_mut())
                }
                Format::Parquet(writer, rows) => {
                    let pq_err = |e: parquet::errors::ParquetError| {
                        PipelineError(format!(
                            "{}: cannot encode Parquet: {}",
                            target.display(),
                            e.to_string().replace('\n', " ")
                        ))
                    };
                    let w = match writer {
                        Some(w) => w,
                        None => writer.insert(Box::new(
                            ParquetOut::new(batch.schema(), *rows).map_err(pq_err)?,
                        )),
                    };
                    if !same_columns(&w.schema, &batch.schema()) {
                        return Err(PipelineError(format!(
                            "{}: batch {seq} has a different schema from the first batch written",
                            out.target.display()
                        )));
                    }
                    let (data, closed) = w.write(batch).map_err(pq_err)?;
                    closed_row_group = closed;
                    data
                }
                Format::JsonLines => {
                    let mut w = arrow_json::LineDelimitedWriter::new(Vec::new());
                    w.write(batch).map_err(enc_err)?;
                    w.finish().map_err(enc_err)?;
                    w.into_inner()
                }
                Format::Csv => {
                    let mut buf = Vec::new();
                    {
                        let mut w = arrow_csv::WriterBuilder::new()
                            .with_header(out.bytes == 0)
                            .build(&mut buf);
                        w.write(batch).map_err(enc_err)?;
                    }
                    buf
                }
            };
            out.append(&data)?;
            self.state.output_bytes = out.bytes;
        }
        self.state.batches_written += 1;
        self.state.rows_written += batch.num_rows() as u64;
        self.state.next_seq = seq + 1;
        if closed_row_group {
            self.snapshot()?;
        }
        Ok(())
    }

    /// Parquet: records the current state, with a footer for the row groups closed so far, as
    /// the one the next checkpoint writes.
    fn snapshot(&mut self) -> Result<(), PipelineError> {
        if let Some(Format::Parquet(Some(w), _)) = &self.format {
            use base64::Engine;
            let footer = w.prefix_footer().map_err(|e| {
                PipelineError(format!(
                    "{}: cannot encode a Parquet footer: {e}",
                    self.out
                        .as_ref()
                        .map_or(Path::new(""), |o| &o.target)
                        .display()
                ))
            })?;
            let mut state = self.state.clone();
            state.parquet_footer = Some(base64::engine::general_purpose::STANDARD.encode(footer));
            self.committed = Some(state);
        }
        Ok(())
    }

    /// Appends a dead letter: one JSON line with the sequence number, stage, function, error and
    /// the batch's rows (or, if they cannot be shown as JSON, its Arrow IPC stream in base64).
    pub(crate) fn dead_letter(
        &mut self,
        seq: u64,
        stage: &str,
        function: &str,
        error: &str,
        batch: &RecordBatch,
    ) -> Result<(), PipelineError> {
        if let Some(dead) = &mut self.dead {
            let mut line = serde_json::json!({
                "seq": seq,
                "stage": stage,
                "function": function,
                "error": error,
                "num_rows": batch.num_rows(),
            });
            match rows_json(batch) {
                Some(rows) => line["rows"] = rows,
                None => {
                    use base64::Engine;
                    let ipc = wasmlink_host::exchange::encode_stream(std::slice::from_ref(batch))
                        .unwrap_or_default();
                    line["ipc_base64"] =
                        base64::engine::general_purpose::STANDARD.encode(ipc).into();
                }
            }
            let mut data = line.to_string().into_bytes();
            data.push(b'\n');
            dead.append(&data)?;
            self.state.dead_bytes = dead.bytes;
        }
        self.state.failed_batches += 1;
        self.state.failed_rows += batch.num_rows() as u64;
        self.state.next_seq = seq + 1;
        Ok(())
    }

    /// Syncs the temporary files and atomically records how much of them is committed.
    pub(crate) fn checkpoint(&mut self) -> Result<(), PipelineError> {
        let Some(progress) = &self.progress else {
            return Ok(());
        };
        for t in self.out.iter_mut().chain(self.dead.iter_mut()) {
            t.sync()?;
        }
        let tmp = with_suffix(progress, &format!(".tmp-{}", std::process::id()));
        let state = self.committed.as_ref().unwrap_or(&self.state);
        let text = serde_json::to_string_pretty(state).unwrap_or_default() + "\n";
        (|| -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_data()?;
            std::fs::rename(&tmp, progress)
        })()
        .map_err(|e| io_err(progress, "cannot write checkpoint", e))
    }

    /// Finishes the output (the Arrow end-of-stream marker), renames both files into place
    /// and removes the checkpoint.
    pub(crate) fn commit(mut self) -> Result<(), PipelineError> {
        if let (Some(Format::Arrow(w)), Some(out)) = (&mut self.format, &mut self.out) {
            match w.as_deref_mut() {
                Some((w, _)) => {
                    w.finish().map_err(|e| {
                        PipelineError(format!("{}: cannot finish: {e}", out.target.display()))
                    })?;
                    let tail = std::mem::take(w.get_mut());
                    out.append(&tail)?;
                }
                None if out.bytes == 0 => {
                    // No batch at all: an empty file (there is no schema to write).
                }
                None => {
                    // Resumed after the last batch: only the end-of-stream marker is missing.
                    out.append(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0])?;
                }
            }
        }
        if let (Some(Format::Parquet(w, _)), Some(out)) = (&mut self.format, &mut self.out) {
            let fin = |e: parquet::errors::ParquetError| {
                PipelineError(format!("{}: cannot finish: {e}", out.target.display()))
            };
            let tail = match w.as_deref_mut() {
                Some(w) => w.finish().map_err(fin)?,
                // No batch at all: a file with no columns and no rows.
                None => super::parquet_io::encode_parquet(&[]).map_err(|e| {
                    PipelineError(format!("{}: cannot finish: {e}", out.target.display()))
                })?,
            };
            out.append(&tail)?;
        }
        if let Some(out) = self.out.take() {
            out.commit()?;
        }
        if let Some(dead) = self.dead.take() {
            dead.commit()?;
        }
        if let Some(p) = &self.progress {
            let _ = std::fs::remove_file(p);
        }
        Ok(())
    }
}

/// The rows of a batch as a JSON array of objects, if arrow-json can show every column.
fn rows_json(batch: &RecordBatch) -> Option<serde_json::Value> {
    let mut w = arrow_json::ArrayWriter::new(Vec::new());
    w.write(batch).ok()?;
    w.finish().ok()?;
    let bytes = w.into_inner();
    if bytes.is_empty() {
        return Some(serde_json::Value::Array(Vec::new()));
    }
    serde_json::from_slice(&bytes).ok()
}

/// Whether two schemas have the same columns (names, types, nullability), whatever their
/// metadata: a Parquet sink resumed from its file has the schema read back from it.
fn same_columns(a: &arrow_schema::Schema, b: &arrow_schema::Schema) -> bool {
    a.fields().len() == b.fields().len()
        && a.fields().iter().zip(b.fields()).all(|(x, y)| {
            x.name() == y.name()
                && x.data_type() == y.data_type()
                && x.is_nullable() == y.is_nullable()
        })
}

/// Resumes a Parquet sink: `prefix` (truncated to the committed length) gets its footer back,
/// becoming a complete Parquet file of the committed row groups; they are re-encoded into a
/// fresh temporary file, giving the same bytes and a writer that knows them.
fn resume_parquet(
    prefix: &mut TmpFile,
    state: &Checkpoint,
    row_group_rows: usize,
) -> Result<(TmpFile, ParquetOut), PipelineError> {
    use base64::Engine;
    let footer = state
        .parquet_footer
        .as_deref()
        .and_then(|f| base64::engine::general_purpose::STANDARD.decode(f).ok())
        .ok_or_else(|| {
            PipelineError(format!(
                "{}: cannot resume: the checkpoint has no valid Parquet footer; run without \
                 --resume to start over",
                prefix.tmp.display()
            ))
        })?;
    prefix.append(&footer)?;
    prefix.sync()?;
    let file =
        File::open(&prefix.tmp).map_err(|e| io_err(&prefix.tmp, "cannot reopen to resume", e))?;
    let mut fresh = TmpFile::open_avoiding(&prefix.target, None, Some(&prefix.tmp))?;
    let result = ParquetOut::resume(file, &prefix.tmp, row_group_rows, &mut |data| {
        fresh.append(data)
    })
    .and_then(|writer| {
        if fresh.bytes != state.output_bytes {
            return Err(PipelineError(format!(
                "{}: cannot resume: re-encoding the committed row groups gave {} bytes, not {}; \
                 run without --resume to start over",
                prefix.tmp.display(),
                fresh.bytes,
                state.output_bytes
            )));
        }
        fresh.sync()?;
        Ok(writer)
    });
    match result {
        Ok(writer) => Ok((fresh, writer)),
        Err(e) => {
            let _ = std::fs::remove_file(&fresh.tmp);
            Err(e)
        }
    }
}
