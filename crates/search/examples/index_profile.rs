//! Where the indexing time goes (the files `wasmlink index` takes: html, htm, md, markdown, txt), natively and single-threaded, with the same code the
//! guest modules run: per batch of 64 files (corpus order) extract, tokenize + normalize,
//! `IndexBuilder::add_with_text`, `IndexWriter::new` and `write_segment_file` of the batch's
//! segment (`write_dir_unsynced` with SEGMENT_DIRS=1); then `Segment::open` of every segment and `merge_segments`.
//!
//!     cargo run --release -p wasmlink-search --example index_profile -- CORPUS SCRATCH [BATCH]
//!
//! SCRATCH is a directory it may fill and empty (segments and the merged index go there).
//! Under `perf record -g` it shows the top functions of each phase.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wasmlink_search::{
    DocKind, IndexBuilder, IndexWriter, Normalizer, Segment, extract, merge_segments, skip_reason,
    skip_reason_for_path, tokens,
};

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(root, &p, out);
        } else if p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| ["html", "htm", "md", "markdown", "txt"].contains(&e))
        {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            out.push((rel, p));
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: index_profile CORPUS SCRATCH [BATCH]");
        std::process::exit(2);
    }
    let root = PathBuf::from(&args[1]);
    let scratch = PathBuf::from(&args[2]);
    let batch: usize = args
        .get(3)
        .map_or(64, |b| b.parse().expect("BATCH: a number"));
    let _ = std::fs::remove_dir_all(&scratch);
    let segs = scratch.join("segments");
    let mut files = Vec::new();
    walk(&root, &root, &mut files);
    let mut t = [Duration::ZERO; 6];
    let names = ["read", "extract", "analyze", "add", "encode", "write"];
    let mut normalizer = Normalizer::new();
    let started = Instant::now();
    for (n, chunk) in files.chunks(batch).enumerate() {
        let mut builder = IndexBuilder::new();
        for (rel, path) in chunk {
            let t0 = Instant::now();
            let content = std::fs::read(path).unwrap();
            let t1 = Instant::now();
            t[0] += t1 - t0;
            if let Some(r) = skip_reason_for_path(rel) {
                builder.skip(r.name());
                continue;
            }
            let doc = extract(&content, DocKind::from_path(rel).unwrap_or(DocKind::Text));
            let t2 = Instant::now();
            t[1] += t2 - t1;
            if let Some(r) = skip_reason(rel, &doc) {
                builder.skip(r.name());
                continue;
            }
            let terms = normalizer.normalize_all(tokens(&doc.text));
            let t3 = Instant::now();
            t[2] += t3 - t2;
            builder
                .add_with_text(&doc.title, rel, &terms, &doc.text)
                .unwrap();
            t[3] += t3.elapsed();
        }
        let t0 = Instant::now();
        let writer = IndexWriter::new(&builder).unwrap();
        let t1 = Instant::now();
        if std::env::var_os("SEGMENT_DIRS").is_some_and(|v| !v.is_empty()) {
            writer
                .write_dir_unsynced(segs.join(format!("{n:05}")))
                .unwrap();
        } else {
            std::fs::create_dir_all(&segs).unwrap();
            writer
                .write_segment_file(segs.join(format!("{n:05}.seg")))
                .unwrap();
        }
        t[4] += t1 - t0;
        t[5] += t1.elapsed();
    }
    let streaming = started.elapsed();
    let t0 = Instant::now();
    let mut dirs: Vec<_> = std::fs::read_dir(&segs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    dirs.sort();
    let segments: Vec<Segment> = dirs.iter().map(|d| Segment::open(d).unwrap()).collect();
    let t1 = Instant::now();
    let m = merge_segments(&segments, None, scratch.join("index"), true).unwrap();
    let t2 = Instant::now();
    for (name, d) in names.iter().zip(t) {
        println!("{name:>8} {:8.3} s", d.as_secs_f64());
    }
    println!(
        "streaming {:.3} s; open {} segments {:.3} s, merge {:.3} s",
        streaming.as_secs_f64(),
        segments.len(),
        (t1 - t0).as_secs_f64(),
        (t2 - t1).as_secs_f64()
    );
    println!(
        "{} docs, {} terms, {} postings",
        m.docs, m.terms, m.postings
    );
}
