//! The program's life: the dlerror buffer, constructors, TLS, the entry point and
//! `__cxa_atexit` handlers.

use wasmtime::{AsContextMut, Func, Ref, StoreContextMut, Val};

use super::error::LinkError;
use super::resources::alloc_region;
use super::state::{Host, LibId};

pub(super) const DLERROR_BUF: u32 = 512;

pub(super) fn init_dlerror_buf(mut cx: StoreContextMut<'_, Host>) -> Result<(), LinkError> {
    let at = alloc_region(cx.as_context_mut(), "libdl", u64::from(DLERROR_BUF), 8)?;
    cx.data_mut().dl.dlerror_buf = at;
    Ok(())
}

/// Runs the constructors of library `id`: `_initialize` if it is a reactor, else
/// `__wasm_call_ctors`.
pub(super) fn run_ctors(mut cx: StoreContextMut<'_, Host>, id: LibId) -> Result<(), LinkError> {
    let (inst, name, is_main) = {
        let l = cx.data().dl.lib(id);
        (l.instance.expect("instantiated"), l.name.clone(), id == 0)
    };
    // A main program with `_start` runs its own constructors from crt1.
    if is_main && inst.get_func(cx.as_context_mut(), "_start").is_some() {
        return Ok(());
    }
    for init in ["_initialize", "__wasm_call_ctors"] {
        if let Some(f) = inst.get_func(cx.as_context_mut(), init) {
            tracing::debug!(target: "wasmlink::libs", "calling {init} of {name}");
            f.call(cx.as_context_mut(), &[], &mut [])
                .map_err(|e| LinkError::runtime(&name, "constructor", e))?;
            break;
        }
    }
    Ok(())
}

/// Sets up the TLS block of a library built with threads (`__wasm_init_tls`).
pub(super) fn init_tls(mut cx: StoreContextMut<'_, Host>, id: LibId) -> Result<(), LinkError> {
    let (inst, name) = {
        let l = cx.data().dl.lib(id);
        (l.instance.expect("instantiated"), l.name.clone())
    };
    let Some(init) = inst.get_func(cx.as_context_mut(), "__wasm_init_tls") else {
        return Ok(());
    };
    let read = |cx: &mut StoreContextMut<'_, Host>, g: &str| -> u32 {
        inst.get_global(cx.as_context_mut(), g)
            .map(|g| match g.get(cx.as_context_mut()) {
                Val::I32(v) => v as u32,
                _ => 0,
            })
            .unwrap_or(0)
    };
    let size = read(&mut cx, "__tls_size");
    let align = read(&mut cx, "__tls_align").max(1);
    let block = alloc_region(
        cx.as_context_mut(),
        &name,
        u64::from(size.max(1)),
        u64::from(align).next_power_of_two(),
    )?;
    // The block goes back to the region allocator when the library is unloaded.
    cx.data_mut().dl.libs[id].as_mut().expect("loaded").tls = Some((block, size.max(1)));
    init.call(cx.as_context_mut(), &[Val::I32(block as i32)], &mut [])
        .map_err(|e| LinkError::runtime(&name, "__wasm_init_tls", e))?;
    Ok(())
}

/// Calls the entry point of library `main`.
pub(super) fn run_entry(mut cx: StoreContextMut<'_, Host>, main: LibId) -> Result<i32, LinkError> {
    let (inst, name) = {
        let l = cx.data().dl.lib(main);
        (l.instance.expect("instantiated"), l.name.clone())
    };
    let call = |cx: &mut StoreContextMut<'_, Host>,
                f: Func,
                args: &[Val],
                what: &str|
     -> Result<i32, LinkError> {
        let n = f.ty(cx.as_context_mut()).results().len();
        let mut out = vec![Val::I32(0); n];
        f.call(cx.as_context_mut(), args, &mut out)
            .map_err(|e| LinkError::runtime(&name, what, e))?;
        Ok(match out.first() {
            Some(Val::I32(v)) => *v,
            _ => 0,
        })
    };
    if let Some(f) = inst.get_func(cx.as_context_mut(), "_start") {
        return call(&mut cx, f, &[], "_start");
    }
    for entry in ["__main_argc_argv", "main", "__main_void", "__original_main"] {
        let Some(f) = inst.get_func(cx.as_context_mut(), entry) else {
            continue;
        };
        let nparams = f.ty(cx.as_context_mut()).params().len();
        let args = if nparams == 2 {
            let (argc, argv) = write_argv(cx.as_context_mut())?;
            vec![Val::I32(argc), Val::I32(argv)]
        } else {
            vec![]
        };
        return call(&mut cx, f, &args, entry);
    }
    Err(LinkError::NoSuchSymbol {
        symbol: "main".to_string(),
        library: name,
    })
}

pub(super) fn write_argv(mut cx: StoreContextMut<'_, Host>) -> Result<(i32, i32), LinkError> {
    let args: Vec<String> = {
        // WasiP1Ctx keeps its arguments private; the builder's copy is what `args_get` returns.
        let host = cx.data();
        host.args.clone()
    };
    let total: usize = args.iter().map(|a| a.len() + 1).sum::<usize>() + 4 * (args.len() + 1);
    let base = alloc_region(cx.as_context_mut(), "argv", total as u64, 4)?;
    let mut ptrs = Vec::new();
    let mut strings = Vec::new();
    let mut at = base + 4 * (args.len() as u32 + 1);
    for a in &args {
        ptrs.extend_from_slice(&at.to_le_bytes());
        strings.extend_from_slice(a.as_bytes());
        strings.push(0);
        at += a.len() as u32 + 1;
    }
    ptrs.extend_from_slice(&0u32.to_le_bytes());
    ptrs.extend(strings);
    let mem = cx.data().dl.memory.expect("memory");
    mem.write(cx.as_context_mut(), base as usize, &ptrs)
        .map_err(|e| LinkError::runtime("argv", "write", e.into()))?;
    Ok((args.len() as i32, (base) as i32))
}

/// Runs `__cxa_atexit` handlers in reverse order of registration: those of library `only`
/// (whose data region holds their dso handle) at unload, or all at exit.
pub(crate) fn run_atexit(
    mut cx: StoreContextMut<'_, Host>,
    only: Option<LibId>,
) -> Result<(), LinkError> {
    let range = only.and_then(|id| {
        let l = cx.data().dl.libs.get(id)?.as_ref()?;
        Some((l.memory_base, l.memory_base + l.memory_len, l.name.clone()))
    });
    loop {
        let next = {
            let list = &cx.data().atexit;
            list.iter().rposition(|&(_, _, dso)| match &range {
                Some((lo, hi, _)) => dso >= *lo && dso < *hi,
                None => true,
            })
        };
        let Some(i) = next else { return Ok(()) };
        let (f, arg, _) = cx.data_mut().atexit.remove(i);
        let table = cx.data().dl.table.expect("table");
        let who = range.as_ref().map_or("exit".to_string(), |r| r.2.clone());
        let Some(Ref::Func(Some(func))) = table.get(cx.as_context_mut(), u64::from(f)) else {
            continue;
        };
        let nparams = func.ty(cx.as_context_mut()).params().len();
        let args: Vec<Val> = if nparams == 1 {
            vec![Val::I32(arg as i32)]
        } else {
            vec![]
        };
        func.call(cx.as_context_mut(), &args, &mut [])
            .map_err(|e| LinkError::runtime(&who, "destructor", e))?;
    }
}
