//! CPU, time and memory limits of a linked process ([`ProcessBuilder::timeout`],
//! [`ProcessBuilder::fuel`], [`ProcessBuilder::memory_limit`]), and how an error that one of
//! them caused is recognised ([`Limit`]).
//!
//! The limits hold for the process's whole life: loading (constructors), the entry point and
//! every later call, `dlopen` included. A time limit is enforced by epoch checks compiled into
//! the code (an engine of its own, [`wasmlink_engine::shared_engine_with`]) and a timer thread
//! per process that ends with the process; fuel by wasmtime's fuel counting; memory by the
//! store's limiter, which stops the program when it grows its memory past the limit (instead of
//! `memory.grow` returning -1, which few programs survive).
//!
//! [`ProcessBuilder::timeout`]: super::ProcessBuilder::timeout
//! [`ProcessBuilder::fuel`]: super::ProcessBuilder::fuel
//! [`ProcessBuilder::memory_limit`]: super::ProcessBuilder::memory_limit

use std::sync::mpsc;
use std::time::{Duration, Instant};

use wasmtime::{Engine, Store, UpdateDeadline};

/// The limit that stopped a program (see [`LinkError::Limit`](super::LinkError::Limit)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Limit {
    /// The wall-clock limit ([`ProcessBuilder::timeout`](super::ProcessBuilder::timeout)).
    Time(Duration),
    /// The fuel ([`ProcessBuilder::fuel`](super::ProcessBuilder::fuel)) ran out.
    Fuel,
    /// The program tried to grow its memory to `requested` bytes, past the memory limit
    /// ([`ProcessBuilder::memory_limit`](super::ProcessBuilder::memory_limit)) or past the
    /// maximum its memory declares.
    Memory {
        /// The size it asked for, in bytes.
        requested: u64,
    },
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limit::Time(d) => write!(f, "stopped after the {} time limit", human(*d)),
            Limit::Fuel => write!(f, "stopped: out of fuel"),
            Limit::Memory { requested } => write!(
                f,
                "stopped when growing memory to {requested} bytes, past its memory limit"
            ),
        }
    }
}

/// `2s`, `250ms`, `1.5s`: how a duration is written on the command line.
pub fn human(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d < Duration::from_secs(1) && d.subsec_nanos().is_multiple_of(1_000_000) {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs_f64())
    }
}

/// The error the epoch callback stops a program with when its time is up.
#[derive(Debug, thiserror::Error)]
#[error("stopped after the {} time limit", human(*.0))]
pub(super) struct TimeUp(pub(super) Duration);

/// The limit `err` reports, if a limit stopped the program.
pub(super) fn classify(err: &wasmtime::Error) -> Option<Limit> {
    if let Some(TimeUp(d)) = err.downcast_ref::<TimeUp>() {
        return Some(Limit::Time(*d));
    }
    if let Some(wasmtime::Trap::OutOfFuel) = err.downcast_ref::<wasmtime::Trap>() {
        return Some(Limit::Fuel);
    }
    // wasmtime's `StoreLimits` with `trap_on_grow_failure` (set only with a memory limit).
    const GROW: &str = "forcing trap when growing memory to ";
    err.chain().find_map(|e| {
        let text = e.to_string();
        let rest = text.strip_prefix(GROW)?;
        let requested = rest.strip_suffix(" bytes")?.parse().ok()?;
        Some(Limit::Memory { requested })
    })
}

/// Arms a time limit on `store`: an epoch deadline checked against the clock, and a timer
/// thread that advances `engine`'s epoch once the time is up (and every 10 ms after, in case the
/// program is in a host call). The thread ends when the store is dropped.
pub(super) fn arm_timeout<T: 'static>(
    store: &mut Store<T>,
    engine: &Engine,
    limit: Duration,
) -> std::io::Result<()> {
    let start = Instant::now();
    let (tx, rx) = mpsc::channel::<()>();
    let engine = engine.clone();
    std::thread::Builder::new()
        .name("wasmlink-timeout".into())
        .spawn(move || {
            if rx.recv_timeout(limit) != Err(mpsc::RecvTimeoutError::Timeout) {
                return;
            }
            loop {
                engine.increment_epoch();
                if rx.recv_timeout(Duration::from_millis(10))
                    != Err(mpsc::RecvTimeoutError::Timeout)
                {
                    return;
                }
            }
        })?;
    store.set_epoch_deadline(1);
    // Other processes on the same engine advance its epoch too: the clock decides.
    store.epoch_deadline_callback(move |_| {
        let _keep_timer = &tx;
        if start.elapsed() >= limit {
            Err(TimeUp(limit).into())
        } else {
            Ok(UpdateDeadline::Continue(1))
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_typed() {
        assert_eq!(human(Duration::from_secs(2)), "2s");
        assert_eq!(human(Duration::from_millis(250)), "250ms");
        assert_eq!(human(Duration::from_millis(1500)), "1.5s");
    }

    #[test]
    fn limits_are_recognised_in_errors() {
        let e = wasmtime::Error::new(TimeUp(Duration::from_secs(2)));
        assert_eq!(classify(&e), Some(Limit::Time(Duration::from_secs(2))));
        let e = wasmtime::Error::new(wasmtime::Trap::OutOfFuel);
        assert_eq!(classify(&e), Some(Limit::Fuel));
        let e = wasmtime::format_err!("forcing trap when growing memory to 2162688 bytes");
        assert_eq!(
            classify(&e),
            Some(Limit::Memory {
                requested: 2_162_688
            })
        );
        let e = wasmtime::Error::new(wasmtime::Trap::UnreachableCodeReached);
        assert_eq!(classify(&e), None);
    }
}
