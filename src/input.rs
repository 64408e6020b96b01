//! Reading a module named on the command line, with one-line errors that name the file.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use wasmlink_dylink::ModuleInfo;

/// An error the CLI prints as `wasmlink: ...` before exiting with [`CliError::exit_code`].
#[derive(Debug)]
pub enum CliError {
    /// The input is missing or not a valid module: exit 2.
    Input { path: PathBuf, message: String },
    /// Anything else, already formatted: exit 2.
    Other(String),
}

impl CliError {
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(2)
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::Input { path, message } => write!(f, "{}: {message}", path.display()),
            CliError::Other(m) => f.write_str(m),
        }
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::Other(e.to_string())
    }
}

/// An I/O error as a lowercase message (`no such file or directory`).
pub fn io_message(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        std::io::ErrorKind::IsADirectory => "is a directory, not a WebAssembly module".to_string(),
        _ => {
            let s = e.to_string();
            // "Is a directory (os error 21)" -> "is a directory (os error 21)"
            let mut c = s.chars();
            c.next()
                .map(|f| f.to_lowercase().collect::<String>() + c.as_str())
                .unwrap_or(s)
        }
    }
}

/// The largest module file the CLI reads: 256 MiB (the largest real library we know of,
/// CPython's, is 9 MB). A bound so that `/dev/zero` or an endless pipe named as a module is an
/// error, not memory exhaustion.
pub const MAX_MODULE_BYTES: u64 = 256 << 20;

/// Reads the file (or device, or pipe) at `path`, up to [`MAX_MODULE_BYTES`].
pub fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let too_big = || {
        std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!(
                "larger than the {} MiB a module may be",
                MAX_MODULE_BYTES >> 20
            ),
        )
    };
    let file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    if meta.is_file() && meta.len() > MAX_MODULE_BYTES {
        return Err(too_big());
    }
    let mut bytes = Vec::new();
    file.take(MAX_MODULE_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_MODULE_BYTES {
        return Err(too_big());
    }
    Ok(bytes)
}

/// Reads and parses the module at `path`.
pub fn read_module(path: &Path) -> Result<(Vec<u8>, ModuleInfo), CliError> {
    let err = |message: String| CliError::Input {
        path: path.to_path_buf(),
        message,
    };
    if path.is_dir() {
        return Err(err("is a directory, not a WebAssembly module".to_string()));
    }
    let bytes = read_bounded(path).map_err(|e| err(io_message(&e)))?;
    let info = ModuleInfo::parse(&bytes).map_err(|e| err(e.to_string()))?;
    Ok((bytes, info))
}

/// Runs `one` on each of `files`, as binutils do with several files: a `FILE:` header before
/// each file's text (`headers`, and only with several files; JSON gets one document per file, in
/// order); a file that fails is reported on stderr and the others still run; the exit status is
/// the first failure's, else 0.
pub fn each_file(
    files: &[PathBuf],
    headers: bool,
    mut one: impl FnMut(&std::path::Path) -> Result<ExitCode, CliError>,
) -> Result<ExitCode, CliError> {
    if let [file] = files {
        return one(file);
    }
    let mut status = ExitCode::SUCCESS;
    for file in files {
        if headers {
            crate::output::print(&format!(
                "\n{}:\n",
                crate::output::escape(&file.display().to_string())
            ))?;
        }
        let code = one(file).unwrap_or_else(|e| {
            crate::output::error(&e);
            e.exit_code()
        });
        if code != ExitCode::SUCCESS && status == ExitCode::SUCCESS {
            status = code;
        }
    }
    Ok(status)
}
