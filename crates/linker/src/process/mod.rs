//! A linked process: what ld.so builds for a native program.
//!
//! One wasmtime [`Store`] holds one linear memory, one function table and one
//! `__stack_pointer`, shared by every module loaded into it: the main program and its shared
//! libraries (`dylink.0`), loaded at start or later by `dlopen`.
//!
//! Loading a program ([`ProcessBuilder::load`]):
//!
//! 1. **Find** the needed libraries breadth first on the [`SearchPath`](crate::resolve::SearchPath),
//!    each once (duplicates and cycles end there); `--preload` libraries come right after the
//!    main program.
//! 2. **Lay out** each new library: a data region of its MEM_INFO size and alignment
//!    (`__memory_base`, zero-filled) and a table region (`__table_base`), both known before any
//!    code runs (see [`layout`]).
//! 3. **Bind** every import, in load order, first definition wins (`strict` makes a second
//!    strong definition an error). Data (`GOT.mem`) resolves to the definer's relocated address;
//!    `GOT.func.X` to X's one canonical table slot, so a function pointer compares equal
//!    everywhere; a function import binds directly to the definition if it is already
//!    instantiated, otherwise through a generated `call_indirect` thunk ([`thunk`]). An undefined
//!    function traps at its first call with "symbol lookup error: undefined symbol: X (LIB)", or
//!    fails the load with `bind_now`; weak undefined data is 0 and a weak undefined function
//!    pointer is NULL.
//! 4. **Instantiate** dependencies first, run `__wasm_apply_data_relocs`, then the constructors
//!    (`__wasm_call_ctors`, or `_initialize`) in dependency order.
//!
//! `dlopen`, `dlsym`, `dlclose`, `dlerror` and `dladdr` are supplied to the modules as `env`
//! imports (see [`libdl`]) and callable from Rust ([`Process::dlopen`], ...).

mod error;
pub mod layout;
mod libdl;
pub mod thunk;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmlink_dylink::{ExportClass, ImportClass, ModuleInfo, ModuleKind};
use wasmtime::{
    AsContextMut, Engine, Extern, ExternType, Func, FuncType, Global, GlobalType, Instance, Linker,
    Memory, MemoryType, Module, Mutability, Ref, RefType, Store, StoreContextMut, Table, TableType,
    Tag, TagType, Val, ValType,
};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::WasiP1Ctx;

pub use wasmlink_engine::{
    CacheStats, DEFAULT_MODULE_CACHE_BYTES, ModuleCache, PROFILE_ENV, default_cache_dir,
    shared_engine,
};
/// The in-memory cache of compiled modules (now in `wasmlink-engine`).
pub use wasmlink_engine::cache;
pub use error::LinkError;
pub use libdl::{
    RTLD_DEFAULT, RTLD_GLOBAL, RTLD_LAZY, RTLD_LOCAL, RTLD_NEXT, RTLD_NODELETE, RTLD_NOLOAD,
    RTLD_NOW,
};

use crate::resolve::SearchPath;
use layout::{GLOBAL_BASE, PAGE, Regions, align_up};

/// Index of a loaded library in a process; `dlopen` handles are `id + 1`.
pub type LibId = usize;

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
    /// One line naming the field the process cannot honour; the load fails with
    /// [`LinkError::Policy`].
    fn wasi(&self, args: &[String]) -> Result<WasiCtxBuilder, String>;
    /// Shadows, in the linker every library's WASI imports come from, what the sandbox denies.
    ///
    /// # Errors
    /// wasmtime's, if a definition cannot be added.
    fn restrict(&self, linker: &mut Linker<Host>) -> wasmtime::Result<()>;
    /// The most linear memory the program may have, in bytes.
    fn max_memory(&self) -> u64;
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
}

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
    /// The in-memory cache of compiled modules (see [`cache`]) that loads and `dlopen`s ask
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

    /// The WASI preview 1 context this builder describes: the policy's (checked for what
    /// `wasmlink run` cannot enforce), or the builder's args and stdio; then the builder's env
    /// and directories either way.
    fn wasi(&self) -> Result<WasiCtxBuilder, LinkError> {
        let mut wasi = match &self.sandbox {
            Some(sandbox) => sandbox
                .wasi(&self.args)
                .map_err(|message| LinkError::Policy { message })?,
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
        for (host, guest) in &self.dirs {
            wasi.preopened_dir(host, guest, wasmtime_wasi::FsPerms::ReadWrite)
                .map_err(|e| LinkError::Io {
                    path: host.clone(),
                    message: format!("cannot preopen: {e}"),
                })?;
        }
        Ok(wasi)
    }

    /// The engine this builder loads on: its own, or the shared one for its cache directory.
    pub(crate) fn engine_for_load(&self) -> Result<Engine, LinkError> {
        match &self.engine {
            Some(e) => Ok(e.clone()),
            None => Ok(shared_engine(self.cache_dir.as_deref())?),
        }
    }
    /// The WASI context, search path and module cache, for loaders above the process (plain).
    pub(crate) fn parts_for_load(
        &self,
    ) -> Result<(WasiCtxBuilder, &SearchPath, Option<&ModuleCache>), LinkError> {
        Ok((self.wasi()?, &self.search, self.module_cache.as_ref()))
    }

    /// Loads `program` (a PIE main, a static main, or a shared library used as the entry) and
    /// everything it needs, binds it and runs its constructors.
    ///
    /// # Errors
    /// [`LinkError`] naming the library and symbol: a library not found (with what was
    /// searched), an unresolved data symbol, a type mismatch, a trap in a constructor.
    pub fn load(self, program: &Path) -> Result<Process, LinkError> {
        let engine = self.engine_for_load()?;
        let mut wasi = self.wasi()?;
        let mut wasi_linker: Linker<Host> = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut wasi_linker, |h: &mut Host| &mut h.wasi)
            .map_err(|e| LinkError::runtime("wasmlink", "wasi setup", e))?;
        if let Some(sandbox) = &self.sandbox {
            sandbox
                .restrict(&mut wasi_linker)
                .map_err(|e| LinkError::runtime("wasmlink", "wasi setup", e))?;
        }

        let bytes: Arc<[u8]> = read(program)?.into();
        let info = ModuleInfo::parse(&bytes).map_err(|e| LinkError::BadModule {
            path: program.to_path_buf(),
            message: e.to_string(),
        })?;
        let host = Host {
            wasi: wasi.build_p1(),
            dl: Linkage {
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
            },
            atexit: Vec::new(),
            args: self.args.clone(),
            limits: wasmtime::StoreLimitsBuilder::new()
                // Our own count (`Linkage::instances`) refuses first, with a clear error; the
                // margin covers instances wasmtime makes for host-created memories and tables.
                .instances(self.max_instances.saturating_add(16))
                .build(),
        };
        let mut store = Store::new(&engine, host);
        store.limiter(|h| &mut h.limits);
        let main = setup_main(&mut store, program, bytes, info, &self)?;
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
        Ok(process)
    }
}

fn read(path: &Path) -> Result<Vec<u8>, LinkError> {
    std::fs::read(path).map_err(|e| LinkError::Io {
        path: path.to_path_buf(),
        message: e.to_string().to_lowercase(),
    })
}

/// Store data of a process.
pub struct Host {
    wasi: WasiP1Ctx,
    dl: Linkage,
    /// `__cxa_atexit` registrations: (function slot, argument, dso handle), run in reverse.
    atexit: Vec<(u32, u32, u32)>,
    /// The program's arguments, for `main(argc, argv)`.
    args: Vec<String>,
    /// The store's resource limits (its instance count: see [`ProcessBuilder::max_instances`]).
    limits: wasmtime::StoreLimits,
}

#[derive(Default, Clone, Copy, Debug)]
struct Bounds {
    stack_low: u32,
    stack_high: u32,
    heap_base: u32,
    heap_end: u32,
}

/// A definition a symbol resolves to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Def {
    /// Function `index` of library `lib`.
    Func { lib: LibId, index: u32 },
    /// Data at an absolute address.
    Data { lib: LibId, addr: u32 },
    /// Thread-local data at `offset` from the library's `__tls_base`.
    Tls { lib: LibId, offset: u32 },
    /// An exported tag.
    Tag { lib: LibId },
}

impl Def {
    fn lib(self) -> LibId {
        match self {
            Def::Func { lib, .. }
            | Def::Data { lib, .. }
            | Def::Tls { lib, .. }
            | Def::Tag { lib } => lib,
        }
    }
}

/// What a canonical table slot stands for: one function definition, or an undefined name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum SlotKey {
    /// Function `index` of library `lib`.
    Def(LibId, u32),
    /// A function no library defines (yet): its slot traps until one does.
    Undefined(String),
}

impl SlotKey {
    fn of(sym: &str, def: Option<Def>) -> SlotKey {
        match def {
            Some(Def::Func { lib, index }) => SlotKey::Def(lib, index),
            _ => SlotKey::Undefined(sym.to_string()),
        }
    }
}

/// One loaded module.
struct Library {
    name: String,
    path: PathBuf,
    info: Arc<ModuleInfo>,
    module: Module,
    memory_base: u32,
    memory_len: u32,
    table_base: u32,
    table_len: u32,
    instance: Option<Instance>,
    refcount: u32,
    /// Libraries this one needs (direct), by id.
    deps: Vec<LibId>,
    /// Its local scope: itself and its dependencies, transitively, in load order.
    local_scope: Vec<LibId>,
    nodelete: bool,
    /// Defined symbols by name.
    defs: HashMap<String, Def>,
    /// Whether the library's data and table regions belong to the linker's allocators.
    owns_regions: bool,
}

impl Library {
    /// The functions it defines: `(name, function index)`.
    fn functions(&self) -> Vec<(String, u32)> {
        self.defs
            .iter()
            .filter_map(|(n, d)| match d {
                Def::Func { index, .. } => Some((n.clone(), *index)),
                _ => None,
            })
            .collect()
    }
}

struct Linkage {
    engine: Engine,
    /// Bind cross-library calls through table slots (hot swap).
    swappable: bool,
    /// False for link-only loads (`ldd -r`): constructors are not run.
    run_constructors: bool,
    wasi_linker: Arc<Linker<Host>>,
    search: SearchPath,
    bind_now: bool,
    strict: bool,
    memory: Option<Memory>,
    table: Option<Table>,
    stack_pointer: Option<Global>,
    bounds: Bounds,
    /// Loaded libraries; `None` after a full `dlclose`.
    libs: Vec<Option<Library>>,
    /// Libraries whose symbols every lookup sees, in load order.
    global_scope: Vec<LibId>,
    /// Canonical table slot of each function definition (and of each undefined function name).
    slots: HashMap<SlotKey, u32>,
    /// Canonical slots that hold an "undefined symbol" trap, and which library first needed them.
    undefined_slots: HashMap<String, String>,
    free_slots: Vec<u32>,
    /// `GOT.mem` globals by (symbol, address).
    got_mem: HashMap<(String, u32), Global>,
    /// `GOT.func` globals by the slot's key.
    got_func: HashMap<SlotKey, Global>,
    /// The symbol name each canonical slot was made for (for `dladdr`).
    slot_names: HashMap<u32, String>,
    tags: HashMap<String, Tag>,
    regions: Regions,
    dlerror: Option<String>,
    dlerror_buf: u32,
    /// Buffer for the strings `dladdr` returns (allocated on first use).
    dladdr_buf: u32,
    /// The in-memory cache of compiled modules, if any.
    module_cache: Option<ModuleCache>,
    /// Instances made in the store so far (libraries, thunk modules, WASI shims).
    instances: usize,
    /// The bound on `instances`.
    max_instances: usize,
}

impl Linkage {
    fn lib(&self, id: LibId) -> &Library {
        self.libs[id]
            .as_ref()
            .expect("library id refers to a loaded library")
    }

    /// Looks `name` up for library `from`: the global scope in load order, then `from`'s local
    /// scope (its own dependencies, for RTLD_LOCAL libraries).
    fn lookup(&self, name: &str, from: Option<LibId>) -> Option<Def> {
        let local = from
            .map(|f| self.lib(f).local_scope.as_slice())
            .unwrap_or(&[]);
        let scope = self.global_scope.iter().chain(local.iter()).copied();
        let def = scope
            .clone()
            .filter_map(|id| self.libs[id].as_ref())
            .find_map(|l| l.defs.get(name).copied());
        let requester = from.map_or("RTLD_DEFAULT", |f| self.lib(f).name.as_str());
        self.trace_symbol(name, requester, scope, def);
        def
    }

    /// `WASMLINK_DEBUG=symbols`: one line per lookup, at the `wasmlink::symbols` target, like
    /// `LD_DEBUG=symbols`: the symbol, who asked, and where it was found or what was searched.
    fn trace_symbol(
        &self,
        name: &str,
        requester: &str,
        scope: impl Iterator<Item = LibId>,
        def: Option<Def>,
    ) {
        if !tracing_symbols() {
            return;
        }
        match def {
            Some(d) => tracing::debug!(
                target: "wasmlink::symbols",
                "symbol={name}; lookup by {requester}: found in {}",
                self.lib(d.lib()).name
            ),
            None => {
                let mut searched: Vec<&str> = Vec::new();
                for id in scope {
                    if let Some(l) = self.libs[id].as_ref() {
                        if !searched.contains(&l.name.as_str()) {
                            searched.push(&l.name);
                        }
                    }
                }
                tracing::debug!(
                    target: "wasmlink::symbols",
                    "symbol={name}; lookup by {requester}: not found (searched {})",
                    searched.join(", ")
                );
            }
        }
    }

    fn lib_name(&self, id: LibId) -> String {
        self.lib(id).name.clone()
    }
}

/// Whether `WASMLINK_DEBUG=symbols` (the `wasmlink::symbols` target) is on.
fn tracing_symbols() -> bool {
    tracing::enabled!(target: "wasmlink::symbols", tracing::Level::DEBUG)
}

/// A handle to a running linked process.
pub struct Process {
    store: Store<Host>,
    main: LibId,
}

/// What `dlsym` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Symbol {
    /// A function: its canonical table slot (what a C function pointer holds).
    Function(u32),
    /// Data: its address in linear memory.
    Data(u32),
}

impl Symbol {
    /// The value a C `void *` would hold.
    pub fn address(self) -> u32 {
        match self {
            Symbol::Function(a) | Symbol::Data(a) => a,
        }
    }
}

/// A library of a process, as [`Process::libraries`] lists it.
#[derive(Debug, Clone)]
pub struct LibraryInfo {
    /// Name (as needed, or the file name).
    pub name: String,
    /// Where it was loaded from.
    pub path: PathBuf,
    /// Start of its data region.
    pub memory_base: u32,
    /// Size of its data region.
    pub memory_size: u32,
    /// First slot of its table region.
    pub table_base: u32,
    /// Open count.
    pub refcount: u32,
}

impl Process {
    /// The store, for calls the API does not wrap.
    pub fn store_mut(&mut self) -> &mut Store<Host> {
        &mut self.store
    }

    /// The process's linear memory.
    pub fn memory(&self) -> Memory {
        self.store
            .data()
            .dl
            .memory
            .expect("a loaded process has a memory")
    }

    /// The process's function table.
    pub fn table(&self) -> Table {
        self.store
            .data()
            .dl
            .table
            .expect("a loaded process has a table")
    }

    /// Loaded libraries, main program first.
    pub fn libraries(&self) -> Vec<LibraryInfo> {
        self.store
            .data()
            .dl
            .libs
            .iter()
            .flatten()
            .map(|l| LibraryInfo {
                name: l.name.clone(),
                path: l.path.clone(),
                memory_base: l.memory_base,
                memory_size: l.memory_len,
                table_base: l.table_base,
                refcount: l.refcount,
            })
            .collect()
    }

    /// Calls the main program's entry point: `_start`, or `main`/`__main_argc_argv` with the
    /// builder's arguments, and returns its exit status. Runs `atexit` handlers afterwards.
    ///
    /// # Errors
    /// A trap in the program, as [`LinkError::Runtime`].
    pub fn run_main(&mut self) -> Result<i32, LinkError> {
        let cx = self.store.as_context_mut();
        let status = libdl::run_entry(cx, self.main);
        let finish = libdl::run_atexit(self.store.as_context_mut(), None);
        let status = match status {
            Err(LinkError::Exit(code)) => Ok(code),
            other => other,
        }?;
        finish?;
        Ok(status)
    }

    /// Looks `symbol` up in the global scope and calls it.
    ///
    /// # Errors
    /// [`LinkError::NoSuchSymbol`] if it is not a function; [`LinkError::Runtime`] on a trap.
    pub fn call(&mut self, symbol: &str, args: &[Val]) -> Result<Vec<Val>, LinkError> {
        let f = self.func(symbol)?;
        let n = f.ty(&self.store).results().len();
        let mut results = vec![Val::I32(0); n];
        f.call(&mut self.store, args, &mut results)
            .map_err(|e| LinkError::runtime(symbol, "call", e))?;
        Ok(results)
    }

    /// The function `symbol` resolves to in the global scope.
    ///
    /// # Errors
    /// [`LinkError::NoSuchSymbol`] if no loaded library defines it as a function.
    pub fn func(&mut self, symbol: &str) -> Result<Func, LinkError> {
        let dl = &self.store.data().dl;
        let Some(Def::Func { lib, .. }) = dl.lookup(symbol, Some(self.main)) else {
            return Err(LinkError::NoSuchSymbol {
                symbol: symbol.to_string(),
                library: dl.lib_name(self.main),
            });
        };
        let inst = dl
            .lib(lib)
            .instance
            .expect("defining library is instantiated");
        inst.get_func(&mut self.store, symbol)
            .ok_or_else(|| LinkError::NoSuchSymbol {
                symbol: symbol.to_string(),
                library: self.store.data().dl.lib_name(lib),
            })
    }

    /// Opens a library as `dlopen` does; returns its handle.
    ///
    /// # Errors
    /// As `dlopen` would report through `dlerror`.
    pub fn dlopen(&mut self, name: &str, flags: i32) -> Result<u32, LinkError> {
        libdl::open(self.store.as_context_mut(), name, flags, None)
    }

    /// Looks a symbol up as `dlsym` does (`handle` 0 is `RTLD_DEFAULT`).
    ///
    /// # Errors
    /// [`LinkError::BadHandle`] or [`LinkError::NoSuchSymbol`].
    pub fn dlsym(&mut self, handle: u32, name: &str) -> Result<Symbol, LinkError> {
        libdl::lookup_sym(self.store.as_context_mut(), handle, name, None)
    }

    /// Closes a handle as `dlclose` does; at count 0 the library is unloaded.
    ///
    /// # Errors
    /// [`LinkError::BadHandle`] for a handle that is not open.
    pub fn dlclose(&mut self, handle: u32) -> Result<(), LinkError> {
        libdl::close(self.store.as_context_mut(), handle)
    }

    /// Loads a new build of the loaded library `name` from `path` and rebinds each function it
    /// exports that the old build defined (with the same type) to the new code. Returns the
    /// names rebound. The old build's data stays where it was (the new build has its own,
    /// initialised by its constructors); its code stays in the store.
    ///
    /// Every function pointer sees the new code; cross-library calls do too when the process
    /// was built with [`ProcessBuilder::hot_swap`].
    ///
    /// # Errors
    /// [`LinkError::NoSuchSymbol`] if `name` is not loaded; load errors of the new build.
    pub fn reload(&mut self, name: &str, path: &Path) -> Result<Vec<String>, LinkError> {
        let old = {
            let dl = &self.store.data().dl;
            dl.libs
                .iter()
                .position(|l| l.as_ref().is_some_and(|l| l.name == name))
        }
        .ok_or_else(|| LinkError::NoSuchSymbol {
            symbol: name.to_string(),
            library: "reload".to_string(),
        })?;
        let bytes = read(path)?;
        let info = Arc::new(ModuleInfo::parse(&bytes).map_err(|e| LinkError::BadModule {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?);
        let generation = self.store.data().dl.libs.len();
        let new_name = format!("{name}#{generation}");
        let new = add_library(
            self.store.as_context_mut(),
            new_name,
            crate::resolve::Found {
                path: path.to_path_buf(),
                info,
                bytes: Some(bytes.into()),
            },
        )?;
        // The new build resolves its own imports against the process, but it is not in any
        // scope: callers keep finding the old definitions, whose slots now hold the new code.
        load_tree_from(self.store.as_context_mut(), new)?;
        let inst = self
            .store
            .data()
            .dl
            .lib(new)
            .instance
            .expect("instantiated");
        let old_funcs = self.store.data().dl.lib(old).functions();
        let mut rebound = Vec::new();
        for (f, _) in old_funcs {
            let Some(func) = inst.get_func(&mut self.store, &f) else {
                continue;
            };
            if self.store.data().dl.lookup(&f, None).map(Def::lib) != Some(old) {
                continue;
            }
            self.rebind(&f, func)?;
            rebound.push(f);
        }
        rebound.sort();
        Ok(rebound)
    }

    /// Replaces the function behind `symbol`'s canonical table slot: every function pointer to
    /// it and every call bound through a thunk now reaches `new`.
    ///
    /// # Errors
    /// [`LinkError::NoSuchSymbol`] if the symbol has no slot; [`LinkError::TypeMismatch`] if
    /// `new` has another type.
    pub fn rebind(&mut self, symbol: &str, new: Func) -> Result<(), LinkError> {
        let slot = libdl::func_slot(self.store.as_context_mut(), symbol, None)?;
        let table = self.table();
        let old = table.get(&mut self.store, u64::from(slot));
        if let Some(Ref::Func(Some(old))) = old {
            let (a, b) = (old.ty(&self.store), new.ty(&self.store));
            if !FuncType::eq(&a, &b) {
                return Err(LinkError::TypeMismatch {
                    symbol: symbol.to_string(),
                    library: "rebind".to_string(),
                    expected: format!("{a}"),
                    definer: "new definition".to_string(),
                    actual: format!("{b}"),
                });
            }
        }
        table
            .set(&mut self.store, u64::from(slot), Ref::Func(Some(new)))
            .map_err(|e| LinkError::runtime(symbol, "rebind", e))
    }

    /// Reserves `size` bytes of linear memory owned by the linker (e.g. to pass a string to a
    /// function under test).
    ///
    /// # Errors
    /// [`LinkError::Exhausted`] when memory cannot grow.
    pub fn alloc(&mut self, size: u32, align: u32) -> Result<u32, LinkError> {
        alloc_region(
            self.store.as_context_mut(),
            "host",
            u64::from(size),
            u64::from(align.max(1)),
        )
    }

    /// Reads `len` bytes at `addr`.
    ///
    /// # Errors
    /// [`LinkError::Runtime`] if the range is out of bounds.
    pub fn read(&self, addr: u32, len: usize) -> Result<Vec<u8>, LinkError> {
        let mut buf = vec![0; len];
        self.memory()
            .read(&self.store, addr as usize, &mut buf)
            .map_err(|e| LinkError::runtime("memory", "read", e.into()))?;
        Ok(buf)
    }

    /// Writes `bytes` at `addr`.
    ///
    /// # Errors
    /// [`LinkError::Runtime`] if the range is out of bounds.
    pub fn write(&mut self, addr: u32, bytes: &[u8]) -> Result<(), LinkError> {
        let m = self.memory();
        m.write(&mut self.store, addr as usize, bytes)
            .map_err(|e| LinkError::runtime("memory", "write", e.into()))
    }

    /// Reads a NUL-terminated string at `addr` (at most `max` bytes).
    ///
    /// # Errors
    /// As [`read`](Self::read).
    pub fn read_cstr(&self, addr: u32, max: usize) -> Result<String, LinkError> {
        libdl::read_cstr(self.memory().data(&self.store), addr, max).ok_or_else(|| {
            LinkError::runtime(
                "memory",
                "read",
                wasmtime::format_err!("string at {addr:#x} out of bounds"),
            )
        })
    }

    /// Symbols that no loaded library (nor the linker) defines, per library:
    /// `(library, symbol, weak)`, and imports from modules that are not libraries
    /// (`module.field`). What `ldd -r` prints.
    pub fn unresolved(&self) -> Vec<(String, String, bool)> {
        let dl = &self.store.data().dl;
        let mut out = Vec::new();
        for (id, l) in dl.libs.iter().enumerate() {
            let Some(l) = l else { continue };
            for i in &l.info.imports {
                if let ImportClass::Module(what) = &i.class {
                    out.push((l.name.clone(), what.clone(), false));
                    continue;
                }
                let Some(sym) = i.class.symbol() else {
                    continue;
                };
                let defined = dl.lookup(sym, Some(id)).is_some()
                    || libdl::is_host_symbol(sym)
                    || linker_symbol(&dl.bounds, sym).is_some();
                if !defined {
                    out.push((l.name.clone(), sym.to_string(), i.is_weak()));
                }
            }
        }
        out
    }
}

/// Grows the memory (or reuses a freed range) for a region of `size` bytes.
fn alloc_region(
    mut cx: StoreContextMut<'_, Host>,
    who: &str,
    size: u64,
    align: u64,
) -> Result<u32, LinkError> {
    if let Some(at) = cx.data_mut().dl.regions.take(size.max(1), align) {
        let memory = cx.data().dl.memory.expect("memory");
        let data = memory.data_mut(&mut cx);
        data[at as usize..(at + size) as usize].fill(0);
        return u32::try_from(at).map_err(|_| exhausted(who, "address beyond 4 GiB"));
    }
    let memory = cx.data().dl.memory.expect("memory");
    let cur = memory.data_size(&cx) as u64;
    let start = align_up(cur, align).ok_or_else(|| exhausted(who, "alignment overflow"))?;
    let end = start
        .checked_add(size)
        .ok_or_else(|| exhausted(who, "size overflow"))?;
    let pages = (end - cur).div_ceil(PAGE);
    if pages > 0 {
        memory
            .grow(&mut cx, pages)
            .map_err(|e| exhausted(who, &format!("cannot grow by {pages} pages: {e}")))?;
    }
    let new_end = memory.data_size(&cx) as u64;
    cx.data_mut().dl.regions.put(cur, start - cur);
    cx.data_mut().dl.regions.put(end, new_end - end);
    u32::try_from(start).map_err(|_| exhausted(who, "address beyond 4 GiB"))
}

fn exhausted(who: &str, message: &str) -> LinkError {
    LinkError::Exhausted {
        library: who.to_string(),
        what: "linear memory",
        message: message.to_string(),
    }
}

/// Takes `n` consecutive table slots aligned to `align`, growing the table.
fn alloc_slots(
    mut cx: StoreContextMut<'_, Host>,
    who: &str,
    n: u32,
    align: u64,
) -> Result<u32, LinkError> {
    let table = cx.data().dl.table.expect("table");
    let cur = table.size(&cx);
    let start = align_up(cur, align.max(1)).unwrap_or(cur);
    let grow = start - cur + u64::from(n);
    if grow > 0 {
        table
            .grow(&mut cx, grow, Ref::Func(None))
            .map_err(|e| LinkError::Exhausted {
                library: who.to_string(),
                what: "table slots",
                message: e.to_string(),
            })?;
    }
    for s in cur..start {
        cx.data_mut().dl.free_slots.push(s as u32);
    }
    Ok(start as u32)
}

/// Sets up the memory, table and stack from the main program and registers it as library 0.
fn setup_main(
    store: &mut Store<Host>,
    path: &Path,
    bytes: Arc<[u8]>,
    info: ModuleInfo,
    opts: &ProcessBuilder,
) -> Result<LibId, LinkError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let module = compile(
        &store.data().dl.engine,
        store.data().dl.module_cache.as_ref(),
        path,
        &bytes,
    )?;
    let info = Arc::new(info);
    if info.kind == ModuleKind::StaticProgram
        || (info.kind == ModuleKind::Plain && exports_memory(&info))
    {
        return libdl::setup_static_main(store.as_context_mut(), path, name, module, info);
    }
    if !info.is_dynamic() {
        return Err(LinkError::BadModule {
            path: path.to_path_buf(),
            message: "not a dynamic module (no dylink.0 section) and not a static program exporting its memory".to_string(),
        });
    }
    let mi = info.dylink.as_ref().map(|d| d.mem_info).unwrap_or_default();
    // Layout: null guard, main data, stack, heap. Libraries come after, by growth.
    let data_base =
        align_up(u64::from(GLOBAL_BASE), mi.memory_align()).unwrap_or(u64::from(GLOBAL_BASE));
    let stack_low = align_up(data_base + u64::from(mi.memory_size), 16).unwrap_or(u64::MAX);
    let stack_high = align_up(stack_low + u64::from(opts.stack_size), 16).unwrap_or(u64::MAX);
    if stack_high > u64::from(u32::MAX) {
        return Err(exhausted(&name, "main data and stack exceed 4 GiB"));
    }
    let pages = stack_high.div_ceil(PAGE).max(1);
    let max = opts.max_memory_pages.max(pages as u32);
    let memory = Memory::new(&mut *store, MemoryType::new(pages as u32, Some(max)))
        .map_err(|e| exhausted(&name, &e.to_string()))?;
    let table = Table::new(
        &mut *store,
        TableType::new(RefType::FUNCREF, 1, None),
        Ref::Func(None),
    )
    .map_err(|e| LinkError::runtime(&name, "table", e))?;
    let sp = Global::new(
        &mut *store,
        GlobalType::new(ValType::I32, Mutability::Var),
        Val::I32(stack_high as i32),
    )
    .map_err(|e| LinkError::runtime(&name, "stack", e))?;
    {
        let dl = &mut store.data_mut().dl;
        dl.memory = Some(memory);
        dl.table = Some(table);
        dl.stack_pointer = Some(sp);
        dl.bounds = Bounds {
            stack_low: stack_low as u32,
            stack_high: stack_high as u32,
            heap_base: stack_high as u32,
            heap_end: (pages * PAGE).min(u64::from(u32::MAX)) as u32,
        };
    }
    let table_base = alloc_slots(
        store.as_context_mut(),
        &name,
        mi.table_size,
        mi.table_align(),
    )?;
    let id = register(
        store.as_context_mut(),
        name,
        path.to_path_buf(),
        info,
        module,
        data_base as u32,
        table_base,
        false,
    )?;
    store.data_mut().dl.global_scope.push(id);
    libdl::init_dlerror_buf(store.as_context_mut())?;
    Ok(id)
}

fn exports_memory(info: &ModuleInfo) -> bool {
    info.exports.iter().any(|e| e.class == ExportClass::Memory)
}

/// Compiles `bytes` (read from `path`), or takes the module from the in-memory cache.
fn compile(
    engine: &Engine,
    cache: Option<&ModuleCache>,
    path: &Path,
    bytes: &[u8],
) -> Result<Module, LinkError> {
    let compile = || {
        Module::new(engine, bytes).map_err(|e| LinkError::BadModule {
            path: path.to_path_buf(),
            message: format!("{e:#}"),
        })
    };
    match cache {
        Some(c) => c.get_or_compile(engine, bytes, compile),
        None => compile(),
    }
}

/// Compiles a module the linker generated (thunks, WASI shims), through the cache.
fn compile_generated(
    cx: &StoreContextMut<'_, Host>,
    who: &str,
    what: &str,
    bytes: &[u8],
) -> Result<Module, LinkError> {
    let dl = &cx.data().dl;
    let compile = || Module::new(&dl.engine, bytes).map_err(|e| LinkError::runtime(who, what, e));
    match &dl.module_cache {
        Some(c) => c.get_or_compile(&dl.engine, bytes, compile),
        None => compile(),
    }
}

/// Instantiates `module` for `who`, within the process's instance bound.
pub(crate) fn new_instance(
    mut cx: StoreContextMut<'_, Host>,
    who: &str,
    what: &str,
    module: &Module,
    imports: &[Extern],
) -> Result<Instance, LinkError> {
    let dl = &cx.data().dl;
    if dl.instances >= dl.max_instances {
        return Err(LinkError::Exhausted {
            library: who.to_string(),
            what: "instances",
            message: format!(
                "the process already holds {} wasmtime instances, its limit (unloaded libraries keep theirs until the process ends; see ProcessBuilder::max_instances)",
                dl.instances
            ),
        });
    }
    let i = Instance::new(cx.as_context_mut(), module, imports)
        .map_err(|e| LinkError::runtime(who, what, e))?;
    cx.data_mut().dl.instances += 1;
    Ok(i)
}

/// Adds a library record (regions already chosen) and its definitions.
#[allow(clippy::too_many_arguments)]
fn register(
    mut cx: StoreContextMut<'_, Host>,
    name: String,
    path: PathBuf,
    info: Arc<ModuleInfo>,
    module: Module,
    memory_base: u32,
    table_base: u32,
    owns_regions: bool,
) -> Result<LibId, LinkError> {
    let id = cx.data().dl.libs.len();
    let mut defs = HashMap::new();
    for e in info.defined_symbols() {
        let def = match e.class {
            ExportClass::Function => Def::Func {
                lib: id,
                index: e.index,
            },
            ExportClass::Data => {
                let v = e.value.unwrap_or(0);
                let addr = if e.flags.is_absolute() || !info.is_dynamic() {
                    v
                } else {
                    i64::from(memory_base) + v
                };
                Def::Data {
                    lib: id,
                    addr: addr as u32,
                }
            }
            ExportClass::Tls => Def::Tls {
                lib: id,
                offset: e.value.unwrap_or(0) as u32,
            },
            ExportClass::Tag => Def::Tag { lib: id },
            _ => continue,
        };
        defs.insert(e.name.clone(), def);
    }
    let mi = info.dylink.as_ref().map(|d| d.mem_info).unwrap_or_default();
    let lib = Library {
        name,
        path,
        memory_len: if owns_regions {
            mi.memory_size.max(1)
        } else {
            mi.memory_size
        },
        table_len: mi.table_size,
        info,
        module,
        memory_base,
        table_base,
        instance: None,
        refcount: 1,
        deps: Vec::new(),
        local_scope: vec![id],
        nodelete: false,
        defs,
        owns_regions,
    };
    cx.data_mut().dl.libs.push(Some(lib));
    Ok(id)
}

/// Finds, lays out and registers `path` and its whole needed tree; instantiates and initialises
/// what is new. Returns the id of `path`'s library.
pub(crate) fn load_tree(
    mut cx: StoreContextMut<'_, Host>,
    name: &Path,
    requester: Option<LibId>,
    global: bool,
    is_path: bool,
) -> Result<LibId, LinkError> {
    let name_str = name.to_string_lossy().into_owned();
    if let Some(id) = find_loaded(&cx, &name_str) {
        return Ok(id);
    }
    let (req_path, runpath) = match requester {
        Some(r) => {
            let l = cx.data().dl.lib(r);
            (Some(l.path.clone()), l.info.runtime_path().to_vec())
        }
        None => (None, Vec::new()),
    };
    let found = if is_path && name_str.contains('/') {
        let bytes = read(name)?;
        let info = ModuleInfo::parse(&bytes).map_err(|e| LinkError::BadModule {
            path: name.to_path_buf(),
            message: e.to_string(),
        })?;
        crate::resolve::Found {
            path: name.to_path_buf(),
            info: Arc::new(info),
            bytes: Some(bytes.into()),
        }
    } else {
        cx.data()
            .dl
            .search
            .find(&name_str, req_path.as_deref(), &runpath)?
    };
    let display = Path::new(&name_str)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or(name_str.clone());
    let id = add_library(cx.as_context_mut(), display, found)?;
    if global {
        cx.data_mut().dl.global_scope.push(id);
    }
    load_tree_from(cx, id)
}

fn find_loaded(cx: &StoreContextMut<'_, Host>, name: &str) -> Option<LibId> {
    let base = Path::new(name).file_name()?.to_string_lossy().into_owned();
    let canon = Path::new(name).canonicalize().ok();
    cx.data().dl.libs.iter().enumerate().find_map(|(i, l)| {
        let l = l.as_ref()?;
        let same = if name.contains('/') {
            canon
                .as_ref()
                .is_some_and(|c| l.path.canonicalize().ok().as_ref() == Some(c))
        } else {
            l.name == base
        };
        same.then_some(i)
    })
}

/// Lays out and registers one library found on disk.
fn add_library(
    mut cx: StoreContextMut<'_, Host>,
    name: String,
    found: crate::resolve::Found,
) -> Result<LibId, LinkError> {
    let crate::resolve::Found { path, info, bytes } = found;
    if !info.is_dynamic() {
        return Err(LinkError::BadModule {
            path,
            message: "not a shared library (no dylink.0 section)".to_string(),
        });
    }
    let bytes = match bytes {
        Some(b) => b,
        None => read(&path)?.into(),
    };
    let dl = &cx.data().dl;
    let module = compile(&dl.engine, dl.module_cache.as_ref(), &path, &bytes)?;
    drop(bytes);
    let mi = info.dylink.as_ref().map(|d| d.mem_info).unwrap_or_default();
    for (offset, len) in &info.data_segments {
        let end = offset.map(|o| o + i64::from(*len));
        if *len > 0 && end.is_none_or(|e| e > i64::from(mi.memory_size)) {
            return Err(LinkError::BadModule {
                path,
                message: format!(
                    "data segment at __memory_base+{} ({len} bytes) overruns the {} bytes its MEM_INFO reserves",
                    offset.map_or("?".to_string(), |o| o.to_string()),
                    mi.memory_size
                ),
            });
        }
    }
    // Every library gets a region, even an empty one, so its `__dso_handle` is unique.
    let memory_base = alloc_region(
        cx.as_context_mut(),
        &name,
        u64::from(mi.memory_size.max(1)),
        mi.memory_align(),
    )?;
    let table_base = alloc_slots(cx.as_context_mut(), &name, mi.table_size, mi.table_align())?;
    tracing::debug!(
        target: "wasmlink::libs",
        "loading {name} from {}: __memory_base={memory_base:#x} ({} bytes), __table_base={table_base} ({} slots)",
        path.display(),
        mi.memory_size,
        mi.table_size
    );
    register(cx, name, path, info, module, memory_base, table_base, true)
}

/// Loads (breadth first) everything `root` needs that is not loaded yet, then binds,
/// instantiates and initialises every new library, dependencies first.
fn load_tree_from(mut cx: StoreContextMut<'_, Host>, root: LibId) -> Result<LibId, LinkError> {
    let mut order = vec![root];
    let mut queue = VecDeque::from([root]);
    let root_global = cx.data().dl.global_scope.contains(&root);
    while let Some(id) = queue.pop_front() {
        let (needed, path, runpath) = {
            let l = cx.data().dl.lib(id);
            (
                l.info
                    .dylink
                    .as_ref()
                    .map(|d| d.needed_unique().into_iter().map(str::to_string).collect())
                    .unwrap_or_else(Vec::new),
                l.path.clone(),
                l.info.runtime_path().to_vec(),
            )
        };
        let mut deps = Vec::new();
        for n in needed {
            let dep = match find_loaded(&cx, &n) {
                Some(d) => {
                    if !order.contains(&d) {
                        cx.data_mut().dl.libs[d].as_mut().unwrap().refcount += 1;
                    }
                    d
                }
                None => {
                    let found = cx.data().dl.search.find(&n, Some(&path), &runpath)?;
                    let d = add_library(cx.as_context_mut(), n.clone(), found)?;
                    if root_global {
                        cx.data_mut().dl.global_scope.push(d);
                    }
                    order.push(d);
                    queue.push_back(d);
                    d
                }
            };
            deps.push(dep);
        }
        cx.data_mut().dl.libs[id].as_mut().unwrap().deps = deps;
    }
    // Local scopes: each library and its dependencies, transitively, breadth first.
    for &id in &order {
        let mut scope = vec![id];
        let mut i = 0;
        while i < scope.len() {
            let deps = cx.data().dl.lib(scope[i]).deps.clone();
            for d in deps {
                if !scope.contains(&d) {
                    scope.push(d);
                }
            }
            i += 1;
        }
        cx.data_mut().dl.libs[id].as_mut().unwrap().local_scope = scope;
    }
    if cx.data().dl.strict {
        check_duplicates(&cx, &order)?;
    }
    // Instantiate dependencies first (reverse breadth-first order), then run constructors in
    // the same order once everything is bound.
    let new: Vec<LibId> = order
        .iter()
        .rev()
        .copied()
        .filter(|&id| cx.data().dl.lib(id).instance.is_none())
        .collect();
    for &id in &new {
        instantiate(cx.as_context_mut(), id)?;
    }
    for &id in &new {
        if cx.data().dl.run_constructors {
            libdl::run_ctors(cx.as_context_mut(), id)?;
        }
    }
    Ok(root)
}

fn check_duplicates(cx: &StoreContextMut<'_, Host>, order: &[LibId]) -> Result<(), LinkError> {
    let dl = &cx.data().dl;
    let mut seen: HashMap<&str, LibId> = HashMap::new();
    for &id in dl.global_scope.iter().chain(order) {
        let l = dl.lib(id);
        for e in l.info.defined_symbols() {
            if e.flags.is_weak() || e.flags.is_local() || e.flags.is_hidden() {
                continue;
            }
            match seen.get(e.name.as_str()) {
                Some(&first) if first != id => {
                    return Err(LinkError::Duplicate {
                        symbol: e.name.clone(),
                        library: l.name.clone(),
                        first: dl.lib_name(first),
                    });
                }
                _ => {
                    seen.insert(&e.name, id);
                }
            }
        }
    }
    Ok(())
}

fn const_global(cx: StoreContextMut<'_, Host>, lib: &str, v: i32) -> Result<Extern, LinkError> {
    Global::new(
        cx,
        GlobalType::new(ValType::I32, Mutability::Const),
        Val::I32(v),
    )
    .map(Extern::Global)
    .map_err(|e| LinkError::runtime(lib, "global", e))
}

/// Binds every import of library `id`, instantiates it, fills the canonical slots of its
/// functions and applies its data relocations.
fn instantiate(mut cx: StoreContextMut<'_, Host>, id: LibId) -> Result<(), LinkError> {
    let (module, info, name, memory_base, table_base) = {
        let l = cx.data().dl.lib(id);
        (
            l.module.clone(),
            l.info.clone(),
            l.name.clone(),
            l.memory_base,
            l.table_base,
        )
    };
    let mut externs: Vec<Option<Extern>> = Vec::new();
    let mut thunks: Vec<(usize, thunk::Thunk)> = Vec::new();
    let mut wasi: Vec<(usize, String, String, ExternType)> = Vec::new();
    let imports: Vec<(String, String, ExternType)> = module
        .imports()
        .map(|i| (i.module().to_string(), i.name().to_string(), i.ty()))
        .collect();
    for (idx, (imp, (m, field, ty))) in info.imports.iter().zip(imports).enumerate() {
        debug_assert_eq!((&imp.module, &imp.field), (&m, &field));
        let dl = &cx.data().dl;
        let (memory, table, sp, bounds) = (dl.memory, dl.table, dl.stack_pointer, dl.bounds);
        let ext: Option<Extern> = match &imp.class {
            ImportClass::Memory => Some(Extern::Memory(memory.expect("memory"))),
            ImportClass::Table => Some(Extern::Table(table.expect("table"))),
            ImportClass::StackPointer => Some(Extern::Global(sp.expect("stack pointer"))),
            ImportClass::MemoryBase => Some(const_global(
                cx.as_context_mut(),
                &name,
                memory_base as i32,
            )?),
            ImportClass::TableBase => {
                Some(const_global(cx.as_context_mut(), &name, table_base as i32)?)
            }
            ImportClass::HeapBase => Some(const_global(
                cx.as_context_mut(),
                &name,
                bounds.heap_base as i32,
            )?),
            ImportClass::HeapEnd => Some(const_global(
                cx.as_context_mut(),
                &name,
                bounds.heap_end as i32,
            )?),
            ImportClass::StackHigh => Some(const_global(
                cx.as_context_mut(),
                &name,
                bounds.stack_high as i32,
            )?),
            ImportClass::StackLow => Some(const_global(
                cx.as_context_mut(),
                &name,
                bounds.stack_low as i32,
            )?),
            ImportClass::TlsBase => {
                let mutability = match &ty {
                    ExternType::Global(g) => g.mutability(),
                    _ => Mutability::Var,
                };
                let g = Global::new(
                    cx.as_context_mut(),
                    GlobalType::new(ValType::I32, mutability),
                    Val::I32(0),
                )
                .map_err(|e| LinkError::runtime(&name, "global", e))?;
                Some(Extern::Global(g))
            }
            ImportClass::GotMem(sym) => Some(Extern::Global(got_mem(
                cx.as_context_mut(),
                id,
                sym,
                imp.is_weak(),
            )?)),
            ImportClass::GotFunc(sym) => Some(Extern::Global(got_func(
                cx.as_context_mut(),
                id,
                sym,
                imp.is_weak(),
            )?)),
            ImportClass::EnvGlobal(sym) => match cx.data().dl.lookup(sym, Some(id)) {
                Some(Def::Data { addr, .. }) => {
                    Some(const_global(cx.as_context_mut(), &name, addr as i32)?)
                }
                _ if imp.is_weak() => Some(const_global(cx.as_context_mut(), &name, 0)?),
                _ => {
                    return Err(LinkError::Undefined {
                        symbol: sym.clone(),
                        library: name,
                    });
                }
            },
            ImportClass::Tag(sym) => Some(Extern::Tag(tag(cx.as_context_mut(), id, sym, &ty)?)),
            ImportClass::WasiP1(_) => {
                wasi.push((idx, imp.module.clone(), imp.field.clone(), ty.clone()));
                None
            }
            ImportClass::Wasi2(f) if empty_list_wasi2(f, &ty) => {
                // An empty environment / argument list: write `(ptr 0, len 0)` at retptr.
                let ExternType::Func(fty) = &ty else {
                    unreachable!("checked")
                };
                Some(Extern::Func(Func::new(
                    cx.as_context_mut(),
                    fty.clone(),
                    |mut c, args, _| {
                        let ret = args[0].unwrap_i32() as usize;
                        let mem = c.data().dl.memory.expect("memory");
                        mem.write(&mut c, ret, &[0u8; 8])?;
                        Ok(())
                    },
                )))
            }
            ImportClass::Wasi2(f)
                if f.starts_with("wasi:random/random@0.2.") && f.ends_with("#get-random-bytes") =>
            {
                let ExternType::Func(fty) = &ty else {
                    unreachable!("function import")
                };
                Some(Extern::Func(Func::new(
                    cx.as_context_mut(),
                    fty.clone(),
                    random_bytes,
                )))
            }
            ImportClass::Wasi2(f) if wasi2_clock(f, &ty).is_some() => {
                let ExternType::Func(fty) = &ty else {
                    unreachable!("checked")
                };
                let which = wasi2_clock(f, &ty).expect("checked");
                Some(Extern::Func(Func::new(
                    cx.as_context_mut(),
                    fty.clone(),
                    move |mut c, args, out| {
                        match which {
                            Clock::Monotonic => {
                                static START: std::sync::OnceLock<std::time::Instant> =
                                    std::sync::OnceLock::new();
                                out[0] = Val::I64(
                                    START
                                        .get_or_init(std::time::Instant::now)
                                        .elapsed()
                                        .as_nanos() as i64,
                                );
                            }
                            Clock::Resolution => out[0] = Val::I64(1),
                            Clock::Wall => {
                                let d = std::time::SystemTime::now()
                                    .duration_since(std::time::UNIX_EPOCH)
                                    .unwrap_or_default();
                                let mut rec = d.as_secs().to_le_bytes().to_vec();
                                rec.extend_from_slice(&d.subsec_nanos().to_le_bytes());
                                rec.extend_from_slice(&[0; 4]);
                                let mem = c.data().dl.memory.expect("memory");
                                mem.write(&mut c, args[0].unwrap_i32() as u32 as usize, &rec)?;
                            }
                        }
                        Ok(())
                    },
                )))
            }
            ImportClass::Wasi2(f) => Some(Extern::Func(trap_func(
                cx.as_context_mut(),
                &ty,
                format!("WASI 0.2 function {f} is not provided by this host ({name})"),
            )?)),
            // A function from a module that is not a library (e.g. the component model's
            // `$root` intrinsics): it traps, naming itself, if ever called; `unresolved` lists it.
            ImportClass::Module(what) if matches!(ty, ExternType::Func(_)) => {
                Some(Extern::Func(trap_func(
                    cx.as_context_mut(),
                    &ty,
                    format!("import {what} is not provided by this host ({name})"),
                )?))
            }
            ImportClass::Module(what) => {
                return Err(LinkError::BadModule {
                    path: cx.data().dl.lib(id).path.clone(),
                    message: format!(
                        "import {what} is from a module that is not a library of this process"
                    ),
                });
            }
            ImportClass::EnvFunction(sym) => {
                let ExternType::Func(fty) = &ty else {
                    unreachable!("function import has a function type")
                };
                let imp_sig = match &imp.ty {
                    wasmlink_dylink::ImportType::Func { signature } => signature.clone(),
                    _ => None,
                };
                match function_import(cx.as_context_mut(), id, sym, imp.is_weak(), imp_sig, fty)? {
                    Binding::Direct(f) => Some(Extern::Func(f)),
                    Binding::Slot(slot) => {
                        thunks.push((
                            idx,
                            thunk::Thunk {
                                params: fty.params().collect(),
                                results: fty.results().collect(),
                                slot,
                            },
                        ));
                        None
                    }
                }
            }
        };
        externs.push(ext);
    }
    if !thunks.is_empty() {
        let table = cx.data().dl.table.expect("table");
        let list: Vec<thunk::Thunk> = thunks
            .iter_mut()
            .map(|(_, t)| {
                std::mem::replace(
                    t,
                    thunk::Thunk {
                        params: vec![],
                        results: vec![],
                        slot: 0,
                    },
                )
            })
            .collect();
        let bytes = thunk::build(&list).ok_or_else(|| LinkError::BadModule {
            path: cx.data().dl.lib(id).path.clone(),
            message: "a function import with reference-typed parameters cannot be bound lazily"
                .to_string(),
        })?;
        let tm = compile_generated(&cx, &name, "thunks", &bytes)?;
        let ti = new_instance(
            cx.as_context_mut(),
            &name,
            "thunks",
            &tm,
            &[Extern::Table(table)],
        )?;
        for (n, (idx, _)) in thunks.iter().enumerate() {
            let f = ti
                .get_func(cx.as_context_mut(), &n.to_string())
                .expect("thunk export");
            externs[*idx] = Some(Extern::Func(f));
        }
    }
    bind_wasi(cx.as_context_mut(), &name, &module, &mut externs, &wasi)?;
    let externs: Vec<Extern> = externs
        .into_iter()
        .map(|e| e.expect("every import bound"))
        .collect();
    let instance = new_instance(cx.as_context_mut(), &name, "instantiate", &module, &externs)?;
    cx.data_mut().dl.libs[id].as_mut().unwrap().instance = Some(instance);
    fill_slots(cx.as_context_mut(), id)?;
    if let Some(f) = instance.get_func(cx.as_context_mut(), "__wasm_apply_data_relocs") {
        f.call(cx.as_context_mut(), &[], &mut [])
            .map_err(|e| LinkError::runtime(&name, "__wasm_apply_data_relocs", e))?;
    }
    libdl::init_tls(cx, id)?;
    Ok(())
}

/// Binds WASI preview 1 imports: straight to wasmtime-wasi if the module exports its memory,
/// else through a shim that exports the shared memory (see [`thunk::wasi_shim`]).
fn bind_wasi(
    mut cx: StoreContextMut<'_, Host>,
    name: &str,
    module: &Module,
    externs: &mut [Option<Extern>],
    wasi: &[(usize, String, String, ExternType)],
) -> Result<(), LinkError> {
    if wasi.is_empty() {
        return Ok(());
    }
    let linker = cx.data().dl.wasi_linker.clone();
    let exports_memory = module
        .exports()
        .any(|e| e.name() == "memory" && e.ty().memory().is_some());
    let mut shimmed: HashMap<String, Vec<(usize, String, FuncType)>> = HashMap::new();
    for (idx, m, f, ty) in wasi {
        let real = linker.get(cx.as_context_mut(), m, f).ok();
        match (real, ty) {
            (Some(e), _) if exports_memory => externs[*idx] = Some(e),
            (Some(_), ExternType::Func(fty)) => {
                shimmed
                    .entry(m.clone())
                    .or_default()
                    .push((*idx, f.clone(), fty.clone()))
            }
            (_, ty) => {
                externs[*idx] = Some(Extern::Func(trap_func(
                    cx.as_context_mut(),
                    ty,
                    format!("unknown WASI preview 1 function {f} ({name})"),
                )?));
            }
        }
    }
    let memory = cx.data().dl.memory.expect("memory");
    for (m, funcs) in shimmed {
        let sigs: Vec<(String, FuncType)> = funcs
            .iter()
            .map(|(_, f, t)| (f.clone(), t.clone()))
            .collect();
        let bytes = thunk::wasi_shim(&m, &sigs).ok_or_else(|| {
            LinkError::runtime(
                name,
                "wasi",
                wasmtime::format_err!("unsupported WASI signature"),
            )
        })?;
        let sm = compile_generated(&cx, name, "wasi shim", &bytes)?;
        let mut imports = vec![Extern::Memory(memory)];
        for (_, f, _) in &funcs {
            imports.push(
                linker
                    .get(cx.as_context_mut(), &m, f)
                    .map_err(|e| LinkError::runtime(name, "wasi", e))?,
            );
        }
        let si = new_instance(cx.as_context_mut(), name, "wasi shim", &sm, &imports)?;
        for (idx, f, _) in &funcs {
            externs[*idx] = Some(Extern::Func(
                si.get_func(cx.as_context_mut(), f).expect("shim export"),
            ));
        }
    }
    Ok(())
}

enum Binding {
    Direct(Func),
    Slot(u32),
}

fn sig_string(t: &FuncType) -> String {
    let p: Vec<String> = t.params().map(|v| v.to_string()).collect();
    let r: Vec<String> = t.results().map(|v| v.to_string()).collect();
    format!("({}) -> ({})", p.join(", "), r.join(", "))
}

/// Binds function import `sym` of library `id`.
fn function_import(
    mut cx: StoreContextMut<'_, Host>,
    id: LibId,
    sym: &str,
    weak: bool,
    imp_sig: Option<Arc<wasmlink_dylink::Signature>>,
    fty: &FuncType,
) -> Result<Binding, LinkError> {
    if libdl::is_dl_symbol(sym) {
        if let Some(f) = libdl::host_function(cx.as_context_mut(), sym, fty, Some(id)) {
            return Ok(Binding::Direct(f));
        }
    }
    let def = cx.data().dl.lookup(sym, Some(id));
    let name = cx.data().dl.lib_name(id);
    match def {
        Some(Def::Func { lib, .. }) => {
            let definer = cx.data().dl.lib(lib);
            // Compare with the definer's model signature (known before it is instantiated).
            let def_sig = definer
                .info
                .exports
                .iter()
                .find(|e| e.name == sym)
                .and_then(|e| e.signature.clone());
            if let (Some(a), Some(b)) = (&imp_sig, &def_sig) {
                if a != b {
                    return Err(LinkError::TypeMismatch {
                        symbol: sym.to_string(),
                        library: name,
                        expected: a.to_string(),
                        definer: definer.name.clone(),
                        actual: b.to_string(),
                    });
                }
            }
            // With hot swap on, calls between libraries go through the symbol's slot so that
            // `rebind`/`reload` reach every call site.
            let direct = definer
                .instance
                .filter(|_| !cx.data().dl.swappable || lib == id);
            tracing::debug!(target: "wasmlink::bindings", "{name}: {sym} -> {} ({})", definer.name, if direct.is_some() { "direct" } else { "thunk" });
            if let Some(inst) = direct {
                let f = inst
                    .get_func(cx.as_context_mut(), sym)
                    .expect("exported function");
                return Ok(Binding::Direct(f));
            }
            Ok(Binding::Slot(func_slot_for(cx, sym, def, fty)?))
        }
        Some(_) => Err(LinkError::TypeMismatch {
            symbol: sym.to_string(),
            library: name.clone(),
            expected: sig_string(fty),
            definer: cx.data().dl.lib_name(def.unwrap().lib()),
            actual: "data".to_string(),
        }),
        None => {
            if let Some(f) = libdl::host_function(cx.as_context_mut(), sym, fty, Some(id)) {
                return Ok(Binding::Direct(f));
            }
            if cx.data().dl.bind_now && !weak {
                return Err(LinkError::Undefined {
                    symbol: sym.to_string(),
                    library: name,
                });
            }
            Ok(Binding::Slot(func_slot_for(cx, sym, None, fty)?))
        }
    }
}

/// The canonical slot of function `sym` as defined by `def`, allocated on first use: one slot per
/// definition, so `dlsym(RTLD_NEXT)` and `dlsym(handle)` can name another definition than the
/// global one. A function the defining
/// module's element segment already places in the table keeps that slot, so its address is the
/// same inside and outside its library. An undefined function's slot holds a trap until a
/// definition is loaded.
fn func_slot_for(
    mut cx: StoreContextMut<'_, Host>,
    sym: &str,
    def: Option<Def>,
    fty: &FuncType,
) -> Result<u32, LinkError> {
    let key = SlotKey::of(sym, def);
    if let Some(&s) = cx.data().dl.slots.get(&key) {
        return Ok(s);
    }
    let table = cx.data().dl.table.expect("table");
    let own = match def {
        Some(Def::Func { lib, index }) => {
            let l = cx.data().dl.lib(lib);
            l.info
                .table_functions
                .iter()
                .find(|(_, f)| *f == index)
                .map(|(off, _)| l.table_base + off)
        }
        _ => None,
    };
    let slot = match own {
        Some(s) => s,
        None => match cx.data_mut().dl.free_slots.pop() {
            Some(s) => s,
            None => alloc_slots(cx.as_context_mut(), sym, 1, 1)?,
        },
    };
    cx.data_mut().dl.slots.insert(key, slot);
    cx.data_mut().dl.slot_names.insert(slot, sym.to_string());
    match def {
        Some(Def::Func { lib, .. }) => {
            if let Some(inst) = cx.data().dl.lib(lib).instance {
                let f = inst
                    .get_func(cx.as_context_mut(), sym)
                    .expect("exported function");
                table
                    .set(cx.as_context_mut(), u64::from(slot), Ref::Func(Some(f)))
                    .map_err(|e| LinkError::runtime(sym, "table", e))?;
            }
            // Otherwise `fill_slots` sets it when the definer is instantiated.
        }
        _ => {
            let f = trap_func(
                cx.as_context_mut(),
                &ExternType::Func(fty.clone()),
                format!("symbol lookup error: undefined symbol: {sym}"),
            )?;
            table
                .set(cx.as_context_mut(), u64::from(slot), Ref::Func(Some(f)))
                .map_err(|e| LinkError::runtime(sym, "table", e))?;
            cx.data_mut()
                .dl
                .undefined_slots
                .insert(sym.to_string(), String::new());
        }
    }
    Ok(slot)
}

/// After library `id` is instantiated: point the canonical slots of the functions it defines
/// (and wins) at them.
fn fill_slots(mut cx: StoreContextMut<'_, Host>, id: LibId) -> Result<(), LinkError> {
    let table = cx.data().dl.table.expect("table");
    let inst = cx.data().dl.lib(id).instance.expect("instantiated");
    let defs = cx.data().dl.lib(id).functions();
    for (n, index) in defs {
        let own = cx.data().dl.slots.get(&SlotKey::Def(id, index)).copied();
        // A name that was undefined and that this library now defines (and wins).
        let was_undefined = cx.data().dl.undefined_slots.contains_key(&n)
            && cx.data().dl.lookup(&n, Some(id)).map(Def::lib) == Some(id);
        let named = was_undefined
            .then(|| {
                cx.data()
                    .dl
                    .slots
                    .get(&SlotKey::Undefined(n.clone()))
                    .copied()
            })
            .flatten();
        for slot in own.into_iter().chain(named) {
            let f = inst
                .get_func(cx.as_context_mut(), &n)
                .expect("exported function");
            table
                .set(cx.as_context_mut(), u64::from(slot), Ref::Func(Some(f)))
                .map_err(|e| LinkError::runtime(&n, "table", e))?;
        }
        if named.is_some() {
            cx.data_mut().dl.undefined_slots.remove(&n);
        }
    }
    Ok(())
}

fn got_mem(
    mut cx: StoreContextMut<'_, Host>,
    id: LibId,
    sym: &str,
    weak: bool,
) -> Result<Global, LinkError> {
    let value = match cx.data().dl.lookup(sym, Some(id)) {
        Some(Def::Data { addr, .. }) => addr,
        Some(Def::Tls { offset, .. }) => offset,
        // A function's address taken as data: its canonical slot.
        Some(Def::Func { .. }) => return got_func(cx, id, sym, weak),
        // Linker-defined symbols (wasi-libc's libc.so reaches them through GOT.mem).
        None if linker_symbol(&cx.data().dl.bounds, sym).is_some() => {
            linker_symbol(&cx.data().dl.bounds, sym).expect("checked")
        }
        Some(Def::Tag { .. }) | None if weak => 0,
        _ => {
            return Err(LinkError::Undefined {
                symbol: sym.to_string(),
                library: cx.data().dl.lib_name(id),
            });
        }
    };
    let key = (sym.to_string(), value);
    if let Some(g) = cx.data().dl.got_mem.get(&key) {
        return Ok(*g);
    }
    let g = Global::new(
        cx.as_context_mut(),
        GlobalType::new(ValType::I32, Mutability::Var),
        Val::I32(value as i32),
    )
    .map_err(|e| LinkError::runtime(sym, "GOT.mem", e))?;
    cx.data_mut().dl.got_mem.insert(key, g);
    Ok(g)
}

/// WASI 0.2 functions this host answers with an empty list (no environment variables, no
/// arguments), in canonical-ABI lowered form `(retptr: i32) -> ()`.
fn empty_list_wasi2(f: &str, ty: &ExternType) -> bool {
    let lowered =
        matches!(ty, ExternType::Func(t) if t.params().len() == 1 && t.results().len() == 0);
    lowered
        && (f.starts_with("wasi:cli/environment@0.2.")
            && (f.ends_with("#get-environment") || f.ends_with("#get-arguments")))
}

/// `wasi:random/random#get-random-bytes(len: u64) -> list<u8>`, lowered: allocates the list
/// with the caller's `cabi_realloc` and writes `(ptr, len)` at retptr.
fn random_bytes(
    mut c: wasmtime::Caller<'_, Host>,
    args: &[Val],
    _: &mut [Val],
) -> wasmtime::Result<()> {
    use std::hash::{BuildHasher, Hasher};
    let len = u32::try_from(args[0].unwrap_i64())
        .map_err(|_| wasmtime::format_err!("get-random-bytes: length too large"))?;
    let ret = args[1].unwrap_i32() as usize;
    let Some(Extern::Func(realloc)) = c.get_export("cabi_realloc") else {
        wasmtime::bail!("get-random-bytes: the caller exports no cabi_realloc");
    };
    let mut out = [Val::I32(0)];
    realloc.call(
        &mut c,
        &[Val::I32(0), Val::I32(0), Val::I32(1), Val::I32(len as i32)],
        &mut out,
    )?;
    let ptr = out[0].unwrap_i32() as u32;
    let mut bytes = Vec::with_capacity(len as usize);
    while bytes.len() < len as usize {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(bytes.len());
        bytes.extend_from_slice(&h.finish().to_le_bytes());
    }
    bytes.truncate(len as usize);
    let mem = c.data().dl.memory.expect("memory");
    mem.write(&mut c, ptr as usize, &bytes)?;
    let mut rec = ptr.to_le_bytes().to_vec();
    rec.extend_from_slice(&len.to_le_bytes());
    mem.write(&mut c, ret, &rec)?;
    Ok(())
}

#[derive(Clone, Copy)]
enum Clock {
    Monotonic,
    Resolution,
    Wall,
}

/// The WASI 0.2 clocks this host provides, in lowered form: `monotonic-clock#now() -> u64`,
/// `#resolution() -> u64`, and `wall-clock#now(retptr)` writing `{seconds: u64, nanoseconds: u32}`.
fn wasi2_clock(f: &str, ty: &ExternType) -> Option<Clock> {
    let ExternType::Func(t) = ty else { return None };
    let (np, nr) = (t.params().len(), t.results().len());
    if f.starts_with("wasi:clocks/monotonic-clock@0.2.") && np == 0 && nr == 1 {
        if f.ends_with("#now") {
            return Some(Clock::Monotonic);
        }
        if f.ends_with("#resolution") {
            return Some(Clock::Resolution);
        }
    }
    if f.starts_with("wasi:clocks/wall-clock@0.2.") && f.ends_with("#now") && np == 1 && nr == 0 {
        return Some(Clock::Wall);
    }
    None
}

/// Addresses the linker defines: the heap and stack bounds.
fn linker_symbol(b: &Bounds, sym: &str) -> Option<u32> {
    Some(match sym {
        "__heap_base" => b.heap_base,
        "__heap_end" => b.heap_end,
        "__stack_high" => b.stack_high,
        "__stack_low" => b.stack_low,
        _ => return None,
    })
}

fn got_func(
    mut cx: StoreContextMut<'_, Host>,
    id: LibId,
    sym: &str,
    weak: bool,
) -> Result<Global, LinkError> {
    let def = cx.data().dl.lookup(sym, Some(id));
    let key = SlotKey::of(sym, def);
    if let Some(g) = cx.data().dl.got_func.get(&key) {
        return Ok(*g);
    }
    let value = match def {
        Some(d @ Def::Func { lib, .. }) => {
            let l = cx.data().dl.lib(lib);
            let fty = l
                .module
                .exports()
                .find(|e| e.name() == sym)
                .and_then(|e| e.ty().func().cloned());
            let fty = fty.unwrap_or_else(|| FuncType::new(&l.module.engine().clone(), [], []));
            func_slot_for(cx.as_context_mut(), sym, Some(d), &fty)?
        }
        None if weak => 0,
        None if cx.data().dl.bind_now => {
            return Err(LinkError::Undefined {
                symbol: sym.to_string(),
                library: cx.data().dl.lib_name(id),
            });
        }
        None => {
            // An undefined function whose address is taken: a slot that traps until defined.
            let fty = FuncType::new(&cx.data().dl.engine.clone(), [], []);
            func_slot_for(cx.as_context_mut(), sym, None, &fty)?
        }
        Some(d) => {
            return Err(LinkError::TypeMismatch {
                symbol: sym.to_string(),
                library: cx.data().dl.lib_name(id),
                expected: "function (GOT.func)".to_string(),
                definer: cx.data().dl.lib_name(d.lib()),
                actual: "data".to_string(),
            });
        }
    };
    let g = Global::new(
        cx.as_context_mut(),
        GlobalType::new(ValType::I32, Mutability::Var),
        Val::I32(value as i32),
    )
    .map_err(|e| LinkError::runtime(sym, "GOT.func", e))?;
    if value != 0 {
        cx.data_mut().dl.got_func.insert(key, g);
    }
    Ok(g)
}

fn tag(
    mut cx: StoreContextMut<'_, Host>,
    id: LibId,
    sym: &str,
    ty: &ExternType,
) -> Result<Tag, LinkError> {
    if let Some(Def::Tag { lib }) = cx.data().dl.lookup(sym, Some(id)) {
        if let Some(inst) = cx.data().dl.lib(lib).instance {
            if let Some(Extern::Tag(t)) = inst.get_export(cx.as_context_mut(), sym) {
                return Ok(t);
            }
        }
    }
    if let Some(t) = cx.data().dl.tags.get(sym) {
        return Ok(*t);
    }
    let ExternType::Tag(tt) = ty else {
        unreachable!("tag import has a tag type")
    };
    let t = Tag::new(cx.as_context_mut(), &TagType::new(tt.ty().clone()))
        .map_err(|e| LinkError::runtime(sym, "tag", e))?;
    cx.data_mut().dl.tags.insert(sym.to_string(), t);
    Ok(t)
}

/// A function of type `ty` that traps with `message` when called.
fn trap_func(
    cx: StoreContextMut<'_, Host>,
    ty: &ExternType,
    message: String,
) -> Result<Func, LinkError> {
    let ExternType::Func(fty) = ty else {
        unreachable!("trap_func for a function type")
    };
    Ok(Func::new(cx, fty.clone(), move |_, _, _| {
        Err(wasmtime::format_err!("{message}"))
    }))
}
