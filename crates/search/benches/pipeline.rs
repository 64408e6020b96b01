//! Native throughput of the search core: extract + tokenize + normalize + index over the Rust
//! book shipped with the toolchain (`$(rustc --print sysroot)/share/doc/rust/html/book/*.html`),
//! the same code the wasm guest modules run.
//!
//! `cargo bench -p wasmlink-search --bench pipeline`. `WASMLINK_SEARCH_BENCH_DIR=DIR` measures
//! every `*.html`/`*.md`/`*.txt` file under DIR (recursively) instead. Prints a summary with
//! docs/s and MB/s (1 MB = 10^6 bytes of input) at the end.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group};
use wasmlink_search::{Doc, DocKind, IndexBuilder, IndexWriter, Normalizer, extract, tokens};

struct Corpus {
    dir: PathBuf,
    files: Vec<(String, DocKind, Vec<u8>)>,
    bytes: u64,
}

fn book_dir() -> Option<PathBuf> {
    let out = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .ok()?;
    let sysroot = String::from_utf8(out.stdout).ok()?;
    Some(Path::new(sysroot.trim()).join("share/doc/rust/html/book"))
}

fn collect(dir: &Path, recursive: bool, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if recursive {
                collect(&path, recursive, out);
            }
        } else if path.to_str().and_then(DocKind::from_path).is_some() {
            out.push(path);
        }
    }
}

fn load() -> Option<Corpus> {
    let (dir, recursive) = match std::env::var_os("WASMLINK_SEARCH_BENCH_DIR") {
        Some(d) => (PathBuf::from(d), true),
        None => (book_dir()?, false),
    };
    let mut paths = Vec::new();
    collect(&dir, recursive, &mut paths);
    paths.sort();
    let mut files = Vec::new();
    let mut bytes = 0;
    for p in paths {
        let Ok(data) = std::fs::read(&p) else {
            continue;
        };
        let name = p
            .strip_prefix(&dir)
            .unwrap_or(&p)
            .to_string_lossy()
            .into_owned();
        let Some(kind) = DocKind::from_path(&name) else {
            continue;
        };
        bytes += data.len() as u64;
        files.push((name, kind, data));
    }
    (!files.is_empty()).then_some(Corpus { dir, files, bytes })
}

/// The whole pipeline over the corpus: what an indexing run does, minus I/O.
fn index_corpus(corpus: &Corpus) -> IndexWriter {
    let mut normalizer = Normalizer::new();
    let mut builder = IndexBuilder::new();
    for (name, kind, data) in &corpus.files {
        let doc = extract(data, *kind);
        let terms = normalizer.normalize_all(tokens(&doc.text));
        builder
            .add(&doc.title, name, &terms)
            .expect("index capacity");
    }
    IndexWriter::new(&builder).expect("encode")
}

fn bench(c: &mut Criterion) {
    let Some(corpus) = load() else {
        println!(
            "pipeline bench skipped: no documents in the Rust book directory ({}); set \
             WASMLINK_SEARCH_BENCH_DIR or install the rust-docs component",
            book_dir().map_or("rustc not found".into(), |d| d.display().to_string())
        );
        return;
    };
    let n_docs = corpus.files.len() as u64;
    println!(
        "corpus: {} ({} documents, {:.1} MB)",
        corpus.dir.display(),
        n_docs,
        corpus.bytes as f64 / 1e6
    );
    let docs: Vec<Doc> = corpus
        .files
        .iter()
        .map(|(_, k, d)| extract(d, *k))
        .collect();
    let mut normalizer = Normalizer::new();
    let terms: Vec<Vec<String>> = docs
        .iter()
        .map(|d| normalizer.normalize_all(tokens(&d.text)))
        .collect();

    let timings: Mutex<Vec<(&'static str, Duration)>> = Mutex::new(Vec::new());
    let record = |stage: &'static str, per_iter: Duration| {
        timings.lock().unwrap().push((stage, per_iter));
    };

    let mut group = c.benchmark_group("search-core");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Bytes(corpus.bytes));
    group.bench_function("pipeline", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                std::hint::black_box(index_corpus(&corpus));
            }
            let t = start.elapsed();
            record("pipeline", t / iters as u32);
            t
        })
    });
    group.bench_function("extract", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                for (_, kind, data) in &corpus.files {
                    std::hint::black_box(extract(data, *kind));
                }
            }
            let t = start.elapsed();
            record("extract", t / iters as u32);
            t
        })
    });
    group.bench_function("tokenize+normalize", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                for d in &docs {
                    std::hint::black_box(normalizer.normalize_all(tokens(&d.text)));
                }
            }
            let t = start.elapsed();
            record("tokenize+normalize", t / iters as u32);
            t
        })
    });
    group.bench_function("index+encode", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                let mut builder = IndexBuilder::new();
                for ((name, _, _), (d, t)) in corpus.files.iter().zip(docs.iter().zip(&terms)) {
                    builder.add(&d.title, name, t).expect("index capacity");
                }
                std::hint::black_box(IndexWriter::new(&builder).expect("encode"));
            }
            let t = start.elapsed();
            record("index+encode", t / iters as u32);
            t
        })
    });
    group.finish();

    let writer = index_corpus(&corpus);
    let m = writer.manifest();
    let index_bytes: u64 = writer.files().iter().map(|(_, b)| b.len() as u64).sum();
    println!(
        "\nindex: {} docs, {} terms, {} postings, {} terms indexed, {:.2} MB on disk",
        m.docs,
        m.terms,
        m.postings,
        m.total_terms,
        index_bytes as f64 / 1e6
    );
    let text_bytes: usize = docs.iter().map(|d| d.text.len()).sum();
    println!("extracted text: {:.2} MB", text_bytes as f64 / 1e6);
    println!("\n| stage | median time per corpus pass | docs/s | MB/s of input |");
    println!("| --- | --- | --- | --- |");
    let timings = timings.into_inner().unwrap();
    for stage in ["pipeline", "extract", "tokenize+normalize", "index+encode"] {
        let mut ts: Vec<Duration> = timings
            .iter()
            .filter(|(s, _)| *s == stage)
            .map(|(_, t)| *t)
            .collect();
        if ts.is_empty() {
            continue;
        }
        ts.sort();
        let median = ts[ts.len() / 2].as_secs_f64();
        println!(
            "| {stage} | {:.1} ms | {:.0} | {:.1} |",
            median * 1e3,
            n_docs as f64 / median,
            corpus.bytes as f64 / 1e6 / median
        );
    }
}

criterion_group!(benches, bench);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
}
