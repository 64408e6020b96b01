//! The CLI against hostile conditions: output that fails, output files, guest text on the
//! terminal, endless inputs, exit statuses (issue 13).

use crate::cli::{ok, run};
use crate::support::{self, stderr};
use std::path::Path;
use std::process::{Command, Output, Stdio};

// ---------------------------------------------------------------------------------------------
// Output that can fail, output files, guest text on the terminal (issue 13, items 7, 8, 11)
// ---------------------------------------------------------------------------------------------

/// A plugin in WAT: `add(a, b)`, and two byte functions of the exchange ABI (docs/abi.md):
/// `echo` returns its input, `fail` returns an error message full of terminal controls; `trap`
/// traps.
const PLUGIN_WAT: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "wasmlink_abi_version") (result i32) i32.const 1)
  (func (export "wasmlink_alloc") (param i32 i32) (result i32) i32.const 4096)
  (func (export "wasmlink_free") (param i32 i32 i32))
  (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)
  (func (export "trap") unreachable)
  (data (i32.const 64) "\01\00\00\00\00\02\00\00\27\00\00\00\00\00\00\00")
  (data (i32.const 512) "bad\0aerror: everything ok\1b]0;pwned\07\0d\00\e2\80\ae")
  (func (export "fail") (param i32 i32) (result i32) i32.const 64)
  (func (export "echo") (param i32 i32) (result i32)
    (i32.store (i32.const 128) (i32.const 0))
    (i32.store (i32.const 132) (local.get 0))
    (i32.store (i32.const 136) (local.get 1))
    (i32.store (i32.const 140) (i32.const 0))
    i32.const 128)
)"#;

/// A directory holding `plugin.wat` ([`PLUGIN_WAT`]) and `in.txt`.
fn plugin_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("plugin.wat"), PLUGIN_WAT).unwrap();
    std::fs::write(d.path().join("in.txt"), "some input bytes\n").unwrap();
    d
}

/// `wasmlink ARGS` in `dir` with stdout going to `stdout`.
fn wasmlink_to(dir: &Path, args: &[&str], stdout: Stdio) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wasmlink"))
        .args(args)
        .current_dir(dir)
        .env_remove("WASMLINK_REPO")
        .stdout(stdout)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

fn dev_full() -> Stdio {
    Stdio::from(
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .expect("/dev/full"),
    )
}

#[test]
fn stdout_that_fails_is_one_error_line_and_exit_2() {
    let d = plugin_dir();
    std::fs::write(d.path().join("p.toml"), "[limits]\nmemory = \"16MiB\"\n").unwrap();
    let lib = support::base_set().0;
    let lib = lib.to_str().unwrap();
    let repo = d.path().join("repo");
    let repo = repo.to_str().unwrap();
    for args in [
        &["call", "plugin.wat", "add", "2", "3"][..],
        &["call", "--input", "in.txt", "plugin.wat", "echo"],
        &["policy", "schema"],
        &["policy", "check", "p.toml"],
        &["nm", lib],
        &["inspect", "--json", lib],
        &["repo", "--repo", repo, "list", "--json"],
        &["keygen", "key"],
    ] {
        let o = wasmlink_to(d.path(), args, dev_full());
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert_eq!(
            err, "wasmlink: cannot write to stdout: no space left on device (os error 28)\n",
            "{args:?}"
        );
    }
}

#[test]
fn a_closed_stdout_pipe_is_not_an_error() {
    let d = plugin_dir();
    for args in [
        &["call", "plugin.wat", "add", "2", "3"][..],
        &["call", "--input", "in.txt", "plugin.wat", "echo"],
        &["policy", "schema"],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wasmlink"))
            .args(args)
            .current_dir(d.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
        assert_eq!(stderr(&o), "", "{args:?}");
    }
}

#[test]
fn a_failing_stderr_is_not_a_panic() {
    let d = plugin_dir();
    for (args, code) in [
        (&["nm", "missing.wasm"][..], 2),
        (&["call", "plugin.wat", "trap"], 1),
        (&["call", "plugin.wat", "add", "x", "1"], 2),
    ] {
        let o = Command::new(env!("CARGO_BIN_EXE_wasmlink"))
            .args(args)
            .current_dir(d.path())
            .stdout(Stdio::null())
            .stderr(dev_full())
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(code), "{args:?}");
    }
}

#[test]
fn call_output_goes_to_stdout_with_a_dash() {
    let d = plugin_dir();
    let o = wasmlink_to(
        d.path(),
        &["call", "--input", "in.txt", "-o", "-", "plugin.wat", "echo"],
        Stdio::piped(),
    );
    assert_eq!(ok(&o, "call -o -"), "some input bytes\n");
    assert!(!d.path().join("-").exists());
}

#[cfg(unix)]
#[test]
fn call_output_is_created_with_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let d = plugin_dir();
    for (umask, mode) in [("002", 0o664), ("022", 0o644), ("077", 0o600)] {
        let o = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "umask {umask} && exec \"$0\" call --input in.txt -o out.bin plugin.wat echo"
            ))
            .arg(env!("CARGO_BIN_EXE_wasmlink"))
            .current_dir(d.path())
            .output()
            .unwrap();
        ok(&o, "call -o out.bin");
        let out = d.path().join("out.bin");
        assert_eq!(std::fs::read(&out).unwrap(), b"some input bytes\n");
        let got = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
        assert_eq!(got, mode, "umask {umask}: mode {got:o}");
        std::fs::remove_file(&out).unwrap();
    }
}

#[cfg(unix)]
#[test]
fn call_output_never_replaces_a_special_file() {
    use std::os::unix::fs::FileTypeExt;
    let d = plugin_dir();
    let fifo = d.path().join("fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    std::fs::create_dir(d.path().join("dir")).unwrap();
    std::os::unix::fs::symlink("fifo", d.path().join("to-fifo")).unwrap();
    std::os::unix::fs::symlink("missing", d.path().join("dangling")).unwrap();
    for (target, says) in [
        ("fifo", "fifo: a FIFO, not a regular file"),
        ("to-fifo", "to-fifo: a FIFO, not a regular file"),
        ("dir", "dir: a directory, not a regular file"),
        (
            "dangling",
            "dangling: a symlink to a missing or unreachable file",
        ),
    ] {
        let o = wasmlink_to(
            d.path(),
            &[
                "call",
                "--input",
                "in.txt",
                "-o",
                target,
                "plugin.wat",
                "echo",
            ],
            Stdio::piped(),
        );
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{target}: {err}");
        assert!(
            err.starts_with("wasmlink: ") && err.contains(says),
            "{target}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
    assert!(d.path().join("dir").is_dir());
    assert!(
        std::fs::symlink_metadata(d.path().join("to-fifo"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(!d.path().join("missing").exists());
}

#[cfg(unix)]
#[test]
fn call_output_through_a_symlink_keeps_the_link() {
    let d = plugin_dir();
    std::fs::create_dir(d.path().join("real")).unwrap();
    std::fs::write(d.path().join("real/out.bin"), "old").unwrap();
    std::os::unix::fs::symlink("real/out.bin", d.path().join("link")).unwrap();
    let o = wasmlink_to(
        d.path(),
        &[
            "call",
            "--input",
            "in.txt",
            "-o",
            "link",
            "plugin.wat",
            "echo",
        ],
        Stdio::piped(),
    );
    ok(&o, "call -o link");
    let link = std::fs::symlink_metadata(d.path().join("link")).unwrap();
    assert!(link.file_type().is_symlink());
    assert_eq!(
        std::fs::read_to_string(d.path().join("real/out.bin")).unwrap(),
        "some input bytes\n"
    );
    // No temporary file is left beside the target.
    let names: Vec<_> = std::fs::read_dir(d.path().join("real"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["out.bin"]);
}

#[test]
fn guest_text_is_escaped_to_one_line() {
    let d = plugin_dir();
    let o = wasmlink_to(
        d.path(),
        &["call", "--input", "in.txt", "plugin.wat", "fail"],
        Stdio::piped(),
    );
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert_eq!(
        err,
        "wasmlink: plugin `plugin`: `fail` failed: bad\\nerror: everything ok\\x1b]0;pwned\\x07\\r\\0\\u{202e}\n"
    );
    // Export names reach the terminal too (in the list of available functions).
    let named = d.path().join("named.wat");
    std::fs::write(
        &named,
        "(module (func (export \"f\\0aerror: everything ok\\1b[2J\")))",
    )
    .unwrap();
    let o = wasmlink_to(d.path(), &["call", "named.wat", "g"], Stdio::piped());
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("f\\nerror: everything ok\\x1b[2J"), "{err}");
    assert!(!err.contains('\x1b'), "{err}");
}

#[test]
fn guest_stderr_is_escaped() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("p.toml"),
        "[stdio]\nstderr = \"capture\"\nstdout = \"capture\"\n",
    )
    .unwrap();
    std::fs::write(
        d.path().join("noisy.wat"),
        r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "\20\00\00\00\13\00\00\00")
  (data (i32.const 32) "log\1b]0;pwned\07\0dline\0a")
  (func (export "run") (result i32)
    (drop (call $w (i32.const 2) (i32.const 16) (i32.const 1) (i32.const 8)))
    (drop (call $w (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 8)))
    i32.const 7))"#,
    )
    .unwrap();
    let o = wasmlink_to(
        d.path(),
        &["call", "--policy", "p.toml", "noisy.wat", "run"],
        Stdio::piped(),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stderr(&o), "log\\x1b]0;pwned\\x07\\rline\n");
    // Its stdout, going to a pipe, is its data: passed through as it is.
    assert_eq!(o.stdout, b"log\x1b]0;pwned\x07\rline\n7\n");
}

#[test]
fn call_exit_statuses_match_its_help() {
    let d = plugin_dir();
    std::fs::write(d.path().join("text.wasm"), "not a module").unwrap();
    std::fs::write(d.path().join("junk.wasm"), b"\0asm\x01\0\0\0\xff").unwrap();
    for (args, code) in [
        (&["call", "missing.wasm", "f"][..], 2),
        (&["call", "text.wasm", "f"], 2),
        (&["call", "junk.wasm", "f"], 2),
        (&["call", "plugin.wat", "add", "2"], 2),
        (&["call", "plugin.wat", "add", "2", "x"], 2),
        (
            &["call", "--env", "NOEQUALS", "plugin.wat", "add", "1", "2"],
            2,
        ),
        (&["call", "--env", "=v", "plugin.wat", "add", "1", "2"], 2),
        (&["call", "plugin.wat", "trap"], 1),
        (&["call", "--input", "in.txt", "plugin.wat", "fail"], 1),
        (&["call", "plugin.wat", "add", "2", "3"], 0),
    ] {
        let o = wasmlink_to(d.path(), args, Stdio::piped());
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
        if code != 0 {
            assert!(err.starts_with("wasmlink: "), "{args:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        }
    }
}

#[test]
fn search_numbers_are_bounded_up_front() {
    // `--repeat` preallocated a vector of N timings: a huge N was a capacity-overflow panic.
    for (args, says) in [
        (
            &[
                "search",
                "--repeat",
                "18446744073709551615",
                "no-index",
                "q",
            ][..],
            "is not in 0..=1000000",
        ),
        (
            &["search", "-k", "18446744073709551615", "no-index", "q"],
            "is not in 1..=100000",
        ),
        (
            &["search", "-k", "0", "no-index", "q"],
            "is not in 1..=100000",
        ),
    ] {
        let o = support::wasmlink(args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

#[cfg(unix)]
#[test]
fn an_endless_file_as_a_module_is_an_error_not_a_hang() {
    // Read whole before the bound, /dev/zero grew until memory ran out.
    for cmd in ["nm", "inspect", "ldd", "run", "call"] {
        let mut args = vec![cmd, "/dev/zero"];
        if cmd == "call" {
            args.push("f");
        }
        let started = std::time::Instant::now();
        let o = support::wasmlink(&args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{cmd}: {err}");
        assert!(
            err.starts_with("wasmlink: /dev/zero: ") && err.contains("larger than the 256 MiB"),
            "{cmd}: {err}"
        );
        assert!(started.elapsed().as_secs() < 30, "{cmd}");
    }
}

#[cfg(unix)]
#[test]
fn call_input_larger_than_the_memory_limit_is_refused_before_it_is_read_whole() {
    let d = plugin_dir();
    for flag in ["--input", "--arrow"] {
        let o = wasmlink_to(
            d.path(),
            &[
                "call",
                "--max-memory",
                "1MiB",
                flag,
                "/dev/zero",
                "plugin.wat",
                "echo",
            ],
            Stdio::piped(),
        );
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{flag}: {err}");
        assert_eq!(
            err,
            "wasmlink: /dev/zero: larger than the module's 1 MiB memory limit (limits.memory, \
             --max-memory)\n",
            "{flag}"
        );
    }
}

#[test]
fn every_subcommand_documents_its_exit_statuses_in_plain_text() {
    for cmd in [
        &["inspect"][..],
        &["nm"],
        &["ldd"],
        &["run"],
        &["call"],
        &["policy"],
        &["repo"],
        &["keygen"],
        &["pipeline", "run"],
        &["index"],
        &["search"],
    ] {
        let mut args = cmd.to_vec();
        args.push("--help");
        let help = ok(&support::wasmlink(&args), &cmd.join(" "));
        assert!(
            help.contains("Exit status"),
            "{cmd:?} --help lacks its exit statuses"
        );
        assert!(
            !help.chars().any(|c| c.is_control() && c != '\n'),
            "{cmd:?} --help holds a control character"
        );
    }
}
#[test]
fn an_env_value_with_nul_is_refused() {
    let d = plugin_dir();
    std::fs::write(
        d.path().join("p.toml"),
        "[env]\nvars = { GREETING = \"hello\\u0000world\" }\n",
    )
    .unwrap();
    for args in [
        &["policy", "check", "p.toml"][..],
        &["call", "--policy", "p.toml", "plugin.wat", "add", "1", "2"],
    ] {
        let o = wasmlink_to(d.path(), args, Stdio::piped());
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains("GREETING") && err.contains("NUL"),
            "{args:?}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[test]
fn module_names_on_stdout_are_escaped_to_one_line() {
    let d = tempfile::tempdir().unwrap();
    let wasm = wat::parse_str(r#"(module (func (export "a\1b]0;x\07b\0aerror: ok")))"#).unwrap();
    std::fs::write(d.path().join("names.wasm"), wasm).unwrap();
    let out = ok(&run(d.path(), &["nm", "names.wasm"], &[]), "nm");
    assert_eq!(
        out,
        "00000000 T function a\\x1b]0;x\\x07b\\nerror: ok () -> ()\n"
    );
}

// ---------------------------------------------------------------------------------------------
// The CLI is glue (issue 12, item 5)
// ---------------------------------------------------------------------------------------------

#[test]
fn no_subcommand_file_imports_another_and_nothing_prints_directly() {
    let src = support::root().join("src");
    let commands: Vec<String> = std::fs::read_dir(src.join("commands"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "mod.rs")
        .map(|n| n.trim_end_matches(".rs").to_string())
        .collect();
    let mut files = vec![src.join("main.rs")];
    for dir in [src.clone(), src.join("commands")] {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "rs") && !files.contains(&p) {
                files.push(p);
            }
        }
    }
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let name = file.display();
        if file.parent().unwrap().ends_with("commands") {
            assert!(
                !text.contains("super::"),
                "{name} reaches into another subcommand"
            );
            for c in &commands {
                assert!(
                    !text.contains(&format!("commands::{c}")),
                    "{name} imports the `{c}` subcommand"
                );
            }
        }
        if !file.ends_with("output.rs") {
            // print!/eprintln! panic when the stream fails; src/output.rs handles it.
            for mac in ["print!(", "println!(", "eprint!(", "eprintln!("] {
                let direct = text
                    .match_indices(mac)
                    .any(|(i, _)| !text[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_'));
                assert!(!direct, "{name} uses {mac}: write through crate::output");
            }
        }
    }
    assert!(
        !std::fs::read_to_string(src.join("commands/index.rs"))
            .unwrap()
            .contains("fn native_index"),
        "the native comparison harness belongs in crates/search (wasmlink_search::native)"
    );
}

/// `/dev/zero` as a policy or pipeline file is a one-line error at the 1 MiB bound, not a read
/// that grows until memory runs out.
#[test]
fn an_endless_file_as_a_policy_or_pipeline_is_an_error_not_a_hang() {
    for args in [
        &["policy", "check", "/dev/zero"][..],
        &["pipeline", "run", "/dev/zero"][..],
    ] {
        let o = support::wasmlink(args);
        let err = stderr(&o);
        assert!(
            o.status.code().is_some_and(|c| c != 0 && c != 101),
            "{args:?}: {:?} {err}",
            o.status
        );
        assert!(
            err.contains("/dev/zero") && err.contains("larger than"),
            "{args:?}: {err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    }
}
