//! `wasmlink policy`: check a policy file or print its JSON schema; and the policy flags shared
//! by `wasmlink call` and `wasmlink run`.

use std::path::PathBuf;
use std::process::ExitCode;

use wasmlink::policy::{
    ByteSize, DirGrant, DirMode, HumanDuration, OutputMode, Policy, RandomMode, StdinMode,
};

use crate::input::CliError;

/// Check a policy file, or print the policy format's JSON schema.
#[derive(clap::Args)]
#[command(after_help = "\
Examples:
  wasmlink policy check plugin.toml     validate; print the effective policy
  wasmlink policy schema                the JSON schema of the format (docs/policy.schema.json)")]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// Validate a policy file and print it with defaults filled in.
    Check {
        /// The TOML policy file.
        file: PathBuf,
    },
    /// Print the JSON schema of the policy format.
    Schema,
}

pub fn run(args: Args) -> Result<ExitCode, CliError> {
    match args.command {
        Sub::Schema => {
            print!("{}", Policy::json_schema());
            Ok(ExitCode::SUCCESS)
        }
        Sub::Check { file } => {
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
            println!("{}: ok", file.display());
            print_summary(&policy);
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn print_summary(p: &Policy) {
    let l = p.effective_limits();
    for d in &p.dirs {
        let mode = match d.mode {
            DirMode::ReadOnly => "read-only",
            DirMode::ReadWrite => "read-write",
        };
        println!(
            "  dir      {} -> {} ({mode})",
            p.host_path(d).display(),
            d.guest
        );
    }
    for (k, v) in &p.env.vars {
        println!("  env      {k}={v}");
    }
    for k in &p.env.inherit {
        println!("  env      {k} (from the host)");
    }
    println!(
        "  stdio    stdin {:?}, stdout {:?}, stderr {:?}",
        p.stdio.stdin, p.stdio.stdout, p.stdio.stderr
    );
    println!(
        "  clocks   {}; random {:?}; network {}",
        if p.capabilities.clocks { "yes" } else { "no" },
        p.capabilities.random,
        if p.capabilities.network { "yes" } else { "no" }
    );
    if !p.capabilities.host_functions.is_empty() {
        println!("  imports  {}", p.capabilities.host_functions.join(", "));
    }
    println!(
        "  limits   memory {}, stack {}, timeout {}, fuel {}, output {}, instances {}, table {}",
        ByteSize(l.memory),
        ByteSize(l.stack),
        HumanDuration(l.timeout),
        l.fuel.map_or("unmetered".to_string(), |f| f.to_string()),
        ByteSize(l.output),
        l.instances,
        l.table_elements
    );
    if let Some(h) = &p.integrity.sha256 {
        println!("  sha256   {h}");
    }
}

/// Policy flags shared by `call` and `run`: a policy file plus grants and limits on top of it.
#[derive(clap::Args, Debug, Default)]
pub struct PolicyFlags {
    /// Read the policy from FILE (TOML; see `wasmlink policy schema`). Flags add to it.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<PathBuf>,
    /// Grant the host directory HOST read-write, as GUEST (default: the same path).
    #[arg(long, value_name = "HOST[::GUEST]")]
    pub dir: Vec<String>,
    /// Grant the host directory HOST read-only, as GUEST.
    #[arg(long, value_name = "HOST[::GUEST]")]
    pub dir_ro: Vec<String>,
    /// Set an environment variable (repeatable).
    #[arg(long, value_name = "KEY=VALUE")]
    pub env: Vec<String>,
    /// Pass the host's variable NAME through (repeatable).
    #[arg(long, value_name = "NAME")]
    pub env_inherit: Vec<String>,
    /// Give the module the host's stdin, stdout and stderr.
    #[arg(long)]
    pub inherit_stdio: bool,
    /// Grant the wall and monotonic clocks.
    #[arg(long)]
    pub allow_clocks: bool,
    /// Randomness: deny, deterministic or secure.
    #[arg(long, value_name = "MODE", value_parser = ["deny", "deterministic", "secure"])]
    pub random: Option<String>,
    /// Limit linear memory (e.g. 64MiB).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_memory: Option<ByteSize>,
    /// Limit the WebAssembly stack (e.g. 1MiB).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_stack: Option<ByteSize>,
    /// Limit each call to N units of fuel.
    #[arg(long, value_name = "N")]
    pub fuel: Option<u64>,
    /// Limit each call's wall-clock time (e.g. 500ms, 2s), or `none`: no limit and no clock
    /// checks compiled into the module (faster; only for modules trusted to return).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<HumanDuration>,
    /// Limit captured output and returned data (e.g. 1MiB).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_output: Option<ByteSize>,
    /// Refuse the module unless its sha256 is HEX.
    #[arg(long, value_name = "HEX")]
    pub sha256: Option<String>,
}

fn parse_size(s: &str) -> Result<ByteSize, String> {
    ByteSize::parse(s)
}

pub fn parse_duration(s: &str) -> Result<HumanDuration, String> {
    HumanDuration::parse(s)
}

impl PolicyFlags {
    /// The policy file (or the empty, deny-everything policy) with the flags applied.
    pub fn resolve(&self) -> Result<Policy, CliError> {
        let mut p = match &self.policy {
            Some(f) => Policy::from_file(f).map_err(|e| CliError::Other(e.to_string()))?,
            None => Policy::default(),
        };
        for (list, mode) in [
            (&self.dir, DirMode::ReadWrite),
            (&self.dir_ro, DirMode::ReadOnly),
        ] {
            for d in list {
                let (host, guest) = d.split_once("::").unwrap_or((d.as_str(), d.as_str()));
                p.dirs.push(DirGrant {
                    host: std::env::current_dir()
                        .map(|c| c.join(host))
                        .unwrap_or_else(|_| PathBuf::from(host)),
                    guest: guest.to_string(),
                    mode,
                });
            }
        }
        for e in &self.env {
            let (k, v) = e
                .split_once('=')
                .ok_or_else(|| CliError::Other(format!("--env {e}: expected KEY=VALUE")))?;
            p.env.vars.insert(k.to_string(), v.to_string());
        }
        p.env.inherit.extend(self.env_inherit.iter().cloned());
        if self.inherit_stdio {
            p.stdio.stdin = StdinMode::Inherit;
            p.stdio.stdout = OutputMode::Inherit;
            p.stdio.stderr = OutputMode::Inherit;
        }
        if self.allow_clocks {
            p.capabilities.clocks = true;
        }
        if let Some(r) = &self.random {
            p.capabilities.random = match r.as_str() {
                "deny" => RandomMode::Deny,
                "secure" => RandomMode::Secure,
                _ => RandomMode::Deterministic,
            };
        }
        if self.max_memory.is_some() {
            p.limits.memory = self.max_memory;
        }
        if self.max_stack.is_some() {
            p.limits.stack = self.max_stack;
        }
        if self.fuel.is_some() {
            p.limits.fuel = self.fuel;
        }
        if self.timeout.is_some() {
            p.limits.timeout = self.timeout;
        }
        if self.max_output.is_some() {
            p.limits.output = self.max_output;
        }
        if self.sha256.is_some() {
            p.integrity.sha256 = self.sha256.clone();
        }
        let origin = self
            .policy
            .as_ref()
            .map_or("command line".to_string(), |f| f.display().to_string());
        p.validate(&origin)
            .map_err(|e| CliError::Other(e.to_string()))?;
        Ok(p)
    }
}
