//! `wasmlink ldd`: where each needed library is found (like `ldd`).

use std::fmt::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use wasmlink::resolve::{DependencyTree, SearchPath};

use crate::input::{CliError, read_module};
use crate::output::{diag, escape, print};

/// Resolve a module's needed libraries, recursively, as the loader would, and print where
/// each was found.
#[derive(clap::Args)]
#[command(after_help = "\
Libraries are searched, in order, in: each -L DIR; WASMLINK_LIBRARY_PATH; the RUNPATH of the
module that needs them ($ORIGIN is its directory; not inherited by its dependencies); the
default directories /usr/local/lib/wasmlink, /usr/local/lib/wasm32-wasi, /usr/lib/wasm32-wasi.
A name containing '/' is used as a path. Each library is listed once, in load order.

Examples:
  wasmlink ldd -L corpus corpus/libpython3.14.so
  WASMLINK_LIBRARY_PATH=lib:/opt/wasm/lib wasmlink ldd main.wasm

With -r, the module is also linked as `wasmlink run` would (constructors are not run) and each
strong symbol that no loaded library defines is printed as `undefined symbol: NAME (LIBRARY)`.

With --json, one object (docs/cli-json.md, format_version 1): {\"format_version\": 1, \"file\",
\"dynamic\" (false: no dylink.0 section), \"libraries\": [{\"name\", \"path\" (null: not found),
\"needed_by\" (null for the module's own needs), \"searched\" (the paths tried, when not found)}],
\"undefined\": [{\"symbol\", \"library\"}] (only with -r; null without)}. Diagnostics still go to
stderr and the exit status is the same as without --json.

Exit status: 0 all found, 1 something not found or unresolved (or not a dynamic module),
2 the file is missing or not a valid WebAssembly module, or stdout cannot be written.")]
pub struct Args {
    /// The program or library to resolve.
    file: PathBuf,
    /// Search DIR for libraries first (repeatable).
    #[arg(short = 'L', value_name = "DIR")]
    lib_dirs: Vec<PathBuf>,
    /// Do not search the default directories.
    #[arg(long)]
    no_default_dirs: bool,
    /// Also link (without running constructors) and report every unresolved strong symbol.
    #[arg(short = 'r', long = "function-relocs")]
    relocs: bool,
    /// Print one JSON object instead of lines (fields in the help text below).
    #[arg(long)]
    json: bool,
}

/// `ldd --json` (docs/cli-json.md).
#[derive(serde::Serialize)]
struct JsonReport {
    format_version: u32,
    file: String,
    dynamic: bool,
    libraries: Vec<JsonLibrary>,
    undefined: Option<Vec<JsonUndefined>>,
}

#[derive(serde::Serialize)]
struct JsonLibrary {
    name: String,
    path: Option<String>,
    needed_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    searched: Option<Vec<String>>,
}

#[derive(serde::Serialize)]
struct JsonUndefined {
    symbol: String,
    library: String,
}

pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let (_, info) = read_module(&args.file)?;
    let mut report = JsonReport {
        format_version: 1,
        file: args.file.to_string_lossy().into_owned(),
        dynamic: info.is_dynamic(),
        libraries: Vec::new(),
        undefined: None,
    };
    if !info.is_dynamic() {
        if args.json {
            crate::output::print_json(&report)?;
            return Ok(ExitCode::from(1));
        }
        print("\tnot a dynamic module (no dylink.0 section)\n")?;
        return Ok(ExitCode::from(1));
    }
    let mut search = SearchPath::from_env();
    for d in &args.lib_dirs {
        search.add_dir(d);
    }
    if args.no_default_dirs {
        search.set_default_dirs(Vec::new());
    }
    let tree = DependencyTree::resolve(&args.file, Arc::new(info), &search.clone());
    let mut o = String::new();
    for e in tree.entries.iter().skip(1) {
        match &e.result {
            Ok(f) => {
                let _ = writeln!(o, "\t{} => {}", escape(&e.name), f.path.display());
            }
            Err(_) => {
                let _ = writeln!(o, "\t{} => not found", escape(&e.name));
            }
        }
    }
    if !args.json {
        print(&o)?;
    }
    for e in tree.entries.iter().skip(1) {
        report.libraries.push(JsonLibrary {
            name: e.name.clone(),
            path: e.result.as_ref().ok().map(|f| f.path.display().to_string()),
            needed_by: e.needed_by.map(|i| tree.entries[i].name.clone()),
            searched: e
                .result
                .as_ref()
                .err()
                .map(|m| m.searched.iter().map(|p| p.display().to_string()).collect()),
        });
    }
    // One pass: each entry knows who needed it (a search by name per missing entry made
    // thousands of missing NEEDED entries quadratic).
    let mut missing = 0usize;
    for entry in &tree.entries {
        let Err(m) = &entry.result else { continue };
        missing += 1;
        let needed_by = entry
            .needed_by
            .map_or("", |i| tree.entries[i].name.as_str());
        diag(format_args!(
            "wasmlink: {} (needed by {needed_by}): not found; searched {}",
            m.name,
            searched(&m.searched)
        ));
        for (p, why) in &m.skipped {
            diag(format_args!("wasmlink:   skipped {}: {why}", p.display()));
        }
    }
    if missing > 0 {
        if args.json {
            crate::output::print_json(&report)?;
        }
        return Ok(ExitCode::from(1));
    }
    if args.relocs {
        let process = wasmlink::ProcessBuilder::new()
            .search_path(search)
            .link_only(true)
            .load(&args.file);
        let process = match process {
            Ok(p) => p,
            Err(e) => {
                diag(format_args!("wasmlink: {e}"));
                if args.json {
                    crate::output::print_json(&report)?;
                }
                return Ok(ExitCode::from(1));
            }
        };
        let unresolved: Vec<_> = process
            .unresolved()
            .into_iter()
            .filter(|(_, _, weak)| !weak)
            .collect();
        let mut o = String::new();
        for (lib, sym, _) in &unresolved {
            let _ = writeln!(o, "undefined symbol: {}\t({})", escape(sym), escape(lib));
        }
        report.undefined = Some(
            unresolved
                .iter()
                .map(|(lib, sym, _)| JsonUndefined {
                    symbol: sym.to_string(),
                    library: lib.to_string(),
                })
                .collect(),
        );
        if args.json {
            crate::output::print_json(&report)?;
        } else {
            print(&o)?;
        }
        if !unresolved.is_empty() {
            return Ok(ExitCode::from(1));
        }
        return Ok(ExitCode::SUCCESS);
    }
    if args.json {
        crate::output::print_json(&report)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn searched(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "nothing (the search path is empty)".to_string();
    }
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
