//! `wasmlink index --stage FILE[:FUNCTION]`: a stage of the user's own between analyze and
//! index. The Python stop-word stage of tests/fixtures/py/stopwords/ (built here with
//! componentize-py, cached under target/component-stage/ by the sha256 of its sources) and
//! the same stage in JavaScript (tests/fixtures/js/stopwords/, componentize-js from npm,
//! installed into target/js by scripts/setup.sh) drop their stop terms from the index while
//! other words are still found; a core module works too; a stage whose output loses or
//! retypes one of analyze's columns is refused before indexing, in one line naming it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use sha2::{Digest, Sha256};

use crate::support::{self, stderr, stdout, wasmlink};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Builds a stage component from `src` with `build` (given the output path), cached under
/// target/component-stage/ by the sha256 of `tool_version`, the sources and the WIT.
fn cached_component(
    prefix: &str,
    tool_version: &str,
    sources: &[PathBuf],
    build: impl FnOnce(&Path),
) -> PathBuf {
    static BUILD: Mutex<()> = Mutex::new(());
    let _one = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let mut h = Sha256::new();
    h.update(tool_version);
    for f in sources
        .iter()
        .chain([&root().join("wit/pipeline/stage.wit")])
    {
        h.update(std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display())));
    }
    let key = hex::encode(&h.finalize()[..8]);
    let dir = root().join("target/component-stage");
    let out = dir.join(format!("{prefix}-{key}.wasm"));
    if out.is_file() {
        return out;
    }
    std::fs::create_dir_all(&dir).unwrap();
    let tmp = dir.join(format!("{prefix}-{key}.wasm.tmp-{}", std::process::id()));
    build(&tmp);
    std::fs::rename(&tmp, &out).unwrap();
    out
}

fn check_built(tool: &str, r: &Output) {
    assert!(
        r.status.success(),
        "{tool} failed: {}{}",
        String::from_utf8_lossy(&r.stdout),
        String::from_utf8_lossy(&r.stderr)
    );
}

/// The Python stop-word stage, built with componentize-py (scripts/setup.sh installs it).
pub(crate) fn python_stopwords() -> PathBuf {
    let src = root().join("tests/fixtures/py/stopwords");
    cached_component("py-stopwords", "0.25.1", &[src.join("app.py")], |out| {
        let tool = root().join("target/py-venv/bin/componentize-py");
        assert!(
            tool.exists(),
            "{} is missing: run `bash scripts/setup.sh`",
            tool.display()
        );
        let r = Command::new(&tool)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .arg("-d")
            .arg(root().join("wit/pipeline"))
            .args(["-w", "stage-component", "componentize", "-p"])
            .arg(&src)
            .arg("app")
            .arg("-o")
            .arg(out)
            .output()
            .unwrap();
        check_built("componentize-py", &r);
    })
}

/// The JavaScript stop-word stage, built with componentize-js (scripts/setup.sh installs it
/// into target/js with npm). `componentize-js` itself, not `jco componentize`: jco 1.35.0's
/// WIT reader finds no files (docs/components.md, "JavaScript").
pub(crate) fn js_stopwords() -> PathBuf {
    let app = root().join("tests/fixtures/js/stopwords/app.js");
    let tool = root().join("target/js/node_modules/.bin/componentize-js");
    let version = std::fs::read_to_string(
        root().join("target/js/node_modules/@bytecodealliance/componentize-js/package.json"),
    )
    .unwrap_or_else(|e| {
        panic!(
            "{}: {e}: run `bash scripts/setup.sh` (it installs componentize-js with npm)",
            tool.display()
        )
    });
    let version: serde_json::Value = serde_json::from_str(&version).unwrap();
    let version = version["version"].as_str().unwrap().to_string();
    cached_component(
        "js-stopwords",
        &version,
        std::slice::from_ref(&app),
        |out| {
            let r = Command::new(&tool)
                .arg(&app)
                .arg("--wit")
                .arg(root().join("wit/pipeline"))
                .args(["--world-name", "stage-component", "-o"])
                .arg(out)
                .output()
                .unwrap();
            check_built("componentize-js", &r);
        },
    )
}

/// The corpus: every body says "rust" (a stop term of the stage), no title does.
fn write_corpus(dir: &Path) {
    for (file, title, body) in [
        ("own.md", "Ownership", "rust ownership moves values"),
        (
            "borrow.md",
            "Borrowing",
            "borrowing in rust checks references",
        ),
        ("crab.md", "Crabs", "a crab walks sideways"),
    ] {
        std::fs::write(dir.join(file), format!("# {title}\n\n{body}\n")).unwrap();
    }
}

/// Indexes a fresh copy of the corpus, with `extra` flags; returns (tempdir, index, output).
fn index(extra: &[&str]) -> (tempfile::TempDir, PathBuf, Output) {
    let modules = support::guest_modules();
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("corpus");
    let index = tmp.path().join("index");
    std::fs::create_dir(&corpus).unwrap();
    write_corpus(&corpus);
    let mut args = vec![
        "index",
        "--corpus",
        corpus.to_str().unwrap(),
        "--out",
        index.to_str().unwrap(),
        "--modules",
        modules.to_str().unwrap(),
        "--no-progress",
        "--workers",
        "1",
    ];
    args.extend_from_slice(extra);
    let out = wasmlink(&args);
    (tmp, index, out)
}

/// The relative paths `wasmlink search` finds for `query`, sorted.
fn hits(index: &Path, query: &str) -> Vec<String> {
    let modules = support::guest_modules();
    let out = wasmlink(&[
        "search",
        index.to_str().unwrap(),
        query,
        "--json",
        "--modules",
        modules.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut paths: Vec<String> = stdout(&out)
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["path"].as_str().unwrap().to_string()
        })
        .collect();
    paths.sort();
    paths
}

fn indexed_with_stage(stage: &Path) -> (tempfile::TempDir, PathBuf) {
    let (tmp, index, out) = index(&["--stage", stage.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("indexed 3 documents"), "{err}");
    // The stage has its row in the report, between analyze and index.
    let names: Vec<&str> = err
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| ["analyze", "index"].contains(w) || w.contains("-stopwords-"))
        .collect();
    assert!(
        names
            .windows(3)
            .any(|w| w[0] == "analyze" && w[1].contains("-stopwords-") && w[2] == "index"),
        "{err}"
    );
    (tmp, index)
}

#[test]
fn a_python_stop_word_stage_removes_its_terms_from_the_index() {
    // Without the stage, "rust" is found.
    let (_t0, plain, out) = index(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(hits(&plain, "rust"), ["borrow.md", "own.md"]);
    let stage = python_stopwords();
    let (_t1, stopped) = indexed_with_stage(&stage);
    assert_eq!(hits(&stopped, "rust"), Vec::<String>::new());
    // Other words, in the body and in the title, still are.
    assert_eq!(hits(&stopped, "ownership"), ["own.md"]);
    assert_eq!(hits(&stopped, "references"), ["borrow.md"]);
    assert_eq!(hits(&stopped, "crab sideways"), ["crab.md"]);
}

#[test]
fn a_javascript_stop_word_stage_does_the_same() {
    let stage = js_stopwords();
    let (_t, stopped) = indexed_with_stage(&stage);
    assert_eq!(hits(&stopped, "rust"), Vec::<String>::new());
    assert_eq!(hits(&stopped, "ownership"), ["own.md"]);
    assert_eq!(hits(&stopped, "crab"), ["crab.md"]);
}

/// A core module (ABI v1) whose `run` ignores its input and returns `output`, an Arrow IPC
/// stream held in its data segment.
fn constant_stage_wat(output: &[u8]) -> String {
    let data: String = output.iter().map(|b| format!("\\{b:02x}")).collect();
    let heap = (1024 + output.len()).next_multiple_of(64);
    format!(
        r#"(module
  (memory (export "memory") 4)
  (global $heap (mut i32) (i32.const {heap}))
  (data (i32.const 1024) "{data}")
  (func $alloc (export "wasmlink_alloc") (param $size i32) (param $align i32) (result i32)
    (local $p i32)
    (local.set $p
      (i32.and
        (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
        (i32.sub (i32.const 0) (local.get $align))))
    (block $ok
      (loop $grow
        (br_if $ok (i32.le_u (i32.add (local.get $p) (local.get $size))
                             (i32.mul (memory.size) (i32.const 65536))))
        (if (i32.eq (memory.grow (i32.const 16)) (i32.const -1)) (then (return (i32.const 0))))
        (br $grow)))
    (global.set $heap (i32.add (local.get $p) (local.get $size)))
    (local.get $p))
  (func (export "wasmlink_free") (param $ptr i32) (param $size i32) (param $align i32))
  (func (export "run") (param $ptr i32) (param $len i32) (result i32)
    (i32.store (i32.const 16) (i32.const 0))
    (i32.store (i32.const 20) (i32.const 1024))
    (i32.store (i32.const 24) (i32.const {len}))
    (i32.store (i32.const 28) (i32.const {len}))
    (i32.const 16))
)"#,
        len = output.len()
    )
}

fn ipc(batch: &RecordBatch) -> Vec<u8> {
    let mut out = Vec::new();
    let mut w = arrow_ipc::writer::StreamWriter::try_new(&mut out, &batch.schema()).unwrap();
    w.write(batch).unwrap();
    w.finish().unwrap();
    drop(w);
    out
}

fn utf8(v: &str) -> ArrayRef {
    Arc::new(StringArray::from(vec![v]))
}

#[test]
fn a_stage_that_loses_or_retypes_a_column_is_refused_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    // `terms` as Utf8 rather than List<Utf8>.
    let retyped = RecordBatch::try_from_iter([
        ("path", utf8("p.md")),
        ("title", utf8("P")),
        ("text", utf8("t")),
        ("skip", utf8("")),
        ("terms", utf8("t")),
    ])
    .unwrap();
    // No `terms` at all.
    let lost = RecordBatch::try_from_iter([
        ("path", utf8("p.md")),
        ("title", utf8("P")),
        ("text", utf8("t")),
        ("skip", utf8("")),
    ])
    .unwrap();
    for (name, batch, want) in [
        (
            "retype.wasm",
            &retyped,
            "--stage: column `terms` of its output is Utf8, expected List(Utf8) as analyze \
             gives it",
        ),
        (
            "lose.wasm",
            &lost,
            "--stage: its output has no column `terms` (the index stage reads analyze's \
             columns: path: Utf8, title: Utf8, text: Utf8, skip: Utf8, terms: List(Utf8))",
        ),
    ] {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            wat::parse_str(constant_stage_wat(&ipc(batch))).unwrap(),
        )
        .unwrap();
        let spec = format!("{}:run", path.display());
        let (_t, index, out) = index(&["--stage", &spec]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert_eq!(err, format!("wasmlink: {}: {want}\n", path.display()));
        assert!(!index.join("manifest.json").exists());
    }
    // A missing file, and a component without the function named.
    let (_t, _, out) = index(&["--stage", "/nonexistent/stage.wasm"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "wasmlink: /nonexistent/stage.wasm: --stage: no such file or directory\n"
    );
}

#[test]
fn a_core_module_stage_runs_between_analyze_and_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("identity.wasm");
    std::fs::write(
        &path,
        wat::parse_str(crate::pipeline::stage_wat(0, false)).unwrap(),
    )
    .unwrap();
    let spec = format!("{}:run", path.display());
    let (_t, index, out) = index(&["--stage", &spec]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.lines().any(|l| l.starts_with("identity ")),
        "the stage's row: {err}"
    );
    assert_eq!(hits(&index, "rust"), ["borrow.md", "own.md"]);
}
