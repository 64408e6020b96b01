//! Hostile modules: each is loaded and called through the plugin API and through
//! `wasmlink call`, and must give exactly the expected error (or, for sandbox escapes, the
//! expected WASI errno) while the host stays healthy: the same plugin then answers a normal
//! call on a fresh instance whose memory is back at its initial size.

use std::path::Path;

use wasmlink::plugin::{HostConfig, PluginHost};
use wasmlink::policy::Policy;
use wasmtime::Val;

use crate::support::{stderr, stdout, wasmlink};

enum Expect {
    /// Loading fails with this message.
    LoadError(&'static str),
    /// The call fails with this message.
    CallError(&'static str),
    /// The call returns these i32 results (sandbox escapes return WASI errnos: 63 EPERM for
    /// a path that leaves its preopen or a write to a read-only one, 8 EBADF without a
    /// preopen, 76 ENOTCAPABLE for a denied clock or randomness).
    Returns(&'static [i32]),
}

struct Case {
    name: &'static str,
    /// Imports, placed before everything else.
    imports: &'static str,
    /// Definitions; `memory` is added unless `own_memory`.
    body: &'static str,
    own_memory: bool,
    /// Policy TOML; `{dir}` is replaced by the case's scratch directory.
    policy: &'static str,
    function: &'static str,
    expect: Expect,
}

fn cases() -> Vec<Case> {
    use Expect::*;
    vec![
        Case {
            name: "infinite_loop",
            imports: "",
            body: r#"(func (export "spin") (loop (br 0)))"#,
            own_memory: false,
            policy: "[limits]\ntimeout = \"100ms\"\n",
            function: "spin",
            expect: CallError(
                "plugin `infinite_loop`: `spin` timed out after 100ms (limits.timeout)",
            ),
        },
        Case {
            name: "fuel_burner",
            imports: "",
            body: r#"(func (export "burn") (loop (br 0)))"#,
            own_memory: false,
            policy: "[limits]\nfuel = 100000\n",
            function: "burn",
            expect: CallError(
                "plugin `fuel_burner`: `burn` ran out of fuel after 100000 units (limits.fuel)",
            ),
        },
        Case {
            name: "deep_recursion",
            imports: "",
            body: r#"(func $r (export "recurse") (result i32)
                       (i32.add (call $r) (i32.const 1)))"#,
            own_memory: false,
            policy: "[limits]\nstack = \"256 KiB\"\n",
            function: "recurse",
            expect: CallError(
                "plugin `deep_recursion`: `recurse` overflowed its 256 KiB stack (limits.stack)",
            ),
        },
        Case {
            name: "memory_grow_bomb",
            imports: "",
            body: r#"(func (export "bomb") (loop (drop (memory.grow (i32.const 1))) (br 0)))"#,
            own_memory: false,
            policy: "[limits]\nmemory = \"16 MiB\"\n",
            function: "bomb",
            expect: CallError(
                "plugin `memory_grow_bomb`: `bomb` tried to grow memory to 16842752 bytes beyond the 16 MiB limit (limits.memory)",
            ),
        },
        Case {
            name: "memory_grow_huge",
            imports: "",
            body: r#"(func (export "grab") (result i32) (memory.grow (i32.const 60000)))"#,
            own_memory: false,
            policy: "",
            function: "grab",
            expect: CallError(
                "plugin `memory_grow_huge`: `grab` tried to grow memory to 3932225536 bytes beyond the 256 MiB limit (limits.memory)",
            ),
        },
        Case {
            name: "table_grow_bomb",
            imports: "",
            body: r#"(table 1 funcref)
                     (func (export "bomb") (loop (drop (table.grow (ref.null func) (i32.const 1000))) (br 0)))"#,
            own_memory: false,
            policy: "[limits]\ntable-elements = 10000\n",
            function: "bomb",
            expect: CallError(
                "plugin `table_grow_bomb`: `bomb` tried to grow a table to 10001 elements beyond the 10000 limit (limits.table-elements)",
            ),
        },
        Case {
            name: "huge_initial_memory",
            imports: "",
            body: r#"(memory (export "memory") 4096)"#,
            own_memory: true,
            policy: "[limits]\nmemory = \"64 MiB\"\n",
            function: "ok",
            expect: LoadError(
                "plugin `huge_initial_memory`: `start` tried to grow memory to 268435456 bytes beyond the 64 MiB limit (limits.memory)",
            ),
        },
        Case {
            name: "huge_data_segment",
            imports: "",
            body: r#"(memory (export "memory") 1)
                     (data (i32.const 65530) "0123456789abcdef")"#,
            own_memory: true,
            policy: "",
            function: "ok",
            expect: LoadError(
                "plugin `huge_data_segment`: `start` trapped: out of bounds memory access",
            ),
        },
        Case {
            name: "oob_load",
            imports: "",
            body: r#"(func (export "peek") (result i32) (i32.load (i32.const 0x7fff0000)))"#,
            own_memory: false,
            policy: "",
            function: "peek",
            expect: CallError("plugin `oob_load`: `peek` trapped: out of bounds memory access"),
        },
        Case {
            name: "oob_store_at_end",
            imports: "",
            body: r#"(func (export "poke") (i64.store (i32.const 65532) (i64.const -1)))"#,
            own_memory: false,
            policy: "",
            function: "poke",
            expect: CallError(
                "plugin `oob_store_at_end`: `poke` trapped: out of bounds memory access",
            ),
        },
        Case {
            name: "unreachable",
            imports: "",
            body: r#"(func (export "boom") unreachable)"#,
            own_memory: false,
            policy: "",
            function: "boom",
            expect: CallError(
                "plugin `unreachable`: `boom` trapped: wasm `unreachable` instruction executed",
            ),
        },
        Case {
            name: "divide_by_zero",
            imports: "",
            body: r#"(func (export "div") (result i32) (i32.div_u (i32.const 1) (i32.const 0)))"#,
            own_memory: false,
            policy: "",
            function: "div",
            expect: CallError("plugin `divide_by_zero`: `div` trapped: integer divide by zero"),
        },
        Case {
            name: "null_funcptr",
            imports: "",
            body: r#"(type $t (func))
                     (table 4 funcref)
                     (func (export "jump") (call_indirect (type $t) (i32.const 2)))"#,
            own_memory: false,
            policy: "",
            function: "jump",
            expect: CallError("plugin `null_funcptr`: `jump` trapped: uninitialized element"),
        },
        Case {
            name: "funcptr_bad_signature",
            imports: "",
            body: r#"(type $t (func (result i32)))
                     (table 1 funcref) (elem (i32.const 0) $f)
                     (func $f (param i64))
                     (func (export "jump") (result i32) (call_indirect (type $t) (i32.const 0)))"#,
            own_memory: false,
            policy: "",
            function: "jump",
            expect: CallError(
                "plugin `funcptr_bad_signature`: `jump` trapped: indirect call type mismatch",
            ),
        },
        Case {
            name: "start_never_returns",
            imports: "",
            body: r#"(func $s (loop (br 0))) (start $s)"#,
            own_memory: false,
            policy: "[limits]\ntimeout = \"100ms\"\n",
            function: "ok",
            expect: LoadError(
                "plugin `start_never_returns`: `start` timed out after 100ms (limits.timeout)",
            ),
        },
        Case {
            name: "start_traps",
            imports: "",
            body: r#"(func $s unreachable) (start $s)"#,
            own_memory: false,
            policy: "",
            function: "ok",
            expect: LoadError(
                "plugin `start_traps`: `start` trapped: wasm `unreachable` instruction executed",
            ),
        },
        Case {
            name: "constructor_traps",
            imports: "",
            body: r#"(func (export "_initialize") (drop (i32.div_s (i32.const 1) (i32.const 0))))"#,
            own_memory: false,
            policy: "",
            function: "ok",
            expect: LoadError(
                "plugin `constructor_traps`: `_initialize` trapped: integer divide by zero",
            ),
        },
        Case {
            name: "proc_exit_mid_call",
            imports: r#"(import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))"#,
            body: r#"(func (export "quit") (call $exit (i32.const 3)))"#,
            own_memory: false,
            policy: "",
            function: "quit",
            expect: CallError("plugin `proc_exit_mid_call`: `quit` called proc_exit(3)"),
        },
        Case {
            name: "ungranted_host_function",
            imports: r#"(import "env" "secret_key" (func (result i64)))"#,
            body: "",
            own_memory: false,
            policy: "",
            function: "ok",
            expect: LoadError(
                "plugin `ungranted_host_function`: imports `env.secret_key`, which its policy does not grant (add \"env.secret_key\" to capabilities.host-functions)",
            ),
        },
        Case {
            name: "unprovided_host_function",
            imports: r#"(import "env" "launch_missiles" (func))"#,
            body: "",
            own_memory: false,
            policy: "[capabilities]\nhost-functions = [\"env.*\"]\n",
            function: "ok",
            expect: LoadError(
                "plugin `unprovided_host_function`: imports `env.launch_missiles`, which this host does not provide",
            ),
        },
        Case {
            name: "network_for_preview1",
            imports: r#"(import "wasi_snapshot_preview1" "sock_accept" (func (param i32 i32 i32) (result i32)))"#,
            body: "",
            own_memory: false,
            policy: "[capabilities]\nnetwork = true\n",
            function: "ok",
            expect: LoadError(
                "plugin `network_for_preview1`: the policy grants network access, but this is a core module using WASI preview 1 and WASI preview 1 has no sockets; remove capabilities.network",
            ),
        },
        Case {
            name: "sha256_mismatch",
            imports: "",
            body: "",
            own_memory: false,
            policy: "[integrity]\nsha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"\n",
            function: "ok",
            expect: LoadError(
                "plugin `sha256_mismatch`: sha256 mismatch: the policy expects 0000000000000000000000000000000000000000000000000000000000000000, the file is {sha256} (integrity.sha256)",
            ),
        },
        Case {
            name: "stdout_flood",
            imports: r#"(import "wasi_snapshot_preview1" "fd_write" (func $w (param i32 i32 i32 i32) (result i32)))"#,
            body: r#"(func (export "flood")
                       (i32.store (i32.const 0) (i32.const 64))
                       (i32.store (i32.const 4) (i32.const 4096))
                       (loop (drop (call $w (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))) (br 0)))"#,
            own_memory: false,
            policy: "[stdio]\nstdout = \"capture\"\n[limits]\noutput = \"64 KiB\"\n",
            function: "flood",
            expect: CallError(
                "plugin `stdout_flood`: `flood` produced more than 64 KiB of captured output (limits.output)",
            ),
        },
        Case {
            name: "read_outside_preopen_dotdot",
            imports: PATH_OPEN,
            body: r#"(data (i32.const 100) "../secret.txt")
                     (func (export "open") (result i32)
                       (call $open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 13)
                         (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 200)))"#,
            own_memory: false,
            policy: "[[dirs]]\nhost = \"{dir}/sandbox\"\nguest = \"/sandbox\"\n",
            function: "open",
            expect: Returns(&[63]),
        },
        Case {
            name: "read_outside_preopen_absolute",
            imports: PATH_OPEN,
            body: r#"(data (i32.const 100) "/etc/passwd")
                     (func (export "open") (result i32)
                       (call $open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 11)
                         (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 200)))"#,
            own_memory: false,
            policy: "[[dirs]]\nhost = \"{dir}/sandbox\"\nguest = \"/sandbox\"\n",
            function: "open",
            expect: Returns(&[63]),
        },
        Case {
            name: "symlink_escape",
            imports: PATH_OPEN,
            body: r#"(data (i32.const 100) "escape/secret.txt")
                     (func (export "open") (result i32)
                       (call $open (i32.const 3) (i32.const 1) (i32.const 100) (i32.const 17)
                         (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 200)))"#,
            own_memory: false,
            policy: "[[dirs]]\nhost = \"{dir}/sandbox\"\nguest = \"/sandbox\"\n",
            function: "open",
            expect: Returns(&[63]),
        },
        Case {
            name: "no_preopen_at_all",
            imports: PATH_OPEN,
            body: r#"(data (i32.const 100) "secret.txt")
                     (func (export "open") (result i32)
                       (call $open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 10)
                         (i32.const 0) (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 200)))"#,
            own_memory: false,
            policy: "",
            function: "open",
            expect: Returns(&[8]),
        },
        Case {
            name: "write_to_read_only_dir",
            imports: PATH_OPEN,
            body: r#"(data (i32.const 100) "new.txt")
                     (func (export "create") (result i32)
                       (call $open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 7)
                         (i32.const 1) (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 200)))"#,
            own_memory: false,
            policy: "[[dirs]]\nhost = \"{dir}/sandbox\"\nguest = \"/sandbox\"\nmode = \"read-only\"\n",
            function: "create",
            expect: Returns(&[63]),
        },
        Case {
            name: "env_not_granted",
            imports: r#"(import "wasi_snapshot_preview1" "environ_sizes_get" (func $sizes (param i32 i32) (result i32)))"#,
            body: r#"(func (export "count") (result i32)
                       (drop (call $sizes (i32.const 0) (i32.const 4)))
                       (i32.load (i32.const 0)))"#,
            own_memory: false,
            policy: "[env]\ninherit = [\"WASMLINK_TEST_NOT_SET_ANYWHERE\"]\n",
            function: "count",
            expect: Returns(&[0]),
        },
        Case {
            name: "clock_denied",
            imports: r#"(import "wasi_snapshot_preview1" "clock_time_get" (func $now (param i32 i64 i32) (result i32)))"#,
            body: r#"(func (export "now") (result i32) (call $now (i32.const 0) (i64.const 1) (i32.const 0)))"#,
            own_memory: false,
            policy: "",
            function: "now",
            expect: Returns(&[76]),
        },
        Case {
            name: "random_denied",
            imports: r#"(import "wasi_snapshot_preview1" "random_get" (func $rand (param i32 i32) (result i32)))"#,
            body: r#"(func (export "rand") (result i32) (call $rand (i32.const 0) (i32.const 16)))"#,
            own_memory: false,
            policy: "[capabilities]\nrandom = \"deny\"\n",
            function: "rand",
            expect: Returns(&[76]),
        },
        Case {
            name: "wrong_function",
            imports: "",
            body: "",
            own_memory: false,
            policy: "",
            function: "steal",
            expect: CallError(
                "plugin `wrong_function`: no exported function `steal` (it exports: ok)",
            ),
        },
    ]
}

const PATH_OPEN: &str = r#"(import "wasi_snapshot_preview1" "path_open"
    (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))"#;

fn module_text(case: &Case) -> String {
    let memory = if case.own_memory {
        ""
    } else {
        r#"(memory (export "memory") 1)"#
    };
    format!(
        "(module {} {memory} {} (func (export \"ok\") (result i32) (i32.const 42)))",
        case.imports, case.body
    )
}

/// A scratch directory with `sandbox/` (granted), `secret.txt` beside it (not granted) and a
/// symlink `sandbox/escape -> ..`.
fn scratch() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir(dir.path().join("sandbox")).expect("mkdir");
    std::fs::write(dir.path().join("secret.txt"), "top secret").expect("write");
    #[cfg(unix)]
    std::os::unix::fs::symlink("..", dir.path().join("sandbox/escape")).expect("symlink");
    dir
}

fn policy_for(case: &Case, dir: &Path) -> String {
    case.policy.replace("{dir}", &dir.display().to_string())
}

fn expected(msg: &str, bytes: &[u8]) -> String {
    msg.replace("{sha256}", &wasmlink::policy::sha256_hex(bytes))
}

#[test]
fn hostile_modules_through_the_api() {
    assert!(cases().len() >= 30, "the suite must keep at least 30 cases");
    let host = PluginHost::new(HostConfig::default()).expect("host");
    let healthy = host
        .load(
            "healthy",
            &wat::parse_str(r#"(module (func (export "ok") (result i32) (i32.const 42)))"#)
                .expect("wat"),
            Policy::default(),
        )
        .expect("healthy plugin");
    for case in cases() {
        let dir = scratch();
        let bytes = wat::parse_str(module_text(&case)).expect(case.name);
        let policy = Policy::from_toml(&policy_for(&case, dir.path()), case.name).expect(case.name);
        let loaded = host.load(case.name, &bytes, policy);
        match (&case.expect, loaded) {
            (Expect::LoadError(msg), Err(e)) => {
                assert_eq!(e.to_string(), expected(msg, &bytes), "case {}", case.name)
            }
            (Expect::LoadError(_), Ok(_)) => {
                panic!("case {}: loaded, expected an error", case.name)
            }
            (_, Err(e)) => panic!("case {}: load failed: {e}", case.name),
            (expect, Ok(plugin)) => {
                let baseline = plugin
                    .instance()
                    .map(|mut i| {
                        let m = i.memory();
                        m.map(|m| m.data_size(i.store_mut()))
                    })
                    .expect("baseline");
                let got = plugin.call(case.function, &[]);
                match (expect, got) {
                    (Expect::CallError(msg), Err(e)) => {
                        assert_eq!(e.to_string(), *msg, "case {}", case.name);
                        assert!(e.is_call_failure() || msg.contains("no exported"));
                    }
                    (Expect::Returns(want), Ok(vals)) => {
                        let got: Vec<i32> = vals.iter().filter_map(Val::i32).collect();
                        assert_eq!(&got, want, "case {}", case.name);
                    }
                    (_, Ok(vals)) => panic!("case {}: returned {vals:?}", case.name),
                    (_, Err(e)) => panic!("case {}: failed: {e}", case.name),
                }
                // The same plugin answers on a fresh instance at its initial memory size.
                let mut inst = plugin.instance().expect("fresh instance");
                let size = inst.memory().map(|m| m.data_size(inst.store_mut()));
                assert_eq!(
                    size, baseline,
                    "case {}: memory not back to baseline",
                    case.name
                );
                let ok = inst
                    .typed::<(), i32>("ok")
                    .expect("ok")
                    .call(())
                    .expect("ok call");
                assert_eq!(ok, 42, "case {}", case.name);
            }
        }
        // And the host's other plugins are unaffected.
        assert_eq!(healthy.call("ok", &[]).expect("healthy")[0].i32(), Some(42));
    }
}

#[test]
fn hostile_modules_through_the_cli() {
    for case in cases() {
        let dir = scratch();
        let bytes = wat::parse_str(module_text(&case)).expect(case.name);
        let module = dir.path().join(format!("{}.wasm", case.name));
        std::fs::write(&module, &bytes).expect("write module");
        let policy_file = dir.path().join("policy.toml");
        std::fs::write(&policy_file, policy_for(&case, dir.path())).expect("write policy");
        let out = wasmlink(&[
            "call",
            "--policy",
            policy_file.to_str().expect("utf-8"),
            module.to_str().expect("utf-8"),
            case.function,
        ]);
        match &case.expect {
            Expect::LoadError(msg) | Expect::CallError(msg) => {
                let want_code = if msg.contains("no exported") { 2 } else { 1 };
                assert_eq!(
                    out.status.code(),
                    Some(want_code),
                    "case {}: {}",
                    case.name,
                    stderr(&out)
                );
                assert_eq!(
                    stderr(&out).trim_end(),
                    format!("wasmlink: {}", expected(msg, &bytes)),
                    "case {}",
                    case.name
                );
            }
            Expect::Returns(want) => {
                assert_eq!(
                    out.status.code(),
                    Some(0),
                    "case {}: {}",
                    case.name,
                    stderr(&out)
                );
                let want: String = want.iter().map(|v| format!("{v}\n")).collect();
                assert_eq!(stdout(&out), want, "case {}", case.name);
            }
        }
    }
}

#[test]
fn a_panicking_host_function_is_an_error_for_that_call_only() {
    let host = PluginHost::new(HostConfig::default()).expect("host");
    host.func_wrap("env", "explode", |x: i32| -> i32 {
        if x == 13 {
            panic!("unlucky number");
        }
        x * 2
    });
    let bytes = wat::parse_str(
        r#"(module (import "env" "explode" (func $e (param i32) (result i32)))
             (func (export "go") (param i32) (result i32) (call $e (local.get 0))))"#,
    )
    .expect("wat");
    let policy = Policy::from_toml("[capabilities]\nhost-functions = [\"env.explode\"]\n", "p")
        .expect("policy");
    let plugin = host.load("panicky", &bytes, policy).expect("load");
    let err = plugin.call("go", &[Val::I32(13)]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin `panicky`: a host function panicked during `go`: unlucky number"
    );
    let ok = plugin.call("go", &[Val::I32(21)]).expect("next call");
    assert_eq!(ok[0].i32(), Some(42));
    // The typed path too: it guards the calls of a module that imports a function (and only
    // those: a module importing none cannot reach a host function).
    let mut inst = plugin.instance().expect("instance");
    let mut go = inst.typed::<i32, i32>("go").expect("typed go");
    assert_eq!(go.call(4).expect("typed call"), 8);
    let err = go.call(13).unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin `panicky`: a host function panicked during `go`: unlucky number"
    );
    drop(inst);
    assert_eq!(
        plugin.call("go", &[Val::I32(5)]).expect("after")[0].i32(),
        Some(10)
    );
}

#[test]
fn a_failed_call_throws_its_instance_away_and_state_starts_fresh() {
    let host = PluginHost::new(HostConfig::default()).expect("host");
    let bytes = wat::parse_str(
        r#"(module (global $n (mut i32) (i32.const 0))
             (func (export "bump") (result i32)
               (global.set $n (i32.add (global.get $n) (i32.const 1))) (global.get $n))
             (func (export "boom") unreachable))"#,
    )
    .expect("wat");
    let plugin = host
        .load("stateful", &bytes, Policy::default())
        .expect("load");
    let mut inst = plugin.instance().expect("instance");
    let mut bump = inst.typed::<(), i32>("bump").expect("bump");
    assert_eq!(bump.call(()).expect("1"), 1);
    assert_eq!(bump.call(()).expect("2"), 2);
    let err = inst.call("boom", &[]).unwrap_err();
    assert!(inst.is_poisoned(), "{err}");
    drop(inst);
    assert_eq!(
        plugin.idle_instances(),
        0,
        "a failed instance must not be pooled"
    );
    // The next instance starts from the module's initial state.
    let mut inst = plugin.instance().expect("instance");
    assert_eq!(
        inst.typed::<(), i32>("bump")
            .expect("bump")
            .call(())
            .expect("1"),
        1
    );
    drop(inst);
    assert_eq!(
        plugin.idle_instances(),
        1,
        "a healthy instance goes back to the pool"
    );
}

#[test]
fn wrong_argument_types_are_named() {
    let host = PluginHost::new(HostConfig::default()).expect("host");
    let bytes = wat::parse_str(
        r#"(module (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1))))"#,
    )
    .expect("wat");
    let plugin = host.load("math", &bytes, Policy::default()).expect("load");
    let err = plugin.call("add", &[Val::I64(1)]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin `math`: `add` has type (i32, i32) -> (i32), but the call expects (i64)"
    );
    let err = plugin
        .instance()
        .expect("i")
        .typed::<i64, i64>("add")
        .err()
        .expect("mismatch");
    assert!(
        err.to_string()
            .starts_with("plugin `math`: `add` has type (i32, i32) -> (i32)"),
        "{err}"
    );
}

#[test]
fn not_a_module_is_a_load_error() {
    let host = PluginHost::new(HostConfig::default()).expect("host");
    let err = host
        .load("junk", b"\0asm\x01\0\0\0\x99", Policy::default())
        .unwrap_err();
    assert!(err.to_string().starts_with("plugin `junk`: "), "{err}");
    let out = wasmlink(&["call", "/nonexistent/x.wasm", "f"]);
    assert_eq!(out.status.code(), Some(2)); // bad input, as `call --help` says
    assert_eq!(
        stderr(&out).trim_end(),
        "wasmlink: /nonexistent/x.wasm: cannot read module: No such file or directory (os error 2)"
    );
}

#[test]
fn repository_modules_are_checked_before_they_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = dir.path().join("repo");
    let r = repo.to_str().expect("utf-8");
    let module = dir.path().join("adder.wasm");
    std::fs::write(
        &module,
        wat::parse_str(r#"(module (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1))))"#)
            .expect("wat"),
    )
    .expect("write");
    let m = module.to_str().expect("utf-8");
    let key = dir.path().join("key");
    let k = key.to_str().expect("utf-8");
    assert!(wasmlink(&["keygen", k]).status.success());
    let add = |version: &str, sign: bool| {
        let mut a = vec![
            "repo",
            "--repo",
            r,
            "add",
            m,
            "--name",
            "adder",
            "--version",
            version,
        ];
        if sign {
            a.extend(["--sign", k]);
        }
        let out = wasmlink(&a);
        assert!(out.status.success(), "{}", stderr(&out));
    };
    add("1.0.0", false);
    // Loaded on demand by reference, after its hash is checked.
    let out = wasmlink(&["call", "--repo", r, "adder@^1", "add", "2", "3"]);
    assert_eq!(
        (stdout(&out).as_str(), out.status.code()),
        ("5\n", Some(0)),
        "{}",
        stderr(&out)
    );
    // A policy that trusts a key refuses the unsigned module.
    let policy = dir.path().join("trust.toml");
    std::fs::write(
        &policy,
        format!("[integrity]\ntrusted-keys = [\"{k}.pub\"]\n"),
    )
    .expect("write");
    let p = policy.to_str().expect("utf-8");
    let out = wasmlink(&[
        "call",
        "--repo",
        r,
        "--policy",
        p,
        "adder@1.0.0",
        "add",
        "2",
        "3",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.starts_with("wasmlink: plugin `adder@1.0.0`: adder@1.0.0: not signed, but a signature by a trusted key is required"),
        "{err}"
    );
    // Signed, it runs.
    add("1.1.0", true);
    let out = wasmlink(&[
        "call",
        "--repo",
        r,
        "--policy",
        p,
        "adder@1.1",
        "add",
        "2",
        "3",
    ]);
    assert_eq!(stdout(&out), "5\n", "{}", stderr(&out));
    // A tampered object is refused, naming the file and both hashes.
    let objects = repo.join("objects/sha256");
    let object = std::fs::read_dir(&objects)
        .expect("objects")
        .next()
        .expect("one")
        .expect("entry")
        .path();
    let mut perms = std::fs::metadata(&object).expect("meta").permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&object, perms).expect("chmod");
    let mut bytes = std::fs::read(&object).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&object, &bytes).expect("tamper");
    let out = wasmlink(&["call", "--repo", r, "adder@1.1", "add", "2", "3"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains(": sha256 mismatch: the index says "), "{err}");
    assert!(err.contains(&object.display().to_string()), "{err}");
}
