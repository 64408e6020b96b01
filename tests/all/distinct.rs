//! The distinct-libraries benchmark (scripts/bench-distinct.sh, issue 18 item 1) at small N:
//! its generator's libraries and its main, built with the project's clang-19 recipe, run under
//! wasmlink and check every call, cold and warm, under both compilers; so the benchmark cannot
//! silently time a failing program. And the compiler choice (`WASMLINK_COMPILER`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{self, Link, stderr, stdout};
use wasmlink_xtask::cflags;

const N: usize = 5;

/// Generates N libraries with benches/distinct/gen.sh and builds them and the main into `dir`.
fn build(dir: &Path) -> PathBuf {
    let src = dir.join("src");
    let gen_sh = support::root().join("benches/distinct/gen.sh");
    let o = Command::new("bash")
        .arg(&gen_sh)
        .arg(N.to_string())
        .arg(&src)
        .output()
        .unwrap();
    assert!(o.status.success(), "gen.sh: {}", stderr(&o));
    let compile = |link: Link, source: PathBuf, out: &Path, extra: &[&str]| {
        let build = cflags::Build {
            link,
            cxx: false,
            sources: &[source],
            libs: &[],
            extra,
            obj_dir: dir,
            out,
        };
        for mut cmd in build.commands() {
            let o = cmd.current_dir(dir).output().unwrap();
            assert!(o.status.success(), "{}: {}", out.display(), stderr(&o));
        }
    };
    for i in 0..N {
        compile(
            Link::Shared,
            src.join(format!("lib_{i}.c")),
            &dir.join(format!("lib_{i}.so")),
            &[],
        );
    }
    let main = dir.join("main.wasm");
    compile(
        Link::Pie,
        support::root().join("benches/distinct/main.c"),
        &main,
        &["-DDISTINCT_FREESTANDING"],
    );
    main
}

fn run(main: &Path, dir: &Path, cache: &Path, env: &[(&str, &str)]) -> std::process::Output {
    support::wasmlink_in(
        &[
            "run",
            "--cache-dir",
            cache.to_str().unwrap(),
            "-L",
            dir.to_str().unwrap(),
            main.to_str().unwrap(),
            "--",
            &N.to_string(),
            "",
        ],
        None,
        env,
    )
}

/// The figures the main prints after `ok N`, checked to be numbers.
fn check_ok(o: &std::process::Output, what: &str) {
    let out = stdout(o);
    assert_eq!(o.status.code(), Some(0), "{what}: {out}{}", stderr(o));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.first(),
        Some(&format!("ok {N}").as_str()),
        "{what}: {out}"
    );
    for label in ["per_library_us", "first_us", "total_us"] {
        let v: f64 = lines
            .iter()
            .find_map(|l| l.strip_prefix(label)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("{what}: no {label} in {out}"));
        assert!(v > 0.0, "{what}: {label} {v}");
    }
}

fn engine_dirs(cache: &Path) -> usize {
    std::fs::read_dir(cache.join("artifacts"))
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn distinct_libraries_run_cold_warm_and_under_winch() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("libs");
    std::fs::create_dir_all(&dir).unwrap();
    let main = build(&dir);
    let cache = tmp.path().join("cache");
    check_ok(&run(&main, &dir, &cache, &[]), "cranelift cold");
    check_ok(&run(&main, &dir, &cache, &[]), "cranelift warm");
    assert_eq!(engine_dirs(&cache), 1, "one engine's artifacts");
    let winch = [("WASMLINK_COMPILER", "winch")];
    if !cfg!(feature = "winch") {
        // A default build leaves Winch out and says how to get it.
        let o = run(&main, &dir, &cache, &winch);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(127), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.starts_with("wasmlink: ") && !err.starts_with("wasmlink: wasmlink"),
            "{err}"
        );
        assert!(err.contains("--features winch"), "{err}");
        return;
    }
    check_ok(&run(&main, &dir, &cache, &winch), "winch cold");
    check_ok(&run(&main, &dir, &cache, &winch), "winch warm");
    // Winch's code is cached apart: never one compiler's artifact under the other.
    assert_eq!(
        engine_dirs(&cache),
        2,
        "a second engine's artifacts for winch"
    );
}

#[test]
fn a_wrong_library_fails_the_distinct_main() {
    // lib_3.so replaced by lib_2.so: f_3 is missing, and the main says which library failed.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("libs");
    std::fs::create_dir_all(&dir).unwrap();
    let main = build(&dir);
    std::fs::copy(dir.join("lib_2.so"), dir.join("lib_3.so")).unwrap();
    let o = run(&main, &dir, &tmp.path().join("cache"), &[]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{}", stderr(&o));
    assert!(out.contains("FAILED library\nindex 3\n"), "{out}");
    assert!(!out.contains("ok "), "{out}");
}

#[test]
fn an_unknown_compiler_is_one_clear_line() {
    let (_, _, main) = support::base_set();
    let tmp = tempfile::tempdir().unwrap();
    let o = support::wasmlink_in(
        &[
            "run",
            "--cache-dir",
            tmp.path().to_str().unwrap(),
            "-L",
            support::fixtures_out().to_str().unwrap(),
            main.to_str().unwrap(),
        ],
        None,
        &[("WASMLINK_COMPILER", "fast")],
    );
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("WASMLINK_COMPILER") && err.contains("\"fast\" is not a compiler"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert!(!err.starts_with("wasmlink: wasmlink"), "one prefix: {err}");
    assert_eq!(o.status.code(), Some(127), "cannot be loaded: {err}");
}
