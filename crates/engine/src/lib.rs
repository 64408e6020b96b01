//! # wasmlink-engine: what every wasmtime user in wasmlink shares
//!
//! The runtime linker (`wasmlink-linker`) and the plugin host (`wasmlink-host`) both compile
//! and run WebAssembly on wasmtime. What they must agree on lives here, once:
//!
//! - [`shared_engine`]: one wasmtime [`Engine`] per compiled-code cache directory for the whole
//!   host process, with wasmtime's on-disk cache ([`default_cache_dir`]).
//! - [`apply_profiler`]: `WASMLINK_PROFILE=perfmap|jitdump|vtune` ([`PROFILE_ENV`]) on every
//!   engine configuration wasmlink creates, so JIT code shows up by name in `perf`.
//! - [`cache`]: the in-memory cache of compiled modules ([`ModuleCache`]), keyed by the sha256
//!   of the bytes and the engine, bounded by the size of the compiled code.
//!
//! It owns no linking, no policy and no data exchange.
//!
//! **Never depends on** any other wasmlink crate, Arrow, Parquet, TOML or WASI: it is the floor
//! of every crate that runs wasm.
#![deny(missing_docs)]

mod artifacts;
pub mod cache;

use std::path::{Path, PathBuf};

pub use cache::{CacheStats, DEFAULT_MODULE_CACHE_BYTES, ModuleCache};
use wasmtime::Engine;

/// The environment variable that picks the code generator: `cranelift` (the default) or
/// `winch` ([`Compiler`]). Unset or empty: the default. Any other value fails engine set-up
/// with one line ([`EngineError::Config`]).
pub const COMPILER_ENV: &str = "WASMLINK_COMPILER";

/// Which of wasmtime's code generators compiles wasm to native code.
///
/// - [`Compiler::Cranelift`] (default): an optimising compiler; its code runs fastest, it
///   compiles slower.
/// - `Compiler::Winch` (cargo feature `winch`, off by default): wasmtime's baseline compiler:
///   one pass, its code slower in hot loops. It does not support the exception-handling, GC,
///   tail-call or function-references proposals: a module that uses them fails to compile under
///   it. Measured, it did not load small libraries faster than Cranelift (BENCHMARKS.md, "Issue
///   18 item 1"), and it adds 1.1 MB to the binary, so default builds leave it out.
///
/// Compiled code is cached per compiler (the engine's compatibility hash differs), so switching
/// never runs one compiler's artifact under the other. BENCHMARKS.md, "Issue 18 item 1",
/// has the figures behind the default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Compiler {
    /// Cranelift, the optimising compiler.
    #[default]
    Cranelift,
    /// Winch, the baseline (single-pass) compiler.
    #[cfg(feature = "winch")]
    Winch,
}

/// What a build without the `winch` feature says when asked for Winch.
#[cfg(not(feature = "winch"))]
const NO_WINCH: &str = "\"winch\": this wasmlink was built without the `winch` feature \
     (build it with `cargo build --release --features winch`)";

impl std::str::FromStr for Compiler {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "cranelift" => Ok(Compiler::Cranelift),
            #[cfg(feature = "winch")]
            "winch" => Ok(Compiler::Winch),
            #[cfg(not(feature = "winch"))]
            "winch" => Err(NO_WINCH.into()),
            other => Err(format!(
                "{other:?} is not a compiler (expected cranelift or winch)"
            )),
        }
    }
}

impl Compiler {
    /// The compiler [`COMPILER_ENV`] names (unset or empty: [`Compiler::Cranelift`]).
    ///
    /// # Errors
    /// [`EngineError::Config`] naming the variable when its value is not a compiler.
    pub fn from_env() -> Result<Compiler, EngineError> {
        match std::env::var(COMPILER_ENV) {
            Err(std::env::VarError::NotPresent) => Ok(Compiler::default()),
            Ok(v) if v.is_empty() => Ok(Compiler::default()),
            Ok(v) => v.parse().map_err(|e| EngineError::Config {
                message: format!("{COMPILER_ENV}: {e}"),
            }),
            Err(std::env::VarError::NotUnicode(v)) => Err(EngineError::Config {
                message: format!(
                    "{COMPILER_ENV}: {v:?} is not a compiler (expected cranelift or winch)"
                ),
            }),
        }
    }

    /// Sets `config` up for this compiler (Cranelift: with the exception-handling proposal,
    /// which C++ and CPython side modules use; Winch cannot compile it).
    pub fn apply(self, config: &mut wasmtime::Config) {
        match self {
            Compiler::Cranelift => {
                config.strategy(wasmtime::Strategy::Cranelift);
                config.wasm_exceptions(true);
                // No lazy-init check on every `call_indirect` (the linker's table is host-made
                // and filled as libraries are bound); defined tables are initialised eagerly.
                config.table_lazy_init(false);
            }
            #[cfg(feature = "winch")]
            Compiler::Winch => {
                config.strategy(wasmtime::Strategy::Winch);
            }
        }
    }
}

/// wasmtime's own compiled-code cache for wasmlink's cache directory `dir`, in `dir/wasmtime`:
/// its clean-up worker deletes every file it does not recognise under its directory, so it must
/// never be pointed at `dir` itself, where the linker's artifacts live. Every engine wasmlink
/// makes (the linker's, the plugin host's) takes its cache from here.
///
/// # Errors
/// [`EngineError::CacheDir`] naming `dir` when wasmtime cannot use it.
pub fn wasmtime_cache(dir: &Path) -> Result<wasmtime::Cache, EngineError> {
    let mut cc = wasmtime::CacheConfig::new();
    cc.with_directory(dir.join("wasmtime"));
    wasmtime::Cache::new(cc).map_err(|e| EngineError::CacheDir {
        dir: dir.to_path_buf(),
        message: e.to_string(),
    })
}

/// Why an engine could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// The compiled-code cache directory cannot be used.
    #[error("{}: cannot use as compiled-code cache: {message}", dir.display())]
    CacheDir {
        /// The directory.
        dir: PathBuf,
        /// wasmtime's reason.
        message: String,
    },
    /// wasmtime refused the engine configuration.
    #[error("engine: {message}")]
    Config {
        /// wasmtime's reason.
        message: String,
    },
}

/// Where compiled code is cached by default: `$WASMLINK_CACHE_DIR`, else
/// `$XDG_CACHE_HOME/wasmlink`, else `$HOME/.cache/wasmlink`.
pub fn default_cache_dir() -> Option<PathBuf> {
    let env = |k| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("WASMLINK_CACHE_DIR")
        .or_else(|| env("XDG_CACHE_HOME").map(|d| d.join("wasmlink")))
        .or_else(|| env("HOME").map(|d| d.join(".cache/wasmlink")))
}

/// The environment variable that turns on a profiler for JIT-compiled wasm code:
/// `perfmap` (a `/tmp/perf-PID.map` for `perf report`), `jitdump` (for `perf inject --jit`) or
/// `vtune`. Unset or empty: none. Any other value is warned about and ignored.
pub const PROFILE_ENV: &str = "WASMLINK_PROFILE";

/// Creates `dir` and its missing parents, readable by their owner only (mode 0700 on Unix), as
/// every cache directory of wasmlink is: what it holds (compiled code, a program's files) is
/// trusted by the processes that read it.
///
/// # Errors
/// What creating the directories returns.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Writes `bytes` as `path` whole or not at all: into a private directory
/// ([`create_private_dir`]), under a temporary name of this process, then renamed into
/// place, so a reader (or a mapping) never sees a partial or changing file.
///
/// # Errors
/// What creating, writing or renaming returns (the temporary file is removed).
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| std::io::Error::other("a file with no directory"))?;
    create_private_dir(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file"),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
}

/// Applies [`PROFILE_ENV`] to an engine configuration (every engine wasmlink creates calls it).
pub fn apply_profiler(config: &mut wasmtime::Config) {
    let Some(value) = std::env::var_os(PROFILE_ENV) else {
        return;
    };
    let strategy = match value.to_str().unwrap_or("") {
        "" => return,
        "perfmap" => wasmtime::ProfilingStrategy::PerfMap,
        "jitdump" => wasmtime::ProfilingStrategy::JitDump,
        "vtune" => wasmtime::ProfilingStrategy::VTune,
        other => {
            tracing::warn!(
                "{PROFILE_ENV}={other:?} is not a profiler (perfmap, jitdump, vtune): ignored"
            );
            return;
        }
    };
    config.profiler(strategy);
}

/// The engine for a cache directory, created once per host process and shared by every process
/// built with it; with a cache directory, compiled code is reused across loads and runs. Within
/// a host process, compiled modules are also kept in memory ([`ModuleCache`]), so a second load
/// or `dlopen` of the same bytes on this engine neither compiles nor reads the disk.
///
/// The on-disk cache is wasmtime's: entries are keyed by a hash of the module's bytes, the engine
/// configuration and the wasmtime version; an entry that fails to load (corrupt, or written by
/// another version) is recompiled and rewritten, never trusted blindly.
///
/// # Errors
/// [`EngineError::CacheDir`] when wasmtime cannot use the directory.
pub fn shared_engine(cache_dir: Option<&Path>) -> Result<Engine, EngineError> {
    shared_engine_with(cache_dir, Metering::default())
}

/// What an engine compiles into code to let a store stop it: fuel counting and epoch
/// (wall-clock) checks. Both cost speed (epoch checks make tight loops up to 1.5x slower), so
/// [`shared_engine`] has neither; a process with `--fuel` or `--timeout` asks for them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Metering {
    /// Count fuel (`Store::set_fuel`).
    pub fuel: bool,
    /// Check the epoch at every loop and call (`Store::set_epoch_deadline`).
    pub epoch: bool,
}

/// As [`shared_engine`], with the metering `metering` asks for: one engine per cache directory,
/// metering and compiler ([`COMPILER_ENV`]), for the whole host process.
///
/// # Errors
/// As [`shared_engine`]; [`EngineError::Config`] when [`COMPILER_ENV`] names no compiler.
pub fn shared_engine_with(
    cache_dir: Option<&Path>,
    metering: Metering,
) -> Result<Engine, EngineError> {
    let compiler = Compiler::from_env()?;
    type Key = (Option<PathBuf>, Metering, Compiler);
    static ENGINES: std::sync::Mutex<Vec<(Key, Engine)>> = std::sync::Mutex::new(Vec::new());
    let mut engines = ENGINES.lock().unwrap_or_else(|e| e.into_inner());
    let key = (cache_dir.map(Path::to_path_buf), metering, compiler);
    if let Some((_, e)) = engines.iter().find(|(k, _)| *k == key) {
        return Ok(e.clone());
    }
    let mut config = wasmtime::Config::new();
    compiler.apply(&mut config);
    config.consume_fuel(metering.fuel);
    config.epoch_interruption(metering.epoch);
    apply_profiler(&mut config);
    if let Some(dir) = cache_dir {
        config.cache(Some(wasmtime_cache(dir)?));
    }
    let engine = Engine::new(&config).map_err(|e| EngineError::Config {
        message: format!("{e:#}"),
    })?;
    if let Some(dir) = cache_dir {
        artifacts::register(&engine, dir);
    }
    engines.push((key, engine.clone()));
    Ok(engine)
}
