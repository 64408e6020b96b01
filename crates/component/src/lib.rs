//! WebAssembly components in wasmlink: what today's toolchains emit by default
//! (`wasm32-wasip2` in Rust and wasi-sdk, componentize-py, jco).
//!
//! - [`describe`]: a component's world as WIT, and the core modules and instances inside it.
//! - [`ComponentProcess`]: a component instantiated on wasmtime's component model with
//!   wasmtime-wasi's WASI 0.2 (the `WasiCtx` comes from the caller, so the host's policy
//!   decides what it may touch); typed calls whose arguments and results are WAVE text
//!   (`"text"`, `42`, `[1, 2]`, `{words: 3}`, `some(1)`, `ok(3)`), checked against the
//!   function's WIT types; [`TypedCall`], the fast path for Rust hosts (wasmtime's
//!   `TypedFunc` under the same limits); `wasi:cli/command` runs. A failed call poisons the
//!   instance.
//! - [`ComponentPre`]: a compiled component with resolved imports, instantiated many times;
//!   [`ComponentPool`]: warm instances of one, a poisoned one replaced on return.
//!
//! - [`link`]: composition at run time, a component's imports satisfied by other components'
//!   exports, each in its own store under its own policy ([`Provider`]); [`compose`]: the same
//!   written to one composed component with wac-graph (`wasmlink compose`).
//!
//! - [`http`]: outgoing `wasi:http` (wasmtime-wasi-http) for components importing it, each
//!   request checked against the caller's allow-list ([`HttpAccess`]; deny by default, a denied
//!   request is the guest-visible error `HTTP-request-denied`).
//!
//! It never depends on the linker, the host or the pipeline; they depend on it.

pub mod compose;
pub mod describe;
mod error;
pub mod http;
pub mod link;
mod pool;
mod process;

pub use describe::ComponentSummary;
pub use error::ComponentError;
pub use http::HttpAccess;
pub use link::Provider;
pub use pool::{ComponentPool, Pooled};
pub use process::{ComponentLimits, ComponentPre, ComponentProcess, TypedCall};
/// A component value, as [`ComponentProcess::call_vals`] takes and returns them.
pub use wasmtime::component::Val;

/// Whether `bytes` start like a component (not a core module).
pub fn is_component(bytes: &[u8]) -> bool {
    wasmparser::Parser::is_component(bytes)
}
