//! The compatibility conventions (`abi = "seed" | "cstring" | "ptrlen"`, docs/abi.md): the
//! guest's `allocate`/`deallocate`, and one byte call in each shape.

use super::{
    Abi, Instance, OutputTooLarge, PluginError, check_range, memory_of, violation, write_input,
};

/// Calls `function` of a module of convention `conv` with `input`; returns its output.
pub(super) fn call(
    inst: &mut Instance,
    conv: Abi,
    function: &str,
    input: &[u8],
) -> Result<Vec<u8>, PluginError> {
    let max_out = inst.limits().output;
    let mem = memory_of(inst).map_err(|e| inst.fail_abi(function, e))?;
    let instance = inst.ready().instance;
    let fname = function.to_string();
    let input_len = input.len();
    inst.guarded(function, move |store| {
        let allocate = instance
            .get_typed_func::<i32, i32>(&mut *store, "allocate")
            .map_err(|_| violation("does not export `allocate(size: i32) -> i32`"))?;
        let deallocate = instance
            .get_typed_func::<(i32, i32), ()>(&mut *store, "deallocate")
            .map_err(|_| violation("does not export `deallocate(ptr: i32, size: i32)`"))?;
        let (in_len, nul) = match conv {
            Abi::Cstring => {
                if input.contains(&0) {
                    return Err(violation(
                        "the input contains a NUL byte, which a C string cannot carry",
                    ));
                }
                (input_len + 1, true)
            }
            _ => (input_len, false),
        };
        let terminator: &[u8] = if nul { &[0] } else { &[] };
        let in_ptr = write_input(
            store,
            mem,
            |s, n| Ok(allocate.call(s, n as i32)? as u32),
            in_len,
            &[input, terminator],
        )?;
        let (optr, olen) = match conv {
            Abi::Seed => {
                let f = instance
                    .get_typed_func::<(i32, i32), i32>(&mut *store, &fname)
                    .map_err(|_| {
                        violation(format!(
                            "`{fname}` is not `(ptr: i32, len: i32) -> i32` (seed convention)"
                        ))
                    })?;
                let rec = f.call(&mut *store, (in_ptr as i32, input_len as i32))? as u32;
                let data = mem.data(&*store);
                let at = check_range(data.len(), rec, 8, "the (ptr, len) record at")?;
                let w = |i: usize| {
                    u32::from_le_bytes([
                        data[at + i],
                        data[at + i + 1],
                        data[at + i + 2],
                        data[at + i + 3],
                    ])
                };
                (w(0), w(4))
            }
            Abi::Ptrlen => {
                let f = instance
                    .get_typed_func::<(i32, i32), i64>(&mut *store, &fname)
                    .map_err(|_| {
                        violation(format!(
                            "`{fname}` is not `(ptr: i32, len: i32) -> i64` (ptrlen convention)"
                        ))
                    })?;
                let packed = f.call(&mut *store, (in_ptr as i32, input_len as i32))? as u64;
                ((packed >> 32) as u32, packed as u32)
            }
            _ => {
                let f = instance
                    .get_typed_func::<i32, i32>(&mut *store, &fname)
                    .map_err(|_| {
                        violation(format!(
                            "`{fname}` is not `(ptr: i32) -> i32` (cstring convention)"
                        ))
                    })?;
                let p = f.call(&mut *store, in_ptr as i32)? as u32;
                let data = mem.data(&*store);
                let start = check_range(data.len(), p, 0, "the returned string at")?;
                let limit = (data.len() - start).min(max_out as usize + 1);
                let n = data[start..start + limit]
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or_else(|| {
                        if limit > max_out as usize {
                            wasmtime::Error::new(OutputTooLarge)
                        } else {
                            violation(format!(
                                "the string returned at {p:#x} has no NUL before the end of memory"
                            ))
                        }
                    })?;
                (p, n as u32)
            }
        };
        let data = mem.data(&*store);
        let start = check_range(data.len(), optr, olen, "the output")?;
        if olen as u64 > max_out {
            return Err(wasmtime::Error::new(OutputTooLarge));
        }
        let out = data[start..start + olen as usize].to_vec();
        let out_size = if nul { olen + 1 } else { olen };
        if optr != 0 {
            deallocate.call(&mut *store, (optr as i32, out_size as i32))?;
        }
        deallocate.call(&mut *store, (in_ptr as i32, in_len as i32))?;
        Ok(out)
    })
}
