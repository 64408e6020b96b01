//! A wasm function as it travels in a plan, and loading its module where the plan lands.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use datafusion::logical_expr::ScalarUDF;
use sha2::{Digest, Sha256};
use wasmlink_host::plugin::{HostConfig, Plugin, PluginHost};
use wasmlink_host::policy::Policy;
use wasmlink_repo::{Repository, Trust};

use crate::ClusterError;

/// A wasm scalar function: what the client sends with a plan so that every process loads the
/// same module. Serialised as JSON into the plan's function definition.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UdfSpec {
    /// The SQL function's name.
    pub name: String,
    /// The module's exported Arrow function.
    pub function: String,
    /// `NAME@=VERSION` in the module repository (`repo` true), or an absolute path.
    pub module: String,
    /// Whether `module` names a repository entry.
    pub repo: bool,
    /// The sha256 (hex) of the bytes the client loaded.
    pub sha256: String,
    /// The policy the module runs under (TOML text); none: deny everything.
    pub policy: Option<String>,
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn trust_of(policy: &Policy) -> Result<Trust, String> {
    Trust::load(&policy.trusted_key_paths()).map_err(|e| e.to_string())
}

impl UdfSpec {
    /// The client side of `--udf NAME=MODULE:FUNCTION[:POLICY]`: MODULE is `NAME@VERSION` (an
    /// exact version in `repo`) or a file. Returns the spec and the module's bytes.
    pub fn from_client(
        name: &str,
        module: &str,
        function: &str,
        policy_file: Option<&Path>,
        repo: Option<&Path>,
    ) -> Result<(UdfSpec, Vec<u8>, Policy), ClusterError> {
        let bad = |m: String| ClusterError::Udf(format!("--udf {name}: {m}"));
        let (policy_text, policy) = match policy_file {
            Some(p) => {
                let text =
                    std::fs::read_to_string(p).map_err(|e| bad(format!("{}: {e}", p.display())))?;
                let policy = Policy::from_toml(&text, &p.display().to_string())
                    .map_err(|e| bad(e.to_string()))?;
                (Some(text), policy)
            }
            None => (None, Policy::default()),
        };
        let is_file = Path::new(module).is_file();
        let (module, bytes, from_repo) = if !is_file && module.contains('@') {
            let dir = repo.ok_or_else(|| {
                bad(format!(
                    "`{module}` names a repository module: add --repo DIR (or give a file path)"
                ))
            })?;
            let (n, v) = wasmlink_repo::parse_exact(module).map_err(|e| bad(e.to_string()))?;
            let exact = format!("{n}@={v}");
            let loaded = Repository::open(dir)
                .load(&exact, &trust_of(&policy).map_err(bad)?)
                .map_err(|e| bad(e.to_string()))?;
            (exact, loaded.bytes, true)
        } else {
            let path = std::fs::canonicalize(module)
                .map_err(|e| bad(format!("module `{module}`: {e}")))?;
            // A regular file of a bounded size: never `/dev/zero` read until memory runs out.
            let bytes = wasmlink_repo::read_module_file(&path).map_err(|e| bad(e.to_string()))?;
            (path.to_string_lossy().into_owned(), bytes, false)
        };
        let spec = UdfSpec {
            name: name.to_string(),
            function: function.to_string(),
            module,
            repo: from_repo,
            sha256: sha256_hex(&bytes),
            policy: policy_text,
        };
        Ok((spec, bytes, policy))
    }

    /// The plugin's name: the repository name or the file stem.
    pub fn plugin_name(&self) -> String {
        if self.repo {
            self.module
                .split('@')
                .next()
                .unwrap_or(&self.module)
                .to_string()
        } else {
            Path::new(&self.module)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| self.module.clone())
        }
    }
}

/// Loads the modules plans name, in this process's own plugin host, once per spec.
pub struct ModuleResolver {
    role: &'static str,
    repo: Option<PathBuf>,
    host: PluginHost,
    loaded: Mutex<HashMap<String, Arc<ScalarUDF>>>,
    /// The most a function's policy (sent by a client) is granted here ([`Policy::within`]);
    /// none for the client itself.
    ceiling: Option<Policy>,
}

impl std::fmt::Debug for ModuleResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModuleResolver")
            .field("role", &self.role)
            .field("repo", &self.repo)
            .finish()
    }
}

impl ModuleResolver {
    /// `role` names this process in errors (`executor`, `scheduler`, `client`).
    pub fn new(
        role: &'static str,
        repo: Option<PathBuf>,
        cache_dir: Option<PathBuf>,
        slots: u32,
    ) -> Result<ModuleResolver, ClusterError> {
        let host = PluginHost::new(HostConfig {
            pool_slots: slots.max(1),
            cache_dir,
            ..HostConfig::default()
        })
        .map_err(|e| ClusterError::Service(e.to_string()))?;
        Ok(ModuleResolver {
            role,
            repo,
            host,
            loaded: Mutex::new(HashMap::new()),
            ceiling: None,
        })
    }

    /// Admits a function's policy only within `ceiling` (grants beyond it refused, limits
    /// capped by it): for a scheduler or an executor, which run functions their clients define.
    #[must_use]
    pub fn with_ceiling(mut self, ceiling: Policy) -> ModuleResolver {
        self.ceiling = Some(ceiling);
        self
    }

    /// The plugin host (the client loads its own copy of each module with it).
    pub fn host(&self) -> &PluginHost {
        &self.host
    }

    /// The function `encoded` (a [`UdfSpec`] as JSON) describes, its module loaded here and
    /// checked against the client's hash.
    pub fn udf(&self, sql_name: &str, encoded: &[u8]) -> Result<Arc<ScalarUDF>, String> {
        let key = String::from_utf8_lossy(encoded).into_owned();
        if let Some(u) = self.loaded.lock().map_err(|_| "poisoned")?.get(&key) {
            return Ok(u.clone());
        }
        let spec: UdfSpec = serde_json::from_str(&key)
            .map_err(|e| format!("function `{sql_name}`: a bad wasm function definition: {e}"))?;
        let plugin = self.load(&spec)?;
        wasmlink_sql::check_udf(&spec.name, &plugin, &spec.function)
            .map_err(|e| format!("on the {}: {e}", self.role))?;
        let udf = Arc::new(ScalarUDF::new_from_impl(
            wasmlink_sql::WasmUdf::new(&spec.name, plugin, &spec.function).with_origin(key.clone()),
        ));
        self.loaded
            .lock()
            .map_err(|_| "poisoned")?
            .insert(key, udf.clone());
        Ok(udf)
    }

    fn load(&self, spec: &UdfSpec) -> Result<Plugin, String> {
        let role = self.role;
        let policy = match &spec.policy {
            Some(text) => Policy::from_toml(text, &format!("the policy of `{}`", spec.name))
                .map_err(|e| format!("function `{}`: {e}", spec.name))?,
            None => Policy::default(),
        };
        let policy = match &self.ceiling {
            Some(ceiling) => policy.within(ceiling).map_err(|e| {
                format!(
                    "function `{}`: its policy asks for more than this {role} grants (its --policy): {e}",
                    spec.name
                )
            })?,
            None => policy,
        };
        let bytes = if spec.repo {
            let dir = self.repo.as_ref().ok_or_else(|| {
                format!(
                    "module `{}` (function `{}`): this {role} has no module repository (start it with --repo DIR)",
                    spec.module, spec.name
                )
            })?;
            Repository::open(dir)
                .load(&spec.module, &trust_of(&policy)?)
                .map_err(|e| format!("module `{}` on this {role}: {e}", spec.module))?
                .bytes
        } else {
            wasmlink_repo::read_module_file(Path::new(&spec.module))
                .map_err(|e| format!("module `{}` on this {role}: {e}", spec.module))?
        };
        let here = sha256_hex(&bytes);
        if here != spec.sha256 {
            return Err(format!(
                "module `{}` (function `{}`): this {role}'s bytes have sha256 {here}, the client's have {}; every process must run the same module",
                spec.module, spec.name, spec.sha256
            ));
        }
        self.host
            .load(&spec.plugin_name(), &bytes, policy)
            .map_err(|e| format!("module `{}` on this {role}: {e}", spec.module))
    }
}
