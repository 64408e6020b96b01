//! Extism's echo, next to memcpy and a raw wasmtime call, in one process.
//!
//! Run by `scripts/bench-extism.sh` (which builds the guest first). Measured with criterion:
//!
//! - `echo16/memcpy`: 16 MiB copied into a preallocated `Vec` (the reference);
//! - `echo16/extism_echo`: `plugin.call::<&[u8], &[u8]>("echo", 16 MiB)`; the output is a
//!   borrow of the Extism kernel's memory (no copy out);
//! - `echo16/extism_echo_vec`: the same call with `Vec<u8>` output (one more copy, out to
//!   the host, as a host that keeps the result must do);
//! - `echo16/extism_input_len`: the guest reads the 16 MiB input the way `echo` does but
//!   returns 8 bytes (so echo minus this is the cost of setting the output);
//! - `echo16/extism_noop`: a call with 16 MiB input that the guest never reads (the host's
//!   copy into the kernel's memory plus the call overhead);
//! - `call/extism_echo64`: a 64-byte echo; `call/extism_noop0`: an empty call;
//! - `call/raw_add`: a raw wasmtime `TypedFunc<(i32, i32), i32>` call of a trivial `add`, on
//!   the same wasmtime extism runs on (default `Config`); `call/raw_add_epoch`: the same with
//!   epoch interruption on, as extism configures its engine.
//!
//! Each input is checked before it is measured (echo output == input, lengths, empty output).
//! At the end it prints a table (median, GB/s = 16 MiB / median with 1 GB = 1e9 B, ratio to
//! memcpy) and writes a JSON summary to `$EXTISM_ECHO_JSON` (default
//! `<target dir>/echo.json`). The guest is read from `$EXTISM_ECHO_WASM` (default
//! `<target dir>/wasm32-unknown-unknown/release/extism_echo_guest.wasm`).

use criterion::{Criterion, Throughput};
use extism::Plugin;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};
use wasmtime::{Config, Engine, Instance, Module, Store, TypedFunc};

const BIG: usize = 16 << 20;
const SMALL: usize = 64;

const ADD_WAT: &str = r#"(module
  (func (export "add") (param i32 i32) (result i32)
    local.get 0 local.get 1 i32.add))"#;

/// The target directory: `$CARGO_TARGET_DIR`, else three levels above this executable
/// (`<target>/release/deps/echo-HASH`).
fn target_dir() -> Result<PathBuf, String> {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().map_err(|e| format!("current executable: {e}"))?;
    exe.ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .ok_or_else(|| format!("no target directory above {}", exe.display()))
}

/// A deterministic, non-constant pattern, so an echo that drops or reorders bytes is caught.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(31) % 251) as u8).collect()
}

/// The version of `name` in this workspace's Cargo.lock (embedded at build time).
fn locked_version(name: &str) -> String {
    let lock = include_str!("../Cargo.lock");
    let needle = format!("name = \"{name}\"");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == needle
            && let Some(v) = lines.next().and_then(|l| l.strip_prefix("version = \""))
        {
            return v.trim_end_matches('"').to_string();
        }
    }
    "unknown".to_string()
}

/// Criterion's median point estimate (ns) for `group/id`, if that benchmark ran in this
/// process (an estimate written before `since` is from an earlier run and is ignored).
fn median_ns(crit: &Path, group: &str, id: &str, since: SystemTime) -> Option<f64> {
    let path = crit.join(group).join(id).join("new").join("estimates.json");
    if std::fs::metadata(&path).ok()?.modified().ok()? < since {
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v["median"]["point_estimate"].as_f64()
}

fn fmt_ns(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.3} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.3} µs", ns / 1e3)
    } else {
        format!("{ns:.2} ns")
    }
}

fn raw_add(epoch: bool) -> Result<(Store<()>, TypedFunc<(i32, i32), i32>), String> {
    let mut config = Config::new();
    config.epoch_interruption(epoch);
    let engine = Engine::new(&config).map_err(|e| format!("raw wasmtime engine: {e}"))?;
    let module = Module::new(&engine, ADD_WAT).map_err(|e| format!("raw add module: {e}"))?;
    let mut store = Store::new(&engine, ());
    if epoch {
        // Far in the future: the deadline is checked on every call but never reached.
        store.set_epoch_deadline(u64::MAX / 2);
    }
    let instance =
        Instance::new(&mut store, &module, &[]).map_err(|e| format!("raw add instance: {e}"))?;
    let add = instance
        .get_typed_func::<(i32, i32), i32>(&mut store, "add")
        .map_err(|e| format!("raw add export `add`: {e}"))?;
    let got = add
        .call(&mut store, (2, 3))
        .map_err(|e| format!("raw add call: {e}"))?;
    if got != 5 {
        return Err(format!("raw add(2, 3) returned {got}, expected 5"));
    }
    Ok((store, add))
}

/// Calls `func` with `input` and checks the output with `check`.
fn checked_call(
    plugin: &mut Plugin,
    func: &str,
    input: &[u8],
    check: impl FnOnce(&[u8]) -> Result<(), String>,
) -> Result<(), String> {
    let out = plugin
        .call::<&[u8], &[u8]>(func, input)
        .map_err(|e| format!("extism call `{func}` ({} bytes): {e}", input.len()))?;
    check(out).map_err(|e| format!("extism `{func}` ({} bytes): {e}", input.len()))
}

fn same(input: &[u8]) -> impl FnOnce(&[u8]) -> Result<(), String> + '_ {
    move |out: &[u8]| {
        if out == input {
            Ok(())
        } else {
            let at = out.iter().zip(input).position(|(a, b)| a != b);
            Err(format!(
                "output differs from input (lengths {} and {}, first difference at {:?})",
                out.len(),
                input.len(),
                at
            ))
        }
    }
}

fn run() -> Result<(), String> {
    let start = SystemTime::now();
    // `cargo bench` passes --bench; without it (`cargo test --benches`) criterion runs each
    // benchmark once as a test, writes no estimates, and there is nothing to report.
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let target = target_dir()?;
    let wasm_path = std::env::var_os("EXTISM_ECHO_WASM")
        .map(PathBuf::from)
        .unwrap_or_else(|| target.join("wasm32-unknown-unknown/release/extism_echo_guest.wasm"));
    let json_path = std::env::var_os("EXTISM_ECHO_JSON")
        .map(PathBuf::from)
        .unwrap_or_else(|| target.join("echo.json"));
    let crit_dir = target.join("criterion");
    let wasm = std::fs::read(&wasm_path).map_err(|e| {
        format!(
            "{}: {e} (build the guest first: scripts/bench-extism.sh)",
            wasm_path.display()
        )
    })?;

    let mut plugin = Plugin::new(&wasm[..], [], false)
        .map_err(|e| format!("{}: extism plugin: {e}", wasm_path.display()))?;
    let big = pattern(BIG);
    let small = pattern(SMALL);
    checked_call(&mut plugin, "echo", &big, same(&big))?;
    checked_call(&mut plugin, "echo", &small, same(&small))?;
    let big_len = (BIG as u64).to_le_bytes();
    checked_call(&mut plugin, "input_len", &big, same(&big_len))?;
    checked_call(&mut plugin, "noop", &big, same(&[]))?;
    checked_call(&mut plugin, "noop", &[], same(&[]))?;
    let owned = plugin
        .call::<&[u8], Vec<u8>>("echo", &big)
        .map_err(|e| format!("extism call `echo` (Vec output): {e}"))?;
    if owned != big {
        return Err("extism `echo` with Vec<u8> output: output differs from input".into());
    }
    drop(owned);
    let (mut raw_store, raw_add_fn) = raw_add(false)?;
    let (mut epoch_store, epoch_add_fn) = raw_add(true)?;

    let mut c = Criterion::default()
        .output_directory(&crit_dir)
        .configure_from_args();

    {
        let mut g = c.benchmark_group("echo16");
        g.sample_size(20)
            .warm_up_time(Duration::from_secs(2))
            .measurement_time(Duration::from_secs(10))
            .throughput(Throughput::Bytes(BIG as u64));
        let mut dst = vec![0u8; BIG];
        g.bench_function("memcpy", |b| {
            b.iter(|| {
                dst.copy_from_slice(black_box(&big));
                black_box(&dst);
            })
        });
        for func in ["echo", "input_len", "noop"] {
            g.bench_function(format!("extism_{func}"), |b| {
                b.iter(|| {
                    let out = plugin
                        .call::<&[u8], &[u8]>(func, black_box(&big[..]))
                        .expect("extism call (checked above)");
                    black_box(out);
                })
            });
        }
        g.bench_function("extism_echo_vec", |b| {
            b.iter(|| {
                plugin
                    .call::<&[u8], Vec<u8>>("echo", black_box(&big[..]))
                    .expect("extism call (checked above)")
            })
        });
        g.finish();
    }
    {
        let mut g = c.benchmark_group("call");
        g.warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3));
        g.bench_function("extism_echo64", |b| {
            b.iter(|| {
                let out = plugin
                    .call::<&[u8], &[u8]>("echo", black_box(&small[..]))
                    .expect("extism call (checked above)");
                black_box(out);
            })
        });
        g.bench_function("extism_noop0", |b| {
            b.iter(|| {
                let out = plugin
                    .call::<&[u8], &[u8]>("noop", black_box(&[][..]))
                    .expect("extism call (checked above)");
                black_box(out);
            })
        });
        g.bench_function("raw_add", |b| {
            b.iter(|| {
                raw_add_fn
                    .call(&mut raw_store, black_box((2, 3)))
                    .expect("raw add (checked above)")
            })
        });
        g.bench_function("raw_add_epoch", |b| {
            b.iter(|| {
                epoch_add_fn
                    .call(&mut epoch_store, black_box((2, 3)))
                    .expect("raw add (checked above)")
            })
        });
        g.finish();
    }
    c.final_summary();

    if bench_mode {
        report(&crit_dir, &json_path, start)
    } else {
        Ok(())
    }
}

fn report(crit: &Path, json_path: &Path, since: SystemTime) -> Result<(), String> {
    let m = |g: &str, id: &str| median_ns(crit, g, id, since);
    let memcpy = m("echo16", "memcpy");
    let (extism, wasmtime, pdk) = (
        locked_version("extism"),
        locked_version("wasmtime"),
        locked_version("extism-pdk"),
    );
    let mut out = format!(
        "\nExtism {extism} (wasmtime {wasmtime}), guest on extism-pdk {pdk}, wasm32-unknown-unknown\n\
         16 MiB (GB/s = 16 MiB / median; 1 GB = 1e9 bytes)\n\
         | echo16 | median | GB/s | vs memcpy |\n|---|---|---|---|\n"
    );
    for id in [
        "memcpy",
        "extism_echo",
        "extism_echo_vec",
        "extism_input_len",
        "extism_noop",
    ] {
        match m("echo16", id) {
            Some(v) => out.push_str(&format!(
                "| {id} | {} | {:.2} | {} |\n",
                fmt_ns(v),
                BIG as f64 / v,
                memcpy.map_or("-".into(), |c| format!("{:.1}x time", v / c))
            )),
            None => out.push_str(&format!("| {id} | (not run) | - | - |\n")),
        }
    }
    let raw = m("call", "raw_add");
    out.push_str("\nCalls\n| call | median | vs raw_add |\n|---|---|---|\n");
    for id in ["raw_add", "raw_add_epoch", "extism_noop0", "extism_echo64"] {
        match m("call", id) {
            Some(v) => out.push_str(&format!(
                "| {id} | {} | {} |\n",
                fmt_ns(v),
                raw.map_or("-".into(), |r| format!("{:.1}x", v / r))
            )),
            None => out.push_str(&format!("| {id} | (not run) | - |\n")),
        }
    }
    println!("{out}");

    let summary = serde_json::json!({
        "memcpy_ns": memcpy,
        "extism_echo16_ns": m("echo16", "extism_echo"),
        "extism_echo64_ns": m("call", "extism_echo64"),
        "raw_call_ns": raw,
        "raw_call_epoch_ns": m("call", "raw_add_epoch"),
        "extism_echo16_vec_ns": m("echo16", "extism_echo_vec"),
        "extism_input_len16_ns": m("echo16", "extism_input_len"),
        "extism_noop16_ns": m("echo16", "extism_noop"),
        "extism_noop0_ns": m("call", "extism_noop0"),
        "bytes": BIG,
        "extism": extism,
        "wasmtime": wasmtime,
        "extism_pdk": pdk,
        "guest_target": "wasm32-unknown-unknown",
    });
    let text = serde_json::to_string_pretty(&summary).map_err(|e| format!("JSON summary: {e}"))?;
    if let Some(dir) = json_path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(json_path, text + "\n").map_err(|e| format!("{}: {e}", json_path.display()))?;
    println!("JSON summary: {}", json_path.display());
    Ok(())
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
