//! The WASI layer for linked programs: preview 1 through wasmtime-wasi (with a shim that
//! re-exports the shared memory), and the WASI 0.2 lowered imports of wasi-sdk's libc.so.

use std::collections::HashMap;

use wasmtime::{AsContextMut, Extern, ExternType, FuncType, Module, StoreContextMut, Val};

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

/// WASI 0.2 functions this host answers with an empty list (no environment variables, no
/// arguments), in canonical-ABI lowered form `(retptr: i32) -> ()`.
pub(super) fn empty_list_wasi2(f: &str, ty: &ExternType) -> bool {
    let lowered =
        matches!(ty, ExternType::Func(t) if t.params().len() == 1 && t.results().len() == 0);
    lowered
        && (f.starts_with("wasi:cli/environment@0.2.")
            && (f.ends_with("#get-environment") || f.ends_with("#get-arguments")))
}

/// `wasi:random/random#get-random-bytes(len: u64) -> list<u8>`, lowered: allocates the list
/// with the caller's `cabi_realloc` and writes `(ptr, len)` at retptr.
pub(super) fn random_bytes(
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
pub(super) enum Clock {
    Monotonic,
    Resolution,
    Wall,
}

/// The WASI 0.2 clocks this host provides, in lowered form: `monotonic-clock#now() -> u64`,
/// `#resolution() -> u64`, and `wall-clock#now(retptr)` writing `{seconds: u64, nanoseconds: u32}`.
pub(super) fn wasi2_clock(f: &str, ty: &ExternType) -> Option<Clock> {
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
