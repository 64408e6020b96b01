//! `wasmlink serve` (crates/flight): pipelines over Arrow Flight, started as a real process on
//! a loopback port, driven by pyarrow's own Flight client (tests/fixtures/py/flight_client.py,
//! in the venv scripts/setup.sh makes) and by arrow-flight's Rust `FlightClient`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::pipeline::{stage_wat, write_stages};

/// An ABI v1 stage like `identity` that refuses (status 1, "input has no `text` column") an
/// input without the bytes `text` (so a schema without a `text` column).
fn needs_text_wat() -> String {
    let message = "input has no `text` column";
    stage_wat(0, false)
        .replace(
            "(global $heap (mut i32) (i32.const 1024))",
            &format!(
                "(global $heap (mut i32) (i32.const 1024))\n  (data (i32.const 512) \"{}\")",
                message.replace('`', "\\60")
            ),
        )
        .replace(
            "(local $out i32) (local $i i32)",
            &format!(
                "(local $out i32) (local $i i32) (local $found i32)
    (block $done
      (loop $scan
        (br_if $done (i32.gt_s (i32.add (local.get $i) (i32.const 4)) (local.get $len)))
        (if (i32.eq (i32.load (i32.add (local.get $ptr) (local.get $i))) (i32.const 0x74786574))
          (then (local.set $found (i32.const 1)) (br $done)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $scan)))
    (if (i32.eqz (local.get $found))
      (then
        (i32.store (i32.const 16) (i32.const 1))
        (i32.store (i32.const 20) (i32.const 512))
        (i32.store (i32.const 24) (i32.const {}))
        (i32.store (i32.const 28) (i32.const 0))
        (return (i32.const 16))))",
                message.len()
            ),
        )
}

/// Stage modules (identity, trap, needs_text) and two pipeline files in `dir`:
/// `p.toml` (a directory source, so its schema is known: `pass` then `picky`, which traps on
/// `TRAP`) and `strict.toml` (a JSON Lines source, schema unknown: `needs_text`).
fn write_pipelines(dir: &Path) -> (PathBuf, PathBuf) {
    write_stages(dir, 0);
    std::fs::write(
        dir.join("needs_text.wasm"),
        wat::parse_str(needs_text_wat()).unwrap(),
    )
    .unwrap();
    std::fs::create_dir_all(dir.join("docs")).unwrap();
    let p = dir.join("p.toml");
    std::fs::write(
        &p,
        "queue-depth = 2\n\
         [source]\nkind = \"dir\"\npath = \"docs\"\n\
         [[stage]]\nname = \"pass\"\nmodule = \"identity.wasm\"\nfunction = \"run\"\n\
         [[stage]]\nname = \"picky\"\nmodule = \"trap.wasm\"\nfunction = \"run\"\n\
         [sink]\nkind = \"jsonl\"\npath = \"out.jsonl\"\n",
    )
    .unwrap();
    // The source is not read when served, but loading the file checks that it opens.
    std::fs::write(dir.join("in.jsonl"), "{\"id\": 1, \"text\": \"a\"}\n").unwrap();
    let strict = dir.join("strict.toml");
    std::fs::write(
        &strict,
        "[source]\nkind = \"jsonl\"\npath = \"in.jsonl\"\n\
         [[stage]]\nname = \"needs_text\"\nmodule = \"needs_text.wasm\"\nfunction = \"run\"\n\
         [sink]\nkind = \"none\"\n",
    )
    .unwrap();
    (p, strict)
}

/// A running `wasmlink serve`, killed when dropped.
struct Server {
    child: Child,
    addr: String,
    /// What the server printed before `listening on` (warnings).
    notes: String,
    /// Whether it said `(TLS)`.
    tls: bool,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts `wasmlink serve --listen LISTEN ARGS...` and waits for `listening on ADDR`.
    fn start(dir: &Path, listen: &str, args: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_wasmlink"))
            .current_dir(dir)
            .args(["serve", "--listen", listen])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut notes = String::new();
        let rest = loop {
            let mut line = String::new();
            if stderr.read_line(&mut line).unwrap() == 0 {
                let _ = child.kill();
                panic!("wasmlink serve did not start: {notes}");
            }
            match line.trim().strip_prefix("listening on ") {
                Some(rest) => break rest.to_string(),
                None => notes.push_str(&line),
            }
        };
        // `listening on HOST:PORT[ (TLS)]: FLIGHTS`
        let (addr, after) = rest.split_once([' ', ',']).unwrap_or((&rest, ""));
        let addr = addr.trim_end_matches(':').to_string();
        let tls = after.starts_with("(TLS)");
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
        Server {
            child,
            addr,
            notes,
            tls,
        }
    }

    fn port(&self) -> &str {
        self.addr.rsplit(':').next().unwrap()
    }

    /// Whether the process is still running.
    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

fn python() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let py = root.join("target/py-venv/bin/python");
    assert!(
        py.exists(),
        "{} is missing: run `bash scripts/setup.sh` (it installs pyarrow there)",
        py.display()
    );
    py
}

/// Runs the pyarrow client against `addr` with `args`; returns its exit status and JSON output.
fn client(addr: &str, args: &[&str]) -> (i32, Value) {
    client_at(&format!("grpc+tcp://{addr}"), args)
}

/// Runs the pyarrow client against the Flight URI `uri` with `args`.
fn client_at(uri: &str, args: &[&str]) -> (i32, Value) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/py/flight_client.py");
    let out = Command::new(python())
        .arg(script)
        .arg(uri)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "client output is not JSON ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    // A client killed by a signal is not an answer from the server: say so, with its stderr.
    let code = out.status.code().unwrap_or_else(|| {
        panic!(
            "the pyarrow client died ({}) after printing {stdout}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (code, json)
}

/// The rows (ids, texts) the client sent for `batches` batches of `rows` rows.
fn sent(batch: usize, rows: usize, word: &str) -> Value {
    let ids: Vec<usize> = (batch * rows..(batch + 1) * rows).collect();
    let texts: Vec<String> = ids.iter().map(|i| format!("{word} {i}")).collect();
    serde_json::json!({"ids": ids, "texts": texts})
}

#[test]
fn pyarrow_lists_the_flights_with_their_schemas() {
    let dir = tempfile::tempdir().unwrap();
    let (p, strict) = write_pipelines(dir.path());
    let server = Server::start(
        dir.path(),
        "127.0.0.1:0",
        &[p.to_str().unwrap(), strict.to_str().unwrap()],
    );
    let (code, out) = client(&server.addr, &["list"]);
    assert_eq!(code, 0, "{out}");
    let flights = out["flights"].as_array().unwrap();
    let paths: Vec<Value> = flights.iter().map(|f| f["path"].clone()).collect();
    assert_eq!(
        paths,
        [
            serde_json::json!(["p"]),
            serde_json::json!(["p", "pass"]),
            serde_json::json!(["p", "picky"]),
            serde_json::json!(["strict"]),
            serde_json::json!(["strict", "needs_text"]),
        ]
    );
    // A directory source has a known schema; the identity stages keep it.
    let dir_schema = "(path: string, content: string, size: uint64)";
    assert_eq!(flights[0]["output_schema"], dir_schema);
    assert_eq!(
        flights[0]["app_metadata"]["input_schema"],
        "(path: Utf8, content: Utf8, size: UInt64)"
    );
    assert_eq!(flights[0]["app_metadata"]["queue_depth"], 2);
    assert_eq!(flights[2]["app_metadata"]["stages"][0]["name"], "picky");
    // A JSON Lines source's schema is not known before a client sends one.
    assert_eq!(flights[3]["output_schema"], Value::Null);
    assert_eq!(flights[3]["app_metadata"]["input_schema"], Value::Null);
}

#[test]
fn pyarrow_exchange_streams_batches_in_order_with_dead_letters() {
    let dir = tempfile::tempdir().unwrap();
    let (p, _) = write_pipelines(dir.path());
    let mut server = Server::start(dir.path(), "127.0.0.1:0", &[p.to_str().unwrap()]);
    // 12 batches through a queue depth of 2: batches 3 and 7 trap in `picky`.
    let args = [
        "exchange",
        "p",
        "--batches",
        "12",
        "--rows",
        "5",
        "--trap",
        "3",
        "--trap",
        "7",
    ];
    let (code, out) = client(&server.addr, &args);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["schema"], "(id: int64, text: string)");
    let chunks = out["chunks"].as_array().unwrap();
    assert_eq!(chunks.len(), 12, "{out}");
    for (i, chunk) in chunks.iter().enumerate() {
        if i == 3 || i == 7 {
            let dead = &chunk["dead_letter"];
            assert_eq!(dead["batch"], i, "{chunk}");
            assert_eq!(dead["rows"], 5);
            assert_eq!(dead["stage"], "picky");
            let error = dead["error"].as_str().unwrap();
            assert!(error.contains("unreachable"), "{error}");
            assert!(!error.contains('\n'));
        } else {
            assert_eq!(chunk, &sent(i, 5, "row"), "batch {i}");
        }
    }
    // One stage alone, by its `[pipeline, stage]` path: the trap batch passes `pass`.
    let (code, out) = client(&server.addr, &["exchange", "p/pass", "--trap", "1"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["chunks"][1], sent(1, 4, "TRAP"));
    // A client that goes away mid-exchange leaves the server serving.
    let (code, out) = client(
        &server.addr,
        &[
            "exchange",
            "p",
            "--batches",
            "200",
            "--disconnect-after",
            "2",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(server.alive());
    let (code, out) = client(&server.addr, &["exchange", "p", "--batches", "2"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["chunks"][1], sent(1, 4, "row"));
}

#[test]
fn pyarrow_exchanges_at_once_each_get_their_own_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (p, _) = write_pipelines(dir.path());
    let server = Server::start(dir.path(), "127.0.0.1:0", &[p.to_str().unwrap()]);
    let addr = server.addr.clone();
    let clients: Vec<_> = (0..4)
        .map(|k| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let rows = (3 + k).to_string();
                client(
                    &addr,
                    &["exchange", "p", "--batches", "20", "--rows", &rows],
                )
            })
        })
        .collect();
    for (k, c) in clients.into_iter().enumerate() {
        let (code, out) = c.join().unwrap();
        assert_eq!(code, 0, "{out}");
        let chunks = out["chunks"].as_array().unwrap();
        assert_eq!(chunks.len(), 20);
        for (i, chunk) in chunks.iter().enumerate() {
            assert_eq!(chunk, &sent(i, 3 + k, "row"), "client {k} batch {i}");
        }
    }
}

#[test]
fn a_schema_the_stage_refuses_is_invalid_argument_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let (p, strict) = write_pipelines(dir.path());
    let mut server = Server::start(
        dir.path(),
        "127.0.0.1:0",
        &[p.to_str().unwrap(), strict.to_str().unwrap()],
    );
    let (code, out) = client(&server.addr, &["exchange", "strict", "--no-text"]);
    assert_eq!(code, 3, "{out}");
    assert_eq!(out["error"]["kind"], "ArrowInvalid", "{out}");
    let message = out["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(
            "flight `strict`: stage `needs_text` does not accept the schema (id: Int64): \
             plugin `needs_text`: `run` failed: input has no `text` column"
        ),
        "{message}"
    );
    // The same flight takes a schema with `text`; an unknown flight is NotFound, naming both.
    let (code, out) = client(&server.addr, &["exchange", "strict"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["chunks"][2], sent(2, 4, "row"));
    let (code, out) = client(&server.addr, &["exchange", "nope/x"]);
    assert_eq!(code, 3, "{out}");
    let message = out["error"]["message"].as_str().unwrap();
    assert!(
        message
            .contains("no flight `nope/x` (served: p, p/pass, p/picky, strict, strict/needs_text)"),
        "{message}"
    );
    assert!(server.alive());
}

#[test]
fn off_loopback_a_token_is_required_and_checked_on_every_call() {
    let dir = tempfile::tempdir().unwrap();
    let (p, _) = write_pipelines(dir.path());
    // Without --token-file: refused before anything is served.
    let out = Command::new(env!("CARGO_BIN_EXE_wasmlink"))
        .args(["serve", "--listen", "0.0.0.0:0", p.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr,
        "wasmlink: 0.0.0.0:0: binding an address other than loopback needs a bearer token \
         (--token-file)\n"
    );
    // An empty token file is refused, naming the file.
    std::fs::write(dir.path().join("empty.txt"), "\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_wasmlink"))
        .current_dir(dir.path())
        .args([
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--token-file",
            "empty.txt",
            "p.toml",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "wasmlink: empty.txt: the token is empty\n"
    );

    std::fs::write(dir.path().join("token.txt"), "s3cret-token\n").unwrap();
    let server = Server::start(
        dir.path(),
        "0.0.0.0:0",
        &["--token-file", "token.txt", "p.toml"],
    );
    assert_eq!(
        server.notes,
        format!(
            "wasmlink: warning: 0.0.0.0:0: the bearer token and the rows travel in clear text; \
             add --tls-cert and --tls-key\n"
        )
    );
    assert!(!server.tls);
    let addr = format!("127.0.0.1:{}", server.port());
    for args in [
        &["list"][..],
        &["list", "--token", "wrong"][..],
        &["exchange", "p", "--token", "s3cret-tokex"][..],
        &["exchange", "p"][..],
    ] {
        let (code, out) = client(&addr, args);
        assert_eq!(code, 3, "{args:?}: {out}");
        assert_eq!(
            out["error"]["kind"], "FlightUnauthenticatedError",
            "{args:?}: {out}"
        );
        let message = out["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("missing or wrong bearer token"),
            "{message}"
        );
    }
    let (code, out) = client(&addr, &["list", "--token", "s3cret-token"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["flights"].as_array().unwrap().len(), 3);
    let (code, out) = client(&addr, &["exchange", "p", "--token", "s3cret-token"]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["chunks"][0], sent(0, 4, "row"));
}

/// A self-signed certificate for `localhost` and 127.0.0.1, and its key, written as PEM files
/// `NAME.pem` and `NAME.key` in `dir`.
fn self_signed(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let (c, k) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, signing_key.serialize_pem()).unwrap();
    (c, k)
}

#[test]
fn over_tls_pyarrow_and_rust_clients_exchange_and_a_plaintext_client_gets_nothing() {
    use arrow_array::{Int64Array, RecordBatch, StringArray};
    use arrow_flight::encode::FlightDataEncoderBuilder;
    use arrow_flight::flight_service_client::FlightServiceClient;
    use arrow_flight::utils::flight_data_to_batches;
    use arrow_flight::{FlightData, FlightDescriptor};
    use futures::{StreamExt, TryStreamExt};
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let (p, _) = write_pipelines(dir.path());
    let (cert, _) = self_signed(dir.path(), "server");
    std::fs::write(dir.path().join("token.txt"), "s3cret-token\n").unwrap();
    // Off loopback, with a token and TLS: no warning.
    let mut server = Server::start(
        dir.path(),
        "0.0.0.0:0",
        &[
            "--token-file",
            "token.txt",
            "--tls-cert",
            "server.pem",
            "--tls-key",
            "server.key",
            p.to_str().unwrap(),
        ],
    );
    assert!(server.tls, "no (TLS) in `listening on`");
    assert_eq!(server.notes, "");
    let tls = format!("grpc+tls://localhost:{}", server.port());
    let root = cert.to_str().unwrap();
    // pyarrow's client, trusting the server's certificate.
    let (code, out) = client_at(
        &tls,
        &["list", "--token", "s3cret-token", "--tls-root", root],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["flights"].as_array().unwrap().len(), 3);
    let (code, out) = client_at(
        &tls,
        &[
            "exchange",
            "p",
            "--token",
            "s3cret-token",
            "--tls-root",
            root,
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["chunks"][0], sent(0, 4, "row"));
    assert_eq!(out["chunks"][2], sent(2, 4, "row"));
    // The token is still checked inside TLS.
    let (code, out) = client_at(&tls, &["list", "--token", "wrong", "--tls-root", root]);
    assert_eq!(code, 3, "{out}");
    assert_eq!(out["error"]["kind"], "FlightUnauthenticatedError", "{out}");
    // A client that does not trust the certificate, and one that speaks plain gRPC, get no
    // flights; the server goes on serving.
    let (code, out) = client_at(&tls, &["list", "--token", "s3cret-token"]);
    assert_eq!(code, 3, "untrusted certificate: {out}");
    let plain = format!("grpc+tcp://127.0.0.1:{}", server.port());
    let (code, out) = client_at(&plain, &["list", "--token", "s3cret-token"]);
    assert_eq!(code, 3, "plain gRPC to a TLS server: {out}");
    assert!(server.alive());

    // arrow-flight's Rust client on tonic's rustls.
    let batch = RecordBatch::try_from_iter([
        ("id", Arc::new(Int64Array::from(vec![7, 8])) as _),
        (
            "text",
            Arc::new(StringArray::from(vec!["row 7", "row 8"])) as _,
        ),
    ])
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let got = runtime.block_on(async {
        let ca = tonic::transport::Certificate::from_pem(std::fs::read(&cert).unwrap());
        let channel =
            tonic::transport::Endpoint::from_shared(format!("https://localhost:{}", server.port()))
                .unwrap()
                .tls_config(tonic::transport::ClientTlsConfig::new().ca_certificate(ca))
                .unwrap()
                .connect()
                .await
                .unwrap();
        let token: tonic::metadata::MetadataValue<_> = "Bearer s3cret-token".parse().unwrap();
        let mut client =
            FlightServiceClient::with_interceptor(channel, move |mut r: tonic::Request<()>| {
                r.metadata_mut().insert("authorization", token.clone());
                Ok(r)
            });
        let input = FlightDataEncoderBuilder::new()
            .with_flight_descriptor(Some(FlightDescriptor::new_path(vec!["p".into()])))
            .build(futures::stream::iter([Ok(batch.clone())]))
            .map(|m| m.unwrap());
        let response = client.do_exchange(input).await.unwrap().into_inner();
        let messages: Vec<FlightData> = response.try_collect().await.unwrap();
        flight_data_to_batches(&messages).unwrap()
    });
    assert_eq!(got, [batch]);
}

#[test]
fn bad_tls_files_are_refused_in_one_line_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (p, _) = write_pipelines(dir.path());
    self_signed(dir.path(), "a");
    self_signed(dir.path(), "b");
    std::fs::write(dir.path().join("junk.pem"), "not a certificate\n").unwrap();
    std::fs::write(
        dir.path().join("broken.pem"),
        "-----BEGIN CERTIFICATE-----\n%%%%\n",
    )
    .unwrap();
    let serve = |tls: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_wasmlink"))
            .current_dir(dir.path())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(tls)
            .arg(&p)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for (tls, want) in [
        (
            &["--tls-cert", "missing.pem", "--tls-key", "a.key"][..],
            "wasmlink: missing.pem: No such file or directory (os error 2)\n",
        ),
        (
            &["--tls-cert", "junk.pem", "--tls-key", "a.key"][..],
            "wasmlink: junk.pem: no certificate in it (a PEM file with -----BEGIN CERTIFICATE----- \
             is expected)\n",
        ),
        (
            &["--tls-cert", "a.pem", "--tls-key", "a.pem"][..],
            "wasmlink: a.pem: no private key in it (PEM PKCS#8, PKCS#1 or SEC1 is expected): ",
        ),
        (
            &["--tls-cert", "broken.pem", "--tls-key", "a.key"][..],
            "wasmlink: broken.pem: not a PEM certificate chain: ",
        ),
        (
            &["--tls-cert", "a.pem", "--tls-key", "b.key"][..],
            "wasmlink: TLS certificate and key: ",
        ),
    ] {
        let (code, stderr) = serve(tls);
        assert_eq!(code, Some(2), "{tls:?}: {stderr}");
        assert!(stderr.starts_with(want), "{tls:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{tls:?}: {stderr}");
    }
    // One without the other is a usage error.
    let (code, stderr) = serve(&["--tls-cert", "a.pem"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--tls-key <FILE>"), "{stderr}");
}

#[test]
fn rust_flight_client_exchanges_and_sees_dead_letters() {
    use arrow_array::{Int64Array, RecordBatch, StringArray};
    use arrow_flight::encode::FlightDataEncoderBuilder;
    use arrow_flight::flight_service_client::FlightServiceClient;
    use arrow_flight::utils::flight_data_to_batches;
    use arrow_flight::{FlightData, FlightDescriptor};
    use futures::{StreamExt, TryStreamExt};
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let (p, strict) = write_pipelines(dir.path());
    let server = Server::start(
        dir.path(),
        "127.0.0.1:0",
        &[p.to_str().unwrap(), strict.to_str().unwrap()],
    );
    let batches: Vec<RecordBatch> = (0..4)
        .map(|b| {
            let ids: Vec<i64> = (b * 10..b * 10 + 10).collect();
            let word = if b == 2 { "TRAP" } else { "row" };
            let texts: Vec<String> = ids.iter().map(|i| format!("{word} {i}")).collect();
            RecordBatch::try_from_iter([
                ("id", Arc::new(Int64Array::from(ids)) as _),
                ("text", Arc::new(StringArray::from(texts)) as _),
            ])
            .unwrap()
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (got, dead) = runtime.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", server.addr))
            .unwrap()
            .connect()
            .await
            .unwrap();
        // arrow-flight's generated client: a dead letter is a message with app_metadata and
        // no IPC header, which arrow-flight's FlightDataDecoder does not take, so the client
        // sets those apart and decodes the rest.
        let mut client = FlightServiceClient::new(channel);
        let input = FlightDataEncoderBuilder::new()
            .with_flight_descriptor(Some(FlightDescriptor::new_path(vec!["p".into()])))
            .build(futures::stream::iter(batches.clone().into_iter().map(Ok)))
            .map(|m| m.unwrap());
        let response = client.do_exchange(input).await.unwrap().into_inner();
        let messages: Vec<FlightData> = response.try_collect().await.unwrap();
        let (dead, data): (Vec<FlightData>, Vec<FlightData>) =
            messages.into_iter().partition(|m| m.data_header.is_empty());
        let dead: Vec<Value> = dead
            .iter()
            .map(|m| serde_json::from_slice(&m.app_metadata).unwrap())
            .collect();
        let got = flight_data_to_batches(&data).unwrap();
        // A descriptor the server does not serve is NotFound; a schema the stage refuses is
        // InvalidArgument, in one line.
        let ids =
            RecordBatch::try_from_iter([("id", Arc::new(Int64Array::from(vec![1])) as _)]).unwrap();
        for (path, batch, code, message) in [
            (
                "q",
                batches[0].clone(),
                tonic::Code::NotFound,
                "no flight `q` (served: p, p/pass, p/picky, strict, strict/needs_text)",
            ),
            (
                "strict",
                ids,
                tonic::Code::InvalidArgument,
                "flight `strict`: stage `needs_text` does not accept the schema (id: Int64): \
                 plugin `needs_text`: `run` failed: input has no `text` column",
            ),
        ] {
            let input = FlightDataEncoderBuilder::new()
                .with_flight_descriptor(Some(FlightDescriptor::new_path(vec![path.into()])))
                .build(futures::stream::iter([Ok(batch)]));
            let input = input.map(|m| m.unwrap());
            let status = match client.do_exchange(input).await {
                Ok(s) => s.into_inner().try_collect::<Vec<_>>().await.unwrap_err(),
                Err(e) => e,
            };
            assert_eq!(status.code(), code, "{path}: {status}");
            assert_eq!(status.message(), message);
        }
        (got, dead)
    });
    assert_eq!(
        got,
        [batches[0].clone(), batches[1].clone(), batches[3].clone()]
    );
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0]["dead_letter"]["batch"], 2);
    assert_eq!(dead[0]["dead_letter"]["stage"], "picky");
}

#[test]
fn the_pipeline_never_depends_on_the_flight_server() {
    // ARCHITECTURE.md: crates/flight depends on crates/pipeline, never the other way, and the
    // gRPC stack stays out of the engine, the host and the pipeline (the host has tokio for
    // wasmtime-wasi, not a server).
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for krate in ["pipeline", "host", "engine", "linker"] {
        let manifest =
            std::fs::read_to_string(root.join("crates").join(krate).join("Cargo.toml")).unwrap();
        for banned in ["wasmlink-flight", "arrow-flight", "tonic", "hyper", "h2"] {
            assert!(
                !manifest.lines().any(|l| l.trim_start().starts_with(banned)),
                "crates/{krate} depends on {banned}, which ARCHITECTURE.md rules out"
            );
        }
    }
    let flight = std::fs::read_to_string(root.join("crates/flight/Cargo.toml")).unwrap();
    assert!(flight.contains("wasmlink-pipeline.workspace = true"));
}

/// A client batch above tonic's default 4 MiB message limit (here about 6.6 MB: 300,000 rows)
/// goes through like any other: before the server raised its limit, the exchange failed with
/// "decoded message length too large" (found by scripts/bench-flight.sh on 64 std-docs pages).
#[test]
fn pyarrow_batch_above_four_mib_goes_through() {
    let dir = tempfile::tempdir().unwrap();
    let (p, _) = write_pipelines(dir.path());
    let mut server = Server::start(dir.path(), "127.0.0.1:0", &[p.to_str().unwrap()]);
    let rows = 300_000;
    let (code, out) = client(
        &server.addr,
        &[
            "exchange",
            "p/pass",
            "--batches",
            "2",
            "--rows",
            &rows.to_string(),
        ],
    );
    assert_eq!(
        code,
        0,
        "{}",
        &out.to_string()[..out.to_string().len().min(500)]
    );
    let chunks = out["chunks"].as_array().unwrap();
    assert_eq!(chunks.len(), 2);
    for (i, chunk) in chunks.iter().enumerate() {
        assert!(
            chunk == &sent(i, rows, "row"),
            "batch {i} differs from the one sent"
        );
    }
    assert!(server.alive());
}
