//! The native side of `wasmlink index --compare-native`: [`wasmlink_search::native::index_files`]
//! (read, extract, tokenize, normalize and index in batches on worker threads, then merge and
//! encode) over the Rust book of the local toolchain, with 1 and 2 workers.
//!
//! `cargo bench -p wasmlink-search --bench native`. `WASMLINK_SEARCH_BENCH_DIR=DIR` indexes
//! every `*.html`/`*.md`/`*.txt` file under DIR (recursively) instead. The wasm side of the
//! comparison is `wasmlink index` itself (scripts/bench-index.sh runs both).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group};
use wasmlink_search::DocKind;
use wasmlink_search::native::index_files;

/// Documents per batch, as `wasmlink index --batch-rows` defaults to.
const BATCH_ROWS: usize = 64;

fn corpus_dir() -> Option<(PathBuf, bool)> {
    if let Some(d) = std::env::var_os("WASMLINK_SEARCH_BENCH_DIR") {
        return Some((PathBuf::from(d), true));
    }
    let out = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .ok()?;
    let sysroot = String::from_utf8(out.stdout).ok()?;
    Some((
        Path::new(sysroot.trim()).join("share/doc/rust/html/book"),
        false,
    ))
}

fn collect(root: &Path, dir: &Path, recursive: bool, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if recursive {
                collect(root, &path, recursive, out);
            }
            continue;
        }
        let rel = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .to_string_lossy()
            .into_owned();
        if DocKind::from_path(&rel).is_some() {
            out.push((rel, path));
        }
    }
}

fn bench(c: &mut Criterion) {
    let mut files = Vec::new();
    let dir = corpus_dir();
    if let Some((dir, recursive)) = &dir {
        collect(dir, dir, *recursive, &mut files);
    }
    files.sort();
    if files.is_empty() {
        eprintln!(
            "native bench skipped: no documents in {}; set WASMLINK_SEARCH_BENCH_DIR or install \
             the rust-docs component",
            dir.map_or("(rustc not found)".into(), |(d, _)| d.display().to_string())
        );
        return;
    }
    let bytes: u64 = files
        .iter()
        .filter_map(|(_, p)| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let mut group = c.benchmark_group("native-index");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Bytes(bytes));
    for workers in [1, 2] {
        group.bench_function(format!("{workers}-workers"), |b| {
            b.iter(|| index_files(&files, BATCH_ROWS, workers).expect("native index"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
