//! Stage instances recycled between batches (issue 18 item 6): a worker replaces its instance
//! of a stage once the instance's linear memory has grown past the stage's `recycle-above`
//! (by default max(16 MiB, 4 x the largest input batch, 2 x its memory after its first
//! call)), without losing or repeating a batch.

use std::path::Path;

use wasmlink::pipeline::{Outcome, Pipeline, PipelineSpec, RunOptions, RunStats};

use crate::pipeline::{host, read_jsonl, wasmlink, write_rows};

/// An ABI v1 identity stage whose `run` also grows its memory by `pages` 64 KiB pages on every
/// call and never gives them back (as a guest allocator that keeps its high-water mark does).
fn growing_wat(pages: u32) -> String {
    format!(
        r#"(module
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 1024))
  (func $alloc (export "wasmlink_alloc") (param $size i32) (param $align i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (block $ok
      (loop $grow
        (br_if $ok (i32.le_u (i32.add (local.get $p) (local.get $size))
                             (i32.mul (memory.size) (i32.const 65536))))
        (if (i32.eq (memory.grow (i32.const 1)) (i32.const -1)) (then (return (i32.const 0))))
        (br $grow)))
    (global.set $heap (i32.add (local.get $p) (local.get $size)))
    (local.get $p))
  (func (export "wasmlink_free") (param $ptr i32) (param $size i32) (param $align i32)
    (if (i32.eq (i32.add (local.get $ptr) (local.get $size)) (global.get $heap))
      (then (global.set $heap (local.get $ptr)))))
  (func (export "run") (param $ptr i32) (param $len i32) (result i32)
    (local $out i32)
    (if (i32.eq (memory.grow (i32.const {pages})) (i32.const -1)) (then unreachable))
    (local.set $out (call $alloc (local.get $len) (i32.const 1)))
    (memory.copy (local.get $out) (local.get $ptr) (local.get $len))
    (i32.store (i32.const 16) (i32.const 0))
    (i32.store (i32.const 20) (local.get $out))
    (i32.store (i32.const 24) (local.get $len))
    (i32.store (i32.const 28) (local.get $len))
    (i32.const 16)))"#
    )
}

/// `in.jsonl` (40 rows) and the growing stages: grow2.wasm (2 MiB a call), grow8.wasm (8 MiB).
fn setup(dir: &Path) -> Vec<serde_json::Value> {
    for (name, pages) in [("grow2.wasm", 32), ("grow8.wasm", 128)] {
        std::fs::write(dir.join(name), wat::parse_str(growing_wat(pages)).unwrap()).unwrap();
    }
    write_rows(&dir.join("in.jsonl"), 40, &[])
}

/// A pipeline of `stage_extra` over in.jsonl (batches of 4 rows: 10 batches) into `out`.
fn pipeline(module: &str, out: &str, top: &str, stage_extra: &str) -> String {
    format!(
        "{top}[source]\nkind = \"jsonl\"\npath = \"in.jsonl\"\nbatch-rows = 4\n\
         [[stage]]\nname = \"grow\"\nmodule = \"{module}\"\nfunction = \"run\"\n{stage_extra}\
         [sink]\nkind = \"jsonl\"\npath = \"{out}\"\n"
    )
}

fn run(dir: &Path, text: &str) -> RunStats {
    let spec = PipelineSpec::from_toml(text, "p.toml", dir, &host()).unwrap();
    let stats = Pipeline::new(spec)
        .unwrap()
        .run(&RunOptions::default())
        .unwrap();
    assert_eq!(stats.outcome, Outcome::Completed);
    assert_eq!(stats.failed_batches, 0);
    stats
}

#[test]
fn a_stage_whose_memory_grows_each_call_is_recycled_and_the_output_is_complete() {
    let dir = tempfile::tempdir().unwrap();
    let rows = setup(dir.path());

    // One worker, 10 batches, 2 MiB more per call, bound 4 MiB: the instance passes the bound
    // on its 2nd call (4 MiB + the initial 128 KiB), so every 2nd call recycles it.
    let kept = run(
        dir.path(),
        &pipeline("grow2.wasm", "kept.jsonl", "", "recycle-above = \"none\"\n"),
    );
    let recycled = run(
        dir.path(),
        &pipeline(
            "grow2.wasm",
            "recycled.jsonl",
            "",
            "recycle-above = \"4MiB\"\n",
        ),
    );
    assert_eq!(kept.stages[0].recycled, 0);
    assert_eq!(recycled.stages[0].recycled, 5);
    assert_eq!(recycled.stages[0].batches, 10);
    let kept_rows = read_jsonl(&dir.path().join("kept.jsonl"));
    assert_eq!(kept_rows, rows);
    assert_eq!(read_jsonl(&dir.path().join("recycled.jsonl")), kept_rows);

    // Two workers (stage schedule) and the chain schedule: each worker recycles on its own
    // every 2nd call; every row is written once, in order.
    for (name, top, extra) in [
        ("stages.jsonl", "", "workers = 2\nrecycle-above = 4194304\n"),
        (
            "chain.jsonl",
            "workers = 2\n",
            "recycle-above = \"4 MiB\"\n",
        ),
    ] {
        let s = run(dir.path(), &pipeline("grow2.wasm", name, top, extra));
        let n = s.stages[0].recycled;
        assert!((4..=5).contains(&n), "{name}: {n} recycled");
        assert_eq!(read_jsonl(&dir.path().join(name)), rows, "{name}");
    }

    // Shown in `pipeline run --json`.
    std::fs::write(
        dir.path().join("p.toml"),
        pipeline("grow2.wasm", "cli.jsonl", "", "recycle-above = \"4MiB\"\n"),
    )
    .unwrap();
    let o = wasmlink(&[
        "pipeline",
        "run",
        "--json",
        dir.path().join("p.toml").to_str().unwrap(),
    ]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let stats: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(stats["stages"][0]["recycled"], 5, "{stats}");
    assert_eq!(read_jsonl(&dir.path().join("cli.jsonl")), rows);
}

#[test]
fn by_default_an_instance_is_recycled_past_16_mib_or_twice_its_first_call() {
    let dir = tempfile::tempdir().unwrap();
    let rows = setup(dir.path());
    // The default bound: max(16 MiB, 4 x the largest batch in (a few KiB here), 2 x the memory
    // after the instance's first call). 2 MiB more per call: 2.125 MiB after the first call,
    // so the 16 MiB floor decides; past it on the 8th call (16.125 MiB); 10 batches: 1 recycle.
    let s = run(dir.path(), &pipeline("grow2.wasm", "out2.jsonl", "", ""));
    assert_eq!(s.stages[0].recycled, 1);
    assert_eq!(read_jsonl(&dir.path().join("out2.jsonl")), rows);
    // 8 MiB more per call: 8.125 MiB after the first call, bound 16.25 MiB; the 3rd call
    // (24.125 MiB) passes it, so every 3rd call recycles: 3 in 10 batches.
    let s = run(dir.path(), &pipeline("grow8.wasm", "out8.jsonl", "", ""));
    assert_eq!(s.stages[0].recycled, 3);
    assert_eq!(read_jsonl(&dir.path().join("out8.jsonl")), rows);
    // A stage that keeps state opts out.
    let s = run(
        dir.path(),
        &pipeline("grow8.wasm", "none.jsonl", "", "recycle-above = \"NONE\"\n"),
    );
    assert_eq!(s.stages[0].recycled, 0);
    assert_eq!(read_jsonl(&dir.path().join("none.jsonl")), rows);
}

#[test]
fn a_bad_recycle_above_is_one_line_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let host = host();
    let hint = "expected a size of at least 1MiB such as \"256MiB\", or \"none\" for a stage \
                that keeps state between batches";
    for (value, expected) in [
        (
            "0",
            format!("p.toml:9:17: stage `grow`: recycle-above: 0 bytes is too small; {hint}"),
        ),
        (
            "\"512KiB\"",
            format!("p.toml:9:17: stage `grow`: recycle-above: 524288 bytes is too small; {hint}"),
        ),
        (
            "-5",
            format!("p.toml:9:17: stage `grow`: recycle-above: -5 is negative; {hint}"),
        ),
        (
            "true",
            format!("p.toml:9:17: stage `grow`: recycle-above: `true` is not a size; {hint}"),
        ),
    ] {
        let text = pipeline(
            "grow2.wasm",
            "out.jsonl",
            "",
            &format!("recycle-above = {value}\n"),
        );
        let got = PipelineSpec::from_toml(&text, "p.toml", dir.path(), &host)
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert_eq!(got, expected, "{value}");
    }
    // A unit that is not one: the size parser's message, then the hint.
    let text = pipeline("grow2.wasm", "out.jsonl", "", "recycle-above = \"lots\"\n");
    let got = PipelineSpec::from_toml(&text, "p.toml", dir.path(), &host)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(!got.contains('\n'), "{got}");
    assert!(
        got.starts_with("p.toml:9:17: stage `grow`: recycle-above: ") && got.ends_with(hint),
        "{got}"
    );
    // Through the CLI: `wasmlink: ` and exit status 2, nothing written.
    std::fs::write(
        dir.path().join("bad.toml"),
        pipeline("grow2.wasm", "out.jsonl", "", "recycle-above = 0\n"),
    )
    .unwrap();
    let o = wasmlink(&[
        "pipeline",
        "run",
        dir.path().join("bad.toml").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.starts_with("wasmlink: ")
            && err.contains(":9:17: stage `grow`: recycle-above: 0 bytes")
            && err.lines().count() == 1,
        "{err}"
    );
    assert!(!dir.path().join("out.jsonl").exists());
}

/// `Stage::call_once`, as `wasmlink serve` calls a stage for each client batch: the pooled
/// instance is dropped once its memory passes the stage's bound, so a long stream cannot grow
/// the pool's memory without limit (issue 19: serve's memory grew with the data sent).
#[test]
fn a_pooled_stage_called_once_per_batch_is_held_to_its_recycle_bound() {
    use std::sync::Arc;

    use arrow_array::{Int64Array, RecordBatch};

    let dir = tempfile::tempdir().unwrap();
    setup(dir.path());
    let batch = RecordBatch::try_from_iter([(
        "x",
        Arc::new(Int64Array::from_iter_values(0..100)) as arrow_array::ArrayRef,
    )])
    .unwrap();
    let calls = |extra: &str| {
        let text = pipeline("grow8.wasm", "unused.jsonl", "", extra);
        let spec = PipelineSpec::from_toml(&text, "p.toml", dir.path(), &host()).unwrap();
        let stage = &spec.stages[0];
        (0..12)
            .map(|_| {
                let called = stage.call_once(&batch).unwrap();
                assert_eq!(called.batch, batch, "the identity stage changed the batch");
                (called.memory_bytes, called.recycled)
            })
            .collect::<Vec<_>>()
    };
    const MIB: u64 = 1 << 20;
    // Default bound: max(16 MiB, 4 x the batch, 2 x the memory after the first call, ~8 MiB).
    let bounded = calls("");
    let recycled = bounded.iter().filter(|(_, r)| *r).count();
    let most = bounded.iter().map(|(m, _)| *m).max().unwrap();
    assert!(recycled >= 3, "{bounded:?}");
    assert!(most < 32 * MIB, "{bounded:?}");
    // recycle-above = "none": one pooled instance keeps every call's 8 MiB.
    let kept = calls("recycle-above = \"none\"\n");
    assert!(kept.iter().all(|(_, r)| !r), "{kept:?}");
    assert!(kept.last().unwrap().0 >= 12 * 8 * MIB, "{kept:?}");
}
