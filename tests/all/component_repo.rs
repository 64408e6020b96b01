//! Components in the module repository: `repo add` takes them (hashed, optionally signed),
//! `NAME@REQ` resolves them like core modules, and `wasmlink call NAME@REQ FUNC ARGS` calls
//! them with their sha256 (and, with trusted keys, their signature) checked first.

use std::path::{Path, PathBuf};

use wasmlink::repo::{Repository, Version, keygen};

use crate::support::{self, stderr, stdout};

fn demo(dir: &Path) -> PathBuf {
    let src = support::fixtures_src().join("wat/comp_demo.wat");
    let path = dir.join("demo.wasm");
    std::fs::write(&path, wat::parse_file(src).unwrap()).unwrap();
    path
}

/// Runs wasmlink in `dir` with `WASMLINK_REPO` set to `repo`.
fn w(dir: &Path, repo: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let o = support::wasmlink_in(
        args,
        Some(dir),
        &[("WASMLINK_REPO", repo.to_str().unwrap())],
    );
    let (out, err) = (stdout(&o), stderr(&o));
    assert!(!err.contains("panicked"), "{err}");
    (o.status.code(), out, err)
}

#[test]
fn the_repository_stores_and_resolves_components() {
    let d = tempfile::tempdir().unwrap();
    let path = demo(d.path());
    let repo = Repository::open(d.path().join("repo"));
    let v = |s: &str| Version::parse(s).unwrap();
    repo.add(&path, "demo", &v("1.0.0"), None).unwrap();
    repo.add(&path, "demo", &v("1.2.0"), None).unwrap();
    let loaded = repo.load("demo@^1", &Default::default()).unwrap();
    assert_eq!(loaded.module.version, v("1.2.0"));
    assert!(wasmlink::component::is_component(&loaded.bytes));
    assert_eq!(loaded.bytes, std::fs::read(&path).unwrap());
    // An invalid component is still refused, naming the file.
    let bad = d.path().join("bad.wasm");
    std::fs::write(&bad, b"\0asm\x0d\0\x01\0garbage").unwrap();
    let e = repo
        .add(&bad, "bad", &v("1.0.0"), None)
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(&format!(
            "{}: not a valid WebAssembly module",
            bad.display()
        )),
        "{e}"
    );
}

#[test]
fn call_name_at_req_calls_a_component_from_the_repository() {
    let d = tempfile::tempdir().unwrap();
    demo(d.path());
    let repo = d.path().join("repo");
    for version in ["1.0.0", "2.0.0"] {
        let (code, _, err) = w(
            d.path(),
            &repo,
            &[
                "repo",
                "add",
                "demo.wasm",
                "--name",
                "demo",
                "--version",
                version,
            ],
        );
        assert_eq!(code, Some(0), "{err}");
    }
    let (code, out, err) = w(d.path(), &repo, &["call", "demo@^1", "greet", "\"repo\""]);
    assert_eq!(
        (code, out.as_str()),
        (Some(0), "\"Hello, repo\"\n"),
        "{err}"
    );
    let (code, out, err) = w(d.path(), &repo, &["call", "demo", "math#add", "1", "2"]);
    assert_eq!((code, out.as_str()), (Some(0), "3\n"), "{err}");
    // Errors name the reference, as for a file.
    let (code, _, err) = w(d.path(), &repo, &["call", "demo@1", "greet"]);
    assert_eq!(
        (code, err.as_str()),
        (
            Some(2),
            "wasmlink: demo@1: greet takes 1 argument (name: string), 0 given\n"
        )
    );
    let (code, _, err) = w(
        d.path(),
        &repo,
        &["call", "--json", "demo@1", "greet", "\"x\""],
    );
    assert_eq!(code, Some(2));
    assert!(
        err.contains("demo@1: --input, --arrow and --json are for core modules"),
        "{err}"
    );
    // A reference that matches nothing is still the repository's error.
    let (code, _, err) = w(d.path(), &repo, &["call", "demo@^3", "greet", "\"x\""]);
    assert_ne!(code, Some(0));
    assert!(
        err.contains("demo") && err.contains("1.0.0, 2.0.0"),
        "{err}"
    );
}

#[test]
fn a_tampered_or_unsigned_component_is_refused() {
    let d = tempfile::tempdir().unwrap();
    demo(d.path());
    let repo_dir = d.path().join("repo");
    let key = keygen(&d.path().join("k")).unwrap();
    let (code, _, err) = w(
        d.path(),
        &repo_dir,
        &[
            "repo",
            "add",
            "demo.wasm",
            "--name",
            "signed",
            "--version",
            "1.0.0",
            "--sign",
            "k",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    let (code, _, err) = w(
        d.path(),
        &repo_dir,
        &[
            "repo",
            "add",
            "demo.wasm",
            "--name",
            "unsigned",
            "--version",
            "1.0.0",
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    std::fs::write(
        d.path().join("trust.toml"),
        format!(
            "[integrity]\ntrusted-keys = [\"{}\"]\n",
            key.public.display()
        ),
    )
    .unwrap();
    let call = |reference: &str| {
        w(
            d.path(),
            &repo_dir,
            &[
                "call",
                "--policy",
                "trust.toml",
                reference,
                "greet",
                "\"k\"",
            ],
        )
    };
    let (code, out, err) = call("signed@1");
    assert_eq!((code, out.as_str()), (Some(0), "\"Hello, k\"\n"), "{err}");
    let (code, out, err) = call("unsigned@1");
    assert_eq!((code, out.as_str()), (Some(1), ""), "{err}");
    assert!(
        err.starts_with("wasmlink: unsigned@1: ") && err.contains("(integrity)"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    // The object rewritten behind the index's back: refused, never run.
    let repo = Repository::open(&repo_dir);
    let object = repo.resolve("signed@1").unwrap().path;
    let mut bytes = std::fs::read(&object).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 1;
    let mut perms = std::fs::metadata(&object).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&object, perms).unwrap();
    std::fs::write(&object, &bytes).unwrap();
    let (code, out, err) = call("signed@1");
    assert_eq!((code, out.as_str()), (Some(1), ""), "{err}");
    assert!(
        err.starts_with("wasmlink: signed@1: ") && err.contains("sha256"),
        "{err}"
    );
}

#[test]
fn a_policys_sha256_pins_a_component_file() {
    let d = tempfile::tempdir().unwrap();
    demo(d.path());
    std::fs::write(
        d.path().join("pin.toml"),
        format!("[integrity]\nsha256 = \"{}\"\n", "0".repeat(64)),
    )
    .unwrap();
    let (code, out, err) = w(
        d.path(),
        &d.path().join("repo"),
        &[
            "call",
            "--policy",
            "pin.toml",
            "demo.wasm",
            "greet",
            "\"x\"",
        ],
    );
    assert_eq!((code, out.as_str()), (Some(1), ""), "{err}");
    assert!(
        err.starts_with("wasmlink: demo.wasm: sha256 mismatch: the policy expects 000")
            && err.ends_with("(integrity.sha256)\n"),
        "{err}"
    );
}
