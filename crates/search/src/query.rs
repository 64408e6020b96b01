//! Reading queries, BM25 ranking over the body and title fields, phrases and snippets.

use crate::index::{DocId, Index, IndexError};
use crate::normalize::Normalizer;
use crate::tokenize::tokens;

mod rank;
pub(crate) use rank::ScratchCell;

/// BM25 parameters.
///
/// The score of document `d` for a query is the sum, over the query's **distinct** terms `t`
/// that occur in `d`, of
///
/// ```text
/// idf(t) * tf * (k1 + 1) / (tf + k1 * (1 - b + b * dl / avgdl))
/// idf(t) = ln(1 + (N - n + 0.5) / (n + 0.5))
/// ```
///
/// where `tf` is the term's frequency in `d`, `dl` the length of `d` in terms, `avgdl` the
/// mean length of all documents, `N` the number of documents and `n` the number that contain
/// `t`. The idf is Lucene's (`BM25Similarity`, never negative). Unlike Lucene 8 and later, the
/// classic `(k1 + 1)` factor is kept in the numerator (a constant factor: it does not change
/// the ranking), and document lengths are exact rather than Lucene's one-byte approximation.
/// A query term repeated in the query counts once. Sums are taken in `f64` in a fixed order
/// (the terms sorted; for a plain OR query, the (term, field) pairs by the most they can add,
/// which max-score pruning needs), so scores are the same on every platform.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bm25 {
    /// Term frequency saturation (default 1.2).
    pub k1: f64,
    /// Length normalisation (default 0.75).
    pub b: f64,
}

impl Default for Bm25 {
    fn default() -> Self {
        Bm25 { k1: 1.2, b: 0.75 }
    }
}

/// One search result.
#[derive(Clone, Debug, PartialEq)]
pub struct Hit {
    /// The document.
    pub doc: DocId,
    /// Its title.
    pub title: String,
    /// Its path or URL.
    pub path: String,
    /// Its score (greater is better): BM25 of the body plus [`TITLE_WEIGHT`] times BM25 of
    /// the title.
    pub score: f64,
    /// The query's distinct terms that occur in the page's body (sorted): the terms its
    /// snippet can show. [`Index::snippet_of`] stops reading the page once it has seen them.
    pub body_terms: Vec<String>,
}

/// How much a query term's BM25 score in the title field counts, against 1 for the body.
///
/// A page whose title holds the query's words is usually the page about them; the body's
/// score alone ranks a page that uses the words often above it. The title field has its own
/// document frequencies and mean length, as Tantivy's and Lucene's per-field BM25 do.
pub const TITLE_WEIGHT: f64 = 2.0;

/// The words a snippet shows at most.
pub const SNIPPET_WORDS: usize = 24;

/// The words of a page a snippet looks at most (the first ones).
const SNIPPET_SCAN_WORDS: usize = 20_000;

/// A query, parsed: see [`Query::parse`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Query {
    /// Terms that score (in the body or the title); a document matches if it has any of them.
    pub terms: Vec<String>,
    /// Phrases (each of two or more terms) a document must contain, in order and adjacent
    /// (stop words between them are not counted, as they are not indexed).
    pub phrases: Vec<Vec<String>>,
    /// Terms a document must not contain (in the body or the title).
    pub excluded: Vec<String>,
    /// Terms the title must contain.
    pub title: Vec<String>,
    /// Parts of the query that gave no term (words that are all stop words), as written.
    pub dropped: Vec<String>,
}

/// A query that cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// A `"` without its closing `"`.
    #[error("unterminated quote in the query: {0} (close the phrase with `\"`)")]
    UnterminatedQuote(String),
    /// `title:` with nothing after it.
    #[error("`title:` needs a word after it (title:WORD or title:\"some words\")")]
    EmptyField,
}

impl Query {
    /// Reads a query. Words (separated by whitespace) are tokenized and normalised like
    /// documents ([`analyze`](crate::analyze)) and OR-ed: a document matching any of them is
    /// a result, ranked by score. Besides plain words:
    ///
    /// - `"lifetime elision"`: a phrase; results must contain its terms in that order and
    ///   adjacent. A quoted single word is a required word.
    /// - `-word` or `-"some words"`: results must not contain these terms.
    /// - `title:word` or `title:"some words"`: results' titles must contain these terms.
    ///
    /// A `-` alone is ignored. Parts that are only stop words are dropped and listed in
    /// [`Query::dropped`].
    ///
    /// # Errors
    ///
    /// An unterminated quote, and `title:` with nothing after it.
    pub fn parse(query: &str) -> Result<Query, QueryError> {
        let mut q = Query::default();
        let mut normalizer = Normalizer::new();
        let mut analyze = |s: &str| normalizer.normalize_all(tokens(s));
        let mut rest = query;
        loop {
            rest = rest.trim_start();
            if rest.is_empty() {
                break;
            }
            let (exclude, field) = if let Some(r) = rest.strip_prefix('-') {
                rest = r;
                (true, false)
            } else if rest.len() >= 6 && rest[..6].eq_ignore_ascii_case("title:") {
                rest = &rest[6..];
                if rest.is_empty() || rest.starts_with(char::is_whitespace) {
                    return Err(QueryError::EmptyField);
                }
                (false, true)
            } else {
                (false, false)
            };
            let quoted;
            let part = if let Some(r) = rest.strip_prefix('"') {
                let Some(close) = r.find('"') else {
                    return Err(QueryError::UnterminatedQuote(rest.trim_end().to_owned()));
                };
                rest = &r[close + 1..];
                quoted = true;
                &r[..close]
            } else {
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                let part = &rest[..end];
                rest = &rest[end..];
                quoted = false;
                part
            };
            if exclude && part.is_empty() && !quoted {
                continue; // a `-` alone
            }
            let terms = analyze(part);
            if terms.is_empty() {
                if !part.trim().is_empty() {
                    q.dropped.push(part.to_owned());
                }
                continue;
            }
            if exclude {
                q.excluded.extend(terms);
            } else if field {
                q.title.extend(terms.iter().cloned());
                q.terms.extend(terms);
            } else {
                if quoted {
                    q.phrases.push(terms.clone());
                }
                q.terms.extend(terms);
            }
        }
        Ok(q)
    }

    /// Whether nothing in the query can match: no term that scores.
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }
}

/// A window of a document's text around the query's terms.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snippet {
    /// The text, on one line; `…` where it was cut.
    pub text: String,
    /// Byte ranges of `text` that are matched terms.
    pub highlights: Vec<(usize, usize)>,
}

/// Pushes `gap` with each run of whitespace (newlines included) as one space.
fn push_collapsed(out: &mut String, gap: &str) {
    let mut space = false;
    for c in gap.chars() {
        if c.is_whitespace() {
            space = true;
        } else {
            if space {
                out.push(' ');
                space = false;
            }
            out.push(c);
        }
    }
    if space {
        out.push(' ');
    }
}

/// BM25 of one term in one field.
struct FieldStats {
    avgdl: f64,
    n_docs: f64,
}

impl FieldStats {
    fn idf(&self, df: usize) -> f64 {
        let n = df as f64;
        (1.0 + (self.n_docs - n + 0.5) / (n + 0.5)).ln()
    }

    fn score(&self, params: Bm25, idf: f64, tf: u32, dl: u32) -> f64 {
        let tf = f64::from(tf);
        // avgdl > 0 here: the document has this term, so some length is positive.
        let norm = params.k1 * (1.0 - params.b + params.b * f64::from(dl) / self.avgdl);
        idf * tf * (params.k1 + 1.0) / (tf + norm)
    }
}

impl Index {
    /// The `k` best documents for `query` under [`Bm25::default`], best first; equal scores
    /// by increasing document id. The query is read by [`Query::parse`] (phrases, `-word`,
    /// `title:word`); documents matching none of its terms are not returned.
    ///
    /// # Errors
    ///
    /// A query that cannot be read ([`IndexError::Query`]), or a corrupt postings list.
    pub fn search(&self, query: &str, k: usize) -> Result<Vec<Hit>, IndexError> {
        let query = Query::parse(query)?;
        self.search_query(&query, k, Bm25::default())
    }

    /// Like [`search`](Self::search), for terms that are already normalised and with explicit
    /// parameters: the terms are OR-ed, nothing is required or excluded.
    pub fn search_terms<S: AsRef<str>>(
        &self,
        terms: &[S],
        k: usize,
        params: Bm25,
    ) -> Result<Vec<Hit>, IndexError> {
        let query = Query {
            terms: terms.iter().map(|t| t.as_ref().to_owned()).collect(),
            ..Query::default()
        };
        self.search_query(&query, k, params)
    }

    /// The `k` best documents for a parsed query.
    pub fn search_query(
        &self,
        query: &Query,
        k: usize,
        params: Bm25,
    ) -> Result<Vec<Hit>, IndexError> {
        let mut distinct: Vec<&str> = query.terms.iter().map(String::as_str).collect();
        distinct.sort_unstable();
        distinct.dedup();
        if k == 0 || distinct.is_empty() {
            return Ok(Vec::new());
        }

        self.rank(query, &distinct, k, params)
    }

    /// Whether `doc` has every phrase in its title or its stored text. A document indexed
    /// without text has each phrase if it has all of its terms.
    fn has_phrases(&self, doc: DocId, phrases: &[Vec<String>]) -> Result<bool, IndexError> {
        let info = &self.docs[doc as usize];
        let mut normalizer = Normalizer::new();
        let title = normalizer.normalize_all(tokens(&info.title));
        let text = self.doc_text(doc)?;
        let body = match &text {
            Some(t) => normalizer.normalize_all(tokens(t)),
            None => {
                for phrase in phrases {
                    for term in phrase {
                        if self
                            .postings(term)?
                            .binary_search_by_key(&doc, |p| p.doc)
                            .is_err()
                        {
                            return Ok(false);
                        }
                    }
                }
                return Ok(true);
            }
        };
        let contains =
            |terms: &[String], phrase: &[String]| terms.windows(phrase.len()).any(|w| w == phrase);
        Ok(phrases
            .iter()
            .all(|p| contains(&title, p) || contains(&body, p)))
    }

    /// A window of [`SNIPPET_WORDS`] words of `doc`'s stored text that holds as many of the
    /// query's distinct terms as any window up to where all of them have occurred (or the
    /// first 20,000 words), with the words that match highlighted; `None` if the
    /// document has no stored text. Without a match, the start of the text.
    pub fn snippet(&self, doc: DocId, query: &Query) -> Result<Option<Snippet>, IndexError> {
        self.snippet_inner(doc, query, None)
    }

    /// [`snippet`](Self::snippet) of a hit of `query`: the same window, found sooner, as
    /// reading the page stops once the terms its body has ([`Hit::body_terms`]) have occurred
    /// rather than reading on for terms it does not have.
    pub fn snippet_of(&self, hit: &Hit, query: &Query) -> Result<Option<Snippet>, IndexError> {
        self.snippet_inner(hit.doc, query, Some(&hit.body_terms))
    }

    fn snippet_inner(
        &self,
        doc: DocId,
        query: &Query,
        in_body: Option<&[String]>,
    ) -> Result<Option<Snippet>, IndexError> {
        let Some(text) = self.doc_text(doc)? else {
            return Ok(None);
        };
        let mut wanted: Vec<&str> = query.terms.iter().map(String::as_str).collect();
        wanted.sort_unstable();
        wanted.dedup();
        let mut normalizer = Normalizer::new();
        // (byte range, which wanted term or none) of each word.
        let mut words: Vec<(usize, usize, Option<usize>)> = Vec::new();
        let base = text.as_ptr() as usize;
        // Stop reading a window's width after every term has been seen (or after
        // SNIPPET_SCAN_WORDS words): long pages cost little when their terms come early.
        // Terms the body does not have are never waited for.
        let mut found: Vec<bool> = wanted
            .iter()
            .map(|t| in_body.is_some_and(|b| !b.iter().any(|x| x == t)))
            .collect();
        let mut missing = found.iter().filter(|f| !**f).count();
        let present = missing;
        let mut stop_at = if missing == 0 {
            SNIPPET_WORDS
        } else {
            SNIPPET_SCAN_WORDS
        };
        for w in tokens(&text) {
            if words.len() >= stop_at {
                break;
            }
            let start = w.as_ptr() as usize - base;
            // Stems keep their word's first letters: stem only words that could match.
            let maybe = wanted.iter().any(|t| {
                let n = t.len().min(2);
                w.len() >= n && w.as_bytes()[..n].eq_ignore_ascii_case(&t.as_bytes()[..n])
            }) || !w.is_ascii();
            let which = if maybe {
                normalizer
                    .term_ref(w)
                    .and_then(|t| wanted.binary_search(&t).ok())
            } else {
                None
            };
            if let Some(t) = which
                && !found[t]
            {
                found[t] = true;
                missing -= 1;
                if missing == 0 {
                    stop_at = stop_at.min(words.len() + SNIPPET_WORDS);
                }
            }
            words.push((start, start + w.len(), which));
        }
        // The window with the most distinct terms (then the most matches), earliest first.
        let mut best = (0usize, 0usize, 0usize);
        let mut seen = vec![0u32; wanted.len()];
        for (i, w) in words.iter().enumerate() {
            if w.2.is_none() {
                continue;
            }
            let from = i.saturating_sub(4);
            let to = (from + SNIPPET_WORDS).min(words.len());
            seen.iter_mut().for_each(|s| *s = 0);
            let mut hits = 0;
            for x in &words[from..to] {
                if let Some(t) = x.2 {
                    seen[t] += 1;
                    hits += 1;
                }
            }
            let distinct = seen.iter().filter(|&&s| s > 0).count();
            if (distinct, hits) > (best.1, best.2) {
                best = (from, distinct, hits);
                if distinct >= present {
                    break;
                }
            }
        }
        let from = best.0;
        let to = (from + SNIPPET_WORDS).min(words.len());
        let mut out = Snippet::default();
        if from > 0 {
            out.text.push_str("… ");
        }
        let mut prev_end: Option<usize> = None;
        for &(a, b, which) in &words[from..to] {
            if let Some(p) = prev_end {
                push_collapsed(&mut out.text, &text[p..a]);
            }
            let start = out.text.len();
            out.text.push_str(&text[a..b]);
            if which.is_some() {
                out.highlights.push((start, out.text.len()));
            }
            prev_end = Some(b);
        }
        if to < words.len() {
            out.text.push_str(" …");
        } else if let Some(p) = prev_end {
            push_collapsed(&mut out.text, text[p..].trim_end());
        }
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{IndexBuilder, IndexWriter, analyze};

    /// Four documents whose terms are easy to see.
    const DOCS: [(&str, &str); 4] = [
        ("Crabs", "the crab runs and the crab swims"),
        ("Rust", "rust crab"),
        ("Oxide", "iron oxide is rust rust rust"),
        ("Swim", "swimming is fun for a crab who swims in the sea"),
    ];

    fn index() -> Index {
        let mut b = IndexBuilder::new();
        for (i, (title, text)) in DOCS.iter().enumerate() {
            // No titles: these tests check the body's BM25 alone.
            let _ = title;
            b.add("", &format!("doc{i}.txt"), &analyze(text)).unwrap();
        }
        IndexWriter::new(&b).unwrap().to_index().unwrap()
    }

    /// BM25 straight from the formula, over hand-written term lists.
    fn expected(query: &[&str]) -> Vec<(u32, f64)> {
        let docs: [&[&str]; 4] = [
            &["crab", "run", "crab", "swim"],
            &["rust", "crab"],
            &["iron", "oxid", "rust", "rust", "rust"],
            &["swim", "fun", "crab", "who", "swim", "sea"],
        ];
        let (k1, b) = (1.2f64, 0.75f64);
        let n = docs.len() as f64;
        let avgdl = docs.iter().map(|d| d.len()).sum::<usize>() as f64 / n;
        let mut out = Vec::new();
        for (i, d) in docs.iter().enumerate() {
            let mut score = 0.0;
            let mut any = false;
            let mut q: Vec<&str> = query.to_vec();
            q.sort();
            q.dedup();
            for t in q {
                let tf = d.iter().filter(|&&x| x == t).count() as f64;
                if tf == 0.0 {
                    continue;
                }
                any = true;
                let df = docs.iter().filter(|d| d.contains(&t)).count() as f64;
                let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
                score += idf * tf * (k1 + 1.0) / (tf + k1 * (1.0 - b + b * d.len() as f64 / avgdl));
            }
            if any {
                out.push((i as u32, score));
            }
        }
        out.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap().then(a.0.cmp(&b.0)));
        out
    }

    fn check(query: &str, terms: &[&str], order: &[u32]) {
        let hits = index().search(query, 10).unwrap();
        let want = expected(terms);
        let got: Vec<u32> = hits.iter().map(|h| h.doc).collect();
        assert_eq!(got, order, "{query}");
        assert_eq!(
            want.iter().map(|w| w.0).collect::<Vec<_>>(),
            order,
            "{query} (formula)"
        );
        for (h, (doc, score)) in hits.iter().zip(&want) {
            assert_eq!(h.doc, *doc);
            assert!(
                (h.score - score).abs() < 1e-9,
                "{query}: doc {doc}: {} vs {score}",
                h.score
            );
            assert_eq!(h.path, format!("doc{doc}.txt"));
            assert_eq!(h.title, "");
        }
    }

    #[test]
    fn analyzed_terms_are_the_hand_written_ones() {
        assert_eq!(analyze(DOCS[0].1), ["crab", "run", "crab", "swim"]);
        assert_eq!(analyze(DOCS[1].1), ["rust", "crab"]);
        assert_eq!(analyze(DOCS[2].1), ["iron", "oxid", "rust", "rust", "rust"]);
        assert_eq!(
            analyze(DOCS[3].1),
            ["swim", "fun", "crab", "who", "swim", "sea"]
        );
    }

    #[test]
    fn bm25_matches_the_formula() {
        // "crab" is in 3 of 4 documents: doc 0 (tf 2, length 4) beats the shorter doc 1 (tf 1,
        // length 2), which beats doc 3 (tf 1, length 6).
        check("crab", &["crab"], &[0, 1, 3]);
        check("Rusty? RUST!", &["rusti", "rust"], &[2, 1]);
        check("swimming crabs", &["swim", "crab"], &[0, 3, 1]);
        check("crab crab crab", &["crab"], &[0, 1, 3]);
        check(
            "the sea, iron and rust",
            &["sea", "iron", "rust"],
            &[2, 3, 1],
        );
        check("nothing matches", &["noth", "match"], &[]);
        check("the and", &[], &[]);
    }

    #[test]
    fn exact_values_and_top_k() {
        let idx = index();
        let hits = idx.search("crab", 2).unwrap();
        assert_eq!(hits.len(), 2);
        assert_eq!((hits[0].doc, hits[1].doc), (0, 1));
        // N = 4, n = 3: idf = ln(1 + 1.5/3.5); avgdl = 17/4.
        let idf = (1.0f64 + 1.5 / 3.5).ln();
        let s0 = idf * 2.0 * 2.2 / (2.0 + 1.2 * (0.25 + 0.75 * 4.0 / 4.25));
        let s1 = idf * 2.2 / (1.0 + 1.2 * (0.25 + 0.75 * 2.0 / 4.25));
        assert!(
            (hits[0].score - s0).abs() < 1e-12,
            "{} vs {s0}",
            hits[0].score
        );
        assert!(
            (hits[1].score - s1).abs() < 1e-12,
            "{} vs {s1}",
            hits[1].score
        );
        assert!((s0 - 0.49868).abs() < 1e-5, "{s0}"); // by hand: 0.356675 * 4.4 / 3.147059
        assert_eq!(idx.search("crab", 0).unwrap(), []);
    }

    /// Max-score pruning (small k) gives the top k of the full ranking (k = every document,
    /// where nothing is pruned), on 3,000 random documents over a skewed vocabulary.
    #[test]
    fn pruned_top_k_is_the_top_of_the_full_ranking() {
        let words: Vec<String> = (0..200).map(|i| format!("w{i}x")).collect();
        let mut next = crate::xorshift(0x9e37_79b9_7f4a_7c15u64);
        let mut b = IndexBuilder::new();
        for d in 0..3000 {
            // Word i is drawn with a probability falling with i: common and rare terms.
            let len = 1 + next() % 5;
            let text: Vec<&str> = (0..len)
                .map(|_| {
                    let r = next() % 200;
                    words[(r * r / 1000) as usize].as_str()
                })
                .collect();
            let title = words[(next() % 200) as usize].clone();
            b.add(&title, &format!("d{d}"), &analyze(&text.join(" ")))
                .unwrap();
        }
        let idx = IndexWriter::new(&b).unwrap().to_index().unwrap();
        let mut pruned_somewhere = false;
        for _ in 0..200 {
            let n = 1 + next() % 6;
            let q: Vec<String> = (0..n)
                .map(|_| words[(next() % 40) as usize].clone())
                .collect();
            let q = q.join(" ");
            let all = idx.search(&q, 3000).unwrap();
            for k in [1, 3, 10] {
                let top = idx.search(&q, k).unwrap();
                let want = &all[..k.min(all.len())];
                assert_eq!(
                    top.iter().map(|h| h.doc).collect::<Vec<_>>(),
                    want.iter().map(|h| h.doc).collect::<Vec<_>>(),
                    "{q} k={k}"
                );
                for (h, w) in top.iter().zip(want) {
                    assert!(
                        (h.score - w.score).abs() < 1e-9,
                        "{q}: {} vs {}",
                        h.score,
                        w.score
                    );
                    assert_eq!(h.body_terms, w.body_terms, "{q}");
                }
                pruned_somewhere |= all.len() > 3 * k;
            }
        }
        assert!(pruned_somewhere);
    }

    /// Block skipping (the lists of common terms read block by block for the remaining
    /// candidates, a block skipped when its greatest impact cannot lift them to the k-th best)
    /// keeps the top k of BM25 computed straight from the formula, body and title, on random
    /// corpora of 1,500 to 4,500 documents whose common terms' lists have many blocks; with
    /// the default parameters (the lists' impacts) and others (bounds by 1).
    #[test]
    fn block_skipping_keeps_the_brute_force_top_k() {
        let words: Vec<String> = (0..60).map(|i| format!("w{i}x")).collect();
        let mut next = crate::xorshift(0x2545_f491_4f6c_dd1du64);
        for corpus in 0..3 {
            let n = 1500 + 1500 * corpus;
            let mut docs: Vec<(Vec<&str>, Vec<&str>)> = Vec::new();
            let mut b = IndexBuilder::new();
            for d in 0..n {
                let skew = |r: u64| (r * r / 60) as usize;
                let body: Vec<&str> = (0..1 + next() % 40)
                    .map(|_| words[skew(next() % 60)].as_str())
                    .collect();
                let title: Vec<&str> = (0..next() % 4)
                    .map(|_| words[skew(next() % 60)].as_str())
                    .collect();
                b.add(&title.join(" "), &format!("d{d}"), &body).unwrap();
                docs.push((body, title));
            }
            let idx = IndexWriter::new(&b).unwrap().to_index().unwrap();
            assert!(idx.doc_freq("w0x") > 4 * 128, "{}", idx.doc_freq("w0x"));
            let body_avg = docs.iter().map(|d| d.0.len()).sum::<usize>() as f64 / n as f64;
            let title_avg = docs.iter().map(|d| d.1.len()).sum::<usize>() as f64 / n as f64;
            for _ in 0..60 {
                let mut q: Vec<&str> = (0..1 + next() % 6)
                    .map(|_| words[(next() % 30) as usize].as_str())
                    .collect();
                q.sort_unstable();
                q.dedup();
                for params in [Bm25::default(), Bm25 { k1: 2.0, b: 0.3 }] {
                    let bm25 = |field: &[&str], t: &str, df: usize, avg: f64| {
                        let tf = field.iter().filter(|&&x| x == t).count() as f64;
                        if tf == 0.0 {
                            return 0.0;
                        }
                        let idf = (1.0 + (n as f64 - df as f64 + 0.5) / (df as f64 + 0.5)).ln();
                        let norm =
                            params.k1 * (1.0 - params.b + params.b * field.len() as f64 / avg);
                        idf * tf * (params.k1 + 1.0) / (tf + norm)
                    };
                    let dfs: Vec<(usize, usize)> = q
                        .iter()
                        .map(|t| {
                            let body = docs.iter().filter(|x| x.0.contains(t)).count();
                            (body, docs.iter().filter(|x| x.1.contains(t)).count())
                        })
                        .collect();
                    let mut want: Vec<(u32, f64)> = Vec::new();
                    for (d, (body, title)) in docs.iter().enumerate() {
                        let mut score = 0.0;
                        let mut any = false;
                        for (&t, &(body_df, title_df)) in q.iter().zip(&dfs) {
                            any |= body.contains(&t) || title.contains(&t);
                            score += bm25(body, t, body_df, body_avg)
                                + TITLE_WEIGHT * bm25(title, t, title_df, title_avg);
                        }
                        if any {
                            want.push((d as u32, score));
                        }
                    }
                    want.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                    for k in [1, 4, 10] {
                        let got = idx.search_terms(&q, k, params).unwrap();
                        assert_eq!(got.len(), k.min(want.len()), "{q:?} k={k}");
                        for (h, w) in got.iter().zip(&want) {
                            // The same score; the same document unless two scores tie.
                            let own = want.iter().find(|x| x.0 == h.doc).unwrap().1;
                            assert!(
                                (h.score - w.1).abs() < 1e-9 && (own - w.1).abs() < 1e-9,
                                "{q:?} k={k} {params:?}: doc {} score {} (formula {own}), \
                                 expected doc {} score {}",
                                h.doc,
                                h.score,
                                w.0,
                                w.1
                            );
                        }
                    }
                }
            }
        }
    }

    /// The rarest query term's documents come first but are long; the best hits are short
    /// documents with two commoner terms: pruning must not close the candidates too soon.
    #[test]
    fn pruning_keeps_documents_the_first_clause_missed() {
        let mut b = IndexBuilder::new();
        let filler = "filler ".repeat(60);
        for i in 0..2000 {
            b.add(
                "",
                &format!("f{i}"),
                &analyze(&format!("other{} words", i % 7)),
            )
            .unwrap();
        }
        for i in 0..100 {
            b.add("", &format!("a{i}"), &analyze(&format!("alpha {filler}")))
                .unwrap();
        }
        for i in 0..150 {
            b.add("", &format!("b{i}"), &analyze("beta gamma")).unwrap();
        }
        let idx = IndexWriter::new(&b).unwrap().to_index().unwrap();
        let top = paths(&idx, "alpha beta gamma");
        assert_eq!(top.len(), 10);
        assert!(top.iter().all(|p| p.starts_with('b')), "{top:?}");
        let all = idx.search("alpha beta gamma", 10_000).unwrap();
        assert_eq!(all.len(), 250);
        assert_eq!(
            top,
            all[..10].iter().map(|h| h.path.clone()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn ties_by_doc_id() {
        let mut b = IndexBuilder::new();
        for i in 0..5 {
            b.add("same", &format!("p{i}"), &["x", "y"]).unwrap();
        }
        let idx = IndexWriter::new(&b).unwrap().to_index().unwrap();
        let hits = idx.search_terms(&["x"], 3, Bm25::default()).unwrap();
        assert_eq!(hits.iter().map(|h| h.doc).collect::<Vec<_>>(), [0, 1, 2]);
        assert!(hits.iter().all(|h| h.score == hits[0].score));
        // Empty index.
        let empty = IndexWriter::new(&IndexBuilder::new())
            .unwrap()
            .to_index()
            .unwrap();
        assert_eq!(empty.search("x", 5).unwrap(), []);
    }

    /// Three pages: the chapter about lifetime elision, one that mentions the words often,
    /// and one about something else.
    fn fields_index() -> Index {
        let mut b = IndexBuilder::new();
        for (title, path, text) in [
            (
                "Lifetime Elision",
                "ch10-03.html",
                "Lifetime elision rules let you leave out lifetimes.",
            ),
            (
                "Generic Types",
                "ch10-01.html",
                "Generic lifetime parameters: a lifetime here, a lifetime below; the \
                 elision of a lifetime in functions, elision again, lifetime lifetime.",
            ),
            (
                "Closures",
                "ch13-01.html",
                "Closures capture their environment.",
            ),
        ] {
            b.add_with_text(title, path, &analyze(text), text).unwrap();
        }
        IndexWriter::new(&b).unwrap().to_index().unwrap()
    }

    fn paths(idx: &Index, q: &str) -> Vec<String> {
        idx.search(q, 10)
            .unwrap()
            .into_iter()
            .map(|h| h.path)
            .collect()
    }

    #[test]
    fn the_page_titled_like_the_query_ranks_first() {
        let idx = fields_index();
        assert_eq!(
            paths(&idx, "lifetime elision"),
            ["ch10-03.html", "ch10-01.html"]
        );
        // The body alone ranks the page that repeats the words first.
        let body_only = {
            let mut b = IndexBuilder::new();
            for (i, d) in idx.docs().iter().enumerate() {
                let text = idx.doc_text(i as DocId).unwrap().unwrap();
                b.add("", &d.path, &analyze(&text)).unwrap();
            }
            IndexWriter::new(&b).unwrap().to_index().unwrap()
        };
        assert_eq!(paths(&body_only, "lifetime elision")[0], "ch10-01.html");
    }

    #[test]
    fn phrases_exclusion_and_title_filter() {
        let idx = fields_index();
        // Only ch10-03 has "lifetime" right before "elision".
        assert_eq!(paths(&idx, "\"lifetime elision\""), ["ch10-03.html"]);
        assert_eq!(paths(&idx, "\"rules lifetime\""), Vec::<String>::new());
        // Stop words inside a phrase are not counted: "elision of a lifetime" holds.
        assert_eq!(paths(&idx, "\"elision of a lifetime\""), ["ch10-01.html"]);
        assert_eq!(paths(&idx, "lifetime -rules"), ["ch10-01.html"]);
        assert_eq!(paths(&idx, "lifetime -\"leave out\""), ["ch10-01.html"]);
        assert_eq!(paths(&idx, "lifetime title:generic"), ["ch10-01.html"]);
        assert_eq!(paths(&idx, "TITLE:closures"), ["ch13-01.html"]);
        assert_eq!(paths(&idx, "title:\"generic types\""), ["ch10-01.html"]);
        // A `-` alone is ignored; a phrase of stop words is dropped and said so.
        assert_eq!(paths(&idx, "closures -"), ["ch13-01.html"]);
        let q = Query::parse("\"the of\" closures").unwrap();
        assert_eq!(
            (q.terms.clone(), q.dropped.clone()),
            (vec!["closur".to_owned()], vec!["the of".to_owned()])
        );
        assert!(Query::parse("\"the of\"").unwrap().is_empty());
        assert_eq!(paths(&idx, "-closures"), Vec::<String>::new());
    }

    #[test]
    fn malformed_queries_are_one_line_errors() {
        let idx = fields_index();
        for (q, want) in [
            (
                "\"lifetime elision",
                "unterminated quote in the query: \"lifetime elision (close the phrase with `\"`)",
            ),
            (
                "title:",
                "`title:` needs a word after it (title:WORD or title:\"some words\")",
            ),
            (
                "a title: b",
                "`title:` needs a word after it (title:WORD or title:\"some words\")",
            ),
        ] {
            let err = idx.search(q, 10).unwrap_err().to_string();
            assert_eq!(err, want, "{q}");
        }
    }

    #[test]
    fn snippets_show_the_matched_terms() {
        let idx = fields_index();
        let q = Query::parse("elision rules").unwrap();
        let s = idx.snippet(0, &q).unwrap().unwrap();
        assert_eq!(
            s.text,
            "Lifetime elision rules let you leave out lifetimes."
        );
        let marked: Vec<&str> = s.highlights.iter().map(|&(a, b)| &s.text[a..b]).collect();
        assert_eq!(marked, ["elision", "rules"]);
        // A long text is cut around the match.
        let mut b = IndexBuilder::new();
        let text = format!("{} needle here {}", "word ".repeat(50), "tail\n".repeat(50));
        b.add_with_text("t", "p", &analyze(&text), &text).unwrap();
        let idx = IndexWriter::new(&b).unwrap().to_index().unwrap();
        let s = idx
            .snippet(0, &Query::parse("needles").unwrap())
            .unwrap()
            .unwrap();
        assert!(
            s.text
                .starts_with("… word word word word needle here tail tail"),
            "{}",
            s.text
        );
        assert!(
            s.text.ends_with(" …") && !s.text.contains('\n'),
            "{}",
            s.text
        );
        assert_eq!(&s.text[s.highlights[0].0..s.highlights[0].1], "needle");
        // No stored text: no snippet.
        assert_eq!(index().snippet(0, &q).unwrap(), None);
    }
}
