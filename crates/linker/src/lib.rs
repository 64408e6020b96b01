//! # wasmlink-linker: the runtime dynamic linker
//!
//! What ld.so does for native code, for WebAssembly on wasmtime: loads a main program and the
//! `dylink.0` shared libraries it needs into one linear memory and one function table, binds
//! their imports (`GOT.mem`, `GOT.func`, functions through thunks or directly), runs their
//! constructors and the program, and serves `dlopen`/`dlsym`/`dlclose` from inside wasm and
//! from Rust.
//!
//! `dlclose` parks a library: a later `dlopen` of the same module (same path and content) gets
//! back its instance, data region and canonical table slots, so dlopen/dlclose cycles leave the
//! table, memory and store flat. A function pointer to an unloaded library traps ("... was
//! unloaded") and, after a reload, reaches the same function of the new copy; a canonical slot
//! is never given to another function. At most 32 libraries (32 MiB of data) stay parked.
//!
//! - [`resolve`]: finding needed libraries on a search path, as ld.so does (`-L`,
//!   `WASMLINK_LIBRARY_PATH`, RUNPATH with `$ORIGIN`, default directories, repositories).
//! - [`process`]: a linked process: builder, loading (the floor that both the process API and
//!   libdl call down into), layout, binding and the GOT, instantiation, thunks, the WASI
//!   layer for linked programs, libdl.
//! - [`plain`]: plain modules linked by module name, with the host as the linker.
//! - [`stub`]: link-time stubs of shared libraries (what `wasmlink stub` writes), for wasm-ld.
//!
//! It depends on `wasmlink-dylink` (what a module declares), `wasmlink-engine` (engines and
//! the compiled-module cache) and `wasmlink-repo` (libraries found in a module repository).
//! **It never depends on** Arrow, Parquet, TOML, policies, plugins or pipelines: a capability
//! layer comes in through the [`process::Sandbox`] trait.
#![deny(missing_docs)]

pub use wasmlink_dylink as dylink;

pub mod plain;
pub mod process;
pub mod resolve;
pub mod stub;

pub use process::{LinkError, Process, ProcessBuilder, Sandbox, Symbol};
