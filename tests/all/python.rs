//! `wasmlink python`: CPython 3.14 from the componentize-py corpus under the runtime linker,
//! and the corpus step that unpacks its standard library.

use std::fs;
use std::path::PathBuf;
use std::sync::OnceLock;

use crate::support::{corpus, stderr, stdout, wasmlink, wasmlink_in};

/// The corpus directory, with the standard library unpacked (the xtask corpus step).
fn home() -> PathBuf {
    static HOME: OnceLock<PathBuf> = OnceLock::new();
    HOME.get_or_init(|| {
        let dir = corpus();
        wasmlink_xtask::pylib::ensure_pylib(&dir).unwrap_or_else(|e| panic!("pylib: {e}"));
        dir
    })
    .clone()
}

/// `wasmlink python --home HOME ARGS...`
fn python(args: &[&str]) -> std::process::Output {
    let home = home();
    let mut all = vec!["python", "--home", home.to_str().unwrap()];
    all.extend_from_slice(args);
    wasmlink(&all)
}

#[test]
fn corpus_step_unpacks_the_standard_library_once() {
    let dir = home();
    let first = wasmlink_xtask::pylib::ensure_pylib(&dir).unwrap();
    assert_eq!(first.home, dir.join("python"));
    assert_eq!(first.stdlib, dir.join("python/lib/python3.14"));
    assert_eq!(first.files, wasmlink_xtask::pylib::STDLIB_FILES);
    for landmark in [
        "os.py",
        "json/__init__.py",
        "encodings/__init__.py",
        "re/__init__.py",
    ] {
        assert!(first.stdlib.join(landmark).is_file(), "{landmark}");
    }
    let stamp = dir.join("python").join(wasmlink_xtask::pylib::STAMP_FILE);
    let before = fs::metadata(&stamp).unwrap().modified().unwrap();
    // Complete: recognised from the stamp, nothing is unpacked again.
    assert_eq!(wasmlink_xtask::pylib::ensure_pylib(&dir).unwrap(), first);
    assert_eq!(fs::metadata(&stamp).unwrap().modified().unwrap(), before);
    // The library corpus still counts as complete beside it.
    assert!(wasmlink_xtask::ensure_corpus(&dir).is_ok());
}

#[test]
fn a_missing_home_is_one_line_saying_how_to_get_it() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().to_str().unwrap();
    let out = wasmlink(&["python", "--home", empty, "-c", "pass"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(empty) && err.contains("cargo run -p wasmlink-xtask -- corpus"),
        "{err}"
    );

    // The default home is target/corpus under the current directory, or $WASMLINK_PYTHON_HOME.
    let out = wasmlink_in(&["python", "-c", "pass"], Some(tmp.path()), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("target/corpus"), "{}", stderr(&out));
    let elsewhere = tmp.path().join("elsewhere");
    let out = wasmlink_in(
        &["python", "-c", "pass"],
        None,
        &[("WASMLINK_PYTHON_HOME", elsewhere.to_str().unwrap())],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("elsewhere"), "{}", stderr(&out));

    // Bad flags are one line too, before anything is loaded.
    for args in [["--dir", "/no/such/dir::/x"], ["--env", "NO_EQUALS_SIGN"]] {
        let mut all = args.to_vec();
        all.extend(["-c", "pass"]);
        let out = python(&all);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert_eq!(
            stderr(&out).trim_end().lines().count(),
            1,
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

#[test]
fn the_interpreter_finds_its_home_at_python() {
    let out = python(&[
        "-c",
        "import sys, os; print(sys.prefix, sys.path[2], sys.platform, os.__file__)",
    ]);
    assert_eq!(
        stdout(&out),
        "/python /python/lib/python3.14 wasi /python/lib/python3.14/os.py\n",
        "{}",
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn c_code_prints_and_exits_with_the_status_of_system_exit() {
    let out = python(&["-c", "print(6*7)"]);
    assert_eq!(stdout(&out), "42\n", "{}", stderr(&out));
    assert_eq!(out.status.code(), Some(0));

    let out = python(&["-c", "import sys; print('bye'); sys.exit(3)"]);
    assert_eq!(stdout(&out), "bye\n", "{}", stderr(&out));
    assert_eq!(out.status.code(), Some(3));

    // SystemExit with a message: printed to stderr, status 1; an uncaught exception: 1 too.
    let out = python(&["-c", "raise SystemExit('no thanks')"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no thanks"), "{}", stderr(&out));
    let out = python(&["-c", "1/0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("ZeroDivisionError"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn standard_library_imports_work() {
    let code = "\
import json, re, collections, pathlib, sys
c = collections.Counter('abracadabra')
print(json.dumps({'top': c.most_common(1)[0][0], 'words': re.findall(r'[a-z]+', 'one, two')}))
print(pathlib.PurePosixPath('/a/b/c.txt').suffix, sys.version_info[:2])
";
    let out = python(&["-c", code]);
    assert_eq!(
        stdout(&out),
        "{\"top\": \"a\", \"words\": [\"one\", \"two\"]}\n.txt (3, 14)\n",
        "{}",
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn a_script_in_a_granted_dir_runs_with_its_arguments() {
    let tmp = tempfile::tempdir().unwrap();
    fs::write(
        tmp.path().join("hello.py"),
        "import sys, pathlib\n\
         print('hello', sys.argv[1:])\n\
         pathlib.Path('/work/out.txt').write_text('written')\n\
         sys.exit(len(sys.argv))\n",
    )
    .unwrap();
    let grant = format!("{}::/work", tmp.path().display());
    let out = python(&["--dir", &grant, "/work/hello.py", "a", "b"]);
    assert_eq!(stdout(&out), "hello ['a', 'b']\n", "{}", stderr(&out));
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        fs::read_to_string(tmp.path().join("out.txt")).unwrap(),
        "written"
    );
}

#[test]
fn m_runs_a_module() {
    let out = python(&["-m", "calendar", "2026", "1"]);
    assert!(
        stdout(&out).contains("January 2026"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(0));

    // A module of the program's own, from a granted directory on PYTHONPATH.
    let tmp = tempfile::tempdir().unwrap();
    fs::write(tmp.path().join("mymod.py"), "print('mymod as', __name__)\n").unwrap();
    let grant = format!("{}::/src", tmp.path().display());
    let out = python(&["--dir", &grant, "--env", "PYTHONPATH=/src", "-m", "mymod"]);
    assert_eq!(stdout(&out), "mymod as __main__\n", "{}", stderr(&out));
}

#[test]
fn the_standard_library_is_read_only_and_nothing_else_is_visible() {
    let code = "\
import os
for path in ('/python/lib/python3.14/evil.py', '/tmp/x'):
    try:
        open(path, 'w')
        print('wrote', path)
    except OSError as e:
        print('denied', path)
";
    let out = python(&["-c", code]);
    assert_eq!(
        stdout(&out),
        "denied /python/lib/python3.14/evil.py\ndenied /tmp/x\n",
        "{}",
        stderr(&out)
    );
    assert!(!home().join("python/lib/python3.14/evil.py").exists());
}

#[test]
fn sockets_reach_only_what_allow_net_grants() {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.write_all(b"hello from the host").unwrap();
    });
    let code = format!(
        "\
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.connect(('127.0.0.1', {port}))
print(s.recv(100).decode())
s.close()
t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
try:
    t.connect(('127.0.0.1', {other}))
except PermissionError:
    print('denied')
",
        other = if port == 1 { 2 } else { 1 }
    );
    let allow = format!("127.0.0.1:{port}");
    let out = python(&["--allow-net", &allow, "-c", &code]);
    assert_eq!(
        stdout(&out),
        "hello from the host\ndenied\n",
        "{}",
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(0));
    server.join().unwrap();

    // No --allow-net: no network at all, and the program carries on.
    let code = format!(
        "\
import socket
try:
    socket.create_connection(('127.0.0.1', {port}), timeout=5)
except OSError as e:
    print('no network:', type(e).__name__)
"
    );
    let out = python(&["-c", &code]);
    assert!(
        stdout(&out).starts_with("no network:"),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(0));

    let out = python(&["--allow-net", "nonsense", "-c", "pass"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--allow-net"), "{}", stderr(&out));
}

#[test]
fn a_runaway_script_is_stopped_by_its_limits() {
    let out = python(&["--timeout", "1s", "-c", "while True: pass"]);
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("time limit (--timeout)"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));

    // A limit that strikes while the libraries load (a constructor, an instantiation) names
    // the interpreter and the flag too, not the library alone.
    for (flag, value, want) in [
        (
            "--timeout",
            "1ms",
            "python: stopped after the 1ms time limit (--timeout)",
        ),
        ("--fuel", "1000", "python: stopped: out of fuel (--fuel)"),
    ] {
        let out = python(&[flag, value, "-c", "pass"]);
        assert_eq!(out.status.code(), Some(137), "{flag}: {}", stderr(&out));
        assert!(stderr(&out).contains(want), "{flag}: {}", stderr(&out));
        assert_eq!(stderr(&out).lines().count(), 1, "{flag}: {}", stderr(&out));
    }

    // Blocked in a host call (a long sleep): the same status.
    let started = std::time::Instant::now();
    let out = python(&["--timeout", "1s", "-c", "import time; time.sleep(60)"]);
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    assert!(started.elapsed() < std::time::Duration::from_secs(30));

    let out = python(&["--max-memory", "64MiB", "-c", "x = bytearray(200 << 20)"]);
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    assert!(stderr(&out).contains("memory limit"), "{}", stderr(&out));
}

#[test]
fn a_c_extension_is_dlopened_by_import_and_calls_back_into_libpython() {
    let built = crate::support::c_fixture(
        "myext.cpython-314-wasm32-wasi.so",
        crate::support::Link::Shared,
        &["py_myext.c"],
        &[],
        &[],
    );
    // dlopen reads the path the import system gives it, which must be inside a -L directory:
    // the extension's directory is granted at the same path in the guest.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().canonicalize().unwrap();
    fs::copy(&built, dir.join("myext.cpython-314-wasm32-wasi.so")).unwrap();
    let dir = dir.to_str().unwrap();
    let code = "\
import myext
print(myext.twice(21), myext.greet('wasm'))
try:
    myext.fail()
except ValueError as e:
    print('caught', e)
print(myext.__file__.endswith('myext.cpython-314-wasm32-wasi.so'))
";
    let pythonpath = format!("PYTHONPATH={dir}");
    let out = python(&["-L", dir, "--dir", dir, "--env", &pythonpath, "-c", code]);
    assert_eq!(
        stdout(&out),
        "42 hello, wasm, from C\ncaught raised in C\nTrue\n",
        "{}",
        stderr(&out)
    );
    assert_eq!(out.status.code(), Some(0));
}

/// The start-up modules' bytecode is cached in the compiled-code cache, written only by
/// wasmlink's own start-up run: a user's run reads it (`sys.pycache_prefix`) but cannot write
/// it, so a script cannot plant bytecode a later run would execute.
#[test]
fn startup_bytecode_is_cached_and_read_only_to_user_code() {
    let home = home();
    let cache = tempfile::tempdir().unwrap();
    let code = "import sys\n\
                print(sys.pycache_prefix)\n\
                try:\n    open(sys.pycache_prefix + '/planted.pyc', 'wb')\nexcept OSError as e:\n    print('refused', type(e).__name__)\n";
    let out = wasmlink(&[
        "python",
        "--home",
        home.to_str().unwrap(),
        "--cache-dir",
        cache.path().to_str().unwrap(),
        "-c",
        code,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let lines: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
    assert_eq!(lines[0], "/.wasmlink-pycache");
    assert!(lines[1].starts_with("refused "), "{lines:?}");
    let pycs: Vec<PathBuf> = crate::support::walk_files(&cache.path().join("python"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "pyc"))
        .collect();
    assert!(
        pycs.iter()
            .any(|p| p.ends_with("encodings/__init__.cpython-314.pyc")),
        "{pycs:?}"
    );
    assert!(!pycs.iter().any(|p| p.ends_with("planted.pyc")));
    // --no-cache: no bytecode cache either.
    let out = python(&["--no-cache", "-c", "import sys; print(sys.pycache_prefix)"]);
    assert_eq!(stdout(&out).trim(), "None", "{}", stderr(&out));
}

/// `WASMLINK_DEBUG=statistics` splits start-up into the loader's phases and the main, on
/// stderr, as glibc's `LD_DEBUG=statistics`; stdout stays the program's.
#[test]
fn debug_statistics_prints_each_load_phase_and_the_main() {
    let home = home();
    let out = wasmlink_in(
        &["python", "--home", home.to_str().unwrap(), "-c", "print(7)"],
        None,
        &[("WASMLINK_DEBUG", "statistics")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "7\n");
    let err = stderr(&out);
    for phase in [
        "load: ",
        "find + read + parse",
        "hash (code cache key)",
        "compiled code",
        "bind + instantiate",
        "relocations",
        "constructors",
        "main (entry point",
    ] {
        assert!(err.contains(phase), "{phase} missing from:\n{err}");
    }
}
