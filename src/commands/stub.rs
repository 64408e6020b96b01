//! `wasmlink stub`: a link-time stub of a shared library, as an import library is elsewhere.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use wasmlink::stub::{StubError, stub_of};

use crate::input::{CliError, io_message, read_module};
use crate::output::print;

/// Write a link-time stub of a dylink.0 shared library: its NEEDED list and exported symbols,
/// without the loader's exports that wasm-ld refuses to take from a library.
#[derive(clap::Args)]
#[command(after_help = "\
wasm-ld records a library on the link line in the program's NEEDED list, but refuses some real
libraries: wasi-sdk's libc.so exports its own __wasm_call_dtors, and the link fails with
`__wasm_call_dtors must be a function`. The stub keeps what the link needs: the NEEDED list,
every exported function (same signature, a body that traps) and data symbol, a memory size of 0;
it drops what the loader runs (__wasm_call_ctors, __wasm_call_dtors, __wasm_apply_*_relocs,
__wasm_init_*, _initialize, _start) and what wasm-ld defines itself (__memory_base,
__table_base, __stack_pointer, __indirect_function_table, __heap_base, ...). wasm-ld records
the stub's file name (there is no soname) as the NEEDED entry, so the stub is written as
stubs/NAME by default (NAME being the library's file name). Link against the stub, run against
the real library (keep stubs/ off the run-time search path: the stub's functions trap):

  wasmlink stub corpus/libc.so                     writes stubs/libc.so
  clang-19 --target=wasm32-wasi -fPIC -nostdlib -Wl,-pie -Wl,--experimental-pic \\
    -Wl,--import-memory -Wl,--import-table -Wl,--no-entry -Wl,--export-dynamic \\
    -Wl,--export-if-defined=main -Wl,--export-if-defined=__main_argc_argv \\
    -Wl,--unresolved-symbols=import-dynamic -o main.wasm main.c -Lstubs -lc
  wasmlink run -L corpus main.wasm

The output is written through a temporary file beside it and renamed into place; an existing
regular file is replaced, anything else is refused, and so is the input itself.

Exit status: 0 written; 2 the input is missing, not a WebAssembly module, a component or not a
shared library, or the output cannot be written.")]
pub struct Args {
    /// The shared library (a dylink.0 module built with -shared).
    file: PathBuf,
    /// Where to write the stub [default: stubs/NAME, NAME being the library's file name;
    /// the directory is created].
    #[arg(short, long, value_name = "OUT")]
    output: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let (_, info) = read_module(&args.file)?;
    let stub = stub_of(&info).map_err(|e| CliError::Input {
        path: args.file.clone(),
        message: match e {
            StubError::Parse(p) => p.to_string(),
            other => other.to_string(),
        },
    })?;
    let out = match args.output {
        Some(out) => out,
        None => {
            let name = args.file.file_name().ok_or_else(|| CliError::Input {
                path: args.file.clone(),
                message: "has no file name to name the stub after: give -o OUT".to_string(),
            })?;
            let dir = Path::new("stubs");
            std::fs::create_dir_all(dir)
                .map_err(|e| CliError::Other(format!("stubs: {}", io_message(&e))))?;
            dir.join(name)
        }
    };
    write_stub(&args.file, &out, &stub.bytes)?;
    print(&format!(
        "{}: {} functions, {} data symbols, {} needed{}\n",
        out.display(),
        stub.functions,
        stub.data,
        info.needed().len(),
        if stub.dropped.is_empty() {
            String::new()
        } else {
            format!("; left out {}", stub.dropped.join(", "))
        }
    ))?;
    Ok(ExitCode::SUCCESS)
}

/// Writes `bytes` to `out` through a temporary file beside it, renamed into place, so a failed
/// write leaves no partial file. A target that is not a regular file, or that is the input
/// library itself (the stub would replace the real library), is refused.
fn write_stub(input: &Path, out: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let err = |m: String| CliError::Other(format!("{}: {m}", out.display()));
    let target = match std::fs::metadata(out) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => out.to_path_buf(),
        Err(e) => return Err(err(io_message(&e))),
        Ok(meta) => {
            if !meta.is_file() {
                return Err(err(
                    "not a regular file: the stub is written only to a regular file".to_string(),
                ));
            }
            let target = std::fs::canonicalize(out).map_err(|e| err(io_message(&e)))?;
            if std::fs::canonicalize(input).is_ok_and(|i| i == target) {
                return Err(err(
                    "is the input library: writing the stub there would replace it (give another -o)"
                        .to_string(),
                ));
            }
            target
        }
    };
    crate::output::replace_file(&target, ".wasmlink-stub-", bytes).map_err(err)
}
