//! Outgoing HTTP for components (wasi:http/outgoing-handler through wasmtime-wasi-http), only
//! to the hosts the policy grants (`capabilities.http`, `--allow-http`). The guest is
//! guest/components/http-get (Rust, `wasm32-wasip2`, the `wasip2` crate), built here; the server
//! is a real HTTP/1.1 server on a loopback port, started by each test, which records every
//! request it gets, so a denied request is seen never to leave the host.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use crate::support::{self, root, stderr, stdout};

const BODY: &str = "hello from the loopback server\n";

/// A one-thread HTTP/1.1 server on 127.0.0.1: answers every request with 200 and [`BODY`], and
/// records each request line.
struct Server {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut head = Vec::new();
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    head.push(line.trim_end().to_string());
                }
                if let Some(first) = head.first() {
                    log.lock().unwrap().push(format!(
                        "{first} | {}",
                        head.iter()
                            .find(|h| h.to_ascii_lowercase().starts_with("host:"))
                            .cloned()
                            .unwrap_or_default()
                    ));
                }
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{BODY}",
                    BODY.len()
                );
            }
        });
        Server { port, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn requests(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// guest/components/http-get, built here by cargo (quick when nothing changed).
fn http_get() -> PathBuf {
    static BUILD: Mutex<()> = Mutex::new(());
    let _one = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let r = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--release", "--target", "wasm32-wasip2"])
        .arg("--manifest-path")
        .arg(root().join("guest/components/http-get/Cargo.toml"))
        .arg("--target-dir")
        .arg(root().join("target/guest-components"))
        .output()
        .unwrap();
    assert!(
        r.status.success(),
        "building guest/components/http-get failed (`rustup target add wasm32-wasip2`, see \
         scripts/setup.sh): {}",
        String::from_utf8_lossy(&r.stderr)
    );
    root().join("target/guest-components/wasm32-wasip2/release/http-get.wasm")
}

/// `wasmlink ARGS` in `dir` with the tracing of `WASMLINK_DEBUG=http` on: (exit code, stdout,
/// stderr).
fn w(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let o = support::wasmlink_in(args, Some(dir), &[("WASMLINK_DEBUG", "http")]);
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(!err.contains("panicked"), "{err}");
    (o.status.code(), out, err)
}

#[test]
fn run_gets_the_body_from_a_granted_host() {
    let server = Server::start();
    let guest = http_get();
    let d = tempfile::tempdir().unwrap();
    let grant = format!("127.0.0.1:{}", server.port);
    let url = server.url("/hello?x=1");
    let (code, out, err) = w(
        d.path(),
        &[
            "run",
            "--allow-http",
            &grant,
            guest.to_str().unwrap(),
            "--",
            &url,
        ],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(out, format!("status 200\n{BODY}"), "{err}");
    assert_eq!(
        server.requests(),
        vec![format!("GET /hello?x=1 HTTP/1.1 | host: {grant}")]
    );
    // `HOST:*` grants every port of the host.
    let (code, out, err) = w(
        d.path(),
        &[
            "run",
            "--allow-http",
            "127.0.0.1:*",
            guest.to_str().unwrap(),
            "--",
            &url,
        ],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.ends_with(BODY), "{out}");
    assert_eq!(server.requests().len(), 2);
}

#[test]
fn without_a_grant_the_guest_sees_http_request_denied() {
    let server = Server::start();
    let guest = http_get();
    let d = tempfile::tempdir().unwrap();
    let url = server.url("/secret");
    let (code, out, err) = w(d.path(), &["run", guest.to_str().unwrap(), "--", &url]);
    // The guest got the wasi:http error code (not a trap), printed it and exited with
    // `exit(3)`, which Rust's std on WASI 0.2 reports as `wasi:cli/exit` err: status 1. A trap
    // would be 134.
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        out.starts_with("error: ") && out.contains("HttpRequestDenied"),
        "{out}{err}"
    );
    // One line from the host, naming the component, the host and port, and the policy field.
    let denied: Vec<&str> = err.lines().filter(|l| l.contains("denied")).collect();
    assert_eq!(denied.len(), 1, "{err}");
    assert!(
        denied[0].contains(&format!("HTTP request to 127.0.0.1:{} denied", server.port))
            && denied[0].contains("capabilities.http")
            && denied[0].contains("http-get.wasm"),
        "{err}"
    );
    assert!(server.requests().is_empty(), "{:?}", server.requests());
}

#[test]
fn a_port_or_a_name_not_granted_is_denied() {
    let server = Server::start();
    let guest = http_get();
    let d = tempfile::tempdir().unwrap();
    let url = server.url("/");
    let other_port = format!("127.0.0.1:{}", server.port.wrapping_add(1).max(1));
    let by_name = format!("localhost:{}", server.port);
    for grant in [other_port.as_str(), "127.0.0.1", by_name.as_str()] {
        let (code, out, err) = w(
            d.path(),
            &[
                "run",
                "--allow-http",
                grant,
                guest.to_str().unwrap(),
                "--",
                &url,
            ],
        );
        assert_eq!(code, Some(1), "--allow-http {grant}: {out}{err}");
        assert!(
            out.contains("HttpRequestDenied"),
            "--allow-http {grant}: {out}"
        );
    }
    assert!(server.requests().is_empty(), "{:?}", server.requests());
}

#[test]
fn call_follows_the_policy_file() {
    let server = Server::start();
    let guest = http_get();
    let d = tempfile::tempdir().unwrap();
    let grant = format!("127.0.0.1:{}", server.port);
    std::fs::write(
        d.path().join("p.toml"),
        format!("[stdio]\nstdout = \"capture\"\n\n[capabilities]\nhttp = [\"{grant}\"]\n"),
    )
    .unwrap();
    let env = format!("URL={}", server.url("/via-call"));
    let g = guest.to_str().unwrap();
    let (code, out, err) = w(
        d.path(),
        &[
            "call",
            "--policy",
            "p.toml",
            "--env",
            &env,
            g,
            "wasi:cli/run#run",
        ],
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains(&format!("status 200\n{BODY}")), "{out}");
    assert_eq!(server.requests().len(), 1);
    // The same call without the grant: the guest exits 1 after printing the error it saw.
    std::fs::write(
        d.path().join("deny.toml"),
        "[stdio]\nstdout = \"capture\"\n",
    )
    .unwrap();
    let (code, out, err) = w(
        d.path(),
        &[
            "call",
            "--policy",
            "deny.toml",
            "--env",
            &env,
            g,
            "wasi:cli/run#run",
        ],
    );
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("HttpRequestDenied"), "{out}{err}");
    assert_eq!(server.requests().len(), 1);
}

#[test]
fn bad_rules_are_one_line_naming_the_field() {
    let guest = http_get();
    let d = tempfile::tempdir().unwrap();
    let g = guest.to_str().unwrap();
    std::fs::write(
        d.path().join("p.toml"),
        "[capabilities]\nhttp = [\"http://example.com\"]\n",
    )
    .unwrap();
    let (code, out, err) = w(
        d.path(),
        &["call", "--policy", "p.toml", g, "wasi:cli/run#run"],
    );
    assert_eq!(code, Some(2), "{out}{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("capabilities.http") && err.contains("`http://example.com`"),
        "{err}"
    );
    let (code, _, err) = w(d.path(), &["run", "--allow-http", "a.com:99999", g]);
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("--allow-http") && err.contains("port `99999`"),
        "{err}"
    );
    // A core module cannot use wasi:http: the grant is refused, not ignored.
    let core = wat::parse_str("(module (func (export \"f\")))").unwrap();
    std::fs::write(d.path().join("core.wasm"), core).unwrap();
    let (code, _, err) = w(
        d.path(),
        &["call", "--allow-http", "a.com", "core.wasm", "f"],
    );
    assert_ne!(code, Some(0), "{err}");
    assert!(err.contains("capabilities.http"), "{err}");
}

#[test]
fn a_granted_server_that_never_answers_cannot_outlive_the_timeout() {
    // Accepts connections and never answers (wasmtime-wasi-http would wait 600 s for the first
    // byte; a guest blocked on a host future is not interrupted by the epoch).
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            held.push(conn);
        }
    });
    let guest = http_get();
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("p.toml"), "[stdio]\nstdout = \"capture\"\n").unwrap();
    let grant = format!("127.0.0.1:{port}");
    let env = format!("URL=http://{grant}/slow");
    let g = guest.to_str().unwrap();
    let start = std::time::Instant::now();
    let (code, out, err) = w(
        d.path(),
        &[
            "call",
            "--policy",
            "p.toml",
            "--timeout",
            "1s",
            "--allow-http",
            &grant,
            "--env",
            &env,
            g,
            "wasi:cli/run#run",
        ],
    );
    let took = start.elapsed();
    assert!(took < std::time::Duration::from_secs(20), "took {took:?}");
    assert_ne!(code, Some(0), "{out}{err}");
    // The request's timeouts were cut to the second the call had: the guest either saw the
    // wasi:http timeout error, or resumed past its deadline and was stopped by the limit.
    assert!(
        (out.starts_with("error: ") && out.contains("Timeout"))
            || err.contains("stopped after the 1s time limit (--timeout)"),
        "{out}{err}"
    );
}
