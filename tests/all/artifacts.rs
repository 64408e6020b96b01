//! The on-disk artifact cache (crates/engine/src/artifacts.rs): a run writes each module's
//! compiled artifact once, a later process maps it, and a damaged or foreign artifact is
//! recompiled and replaced, never trusted.

use std::path::{Path, PathBuf};

use crate::support::{self, stderr};

fn artifacts(cache: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for engine in std::fs::read_dir(cache.join("artifacts"))
        .into_iter()
        .flatten()
    {
        for f in std::fs::read_dir(engine.unwrap().path()).unwrap() {
            let p = f.unwrap().path();
            if p.extension().is_some_and(|e| e == "cwasm") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn artifacts_are_written_once_reused_and_a_damaged_one_is_replaced() {
    let (_, _, main) = support::base_set();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let run = || {
        let o = support::wasmlink(&[
            "run",
            "--cache-dir",
            cache.to_str().unwrap(),
            "-L",
            support::fixtures_out().to_str().unwrap(),
            main.to_str().unwrap(),
        ]);
        assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
        o.status.code()
    };
    let status = run();
    let first = artifacts(&cache);
    assert!(first.len() >= 3, "main and its two libraries: {first:?}");
    let stamp: Vec<_> = first
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().modified().unwrap())
        .collect();
    assert_eq!(
        run(),
        status,
        "same program, same status from the artifacts"
    );
    let again: Vec<_> = first
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().modified().unwrap())
        .collect();
    assert_eq!(
        stamp, again,
        "a second process maps the artifacts, it does not rewrite them"
    );
    // A damaged artifact is refused by wasmtime, recompiled and replaced.
    std::fs::write(&first[0], b"not an artifact").unwrap();
    assert_eq!(run(), status);
    assert_ne!(std::fs::read(&first[0]).unwrap(), b"not an artifact");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let dir = first[0].parent().unwrap();
        assert_eq!(
            std::fs::metadata(dir).unwrap().permissions().mode() & 0o077,
            0,
            "private"
        );
    }
}

#[test]
fn the_plugin_hosts_wasmtime_cache_stays_out_of_the_artifacts() {
    // wasmtime's cache clean-up deletes every file it does not know under its directory, so
    // the plugin host (call, pipelines, index) and the linker (run) both keep it in
    // `CACHE/wasmtime`; the linker's artifacts beside it are never in its reach.
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let plugin = tmp.path().join("add.wat");
    std::fs::write(
        &plugin,
        "(module (memory (export \"memory\") 1) (func (export \"add\") (param i32 i32) (result i32) \
         local.get 0 local.get 1 i32.add))",
    )
    .unwrap();
    let o = support::wasmlink(&[
        "call",
        "--cache-dir",
        cache.to_str().unwrap(),
        plugin.to_str().unwrap(),
        "add",
        "2",
        "3",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(support::stdout(&o), "5\n");
    let mut names: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(
        names.iter().all(|n| n == "wasmtime" || n == "artifacts"),
        "only wasmtime/ and artifacts/ at the top of the cache: {names:?}"
    );
    assert!(names.contains(&"wasmtime".to_string()), "{names:?}");
}
