//! Everything `wasmlink` writes to stdout and stderr goes through this module.
//!
//! - **stdout** ([`print()`], [`print_bytes`]): written through a locked handle with the error
//!   handled. A closed pipe (`wasmlink nm x | head -1`) is not an error: the write is dropped
//!   and the command ends normally, as ripgrep does. Any other failure (`> /dev/full`: no space
//!   left on device) is one `wasmlink: cannot write to stdout: ...` line and exit status 2.
//! - **stderr** ([`error`], [`diag`], [`diag_text`], [`guest_stderr`]): best effort; a failing
//!   stderr is ignored (there is nowhere left to report it), never a panic.
//! - **Text that a module controls** (a guest's error message, trap text, captured output,
//!   symbol and file names read from a module) is escaped on its way to the terminal by
//!   [`escape`] (one line: every control character) or [`escape_lines`] (keeps `\n` and `\t`),
//!   so a guest can neither forge lines such as `wasmlink: everything ok` nor send terminal
//!   escape sequences (ESC, OSC, CR, NUL, bidirectional overrides). Every error line goes
//!   through [`error`] or [`diag`], which escape.
//!
//! Nothing in `src/` uses `print!`/`println!`/`eprint!`/`eprintln!`: those panic (exit 101)
//! when the stream fails.

use std::borrow::Cow;
use std::fmt::{Display, Write as _};
use std::io::{IsTerminal, Write};

use crate::input::{CliError, io_message};

/// Whether `c` is shown escaped: C0 and C1 control characters, DEL, and the Unicode
/// bidirectional and invisible formatting characters that can make text display as something
/// else (U+200B..U+200F, U+202A..U+202E, U+2066..U+2069, U+FEFF). Tab is kept when
/// `keep_tab`; newline is kept when `keep_newline`.
fn needs_escape(c: char, keep_newline: bool, keep_tab: bool) -> bool {
    match c {
        '\n' => !keep_newline,
        '\t' => !keep_tab,
        c if c.is_control() => true,
        '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => true,
        '\u{feff}' => true,
        _ => false,
    }
}

fn escape_with(s: &str, keep_newline: bool) -> Cow<'_, str> {
    if !s.chars().any(|c| needs_escape(c, keep_newline, true)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !needs_escape(c, keep_newline, true) {
            out.push(c);
            continue;
        }
        let _ = match c {
            '\n' => out.write_str("\\n"),
            '\r' => out.write_str("\\r"),
            '\0' => out.write_str("\\0"),
            c if (c as u32) < 0x80 => write!(out, "\\x{:02x}", c as u32),
            c => write!(out, "\\u{{{:x}}}", c as u32),
        };
    }
    Cow::Owned(out)
}

/// `s` as one line of terminal text: every control character (newline, CR, ESC, NUL, ...) and
/// every bidirectional override written as an escape (`\n`, `\r`, `\0`, `\x1b`, `\u{202e}`).
/// Tabs and all printable text are kept as they are.
pub fn escape(s: &str) -> Cow<'_, str> {
    escape_with(s, false)
}

/// As [`escape`], but newlines are kept: for multi-line text whose lines are its own
/// (captured output, a report table).
pub fn escape_lines(s: &str) -> Cow<'_, str> {
    escape_with(s, true)
}

fn stdout_error(e: &std::io::Error) -> CliError {
    CliError::Other(format!(
        "cannot write to stdout: {}",
        crate::input::io_message(e)
    ))
}

/// Writes `out` to stdout. A closed pipe is success (the rest of the output is dropped); any
/// other failure is an error (exit 2).
pub fn print_bytes(out: &[u8]) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(out).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(stdout_error(&e)),
        _ => Ok(()),
    }
}

/// [`print_bytes`] for text that wasmlink produced itself.
pub fn print(out: &str) -> Result<(), CliError> {
    print_bytes(out.as_bytes())
}

/// Writes `value` as one pretty-printed JSON document and a newline (the `--json` of every
/// command; the shapes are in docs/cli-json.md and docs/inspect-json.md).
pub fn print_json(value: &impl serde::Serialize) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| CliError::Other(format!("cannot write JSON: {e}")))?;
    print(&(text + "\n"))
}

/// Writes a guest's captured stdout: as it is when stdout is a file or a pipe (it is the
/// guest's data), escaped by [`escape_lines`] when stdout is a terminal.
pub fn guest_stdout(out: &[u8]) -> Result<(), CliError> {
    if out.is_empty() {
        return Ok(());
    }
    if std::io::stdout().is_terminal() {
        print(&escape_lines(&String::from_utf8_lossy(out)))
    } else {
        print_bytes(out)
    }
}

fn write_stderr(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes()).and_then(|()| err.flush());
}

/// Writes a guest's captured stderr, escaped by [`escape_lines`] (it is diagnostics text, and
/// may reach a terminal or a log), ending with a newline if it does not.
pub fn guest_stderr(out: &[u8]) {
    if out.is_empty() {
        return;
    }
    let text = String::from_utf8_lossy(out);
    let mut text = escape_lines(&text).into_owned();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    write_stderr(&text);
}

/// Writes `wasmlink: MESSAGE` (escaped to one line) to stderr: the one prefix of every
/// command's errors, as ld.so and binutils write theirs (`ld.so: ...`, `nm: ...`).
pub fn error(message: impl Display) {
    diag(format_args!("wasmlink: {message}"));
}

/// Writes one line (escaped to one line) to stderr.
pub fn diag(line: impl Display) {
    let line = line.to_string();
    write_stderr(&(escape(&line).into_owned() + "\n"));
}

/// Writes multi-line text (each line escaped by [`escape_lines`]) to stderr as it is.
pub fn diag_text(text: &str) {
    write_stderr(&escape_lines(text));
}

/// Writes `bytes` to `path` (`-` or none: stdout). A file is written beside its target and
/// renamed into place, so a failed run leaves no partial file; it is created with the umask's
/// permissions. A symlink is followed (the link stays a link); a target that is not a regular
/// file (a device, a FIFO, a socket, a directory) is refused, never replaced.
pub fn write_output(path: Option<&std::path::Path>, bytes: &[u8]) -> Result<(), CliError> {
    let Some(p) = path.filter(|p| p.as_os_str() != "-") else {
        return print_bytes(bytes);
    };
    let err = |m: String| CliError::Other(format!("{}: {m}", p.display()));
    let target = match std::fs::symlink_metadata(p) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => p.to_path_buf(),
        Err(e) => return Err(err(io_message(&e))),
        Ok(meta) => {
            let target = if meta.file_type().is_symlink() {
                std::fs::canonicalize(p).map_err(|e| {
                    err(format!(
                        "a symlink to a missing or unreachable file ({})",
                        io_message(&e)
                    ))
                })?
            } else {
                p.to_path_buf()
            };
            let meta = std::fs::metadata(&target).map_err(|e| err(io_message(&e)))?;
            if !meta.is_file() {
                return Err(err(format!(
                    "{}, not a regular file: --output writes only regular files (`-` for stdout)",
                    file_kind(&meta)
                )));
            }
            target
        }
    };
    replace_file(&target, ".wasmlink-output-", bytes).map_err(err)
}

/// Writes `bytes` to a temporary file beside `target` (named `PREFIX...`, created with the
/// umask's permissions), syncs it and renames it onto `target`, so a failed write leaves no
/// partial file. The error is the I/O message, for the caller to prefix with the path.
pub fn replace_file(target: &std::path::Path, prefix: &str, bytes: &[u8]) -> Result<(), String> {
    let dir = target
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // Created with mode 0666: open(2) applies the umask, as for any new file.
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let mut tmp = builder.tempfile_in(dir).map_err(|e| io_message(&e))?;
    tmp.write_all(bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| io_message(&e))?;
    tmp.persist(target).map_err(|e| io_message(&e.error))?;
    Ok(())
}

/// What a file is, for an error message.
fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_fifo() {
            return "a FIFO";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if meta.is_dir() {
        "a directory"
    } else {
        "a special file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_keeps_plain_text() {
        for s in [
            "",
            "plugin `m`: `f` failed: bad input",
            "tab\there",
            "é ü 日本",
        ] {
            assert!(matches!(escape(s), Cow::Borrowed(_)), "{s:?}");
        }
    }

    #[test]
    fn escape_makes_one_line_without_terminal_controls() {
        assert_eq!(
            escape("x\nerror: everything ok\r\x1b]0;pwned\x07\0\x7f\u{9b}\u{202e}"),
            "x\\nerror: everything ok\\r\\x1b]0;pwned\\x07\\0\\x7f\\u{9b}\\u{202e}"
        );
        assert_eq!(escape_lines("a\nb\x1b[2J\n"), "a\nb\\x1b[2J\n");
    }
}
