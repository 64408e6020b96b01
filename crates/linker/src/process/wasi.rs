//! The WASI layer for linked programs: preview 1 through wasmtime-wasi (with a shim that
//! re-exports the shared memory), and WASI 0.2's lowered imports (wasi-sdk's libc.so) through the
//! glue `wasmlink_wasi` generates from the WASI WIT, onto the same wasmtime-wasi context.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use wasmtime::{
    AsContextMut, Engine, Extern, ExternType, FuncType, Linker, Module, StoreContextMut,
};

use super::bind::trap_func;
use super::error::LinkError;
use super::resources::{compile_generated, new_instance};
use super::state::Host;

/// Binds WASI preview 1 imports: straight to wasmtime-wasi if the module exports its memory,
/// else through a shim that exports the shared memory (see [`super::thunk::wasi_shim`]).
pub(super) fn bind_wasi(
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
        .get_export("memory")
        .is_some_and(|t| t.memory().is_some());
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
        let bytes = super::thunk::wasi_shim(&m, &sigs).ok_or_else(|| {
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

/// The linker of the WASI 0.2 glue (`wasmlink_wasi`), built once per engine: defining its
/// ~140 functions costs more than a small library's whole link.
fn wasi2_linker(engine: &Engine) -> Result<Arc<Linker<Host>>, LinkError> {
    static CACHE: Mutex<Vec<(Engine, Arc<Linker<Host>>)>> = Mutex::new(Vec::new());
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, l)) = cache.iter().find(|(e, _)| Engine::same(e, engine)) {
        return Ok(l.clone());
    }
    let mut linker = Linker::new(engine);
    wasmlink_wasi::add_to_linker(&mut linker)
        .map_err(|e| LinkError::runtime("wasmlink", "WASI 0.2 setup", e))?;
    let linker = Arc::new(linker);
    cache.push((engine.clone(), linker.clone()));
    Ok(linker)
}

/// Binds one lowered WASI 0.2 import (`f` is `wasi:cli/stdout@0.2.0#get-stdout`) to the glue,
/// onto the process's WASI context. A function this host does not have (a newer WASI, an
/// unstable interface), or one whose core type is not the canonical ABI's lowering, binds to
/// a function that traps naming it, so a library that never calls it still loads.
pub(super) fn wasi2_import(
    mut cx: StoreContextMut<'_, Host>,
    library: &str,
    f: &str,
    ty: &ExternType,
) -> Result<Extern, LinkError> {
    let (module, field) = f.split_once('#').unwrap_or((f, ""));
    let engine = cx.engine().clone();
    let found = match wasmlink_wasi::linker_module(module) {
        Some(m) => wasi2_linker(&engine)?
            .get(cx.as_context_mut(), &m, field)
            .ok(),
        None => None,
    };
    let why = match (found, ty) {
        (Some(Extern::Func(func)), ExternType::Func(want)) => {
            let have = func.ty(&cx);
            // Exact equality: both sides are plain numeric signatures.
            if FuncType::eq(&have, want) {
                return Ok(Extern::Func(func));
            }
            format!(
                "WASI 0.2 function {f} is imported with type {want}, but its canonical ABI lowering is {have} ({library})"
            )
        }
        (Some(_), _) | (None, ExternType::Func(_)) => {
            format!("WASI 0.2 function {f} is not provided by this host ({library})")
        }
        (None, _) => {
            return Err(LinkError::runtime(
                library,
                "wasi",
                wasmtime::format_err!("WASI 0.2 import {f} is not a function"),
            ));
        }
    };
    Ok(Extern::Func(trap_func(cx, ty, why)?))
}
