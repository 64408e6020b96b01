//! `wasmlink python`: CPython 3.14 (the componentize-py corpus) under the runtime linker.
//!
//! A tiny PIE main (below, in WAT) exports `__main_argc_argv` and calls `Py_BytesMain`; the
//! process preloads `libc.so` and `libpython3.14.so` from the search path (`-L` dirs, then the
//! home), maps the standard library read-only at [`GUEST_HOME`] and points `PYTHONHOME` there.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use wasmlink::ProcessBuilder;
use wasmlink::policy::{ByteSize, DirGrant, DirMode, OutputMode, Policy, RandomMode, StdinMode};
use wasmlink::resolve::SearchPath;

use crate::input::CliError;
use crate::output::diag;

/// Where the guest sees the home's `python/` directory; `PYTHONHOME` points there.
pub const GUEST_HOME: &str = "/python";

/// The standard library below a home's `python/` directory (`getpath`'s landmark is `os.py`).
const STDLIB: &str = "python/lib/python3.14";

/// `argv[0]` of the interpreter.
const PROGRAM: &str = "python3.14";

/// The main program: a wasm-ld `-pie` style main (memory, table and stack pointer imported)
/// whose only code is `return Py_BytesMain(argc, argv);`.
const MAIN_WAT: &str = r#"
(module
  (@dylink.0
    (mem-info (memory 0 0) (table 0 0))
    (needed "libc.so" "libpython3.14.so"))
  (import "env" "memory" (memory 0))
  (import "env" "__indirect_function_table" (table 0 funcref))
  (import "env" "__stack_pointer" (global (mut i32)))
  (import "env" "__memory_base" (global i32))
  (import "env" "__table_base" (global i32))
  (import "env" "Py_BytesMain" (func $Py_BytesMain (param i32 i32) (result i32)))
  (func (export "__main_argc_argv") (param $argc i32) (param $argv i32) (result i32)
    (call $Py_BytesMain (local.get $argc) (local.get $argv)))
)
"#;

/// Run CPython 3.14 (from the componentize-py corpus) under the runtime linker.
#[derive(clap::Args)]
#[command(after_help = "\
ARGS are CPython's own command line: `-c CODE`, `-m MODULE`, a script path (in a --dir), ...
The standard library is mapped read-only at /python (PYTHONHOME=/python); the program sees
no other host directory unless --dir grants it (read-write), and has the host's stdio, clocks
and entropy. Get a home with `cargo run -p wasmlink-xtask -- corpus` (target/corpus).

Examples:
  wasmlink python -c 'print(6*7)'
  wasmlink python --dir scripts::/s /s/hello.py arg1
  wasmlink python --dir src::/src --env PYTHONPATH=/src -m mymod
  wasmlink python -m json.tool --help

Environment:
  WASMLINK_PYTHON_HOME    the home (default target/corpus)

Exit status: the interpreter's (SystemExit's code); 127 if it cannot be loaded or linked;
134 if it traps; 2 for bad usage or a missing home.")]
pub struct Args {
    /// The directory holding libpython3.14.so, libc.so, ... and python/lib/python3.14
    /// (default: target/corpus in the current directory).
    #[arg(long, value_name = "DIR", env = "WASMLINK_PYTHON_HOME")]
    home: Option<PathBuf>,
    /// Search DIR for libraries before the home (repeatable).
    #[arg(short = 'L', value_name = "DIR")]
    lib_dirs: Vec<PathBuf>,
    /// Give the program the host directory HOST, read-write, as GUEST (default: same path).
    #[arg(long, value_name = "HOST[::GUEST]")]
    dir: Vec<String>,
    /// Set an environment variable for the interpreter (repeatable), e.g. PYTHONPATH=/src.
    #[arg(long, value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Cache compiled code in DIR (default: $WASMLINK_CACHE_DIR, $XDG_CACHE_HOME/wasmlink or
    /// ~/.cache/wasmlink).
    #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
    cache_dir: Option<PathBuf>,
    /// Do not cache compiled code on disk.
    #[arg(long)]
    no_cache: bool,
    /// CPython's arguments.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    args: Vec<String>,
}

/// The home to use, checked: it must hold the standard library.
fn home(args: &Args) -> Result<PathBuf, CliError> {
    let home = args
        .home
        .clone()
        .unwrap_or_else(|| Path::new("target").join("corpus"));
    if !home.join(STDLIB).join("os.py").is_file() {
        return Err(CliError::Other(format!(
            "no Python home at {} (it needs libpython3.14.so and {STDLIB}/os.py): run `cargo run -p wasmlink-xtask -- corpus` in the wasmlink repository, or pass --home DIR",
            home.display()
        )));
    }
    Ok(home)
}

/// The capability policy of the interpreter: the standard library read-only, the granted
/// directories read-write, the host's stdio, clocks and entropy.
fn policy(home: &Path, args: &Args) -> Result<Policy, CliError> {
    let mut policy = Policy::default();
    policy.dirs.push(DirGrant {
        host: home.join("python"),
        guest: GUEST_HOME.to_owned(),
        mode: DirMode::ReadOnly,
    });
    for d in &args.dir {
        let (host, guest) = d.split_once("::").unwrap_or((d.as_str(), d.as_str()));
        policy.dirs.push(DirGrant {
            host: PathBuf::from(host),
            guest: guest.to_owned(),
            mode: DirMode::ReadWrite,
        });
    }
    let env = &mut policy.env.vars;
    env.insert("PYTHONHOME".to_owned(), GUEST_HOME.to_owned());
    // The standard library is read-only: do not try to write .pyc files next to it.
    env.insert("PYTHONDONTWRITEBYTECODE".to_owned(), "1".to_owned());
    policy.stdio.stdin = StdinMode::Inherit;
    policy.stdio.stdout = OutputMode::Inherit;
    policy.stdio.stderr = OutputMode::Inherit;
    policy.capabilities.clocks = true;
    policy.capabilities.random = RandomMode::Secure;
    // As `wasmlink run` without a policy: the whole 32-bit address space.
    policy.limits.memory = Some(ByteSize(4 << 30));
    for e in &args.env {
        let (k, v) = e
            .split_once('=')
            .ok_or_else(|| CliError::Other(format!("--env {e}: expected KEY=VALUE")))?;
        policy.env.vars.insert(k.to_owned(), v.to_owned());
    }
    Ok(policy)
}

pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let home = home(&args)?;
    let mut search = SearchPath::new();
    for d in &args.lib_dirs {
        search.add_dir(d);
    }
    search.add_dir(&home);

    let main =
        wat::parse_str(MAIN_WAT).map_err(|e| CliError::Other(format!("python main: {e}")))?;
    let tmp = tempfile::Builder::new()
        .prefix("wasmlink-python-")
        .tempdir()
        .map_err(|e| CliError::Other(format!("cannot create a temporary directory: {e}")))?;
    let main_path = tmp.path().join("python-main.wasm");
    std::fs::write(&main_path, main)
        .map_err(|e| CliError::Other(format!("cannot write {}: {e}", main_path.display())))?;

    for d in &args.dir {
        let host = d.split_once("::").map_or(d.as_str(), |(h, _)| h);
        if !Path::new(host).is_dir() {
            return Err(CliError::Other(format!(
                "--dir {d}: {host} is not a directory"
            )));
        }
    }
    let builder = ProcessBuilder::new()
        .search_path(search)
        .cache_dir(if args.no_cache {
            None
        } else {
            args.cache_dir
                .clone()
                .or_else(wasmlink::process::default_cache_dir)
        })
        .args(
            std::iter::once(PROGRAM.to_owned())
                .chain(args.args.iter().cloned())
                .collect(),
        )
        .preload("libc.so")
        .preload("libpython3.14.so")
        .sandbox(Arc::new(policy(&home, &args)?));
    let mut process = match builder.load(&main_path) {
        Ok(p) => p,
        Err(e) => {
            diag(format_args!("wasmlink: {e}"));
            return Ok(ExitCode::from(127));
        }
    };
    match process.run_main() {
        Ok(code) => Ok(ExitCode::from((code & 0xff) as u8)),
        Err(e) => {
            diag(format_args!("wasmlink: {e}"));
            Ok(ExitCode::from(134))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_main_is_a_dylink_pie_main() {
        let bytes = wat::parse_str(MAIN_WAT).unwrap();
        let info = wasmlink::dylink::ModuleInfo::parse(&bytes).unwrap();
        assert!(info.is_dynamic());
    }
}
