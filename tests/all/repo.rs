//! The module repository (`wasmlink::repo`, `wasmlink repo ...`, `wasmlink keygen`): semver
//! resolution, hash and signature checks, gc, concurrent writers, and one-line errors with the
//! CLI's exit statuses (1 a problem found in the repository, 2 bad input).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use wasmlink::repo::{
    GcReport, PublicKey, RepoError, Repository, SigningKey, Status, Trust, Version, keygen,
    parse_exact, parse_version, validate_name,
};

use crate::support::{stderr, stdout};

/// A distinct valid module for each `n`.
pub(crate) fn module_bytes(n: i32) -> Vec<u8> {
    wat::parse_str(format!(
        "(module (func (export \"f\") (result i32) i32.const {n}))"
    ))
    .unwrap()
}

/// Writes module `n` to `dir/m<n>.wasm`.
pub(crate) fn module_file(dir: &Path, n: i32) -> PathBuf {
    let p = dir.join(format!("m{n}.wasm"));
    std::fs::write(&p, module_bytes(n)).unwrap();
    p
}

pub(crate) fn sha(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

pub(crate) fn v(s: &str) -> Version {
    Version::parse(s).unwrap()
}

/// A fresh repository in a temporary directory (kept alive by the returned guard).
pub(crate) fn fresh() -> (tempfile::TempDir, Repository) {
    let t = tempfile::tempdir().unwrap();
    let repo = Repository::open(t.path().join("repo"));
    (t, repo)
}

/// Runs `wasmlink ARGS` with `WASMLINK_REPO` unset unless given in `env`.
pub(crate) fn cli(args: &[&str], env: &[(&str, &Path)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wasmlink"));
    cmd.args(args).env_remove("WASMLINK_REPO");
    for (k, val) in env {
        cmd.env(k, val);
    }
    cmd.output().unwrap()
}

pub(crate) fn cli_repo(repo: &Repository, args: &[&str]) -> Output {
    let mut all = vec!["repo", "--repo", repo.root().to_str().unwrap()];
    all.extend_from_slice(args);
    cli(&all, &[])
}

/// Asserts exit status `code`, empty stdout and exactly one stderr line `wasmlink: MESSAGE`.
pub(crate) fn assert_error(o: &Output, code: i32, message: &str) {
    assert_eq!(
        (o.status.code(), stderr(o).as_str(), stdout(o).as_str()),
        (Some(code), format!("wasmlink: {message}\n").as_str(), ""),
    );
}

pub(crate) fn assert_ok(o: &Output) -> String {
    assert!(
        o.status.success() && o.stderr.is_empty(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

pub(crate) fn make_object_writable(path: &Path) {
    let mut perms = std::fs::metadata(path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(path, perms).unwrap();
}

// ---------------------------------------------------------------------------------------------
// API
// ---------------------------------------------------------------------------------------------

#[test]
fn add_list_resolve_with_semver_requirements() {
    let (t, repo) = fresh();
    let versions = ["1.0.0", "1.2.3", "1.10.0", "2.0.0", "2.1.0-beta.1"];
    for (i, ver) in versions.iter().enumerate() {
        let f = module_file(t.path(), i as i32);
        let added = repo.add(&f, "filter", &v(ver), None).unwrap();
        assert_eq!(added.entry.sha256, sha(&module_bytes(i as i32)));
        assert_eq!(added.entry.size, module_bytes(i as i32).len() as u64);
        assert_eq!(added.path, repo.object_path(&added.entry.sha256));
    }
    let listed: Vec<String> = repo
        .list()
        .unwrap()
        .iter()
        .map(|l| format!("{}@{}", l.name, l.version))
        .collect();
    assert_eq!(
        listed,
        [
            "filter@1.0.0",
            "filter@1.2.3",
            "filter@1.10.0",
            "filter@2.0.0",
            "filter@2.1.0-beta.1"
        ]
    );
    let cases = [
        ("filter", "2.0.0"),        // bare name: the highest release
        ("filter@*", "2.0.0"),      // pre-releases only when asked for
        ("filter@^1.2", "1.10.0"),  // numeric, not lexical, order
        ("filter@1.2.3", "1.10.0"), // a bare version is a caret requirement
        ("filter@=1.2.3", "1.2.3"), // exact
        ("filter@~1.2", "1.2.3"),   // tilde
        ("filter@>=1, <2", "1.10.0"),
        ("filter@>=2.1.0-beta.1", "2.1.0-beta.1"),
        ("filter@1", "1.10.0"),
    ];
    for (reference, want) in cases {
        let r = repo.resolve(reference).unwrap();
        assert_eq!(
            (reference, r.version.to_string()),
            (reference, want.to_string())
        );
        let loaded = repo.load(reference, &Trust::none()).unwrap();
        let i = versions.iter().position(|x| *x == want).unwrap() as i32;
        assert_eq!(loaded.bytes, module_bytes(i), "{reference}");
    }
    assert_eq!(
        repo.resolve("filter@^3").unwrap_err().to_string(),
        "no version of filter matches ^3 (available: 1.0.0, 1.2.3, 1.10.0, 2.0.0, 2.1.0-beta.1)"
    );
    assert_eq!(
        repo.resolve("nope").unwrap_err().to_string(),
        format!(
            "no module named nope in the repository {}",
            repo.root().display()
        )
    );
}

#[test]
fn identical_bytes_share_one_object_and_versions_are_immutable() {
    let (t, repo) = fresh();
    let f = module_file(t.path(), 7);
    let a = repo.add(&f, "a", &v("1.0.0"), None).unwrap();
    let b = repo.add(&f, "b", &v("0.1.0"), None).unwrap();
    assert_eq!(a.path, b.path);
    let objects: Vec<_> = std::fs::read_dir(repo.root().join("objects/sha256"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(objects, [sha(&module_bytes(7))]);
    // Same bytes again: a no-op that keeps the first entry.
    let again = repo.add(&f, "a", &v("1.0.0"), None).unwrap();
    assert_eq!(again.entry, a.entry);
    // Different bytes under an existing version: refused.
    let g = module_file(t.path(), 8);
    assert_eq!(
        repo.add(&g, "a", &v("1.0.0"), None)
            .unwrap_err()
            .to_string(),
        format!(
            "a@1.0.0 is already in the repository with sha256 {}; versions are immutable \
             (remove it first)",
            sha(&module_bytes(7))
        )
    );
    assert_eq!(repo.list().unwrap().len(), 2);
}

#[test]
fn tampered_object_is_refused_naming_the_file_and_both_hashes() {
    let (t, repo) = fresh();
    let f = module_file(t.path(), 1);
    let added = repo.add(&f, "m", &v("1.0.0"), None).unwrap();
    let expected = sha(&module_bytes(1));
    // Objects are read-only.
    assert!(
        std::fs::metadata(&added.path)
            .unwrap()
            .permissions()
            .readonly()
    );
    make_object_writable(&added.path);
    // Other bytes of the same length (a longer file is `TooLong`, see
    // `an_object_longer_than_its_index_entry_is_not_read`).
    let evil = module_bytes(42);
    assert_eq!(evil.len(), module_bytes(1).len());
    std::fs::write(&added.path, &evil).unwrap();
    let message = format!(
        "{}: sha256 mismatch: the index says {expected}, the file hashes to {} (tampered or \
         corrupt object)",
        added.path.display(),
        sha(&evil)
    );
    let err = repo.load("m@1", &Trust::none()).unwrap_err();
    assert!(matches!(err, RepoError::Tampered { .. }), "{err:?}");
    assert_eq!(err.to_string(), message);
    assert_eq!(
        repo.path_of("m", &Trust::none()).unwrap_err().to_string(),
        message
    );
    let report = repo.verify(&Trust::none()).unwrap();
    assert_eq!(report.len(), 1);
    assert_eq!(report[0].status, Status::Tampered { actual: sha(&evil) });

    // The CLI: resolve and verify both find the problem (exit 1).
    assert_error(&cli_repo(&repo, &["resolve", "m@^1.0"]), 1, &message);
    let o = cli_repo(&repo, &["verify"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stdout(&o),
        format!(
            "TAMPERED  m@1.0.0: {}: the index says {expected}, the file hashes to {}\n\
             0 ok, 1 with problems\n",
            added.path.display(),
            sha(&evil)
        )
    );
    // Adding the genuine module again repairs the object.
    repo.add(&f, "m", &v("1.0.0"), None).unwrap();
    assert_eq!(
        repo.load("m", &Trust::none()).unwrap().bytes,
        module_bytes(1)
    );
    assert_eq!(
        assert_ok(&cli_repo(&repo, &["verify"])),
        "ok        m@1.0.0\n1 ok, 0 with problems\n"
    );
}

#[test]
fn missing_object_is_reported() {
    let (t, repo) = fresh();
    let added = repo
        .add(&module_file(t.path(), 3), "m", &v("0.3.0"), None)
        .unwrap();
    std::fs::remove_file(&added.path).unwrap();
    assert_eq!(
        repo.load("m", &Trust::none()).unwrap_err().to_string(),
        format!(
            "{}: object of m@0.3.0 is missing from the repository",
            added.path.display()
        )
    );
    assert_eq!(
        repo.verify(&Trust::none()).unwrap()[0].status,
        Status::Missing
    );
    let o = cli_repo(&repo, &["verify"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stdout(&o),
        format!(
            "MISSING   m@0.3.0: {}: no such file\n0 ok, 1 with problems\n",
            added.path.display()
        )
    );
}

#[test]
fn signatures_are_checked_against_trusted_keys() {
    let (t, repo) = fresh();
    let ka = keygen(&t.path().join("a")).unwrap();
    let kb = keygen(&t.path().join("b")).unwrap();
    let sa = SigningKey::load(&ka.secret).unwrap();
    let pa = PublicKey::load(&ka.public).unwrap();
    let pb = PublicKey::load(&kb.public).unwrap();
    assert_eq!(sa.public(), pa);
    assert_eq!(pa.id(), ka.id);
    assert_eq!(ka.id.len(), 16);

    let signed = repo
        .add(&module_file(t.path(), 1), "s", &v("1.0.0"), Some(&sa))
        .unwrap();
    assert_eq!(signed.entry.key_id.as_deref(), Some(ka.id.as_str()));
    repo.add(&module_file(t.path(), 2), "u", &v("1.0.0"), None)
        .unwrap();

    let trust_a = Trust::keys(vec![pa.clone()]);
    let trust_b = Trust::keys(vec![pb.clone()]);
    assert_eq!(repo.load("s@1", &trust_a).unwrap().bytes, module_bytes(1));
    // Without trusted keys nothing is required.
    repo.load("u", &Trust::none()).unwrap();
    assert_eq!(
        repo.load("u", &trust_a).unwrap_err().to_string(),
        format!(
            "u@1.0.0: not signed, but a signature by a trusted key is required (trusted: {})",
            ka.id
        )
    );
    assert_eq!(
        repo.load("s", &trust_b).unwrap_err().to_string(),
        format!(
            "s@1.0.0: signed by key {}, which is not trusted (trusted: {})",
            ka.id, kb.id
        )
    );

    // Relabel the signed entry under another name in the index: the signature binds the name
    // and version, so it no longer verifies.
    let index_path = repo.root().join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let entry = index["modules"]["s"]["1.0.0"].clone();
    index["modules"]["s"]["2.0.0"] = entry.clone();
    // And corrupt the signature of a copy under a third version.
    let mut sig = entry["signature"].as_str().unwrap().as_bytes().to_vec();
    sig[0] = if sig[0] == b'A' { b'B' } else { b'A' };
    let mut corrupt = entry.clone();
    corrupt["signature"] = String::from_utf8(sig).unwrap().into();
    index["modules"]["s"]["0.9.0"] = corrupt;
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    let bad = format!("s@2.0.0: bad signature for key {}", ka.id);
    assert_eq!(repo.load("s@2", &trust_a).unwrap_err().to_string(), bad);
    assert_eq!(
        repo.load("s@=0.9.0", &trust_a).unwrap_err().to_string(),
        format!("s@0.9.0: bad signature for key {}", ka.id)
    );
    repo.load("s@=1.0.0", &trust_a).unwrap();

    // The CLI: --trust refuses (exit 1) with the same messages; verify --trust lists them all.
    let pub_a = ka.public.to_str().unwrap();
    assert_error(
        &cli_repo(&repo, &["resolve", "s@2", "--trust", pub_a]),
        1,
        &bad,
    );
    assert_error(
        &cli_repo(&repo, &["resolve", "u", "--trust", pub_a]),
        1,
        &format!(
            "u@1.0.0: not signed, but a signature by a trusted key is required (trusted: {})",
            ka.id
        ),
    );
    let o = cli_repo(&repo, &["verify", "--trust", pub_a]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stdout(&o),
        format!(
            "SIGNATURE s@0.9.0: bad signature for key {id}\n\
             ok        s@1.0.0\n\
             SIGNATURE {bad}\n\
             SIGNATURE u@1.0.0: not signed, but a signature by a trusted key is required \
             (trusted: {id})\n\
             1 ok, 3 with problems\n",
            id = ka.id
        )
    );
    let o = cli_repo(&repo, &["resolve", "s@=1.0.0", "--trust", pub_a]);
    assert_eq!(
        assert_ok(&o),
        format!(
            "s@1.0.0\t{}\t{}\n",
            signed.path.display(),
            signed.entry.sha256
        )
    );
}

#[test]
fn gc_frees_exactly_the_unreferenced_objects() {
    let (t, repo) = fresh();
    let a = repo
        .add(&module_file(t.path(), 1), "a", &v("1.0.0"), None)
        .unwrap();
    let b = repo
        .add(&module_file(t.path(), 2), "b", &v("1.0.0"), None)
        .unwrap();
    // c shares a's object.
    repo.add(&module_file(t.path(), 1), "c", &v("1.0.0"), None)
        .unwrap();
    let d = repo
        .add(&module_file(t.path(), 4), "d", &v("1.0.0"), None)
        .unwrap();
    assert_eq!(repo.gc().unwrap(), GcReport::default());

    let removed = repo.remove("a", &v("1.0.0")).unwrap();
    assert_eq!(removed, a.entry);
    repo.remove("b", &v("1.0.0")).unwrap();
    assert_eq!(
        repo.remove("b", &v("1.0.0")).unwrap_err().to_string(),
        format!(
            "no module named b in the repository {}",
            repo.root().display()
        )
    );
    repo.add(&module_file(t.path(), 5), "d", &v("2.0.0"), None)
        .unwrap();
    assert_eq!(
        repo.remove("d", &v("3.0.0")).unwrap_err().to_string(),
        "d@3.0.0 is not in the repository"
    );
    // A temporary file left by a writer that died is cleaned up too, but not counted.
    std::fs::write(repo.root().join("objects/sha256/.tmpXYZ"), b"partial").unwrap();

    let report = repo.gc().unwrap();
    assert_eq!(
        report,
        GcReport {
            removed: vec![b.entry.sha256.clone()],
            bytes: b.entry.size,
        }
    );
    assert!(!b.path.exists());
    assert!(a.path.exists(), "c still references a's object");
    assert!(d.path.exists());
    assert!(!repo.root().join("objects/sha256/.tmpXYZ").exists());
    assert_eq!(
        repo.load("c", &Trust::none()).unwrap().bytes,
        module_bytes(1)
    );
    assert_eq!(repo.gc().unwrap(), GcReport::default());

    // The CLI.
    assert_eq!(
        assert_ok(&cli_repo(&repo, &["remove", "d@2.0.0"])),
        format!(
            "removed d@2.0.0 (sha256 {}; `wasmlink repo gc` frees unreferenced objects)\n",
            sha(&module_bytes(5))
        )
    );
    assert_eq!(
        assert_ok(&cli_repo(&repo, &["gc"])),
        format!(
            "removed {}\nfreed 1 objects, {} bytes\n",
            sha(&module_bytes(5)),
            module_bytes(5).len()
        )
    );
    assert_eq!(
        assert_ok(&cli_repo(&repo, &["gc"])),
        "freed 0 objects, 0 bytes\n"
    );
}

#[test]
fn concurrent_adds_from_threads_and_processes_lose_nothing() {
    let (t, repo) = fresh();
    let files: Vec<PathBuf> = (0..4).map(|i| module_file(t.path(), 100 + i)).collect();
    std::thread::scope(|s| {
        // 4 threads x 8 versions through the API...
        for (i, f) in files.iter().enumerate() {
            let repo = repo.clone();
            s.spawn(move || {
                for j in 0..8 {
                    repo.add(f, &format!("t{i}"), &v(&format!("1.{j}.0")), None)
                        .unwrap();
                }
            });
        }
        // ...while 6 processes add through the CLI.
        let children: Vec<_> = (0..6)
            .map(|i| {
                Command::new(env!("CARGO_BIN_EXE_wasmlink"))
                    .args(["repo", "add"])
                    .arg(&files[i % files.len()])
                    .args(["--name", "p", "--version", &format!("0.{i}.0")])
                    .env("WASMLINK_REPO", repo.root())
                    .output()
            })
            .collect();
        for c in children {
            let o = c.unwrap();
            assert!(o.status.success(), "{}", stderr(&o));
        }
    });
    let list = repo.list().unwrap();
    assert_eq!(list.len(), 4 * 8 + 6);
    for i in 0..4 {
        for j in 0..8 {
            let r = repo.resolve(&format!("t{i}@=1.{j}.0")).unwrap();
            assert_eq!(r.entry.sha256, sha(&module_bytes(100 + i)));
        }
    }
    for i in 0..6 {
        repo.resolve(&format!("p@=0.{i}.0")).unwrap();
    }
    assert!(
        repo.verify(&Trust::none())
            .unwrap()
            .iter()
            .all(|v| v.status == Status::Ok)
    );
    // Nothing but the four objects (no temporaries left behind).
    assert_eq!(
        std::fs::read_dir(repo.root().join("objects/sha256"))
            .unwrap()
            .count(),
        4
    );
}

#[test]
fn bad_names_versions_references_and_keys_are_one_line_errors() {
    let cases = [
        ("", "invalid module name ``: the name is empty"),
        (
            "..",
            "invalid module name `..`: must start with a letter or digit",
        ),
        (
            "a/b",
            "invalid module name `a/b`: only a-z, 0-9, '.', '_' and '-' are allowed",
        ),
        (
            "Foo",
            "invalid module name `Foo`: only a-z, 0-9, '.', '_' and '-' are allowed",
        ),
        (
            "-x",
            "invalid module name `-x`: must start with a letter or digit",
        ),
    ];
    for (name, message) in cases {
        assert_eq!(validate_name(name).unwrap_err().to_string(), message);
    }
    validate_name("my-filter_2.x").unwrap();
    assert_eq!(
        parse_version("1.2", Some("m")).unwrap_err().to_string(),
        "invalid version `1.2` for module m: unexpected end of input while parsing minor \
         version number (expected MAJOR.MINOR.PATCH, e.g. 1.2.3)"
    );
    assert_eq!(
        parse_exact("m").unwrap_err().to_string(),
        "invalid module reference `m`: expected NAME@VERSION, e.g. foo@1.2.3"
    );
    assert_eq!(
        parse_exact("m@=1.2.3").unwrap(),
        ("m".to_string(), v("1.2.3"))
    );

    let (t, repo) = fresh();
    assert_eq!(
        repo.resolve("m@").unwrap_err().to_string(),
        "invalid module reference `m@`: nothing after '@' (write NAME, or NAME@REQ such as \
         NAME@^1.2)"
    );
    assert_eq!(
        repo.resolve("m@^x").unwrap_err().to_string(),
        "invalid version requirement `^x` for module m: unexpected character 'x' while parsing \
         major version number"
    );

    let garbage = t.path().join("garbage");
    std::fs::write(&garbage, "hello\n").unwrap();
    assert_eq!(
        SigningKey::load(&garbage).unwrap_err().to_string(),
        format!(
            "{}: not a wasmlink key (expected one line `wasmlink-ed25519-secret <base64>`)",
            garbage.display()
        )
    );
    let keys = keygen(&t.path().join("k")).unwrap();
    assert_eq!(
        SigningKey::load(&keys.public).unwrap_err().to_string(),
        format!(
            "{}: is a public key; signing needs the secret key (the file without .pub)",
            keys.public.display()
        )
    );
    assert_eq!(
        PublicKey::load(&keys.secret).unwrap_err().to_string(),
        format!(
            "{}: is a secret key; give the public key (PATH.pub) to trust it",
            keys.secret.display()
        )
    );
    let short = t.path().join("short");
    std::fs::write(&short, "wasmlink-ed25519-public AAAA\n").unwrap();
    assert_eq!(
        PublicKey::load(&short).unwrap_err().to_string(),
        format!("{}: the key is 3 bytes, expected 32", short.display())
    );
    assert_eq!(
        keygen(&keys.secret).unwrap_err().to_string(),
        format!(
            "{}: already exists; refusing to overwrite a key",
            keys.secret.display()
        )
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&keys.secret)
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // Not a module.
    let wat = t.path().join("m.wat");
    std::fs::write(&wat, "(module)").unwrap();
    assert_eq!(
        repo.add(&wat, "m", &v("1.0.0"), None)
            .unwrap_err()
            .to_string(),
        format!(
            "{}: not a valid WebAssembly module: no WebAssembly module header (\\0asm, version 1)",
            wat.display()
        )
    );
    let invalid = t.path().join("invalid.wasm");
    // A header and a type section that claims more bytes than there are.
    std::fs::write(&invalid, b"\0asm\x01\0\0\0\x01\x05\x01").unwrap();
    let err = repo.add(&invalid, "m", &v("1.0.0"), None).unwrap_err();
    assert!(matches!(err, RepoError::NotWasm { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with(&format!(
            "{}: not a valid WebAssembly module: ",
            invalid.display()
        )),
        "{err}"
    );
    assert!(repo.list().unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// CLI
// ---------------------------------------------------------------------------------------------

#[test]
fn cli_session_and_exit_statuses() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path();
    let repo = Repository::open(dir.join("repo"));
    let f1 = module_file(dir, 1);
    let f2 = module_file(dir, 2);
    let key = dir.join("key");
    let key_s = key.to_str().unwrap();

    let o = cli(&["keygen", key_s], &[]);
    let id = PublicKey::load(&dir.join("key.pub")).unwrap().id();
    assert_eq!(
        assert_ok(&o),
        format!("wrote {key_s} (secret, keep it private) and {key_s}.pub (public); key id {id}\n")
    );
    assert_error(
        &cli(&["keygen", key_s], &[]),
        2,
        &format!("{key_s}: already exists; refusing to overwrite a key"),
    );

    // WASMLINK_REPO names the repository when --repo is not given.
    let env = [("WASMLINK_REPO", repo.root())];
    let o = cli(
        &[
            "repo",
            "add",
            f1.to_str().unwrap(),
            "--name",
            "greet",
            "--version",
            "1.0.0",
            "--sign",
            key_s,
        ],
        &env,
    );
    let h1 = sha(&module_bytes(1));
    assert_eq!(
        assert_ok(&o),
        format!(
            "added greet@1.0.0 sha256 {h1} ({} bytes), signed by key {id}\n",
            module_bytes(1).len()
        )
    );
    let o = cli(
        &[
            "repo",
            "add",
            f2.to_str().unwrap(),
            "--name",
            "greet",
            "--version",
            "1.1.0",
        ],
        &env,
    );
    let h2 = sha(&module_bytes(2));
    assert_eq!(
        assert_ok(&o),
        format!(
            "added greet@1.1.0 sha256 {h2} ({} bytes)\n",
            module_bytes(2).len()
        )
    );
    assert_eq!(
        assert_ok(&cli(&["repo", "list"], &env)),
        format!(
            "greet@1.0.0\t{h1}\t{} bytes\tsigned by {id}\ngreet@1.1.0\t{h2}\t{} bytes\tunsigned\n",
            module_bytes(1).len(),
            module_bytes(2).len()
        )
    );
    let json: serde_json::Value =
        serde_json::from_str(&assert_ok(&cli_repo(&repo, &["list", "--json"]))).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 2);
    assert_eq!(json[0]["name"], "greet");
    assert_eq!(json[0]["version"], "1.0.0");
    assert_eq!(json[0]["sha256"], h1.as_str());
    assert_eq!(json[0]["key_id"], id.as_str());
    assert_eq!(json[1]["key_id"], serde_json::Value::Null);
    assert_eq!(
        json[1]["path"],
        repo.object_path(&h2).display().to_string().as_str()
    );
    assert_eq!(
        assert_ok(&cli_repo(&repo, &["resolve", "greet@^1"])),
        format!("greet@1.1.0\t{}\t{h2}\n", repo.object_path(&h2).display())
    );

    // Bad input: exit 2, one line.
    let f1s = f1.to_str().unwrap();
    let bad_input: [(&[&str], String); 7] = [
        (
            &["add", f1s, "--name", "Bad/Name", "--version", "1.0.0"],
            "invalid module name `Bad/Name`: only a-z, 0-9, '.', '_' and '-' are allowed"
                .to_string(),
        ),
        (
            &["add", f1s, "--name", "greet", "--version", "v1"],
            "invalid version `v1` for module greet: unexpected character 'v' while parsing \
             major version number (expected MAJOR.MINOR.PATCH, e.g. 1.2.3)"
                .to_string(),
        ),
        (
            &[
                "add",
                f1s,
                "--name",
                "greet",
                "--version",
                "2.0.0",
                "--sign",
                &format!("{key_s}.pub"),
            ],
            format!(
                "{key_s}.pub: is a public key; signing needs the secret key (the file without .pub)"
            ),
        ),
        (
            &["add", key_s, "--name", "greet", "--version", "2.0.0"],
            format!(
                "{key_s}: not a valid WebAssembly module: no WebAssembly module header (\\0asm, \
                 version 1)"
            ),
        ),
        (
            &["resolve", "greet@~x"],
            "invalid version requirement `~x` for module greet: unexpected character 'x' while \
             parsing major version number"
                .to_string(),
        ),
        (
            &["remove", "greet"],
            "invalid module reference `greet`: expected NAME@VERSION, e.g. foo@1.2.3".to_string(),
        ),
        (
            &["verify", "--trust", key_s],
            format!("{key_s}: is a secret key; give the public key (PATH.pub) to trust it"),
        ),
    ];
    for (args, message) in &bad_input {
        assert_error(&cli_repo(&repo, args), 2, message);
    }
    let missing = dir.join("missing.wasm");
    let o = cli_repo(
        &repo,
        &[
            "add",
            missing.to_str().unwrap(),
            "--name",
            "x",
            "--version",
            "1.0.0",
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).starts_with(&format!("wasmlink: {}: cannot read: ", missing.display()))
            && stderr(&o).lines().count() == 1,
        "{}",
        stderr(&o)
    );

    // Problems found: exit 1, one line.
    assert_error(
        &cli_repo(&repo, &["resolve", "greet@>=2"]),
        1,
        "no version of greet matches >=2 (available: 1.0.0, 1.1.0)",
    );
    assert_error(
        &cli_repo(&repo, &["remove", "greet@9.9.9"]),
        1,
        "greet@9.9.9 is not in the repository",
    );
    assert_error(
        &cli_repo(
            &repo,
            &[
                "add",
                f2.to_str().unwrap(),
                "--name",
                "greet",
                "--version",
                "1.0.0",
            ],
        ),
        1,
        &format!(
            "greet@1.0.0 is already in the repository with sha256 {h1}; versions are immutable \
             (remove it first)"
        ),
    );
    // Nothing above changed the repository.
    assert_eq!(repo.list().unwrap().len(), 2);
    let o = cli_repo(&repo, &["verify", "--trust", &format!("{key_s}.pub")]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stdout(&o),
        format!(
            "ok        greet@1.0.0\n\
             SIGNATURE greet@1.1.0: not signed, but a signature by a trusted key is required \
             (trusted: {id})\n\
             1 ok, 1 with problems\n"
        )
    );
}

#[test]
fn default_repository_is_in_the_user_data_directory() {
    let t = tempfile::tempdir().unwrap();
    let f = module_file(t.path(), 9);
    let data = t.path().join("data");
    let o = cli(
        &[
            "repo",
            "add",
            f.to_str().unwrap(),
            "--name",
            "d",
            "--version",
            "0.0.1",
        ],
        &[("XDG_DATA_HOME", &data), ("HOME", t.path())],
    );
    assert_ok(&o);
    let repo = Repository::open(data.join("wasmlink/repo"));
    assert_eq!(repo.resolve("d").unwrap().version, v("0.0.1"));
    assert!(repo.object_path(&sha(&module_bytes(9))).is_file());
}

#[test]
fn the_runtime_linker_finds_needed_libraries_in_a_repository() {
    let (base, mid, main) = crate::support::base_set();
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().join("repo");
    let r = repo.to_str().unwrap();
    // Only the program is on disk; both libraries come from the repository.
    let prog = dir.path().join("main.wasm");
    std::fs::copy(&main, &prog).unwrap();
    for (lib, name) in [(&base, "libbase.so"), (&mid, "libmid.so")] {
        let out = crate::support::wasmlink(&[
            "repo",
            "--repo",
            r,
            "add",
            lib.to_str().unwrap(),
            "--name",
            name,
            "--version",
            "1.0.0",
        ]);
        assert!(out.status.success(), "{}", crate::support::stderr(&out));
    }
    let p = prog.to_str().unwrap();
    let without = crate::support::wasmlink(&["run", "--no-cache", p]);
    assert_eq!(without.status.code(), Some(127));
    let with = crate::support::wasmlink(&["run", "--no-cache", "--repo", r, p]);
    let direct = crate::support::wasmlink(&[
        "run",
        "--no-cache",
        "-L",
        base.parent().unwrap().to_str().unwrap(),
        main.to_str().unwrap(),
    ]);
    assert_eq!(
        with.status.code(),
        direct.status.code(),
        "{}",
        crate::support::stderr(&with)
    );
    assert_eq!(with.stdout, direct.stdout);
    let missing = crate::support::stderr(&without);
    assert!(missing.contains("libmid.so"), "{missing}");
}
