//! Own-memory main programs: wasm-ld's default `-pie` output (no `-Wl,--import-memory
//! -Wl,--import-table`), which defines and exports its own memory, as Emscripten's
//! `MAIN_MODULE` does. Its memory and table become the process's.

use std::path::PathBuf;

use crate::support::{Link, c_fixture, fixtures_out, stderr, stdout, wasmlink_in, wat_fixture};

/// om_main.wasm (own memory) <- libom_b.so <- libom_a.so, and libom_plugin.so for dlopen.
fn own_memory_main() -> PathBuf {
    c_fixture("libom_a.so", Link::Shared, &["om_a.c"], &[], &[]);
    c_fixture(
        "libom_b.so",
        Link::Shared,
        &["om_b.c"],
        &["libom_a.so"],
        &[],
    );
    c_fixture("libom_plugin.so", Link::Shared, &["om_plugin.c"], &[], &[]);
    c_fixture(
        "om_main.wasm",
        Link::PieOwnMemory,
        &["om_main.c"],
        &["libom_b.so", "libom_a.so"],
        &[],
    )
}

#[test]
fn own_memory_pie_main_runs_with_two_libraries_and_a_dlopen() {
    let main = own_memory_main();
    let bytes = std::fs::read(&main).unwrap();
    let info = wasmlink::dylink::ModuleInfo::parse(&bytes).unwrap();
    assert_eq!(
        info.defined_memories.len(),
        1,
        "the fixture must define its own memory (clang's default -pie)"
    );
    let dir = fixtures_out();
    let out = wasmlink_in(
        &["run", "-L", dir.to_str().unwrap(), main.to_str().unwrap()],
        None,
        &[],
    );
    let text = stdout(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{text}\nstderr:\n{}",
        stderr(&out)
    );
    for line in [
        "ok the library's constructor ran",
        "ok library data across libraries",
        "ok a call through two libraries",
        "ok function pointers compare equal across libraries",
        "ok a call through a function pointer",
        "ok the main's own data",
        "ok the main's stack",
        "ok dlopen at run time",
        "ok the dlopen'ed library sees the main's and the libraries' data",
        "ok dlclose",
        "failures 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing line {line:?} in:\n{text}"
        );
    }
}

#[test]
fn own_memory_main_through_the_rust_api() {
    let main = own_memory_main();
    let mut search = wasmlink::resolve::SearchPath::new();
    search.add_dir(fixtures_out());
    let mut process = wasmlink::ProcessBuilder::new()
        .search_path(search)
        .load(&main)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(process.run_main().unwrap_or_else(|e| panic!("{e}")), 0);
}

/// What cannot share its memory fails the load (exit 127) with one line: why, and the flags.
#[test]
fn own_memory_main_that_cannot_be_shared_is_one_line_naming_the_flags() {
    let dir = tempfile::tempdir().unwrap();
    for (fixture, why) in [
        ("om_shared_memory", "defines a shared memory"),
        ("om_small_max", "maximum of 2 pages cannot hold its data"),
    ] {
        let main = wat_fixture(fixture, dir.path(), &format!("{fixture}.wasm"));
        let out = wasmlink_in(&["run", main.to_str().unwrap()], None, &[]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(127), "{fixture}: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{fixture}: {err}");
        assert!(err.contains(&format!("{fixture}.wasm")), "{err}");
        assert!(err.contains(why), "{fixture}: {err}");
        if fixture == "om_shared_memory" {
            assert!(
                err.contains("-Wl,--import-memory -Wl,--import-table"),
                "{err}"
            );
        }
    }
}

/// Only the main's memory becomes the process's: a library defining its own is refused.
#[test]
fn a_library_with_its_own_memory_is_refused_in_one_line() {
    let main = own_memory_main();
    let dir = tempfile::tempdir().unwrap();
    let lib = wat_fixture("om_side_own_memory", dir.path(), "libom_side.so");
    let out = wasmlink_in(
        &[
            "run",
            "-L",
            fixtures_out().to_str().unwrap(),
            "--preload",
            lib.to_str().unwrap(),
            main.to_str().unwrap(),
        ],
        None,
        &[],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(127), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(
        err.contains("libom_side.so: a shared library that defines its own memory")
            && err.contains("-Wl,--import-memory -Wl,--import-table"),
        "{err}"
    );
}
