//! Flags that several subcommands share: the policy flags of `call` (a policy file plus grants
//! and limits on top of it), `--modules` of `index` and `search`, and the value parsers for
//! sizes and durations.

use std::path::{Path, PathBuf};

use wasmlink::policy::{
    ByteSize, DirGrant, DirMode, HumanDuration, OutputMode, Policy, RandomMode, StdinMode,
};

use crate::input::CliError;

/// The policy flags of `call`: a policy file plus grants and limits on top of it.
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
    /// Allow network connections to, and binds on, HOST:PORT (repeatable; PORT a number or
    /// `*`; HOST an IP address, `[IPv6]`, `localhost` or a host name). Default: no network.
    #[arg(long = "allow-net", value_name = "HOST:PORT")]
    pub allow_net: Vec<String>,
    /// Let a component send HTTP requests (wasi:http) to HOST (ports 80 and 443), HOST:PORT or
    /// HOST:* (repeatable; matched against the request's authority). Default: none, and a
    /// request gets the wasi:http error HTTP-request-denied.
    #[arg(long = "allow-http", value_name = "HOST[:PORT]")]
    pub allow_http: Vec<String>,
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

pub fn parse_size(s: &str) -> Result<ByteSize, String> {
    ByteSize::parse(s).map_err(|e| e.to_string())
}

/// A size for a 32-bit field (`run --stack-size`): as [`parse_size`], at most 4 GiB - 1.
pub fn parse_size_u32(s: &str) -> Result<u32, String> {
    let size = parse_size(s)?;
    u32::try_from(size.0).map_err(|_| format!("`{s}` is too large: at most {} bytes", u32::MAX))
}

pub fn parse_duration(s: &str) -> Result<HumanDuration, String> {
    HumanDuration::parse(s).map_err(|e| e.to_string())
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
        for rule in &self.allow_net {
            wasmlink::policy::NetRule::parse(rule)
                .map_err(|e| CliError::Other(format!("--allow-net: {e}")))?;
        }
        p.capabilities.net.extend(self.allow_net.iter().cloned());
        for rule in &self.allow_http {
            wasmlink::policy::HttpRule::parse(rule)
                .map_err(|e| CliError::Other(format!("--allow-http: {e}")))?;
        }
        p.capabilities.http.extend(self.allow_http.iter().cloned());
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

/// `--modules DIR` (or `WASMLINK_MODULES`).
#[derive(clap::Args, Clone, Debug)]
pub struct ModulesFlag {
    /// The directory holding the search engine's modules (extract.wasm, analyze.wasm,
    /// index.wasm, query.wasm); default: the build tree's target/guest-modules,
    /// else the copies built into this binary.
    #[arg(long = "modules", value_name = "DIR", env = "WASMLINK_MODULES")]
    pub dir: Option<PathBuf>,
}

/// Where a search-engine module comes from.
pub enum ModuleSource {
    /// A file: `--modules`/`$WASMLINK_MODULES`, or the build tree of this binary.
    File(PathBuf),
    /// The copy built into this binary (build.rs).
    Embedded(Vec<u8>),
}

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/embedded_modules.rs"));
}

impl ModulesFlag {
    /// Module `name` (`name.wasm`): from `--modules`/`$WASMLINK_MODULES` when given (an error if
    /// it is not there); else from the build tree of this binary (`target/guest-modules`, next to
    /// `target/{debug,release}`: what `bash scripts/build-guests.sh` just built); else the copy
    /// built into the binary; else an error saying how to build it.
    pub fn find(&self, name: &str) -> Result<ModuleSource, CliError> {
        let file = format!("{name}.wasm");
        if let Some(dir) = &self.dir {
            let p = dir.join(&file);
            if p.is_file() {
                return Ok(ModuleSource::File(p));
            }
            return Err(CliError::Other(format!(
                "{}: module not found (--modules / WASMLINK_MODULES is {}); build the modules \
                 with `bash scripts/build-guests.sh`",
                p.display(),
                dir.display()
            )));
        }
        // The build tree of this binary: target/{debug,release}/wasmlink -> target/guest-modules.
        let mut tried = Vec::new();
        if let Ok(exe) = std::env::current_exe()
            && let Some(target) = exe.parent().and_then(Path::parent)
        {
            tried.push(target.join("guest-modules"));
        }
        for dir in &tried {
            let p = dir.join(&file);
            if p.is_file() {
                return Ok(ModuleSource::File(p));
            }
        }
        if let Some((_, packed)) = embedded::EMBEDDED.iter().find(|(n, _)| *n == name) {
            let bytes = zstd::decode_all(*packed).map_err(|e| {
                CliError::Other(format!(
                    "{file}: the copy built into this binary does not decompress ({e}): \
                     rebuild wasmlink"
                ))
            })?;
            return Ok(ModuleSource::Embedded(bytes));
        }
        let dirs: Vec<String> = tried.iter().map(|d| d.display().to_string()).collect();
        Err(CliError::Other(format!(
            "module {file} not found in {} and not built into this binary; build the modules \
             with `bash scripts/build-guests.sh` (or pass --modules DIR / set WASMLINK_MODULES)",
            if dirs.is_empty() {
                "the build tree".to_string()
            } else {
                dirs.join(" or ")
            }
        )))
    }
}

/// `--cache-dir DIR` / `--no-cache`: where compiled code is kept on disk between runs (the
/// same flags and default as `run`).
#[derive(clap::Args, Debug, Default, Clone)]
pub struct CacheFlags {
    /// Cache compiled code in DIR (default: $WASMLINK_CACHE_DIR, $XDG_CACHE_HOME/wasmlink or
    /// ~/.cache/wasmlink).
    #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
    pub cache_dir: Option<PathBuf>,
    /// Do not cache compiled code on disk (every run compiles every module).
    #[arg(long)]
    pub no_cache: bool,
}

impl CacheFlags {
    /// The directory to cache compiled code in, if any.
    pub fn dir(&self) -> Option<PathBuf> {
        if self.no_cache {
            None
        } else {
            self.cache_dir
                .clone()
                .or_else(wasmlink::process::default_cache_dir)
        }
    }
}

/// `--with` of `call` and `run` for components: composition at run time.
#[derive(clap::Args, Debug, Default)]
pub struct WithFlags {
    /// Satisfy the component's imports with the exports of the component DEP (repeatable),
    /// run in its own store under its own policy POLICY.toml (default: deny all) and, where
    /// that policy sets none, the main component's limits. Components only.
    #[arg(long = "with", value_name = "DEP.wasm[:POLICY.toml]")]
    pub with: Vec<String>,
}

impl WithFlags {
    /// The `--with` components, in the order given (the first exporting an import wins).
    pub fn parse(&self) -> Vec<crate::components::With> {
        self.with
            .iter()
            .map(|s| crate::components::With::parse(s))
            .collect()
    }

    /// Refuses `--with` for a core module: it is for components.
    pub fn refuse_for_core(&self, module: &Path) -> Result<(), CliError> {
        match self.with.first() {
            Some(_) => Err(CliError::Other(format!(
                "{}: --with is for components; this is a core module (use --module or -L)",
                module.display()
            ))),
            None => Ok(()),
        }
    }
}
