//! Typed errors of plugin loading and calls, and of the data exchange: [`PluginError`] for
//! callers, [`IpcError`] for Arrow IPC read from or written for a plugin, and the payloads
//! ([`AbiViolation`], [`OutputTooLarge`]) that carry a guest's ABI breach through wasmtime's
//! error to the classification of a failed call.

use std::time::Duration;

use crate::policy::{ByteSize, PolicyError};

/// Why a plugin could not be loaded or a call failed. `Display` is one line naming the plugin,
/// the function and, for a denial or a limit, the policy field that grants more.
///
/// After any error raised by a call, the instance it ran on is thrown away; the next call gets
/// a fresh one. The host and other plugins are unaffected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// The module file could not be read.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The bytes are not a valid module, or the module cannot be compiled.
    #[error("plugin `{plugin}`: {message}")]
    Load {
        /// The plugin.
        plugin: String,
        /// What went wrong.
        message: String,
    },
    /// The policy is invalid, or the module's bytes are not what the policy pins.
    #[error("{0}")]
    Policy(#[from] PolicyError),
    /// The module needs something its policy does not grant.
    #[error("plugin `{plugin}`: {message}")]
    Denied {
        /// The plugin.
        plugin: String,
        /// The capability, as the policy field that grants it (e.g. `capabilities.host-functions`).
        capability: String,
        /// What was denied and how to grant it.
        message: String,
    },
    /// The function is not exported.
    #[error("plugin `{plugin}`: no exported function `{function}`{}", available_list(.available))]
    NoSuchFunction {
        /// The plugin.
        plugin: String,
        /// The function asked for.
        function: String,
        /// The functions it does export.
        available: Vec<String>,
    },
    /// The function's type is not what the caller expected.
    #[error("plugin `{plugin}`: `{function}` has type {actual}, but the call expects {expected}")]
    Signature {
        /// The plugin.
        plugin: String,
        /// The function.
        function: String,
        /// What the caller expected.
        expected: String,
        /// What the module exports.
        actual: String,
    },
    /// The guest trapped (unreachable, out-of-bounds access, division by zero, ...).
    #[error("plugin `{plugin}`: `{function}` trapped: {trap}")]
    Trap {
        /// The plugin.
        plugin: String,
        /// The function called (or `start`/`_initialize` during instantiation).
        function: String,
        /// The trap's description.
        trap: String,
        /// The WebAssembly backtrace, one frame per line, if available.
        backtrace: Option<String>,
    },
    /// The call ran longer than `limits.timeout`.
    #[error("plugin `{plugin}`: `{function}` timed out after {} (limits.timeout)", crate::policy::HumanDuration(*.limit))]
    Timeout {
        /// The plugin.
        plugin: String,
        /// The function.
        function: String,
        /// The limit.
        limit: Duration,
    },
    /// The call used up `limits.fuel`.
    #[error("plugin `{plugin}`: `{function}` ran out of fuel after {fuel} units (limits.fuel)")]
    OutOfFuel {
        /// The plugin.
        plugin: String,
        /// The function.
        function: String,
        /// The fuel it had.
        fuel: u64,
    },
    /// The WebAssembly stack overflowed (`limits.stack`).
    #[error("plugin `{plugin}`: `{function}` overflowed its {} stack (limits.stack)", ByteSize(*.limit))]
    StackOverflow {
        /// The plugin.
        plugin: String,
        /// The function.
        function: String,
        /// The stack size in bytes.
        limit: u64,
    },
    /// Linear memory would exceed `limits.memory`.
    #[error("plugin `{plugin}`: `{function}` tried to grow memory to {requested} bytes beyond the {} limit (limits.memory)", ByteSize(*.limit))]
    MemoryLimit {
        /// The plugin.
        plugin: String,
        /// The function (or `instantiate`).
        function: String,
        /// The limit in bytes.
        limit: u64,
        /// What was asked for.
        requested: u64,
    },
    /// Tables would exceed `limits.table-elements`.
    #[error(
        "plugin `{plugin}`: `{function}` tried to grow a table to {requested} elements beyond the {limit} limit (limits.table-elements)"
    )]
    TableLimit {
        /// The plugin.
        plugin: String,
        /// The function.
        function: String,
        /// The limit.
        limit: u64,
        /// What was asked for.
        requested: u64,
    },
    /// More instances than `limits.instances`, or the host's instance pool is exhausted.
    #[error("plugin `{plugin}`: {message}")]
    InstanceLimit {
        /// The plugin.
        plugin: String,
        /// What limit was hit.
        message: String,
    },
    /// Captured output or returned data exceeded `limits.output`.
    #[error("plugin `{plugin}`: `{function}` produced more than {} of {what} (limits.output)", ByteSize(*.limit))]
    OutputLimit {
        /// The plugin.
        plugin: String,
        /// The function.
        function: String,
        /// `stdout`, `stderr` or `returned data`.
        what: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// The guest called `proc_exit` in the middle of a call.
    #[error("plugin `{plugin}`: `{function}` called proc_exit({code})")]
    Exit {
        /// The plugin.
        plugin: String,
        /// The function.
        function: String,
        /// The exit code.
        code: i32,
    },
    /// A host function panicked while the guest called it.
    #[error("plugin `{plugin}`: a host function panicked during `{function}`: {message}")]
    HostPanic {
        /// The plugin.
        plugin: String,
        /// The guest function that was running.
        function: String,
        /// The panic message.
        message: String,
    },
    /// The guest broke the data-exchange ABI (a pointer or length out of bounds, a missing
    /// allocator, malformed Arrow IPC, ...). See docs/abi.md.
    #[error("plugin `{plugin}`: `{function}`: {message}")]
    Abi {
        /// The plugin.
        plugin: String,
        /// The function.
        function: String,
        /// What was wrong.
        message: String,
    },
    /// The guest returned an error of its own (ABI status 1).
    #[error("plugin `{plugin}`: `{function}` failed: {message}")]
    Guest {
        /// The plugin.
        plugin: String,
        /// The function.
        function: String,
        /// The guest's message.
        message: String,
    },
}

fn available_list(available: &[String]) -> String {
    if available.is_empty() {
        " (it exports no functions)".to_string()
    } else {
        let mut shown: Vec<&str> = available.iter().map(String::as_str).take(12).collect();
        if available.len() > 12 {
            shown.push("...");
        }
        format!(" (it exports: {})", shown.join(", "))
    }
}

impl PluginError {
    /// The WebAssembly backtrace of a trap, if there was one.
    pub fn backtrace(&self) -> Option<&str> {
        match self {
            PluginError::Trap { backtrace, .. } => backtrace.as_deref(),
            _ => None,
        }
    }

    /// Whether the error came from the guest's behaviour during a call (as opposed to loading
    /// or the caller's mistake), so the instance was thrown away.
    pub fn is_call_failure(&self) -> bool {
        matches!(
            self,
            PluginError::Trap { .. }
                | PluginError::Timeout { .. }
                | PluginError::OutOfFuel { .. }
                | PluginError::StackOverflow { .. }
                | PluginError::MemoryLimit { .. }
                | PluginError::TableLimit { .. }
                | PluginError::OutputLimit { .. }
                | PluginError::Exit { .. }
                | PluginError::HostPanic { .. }
                | PluginError::Abi { .. }
        )
    }
}

/// Arrow IPC that could not be read or written. `Display` is one line; a caller puts the file
/// (or `returned ` for a guest's output) before it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IpcError {
    /// The stream is compressed; wasmlink refuses compressed IPC rather than decompress it.
    #[error("compressed Arrow IPC, which wasmlink refuses: {0}")]
    Compressed(String),
    /// The stream ends in the middle of a message.
    #[error("a truncated Arrow IPC stream: {0}")]
    Truncated(String),
    /// The stream is not well-formed Arrow IPC: a corrupt header, a buffer outside its
    /// message's body, arrays that fail arrow's validation, bytes after the end marker, ...
    #[error("malformed Arrow IPC: {0}")]
    Malformed(String),
    /// The bytes start like an Arrow IPC file (`ARROW1`) but are not a valid one.
    #[error("not a valid Arrow IPC file: {0}")]
    File(String),
    /// There was no batch to encode.
    #[error("no batch to encode")]
    NoBatch,
    /// Arrow could not encode the batches.
    #[error("{0}")]
    Encode(#[source] arrow_schema::ArrowError),
}

/// A guest broke the ABI; becomes [`PluginError::Abi`] and poisons the instance.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(super) struct AbiViolation(pub(super) String);

/// The guest returned more than `limits.output` bytes; becomes [`PluginError::OutputLimit`].
#[derive(Debug, thiserror::Error)]
#[error("returned data over the limit")]
pub(super) struct OutputTooLarge;

/// An error's message chain on one line.
pub(super) fn one_line(e: &wasmtime::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        let s = s.lines().next().unwrap_or("").trim().to_string();
        if !s.is_empty() && !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ")
}
