//! `wasmlink inspect`: what a module declares for linking (like `readelf -d`).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde::Serialize;
use wasmlink_dylink::{ExportClass, ImportClass, ModuleInfo};

use crate::input::{CliError, read_module};
use crate::output::print;

/// Show a module's kind, memory and table needs, needed libraries, runpath, TLS use, and its
/// imports and exports counted per class.
#[derive(clap::Args)]
#[command(after_help = "\
Examples:
  wasmlink inspect libpython3.14.so
  wasmlink inspect --json main.wasm | jq .needed

The JSON form is stable and documented in docs/inspect-json.md (format_version 1).

Exit status: 0 success, 2 the file is missing or not a valid WebAssembly module, or stdout
cannot be written.")]
pub struct Args {
    /// The modules to inspect (several: one report after another, each naming its file).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Print stable JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// The JSON report: field names and meanings are documented in docs/inspect-json.md.
#[derive(Serialize)]
pub struct Report<'a> {
    format_version: u32,
    file: String,
    name: Option<&'a str>,
    kind: wasmlink_dylink::ModuleKind,
    dylink_format: Option<wasmlink_dylink::DylinkFormat>,
    address_width: wasmlink_dylink::AddressWidth,
    size: usize,
    memory: Option<Region>,
    table: Option<Region>,
    needed: &'a [String],
    runtime_path: &'a [String],
    tls: Tls,
    start_function: Option<u32>,
    imports: Counts,
    exports: Counts,
    unknown_subsections: Vec<u8>,
    /// The plugin ABI a module speaks (docs/abi.md), or null for a module that speaks none.
    plugin: Option<Plugin>,
}

/// What a module offers as a plugin: the conventions its fixed exports imply and what its
/// `wasmlink.exports` manifest says each function takes.
#[derive(Serialize)]
pub struct Plugin {
    /// `wasmlink_abi_version`, `wasmlink_alloc` and `wasmlink_free` are exported (ABI v1).
    abi_v1: bool,
    /// `allocate` and `deallocate` are exported (the older conventions: `abi = "seed"`,
    /// `"cstring"` or `"ptrlen"` in the policy).
    allocate: bool,
    /// Function name -> `{convention, input}`, from the manifest (empty without one).
    functions: BTreeMap<String, PluginFunction>,
}

#[derive(Serialize)]
struct PluginFunction {
    convention: &'static str,
    input: &'static str,
}

/// The plugin side of a module, if it has one.
pub fn plugin(bytes: &[u8], info: &ModuleInfo) -> Option<Plugin> {
    let functions: std::collections::HashSet<&str> = info
        .exports
        .iter()
        .filter(|e| e.class == ExportClass::Function)
        .map(|e| e.name.as_str())
        .collect();
    let exports = |names: &[&str]| names.iter().all(|n| functions.contains(n));
    let abi_v1 = exports(&["wasmlink_abi_version", "wasmlink_alloc", "wasmlink_free"]);
    let allocate = exports(&["allocate", "deallocate"]);
    let manifest = wasmlink::plugin::manifest::Manifest::of_module(bytes);
    let functions: BTreeMap<String, PluginFunction> = manifest
        .exports
        .iter()
        .filter(|(n, _)| functions.contains(n.as_str()))
        .map(|(n, k)| {
            (
                n.clone(),
                PluginFunction {
                    convention: k.convention.as_str(),
                    input: k.input.as_str(),
                },
            )
        })
        .collect();
    (abi_v1 || allocate || !functions.is_empty()).then_some(Plugin {
        abi_v1,
        allocate,
        functions,
    })
}

#[derive(Serialize)]
struct Region {
    size: u32,
    align_log2: u32,
    align: u64,
}

#[derive(Serialize)]
struct Tls {
    used: bool,
    symbols: usize,
}

#[derive(Serialize)]
struct Counts {
    total: usize,
    weak: usize,
    by_class: BTreeMap<&'static str, usize>,
}

fn report<'a>(file: &Path, bytes: &[u8], info: &'a ModuleInfo) -> Report<'a> {
    let s = info.summary();
    let d = info.dylink.as_ref();
    let fill = |labels: &[&'static str], counts: &BTreeMap<&'static str, usize>| {
        labels
            .iter()
            .map(|l| (*l, counts.get(l).copied().unwrap_or(0)))
            .collect()
    };
    Report {
        format_version: 1,
        file: file.display().to_string(),
        name: info.name.as_deref(),
        kind: info.kind,
        dylink_format: d.map(|d| d.format),
        address_width: info.address_width,
        size: info.size,
        memory: d.map(|d| Region {
            size: d.mem_info.memory_size,
            align_log2: d.mem_info.memory_align_log2,
            align: d.mem_info.memory_align(),
        }),
        table: d.map(|d| Region {
            size: d.mem_info.table_size,
            align_log2: d.mem_info.table_align_log2,
            align: d.mem_info.table_align(),
        }),
        needed: info.needed(),
        runtime_path: info.runtime_path(),
        tls: Tls {
            used: s.uses_tls,
            symbols: s.tls_symbols,
        },
        start_function: info.start,
        imports: Counts {
            total: info.imports.len(),
            weak: s.weak_imports,
            by_class: fill(&ImportClass::LABELS, &s.imports),
        },
        exports: Counts {
            total: info.exports.len(),
            weak: info.exports.iter().filter(|e| e.flags.is_weak()).count(),
            by_class: fill(&ExportClass::LABELS, &s.exports),
        },
        unknown_subsections: d
            .map(|d| d.unknown_subsections.iter().map(|u| u.id).collect())
            .unwrap_or_default(),
        plugin: plugin(bytes, info),
    }
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "-".to_string()
    } else {
        items.join(", ")
    }
}

fn text(r: &Report<'_>) -> String {
    let mut o = String::new();
    let kind = match r.dylink_format {
        Some(f) => format!("{} ({})", r.kind.describe(), f.section_name()),
        None => r.kind.describe().to_string(),
    };
    let _ = writeln!(o, "file:         {}", r.file);
    if let Some(n) = r.name {
        let _ = writeln!(o, "name:         {n}");
    }
    let _ = writeln!(o, "kind:         {kind}");
    let _ = writeln!(o, "address:      {}", r.address_width.as_str());
    let _ = writeln!(o, "size:         {} bytes", r.size);
    if let (Some(m), Some(t)) = (&r.memory, &r.table) {
        let _ = writeln!(
            o,
            "memory:       {} bytes, align 2^{} ({} bytes)",
            m.size, m.align_log2, m.align
        );
        let _ = writeln!(
            o,
            "table:        {} slots, align 2^{}",
            t.size, t.align_log2
        );
    }
    let _ = writeln!(o, "needed:       {}", list(r.needed));
    let _ = writeln!(o, "runpath:      {}", list(r.runtime_path));
    let tls = if r.tls.used {
        format!("yes, {} exported symbols", r.tls.symbols)
    } else {
        "no".to_string()
    };
    let _ = writeln!(o, "tls:          {tls}");
    let start = r
        .start_function
        .map_or("-".to_string(), |s| format!("function {s}"));
    let _ = writeln!(o, "start:        {start}");
    for (title, c) in [("imports", &r.imports), ("exports", &r.exports)] {
        let _ = writeln!(o, "{title}:      {} ({} weak)", c.total, c.weak);
        for (class, n) in c.by_class.iter().filter(|(_, n)| **n > 0) {
            let _ = writeln!(o, "  {class:<16}{n:>6}");
        }
    }
    if let Some(p) = &r.plugin {
        let mut speaks = Vec::new();
        if p.abi_v1 {
            speaks.push("wasmlink ABI v1".to_string());
        }
        if p.allocate {
            speaks.push("allocate/deallocate (abi = seed, cstring or ptrlen)".to_string());
        }
        if speaks.is_empty() {
            speaks.push("a manifest without the ABI's fixed exports".to_string());
        }
        let _ = writeln!(o, "plugin:       {}", speaks.join("; "));
        let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
        for f in p.functions.values() {
            let kind = if f.convention == "abi" {
                f.input.to_string()
            } else {
                format!("{} ({})", f.input, f.convention)
            };
            *by_kind.entry(kind).or_default() += 1;
        }
        for (kind, n) in &by_kind {
            let _ = writeln!(o, "  {kind:<16}{n:>6}");
        }
    }
    if !r.unknown_subsections.is_empty() {
        let ids: Vec<String> = r
            .unknown_subsections
            .iter()
            .map(|i| i.to_string())
            .collect();
        let _ = writeln!(
            o,
            "skipped:      unknown dylink.0 subsections {}",
            ids.join(", ")
        );
    }
    o
}

pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let mut first = true;
    crate::input::each_file(&args.files, false, |file| {
        // Text reports one after another, a blank line apart (each starts with `file:`).
        if !args.json && !std::mem::take(&mut first) {
            print("\n")?;
        }
        inspect_one(file, args.json)
    })
}

fn inspect_one(file: &Path, json: bool) -> Result<ExitCode, CliError> {
    if crate::components::is_component(file) {
        return crate::components::inspect(file, json);
    }
    let (bytes, info) = read_module(file)?;
    let r = report(file, &bytes, &info);
    let out = if json {
        serde_json::to_string_pretty(&r).map_err(|e| CliError::Other(e.to_string()))? + "\n"
    } else {
        // Names come from the module: no control character of theirs reaches the terminal.
        crate::output::escape_lines(&text(&r)).into_owned()
    };
    print(&out)?;
    Ok(ExitCode::SUCCESS)
}
