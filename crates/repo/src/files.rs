//! Reading and writing the repository's files: regular files only, bounded, atomic.

use std::fs;
use std::io::{self, Write};
use std::path::Path;

use crate::*;

/// Why [`open_regular`] refused a file.
pub(crate) enum OpenError {
    Io(io::Error),
    /// What the file is instead (`a FIFO`, `a directory`, ...).
    NotAFile(&'static str),
}

/// Opens `path` for reading if it is a regular file, and returns it with its size. The type is
/// checked before opening (so a FIFO is never opened by a reader) and again on the open file
/// (so a file swapped for a FIFO in between is refused too); on Unix the open itself does not
/// block (`O_NONBLOCK`), whatever is there.
pub(crate) fn open_regular(path: &Path) -> Result<(fs::File, u64), OpenError> {
    let meta = fs::metadata(path).map_err(OpenError::Io)?;
    if !meta.is_file() {
        return Err(OpenError::NotAFile(file_kind(&meta.file_type())));
    }
    let file = open_nonblocking(path).map_err(OpenError::Io)?;
    let meta = file.metadata().map_err(OpenError::Io)?;
    if !meta.is_file() {
        return Err(OpenError::NotAFile(file_kind(&meta.file_type())));
    }
    Ok((file, meta.len()))
}

/// Opens `path` for reading without blocking on what it is: on Unix with `O_NONBLOCK`, so a
/// FIFO (or a device) opens at once instead of waiting for a writer; the caller then looks at
/// the descriptor's metadata. Reads from a regular file are unaffected.
///
/// # Errors
/// What opening `path` returns.
pub fn open_nonblocking(path: &Path) -> io::Result<fs::File> {
    let mut options = fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    options.open(path)
}

/// `a FIFO`, `a directory`, ... for a file that is not a regular file.
pub(crate) fn file_kind(t: &fs::FileType) -> &'static str {
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

/// Reads a module file (the one given to [`Repository::add`], or a module named by path by
/// someone else, such as a cluster client): a regular file or a pipe, at most
/// [`MAX_MODULE_SIZE`] bytes. A directory or a device (`/dev/zero`) is refused before reading.
///
/// # Errors
/// [`RepoError::NotWasm`] naming the file for a directory, a device or a file that is too
/// large; [`RepoError::Io`] for one that cannot be read.
pub fn read_module_file(path: &Path) -> Result<Vec<u8>> {
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

/// Refuses anything but a valid core WebAssembly module or component.
pub(crate) fn validate_module(path: &Path, bytes: &[u8]) -> Result<()> {
    let bad = |message: String| RepoError::NotWasm {
        path: path.to_path_buf(),
        message,
    };
    if !wasmparser::Parser::is_core_wasm(bytes) && !wasmparser::Parser::is_component(bytes) {
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
pub(crate) fn atomic_write(dir: &Path, target: &Path, bytes: &[u8], read_only: bool) -> Result<()> {
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
