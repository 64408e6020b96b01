//! `wasmlink nm`: defined and undefined symbols (like `nm -D`).

use std::fmt::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use wasmlink::plugin::manifest::{ExportKind, Manifest};
use wasmlink_dylink::{ExportClass, ModuleInfo, SymbolFlags};

use crate::input::{CliError, read_module};
use crate::output::print;

/// List a module's dynamic symbols: what it defines for others and what it needs from them.
#[derive(clap::Args)]
#[command(after_help = "\
Each line is VALUE TYPE CLASS NAME [SIGNATURE] [FLAGS]:
  VALUE  in hex: function index (T, W); data address relative to __memory_base (D, V;
         for TLS symbols, relative to __tls_base); initial value (G); tag index (E);
         blank for undefined symbols
  TYPE   T function, D data, W weak function, V weak data, G mutable global,
         E exception tag, U undefined, w weak undefined
  CLASS  function, data, tls, init, global, tag for definitions; for undefined symbols
         function, global, got-mem (address of data), got-func (function pointer), tag,
         wasi-p1, wasi-0.2, module
  SIGNATURE  a function's core type: (i32, i32) -> (i32)
  FLAGS  dylink.0 symbol flags other than the binding: [tls], [hidden], [absolute], ...
  <takes INPUT>  a plugin function's input, from the module's wasmlink.exports manifest
         (docs/abi.md): string, bytes, arrow, arrow-in-place or none, and its convention
         when not ABI v1: <takes string (seed)>

Examples:
  wasmlink nm libc.so
  wasmlink nm libc.so libpython3.14.so          each under a FILE: header
  wasmlink nm --undefined-only libpython3.14.so | grep got-func
  wasmlink nm --json libc.so | jq -r '.symbols[] | select(.type == \"T\") | .name'

With --json, one object (docs/cli-json.md, format_version 1):
  {\"format_version\": 1, \"file\": PATH, \"symbols\": [{\"name\", \"type\", \"class\", \"value\",
  \"flags\", \"signature\"}]} where type is the letter above, value an integer or null (undefined),
  flags the dylink.0 flags as names ([\"weak\", \"tls\", ...]), signature a function's core
  type as text (null for other symbols) and, for a plugin function with a manifest record,
  plugin: {\"convention\", \"input\"}. Symbol names are not escaped. With several files, one
  object per file, in order.

Exit status: 0 success, 2 the file is missing or not a valid WebAssembly module, or stdout
cannot be written.")]
pub struct Args {
    /// The modules to list (several: each one's symbols under a `FILE:` header, as nm does).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Only symbols the module defines.
    #[arg(long, conflicts_with = "undefined_only")]
    defined_only: bool,
    /// Only symbols the module needs from others.
    #[arg(short = 'u', long)]
    undefined_only: bool,
    /// Print one JSON object instead of lines (fields in the help text below).
    #[arg(long)]
    json: bool,
}

/// `nm --json` (docs/cli-json.md).
#[derive(serde::Serialize)]
struct JsonReport {
    format_version: u32,
    file: String,
    symbols: Vec<JsonSymbol>,
}

#[derive(serde::Serialize)]
struct JsonSymbol {
    name: String,
    r#type: char,
    class: &'static str,
    value: Option<i64>,
    flags: Vec<String>,
    /// A function's core type, `(i32, i32) -> (i32)`; null for other symbols.
    signature: Option<String>,
    /// What a plugin function takes, from the module's `wasmlink.exports` manifest:
    /// `{"convention": "abi", "input": "arrow"}`; absent for other symbols.
    #[serde(skip_serializing_if = "Option::is_none")]
    plugin: Option<JsonPlugin>,
}

#[derive(serde::Serialize)]
struct JsonPlugin {
    convention: &'static str,
    input: &'static str,
}

struct Line {
    value: Option<i64>,
    letter: char,
    class: &'static str,
    name: String,
    flags: SymbolFlags,
    signature: Option<String>,
    plugin: Option<ExportKind>,
}

fn marks(flags: SymbolFlags) -> String {
    let shown: Vec<String> = flags
        .names()
        .into_iter()
        .filter(|n| !matches!(n.as_str(), "weak" | "undefined" | "exported"))
        .collect();
    if shown.is_empty() {
        String::new()
    } else {
        format!(" [{}]", shown.join(", "))
    }
}

/// The module's symbols, sorted by name then class.
fn symbols(info: &ModuleInfo, manifest: &Manifest, defined: bool, undefined: bool) -> Vec<Line> {
    let mut out: Vec<Line> = Vec::new();
    if defined {
        for e in &info.exports {
            let weak = e.flags.is_weak();
            let (letter, value) = match e.class {
                ExportClass::Function | ExportClass::Init => {
                    (if weak { 'W' } else { 'T' }, Some(i64::from(e.index)))
                }
                ExportClass::Data | ExportClass::Tls => (if weak { 'V' } else { 'D' }, e.value),
                ExportClass::Global => ('G', e.value),
                ExportClass::Tag => ('E', Some(i64::from(e.index))),
                ExportClass::Memory | ExportClass::Table => continue,
            };
            out.push(Line {
                value,
                letter,
                class: e.class.label(),
                name: e.name.clone(),
                flags: e.flags,
                signature: e.signature.as_ref().map(|s| s.to_string()),
                plugin: (e.class == ExportClass::Function)
                    .then(|| manifest.get(&e.name))
                    .flatten(),
            });
        }
    }
    if undefined {
        for i in info
            .undefined_symbols()
            .chain(info.imports.iter().filter(|i| {
                matches!(
                    i.class,
                    wasmlink_dylink::ImportClass::WasiP1(_)
                        | wasmlink_dylink::ImportClass::Wasi2(_)
                        | wasmlink_dylink::ImportClass::Module(_)
                )
            }))
        {
            let name = match &i.class {
                wasmlink_dylink::ImportClass::WasiP1(_)
                | wasmlink_dylink::ImportClass::Wasi2(_)
                | wasmlink_dylink::ImportClass::Module(_) => format!("{}::{}", i.module, i.field),
                c => c.symbol().unwrap_or(&i.field).to_string(),
            };
            out.push(Line {
                value: None,
                letter: if i.is_weak() { 'w' } else { 'U' },
                class: i.class.label(),
                name,
                flags: i.flags,
                signature: match &i.ty {
                    wasmlink_dylink::ImportType::Func { signature } => {
                        signature.as_ref().map(|s| s.to_string())
                    }
                    _ => None,
                },
                plugin: None,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name).then(a.class.cmp(b.class)));
    out
}

pub fn lines(
    info: &ModuleInfo,
    manifest: &Manifest,
    defined: bool,
    undefined: bool,
) -> Vec<String> {
    symbols(info, manifest, defined, undefined)
        .iter()
        .map(|l| {
            let value = l.value.map_or(" ".repeat(8), |v| format!("{v:08x}"));
            let signature = l
                .signature
                .as_ref()
                .map_or(String::new(), |s| format!(" {s}"));
            let plugin = l.plugin.map_or(String::new(), |k| format!(" <takes {k}>"));
            format!(
                "{value} {} {:<8} {}{signature}{}{plugin}",
                l.letter,
                l.class,
                crate::output::escape(&l.name),
                marks(l.flags)
            )
        })
        .collect()
}

pub fn run(args: Args) -> Result<ExitCode, CliError> {
    crate::input::each_file(&args.files, !args.json, |file| nm_one(&args, file))
}

fn nm_one(args: &Args, file: &std::path::Path) -> Result<ExitCode, CliError> {
    if crate::components::is_component(file) {
        let (defined, undefined) = (!args.undefined_only, !args.defined_only);
        return crate::components::nm(file, defined, undefined, args.json);
    }
    let (bytes, info) = read_module(file)?;
    let manifest = Manifest::of_module(&bytes);
    if args.json {
        let symbols: Vec<JsonSymbol> =
            symbols(&info, &manifest, !args.undefined_only, !args.defined_only)
                .into_iter()
                .map(|l| JsonSymbol {
                    name: l.name,
                    r#type: l.letter,
                    class: l.class,
                    value: l.value,
                    flags: l.flags.names(),
                    signature: l.signature,
                    plugin: l.plugin.map(|k| JsonPlugin {
                        convention: k.convention.as_str(),
                        input: k.input.as_str(),
                    }),
                })
                .collect();
        let report = JsonReport {
            format_version: 1,
            file: file.to_string_lossy().into_owned(),
            symbols,
        };
        crate::output::print_json(&report)?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut o = String::new();
    for l in lines(&info, &manifest, !args.undefined_only, !args.defined_only) {
        let _ = writeln!(o, "{l}");
    }
    print(&o)?;
    Ok(ExitCode::SUCCESS)
}
