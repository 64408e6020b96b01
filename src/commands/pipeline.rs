//! `wasmlink pipeline run`: run a streaming pipeline of plugin stages (docs/pipeline.md).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::HumanBytes;
use wasmlink::pipeline::{Outcome, Pipeline, PipelineSpec, Progress, RunOptions, RunStats};
use wasmlink::plugin::{HostConfig, PluginHost};

use crate::flags::CacheFlags;
use crate::input::CliError;
use crate::output::{diag, diag_text, print};
use crate::progress::{ProgressLine, SlowStep};

/// Streaming pipelines of modules.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand)]
enum Sub {
    Run(RunArgs),
}

/// Run a pipeline file: a source, stages (modules under policies) and a sink.
#[derive(clap::Args)]
#[command(after_help = "\
The file format and the guarantees are in docs/pipeline.md. The output is written to
PATH.tmp-<pid> and renamed to PATH when the run completes; PATH.progress is the checkpoint.
Ctrl-C stops reading, finishes the batches in flight and saves the checkpoint (a second
Ctrl-C exits at once; the checkpoint stays consistent); --resume continues from it.

Examples:
  wasmlink pipeline run examples/search/pipeline.toml
  wasmlink pipeline run --resume examples/search/pipeline.toml
  wasmlink pipeline run --json examples/search/pipeline.toml > stats.json

Exit status: 0 completed; 1 completed, but some batches went to the dead-letter file;
2 bad pipeline file or a fatal error (unreadable source, unwritable output, stdout cannot be
written); 130 interrupted.")]
struct RunArgs {
    /// The pipeline file (TOML).
    file: PathBuf,
    /// Continue an interrupted run from its checkpoint.
    #[arg(long)]
    resume: bool,
    /// Print the run's statistics as JSON on stdout (instead of the table on stderr).
    #[arg(long)]
    json: bool,
    /// Log what the engine does (tracing) on stderr.
    #[arg(short, long)]
    verbose: bool,
    /// No progress bar, even on a terminal.
    #[arg(long)]
    no_progress: bool,
    #[command(flatten)]
    cache: CacheFlags,
}

pub fn run(args: Args) -> Result<ExitCode, CliError> {
    match args.command {
        Sub::Run(a) => run_pipeline(a),
    }
}

fn run_pipeline(args: RunArgs) -> Result<ExitCode, CliError> {
    if args.verbose {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("wasmlink=debug"))
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .try_init();
    }
    let host = PluginHost::new(HostConfig {
        cache_dir: args.cache.dir(),
        ..HostConfig::default()
    })
    .map_err(|e| CliError::Other(e.to_string()))?;
    // Loading compiles each stage's module unless the compiled-code cache has it: seconds on a
    // first run, so say so if it is slow.
    let compiling = SlowStep::start(
        !args.no_progress,
        std::time::Duration::from_millis(300),
        "loading and compiling the stages' modules...".to_string(),
    );
    let spec = PipelineSpec::from_file(&args.file, &host);
    compiling.finish();
    let spec = spec.map_err(|e| CliError::Other(e.to_string()))?;
    let pipeline = Pipeline::new(spec)
        .map_err(|e| CliError::Other(format!("{}: {e}", args.file.display())))?;

    let cancel = Arc::new(AtomicBool::new(false));
    {
        let cancel = cancel.clone();
        ctrlc::set_handler(move || {
            if cancel.swap(true, Ordering::SeqCst) {
                // Second Ctrl-C: leave now. The checkpoint on disk is consistent.
                std::process::exit(130);
            }
            diag("interrupted: finishing the batches in flight (Ctrl-C again to exit now)");
        })
        .map_err(|e| CliError::Other(format!("cannot install the Ctrl-C handler: {e}")))?;
    }
    let progress = Arc::new(Progress::default());
    let line = ProgressLine::start(progress.clone(), !args.no_progress, |p, secs| {
        let rows = p.rows_read.load(Ordering::Relaxed);
        let bytes = p.bytes_read.load(Ordering::Relaxed);
        format!(
            "{rows} rows read ({:.0} rows/s), {} ({}/s), {} rows written, {} batches failed",
            rows as f64 / secs,
            HumanBytes(bytes),
            HumanBytes((bytes as f64 / secs) as u64),
            p.rows_written.load(Ordering::Relaxed),
            p.failed_batches.load(Ordering::Relaxed),
        )
    });
    let result = pipeline.run(&RunOptions {
        resume: args.resume,
        cancel: Some(cancel),
        progress: Some(progress),
    });
    line.finish();
    let stats = result.map_err(|e| CliError::Other(e.to_string()))?;
    if args.json {
        let json = serde_json::to_string_pretty(&stats).unwrap_or_default();
        print(&(json + "\n"))?;
    } else {
        diag_text(&table(&stats));
    }
    Ok(match stats.outcome {
        Outcome::Interrupted => ExitCode::from(130),
        Outcome::Completed if stats.failed_batches > 0 => ExitCode::from(1),
        Outcome::Completed => ExitCode::SUCCESS,
    })
}

/// The per-stage table and a summary line.
fn table(stats: &RunStats) -> String {
    let mut out = format!(
        "{:<16} {:>7} {:>8} {:>10} {:>10} {:>11} {:>11} {:>8} {:>9}\n",
        "stage",
        "workers",
        "batches",
        "rows in",
        "rows out",
        "bytes in",
        "bytes out",
        "failures",
        "busy"
    );
    for s in &stats.stages {
        out += &format!(
            "{:<16} {:>7} {:>8} {:>10} {:>10} {:>11} {:>11} {:>8} {:>8.2}s\n",
            s.name,
            s.workers,
            s.batches,
            s.rows_in,
            s.rows_out,
            HumanBytes(s.bytes_in).to_string(),
            HumanBytes(s.bytes_out).to_string(),
            s.failures,
            s.busy_secs
        );
    }
    let secs = stats.elapsed_secs.max(1e-3);
    let what = match stats.outcome {
        Outcome::Completed => "completed",
        Outcome::Interrupted => "interrupted (run again with --resume to continue)",
    };
    out += &format!(
        "{what}: {} rows read in {:.2}s ({:.0} rows/s, {}/s); {} rows written{}; {} batch(es) \
         failed{}\n",
        stats.rows_read,
        stats.elapsed_secs,
        stats.rows_read as f64 / secs,
        HumanBytes((stats.bytes_read as f64 / secs) as u64),
        stats.rows_written,
        stats
            .output
            .as_ref()
            .map(|p| format!(" to {}", p.display()))
            .unwrap_or_default(),
        stats.failed_batches,
        match (&stats.dead_letter, stats.failed_batches) {
            (Some(p), n) if n > 0 => format!(" (see {})", p.display()),
            _ => String::new(),
        },
    );
    if stats.resumed_batches > 0 {
        out += &format!(
            "resumed after {} batch(es) committed by an earlier run\n",
            stats.resumed_batches
        );
    }
    out
}
