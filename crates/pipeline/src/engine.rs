//! The engine: a reader thread, worker threads per stage, bounded queues between them, and the
//! sink on the calling thread behind a reorder buffer.
//!
//! ```text
//! reader ──q──► stage 1 (N workers) ──q──► ... ──q──► reorder buffer ──► sink + dead letters
//! ```
//!
//! or, with [`Schedule::Chain`], one pool of workers each running every stage:
//!
//! ```text
//! reader ──q──► N workers (stage 1 → stage 2 → ... on one thread) ──q──► reorder ──► sink
//! ```
//!
//! Every queue is a `crossbeam_channel::bounded(queue_depth)`; a full queue blocks its
//! producers. A failed batch travels on as `Item::Failed` (later stages pass it through) so the
//! sink sees every sequence number exactly once and the checkpoint only ever advances over a
//! contiguous prefix.
//!
//! No panic can lose a batch: a panic inside a stage call (the host's handling of a guest's
//! output, or a [`CallHook`]) is caught and its batch becomes a dead letter; a panic anywhere
//! else in a worker, the reader or the sink stops the run with an error. And a run is
//! `Completed` only if the sink wrote or dead-lettered every sequence number the reader sent,
//! so a batch lost any other way (a worker thread gone) fails the run loudly too.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use crossbeam_channel::{Receiver, Sender, bounded};
use sha2::{Digest, Sha256};

use super::component::ComponentInstance;
use super::sink::Output;
use super::source::open_source;
use super::{
    CallHook, Outcome, PipelineError, PipelineSpec, Progress, RunOptions, RunStats, Schedule,
    Source, Stage, StageStats, catch_quiet,
};
use super::{StageCallError, StageModule};
use wasmlink_host::plugin::Instance;

/// A worker's instance of one stage.
enum Worker {
    Core(Instance),
    Component(ComponentInstance),
}

impl Worker {
    fn new(stage: &Stage) -> Result<Worker, StageCallError> {
        Ok(match &stage.plugin {
            StageModule::Core(p) => Worker::Core(p.instance()?),
            StageModule::Component(c) => Worker::Component(c.instance()?),
        })
    }

    /// Bytes of linear memory the instance holds.
    fn memory_bytes(&self) -> u64 {
        match self {
            Worker::Core(i) => i.memory_bytes(),
            Worker::Component(i) => i.memory_bytes(),
        }
    }

    /// Drops the instance without returning it to a pool (its memory goes back to the system).
    fn discard(self) {
        match self {
            Worker::Core(i) => i.discard(),
            Worker::Component(i) => drop(i),
        }
    }

    fn call(&mut self, stage: &Stage, batch: &RecordBatch) -> Result<RecordBatch, StageCallError> {
        match (self, &stage.plugin) {
            (Worker::Core(i), _) => Ok(i.call_arrow(&stage.function, batch)?),
            (Worker::Component(i), StageModule::Component(c)) => {
                Ok(i.call(c, &stage.function, batch)?)
            }
            (Worker::Component(_), StageModule::Core(_)) => {
                Err(StageCallError::Component(super::ComponentStageError::Load(
                    "internal error: a component instance for a core stage".into(),
                )))
            }
        }
    }
}

/// A worker thread's instance of one stage (made on first use, and again after a failed call
/// or a recycle), the largest input batch it has passed to the stage, and the instance's memory
/// after its first call (0 before it).
#[derive(Default)]
struct Slot {
    instance: Option<Worker>,
    largest_batch: u64,
    after_first_call: u64,
}

/// How often the sink commits a checkpoint (syncing its files).
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

enum Item {
    Ok {
        seq: u64,
        batch: RecordBatch,
    },
    Failed {
        seq: u64,
        stage: usize,
        error: String,
        batch: RecordBatch,
    },
}

impl Item {
    fn seq(&self) -> u64 {
        match self {
            Item::Ok { seq, .. } | Item::Failed { seq, .. } => *seq,
        }
    }
}

#[derive(Default)]
struct Counters {
    batches: AtomicU64,
    rows_in: AtomicU64,
    rows_out: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    failures: AtomicU64,
    busy_nanos: AtomicU64,
    recycled: AtomicU64,
    memory_peak: AtomicU64,
}

#[derive(Default)]
struct Shared {
    /// Set on a fatal error: every thread stops.
    abort: AtomicBool,
    fatal: Mutex<Option<PipelineError>>,
    /// The fatal error is one a resume would meet again (the source is bad): the run's
    /// temporary files and checkpoint are removed rather than kept.
    abandon: AtomicBool,
    /// The next sequence number the sink waits for.
    done: AtomicU64,
    max_ahead: AtomicU64,
}

impl Shared {
    fn fail(&self, e: PipelineError) {
        tracing::error!(target: "wasmlink::pipeline", "{e}");
        if let Ok(mut f) = self.fatal.lock()
            && f.is_none()
        {
            *f = Some(e);
        }
        self.abort.store(true, Ordering::SeqCst);
    }

    /// As [`Shared::fail`], for an error that makes the checkpoint useless.
    fn fail_final(&self, e: PipelineError) {
        self.abandon.store(true, Ordering::SeqCst);
        self.fail(e);
    }
}

/// Identifies a pipeline for `--resume`: the source (and its length), batch size, each stage's
/// name, module hash and function, the sink and the dead-letter file.
pub(crate) fn fingerprint(spec: &PipelineSpec) -> String {
    let len = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let mut text = match &spec.source {
        Source::JsonLines { path } => format!("jsonl {} {}", path.display(), len(path)),
        Source::Csv { path } => format!("csv {} {}", path.display(), len(path)),
        Source::Arrow { path } => format!("arrow {} {}", path.display(), len(path)),
        Source::Parquet { path } => format!("parquet {} {}", path.display(), len(path)),
        Source::Dir {
            path,
            extensions,
            binary,
            include,
            exclude,
        } => {
            let mut text = format!("dir {} {extensions:?} {binary}", path.display());
            if !include.is_empty() || !exclude.is_empty() {
                text.push_str(&format!(" {include:?} {exclude:?}"));
            }
            // Batches end at a byte budget too: a checkpoint of batches cut by rows alone
            // (before it existed) counts other batches, and is refused, not resumed wrongly.
            text.push_str(&format!(" batch-bytes {}", super::source::DIR_BATCH_BYTES));
            text
        }
        Source::Batches(b) => {
            let rows: usize = b.iter().map(|b| b.num_rows()).sum();
            format!("batches {} {rows}", b.len())
        }
    };
    text.push_str(&format!("\nbatch-rows {}\n", spec.batch_rows));
    for s in &spec.stages {
        text.push_str(&format!(
            "stage {} {} {}\n",
            s.name,
            s.plugin.sha256(),
            s.function
        ));
    }
    text.push_str(&format!(
        "sink {:?}\ndead {:?}\n",
        spec.sink, spec.dead_letter
    ));
    hex::encode(Sha256::digest(text.as_bytes()))
}

pub(crate) fn run(
    spec: &PipelineSpec,
    options: &RunOptions,
    on_call: Option<&CallHook>,
) -> Result<RunStats, PipelineError> {
    let start = Instant::now();
    let fingerprint = fingerprint(spec);
    let mut output = Output::open(
        &spec.sink,
        spec.dead_letter.as_deref(),
        &fingerprint,
        options.resume,
    )?;
    let skip = output.state.next_seq;
    let progress = options.progress.clone().unwrap_or_default();
    let cancel = options.cancel.clone().unwrap_or_default();
    progress
        .rows_written
        .store(output.state.rows_written, Ordering::Relaxed);
    progress
        .failed_batches
        .store(output.state.failed_batches, Ordering::Relaxed);
    let batches = match open_source(&spec.source, spec.batch_rows, progress.clone()) {
        Ok(b) => b,
        Err(e) => {
            // A source that cannot be opened: nothing of this run is worth keeping.
            if !options.resume {
                output.abandon();
            }
            return Err(e);
        }
    };
    tracing::info!(
        target: "wasmlink::pipeline",
        "starting: {} stage(s), batch-rows {}, queue-depth {}{}",
        spec.stages.len(),
        spec.batch_rows,
        spec.queue_depth,
        if skip > 0 { format!(", resuming after batch {}", skip - 1) } else { String::new() }
    );
    let shared = Arc::new(Shared {
        done: AtomicU64::new(skip),
        ..Shared::default()
    });
    let counters: Vec<Arc<Counters>> = spec.stages.iter().map(|_| Arc::default()).collect();

    std::thread::scope(|scope| -> Result<RunStats, PipelineError> {
        let (tx0, mut rx) = bounded::<Item>(spec.queue_depth);
        let reader = {
            let shared = shared.clone();
            let progress = progress.clone();
            let cancel = cancel.clone();
            std::thread::Builder::new()
                .name("pipeline-reader".into())
                .spawn_scoped(scope, move || {
                    catch_quiet(|| read(batches, tx0, skip, &shared, &progress, &cancel))
                        .unwrap_or_else(|m| {
                            shared.fail_final(PipelineError::Engine(format!(
                                "the reader thread panicked: {m}"
                            )));
                            (0, 0, false)
                        })
                })
                .map_err(|e| {
                    PipelineError::Engine(format!("cannot start the reader thread: {e}"))
                })?
        };
        let mut workers = Vec::new();
        if let Schedule::Chain { workers: n } = spec.schedule
            && !spec.stages.is_empty()
        {
            let (tx, next_rx) = bounded::<Item>(spec.queue_depth);
            for w in 0..n {
                let (rx, tx) = (rx.clone(), tx.clone());
                let sh = shared.clone();
                let counters = &counters;
                let handle = std::thread::Builder::new()
                    .name(format!("pipeline-chain-{w}"))
                    .spawn_scoped(scope, move || {
                        guard(&sh, &format!("worker thread {w}"), || {
                            work_chain(&spec.stages, rx, tx, &sh, counters, on_call)
                        })
                    });
                match handle {
                    Ok(h) => workers.push(h),
                    Err(e) => shared.fail(PipelineError::Engine(format!(
                        "cannot start worker thread {w}: {e}"
                    ))),
                }
            }
            rx = next_rx;
        }
        let per_stage = if spec.schedule == Schedule::Stages {
            &spec.stages[..]
        } else {
            &[]
        };
        for (i, stage) in per_stage.iter().enumerate() {
            let (tx, next_rx) = bounded::<Item>(spec.queue_depth);
            for w in 0..stage.workers {
                let (rx, tx) = (rx.clone(), tx.clone());
                let sh = shared.clone();
                let counters = counters[i].clone();
                let handle = std::thread::Builder::new()
                    .name(format!("pipeline-{}-{w}", stage.name))
                    .spawn_scoped(scope, move || {
                        guard(
                            &sh,
                            &format!("stage `{}`: worker thread {w}", stage.name),
                            || work(i, stage, rx, tx, &sh, &counters, on_call),
                        )
                    });
                match handle {
                    Ok(h) => workers.push(h),
                    Err(e) => shared.fail(PipelineError::Stage {
                        stage: stage.name.clone(),
                        message: format!("cannot start a worker thread: {e}"),
                    }),
                }
            }
            rx = next_rx;
        }

        // The sink: write in sequence order, checkpointing as it goes.
        let mut pending: BTreeMap<u64, Item> = BTreeMap::new();
        let mut next = skip;
        let mut last_checkpoint = Instant::now();
        'recv: for item in rx.iter() {
            pending.insert(item.seq(), item);
            while let Some(item) = pending.remove(&next) {
                let r = catch_quiet(|| match item {
                    Item::Ok { seq, batch } => output.write(seq, &batch),
                    Item::Failed {
                        seq,
                        stage,
                        error,
                        batch,
                    } => {
                        let s = &spec.stages[stage];
                        output.dead_letter(seq, &s.name, &s.function, &error, &batch)
                    }
                })
                .unwrap_or_else(|m| {
                    Err(PipelineError::Engine(format!(
                        "the sink panicked writing batch {next}: {m}"
                    )))
                });
                if let Err(e) = r {
                    shared.fail(e);
                    break 'recv;
                }
                next += 1;
                shared.done.store(next, Ordering::SeqCst);
                progress
                    .rows_written
                    .store(output.state.rows_written, Ordering::Relaxed);
                progress
                    .failed_batches
                    .store(output.state.failed_batches, Ordering::Relaxed);
            }
            if last_checkpoint.elapsed() >= CHECKPOINT_EVERY {
                if let Err(e) = output.checkpoint() {
                    shared.fail(e);
                    break 'recv;
                }
                last_checkpoint = Instant::now();
            }
        }
        drop(rx);
        let read_result = reader.join();
        for w in workers {
            if w.join().is_err() {
                shared.fail(PipelineError::Engine("a worker thread panicked".into()));
            }
        }
        let (batches_read, rows_read, exhausted) = match read_result {
            Ok(r) => r,
            Err(_) => {
                shared.fail_final(PipelineError::Engine("the reader thread panicked".into()));
                (0, 0, false)
            }
        };
        let fatal = shared.fatal.lock().ok().and_then(|mut f| f.take());
        if let Some(e) = fatal {
            if shared.abandon.load(Ordering::SeqCst) && !options.resume {
                // A fresh run's work is worth nothing if the source is bad (a resumed run keeps
                // the checkpoint it started from, as it found it).
                output.abandon();
            } else {
                // What was written in order is still good: keep it resumable.
                let _ = output.checkpoint();
            }
            return Err(e);
        }
        // Every batch the reader sent must have been written or dead-lettered: anything else
        // (a worker thread gone with its batch) is a loud failure, never a completed run.
        let accounted = next == skip + batches_read && pending.is_empty();
        let outcome = if exhausted && accounted {
            Outcome::Completed
        } else if !exhausted && cancel.load(Ordering::SeqCst) && pending.is_empty() {
            Outcome::Interrupted
        } else {
            let _ = output.checkpoint();
            return Err(PipelineError::Engine(format!(
                "internal error: batch {next} never reached the sink ({} of {} batch(es) read \
                 were written or dead-lettered); the output is incomplete and was not put in \
                 place",
                next - skip,
                batches_read
            )));
        };
        let state = output.state.clone();
        match outcome {
            Outcome::Completed => output.commit()?,
            Outcome::Interrupted => output.checkpoint()?,
        }
        tracing::info!(target: "wasmlink::pipeline", "{outcome:?} after {} batch(es)", state.next_seq);
        let stages = spec
            .stages
            .iter()
            .zip(&counters)
            .map(|(s, c)| StageStats {
                name: s.name.clone(),
                function: s.function.clone(),
                workers: match spec.schedule {
                    Schedule::Stages => s.workers,
                    Schedule::Chain { workers } => workers,
                },
                batches: c.batches.load(Ordering::Relaxed),
                rows_in: c.rows_in.load(Ordering::Relaxed),
                rows_out: c.rows_out.load(Ordering::Relaxed),
                bytes_in: c.bytes_in.load(Ordering::Relaxed),
                bytes_out: c.bytes_out.load(Ordering::Relaxed),
                failures: c.failures.load(Ordering::Relaxed),
                busy_secs: c.busy_nanos.load(Ordering::Relaxed) as f64 / 1e9,
                recycled: c.recycled.load(Ordering::Relaxed),
                memory_peak: c.memory_peak.load(Ordering::Relaxed),
            })
            .collect();
        Ok(RunStats {
            outcome,
            batches_read,
            rows_read,
            bytes_read: progress.bytes_read.load(Ordering::Relaxed),
            resumed_batches: skip,
            batches_written: state.batches_written,
            rows_written: state.rows_written,
            failed_batches: state.failed_batches,
            failed_rows: state.failed_rows,
            elapsed_secs: start.elapsed().as_secs_f64(),
            max_batches_in_flight: shared.max_ahead.load(Ordering::Relaxed),
            stages,
            output: spec.sink.path().map(|p| p.to_path_buf()),
            dead_letter: spec.dead_letter.clone(),
        })
    })
}

/// The reader: numbers the batches, skips the committed ones, stops on cancel. Returns the
/// batches and rows it sent and whether the source was read to its end.
fn read(
    batches: super::source::Batches,
    tx: Sender<Item>,
    skip: u64,
    shared: &Shared,
    progress: &Progress,
    cancel: &AtomicBool,
) -> (u64, u64, bool) {
    let (mut sent, mut rows) = (0u64, 0u64);
    let mut seq = 0u64;
    for r in batches {
        if shared.abort.load(Ordering::SeqCst) {
            return (sent, rows, false);
        }
        if cancel.load(Ordering::SeqCst) {
            tracing::info!(target: "wasmlink::pipeline", "interrupted: stopped reading at batch {seq}");
            return (sent, rows, false);
        }
        let batch = match r {
            Ok(b) => b,
            Err(e) => {
                shared.fail_final(e);
                return (sent, rows, false);
            }
        };
        progress.batches_read.fetch_add(1, Ordering::Relaxed);
        progress
            .rows_read
            .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
        if seq < skip {
            seq += 1;
            continue;
        }
        let n = batch.num_rows() as u64;
        if tx.send(Item::Ok { seq, batch }).is_err() {
            return (sent, rows, false);
        }
        seq += 1;
        sent += 1;
        rows += n;
        let ahead = seq.saturating_sub(shared.done.load(Ordering::SeqCst));
        shared.max_ahead.fetch_max(ahead, Ordering::Relaxed);
    }
    if seq < skip {
        shared.fail(PipelineError::Engine(format!(
            "cannot resume: the source now has {seq} batch(es), fewer than the {skip} committed; \
             run without --resume to start over"
        )));
        return (sent, rows, false);
    }
    (sent, rows, !shared.abort.load(Ordering::SeqCst))
}

/// What one call of a stage did to a batch.
enum Step {
    Ok(RecordBatch),
    /// The call failed: the batch goes to the dead letters with this message.
    Failed(String),
    /// Fatal: the run stops (reported through `shared`).
    Fatal,
}

/// Calls `stage` on `batch` with the worker's instance of it (taken, or taken again after a
/// failed call or a recycle), counting into `counters`.
fn call_stage(
    stage: &Stage,
    slot: &mut Slot,
    batch: &RecordBatch,
    seq: u64,
    shared: &Shared,
    counters: &Counters,
    on_call: Option<&CallHook>,
) -> Step {
    let batch_bytes = batch.get_array_memory_size() as u64;
    slot.largest_batch = slot.largest_batch.max(batch_bytes);
    let instance = &mut slot.instance;
    let inst = match instance {
        Some(i) => i,
        None => match Worker::new(stage) {
            Ok(i) => {
                slot.after_first_call = 0;
                instance.insert(i)
            }
            Err(e) => {
                shared.fail(PipelineError::Stage {
                    stage: stage.name.clone(),
                    message: e.to_string(),
                });
                return Step::Fatal;
            }
        },
    };
    let started = Instant::now();
    // A panic in the call (the host handling what the guest returned, or the hook) must not
    // take the worker and its batch with it: the batch becomes a dead letter.
    let result = catch_quiet(|| {
        if let Some(hook) = on_call {
            hook(&stage.name, seq, batch);
        }
        inst.call(stage, batch)
    });
    let result = match result {
        Ok(r) => r,
        Err(m) => {
            let error = format!("the host panicked handling the call: {m}");
            tracing::warn!(target: "wasmlink::pipeline", "batch {seq}: stage `{}`: {error}", stage.name);
            counters.batches.fetch_add(1, Ordering::Relaxed);
            counters.failures.fetch_add(1, Ordering::Relaxed);
            *instance = None;
            return Step::Failed(error);
        }
    };
    counters
        .busy_nanos
        .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
    counters.batches.fetch_add(1, Ordering::Relaxed);
    counters
        .rows_in
        .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
    counters.bytes_in.fetch_add(batch_bytes, Ordering::Relaxed);
    match result {
        Ok(out) => {
            // The call's result is out of the instance (a batch of its own): an instance whose
            // memory has grown past the bound is dropped now, and the next batch gets a fresh
            // one. Stages are stateless between batches (docs/pipeline.md).
            let memory = inst.memory_bytes();
            counters.memory_peak.fetch_max(memory, Ordering::Relaxed);
            if slot.after_first_call == 0 {
                slot.after_first_call = memory;
            }
            if let Some(bound) = stage
                .recycle
                .bound(slot.largest_batch, slot.after_first_call)
                && memory > bound
                && let Some(old) = instance.take()
            {
                tracing::debug!(
                    target: "wasmlink::pipeline",
                    "batch {seq}: stage `{}`: instance recycled ({} bytes of memory, bound {bound})",
                    stage.name,
                    memory
                );
                old.discard();
                counters.recycled.fetch_add(1, Ordering::Relaxed);
            }
            counters
                .rows_out
                .fetch_add(out.num_rows() as u64, Ordering::Relaxed);
            counters
                .bytes_out
                .fetch_add(out.get_array_memory_size() as u64, Ordering::Relaxed);
            Step::Ok(out)
        }
        Err(e) if e.is_call_failure() => {
            tracing::warn!(target: "wasmlink::pipeline", "batch {seq}: stage `{}`: {e}", stage.name);
            counters.failures.fetch_add(1, Ordering::Relaxed);
            // The instance may be poisoned: the next batch gets a fresh one.
            *instance = None;
            Step::Failed(e.to_string())
        }
        Err(e) => {
            shared.fail(PipelineError::Stage {
                stage: stage.name.clone(),
                message: e.to_string(),
            });
            Step::Fatal
        }
    }
}

/// Runs a worker's body; a panic outside a stage call (which `call_stage` catches) stops the
/// run with an error naming the thread, rather than silently losing the batch it held.
fn guard(shared: &Shared, thread: &str, body: impl FnOnce()) {
    if let Err(m) = catch_quiet(body) {
        shared.fail(PipelineError::Engine(format!("{thread} panicked: {m}")));
    }
}

/// One worker of the chain schedule: one instance of every stage; each batch goes through all
/// of them on this thread.
fn work_chain(
    stages: &[Stage],
    rx: Receiver<Item>,
    tx: Sender<Item>,
    shared: &Shared,
    counters: &[Arc<Counters>],
    on_call: Option<&CallHook>,
) {
    let mut instances: Vec<Slot> = stages.iter().map(|_| Slot::default()).collect();
    for item in rx.iter() {
        let (seq, mut batch) = match item {
            Item::Ok { seq, batch } => (seq, batch),
            failed => {
                if tx.send(failed).is_err() {
                    return;
                }
                continue;
            }
        };
        let mut failed = None;
        for (i, stage) in stages.iter().enumerate() {
            if shared.abort.load(Ordering::SeqCst) {
                return;
            }
            match call_stage(
                stage,
                &mut instances[i],
                &batch,
                seq,
                shared,
                &counters[i],
                on_call,
            ) {
                Step::Ok(out) => batch = out,
                Step::Failed(error) => {
                    failed = Some((i, error));
                    break;
                }
                Step::Fatal => return,
            }
        }
        let item = match failed {
            None => Item::Ok { seq, batch },
            Some((stage, error)) => Item::Failed {
                seq,
                stage,
                error,
                batch,
            },
        };
        if tx.send(item).is_err() {
            return;
        }
    }
}

/// One worker of stage `index`: one instance, taken fresh after a failed call.
fn work(
    index: usize,
    stage: &Stage,
    rx: Receiver<Item>,
    tx: Sender<Item>,
    shared: &Shared,
    counters: &Counters,
    on_call: Option<&CallHook>,
) {
    let mut instance = Slot::default();
    for item in rx.iter() {
        let (seq, batch) = match item {
            Item::Ok { seq, batch } => (seq, batch),
            failed => {
                if tx.send(failed).is_err() {
                    return;
                }
                continue;
            }
        };
        if shared.abort.load(Ordering::SeqCst) {
            return;
        }
        #[cfg(test)]
        match tests::fault(seq) {
            Some(tests::Fault::Panic) => panic!("injected worker fault at batch {seq}"),
            Some(tests::Fault::Drop) => continue,
            None => {}
        }
        let item = match call_stage(stage, &mut instance, &batch, seq, shared, counters, on_call) {
            Step::Ok(out) => Item::Ok { seq, batch: out },
            Step::Failed(error) => Item::Failed {
                seq,
                stage: index,
                error,
                batch,
            },
            Step::Fatal => return,
        };
        if tx.send(item).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    //! The engine's own guards against losing a batch outside a stage call: a worker that
    //! panics between calls, and one that drops a batch without a word (faults injected here
    //! only, in test builds).

    use std::sync::Mutex;

    use arrow_array::{Int64Array, RecordBatch};
    use wasmlink_host::plugin::PluginHost;
    use wasmlink_host::policy::Policy;

    use crate::{Outcome, Pipeline, PipelineError, PipelineSpec, RunOptions, Sink, Source};

    #[derive(Clone, Copy)]
    pub(super) enum Fault {
        Panic,
        Drop,
    }

    /// The fault to inject at one sequence number (one test at a time holds `SERIAL`).
    static FAULT: Mutex<Option<(u64, Fault)>> = Mutex::new(None);
    static SERIAL: Mutex<()> = Mutex::new(());

    pub(super) fn fault(seq: u64) -> Option<Fault> {
        match *FAULT.lock().unwrap_or_else(|e| e.into_inner()) {
            Some((at, f)) if at == seq => Some(f),
            _ => None,
        }
    }

    const IDENTITY: &str = r#"(module
      (memory (export "memory") 2)
      (global $heap (mut i32) (i32.const 1024))
      (func $alloc (export "wasmlink_alloc") (param $size i32) (param $align i32) (result i32)
        (local $p i32)
        (local.set $p (global.get $heap))
        (global.set $heap (i32.add (local.get $p) (local.get $size)))
        (local.get $p))
      (func (export "wasmlink_free") (param i32 i32 i32))
      (func (export "run") (param $ptr i32) (param $len i32) (result i32)
        (local $out i32)
        (global.set $heap (i32.const 1024))
        (local.set $out (call $alloc (local.get $len) (i32.const 1)))
        (memory.copy (local.get $out) (local.get $ptr) (local.get $len))
        (i32.store (i32.const 16) (i32.const 0))
        (i32.store (i32.const 20) (local.get $out))
        (i32.store (i32.const 24) (local.get $len))
        (i32.store (i32.const 28) (local.get $len))
        (i32.const 16)))"#;

    fn run_with(fault: Fault) -> Result<crate::RunStats, PipelineError> {
        let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        let host = PluginHost::new(Default::default()).unwrap();
        let plugin = host
            .load("identity", IDENTITY.as_bytes(), Policy::default())
            .unwrap();
        let batches: Vec<RecordBatch> = (0..8)
            .map(|b| {
                RecordBatch::try_from_iter([(
                    "id",
                    std::sync::Arc::new(Int64Array::from(vec![b; 3])) as _,
                )])
                .unwrap()
            })
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let mut spec = PipelineSpec::new(
            Source::Batches(batches),
            Sink::JsonLines(dir.path().join("out.jsonl")),
        )
        .stage("id", plugin, "run", 2);
        spec.batch_rows = 3;
        *FAULT.lock().unwrap_or_else(|e| e.into_inner()) = Some((5, fault));
        let r = Pipeline::new(spec).unwrap().run(&RunOptions::default());
        *FAULT.lock().unwrap_or_else(|e| e.into_inner()) = None;
        assert!(
            !dir.path().join("out.jsonl").exists(),
            "an incomplete output was put in place"
        );
        r
    }

    #[test]
    fn a_worker_that_panics_between_calls_fails_the_run() {
        let e = run_with(Fault::Panic).unwrap_err();
        assert_eq!(
            e.to_string(),
            "stage `id`: worker thread 0 panicked: injected worker fault at batch 5"
                .replace("thread 0", &format!("thread {}", worker_of(&e)))
        );
        assert!(matches!(e, PipelineError::Engine(_)), "{e:?}");
    }

    /// The worker number in an engine error (either worker may take the batch).
    fn worker_of(e: &PipelineError) -> String {
        let t = e.to_string();
        t.split("worker thread ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .unwrap_or("?")
            .to_string()
    }

    #[test]
    fn a_batch_lost_without_a_panic_fails_the_run_rather_than_complete_it() {
        match run_with(Fault::Drop) {
            Err(e) => {
                assert!(
                    e.to_string()
                        .starts_with("internal error: batch 5 never reached the sink"),
                    "{e}"
                );
                assert!(matches!(e, PipelineError::Engine(_)), "{e:?}");
            }
            Ok(stats) => {
                assert_ne!(stats.outcome, Outcome::Completed, "a lost batch completed");
                panic!("a lost batch gave {stats:?}");
            }
        }
    }
}
