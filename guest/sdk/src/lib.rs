//! Guest-side SDK for the wasmlink data-exchange ABI (version 1, see `docs/abi.md`).
//!
//! A guest is a `cdylib` built for `wasm32-wasip1` that depends on this crate. Linking it in
//! exports the ABI's fixed functions (`wasmlink_abi_version`, `wasmlink_alloc`,
//! `wasmlink_free`); [`export`] turns a plain Rust function into an ABI function:
//!
//! ```ignore
//! use wasmlink_guest::export;
//!
//! #[export]
//! fn greet(name: &str) -> String {
//!     format!("Hello, {name}!")
//! }
//!
//! #[export]
//! fn double(batch: RecordBatch) -> Result<RecordBatch, String> { /* ... */ }
//! ```
//!
//! Parameters: `&str`, `&[u8]`, `String`, `Vec<u8>`, `RecordBatch` (feature `arrow`) or
//! `&mut InPlaceBatch` (with `#[export(in_place)]`). Results: `String`, `Vec<u8>`,
//! `&'static str`, `()`, `RecordBatch`, or `Result<T, E: Display>` of those (an `Err` becomes
//! status 1 with `E`'s message). `#[export(convention = "seed" | "cstring" | "ptrlen")]`
//! exports a string function in one of the older plugin conventions; those need the
//! `allocate`/`deallocate` pair that [`export_seed_allocator!`] exports.
//!
//! The ABI functions exist only when compiling for `wasm32`; on other targets the crate
//! compiles (so guest logic can be unit-tested natively) but exports nothing.

#![deny(missing_docs)]

use std::alloc::Layout;
use std::cell::UnsafeCell;
use std::fmt::Display;
use std::mem::ManuallyDrop;

/// `#[export]`: turns a function into an ABI function (see the crate documentation).
pub use wasmlink_guest_macros::export;

#[cfg(feature = "arrow")]
mod arrow;
#[cfg(feature = "arrow")]
pub use arrow::InPlaceBatch;
/// The Arrow crates this SDK was built with, so guests use the same versions.
#[cfg(feature = "arrow")]
pub use {arrow_array, arrow_buffer, arrow_ipc, arrow_schema};

/// The ABI version this SDK implements (what `wasmlink_abi_version` returns).
pub const ABI_VERSION: i32 = 1;
/// Result status: `[ptr, ptr+len)` is the output.
pub const STATUS_OK: u32 = 0;
/// Result status: `[ptr, ptr+len)` is a UTF-8 error message.
pub const STATUS_ERROR: u32 = 1;
/// Result status: input columns were rewritten in place; `[ptr, ptr+len)` lists their indices
/// as `u32` little-endian. An empty list means the output is the input batch itself (an Arrow
/// function that returned its single input batch unchanged).
pub const STATUS_IN_PLACE: u32 = 2;
/// Result status: the output is gathered: `[ptr, ptr+len)` lists segments (`u32` address, `u32`
/// length, little-endian) whose bytes, concatenated, are the output; freeing the list frees
/// them.
pub const STATUS_GATHERED: u32 = 3;
/// The message of a `&str`/`String` parameter whose input is not UTF-8.
pub const INVALID_UTF8: &str = "input is not valid UTF-8";

/// A guest static that is only touched from the (single) thread running the guest.
struct GuestStatic<T>(UnsafeCell<T>);

// SAFETY: wasm32-wasip1 guests are single-threaded: only one call into the guest runs at a
// time, and the statics below are written right before the call returns and read by the host
// only after it returned. There is no concurrent access to share.
unsafe impl<T> Sync for GuestStatic<T> {}

/// The 16-byte result record `u32 status; u32 ptr; u32 len; u32 cap` (ABI v1).
static RESULT: GuestStatic<[u32; 4]> = GuestStatic(UnsafeCell::new([0; 4]));
/// The 8-byte `u32 ptr; u32 len` record of the "seed" convention.
static SEED_RESULT: GuestStatic<[u32; 2]> = GuestStatic(UnsafeCell::new([0; 2]));

/// Converts a guest address to the `i32` that crosses the ABI (wasm32 addresses are `u32`).
fn addr(ptr: *const u8) -> u32 {
    ptr as usize as u32
}

/// `wasmlink_alloc(size, align)`: a block of `size` bytes aligned to `align` (a power of two),
/// 0 on failure; `size` 0 returns `align` (a dangling, non-null pointer).
pub fn alloc(size: u32, align: u32) -> u32 {
    let Ok(layout) = Layout::from_size_align(size as usize, align as usize) else {
        return 0;
    };
    if size == 0 {
        return align;
    }
    // SAFETY: the layout has a non-zero size (checked above).
    addr(unsafe { std::alloc::alloc(layout) })
}

/// `wasmlink_free(ptr, size, align)`: frees a block from [`alloc`] (or an output the SDK handed
/// over with capacity `size` and alignment 1). Size 0 and null pointers are no-ops; an invalid
/// layout is ignored (there is no way to report it).
///
/// # Safety
/// `ptr` must come from [`alloc`] with the same `size` and `align`, and not be freed twice.
pub unsafe fn free(ptr: u32, size: u32, align: u32) {
    if size == 0 || ptr == 0 {
        return;
    }
    let Ok(layout) = Layout::from_size_align(size as usize, align as usize) else {
        return;
    };
    #[cfg(feature = "arrow")]
    arrow::release_gathered(ptr);
    // SAFETY: the caller guarantees that ptr was allocated with this layout.
    unsafe { std::alloc::dealloc(ptr as usize as *mut u8, layout) }
}

#[cfg(target_arch = "wasm32")]
mod exports {
    /// `wasmlink_abi_version() -> i32`.
    #[unsafe(no_mangle)]
    pub extern "C" fn wasmlink_abi_version() -> i32 {
        super::ABI_VERSION
    }

    /// `wasmlink_alloc(size, align) -> ptr`.
    #[unsafe(no_mangle)]
    pub extern "C" fn wasmlink_alloc(size: i32, align: i32) -> i32 {
        super::alloc(size as u32, align as u32) as i32
    }

    /// `wasmlink_free(ptr, size, align)`.
    #[unsafe(no_mangle)]
    pub extern "C" fn wasmlink_free(ptr: i32, size: i32, align: i32) {
        // SAFETY: the ABI requires the host to pass back what wasmlink_alloc (or a result
        // record's ptr/cap with align 1) gave it, once.
        unsafe { super::free(ptr as u32, size as u32, align as u32) }
    }
}

/// What an ABI function hands back: bytes the host frees, or static bytes it must not free.
pub enum Output {
    /// A heap buffer; handed over with its capacity (the host frees `(ptr, cap, 1)`).
    Owned(Vec<u8>),
    /// Bytes in the guest's static data (cap 0: nothing to free).
    Static(&'static [u8]),
}

/// A parameter type of an ABI byte/string function.
pub trait FromInput<'a>: Sized {
    /// Converts the input bytes, or returns the error message for status 1.
    fn from_input(bytes: &'a [u8]) -> Result<Self, String>;
}

impl<'a> FromInput<'a> for &'a [u8] {
    fn from_input(bytes: &'a [u8]) -> Result<Self, String> {
        Ok(bytes)
    }
}

impl<'a> FromInput<'a> for &'a str {
    fn from_input(bytes: &'a [u8]) -> Result<Self, String> {
        std::str::from_utf8(bytes).map_err(|_| INVALID_UTF8.to_string())
    }
}

impl FromInput<'_> for Vec<u8> {
    fn from_input(bytes: &[u8]) -> Result<Self, String> {
        Ok(bytes.to_vec())
    }
}

impl FromInput<'_> for String {
    fn from_input(bytes: &[u8]) -> Result<Self, String> {
        <&str>::from_input(bytes).map(str::to_owned)
    }
}

/// A return type of an ABI function.
pub trait IntoOutput {
    /// The output bytes, or the error message for status 1.
    fn into_output(self) -> Result<Output, String>;
}

impl IntoOutput for Vec<u8> {
    fn into_output(self) -> Result<Output, String> {
        Ok(Output::Owned(self))
    }
}

impl IntoOutput for String {
    fn into_output(self) -> Result<Output, String> {
        Ok(Output::Owned(self.into_bytes()))
    }
}

impl IntoOutput for &'static str {
    fn into_output(self) -> Result<Output, String> {
        Ok(Output::Static(self.as_bytes()))
    }
}

impl IntoOutput for &'static [u8] {
    fn into_output(self) -> Result<Output, String> {
        Ok(Output::Static(self))
    }
}

impl IntoOutput for () {
    fn into_output(self) -> Result<Output, String> {
        Ok(Output::Static(&[]))
    }
}

impl<T: IntoOutput, E: Display> IntoOutput for Result<T, E> {
    fn into_output(self) -> Result<Output, String> {
        self.map_err(|e| e.to_string())?.into_output()
    }
}

/// Writes the result record and returns its address.
fn publish(status: u32, output: Output) -> i32 {
    let record = match output {
        Output::Owned(bytes) => {
            let mut bytes = ManuallyDrop::new(bytes);
            [
                status,
                addr(bytes.as_mut_ptr()),
                bytes.len() as u32,
                bytes.capacity() as u32,
            ]
        }
        Output::Static(bytes) => [status, addr(bytes.as_ptr()), bytes.len() as u32, 0],
    };
    // SAFETY: single-threaded guest (see GuestStatic); no reference to RESULT is alive.
    unsafe { *RESULT.0.get() = record };
    addr(RESULT.0.get().cast::<u8>()) as i32
}

/// Publishes an output or an error message as the result record.
fn publish_result(result: Result<Output, String>) -> i32 {
    match result {
        Ok(output) => publish(STATUS_OK, output),
        Err(message) => publish(STATUS_ERROR, Output::Owned(message.into_bytes())),
    }
}

/// The input region `[ptr, ptr+len)` as a slice (empty without a dereference when `len` is 0).
///
/// # Safety
/// The host must have written `len` bytes at `ptr` (the ABI's input contract), and the slice
/// must not outlive the call.
unsafe fn input_slice<'a>(ptr: i32, len: i32) -> &'a [u8] {
    if len == 0 {
        return &[];
    }
    // SAFETY: the caller guarantees that [ptr, ptr+len) is initialised guest memory that the
    // host does not touch during the call.
    unsafe { std::slice::from_raw_parts(ptr as u32 as usize as *const u8, len as u32 as usize) }
}

/// Support for the code `#[export]` generates. Not a stable API.
#[doc(hidden)]
pub mod __private {
    pub use super::{FromInput, IntoOutput, Output};
    #[cfg(feature = "arrow")]
    pub use crate::arrow::{BatchOutput, InPlaceOutput, call_arrow, call_in_place};

    use super::*;

    /// ABI v1 byte/string function: input region -> result record.
    pub fn call_bytes(
        ptr: i32,
        len: i32,
        f: impl for<'a> FnOnce(&'a [u8]) -> Result<Output, String>,
    ) -> i32 {
        // SAFETY: called from an exported wrapper with the host's (ptr, len), per the ABI.
        let input = unsafe { input_slice(ptr, len) };
        publish_result(f(input))
    }

    /// Aborts a call of a legacy-convention function, which has no error channel: the message
    /// goes to stderr and the call traps.
    fn legacy_fail(name: &str, message: &str) -> ! {
        eprintln!("wasmlink guest: {name}: {message}");
        std::process::abort()
    }

    /// The output bytes of a legacy-convention function, trapping on errors.
    fn legacy_output(name: &str, result: Result<Output, String>) -> Vec<u8> {
        match result {
            Ok(Output::Owned(bytes)) => bytes,
            Ok(Output::Static(bytes)) => bytes.to_vec(),
            Err(message) => legacy_fail(name, &message),
        }
    }

    /// Hands `bytes` over as an exact-size `allocate(len)` block (what `deallocate(ptr, len)`
    /// frees) and returns `(ptr, len)`.
    fn legacy_handover(bytes: Vec<u8>) -> (u32, u32) {
        let len = bytes.len() as u32;
        if len == 0 {
            return (1, 0);
        }
        let boxed: Box<[u8]> = bytes.into_boxed_slice();
        (addr(Box::into_raw(boxed).cast::<u8>()), len)
    }

    /// "seed": `f(ptr, len) -> address of u32 ptr; u32 len`.
    pub fn call_seed(
        name: &str,
        ptr: i32,
        len: i32,
        f: impl for<'a> FnOnce(&'a [u8]) -> Result<Output, String>,
    ) -> i32 {
        // SAFETY: called from an exported wrapper with the host's (ptr, len), per the ABI.
        let input = unsafe { input_slice(ptr, len) };
        let (out_ptr, out_len) = legacy_handover(legacy_output(name, f(input)));
        // SAFETY: single-threaded guest (see GuestStatic); no reference to it is alive.
        unsafe { *SEED_RESULT.0.get() = [out_ptr, out_len] };
        addr(SEED_RESULT.0.get().cast::<u8>()) as i32
    }

    /// "cstring": `f(ptr) -> ptr`, both NUL-terminated.
    pub fn call_cstring(
        name: &str,
        ptr: i32,
        f: impl for<'a> FnOnce(&'a [u8]) -> Result<Output, String>,
    ) -> i32 {
        let input: &[u8] = if ptr == 0 {
            legacy_fail(name, "null input pointer")
        } else {
            // SAFETY: the convention requires a NUL-terminated string at ptr, valid for the call.
            unsafe { std::ffi::CStr::from_ptr(ptr as u32 as usize as *const std::ffi::c_char) }
                .to_bytes()
        };
        let mut out = legacy_output(name, f(input));
        if out.contains(&0) {
            legacy_fail(name, "output contains a NUL byte and cannot be a C string");
        }
        out.push(0);
        legacy_handover(out).0 as i32
    }

    /// "ptrlen": `f(ptr, len) -> (out_ptr << 32) | out_len`.
    pub fn call_ptrlen(
        name: &str,
        ptr: i32,
        len: i32,
        f: impl for<'a> FnOnce(&'a [u8]) -> Result<Output, String>,
    ) -> i64 {
        // SAFETY: called from an exported wrapper with the host's (ptr, len), per the ABI.
        let input = unsafe { input_slice(ptr, len) };
        let (out_ptr, out_len) = legacy_handover(legacy_output(name, f(input)));
        (((out_ptr as u64) << 32) | out_len as u64) as i64
    }

    /// `allocate(size)` of the legacy conventions (alignment 1; size 0 gives 1).
    pub fn allocate(size: i32) -> i32 {
        alloc(size as u32, 1) as i32
    }

    /// `deallocate(ptr, size)` of the legacy conventions.
    pub fn deallocate(ptr: i32, size: i32) {
        // SAFETY: the convention requires (ptr, size) from allocate or a handed-over output,
        // both alignment 1, freed once.
        unsafe { free(ptr as u32, size as u32, 1) }
    }
}

/// Exports the `allocate(size: i32) -> i32` / `deallocate(ptr: i32, size: i32)` pair that the
/// "seed", "cstring" and "ptrlen" conventions use. Invoke it once per module.
#[macro_export]
macro_rules! export_seed_allocator {
    () => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            #[unsafe(no_mangle)]
            extern "C" fn allocate(size: i32) -> i32 {
                $crate::__private::allocate(size)
            }
            #[unsafe(no_mangle)]
            extern "C" fn deallocate(ptr: i32, size: i32) {
                $crate::__private::deallocate(ptr, size)
            }
        };
    };
}
