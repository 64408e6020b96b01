//! Streaming pipelines: batches of rows flow from a source through a chain of plugin stages
//! into a sink, over bounded queues, on worker threads holding one instance each.
//!
//! A pipeline is a [`PipelineSpec`]: a [`Source`] (JSON Lines, CSV, Arrow IPC, Parquet, a
//! directory of text files, or batches given in code), [`Stage`]s (a loaded [`Plugin`], an ABI
//! v1 Arrow function, a number of workers) and a [`Sink`] (Arrow IPC, JSON Lines, CSV, Parquet,
//! or none). It is
//! built in code or read from a TOML file ([`PipelineSpec::from_file`], format in
//! docs/pipeline.md), checked by [`Pipeline::new`], and run by [`Pipeline::run`].
//!
//! Guarantees:
//! - **Bounded memory.** Between two steps sits a queue of `queue_depth` batches (a directory
//!   source's batch also ends at [`DIR_BATCH_BYTES`] of content); a full queue
//!   blocks the step before it, up to the reader. At most
//!   `queue_depth * (stages + 1) + (workers of all stages) + 1` batches are read and not yet
//!   written (one in each queue slot, one per worker, one being written), whatever the input's
//!   size ([`RunStats::max_batches_in_flight`] measures it); a reorder buffer holds only
//!   batches from that set. With [`Schedule::Chain`] there are two queues (reader to workers,
//!   workers to sink): at most `queue_depth * 2 + workers + 1`.
//! - **Schedules.** [`Schedule::Stages`] gives each stage its own threads; [`Schedule::Chain`]
//!   gives each of `workers` threads one instance of every stage and takes each batch through
//!   the whole chain on one thread.
//! - **Order.** A reorder buffer before the sink writes batches in input order.
//! - **Nothing lost.** A batch whose call fails (trap, timeout, limit, guest error) goes with its
//!   error to the dead-letter file and the run continues; so does a batch whose call panics in
//!   the host. A panic anywhere else fails the run, and a run is [`Outcome::Completed`] only if
//!   every batch read was written or dead-lettered. Outputs are written to
//!   `PATH.tmp-<pid>` (with the user's umask) and renamed over `PATH` only when the run
//!   completes, so `PATH` holds a complete output or none (or the previous run's complete
//!   output); a `PATH` that is not a regular file (a link, device, FIFO) is never replaced.
//! - **Bounded input.** Every number has an upper bound ([`MAX_BATCH_ROWS`],
//!   [`MAX_QUEUE_DEPTH`], [`MAX_WORKERS`], [`MAX_ROW_GROUP_ROWS`]) checked before the run; a
//!   JSON Lines line is at most [`MAX_LINE_BYTES`].
//! - **Resume.** `PATH.progress` (JSON) records, atomically, the next sequence number and how
//!   many bytes of each temporary file are committed (synced to disk). A run started with
//!   [`RunOptions::resume`] truncates the temporary files to those lengths, skips the committed
//!   batches of the (deterministic) source and continues, producing exactly the bytes an
//!   uninterrupted run would. The checkpoint is untrusted: every field is checked, and it may
//!   only name the run's own `TARGET.tmp-<pid>` files beside their targets.
//!   A Parquet sink's checkpoint advances one closed row group at a time, with a footer for
//!   the committed row groups; a resumed run re-reads and re-encodes them (docs/pipeline.md).
//!
//! ```no_run
//! use wasmlink_pipeline::{Pipeline, PipelineSpec, RunOptions, Sink, Source};
//! use wasmlink_host::plugin::PluginHost;
//! use wasmlink_host::policy::Policy;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let host = PluginHost::new(Default::default())?;
//! let tokenizer = host.load_file("tokenize.wasm".as_ref(), Policy::default())?;
//! let spec = PipelineSpec::new(
//!     Source::Dir {
//!         path: "docs".into(),
//!         extensions: vec!["md".into()],
//!         binary: false,
//!         include: vec![],
//!         exclude: vec!["drafts/**".into()],
//!     },
//!     Sink::JsonLines("tokens.jsonl".into()),
//! )
//! .stage("tokenize", tokenizer, "tokenize", 2);
//! let stats = Pipeline::new(spec)?.run(&RunOptions::default())?;
//! println!("{} rows written, {} batches failed", stats.rows_written, stats.failed_batches);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod component;
mod config;
mod engine;
mod parquet_io;
mod sink;
mod source;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};

use arrow_array::RecordBatch;
use serde::Serialize;

use wasmlink_host::plugin::{Plugin, PluginHost};

pub use component::{ComponentStage, ComponentStageError, STAGE_FUNCTION, SUPPORTED_TYPES};
pub use parquet_io::{PARQUET_MAGIC, encode_parquet, parquet_properties, read_parquet};
pub use source::DIR_BATCH_BYTES;

/// Default rows per batch.
pub const DEFAULT_BATCH_ROWS: usize = 1024;
/// Default queue depth (batches) between two steps.
pub const DEFAULT_QUEUE_DEPTH: usize = 4;
/// Default file extensions of a directory source.
pub const DEFAULT_EXTENSIONS: &[&str] = &["txt", "md", "markdown", "html", "htm"];
/// Default rows per row group of a Parquet sink (a row group is closed after the batch that
/// brings it to at least this many rows; it is also the unit of a Parquet sink's checkpoint).
pub const DEFAULT_ROW_GROUP_ROWS: usize = 65536;

/// The most rows per batch (`batch-rows`): 1 Mi.
pub const MAX_BATCH_ROWS: usize = 1 << 20;
/// The most batches a queue holds (`queue-depth`).
pub const MAX_QUEUE_DEPTH: usize = 1024;
/// The most worker threads of a pipeline: the chain schedule's `workers`, or the stages'
/// `workers` summed over the stages.
pub const MAX_WORKERS: usize = 256;
/// The most rows per row group of a Parquet sink (`row-group-rows`): 64 Mi.
pub const MAX_ROW_GROUP_ROWS: usize = 1 << 26;
/// The longest line of a JSON Lines or CSV source, in bytes (newline excluded): 64 MiB. A
/// longer line (or a file without newlines) is an error naming the file and line, so memory
/// stays bounded.
pub const MAX_LINE_BYTES: usize = 64 << 20;

/// A pipeline error. Every kind prints as one line naming the file (and line), stage or field;
/// match on the kind to tell a bad pipeline file from a bad input, a failed output or a bad
/// checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// A pipeline file (TOML) is wrong at a place in it:
    /// `FILE:LINE:COL: [stage `NAME`: ][FIELD: ]MESSAGE`.
    #[error("{}", config_line(file, *line, *col, stage.as_deref(), field.as_deref(), message))]
    Config {
        /// The file (as given).
        file: String,
        /// 1-based line; 0 when the place is not known.
        line: usize,
        /// 1-based column; 0 when the place is not known.
        col: usize,
        /// The stage the field belongs to.
        stage: Option<String>,
        /// The field (`source.batch-rows`, `workers`, ...), when the message is about one.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },
    /// A spec built in code is invalid ([`Pipeline::new`]): `[stage `NAME`: ]FIELD: MESSAGE`.
    #[error("{}{field}: {message}", stage.as_ref().map(|s| format!("stage `{s}`: ")).unwrap_or_default())]
    Spec {
        /// The stage the field belongs to.
        stage: Option<String>,
        /// The field (`batch-rows`, `queue-depth`, `workers`, ...).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A file cannot be opened, read, created, written or renamed: `PATH: MESSAGE`.
    #[error("{}: {message}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed (with the system's reason).
        message: String,
    },
    /// The source's data is bad (not JSON, CSV, Arrow IPC or Parquet; a line too long):
    /// `PATH[:LINE]: MESSAGE`.
    #[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Source {
        /// The source file (or directory).
        path: PathBuf,
        /// The 1-based line, for line-based sources when it is known.
        line: Option<u64>,
        /// What is wrong.
        message: String,
    },
    /// A stage cannot run (its module cannot be instantiated): `stage `NAME`: MESSAGE`.
    #[error("stage `{stage}`: {message}")]
    Stage {
        /// The stage.
        stage: String,
        /// What is wrong.
        message: String,
    },
    /// An output cannot be encoded, or a sink path is not a regular file: `PATH: MESSAGE`.
    #[error("{}: {message}", path.display())]
    Sink {
        /// The output file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A checkpoint (`PATH.progress`) cannot be used to resume: `PATH: MESSAGE`.
    #[error("{}: {message}", path.display())]
    Checkpoint {
        /// The checkpoint or the temporary file it names.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// Encoding batches failed ([`encode_parquet`]).
    #[error("{0}")]
    Encode(String),
    /// The engine itself failed (a thread could not start, a thread panicked, a batch was
    /// lost): the run stops rather than report an incomplete output as complete.
    #[error("{0}")]
    Engine(String),
}

fn config_line(
    file: &str,
    line: usize,
    col: usize,
    stage: Option<&str>,
    field: Option<&str>,
    message: &str,
) -> String {
    let mut s = file.to_string();
    if line > 0 {
        s += &format!(":{line}:{col}");
    }
    s += ": ";
    if let Some(st) = stage {
        s += &format!("stage `{st}`: ");
    }
    if let Some(f) = field {
        s += &format!("{f}: ");
    }
    s + message
}

impl PipelineError {
    pub(crate) fn io(path: &Path, message: impl Into<String>) -> PipelineError {
        PipelineError::Io {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }

    pub(crate) fn source(path: &Path, message: impl Into<String>) -> PipelineError {
        PipelineError::Source {
            path: path.to_path_buf(),
            line: None,
            message: message.into(),
        }
    }

    pub(crate) fn sink(path: &Path, message: impl Into<String>) -> PipelineError {
        PipelineError::Sink {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }

    pub(crate) fn checkpoint(path: &Path, message: impl Into<String>) -> PipelineError {
        PipelineError::Checkpoint {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }

    fn spec(stage: Option<&str>, field: &str, message: impl Into<String>) -> PipelineError {
        PipelineError::Spec {
            stage: stage.map(str::to_string),
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// A bad glob pattern of a `Source::Dir` (see [`check_glob`]): prints globset's reason, in a few
/// words, without the pattern.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct GlobError {
    /// The pattern.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Where rows come from. Every source is deterministic: the same input gives the same batches,
/// which `--resume` relies on.
#[derive(Debug, Clone)]
pub enum Source {
    /// A JSON Lines file; the schema is inferred from the whole file.
    JsonLines {
        /// The file.
        path: PathBuf,
    },
    /// A CSV file with a header line; the schema is inferred from the whole file.
    Csv {
        /// The file.
        path: PathBuf,
    },
    /// An Arrow IPC file or stream.
    Arrow {
        /// The file.
        path: PathBuf,
    },
    /// An Apache Parquet file, streamed one row group at a time (never read whole).
    Parquet {
        /// The file.
        path: PathBuf,
    },
    /// The files under a directory (recursively, in sorted path order) whose extension is one
    /// of `extensions` (case-insensitive), one row each: `path` (Utf8, relative to the
    /// directory, `/`-separated), `content` (Utf8, invalid UTF-8 replaced by U+FFFD; Binary
    /// if `binary`), `size` (UInt64, bytes).
    Dir {
        /// The directory.
        path: PathBuf,
        /// Extensions without the dot; empty means every file.
        extensions: Vec<String>,
        /// Whether `content` is Binary rather than Utf8.
        binary: bool,
        /// Glob patterns (`*`, `?`, `[a-z]`, `{a,b}`, and `**` across directories) matched
        /// against the path relative to the directory, `/`-separated: when any are given, a
        /// file must match one of them.
        include: Vec<String>,
        /// Glob patterns as for `include`: a file that matches one is left out, and so is
        /// everything under a directory that matches one.
        exclude: Vec<String>,
    },
    /// Batches given in code (re-cut into `batch_rows`-row batches).
    Batches(Vec<RecordBatch>),
}

/// Where the last stage's batches go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    /// An Arrow IPC stream file.
    Arrow(PathBuf),
    /// A JSON Lines file (one object per row).
    JsonLines(PathBuf),
    /// A CSV file with a header line.
    Csv(PathBuf),
    /// An Apache Parquet file (Snappy pages). Row groups are closed at batch boundaries, and
    /// the checkpoint advances one row group at a time.
    Parquet {
        /// The file.
        path: PathBuf,
        /// A row group is closed after the batch that brings it to at least this many rows
        /// (see [`DEFAULT_ROW_GROUP_ROWS`]).
        row_group_rows: usize,
    },
    /// Nowhere: the stages write their own output (e.g. into a directory their policy grants).
    None,
}

/// Checks one glob pattern of a `Source::Dir`'s `include` or `exclude`: `Err` says what is
/// wrong with it, in a few words.
pub fn check_glob(pattern: &str) -> Result<(), GlobError> {
    source::glob(pattern)
        .map(|_| ())
        .map_err(|reason| GlobError {
            pattern: pattern.to_string(),
            reason,
        })
}

impl Source {
    /// For a `Dir` source, the files it reads, in the order it reads them: (path relative to
    /// the directory, `/`-separated, as in the `path` column; full path). `None` for other
    /// sources.
    pub fn dir_files(&self) -> Option<Result<Vec<(String, PathBuf)>, PipelineError>> {
        match self {
            Source::Dir {
                path,
                extensions,
                include,
                exclude,
                ..
            } => Some(source::dir_files(path, extensions, include, exclude)),
            _ => None,
        }
    }
}

impl Sink {
    /// The output file, if any.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Sink::Arrow(p) | Sink::JsonLines(p) | Sink::Csv(p) => Some(p),
            Sink::Parquet { path, .. } => Some(path),
            Sink::None => None,
        }
    }
}

/// One stage: an ABI v1 Arrow function of a loaded plugin, or the `process` function of a
/// stage component (wit/pipeline/stage.wit), run by `workers` threads.
#[derive(Debug, Clone)]
pub struct Stage {
    /// The stage's name, unique in the pipeline (shown in stats and dead letters).
    pub name: String,
    /// The module: a core plugin or a component.
    pub plugin: StageModule,
    /// The exported function: for a core module `f(in_ptr: i32, in_len: i32) -> i32`
    /// (docs/abi.md), Arrow IPC in and out; for a component a function taking a `batch`
    /// ([`STAGE_FUNCTION`]).
    pub function: String,
    /// Worker threads, each with one instance (at least 1).
    pub workers: usize,
    /// When a worker replaces its instance of the stage between batches (its memory grown
    /// too large); see [`Recycle`].
    pub recycle: Recycle,
    /// What [`Stage::call_once`] has seen of the pooled instances, for their recycle bound.
    pub(crate) pooled: Arc<PooledMemory>,
}

/// The largest batch passed to a stage's pooled instances and the memory of the first one after
/// its first call: [`Recycle::bound`]'s inputs outside a pipeline run.
#[derive(Debug, Default)]
pub(crate) struct PooledMemory {
    largest_batch: AtomicU64,
    after_first_call: AtomicU64,
}

/// One call of a stage outside a pipeline run ([`Stage::call_once`]).
#[derive(Debug)]
pub struct Called {
    /// The stage's output.
    pub batch: RecordBatch,
    /// Bytes of linear memory the instance held after the call (a component's: all its core
    /// instances' memories).
    pub memory_bytes: u64,
    /// Whether the instance was dropped instead of going back to the pool (its memory past the
    /// stage's recycle bound).
    pub recycled: bool,
}

impl Stage {
    /// Calls the stage on `batch` once, outside a pipeline run (as `wasmlink serve` does), on an
    /// instance from the module's pool, holding the pool to the stage's [`Recycle`] bound as a
    /// pipeline worker holds its own instance: after the call, an instance whose linear memory
    /// has grown past the bound is dropped (its memory given back) instead of going back to the
    /// pool, so a long stream of batches cannot grow the pooled memories without limit. A
    /// component stage's pooled instance is held to the same bound.
    ///
    /// # Errors
    /// [`StageCallError`].
    pub fn call_once(&self, batch: &RecordBatch) -> Result<Called, StageCallError> {
        use std::sync::atomic::Ordering::Relaxed;
        let size = batch.get_array_memory_size() as u64;
        // Whether an instance holding `memory` bytes after this call goes back to the pool.
        let over = |memory: u64| {
            let largest = self.pooled.largest_batch.fetch_max(size, Relaxed).max(size);
            let first = match self
                .pooled
                .after_first_call
                .compare_exchange(0, memory, Relaxed, Relaxed)
            {
                Ok(_) => memory,
                Err(seen) => seen,
            };
            self.recycle
                .bound(largest, first)
                .is_some_and(|bound| memory > bound)
        };
        let (batch, memory_bytes, recycled) = match &self.plugin {
            StageModule::Core(plugin) => {
                let mut instance = plugin.instance()?;
                let out = instance.call_arrow(&self.function, batch)?;
                let memory = instance.memory_bytes();
                let recycled = over(memory);
                if recycled {
                    instance.discard();
                }
                (out, memory, recycled)
            }
            StageModule::Component(c) => c.call_arrow_then(&self.function, batch, over)?,
        };
        Ok(Called {
            batch,
            memory_bytes,
            recycled,
        })
    }
}

/// The smallest bound [`Recycle::Auto`] puts on a stage instance's linear memory.
pub const RECYCLE_FLOOR: u64 = 16 << 20;

/// When a pipeline worker replaces its instance of a stage. Wasm linear memory grows and never
/// shrinks, so an instance that once held a large batch (or whose allocator fragments) keeps
/// that memory for the rest of the run; a stage is stateless between batches
/// (docs/pipeline.md), so after a call the worker may drop the instance (its memory goes back
/// to the system) and take a fresh one for the next batch. No batch is lost or repeated: the
/// replacement happens after the call's result was handed on. Counted in
/// [`StageStats::recycled`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Recycle {
    /// The default (TOML: no `recycle-above`): above the largest of [`RECYCLE_FLOOR`] (16 MiB),
    /// 4 x the largest input batch (Arrow memory size) the worker has passed to the stage, and
    /// 2 x the instance's memory after its first call (so a stage that needs much memory to
    /// start is not replaced after every call).
    #[default]
    Auto,
    /// Above this many bytes of linear memory (TOML: `recycle-above = "256MiB"`; at least
    /// 1 MiB).
    Above(u64),
    /// Never (TOML: `recycle-above = "none"`): for a stage that keeps state between batches.
    Never,
}

impl Recycle {
    /// The smallest `recycle-above` accepted.
    pub const MIN: u64 = 1 << 20;

    /// What `recycle-above` (and `wasmlink index --recycle-above`) accepts: `"none"`, or a
    /// size of at least [`Recycle::MIN`] (`"256MiB"`, `"1048576"`). `Err` is one line.
    pub fn parse(text: &str) -> Result<Recycle, String> {
        if text.trim().eq_ignore_ascii_case("none") {
            return Ok(Recycle::Never);
        }
        let bytes = wasmlink_host::policy::ByteSize::parse(text)
            .map_err(|e| format!("{e}; {}", Recycle::EXPECTED))?
            .0;
        Recycle::at_least_min(bytes)
    }

    /// `Above(bytes)` if `bytes` is at least [`Recycle::MIN`].
    pub fn at_least_min(bytes: u64) -> Result<Recycle, String> {
        if bytes < Recycle::MIN {
            return Err(format!("{bytes} bytes is too small; {}", Recycle::EXPECTED));
        }
        Ok(Recycle::Above(bytes))
    }

    /// What the errors say is expected.
    pub const EXPECTED: &str = "expected a size of at least 1MiB such as \"256MiB\", or \"none\" \
                                for a stage that keeps state between batches";

    /// The bound on an instance's memory, given the largest input batch seen and the
    /// instance's memory after its first call (`None`: never).
    pub fn bound(self, largest_batch: u64, after_first_call: u64) -> Option<u64> {
        match self {
            Recycle::Auto => Some(
                RECYCLE_FLOOR
                    .max(largest_batch.saturating_mul(4))
                    .max(after_first_call.saturating_mul(2)),
            ),
            Recycle::Above(n) => Some(n),
            Recycle::Never => None,
        }
    }
}

/// A stage's module: a core module loaded as a plugin, or a stage component.
#[derive(Debug, Clone)]
pub enum StageModule {
    /// A core module (ABI v1, Arrow IPC in and out).
    Core(Plugin),
    /// A component of the world `wasmlink:pipeline/stage-component`.
    Component(Arc<ComponentStage>),
}

impl From<Plugin> for StageModule {
    fn from(p: Plugin) -> Self {
        StageModule::Core(p)
    }
}

impl From<ComponentStage> for StageModule {
    fn from(c: ComponentStage) -> Self {
        StageModule::Component(Arc::new(c))
    }
}

/// Why one call of a stage failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StageCallError {
    /// A core stage's call.
    #[error(transparent)]
    Plugin(#[from] wasmlink_host::plugin::PluginError),
    /// A component stage's call.
    #[error(transparent)]
    Component(#[from] ComponentStageError),
}

impl StageCallError {
    /// Whether the call failed on its batch (a trap, a limit, a guest error, a bad batch
    /// either way): the batch is a dead letter and the run goes on. Otherwise the stage
    /// cannot run at all.
    pub fn is_call_failure(&self) -> bool {
        match self {
            StageCallError::Plugin(e) => {
                e.is_call_failure() || matches!(e, wasmlink_host::plugin::PluginError::Guest { .. })
            }
            StageCallError::Component(e) => !matches!(
                e,
                ComponentStageError::Load(_) | ComponentStageError::Function(_)
            ),
        }
    }
}

impl StageModule {
    /// The module's name.
    pub fn name(&self) -> String {
        match self {
            StageModule::Core(p) => p.name(),
            StageModule::Component(c) => c.name(),
        }
    }

    /// The module's sha256, in hex.
    pub fn sha256(&self) -> String {
        match self {
            StageModule::Core(p) => p.sha256(),
            StageModule::Component(c) => c.sha256(),
        }
    }

    /// Whether it is a component.
    pub fn is_component(&self) -> bool {
        matches!(self, StageModule::Component(_))
    }

    /// Calls `function` on `batch` once, outside a pipeline run (an instance from the module's
    /// pool).
    ///
    /// # Errors
    /// [`StageCallError`].
    pub fn call_arrow(
        &self,
        function: &str,
        batch: &RecordBatch,
    ) -> Result<RecordBatch, StageCallError> {
        match self {
            StageModule::Core(p) => Ok(p.call_arrow(function, batch)?),
            StageModule::Component(c) => Ok(c.call_arrow(function, batch)?),
        }
    }

    /// Checks that `function` is a stage function of the module; the message says what is
    /// wrong.
    pub fn check_function(&self, function: &str) -> Result<(), String> {
        match self {
            StageModule::Core(p) => check_function(p, function),
            StageModule::Component(c) => c.check_function(function).map_err(|e| e.to_string()),
        }
    }
}

/// How the stages are spread over threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum Schedule {
    /// Each stage has its own [`Stage::workers`] threads, with a queue between consecutive
    /// stages: the stages of one batch run on different threads, one after another (a
    /// pipeline in the hardware sense). Good when one stage needs more threads than the others.
    #[default]
    Stages,
    /// `workers` threads, each holding one instance of every stage, each taking a whole batch
    /// through all the stages before taking the next: no queue and no thread hand-off between
    /// stages, so throughput grows with `workers` up to the number of cores.
    /// [`Stage::workers`] is ignored.
    Chain {
        /// Threads (at least 1).
        workers: usize,
    },
}

/// What a pipeline is: source, stages, sink, dead-letter file, batch size and queue depth.
#[derive(Debug, Clone)]
pub struct PipelineSpec {
    /// Where rows come from.
    pub source: Source,
    /// Rows per batch (the last batch may have fewer).
    pub batch_rows: usize,
    /// The stages, in order (none: the source is copied to the sink).
    pub stages: Vec<Stage>,
    /// Where the output goes.
    pub sink: Sink,
    /// The JSON Lines file failed batches go to (`None`: they are counted and dropped).
    pub dead_letter: Option<PathBuf>,
    /// Batches each queue holds before its producer blocks (at least 1).
    pub queue_depth: usize,
    /// How the stages are spread over threads.
    pub schedule: Schedule,
}

impl PipelineSpec {
    /// A pipeline with no stages, [`DEFAULT_BATCH_ROWS`], [`DEFAULT_QUEUE_DEPTH`] and no
    /// dead-letter file.
    pub fn new(source: Source, sink: Sink) -> PipelineSpec {
        PipelineSpec {
            source,
            batch_rows: DEFAULT_BATCH_ROWS,
            stages: Vec::new(),
            sink,
            dead_letter: None,
            queue_depth: DEFAULT_QUEUE_DEPTH,
            schedule: Schedule::Stages,
        }
    }

    /// Runs the stages on the [`Schedule::Chain`] schedule with `workers` threads.
    pub fn chain(mut self, workers: usize) -> Self {
        self.schedule = Schedule::Chain { workers };
        self
    }

    /// Appends a stage: a core [`Plugin`] or a [`ComponentStage`] (or a [`StageModule`]).
    pub fn stage(
        mut self,
        name: &str,
        plugin: impl Into<StageModule>,
        function: &str,
        workers: usize,
    ) -> Self {
        self.stages.push(Stage {
            name: name.to_string(),
            plugin: plugin.into(),
            function: function.to_string(),
            workers,
            recycle: Recycle::Auto,
            pooled: Arc::default(),
        });
        self
    }

    /// Sets when the last stage added is recycled (see [`Recycle`]).
    pub fn recycle(mut self, recycle: Recycle) -> Self {
        if let Some(s) = self.stages.last_mut() {
            s.recycle = recycle;
        }
        self
    }

    /// Reads a pipeline TOML file and loads its stages' modules on `host`. Relative paths are
    /// relative to the file's directory. Errors are one line, `FILE:LINE:COL: message` where
    /// a place in the file is known.
    pub fn from_file(path: &Path, host: &PluginHost) -> Result<PipelineSpec, PipelineError> {
        config::from_file(path, host)
    }

    /// Parses pipeline TOML `text`; `origin` names it in errors and `base` is the directory
    /// relative paths are resolved from.
    pub fn from_toml(
        text: &str,
        origin: &str,
        base: &Path,
        host: &PluginHost,
    ) -> Result<PipelineSpec, PipelineError> {
        config::from_toml(text, origin, base, host)
    }
}

/// A checked pipeline, ready to run (any number of times).
pub struct Pipeline {
    spec: PipelineSpec,
    on_call: Option<CallHook>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("spec", &self.spec)
            .field("on_call", &self.on_call.as_ref().map(|_| "Fn"))
            .finish()
    }
}

/// A function called on a worker thread before each stage call: the stage's name, the batch's
/// sequence number and the batch (see [`Pipeline::on_call`]).
pub type CallHook = Arc<dyn Fn(&str, u64, &RecordBatch) + Send + Sync>;

/// How to run a pipeline.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Continue an interrupted run from its `.progress` checkpoint (a fresh run if there is
    /// none). Without it a run starts over and removes any earlier checkpoint.
    pub resume: bool,
    /// Set to stop: the reader stops, batches in flight are finished and written, the
    /// checkpoint is saved, and the run returns with [`Outcome::Interrupted`].
    pub cancel: Option<Arc<AtomicBool>>,
    /// Live counters, for a progress display polled from another thread.
    pub progress: Option<Arc<Progress>>,
}

/// Live counters of a running pipeline (relaxed atomics; read them from any thread).
#[derive(Debug, Default)]
pub struct Progress {
    /// Batches read from the source (skipped ones of a resumed run included).
    pub batches_read: AtomicU64,
    /// Rows read from the source.
    pub rows_read: AtomicU64,
    /// Bytes read from the source (file bytes; in-memory size for [`Source::Batches`]).
    pub bytes_read: AtomicU64,
    /// Rows written to the sink.
    pub rows_written: AtomicU64,
    /// Batches sent to the dead-letter file.
    pub failed_batches: AtomicU64,
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Every batch was read and handled; the outputs are in place.
    Completed,
    /// Stopped by [`RunOptions::cancel`]; the checkpoint allows `--resume`.
    Interrupted,
}

/// Per-stage figures of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StageStats {
    /// The stage's name.
    pub name: String,
    /// Its function.
    pub function: String,
    /// Its worker threads.
    pub workers: usize,
    /// Batches its function was called on.
    pub batches: u64,
    /// Rows in.
    pub rows_in: u64,
    /// Rows out (of the calls that succeeded).
    pub rows_out: u64,
    /// Arrow memory size of the batches in.
    pub bytes_in: u64,
    /// Arrow memory size of the batches out.
    pub bytes_out: u64,
    /// Calls that failed (their batches went to the dead-letter file).
    pub failures: u64,
    /// Time spent in calls, summed over workers, in seconds.
    pub busy_secs: f64,
    /// Instances replaced between batches because their linear memory had grown past the
    /// stage's bound ([`Recycle`]).
    pub recycled: u64,
    /// The most linear memory one instance of the stage held after a call, in bytes.
    pub memory_peak: u64,
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct RunStats {
    /// How it ended.
    pub outcome: Outcome,
    /// Batches read from the source in this run (skipped ones not included).
    pub batches_read: u64,
    /// Rows read in this run.
    pub rows_read: u64,
    /// Source bytes read in this run.
    pub bytes_read: u64,
    /// Batches skipped because an earlier run had committed them (`--resume`).
    pub resumed_batches: u64,
    /// Batches written to the sink, over all runs of this output (resumed ones included).
    pub batches_written: u64,
    /// Rows written to the sink, over all runs.
    pub rows_written: u64,
    /// Batches sent to the dead-letter file, over all runs.
    pub failed_batches: u64,
    /// Rows of those batches.
    pub failed_rows: u64,
    /// Wall-clock time of this run, in seconds.
    pub elapsed_secs: f64,
    /// The most batches read but not yet written at any time (bounded by the queues).
    pub max_batches_in_flight: u64,
    /// Per stage, in order.
    pub stages: Vec<StageStats>,
    /// The output file (in place only when the outcome is `completed`).
    pub output: Option<PathBuf>,
    /// The dead-letter file (in place only when completed).
    pub dead_letter: Option<PathBuf>,
}

impl Pipeline {
    /// Checks a spec: every number within its bounds ([`MAX_BATCH_ROWS`],
    /// [`MAX_QUEUE_DEPTH`], [`MAX_WORKERS`], [`MAX_ROW_GROUP_ROWS`]; at least 1 each), unique
    /// stage names, every function exported with the ABI v1 signature, distinct files.
    ///
    /// # Errors
    ///
    /// [`PipelineError::Spec`] naming the stage and field.
    pub fn new(spec: PipelineSpec) -> Result<Pipeline, PipelineError> {
        check_bound(spec.batch_rows, MAX_BATCH_ROWS)
            .map_err(|m| PipelineError::spec(None, "batch-rows", m))?;
        check_bound(spec.queue_depth, MAX_QUEUE_DEPTH)
            .map_err(|m| PipelineError::spec(None, "queue-depth", m))?;
        if let Sink::Parquet { row_group_rows, .. } = &spec.sink {
            check_bound(*row_group_rows, MAX_ROW_GROUP_ROWS)
                .map_err(|m| PipelineError::spec(None, "sink.row-group-rows", m))?;
        }
        if let Source::Dir {
            include, exclude, ..
        } = &spec.source
        {
            source::globs("source.include", include)?;
            source::globs("source.exclude", exclude)?;
        }
        if let Schedule::Chain { workers } = spec.schedule {
            check_bound(workers, MAX_WORKERS)
                .map_err(|m| PipelineError::spec(None, "workers", m))?;
        }
        let mut threads = 0usize;
        for (i, s) in spec.stages.iter().enumerate() {
            if s.name.is_empty() {
                return Err(PipelineError::spec(
                    None,
                    &format!("stage {}: name", i + 1),
                    "must not be empty",
                ));
            }
            if spec.stages[..i].iter().any(|o| o.name == s.name) {
                return Err(PipelineError::spec(
                    Some(&s.name),
                    "name",
                    "used by an earlier stage",
                ));
            }
            if spec.schedule == Schedule::Stages {
                threads = threads.saturating_add(s.workers);
                check_bound(s.workers, MAX_WORKERS)
                    .and_then(|()| workers_in_total(threads))
                    .map_err(|m| PipelineError::spec(Some(&s.name), "workers", m))?;
            }
            s.plugin
                .check_function(&s.function)
                .map_err(|m| PipelineError::spec(Some(&s.name), "function", m))?;
        }
        if let (Some(out), Some(dead)) = (spec.sink.path(), &spec.dead_letter)
            && out == dead
        {
            return Err(PipelineError::spec(
                None,
                "dead-letter",
                format!("`{}` is also the sink's path", dead.display()),
            ));
        }
        Ok(Pipeline {
            spec,
            on_call: None,
        })
    }

    /// Calls `hook` on the worker thread before each stage call, with the stage's name, the
    /// batch's sequence number and the batch going in: for tracing, sampling, or injecting
    /// faults in tests. It runs as part of the call: if it panics, the batch goes to the
    /// dead-letter file with the panic's message, like a batch whose call failed.
    pub fn on_call(
        mut self,
        hook: impl Fn(&str, u64, &RecordBatch) + Send + Sync + 'static,
    ) -> Pipeline {
        self.on_call = Some(Arc::new(hook));
        self
    }

    /// The spec it runs.
    pub fn spec(&self) -> &PipelineSpec {
        &self.spec
    }

    /// Runs the pipeline to the end (or until cancelled). A failed call sends its batch to the
    /// dead-letter file and does not stop the run; an error here is fatal (the source cannot
    /// be read, an output cannot be written, a stage cannot be instantiated), and leaves the
    /// checkpoint consistent for `resume`.
    pub fn run(&self, options: &RunOptions) -> Result<RunStats, PipelineError> {
        engine::run(&self.spec, options, self.on_call.as_ref())
    }
}

thread_local! {
    /// Set while [`catch_quiet`] runs: the panic hook stays quiet.
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, turning a panic into its message (one line). Installs once a panic hook that
/// defers to the previous one except while `f` runs on this thread, so a caught panic prints
/// nothing and the error it becomes stays one line.
pub(crate) fn catch_quiet<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(|q| q.get()) {
                previous(info)
            }
        }));
    });
    let was = QUIET.with(|q| q.replace(true));
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET.with(|q| q.set(was));
    r.map_err(|p| {
        p.downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| p.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into())
            .replace('\n', " ")
    })
}

/// Checks that `value` is between 1 and `max`; the message says which bound failed.
pub(crate) fn check_bound(value: usize, max: usize) -> Result<(), String> {
    if value == 0 {
        Err("must be at least 1".into())
    } else if value > max {
        Err(format!("must be at most {max}"))
    } else {
        Ok(())
    }
}

/// Checks the stages' worker threads summed so far against [`MAX_WORKERS`].
pub(crate) fn workers_in_total(threads: usize) -> Result<(), String> {
    if threads > MAX_WORKERS {
        Err(format!(
            "the stages' workers add up to {threads}, over the limit of {MAX_WORKERS} threads"
        ))
    } else {
        Ok(())
    }
}

/// Checks that `function` is exported as `(i32, i32) -> i32`; the message says what is wrong.
pub(crate) fn check_function(plugin: &Plugin, function: &str) -> Result<(), String> {
    let exports = plugin.exports();
    let Some((_, ty)) = exports.iter().find(|(n, _)| n == function) else {
        let names: Vec<&str> = exports.iter().map(|(n, _)| n.as_str()).collect();
        return Err(format!(
            "`{function}` is not exported by plugin `{}` (it exports: {})",
            plugin.name(),
            if names.is_empty() {
                "no functions".to_string()
            } else {
                names.join(", ")
            }
        ));
    };
    let params: Vec<String> = ty.params().map(|t| t.to_string()).collect();
    let results: Vec<String> = ty.results().map(|t| t.to_string()).collect();
    if params != ["i32", "i32"] || results != ["i32"] {
        return Err(format!(
            "`{function}` of plugin `{}` has type ({}) -> ({}), not the ABI v1 (i32, i32) -> i32 \
             (docs/abi.md)",
            plugin.name(),
            params.join(", "),
            results.join(", ")
        ));
    }
    Ok(())
}
