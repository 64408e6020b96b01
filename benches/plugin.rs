//! Benchmarks of the plugin host (issue 4) and of data exchange (issue 5); results and how to
//! read them are in BENCHMARKS.md ("Plugin host", "Data exchange").
//!
//! Every figure is compared with a baseline measured in the same run:
//!
//! 1. `instance/*`: a ready instance from a plugin's pool (`Plugin::instance` + drop), and a
//!    fresh one created under its policy, against raw wasmtime instantiation of the same module
//!    from an `InstancePre` on a pooling-allocator engine configured like the host's; and a
//!    call on a fresh instance each time (`limits.isolation = "fresh"`, `fresh_per_call`) or a
//!    pooled one (`warm_per_call`) against raw instantiate + lookup + call (`raw_fresh_call_add`).
//! 2. `call/*`: an exported `(i32, i32) -> i32` through the plugin API (a held `Instance` and
//!    its typed handle; `Plugin::call` with a pool checkout per call) against a raw
//!    `TypedFunc` call, with and without epoch interruption.
//! 3. `bytes64/*`: a 64-byte `call_bytes` of the greeter's `echo` against the raw `TypedFunc`
//!    call, and against raw wasmtime doing the same ABI v1 steps by hand.
//! 4. `exchange16/*`: echo of a 16 MiB Arrow batch in place (`echo_arrow`) and as a new batch
//!    (`echo_copy_arrow`: copy in, copy out, against `memcpy_x2`, two memcpys of the same bytes),
//!    and of 16 MiB of bytes (`echo`), against a memcpy of 16 MiB, with the copying Arrow call
//!    broken into its pieces.
//! 5. After the criterion runs (`cargo bench` only): 1,000,000 `echo` calls of 64 bytes from
//!    two threads, sampling the resident set size every 100,000 calls.
//!
//! Guest modules come from `scripts/build-guests.sh` (run here; quick when they are built).
//! Run with `cargo bench --bench plugin`; tables of the ratios are printed at the end.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arrow_array::{ArrayRef, Int64Array, RecordBatch};
use arrow_ipc::writer::StreamEncoder;
use criterion::{Criterion, Throughput, black_box};
use wasmlink::plugin::{HostConfig, Plugin, PluginHost};
use wasmlink::policy::Policy;
use wasmtime::{
    Config, Engine, InstanceAllocationStrategy, InstancePre, Linker, Memory, Module,
    PoolingAllocationConfig, Store, TypedFunc, Val,
};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::WasiP1Ctx;

/// A module with one scalar export and nothing else (no imports, no data).
const ADD_WAT: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "add") (param i32 i32) (result i32)
    local.get 0 local.get 1 i32.add))"#;

/// 16 MiB: the payload of the large echoes.
const BIG: usize = 16 << 20;
/// Policy for the large echoes: the default 256 MiB memory and 64 MiB output are enough for one
/// 16 MiB echo, but the guest holds input, output and allocator slack at once.
const BIG_POLICY: &str = "[limits]\nmemory = \"1 GiB\"\noutput = \"512 MiB\"\n";
/// Deadline given to raw stores (the raw engines have no epoch timer thread).
const FAR: u64 = 1 << 40;

/// A raw engine configured like `PluginHost`'s default engine (plugin/mod.rs: pooling with 256
/// slots, 4 GiB memories, 2^20 table elements, 512 KiB wasm stack, no fuel), with or without
/// epoch interruption.
fn raw_engine(epoch: bool) -> Engine {
    let mut config = Config::new();
    config.epoch_interruption(epoch);
    config.consume_fuel(false);
    config.max_wasm_stack(512 << 10);
    let mut pool = PoolingAllocationConfig::default();
    pool.total_core_instances(256)
        .total_memories(256)
        .total_tables(256)
        .max_memory_size(1 << 32)
        .table_elements(1 << 20)
        .max_memories_per_module(1)
        .max_tables_per_module(4);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config).expect("raw engine with the host's configuration")
}

/// Builds the guest modules and returns the greeter's bytes.
fn greeter_bytes() -> Vec<u8> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let status = Command::new("bash")
        .arg(root.join("scripts/build-guests.sh"))
        .stdout(std::process::Stdio::null())
        .status()
        .expect("cannot run scripts/build-guests.sh");
    assert!(status.success(), "scripts/build-guests.sh failed: {status}");
    let path = root.join("target/guest-modules/greeter.wasm");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A raw wasmtime instance of a WASI preview 1 module (the greeter) with an empty WASI context.
struct RawWasi {
    store: Store<WasiP1Ctx>,
    memory: Memory,
    alloc: TypedFunc<(i32, i32), i32>,
    free: TypedFunc<(i32, i32, i32), ()>,
    instance: wasmtime::Instance,
}

fn raw_wasi_pre(engine: &Engine, bytes: &[u8]) -> InstancePre<WasiP1Ctx> {
    let module = Module::new(engine, bytes).expect("greeter compiles");
    let mut linker: Linker<WasiP1Ctx> = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s| s).expect("WASI linker");
    linker
        .instantiate_pre(&module)
        .expect("greeter InstancePre")
}

impl RawWasi {
    fn new(engine: &Engine, pre: &InstancePre<WasiP1Ctx>) -> RawWasi {
        let mut store = Store::new(engine, WasiCtxBuilder::new().build_p1());
        store.set_epoch_deadline(FAR);
        let instance = pre.instantiate(&mut store).expect("greeter instantiates");
        let memory = instance.get_memory(&mut store, "memory").expect("memory");
        let alloc = instance
            .get_typed_func(&mut store, "wasmlink_alloc")
            .expect("wasmlink_alloc");
        let free = instance
            .get_typed_func(&mut store, "wasmlink_free")
            .expect("wasmlink_free");
        RawWasi {
            store,
            memory,
            alloc,
            free,
            instance,
        }
    }

    fn func(&mut self, name: &str) -> TypedFunc<(i32, i32), i32> {
        self.instance
            .get_typed_func(&mut self.store, name)
            .expect("ABI function")
    }

    /// Allocates `len` bytes in the guest (64-aligned, as the host does).
    fn alloc(&mut self, len: usize) -> u32 {
        let p = self
            .alloc
            .call(&mut self.store, (len as i32, 64))
            .expect("alloc") as u32;
        assert!(p != 0, "guest out of memory");
        p
    }

    /// Reads the result record at `rec`: (status, ptr, len, cap).
    fn record(&self, rec: u32) -> (u32, u32, u32, u32) {
        let d = self.memory.data(&self.store);
        let w = |i: usize| {
            let at = rec as usize + 4 * i;
            u32::from_le_bytes([d[at], d[at + 1], d[at + 2], d[at + 3]])
        };
        (w(0), w(1), w(2), w(3))
    }

    /// One ABI v1 byte call done by hand, as `Instance::call_bytes` does it: alloc, write,
    /// call, read the record, copy the output out, free the output, free the input.
    fn abi_call(&mut self, f: &TypedFunc<(i32, i32), i32>, input: &[u8]) -> Vec<u8> {
        let in_ptr = self.alloc(input.len());
        let at = in_ptr as usize;
        self.memory.data_mut(&mut self.store)[at..at + input.len()].copy_from_slice(input);
        let rec = f
            .call(&mut self.store, (in_ptr as i32, input.len() as i32))
            .expect("call") as u32;
        let (status, ptr, len, cap) = self.record(rec);
        assert_eq!(status, 0, "guest status");
        let out = self.memory.data(&self.store)[ptr as usize..(ptr + len) as usize].to_vec();
        self.free
            .call(&mut self.store, (ptr as i32, cap as i32, 1))
            .expect("free output");
        self.free
            .call(&mut self.store, (in_ptr as i32, input.len() as i32, 64))
            .expect("free input");
        out
    }
}

/// One Int64 column of 2 Mi values: 16 MiB of data.
fn big_batch() -> RecordBatch {
    let values: Int64Array = (0..(BIG / 8) as i64).collect();
    RecordBatch::try_from_iter([("x", Arc::new(values) as ArrayRef)]).expect("batch")
}

/// The IPC stream of `batch` as the host encodes it (StreamEncoder, 64-byte alignment), as
/// zero-copy segments (arrow `Buffer`s).
fn encode(batch: &RecordBatch) -> Vec<impl std::ops::Deref<Target = [u8]>> {
    let mut enc = StreamEncoder::try_new(&batch.schema()).expect("encoder");
    let mut segs = enc.encode(batch).expect("encode");
    segs.extend(enc.finish().expect("finish"));
    segs
}

fn instance_bench(c: &mut Criterion, greeter: &[u8], raw: &Engine) {
    let mut g = c.benchmark_group("instance");

    // Raw: a new Store + InstancePre::instantiate, dropped (slot back to the pool).
    let add_module = Module::new(raw, ADD_WAT).expect("add module");
    let add_pre = Linker::<()>::new(raw)
        .instantiate_pre(&add_module)
        .expect("add InstancePre");
    g.bench_function("raw_instantiate_add", |b| {
        b.iter(|| {
            let mut store = Store::new(raw, ());
            store.set_epoch_deadline(FAR);
            black_box(add_pre.instantiate(&mut store).expect("instantiate"));
        })
    });
    let greeter_pre = raw_wasi_pre(raw, greeter);
    g.bench_function("raw_instantiate_greeter", |b| {
        b.iter(|| {
            let mut store = Store::new(raw, WasiCtxBuilder::new().build_p1());
            store.set_epoch_deadline(FAR);
            black_box(greeter_pre.instantiate(&mut store).expect("instantiate"));
        })
    });

    // wasmlink, the steady state: an idle instance from the plugin's pool, given back on drop.
    let host = PluginHost::new(HostConfig::default()).expect("host");
    let add = host
        .load("add", ADD_WAT.as_bytes(), Policy::default())
        .expect("load add");
    let greet = host
        .load("greeter", greeter, Policy::default())
        .expect("load greeter");
    g.bench_function("pooled_checkout_add", |b| {
        b.iter(|| drop(black_box(add.instance().expect("checkout"))))
    });
    g.bench_function("pooled_checkout_greeter", |b| {
        b.iter(|| drop(black_box(greet.instance().expect("checkout"))))
    });

    // wasmlink with no idle instances kept: every checkout creates one under the policy (new
    // Store, WASI context from the policy, limiter, epoch deadline, instantiate).
    let cold_host = PluginHost::new(HostConfig {
        idle_per_plugin: 0,
        ..HostConfig::default()
    })
    .expect("host");
    let add_cold = cold_host
        .load("add", ADD_WAT.as_bytes(), Policy::default())
        .expect("load add");
    let greet_cold = cold_host
        .load("greeter", greeter, Policy::default())
        .expect("load greeter");
    g.bench_function("fresh_checkout_add", |b| {
        b.iter(|| drop(black_box(add_cold.instance().expect("checkout"))))
    });
    g.bench_function("fresh_checkout_greeter", |b| {
        b.iter(|| drop(black_box(greet_cold.instance().expect("checkout"))))
    });

    // Per-call isolation (`limits.isolation = "fresh"`): a call on a new instance each time,
    // the instance dropped after it (its pool slot reset to the copy-on-write image), against
    // the same steps on raw wasmtime: new Store, InstancePre::instantiate, typed lookup, call.
    g.bench_function("raw_fresh_call_add", |b| {
        b.iter(|| {
            let mut store = Store::new(raw, ());
            store.set_epoch_deadline(FAR);
            let i = add_pre.instantiate(&mut store).expect("instantiate");
            let f = i
                .get_typed_func::<(i32, i32), i32>(&mut store, "add")
                .expect("add");
            f.call(&mut store, black_box((2, 3))).expect("call")
        })
    });
    let fresh_policy =
        Policy::from_toml("[limits]\nisolation = \"fresh\"\n", "bench").expect("policy");
    let add_fresh = host
        .load("add_fresh", ADD_WAT.as_bytes(), fresh_policy)
        .expect("load add (fresh)");
    assert_eq!(
        add_fresh.idle_instances(),
        0,
        "fresh isolation pooled an instance"
    );
    g.bench_function("fresh_per_call", |b| {
        b.iter(|| {
            let mut inst = add_fresh.instance().expect("instance");
            inst.typed::<(i32, i32), i32>("add")
                .expect("typed")
                .call(black_box((2, 3)))
                .expect("call")
        })
    });
    g.bench_function("warm_per_call", |b| {
        b.iter(|| {
            let mut inst = add.instance().expect("instance");
            inst.typed::<(i32, i32), i32>("add")
                .expect("typed")
                .call(black_box((2, 3)))
                .expect("call")
        })
    });
    g.finish();
}

fn call_bench(c: &mut Criterion, raw: &Engine, raw_no_epoch: &Engine) {
    let mut g = c.benchmark_group("call");
    for (id, engine) in [
        ("raw_typed_epoch", raw),
        ("raw_typed_no_epoch", raw_no_epoch),
    ] {
        let module = Module::new(engine, ADD_WAT).expect("add module");
        let mut store = Store::new(engine, ());
        store.set_epoch_deadline(FAR);
        let inst = wasmtime::Instance::new(&mut store, &module, &[]).expect("instantiate");
        let f = inst
            .get_typed_func::<(i32, i32), i32>(&mut store, "add")
            .expect("add");
        assert_eq!(f.call(&mut store, (2, 3)).expect("call"), 5);
        g.bench_function(id, |b| {
            b.iter(|| f.call(&mut store, black_box((2, 3))).expect("call"))
        });
        if id == "raw_typed_epoch" {
            // What a plugin call must add in principle: re-arm the deadline, catch panics.
            g.bench_function("raw_typed_epoch_armed", |b| {
                b.iter(|| {
                    store.set_epoch_deadline(1000);
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        f.call(&mut store, black_box((2, 3)))
                    }));
                    r.expect("no panic").expect("call")
                })
            });
            // What `TypedCall::call` does around the call today, emulated on the raw store: the
            // panic guard alone, then with the tick clock noted in the store's data (a relaxed
            // load through an Arc, two stores) as `PluginState::new_call` does.
            g.bench_function("raw_typed_epoch_guarded", |b| {
                b.iter(|| {
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        f.call(&mut store, black_box((2, 3)))
                    }));
                    r.expect("no panic").expect("call")
                })
            });
            {
                struct Noted {
                    call_start: u64,
                    hit: Option<u64>,
                }
                let module = Module::new(engine, ADD_WAT).expect("add module");
                let mut noted = Store::new(
                    engine,
                    Noted {
                        call_start: 0,
                        hit: None,
                    },
                );
                noted.set_epoch_deadline(FAR);
                let inst = wasmtime::Instance::new(&mut noted, &module, &[]).expect("instantiate");
                let f = inst
                    .get_typed_func::<(i32, i32), i32>(&mut noted, "add")
                    .expect("add");
                let clock = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(7));
                g.bench_function("raw_typed_epoch_guarded_noted", |b| {
                    b.iter(|| {
                        let d = noted.data_mut();
                        d.call_start = clock.load(std::sync::atomic::Ordering::Relaxed);
                        d.hit = None;
                        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            f.call(&mut noted, black_box((2, 3)))
                        }));
                        r.expect("no panic").expect("call")
                    })
                });
                black_box(noted.data().call_start);
                black_box(noted.data().hit);
            }
            // The steps `TypedCall::call` took before issue 18 (plugin/instance.rs), emulated on
            // the raw store: the deadline from a u128 division (`ticks_for`), a clone of the
            // function's name (for `finish`), catch_unwind. The difference to `_armed` is what
            // the name clone and the division cost (both gone from `TypedCall::call` now).
            let name = String::from("add");
            let timeout = Duration::from_secs(30);
            let tick = Duration::from_millis(1);
            g.bench_function("raw_typed_epoch_plugin_steps", |b| {
                b.iter(|| {
                    let t = black_box(tick).as_nanos().max(1);
                    let ticks = (black_box(timeout).as_nanos().div_ceil(t) as u64).max(1);
                    store.set_epoch_deadline(ticks);
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        f.call(&mut store, black_box((2, 3)))
                    }));
                    let n = black_box(&name).clone();
                    black_box(&n);
                    r.expect("no panic").expect("call")
                })
            });
        }
    }

    let host = PluginHost::new(HostConfig::default()).expect("host");
    let plugin = host
        .load("add", ADD_WAT.as_bytes(), Policy::default())
        .expect("load add");
    {
        let mut inst = plugin.instance().expect("checkout");
        let mut add = inst.typed::<(i32, i32), i32>("add").expect("typed add");
        assert_eq!(add.call((2, 3)).expect("call"), 5);
        g.bench_function("plugin_typed_held", |b| {
            b.iter(|| add.call(black_box((2, 3))).expect("call"))
        });
    }
    let args = [Val::I32(2), Val::I32(3)];
    g.bench_function("plugin_call_checkout", |b| {
        b.iter(|| plugin.call("add", black_box(&args)).expect("call"))
    });
    {
        let mut inst = plugin.instance().expect("checkout");
        g.bench_function("plugin_instance_call_held", |b| {
            b.iter(|| inst.call("add", black_box(&args)).expect("call"))
        });
    }
    g.finish();
}

fn bytes64_bench(c: &mut Criterion, greeter: &[u8], raw: &Engine) {
    let mut g = c.benchmark_group("bytes64");
    let input = [7u8; 64];

    let module = Module::new(raw, ADD_WAT).expect("add module");
    let mut store = Store::new(raw, ());
    store.set_epoch_deadline(FAR);
    let inst = wasmtime::Instance::new(&mut store, &module, &[]).expect("instantiate");
    let add = inst
        .get_typed_func::<(i32, i32), i32>(&mut store, "add")
        .expect("add");
    g.bench_function("raw_typed_epoch", |b| {
        b.iter(|| add.call(&mut store, black_box((2, 3))).expect("call"))
    });

    let pre = raw_wasi_pre(raw, greeter);
    let mut rw = RawWasi::new(raw, &pre);
    let echo = rw.func("echo");
    assert_eq!(rw.abi_call(&echo, &input), input);
    g.bench_function("raw_abi_echo", |b| {
        b.iter(|| rw.abi_call(&echo, black_box(&input)))
    });
    // What each export lookup costs: `Instance::call_bytes` looks up `wasmlink_alloc`,
    // `wasmlink_free` and the function by name (twice for the first two) on every call.
    g.bench_function("raw_get_typed_func", |b| {
        b.iter(|| {
            rw.instance
                .get_typed_func::<(i32, i32), i32>(&mut rw.store, black_box("wasmlink_alloc"))
                .expect("wasmlink_alloc")
        })
    });

    let host = PluginHost::new(HostConfig::default()).expect("host");
    let plugin = host
        .load("greeter", greeter, Policy::default())
        .expect("load greeter");
    {
        let mut inst = plugin.instance().expect("checkout");
        assert_eq!(inst.call_bytes("echo", &input).expect("echo"), input);
        g.bench_function("call_bytes_held", |b| {
            b.iter(|| inst.call_bytes("echo", black_box(&input)).expect("echo"))
        });
        g.bench_function("call_bytes_with_held", |b| {
            b.iter(|| {
                inst.call_bytes_with("echo", black_box(&input), |o| o.len())
                    .expect("echo")
            })
        });
    }
    g.bench_function("plugin_call_bytes", |b| {
        b.iter(|| plugin.call_bytes("echo", black_box(&input)).expect("echo"))
    });
    g.finish();
}

fn exchange16_bench(c: &mut Criterion, greeter: &[u8], raw: &Engine) {
    let mut g = c.benchmark_group("exchange16");
    g.sample_size(20);
    g.throughput(Throughput::Bytes(BIG as u64));

    let src = vec![0x5au8; BIG];
    let mut dst = vec![0u8; BIG];
    g.bench_function("memcpy", |b| {
        b.iter(|| {
            dst.copy_from_slice(black_box(&src));
            black_box(&dst);
        })
    });

    // Two memcpys of the same bytes: the least a call that copies in and copies out can do.
    let mut dst2 = vec![0u8; BIG];
    g.bench_function("memcpy_x2", |b| {
        b.iter(|| {
            dst.copy_from_slice(black_box(&src));
            dst2.copy_from_slice(black_box(&dst));
            black_box(&dst2);
        })
    });

    let batch = big_batch();
    let host = PluginHost::new(HostConfig::default()).expect("host");
    let policy = Policy::from_toml(BIG_POLICY, "bench policy").expect("policy");
    let plugin = host.load("greeter", greeter, policy).expect("load greeter");
    let mut inst = plugin.instance().expect("checkout");
    let echoed = inst.call_arrow("echo_arrow", &batch).expect("echo_arrow");
    assert_eq!(echoed, batch, "echo_arrow changed the batch");
    g.bench_function("echo_arrow", |b| {
        b.iter(|| {
            inst.call_arrow("echo_arrow", black_box(&batch))
                .expect("echo_arrow")
        })
    });
    // A function that returns a new batch (new arrays, so an output stream): copy in, the
    // guest's encoding of the output stream, copy out.
    let copied = inst
        .call_arrow("echo_copy_arrow", &batch)
        .expect("echo_copy_arrow");
    assert_eq!(copied, batch, "echo_copy_arrow changed the batch");
    assert!(
        !Arc::ptr_eq(copied.column(0), batch.column(0)),
        "echo_copy_arrow was passed through in place"
    );
    g.bench_function("echo_copy_arrow", |b| {
        b.iter(|| {
            inst.call_arrow("echo_copy_arrow", black_box(&batch))
                .expect("echo_copy_arrow")
        })
    });
    assert_eq!(inst.call_bytes("echo", &src).expect("echo"), src);
    g.bench_function("echo_bytes", |b| {
        b.iter(|| inst.call_bytes("echo", black_box(&src)).expect("echo"))
    });
    g.bench_function("echo_bytes_with", |b| {
        b.iter(|| {
            inst.call_bytes_with("echo", black_box(&src), |o| o.len())
                .expect("echo")
        })
    });
    drop(inst);

    // The Arrow echo in pieces. Host side: encode, then copy the segments into guest memory.
    g.bench_function("arrow_encode", |b| b.iter(|| encode(black_box(&batch))));
    let segs = encode(&batch);
    let ipc_len: usize = segs.iter().map(|s| s.len()).sum();
    let pre = raw_wasi_pre(raw, greeter);
    let mut rw = RawWasi::new(raw, &pre);
    let in_ptr = rw.alloc(ipc_len) as usize;
    let copy_in = |rw: &mut RawWasi| {
        let data = rw.memory.data_mut(&mut rw.store);
        let mut at = in_ptr;
        for s in &segs {
            data[at..at + s.len()].copy_from_slice(s);
            at += s.len();
        }
    };
    g.bench_function("arrow_copy_in", |b| b.iter(|| copy_in(&mut rw)));
    // Once more outside the benchmark, so the guest steps below have their input even when a
    // filter skipped `arrow_copy_in`.
    copy_in(&mut rw);
    // Guest side: the input is in guest memory; the guest decodes it (zero-copy) and lists the
    // output stream's segments (status 3: metadata it encoded, body buffers where they lie);
    // the host frees the list, which frees what the segments point into.
    // `echo_copy_arrow` (a new batch), since `echo_arrow` is now answered in place (status 2)
    // and would leave nothing to copy out.
    let echo_arrow = rw.func("echo_copy_arrow");
    let out_of = |rw: &mut RawWasi| {
        let rec = echo_arrow
            .call(&mut rw.store, (in_ptr as i32, ipc_len as i32))
            .expect("echo_arrow") as u32;
        let (status, ptr, len, cap) = rw.record(rec);
        // 3: a gathered output stream; 2: the SDK recognised a pass-through (nothing to copy).
        assert!(
            status == 3 || status == 2,
            "echo_copy_arrow status {status}"
        );
        (status, ptr, len, cap)
    };
    g.bench_function("arrow_guest", |b| {
        b.iter(|| {
            let (_, ptr, _, cap) = out_of(&mut rw);
            rw.free
                .call(&mut rw.store, (ptr as i32, cap as i32, 1))
                .expect("free");
        })
    });
    // Host side again: gather the segments into one aligned buffer (the copy out) and decode.
    let (status, ptr, len, cap) = out_of(&mut rw);
    if status == 3 {
        let list = rw.memory.data(&rw.store)[ptr as usize..(ptr + len) as usize].to_vec();
        let segments: Vec<(usize, usize)> = list
            .chunks_exact(8)
            .map(|e| {
                let w = |i: usize| u32::from_le_bytes([e[i], e[i + 1], e[i + 2], e[i + 3]]);
                (w(0) as usize, w(4) as usize)
            })
            .collect();
        let total: usize = segments.iter().map(|(_, n)| n).sum();
        g.bench_function("arrow_copy_out_decode", |b| {
            b.iter(|| {
                let data = rw.memory.data(&rw.store);
                let mut out = arrow_buffer::MutableBuffer::with_capacity(total);
                for &(at, n) in &segments {
                    out.extend_from_slice(&data[at..at + n]);
                }
                wasmlink::exchange::decode_stream(out.into()).expect("decode")
            })
        });
        rw.free
            .call(&mut rw.store, (ptr as i32, cap as i32, 1))
            .expect("free");
    } else {
        println!(
            "exchange16/arrow_copy_out_decode: skipped, the guest passed its input through (status 2)"
        );
    }
    // Guest side of the byte echo: `input.to_vec()` in wasm.
    let echo = rw.func("echo");
    let bytes_ptr = rw.alloc(BIG) as usize;
    rw.memory.data_mut(&mut rw.store)[bytes_ptr..bytes_ptr + BIG].copy_from_slice(&src);
    g.bench_function("bytes_guest", |b| {
        b.iter(|| {
            let rec = echo
                .call(&mut rw.store, (bytes_ptr as i32, BIG as i32))
                .expect("echo") as u32;
            let (status, ptr, _, cap) = rw.record(rec);
            assert_eq!(status, 0);
            rw.free
                .call(&mut rw.store, (ptr as i32, cap as i32, 1))
                .expect("free");
        })
    });
    g.finish();
}

/// Resident set size from /proc/self/statm (pages of 4 KiB on x86-64 Linux).
fn rss_bytes() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    s.split_whitespace()
        .nth(1)
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// `total` calls of `echo` with 64 bytes from two threads (each with a pool checkout per call,
/// as `Plugin::call_bytes` does), the RSS sampled after every `every` calls.
fn rss_flat(greeter: &[u8], total: u64, every: u64) -> String {
    let host = PluginHost::new(HostConfig::default()).expect("host");
    let plugin = host
        .load("greeter", greeter, Policy::default())
        .expect("load greeter");
    let input: Vec<u8> = (0..64u8).collect();
    // Warm-up: both threads' instances exist and have run before the first sample.
    let warm = |p: &Plugin| {
        for _ in 0..10_000 {
            assert_eq!(p.call_bytes("echo", &input).expect("echo"), input);
        }
    };
    std::thread::scope(|s| {
        s.spawn(|| warm(&plugin));
        s.spawn(|| warm(&plugin));
    });
    let done = AtomicU64::new(0);
    let samples: Mutex<Vec<(u64, u64)>> = Mutex::new(vec![(0, rss_bytes())]);
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                loop {
                    let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                    if n > total {
                        break;
                    }
                    let out = plugin.call_bytes("echo", &input).expect("echo");
                    assert_eq!(out, input);
                    if n.is_multiple_of(every) {
                        samples.lock().expect("samples").push((n, rss_bytes()));
                    }
                }
            });
        }
    });
    let elapsed = start.elapsed();
    let mut samples = samples.into_inner().expect("samples");
    samples.sort();
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let mut out = format!(
        "RSS over {total} calls of echo (64 bytes) from 2 threads, Plugin::call_bytes \
         (pool checkout per call), {:.2} s, {:.0} ns per call per thread:\n",
        elapsed.as_secs_f64(),
        elapsed.as_nanos() as f64 * 2.0 / total as f64
    );
    for (n, rss) in &samples {
        out.push_str(&format!("  after {n:>9} calls: {:>8.2} MiB\n", mib(*rss)));
    }
    let first = samples.first().map_or(0, |s| s.1);
    let last = samples.last().map_or(0, |s| s.1);
    let max = samples.iter().map(|s| s.1).max().unwrap_or(0);
    let min = samples.iter().map(|s| s.1).min().unwrap_or(0);
    out.push_str(&format!(
        "  delta first -> last: {:+.2} MiB; max - min: {:.2} MiB\n",
        mib(last) - mib(first),
        mib(max - min)
    ));
    out
}

/// Criterion's median (ns) for `group/id`, if this run wrote it.
fn median(dir: &Path, group: &str, id: &str, since: SystemTime) -> Option<f64> {
    let path = dir.join(group).join(id).join("new/estimates.json");
    if std::fs::metadata(&path).ok()?.modified().ok()? < since {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    v["median"]["point_estimate"].as_f64()
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} us", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

fn summary(dir: &Path, since: SystemTime) -> String {
    let m = |g: &str, id: &str| median(dir, g, id, since);
    let mut out = String::new();
    let mut table = |title: &str, g: &str, base: &str, rows: &[&str]| {
        out.push_str(&format!(
            "\n{title}\n| {g} | median | vs {base} | difference |\n|---|---|---|---|\n"
        ));
        let b = m(g, base);
        for id in rows {
            match (m(g, id), b) {
                (Some(v), Some(b)) => out.push_str(&format!(
                    "| {id} | {} | {:.2}x | {:+.1} ns |\n",
                    fmt_ns(v),
                    v / b,
                    v - b
                )),
                (Some(v), None) => out.push_str(&format!("| {id} | {} | - | - |\n", fmt_ns(v))),
                _ => out.push_str(&format!("| {id} | (not run) | - | - |\n")),
            }
        }
    };
    table(
        "Instances (raw = new Store + InstancePre::instantiate on the pooling allocator)",
        "instance",
        "raw_instantiate_add",
        &[
            "raw_instantiate_add",
            "pooled_checkout_add",
            "fresh_checkout_add",
            "raw_instantiate_greeter",
            "pooled_checkout_greeter",
            "fresh_checkout_greeter",
        ],
    );
    table(
        "A call per instance (isolation = \"fresh\") vs raw instantiate + lookup + call",
        "instance",
        "raw_fresh_call_add",
        &["raw_fresh_call_add", "fresh_per_call", "warm_per_call"],
    );
    table(
        "Scalar call add(i32, i32) -> i32",
        "call",
        "raw_typed_epoch",
        &[
            "raw_typed_no_epoch",
            "raw_typed_epoch",
            "raw_typed_epoch_armed",
            "raw_typed_epoch_plugin_steps",
            "plugin_typed_held",
            "plugin_instance_call_held",
            "plugin_call_checkout",
        ],
    );
    table(
        "64-byte echo",
        "bytes64",
        "raw_typed_epoch",
        &[
            "raw_typed_epoch",
            "raw_get_typed_func",
            "raw_abi_echo",
            "call_bytes_held",
            "call_bytes_with_held",
            "plugin_call_bytes",
        ],
    );
    out.push_str(
        "\n16 MiB echoes (GB/s = 16 MiB / median; 1 GB = 1e9 bytes)\n\
         | exchange16 | median | GB/s | vs memcpy |\n|---|---|---|---|\n",
    );
    let memcpy = m("exchange16", "memcpy");
    for id in [
        "memcpy",
        "memcpy_x2",
        "echo_copy_arrow",
        "echo_arrow",
        "echo_bytes",
        "echo_bytes_with",
        "arrow_encode",
        "arrow_copy_in",
        "arrow_guest",
        "arrow_copy_out_decode",
        "bytes_guest",
    ] {
        match m("exchange16", id) {
            Some(v) => out.push_str(&format!(
                "| {id} | {} | {:.2} | {} |\n",
                fmt_ns(v),
                BIG as f64 / v,
                memcpy.map_or("-".into(), |c| format!("{:.2}x time", v / c))
            )),
            None => out.push_str(&format!("| {id} | (not run) | - | - |\n")),
        }
    }
    if let (Some(two), Some(copy)) = (
        m("exchange16", "memcpy_x2"),
        m("exchange16", "echo_copy_arrow"),
    ) {
        out.push_str(&format!(
            "\necho_copy_arrow (copy in, copy out) at {:.2}x the speed of two memcpys (goal >= 0.9x)\n",
            two / copy
        ));
    }
    out
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn main() {
    let start = SystemTime::now();
    // `cargo bench` passes --bench; without it (cargo test --benches) criterion runs each
    // benchmark once as a test and the RSS run is short.
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let load_before = loadavg();
    let target: PathBuf = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let exe = std::env::current_exe().expect("current exe");
            exe.ancestors()
                .nth(3)
                .expect("target directory")
                .to_path_buf()
        });
    let out_dir = target.join("criterion");

    let greeter = greeter_bytes();
    let raw = raw_engine(true);
    let raw_no_epoch = raw_engine(false);
    let mut c = Criterion::default()
        .output_directory(&out_dir)
        .sample_size(30)
        .warm_up_time(Duration::from_millis(700))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    instance_bench(&mut c, &greeter, &raw);
    call_bench(&mut c, &raw, &raw_no_epoch);
    bytes64_bench(&mut c, &greeter, &raw);
    exchange16_bench(&mut c, &greeter, &raw);
    c.final_summary();

    let calls = std::env::var("WASMLINK_BENCH_RSS_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if bench_mode { 1_000_000 } else { 20_000 });
    if calls > 0 {
        println!("\n{}", rss_flat(&greeter, calls, (calls / 10).max(1)));
    }
    if bench_mode {
        println!("load average: {load_before} at start, {} at end", loadavg());
        print!("{}", summary(&out_dir, start));
    }
}
