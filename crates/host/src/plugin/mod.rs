//! Plugins: modules loaded as isolated security domains under a [`Policy`].
//!
//! A [`PluginHost`] owns the engines (one per distinct engine-level setting: stack size, fuel
//! metering), the pooling instance allocator, an in-memory cache of compiled modules keyed by
//! sha256, the host functions plugins may import, and one timer thread that advances every
//! engine's epoch (the clock behind `limits.timeout`). It is `Send + Sync`: share it with `Arc`
//! or clone it (clones share everything).
//!
//! A [`Plugin`] is one module plus its policy. Each of its instances lives in a Store of its
//! own. Calls check an instance out of the plugin's pool (creating one from an `InstancePre`
//! when the pool is empty), run, and give it back, unless the call failed in any way, in which
//! case the instance is dropped and the next call gets a fresh one. Under
//! `limits.isolation = "fresh"` nothing is given back: every call (every lease) gets a new
//! instance from the module's copy-on-write image, so no state survives between calls.
//! [`Plugin::instance`] hands
//! out an [`Instance`] lease for a run of calls on one thread (one instance per thread), and
//! [`Plugin::swap`] replaces the module while calls are in flight: they finish on the old one.
//!
//! ```no_run
//! use wasmlink_host::plugin::PluginHost;
//! use wasmlink_host::policy::Policy;
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let host = PluginHost::new(Default::default())?;
//! let policy = Policy::from_file("plugin.toml".as_ref())?;
//! let plugin = host.load_file("plugin.wasm".as_ref(), policy)?;
//! let sum: i32 = plugin.instance()?.typed::<(i32, i32), i32>("add")?.call((2, 3))?;
//! # Ok(()) }
//! ```

mod error;
mod instance;
pub mod manifest;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use wasmtime::{
    Config, Engine, ExternType, FuncType, InstanceAllocationStrategy, IntoFunc, Linker, Module,
    PoolingAllocationConfig,
};

use error::one_line;
pub use error::{IpcError, PluginError};
use instance::PluginInner;
pub use instance::{Instance, PluginState, TypedCall, exchange};

use crate::policy::{Policy, sha256_hex};

/// How a [`PluginHost`] is set up. The defaults suit a host of a few hundred live instances.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Instances (and memories, and tables) the pooling allocator reserves slots for, across
    /// every plugin of the host. Each slot reserves address space (not memory) for a 4 GiB
    /// linear memory and its guard region. 0 uses on-demand allocation instead of the pool.
    pub pool_slots: u32,
    /// Idle instances a plugin keeps for reuse.
    pub idle_per_plugin: usize,
    /// Period of the epoch timer that enforces `limits.timeout`.
    pub tick: Duration,
    /// Keep compiled code on disk in this directory (wasmtime's cache: keyed by the module's
    /// bytes, the engine settings and the wasmtime version; a corrupt entry is recompiled).
    pub cache_dir: Option<std::path::PathBuf>,
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            pool_slots: 256,
            idle_per_plugin: 8,
            tick: Duration::from_millis(1),
            cache_dir: None,
        }
    }
}

/// The environment variable that makes every plugin count fuel even when its policy sets no
/// `limits.fuel` (with a budget no call reaches): `1` to measure what fuel metering costs on a
/// real workload (`scripts/bench-index.sh` runs `wasmlink index` with it). It only adds
/// metering; a policy's own fuel limit and timeout still hold.
pub const COUNT_FUEL_ENV: &str = "WASMLINK_COUNT_FUEL";

/// Whether [`COUNT_FUEL_ENV`] is set to `1` (read once per process).
fn count_fuel() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os(COUNT_FUEL_ENV).is_some_and(|v| v == "1"))
}

/// Engine-level settings; plugins whose policies agree on them share an engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct EngineKey {
    stack: u64,
    fuel: bool,
    /// Whether code gets epoch checks (off only for `timeout = "none"`).
    epoch: bool,
}

type Definer = Arc<dyn Fn(&mut Linker<PluginState>) -> wasmtime::Result<()> + Send + Sync>;

struct HostFunc {
    module: String,
    name: String,
    define: Definer,
}

struct HostInner {
    config: HostConfig,
    /// Epoch ticks since the host started, advanced with the engines' epochs by the timer
    /// thread: a call records it when it starts, and its timeout measures from there.
    clock: Arc<std::sync::atomic::AtomicU64>,
    engines: Mutex<HashMap<EngineKey, Engine>>,
    modules: Mutex<HashMap<(EngineKey, String), Module>>,
    funcs: RwLock<Vec<HostFunc>>,
}

/// The host of many plugins. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct PluginHost {
    inner: Arc<HostInner>,
}

impl PluginHost {
    /// Creates a host and starts its epoch timer thread (which ends when the host is dropped).
    pub fn new(config: HostConfig) -> Result<PluginHost, PluginError> {
        let inner = Arc::new(HostInner {
            config,
            clock: Arc::new(std::sync::atomic::AtomicU64::new(0)),
            engines: Mutex::new(HashMap::new()),
            modules: Mutex::new(HashMap::new()),
            funcs: RwLock::new(Vec::new()),
        });
        let weak: Weak<HostInner> = Arc::downgrade(&inner);
        let tick = inner.config.tick;
        std::thread::Builder::new()
            .name("wasmlink-epoch".into())
            .spawn(move || {
                while let Some(host) = weak.upgrade() {
                    let engines: Vec<Engine> = match host.engines.lock() {
                        Ok(e) => e.values().cloned().collect(),
                        Err(_) => return,
                    };
                    host.clock
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    drop(host);
                    for e in &engines {
                        e.increment_epoch();
                    }
                    std::thread::sleep(tick);
                }
            })
            .map_err(|e| PluginError::Load {
                plugin: "(host)".into(),
                message: format!("cannot start the epoch timer thread: {e}"),
            })?;
        Ok(PluginHost { inner })
    }

    /// Defines a host function plugins may import as `module.name`, if their policy lists it
    /// in `capabilities.host-functions`.
    pub fn func_wrap<Params, Results>(
        &self,
        module: &str,
        name: &str,
        func: impl IntoFunc<PluginState, Params, Results> + Clone + 'static,
    ) {
        let (m, n) = (module.to_string(), name.to_string());
        let define: Definer = Arc::new(move |linker: &mut Linker<PluginState>| {
            linker.func_wrap(&m, &n, func.clone()).map(|_| ())
        });
        if let Ok(mut funcs) = self.inner.funcs.write() {
            funcs.retain(|f| !(f.module == module && f.name == name));
            funcs.push(HostFunc {
                module: module.to_string(),
                name: name.to_string(),
                define,
            });
        }
    }

    fn engine(&self, key: EngineKey) -> Result<Engine, PluginError> {
        let mut engines = self.inner.engines.lock().map_err(|_| poisoned())?;
        if let Some(e) = engines.get(&key) {
            return Ok(e.clone());
        }
        let mut config = Config::new();
        wasmlink_engine::apply_profiler(&mut config);
        config.epoch_interruption(key.epoch);
        config.consume_fuel(key.fuel);
        // A stack deeper than the caller's thread gets a thread of its own per call
        // (instance::enter); wasmtime also wants its async stack to hold the wasm stack.
        config.max_wasm_stack(key.stack as usize);
        config.async_stack_size(key.stack.saturating_add(instance::HOST_STACK) as usize);
        if let Some(dir) = &self.inner.config.cache_dir {
            // Beside the linker's artifacts, never over them (wasmlink_engine::wasmtime_cache).
            match wasmlink_engine::wasmtime_cache(dir) {
                Ok(cache) => {
                    config.cache(Some(cache));
                }
                Err(e) => tracing::warn!("{e}"),
            }
        }
        let slots = self.inner.config.pool_slots;
        if slots > 0 {
            let mut pool = PoolingAllocationConfig::default();
            pool.total_core_instances(slots)
                .total_memories(slots)
                .total_tables(slots)
                .max_memory_size(1 << 32)
                .table_elements(1 << 20)
                .max_memories_per_module(1)
                .max_tables_per_module(4);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        // Memories start as a copy-on-write mapping of the module's data image, and a freed
        // pool slot is reset to it: what makes `limits.isolation = "fresh"` a few microseconds.
        config.memory_init_cow(true);
        let engine = Engine::new(&config).map_err(|e| PluginError::Load {
            plugin: "(host)".into(),
            message: format!("cannot create an engine: {e}"),
        })?;
        engines.insert(key, engine.clone());
        Ok(engine)
    }

    /// Loads a plugin from a file; its name is the file stem.
    pub fn load_file(&self, path: &Path, policy: Policy) -> Result<Plugin, PluginError> {
        // A regular file of bounded size: a device such as `/dev/zero` is refused, not read
        // until memory runs out.
        let bytes = wasmlink_repo::read_module_file(path).map_err(|e| PluginError::Io {
            path: path.display().to_string(),
            message: match e {
                wasmlink_repo::RepoError::Io { source, .. } => {
                    format!("cannot read module: {source}")
                }
                // "is a character device, not a file", "larger than ... bytes, ..."
                wasmlink_repo::RepoError::NotWasm { message, .. } if message.starts_with("is ") => {
                    format!("cannot read module: it {message}")
                }
                wasmlink_repo::RepoError::NotWasm { message, .. } => {
                    format!("cannot read module: {message}")
                }
                other => format!("cannot read module: {other}"),
            },
        })?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        self.load(&name, &bytes, policy)
    }

    /// Loads a plugin from a module repository by reference (`name`, `name@1.2`,
    /// `name@^1`, ...). The object's sha256 is checked against the index; when the policy lists
    /// `integrity.trusted-keys`, the module must also carry a signature by one of them. The
    /// plugin is named after the module.
    pub fn load_ref(
        &self,
        repo: &wasmlink_repo::Repository,
        reference: &str,
        policy: Policy,
    ) -> Result<Plugin, PluginError> {
        let keys = policy.trusted_key_paths();
        let integrity = |message: String| PluginError::Denied {
            plugin: reference.to_string(),
            capability: "integrity".into(),
            message,
        };
        let trust = wasmlink_repo::Trust::load(&keys).map_err(|e| integrity(e.to_string()))?;
        let loaded = repo
            .load(reference, &trust)
            .map_err(|e| integrity(e.to_string()))?;
        self.load(&loaded.module.name, &loaded.bytes, policy)
    }

    /// Loads a plugin from bytes (binary or text format) under `policy`: checks integrity,
    /// compiles (or takes the compiled module from the cache), checks every import against the
    /// policy, and creates one instance so that a start function or `_initialize` that traps
    /// fails here rather than on the first call.
    pub fn load(&self, name: &str, bytes: &[u8], policy: Policy) -> Result<Plugin, PluginError> {
        let inner = self.prepare(name, bytes, policy)?;
        let plugin = Plugin {
            slot: Arc::new(RwLock::new(Arc::new(inner))),
        };
        let warm = plugin.instance()?;
        drop(warm);
        Ok(plugin)
    }

    fn prepare(
        &self,
        name: &str,
        bytes: &[u8],
        policy: Policy,
    ) -> Result<PluginInner, PluginError> {
        policy.validate(name)?;
        policy.check_sha256(&format!("plugin `{name}`"), bytes)?;
        let mut limits = policy.effective_limits();
        if limits.fuel.is_none() && count_fuel() {
            // Metering only: a budget no call reaches, so nothing that ran before stops now.
            limits.fuel = Some(u64::MAX / 4);
        }
        let key = EngineKey {
            stack: limits.stack,
            fuel: limits.fuel.is_some(),
            epoch: limits.timeout != Duration::MAX,
        };
        let engine = self.engine(key)?;
        let hash = sha256_hex(bytes);
        let cached = self
            .inner
            .modules
            .lock()
            .map_err(|_| poisoned())?
            .get(&(key, hash.clone()))
            .cloned();
        let module = match cached {
            Some(m) => m,
            None => {
                // Said before the work, so a slow compile is never silent under `-v`.
                let cache = self.inner.config.cache_dir.as_deref();
                tracing::debug!(
                    "plugin `{name}`: compiling {} bytes ({})",
                    bytes.len(),
                    match cache {
                        Some(dir) => format!("compiled-code cache {}", dir.display()),
                        None => "no compiled-code cache".to_string(),
                    }
                );
                let started = std::time::Instant::now();
                let m = Module::new(&engine, bytes).map_err(|e| PluginError::Load {
                    plugin: name.to_string(),
                    message: one_line(&e),
                })?;
                tracing::debug!(
                    "plugin `{name}`: compiled in {:.1} ms",
                    started.elapsed().as_secs_f64() * 1e3
                );
                self.inner
                    .modules
                    .lock()
                    .map_err(|_| poisoned())?
                    .insert((key, hash.clone()), m.clone());
                m
            }
        };
        let linker = self.linker(name, &engine, &module, &policy)?;
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| PluginError::Load {
                plugin: name.to_string(),
                message: one_line(&e),
            })?;
        let mut exports = HashMap::new();
        for export in module.exports() {
            if let ExternType::Func(ty) = export.ty() {
                exports.insert(export.name().to_string(), ty);
            }
        }
        let uses_wasi = module
            .imports()
            .any(|i| i.module() == "wasi_snapshot_preview1" || i.module() == "wasi_unstable");
        let imports_functions = module
            .imports()
            .any(|i| matches!(i.ty(), ExternType::Func(_)));
        if !uses_wasi {
            // Its stores get no WASI context; the policy's grants are still checked once here
            // (a missing directory is an error whether or not the module could use it).
            policy.wasi_builder(&format!("plugin `{name}`"), None, None)?;
        }
        let tick = self.inner.config.tick.as_nanos().max(1);
        let ticks = key.epoch.then(|| {
            u64::try_from(limits.timeout.as_nanos().div_ceil(tick))
                .unwrap_or(u64::MAX / 2)
                .clamp(1, u64::MAX / 2)
        });
        Ok(PluginInner {
            ticks,
            clock: self.inner.clock.clone(),
            manifest: Arc::new(manifest::Manifest::of_module(bytes)),
            name: name.to_string(),
            sha256: hash,
            policy,
            limits,
            engine,
            pre,
            exports,
            initialize: module.get_export_index("_initialize"),
            memory_export: module.get_export_index("memory"),
            uses_wasi,
            imports_functions,
            pool: Mutex::new(Vec::new()),
            idle: self.inner.config.idle_per_plugin,
            keepalive: self.inner.clone(),
        })
    }

    fn linker(
        &self,
        name: &str,
        engine: &Engine,
        module: &Module,
        policy: &Policy,
    ) -> Result<Linker<PluginState>, PluginError> {
        let mut linker: Linker<PluginState> = Linker::new(engine);
        let load_err = |e: wasmtime::Error| PluginError::Load {
            plugin: name.to_string(),
            message: one_line(&e),
        };
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, PluginState::wasi_mut)
            .map_err(load_err)?;
        policy.deny_ambient(&mut linker).map_err(load_err)?;
        let uses_wasi = module
            .imports()
            .any(|i| i.module() == "wasi_snapshot_preview1" || i.module() == "wasi_unstable");
        if policy.grants_network() {
            let field = if policy.capabilities.network {
                "capabilities.network"
            } else {
                "capabilities.net"
            };
            return Err(PluginError::Denied {
                plugin: name.to_string(),
                capability: field.into(),
                message: format!(
                    "the policy grants network access, but this is a core module{} and WASI \
                     preview 1 has no sockets; remove {field}",
                    if uses_wasi {
                        " using WASI preview 1"
                    } else {
                        ""
                    }
                ),
            });
        }
        if !policy.capabilities.http.is_empty() {
            return Err(PluginError::Denied {
                plugin: name.to_string(),
                capability: "capabilities.http".into(),
                message: "the policy grants outgoing HTTP, but this is a core module and only \
                          components import wasi:http; remove capabilities.http"
                    .into(),
            });
        }
        let funcs = self.inner.funcs.read().map_err(|_| poisoned())?;
        for import in module.imports() {
            let (m, n) = (import.module(), import.name());
            if m == "wasi_snapshot_preview1" || m == "wasi_unstable" {
                continue;
            }
            if !policy.allows_host_function(m, n) {
                return Err(PluginError::Denied {
                    plugin: name.to_string(),
                    capability: "capabilities.host-functions".into(),
                    message: format!(
                        "imports `{m}.{n}`, which its policy does not grant (add \"{m}.{n}\" \
                         to capabilities.host-functions)"
                    ),
                });
            }
            let Some(f) = funcs.iter().find(|f| f.module == m && f.name == n) else {
                return Err(PluginError::Denied {
                    plugin: name.to_string(),
                    capability: "capabilities.host-functions".into(),
                    message: format!("imports `{m}.{n}`, which this host does not provide"),
                });
            };
            (f.define)(&mut linker).map_err(load_err)?;
        }
        Ok(linker)
    }
}

fn poisoned() -> PluginError {
    PluginError::Load {
        plugin: "(host)".into(),
        message: "internal lock poisoned by an earlier panic".into(),
    }
}

/// A loaded plugin. Cheap to clone (clones share the module, pool and policy); `Send + Sync`.
#[derive(Clone)]
pub struct Plugin {
    slot: Arc<RwLock<Arc<PluginInner>>>,
}

impl Plugin {
    fn current(&self) -> Arc<PluginInner> {
        match self.slot.read() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// The plugin's name (the file stem, or the name given to [`PluginHost::load`]).
    pub fn name(&self) -> String {
        self.current().name.clone()
    }

    /// The sha256 of the module now behind this plugin.
    pub fn sha256(&self) -> String {
        self.current().sha256.clone()
    }

    /// What the module's `wasmlink.exports` manifest says each function takes (empty without
    /// one): for describing it and choosing how to pass data, never trusted for safety.
    pub fn manifest(&self) -> Arc<manifest::Manifest> {
        self.current().manifest.clone()
    }

    /// The policy it runs under.
    pub fn policy(&self) -> Policy {
        self.current().policy.clone()
    }

    /// Exported functions and their types, sorted by name.
    pub fn exports(&self) -> Vec<(String, FuncType)> {
        let cur = self.current();
        let mut v: Vec<(String, FuncType)> = cur
            .exports
            .iter()
            .map(|(n, t)| (n.clone(), t.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Idle instances in the pool (for tests and metrics).
    pub fn idle_instances(&self) -> usize {
        self.current().pool.lock().map_or(0, |p| p.len())
    }

    /// Checks out an instance (from the pool, or a fresh one) for a run of calls on this
    /// thread. It goes back to the pool when dropped, unless a call on it failed.
    pub fn instance(&self) -> Result<Instance, PluginError> {
        Instance::checkout(self.current())
    }

    /// Calls `function` with dynamically typed arguments on a pooled instance.
    pub fn call(
        &self,
        function: &str,
        args: &[wasmtime::Val],
    ) -> Result<Vec<wasmtime::Val>, PluginError> {
        self.instance()?.call(function, args)
    }

    /// [`Instance::call_bytes`] on a pooled instance.
    pub fn call_bytes(&self, function: &str, input: &[u8]) -> Result<Vec<u8>, PluginError> {
        self.instance()?.call_bytes(function, input)
    }

    /// [`Instance::call_str`] on a pooled instance.
    pub fn call_str(&self, function: &str, input: &str) -> Result<String, PluginError> {
        self.instance()?.call_str(function, input)
    }

    /// [`Instance::call_arrow`] on a pooled instance.
    pub fn call_arrow(
        &self,
        function: &str,
        batch: &arrow_array::RecordBatch,
    ) -> Result<arrow_array::RecordBatch, PluginError> {
        self.instance()?.call_arrow(function, batch)
    }

    /// Replaces the module behind this plugin (hot swap). The new module is checked, compiled
    /// and instantiated once before it is swapped in; on error the old one stays. Calls in
    /// flight finish on the old module; calls that start afterwards use the new one.
    pub fn swap(
        &self,
        host: &PluginHost,
        bytes: &[u8],
        policy: Option<Policy>,
    ) -> Result<(), PluginError> {
        let cur = self.current();
        let policy = policy.unwrap_or_else(|| cur.policy.clone());
        let next = Arc::new(host.prepare(&cur.name, bytes, policy)?);
        drop(Instance::checkout(next.clone())?);
        match self.slot.write() {
            Ok(mut g) => *g = next,
            Err(p) => *p.into_inner() = next,
        }
        Ok(())
    }
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let cur = self.current();
        f.debug_struct("Plugin")
            .field("name", &cur.name)
            .field("sha256", &cur.sha256)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}
