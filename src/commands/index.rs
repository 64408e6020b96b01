//! `wasmlink index`: build a search index over a directory of HTML, Markdown and text files by
//! streaming it through the search engine's modules (extract -> analyze -> index) with the pipeline engine (`wasmlink::pipeline`), then merging the indexer's segments
//! with the index module's `merge`. `--compare-native` then runs the same wasmlink-search code
//! natively in this process (`wasmlink_search::native`, the harness the `index_native` bench
//! also uses), for the throughput ratio.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use indicatif::HumanBytes;
use wasmlink::pipeline::{
    Outcome, Pipeline, PipelineSpec, Progress, RunOptions, Sink, Source, StageModule,
};
use wasmlink::plugin::{HostConfig, PluginHost};

use crate::flags::{CacheFlags, ModulesFlag, parse_duration};
use crate::input::CliError;
use crate::output::{diag, diag_text};
use crate::progress::ProgressLine;
use crate::search_modules::load_module_timeout;

/// The file extensions indexed (as the pipeline's directory source spells them).
const EXTENSIONS: &[&str] = &["html", "htm", "md", "markdown", "txt"];

/// Index a directory of HTML, Markdown and text files with the search engine's modules.
#[derive(clap::Args)]
#[command(after_help = "\
Each stage is a module under its own policy (examples/search/*.toml): extract (documents to
title and text) and analyze (text to terms: tokenize, lowercase, stop words, stem) get nothing
(no filesystem at all); index gets the --out directory read-write at /index. Batches stream
over bounded queues to --workers threads, each holding one instance of every stage and taking
a batch through all three in turn (--schedule chain, the default); with
--schedule stages, each stage has --workers threads of its own instead, with a queue between
stages. The indexer writes one segment per batch under OUT/segments,
and its `merge` function combines them into OUT (manifest.json last, so OUT holds a complete
index or none). Failed batches go to OUT/dead-letter.jsonl.

The default corpus is the Rust book shipped with the toolchain
($(rustc --print sysroot)/share/doc/rust/html/book; `rustup component add rust-docs` if it
is missing). Modules are looked up as for `wasmlink search` (--modules, WASMLINK_MODULES,
target/guest-modules/; build them with `bash scripts/build-guests.sh`).

Examples:
  wasmlink index --out target/book-index
  wasmlink index --corpus \"$(rustc --print sysroot)/share/doc/rust/html\" --out target/docs-index --workers 2
  wasmlink index --corpus \"$(rustc --print sysroot)/share/doc/rust/html\" --out target/std-index \\
      --include 'std/**/*.html' --exclude 'std/**/all.html'
  wasmlink search target/book-index \"lifetime elision\"

With --json, the report goes to stdout as one object instead of the table on stderr
(docs/cli-json.md, format_version 1): {\"format_version\": 1, \"out\", \"documents\",
\"files_read\", \"bytes_read\", \"terms\", \"postings\", \"segments\", \"stages\": [{\"name\",
\"workers\", \"batches\", \"rows_in\", \"rows_out\", \"busy_secs\", \"recycled\", \"memory_peak\"}], \"streaming_secs\",
\"merge_secs\", \"failed_batches\", \"failed_rows\", \"dead_letter\" (null if none failed),
\"native\" (with --compare-native: {\"documents\", \"bytes\", \"secs\", \"extract_secs\",
\"analysis_secs\"}; else null)}.

Exit status: 0 indexed; 1 indexed, but some batches failed (see the dead-letter file);
2 bad usage, a missing corpus or module, or a fatal error.")]
pub struct Args {
    /// The directory to index (default: the Rust book of the local toolchain).
    #[arg(long, value_name = "DIR")]
    corpus: Option<PathBuf>,
    /// The index directory to write (created if missing; an index there is replaced).
    #[arg(long, value_name = "INDEX_DIR", default_value = "search-index")]
    out: PathBuf,
    /// Worker threads, each with its own instance of the stages' modules (with --schedule
    /// stages: per stage).
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// How stages are spread over threads: `chain` (each worker runs every stage on a batch)
    /// or `stages` (each stage has its own workers, queues between stages).
    #[arg(long, value_enum, default_value_t = ScheduleArg::Chain)]
    schedule: ScheduleArg,
    /// Documents per batch (and per segment); a batch also ends once its files reach 4 MiB.
    #[arg(long, default_value_t = 256)]
    batch_rows: usize,
    /// Index only the html/htm/md/markdown/txt files whose path under the corpus matches this
    /// glob (`*`, `?`, `[..]`, `{a,b}`, `**` across directories; as in ripgrep's -g, a glob
    /// without `/` matches names at any depth: `*.md`); repeatable. Without it: all of them.
    #[arg(long, value_name = "GLOB")]
    include: Vec<String>,
    /// Leave out files and directories whose path under the corpus matches this glob;
    /// repeatable.
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
    /// Wall-clock limit of each module call, replacing the policies' (60s; 10m for index), or
    /// `none`: no limit, and the modules run without the clock checks a limit compiles into
    /// every loop and call, 1.1 to 1.4x faster (BENCHMARKS.md). With `none`, a document that
    /// sent a module into an endless loop would hang the run instead of going to the
    /// dead-letter file.
    #[arg(long, value_name = "DURATION|none", value_parser = parse_duration)]
    timeout: Option<wasmlink::policy::HumanDuration>,
    /// A stage of your own between analyze and index: a stage component
    /// (wit/pipeline/stage.wit; FUNCTION defaults to wasmlink:pipeline/stage#process) or a core
    /// module with an ABI v1 Arrow function (FUNCTION defaults to `process`). Its output must
    /// keep analyze's columns and their types (`terms` a List<Utf8>; a component sees it as
    /// a utf8 string of space-separated terms and returns it so). It runs with no capabilities.
    #[arg(long, value_name = "FILE.wasm[:FUNCTION]")]
    stage: Option<String>,
    /// Where the search engine's modules are.
    #[command(flatten)]
    modules: ModulesFlag,
    #[command(flatten)]
    cache: CacheFlags,
    /// Afterwards, run the same wasmlink-search code natively in this process (same workers
    /// and batches, no index written) and print the throughput ratio.
    #[arg(long)]
    compare_native: bool,
    /// No progress line, even on a terminal.
    #[arg(long)]
    no_progress: bool,
    /// Print the report as one JSON object on stdout (fields in the help text below).
    #[arg(long)]
    json: bool,
    /// Replace a worker's instance of a stage between batches once its linear memory is past
    /// this size (at least 1MiB), or `none`. Default: the pipeline's (docs/pipeline.md,
    /// `recycle-above`).
    #[arg(long, value_name = "SIZE|none", value_parser = wasmlink::pipeline::Recycle::parse)]
    recycle_above: Option<wasmlink::pipeline::Recycle>,
}

/// `index --json` (docs/cli-json.md).
#[derive(serde::Serialize)]
struct JsonReport {
    format_version: u32,
    out: String,
    documents: u64,
    files_read: u64,
    bytes_read: u64,
    terms: u64,
    postings: u64,
    segments: u64,
    stages: Vec<JsonStage>,
    streaming_secs: f64,
    merge_secs: f64,
    failed_batches: u64,
    failed_rows: u64,
    dead_letter: Option<String>,
    native: Option<JsonNative>,
}

#[derive(serde::Serialize)]
struct JsonStage {
    name: String,
    workers: usize,
    batches: u64,
    rows_in: u64,
    rows_out: u64,
    busy_secs: f64,
    /// Instances replaced because their memory passed the bound (docs/pipeline.md).
    recycled: u64,
    /// The most linear memory one instance held after a call, in bytes.
    memory_peak: u64,
}

#[derive(serde::Serialize)]
struct JsonNative {
    documents: u64,
    bytes: u64,
    secs: f64,
    extract_secs: f64,
    analysis_secs: f64,
}

/// `--schedule`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ScheduleArg {
    Chain,
    Stages,
}

/// The Rust book of the local toolchain.
fn default_corpus() -> Result<PathBuf, CliError> {
    let out = std::process::Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .map_err(|e| {
            CliError::Other(format!(
                "no --corpus given and `rustc --print sysroot` failed ({e}); pass --corpus DIR"
            ))
        })?;
    if !out.status.success() {
        return Err(CliError::Other(
            "no --corpus given and `rustc --print sysroot` failed; pass --corpus DIR".into(),
        ));
    }
    let sysroot = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let book = Path::new(&sysroot).join("share/doc/rust/html/book");
    if !book.is_dir() {
        return Err(CliError::Input {
            path: book,
            message: "the Rust book is not installed (run `rustup component add rust-docs`), \
                      or pass --corpus DIR"
                .into(),
        });
    }
    Ok(book)
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

pub fn run(args: Args) -> Result<ExitCode, CliError> {
    if args.workers == 0 {
        return Err(CliError::Other("--workers: must be at least 1".into()));
    }
    if args.batch_rows == 0 {
        return Err(CliError::Other("--batch-rows: must be at least 1".into()));
    }
    for (flag, patterns) in [("--include", &args.include), ("--exclude", &args.exclude)] {
        for p in patterns {
            wasmlink::pipeline::check_glob(p)
                .map_err(|m| CliError::Other(format!("{flag}: bad pattern `{p}`: {m}")))?;
        }
    }
    let corpus = match &args.corpus {
        Some(dir) if !dir.is_dir() => {
            let message = match std::fs::metadata(dir) {
                Ok(_) => "--corpus: not a directory: give the directory that holds the \
                          documents (choose files in it with --include GLOB)"
                    .to_string(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    "--corpus: no such directory".to_string()
                }
                Err(e) => format!("--corpus: {}", crate::input::io_message(&e)),
            };
            return Err(CliError::Input {
                path: dir.clone(),
                message,
            });
        }
        Some(dir) => dir.clone(),
        None => default_corpus()?,
    };
    let out = &args.out;
    std::fs::create_dir_all(out).map_err(|e| CliError::Input {
        path: out.clone(),
        message: format!("cannot create the index directory: {e}"),
    })?;
    // Segments of an earlier (interrupted) run would be merged too: start clean.
    let segments = out.join("segments");
    if segments.exists() {
        std::fs::remove_dir_all(&segments).map_err(|e| CliError::Input {
            path: segments.clone(),
            message: format!("cannot remove stale segments: {e}"),
        })?;
    }

    let host = PluginHost::new(HostConfig {
        pool_slots: 0,
        cache_dir: args.cache.dir(),
        ..HostConfig::default()
    })
    .map_err(|e| CliError::Other(e.to_string()))?;
    let load = |name: &str, dir: Option<&Path>| {
        load_module_timeout(&host, &args.modules, name, dir, args.timeout)
    };
    let extract = load("extract", None)?;
    let analyze = load("analyze", None)?;
    let index = load("index", Some(out))?;
    let user_stage = match &args.stage {
        Some(spec) => Some(load_user_stage(
            &host,
            spec,
            args.timeout,
            [&extract, &analyze],
        )?),
        None => None,
    };

    let source = Source::Dir {
        path: corpus.clone(),
        extensions: EXTENSIONS.iter().map(|s| s.to_string()).collect(),
        binary: true,
        include: args.include.clone(),
        exclude: args.exclude.clone(),
    };
    let mut spec = PipelineSpec::new(source.clone(), Sink::None)
        .stage("extract", extract, "extract", args.workers)
        .stage("analyze", analyze, "analyze", args.workers);
    if let Some(user) = user_stage {
        spec = spec.stage(&user.name, user.module, &user.function, args.workers);
    }
    spec = spec.stage("index", index.clone(), "index", args.workers);
    if let Some(recycle) = args.recycle_above {
        for stage in &mut spec.stages {
            stage.recycle = recycle;
        }
    }
    spec.batch_rows = args.batch_rows;
    spec.dead_letter = Some(out.join("dead-letter.jsonl"));
    if args.schedule == ScheduleArg::Chain {
        spec = spec.chain(args.workers);
    }
    let pipeline = Pipeline::new(spec).map_err(|e| CliError::Other(e.to_string()))?;

    diag(format_args!(
        "indexing {} into {} ({} worker(s){}, {} documents per batch{})",
        corpus.display(),
        out.display(),
        args.workers,
        match args.schedule {
            ScheduleArg::Chain => ", each running every stage",
            ScheduleArg::Stages => " per stage",
        },
        args.batch_rows,
        match args.timeout {
            Some(t) if t.is_none() => ", no timeout".to_string(),
            Some(t) => format!(", timeout {t} per call"),
            None => String::new(),
        }
    ));
    let progress = Arc::new(Progress::default());
    let line = ProgressLine::start(progress.clone(), !args.no_progress, |p, secs| {
        let files = p.rows_read.load(Ordering::Relaxed);
        let bytes = p.bytes_read.load(Ordering::Relaxed);
        format!(
            "{files} files read ({:.0} files/s), {} ({}/s), {} segments written",
            files as f64 / secs,
            HumanBytes(bytes),
            HumanBytes((bytes as f64 / secs) as u64),
            p.rows_written.load(Ordering::Relaxed),
        )
    });
    let started = Instant::now();
    let result = pipeline.run(&RunOptions {
        resume: false,
        cancel: None,
        progress: Some(progress),
    });
    line.finish();
    let stats = result.map_err(|e| CliError::Other(e.to_string()))?;
    if stats.outcome != Outcome::Completed {
        return Err(CliError::Other("indexing was interrupted".into()));
    }
    if stats.rows_read == 0 {
        return Err(CliError::Input {
            path: corpus,
            message: if args.include.is_empty() {
                format!("no {} files to index", EXTENSIONS.join("/"))
            } else {
                format!("no {} files match --include", EXTENSIONS.join("/"))
            },
        });
    }
    let streamed = started.elapsed();
    // The stages' instances (and their memories, grown to the largest batch each saw) are not
    // needed for the merge: freed first, so the merge does not add to the process's peak.
    drop(pipeline);
    let merge_started = Instant::now();
    let summary = merge(&index, &corpus, out, args.workers)?;
    let merge_time = merge_started.elapsed();
    let total = started.elapsed().as_secs_f64();
    let summary: serde_json::Value = serde_json::from_str(&summary)
        .map_err(|e| CliError::Other(format!("the index module's merge returned bad JSON: {e}")))?;
    let docs = summary["docs"].as_u64().unwrap_or(0);

    let mut report = String::new();
    report.push_str(&format!(
        "indexed {docs} documents ({} files read, {:.2} MB) in {total:.2}s: {:.0} docs/s, {:.2} MB/s\n",
        stats.rows_read,
        mb(stats.bytes_read),
        docs as f64 / total,
        mb(stats.bytes_read) / total,
    ));
    report.push_str(&format!(
        "index: {} terms, {} postings, from {} segments -> {}\n",
        summary["terms"],
        summary["postings"],
        summary["segments"],
        out.display()
    ));
    let skipped: Vec<String> = wasmlink_search::SkipReason::ALL
        .iter()
        .filter_map(|r| {
            let n = summary["skipped"][r.name()].as_u64().filter(|&n| n > 0)?;
            Some(r.describe(n))
        })
        .collect();
    if !skipped.is_empty() {
        report.push_str(&format!("skipped (not indexed): {}\n", skipped.join(", ")));
    }
    report.push_str("stage       workers  batches  rows in  rows out  busy (s)\n");
    for s in &stats.stages {
        report.push_str(&format!(
            "{:<10} {:>8} {:>8} {:>8} {:>9} {:>9.2}\n",
            s.name, s.workers, s.batches, s.rows_in, s.rows_out, s.busy_secs
        ));
    }
    report.push_str(&format!(
        "{:<10} {:>8} {:>8} {:>8} {:>9} {:>9.2}\n",
        "merge",
        1,
        1,
        summary["segments"].as_u64().unwrap_or(0),
        1,
        merge_time.as_secs_f64()
    ));
    report.push_str(&format!(
        "wall: {:.2}s streaming + {:.2}s merging\n",
        streamed.as_secs_f64(),
        merge_time.as_secs_f64()
    ));
    if stats.failed_batches > 0 {
        report.push_str(&format!(
            "{} batch(es) ({} files) failed and were not indexed: see {}\n",
            stats.failed_batches,
            stats.failed_rows,
            out.join("dead-letter.jsonl").display()
        ));
    }
    let dead_letter = out.join("dead-letter.jsonl");
    let mut json = JsonReport {
        format_version: 1,
        out: out.display().to_string(),
        documents: docs,
        files_read: stats.rows_read,
        bytes_read: stats.bytes_read,
        terms: summary["terms"].as_u64().unwrap_or(0),
        postings: summary["postings"].as_u64().unwrap_or(0),
        segments: summary["segments"].as_u64().unwrap_or(0),
        stages: stats
            .stages
            .iter()
            .map(|s| JsonStage {
                name: s.name.clone(),
                workers: s.workers,
                batches: s.batches,
                rows_in: s.rows_in,
                rows_out: s.rows_out,
                busy_secs: s.busy_secs,
                recycled: s.recycled,
                memory_peak: s.memory_peak,
            })
            .collect(),
        streaming_secs: streamed.as_secs_f64(),
        merge_secs: merge_time.as_secs_f64(),
        failed_batches: stats.failed_batches,
        failed_rows: stats.failed_rows,
        dead_letter: (stats.failed_batches > 0).then(|| dead_letter.display().to_string()),
        native: None,
    };
    if !args.json {
        diag_text(&report);
    }

    if args.compare_native {
        let files = source
            .dir_files()
            .unwrap_or_else(|| Ok(Vec::new()))
            .map_err(|e| CliError::Other(e.to_string()))?;
        let native = wasmlink_search::native::index_files(&files, args.batch_rows, args.workers)
            .map_err(|e| CliError::Other(e.to_string()))?;
        json.native = Some(JsonNative {
            documents: native.docs,
            bytes: native.bytes,
            secs: native.secs,
            extract_secs: native.extract_secs,
            analysis_secs: native.analysis_secs,
        });
        let native_rate = mb(native.bytes) / native.secs;
        let wasm_rate = mb(stats.bytes_read) / total;
        diag(format_args!(
            "native (same wasmlink-search code, {} thread(s), no wasm): {} documents, {:.2} MB \
             in {:.2}s: {:.0} docs/s, {:.2} MB/s; wasmlink/native = {:.2}x",
            args.workers,
            native.docs,
            mb(native.bytes),
            native.secs,
            native.docs as f64 / native.secs,
            native_rate,
            wasm_rate / native_rate
        ));
        // The issue's own comparison: the analysis and indexer code alone (no
        // HTML extraction, no file reading), as CPU time summed over threads on both sides.
        let busy = |name: &str| {
            stats
                .stages
                .iter()
                .find(|s| s.name == name)
                .map_or(0.0, |s| s.busy_secs)
        };
        let extract_busy = busy("extract");
        let analysis_busy = busy("analyze") + busy("index");
        diag(format_args!(
            "per stage, seconds summed over threads (native/wasm): extract {:.2} wasm vs {:.2} \
             native ({:.2}x); analyze+index {:.2} wasm vs {:.2} native ({:.2}x; the \
             wasm side includes Arrow exchange and per-batch segment encoding)",
            extract_busy,
            native.extract_secs,
            native.extract_secs / extract_busy.max(1e-9),
            analysis_busy,
            native.analysis_secs,
            native.analysis_secs / analysis_busy.max(1e-9),
        ));
        if native.docs != docs && args.json {
            crate::output::print_json(&json)?;
        }
        if native.docs != docs {
            return Err(CliError::Other(format!(
                "native indexing found {} documents, the modules {docs}",
                native.docs
            )));
        }
    }
    if args.json {
        crate::output::print_json(&json)?;
    }
    Ok(if stats.failed_batches > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `--stage FILE[:FUNCTION]`, loaded and checked.
struct UserStage {
    name: String,
    module: StageModule,
    function: String,
}

/// Splits `FILE.wasm[:FUNCTION]`: a spec that names an existing file is all file (a path may
/// hold `:`); otherwise the function follows the first `.wasm:` or `.wat:`.
fn split_stage_spec(spec: &str) -> (PathBuf, Option<String>) {
    if Path::new(spec).is_file() {
        return (PathBuf::from(spec), None);
    }
    for ext in [".wasm:", ".wat:"] {
        if let Some(at) = spec.find(ext) {
            let cut = at + ext.len() - 1;
            return (
                PathBuf::from(&spec[..cut]),
                Some(spec[cut + 1..].to_string()).filter(|f| !f.is_empty()),
            );
        }
    }
    (PathBuf::from(spec), None)
}

/// Merges the index module's segments into `out`: with two workers or more, its two halves
/// (documents and texts; dictionary and postings) at once in two instances, then the commit
/// (`merge_part`, `merge_commit`); with one, in one call (`merge`). Returns the module's JSON
/// summary.
fn merge(
    index: &wasmlink::plugin::Plugin,
    corpus: &Path,
    out: &Path,
    workers: usize,
) -> Result<String, CliError> {
    let root = std::path::absolute(corpus).ok();
    let failed =
        |e: wasmlink::plugin::PluginError| CliError::Other(format!("{}: {e}", out.display()));
    if workers < 2 {
        return index
            .call_str("merge", &serde_json::json!({ "root": root }).to_string())
            .map_err(failed);
    }
    let part = |which: &str| -> Result<serde_json::Value, CliError> {
        let json = index
            .call_str(
                "merge_part",
                &serde_json::json!({ "part": which }).to_string(),
            )
            .map_err(failed)?;
        serde_json::from_str(&json).map_err(|e| {
            CliError::Other(format!(
                "the index module's merge_part returned bad JSON: {e}"
            ))
        })
    };
    let (text, postings) = std::thread::scope(|s| {
        let text = s.spawn(|| part("text"));
        let postings = part("postings");
        let text = text.join().unwrap_or_else(|_| {
            Err(CliError::Other(format!(
                "{}: the merge thread panicked",
                out.display()
            )))
        });
        (text, postings)
    });
    let (text, postings) = (text?, postings?);
    index
        .call_str(
            "merge_commit",
            &serde_json::json!({ "root": root, "text": text, "postings": postings }).to_string(),
        )
        .map_err(failed)
}

/// Loads `--stage` (no capabilities, the --timeout if given) and checks it on a probe document
/// taken through extract and analyze: its output must keep every column of analyze's with the
/// same type. Errors are one line starting with `--stage FILE:`.
fn load_user_stage(
    host: &PluginHost,
    spec: &str,
    timeout: Option<wasmlink::policy::HumanDuration>,
    [extract, analyze]: [&wasmlink::plugin::Plugin; 2],
) -> Result<UserStage, CliError> {
    use wasmlink::pipeline::ComponentStage;
    let (path, function) = split_stage_spec(spec);
    let fail = |message: String| CliError::Input {
        path: path.clone(),
        message: format!("--stage: {message}"),
    };
    let bytes = std::fs::read(&path).map_err(|e| fail(crate::input::io_message(&e)))?;
    let mut policy = wasmlink::policy::Policy::default();
    if timeout.is_some() {
        policy.limits.timeout = timeout;
    }
    let stem = path
        .file_stem()
        .map_or_else(|| "stage".into(), |s| s.to_string_lossy().into_owned());
    let name = if ["extract", "analyze", "index", "merge"].contains(&stem.as_str()) {
        format!("user-{stem}")
    } else {
        stem
    };
    let (module, function): (StageModule, String) = if wasmlink::component::is_component(&bytes) {
        let function = function.unwrap_or_else(|| wasmlink::pipeline::STAGE_FUNCTION.to_string());
        let stage = ComponentStage::new(&path, &bytes, policy)
            .map_err(|e| fail(e.to_string()))?
            .lists_as_text();
        stage
            .check_function(&function)
            .map_err(|e| fail(e.to_string()))?;
        (StageModule::Component(Arc::new(stage)), function)
    } else {
        let function = function.unwrap_or_else(|| "process".to_string());
        let plugin = host
            .load(&name, &bytes, policy)
            .map_err(|e| fail(e.to_string()))?;
        (StageModule::Core(plugin), function)
    };

    // The probe: one small Markdown document, as the directory source reads it.
    let text = "# Probe\n\nA probe document that wasmlink index runs through the stages.\n";
    let probe = arrow_array::RecordBatch::try_from_iter([
        (
            "path",
            Arc::new(arrow_array::StringArray::from(vec!["probe.md"])) as arrow_array::ArrayRef,
        ),
        (
            "content",
            Arc::new(arrow_array::BinaryArray::from(vec![text.as_bytes()])) as _,
        ),
        (
            "size",
            Arc::new(arrow_array::UInt64Array::from(vec![text.len() as u64])) as _,
        ),
    ])
    .map_err(|e| CliError::Other(format!("the probe batch: {e}")))?;
    let mut expected = probe;
    for (module, f) in [(extract, "extract"), (analyze, "analyze")] {
        expected = module
            .call_arrow(f, &expected)
            .map_err(|e| CliError::Other(format!("{f} failed on the probe document: {e}")))?;
    }
    let got = match &module {
        StageModule::Component(c) => c
            .call_arrow(&function, &expected)
            .map_err(|e| fail(format!("failed on a probe batch of analyze's output: {e}")))?,
        StageModule::Core(p) => p
            .call_arrow(&function, &expected)
            .map_err(|e| fail(format!("failed on a probe batch of analyze's output: {e}")))?,
    };
    check_stage_schema(&expected, &got).map_err(fail)?;
    Ok(UserStage {
        name,
        module,
        function,
    })
}

/// Every column of analyze's output (`want`) must be in the stage's (`got`), same type.
fn check_stage_schema(
    want: &arrow_array::RecordBatch,
    got: &arrow_array::RecordBatch,
) -> Result<(), String> {
    let (want, got) = (want.schema(), got.schema());
    let columns = || {
        want.fields()
            .iter()
            .map(|f| format!("{}: {}", f.name(), f.data_type()))
            .collect::<Vec<_>>()
            .join(", ")
    };
    for field in want.fields() {
        match got.field_with_name(field.name()) {
            Err(_) => {
                return Err(format!(
                    "its output has no column `{}` (the index stage reads analyze's columns: {})",
                    field.name(),
                    columns()
                ));
            }
            Ok(f) if f.data_type() != field.data_type() => {
                return Err(format!(
                    "column `{}` of its output is {}, expected {} as analyze gives it",
                    field.name(),
                    f.data_type(),
                    field.data_type()
                ));
            }
            Ok(_) => {}
        }
    }
    Ok(())
}
