//! Components on the command line: `inspect`, `call` and `run` hand a WebAssembly component
//! here (they handle core modules themselves). The sandbox is the same policy as for core
//! modules: its directories, environment, stdio, randomness, network rules and limits become
//! the component's WASI 0.2 context and store limits.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use wasmlink::component::{
    ComponentError, ComponentLimits, ComponentPre, ComponentProcess, ComponentSummary, Provider,
};
use wasmlink::engine::{Metering, shared_engine_with};
use wasmlink::policy::{CapturePipe, OutputMode, Policy};

use crate::input::CliError;
use crate::output;

/// Whether the file at `path` starts like a component (a missing file is not one).
pub fn is_component(path: &Path) -> bool {
    use std::io::Read;
    // Only a regular file is sniffed: opening a FIFO would block (a hostile repository object
    // or argument), and a device could hand out endless bytes. The non-blocking open guards
    // against a FIFO put in place between the two steps.
    if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        return false;
    }
    let mut head = [0u8; 8];
    wasmlink::repo::open_nonblocking(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && wasmlink::component::is_component(&head)
}

/// `wasmlink inspect COMPONENT`: its world as WIT, and what is inside.
pub fn inspect(path: &Path, json: bool) -> Result<ExitCode, CliError> {
    let bytes = crate::input::read_bounded(path).map_err(|e| CliError::Input {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let summary = ComponentSummary::parse(&bytes).map_err(|e| CliError::Input {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let out = if json {
        let mut v = serde_json::to_value(&summary).map_err(|e| CliError::Other(e.to_string()))?;
        v["format_version"] = 1.into();
        v["kind"] = "component".into();
        v["size"] = bytes.len().into();
        serde_json::to_string_pretty(&v).map_err(|e| CliError::Other(e.to_string()))? + "\n"
    } else {
        output::escape_lines(&summary.to_text(bytes.len())).into_owned()
    };
    output::print(&out)?;
    Ok(ExitCode::SUCCESS)
}

/// `wasmlink nm COMPONENT`: one line per function, `T` for what it exports and `U` for what it
/// imports, named as `call` names them (`greet`, `ns:pkg/iface@1.0.0#func`), with its WIT type.
pub fn nm(path: &Path, defined: bool, undefined: bool, json: bool) -> Result<ExitCode, CliError> {
    let bytes = crate::input::read_bounded(path).map_err(|e| CliError::Input {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let summary = ComponentSummary::parse(&bytes).map_err(|e| CliError::Input {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut rows: Vec<(&str, String, String)> = Vec::new();
    for (letter, wanted, items) in [
        ("T", defined, &summary.exports),
        ("U", undefined, &summary.imports),
    ] {
        if !wanted {
            continue;
        }
        for item in items {
            for f in &item.functions {
                let (fname, ty) = f.split_once(": ").unwrap_or((f.as_str(), ""));
                let name = match item.kind {
                    "interface" => format!("{}#{fname}", item.name),
                    _ => fname.to_string(),
                };
                rows.push((letter, name, ty.to_string()));
            }
        }
    }
    if json {
        let symbols: Vec<serde_json::Value> = rows
            .iter()
            .map(|(l, n, t)| serde_json::json!({"name": n, "type": l, "class": "component-function", "wit": t}))
            .collect();
        output::print_json(&serde_json::json!({
            "format_version": 1,
            "file": path.to_string_lossy(),
            "symbols": symbols,
        }))?;
    } else {
        let text: String = rows
            .iter()
            .map(|(l, n, t)| format!("{l} {n}: {t}\n"))
            .collect();
        output::print(&output::escape_lines(&text))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Where a component's limits and stops come from, for messages and exit codes.
pub enum Mode {
    /// `wasmlink call`: the policy's per-call defaults apply (30 s, 256 MiB).
    Call,
    /// `wasmlink run`: only explicit limits, as for linked programs.
    Run,
}

/// A component given with `--with DEP.wasm[:POLICY.toml]` to satisfy the main component's
/// imports (composition at run time), under its own policy (deny-all without one).
#[derive(Debug, Clone)]
pub struct With {
    pub path: PathBuf,
    pub policy: Option<PathBuf>,
}

impl With {
    /// `DEP.wasm` or `DEP.wasm:POLICY.toml` (the policy named by a last `:` part ending in
    /// `.toml`, so a path with a colon in it still works without one).
    pub fn parse(spec: &str) -> Self {
        match spec.rsplit_once(':') {
            Some((dep, policy)) if policy.ends_with(".toml") && !dep.is_empty() => Self {
                path: PathBuf::from(dep),
                policy: Some(PathBuf::from(policy)),
            },
            _ => Self {
                path: PathBuf::from(spec),
                policy: None,
            },
        }
    }
}

/// A dependency's limits: those its policy sets, else the main component's.
fn dependency_limits(main: &ComponentLimits, policy: &Policy) -> ComponentLimits {
    let l = &policy.limits;
    ComponentLimits {
        memory: l.memory.map(|b| b.0 as usize).or(main.memory),
        table_elements: l.table_elements.map(|n| n as usize).or(main.table_elements),
        instances: l.instances.map(|n| n as usize).or(main.instances),
        fuel: l.fuel.or(main.fuel),
        timeout: match l.timeout {
            Some(t) if t.is_none() => None,
            Some(t) => Some(t.0),
            None => main.timeout,
        },
        output: None,
    }
}

/// Reads each `--with` component and its policy, and instantiates it as a provider in its own
/// store (on `engine`, the main component's, so the main's timeout can interrupt it).
fn providers(
    engine: &wasmtime::Engine,
    deps: &[(With, Policy, Vec<u8>)],
    main: &ComponentLimits,
) -> Result<Vec<Provider>, ComponentError> {
    let mut out = Vec::with_capacity(deps.len());
    for (dep, policy, bytes) in deps {
        let what = dep.path.display().to_string();
        policy
            .check_sha256(&what, bytes)
            .map_err(|e| ComponentError::Denied {
                message: e.to_string(),
            })?;
        let mut wasi =
            policy
                .wasi_builder(&what, None, None)
                .map_err(|e| ComponentError::Link {
                    path: dep.path.clone(),
                    message: e.to_string(),
                })?;
        if policy.args.is_empty() {
            wasi.args(&[what]);
        }
        let limits = dependency_limits(main, policy);
        let pre = ComponentPre::new(engine, &dep.path, bytes, limits)?
            .with_http(http_access(policy, &dep.path)?);
        out.push(Provider::new(Arc::new(pre).instantiate(wasi)?));
    }
    Ok(out)
}

/// Reads the `--with` components and their policies (a bad policy file is a usage error).
fn read_deps(with: &[With]) -> Result<Vec<(With, Policy, Vec<u8>)>, ComponentError> {
    with.iter()
        .map(|w| {
            let policy = match &w.policy {
                Some(f) => Policy::from_file(f).map_err(|e| ComponentError::Io {
                    path: w.path.clone(),
                    message: format!("its policy (--with): {e}"),
                })?,
                None => Policy::default(),
            };
            Ok((w.clone(), policy, read(&w.path)?))
        })
        .collect()
}

fn load(
    path: &Path,
    bytes: &[u8],
    policy: &Policy,
    argv: &[String],
    mode: &Mode,
    pipes: (Option<&CapturePipe>, Option<&CapturePipe>),
    with: &[With],
) -> Result<ComponentProcess, ComponentError> {
    let deps = read_deps(with)?;
    let what = path.display().to_string();
    policy
        .check_sha256(&what, bytes)
        .map_err(|e| ComponentError::Denied {
            message: e.to_string(),
        })?;
    let mut wasi =
        policy
            .wasi_builder(&what, pipes.0, pipes.1)
            .map_err(|e| ComponentError::Link {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
    if policy.args.is_empty() {
        wasi.args(argv);
    }
    let effective = policy.effective_limits();
    let explicit = &policy.limits;
    let instances = explicit.instances.map(|n| n as usize);
    let limits = match mode {
        Mode::Call => ComponentLimits {
            memory: Some(effective.memory as usize),
            table_elements: Some(effective.table_elements as usize),
            instances,
            fuel: effective.fuel,
            timeout: (effective.timeout != Duration::MAX).then_some(effective.timeout),
            output: Some(effective.output as usize),
        },
        Mode::Run => ComponentLimits {
            memory: explicit.memory.map(|b| b.0 as usize),
            table_elements: explicit.table_elements.map(|n| n as usize),
            instances,
            fuel: explicit.fuel,
            timeout: explicit.timeout.filter(|t| !t.is_none()).map(|t| t.0),
            output: None,
        },
    };
    let dep_limits: Vec<ComponentLimits> = deps
        .iter()
        .map(|(_, p, _)| dependency_limits(&limits, p))
        .collect();
    let metering = Metering {
        fuel: limits.fuel.is_some() || dep_limits.iter().any(|l| l.fuel.is_some()),
        epoch: limits.timeout.is_some() || dep_limits.iter().any(|l| l.timeout.is_some()),
    };
    let engine = shared_engine_with(wasmlink::process::default_cache_dir().as_deref(), metering)
        .map_err(|e| ComponentError::Link {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    let http = http_access(policy, path)?;
    if deps.is_empty() {
        let pre = ComponentPre::new(&engine, path, bytes, limits)?.with_http(http);
        return Arc::new(pre).instantiate(wasi);
    }
    let providers = providers(&engine, &deps, &limits)?;
    let pre =
        ComponentPre::with_providers(&engine, path, bytes, limits, &providers)?.with_http(http);
    Arc::new(pre).instantiate(wasi)
}

/// The outgoing HTTP the policy grants the component at `path` (`capabilities.http`): a request
/// goes out only to a host and port a rule grants.
fn http_access(
    policy: &Policy,
    path: &Path,
) -> Result<wasmlink::component::HttpAccess, ComponentError> {
    let allow = policy
        .http_allow(&path.display().to_string())
        .map_err(|e| ComponentError::Denied {
            message: e.to_string(),
        })?;
    Ok(if allow.is_empty() {
        wasmlink::component::HttpAccess::deny()
    } else {
        wasmlink::component::HttpAccess::allow_if(move |host, port| allow.allows(host, port))
    })
}

fn read(path: &Path) -> Result<Vec<u8>, ComponentError> {
    crate::input::read_bounded(path).map_err(|e| ComponentError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// `wasmlink call NAME@REQ FUNCTION [ARG...]` when the repository's object for the reference
/// is a component: loaded with its sha256 (and, with `integrity.trusted-keys`, its signature)
/// checked, then called as [`call`] calls a file. `None` when the reference does not resolve to
/// a component (the caller loads it as a core module, and reports a bad reference).
pub fn call_ref(
    repo: &wasmlink::repo::Repository,
    reference: &str,
    function: &str,
    args: &[String],
    policy: &Policy,
    data_flags: bool,
    with: &[With],
) -> Result<Option<ExitCode>, CliError> {
    let Ok(listed) = repo.resolve(reference) else {
        return Ok(None);
    };
    if !is_component(&listed.path) {
        return Ok(None);
    }
    let label = Path::new(reference);
    if data_flags {
        return Err(CliError::Other(format!(
            "{reference}: --input, --arrow and --json are for core modules; a component's arguments and results are WAVE values"
        )));
    }
    let keys = policy.trusted_key_paths();
    let loaded = wasmlink::repo::Trust::load(&keys).and_then(|trust| repo.load(reference, &trust));
    match loaded {
        Ok(l) => call_bytes(label, &l.bytes, function, args, policy, with).map(Some),
        Err(e) => {
            output::error(format_args!("{reference}: {e} (integrity)"));
            Ok(Some(ExitCode::from(1)))
        }
    }
}

/// `wasmlink call COMPONENT FUNCTION [ARG...]`: arguments and results in WAVE.
/// Exit 0; 1 refused or failed (trap, limit, a missing import); 2 bad input or arguments.
pub fn call(
    path: &Path,
    function: &str,
    args: &[String],
    policy: &Policy,
    with: &[With],
) -> Result<ExitCode, CliError> {
    match read(path) {
        Ok(bytes) => call_bytes(path, &bytes, function, args, policy, with),
        Err(e) => Ok(fail(path, &e)),
    }
}

fn call_bytes(
    path: &Path,
    bytes: &[u8],
    function: &str,
    args: &[String],
    policy: &Policy,
    with: &[With],
) -> Result<ExitCode, CliError> {
    let cap = policy.effective_limits().output as usize;
    let stdout = (policy.stdio.stdout == OutputMode::Capture).then(|| CapturePipe::new(cap));
    let stderr = (policy.stdio.stderr == OutputMode::Capture).then(|| CapturePipe::new(cap));
    let argv = vec![path.display().to_string()];
    let mut process = match load(
        path,
        bytes,
        policy,
        &argv,
        &Mode::Call,
        (stdout.as_ref(), stderr.as_ref()),
        with,
    ) {
        Ok(p) => p,
        Err(e) => return Ok(fail(path, &e)),
    };
    let result = process.call_wave(function, args);
    if let Some(p) = &stderr {
        output::guest_stderr(&p.contents());
    }
    if let Some(p) = &stdout {
        output::guest_stdout(&p.contents())?;
    }
    match result {
        Ok(values) => {
            let text: String = values.iter().map(|v| format!("{v}\n")).collect();
            output::print(&output::escape_lines(&text))?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(fail(path, &e)),
    }
}

/// `wasmlink run COMPONENT`: runs a `wasi:cli/command` component.
/// Exit: its status; 127 it cannot be loaded or is not a command; 134 a trap; 137 a limit.
pub fn run(
    path: &Path,
    argv: &[String],
    policy: &Policy,
    with: &[With],
) -> Result<ExitCode, CliError> {
    let loaded = read(path)
        .and_then(|bytes| load(path, &bytes, policy, argv, &Mode::Run, (None, None), with));
    let mut process = match loaded {
        Ok(p) => p,
        Err(e) => {
            output::error(format_args!("{e}"));
            return Ok(ExitCode::from(127));
        }
    };
    match process.run_command() {
        Ok(code) => Ok(ExitCode::from(code.clamp(0, 255) as u8)),
        Err(e @ ComponentError::NoSuchFunction { .. }) => {
            output::error(format_args!("{}: {e}", path.display()));
            Ok(ExitCode::from(127))
        }
        Err(
            e @ (ComponentError::Limit { .. } | ComponentError::Dependency { limit: true, .. }),
        ) => {
            output::error(e);
            Ok(ExitCode::from(137))
        }
        Err(e) => {
            output::error(e);
            Ok(ExitCode::from(134))
        }
    }
}

fn fail(path: &Path, e: &ComponentError) -> ExitCode {
    match e {
        ComponentError::Exit(code) => return ExitCode::from((*code).clamp(0, 255) as u8),
        ComponentError::NoSuchFunction { .. }
        | ComponentError::Arity { .. }
        | ComponentError::Argument { .. } => output::error(format_args!("{}: {e}", path.display())),
        _ => output::error(e),
    }
    match e {
        ComponentError::Io { .. }
        | ComponentError::Invalid { .. }
        | ComponentError::Compile { .. }
        | ComponentError::NoSuchFunction { .. }
        | ComponentError::Arity { .. }
        | ComponentError::Argument { .. }
        | ComponentError::Unsatisfied { .. }
        | ComponentError::TypeMismatch { .. }
        | ComponentError::ResourceCrossing { .. } => ExitCode::from(2),
        _ => ExitCode::from(1),
    }
}
