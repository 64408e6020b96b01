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
