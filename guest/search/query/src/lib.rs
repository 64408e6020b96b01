//! The search engine's query module: BM25 top-k over the index at `/index`, which its policy
//! grants read-only (examples/search/query.toml).
//!
//! - `search(input: &str) -> String`: `input` is either the query text (10 results) or JSON
//!   `{"query": "...", "k": N, "snippets": false}` (`k` and `snippets` optional; without
//!   snippets each hit's `snippet` and `highlights` are `null` and its text is not read). The result is JSON Lines, best first, one
//!   `{"rank": 1, "score": 7.25, "title": "...", "path": "...", "file": "...", "snippet":
//!   "...", "highlights": [[start, end], ...]}` per hit (scores are [`wasmlink_search::Bm25`]
//!   over body and title with the default parameters, printed so that they read back as the
//!   same `f64`; `path` as indexed, `file` the corpus root recorded in the index joined with it,
//!   or `path` again if the index has no root; `snippet` a window of the page's text, with the
//!   byte ranges of the matched words in `highlights`, or `null` for a page without stored
//!   text). The query syntax is [`wasmlink_search::Query::parse`]'s; a query that cannot be
//!   read is an error. No hits: an empty string. The index is opened on the first call and kept
//!   for the instance's lifetime.
//! - `try_write(path: &str) -> String`: tries to create `path` and write to it, and returns
//!   `ok` or the error (`kind`, `os error N`). It exists so that tests can show what the policy
//!   does to a write under `/index`; the search code itself never writes.

use std::cell::RefCell;
use std::io::Write;
use std::rc::Rc;

use serde::Deserialize;
use wasmlink_guest::export;
use wasmlink_search::{Bm25, Index, Query};

/// Where the policy grants the index directory (read-only).
pub const INDEX_DIR: &str = "/index";
/// Results when the input does not say.
pub const DEFAULT_K: usize = 10;

thread_local! {
    static INDEX: RefCell<Option<Rc<Index>>> = const { RefCell::new(None) };
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    query: String,
    #[serde(default = "default_k")]
    k: usize,
    #[serde(default = "default_snippets")]
    snippets: bool,
}

fn default_snippets() -> bool {
    true
}

fn default_k() -> usize {
    DEFAULT_K
}

fn open() -> Result<Rc<Index>, String> {
    INDEX.with_borrow_mut(|slot| {
        if let Some(index) = slot {
            return Ok(index.clone());
        }
        let index = Rc::new(Index::open(INDEX_DIR).map_err(|e| e.to_string())?);
        *slot = Some(index.clone());
        Ok(index)
    })
}

/// Answers a query (see the crate documentation).
#[export]
pub fn search(input: &str) -> Result<String, String> {
    let request = if input.trim_start().starts_with('{') {
        serde_json::from_str::<Request>(input).map_err(|e| format!("query request: {e}"))?
    } else {
        Request {
            query: input.to_string(),
            k: DEFAULT_K,
            snippets: true,
        }
    };
    let index = open()?;
    let query = Query::parse(&request.query).map_err(|e| e.to_string())?;
    let hits = index
        .search_query(&query, request.k, Bm25::default())
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    for (i, hit) in hits.iter().enumerate() {
        let file = match index.root() {
            Some(root) => format!("{}/{}", root.trim_end_matches('/'), hit.path),
            None => hit.path.clone(),
        };
        let snippet = if request.snippets {
            index.snippet_of(hit, &query).map_err(|e| e.to_string())?
        } else {
            None
        };
        let line = serde_json::json!({
            "rank": i + 1,
            "score": hit.score,
            "title": hit.title,
            "path": hit.path,
            "file": file,
            "snippet": snippet.as_ref().map(|s| &s.text),
            "highlights": snippet.as_ref().map(|s| &s.highlights),
        });
        out.push_str(&line.to_string());
        out.push('\n');
    }
    Ok(out)
}

/// Tries to create and write `path` (see the crate documentation).
#[export]
pub fn try_write(path: &str) -> String {
    let result = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .and_then(|mut f| f.write_all(b"x"));
    match result {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("{:?}: {e}", e.kind()),
    }
}
