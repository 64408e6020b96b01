//! The in-memory cache of compiled modules.
//!
//! Every load and `dlopen` asks this cache before it compiles (or reads wasmtime's on-disk
//! cache). An entry is a compiled [`wasmtime::Module`], keyed by the **sha256 of the module's
//! bytes** and the **engine** it was compiled for ([`Engine::same`]): a module compiled for
//! one engine is never handed to a process on another. The key is a cryptographic hash of the
//! whole input, so two different modules cannot share an entry.
//!
//! The cache is bounded by the size of the compiled code it holds (the length of each module's
//! [`Module::image_range`]); past the capacity, the least recently used entries are dropped.
//! Dropping an entry never affects a process that uses the module: a process's store keeps its
//! own reference. The generated thunk modules and WASI shims go through the same cache.
//!
//! [`ModuleCache::global`] is the one cache of a host process, shared by every
//! linked process and plain program whatever its engine, and the default of
//! the linker's `ProcessBuilder::module_cache`. It is thread-safe:
//! the lock is held only to look up or insert, never while compiling, so two threads that miss
//! on the same module at once both compile it and the second insert is dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use sha2::{Digest, Sha256};
use wasmtime::{Engine, Module};

/// Default capacity of [`ModuleCache::global`]: 512 MiB of compiled code.
pub const DEFAULT_MODULE_CACHE_BYTES: usize = 512 << 20;

/// A bounded, thread-safe cache of compiled modules; cloning shares it.
#[derive(Clone)]
pub struct ModuleCache {
    inner: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    hits: AtomicU64,
    misses: AtomicU64,
}

struct State {
    capacity: usize,
    used: usize,
    tick: u64,
    /// sha256 of the bytes -> the entries for each engine.
    map: HashMap<[u8; 32], Vec<Entry>>,
}

struct Entry {
    module: Module,
    size: usize,
    last_used: u64,
}

/// Counters of a [`ModuleCache`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from the cache.
    pub hits: u64,
    /// Lookups that compiled.
    pub misses: u64,
    /// Modules held.
    pub entries: usize,
    /// Bytes of compiled code held.
    pub bytes: usize,
    /// The bound on `bytes`.
    pub capacity: usize,
}

impl std::fmt::Debug for ModuleCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.stats().fmt(f)
    }
}

impl ModuleCache {
    /// An empty cache that holds at most `capacity_bytes` of compiled code (0: holds nothing).
    pub fn new(capacity_bytes: usize) -> Self {
        ModuleCache {
            inner: Arc::new(Shared {
                state: Mutex::new(State {
                    capacity: capacity_bytes,
                    used: 0,
                    tick: 0,
                    map: HashMap::new(),
                }),
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
            }),
        }
    }

    /// The host process's cache ([`DEFAULT_MODULE_CACHE_BYTES`]), shared by every process
    /// that does not choose another.
    pub fn global() -> ModuleCache {
        static GLOBAL: OnceLock<ModuleCache> = OnceLock::new();
        GLOBAL
            .get_or_init(|| ModuleCache::new(DEFAULT_MODULE_CACHE_BYTES))
            .clone()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes the capacity, dropping least recently used entries to fit.
    pub fn set_capacity(&self, capacity_bytes: usize) {
        let mut s = self.state();
        s.capacity = capacity_bytes;
        s.evict();
    }

    /// Drops every entry (the counters stay).
    pub fn clear(&self) {
        let mut s = self.state();
        s.map.clear();
        s.used = 0;
    }

    /// Hits, misses and size.
    pub fn stats(&self) -> CacheStats {
        let s = self.state();
        CacheStats {
            hits: self.inner.hits.load(Ordering::Relaxed),
            misses: self.inner.misses.load(Ordering::Relaxed),
            entries: s.map.values().map(Vec::len).sum(),
            bytes: s.used,
            capacity: s.capacity,
        }
    }

    /// The module for `bytes` on `engine`: from the cache, or made by `compile` and kept.
    ///
    /// # Errors
    /// What `compile` returns; a failed compilation is not cached.
    pub fn get_or_compile<E>(
        &self,
        engine: &Engine,
        bytes: &[u8],
        compile: impl FnOnce() -> Result<Module, E>,
    ) -> Result<Module, E> {
        self.get_or_compile_keyed(engine, &content_key(bytes), compile)
    }

    /// As [`get_or_compile`](Self::get_or_compile), for bytes whose key the caller already has.
    /// `key` must be [`content_key`] of the very bytes `compile` compiles (or a key the
    /// caller's own cache of it returned): a wrong key runs the wrong code.
    ///
    /// # Errors
    /// What `compile` returns; a failed compilation is not cached.
    pub fn get_or_compile_keyed<E>(
        &self,
        engine: &Engine,
        key: &[u8; 32],
        compile: impl FnOnce() -> Result<Module, E>,
    ) -> Result<Module, E> {
        let key = *key;
        if let Some(m) = self.state().get(&key, engine) {
            self.inner.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(m);
        }
        self.inner.misses.fetch_add(1, Ordering::Relaxed);
        // Then the engine's artifact directory (mapped, uncompressed), then a compilation,
        // whose artifact is written for the next process.
        let module = match crate::artifacts::load(engine, &key) {
            Some(m) => m,
            None => {
                let m = compile()?;
                crate::artifacts::store(engine, &key, &m);
                m
            }
        };
        Ok(self.keep(key, module))
    }

    /// As [`get_or_compile_keyed`](Self::get_or_compile_keyed), compiling the wasm `bytes`
    /// itself (asked only on a miss), by the cheapest route: with an artifact directory, the
    /// module is compiled straight to its serialized artifact (`Engine::precompile_module`,
    /// which skips wasmtime's own compressed cache: one file written instead of three, nothing
    /// compressed), the artifact written, and mapped from the file, as a later process maps it.
    /// Without one, `Module::new`.
    ///
    /// # Errors
    /// What `bytes` returns, or a compilation error turned into `E` by `on_error`.
    pub fn get_or_compile_wasm<E, B: AsRef<[u8]>>(
        &self,
        engine: &Engine,
        key: &[u8; 32],
        bytes: impl FnOnce() -> Result<B, E>,
        on_error: impl Fn(wasmtime::Error) -> E,
    ) -> Result<Module, E> {
        let key = *key;
        if let Some(m) = self.state().get(&key, engine) {
            self.inner.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(m);
        }
        self.inner.misses.fetch_add(1, Ordering::Relaxed);
        if let Some(m) = crate::artifacts::load(engine, &key) {
            return Ok(self.keep(key, m));
        }
        let bytes = bytes()?;
        let module = if crate::artifacts::has_dir(engine) {
            let serialized = engine
                .precompile_module(bytes.as_ref())
                .map_err(&on_error)?;
            crate::artifacts::store_serialized(engine, &key, &serialized);
            let loaded = crate::artifacts::load(engine, &key);
            match loaded {
                Some(m) => m,
                // Not written (a full disk, a read-only directory): compile in memory.
                None => Module::new(engine, bytes.as_ref()).map_err(&on_error)?,
            }
        } else {
            Module::new(engine, bytes.as_ref()).map_err(on_error)?
        };
        Ok(self.keep(key, module))
    }

    /// Keeps `module` under `key` (bounded by its code size) and returns it.
    fn keep(&self, key: [u8; 32], module: Module) -> Module {
        let r = module.image_range();
        let size = (r.end as usize).saturating_sub(r.start as usize).max(1);
        self.state().insert(key, module.clone(), size);
        module
    }
}

/// What the kernel says of a file's content, taken (with `fstat`) before and after reading it
/// on one descriptor: device, inode, size, modification and status-change times.
///
/// A [`ModuleCache`] with an on-disk directory remembers the key (sha256) of a file with a
/// given stamp, as ccache's "direct mode" does, so a later load skips hashing. That is safe
/// because any write to a file changes its status-change time (`ctime`), which no
/// unprivileged call can set back: a file rewritten in place with the same size and its mtime
/// set back still gets a new stamp, and is hashed again. Two guards close the races: the stamp
/// must be the same before and after the read (no write during it), and a stamp is only made
/// for a file whose mtime and ctime are more than [`STAMP_MIN_AGE`] old, so a write in the
/// same clock tick as the stamp cannot go unseen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileStamp {
    /// Device.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i128,
    /// Status-change time, ns since the epoch.
    pub ctime_ns: i128,
}

/// How old a file's mtime and ctime must be for it to get a [`FileStamp`].
pub const STAMP_MIN_AGE: std::time::Duration = std::time::Duration::from_secs(2);

/// How large a file must be for it to get a [`FileStamp`]. For a smaller file, reading and
/// hashing it whole costs about what looking its stamp up costs (a path lookup and an open in
/// the stamp directory), and recording a stamp creates one more file per cold load (with
/// wasmtime's own cache, the kernel's file creation was 27% of a cold load of 200 small
/// libraries: BENCHMARKS.md, "Issue 18 item 1").
pub const STAMP_MIN_SIZE: u64 = 64 << 10;

/// Reads `path` whole, with its [`FileStamp`] when it has a stable and old enough one
/// (always `None` off Unix).
///
/// # Errors
/// What opening or reading the file returns.
pub fn read_stamped(path: &std::path::Path) -> std::io::Result<(Vec<u8>, Option<FileStamp>)> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let before = stamp_of_metadata(&file.metadata()?);
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let after = stamp_of_metadata(&file.metadata()?);
    let stamp = match (before, after) {
        (Some(b), Some(a)) if a == b && a.size == bytes.len() as u64 => Some(a),
        _ => None,
    };
    Ok((bytes, stamp))
}

/// The stamp of an open file as it is now (see [`FileStamp`]): `None` when the file is too
/// young or the platform has none. A caller that reads only part of a file (the linker skips
/// code sections) takes it before and after, as [`read_stamped`] does around its read.
pub fn stamp_file(file: &std::fs::File) -> std::io::Result<Option<FileStamp>> {
    Ok(stamp_of_metadata(&file.metadata()?))
}

/// The key recorded for a file with `stamp` in `engine`'s artifact directory, if any: what
/// [`file_key`] answers without the bytes.
pub fn recorded_key(engine: &Engine, stamp: &FileStamp) -> Option<[u8; 32]> {
    crate::artifacts::stamped_key(engine, stamp)
}

/// The stamp of a file whose metadata `m` was just taken on an open descriptor (see
/// [`stamp_file`]), for a caller that needs the metadata for something else too.
#[cfg(unix)]
pub fn stamp_of_metadata(m: &std::fs::Metadata) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    let limit = (now.checked_sub(STAMP_MIN_AGE)?).as_nanos() as i128;
    if m.size() < STAMP_MIN_SIZE {
        return None;
    }
    let s = FileStamp {
        dev: m.dev(),
        ino: m.ino(),
        size: m.size(),
        mtime_ns: ns(m.mtime(), m.mtime_nsec()),
        ctime_ns: ns(m.ctime(), m.ctime_nsec()),
    };
    (s.mtime_ns < limit && s.ctime_ns < limit).then_some(s)
}

/// The stamp of a file whose metadata `m` was just taken on an open descriptor (see
/// [`stamp_file`]), for a caller that needs the metadata for something else too.
#[cfg(not(unix))]
pub fn stamp_of_metadata(_: &std::fs::Metadata) -> Option<FileStamp> {
    None
}

/// The key of `bytes` read from a file with `stamp`: the one recorded for that stamp in
/// `engine`'s artifact directory, else their sha256 (then recorded).
pub fn file_key(engine: &Engine, stamp: Option<&FileStamp>, bytes: &[u8]) -> [u8; 32] {
    let Some(stamp) = stamp else {
        return content_key(bytes);
    };
    if let Some(key) = crate::artifacts::stamped_key(engine, stamp) {
        return key;
    }
    let key = content_key(bytes);
    crate::artifacts::store_stamped_key(engine, stamp, &key);
    key
}

/// The key of a module's bytes in every code cache (in memory and on disk): their sha256.
pub fn content_key(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

impl State {
    fn get(&mut self, key: &[u8; 32], engine: &Engine) -> Option<Module> {
        self.tick += 1;
        let tick = self.tick;
        let e = self
            .map
            .get_mut(key)?
            .iter_mut()
            .find(|e| Engine::same(e.module.engine(), engine))?;
        e.last_used = tick;
        Some(e.module.clone())
    }

    fn insert(&mut self, key: [u8; 32], module: Module, size: usize) {
        if size > self.capacity {
            return;
        }
        self.tick += 1;
        let tick = self.tick;
        let list = self.map.entry(key).or_default();
        if list
            .iter()
            .any(|e| Engine::same(e.module.engine(), module.engine()))
        {
            return;
        }
        list.push(Entry {
            module,
            size,
            last_used: tick,
        });
        self.used += size;
        self.evict();
    }

    /// Drops least recently used entries until the cache fits its capacity.
    fn evict(&mut self) {
        while self.used > self.capacity {
            let Some((key, i)) = self
                .map
                .iter()
                .flat_map(|(k, v)| v.iter().enumerate().map(move |(i, e)| (*k, i, e.last_used)))
                .min_by_key(|&(_, _, t)| t)
                .map(|(k, i, _)| (k, i))
            else {
                self.used = 0;
                return;
            };
            if let Some(list) = self.map.get_mut(&key) {
                let e = list.swap_remove(i);
                self.used -= e.size;
                if list.is_empty() {
                    self.map.remove(&key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module_bytes(n: i32) -> Vec<u8> {
        wat::parse_str(format!(
            "(module (func (export \"f\") (result i32) i32.const {n}))"
        ))
        .expect("wat")
    }

    fn compile(engine: &Engine, bytes: &[u8]) -> Result<Module, wasmtime::Error> {
        Module::new(engine, bytes)
    }

    /// `module_bytes(n)` with a custom section that makes it [`STAMP_MIN_SIZE`] long or more.
    fn big_module_bytes(n: i32) -> Vec<u8> {
        let mut b = module_bytes(n);
        let pad = STAMP_MIN_SIZE as usize;
        // Custom section 0: size as a 3-byte LEB128, a 3-byte name "pad", then the payload.
        let size = 1 + 3 + pad;
        b.push(0);
        b.extend([
            (size & 0x7f) as u8 | 0x80,
            ((size >> 7) & 0x7f) as u8 | 0x80,
            (size >> 14) as u8,
        ]);
        b.extend([3, b'p', b'a', b'd']);
        b.extend(std::iter::repeat_n(0u8, pad));
        b
    }

    /// A small file gets no stamp (hashing it is as cheap as a stamp lookup), however old; a
    /// large one as old does.
    #[test]
    fn a_small_file_is_not_stamped() {
        let dir = std::env::temp_dir().join(format!("wasmlink-small-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let (small, big) = (dir.join("small.wasm"), dir.join("big.wasm"));
        std::fs::write(&small, module_bytes(1)).unwrap();
        std::fs::write(&big, big_module_bytes(1)).unwrap();
        Module::new(&Engine::default(), big_module_bytes(1)).expect("the padded module is valid");
        std::thread::sleep(STAMP_MIN_AGE + std::time::Duration::from_millis(200));
        assert!(read_stamped(&small).unwrap().1.is_none());
        assert!(
            read_stamped(&big).unwrap().1.is_some(),
            "as old, and large: stamped"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A miss compiles once and writes exactly one artifact (not wasmtime's compressed cache
    /// entries too); a new cache on the same engine maps it without asking for the bytes.
    #[test]
    fn compile_wasm_writes_one_artifact_and_maps_it() {
        let dir = std::env::temp_dir().join(format!("wasmlink-wasm-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let engine = crate::shared_engine(Some(&dir.join("cache"))).unwrap();
        let b = module_bytes(7);
        let key = content_key(&b);
        let err = |e: wasmtime::Error| e.to_string();
        let m = ModuleCache::new(1 << 30)
            .get_or_compile_wasm(&engine, &key, || Ok::<_, String>(&b), err)
            .unwrap();
        assert_eq!(m.exports().count(), 1);
        let files: Vec<_> = walk(&dir.join("cache"));
        assert_eq!(files.len(), 1, "{files:?}");
        assert!(files[0].to_string_lossy().ends_with(".cwasm"), "{files:?}");
        let again = ModuleCache::new(1 << 30)
            .get_or_compile_wasm(
                &engine,
                &key,
                || -> Result<&[u8], String> { panic!("must map the artifact, not compile") },
                err,
            )
            .unwrap();
        assert_eq!(again.exports().count(), 1);
        // A module that does not validate is the caller's error, not a panic.
        let bad = b"\0asm\x01\0\0\0\x7f".to_vec();
        let e = ModuleCache::new(1 << 30)
            .get_or_compile_wasm(&engine, &content_key(&bad), || Ok::<_, String>(&bad), err)
            .unwrap_err();
        assert!(!e.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }

    /// A file rewritten in place with the same size and its mtime set back is hashed again,
    /// never given the key recorded for its old content.
    #[test]
    fn a_file_rewritten_with_the_same_size_and_mtime_is_rehashed() {
        let dir = std::env::temp_dir().join(format!("wasmlink-stamp-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let engine = crate::shared_engine(Some(&dir.join("cache"))).unwrap();
        let lib = dir.join("lib.wasm");
        let (old, new) = (big_module_bytes(100), big_module_bytes(200));
        assert_eq!(old.len(), new.len());
        std::fs::write(&lib, &old).unwrap();
        let mtime = std::fs::metadata(&lib).unwrap().modified().unwrap();
        // Too new to be stamped: always hashed.
        assert!(read_stamped(&lib).unwrap().1.is_none());
        std::thread::sleep(STAMP_MIN_AGE + std::time::Duration::from_millis(200));
        let (bytes, stamp) = read_stamped(&lib).unwrap();
        let stamp = stamp.expect("an old, unchanged file is stamped");
        assert_eq!(file_key(&engine, Some(&stamp), &bytes), content_key(&old));
        // Recorded: the same stamp now answers without the bytes.
        assert_eq!(
            file_key(&engine, Some(&stamp), b"ignored"),
            content_key(&old)
        );
        // Rewrite in place (same inode, same size), mtime set back.
        let f = std::fs::OpenOptions::new().write(true).open(&lib).unwrap();
        std::io::Write::write_all(&mut &f, &new).unwrap();
        f.set_modified(mtime).unwrap();
        drop(f);
        assert_eq!(std::fs::metadata(&lib).unwrap().modified().unwrap(), mtime);
        let (bytes, stamp2) = read_stamped(&lib).unwrap();
        assert_eq!(bytes, new);
        assert_ne!(stamp2, Some(stamp), "the ctime changed");
        assert_eq!(
            file_key(&engine, stamp2.as_ref(), &bytes),
            content_key(&new)
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn hit_after_miss_same_module() {
        let cache = ModuleCache::new(1 << 30);
        let engine = Engine::default();
        let b = module_bytes(1);
        let m1 = cache
            .get_or_compile(&engine, &b, || compile(&engine, &b))
            .unwrap();
        let m2 = cache
            .get_or_compile(&engine, &b, || -> Result<Module, wasmtime::Error> {
                panic!("must not compile again")
            })
            .unwrap();
        assert!(Module::same(&m1, &m2));
        let s = cache.stats();
        assert_eq!((s.hits, s.misses, s.entries), (1, 1, 1));
        assert!(s.bytes > 0);
    }

    #[test]
    fn engines_do_not_share_entries() {
        let cache = ModuleCache::new(1 << 30);
        let (e1, e2) = (Engine::default(), Engine::default());
        let b = module_bytes(2);
        let m1 = cache.get_or_compile(&e1, &b, || compile(&e1, &b)).unwrap();
        let m2 = cache.get_or_compile(&e2, &b, || compile(&e2, &b)).unwrap();
        assert!(!Module::same(&m1, &m2));
        assert!(Engine::same(m2.engine(), &e2));
        assert_eq!(cache.stats().misses, 2);
        assert_eq!(cache.stats().entries, 2);
    }

    #[test]
    fn least_recently_used_is_evicted_at_capacity() {
        let engine = Engine::default();
        let (a, b, c) = (module_bytes(10), module_bytes(11), module_bytes(12));
        let probe = ModuleCache::new(1 << 30);
        probe
            .get_or_compile(&engine, &a, || compile(&engine, &a))
            .unwrap();
        let one = probe.stats().bytes;
        // Room for two modules of this size, not three.
        let cache = ModuleCache::new(one * 2 + one / 2);
        for x in [&a, &b] {
            cache
                .get_or_compile(&engine, x, || compile(&engine, x))
                .unwrap();
        }
        cache
            .get_or_compile(&engine, &a, || compile(&engine, &a))
            .unwrap(); // a is now recent
        cache
            .get_or_compile(&engine, &c, || compile(&engine, &c))
            .unwrap(); // evicts b
        let s = cache.stats();
        assert_eq!((s.entries, s.hits, s.misses), (2, 1, 3));
        assert!(s.bytes <= s.capacity);
        cache
            .get_or_compile(&engine, &a, || compile(&engine, &a))
            .unwrap();
        assert_eq!(cache.stats().hits, 2, "a was kept");
        cache
            .get_or_compile(&engine, &b, || compile(&engine, &b))
            .unwrap();
        assert_eq!(cache.stats().misses, 4, "b was evicted");
    }

    #[test]
    fn zero_capacity_holds_nothing_and_errors_are_not_cached() {
        let engine = Engine::default();
        let cache = ModuleCache::new(0);
        let b = module_bytes(3);
        cache
            .get_or_compile(&engine, &b, || compile(&engine, &b))
            .unwrap();
        cache
            .get_or_compile(&engine, &b, || compile(&engine, &b))
            .unwrap();
        assert_eq!(cache.stats().misses, 2);
        assert_eq!(cache.stats().entries, 0);
        let big = ModuleCache::new(1 << 30);
        let bad = b"\0asm\x01\0\0\0\x01".to_vec();
        assert!(
            big.get_or_compile(&engine, &bad, || compile(&engine, &bad))
                .is_err()
        );
        assert_eq!(big.stats().entries, 0);
    }
}
