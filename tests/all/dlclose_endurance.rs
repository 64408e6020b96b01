//! A `dlclose` that gives everything back: thousands of dlopen/dlsym/call/dlclose cycles of one
//! library leave the table, the linear memory and the store's instance count as they were
//! after the first few, and a stale function pointer never reaches a different function.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use wasmlink::process::{RTLD_GLOBAL, RTLD_NOW};
use wasmlink::resolve::SearchPath;
use wasmlink::{LinkError, Process, ProcessBuilder, Symbol};
use wasmtime::{Ref, Val};

use crate::support::{Link, c_fixture, fixtures_out};

fn app() -> PathBuf {
    c_fixture("libutil.so", Link::Shared, &["ld_util.c"], &[], &[]);
    c_fixture("libplugin.so", Link::Shared, &["ld_plugin.c"], &[], &[]);
    c_fixture(
        "ld_app.wasm",
        Link::Pie,
        &["ld_app.c"],
        &["libutil.so"],
        &[],
    )
}

fn process(cache: bool) -> Process {
    let mut s = SearchPath::new();
    s.add_dir(fixtures_out());
    let b = ProcessBuilder::new().search_path(s).cache_dir(None);
    let b = if cache { b } else { b.module_cache(None) };
    b.load(&app()).unwrap()
}

/// Calls the function in table slot `slot` with one i32.
fn call_slot(p: &mut Process, slot: u32, x: i32) -> Result<i32, String> {
    let table = p.table();
    let Some(Ref::Func(Some(f))) = table.get(p.store_mut(), u64::from(slot)) else {
        return Err(format!("slot {slot} holds no function"));
    };
    let mut out = [Val::I32(0)];
    f.call(p.store_mut(), &[Val::I32(x)], &mut out)
        .map_err(|e| format!("{e:#}"))?;
    Ok(out[0].unwrap_i32())
}

/// One dlopen/dlsym/call/dlclose cycle; returns `plugin_run`'s slot.
fn cycle(p: &mut Process, n: usize) -> u32 {
    let h = p
        .dlopen("libplugin.so", RTLD_NOW)
        .unwrap_or_else(|e| panic!("cycle {n}: {e}"));
    let Symbol::Function(slot) = p.dlsym(h, "plugin_run").unwrap() else {
        panic!("plugin_run is a function");
    };
    // app_callback(x) = 2x, plus loads (1: the constructor ran once in this copy) * 1000.
    assert_eq!(call_slot(p, slot, 3), Ok(6 + 1000), "cycle {n}");
    p.dlclose(h).unwrap();
    slot
}

/// What a process holds: table slots, memory bytes, wasmtime instances, loaded libraries.
fn footprint(p: &mut Process) -> (u64, usize, usize, usize) {
    let table = p.table();
    let memory = p.memory();
    (
        table.size(p.store_mut()),
        memory.data_size(p.store_mut()),
        p.instance_count(),
        p.libraries().len(),
    )
}

fn mean(d: &[Duration]) -> Duration {
    d.iter().sum::<Duration>() / d.len().max(1) as u32
}

fn cycles_stay_flat(cache: bool) {
    const N: usize = 2_000;
    let mut p = process(cache);
    let mut times = Vec::with_capacity(N);
    let mut after_warmup = None;
    for n in 0..N {
        let t = Instant::now();
        cycle(&mut p, n);
        times.push(t.elapsed());
        if n == 4 {
            after_warmup = Some(footprint(&mut p));
        }
    }
    let after_warmup = after_warmup.unwrap();
    let end = footprint(&mut p);
    eprintln!(
        "{N} cycles (module cache {cache}): first 200 {:?}/cycle, last 200 {:?}/cycle; \
         (table, memory, instances, libraries) {after_warmup:?} -> {end:?}",
        mean(&times[..200]),
        mean(&times[N - 200..])
    );
    assert_eq!(
        end, after_warmup,
        "(table slots, memory bytes, instances, libraries) after {N} cycles against after 5"
    );
}

#[test]
fn dlclose_cycles_keep_table_memory_and_instances_flat() {
    cycles_stay_flat(true);
}

#[test]
fn dlclose_cycles_stay_flat_without_a_module_cache() {
    cycles_stay_flat(false);
}

#[test]
fn dlclose_stale_pointer_traps_then_reaches_the_same_function_of_the_reloaded_copy() {
    let mut p = process(true);
    let slot = cycle(&mut p, 0);
    // Unloaded: the canonical slot traps, naming the library.
    let err = call_slot(&mut p, slot, 3).unwrap_err();
    assert!(
        err.contains("undefined symbol: plugin_run (libplugin.so was unloaded)"),
        "{err}"
    );
    // Other loads and function slots taken in between never get the freed slot.
    let h = p.dlopen("libutil.so", RTLD_NOW | RTLD_GLOBAL).unwrap();
    for name in ["util_add", "app_callback"] {
        if let Ok(Symbol::Function(s)) = p.dlsym(0, name) {
            assert_ne!(s, slot, "{name} took the unloaded plugin_run's slot");
        }
    }
    p.dlclose(h).unwrap();
    // Reloaded: the same slot is plugin_run of the new copy, which starts afresh.
    let h = p.dlopen("libplugin.so", RTLD_NOW).unwrap();
    assert_eq!(p.dlsym(h, "plugin_run").unwrap(), Symbol::Function(slot));
    assert_eq!(call_slot(&mut p, slot, 3), Ok(6 + 1000));
    p.dlclose(h).unwrap();
    assert!(
        call_slot(&mut p, slot, 3)
            .unwrap_err()
            .contains("was unloaded")
    );
    assert!(matches!(
        p.dlsym(h, "plugin_run"),
        Err(LinkError::BadHandle(_))
    ));
}

#[test]
fn dlclose_then_a_changed_file_at_the_same_path_is_loaded_afresh() {
    app();
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("libswapped.so");
    std::fs::write(
        &lib,
        std::fs::read(fixtures_out().join("libplugin.so")).unwrap(),
    )
    .unwrap();
    let mut s = SearchPath::new();
    s.add_dir(fixtures_out());
    s.add_dir(dir.path());
    let mut p = ProcessBuilder::new()
        .search_path(s)
        .cache_dir(None)
        .load(&app())
        .unwrap();
    let h = p.dlopen("libswapped.so", RTLD_NOW).unwrap();
    let Symbol::Function(run) = p.dlsym(h, "plugin_run").unwrap() else {
        panic!("plugin_run is a function");
    };
    assert_eq!(call_slot(&mut p, run, 3), Ok(6 + 1000));
    p.dlclose(h).unwrap();
    let instances = p.instance_count();
    // Other bytes under the same name: the parked copy is not the module on disk any more.
    std::fs::write(
        &lib,
        std::fs::read(fixtures_out().join("libutil.so")).unwrap(),
    )
    .unwrap();
    let h = p.dlopen("libswapped.so", RTLD_NOW).unwrap();
    assert!(
        p.instance_count() > instances,
        "a new instance for the new bytes"
    );
    assert!(matches!(
        p.dlsym(h, "plugin_run"),
        Err(LinkError::NoSuchSymbol { .. })
    ));
    assert!(matches!(p.dlsym(h, "util_add"), Ok(Symbol::Function(_))));
    // The old copy's function pointer still traps; it never reaches the new library.
    assert!(
        call_slot(&mut p, run, 3)
            .unwrap_err()
            .contains("was unloaded")
    );
    p.dlclose(h).unwrap();
}
