//! The runtime half of the generated glue: every access to guest memory is bounds-checked,
//! every handle is looked up in a typed table, and every failure is a trap whose message names
//! the WASI function and the argument (`wasi:io/streams#[method]output-stream.write: argument
//! contents: out of bounds (4096 bytes at 0xfffff000)`), never a host panic.

use wasmtime::component::Resource;
use wasmtime::{Caller, Extern, Memory};
use wasmtime_wasi::WasiView;

use crate::WasiHost;

/// The default bound of a [`Handles`] table.
pub const DEFAULT_MAX_HANDLES: usize = 65_536;

#[derive(Clone, Copy)]
struct Slot {
    rep: u32,
    tag: &'static str,
}

/// The resource handles a guest holds: 1-based indices, each naming a host resource (its
/// `ResourceTable` rep) and its type (`wasi:io/streams.output-stream`). Bounded: a guest that
/// opens resources without dropping them traps at the bound instead of exhausting the host.
pub struct Handles {
    slots: Vec<Option<Slot>>,
    free: Vec<u32>,
    live: usize,
    max: usize,
    /// The host's typed `cabi_realloc` and the generation it was found in.
    realloc: Option<(u64, Realloc)>,
}

type Realloc = wasmtime::TypedFunc<(i32, i32, i32, i32), i32>;

impl Default for Handles {
    fn default() -> Self {
        Self::with_limit(DEFAULT_MAX_HANDLES)
    }
}

impl Handles {
    /// A table that holds at most `max` live handles.
    pub fn with_limit(max: usize) -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
            max,
            realloc: None,
        }
    }

    /// Live handles.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether no handle is live.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    fn insert(&mut self, rep: u32, tag: &'static str) -> Option<u32> {
        if self.live >= self.max {
            return None;
        }
        let slot = Some(Slot { rep, tag });
        let index = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = slot;
                i
            }
            None => {
                self.slots.push(slot);
                u32::try_from(self.slots.len() - 1).ok()?
            }
        };
        self.live += 1;
        Some(index + 1)
    }

    fn slot(&self, handle: u32, tag: &str) -> Result<Slot, String> {
        let slot = handle
            .checked_sub(1)
            .and_then(|i| self.slots.get(i as usize).copied().flatten())
            .ok_or_else(|| format!("unknown handle {handle}"))?;
        if slot.tag != tag {
            return Err(format!(
                "handle {handle} is a {}, not a {tag}",
                short(slot.tag)
            ));
        }
        Ok(slot)
    }

    fn remove(&mut self, handle: u32, tag: &str) -> Result<u32, String> {
        let slot = self.slot(handle, tag)?;
        self.slots[(handle - 1) as usize] = None;
        self.free.push(handle - 1);
        self.live -= 1;
        Ok(slot.rep)
    }
}

/// `output-stream` from `wasi:io/streams.output-stream`.
fn short(tag: &str) -> &str {
    tag.rsplit('.').next().unwrap_or(tag)
}

/// One call of a generated glue function: the caller, and the function's name for messages.
pub struct Cx<'a, T: 'static> {
    caller: Caller<'a, T>,
    func: &'static str,
    memory: Option<Memory>,
}

impl<'a, T: WasiHost> Cx<'a, T> {
    /// Starts a call of `func` (`wasi:io/streams#[method]output-stream.write`).
    pub fn new(caller: Caller<'a, T>, func: &'static str) -> Self {
        Self {
            caller,
            func,
            memory: None,
        }
    }

    /// The store's data.
    pub fn data(&mut self) -> &mut T {
        self.caller.data_mut()
    }

    fn trap(&self, what: &str, message: impl std::fmt::Display) -> wasmtime::Error {
        wasmtime::format_err!("{}: {what}: {message}", self.func)
    }

    /// The error for a discriminant outside a variant's, enum's, option's or result's cases.
    pub fn bad_discriminant(&self, what: &str, d: u32) -> wasmtime::Error {
        self.trap(what, format_args!("invalid discriminant {d}"))
    }

    fn memory(&mut self, what: &str) -> wasmtime::Result<Memory> {
        if let Some(m) = self.memory {
            return Ok(m);
        }
        let m = match self.caller.data().memory() {
            Some(m) => m,
            None => match self.caller.get_export("memory") {
                Some(Extern::Memory(m)) => m,
                _ => return Err(self.trap(what, "the calling module exports no memory")),
            },
        };
        self.memory = Some(m);
        Ok(m)
    }

    /// The range `[base + off, + len)` of guest memory, checked.
    fn range(
        &mut self,
        base: u32,
        off: u32,
        len: u64,
        what: &str,
    ) -> wasmtime::Result<std::ops::Range<usize>> {
        let m = self.memory(what)?;
        let start = u64::from(base) + u64::from(off);
        let end = start.saturating_add(len);
        if end > m.data_size(&self.caller) as u64 {
            return Err(self.trap(
                what,
                format_args!("out of bounds ({len} bytes at {start:#x})"),
            ));
        }
        Ok(start as usize..end as usize)
    }

    fn load<const N: usize>(
        &mut self,
        base: u32,
        off: u32,
        what: &str,
    ) -> wasmtime::Result<[u8; N]> {
        let r = self.range(base, off, N as u64, what)?;
        let m = self.memory.expect("resolved by range");
        let mut out = [0u8; N];
        out.copy_from_slice(&m.data(&self.caller)[r]);
        Ok(out)
    }

    pub fn load_u8(&mut self, base: u32, off: u32, what: &str) -> wasmtime::Result<u8> {
        Ok(self.load::<1>(base, off, what)?[0])
    }
    pub fn load_u16(&mut self, base: u32, off: u32, what: &str) -> wasmtime::Result<u16> {
        Ok(u16::from_le_bytes(self.load(base, off, what)?))
    }
    pub fn load_u32(&mut self, base: u32, off: u32, what: &str) -> wasmtime::Result<u32> {
        Ok(u32::from_le_bytes(self.load(base, off, what)?))
    }
    pub fn load_u64(&mut self, base: u32, off: u32, what: &str) -> wasmtime::Result<u64> {
        Ok(u64::from_le_bytes(self.load(base, off, what)?))
    }

    fn write(&mut self, base: u32, off: u32, bytes: &[u8], what: &str) -> wasmtime::Result<()> {
        let r = self.range(base, off, bytes.len() as u64, what)?;
        let m = self.memory.expect("resolved by range");
        m.data_mut(&mut self.caller)[r].copy_from_slice(bytes);
        Ok(())
    }

    pub fn store_u8(&mut self, base: u32, off: u32, v: u8, what: &str) -> wasmtime::Result<()> {
        self.write(base, off, &[v], what)
    }
    pub fn store_u16(&mut self, base: u32, off: u32, v: u16, what: &str) -> wasmtime::Result<()> {
        self.write(base, off, &v.to_le_bytes(), what)
    }
    pub fn store_u32(&mut self, base: u32, off: u32, v: u32, what: &str) -> wasmtime::Result<()> {
        self.write(base, off, &v.to_le_bytes(), what)
    }
    pub fn store_u64(&mut self, base: u32, off: u32, v: u64, what: &str) -> wasmtime::Result<()> {
        self.write(base, off, &v.to_le_bytes(), what)
    }

    /// Checks a pointer the guest passed for `size` bytes aligned to `align` (a return area).
    pub fn check_ptr(
        &mut self,
        ptr: u32,
        size: u32,
        align: u32,
        what: &str,
    ) -> wasmtime::Result<()> {
        self.check_list(ptr, 1, size, align, what)
    }

    /// Checks a guest list of `len` elements of `size` bytes aligned to `align`.
    pub fn check_list(
        &mut self,
        ptr: u32,
        len: u32,
        size: u32,
        align: u32,
        what: &str,
    ) -> wasmtime::Result<()> {
        if !ptr.is_multiple_of(align) {
            return Err(self.trap(
                what,
                format_args!("pointer {ptr:#x} is not aligned to {align}"),
            ));
        }
        self.range(ptr, 0, u64::from(len) * u64::from(size), what)?;
        Ok(())
    }

    /// A `list<u8>` argument, copied out of guest memory.
    pub fn list_u8(&mut self, ptr: u32, len: u32, what: &str) -> wasmtime::Result<Vec<u8>> {
        let r = self.range(ptr, 0, u64::from(len), what)?;
        let m = self.memory.expect("resolved by range");
        Ok(m.data(&self.caller)[r].to_vec())
    }

    /// A `string` argument: UTF-8, as the canonical ABI requires.
    pub fn string(&mut self, ptr: u32, len: u32, what: &str) -> wasmtime::Result<String> {
        let bytes = self.list_u8(ptr, len, what)?;
        String::from_utf8(bytes).map_err(|e| {
            self.trap(
                what,
                format_args!("invalid UTF-8 at byte {}", e.utf8_error().valid_up_to()),
            )
        })
    }

    /// A `char` argument: a Unicode scalar value.
    pub fn char(&self, v: u32, what: &str) -> wasmtime::Result<char> {
        char::from_u32(v).ok_or_else(|| self.trap(what, format_args!("{v:#x} is not a char")))
    }

    /// A host length as a guest `u32`.
    pub fn len32(&self, len: usize, what: &str) -> wasmtime::Result<u32> {
        u32::try_from(len).map_err(|_| {
            self.trap(
                what,
                format_args!("{len} elements do not fit a 32-bit memory"),
            )
        })
    }

    /// The `cabi_realloc` to allocate with: the host's (kept typed across calls until its
    /// generation changes), else the calling instance's own export.
    fn realloc_func(&mut self, what: &str) -> wasmtime::Result<Realloc> {
        let data = self.caller.data_mut();
        if let Some(generation) = data.realloc_generation() {
            if let Some((g, f)) = &data.handles().realloc
                && *g == generation
            {
                return Ok(f.clone());
            }
            if let Some(inst) = self.caller.data().realloc_instance()
                && let Some(f) = inst.get_func(&mut self.caller, "cabi_realloc")
            {
                let f = f
                    .typed::<(i32, i32, i32, i32), i32>(&self.caller)
                    .map_err(|e| {
                        self.trap(what, format_args!("cabi_realloc has the wrong type: {e}"))
                    })?;
                self.caller.data_mut().handles().realloc = Some((generation, f.clone()));
                return Ok(f);
            }
        }
        match self.caller.get_export("cabi_realloc") {
            Some(Extern::Func(f)) => f
                .typed::<(i32, i32, i32, i32), i32>(&self.caller)
                .map_err(|e| self.trap(what, format_args!("cabi_realloc has the wrong type: {e}"))),
            _ => Err(self.trap(
                what,
                "a string or list is returned, but neither the calling module nor the process exports cabi_realloc",
            )),
        }
    }

    /// Allocates `size` bytes aligned to `align` with `cabi_realloc` and checks what it returned.
    fn realloc(&mut self, align: u32, size: u32, what: &str) -> wasmtime::Result<u32> {
        let f = self.realloc_func(what)?;
        let p = f.call(&mut self.caller, (0, 0, align as i32, size as i32))? as u32;
        if !p.is_multiple_of(align) {
            return Err(self.trap(
                what,
                format_args!("cabi_realloc returned {p:#x}, not aligned to {align}"),
            ));
        }
        self.range(p, 0, u64::from(size), what)?;
        Ok(p)
    }

    /// Allocates and fills a byte string (`string`, `list<u8>`), returning its address.
    pub fn alloc_bytes(&mut self, align: u32, bytes: &[u8], what: &str) -> wasmtime::Result<u32> {
        let len = self.len32(bytes.len(), what)?;
        let p = self.realloc(align, len, what)?;
        self.write(p, 0, bytes, what)?;
        Ok(p)
    }

    /// Allocates `n` elements of `size` bytes aligned to `align`.
    pub fn alloc_list(
        &mut self,
        align: u32,
        n: u32,
        size: u32,
        what: &str,
    ) -> wasmtime::Result<u32> {
        let bytes = u32::try_from(u64::from(n) * u64::from(size)).map_err(|_| {
            self.trap(
                what,
                format_args!("{n} elements of {size} bytes do not fit a 32-bit memory"),
            )
        })?;
        self.realloc(align, bytes, what)
    }

    /// Gives the guest a new handle owning `r`.
    pub fn new_own<R: 'static>(
        &mut self,
        r: Resource<R>,
        tag: &'static str,
        what: &str,
    ) -> wasmtime::Result<u32> {
        let rep = r.rep();
        match self.caller.data_mut().handles().insert(rep, tag) {
            Some(h) => Ok(h),
            None => {
                let max = self.caller.data_mut().handles().max;
                // Give the resource back to the host rather than leaking it.
                let _ = WasiView::ctx(self.caller.data_mut()).table.delete(r);
                Err(self.trap(
                    what,
                    format_args!("the resource table is full ({max} handles)"),
                ))
            }
        }
    }

    /// Takes an owned handle from the guest (the handle is gone afterwards).
    pub fn take_own<R: 'static>(
        &mut self,
        handle: u32,
        tag: &'static str,
        what: &str,
    ) -> wasmtime::Result<Resource<R>> {
        match self.caller.data_mut().handles().remove(handle, tag) {
            Ok(rep) => Ok(Resource::new_own(rep)),
            Err(e) => Err(self.trap(what, e)),
        }
    }

    /// Borrows a handle for the duration of the call.
    pub fn borrow<R: 'static>(
        &mut self,
        handle: u32,
        tag: &'static str,
        what: &str,
    ) -> wasmtime::Result<Resource<R>> {
        match self.caller.data_mut().handles().slot(handle, tag) {
            Ok(slot) => Ok(Resource::new_borrow(slot.rep)),
            Err(e) => Err(self.trap(what, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_typed_one_based_reused_and_bounded() {
        let mut h = Handles::with_limit(2);
        let a = h.insert(10, "wasi:io/poll.pollable").unwrap();
        let b = h.insert(11, "wasi:io/streams.output-stream").unwrap();
        assert_eq!((a, b), (1, 2));
        assert_eq!(h.insert(12, "wasi:io/poll.pollable"), None, "bounded");
        assert_eq!(h.slot(a, "wasi:io/poll.pollable").unwrap().rep, 10);
        assert_eq!(
            h.slot(b, "wasi:io/poll.pollable").err().unwrap(),
            "handle 2 is a output-stream, not a wasi:io/poll.pollable"
        );
        assert_eq!(h.slot(0, "x").err().unwrap(), "unknown handle 0");
        assert_eq!(h.slot(99, "x").err().unwrap(), "unknown handle 99");
        assert_eq!(h.remove(a, "wasi:io/poll.pollable").unwrap(), 10);
        assert!(
            h.remove(a, "wasi:io/poll.pollable").is_err(),
            "dropped twice"
        );
        assert_eq!(h.len(), 1);
        assert_eq!(
            h.insert(13, "wasi:io/poll.pollable"),
            Some(1),
            "slot reused"
        );
    }
}
