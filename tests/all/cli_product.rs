//! The CLI as a product (issue 16): the compiled-code cache of plugins and pipelines, one
//! self-contained binary, `call` saying what a function takes, and flags that behave like the
//! tools users know (sizes with units, several files for nm/inspect, ripgrep-like globs).

use std::path::Path;
use std::process::Command;

use crate::support::{guest_modules, stderr, stdout, wasmlink, wasmlink_in};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Files (not directories) under `dir`, at any depth.
fn files_under(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .map(|e| e.unwrap().path())
        .map(|p| if p.is_dir() { files_under(&p) } else { 1 })
        .sum()
}

/// A pipeline of one greeter stage (`double`, an Arrow function) over x.jsonl.
fn greeter_pipeline(dir: &Path) -> std::path::PathBuf {
    let greeter = guest_modules().join("greeter.wasm");
    std::fs::write(dir.join("x.jsonl"), "{\"x\": 1}\n{\"x\": 2}\n").unwrap();
    let file = dir.join("p.toml");
    std::fs::write(
        &file,
        format!(
            "[source]\nkind = \"jsonl\"\npath = \"x.jsonl\"\n\
             [[stage]]\nname = \"double\"\nmodule = \"{}\"\nfunction = \"double\"\n\
             [sink]\nkind = \"jsonl\"\npath = \"out.jsonl\"\n",
            s(&greeter)
        ),
    )
    .unwrap();
    file
}

#[test]
fn pipeline_and_call_keep_compiled_plugins_in_the_disk_cache_and_say_when_they_compile() {
    let t = tempfile::tempdir().unwrap();
    let file = greeter_pipeline(t.path());
    let cache = t.path().join("cache");
    let o = wasmlink(&["pipeline", "run", "-v", "--cache-dir", s(&cache), s(&file)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // The log says what it is about to compile before compiling it (a first run is slow).
    let err = stderr(&o);
    let compiling = err.find("plugin `greeter`: compiling").expect(&err);
    let compiled = err.find("plugin `greeter`: compiled in").expect(&err);
    assert!(compiling < compiled, "{err}");
    assert!(
        files_under(&cache) > 0,
        "pipeline run left nothing in its cache"
    );

    // --no-cache: nothing written, not even to $WASMLINK_CACHE_DIR.
    let unused = t.path().join("unused");
    let o = wasmlink_in(
        &["pipeline", "run", "--no-cache", s(&file)],
        None,
        &[("WASMLINK_CACHE_DIR", s(&unused))],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(files_under(&unused), 0);

    // `call` shares the flags and the cache.
    let call_cache = t.path().join("call-cache");
    std::fs::write(t.path().join("world.txt"), "World").unwrap();
    let greeter = guest_modules().join("greeter.wasm");
    let o = wasmlink(&[
        "call",
        "--cache-dir",
        s(&call_cache),
        s(&greeter),
        "greet",
        "--input",
        s(&t.path().join("world.txt")),
    ]);
    assert_eq!(stdout(&o), "Hello, World!", "{}", stderr(&o));
    assert!(
        files_under(&call_cache) > 0,
        "call left nothing in its cache"
    );
}

#[test]
fn a_copied_binary_with_no_environment_runs_index_and_search_from_its_embedded_modules() {
    let t = tempfile::tempdir().unwrap();
    let bin = t.path().join("bin/wasmlink");
    std::fs::create_dir_all(bin.parent().unwrap()).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_wasmlink"), &bin).unwrap();
    let corpus = t.path().join("corpus");
    std::fs::create_dir_all(corpus.join("sub")).unwrap();
    std::fs::write(
        corpus.join("a.md"),
        "# Borrowing\n\nthe borrow checker rejects it\n",
    )
    .unwrap();
    std::fs::write(corpus.join("sub/b.txt"), "heap and stack\n").unwrap();
    let cwd = t.path().join("elsewhere");
    std::fs::create_dir(&cwd).unwrap();
    let index = t.path().join("index");
    let run = |args: &[&str]| {
        Command::new(&bin)
            .args(args)
            .env_clear()
            .current_dir(&cwd)
            .output()
            .unwrap()
    };
    let o = run(&[
        "index",
        "--corpus",
        s(&corpus),
        "--out",
        s(&index),
        "--no-progress",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("indexed 2 documents"), "{}", stderr(&o));
    let o = run(&["search", s(&index), "borrow"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("a.md"), "{}", stdout(&o));
    // An explicit --modules still wins, and says so when it is wrong.
    let o = run(&["search", "--modules", s(t.path()), s(&index), "borrow"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("query.wasm: module not found"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn call_says_what_a_function_takes_and_which_flag_passes_its_data() {
    let t = tempfile::tempdir().unwrap();
    let greeter = guest_modules().join("greeter.wasm");
    let g = s(&greeter);
    // The module's wasmlink.exports manifest says `greet` takes a string: one argument is its
    // input; none is an error that says so.
    let o = wasmlink(&["call", g, "greet", "World"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), "Hello, World!");
    let o = wasmlink(&["call", g, "greet"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("`greet` takes 2 argument(s), 0 given (its type is (i32, i32) -> (i32))")
            && err.contains(
                "it takes string (docs/abi.md): pass it as one argument or with --input FILE"
            ),
        "{err}"
    );
    let o = wasmlink(&["call", g, "double"]);
    assert!(
        stderr(&o).contains("it takes an Arrow batch (docs/abi.md): pass it with --arrow FILE"),
        "{}",
        stderr(&o)
    );
    let o = wasmlink(&["call", g, "greet_seed", "World"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(
            "it takes string (seed) (docs/abi.md): run it under a policy with abi = \"seed\""
        ),
        "{}",
        stderr(&o)
    );
    // The wrong data flag for what the manifest says: a usage error before anything runs.
    let world = t.path().join("world.txt");
    std::fs::write(&world, "World").unwrap();
    let o = wasmlink(&["call", g, "echo_arrow", "--input", s(&world)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("`echo_arrow` takes an Arrow batch: pass it with --arrow FILE (Arrow IPC or Parquet), not --input"),
        "{}",
        stderr(&o)
    );
    let o = wasmlink(&["call", g, "greet", "--arrow", s(&world)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("`greet` takes string, not an Arrow batch: pass it with --input FILE"),
        "{}",
        stderr(&o)
    );
    // Without a manifest (the section renamed, same length): the guest's decoding error, and
    // the flag that passes Arrow, as for modules built before the manifest.
    let bytes = std::fs::read(&greeter).unwrap();
    let at = bytes
        .windows(16)
        .position(|w| w == b"wasmlink.exports")
        .expect("a manifest");
    let mut bare = bytes.clone();
    bare[at + 15] = b'z';
    let bare_path = t.path().join("bare.wasm");
    std::fs::write(&bare_path, &bare).unwrap();
    let o = wasmlink(&["call", s(&bare_path), "echo_arrow", "--input", s(&world)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("`echo_arrow` reads Arrow: pass its input with --arrow FILE"),
        "{}",
        stderr(&o)
    );
    let o = wasmlink(&["call", s(&bare_path), "greet", "World"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(
            "it is a data-exchange function (docs/abi.md): pass its input with --input FILE"
        ),
        "{}",
        stderr(&o)
    );
    // JSON lines to --arrow: said to be neither Arrow nor Parquet (not "truncated").
    let jsonl = t.path().join("in.jsonl");
    std::fs::write(&jsonl, "{\"x\": 1}\n{\"x\": 2}\n").unwrap();
    let o = wasmlink(&["call", g, "echo_arrow", "--arrow", s(&jsonl)]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(stderr(&o).lines().count(), 1, "one line: {}", stderr(&o));
    assert!(
        stderr(&o).contains("in.jsonl: not Arrow IPC (stream or file) nor Parquet"),
        "{}",
        stderr(&o)
    );
    // An Arrow input (made by the example pipeline) written to `-o d.jsonl`: refused up
    // front, nothing written; `.arrow` works.
    let root = crate::support::root();
    for f in ["x.jsonl", "to-arrow.toml"] {
        std::fs::copy(root.join("examples/exchange").join(f), t.path().join(f)).unwrap();
    }
    let o = wasmlink_in(&["pipeline", "run", "to-arrow.toml"], Some(t.path()), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let batch = t.path().join("batch.arrow");
    let d = t.path().join("d.jsonl");
    let o = wasmlink(&["call", g, "echo_arrow", "--arrow", s(&batch), "-o", s(&d)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--arrow writes an Arrow IPC stream (.arrow, .arrows, .ipc) or Parquet (.parquet), not .jsonl"),
        "{}",
        stderr(&o)
    );
    assert!(!d.exists());
    let out = t.path().join("out.arrow");
    let o = wasmlink(&["call", g, "echo_arrow", "--arrow", s(&batch), "-o", s(&out)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(std::fs::read(&out).unwrap().starts_with(&[0xff; 4]));
}

#[test]
fn nm_shows_core_signatures_and_nm_and_inspect_take_several_files() {
    let greeter = guest_modules().join("greeter.wasm");
    let upper = guest_modules().join("c-upper.wasm");
    let o = wasmlink(&["nm", s(&greeter)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o)
            .lines()
            .any(|l| l.ends_with(" T function greet (i32, i32) -> (i32) <takes string>")),
        "{}",
        stdout(&o)
    );
    let o = wasmlink(&["nm", "--json", s(&greeter)]);
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let greet = json["symbols"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "greet")
        .unwrap();
    assert_eq!(greet["signature"], "(i32, i32) -> (i32)");
    // What each plugin function takes, from the module's wasmlink.exports manifest.
    assert_eq!(
        greet["plugin"],
        serde_json::json!({"convention": "abi", "input": "string"})
    );
    let o = wasmlink(&["nm", s(&greeter)]);
    let out = stdout(&o);
    for line in [
        " T function double (i32, i32) -> (i32) <takes arrow>",
        " T function greet_seed (i32, i32) -> (i32) <takes string (seed)>",
        " T function shout_in_place (i32, i32) -> (i32) <takes arrow-in-place>",
    ] {
        assert!(out.contains(line), "{line}: {out}");
    }
    assert!(
        !out.contains("wasmlink_alloc (i32, i32) -> (i32) <"),
        "{out}"
    );
    let o = wasmlink(&["inspect", "--json", s(&greeter)]);
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["plugin"]["abi_v1"], true);
    assert_eq!(json["plugin"]["allocate"], true);
    assert_eq!(json["plugin"]["functions"]["echo"]["input"], "bytes");
    let o = wasmlink(&["inspect", s(&greeter)]);
    assert!(
        stdout(&o).contains("plugin:       wasmlink ABI v1; allocate/deallocate"),
        "{}",
        stdout(&o)
    );
    let o = wasmlink(&["inspect", "--json", s(&upper)]);
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["plugin"]["abi_v1"], true, "the C guest speaks ABI v1");
    assert_eq!(
        json["plugin"]["functions"]["upper"]["input"], "bytes",
        "WASMLINK_EXPORT_BYTES writes a manifest record"
    );

    // Several files: a `FILE:` header before each (as binutils' nm); a missing one is an
    // error on stderr, the others are still listed, and the status says something failed.
    let missing = "/nonexistent/x.wasm";
    let o = wasmlink(&["nm", s(&upper), missing, s(&greeter)]);
    assert_eq!(o.status.code(), Some(2));
    let out = stdout(&o);
    let first = out.find(&format!("\n{}:\n", s(&upper))).expect(&out);
    let last = out.find(&format!("\n{}:\n", s(&greeter))).expect(&out);
    assert!(first < last);
    assert!(
        out[first..last].contains(" T function upper (i32, i32) -> (i32) <takes bytes>"),
        "{out}"
    );
    assert!(out[last..].contains(" T function greet "), "{out}");
    assert!(stderr(&o).contains("/nonexistent/x.wasm"), "{}", stderr(&o));

    let o = wasmlink(&["inspect", s(&upper), s(&greeter)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let files: Vec<&str> = stdout(&o)
        .lines()
        .filter_map(|l| l.strip_prefix("file:"))
        .map(str::trim)
        .map(|f| if f == s(&upper) { "upper" } else { "greeter" })
        .collect();
    assert_eq!(files, ["upper", "greeter"]);
}

#[test]
fn run_takes_its_stack_size_with_units_like_every_size_flag() {
    let t = tempfile::tempdir().unwrap();
    let m = crate::support::wat_fixture("plain", t.path(), "plain.wasm");
    // Before: `invalid digit found in string` (exit 2). Now the size parses and the run goes
    // on to the missing function (a link failure, 127).
    let o = wasmlink(&["run", "--stack-size", "1MiB", s(&m), "--invoke", "nope"]);
    assert_eq!(o.status.code(), Some(127), "{}", stderr(&o));
    let o = wasmlink(&["run", "--stack-size", "8GiB", s(&m)]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("`8GiB` is too large"), "{}", stderr(&o));
}

#[test]
fn index_include_without_a_slash_matches_names_at_any_depth_as_ripgrep_does() {
    let t = tempfile::tempdir().unwrap();
    let corpus = t.path().join("corpus");
    std::fs::create_dir_all(corpus.join("guide/deep")).unwrap();
    std::fs::write(corpus.join("top.md"), "# Top\n\ncrab\n").unwrap();
    std::fs::write(corpus.join("guide/deep/nested.md"), "# Nested\n\ncrab\n").unwrap();
    std::fs::write(corpus.join("guide/other.txt"), "not markdown\n").unwrap();
    let modules = guest_modules();
    let o = wasmlink(&[
        "index",
        "--corpus",
        s(&corpus),
        "--out",
        s(&t.path().join("index")),
        "--modules",
        s(&modules),
        "--no-progress",
        "--include",
        "*.md",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("indexed 2 documents"), "{}", stderr(&o));
}
