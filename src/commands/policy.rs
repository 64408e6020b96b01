//! `wasmlink policy`: check a policy file or print its JSON schema. (The policy flags of
//! `wasmlink call` are in `crate::flags`.)

use std::fmt::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use wasmlink::policy::{ByteSize, DirMode, HumanDuration, Policy};

use crate::input::CliError;
use crate::output::print;

/// Check a policy file, or print the policy format's JSON schema.
#[derive(clap::Args)]
#[command(after_help = "\
Examples:
  wasmlink policy check plugin.toml     validate; print the effective policy
  wasmlink policy check --json plugin.toml | jq .limits.memory
  wasmlink policy schema                the JSON schema of the format (docs/policy.schema.json)

Exit status: 0 valid (or the schema printed); 2 an invalid or unreadable policy, a granted
directory that does not exist, or the output cannot be written.")]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Validate a policy file and print it with defaults filled in.
    #[command(
        after_help = "With --json, `check` prints one object (docs/cli-json.md, format_version 1):
{\"format_version\": 1, \"file\", \"policy\" (the policy's fields as the TOML spells them, each
dirs[].host resolved against the policy file's directory), \"limits\" (defaults filled in:
\"memory\", \"stack\", \"output\" in bytes, \"timeout_ms\" (null: none), \"fuel\" (null:
unmetered), \"instances\", \"table_elements\")}. An invalid policy prints nothing on stdout.

Exit status: 0 valid; 2 an invalid or unreadable policy, a granted directory that does not
exist, or the output cannot be written."
    )]
    Check {
        /// The TOML policy file.
        file: PathBuf,
        /// Print the effective policy as one JSON object (fields in the help text below).
        #[arg(long)]
        json: bool,
    },
    /// Print the JSON schema of the policy format.
    Schema,
}

pub fn run(args: Args) -> Result<ExitCode, CliError> {
    match args.command {
        Sub::Schema => {
            print(&Policy::json_schema())?;
            Ok(ExitCode::SUCCESS)
        }
        Sub::Check { file, json } => {
            let policy = Policy::from_file(&file).map_err(|e| CliError::Other(e.to_string()))?;
            for grant in &policy.dirs {
                let host = policy.host_path(grant);
                if !host.is_dir() {
                    return Err(CliError::Other(format!(
                        "{}: dirs: host directory {} does not exist",
                        file.display(),
                        host.display()
                    )));
                }
            }
            if json {
                crate::output::print_json(&json_report(&file, &policy)?)?;
                return Ok(ExitCode::SUCCESS);
            }
            let mut o = format!("{}: ok\n", file.display());
            summary(&mut o, &policy);
            print(&o)?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `policy check --json` (docs/cli-json.md).
fn json_report(file: &std::path::Path, p: &Policy) -> Result<serde_json::Value, CliError> {
    let mut policy =
        serde_json::to_value(p).map_err(|e| CliError::Other(format!("cannot write JSON: {e}")))?;
    if let Some(dirs) = policy.get_mut("dirs").and_then(|d| d.as_array_mut()) {
        for (d, grant) in dirs.iter_mut().zip(&p.dirs) {
            d["host"] = p.host_path(grant).display().to_string().into();
        }
    }
    let l = p.effective_limits();
    Ok(serde_json::json!({
        "format_version": 1,
        "file": file.to_string_lossy(),
        "policy": policy,
        "limits": {
            "memory": l.memory,
            "stack": l.stack,
            "output": l.output,
            "timeout_ms": (l.timeout != std::time::Duration::MAX)
                .then(|| u64::try_from(l.timeout.as_millis()).unwrap_or(u64::MAX)),
            "fuel": l.fuel,
            "instances": l.instances,
            "table_elements": l.table_elements,
        },
    }))
}

/// A setting as the policy file spells it (`"read-only"`, `"capture"`), not its Rust name.
fn toml_value(v: &impl serde::Serialize) -> String {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(s)) => format!("\"{s}\""),
        Ok(other) => other.to_string(),
        Err(_) => "?".to_string(),
    }
}

/// The effective policy, one line per grant or setting.
fn summary(o: &mut String, p: &Policy) {
    let l = p.effective_limits();
    for d in &p.dirs {
        let mode = match d.mode {
            DirMode::ReadOnly => "read-only",
            DirMode::ReadWrite => "read-write",
        };
        let _ = writeln!(
            o,
            "  dir      {} -> {} ({mode})",
            p.host_path(d).display(),
            d.guest
        );
    }
    for (k, v) in &p.env.vars {
        let _ = writeln!(o, "  env      {k}={v}");
    }
    for k in &p.env.inherit {
        let _ = writeln!(o, "  env      {k} (from the host)");
    }
    let _ = writeln!(
        o,
        "  stdio    stdin = {}, stdout = {}, stderr = {}",
        toml_value(&p.stdio.stdin),
        toml_value(&p.stdio.stdout),
        toml_value(&p.stdio.stderr)
    );
    let _ = writeln!(
        o,
        "  clocks   {}; random = {}; net {}",
        if p.capabilities.clocks { "yes" } else { "no" },
        toml_value(&p.capabilities.random),
        if p.capabilities.network {
            "yes (every address)".to_string()
        } else if p.capabilities.net.is_empty() {
            "no".to_string()
        } else {
            p.capabilities.net.join(", ")
        }
    );
    if !p.capabilities.http.is_empty() {
        let _ = writeln!(o, "  http     {}", p.capabilities.http.join(", "));
    }
    if !p.capabilities.host_functions.is_empty() {
        let _ = writeln!(o, "  imports  {}", p.capabilities.host_functions.join(", "));
    }
    let _ = writeln!(
        o,
        "  limits   memory {}, stack {}, timeout {}, fuel {}, output {}, instances {}, table-elements {}",
        ByteSize(l.memory),
        ByteSize(l.stack),
        HumanDuration(l.timeout),
        l.fuel.map_or("unmetered".to_string(), |f| f.to_string()),
        ByteSize(l.output),
        l.instances,
        l.table_elements
    );
    let _ = writeln!(
        o,
        "  isolation {}",
        match l.isolation {
            wasmlink::policy::Isolation::Warm =>
                "\"warm\" (calls reuse a pooled instance; state kept)",
            wasmlink::policy::Isolation::Fresh =>
                "\"fresh\" (a new instance per call; no state kept)",
        }
    );
    if p.abi != Default::default() {
        let _ = writeln!(o, "  abi      {}", toml_value(&p.abi));
    }
    if let Some(h) = &p.integrity.sha256 {
        let _ = writeln!(o, "  sha256   {h}");
    }
}
