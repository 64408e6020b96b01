//! The on-disk cache of compiled artifacts: uncompressed, mapped rather than read.
//!
//! wasmtime's own disk cache keeps each compiled module zstd-compressed; loading one means
//! reading the file, inflating it into a growing buffer and copying the result into an
//! executable mapping. For the 11 libraries of the corpus that was over half of a 165 ms load
//! (BENCHMARKS.md, session 6). Here a module compiled for an engine with a cache directory is
//! also written, once, as its serialized artifact (`Module::serialize`), and later loads map it
//! with `Module::deserialize_file`: no inflating, no copy.
//!
//! Layout: `<cache dir>/artifacts/<engine>/<sha256 of the module bytes>.cwasm`, where
//! `<engine>` is a hash of the engine's compatibility (wasmtime version and every setting that
//! changes code), so an artifact is only ever offered to an engine that can run it; wasmtime
//! checks that again when it maps the file, and a file it refuses (another version, a torn or
//! foreign file) is recompiled and replaced.
//!
//! **Trust**: like wasmtime's cache, an artifact is native code the process will run; the
//! directory must be writable only by the user (it is created mode 0700). Files are written
//! to a temporary name and renamed into place, never modified after, because a mapped file
//! must not change under the process.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use wasmtime::{Engine, Module};

/// Engines with an artifact directory, registered by `shared_engine_with`.
static DIRS: Mutex<Vec<(Engine, PathBuf)>> = Mutex::new(Vec::new());

/// Gives `engine` an artifact directory under `cache_dir`.
pub(crate) fn register(engine: &Engine, cache_dir: &Path) {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut h);
    let dir = cache_dir
        .join("artifacts")
        .join(format!("{:016x}", h.finish()));
    let mut dirs = DIRS.lock().unwrap_or_else(|e| e.into_inner());
    if !dirs.iter().any(|(e, _)| Engine::same(e, engine)) {
        dirs.push((engine.clone(), dir));
    }
}

fn dir_of(engine: &Engine) -> Option<PathBuf> {
    let dirs = DIRS.lock().unwrap_or_else(|e| e.into_inner());
    dirs.iter()
        .find(|(e, _)| Engine::same(e, engine))
        .map(|(_, d)| d.clone())
}

fn file_of(engine: &Engine, key: &[u8; 32]) -> Option<PathBuf> {
    use std::fmt::Write;
    let mut name = String::with_capacity(2 * key.len() + 6);
    for b in key {
        let _ = write!(name, "{b:02x}");
    }
    name.push_str(".cwasm");
    Some(dir_of(engine)?.join(name))
}

/// The artifact of the module whose bytes hash to `key`, if `engine` has an artifact
/// directory holding a usable one.
pub(crate) fn load(engine: &Engine, key: &[u8; 32]) -> Option<Module> {
    let path = file_of(engine, key)?;
    if !path.is_file() {
        return None;
    }
    // One of the project's two `unsafe` blocks (src/malloc.rs has the other): mapping compiled code is what any code cache does
    // (wasmtime's own cache deserializes its entries the same way, inside wasmtime).
    // SAFETY: the file is one this cache wrote (see the module docs on trust): a serialized
    // module for this engine's compatibility hash, renamed into place whole and never
    // modified afterwards. wasmtime checks its header and the engine's settings again.
    #[allow(
        unsafe_code,
        reason = "mapping a compiled artifact this cache wrote; see SAFETY"
    )]
    let mapped = unsafe { Module::deserialize_file(engine, &path) };
    match mapped {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::debug!("artifact {} refused ({e:#}): recompiling", path.display());
            None
        }
    }
}

/// Writes `module`'s artifact for `key` if `engine` has an artifact directory. Failures only
/// cost the next load a compilation, so they are logged, not returned.
pub(crate) fn store(engine: &Engine, key: &[u8; 32], module: &Module) {
    let Some(path) = file_of(engine, key) else {
        return;
    };
    if let Err(e) = write(&path, module) {
        tracing::debug!("artifact {} not written: {e}", path.display());
    }
}

/// Whether `engine` has an artifact directory.
pub(crate) fn has_dir(engine: &Engine) -> bool {
    dir_of(engine).is_some()
}

/// Writes `serialized` (what `Engine::precompile_module` made for `engine`) as the artifact for
/// `key`, as [`store`] does for a module.
pub(crate) fn store_serialized(engine: &Engine, key: &[u8; 32], serialized: &[u8]) {
    let Some(path) = file_of(engine, key) else {
        return;
    };
    if let Err(e) = crate::write_private(&path, serialized) {
        tracing::debug!("artifact {} not written: {e}", path.display());
    }
}

fn write(path: &Path, module: &Module) -> std::io::Result<()> {
    let bytes = module.serialize().map_err(std::io::Error::other)?;
    crate::write_private(path, &bytes)
}

/// The key recorded for a file with `stamp`, if `engine` has an artifact directory holding one.
pub(crate) fn stamped_key(engine: &Engine, stamp: &crate::cache::FileStamp) -> Option<[u8; 32]> {
    let path = stamp_file(engine, stamp)?;
    let bytes = std::fs::read(path).ok()?;
    bytes.try_into().ok()
}

/// Records `key` for a file with `stamp` (a failure only costs the next load a hash).
pub(crate) fn store_stamped_key(engine: &Engine, stamp: &crate::cache::FileStamp, key: &[u8; 32]) {
    let Some(path) = stamp_file(engine, stamp) else {
        return;
    };
    if let Err(e) = crate::write_private(&path, key) {
        tracing::debug!("stamp {} not written: {e}", path.display());
    }
}

fn stamp_file(engine: &Engine, s: &crate::cache::FileStamp) -> Option<PathBuf> {
    Some(dir_of(engine)?.join("stamps").join(format!(
        "{:x}-{:x}-{:x}-{}-{}",
        s.dev, s.ino, s.size, s.mtime_ns, s.ctime_ns
    )))
}
