//! The search bench's anchor and scorer (scripts/bench-search.sh, issue 17).
//!
//! ```text
//! search-anchor index CORPUS OUT [--threads N] [--memory-mb M] [--store-body] [--same-docs]
//!     Tantivy: index the corpus's html/htm/md/markdown/txt files (the selection of
//!     `wasmlink index`; redirect pages skipped, as its extract module skips them), title and
//!     text extracted by wasmlink-search's `extract` (the very code wasmlink's extract module
//!     runs), fields title + body with the en_stem tokenizer, BM25. N feeding threads (read and
//!     extract) and N indexing threads. Prints one JSON object. With --store-body the body
//!     is stored too (as wasmlink stores each page's text), which snippets need. With
//!     --same-docs it indexes exactly the pages `wasmlink index` indexes: the path rules of
//!     `skip_reason_for_path` before extraction (print pages, old editions, source listings
//!     are read but not parsed, as wasmlink's extract module does) and `skip_reason` after it
//!     (translations, noindex pages), so that both engines do the same work.
//! search-anchor query OUT QUERIES RANKING [--prefix P] [--repeat R] [--snippets]
//!     Tantivy: answer the judged queries (top 10), write the ranking file, print latency.
//!     With --snippets (an index built with --store-body) each of the 10 hits also gets a
//!     snippet of its body (`SnippetGenerator`, 150 characters, the default), as
//!     `wasmlink search` prints; the latency includes them.
//! search-anchor wasmlink-query WASMLINK INDEX QUERIES RANKING [--prefix P] [--repeat R] [--no-snippets]
//!     The same through `WASMLINK search INDEX QUERY -k 10 --json --repeat R` (the sandboxed
//!     query module), one process per query; --no-snippets passes `--no-snippets` on.
//! search-anchor score QUERIES RANKING [--prefix P] [--misses]
//!     MRR@10, recall@3 and nDCG@10 of a ranking file; with --misses, every query whose first
//!     expected page is not in the top 3, with what ranks above it.
//! ```
//!
//! QUERIES is bench/queries/rust-docs.tsv (query TAB expected[,expected...], paths relative to
//! the docs' html root). `--prefix P` (e.g. `book/`, when the corpus is the html root's `book`
//! directory): only the queries with an expected page under P, with P stripped from the paths.
//! A ranking file has one line per result: query TAB rank TAB path.
//!
//! Latency (also written per query to RANKING.ms): each query is run once to warm up, then R times (default 20); its latency is the
//! median of the R runs; p50 and p99 are taken over the queries' medians.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, STORED, STRING, Schema, TextFieldIndexing, TextOptions, Value,
};
use tantivy::snippet::SnippetGenerator;
use tantivy::tokenizer::TokenStream;
use tantivy::{Index, IndexWriter, TantivyDocument, Term, doc};
use wasmlink_search::{DocKind, extract, skip_reason, skip_reason_for_path};

type Result<T> = std::result::Result<T, String>;

/// The extensions `wasmlink index` reads (src/commands/index.rs, EXTENSIONS).
const EXTENSIONS: &[&str] = &["html", "htm", "md", "markdown", "txt"];
/// Results per query.
const K: usize = 10;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("index") => cmd_index(&args[1..]),
        Some("query") => cmd_query(&args[1..]),
        Some("wasmlink-query") => cmd_wasmlink_query(&args[1..]),
        Some("score") => cmd_score(&args[1..]),
        _ => Err(
            "usage: search-anchor index|query|wasmlink-query|score ... (see src/main.rs)".into(),
        ),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("search-anchor: {e}");
            ExitCode::from(2)
        }
    }
}

/// Positional arguments and `--name value` / `--flag` options.
struct Args {
    positional: Vec<String>,
    options: HashMap<String, String>,
}

impl Args {
    fn parse(args: &[String], flags: &[&str], want: usize) -> Result<Args> {
        let mut positional = Vec::new();
        let mut options = HashMap::new();
        let mut it = args.iter();
        while let Some(a) = it.next() {
            if let Some(name) = a.strip_prefix("--") {
                if flags.contains(&name) {
                    options.insert(name.to_string(), String::new());
                } else {
                    let v = it.next().ok_or_else(|| format!("--{name} needs a value"))?;
                    options.insert(name.to_string(), v.clone());
                }
            } else {
                positional.push(a.clone());
            }
        }
        if positional.len() != want {
            return Err(format!(
                "expected {want} arguments, got {}: {positional:?}",
                positional.len()
            ));
        }
        Ok(Args {
            positional,
            options,
        })
    }

    fn num(&self, name: &str, default: usize) -> Result<usize> {
        match self.options.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("--{name}: not a number: {v:?}")),
        }
    }

    fn prefix(&self) -> String {
        self.options.get("prefix").cloned().unwrap_or_default()
    }
}

/// The corpus's files as `wasmlink index` selects them (crates/pipeline/src/source.rs,
/// `dir_files`): regular files (symlinks followed) with one of [`EXTENSIONS`]
/// (case-insensitive), in the order of their full paths.
fn corpus_files(root: &Path) -> Result<Vec<(String, PathBuf)>> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries =
            std::fs::read_dir(&dir).map_err(|e| format!("{}: cannot list: {e}", dir.display()))?;
        for entry in entries {
            let path = entry
                .map_err(|e| format!("{}: cannot list: {e}", dir.display()))?
                .path();
            let meta = std::fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            if meta.is_dir() {
                stack.push(path);
            } else if meta.is_file() {
                let ext = path
                    .extension()
                    .map(|e| e.to_string_lossy().to_ascii_lowercase());
                if ext.is_some_and(|e| EXTENSIONS.contains(&e.as_str())) {
                    let rel = path.strip_prefix(root).unwrap_or(&path);
                    let rel: Vec<String> = rel
                        .components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect();
                    out.push((rel.join("/"), path));
                }
            }
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    Ok(out)
}

fn schema(store_body: bool) -> (Schema, Field, Field, Field) {
    let mut sb = Schema::builder();
    let text = TextOptions::default().set_indexing_options(
        TextFieldIndexing::default()
            .set_tokenizer("en_stem")
            .set_index_option(IndexRecordOption::WithFreqsAndPositions),
    );
    let title = sb.add_text_field("title", text.clone() | STORED);
    let body = if store_body {
        sb.add_text_field("body", text | STORED)
    } else {
        sb.add_text_field("body", text)
    };
    let path = sb.add_text_field("path", STRING | STORED);
    (sb.build(), title, body, path)
}

fn cmd_index(args: &[String]) -> Result<()> {
    let a = Args::parse(args, &["store-body", "same-docs"], 2)?;
    let same_docs = a.options.contains_key("same-docs");
    let threads = a.num("threads", 2)?.max(1);
    let memory_mb = a.num("memory-mb", 100)?;
    let (corpus, out) = (
        PathBuf::from(&a.positional[0]),
        PathBuf::from(&a.positional[1]),
    );
    let started = Instant::now();
    let files = corpus_files(&corpus)?;
    if out.exists() {
        std::fs::remove_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    }
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let (schema, title, body, path) = schema(a.options.contains_key("store-body"));
    let index =
        Index::create_in_dir(&out, schema).map_err(|e| format!("{}: {e}", out.display()))?;
    let writer: IndexWriter = index
        .writer_with_num_threads(threads, memory_mb * 1_000_000)
        .map_err(|e| e.to_string())?;

    // `threads` feeders read and extract; Tantivy's `threads` workers tokenize and index.
    let next = AtomicUsize::new(0);
    let (docs, bytes, redirects) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let skipped = AtomicU64::new(0);
    let error: Mutex<Option<String>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((rel, full)) = files.get(i) else {
                        break;
                    };
                    let content = match std::fs::read(full) {
                        Ok(c) => c,
                        Err(e) => {
                            *error.lock().unwrap() = Some(format!("{}: {e}", full.display()));
                            break;
                        }
                    };
                    bytes.fetch_add(content.len() as u64, Ordering::Relaxed);
                    if same_docs && skip_reason_for_path(rel).is_some() {
                        skipped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let kind = DocKind::from_path(rel).unwrap_or(DocKind::Text);
                    let d = extract(&content, kind);
                    if d.redirect.is_some() {
                        redirects.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    if same_docs && skip_reason(rel, &d).is_some() {
                        skipped.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let added = writer.add_document(doc!(
                        title => d.title,
                        body => d.text,
                        path => rel.as_str(),
                    ));
                    if let Err(e) = added {
                        *error.lock().unwrap() = Some(format!("{rel}: {e}"));
                        break;
                    }
                    docs.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    if let Some(e) = error.into_inner().unwrap() {
        return Err(e);
    }
    let mut writer = writer;
    writer.commit().map_err(|e| e.to_string())?;
    writer.wait_merging_threads().map_err(|e| e.to_string())?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "files": files.len(),
            "documents": docs.load(Ordering::Relaxed),
            "redirects_skipped": redirects.load(Ordering::Relaxed),
            "other_skipped": skipped.load(Ordering::Relaxed),
            "bytes": bytes.load(Ordering::Relaxed),
            "secs": secs,
        })
    );
    Ok(())
}

/// One judged query.
struct Judged {
    query: String,
    expected: Vec<String>,
}

/// The judged queries with an expected page under `prefix`, the prefix stripped.
fn load_queries(path: &str, prefix: &str) -> Result<Vec<Judged>> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (query, expected) = line
            .split_once('\t')
            .ok_or_else(|| format!("{path}:{}: no TAB between query and expected pages", n + 1))?;
        let expected: Vec<String> = expected
            .split(',')
            .filter_map(|p| p.trim().strip_prefix(prefix).map(str::to_string))
            .collect();
        if !expected.is_empty() {
            out.push(Judged {
                query: query.to_string(),
                expected,
            });
        }
    }
    if out.is_empty() {
        return Err(format!(
            "{path}: no query has an expected page under {prefix:?}"
        ));
    }
    Ok(out)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Writes the ranking file and prints the latency summary.
fn finish(ranking_path: &str, rankings: &[(String, Vec<String>)], mut lat: Vec<f64>) -> Result<()> {
    let mut out = String::new();
    for (q, paths) in rankings {
        for (i, p) in paths.iter().enumerate() {
            out.push_str(&format!("{q}\t{}\t{p}\n", i + 1));
        }
    }
    std::fs::write(ranking_path, out).map_err(|e| format!("{ranking_path}: {e}"))?;
    // Each query's latency next to the ranking: RANKING.ms, query TAB milliseconds.
    let per_query: String = rankings
        .iter()
        .zip(&lat)
        .map(|((q, _), ms)| format!("{q}\t{ms:.4}\n"))
        .collect();
    let ms_path = format!("{ranking_path}.ms");
    std::fs::write(&ms_path, per_query).map_err(|e| format!("{ms_path}: {e}"))?;
    lat.sort_by(f64::total_cmp);
    println!(
        "{}",
        serde_json::json!({
            "queries": rankings.len(),
            "p50_ms": percentile(&lat, 0.50),
            "p99_ms": percentile(&lat, 0.99),
        })
    );
    Ok(())
}

fn cmd_query(args: &[String]) -> Result<()> {
    let a = Args::parse(args, &["snippets"], 3)?;
    let snippets = a.options.contains_key("snippets");
    let repeat = a.num("repeat", 20)?.max(1);
    let queries = load_queries(&a.positional[1], &a.prefix())?;
    let index = Index::open_in_dir(&a.positional[0]).map_err(|e| e.to_string())?;
    let schema = index.schema();
    let title = schema.get_field("title").map_err(|e| e.to_string())?;
    let body = schema.get_field("body").map_err(|e| e.to_string())?;
    let path = schema.get_field("path").map_err(|e| e.to_string())?;
    if snippets && !schema.get_field_entry(body).is_stored() {
        return Err(format!(
            "{}: --snippets needs the body stored (index with --store-body)",
            a.positional[0]
        ));
    }
    let reader = index.reader().map_err(|e| e.to_string())?;
    let searcher = reader.searcher();
    let mut analyzer = index
        .tokenizers()
        .get("en_stem")
        .ok_or("no en_stem tokenizer")?;
    let collector = TopDocs::with_limit(K).order_by_score();

    let mut rankings = Vec::new();
    let mut latencies = Vec::new();
    for j in &queries {
        // As QueryParser does for plain words over two default fields: each term of the
        // query in title OR body, the terms OR-ed, scores summed (BM25).
        let mut build = || -> Box<dyn Query> {
            let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
            let mut stream = analyzer.token_stream(&j.query);
            while let Some(tok) = stream.next() {
                for field in [title, body] {
                    let term = Term::from_field_text(field, &tok.text);
                    clauses.push((
                        Occur::Should,
                        Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs)),
                    ));
                }
            }
            Box::new(BooleanQuery::new(clauses))
        };
        let mut run = || -> Result<Vec<String>> {
            let query = build();
            let top = searcher
                .search(&query, &collector)
                .map_err(|e| e.to_string())?;
            let generator = if snippets {
                Some(
                    SnippetGenerator::create(&searcher, &*query, body)
                        .map_err(|e| e.to_string())?,
                )
            } else {
                None
            };
            let mut paths = Vec::with_capacity(top.len());
            for (_score, address) in top {
                let d: TantivyDocument = searcher.doc(address).map_err(|e| e.to_string())?;
                let p = d.get_first(path).and_then(|v| v.as_str()).unwrap_or("");
                if let Some(g) = &generator {
                    std::hint::black_box(g.snippet_from_doc(&d).to_html());
                }
                paths.push(p.to_string());
            }
            Ok(paths)
        };
        let paths = run()?;
        let mut times = Vec::with_capacity(repeat);
        for _ in 0..repeat {
            let t = Instant::now();
            run()?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        latencies.push(percentile(&times, 0.5));
        rankings.push((j.query.clone(), paths));
    }
    finish(&a.positional[2], &rankings, latencies)
}

fn cmd_wasmlink_query(args: &[String]) -> Result<()> {
    let a = Args::parse(args, &["no-snippets"], 4)?;
    let repeat = a.num("repeat", 20)?.max(1);
    let (bin, index) = (&a.positional[0], &a.positional[1]);
    let no_snippets: &[&str] = if a.options.contains_key("no-snippets") {
        &["--no-snippets"]
    } else {
        &[]
    };
    let queries = load_queries(&a.positional[2], &a.prefix())?;
    let mut rankings = Vec::new();
    let mut latencies = Vec::new();
    for j in &queries {
        let out = Command::new(bin)
            .args(["search", index.as_str(), j.query.as_str(), "-k"])
            .arg(K.to_string())
            .args(["--json", "--repeat"])
            .arg(repeat.to_string())
            .args(no_snippets)
            .output()
            .map_err(|e| format!("{bin}: {e}"))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() {
            return Err(format!(
                "{bin} search {:?}: {}: {stderr}",
                j.query, out.status
            ));
        }
        let mut paths = Vec::new();
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let v: serde_json::Value =
                serde_json::from_str(line).map_err(|e| format!("{bin} search: {e}: {line}"))?;
            paths.push(v["path"].as_str().unwrap_or("").to_string());
        }
        // "query latency over N runs: p50 X ms, p99 Y ms (...)"
        let p50 = stderr
            .split("p50 ")
            .nth(1)
            .and_then(|s| s.split(' ').next())
            .and_then(|s| s.parse::<f64>().ok())
            .ok_or_else(|| format!("{bin} search: no latency line in: {stderr}"))?;
        latencies.push(p50);
        rankings.push((j.query.clone(), paths));
    }
    finish(&a.positional[3], &rankings, latencies)
}

fn cmd_score(args: &[String]) -> Result<()> {
    let a = Args::parse(args, &["misses"], 2)?;
    let queries = load_queries(&a.positional[0], &a.prefix())?;
    let ranking_path = &a.positional[1];
    let text = std::fs::read_to_string(ranking_path).map_err(|e| format!("{ranking_path}: {e}"))?;
    let mut ranked: HashMap<&str, Vec<(usize, &str)>> = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let mut parts = line.splitn(3, '\t');
        let (Some(q), Some(r), Some(p)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!(
                "{ranking_path}:{}: not query TAB rank TAB path",
                n + 1
            ));
        };
        let r: usize = r
            .parse()
            .map_err(|_| format!("{ranking_path}:{}: bad rank {r:?}", n + 1))?;
        ranked.entry(q).or_default().push((r, p));
    }
    let (mut mrr, mut recall3, mut ndcg) = (0.0, 0.0, 0.0);
    let mut misses = String::new();
    for j in &queries {
        let mut list = ranked.get(j.query.as_str()).cloned().unwrap_or_default();
        list.sort_unstable();
        // The rank of the first expected page in the top 10 (any one of them is the answer).
        let first = list
            .iter()
            .filter(|(r, _)| *r <= K)
            .find(|(_, p)| j.expected.iter().any(|e| e == p))
            .map(|(r, _)| *r);
        if let Some(r) = first {
            mrr += 1.0 / r as f64;
            ndcg += 1.0 / (r as f64 + 1.0).log2();
            if r <= 3 {
                recall3 += 1.0;
            }
        }
        if a.options.contains_key("misses") && first.is_none_or(|r| r > 3) {
            let rank = first.map_or("not in the top 10".to_string(), |r| format!("rank {r}"));
            let above: Vec<&str> = list
                .iter()
                .take_while(|(r, _)| first.map_or(*r <= 3, |f| *r < f))
                .map(|(_, p)| *p)
                .collect();
            misses.push_str(&format!(
                "{:?}: {} {rank}; above: {}\n",
                j.query,
                j.expected[0],
                above.join(", ")
            ));
        }
    }
    let n = queries.len() as f64;
    println!(
        "{}",
        serde_json::json!({
            "queries": queries.len(),
            "mrr10": mrr / n,
            "recall3": recall3 / n,
            "ndcg10": ndcg / n,
        })
    );
    if !misses.is_empty() {
        eprint!("{misses}");
    }
    Ok(())
}
