//! # wasmlink-host: the secure plugin host
//!
//! Loads WebAssembly modules as isolated plugins and calls them from many threads:
//!
//! - [`policy`]: `Policy`, the capability type (directories, environment, stdio, clocks,
//!   randomness, host functions, limits), read from TOML with unknown fields refused, with a
//!   JSON schema generated from the types. It denies by default.
//! - [`plugin`]: `PluginHost` (engines, pooled instances, the epoch timer), `Plugin` (a module,
//!   its policy, a pool of idle instances, hot swap) and `Instance` (one checked-out instance,
//!   every failure a typed `PluginError`).
//! - [`exchange`]: the data-exchange ABI (docs/abi.md) of an instance: bytes, strings and Arrow
//!   record batches through guest memory, one copy each way, and the Arrow IPC readers that
//!   check every message from a guest or a file before arrow builds an array (`IpcReader`,
//!   `read_ipc`). It lives in the instance (`plugin::instance::exchange`), its errors in
//!   `plugin::error` (`PluginError`, `IpcError`), and is re-exported here.
//!
//! Inside `plugin`, the dependencies point one way: `plugin` (host, plugins) -> `instance`
//! (checkout, calls, limits) -> `exchange` (ABI calls, IPC), each using only `error` and
//! `policy` beside it; a child reaches its parent's private items, so there are no
//! `pub(crate)` back doors.
//! - [`sandbox`]: a `Policy` as the capability layer of a linked process (`wasmlink run
//!   --policy`), refusing what a process cannot enforce.
//!
//! It depends on `wasmlink-engine` (engines, compiled-module cache), `wasmlink-repo` (plugins
//! loaded by name from a repository) and `wasmlink-linker` only for the `Sandbox` trait a policy
//! implements. **It never depends on** Parquet, CSV/JSON readers, pipelines or the CLI.
#![deny(missing_docs)]

pub mod plugin;
pub mod policy;
pub mod sandbox;

pub use plugin::exchange;
