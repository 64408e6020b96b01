//! Apache Parquet: `wasmlink call --arrow FILE.parquet` (recognised by its magic, output as
//! Parquet for `-o *.parquet`), pipeline sources and sinks of `kind = "parquet"`, killed runs
//! and `--resume` of a Parquet sink, and one-line errors (never a panic) for truncated, garbage
//! and mutated files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::properties::WriterProperties;
use wasmlink::pipeline::{
    Outcome, Pipeline, PipelineSpec, Progress, RunOptions, Sink, Source, read_parquet,
};
use wasmlink::plugin::{HostConfig, PluginHost};
use wasmlink::policy::Policy;

use crate::support::{guest_modules, stderr};

/// `n` rows `x` = 0..n (Int64) and `name` = "row i" (Utf8), in row groups of `group` rows.
fn parquet_rows(n: i64, group: usize) -> Vec<u8> {
    let batch = rows(0..n);
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(group))
        .build();
    let mut w = ArrowWriter::try_new(Vec::new(), batch.schema(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.into_inner().unwrap()
}

fn rows(range: std::ops::Range<i64>) -> RecordBatch {
    let x: ArrayRef = Arc::new(Int64Array::from_iter_values(range.clone()));
    let name: ArrayRef = Arc::new(StringArray::from_iter_values(
        range.map(|i| format!("row {i}")),
    ));
    RecordBatch::try_from_iter([("x", x), ("name", name)]).unwrap()
}

/// The `x` column of every row of a Parquet file, and its row-group sizes.
fn read_x(path: &Path) -> (Vec<i64>, Vec<i64>) {
    let b = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).unwrap()).unwrap();
    let groups = b
        .metadata()
        .row_groups()
        .iter()
        .map(|g| g.num_rows())
        .collect();
    let x = b
        .build()
        .unwrap()
        .flat_map(|r| {
            let r = r.unwrap();
            r.column_by_name("x")
                .unwrap()
                .as_primitive::<Int64Type>()
                .values()
                .to_vec()
        })
        .collect();
    (x, groups)
}

fn wasmlink(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wasmlink"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn call_reads_parquet_by_its_magic_and_writes_parquet_for_a_parquet_output() {
    let dir = tempfile::tempdir().unwrap();
    let module = guest_modules().join("greeter.wasm");
    // No `.parquet` extension: the magic decides.
    let input = dir.path().join("numbers.bin");
    std::fs::write(&input, parquet_rows(1000, 300)).unwrap();
    let out_pq = dir.path().join("doubled.parquet");
    let o = wasmlink(&[
        "call",
        s(&module),
        "double",
        "--arrow",
        s(&input),
        "-o",
        s(&out_pq),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(&std::fs::read(&out_pq).unwrap()[..4], b"PAR1");
    let (x, _) = read_x(&out_pq);
    assert_eq!(x, (0..1000).map(|i| i * 2).collect::<Vec<i64>>());

    // Any other output name: an Arrow IPC stream, as before.
    let out_ipc = dir.path().join("doubled.arrow");
    let o = wasmlink(&[
        "call",
        s(&module),
        "double",
        "--arrow",
        s(&input),
        "-o",
        s(&out_ipc),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let batches = wasmlink::exchange::read_ipc(&std::fs::read(&out_ipc).unwrap()).unwrap();
    let x: Vec<i64> = batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect();
    assert_eq!(x, (0..1000).map(|i| i * 2).collect::<Vec<i64>>());

    // Parquet on stdin.
    let o = Command::new(env!("CARGO_BIN_EXE_wasmlink"))
        .args([
            "call",
            s(&module),
            "echo_arrow",
            "--arrow",
            "-",
            "-o",
            s(&out_pq),
        ])
        .stdin(std::fs::File::open(&input).unwrap())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let (x, _) = read_x(&out_pq);
    assert_eq!(x, (0..1000).collect::<Vec<i64>>());
}

#[test]
fn bad_parquet_inputs_give_one_line_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let module = guest_modules().join("greeter.wasm");
    let good = parquet_rows(100, 50);
    let call = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let o = wasmlink(&["call", s(&module), "echo_arrow", "--arrow", s(&path)]);
        assert_eq!(o.status.code(), Some(2), "{name}: {}", stderr(&o));
        assert!(o.stdout.is_empty());
        stderr(&o).replace(&dir.path().display().to_string(), "DIR")
    };
    assert_eq!(
        call("truncated.parquet", &good[..good.len() / 2]),
        "wasmlink: DIR/truncated.parquet: not a Parquet file: it does not end with `PAR1` \
         (truncated, or still being written?)\n"
    );
    let mut garbage = b"PAR1".to_vec();
    garbage.extend((0..200u32).map(|i| (i * 37 % 251) as u8));
    garbage.extend_from_slice(b"PAR1");
    assert_eq!(
        call("garbage.parquet", &garbage),
        "wasmlink: DIR/garbage.parquet: not a Parquet file: EOF: Parquet file too small. Size is \
         208 but need 1412369128\n"
    );
    assert_eq!(
        call("tiny.parquet", b"PAR1PAR1"),
        "wasmlink: DIR/tiny.parquet: not a Parquet file: 8 bytes, not starting with `PAR1` and \
         ending with a footer\n"
    );
    // Column chunks the crate would assert on (negative offset) or allocate for (past the end).
    assert_eq!(
        call(
            "negative.parquet",
            &with_chunk_at(&good, dir.path(), -5, 100)
        ),
        "wasmlink: DIR/negative.parquet: not a Parquet file: row group 0, column 0 (`x`): its \
         chunk (100 bytes at offset -5) is not inside the file (2926 bytes)\n"
    );
    assert_eq!(
        call(
            "huge.parquet",
            &with_chunk_at(&good, dir.path(), 4, 1 << 60)
        ),
        "wasmlink: DIR/huge.parquet: not a Parquet file: row group 0, column 0 (`x`): its chunk \
         (1152921504606846976 bytes at offset 4) is not inside the file (2940 bytes)\n"
    );
    // A footer whose length field is larger than the file.
    let mut long = good.clone();
    let n = long.len();
    long[n - 8..n - 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let e = call("long.parquet", &long);
    assert!(
        e.starts_with("wasmlink: DIR/long.parquet: not a Parquet file: ") && e.lines().count() == 1,
        "{e}"
    );
}

/// `good` with the first column chunk of the first row group moved to `offset` (and `size`
/// bytes long) in a rewritten footer.
fn with_chunk_at(good: &[u8], dir: &Path, offset: i64, size: i64) -> Vec<u8> {
    use parquet::file::metadata::ParquetMetaDataWriter;
    let path = dir.join("good.parquet");
    std::fs::write(&path, good).unwrap();
    let b = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path).unwrap()).unwrap();
    let meta = b.metadata().as_ref().clone();
    let n = good.len();
    let footer = u32::from_le_bytes(good[n - 8..n - 4].try_into().unwrap()) as usize;
    let mut groups = meta.row_groups().to_vec();
    let mut columns = groups[0].columns().to_vec();
    columns[0] = columns[0]
        .clone()
        .into_builder()
        .set_dictionary_page_offset(Some(offset))
        .set_data_page_offset(offset)
        .set_total_compressed_size(size)
        .build()
        .unwrap();
    groups[0] = groups[0]
        .clone()
        .into_builder()
        .set_column_metadata(columns)
        .build()
        .unwrap();
    let meta = meta.into_builder().set_row_groups(groups).build();
    let mut out = good[..n - 8 - footer].to_vec();
    ParquetMetaDataWriter::new(&mut out, &meta)
        .finish()
        .unwrap();
    out
}

/// Mutated files (bytes of the footer and of the pages overwritten, deterministic
/// pseudo-random) are read through the guarded reader: each gives rows or an error, never a
/// panic, and every error is one line naming the file.
#[test]
fn mutated_parquet_files_never_panic_the_reader() {
    let dir = tempfile::tempdir().unwrap();
    let good = parquet_rows(300, 100);
    let path = dir.path().join("m.parquet");
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let (mut ok, mut errors, mut caught) = (0, 0, 0);
    for round in 0..3000 {
        let mut bytes = good.clone();
        let n = bytes.len();
        for _ in 0..1 + next() % 4 {
            // Half the mutations hit the footer, where the offsets and lengths live.
            let at = if next() % 2 == 0 {
                n - 8 - (next() as usize % (n / 3))
            } else {
                4 + next() as usize % (n - 12)
            };
            bytes[at] = match next() % 4 {
                0 => 0xff,
                1 => 0,
                2 => bytes[at] ^ (1 << (next() % 8)),
                _ => next() as u8,
            };
        }
        std::fs::write(&path, &bytes).unwrap();
        let result =
            std::panic::catch_unwind(|| read_parquet(std::fs::File::open(&path).unwrap(), &path));
        match result {
            Err(_) => panic!("round {round}: the reader panicked"),
            Ok(Ok(_)) => ok += 1,
            Ok(Err(e)) => {
                let m = e.to_string();
                assert!(m.starts_with(&format!("{}: ", path.display())), "{m}");
                assert!(!m.contains('\n'), "{m}");
                if m.contains("the parquet reader failed: ") {
                    caught += 1;
                }
                errors += 1;
            }
        }
    }
    assert!(
        errors > 100 && ok + errors == 3000,
        "{ok} read, {errors} refused"
    );
    // Some mutations (a dictionary-encoded page with no dictionary) make the parquet crate
    // assert: the guard turns those into errors too.
    assert!(
        caught > 0,
        "no mutation reached a parquet assertion ({errors} errors)"
    );
}

fn write_pipeline(dir: &Path, name: &str, stage: &str, out: &str, group: usize) -> PathBuf {
    let file = dir.join(name);
    std::fs::write(
        &file,
        format!(
            r#"
queue-depth = 2
[source]
kind = "parquet"
path = "in.parquet"
batch-rows = 10
[[stage]]
name = "s"
module = "{stage}"
function = "{}"
workers = 2
[sink]
kind = "parquet"
path = "{out}"
row-group-rows = {group}
"#,
            if stage.ends_with("greeter.wasm") {
                "double"
            } else {
                "run"
            }
        ),
    )
    .unwrap();
    file
}

#[test]
fn a_parquet_to_parquet_pipeline_keeps_every_row_in_order() {
    let dir = tempfile::tempdir().unwrap();
    // Source row groups of 64 rows, read in batches of 10 (batches cross row groups).
    std::fs::write(dir.path().join("in.parquet"), parquet_rows(1000, 64)).unwrap();
    let greeter = guest_modules().join("greeter.wasm");
    let file = write_pipeline(dir.path(), "p.toml", s(&greeter), "out/out.parquet", 25);
    let o = wasmlink(&["pipeline", "run", "--json", s(&file)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let stats: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(stats["outcome"], "completed");
    assert_eq!(stats["batches_read"], 100);
    assert_eq!(stats["rows_written"], 1000);
    let (x, groups) = read_x(&dir.path().join("out/out.parquet"));
    assert_eq!(x, (0..1000).map(|i| i * 2).collect::<Vec<i64>>());
    // A row group closes after the batch that brings it to 25 rows or more: 30 rows each.
    let mut expected = vec![30; 33];
    expected.push(10);
    assert_eq!(groups, expected);
    let left: Vec<String> = std::fs::read_dir(dir.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["out.parquet"]);

    // Errors in the file: the new key only for Parquet sinks.
    let host = PluginHost::new(HostConfig::default()).unwrap();
    let text = std::fs::read_to_string(&file).unwrap().replace(
        "kind = \"parquet\"\npath = \"out",
        "kind = \"jsonl\"\npath = \"out",
    );
    let e = PipelineSpec::from_toml(&text, "p.toml", dir.path(), &host).unwrap_err();
    assert_eq!(
        e.to_string(),
        "p.toml:15:18: sink.row-group-rows: only for kind = \"parquet\""
    );
    let text = std::fs::read_to_string(&file)
        .unwrap()
        .replace("row-group-rows = 25", "row-group-rows = 0");
    let e = PipelineSpec::from_toml(&text, "p.toml", dir.path(), &host).unwrap_err();
    assert_eq!(
        e.to_string(),
        "p.toml:15:18: sink.row-group-rows: must be at least 1"
    );

    // A garbage source: a one-line error naming it, exit 2.
    std::fs::write(dir.path().join("in.parquet"), b"PAR1 not really").unwrap();
    let o = wasmlink(&["pipeline", "run", s(&file)]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o).replace(&dir.path().display().to_string(), "DIR");
    assert!(
        e.ends_with(
            "DIR/./in.parquet: not a Parquet file: it does not end with `PAR1` (truncated, or \
             still being written?)\n"
        ) || e.ends_with(
            "DIR/in.parquet: not a Parquet file: it does not end with `PAR1` (truncated, or \
             still being written?)\n"
        ),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1, "{e}");
}

/// An ABI v1 identity stage that spins `spin` iterations first, so a run lasts long enough to
/// be killed (the pipeline tests' stage module).
fn slow_stage(dir: &Path, spin: u32) -> PathBuf {
    let path = dir.join("slow.wasm");
    let wat = crate::pipeline::stage_wat(spin, false);
    std::fs::write(&path, wat::parse_str(&wat).unwrap()).unwrap();
    path
}

#[test]
fn a_killed_parquet_run_leaves_no_output_and_resume_writes_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.parquet"), parquet_rows(1000, 128)).unwrap();
    slow_stage(dir.path(), 8_000_000);
    let killed = write_pipeline(dir.path(), "p.toml", "slow.wasm", "out.parquet", 20);
    let out = dir.path().join("out.parquet");
    let progress = dir.path().join("out.parquet.progress");

    // The checkpoint advances a row group (two batches of 10 rows) at a time.
    crate::pipeline::kill_after_checkpoint(&killed, &progress, &out, 6);
    let cp: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&progress).unwrap()).unwrap();
    let at = cp["next_seq"].as_u64().unwrap();
    assert_eq!(at % 2, 0, "the checkpoint is at a row-group boundary: {cp}");
    // The temporary file is not a Parquet file on its own (no footer yet).
    let tmp = PathBuf::from(cp["output_tmp"].as_str().unwrap());
    let e = read_parquet(std::fs::File::open(&tmp).unwrap(), &tmp).unwrap_err();
    assert!(e.to_string().contains("not a Parquet file"), "{e}");

    let o = wasmlink(&["pipeline", "run", "--resume", "--json", s(&killed)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let stats: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let resumed = stats["resumed_batches"].as_u64().unwrap();
    assert!(
        (6..100).contains(&resumed),
        "resumed after {resumed} batches"
    );
    assert_eq!(stats["batches_read"].as_u64().unwrap(), 100 - resumed);
    assert_eq!(stats["rows_written"], 1000);
    assert!(!progress.exists());
    let (x, groups) = read_x(&out);
    assert_eq!(x, (0..1000).collect::<Vec<i64>>());
    assert_eq!(groups, vec![20; 50]);

    // Byte for byte what an uninterrupted run writes.
    let whole = write_pipeline(dir.path(), "q.toml", "slow.wasm", "whole.parquet", 20);
    let o = wasmlink(&["pipeline", "run", s(&whole)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(dir.path().join("whole.parquet")).unwrap()
    );
    let temps = crate::pipeline::leftovers(dir.path());
    assert!(temps.is_empty(), "left behind: {temps:?}");
}

/// From Rust, in one process: cancel, then resume (the new temporary file must not be the one
/// being re-read); the rows after the last closed row group are computed again.
#[test]
fn an_interrupted_parquet_sink_resumes_in_the_same_process() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.parquet"), parquet_rows(600, 100)).unwrap();
    let stage = slow_stage(dir.path(), 2_000_000);
    let host = PluginHost::new(HostConfig {
        pool_slots: 0,
        ..HostConfig::default()
    })
    .unwrap();
    let plugin = host.load_file(&stage, Policy::default()).unwrap();
    let out = dir.path().join("out.parquet");
    let mut spec = PipelineSpec::new(
        Source::Parquet {
            path: dir.path().join("in.parquet"),
        },
        Sink::Parquet {
            path: out.clone(),
            row_group_rows: 30,
        },
    )
    .stage("slow", plugin, "run", 1);
    spec.batch_rows = 10;
    spec.queue_depth = 1;
    let pipeline = Pipeline::new(spec).unwrap();
    let cancel = Arc::new(AtomicBool::new(false));
    let progress = Arc::new(Progress::default());
    let stop = {
        let (cancel, progress) = (cancel.clone(), progress.clone());
        std::thread::spawn(move || {
            while progress.rows_written.load(Ordering::Relaxed) < 100 {
                std::thread::sleep(Duration::from_millis(2));
            }
            cancel.store(true, Ordering::SeqCst);
        })
    };
    let stats = pipeline
        .run(&RunOptions {
            cancel: Some(cancel),
            progress: Some(progress),
            ..RunOptions::default()
        })
        .unwrap();
    stop.join().unwrap();
    assert_eq!(stats.outcome, Outcome::Interrupted);
    assert!(!out.exists());
    let cp: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("out.parquet.progress")).unwrap(),
    )
    .unwrap();
    let at = cp["next_seq"].as_u64().unwrap();
    assert!(at >= 9 && at.is_multiple_of(3), "checkpoint at batch {at}");

    let stats = pipeline
        .run(&RunOptions {
            resume: true,
            ..RunOptions::default()
        })
        .unwrap();
    assert_eq!(stats.outcome, Outcome::Completed);
    assert_eq!(stats.resumed_batches, at);
    assert_eq!(stats.rows_written, 600);
    let (x, groups) = read_x(&out);
    assert_eq!(x, (0..600).collect::<Vec<i64>>());
    assert_eq!(groups, vec![30; 20]);
    let left = crate::pipeline::leftovers(dir.path());
    assert!(left.is_empty(), "left behind: {left:?}");
}
