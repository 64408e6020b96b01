//! Streaming pipelines (`wasmlink::pipeline`, `wasmlink pipeline run`): order, dead letters,
//! killed runs and `--resume`, one-line errors for bad files, and backpressure.
//!
//! The stages are ABI v1 modules written by hand in WAT (docs/abi.md): an identity stage (its
//! output is its input, the Arrow IPC stream unchanged), one that traps when its input holds
//! the bytes `TRAP`, and a slow identity that spins before answering.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow_array::{Int64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field, Schema};
use wasmlink::pipeline::{Outcome, Pipeline, PipelineSpec, RunOptions, Sink, Source};
use wasmlink::plugin::{HostConfig, PluginHost};
use wasmlink::policy::Policy;

/// An ABI v1 module whose `run` copies its input to a fresh output after `spin` loop
/// iterations, and traps first if `trap_on_marker` and the input contains `TRAP`.
/// The allocator is a bump allocator that frees the top block (the host frees the output, then
/// the input), so memory does not grow from call to call.
pub(crate) fn stage_wat(spin: u32, trap_on_marker: bool) -> String {
    let check = if trap_on_marker {
        r#"
    (local.set $i (i32.const 0))
    (block $done
      (loop $scan
        (br_if $done (i32.gt_s (i32.add (local.get $i) (i32.const 4)) (local.get $len)))
        (if (i32.eq (i32.load (i32.add (local.get $ptr) (local.get $i))) (i32.const 0x50415254))
          (then unreachable))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $scan)))"#
    } else {
        ""
    };
    format!(
        r#"(module
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 1024))
  (global $sink (mut i32) (i32.const 0))
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
  (func (export "wasmlink_free") (param $ptr i32) (param $size i32) (param $align i32)
    (if (i32.eq (i32.add (local.get $ptr) (local.get $size)) (global.get $heap))
      (then (global.set $heap (local.get $ptr)))))
  (func (export "run") (param $ptr i32) (param $len i32) (result i32)
    (local $out i32) (local $i i32)
    {check}
    (local.set $i (i32.const {spin}))
    (block $spun
      (loop $spin
        (br_if $spun (i32.eqz (local.get $i)))
        (global.set $sink (i32.add (global.get $sink) (local.get $i)))
        (local.set $i (i32.sub (local.get $i) (i32.const 1)))
        (br $spin)))
    (local.set $out (call $alloc (local.get $len) (i32.const 1)))
    (memory.copy (local.get $out) (local.get $ptr) (local.get $len))
    (i32.store (i32.const 16) (i32.const 0))
    (i32.store (i32.const 20) (local.get $out))
    (i32.store (i32.const 24) (local.get $len))
    (i32.store (i32.const 28) (local.get $len))
    (i32.const 16))
  (func (export "not_abi") (param i32) (result i32) (local.get 0))
)"#
    )
}

/// Writes the stage modules into `dir`: identity.wasm, trap.wasm, slow.wasm.
pub(crate) fn write_stages(dir: &Path, slow_spin: u32) {
    for (name, wat) in [
        ("identity.wasm", stage_wat(0, false)),
        ("trap.wasm", stage_wat(0, true)),
        ("slow.wasm", stage_wat(slow_spin, false)),
    ] {
        std::fs::write(dir.join(name), wat::parse_str(&wat).unwrap()).unwrap();
    }
}

/// `n` JSON Lines rows `{"id":i,"text":"row i"}` (or `TRAP i` for the ids in `marked`).
pub(crate) fn write_rows(path: &Path, n: usize, marked: &[usize]) -> Vec<serde_json::Value> {
    let rows: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            let text = if marked.contains(&i) {
                format!("TRAP {i}")
            } else {
                format!("row {i}")
            };
            serde_json::json!({"id": i, "text": text})
        })
        .collect();
    let mut text = String::new();
    for r in &rows {
        text += &r.to_string();
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
    rows
}

/// The temporary outputs and checkpoints left in `dir` (none after a completed run).
pub(crate) fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-") || n.ends_with(".progress"))
        .collect()
}

pub(crate) fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

pub(crate) fn wasmlink(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wasmlink"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

pub(crate) fn stats_of(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}): {}\nstderr: {}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

pub(crate) fn host() -> PluginHost {
    PluginHost::new(HostConfig {
        pool_slots: 0,
        ..HostConfig::default()
    })
    .unwrap()
}

#[test]
fn two_identity_stages_with_two_workers_keep_every_row_in_order() {
    let dir = tempfile::tempdir().unwrap();
    write_stages(dir.path(), 0);
    let rows = write_rows(&dir.path().join("in.jsonl"), 3000, &[]);
    let file = dir.path().join("p.toml");
    std::fs::write(
        &file,
        r#"
queue-depth = 2
[source]
kind = "jsonl"
path = "in.jsonl"
batch-rows = 128

[[stage]]
name = "first"
module = "identity.wasm"
function = "run"
workers = 2

[[stage]]
name = "second"
module = "identity.wasm"
function = "run"
workers = 2
[stage.policy]
limits = { memory = "16MiB" }

[sink]
kind = "jsonl"
path = "out/out.jsonl"
"#,
    )
    .unwrap();
    let o = wasmlink(&["pipeline", "run", "--json", file.to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let stats = stats_of(&o);
    assert_eq!(stats["outcome"], "completed");
    assert_eq!(stats["rows_read"], 3000);
    assert_eq!(stats["batches_read"], 24); // ceil(3000 / 128)
    assert_eq!(stats["rows_written"], 3000);
    assert_eq!(stats["failed_batches"], 0);
    for s in stats["stages"].as_array().unwrap() {
        assert_eq!(s["batches"], 24);
        assert_eq!(s["rows_in"], 3000);
        assert_eq!(s["rows_out"], 3000);
        assert_eq!(s["workers"], 2);
        assert_eq!(s["failures"], 0);
    }
    assert_eq!(read_jsonl(&dir.path().join("out/out.jsonl")), rows);
    // Nothing left behind: no temporary file, no checkpoint.
    let left: Vec<String> = std::fs::read_dir(dir.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["out.jsonl"]);
}

/// `top`, then a JSON Lines source (`in.jsonl`) cut into `batch_rows`-row batches, then three
/// stages: `pass` (identity), `picky` (traps on `TRAP`; `picky_extra` added to it) and `after`
/// (identity), into `out.jsonl`, with dead letters to `dead.jsonl`.
fn trap_pipeline(top: &str, batch_rows: usize, picky_extra: &str) -> String {
    format!(
        "{top}dead-letter = \"dead.jsonl\"\n\
         [source]\nkind = \"jsonl\"\npath = \"in.jsonl\"\nbatch-rows = {batch_rows}\n\
         [[stage]]\nname = \"pass\"\nmodule = \"identity.wasm\"\nfunction = \"run\"\n\
         [[stage]]\nname = \"picky\"\nmodule = \"trap.wasm\"\nfunction = \"run\"\n{picky_extra}\
         [[stage]]\nname = \"after\"\nmodule = \"identity.wasm\"\nfunction = \"run\"\n\
         [sink]\nkind = \"jsonl\"\npath = \"out.jsonl\"\n"
    )
}

/// Runs `trap_pipeline(top, batch_rows, picky_extra)` with `wasmlink pipeline run --json` over
/// 1000 rows with `marked` ones, expects exit status 1 (completed, some batches failed), and
/// checks that `out.jsonl` holds every row except those of the batches `failed`. Returns the
/// directory (with `dead.jsonl`), the rows and the JSON stats.
fn run_trap_pipeline(
    top: &str,
    batch_rows: usize,
    picky_extra: &str,
    marked: &[usize],
    failed: &[usize],
) -> (tempfile::TempDir, Vec<serde_json::Value>, serde_json::Value) {
    let dir = tempfile::tempdir().unwrap();
    write_stages(dir.path(), 0);
    let rows = write_rows(&dir.path().join("in.jsonl"), 1000, marked);
    let file = dir.path().join("p.toml");
    std::fs::write(&file, trap_pipeline(top, batch_rows, picky_extra)).unwrap();
    let o = wasmlink(&["pipeline", "run", "--json", file.to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let expected: Vec<serde_json::Value> = rows
        .iter()
        .enumerate()
        .filter(|(i, _)| !failed.contains(&(i / batch_rows)))
        .map(|(_, r)| r.clone())
        .collect();
    assert_eq!(read_jsonl(&dir.path().join("out.jsonl")), expected);
    let stats = stats_of(&o);
    (dir, rows, stats)
}

#[test]
fn a_trapping_stage_sends_exactly_the_marked_batches_to_the_dead_letter_file() {
    // Batches of 100 rows: ids 150 and 720 fall in batches 1 and 7. Exit status 1: completed,
    // but some batches failed.
    let (dir, rows, stats) = run_trap_pipeline("", 100, "workers = 3\n", &[150, 720], &[1, 7]);
    assert_eq!(stats["failed_batches"], 2);
    assert_eq!(stats["failed_rows"], 200);
    assert_eq!(stats["rows_written"], 800);
    assert_eq!(stats["stages"][1]["failures"], 2);
    assert_eq!(stats["stages"][1]["rows_out"], 800);
    assert_eq!(stats["stages"][2]["rows_in"], 800);

    let dead = read_jsonl(&dir.path().join("dead.jsonl"));
    assert_eq!(dead.len(), 2);
    for (letter, seq) in dead.iter().zip([1usize, 7]) {
        assert_eq!(letter["seq"], seq);
        assert_eq!(letter["stage"], "picky");
        assert_eq!(letter["function"], "run");
        assert_eq!(letter["num_rows"], 100);
        let error = letter["error"].as_str().unwrap();
        assert!(
            error.starts_with("plugin `trap`: `run` trapped: "),
            "wasmlink: {error}"
        );
        assert!(!error.contains('\n'));
        assert_eq!(
            letter["rows"].as_array().unwrap()[..],
            rows[seq * 100..seq * 100 + 100]
        );
    }
}

fn write_slow_pipeline(dir: &Path, name: &str, out: &str) -> PathBuf {
    let file = dir.join(name);
    std::fs::write(
        &file,
        format!(
            r#"
queue-depth = 1
[source]
kind = "jsonl"
path = "in.jsonl"
batch-rows = 10
[[stage]]
name = "slow"
module = "slow.wasm"
function = "run"
[sink]
kind = "arrow"
path = "{out}"
"#
        ),
    )
    .unwrap();
    file
}

fn read_ipc(path: &Path) -> Vec<RecordBatch> {
    let f = std::fs::File::open(path).unwrap();
    arrow_ipc::reader::StreamReader::try_new(f, None)
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

/// The `next_seq` of checkpoint file `progress` (0 while there is none).
pub(crate) fn committed(progress: &Path) -> u64 {
    std::fs::read_to_string(progress)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["next_seq"].as_u64())
        .unwrap_or(0)
}

/// Starts `wasmlink pipeline run PIPELINE`, kills it once its checkpoint `progress` has
/// `at_least` batches committed (within 60 s, before the run ends by itself), and checks that
/// nothing was left under the output's final name `out`.
pub(crate) fn kill_after_checkpoint(pipeline: &Path, progress: &Path, out: &Path, at_least: u64) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wasmlink"))
        .args(["pipeline", "run", pipeline.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while committed(progress) < at_least {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before it could be killed"
        );
        assert!(Instant::now() < deadline, "no checkpoint after 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !out.exists(),
        "a killed run left a file under the final name"
    );
}

#[test]
fn a_killed_run_leaves_no_output_and_resume_completes_it_exactly() {
    let dir = tempfile::tempdir().unwrap();
    // ~20-40 ms per batch of 10 rows: 100 batches take a few seconds.
    write_stages(dir.path(), 8_000_000);
    write_rows(&dir.path().join("in.jsonl"), 1000, &[]);
    let killed = write_slow_pipeline(dir.path(), "p.toml", "out.arrow");
    let out = dir.path().join("out.arrow");
    let progress = dir.path().join("out.arrow.progress");

    // Kill once a checkpoint has a few batches committed.
    kill_after_checkpoint(&killed, &progress, &out, 3);
    assert!(progress.exists());

    let o = wasmlink(&[
        "pipeline",
        "run",
        "--resume",
        "--json",
        killed.to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let stats = stats_of(&o);
    let resumed = stats["resumed_batches"].as_u64().unwrap();
    assert!(
        (3..100).contains(&resumed),
        "resumed after {resumed} batches"
    );
    assert_eq!(stats["batches_read"].as_u64().unwrap(), 100 - resumed);
    assert_eq!(stats["rows_written"], 1000);
    assert!(!progress.exists());

    // The same bytes as an uninterrupted run.
    let whole = write_slow_pipeline(dir.path(), "q.toml", "whole.arrow");
    let o = wasmlink(&["pipeline", "run", whole.to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(dir.path().join("whole.arrow")).unwrap()
    );
    let batches = read_ipc(&out);
    assert_eq!(batches.len(), 100);
    let ids: Vec<i64> = batches
        .iter()
        .flat_map(|b| {
            let col = b
                .column_by_name("id")
                .unwrap()
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .clone();
            col.values().to_vec()
        })
        .collect();
    assert_eq!(ids, (0..1000).collect::<Vec<i64>>());
    let temps = leftovers(dir.path());
    assert!(temps.is_empty(), "left behind: {temps:?}");
}

#[test]
fn ctrl_c_finishes_the_batches_in_flight_keeps_the_checkpoint_and_resume_completes() {
    let dir = tempfile::tempdir().unwrap();
    write_stages(dir.path(), 8_000_000);
    let rows = write_rows(&dir.path().join("in.jsonl"), 1000, &[]);
    let file = dir.path().join("p.toml");
    std::fs::write(
        &file,
        "queue-depth = 2\n[source]\nkind = \"jsonl\"\npath = \"in.jsonl\"\nbatch-rows = 10\n\
         [[stage]]\nname = \"slow\"\nmodule = \"slow.wasm\"\nfunction = \"run\"\nworkers = 2\n\
         [sink]\nkind = \"jsonl\"\npath = \"out.jsonl\"\n",
    )
    .unwrap();
    let out = dir.path().join("out.jsonl");
    let progress = dir.path().join("out.jsonl.progress");
    let child = Command::new(env!("CARGO_BIN_EXE_wasmlink"))
        .args(["pipeline", "run", "--json", file.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !progress.exists() {
        assert!(Instant::now() < deadline, "no checkpoint after 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let stats = stats_of(&o);
    assert_eq!(stats["outcome"], "interrupted");
    let written = stats["batches_written"].as_u64().unwrap();
    assert!(
        written < 100,
        "{written} batches written before the interrupt"
    );
    // Every batch read was finished and written: the checkpoint covers all of them.
    assert_eq!(written, stats["batches_read"].as_u64().unwrap());
    assert!(!out.exists());
    let cp: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&progress).unwrap()).unwrap();
    assert_eq!(cp["next_seq"].as_u64().unwrap(), written);

    let o = wasmlink(&[
        "pipeline",
        "run",
        "--resume",
        "--json",
        file.to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(stats_of(&o)["resumed_batches"].as_u64().unwrap(), written);
    assert_eq!(read_jsonl(&out), rows);
}

/// The error for a pipeline file with `stage` (and `extra` top-level text), or "ok".
fn error_of(dir: &Path, host: &PluginHost, text: &str) -> String {
    match PipelineSpec::from_toml(text, "p.toml", dir, host) {
        Ok(_) => "ok".into(),
        Err(e) => e.to_string().replace(&dir.display().to_string(), "DIR"),
    }
}

#[test]
fn bad_pipeline_files_give_one_line_errors_that_point_at_the_field() {
    let dir = tempfile::tempdir().unwrap();
    write_stages(dir.path(), 0);
    write_rows(&dir.path().join("in.jsonl"), 10, &[]);
    let host = host();
    let source = "[source]\nkind = \"jsonl\"\npath = \"in.jsonl\"\n";
    let sink = "[sink]\nkind = \"jsonl\"\npath = \"out.jsonl\"\n";
    let stage = |body: &str| format!("{source}[[stage]]\n{body}{sink}");
    let cases: Vec<(String, &str)> = vec![
        (format!("{source}{sink}"), "ok"),
        (
            format!("{source}batch-size = 10\n{sink}"),
            "p.toml:4:1: unknown field `batch-size`, expected one of `kind`, `path`, `batch-rows`, `extensions`, `content`, `include`, `exclude`",
        ),
        (
            "[source]\nkind = \"orc\"\npath = \"in.jsonl\"\n[sink]\nkind = \"none\"\n".into(),
            "p.toml:2:8: unknown variant `orc`, expected one of `jsonl`, `csv`, `arrow`, `parquet`, `dir`",
        ),
        (
            format!("[source]\nkind = \"jsonl\"\npath = \"nope.jsonl\"\n{sink}"),
            "p.toml:3:8: source.path: cannot open `DIR/nope.jsonl`: no such file or directory",
        ),
        (
            format!("{source}batch-rows = 0\n{sink}"),
            "p.toml:4:14: source.batch-rows: must be at least 1",
        ),
        (
            format!("queue-depth = 0\n{source}{sink}"),
            "p.toml:1:15: queue-depth: must be at least 1",
        ),
        (source.to_string(), "p.toml:1:1: missing field `sink`"),
        (
            format!("{source}[sink]\nkind = \"jsonl\"\n"),
            "p.toml:5:8: sink.path: required with kind = \"jsonl\"",
        ),
        (
            stage("name = \"a\"\nmodule = \"missing.wasm\"\nfunction = \"run\"\n"),
            "p.toml:6:10: stage `a`: module: `DIR/missing.wasm` does not exist or is not a file",
        ),
        (
            stage("name = \"a\"\nmodule = \"identity.wasm\"\nfunction = \"nope\"\n"),
            "p.toml:7:12: stage `a`: function: `nope` is not exported by plugin `identity` (it exports: not_abi, run, wasmlink_alloc, wasmlink_free)",
        ),
        (
            stage("name = \"a\"\nmodule = \"identity.wasm\"\nfunction = \"not_abi\"\n"),
            "p.toml:7:12: stage `a`: function: `not_abi` of plugin `identity` has type (i32) -> (i32), not the ABI v1 (i32, i32) -> i32 (docs/abi.md)",
        ),
        (
            stage("name = \"a\"\nmodule = \"identity.wasm\"\nfunction = \"run\"\nworkers = 0\n"),
            "p.toml:8:11: stage `a`: workers: must be at least 1",
        ),
        (
            stage("name = \"a\"\nmodule = \"identity.wasm\"\nfunction = \"run\"\ncolour = 1\n"),
            "p.toml:8:1: unknown field `colour`, expected one of `name`, `module`, `function`, `policy`, `workers`, `recycle-above`",
        ),
        (
            stage(
                "name = \"a\"\nmodule = \"identity.wasm\"\nfunction = \"run\"\npolicy = \"none.toml\"\n",
            ),
            "p.toml:8:10: stage `a`: policy: DIR/none.toml: cannot read policy: No such file or directory (os error 2)",
        ),
        (
            stage(
                "name = \"a\"\nmodule = \"identity.wasm\"\nfunction = \"run\"\n[stage.policy]\nlimits = { memroy = \"1MiB\" }\n",
            ),
            "p.toml:9:12: unknown field `memroy`, expected one of `memory`, `table-elements`, `instances`, `stack`, `fuel`, `timeout`, `output`, `isolation`",
        ),
    ];
    let mut failures = Vec::new();
    for (text, expected) in &cases {
        let got = error_of(dir.path(), &host, text);
        assert!(!got.contains('\n'), "not one line: {got}");
        if got != *expected {
            failures.push(format!(
                "file:\n{text}\n  expected: {expected}\n  got:      {got}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));

    // Through the CLI: `wasmlink: ` and exit status 2.
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        stage("name = \"a\"\nmodule = \"identity.wasm\"\nfunction = \"run\"\nworkers = 0\n"),
    )
    .unwrap();
    let o = wasmlink(&["pipeline", "run", file.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        format!(
            "wasmlink: {}:8:11: stage `a`: workers: must be at least 1\n",
            file.display()
        )
    );
}

pub(crate) fn id_batches(batches: usize, rows: usize) -> Vec<RecordBatch> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("text", DataType::Utf8, false),
    ]));
    (0..batches)
        .map(|b| {
            let ids: Vec<i64> = (0..rows).map(|r| (b * rows + r) as i64).collect();
            let text: Vec<String> = ids.iter().map(|i| format!("row {i}")).collect();
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(ids)),
                    Arc::new(StringArray::from(text)),
                ],
            )
            .unwrap()
        })
        .collect()
}

#[test]
fn backpressure_keeps_the_reader_a_bounded_number_of_batches_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let host = host();
    let slow = host
        .load(
            "slow",
            stage_wat(2_000_000, false).as_bytes(),
            Policy::default(),
        )
        .unwrap();
    let out = dir.path().join("out.jsonl");
    let mut spec = PipelineSpec::new(
        Source::Batches(id_batches(60, 10)),
        Sink::JsonLines(out.clone()),
    )
    .stage("slow", slow, "run", 1);
    spec.batch_rows = 10;
    spec.queue_depth = 1;
    let stats = Pipeline::new(spec)
        .unwrap()
        .run(&RunOptions::default())
        .unwrap();
    assert_eq!(stats.outcome, Outcome::Completed);
    assert_eq!(stats.batches_read, 60);
    assert_eq!(stats.rows_written, 600);
    // In flight: one batch in each of the two queues, one in the worker, one being written.
    assert!(
        (2..=4).contains(&stats.max_batches_in_flight),
        "{} batches in flight",
        stats.max_batches_in_flight
    );
    assert_eq!(read_jsonl(&out).len(), 600);
}

#[test]
fn a_directory_source_gives_one_row_per_matching_file_in_path_order() {
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("docs");
    std::fs::create_dir_all(docs.join("sub")).unwrap();
    std::fs::write(docs.join("b.md"), "# B\n").unwrap();
    std::fs::write(docs.join("a.txt"), "alpha").unwrap();
    std::fs::write(docs.join("sub/c.HTML"), "<p>c</p>").unwrap();
    std::fs::write(docs.join("skip.bin"), [0u8, 1, 2]).unwrap();
    std::fs::write(docs.join("e.txt"), b"x\xffy").unwrap();
    let out = dir.path().join("files.jsonl");
    let mut spec = PipelineSpec::new(
        Source::Dir {
            path: docs,
            extensions: vec!["md".into(), "txt".into(), "html".into()],
            binary: false,
            include: vec![],
            exclude: vec![],
        },
        Sink::JsonLines(out.clone()),
    );
    spec.batch_rows = 2;
    let stats = Pipeline::new(spec)
        .unwrap()
        .run(&RunOptions::default())
        .unwrap();
    assert_eq!(stats.batches_read, 2);
    assert_eq!(stats.bytes_read, 4 + 5 + 3 + 8);
    assert_eq!(
        read_jsonl(&out),
        vec![
            serde_json::json!({"path": "a.txt", "content": "alpha", "size": 5}),
            serde_json::json!({"path": "b.md", "content": "# B\n", "size": 4}),
            // Invalid UTF-8 becomes U+FFFD; `size` is the file's.
            serde_json::json!({"path": "e.txt", "content": "x\u{fffd}y", "size": 3}),
            serde_json::json!({"path": "sub/c.HTML", "content": "<p>c</p>", "size": 8}),
        ]
    );
}

/// A directory source's batch ends at `batch_rows` files or once its content reaches
/// `DIR_BATCH_BYTES`, so a few large files do not make one huge batch (which every stage's
/// memory would grow to hold); every file still arrives once, in order.
#[test]
fn a_directory_source_cuts_batches_at_a_byte_budget_too() {
    let budget = wasmlink::pipeline::DIR_BATCH_BYTES;
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("docs");
    std::fs::create_dir_all(&docs).unwrap();
    // a: 5/8 of the budget, b: 5/8 (the batch passes the budget with b and ends), c: one
    // byte over the budget (a batch of its own), d, e: small (the last batch).
    let sizes = [
        ("a.txt", budget / 8 * 5),
        ("b.txt", budget / 8 * 5),
        ("c.txt", budget + 1),
        ("d.txt", 10),
        ("e.txt", 20),
    ];
    for (name, size) in sizes {
        std::fs::write(docs.join(name), "x".repeat(size)).unwrap();
    }
    let out = dir.path().join("files.jsonl");
    let mut spec = PipelineSpec::new(
        Source::Dir {
            path: docs,
            extensions: vec!["txt".into()],
            binary: false,
            include: vec![],
            exclude: vec![],
        },
        Sink::JsonLines(out.clone()),
    );
    spec.batch_rows = 64;
    let stats = Pipeline::new(spec)
        .unwrap()
        .run(&RunOptions::default())
        .unwrap();
    assert_eq!(stats.batches_read, 3, "[a b] [c] [d e]");
    let rows = read_jsonl(&out);
    let got: Vec<(String, u64)> = rows
        .iter()
        .map(|r| {
            (
                r["path"].as_str().unwrap().to_string(),
                r["size"].as_u64().unwrap(),
            )
        })
        .collect();
    let want: Vec<(String, u64)> = sizes
        .iter()
        .map(|(n, s)| (n.to_string(), *s as u64))
        .collect();
    assert_eq!(got, want);
}

/// Symbolic links in a directory source are followed (a linked file is read, a linked
/// directory walked) and a dangling one is an error naming it, as when every entry was
/// `stat`ed; entries that are not links take their type from the directory listing.
#[test]
fn a_directory_source_follows_symbolic_links_and_names_a_dangling_one() {
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("docs");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(docs.join("real")).unwrap();
    std::fs::create_dir_all(outside.join("deep")).unwrap();
    std::fs::write(docs.join("real/a.txt"), "a").unwrap();
    std::fs::write(outside.join("b.txt"), "bb").unwrap();
    std::fs::write(outside.join("deep/c.txt"), "ccc").unwrap();
    std::os::unix::fs::symlink(outside.join("b.txt"), docs.join("b.txt")).unwrap();
    std::os::unix::fs::symlink(outside.join("deep"), docs.join("linked")).unwrap();
    let run = |docs: &Path, out: &Path| {
        let spec = PipelineSpec::new(
            Source::Dir {
                path: docs.to_path_buf(),
                extensions: vec!["txt".into()],
                binary: false,
                include: vec![],
                exclude: vec![],
            },
            Sink::JsonLines(out.to_path_buf()),
        );
        Pipeline::new(spec).and_then(|p| p.run(&RunOptions::default()))
    };
    let out = dir.path().join("files.jsonl");
    run(&docs, &out).unwrap();
    let got: Vec<(String, u64)> = read_jsonl(&out)
        .iter()
        .map(|r| {
            (
                r["path"].as_str().unwrap().to_string(),
                r["size"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("b.txt".to_string(), 2),
            ("linked/c.txt".to_string(), 3),
            ("real/a.txt".to_string(), 1)
        ]
    );
    std::os::unix::fs::symlink(dir.path().join("gone.txt"), docs.join("dangling.txt")).unwrap();
    let err = run(&docs, &dir.path().join("again.jsonl"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("dangling.txt"), "{err}");
    assert!(!err.contains('\n'), "{err}");
}

#[test]
fn a_directory_source_takes_the_files_its_include_and_exclude_globs_choose() {
    let dir = tempfile::tempdir().unwrap();
    let docs = dir.path().join("docs");
    for (file, text) in [
        ("a.md", "a"),
        ("b.txt", "b"),
        ("notes.rs", "fn main() {}"),
        ("src/x.md", "excluded directory"),
        ("sub/deep/c.md", "c"),
        ("sub/all.html", "excluded file"),
        ("sub/d.MD", "d"),
    ] {
        let path = docs.join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    let source = Source::Dir {
        path: docs.clone(),
        extensions: vec![],
        binary: false,
        include: vec!["**/*.{md,html}".into(), "*.rs".into()],
        exclude: vec!["src".into(), "**/all.html".into()],
    };
    let listed: Vec<String> = source
        .dir_files()
        .unwrap()
        .unwrap()
        .into_iter()
        .map(|(rel, full)| {
            assert_eq!(full, docs.join(&rel));
            rel
        })
        .collect();
    // Globs are case-sensitive (`d.MD` is out); `*` does not cross `/`, `**` does.
    assert_eq!(listed, ["a.md", "notes.rs", "sub/deep/c.md"]);

    let out = dir.path().join("files.jsonl");
    let stats = Pipeline::new(PipelineSpec::new(source, Sink::JsonLines(out.clone())))
        .unwrap()
        .run(&RunOptions::default())
        .unwrap();
    assert_eq!(stats.rows_read, 3);
    let paths: Vec<serde_json::Value> = read_jsonl(&out)
        .into_iter()
        .map(|r| r["path"].clone())
        .collect();
    assert_eq!(paths, ["a.md", "notes.rs", "sub/deep/c.md"]);

    // The TOML form: `include` without `extensions` lets the patterns alone choose.
    let host = host();
    let pipeline = |source_extra: &str| {
        format!(
            "[source]\nkind = \"dir\"\npath = \"docs\"\n{source_extra}[sink]\nkind = \"jsonl\"\npath = \"out.jsonl\"\n"
        )
    };
    let files_of = |source_extra: &str| -> Vec<String> {
        let spec =
            PipelineSpec::from_toml(&pipeline(source_extra), "p.toml", dir.path(), &host).unwrap();
        let files = spec.source.dir_files().unwrap().unwrap();
        files.into_iter().map(|f| f.0).collect()
    };
    assert_eq!(files_of("include = [\"*.rs\"]\n"), ["notes.rs"]);
    // An empty list is no filter: the default extensions still apply.
    assert_eq!(
        files_of("include = []\n"),
        [
            "a.md",
            "b.txt",
            "src/x.md",
            "sub/all.html",
            "sub/d.MD",
            "sub/deep/c.md"
        ]
    );
    // Without `include`, the default extensions apply, and `exclude` still prunes.
    assert_eq!(
        files_of("exclude = [\"sub\", \"src/**\"]\n"),
        ["a.md", "b.txt"]
    );

    for (extra, expected) in [
        (
            "include = [\"[a\"]\n",
            "p.toml:4:11: source.include: bad pattern `[a`: unclosed character class; missing ']'",
        ),
        (
            "exclude = [\"ok\", \"{a\"]\n",
            "p.toml:4:11: source.exclude: bad pattern `{a`: unclosed alternate group; missing '}' (maybe escape '{' with '[{]'?)",
        ),
    ] {
        assert_eq!(error_of(dir.path(), &host, &pipeline(extra)), expected);
    }
    std::fs::write(dir.path().join("in.jsonl"), "{\"a\": 1}\n").unwrap();
    assert_eq!(
        error_of(
            dir.path(),
            &host,
            "[source]\nkind = \"jsonl\"\npath = \"in.jsonl\"\nexclude = [\"x\"]\n[sink]\nkind = \"none\"\n"
        ),
        "p.toml:4:11: source.exclude: only for kind = \"dir\""
    );
    // The Rust API checks patterns when the pipeline is built.
    let bad = PipelineSpec::new(
        Source::Dir {
            path: docs,
            extensions: vec![],
            binary: false,
            include: vec![],
            exclude: vec!["a[".into()],
        },
        Sink::None,
    );
    assert_eq!(
        Pipeline::new(bad).err().unwrap().to_string(),
        "source.exclude: bad pattern `a[`: unclosed character class; missing ']'"
    );
}

#[test]
fn the_chain_schedule_runs_every_stage_per_worker_keeps_order_and_dead_letters() {
    // Batches of 50 rows: ids 60, 61 and 990 fall in batches 1 and 19.
    let (dir, rows, stats) = run_trap_pipeline("workers = 2\n", 50, "", &[60, 61, 990], &[1, 19]);
    assert_eq!(stats["outcome"], "completed");
    assert_eq!(stats["batches_read"], 20);
    assert_eq!(stats["failed_batches"], 2);
    assert_eq!(stats["rows_written"], 900);
    let stages = stats["stages"].as_array().unwrap();
    assert_eq!(
        stages
            .iter()
            .map(|s| s["workers"].clone())
            .collect::<Vec<_>>(),
        [2, 2, 2]
    );
    // Every batch goes through `pass`; the two failed ones stop at `picky`.
    assert_eq!(stages[0]["batches"], 20);
    assert_eq!(stages[1]["batches"], 20);
    assert_eq!(stages[1]["failures"], 2);
    assert_eq!(stages[2]["batches"], 18);
    assert_eq!(stages[2]["rows_in"], 900);
    let dead = read_jsonl(&dir.path().join("dead.jsonl"));
    assert_eq!(
        dead.iter()
            .map(|d| (d["seq"].clone(), d["stage"].clone()))
            .collect::<Vec<_>>(),
        [
            (serde_json::json!(1), serde_json::json!("picky")),
            (serde_json::json!(19), serde_json::json!("picky"))
        ]
    );
    // The dead letter holds the failed stage's input: the rows as `pass` left them.
    assert_eq!(dead[0]["rows"].as_array().unwrap()[..], rows[50..100]);
}

#[test]
fn chain_schedule_errors_point_at_the_field() {
    let dir = tempfile::tempdir().unwrap();
    write_stages(dir.path(), 0);
    write_rows(&dir.path().join("in.jsonl"), 10, &[]);
    let host = host();
    let rest = "[source]\nkind = \"jsonl\"\npath = \"in.jsonl\"\n\
                [[stage]]\nname = \"a\"\nmodule = \"identity.wasm\"\nfunction = \"run\"\n";
    let sink = "[sink]\nkind = \"none\"\n";
    assert_eq!(
        error_of(dir.path(), &host, &format!("workers = 0\n{rest}{sink}")),
        "p.toml:1:11: workers: must be at least 1"
    );
    assert_eq!(
        error_of(
            dir.path(),
            &host,
            &format!("workers = 2\n{rest}workers = 3\n{sink}")
        ),
        "p.toml:9:11: stage `a`: workers: not allowed with the pipeline-level `workers` \
         (the chain schedule runs every stage on each of those threads)"
    );
    assert_eq!(
        error_of(dir.path(), &host, &format!("workers = 2\n{rest}{sink}")),
        "ok"
    );
    // In code, too.
    let plugin = host
        .load_file(&dir.path().join("identity.wasm"), Policy::default())
        .unwrap();
    let spec = PipelineSpec::new(Source::Batches(id_batches(1, 1)), Sink::None)
        .stage("a", plugin, "run", 1)
        .chain(0);
    assert_eq!(
        Pipeline::new(spec).unwrap_err().to_string(),
        "workers: must be at least 1"
    );
}

#[test]
fn a_stage_module_can_be_a_repository_reference() {
    let dir = tempfile::tempdir().unwrap();
    write_stages(dir.path(), 0);
    let rows = write_rows(&dir.path().join("in.jsonl"), 30, &[]);
    let repo = wasmlink::repo::Repository::open(dir.path().join("repo"));
    for (file, version) in [("trap.wasm", "1.0.0"), ("identity.wasm", "1.2.0")] {
        repo.add(
            &dir.path().join(file),
            "ident",
            &version.parse().unwrap(),
            None,
        )
        .unwrap();
    }
    let pipeline = |module: &str| {
        format!(
            "repository = \"repo\"\n[source]\nkind = \"jsonl\"\npath = \"in.jsonl\"\n\
             [[stage]]\nname = \"a\"\nmodule = \"{module}\"\nfunction = \"run\"\n\
             [sink]\nkind = \"jsonl\"\npath = \"out.jsonl\"\n"
        )
    };
    let file = dir.path().join("p.toml");
    std::fs::write(&file, pipeline("ident@^1.1")).unwrap();
    let o = wasmlink(&["pipeline", "run", "--json", file.to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(read_jsonl(&dir.path().join("out.jsonl")), rows);

    let host = host();
    assert_eq!(
        error_of(dir.path(), &host, &pipeline("ident@^2")),
        "p.toml:7:10: stage `a`: module: plugin `ident@^2`: \
         no version of ident matches ^2 (available: 1.0.0, 1.2.0)"
    );
    assert_eq!(
        error_of(dir.path(), &host, &pipeline("gone@1")),
        "p.toml:7:10: stage `a`: module: plugin `gone@1`: no module named gone in the repository DIR/repo"
    );
    // A path that does not exist is still a missing file, not a reference.
    assert_eq!(
        error_of(dir.path(), &host, &pipeline("lib/ident.wasm")),
        "p.toml:7:10: stage `a`: module: `DIR/lib/ident.wasm` does not exist or is not a file"
    );
}
