//! `wasmlink call`: call one export of a module as a sandboxed plugin, under a policy.

use std::path::PathBuf;
use std::process::ExitCode;

use arrow_array::RecordBatch;

use wasmlink::plugin::manifest::{ExportKind, Input};
use wasmlink::plugin::{HostConfig, PluginError, PluginHost};
use wasmtime::{Val, ValType};

use crate::flags::{CacheFlags, PolicyFlags, WithFlags};
use crate::input::CliError;
use crate::output::{self, print};

/// Call an exported function of a module in a sandbox, under a policy (deny by default).
#[derive(clap::Args)]
#[command(after_help = "\
ARGS are the function's integer or float arguments; the results are printed one per line.
With no policy the module gets nothing: no files, no environment, no clocks, closed stdio,
256 MiB of memory and 30 seconds per call.

Examples:
  wasmlink call math.wasm add 2 3
  wasmlink call --policy plugin.toml plugin.wasm run
  wasmlink call --timeout 100ms --max-memory 16MiB untrusted.wasm work 7
  wasmlink call tokenizer@^1 count 3           a module from the repository (wasmlink repo)
  wasmlink call --with text.wasm app.wasm shout '\"hi\"'   a component's imports from another's

--input/--arrow data larger than the module's memory limit (limits.memory) is refused before it
is read whole; module files are read up to 256 MiB. --output writes a new regular file with the
permissions of the umask (0666 & ~umask), through a temporary file beside it renamed into
place; an existing regular file (or a symlink to one) is replaced, anything else (a device, a
FIFO, a directory) is refused; `-` is stdout. Text from the module (its error messages and
captured stderr, and its stdout on a terminal) is printed with control characters escaped
(\\n, \\x1b, \\u{202e}).

With --json (scalar calls only), one object (docs/cli-json.md, format_version 1):
{\"format_version\": 1, \"function\", \"results\": [{\"type\": \"i32\", \"value\": 5}]}; a value is a
JSON number, or a string for a NaN or infinite float and for reference types.

Exit status: 0 success; 1 the module was refused or the call failed (trap, limit, denial);
2 bad usage or input (a missing, unreadable or invalid module, a bad policy or --env, wrong
arguments, an unwritable --output or stdout; a component import that is not WASI 0.2 and that
no --with component exports, or exports with another type). A closed stdout pipe is not an
error. A trap or limit in a --with component is exit 1, naming its file and function.")]
pub struct Args {
    /// The module file, or a repository reference NAME[@VERSION-REQUIREMENT].
    module: PathBuf,
    /// The module repository for references (default: $WASMLINK_REPO, else the user's data
    /// directory).
    #[arg(long, value_name = "DIR")]
    repo: Option<PathBuf>,
    /// The exported function to call.
    function: String,
    /// Its arguments.
    #[arg(allow_negative_numbers = true)]
    args: Vec<String>,
    /// Pass the bytes of FILE (`-` for stdin) to a byte function (docs/abi.md) and write
    /// what it returns to stdout or --output.
    #[arg(long, value_name = "FILE", conflicts_with = "arrow")]
    input: Option<PathBuf>,
    /// Pass the Arrow IPC stream or file, or the Parquet file (recognised by its `PAR1`
    /// magic), FILE (`-` for stdin) to an Arrow function and write the batches it returns as
    /// an Arrow IPC stream (as Parquet if --output ends in `.parquet`).
    #[arg(long, value_name = "FILE")]
    arrow: Option<PathBuf>,
    /// Write the output of --input/--arrow to FILE instead of stdout (`-`: stdout); FILE must
    /// be a regular file if it exists.
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
    /// Print the results as one JSON object (scalar calls; fields in the help text below).
    #[arg(long, conflicts_with_all = ["input", "arrow", "output"])]
    json: bool,
    #[command(flatten)]
    policy: PolicyFlags,
    #[command(flatten)]
    with: WithFlags,
    #[command(flatten)]
    cache: CacheFlags,
}

pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let policy = args.policy.resolve()?;
    if crate::components::is_component(&args.module) {
        if args.input.is_some() || args.arrow.is_some() || args.json {
            return Err(CliError::Other(format!(
                "{}: --input, --arrow and --json are for core modules; a component's arguments and results are WAVE values",
                args.module.display()
            )));
        }
        let with = args.with.parse();
        return crate::components::call(&args.module, &args.function, &args.args, &policy, &with);
    }
    let host = PluginHost::new(HostConfig {
        pool_slots: 0,
        cache_dir: args.cache.dir(),
        ..HostConfig::default()
    })
    .map_err(|e| CliError::Other(e.to_string()))?;
    let loaded = if args.module.exists() || args.module.extension().is_some_and(|e| e == "wasm") {
        // Read with the CLI's reader, so its 256 MiB bound and message are every command's
        // (`PluginHost::load_file` bounds the size too, at the repository's 1 GiB).
        args.with.refuse_for_core(&args.module)?;
        match crate::input::read_bounded(&args.module) {
            Ok(bytes) => {
                let name = args.module.file_stem().map_or_else(
                    || args.module.display().to_string(),
                    |s| s.to_string_lossy().into_owned(),
                );
                host.load(&name, &bytes, policy)
            }
            Err(e) => Err(PluginError::Io {
                path: args.module.display().to_string(),
                message: format!("cannot read module: {e}"),
            }),
        }
    } else {
        // Not a file: a repository reference such as `tokenizer@^1`.
        let repo = match &args.repo {
            Some(dir) => wasmlink::repo::Repository::open(dir),
            None => wasmlink::repo::Repository::open_default()
                .map_err(|e| CliError::Other(e.to_string()))?,
        };
        let reference = args.module.to_string_lossy();
        let data_flags = args.input.is_some() || args.arrow.is_some() || args.json;
        if let Some(code) = crate::components::call_ref(
            &repo,
            &reference,
            &args.function,
            &args.args,
            &policy,
            data_flags,
            &args.with.parse(),
        )? {
            return Ok(code);
        }
        args.with.refuse_for_core(&args.module)?;
        host.load_ref(&repo, &reference, policy)
    };
    let plugin = match loaded {
        Ok(p) => p,
        Err(e) => return Ok(fail(&e)),
    };
    let kind = plugin.manifest().get(&args.function);
    if args.input.is_some() || args.arrow.is_some() {
        return data_call(&args, &plugin, kind);
    }
    // A string or bytes function given one word: that word is its input, as with --input.
    if args.args.len() == 1
        && kind.is_some_and(|k| {
            matches!(k.input, Input::String | Input::Bytes)
                && k.convention.as_str() == policy_convention(&plugin.policy())
        })
    {
        return text_call(&args, &plugin);
    }
    let Some((_, ty)) = plugin
        .exports()
        .into_iter()
        .find(|(n, _)| *n == args.function)
    else {
        let err = PluginError::NoSuchFunction {
            plugin: plugin.name(),
            function: args.function.clone(),
            available: plugin.exports().into_iter().map(|(n, _)| n).collect(),
        };
        return Err(CliError::Other(err.to_string()));
    };
    let params: Vec<ValType> = ty.params().collect();
    if params.len() != args.args.len() {
        let hint = match kind {
            Some(k) if k.input.is_arrow() => {
                "; it takes an Arrow batch (docs/abi.md): pass it with --arrow FILE \
                 (Arrow IPC or Parquet)"
                    .to_string()
            }
            Some(k) if k.convention.as_str() != policy_convention(&plugin.policy()) => format!(
                "; it takes {k} (docs/abi.md): run it under a policy with abi = \"{}\" and \
                 pass its input with --input FILE (`-` for stdin)",
                k.convention.as_str()
            ),
            Some(k) => format!(
                "; it takes {k} (docs/abi.md): pass it as one argument or with --input FILE \
                 (`-` for stdin)"
            ),
            None if is_abi_function(&plugin, &ty) => "; it is a data-exchange function \
                (docs/abi.md): pass its input with --input FILE (bytes or text, `-` for stdin) \
                or --arrow FILE (Arrow IPC or Parquet)"
                .to_string(),
            None => String::new(),
        };
        return Err(CliError::Other(format!(
            "{}: `{}` takes {} argument(s), {} given (its type is {}){hint}",
            args.module.display(),
            args.function,
            params.len(),
            args.args.len(),
            signature(&ty),
        )));
    }
    let mut vals = Vec::with_capacity(params.len());
    for (i, (t, a)) in params.iter().zip(&args.args).enumerate() {
        vals.push(parse_arg(t, a).ok_or_else(|| {
            CliError::Other(format!(
                "{}: argument {} of `{}`: `{a}` is not a {t}",
                args.module.display(),
                i + 1,
                args.function
            ))
        })?);
    }
    let mut inst = match plugin.instance() {
        Ok(i) => i,
        Err(e) => return Ok(fail(&e)),
    };
    let result = inst.call(&args.function, &vals);
    output::guest_stderr(&inst.take_stderr());
    output::guest_stdout(&inst.take_stdout())?;
    match result {
        Ok(results) if args.json => {
            let results: Vec<serde_json::Value> = results
                .iter()
                .map(|v| serde_json::json!({ "type": val_type(v), "value": json_val(v) }))
                .collect();
            output::print_json(&serde_json::json!({
                "format_version": 1,
                "function": args.function,
                "results": results,
            }))?;
            Ok(ExitCode::SUCCESS)
        }
        Ok(results) => {
            let text: String = results.iter().map(|v| format_val(v) + "\n").collect();
            print(&text)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(fail(&e)),
    }
}

/// Whether `ty` is the type of a function of the data-exchange ABI (docs/abi.md) in a module
/// that speaks it: `(i32, i32) -> i32` and a `wasmlink_abi_version` export.
fn is_abi_function(plugin: &wasmlink::plugin::Plugin, ty: &wasmtime::FuncType) -> bool {
    let i32s = |n: usize, mut it: Box<dyn Iterator<Item = ValType> + '_>| {
        (0..n).all(|_| matches!(it.next(), Some(ValType::I32))) && it.next().is_none()
    };
    i32s(2, Box::new(ty.params()))
        && i32s(1, Box::new(ty.results()))
        && plugin
            .exports()
            .iter()
            .any(|(n, _)| *n == "wasmlink_abi_version")
}

/// A core function type as text: `(i32, i32) -> (i32)` (as `wasmlink nm` writes it).
fn signature(ty: &wasmtime::FuncType) -> String {
    let list = |it: &mut dyn Iterator<Item = ValType>| {
        it.map(|t| t.to_string()).collect::<Vec<_>>().join(", ")
    };
    format!(
        "({}) -> ({})",
        list(&mut ty.params()),
        list(&mut ty.results())
    )
}

/// The format `--arrow` writes to `--output`, from the file's extension: Parquet for
/// `.parquet`; an Arrow IPC stream for `.arrow`, `.arrows`, `.ipc`, no extension and stdout;
/// any other extension (`.jsonl`, `.csv`) is a usage error rather than a surprise.
fn arrow_output_is_parquet(output: Option<&std::path::Path>) -> Result<bool, CliError> {
    let Some(ext) = output
        .filter(|p| p.as_os_str() != "-")
        .and_then(|p| p.extension())
    else {
        return Ok(false);
    };
    let ext = ext.to_string_lossy().to_ascii_lowercase();
    match ext.as_str() {
        "parquet" => Ok(true),
        "arrow" | "arrows" | "ipc" => Ok(false),
        _ => Err(CliError::Other(format!(
            "{}: --arrow writes an Arrow IPC stream (.arrow, .arrows, .ipc) or Parquet \
             (.parquet), not .{ext}; convert with a stage-less pipeline (examples/exchange)",
            output.map(|p| p.display().to_string()).unwrap_or_default()
        ))),
    }
}

/// Whether `bytes` can be the start of an Arrow IPC stream or file: the file magic `ARROW1`,
/// a stream's continuation marker `0xFFFFFFFF`, or (the pre-1.0 stream format) a first message
/// length that fits in the input. Text such as JSON lines or CSV is none of these.
fn looks_like_ipc(bytes: &[u8]) -> bool {
    let Some(first) = bytes.get(..4) else {
        return true; // too short to tell: the IPC reader says what is wrong
    };
    let first = u32::from_le_bytes([first[0], first[1], first[2], first[3]]);
    bytes.starts_with(b"ARROW1")
        || first == 0xFFFF_FFFF
        || (first > 0 && u64::from(first) + 4 <= bytes.len() as u64)
}

/// Reads FILE (`-`: stdin) for --input/--arrow, up to `limit` bytes: an input that cannot fit
/// in the module's memory (limits.memory) is refused before it is read whole (`/dev/zero`).
fn read_input(path: &std::path::Path, limit: u64) -> Result<Vec<u8>, CliError> {
    use std::io::Read;
    let name = if path.as_os_str() == "-" {
        "stdin".to_string()
    } else {
        path.display().to_string()
    };
    let err = |m: String| CliError::Other(format!("{name}: {m}"));
    let reader: Box<dyn Read> = if path.as_os_str() == "-" {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(path).map_err(|e| err(e.to_string()))?)
    };
    let mut buf = Vec::new();
    reader
        .take(limit.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| err(e.to_string()))?;
    if buf.len() as u64 > limit {
        return Err(err(format!(
            "larger than the module's {} memory limit (limits.memory, --max-memory)",
            wasmlink::policy::ByteSize(limit)
        )));
    }
    Ok(buf)
}

/// The batches of an `--arrow` input: Parquet if it starts with `PAR1` (read through the
/// guarded reader of `wasmlink::pipeline`), else an Arrow IPC stream or file. Errors are one
/// line naming the file.
fn read_arrow_input(path: &std::path::Path, limit: u64) -> Result<Vec<RecordBatch>, CliError> {
    use std::io::{Read, Seek, Write};
    let io = |e: std::io::Error| CliError::Other(format!("{}: {e}", path.display()));
    let parquet = |file: std::fs::File| {
        wasmlink::pipeline::read_parquet(file, path).map_err(|e| CliError::Other(e.to_string()))
    };
    let ipc = |bytes: &[u8]| {
        if !looks_like_ipc(bytes) {
            return Err(CliError::Other(format!(
                "{}: not Arrow IPC (stream or file) nor Parquet: --arrow takes those; pass \
                 bytes or text with --input, or convert JSON lines with a stage-less pipeline \
                 (examples/exchange/to-arrow.toml)",
                if path.as_os_str() == "-" {
                    "stdin".to_string()
                } else {
                    path.display().to_string()
                }
            )));
        }
        wasmlink::exchange::read_ipc(bytes)
            .map_err(|e| CliError::Other(format!("{}: {e}", path.display())))
    };
    if path.as_os_str() == "-" {
        let bytes = read_input(path, limit)?;
        if !bytes.starts_with(wasmlink::pipeline::PARQUET_MAGIC) {
            return ipc(&bytes);
        }
        // Parquet is read by seeking: spool stdin to an anonymous temporary file.
        let mut file = tempfile::tempfile().map_err(io)?;
        file.write_all(&bytes).map_err(io)?;
        return parquet(file);
    }
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut magic = Vec::with_capacity(4);
    (&mut file).take(4).read_to_end(&mut magic).map_err(io)?;
    if magic == wasmlink::pipeline::PARQUET_MAGIC {
        file.rewind().map_err(io)?;
        return parquet(file);
    }
    drop(file);
    ipc(&read_input(path, limit)?)
}

/// The manifest's name of the convention a policy's `abi` selects.
fn policy_convention(policy: &wasmlink::policy::Policy) -> &'static str {
    use wasmlink::policy::Abi;
    match policy.abi {
        Abi::Wasmlink => "abi",
        Abi::Seed => "seed",
        Abi::Cstring => "cstring",
        Abi::Ptrlen => "ptrlen",
    }
}

/// A string or bytes function called with its input as the one argument.
fn text_call(args: &Args, plugin: &wasmlink::plugin::Plugin) -> Result<ExitCode, CliError> {
    let mut inst = match plugin.instance() {
        Ok(i) => i,
        Err(e) => return Ok(fail(&e)),
    };
    let result = inst.call_bytes(&args.function, args.args[0].as_bytes());
    output::guest_stderr(&inst.take_stderr());
    match result {
        Ok(mut out) => {
            let to_stdout = args.output.as_ref().is_none_or(|p| p.as_os_str() == "-");
            if to_stdout
                && std::io::IsTerminal::is_terminal(&std::io::stdout())
                && !out.ends_with(b"\n")
            {
                out.push(b'\n');
            }
            output::write_output(args.output.as_deref(), &out)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(fail(&e)),
    }
}

fn data_call(
    args: &Args,
    plugin: &wasmlink::plugin::Plugin,
    kind: Option<ExportKind>,
) -> Result<ExitCode, CliError> {
    // The module's manifest says what the function takes: the wrong flag is a usage error
    // before anything runs.
    match kind {
        Some(k) if k.input.is_arrow() && args.input.is_some() => {
            return Err(CliError::Other(format!(
                "{}: `{}` takes an Arrow batch: pass it with --arrow FILE (Arrow IPC or Parquet), not --input",
                args.module.display(),
                args.function
            )));
        }
        Some(k) if !k.input.is_arrow() && args.arrow.is_some() => {
            return Err(CliError::Other(format!(
                "{}: `{}` takes {k}, not an Arrow batch: pass it with --input FILE (`-` for stdin)",
                args.module.display(),
                args.function
            )));
        }
        _ => {}
    }
    let limit = plugin.policy().effective_limits().memory;
    // Before any work: an --output whose extension names a format --arrow does not write.
    let parquet_out = args.arrow.is_some() && arrow_output_is_parquet(args.output.as_deref())?;
    let mut inst = match plugin.instance() {
        Ok(i) => i,
        Err(e) => return Ok(fail(&e)),
    };
    let result = if let Some(path) = &args.input {
        let input = read_input(path, limit)?;
        inst.call_bytes(&args.function, &input)
    } else if let Some(path) = &args.arrow {
        let batches = read_arrow_input(path, limit)?;
        if batches.is_empty() {
            return Err(CliError::Other(format!(
                "{}: the Arrow input holds no record batch",
                path.display()
            )));
        }
        inst.call_arrow_stream(&args.function, &batches)
            .and_then(|out| {
                if parquet_out {
                    return wasmlink::pipeline::encode_parquet(&out).map_err(|m| {
                        PluginError::Abi {
                            plugin: plugin.name(),
                            function: args.function.clone(),
                            message: format!("cannot encode its output as Parquet: {m}"),
                        }
                    });
                }
                wasmlink::exchange::encode_stream(&out).map_err(|m| PluginError::Abi {
                    plugin: plugin.name(),
                    function: args.function.clone(),
                    message: format!("cannot encode its output: {m}"),
                })
            })
    } else {
        return Ok(ExitCode::SUCCESS);
    };
    output::guest_stderr(&inst.take_stderr());
    match result {
        Ok(out) => {
            output::write_output(args.output.as_deref(), &out)?;
            Ok(ExitCode::SUCCESS)
        }
        // The guest could not read bytes as Arrow (docs/abi.md: its decoding errors name
        // "Arrow IPC"): the function takes Arrow, so say which flag passes that.
        Err(e) if args.input.is_some() && e.to_string().contains("Arrow IPC") => {
            output::error(format_args!(
                "{e}; `{}` reads Arrow: pass its input with --arrow FILE (Arrow IPC or Parquet)",
                args.function
            ));
            Ok(ExitCode::from(1))
        }
        Err(e) => Ok(fail(&e)),
    }
}

/// Prints the error (escaped: it carries the module's own text) and returns the exit status:
/// 2 when the module file is missing, unreadable or not a valid module (bad input), 1 when the
/// module was refused or the call failed.
fn fail(e: &PluginError) -> ExitCode {
    output::error(e);
    if let Some(bt) = e.backtrace()
        && std::env::var_os("WASMLINK_BACKTRACE").is_some()
    {
        output::diag_text(&format!("{bt}\n"));
    }
    match e {
        PluginError::Io { .. } | PluginError::Load { .. } => ExitCode::from(2),
        _ => ExitCode::from(1),
    }
}

fn parse_arg(t: &ValType, a: &str) -> Option<Val> {
    Some(match t {
        ValType::I32 => Val::I32(
            a.parse::<i32>()
                .ok()
                .or_else(|| a.parse::<u32>().ok().map(|u| u as i32))?,
        ),
        ValType::I64 => Val::I64(
            a.parse::<i64>()
                .ok()
                .or_else(|| a.parse::<u64>().ok().map(|u| u as i64))?,
        ),
        ValType::F32 => Val::F32(a.parse::<f32>().ok()?.to_bits()),
        ValType::F64 => Val::F64(a.parse::<f64>().ok()?.to_bits()),
        _ => return None,
    })
}

/// The type name of a result for `--json`.
fn val_type(v: &Val) -> &'static str {
    match v {
        Val::I32(_) => "i32",
        Val::I64(_) => "i64",
        Val::F32(_) => "f32",
        Val::F64(_) => "f64",
        Val::V128(_) => "v128",
        _ => "ref",
    }
}

/// A result as a JSON value: a number, or the text form where JSON has no number for it.
fn json_val(v: &Val) -> serde_json::Value {
    let float = |f: f64| {
        serde_json::Number::from_f64(f).map_or_else(
            || serde_json::Value::String(format_val(v)),
            serde_json::Value::Number,
        )
    };
    match v {
        Val::I32(x) => (*x).into(),
        Val::I64(x) => (*x).into(),
        Val::F32(x) => float(f64::from(f32::from_bits(*x))),
        Val::F64(x) => float(f64::from_bits(*x)),
        _ => serde_json::Value::String(format_val(v)),
    }
}

fn format_val(v: &Val) -> String {
    match v {
        Val::I32(x) => x.to_string(),
        Val::I64(x) => x.to_string(),
        Val::F32(x) => f32::from_bits(*x).to_string(),
        Val::F64(x) => f64::from_bits(*x).to_string(),
        other => format!("{other:?}"),
    }
}
