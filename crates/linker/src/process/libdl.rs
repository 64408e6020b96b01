//! libdl inside wasm (`dlopen`, `dlsym`, `dlclose`, `dlerror`, `dladdr`), `__cxa_atexit`,
//! constructors, destructors, entry points and unloading.
//!
//! The functions are supplied as `env` imports with wasi-libc's ABI: flags
//! `RTLD_LAZY=1, RTLD_NOW=2, RTLD_NOLOAD=4, RTLD_LOCAL=8, RTLD_GLOBAL=256, RTLD_NODELETE=4096`,
//! handles `RTLD_DEFAULT=0` and `RTLD_NEXT=-1`. A handle is the library's id plus one. Errors
//! are kept for `dlerror`, which returns them in glibc's wording from a buffer the linker owns.

use std::path::{Path, PathBuf};

use wasmtime::{AsContextMut, Caller, Func, FuncType, Ref, StoreContextMut, Val, ValType};

use super::bind::func_slot_for;
use super::error::LinkError;
use super::lifecycle::DLERROR_BUF;
use super::lifecycle::run_atexit;
use super::load::{find_loaded, load_tree};
use super::resources::{alloc_region, evict_parked, release_regions};
use super::state::Symbol;
use super::state::tracing_symbols;
use super::state::{Def, Host, LibId, PARKED_BYTES, PARKED_MAX, SlotKey};

/// Resolve functions when first called (accepted; binding is lazy by default).
pub const RTLD_LAZY: i32 = 1;
/// Resolve everything now.
pub const RTLD_NOW: i32 = 2;
/// Do not load: return a handle only if already loaded.
pub const RTLD_NOLOAD: i32 = 4;
/// Symbols visible only through the handle and to the library's own dependencies.
pub const RTLD_LOCAL: i32 = 8;
/// Symbols join the global scope.
pub const RTLD_GLOBAL: i32 = 256;
/// Never unload.
pub const RTLD_NODELETE: i32 = 4096;
/// `dlsym` handle: search the global scope.
pub const RTLD_DEFAULT: u32 = 0;
/// `dlsym` handle: the next definition after the caller's library.
pub const RTLD_NEXT: u32 = u32::MAX;

pub(super) const HOST_SYMBOLS: [&str; 6] = [
    "dlopen",
    "dlsym",
    "dlclose",
    "dlerror",
    "dladdr",
    "__cxa_atexit",
];

/// Whether the linker itself supplies `sym` when no library defines it.
pub(super) fn is_host_symbol(sym: &str) -> bool {
    HOST_SYMBOLS.contains(&sym)
}

/// Whether `sym` is one of libdl's functions, which the linker always supplies itself, even
/// when a library (such as wit-component's libdl.so) defines them, as ld.so does.
pub(super) fn is_dl_symbol(sym: &str) -> bool {
    HOST_SYMBOLS[..5].contains(&sym)
}

pub(super) fn read_cstr(mem: &[u8], addr: u32, max: usize) -> Option<String> {
    let start = addr as usize;
    let tail = mem.get(start..)?;
    let len = tail.iter().take(max).position(|&b| b == 0)?;
    Some(String::from_utf8_lossy(&tail[..len]).into_owned())
}

pub(super) fn memory_str(cx: &mut Caller<'_, Host>, addr: i32) -> Result<String, String> {
    let mem = cx.data().dl.memory.expect("memory");
    read_cstr(mem.data(&*cx), addr as u32, 4096)
        .ok_or_else(|| format!("string pointer {addr:#x} is out of bounds or unterminated"))
}

/// The library that contains function table slot or address `caller_slot`, for RTLD_NEXT and
/// `dladdr`.
pub(super) fn lib_of_slot(cx: &StoreContextMut<'_, Host>, slot: u32) -> Option<LibId> {
    let dl = &cx.data().dl;
    dl.libs.iter().enumerate().find_map(|(i, l)| {
        let l = l.as_ref()?;
        (slot >= l.table_base && slot < l.table_base + l.table_len.max(1)).then_some(i)
    })
}

/// A host-supplied libdl function, if `sym` is one and `fty` is its type.
///
/// `caller` is the library the import belongs to: `dlsym(RTLD_NEXT, ...)` searches after it,
/// and `dlopen` searches its RUNPATH.
pub(super) fn host_function(
    cx: StoreContextMut<'_, Host>,
    sym: &str,
    fty: &FuncType,
    caller: Option<LibId>,
) -> Option<Func> {
    let p: Vec<ValType> = fty.params().collect();
    let r: Vec<ValType> = fty.results().collect();
    let ok = |np| {
        p.iter().all(|t| matches!(t, ValType::I32))
            && p.len() == np
            && r.len() == 1
            && matches!(r[0], ValType::I32)
    };
    Some(match sym {
        "dlopen" if ok(2) => Func::wrap(
            cx,
            move |mut c: Caller<'_, Host>, path: i32, flags: i32| -> i32 {
                let name = match memory_str(&mut c, path) {
                    Ok(n) => n,
                    Err(e) => {
                        c.data_mut().dl.dlerror = Some(format!("dlopen: {e}"));
                        return 0;
                    }
                };
                match open(c.as_context_mut(), &name, flags, caller) {
                    Ok(h) => h as i32,
                    Err(e) => {
                        c.data_mut().dl.dlerror = Some(dlerror_text(&name, &e));
                        0
                    }
                }
            },
        ),
        "dlsym" if ok(2) => Func::wrap(
            cx,
            move |mut c: Caller<'_, Host>, handle: i32, name: i32| -> i32 {
                let name = match memory_str(&mut c, name) {
                    Ok(n) => n,
                    Err(e) => {
                        c.data_mut().dl.dlerror = Some(format!("dlsym: {e}"));
                        return 0;
                    }
                };
                match lookup_sym(c.as_context_mut(), handle as u32, &name, caller) {
                    Ok(s) => s.address() as i32,
                    Err(e) => {
                        c.data_mut().dl.dlerror = Some(match e {
                            LinkError::BadHandle(h) => format!("dlsym: invalid handle {h}"),
                            LinkError::NoSuchSymbol { symbol, library } => {
                                format!("{library}: undefined symbol: {symbol}")
                            }
                            other => other.to_string(),
                        });
                        0
                    }
                }
            },
        ),
        "dlclose" if ok(1) => Func::wrap(cx, |mut c: Caller<'_, Host>, handle: i32| -> i32 {
            match close(c.as_context_mut(), handle as u32) {
                Ok(()) => 0,
                Err(e) => {
                    c.data_mut().dl.dlerror = Some(match e {
                        LinkError::BadHandle(h) => format!("dlclose: invalid handle {h}"),
                        other => other.to_string(),
                    });
                    -1
                }
            }
        }),
        "dlerror" if ok(0) => Func::wrap(cx, |mut c: Caller<'_, Host>| -> i32 {
            let Some(msg) = c.data_mut().dl.dlerror.take() else {
                return 0;
            };
            let buf = c.data().dl.dlerror_buf;
            let mem = c.data().dl.memory.expect("memory");
            let mut bytes: Vec<u8> = msg.into_bytes();
            bytes.truncate(DLERROR_BUF as usize - 1);
            bytes.push(0);
            match mem.write(&mut c, buf as usize, &bytes) {
                Ok(()) => buf as i32,
                Err(_) => 0,
            }
        }),
        "dladdr" if ok(2) => {
            Func::wrap(cx, |mut c: Caller<'_, Host>, addr: i32, info: i32| -> i32 {
                dladdr(c.as_context_mut(), addr as u32, info as u32).unwrap_or(0)
            })
        }
        "__cxa_atexit" if ok(3) => Func::wrap(
            cx,
            |mut c: Caller<'_, Host>, f: i32, arg: i32, dso: i32| -> i32 {
                c.data_mut().atexit.push((f as u32, arg as u32, dso as u32));
                0
            },
        ),
        _ => return None,
    })
}

/// glibc's wording for a failed `dlopen`.
pub(super) fn dlerror_text(name: &str, e: &LinkError) -> String {
    match e {
        LinkError::NotFound(_) => {
            format!("{name}: cannot open shared object file: No such file or directory")
        }
        LinkError::Refused { .. } => {
            format!("{name}: cannot open shared object file: Operation not permitted")
        }
        other => {
            let text = other.to_string();
            let base = Path::new(name)
                .file_name()
                .map(|b| b.to_string_lossy().into_owned())
                .unwrap_or_default();
            if text.starts_with(name) || (!base.is_empty() && text.starts_with(&base)) {
                text
            } else {
                format!("{name}: {text}")
            }
        }
    }
}

/// `dlopen(name, flags)`: loads `name` (and what it needs) or finds it loaded; returns a handle.
pub(super) fn open(
    mut cx: StoreContextMut<'_, Host>,
    name: &str,
    flags: i32,
    caller: Option<LibId>,
) -> Result<u32, LinkError> {
    let global = flags & RTLD_GLOBAL != 0;
    let is_path = name.contains('/');
    if is_path {
        check_allowed(&cx, Path::new(name))?;
    }
    let existing = find_loaded(&cx, name);
    let id = if flags & RTLD_NOLOAD != 0 {
        // Only a library already loaded; it still counts as an open and may be promoted.
        existing.ok_or_else(|| {
            LinkError::NotFound(crate::resolve::NotFound {
                name: name.to_string(),
                searched: vec![],
                skipped: vec![],
            })
        })?
    } else {
        let before = cx.data().dl.libs.len();
        // What this load registers is listed from `mark` on, for a rollback; a dlopen made by
        // a constructor during the load adds to the same list.
        let top = cx.data().dl.opening == 0;
        if top {
            cx.data_mut().dl.loading.clear();
        }
        let mark = cx.data().dl.loading.len();
        cx.data_mut().dl.opening += 1;
        let loaded = load_tree(
            cx.as_context_mut(),
            Path::new(name),
            caller,
            global,
            is_path,
        );
        cx.data_mut().dl.opening -= 1;
        match loaded {
            Ok(id) => {
                if top {
                    cx.data_mut().dl.loading.clear();
                }
                id
            }
            Err(e) => {
                rollback(cx.as_context_mut(), before, mark);
                return Err(e);
            }
        }
    };
    let dl = &mut cx.data_mut().dl;
    if existing.is_some() {
        dl.libs[id].as_mut().unwrap().refcount += 1;
    }
    if global && !dl.global_scope.contains(&id) {
        // Promotion of an already-loaded RTLD_LOCAL library, as glibc does.
        let scope = dl.lib(id).local_scope.clone();
        for l in scope {
            if !dl.global_scope.contains(&l) {
                dl.global_scope.push(l);
            }
        }
    }
    if flags & RTLD_NODELETE != 0 {
        dl.libs[id].as_mut().unwrap().nodelete = true;
    }
    if flags & RTLD_NOW != 0 {
        // Everything is bound at instantiation; report strong symbols nothing defines.
        let l = dl.lib(id);
        for i in l.info.undefined_symbols() {
            if let Some(s) = i.class.symbol()
                && !i.is_weak()
                && dl.lookup(s, Some(id)).is_none()
                && !is_host_symbol(s)
            {
                return Err(LinkError::Undefined {
                    symbol: s.to_string(),
                    library: l.name.clone(),
                });
            }
        }
    }
    Ok(id as u32 + 1)
}

/// Removes the libraries a failed load registered or took back from the parked ones (those in
/// `loading` from `mark` on), and the ids at or after `first`.
pub(super) fn rollback(mut cx: StoreContextMut<'_, Host>, first: LibId, mark: usize) {
    let ids: Vec<LibId> = {
        let loading = &mut cx.data_mut().dl.loading;
        let at = mark.min(loading.len());
        loading.drain(at..).collect()
    };
    for id in ids.into_iter().rev() {
        unload_one(cx.as_context_mut(), id, false);
    }
    let n = cx.data().dl.libs.len();
    for id in (first..n).rev() {
        unload_one(cx.as_context_mut(), id, false);
    }
    cx.data_mut().dl.libs.truncate(first);
}

/// A path given to `dlopen` must lie inside a directory of the search path.
pub(super) fn check_allowed(cx: &StoreContextMut<'_, Host>, path: &Path) -> Result<(), LinkError> {
    let dirs = cx.data().dl.search.dirs_for(None, &[]);
    let canon = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let ok = dirs.iter().any(|d| {
        d.canonicalize()
            .map(|d| canon.starts_with(d))
            .unwrap_or(false)
    });
    if ok {
        Ok(())
    } else {
        Err(LinkError::Refused {
            path: PathBuf::from(path),
        })
    }
}

pub(super) fn handle_lib(cx: &StoreContextMut<'_, Host>, handle: u32) -> Result<LibId, LinkError> {
    let id = handle.checked_sub(1).ok_or(LinkError::BadHandle(handle))? as usize;
    match cx.data().dl.libs.get(id) {
        Some(Some(_)) => Ok(id),
        _ => Err(LinkError::BadHandle(handle)),
    }
}

/// `dlsym(handle, name)`.
pub(super) fn lookup_sym(
    mut cx: StoreContextMut<'_, Host>,
    handle: u32,
    name: &str,
    caller: Option<LibId>,
) -> Result<Symbol, LinkError> {
    let def = {
        let dl = &cx.data().dl;
        match handle {
            RTLD_DEFAULT => dl.lookup(name, None),
            RTLD_NEXT => {
                let after = caller
                    .and_then(|c| dl.global_scope.iter().position(|&g| g == c))
                    .map_or(0, |p| p + 1);
                let scope = &dl.global_scope[after.min(dl.global_scope.len())..];
                let def = scope
                    .iter()
                    .filter_map(|&id| dl.libs[id].as_ref())
                    .find_map(|l| l.defs.get(name).map(|d| d.0));
                if tracing_symbols() {
                    let requester = caller.map_or("host", |c| dl.lib(c).name.as_str());
                    let requester = format!("{requester} (RTLD_NEXT)");
                    dl.trace_symbol(name, &requester, scope.iter().copied(), def);
                }
                def
            }
            h => {
                let id = handle_lib(&cx, h)?;
                let scope = &dl.lib(id).local_scope;
                let def = scope
                    .iter()
                    .filter_map(|&i| dl.libs[i].as_ref())
                    .find_map(|l| l.defs.get(name).map(|d| d.0));
                if tracing_symbols() {
                    let requester = format!("dlsym(handle of {})", dl.lib(id).name);
                    dl.trace_symbol(name, &requester, scope.iter().copied(), def);
                }
                def
            }
        }
    };
    let library = match handle {
        RTLD_DEFAULT | RTLD_NEXT => "RTLD_DEFAULT".to_string(),
        h => cx.data().dl.lib_name(h as usize - 1),
    };
    match def {
        Some(d @ Def::Func { lib, .. }) => {
            let l = cx.data().dl.lib(lib);
            let fty = l
                .module
                .get_export(name)
                .and_then(|t| t.func().cloned())
                .expect("function export");
            Ok(Symbol::Function(func_slot_for(
                cx.as_context_mut(),
                name,
                Some(d),
                &fty,
            )?))
        }
        Some(Def::Data { addr, .. }) => Ok(Symbol::Data(addr)),
        Some(Def::Tls { lib, offset }) => {
            let base = tls_base(cx.as_context_mut(), lib).unwrap_or(0);
            Ok(Symbol::Data(base + offset))
        }
        Some(Def::Tag { .. }) | None => Err(LinkError::NoSuchSymbol {
            symbol: name.to_string(),
            library,
        }),
    }
}

/// The canonical slot of function `symbol` (for hot swap).
pub(super) fn func_slot(
    cx: StoreContextMut<'_, Host>,
    symbol: &str,
    _caller: Option<LibId>,
) -> Result<u32, LinkError> {
    match lookup_sym(cx, RTLD_DEFAULT, symbol, None)? {
        Symbol::Function(s) => Ok(s),
        Symbol::Data(_) => Err(LinkError::NoSuchSymbol {
            symbol: symbol.to_string(),
            library: "RTLD_DEFAULT".to_string(),
        }),
    }
}

pub(super) fn tls_base(mut cx: StoreContextMut<'_, Host>, lib: LibId) -> Option<u32> {
    let inst = cx.data().dl.lib(lib).instance?;
    match inst
        .get_global(cx.as_context_mut(), "__tls_base")?
        .get(cx.as_context_mut())
    {
        Val::I32(v) => Some(v as u32),
        _ => None,
    }
}

/// `dlclose(handle)`: decrements the count; at 0 runs the library's destructors and unloads
/// it, then releases its dependencies in turn.
pub(super) fn close(mut cx: StoreContextMut<'_, Host>, handle: u32) -> Result<(), LinkError> {
    let id = handle_lib(&cx, handle)?;
    release(cx.as_context_mut(), id)
}

pub(super) fn release(mut cx: StoreContextMut<'_, Host>, id: LibId) -> Result<(), LinkError> {
    let (count, nodelete, deps) = {
        let l = cx.data_mut().dl.libs[id].as_mut().expect("open library");
        l.refcount = l.refcount.saturating_sub(1);
        (l.refcount, l.nodelete || id == 0, l.deps.clone())
    };
    if count > 0 || nodelete {
        return Ok(());
    }
    run_atexit(cx.as_context_mut(), Some(id))?;
    unload_one(cx.as_context_mut(), id, true);
    for d in deps {
        if cx.data().dl.libs.get(d).is_some_and(Option::is_some) {
            release(cx.as_context_mut(), d)?;
        }
    }
    Ok(())
}

/// Removes a library: its symbols leave every scope, its canonical slots are re-pointed to
/// another definition if one exists now, else to a trap, and its TLS block goes back to the
/// region allocator.
///
/// With `park` (a `dlclose`), a library whose regions the linker owns is parked: its instance,
/// data region, table region and canonical slots stay reserved for a `dlopen` of the same
/// module, which reuses them (see `load::unpark`), so cycles of one library leave nothing
/// behind. At most [`PARKED_MAX`] libraries and [`PARKED_BYTES`] bytes of data stay parked,
/// and parked libraries are evicted, oldest first, when memory or the table cannot grow. An
/// evicted (or rolled back) library gives its data region and the other slots of its table
/// region back to the allocators; its canonical slots trap for good, so that a stale function
/// pointer never reaches another function, and its instance stays in the store until the
/// process ends (wasmtime cannot free part of a store), within `ProcessBuilder::max_instances`.
pub(super) fn unload_one(mut cx: StoreContextMut<'_, Host>, id: LibId, park: bool) {
    let Some(mut lib) = cx.data_mut().dl.libs.get_mut(id).and_then(Option::take) else {
        return;
    };
    let table = cx.data().dl.table.expect("table");
    {
        let dl = &mut cx.data_mut().dl;
        dl.generation += 1;
        dl.global_scope.retain(|&g| g != id);
        for l in dl.libs.iter_mut().flatten() {
            l.local_scope.retain(|&g| g != id);
            l.deps.retain(|&g| g != id);
        }
    }
    // Canonical slots of its functions: re-point to another definition if one exists now,
    // else to a trap, so stale function pointers fail cleanly instead of running freed code.
    // They are never given to another function (a reload of the same module gets them back).
    let mut canonical = Vec::new();
    for (n, index) in lib.functions() {
        let key = SlotKey::Def(id, index);
        if let Some(g) = cx.data_mut().dl.got_func.remove(&key) {
            lib.reuse.got_func.push((key.clone(), g));
        }
        let Some(slot) = cx.data_mut().dl.slots.remove(&key) else {
            continue;
        };
        canonical.push((index, slot));
        let cur = table.get(cx.as_context_mut(), u64::from(slot));
        let Some(Ref::Func(Some(f))) = cur else {
            continue;
        };
        let replacement = match cx.data().dl.lookup(&n, None) {
            Some(Def::Func { lib: other, .. }) => cx
                .data()
                .dl
                .lib(other)
                .instance
                .and_then(|i| i.get_func(cx.as_context_mut(), &n)),
            _ => None,
        };
        let f = match replacement.or_else(|| lib.reuse.traps.get(&slot).copied()) {
            Some(f) => f,
            None => {
                let msg = format!(
                    "symbol lookup error: undefined symbol: {n} ({} was unloaded)",
                    lib.name
                );
                let fty = f.ty(cx.as_context_mut());
                let trap = Func::new(cx.as_context_mut(), fty, move |_, _, _| {
                    Err(wasmtime::format_err!("{msg}"))
                });
                lib.reuse.traps.insert(slot, trap);
                trap
            }
        };
        let _ = table.set(cx.as_context_mut(), u64::from(slot), Ref::Func(Some(f)));
    }
    // GOT.mem entries pointing into its data region now point nowhere: zero them.
    let (lo, hi) = (lib.memory_base, lib.memory_base + lib.memory_len.max(1));
    let stale: Vec<(String, u32)> = cx
        .data()
        .dl
        .got_mem
        .keys()
        .filter(|(_, addr)| *addr >= lo && *addr < hi)
        .cloned()
        .collect();
    for k in stale {
        if let Some(g) = cx.data_mut().dl.got_mem.remove(&k) {
            let _ = g.set(cx.as_context_mut(), Val::I32(0));
            lib.reuse.got_mem.push((k, g));
        }
    }
    if let Some((at, size)) = lib.tls.take() {
        cx.data_mut()
            .dl
            .regions
            .put(u64::from(at), u64::from(size.max(1)));
    }
    tracing::debug!(target: "wasmlink::libs", "unloaded {}", lib.name);
    if !(park && lib.owns_regions && lib.reuse.snapshot && lib.instance.is_some() && !lib.revive) {
        release_regions(cx, &lib, &canonical);
        return;
    }
    // Parked: the other slots of its table region hold nothing (a call through a stale
    // pointer to a static function traps) until a reload puts its elements back.
    let canon: std::collections::HashSet<u32> = canonical.iter().map(|c| c.1).collect();
    for s in lib.table_base..lib.table_base + lib.table_len {
        if !canon.contains(&s) {
            let _ = table.set(cx.as_context_mut(), u64::from(s), Ref::Func(None));
        }
    }
    lib.reuse.canonical = canonical;
    lib.refcount = 0;
    let dl = &mut cx.data_mut().dl;
    dl.parked_bytes += u64::from(lib.memory_len);
    dl.parked.insert(id, lib);
    dl.parked_order.push_back(id);
    loop {
        let dl = &cx.data().dl;
        if dl.parked.len() <= PARKED_MAX && dl.parked_bytes <= PARKED_BYTES {
            break;
        }
        if !evict_parked(cx.as_context_mut()) {
            break;
        }
    }
}

/// `dladdr(addr, info)`: which library contains a function slot or data address. The strings
/// it returns live in one linker-owned buffer, valid until the next `dladdr` (as glibc allows).
pub(super) fn dladdr(mut cx: StoreContextMut<'_, Host>, addr: u32, info: u32) -> Option<i32> {
    let slot_lib = cx.data().dl.slots.iter().find_map(|(k, s)| match k {
        SlotKey::Def(lib, _) if *s == addr => Some(*lib),
        _ => None,
    });
    let id = {
        let dl = &cx.data().dl;
        dl.libs.iter().enumerate().find_map(|(i, l)| {
            let l = l.as_ref()?;
            (addr >= l.memory_base && addr < l.memory_base + l.memory_len).then_some(i)
        })
    }
    .or(slot_lib)
    .or_else(|| lib_of_slot(&cx, addr))?;
    let (fname, base) = {
        let l = cx.data().dl.lib(id);
        (l.path.display().to_string(), l.memory_base)
    };
    let sname = slot_lib.and_then(|_| cx.data().dl.slot_names.get(&addr).cloned());
    if cx.data().dl.dladdr_buf == 0 {
        let at = alloc_region(cx.as_context_mut(), "dladdr", 2 * u64::from(DLERROR_BUF), 8).ok()?;
        cx.data_mut().dl.dladdr_buf = at;
    }
    let buf = cx.data().dl.dladdr_buf;
    let cstr = |s: &str| {
        let mut b: Vec<u8> = s.as_bytes().to_vec();
        b.truncate(DLERROR_BUF as usize - 1);
        b.push(0);
        b
    };
    let mem = cx.data().dl.memory.expect("memory");
    mem.write(cx.as_context_mut(), buf as usize, &cstr(&fname))
        .ok()?;
    let (sname_at, saddr) = match sname {
        Some(n) => {
            let at = buf + DLERROR_BUF;
            mem.write(cx.as_context_mut(), at as usize, &cstr(&n))
                .ok()?;
            (at, addr)
        }
        None => (0, 0),
    };
    let mut rec = Vec::with_capacity(16);
    for v in [buf, base, sname_at, saddr] {
        rec.extend_from_slice(&v.to_le_bytes());
    }
    mem.write(cx.as_context_mut(), info as usize, &rec).ok()?;
    Some(1)
}
