//! Capability policies: what a module may touch, and how much it may use.
//!
//! One [`Policy`] type serves plugins ([`crate::plugin`]) and `wasmlink run`. It is read from TOML
//! with unknown fields refused, merged with command-line flags, checked against the module it is
//! applied to, and turned into a wasmtime-wasi context plus store limits.
//!
//! **Deny by default.** An empty policy grants no directory, no environment variable, no
//! argument, closed stdio, no clocks, deterministic (not host) randomness, no network and no
//! host functions; it limits memory to 256 MiB and a call to 30 seconds.
//!
//! The network is an allow-list of `HOST:PORT` rules ([`net`]): `wasi:sockets` connects, binds
//! and listens only where a rule allows, and a denied address is the WASI error
//! `access-denied`, never a trap.
//!
//! ```toml
//! args = ["indexer", "--verbose"]
//!
//! [[dirs]]
//! host = "data"          # relative to the policy file
//! guest = "/data"
//! mode = "read-only"     # or "read-write"
//!
//! [env]
//! vars = { LANG = "C" }
//! inherit = ["HOME"]
//!
//! [stdio]
//! stdout = "capture"     # closed | inherit | capture
//!
//! [capabilities]
//! clocks = true
//! random = "secure"      # deny | deterministic | secure
//! net = ["127.0.0.1:8080", "localhost:*"]   # HOST:PORT, PORT a number or *
//! http = ["api.example.com", "127.0.0.1:8080"]   # components' outgoing wasi:http
//!
//! [limits]
//! memory = "64 MiB"
//! timeout = "2s"
//! fuel = 1_000_000_000
//!
//! [integrity]
//! sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! ```
//!
//! The JSON schema of this format is checked in at `docs/policy.schema.json`; a test keeps it
//! equal to [`Policy::json_schema`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

mod ceiling;
pub mod http;
pub mod net;
mod units;

pub use http::{HttpAllow, HttpPort, HttpRule};
pub use net::{NetAllow, NetHost, NetRule, NetRuleError};
pub use units::{ByteSize, HumanDuration, ValueError};

/// A policy file could not be read or is invalid, or a module is not what the policy pins.
/// `Display` is one line naming the file (with line and column where TOML knows them) and the
/// field.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The policy file could not be read.
    #[error("{}: cannot read policy: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The text is not TOML, or does not fit the format (an unknown field, a wrong type, a
    /// size or duration that does not parse).
    #[error("{origin}{}: {message}", line_col(*.line, *.col))]
    Syntax {
        /// The file (or whatever named the text).
        origin: String,
        /// 1-based line, where known.
        line: Option<usize>,
        /// 1-based column, where known.
        col: Option<usize>,
        /// TOML's message, on one line.
        message: String,
    },
    /// A field's value is out of its documented range or malformed.
    #[error("{origin}: {field}: {message}")]
    Field {
        /// The file, or the module the policy was applied to.
        origin: String,
        /// The field, e.g. `limits.stack`.
        field: String,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// The module's bytes are not what `integrity.sha256` pins.
    #[error(
        "{what}: sha256 mismatch: the policy expects {expected}, the file is {actual} \
         (integrity.sha256)"
    )]
    Sha256Mismatch {
        /// The module.
        what: String,
        /// The hash the policy pins.
        expected: String,
        /// The module's hash.
        actual: String,
    },
    /// A directory of `dirs` cannot be granted.
    #[error("{what}: cannot grant directory {} as {guest}: {message} (dirs)", host.display())]
    Directory {
        /// The module.
        what: String,
        /// The host directory.
        host: PathBuf,
        /// The guest path.
        guest: String,
        /// Why.
        message: String,
    },
}

impl PolicyError {
    /// The policy field the error is about, if it is about one.
    pub fn field(&self) -> Option<&str> {
        match self {
            PolicyError::Field { field, .. } => Some(field),
            PolicyError::Sha256Mismatch { .. } => Some("integrity.sha256"),
            PolicyError::Directory { .. } => Some("dirs"),
            _ => None,
        }
    }
}

fn line_col(line: Option<usize>, col: Option<usize>) -> String {
    match (line, col) {
        (Some(l), Some(c)) => format!(":{l}:{c}"),
        (Some(l), None) => format!(":{l}"),
        _ => String::new(),
    }
}

/// Default linear-memory limit of a policy that sets none: 256 MiB.
pub const DEFAULT_MEMORY: u64 = 256 << 20;
/// Default wall-clock limit of one call (or one `run`) of a policy that sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default cap on captured stdout/stderr and on bytes a guest hands back: 64 MiB.
pub const DEFAULT_OUTPUT: u64 = 64 << 20;

/// What a module is allowed to do: the TOML policy file (`wasmlink policy check FILE`;
/// README.md, "Sandboxed plugins", has an annotated example).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Policy {
    /// Command-line arguments the module sees (`argv`), including `argv[0]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Host directories made visible to the module, each at a guest path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dirs: Vec<DirGrant>,
    /// Environment variables.
    #[serde(default)]
    pub env: EnvPolicy,
    /// Standard input, output and error.
    #[serde(default)]
    pub stdio: StdioPolicy,
    /// Clocks, randomness, network and host functions.
    #[serde(default)]
    pub capabilities: Capabilities,
    /// Resource limits.
    #[serde(default)]
    pub limits: Limits,
    /// What the module's bytes must be.
    #[serde(default)]
    pub integrity: Integrity,
    /// Data-exchange convention for byte/string calls (`wasmlink call --input`).
    #[serde(default)]
    pub abi: Abi,
    /// Where relative host paths in `dirs` are resolved from: the policy file's directory.
    #[serde(skip)]
    #[schemars(skip)]
    pub base_dir: Option<PathBuf>,
}

/// One host directory visible to the module.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DirGrant {
    /// The host directory (relative paths are relative to the policy file).
    pub host: PathBuf,
    /// Where the module sees it, e.g. `/data` or `.`.
    pub guest: String,
    /// `read-only` (the default) or `read-write`.
    #[serde(default)]
    pub mode: DirMode,
}

/// Access to a granted directory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DirMode {
    /// Files may be read and directories listed; nothing may be created, written or removed.
    #[default]
    ReadOnly,
    /// Full access below the directory (never above it).
    ReadWrite,
}

/// Environment variables a module sees.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EnvPolicy {
    /// Variables with explicit values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub vars: BTreeMap<String, String>,
    /// Names of host variables passed through (absent ones are skipped).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inherit: Vec<String>,
}

/// Where each standard stream goes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct StdioPolicy {
    /// `closed` (reads see end of file) or `inherit`.
    #[serde(default)]
    pub stdin: StdinMode,
    /// `closed` (writes are discarded), `inherit` or `capture` (kept in memory up to
    /// `limits.output`; more is an error).
    #[serde(default)]
    pub stdout: OutputMode,
    /// As `stdout`.
    #[serde(default)]
    pub stderr: OutputMode,
}

/// Standard input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum StdinMode {
    /// Reads see end of file.
    #[default]
    Closed,
    /// The host's standard input.
    Inherit,
}

/// Standard output or error.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum OutputMode {
    /// Writes are discarded.
    #[default]
    Closed,
    /// The host's stream.
    Inherit,
    /// Kept in memory, up to `limits.output` bytes.
    Capture,
}

/// Ambient capabilities.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Capabilities {
    /// Wall and monotonic clocks. Denied, `clock_time_get` fails with `ENOTCAPABLE`.
    #[serde(default)]
    pub clocks: bool,
    /// Randomness: `deny` (fails with `ENOTCAPABLE`), `deterministic` (the default: a fixed
    /// seed, so nothing about the host leaks) or `secure` (the host's entropy).
    #[serde(default)]
    pub random: RandomMode,
    /// The network allow-list: `HOST:PORT` rules (HOST an IP address, `[IPv6]`, `localhost`
    /// or a host name, resolved when the policy is applied; PORT a number or `*`), e.g.
    /// `["127.0.0.1:8080", "localhost:*"]`. Empty (the default): no network. A program may
    /// connect or send to, and bind or listen on, only the addresses the rules allow; anything
    /// else fails with the WASI error `access-denied`. WASI preview 1 has no sockets, so a
    /// preview 1 plugin granted any network is refused rather than silently denied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub net: Vec<String>,
    /// The old switch, kept for old policy files: `true` grants every address and name (prefer
    /// `net`); `false` is the default.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub network: bool,
    /// Outgoing HTTP for components importing `wasi:http/outgoing-handler`: the hosts their
    /// requests may go to, as `HOST` (ports 80 and 443), `HOST:PORT` or `HOST:*`, matched
    /// against the request's authority (e.g. `["api.example.com", "127.0.0.1:8080"]`).
    /// Empty (the default): every request is denied, and the guest sees the `wasi:http` error
    /// `HTTP-request-denied`. Independent of `net`, which governs `wasi:sockets`. Core modules
    /// have no `wasi:http`: granting it to one is refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<String>,
    /// Host functions the module may import, as `module.name` (e.g. `env.log`) or `module.*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub host_functions: Vec<String>,
}

/// Randomness a module gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RandomMode {
    /// `random_get` fails with `ENOTCAPABLE`.
    Deny,
    /// A fixed seed: reproducible and leaks nothing about the host.
    #[default]
    Deterministic,
    /// The host's cryptographic entropy.
    Secure,
}

/// Resource limits. Sizes are bytes, as an integer or a string such as `"64 MiB"`;
/// durations are strings such as `"250ms"` or `"2s"`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Limits {
    /// Linear memory, all memories of an instance together (default 256 MiB; at most 4 GiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<ByteSize>,
    /// Elements of all tables of an instance together (default 100,000; at most 4,194,304).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 4_194_304))]
    pub table_elements: Option<u64>,
    /// Instances one store may create (default 16; 1 to 10,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10_000))]
    pub instances: Option<u64>,
    /// WebAssembly stack (default 512 KiB; at most 64 MiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<ByteSize>,
    /// Fuel per call (roughly one unit per WebAssembly instruction; any integer up to
    /// 2^63-1 in TOML, 2^64-1 from `--fuel`). Unset: unmetered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    /// Wall-clock time per call (default 30s; more than zero, at most what a `u64` of
    /// seconds holds), or `"none"`: no limit, and the module's code is
    /// compiled without the clock checks a limit needs at every loop and call (they make tight
    /// loops up to 1.5x slower; BENCHMARKS.md). Only for modules trusted to return: a call
    /// that never does hangs its thread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    /// Captured stdout/stderr, and bytes a guest may hand back from one call (default 64 MiB;
    /// at most 4 GiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<ByteSize>,
    /// Whether a plugin's calls share an instance: `"warm"` (the default) or `"fresh"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<Isolation>,
}

/// Whether calls of a plugin share an instance (`limits.isolation`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Isolation {
    /// A call checks an idle instance out of the plugin's pool and gives it back afterwards:
    /// its memory and globals keep what earlier calls left there (about 0.1 us a checkout).
    /// A failed call still throws its instance away.
    #[default]
    Warm,
    /// Every call (every `Plugin` call, every `Plugin::instance` lease) gets a new instance,
    /// made from the pooling allocator's copy-on-write memory image, and drops it afterwards:
    /// nothing one call writes is seen by the next (a few microseconds a call).
    Fresh,
}

/// What the module's bytes must be before anything of it runs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Integrity {
    /// Expected sha256 of the module file, in hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Trusted ed25519 public keys (files written by `wasmlink keygen`, relative to the policy
    /// file). When set, modules taken from the repository must carry a signature by one of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_keys: Vec<PathBuf>,
}

/// How byte and string calls pass data (see docs/abi.md).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Abi {
    /// wasmlink ABI v1: `wasmlink_alloc`/`wasmlink_free` and a result record.
    #[default]
    Wasmlink,
    /// `allocate(size)`/`deallocate(ptr, size)`; functions return a pointer to a `(ptr, len)` record.
    Seed,
    /// NUL-terminated strings in and out, with `allocate`/`deallocate`.
    Cstring,
    /// `(ptr, len)` in, `(ptr << 32) | len` as an i64 out, with `allocate`/`deallocate`.
    Ptrlen,
}

/// The limits a policy resolves to, defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EffectiveLimits {
    /// Linear memory bytes.
    pub memory: u64,
    /// Table elements.
    pub table_elements: u64,
    /// Instances per store.
    pub instances: u64,
    /// WebAssembly stack bytes.
    pub stack: u64,
    /// Fuel per call, if metered.
    pub fuel: Option<u64>,
    /// Wall-clock time per call; `Duration::MAX` for none (`timeout = "none"`).
    pub timeout: Duration,
    /// Captured output bytes and bytes returned by one call.
    pub output: u64,
    /// Whether calls share an instance.
    pub isolation: Isolation,
}

/// The largest WebAssembly stack a policy may ask for (`limits.stack`).
pub const MAX_STACK: u64 = 64 << 20;
/// The smallest WebAssembly stack a policy may ask for.
pub const MIN_STACK: u64 = 16 << 10;
/// The largest `limits.memory`: what a wasm32 memory can address.
pub const MAX_MEMORY: u64 = 1 << 32;
/// The largest `limits.table-elements`: four tables of the 1 Mi elements a pooled slot holds.
pub const MAX_TABLE_ELEMENTS: u64 = 4 << 20;
/// The largest `limits.instances` (per store; the least is 1).
pub const MAX_INSTANCES: u64 = 10_000;
/// The largest `limits.output`: what a wasm32 guest can hand back.
pub const MAX_OUTPUT: u64 = 1 << 32;

impl Policy {
    /// Reads a TOML policy file. Errors are one line: `FILE:LINE:COL: message`.
    pub fn from_file(path: &Path) -> Result<Policy, PolicyError> {
        let text = read_bounded(path, MAX_POLICY_FILE).map_err(|source| PolicyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut policy = Policy::from_toml(&text, &path.display().to_string())?;
        policy.base_dir = Some(
            path.parent()
                .map(|p| {
                    if p.as_os_str().is_empty() {
                        PathBuf::from(".")
                    } else {
                        p.to_path_buf()
                    }
                })
                .unwrap_or_else(|| PathBuf::from(".")),
        );
        Ok(policy)
    }

    /// The public keys of `integrity.trusted-keys`, a relative path taken from the policy
    /// file's directory (as every path in a policy file is).
    pub fn trusted_key_paths(&self) -> Vec<PathBuf> {
        self.integrity
            .trusted_keys
            .iter()
            .map(|k| match &self.base_dir {
                Some(base) if k.is_relative() => base.join(k),
                _ => k.clone(),
            })
            .collect()
    }

    /// Parses TOML text; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &str) -> Result<Policy, PolicyError> {
        let policy: Policy = toml::from_str(text).map_err(|e| {
            let at = e.span().map(|span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                (line, col)
            });
            PolicyError::Syntax {
                origin: origin.to_string(),
                line: at.map(|a| a.0),
                col: at.map(|a| a.1),
                message: e.message().trim().replace('\n', " "),
            }
        })?;
        policy.validate(origin)?;
        Ok(policy)
    }

    /// Checks what TOML cannot: limits in range, hashes well formed, names valid.
    pub fn validate(&self, origin: &str) -> Result<(), PolicyError> {
        let err = |field: &str, message: String| {
            Err(PolicyError::Field {
                origin: origin.to_string(),
                field: field.to_string(),
                message,
            })
        };
        let l = &self.limits;
        if let Some(stack) = l.stack
            && !(MIN_STACK..=MAX_STACK).contains(&stack.0)
        {
            return err(
                "limits.stack",
                format!("{stack} is out of range (16 KiB to 64 MiB)"),
            );
        }
        if let Some(mem) = l.memory
            && mem.0 > MAX_MEMORY
        {
            return err(
                "limits.memory",
                format!("{mem} exceeds the 4 GiB a wasm32 memory can address"),
            );
        }
        if let Some(n) = l.table_elements
            && n > MAX_TABLE_ELEMENTS
        {
            return err(
                "limits.table-elements",
                format!("{n} is out of range (0 to {MAX_TABLE_ELEMENTS})"),
            );
        }
        if let Some(n) = l.instances
            && !(1..=MAX_INSTANCES).contains(&n)
        {
            return err(
                "limits.instances",
                format!("{n} is out of range (1 to {MAX_INSTANCES})"),
            );
        }
        if let Some(out) = l.output
            && out.0 > MAX_OUTPUT
        {
            return err(
                "limits.output",
                format!("{out} is out of range (0 to 4 GiB, what a wasm32 guest can hand back)"),
            );
        }
        if let Some(t) = l.timeout
            && t.0.is_zero()
        {
            return err("limits.timeout", "must be more than zero".into());
        }
        if let Some(h) = &self.integrity.sha256
            && (h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return err(
                "integrity.sha256",
                format!("`{h}` is not a sha256 (64 hex digits)"),
            );
        }
        for d in &self.dirs {
            if d.guest.is_empty() {
                return err(
                    "dirs.guest",
                    format!("empty guest path for host directory {}", d.host.display()),
                );
            }
        }
        for name in self.env.vars.keys().chain(&self.env.inherit) {
            if name.is_empty() || name.contains('=') || name.contains('\0') {
                return err("env", format!("`{name}` is not a valid variable name"));
            }
        }
        for (name, value) in &self.env.vars {
            if value.contains('\0') {
                return err(
                    "env",
                    format!(
                        "the value of `{name}` contains a NUL byte, which no variable can hold"
                    ),
                );
            }
        }
        for rule in &self.capabilities.net {
            if let Err(e) = NetRule::parse(rule) {
                return err("capabilities.net", e.to_string());
            }
        }
        for rule in &self.capabilities.http {
            if let Err(e) = HttpRule::parse(rule) {
                return err("capabilities.http", e.to_string());
            }
        }
        for f in &self.capabilities.host_functions {
            if !f.contains('.') {
                return err(
                    "capabilities.host-functions",
                    format!("`{f}` should be `module.name` or `module.*`"),
                );
            }
        }
        Ok(())
    }

    /// The JSON schema of the TOML format (as pretty JSON).
    pub fn json_schema() -> String {
        let schema = schemars::schema_for!(Policy);
        serde_json::to_string_pretty(&schema).unwrap_or_default() + "\n"
    }

    /// Limits with defaults filled in.
    pub fn effective_limits(&self) -> EffectiveLimits {
        let l = &self.limits;
        EffectiveLimits {
            memory: l.memory.map_or(DEFAULT_MEMORY, |b| b.0),
            table_elements: l.table_elements.unwrap_or(100_000),
            instances: l.instances.unwrap_or(16),
            stack: l.stack.map_or(512 << 10, |b| b.0),
            fuel: l.fuel,
            timeout: l.timeout.map_or(DEFAULT_TIMEOUT, |d| d.0),
            output: l.output.map_or(DEFAULT_OUTPUT, |b| b.0),
            isolation: l.isolation.unwrap_or_default(),
        }
    }

    /// A host path of a `dirs` entry, resolved against the policy file's directory.
    pub fn host_path(&self, grant: &DirGrant) -> PathBuf {
        match &self.base_dir {
            Some(base) if grant.host.is_relative() => base.join(&grant.host),
            _ => grant.host.clone(),
        }
    }

    /// Whether the policy grants any network (`capabilities.net` or the old `network = true`).
    pub fn grants_network(&self) -> bool {
        self.capabilities.network || !self.capabilities.net.is_empty()
    }

    /// The network this policy grants, host names resolved now. `what` names the module.
    ///
    /// # Errors
    /// [`PolicyError::Field`] (`capabilities.net`) for a rule that does not parse or a host
    /// name that does not resolve.
    pub fn net_allow(&self, what: &str) -> Result<NetAllow, PolicyError> {
        if self.capabilities.network {
            return Ok(NetAllow::everything());
        }
        let field = |e: NetRuleError| PolicyError::Field {
            origin: what.to_string(),
            field: "capabilities.net".to_string(),
            message: e.to_string(),
        };
        let rules = self
            .capabilities
            .net
            .iter()
            .map(|r| NetRule::parse(r))
            .collect::<Result<Vec<_>, _>>()
            .map_err(field)?;
        NetAllow::resolve(&rules).map_err(field)
    }

    /// The hosts components may send HTTP requests to (`capabilities.http`). `what` names the
    /// module.
    ///
    /// # Errors
    /// [`PolicyError::Field`] (`capabilities.http`) for a rule that does not parse.
    pub fn http_allow(&self, what: &str) -> Result<HttpAllow, PolicyError> {
        HttpAllow::parse(&self.capabilities.http).map_err(|e| PolicyError::Field {
            origin: what.to_string(),
            field: "capabilities.http".to_string(),
            message: e.to_string(),
        })
    }

    /// Whether the policy lets a module import host function `module.name`.
    pub fn allows_host_function(&self, module: &str, name: &str) -> bool {
        self.capabilities.host_functions.iter().any(|g| {
            g.split_once('.')
                .is_some_and(|(m, n)| m == module && (n == "*" || n == name))
        })
    }

    /// Checks the module's sha256 against `integrity.sha256`. `what` names the module.
    pub fn check_sha256(&self, what: &str, bytes: &[u8]) -> Result<(), PolicyError> {
        let Some(expected) = &self.integrity.sha256 else {
            return Ok(());
        };
        let actual = sha256_hex(bytes);
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(PolicyError::Sha256Mismatch {
                what: what.to_string(),
                expected: expected.clone(),
                actual,
            });
        }
        Ok(())
    }

    /// Shadows the WASI preview 1 functions of the ambient capabilities this policy denies
    /// (clocks; randomness when `random = "deny"`) in a linker that already has wasmtime-wasi,
    /// so they fail with `ENOTCAPABLE` (76). Used for plugins and for `wasmlink run`.
    pub fn deny_ambient<T: 'static>(
        &self,
        linker: &mut wasmtime::Linker<T>,
    ) -> wasmtime::Result<()> {
        const ENOTCAPABLE: i32 = 76;
        const P1: &str = "wasi_snapshot_preview1";
        linker.allow_shadowing(true);
        if !self.capabilities.clocks {
            linker.func_wrap(P1, "clock_time_get", |_: i32, _: i64, _: i32| ENOTCAPABLE)?;
            linker.func_wrap(P1, "clock_res_get", |_: i32, _: i32| ENOTCAPABLE)?;
        }
        if self.capabilities.random == RandomMode::Deny {
            linker.func_wrap(P1, "random_get", |_: i32, _: i32| ENOTCAPABLE)?;
        }
        Ok(())
    }

    /// Builds the WASI context this policy grants (WASI 0.2 sockets included: see [`net`]).
    /// `what` names the module in errors.
    pub fn wasi_builder(
        &self,
        what: &str,
        stdout: Option<&CapturePipe>,
        stderr: Option<&CapturePipe>,
    ) -> Result<wasmtime_wasi::WasiCtxBuilder, PolicyError> {
        self.wasi_builder_with(what, stdout, stderr, false)
    }

    /// As [`wasi_builder`](Self::wasi_builder); with `blocking`, file calls on the granted
    /// directories run on the calling thread (`allow_blocking_current_thread`), which
    /// wasmtime-wasi records in each preopened directory when it is opened, so it must be set
    /// before the directories are added.
    pub fn wasi_builder_with(
        &self,
        what: &str,
        stdout: Option<&CapturePipe>,
        stderr: Option<&CapturePipe>,
        blocking: bool,
    ) -> Result<wasmtime_wasi::WasiCtxBuilder, PolicyError> {
        use wasmtime_wasi::p2::pipe::{MemoryInputPipe, SinkOutputStream};
        let mut b = wasmtime_wasi::WasiCtxBuilder::new();
        b.allow_blocking_current_thread(blocking);
        b.args(&self.args);
        for (k, v) in &self.env.vars {
            b.env(k, v);
        }
        for k in &self.env.inherit {
            if let Ok(v) = std::env::var(k) {
                b.env(k, v);
            }
        }
        match self.stdio.stdin {
            StdinMode::Closed => {
                b.stdin(MemoryInputPipe::new(Vec::<u8>::new()));
            }
            StdinMode::Inherit => {
                b.inherit_stdin();
            }
        }
        let output = |mode: OutputMode, pipe: Option<&CapturePipe>| -> OutputChoice {
            match (mode, pipe) {
                (OutputMode::Inherit, _) => OutputChoice::Inherit,
                (OutputMode::Capture, Some(p)) => OutputChoice::Pipe(p.clone()),
                _ => OutputChoice::Sink,
            }
        };
        match output(self.stdio.stdout, stdout) {
            OutputChoice::Inherit => {
                b.inherit_stdout();
            }
            OutputChoice::Pipe(p) => {
                b.stdout(p);
            }
            OutputChoice::Sink => {
                b.stdout(SinkOutputStream);
            }
        }
        match output(self.stdio.stderr, stderr) {
            OutputChoice::Inherit => {
                b.inherit_stderr();
            }
            OutputChoice::Pipe(p) => {
                b.stderr(p);
            }
            OutputChoice::Sink => {
                b.stderr(SinkOutputStream);
            }
        }
        match self.capabilities.random {
            RandomMode::Secure => {}
            RandomMode::Deterministic | RandomMode::Deny => {
                b.secure_random(wasmtime_wasi::Deterministic::new(vec![0x5a; 32]));
                b.insecure_random(wasmtime_wasi::Deterministic::new(vec![0xa5; 32]));
                b.insecure_random_seed(0);
            }
        }
        if !self.capabilities.clocks {
            // WASI 0.2 clocks cannot fail: denied, both read zero (the wall clock
            // 1970-01-01T00:00:00Z, the monotonic clock never advances), so a component learns
            // no time from them. Core modules get ENOTCAPABLE instead (`deny_ambient`).
            b.wall_clock(DeniedClock);
            b.monotonic_clock(DeniedClock);
        }
        self.net_allow(what)?.apply(&mut b);
        for grant in &self.dirs {
            let host = self.host_path(grant);
            let perms = match grant.mode {
                DirMode::ReadOnly => wasmtime_wasi::FsPerms::ReadOnly,
                DirMode::ReadWrite => wasmtime_wasi::FsPerms::ReadWrite,
            };
            b.preopened_dir(&host, &grant.guest, perms)
                .map_err(|e| PolicyError::Directory {
                    what: what.to_string(),
                    host: host.clone(),
                    guest: grant.guest.clone(),
                    message: e.to_string(),
                })?;
        }
        Ok(b)
    }
}

enum OutputChoice {
    Inherit,
    Pipe(CapturePipe),
    Sink,
}

/// The clocks of a policy that denies them: always zero.
struct DeniedClock;

impl wasmtime_wasi::HostWallClock for DeniedClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }
    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for DeniedClock {
    fn resolution(&self) -> u64 {
        1
    }
    fn now(&self) -> u64 {
        0
    }
}

/// Captured stdout/stderr with a hard cap: a write past the cap traps the guest (so a module
/// that ignores write errors cannot spin on a full pipe), where wasmtime-wasi's own pipe would
/// report the stream closed.
#[derive(Clone, Debug)]
pub struct CapturePipe {
    inner: wasmtime_wasi::p2::pipe::MemoryOutputPipe,
}

impl CapturePipe {
    /// A pipe holding at most `cap` bytes.
    pub fn new(cap: usize) -> CapturePipe {
        CapturePipe {
            inner: wasmtime_wasi::p2::pipe::MemoryOutputPipe::new(cap),
        }
    }

    /// Everything written so far.
    pub fn contents(&self) -> Vec<u8> {
        self.inner.contents().to_vec()
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.inner.contents().len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl wasmtime_wasi::cli::IsTerminal for CapturePipe {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for CapturePipe {
    fn p2_stream(&self) -> Box<dyn wasmtime_wasi::p2::OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.inner.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl wasmtime_wasi::p2::OutputStream for CapturePipe {
    fn write(&mut self, bytes: bytes::Bytes) -> Result<(), wasmtime_wasi::p2::StreamError> {
        // Traps ("write beyond capacity of MemoryOutputPipe") past the cap.
        self.inner.write(bytes)
    }
    fn flush(&mut self) -> Result<(), wasmtime_wasi::p2::StreamError> {
        Ok(())
    }
    fn check_write(&mut self) -> Result<usize, wasmtime_wasi::p2::StreamError> {
        Ok(64 << 10)
    }
}

#[wasmtime_wasi::async_trait]
impl wasmtime_wasi::p2::Pollable for CapturePipe {
    async fn ready(&mut self) {}
}

/// The sha256 of `bytes` in lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The largest policy file read (1 MiB): `/dev/zero` or a huge file given as a policy is an
/// error, never read until memory runs out.
pub const MAX_POLICY_FILE: u64 = 1 << 20;

/// Reads a small text file (a policy, a pipeline file) of at most `limit` bytes, as UTF-8.
///
/// # Errors
/// The file's I/O error, or `InvalidData` when it is longer than `limit` or not UTF-8.
pub fn read_bounded(path: &Path, limit: u64) -> std::io::Result<String> {
    use std::io::Read;
    let mut bytes = Vec::new();
    std::fs::File::open(path)?
        .take(limit + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {limit} bytes, the limit for this file"),
        ));
    }
    String::from_utf8(bytes)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!(ByteSize::parse("64 MiB"), Ok(ByteSize(64 << 20)));
        assert_eq!(ByteSize::parse("512KiB"), Ok(ByteSize(512 << 10)));
        assert_eq!(ByteSize::parse("1_000"), Ok(ByteSize(1000)));
        assert!(
            ByteSize::parse("3 parsecs")
                .unwrap_err()
                .to_string()
                .contains("unknown size unit")
        );
        assert_eq!(
            HumanDuration::parse("250ms"),
            Ok(HumanDuration(Duration::from_millis(250)))
        );
        assert_eq!(
            HumanDuration::parse("1.5s"),
            Ok(HumanDuration(Duration::from_millis(1500)))
        );
        assert!(HumanDuration::parse("soon").is_err());
    }

    #[test]
    fn unknown_field_names_line_and_field() {
        let err = Policy::from_toml("[limits]\nmemory = \"1 MiB\"\nmemroy = 3\n", "p.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("p.toml:3:1: unknown field `memroy`"),
            "{err}"
        );
    }

    #[test]
    fn empty_policy_denies() {
        let p = Policy::from_toml("", "p.toml").unwrap();
        assert!(p.dirs.is_empty() && p.env.vars.is_empty() && p.args.is_empty());
        assert!(!p.capabilities.clocks && !p.capabilities.network);
        assert_eq!(p.capabilities.random, RandomMode::Deterministic);
        assert_eq!(p.effective_limits().memory, DEFAULT_MEMORY);
        assert!(!p.allows_host_function("env", "log"));
    }

    #[test]
    fn bad_values_are_named() {
        let e = Policy::from_toml("[limits]\nstack = \"1 GiB\"\n", "p.toml")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "p.toml: limits.stack: 1 GiB is out of range (16 KiB to 64 MiB)"
        );
        let e = Policy::from_toml("[integrity]\nsha256 = \"abc\"\n", "p.toml")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "p.toml: integrity.sha256: `abc` is not a sha256 (64 hex digits)"
        );
    }

    #[test]
    fn errors_have_kinds_a_caller_can_match() {
        let e =
            Policy::from_toml("[limits]\nmemory = \"1 MiB\"\nmemroy = 3\n", "p.toml").unwrap_err();
        assert!(
            matches!(&e, PolicyError::Syntax { origin, line: Some(3), col: Some(1), .. } if origin == "p.toml"),
            "{e:?}"
        );
        let e = Policy::from_toml("[limits]\nstack = \"1 GiB\"\n", "p.toml").unwrap_err();
        assert_eq!(e.field(), Some("limits.stack"));
        assert!(matches!(e, PolicyError::Field { .. }));
        let e = Policy::from_file(Path::new("/nonexistent/p.toml")).unwrap_err();
        assert!(matches!(e, PolicyError::Read { .. }));
        assert!(
            e.to_string()
                .starts_with("/nonexistent/p.toml: cannot read policy: "),
            "{e}"
        );
        assert_eq!(
            ByteSize::parse("3 parsecs"),
            Err(ValueError::UnknownUnit {
                text: "3 parsecs".into(),
                unit: "parsecs".into()
            })
        );
    }

    #[test]
    fn every_number_has_a_bound_checked_up_front() {
        let check = |toml: &str| {
            Policy::from_toml(toml, "p.toml")
                .map(|_| ())
                .map_err(|e| e.to_string())
        };
        let out_of_range = [
            (
                "[limits]\nstack = \"8 KiB\"",
                "p.toml: limits.stack: 8 KiB is out of range (16 KiB to 64 MiB)",
            ),
            (
                "[limits]\nstack = \"65 MiB\"",
                "p.toml: limits.stack: 65 MiB is out of range (16 KiB to 64 MiB)",
            ),
            (
                "[limits]\nmemory = \"5 GiB\"",
                "p.toml: limits.memory: 5 GiB exceeds the 4 GiB a wasm32 memory can address",
            ),
            (
                "[limits]\ntable-elements = 4194305",
                "p.toml: limits.table-elements: 4194305 is out of range (0 to 4194304)",
            ),
            (
                "[limits]\ninstances = 0",
                "p.toml: limits.instances: 0 is out of range (1 to 10000)",
            ),
            (
                "[limits]\ninstances = 10001",
                "p.toml: limits.instances: 10001 is out of range (1 to 10000)",
            ),
            (
                "[limits]\noutput = \"5 GiB\"",
                "p.toml: limits.output: 5 GiB is out of range (0 to 4 GiB, what a wasm32 guest can hand back)",
            ),
            (
                "[limits]\ntimeout = \"0s\"",
                "p.toml: limits.timeout: must be more than zero",
            ),
            (
                "[limits]\nfuel = -1",
                "p.toml:2:8: invalid value: integer `-1`, expected u64",
            ),
            (
                "[limits]\nmemory = \"99999999999 GiB\"",
                "p.toml:2:10: `99999999999 GiB` is too large",
            ),
            (
                "[limits]\ntimeout = \"99999999999999999999999s\"",
                "p.toml:2:11: `99999999999999999999999s` is not a duration (expected e.g. \"250ms\", \"2s\", \"1m\", \"none\")",
            ),
        ];
        for (toml, expected) in out_of_range {
            assert_eq!(check(toml), Err(expected.to_string()), "{toml}");
        }
        for toml in [
            "[limits]\nstack = \"16 KiB\"",
            "[limits]\nstack = \"64 MiB\"",
            "[limits]\nmemory = \"4 GiB\"",
            "[limits]\ntable-elements = 4194304",
            "[limits]\ninstances = 1",
            "[limits]\ninstances = 10000",
            "[limits]\noutput = \"4 GiB\"",
            "[limits]\nfuel = 9223372036854775807",
            "[limits]\ntimeout = \"none\"",
        ] {
            assert_eq!(check(toml), Ok(()), "{toml}");
        }
    }
}
