//! Pipeline stages as components (wit/pipeline/stage.wit, docs/pipeline.md "Stages as
//! components"): a stage written in Python (tests/fixtures/py/stage/app.py), built here with
//! componentize-py from PyPI (scripts/setup.sh installs it into target/py-venv), run in
//! pipelines next to core stages: its rows, its exceptions and `err(...)`s as dead letters, its
//! endless loop stopped by the stage's timeout, and the batches a hostile stage returns.
//!
//! The component (~18 MB) takes componentize-py several seconds to build: it is cached under
//! target/component-stage/, keyed by the sha256 of its sources and the WIT.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use serde_json::Value;
use sha2::{Digest, Sha256};
use wasmlink::pipeline::{
    ComponentStage, Outcome, Pipeline, PipelineSpec, RunOptions, RunStats, Sink, Source,
};
use wasmlink::plugin::PluginHost;
use wasmlink::policy::Policy;

const COMPONENTIZE_PY: &str = "0.25.1";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The Python stage component, built from tests/fixtures/py/stage/ (or taken from the cache).
pub(crate) fn python_stage() -> PathBuf {
    static BUILD: Mutex<()> = Mutex::new(());
    let _one = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let src = root().join("tests/fixtures/py/stage");
    let wit = root().join("wit/pipeline");
    let mut h = Sha256::new();
    h.update(COMPONENTIZE_PY);
    for f in [src.join("app.py"), wit.join("stage.wit")] {
        h.update(std::fs::read(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display())));
    }
    let key = hex::encode(&h.finalize()[..8]);
    let dir = root().join("target/component-stage");
    let out = dir.join(format!("py-stage-{key}.wasm"));
    if out.is_file() {
        return out;
    }
    std::fs::create_dir_all(&dir).unwrap();
    let tool = root().join("target/py-venv/bin/componentize-py");
    assert!(
        tool.exists(),
        "{} is missing: run `bash scripts/setup.sh` (it installs componentize-py {COMPONENTIZE_PY})",
        tool.display()
    );
    let tmp = dir.join(format!("py-stage-{key}.wasm.tmp-{}", std::process::id()));
    let r = Command::new(&tool)
        // No __pycache__ left in the source tree.
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .arg("-d")
        .arg(&wit)
        .args(["-w", "stage-component", "componentize", "-p"])
        .arg(&src)
        .arg("app")
        .arg("-o")
        .arg(&tmp)
        .output()
        .unwrap();
    assert!(
        r.status.success(),
        "componentize-py failed: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    std::fs::rename(&tmp, &out).unwrap();
    out
}

fn texts(rows: &[&str]) -> RecordBatch {
    let ids: Vec<i64> = (0..rows.len() as i64).collect();
    RecordBatch::try_from_iter([
        ("id", Arc::new(Int64Array::from(ids)) as ArrayRef),
        (
            "text",
            Arc::new(StringArray::from(rows.to_vec())) as ArrayRef,
        ),
    ])
    .unwrap()
}

fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Runs `rows` (in batches of `batch_rows`) through the Python stage under `policy`, with
/// `workers` threads; returns the stats, the rows written and the dead letters.
fn run_python(
    rows: &[&str],
    batch_rows: usize,
    workers: usize,
    policy: Policy,
) -> (RunStats, Vec<Value>, Vec<Value>) {
    let dir = tempfile::tempdir().unwrap();
    let stage = ComponentStage::load(&python_stage(), policy).unwrap();
    let out = dir.path().join("out.jsonl");
    let dead = dir.path().join("dead.jsonl");
    let mut spec = PipelineSpec::new(
        Source::Batches(vec![texts(rows)]),
        Sink::JsonLines(out.clone()),
    )
    .stage("py", stage, "stage#process", workers);
    spec.batch_rows = batch_rows;
    spec.dead_letter = Some(dead.clone());
    let stats = Pipeline::new(spec)
        .unwrap()
        .run(&RunOptions::default())
        .unwrap();
    assert_eq!(stats.outcome, Outcome::Completed);
    let dead = if dead.exists() {
        read_jsonl(&dead)
    } else {
        vec![]
    };
    (stats, read_jsonl(&out), dead)
}

fn text_of(row: &Value) -> &str {
    row["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no text in {row}"))
}

#[test]
fn a_python_stage_gives_the_expected_rows_in_order() {
    let input = [
        "The quick fox",
        "an Automobile and a speedy auto",
        "Search IS fun",
        "to the end of the line",
        "one",
        "Two Words",
        "",
    ];
    let (stats, rows, dead) = run_python(&input, 2, 2, Policy::default());
    assert!(dead.is_empty(), "{dead:?}");
    let got: Vec<(i64, String, i64)> = rows
        .iter()
        .map(|r| {
            (
                r["id"].as_i64().unwrap(),
                text_of(r).to_string(),
                r["words"].as_i64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(i64, String, i64)> = [
        "fast fox",
        "car fast car",
        "search fun",
        "end line",
        "one",
        "two words",
        "",
    ]
    .iter()
    .enumerate()
    .map(|(i, t)| (i as i64, t.to_string(), t.split_whitespace().count() as i64))
    .collect();
    assert_eq!(got, want);
    assert_eq!(stats.rows_written, 7);
    assert_eq!(stats.stages[0].failures, 0);
    assert_eq!(stats.stages[0].batches, 4);
}

#[test]
fn a_python_exception_is_a_dead_letter_with_its_text_and_the_run_goes_on() {
    let (stats, rows, dead) = run_python(
        &["alpha", "beta", "raise", "gamma", "delta", "err"],
        2,
        1,
        Policy::default(),
    );
    let texts: Vec<&str> = rows.iter().map(text_of).collect();
    assert_eq!(texts, ["alpha", "beta"]);
    assert_eq!(dead.len(), 2, "{dead:?}");
    assert_eq!(stats.failed_batches, 2);
    let first = dead[0].to_string();
    assert!(first.contains("\"py\""), "the stage is named: {first}");
    assert!(
        first.contains("ValueError: the stage was asked to raise"),
        "the exception's text is in the dead letter: {first}"
    );
    let second = dead[1].to_string();
    assert!(
        second.contains("the stage returned an error: the stage refused the text `err`"),
        "{second}"
    );
}

#[test]
fn a_python_endless_loop_is_stopped_by_the_stage_timeout() {
    let policy = Policy::from_toml("[limits]\ntimeout = \"1s\"\n", "policy").unwrap();
    let started = std::time::Instant::now();
    let (stats, rows, dead) = run_python(&["x", "loop", "b"], 1, 1, policy);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    let texts: Vec<&str> = rows.iter().map(text_of).collect();
    assert_eq!(texts, ["x", "b"], "the next batch runs on a fresh instance");
    assert_eq!(dead.len(), 1, "{dead:?}");
    let d = dead[0].to_string();
    assert!(d.contains("time limit"), "{d}");
    assert_eq!(stats.stages[0].failures, 1);
}

#[test]
fn a_stage_returning_columns_of_different_lengths_is_a_dead_letter() {
    let (_, rows, dead) = run_python(&["x", "ragged", "b"], 1, 1, Policy::default());
    assert_eq!(rows.iter().map(text_of).collect::<Vec<_>>(), ["x", "b"]);
    assert_eq!(dead.len(), 1, "{dead:?}");
    let d = dead[0].to_string();
    assert!(
        d.contains(
            "the stage returned a bad batch: column `words` has 1 row(s) but column `text` has 2"
        ),
        "{d}"
    );
}

#[test]
fn a_stage_changing_a_column_type_between_batches_is_a_dead_letter() {
    let (_, rows, dead) = run_python(&["x", "retype", "b"], 1, 1, Policy::default());
    assert_eq!(rows.iter().map(text_of).collect::<Vec<_>>(), ["x", "b"]);
    assert_eq!(dead.len(), 1, "{dead:?}");
    let d = dead[0].to_string();
    assert!(
        d.contains(
            "its columns (text: Utf8, words: Utf8) differ from those of the stage's earlier \
             batches (id: Int64, text: Utf8, words: Int64)"
        ),
        "{d}"
    );
}

#[test]
fn an_input_column_the_batch_cannot_carry_is_a_dead_letter_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let stage = ComponentStage::load(&python_stage(), Policy::default()).unwrap();
    let batch = RecordBatch::try_from_iter([(
        "when",
        Arc::new(arrow_array::Date32Array::from(vec![1, 2])) as ArrayRef,
    )])
    .unwrap();
    let dead = dir.path().join("dead.jsonl");
    let mut spec = PipelineSpec::new(Source::Batches(vec![batch]), Sink::None).stage(
        "py",
        stage,
        "stage#process",
        1,
    );
    spec.dead_letter = Some(dead.clone());
    let stats = Pipeline::new(spec)
        .unwrap()
        .run(&RunOptions::default())
        .unwrap();
    assert_eq!(stats.failed_batches, 1);
    let d = std::fs::read_to_string(&dead).unwrap();
    assert!(
        d.contains(
            "column `when` has Arrow type Date32, which a component stage's batch cannot carry"
        ),
        "{d}"
    );
}

/// A pipeline file with a core stage (the identity WAT module of tests/all/pipeline.rs) and
/// the Python component after it; `wasmlink pipeline run` runs it.
#[test]
fn a_pipeline_file_runs_a_component_stage_after_a_core_stage() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("id.wat"), crate::pipeline::stage_wat(0, false)).unwrap();
    std::fs::copy(python_stage(), d.join("py.wasm")).unwrap();
    let mut input = String::new();
    for (i, t) in ["The Quick auto", "raise", "a speedy fox"]
        .iter()
        .enumerate()
    {
        input += &format!("{{\"id\": {i}, \"text\": \"{t}\"}}\n");
    }
    std::fs::write(d.join("in.jsonl"), input).unwrap();
    let file = d.join("p.toml");
    std::fs::write(
        &file,
        r#"dead-letter = "dead.jsonl"

[source]
kind = "jsonl"
path = "in.jsonl"
batch-rows = 1

[[stage]]
name = "core"
module = "id.wat"
function = "run"

[[stage]]
name = "python"
module = "py.wasm"
function = "wasmlink:pipeline/stage#process"
workers = 2
policy = { limits = { timeout = "20s" } }

[sink]
kind = "jsonl"
path = "out.jsonl"
"#,
    )
    .unwrap();
    let out = crate::pipeline::wasmlink(&["pipeline", "run", file.to_str().unwrap()]);
    // Exit 1: the run completed with a failed batch.
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = read_jsonl(&d.join("out.jsonl"));
    let got: Vec<(i64, &str)> = rows
        .iter()
        .map(|r| (r["id"].as_i64().unwrap(), text_of(r)))
        .collect();
    assert_eq!(got, [(0, "fast car"), (2, "fast fox")]);
    let dead = std::fs::read_to_string(d.join("dead.jsonl")).unwrap();
    assert_eq!(dead.lines().count(), 1, "{dead}");
    assert!(dead.contains("\"python\""), "{dead}");
    assert!(
        dead.contains("ValueError: the stage was asked to raise"),
        "{dead}"
    );
}

#[test]
fn a_component_without_a_stage_function_is_a_one_line_config_error() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::copy(python_stage(), d.join("py.wasm")).unwrap();
    std::fs::write(d.join("in.jsonl"), "{\"text\": \"x\"}\n").unwrap();
    let text = r#"[source]
kind = "jsonl"
path = "in.jsonl"

[[stage]]
name = "python"
module = "py.wasm"
function = "transform"

[sink]
kind = "none"
"#;
    let host = PluginHost::new(Default::default()).unwrap();
    let e = PipelineSpec::from_toml(text, "p.toml", d, &host)
        .unwrap_err()
        .to_string();
    assert!(
        e == ("p.toml:8:12: stage `python`: function: `transform` is not exported by component `py` \
             (it exports: exports#init(app-name: string, symbols: symbols, stub-wasi: bool), \
             wasmlink:pipeline/stage@0.1.0#process(input: batch)); a stage component exports \
             wasmlink:pipeline/stage#process (wit/pipeline/stage.wit)"),
        "{e}"
    );
    assert!(!e.contains('\n'), "{e}");
}

/// The Rust stage component of guest/components/upper-stage (wit-bindgen, wasm32-wasip2), built
/// here by cargo (quick when nothing changed).
fn rust_stage() -> PathBuf {
    static BUILD: Mutex<()> = Mutex::new(());
    let _one = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let r = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--release", "--target", "wasm32-wasip2"])
        .arg("--manifest-path")
        .arg(root().join("guest/components/upper-stage/Cargo.toml"))
        .arg("--target-dir")
        .arg(root().join("target/guest-components"))
        .output()
        .unwrap();
    assert!(
        r.status.success(),
        "building guest/components/upper-stage failed (`rustup target add wasm32-wasip2`, see \
         scripts/setup.sh): {}",
        String::from_utf8_lossy(&r.stderr)
    );
    root().join("target/guest-components/wasm32-wasip2/release/upper_stage.wasm")
}

#[test]
fn a_rust_stage_component_runs_next_to_the_python_one() {
    let dir = tempfile::tempdir().unwrap();
    let upper = ComponentStage::load(&rust_stage(), Policy::default()).unwrap();
    let python = ComponentStage::load(&python_stage(), Policy::default()).unwrap();
    let no_text =
        RecordBatch::try_from_iter([("id", Arc::new(Int64Array::from(vec![9])) as ArrayRef)])
            .unwrap();
    let out = dir.path().join("out.jsonl");
    let dead = dir.path().join("dead.jsonl");
    let mut spec = PipelineSpec::new(
        Source::Batches(vec![texts(&["The Quick auto", "Grüße an Jörg"]), no_text]),
        Sink::JsonLines(out.clone()),
    )
    .stage("python", python, "stage#process", 1)
    .stage("upper", upper, "wasmlink:pipeline/stage#process", 2);
    spec.batch_rows = 1;
    spec.dead_letter = Some(dead.clone());
    let stats = Pipeline::new(spec)
        .unwrap()
        .run(&RunOptions::default())
        .unwrap();
    let rows = read_jsonl(&out);
    let got: Vec<(&str, i64, i64)> = rows
        .iter()
        .map(|r| {
            (
                text_of(r),
                r["words"].as_i64().unwrap(),
                r["chars"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, [("FAST CAR", 2, 8), ("GRÜSSE JÖRG", 2, 10)]);
    // The batch without `text`: the Python stage refuses it first, with err(...).
    assert_eq!(stats.failed_batches, 1);
    let d = std::fs::read_to_string(&dead).unwrap();
    assert!(
        d.contains("the stage returned an error: no column `text`"),
        "{d}"
    );
}

/// `Stage::call_once`, the call `wasmlink serve` makes for each client batch, holds a component
/// stage's pooled instance to the stage's recycle bound as it holds a core stage's: past the
/// bound the instance is dropped after its call and the next call gets a fresh one (issue 19:
/// a component stage's pool was never bounded, and reported no memory).
#[test]
fn a_component_stage_called_once_is_held_to_its_recycle_bound() {
    use wasmlink::pipeline::Recycle;

    let upper = ComponentStage::load(&rust_stage(), Policy::default()).unwrap();
    let spec = PipelineSpec::new(
        Source::Batches(vec![]),
        Sink::JsonLines(PathBuf::from("unused.jsonl")),
    )
    .stage("upper", upper, "wasmlink:pipeline/stage#process", 1);
    let batch = texts(&["The Quick auto", "abc"]);
    let calls = |recycle: Recycle| {
        let mut stage = spec.stages[0].clone();
        stage.recycle = recycle;
        (0..4)
            .map(|_| {
                let called = stage.call_once(&batch).unwrap();
                let text = called
                    .batch
                    .column_by_name("text")
                    .unwrap()
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .unwrap()
                    .iter()
                    .map(|t| t.unwrap().to_string())
                    .collect::<Vec<_>>();
                assert_eq!(text, ["THE QUICK AUTO", "ABC"]);
                (called.memory_bytes, called.recycled)
            })
            .collect::<Vec<_>>()
    };
    // A bound below any instance's memory: every call's instance is dropped, and the next
    // call's fresh one gives the same rows.
    let dropped = calls(Recycle::Above(1));
    assert!(dropped.iter().all(|&(m, r)| r && m > 0), "{dropped:?}");
    // No bound: the one pooled instance is kept across the calls.
    let kept = calls(Recycle::Never);
    assert!(kept.iter().all(|&(m, r)| !r && m > 0), "{kept:?}");
}
