//! `wasmlink cluster` and `wasmlink sql --cluster` (crates/cluster, feature `cluster`): a real
//! Ballista scheduler and executors as `wasmlink` processes on loopback ports, a real wasm
//! function (the greeter's `double`) shipped by module name and hash.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::{guest_modules, stderr, stdout, wasmlink, wasmlink_in};

/// A `wasmlink cluster ...` process, killed when dropped.
struct Service {
    child: Child,
    addr: String,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `wasmlink cluster ARGS` and waits (at most 60 s) for its `listening on` line.
fn start(args: &[&str]) -> Service {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wasmlink"))
        .arg("cluster")
        .args(args)
        .env_remove("WASMLINK_REPO")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some((_, addr)) = line.split_once("listening on ") {
                    return Service {
                        child,
                        addr: addr.trim().to_string(),
                    };
                }
            }
            Err(_) => {
                let _ = child.kill();
                let o = child.wait_with_output().unwrap();
                panic!("cluster {args:?} never listened: {}", stderr(&o));
            }
        }
    }
}

/// A loopback port p with p + 1 free too (an executor's Flight and gRPC ports).
fn two_free_ports() -> u16 {
    for _ in 0..100 {
        let a = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = a.local_addr().unwrap().port();
        if p < u16::MAX && TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
    panic!("no two consecutive free ports");
}

/// A scheduler and `n` executors, all with `repo`.
fn cluster(n: usize, repo: &Path, extra_scheduler: &[&str]) -> (Service, Vec<Service>) {
    cluster_with(n, repo, extra_scheduler, &[])
}

/// [`cluster`], with `extra` arguments for the scheduler and every executor too.
fn cluster_with(
    n: usize,
    repo: &Path,
    extra_scheduler: &[&str],
    extra: &[&str],
) -> (Service, Vec<Service>) {
    let mut args = vec!["scheduler", "--listen", "127.0.0.1:0", "--repo", s(repo)];
    args.extend_from_slice(extra_scheduler);
    args.extend_from_slice(extra);
    let scheduler = start(&args);
    let executors = (0..n)
        .map(|_| {
            let listen = format!("127.0.0.1:{}", two_free_ports());
            let mut args = vec![
                "executor",
                "--scheduler",
                &scheduler.addr,
                "--listen",
                &listen,
                "--slots",
                "2",
                "--heartbeat",
                "1",
                "--repo",
                s(repo),
            ];
            args.extend_from_slice(extra);
            start(&args)
        })
        .collect();
    // Executors register on start; give the scheduler a moment to list them.
    std::thread::sleep(Duration::from_millis(500));
    (scheduler, executors)
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A repository holding the greeter as `greeter@1.0.0`, with `extra` bytes appended as a custom
/// section (so a different module with the same name and version).
fn repo_with_greeter(dir: &Path, extra: Option<&[u8]>) -> PathBuf {
    let repo = dir.join("repo");
    let mut bytes = std::fs::read(guest_modules().join("greeter.wasm")).unwrap();
    if let Some(extra) = extra {
        // A custom section: id 0, size, name length, name, payload.
        let name = b"c19";
        let size = 1 + name.len() + extra.len();
        assert!(size < 128);
        bytes.extend_from_slice(&[0, size as u8, name.len() as u8]);
        bytes.extend_from_slice(name);
        bytes.extend_from_slice(extra);
    }
    let module = dir.join("greeter.wasm");
    std::fs::write(&module, &bytes).unwrap();
    let o = wasmlink_in(
        &[
            "repo",
            "add",
            s(&module),
            "--name",
            "greeter",
            "--version",
            "1.0.0",
        ],
        None,
        &[("WASMLINK_REPO", s(&repo))],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    repo
}

/// A CSV of `rows` rows: x (0..rows), k (x % 13).
fn table(dir: &Path, rows: u64) -> PathBuf {
    let mut text = String::from("x,k\n");
    for x in 0..rows {
        text.push_str(&format!("{x},{}\n", x % 13));
    }
    let p = dir.join("t.csv");
    std::fs::write(&p, text).unwrap();
    p
}

/// What `SELECT k, sum(double(x)), count(*) ... GROUP BY k ORDER BY k` must give, computed here.
fn expected(rows: u64) -> String {
    let mut sums = [0u64; 13];
    let mut counts = [0u64; 13];
    for x in 0..rows {
        sums[(x % 13) as usize] += 2 * x;
        counts[(x % 13) as usize] += 1;
    }
    let mut out = String::from("k,s,n\n");
    for k in 0..13 {
        if counts[k] > 0 {
            out.push_str(&format!("{k},{},{}\n", sums[k], counts[k]));
        }
    }
    out
}

const QUERY: &str = "SELECT k, sum(double(x)) AS s, count(*) AS n FROM t GROUP BY k ORDER BY k";

#[test]
fn a_wasm_udf_on_the_cluster_gives_the_local_rows() {
    let t = tempfile::tempdir().unwrap();
    let repo = repo_with_greeter(t.path(), None);
    let csv = table(t.path(), 20_000);
    let (scheduler, _executors) = cluster(2, &repo, &[]);
    let url = format!("df://{}", scheduler.addr);
    let greeter = guest_modules().join("greeter.wasm");
    let by_path = format!("double={}:double", s(&greeter));
    let tbl = format!("t={}", s(&csv));
    let local = wasmlink(&[
        "sql", "--table", &tbl, "--udf", &by_path, "--format", "csv", QUERY,
    ]);
    assert_eq!(local.status.code(), Some(0), "{}", stderr(&local));
    assert_eq!(stdout(&local), expected(20_000));
    // The module by path, and by name and version from the repository.
    for udf in [by_path.as_str(), "double=greeter@1.0.0:double"] {
        let o = wasmlink(&[
            "sql",
            "--cluster",
            &url,
            "--repo",
            s(&repo),
            "--threads",
            "4",
            "--table",
            &tbl,
            "--udf",
            udf,
            "--format",
            "csv",
            QUERY,
        ]);
        assert_eq!(o.status.code(), Some(0), "{udf}: {}", stderr(&o));
        assert_eq!(stdout(&o), stdout(&local), "{udf}");
    }
    // A function failing on the executors fails the query in one line naming it.
    let o = wasmlink(&[
        "sql",
        "--cluster",
        &url,
        "--table",
        &tbl,
        "--udf",
        &by_path,
        "--format",
        "csv",
        "SELECT double(CAST(x AS VARCHAR)) AS d FROM t",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("function `double`"), "{}", stderr(&o));
}

#[test]
fn a_cluster_with_other_bytes_for_the_module_refuses_naming_both_hashes() {
    let t = tempfile::tempdir().unwrap();
    let client = t.path().join("client");
    let server = t.path().join("server");
    std::fs::create_dir_all(&client).unwrap();
    std::fs::create_dir_all(&server).unwrap();
    let client_repo = repo_with_greeter(&client, None);
    let server_repo = repo_with_greeter(&server, Some(b"other bytes"));
    let hash = |p: &Path| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(std::fs::read(p).unwrap()))
    };
    let (ours, theirs) = (
        hash(&client.join("greeter.wasm")),
        hash(&server.join("greeter.wasm")),
    );
    assert_ne!(ours, theirs);
    let csv = table(t.path(), 100);
    let (scheduler, _executors) = cluster(1, &server_repo, &[]);
    let o = wasmlink(&[
        "sql",
        "--cluster",
        &format!("df://{}", scheduler.addr),
        "--repo",
        s(&client_repo),
        "--table",
        &format!("t={}", s(&csv)),
        "--udf",
        "double=greeter@1.0.0:double",
        QUERY,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("module `greeter@=1.0.0`") && err.contains(&ours) && err.contains(&theirs),
        "{err}"
    );
}

#[test]
fn killing_an_executor_mid_query_gives_an_error_or_the_right_rows() {
    let t = tempfile::tempdir().unwrap();
    let repo = repo_with_greeter(t.path(), None);
    let rows = 6_000_000;
    let csv = table(t.path(), rows);
    let (scheduler, mut executors) = cluster(2, &repo, &["--executor-timeout", "3"]);
    let greeter = guest_modules().join("greeter.wasm");
    let mut client = Command::new(env!("CARGO_BIN_EXE_wasmlink"))
        .args([
            "sql",
            "--cluster",
            &format!("df://{}", scheduler.addr),
            "--threads",
            "8",
            "--table",
            &format!("t={}", s(&csv)),
            "--udf",
            &format!("double={}:double", s(&greeter)),
            "--format",
            "csv",
            QUERY,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    assert!(
        client.try_wait().unwrap().is_none(),
        "the query ended before an executor was killed: make the table bigger"
    );
    let victim = executors.pop().unwrap();
    drop(victim);
    let deadline = Instant::now() + Duration::from_secs(180);
    while client.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = client.kill();
            panic!("the query hung after an executor died");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = client.wait_with_output().unwrap();
    match o.status.code() {
        Some(0) => assert_eq!(stdout(&o), expected(rows), "a wrong answer after a retry"),
        Some(1) => assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o)),
        c => panic!("exit {c:?}: {}", stderr(&o)),
    }
}

#[test]
fn a_bad_or_unreachable_scheduler_is_one_line_and_an_exit_code() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    // Nothing listens there now.
    let url = format!("df://127.0.0.1:{port}");
    let o = wasmlink(&["sql", "--cluster", &url, "SELECT 1"]);
    assert_eq!(o.status.code(), Some(3), "{}", stdout(&o));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("cannot reach the scheduler"),
        "{}",
        stderr(&o)
    );
    let o = wasmlink(&["sql", "--cluster", "http://127.0.0.1:50050", "SELECT 1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("expected df://HOST:PORT"),
        "{}",
        stderr(&o)
    );
    let o = wasmlink(&[
        "cluster",
        "executor",
        "--scheduler",
        "nowhere",
        "--listen",
        "127.0.0.1:1",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("--scheduler `nowhere`"),
        "{}",
        stderr(&o)
    );
    let listen = format!("127.0.0.1:{}", two_free_ports());
    let o = wasmlink(&[
        "cluster",
        "executor",
        "--scheduler",
        &format!("127.0.0.1:{port}"),
        "--listen",
        &listen,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    assert!(stderr(&o).contains("scheduler"), "{}", stderr(&o));
}

/// A client's function policy travels with the plan, but a scheduler and its executors admit it
/// only within their own --policy: a client cannot grant its functions the cluster's files.
#[test]
fn a_function_policy_beyond_the_clusters_own_is_refused_naming_the_grant() {
    let t = tempfile::tempdir().unwrap();
    let repo = repo_with_greeter(t.path(), None);
    let csv = table(t.path(), 100);
    let secrets = t.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    let grant = format!("[[dirs]]\nhost = \"{}\"\nguest = \"/s\"\n", s(&secrets));
    let policy = t.path().join("f.toml");
    std::fs::write(&policy, &grant).unwrap();
    let udf = format!(
        "double={}:double:{}",
        s(&guest_modules().join("greeter.wasm")),
        s(&policy)
    );
    let tbl = format!("t={}", s(&csv));
    let query = |url: &str| {
        wasmlink(&[
            "sql",
            "--cluster",
            url,
            "--table",
            &tbl,
            "--udf",
            &udf,
            "--format",
            "csv",
            QUERY,
        ])
    };
    // Locally the client's own policy is the client's business.
    let local = wasmlink(&[
        "sql", "--table", &tbl, "--udf", &udf, "--format", "csv", QUERY,
    ]);
    assert_eq!(local.status.code(), Some(0), "{}", stderr(&local));
    {
        let (scheduler, _executors) = cluster(1, &repo, &[]);
        let o = query(&format!("df://{}", scheduler.addr));
        assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("function `double`: its policy asks for more than this")
                && err.contains(&format!(
                    "dirs: `{}` (read-only) is not granted here",
                    s(&secrets)
                )),
            "{err}"
        );
    }
    // A cluster whose --policy grants the directory runs it.
    let ceiling = t.path().join("ceiling.toml");
    std::fs::write(&ceiling, &grant).unwrap();
    let (scheduler, _executors) = cluster_with(1, &repo, &[], &["--policy", s(&ceiling)]);
    let o = query(&format!("df://{}", scheduler.addr));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), stdout(&local));
}

#[test]
fn a_module_path_that_is_a_device_is_refused_before_reading() {
    // /dev/zero would be read until memory runs out: refused by the SQL client (which loads
    // its own copy before anything is sent) and by the plugin host's loader alike.
    let o = wasmlink(&["sql", "--udf", "f=/dev/zero:f", "SELECT 1"]);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("/dev/zero: cannot read module: it is a character device, not a file"),
        "{err}"
    );
}
