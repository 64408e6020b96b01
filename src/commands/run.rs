//! `wasmlink run`: load a program and its shared libraries, link them, run it.

use std::path::PathBuf;
use std::process::ExitCode;

use wasmlink::ProcessBuilder;
use wasmlink::resolve::SearchPath;

use crate::input::CliError;
use crate::output::{diag, print};

/// Run a WebAssembly program with its shared libraries, under WASI preview 1.
#[derive(clap::Args)]
#[command(after_help = "\
The program is a position-independent main (dylink.0; its memory imported, or its own as
wasm-ld's default -pie makes it), a static main that exports its memory, table and
__stack_pointer, or a shared library whose export --invoke names. Needed libraries
are found as `wasmlink ldd` shows. dlopen/dlsym/dlclose/dlerror/dladdr are available to the
program as imports from `env`.

Examples:
  wasmlink run -L lib main.wasm -- input.txt
  wasmlink run --preload libtrace.so -L lib main.wasm
  wasmlink run -L lib libmath.so --invoke compute -- 3 4
  wasmlink run --policy sandbox.toml -L lib main.wasm
  wasmlink run --module env=a.wasm --module env=b.wasm main.wasm

Environment:
  WASMLINK_LIBRARY_PATH   colon-separated directories searched for libraries
  WASMLINK_DEBUG          libs,bindings,symbols (or all): trace the loader to stderr

Exit status: the program's own status; 127 if it cannot be loaded or linked (like ld.so);
134 if it traps; 2 for bad usage or input (a missing or invalid program, a bad policy) or
when stdout cannot be written.")]
pub struct Args {
    /// The program (or library, with --invoke).
    program: PathBuf,
    /// Search DIR for libraries first (repeatable).
    #[arg(short = 'L', value_name = "DIR")]
    lib_dirs: Vec<PathBuf>,
    /// Load LIB right after the program so its symbols interpose (repeatable).
    #[arg(long, value_name = "LIB")]
    preload: Vec<PathBuf>,
    /// Resolve imports from module NAME to the file PATH (plain modules; repeatable: a NAME
    /// given again adds PATH's exports to its namespace, replacing earlier ones of the same name).
    #[arg(long = "module", value_name = "NAME=PATH")]
    modules: Vec<String>,
    /// Give the program the host directory HOST, as GUEST (default: same path).
    #[arg(long, value_name = "HOST[::GUEST]")]
    dir: Vec<String>,
    /// Set an environment variable for the program (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Also look for needed libraries in the module repository DIR, after every directory
    /// (their hashes are checked; see `wasmlink repo`).
    #[arg(long, value_name = "DIR")]
    repo: Option<PathBuf>,
    /// Run under the capability policy FILE (TOML, deny by default; `wasmlink policy schema`).
    /// Without it the program gets the host's stdio, the --dir/--env it is given, clocks and
    /// randomness.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// Resolve every symbol at load time: a missing function fails the load.
    #[arg(long)]
    bind_now: bool,
    /// A symbol defined by two libraries is an error.
    #[arg(long)]
    strict: bool,
    /// Shadow stack size in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = wasmlink::process::DEFAULT_STACK_SIZE)]
    stack_size: u32,
    /// Cache compiled code in DIR (default: $WASMLINK_CACHE_DIR, $XDG_CACHE_HOME/wasmlink or
    /// ~/.cache/wasmlink).
    #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
    cache_dir: Option<PathBuf>,
    /// Do not cache compiled code on disk.
    #[arg(long)]
    no_cache: bool,
    /// Call this export instead of the entry point; ARGS are its integer arguments.
    #[arg(long, value_name = "FUNCTION")]
    invoke: Option<String>,
    /// Arguments for the program.
    #[arg(last = true)]
    args: Vec<String>,
}

pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let mut search = SearchPath::from_env();
    for d in &args.lib_dirs {
        search.add_dir(d);
    }
    if let Some(dir) = &args.repo {
        search.add_repository(
            wasmlink::repo::Repository::open(dir),
            wasmlink::repo::Trust::none(),
        );
    }
    let argv0 = args.program.display().to_string();
    let mut builder = ProcessBuilder::new()
        .search_path(search)
        .bind_now(args.bind_now)
        .strict(args.strict)
        .stack_size(args.stack_size)
        .inherit_stdio(true)
        .cache_dir(if args.no_cache {
            None
        } else {
            args.cache_dir
                .clone()
                .or_else(wasmlink::process::default_cache_dir)
        })
        .args(
            std::iter::once(argv0)
                .chain(args.args.iter().cloned())
                .collect(),
        );
    for p in &args.preload {
        builder = builder.preload(p);
    }
    if let Some(file) = &args.policy {
        let policy = wasmlink::policy::Policy::from_file(file)
            .map_err(|e| CliError::Other(e.to_string()))?;
        builder = builder
            .inherit_stdio(false)
            .sandbox(std::sync::Arc::new(policy));
    }
    for e in &args.env {
        let (k, v) = e
            .split_once('=')
            .ok_or_else(|| CliError::Other(format!("--env {e}: expected KEY=VALUE")))?;
        builder = builder.env(k, v);
    }
    for d in &args.dir {
        let (host, guest) = d.split_once("::").unwrap_or((d.as_str(), d.as_str()));
        builder = builder.preopen(host, guest);
    }
    let plain = plain_program(&args)?;
    if let Some(explicit) = plain {
        let mut program = match builder.load_plain(&args.program, &explicit) {
            Ok(p) => p,
            Err(e) => {
                diag(format_args!("wasmlink: {e}"));
                return Ok(ExitCode::from(127));
            }
        };
        let mut results = String::new();
        let result = match &args.invoke {
            None => program.run_main(),
            Some(f) => {
                let vals: Vec<wasmtime::Val> = args
                    .args
                    .iter()
                    .filter_map(|a| a.parse::<i32>().ok())
                    .map(wasmtime::Val::I32)
                    .collect();
                program.call(f, &vals).map(|out| {
                    results = values(&out);
                    0
                })
            }
        };
        print(&results)?;
        return Ok(match result {
            Ok(code) => ExitCode::from((code & 0xff) as u8),
            Err(e) => {
                diag(format_args!("wasmlink: {e}"));
                ExitCode::from(134)
            }
        });
    }
    let mut process = match builder.load(&args.program) {
        Ok(p) => p,
        Err(e) => {
            diag(format_args!("wasmlink: {e}"));
            return Ok(ExitCode::from(127));
        }
    };
    let result = match &args.invoke {
        None => process.run_main(),
        Some(f) => match invoke(&mut process, f, &args.args) {
            Ok(out) => {
                print(&values(&out))?;
                Ok(0)
            }
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(code) => Ok(ExitCode::from((code & 0xff) as u8)),
        Err(e) => {
            diag(format_args!("wasmlink: {e}"));
            Ok(ExitCode::from(134))
        }
    }
}

fn invoke(
    process: &mut wasmlink::Process,
    name: &str,
    args: &[String],
) -> Result<Vec<wasmtime::Val>, wasmlink::LinkError> {
    let func = process.func(name)?;
    let ty = func.ty(process.store_mut());
    let mut vals = Vec::new();
    for (p, a) in ty.params().zip(args) {
        let bad = || wasmlink::LinkError::NoSuchSymbol {
            symbol: format!("{name}: argument {a:?} is not a {p}"),
            library: "--invoke".to_string(),
        };
        vals.push(match p {
            wasmtime::ValType::I32 => wasmtime::Val::I32(a.parse().map_err(|_| bad())?),
            wasmtime::ValType::I64 => wasmtime::Val::I64(a.parse().map_err(|_| bad())?),
            wasmtime::ValType::F32 => {
                wasmtime::Val::F32(a.parse::<f32>().map_err(|_| bad())?.to_bits())
            }
            wasmtime::ValType::F64 => {
                wasmtime::Val::F64(a.parse::<f64>().map_err(|_| bad())?.to_bits())
            }
            _ => return Err(bad()),
        });
    }
    process.call(name, &vals)
}

/// Results, one per line.
fn values(vals: &[wasmtime::Val]) -> String {
    vals.iter()
        .map(|v| match v {
            wasmtime::Val::I32(x) => format!("{x}\n"),
            wasmtime::Val::I64(x) => format!("{x}\n"),
            wasmtime::Val::F32(x) => format!("{}\n", f32::from_bits(*x)),
            wasmtime::Val::F64(x) => format!("{}\n", f64::from_bits(*x)),
            other => format!("{other:?}\n"),
        })
        .collect()
}

/// `Some(explicit modules)` when the program is a plain module that imports from other modules
/// by name (or `--module` was given): then the host links them by name.
/// A name given more than once is one namespace assembled from all its files, in order.
fn plain_program(args: &Args) -> Result<Option<Vec<(String, PathBuf)>>, CliError> {
    let mut explicit = Vec::new();
    for m in &args.modules {
        let (name, path) = m
            .split_once('=')
            .ok_or_else(|| CliError::Other(format!("--module {m}: expected NAME=PATH")))?;
        explicit.push((name.to_string(), PathBuf::from(path)));
    }
    let (_, info) = crate::input::read_module(&args.program)?;
    if info.is_dynamic() {
        return Ok(None);
    }
    if !explicit.is_empty() || wasmlink::plain::imports_other_modules(&info) {
        return Ok(Some(explicit));
    }
    Ok(None)
}
