//! `cargo run -p wasmlink-xtask -- <command>`: developer tasks for wasmlink.

use std::error::Error as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use wasmlink_xtask::{
    CorpusEntry, Error, default_corpus_dir, ensure_corpus, extract_wheel, verify_corpus,
};

const USAGE: &str = "\
usage: xtask <command>

commands:
  corpus [--dir DIR] [--verify]
      make sure DIR (default: target/corpus in the workspace, or $WASMLINK_CORPUS_DIR)
      holds the componentize-py 0.25.1 dylink.0 libraries, downloading the wheel with
      `python3 -m pip` (or $WASMLINK_PYTHON) if needed, and CPython 3.14's standard library
      (DIR/python/lib/python3.14, for `wasmlink python`); --verify re-hashes every library
  cflags KIND
      print the clang-19 flags the C fixtures are built with (one table, shared with the
      tests, benchmarks and examples), space-separated; KIND is compile, cxx, shared, pie
      or pie-any-main
  scan WHEEL
      list the dylink.0 modules embedded in a componentize-py wheel, without pinning
      anything (useful when moving to a new componentize-py release)
  help
      print this message
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["corpus", rest @ ..] => corpus(rest),
        ["scan", wheel] => scan(wheel),
        ["cflags", kind] => match wasmlink_xtask::cflags::named(kind) {
            Some(flags) => {
                println!("{}", flags.join(" "));
                return ExitCode::SUCCESS;
            }
            None => {
                return usage_error(&format!(
                    "unknown cflags kind {kind:?} (expected one of {})",
                    wasmlink_xtask::cflags::KINDS.join(", ")
                ));
            }
        },
        ["help" | "--help" | "-h"] => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => return usage_error("expected a command"),
    };
    match result {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprint!("error: {e}");
            let mut source = e.source();
            while let Some(cause) = source {
                eprint!(": {cause}");
                source = cause.source();
            }
            eprintln!();
            ExitCode::FAILURE
        }
        Err(message) => usage_error(&message),
    }
}

fn usage_error(message: &str) -> ExitCode {
    eprintln!("error: {message}\n\n{USAGE}");
    ExitCode::from(2)
}

/// `corpus [--dir DIR] [--verify]`. The outer error is a usage error.
fn corpus(mut args: &[&str]) -> Result<Result<(), Error>, String> {
    let mut dir = None;
    let mut verify = false;
    while let Some((&arg, rest)) = args.split_first() {
        args = rest;
        match arg {
            "--dir" => {
                let (&value, rest) = args.split_first().ok_or("--dir needs a value")?;
                dir = Some(PathBuf::from(value));
                args = rest;
            }
            "--verify" => verify = true,
            other => match other.strip_prefix("--dir=") {
                Some(value) => dir = Some(PathBuf::from(value)),
                None => return Err(format!("unknown argument to corpus: {other}")),
            },
        }
    }
    let dir = dir.unwrap_or_else(default_corpus_dir);

    Ok((|| {
        let start = Instant::now();
        let mut entries = ensure_corpus(&dir)?;
        let ready = start.elapsed();
        if verify {
            entries = verify_corpus(&dir)?;
        }
        print_entries(&entries);
        println!("corpus ready in {} ({ready:.2?})", dir.display());
        let start = Instant::now();
        let pylib = wasmlink_xtask::pylib::ensure_pylib(&dir)?;
        println!(
            "python standard library ready in {} ({} files, {:.2?})",
            pylib.stdlib.display(),
            pylib.files,
            start.elapsed()
        );
        if verify {
            println!(
                "all {} libraries verified ({:.2?})",
                entries.len(),
                start.elapsed() - ready
            );
        }
        Ok(())
    })())
}

/// `scan WHEEL`.
fn scan(wheel: &str) -> Result<Result<(), Error>, String> {
    Ok(extract_wheel(wheel.as_ref()).map(|libraries| {
        for lib in &libraries {
            println!(
                "{}  {:>9}  {:<36} {:?} at {:#x}",
                lib.sha256,
                lib.bytes.len(),
                lib.name,
                lib.encoding,
                lib.offset
            );
        }
        println!("{} dylink.0 modules", libraries.len());
    }))
}

fn print_entries(entries: &[CorpusEntry]) {
    for entry in entries {
        println!("{}  {:>9}  {}", entry.sha256, entry.size, entry.name);
    }
}
