//! Splitting text into words.

use unicode_segmentation::UnicodeSegmentation;

/// Splits `text` into words, in order, as slices of `text`.
///
/// Words are found with the Unicode word boundaries of UAX #29 (`unicode-segmentation`'s
/// `unicode_words`, which keeps the segments that contain a letter or digit). Because UAX #29
/// keeps `vec.push`, `foo_bar`, `a:b` and `3.14` together, each such word is then split again
/// at the punctuation inside it (ASCII punctuation, the General Punctuation block and the
/// fullwidth/small forms of `.,:;_'`), except an apostrophe (`'` or `’`) between two letters or
/// digits: `don't` and `Rust’s` stay one word. Combining marks stay with their letter.
///
/// ```
/// assert_eq!(
///     wasmlink_search::tokenize("Vec::push(x) isn't foo_bar, 3.14 — naïve 東京!"),
///     ["Vec", "push", "x", "isn't", "foo", "bar", "3", "14", "naïve", "東", "京"]
/// );
/// ```
pub fn tokenize(text: &str) -> Vec<&str> {
    tokens(text).collect()
}

/// The words of [`tokenize`] as an iterator, without collecting them.
pub fn tokens(text: &str) -> impl Iterator<Item = &str> {
    text.unicode_words().flat_map(SplitInner::new)
}

fn is_apostrophe(c: char) -> bool {
    c == '\'' || c == '\u{2019}'
}

/// Punctuation that UAX #29 allows inside a word, and that we split at.
fn is_inner_punct(c: char) -> bool {
    c.is_ascii_punctuation()
        || ('\u{2010}'..='\u{205E}').contains(&c) // General Punctuation (dashes, quotes, ‿, ⁀, …)
        || ('\u{FE10}'..='\u{FE19}').contains(&c) // vertical forms
        || ('\u{FE30}'..='\u{FE6B}').contains(&c) // CJK compatibility and small forms
        || ('\u{FF01}'..='\u{FF0F}').contains(&c) // fullwidth punctuation
        || ('\u{FF1A}'..='\u{FF20}').contains(&c)
        || ('\u{FF3B}'..='\u{FF40}').contains(&c)
        || ('\u{FF5B}'..='\u{FF65}').contains(&c)
        || matches!(c, '\u{00B7}' | '\u{0387}' | '\u{055F}' | '\u{0589}' | '\u{05F4}')
        || matches!(c, '\u{060C}' | '\u{060D}' | '\u{066C}' | '\u{07F8}' | '\u{037E}')
}

/// Splits one UAX #29 word at inner punctuation.
struct SplitInner<'a> {
    word: &'a str,
    pos: usize,
}

impl<'a> SplitInner<'a> {
    fn new(word: &'a str) -> Self {
        SplitInner { word, pos: 0 }
    }
}

impl<'a> Iterator for SplitInner<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let rest = &self.word[self.pos..];
        // Skip leading punctuation.
        let start = self.pos + rest.find(|c: char| !is_inner_punct(c))?;
        let mut end = self.word.len();
        let mut prev: Option<char> = None;
        let mut iter = self.word[start..].char_indices().peekable();
        while let Some((i, c)) = iter.next() {
            if is_inner_punct(c) {
                let keep = is_apostrophe(c)
                    && prev.is_some_and(char::is_alphanumeric)
                    && iter.peek().is_some_and(|&(_, n)| n.is_alphanumeric());
                if !keep {
                    end = start + i;
                    break;
                }
            }
            prev = Some(c);
        }
        self.pos = end;
        Some(&self.word[start..end])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_inner_punctuation() {
        assert_eq!(tokenize(""), Vec::<&str>::new());
        assert_eq!(tokenize("  ... -- !!"), Vec::<&str>::new());
        assert_eq!(tokenize("Hello, world!"), ["Hello", "world"]);
        assert_eq!(tokenize("std::vec::Vec<T>"), ["std", "vec", "Vec", "T"]);
        assert_eq!(tokenize("self.value_of(x)"), ["self", "value", "of", "x"]);
        assert_eq!(
            tokenize("it's Rust’s 'quoted'"),
            ["it's", "Rust’s", "quoted"]
        );
        assert_eq!(tokenize("a'' x_ _y"), ["a", "x", "y"]);
        assert_eq!(
            tokenize("u8 0x1F 1,000 v1.2.3"),
            ["u8", "0x1F", "1", "000", "v1", "2", "3"]
        );
        assert_eq!(tokenize("cafe\u{301} Ünïcödé"), ["cafe\u{301}", "Ünïcödé"]);
        assert_eq!(tokenize("emoji 🦀 crab"), ["emoji", "crab"]);
    }
}
