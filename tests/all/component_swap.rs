//! Hot swap for components ([`ComponentPool::swap`]): a compatible component replaces the old
//! one under running callers (in-flight calls finish on the old one, later calls see the new
//! one, nobody sees an error); an incompatible one is refused with one line naming the first
//! differing function, and the old component keeps serving.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use wasmlink::component::{ComponentError, ComponentLimits, ComponentPool, ComponentPre};

/// A component exporting `version: func() -> u32` (returning `version`, of type `version_ty`)
/// and an interface `wasmlink:demo/geo@0.1.0` with `greet: func(p: point) -> u32` over a
/// record type whose second field is `second`.
fn component(version: u32, version_ty: &str, second: &str) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(component
  (core module $m (func (export "version") (result i32) (i32.const {version})))
  (core instance $i (instantiate $m))
  (func (export "version") (result {version_ty}) (canon lift (core func $i "version")))
  (component $geo
    (core module $m
      (func (export "greet") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1))))
    (core instance $i (instantiate $m))
    (type $point (record (field "x" u32) (field "{second}" u32)))
    (export $p "point" (type $point))
    (func $g (param "p" $p) (result u32) (canon lift (core func $i "greet")))
    (export "greet" (func $g)))
  (instance $gi (instantiate $geo))
  (export "wasmlink:demo/geo@0.1.0" (instance $gi)))"#
    ))
    .unwrap()
}

fn pre(dir: &Path, name: &str, bytes: &[u8]) -> Arc<ComponentPre> {
    let engine = wasmtime::Engine::default();
    let path = dir.join(name);
    Arc::new(ComponentPre::new(&engine, &path, bytes, ComponentLimits::default()).unwrap())
}

fn pool(dir: &Path) -> ComponentPool {
    let v1 = pre(dir, "v1.wasm", &component(1, "u32", "y"));
    ComponentPool::new(v1, 2, wasmtime_wasi::WasiCtxBuilder::new).unwrap()
}

#[test]
fn calls_across_a_swap_see_the_old_then_the_new_component_never_an_error() {
    let d = tempfile::tempdir().unwrap();
    let pool = pool(d.path());
    let v2 = pre(d.path(), "v2.wasm", &component(2, "u32", "y"));

    // An instance checked out before the swap finishes its calls on the old component.
    let mut held = pool.checkout().unwrap();
    assert_eq!(held.call_wave("version", &[]).unwrap(), ["1"]);

    let stop = AtomicBool::new(false);
    let seen = std::thread::scope(|s| {
        let callers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let mut seen = Vec::new();
                    loop {
                        let done = stop.load(Ordering::SeqCst);
                        let mut p = pool.checkout().expect("checkout during a swap");
                        let v = p.call_wave("version", &[]).expect("call during a swap");
                        seen.push(v[0].clone());
                        if done {
                            break seen;
                        }
                    }
                })
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(50));
        pool.swap(Arc::clone(&v2)).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        stop.store(true, Ordering::SeqCst);
        callers
            .into_iter()
            .map(|c| c.join().unwrap())
            .collect::<Vec<_>>()
    });
    for calls in &seen {
        // Old results, then new ones: never back to the old component after the new one.
        let first_new = calls.iter().position(|v| v == "2").expect("new results");
        assert!(first_new > 0, "no call before the swap: {calls:?}");
        assert!(calls[..first_new].iter().all(|v| v == "1"), "{calls:?}");
        assert!(calls[first_new..].iter().all(|v| v == "2"), "{calls:?}");
    }

    // The held instance still runs the old component, and is drained when given back.
    assert_eq!(held.call_wave("version", &[]).unwrap(), ["1"]);
    drop(held);
    for _ in 0..4 {
        assert_eq!(
            pool.checkout().unwrap().call_wave("version", &[]).unwrap(),
            ["2"]
        );
    }
    assert!(pool.idle() <= 2);
    assert!(Arc::ptr_eq(&pool.current(), &v2));
}

#[test]
fn an_incompatible_swap_is_refused_and_the_old_component_keeps_serving() {
    let d = tempfile::tempdir().unwrap();
    let pool = pool(d.path());
    let cases = [
        // A result type changed.
        (
            component(2, "s32", "y"),
            "function version: its type changed from `func() -> u32` to `func() -> s32`",
        ),
        // A record field renamed: the same type name, another structure.
        (
            component(2, "u32", "z"),
            "function wasmlink:demo/geo@0.1.0#greet: its type changed from `func(p: point{x: u32, y: u32}) -> u32` \
             to `func(p: point{x: u32, z: u32}) -> u32`",
        ),
    ];
    for (bytes, want) in cases {
        let next = pre(d.path(), "v2.wasm", &bytes);
        let e = pool.swap(next).unwrap_err();
        assert!(matches!(e, ComponentError::Incompatible { .. }), "{e:?}");
        let msg = e.to_string();
        assert_eq!(msg.lines().count(), 1, "{msg}");
        assert!(
            msg.starts_with(&format!(
                "{}: cannot replace {}: ",
                d.path().join("v2.wasm").display(),
                d.path().join("v1.wasm").display()
            )),
            "{msg}"
        );
        assert!(msg.ends_with(want), "{msg}\nwant: {want}");
        assert_eq!(
            pool.checkout().unwrap().call_wave("version", &[]).unwrap(),
            ["1"]
        );
    }
    // A component missing an export is refused naming it.
    let fewer = wat::parse_str(
        r#"(component
  (core module $m (func (export "version") (result i32) (i32.const 3)))
  (core instance $i (instantiate $m))
  (func (export "version") (result u32) (canon lift (core func $i "version"))))"#,
    )
    .unwrap();
    let e = pool
        .swap(pre(d.path(), "v3.wasm", &fewer))
        .unwrap_err()
        .to_string();
    assert!(
        e.ends_with("function wasmlink:demo/geo@0.1.0#greet: not exported"),
        "{e}"
    );
    assert_eq!(
        pool.checkout()
            .unwrap()
            .call_wave("geo#greet", &["{x: 2, y: 3}".into()])
            .unwrap(),
        ["5"]
    );
}
