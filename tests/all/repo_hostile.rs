//! The module repository against hostile input (issue 13): build metadata cannot shadow a
//! version; objects that are not regular files, or longer than the index says, are errors.

use crate::repo::*;
use crate::support::{stderr, stdout};
use std::path::Path;
use std::process::{Command, Output};
use wasmlink::repo::{PublicKey, RepoError, SigningKey, Status, Trust, keygen};

// ---------------------------------------------------------------------------------------------
// Hardening (issue 13): build metadata cannot shadow a version; objects that are not regular
// files, or longer than the index says, are errors naming them, never a hang.
// ---------------------------------------------------------------------------------------------

/// Regression (issue 13, item 4): `1.0.0+zzz` was a second entry next to `1.0.0`, and because
/// semver requirements ignore build metadata, `=1.0.0` resolved to the unsigned `+zzz` bytes
/// (and with `--trust` failed, although a signed 1.0.0 was there).
#[test]
fn build_metadata_cannot_shadow_an_exact_version() {
    let (t, repo) = fresh();
    let key_path = t.path().join("key");
    keygen(&key_path).unwrap();
    let key = SigningKey::load(&key_path).unwrap();
    let trust = Trust::keys(vec![key.public()]);
    let spin = module_file(t.path(), 1);
    let grow = module_file(t.path(), 2);
    let signed = repo.add(&spin, "spin", &v("1.0.0"), Some(&key)).unwrap();

    // Adding the same version with build metadata is refused, with other bytes or the same.
    let conflict = "spin@1.0.0+zzz conflicts with spin@1.0.0, already in the repository: \
                    versions that differ only in build metadata (+...) are the same version to \
                    semver (remove spin@1.0.0 first, or choose another version)";
    for f in [&grow, &spin] {
        let err = repo.add(f, "spin", &v("1.0.0+zzz"), None).unwrap_err();
        assert!(matches!(err, RepoError::VersionConflict { .. }), "{err:?}");
        assert_eq!(err.to_string(), conflict);
    }
    assert_error(
        &cli_repo(
            &repo,
            &[
                "add",
                grow.to_str().unwrap(),
                "--name",
                "spin",
                "--version",
                "1.0.0+zzz",
            ],
        ),
        1,
        conflict,
    );
    assert_eq!(repo.list().unwrap().len(), 1);
    // So the exact pin names the signed bytes, with and without --trust.
    for req in ["spin@=1.0.0", "spin@1.0.0", "spin"] {
        assert_eq!(repo.resolve(req).unwrap().entry, signed.entry, "{req}");
        assert_eq!(repo.load(req, &trust).unwrap().bytes, module_bytes(1));
    }
    // The reverse order is refused too, and other versions are untouched.
    repo.add(&grow, "grow", &v("2.0.0+build.1"), None).unwrap();
    assert!(matches!(
        repo.add(&spin, "grow", &v("2.0.0"), None).unwrap_err(),
        RepoError::VersionConflict { .. }
    ));
    repo.add(&spin, "grow", &v("2.0.1+build.2"), None).unwrap();
    assert_eq!(
        repo.resolve("grow@=2.0.0").unwrap().version,
        v("2.0.0+build.1")
    );

    // An index that already holds both (written by hand or by an older wasmlink) is refused
    // rather than resolved to either entry.
    let index_path = repo.root().join("index.json");
    let mut index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let entry = index["modules"]["grow"]["2.0.0+build.1"].clone();
    index["modules"]["spin"]["1.0.0+zzz"] = entry;
    std::fs::write(&index_path, serde_json::to_vec(&index).unwrap()).unwrap();
    let ambiguous = "spin@=1.0.0 is ambiguous: spin@1.0.0, spin@1.0.0+zzz differ only in build \
                     metadata (+...); remove all but one of them";
    let err = repo.resolve("spin@=1.0.0").unwrap_err();
    assert!(matches!(err, RepoError::AmbiguousVersion { .. }), "{err:?}");
    assert_eq!(err.to_string(), ambiguous);
    assert!(matches!(
        repo.load("spin", &trust).unwrap_err(),
        RepoError::AmbiguousVersion { .. }
    ));
    assert_error(&cli_repo(&repo, &["resolve", "spin@=1.0.0"]), 1, ambiguous);
    // Removing one of them ends the ambiguity.
    repo.remove("spin", &v("1.0.0+zzz")).unwrap();
    assert_eq!(
        repo.load("spin@=1.0.0", &trust).unwrap().bytes,
        module_bytes(1)
    );
}

/// Runs `cmd`, killing it and failing the test if it has not finished after `secs` seconds.
fn output_within(mut cmd: Command, secs: u64, what: &str) -> Output {
    use std::process::Stdio;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > std::time::Duration::from_secs(secs) {
            child.kill().unwrap();
            let _ = child.wait();
            panic!("{what}: still running after {secs} s (blocked?)");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Runs `f` on another thread; fails the test if it has not returned after `secs` seconds
/// (the stuck thread is left behind).
fn within<T: Send + 'static>(secs: u64, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(secs))
        .unwrap_or_else(|e| panic!("{what}: no answer after {secs} s ({e}; blocked?)"))
}

/// Regression (issue 13, item 14): a FIFO in place of an object made `call NAME`, `repo
/// verify` and `repo resolve` block forever in open(2). Now every reader refuses anything but a
/// regular file, naming the object.
#[cfg(unix)]
#[test]
fn a_fifo_or_directory_in_place_of_an_object_is_an_error_not_a_hang() {
    let (t, repo) = fresh();
    let added = repo
        .add(&module_file(t.path(), 5), "m", &v("1.0.0"), None)
        .unwrap();
    std::fs::remove_file(&added.path).unwrap();
    let status = Command::new("mkfifo").arg(&added.path).status().unwrap();
    assert!(status.success());
    let message = format!(
        "{}: the object of m@1.0.0 is a FIFO, not a regular file",
        added.path.display()
    );

    let r = repo.clone();
    let err = within(10, "load", move || r.load("m", &Trust::none()).unwrap_err());
    assert!(matches!(err, RepoError::NotAFile { .. }), "{err:?}");
    assert_eq!(err.to_string(), message);
    let r = repo.clone();
    let report = within(10, "verify", move || r.verify(&Trust::none()).unwrap());
    assert_eq!(report[0].status, Status::Unreadable(message.clone()));

    let root = repo.root().to_str().unwrap().to_string();
    let mut verify = Command::new(env!("CARGO_BIN_EXE_wasmlink"));
    verify.args(["repo", "--repo", &root, "verify"]);
    let o = output_within(verify, 20, "wasmlink repo verify");
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stdout(&o),
        format!("ERROR     {message}\n0 ok, 1 with problems\n")
    );
    let mut resolve = Command::new(env!("CARGO_BIN_EXE_wasmlink"));
    resolve.args(["repo", "--repo", &root, "resolve", "m@=1.0.0"]);
    assert_error(
        &output_within(resolve, 20, "wasmlink repo resolve"),
        1,
        &message,
    );
    let mut call = Command::new(env!("CARGO_BIN_EXE_wasmlink"));
    call.args(["call", "--repo", &root, "m@1", "f"]);
    let o = output_within(call, 30, "wasmlink call");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains(&message), "{}", stderr(&o));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));

    // Adding the module again replaces the FIFO with the object.
    repo.add(&module_file(t.path(), 5), "m", &v("1.0.0"), None)
        .unwrap();
    assert_eq!(
        repo.load("m", &Trust::none()).unwrap().bytes,
        module_bytes(5)
    );

    // A directory in its place, and a FIFO in place of the index.
    std::fs::remove_file(&added.path).unwrap();
    std::fs::create_dir(&added.path).unwrap();
    assert_eq!(
        repo.load("m", &Trust::none()).unwrap_err().to_string(),
        format!(
            "{}: the object of m@1.0.0 is a directory, not a regular file",
            added.path.display()
        )
    );
    let index = repo.root().join("index.json");
    std::fs::remove_file(&index).unwrap();
    assert!(
        Command::new("mkfifo")
            .arg(&index)
            .status()
            .unwrap()
            .success()
    );
    let r = repo.clone();
    let err = within(10, "list", move || r.list().unwrap_err());
    assert_eq!(
        err.to_string(),
        format!(
            "{}: the repository index is a FIFO, not a regular file",
            index.display()
        )
    );
}

/// Regression (issue 13, item 14): objects were read whole whatever their size; now no more
/// than the size the index records (plus one byte) is read, so a huge (here sparse) file in
/// place of an object is refused at once, without reading it.
#[test]
fn an_object_longer_than_its_index_entry_is_not_read() {
    let (t, repo) = fresh();
    let added = repo
        .add(&module_file(t.path(), 9), "m", &v("1.0.0"), None)
        .unwrap();
    make_object_writable(&added.path);
    let size = added.entry.size;
    let mut longer = module_bytes(9);
    longer.push(0);
    std::fs::write(&added.path, &longer).unwrap();
    let err = repo.load("m", &Trust::none()).unwrap_err();
    assert!(matches!(err, RepoError::TooLong { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "{}: the file has {} bytes, more than the {size} the index records (tampered or \
             corrupt object of m@1.0.0)",
            added.path.display(),
            size + 1
        )
    );
    assert_eq!(
        repo.verify(&Trust::none()).unwrap()[0].status,
        Status::TooLong { actual: size + 1 }
    );
    let o = cli_repo(&repo, &["verify"]);
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(
        stdout(&o),
        format!(
            "TAMPERED  m@1.0.0: {}: the index says {size} bytes, the file has {}\n\
             0 ok, 1 with problems\n",
            added.path.display(),
            size + 1
        )
    );
    // 64 GiB, sparse: refused without being read.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&added.path)
        .unwrap()
        .set_len(64 << 30)
        .unwrap();
    let r = repo.clone();
    let err = within(10, "load of a 64 GiB object", move || {
        r.load("m", &Trust::none()).unwrap_err()
    });
    assert!(
        matches!(err, RepoError::TooLong { actual, .. } if actual == 64 << 30),
        "{err:?}"
    );
}

/// `repo add /dev/zero` read forever (memory grew without bound), and so did a device given as
/// a key file. A device is now refused before reading, a pipe is read up to 1 GiB, and a key
/// file up to 4 KiB.
#[cfg(unix)]
#[test]
fn devices_as_module_or_key_files_are_refused_without_reading_them() {
    let (t, repo) = fresh();
    let zero = Path::new("/dev/zero");
    let r = repo.clone();
    let err = within(10, "add /dev/zero", move || {
        r.add(Path::new("/dev/zero"), "z", &v("1.0.0"), None)
            .unwrap_err()
    });
    assert!(err.is_bad_input(), "{err:?}");
    assert_eq!(
        err.to_string(),
        "/dev/zero: not a valid WebAssembly module: is a character device, not a file"
    );
    let mut add = Command::new(env!("CARGO_BIN_EXE_wasmlink"));
    add.args(["repo", "--repo", repo.root().to_str().unwrap(), "add"])
        .arg(zero)
        .args(["--name", "z", "--version", "1.0.0"]);
    assert_error(
        &output_within(add, 20, "wasmlink repo add /dev/zero"),
        2,
        "/dev/zero: not a valid WebAssembly module: is a character device, not a file",
    );
    // A directory keeps its message.
    assert_eq!(
        repo.add(t.path(), "z", &v("1.0.0"), None)
            .unwrap_err()
            .to_string(),
        format!(
            "{}: not a valid WebAssembly module: is a directory",
            t.path().display()
        )
    );
    // A pipe is still a way to add a module.
    let fifo = t.path().join("pipe.wasm");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || std::fs::write(fifo, module_bytes(4)).unwrap())
    };
    let r = repo.clone();
    let added = within(10, "add from a pipe", move || {
        r.add(&fifo, "p", &v("1.0.0"), None).unwrap()
    });
    writer.join().unwrap();
    assert_eq!(added.entry.sha256, sha(&module_bytes(4)));
    // A device as a key file is just not a key.
    let err = within(10, "key /dev/zero", || {
        PublicKey::load(Path::new("/dev/zero")).unwrap_err()
    });
    assert_eq!(
        err.to_string(),
        "/dev/zero: not a wasmlink key (expected one line `wasmlink-ed25519-public <base64>`)"
    );
}
