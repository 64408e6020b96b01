//! Pipelines against hostile stages, files, checkpoints and numbers (issue 13): no panic loses
//! a batch, every number has a bound, a JSON Lines line has a bound, a checkpoint names only
//! files the run made, no temporary file is left behind, an output never replaces a link or a
//! device, and every error is one line of a kind a caller can match.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use arrow_array::{Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use wasmlink::pipeline::{
    MAX_BATCH_ROWS, MAX_LINE_BYTES, MAX_QUEUE_DEPTH, MAX_WORKERS, Outcome, Pipeline, PipelineError,
    PipelineSpec, RunOptions, Sink, Source, check_glob,
};
use wasmlink::policy::Policy;

use crate::pipeline::{
    host, id_batches, leftovers, read_jsonl, stage_wat, stats_of, wasmlink, write_rows,
    write_stages,
};

fn identity(host: &wasmlink::plugin::PluginHost) -> wasmlink::plugin::Plugin {
    host.load(
        "identity",
        stage_wat(0, false).as_bytes(),
        Policy::default(),
    )
    .unwrap()
}

/// The ids of `batches` of `rows` rows (see `id_batches`) except those of the batches in
/// `lost`.
fn ids_except(batches: usize, rows: usize, lost: &[usize]) -> Vec<i64> {
    (0..batches)
        .filter(|b| !lost.contains(b))
        .flat_map(|b| (b * rows..(b + 1) * rows).map(|i| i as i64))
        .collect()
}

fn ids_of(path: &Path) -> Vec<i64> {
    read_jsonl(path)
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect()
}

// ---- 1. No panic can lose data ----------------------------------------------------------

/// Runs 10 batches of 5 rows through `stages` identity stages (per-stage schedule with 2
/// workers each, or the chain schedule with 2 workers) whose host-side handling panics for
/// the batches in `panic_at` in the last stage; checks that exactly those batches are dead
/// letters, every other row is written in order, and the run reports it.
fn run_with_panics(chain: bool, stages: usize, panic_at: &'static [u64]) {
    let dir = tempfile::tempdir().unwrap();
    let host = host();
    let out = dir.path().join("out.jsonl");
    let dead = dir.path().join("dead.jsonl");
    let mut spec = PipelineSpec::new(
        Source::Batches(id_batches(10, 5)),
        Sink::JsonLines(out.clone()),
    );
    for i in 0..stages {
        spec = spec.stage(&format!("s{i}"), identity(&host), "run", 2);
    }
    if chain {
        spec = spec.chain(2);
    }
    spec.batch_rows = 5;
    spec.dead_letter = Some(dead.clone());
    let last = format!("s{}", stages - 1);
    let pipeline = Pipeline::new(spec).unwrap().on_call(move |stage, seq, _| {
        if stage == last && panic_at.contains(&seq) {
            panic!("injected fault in batch {seq}");
        }
    });
    let stats = pipeline.run(&RunOptions::default()).unwrap();
    let lost: Vec<usize> = panic_at.iter().map(|&s| s as usize).collect();
    assert_eq!(stats.outcome, Outcome::Completed);
    assert_eq!(stats.batches_read, 10);
    assert_eq!(stats.failed_batches, panic_at.len() as u64);
    assert_eq!(stats.failed_rows, 5 * panic_at.len() as u64);
    assert_eq!(stats.rows_written, 50 - 5 * panic_at.len() as u64);
    assert_eq!(stats.stages[stages - 1].failures, panic_at.len() as u64);
    assert_eq!(ids_of(&out), ids_except(10, 5, &lost));
    let letters = read_jsonl(&dead);
    let seqs: Vec<u64> = letters.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, panic_at);
    for l in &letters {
        let seq = l["seq"].as_u64().unwrap();
        assert_eq!(
            l["error"],
            format!("the host panicked handling the call: injected fault in batch {seq}")
        );
        assert_eq!(l["stage"], format!("s{}", stages - 1));
        assert_eq!(l["rows"].as_array().unwrap().len(), 5);
    }
    assert!(leftovers(dir.path()).is_empty());
}

#[test]
fn a_panic_in_a_stage_call_makes_its_batch_a_dead_letter_per_stage_schedule() {
    run_with_panics(false, 2, &[3, 7]);
}

#[test]
fn a_panic_in_a_stage_call_makes_its_batch_a_dead_letter_chain_schedule() {
    run_with_panics(true, 2, &[0, 9]);
}

#[test]
fn a_stage_that_panics_on_every_batch_loses_nothing_and_does_not_report_rows_written() {
    run_with_panics(false, 1, &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
}

// ---- 2. Crafted Arrow IPC source files --------------------------------------------------

/// An Arrow IPC stream (or, with `file`, an Arrow IPC file) of three batches of one Int64
/// column `x` (4 rows each) whose last batch's values buffer starts 1 MiB past the end of its
/// message body.
fn crafted_ipc(file: bool) -> Vec<u8> {
    let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, false)]));
    let batches: Vec<RecordBatch> = (0..3i64)
        .map(|b| {
            RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(Int64Array::from(vec![b, b, b, b]))],
            )
            .unwrap()
        })
        .collect();
    let mut bytes = if file {
        let mut w = arrow_ipc::writer::FileWriter::try_new(Vec::new(), &schema).unwrap();
        for b in &batches {
            w.write(b).unwrap();
        }
        w.finish().unwrap();
        w.into_inner().unwrap()
    } else {
        let mut w = arrow_ipc::writer::StreamWriter::try_new(Vec::new(), &schema).unwrap();
        for b in &batches {
            w.write(b).unwrap();
        }
        w.finish().unwrap();
        w.into_inner().unwrap()
    };
    // A flatbuffer `Buffer { offset: 0, length: 32 }`: the 4 values.
    let mut pattern = 0i64.to_le_bytes().to_vec();
    pattern.extend_from_slice(&32i64.to_le_bytes());
    let at = bytes
        .windows(16)
        .rposition(|w| w == pattern.as_slice())
        .expect("the values buffer of the last batch");
    bytes[at..at + 8].copy_from_slice(&(1i64 << 20).to_le_bytes());
    bytes
}

#[test]
fn a_crafted_arrow_ipc_source_file_is_a_one_line_source_error_and_leaves_no_files() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("in.arrow");
    std::fs::write(&src, crafted_ipc(true)).unwrap();
    let mut spec = PipelineSpec::new(
        Source::Arrow { path: src.clone() },
        Sink::JsonLines(dir.path().join("out.jsonl")),
    );
    spec.batch_rows = 4;
    let e = Pipeline::new(spec)
        .unwrap()
        .run(&RunOptions::default())
        .unwrap_err();
    let text = e.to_string();
    assert!(matches!(&e, PipelineError::Source { .. }), "{e:?}");
    // Checked before arrow slices the buffer: a validation error, not a caught panic.
    assert!(
        text.starts_with(&format!("{}: ", src.display()))
            && text.contains("Arrow IPC")
            && !text.contains("panic")
            && !text.contains("bad Arrow IPC data")
            && !text.contains('\n'),
        "{text}"
    );
    assert_eq!(leftovers(dir.path()), Vec::<String>::new());
}

#[test]
fn a_crafted_arrow_ipc_source_stream_is_a_one_line_source_error_and_leaves_no_files() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("in.arrow");
    std::fs::write(&src, crafted_ipc(false)).unwrap();
    let out = dir.path().join("out.jsonl");
    let mut spec = PipelineSpec::new(
        Source::Arrow { path: src.clone() },
        Sink::JsonLines(out.clone()),
    );
    spec.batch_rows = 4;
    let e = Pipeline::new(spec)
        .unwrap()
        .run(&RunOptions::default())
        .unwrap_err();
    let text = e.to_string();
    assert!(
        matches!(&e, PipelineError::Source { path, .. } if *path == src),
        "{e:?}"
    );
    assert!(
        text.starts_with(&format!("{}: ", src.display())) && !text.contains('\n'),
        "{text}"
    );
    assert!(
        text.contains("Arrow IPC")
            && !text.contains("panic")
            && !text.contains("bad Arrow IPC data"),
        "{text}"
    );
    // A fatal source error leaves neither temporary files nor a checkpoint (a resume would
    // meet the same bad data), and no output.
    assert!(!out.exists());
    assert_eq!(leftovers(dir.path()), Vec::<String>::new());

    // Through the CLI: one line, exit status 2.
    let p = dir.path().join("p.toml");
    std::fs::write(
        &p,
        "[source]\nkind = \"arrow\"\npath = \"in.arrow\"\nbatch-rows = 4\n[sink]\nkind = \"jsonl\"\npath = \"out.jsonl\"\n",
    )
    .unwrap();
    let o = wasmlink(&["pipeline", "run", "--no-progress", p.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("in.arrow: "), "{stderr}");
    assert_eq!(leftovers(dir.path()), Vec::<String>::new());
}

// ---- 10. Every number has a bound --------------------------------------------------------

#[test]
fn every_number_of_a_pipeline_file_has_a_bound_checked_up_front() {
    let dir = tempfile::tempdir().unwrap();
    write_stages(dir.path(), 0);
    write_rows(&dir.path().join("in.jsonl"), 10, &[]);
    let host = host();
    let source = "[source]\nkind = \"jsonl\"\npath = \"in.jsonl\"\n";
    let sink = "[sink]\nkind = \"jsonl\"\npath = \"out.jsonl\"\n";
    let stage = "[[stage]]\nname = \"a\"\nmodule = \"identity.wasm\"\nfunction = \"run\"\n";
    let cases: Vec<(String, String, &str)> = vec![
        (
            format!("{source}batch-rows = 1000000000\n{sink}"),
            format!("p.toml:4:14: source.batch-rows: must be at most {MAX_BATCH_ROWS}"),
            "source.batch-rows",
        ),
        (
            format!("queue-depth = 1000000000\n{source}{sink}"),
            format!("p.toml:1:15: queue-depth: must be at most {MAX_QUEUE_DEPTH}"),
            "queue-depth",
        ),
        (
            format!("workers = 100000\n{source}{stage}{sink}"),
            format!("p.toml:1:11: workers: must be at most {MAX_WORKERS}"),
            "workers",
        ),
        (
            format!("{source}{stage}workers = 100000\n{sink}"),
            format!("p.toml:8:11: stage `a`: workers: must be at most {MAX_WORKERS}"),
            "workers",
        ),
        (
            format!(
                "{source}{stage}workers = 200\n{}workers = 200\n{sink}",
                stage.replace("\"a\"", "\"b\"")
            ),
            format!(
                "p.toml:13:11: stage `b`: workers: the stages' workers add up to 400, over the \
                 limit of {MAX_WORKERS} threads"
            ),
            "workers",
        ),
        (
            format!(
                "{source}[sink]\nkind = \"parquet\"\npath = \"o.parquet\"\nrow-group-rows = 100000000000\n"
            ),
            "p.toml:7:18: sink.row-group-rows: must be at most 67108864".into(),
            "sink.row-group-rows",
        ),
    ];
    for (text, expected, field) in &cases {
        let e = PipelineSpec::from_toml(text, "p.toml", dir.path(), &host).unwrap_err();
        assert_eq!(e.to_string(), *expected, "file:\n{text}");
        assert!(
            matches!(&e, PipelineError::Config { field: Some(f), .. } if f == field),
            "{e:?}"
        );
    }

    // Through the CLI: at once, exit status 2 (before the fix: 134 or 101).
    let p = dir.path().join("p.toml");
    std::fs::write(&p, format!("queue-depth = 1000000000\n{source}{sink}")).unwrap();
    let started = Instant::now();
    let o = wasmlink(&["pipeline", "run", p.to_str().unwrap()]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn pipeline_new_bounds_the_numbers_of_a_spec_built_in_code() {
    let host = host();
    let base = || {
        PipelineSpec::new(Source::Batches(id_batches(1, 1)), Sink::None).stage(
            "a",
            identity(&host),
            "run",
            1,
        )
    };
    let mut cases: Vec<(PipelineSpec, String)> = Vec::new();
    let mut s = base();
    s.batch_rows = usize::MAX;
    cases.push((s, format!("batch-rows: must be at most {MAX_BATCH_ROWS}")));
    let mut s = base();
    s.queue_depth = usize::MAX;
    cases.push((s, format!("queue-depth: must be at most {MAX_QUEUE_DEPTH}")));
    cases.push((
        base().chain(100_000),
        format!("workers: must be at most {MAX_WORKERS}"),
    ));
    let mut s = base();
    s.stages[0].workers = 100_000;
    cases.push((
        s,
        format!("stage `a`: workers: must be at most {MAX_WORKERS}"),
    ));
    let mut s = base();
    s.batch_rows = 0;
    cases.push((s, "batch-rows: must be at least 1".into()));
    for (spec, expected) in cases {
        let e = Pipeline::new(spec).unwrap_err();
        assert_eq!(e.to_string(), expected);
        assert!(matches!(e, PipelineError::Spec { .. }), "{e:?}");
    }
}

// ---- 12. JSON Lines: a bounded line, the real line number --------------------------------

#[cfg(unix)]
#[test]
fn a_json_lines_source_without_newlines_is_an_error_at_the_line_limit_not_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let spec = PipelineSpec::new(
        Source::JsonLines {
            path: PathBuf::from("/dev/zero"),
        },
        Sink::JsonLines(dir.path().join("out.jsonl")),
    );
    let started = Instant::now();
    let e = Pipeline::new(spec)
        .unwrap()
        .run(&RunOptions::default())
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(60));
    assert_eq!(
        e.to_string(),
        format!(
            "/dev/zero:1: line longer than {MAX_LINE_BYTES} bytes (the limit of a JSON Lines \
             source; is it JSON Lines?)"
        )
    );
    assert!(
        matches!(e, PipelineError::Source { line: Some(1), .. }),
        "{e:?}"
    );
    assert_eq!(leftovers(dir.path()), Vec::<String>::new());
}

#[cfg(unix)]
#[test]
fn a_csv_source_without_newlines_is_an_error_at_the_line_limit_not_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let spec = PipelineSpec::new(
        Source::Csv {
            path: PathBuf::from("/dev/zero"),
        },
        Sink::None,
    );
    let e = Pipeline::new(spec)
        .unwrap()
        .run(&RunOptions::default())
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "/dev/zero:1: line longer than {MAX_LINE_BYTES} bytes (the limit of a CSV source; \
             is it CSV?)"
        )
    );
    assert_eq!(leftovers(dir.path()), Vec::<String>::new());
}

#[test]
fn a_json_lines_parse_error_names_the_real_line() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("in.jsonl");
    std::fs::write(&src, "{\"a\":1}\n\n{\"a\":2}\n{\"a\": tru}\n{\"a\":3}\n").unwrap();
    let spec = PipelineSpec::new(
        Source::JsonLines { path: src.clone() },
        Sink::JsonLines(dir.path().join("out.jsonl")),
    );
    let e = Pipeline::new(spec)
        .unwrap()
        .run(&RunOptions::default())
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}:4: not valid JSON: expected ident at column 10",
            src.display()
        )
    );
    assert!(
        matches!(e, PipelineError::Source { line: Some(4), .. }),
        "{e:?}"
    );
    // A record that is not an object: its line too.
    std::fs::write(&src, "{\"a\":1}\n[1, 2]\n").unwrap();
    let spec = PipelineSpec::new(
        Source::JsonLines { path: src.clone() },
        Sink::JsonLines(dir.path().join("out.jsonl")),
    );
    let e = Pipeline::new(spec)
        .unwrap()
        .run(&RunOptions::default())
        .unwrap_err();
    assert!(
        e.to_string().starts_with(&format!("{}:2: ", src.display())),
        "{e}"
    );
}

// ---- 3. A checkpoint names only the run's own files --------------------------------------

/// A pipeline of 6 batches of 5 rows into `out.jsonl` (with a dead-letter file).
fn small_pipeline(dir: &Path, host: &wasmlink::plugin::PluginHost) -> Pipeline {
    let mut spec = PipelineSpec::new(
        Source::Batches(id_batches(6, 5)),
        Sink::JsonLines(dir.join("out.jsonl")),
    )
    .stage("a", identity(host), "run", 1);
    spec.batch_rows = 5;
    spec.dead_letter = Some(dir.join("dead.jsonl"));
    Pipeline::new(spec).unwrap()
}

fn resume() -> RunOptions {
    RunOptions {
        resume: true,
        ..RunOptions::default()
    }
}

#[cfg(unix)]
#[test]
fn resume_refuses_a_checkpoint_that_names_files_the_run_did_not_make() {
    let dir = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    let host = host();
    let pipeline = small_pipeline(dir.path(), &host);
    // An interrupted run (cancelled before its first batch) leaves a checkpoint.
    let stats = pipeline
        .run(&RunOptions {
            cancel: Some(Arc::new(AtomicBool::new(true))),
            ..RunOptions::default()
        })
        .unwrap();
    assert_eq!(stats.outcome, Outcome::Interrupted);
    let progress = dir.path().join("out.jsonl.progress");
    let original: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&progress).unwrap()).unwrap();

    let victim = dir.path().join("victim.txt");
    let far_victim = other.path().join("out.jsonl.tmp-1");
    let link = dir.path().join(format!("out.jsonl.tmp-{}", dead_pid()));
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let path_of = |p: &Path| serde_json::Value::from(p.to_str().unwrap());
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new({
                let v = path_of(&victim);
                move |c| c["output_tmp"] = v.clone()
            }),
            "not a temporary file of",
        ),
        (
            Box::new({
                let v = path_of(&far_victim);
                move |c| c["output_tmp"] = v.clone()
            }),
            "not a temporary file of",
        ),
        (
            Box::new({
                let v = path_of(&link);
                move |c| c["output_tmp"] = v.clone()
            }),
            "which is a symbolic link",
        ),
        (
            Box::new({
                let v = path_of(&victim);
                move |c| c["dead_tmp"] = v.clone()
            }),
            "not a temporary file of",
        ),
        (
            Box::new(|c| c["output_tmp"] = serde_json::Value::Null),
            "`output_tmp` is missing",
        ),
        (
            Box::new(|c| c["next_seq"] = 3.into()),
            "`next_seq` (3) is not the batches written",
        ),
        (
            Box::new(|c| c["parquet_footer"] = "UEFSMQ==".into()),
            "`parquet_footer` is set",
        ),
        (
            Box::new(|c| c["fingerprint"] = "0".into()),
            "the checkpoint is of a different pipeline",
        ),
    ];
    for (edit, expected) in &cases {
        std::fs::write(&victim, "precious").unwrap();
        std::fs::write(&far_victim, "precious").unwrap();
        let mut cp = original.clone();
        edit(&mut cp);
        std::fs::write(&progress, cp.to_string()).unwrap();
        let e = pipeline.run(&resume()).unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, PipelineError::Checkpoint { .. }), "{e:?}");
        assert!(text.contains(expected), "expected `{expected}` in: {text}");
        assert!(!text.contains('\n'), "{text}");
        assert!(
            text.ends_with("run without --resume to start over"),
            "{text}"
        );
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        assert_eq!(std::fs::read_to_string(&far_victim).unwrap(), "precious");
        assert!(!dir.path().join("out.jsonl").exists());
    }
    // A checkpoint that is a symbolic link is not read.
    std::fs::remove_file(&progress).unwrap();
    let elsewhere = other.path().join("cp.json");
    std::fs::write(&elsewhere, original.to_string()).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &progress).unwrap();
    let e = pipeline.run(&resume()).unwrap_err();
    assert!(
        e.to_string()
            .contains("not a pipeline checkpoint: it is a symbolic link"),
        "{e}"
    );
    // The untouched checkpoint still resumes, to the full output.
    std::fs::remove_file(&progress).unwrap();
    std::fs::write(&progress, original.to_string()).unwrap();
    let stats = pipeline.run(&resume()).unwrap();
    assert_eq!(stats.outcome, Outcome::Completed);
    assert_eq!(ids_of(&dir.path().join("out.jsonl")), ids_except(6, 5, &[]));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    // A fresh run removed the stale link named like a temporary file; nothing is left over.
    assert_eq!(leftovers(dir.path()), Vec::<String>::new());
}

/// The deterministic counterpart of a checkpoint fuzzer: every truncation of a real
/// checkpoint, and every byte of it replaced by a digit, a quote or a letter, given to
/// `--resume`: never a panic, a one-line error or the full, correct output, and a file the run
/// did not make is never touched.
#[cfg(unix)]
#[test]
fn resume_survives_every_truncation_and_mutation_of_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let host = host();
    let pipeline = small_pipeline(dir.path(), &host);
    let interrupt = || {
        let stats = pipeline
            .run(&RunOptions {
                cancel: Some(Arc::new(AtomicBool::new(true))),
                ..RunOptions::default()
            })
            .unwrap();
        assert_eq!(stats.outcome, Outcome::Interrupted);
    };
    interrupt();
    let progress = dir.path().join("out.jsonl.progress");
    let original = std::fs::read(&progress).unwrap();
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, "precious").unwrap();
    let mut cases: Vec<Vec<u8>> = (0..original.len())
        .map(|n| original[..n].to_vec())
        .collect();
    for i in 0..original.len() {
        for b in [b'0', b'"', b'x'] {
            let mut c = original.clone();
            c[i] = b;
            cases.push(c);
        }
    }
    let (mut refused, mut resumed) = (0, 0);
    for case in &cases {
        let _ = std::fs::remove_file(&progress);
        std::fs::write(&progress, case).unwrap();
        let run =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| pipeline.run(&resume())));
        let run = run
            .unwrap_or_else(|_| panic!("--resume panicked on {}", String::from_utf8_lossy(case)));
        match run {
            Ok(stats) => {
                assert_eq!(stats.outcome, Outcome::Completed);
                assert_eq!(ids_of(&dir.path().join("out.jsonl")), ids_except(6, 5, &[]));
                resumed += 1;
                std::fs::remove_file(dir.path().join("out.jsonl")).unwrap();
                interrupt();
            }
            Err(e) => {
                assert!(!e.to_string().contains('\n'), "{e}");
                refused += 1;
            }
        }
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    }
    assert!(
        refused > 0 && resumed > 0,
        "refused {refused}, resumed {resumed}"
    );
}

// ---- 13. No temporary file is left behind; outputs replace only regular files -----------

/// The pid of a process that has exited.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

#[test]
fn temporary_files_of_a_dead_run_are_removed_by_the_next_run_fresh_or_resumed() {
    let dir = tempfile::tempdir().unwrap();
    let host = host();
    let pipeline = small_pipeline(dir.path(), &host);
    for options in [RunOptions::default(), resume()] {
        // What a run killed before its first checkpoint leaves: temporary files, no checkpoint.
        let pid = dead_pid();
        for name in [
            format!("out.jsonl.tmp-{pid}"),
            format!("dead.jsonl.tmp-{pid}"),
            format!("out.jsonl.progress.tmp-{pid}"),
        ] {
            std::fs::write(dir.path().join(name), "partial").unwrap();
        }
        // Look-alikes that are not a run's temporary files stay.
        std::fs::write(dir.path().join("out.jsonl.tmp-notes"), "mine").unwrap();
        let stats = pipeline.run(&options).unwrap();
        assert_eq!(stats.outcome, Outcome::Completed);
        assert_eq!(
            leftovers(dir.path()),
            vec!["out.jsonl.tmp-notes".to_string()]
        );
        std::fs::remove_file(dir.path().join("out.jsonl.tmp-notes")).unwrap();
    }
}

#[test]
fn a_fatal_source_error_leaves_no_temporary_files_or_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("in.jsonl");
    std::fs::write(&src, "{\"a\":1}\nnot json\n").unwrap();
    let mut spec = PipelineSpec::new(
        Source::JsonLines { path: src },
        Sink::JsonLines(dir.path().join("out.jsonl")),
    );
    spec.dead_letter = Some(dir.path().join("dead.jsonl"));
    let e = Pipeline::new(spec)
        .unwrap()
        .run(&RunOptions::default())
        .unwrap_err();
    assert!(
        matches!(e, PipelineError::Source { line: Some(2), .. }),
        "{e:?}"
    );
    assert_eq!(leftovers(dir.path()), Vec::<String>::new());
}

#[cfg(unix)]
#[test]
fn an_output_never_replaces_a_symbolic_link_or_a_device() {
    let dir = tempfile::tempdir().unwrap();
    let host = host();
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, "precious").unwrap();
    let link = dir.path().join("out.jsonl");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let run = |sink: PathBuf, dead: Option<PathBuf>| {
        let mut spec = PipelineSpec::new(Source::Batches(id_batches(2, 5)), Sink::JsonLines(sink))
            .stage("a", identity(&host), "run", 1);
        spec.dead_letter = dead;
        Pipeline::new(spec)
            .unwrap()
            .run(&RunOptions::default())
            .unwrap_err()
    };
    let e = run(link.clone(), None);
    assert_eq!(
        e.to_string(),
        format!(
            "{}: is a symbolic link; an output replaces only a regular file (remove it or \
             choose another path)",
            link.display()
        )
    );
    assert!(matches!(e, PipelineError::Sink { .. }), "{e:?}");
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");

    let e = run(dir.path().join("ok.jsonl"), Some(link.clone()));
    assert!(e.to_string().contains("is a symbolic link"), "{e}");

    let e = run(PathBuf::from("/dev/null"), None);
    assert!(e.to_string().starts_with("/dev/null: is a device;"), "{e}");
    assert_eq!(leftovers(dir.path()), Vec::<String>::new());
}

#[cfg(unix)]
#[test]
fn outputs_are_written_with_the_users_umask() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    write_stages(dir.path(), 0);
    write_rows(&dir.path().join("in.jsonl"), 10, &[]);
    let p = dir.path().join("p.toml");
    std::fs::write(
        &p,
        "dead-letter = \"dead.jsonl\"\n[source]\nkind = \"jsonl\"\npath = \"in.jsonl\"\n\
         [[stage]]\nname = \"a\"\nmodule = \"identity.wasm\"\nfunction = \"run\"\n\
         [sink]\nkind = \"jsonl\"\npath = \"out.jsonl\"\n",
    )
    .unwrap();
    for (umask, mode) in [("022", 0o644), ("077", 0o600), ("002", 0o664)] {
        let o = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!(
                "umask {umask} && exec \"$0\" pipeline run --json --no-progress \"$1\""
            ))
            .arg(env!("CARGO_BIN_EXE_wasmlink"))
            .arg(&p)
            .output()
            .unwrap();
        assert_eq!(stats_of(&o)["outcome"], "completed");
        for f in ["out.jsonl", "dead.jsonl"] {
            let m = std::fs::metadata(dir.path().join(f)).unwrap();
            assert_eq!(
                m.permissions().mode() & 0o777,
                mode,
                "{f} under umask {umask}"
            );
        }
    }
}

// ---- Typed errors -------------------------------------------------------------------------

#[test]
fn errors_are_kinds_a_caller_can_match() {
    let dir = tempfile::tempdir().unwrap();
    write_stages(dir.path(), 0);
    write_rows(&dir.path().join("in.jsonl"), 10, &[]);
    let host = host();
    let e = PipelineSpec::from_toml(
        "[source]\nkind = \"jsonl\"\npath = \"in.jsonl\"\nbatch-rows = 0\n[sink]\nkind = \"none\"\n",
        "p.toml",
        dir.path(),
        &host,
    )
    .unwrap_err();
    assert_eq!(
        e,
        PipelineError::Config {
            file: "p.toml".into(),
            line: 4,
            col: 14,
            stage: None,
            field: Some("source.batch-rows".into()),
            message: "must be at least 1".into(),
        }
    );
    let e = PipelineSpec::from_toml(
        "[source]\nkind = \"jsonl\"\npath = \"in.jsonl\"\n[[stage]]\nname = \"a\"\nmodule = \"identity.wasm\"\nfunction = \"nope\"\n[sink]\nkind = \"none\"\n",
        "p.toml",
        dir.path(),
        &host,
    )
    .unwrap_err();
    assert!(
        matches!(&e, PipelineError::Config { stage: Some(s), field: Some(f), line: 7, .. } if s == "a" && f == "function"),
        "{e:?}"
    );
    let e = PipelineSpec::from_file(&dir.path().join("missing.toml"), &host).unwrap_err();
    assert!(matches!(e, PipelineError::Io { .. }), "{e:?}");
    let g = check_glob("[a").unwrap_err();
    assert_eq!(g.pattern, "[a");
    assert_eq!(g.to_string(), "unclosed character class; missing ']'");
    let spec = PipelineSpec::new(
        Source::Csv {
            path: dir.path().join("none.csv"),
        },
        Sink::None,
    );
    let e = Pipeline::new(spec)
        .unwrap()
        .run(&RunOptions::default())
        .unwrap_err();
    assert!(matches!(e, PipelineError::Io { .. }), "{e:?}");
}
