//! The hostile suite for components: each misbehaving export is stopped with one line and the
//! right exit status (never a panic, never a hang), a failed call poisons its instance, and
//! the policy's clocks, memory, table and output limits hold for components as for core
//! modules, and a component sees no socket or directory the policy does not grant.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmlink::component::{ComponentError, ComponentLimits, ComponentPre, ComponentProcess};

use crate::support::{self, stderr, stdout};

fn fixture(dir: &Path, name: &str) -> PathBuf {
    let src = support::fixtures_src().join(format!("wat/{name}.wat"));
    let bytes = wat::parse_file(&src).unwrap_or_else(|e| panic!("{name}: {e}"));
    let path = dir.join(format!("{name}.wasm"));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Runs wasmlink in `dir`: exit status, stdout, stderr (checked: no panic).
fn w(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let o = support::wasmlink_in(args, Some(dir), &[]);
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(!err.contains("panicked"), "{err}");
    (o.status.code(), out, err)
}

/// A failed call: exit 1 and exactly one line that contains `want`.
fn fails(dir: &Path, args: &[&str], want: &str) -> String {
    let start = Instant::now();
    let (code, out, err) = w(dir, args);
    assert_eq!(code, Some(1), "{args:?}: {out}{err}");
    assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
    assert!(err.starts_with("wasmlink: "), "{err}");
    assert!(err.contains(want), "{args:?}: {want:?} not in {err}");
    assert!(
        start.elapsed() < Duration::from_secs(60),
        "{args:?} took {:?}",
        start.elapsed()
    );
    err
}

#[test]
fn an_endless_loop_is_stopped_by_the_timeout_and_by_fuel() {
    let d = tempfile::tempdir().unwrap();
    fixture(d.path(), "comp_hostile");
    let start = Instant::now();
    fails(
        d.path(),
        &["call", "--timeout", "300ms", "comp_hostile.wasm", "spin"],
        "comp_hostile.wasm: spin: stopped after the 300ms time limit (--timeout)",
    );
    assert!(start.elapsed() < Duration::from_secs(20));
    fails(
        d.path(),
        &["call", "--fuel", "100000", "comp_hostile.wasm", "spin"],
        "spin: stopped after 100000 units of fuel (--fuel)",
    );
}

#[test]
fn a_memory_bomb_stops_at_the_memory_limit() {
    let d = tempfile::tempdir().unwrap();
    fixture(d.path(), "comp_hostile");
    fails(
        d.path(),
        &["call", "--max-memory", "4MiB", "comp_hostile.wasm", "bomb"],
        "bomb: stopped: memory grows to 4259840 bytes, past the 4194304-byte limit (limits.memory)",
    );
    // Without a flag the policy's default (256 MiB) holds.
    fails(
        d.path(),
        &["call", "comp_hostile.wasm", "bomb"],
        "-byte limit (limits.memory)",
    );
}

#[test]
fn a_table_grown_past_the_limit_stops() {
    let d = tempfile::tempdir().unwrap();
    fixture(d.path(), "comp_hostile");
    std::fs::write(d.path().join("p.toml"), "[limits]\ntable-elements = 1000\n").unwrap();
    let (code, out, err) = w(
        d.path(),
        &[
            "call",
            "--policy",
            "p.toml",
            "comp_hostile.wasm",
            "grow-table",
            "10",
        ],
    );
    assert_eq!((code, out.as_str()), (Some(0), "1\n"), "{err}");
    fails(
        d.path(),
        &[
            "call",
            "--policy",
            "p.toml",
            "comp_hostile.wasm",
            "grow-table",
            "5000",
        ],
        "grow-table: stopped: a table grows to 5001 elements, past the limit of 1000 (limits.table-elements)",
    );
}

#[test]
fn deep_recursion_is_a_trap() {
    let d = tempfile::tempdir().unwrap();
    fixture(d.path(), "comp_hostile");
    fails(
        d.path(),
        &["call", "comp_hostile.wasm", "deep", "0"],
        "deep: ",
    );
}

#[test]
fn bad_results_are_refused_not_trusted() {
    let d = tempfile::tempdir().unwrap();
    fixture(d.path(), "comp_hostile");
    let e = fails(
        d.path(),
        &["call", "comp_hostile.wasm", "bad-utf8"],
        "bad-utf8: ",
    );
    assert!(e.to_lowercase().contains("utf-8"), "{e}");
    let e = fails(
        d.path(),
        &["call", "comp_hostile.wasm", "huge-list"],
        "huge-list: ",
    );
    assert!(e.contains("out of bounds"), "{e}");
}

#[test]
fn results_larger_than_the_output_limit_are_refused() {
    let d = tempfile::tempdir().unwrap();
    let src = std::fs::read_to_string(support::fixtures_src().join("wat/comp_demo.wat")).unwrap();
    std::fs::write(d.path().join("demo.wasm"), wat::parse_str(&src).unwrap()).unwrap();
    let name = format!("\"{}\"", "x".repeat(2000));
    let (code, out, err) = w(d.path(), &["call", "demo.wasm", "greet", &name]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.len(), 2000 + 10, "{out}");
    fails(
        d.path(),
        &["call", "--max-output", "1KiB", "demo.wasm", "greet", &name],
        "greet: its results take more than the 1024-byte output limit as WAVE text (limits.output)",
    );
}

#[test]
fn denied_clocks_read_zero() {
    let d = tempfile::tempdir().unwrap();
    fixture(d.path(), "comp_clock");
    for f in ["wall", "mono"] {
        let (code, out, err) = w(d.path(), &["call", "comp_clock.wasm", f]);
        assert_eq!((code, out.as_str()), (Some(0), "0\n"), "{f}: {err}");
        let (code, out, err) = w(d.path(), &["call", "--allow-clocks", "comp_clock.wasm", f]);
        assert_eq!(code, Some(0), "{f}: {err}");
        assert_ne!(out, "0\n", "{f} with --allow-clocks");
    }
    let (_, out, _) = w(
        d.path(),
        &["call", "--allow-clocks", "comp_clock.wasm", "wall"],
    );
    // After 2020-01-01: the host's wall clock.
    assert!(out.trim().parse::<u64>().unwrap() > 1_577_836_800, "{out}");
}

fn engine(epoch: bool) -> wasmtime::Engine {
    let mut c = wasmtime::Config::new();
    c.epoch_interruption(epoch);
    wasmtime::Engine::new(&c).unwrap()
}

#[test]
fn a_failed_call_poisons_the_instance_and_a_new_one_works() {
    let d = tempfile::tempdir().unwrap();
    let path = fixture(d.path(), "comp_hostile");
    let limits = ComponentLimits {
        timeout: Some(Duration::from_millis(100)),
        ..Default::default()
    };
    let pre = Arc::new(ComponentPre::load(&engine(true), &path, limits).unwrap());
    let mut p = pre
        .instantiate(wasmtime_wasi::WasiCtxBuilder::new())
        .unwrap();
    assert_eq!(p.call_wave("ok", &[]).unwrap(), ["7"]);
    // The timeout is per call: an instance that made calls before still gets its whole time.
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(p.call_wave("ok", &[]).unwrap(), ["7"]);
    // An argument error happens before the guest runs: no poison.
    assert!(matches!(
        p.call_wave("deep", &["x".into()]),
        Err(ComponentError::Argument { .. })
    ));
    assert!(!p.is_poisoned());
    let e = p.call_wave("spin", &[]).unwrap_err();
    assert!(matches!(e, ComponentError::Limit { .. }), "{e}");
    assert!(p.is_poisoned());
    for f in ["ok", "spin"] {
        let e = p.call_wave(f, &[]).unwrap_err();
        assert!(matches!(e, ComponentError::Poisoned { .. }), "{e}");
        let msg = e.to_string();
        assert!(
            msg.ends_with(
                "comp_hostile.wasm: the instance is poisoned: an earlier call of spin failed \
                 (stopped after the 100ms time limit (--timeout)); load the component again"
            ),
            "{msg}"
        );
    }
    assert!(matches!(
        p.run_command(),
        Err(ComponentError::Poisoned { .. })
    ));
    // Traps poison too, not only limits.
    let mut q = pre
        .instantiate(wasmtime_wasi::WasiCtxBuilder::new())
        .unwrap();
    assert!(matches!(
        q.call_wave("bad-utf8", &[]),
        Err(ComponentError::Trap { .. })
    ));
    assert!(matches!(
        q.call_wave("ok", &[]),
        Err(ComponentError::Poisoned { .. })
    ));
    let mut fresh = pre
        .instantiate(wasmtime_wasi::WasiCtxBuilder::new())
        .unwrap();
    assert_eq!(fresh.call_wave("ok", &[]).unwrap(), ["7"]);
}

#[test]
fn fuel_is_per_call() {
    let d = tempfile::tempdir().unwrap();
    let path = fixture(d.path(), "comp_hostile");
    let mut c = wasmtime::Config::new();
    c.consume_fuel(true);
    let limits = ComponentLimits {
        fuel: Some(10_000),
        ..Default::default()
    };
    let mut p = ComponentProcess::load(
        &wasmtime::Engine::new(&c).unwrap(),
        &path,
        wasmtime_wasi::WasiCtxBuilder::new(),
        limits,
    )
    .unwrap();
    for _ in 0..50 {
        assert_eq!(p.call_wave("ok", &[]).unwrap(), ["7"]);
    }
    let e = p.call_wave("spin", &[]).unwrap_err();
    assert!(
        e.to_string()
            .ends_with("spin: stopped after 10000 units of fuel (--fuel)"),
        "{e}"
    );
}

#[test]
fn a_pool_hands_out_warm_instances_and_replaces_a_poisoned_one() {
    use wasmlink::component::ComponentPool;
    let d = tempfile::tempdir().unwrap();
    let path = fixture(d.path(), "comp_hostile");
    let limits = ComponentLimits {
        timeout: Some(Duration::from_millis(100)),
        ..Default::default()
    };
    let pre = Arc::new(ComponentPre::load(&engine(true), &path, limits).unwrap());
    let pool = ComponentPool::new(pre, 2, wasmtime_wasi::WasiCtxBuilder::new).unwrap();
    assert_eq!(pool.idle(), 2);
    {
        let mut a = pool.checkout().unwrap();
        let mut b = pool.checkout().unwrap();
        assert_eq!(pool.idle(), 0);
        // Past the size: a new instance, not a wait.
        let mut c = pool.checkout().unwrap();
        for p in [&mut a, &mut b, &mut c] {
            assert_eq!(p.call_wave("ok", &[]).unwrap(), ["7"]);
        }
        assert!(b.call_wave("spin", &[]).is_err());
        assert!(b.is_poisoned());
    }
    // Back to its size, and no instance handed out is poisoned.
    assert_eq!(pool.idle(), 2);
    // A discarded instance does not go back (serve drops one whose memory grew too much).
    pool.checkout().unwrap().discard();
    assert_eq!(pool.idle(), 1);
    drop(pool.checkout().unwrap());
    assert_eq!(pool.idle(), 1);
    for _ in 0..4 {
        let mut p = pool.checkout().unwrap();
        assert!(!p.is_poisoned());
        assert_eq!(p.call_wave("ok", &[]).unwrap(), ["7"]);
    }
    // Instances are shared across threads.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let mut p = pool.checkout().unwrap();
                assert_eq!(p.call_wave("ok", &[]).unwrap(), ["7"]);
            });
        }
    });
}

#[test]
fn a_socket_is_denied_without_a_network_grant() {
    let d = tempfile::tempdir().unwrap();
    fixture(d.path(), "comp_socket");
    // 2: `err(access-denied)`.
    let (code, out, err) = w(d.path(), &["call", "comp_socket.wasm", "tcp"]);
    assert_eq!((code, out.as_str()), (Some(0), "2\n"), "{err}");
    let (code, out, err) = w(
        d.path(),
        &[
            "call",
            "--allow-net",
            "127.0.0.1:9",
            "comp_socket.wasm",
            "tcp",
        ],
    );
    assert_eq!((code, out.as_str()), (Some(0), "0\n"), "{err}");
}

#[test]
fn no_directory_is_reachable_without_a_dirs_grant() {
    let d = tempfile::tempdir().unwrap();
    fixture(d.path(), "comp_preopens");
    std::fs::create_dir(d.path().join("data")).unwrap();
    let (code, out, err) = w(d.path(), &["call", "comp_preopens.wasm", "count"]);
    assert_eq!((code, out.as_str()), (Some(0), "0\n"), "{err}");
    let (code, out, err) = w(
        d.path(),
        &["call", "--dir-ro", "data", "comp_preopens.wasm", "count"],
    );
    assert_eq!((code, out.as_str()), (Some(0), "1\n"), "{err}");
}
