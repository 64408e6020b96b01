//! Composition (issue 15 item 4): `call --with DEP.wasm[:POLICY.toml]` satisfies a component's
//! imports with another component's exports at run time, each in its own store under its own
//! policy; `wasmlink compose` writes the same as one component file. Hostile dependencies (a
//! trap, an endless loop, the wrong type) give one line naming the dependency and the right
//! exit status; the main component's --timeout stops a dependency that loops.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::support::{self, stderr, stdout};

/// Writes `tests/fixtures/compose/NAME.wat`, compiled, as `NAME.wasm` in `dir`.
fn fixture(dir: &Path, name: &str) -> PathBuf {
    let src = support::fixtures_src().join(format!("compose/{name}.wat"));
    let text = std::fs::read_to_string(&src).unwrap();
    let bytes = wat::parse_str(&text).unwrap_or_else(|e| panic!("{name}.wat: {e}"));
    let path = dir.join(format!("{name}.wasm"));
    std::fs::write(&path, bytes).unwrap();
    path
}

fn setup(names: &[&str]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for n in names {
        fixture(d.path(), n);
    }
    d
}

fn w(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let o = support::wasmlink_in(args, Some(dir), &[]);
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(!err.contains("panicked"), "{err}");
    (o.status.code(), out, err)
}

/// One line on stderr, with the one prefix of every error.
fn one_line(err: &str) {
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("wasmlink: "), "{err}");
}

#[test]
fn with_satisfies_an_import_and_the_composed_file_gives_the_same_answers() {
    let d = setup(&["main", "text"]);
    let inputs = [
        ("\"hi\"", "\"HI\""),
        ("\"Hello, w\u{f6}rld 42\"", "\"HELLO, W\u{f6}RLD 42\""),
    ];
    for (arg, want) in inputs {
        let (code, out, err) = w(
            d.path(),
            &["call", "--with", "text.wasm", "main.wasm", "shout", arg],
        );
        assert_eq!(code, Some(0), "{err}");
        assert_eq!(out, format!("{want}\n"));
    }

    let (code, out, err) = w(
        d.path(),
        &["compose", "-o", "app.wasm", "main.wasm", "text.wasm"],
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "wasmlink:demo/text <- text.wasm\n");
    assert_eq!(err, "", "nothing is left over");
    let bytes = std::fs::read(d.path().join("app.wasm")).unwrap();
    // A component's preamble: the magic, version 0x0d, layer 1.
    assert_eq!(bytes[..8], *b"\0asm\x0d\0\x01\0");
    // No temporary file is left beside it.
    let names: Vec<String> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names.len(), 3, "{names:?}");
    for (arg, want) in inputs {
        let (code, out, err) = w(d.path(), &["call", "app.wasm", "shout", arg]);
        assert_eq!(code, Some(0), "{err}");
        assert_eq!(out, format!("{want}\n"));
    }
    // The composed component imports nothing: inspect lists no import of wasmlink:demo/text.
    let (code, out, _) = w(d.path(), &["inspect", "--json", "app.wasm"]);
    assert_eq!(code, Some(0));
    assert!(!out.contains("wasmlink:demo/text"), "{out}");

    let (code, out, err) = w(
        d.path(),
        &[
            "compose",
            "--json",
            "-o",
            "app2.wasm",
            "main.wasm",
            "text.wasm",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["format_version"], 1);
    assert_eq!(v["plugged"][0]["import"], "wasmlink:demo/text");
    assert_eq!(v["plugged"][0]["from"], "text.wasm");
    assert_eq!(v["imports"], serde_json::json!([]));
}

#[test]
fn a_trapping_dependency_is_one_line_naming_it_and_its_function() {
    let d = setup(&["main", "trap"]);
    let (code, out, err) = w(
        d.path(),
        &[
            "call",
            "--with",
            "trap.wasm",
            "main.wasm",
            "shout",
            "\"hi\"",
        ],
    );
    assert_eq!(code, Some(1), "as for a guest trap: {err}");
    assert_eq!(out, "");
    one_line(&err);
    assert!(
        err.starts_with("wasmlink: main.wasm: shout: trap.wasm: wasmlink:demo/text#upper: "),
        "{err}"
    );
    assert!(err.contains("unreachable"), "{err}");
}

#[test]
fn a_looping_dependency_is_stopped_by_the_main_components_timeout() {
    let d = setup(&["main", "loop"]);
    // The dependency inherits the main component's 300 ms.
    let start = Instant::now();
    let (code, _, err) = w(
        d.path(),
        &[
            "call",
            "--timeout",
            "300ms",
            "--with",
            "loop.wasm",
            "main.wasm",
            "shout",
            "\"hi\"",
        ],
    );
    assert_eq!(code, Some(1), "{err}");
    one_line(&err);
    assert!(
        err.starts_with("wasmlink: main.wasm: shout: loop.wasm: wasmlink:demo/text#upper: stopped"),
        "{err}"
    );
    assert!(err.contains("time limit"), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );

    // Its own policy says no time limit at all: the main component's deadline still stops it.
    std::fs::write(d.path().join("free.toml"), "[limits]\ntimeout = \"none\"\n").unwrap();
    let start = Instant::now();
    let (code, _, err) = w(
        d.path(),
        &[
            "call",
            "--timeout",
            "300ms",
            "--with",
            "loop.wasm:free.toml",
            "main.wasm",
            "shout",
            "\"hi\"",
        ],
    );
    assert_eq!(code, Some(1), "{err}");
    one_line(&err);
    assert!(
        err.ends_with(
            "loop.wasm: wasmlink:demo/text#upper: stopped by the time limit of the component that called it (--timeout)\n"
        ),
        "{err}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );

    // A shorter limit of its own stops it first, and is named as its own.
    std::fs::write(
        d.path().join("short.toml"),
        "[limits]\ntimeout = \"100ms\"\n",
    )
    .unwrap();
    let (code, _, err) = w(
        d.path(),
        &[
            "call",
            "--timeout",
            "20s",
            "--with",
            "loop.wasm:short.toml",
            "main.wasm",
            "shout",
            "\"hi\"",
        ],
    );
    assert_eq!(code, Some(1), "{err}");
    one_line(&err);
    assert!(err.contains("stopped after the 100ms time limit"), "{err}");
}

#[test]
fn a_dependency_of_the_wrong_type_is_refused_naming_the_interface() {
    let d = setup(&["main", "wrong"]);
    let (code, out, err) = w(
        d.path(),
        &[
            "call",
            "--with",
            "wrong.wasm",
            "main.wasm",
            "shout",
            "\"hi\"",
        ],
    );
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(out, "");
    one_line(&err);
    assert!(
        err.starts_with(
            "wasmlink: main.wasm: import wasmlink:demo/text does not match the export of wrong.wasm: upper: "
        ),
        "{err}"
    );
    assert!(err.contains("func(s: string) -> string"), "{err}");
    assert!(err.contains("func(n: u32) -> u32"), "{err}");

    let (code, out, err) = w(
        d.path(),
        &["compose", "-o", "app.wasm", "main.wasm", "wrong.wasm"],
    );
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(out, "");
    one_line(&err);
    assert!(
        err.starts_with(
            "wasmlink: main.wasm: import wasmlink:demo/text does not match the export of wrong.wasm: "
        ),
        "{err}"
    );
    assert!(!d.path().join("app.wasm").exists());
}

#[test]
fn an_unsatisfied_import_is_named_with_the_components_given() {
    let d = setup(&["main", "dirs_dep"]);
    let (code, _, err) = w(d.path(), &["call", "main.wasm", "shout", "\"hi\""]);
    assert_eq!(code, Some(2), "{err}");
    one_line(&err);
    assert_eq!(
        err,
        "wasmlink: main.wasm: import wasmlink:demo/text is not WASI 0.2 and no component given exports it (--with: none)\n"
    );
    let (code, _, err) = w(
        d.path(),
        &[
            "call",
            "--with",
            "dirs_dep.wasm",
            "main.wasm",
            "shout",
            "\"hi\"",
        ],
    );
    assert_eq!(code, Some(2), "{err}");
    one_line(&err);
    assert!(
        err.ends_with("import wasmlink:demo/text is not WASI 0.2 and no component given exports it (--with: dirs_dep.wasm)\n"),
        "{err}"
    );
}

#[test]
fn a_dependency_gets_no_directory_unless_its_own_policy_grants_one() {
    let d = setup(&["dirs_main", "dirs_dep"]);
    std::fs::create_dir(d.path().join("data")).unwrap();
    // The main component is given a directory; the dependency, deny-all by default, is not.
    let (code, out, err) = w(
        d.path(),
        &[
            "call",
            "--dir-ro",
            "data::/data",
            "--with",
            "dirs_dep.wasm",
            "dirs_main.wasm",
            "count",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "0\n");
    // Its own policy grants one.
    std::fs::write(
        d.path().join("dep.toml"),
        "[[dirs]]\nhost = \"data\"\nguest = \"/data\"\nmode = \"read-only\"\n",
    )
    .unwrap();
    let (code, out, err) = w(
        d.path(),
        &[
            "call",
            "--with",
            "dirs_dep.wasm:dep.toml",
            "dirs_main.wasm",
            "count",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "1\n");
}

#[test]
fn compose_refuses_a_core_module_naming_the_file() {
    let d = setup(&["main", "text"]);
    std::fs::write(
        d.path().join("core.wasm"),
        wat::parse_str("(module (func (export \"upper\")))").unwrap(),
    )
    .unwrap();
    for args in [
        ["compose", "-o", "app.wasm", "core.wasm", "text.wasm"],
        ["compose", "-o", "app.wasm", "main.wasm", "core.wasm"],
    ] {
        let (code, out, err) = w(d.path(), &args);
        assert_eq!(code, Some(2), "{err}");
        assert_eq!(out, "");
        one_line(&err);
        assert_eq!(
            err,
            "wasmlink: core.wasm: a core WebAssembly module, not a component: only components can be composed\n"
        );
        assert!(!d.path().join("app.wasm").exists());
    }
    // A missing input is bad input too; an unwritable output is exit 1.
    let (code, _, err) = w(
        d.path(),
        &["compose", "-o", "app.wasm", "main.wasm", "nope.wasm"],
    );
    assert_eq!(code, Some(2), "{err}");
    one_line(&err);
    assert!(err.starts_with("wasmlink: nope.wasm: "), "{err}");
    let (code, _, err) = w(
        d.path(),
        &[
            "compose",
            "-o",
            "no/such/dir/app.wasm",
            "main.wasm",
            "text.wasm",
        ],
    );
    assert_eq!(code, Some(1), "{err}");
    one_line(&err);
    // --with is for components.
    let (code, _, err) = w(
        d.path(),
        &["call", "--with", "text.wasm", "core.wasm", "upper"],
    );
    assert_eq!(code, Some(2), "{err}");
    one_line(&err);
    assert!(err.contains("--with is for components"), "{err}");
}

#[test]
fn run_with_a_dependency_uses_the_exit_statuses_of_run() {
    let d = setup(&["command", "text", "trap", "loop"]);
    let (code, _, err) = w(d.path(), &["run", "--with", "text.wasm", "command.wasm"]);
    assert_eq!(code, Some(0), "{err}");
    // A trap in the dependency: 134, as for a trap in the program.
    let (code, _, err) = w(d.path(), &["run", "--with", "trap.wasm", "command.wasm"]);
    assert_eq!(code, Some(134), "{err}");
    one_line(&err);
    assert!(
        err.starts_with(
            "wasmlink: command.wasm: wasi:cli/run@0.2.0#run: trap.wasm: wasmlink:demo/text#upper: "
        ),
        "{err}"
    );
    // A limit: 137, the main component's --timeout and --fuel both reaching the dependency.
    for (flag, value, says) in [
        ("--timeout", "300ms", "time limit"),
        (
            "--fuel",
            "100000",
            "stopped after 100000 units of fuel (--fuel)",
        ),
    ] {
        let (code, _, err) = w(
            d.path(),
            &["run", flag, value, "--with", "loop.wasm", "command.wasm"],
        );
        assert_eq!(code, Some(137), "{flag}: {err}");
        one_line(&err);
        assert!(
            err.contains("loop.wasm: wasmlink:demo/text#upper: stopped"),
            "{err}"
        );
        assert!(err.contains(says), "{err}");
    }
    // Unsatisfied: cannot be linked, 127 as ld.so.
    let (code, _, err) = w(d.path(), &["run", "command.wasm"]);
    assert_eq!(code, Some(127), "{err}");
    one_line(&err);
    assert!(
        err.contains("import wasmlink:demo/text is not WASI 0.2"),
        "{err}"
    );
}

#[test]
fn a_resource_does_not_cross_between_stores_but_compose_joins_them() {
    let d = setup(&["res_main", "res_dep"]);
    let (code, _, err) = w(
        d.path(),
        &["call", "--with", "res_dep.wasm", "res_main.wasm", "one"],
    );
    assert_eq!(code, Some(2), "{err}");
    one_line(&err);
    assert!(
        err.starts_with(
            "wasmlink: res_main.wasm: import wasmlink:demo/res: resource handle cannot cross between components in separate stores"
        ),
        "{err}"
    );
    let (code, out, err) = w(
        d.path(),
        &[
            "compose",
            "-o",
            "joined.wasm",
            "res_main.wasm",
            "res_dep.wasm",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "wasmlink:demo/res <- res_dep.wasm\n");
    let (code, out, err) = w(d.path(), &["call", "joined.wasm", "one"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "1\n");
}

#[test]
fn a_bad_dependency_policy_is_one_line_naming_the_dependency_and_the_field() {
    let d = setup(&["main", "text"]);
    std::fs::write(d.path().join("bad.toml"), "bogus = 1\n").unwrap();
    let (code, _, err) = w(
        d.path(),
        &[
            "call",
            "--with",
            "text.wasm:bad.toml",
            "main.wasm",
            "shout",
            "\"hi\"",
        ],
    );
    assert_eq!(code, Some(2), "{err}");
    one_line(&err);
    assert!(
        err.starts_with(
            "wasmlink: text.wasm: its policy (--with): bad.toml:1:1: unknown field `bogus`"
        ),
        "{err}"
    );
}

#[test]
fn compose_lists_the_imports_left_over_and_the_file_runs_under_one_policy() {
    let d = setup(&["main", "dirs_main", "dirs_dep"]);
    std::fs::create_dir(d.path().join("data")).unwrap();
    let (code, out, err) = w(
        d.path(),
        &[
            "compose",
            "-o",
            "joined.wasm",
            "dirs_main.wasm",
            "dirs_dep.wasm",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "wasmlink:demo/dirs <- dirs_dep.wasm\n");
    assert_eq!(
        err,
        "left: wasi:filesystem/types@0.2.0\nleft: wasi:filesystem/preopens@0.2.0\n"
    );
    // One store, one policy: the directory given to the composed file reaches the part that
    // was the dependency (with --with it would not: its own policy decides).
    let (code, out, err) = w(
        d.path(),
        &["call", "--dir-ro", "data::/data", "joined.wasm", "count"],
    );
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out, "1\n");
    // Nothing to plug: exit 2 naming both files.
    let (code, _, err) = w(
        d.path(),
        &["compose", "-o", "x.wasm", "main.wasm", "dirs_dep.wasm"],
    );
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(
        err,
        "wasmlink: main.wasm: none of its imports is exported by dirs_dep.wasm\n"
    );
    assert!(!d.path().join("x.wasm").exists());
}
