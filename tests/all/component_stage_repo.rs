//! Stage components stored in the module repository: a pipeline file's `module = "NAME@REQ"`
//! loads the entry's bytes with their sha256 (and, with the policy's trusted keys, their
//! signature) checked, and runs the component exactly as the same file named by path; a
//! tampered object or a missing signature is refused in one line naming the entry.

use std::path::Path;

use wasmlink::repo::{Repository, keygen};

use crate::component_stage::python_stage;
use crate::support::{self, stderr};

/// A pipeline over three rows through the stage `module`, with `policy` (inline TOML).
fn pipeline_toml(module: &str, policy: &str) -> String {
    format!(
        r#"repository = "repo"

[source]
kind = "jsonl"
path = "in.jsonl"
batch-rows = 2

[[stage]]
name = "python"
module = "{module}"
function = "wasmlink:pipeline/stage#process"
policy = {policy}

[sink]
kind = "jsonl"
path = "out.jsonl"
"#
    )
}

/// Runs `wasmlink pipeline run p.toml` in `dir`; returns (exit code, stderr, out.jsonl).
fn run(dir: &Path, toml: &str) -> (Option<i32>, String, String) {
    let _ = std::fs::remove_file(dir.join("out.jsonl"));
    std::fs::write(dir.join("p.toml"), toml).unwrap();
    let o = support::wasmlink_in(&["pipeline", "run", "p.toml"], Some(dir), &[]);
    let err = stderr(&o);
    assert!(!err.contains("panicked"), "{err}");
    let out = std::fs::read_to_string(dir.join("out.jsonl")).unwrap_or_default();
    (o.status.code(), err, out)
}

fn repo_add(dir: &Path, args: &[&str]) {
    let repo = dir.join("repo");
    let mut all = vec!["repo", "add"];
    all.extend_from_slice(args);
    let o = support::wasmlink_in(
        &all,
        Some(dir),
        &[("WASMLINK_REPO", repo.to_str().unwrap())],
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::copy(python_stage(), d.join("py.wasm")).unwrap();
    std::fs::write(
        d.join("in.jsonl"),
        "{\"id\": 0, \"text\": \"The Quick auto\"}\n{\"id\": 1, \"text\": \"a speedy fox\"}\n\
         {\"id\": 2, \"text\": \"Search IS fun\"}\n",
    )
    .unwrap();
    dir
}

#[test]
fn a_pipeline_runs_a_stage_component_from_the_repository_like_the_file() {
    let dir = setup();
    let d = dir.path();
    repo_add(d, &["py.wasm", "--name", "pystage", "--version", "1.0.0"]);
    let (code, err, by_file) = run(d, &pipeline_toml("py.wasm", "{}"));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(by_file.lines().count(), 3, "{by_file}");
    assert!(by_file.contains("\"fast car\""), "{by_file}");
    let (code, err, by_ref) = run(d, &pipeline_toml("pystage@^1", "{}"));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(by_ref, by_file);
    // A requirement nothing matches: the repository's one-line error, naming the stage.
    let (code, err, _) = run(d, &pipeline_toml("pystage@^2", "{}"));
    assert_ne!(code, Some(0));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("stage `python`") && err.contains("pystage") && err.contains("1.0.0"),
        "{err}"
    );
}

#[test]
fn a_tampered_or_unsigned_stage_component_is_refused_naming_the_entry() {
    let dir = setup();
    let d = dir.path();
    let key = keygen(&d.join("k")).unwrap();
    repo_add(
        d,
        &[
            "py.wasm",
            "--name",
            "signed",
            "--version",
            "1.0.0",
            "--sign",
            "k",
        ],
    );
    repo_add(d, &["py.wasm", "--name", "unsigned", "--version", "1.0.0"]);
    let trust = format!(
        "{{ integrity = {{ trusted-keys = [\"{}\"] }} }}",
        key.public.display()
    );
    let (code, err, out) = run(d, &pipeline_toml("signed@1", &trust));
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(out.lines().count(), 3, "{out}");
    // Not signed by a trusted key: refused before anything runs.
    let (code, err, out) = run(d, &pipeline_toml("unsigned@1", &trust));
    assert_eq!((code, out.as_str()), (Some(2), ""), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("stage `python`: module: component `unsigned@1`: ")
            && err.trim_end().ends_with("(integrity)"),
        "{err}"
    );
    // The object rewritten behind the index's back.
    let object = Repository::open(d.join("repo"))
        .resolve("signed@1")
        .unwrap()
        .path;
    let mut bytes = std::fs::read(&object).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 1;
    let mut perms = std::fs::metadata(&object).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&object, perms).unwrap();
    std::fs::write(&object, &bytes).unwrap();
    for policy in [trust.as_str(), "{}"] {
        let (code, err, out) = run(d, &pipeline_toml("signed@1", policy));
        assert_eq!((code, out.as_str()), (Some(2), ""), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("component `signed@1`: ") && err.contains("sha256"),
            "{err}"
        );
    }
}
