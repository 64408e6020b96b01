//! The search engine as modules (guest/search/*): `wasmlink index` and `wasmlink search` over a
//! small fixed corpus, BM25 checked against an independent computation, and the modules'
//! policies (tokenize needs nothing; query cannot write to the index).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{ArrayRef, RecordBatch, StringArray};
use wasmlink::plugin::{HostConfig, PluginHost};
use wasmlink::policy::{DirGrant, DirMode, Policy};

use crate::support::{self, stderr, stdout, wasmlink, wasmlink_in};

fn modules_dir() -> PathBuf {
    support::guest_modules()
}

/// The fixed corpus: (file, title, the words of its text). Every word is its own term (no stop
/// words, already stemmed), so the test can count terms without the engine's code.
const DOCS: &[(&str, &str, &str)] = &[
    ("a.html", "Crabs", "rust crab crab borrow"),
    ("b.md", "Heap", "heap heap stack box rust"),
    ("c.html", "Traits", "trait trait trait rust vec map key key"),
    ("d.md", "Borrow", "borrow borrow borrow crab stack"),
    ("e.html", "Boxes", "box vec vec map rust rust rust"),
    ("f.md", "Key", "key key map crab"),
];

/// Writes the corpus: HTML pages (title in <title>, text in <body>), Markdown files (the title
/// is the first heading, whose one word is also the text's first word), and one redirect stub
/// that must not be indexed.
fn write_corpus(dir: &Path) {
    for (file, title, words) in DOCS {
        let body = if file.ends_with(".html") {
            format!(
                "<!DOCTYPE html><html><head><title>{title}</title><style>p {{}}</style></head>\
                 <body><p>{words}</p></body></html>"
            )
        } else {
            let (first, rest) = words.split_once(' ').unwrap();
            assert_eq!(first.to_lowercase(), title.to_lowercase());
            format!("# {title}\n\n{rest}\n")
        };
        std::fs::write(dir.join(file), body).unwrap();
    }
    std::fs::write(
        dir.join("moved.html"),
        "<html><head><meta http-equiv=\"refresh\" content=\"0; URL=a.html\">\
         <title>Redirect</title></head><body>crab crab crab crab</body></html>",
    )
    .unwrap();
}

/// The terms of each title of [`DOCS`] (stemmed by hand).
const TITLE_TERMS: [&str; 6] = ["crab", "heap", "trait", "borrow", "box", "key"];

/// BM25 (k1 1.2, b 0.75, Lucene's idf, (k1 + 1) in the numerator) of every document matching
/// `query`, best first, ties by corpus order: (path, score). The score is the body's BM25 plus
/// twice the title's (the title a field of its own, with its own idf and mean length).
fn bm25(query: &[&str]) -> Vec<(String, f64)> {
    let body: Vec<Vec<&str>> = DOCS.iter().map(|d| d.2.split(' ').collect()).collect();
    let titles: Vec<Vec<&str>> = TITLE_TERMS.iter().map(|t| vec![*t]).collect();
    let mut scores: BTreeMap<usize, f64> = BTreeMap::new();
    for (docs, weight) in [(&body, 1.0), (&titles, 2.0)] {
        for (i, s) in bm25_field(docs, query) {
            *scores.entry(i).or_default() += weight * s;
        }
    }
    let mut ranked: Vec<(usize, f64)> = scores.into_iter().collect();
    ranked.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
    ranked
        .into_iter()
        .map(|(i, s)| (DOCS[i].0.to_string(), s))
        .collect()
}

/// BM25 of one field: (document, score) of the documents with a query term.
fn bm25_field(docs: &[Vec<&str>], query: &[&str]) -> BTreeMap<usize, f64> {
    let (k1, b) = (1.2f64, 0.75f64);
    let n = docs.len() as f64;
    let avgdl = docs.iter().map(|d| d.len()).sum::<usize>() as f64 / n;
    let mut distinct: Vec<&str> = query.to_vec();
    distinct.sort();
    distinct.dedup();
    let mut scores: BTreeMap<usize, f64> = BTreeMap::new();
    for t in distinct {
        let df = docs.iter().filter(|d| d.contains(&t)).count() as f64;
        if df == 0.0 {
            continue;
        }
        let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
        for (i, d) in docs.iter().enumerate() {
            let tf = d.iter().filter(|w| **w == t).count() as f64;
            if tf > 0.0 {
                let dl = d.len() as f64;
                *scores.entry(i).or_default() +=
                    idf * tf * (k1 + 1.0) / (tf + k1 * (1.0 - b + b * dl / avgdl));
            }
        }
    }
    scores
}

/// Parses the query module's JSON Lines: (rank, score, title, path).
fn parse_hits(out: &str) -> Vec<(u64, f64, String, String)> {
    out.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["rank"].as_u64().unwrap(),
                v["score"].as_f64().unwrap(),
                v["title"].as_str().unwrap().to_string(),
                v["path"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Checks hits against the top `k` of [`bm25`].
fn check_against_bm25(hits: &[(u64, f64, String, String)], query: &[&str], k: usize) {
    let mut want = bm25(query);
    want.truncate(k);
    assert_eq!(hits.len(), want.len(), "hits {hits:?}, want {want:?}");
    for (i, (hit, (path, score))) in hits.iter().zip(&want).enumerate() {
        assert_eq!(hit.0, i as u64 + 1);
        assert_eq!(&hit.3, path, "rank {}: {hits:?} vs {want:?}", i + 1);
        assert!(
            (hit.1 - score).abs() < 1e-6,
            "{path}: score {} vs BM25 {score}",
            hit.1
        );
        let title = DOCS.iter().find(|d| d.0 == path).unwrap().1;
        assert_eq!(hit.2, title);
    }
}

/// Indexes the corpus into a fresh temporary directory; returns (tempdir, corpus, index).
fn indexed(workers: &str, batch_rows: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let modules = modules_dir();
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("corpus");
    let index = tmp.path().join("index");
    std::fs::create_dir(&corpus).unwrap();
    write_corpus(&corpus);
    let out = wasmlink(&[
        "index",
        "--corpus",
        corpus.to_str().unwrap(),
        "--out",
        index.to_str().unwrap(),
        "--workers",
        workers,
        "--batch-rows",
        batch_rows,
        "--modules",
        modules.to_str().unwrap(),
        "--no-progress",
    ]);
    assert!(out.status.success(), "index failed: {}", stderr(&out));
    assert!(
        stderr(&out).contains("indexed 6 documents (7 files read"),
        "{}",
        stderr(&out)
    );
    (tmp, corpus, index)
}

fn query_policy(index: &Path) -> Policy {
    Policy {
        dirs: vec![DirGrant {
            host: index.to_path_buf(),
            guest: "/index".into(),
            mode: DirMode::ReadOnly,
        }],
        ..Policy::default()
    }
}

#[test]
fn cli_ranks_by_bm25() {
    let (_tmp, _corpus, index) = indexed("2", "2");
    let modules = modules_dir();
    // Segments are merged and removed; the index files are in place.
    assert!(!index.join("segments").exists());
    for f in [
        "manifest.json",
        "docs.bin",
        "terms.bin",
        "postings.bin",
        "text.bin",
    ] {
        assert!(index.join(f).is_file(), "{f}");
    }
    for query in [
        &["crab", "borrow"][..],
        &["rust", "key"],
        &["heap"],
        &["trait", "vec", "vec"],
    ] {
        let text = query.join(" ");
        let out = wasmlink(&[
            "search",
            index.to_str().unwrap(),
            &text,
            "--json",
            "--modules",
            modules.to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        check_against_bm25(&parse_hits(&stdout(&out)), query, 10);
    }
    // The exact ranking of one query, as a reader would check it by hand.
    let out = wasmlink(&[
        "search",
        index.to_str().unwrap(),
        "Borrowing crabs",
        "--modules",
        modules.to_str().unwrap(),
        "-k",
        "2",
        "--relative",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 6, "{text}");
    assert!(
        lines[0].starts_with("  1. ") && lines[0].ends_with("  Borrow"),
        "{text}"
    );
    assert_eq!(lines[1].trim(), "d.md");
    // The snippet: the page's text, matched words plain (stdout is not a terminal).
    assert_eq!(lines[2].trim(), "Borrow borrow borrow crab stack");
    assert!(
        lines[3].starts_with("  2. ") && lines[3].ends_with("  Crabs"),
        "{text}"
    );
    assert_eq!(lines[4].trim(), "a.html");
    assert_eq!(lines[5].trim(), "rust crab crab borrow");
    // Without --relative: the whole path, under the corpus root the index recorded.
    let out = wasmlink(&[
        "search",
        index.to_str().unwrap(),
        "heap",
        "--modules",
        modules.to_str().unwrap(),
    ]);
    let text = stdout(&out);
    let corpus = std::path::absolute(_corpus.as_path()).unwrap();
    assert_eq!(
        text.lines().nth(1).map(str::trim),
        Some(corpus.join("b.md").to_str().unwrap()),
        "{text}"
    );
    // No match.
    let out = wasmlink(&[
        "search",
        index.to_str().unwrap(),
        "zebra",
        "--modules",
        modules.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    assert_eq!(stdout(&out), "no results\n");
}

#[test]
fn index_is_the_same_for_any_workers_and_batches() {
    let (_t1, _c1, one) = indexed("1", "3");
    let (_t2, _c2, two) = indexed("2", "1");
    // The manifests differ only in the corpus root each recorded.
    let manifest = |dir: &Path| {
        let mut m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
        m.as_object_mut().unwrap().remove("root").unwrap();
        m
    };
    assert_eq!(manifest(&one), manifest(&two));
    for f in ["docs.bin", "terms.bin", "postings.bin", "text.bin"] {
        assert_eq!(
            std::fs::read(one.join(f)).unwrap(),
            std::fs::read(two.join(f)).unwrap(),
            "{f} differs"
        );
    }
}

/// The index module's two-part merge refuses what it cannot use, in one line: an unknown
/// part, a commit whose parts' files are not there (nothing merged yet), a commit argument
/// that is not the parts' JSON; and a good run of both parts then the commit leaves a
/// complete index and no segments.
#[test]
fn index_module_merge_parts_refuse_bad_arguments() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("index");
    std::fs::create_dir(&dir).unwrap();
    let host = PluginHost::new(HostConfig::default()).unwrap();
    let policy = Policy {
        dirs: vec![DirGrant {
            host: dir.clone(),
            guest: "/index".into(),
            mode: DirMode::ReadWrite,
        }],
        ..Policy::default()
    };
    let index = host
        .load_file(&modules_dir().join("index.wasm"), policy)
        .unwrap();
    let mut terms =
        arrow_array::builder::ListBuilder::new(arrow_array::builder::StringBuilder::new());
    for words in [["crab", "rust"], ["heap", "rust"]] {
        for w in words {
            terms.values().append_value(w);
        }
        terms.append(true);
    }
    let batch = RecordBatch::try_from_iter([
        (
            "path",
            Arc::new(StringArray::from(vec!["a.md", "b.md"])) as ArrayRef,
        ),
        (
            "title",
            Arc::new(StringArray::from(vec!["A", "B"])) as ArrayRef,
        ),
        ("terms", Arc::new(terms.finish()) as ArrayRef),
    ])
    .unwrap();
    index.call_arrow("index", &batch).unwrap();

    let err = index
        .call_str("merge_part", r#"{"part":"words"}"#)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("merge_part argument") && !err.contains('\n'),
        "{err}"
    );
    let err = index
        .call_str("merge_commit", r#"{"text": 1}"#)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("merge_commit argument") && !err.contains('\n'),
        "{err}"
    );
    // One part's file gone (removed, or a part that never finished): named, no manifest.
    let text = index.call_str("merge_part", r#"{"part":"text"}"#).unwrap();
    let postings = index
        .call_str("merge_part", r#"{"part":"postings"}"#)
        .unwrap();
    std::fs::remove_file(dir.join(".postings.bin.tmp")).unwrap();
    let commit = format!(r#"{{"root": null, "text": {text}, "postings": {postings}}}"#);
    let err = index
        .call_str("merge_commit", &commit)
        .unwrap_err()
        .to_string();
    assert!(err.contains(".postings.bin.tmp"), "{err}");
    assert!(!dir.join("manifest.json").exists());
    // Run the postings part again and commit: a complete index, the segments gone.
    let postings = index
        .call_str("merge_part", r#"{"part":"postings"}"#)
        .unwrap();
    let commit = format!(r#"{{"root": "/c", "text": {text}, "postings": {postings}}}"#);
    let summary: serde_json::Value =
        serde_json::from_str(&index.call_str("merge_commit", &commit).unwrap()).unwrap();
    assert_eq!(summary["docs"], 2);
    assert_eq!(summary["segments"], 1);
    assert!(dir.join("manifest.json").exists());
    assert!(!dir.join("segments").exists());
}

#[test]
fn query_module_searches_and_cannot_write() {
    let (_tmp, _corpus, index) = indexed("1", "4");
    let host = PluginHost::new(HostConfig::default()).unwrap();
    let query = host
        .load_file(&modules_dir().join("query.wasm"), query_policy(&index))
        .unwrap();
    let mut inst = query.instance().unwrap();
    let hits = parse_hits(&inst.call_str("search", "crab borrow").unwrap());
    check_against_bm25(&hits, &["crab", "borrow"], 10);
    let hits = parse_hits(
        &inst
            .call_str("search", r#"{"query": "rust", "k": 2}"#)
            .unwrap(),
    );
    assert_eq!(bm25(&["rust"]).len(), 4);
    check_against_bm25(&hits, &["rust"], 2);

    // Writing under the read-only grant: EPERM (WASI errno 63) from the host's WASI layer.
    assert_eq!(
        inst.call_str("try_write", "/index/evil.txt").unwrap(),
        "PermissionDenied: Operation not permitted (os error 63)"
    );
    assert_eq!(
        inst.call_str("try_write", "/index/manifest.json").unwrap(),
        "PermissionDenied: Operation not permitted (os error 63)"
    );
    // Outside the grant there is nothing at all: ENOENT (WASI errno 44), no preopen matches.
    assert_eq!(
        inst.call_str("try_write", "/tmp/evil.txt").unwrap(),
        "NotFound: No such file or directory (os error 44)"
    );
    assert!(!index.join("evil.txt").exists());
    assert_eq!(
        Policy::default().dirs.len(),
        0,
        "the default policy grants nothing"
    );
}

#[test]
fn tokenizer_needs_no_capabilities() {
    let host = PluginHost::new(HostConfig::default()).unwrap();
    // The policy grants nothing: no directory, no environment, no clocks, closed stdio.
    let tokenize = host
        .load_file(&modules_dir().join("tokenize.wasm"), Policy::default())
        .unwrap();
    let schema = Arc::new(arrow_schema::Schema::new(vec![
        arrow_schema::Field::new("path", arrow_schema::DataType::Utf8, false),
        arrow_schema::Field::new("text", arrow_schema::DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(vec!["a", "b"])) as ArrayRef,
            Arc::new(StringArray::from(vec![
                "Vec::push(x) isn't foo_bar, 3.14",
                "",
            ])),
        ],
    )
    .unwrap();
    let out = tokenize.call_arrow("tokenize", &batch).unwrap();
    let names: Vec<&str> = out
        .schema_ref()
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect();
    // The text is kept: the index stores it for snippets and phrases.
    assert_eq!(names, ["path", "text", "tokens"]);
    let tokens = out.column(2).as_list::<i32>();
    let row = |i: usize| -> Vec<String> {
        let v = tokens.value(i);
        v.as_string::<i32>()
            .iter()
            .map(|s| s.unwrap().to_string())
            .collect()
    };
    assert_eq!(
        row(0),
        ["Vec", "push", "x", "isn't", "foo", "bar", "3", "14"]
    );
    assert!(row(1).is_empty());
    // A batch without `text` is an error the guest reports, naming the column.
    let bad = RecordBatch::try_new(
        Arc::new(arrow_schema::Schema::new(vec![arrow_schema::Field::new(
            "path",
            arrow_schema::DataType::Utf8,
            false,
        )])),
        vec![Arc::new(StringArray::from(vec!["a"])) as ArrayRef],
    )
    .unwrap();
    let err = tokenize
        .call_arrow("tokenize", &bad)
        .unwrap_err()
        .to_string();
    assert!(err.contains("input batch has no `text` column"), "{err}");
}

/// The analyze module (what `wasmlink index` runs) gives exactly the terms of the tokenize
/// module followed by the normalize module, keeps the other columns, and reports a missing or
/// null `text` naming it; all under a policy that grants nothing.
#[test]
fn analyze_equals_tokenize_then_normalize() {
    let host = PluginHost::new(HostConfig::default()).unwrap();
    let load = |name: &str| {
        host.load_file(
            &modules_dir().join(format!("{name}.wasm")),
            Policy::default(),
        )
        .unwrap()
    };
    let (analyze, tokenize, normalize) = (load("analyze"), load("tokenize"), load("normalize"));
    // Mixed case, stop words, punctuation inside words, non-ASCII, a right single quote, an
    // overlong word, an empty text; then the same words again (the normaliser's cache).
    let long = "x".repeat(80);
    let texts: Vec<String> = vec![
        "The Borrow Checker: references and borrowing rules.".into(),
        format!("vec.push(x); HashMap::new() it\u{2019}s Ünïcode WÖRDS and the a an {long}"),
        String::new(),
        "The Borrow Checker: references and borrowing rules.".into(),
    ];
    let paths: Vec<String> = (0..texts.len()).map(|i| format!("p{i}")).collect();
    let batch = RecordBatch::try_from_iter([
        ("path", Arc::new(StringArray::from(paths)) as ArrayRef),
        (
            "text",
            Arc::new(StringArray::from(texts.clone())) as ArrayRef,
        ),
    ])
    .unwrap();
    let one = analyze.call_arrow("analyze", &batch).unwrap();
    let two = normalize
        .call_arrow(
            "normalize",
            &tokenize.call_arrow("tokenize", &batch).unwrap(),
        )
        .unwrap();
    let names = |b: &RecordBatch| -> Vec<String> {
        b.schema_ref()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect()
    };
    assert_eq!(names(&one), ["path", "text", "terms"]);
    assert_eq!(names(&one), names(&two));
    assert_eq!(one, two, "analyze differs from tokenize + normalize");
    let terms = one.column(2).as_list::<i32>();
    let row = |i: usize| -> Vec<String> {
        terms
            .value(i)
            .as_string::<i32>()
            .iter()
            .map(|s| s.unwrap().to_string())
            .collect()
    };
    assert_eq!(row(0), ["borrow", "checker", "refer", "borrow", "rule"]);
    assert!(row(2).is_empty());
    assert_eq!(row(0), row(3));

    let no_text =
        RecordBatch::try_from_iter([("path", Arc::new(StringArray::from(vec!["a"])) as ArrayRef)])
            .unwrap();
    let err = analyze
        .call_arrow("analyze", &no_text)
        .unwrap_err()
        .to_string();
    assert!(err.contains("input batch has no `text` column"), "{err}");
    let null = RecordBatch::try_from_iter([(
        "text",
        Arc::new(StringArray::from(vec![Some("x"), None])) as ArrayRef,
    )])
    .unwrap();
    let err = analyze
        .call_arrow("analyze", &null)
        .unwrap_err()
        .to_string();
    assert!(err.contains("row 1: `text` is null"), "{err}");
}

#[test]
fn index_include_and_exclude_globs_choose_the_files_on_both_sides_of_compare_native() {
    let modules = modules_dir();
    let tmp = tempfile::tempdir().unwrap();
    let corpus = tmp.path().join("corpus");
    std::fs::create_dir(&corpus).unwrap();
    write_corpus(&corpus);
    let index = tmp.path().join("index");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "index",
            "--corpus",
            corpus.to_str().unwrap(),
            "--out",
            index.to_str().unwrap(),
            "--modules",
            modules.to_str().unwrap(),
            "--no-progress",
        ];
        args.extend_from_slice(extra);
        wasmlink(&args)
    };
    // b.md and d.md; f.md is excluded. --compare-native fails if the native side, which
    // lists the files itself, finds a different number of documents.
    let out = run(&["--include", "*.md", "--exclude", "f.*", "--compare-native"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("indexed 2 documents (2 files read")
            && stderr(&out)
                .contains("native (same wasmlink-search code, 2 thread(s), no wasm): 2 documents"),
        "{}",
        stderr(&out)
    );
    let out = run(&["--include", "[x"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out).trim(),
        "wasmlink: --include: bad pattern `[x`: unclosed character class; missing ']'"
    );
    let out = run(&["--include", "*.rs"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no html/htm/md/markdown/txt files match --include"),
        "{}",
        stderr(&out)
    );
    // A pattern that matches everything still indexes only the text kinds, not style sheets.
    std::fs::write(corpus.join("style.css"), "body { color: crab }").unwrap();
    let out = run(&["--include", "**"]);
    assert!(
        stderr(&out).contains("indexed 6 documents (7 files read"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn missing_modules_and_corpus_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let out = wasmlink_in(
        &[
            "index",
            "--corpus",
            tmp.path().to_str().unwrap(),
            "--out",
            tmp.path().join("i").to_str().unwrap(),
            "--modules",
            tmp.path().join("nope").to_str().unwrap(),
        ],
        None,
        &[],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("extract.wasm: module not found")
            && err.contains("bash scripts/build-guests.sh"),
        "{err}"
    );
    let out = wasmlink(&[
        "index",
        "--corpus",
        tmp.path().join("none").to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("--corpus: no such directory"),
        "{}",
        stderr(&out)
    );
    // A file where the directory belongs: said so, with the flag that picks files.
    let file = tmp.path().join("a.md");
    std::fs::write(&file, "# A\n").unwrap();
    let out = wasmlink(&["index", "--corpus", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("a.md: --corpus: not a directory: give the directory that holds the documents (choose files in it with --include GLOB)"),
        "{}",
        stderr(&out)
    );
    let out = wasmlink(&["search", tmp.path().join("none").to_str().unwrap(), "x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no such index directory"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_query_of_only_stop_words_says_why_it_has_no_results() {
    let (_tmp, _corpus, index) = indexed("1", "64");
    let modules = modules_dir();
    let search = |query: &str, json: bool| {
        let mut args = vec![
            "search",
            index.to_str().unwrap(),
            query,
            "--modules",
            modules.to_str().unwrap(),
        ];
        if json {
            args.push("--json");
        }
        let out = wasmlink(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        (stdout(&out), stderr(&out))
    };
    assert_eq!(
        search("the", false).0,
        "no results: every term of the query is a stop word (the)\n"
    );
    assert_eq!(
        search("The AND the", false).0,
        "no results: every term of the query is a stop word (the, and)\n"
    );
    // A word that is not a stop word but matches nothing: the plain message.
    assert_eq!(search("the zebra", false).0, "no results\n");
    // --json keeps stdout JSON Lines (none) and says why on stderr.
    let (out, err) = search("the", true);
    assert_eq!(out, "");
    assert!(
        err.contains("no results: every term of the query is a stop word (the)"),
        "{err}"
    );
}

/// Indexes tests/fixtures/search-rank (two chapters, and copies of them that must not be
/// indexed: print.html, toc.html, an old edition, a translation, a source listing, a
/// redirect); returns (tempdir, index, wasmlink index's stderr).
fn ranked_fixture() -> (tempfile::TempDir, PathBuf, String) {
    let tmp = tempfile::tempdir().unwrap();
    let index = tmp.path().join("index");
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/search-rank");
    let out = wasmlink(&[
        "index",
        "--corpus",
        corpus.to_str().unwrap(),
        "--out",
        index.to_str().unwrap(),
        "--modules",
        modules_dir().to_str().unwrap(),
        "--no-progress",
    ]);
    assert!(out.status.success(), "index failed: {}", stderr(&out));
    (tmp, index, stderr(&out))
}

/// Runs `wasmlink search --json --relative` and returns the hits' paths, or the error.
fn search_paths(index: &Path, query: &str) -> Result<Vec<String>, String> {
    let out = wasmlink(&[
        "search",
        index.to_str().unwrap(),
        query,
        "--json",
        "--modules",
        modules_dir().to_str().unwrap(),
    ]);
    if !out.status.success() {
        return Err(stderr(&out));
    }
    Ok(parse_hits(&stdout(&out)).into_iter().map(|h| h.3).collect())
}

#[test]
fn the_chapter_titled_like_the_query_ranks_first_and_copies_are_skipped() {
    let (_tmp, index, report) = ranked_fixture();
    assert!(
        report.contains("indexed 2 documents (8 files read"),
        "{report}"
    );
    assert!(
        report.contains(
            "skipped (not indexed): 1 redirect page, 1 old-edition copy, 1 print.html (whole \
             book), 1 toc.html, 1 translated page, 1 source listing\n"
        ),
        "{report}"
    );
    // The smart-pointers page says "box" and "heap" more often; the chapter's title has them.
    assert_eq!(
        search_paths(&index, "box heap").unwrap(),
        ["book/ch15-01-box.html", "book/ch15-00-smart-pointers.html"]
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(index.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["skipped"]["print"], 1, "{manifest}");
    assert_eq!(manifest["version"], 3);
}

#[test]
fn phrases_exclusion_title_filter_and_malformed_queries() {
    let (_tmp, index, _) = ranked_fixture();
    let q = |s: &str| search_paths(&index, s);
    assert_eq!(
        q("\"smart pointer\"").unwrap(),
        ["book/ch15-00-smart-pointers.html"]
    );
    assert_eq!(q("box -rc").unwrap(), ["book/ch15-01-box.html"]);
    assert_eq!(
        q("heap title:smart").unwrap(),
        ["book/ch15-00-smart-pointers.html"]
    );
    assert_eq!(q("box -").unwrap().len(), 2);
    let err = q("\"box heap").unwrap_err();
    assert!(
        err.contains("unterminated quote in the query: \"box heap (close the phrase with `\"`)")
            && err.lines().count() == 1,
        "{err}"
    );
    let err = q("box title:").unwrap_err();
    assert!(err.contains("`title:` needs a word after it"), "{err}");
    // A phrase of stop words: no results, and why.
    let out = wasmlink(&[
        "search",
        index.to_str().unwrap(),
        "\"the of\"",
        "--modules",
        modules_dir().to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("no results: every term of the query is a stop word"));
    // JSON: the snippet and its highlights.
    let out = wasmlink(&[
        "search",
        index.to_str().unwrap(),
        "overhead",
        "--json",
        "--modules",
        modules_dir().to_str().unwrap(),
    ]);
    let hit: serde_json::Value =
        serde_json::from_str(stdout(&out).lines().next().unwrap()).unwrap();
    let snippet = hit["snippet"].as_str().unwrap();
    let (a, b) = (
        hit["highlights"][0][0].as_u64().unwrap() as usize,
        hit["highlights"][0][1].as_u64().unwrap() as usize,
    );
    assert_eq!(&snippet[a..b], "overhead", "{hit}");
    assert!(
        hit["file"]
            .as_str()
            .unwrap()
            .ends_with("search-rank/book/ch15-01-box.html")
    );
}
