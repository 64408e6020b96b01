//! A linked process: what ld.so builds for a native program.
//!
//! One wasmtime [`Store`](wasmtime::Store) holds one linear memory, one function table and one
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
//!    code runs (see [`layout`]). A main that defines its own memory and table (wasm-ld's
//!    default `-pie`) has them become the process's, with its declared limits (`own_memory`).
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
//! imports (see `libdl`) and callable from Rust ([`Process::dlopen`], ...).

mod api;
mod bind;
mod builder;
mod error;
mod fini;
mod instantiate;
pub mod layout;
mod libdl;
mod lifecycle;
mod limits;
mod load;
mod own_memory;
mod resources;
mod state;
mod stats;
pub mod thunk;
mod wasi;

pub use api::{LibraryInfo, Process};
pub use builder::{DEFAULT_MAX_INSTANCES, DEFAULT_STACK_SIZE, ProcessBuilder, Sandbox};
pub use error::LinkError;
pub use libdl::{
    RTLD_DEFAULT, RTLD_GLOBAL, RTLD_LAZY, RTLD_LOCAL, RTLD_NEXT, RTLD_NODELETE, RTLD_NOLOAD,
    RTLD_NOW,
};
pub use limits::Limit;
pub use state::{Host, LibId, Symbol};
/// The in-memory cache of compiled modules (in `wasmlink-engine`).
pub use wasmlink_engine::cache;
pub use wasmlink_engine::{
    CacheStats, DEFAULT_MODULE_CACHE_BYTES, ModuleCache, PROFILE_ENV, default_cache_dir,
    shared_engine,
};
