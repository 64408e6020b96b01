//! The `wasmlink` command line: golden output of `inspect`, `inspect --json` and `nm` for the C
//! and WAT fixtures, `ldd`'s search-path behaviour on crafted dependency graphs, and the
//! contract for bad input (one `wasmlink: FILE: ...` line on stderr, exit status 2).
//!
//! Golden files live in `tests/cli/`; `BLESS=1 cargo test --test all -- cli::` rewrites them.
//! Outputs are made machine-independent by running with the fixture directory as the working
//! directory (relative file names), by replacing a temporary directory with `$DIR`, and, for
//! C fixtures only, by replacing the file size (which depends on the exact clang version string
//! in the `producers` section) with `$SIZE` after checking it against the file's length.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::support::{self, Link, golden, stderr, stdout, wasmlink_in};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// The TLS library: `_Thread_local` with threads enabled, so wasm-ld emits TLS EXPORT_INFO.
fn tls_lib() -> PathBuf {
    support::c_fixture(
        "libtls.so",
        Link::Shared,
        &["tls.c"],
        &[],
        &[
            "-pthread",
            "-matomics",
            "-mbulk-memory",
            "-Wl,--shared-memory",
        ],
    )
}

/// Runs `wasmlink ARGS` in `dir` with a clean environment plus `env`.
pub(crate) fn run(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    wasmlink_in(args, Some(dir), env)
}

/// Asserts success with an empty stderr and returns stdout.
pub(crate) fn ok(o: &Output, what: &str) -> String {
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "{what}: exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

/// Replaces every occurrence of `dir` in `s` by `$DIR`.
fn rel(s: &str, dir: &Path) -> String {
    s.replace(&dir.display().to_string(), "$DIR")
}

/// Checks the `size` the report gives against the file's real length, then hides it: the length
/// of a C fixture depends on the clang version string recorded in its `producers` section.
fn hide_size(out: &str, file: &Path) -> String {
    let len = std::fs::metadata(file).unwrap().len();
    let text_line = format!("size:         {len} bytes\n");
    let json_line = format!("  \"size\": {len},\n");
    if out.contains(&text_line) {
        out.replace(&text_line, "size:         $SIZE bytes\n")
    } else if out.contains(&json_line) {
        out.replace(&json_line, "  \"size\": \"$SIZE\",\n")
    } else {
        panic!("size {len} of {} not reported:\n{out}", file.display())
    }
}

/// `support::c_fixture` links to `.<out>.<pid>.tmp` and renames the result, so wasm-ld records
/// that temporary name in the `name` section; report it as the final file name (what it is when
/// the fixture is linked under its own name) so the golden files do not depend on the pid.
fn build_name(out: &str, file: &str) -> String {
    out.replace(&format!(".{file}.{}.tmp", std::process::id()), file)
}

/// Golden `inspect`, `inspect --json` and `nm` for one module in `dir`.
fn golden_module(dir: &Path, file: &str, hide: bool) {
    let path = dir.join(file);
    let fix = |s: String| {
        if hide {
            hide_size(&build_name(&s, file), &path)
        } else {
            s
        }
    };
    let text = fix(ok(&run(dir, &["inspect", file], &[]), "inspect"));
    golden(&format!("inspect/{file}.txt"), &text);
    let json = fix(ok(
        &run(dir, &["inspect", "--json", file], &[]),
        "inspect --json",
    ));
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["format_version"], 1);
    assert_eq!(v["file"], file);
    golden(&format!("inspect/{file}.json"), &json);
    let nm = ok(&run(dir, &["nm", file], &[]), "nm");
    golden(&format!("nm/{file}.txt"), &nm);
    // --defined-only and --undefined-only partition the full listing.
    let def = ok(
        &run(dir, &["nm", "--defined-only", file], &[]),
        "nm --defined-only",
    );
    let undef = ok(
        &run(dir, &["nm", "--undefined-only", file], &[]),
        "nm --undefined-only",
    );
    let mut parts: Vec<&str> = def.lines().chain(undef.lines()).collect();
    let mut all: Vec<&str> = nm.lines().collect();
    parts.sort_unstable();
    all.sort_unstable();
    assert_eq!(parts, all, "{file}: defined + undefined != all");
    assert!(
        def.lines().all(|l| !l.starts_with(' ')),
        "{file}: undefined symbol in --defined-only:\n{def}"
    );
    assert!(
        undef.lines().all(|l| l.starts_with("         ")),
        "{file}: value in --undefined-only:\n{undef}"
    );
}

/// Assembles the WAT fixture `name` into a fresh directory as `name.wasm`.
fn wat_dir(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    support::wat_fixture(name, dir.path(), &format!("{name}.wasm"));
    dir
}

/// Writes a minimal dylink.0 shared library at `path` with these NEEDED and RUNTIME_PATH lists.
fn dylib(path: &Path, needed: &[&str], runpath: &[&str]) {
    let quote = |v: &[&str]| {
        v.iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut d = String::from("(mem-info (memory 0 0))");
    if !needed.is_empty() {
        d += &format!(" (needed {})", quote(needed));
    }
    if !runpath.is_empty() {
        d += &format!(" (runtime-path {})", quote(runpath));
    }
    let wat = format!(r#"(module (@dylink.0 {d}) (import "env" "memory" (memory 0)))"#);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, wat::parse_str(&wat).unwrap()).unwrap();
}

/// `wasmlink ldd ARGS` in `dir` with the default directories off; returns (exit, stdout,
/// stderr) with `dir` replaced by `$DIR`.
fn ldd(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let mut full = vec!["ldd", "--no-default-dirs"];
    full.extend_from_slice(args);
    let o = run(dir, &full, env);
    let (out, err) = (rel(&stdout(&o), dir), rel(&stderr(&o), dir));
    assert!(!err.contains("panicked"), "{err}");
    (o.status.code().expect("killed by a signal"), out, err)
}

// ---------------------------------------------------------------------------------------------
// inspect / nm golden output
// ---------------------------------------------------------------------------------------------

#[test]
fn golden_libbase() {
    support::base_set();
    golden_module(&support::fixtures_out(), "libbase.so", true);
}

#[test]
fn golden_libmid() {
    support::base_set();
    golden_module(&support::fixtures_out(), "libmid.so", true);
}

#[test]
fn golden_main_pie() {
    support::base_set();
    golden_module(&support::fixtures_out(), "main.wasm", true);
}

#[test]
fn golden_tls_library() {
    tls_lib();
    let dir = support::fixtures_out();
    golden_module(&dir, "libtls.so", true);
    // Beyond the golden files: TLS comes from EXPORT_INFO, not from the symbol names.
    let text = ok(&run(&dir, &["inspect", "libtls.so"], &[]), "inspect");
    assert!(
        text.contains("\ntls:          yes, 2 exported symbols\n"),
        "{text}"
    );
    let nm = ok(&run(&dir, &["nm", "libtls.so"], &[]), "nm");
    assert!(
        nm.contains("00000000 D tls      tls_counter [tls]\n"),
        "{nm}"
    );
    assert!(nm.contains("00000010 D tls      tls_buf [tls]\n"), "{nm}");
    assert!(nm.contains("00000020 D data     plain_data\n"), "{nm}");
    // Without threads, _Thread_local is plain data: libbase.so's tls_val is not TLS.
    support::base_set();
    let base = ok(&run(&dir, &["inspect", "libbase.so"], &[]), "inspect");
    assert!(base.contains("\ntls:          no\n"), "{base}");
}

#[test]
fn golden_static_main() {
    let d = wat_dir("static_main");
    golden_module(d.path(), "static_main.wasm", false);
}

#[test]
fn golden_plain_module() {
    let d = wat_dir("plain");
    golden_module(d.path(), "plain.wasm", false);
}

#[test]
fn golden_legacy_dylink() {
    let d = wat_dir("legacy_dylink");
    golden_module(d.path(), "legacy_dylink.wasm", false);
}

#[test]
fn golden_unknown_subsection() {
    let d = wat_dir("unknown_subsection");
    golden_module(d.path(), "unknown_subsection.wasm", false);
}

#[test]
fn golden_runpath() {
    let d = wat_dir("runpath");
    golden_module(d.path(), "runpath.wasm", false);
}

#[test]
fn golden_weak_and_flags() {
    let d = wat_dir("weak");
    golden_module(d.path(), "weak.wasm", false);
}

#[test]
fn nm_filters() {
    support::base_set();
    let dir = support::fixtures_out();
    let def = ok(
        &run(&dir, &["nm", "--defined-only", "libbase.so"], &[]),
        "nm",
    );
    golden("nm/libbase.so.defined.txt", &def);
    let undef = ok(&run(&dir, &["nm", "-u", "libbase.so"], &[]), "nm -u");
    golden("nm/libbase.so.undefined.txt", &undef);
    let long = ok(
        &run(&dir, &["nm", "--undefined-only", "libbase.so"], &[]),
        "nm",
    );
    assert_eq!(undef, long, "-u and --undefined-only differ");
    // The two filters together are a usage error.
    let o = run(
        &dir,
        &["nm", "--defined-only", "--undefined-only", "libbase.so"],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(o.stdout.is_empty());
    assert!(stderr(&o).contains("cannot be used with"), "{}", stderr(&o));
}

#[test]
fn json_keeps_duplicate_needed_entries() {
    let d = tempfile::tempdir().unwrap();
    dylib(
        &d.path().join("libdup.so"),
        &["libc.so", "libm.so", "libc.so"],
        &[],
    );
    let json = ok(
        &run(d.path(), &["inspect", "--json", "libdup.so"], &[]),
        "inspect",
    );
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(
        v["needed"],
        serde_json::json!(["libc.so", "libm.so", "libc.so"])
    );
    let text = ok(&run(d.path(), &["inspect", "libdup.so"], &[]), "inspect");
    assert!(
        text.contains("\nneeded:       libc.so, libm.so, libc.so\n"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// ldd
// ---------------------------------------------------------------------------------------------

#[test]
fn ldd_tree_with_l() {
    support::base_set();
    let dir = support::fixtures_out();
    let out = ok(&run(&dir, &["ldd", "-L", ".", "main.wasm"], &[]), "ldd");
    golden("ldd/main.wasm.txt", &out);
    // The same from elsewhere, with an absolute -L: absolute paths.
    let o = wasmlink_in(
        &[
            "ldd",
            "-L",
            dir.to_str().unwrap(),
            dir.join("main.wasm").to_str().unwrap(),
        ],
        None,
        &[],
    );
    let out = ok(&o, "ldd");
    assert_eq!(
        rel(&out, &dir),
        "\tlibmid.so => $DIR/libmid.so\n\tlibbase.so => $DIR/libbase.so\n"
    );
}

#[test]
fn ldd_library_path_env() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    dylib(&p.join("app.so"), &["liba.so", "libb.so"], &[]);
    dylib(&p.join("one/liba.so"), &[], &[]);
    dylib(&p.join("two/libb.so"), &[], &[]);
    let env = format!("{}::{}", p.join("one").display(), p.join("two").display());
    let (code, out, err) = ldd(p, &["app.so"], &[("WASMLINK_LIBRARY_PATH", &env)]);
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(
        out,
        "\tliba.so => $DIR/one/liba.so\n\tlibb.so => $DIR/two/libb.so\n"
    );
    // -L is searched before WASMLINK_LIBRARY_PATH.
    dylib(&p.join("first/liba.so"), &[], &[]);
    let first = p.join("first");
    let (code, out, _) = ldd(
        p,
        &["-L", first.to_str().unwrap(), "app.so"],
        &[("WASMLINK_LIBRARY_PATH", &env)],
    );
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "\tliba.so => $DIR/first/liba.so\n\tlibb.so => $DIR/two/libb.so\n"
    );
    // Without the variable nothing is found.
    let (code, out, _) = ldd(p, &["app.so"], &[]);
    assert_eq!(code, 1);
    assert_eq!(out, "\tliba.so => not found\n\tlibb.so => not found\n");
}

#[test]
fn ldd_runpath_origin_is_not_inherited() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    // app/app.so: RUNPATH $ORIGIN/lib, needs liba.so (in app/lib). liba.so needs libb.so, which
    // is also in app/lib, but liba.so has no RUNPATH of its own: the root's does not apply.
    dylib(&p.join("app/app.so"), &["liba.so"], &["$ORIGIN/lib"]);
    dylib(&p.join("app/lib/liba.so"), &["libb.so"], &[]);
    dylib(&p.join("app/lib/libb.so"), &[], &[]);
    let (code, out, err) = ldd(p, &["app/app.so"], &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(
        out,
        "\tliba.so => app/lib/liba.so\n\tlibb.so => not found\n"
    );
    assert_eq!(
        err,
        "wasmlink: libb.so (needed by liba.so): not found; searched nothing (the search path is empty)\n"
    );
    // With its own RUNPATH ($ORIGIN is liba.so's directory) libb.so is found.
    dylib(&p.join("app/lib/liba.so"), &["libb.so"], &["${ORIGIN}"]);
    let (code, out, err) = ldd(p, &["app/app.so"], &[]);
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(
        out,
        "\tliba.so => app/lib/liba.so\n\tlibb.so => app/lib/libb.so\n"
    );
    // An absolute root path: $ORIGIN expands to an absolute directory.
    let abs = p.join("app/app.so");
    let o = run(
        Path::new("/"),
        &["ldd", "--no-default-dirs", abs.to_str().unwrap()],
        &[],
    );
    assert_eq!(
        rel(&ok(&o, "ldd"), p),
        "\tliba.so => $DIR/app/lib/liba.so\n\tlibb.so => $DIR/app/lib/libb.so\n"
    );
    // Root given as a bare file name: $ORIGIN is ".".
    let (code, out, _) = ldd(&p.join("app"), &["app.so"], &[]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "\tliba.so => ./lib/liba.so\n\tlibb.so => ./lib/libb.so\n"
    );
}

#[test]
fn ldd_runpath_fixture() {
    let d = wat_dir("runpath");
    let p = d.path();
    dylib(&p.join("lib/libdep.so"), &[], &[]);
    let (code, out, err) = ldd(p, &["runpath.wasm"], &[]);
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(out, "\tlibdep.so => ./lib/libdep.so\n");
    // When missing, both RUNPATH entries were searched, $ORIGIN expanded.
    std::fs::remove_file(p.join("lib/libdep.so")).unwrap();
    let (code, out, err) = ldd(p, &["runpath.wasm"], &[]);
    assert_eq!(code, 1);
    assert_eq!(out, "\tlibdep.so => not found\n");
    assert_eq!(
        err,
        "wasmlink: libdep.so (needed by runpath.wasm): not found; searched ./lib/libdep.so, /opt/wasm/lib/libdep.so\n"
    );
}

#[test]
fn ldd_needed_name_with_slash_is_a_path() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    dylib(&p.join("app.so"), &["sub/libz.so"], &[]);
    dylib(&p.join("sub/libz.so"), &[], &[]);
    // Relative to the working directory, as ld.so does.
    let (code, out, err) = ldd(p, &["app.so"], &[]);
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(out, "\tsub/libz.so => sub/libz.so\n");
    // Not looked up in the search path: from another directory it is not found, even though
    // -L names a directory holding sub/libz.so.
    let elsewhere = tempfile::tempdir().unwrap();
    let app = p.join("app.so");
    let (code, out, err) = ldd(
        elsewhere.path(),
        &["-L", p.to_str().unwrap(), app.to_str().unwrap()],
        &[],
    );
    assert_eq!(code, 1);
    assert_eq!(out, "\tsub/libz.so => not found\n");
    assert!(err.contains("not found; searched sub/libz.so\n"), "{err}");
}

#[test]
fn ldd_duplicates_and_shared_dependencies_once() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    // Like libc++.so: libc.so twice in NEEDED; and libabi.so needs libc.so as well.
    dylib(
        &p.join("libcxx.so"),
        &["libabi.so", "libc.so", "libc.so"],
        &[],
    );
    dylib(&p.join("libabi.so"), &["libc.so", "libc.so"], &[]);
    dylib(&p.join("libc.so"), &[], &[]);
    let (code, out, err) = ldd(p, &["-L", ".", "libcxx.so"], &[]);
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(out, "\tlibabi.so => ./libabi.so\n\tlibc.so => ./libc.so\n");
}

#[test]
fn ldd_breadth_first_load_order() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    dylib(&p.join("app.so"), &["liba.so", "libb.so"], &[]);
    dylib(&p.join("liba.so"), &["libc.so"], &[]);
    dylib(&p.join("libb.so"), &["libd.so"], &[]);
    dylib(&p.join("libc.so"), &[], &[]);
    dylib(&p.join("libd.so"), &[], &[]);
    let (code, out, _) = ldd(p, &["-L", ".", "app.so"], &[]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "\tliba.so => ./liba.so\n\tlibb.so => ./libb.so\n\tlibc.so => ./libc.so\n\tlibd.so => ./libd.so\n"
    );
}

#[test]
fn ldd_cycle_terminates() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    dylib(&p.join("liba.so"), &["libb.so"], &[]);
    dylib(&p.join("libb.so"), &["liba.so"], &[]);
    let (code, out, err) = ldd(p, &["-L", ".", "liba.so"], &[]);
    assert_eq!((code, err.as_str()), (0, ""));
    // liba.so is the root: needed again through libb.so, it is the library already loaded (as
    // the runtime linker does), so it is not listed again.
    assert_eq!(out, "\tlibb.so => ./libb.so\n");
    // A self-dependency terminates too, and lists nothing.
    dylib(&p.join("libself.so"), &["libself.so"], &[]);
    let (code, out, _) = ldd(p, &["-L", ".", "libself.so"], &[]);
    assert_eq!((code, out.as_str()), (0, ""));
}

#[test]
fn ldd_missing_library_names_the_search() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    dylib(
        &p.join("app.so"),
        &["liba.so", "libwasmlink-test-missing.so"],
        &[],
    );
    dylib(&p.join("lib/liba.so"), &[], &[]);
    let env = p.join("env").display().to_string();
    let (code, out, err) = ldd(
        p,
        &["-L", "lib", "app.so"],
        &[("WASMLINK_LIBRARY_PATH", &env)],
    );
    assert_eq!(code, 1);
    assert_eq!(
        out,
        "\tliba.so => lib/liba.so\n\tlibwasmlink-test-missing.so => not found\n"
    );
    assert_eq!(
        err,
        "wasmlink: libwasmlink-test-missing.so (needed by app.so): not found; searched \
         lib/libwasmlink-test-missing.so, $DIR/env/libwasmlink-test-missing.so\n"
    );
    // With the default directories: they are searched last, in the documented order.
    let o = run(p, &["ldd", "-L", "lib", "app.so"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), out);
    assert_eq!(
        stderr(&o),
        "wasmlink: libwasmlink-test-missing.so (needed by app.so): not found; searched \
         lib/libwasmlink-test-missing.so, /usr/local/lib/wasmlink/libwasmlink-test-missing.so, \
         /usr/local/lib/wasm32-wasi/libwasmlink-test-missing.so, \
         /usr/lib/wasm32-wasi/libwasmlink-test-missing.so\n"
    );
}

#[test]
fn ldd_skips_candidates_that_are_not_shared_libraries() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    dylib(&p.join("app.so"), &["liba.so"], &[]);
    std::fs::create_dir_all(p.join("d1")).unwrap();
    std::fs::write(p.join("d1/liba.so"), "not wasm\n").unwrap();
    std::fs::create_dir_all(p.join("d2")).unwrap();
    std::fs::write(p.join("d2/liba.so"), wat::parse_str("(module)").unwrap()).unwrap();
    std::fs::create_dir_all(p.join("d3/liba.so")).unwrap(); // a directory
    std::fs::create_dir_all(p.join("d4")).unwrap();
    let wasm64 =
        r#"(module (@dylink.0 (mem-info (memory 0 0))) (import "env" "memory" (memory i64 0)))"#;
    std::fs::write(p.join("d4/liba.so"), wat::parse_str(wasm64).unwrap()).unwrap();
    dylib(&p.join("d5/liba.so"), &[], &[]);
    let args = [
        "-L", "d1", "-L", "d2", "-L", "d3", "-L", "d4", "-L", "d5", "app.so",
    ];
    let (code, out, err) = ldd(p, &args, &[]);
    assert_eq!((code, err.as_str()), (0, ""));
    assert_eq!(out, "\tliba.so => d5/liba.so\n");
    // Without d5, every rejected candidate is reported with its reason.
    let without_d5 = ["-L", "d1", "-L", "d2", "-L", "d3", "-L", "d4", "app.so"];
    let (code, out, err) = ldd(p, &without_d5, &[]);
    assert_eq!(code, 1);
    assert_eq!(out, "\tliba.so => not found\n");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 4, "{err}");
    assert_eq!(
        lines[0],
        "wasmlink: liba.so (needed by app.so): not found; searched d1/liba.so, d2/liba.so, d3/liba.so, d4/liba.so"
    );
    assert!(
        lines[1].starts_with("wasmlink:   skipped d1/liba.so: not a WebAssembly module"),
        "{err}"
    );
    assert_eq!(
        lines[2],
        "wasmlink:   skipped d2/liba.so: no dylink.0 section: not a shared library"
    );
    assert_eq!(
        lines[3],
        "wasmlink:   skipped d4/liba.so: wasm64 library, wasmlink loads wasm32"
    );
}

/// `SearchPath::find` (what `dlopen` uses: each candidate opened directly, no cache) and
/// `find_cached` (what `ldd` and a load's tree use) take and skip the same candidates for the
/// same reasons; a directory or a FIFO named like the library is no candidate for either, and
/// the FIFO never blocks the search.
#[test]
fn find_and_find_cached_skip_the_same_candidates() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    std::fs::create_dir_all(p.join("d1")).unwrap();
    std::fs::write(p.join("d1/liba.so"), "not wasm\n").unwrap();
    std::fs::create_dir_all(p.join("d2")).unwrap();
    std::fs::write(p.join("d2/liba.so"), wat::parse_str("(module)").unwrap()).unwrap();
    std::fs::create_dir_all(p.join("d3/liba.so")).unwrap(); // a directory
    std::fs::create_dir_all(p.join("d4")).unwrap(); // nothing in it
    std::fs::write(p.join("d5"), "a file where a directory is expected").unwrap();
    std::fs::create_dir_all(p.join("d7")).unwrap();
    let fifo = std::process::Command::new("mkfifo")
        .arg(p.join("d7/liba.so"))
        .status()
        .expect("mkfifo");
    assert!(fifo.success(), "mkfifo failed");
    dylib(&p.join("d6/liba.so"), &[], &[]);
    let search = |dirs: &[&str]| {
        let mut s = wasmlink::resolve::SearchPath::new();
        for dir in dirs {
            s.add_dir(p.join(dir));
        }
        s
    };
    // d7 holds a FIFO named liba.so, ahead of d6: opening it must not block the search.
    let all = ["d1", "d2", "d3", "d4", "d5", "d7", "d6"];
    // On a thread, so a search that blocks on the FIFO fails the test instead of hanging it.
    let (tx, rx) = std::sync::mpsc::channel();
    let blocked = search(&all);
    std::thread::spawn(move || {
        let _ = tx.send(blocked.find("liba.so", None, &[]));
    });
    let direct = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("find blocked on the FIFO")
        .expect("found by find");
    let cached = search(&all)
        .find_cached("liba.so", None, &[], &mut Default::default())
        .expect("found by find_cached");
    assert_eq!(direct.path, p.join("d6/liba.so"));
    assert_eq!(cached.path, direct.path);
    assert!(direct.info.is_dynamic());
    let without = &all[..6];
    let direct = search(without).find("liba.so", None, &[]).unwrap_err();
    let cached = search(without)
        .find_cached("liba.so", None, &[], &mut Default::default())
        .unwrap_err();
    let skipped: Vec<PathBuf> = direct.skipped.iter().map(|(p, _)| p.clone()).collect();
    assert_eq!(skipped, [p.join("d1/liba.so"), p.join("d2/liba.so")]);
    assert_eq!(direct.skipped, cached.skipped);
    assert!(
        direct.skipped[0].1.contains("not a WebAssembly module"),
        "{:?}",
        direct.skipped
    );
    assert!(
        direct.skipped[1].1.contains("no dylink.0 section"),
        "{:?}",
        direct.skipped
    );
}

#[test]
fn ldd_no_default_dirs() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    dylib(&p.join("app.so"), &["libwasmlink-test-missing.so"], &[]);
    let o = run(p, &["ldd", "--no-default-dirs", "app.so"], &[]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(stdout(&o), "\tlibwasmlink-test-missing.so => not found\n");
    assert_eq!(
        stderr(&o),
        "wasmlink: libwasmlink-test-missing.so (needed by app.so): not found; searched nothing (the search path is empty)\n"
    );
    // A module with no needed libraries: nothing to print, success.
    dylib(&p.join("leaf.so"), &[], &[]);
    let o = run(p, &["ldd", "--no-default-dirs", "leaf.so"], &[]);
    assert_eq!(ok(&o, "ldd leaf"), "");
}

#[test]
fn ldd_not_a_dynamic_module() {
    for name in ["static_main", "plain"] {
        let d = wat_dir(name);
        let file = format!("{name}.wasm");
        let o = run(d.path(), &["ldd", &file], &[]);
        assert_eq!(o.status.code(), Some(1), "{name}");
        assert_eq!(stdout(&o), "\tnot a dynamic module (no dylink.0 section)\n");
        assert_eq!(stderr(&o), "");
    }
    // The legacy `dylink` section counts as dynamic.
    let d = wat_dir("legacy_dylink");
    dylib(&d.path().join("liba.so"), &[], &[]);
    let (code, out, _) = ldd(d.path(), &["-L", ".", "legacy_dylink.wasm"], &[]);
    assert_eq!((code, out.as_str()), (0, "\tliba.so => ./liba.so\n"));
}

// ---------------------------------------------------------------------------------------------
// Bad input
// ---------------------------------------------------------------------------------------------

/// A module whose dylink.0 NEEDED subsection promises 5 names but holds one byte of one.
fn corrupt_needed() -> Vec<u8> {
    let mut m = b"\0asm\x01\0\0\0".to_vec();
    let payload = b"\x08dylink.0\x02\x03\x05\x01a";
    m.push(0);
    m.push(payload.len() as u8);
    m.extend_from_slice(payload);
    m
}

#[test]
fn bad_input_is_one_error_line_and_exit_2() {
    support::base_set();
    let base = std::fs::read(support::fixtures_out().join("libbase.so")).unwrap();
    let d = tempfile::tempdir().unwrap();
    let p = d.path();
    std::fs::create_dir(p.join("dir.wasm")).unwrap();
    let files: [(&str, Vec<u8>, &str); 7] = [
        (
            "empty.wasm",
            vec![],
            "empty file, not a WebAssembly module (at offset 0x0)",
        ),
        (
            "text.wasm",
            b"hello, world\n".to_vec(),
            "not a WebAssembly module (bad magic number) (at offset 0x0)",
        ),
        (
            "magic.wasm",
            b"\0asm".to_vec(),
            "module header: unexpected end-of-file (at offset 0x4)",
        ),
        // 100 bytes: inside libbase.so's import section.
        (
            "truncated.so",
            base[..100].to_vec(),
            "unexpected end-of-file (at offset 0x",
        ),
        (
            "corrupt.so",
            corrupt_needed(),
            "dylink.0 section, NEEDED subsection: unexpected end-of-file (at offset 0x18)",
        ),
        (
            "component.wasm",
            b"\0asm\x0d\0\x01\0".to_vec(),
            "this is a WebAssembly component, not a core module (at offset 0x0)",
        ),
        ("missing.wasm", vec![], "no such file or directory"),
    ];
    for (name, bytes, _) in &files {
        if *name != "missing.wasm" {
            std::fs::write(p.join(name), bytes).unwrap();
        }
    }
    let mut cases: Vec<(&str, &str)> = files.iter().map(|(n, _, m)| (*n, *m)).collect();
    cases.push(("dir.wasm", "is a directory, not a WebAssembly module"));
    for cmd in [
        &["inspect"][..],
        &["inspect", "--json"],
        &["nm"],
        &["nm", "-u"],
        &["ldd"],
    ] {
        for (file, message) in &cases {
            if *file == "component.wasm" && cmd[0] != "ldd" {
                // inspect and nm describe components (tests/all/component_cli.rs).
                continue;
            }
            let mut args = cmd.to_vec();
            args.push(file);
            let o = run(p, &args, &[]);
            let err = stderr(&o);
            let what = format!("wasmlink {}: stderr {err:?}", args.join(" "));
            assert_eq!(o.status.code(), Some(2), "{what}");
            assert!(o.stdout.is_empty(), "{what}: stdout {:?}", stdout(&o));
            assert!(!err.contains("panicked"), "{what}");
            assert_eq!(err.lines().count(), 1, "{what}");
            assert!(err.ends_with('\n'), "{what}");
            assert!(err.starts_with(&format!("wasmlink: {file}: ")), "{what}");
            assert!(err.contains(message), "{what}: expected {message:?}");
        }
    }
    // The file is named as given, absolute paths too.
    let abs = p.join("empty.wasm");
    let o = wasmlink_in(&["nm", abs.to_str().unwrap()], None, &[]);
    assert!(
        stderr(&o).starts_with(&format!("wasmlink: {}: empty file", abs.display())),
        "{}",
        stderr(&o)
    );
}

#[test]
fn truncation_anywhere_is_an_error_not_a_crash() {
    // Every prefix of a real module either parses (a cut at a section boundary) or fails with
    // exit 2 and one error line; never a panic or another exit status.
    support::base_set();
    let base = std::fs::read(support::fixtures_out().join("libbase.so")).unwrap();
    let d = tempfile::tempdir().unwrap();
    let mut failures = 0;
    for cut in (1..base.len()).step_by(7) {
        let f = d.path().join("cut.so");
        std::fs::write(&f, &base[..cut]).unwrap();
        let o = run(d.path(), &["nm", "cut.so"], &[]);
        let err = stderr(&o);
        assert!(!err.contains("panicked"), "cut {cut}: {err}");
        match o.status.code() {
            Some(0) => assert!(err.is_empty()),
            Some(2) => {
                failures += 1;
                assert!(
                    err.starts_with("wasmlink: cut.so: ") && err.lines().count() == 1,
                    "cut {cut}: {err}"
                );
            }
            c => panic!("cut {cut}: exit {c:?}: {err}"),
        }
    }
    assert!(failures > 50, "only {failures} truncations failed");
}

// ---------------------------------------------------------------------------------------------
// Broken pipes, usage, help
// ---------------------------------------------------------------------------------------------

/// A shared library with 3000 exported functions with long names: nm prints ~250 KB.
fn big_library(dir: &Path) -> PathBuf {
    let mut wat = String::from(
        r#"(module (@dylink.0 (mem-info (memory 0 0))) (import "env" "memory" (memory 0))"#,
    );
    for i in 0..3000 {
        wat += &format!(r#" (func (export "a_rather_long_exported_function_name_number_{i:05}"))"#);
    }
    wat += ")";
    let path = dir.join("libbig.so");
    std::fs::write(&path, wat::parse_str(&wat).unwrap()).unwrap();
    path
}

#[test]
fn broken_pipe_is_not_an_error() {
    let d = tempfile::tempdir().unwrap();
    let lib = big_library(d.path());
    // `wasmlink nm libbig.so | head -1`: read one line, then close the pipe.
    let mut child = Command::new(env!("CARGO_BIN_EXE_wasmlink"))
        .args(["nm", lib.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert_eq!(
        first,
        "00000000 T function a_rather_long_exported_function_name_number_00000 () -> ()\n"
    );
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "stderr: {err}");
    assert_eq!(err, "");
    // The pipe closed before anything was written, for each command.
    let (_, _, main) = support::base_set();
    for args in [
        &["inspect", "--json"][..],
        &["nm"],
        &["ldd", "-L", support::fixtures_out().to_str().unwrap()],
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wasmlink"))
            .args(args)
            .arg(&main)
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
fn nm_of_a_big_library_is_complete_and_sorted() {
    let d = tempfile::tempdir().unwrap();
    big_library(d.path());
    let out = ok(&run(d.path(), &["nm", "libbig.so"], &[]), "nm");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3000);
    assert_eq!(
        lines[2999],
        "00000bb7 T function a_rather_long_exported_function_name_number_02999 () -> ()"
    );
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &[][..],
        &["inspect"],
        &["frobnicate", "x"],
        &["inspect", "--bogus", "x"],
        &["ldd", "-L"],
    ] {
        let o = support::wasmlink(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(o.stdout.is_empty(), "{args:?}: {}", stdout(&o));
        assert!(!stderr(&o).contains("panicked"), "{args:?}");
        assert!(!stderr(&o).is_empty(), "{args:?}");
    }
}

#[test]
fn help_mentions_exit_statuses() {
    let top = ok(&support::wasmlink(&["--help"]), "--help");
    for needle in [
        "Exit status",
        "0    success",
        "1    the command ran and found a problem",
        "2    bad input or usage",
        "127  run/python: the program cannot be loaded or linked",
        "134  run/python: the program trapped",
        "137  run/python: a limit stopped it",
        "starting with `wasmlink: `",
        "WASMLINK_DEBUG=help",
    ] {
        assert!(top.contains(needle), "--help lacks {needle:?}:\n{top}");
    }
    assert!(top.contains("WASMLINK_LIBRARY_PATH"), "{top}");
    for (cmd, needles) in [
        (
            "inspect",
            &["Exit status: 0 success, 2 ", "docs/inspect-json.md"][..],
        ),
        ("nm", &["Exit status: 0 success, 2 ", "w weak undefined"]),
        (
            "ldd",
            &[
                "Exit status: 0 all found, 1 something not found",
                "2 the file is missing",
                "$ORIGIN",
            ],
        ),
    ] {
        let help = ok(&support::wasmlink(&[cmd, "--help"]), cmd);
        // clap may wrap lines: compare with whitespace collapsed.
        let flat = help.split_whitespace().collect::<Vec<_>>().join(" ");
        for n in needles {
            assert!(flat.contains(n), "{cmd} --help lacks {n:?}:\n{help}");
        }
        assert_eq!(ok(&support::wasmlink(&["help", cmd]), "help"), help);
    }
}

// ---------------------------------------------------------------------------------------------
// docs/inspect-json.md
// ---------------------------------------------------------------------------------------------

/// Every key of a JSON value, recursively (the keys of `by_class` are labels, not fields).
fn keys(v: &serde_json::Value, out: &mut std::collections::BTreeSet<String>) {
    if let serde_json::Value::Object(m) = v {
        for (k, v) in m {
            out.insert(k.clone());
            if k != "by_class" {
                keys(v, out);
            }
        }
    }
}

#[test]
fn inspect_json_doc_is_current() {
    let doc = std::fs::read_to_string(support::root().join("docs/inspect-json.md")).unwrap();
    // The example is the real output for libtls.so (apart from the size).
    let start = doc.find("```json\n").expect("json example") + "```json\n".len();
    let end = start + doc[start..].find("```").unwrap();
    let mut example: serde_json::Value = serde_json::from_str(&doc[start..end]).unwrap();
    tls_lib();
    let dir = support::fixtures_out();
    let out = build_name(
        &ok(
            &run(&dir, &["inspect", "--json", "libtls.so"], &[]),
            "inspect",
        ),
        "libtls.so",
    );
    let mut actual: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(actual["size"].as_u64().unwrap() > 0);
    example["size"] = serde_json::json!(0);
    actual["size"] = serde_json::json!(0);
    assert_eq!(
        example, actual,
        "docs/inspect-json.md example is out of date"
    );
    // Every field is documented (as `name` in a table row), and every class label.
    let mut fields = std::collections::BTreeSet::new();
    for f in ["libbase.so", "libtls.so", "main.wasm"] {
        support::base_set();
        let out = ok(&run(&dir, &["inspect", "--json", f], &[]), "inspect");
        keys(&serde_json::from_str(&out).unwrap(), &mut fields);
    }
    for f in &fields {
        assert!(
            doc.contains(&format!("| `{f}` |")),
            "field {f:?} not documented"
        );
    }
    for label in wasmlink_dylink::ImportClass::LABELS
        .iter()
        .chain(&wasmlink_dylink::ExportClass::LABELS)
    {
        assert!(
            doc.contains(&format!("| `{label}` |")),
            "class {label:?} not documented"
        );
    }
    for kind in ["shared-library", "pie-program", "static-program", "plain"] {
        assert!(
            doc.contains(&format!("| `\"{kind}\"` |")),
            "kind {kind:?} not documented"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// WASMLINK_DEBUG=symbols
// ---------------------------------------------------------------------------------------------

#[test]
fn wasmlink_debug_symbols_traces_each_lookup() {
    let dir = tempfile::tempdir().unwrap();
    let def = r#"(module (@dylink.0 (mem-info (memory 0 0)))
        (import "env" "memory" (memory 0))
        (func (export "present") (result i32) i32.const 7))"#;
    let top = r#"(module (@dylink.0 (mem-info (memory 0 0)) (needed "libdef.so"))
        (import "env" "memory" (memory 0))
        (import "env" "present" (func $present (result i32)))
        (import "env" "absent" (func $absent))
        (func (export "top") (result i32) call $absent call $present))"#;
    for (name, wat) in [("libdef.so", def), ("libtop.so", top)] {
        std::fs::write(dir.path().join(name), wat::parse_str(wat).unwrap()).unwrap();
    }
    let (code, out, err) = ldd(
        dir.path(),
        &["-r", "-L", ".", "libtop.so"],
        &[("WASMLINK_DEBUG", "symbols")],
    );
    assert_eq!(
        code, 1,
        "an unresolved strong symbol\nstdout:\n{out}\nstderr:\n{err}"
    );
    assert!(out.contains("absent"), "{out}");
    let lines: Vec<&str> = err.lines().collect();
    for want in [
        "wasmlink::symbols: symbol=present; lookup by libtop.so: found in libdef.so",
        "wasmlink::symbols: symbol=absent; lookup by libtop.so: not found (searched libtop.so, libdef.so)",
    ] {
        assert!(lines.contains(&want), "missing {want:?} in:\n{err}");
    }
    // Only the symbols topic was asked for: no library or binding trace.
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("wasmlink::symbols: symbol=")),
        "{err}"
    );
    let (_, _, quiet) = ldd(dir.path(), &["-r", "-L", ".", "libtop.so"], &[]);
    assert!(
        !quiet.contains("symbol="),
        "no trace without WASMLINK_DEBUG: {quiet}"
    );
}
