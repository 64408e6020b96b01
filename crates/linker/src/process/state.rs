//! The state of a linked process: what its store holds (libraries, definitions, bounds).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmlink_dylink::ModuleInfo;
use wasmtime::{
    Engine, Func, FuncType, Global, Instance, Linker, Memory, Module, StoreContextMut, Table, Tag,
};
use wasmtime_wasi::p1::WasiP1Ctx;

use super::error::LinkError;
use super::layout::Regions;
use crate::resolve::SearchPath;
use wasmlink_engine::ModuleCache;

/// A map keyed by symbol name with aHash, not std's SipHash: every symbol lookup probes one
/// map per library in scope (2% of `wasmlink python -c pass` was SipHash). aHash is seeded at
/// random per process, so a library whose export names were chosen to collide cannot make
/// loading quadratic, as it could with a fixed hasher (FxHash).
pub(super) type SymbolMap<V> = HashMap<String, V, ahash::RandomState>;

/// Index of a loaded library in a process; `dlopen` handles are `id + 1`.
pub type LibId = usize;

pub(super) fn read(path: &Path) -> Result<Vec<u8>, LinkError> {
    std::fs::read(path).map_err(|e| LinkError::Io {
        path: path.to_path_buf(),
        message: e.to_string().to_lowercase(),
    })
}

/// Store data of a process.
pub struct Host {
    pub(super) wasi: WasiP1Ctx,
    /// The WASI 0.2 resource handles the process's modules hold (see `wasmlink_wasi`).
    pub(super) handles: wasmlink_wasi::Handles,
    pub(super) dl: Linkage,
    /// `__cxa_atexit` registrations: (function slot, argument, dso handle), run in reverse.
    pub(super) atexit: Vec<(u32, u32, u32)>,
    /// The program's arguments, for `main(argc, argv)`.
    pub(super) args: Vec<String>,
    /// The store's resource limits (its instance count: see [`ProcessBuilder::max_instances`]).
    pub(super) limits: wasmtime::StoreLimits,
}

/// WASI preview 1 and WASI 0.2 share one context: the same preopens, stdio and resource table.
impl wasmtime_wasi::WasiView for Host {
    fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        self.wasi.ctx()
    }
}

/// The lowered WASI 0.2 imports of linked modules read and write the process's shared memory,
/// and allocate with the first `cabi_realloc` of the global scope when the calling module
/// exports none.
impl wasmlink_wasi::WasiHost for Host {
    fn handles(&mut self) -> &mut wasmlink_wasi::Handles {
        &mut self.handles
    }
    fn memory(&self) -> Option<Memory> {
        self.dl.memory
    }
    fn realloc_generation(&self) -> Option<u64> {
        // What `lookup` searches: the global scope (a dozen ids), with the count of loads.
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.dl.generation, &self.dl.global_scope).hash(&mut h);
        Some(h.finish())
    }
    fn realloc_instance(&self) -> Option<Instance> {
        let def = self.dl.lookup("cabi_realloc", None)?;
        self.dl.libs.get(def.lib())?.as_ref()?.instance
    }
}

#[derive(Default, Clone, Copy, Debug)]
pub(super) struct Bounds {
    pub(super) stack_low: u32,
    pub(super) stack_high: u32,
    pub(super) heap_base: u32,
    pub(super) heap_end: u32,
}

/// A definition a symbol resolves to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Def {
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
    pub(super) fn lib(self) -> LibId {
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
pub(super) enum SlotKey {
    /// Function `index` of library `lib`.
    Def(LibId, u32),
    /// A function no library defines (yet): its slot traps until one does.
    Undefined(String),
}

impl SlotKey {
    pub(super) fn of(sym: &str, def: Option<Def>) -> SlotKey {
        match def {
            Some(Def::Func { lib, index }) => SlotKey::Def(lib, index),
            _ => SlotKey::Undefined(sym.to_string()),
        }
    }
}

/// One loaded module.
pub(super) struct Library {
    pub(super) name: String,
    pub(super) path: PathBuf,
    /// `path` made canonical, the first time a `dlopen` by path compares it (one `realpath`
    /// per library, not one per library per `dlopen`).
    pub(super) canonical: std::sync::OnceLock<Option<PathBuf>>,
    pub(super) info: Arc<ModuleInfo>,
    pub(super) module: Module,
    pub(super) memory_base: u32,
    pub(super) memory_len: u32,
    pub(super) table_base: u32,
    pub(super) table_len: u32,
    pub(super) instance: Option<Instance>,
    pub(super) refcount: u32,
    /// Libraries this one needs (direct), by id.
    pub(super) deps: Vec<LibId>,
    /// Its local scope: itself and its dependencies, transitively, in load order.
    pub(super) local_scope: Vec<LibId>,
    pub(super) nodelete: bool,
    /// Defined symbols by name.
    /// Each symbol's definition and the position of its export in `info.exports`.
    pub(super) defs: SymbolMap<(Def, u32)>,
    /// Whether the library's data and table regions belong to the linker's allocators.
    pub(super) owns_regions: bool,
    /// Its TLS block `(address, size)`, given back to the region allocator at `dlclose`.
    pub(super) tls: Option<(u32, u32)>,
    /// Which instantiation `instance` is (unique in the process): a library bound directly to
    /// another's functions can reuse its instance only while that one's is the same.
    pub(super) incarnation: u64,
    /// Taken back from the parked libraries by `dlopen`: `instance` is the parked one, not yet
    /// checked and re-initialised.
    pub(super) revive: bool,
    /// What a reload of the same module needs to reuse this instance.
    pub(super) reuse: Reuse,
    /// Its element segments' functions: function index -> first table offset, built on the
    /// first lookup (a GOT.func entry or `dlsym` of a function it defines). A scan of
    /// `info.table_functions` per lookup was quadratic: 177 GOT.func imports of
    /// `libpython3.14.so` against its 4,955 elements.
    pub(super) own_slots: std::cell::OnceCell<HashMap<u32, u32>>,
}

/// What a library keeps so that, once parked by `dlclose`, a `dlopen` of the same module (same
/// path, same content) reuses its instance instead of making a new one in the store.
#[derive(Default)]
pub(super) struct Reuse {
    /// The content key (sha256) of the module's bytes.
    pub(super) key: Option<[u8; 32]>,
    /// How each symbol import was resolved when the instance was made: the definition and the
    /// definer's incarnation. The instance is reused only if every one resolves the same again.
    pub(super) bound: Vec<(String, Option<Def>, u64)>,
    /// Its data region right after instantiation (trailing zeros trimmed).
    pub(super) data: Vec<u8>,
    /// Its table region right after instantiation.
    pub(super) elems: Vec<Option<Func>>,
    /// Whether `data` and `elems` were taken: only for a library loaded after the process
    /// started (a `dlopen`), the only kind a `dlclose` is meant to unload. A library loaded at
    /// start-up is not parked if a program closes it anyway (it is unloaded outright), so its
    /// start-up does not copy its data region (3 MB for `libpython3.14.so`).
    pub(super) snapshot: bool,
    /// The traps its canonical slots hold while it is unloaded, by slot (made once).
    pub(super) traps: HashMap<u32, Func>,
    /// While parked: its canonical slots `(function index, slot)`, kept for the reload.
    pub(super) canonical: Vec<(u32, u32)>,
    /// While parked: the `GOT.func` globals of its functions.
    pub(super) got_func: Vec<(SlotKey, Global)>,
    /// While parked: the `GOT.mem` globals that pointed into its data region (zeroed).
    pub(super) got_mem: Vec<((String, u32), Global)>,
}

impl Library {
    /// The table offset (relative to `__table_base`) its own element segments give function
    /// `index`, the first one if several do.
    pub(super) fn own_slot(&self, index: u32) -> Option<u32> {
        self.own_slots
            .get_or_init(|| {
                let mut map = HashMap::with_capacity(self.info.table_functions.len());
                for &(off, f) in &self.info.table_functions {
                    map.entry(f).or_insert(off);
                }
                map
            })
            .get(&index)
            .copied()
    }

    /// The functions it defines: `(name, function index)`.
    pub(super) fn functions(&self) -> Vec<(String, u32)> {
        self.defs
            .iter()
            .filter_map(|(n, d)| match d.0 {
                Def::Func { index, .. } => Some((n.clone(), index)),
                _ => None,
            })
            .collect()
    }
}

/// At most this many libraries stay parked after `dlclose` (the oldest is evicted first).
pub(super) const PARKED_MAX: usize = 32;
/// At most this many bytes of data region stay reserved by parked libraries.
pub(super) const PARKED_BYTES: u64 = 32 << 20;

pub(super) struct Linkage {
    /// The functions the host supplies itself (libdl).
    pub(super) host_symbols: HostSymbols,
    pub(super) engine: Engine,
    /// Bind cross-library calls through table slots (hot swap).
    pub(super) swappable: bool,
    /// False for link-only loads (`ldd -r`): constructors are not run.
    pub(super) run_constructors: bool,
    pub(super) wasi_linker: Arc<Linker<Host>>,
    pub(super) search: SearchPath,
    pub(super) bind_now: bool,
    pub(super) strict: bool,
    pub(super) memory: Option<Memory>,
    pub(super) table: Option<Table>,
    pub(super) stack_pointer: Option<Global>,
    pub(super) bounds: Bounds,
    /// Loaded libraries; `None` after a full `dlclose`.
    pub(super) libs: Vec<Option<Library>>,
    /// Libraries unloaded by `dlclose` whose instance, data region and canonical slots are
    /// kept for a `dlopen` of the same module (see [`PARKED_MAX`]).
    pub(super) parked: HashMap<LibId, Library>,
    /// The parked libraries, oldest first (evicted first).
    pub(super) parked_order: std::collections::VecDeque<LibId>,
    /// Bytes of data region the parked libraries hold.
    pub(super) parked_bytes: u64,
    /// The last incarnation given to an instance.
    pub(super) incarnations: u64,
    /// While `ProcessBuilder::load` loads the main program and what it needs: instances made
    /// then keep no snapshot for a reuse (see `Reuse::snapshot`).
    pub(super) starting: bool,
    /// Bumped by every load and unload (for `realloc_generation`).
    pub(super) generation: u64,
    /// Libraries registered or taken back from the parked ones by the current `dlopen` (what a
    /// failed one rolls back).
    pub(super) loading: Vec<LibId>,
    /// How many `dlopen`s are running (a constructor may call `dlopen`).
    pub(super) opening: u32,
    /// Libraries whose symbols every lookup sees, in load order.
    pub(super) global_scope: Vec<LibId>,
    /// Canonical table slot of each function definition (and of each undefined function name).
    pub(super) slots: HashMap<SlotKey, u32>,
    /// Canonical slots that hold an "undefined symbol" trap, and which library first needed them.
    pub(super) undefined_slots: HashMap<String, String>,
    pub(super) free_slots: Vec<u32>,
    /// `GOT.mem` globals by (symbol, address).
    pub(super) got_mem: HashMap<(String, u32), Global>,
    /// `GOT.func` globals by the slot's key.
    pub(super) got_func: HashMap<SlotKey, Global>,
    /// The symbol name each canonical slot was made for (for `dladdr`).
    pub(super) slot_names: HashMap<u32, String>,
    pub(super) tags: HashMap<String, Tag>,
    pub(super) regions: Regions,
    pub(super) dlerror: Option<String>,
    pub(super) dlerror_buf: u32,
    /// Buffer for the strings `dladdr` returns (allocated on first use).
    pub(super) dladdr_buf: u32,
    /// The in-memory cache of compiled modules, if any.
    pub(super) module_cache: Option<ModuleCache>,
    /// Instances made in the store so far (libraries, thunk modules, WASI shims).
    pub(super) instances: usize,
    /// The bound on `instances`.
    pub(super) max_instances: usize,
    /// Where the load's time went (`WASMLINK_DEBUG=statistics`).
    pub(super) stats: std::cell::Cell<super::stats::Stats>,
}

impl Linkage {
    pub(super) fn lib(&self, id: LibId) -> &Library {
        self.libs[id]
            .as_ref()
            .expect("library id refers to a loaded library")
    }

    /// Looks `name` up for library `from`: the global scope in load order, then `from`'s local
    /// scope (its own dependencies, for RTLD_LOCAL libraries).
    pub(super) fn lookup(&self, name: &str, from: Option<LibId>) -> Option<Def> {
        let local = from
            .map(|f| self.lib(f).local_scope.as_slice())
            .unwrap_or(&[]);
        let scope = self.global_scope.iter().chain(local.iter()).copied();
        let def = scope
            .clone()
            .filter_map(|id| self.libs[id].as_ref())
            .find_map(|l| l.defs.get(name).map(|d| d.0));
        let requester = from.map_or("RTLD_DEFAULT", |f| self.lib(f).name.as_str());
        self.trace_symbol(name, requester, scope, def);
        def
    }

    /// `WASMLINK_DEBUG=symbols`: one line per lookup, at the `wasmlink::symbols` target, like
    /// `LD_DEBUG=symbols`: the symbol, who asked, and where it was found or what was searched.
    pub(super) fn trace_symbol(
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
                    if let Some(l) = self.libs[id].as_ref()
                        && !searched.contains(&l.name.as_str())
                    {
                        searched.push(&l.name);
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

    pub(super) fn lib_name(&self, id: LibId) -> String {
        self.lib(id).name.clone()
    }
}

/// Whether `WASMLINK_DEBUG=symbols` (the `wasmlink::symbols` target) is on.
pub(super) fn tracing_symbols() -> bool {
    tracing::enabled!(target: "wasmlink::symbols", tracing::Level::DEBUG)
}

/// The functions the host itself supplies to modules as `env` imports: libdl's `dlopen`,
/// `dlsym`, `dlclose`, `dlerror`, `dladdr` and `__cxa_atexit`. The builder installs libdl's
/// here, so binding and loading reach them without naming libdl, which calls down into them.
#[derive(Clone, Copy)]
pub(super) struct HostSymbols {
    /// Whether the host supplies `sym` even over a library's own definition (as ld.so does
    /// for libdl's functions).
    pub(super) overrides: fn(&str) -> bool,
    /// The host's definition of `sym` with type `fty` for the library `caller`, if it has one.
    pub(super) define:
        fn(StoreContextMut<'_, Host>, &str, &FuncType, Option<LibId>) -> Option<Func>,
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
