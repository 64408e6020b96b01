//! The `wasmlink` command: glue over the `wasmlink` and `wasmlink-dylink` libraries.
//!
//! One file per subcommand in `commands/`; no subcommand file imports another. What several
//! share has its own module: `flags` (policy flags, `--modules`, value parsers), `progress`
//! (the progress line), `search_modules` (the search engine's modules and their policies),
//! `input` (reading a module, `CliError`) and `output` (every write to stdout and stderr, and
//! the escaping of text that a module controls). Exit statuses (the table is
//! `AFTER_HELP`): 0 success, 1 the command ran but found a problem it reports (a library not
//! found, a symbol unresolved), 2 bad input or usage, or stdout cannot be written; `run` and
//! `python` add 127 (cannot load or link), 134 (trap), 137 (a limit stopped it).

// The subcommands' doc comments are their `--help` text, written for a terminal
// (`NAME[@VERSION]`, `List<Utf8>`), not rustdoc markup.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags)]

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;
mod components;
mod flags;
mod input;
mod malloc;
mod output;
mod progress;
mod search_modules;

const AFTER_HELP: &str = "\
Examples:
  wasmlink inspect libfoo.so            what a module declares for linking
  wasmlink inspect --json libfoo.so     the same, as stable JSON (docs/inspect-json.md)
  wasmlink nm libfoo.so                 its defined and undefined symbols
  wasmlink ldd -L lib main.wasm         where each needed library is found
  wasmlink stub corpus/libc.so          a link-time stub for wasm-ld (stubs/libc.so)
  wasmlink run -L lib main.wasm -- x    load, link and run a program
  wasmlink python -c 'print(6*7)'      CPython 3.14 under the linker (needs the xtask corpus)
  wasmlink call plugin.wasm add 2 3     call an export in a sandbox (deny by default)
  wasmlink compose -o app.wasm main.wasm text.wasm   plug a component's imports with another's
  wasmlink policy check plugin.toml     validate a capability policy
  wasmlink repo add m.wasm --name m --version 1.0.0   store a module in the repository
  wasmlink repo resolve m@^1            the checked object of the highest matching version
  wasmlink pipeline run examples/search/pipeline.toml   stream batches through module stages
  wasmlink index --out idx              index the Rust book with the search engine's modules
  wasmlink search idx 'trait objects'   ranked, titled results (BM25)
  wasmlink serve a.toml                 serve pipelines over Arrow Flight (DoExchange)
  wasmlink sql --table t=x.parquet 'SELECT ...'   SQL with plugins as functions (feature sql)
  wasmlink cluster scheduler --listen 127.0.0.1:50050   a Ballista cluster for sql --cluster (feature cluster)
  wasmlink completions bash > ~/.local/share/bash-completion/completions/wasmlink
  wasmlink man -o ~/.local/share/man/man1   one manual page per subcommand

Environment:
  WASMLINK_LIBRARY_PATH   colon-separated directories searched for needed libraries
  WASMLINK_REPO           the module repository directory (default ~/.local/share/wasmlink/repo)
  WASMLINK_DEBUG          libs,bindings,symbols,pipeline (or all) trace to stderr, as LD_DEBUG
                          does; WASMLINK_DEBUG=help lists them
  WASMLINK_MALLOC=glibc   keep glibc's malloc defaults (wasmlink fixes its mmap threshold at
                          1 MiB, so freed batches go back to the system)

Exit status (every command; each --help says which it uses):
  0    success
  1    the command ran and found a problem (a needed library not found, a symbol unresolved,
       a tampered repository object, a refused or failing plugin call, failed batches)
  2    bad input or usage (missing file, not a WebAssembly module, corrupt section, bad flag),
       or stdout cannot be written (e.g. no space left on device)
  127  run/python: the program cannot be loaded or linked (a library not found, an undefined
       symbol, no `main` or no --invoke function), as ld.so
  130  pipeline run: interrupted (Ctrl-C) after a clean stop
  134  run/python: the program trapped (as a shell reports SIGABRT)
  137  run/python: a limit stopped it (--timeout, --fuel, --max-memory; as SIGKILL)
  N    run/python: otherwise the program's own exit status
Errors are one line on stderr starting with `wasmlink: `. Module files are read up to
256 MiB. Each subcommand's --help lists its own statuses (`run` passes on the program's). A
closed stdout pipe (`wasmlink nm x | head -1`) is not an error. Text from modules (error
messages, captured output, names) is printed with control characters escaped, one line per
line.";

/// wasmlink: a runtime dynamic linker and secure module host for WebAssembly.
#[derive(Parser)]
#[command(name = "wasmlink", version, about, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Inspect(commands::inspect::Args),
    Nm(commands::nm::Args),
    Ldd(commands::ldd::Args),
    Run(commands::run::Args),
    Python(commands::python::Args),
    Call(commands::call::Args),
    Compose(commands::compose::Args),
    Policy(commands::policy::Args),
    Repo(commands::repo::Args),
    Keygen(commands::keygen::Args),
    Pipeline(commands::pipeline::Args),
    Index(commands::index::Args),
    Search(commands::search::Args),
    #[cfg(feature = "flight")]
    Serve(commands::serve::Args),
    #[cfg(feature = "sql")]
    Sql(commands::sql::Args),
    #[cfg(feature = "cluster")]
    Cluster(commands::cluster::Args),
    /// A build without the `sql` feature: says how to get it.
    #[cfg(not(feature = "sql"))]
    #[command(hide = true, disable_help_flag = true)]
    Sql {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        rest: Vec<String>,
    },
    Stub(commands::stub::Args),
    Completions(commands::completions::Args),
    Man(commands::man::Args),
}

/// What `WASMLINK_DEBUG` takes: each topic is the tracing target `wasmlink::TOPIC`.
const DEBUG_TOPICS: &[(&str, &str)] = &[
    (
        "libs",
        "which library is loaded from where: each path searched, each candidate skipped",
    ),
    ("bindings", "how each import of each module is bound"),
    ("symbols", "where each symbol lookup found its definition"),
    ("pipeline", "pipeline stages, workers and batches"),
    (
        "http",
        "components' outgoing wasi:http requests: each one sent, each one the policy denied",
    ),
    (
        "statistics",
        "time spent in each phase of loading a linked process, and in its main",
    ),
    ("all", "all of the above"),
    ("help", "print this list and exit"),
];

/// `WASMLINK_DEBUG=libs,bindings` (or `all`) traces the loader to stderr, as `LD_DEBUG` does;
/// `help` lists the topics (and exits 0, as `LD_DEBUG=help` does); an unknown topic is a
/// one-line warning, and the known ones still apply.
fn init_debug() {
    let Ok(spec) = std::env::var("WASMLINK_DEBUG") else {
        return;
    };
    let topics: Vec<&str> = spec
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if topics.contains(&"help") {
        let mut o = String::from("Valid options for the WASMLINK_DEBUG environment variable:\n\n");
        for (topic, what) in DEBUG_TOPICS {
            o.push_str(&format!("  {topic:<10} {what}\n"));
        }
        o.push_str(
            "\nSeparate options with commas: WASMLINK_DEBUG=libs,bindings wasmlink run ...\n",
        );
        let code = match output::print(&o) {
            Ok(()) => 0,
            Err(e) => {
                output::error(&e);
                2
            }
        };
        std::process::exit(code);
    }
    let mut directives = Vec::new();
    for topic in topics {
        if topic == "all" {
            directives.push("wasmlink=debug".to_string());
        } else if DEBUG_TOPICS.iter().any(|(t, _)| *t == topic) {
            directives.push(format!("wasmlink::{topic}=debug"));
        } else {
            output::diag(format_args!(
                "wasmlink: warning: WASMLINK_DEBUG: unknown option `{topic}` ignored \
                 (WASMLINK_DEBUG=help lists them)"
            ));
        }
    }
    if directives.is_empty() {
        return;
    }
    let filter = tracing_subscriber::EnvFilter::try_new(directives.join(","))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("wasmlink=debug"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .with_level(false)
        .init();
}

/// A usage error as clap words it, under the one prefix of every error (`wasmlink: ` where
/// clap writes `error: `), exit status 2.
fn usage_error(e: &clap::Error) -> ExitCode {
    let text = e.render().to_string();
    // Without a subcommand, clap shows the help (on stderr): no prefix there.
    match text.strip_prefix("error: ") {
        Some(rest) => output::diag_text(&format!("wasmlink: {rest}")),
        None => output::diag_text(&text),
    }
    ExitCode::from(2)
}

fn main() -> ExitCode {
    malloc::tune();
    init_debug();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // --help and --version print on stdout and exit 0.
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => return usage_error(&e),
    };
    let result = match cli.command {
        Command::Inspect(a) => commands::inspect::run(a),
        Command::Nm(a) => commands::nm::run(a),
        Command::Ldd(a) => commands::ldd::run(a),
        Command::Run(a) => commands::run::run(a),
        Command::Python(a) => commands::python::run(a),
        Command::Call(a) => commands::call::run(a),
        Command::Compose(a) => commands::compose::run(a),
        Command::Policy(a) => commands::policy::run(a),
        Command::Repo(a) => commands::repo::run(a),
        Command::Keygen(a) => commands::keygen::run(a),
        Command::Pipeline(a) => commands::pipeline::run(a),
        Command::Index(a) => commands::index::run(a),
        Command::Search(a) => commands::search::run(a),
        #[cfg(feature = "flight")]
        Command::Serve(a) => commands::serve::run(a),
        #[cfg(feature = "sql")]
        Command::Sql(a) => commands::sql::run(a),
        #[cfg(feature = "cluster")]
        Command::Cluster(a) => commands::cluster::run(a),
        #[cfg(not(feature = "sql"))]
        Command::Sql { .. } => Err(input::CliError::Other(
            "sql: this wasmlink was built without the `sql` feature (Apache DataFusion); \
             build it with `cargo install --path . --features sql` or `cargo build --release --features sql`"
                .into(),
        )),
        Command::Stub(a) => commands::stub::run(a),
        Command::Completions(a) => commands::completions::run(a),
        Command::Man(a) => commands::man::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            output::error(&e);
            e.exit_code()
        }
    }
}
