//! `wasmlink run` under limits and a network allow-list: an endless program stopped by
//! `--timeout` and `--fuel` (or the policy's `limits.timeout`/`limits.fuel`), a memory bomb
//! stopped by `--max-memory`, each with exit status 137 and one line naming the limit; and the
//! `capabilities.net` / `--allow-net` rules checked up front.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wasmlink::process::Limit;
use wasmlink::{LinkError, ProcessBuilder};

use crate::support::{Link, c_fixture, fixtures_out, stderr, wasmlink};

/// Writes `wat` as `dir/name`.
fn module(dir: &Path, name: &str, wat: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, wat::parse_str(wat).expect("wat")).expect("write");
    path
}

/// A static WASI command that never returns.
fn spin(dir: &Path) -> PathBuf {
    module(
        dir,
        "spin.wasm",
        r#"(module
  (memory (export "memory") 1)
  (func (export "_start") (loop $l (br $l))))"#,
    )
}

/// A static WASI command that grows its memory 1 MiB at a time until `memory.grow` fails, then
/// traps (`unreachable`).
fn memory_bomb(dir: &Path) -> PathBuf {
    module(
        dir,
        "bomb.wasm",
        r#"(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
    unreachable))"#,
    )
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8")
}

#[test]
fn timeout_stops_an_endless_program() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = spin(dir.path());
    let start = Instant::now();
    let out = wasmlink(&["run", "--timeout", "300ms", s(&m)]);
    assert!(start.elapsed() < Duration::from_secs(20), "took too long");
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "wasmlink: spin.wasm: stopped after the 300ms time limit (--timeout)\n"
    );
    // The same limit from a policy names its field.
    let policy = dir.path().join("p.toml");
    std::fs::write(&policy, "[limits]\ntimeout = \"1s\"\n").expect("write");
    let out = wasmlink(&["run", "--policy", s(&policy), s(&m)]);
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "wasmlink: spin.wasm: stopped after the 1s time limit (limits.timeout)\n"
    );
    // A flag overrides the policy's field.
    let out = wasmlink(&["run", "--policy", s(&policy), "--timeout", "200ms", s(&m)]);
    assert_eq!(
        stderr(&out),
        "wasmlink: spin.wasm: stopped after the 200ms time limit (--timeout)\n"
    );
}

#[test]
fn timeout_stops_a_program_blocked_in_a_host_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    // poll_oneoff on a 60-second relative clock subscription: blocked in the host, where no
    // epoch check runs.
    let m = module(
        dir.path(),
        "sleep.wasm",
        r#"(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (i32.store8 (i32.const 8) (i32.const 0))             ;; tag: clock
    (i32.store (i32.const 16) (i32.const 1))             ;; clock id: monotonic
    (i64.store (i32.const 24) (i64.const 60000000000))   ;; timeout: 60 s
    (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))))"#,
    );
    let start = Instant::now();
    let out = wasmlink(&["run", "--timeout", "300ms", s(&m)]);
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "took {:?}",
        start.elapsed()
    );
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "wasmlink: sleep.wasm: stopped after the 300ms time limit (--timeout)\n"
    );
}

#[test]
fn fuel_stops_an_endless_program() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = spin(dir.path());
    let out = wasmlink(&["run", "--fuel", "100000", s(&m)]);
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "wasmlink: spin.wasm: stopped after the 100000-unit fuel limit (--fuel)\n"
    );
    let policy = dir.path().join("p.toml");
    std::fs::write(&policy, "[limits]\nfuel = 5000\n").expect("write");
    let out = wasmlink(&["run", "--policy", s(&policy), s(&m)]);
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "wasmlink: spin.wasm: stopped after the 5000-unit fuel limit (limits.fuel)\n"
    );
}

#[test]
fn enough_fuel_and_time_let_a_program_finish() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = module(
        dir.path(),
        "count.wasm",
        r#"(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (local $i i32)
    (loop $l (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 1000))))
    (call $exit (i32.const 7))))"#,
    );
    let out = wasmlink(&[
        "run",
        "--fuel",
        "1000000",
        "--timeout",
        "10s",
        "--max-memory",
        "1MiB",
        s(&m),
    ]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert_eq!(stderr(&out), "");
}

#[test]
fn max_memory_stops_a_memory_bomb() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = memory_bomb(dir.path());
    let out = wasmlink(&["run", "--max-memory", "2MiB", s(&m)]);
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    assert_memory_stop(&stderr(&out), "2 MiB", "--max-memory");
    let policy = dir.path().join("p.toml");
    std::fs::write(&policy, "[limits]\nmemory = \"4 MiB\"\n").expect("write");
    let out = wasmlink(&["run", "--policy", s(&policy), s(&m)]);
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    assert_memory_stop(&stderr(&out), "4 MiB", "limits.memory");
}

/// `err` is the one line of a program stopped past the `limit` memory limit, set by `src`.
fn assert_memory_stop(err: &str, limit: &str, src: &str) {
    let size = err
        .strip_prefix("wasmlink: bomb.wasm: stopped when growing its memory to ")
        .and_then(|r| r.strip_suffix(&format!(", past the {limit} memory limit ({src})\n")))
        .unwrap_or_else(|| panic!("{err}"));
    // Past the limit, by at most the 1 MiB step the bomb grows by.
    let kib: u64 = size
        .strip_suffix(" KiB")
        .and_then(|k| k.parse().ok())
        .unwrap_or_else(|| panic!("{err}"));
    let limit_kib: u64 = limit.trim_end_matches(" MiB").parse::<u64>().unwrap() * 1024;
    assert!(kib > limit_kib && kib <= limit_kib + 1024 + 64, "{err}");
}

#[test]
fn bad_limits_and_rules_are_one_line_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let m = spin(dir.path());
    let cases: &[(&[&str], &str)] = &[
        (
            &["--timeout", "0s"],
            "command line: limits.timeout: must be more than zero",
        ),
        (
            &["--max-memory", "5GiB"],
            "command line: limits.memory: 5 GiB exceeds the 4 GiB a wasm32 memory can address",
        ),
        (
            &["--allow-net", "127.0.0.1:99999"],
            "--allow-net: `127.0.0.1:99999`: port `99999` is not a number from 0 to 65535 or `*`",
        ),
        (
            &["--allow-net", "exa mple.com:80"],
            "--allow-net: `exa mple.com:80`: host `exa mple.com` is not an IP address or a host name",
        ),
        (
            &["--allow-net", "localhost"],
            "--allow-net: `localhost`: expected HOST:PORT",
        ),
    ];
    for (flags, want) in cases {
        let mut args = vec!["run"];
        args.extend_from_slice(flags);
        args.push(s(&m));
        let out = wasmlink(&args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{flags:?}: {err}");
        assert!(err.contains(want), "{flags:?}: {err}");
    }
    // `call` takes --allow-net too; a preview 1 plugin has no sockets, so it is refused.
    let out = wasmlink(&["call", "--allow-net", "127.0.0.1:80", s(&m), "_start"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("WASI preview 1 has no sockets; remove capabilities.net"),
        "{}",
        stderr(&out)
    );
    // The same check of the rule.
    let out = wasmlink(&["call", "--allow-net", "1.2.3.4:x", s(&m), "_start"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("--allow-net: `1.2.3.4:x`: port `x` is not a number"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn policy_net_rules_are_checked_and_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("p.toml");
    let check = |toml: &str| {
        std::fs::write(&policy, toml).expect("write");
        wasmlink(&["policy", "check", s(&policy)])
    };
    for (net, want) in [
        (
            r#"["127.0.0.1:65536"]"#,
            "capabilities.net: `127.0.0.1:65536`: port `65536` is not a number from 0 to 65535 or `*`",
        ),
        (
            r#"["localhost:-1"]"#,
            "capabilities.net: `localhost:-1`: port `-1` is not a number",
        ),
        (
            r#"["under_score.com:80"]"#,
            "capabilities.net: `under_score.com:80`: host `under_score.com` is not an IP address or a host name",
        ),
        (
            r#"["::1:80"]"#,
            "capabilities.net: `::1:80`: host `::1` is not an IP address or a host name",
        ),
    ] {
        let out = check(&format!("[capabilities]\nnet = {net}\n"));
        let err = stderr(&out);
        assert_ne!(out.status.code(), Some(0), "{net}: {err}");
        assert_eq!(err.lines().count(), 1, "{net}: {err}");
        assert!(
            err.contains(&format!("{}: {want}", policy.display())),
            "{net}: {err}"
        );
    }
    let out = check("[capabilities]\nnet = [\"127.0.0.1:8080\", \"[::1]:*\", \"localhost:*\"]\n");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = crate::support::stdout(&out);
    assert!(
        text.contains("net 127.0.0.1:8080, [::1]:*, localhost:*"),
        "{text}"
    );
    // The old switch is still read.
    let out = check("[capabilities]\nnetwork = false\n");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // A program granted the network but using none runs as before.
    let m = spin(dir.path());
    std::fs::write(
        &policy,
        "[capabilities]\nnet = [\"localhost:*\"]\n[limits]\nfuel = 1000\n",
    )
    .expect("write");
    let out = wasmlink(&["run", "--policy", s(&policy), s(&m)]);
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
}

/// A PIE main and the shared library it spends its time and memory in.
fn linked_program() -> PathBuf {
    c_fixture("librl.so", Link::Shared, &["rl_lib.c"], &[], &[]);
    c_fixture(
        "rl_main.wasm",
        Link::Pie,
        &["rl_main.c"],
        &["librl.so"],
        &[],
    )
}

#[test]
fn limits_hold_in_a_linked_programs_libraries() {
    let main = linked_program();
    let lib_dir = fixtures_out();
    let l = s(&lib_dir);
    let out = wasmlink(&["run", "-L", l, "--timeout", "300ms", s(&main)]);
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "wasmlink: rl_main.wasm: stopped after the 300ms time limit (--timeout)\n"
    );
    let out = wasmlink(&["run", "-L", l, "--fuel", "1000000", s(&main)]);
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "wasmlink: rl_main.wasm: stopped after the 1000000-unit fuel limit (--fuel)\n"
    );
    let out = wasmlink(&[
        "run",
        "-L",
        l,
        "--max-memory",
        "8MiB",
        s(&main),
        "--",
        "grow",
    ]);
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.starts_with("wasmlink: rl_main.wasm: stopped when growing its memory to ")
            && err.ends_with(", past the 8 MiB memory limit (--max-memory)\n"),
        "{err}"
    );
    // Without a limit, growth fails as memory.grow does and the program carries on.
    let out = wasmlink(&["run", "-L", l, s(&main), "--", "grow"]);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
}

#[test]
fn the_library_api_reports_the_limit() {
    let main = linked_program();
    let mut search = wasmlink::resolve::SearchPath::new();
    search.add_dir(fixtures_out());
    let builder = ProcessBuilder::new().search_path(search);
    let mut p = builder
        .clone()
        .timeout(Some(Duration::from_millis(200)))
        .load(&main)
        .expect("load");
    let err = p.run_main().expect_err("stopped");
    assert!(
        matches!(&err, LinkError::Limit { limit: Limit::Time(d), .. } if *d == Duration::from_millis(200)),
        "{err}"
    );
    let mut p = builder.fuel(Some(50_000)).load(&main).expect("load");
    let err = p.run_main().expect_err("stopped");
    assert!(
        matches!(
            &err,
            LinkError::Limit {
                limit: Limit::Fuel,
                ..
            }
        ),
        "{err}"
    );
}

/// A free TCP port on loopback (nothing listens there once this returns).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[test]
fn a_policy_net_rule_naming_a_host_grants_what_it_resolves_to() {
    // wasi02.rs's TCP program on the corpus libc.so: listens on argv[1], connects to itself,
    // then connects to argv[2].
    let program =
        crate::support::c_fixture("w2_tcp.wasm", Link::PieAnyMain, &["w2_tcp.c"], &[], &[]);
    let corpus = crate::support::corpus();
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = dir.path().join("p.toml");
    let run = |net: &str| {
        std::fs::write(
            &policy,
            format!(
                "[stdio]\nstdout = \"inherit\"\n[capabilities]\nnet = {net}\n\
                 [limits]\ntimeout = \"30s\"\n"
            ),
        )
        .expect("write");
        let (p, q) = (free_port().to_string(), free_port().to_string());
        let out = wasmlink(&[
            "run",
            "-L",
            s(&corpus),
            "--preload",
            "libc.so",
            "--policy",
            s(&policy),
            s(&program),
            "--",
            &p,
            &q,
        ]);
        (
            out.status.code(),
            crate::support::stdout(&out),
            stderr(&out),
        )
    };
    // `localhost:*` resolves to 127.0.0.1 and allows every port: the second connect is let
    // through, and refused by the OS since nothing listens there.
    let (code, out, err) = run(r#"["localhost:*"]"#);
    assert_eq!(
        (code, out.as_str()),
        (
            Some(0),
            "server received 22 bytes: ping over wasi:sockets\n\
             connect to an ungranted port: Connection refused\n"
        ),
        "{err}"
    );
    // A rule for another address grants nothing here: the bind is denied with EACCES.
    let (code, out, err) = run(r#"["10.1.2.3:*"]"#);
    assert_eq!(
        (code, out.as_str()),
        (Some(2), "bind: Permission denied\n"),
        "{err}"
    );
}

#[test]
fn a_limit_stops_a_constructor_during_the_load() {
    let main = linked_program();
    c_fixture("librlctor.so", Link::Shared, &["rl_ctor.c"], &[], &[]);
    let lib_dir = fixtures_out();
    let start = Instant::now();
    let out = wasmlink(&[
        "run",
        "-L",
        s(&lib_dir),
        "--preload",
        "librlctor.so",
        "--timeout",
        "300ms",
        s(&main),
    ]);
    assert!(start.elapsed() < Duration::from_secs(20), "took too long");
    // Exit 137 (a limit), not 127 (a load failure).
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "wasmlink: rl_main.wasm: stopped after the 300ms time limit (--timeout)\n"
    );
}

/// `WASMLINK_COUNT_FUEL=1` (what scripts/bench-index.sh uses to measure fuel metering) only adds
/// counting: a plugin's timeout and its own fuel limit stop a spin with the same one line as
/// without it, and a call that finishes gives the same result.
#[test]
fn count_fuel_env_keeps_the_timeout_and_the_fuel_limit() {
    let dir = fixtures_out().join("run_limits_count_fuel");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let m = module(
        &dir,
        "meter.wasm",
        r#"(module
  (memory (export "memory") 1)
  (func (export "spin") (loop $l (br $l)))
  (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1))))"#,
    );
    let cases: [&[&str]; 3] = [
        &["call", "--timeout", "300ms", s(&m), "spin"],
        &["call", "--fuel", "100000", s(&m), "spin"],
        &["call", s(&m), "add", "2", "3"],
    ];
    for args in cases {
        let plain = crate::support::wasmlink_in(args, None, &[("WASMLINK_COUNT_FUEL", "0")]);
        let started = Instant::now();
        let counted = crate::support::wasmlink_in(args, None, &[("WASMLINK_COUNT_FUEL", "1")]);
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{args:?} took {:?} with WASMLINK_COUNT_FUEL=1",
            started.elapsed()
        );
        assert_eq!(counted.status.code(), plain.status.code(), "{args:?}");
        assert_eq!(counted.stdout, plain.stdout, "{args:?}");
        assert_eq!(stderr(&counted), stderr(&plain), "{args:?}");
    }
    let stopped = crate::support::wasmlink_in(cases[0], None, &[("WASMLINK_COUNT_FUEL", "1")]);
    assert!(
        stderr(&stopped).contains("timed out after 300ms (limits.timeout)"),
        "{}",
        stderr(&stopped)
    );
    let sum = crate::support::wasmlink_in(cases[2], None, &[("WASMLINK_COUNT_FUEL", "1")]);
    assert_eq!(String::from_utf8_lossy(&sum.stdout).trim(), "5");
}
