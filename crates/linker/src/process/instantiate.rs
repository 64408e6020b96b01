//! Instantiating one laid-out library: its imports bound (functions, GOT, WASI, tags),
//! relocations applied, TLS initialised.

use wasmlink_dylink::ImportClass;
use wasmtime::{
    AsContextMut, Extern, ExternType, Global, GlobalType, Mutability, StoreContextMut, Val, ValType,
};

use super::bind::Binding;
use super::bind::{fill_slots, function_import, got_func, got_mem, tag, trap_func};
use super::error::LinkError;
use super::resources::{compile_generated, const_global, new_instance};
use super::state::{Def, Host, LibId};
use super::wasi::{bind_wasi, wasi2_import};

/// Binds every import of library `id`, instantiates it, fills the canonical slots of its
/// functions and applies its data relocations.
pub(super) fn instantiate(mut cx: StoreContextMut<'_, Host>, id: LibId) -> Result<(), LinkError> {
    let revived = cx.data().dl.lib(id).revive && revive(cx.as_context_mut(), id)?;
    if !revived {
        bind_and_instantiate(cx.as_context_mut(), id)?;
    }
    let (instance, name) = {
        let l = cx.data().dl.lib(id);
        (l.instance.expect("instantiated"), l.name.clone())
    };
    fill_slots(cx.as_context_mut(), id)?;
    if let Some(f) = instance.get_func(cx.as_context_mut(), "__wasm_apply_data_relocs") {
        let t = std::time::Instant::now();
        f.call(cx.as_context_mut(), &[], &mut [])
            .map_err(|e| LinkError::runtime(&name, "__wasm_apply_data_relocs", e))?;
        let stats = &cx.data().dl.stats;
        let mut s = stats.get();
        s.relocate += t.elapsed();
        stats.set(s);
    }
    super::lifecycle::init_tls(cx, id)?;
    Ok(())
}

/// Reuses the parked instance of library `id` if every symbol import resolves as it did when
/// the instance was made (same definitions, definers with the same instances): its data and
/// table regions are put back as instantiation left them and the `GOT.mem` entries unloading
/// zeroed are restored. Returns false (a new instance is needed) otherwise.
fn revive(mut cx: StoreContextMut<'_, Host>, id: LibId) -> Result<bool, LinkError> {
    let same = {
        let dl = &cx.data().dl;
        let l = dl.lib(id);
        l.reuse.bound.iter().all(|(sym, def, incarnation)| {
            let now = dl.lookup(sym, Some(id));
            now == *def
                && now.is_none_or(|d| {
                    let definer = dl.lib(d.lib());
                    d.lib() == id || (!definer.revive && definer.incarnation == *incarnation)
                })
        })
    };
    let l = cx.data_mut().dl.libs[id].as_mut().unwrap();
    l.revive = false;
    if !same {
        tracing::debug!(target: "wasmlink::libs", "{}: imports resolve differently now, a new instance", l.name);
        return Ok(false);
    }
    let (base, len) = (l.memory_base as usize, l.memory_len as usize);
    let data = std::mem::take(&mut l.reuse.data);
    let elems = std::mem::take(&mut l.reuse.elems);
    let got_mem = std::mem::take(&mut l.reuse.got_mem);
    let table_base = l.table_base;
    let memory = cx.data().dl.memory.expect("memory");
    let region = &mut memory.data_mut(&mut cx)[base..base + len];
    region[..data.len()].copy_from_slice(&data);
    region[data.len()..].fill(0);
    let table = cx.data().dl.table.expect("table");
    for (i, f) in elems.iter().enumerate() {
        table
            .set(
                cx.as_context_mut(),
                u64::from(table_base) + i as u64,
                wasmtime::Ref::Func(*f),
            )
            .map_err(|e| LinkError::runtime("table", "restore", e))?;
    }
    for ((sym, addr), g) in got_mem {
        let _ = g.set(cx.as_context_mut(), Val::I32(addr as i32));
        cx.data_mut().dl.got_mem.entry((sym, addr)).or_insert(g);
    }
    let l = cx.data_mut().dl.libs[id].as_mut().unwrap();
    l.reuse.data = data;
    l.reuse.elems = elems;
    Ok(true)
}

/// Binds every import of library `id` and makes its instance; records what a reuse of the
/// instance needs (see [`revive`]).
fn bind_and_instantiate(mut cx: StoreContextMut<'_, Host>, id: LibId) -> Result<(), LinkError> {
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
    let mut thunks: Vec<(usize, super::thunk::Thunk)> = Vec::new();
    let mut wasi: Vec<(usize, String, String, ExternType)> = Vec::new();
    let imports: Vec<(String, String, ExternType)> = module
        .imports()
        .map(|i| (i.module().to_string(), i.name().to_string(), i.ty()))
        .collect();
    let mut bound: Vec<(String, Option<Def>, u64)> = Vec::new();
    for (idx, (imp, (m, field, ty))) in info.imports.iter().zip(imports).enumerate() {
        debug_assert_eq!((&imp.module, &imp.field), (&m, &field));
        let dl = &cx.data().dl;
        if let ImportClass::GotMem(sym)
        | ImportClass::GotFunc(sym)
        | ImportClass::EnvGlobal(sym)
        | ImportClass::Tag(sym)
        | ImportClass::EnvFunction(sym) = &imp.class
        {
            let def = dl.lookup(sym, Some(id));
            let incarnation = def
                .filter(|d| d.lib() != id)
                .map_or(0, |d| dl.lib(d.lib()).incarnation);
            bound.push((sym.clone(), def, incarnation));
        }
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
            ImportClass::Wasi2(f) => Some(wasi2_import(cx.as_context_mut(), &name, f, &ty)?),
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
                            super::thunk::Thunk {
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
        let list: Vec<super::thunk::Thunk> = thunks
            .iter_mut()
            .map(|(_, t)| {
                std::mem::replace(
                    t,
                    super::thunk::Thunk {
                        params: vec![],
                        results: vec![],
                        slot: 0,
                    },
                )
            })
            .collect();
        let bytes = super::thunk::build(&list).ok_or_else(|| LinkError::BadModule {
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
    // What instantiation put in the library's data and table regions, for a reuse.
    let (data, elems) = {
        let l = cx.data().dl.lib(id);
        let (base, len) = (l.memory_base as usize, l.memory_len as usize);
        let (tbase, tlen) = (u64::from(l.table_base), u64::from(l.table_len));
        let owns = l.owns_regions && !cx.data().dl.starting;
        let memory = cx.data().dl.memory.expect("memory");
        let data = if owns {
            let region = &memory.data(&cx)[base..base + len];
            let used = region.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
            region[..used].to_vec()
        } else {
            Vec::new()
        };
        let table = cx.data().dl.table.expect("table");
        let elems: Vec<Option<wasmtime::Func>> = (tbase..tbase + if owns { tlen } else { 0 })
            .map(|s| match table.get(cx.as_context_mut(), s) {
                Some(wasmtime::Ref::Func(f)) => f,
                _ => None,
            })
            .collect();
        (data, elems)
    };
    let dl = &mut cx.data_mut().dl;
    let starting = dl.starting;
    dl.incarnations += 1;
    let incarnation = dl.incarnations;
    let l = dl.libs[id].as_mut().unwrap();
    l.instance = Some(instance);
    l.incarnation = incarnation;
    l.revive = false;
    l.reuse.bound = bound;
    l.reuse.data = data;
    l.reuse.elems = elems;
    l.reuse.snapshot = l.owns_regions && !starting;
    l.reuse.got_mem.clear();
    Ok(())
}
