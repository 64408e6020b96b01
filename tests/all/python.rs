//! `wasmlink python`: CPython 3.14 from the componentize-py corpus under the runtime linker,
//! and the corpus step that unpacks its standard library.

use std::fs;
use std::path::PathBuf;
use std::sync::OnceLock;

use crate::support::{corpus, stderr, stdout, wasmlink, wasmlink_in};

/// The corpus directory, with the standard library unpacked (the xtask corpus step).
fn home() -> PathBuf {
    static HOME: OnceLock<PathBuf> = OnceLock::new();
    HOME.get_or_init(|| {
        let dir = corpus();
        wasmlink_xtask::pylib::ensure_pylib(&dir).unwrap_or_else(|e| panic!("pylib: {e}"));
        dir
    })
    .clone()
}

/// `wasmlink python --home HOME ARGS...`
fn python(args: &[&str]) -> std::process::Output {
    let home = home();
    let mut all = vec!["python", "--home", home.to_str().unwrap()];
    all.extend_from_slice(args);
    wasmlink(&all)
}

#[test]
fn corpus_step_unpacks_the_standard_library_once() {
    let dir = home();
    let first = wasmlink_xtask::pylib::ensure_pylib(&dir).unwrap();
    assert_eq!(first.home, dir.join("python"));
    assert_eq!(first.stdlib, dir.join("python/lib/python3.14"));
    assert_eq!(first.files, wasmlink_xtask::pylib::STDLIB_FILES);
    for landmark in [
        "os.py",
        "json/__init__.py",
        "encodings/__init__.py",
        "re/__init__.py",
    ] {
        assert!(first.stdlib.join(landmark).is_file(), "{landmark}");
    }
    let stamp = dir.join("python").join(wasmlink_xtask::pylib::STAMP_FILE);
    let before = fs::metadata(&stamp).unwrap().modified().unwrap();
    // Complete: recognised from the stamp, nothing is unpacked again.
    assert_eq!(wasmlink_xtask::pylib::ensure_pylib(&dir).unwrap(), first);
    assert_eq!(fs::metadata(&stamp).unwrap().modified().unwrap(), before);
    // The library corpus still counts as complete beside it.
    assert!(wasmlink_xtask::ensure_corpus(&dir).is_ok());
}

#[test]
fn a_missing_home_is_one_line_saying_how_to_get_it() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().to_str().unwrap();
    let out = wasmlink(&["python", "--home", empty, "-c", "pass"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(empty) && err.contains("cargo run -p wasmlink-xtask -- corpus"),
        "{err}"
    );

    // The default home is target/corpus under the current directory, or $WASMLINK_PYTHON_HOME.
    let out = wasmlink_in(&["python", "-c", "pass"], Some(tmp.path()), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("target/corpus"), "{}", stderr(&out));
    let elsewhere = tmp.path().join("elsewhere");
    let out = wasmlink_in(
        &["python", "-c", "pass"],
        None,
        &[("WASMLINK_PYTHON_HOME", elsewhere.to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("elsewhere"), "{}", stderr(&out));
}

#[test]
fn the_main_links_and_runs_into_cpython() {
    let out = python(&["-c", "print(6*7)"]);
    // 127 would be a load or link failure (a library or symbol missing, a bad main).
    assert_ne!(out.status.code(), Some(127), "{}", stderr(&out));
    assert!(
        stdout(&out) == "42\n" || stderr(&out).contains("libpython3.14.so!Py_InitializeFromConfig"),
        "stdout {:?}\nstderr {}",
        stdout(&out),
        stderr(&out)
    );
}
