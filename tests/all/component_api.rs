//! The component API on a hand-written WAT component: its world as WIT, typed WAVE calls, the
//! errors users meet, and a timeout that stops an endless export.

use std::path::PathBuf;
use std::time::Duration;

use wasmlink::component::{ComponentError, ComponentLimits, ComponentProcess, ComponentSummary};

fn demo() -> (tempfile::TempDir, PathBuf, Vec<u8>) {
    let src = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/wat/comp_demo.wat"
    );
    let bytes = wat::parse_file(src).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("demo.wasm");
    std::fs::write(&path, &bytes).unwrap();
    (dir, path, bytes)
}

fn engine(epoch: bool) -> wasmtime::Engine {
    let mut c = wasmtime::Config::new();
    c.epoch_interruption(epoch);
    wasmtime::Engine::new(&c).unwrap()
}

fn load(path: &std::path::Path, limits: ComponentLimits) -> ComponentProcess {
    let epoch = limits.timeout.is_some();
    ComponentProcess::load(
        &engine(epoch),
        path,
        wasmtime_wasi::WasiCtxBuilder::new(),
        limits,
    )
    .unwrap()
}

#[test]
fn the_world_is_printed_as_wit() {
    let (_d, _p, bytes) = demo();
    let s = ComponentSummary::parse(&bytes).unwrap();
    let text = s.to_text(bytes.len());
    assert!(text.contains("kind:           component\n"), "{text}");
    assert!(
        text.contains("  greet: func(name: string) -> string\n"),
        "{text}"
    );
    assert!(
        text.contains("  check: func(x: s32) -> result<s32, string>\n"),
        "{text}"
    );
    assert!(
        text.contains(
            "  wasmlink:demo/math@0.1.0 (interface)\n    add: func(a: u32, b: u32) -> u32\n"
        ),
        "{text}"
    );
    assert_eq!(s.core_modules.len(), 1);
    assert_eq!(s.imports.len(), 0);
}

#[test]
fn wave_arguments_and_results() {
    let (_d, path, _) = demo();
    let mut p = load(&path, ComponentLimits::default());
    assert_eq!(
        p.call_wave("greet", &["\"World\"".into()]).unwrap(),
        ["\"Hello, World\""]
    );
    assert_eq!(p.call_wave("check", &["5".into()]).unwrap(), ["ok(5)"]);
    // An `err` is a value, not a failure.
    assert_eq!(
        p.call_wave("check", &["-1".into()]).unwrap(),
        ["err(\"negative\")"]
    );
    for name in [
        "wasmlink:demo/math@0.1.0#add",
        "wasmlink:demo/math#add",
        "math#add",
    ] {
        assert_eq!(
            p.call_wave(name, &["40".into(), "2".into()]).unwrap(),
            ["42"],
            "{name}"
        );
    }
}

#[test]
fn wrong_calls_are_one_line_naming_function_parameter_and_type() {
    let (_d, path, _) = demo();
    let mut p = load(&path, ComponentLimits::default());
    let e = p.call_wave("greet", &["1".into(), "2".into()]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "greet takes 1 argument (name: string), 2 given"
    );
    let e = p.call_wave("greet", &["42".into()]).unwrap_err();
    assert!(
        matches!(&e, ComponentError::Argument { param, ty, .. } if param == "name" && ty == "string"),
        "{e}"
    );
    assert!(
        e.to_string()
            .starts_with("greet: argument name: expected string: "),
        "{e}"
    );
    let e = p
        .call_wave("math#add", &["-1".into(), "2".into()])
        .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("wasmlink:demo/math@0.1.0#add: argument a: expected u32"),
        "{e}"
    );
    let e = p.call_wave("nope", &[]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "no exported function nope (exported functions: wasmlink:demo/math@0.1.0#add, greet, check, spin)"
    );
    assert!(!e.to_string().contains('\n'));
    let e = p.run_command().unwrap_err();
    assert!(
        e.to_string().contains("not a wasi:cli/command component"),
        "{e}"
    );
}

#[test]
fn a_timeout_stops_an_endless_export() {
    let (_d, path, _) = demo();
    let mut p = load(
        &path,
        ComponentLimits {
            timeout: Some(Duration::from_millis(200)),
            ..Default::default()
        },
    );
    let e = p.call_wave("spin", &[]).unwrap_err();
    assert!(
        e.to_string()
            .contains("spin: stopped after the 200ms time limit"),
        "{e}"
    );
}

#[test]
fn not_a_component_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let core = d.path().join("core.wasm");
    std::fs::write(&core, wat::parse_str("(module)").unwrap()).unwrap();
    let e = ComponentProcess::load(
        &engine(false),
        &core,
        wasmtime_wasi::WasiCtxBuilder::new(),
        ComponentLimits::default(),
    )
    .err()
    .unwrap();
    assert!(
        e.to_string()
            .ends_with("core.wasm: not a WebAssembly component"),
        "{e}"
    );
    assert!(ComponentSummary::parse(b"\0asm\x0d\0\x01\0garbage").is_err());
}

#[test]
fn typed_calls_check_the_signature_once_and_obey_the_limits() {
    let (_d, path, _) = demo();
    let mut p = load(
        &path,
        ComponentLimits {
            timeout: Some(Duration::from_millis(200)),
            ..Default::default()
        },
    );
    {
        let mut greet = p.typed::<(&str,), (String,)>("greet").unwrap();
        assert_eq!(greet.name(), "greet");
        assert_eq!(greet.call(("World",)).unwrap().0, "Hello, World");
        assert_eq!(greet.call(("wasm",)).unwrap().0, "Hello, wasm");
    }
    {
        let mut add = p.typed::<(u32, u32), (u32,)>("math#add").unwrap();
        assert_eq!(add.call((40, 2)).unwrap(), (42,));
    }
    // A Rust signature that is not the WIT one is refused when the handle is made.
    let e = p.typed::<(u32,), (u32,)>("greet").err().unwrap();
    let m = e.to_string();
    assert!(
        m.starts_with("greet: argument (all): expected (name: string):"),
        "{m}"
    );
    assert!(!m.contains('\n'), "{m}");
    let e = p.typed::<(), ()>("nope").err().unwrap();
    assert!(matches!(e, ComponentError::NoSuchFunction { .. }), "{e}");
    // The timeout stops a typed call, and the instance is poisoned afterwards.
    let e = p.typed::<(), ()>("spin").unwrap().call(()).unwrap_err();
    assert!(
        e.to_string()
            .contains("spin: stopped after the 200ms time limit"),
        "{e}"
    );
    let e = p
        .typed::<(&str,), (String,)>("greet")
        .unwrap()
        .call(("x",))
        .unwrap_err();
    assert!(matches!(e, ComponentError::Poisoned { .. }), "{e}");
}
