//! The `wasmlink` command: glue over the `wasmlink` and `wasmlink-dylink` libraries.
//!
//! One file per subcommand in `commands/`. Exit statuses: 0 success, 1 the command ran but
//! found a problem it reports (a library not found, a symbol unresolved), 2 bad input or usage.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;
mod input;

const AFTER_HELP: &str = "\
Examples:
  wasmlink inspect libfoo.so            what a module declares for linking
  wasmlink inspect --json libfoo.so     the same, as stable JSON (docs/inspect-json.md)
  wasmlink nm libfoo.so                 its defined and undefined symbols
  wasmlink ldd -L lib main.wasm         where each needed library is found
  wasmlink run -L lib main.wasm -- x    load, link and run a program

Environment:
  WASMLINK_LIBRARY_PATH   colon-separated directories searched for needed libraries

Exit status:
  0  success
  1  the command ran and found a problem (e.g. a needed library not found)
  2  bad input or usage (missing file, not a WebAssembly module, corrupt section)";

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Inspect(a) => commands::inspect::run(a),
        Command::Nm(a) => commands::nm::run(a),
        Command::Ldd(a) => commands::ldd::run(a),
        Command::Run(a) => commands::run::run(a),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            e.exit_code()
        }
    }
}
