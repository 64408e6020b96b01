//! The runtime linker: C programs and libraries built with clang-19, run by `wasmlink run` and
//! through the Rust API.

use std::path::PathBuf;

use wasmlink::resolve::SearchPath;
use wasmlink::{LinkError, ProcessBuilder};

use crate::support::{Link, c_fixture, fixtures_out, stderr, stdout, wasmlink_in};

fn util() -> PathBuf {
    c_fixture("libutil.so", Link::Shared, &["ld_util.c"], &[], &[])
}

fn app() -> PathBuf {
    util();
    c_fixture("libplugin.so", Link::Shared, &["ld_plugin.c"], &[], &[]);
    c_fixture(
        "ld_app.wasm",
        Link::Pie,
        &["ld_app.c"],
        &["libutil.so"],
        &[],
    )
}

fn search() -> SearchPath {
    let mut s = SearchPath::new();
    s.add_dir(fixtures_out());
    s
}

#[test]
fn program_checks_its_own_linking() {
    let app = app();
    let dir = fixtures_out();
    let out = wasmlink_in(
        &["run", "-L", dir.to_str().unwrap(), app.to_str().unwrap()],
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
        "ok data relocation and constructor",
        "ok cross-library call",
        "ok function pointer identity",
        "ok weak undefined data is null",
        "ok weak undefined function is null",
        "ok dlopen",
        "ok dlsym function",
        "ok plugin calls back into main",
        "ok dlsym data",
        "ok dlsym same slot as GOT",
        "ok RTLD_LOCAL symbols stay out of the global scope",
        "ok dlclose",
        "ok stale handle is refused",
        "ok reloaded plugin starts afresh",
        "ok missing library",
        "libnope.so: cannot open shared object file: No such file or directory",
        "failures 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing line {line:?} in:\n{text}"
        );
    }
    assert!(!text.contains("FAILED"), "{text}");
}

#[test]
fn missing_library_names_what_was_searched() {
    let app = app();
    // No -L: libutil.so is nowhere on the search path.
    let out = wasmlink_in(&["run", app.to_str().unwrap()], None, &[]);
    assert_eq!(out.status.code(), Some(127));
    let err = stderr(&out);
    assert!(
        err.contains(
            "error while loading shared libraries: libutil.so: cannot open shared object file"
        ),
        "{err}"
    );
    assert!(
        err.contains("/usr/lib/wasm32-wasi/libutil.so"),
        "searched paths listed: {err}"
    );
}

#[test]
fn undefined_function_fails_at_first_call_or_at_load_with_bind_now() {
    let prog = c_fixture(
        "ld_uses_missing.wasm",
        Link::Pie,
        &["ld_uses_missing.c"],
        &[],
        &[],
    );
    let out = wasmlink_in(&["run", prog.to_str().unwrap()], None, &[]);
    assert_eq!(out.status.code(), Some(134), "{}", stderr(&out));
    assert_eq!(stdout(&out), "before\n", "the program ran until the call");
    assert!(
        stderr(&out).contains("symbol lookup error: undefined symbol: not_defined_anywhere"),
        "{}",
        stderr(&out)
    );

    let out = wasmlink_in(&["run", "--bind-now", prog.to_str().unwrap()], None, &[]);
    assert_eq!(out.status.code(), Some(127));
    assert_eq!(stdout(&out), "", "nothing ran");
    assert!(
        stderr(&out).contains(
            "symbol lookup error: undefined symbol: not_defined_anywhere (ld_uses_missing.wasm)"
        ),
        "{}",
        stderr(&out)
    );
}

#[test]
fn type_mismatch_names_both_sides() {
    // Built without libutil.so (wasm-ld would refuse the mismatch); libutil.so is preloaded.
    let prog = c_fixture("ld_mismatch.wasm", Link::Pie, &["ld_mismatch.c"], &[], &[]);
    let err = ProcessBuilder::new()
        .search_path(search())
        .preload(util())
        .load(&prog)
        .err()
        .expect("must not link");
    let msg = err.to_string();
    assert!(matches!(err, LinkError::TypeMismatch { .. }), "{msg}");
    assert!(
        msg.contains("util_add") && msg.contains("libutil.so") && msg.contains("(i64) -> (i64)"),
        "{msg}"
    );
}

#[test]
fn trap_in_constructor_is_a_load_error() {
    let lib = c_fixture(
        "libctortrap.so",
        Link::Shared,
        &["ld_ctor_trap.c"],
        &[],
        &[],
    );
    let err = ProcessBuilder::new()
        .search_path(search())
        .load(&lib)
        .err()
        .expect("constructor traps");
    let msg = err.to_string();
    assert!(msg.starts_with("libctortrap.so: constructor:"), "{msg}");
    assert!(msg.contains("unreachable"), "{msg}");
}

#[test]
fn dlopen_dlsym_dlclose_from_rust_and_a_real_unload() {
    let app = app();
    let mut p = ProcessBuilder::new()
        .search_path(search())
        .load(&app)
        .unwrap();
    let before = p.libraries().len();
    let h = p
        .dlopen("libplugin.so", wasmlink::process::RTLD_NOW)
        .unwrap();
    let libs = p.libraries();
    assert_eq!(libs.len(), before + 1);
    let plugin = libs
        .iter()
        .find(|l| l.name == "libplugin.so")
        .unwrap()
        .clone();
    let data = p.dlsym(h, "plugin_data").unwrap();
    assert_eq!(
        data,
        wasmlink::Symbol::Data(plugin.memory_base + (data.address() - plugin.memory_base))
    );
    assert_eq!(p.read(data.address(), 4).unwrap(), 1000i32.to_le_bytes());
    p.dlclose(h).unwrap();
    assert_eq!(p.libraries().len(), before, "unloaded");
    assert!(matches!(
        p.dlsym(h, "plugin_run"),
        Err(LinkError::BadHandle(_))
    ));
    // Its data region is given back and reused by the next load.
    let h2 = p
        .dlopen("libplugin.so", wasmlink::process::RTLD_NOW)
        .unwrap();
    let again = p
        .libraries()
        .into_iter()
        .find(|l| l.name == "libplugin.so")
        .unwrap();
    assert_eq!(again.memory_base, plugin.memory_base, "region recycled");
    let addr = p.dlsym(h2, "plugin_data").unwrap().address();
    assert_eq!(p.read(addr, 4).unwrap(), 1000i32.to_le_bytes());
}

#[test]
fn hot_swap_rebinds_every_function_pointer() {
    let app = app();
    let mut p = ProcessBuilder::new()
        .search_path(search())
        .load(&app)
        .unwrap();
    let slot = p.dlsym(0, "util_add").unwrap().address();
    let ty = p.func("util_add").unwrap().ty(p.store_mut());
    let sub = wasmtime::Func::new(p.store_mut(), ty, |_, args, out| {
        out[0] = wasmtime::Val::I32(args[0].unwrap_i32() - args[1].unwrap_i32());
        Ok(())
    });
    p.rebind("util_add", sub).unwrap();
    // util_fp() returns the canonical slot; calling through it now subtracts.
    let fp = p.call("util_fp", &[]).unwrap()[0].unwrap_i32() as u32;
    assert_eq!(fp, slot, "same slot before and after");
    let table = p.table();
    let f = table.get(p.store_mut(), u64::from(fp)).unwrap();
    let f = f.unwrap_func().unwrap();
    let mut out = [wasmtime::Val::I32(0)];
    f.call(
        p.store_mut(),
        &[wasmtime::Val::I32(7), wasmtime::Val::I32(2)],
        &mut out,
    )
    .unwrap();
    assert_eq!(out[0].unwrap_i32(), 5);
}

#[test]
fn real_libc_functions_called_through_the_host_api() {
    // wasi-sdk's libc.so from the componentize-py corpus: 173 imports of its own exports are
    // bound through thunks, its WASI 0.2 imports trap only if called.
    let corpus = crate::support::corpus();
    let mut search = SearchPath::new();
    search.add_dir(&corpus);
    let mut p = ProcessBuilder::new()
        .search_path(search)
        .load(&corpus.join("libc.so"))
        .unwrap();
    let s = p.alloc(64, 8).unwrap();
    p.write(s, b"-12345xyz\0").unwrap();
    let len = p.call("strlen", &[wasmtime::Val::I32(s as i32)]).unwrap();
    assert_eq!(len[0].unwrap_i32(), 9);
    let end = p.alloc(4, 4).unwrap();
    let v = p
        .call(
            "strtol",
            &[
                wasmtime::Val::I32(s as i32),
                wasmtime::Val::I32(end as i32),
                wasmtime::Val::I32(10),
            ],
        )
        .unwrap();
    assert_eq!(v[0].unwrap_i32(), -12345);
    let endp = u32::from_le_bytes(p.read(end, 4).unwrap().try_into().unwrap());
    assert_eq!(endp, s + 6, "strtol stops at 'x'");
    // snprintf(buf, 32, "%d-%s", 42, "ok"): varargs are passed in a buffer on the wasm side.
    let fmt = p.alloc(16, 8).unwrap();
    p.write(fmt, b"%d-%s\0").unwrap();
    let ok = p.alloc(4, 4).unwrap();
    p.write(ok, b"ok\0").unwrap();
    let va = p.alloc(8, 8).unwrap();
    let mut args = 42i32.to_le_bytes().to_vec();
    args.extend_from_slice(&ok.to_le_bytes());
    p.write(va, &args).unwrap();
    let buf = p.alloc(32, 8).unwrap();
    let n = p
        .call(
            "snprintf",
            &[
                wasmtime::Val::I32(buf as i32),
                wasmtime::Val::I32(32),
                wasmtime::Val::I32(fmt as i32),
                wasmtime::Val::I32(va as i32),
            ],
        )
        .unwrap();
    assert_eq!(n[0].unwrap_i32(), 5);
    assert_eq!(p.read_cstr(buf, 32).unwrap(), "42-ok");
}

#[test]
fn wasmlink_debug_traces_libraries_and_bindings() {
    let app = app();
    let dir = fixtures_out();
    let out = wasmlink_in(
        &["run", "-L", dir.to_str().unwrap(), app.to_str().unwrap()],
        None,
        &[("WASMLINK_DEBUG", "libs,bindings")],
    );
    assert_eq!(out.status.code(), Some(0));
    let err = stderr(&out);
    assert!(
        err.contains("loading libutil.so from ") && err.contains("__memory_base=0x"),
        "{err}"
    );
    assert!(
        err.contains("ld_app.wasm: util_add -> libutil.so (direct)"),
        "{err}"
    );
    let quiet = wasmlink_in(
        &["run", "-L", dir.to_str().unwrap(), app.to_str().unwrap()],
        None,
        &[],
    );
    assert_eq!(stderr(&quiet), "", "no trace without WASMLINK_DEBUG");
}

#[test]
fn compiled_code_cache_is_used_and_a_corrupt_entry_is_recompiled() {
    let app = app();
    let dir = fixtures_out();
    let cache = tempfile::tempdir().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec!["run", "-L", dir.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.push(app.to_str().unwrap());
        wasmlink_in(&args, None, &[])
    };
    let cache_arg = cache.path().to_str().unwrap();
    let out = run(&["--cache-dir", cache_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let files: Vec<PathBuf> = crate::support::walk_files(cache.path());
    assert!(!files.is_empty(), "compiled code was written to the cache");
    // Corrupt every entry: the next run must recompile, not crash or trust them.
    for f in &files {
        std::fs::write(f, b"garbage, not a compiled module").unwrap();
    }
    let out = run(&["--cache-dir", cache_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("failures 0"));
    let out = run(&["--no-cache"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

#[test]
fn libpython_and_its_five_libraries_load_link_and_answer() {
    // The 9.4 MB wasi-sdk libpython3.14.so, its needed libraries found on the search path,
    // constructors run (they need WASI 0.2 clocks, environment and random from this host).
    let corpus = crate::support::corpus();
    let mut search = SearchPath::new();
    search.add_dir(&corpus);
    let mut p = ProcessBuilder::new()
        .search_path(search)
        .load(&corpus.join("libpython3.14.so"))
        .unwrap();
    let names: Vec<String> = p.libraries().into_iter().map(|l| l.name).collect();
    assert_eq!(
        names,
        [
            "libpython3.14.so",
            "libwasi-emulated-signal.so",
            "libwasi-emulated-getpid.so",
            "libwasi-emulated-process-clocks.so",
            "libdl.so",
            "libc.so"
        ]
    );
    let v = p.call("Py_GetVersion", &[]).unwrap()[0].unwrap_i32() as u32;
    let version = p.read_cstr(v, 200).unwrap();
    assert!(version.starts_with("3.14"), "{version}");
}

#[test]
fn ldd_r_over_the_corpus_reports_only_what_no_core_host_provides() {
    let corpus = crate::support::corpus();
    for lib in [
        "libc.so",
        "libc++.so",
        "libc++abi.so",
        "libpython3.14.so",
        "libdl.so",
        "libwasi-emulated-mman.so",
        "libwasi-emulated-process-clocks.so",
        "libwasi-emulated-getpid.so",
        "libwasi-emulated-signal.so",
        "libcomponentize_py_runtime_sync.so",
        "libcomponentize_py_runtime_async.so",
    ] {
        let out = wasmlink_in(&["ldd", "-r", "-L", ".", lib], Some(&corpus), &[]);
        let text = stdout(&out);
        let undefined: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("undefined symbol: "))
            .collect();
        if lib == "libcomponentize_py_runtime_async.so" {
            // Component-model async intrinsics imported from `$root`: no core-wasm host has them.
            assert_eq!(out.status.code(), Some(1), "{lib}");
            assert!(!undefined.is_empty());
            assert!(
                undefined
                    .iter()
                    .all(|l| l.starts_with("undefined symbol: $root.[")),
                "{text}"
            );
        } else {
            assert_eq!(out.status.code(), Some(0), "{lib}: {text}{}", stderr(&out));
            assert!(undefined.is_empty(), "{lib}: {text}");
        }
    }
    // A fixture with a strong undefined function is reported, with its library.
    let prog = c_fixture(
        "ld_uses_missing.wasm",
        Link::Pie,
        &["ld_uses_missing.c"],
        &[],
        &[],
    );
    let out = wasmlink_in(&["ldd", "-r", prog.to_str().unwrap()], None, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout(&out),
        "undefined symbol: not_defined_anywhere\t(ld_uses_missing.wasm)\n"
    );
}

#[test]
fn plain_modules_linked_by_module_name() {
    use crate::support::wat_fixture;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let app = wat_fixture("pm_app", d, "app.wasm");
    wat_fixture("pm_math", d, "math.wasm");
    // math.wasm is found as NAME.wasm on the search path; exit = 2+3 + 100 + 7.
    let out = wasmlink_in(
        &["run", "-L", d.to_str().unwrap(), app.to_str().unwrap()],
        None,
        &[],
    );
    assert_eq!(out.status.code(), Some(112), "{}", stderr(&out));
    // --module NAME=PATH names the file explicitly.
    let elsewhere = wat_fixture("pm_math", d, "other-math.wasm");
    std::fs::remove_file(d.join("math.wasm")).unwrap();
    let m = format!("math={}", elsewhere.display());
    let out = wasmlink_in(&["run", "--module", &m, app.to_str().unwrap()], None, &[]);
    assert_eq!(out.status.code(), Some(112), "{}", stderr(&out));
    // Missing: the error names the file and where it looked.
    let out = wasmlink_in(
        &["run", "-L", d.to_str().unwrap(), app.to_str().unwrap()],
        None,
        &[],
    );
    assert_eq!(out.status.code(), Some(127));
    assert!(
        stderr(&out).contains("math.wasm: cannot open shared object file"),
        "{}",
        stderr(&out)
    );
    assert!(
        stderr(&out).contains(&d.join("math.wasm").display().to_string()),
        "{}",
        stderr(&out)
    );
    // A cycle is an error naming it.
    let a = wat_fixture("pm_a", d, "pm_a.wasm");
    wat_fixture("pm_b", d, "pm_b.wasm");
    let out = wasmlink_in(
        &["run", "-L", d.to_str().unwrap(), a.to_str().unwrap()],
        None,
        &[],
    );
    assert_eq!(out.status.code(), Some(127));
    assert!(
        stderr(&out).contains("module import cycle: pm_a -> pm_b -> pm_a"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn reload_swaps_in_a_new_build_for_pointers_and_with_hot_swap_for_every_call() {
    c_fixture("libswap.so", Link::Shared, &["ld_swap_v1.c"], &[], &[]);
    let v2 = c_fixture("libswap-v2.so", Link::Shared, &["ld_swap_v2.c"], &[], &[]);
    let main = c_fixture(
        "ld_swap_main.wasm",
        Link::Pie,
        &["ld_swap_main.c"],
        &["libswap.so"],
        &[],
    );
    let i32_of = |v: Vec<wasmtime::Val>| v[0].unwrap_i32();

    let mut p = ProcessBuilder::new()
        .search_path(search())
        .hot_swap(true)
        .load(&main)
        .unwrap();
    assert_eq!(i32_of(p.call("call_direct", &[]).unwrap()), 1);
    assert_eq!(i32_of(p.call("call_ptr", &[]).unwrap()), 1);
    let before = p.dlsym(0, "swap_value").unwrap();
    assert_eq!(p.reload("libswap.so", &v2).unwrap(), ["swap_value"]);
    assert_eq!(
        i32_of(p.call("call_direct", &[]).unwrap()),
        2,
        "cross-library call sees the new build"
    );
    assert_eq!(
        i32_of(p.call("call_ptr", &[]).unwrap()),
        2,
        "function pointer sees the new build"
    );
    assert_eq!(
        p.dlsym(0, "swap_value").unwrap(),
        before,
        "same slot, new code"
    );

    // Without hot swap, calls bound at load keep the old code; pointers still move.
    let mut p = ProcessBuilder::new()
        .search_path(search())
        .load(&main)
        .unwrap();
    p.reload("libswap.so", &v2).unwrap();
    assert_eq!(i32_of(p.call("call_direct", &[]).unwrap()), 1);
    assert_eq!(i32_of(p.call("call_ptr", &[]).unwrap()), 2);
    assert!(matches!(
        p.reload("libnothere.so", &v2),
        Err(LinkError::NoSuchSymbol { .. })
    ));
}

#[test]
fn thread_local_data_is_shared_between_a_library_and_the_program() {
    c_fixture("libtlsdata.so", Link::Shared, &["ld_tls_lib.c"], &[], &[]);
    let main = c_fixture(
        "ld_tls_main.wasm",
        Link::Pie,
        &["ld_tls_main.c"],
        &["libtlsdata.so"],
        &[],
    );
    let dir = fixtures_out();
    let out = wasmlink_in(
        &["run", "-L", dir.to_str().unwrap(), main.to_str().unwrap()],
        None,
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "exit code names the failed check; {}",
        stderr(&out)
    );
    // dlsym of the TLS symbol gives the address the library itself uses.
    let mut p = ProcessBuilder::new()
        .search_path(search())
        .load(&main)
        .unwrap();
    let addr = p.call("tls_addr", &[]).unwrap()[0].unwrap_i32() as u32;
    assert_eq!(p.dlsym(0, "tls_counter").unwrap().address(), addr);
    assert_eq!(p.read(addr, 4).unwrap(), 40i32.to_le_bytes());
}

#[test]
fn compiled_modules_are_shared_through_the_in_memory_cache() {
    let app = app();
    let cache = wasmlink::process::ModuleCache::new(64 << 20);
    let load = || {
        ProcessBuilder::new()
            .search_path(search())
            .cache_dir(None)
            .module_cache(Some(cache.clone()))
            .load(&app)
            .unwrap()
    };
    let mut p1 = load();
    let first = cache.stats();
    // ld_app.wasm, libutil.so, and any thunk module or WASI shim they need: each compiled once.
    let lookups = first.hits + first.misses;
    assert!(first.misses >= 2, "{first:?}");
    assert_eq!(first.entries as u64, first.misses, "{first:?}");
    p1.dlopen("libplugin.so", wasmlink::process::RTLD_NOW)
        .unwrap();
    let after_plugin = cache.stats();
    assert!(
        after_plugin.misses > first.misses,
        "libplugin.so was compiled"
    );
    let m = after_plugin.misses;
    // A second process compiles nothing: every module comes from the cache.
    let mut p2 = load();
    let s = cache.stats();
    assert_eq!(
        (s.hits, s.misses),
        (after_plugin.hits + lookups, m),
        "{s:?}"
    );
    let h = p2
        .dlopen("libplugin.so", wasmlink::process::RTLD_NOW)
        .unwrap();
    let s = cache.stats();
    assert_eq!(s.misses, m, "{s:?}");
    assert!(s.bytes > 0 && s.bytes <= s.capacity);
    // A module from the cache links and runs as well as a fresh one.
    let run = p2.dlsym(h, "plugin_run").unwrap();
    assert!(matches!(run, wasmlink::Symbol::Function(_)));
    let data = p2.dlsym(h, "plugin_data").unwrap().address();
    assert_eq!(p2.read(data, 4).unwrap(), 1000i32.to_le_bytes());
    // Without a cache nothing is recorded.
    ProcessBuilder::new()
        .search_path(search())
        .cache_dir(None)
        .module_cache(None)
        .load(&app)
        .unwrap();
    assert_eq!(cache.stats().misses, m);
}

#[test]
fn twenty_thousand_dlopen_dlclose_cycles() {
    let app = app();
    let mut p = ProcessBuilder::new()
        .search_path(search())
        .cache_dir(None)
        .load(&app)
        .unwrap();
    let libs = p.libraries().len();
    let mut first_base = None;
    for cycle in 0..20_000 {
        let h = p
            .dlopen("libplugin.so", wasmlink::process::RTLD_NOW)
            .unwrap_or_else(|e| panic!("cycle {cycle}: {e}"));
        let data = p.dlsym(h, "plugin_data").unwrap().address();
        let base = *first_base.get_or_insert(data);
        assert_eq!(data, base, "cycle {cycle}: data region reused");
        p.dlclose(h).unwrap();
    }
    assert_eq!(p.libraries().len(), libs);
}

#[test]
fn running_out_of_instances_is_a_clear_link_error() {
    let app = app();
    // Copies of libplugin.so under other names: a dlopen/dlclose cycle of one library reuses
    // its parked instance, but each distinct library needs one of its own.
    let copies = tempfile::tempdir().unwrap();
    let plugin = std::fs::read(fixtures_out().join("libplugin.so")).unwrap();
    for i in 0..16 {
        std::fs::write(copies.path().join(format!("libplugin{i}.so")), &plugin).unwrap();
    }
    let mut path = search();
    path.add_dir(copies.path());
    let mut p = ProcessBuilder::new()
        .search_path(path)
        .max_instances(8)
        .load(&app)
        .unwrap();
    // Each distinct library leaves its instance in the store, so the bound is reached.
    let mut opened = 0;
    let err = loop {
        match p.dlopen(
            &format!("libplugin{opened}.so"),
            wasmlink::process::RTLD_NOW,
        ) {
            Ok(h) => {
                opened += 1;
                assert!(opened <= 8, "the bound of 8 instances was not enforced");
                p.dlclose(h).unwrap();
            }
            Err(e) => break e,
        }
    };
    assert!(opened >= 1, "the first dlopen fits: {err}");
    let failed = format!("libplugin{opened}.so");
    assert!(
        matches!(&err, LinkError::Exhausted { library, what: "instances", .. } if *library == failed),
        "{err:?}"
    );
    assert!(
        err.to_string().starts_with(&format!(
            "{failed}: out of instances: the process already holds 8 wasmtime instances, its limit"
        )),
        "{err}"
    );
    // The failed load left nothing behind, and the process still works.
    assert!(p.libraries().iter().all(|l| l.name != failed));
    assert!(p.dlsym(0, "util_add").is_ok());
}
