//! # wasmlink: a runtime dynamic linker and secure module host for WebAssembly
//!
//! A facade over the crates that do the work, for embedders who want all of it under one
//! name. Each product is also a crate of its own, so an embedder who only wants the linker
//! depends on `wasmlink-linker` and compiles no Arrow, Parquet or TOML:
//!
//! - [`dylink`] (`wasmlink-dylink`): what a module declares for linking; a pure model.
//! - [`engine`] (`wasmlink-engine`): engine configuration, profiler, compiled-module cache.
//! - [`repo`] (`wasmlink-repo`): the content-addressed, signed module repository.
//! - [`resolve`], [`process`], [`plain`] (`wasmlink-linker`): the runtime linker.
//! - [`policy`], [`plugin`], [`exchange`] (`wasmlink-host`): the sandboxed plugin host.
//! - [`pipeline`] (`wasmlink-pipeline`): streaming pipelines of plugin stages.
#![deny(missing_docs)]

pub use wasmlink_component as component;
pub use wasmlink_dylink as dylink;
pub use wasmlink_engine as engine;
pub use wasmlink_host::{exchange, plugin, policy, sandbox};
pub use wasmlink_linker::{plain, process, resolve, stub};
pub use wasmlink_pipeline as pipeline;
pub use wasmlink_repo as repo;
pub use wasmlink_wasi as wasi;

pub use wasmlink_linker::{LinkError, Process, ProcessBuilder, Symbol};
