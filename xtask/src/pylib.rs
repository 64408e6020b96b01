//! The CPython 3.14 standard library that the componentize-py wheel embeds, for
//! `wasmlink python`.
//!
//! componentize-py's native extension carries the standard library as zstd-compressed tar
//! archives; the standard library proper (`os.py`, `json/`, `encodings/`, ...) is the largest.
//! [`ensure_pylib`] finds it, checks it against a pinned sha256 and unpacks it as
//! `DIR/python/lib/python3.14/`, the layout CPython's `getpath` expects under a home
//! (`PYTHONHOME=<guest path of DIR/python>`: its landmark is `lib/python3.14/os.py`).
//!
//! Like the libraries, the result is recognised cheaply (a stamp file naming the archive's hash
//! and its file count, written last), built under the corpus's lock beside `DIR`, assembled in a staging
//! directory and renamed into place, so a half-unpacked standard library is never visible.
//! Only regular files and directories with plain relative paths are unpacked; anything else in
//! the archive is a one-line error.

use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

use memchr::memmem;
use sha2::{Digest, Sha256};

use crate::scan::ZSTD_MAGIC;
use crate::{EXTENSION_MEMBER, Error};

/// Name of the directory, inside the corpus directory, that is CPython's home.
pub const PYTHON_HOME_DIR: &str = "python";

/// Where the standard library goes, relative to the home.
pub const STDLIB_SUBDIR: &str = "lib/python3.14";

/// Stamp file in the home, written last: `<archive sha256> <files>\n`.
pub const STAMP_FILE: &str = ".stdlib-stamp";

/// sha256 of the decompressed standard-library tar in the componentize-py 0.25.1 wheel.
pub const STDLIB_TAR_SHA256: &str =
    "2198e963c7c29aa626347c1c2418e69ac5836250be00bebd240232968a353535";

/// Number of regular files in that archive.
pub const STDLIB_FILES: usize = 708;

/// Cap on the decompressed size of one candidate archive (256 MiB).
pub const TAR_LIMIT: usize = 256 << 20;

/// The standard library of a ready home.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pylib {
    /// CPython's home (`DIR/python`).
    pub home: PathBuf,
    /// The standard library (`DIR/python/lib/python3.14`).
    pub stdlib: PathBuf,
    /// Number of files unpacked.
    pub files: usize,
}

/// The contents of [`STAMP_FILE`].
fn stamp(sha256: &str, files: usize) -> String {
    format!("{sha256} {files}\n")
}

/// The home under `corpus_dir` if its stamp matches the pinned archive. Cheap.
fn complete(corpus_dir: &Path, sha256: &str, files: usize) -> Option<Pylib> {
    let home = corpus_dir.join(PYTHON_HOME_DIR);
    let text = fs::read_to_string(home.join(STAMP_FILE)).ok()?;
    let stdlib = home.join(STDLIB_SUBDIR);
    (text == stamp(sha256, files) && stdlib.join("os.py").is_file()).then_some(Pylib {
        home,
        stdlib,
        files,
    })
}

/// Makes sure `corpus_dir/python` holds the standard library of the pinned wheel (downloading
/// the wheel next to `corpus_dir` if it is not cached there) and returns where it is.
pub fn ensure_pylib(corpus_dir: &Path) -> Result<Pylib, Error> {
    ensure_pylib_with(corpus_dir, STDLIB_TAR_SHA256, STDLIB_FILES, |cache_dir| {
        let wheel = crate::fetch_wheel(cache_dir)?;
        let extension = crate::read_extension(&wheel)?;
        find_stdlib_tar(&extension).ok_or_else(|| Error::StdlibMissing {
            path: wheel.join(EXTENSION_MEMBER),
        })
    })
}

/// [`ensure_pylib`] with the pins and the producer of the archive as parameters.
fn ensure_pylib_with(
    corpus_dir: &Path,
    sha256: &str,
    files: usize,
    produce: impl FnOnce(&Path) -> Result<Vec<u8>, Error>,
) -> Result<Pylib, Error> {
    if let Some(done) = complete(corpus_dir, sha256, files) {
        return Ok(done);
    }
    fs::create_dir_all(corpus_dir).map_err(|e| Error::io("create directory", corpus_dir, e))?;
    let (parent, dir_name) = crate::split_dir(corpus_dir)?;
    // The libraries' lock: a rebuild of the libraries replaces `corpus_dir` as a whole, so it
    // must not happen while the standard library is staged inside it.
    let _lock = crate::lock(&parent.join(format!(".{dir_name}.lock")))?;
    if let Some(done) = complete(corpus_dir, sha256, files) {
        return Ok(done);
    }
    let tar = produce(&parent)?;
    let actual = hex::encode(Sha256::digest(&tar));
    let source = corpus_dir.join(PYTHON_HOME_DIR);
    if actual != sha256 {
        return Err(Error::StdlibHashMismatch {
            path: source,
            expected: sha256.to_owned(),
            actual,
        });
    }

    let staging = tempfile::Builder::new()
        .prefix(&format!(".{PYTHON_HOME_DIR}.staging-"))
        .tempdir_in(corpus_dir)
        .map_err(|e| Error::io("create a staging directory in", corpus_dir, e))?;
    let stdlib = staging.path().join(STDLIB_SUBDIR);
    let unpacked = unpack(&tar, &stdlib)?;
    if unpacked != files {
        return Err(Error::BadArchive {
            path: source,
            reason: format!("it holds {unpacked} files, expected {files}"),
        });
    }
    let stamp_path = staging.path().join(STAMP_FILE);
    fs::write(&stamp_path, stamp(sha256, files)).map_err(|e| Error::io("write", &stamp_path, e))?;

    // A previous, incomplete or outdated home is moved into a directory removed on drop.
    let home = corpus_dir.join(PYTHON_HOME_DIR);
    let _trash = match fs::symlink_metadata(&home) {
        Ok(_) => {
            let trash = tempfile::Builder::new()
                .prefix(&format!(".{PYTHON_HOME_DIR}.old-"))
                .tempdir_in(corpus_dir)
                .map_err(|e| Error::io("create a directory in", corpus_dir, e))?;
            fs::rename(&home, trash.path().join(PYTHON_HOME_DIR))
                .map_err(|e| Error::io("move aside", &home, e))?;
            Some(trash)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io("inspect", &home, e)),
    };
    fs::rename(staging.path(), &home)
        .map_err(|e| Error::io("rename the staging directory to", &home, e))?;
    complete(corpus_dir, sha256, files).ok_or_else(|| Error::BadCorpusDir {
        path: home,
        reason: "the standard library written there is not complete".to_owned(),
    })
}

/// The largest zstd frame in `blob` that decompresses (completely, to at most [`TAR_LIMIT`]
/// bytes) to a POSIX tar archive holding `os.py`.
pub fn find_stdlib_tar(blob: &[u8]) -> Option<Vec<u8>> {
    let mut best: Option<Vec<u8>> = None;
    for offset in memmem::find_iter(blob, &ZSTD_MAGIC) {
        let Some(tar) = decompress_tar(&blob[offset..], TAR_LIMIT) else {
            continue;
        };
        if best.as_ref().is_none_or(|b| tar.len() > b.len()) && has_os_py(&tar) {
            best = Some(tar);
        }
    }
    best
}

/// Decompresses the zstd frame at the start of `frame` if its output is a ustar archive.
fn decompress_tar(frame: &[u8], limit: usize) -> Option<Vec<u8>> {
    let decoder = zstd::stream::read::Decoder::with_buffer(frame)
        .ok()?
        .single_frame();
    let mut reader = decoder.take(u64::try_from(limit).ok()?.saturating_add(1));
    let mut out = vec![0; 512];
    reader.read_exact(&mut out).ok()?;
    if &out[257..262] != b"ustar" {
        return None;
    }
    reader.read_to_end(&mut out).ok()?;
    (out.len() <= limit).then_some(out)
}

/// Whether the archive has an `os.py` at its top level (the standard library's landmark).
fn has_os_py(tar: &[u8]) -> bool {
    let mut archive = tar::Archive::new(tar);
    let Ok(entries) = archive.entries() else {
        return false;
    };
    entries.filter_map(Result::ok).any(|e| {
        e.path().is_ok_and(|p| {
            p.components()
                .filter(|c| *c != Component::CurDir)
                .eq([Component::Normal("os.py".as_ref())])
        })
    })
}

/// Unpacks the regular files and directories of `tar` under `dest`; returns the file count.
/// Paths must be relative and plain (no `..`, no root); any other entry kind is an error.
fn unpack(tar: &[u8], dest: &Path) -> Result<usize, Error> {
    let bad = |reason: String| Error::BadArchive {
        path: dest.to_owned(),
        reason,
    };
    fs::create_dir_all(dest).map_err(|e| Error::io("create directory", dest, e))?;
    let mut archive = tar::Archive::new(tar);
    let entries = archive
        .entries()
        .map_err(|e| bad(format!("unreadable archive: {e}")))?;
    let mut files = 0;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("unreadable entry: {e}")))?;
        let raw = entry
            .path()
            .map_err(|e| bad(format!("entry with a bad path: {e}")))?
            .into_owned();
        let mut relative = PathBuf::new();
        for component in raw.components() {
            match component {
                Component::Normal(part) => relative.push(part),
                Component::CurDir => {}
                _ => {
                    return Err(bad(format!(
                        "entry {} is not a plain relative path",
                        raw.display()
                    )));
                }
            }
        }
        let path = dest.join(&relative);
        match entry.header().entry_type() {
            tar::EntryType::Directory => {
                fs::create_dir_all(&path).map_err(|e| Error::io("create directory", &path, e))?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if relative.as_os_str().is_empty() {
                    return Err(bad("a file entry with an empty path".to_owned()));
                }
                if let Some(dir) = path.parent() {
                    fs::create_dir_all(dir).map_err(|e| Error::io("create directory", dir, e))?;
                }
                let mut out = fs::File::create(&path).map_err(|e| Error::io("create", &path, e))?;
                io::copy(&mut entry, &mut out).map_err(|e| Error::io("write", &path, e))?;
                files += 1;
            }
            // Metadata records that the tar crate reads for us (long names, pax headers).
            tar::EntryType::XHeader | tar::EntryType::XGlobalHeader => {}
            other => {
                return Err(bad(format!(
                    "entry {} is a {other:?}, not a file or directory",
                    raw.display()
                )));
            }
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut header = tar::Header::new_ustar();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            builder.append_data(&mut header, path, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn the_largest_tar_with_os_py_is_found() {
        let small = tar_of(&[("os.py", b"small")]);
        let large = tar_of(&[("os.py", b"x"), ("json/__init__.py", &[b'y'; 4000])]);
        let larger_without_os = tar_of(&[("other.py", &[b'z'; 9000])]);
        let mut blob = b"junk".to_vec();
        for t in [&small, &large, &larger_without_os] {
            blob.extend(zstd::encode_all(&t[..], 1).unwrap());
            blob.extend_from_slice(b"\xff padding");
        }
        blob.extend(zstd::encode_all(&b"not a tar"[..], 1).unwrap());
        assert_eq!(find_stdlib_tar(&blob).unwrap(), large);
        assert!(find_stdlib_tar(b"nothing here").is_none());
    }

    #[test]
    fn unpack_is_idempotent_and_pinned() {
        let tmp = tempfile::tempdir().unwrap();
        let corpus = tmp.path().join("corpus");
        let tar = tar_of(&[("os.py", b"import sys"), ("json/__init__.py", b"")]);
        let sha = hex::encode(Sha256::digest(&tar));
        let mut builds = 0;
        for _ in 0..2 {
            let lib = ensure_pylib_with(&corpus, &sha, 2, |_| {
                builds += 1;
                Ok(tar.clone())
            })
            .unwrap();
            assert_eq!(lib.stdlib, corpus.join("python/lib/python3.14"));
            assert_eq!(fs::read(lib.stdlib.join("os.py")).unwrap(), b"import sys");
            assert!(lib.stdlib.join("json/__init__.py").is_file());
        }
        assert_eq!(builds, 1);
        // A damaged stamp rebuilds.
        fs::write(corpus.join("python").join(STAMP_FILE), "x").unwrap();
        ensure_pylib_with(&corpus, &sha, 2, |_| {
            builds += 1;
            Ok(tar.clone())
        })
        .unwrap();
        assert_eq!(builds, 2);
        // Nothing but the home is left in the corpus directory.
        let names: Vec<_> = fs::read_dir(&corpus)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["python"]);

        // A different archive than pinned is refused, naming both hashes.
        let err = ensure_pylib_with(&tmp.path().join("c2"), &sha, 2, |_| {
            Ok(tar_of(&[("os.py", b"")]))
        })
        .unwrap_err();
        assert!(err.to_string().contains(&sha), "{err}");
    }

    #[test]
    fn hostile_entries_are_one_line_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(0);
        header.set_entry_type(tar::EntryType::Symlink);
        builder
            .append_link(&mut header, "os.py", "/etc/passwd")
            .unwrap();
        let link = builder.into_inner().unwrap();
        let err = unpack(&link, tmp.path()).unwrap_err().to_string();
        assert!(err.contains("os.py") && err.contains("Symlink"), "{err}");
        assert!(!err.contains('\n'));

        let mut raw = tar_of(&[("abc.py", b"")]);
        raw[..6].copy_from_slice(b"../x\0\0");
        // The checksum no longer matches: the tar crate rejects the header.
        let err = unpack(&raw, tmp.path()).unwrap_err().to_string();
        assert!(!err.contains('\n'), "{err}");
        let mut header = tar::Header::new_gnu();
        header.as_old_mut().name[..7].copy_from_slice(b"../evil");
        header.set_size(0);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        let mut evil = header.as_bytes().to_vec();
        evil.extend_from_slice(&[0; 1024]);
        let err = unpack(&evil, &tmp.path().join("d"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("../evil"), "{err}");
        assert!(!tmp.path().join("evil").exists());
    }
}
