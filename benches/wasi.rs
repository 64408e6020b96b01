//! WASI 0.2 calls through wasmlink-wasi's generated lowering glue (a core module importing
//! the lowered functions) against the same calls from a component on wasmtime-wasi
//! (`canon lower` of the same host implementation), in the same run. Results and how to read
//! them: BENCHMARKS.md, "Session 6: WASI 0.2 for core modules".
//!
//! Three calls, each made N times in a wasm loop so that the per-call cost dominates:
//!
//! - `now`: `wasi:clocks/wall-clock#now` (a return area of 16 bytes);
//! - `write4k`: `wasi:io/streams#[method]output-stream.write` of 4096 bytes to stdout, which
//!   is wasmtime-wasi's `SinkOutputStream` (the bytes are copied out of guest memory and
//!   dropped); the loop checks that every result is `ok`;
//! - `random64`: `wasi:random/random#get-random-bytes(64)` (a `list<u8>` returned through the
//!   module's `cabi_realloc`).
//!
//! The sides (the loops are the same WAT text, the `cabi_realloc` the same bump function):
//!
//! - `glue`: a plain wasmtime `Store` whose data implements `WasiView` + `WasiHost`, a core
//!   module instantiated with `wasmlink_wasi::add_to_linker`. `WasiHost::memory` is `None`,
//!   so the glue finds the calling instance's `memory` export on each call;
//! - `glue_host_memory`: the same, with the host answering what a linked process answers:
//!   `WasiHost::memory` (its shared memory) and `WasiHost::realloc_instance` with a
//!   `realloc_generation` (the process's `cabi_realloc`, kept typed across calls);
//! - `component`: a component (WAT) whose core module runs the same loops on functions lowered
//!   with `canon lower`, instantiated with `wasmtime::component::Linker` and
//!   `wasmtime_wasi::p2::add_to_linker_sync`.
//!
//! Run with `cargo bench --bench wasi`: criterion figures, then a table of interleaved rounds
//! (every loop once per round) with medians and ratios. `cargo test --benches` runs each loop
//! once and checks what it returns.

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use wasmlink_wasi::{Handles, WasiHost};
use wasmtime::component::{Component, Linker as ComponentLinker, ResourceTable};
use wasmtime::{Engine, Instance, Linker, Memory, Module, Store, TypedFunc};
use wasmtime_wasi::p2::pipe::SinkOutputStream;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// Calls per loop (one criterion iteration, one interleaved sample).
const N: u32 = 10_000;
/// Where the loops put the 4 KiB buffer, the return area and `cabi_realloc`'s block.
const BUF: u32 = 4096;
const RET: u32 = 64;
const HEAP: u32 = 16384;

/// The loops and `cabi_realloc`: the same text in the core module and in the component's.
/// `$now`, `$get_stdout`, `$write` and `$rand` are the lowered imports.
fn loops() -> String {
    format!(
        r#"
  (global $out (mut i32) (i32.const 0))
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    i32.const {HEAP})
  (func (export "init")
    (global.set $out (call $get_stdout)))
  (func (export "now_loop") (param $n i32)
    (loop $l
      (call $now (i32.const {RET}))
      (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1))))))
  (func (export "write_loop") (param $n i32)
    (loop $l
      (call $write (global.get $out) (i32.const {BUF}) (i32.const 4096) (i32.const {RET}))
      (if (i32.load8_u (i32.const {RET})) (then unreachable))
      (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1))))))
  (func (export "rand_loop") (param $n i32)
    (loop $l
      (call $rand (i64.const 64) (i32.const {RET}))
      (if (i32.ne (i32.load (i32.const {RET4})) (i32.const 64)) (then unreachable))
      (br_if $l (local.tee $n (i32.sub (local.get $n) (i32.const 1))))))
  (func (export "now_seconds") (result i64)
    (i64.load (i32.const {RET})))
"#,
        RET4 = RET + 4
    )
}

fn core_wat() -> String {
    let v = format!("0.2.{}", wasmlink_wasi::WIT_VERSION.2);
    format!(
        r#"(module
  (import "wasi:clocks/wall-clock@{v}" "now" (func $now (param i32)))
  (import "wasi:cli/stdout@{v}" "get-stdout" (func $get_stdout (result i32)))
  (import "wasi:io/streams@{v}" "[method]output-stream.write" (func $write (param i32 i32 i32 i32)))
  (import "wasi:random/random@{v}" "get-random-bytes" (func $rand (param i64 i32)))
  (memory (export "memory") 1)
{loops}
)"#,
        loops = loops()
    )
}

/// A component importing the three interfaces as wasi-sdk's libc does (`@0.2.0`; wasmtime's
/// component linker matches them to wasmtime-wasi's semver-compatible definitions).
fn component_wat() -> String {
    format!(
        r#"(component $C
  (import "wasi:clocks/wall-clock@0.2.0" (instance $wall
    (type $dt (record (field "seconds" u64) (field "nanoseconds" u32)))
    (export "datetime" (type $dte (eq $dt)))
    (export "now" (func (result $dte)))))
  (import "wasi:io/error@0.2.0" (instance $error
    (export "error" (type (sub resource)))))
  (alias export $error "error" (type $error_t))
  (import "wasi:io/streams@0.2.0" (instance $streams
    (alias outer $C $error_t (type $e))
    (export "error" (type $ee (eq $e)))
    (export "output-stream" (type $os (sub resource)))
    (type $se (variant (case "last-operation-failed" (own $ee)) (case "closed")))
    (export "stream-error" (type $see (eq $se)))
    (export "[method]output-stream.write"
      (func (param "self" (borrow $os)) (param "contents" (list u8)) (result (result (error $see)))))))
  (alias export $streams "output-stream" (type $os_t))
  (import "wasi:cli/stdout@0.2.0" (instance $stdout
    (alias outer $C $os_t (type $o))
    (export "output-stream" (type $oe (eq $o)))
    (export "get-stdout" (func (result (own $oe))))))
  (import "wasi:random/random@0.2.0" (instance $random
    (export "get-random-bytes" (func (param "len" u64) (result (list u8))))))

  (core module $Mem
    (memory (export "memory") 1)
    (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) i32.const {HEAP}))
  (core module $M
    (import "host" "now" (func $now (param i32)))
    (import "host" "get-stdout" (func $get_stdout (result i32)))
    (import "host" "write" (func $write (param i32 i32 i32 i32)))
    (import "host" "rand" (func $rand (param i64 i32)))
    (import "mem" "memory" (memory 1))
{loops}
  )
  (core instance $mem (instantiate $Mem))
  (alias core export $mem "memory" (core memory $memory))
  ;; Lowering needs the realloc before $M exists: $Mem's is the same bump function as $M's.
  (alias core export $mem "cabi_realloc" (core func $cabi_realloc))
  (core func $now (canon lower (func $wall "now") (memory $memory)))
  (core func $get_stdout (canon lower (func $stdout "get-stdout")))
  (core func $write (canon lower (func $streams "[method]output-stream.write") (memory $memory)))
  (core func $rand (canon lower (func $random "get-random-bytes") (memory $memory) (realloc $cabi_realloc)))
  (core instance $m (instantiate $M
    (with "host" (instance
      (export "now" (func $now))
      (export "get-stdout" (func $get_stdout))
      (export "write" (func $write))
      (export "rand" (func $rand))))
    (with "mem" (instance $mem))))
  (func (export "init") (canon lift (core func $m "init")))
  (func (export "now-loop") (param "n" u32) (canon lift (core func $m "now_loop")))
  (func (export "write-loop") (param "n" u32) (canon lift (core func $m "write_loop")))
  (func (export "rand-loop") (param "n" u32) (canon lift (core func $m "rand_loop")))
  (func (export "now-seconds") (result u64) (canon lift (core func $m "now_seconds")))
)"#,
        loops = loops()
    )
}

/// A store's data for both sides: wasmtime-wasi's context and table, and the glue's handles.
struct Data {
    ctx: WasiCtx,
    table: ResourceTable,
    handles: Handles,
    memory: Option<Memory>,
    /// The instance whose `cabi_realloc` the glue allocates with, as a linked process answers
    /// it (the host side only; `None`: the calling instance's export, looked up per call).
    realloc: Option<Instance>,
}

impl Data {
    fn new() -> Self {
        Self {
            ctx: WasiCtxBuilder::new().stdout(SinkOutputStream).build(),
            table: ResourceTable::new(),
            handles: Handles::default(),
            memory: None,
            realloc: None,
        }
    }
}

impl WasiView for Data {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

impl WasiHost for Data {
    fn handles(&mut self) -> &mut Handles {
        &mut self.handles
    }
    fn memory(&self) -> Option<Memory> {
        self.memory
    }
    fn realloc_instance(&self) -> Option<Instance> {
        self.realloc
    }
    fn realloc_generation(&self) -> Option<u64> {
        self.realloc.map(|_| 0)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Call {
    Now,
    Write4k,
    Random64,
}

const CALLS: [Call; 3] = [Call::Now, Call::Write4k, Call::Random64];

impl Call {
    fn name(self) -> &'static str {
        match self {
            Call::Now => "now",
            Call::Write4k => "write4k",
            Call::Random64 => "random64",
        }
    }
    fn describe(self) -> &'static str {
        match self {
            Call::Now => "`wasi:clocks/wall-clock#now`",
            Call::Write4k => "4 KiB `[method]output-stream.write` to a sink",
            Call::Random64 => "`wasi:random/random#get-random-bytes(64)`",
        }
    }
    fn core_export(self) -> &'static str {
        match self {
            Call::Now => "now_loop",
            Call::Write4k => "write_loop",
            Call::Random64 => "rand_loop",
        }
    }
    fn component_export(self) -> &'static str {
        match self {
            Call::Now => "now-loop",
            Call::Write4k => "write-loop",
            Call::Random64 => "rand-loop",
        }
    }
}

/// One side, ready to run a loop of `n` calls.
enum Side {
    Core {
        store: Store<Data>,
        loops: Vec<TypedFunc<i32, ()>>,
        seconds: TypedFunc<(), i64>,
    },
    Component {
        store: Store<Data>,
        loops: Vec<wasmtime::component::TypedFunc<(u32,), ()>>,
        seconds: wasmtime::component::TypedFunc<(), (u64,)>,
    },
}

const SIDES: [&str; 3] = ["glue", "glue_host_memory", "component"];

impl Side {
    fn core(engine: &Engine, module: &Module, host_memory: bool) -> Self {
        let mut linker = Linker::new(engine);
        wasmlink_wasi::add_to_linker(&mut linker).expect("glue");
        let mut store = Store::new(engine, Data::new());
        let instance: Instance = linker
            .instantiate(&mut store, module)
            .expect("core instance");
        if host_memory {
            store.data_mut().memory = instance.get_memory(&mut store, "memory");
            store.data_mut().realloc = Some(instance);
        }
        let init = instance
            .get_typed_func::<(), ()>(&mut store, "init")
            .unwrap();
        init.call(&mut store, ()).unwrap();
        let loops = CALLS
            .iter()
            .map(|c| {
                instance
                    .get_typed_func(&mut store, c.core_export())
                    .unwrap()
            })
            .collect();
        let seconds = instance.get_typed_func(&mut store, "now_seconds").unwrap();
        Side::Core {
            store,
            loops,
            seconds,
        }
    }

    fn component(engine: &Engine, component: &Component) -> Self {
        let mut linker = ComponentLinker::new(engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).expect("wasmtime-wasi");
        let mut store = Store::new(engine, Data::new());
        let instance = linker
            .instantiate(&mut store, component)
            .expect("component instance");
        let init = instance
            .get_typed_func::<(), ()>(&mut store, "init")
            .unwrap();
        init.call(&mut store, ()).unwrap();
        let loops = CALLS
            .iter()
            .map(|c| {
                instance
                    .get_typed_func(&mut store, c.component_export())
                    .unwrap()
            })
            .collect();
        let seconds = instance.get_typed_func(&mut store, "now-seconds").unwrap();
        Side::Component {
            store,
            loops,
            seconds,
        }
    }

    fn run(&mut self, call: Call, n: u32) {
        let i = CALLS.iter().position(|c| *c == call).unwrap();
        match self {
            Side::Core { store, loops, .. } => loops[i].call(&mut *store, n as i32).unwrap(),
            Side::Component { store, loops, .. } => loops[i].call(&mut *store, (n,)).unwrap(),
        }
    }

    /// What the last `now` wrote: seconds since the epoch.
    fn seconds(&mut self) -> u64 {
        match self {
            Side::Core { store, seconds, .. } => seconds.call(&mut *store, ()).unwrap() as u64,
            Side::Component { store, seconds, .. } => seconds.call(&mut *store, ()).unwrap().0,
        }
    }

    /// Live resources: the glue's handles and wasmtime-wasi's table must not grow per call.
    fn handles(&self) -> usize {
        match self {
            Side::Core { store, .. } => store.data().handles.len(),
            Side::Component { .. } => 0,
        }
    }
}

fn sides(engine: &Engine) -> Vec<Side> {
    let module = Module::new(engine, core_wat()).expect("core module");
    let component = Component::new(engine, component_wat()).expect("component");
    vec![
        Side::core(engine, &module, false),
        Side::core(engine, &module, true),
        Side::component(engine, &component),
    ]
}

/// Each side runs each loop once, and the results are what the loops expect (the loops
/// themselves trap on a failed write or a random list of the wrong length).
fn check(sides: &mut [Side]) {
    for (name, side) in SIDES.iter().zip(sides.iter_mut()) {
        for call in CALLS {
            side.run(call, 3);
        }
        let s = side.seconds();
        assert!(
            s > 1_600_000_000,
            "{name}: wall-clock#now wrote {s} seconds"
        );
        assert!(side.handles() <= 1, "{name}: handles leak");
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// Interleaved rounds: every side runs every loop once per round, so a slow spell of the
/// machine hits all of them alike. Prints ns per call (median, p10) and the ratios against
/// the component.
fn interleaved(sides: &mut [Side], rounds: usize) {
    let mut ns = vec![vec![Vec::with_capacity(rounds); SIDES.len()]; CALLS.len()];
    for _ in 0..rounds {
        for (c, call) in CALLS.iter().enumerate() {
            for (s, side) in sides.iter_mut().enumerate() {
                let t = Instant::now();
                side.run(*call, N);
                ns[c][s].push(t.elapsed().as_nanos() as f64 / f64::from(N));
            }
        }
    }
    println!(
        "\n{rounds} interleaved rounds of {N} calls per loop (ns per call)\n\n\
         | call | side | median | ratio to component | p10 | ratio to component |\n\
         |---|---|---|---|---|---|"
    );
    for (c, call) in CALLS.iter().enumerate() {
        let stats: Vec<(f64, f64)> = ns[c]
            .iter_mut()
            .map(|v| (quantile(v, 0.5), quantile(v, 0.1)))
            .collect();
        let (bm, bp) = stats[2];
        for (s, (m, p)) in stats.iter().enumerate() {
            println!(
                "| {} | {} | {m:.1} ns | {:.2}x | {p:.1} ns | {:.2}x |",
                call.describe(),
                SIDES[s],
                m / bm,
                p / bp
            );
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bench_mode = args.iter().any(|a| a == "--bench");
    let load_before = loadavg();
    let engine = Engine::default();
    let mut sides = sides(&engine);
    check(&mut sides);

    let mut c = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    for call in CALLS {
        let mut g = c.benchmark_group(format!("wasi/{}", call.name()));
        g.throughput(Throughput::Elements(u64::from(N)));
        for (name, side) in SIDES.iter().zip(sides.iter_mut()) {
            g.bench_function(*name, |b| b.iter(|| side.run(call, N)));
        }
        g.finish();
    }
    c.final_summary();

    if bench_mode {
        let rounds = std::env::var("WASMLINK_BENCH_ROUNDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(200);
        interleaved(&mut sides, rounds);
        check(&mut sides);
        println!(
            "\nload average: {load_before} at start, {} at end",
            loadavg()
        );
    }
}
