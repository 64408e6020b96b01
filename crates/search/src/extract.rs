//! HTML, Markdown and plain text to a title and plain text.

use html5gum::Tokenizer;
use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

mod emitter;

use crate::ascii::{is_space as is_ascii_space, skip_printable};

/// What kind of document some bytes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DocKind {
    /// HTML (any version; tag soup is fine).
    Html,
    /// CommonMark with tables, strikethrough, task lists, footnotes and YAML front matter.
    Markdown,
    /// Plain text.
    Text,
}

impl DocKind {
    /// The kind for a file name's extension (case-insensitive): `html`/`htm`/`xhtml`,
    /// `md`/`markdown`, `txt`/`text`; `None` for anything else.
    pub fn from_path(path: &str) -> Option<DocKind> {
        let ext = path.rsplit_once('.')?.1.to_ascii_lowercase();
        match ext.as_str() {
            "html" | "htm" | "xhtml" => Some(DocKind::Html),
            "md" | "markdown" => Some(DocKind::Markdown),
            "txt" | "text" => Some(DocKind::Text),
            _ => None,
        }
    }
}

/// An extracted document.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Doc {
    /// The title; empty when the document has none.
    pub title: String,
    /// The text. For HTML and Markdown: blocks (paragraphs, headings, list items, table cells,
    /// lines of preformatted code) are separated by one `\n`, and whitespace inside a block is
    /// collapsed to one space; no leading or trailing whitespace.
    pub text: String,
    /// For an HTML page that only redirects (`<meta http-equiv="refresh" content="0;
    /// URL=...">`, as mdBook and rustdoc write for moved pages): the target URL. Such pages
    /// are usually not worth indexing.
    pub redirect: Option<String>,
    /// For HTML: the `lang` attribute of the `<html>` element, if any (see
    /// [`skip_reason`](crate::skip_reason), which skips translations).
    pub lang: Option<String>,
    /// For HTML: the page asks search engines not to index it (`<meta name="robots"
    /// content="noindex">`, or `none`), as rustdoc's old-link stubs of the Rust book do.
    pub noindex: bool,
}

/// Extracts the title and text of a document.
///
/// Never fails: invalid UTF-8 is replaced with U+FFFD and malformed markup is handled as
/// browsers do.
///
/// - **HTML** (tokenized with `html5gum`, a WHATWG-compliant tokenizer; character references
///   are decoded): the contents of `head`, `script`, `style`, `nav`, `noscript`, `template`,
///   `svg`, `button`, `iframe`, `select` and rustdoc's `rustdoc-toolbar`/`rustdoc-topbar` are
///   dropped. If the page has a `<main>` element, only the text inside `<main>` is kept, so
///   that the menus and sidebars of rustdoc and mdBook pages are not indexed. The title is the
///   first `<title>`, or else the first `<h1>` (inside `<main>` when there is one).
/// - **Markdown** (`pulldown-cmark`): the text of text and inline code events; raw HTML and
///   front matter are dropped. The title is the text of the first heading.
/// - **Plain text**: the text as is; the title is the first non-blank line, trimmed.
pub fn extract(bytes: &[u8], kind: DocKind) -> Doc {
    match kind {
        DocKind::Html => extract_html(bytes),
        DocKind::Markdown => extract_markdown(&String::from_utf8_lossy(bytes)),
        DocKind::Text => {
            let text = String::from_utf8_lossy(bytes).into_owned();
            let title = text
                .lines()
                .map(str::trim)
                .find(|l| !l.is_empty())
                .unwrap_or("")
                .to_owned();
            Doc {
                title,
                text,
                redirect: None,
                lang: None,
                noindex: false,
            }
        }
    }
}

/// Collects text with whitespace collapsed and blocks separated by one newline.
#[derive(Default)]
struct TextSink {
    out: String,
    pending_space: bool,
    pending_break: bool,
}

impl TextSink {
    /// Pushes `s` as `push_char` would, one character at a time, but copies runs of ASCII
    /// that are not whitespace in one go.
    fn push_str(&mut self, s: &str) {
        let bytes = s.as_bytes();
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            if !b.is_ascii() {
                let Some(c) = s[i..].chars().next() else {
                    break;
                };
                self.push_char(c);
                i += c.len_utf8();
            } else if is_ascii_space(b) {
                self.pending_space = true;
                i += 1;
            } else {
                let start = i;
                i = ascii_run_end(bytes, i);
                self.separate();
                self.out.push_str(&s[start..i]);
            }
        }
    }

    fn push_char(&mut self, c: char) {
        if c.is_whitespace() {
            self.pending_space = true;
            return;
        }
        self.separate();
        self.out.push(c);
    }

    /// Before text that is not whitespace: the pending block break or space, if any.
    fn separate(&mut self) {
        if !self.out.is_empty() {
            if self.pending_break {
                self.out.push('\n');
            } else if self.pending_space {
                self.out.push(' ');
            }
        }
        self.pending_space = false;
        self.pending_break = false;
    }

    /// Pushes preformatted text: newlines become block breaks.
    fn push_pre(&mut self, s: &str) {
        let mut lines = s.split('\n');
        if let Some(first) = lines.next() {
            self.push_str(first);
        }
        for line in lines {
            self.block_break();
            self.push_str(line);
        }
    }

    fn block_break(&mut self) {
        self.pending_break = true;
    }
}

/// Where the run of ASCII bytes that are not whitespace starting at `i` ends.
fn ascii_run_end(bytes: &[u8], mut i: usize) -> usize {
    loop {
        i = skip_printable(bytes, i);
        match bytes.get(i) {
            // A control character, or the last bytes.
            Some(&b) if b.is_ascii() && !is_ascii_space(b) => i += 1,
            _ => return i,
        }
    }
}

/// Elements whose contents are dropped.
fn is_skipped(name: &[u8]) -> bool {
    matches!(
        name,
        b"head"
            | b"script"
            | b"style"
            | b"nav"
            | b"noscript"
            | b"template"
            | b"svg"
            | b"math"
            | b"button"
            | b"iframe"
            | b"select"
            | b"object"
            | b"rustdoc-toolbar"
            | b"rustdoc-topbar"
    )
}

/// Elements that start a new block of text.
fn is_block(name: &[u8]) -> bool {
    matches!(
        name,
        b"address"
            | b"article"
            | b"aside"
            | b"blockquote"
            | b"body"
            | b"br"
            | b"caption"
            | b"dd"
            | b"details"
            | b"dialog"
            | b"div"
            | b"dl"
            | b"dt"
            | b"fieldset"
            | b"figcaption"
            | b"figure"
            | b"footer"
            | b"form"
            | b"h1"
            | b"h2"
            | b"h3"
            | b"h4"
            | b"h5"
            | b"h6"
            | b"header"
            | b"hgroup"
            | b"hr"
            | b"li"
            | b"main"
            | b"ol"
            | b"p"
            | b"pre"
            | b"section"
            | b"summary"
            | b"table"
            | b"tbody"
            | b"td"
            | b"tfoot"
            | b"th"
            | b"thead"
            | b"tr"
            | b"ul"
    )
}

/// Elements that may appear in `<head>`; any other start tag ends an unclosed head.
fn is_head_content(name: &[u8]) -> bool {
    matches!(
        name,
        b"head"
            | b"title"
            | b"meta"
            | b"link"
            | b"style"
            | b"script"
            | b"base"
            | b"noscript"
            | b"template"
    )
}

#[derive(Default)]
struct HtmlState {
    text: TextSink,
    /// The element being skipped and how deeply it is nested in itself.
    skipping: Option<(Vec<u8>, u32)>,
    /// Name of the start tag being read (between OpenStartTag and CloseStartTag).
    tag: Vec<u8>,
    attr_name: Vec<u8>,
    http_equiv_refresh: bool,
    meta_content: Option<String>,
    in_title: bool,
    title: Option<TextSink>,
    h1_depth: u32,
    first_h1: Option<TextSink>,
    first_main_h1: Option<TextSink>,
    /// Current `<h1>` text while it is the first one (anywhere, or inside main).
    h1_capture: Option<TextSink>,
    h1_in_main: bool,
    pre_depth: u32,
    main_depth: u32,
    main_start: usize,
    main_ranges: Vec<(usize, usize)>,
    redirect: Option<String>,
    lang: Option<String>,
    meta_robots: bool,
    noindex: bool,
}

impl HtmlState {
    /// A start tag's name is known (before its attributes).
    fn open_start_tag(&mut self, name: &[u8]) {
        self.tag.clear();
        self.tag.extend_from_slice(name);
        self.http_equiv_refresh = false;
        self.meta_robots = false;
        self.meta_content = None;
    }

    /// Whether the attributes of the tag being read matter: only `<html lang>` and `<meta>`'s
    /// are read. (For an end tag, `tag` is still the last start tag, as it was for html5gum's
    /// callback emitter.)
    fn wants_attributes(&self) -> bool {
        self.tag == b"html" || self.tag == b"meta"
    }

    fn attribute_name(&mut self, name: &[u8]) {
        self.attr_name.clear();
        self.attr_name.extend_from_slice(name);
    }

    fn attribute_value(&mut self, value: &[u8]) {
        if self.tag == b"html" && self.attr_name == b"lang" && self.lang.is_none() {
            self.lang = Some(String::from_utf8_lossy(value).into_owned());
        } else if self.tag == b"meta" {
            if self.attr_name == b"http-equiv" {
                self.http_equiv_refresh = value.eq_ignore_ascii_case(b"refresh");
            } else if self.attr_name == b"name" {
                self.meta_robots = value.eq_ignore_ascii_case(b"robots");
            } else if self.attr_name == b"content" {
                self.meta_content = Some(String::from_utf8_lossy(value).into_owned());
            }
        }
    }

    fn start_tag(&mut self, self_closing: bool) {
        let name = std::mem::take(&mut self.tag);
        if name == b"meta"
            && self.http_equiv_refresh
            && self.redirect.is_none()
            && let Some(content) = self.meta_content.take()
        {
            self.redirect = parse_refresh(&content);
        }
        if name == b"meta"
            && self.meta_robots
            && let Some(content) = self.meta_content.take()
        {
            self.noindex |= content.split(',').any(|d| {
                let d = d.trim();
                d.eq_ignore_ascii_case("noindex") || d.eq_ignore_ascii_case("none")
            });
        }
        self.http_equiv_refresh = false;
        self.meta_robots = false;
        self.meta_content = None;

        if let Some((skip, depth)) = &mut self.skipping {
            if skip.as_slice() == b"head" && !is_head_content(&name) {
                // An unclosed <head>: the body has started.
                self.skipping = None;
            } else {
                if *skip == name && !self_closing {
                    *depth += 1;
                }
                if name == b"title" && skip.as_slice() == b"head" {
                    self.begin_title();
                }
                self.tag = name;
                return;
            }
        }
        if name == b"title" {
            self.begin_title();
        } else if is_skipped(&name) {
            if !self_closing {
                self.skipping = Some((name.clone(), 1));
            }
        } else {
            if is_block(&name) {
                self.text.block_break();
            }
            match name.as_slice() {
                b"main" => {
                    if self.main_depth == 0 {
                        self.main_start = self.text.out.len();
                    }
                    self.main_depth += 1;
                }
                b"pre" => self.pre_depth += 1,
                b"h1" => {
                    self.h1_depth += 1;
                    if self.h1_depth == 1 {
                        let in_main = self.main_depth > 0;
                        if self.first_h1.is_none() || (in_main && self.first_main_h1.is_none()) {
                            self.h1_capture = Some(TextSink::default());
                            self.h1_in_main = in_main;
                        }
                    }
                }
                _ => {}
            }
        }
        self.tag = name;
    }

    fn begin_title(&mut self) {
        if self.title.is_none() {
            self.title = Some(TextSink::default());
            self.in_title = true;
        }
    }

    fn end_tag(&mut self, name: &[u8]) {
        if name == b"title" {
            self.in_title = false;
        }
        if let Some((skip, depth)) = &mut self.skipping {
            if skip.as_slice() == name {
                *depth -= 1;
                if *depth == 0 {
                    self.skipping = None;
                }
            } else if skip.as_slice() == b"head" && name == b"body" {
                self.skipping = None;
            }
            return;
        }
        if is_block(name) {
            self.text.block_break();
        }
        match name {
            b"main" if self.main_depth > 0 => {
                self.main_depth -= 1;
                if self.main_depth == 0 {
                    self.main_ranges
                        .push((self.main_start, self.text.out.len()));
                }
            }
            b"pre" => self.pre_depth = self.pre_depth.saturating_sub(1),
            b"h1" if self.h1_depth > 0 => {
                self.h1_depth -= 1;
                if self.h1_depth == 0
                    && let Some(h1) = self.h1_capture.take()
                {
                    if self.first_h1.is_none() {
                        self.first_h1 = Some(TextSink {
                            out: h1.out.clone(),
                            ..Default::default()
                        });
                    }
                    if self.h1_in_main && self.first_main_h1.is_none() {
                        self.first_main_h1 = Some(h1);
                    }
                }
            }
            _ => {}
        }
    }

    fn string(&mut self, value: &[u8]) {
        // `from_utf8` checks ASCII a word at a time; `from_utf8_lossy` goes byte by byte.
        let s = match std::str::from_utf8(value) {
            Ok(s) => std::borrow::Cow::Borrowed(s),
            Err(_) => String::from_utf8_lossy(value),
        };
        if self.in_title {
            if let Some(title) = &mut self.title {
                title.push_str(&s);
            }
            return;
        }
        if self.skipping.is_some() {
            return;
        }
        if let Some(h1) = &mut self.h1_capture {
            h1.push_str(&s);
        }
        if self.pre_depth > 0 {
            self.text.push_pre(&s);
        } else {
            self.text.push_str(&s);
        }
    }
}

/// The URL of a `<meta http-equiv="refresh" content="0; URL=target">`.
fn parse_refresh(content: &str) -> Option<String> {
    let (_, rest) = content.split_once([';', ','])?;
    let rest = rest.trim_start();
    let rest = match rest.get(..4) {
        Some(p) if p.eq_ignore_ascii_case("url=") => &rest[4..],
        _ => rest,
    };
    let url = rest.trim().trim_matches(|c| c == '"' || c == '\'').trim();
    (!url.is_empty()).then(|| url.to_owned())
}

/// html5gum's input: a byte slice, like its own `StringReader`, but with a `read_until` that
/// never calls `memchr`.
///
/// `StringReader` checks `needle.contains(byte)` several times per call. On wasm32, where
/// `usize` is 4 bytes, `<[u8]>::contains` on a needle of 8 or more bytes calls core's
/// out-of-line `memchr_aligned` instead of the short loop it inlines on 64-bit targets; in the
/// extract module that was about a quarter of all samples. Here the needle (a constant after
/// inlining) becomes a 256-bit set, and runs of text are scanned eight bytes at a time.
struct SliceReader<'a> {
    input: &'a [u8],
}

impl html5gum::Reader for SliceReader<'_> {
    type Error = std::convert::Infallible;

    #[inline(always)]
    fn read_byte(&mut self) -> Result<Option<u8>, Self::Error> {
        let Some((&b, rest)) = self.input.split_first() else {
            return Ok(None);
        };
        self.input = rest;
        Ok(Some(b))
    }

    #[inline(always)]
    fn try_read_string(&mut self, s: &[u8], case_sensitive: bool) -> Result<bool, Self::Error> {
        match self.input.get(..s.len()) {
            Some(p) if p == s || (!case_sensitive && p.eq_ignore_ascii_case(s)) => {
                self.input = &self.input[s.len()..];
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// The first byte alone if it is in `needle`; otherwise everything before the first byte
    /// that is (the rest of the input if none is). html5gum needs this exact split.
    #[inline(always)]
    fn read_until<'b>(
        &'b mut self,
        needle: &[u8],
        _: &'b mut [u8; 4],
    ) -> Result<Option<&'b [u8]>, Self::Error> {
        let Some(&first) = self.input.first() else {
            return Ok(None);
        };
        let set = ByteSet::new(needle);
        let at = if set.contains(first) {
            1
        } else {
            set.find(needle, self.input, 1)
        };
        let (chunk, rest) = self.input.split_at(at);
        self.input = rest;
        Ok(Some(chunk))
    }
}

/// A set of bytes as 256 bits.
#[derive(Clone, Copy)]
struct ByteSet([u64; 4]);

impl ByteSet {
    #[inline(always)]
    fn new(bytes: &[u8]) -> ByteSet {
        let mut bits = [0u64; 4];
        for &b in bytes {
            bits[usize::from(b >> 6)] |= 1 << (b & 63);
        }
        ByteSet(bits)
    }

    #[inline(always)]
    fn contains(self, b: u8) -> bool {
        self.0[usize::from(b >> 6)] >> (b & 63) & 1 != 0
    }

    /// The index of the first byte of `hay[from..]` in the set (`needle` holds the same bytes),
    /// or `hay.len()`.
    #[inline(always)]
    fn find(self, needle: &[u8], hay: &[u8], from: usize) -> usize {
        const LO: u64 = u64::from_ne_bytes([0x01; 8]);
        const HI: u64 = u64::from_ne_bytes([0x80; 8]);
        let mut i = from;
        // Eight bytes at a time, one zero-byte test per needle byte: the lowest flagged byte of
        // `(y - LO) & !y & HI` is exactly the lowest zero byte of `y` (a borrow can only flag
        // bytes above a zero one). Worth it for the short needles of text and attribute values.
        if needle.len() <= 5 {
            while let Some(word) = hay.get(i..).and_then(<[u8]>::first_chunk::<8>) {
                let x = u64::from_le_bytes(*word);
                let mut found = 0;
                for &b in needle {
                    let y = x ^ (LO * u64::from(b));
                    found |= y.wrapping_sub(LO) & !y & HI;
                }
                if found != 0 {
                    return i + (found.trailing_zeros() / 8) as usize;
                }
                i += 8;
            }
        }
        while let Some(&b) = hay.get(i) {
            if self.contains(b) {
                return i;
            }
            i += 1;
        }
        hay.len()
    }
}

fn extract_html(bytes: &[u8]) -> Doc {
    let mut state = HtmlState::default();
    for item in Tokenizer::new_with_emitter(
        SliceReader { input: bytes },
        emitter::TextEmitter::new(&mut state),
    ) {
        // The reader over a byte slice cannot fail, and the emitter makes no tokens.
        let Ok(()) = item;
    }
    finish_html(state)
}

/// The document from what the tokenizer's events left in `state`.
fn finish_html(state: HtmlState) -> Doc {
    let HtmlState {
        text,
        main_ranges,
        main_depth,
        main_start,
        title,
        first_h1,
        first_main_h1,
        ..
    } = state;
    let mut ranges = main_ranges;
    if main_depth > 0 {
        // <main> never closed: it runs to the end.
        ranges.push((main_start, text.out.len()));
    }
    let text = if ranges.is_empty() {
        text.out
    } else {
        let parts: Vec<&str> = ranges
            .iter()
            .map(|&(a, b)| text.out[a..b].trim())
            .filter(|s| !s.is_empty())
            .collect();
        parts.join("\n")
    };
    let title = title
        .map(|t| t.out)
        .filter(|t| !t.is_empty())
        .or_else(|| {
            let h1 = if ranges.is_empty() {
                first_h1
            } else {
                first_main_h1.or(first_h1)
            };
            h1.map(|t| t.out)
        })
        .unwrap_or_default();
    Doc {
        title,
        text,
        redirect: state.redirect,
        lang: state.lang,
        noindex: state.noindex,
    }
}

fn extract_markdown(source: &str) -> Doc {
    let options = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_FOOTNOTES
        | Options::ENABLE_YAML_STYLE_METADATA_BLOCKS;
    let mut text = TextSink::default();
    let mut title: Option<TextSink> = None;
    let mut in_first_heading = false;
    let mut in_code_block = false;
    let mut in_metadata = false;
    for event in Parser::new_ext(source, options) {
        match event {
            Event::Start(tag) => {
                match tag {
                    Tag::Heading { .. } if title.is_none() => {
                        title = Some(TextSink::default());
                        in_first_heading = true;
                    }
                    Tag::CodeBlock(_) => in_code_block = true,
                    Tag::MetadataBlock(_) => in_metadata = true,
                    _ => {}
                }
                if is_md_block(&tag) {
                    text.block_break();
                }
            }
            Event::End(end) => {
                match end {
                    TagEnd::Heading(_) => in_first_heading = false,
                    TagEnd::CodeBlock => in_code_block = false,
                    TagEnd::MetadataBlock(_) => in_metadata = false,
                    _ => {}
                }
                if is_md_block_end(end) {
                    text.block_break();
                }
            }
            Event::Text(s) | Event::Code(s) if !in_metadata => {
                if in_first_heading && let Some(t) = &mut title {
                    t.push_str(&s);
                }
                if in_code_block {
                    text.push_pre(&s);
                } else {
                    text.push_str(&s);
                }
            }
            Event::SoftBreak => text.push_char(' '),
            Event::HardBreak => text.block_break(),
            Event::Rule => text.block_break(),
            _ => {}
        }
    }
    Doc {
        title: title.map(|t| t.out).unwrap_or_default(),
        text: text.out,
        redirect: None,
        lang: None,
        noindex: false,
    }
}

fn is_md_block(tag: &Tag<'_>) -> bool {
    !matches!(
        tag,
        Tag::Emphasis
            | Tag::Strong
            | Tag::Strikethrough
            | Tag::Link { .. }
            | Tag::Image { .. }
            | Tag::Superscript
            | Tag::Subscript
    )
}

fn is_md_block_end(end: TagEnd) -> bool {
    !matches!(
        end,
        TagEnd::Emphasis
            | TagEnd::Strong
            | TagEnd::Strikethrough
            | TagEnd::Link
            | TagEnd::Image
            | TagEnd::Superscript
            | TagEnd::Subscript
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn html(s: &str) -> Doc {
        extract(s.as_bytes(), DocKind::Html)
    }

    /// Every token (errors included) html5gum produces from `input` with `SliceReader`, and
    /// with its own `StringReader`.
    fn tokens_both_ways(input: &[u8]) -> (Vec<html5gum::Token>, Vec<html5gum::Token>) {
        let ours = Tokenizer::new(SliceReader { input })
            .map(|t| {
                let Ok(t) = t;
                t
            })
            .collect();
        let theirs = Tokenizer::new(input)
            .map(|t| {
                let Ok(t) = t;
                t
            })
            .collect();
        (ours, theirs)
    }

    #[test]
    fn slice_reader_tokenizes_exactly_as_html5gums_string_reader() {
        let fixed: &[&[u8]] = &[
            b"",
            b"plain text with no markup at all, long enough for several words",
            b"<p class=\"a\" id='b' data-x=c>text &amp; more &#x41;&#66; &notanentity; &lt</p>",
            b"a\r\nb\rc\n\r\r\nd\0e<br\0/>\x0c\t<x y\r\n=\r\nz>",
            b"<!DOCTYPE html><!-- a -- comment --><![CDATA[x]]><?pi?><title>T</title>",
            b"<script>if (a < b && c > d) { s = '</p>' }</script><style>p>q{}</style>",
            b"<textarea>&amp;<b></textarea><a href=\"x?a=1&b=2\">caf\xc3\xa9 \xff\xfe</a>",
            b"<p attr=\"unterminated",
            b"<<<>>>&&&;;;\0\0\r\r",
        ];
        for input in fixed {
            let (ours, theirs) = tokens_both_ways(input);
            assert_eq!(ours, theirs, "input {:?}", String::from_utf8_lossy(input));
        }
        // Random documents over an alphabet of the bytes html5gum's states stop at, letters,
        // and a multi-byte character, with a fixed seed (xorshift64).
        let alphabet: &[&[u8]] = &[
            b"<",
            b">",
            b"/",
            b"&",
            b";",
            b"#",
            b"=",
            b"\"",
            b"'",
            b"`",
            b"!",
            b"-",
            b"?",
            b" ",
            b"\t",
            b"\n",
            b"\r",
            b"\x0c",
            b"\0",
            b"a",
            b"b",
            b"p",
            b"amp",
            b"lt",
            b"script",
            b"title",
            b"x1",
            b"\xc3\xa9",
            b"\xff",
            b"abcdefghijklmnop",
        ];
        for input in crate::random_texts(0x9e37_79b9_7f4a_7c15, alphabet, 3000, 59) {
            let (ours, theirs) = tokens_both_ways(&input);
            assert_eq!(ours, theirs, "input {:?}", String::from_utf8_lossy(&input));
        }
    }

    #[test]
    fn text_sink_runs_equal_pushing_one_character_at_a_time() {
        let pieces = [
            "word",
            " ",
            "\t",
            "\n",
            "\x0b",
            "\x0c",
            "\r",
            "\u{a0}",
            "\u{2003}",
            "\u{3000}",
            "é",
            "東京",
            "x.y",
            "\u{85}",
            "",
            "\x01",
            "\x1f",
            "\x7f",
            "!",
            "~",
            "\0",
            "a_longer_word!~{}",
            "0123456789abcdef",
        ];
        for text in crate::random_texts(0x2545_f491_4f6c_dd1d, &pieces, 2000, 11) {
            let s = String::from_utf8(text).expect("pieces are UTF-8");
            let (mut fast, mut slow) = (TextSink::default(), TextSink::default());
            fast.push_str("start");
            slow.push_str("start");
            fast.block_break();
            slow.block_break();
            fast.push_str(&s);
            fast.push_pre(&s);
            for c in s.chars() {
                slow.push_char(c);
            }
            for c in s.chars() {
                if c == '\n' {
                    slow.block_break();
                } else {
                    slow.push_char(c);
                }
            }
            assert_eq!(fast.out, slow.out, "input {s:?}");
        }
    }

    #[test]
    fn byte_set_find_stops_at_the_first_needle_byte() {
        let needles: &[&[u8]] = &[b"<", b"<&\0\r", b"\"&\0\r\n", b"\t\n\x0c />\0\r=\"'<`"];
        let hay = b"abcdefgh<ijklmnop&qrstuvwx\0yz\r0123456789\"\t=>'`";
        for needle in needles {
            let set = ByteSet::new(needle);
            for from in 0..hay.len() {
                let expected = hay[from..]
                    .iter()
                    .position(|b| needle.contains(b))
                    .map_or(hay.len(), |p| p + from);
                assert_eq!(
                    set.find(needle, hay, from),
                    expected,
                    "needle {needle:?} from {from}"
                );
            }
        }
    }

    #[test]
    fn html_text_title_entities_and_skipped_elements() {
        let doc = html(
            "<!DOCTYPE html><html><head><title>Caf&eacute; &amp; Bar</title>\
             <style>p { color: red }</style><script>var x = '<p>no</p>';</script></head>\
             <body><nav><a href=/>Home</a></nav><h1>Welcome</h1>\
             <p>Fish &lt;&amp;&gt; chips,\n   <b>to</b>go&nbsp;now.</p>\
             <ul><li>one</li><li>two<br>three</li></ul><!-- hidden -->\
             <noscript>enable js</noscript><svg><title>icon</title><text>svg</text></svg>\
             <pre>fn main() {\n    x();\n}</pre></body></html>",
        );
        assert_eq!(doc.title, "Café & Bar");
        assert_eq!(
            doc.text,
            "Welcome\nFish <&> chips, togo now.\none\ntwo\nthree\nfn main() {\nx();\n}"
        );
        assert_eq!(doc.redirect, None);
    }

    #[test]
    fn html_main_only_and_h1_title() {
        let doc = html(
            "<body><div class=sidebar><h1>Menu</h1><a>Chapter 1</a></div>\
             <main><h1>Data <code>Types</code></h1><p>Scalar types.</p></main>\
             <div>footer links</div></body>",
        );
        assert_eq!(doc.title, "Data Types");
        assert_eq!(doc.text, "Data Types\nScalar types.");
    }

    #[test]
    fn html_without_main_keeps_body_and_first_h1() {
        let doc = html("<h1>First</h1><p>a</p><h1>Second</h1>");
        assert_eq!(doc.title, "First");
        assert_eq!(doc.text, "First\na\nSecond");
    }

    #[test]
    fn html_unclosed_head_ends_at_body_content() {
        let doc = html("<html><head><title>T</title><meta charset=utf-8><p>body text");
        assert_eq!(doc.title, "T");
        assert_eq!(doc.text, "body text");
    }

    #[test]
    fn html_redirect_page() {
        let doc = html(
            "<html><head><meta charset=utf-8><title>Redirecting...</title>\
             <meta http-equiv=\"refresh\" content=\"0; URL=ch18-00-oop.html\"></head>\
             <body><p>Redirecting to... <a href=\"ch18-00-oop.html\">ch18-00-oop.html</a>.</p>\
             <script>location.replace('x')</script></body></html>",
        );
        assert_eq!(doc.redirect.as_deref(), Some("ch18-00-oop.html"));
        assert_eq!(doc.title, "Redirecting...");
        assert_eq!(doc.text, "Redirecting to... ch18-00-oop.html.");
    }

    #[test]
    fn html_invalid_utf8_is_replaced() {
        let doc = extract(b"<p>a\xffb</p>", DocKind::Html);
        assert_eq!(doc.text, "a\u{fffd}b");
    }

    #[test]
    fn markdown_text_and_title() {
        let doc = extract(
            b"---\ntitle: meta\n---\n\nIntro *before* heading.\n\n# The `Rust` Book\n\n\
              Some **bold** text\nover two lines, a [link](http://x) and <span>html</span>.\n\n\
              - item one\n- item two\n\n```rust\nfn main() {}\nlet x = 1;\n```\n\n\
              | a | b |\n|---|---|\n| c | d |\n",
            DocKind::Markdown,
        );
        assert_eq!(doc.title, "The Rust Book");
        assert_eq!(
            doc.text,
            "Intro before heading.\nThe Rust Book\nSome bold text over two lines, a link and html.\n\
             item one\nitem two\nfn main() {}\nlet x = 1;\na\nb\nc\nd"
        );
    }

    #[test]
    fn plain_text_as_is() {
        let doc = extract(b"\n  Title line  \nbody\n", DocKind::Text);
        assert_eq!(doc.title, "Title line");
        assert_eq!(doc.text, "\n  Title line  \nbody\n");
    }

    #[test]
    fn kind_from_path() {
        assert_eq!(DocKind::from_path("a/b.HTML"), Some(DocKind::Html));
        assert_eq!(DocKind::from_path("x.md"), Some(DocKind::Markdown));
        assert_eq!(DocKind::from_path("x.txt"), Some(DocKind::Text));
        assert_eq!(DocKind::from_path("x.png"), None);
        assert_eq!(DocKind::from_path("README"), None);
    }
}
