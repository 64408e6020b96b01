//! BM25 top-k for a parsed query: term at a time with max-score pruning, the long lists of
//! common terms read block by block for the few documents still in the running.

use std::sync::Mutex;

use super::{Bm25, FieldStats, Hit, Query, TITLE_WEIGHT};
use crate::index::postings::{List, Step};
use crate::index::{DocId, Index, IndexError, Posting, title_key};

/// Per-document accumulators kept between queries, so a query costs what it touches rather
/// than a zeroed array of every document: each query leaves them zero again.
#[derive(Default)]
pub(crate) struct Scratch {
    /// Each document's score so far (0: not matched yet).
    scores: Vec<f64>,
    /// Which of the first 64 body clauses matched each document (for [`Hit::body_terms`]).
    body: Vec<u64>,
}

/// [`Scratch`] behind a lock; a query that finds it taken (another thread's) uses its own.
#[derive(Default)]
pub(crate) struct ScratchCell(Mutex<Scratch>);

impl Clone for ScratchCell {
    fn clone(&self) -> Self {
        ScratchCell::default()
    }
}

impl std::fmt::Debug for ScratchCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScratchCell")
    }
}

/// One (term, field) of the query that occurs in the index.
struct Clause<'t> {
    term: &'t str,
    body: bool,
    idf: f64,
    /// What the clause can add to a document's score at most (as tf grows).
    bound: f64,
    list: List<'t>,
}

impl Index {
    /// The `k` (at least 1) best documents for `query`, whose distinct terms are `distinct`
    /// (sorted, at least one).
    pub(super) fn rank(
        &self,
        query: &Query,
        distinct: &[&str],
        k: usize,
        params: Bm25,
    ) -> Result<Vec<Hit>, IndexError> {
        let mut guard = self.scratch.0.try_lock().ok();
        let mut own = Scratch::default();
        let scratch = guard.as_deref_mut().unwrap_or(&mut own);
        let n = self.docs.len();
        if scratch.scores.len() != n {
            scratch.scores = vec![0.0; n];
            scratch.body = vec![0; n];
        }
        let mut touched = Vec::new();
        let result = self.rank_with(query, distinct, k, params, scratch, &mut touched);
        if result.is_ok() {
            for &d in &touched {
                scratch.scores[d as usize] = 0.0;
                scratch.body[d as usize] = 0;
            }
        } else {
            scratch.scores.fill(0.0);
            scratch.body.fill(0);
        }
        result
    }

    fn rank_with(
        &self,
        query: &Query,
        distinct: &[&str],
        k: usize,
        params: Bm25,
        scratch: &mut Scratch,
        touched: &mut Vec<DocId>,
    ) -> Result<Vec<Hit>, IndexError> {
        let n_docs = self.docs.len() as f64;
        let ranking = Ranking {
            index: self,
            params,
            k,
            // The lists record their entries' greatest impacts under the default parameters.
            tight: params == Bm25::default(),
            // Max-score pruning only for plain OR queries: a filter could remove the documents
            // the threshold came from.
            prune: query.excluded.is_empty()
                && query.title.is_empty()
                && query.phrases.is_empty()
                && params.k1 >= 0.0
                && (0.0..=1.0).contains(&params.b),
            body: FieldStats {
                avgdl: self.total_terms as f64 / n_docs,
                n_docs,
            },
            title: FieldStats {
                avgdl: self.total_title_terms as f64 / n_docs,
                n_docs,
            },
        };
        let clauses = ranking.clauses(distinct)?;
        let Scratch {
            scores,
            body: matched,
        } = scratch;
        let mut postings = Vec::new();
        ranking.accumulate(&clauses, scores, matched, touched, &mut postings)?;
        self.filter(query, scores, touched)?;
        let ranked = self.top(query, k, scores, touched)?;
        self.hits(ranked, &clauses, matched, &mut postings)
    }

    /// Documents that fail a filter (`-term`, `title:term`) get no score (NaN; only matched
    /// documents, so that the accumulators stay clean outside `touched`).
    fn filter(
        &self,
        query: &Query,
        scores: &mut [f64],
        touched: &mut [DocId],
    ) -> Result<(), IndexError> {
        for term in &query.excluded {
            for key in [term.clone(), title_key(term)] {
                for p in self.postings(&key)? {
                    let slot = &mut scores[p.doc as usize];
                    if *slot != 0.0 {
                        *slot = f64::NAN;
                    }
                }
            }
        }
        if !query.title.is_empty() {
            touched.sort_unstable();
        }
        for term in &query.title {
            let list = self.postings(&title_key(term))?;
            let mut at = 0;
            for &d in touched.iter() {
                while at < list.len() && list[at].doc < d {
                    at += 1;
                }
                if list.get(at).is_none_or(|p| p.doc != d) {
                    scores[d as usize] = f64::NAN;
                }
            }
        }
        Ok(())
    }

    /// The `k` best scored documents, best first (equal scores by id); with phrases, the best
    /// `k` of those whose stored text has every phrase.
    fn top(
        &self,
        query: &Query,
        k: usize,
        scores: &[f64],
        touched: &[DocId],
    ) -> Result<Vec<(DocId, f64)>, IndexError> {
        let mut ranked: Vec<(DocId, f64)> = touched
            .iter()
            .map(|&d| (d, scores[d as usize]))
            .filter(|(_, s)| !s.is_nan())
            .collect();
        let order = |a: &(DocId, f64), b: &(DocId, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        if query.phrases.is_empty() {
            if ranked.len() > k {
                ranked.select_nth_unstable_by(k - 1, order);
                ranked.truncate(k);
            }
            ranked.sort_unstable_by(order);
            return Ok(ranked);
        }
        // Phrases are checked against the stored text, best first, until k pass.
        ranked.sort_unstable_by(order);
        let mut kept = Vec::with_capacity(k);
        for (doc, score) in ranked {
            if self.has_phrases(doc, &query.phrases)? {
                kept.push((doc, score));
                if kept.len() == k {
                    break;
                }
            }
        }
        Ok(kept)
    }

    /// The hits for `ranked`, each with the body terms it matched (from `matched` for the first
    /// 64 body clauses, looked up in the lists for the others).
    fn hits(
        &self,
        ranked: Vec<(DocId, f64)>,
        clauses: &[Clause<'_>],
        matched: &[u64],
        postings: &mut Vec<Posting>,
    ) -> Result<Vec<Hit>, IndexError> {
        let body_clauses: Vec<&Clause> = clauses.iter().filter(|c| c.body).collect();
        let mut hits = Vec::with_capacity(ranked.len());
        for (doc, score) in ranked {
            let info = &self.docs[doc as usize];
            let mut body_terms = Vec::new();
            for (i, c) in body_clauses.iter().enumerate() {
                let has = if i < 64 {
                    matched[doc as usize] & (1 << i) != 0
                } else {
                    let mut found = false;
                    c.list.lookup(&[doc], postings, |_, step| {
                        found |= matches!(step, Step::Found(_));
                        true
                    })?;
                    found
                };
                if has {
                    body_terms.push(c.term.to_owned());
                }
            }
            hits.push(Hit {
                doc,
                title: info.title.clone(),
                path: info.path.clone(),
                score,
                body_terms,
            });
        }
        Ok(hits)
    }
}

/// What one query's scoring needs: the index, the BM25 parameters, `k`, and the fields' stats.
struct Ranking<'i> {
    index: &'i Index,
    params: Bm25,
    k: usize,
    /// The lists' recorded impacts bound the scores (default parameters).
    tight: bool,
    /// Max-score pruning applies (a plain OR query).
    prune: bool,
    body: FieldStats,
    title: FieldStats,
}

impl<'i> Ranking<'i> {
    /// The (term, field) clauses that occur in the index; when pruning, the clauses that can
    /// add the most first (deterministic: by bound, then term, body before title).
    fn clauses<'t>(&self, distinct: &[&'t str]) -> Result<Vec<Clause<'t>>, IndexError>
    where
        'i: 't,
    {
        let mut clauses: Vec<Clause> = Vec::with_capacity(2 * distinct.len());
        for &term in distinct {
            for body_field in [true, false] {
                let list = if body_field {
                    self.index.list(term)?
                } else {
                    self.index.list(&title_key(term))?
                };
                let Some(list) = list else { continue };
                let (stats, weight, _) = self.field(body_field);
                let idf = stats.idf(list.len());
                let impact = if self.tight { list.max_impact() } else { 1.0 };
                clauses.push(Clause {
                    term,
                    body: body_field,
                    idf,
                    bound: weight * idf * (self.params.k1 + 1.0) * impact * (1.0 + 1e-9),
                    list,
                });
            }
        }
        if self.prune {
            clauses.sort_by(|x, y| {
                y.bound
                    .total_cmp(&x.bound)
                    .then(x.term.cmp(y.term))
                    .then(y.body.cmp(&x.body))
            });
        }
        Ok(clauses)
    }

    /// A field's stats, weight and documents' lengths.
    fn field(&self, body: bool) -> (&FieldStats, f64, &'i [u32]) {
        if body {
            (&self.body, 1.0, &self.index.body_lens)
        } else {
            (&self.title, TITLE_WEIGHT, &self.index.title_lens)
        }
    }

    /// Adds each clause's scores into `scores` (recording the documents first matched in
    /// `touched`, and the first 64 body clauses each matched in `matched`).
    ///
    /// Max-score pruning (term at a time): once what all the clauses left can add is below the
    /// k-th best score so far, a document none of the earlier clauses matched cannot reach the
    /// top k, so the remaining clauses only add to the documents already found (no new
    /// candidates); and of those only to the candidates whose score so far plus what the
    /// clauses left can add reaches the k-th best, looked up block by block in the clauses'
    /// lists. Sums follow the clause order.
    fn accumulate(
        &self,
        clauses: &[Clause<'_>],
        scores: &mut [f64],
        matched: &mut [u64],
        touched: &mut Vec<DocId>,
        postings: &mut Vec<Posting>,
    ) -> Result<(), IndexError> {
        let (k, params, tight) = (self.k, self.params, self.tight);
        let mut rest: f64 = clauses.iter().map(|c| c.bound).sum();
        let mut kth: Vec<f64> = Vec::new();
        let mut kth_of = |docs: &[DocId], scores: &[f64]| {
            kth.clear();
            kth.extend(docs.iter().map(|&d| scores[d as usize]));
            let (_, &mut t, _) = kth.select_nth_unstable_by(k - 1, |x, y| y.total_cmp(x));
            t
        };
        // Set once pruning closes: the candidates, by document id, and the k-th best so far.
        let mut candidates: Option<Vec<DocId>> = None;
        let mut threshold = f64::NEG_INFINITY;
        let mut body_clause = 0usize;
        for clause in clauses {
            let bit = if clause.body && body_clause < 64 {
                1u64 << body_clause
            } else {
                0
            };
            body_clause += usize::from(clause.body);
            // Closes once k documents score more than what the clauses left can add (a
            // count first: finding the k-th best is dearer).
            if self.prune
                && candidates.is_none()
                && touched.len() >= k
                && clause.list.len() > 64
                && touched
                    .iter()
                    .filter(|&&d| scores[d as usize] > rest)
                    .count()
                    >= k
            {
                threshold = kth_of(touched, scores);
                if rest < threshold {
                    let mut c: Vec<DocId> = touched
                        .iter()
                        .copied()
                        .filter(|&d| scores[d as usize] + rest >= threshold)
                        .collect();
                    // Runs of increasing ids, one per clause so far: a merge sort's case.
                    c.sort();
                    candidates = Some(c);
                }
            }
            let (stats, weight, lens) = self.field(clause.body);
            match &candidates {
                None => {
                    clause.list.decode_all(postings)?;
                    for p in postings.iter() {
                        let slot = &mut scores[p.doc as usize];
                        if *slot == 0.0 {
                            touched.push(p.doc);
                        }
                        *slot +=
                            weight * stats.score(params, clause.idf, p.tf, lens[p.doc as usize]);
                        matched[p.doc as usize] |= bit;
                    }
                }
                Some(c) => {
                    // A candidate that the block holding it cannot lift to the k-th best is
                    // out: its block is not decoded for it.
                    let scale = weight * clause.idf * (params.k1 + 1.0) * (1.0 + 1e-9);
                    let after = rest - clause.bound;
                    clause.list.lookup(c, postings, |i, step| {
                        let d = c[i] as usize;
                        match step {
                            Step::Block(impact) => {
                                let impact = if tight { impact } else { 1.0 };
                                scores[d] + scale * impact + after >= threshold
                            }
                            Step::Found(tf) => {
                                scores[d] += weight * stats.score(params, clause.idf, tf, lens[d]);
                                matched[d] |= bit;
                                true
                            }
                        }
                    })?;
                }
            }
            rest -= clause.bound;
            if let Some(c) = &mut candidates {
                if c.len() > k {
                    threshold = threshold.max(kth_of(c, scores));
                }
                c.retain(|&d| scores[d as usize] + rest >= threshold);
            }
        }
        Ok(())
    }
}
