//! `wasmlink nm`: defined and undefined symbols (like `nm -D`).

use std::fmt::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use wasmlink_dylink::{ExportClass, ModuleInfo, SymbolFlags};

use crate::input::{CliError, read_module};
use crate::output::print;

/// List a module's dynamic symbols: what it defines for others and what it needs from them.
#[derive(clap::Args)]
#[command(after_help = "\
Each line is VALUE TYPE CLASS NAME [FLAGS]:
  VALUE  in hex: function index (T, W); data address relative to __memory_base (D, V;
         for TLS symbols, relative to __tls_base); initial value (G); tag index (E);
         blank for undefined symbols
  TYPE   T function, D data, W weak function, V weak data, G mutable global,
         E exception tag, U undefined, w weak undefined
  CLASS  function, data, tls, init, global, tag for definitions; for undefined symbols
         function, global, got-mem (address of data), got-func (function pointer), tag,
         wasi-p1, wasi-0.2, module
  FLAGS  dylink.0 symbol flags other than the binding: [tls], [hidden], [absolute], ...

Examples:
  wasmlink nm libc.so
  wasmlink nm --undefined-only libpython3.14.so | grep got-func

Exit status: 0 success, 2 the file is missing or not a valid WebAssembly module, or stdout
cannot be written.")]
pub struct Args {
    /// The module to list.
    file: PathBuf,
    /// Only symbols the module defines.
    #[arg(long, conflicts_with = "undefined_only")]
    defined_only: bool,
    /// Only symbols the module needs from others.
    #[arg(short = 'u', long)]
    undefined_only: bool,
}

struct Line {
    value: Option<i64>,
    letter: char,
    class: &'static str,
    name: String,
    flags: SymbolFlags,
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

pub fn lines(info: &ModuleInfo, defined: bool, undefined: bool) -> Vec<String> {
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
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name).then(a.class.cmp(b.class)));
    out.iter()
        .map(|l| {
            let value = l.value.map_or(" ".repeat(8), |v| format!("{v:08x}"));
            format!(
                "{value} {} {:<8} {}{}",
                l.letter,
                l.class,
                crate::output::escape(&l.name),
                marks(l.flags)
            )
        })
        .collect()
}

pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let (_, info) = read_module(&args.file)?;
    let mut o = String::new();
    for l in lines(&info, !args.undefined_only, !args.defined_only) {
        let _ = writeln!(o, "{l}");
    }
    print(&o)?;
    Ok(ExitCode::SUCCESS)
}
