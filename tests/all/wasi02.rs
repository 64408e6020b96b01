//! WASI 0.2 for linked core modules (crates/wasi): C programs on wasi-sdk's real shared
//! `libc.so`, whose every I/O call is a lowered `wasi:*@0.2.0` import, and hostile modules
//! that call the lowered imports with bad handles, pointers, lengths, strings and
//! discriminants (a trap naming the function and the argument, never a host panic).

use std::path::{Path, PathBuf};

use crate::support::{self, Link, stderr, stdout};

/// A C program linked at run time against the corpus `libc.so` (`--preload libc.so`).
fn libc_program(name: &str, source: &str) -> PathBuf {
    support::c_fixture(name, Link::PieAnyMain, &[source], &[], &[])
}

fn run_on_libc(dir: &Path, program: &Path, flags: &[&str], args: &[&str]) -> std::process::Output {
    let corpus = support::corpus();
    let mut full = vec![
        "run",
        "-L",
        corpus.to_str().unwrap(),
        "--preload",
        "libc.so",
    ];
    full.extend_from_slice(flags);
    full.push(program.to_str().unwrap());
    full.push("--");
    full.extend_from_slice(args);
    support::wasmlink_in(&full, Some(dir), &[])
}

#[test]
fn c_program_on_the_real_libc_does_stdio_files_env_and_clocks() {
    let program = libc_program("w2_libc.wasm", "w2_libc.c");
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    std::fs::create_dir_all(d.join("in")).unwrap();
    std::fs::create_dir_all(d.join("out")).unwrap();
    std::fs::write(d.join("in/input.txt"), "input text\n").unwrap();
    std::fs::write(
        d.join("p.toml"),
        r#"
[[dirs]]
host = "in"
guest = "/in"
mode = "read-only"

[[dirs]]
host = "out"
guest = "/out"
mode = "read-write"

[env]
vars = { GREETING = "hi" }

[stdio]
stdout = "inherit"
stderr = "inherit"

[capabilities]
clocks = true
"#,
    )
    .unwrap();
    let o = run_on_libc(d, &program, &["--policy", "p.toml"], &["5", "x y"]);
    let (out, err) = (stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(5), "{out}\n{err}");
    assert_eq!(
        out,
        "argc=3 [5] [x y]\n\
         GREETING=hi\n\
         malloc ok=1\n\
         read 11: input text\n\
         write to read-only dir: Operation not permitted\n\
         outside granted dirs: No such file or directory\n\
         entries in /in: 1\n\
         time after 2020: 1\n",
        "stdout is flushed by libc.so's __wasm_call_dtors after main returns; {err}"
    );
    assert_eq!(err, "to stderr\n");
    assert_eq!(
        std::fs::read_to_string(d.join("out/result.txt")).unwrap(),
        "written by wasm: 11 bytes read\n"
    );
    assert!(!d.join("in/new.txt").exists());
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn tcp_server_and_client_on_loopback_under_allow_net() {
    let program = libc_program("w2_tcp.wasm", "w2_tcp.c");
    let tmp = tempfile::tempdir().unwrap();
    let (port, other) = (free_port(), free_port());
    let (p, q) = (port.to_string(), other.to_string());
    let grant = format!("127.0.0.1:{port}");
    let o = run_on_libc(tmp.path(), &program, &["--allow-net", &grant], &[&p, &q]);
    assert_eq!(
        (o.status.code(), stdout(&o).as_str()),
        (
            Some(0),
            "server received 22 bytes: ping over wasi:sockets\n\
             connect to an ungranted port: Permission denied\n"
        ),
        "{}",
        stderr(&o)
    );
    // No grant at all: the program gets the error it asked for and keeps running.
    let o = run_on_libc(tmp.path(), &program, &[], &[&p, &q]);
    assert_eq!(
        (o.status.code(), stdout(&o).as_str()),
        (Some(1), "socket: Permission denied\n"),
        "{}",
        stderr(&o)
    );
}

/// A main program (no libc) whose `main` makes raw lowered WASI 0.2 calls.
fn raw_main(dir: &Path, name: &str, imports: &str, body: &str, extra: &str) -> PathBuf {
    let wat = format!(
        r#"(module
  (@dylink.0 (mem-info (memory 64 0)))
  (import "env" "memory" (memory 1))
  {imports}
  {extra}
  (func (export "main") (result i32) {body} (i32.const 0)))"#
    );
    let path = dir.join(name);
    std::fs::write(
        &path,
        wat::parse_str(&wat).unwrap_or_else(|e| panic!("{name}: {e}")),
    )
    .unwrap();
    path
}

const WRITE: &str = r#"(import "wasi:io/streams@0.2.0" "[method]output-stream.write" (func $write (param i32 i32 i32 i32)))"#;
const GET_STDOUT: &str =
    r#"(import "wasi:cli/stdout@0.2.0" "get-stdout" (func $get_stdout (result i32)))"#;
const GET_STDIN: &str =
    r#"(import "wasi:cli/stdin@0.2.0" "get-stdin" (func $get_stdin (result i32)))"#;
const DROP_OUT: &str = r#"(import "wasi:io/streams@0.2.0" "[resource-drop]output-stream" (func $drop_out (param i32)))"#;

#[test]
fn hostile_calls_of_lowered_imports_trap_naming_function_and_argument() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let cases: Vec<(&str, String, &str, &str, &str)> = vec![
        (
            "unknown_handle",
            WRITE.to_string(),
            "(call $write (i32.const 999) (i32.const 0) (i32.const 4) (i32.const 64))",
            "",
            "wasi:io/streams#[method]output-stream.write: argument self: unknown handle 999",
        ),
        (
            "out_of_bounds_list",
            format!("{WRITE} {GET_STDOUT}"),
            "(call $write (call $get_stdout) (i32.const 0xfffffff0) (i32.const 64) (i32.const 64))",
            "",
            "wasi:io/streams#[method]output-stream.write: argument contents: out of bounds (64 bytes at 0xfffffff0)",
        ),
        (
            "wrong_resource_type",
            format!("{WRITE} {GET_STDIN}"),
            "(call $write (call $get_stdin) (i32.const 0) (i32.const 4) (i32.const 64))",
            "",
            "argument self: handle 1 is a input-stream, not a wasi:io/streams.output-stream",
        ),
        (
            "dropped_twice",
            format!("{GET_STDOUT} {DROP_OUT}"),
            "(local $h i32) (local.set $h (call $get_stdout)) (call $drop_out (local.get $h)) (call $drop_out (local.get $h))",
            "",
            "wasi:io/streams#[resource-drop]output-stream: argument self: unknown handle 1",
        ),
        (
            "misaligned_return_area",
            r#"(import "wasi:filesystem/preopens@0.2.0" "get-directories" (func $dirs (param i32)))"#.to_string(),
            "(call $dirs (i32.const 1))",
            "",
            "wasi:filesystem/preopens#get-directories: return area: pointer 0x1 is not aligned to 4",
        ),
        (
            "bad_enum_discriminant",
            r#"(import "wasi:sockets/tcp-create-socket@0.2.0" "create-tcp-socket" (func $tcp (param i32 i32)))"#.to_string(),
            "(call $tcp (i32.const 7) (i32.const 64))",
            "",
            "wasi:sockets/tcp-create-socket#create-tcp-socket: argument address-family: invalid discriminant 7",
        ),
        (
            "invalid_utf8_string",
            r#"(import "wasi:sockets/instance-network@0.2.0" "instance-network" (func $net (result i32)))
               (import "wasi:sockets/ip-name-lookup@0.2.0" "resolve-addresses" (func $resolve (param i32 i32 i32 i32)))"#.to_string(),
            "(i32.store8 (i32.const 16) (i32.const 0xff)) (call $resolve (call $net) (i32.const 16) (i32.const 1) (i32.const 64))",
            "",
            "wasi:sockets/ip-name-lookup#resolve-addresses: argument name: invalid UTF-8 at byte 0",
        ),
        (
            "no_cabi_realloc",
            r#"(import "wasi:cli/environment@0.2.0" "get-arguments" (func $args (param i32)))"#.to_string(),
            "(call $args (i32.const 64))",
            "",
            "wasi:cli/environment#get-arguments: result: a string or list is returned, but neither the calling module nor the process exports cabi_realloc",
        ),
        (
            "realloc_out_of_bounds",
            r#"(import "wasi:cli/environment@0.2.0" "get-arguments" (func $args (param i32)))"#.to_string(),
            "(call $args (i32.const 64))",
            r#"(func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) (i32.const 0xfffffff0))"#,
            "wasi:cli/environment#get-arguments: result: out of bounds",
        ),
        (
            "resource_table_bound",
            r#"(import "wasi:clocks/monotonic-clock@0.2.0" "subscribe-duration" (func $sub (param i64) (result i32)))"#.to_string(),
            "(loop $l (drop (call $sub (i64.const 1000000000))) (br $l))",
            "",
            "wasi:clocks/monotonic-clock#subscribe-duration: result: the resource table is full (65536 handles)",
        ),
    ];
    for (name, imports, body, extra, want) in cases {
        let program = raw_main(d, &format!("{name}.wasm"), &imports, body, extra);
        let o = support::wasmlink_in(&["run", program.to_str().unwrap(), "--", "a"], Some(d), &[]);
        let err = stderr(&o);
        assert!(!err.contains("panicked"), "{name}: {err}");
        assert_ne!(o.status.code(), Some(0), "{name}: {err}");
        assert!(err.contains(want), "{name}: expected {want:?} in:\n{err}");
    }
}

#[test]
fn every_lowered_import_of_libc_is_provided_with_its_canonical_type() {
    // `ldd -r` lists what stays unresolved; before crates/wasi it listed 108 WASI 0.2 functions.
    let corpus = support::corpus();
    let o = support::wasmlink(&["nm", corpus.join("libc.so").to_str().unwrap()]);
    let wasi: Vec<String> = stdout(&o)
        .lines()
        .filter(|l| l.contains(" wasi-0.2 "))
        .map(|l| {
            // `U wasi-0.2 MODULE::FIELD (i32) -> ()`
            let rest = l.split(" wasi-0.2 ").nth(1).unwrap();
            rest.split(' ').next().unwrap().to_string()
        })
        .collect();
    assert_eq!(wasi.len(), 114, "{}", stdout(&o));
    for imp in &wasi {
        let (module, field) = imp.split_once("::").unwrap();
        let iface = module.split('@').next().unwrap();
        assert!(
            wasmlink_wasi::FUNCTIONS.contains(&(iface, field)),
            "no glue for {imp}"
        );
        assert!(wasmlink_wasi::linker_module(module).is_some(), "{module}");
    }
}
