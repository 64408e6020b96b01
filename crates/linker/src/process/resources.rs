//! What loading and binding allocate: memory regions, table slots, compiled modules and
//! instances, each within the process's bounds.

use std::path::Path;

use wasmtime::{
    AsContextMut, Engine, Extern, Global, GlobalType, Instance, Module, Mutability, Ref,
    StoreContextMut, Val, ValType,
};

use super::error::LinkError;
use super::layout::{PAGE, align_up};
use super::state::{Host, Library};
use super::stats::{Stats, timed};
use wasmlink_engine::ModuleCache;
use wasmlink_engine::cache::content_key;

/// Grows the memory (or reuses a freed range) for a region of `size` bytes; when the memory
/// cannot grow, evicts parked libraries (oldest first) until it fits.
pub(super) fn alloc_region(
    mut cx: StoreContextMut<'_, Host>,
    who: &str,
    size: u64,
    align: u64,
) -> Result<u32, LinkError> {
    loop {
        match alloc_region_once(cx.as_context_mut(), who, size, align) {
            Err(e) if evict_parked(cx.as_context_mut()) => drop(e),
            r => return r,
        }
    }
}

/// Evicts the oldest parked library: its data region and the other slots of its table region
/// go back to the allocators; its canonical slots keep trapping. False if none is parked.
pub(super) fn evict_parked(mut cx: StoreContextMut<'_, Host>) -> bool {
    let dl = &mut cx.data_mut().dl;
    let Some(id) = dl.parked_order.pop_front() else {
        return false;
    };
    let Some(lib) = dl.parked.remove(&id) else {
        return true;
    };
    dl.parked_bytes -= u64::from(lib.memory_len);
    tracing::debug!(target: "wasmlink::libs", "evicted the parked copy of {}", lib.name);
    let canonical = lib.reuse.canonical.clone();
    release_regions(cx, &lib, &canonical);
    true
}

/// Gives an unloaded library's data region and the slots of its table region other than its
/// `canonical` ones back to the allocators.
pub(super) fn release_regions(
    mut cx: StoreContextMut<'_, Host>,
    lib: &Library,
    canonical: &[(u32, u32)],
) {
    if !lib.owns_regions {
        return;
    }
    let table = cx.data().dl.table.expect("table");
    let kept: std::collections::HashSet<u32> = canonical.iter().map(|c| c.1).collect();
    for s in lib.table_base..lib.table_base + lib.table_len {
        if !kept.contains(&s) && !cx.data().dl.slots.values().any(|&v| v == s) {
            let _ = table.set(cx.as_context_mut(), u64::from(s), Ref::Func(None));
            cx.data_mut().dl.free_slots.push(s);
        }
    }
    if lib.memory_len > 0 {
        cx.data_mut()
            .dl
            .regions
            .put(u64::from(lib.memory_base), u64::from(lib.memory_len));
    }
}

fn alloc_region_once(
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

pub(super) fn exhausted(who: &str, message: &str) -> LinkError {
    LinkError::Exhausted {
        library: who.to_string(),
        what: "linear memory",
        message: message.to_string(),
    }
}

/// Takes `n` consecutive table slots aligned to `align`, growing the table.
pub(super) fn alloc_slots(
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

/// Compiles `bytes` (read from `path`), or takes the module from the in-memory cache.
pub(super) fn compile(
    engine: &Engine,
    cache: Option<&ModuleCache>,
    path: &Path,
    bytes: &[u8],
    stamp: Option<&wasmlink_engine::cache::FileStamp>,
    stats: &mut Stats,
) -> Result<Module, LinkError> {
    let bad = |e: wasmtime::Error| LinkError::BadModule {
        path: path.to_path_buf(),
        message: format!("{e:#}"),
    };
    match cache {
        Some(c) => {
            let key = timed(&mut stats.hash, || {
                wasmlink_engine::cache::file_key(engine, stamp, bytes)
            });
            timed(&mut stats.code, || {
                c.get_or_compile_wasm(engine, &key, || Ok(bytes), bad)
            })
        }
        None => timed(&mut stats.code, || Module::new(engine, bytes).map_err(bad)),
    }
}

/// [`compile`] when the content key of the bytes is known already; `bytes` is asked only if
/// the module is not cached (in memory or on disk).
pub(super) fn compile_keyed(
    engine: &Engine,
    cache: Option<&ModuleCache>,
    path: &Path,
    bytes: &mut dyn FnMut() -> Result<std::sync::Arc<[u8]>, LinkError>,
    key: [u8; 32],
    stats: &mut Stats,
) -> Result<Module, LinkError> {
    let bad = |e: wasmtime::Error| LinkError::BadModule {
        path: path.to_path_buf(),
        message: format!("{e:#}"),
    };
    match cache {
        Some(c) => timed(&mut stats.code, || {
            c.get_or_compile_wasm(engine, &key, bytes, bad)
        }),
        None => timed(&mut stats.code, || {
            let bytes = bytes()?;
            Module::new(engine, &bytes).map_err(bad)
        }),
    }
}

/// Compiles a module the linker generated (thunks, WASI shims), through the cache.
pub(super) fn compile_generated(
    cx: &StoreContextMut<'_, Host>,
    who: &str,
    what: &str,
    bytes: &[u8],
) -> Result<Module, LinkError> {
    let dl = &cx.data().dl;
    let compile = || Module::new(&dl.engine, bytes).map_err(|e| LinkError::runtime(who, what, e));
    let mut stats = dl.stats.get();
    let module = match &dl.module_cache {
        Some(c) => {
            let key = timed(&mut stats.hash, || content_key(bytes));
            timed(&mut stats.code, || {
                c.get_or_compile_keyed(&dl.engine, &key, compile)
            })
        }
        None => timed(&mut stats.code, compile),
    };
    dl.stats.set(stats);
    module
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

pub(super) fn const_global(
    cx: StoreContextMut<'_, Host>,
    lib: &str,
    v: i32,
) -> Result<Extern, LinkError> {
    Global::new(
        cx,
        GlobalType::new(ValType::I32, Mutability::Const),
        Val::I32(v),
    )
    .map(Extern::Global)
    .map_err(|e| LinkError::runtime(lib, "global", e))
}
