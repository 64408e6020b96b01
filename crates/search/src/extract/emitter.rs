//! The html5gum `Emitter` of HTML extraction: html5gum's `CallbackEmitter`, cut down to what
//! extraction reads.
//!
//! `CallbackEmitter` copies every attribute name and value of every tag into buffers and hands
//! each to a callback, and the callback compared each against the few that matter (`lang` of
//! `<html>`, `http-equiv`, `name` and `content` of `<meta>`). A rustdoc page has thousands of
//! `class`, `href` and `id` attributes; in the extract module that bookkeeping was a sixth of
//! the stage's time. This emitter raises the same events in the same order (so the
//! [`HtmlState`] methods see exactly what the callback saw), except that the attributes of a tag
//! other than `html` and `meta` are not copied at all. `tests::emitter_equals_html5gums_callback_emitter`
//! checks both emitters extract the same documents.

use html5gum::{Emitter, Error, State, naive_next_state};

use super::HtmlState;

/// Whether the tag being read is a start or an end tag.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    None,
    Start,
    End,
}

pub(super) struct TextEmitter<'s> {
    st: &'s mut HtmlState,
    /// Characters since the last tag, comment or doctype (flushed as one string event).
    chars: Vec<u8>,
    last_start_tag: Vec<u8>,
    kind: Kind,
    self_closing: bool,
    /// The tag's name until its open-start-tag event moves it to `last_start_tag`.
    name: Vec<u8>,
    attr_name: Vec<u8>,
    attr_value: Vec<u8>,
    /// Whether the current tag's attributes matter ([`HtmlState::wants_attributes`]).
    keep_attributes: bool,
}

impl<'s> TextEmitter<'s> {
    pub(super) fn new(st: &'s mut HtmlState) -> Self {
        TextEmitter {
            st,
            chars: Vec::new(),
            last_start_tag: Vec::new(),
            kind: Kind::None,
            self_closing: false,
            name: Vec::new(),
            attr_name: Vec::new(),
            attr_value: Vec::new(),
            keep_attributes: false,
        }
    }

    #[inline]
    fn flush_chars(&mut self) {
        if !self.chars.is_empty() {
            self.st.string(&self.chars);
            self.chars.clear();
        }
    }

    #[inline]
    fn flush_open_start_tag(&mut self) {
        self.flush_chars();
        if self.kind == Kind::Start && !self.name.is_empty() {
            self.st.open_start_tag(&self.name);
            self.last_start_tag.clear();
            std::mem::swap(&mut self.last_start_tag, &mut self.name);
        }
    }

    #[inline]
    fn flush_attribute_name(&mut self) {
        self.flush_open_start_tag();
        if !self.attr_name.is_empty() {
            self.st.attribute_name(&self.attr_name);
            self.attr_name.clear();
        }
    }

    #[inline]
    fn flush_attribute(&mut self) {
        self.flush_attribute_name();
        if !self.attr_value.is_empty() {
            self.st.attribute_value(&self.attr_value);
            self.attr_value.clear();
        }
    }
}

impl Emitter for TextEmitter<'_> {
    type Token = ();

    fn set_last_start_tag(&mut self, last_start_tag: Option<&[u8]>) {
        self.last_start_tag.clear();
        self.last_start_tag
            .extend_from_slice(last_start_tag.unwrap_or_default());
    }

    fn emit_eof(&mut self) {
        self.flush_chars();
    }

    fn emit_error(&mut self, _: Error) {}

    /// Extraction ignores parse errors, and html5gum's per-byte character validation is
    /// otherwise the single hottest function of the extract stage.
    fn should_emit_errors(&mut self) -> bool {
        false
    }

    fn pop_token(&mut self) -> Option<()> {
        None
    }

    fn emit_string(&mut self, s: &[u8]) {
        self.chars.extend_from_slice(s);
    }

    fn init_start_tag(&mut self) {
        self.name.clear();
        self.kind = Kind::Start;
        self.self_closing = false;
    }

    fn init_end_tag(&mut self) {
        self.name.clear();
        self.kind = Kind::End;
    }

    fn init_comment(&mut self) {
        self.flush_chars();
    }

    fn emit_current_tag(&mut self) -> Option<State> {
        self.flush_attribute();
        match self.kind {
            Kind::Start => {
                self.flush_open_start_tag();
                self.st.start_tag(self.self_closing);
            }
            Kind::End => {
                self.last_start_tag.clear();
                self.st.end_tag(&self.name);
            }
            Kind::None => {}
        }
        // As `CallbackEmitter::naively_switch_states(true)`: RAWTEXT/RCDATA/script states after
        // <script>, <style>, <title>, ..., as a tree builder would.
        naive_next_state(&self.last_start_tag)
    }

    fn emit_current_comment(&mut self) {}

    fn emit_current_doctype(&mut self) {}

    fn set_self_closing(&mut self) {
        if self.kind != Kind::End {
            self.self_closing = true;
        }
    }

    fn set_force_quirks(&mut self) {}

    fn push_tag_name(&mut self, s: &[u8]) {
        self.name.extend_from_slice(s);
    }

    fn push_comment(&mut self, _: &[u8]) {}

    fn push_doctype_name(&mut self, _: &[u8]) {}

    fn init_doctype(&mut self) {
        self.flush_chars();
    }

    fn init_attribute(&mut self) {
        self.flush_open_start_tag();
        self.flush_attribute();
        // The tag's name is known now (its open-start-tag event has been raised).
        self.keep_attributes = self.st.wants_attributes();
    }

    fn push_attribute_name(&mut self, s: &[u8]) {
        if self.keep_attributes {
            self.attr_name.extend_from_slice(s);
        }
    }

    fn push_attribute_value(&mut self, s: &[u8]) {
        if self.keep_attributes {
            self.flush_attribute_name();
            self.attr_value.extend_from_slice(s);
        }
    }

    fn set_doctype_public_identifier(&mut self, _: &[u8]) {}

    fn set_doctype_system_identifier(&mut self, _: &[u8]) {}

    fn push_doctype_public_identifier(&mut self, _: &[u8]) {}

    fn push_doctype_system_identifier(&mut self, _: &[u8]) {}

    fn current_is_appropriate_end_tag_token(&mut self) -> bool {
        self.kind == Kind::End
            && !self.last_start_tag.is_empty()
            && self.last_start_tag == self.name
    }
}

#[cfg(test)]
mod tests {
    use html5gum::emitters::callback::{CallbackEmitter, CallbackEvent};
    use html5gum::{ForwardingEmitter, Tokenizer};

    use super::super::{Doc, HtmlState, SliceReader, extract_html, finish_html};
    use super::*;

    /// html5gum's callback emitter, telling the tokenizer to skip its error checks as
    /// [`TextEmitter`] does.
    struct IgnoreErrors<E>(E);

    impl<E: Emitter> ForwardingEmitter for IgnoreErrors<E> {
        type Token = E::Token;

        fn inner(&mut self) -> &mut impl Emitter<Token = Self::Token> {
            &mut self.0
        }

        fn should_emit_errors(&mut self) -> bool {
            false
        }
    }

    /// Extraction as it was before [`TextEmitter`]: html5gum's `CallbackEmitter`, every
    /// attribute handed to the state.
    fn extract_with_callbacks(bytes: &[u8]) -> Doc {
        let mut state = HtmlState::default();
        {
            let st = &mut state;
            let mut emitter = CallbackEmitter::new(
                move |event: CallbackEvent<'_>, _: html5gum::Span<()>| -> Option<()> {
                    match event {
                        CallbackEvent::OpenStartTag { name } => st.open_start_tag(name),
                        CallbackEvent::AttributeName { name } => st.attribute_name(name),
                        CallbackEvent::AttributeValue { value } => st.attribute_value(value),
                        CallbackEvent::CloseStartTag { self_closing } => st.start_tag(self_closing),
                        CallbackEvent::EndTag { name } => st.end_tag(name),
                        CallbackEvent::String { value } => st.string(value),
                        CallbackEvent::Comment { .. }
                        | CallbackEvent::Doctype { .. }
                        | CallbackEvent::Error(_) => {}
                    }
                    None
                },
            );
            emitter.naively_switch_states(true);
            for item in
                Tokenizer::new_with_emitter(SliceReader { input: bytes }, IgnoreErrors(emitter))
            {
                let Ok(()) = item;
            }
        }
        finish_html(state)
    }

    #[test]
    fn emitter_equals_html5gums_callback_emitter() {
        let fixed: &[&[u8]] = &[
            b"",
            b"<html lang=\"fr\"><head><title>T&amp;t</title></head><body><p>x</p></body></html>",
            b"<html lang=de lang=en><body><h1>A</h1><main><h1 class=x>B</h1>m</main>z</body>",
            b"<meta http-equiv=\"refresh\" content=\"0; URL=../b.html\"><p>moved</p>",
            b"<meta content=\"0;url='x.html'\" http-equiv=REFRESH><meta name=robots content=noindex>",
            b"<meta name=\"ROBOTS\" content=\"nofollow, NONE\"><meta name=x content=y><p>t</p>",
            // Attributes on end tags, after a start tag whose attributes matter.
            b"<html></html lang=\"xx\"><meta></meta content=\"0; url=y\" http-equiv=refresh>",
            b"<meta http-equiv=refresh><p content=\"0; url=z\">after</p><meta content=\"1;u\">",
            b"<p class=\"a\" id='b' data-x=c>text &amp; more &#x41;&#66; &notanentity; &lt</p>",
            b"<script>if (a < b && c > d) { s = '</p>' }</script><style>p>q{}</style><p>s</p>",
            b"<textarea>&amp;<b></textarea><a href=\"x?a=1&b=2\">caf\xc3\xa9 \xff\xfe</a>",
            b"<title>one<title>two</title><nav><nav>n</nav>still nav</nav><pre>a\n  b\n</pre>",
            b"<head><meta charset=utf-8><p>unclosed head</p><svg><svg/></svg>x<br/>y",
            b"<!DOCTYPE html><!-- c --><![CDATA[x]]><?pi?><h1>t<h1>u</h1></h1><main>m",
            b"<p attr=\"unterminated",
            b"<<<>>>&&&;;;\0\0\r\r<meta",
        ];
        for input in fixed {
            assert_eq!(
                extract_html(input),
                extract_with_callbacks(input),
                "input {:?}",
                String::from_utf8_lossy(input)
            );
        }
        // Random documents from markup pieces, with a fixed seed (xorshift64).
        let alphabet: &[&[u8]] = &[
            b"<html lang=en>",
            b"<html lang=\"fr\" ",
            b"<meta http-equiv=\"refresh\" ",
            b"<meta name=robots ",
            b"content=\"0; url=x.html\"",
            b"content=noindex",
            b"</meta content=y>",
            b"<title>",
            b"</title>",
            b"<main>",
            b"</main>",
            b"<h1 class=\"a\">",
            b"</h1>",
            b"<nav>",
            b"</nav>",
            b"<pre>",
            b"</pre>",
            b"<script>",
            b"</script>",
            b"<p>",
            b"</p>",
            b"<br/>",
            b"<head>",
            b"<body>",
            b"<!--",
            b"-->",
            b"<!DOCTYPE html>",
            b">",
            b"\"",
            b"=",
            b" ",
            b"\n",
            b"&amp;",
            b"&",
            b"word",
            b"caf\xc3\xa9",
            b"\xff",
        ];
        for input in crate::random_texts(0x2545_f491_4f6c_dd1d, alphabet, 3000, 40) {
            assert_eq!(
                extract_html(&input),
                extract_with_callbacks(&input),
                "input {:?}",
                String::from_utf8_lossy(&input)
            );
        }
    }

    /// The Rust book and reference pages of the local toolchain, when rust-docs is installed:
    /// real rustdoc and mdBook output, attributes everywhere.
    #[test]
    fn emitter_equals_callback_emitter_on_the_local_rust_docs() {
        let Some(sysroot) = std::process::Command::new("rustc")
            .args(["--print", "sysroot"])
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        else {
            return;
        };
        let html = std::path::Path::new(&sysroot).join("share/doc/rust/html");
        let mut checked = 0;
        for dir in ["book", "reference", "std/vec", "cargo/reference"] {
            let Ok(entries) = std::fs::read_dir(html.join(dir)) else {
                continue;
            };
            for entry in entries.flatten().take(60) {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "html") {
                    let bytes = std::fs::read(&path).unwrap();
                    assert_eq!(
                        extract_html(&bytes),
                        extract_with_callbacks(&bytes),
                        "{}",
                        path.display()
                    );
                    checked += 1;
                }
            }
        }
        eprintln!("compared {checked} pages of {}", html.display());
    }
}
