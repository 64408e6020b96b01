//! A [`Policy`] as the capability layer of a linked process (`wasmlink run --policy`).
//!
//! A linked process has one store and no per-call entry, so a policy's `limits.timeout` and
//! `limits.fuel` cannot be enforced there; they are refused with an error that names the
//! field, never ignored. So are `stdio = "capture"` and network access (WASI preview 1 has no
//! sockets).

use wasmlink_linker::process::{Host, LinkError, Sandbox};
use wasmtime_wasi::WasiCtxBuilder;

use crate::policy::{OutputMode, Policy};

impl Sandbox for Policy {
    fn wasi(&self, args: &[String]) -> Result<WasiCtxBuilder, LinkError> {
        let policy = |message| LinkError::Policy { message };
        check_run_policy(self).map_err(policy)?;
        let mut wasi = self
            .wasi_builder("program", None, None)
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
}

/// Refuses what a policy asks of `wasmlink run` that a linked process cannot honour.
fn check_run_policy(policy: &Policy) -> Result<(), String> {
    let refuse = |field: &str, why: &str| Err(format!("{field}: {why}"));
    if policy.limits.timeout.is_some_and(|t| !t.is_none()) {
        return refuse(
            "limits.timeout",
            "is not enforced by `wasmlink run` (a linked process has no per-call entry); use `wasmlink call`, or remove it",
        );
    }
    if policy.limits.fuel.is_some() {
        return refuse(
            "limits.fuel",
            "is not enforced by `wasmlink run`; use `wasmlink call`, or remove it",
        );
    }
    if policy.stdio.stdout == OutputMode::Capture || policy.stdio.stderr == OutputMode::Capture {
        return refuse(
            "stdio",
            "`capture` is for plugins; `wasmlink run` can inherit or close a stream",
        );
    }
    if policy.capabilities.network {
        return refuse(
            "capabilities.network",
            "the program runs under WASI preview 1, which has no sockets",
        );
    }
    Ok(())
}
