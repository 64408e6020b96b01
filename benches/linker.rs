//! Benchmarks of the runtime linker; results and how to read them are in BENCHMARKS.md.
//!
//! Every figure is a ratio against a baseline measured in the same run:
//!
//! 1. `calls/*`: a call through an import bound directly at load, and through a lazily bound
//!    (`call_indirect` thunk) import, against an identical call inside one module.
//! 2. `dlopen/*`: `Process::dlopen` + `dlsym` + `dlclose` of a small library with a warm engine,
//!    against native `dlopen` + `dlsym` + `dlclose` of the same C code built by gcc.
//! 3. `corpus/*`: loading and linking the real wasi-sdk libraries (libpython3.14.so and what it
//!    needs; all 11), against compiling the same modules with plain wasmtime.
//!
//! Fixtures are compiled from `benches/c/` with clang-19 (flags: `wasmlink_xtask::cflags`) and
//! gcc into a temporary directory when the benchmark starts. Run with `cargo bench --bench
//! linker`; a table of the ratios is printed at the end.

// The baseline of the dlopen benchmark calls the host's dlopen/dlsym/dlclose.
#![allow(unsafe_code)]

mod support;

use std::cell::RefCell;
use std::ffi::{CString, c_char, c_int, c_void};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use criterion::{Criterion, SamplingMode, Throughput, black_box};
use wasmlink::process::{ModuleCache, RTLD_GLOBAL, RTLD_NOW};
use wasmlink::resolve::SearchPath;
use wasmlink::{Process, ProcessBuilder, Symbol};
use wasmtime::{Engine, Module, Ref, Val};

use support::Fixtures;

/// Calls per iteration of a `calls/*` benchmark (the loop runs inside wasm).
const CALLS: i32 = 100_000;
/// dlopen/dlclose cycles run in one process before a fresh one is loaded (untimed). A reload
/// reuses the closed library's parked instance, so one process could cycle forever; a fresh
/// one now and then keeps this figure comparable with earlier runs.
const CYCLES_PER_PROCESS: u64 = 250;
/// Rounds of the interleaved call measurement (each round runs every call loop once).
const INTERLEAVED_ROUNDS: usize = 300;

unsafe extern "C" {
    fn dlopen(filename: *const c_char, flag: c_int) -> *mut c_void;
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
    fn dlclose(handle: *mut c_void) -> c_int;
}
const NATIVE_RTLD_NOW: c_int = 2;

/// How compiled code is cached: wasmlink's own settings (`ProcessBuilder::cache_dir` and
/// `ProcessBuilder::module_cache`) and the engine wasmlink uses (`shared_engine`), for the
/// compile-only baselines.
struct Caching {
    /// `None`: no on-disk cache (each load compiles); `Some(dir)`: wasmtime's disk cache there.
    dir: Option<PathBuf>,
    /// The in-memory module cache (`None`: none, so the disk cache or the compiler is asked).
    mem: Option<ModuleCache>,
    engine: Engine,
}

impl Caching {
    fn new(dir: Option<PathBuf>, mem: Option<ModuleCache>) -> Caching {
        let engine = wasmlink::process::shared_engine(dir.as_deref()).expect("engine");
        Caching { dir, mem, engine }
    }
}

fn search(dir: &Path) -> SearchPath {
    let mut s = SearchPath::new();
    s.add_dir(dir);
    s
}

fn builder(fx: &Fixtures, engine: &Caching) -> ProcessBuilder {
    ProcessBuilder::new()
        .search_path(search(fx.dir()))
        .cache_dir(engine.dir.clone())
        .module_cache(engine.mem.clone())
}

fn load_main(fx: &Fixtures, engine: &Caching) -> Process {
    builder(fx, engine)
        .load(&fx.main)
        .expect("load bench_main.wasm")
}

/// A `Write` into a shared buffer, for capturing the linker's `bindings` trace.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Loads the call-benchmark program with the `wasmlink::bindings` trace on (what
/// `WASMLINK_DEBUG=bindings` prints) and returns the process and the trace.
fn load_traced(builder: ProcessBuilder, fx: &Fixtures) -> (Process, String) {
    use tracing_subscriber::util::SubscriberInitExt;
    let cap = Capture::default();
    let writer = cap.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "wasmlink::bindings=debug",
        ))
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let p = {
        let _guard = subscriber.set_default();
        builder.load(&fx.main).expect("load bench_main.wasm")
    };
    let trace = String::from_utf8_lossy(&cap.0.lock().unwrap()).into_owned();
    (p, trace)
}

fn trace_line<'a>(trace: &'a str, needle: &str) -> &'a str {
    trace
        .lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no binding {needle:?} in the trace:\n{trace}"))
}

/// 1. Calls: local, through a directly bound import, through a thunk.
fn calls(
    c: &mut Criterion,
    fx: &Fixtures,
    engine: &Caching,
    bench_mode: bool,
    single: &mut SingleShots,
) {
    // What the loops contain (so nothing was optimised away).
    for (file, func, callee) in [
        (&fx.main, "bench_local", Some("local_inc")),
        (&fx.main, "bench_cross", Some("lib_inc")),
        (&fx.main, "bench_indirect", None),
        (&fx.libbench, "bench_lib_local", Some("lib_local_inc")),
        (&fx.libbench, "bench_lazy", Some("main_inc")),
        (&fx.libbench, "bench_lib_indirect", None),
    ] {
        if let Some(line) = support::assert_calls(file, func, callee) {
            eprintln!("check: {func} loops over `{line}`");
        }
    }
    // How the two imports are bound.
    let (p, trace) = load_traced(builder(fx, engine), fx);
    let direct = trace_line(&trace, "bench_main.wasm: lib_inc -> libbench.so");
    let thunk = trace_line(&trace, "libbench.so: main_inc -> bench_main.wasm");
    assert!(direct.ends_with("(direct)"), "{direct}");
    assert!(thunk.ends_with("(thunk)"), "{thunk}");
    eprintln!("check: binding `{}`", direct.trim());
    eprintln!("check: binding `{}`", thunk.trim());

    // With `hot_swap(true)` the cross-library call is bound through the callee's slot.
    let (q, trace) = load_traced(builder(fx, engine).hot_swap(true), fx);
    let swap = trace_line(&trace, "bench_main.wasm: lib_inc -> libbench.so");
    assert!(swap.ends_with("(thunk)"), "{swap}");
    eprintln!("check: with hot_swap(true), binding `{}`", swap.trim());

    // (benchmark id, exported loop, in the hot_swap process)
    let variants = [
        ("local", "bench_local", false),
        ("import_direct", "bench_cross", false),
        ("call_indirect_local", "bench_indirect", false),
        ("lib_local", "bench_lib_local", false),
        ("import_thunk", "bench_lazy", false),
        ("call_indirect_cross", "bench_lib_indirect", false),
        ("import_hot_swap", "bench_cross", true),
    ];
    let (p, q) = (Rc::new(RefCell::new(p)), Rc::new(RefCell::new(q)));
    let mut funcs: Vec<(&str, IncLoop)> = Vec::new();
    for (id, func, swap) in variants {
        let proc = if swap { q.clone() } else { p.clone() };
        let f = {
            let mut pr = proc.borrow_mut();
            pr.func(func)
                .unwrap()
                .typed::<i32, i32>(pr.store_mut())
                .unwrap()
        };
        funcs.push((
            id,
            Box::new(move |n| f.call(proc.borrow_mut().store_mut(), n).unwrap()),
        ));
    }
    // The floor: plain wasmtime, no wasmlink. Instance A exports `inc`; instance B imports it
    // (wasmtime binds the import to A's own function) and has the same two loops as above.
    let (raw_local, raw_import) = raw_wasmtime_loops(&engine.engine);
    funcs.push(("raw_local", raw_local));
    funcs.push(("raw_import", raw_import));
    for (id, f) in &mut funcs {
        assert_eq!(f(CALLS), CALLS, "{id}");
    }

    let mut g = c.benchmark_group("calls");
    g.throughput(Throughput::Elements(CALLS as u64));
    for (id, f) in &mut funcs {
        g.bench_function(*id, |b| b.iter(|| f(black_box(CALLS))));
    }
    g.finish();

    // The same loops interleaved, round after round. On this shared machine the rounds fall
    // into two modes (the slow one about 1.8x slower: another tenant on the sibling hardware
    // thread or a lower clock); the 10th percentile is in the fast mode for every variant, so
    // its ratios compare like with like. The distribution is printed.
    if bench_mode {
        let mut rounds: Vec<Vec<f64>> = vec![Vec::new(); funcs.len()];
        for _ in 0..INTERLEAVED_ROUNDS {
            for (i, (_, f)) in funcs.iter_mut().enumerate() {
                let start = Instant::now();
                black_box(f(black_box(CALLS)));
                rounds[i].push(start.elapsed().as_nanos() as f64 / f64::from(CALLS));
            }
        }
        eprintln!("interleaved rounds, ns per call: min p10 p25 p50 p75 p90");
        for ((id, _), mut v) in funcs.iter().zip(rounds) {
            v.sort_by(f64::total_cmp);
            let pct = |p: usize| v[(v.len() - 1) * p / 100];
            let q: Vec<String> = [0, 10, 25, 50, 75, 90]
                .iter()
                .map(|&p| format!("{:.2}", pct(p)))
                .collect();
            eprintln!("  {id:20} {}", q.join(" "));
            single.push((format!("interleaved/{id}"), pct(10)));
        }
    }
}

/// One timed `x = inc(x)` loop body.
type IncLoop = Box<dyn FnMut(i32) -> i32>;

/// Plain wasmtime: `x = inc(x)` loops, `inc` local to the looping module, or imported from
/// another instance in the same store.
fn raw_wasmtime_loops(engine: &Engine) -> (IncLoop, IncLoop) {
    let a = wat::parse_str(
        r#"(module (func (export "inc") (param i32) (result i32) local.get 0 i32.const 1 i32.add))"#,
    )
    .unwrap();
    let lp = |callee: &str| {
        format!(
            r#"(func (export "loop_{callee}") (param $n i32) (result i32) (local $x i32)
                 (block $done (loop $l
                   (br_if $done (i32.ge_s (local.get $x) (local.get $n)))
                   (local.set $x (call ${callee} (local.get $x)))
                   (br $l)))
                 local.get $x)"#
        )
    };
    let b = wat::parse_str(format!(
        r#"(module
             (import "a" "inc" (func $import (param i32) (result i32)))
             (func $local (param i32) (result i32) local.get 0 i32.const 1 i32.add)
             {} {})"#,
        lp("local"),
        lp("import")
    ))
    .unwrap();
    let store = Rc::new(RefCell::new(wasmtime::Store::new(engine, ())));
    let (ia, ib) = {
        let mut st = store.borrow_mut();
        let ia = wasmtime::Instance::new(&mut *st, &Module::new(engine, &a).unwrap(), &[]).unwrap();
        let inc = ia.get_func(&mut *st, "inc").unwrap();
        let ib =
            wasmtime::Instance::new(&mut *st, &Module::new(engine, &b).unwrap(), &[inc.into()])
                .unwrap();
        (ia, ib)
    };
    let _ = ia;
    let get = |name: &str| {
        let f = ib
            .get_typed_func::<i32, i32>(&mut *store.borrow_mut(), name)
            .unwrap();
        let st = store.clone();
        Box::new(move |n| f.call(&mut *st.borrow_mut(), n).unwrap()) as Box<dyn FnMut(i32) -> i32>
    };
    (get("loop_local"), get("loop_import"))
}

/// One dlopen + dlsym + dlclose cycle through the Rust API.
fn wasm_cycle(p: &mut Process) -> Symbol {
    let h = p.dlopen("libsmall.so", RTLD_NOW).unwrap();
    let s = p.dlsym(h, "small_fn").unwrap();
    p.dlclose(h).unwrap();
    s
}

/// `iters` cycles, `CYCLES_PER_PROCESS` per freshly loaded process (the load is not timed).
fn wasm_cycles(fx: &Fixtures, engine: &Caching, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let mut p = load_main(fx, engine);
        let n = left.min(CYCLES_PER_PROCESS);
        let start = Instant::now();
        for _ in 0..n {
            black_box(wasm_cycle(&mut p));
        }
        total += start.elapsed();
        left -= n;
    }
    total
}

fn native_cycle(path: &CString, sym: &CString) -> *mut c_void {
    // SAFETY: the library is our own small.c built by gcc; its constructor only sets a static.
    unsafe {
        let h = dlopen(path.as_ptr(), NATIVE_RTLD_NOW);
        assert!(!h.is_null(), "native dlopen failed");
        let s = dlsym(h, sym.as_ptr());
        assert!(!s.is_null(), "native dlsym failed");
        assert_eq!(dlclose(h), 0);
        s
    }
}

/// Checks that both sides of the dlopen benchmark really load and run the library.
fn check_small(fx: &Fixtures, engine: &Caching) {
    let path = CString::new(fx.small_native.as_os_str().to_str().unwrap()).unwrap();
    let sym = CString::new("small_fn").unwrap();
    // SAFETY: as in `native_cycle`; small_fn has the C type int(int).
    let native = unsafe {
        let h = dlopen(path.as_ptr(), NATIVE_RTLD_NOW);
        assert!(!h.is_null());
        let f: extern "C" fn(c_int) -> c_int = std::mem::transmute(dlsym(h, sym.as_ptr()));
        let v = f(1);
        dlclose(h);
        v
    };
    let mut p = load_main(fx, engine);
    let h = p.dlopen("libsmall.so", RTLD_NOW | RTLD_GLOBAL).unwrap();
    let Symbol::Function(slot) = p.dlsym(h, "small_fn").unwrap() else {
        panic!("small_fn is a function");
    };
    let table = p.table();
    let Some(Ref::Func(Some(f))) = table.get(p.store_mut(), u64::from(slot)) else {
        panic!("slot {slot} holds no function");
    };
    let mut out = [Val::I32(0)];
    f.call(p.store_mut(), &[Val::I32(1)], &mut out).unwrap();
    assert_eq!(
        native,
        3 + 1000 + 1,
        "native small_fn(1) = 1*3 + small_counter + small_ready"
    );
    assert_eq!(out[0].unwrap_i32(), native, "wasm small_fn(1)");
    p.dlclose(h).unwrap();
    eprintln!("check: small_fn(1) = {native} natively and in wasm");
}

/// 2. dlopen of a small library, against native dlopen.
fn dlopen_bench(
    c: &mut Criterion,
    fx: &Fixtures,
    engine: &Caching,
    cached: &Caching,
    mem: &Caching,
) {
    check_small(fx, engine);
    // Fill the on-disk and in-memory caches before measuring the cached variants.
    drop(load_main(fx, cached));
    wasm_cycle(&mut load_main(fx, cached));
    wasm_cycle(&mut load_main(fx, mem));
    let before = mem.mem.as_ref().expect("memory cache").stats();
    wasm_cycle(&mut load_main(fx, mem));
    let after = mem.mem.as_ref().expect("memory cache").stats();
    assert_eq!(
        after.misses, before.misses,
        "a warm load and dlopen compile nothing"
    );
    eprintln!(
        "check: with the memory cache a load + dlopen compiles nothing ({} hits, {} modules, {} KiB of code held)",
        after.hits - before.hits,
        after.entries,
        after.bytes / 1024
    );

    let path = CString::new(fx.small_native.as_os_str().to_str().unwrap()).unwrap();
    let sym = CString::new("small_fn").unwrap();
    let bytes = std::fs::read(&fx.small_wasm).unwrap();

    let mut g = c.benchmark_group("dlopen");
    g.bench_function("native", |b| b.iter(|| native_cycle(&path, &sym)));
    g.bench_function("wasmlink", |b| {
        b.iter_custom(|iters| wasm_cycles(fx, engine, iters))
    });
    g.bench_function("wasmlink_disk_cache", |b| {
        b.iter_custom(|iters| wasm_cycles(fx, cached, iters))
    });
    g.bench_function("wasmlink_memory_cache", |b| {
        b.iter_custom(|iters| wasm_cycles(fx, mem, iters))
    });
    g.bench_function("compile_only", |b| {
        b.iter(|| Module::new(&engine.engine, &bytes).unwrap())
    });
    g.bench_function("compile_only_disk_cache", |b| {
        b.iter(|| Module::new(&cached.engine, &bytes).unwrap())
    });
    g.finish();
}

/// Resident set size of this process, from /proc/self/status (0 where there is none).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// What repeated dlopen/dlsym/call/dlclose does to one process (not a criterion benchmark): the
/// mean of the first and last 1,000 cycles, and the table, memory, store instances and RSS
/// before and after.
fn dlopen_growth(fx: &Fixtures, cached: &Caching, cycles: usize) -> String {
    // One process for the whole run: a reloaded library reuses its parked instance.
    let mut p = load_main(fx, cached);
    let table = p.table();
    let memory = p.memory();
    // One cycle first, so that "before" holds the library's parked copy as "after" does.
    let h = p.dlopen("libsmall.so", RTLD_NOW).unwrap();
    p.dlclose(h).unwrap();
    let t0 = table.size(p.store_mut());
    let m0 = memory.data_size(p.store_mut());
    let i0 = p.instance_count();
    let r0 = rss_kib();
    let mut times = Vec::with_capacity(cycles);
    let mut failure = String::new();
    let mut out = [Val::I32(0)];
    for i in 0..cycles {
        let start = Instant::now();
        match p.dlopen("libsmall.so", RTLD_NOW) {
            Ok(h) => {
                let Symbol::Function(slot) = p.dlsym(h, "small_fn").unwrap() else {
                    panic!("small_fn is a function");
                };
                let Some(Ref::Func(Some(f))) = table.get(p.store_mut(), u64::from(slot)) else {
                    panic!("slot {slot} holds no function");
                };
                f.call(p.store_mut(), &[Val::I32(1)], &mut out).unwrap();
                assert_eq!(out[0].unwrap_i32(), 3 + 1000 + 1, "cycle {i}: small_fn(1)");
                p.dlclose(h).unwrap();
            }
            Err(e) => {
                failure = format!("; dlopen FAILED at cycle {i}: {e}");
                break;
            }
        }
        times.push(start.elapsed());
    }
    let done = times.len();
    let window = 1_000.min(done.max(1));
    let mean = |d: &[Duration]| {
        if d.is_empty() {
            Duration::ZERO
        } else {
            d.iter().sum::<Duration>() / d.len() as u32
        }
    };
    format!(
        "{done} of {cycles} dlopen/dlsym/call/dlclose cycles in one process (memory cache): \
         first {window} {:?}/cycle, last {window} {:?}/cycle; table {t0} -> {} slots; \
         memory {m0} -> {} bytes; store instances {i0} -> {}; RSS {r0} -> {} KiB{failure}",
        mean(&times[..window.min(done)]),
        mean(&times[done.saturating_sub(window)..]),
        table.size(p.store_mut()),
        memory.data_size(p.store_mut()),
        p.instance_count(),
        rss_kib(),
    )
}

/// A main program that needs all 11 corpus libraries (no code of its own).
fn all_corpus_main(fx: &Fixtures, corpus: &Path) -> PathBuf {
    let mut names: Vec<String> = std::fs::read_dir(corpus)
        .unwrap()
        .filter_map(|e| {
            let n = e.ok()?.file_name().to_string_lossy().into_owned();
            n.ends_with(".so").then_some(n)
        })
        .collect();
    names.sort();
    assert_eq!(names.len(), 11, "corpus libraries: {names:?}");
    let needed: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    let wat = format!(
        r#"(module
             (@dylink.0 (mem-info (memory 0 0)) (needed {}))
             (import "env" "memory" (memory 1))
             (import "env" "__indirect_function_table" (table 0 funcref))
             (func (export "main") (result i32) i32.const 0))"#,
        needed.join(" ")
    );
    let path = fx.dir().join("all_corpus.wasm");
    std::fs::write(&path, wat::parse_str(&wat).expect("all_corpus.wat")).unwrap();
    path
}

/// Every module a load of `program` compiles: the program and its needed closure.
fn closure_modules(p: &Process, program: &Path) -> Vec<Vec<u8>> {
    let mut paths = vec![program.to_path_buf()];
    for l in p.libraries() {
        if l.path != program {
            paths.push(l.path.clone());
        }
    }
    paths.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// Measurements taken once, outside criterion (too slow to repeat): `group/id` -> ns.
type SingleShots = Vec<(String, f64)>;

fn once<T>(f: impl FnOnce() -> T) -> f64 {
    let start = Instant::now();
    let out = f();
    let ns = start.elapsed().as_nanos() as f64;
    drop(out);
    ns
}

/// 3. Loading and linking the corpus.
///
/// With the disk cache (compiled code reused), load and compile-only are criterion
/// benchmarks. Without it every load compiles ~20 MB of wasm for 5-30 s, so by default the
/// uncached variants are measured once each (compile-only first, then the load);
/// `WASMLINK_BENCH_FULL=1` makes them criterion benchmarks too (about 15 minutes on 2 cores).
fn corpus_bench(
    c: &mut Criterion,
    fx: &Fixtures,
    engine: &Caching,
    cached: &Caching,
    mem: &Caching,
    full: bool,
    single: &mut SingleShots,
) {
    let corpus = support::corpus();
    let programs = [
        ("libpython", corpus.join("libpython3.14.so")),
        ("all11", all_corpus_main(fx, &corpus)),
    ];
    let load = |program: &Path, engine: &Caching| {
        ProcessBuilder::new()
            .search_path(search(&corpus))
            .cache_dir(engine.dir.clone())
            .module_cache(engine.mem.clone())
            .load(program)
    };
    let compile_all = |modules: &[Vec<u8>], engine: &Caching| {
        modules
            .iter()
            .map(|m| Module::new(&engine.engine, m).unwrap())
            .collect::<Vec<_>>()
    };
    let mut g = c.benchmark_group("corpus");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(5));
    for (id, program) in &programs {
        // The first load, with the cached engine, checks the load and fills the disk cache.
        let p = match load(program, cached) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("FAILED: loading {} fails: {e}", program.display());
                continue;
            }
        };
        let libs: Vec<String> = p.libraries().iter().map(|l| l.name.clone()).collect();
        eprintln!(
            "check: {id} loads {} modules: {}",
            libs.len(),
            libs.join(" ")
        );
        let modules = closure_modules(&p, program);
        drop(p);
        // Criterion calls the closure only if the filter selects the benchmark; the uncached
        // single shots follow the cached load's selection.
        let mut selected = false;
        g.bench_function(format!("{id}_load_disk_cache"), |b| {
            selected = true;
            b.iter_with_large_drop(|| load(program, cached).unwrap())
        });
        g.bench_function(format!("{id}_compile_only_disk_cache"), |b| {
            b.iter_with_large_drop(|| compile_all(&modules, cached))
        });
        // The in-memory cache: a first load fills it, then every load takes its modules
        // (the program's and libraries', thunk modules, WASI shims) from it.
        drop(load(program, mem).unwrap());
        let cache = mem.mem.clone().expect("memory cache");
        let before = cache.stats();
        drop(load(program, mem).unwrap());
        let after = cache.stats();
        assert_eq!(
            after.misses, before.misses,
            "{id}: a warm load compiles nothing"
        );
        eprintln!(
            "check: {id} with the memory cache compiles nothing ({} hits per load)",
            after.hits - before.hits
        );
        g.bench_function(format!("{id}_load_memory_cache"), |b| {
            b.iter_with_large_drop(|| load(program, mem).unwrap())
        });
        // What the cache itself costs: hashing each module's bytes (sha256) and the lookup.
        g.bench_function(format!("{id}_lookup_memory_cache"), |b| {
            b.iter_with_large_drop(|| {
                modules
                    .iter()
                    .map(|m| {
                        cache
                            .get_or_compile(&mem.engine, m, || Module::new(&mem.engine, m))
                            .unwrap()
                    })
                    .collect::<Vec<_>>()
            })
        });
        if full {
            g.bench_function(format!("{id}_load"), |b| {
                b.iter_with_large_drop(|| load(program, engine).unwrap())
            });
            g.bench_function(format!("{id}_compile_only"), |b| {
                b.iter_with_large_drop(|| compile_all(&modules, engine))
            });
        } else if selected {
            eprintln!("corpus/{id}_load and corpus/{id}_compile_only: once each (compiles)");
            let m = once(|| compile_all(&modules, engine));
            let l = once(|| load(program, engine).unwrap());
            eprintln!(
                "corpus/{id}_load: {:.2} s, corpus/{id}_compile_only: {:.2} s",
                l / 1e9,
                m / 1e9
            );
            single.push((format!("corpus/{id}_load"), l));
            single.push((format!("corpus/{id}_compile_only"), m));
        }
    }
    g.finish();
}

/// Criterion's median (ns per iteration) of `group/id`, if it was measured by this run.
fn estimate(dir: &Path, group: &str, id: &str, since: SystemTime) -> Option<f64> {
    let path = dir.join(group).join(id).join("new/estimates.json");
    let modified = std::fs::metadata(&path).ok()?.modified().ok()?;
    if modified < since {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    v["median"]["point_estimate"].as_f64()
}

fn summary(dir: &Path, since: SystemTime, single: &SingleShots) -> String {
    let e = |g: &str, id: &str| {
        let key = format!("{g}/{id}");
        single
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| *v)
            .or_else(|| estimate(dir, g, id, since))
    };
    let mut out = String::new();
    let mut row = |name: &str, value: String, ratio: String| {
        if value == "-" {
            return;
        }
        out.push_str(&format!("| {name} | {value} | {ratio} |\n"));
    };
    let per_call = |v: f64| v / f64::from(CALLS);
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}x", a / b),
        _ => "-".to_string(),
    };
    let fmt_ns = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.2} ns"));
    let fmt_t = |v: Option<f64>| {
        v.map_or("-".to_string(), |v| {
            if v >= 1e9 {
                format!("{:.2} s", v / 1e9)
            } else if v >= 1e6 {
                format!("{:.1} ms", v / 1e6)
            } else {
                format!("{:.1} us", v / 1e3)
            }
        })
    };

    // Calls: criterion's median, and the interleaved minimum.
    let mut calls = String::from(
        "| call (ns per call) | criterion median | ratio | interleaved p10 | ratio |\n|---|---|---|---|---|\n",
    );
    let med = |id: &str| e("calls", id).map(per_call);
    let p10 = |id: &str| e("interleaved", id);
    for (id, name, base) in [
        ("local", "call, same module (main)", "local"),
        (
            "import_direct",
            "call, import bound directly at load",
            "local",
        ),
        (
            "call_indirect_local",
            "call_indirect, same module (main)",
            "local",
        ),
        (
            "import_hot_swap",
            "call, import bound through a slot (hot_swap)",
            "local",
        ),
        ("lib_local", "call, same module (libbench)", "lib_local"),
        (
            "import_thunk",
            "call, import bound lazily (thunk)",
            "lib_local",
        ),
        (
            "call_indirect_cross",
            "call_indirect, libbench to main",
            "lib_local",
        ),
        (
            "raw_local",
            "plain wasmtime: call, same module",
            "raw_local",
        ),
        (
            "raw_import",
            "plain wasmtime: call, import from another instance (the floor)",
            "raw_local",
        ),
    ] {
        if med(id).is_none() {
            continue;
        }
        calls.push_str(&format!(
            "| {name} | {} | {} | {} | {} |\n",
            fmt_ns(med(id)),
            ratio(med(id), med(base)),
            fmt_ns(p10(id)),
            ratio(p10(id), p10(base)),
        ));
    }
    let sum = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a + b);
    if med("import_thunk").is_some() {
        let (t, dx) = (
            med("import_thunk"),
            sum(med("import_direct"), med("call_indirect_cross")),
        );
        let (tm, dxm) = (
            p10("import_thunk"),
            sum(p10("import_direct"), p10("call_indirect_cross")),
        );
        calls.push_str(&format!(
            "| thunk vs direct import + call_indirect (libbench to main) | {} vs {} | {} | {} vs {} | {} |\n",
            fmt_ns(t),
            fmt_ns(dx),
            ratio(t, dx),
            fmt_ns(tm),
            fmt_ns(dxm),
            ratio(tm, dxm),
        ));
    }

    let native = e("dlopen", "native");
    for (id, name) in [
        ("native", "native dlopen+dlsym+dlclose (gcc -O2 .so)"),
        (
            "wasmlink",
            "wasmlink dlopen+dlsym+dlclose, cache_dir(None): compiles each time",
        ),
        (
            "wasmlink_disk_cache",
            "wasmlink dlopen+dlsym+dlclose, cache_dir(Some): disk cache hit",
        ),
        (
            "wasmlink_memory_cache",
            "wasmlink dlopen+dlsym+dlclose, module_cache: in-memory cache hit",
        ),
        ("compile_only", "wasmtime Module::new of libsmall.so"),
        (
            "compile_only_disk_cache",
            "wasmtime Module::new, disk cache hit",
        ),
    ] {
        let v = e("dlopen", id);
        row(name, fmt_t(v), format!("{} native", ratio(v, native)));
    }

    for prog in ["libpython", "all11"] {
        let compile = e("corpus", &format!("{prog}_compile_only"));
        let compile_cached = e("corpus", &format!("{prog}_compile_only_disk_cache"));
        for (id, base, base_name) in [
            ("compile_only", compile, "compile"),
            ("load", compile, "compile"),
            ("compile_only_disk_cache", compile_cached, "cached compile"),
            ("load_disk_cache", compile_cached, "cached compile"),
            ("lookup_memory_cache", compile_cached, "cached compile"),
            ("load_memory_cache", compile_cached, "cached compile"),
        ] {
            let v = e("corpus", &format!("{prog}_{id}"));
            row(
                &format!("{prog}: {id}"),
                fmt_t(v),
                format!("{} {base_name}", ratio(v, base)),
            );
        }
    }
    format!("{calls}\n| measurement | median | ratio |\n|---|---|---|\n{out}")
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn main() {
    let start = SystemTime::now();
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes --bench; without it (cargo test --benches) criterion runs each
    // benchmark once as a test, and the slow corpus part and the report are skipped.
    let bench_mode = args.iter().any(|a| a == "--bench");
    let full = std::env::var_os("WASMLINK_BENCH_FULL").is_some_and(|v| v != "0");
    let load_before = loadavg();
    // Criterion's own output directory: `<target>/criterion`, from this executable's location
    // (`<target>/<profile>/deps/linker-*`) unless CARGO_TARGET_DIR says otherwise.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let exe = std::env::current_exe().unwrap();
            exe.ancestors().nth(3).unwrap().to_path_buf()
        });
    let out_dir = target.join("criterion");

    let fx = Fixtures::build();
    // No cache at all; wasmtime's disk cache only; the in-memory module cache only (a private
    // one, so no other part of the run warms it).
    let engine = Caching::new(None, None);
    let cached = Caching::new(Some(fx.dir().join("wasmtime-cache")), None);
    let mem = Caching::new(None, Some(ModuleCache::new(1 << 30)));
    let mut single = SingleShots::new();

    // Only the repeated-dlopen check (`WASMLINK_BENCH_GROWTH_ONLY=1 cargo bench --bench linker`).
    if bench_mode && std::env::var_os("WASMLINK_BENCH_GROWTH_ONLY").is_some_and(|v| v != "0") {
        let cycles = std::env::var("WASMLINK_BENCH_GROWTH_CYCLES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100_000);
        println!("{}", dlopen_growth(&fx, &mem, cycles));
        println!("load average: {load_before} at start, {} at end", loadavg());
        return;
    }
    let mut c = Criterion::default()
        .output_directory(&out_dir)
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    calls(&mut c, &fx, &engine, bench_mode, &mut single);
    dlopen_bench(&mut c, &fx, &engine, &cached, &mem);
    if bench_mode {
        corpus_bench(&mut c, &fx, &engine, &cached, &mem, full, &mut single);
    } else {
        eprintln!("test mode: corpus benchmarks skipped (run cargo bench --bench linker)");
    }
    c.final_summary();

    if bench_mode {
        let cycles = std::env::var("WASMLINK_BENCH_GROWTH_CYCLES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(100_000);
        if cycles > 0 {
            println!("\n{}", dlopen_growth(&fx, &mem, cycles));
        }
        println!(
            "\nload average: {load_before} at start, {} at end",
            loadavg()
        );
        print!("\n{}", summary(&out_dir, start, &single));
    }
}
