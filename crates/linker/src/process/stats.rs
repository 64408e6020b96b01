//! `WASMLINK_DEBUG=statistics`: where a linked process's start-up time goes, as glibc's
//! `LD_DEBUG=statistics` prints the dynamic linker's relocation time.
//!
//! Each phase is timed as the loader runs it and summed over every module of the process
//! (the main program, its libraries, the generated thunk modules and WASI shims); the
//! summary is printed on stderr at the `wasmlink::statistics` target once the process is
//! loaded, and the time in the entry point once it returns.

use std::time::{Duration, Instant};

/// The tracing target of the statistics.
pub(super) const TARGET: &str = "wasmlink::statistics";

/// Whether the statistics are wanted (timing costs a clock read per phase either way).
pub(super) fn enabled() -> bool {
    tracing::enabled!(target: TARGET, tracing::Level::DEBUG)
}

/// Time spent in each phase of loading a process.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Stats {
    /// Engine, WASI context and linker set-up.
    pub setup: Duration,
    /// Finding, reading and parsing module files.
    pub read: Duration,
    /// Modules read (files) and their bytes.
    pub files: u32,
    pub bytes: u64,
    /// Hashing module bytes for the code caches.
    pub hash: Duration,
    /// Getting compiled code: the in-memory cache, the mapped artifact, or a compilation.
    pub code: Duration,
    /// Binding imports and instantiating (thunks and WASI shims included).
    pub instantiate: Duration,
    /// `__wasm_apply_data_relocs`.
    pub relocate: Duration,
    /// Constructors (`__wasm_call_ctors`, `_initialize`).
    pub ctors: Duration,
    /// The whole load.
    pub total: Duration,
}

pub(super) fn ms(d: Duration) -> String {
    format!("{:9.3} ms", d.as_secs_f64() * 1e3)
}

impl Stats {
    /// Prints the load's phases.
    pub(super) fn report_load(&self) {
        let lines = [
            ("set-up (engine, WASI, linker)", self.setup),
            ("find + read + parse", self.read),
            ("hash (code cache key)", self.hash),
            ("compiled code (cache/map/compile)", self.code),
            ("bind + instantiate", self.instantiate),
            ("relocations", self.relocate),
            ("constructors", self.ctors),
        ];
        let mut o = format!(
            "load: {} files, {:.1} MB; total {}\n",
            self.files,
            self.bytes as f64 / 1e6,
            ms(self.total).trim_start()
        );
        for (what, d) in lines {
            o.push_str(&format!("  {what:<36}{}\n", ms(d)));
        }
        let accounted: Duration = lines.iter().map(|(_, d)| *d).sum();
        o.push_str(&format!(
            "  {:<36}{}",
            "other",
            ms(self.total.saturating_sub(accounted))
        ));
        tracing::debug!(target: TARGET, "{o}");
    }
}

impl Stats {
    /// Prints what loading libraries cost since `before` (the `dlopen`s of a run of the main),
    /// per library and in total, phase by phase.
    pub(super) fn report_since(&self, before: &Stats) {
        let files = self.files.saturating_sub(before.files);
        if files == 0 {
            return;
        }
        let lines = [
            ("find + read + parse", self.read, before.read),
            ("hash (code cache key)", self.hash, before.hash),
            ("compiled code (cache/map/compile)", self.code, before.code),
            ("bind + instantiate", self.instantiate, before.instantiate),
            ("relocations", self.relocate, before.relocate),
            ("constructors", self.ctors, before.ctors),
        ];
        let mut o = format!("dlopen: {files} files loaded by the main; per file, then total\n");
        for (what, now, then) in lines {
            let d = now.saturating_sub(then);
            o.push_str(&format!(
                "  {what:<36}{:9.1} us {}\n",
                d.as_secs_f64() * 1e6 / f64::from(files),
                ms(d)
            ));
        }
        tracing::debug!(target: TARGET, "{}", o.trim_end());
    }
}

/// Times `f`, adding its duration to `slot`.
pub(super) fn timed<T>(slot: &mut Duration, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let r = f();
    *slot += t.elapsed();
    r
}
