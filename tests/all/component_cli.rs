//! Components on the command line: `inspect` prints the world as WIT, `call` takes and prints
//! WAVE values under the same policy flags as core modules, `run` runs `wasi:cli/command`s.

use std::path::{Path, PathBuf};

use crate::support::{self, stderr, stdout};

fn fixture(dir: &Path, name: &str, wat: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        wat::parse_str(wat).unwrap_or_else(|e| panic!("{name}: {e}")),
    )
    .unwrap();
    path
}

fn demo(dir: &Path) -> PathBuf {
    let src = support::fixtures_src().join("wat/comp_demo.wat");
    fixture(dir, "demo.wasm", &std::fs::read_to_string(src).unwrap())
}

fn w(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let o = support::wasmlink_in(args, Some(dir), &[]);
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(!err.contains("panicked"), "{err}");
    (o.status.code(), out, err)
}

#[test]
fn inspect_prints_the_world_as_wit_and_json() {
    let d = tempfile::tempdir().unwrap();
    demo(d.path());
    let (code, out, err) = w(d.path(), &["inspect", "demo.wasm"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("kind:           component\n"), "{out}");
    for line in [
        "core modules:   1 (",
        "exports: 4\n",
        "  greet: func(name: string) -> string\n",
        "  check: func(x: s32) -> result<s32, string>\n",
        "  wasmlink:demo/math@0.1.0 (interface)\n    add: func(a: u32, b: u32) -> u32\n",
    ] {
        assert!(out.contains(line), "{line:?} not in:\n{out}");
    }
    let (code, out, err) = w(d.path(), &["nm", "demo.wasm"]);
    assert_eq!(
        (code, out.as_str()),
        (
            Some(0),
            "T wasmlink:demo/math@0.1.0#add: func(a: u32, b: u32) -> u32\n\
             T greet: func(name: string) -> string\n\
             T check: func(x: s32) -> result<s32, string>\n\
             T spin: func()\n"
        ),
        "{err}"
    );
    assert_eq!(w(d.path(), &["nm", "-u", "demo.wasm"]).1, "");
    let (code, out, _) = w(d.path(), &["inspect", "--json", "demo.wasm"]);
    assert_eq!(code, Some(0));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["kind"], "component");
    assert_eq!(
        v["exports"][1]["functions"][0],
        "greet: func(name: string) -> string"
    );
}

#[test]
fn call_takes_and_prints_wave_values() {
    let d = tempfile::tempdir().unwrap();
    demo(d.path());
    let ok = |args: &[&str], want: &str| {
        let mut full = vec!["call", "demo.wasm"];
        full.extend_from_slice(args);
        let (code, out, err) = w(d.path(), &full);
        assert_eq!((code, out.as_str()), (Some(0), want), "{args:?}: {err}");
    };
    ok(&["greet", "\"World\""], "\"Hello, World\"\n");
    ok(&["check", "7"], "ok(7)\n");
    ok(&["check", "-1"], "err(\"negative\")\n");
    ok(&["math#add", "40", "2"], "42\n");
    ok(&["wasmlink:demo/math@0.1.0#add", "1", "2"], "3\n");
}

#[test]
fn bad_calls_are_one_line_with_exit_2_and_limits_stop_with_exit_1() {
    let d = tempfile::tempdir().unwrap();
    demo(d.path());
    let (code, _, err) = w(d.path(), &["call", "demo.wasm", "greet", "1", "2"]);
    assert_eq!(
        (code, err.as_str()),
        (
            Some(2),
            "wasmlink: demo.wasm: greet takes 1 argument (name: string), 2 given\n"
        )
    );
    let (code, _, err) = w(d.path(), &["call", "demo.wasm", "greet", "42"]);
    assert_eq!(code, Some(2));
    assert!(
        err.starts_with("wasmlink: demo.wasm: greet: argument name: expected string: ")
            && err.lines().count() == 1,
        "{err}"
    );
    let (code, _, err) = w(d.path(), &["call", "demo.wasm", "nope"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("no exported function nope (exported functions: "),
        "{err}"
    );
    let (code, _, err) = w(
        d.path(),
        &["call", "--timeout", "200ms", "demo.wasm", "spin"],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("spin: stopped after the 200ms time limit"),
        "{err}"
    );
    let (code, _, err) = w(d.path(), &["call", "--input", "-", "demo.wasm", "greet"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("are for core modules"), "{err}");
}

#[test]
fn run_runs_a_command_and_refuses_what_is_not_one() {
    let d = tempfile::tempdir().unwrap();
    let src =
        std::fs::read_to_string(support::fixtures_src().join("wat/comp_command.wat")).unwrap();
    fixture(d.path(), "ok.wasm", &src.replace("STATUS", "0"));
    fixture(d.path(), "fails.wasm", &src.replace("STATUS", "1"));
    demo(d.path());
    assert_eq!(w(d.path(), &["run", "ok.wasm"]).0, Some(0));
    assert_eq!(w(d.path(), &["run", "fails.wasm", "--", "x"]).0, Some(1));
    let (code, _, err) = w(d.path(), &["run", "demo.wasm"]);
    assert_eq!(code, Some(127));
    assert!(
        err.contains("not a wasi:cli/command component; use --invoke FUNC"),
        "{err}"
    );
    let (code, _, err) = w(d.path(), &["run", "--preload", "libc.so", "ok.wasm"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("--preload is for core modules; this is a component"),
        "{err}"
    );
}
