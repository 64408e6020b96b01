//! Process termination after `main` returns: the libraries' `__wasm_call_dtors`, as ELF runs
//! each object's `DT_FINI_ARRAY` when `main` returns.
//!
//! wasi-sdk's shared `libc.so` exports the `__wasm_call_dtors` that flushes stdio
//! (`__stdio_exit`); a program that returns from `main` without it loses its buffered output.
//! A program that calls `exit()` has flushed already (libc's `exit` runs the same handlers
//! before `proc_exit`), so this runs only on a normal return.

use wasmtime::{AsContext, AsContextMut, StoreContextMut};

use super::error::LinkError;
use super::state::{Host, LibId};

/// Calls every loaded library's `__wasm_call_dtors` export, in reverse load order. The main
/// program's own is skipped when its entry point was `_start`, which called it already.
pub(super) fn run_fini(
    mut cx: StoreContextMut<'_, Host>,
    main: LibId,
    main_ran_start: bool,
) -> Result<(), LinkError> {
    let libs: Vec<(LibId, String, wasmtime::Instance)> = cx
        .data()
        .dl
        .libs
        .iter()
        .enumerate()
        .rev()
        .filter_map(|(id, l)| {
            let l = l.as_ref()?;
            Some((id, l.name.clone(), l.instance?))
        })
        .filter(|(id, _, _)| !(main_ran_start && *id == main))
        .collect();
    for (_, name, inst) in libs {
        // `get_func` first: a failed `get_typed_func` builds an error (and, under
        // RUST_BACKTRACE, captures a backtrace) for every library without destructors.
        let Some(Ok(f)) = inst
            .get_func(cx.as_context_mut(), "__wasm_call_dtors")
            .map(|f| f.typed::<(), ()>(cx.as_context()))
        else {
            continue;
        };
        f.call(cx.as_context_mut(), ())
            .map_err(|e| LinkError::runtime(&name, "__wasm_call_dtors", e))?;
    }
    Ok(())
}
