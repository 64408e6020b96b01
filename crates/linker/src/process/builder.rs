//! [`ProcessBuilder`]: how a process is set up, and its load.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use wasmlink_dylink::ModuleInfo;
use wasmtime::{AsContextMut, Engine, Linker, Store};
use wasmtime_wasi::WasiCtxBuilder;

use super::api::Process;
use super::error::LinkError;
use super::layout::Regions;
use super::load::{load_tree, load_tree_from, setup_main};
use super::state::read;
use super::state::{Bounds, Host, HostSymbols, Linkage};
use crate::resolve::SearchPath;
use wasmlink_engine::{Metering, ModuleCache, default_cache_dir, shared_engine_with};

/// Default size of the shadow stack.
pub const DEFAULT_STACK_SIZE: u32 = 1 << 20;

/// Default bound on the wasmtime instances one process's store may hold
/// ([`ProcessBuilder::max_instances`]).
pub const DEFAULT_MAX_INSTANCES: usize = 1_000_000;

/// A capability layer for a linked process, given to [`ProcessBuilder::sandbox`]. The plugin
/// host's `Policy` implements it (and refuses there what a linked process cannot enforce).
pub trait Sandbox: Send + Sync {
    /// The WASI preview 1 context: directories, environment, stdio, clocks and randomness;
    /// `args` are the builder's arguments, for a sandbox that sets none of its own.
    ///
    /// # Errors
    /// [`LinkError::Policy`], one line naming the field the process cannot honour; the load
    /// fails with it.
    fn wasi(&self, args: &[String]) -> Result<WasiCtxBuilder, LinkError>;
    /// Shadows, in the linker every library's WASI imports come from, what the sandbox denies.
    ///
    /// # Errors
    /// wasmtime's, if a definition cannot be added.
    fn restrict(&self, linker: &mut Linker<Host>) -> wasmtime::Result<()>;
    /// The most linear memory the program may have, in bytes.
    fn max_memory(&self) -> u64;
    /// A memory limit the sandbox sets explicitly: growing memory past it stops the program
    /// ([`ProcessBuilder::memory_limit`]). Default: none (growth past
    /// [`max_memory`](Self::max_memory) fails as `memory.grow` does, with -1).
    fn memory_limit(&self) -> Option<u64> {
        None
    }
    /// The wall-clock limit of the whole process ([`ProcessBuilder::timeout`]). Default: none.
    fn timeout(&self) -> Option<Duration> {
        None
    }
    /// The fuel of the whole process ([`ProcessBuilder::fuel`]). Default: unmetered.
    fn fuel(&self) -> Option<u64> {
        None
    }
}

/// How a process is set up. Build one, then [`load`](Self::load) a program.
#[derive(Clone)]
pub struct ProcessBuilder {
    search: SearchPath,
    stack_size: u32,
    bind_now: bool,
    strict: bool,
    preload: Vec<PathBuf>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    dirs: Vec<(PathBuf, String)>,
    inherit_stdio: bool,
    max_memory_pages: u32,
    sandbox: Option<Arc<dyn Sandbox>>,
    engine: Option<Engine>,
    cache_dir: Option<PathBuf>,
    link_only: bool,
    swappable: bool,
    module_cache: Option<ModuleCache>,
    max_instances: usize,
    timeout: Option<Duration>,
    fuel: Option<u64>,
    memory_limit: Option<u64>,
    wasi_setup: Vec<WasiSetup>,
}

/// A step of [`ProcessBuilder::configure_wasi`].
type WasiSetup = Arc<dyn Fn(&mut WasiCtxBuilder) + Send + Sync>;

impl Default for ProcessBuilder {
    fn default() -> Self {
        ProcessBuilder {
            search: SearchPath::new(),
            stack_size: DEFAULT_STACK_SIZE,
            bind_now: false,
            strict: false,
            preload: Vec::new(),
            args: Vec::new(),
            env: Vec::new(),
            dirs: Vec::new(),
            inherit_stdio: false,
            max_memory_pages: 65536,
            sandbox: None,
            engine: None,
            cache_dir: default_cache_dir(),
            link_only: false,
            swappable: false,
            module_cache: Some(ModuleCache::global()),
            max_instances: DEFAULT_MAX_INSTANCES,
            timeout: None,
            fuel: None,
            memory_limit: None,
            wasi_setup: Vec::new(),
        }
    }
}

impl ProcessBuilder {
    /// A builder with the default search path and no WASI capabilities.
    pub fn new() -> Self {
        Self::default()
    }
    /// Where needed libraries and `dlopen` names are looked up.
    pub fn search_path(mut self, search: SearchPath) -> Self {
        self.search = search;
        self
    }
    /// Size of the shadow stack in bytes (rounded up to 16).
    pub fn stack_size(mut self, bytes: u32) -> Self {
        self.stack_size = bytes;
        self
    }
    /// Resolve every function at load time; an undefined strong symbol fails the load.
    pub fn bind_now(mut self, yes: bool) -> Self {
        self.bind_now = yes;
        self
    }
    /// A strong symbol defined by two libraries is an error instead of first-wins.
    pub fn strict(mut self, yes: bool) -> Self {
        self.strict = yes;
        self
    }
    /// Loads `lib` right after the main program, so its definitions interpose (`LD_PRELOAD`).
    pub fn preload(mut self, lib: impl Into<PathBuf>) -> Self {
        self.preload.push(lib.into());
        self
    }
    /// Program arguments (`argv[0]` included).
    pub fn args(mut self, args: Vec<String>) -> Self {
        self.args = args;
        self
    }
    /// Sets an environment variable for the program.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }
    /// Makes host directory `host` visible to the program as `guest`.
    pub fn preopen(mut self, host: impl Into<PathBuf>, guest: impl Into<String>) -> Self {
        self.dirs.push((host.into(), guest.into()));
        self
    }
    /// Connects the program's stdin/stdout/stderr to the host's.
    pub fn inherit_stdio(mut self, yes: bool) -> Self {
        self.inherit_stdio = yes;
        self
    }
    /// Runs the program inside a capability layer (the plugin host's `Policy` is one): it
    /// supplies the WASI context (directories, environment, arguments when the builder sets
    /// none, stdio, clocks, randomness), shadows the WASI functions it denies, and caps memory.
    /// The builder's [`env`](Self::env) and [`preopen`](Self::preopen) still apply on top.
    pub fn sandbox(mut self, sandbox: Arc<dyn Sandbox>) -> Self {
        let pages = (sandbox.max_memory() / 65536).min(65536) as u32;
        self.max_memory_pages = self.max_memory_pages.min(pages.max(1));
        self.sandbox = Some(sandbox);
        self
    }

    /// Caps the linear memory (in 64 KiB pages).
    pub fn max_memory_pages(mut self, pages: u32) -> Self {
        self.max_memory_pages = pages;
        self
    }
    /// Makes every function hot-swappable: calls between libraries are bound through the
    /// callee's canonical table slot (one `call_indirect` more per call), so
    /// [`Process::rebind`] and [`Process::reload`] reach every call site, not only function
    /// pointers and lazily bound calls.
    pub fn hot_swap(mut self, yes: bool) -> Self {
        self.swappable = yes;
        self
    }
    /// Loads, binds and relocates without running constructors (what `ldd -r` needs). Start
    /// functions still run: wasm runs them at instantiation.
    pub fn link_only(mut self, yes: bool) -> Self {
        self.link_only = yes;
        self
    }
    /// Caches compiled code in `dir` (`None`: no cache, every load compiles). Default:
    /// [`default_cache_dir`].
    pub fn cache_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.cache_dir = dir;
        self
    }
    /// Uses this engine instead of the shared one for the cache directory.
    pub fn engine(mut self, engine: Engine) -> Self {
        self.engine = Some(engine);
        self
    }
    /// The in-memory cache of compiled modules (see `cache`) that loads and `dlopen`s ask
    /// before compiling or reading the on-disk cache. Default: [`ModuleCache::global`], shared
    /// by every process of the host process (entries are per engine). `None`: none, so every
    /// load compiles or reads the on-disk cache ([`cache_dir`](Self::cache_dir)).
    pub fn module_cache(mut self, cache: Option<ModuleCache>) -> Self {
        self.module_cache = cache;
        self
    }
    /// Bounds the wasmtime instances the process's store may hold (default
    /// [`DEFAULT_MAX_INSTANCES`]; wasmtime's own default is 10,000). Every loaded library is
    /// one, plus one for its generated thunks and one per WASI shim when it needs them, and an
    /// unloaded library's instance stays in the store until the process ends, so this bounds
    /// the number of `dlopen`s of a process. Past it, loading fails with
    /// [`LinkError::Exhausted`].
    pub fn max_instances(mut self, n: usize) -> Self {
        self.max_instances = n;
        self
    }

    /// Stops the program once it has run for `limit` of wall-clock time, counted from the start
    /// of the load (constructors included) to its exit, with [`LinkError::Limit`]
    /// ([`Limit::Time`](super::Limit::Time)). The process's code is compiled with epoch checks
    /// at every loop and call (up to 1.5x slower in tight loops), and a timer thread lives as
    /// long as the process. A program in a blocking host call is stopped when the call returns.
    /// `None` (the default): no limit. Overrides the sandbox's [`Sandbox::timeout`].
    pub fn timeout(mut self, limit: Option<Duration>) -> Self {
        self.timeout = limit;
        self
    }
    /// Stops the program once it has used `units` of fuel (about one per WebAssembly
    /// instruction), loading included, with [`LinkError::Limit`]
    /// ([`Limit::Fuel`](super::Limit::Fuel)). `None` (the default): unmetered. Overrides the
    /// sandbox's [`Sandbox::fuel`].
    pub fn fuel(mut self, units: Option<u64>) -> Self {
        self.fuel = units;
        self
    }
    /// Caps the process's linear memory at `bytes` (rounded down to 64 KiB pages, at least
    /// one), and stops the program with [`LinkError::Limit`]
    /// ([`Limit::Memory`](super::Limit::Memory)) when it grows its memory past that, rather
    /// than letting `memory.grow` fail. Overrides the sandbox's [`Sandbox::memory_limit`].
    pub fn memory_limit(mut self, bytes: Option<u64>) -> Self {
        self.memory_limit = bytes;
        if let Some(b) = bytes {
            let pages = (b / 65536).min(65536) as u32;
            self.max_memory_pages = self.max_memory_pages.min(pages.max(1));
        }
        self
    }

    /// Configures the WASI context further (e.g. the network: `socket_addr_check`, `allow_tcp`),
    /// after the sandbox's and the builder's own settings. Steps run in the order given.
    pub fn configure_wasi(
        mut self,
        step: impl Fn(&mut WasiCtxBuilder) + Send + Sync + 'static,
    ) -> Self {
        self.wasi_setup.push(Arc::new(step));
        self
    }

    /// The limits in force: the builder's own, else the sandbox's.
    fn effective_limits(&self) -> (Option<Duration>, Option<u64>, Option<u64>) {
        let sb = self.sandbox.as_deref();
        (
            self.timeout.or_else(|| sb.and_then(|s| s.timeout())),
            self.fuel.or_else(|| sb.and_then(|s| s.fuel())),
            self.memory_limit
                .or_else(|| sb.and_then(|s| s.memory_limit())),
        )
    }

    /// The WASI preview 1 context this builder describes: the policy's (checked for what
    /// `wasmlink run` cannot enforce), or the builder's args and stdio; then the builder's env
    /// and directories either way.
    fn wasi(&self) -> Result<WasiCtxBuilder, LinkError> {
        let mut wasi = match &self.sandbox {
            Some(sandbox) => sandbox.wasi(&self.args)?,
            None => {
                let mut wasi = WasiCtxBuilder::new();
                wasi.args(&self.args);
                if self.inherit_stdio {
                    wasi.inherit_stdio();
                }
                wasi
            }
        };
        for (k, v) in &self.env {
            wasi.env(k, v);
        }
        // Before the directories: wasmtime-wasi records the setting in each preopened
        // directory as it is added (a sandbox's directories set it themselves).
        wasi.allow_blocking_current_thread(true);
        for (host, guest) in &self.dirs {
            wasi.preopened_dir(host, guest, wasmtime_wasi::FsPerms::ReadWrite)
                .map_err(|e| LinkError::Io {
                    path: host.clone(),
                    message: format!("cannot preopen: {e}"),
                })?;
        }
        // A linked process runs synchronously: a blocking WASI call (open, stat, read of a
        // file) is done on this thread, not handed to tokio's blocking pool and waited for.
        // CPython's start-up makes about 1,600 such calls (its imports); the hand-offs cost
        // about 3,200 futex calls and a fifth of `python -c pass`'s cpu.
        wasi.allow_blocking_current_thread(true);
        for step in &self.wasi_setup {
            step(&mut wasi);
        }
        Ok(wasi)
    }

    /// The engine this builder loads on: its own, or the shared one for its cache directory.
    /// With a time or fuel limit, the shared engine that meters them (an engine given with
    /// [`engine`](Self::engine) must have been configured for them).
    pub(crate) fn engine_for_load(&self) -> Result<Engine, LinkError> {
        let (timeout, fuel, _) = self.effective_limits();
        match &self.engine {
            Some(e) => Ok(e.clone()),
            None => Ok(shared_engine_with(
                self.cache_dir.as_deref(),
                Metering {
                    fuel: fuel.is_some(),
                    epoch: timeout.is_some(),
                },
            )?),
        }
    }
    /// The WASI context, search path and module cache, for loaders above the process (plain).
    pub(crate) fn parts_for_load(
        &self,
    ) -> Result<(WasiCtxBuilder, &SearchPath, Option<&ModuleCache>), LinkError> {
        let (timeout, fuel, memory) = self.effective_limits();
        if timeout.is_some() || fuel.is_some() || memory.is_some() {
            return Err(LinkError::Policy {
                message: "time, fuel and memory limits (--timeout, --fuel, --max-memory, \
                          limits.*) are not enforced for plain modules linked by name; \
                          remove them"
                    .to_string(),
            });
        }
        Ok((self.wasi()?, &self.search, self.module_cache.as_ref()))
    }

    /// Loads `program` (a PIE main, a static main, or a shared library used as the entry) and
    /// everything it needs, binds it and runs its constructors.
    ///
    /// # Errors
    /// [`LinkError`] naming the library and symbol: a library not found (with what was
    /// searched), an unresolved data symbol, a type mismatch, a trap in a constructor.
    pub fn load(self, program: &Path) -> Result<Process, LinkError> {
        let started = std::time::Instant::now();
        let engine = self.engine_for_load()?;
        let (timeout, fuel, memory_limit) = self.effective_limits();
        let mut wasi = self.wasi()?;
        let mut wasi_linker: Linker<Host> = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut wasi_linker, |h: &mut Host| &mut h.wasi)
            .map_err(|e| LinkError::runtime("wasmlink", "wasi setup", e))?;
        if let Some(sandbox) = &self.sandbox {
            sandbox
                .restrict(&mut wasi_linker)
                .map_err(|e| LinkError::runtime("wasmlink", "wasi setup", e))?;
        }

        let setup = started.elapsed();
        let read_started = std::time::Instant::now();
        let bytes: Arc<[u8]> = read(program)?.into();
        let info = ModuleInfo::parse(&bytes).map_err(|e| LinkError::BadModule {
            path: program.to_path_buf(),
            message: e.to_string(),
        })?;
        let stats = super::stats::Stats {
            setup,
            read: read_started.elapsed(),
            files: 1,
            bytes: bytes.len() as u64,
            ..Default::default()
        };
        let host = Host {
            wasi: wasi.build_p1(),
            handles: Default::default(),
            dl: Linkage {
                host_symbols: HostSymbols {
                    overrides: super::libdl::is_dl_symbol,
                    define: super::libdl::host_function,
                },
                engine: engine.clone(),
                swappable: self.swappable,
                run_constructors: !self.link_only,
                wasi_linker: Arc::new(wasi_linker),
                search: self.search.clone(),
                bind_now: self.bind_now,
                strict: self.strict,
                memory: None,
                table: None,
                stack_pointer: None,
                bounds: Bounds::default(),
                libs: Vec::new(),
                parked: HashMap::new(),
                parked_order: std::collections::VecDeque::new(),
                parked_bytes: 0,
                incarnations: 0,
                starting: true,
                generation: 0,
                loading: Vec::new(),
                opening: 0,
                global_scope: Vec::new(),
                slots: HashMap::new(),
                undefined_slots: HashMap::new(),
                free_slots: Vec::new(),
                got_mem: HashMap::new(),
                got_func: HashMap::new(),
                slot_names: HashMap::new(),
                tags: HashMap::new(),
                regions: Regions::default(),
                dlerror: None,
                dlerror_buf: 0,
                dladdr_buf: 0,
                module_cache: self.module_cache.clone(),
                instances: 0,
                max_instances: self.max_instances,
                stats: std::cell::Cell::new(stats),
            },
            atexit: Vec::new(),
            args: self.args.clone(),
            limits: {
                let b = wasmtime::StoreLimitsBuilder::new()
                    // Our own count (`Linkage::instances`) refuses first, with a clear error;
                    // the margin covers instances wasmtime makes for host-created memories and
                    // tables.
                    .instances(self.max_instances.saturating_add(16));
                match memory_limit {
                    // Growth past the limit stops the program (`limits::classify` knows the
                    // error), rather than `memory.grow` returning -1.
                    Some(bytes) => b
                        .memory_size(usize::try_from(bytes).unwrap_or(usize::MAX))
                        .trap_on_grow_failure(true),
                    None => b,
                }
                .build()
            },
        };
        let mut store = Store::new(&engine, host);
        store.limiter(|h| &mut h.limits);
        if let Some(fuel) = fuel {
            store
                .set_fuel(fuel)
                .map_err(|e| LinkError::runtime("wasmlink", "fuel", e))?;
        }
        if let Some(limit) = timeout {
            super::limits::arm_timeout(&mut store, &engine, limit)
                .map_err(|e| LinkError::runtime("wasmlink", "timeout", wasmtime::Error::new(e)))?;
        }
        let main = setup_main(
            &mut store,
            program,
            bytes,
            info,
            self.stack_size,
            self.max_memory_pages,
        )?;
        let mut process = Process { store, main };
        for lib in &self.preload {
            let id = load_tree(process.store.as_context_mut(), lib, None, true, true)?;
            process.store.data_mut().dl.libs[id]
                .as_mut()
                .unwrap()
                .refcount += 1;
        }
        let id = load_tree_from(process.store.as_context_mut(), main)?;
        debug_assert_eq!(id, main);
        process.store.data_mut().dl.starting = false;
        let stats = &process.store.data().dl.stats;
        let mut s = stats.get();
        s.total = started.elapsed();
        stats.set(s);
        if super::stats::enabled() {
            s.report_load();
        }
        Ok(process)
    }
}
