//! The plugin host: many threads, one instance per thread, pooling, and hot swap with calls
//! in flight.

use std::sync::{Arc, Barrier};

use wasmlink::plugin::{HostConfig, PluginHost};
use wasmlink::policy::Policy;

fn version(v: i32, spin_iterations: i32) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module
  (func (export "version") (result i32) (i32.const {v}))
  (func (export "slow_version") (result i32) (local $i i32)
    (loop (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if 0 (i32.lt_u (local.get $i) (i32.const {spin_iterations}))))
    (i32.const {v})))"#
    ))
    .expect("wat")
}

#[test]
fn many_threads_share_one_plugin() {
    let host = PluginHost::new(HostConfig::default()).expect("host");
    let plugin = host
        .load("v", &version(1, 10), Policy::default())
        .expect("load");
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let plugin = plugin.clone();
            std::thread::spawn(move || {
                let mut inst = plugin.instance().expect("instance");
                let mut f = inst.typed::<(), i32>("version").expect("typed");
                (0..10_000).map(|_| f.call(()).expect("call")).sum::<i32>()
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().expect("thread"), 10_000);
    }
    assert!(plugin.idle_instances() >= 1 && plugin.idle_instances() <= 4);
}

#[test]
fn hot_swap_lets_calls_in_flight_finish_on_the_old_module() {
    let host = PluginHost::new(HostConfig::default()).expect("host");
    let plugin = host
        .load("v", &version(1, 200_000_000), Policy::default())
        .expect("load");
    let started = Arc::new(Barrier::new(2));
    let in_flight = {
        let plugin = plugin.clone();
        let started = started.clone();
        std::thread::spawn(move || {
            let mut inst = plugin.instance().expect("instance");
            started.wait();
            inst.call("slow_version", &[]).expect("slow call")[0].i32()
        })
    };
    started.wait();
    plugin.swap(&host, &version(2, 10), None).expect("swap");
    // New calls see the new module at once...
    assert_eq!(plugin.call("version", &[]).expect("new")[0].i32(), Some(2));
    // ...while the call that was running finishes on the old one.
    assert_eq!(in_flight.join().expect("thread"), Some(1));
    // A module that fails to load leaves the current one in place.
    let err = plugin.swap(&host, b"not wasm", None).unwrap_err();
    assert!(err.to_string().starts_with("plugin `v`: "), "{err}");
    assert_eq!(
        plugin.call("version", &[]).expect("still v2")[0].i32(),
        Some(2)
    );
}

/// `deep(n)` recurses `n` frames deep.
const DEEP: &str = r#"(module
  (func $deep (export "deep") (param $n i32) (result i32)
    (if (result i32) (i32.eqz (local.get $n))
      (then (i32.const 0))
      (else (i32.add (i32.const 1) (call $deep (i32.sub (local.get $n) (i32.const 1))))))))"#;

#[test]
fn a_64_mib_stack_is_usable_and_overflows_cleanly() {
    let host = PluginHost::new(HostConfig::default()).expect("host");
    let wasm = wat::parse_str(DEEP).expect("wat");
    let big = Policy::from_toml("[limits]\nstack = \"64 MiB\"\n", "deep.toml").expect("policy");
    let plugin = host.load("deep", &wasm, big).expect("a 64 MiB stack loads");
    // 200,000 frames: more than this test thread's own 2 MiB stack, well inside 64 MiB.
    let depth = 200_000;
    let mut inst = plugin.instance().expect("instance");
    let got = inst.typed::<i32, i32>("deep").expect("typed").call(depth);
    assert_eq!(got.expect("deep call"), depth);
    let got = plugin
        .call("deep", &[wasmtime::Val::I32(depth)])
        .expect("dynamic call");
    assert_eq!(got[0].i32(), Some(depth));
    // Endless recursion hits the limit, not the host's stack.
    let err = plugin
        .call("deep", &[wasmtime::Val::I32(i32::MAX)])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin `deep`: `deep` overflowed its 64 MiB stack (limits.stack)"
    );
    // The default 512 KiB stack does overflow at that depth: the 64 MiB were really used.
    let small = host.load("deep", &wasm, Policy::default()).expect("load");
    let err = small
        .call("deep", &[wasmtime::Val::I32(depth)])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin `deep`: `deep` overflowed its 512 KiB stack (limits.stack)"
    );

    // Every stack of the documented range, from the CLI (whose main thread has 8 MiB).
    let dir = tempfile::tempdir().expect("tempdir");
    let module = dir.path().join("deep.wasm");
    std::fs::write(&module, &wasm).expect("write");
    for stack in ["16KiB", "2MiB", "3MiB", "64MiB"] {
        let out = crate::support::wasmlink(&[
            "call",
            "--max-stack",
            stack,
            module.to_str().expect("utf-8"),
            "deep",
            "100",
        ]);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{stack}: {}",
            crate::support::stderr(&out)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "100");
    }
    let out = crate::support::wasmlink(&[
        "call",
        "--max-stack",
        "64MiB",
        module.to_str().expect("utf-8"),
        "deep",
        "200000",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "200000");
}

/// A guest that counts its calls twice over: in a mutable global and in linear memory (the
/// word at address 16, which starts as 100 from a data segment). `bump` returns
/// `global * 1000 + memory word`.
const COUNTER_WAT: &str = r#"(module
  (memory (export "memory") 1)
  (data (i32.const 16) "\64\00\00\00")
  (global $n (mut i32) (i32.const 0))
  (func (export "bump") (result i32)
    (global.set $n (i32.add (global.get $n) (i32.const 1)))
    (i32.store (i32.const 16) (i32.add (i32.load (i32.const 16)) (i32.const 1)))
    (i32.add (i32.mul (global.get $n) (i32.const 1000)) (i32.load (i32.const 16)))))"#;

fn bumps(isolation: &str) -> (Vec<i32>, usize) {
    let host = PluginHost::new(HostConfig::default()).expect("host");
    let policy = Policy::from_toml(
        &format!("[limits]\nisolation = \"{isolation}\"\n"),
        "isolation.toml",
    )
    .expect("policy");
    let plugin = host
        .load("counter", COUNTER_WAT.as_bytes(), policy)
        .expect("load");
    let mut seen = Vec::new();
    for _ in 0..3 {
        // `Plugin::call`: one checkout per call.
        seen.push(
            plugin.call("bump", &[]).expect("bump")[0]
                .i32()
                .expect("i32"),
        );
    }
    for _ in 0..2 {
        // A typed handle on a fresh lease each time.
        let mut inst = plugin.instance().expect("instance");
        seen.push(
            inst.typed::<(), i32>("bump")
                .expect("typed")
                .call(())
                .expect("bump"),
        );
    }
    (seen, plugin.idle_instances())
}

#[test]
fn warm_isolation_keeps_state_between_calls() {
    let (seen, idle) = bumps("warm");
    // One pooled instance serves every call: the global and the memory word keep counting.
    assert_eq!(seen, [1101, 2102, 3103, 4104, 5105]);
    assert_eq!(idle, 1);
}

#[test]
fn fresh_isolation_gives_every_call_a_new_instance() {
    let (seen, idle) = bumps("fresh");
    // Every call starts from the module's initial global and data segment (the copy-on-write
    // image), whatever the previous call wrote into the pool slot it may reuse.
    assert_eq!(seen, [1101; 5]);
    assert_eq!(idle, 0);
}

#[test]
fn an_unknown_isolation_is_refused_at_its_line() {
    let e = Policy::from_toml("[limits]\nisolation = \"per-call\"\n", "p.toml").unwrap_err();
    // The file, line and column of the value (as for every enum setting), and the choices.
    assert_eq!(
        e.to_string(),
        "p.toml:2:13: unknown variant `per-call`, expected `warm` or `fresh`"
    );
}

/// `work(n)` loops n times; `spin` never returns.
const WORK_WAT: &str = r#"(module
  (func (export "work") (param $n i32) (result i32) (local $i i32)
    (block (loop
      (br_if 1 (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br 0)))
    (local.get $i))
  (func (export "spin") (loop (br 0))))"#;

#[test]
fn a_held_typed_handle_rearms_the_timeout_and_refuels_every_call() {
    let host = PluginHost::new(HostConfig::default()).expect("host");
    // Timeout: 300 ms of short calls on one handle, under a 100 ms per-call limit. Every call
    // must get its own deadline (armed once, the calls after 100 ms would be interrupted).
    let policy = Policy::from_toml("[limits]\ntimeout = \"100ms\"\n", "t.toml").expect("policy");
    let plugin = host
        .load("work", WORK_WAT.as_bytes(), policy)
        .expect("load");
    let mut inst = plugin.instance().expect("instance");
    {
        let mut work = inst.typed::<i32, i32>("work").expect("typed work");
        let start = std::time::Instant::now();
        let mut calls = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(300) {
            assert_eq!(
                work.call(100)
                    .expect("a short call within its own deadline"),
                100
            );
            calls += 1;
        }
        assert!(calls > 10, "{calls}");
    }
    let e = inst
        .typed::<(), ()>("spin")
        .expect("typed spin")
        .call(())
        .unwrap_err();
    assert!(
        matches!(e, wasmlink::plugin::PluginError::Timeout { .. }),
        "{e}"
    );
    assert!(inst.is_poisoned());
    drop(inst);

    // Fuel: 50 calls of ~10,000 loop iterations each fit a 100,000-unit budget only if every
    // call starts with the full budget; one call of 1,000,000 iterations does not.
    let policy = Policy::from_toml("[limits]\nfuel = 100_000\n", "f.toml").expect("policy");
    let plugin = host
        .load("work", WORK_WAT.as_bytes(), policy)
        .expect("load");
    let mut inst = plugin.instance().expect("instance");
    let mut work = inst.typed::<i32, i32>("work").expect("typed work");
    for _ in 0..50 {
        assert_eq!(
            work.call(10_000).expect("a call within its own fuel"),
            10_000
        );
    }
    let e = work.call(1_000_000).unwrap_err();
    assert!(
        matches!(e, wasmlink::plugin::PluginError::OutOfFuel { .. }),
        "{e}"
    );
}

/// `nap(ms)`: sleeps `ms` milliseconds in the host (WASI `poll_oneoff` on the monotonic
/// clock), then runs a short loop, where the timeout's epoch checks are.
const NAP_WAT: &str = r#"(module
  (import "wasi_snapshot_preview1" "poll_oneoff"
    (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "nap") (param $ms i64) (result i32) (local $i i32)
    (i32.store8 (i32.const 8) (i32.const 0))
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.mul (local.get $ms) (i64.const 1000000)))
    (i64.store (i32.const 32) (i64.const 0))
    (i32.store16 (i32.const 40) (i32.const 0))
    (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))
    (loop (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if 0 (i32.lt_u (local.get $i) (i32.const 1000))))
    (local.get $i)))"#;

#[test]
fn time_blocked_in_a_host_call_counts_toward_the_timeout() {
    let host = PluginHost::new(HostConfig::default()).expect("host");
    let policy = Policy::from_toml("[limits]\ntimeout = \"100ms\"\n", "t.toml").expect("policy");
    let plugin = host.load("nap", NAP_WAT.as_bytes(), policy).expect("load");
    let mut inst = plugin.instance().expect("instance");
    let mut nap = inst.typed::<i64, i32>("nap").expect("typed nap");
    // Naps shorter than the timeout, 150 ms in all: each call is timed on its own.
    for _ in 0..5 {
        assert_eq!(nap.call(30).expect("a 30 ms call under 100 ms"), 1000);
    }
    // A call that slept past its timeout is stopped at its first check after waking.
    let e = nap.call(250).unwrap_err();
    assert!(
        matches!(e, wasmlink::plugin::PluginError::Timeout { .. }),
        "{e}"
    );
}
