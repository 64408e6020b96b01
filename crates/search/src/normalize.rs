//! Words to index terms.

use std::collections::HashMap;

use rust_stemmers::{Algorithm, Stemmer};

/// The English stop words: exactly Lucene's `EnglishAnalyzer.ENGLISH_STOP_WORDS_SET` (33 words),
/// sorted. They are compared after lowercasing and before stemming.
pub const STOP_WORDS: [&str; 33] = [
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it",
    "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these",
    "they", "this", "to", "was", "will", "with",
];

/// Words longer than this many bytes (after lowercasing) are dropped: they are almost always
/// hashes, base64 or minified code, and they would bloat the term dictionary.
pub const MAX_TERM_BYTES: usize = 64;

/// Turns words into index terms: lowercase (Unicode), then drop [`STOP_WORDS`] and words
/// longer than [`MAX_TERM_BYTES`], then stem with the Snowball English stemmer
/// (`rust-stemmers`, the Porter2 algorithm). A right single quotation mark `’` is read as `'`.
///
/// A `Normalizer` holds the stemmer and a cache of the terms of recent words (stemming is the
/// costly step, and word frequencies are skewed), so it is cheaper to keep one per thread or
/// guest instance than to call [`normalize`] for each small batch. Both give the same terms:
/// the cache never changes a result. It holds at most [`Normalizer::CACHE_WORDS`] words and is
/// cleared when full.
pub struct Normalizer {
    stemmer: Stemmer,
    /// Recent words (lowercased) and where their term is in `terms`.
    cache: HashMap<String, u32, rustc_hash::FxBuildHasher>,
    terms: Vec<Option<String>>,
}

impl Default for Normalizer {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Normalizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Normalizer(lowercase, Lucene English stop words, Snowball English)")
    }
}

impl Normalizer {
    /// The most words the cache holds.
    pub const CACHE_WORDS: usize = 1 << 16;

    /// A normaliser with the Snowball English stemmer.
    pub fn new() -> Self {
        Normalizer {
            stemmer: Stemmer::create(Algorithm::English),
            cache: HashMap::default(),
            terms: Vec::new(),
        }
    }

    /// The term for one word, or `None` if the word is a stop word, too long, or empty.
    pub fn term(&mut self, word: &str) -> Option<String> {
        self.term_ref(word).map(str::to_owned)
    }

    /// [`Normalizer::term`], borrowed from the cache instead of copied (no allocation when the
    /// word was seen recently).
    pub fn term_ref(&mut self, word: &str) -> Option<&str> {
        let lower = if !word.is_ascii() {
            std::borrow::Cow::Owned(word.to_lowercase().replace('\u{2019}', "'"))
        } else if word.bytes().any(|b| b.is_ascii_uppercase()) {
            std::borrow::Cow::Owned(word.to_ascii_lowercase())
        } else {
            std::borrow::Cow::Borrowed(word)
        };
        let slot = match self.cache.get(lower.as_ref()) {
            Some(&slot) => slot,
            None => {
                let term = self.uncached(&lower);
                if self.cache.len() >= Self::CACHE_WORDS {
                    self.cache.clear();
                    self.terms.clear();
                }
                let slot = self.terms.len() as u32;
                self.terms.push(term);
                self.cache.insert(lower.into_owned(), slot);
                slot
            }
        };
        self.terms[slot as usize].as_deref()
    }

    fn uncached(&self, lower: &str) -> Option<String> {
        if lower.is_empty() || lower.len() > MAX_TERM_BYTES || is_stop_word(lower) {
            return None;
        }
        let stem = self.stemmer.stem(lower).into_owned();
        (!stem.is_empty()).then_some(stem)
    }

    /// The terms for some words, in order.
    pub fn normalize_all<'a>(&mut self, words: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        words.into_iter().filter_map(|w| self.term(w)).collect()
    }
}

/// Whether `word` (already lowercase) is one of [`STOP_WORDS`].
fn is_stop_word(word: &str) -> bool {
    word.len() <= 5 && STOP_WORDS.binary_search(&word).is_ok()
}

/// The words of `query` (as [`tokens`](crate::tokens) splits it, lowercased as
/// [`Normalizer`] does, each once, in order) when every one of them is a stop word and there is
/// at least one: why such a query matches nothing. `None` when some word makes a term, or the
/// query has no words.
///
/// ```
/// assert_eq!(wasmlink_search::stop_words_only("The AND the"), Some(vec!["the".into(), "and".into()]));
/// assert_eq!(wasmlink_search::stop_words_only("the crab"), None);
/// assert_eq!(wasmlink_search::stop_words_only("  "), None);
/// ```
pub fn stop_words_only(query: &str) -> Option<Vec<String>> {
    let mut words: Vec<String> = Vec::new();
    for word in crate::tokens(query) {
        let lower = word.to_lowercase().replace('\u{2019}', "'");
        if !is_stop_word(&lower) {
            return None;
        }
        if !words.contains(&lower) {
            words.push(lower);
        }
    }
    (!words.is_empty()).then_some(words)
}

/// Normalises words into index terms with a fresh [`Normalizer`].
///
/// ```
/// assert_eq!(
///     wasmlink_search::normalize(["The", "Running", "CATS", "are", "happily", "jumping"]),
///     ["run", "cat", "happili", "jump"]
/// );
/// ```
pub fn normalize<'a>(words: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    Normalizer::new().normalize_all(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_words_only_names_the_words_of_an_all_stop_word_query() {
        assert_eq!(stop_words_only("the"), Some(vec!["the".to_string()]));
        assert_eq!(
            stop_words_only("To be, OR not to be"),
            Some(vec!["to".into(), "be".into(), "or".into(), "not".into()])
        );
        // One word that makes a term, no words at all, or a long word: not all stop words.
        assert_eq!(stop_words_only("the crab"), None);
        assert_eq!(stop_words_only(""), None);
        assert_eq!(stop_words_only(" !? "), None);
        assert_eq!(stop_words_only("thereafter"), None);
        // Exactly the words the normaliser drops as stop words.
        for q in ["the", "The AND", "crab", "it is"] {
            let all_stop = Normalizer::new().normalize_all(crate::tokens(q)).is_empty();
            assert_eq!(stop_words_only(q).is_some(), all_stop, "{q}");
        }
    }

    #[test]
    fn stop_words_are_sorted_and_dropped() {
        let mut sorted = STOP_WORDS;
        sorted.sort_unstable();
        assert_eq!(sorted, STOP_WORDS);
        for w in STOP_WORDS {
            assert_eq!(Normalizer::new().term(w), None, "{w}");
            assert_eq!(Normalizer::new().term(&w.to_uppercase()), None, "{w}");
        }
        assert_eq!(
            normalize(["The", "cat", "IS", "on", "a", "mat", "with", "Such", "joy"]),
            ["cat", "mat", "joy"]
        );
    }

    #[test]
    fn snowball_english_stems() {
        let mut n = Normalizer::new();
        let cases = [
            ("running", "run"),
            ("runs", "run"),
            ("ran", "ran"),
            ("jumped", "jump"),
            ("ownership", "ownership"),
            ("borrowing", "borrow"),
            ("borrowed", "borrow"),
            ("generalization", "general"),
            ("traits", "trait"),
            ("lifetimes", "lifetim"),
            ("iterators", "iter"),
            ("Closures", "closur"),
            ("happiness", "happi"),
            ("Rust's", "rust"),
            ("Rust’s", "rust"),
            ("isn't", "isn't"),
            ("u8", "u8"),
            ("東京", "東京"),
            ("ÜBER", "über"),
        ];
        for (word, stem) in cases {
            assert_eq!(n.term(word).as_deref(), Some(stem), "{word}");
            // Again, from the cache.
            assert_eq!(n.term(word).as_deref(), Some(stem), "{word}");
        }
    }

    #[test]
    fn long_words_are_dropped() {
        let mut n = Normalizer::new();
        assert_eq!(n.term(&"a".repeat(MAX_TERM_BYTES + 1)), None);
        assert_eq!(
            n.term(&"b".repeat(MAX_TERM_BYTES)).map(|t| t.len()),
            Some(MAX_TERM_BYTES)
        );
        assert_eq!(n.term(""), None);
    }

    #[test]
    fn cache_is_bounded_and_transparent() {
        let mut n = Normalizer::new();
        for i in 0..Normalizer::CACHE_WORDS + 10 {
            assert_eq!(n.term(&format!("run{i}s")), Some(format!("run{i}")));
        }
        assert!(n.cache.len() <= Normalizer::CACHE_WORDS);
        assert_eq!(n.term("running"), Some("run".to_owned()));
        assert_eq!(n.term("the"), None);
        assert_eq!(n.term("The"), None);
    }
}
