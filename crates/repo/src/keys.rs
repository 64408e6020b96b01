//! ed25519 keys, key files and the trust a resolution requires.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer as _};

use sha2::{Digest, Sha256};

use crate::*;

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

pub(crate) fn read_key_line(
    path: &Path,
    tag: &str,
    other_tag: &str,
    hint: &str,
) -> Result<[u8; 32]> {
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

    pub(crate) fn sign(&self, message: &[u8]) -> Signature {
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

    pub(crate) fn ids(&self) -> String {
        self.keys
            .iter()
            .map(PublicKey::id)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Checks `entry`'s signature for `name@version` against the trusted keys.
    pub(crate) fn check(&self, name: &str, version: &Version, entry: &Entry) -> Result<()> {
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

pub(crate) fn signed_message(name: &str, version: &Version, digest: &[u8]) -> Vec<u8> {
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
