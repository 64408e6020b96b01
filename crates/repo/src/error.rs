//! The repository's typed errors.

use std::io;
use std::path::{Path, PathBuf};

use crate::*;

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

pub(crate) fn for_name(name: &Option<String>) -> String {
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

pub(crate) fn io_err<'a>(
    path: &'a Path,
    op: &'static str,
) -> impl FnOnce(io::Error) -> RepoError + 'a {
    move |source| RepoError::Io {
        path: path.to_path_buf(),
        op,
        source,
    }
}

// ---------------------------------------------------------------------------------------------
// Names, versions, references
// ---------------------------------------------------------------------------------------------
