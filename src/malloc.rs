//! The C allocator's tuning for the CLI process (Linux with glibc; elsewhere nothing).
//!
//! glibc's malloc serves a large block from the arena of the thread that asks once its dynamic
//! mmap threshold has risen (it rises to the size of every mapped block freed, up to 32 MiB),
//! and it keeps freed arena memory for reuse. `wasmlink index`, `pipeline` and `serve` hand
//! batches of a few MiB from thread to thread, so the arenas of the reader and worker threads
//! held well over 100 MiB of freed batches at the peak of indexing the Rust docs, more than the
//! guests' linear memories (BENCHMARKS.md, "Peak memory: glibc's mmap threshold"). With the
//! threshold fixed at 1 MiB, blocks of 1 MiB and more are mapped and unmapped on their own and
//! go back to the system when freed.

/// The fixed mmap threshold, in bytes.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: i32 = 1 << 20;

/// Leaves glibc's own defaults when set to `glibc` (to compare, or if the fixed threshold
/// costs a workload more than it saves).
pub const MALLOC_ENV: &str = "WASMLINK_MALLOC";

/// Fixes glibc's mmap threshold at [`MMAP_THRESHOLD`] unless the user chose one
/// (`MALLOC_MMAP_THRESHOLD_`, or `mmap_threshold` in `GLIBC_TUNABLES`) or asked for glibc's
/// defaults ([`MALLOC_ENV`]`=glibc`). Call before any thread starts.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let chosen = std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some()
            || std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("mmap_threshold"))
            || std::env::var(MALLOC_ENV).is_ok_and(|v| v == "glibc");
        if !chosen {
            // One of the project's two `unsafe` blocks (crates/engine/src/artifacts.rs has the
            // other): a C call with no pointer in or out.
            // SAFETY: mallopt sets one parameter of the allocator under the allocator's own
            // lock; it is called before the process starts any thread.
            #[allow(
                unsafe_code,
                reason = "one mallopt call with integer arguments; see SAFETY"
            )]
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD)
            };
        }
    }
}
