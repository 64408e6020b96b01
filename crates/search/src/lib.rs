//! The search engine's text and index core.
//!
//! This crate is the part of wasmlink's modular search engine that does the actual work on
//! text: it is pure Rust with no host dependencies, so the very same code is compiled into the
//! wasm32-wasip1 guest modules that the pipeline runs (extractor, tokenizer, normaliser,
//! indexer, query) and natively for the benchmark that runs it without wasmlink.
//!
//! The stages, each a plain function over plain Rust types so that a guest module can wrap
//! one of them and stream batches through it:
//!
//! 1. [`extract`]: HTML, Markdown or plain text bytes to a [`Doc`] (title and plain text).
//! 2. [`tokenize`]: text to words (Unicode word boundaries, UAX #29).
//! 3. [`normalize`]: words to index terms (lowercase, stop words dropped, Snowball English stem).
//! 4. [`IndexBuilder`]: terms of each document to postings; builders of several batches or
//!    workers are combined with [`IndexBuilder::merge`]. [`IndexWriter`] writes the index into
//!    a directory atomically; [`Index::open`] reads it back.
//! 5. [`Index::search`]: BM25 top-k over the body and title fields (see [`Bm25`],
//!    [`Query::parse`] for phrases, `-word` and `title:word`), [`Index::snippet`].
//!
//! [`skip_reason`] says which pages are not indexed (redirects, old editions, `print.html`, ...).
//!
//! ```
//! use wasmlink_search::{DocKind, IndexBuilder, IndexWriter, analyze, extract};
//!
//! let doc = extract(b"<title>Ferris</title><main><h1>Ferris</h1><p>Crabs are running.</p></main>",
//!                   DocKind::Html);
//! assert_eq!(doc.title, "Ferris");
//! assert_eq!(doc.text, "Ferris\nCrabs are running.");
//! let terms = analyze(&doc.text);
//! assert_eq!(terms, ["ferri", "crab", "run"]);
//!
//! let mut builder = IndexBuilder::new();
//! builder.add(&doc.title, "ferris.html", &terms).unwrap();
//! let index = IndexWriter::new(&builder).unwrap().to_index().unwrap();
//! let hits = index.search("crab runs", 10).unwrap();
//! assert_eq!(hits[0].path, "ferris.html");
//! ```
//!
//! Everything here is deterministic: the same input gives the same text, terms, index bytes
//! and scores on every run, natively and in wasm (no randomly seeded hashing, no clock, no
//! threads). The on-disk index format is versioned ([`FORMAT_VERSION`]).
//!
//! [`native`] (not compiled for wasm) is the native comparison harness: the same stages on
//! worker threads over files, for `wasmlink index --compare-native` and `benches/native.rs`.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod ascii;
mod extract;
mod index;
#[cfg(not(target_family = "wasm"))]
pub mod native;
mod normalize;
mod query;
mod skip;
mod tokenize;

pub use extract::{Doc, DocKind, extract};
pub use index::{
    DocId, DocInfo, FORMAT_NAME, FORMAT_VERSION, FileInfo, Index, IndexBuilder, IndexError,
    IndexWriter, Manifest, Posting, PostingsPart, Segment, TextPart, merge_commit, merge_postings,
    merge_segments, merge_text,
};
pub use normalize::{MAX_TERM_BYTES, Normalizer, STOP_WORDS, normalize, stop_words_only};
pub use query::{Bm25, Hit, Query, QueryError, SNIPPET_WORDS, Snippet, TITLE_WEIGHT};
pub use skip::{SkipReason, skip_reason, skip_reason_for_path};
pub use tokenize::{tokenize, tokens};

/// Tokenizes and normalises `text` in one call: `normalize(tokenize(text))`.
///
/// These are the terms an indexer stores for a document and the terms a query looks up.
pub fn analyze(text: &str) -> Vec<String> {
    Normalizer::new().normalize_all(tokens(text))
}

/// The tests' random numbers: xorshift64 from a fixed seed (the same sequence on every run).
#[cfg(test)]
pub(crate) fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed;
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

/// Random texts for the crate's comparison tests: `count` byte strings of up to `max_pieces`
/// pieces drawn from `pieces`, by [`xorshift`] from `seed` (the same texts on every run).
#[cfg(test)]
pub(crate) fn random_texts<P: AsRef<[u8]>>(
    seed: u64,
    pieces: &[P],
    count: usize,
    max_pieces: u64,
) -> Vec<Vec<u8>> {
    let mut next = xorshift(seed);
    (0..count)
        .map(|_| {
            let mut text = Vec::new();
            for _ in 0..next() % (max_pieces + 1) {
                text.extend_from_slice(pieces[(next() % pieces.len() as u64) as usize].as_ref());
            }
            text
        })
        .collect()
}
