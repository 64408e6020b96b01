//! `wasmlink compose`: one component file out of a main component and the components that
//! satisfy its imports (wac-graph, as `wac plug` does), which then runs on its own.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use wasmlink::component::ComponentError;
use wasmlink::component::compose::compose;

use crate::input::CliError;
use crate::output;

/// Write one component whose imports are plugged with other components' exports.
#[derive(clap::Args)]
#[command(after_help = "\
Each import of MAIN that a DEP exports (by interface name, `wasmlink:demo/text`) is plugged
with that export, taken from the first DEP that has it; a DEP's own imports, and MAIN's that no
DEP exports, stay imports of the composed component. An export whose name matches an import but
whose type differs is an error naming the interface. The composed component is one store at run
time: resources may cross between its parts (unlike `call --with`, where each component has a
store of its own and its own policy; the composed file runs under one policy).

One line per plugged import is printed (`wasmlink:demo/text <- dep.wasm`; on stderr when the
component goes to stdout), and each import left over on stderr (`left: wasi:cli/stdout@0.2.0`).
OUT is written beside its target and renamed into place (`-`: stdout).

Example:
  wasmlink compose -o app.wasm main.wasm text.wasm
  wasmlink call app.wasm shout '\"hi\"'

With --json, one object on stdout (format_version 1): {\"format_version\": 1, \"output\",
\"plugged\": [{\"import\", \"from\"}], \"imports\": [...]}.

Exit status: 0 success; 1 OUT cannot be written, or wac-graph cannot encode the composition;
2 bad usage or input (a missing or unreadable file, a core module or anything else that is not
a component, a type mismatch, no import plugged).")]
pub struct Args {
    /// Where to write the composed component (`-`: stdout).
    #[arg(short = 'o', long = "output", value_name = "OUT.wasm")]
    output: PathBuf,
    /// The component whose imports are plugged.
    main: PathBuf,
    /// The components whose exports plug them (the first one exporting an import wins).
    #[arg(required = true, value_name = "DEP")]
    deps: Vec<PathBuf>,
    /// Print what was plugged and what is left as one JSON object.
    #[arg(long)]
    json: bool,
}

fn read(path: &Path) -> Result<Vec<u8>, CliError> {
    let bytes = crate::input::read_bounded(path).map_err(|e| CliError::Input {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    if !wasmlink::component::is_component(&bytes) {
        let what = if bytes.starts_with(b"\0asm") {
            "a core WebAssembly module, not a component: only components can be composed"
        } else {
            "not a WebAssembly component"
        };
        return Err(CliError::Input {
            path: path.to_path_buf(),
            message: what.into(),
        });
    }
    Ok(bytes)
}

pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let main = read(&args.main)?;
    let deps = args
        .deps
        .iter()
        .map(|p| read(p).map(|b| (p.as_path(), b)))
        .collect::<Result<Vec<_>, _>>()?;
    let dep_refs: Vec<(&Path, &[u8])> = deps.iter().map(|(p, b)| (*p, b.as_slice())).collect();
    let composed = match compose((args.main.as_path(), main.as_slice()), &dep_refs) {
        Ok(c) => c,
        Err(e @ ComponentError::Compose { .. }) => {
            output::error(e);
            return Ok(ExitCode::from(1));
        }
        Err(e) => return Err(CliError::Other(e.to_string())),
    };
    if let Err(e) = output::write_output(Some(&args.output), &composed.bytes) {
        output::error(e);
        return Ok(ExitCode::from(1));
    }
    let to_stdout = args.output.as_os_str() == "-";
    if args.json {
        let plugged: Vec<serde_json::Value> = composed
            .plugged
            .iter()
            .map(|(i, p)| serde_json::json!({"import": i, "from": p.to_string_lossy()}))
            .collect();
        let value = serde_json::json!({
            "format_version": 1,
            "output": args.output.to_string_lossy(),
            "plugged": plugged,
            "imports": composed.imports,
        });
        if to_stdout {
            output::diag(value);
        } else {
            output::print_json(&value)?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let lines: String = composed
        .plugged
        .iter()
        .map(|(i, p)| format!("{i} <- {}\n", p.display()))
        .collect();
    if to_stdout {
        output::diag_text(&lines);
    } else {
        output::print(&output::escape_lines(&lines))?;
    }
    for import in &composed.imports {
        output::diag(format_args!("left: {import}"));
    }
    Ok(ExitCode::SUCCESS)
}
