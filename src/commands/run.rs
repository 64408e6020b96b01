//! `wasmlink run`: load a program and its shared libraries, link them, run it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmlink::policy::{ByteSize, HumanDuration, Policy};
use wasmlink::process::Limit;
use wasmlink::resolve::SearchPath;
use wasmlink::{LinkError, ProcessBuilder};

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
  wasmlink run --timeout 2s --fuel 1000000000 --max-memory 64MiB untrusted.wasm
  wasmlink run --allow-net 127.0.0.1:8080 --allow-net localhost:* -L lib client.wasm

Limits (--timeout, --fuel, --max-memory, or limits.timeout/fuel/memory of --policy) hold for
the process's whole life, loading included; a program past one is stopped with one line naming
it. The network is off unless --allow-net (or capabilities.net) allows an address: a denied
connect or bind is the WASI error access-denied (wasi:sockets, WASI 0.2).

Environment:
  WASMLINK_LIBRARY_PATH   colon-separated directories searched for libraries
  WASMLINK_DEBUG          libs,bindings,symbols (or all): trace the loader to stderr

Exit status: the program's own status; 127 if it cannot be loaded or linked (like ld.so);
134 if it traps; 137 if a limit stopped it (--timeout, --fuel, --max-memory: as a shell reports
a killed process); 2 for bad usage or input (a missing or invalid program, a bad policy or
limit) or when stdout cannot be written.")]
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
    /// Allow network connections to, and binds on, HOST:PORT (repeatable; PORT a number or
    /// `*`; HOST an IP address, `[IPv6]`, `localhost` or a host name). Default: no network.
    #[arg(long = "allow-net", value_name = "HOST:PORT")]
    allow_net: Vec<String>,
    /// Let a component send HTTP requests (wasi:http) to HOST (ports 80 and 443), HOST:PORT or
    /// HOST:* (repeatable). Default: none (the request fails with HTTP-request-denied).
    #[arg(long = "allow-http", value_name = "HOST[:PORT]")]
    allow_http: Vec<String>,
    /// Stop the program after DURATION of wall-clock time (e.g. 500ms, 2s), loading included.
    #[arg(long, value_name = "DURATION", value_parser = crate::flags::parse_duration)]
    timeout: Option<HumanDuration>,
    /// Stop the program once it has used N units of fuel (about one per instruction).
    #[arg(long, value_name = "N")]
    fuel: Option<u64>,
    /// Stop the program when it grows its linear memory past SIZE (e.g. 64MiB).
    #[arg(long, value_name = "SIZE", value_parser = crate::flags::parse_size)]
    max_memory: Option<ByteSize>,
    /// Resolve every symbol at load time: a missing function fails the load.
    #[arg(long)]
    bind_now: bool,
    /// A symbol defined by two libraries is an error.
    #[arg(long)]
    strict: bool,
    /// Shadow stack size: bytes, or a size with a unit (`1MiB`, `512k`), as every size flag.
    #[arg(long, value_name = "SIZE", default_value_t = wasmlink::process::DEFAULT_STACK_SIZE,
          value_parser = crate::flags::parse_size_u32)]
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
    #[command(flatten)]
    with: crate::flags::WithFlags,
    /// Arguments for the program.
    #[arg(last = true)]
    args: Vec<String>,
}

pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let result = run_program(args);
    // From here the watchdog has nothing to report.
    SETTLED.store(true, Ordering::SeqCst);
    result
}

/// Set once the command's outcome is known (reported, or about to be returned): the first of
/// the command and its watchdog to set it reports, so a stop is never reported twice.
static SETTLED: AtomicBool = AtomicBool::new(false);

fn run_program(args: Args) -> Result<ExitCode, CliError> {
    if crate::components::is_component(&args.program) {
        return run_component(&args);
    }
    args.with.refuse_for_core(&args.program)?;
    if !args.allow_http.is_empty() {
        return Err(CliError::Other(format!(
            "{}: --allow-http is for components (wasi:http); this is a core module",
            args.program.display()
        )));
    }
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
    let (mut builder, limits) = apply_limits(builder, &args)?;
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
    limits.watchdog(&args.program);
    if let Some(explicit) = plain {
        let mut program = match builder.load_plain(&args.program, &explicit) {
            Ok(p) => p,
            Err(e) => return Ok(limits.fail(&args.program, e, 127)),
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
            Err(e) => limits.fail(&args.program, e, 134),
        });
    }
    let mut process = match builder.load(&args.program) {
        Ok(p) => p,
        Err(e) => return Ok(limits.fail(&args.program, e, 127)),
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
        Err(e) => Ok(limits.fail(&args.program, e, 134)),
    }
}

/// Exit status of a program a limit stopped.
pub const EXIT_LIMIT: u8 = 137;

/// The limits in force and what set each (a flag, or a field of the policy), for the message.
#[derive(Default)]
struct Limits {
    timeout: Option<(Duration, &'static str)>,
    fuel: Option<(u64, &'static str)>,
    memory: Option<(u64, &'static str)>,
}

impl Limits {
    /// Reports `e` on one line; the exit status is [`EXIT_LIMIT`] when a limit stopped the
    /// program, else `otherwise`.
    fn fail(&self, program: &std::path::Path, e: LinkError, otherwise: u8) -> ExitCode {
        if SETTLED.swap(true, Ordering::SeqCst) {
            // The watchdog reported the time limit and is ending the command.
            return ExitCode::from(EXIT_LIMIT);
        }
        let what = program.file_name().map_or_else(
            || program.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        if let LinkError::Limit { limit, .. } = &e {
            let line = match (*limit, self) {
                (
                    Limit::Time(d),
                    Limits {
                        timeout: Some((_, src)),
                        ..
                    },
                ) => Some(format!(
                    "stopped after the {} time limit ({src})",
                    HumanDuration(d)
                )),
                (
                    Limit::Fuel,
                    Limits {
                        fuel: Some((n, src)),
                        ..
                    },
                ) => Some(format!("stopped after the {n}-unit fuel limit ({src})")),
                (
                    Limit::Memory { requested },
                    Limits {
                        memory: Some((max, src)),
                        ..
                    },
                ) if requested > *max => Some(format!(
                    "stopped when growing its memory to {}, past the {} memory limit ({src})",
                    ByteSize(requested),
                    ByteSize(*max)
                )),
                _ => None,
            };
            if let Some(line) = line {
                diag(format_args!("wasmlink: {what}: {line}"));
                return ExitCode::from(EXIT_LIMIT);
            }
        }
        diag(format_args!("wasmlink: {e}"));
        // A missing entry point or `--invoke` function is a link failure (127, as ld.so's
        // undefined symbol), not a trap.
        if let LinkError::NoSuchSymbol { symbol, .. } = &e {
            if symbol == "main" || symbol == "_start" {
                diag(format_args!(
                    "wasmlink: {what} has no `{symbol}`: call one of its exported functions \
                     with --invoke FUNC (`wasmlink nm --defined-only {what}` lists them)"
                ));
            }
            return ExitCode::from(127);
        }
        ExitCode::from(otherwise)
    }

    /// The time limit stops a program at its next loop or call; one blocked in a host call
    /// (a long sleep, a read that never ends) is stopped by this watchdog instead, which ends
    /// the whole command [`WATCHDOG_GRACE`] after the limit with the same line and status.
    fn watchdog(&self, program: &std::path::Path) {
        let Some((limit, src)) = self.timeout else {
            return;
        };
        let what = program.file_name().map_or_else(
            || program.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let _ = std::thread::Builder::new()
            .name("wasmlink-watchdog".into())
            .spawn(move || {
                std::thread::sleep(limit.saturating_add(WATCHDOG_GRACE));
                if SETTLED.swap(true, Ordering::SeqCst) {
                    return;
                }
                diag(format_args!(
                    "wasmlink: {what}: stopped after the {} time limit ({src})",
                    HumanDuration(limit)
                ));
                std::process::exit(i32::from(EXIT_LIMIT));
            });
    }
}

/// How long after its time limit a program blocked in a host call is stopped by the watchdog.
const WATCHDOG_GRACE: Duration = Duration::from_millis(500);

/// Applies the policy and the limit and network flags to `builder`. With --policy, the flags
/// override its fields; without, the program keeps the host's stdio, clocks and randomness and
/// gets only the limits and network the flags give.
fn apply_limits(
    mut builder: ProcessBuilder,
    args: &Args,
) -> Result<(ProcessBuilder, Limits), CliError> {
    let bad = |e: wasmlink::policy::PolicyError| CliError::Other(e.to_string());
    let (mut policy, origin) = match &args.policy {
        Some(file) => (
            Policy::from_file(file).map_err(bad)?,
            file.display().to_string(),
        ),
        None => (Policy::default(), "command line".to_string()),
    };
    let src = |flag: bool, name: &'static str, field: &'static str| if flag { name } else { field };
    apply_net_and_limits(&mut policy, args, &origin)?;
    let limits = Limits {
        timeout: policy.limits.timeout.filter(|t| !t.is_none()).map(|t| {
            (
                t.0,
                src(args.timeout.is_some(), "--timeout", "limits.timeout"),
            )
        }),
        fuel: policy
            .limits
            .fuel
            .map(|n| (n, src(args.fuel.is_some(), "--fuel", "limits.fuel"))),
        memory: policy.limits.memory.map(|b| {
            (
                b.0,
                src(args.max_memory.is_some(), "--max-memory", "limits.memory"),
            )
        }),
    };
    if args.policy.is_some() {
        builder = builder
            .inherit_stdio(false)
            .sandbox(std::sync::Arc::new(policy));
        return Ok((builder, limits));
    }
    let net = policy.net_allow("command line").map_err(bad)?;
    builder = builder
        .timeout(policy.limits.timeout.filter(|t| !t.is_none()).map(|t| t.0))
        .fuel(policy.limits.fuel)
        .memory_limit(policy.limits.memory.map(|b| b.0))
        .configure_wasi(move |wasi| net.clone().apply(wasi));
    Ok((builder, limits))
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

/// A `wasi:cli/command` component: the same flags as a core program, through the same policy
/// (without --policy: the host's stdio, clocks and randomness, the --dir/--env given).
fn run_component(args: &Args) -> Result<ExitCode, CliError> {
    use wasmlink::policy::{DirGrant, DirMode, OutputMode, RandomMode, StdinMode};
    let bad = |e: wasmlink::policy::PolicyError| CliError::Other(e.to_string());
    for (flag, set) in [
        ("-L", !args.lib_dirs.is_empty()),
        ("--preload", !args.preload.is_empty()),
        ("--module", !args.modules.is_empty()),
        (
            "--invoke (use `wasmlink call COMPONENT FUNCTION`)",
            args.invoke.is_some(),
        ),
        ("--repo", args.repo.is_some()),
    ] {
        if set {
            return Err(CliError::Other(format!(
                "{}: {flag} is for core modules; this is a component",
                args.program.display()
            )));
        }
    }
    let (mut policy, origin) = match &args.policy {
        Some(file) => (
            Policy::from_file(file).map_err(bad)?,
            file.display().to_string(),
        ),
        None => {
            let mut p = Policy::default();
            p.stdio.stdin = StdinMode::Inherit;
            p.stdio.stdout = OutputMode::Inherit;
            p.stdio.stderr = OutputMode::Inherit;
            p.capabilities.clocks = true;
            p.capabilities.random = RandomMode::Secure;
            (p, "command line".to_string())
        }
    };
    for d in &args.dir {
        let (host, guest) = d.split_once("::").unwrap_or((d.as_str(), d.as_str()));
        policy.dirs.push(DirGrant {
            host: std::env::current_dir()
                .map(|c| c.join(host))
                .unwrap_or_else(|_| PathBuf::from(host)),
            guest: guest.to_string(),
            mode: DirMode::ReadWrite,
        });
    }
    for e in &args.env {
        let (k, v) = e
            .split_once('=')
            .ok_or_else(|| CliError::Other(format!("--env {e}: expected KEY=VALUE")))?;
        policy.env.vars.insert(k.to_string(), v.to_string());
    }
    apply_net_and_limits(&mut policy, args, &origin)?;
    let mut argv = vec![args.program.display().to_string()];
    argv.extend(args.args.iter().cloned());
    crate::components::run(&args.program, &argv, &policy, &args.with.parse())
}

/// `--allow-net`, `--timeout`, `--fuel` and `--max-memory` on top of the policy (a flag
/// overrides its field), then the policy checked: the same for core programs and components.
fn apply_net_and_limits(policy: &mut Policy, args: &Args, origin: &str) -> Result<(), CliError> {
    for rule in &args.allow_net {
        wasmlink::policy::NetRule::parse(rule)
            .map_err(|e| CliError::Other(format!("--allow-net: {e}")))?;
    }
    policy
        .capabilities
        .net
        .extend(args.allow_net.iter().cloned());
    for rule in &args.allow_http {
        wasmlink::policy::HttpRule::parse(rule)
            .map_err(|e| CliError::Other(format!("--allow-http: {e}")))?;
    }
    policy
        .capabilities
        .http
        .extend(args.allow_http.iter().cloned());
    if args.timeout.is_some() {
        policy.limits.timeout = args.timeout;
    }
    if args.fuel.is_some() {
        policy.limits.fuel = args.fuel;
    }
    if args.max_memory.is_some() {
        policy.limits.memory = args.max_memory;
    }
    policy
        .validate(origin)
        .map_err(|e| CliError::Other(e.to_string()))
}
