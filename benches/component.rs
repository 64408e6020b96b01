//! Host -> component calls (issue 15, "Performance"): what wasmlink's component API adds to a
//! call, against raw wasmtime in the same run, and the same work done by a core module.
//!
//! One component (WAT, below) exports `add: func(a: u32, b: u32) -> u32`,
//! `echo-string: func(s: string) -> string` and `echo-bytes: func(b: list<u8>) -> list<u8>`; the
//! echoes hand back the argument's own buffer, so a call is exactly: lower the argument into
//! guest memory (one copy, through the component's `realloc`), run, lift the result (one copy).
//! A core module with the same code behind wasmlink's data-exchange ABI v1 (docs/abi.md) does
//! the same two copies.
//!
//! For each of a scalar, a 64-byte string and a 16 MiB `list<u8>`:
//! - `raw_typed`: wasmtime's component `TypedFunc` on a plain store (the anchor), on the same
//!   engine wasmlink uses for `call` (epoch interruption compiled in);
//! - `wasmlink_typed`: `ComponentProcess::typed` + `TypedCall::call` (limits armed per call:
//!   30 s timeout, 256 MiB memory, as `wasmlink call` sets by default);
//! - `wasmlink_vals`: `ComponentProcess::call_vals` (dynamic `Val`s, what pipelines use; not
//!   for 16 MiB, which wasmtime's cap on guest-to-host data refuses on this path);
//! - `core_plugin`: the core module through `PluginHost` (`typed` for the scalar, `call_bytes`
//!   for the others), the same work on the core-module path;
//! - for 16 MiB, `memcpy2`: two copies of 16 MiB, the floor of any echo.
//!
//! Run with `cargo bench --bench component`; a table of ratios to `raw_typed` is printed at
//! the end (criterion's estimates, from target/criterion).

use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, Throughput, black_box};
use wasmlink::component::{ComponentLimits, ComponentProcess, Val};
use wasmlink::engine::{Metering, shared_engine_with};
use wasmlink::plugin::{HostConfig, PluginHost};
use wasmlink::policy::Policy;
use wasmtime::Store;
use wasmtime::component::{Component, Linker, TypedFunc};
use wasmtime_wasi::WasiCtxBuilder;

/// The core code both the component and the core module run. `realloc`/`wasmlink_alloc`
/// hand out one region at 64 KiB, grown as needed: every call has one argument, and the
/// echoes return that argument's buffer (no copy inside the guest).
const CORE_FUNCS: &str = r#"
  (memory (export "memory") 2)
  (func $ensure (param $size i32) (result i32)
    (local $need i32)
    ;; pages needed for [65536, 65536 + size)
    (local.set $need (i32.add (i32.const 1)
      (i32.shr_u (i32.add (local.get $size) (i32.const 65535)) (i32.const 16))))
    (if (i32.gt_u (local.get $need) (memory.size))
      (then (if (i32.eq (memory.grow (i32.sub (local.get $need) (memory.size))) (i32.const -1))
        (then (return (i32.const 0))))))
    (i32.const 65536))
  (func $add (export "add") (param i32 i32) (result i32)
    local.get 0 local.get 1 i32.add)
"#;

fn component_wat() -> String {
    format!(
        r#"(component
  (core module $m
    {CORE_FUNCS}
    (func (export "realloc") (param i32 i32 i32 i32) (result i32)
      (call $ensure (local.get 3)))
    ;; the canonical ABI's return area for (ptr, len): 8 bytes at 16
    (func (export "echo") (param $p i32) (param $n i32) (result i32)
      (i32.store (i32.const 16) (local.get $p))
      (i32.store (i32.const 20) (local.get $n))
      (i32.const 16)))
  (core instance $i (instantiate $m))
  (alias core export $i "memory" (core memory $mem))
  (alias core export $i "realloc" (core func $realloc))
  (func (export "add") (param "a" u32) (param "b" u32) (result u32)
    (canon lift (core func $i "add")))
  (func (export "echo-string") (param "s" string) (result string)
    (canon lift (core func $i "echo") (memory $mem) (realloc $realloc)))
  (type $bytes (list u8))
  (func (export "echo-bytes") (param "b" $bytes) (result $bytes)
    (canon lift (core func $i "echo") (memory $mem) (realloc $realloc))))"#
    )
}

/// The same code as a core module behind the data-exchange ABI v1: the result record (16
/// bytes at 32) says OK, the input's own bytes, `cap` 0 (nothing for the host to free).
fn core_wat() -> String {
    format!(
        r#"(module
  {CORE_FUNCS}
  (func (export "wasmlink_abi_version") (result i32) (i32.const 1))
  (func (export "wasmlink_alloc") (param $size i32) (param $align i32) (result i32)
    (call $ensure (local.get $size)))
  (func (export "wasmlink_free") (param i32 i32 i32))
  (func (export "echo") (param $p i32) (param $n i32) (result i32)
    (i32.store (i32.const 32) (i32.const 0))
    (i32.store (i32.const 36) (local.get $p))
    (i32.store (i32.const 40) (local.get $n))
    (i32.store (i32.const 44) (i32.const 0))
    (i32.const 32)))"#
    )
}

const BIG: usize = 16 << 20;

fn limits() -> ComponentLimits {
    ComponentLimits {
        memory: Some(256 << 20),
        table_elements: Some(10_000),
        instances: None,
        fuel: None,
        timeout: Some(Duration::from_secs(30)),
        output: None,
    }
}

fn main() {
    let mut c = Criterion::default()
        .configure_from_args()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    let engine = shared_engine_with(
        None,
        Metering {
            fuel: false,
            epoch: true,
        },
    )
    .expect("engine");
    let component_bytes = wat::parse_str(component_wat()).expect("component WAT");
    let core_bytes = wat::parse_str(core_wat()).expect("core WAT");

    // The anchor: a raw store, wasmtime's TypedFunc, no limits armed.
    let component = Component::new(&engine, &component_bytes).expect("compile");
    let linker: Linker<()> = Linker::new(&engine);
    let mut raw = Store::new(&engine, ());
    raw.set_epoch_deadline(1 << 40);
    let inst = linker
        .instantiate(&mut raw, &component)
        .expect("instantiate");
    let raw_add: TypedFunc<(u32, u32), (u32,)> = inst.get_typed_func(&mut raw, "add").expect("add");
    let raw_str: TypedFunc<(&str,), (String,)> = inst
        .get_typed_func(&mut raw, "echo-string")
        .expect("echo-string");
    let raw_bytes: TypedFunc<(&[u8],), (Vec<u8>,)> = inst
        .get_typed_func(&mut raw, "echo-bytes")
        .expect("echo-bytes");

    let mut process = ComponentProcess::from_bytes(
        &engine,
        Path::new("bench.wasm"),
        &component_bytes,
        WasiCtxBuilder::new(),
        limits(),
    )
    .expect("component process");

    let host = PluginHost::new(HostConfig::default()).expect("host");
    let policy = Policy::from_toml(
        "[limits]\nmemory = \"1 GiB\"\noutput = \"512 MiB\"\n",
        "bench policy",
    )
    .expect("policy");
    let plugin = host.load("echo", &core_bytes, policy).expect("core module");
    let mut core = plugin.instance().expect("core instance");

    // Every path gives the right answer before it is timed.
    let text = "x".repeat(64);
    let big: Vec<u8> = (0..BIG).map(|i| (i % 251) as u8).collect();
    assert_eq!(raw_add.call(&mut raw, (2, 3)).expect("add"), (5,));
    assert_eq!(raw_str.call(&mut raw, (&text,)).expect("echo").0, text);
    assert_eq!(raw_bytes.call(&mut raw, (&big,)).expect("echo").0, big);
    assert_eq!(
        process
            .call_vals("add", &[Val::U32(2), Val::U32(3)])
            .expect("add"),
        vec![Val::U32(5)]
    );
    assert_eq!(
        process
            .typed::<(&[u8],), (Vec<u8>,)>("echo-bytes")
            .expect("typed")
            .call((&big,))
            .expect("echo")
            .0,
        big
    );
    assert_eq!(core.call_bytes("echo", &big).expect("core echo"), big);

    {
        let mut g = c.benchmark_group("component/scalar");
        g.bench_function("raw_typed", |b| {
            b.iter(|| raw_add.call(&mut raw, black_box((2, 3))).expect("add"))
        });
        {
            let mut add = process
                .typed::<(u32, u32), (u32,)>("add")
                .expect("typed add");
            g.bench_function("wasmlink_typed", |b| {
                b.iter(|| add.call(black_box((2, 3))).expect("add"))
            });
        }
        let args = [Val::U32(2), Val::U32(3)];
        g.bench_function("wasmlink_vals", |b| {
            b.iter(|| process.call_vals("add", black_box(&args)).expect("add"))
        });
        {
            let mut add = core.typed::<(i32, i32), i32>("add").expect("core add");
            g.bench_function("core_plugin", |b| {
                b.iter(|| add.call(black_box((2, 3))).expect("add"))
            });
        }
        g.finish();
    }
    {
        let mut g = c.benchmark_group("component/string64");
        g.throughput(Throughput::Bytes(64));
        g.bench_function("raw_typed", |b| {
            b.iter(|| {
                raw_str
                    .call(&mut raw, (black_box(text.as_str()),))
                    .expect("echo")
            })
        });
        {
            let mut echo = process
                .typed::<(&str,), (String,)>("echo-string")
                .expect("typed");
            g.bench_function("wasmlink_typed", |b| {
                b.iter(|| echo.call((black_box(text.as_str()),)).expect("echo"))
            });
        }
        let args = [Val::String(text.clone())];
        g.bench_function("wasmlink_vals", |b| {
            b.iter(|| {
                process
                    .call_vals("echo-string", black_box(&args))
                    .expect("echo")
            })
        });
        g.bench_function("core_plugin", |b| {
            b.iter(|| {
                core.call_bytes("echo", black_box(text.as_bytes()))
                    .expect("echo")
            })
        });
        g.finish();
    }
    {
        let mut g = c.benchmark_group("component/list16m");
        g.throughput(Throughput::Bytes(BIG as u64));
        g.sample_size(20);
        g.bench_function("raw_typed", |b| {
            b.iter(|| {
                raw_bytes
                    .call(&mut raw, (black_box(big.as_slice()),))
                    .expect("echo")
            })
        });
        {
            let mut echo = process
                .typed::<(&[u8],), (Vec<u8>,)>("echo-bytes")
                .expect("typed");
            g.bench_function("wasmlink_typed", |b| {
                b.iter(|| echo.call((black_box(big.as_slice()),)).expect("echo"))
            });
        }
        // No `wasmlink_vals` here: lifting 16 Mi `Val::U8`s back to the host exceeds wasmtime's
        // per-call cap on guest-to-host data (128 MiB of host values, `Store::set_hostcall_fuel`),
        // and the call fails with "too much data is being copied": the dynamic path is for
        // small values (and WAVE); big data takes the typed path.
        let args = [Val::List(big.iter().map(|&x| Val::U8(x)).collect())];
        let e = process
            .call_vals("echo-bytes", &args)
            .expect_err("16 MiB through Vals");
        assert!(e.to_string().contains("too much data"), "{e}");
        g.bench_function("core_plugin", |b| {
            b.iter(|| core.call_bytes("echo", black_box(&big)).expect("echo"))
        });
        let mut guest = vec![0u8; BIG];
        g.bench_function("memcpy2", |b| {
            b.iter(|| {
                guest.copy_from_slice(black_box(&big));
                black_box(guest.clone())
            })
        });
        g.finish();
    }
    c.final_summary();
    print_ratios();
}

/// Ratios to `raw_typed` from criterion's estimates of this run.
fn print_ratios() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/criterion");
    let mean = |group: &str, id: &str| -> Option<f64> {
        let p = dir.join(group).join(id).join("new/estimates.json");
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).ok()?).ok()?;
        v["mean"]["point_estimate"].as_f64()
    };
    println!("\ngroup                 path              mean        / raw_typed");
    for group in ["scalar", "string64", "list16m"] {
        let g = format!("component_{group}");
        let Some(anchor) = mean(&g, "raw_typed") else {
            continue;
        };
        for id in [
            "raw_typed",
            "wasmlink_typed",
            "wasmlink_vals",
            "core_plugin",
            "memcpy2",
        ] {
            if let Some(m) = mean(&g, id) {
                println!(
                    "{group:<21} {id:<17} {:>9.3} us  {:>6.2}x",
                    m / 1000.0,
                    m / anchor
                );
            }
        }
    }
}
