//! The runtime linker's harder cases: interposition with `--preload`, `RTLD_NEXT` wrappers,
//! cyclic needed libraries, C++ virtual calls across libraries, constructor and destructor
//! order, libdl's flags and refusals, and hostile libraries.
//!
//! The fixtures are `tests/fixtures/c/lc_*` (C and C++, built with clang-19/clang++-19) and
//! `tests/fixtures/wat/lc_*.wat`. They are built into private directories under
//! `support::fixtures_out()`, so the `-L` directory of each case holds only what the case means
//! it to hold. The C programs print `ok WHAT` or `FAILED WHAT` lines that the tests assert.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use wasmlink::resolve::SearchPath;
use wasmlink::{LinkError, ProcessBuilder};

use wasmlink_xtask::cflags::{self, Link};

use crate::support::{fixtures_out, fixtures_src, stderr, stdout, wat_fixture};

/// A private fixture directory under `fixtures_out()`.
fn case_dir(name: &str) -> PathBuf {
    let d = fixtures_out().join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// The lc_* fixtures' usual directory.
fn lc_dir() -> PathBuf {
    case_dir("lc")
}

/// Compiles `tests/fixtures/c/<sources>` into `<dir>/<out>` with clang-19 (clang++-19 with
/// `-fno-exceptions -fno-rtti` for `.cpp`), flags from `wasmlink_xtask::cflags`, linked against
/// `deps` (paths relative to `dir`, recorded as NEEDED), once per test process and output path.
/// A PIE ([`Link::PieAnyMain`]) exports `main(void)` as `main`, `main(argc, argv)` as
/// `__main_argc_argv`. Built under the final file name in a private directory, then renamed
/// into place.
fn build(
    dir: &Path,
    out: &str,
    link: Link,
    sources: &[&str],
    deps: &[&str],
    extra: &[&str],
) -> PathBuf {
    static BUILT: OnceLock<Mutex<HashSet<PathBuf>>> = OnceLock::new();
    let mut built = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let path = dir.join(out);
    if built.contains(&path) {
        return path;
    }
    let cxx = sources.iter().any(|s| s.ends_with(".cpp"));
    let compiler = cflags::compiler(cxx);
    let tmp_dir = dir.join(format!(".build-{}", std::process::id()));
    std::fs::create_dir_all(&tmp_dir).unwrap();
    let tmp = tmp_dir.join(out);
    let sources: Vec<PathBuf> = sources
        .iter()
        .map(|s| fixtures_src().join("c").join(s))
        .collect();
    let build = cflags::Build {
        link,
        cxx,
        sources: &sources,
        libs: deps,
        extra,
        obj_dir: &tmp_dir,
        out: &tmp,
    };
    for mut cmd in build.commands() {
        let output = cmd.current_dir(dir).output().unwrap_or_else(|e| {
            panic!("cannot run {compiler} (install it with the README's test command): {e}")
        });
        assert!(
            output.status.success(),
            "{compiler} failed for {out}:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    std::fs::rename(&tmp, &path).unwrap();
    built.insert(path.clone());
    path
}

fn lib(out: &str, sources: &[&str], deps: &[&str]) -> PathBuf {
    build(&lc_dir(), out, Link::Shared, sources, deps, &[])
}

fn pie(out: &str, sources: &[&str], deps: &[&str]) -> PathBuf {
    build(&lc_dir(), out, Link::PieAnyMain, sources, deps, &[])
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Runs the wasmlink binary; kills it (by its id) and fails the test after 60 s, so a linker
/// that loops (a dependency cycle) fails instead of hanging the suite.
fn wasmlink(args: &[&str]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wasmlink"))
        .args(args)
        .env_remove("WASMLINK_LIBRARY_PATH")
        .env_remove("WASMLINK_DEBUG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out_pipe.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err_pipe.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("wasmlink {args:?} did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out_reader.join().unwrap(),
        stderr: err_reader.join().unwrap(),
    }
}

/// Asserts exit status 0 and that every line of `want` is printed, and nothing FAILED.
fn assert_lines(out: &Output, want: &[&str]) {
    let text = stdout(out);
    let diag = format!("stdout:\n{text}\nstderr:\n{}", stderr(out));
    for line in want {
        assert!(
            text.lines().any(|l| l == *line),
            "missing line {line:?} in\n{diag}"
        );
    }
    assert!(!text.contains("FAILED"), "{diag}");
    assert_eq!(out.status.code(), Some(0), "{diag}");
}

fn search(dirs: &[&Path]) -> SearchPath {
    let mut sp = SearchPath::new();
    sp.set_default_dirs(Vec::new());
    for d in dirs {
        sp.add_dir(d);
    }
    sp
}

// ---------------------------------------------------------------------------------------------
// 1. --preload interposition, 2. RTLD_NEXT wrappers

fn interpose_set() -> PathBuf {
    lib("liblc_util.so", &["lc_util.c"], &[]);
    lib("liblc_preload.so", &["lc_preload.c"], &[]);
    lib("liblc_wrap.so", &["lc_wrap.c"], &[]);
    pie(
        "lc_interpose.wasm",
        &["lc_interpose_main.c"],
        &["liblc_util.so"],
    )
}

#[test]
fn preload_interposes_on_a_needed_library() {
    let main = interpose_set();
    let dir = lc_dir();
    let plain = wasmlink(&["run", "-L", s(&dir), s(&main)]);
    assert_eq!(
        stdout(&plain),
        "util_get 10\nutil_add 5\n",
        "{}",
        stderr(&plain)
    );
    assert_eq!(plain.status.code(), Some(0));

    let pre = dir.join("liblc_preload.so");
    let out = wasmlink(&["run", "--preload", s(&pre), "-L", s(&dir), s(&main)]);
    assert_eq!(
        stdout(&out),
        "util_get 77\nutil_add 5\n",
        "the preload's util_get wins, util_add still comes from liblc_util.so: {}",
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn rtld_next_wrapper_forwards_to_the_next_definition() {
    let main = interpose_set();
    let dir = lc_dir();
    let wrap = dir.join("liblc_wrap.so");
    let out = wasmlink(&["run", "--preload", s(&wrap), "-L", s(&dir), s(&main)]);
    assert_eq!(
        stdout(&out),
        "util_get 10\nutil_add 105\n",
        "liblc_wrap.so's util_add = liblc_util.so's + 100; stderr:\n{}",
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(0));

    // Both preloads together: each interposes on its own symbol.
    let pre = dir.join("liblc_preload.so");
    let out = wasmlink(&[
        "run",
        "--preload",
        s(&pre),
        "--preload",
        s(&wrap),
        "-L",
        s(&dir),
        s(&main),
    ]);
    assert_eq!(
        stdout(&out),
        "util_get 77\nutil_add 105\n",
        "{}",
        stderr(&out)
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Cyclic dependencies

/// liblc_cyca.so needs liblc_cycb.so and liblc_cycb.so needs liblc_cyca.so. wasm-ld cannot link
/// a cycle in one go: liblc_cycb.so is linked against a stand-in liblc_cyca.so (same file name,
/// so NEEDED records `liblc_cyca.so`), then the real liblc_cyca.so against liblc_cycb.so.
fn cyclic_set() -> (PathBuf, PathBuf) {
    let dir = case_dir("lc_cyclic");
    build(
        &case_dir("lc_cyclic/.stub"),
        "liblc_cyca.so",
        Link::Shared,
        &["lc_cyc_stub.c"],
        &[],
        &[],
    );
    build(
        &dir,
        "liblc_cycb.so",
        Link::Shared,
        &["lc_cyc_b.c"],
        &[".stub/liblc_cyca.so"],
        &[],
    );
    build(
        &dir,
        "liblc_cyca.so",
        Link::Shared,
        &["lc_cyc_a.c"],
        &["liblc_cycb.so"],
        &[],
    );
    let main = build(
        &dir,
        "lc_cyc.wasm",
        Link::PieAnyMain,
        &["lc_cyc_main.c"],
        &["liblc_cyca.so", "liblc_cycb.so"],
        &[],
    );
    (dir, main)
}

fn needed_of(path: &Path) -> Vec<String> {
    let info = wasmlink_dylink::ModuleInfo::parse(&std::fs::read(path).unwrap()).unwrap();
    info.dylink.unwrap().needed
}

#[test]
fn cyclic_needed_libraries_load_once_and_call_each_other() {
    let (dir, main) = cyclic_set();
    // The fixture really is a cycle.
    assert_eq!(needed_of(&dir.join("liblc_cyca.so")), ["liblc_cycb.so"]);
    assert_eq!(needed_of(&dir.join("liblc_cycb.so")), ["liblc_cyca.so"]);

    let out = wasmlink(&["run", "-L", s(&dir), s(&main)]);
    assert_lines(
        &out,
        &[
            // cyc_a(n) = 1 + cyc_b(n-1), cyc_b(n) = 10 + cyc_a(n-1), both 0 at n = 0.
            "cyc_a(5) 23",
            "cyc_b(5) 32",
            "ok cross-cycle data a->b",
            "ok cross-cycle data b->a",
            "ok function pointer identity across the cycle",
            "failures 0",
        ],
    );

    // Each library of the cycle is loaded once.
    let p = ProcessBuilder::new()
        .search_path(search(&[&dir]))
        .load(&main)
        .unwrap();
    let names: Vec<String> = p.libraries().into_iter().map(|l| l.name).collect();
    assert_eq!(names, ["lc_cyc.wasm", "liblc_cyca.so", "liblc_cycb.so"]);

    // A library of the cycle as the entry point: its partner needs it back.
    let a = dir.join("liblc_cyca.so");
    let out = wasmlink(&["run", "-L", s(&dir), s(&a), "--invoke", "cyc_a", "--", "5"]);
    assert_eq!(stdout(&out), "23\n", "{}", stderr(&out));
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn ldd_terminates_on_a_dependency_cycle() {
    let (dir, main) = cyclic_set();
    let out = wasmlink(&["ldd", "--no-default-dirs", "-L", s(&dir), s(&main)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let d = dir.display();
    assert_eq!(
        stdout(&out),
        format!("\tliblc_cyca.so => {d}/liblc_cyca.so\n\tliblc_cycb.so => {d}/liblc_cycb.so\n")
    );
    // From inside the cycle: the partner first, and the root (needed back) at most once.
    let a = dir.join("liblc_cyca.so");
    let out = wasmlink(&["ldd", "--no-default-dirs", "-L", s(&dir), s(&a)]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        format!("\tliblc_cycb.so => {d}/liblc_cycb.so"),
        "{text}"
    );
    assert!(lines.len() <= 2, "{text}");
    assert!(
        lines[1..]
            .iter()
            .all(|l| *l == format!("\tliblc_cyca.so => {d}/liblc_cyca.so")),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. C++ virtual calls across libraries

fn objdump_imports(path: &Path) -> String {
    let out = Command::new("wasm-objdump")
        .args(["-x", "-j", "Import"])
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("cannot run wasm-objdump (wabt, see scripts/setup.sh): {e}"));
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

#[test]
fn cxx_virtual_calls_cross_the_library_boundary() {
    let shape = lib("liblc_shape.so", &["lc_shape.cpp"], &[]);
    let main = pie("lc_shape.wasm", &["lc_shape_main.cpp"], &["liblc_shape.so"]);
    // main constructs a Square (library class): the vtable comes in through GOT.mem; main's own
    // vtable for Tri holds the inherited Shape::sides through GOT.func.
    let imports = objdump_imports(&main);
    assert!(
        imports.contains("<- GOT.mem._ZTV6Square"),
        "vtable through GOT.mem:\n{imports}"
    );
    assert!(
        imports.contains("<- GOT.func._ZNK5Shape5sidesEv"),
        "method through GOT.func:\n{imports}"
    );

    let dir = lc_dir();
    let out = wasmlink(&["run", "-L", s(&dir), s(&main)]);
    assert_lines(
        &out,
        &[
            "ok virtual call into the library through the base pointer",
            "ok library vtable in an object main constructed",
            "ok inherited library method in main's vtable",
            // Rect 3x4 + Square 5 + Tri 6x4/2, called by the library on main's objects.
            "total_area 49",
            "total_sides 8",
            "ok operator new in the library",
            "failures 0",
        ],
    );

    // The vtable main reaches is the library's, and its entries are the canonical slots that
    // dlsym gives for the methods (function pointers compare equal everywhere).
    let mut p = ProcessBuilder::new()
        .search_path(search(&[&dir]))
        .load(&main)
        .unwrap();
    let lib_info = p
        .libraries()
        .into_iter()
        .find(|l| l.path == shape)
        .expect("liblc_shape.so loaded");
    let vt = p.dlsym(0, "_ZTV6Square").unwrap();
    assert!(matches!(vt, wasmlink::Symbol::Data(_)), "{vt:?}");
    let vt = vt.address();
    assert!(
        vt >= lib_info.memory_base && vt < lib_info.memory_base + lib_info.memory_size,
        "_ZTV6Square at {vt:#x} is in liblc_shape.so's data region"
    );
    // Itanium layout without RTTI: offset-to-top, null type info, then the virtual functions.
    let word = |p: &wasmlink::Process, at: u32| {
        u32::from_le_bytes(p.read(at, 4).unwrap().try_into().unwrap())
    };
    assert_eq!(word(&p, vt), 0);
    assert_eq!(word(&p, vt + 4), 0);
    let area = p.dlsym(0, "_ZNK6Square4areaEv").unwrap().address();
    let sides = p.dlsym(0, "_ZNK6Square5sidesEv").unwrap().address();
    assert_eq!(word(&p, vt + 8), area, "vtable slot 0 = Square::area");
    assert_eq!(word(&p, vt + 12), sides, "vtable slot 1 = Square::sides");
    assert_eq!(p.run_main().unwrap(), 0);
}

// ---------------------------------------------------------------------------------------------
// 5. Constructor and destructor order

fn order_set() -> PathBuf {
    lib("liblc_ord_a.so", &["lc_order_a.c"], &[]);
    lib("liblc_ord_b.so", &["lc_order_b.c"], &["liblc_ord_a.so"]);
    lib("liblc_ord_plug.so", &["lc_order_plug.c"], &[]);
    lib("liblc_ord_bare.so", &["lc_order_bare.c"], &[]);
    pie("lc_order.wasm", &["lc_order_main.c"], &["liblc_ord_b.so"])
}

#[test]
fn constructors_run_dependencies_first_and_destructors_in_reverse() {
    let main = order_set();
    let dir = lc_dir();
    let out = wasmlink(&["run", "-L", s(&dir), s(&main)]);
    assert_eq!(
        stdout(&out),
        "ctor A\nctor B\nctor main\nmain start\n\
         ctor plug\ndtor plug\nafter dlclose\n\
         ctor bare\ndtor bare\nafter bare dlclose\n\
         main end\ndtor main\ndtor B\ndtor A\n",
        "stderr:\n{}",
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

// ---------------------------------------------------------------------------------------------
// 6. libdl: paths outside the search path, RTLD_NOLOAD, RTLD_GLOBAL, dladdr

/// Runs lc_dl.wasm with a library outside the search path, one inside it (by path) and a
/// symlink inside it to the one outside.
fn run_dl_program() -> (Output, PathBuf, PathBuf) {
    lib("liblc_util.so", &["lc_util.c"], &[]);
    lib("liblc_dl_glob.so", &["lc_dl_glob.c"], &[]);
    lib("liblc_dl_user.so", &["lc_dl_user.c"], &[]);
    lib("liblc_dl_loc.so", &["lc_dl_loc.c"], &[]);
    let inside = lib("liblc_dl_path.so", &["lc_dl_path.c"], &[]);
    let main = pie("lc_dl.wasm", &["lc_dl_main.c"], &["liblc_util.so"]);
    let dir = lc_dir();
    // A valid library outside every search directory, and a symlink to it inside one.
    let outside_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lc_outside");
    std::fs::create_dir_all(&outside_dir).unwrap();
    let outside = outside_dir.join("liblc_dl_outside.so");
    let link = dir.join("liblc_dl_link.so");
    {
        static ONCE: Mutex<()> = Mutex::new(());
        let _g = ONCE.lock().unwrap_or_else(|e| e.into_inner());
        // Copied afresh (the fixture may have been rebuilt), atomically.
        let tmp = outside_dir.join(format!(".liblc_dl_outside.so.{}", std::process::id()));
        std::fs::copy(&inside, &tmp).unwrap();
        std::fs::rename(&tmp, &outside).unwrap();
        if std::fs::read_link(&link).ok().as_deref() != Some(outside.as_path()) {
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(&outside, &link).unwrap();
        }
    }
    let out = wasmlink(&[
        "run",
        "-L",
        s(&dir),
        s(&main),
        "--",
        s(&outside),
        s(&inside),
        s(&link),
    ]);
    (out, outside, link)
}

/// Asserts that each line of `want` is printed (and its FAILED twin is not).
fn assert_printed(out: &Output, want: &[&str]) {
    let text = stdout(out);
    for line in want {
        assert!(
            text.lines().any(|l| l == *line),
            "missing line {line:?} in\nstdout:\n{text}\nstderr:\n{}",
            stderr(out)
        );
    }
}

#[test]
fn libdl_refuses_outside_paths_noload_global_and_dladdr() {
    let (out, outside, link) = run_dl_program();
    let refused = |p: &Path| {
        format!(
            "{}: cannot open shared object file: Operation not permitted",
            p.display()
        )
    };
    assert_printed(
        &out,
        &[
            "ok dlopen outside the search path is refused",
            &refused(&outside),
            "ok dlopen through a symlink to outside is refused",
            &refused(&link),
            "ok dlopen by a path inside the search path",
            "ok RTLD_NOLOAD of a library not loaded is NULL",
            "ok RTLD_NOLOAD failure sets dlerror",
            "ok RTLD_NOLOAD of a needed library gives a handle",
            "ok RTLD_NOLOAD does not load it",
            "ok before RTLD_GLOBAL dlopen the symbol is unknown",
            "ok dlopen RTLD_GLOBAL",
            "ok RTLD_NOLOAD of a loaded library gives its handle",
            "ok RTLD_GLOBAL function visible to dlsym(RTLD_DEFAULT)",
            "ok RTLD_GLOBAL data visible to dlsym(RTLD_DEFAULT)",
            "ok dlsym(RTLD_DEFAULT) and dlsym(handle) agree",
            "ok a later library binds to the RTLD_GLOBAL library",
            "ok dladdr of a function",
            "ok dladdr names the library file",
            "ok dladdr names the function",
            "ok dladdr of data names the library file",
            "ok dladdr of a dlsym'd function",
            "ok dladdr of the program's own function",
            "ok dladdr of NULL fails",
            "ok RTLD_LOCAL library stays out of the global scope",
        ],
    );
}

/// `dlsym(handle, name)` searches the handle's library and its dependencies: when the global
/// scope defines the same name, the handle's own definition still comes back, and asking for it
/// does not change what everyone else's pointer to that name calls.
#[test]
fn dlsym_with_a_handle_returns_that_librarys_own_definition() {
    lib("liblc_preload.so", &["lc_preload.c"], &[]);
    let (out, _, _) = run_dl_program();
    assert_printed(
        &out,
        &[
            "ok dlsym(handle) gives the handle's own definition",
            "ok dlsym(RTLD_DEFAULT) still gives the global definition",
            "ok the two are different function pointers",
        ],
    );
}

/// glibc: a successful RTLD_NOLOAD dlopen is an open (the count goes up, each needs its
/// dlclose), and RTLD_NOLOAD | RTLD_GLOBAL promotes an RTLD_LOCAL library to the global scope.
#[test]
fn rtld_noload_counts_as_an_open_and_promotes_to_global() {
    let (out, _, _) = run_dl_program();
    assert_lines(
        &out,
        &[
            "ok dlclose of the RTLD_NOLOAD handle",
            "ok still loaded after closing one of two opens",
            "ok dlclose of the first handle",
            "ok RTLD_NOLOAD | RTLD_GLOBAL promotes it",
            "failures 0",
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// 7. Hostile libraries (a constructor that never returns is out of scope: no fuel or epochs)

/// A directory holding the WAT fixtures of the hostile cases.
fn hostile_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = case_dir("lc_hostile");
        for (wat, out) in [
            ("lc_bad_data", "liblc_bad_data.so"),
            ("lc_huge_mem", "liblc_huge_mem.so"),
            ("lc_needs_junk", "liblc_needs_junk.so"),
        ] {
            wat_fixture(wat, &dir, out);
        }
        dir
    })
    .clone()
}

/// A healthy process to dlopen hostile libraries into: lc_interpose.wasm and liblc_util.so.
fn healthy_process() -> wasmlink::Process {
    let main = interpose_set();
    ProcessBuilder::new()
        .search_path(search(&[&lc_dir(), &hostile_dir()]))
        .load(&main)
        .unwrap()
}

/// After a failed load the process is intact: its libraries work and another dlopen succeeds.
fn assert_still_healthy(p: &mut wasmlink::Process, what: &str) {
    let names: Vec<String> = p.libraries().into_iter().map(|l| l.name).collect();
    assert_eq!(
        names,
        ["lc_interpose.wasm", "liblc_util.so"],
        "{what}: nothing of the failed load is left"
    );
    let r = p
        .call("util_add", &[wasmtime::Val::I32(2), wasmtime::Val::I32(3)])
        .unwrap();
    assert_eq!(r[0].unwrap_i32(), 5, "{what}");
    let h = p
        .dlopen("liblc_preload.so", wasmlink::process::RTLD_NOW)
        .unwrap();
    assert!(matches!(
        p.dlsym(h, "util_get").unwrap(),
        wasmlink::Symbol::Function(_)
    ));
}

#[test]
fn data_segment_beyond_mem_info_fails_to_load() {
    let dir = hostile_dir();
    let mut p = healthy_process();
    let err = p
        .dlopen("liblc_bad_data.so", wasmlink::process::RTLD_NOW)
        .expect_err("a 100-byte data segment in a 4-byte MEM_INFO region must not load");
    let msg = err.to_string();
    assert!(
        msg.contains("liblc_bad_data.so"),
        "names the library: {msg}"
    );
    assert_still_healthy(&mut p, "after liblc_bad_data.so");

    // The same through the CLI: a load error (127), not a panic (101).
    let main = interpose_set();
    let out = wasmlink(&[
        "run",
        "--preload",
        s(&dir.join("liblc_bad_data.so")),
        "-L",
        s(&lc_dir()),
        s(&main),
    ]);
    assert_eq!(
        out.status.code(),
        Some(127),
        "stdout:\n{}\nstderr:\n{}",
        stdout(&out),
        stderr(&out)
    );
    assert!(
        stderr(&out).contains("liblc_bad_data.so"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn huge_mem_info_is_out_of_linear_memory() {
    let dir = hostile_dir();
    let mut p = healthy_process();
    let err = p
        .dlopen("liblc_huge_mem.so", wasmlink::process::RTLD_NOW)
        .expect_err("a 0xffffff00-byte MEM_INFO cannot be laid out");
    let msg = err.to_string();
    assert!(
        matches!(&err, LinkError::Exhausted { library, what: "linear memory", .. } if library == "liblc_huge_mem.so"),
        "{msg}"
    );
    assert!(
        msg.starts_with("liblc_huge_mem.so: out of linear memory"),
        "{msg}"
    );
    assert_still_healthy(&mut p, "after liblc_huge_mem.so");

    let main = interpose_set();
    let out = wasmlink(&[
        "run",
        "--preload",
        s(&dir.join("liblc_huge_mem.so")),
        "-L",
        s(&lc_dir()),
        s(&main),
    ]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("liblc_huge_mem.so: out of linear memory"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stdout(&out), "", "nothing ran");
}

/// liblc_needs_junk.so needs liblc_junk.so; `bad` holds a liblc_junk.so that is not wasm,
/// `good` a real one.
fn junk_dirs() -> (PathBuf, PathBuf, PathBuf) {
    static DIRS: OnceLock<(PathBuf, PathBuf, PathBuf)> = OnceLock::new();
    DIRS.get_or_init(|| {
        let hostile = hostile_dir();
        let bad = case_dir("lc_junk_bad");
        let good = case_dir("lc_junk_good");
        std::fs::write(bad.join("liblc_junk.so"), b"this is not a wasm module\n").unwrap();
        wat_fixture("lc_junk", &good, "liblc_junk.so");
        (hostile.join("liblc_needs_junk.so"), bad, good)
    })
    .clone()
}

#[test]
fn needed_file_that_is_not_wasm_is_skipped_for_a_real_library() {
    let (needs, bad, good) = junk_dirs();
    let junk = bad.join("liblc_junk.so");
    // With a real liblc_junk.so later on the search path, the junk is skipped and the real one
    // loads, as ld.so skips an ELF file of the wrong class.
    let out = wasmlink(&[
        "run",
        "-L",
        s(&bad),
        "-L",
        s(&good),
        s(&needs),
        "--invoke",
        "call_junk",
    ]);
    assert_eq!(stdout(&out), "42\n", "{}", stderr(&out));
    assert_eq!(out.status.code(), Some(0));
    let mut p = ProcessBuilder::new()
        .search_path(search(&[&bad, &good]))
        .load(&needs)
        .unwrap();
    let libs = p.libraries();
    assert_eq!(libs[1].path, good.join("liblc_junk.so"));
    assert_eq!(p.call("call_junk", &[]).unwrap()[0].unwrap_i32(), 42);

    // Only the junk: the model error records what was skipped and why, and ldd lists it.
    let err = ProcessBuilder::new()
        .search_path(search(&[&bad]))
        .load(&needs)
        .err()
        .expect("liblc_junk.so is not a library");
    let LinkError::NotFound(nf) = &err else {
        panic!("expected NotFound, got {err}");
    };
    assert_eq!(nf.name, "liblc_junk.so");
    assert_eq!(nf.skipped.len(), 1, "{:?}", nf.skipped);
    assert_eq!(nf.skipped[0].0, junk);
    assert!(
        nf.skipped[0].1.contains("not a WebAssembly module"),
        "{:?}",
        nf.skipped
    );
    let out = wasmlink(&["ldd", "--no-default-dirs", "-L", s(&bad), s(&needs)]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "\tliblc_junk.so => not found\n");
    assert!(
        stderr(&out).contains(&format!("skipped {}: {}", junk.display(), nf.skipped[0].1)),
        "{}",
        stderr(&out)
    );
}

/// The load error itself (what `wasmlink run` prints) says which candidate was skipped and
/// why, instead of only "No such file or directory" for a file that exists.
#[test]
fn needed_file_that_is_not_wasm_is_reported_with_why_it_was_skipped() {
    let (needs, bad, _) = junk_dirs();
    let junk = bad.join("liblc_junk.so");
    let out = wasmlink(&["run", "-L", s(&bad), s(&needs), "--invoke", "call_junk"]);
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("liblc_junk.so: cannot open shared object file"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "skipped {}: not a WebAssembly module",
            junk.display()
        )),
        "run names the skipped file and why: {err}"
    );
}
