//! Splitting text into words.

use unicode_segmentation::UnicodeSegmentation;

use crate::ascii::{is_space as is_ascii_space, skip_printable};

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
///
/// Runs of ASCII between ASCII whitespace take a fast path that gives the same words as UAX #29
/// would (see `AsciiWords`); everything else goes through `unicode-segmentation`.
pub fn tokens(text: &str) -> impl Iterator<Item = &str> {
    Pieces { text, pos: 0 }.flat_map(|piece| match piece {
        Piece::Ascii(chunk) => PieceWords::Ascii(AsciiWords { chunk, pos: 0 }),
        Piece::Mixed(part) => PieceWords::Mixed(unicode_tokens(part)),
    })
}

type UnicodeTokens<'a> = std::iter::FlatMap<
    unicode_segmentation::UnicodeWords<'a>,
    SplitInner<'a>,
    fn(&'a str) -> SplitInner<'a>,
>;

/// The words of [`tokenize`] by UAX #29 alone, without the ASCII fast path.
fn unicode_tokens<'a>(text: &'a str) -> UnicodeTokens<'a> {
    let split: fn(&'a str) -> SplitInner<'a> = SplitInner::new;
    text.unicode_words().flat_map(split)
}

/// A part of the text whose UAX #29 words do not depend on the text around it.
enum Piece<'a> {
    /// A run of ASCII without whitespace, between ASCII whitespace (or the ends of the text).
    Ascii(&'a str),
    /// Everything between two `Ascii` pieces: runs that contain non-ASCII characters, with
    /// the whitespace around them.
    Mixed(&'a str),
}

/// Cuts text into [`Piece`]s.
///
/// Why the cuts are safe: UAX #29 breaks on both sides of ASCII whitespace except in three
/// cases: between two spaces (WB3d, including a non-ASCII space before an ASCII one), CR LF
/// (WB3), and before a non-ASCII Extend, Format or ZWJ character (WB4). Its look-ahead and
/// look-behind rules (WB6, WB7, WB11, WB12) never see past whitespace. So the words of an
/// ASCII run whose neighbours are ASCII whitespace are the same alone as in the whole text;
/// a `Mixed` piece keeps the whitespace before and after it, so the joins above stay inside it.
struct Pieces<'a> {
    text: &'a str,
    /// Where the next piece starts: 0, or just after an `Ascii` or `Mixed` piece.
    pos: usize,
}

impl<'a> Pieces<'a> {
    /// The end of the run of non-whitespace starting at `from`, and whether it is all ASCII.
    fn run(&self, from: usize) -> (usize, bool) {
        let bytes = self.text.as_bytes();
        let mut end = from;
        let mut ascii = true;
        loop {
            end = skip_printable(bytes, end);
            match bytes.get(end) {
                Some(&b) if !is_ascii_space(b) => {
                    ascii &= b.is_ascii();
                    end += 1;
                }
                _ => return (end, ascii),
            }
        }
    }

    fn skip_space(&self, mut from: usize) -> usize {
        let bytes = self.text.as_bytes();
        while bytes.get(from).is_some_and(|&b| is_ascii_space(b)) {
            from += 1;
        }
        from
    }
}

impl<'a> Iterator for Pieces<'a> {
    type Item = Piece<'a>;

    fn next(&mut self) -> Option<Piece<'a>> {
        let len = self.text.len();
        let start = self.skip_space(self.pos);
        if start == len {
            self.pos = len;
            return None;
        }
        let (end, ascii) = self.run(start);
        if ascii {
            self.pos = end;
            return Some(Piece::Ascii(&self.text[start..end]));
        }
        // Take the following runs too, up to the next all-ASCII one. Every index here is at
        // an ASCII byte or the end, so on a character boundary.
        let mut end = end;
        let stop = loop {
            let next = self.skip_space(end);
            if next == len {
                break len;
            }
            let (next_end, ascii) = self.run(next);
            if ascii {
                break next;
            }
            end = next_end;
        };
        let piece = Piece::Mixed(&self.text[self.pos..stop]);
        self.pos = stop;
        Some(piece)
    }
}

/// The words of one [`Piece::Ascii`].
///
/// In ASCII, UAX #29 keeps letters and digits together in any order, `_` next to them, and
/// joins across `.`, `:`, `,`, `;` and `'` only between two letters (`.`, `:`, `'`) or two
/// digits (`.`, `,`, `;`, `'`); every other byte stands alone. [`SplitInner`] then splits at all
/// punctuation except such an apostrophe. So a word is a run of letters and digits, continued
/// across an apostrophe that has two letters or two digits around it.
struct AsciiWords<'a> {
    chunk: &'a str,
    pos: usize,
}

impl<'a> Iterator for AsciiWords<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let b = self.chunk.as_bytes();
        let mut i = self.pos;
        while b.get(i).is_some_and(|c| !c.is_ascii_alphanumeric()) {
            i += 1;
        }
        if i == b.len() {
            self.pos = i;
            return None;
        }
        let start = i;
        loop {
            while b.get(i).is_some_and(u8::is_ascii_alphanumeric) {
                i += 1;
            }
            let joins = |before: u8, after: u8| {
                (before.is_ascii_alphabetic() && after.is_ascii_alphabetic())
                    || (before.is_ascii_digit() && after.is_ascii_digit())
            };
            match (b.get(i), b.get(i + 1)) {
                (Some(b'\''), Some(&after)) if joins(b[i - 1], after) => i += 1,
                _ => break,
            }
        }
        self.pos = i;
        Some(&self.chunk[start..i])
    }
}

/// The words of one [`Piece`].
enum PieceWords<'a> {
    Ascii(AsciiWords<'a>),
    Mixed(UnicodeTokens<'a>),
}

impl<'a> Iterator for PieceWords<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        match self {
            PieceWords::Ascii(words) => words.next(),
            PieceWords::Mixed(words) => words.next(),
        }
    }
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

    #[test]
    fn ascii_fast_path_gives_the_words_of_uax29() {
        // Pieces that exercise every rule the fast path relies on: letters and digits,
        // apostrophes and the other mid-word marks, `_`, control bytes, every kind of ASCII
        // whitespace, and the non-ASCII characters that join whitespace or words (combining
        // marks, an alphabetic combining mark, soft hyphen, ZWJ, ideographic space, emoji,
        // regional indicators, line separators).
        let pieces = [
            "a", "Z", "q9", "0", "7", "'", "’", ".", ",", ":", ";", "_", "-", "(", "\\", " ", "  ",
            "\t", "\n", "\r", "\r\n", "\x0b", "\x0c", "\x01", "\u{301}", "\u{93e}", "\u{ad}",
            "\u{200d}", "\u{3000}", "é", "東", "🦀", "🇫🇷", "\u{85}", "\u{2028}", "ab'cd", "1'2",
            "x.y", "3.14", "",
        ];
        for text in crate::random_texts(0x853c_49e6_748f_ea9b, &pieces, 20_000, 13) {
            let text = String::from_utf8(text).expect("pieces are UTF-8");
            let fast: Vec<&str> = tokens(&text).collect();
            let slow: Vec<&str> = unicode_tokens(&text).collect();
            assert_eq!(fast, slow, "text {text:?}");
        }
    }
}
