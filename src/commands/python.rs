//! `wasmlink python`: CPython 3.14 (the componentize-py corpus) under the runtime linker.
//!
//! A tiny PIE main (below, in WAT) exports `__main_argc_argv` and calls `Py_BytesMain`; the
//! process preloads `libc.so` and `libpython3.14.so` from the search path (`-L` dirs, then the
//! home), maps the standard library read-only at [`GUEST_HOME`] and points `PYTHONHOME` there.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use wasmlink::LinkError;
use wasmlink::ProcessBuilder;
use wasmlink::policy::{
    ByteSize, DirGrant, DirMode, HumanDuration, NetRule, OutputMode, Policy, RandomMode, StdinMode,
};
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
/// whose only code is `return Py_BytesMain(argc, argv);`, plus `exit` and `_exit`.
///
/// Why `exit`: CPython ends a program that raises `SystemExit` with `Py_Exit(code)`, that is
/// `exit(code)`, and the corpus `libc.so` (wasip2) turns that into `wasi:cli/exit#exit`, whose
/// `result<_, _>` keeps only zero or not. The main's definitions come first in the global
/// scope, so libpython's `exit` resolves to this one: it runs libc's `__wasm_call_dtors`
/// (what libc's own `exit` runs: stdio is flushed) and ends the process with the exact status
/// through `proc_exit`. `_exit` (`os._exit`) likewise, without flushing.
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
  (import "env" "__wasm_call_dtors" (func $libc_dtors))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (func (export "__main_argc_argv") (param $argc i32) (param $argv i32) (result i32)
    (call $Py_BytesMain (local.get $argc) (local.get $argv)))
  (func (export "exit") (param $status i32)
    (call $libc_dtors)
    (call $proc_exit (local.get $status))
    unreachable)
  (func (export "_exit") (param $status i32)
    (call $proc_exit (local.get $status))
    unreachable)
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

The network is off unless --allow-net allows an address: a denied connect or bind is the WASI
error access-denied (Python's PermissionError). Limits (--timeout, --fuel, --max-memory) hold
for the whole run, loading included.

Exit status: the interpreter's (SystemExit's code); 127 if it cannot be loaded or linked;
134 if it traps; 137 if a limit stopped it; 2 for bad usage or a missing home.")]
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
    /// Allow network connections to, and binds on, HOST:PORT (repeatable; PORT a number or
    /// `*`; HOST an IP address, `[IPv6]`, `localhost` or a host name). Default: no network.
    #[arg(long = "allow-net", value_name = "HOST:PORT")]
    allow_net: Vec<String>,
    /// Stop the interpreter after DURATION of wall-clock time (e.g. 500ms, 2s), loading included.
    #[arg(long, value_name = "DURATION", value_parser = crate::flags::parse_duration)]
    timeout: Option<HumanDuration>,
    /// Stop the interpreter once it has used N units of fuel (about one per instruction).
    #[arg(long, value_name = "N")]
    fuel: Option<u64>,
    /// Stop the interpreter when it grows its linear memory past SIZE (default: 4GiB, all of it).
    #[arg(long, value_name = "SIZE", value_parser = crate::flags::parse_size)]
    max_memory: Option<ByteSize>,
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
    policy.limits.memory = Some(args.max_memory.unwrap_or(ByteSize(4 << 30)));
    policy.limits.timeout = args.timeout;
    policy.limits.fuel = args.fuel;
    for rule in &args.allow_net {
        NetRule::parse(rule).map_err(|e| CliError::Other(format!("--allow-net: {e}")))?;
    }
    policy.capabilities.net = args.allow_net.clone();
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

    let cache_dir = if args.no_cache {
        None
    } else {
        args.cache_dir
            .clone()
            .or_else(wasmlink::process::default_cache_dir)
    };
    // The main program is written once into the cache directory (named by a hash of its WAT),
    // so that a start neither parses the WAT nor creates and removes a temporary directory.
    let mut tmp = None;
    let main_path = match cache_dir.as_deref().and_then(cached_main) {
        Some(p) => p,
        None => {
            let main = main_bytes()?;
            let dir = tempfile::Builder::new()
                .prefix("wasmlink-python-")
                .tempdir()
                .map_err(|e| {
                    CliError::Other(format!("cannot create a temporary directory: {e}"))
                })?;
            let main_path = dir.path().join("python-main.wasm");
            std::fs::write(&main_path, main).map_err(|e| {
                CliError::Other(format!("cannot write {}: {e}", main_path.display()))
            })?;
            tmp = Some(dir);
            main_path
        }
    };
    for d in &args.dir {
        let host = d.split_once("::").map_or(d.as_str(), |(h, _)| h);
        if !Path::new(host).is_dir() {
            return Err(CliError::Other(format!(
                "--dir {d}: {host} is not a directory"
            )));
        }
    }
    let mut policy = policy(&home, &args)?;
    if let Some(pycache) = cache_dir
        .as_deref()
        .and_then(|c| warm_pycache(c, &home, &search, &main_path))
    {
        use_pycache(&mut policy, pycache, DirMode::ReadOnly);
        // The user's own --env comes last, as in `policy`.
        for e in &args.env {
            if let Some((k, v)) = e.split_once('=') {
                policy.env.vars.insert(k.to_owned(), v.to_owned());
            }
        }
    }
    let builder = ProcessBuilder::new()
        .search_path(search)
        .cache_dir(cache_dir)
        .args(
            std::iter::once(PROGRAM.to_owned())
                .chain(args.args.iter().cloned())
                .collect(),
        )
        .preload("libc.so")
        .preload("libpython3.14.so")
        .sandbox(Arc::new(policy));
    if let Some(limit) = args.timeout.filter(|t| !t.is_none()) {
        watchdog(limit.0);
    }
    let mut process = match builder.load(&main_path) {
        Ok(p) => p,
        Err(e) => return Ok(fail(e, 127)),
    };
    match process.run_main() {
        Ok(code) => {
            // The interpreter has finished: end the host process here rather than tear the
            // store, its memory and every module down first (std's exit flushes stdout).
            drop(tmp);
            std::process::exit(code & 0xff)
        }
        Err(e) => Ok(fail(e, 134)),
    }
}

/// The main program, assembled from [`MAIN_WAT`].
fn main_bytes() -> Result<Vec<u8>, CliError> {
    wat::parse_str(MAIN_WAT).map_err(|e| CliError::Other(format!("python main: {e}")))
}

/// `<cache_dir>/python/<prefix><hash of key>`.
fn cache_subdir(cache_dir: &Path, prefix: &str, key: impl std::hash::Hash) -> PathBuf {
    use std::hash::Hasher;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    cache_dir
        .join("python")
        .join(format!("{prefix}{:016x}", h.finish()))
}

/// The main program's file in the cache directory, written on first use.
fn cached_main(cache_dir: &Path) -> Option<PathBuf> {
    let dir = cache_subdir(cache_dir, "main-", MAIN_WAT);
    let path = dir.join("python-main.wasm");
    if path.is_file() {
        return Some(path);
    }
    let bytes = main_bytes().ok()?;
    wasmlink::engine::write_private(&path, &bytes).ok()?;
    Some(path)
}

/// Where the guest sees the bytecode cache (`PYTHONPYCACHEPREFIX`).
const GUEST_PYCACHE: &str = "/.wasmlink-pycache";

/// Names the complete bytecode cache of a home.
const PYCACHE_STAMP: &str = ".complete";

/// Points the interpreter at the bytecode cache `dir`, granted with `mode`.
fn use_pycache(policy: &mut Policy, dir: PathBuf, mode: DirMode) {
    policy.dirs.push(DirGrant {
        host: dir,
        guest: GUEST_PYCACHE.to_owned(),
        mode,
    });
    let env = &mut policy.env.vars;
    env.insert("PYTHONPYCACHEPREFIX".to_owned(), GUEST_PYCACHE.to_owned());
    if mode == DirMode::ReadWrite {
        env.remove("PYTHONDONTWRITEBYTECODE");
    }
}

/// The bytecode cache of `home`'s standard library, in the compiled-code cache: what the
/// interpreter imports to start, compiled once so that later starts do not compile
/// `encodings` and its aliases from source every time (15 ms of a 94 ms `-c pass`).
///
/// **Trust**: the cache is written only by a start-up run of wasmlink's own (`-c pass`, no
/// user code, arguments or environment), and every user's run sees it read-only, so a script
/// cannot plant bytecode that a later run (with other grants) would execute. CPython checks
/// each `.pyc` against its source's size and mtime (and its own magic number) before using it.
/// Keyed by the home's canonical path. `None` (no cache: the interpreter compiles from
/// source, as before) when the cache cannot be made; never an error.
fn warm_pycache(
    cache_dir: &Path,
    home: &Path,
    search: &SearchPath,
    main_path: &Path,
) -> Option<PathBuf> {
    let canonical = home.canonicalize().ok()?;
    let dir = cache_subdir(cache_dir, "", &canonical);
    if dir.join(PYCACHE_STAMP).is_file() {
        return Some(dir);
    }
    wasmlink::engine::create_private_dir(&dir).ok()?;
    let mut policy = Policy::default();
    policy.dirs.push(DirGrant {
        host: canonical.join("python"),
        guest: GUEST_HOME.to_owned(),
        mode: DirMode::ReadOnly,
    });
    policy
        .env
        .vars
        .insert("PYTHONHOME".to_owned(), GUEST_HOME.to_owned());
    policy.capabilities.clocks = true;
    policy.capabilities.random = RandomMode::Secure;
    policy.limits.memory = Some(ByteSize(4 << 30));
    use_pycache(&mut policy, dir.clone(), DirMode::ReadWrite);
    let mut process = ProcessBuilder::new()
        .search_path(search.clone())
        .cache_dir(Some(cache_dir.to_path_buf()))
        .args(vec![PROGRAM.to_owned(), "-c".to_owned(), "pass".to_owned()])
        .preload("libc.so")
        .preload("libpython3.14.so")
        .sandbox(Arc::new(policy))
        .load(main_path)
        .ok()?;
    if process.run_main().ok()? != 0 {
        return None;
    }
    std::fs::write(dir.join(PYCACHE_STAMP), b"").ok()?;
    Some(dir)
}

/// Exit status of an interpreter a limit stopped (as `wasmlink run`).
const EXIT_LIMIT: u8 = 137;

/// Reports `e` on one line: [`EXIT_LIMIT`] if a limit stopped the interpreter, else `otherwise`.
/// A limit names the flag that set it, wherever it struck (loading a library, a constructor,
/// the interpreter): `python: stopped after the 2s time limit (--timeout)`.
fn fail(e: LinkError, otherwise: u8) -> ExitCode {
    match &e {
        LinkError::Limit { limit, .. } => {
            let flag = match limit {
                wasmlink::process::Limit::Time(_) => " (--timeout)",
                wasmlink::process::Limit::Fuel => " (--fuel)",
                _ => "",
            };
            diag(format_args!("wasmlink: python: {limit}{flag}"));
            ExitCode::from(EXIT_LIMIT)
        }
        _ => {
            diag(format_args!("wasmlink: {e}"));
            ExitCode::from(otherwise)
        }
    }
}

/// The time limit stops the interpreter at its next loop or call; one blocked in a host call
/// (`time.sleep`, a read that never ends) is ended by this thread half a second later, with
/// the same status.
fn watchdog(limit: Duration) {
    let _ = std::thread::Builder::new()
        .name("wasmlink-watchdog".into())
        .spawn(move || {
            std::thread::sleep(limit.saturating_add(Duration::from_millis(500)));
            diag(format_args!(
                "wasmlink: python: stopped after the {} time limit (--timeout)",
                HumanDuration(limit)
            ));
            std::process::exit(i32::from(EXIT_LIMIT));
        });
}

// At file level rather than in a `tests` module, which would import its parent: subcommand files
// never reach out of themselves (tests/all/cli_hostile.rs checks it).
#[cfg(test)]
#[test]
fn the_main_is_a_dylink_pie_main() {
    let bytes = wat::parse_str(MAIN_WAT).unwrap();
    let info = wasmlink::dylink::ModuleInfo::parse(&bytes).unwrap();
    assert!(info.is_dynamic());
}
