//! The sink side: output and dead-letter files written to `PATH.tmp-<pid>`, the checkpoint
//! (`PATH.progress`), and the rename into place at the end.
//!
//! Each batch is encoded into memory first and appended to the temporary file in one write, so
//! the file's length after each batch is known exactly. A checkpoint syncs both temporary files
//! and then atomically replaces the progress file; a resumed run truncates the temporary files
//! to the recorded lengths, which removes anything written after the checkpoint.
//!
//! A checkpoint is untrusted input: every field is checked before use, and the temporary files
//! it names must be ones a run creates, `TARGET.tmp-<pid>` (or `-<pid>-1`) next to their
//! target, and regular files. A target that exists must be a regular file: a symbolic link,
//! device, FIFO or directory at a sink path is refused, never replaced. Temporary files are
//! created new (never through an existing file or link) with the user's umask.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_ipc::writer::StreamWriter;
use serde::{Deserialize, Serialize};

use super::parquet_io::ParquetOut;
use super::{PipelineError, Sink};

/// The largest checkpoint file read (a Parquet sink's footer grows with its row groups).
const MAX_CHECKPOINT_BYTES: u64 = 64 << 20;

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
    PipelineError::io(path, format!("{what}: {e}"))
}

/// `PATH` + `suffix`.
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// The directory a target's temporary files go in.
fn dir_of(target: &Path) -> PathBuf {
    match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// If `name` is `base.tmp-<pid>` or `base.tmp-<pid>-1` (the names a run gives its temporary
/// files), the pid.
fn tmp_pid(base: &std::ffi::OsStr, name: &std::ffi::OsStr) -> Option<u32> {
    let rest = name
        .as_encoded_bytes()
        .strip_prefix(base.as_encoded_bytes())?
        .strip_prefix(b".tmp-")?;
    let digits = rest.strip_suffix(b"-1").unwrap_or(rest);
    if digits.is_empty() || digits.len() > 10 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Whether process `pid` may still be running (and writing its temporary files). Where this
/// cannot be known, it may.
fn may_be_running(pid: u32) -> bool {
    if pid == std::process::id() {
        return true;
    }
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        true
    }
}

/// Removes the temporary files `target.tmp-<pid>` of processes no longer running (a run killed
/// before its first checkpoint leaves them; nothing else names them), except `keep` (the one
/// the checkpoint being resumed names).
fn sweep_stale(target: &Path, keep: Option<&Path>) {
    let Some(base) = target.file_name() else {
        return;
    };
    let Ok(entries) = std::fs::read_dir(dir_of(target)) else {
        return;
    };
    for e in entries.flatten() {
        if let Some(pid) = tmp_pid(base, &e.file_name())
            && !may_be_running(pid)
            && keep.is_none_or(|k| k.file_name() != Some(&e.file_name()))
            && e.file_type().is_ok_and(|t| t.is_file() || t.is_symlink())
        {
            let path = e.path();
            tracing::info!(target: "wasmlink::pipeline", "removing {}, left by process {pid}", path.display());
            let _ = std::fs::remove_file(path);
        }
    }
}

/// What a non-regular file is, in a word or two.
fn kind_of(t: std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_char_device() || t.is_block_device() {
            return "a device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

/// Refuses a target path that exists and is not a regular file: the output is renamed over
/// it at the end, which must never replace a link, device or FIFO.
pub(crate) fn check_target(target: &Path) -> Result<(), PipelineError> {
    match std::fs::symlink_metadata(target) {
        Ok(m) if !m.file_type().is_file() => Err(PipelineError::sink(
            target,
            format!(
                "is {}; an output replaces only a regular file (remove it or choose another path)",
                kind_of(m.file_type())
            ),
        )),
        _ => Ok(()),
    }
}

/// Creates `path` new (removing a file or link already there), with the user's umask.
fn create_new(path: &Path) -> std::io::Result<File> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    OpenOptions::new().write(true).create_new(true).open(path)
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
                // `tmp` was checked to be a regular file; check the file opened too.
                let file = OpenOptions::new()
                    .write(true)
                    .open(tmp)
                    .map_err(|e| io_err(tmp, "cannot reopen to resume", e))?;
                let meta = file
                    .metadata()
                    .map_err(|e| io_err(tmp, "cannot resume", e))?;
                if !meta.is_file() {
                    return Err(PipelineError::checkpoint(
                        tmp,
                        "cannot resume: not a regular file; run without --resume to start over",
                    ));
                }
                let len = meta.len();
                if len < bytes {
                    return Err(PipelineError::checkpoint(
                        tmp,
                        format!("cannot resume: {len} bytes, but the checkpoint committed {bytes}"),
                    ));
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
                let file = create_new(&tmp).map_err(|e| io_err(&tmp, "cannot create", e))?;
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
        check_target(&self.target)?;
        std::fs::rename(&self.tmp, &self.target).map_err(|e| {
            PipelineError::io(
                &self.target,
                format!("cannot rename {} to it: {e}", self.tmp.display()),
            )
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

/// Reads a checkpoint file (a regular file of at most [`MAX_CHECKPOINT_BYTES`]).
fn read_checkpoint(path: &Path) -> Result<Option<Checkpoint>, PipelineError> {
    let bad = |m: String| PipelineError::checkpoint(path, m);
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(path, "cannot read", e)),
        Ok(m) if !m.file_type().is_file() => {
            return Err(bad(format!(
                "not a pipeline checkpoint: it is {}",
                kind_of(m.file_type())
            )));
        }
        Ok(m) if m.len() > MAX_CHECKPOINT_BYTES => {
            return Err(bad(format!(
                "not a pipeline checkpoint: {} bytes, over the limit of {MAX_CHECKPOINT_BYTES}",
                m.len()
            )));
        }
        Ok(_) => {}
    }
    let text = std::fs::read_to_string(path).map_err(|e| io_err(path, "cannot read", e))?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| bad(format!("not a pipeline checkpoint: {e}")))
}

/// Checks every field of an untrusted checkpoint against the pipeline it would resume: the
/// fingerprint, the temporary files (see [`check_tmp`]), lengths and counts that agree with
/// each other, and a Parquet footer only for a Parquet sink.
fn check_checkpoint(
    cp: &Checkpoint,
    progress: &Path,
    sink: &Sink,
    dead_letter: Option<&Path>,
    fingerprint: &str,
) -> Result<(), PipelineError> {
    let bad = |m: String| {
        PipelineError::checkpoint(
            progress,
            format!("cannot resume: {m}; run without --resume to start over"),
        )
    };
    if cp.fingerprint != fingerprint {
        return Err(bad(
            "the checkpoint is of a different pipeline (source, batch size, stages or sink \
             changed)"
                .into(),
        ));
    }
    for (field, target, tmp, bytes) in [
        ("output_tmp", sink.path(), &cp.output_tmp, cp.output_bytes),
        ("dead_tmp", dead_letter, &cp.dead_tmp, cp.dead_bytes),
    ] {
        match (target, tmp) {
            (Some(target), Some(tmp)) => {
                check_tmp(target, tmp).map_err(|m| bad(format!("`{field}` {m}")))?
            }
            (None, None) if bytes == 0 => {}
            (None, None) => return Err(bad(format!("{bytes} bytes committed to no file"))),
            (Some(_), None) => return Err(bad(format!("`{field}` is missing"))),
            (None, Some(_)) => {
                return Err(bad(format!(
                    "`{field}` is set, but the pipeline has no such file"
                )));
            }
        }
    }
    if cp.batches_written.checked_add(cp.failed_batches) != Some(cp.next_seq) {
        return Err(bad(format!(
            "`next_seq` ({}) is not the batches written ({}) plus the batches failed ({})",
            cp.next_seq, cp.batches_written, cp.failed_batches
        )));
    }
    if cp.parquet_footer.is_some() && !matches!(sink, Sink::Parquet { .. }) {
        return Err(bad(
            "`parquet_footer` is set, but the sink is not Parquet".into()
        ));
    }
    Ok(())
}

/// Checks that `tmp`, named by a checkpoint, is a temporary file a run makes for `target`:
/// in the same directory, named `TARGET.tmp-<pid>` (or `-<pid>-1`), a regular file (not a
/// link). The message says what is wrong.
fn check_tmp(target: &Path, tmp: &Path) -> Result<(), String> {
    let named = || format!("names `{}`", tmp.display());
    let (Some(base), Some(name)) = (target.file_name(), tmp.file_name()) else {
        return Err(format!(
            "{}, not a temporary file of `{}`",
            named(),
            target.display()
        ));
    };
    if dir_of(tmp) != dir_of(target) || tmp_pid(base, name).is_none() {
        return Err(format!(
            "{}, not a temporary file of `{}` (`{}.tmp-<pid>` beside it)",
            named(),
            target.display(),
            target.display()
        ));
    }
    match std::fs::symlink_metadata(tmp) {
        Ok(m) if m.file_type().is_file() => Ok(()),
        Ok(m) => Err(format!("{}, which is {}", named(), kind_of(m.file_type()))),
        Err(e) => Err(format!("{}: {e}", named())),
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
        for target in sink.path().into_iter().chain(dead_letter) {
            check_target(target)?;
        }
        let progress = progress_path(sink, dead_letter);
        if progress.is_none() && resume {
            return Err(PipelineError::Spec {
                stage: None,
                field: "--resume".into(),
                message: "needs a sink path or a dead-letter file to keep a checkpoint next to"
                    .into(),
            });
        }
        let resumed = match &progress {
            Some(p) if resume => match read_checkpoint(p)? {
                Some(cp) => {
                    check_checkpoint(&cp, p, sink, dead_letter, fingerprint)?;
                    Some(cp)
                }
                None => None,
            },
            Some(p) => {
                // Starting over: the earlier run's checkpoint and temporary files are garbage
                // now (only files a run makes are removed: a checked checkpoint's, and stale
                // `TARGET.tmp-<pid>` ones).
                if let Ok(Some(cp)) = read_checkpoint(p) {
                    for (target, tmp) in
                        [(sink.path(), &cp.output_tmp), (dead_letter, &cp.dead_tmp)]
                    {
                        if let (Some(target), Some(tmp)) = (target, tmp)
                            && check_tmp(target, tmp).is_ok()
                        {
                            let _ = std::fs::remove_file(tmp);
                        }
                    }
                }
                if std::fs::symlink_metadata(p).is_ok_and(|m| !m.is_dir()) {
                    let _ = std::fs::remove_file(p);
                }
                None
            }
            None => None,
        };
        let cp = resumed.clone().unwrap_or_default();
        for (target, keep) in [
            (sink.path(), cp.output_tmp.as_deref()),
            (dead_letter, cp.dead_tmp.as_deref()),
            (progress.as_deref(), None),
        ] {
            if let Some(target) = target {
                sweep_stale(target, keep);
            }
        }
        let reopen = |target: Option<&Path>, tmp: &Option<PathBuf>, bytes: u64| {
            target
                .map(|t| TmpFile::open(t, tmp.as_deref().map(|p| (p, bytes))))
                .transpose()
        };
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

    /// Gives up the run's outputs: removes its temporary files and checkpoint (after a fatal
    /// error that a resume would meet again, e.g. a bad source).
    pub(crate) fn abandon(mut self) {
        for t in self.out.take().into_iter().chain(self.dead.take()) {
            drop(t.file);
            let _ = std::fs::remove_file(&t.tmp);
        }
        if let Some(p) = &self.progress {
            let _ = std::fs::remove_file(p);
        }
    }

    /// Appends a batch of the last stage.
    pub(crate) fn write(&mut self, seq: u64, batch: &RecordBatch) -> Result<(), PipelineError> {
        let resumed_header = self.state.output_bytes > 0;
        let mut closed_row_group = false;
        if let (Some(format), Some(out)) = (&mut self.format, &mut self.out) {
            let target = out.target.clone();
            let enc_err = |e: arrow_schema::ArrowError| {
                PipelineError::sink(&target, format!("cannot encode: {e}"))
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
                        return Err(PipelineError::sink(
                            &out.target,
                            format!(
                                "batch {seq} has a different schema from the first batch written"
                            ),
                        ));
                    }
                    w.write(batch).map_err(enc_err)?;
                    std::mem::take(w.get_mut())
                }
                Format::Parquet(writer, rows) => {
                    let pq_err = |e: parquet::errors::ParquetError| {
                        PipelineError::sink(
                            &target,
                            format!(
                                "cannot encode Parquet: {}",
                                e.to_string().replace('\n', " ")
                            ),
                        )
                    };
                    let w = match writer {
                        Some(w) => w,
                        None => writer.insert(Box::new(
                            ParquetOut::new(batch.schema(), *rows).map_err(pq_err)?,
                        )),
                    };
                    if !same_columns(&w.schema, &batch.schema()) {
                        return Err(PipelineError::sink(
                            &out.target,
                            format!(
                                "batch {seq} has a different schema from the first batch written"
                            ),
                        ));
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
                PipelineError::sink(
                    self.out.as_ref().map_or(Path::new(""), |o| &o.target),
                    format!("cannot encode a Parquet footer: {e}"),
                )
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
            let mut f = create_new(&tmp)?;
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
                        PipelineError::sink(&out.target, format!("cannot finish: {e}"))
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
                PipelineError::sink(&out.target, format!("cannot finish: {e}"))
            };
            let tail = match w.as_deref_mut() {
                Some(w) => w.finish().map_err(fin)?,
                // No batch at all: a file with no columns and no rows.
                None => super::parquet_io::encode_parquet(&[])
                    .map_err(|e| PipelineError::sink(&out.target, format!("cannot finish: {e}")))?,
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
            PipelineError::checkpoint(
                &prefix.tmp,
                "cannot resume: the checkpoint has no valid Parquet footer; run without \
                 --resume to start over",
            )
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
            return Err(PipelineError::checkpoint(
                &prefix.tmp,
                format!(
                    "cannot resume: re-encoding the committed row groups gave {} bytes, not {}; \
                     run without --resume to start over",
                    fresh.bytes, state.output_bytes
                ),
            ));
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
