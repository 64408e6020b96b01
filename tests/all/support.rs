//! Test support: fixtures built from source, the wasmlink binary, golden files.
//!
//! C fixtures live in `tests/fixtures/c/` and are compiled with Debian's clang-19/lld-19 into
//! dylink.0 modules (flags from the one table, `wasmlink_xtask::cflags`); WAT fixtures live in
//! `tests/fixtures/wat/` and are assembled with the `wat` crate. Nothing built is committed.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

use wasmlink_xtask::cflags;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixtures_src() -> PathBuf {
    root().join("tests/fixtures")
}

/// Where built fixtures go: one directory, so `NEEDED` entries are plain file names.
pub fn fixtures_out() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("fixtures");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub use wasmlink_xtask::cflags::{CLANG, Link};

fn built() -> &'static Mutex<HashMap<String, PathBuf>> {
    static BUILT: OnceLock<Mutex<HashMap<String, PathBuf>>> = OnceLock::new();
    BUILT.get_or_init(Default::default)
}

/// Compiles `tests/fixtures/c/<sources>` into `<out>` (e.g. `libfoo.so`), linked against the
/// already-built fixtures `deps` (recorded as NEEDED), once per test process.
pub fn c_fixture(
    out: &str,
    link: Link,
    sources: &[&str],
    deps: &[&str],
    extra: &[&str],
) -> PathBuf {
    let mut map = built().lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = map.get(out) {
        return p.clone();
    }
    let dir = fixtures_out();
    // Build under the final file name (the linker records it in the name section) in a
    // private directory, then rename into place.
    let tmp_dir = dir.join(format!(".build-{}", std::process::id()));
    std::fs::create_dir_all(&tmp_dir).unwrap();
    let tmp = tmp_dir.join(out);
    let sources: Vec<PathBuf> = sources
        .iter()
        .map(|s| fixtures_src().join("c").join(s))
        .collect();
    for d in deps {
        assert!(
            map.contains_key(*d),
            "fixture {out}: build dependency {d} first"
        );
    }
    let build = cflags::Build {
        link,
        cxx: false,
        sources: &sources,
        libs: deps,
        extra,
        obj_dir: &tmp_dir,
        out: &tmp,
    };
    for mut cmd in build.commands() {
        let output = cmd.current_dir(&dir).output().unwrap_or_else(|e| {
            panic!("cannot run {CLANG} (install it with the README's test command): {e}")
        });
        assert!(
            output.status.success(),
            "{CLANG} failed for {out}:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let path = dir.join(out);
    std::fs::rename(&tmp, &path).unwrap();
    map.insert(out.to_string(), path.clone());
    path
}

/// Assembles `tests/fixtures/wat/<name>.wat` into `<dir>/<out>`.
pub fn wat_fixture(name: &str, dir: &Path, out: &str) -> PathBuf {
    let src = fixtures_src().join("wat").join(format!("{name}.wat"));
    let bytes = wat::parse_file(&src).unwrap_or_else(|e| panic!("{}: {e}", src.display()));
    let path = dir.join(out);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The base set of C fixtures: libbase.so <- libmid.so <- main.wasm (PIE).
pub fn base_set() -> (PathBuf, PathBuf, PathBuf) {
    let base = c_fixture("libbase.so", Link::Shared, &["base.c"], &[], &[]);
    let mid = c_fixture("libmid.so", Link::Shared, &["mid.c"], &["libbase.so"], &[]);
    let main = c_fixture("main.wasm", Link::Pie, &["main.c"], &["libmid.so"], &[]);
    (base, mid, main)
}

/// The real-world corpus (componentize-py's 11 wasi-sdk shared libraries), fetched and
/// extracted once by the project's own xtask code.
pub fn corpus() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = root().join("target/corpus");
        wasmlink_xtask::ensure_corpus(&dir).unwrap_or_else(|e| panic!("corpus: {e}"));
        dir
    })
    .clone()
}

/// Runs the `wasmlink` binary built for these tests.
pub fn wasmlink(args: &[&str]) -> Output {
    wasmlink_in(args, None, &[])
}

pub fn wasmlink_in(args: &[&str], cwd: Option<&Path>, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wasmlink"));
    cmd.args(args)
        .env_remove("WASMLINK_LIBRARY_PATH")
        .env_remove("WASMLINK_DEBUG");
    if let Some(c) = cwd {
        cmd.current_dir(c);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Compares `actual` with `tests/cli/<name>`; `BLESS=1` rewrites the file instead.
pub fn golden(name: &str, actual: &str) {
    let path = root().join("tests/cli").join(name);
    if std::env::var_os("BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with BLESS=1 to create it)", path.display()));
    assert_eq!(
        expected.replace("\r\n", "\n"),
        actual,
        "output differs from {} (run with BLESS=1 to update)",
        path.display()
    );
}

/// The wasm guests of guest/ (SDK examples and search modules), built once per test process
/// by scripts/build-guests.sh (cargo's lock serialises concurrent test processes).
pub fn guest_modules() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let root = root();
        let out = std::process::Command::new("bash")
            .arg(root.join("scripts/build-guests.sh"))
            .current_dir(&root)
            .output()
            .expect("run scripts/build-guests.sh");
        assert!(
            out.status.success(),
            "scripts/build-guests.sh failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        root.join("target/guest-modules")
    })
    .clone()
}

/// Every file under `dir`, recursively (none when `dir` does not exist).
pub fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}
