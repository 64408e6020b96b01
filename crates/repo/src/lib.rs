//! The module repository: a content-addressed store of WebAssembly modules (core modules and
//! components), named and versioned.
//!
//! A repository is a directory (`WASMLINK_REPO`, or `wasmlink/repo` in the user's data
//! directory, e.g. `~/.local/share/wasmlink/repo`):
//!
//! ```text
//! objects/sha256/<hex>   the module bytes, named by their sha256, read-only, never rewritten
//! index.json             name -> version -> { sha256, size, added, signature, key_id }
//! index.lock             the lock every writer holds around its read-modify-write of the index
//! ```
//!
//! Invariants:
//! - **Objects are immutable and named by their hash.** An object is written to a temporary
//!   file in `objects/sha256/` and renamed into place, so no reader sees a partial object.
//! - **The index is written atomically, under a lock.** Every change (add, remove, gc) takes an
//!   exclusive lock on `index.lock`, reads `index.json`, changes it, writes a temporary file and
//!   renames it over `index.json`. Readers take no lock: they always see a whole index.
//!   Concurrent writers, threads or processes, lose no entry.
//! - **Nothing is loaded before its hash is checked.** [`Repository::load`] and
//!   [`Repository::path_of`] hash the object file and compare it with the index; with trusted
//!   keys ([`Trust`]) they also check the entry's ed25519 signature.
//! - A `name@version` is immutable too: adding different bytes under an existing version is an
//!   error (remove the version first).
//! - **Build metadata never makes a second version.** Semver ignores `+BUILD` when it compares
//!   versions, so `1.0.0` and `1.0.0+zzz` are the same version to every requirement (`=1.0.0`
//!   matches both). [`Repository::add`] therefore refuses a version equal to one already present
//!   except for its build metadata, and [`Repository::resolve`] refuses (rather than picks from)
//!   an index that holds two such entries: an exact pin always names one set of bytes, and an
//!   unsigned `1.0.0+x` can never shadow a signed `1.0.0`.
//! - **Objects are read only if they are regular files, and never past their recorded size.**
//!   An object is opened without blocking and checked with `fstat`, so a FIFO, a device or a
//!   directory in its place is an error naming it (never a hang), and at most the `size` the
//!   index records (plus one byte, to see that it is longer) is read.
//!
//! References are `NAME` (the highest release version), or `NAME@REQ` where `REQ` is a semver
//! requirement as Cargo reads it: `foo@1.2` and `foo@1.2.3` mean `^1.2` and `^1.2.3` (the
//! highest compatible version), `foo@=1.2.3` is that version exactly, and `foo@>=1, <3`,
//! `foo@~1.2` and `foo@*` work as in Cargo. Pre-release versions match only a requirement
//! that names a pre-release.
//!
//! Signatures: ed25519 over the message `wasmlink-module-v1\0NAME\0VERSION\0` followed by the
//! 32-byte sha256 digest of the module, so a signature binds the bytes to their name and
//! version (an index edited to relabel a signed module fails verification). The signature is
//! stored base64-encoded, with the key id: the first 16 hex digits of the sha256 of the
//! 32-byte public key.
//!
//! Key files are one line of text: `wasmlink-ed25519-secret <base64 of the 32-byte seed>` (mode
//! 0600) and `wasmlink-ed25519-public <base64 of the 32-byte public key>`, written by
//! [`keygen`].
#![deny(missing_docs)]

mod error;
mod files;
mod keys;
mod names;

pub use error::*;
use files::*;
pub use files::{open_nonblocking, read_module_file};
pub use keys::*;
pub use names::*;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use semver::{Version, VersionReq};

/// The largest module [`Repository::add`] takes: 1 GiB, wasmparser's limit on a module's size.
pub const MAX_MODULE_SIZE: u64 = 1 << 30;

/// The most bytes read from a key file (a key file is one line of about 70 bytes).
const MAX_KEY_FILE: u64 = 4096;

/// The environment variable naming the repository directory.
pub const REPO_ENV: &str = "WASMLINK_REPO";

const INDEX_FILE: &str = "index.json";
const LOCK_FILE: &str = "index.lock";
const OBJECTS_DIR: &str = "objects/sha256";
const INDEX_FORMAT: u32 = 1;
const SECRET_TAG: &str = "wasmlink-ed25519-secret";
const PUBLIC_TAG: &str = "wasmlink-ed25519-public";
const SIGNATURE_DOMAIN: &[u8] = b"wasmlink-module-v1\0";

/// One `name@version` in the index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// The sha256 of the module bytes, lowercase hex: also the object's file name.
    pub sha256: String,
    /// The module's size in bytes.
    pub size: u64,
    /// When it was added (RFC 3339, UTC).
    pub added: String,
    /// The base64 ed25519 signature (see the module docs), if it was signed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// The id of the key that signed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Index {
    format: u32,
    modules: BTreeMap<String, BTreeMap<Version, Entry>>,
}

/// One `name@version` as [`Repository::list`] and [`Repository::resolve`] return it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// The module name.
    pub name: String,
    /// The version.
    pub version: Version,
    /// Its index entry.
    pub entry: Entry,
    /// The object file holding its bytes.
    pub path: PathBuf,
}

/// A module loaded by [`Repository::load`]: its bytes have been checked against the index.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// Which module and version, and where its object is.
    pub module: Listed,
    /// The module bytes.
    pub bytes: Vec<u8>,
}

/// What [`Repository::verify`] found for one index entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    /// The object is present and hashes to its name (and the signature, if checked, is good).
    Ok,
    /// The object file is missing.
    Missing,
    /// The object's content hashes to something else.
    Tampered {
        /// The sha256 of the content.
        actual: String,
    },
    /// The object is longer than the size the index records (it was not read past that).
    TooLong {
        /// The file's size in bytes (at least).
        actual: u64,
    },
    /// The bytes are intact but the signature check failed (with [`Trust`] keys).
    Signature(String),
    /// The object could not be read.
    Unreadable(String),
}

/// [`Repository::verify`]'s finding for one entry.
#[derive(Clone, Debug)]
pub struct Verified {
    /// The entry.
    pub module: Listed,
    /// What was found.
    pub status: Status,
}

/// What [`Repository::gc`] removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// The sha256 of each object removed, sorted.
    pub removed: Vec<String>,
    /// The bytes freed.
    pub bytes: u64,
}

// ---------------------------------------------------------------------------------------------
// The repository
// ---------------------------------------------------------------------------------------------

/// A module repository directory. See the module docs.
#[derive(Clone, Debug)]
pub struct Repository {
    root: PathBuf,
}

/// The exclusive lock on `index.lock`, released on drop.
struct IndexLock {
    _file: fs::File,
}

impl Repository {
    /// A repository in `dir`. Nothing is created until something is added.
    pub fn open(dir: impl Into<PathBuf>) -> Repository {
        Repository { root: dir.into() }
    }

    /// The repository named by `WASMLINK_REPO`, or else `wasmlink/repo` in the user's data
    /// directory (`$XDG_DATA_HOME` or `~/.local/share` on Linux).
    pub fn open_default() -> Result<Repository> {
        if let Some(dir) = std::env::var_os(REPO_ENV).filter(|d| !d.is_empty()) {
            return Ok(Repository::open(dir));
        }
        let data = dirs::data_dir().ok_or(RepoError::NoDefaultRepo)?;
        Ok(Repository::open(data.join("wasmlink").join("repo")))
    }

    /// The repository directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn objects(&self) -> PathBuf {
        self.root.join(OBJECTS_DIR)
    }

    fn index_path(&self) -> PathBuf {
        self.root.join(INDEX_FILE)
    }

    /// The object file for a sha256 (lowercase hex).
    pub fn object_path(&self, sha256: &str) -> PathBuf {
        self.objects().join(sha256)
    }

    fn lock(&self) -> Result<IndexLock> {
        let objects = self.objects();
        fs::create_dir_all(&objects).map_err(io_err(&objects, "create directory"))?;
        let path = self.root.join(LOCK_FILE);
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err(&path, "open lock file"))?;
        file.lock().map_err(io_err(&path, "lock"))?;
        Ok(IndexLock { _file: file })
    }

    fn read_index(&self) -> Result<Index> {
        let path = self.index_path();
        let text = match open_regular(&path) {
            Ok((file, _)) => {
                let mut text = Vec::new();
                io::Read::read_to_end(&mut &file, &mut text).map_err(io_err(&path, "read"))?;
                text
            }
            Err(OpenError::Io(e)) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Index {
                    format: INDEX_FORMAT,
                    modules: BTreeMap::new(),
                });
            }
            Err(OpenError::Io(e)) => return Err(io_err(&path, "read")(e)),
            Err(OpenError::NotAFile(kind)) => {
                return Err(RepoError::NotAFile {
                    path,
                    what: "the repository index".to_string(),
                    kind,
                });
            }
        };
        let index: Index = serde_json::from_slice(&text).map_err(|e| RepoError::CorruptIndex {
            path: path.clone(),
            message: e.to_string(),
        })?;
        if index.format != INDEX_FORMAT {
            return Err(RepoError::CorruptIndex {
                path,
                message: format!(
                    "index format {} is not supported (this wasmlink reads format {INDEX_FORMAT})",
                    index.format
                ),
            });
        }
        for (name, versions) in &index.modules {
            validate_name(name).map_err(|e| RepoError::CorruptIndex {
                path: path.clone(),
                message: e.to_string(),
            })?;
            for (version, entry) in versions {
                if entry.sha256.len() != 64
                    || !entry
                        .sha256
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                {
                    return Err(RepoError::CorruptIndex {
                        path: path.clone(),
                        message: format!(
                            "{name}@{version}: sha256 `{}` is not 64 lowercase hex digits",
                            entry.sha256
                        ),
                    });
                }
            }
        }
        Ok(index)
    }

    /// Writes the index to a temporary file and renames it over `index.json`. The caller holds
    /// the lock.
    fn write_index(&self, _lock: &IndexLock, index: &Index) -> Result<()> {
        let path = self.index_path();
        let mut json = serde_json::to_vec_pretty(index).map_err(|e| RepoError::CorruptIndex {
            path: path.clone(),
            message: e.to_string(),
        })?;
        json.push(b'\n');
        atomic_write(&self.root, &path, &json, false)
    }

    /// Adds the module at `path` as `name@version`, signed with `sign` if given. The file must
    /// be a valid WebAssembly module. Adding the same bytes again under the same version is a
    /// no-op; different bytes under an existing version are refused.
    ///
    /// # Errors
    /// [`RepoError::VersionExists`] for other bytes under an existing version, and
    /// [`RepoError::VersionConflict`] for a version equal to an existing one but for its build
    /// metadata (`1.0.0+b` when `1.0.0` is there, or the reverse).
    pub fn add(
        &self,
        path: &Path,
        name: &str,
        version: &Version,
        sign: Option<&SigningKey>,
    ) -> Result<Listed> {
        validate_name(name)?;
        let bytes = read_module_file(path)?;
        validate_module(path, &bytes)?;
        let digest = Sha256::digest(&bytes);
        let sha256 = hex::encode(digest);
        let (signature, key_id) = match sign {
            Some(k) => (
                Some(BASE64.encode(k.sign(&signed_message(name, version, &digest)).to_bytes())),
                Some(k.public().id()),
            ),
            None => (None, None),
        };
        let entry = Entry {
            sha256: sha256.clone(),
            size: bytes.len() as u64,
            added: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            signature,
            key_id,
        };

        let lock = self.lock()?;
        let mut index = self.read_index()?;
        if let Some(existing) = index.modules.get(name).and_then(|v| v.get(version))
            && existing.sha256 != sha256
        {
            return Err(RepoError::VersionExists {
                name: name.to_string(),
                version: version.clone(),
                existing: existing.sha256.clone(),
            });
        }
        if let Some(existing) = index.modules.get(name).and_then(|versions| {
            versions
                .keys()
                .find(|v| *v != version && v.cmp_precedence(version).is_eq())
        }) {
            return Err(RepoError::VersionConflict {
                name: name.to_string(),
                version: version.clone(),
                existing: existing.clone(),
            });
        }
        // Under the lock, so a concurrent gc cannot remove the object before the index
        // references it.
        let object = self.object_path(&sha256);
        // Whatever is there (a partial write, a FIFO, other bytes) is replaced unless it is
        // a regular file with exactly these bytes.
        let intact = self
            .read_checked(&Listed {
                name: name.to_string(),
                version: version.clone(),
                entry: entry.clone(),
                path: object.clone(),
            })
            .is_ok();
        if !intact {
            atomic_write(&self.objects(), &object, &bytes, true)?;
        }
        let versions = index.modules.entry(name.to_string()).or_default();
        let entry = match versions.get(version) {
            // Same bytes again: keep the first entry, but take a signature if it had none.
            Some(old) if old.signature.is_some() || entry.signature.is_none() => old.clone(),
            _ => {
                versions.insert(version.clone(), entry.clone());
                self.write_index(&lock, &index)?;
                entry
            }
        };
        Ok(Listed {
            name: name.to_string(),
            version: version.clone(),
            entry,
            path: object,
        })
    }

    /// Every `name@version`, sorted by name then version.
    pub fn list(&self) -> Result<Vec<Listed>> {
        let index = self.read_index()?;
        Ok(index
            .modules
            .into_iter()
            .flat_map(|(name, versions)| {
                versions.into_iter().map(move |(version, entry)| Listed {
                    path: self.object_path(&entry.sha256),
                    name: name.clone(),
                    version,
                    entry,
                })
            })
            .collect())
    }

    /// The highest version matching `reference` (`NAME` or `NAME@REQ`). Does not read the
    /// object: use [`Repository::load`] or [`Repository::path_of`] to get checked bytes.
    ///
    /// # Errors
    /// [`RepoError::AmbiguousVersion`] when the highest match ties with another entry that
    /// differs from it only in build metadata ([`Repository::add`] never writes such an index).
    pub fn resolve(&self, reference: &str) -> Result<Listed> {
        let r = ModuleRef::parse(reference)?;
        let index = self.read_index()?;
        let Some(versions) = index.modules.get(&r.name) else {
            return Err(RepoError::UnknownModule {
                name: r.name,
                repo: self.root.clone(),
            });
        };
        let mut matching = versions.iter().rev().filter(|(v, _)| r.req.matches(v));
        let Some((version, entry)) = matching.next() else {
            return Err(RepoError::NoMatchingVersion {
                available: versions
                    .keys()
                    .map(Version::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                name: r.name,
                req: r.req.to_string(),
            });
        };
        // Versions equal but for build metadata sort next to each other: if the requirement
        // matches more than one, it does not name one module (see the module docs).
        let tied: Vec<&Version> = std::iter::once(version)
            .chain(
                matching
                    .map(|(v, _)| v)
                    .take_while(|v| v.cmp_precedence(version).is_eq()),
            )
            .collect();
        if tied.len() > 1 {
            return Err(RepoError::AmbiguousVersion {
                candidates: tied
                    .iter()
                    .rev()
                    .map(|v| format!("{}@{v}", r.name))
                    .collect::<Vec<_>>()
                    .join(", "),
                name: r.name,
                req: r.req.to_string(),
            });
        }
        Ok(Listed {
            name: r.name,
            version: version.clone(),
            entry: entry.clone(),
            path: self.object_path(&entry.sha256),
        })
    }

    /// Resolves `reference`, reads its object, checks its sha256 against the index and, when
    /// `trust` has keys, its signature; returns the bytes only if all of that holds.
    pub fn load(&self, reference: &str, trust: &Trust) -> Result<Loaded> {
        let module = self.resolve(reference)?;
        let bytes = self.read_checked(&module)?;
        trust.check(&module.name, &module.version, &module.entry)?;
        Ok(Loaded { module, bytes })
    }

    /// The checked object file for `reference`, for the runtime linker's search path: the
    /// same checks as [`Repository::load`]. Objects are never rewritten in place, so the file
    /// keeps the checked content.
    pub fn path_of(&self, reference: &str, trust: &Trust) -> Result<PathBuf> {
        Ok(self.load(reference, trust)?.module.path)
    }

    /// Reads an object for `module`: only a regular file, opened without blocking, and never
    /// more than the size the index records plus one byte (to see that it is longer).
    fn read_checked(&self, module: &Listed) -> Result<Vec<u8>> {
        let label = || format!("{}@{}", module.name, module.version);
        let path = &module.path;
        let expected = module.entry.size;
        let (file, len) = open_regular(path).map_err(|e| match e {
            OpenError::Io(e) if e.kind() == io::ErrorKind::NotFound => RepoError::MissingObject {
                path: path.clone(),
                module: label(),
            },
            OpenError::Io(e) => io_err(path, "read")(e),
            OpenError::NotAFile(kind) => RepoError::NotAFile {
                path: path.clone(),
                what: format!("the object of {}", label()),
                kind,
            },
        })?;
        let too_long = |actual: u64| RepoError::TooLong {
            path: path.clone(),
            module: label(),
            expected,
            actual,
        };
        if len > expected {
            return Err(too_long(len));
        }
        // Never pre-allocate from the index: `size` is only a bound.
        let mut bytes = Vec::new();
        io::Read::read_to_end(
            &mut io::Read::take(file, expected.saturating_add(1)),
            &mut bytes,
        )
        .map_err(io_err(path, "read"))?;
        if bytes.len() as u64 > expected {
            return Err(too_long(bytes.len() as u64));
        }
        let actual = hex::encode(Sha256::digest(&bytes));
        if actual != module.entry.sha256 {
            return Err(RepoError::Tampered {
                path: path.clone(),
                expected: module.entry.sha256.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Checks every index entry: its object is present and hashes to its name, and (with
    /// `trust` keys) its signature is good.
    pub fn verify(&self, trust: &Trust) -> Result<Vec<Verified>> {
        Ok(self
            .list()?
            .into_iter()
            .map(|module| {
                let status = match self.read_checked(&module) {
                    Ok(_) => match trust.check(&module.name, &module.version, &module.entry) {
                        Ok(()) => Status::Ok,
                        Err(e) => Status::Signature(e.to_string()),
                    },
                    Err(RepoError::MissingObject { .. }) => Status::Missing,
                    Err(RepoError::Tampered { actual, .. }) => Status::Tampered { actual },
                    Err(RepoError::TooLong { actual, .. }) => Status::TooLong { actual },
                    Err(e) => Status::Unreadable(e.to_string()),
                };
                Verified { module, status }
            })
            .collect())
    }

    /// Removes `name@version` from the index (its object stays until [`Repository::gc`]).
    pub fn remove(&self, name: &str, version: &Version) -> Result<Entry> {
        validate_name(name)?;
        let lock = self.lock()?;
        let mut index = self.read_index()?;
        let Some(versions) = index.modules.get_mut(name) else {
            return Err(RepoError::UnknownModule {
                name: name.to_string(),
                repo: self.root.clone(),
            });
        };
        let Some(entry) = versions.remove(version) else {
            return Err(RepoError::UnknownVersion {
                name: name.to_string(),
                version: version.clone(),
            });
        };
        if versions.is_empty() {
            index.modules.remove(name);
        }
        self.write_index(&lock, &index)?;
        Ok(entry)
    }

    /// Removes every object no index entry references, and temporary files left by writers
    /// that died; returns what it removed.
    pub fn gc(&self) -> Result<GcReport> {
        let _lock = self.lock()?;
        let index = self.read_index()?;
        let referenced: BTreeSet<&str> = index
            .modules
            .values()
            .flat_map(|v| v.values().map(|e| e.sha256.as_str()))
            .collect();
        let mut report = GcReport::default();
        let objects = self.objects();
        let dir = fs::read_dir(&objects).map_err(io_err(&objects, "list"))?;
        for item in dir {
            let item = item.map_err(io_err(&objects, "list"))?;
            let name = item.file_name();
            let name = name.to_string_lossy();
            if referenced.contains(name.as_ref()) {
                continue;
            }
            let path = item.path();
            let size = item.metadata().map(|m| m.len()).unwrap_or(0);
            fs::remove_file(&path).map_err(io_err(&path, "remove"))?;
            if !name.starts_with(".tmp") {
                report.removed.push(name.into_owned());
                report.bytes += size;
            }
        }
        // Index temporaries of writers that died (writers hold the lock we hold).
        if let Ok(dir) = fs::read_dir(&self.root) {
            for item in dir.flatten() {
                if item.file_name().to_string_lossy().starts_with(".tmp") {
                    let _ = fs::remove_file(item.path());
                }
            }
        }
        report.removed.sort();
        Ok(report)
    }
}
