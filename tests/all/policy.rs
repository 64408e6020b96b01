//! The policy format: its checked-in schema, `wasmlink policy check`, and the README's
//! sandboxed-plugin walk-through, run for real.

use crate::support::{root, stderr, stdout, wasmlink};

#[test]
fn checked_in_schema_matches_the_types() {
    let path = root().join("docs/policy.schema.json");
    let want = wasmlink::policy::Policy::json_schema();
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(&path, &want).expect("write schema");
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "docs/policy.schema.json is stale: run with BLESS=1"
    );
    let out = wasmlink(&["policy", "schema"]);
    assert_eq!(stdout(&out), want);
}

#[test]
fn policy_check_prints_the_effective_policy() {
    let file = root().join("examples/policy/plugin.toml");
    let out = wasmlink(&["policy", "check", file.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains(": ok\n"), "{text}");
    assert!(text.contains("/data (read-only)"), "{text}");
    assert!(
        text.contains(
            "limits   memory 32 MiB, stack 512 KiB, timeout 500ms, fuel 50000000, output 1 MiB"
        ),
        "{text}"
    );
    // Settings in the file's own spelling, not the Rust enum names (`stdout Capture`).
    assert!(
        text.contains("stdio    stdin = \"closed\", stdout = \"capture\", stderr = \"closed\""),
        "{text}"
    );
    assert!(
        text.contains("random = \"deterministic\"; net no"),
        "{text}"
    );
    assert!(text.contains("table-elements "), "{text}");
    // The schema's descriptions hold no rustdoc-only links.
    let schema = wasmlink::policy::Policy::json_schema();
    assert!(!schema.contains("](self)"), "a rustdoc link in the schema");
}

/// examples/policy/spin.wat compiled into `dir`.
fn spin_module(dir: &std::path::Path) -> std::path::PathBuf {
    let module = dir.join("spin.wasm");
    std::fs::write(
        &module,
        wat::parse_file(root().join("examples/policy/spin.wat")).expect("wat"),
    )
    .expect("write");
    module
}

#[test]
fn timeout_none_means_no_limit_and_other_limits_still_hold() {
    let dir = tempfile::tempdir().expect("tempdir");
    let module = spin_module(dir.path());
    let m = module.to_str().expect("utf-8");
    let out = wasmlink(&["call", "--timeout", "none", m, "add", "2", "3"]);
    assert_eq!(
        (stdout(&out).as_str(), out.status.code()),
        ("5\n", Some(0)),
        "{}",
        stderr(&out)
    );
    // Without clock checks, fuel still stops an endless loop.
    let out = wasmlink(&["call", "--timeout", "none", "--fuel", "100000", m, "spin"]);
    assert_eq!(
        stderr(&out).trim_end(),
        "wasmlink: plugin `spin`: `spin` ran out of fuel after 100000 units (limits.fuel)"
    );
    let out = wasmlink(&["call", "--timeout", "soon", m, "add", "1", "1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(
            "`soon` is not a duration (expected e.g. \"250ms\", \"2s\", \"1m\", \"none\")"
        ),
        "{}",
        stderr(&out)
    );
    let policy = dir.path().join("p.toml");
    std::fs::write(&policy, "[limits]\ntimeout = \"none\"\n").expect("write");
    let out = wasmlink(&["policy", "check", policy.to_str().expect("utf-8")]);
    assert!(stdout(&out).contains("timeout none,"), "{}", stdout(&out));

    // In one host, a plugin with a timeout and one without: each gets the engine it needs.
    let host = wasmlink::plugin::PluginHost::new(Default::default()).expect("host");
    let timed =
        wasmlink::policy::Policy::from_toml("[limits]\ntimeout = \"50ms\"\n", "t.toml").unwrap();
    let untimed =
        wasmlink::policy::Policy::from_toml("[limits]\ntimeout = \"none\"\n", "u.toml").unwrap();
    assert_eq!(
        untimed.limits.timeout,
        Some(wasmlink::policy::HumanDuration::NONE)
    );
    let spin_timed = host.load_file(&module, timed).expect("load");
    let spin_free = host.load_file(&module, untimed).expect("load");
    let mut i = spin_timed.instance().expect("instance");
    assert_eq!(
        i.call("spin", &[]).unwrap_err().to_string(),
        "plugin `spin`: `spin` timed out after 50ms (limits.timeout)"
    );
    let mut i = spin_free.instance().expect("instance");
    let sum = i.call("add", &[40i32.into(), 2i32.into()]).expect("add");
    assert_eq!(sum[0].unwrap_i32(), 42);
    assert_eq!(i.limits().timeout, std::time::Duration::MAX);
}

#[test]
fn bad_policies_are_one_line_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("p.toml");
    let fs = f.to_str().expect("utf-8");
    for (text, want) in [
        (
            "[limits]\nmemroy = 1\n",
            format!(
                "wasmlink: {fs}:2:1: unknown field `memroy`, expected one of `memory`, `table-elements`, `instances`, `stack`, `fuel`, `timeout`, `output`, `isolation`"
            ),
        ),
        (
            "[limits]\nmemory = \"12 parsecs\"\n",
            format!(
                "wasmlink: {fs}:2:10: `12 parsecs`: unknown size unit `parsecs` (use B, KiB, MiB, GiB, kB, MB, GB)"
            ),
        ),
        (
            "[stdio]\nstdout = \"printer\"\n",
            format!(
                "wasmlink: {fs}:2:10: unknown variant `printer`, expected one of `closed`, `inherit`, `capture`"
            ),
        ),
        (
            "[[dirs]]\nhost = \"nowhere\"\nguest = \"/x\"\n",
            format!(
                "wasmlink: {fs}: dirs: host directory {} does not exist",
                dir.path().join("nowhere").display()
            ),
        ),
    ] {
        std::fs::write(&f, text).expect("write");
        let out = wasmlink(&["policy", "check", fs]);
        assert_eq!(out.status.code(), Some(2), "{text}");
        assert_eq!(stderr(&out).trim_end(), want, "{text}");
    }
}

#[test]
fn readme_sandbox_walkthrough() {
    let dir = tempfile::tempdir().expect("tempdir");
    let module = spin_module(dir.path());
    let m = module.to_str().expect("utf-8");
    let policy = root().join("examples/policy/plugin.toml");
    let p = policy.to_str().expect("utf-8");
    let out = wasmlink(&["call", "--policy", p, m, "add", "2", "3"]);
    assert_eq!(
        (stdout(&out).as_str(), out.status.code()),
        ("5\n", Some(0)),
        "{}",
        stderr(&out)
    );
    let out = wasmlink(&["call", "--policy", p, m, "spin"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim_end(),
        "wasmlink: plugin `spin`: `spin` ran out of fuel after 50000000 units (limits.fuel)"
    );
    let out = wasmlink(&["call", "--timeout", "100ms", m, "spin"]);
    assert_eq!(
        stderr(&out).trim_end(),
        "wasmlink: plugin `spin`: `spin` timed out after 100ms (limits.timeout)"
    );
    let out = wasmlink(&["call", "--policy", p, m, "hog"]);
    assert_eq!(
        stderr(&out).trim_end(),
        "wasmlink: plugin `spin`: `hog` tried to grow memory to 33619968 bytes beyond the 32 MiB limit (limits.memory)"
    );
    let out = wasmlink(&["call", m, "add", "2", "x"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out).trim_end(),
        format!("wasmlink: {m}: argument 2 of `add`: `x` is not a i32")
    );
}

#[test]
fn run_applies_a_policy_to_a_linked_program() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A static WASI command that prints its first environment variable count and tries the clock.
    let module = dir.path().join("probe.wasm");
    std::fs::write(
        &module,
        wat::parse_str(
            r#"(module
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $now (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (drop (call $sizes (i32.const 0) (i32.const 4)))
    ;; exit code = env count + 20 if the clock is denied (ENOTCAPABLE)
    (call $exit (i32.add (i32.load (i32.const 0))
                         (select (i32.const 20) (i32.const 0)
                           (i32.eq (call $now (i32.const 0) (i64.const 1) (i32.const 8)) (i32.const 76)))))))"#,
        )
        .expect("wat"),
    )
    .expect("write");
    let m = module.to_str().expect("utf-8");
    let policy = dir.path().join("p.toml");
    let p = policy.to_str().expect("utf-8");
    std::fs::write(&policy, "[env]\nvars = { A = \"1\" }\n").expect("write");
    // One variable granted, clocks denied: 1 + 20.
    let out = wasmlink(&["run", "--policy", p, m]);
    assert_eq!(out.status.code(), Some(21), "{}", stderr(&out));
    std::fs::write(&policy, "[capabilities]\nclocks = true\n").expect("write");
    let out = wasmlink(&["run", "--policy", p, m]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    std::fs::write(&policy, "[limits]\ntimeout = \"1s\"\n").expect("write");
    // A linked process honours limits.timeout (run_limits.rs); this program finishes in time
    // (no variables, clocks denied: 0 + 20).
    let out = wasmlink(&["run", "--policy", p, m]);
    assert_eq!(out.status.code(), Some(20), "{}", stderr(&out));
}
