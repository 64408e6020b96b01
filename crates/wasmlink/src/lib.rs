//! # wasmlink: a runtime dynamic linker and secure module host for WebAssembly
//!
//! wasmlink loads WebAssembly modules at run time, on demand, links them and runs them on
//! wasmtime. This crate is the library a host embeds; the `wasmlink` binary is glue over it.
//!
//! - [`process`]: a linked process: one memory, one table, the main program and its shared
//!   libraries loaded, bound and initialised; `dlopen`/`dlsym`/`dlclose` from wasm and Rust.
//! - [`plain`]: plain modules linked by module name, with the host as the linker.
//! - [`pipeline`]: streaming pipelines of plugin stages over bounded queues, with ordered,
//!   atomic, resumable outputs and dead letters.
//! - [`resolve`]: finding needed libraries on a search path, as ld.so does
//!   (`-L`, `WASMLINK_LIBRARY_PATH`, RUNPATH with `$ORIGIN`, default directories).
//! - [`repo`]: the module repository, a content-addressed store of named, versioned and
//!   optionally signed modules, referenced as `name@version-requirement`.
//!
//! What a module declares for linking is modelled by the `wasmlink-dylink` crate, re-exported
//! here as [`dylink`].
#![deny(missing_docs)]

pub use wasmlink_dylink as dylink;

pub mod exchange;
pub mod pipeline;
pub mod plain;
pub mod plugin;
pub mod policy;
pub mod process;
pub mod repo;
pub mod resolve;

pub use process::{LinkError, Process, ProcessBuilder, Symbol};
