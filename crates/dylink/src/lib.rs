//! # wasmlink-dylink: what a WebAssembly module declares for linking
//!
//! [`ModuleInfo::parse`] reads a core WebAssembly module with `wasmparser` and returns an owned
//! model of everything a dynamic linker needs to know before it instantiates anything:
//!
//! - the `dylink.0` section ([`DylinkInfo`]): memory and table needs, needed libraries,
//!   export/import symbol flags, runtime path; or the legacy `dylink` section;
//! - the [`ModuleKind`]: shared library, position-independent main program, static main program,
//!   or a plain module; and whether it is wasm32 or wasm64;
//! - every import, classified ([`ImportClass`]): the shared memory and table, the
//!   linker-provided globals, `GOT.mem`/`GOT.func` entries, undefined `env` symbols, exception
//!   tags, WASI preview 1 and WASI 0.2 functions, items from other modules;
//! - every export, classified ([`ExportClass`]): functions, data addresses, TLS symbols,
//!   memories, tables, the loader's init functions.
//!
//! This crate knows nothing of wasmtime: it is a pure function of the module's bytes.
//!
//! ## Robustness
//! Parsing never panics, never loops without consuming input and never allocates more than a
//! small multiple of the input's size, whatever the bytes: counts read from the module are never
//! used to pre-allocate. Function bodies are not validated (wasmtime does that when it compiles).
//! Every error is a [`ParseError`] naming the section and the byte offset.
//!
//! What a module asks the loader for is bounded here, so that no consumer can be made to
//! allocate by a small file: MEM_INFO's memory alignment is at most 2^16 bytes
//! ([`MAX_MEMORY_ALIGN_LOG2`]), its table alignment at most 2^16 slots
//! ([`MAX_TABLE_ALIGN_LOG2`]) and its table size at most [`MAX_TABLE_SIZE`] slots; a larger
//! value is a [`ParseError`] naming the field (`tablealignment`, ...), the section and the
//! field's offset.
//!
//! ```
//! let wasm = wat::parse_str(r#"
//!     (module
//!       (@dylink.0 (mem-info (memory 16 2)) (needed "libc.so"))
//!       (import "env" "memory" (memory 1))
//!       (import "env" "__memory_base" (global i32))
//!       (import "env" "puts" (func (param i32) (result i32)))
//!       (func (export "hello")))
//! "#).unwrap();
//! let info = wasmlink_dylink::ModuleInfo::parse(&wasm).unwrap();
//! assert_eq!(info.kind, wasmlink_dylink::ModuleKind::SharedLibrary);
//! assert_eq!(info.dylink.as_ref().unwrap().needed, ["libc.so"]);
//! assert_eq!(info.undefined_symbols().count(), 1);
//! ```
#![deny(missing_docs)]

mod classify;
mod error;
mod module;
mod section;

pub use classify::{
    EntityKind, ExportClass, INIT_EXPORTS, ImportClass, WASI_P1, WASI_UNSTABLE, classify_import,
};
pub use error::ParseError;
pub use module::{
    AddressWidth, Export, Import, ImportType, Limits, ModuleInfo, ModuleKind, Signature, Summary,
    ValType,
};
pub use section::{
    DylinkFormat, DylinkInfo, ExportInfo, ImportInfo, MAX_MEMORY_ALIGN_LOG2, MAX_TABLE_ALIGN_LOG2,
    MAX_TABLE_SIZE, MemInfo, SymbolFlags, UnknownSubsection, parse_dylink0, parse_legacy_dylink,
};
