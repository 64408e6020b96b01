//! `wasmlink repo`: the module repository (add, list, verify, remove, gc, resolve).

use std::fmt::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;
use wasmlink::repo::{
    RepoError, Repository, SigningKey, Status, Trust, parse_exact, parse_version,
};

use crate::input::CliError;
use crate::output::print;

/// Manage the module repository: a content-addressed store of named, versioned and optionally
/// signed modules (core modules and components).
#[derive(clap::Args)]
#[command(after_help = "\
The repository is the directory given by --repo, else $WASMLINK_REPO, else wasmlink/repo in the
user's data directory (~/.local/share/wasmlink/repo on Linux). Objects are stored under
objects/sha256/<hex>; index.json maps NAME -> VERSION -> sha256, size, date and signature.

References: NAME is the highest release version; NAME@REQ is a semver requirement read as
Cargo reads it: foo@1.2 means ^1.2, foo@=1.2.3 is exact, foo@~1.2, foo@>=1,<3 and foo@* work.

Examples:
  wasmlink keygen ~/.config/wasmlink/key
  wasmlink repo add filter.wasm --name filter --version 1.2.0 --sign ~/.config/wasmlink/key
  wasmlink repo list
  wasmlink repo resolve filter@^1 --trust ~/.config/wasmlink/key.pub
  wasmlink repo verify
  wasmlink repo remove filter@1.2.0 && wasmlink repo gc

Exit status: 0 success, 1 a problem found in the repository (a tampered or missing object, a
bad or missing signature, no matching module), 2 bad input or usage (a bad name, version,
requirement or key file; a file that is missing or not a WebAssembly module; stdout cannot be
written).")]
pub struct Args {
    #[command(subcommand)]
    command: RepoCommand,
    /// The repository directory.
    #[arg(long, global = true, value_name = "DIR", env = "WASMLINK_REPO")]
    repo: Option<PathBuf>,
}

#[derive(clap::Subcommand)]
enum RepoCommand {
    /// Add a WebAssembly module or component as NAME@VERSION.
    Add {
        /// The module file.
        file: PathBuf,
        /// Its name: a-z, 0-9, '.', '_' and '-', starting with a letter or digit.
        #[arg(long)]
        name: String,
        /// Its semver version (MAJOR.MINOR.PATCH).
        #[arg(long)]
        version: String,
        /// Sign it with this secret key (written by `wasmlink keygen`).
        #[arg(long, value_name = "KEY")]
        sign: Option<PathBuf>,
    },
    /// List every NAME@VERSION with its sha256, size and signing key.
    List {
        /// Print JSON (an array of {name, version, sha256, size, added, key_id, signature, path}).
        #[arg(long)]
        json: bool,
    },
    /// Check that every object is present and hashes to its name (and, with --trust, that
    /// every module is signed by a trusted key).
    Verify {
        /// Also require a valid signature by one of these public keys (repeatable).
        #[arg(long, value_name = "KEY.pub")]
        trust: Vec<PathBuf>,
        /// Print JSON: {format_version: 1, modules: [{name, version, path, status, message}],
        /// ok, problems}; status is ok, missing, tampered, signature or error, and message
        /// null when ok (docs/cli-json.md).
        #[arg(long)]
        json: bool,
    },
    /// Remove NAME@VERSION from the index (its object is freed by `repo gc`).
    Remove {
        /// NAME@VERSION, with an exact version.
        module: String,
    },
    /// Delete every object no index entry references.
    Gc,
    /// Print the object path and sha256 of the highest version matching NAME@REQ, after
    /// checking its hash (and, with --trust, its signature).
    Resolve {
        /// NAME or NAME@REQ.
        reference: String,
        /// Require a valid signature by one of these public keys (repeatable).
        #[arg(long, value_name = "KEY.pub")]
        trust: Vec<PathBuf>,
        /// Print JSON: {format_version: 1, name, version, path, sha256, size, key_id}
        /// (docs/cli-json.md).
        #[arg(long)]
        json: bool,
    },
}

/// `repo verify --json` (docs/cli-json.md).
#[derive(Serialize)]
struct JsonVerify {
    format_version: u32,
    modules: Vec<JsonVerified>,
    ok: usize,
    problems: usize,
}

#[derive(Serialize)]
struct JsonVerified {
    name: String,
    version: String,
    path: String,
    status: &'static str,
    message: Option<String>,
}

/// `repo resolve --json` (docs/cli-json.md).
#[derive(Serialize)]
struct JsonResolved<'a> {
    format_version: u32,
    name: &'a str,
    version: String,
    path: String,
    sha256: &'a str,
    size: u64,
    key_id: Option<&'a str>,
}

#[derive(Serialize)]
struct JsonEntry<'a> {
    name: &'a str,
    version: String,
    sha256: &'a str,
    size: u64,
    added: &'a str,
    key_id: Option<&'a str>,
    signature: Option<&'a str>,
    path: String,
}

/// Bad input exits 2 (through `CliError`); a problem found in the repository prints the error
/// and exits 1.
fn fail(e: RepoError) -> Result<ExitCode, CliError> {
    if e.is_bad_input() {
        Err(CliError::Other(e.to_string()))
    } else {
        crate::output::error(&e);
        Ok(ExitCode::from(1))
    }
}

pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let repo = match args.repo.filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => Repository::open(dir),
        None => match Repository::open_default() {
            Ok(r) => r,
            Err(e) => return fail(e),
        },
    };
    match run_command(&repo, args.command) {
        Ok((code, out)) => {
            print(&out)?;
            Ok(code)
        }
        Err(e) => fail(e),
    }
}

/// `value` as pretty JSON and a newline (serialising these plain structs cannot fail).
fn json_text(value: &impl Serialize) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default() + "\n"
}

/// Runs the command; returns its exit status and what it prints on stdout.
fn run_command(repo: &Repository, command: RepoCommand) -> Result<(ExitCode, String), RepoError> {
    let mut o = String::new();
    let code = match command {
        RepoCommand::Add {
            file,
            name,
            version,
            sign,
        } => {
            wasmlink::repo::validate_name(&name)?;
            let version = parse_version(&version, Some(&name))?;
            let key = sign.as_deref().map(SigningKey::load).transpose()?;
            let added = repo.add(&file, &name, &version, key.as_ref())?;
            let _ = write!(
                o,
                "added {}@{} sha256 {} ({} bytes)",
                added.name, added.version, added.entry.sha256, added.entry.size
            );
            match &added.entry.key_id {
                Some(id) => {
                    let _ = writeln!(o, ", signed by key {id}");
                }
                None => o.push('\n'),
            }
            ExitCode::SUCCESS
        }
        RepoCommand::List { json } => {
            let list = repo.list()?;
            if json {
                let entries: Vec<JsonEntry> = list
                    .iter()
                    .map(|l| JsonEntry {
                        name: &l.name,
                        version: l.version.to_string(),
                        sha256: &l.entry.sha256,
                        size: l.entry.size,
                        added: &l.entry.added,
                        key_id: l.entry.key_id.as_deref(),
                        signature: l.entry.signature.as_deref(),
                        path: l.path.display().to_string(),
                    })
                    .collect();
                o = json_text(&entries);
            } else {
                for l in &list {
                    let _ = writeln!(
                        o,
                        "{}@{}\t{}\t{} bytes\t{}",
                        l.name,
                        l.version,
                        l.entry.sha256,
                        l.entry.size,
                        l.entry
                            .key_id
                            .as_ref()
                            .map(|k| format!("signed by {k}"))
                            .unwrap_or_else(|| "unsigned".to_string())
                    );
                }
            }
            ExitCode::SUCCESS
        }
        RepoCommand::Verify { trust, json } => {
            let trust = Trust::load(&trust)?;
            let report = repo.verify(&trust)?;
            let mut bad = 0;
            let mut modules = Vec::new();
            for v in &report {
                let m = format!("{}@{}", v.module.name, v.module.version);
                let path = v.module.path.display();
                let start = o.len();
                let _ = match &v.status {
                    Status::Ok => writeln!(o, "ok        {m}"),
                    Status::Missing => writeln!(o, "MISSING   {m}: {path}: no such file"),
                    Status::Tampered { actual } => writeln!(
                        o,
                        "TAMPERED  {m}: {path}: the index says {}, the file hashes to {actual}",
                        v.module.entry.sha256
                    ),
                    Status::TooLong { actual } => writeln!(
                        o,
                        "TAMPERED  {m}: {path}: the index says {} bytes, the file has {actual}",
                        v.module.entry.size
                    ),
                    Status::Signature(e) => writeln!(o, "SIGNATURE {e}"),
                    Status::Unreadable(e) => writeln!(o, "ERROR     {e}"),
                };
                if v.status != Status::Ok {
                    bad += 1;
                }
                let (status, message) = match &v.status {
                    Status::Ok => ("ok", None),
                    Status::Missing => ("missing", Some(format!("{path}: no such file"))),
                    // The text line without its label and `NAME@VERSION: `.
                    Status::Tampered { .. } | Status::TooLong { .. } => (
                        "tampered",
                        o[start..]
                            .trim_end()
                            .split_once(": ")
                            .map(|(_, m)| m.to_string()),
                    ),
                    Status::Signature(e) => ("signature", Some(e.to_string())),
                    Status::Unreadable(e) => ("error", Some(e.to_string())),
                };
                modules.push(JsonVerified {
                    name: v.module.name.to_string(),
                    version: v.module.version.to_string(),
                    path: path.to_string(),
                    status,
                    message,
                });
            }
            let _ = writeln!(o, "{} ok, {bad} with problems", report.len() - bad);
            if json {
                o = json_text(&JsonVerify {
                    format_version: 1,
                    ok: report.len() - bad,
                    problems: bad,
                    modules,
                });
            }
            if bad > 0 {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            }
        }
        RepoCommand::Remove { module } => {
            let (name, version) = parse_exact(&module)?;
            let entry = repo.remove(&name, &version)?;
            let _ = writeln!(
                o,
                "removed {name}@{version} (sha256 {}; `wasmlink repo gc` frees unreferenced objects)",
                entry.sha256
            );
            ExitCode::SUCCESS
        }
        RepoCommand::Gc => {
            let report = repo.gc()?;
            for h in &report.removed {
                let _ = writeln!(o, "removed {h}");
            }
            let _ = writeln!(
                o,
                "freed {} objects, {} bytes",
                report.removed.len(),
                report.bytes
            );
            ExitCode::SUCCESS
        }
        RepoCommand::Resolve {
            reference,
            trust,
            json,
        } => {
            let trust = Trust::load(&trust)?;
            let loaded = repo.load(&reference, &trust)?;
            let m = &loaded.module;
            if json {
                o = json_text(&JsonResolved {
                    format_version: 1,
                    name: &m.name,
                    version: m.version.to_string(),
                    path: m.path.display().to_string(),
                    sha256: &m.entry.sha256,
                    size: m.entry.size,
                    key_id: m.entry.key_id.as_deref(),
                });
                return Ok((ExitCode::SUCCESS, o));
            }
            let _ = writeln!(
                o,
                "{}@{}\t{}\t{}",
                m.name,
                m.version,
                m.path.display(),
                m.entry.sha256
            );
            ExitCode::SUCCESS
        }
    };
    Ok((code, o))
}
