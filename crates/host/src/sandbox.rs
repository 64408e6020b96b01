//! A [`Policy`] as the capability layer of a linked process (`wasmlink run --policy`).
//!
//! A linked process honours the policy's `limits.timeout` and `limits.fuel` for its whole life
//! (loading, the entry point, every later call) rather than per call, and an explicit
//! `limits.memory` stops it when it grows its memory past the limit. It gets the network the
//! policy's `capabilities.net` allows, through `wasi:sockets` (WASI 0.2). `stdio = "capture"`
//! is refused with an error that names the field, never ignored.

use std::time::Duration;

use wasmlink_linker::process::{Host, LinkError, Sandbox};
use wasmtime_wasi::WasiCtxBuilder;

use crate::policy::{OutputMode, Policy};

impl Sandbox for Policy {
    fn wasi(&self, args: &[String]) -> Result<WasiCtxBuilder, LinkError> {
        let policy = |message| LinkError::Policy { message };
        check_run_policy(self).map_err(policy)?;
        let mut wasi = self
            .wasi_builder_with("program", None, None, true)
            .map_err(|e| policy(e.to_string()))?;
        if self.args.is_empty() {
            wasi.args(args);
        }
        Ok(wasi)
    }

    fn restrict(&self, linker: &mut wasmtime::Linker<Host>) -> wasmtime::Result<()> {
        self.deny_ambient(linker)
    }

    fn max_memory(&self) -> u64 {
        self.effective_limits().memory
    }

    fn memory_limit(&self) -> Option<u64> {
        self.limits.memory.map(|b| b.0)
    }

    /// `limits.timeout`, if set (and not `none`). Unlike a plugin call, a program gets no
    /// default time limit.
    fn timeout(&self) -> Option<Duration> {
        self.limits.timeout.filter(|t| !t.is_none()).map(|t| t.0)
    }

    fn fuel(&self) -> Option<u64> {
        self.limits.fuel
    }
}

/// Refuses what a policy asks of `wasmlink run` that a linked process cannot honour.
fn check_run_policy(policy: &Policy) -> Result<(), String> {
    if policy.stdio.stdout == OutputMode::Capture || policy.stdio.stderr == OutputMode::Capture {
        return Err(
            "stdio: `capture` is for plugins; `wasmlink run` can inherit or close a stream".into(),
        );
    }
    Ok(())
}
