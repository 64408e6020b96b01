//! Binding imports: functions (directly or through thunks), `GOT.mem`, `GOT.func`,
//! linker-defined symbols and tags.

use std::sync::Arc;

use wasmtime::{
    AsContextMut, Extern, ExternType, Func, FuncType, Global, GlobalType, Mutability, Ref,
    StoreContextMut, Tag, TagType, Val, ValType,
};

use super::error::LinkError;
use super::resources::alloc_slots;
use super::state::{Bounds, Def, Host, LibId, SlotKey};

pub(super) enum Binding {
    Direct(Func),
    Slot(u32),
}

pub(super) fn sig_string(t: &FuncType) -> String {
    let p: Vec<String> = t.params().map(|v| v.to_string()).collect();
    let r: Vec<String> = t.results().map(|v| v.to_string()).collect();
    format!("({}) -> ({})", p.join(", "), r.join(", "))
}

/// Binds function import `sym` of library `id`.
pub(super) fn function_import(
    mut cx: StoreContextMut<'_, Host>,
    id: LibId,
    sym: &str,
    weak: bool,
    imp_sig: Option<Arc<wasmlink_dylink::Signature>>,
    fty: &FuncType,
) -> Result<Binding, LinkError> {
    let host = cx.data().dl.host_symbols;
    if (host.overrides)(sym)
        && let Some(f) = (host.define)(cx.as_context_mut(), sym, fty, Some(id))
    {
        return Ok(Binding::Direct(f));
    }
    let def = cx.data().dl.lookup(sym, Some(id));
    let name = cx.data().dl.lib_name(id);
    match def {
        Some(Def::Func { lib, .. }) => {
            let definer = cx.data().dl.lib(lib);
            // Compare with the definer's model signature (known before it is instantiated).
            let def_sig = definer
                .defs
                .get(sym)
                .and_then(|&(_, pos)| definer.info.exports.get(pos as usize))
                .and_then(|e| e.signature.clone());
            if let (Some(a), Some(b)) = (&imp_sig, &def_sig)
                && a != b
            {
                return Err(LinkError::TypeMismatch {
                    symbol: sym.to_string(),
                    library: name,
                    expected: a.to_string(),
                    definer: definer.name.clone(),
                    actual: b.to_string(),
                });
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
            if let Some(f) = (host.define)(cx.as_context_mut(), sym, fty, Some(id)) {
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
pub(super) fn func_slot_for(
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
            l.own_slot(index).map(|off| l.table_base + off)
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
pub(super) fn fill_slots(mut cx: StoreContextMut<'_, Host>, id: LibId) -> Result<(), LinkError> {
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

pub(super) fn got_mem(
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

/// Addresses the linker defines: the heap and stack bounds.
pub(super) fn linker_symbol(b: &Bounds, sym: &str) -> Option<u32> {
    Some(match sym {
        "__heap_base" => b.heap_base,
        "__heap_end" => b.heap_end,
        "__stack_high" => b.stack_high,
        "__stack_low" => b.stack_low,
        _ => return None,
    })
}

pub(super) fn got_func(
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
            let fty = l.module.get_export(sym).and_then(|t| t.func().cloned());
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

pub(super) fn tag(
    mut cx: StoreContextMut<'_, Host>,
    id: LibId,
    sym: &str,
    ty: &ExternType,
) -> Result<Tag, LinkError> {
    if let Some(Def::Tag { lib }) = cx.data().dl.lookup(sym, Some(id))
        && let Some(inst) = cx.data().dl.lib(lib).instance
        && let Some(Extern::Tag(t)) = inst.get_export(cx.as_context_mut(), sym)
    {
        return Ok(t);
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
pub(super) fn trap_func(
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
