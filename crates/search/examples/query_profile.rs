//! Where a query's time goes, natively (issue 17 item 4): search (ranking) against snippets.
//!
//! ```text
//! cargo run --release -p wasmlink-search --example query_profile -- CORPUS INDEX_DIR QUERIES [REPEAT]
//! ```
//!
//! Builds the index of CORPUS into INDEX_DIR (single thread, the same stages as `wasmlink
//! index`) unless INDEX_DIR already holds one, then runs each query of QUERIES (the bench's
//! judged set: query TAB expected) REPEAT times (default 20) and prints, over the queries'
//! medians, p50/p99 of the ranking (`search_query`, top 10) and of the 10 snippets, and the
//! slowest queries (in total and by ranking alone). `TERMS=QUERY` also times each of its
//! postings lists' decoding and the best of `LOOPS` (default 200) rankings of QUERY.

use std::path::{Path, PathBuf};
use std::time::Instant;

use wasmlink_search::{
    Bm25, DocKind, Index, IndexBuilder, IndexWriter, Normalizer, Query, extract, skip_reason,
    skip_reason_for_path, tokens,
};

fn walk(dir: &Path, root: &Path, out: &mut Vec<(String, PathBuf)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let p = e.path();
        if p.is_dir() {
            walk(&p, root, out);
        } else if DocKind::from_path(&p.to_string_lossy()).is_some() {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            out.push((rel, p));
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn pct(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let i = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (corpus, dir, queries) = (Path::new(&args[0]), Path::new(&args[1]), &args[2]);
    let repeat: usize = args.get(3).map_or(20, |r| r.parse().unwrap());
    if !dir.join("manifest.json").exists() {
        let t = Instant::now();
        let mut files = Vec::new();
        walk(corpus, corpus, &mut files);
        let mut b = IndexBuilder::new();
        let mut n = Normalizer::new();
        for (rel, path) in &files {
            if let Some(r) = skip_reason_for_path(rel) {
                b.skip(r.name());
                continue;
            }
            let bytes = std::fs::read(path).unwrap();
            let doc = extract(&bytes, DocKind::from_path(rel).unwrap_or(DocKind::Text));
            if let Some(r) = skip_reason(rel, &doc) {
                b.skip(r.name());
                continue;
            }
            let terms = n.normalize_all(tokens(&doc.text));
            b.add_with_text(&doc.title, rel, &terms, &doc.text).unwrap();
        }
        IndexWriter::new(&b).unwrap().write_dir(dir).unwrap();
        eprintln!(
            "indexed {} docs in {:.1} s",
            b.num_docs(),
            t.elapsed().as_secs_f64()
        );
    }
    let t = Instant::now();
    let index = Index::open(dir).unwrap();
    eprintln!("opened in {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    let text = std::fs::read_to_string(queries).unwrap();
    let (mut rank_ms, mut snip_ms, mut names) = (Vec::new(), Vec::new(), Vec::new());
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let q = line.split('\t').next().unwrap();
        let (mut r, mut s) = (Vec::new(), Vec::new());
        for _ in 0..=repeat {
            let t0 = Instant::now();
            let query = Query::parse(q).unwrap();
            let hits = index.search_query(&query, 10, Bm25::default()).unwrap();
            let t1 = Instant::now();
            for h in &hits {
                std::hint::black_box(index.snippet_of(h, &query).unwrap());
            }
            let t2 = Instant::now();
            r.push((t1 - t0).as_secs_f64() * 1e3);
            s.push((t2 - t1).as_secs_f64() * 1e3);
        }
        rank_ms.push(median(r));
        snip_ms.push(median(s));
        names.push(q.to_owned());
    }
    let total: Vec<f64> = rank_ms.iter().zip(&snip_ms).map(|(a, b)| a + b).collect();
    println!(
        "{} queries: rank p50 {:.3} p99 {:.3} ms; snippets p50 {:.3} p99 {:.3} ms; total p50 {:.3} p99 {:.3} ms",
        names.len(),
        pct(&rank_ms, 0.5),
        pct(&rank_ms, 0.99),
        pct(&snip_ms, 0.5),
        pct(&snip_ms, 0.99),
        pct(&total, 0.5),
        pct(&total, 0.99)
    );
    let mut order: Vec<usize> = (0..names.len()).collect();
    order.sort_by(|&a, &b| total[b].total_cmp(&total[a]));
    for &i in order.iter().take(8) {
        println!(
            "  {:7.3} ms (rank {:.3}, snippets {:.3})  {}",
            total[i], rank_ms[i], snip_ms[i], names[i]
        );
    }
    order.sort_by(|&a, &b| rank_ms[b].total_cmp(&rank_ms[a]));
    println!("slowest rankings:");
    for &i in order.iter().take(8) {
        println!("  {:7.3} ms  {}", rank_ms[i], names[i]);
    }
    if let Ok(q) = std::env::var("TERMS") {
        let query = Query::parse(&q).unwrap();
        for t in &query.terms {
            for key in [t.clone(), format!("title:{t}")] {
                let t0 = Instant::now();
                let mut n = 0;
                for _ in 0..20 {
                    n = index.postings(&key).unwrap().len();
                }
                println!(
                    "  {key}: {n} postings, decode {:.3} ms",
                    t0.elapsed().as_secs_f64() * 1e3 / 20.0
                );
            }
        }
        let mut best = f64::MAX;
        let loops: usize = std::env::var("LOOPS").map_or(200, |l| l.parse().unwrap());
        for _ in 0..loops {
            let t0 = Instant::now();
            index.search_query(&query, 10, Bm25::default()).unwrap();
            best = best.min(t0.elapsed().as_secs_f64() * 1e3);
        }
        println!("  search_query min of 200: {best:.3} ms");
    }
    if let Ok(q) = std::env::var("HITS") {
        let query = Query::parse(&q).unwrap();
        for h in index.search_query(&query, 10, Bm25::default()).unwrap() {
            let t0 = Instant::now();
            let text_len = index.doc_text(h.doc).unwrap().map_or(0, |t| t.len());
            let t1 = Instant::now();
            index.snippet_of(&h, &query).unwrap();
            let t2 = Instant::now();
            let again: Vec<String> = (0..5)
                .map(|_| {
                    let t = Instant::now();
                    index.snippet_of(&h, &query).unwrap();
                    format!("{:.3}", t.elapsed().as_secs_f64() * 1e3)
                })
                .collect();
            println!("      again: {again:?}");
            let text = index.doc_text(h.doc).unwrap().unwrap_or_default();
            let t3 = Instant::now();
            let words = tokens(&text).count();
            let t4 = Instant::now();
            let mut n = Normalizer::new();
            let terms = n.normalize_all(tokens(&text)).len();
            println!(
                "      tokens: {words} in {:.3} ms; normalized {terms} in {:.3} ms",
                (t4 - t3).as_secs_f64() * 1e3,
                t4.elapsed().as_secs_f64() * 1e3
            );
            println!(
                "    {:.3} ms text ({text_len} bytes), {:.3} ms snippet  {} {:?}",
                (t1 - t0).as_secs_f64() * 1e3,
                (t2 - t1).as_secs_f64() * 1e3,
                h.path,
                h.body_terms
            );
        }
    }
}
