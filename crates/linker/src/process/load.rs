//! Loading: the floor that both the process API and libdl call down into. Finds the
//! needed closure, lays each library out, registers its definitions, instantiates in
//! dependency order and runs constructors.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmlink_dylink::{ExportClass, ImportClass, ImportType, Limits, ModuleInfo, ModuleKind};
use wasmtime::{
    AsContextMut, Extern, Func, Global, GlobalType, Memory, MemoryType, Module, Mutability, Ref,
    RefType, Store, StoreContextMut, Table, TableType, Val, ValType,
};

use super::error::LinkError;
use super::instantiate::instantiate;
use super::layout::{GLOBAL_BASE, PAGE, align_up};
use super::lifecycle::init_dlerror_buf;
use super::own_memory;
use super::resources::{
    alloc_region, alloc_slots, compile, compile_keyed, exhausted, new_instance,
};
use super::state::read;
use super::state::{Bounds, Def, Host, LibId, Library};
use super::stats::timed;

/// Sets up the memory, table and stack from the main program and registers it as library 0.
pub(super) fn setup_main(
    store: &mut Store<Host>,
    path: &Path,
    bytes: Arc<[u8]>,
    info: ModuleInfo,
    stack_size: u32,
    max_memory_pages: u32,
) -> Result<LibId, LinkError> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // An own-memory main (wasm-ld's default `-pie`): its memory and table become the
    // process's, created with its declared types before anything is laid out in them.
    let (bytes, info) = if own_memory::defines_own(&info) {
        let bad = |message: String| LinkError::BadModule {
            path: path.to_path_buf(),
            message,
        };
        let rewritten = own_memory::import_own(&bytes, &info).map_err(|why| {
            bad(format!(
                "cannot share its own memory and table with shared libraries: {why}; {}",
                own_memory::REBUILD
            ))
        })?;
        let info = ModuleInfo::parse(&rewritten).map_err(|e| bad(e.to_string()))?;
        (Arc::<[u8]>::from(rewritten), info)
    } else {
        (bytes, info)
    };
    let mut stats = store.data().dl.stats.get();
    let module = compile(
        &store.data().dl.engine,
        store.data().dl.module_cache.as_ref(),
        path,
        &bytes,
        None,
        &mut stats,
    )?;
    store.data().dl.stats.set(stats);
    let info = Arc::new(info);
    if info.kind == ModuleKind::StaticProgram
        || (info.kind == ModuleKind::Plain && exports_memory(&info))
    {
        return super::load::setup_static_main(store.as_context_mut(), path, name, module, info);
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
    let stack_high = align_up(stack_low + u64::from(stack_size), 16).unwrap_or(u64::MAX);
    if stack_high > u64::from(u32::MAX) {
        return Err(exhausted(&name, "main data and stack exceed 4 GiB"));
    }
    // The memory and table the main declares (as imports): at least their initial sizes,
    // at most their maximums.
    let (mem_limits, table_limits) = declared_limits(&info);
    let pages = stack_high
        .div_ceil(PAGE)
        .max(1)
        .max(mem_limits.map_or(0, |l| l.initial));
    if pages > u64::from(u32::MAX) {
        return Err(exhausted(&name, "its memory's initial size exceeds 4 GiB"));
    }
    let mut max = max_memory_pages.max(pages as u32);
    if let Some(declared) = mem_limits.and_then(|l| l.maximum) {
        if declared < pages {
            return Err(LinkError::BadModule {
                path: path.to_path_buf(),
                message: format!(
                    "its memory's maximum of {declared} pages cannot hold its data and a {stack_size}-byte stack ({pages} pages); rebuild it with a larger -Wl,--max-memory or run it with a smaller --stack-size"
                ),
            });
        }
        max = max.min(declared as u32);
    }
    let memory = Memory::new(&mut *store, MemoryType::new(pages as u32, Some(max)))
        .map_err(|e| exhausted(&name, &e.to_string()))?;
    let table_max = table_limits
        .and_then(|l| l.maximum)
        .map(|m| m.min(u64::from(u32::MAX)) as u32);
    let table = Table::new(
        &mut *store,
        TableType::new(RefType::FUNCREF, 1.min(table_max.unwrap_or(1)), table_max),
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
    // A table the main declares with more initial slots than it uses: grow it to that size.
    let want = table_limits.map_or(0, |l| l.initial);
    let have = table.size(&*store);
    if want > have {
        alloc_slots(store.as_context_mut(), &name, (want - have) as u32, 1)?;
        let grown: Vec<u32> = (have..want).map(|s| s as u32).collect();
        store.data_mut().dl.free_slots.extend(grown);
    }
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
    super::lifecycle::init_dlerror_buf(store.as_context_mut())?;
    Ok(id)
}

/// The limits of the memory and the table `info` imports, if it imports them.
fn declared_limits(info: &ModuleInfo) -> (Option<Limits>, Option<Limits>) {
    let mut memory = None;
    let mut table = None;
    for i in &info.imports {
        match (&i.class, &i.ty) {
            (ImportClass::Memory, ImportType::Memory { limits, .. }) => memory = Some(*limits),
            (ImportClass::Table, ImportType::Table { limits }) => table = Some(*limits),
            _ => {}
        }
    }
    (memory, table)
}

pub(super) fn exports_memory(info: &ModuleInfo) -> bool {
    info.exports.iter().any(|e| e.class == ExportClass::Memory)
}

/// A static main program: its own memory, table and `__stack_pointer` become the process's.
pub(super) fn setup_static_main(
    mut cx: StoreContextMut<'_, Host>,
    path: &Path,
    name: String,
    module: Module,
    info: std::sync::Arc<ModuleInfo>,
) -> Result<LibId, LinkError> {
    let mut externs = Vec::new();
    for imp in module.imports() {
        let ty = imp.ty();
        let ext = match &ty {
            wasmtime::ExternType::Func(fty) => {
                let linker = cx.data().dl.wasi_linker.clone();
                if let Ok(e) = linker.get(cx.as_context_mut(), imp.module(), imp.name()) {
                    e
                } else if let Some(f) = (imp.module() == "env")
                    .then(|| {
                        let host = cx.data().dl.host_symbols;
                        (host.define)(cx.as_context_mut(), imp.name(), fty, Some(0))
                    })
                    .flatten()
                {
                    Extern::Func(f)
                } else {
                    let msg = format!(
                        "symbol lookup error: undefined symbol: {} ({name})",
                        imp.name()
                    );
                    Extern::Func(Func::new(
                        cx.as_context_mut(),
                        fty.clone(),
                        move |_, _, _| Err(wasmtime::format_err!("{msg}")),
                    ))
                }
            }
            _ => {
                return Err(LinkError::BadModule {
                    path: path.to_path_buf(),
                    message: format!(
                        "static program imports {} {}::{}, which wasmlink cannot supply",
                        kind(&ty),
                        imp.module(),
                        imp.name()
                    ),
                });
            }
        };
        externs.push(ext);
    }
    let instance = new_instance(cx.as_context_mut(), &name, "instantiate", &module, &externs)?;
    let exports: Vec<Extern> = instance
        .exports(cx.as_context_mut())
        .map(|e| e.into_extern())
        .collect();
    let memory = exports.iter().find_map(|e| e.clone().into_memory());
    let Some(memory) = memory else {
        return Err(LinkError::BadModule {
            path: path.to_path_buf(),
            message: "exports no memory".to_string(),
        });
    };
    let table = match exports.iter().find_map(|e| e.clone().into_table()) {
        Some(t) => t,
        None => wasmtime::Table::new(
            cx.as_context_mut(),
            wasmtime::TableType::new(wasmtime::RefType::FUNCREF, 1, None),
            Ref::Func(None),
        )
        .map_err(|e| LinkError::runtime(&name, "table", e))?,
    };
    let sp = match instance.get_global(cx.as_context_mut(), "__stack_pointer") {
        Some(g) => g,
        None => wasmtime::Global::new(
            cx.as_context_mut(),
            wasmtime::GlobalType::new(ValType::I32, wasmtime::Mutability::Var),
            Val::I32(0),
        )
        .map_err(|e| LinkError::runtime(&name, "stack", e))?,
    };
    let heap_base = instance
        .get_global(cx.as_context_mut(), "__heap_base")
        .and_then(|g| g.get(cx.as_context_mut()).i32())
        .unwrap_or(0) as u32;
    let end = memory.data_size(cx.as_context_mut()) as u32;
    {
        let dl = &mut cx.data_mut().dl;
        dl.memory = Some(memory);
        dl.table = Some(table);
        dl.stack_pointer = Some(sp);
        dl.bounds = Bounds {
            stack_low: 0,
            stack_high: heap_base,
            heap_base,
            heap_end: end,
        };
    }
    let id = register(
        cx.as_context_mut(),
        name,
        path.to_path_buf(),
        info,
        module,
        0,
        0,
        false,
    )?;
    cx.data_mut().dl.libs[id].as_mut().unwrap().instance = Some(instance);
    cx.data_mut().dl.global_scope.push(id);
    init_dlerror_buf(cx)?;
    Ok(id)
}

/// Adds a library record (regions already chosen) and its definitions.
#[allow(clippy::too_many_arguments)]
pub(super) fn register(
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
    let mut defs = super::state::SymbolMap::default();
    defs.reserve(info.exports.len());
    for (pos, e) in info.exports.iter().enumerate() {
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
        defs.insert(e.name.clone(), (def, pos as u32));
    }
    let mi = info.dylink.as_ref().map(|d| d.mem_info).unwrap_or_default();
    let lib = Library {
        name,
        path,
        canonical: std::sync::OnceLock::new(),
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
        tls: None,
        incarnation: 0,
        revive: false,
        reuse: super::state::Reuse::default(),
        own_slots: std::cell::OnceCell::new(),
    };
    let dl = &mut cx.data_mut().dl;
    dl.libs.push(Some(lib));
    if dl.opening > 0 {
        dl.loading.push(id);
    }
    dl.generation += 1;
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
    let read_started = std::time::Instant::now();
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
            stamp: None,
        }
    } else {
        cx.data()
            .dl
            .search
            .find(&name_str, req_path.as_deref(), &runpath)?
    };
    add_read(&cx, read_started, &found);
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

pub(super) fn find_loaded(cx: &StoreContextMut<'_, Host>, name: &str) -> Option<LibId> {
    let base = Path::new(name).file_name()?.to_string_lossy().into_owned();
    let canon = Path::new(name).canonicalize().ok();
    cx.data().dl.libs.iter().enumerate().find_map(|(i, l)| {
        let l = l.as_ref()?;
        let same = if name.contains('/') {
            canon.as_ref().is_some_and(|c| {
                l.canonical
                    .get_or_init(|| l.path.canonicalize().ok())
                    .as_ref()
                    == Some(c)
            })
        } else {
            l.name == base
        };
        same.then_some(i)
    })
}

/// Lays out and registers one library found on disk.
pub(super) fn add_library(
    mut cx: StoreContextMut<'_, Host>,
    name: String,
    found: crate::resolve::Found,
) -> Result<LibId, LinkError> {
    let crate::resolve::Found {
        path,
        info,
        bytes,
        stamp,
    } = found;
    if !info.is_dynamic() {
        return Err(LinkError::BadModule {
            path,
            message: "not a shared library (no dylink.0 section)".to_string(),
        });
    }
    // Only the main program's memory and table can become the process's; a library with its
    // own would silently keep its data and functions apart from everyone else's.
    if own_memory::defines_own(&info) {
        let what = if info.defined_memories.is_empty() {
            "table"
        } else {
            "memory"
        };
        return Err(LinkError::BadModule {
            path,
            message: format!(
                "a shared library that defines its own {what} cannot share the process's; {}",
                own_memory::REBUILD
            ),
        });
    }
    // A stamped library found by the search was parsed without its code, its bytes unread:
    // with the key recorded for its stamp they are read only if its compiled code is not cached.
    let recorded = match (&bytes, &stamp) {
        (None, Some(s)) => wasmlink_engine::cache::recorded_key(&cx.data().dl.engine, s),
        _ => None,
    };
    let mut bytes = match (bytes, recorded) {
        (Some(b), _) => Some(b),
        (None, Some(_)) => None,
        (None, None) => Some(read_as_stamped(&path, stamp.as_ref())?),
    };
    let dl = &cx.data().dl;
    let mut stats = dl.stats.get();
    let key = match (recorded, &bytes) {
        (Some(key), _) => key,
        (None, Some(b)) => timed(&mut stats.hash, || {
            wasmlink_engine::cache::file_key(&dl.engine, stamp.as_ref(), b)
        }),
        (None, None) => unreachable!("bytes are read when no key is recorded"),
    };
    dl.stats.set(stats);
    // The same module parked by an earlier dlclose: its instance, data region and slots again.
    if let Some(id) = unpark(cx.as_context_mut(), &name, &path, &key) {
        return Ok(id);
    }
    let dl = &cx.data().dl;
    let mut stats = dl.stats.get();
    let module = compile_keyed(
        &dl.engine,
        dl.module_cache.as_ref(),
        &path,
        &mut || match &bytes {
            Some(b) => Ok(b.clone()),
            None => {
                let b = read_as_stamped(&path, stamp.as_ref())?;
                bytes = Some(b.clone());
                Ok(b)
            }
        },
        key,
        &mut stats,
    )?;
    dl.stats.set(stats);
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
    let id = register(
        cx.as_context_mut(),
        name,
        path,
        info,
        module,
        memory_base,
        table_base,
        true,
    )?;
    cx.data_mut().dl.libs[id].as_mut().unwrap().reuse.key = Some(key);
    Ok(id)
}

/// Takes library `name` at `path` with content `key` back from the parked libraries, if it is
/// there: it gets its id, data region, table region and canonical slots back, and its instance
/// is reused at instantiation if its imports still resolve the same.
fn unpark(
    mut cx: StoreContextMut<'_, Host>,
    name: &str,
    path: &Path,
    key: &[u8; 32],
) -> Option<LibId> {
    let dl = &mut cx.data_mut().dl;
    let id = *dl.parked_order.iter().find(|id| {
        dl.parked
            .get(id)
            .is_some_and(|l| l.name == name && l.path == path && l.reuse.key.as_ref() == Some(key))
    })?;
    let mut lib = dl.parked.remove(&id)?;
    dl.parked_order.retain(|&p| p != id);
    dl.parked_bytes -= u64::from(lib.memory_len);
    lib.refcount = 1;
    lib.deps.clear();
    lib.local_scope = vec![id];
    lib.nodelete = false;
    lib.revive = true;
    for (index, slot) in std::mem::take(&mut lib.reuse.canonical) {
        dl.slots.insert(super::state::SlotKey::Def(id, index), slot);
    }
    for (k, g) in std::mem::take(&mut lib.reuse.got_func) {
        dl.got_func.entry(k).or_insert(g);
    }
    tracing::debug!(
        target: "wasmlink::libs",
        "loading {name} again from its parked copy: __memory_base={:#x}, __table_base={}",
        lib.memory_base,
        lib.table_base
    );
    dl.libs[id] = Some(lib);
    if dl.opening > 0 {
        dl.loading.push(id);
    }
    dl.generation += 1;
    Some(id)
}

/// Loads (breadth first) everything `root` needs that is not loaded yet, then binds,
/// instantiates and initialises every new library, dependencies first.
pub(super) fn load_tree_from(
    mut cx: StoreContextMut<'_, Host>,
    root: LibId,
) -> Result<LibId, LinkError> {
    let mut order = vec![root];
    let mut in_order = std::collections::HashSet::from([root]);
    let mut queue = VecDeque::from([root]);
    let root_global = cx.data().dl.global_scope.contains(&root);
    while let Some(id) = queue.pop_front() {
        let (needed, path, runpath) = {
            let l = cx.data().dl.lib(id);
            (
                l.info
                    .dylink
                    .as_ref()
                    .map(|d| {
                        d.needed_unique()
                            .into_iter()
                            .map(str::to_string)
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default(),
                l.path.clone(),
                l.info.runtime_path().to_vec(),
            )
        };
        let mut deps = Vec::new();
        for n in needed {
            let dep = match find_loaded(&cx, &n) {
                Some(d) => {
                    if !in_order.contains(&d) {
                        cx.data_mut().dl.libs[d].as_mut().unwrap().refcount += 1;
                    }
                    d
                }
                None => {
                    let read_started = std::time::Instant::now();
                    let found = cx.data().dl.search.find(&n, Some(&path), &runpath)?;
                    add_read(&cx, read_started, &found);
                    let d = add_library(cx.as_context_mut(), n.clone(), found)?;
                    if root_global {
                        cx.data_mut().dl.global_scope.push(d);
                    }
                    order.push(d);
                    in_order.insert(d);
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
        let mut in_scope = std::collections::HashSet::from([id]);
        let mut i = 0;
        while i < scope.len() {
            let deps = cx.data().dl.lib(scope[i]).deps.clone();
            for d in deps {
                if in_scope.insert(d) {
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
        .filter(|&id| {
            let l = cx.data().dl.lib(id);
            l.instance.is_none() || l.revive
        })
        .collect();
    for &id in &new {
        let before = cx.data().dl.stats.get();
        let t = std::time::Instant::now();
        instantiate(cx.as_context_mut(), id)?;
        let elapsed = t.elapsed();
        let stats = &cx.data().dl.stats;
        let mut s = stats.get();
        // What instantiating compiled (thunks, WASI shims) and relocated is counted there.
        let inner = (s.hash + s.code + s.relocate) - (before.hash + before.code + before.relocate);
        s.instantiate += elapsed.saturating_sub(inner);
        stats.set(s);
    }
    for &id in &new {
        if cx.data().dl.run_constructors {
            let t = std::time::Instant::now();
            super::lifecycle::run_ctors(cx.as_context_mut(), id)?;
            let stats = &cx.data().dl.stats;
            let mut s = stats.get();
            s.ctors += t.elapsed();
            stats.set(s);
        }
    }
    Ok(root)
}

/// Reads a library's bytes after its model was parsed: the file must still have the stamp it
/// had then (a file rewritten since would not match the model), else one line says so.
fn read_as_stamped(
    path: &Path,
    stamp: Option<&wasmlink_engine::cache::FileStamp>,
) -> Result<Arc<[u8]>, LinkError> {
    let Some(stamp) = stamp else {
        return Ok(read(path)?.into());
    };
    let (bytes, now) = wasmlink_engine::cache::read_stamped(path).map_err(|e| LinkError::Io {
        path: path.to_path_buf(),
        message: e.to_string().to_lowercase(),
    })?;
    if now.as_ref() != Some(stamp) {
        return Err(LinkError::Io {
            path: path.to_path_buf(),
            message: "the file changed while it was being loaded; load it again".to_string(),
        });
    }
    Ok(bytes.into())
}

/// Counts a module found on disk in the statistics' read phase.
fn add_read(
    cx: &StoreContextMut<'_, Host>,
    started: std::time::Instant,
    found: &crate::resolve::Found,
) {
    let stats = &cx.data().dl.stats;
    let mut s = stats.get();
    s.read += started.elapsed();
    s.files += 1;
    s.bytes += found
        .bytes
        .as_ref()
        .map_or_else(|| found.stamp.map_or(0, |st| st.size), |b| b.len() as u64);
    stats.set(s);
}

pub(super) fn check_duplicates(
    cx: &StoreContextMut<'_, Host>,
    order: &[LibId],
) -> Result<(), LinkError> {
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

pub(super) fn kind(t: &wasmtime::ExternType) -> &'static str {
    match t {
        wasmtime::ExternType::Func(_) => "function",
        wasmtime::ExternType::Global(_) => "global",
        wasmtime::ExternType::Table(_) => "table",
        wasmtime::ExternType::Memory(_) => "memory",
        wasmtime::ExternType::Tag(_) => "tag",
    }
}
