//! BM25 ranking.

use crate::index::{DocId, Index, IndexError};
use crate::normalize::Normalizer;
use crate::tokenize::tokens;

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
/// A query term repeated in the query counts once. Sums are taken in the terms' sorted order,
/// in `f64`, so scores are the same on every platform.
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
    /// Its BM25 score (greater is better).
    pub score: f64,
}

impl Index {
    /// The `k` best documents for `query` under [`Bm25::default`], best first; equal scores
    /// by increasing document id. The query is tokenized and normalised exactly like
    /// documents ([`analyze`](crate::analyze)); documents matching none of its terms are not
    /// returned.
    pub fn search(&self, query: &str, k: usize) -> Result<Vec<Hit>, IndexError> {
        let terms = Normalizer::new().normalize_all(tokens(query));
        self.search_terms(&terms, k, Bm25::default())
    }

    /// Like [`search`](Self::search), for terms that are already normalised and with explicit
    /// parameters.
    pub fn search_terms<S: AsRef<str>>(
        &self,
        terms: &[S],
        k: usize,
        params: Bm25,
    ) -> Result<Vec<Hit>, IndexError> {
        let mut distinct: Vec<&str> = terms.iter().map(AsRef::as_ref).collect();
        distinct.sort_unstable();
        distinct.dedup();

        let n_docs = self.docs.len() as f64;
        let avgdl = if self.docs.is_empty() {
            0.0
        } else {
            self.total_terms as f64 / n_docs
        };
        let mut scores: Vec<f64> = Vec::new();
        let mut touched: Vec<DocId> = Vec::new();
        for term in distinct {
            let postings = self.postings(term)?;
            if postings.is_empty() {
                continue;
            }
            if scores.is_empty() {
                scores = vec![0.0; self.docs.len()];
            }
            let n = postings.len() as f64;
            let idf = (1.0 + (n_docs - n + 0.5) / (n + 0.5)).ln();
            for p in postings {
                let dl = f64::from(self.docs[p.doc as usize].len);
                let tf = f64::from(p.tf);
                // avgdl > 0 here: the document has this term, so some length is positive.
                let norm = params.k1 * (1.0 - params.b + params.b * dl / avgdl);
                let slot = &mut scores[p.doc as usize];
                if *slot == 0.0 {
                    touched.push(p.doc);
                }
                *slot += idf * tf * (params.k1 + 1.0) / (tf + norm);
            }
        }

        let mut ranked: Vec<(DocId, f64)> = touched
            .into_iter()
            .map(|d| (d, scores[d as usize]))
            .collect();
        let order = |a: &(DocId, f64), b: &(DocId, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if k == 0 {
            return Ok(Vec::new());
        }
        if ranked.len() > k {
            ranked.select_nth_unstable_by(k - 1, order);
            ranked.truncate(k);
        }
        ranked.sort_unstable_by(order);
        Ok(ranked
            .into_iter()
            .map(|(doc, score)| {
                let info = &self.docs[doc as usize];
                Hit {
                    doc,
                    title: info.title.clone(),
                    path: info.path.clone(),
                    score,
                }
            })
            .collect())
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
            b.add(title, &format!("doc{i}.txt"), &analyze(text))
                .unwrap();
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
            assert_eq!(h.title, DOCS[*doc as usize].0);
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
}
