//! Developer tasks for wasmlink, chiefly the **real-world corpus** used by the tests.
//!
//! # What the corpus is
//!
//! wasmlink links WebAssembly shared libraries (modules carrying a `dylink.0` custom section) at
//! run time. Hand-written test modules only exercise what their authors thought of, so the tests
//! also load libraries produced by a real toolchain: the eleven wasi-sdk-built shared libraries
//! that [componentize-py] 0.25.1 ships inside its Python wheel — libc, libc++, libc++abi,
//! CPython 3.14, the wasi-emulated-* helpers, wit-component's libdl and componentize-py's own
//! runtime in its sync and async flavours (see [`EXPECTED_LIBRARIES`]).
//!
//! # Where it comes from
//!
//! The wheel is downloaded with pip's own client (`python3 -m pip download`, so pip's normal
//! configuration — index, proxy, cache — applies) and checked against a pinned sha256. Its
//! native extension `componentize_py/componentize_py.abi3.so` embeds the libraries as zstd
//! frames plus one raw module (libdl); [`scan`] finds them, [`extract_libraries`] keeps the ones
//! with a `dylink.0` section and names them from their `name` section, and each result is checked
//! against a pinned sha256 as well, so every machine sees byte-identical inputs.
//!
//! # Layout and concurrency
//!
//! [`ensure_corpus`] leaves `DIR/<library>` for each library plus `DIR/SHA256SUMS`, and caches
//! the wheel next to `DIR` (in its parent) so that re-extracting does not download again. A
//! complete corpus is recognised cheaply (the sums file must list exactly the pinned hashes and
//! each file must have its pinned size), so tests may call [`ensure_corpus`] freely from many
//! threads and processes. Builders serialise on a lock file beside `DIR`, assemble the corpus in
//! a staging directory and rename it into place, so a half-written corpus is never visible under
//! `DIR`. [`verify_corpus`] re-hashes every library when a full check is wanted.
//!
//! [componentize-py]: https://github.com/bytecodealliance/componentize-py

pub mod cflags;
pub mod pylib;
pub mod scan;

use std::collections::HashSet;
use std::ffi::OsString;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

use sha2::{Digest, Sha256};

use crate::scan::{Encoding, FoundModule};

/// The componentize-py release whose wheel holds the corpus.
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";

/// The wheel platform tag requested from pip. The embedded wasm is the same on every platform;
/// one is pinned so that the wheel's hash is fixed.
pub const WHEEL_PLATFORM: &str = "manylinux_2_28_x86_64";

/// File name of the wheel, under which it is cached next to the corpus directory.
pub const WHEEL_FILE_NAME: &str = "componentize_py-0.25.1-cp39-abi3-manylinux_2_28_x86_64.whl";

/// sha256 of [`WHEEL_FILE_NAME`].
pub const WHEEL_SHA256: &str = "8623cd8cab8453cb0cd8bf03f3c7103420d06f2f3d360186a280a70a1ca5e89f";

/// Path suffix of the wheel member (the native extension) that embeds the libraries.
pub const EXTENSION_MEMBER: &str = "componentize_py/componentize_py.abi3.so";

/// Name of the checksum file written into the corpus directory, in `sha256sum` format.
pub const SUMS_FILE: &str = "SHA256SUMS";

/// Environment variable naming the Python interpreter used to run pip (default `python3`).
pub const PYTHON_ENV: &str = "WASMLINK_PYTHON";

/// Environment variable overriding [`default_corpus_dir`].
pub const CORPUS_DIR_ENV: &str = "WASMLINK_CORPUS_DIR";

/// One library the corpus must contain, with its pinned size and hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpectedLibrary {
    /// File name in the corpus directory.
    pub name: &'static str,
    /// Size in bytes.
    pub size: u64,
    /// Lowercase hex sha256 of the file.
    pub sha256: &'static str,
}

/// The eleven libraries extracted from the componentize-py 0.25.1 wheel, sorted by name.
pub const EXPECTED_LIBRARIES: [ExpectedLibrary; 11] = [
    ExpectedLibrary {
        name: "libc++.so",
        size: 1365580,
        sha256: "65a44e3f7ad79ff246b82b61782789a35d0683f56f823cca22496fd6d597b9f3",
    },
    ExpectedLibrary {
        name: "libc++abi.so",
        size: 285328,
        sha256: "f93f92bc4fa31c3ccf86a140e1ba68254b5a937434b41fa0ba8b7feefa7d0e0e",
    },
    ExpectedLibrary {
        name: "libc.so",
        size: 652596,
        sha256: "f1b113e24a8c7774f361d7318ababd98124f3b75889f8b5fc0ab10f97c17e42d",
    },
    ExpectedLibrary {
        name: "libcomponentize_py_runtime_async.so",
        size: 443247,
        sha256: "ac27ef58168289f1f022c05bb48fc4e2664b3eec86bb422c72afa145ec9bc317",
    },
    ExpectedLibrary {
        name: "libcomponentize_py_runtime_sync.so",
        size: 393370,
        sha256: "b13c07aad7ea665f2cc60d741cd2224a3616938097ae2fdda8a7fbc6555cad2a",
    },
    ExpectedLibrary {
        name: "libdl.so",
        size: 1728,
        sha256: "6d6ea03a4a671db91be183077b6665866106a61c84739580773a7e5b6bd9f256",
    },
    ExpectedLibrary {
        name: "libpython3.14.so",
        size: 9388441,
        sha256: "0ab4ec14447dc6a983de96b294d904a9a2b77126a1b96ff1a6ae340c72405549",
    },
    ExpectedLibrary {
        name: "libwasi-emulated-getpid.so",
        size: 407,
        sha256: "9c09b6361fcf03bfa26a11e39177462472a2c293dbed9d9020b0c08b47166e8b",
    },
    ExpectedLibrary {
        name: "libwasi-emulated-mman.so",
        size: 1010,
        sha256: "2a46491aae39bac9819508c7d95ab1d50d4b152884e48215b264a489caad2d58",
    },
    ExpectedLibrary {
        name: "libwasi-emulated-process-clocks.so",
        size: 1072,
        sha256: "4d9173a2b8dbeaf1f6aca286c50eec651ef03bbe5c4c61cc8e2a5c0f3f3141c0",
    },
    ExpectedLibrary {
        name: "libwasi-emulated-signal.so",
        size: 3567,
        sha256: "e6758eba79ff4f6daf93e4cab0ea6768ccb0d2657b00369ff4599d0593c1f4e9",
    },
];

/// One library of a ready corpus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorpusEntry {
    /// File name, e.g. `libc.so`.
    pub name: String,
    /// Full path of the file.
    pub path: PathBuf,
    /// Size in bytes.
    pub size: u64,
    /// Lowercase hex sha256 of the file.
    pub sha256: String,
}

impl CorpusEntry {
    /// Reads the library's bytes.
    pub fn read(&self) -> Result<Vec<u8>, Error> {
        fs::read(&self.path).map_err(|e| Error::io("read", &self.path, e))
    }
}

/// A dylink.0 module found by [`extract_libraries`].
#[derive(Clone, PartialEq, Eq)]
pub struct Library {
    /// The file name the module is known by (see [`extract_libraries`]).
    pub name: String,
    /// Offset of the module (or of its zstd frame) in the scanned blob.
    pub offset: usize,
    /// How the module was stored.
    pub encoding: Encoding,
    /// Lowercase hex sha256 of `bytes`.
    pub sha256: String,
    /// The module.
    pub bytes: Vec<u8>,
}

impl fmt::Debug for Library {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Library")
            .field("name", &self.name)
            .field("offset", &self.offset)
            .field("encoding", &self.encoding)
            .field("sha256", &self.sha256)
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// Errors from fetching, extracting or checking the corpus.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file-system operation failed.
    #[error("cannot {op} {}", path.display())]
    Io {
        /// What was being done, e.g. `"read"`.
        op: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The Python interpreter could not be started.
    #[error(
        "cannot run `{python}`, which is needed to download the componentize-py wheel with pip"
    )]
    PythonNotFound {
        /// The interpreter that was tried.
        python: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// `python3 -m pip` does not work.
    #[error(
        "`{python} -m pip` is not available (it is needed to download the componentize-py wheel): {stderr}"
    )]
    PipUnavailable {
        /// The interpreter that was tried.
        python: String,
        /// What it printed on stderr.
        stderr: String,
    },
    /// `pip download` failed.
    #[error("`pip download componentize-py=={COMPONENTIZE_PY_VERSION}` into {} failed ({status}): {stderr}", dir.display())]
    PipDownloadFailed {
        /// The download directory.
        dir: PathBuf,
        /// pip's exit status.
        status: ExitStatus,
        /// What pip printed on stderr (its tail, if long).
        stderr: String,
    },
    /// pip succeeded but left no wheel.
    #[error("pip reported success but left no componentize-py wheel in {}", dir.display())]
    WheelMissing {
        /// The download directory.
        dir: PathBuf,
    },
    /// The wheel is not the pinned one.
    #[error("wheel {} has sha256 {actual}, expected {expected}", path.display())]
    WheelHashMismatch {
        /// The wheel.
        path: PathBuf,
        /// The pinned hash.
        expected: &'static str,
        /// The hash found.
        actual: String,
    },
    /// The wheel is not a readable zip archive.
    #[error("cannot read wheel {}", path.display())]
    Zip {
        /// The wheel.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: zip::result::ZipError,
    },
    /// The wheel has no native extension.
    #[error("wheel {} has no member ending in {member}", path.display())]
    ExtensionMissing {
        /// The wheel.
        path: PathBuf,
        /// The suffix looked for.
        member: &'static str,
    },
    /// Extraction did not yield exactly the expected libraries.
    #[error(
        "extracting {} found [{}], expected [{}]",
        path.display(),
        found.join(", "),
        expected.join(", ")
    )]
    UnexpectedLibraries {
        /// The wheel or file scanned.
        path: PathBuf,
        /// Names of the dylink.0 modules found, sorted.
        found: Vec<String>,
        /// Names expected, sorted.
        expected: Vec<String>,
    },
    /// A library does not have its pinned hash.
    #[error("library {} has sha256 {actual}, expected {expected}", path.display())]
    LibraryHashMismatch {
        /// The library (for an extracted one: the wheel it came from, then its name).
        path: PathBuf,
        /// The pinned hash.
        expected: &'static str,
        /// The hash found.
        actual: String,
    },
    /// The wheel's native extension holds no zstd-compressed tar with `os.py`.
    #[error("{} holds no zstd-compressed tar archive of the standard library (with os.py)", path.display())]
    StdlibMissing {
        /// The native extension scanned.
        path: PathBuf,
    },
    /// The standard-library archive is not the pinned one.
    #[error("the standard library for {} has sha256 {actual}, expected {expected}", path.display())]
    StdlibHashMismatch {
        /// Where it was to be unpacked.
        path: PathBuf,
        /// The pinned hash.
        expected: String,
        /// The hash found.
        actual: String,
    },
    /// The standard-library archive holds something that cannot be unpacked safely.
    #[error("cannot unpack the standard library into {}: {reason}", path.display())]
    BadArchive {
        /// Where it was being unpacked.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The corpus directory cannot be used.
    #[error("{} cannot hold the corpus: {reason}", path.display())]
    BadCorpusDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl Error {
    fn io(op: &'static str, path: &Path, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.to_owned(),
            source,
        }
    }
}

/// The default corpus directory: `$WASMLINK_CORPUS_DIR` if set, else `target/corpus` under the
/// workspace root.
pub fn default_corpus_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(CORPUS_DIR_ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .unwrap_or(manifest_dir)
        .join("target")
        .join("corpus")
}

/// [`ensure_corpus`] on [`default_corpus_dir`]: the usual entry point for tests.
pub fn corpus() -> Result<Vec<CorpusEntry>, Error> {
    ensure_corpus(&default_corpus_dir())
}

/// Makes sure `dir` holds the corpus and returns its entries, in [`EXPECTED_LIBRARIES`] order.
///
/// Returns at once if `dir` already holds a complete corpus. Otherwise, holding a lock file next
/// to `dir`, downloads the componentize-py wheel with pip (unless a verified copy is cached next
/// to `dir`), extracts the libraries, checks them against their pinned hashes and atomically
/// replaces `dir` with the result. An existing `dir` is only replaced if it holds nothing but
/// corpus files.
pub fn ensure_corpus(dir: &Path) -> Result<Vec<CorpusEntry>, Error> {
    ensure_with(dir, &EXPECTED_LIBRARIES, |cache_dir| {
        let wheel = fetch_wheel(cache_dir)?;
        let libraries = extract_wheel(&wheel)?;
        check_libraries(&wheel, &libraries, &EXPECTED_LIBRARIES)?;
        Ok(libraries)
    })
}

/// [`ensure_corpus`] with the expectations and the producer of the libraries as parameters.
/// `produce` gets the directory to cache downloads in and must return exactly `expected`.
fn ensure_with(
    dir: &Path,
    expected: &[ExpectedLibrary],
    produce: impl FnOnce(&Path) -> Result<Vec<Library>, Error>,
) -> Result<Vec<CorpusEntry>, Error> {
    if let Some(entries) = complete_corpus(dir, expected) {
        return Ok(entries);
    }
    let (parent, dir_name) = split_dir(dir)?;
    fs::create_dir_all(&parent).map_err(|e| Error::io("create directory", &parent, e))?;

    let _lock = lock(&parent.join(format!(".{dir_name}.lock")))?;
    // Someone else may have built it while we waited for the lock.
    if let Some(entries) = complete_corpus(dir, expected) {
        return Ok(entries);
    }
    let libraries = produce(&parent)?;
    install(dir, &libraries, expected)
}

/// Re-hashes every library of the corpus in `dir` against [`EXPECTED_LIBRARIES`].
pub fn verify_corpus(dir: &Path) -> Result<Vec<CorpusEntry>, Error> {
    EXPECTED_LIBRARIES
        .iter()
        .map(|lib| {
            let path = dir.join(lib.name);
            let (size, sha256) = sha256_file(&path)?;
            if sha256 != lib.sha256 {
                return Err(Error::LibraryHashMismatch {
                    path,
                    expected: lib.sha256,
                    actual: sha256,
                });
            }
            Ok(CorpusEntry {
                name: lib.name.to_owned(),
                path,
                size,
                sha256,
            })
        })
        .collect()
}

/// Reads the native extension out of a componentize-py wheel and extracts its libraries.
pub fn extract_wheel(wheel: &Path) -> Result<Vec<Library>, Error> {
    Ok(extract_libraries(&read_extension(wheel)?))
}

/// The bytes of the native extension ([`EXTENSION_MEMBER`]) of a componentize-py wheel.
pub fn read_extension(wheel: &Path) -> Result<Vec<u8>, Error> {
    let zip_err = |source| Error::Zip {
        path: wheel.to_owned(),
        source,
    };
    let file = File::open(wheel).map_err(|e| Error::io("open", wheel, e))?;
    let mut archive = zip::ZipArchive::new(BufReader::new(file)).map_err(zip_err)?;
    let member = archive
        .file_names()
        .find(|name| name.ends_with(EXTENSION_MEMBER))
        .map(str::to_owned)
        .ok_or_else(|| Error::ExtensionMissing {
            path: wheel.to_owned(),
            member: EXTENSION_MEMBER,
        })?;
    let mut entry = archive.by_name(&member).map_err(zip_err)?;
    let mut extension = Vec::with_capacity(usize::try_from(entry.size()).unwrap_or(0).min(1 << 30));
    entry
        .read_to_end(&mut extension)
        .map_err(|e| Error::io("decompress", &wheel.join(&member), e))?;
    Ok(extension)
}

/// Finds the dylink.0 shared libraries embedded in `blob` (componentize-py's native extension).
///
/// Scans for zstd frames that decompress to wasm and for raw wasm modules, keeps the modules
/// with a `dylink.0` custom section, drops byte-identical duplicates and names each one:
///
/// * by the module name of its `name` section (e.g. `libc.so`);
/// * except `componentize_py_runtime.wasm`, which comes in two flavours: the one that imports
///   canonical-ABI async intrinsics from `$root` is `libcomponentize_py_runtime_async.so`, the
///   other `libcomponentize_py_runtime_sync.so`;
/// * an unnamed module mentioning both `dlopen` and `__wasm_set_libraries` is wit-component's
///   `libdl.so`;
/// * any other unnamed module is called `unnamed-<encoding>-at-<offset>.so`.
///
/// The result is sorted by name. Nothing here fails: undecodable candidates are skipped.
pub fn extract_libraries(blob: &[u8]) -> Vec<Library> {
    let mut found = scan::zstd_wasm_frames(blob, scan::DEFAULT_FRAME_LIMIT);
    found.extend(scan::raw_wasm_modules(blob));

    let mut seen = HashSet::new();
    let mut libraries = Vec::new();
    for module in found {
        let info = scan::inspect_module(&module.bytes);
        if !info.has_dylink {
            continue; // e.g. the wasi_snapshot_preview1 component adapter
        }
        let digest: [u8; 32] = Sha256::digest(&module.bytes).into();
        if !seen.insert(digest) {
            continue;
        }
        libraries.push(Library {
            name: library_name(&module, info.module_name.as_deref()),
            offset: module.offset,
            encoding: module.encoding,
            sha256: hex::encode(digest),
            bytes: module.bytes,
        });
    }
    libraries.sort_by(|a, b| a.name.cmp(&b.name).then(a.offset.cmp(&b.offset)));
    libraries
}

/// The corpus file name of a dylink.0 module; see [`extract_libraries`].
fn library_name(module: &FoundModule, module_name: Option<&str>) -> String {
    match module_name {
        Some("componentize_py_runtime.wasm") => {
            if scan::contains(&module.bytes, b"$root") {
                "libcomponentize_py_runtime_async.so".to_owned()
            } else {
                "libcomponentize_py_runtime_sync.so".to_owned()
            }
        }
        Some(name) => name.to_owned(),
        None if scan::contains(&module.bytes, b"dlopen")
            && scan::contains(&module.bytes, b"__wasm_set_libraries") =>
        {
            "libdl.so".to_owned()
        }
        None => {
            let encoding = match module.encoding {
                Encoding::Zstd => "zstd",
                Encoding::Raw => "raw",
            };
            format!("unnamed-{encoding}-at-{:#x}.so", module.offset)
        }
    }
}

/// Checks that `libraries` are exactly `expected`, names and hashes.
fn check_libraries(
    source: &Path,
    libraries: &[Library],
    expected: &[ExpectedLibrary],
) -> Result<(), Error> {
    let mut found: Vec<String> = libraries.iter().map(|l| l.name.clone()).collect();
    found.sort();
    let mut wanted: Vec<String> = expected.iter().map(|l| l.name.to_owned()).collect();
    wanted.sort();
    if found != wanted {
        return Err(Error::UnexpectedLibraries {
            path: source.to_owned(),
            found,
            expected: wanted,
        });
    }
    for want in expected {
        // Names are unique (they equal `wanted`, which is a set), so this finds exactly one.
        if let Some(lib) = libraries.iter().find(|l| l.name == want.name)
            && lib.sha256 != want.sha256
        {
            return Err(Error::LibraryHashMismatch {
                path: source.join(want.name),
                expected: want.sha256,
                actual: lib.sha256.clone(),
            });
        }
    }
    Ok(())
}

/// The contents of [`SUMS_FILE`] for `expected`, in `sha256sum` format, sorted by name.
fn render_sums(expected: &[ExpectedLibrary]) -> String {
    let mut libraries: Vec<&ExpectedLibrary> = expected.iter().collect();
    libraries.sort_by_key(|lib| lib.name);
    libraries
        .iter()
        .map(|lib| format!("{}  {}\n", lib.sha256, lib.name))
        .collect()
}

/// The corpus in `dir` if it is complete: its sums file lists exactly the pinned hashes and every
/// library is present with its pinned size. Cheap: nothing is hashed.
fn complete_corpus(dir: &Path, expected: &[ExpectedLibrary]) -> Option<Vec<CorpusEntry>> {
    let sums = fs::read_to_string(dir.join(SUMS_FILE)).ok()?;
    if sums != render_sums(expected) {
        return None;
    }
    expected
        .iter()
        .map(|lib| {
            let path = dir.join(lib.name);
            let meta = fs::metadata(&path).ok()?;
            (meta.is_file() && meta.len() == lib.size).then(|| CorpusEntry {
                name: lib.name.to_owned(),
                path,
                size: lib.size,
                sha256: lib.sha256.to_owned(),
            })
        })
        .collect()
}

/// Writes `libraries` into a staging directory beside `dir` and renames it to `dir`, replacing
/// an existing `dir` only if it holds nothing but corpus files. Call with the lock held.
fn install(
    dir: &Path,
    libraries: &[Library],
    expected: &[ExpectedLibrary],
) -> Result<Vec<CorpusEntry>, Error> {
    check_libraries(dir, libraries, expected)?;
    let (parent, dir_name) = split_dir(dir)?;
    let staging = tempfile::Builder::new()
        .prefix(&format!(".{dir_name}.staging-"))
        .tempdir_in(&parent)
        .map_err(|e| Error::io("create a staging directory in", &parent, e))?;
    for lib in libraries {
        let path = staging.path().join(&lib.name);
        fs::write(&path, &lib.bytes).map_err(|e| Error::io("write", &path, e))?;
    }
    // Written last: a corpus is only complete once its sums file is there.
    let sums = staging.path().join(SUMS_FILE);
    fs::write(&sums, render_sums(expected)).map_err(|e| Error::io("write", &sums, e))?;

    // Move any previous (incomplete or outdated) corpus into a directory that is removed on drop.
    let _trash = match fs::symlink_metadata(dir) {
        Ok(_) => {
            check_replaceable(dir, expected)?;
            let trash = tempfile::Builder::new()
                .prefix(&format!(".{dir_name}.old-"))
                .tempdir_in(&parent)
                .map_err(|e| Error::io("create a directory in", &parent, e))?;
            fs::rename(dir, trash.path().join(&dir_name))
                .map_err(|e| Error::io("move aside", dir, e))?;
            Some(trash)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io("inspect", dir, e)),
    };
    // After this rename `staging` no longer exists, so dropping it does nothing.
    fs::rename(staging.path(), dir)
        .map_err(|e| Error::io("rename the staging directory to", dir, e))?;

    complete_corpus(dir, expected).ok_or_else(|| Error::BadCorpusDir {
        path: dir.to_owned(),
        reason: "the corpus written there is not complete".to_owned(),
    })
}

/// Fails unless `dir` is a directory holding only corpus files (so replacing it loses nothing).
fn check_replaceable(dir: &Path, expected: &[ExpectedLibrary]) -> Result<(), Error> {
    let entries = fs::read_dir(dir).map_err(|e| Error::io("read directory", dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::io("read directory", dir, e))?;
        let name = entry.file_name();
        // The standard library (`pylib`) is derived from the same wheel: unpacked again after a
        // rebuild, so replacing it loses nothing either.
        let ours = name == SUMS_FILE
            || name == pylib::PYTHON_HOME_DIR
            || name
                .to_str()
                .is_some_and(|n| n.starts_with(&format!(".{}.", pylib::PYTHON_HOME_DIR)))
            || expected.iter().any(|lib| name == lib.name);
        if !ours {
            return Err(Error::BadCorpusDir {
                path: dir.to_owned(),
                reason: format!(
                    "it holds {}, which is not part of the corpus; refusing to replace it",
                    name.to_string_lossy()
                ),
            });
        }
    }
    Ok(())
}

/// Splits `dir` into its parent (`.` if it has none) and its final component.
fn split_dir(dir: &Path) -> Result<(PathBuf, String), Error> {
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| Error::BadCorpusDir {
            path: dir.to_owned(),
            reason: "its path must end in a plain UTF-8 name".to_owned(),
        })?;
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    Ok((parent, name.to_owned()))
}

/// Opens (creating it if needed) and exclusively locks `path`; the lock lasts as long as the
/// returned file is open. Works across threads and processes.
fn lock(path: &Path) -> Result<File, Error> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(|e| Error::io("open lock file", path, e))?;
    file.lock().map_err(|e| Error::io("lock", path, e))?;
    Ok(file)
}

/// Size and lowercase hex sha256 of a file.
fn sha256_file(path: &Path) -> Result<(u64, String), Error> {
    let mut file = File::open(path).map_err(|e| Error::io("open", path, e))?;
    let mut hasher = Sha256::new();
    let size = io::copy(&mut file, &mut hasher).map_err(|e| Error::io("read", path, e))?;
    Ok((size, hex::encode(hasher.finalize())))
}

/// The pinned wheel, from the cache in `cache_dir` or downloaded there with pip.
fn fetch_wheel(cache_dir: &Path) -> Result<PathBuf, Error> {
    let cached = cache_dir.join(WHEEL_FILE_NAME);
    if cached.is_file() {
        if sha256_file(&cached)?.1 == WHEEL_SHA256 {
            return Ok(cached);
        }
        // A corrupt or foreign file: download afresh.
        fs::remove_file(&cached).map_err(|e| Error::io("remove", &cached, e))?;
    }

    let download = tempfile::Builder::new()
        .prefix(".componentize-py-download-")
        .tempdir_in(cache_dir)
        .map_err(|e| Error::io("create a download directory in", cache_dir, e))?;
    pip_download(download.path())?;

    let prefix = format!("componentize_py-{COMPONENTIZE_PY_VERSION}-");
    let entries = fs::read_dir(download.path())
        .map_err(|e| Error::io("read directory", download.path(), e))?;
    let wheel = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".whl"))
        })
        .ok_or_else(|| Error::WheelMissing {
            dir: download.path().to_owned(),
        })?;
    let (_, actual) = sha256_file(&wheel)?;
    if actual != WHEEL_SHA256 {
        // Keep the rejected file for inspection, outside the download directory that is about
        // to be removed.
        let mut rejected = cached.clone().into_os_string();
        rejected.push(".rejected");
        let rejected = PathBuf::from(rejected);
        let path = match fs::rename(&wheel, &rejected) {
            Ok(()) => rejected,
            Err(_) => wheel,
        };
        return Err(Error::WheelHashMismatch {
            path,
            expected: WHEEL_SHA256,
            actual,
        });
    }
    fs::rename(&wheel, &cached).map_err(|e| Error::io("move the wheel to", &cached, e))?;
    Ok(cached)
}

/// Runs `python3 -m pip download` for the pinned wheel into `dir`.
fn pip_download(dir: &Path) -> Result<(), Error> {
    let python = std::env::var_os(PYTHON_ENV)
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| OsString::from("python3"));
    let python_name = python.to_string_lossy().into_owned();

    let probe = Command::new(&python)
        .args(["-m", "pip", "--version"])
        .output()
        .map_err(|source| Error::PythonNotFound {
            python: python_name.clone(),
            source,
        })?;
    if !probe.status.success() {
        return Err(Error::PipUnavailable {
            python: python_name,
            stderr: stderr_tail(&probe.stderr),
        });
    }

    let output = Command::new(&python)
        .args([
            "-m",
            "pip",
            "download",
            "--disable-pip-version-check",
            "--no-input",
            "--no-deps",
            "--only-binary=:all:",
            "--platform",
            WHEEL_PLATFORM,
            &format!("componentize-py=={COMPONENTIZE_PY_VERSION}"),
            "-d",
        ])
        .arg(dir)
        .output()
        .map_err(|source| Error::PythonNotFound {
            python: python_name,
            source,
        })?;
    if !output.status.success() {
        return Err(Error::PipDownloadFailed {
            dir: dir.to_owned(),
            status: output.status,
            stderr: stderr_tail(&output.stderr),
        });
    }
    Ok(())
}

/// The last couple of thousand characters of a process's stderr, trimmed.
fn stderr_tail(stderr: &[u8]) -> String {
    const MAX: usize = 2000;
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    let start = text.len().saturating_sub(MAX);
    let start = (start..=text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    text[start..].to_owned()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn leak(s: String) -> &'static str {
        Box::leak(s.into_boxed_str())
    }

    /// Synthetic libraries (not even wasm: the corpus logic does not care) and their pins.
    fn synthetic(count: usize) -> (Vec<Library>, Vec<ExpectedLibrary>) {
        (0..count)
            .map(|i| {
                let bytes = format!("library number {i}").repeat(i + 1).into_bytes();
                let sha256 = hex::encode(Sha256::digest(&bytes));
                let name = leak(format!("lib{i}.so"));
                let expected = ExpectedLibrary {
                    name,
                    size: bytes.len() as u64,
                    sha256: leak(sha256.clone()),
                };
                let library = Library {
                    name: name.to_owned(),
                    offset: i,
                    encoding: Encoding::Raw,
                    sha256,
                    bytes,
                };
                (library, expected)
            })
            .unzip()
    }

    #[test]
    fn expected_libraries_are_sorted_unique_and_well_formed() {
        let names: Vec<&str> = EXPECTED_LIBRARIES.iter().map(|l| l.name).collect();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(names, sorted);
        for lib in EXPECTED_LIBRARIES {
            assert!(lib.size > 0, "{}", lib.name);
            assert_eq!(lib.sha256.len(), 64, "{}", lib.name);
            assert!(
                lib.sha256
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            );
        }
        assert_eq!(WHEEL_SHA256.len(), 64);
        assert!(WHEEL_FILE_NAME.contains(COMPONENTIZE_PY_VERSION));
        assert!(WHEEL_FILE_NAME.contains(WHEEL_PLATFORM));
    }

    #[test]
    fn names_follow_the_name_section_and_content() {
        let module = |bytes: &[u8]| FoundModule {
            offset: 0x40,
            encoding: Encoding::Zstd,
            bytes: bytes.to_vec(),
        };
        let runtime = Some("componentize_py_runtime.wasm");
        assert_eq!(
            library_name(&module(b"imports from $root"), runtime),
            "libcomponentize_py_runtime_async.so"
        );
        assert_eq!(
            library_name(&module(b"no async"), runtime),
            "libcomponentize_py_runtime_sync.so"
        );
        assert_eq!(library_name(&module(b""), Some("libc.so")), "libc.so");
        assert_eq!(
            library_name(&module(b"dlopen __wasm_set_libraries"), None),
            "libdl.so"
        );
        assert_eq!(
            library_name(&module(b"dlopen only"), None),
            "unnamed-zstd-at-0x40.so"
        );
    }

    /// Builds `\0asm` + dylink.0 + optional name section, like scan's tests, with extra bytes
    /// in a custom section so that content checks can see them.
    fn dylink_module(name: Option<&str>, extra: &[u8]) -> Vec<u8> {
        fn section(out: &mut Vec<u8>, name: &str, payload: &[u8]) {
            let body_len = 1 + name.len() + payload.len();
            assert!(name.len() < 128 && body_len < 128);
            out.extend_from_slice(&[0, body_len as u8, name.len() as u8]);
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(payload);
        }
        let mut m = scan::WASM_MAGIC.to_vec();
        section(&mut m, "dylink.0", &[1, 4, 0, 0, 0, 0]);
        section(&mut m, "extra", extra);
        if let Some(name) = name {
            let mut payload = vec![0, name.len() as u8 + 1, name.len() as u8];
            payload.extend_from_slice(name.as_bytes());
            section(&mut m, "name", &payload);
        }
        m
    }

    #[test]
    fn extract_libraries_names_filters_and_deduplicates() {
        let libc = dylink_module(Some("libc.so"), b"");
        let sync = dylink_module(Some("componentize_py_runtime.wasm"), b"sync");
        let not_a_library = scan::WASM_MAGIC.to_vec();
        let libdl = dylink_module(None, b"dlopen __wasm_set_libraries");

        let mut blob = b"junk".to_vec();
        for module in [&libc, &sync, &libc] {
            blob.extend(zstd::encode_all(&module[..], 1).unwrap());
            blob.extend_from_slice(b"\xff padding");
        }
        blob.extend(zstd::encode_all(&not_a_library[..], 1).unwrap());
        blob.extend_from_slice(b"\xff");
        blob.extend_from_slice(&libdl);
        blob.extend_from_slice(b"\xff trailing bytes");

        let libraries = extract_libraries(&blob);
        let names: Vec<&str> = libraries.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(
            names,
            ["libc.so", "libcomponentize_py_runtime_sync.so", "libdl.so"]
        );
        assert_eq!(libraries[0].bytes, libc);
        assert_eq!(libraries[1].bytes, sync);
        assert_eq!(libraries[2].bytes, libdl);
        assert_eq!(libraries[2].encoding, Encoding::Raw);
        assert_eq!(libraries[0].sha256, hex::encode(Sha256::digest(&libc)));
    }

    #[test]
    fn check_libraries_reports_names_and_hashes() {
        let (mut libraries, expected) = synthetic(3);
        check_libraries(Path::new("w.whl"), &libraries, &expected).unwrap();

        libraries[1].sha256 = "00".repeat(32);
        let err = check_libraries(Path::new("w.whl"), &libraries, &expected).unwrap_err();
        assert!(matches!(err, Error::LibraryHashMismatch { .. }), "{err}");
        assert!(err.to_string().contains("w.whl/lib1.so"), "{err}");

        libraries[1].name = "lib0.so".to_owned();
        let err = check_libraries(Path::new("w.whl"), &libraries, &expected).unwrap_err();
        assert_eq!(
            err.to_string(),
            "extracting w.whl found [lib0.so, lib0.so, lib2.so], expected [lib0.so, lib1.so, lib2.so]"
        );
    }

    #[test]
    fn ensure_builds_once_across_threads_and_is_then_complete() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("nested").join("corpus");
        let (libraries, expected) = synthetic(4);
        let builds = AtomicUsize::new(0);

        let results: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        ensure_with(&dir, &expected, |_| {
                            builds.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_millis(50));
                            Ok(libraries.clone())
                        })
                        .unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(builds.load(Ordering::SeqCst), 1);
        assert!(results.windows(2).all(|w| w[0] == w[1]));

        let entries = &results[0];
        assert_eq!(entries.len(), 4);
        for (entry, lib) in entries.iter().zip(&libraries) {
            assert_eq!(entry.name, lib.name);
            assert_eq!(entry.path, dir.join(&lib.name));
            assert_eq!(entry.read().unwrap(), lib.bytes);
            assert_eq!(entry.sha256, lib.sha256);
        }
        let sums = fs::read_to_string(dir.join(SUMS_FILE)).unwrap();
        assert_eq!(sums.lines().count(), 4);
        assert!(sums.contains(&format!("{}  lib2.so\n", libraries[2].sha256)));

        // No staging or trash directories are left behind.
        let mut leftovers: Vec<String> = fs::read_dir(dir.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        leftovers.sort();
        assert_eq!(leftovers, [".corpus.lock", "corpus"]);
    }

    #[test]
    fn damaged_corpus_is_rebuilt() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("corpus");
        let (libraries, expected) = synthetic(3);
        let builds = AtomicUsize::new(0);
        let ensure = || {
            ensure_with(&dir, &expected, |_| {
                builds.fetch_add(1, Ordering::SeqCst);
                Ok(libraries.clone())
            })
            .unwrap()
        };
        ensure();

        // A truncated library.
        fs::write(dir.join("lib1.so"), b"short").unwrap();
        assert!(complete_corpus(&dir, &expected).is_none());
        ensure();
        assert_eq!(builds.load(Ordering::SeqCst), 2);
        assert_eq!(fs::read(dir.join("lib1.so")).unwrap(), libraries[1].bytes);

        // A missing sums file (as in a corpus whose writing was interrupted).
        fs::remove_file(dir.join(SUMS_FILE)).unwrap();
        ensure();
        assert_eq!(builds.load(Ordering::SeqCst), 3);

        // Complete: nothing to do.
        ensure();
        assert_eq!(builds.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn damaged_corpus_with_a_python_home_is_rebuilt() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("corpus");
        let (libraries, expected) = synthetic(2);
        ensure_with(&dir, &expected, |_| Ok(libraries.clone())).unwrap();
        fs::create_dir_all(dir.join(pylib::PYTHON_HOME_DIR).join("lib")).unwrap();
        fs::write(dir.join("lib0.so"), b"short").unwrap();
        ensure_with(&dir, &expected, |_| Ok(libraries.clone())).unwrap();
        assert_eq!(fs::read(dir.join("lib0.so")).unwrap(), libraries[0].bytes);
    }

    #[test]
    fn foreign_directory_is_not_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("corpus");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("notes.txt"), b"keep me").unwrap();
        let (libraries, expected) = synthetic(2);

        let err = ensure_with(&dir, &expected, |_| Ok(libraries.clone())).unwrap_err();
        assert!(matches!(err, Error::BadCorpusDir { .. }), "{err}");
        assert!(err.to_string().contains("notes.txt"), "{err}");
        assert_eq!(fs::read(dir.join("notes.txt")).unwrap(), b"keep me");
    }

    #[test]
    fn producer_errors_and_wrong_libraries_leave_no_corpus() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("corpus");
        let (libraries, expected) = synthetic(2);

        let err = ensure_with(&dir, &expected, |cache| {
            Err(Error::WheelMissing {
                dir: cache.to_owned(),
            })
        })
        .unwrap_err();
        assert!(matches!(err, Error::WheelMissing { .. }));
        assert!(!dir.exists());

        let err = ensure_with(&dir, &expected, |_| Ok(libraries[..1].to_vec())).unwrap_err();
        assert!(matches!(err, Error::UnexpectedLibraries { .. }), "{err}");
        assert!(!dir.exists());
    }

    #[test]
    fn split_dir_handles_relative_and_bare_names() {
        assert_eq!(
            split_dir(Path::new("corpus")).unwrap(),
            (PathBuf::from("."), "corpus".to_owned())
        );
        assert_eq!(
            split_dir(Path::new("target/corpus/")).unwrap(),
            (PathBuf::from("target"), "corpus".to_owned())
        );
        assert!(split_dir(Path::new("/")).is_err());
        assert!(split_dir(Path::new("..")).is_err());
    }

    #[test]
    fn stderr_tail_keeps_the_end_on_a_char_boundary() {
        assert_eq!(stderr_tail(b"  oops\n"), "oops");
        let long = "\u{e9}".repeat(1500); // 3000 bytes of two-byte characters
        let tail = stderr_tail(long.as_bytes());
        assert!(tail.len() <= 2000 && tail.chars().all(|c| c == '\u{e9}'));
    }

    #[test]
    fn default_dir_is_under_the_workspace_target() {
        if std::env::var_os(CORPUS_DIR_ENV).is_none() {
            let dir = default_corpus_dir();
            assert!(dir.ends_with("target/corpus"), "{}", dir.display());
            assert!(
                dir.parent()
                    .unwrap()
                    .parent()
                    .unwrap()
                    .join("Cargo.toml")
                    .is_file()
            );
        }
    }
}
