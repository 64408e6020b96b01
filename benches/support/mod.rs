//! Benchmark fixtures, built from source when the benchmark starts.
//!
//! The flags are the ones `tests/all/support.rs` uses, from the one table
//! `wasmlink_xtask::cflags`: clang-19 with
//! `--target=wasm32-wasi -fPIC -fvisibility=default -O2 -nostdlib --no-wasm-opt`, linked as a
//! side module (`-shared`) or a PIE main. The native twin of the dlopen library is built with
//! `gcc -shared -fPIC -O2`.

use std::path::{Path, PathBuf};
use std::process::Command;

use wasmlink_xtask::cflags::{Build, Link};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn src(name: &str) -> PathBuf {
    root().join("benches/c").join(name)
}

fn run(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e} (see scripts/setup.sh)"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Compiles `benches/c/<source>` into `<dir>/<out>`, linked against `deps` (file names in
/// `dir`, recorded as NEEDED).
pub fn clang(dir: &Path, out: &str, link: Link, source: &str, deps: &[&str]) -> PathBuf {
    let path = dir.join(out);
    let build = Build {
        link,
        cxx: false,
        sources: &[src(source)],
        libs: deps,
        extra: &[],
        obj_dir: dir,
        out: &path,
    };
    for mut cmd in build.commands() {
        run(cmd.current_dir(dir), out);
    }
    path
}

/// `gcc -shared -fPIC -O2 -o <dir>/<out> benches/c/<source>`.
pub fn gcc_shared(dir: &Path, out: &str, source: &str) -> PathBuf {
    let path = dir.join(out);
    run(
        Command::new("gcc")
            .args(["-shared", "-fPIC", "-O2", "-o"])
            .arg(&path)
            .arg(src(source)),
        out,
    );
    path
}

/// The instructions of function `func` in `wasm-objdump -d` output.
fn disassembly(path: &Path, func: &str) -> Option<Vec<String>> {
    let out = Command::new("wasm-objdump")
        .arg("-d")
        .arg(path)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let header = format!("<{func}>:");
    let mut lines = text.lines().skip_while(|l| !l.ends_with(&header));
    lines.next()?;
    Some(
        lines
            .take_while(|l| !l.contains(" func["))
            .map(str::to_string)
            .collect(),
    )
}

/// Checks with `wasm-objdump -d` that function `func` of `path` still contains `call` of
/// `callee` (e.g. `call 6 <local_inc>`) or a `call_indirect` when `callee` is `None`, so the
/// measured loop was not optimised away. Returns the matching line, or `None` (with a warning)
/// if wasm-objdump is not installed.
pub fn assert_calls(path: &Path, func: &str, callee: Option<&str>) -> Option<String> {
    let Some(body) = disassembly(path, func) else {
        eprintln!("warning: wasm-objdump not available; not checking that {func} makes calls");
        return None;
    };
    let hit = body.iter().find(|l| {
        let instr = l.split('|').nth(1).unwrap_or("").trim();
        match callee {
            Some(c) => instr.starts_with("call ") && instr.ends_with(&format!("<{c}>")),
            None => instr.starts_with("call_indirect"),
        }
    });
    let line = hit.unwrap_or_else(|| {
        panic!(
            "{}: {func} does not call {callee:?}:\n{}",
            path.display(),
            body.join("\n")
        )
    });
    Some(line.split('|').nth(1).unwrap_or("").trim().to_string())
}

/// All fixtures of the benchmark, in one temporary directory (so NEEDED names are plain file
/// names and the directory is the search path).
pub struct Fixtures {
    pub tmp: tempfile::TempDir,
    pub main: PathBuf,
    pub libbench: PathBuf,
    pub small_wasm: PathBuf,
    pub small_native: PathBuf,
}

impl Fixtures {
    pub fn build() -> Fixtures {
        let tmp = tempfile::Builder::new()
            .prefix("wasmlink-bench-")
            .tempdir()
            .expect("temp dir");
        let dir = tmp.path();
        let libbench = clang(dir, "libbench.so", Link::Shared, "bench_lib.c", &[]);
        let main = clang(
            dir,
            "bench_main.wasm",
            Link::Pie,
            "bench_main.c",
            &["libbench.so"],
        );
        let small_wasm = clang(dir, "libsmall.so", Link::Shared, "small.c", &[]);
        let small_native = gcc_shared(dir, "libsmall_native.so", "small.c");
        Fixtures {
            tmp,
            main,
            libbench,
            small_wasm,
            small_native,
        }
    }

    pub fn dir(&self) -> &Path {
        self.tmp.path()
    }
}

/// The real-world corpus (componentize-py's 11 wasi-sdk shared libraries), fetched and checked
/// by the project's xtask code into `target/corpus`.
pub fn corpus() -> PathBuf {
    let dir = root().join("target/corpus");
    wasmlink_xtask::ensure_corpus(&dir).unwrap_or_else(|e| panic!("corpus: {e}"));
    dir
}
