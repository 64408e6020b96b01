//! The module repository: a content-addressed store of WebAssembly modules, named and versioned.
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

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer as _};
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

/// Everything that can go wrong in the repository. Each message is one line naming the file,
/// module, version or key concerned.
#[derive(Debug, thiserror::Error)]
pub enum RepoError {
    /// A file system operation failed.
    #[error("{}: cannot {op}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done ("read", "write", "lock", ...).
        op: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// The file given to [`Repository::add`] is not a valid WebAssembly module.
    #[error("{}: not a valid WebAssembly module: {message}", path.display())]
    NotWasm {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A module name outside `[a-z0-9._-]`, empty, or not starting with a letter or digit.
    #[error("invalid module name `{name}`: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A version that is not semver (`MAJOR.MINOR.PATCH[-PRE][+BUILD]`).
    #[error(
        "invalid version `{text}`{}: {message} (expected MAJOR.MINOR.PATCH, e.g. 1.2.3)",
        for_name(name)
    )]
    InvalidVersion {
        /// The version as given.
        text: String,
        /// The module it was for, if known.
        name: Option<String>,
        /// The semver parser's message.
        message: String,
    },
    /// A version requirement that semver cannot parse.
    #[error("invalid version requirement `{text}` for module {name}: {message}")]
    InvalidRequirement {
        /// The requirement as given.
        text: String,
        /// The module it was for.
        name: String,
        /// The semver parser's message.
        message: String,
    },
    /// A reference or `NAME@VERSION` that is not of that form.
    #[error("invalid module reference `{text}`: {reason}")]
    InvalidReference {
        /// The reference as given.
        text: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// No module of that name is in the repository.
    #[error("no module named {name} in the repository {}", repo.display())]
    UnknownModule {
        /// The module name.
        name: String,
        /// The repository directory.
        repo: PathBuf,
    },
    /// The module exists but no version matches the requirement.
    #[error("no version of {name} matches {req} (available: {available})")]
    NoMatchingVersion {
        /// The module name.
        name: String,
        /// The requirement.
        req: String,
        /// The versions present, comma-separated.
        available: String,
    },
    /// [`Repository::remove`] of a version that is not there.
    #[error("{name}@{version} is not in the repository")]
    UnknownVersion {
        /// The module name.
        name: String,
        /// The version.
        version: Version,
    },
    /// Adding different bytes under a `name@version` that already exists.
    #[error(
        "{name}@{version} is already in the repository with sha256 {existing}; \
         versions are immutable (remove it first)"
    )]
    VersionExists {
        /// The module name.
        name: String,
        /// The version.
        version: Version,
        /// The sha256 the index holds for it.
        existing: String,
    },
    /// Adding a version that equals an existing one except for its build metadata (`+...`):
    /// semver ignores build metadata, so the two would be the same version to every
    /// requirement and one could shadow the other.
    #[error(
        "{name}@{version} conflicts with {name}@{existing}, already in the repository: versions \
         that differ only in build metadata (+...) are the same version to semver \
         (remove {name}@{existing} first, or choose another version)"
    )]
    VersionConflict {
        /// The module name.
        name: String,
        /// The version being added.
        version: Version,
        /// The version already present.
        existing: Version,
    },
    /// The index holds several versions that match a requirement and differ only in build
    /// metadata, so the requirement does not name one module (an index written by hand or by
    /// an older wasmlink).
    #[error(
        "{name}@{req} is ambiguous: {candidates} differ only in build metadata (+...); \
         remove all but one of them"
    )]
    AmbiguousVersion {
        /// The module name.
        name: String,
        /// The requirement.
        req: String,
        /// The tied versions, comma-separated.
        candidates: String,
    },
    /// A repository file (an object or the index) is not a regular file: a FIFO, a device, a
    /// socket or a directory in its place is refused rather than read.
    #[error("{}: {what} is {kind}, not a regular file", path.display())]
    NotAFile {
        /// The file.
        path: PathBuf,
        /// What it should be: `object of NAME@VERSION` or `the repository index`.
        what: String,
        /// What it is: `a FIFO`, `a directory`, ...
        kind: &'static str,
    },
    /// An object file is longer than the size the index records: it is not read further.
    #[error(
        "{}: the file has {actual} bytes, more than the {expected} the index records \
         (tampered or corrupt object of {module})",
        path.display()
    )]
    TooLong {
        /// The object file.
        path: PathBuf,
        /// `name@version`.
        module: String,
        /// The size the index records.
        expected: u64,
        /// The file's size (at least).
        actual: u64,
    },
    /// The index file is not a repository index this version understands.
    #[error("{}: corrupt repository index: {message}", path.display())]
    CorruptIndex {
        /// The index file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// An object file's content does not hash to its name in the index.
    #[error(
        "{}: sha256 mismatch: the index says {expected}, the file hashes to {actual} \
         (tampered or corrupt object)", path.display()
    )]
    Tampered {
        /// The object file.
        path: PathBuf,
        /// The sha256 the index holds.
        expected: String,
        /// The sha256 of the file's content.
        actual: String,
    },
    /// An object file the index references is missing.
    #[error("{}: object of {module} is missing from the repository", path.display())]
    MissingObject {
        /// The object file.
        path: PathBuf,
        /// `name@version`.
        module: String,
    },
    /// Trusted keys were given but the module is not signed.
    #[error(
        "{module}: not signed, but a signature by a trusted key is required (trusted: {trusted})"
    )]
    Unsigned {
        /// `name@version`.
        module: String,
        /// The trusted key ids, comma-separated.
        trusted: String,
    },
    /// The module is signed by a key that is not trusted.
    #[error("{module}: signed by key {key_id}, which is not trusted (trusted: {trusted})")]
    UntrustedKey {
        /// `name@version`.
        module: String,
        /// The key id of the signature.
        key_id: String,
        /// The trusted key ids, comma-separated.
        trusted: String,
    },
    /// The signature does not verify with the key it names.
    #[error("{module}: bad signature for key {key_id}")]
    BadSignature {
        /// `name@version`.
        module: String,
        /// The key id of the signature.
        key_id: String,
    },
    /// A key file that is not in the expected format.
    #[error("{}: {message}", path.display())]
    KeyFormat {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// [`keygen`] refuses to overwrite an existing file.
    #[error("{}: already exists; refusing to overwrite a key", path.display())]
    KeyExists {
        /// The existing file.
        path: PathBuf,
    },
    /// No `WASMLINK_REPO` and no user data directory to put the default repository in.
    #[error("no repository: set {REPO_ENV} or pass --repo DIR (no user data directory found)")]
    NoDefaultRepo,
    /// The operating system's random number generator failed.
    #[error("cannot generate a key: the system random number generator failed: {0}")]
    Random(String),
}

fn for_name(name: &Option<String>) -> String {
    name.as_ref()
        .map(|n| format!(" for module {n}"))
        .unwrap_or_default()
}

impl RepoError {
    /// True for errors in what the user gave (a name, version, reference, key file or module
    /// file that is malformed or missing): a command line exits 2 for these. Every other error
    /// is a problem found in the repository (exit 1).
    pub fn is_bad_input(&self) -> bool {
        match self {
            RepoError::NotWasm { .. }
            | RepoError::InvalidName { .. }
            | RepoError::InvalidVersion { .. }
            | RepoError::InvalidRequirement { .. }
            | RepoError::InvalidReference { .. }
            | RepoError::KeyFormat { .. }
            | RepoError::KeyExists { .. }
            | RepoError::NoDefaultRepo => true,
            RepoError::Io { source, .. } => matches!(
                source.kind(),
                io::ErrorKind::NotFound | io::ErrorKind::IsADirectory
            ),
            _ => false,
        }
    }
}

/// The result type of this module.
pub type Result<T, E = RepoError> = std::result::Result<T, E>;

fn io_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> RepoError + 'a {
    move |source| RepoError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

// ---------------------------------------------------------------------------------------------
// Names, versions, references
// ---------------------------------------------------------------------------------------------

/// Checks a module name: non-empty, at most 128 bytes, only `[a-z0-9._-]`, starting with a
/// letter or digit (so never `.`, `..` or an option-like `-x`).
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |reason| {
        Err(RepoError::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("the name is empty");
    }
    if name.len() > 128 {
        return bad("longer than 128 bytes");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
    {
        return bad("only a-z, 0-9, '.', '_' and '-' are allowed");
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return bad("must start with a letter or digit");
    }
    Ok(())
}

/// Parses a semver version for module `name` (if known), with a one-line error.
pub fn parse_version(text: &str, name: Option<&str>) -> Result<Version> {
    Version::parse(text.trim()).map_err(|e| RepoError::InvalidVersion {
        text: text.to_string(),
        name: name.map(str::to_string),
        message: e.to_string(),
    })
}

/// A reference to a module: `NAME` or `NAME@REQ` (see the module docs for `REQ`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleRef {
    /// The module name.
    pub name: String,
    /// The version requirement (`*` for a bare name).
    pub req: VersionReq,
}

impl ModuleRef {
    /// Parses `NAME` or `NAME@REQ`.
    pub fn parse(text: &str) -> Result<ModuleRef> {
        let (name, req) = match text.split_once('@') {
            Some((n, r)) => (n, Some(r)),
            None => (text, None),
        };
        validate_name(name)?;
        let req = match req {
            None => VersionReq::STAR,
            Some(r) if r.trim().is_empty() => {
                return Err(RepoError::InvalidReference {
                    text: text.to_string(),
                    reason: "nothing after '@' (write NAME, or NAME@REQ such as NAME@^1.2)",
                });
            }
            Some(r) => VersionReq::parse(r).map_err(|e| RepoError::InvalidRequirement {
                text: r.to_string(),
                name: name.to_string(),
                message: e.to_string(),
            })?,
        };
        Ok(ModuleRef {
            name: name.to_string(),
            req,
        })
    }
}

impl fmt::Display for ModuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.req)
    }
}

/// Parses `NAME@VERSION` with an exact version (as `repo remove` takes).
pub fn parse_exact(text: &str) -> Result<(String, Version)> {
    let Some((name, version)) = text.split_once('@') else {
        return Err(RepoError::InvalidReference {
            text: text.to_string(),
            reason: "expected NAME@VERSION, e.g. foo@1.2.3",
        });
    };
    validate_name(name)?;
    let version = parse_version(version.strip_prefix('=').unwrap_or(version), Some(name))?;
    Ok((name.to_string(), version))
}

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------

/// An ed25519 signing (secret) key, read from a `wasmlink-ed25519-secret` file.
pub struct SigningKey {
    key: ed25519_dalek::SigningKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({})", self.public().id())
    }
}

/// An ed25519 public key, read from a `wasmlink-ed25519-public` file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey {
    key: ed25519_dalek::VerifyingKey,
}

fn read_key_line(path: &Path, tag: &str, other_tag: &str, hint: &str) -> Result<[u8; 32]> {
    let bad = |message: String| RepoError::KeyFormat {
        path: path.to_path_buf(),
        message,
    };
    // A key file is one short line: read no more than that (a device in its place is then
    // just not a key).
    let mut text = Vec::new();
    io::Read::read_to_end(
        &mut io::Read::take(
            fs::File::open(path).map_err(io_err(path, "read key"))?,
            MAX_KEY_FILE,
        ),
        &mut text,
    )
    .map_err(io_err(path, "read key"))?;
    let text = String::from_utf8(text).map_err(|_| {
        bad(format!(
            "not a wasmlink key (expected one line `{tag} <base64>`)"
        ))
    })?;
    let line = text.trim();
    let (found_tag, data) = line.split_once(' ').unwrap_or((line, ""));
    if found_tag == other_tag {
        return Err(bad(hint.to_string()));
    }
    if found_tag != tag || line.contains('\n') {
        return Err(bad(format!(
            "not a wasmlink key (expected one line `{tag} <base64>`)"
        )));
    }
    let bytes = BASE64
        .decode(data.trim())
        .map_err(|e| bad(format!("bad base64 after `{tag}`: {e}")))?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| bad(format!("the key is {} bytes, expected 32", bytes.len())))
}

impl SigningKey {
    /// Generates a new key from the operating system's random number generator.
    pub fn generate() -> Result<SigningKey> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| RepoError::Random(e.to_string()))?;
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        seed.fill(0);
        Ok(SigningKey { key })
    }

    /// Reads a secret key file written by [`keygen`].
    pub fn load(path: &Path) -> Result<SigningKey> {
        let mut seed = read_key_line(
            path,
            SECRET_TAG,
            PUBLIC_TAG,
            "is a public key; signing needs the secret key (the file without .pub)",
        )?;
        let key = ed25519_dalek::SigningKey::from_bytes(&seed);
        seed.fill(0);
        Ok(SigningKey { key })
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey {
            key: self.key.verifying_key(),
        }
    }

    fn sign(&self, message: &[u8]) -> Signature {
        self.key.sign(message)
    }
}

impl PublicKey {
    /// Reads a public key file written by [`keygen`].
    pub fn load(path: &Path) -> Result<PublicKey> {
        let bytes = read_key_line(
            path,
            PUBLIC_TAG,
            SECRET_TAG,
            "is a secret key; give the public key (PATH.pub) to trust it",
        )?;
        let key =
            ed25519_dalek::VerifyingKey::from_bytes(&bytes).map_err(|_| RepoError::KeyFormat {
                path: path.to_path_buf(),
                message: "not a valid ed25519 public key".to_string(),
            })?;
        Ok(PublicKey { key })
    }

    /// The key id: the first 16 hex digits of the sha256 of the 32-byte key.
    pub fn id(&self) -> String {
        hex::encode(&Sha256::digest(self.key.as_bytes())[..8])
    }
}

/// The paths [`keygen`] wrote.
#[derive(Clone, Debug)]
pub struct KeyFiles {
    /// The secret key (mode 0600).
    pub secret: PathBuf,
    /// The public key (`PATH.pub`).
    pub public: PathBuf,
    /// The key id.
    pub id: String,
}

/// Writes a new ed25519 keypair: the secret key to `path` (mode 0600 on Unix) and the public
/// key to `path.pub`. Refuses to overwrite either file.
pub fn keygen(path: &Path) -> Result<KeyFiles> {
    let mut public_path = path.as_os_str().to_owned();
    public_path.push(".pub");
    let public_path = PathBuf::from(public_path);
    for p in [path, public_path.as_path()] {
        if p.symlink_metadata().is_ok() {
            return Err(RepoError::KeyExists {
                path: p.to_path_buf(),
            });
        }
    }
    let key = SigningKey::generate()?;
    let public = key.public();
    let create = |p: &Path, mode: u32| {
        let mut o = fs::OpenOptions::new();
        o.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut o, mode);
        #[cfg(not(unix))]
        let _ = mode;
        o.open(p).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                RepoError::KeyExists {
                    path: p.to_path_buf(),
                }
            } else {
                io_err(p, "create key file")(e)
            }
        })
    };
    let mut f = create(path, 0o600)?;
    let line = format!("{SECRET_TAG} {}\n", BASE64.encode(key.key.to_bytes()));
    f.write_all(line.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(io_err(path, "write key file"))?;
    let mut f = create(&public_path, 0o644)?;
    let line = format!("{PUBLIC_TAG} {}\n", BASE64.encode(public.key.as_bytes()));
    f.write_all(line.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(io_err(&public_path, "write key file"))?;
    Ok(KeyFiles {
        secret: path.to_path_buf(),
        public: public_path,
        id: public.id(),
    })
}

/// Which signatures [`Repository::load`] requires. With no keys (the default) no signature is
/// required or checked; with keys, every module must carry a valid signature by one of them.
#[derive(Clone, Debug, Default)]
pub struct Trust {
    keys: Vec<PublicKey>,
}

impl Trust {
    /// No signature required.
    pub fn none() -> Trust {
        Trust::default()
    }

    /// Requires a valid signature by one of `keys` (if `keys` is empty, none is required).
    pub fn keys(keys: Vec<PublicKey>) -> Trust {
        Trust { keys }
    }

    /// Reads each public key file and trusts them.
    pub fn load(paths: &[PathBuf]) -> Result<Trust> {
        Ok(Trust {
            keys: paths
                .iter()
                .map(|p| PublicKey::load(p))
                .collect::<Result<_>>()?,
        })
    }

    /// Whether signatures are required.
    pub fn requires_signatures(&self) -> bool {
        !self.keys.is_empty()
    }

    fn ids(&self) -> String {
        self.keys
            .iter()
            .map(PublicKey::id)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Checks `entry`'s signature for `name@version` against the trusted keys.
    fn check(&self, name: &str, version: &Version, entry: &Entry) -> Result<()> {
        if self.keys.is_empty() {
            return Ok(());
        }
        let module = format!("{name}@{version}");
        let (Some(sig), Some(key_id)) = (&entry.signature, &entry.key_id) else {
            return Err(RepoError::Unsigned {
                module,
                trusted: self.ids(),
            });
        };
        let Some(key) = self.keys.iter().find(|k| &k.id() == key_id) else {
            return Err(RepoError::UntrustedKey {
                module,
                key_id: key_id.clone(),
                trusted: self.ids(),
            });
        };
        let bad = || RepoError::BadSignature {
            module: module.clone(),
            key_id: key_id.clone(),
        };
        let sig = BASE64.decode(sig).map_err(|_| bad())?;
        let sig = Signature::from_slice(&sig).map_err(|_| bad())?;
        let digest = hex::decode(&entry.sha256).map_err(|_| bad())?;
        key.key
            .verify_strict(&signed_message(name, version, &digest), &sig)
            .map_err(|_| bad())
    }
}

fn signed_message(name: &str, version: &Version, digest: &[u8]) -> Vec<u8> {
    let mut m = SIGNATURE_DOMAIN.to_vec();
    m.extend_from_slice(name.as_bytes());
    m.push(0);
    m.extend_from_slice(version.to_string().as_bytes());
    m.push(0);
    m.extend_from_slice(digest);
    m
}

// ---------------------------------------------------------------------------------------------
// The index
// ---------------------------------------------------------------------------------------------

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

/// Why [`open_regular`] refused a file.
enum OpenError {
    Io(io::Error),
    /// What the file is instead (`a FIFO`, `a directory`, ...).
    NotAFile(&'static str),
}

/// Opens `path` for reading if it is a regular file, and returns it with its size. The type is
/// checked before opening (so a FIFO is never opened by a reader) and again on the open file
/// (so a file swapped for a FIFO in between is refused too); on Unix the open itself does not
/// block (`O_NONBLOCK`), whatever is there.
fn open_regular(path: &Path) -> Result<(fs::File, u64), OpenError> {
    let meta = fs::metadata(path).map_err(OpenError::Io)?;
    if !meta.is_file() {
        return Err(OpenError::NotAFile(file_kind(&meta.file_type())));
    }
    let mut options = fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = options.open(path).map_err(OpenError::Io)?;
    let meta = file.metadata().map_err(OpenError::Io)?;
    if !meta.is_file() {
        return Err(OpenError::NotAFile(file_kind(&meta.file_type())));
    }
    Ok((file, meta.len()))
}

/// `a FIFO`, `a directory`, ... for a file that is not a regular file.
fn file_kind(t: &fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
    }
    if t.is_dir() {
        "a directory"
    } else {
        "a special file"
    }
}

/// Reads the module file given to [`Repository::add`]: a regular file or a pipe, at most
/// [`MAX_MODULE_SIZE`] bytes. A directory or a device (`/dev/zero`) is refused before reading.
fn read_module_file(path: &Path) -> Result<Vec<u8>> {
    let bad = |message: String| RepoError::NotWasm {
        path: path.to_path_buf(),
        message,
    };
    let meta = fs::metadata(path).map_err(io_err(path, "read"))?;
    #[cfg(unix)]
    let pipe = std::os::unix::fs::FileTypeExt::is_fifo(&meta.file_type());
    #[cfg(not(unix))]
    let pipe = false;
    if meta.is_dir() {
        return Err(bad("is a directory".to_string()));
    }
    if !meta.is_file() && !pipe {
        return Err(bad(format!(
            "is {}, not a file",
            file_kind(&meta.file_type())
        )));
    }
    let file = fs::File::open(path).map_err(io_err(path, "read"))?;
    let mut bytes = Vec::new();
    io::Read::read_to_end(&mut io::Read::take(file, MAX_MODULE_SIZE + 1), &mut bytes)
        .map_err(io_err(path, "read"))?;
    if bytes.len() as u64 > MAX_MODULE_SIZE {
        return Err(bad(format!(
            "larger than {MAX_MODULE_SIZE} bytes, the largest module the repository takes"
        )));
    }
    Ok(bytes)
}

/// Refuses anything but a valid core WebAssembly module.
fn validate_module(path: &Path, bytes: &[u8]) -> Result<()> {
    let bad = |message: String| RepoError::NotWasm {
        path: path.to_path_buf(),
        message,
    };
    if wasmparser::Parser::is_component(bytes) {
        return Err(bad(
            "is a WebAssembly component; the repository holds core modules".to_string(),
        ));
    }
    if !wasmparser::Parser::is_core_wasm(bytes) {
        return Err(bad(
            "no WebAssembly module header (\\0asm, version 1)".to_string()
        ));
    }
    wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all())
        .validate_all(bytes)
        .map(drop)
        .map_err(|e| bad(e.to_string()))
}

/// Writes `bytes` to a temporary file in `dir`, flushes it and renames it to `target`.
fn atomic_write(dir: &Path, target: &Path, bytes: &[u8], read_only: bool) -> Result<()> {
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp")
        .tempfile_in(dir)
        .map_err(io_err(dir, "create a temporary file in"))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(io_err(tmp.path(), "write"))?;
    if read_only {
        let mut perms = tmp
            .as_file()
            .metadata()
            .map_err(io_err(tmp.path(), "stat"))?
            .permissions();
        perms.set_readonly(true);
        tmp.as_file()
            .set_permissions(perms)
            .map_err(io_err(tmp.path(), "set permissions of"))?;
    }
    tmp.persist(target)
        .map_err(|e| io_err(target, "rename into place")(e.error))?;
    Ok(())
}
