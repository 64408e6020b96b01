//! Which pages are not indexed, and why.
//!
//! A documentation tree holds pages that are not content of their own: copies of other pages,
//! stubs that point elsewhere, and listings. Indexed, they take the top ranks from the page a
//! user is looking for (the whole-book `print.html` contains every word of every chapter).
//! [`skip_reason`] names the rules; every rule reads the page's path or its markup, never a
//! query. The extract stage drops such pages, and the index counts them by reason
//! ([`Manifest::skipped`](crate::Manifest::skipped)).

use crate::extract::Doc;

/// Why a page is not indexed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SkipReason {
    /// An HTML page that only redirects (`<meta http-equiv="refresh">`), as mdBook and rustdoc
    /// write for moved pages.
    Redirect,
    /// A page under a directory named `first-edition`, `second-edition` or `2018-edition`:
    /// the Rust book's old editions, kept as stubs that point to the current book.
    OldEdition,
    /// `print.html`: mdBook's whole book on one page, a copy of every chapter.
    Print,
    /// `toc.html`: mdBook's table of contents (chapter titles only).
    Toc,
    /// An HTML page whose `<html lang>` is set and is not English (`en` or `en-*`): a
    /// translation of an English page (rust-by-example's `es/`, `ja/`, `ko/`, `zh/`).
    Translation,
    /// A rustdoc source listing: a `*.rs.html` file under a directory named `src`.
    Source,
    /// An HTML page that asks search engines not to index it (`<meta name="robots"
    /// content="noindex">`): the Rust book's old-link stubs (`book/unsafe.html`, ...), which
    /// repeat a paragraph of the chapter they point to.
    NoIndex,
}

impl SkipReason {
    /// All reasons, in the order summaries list them.
    pub const ALL: [SkipReason; 7] = [
        SkipReason::Redirect,
        SkipReason::OldEdition,
        SkipReason::Print,
        SkipReason::Toc,
        SkipReason::Translation,
        SkipReason::Source,
        SkipReason::NoIndex,
    ];

    /// The reason's name in manifests and reports: `redirect`, `old-edition`, `print`, `toc`,
    /// `translation`, `source`, `noindex`.
    pub fn name(self) -> &'static str {
        match self {
            SkipReason::Redirect => "redirect",
            SkipReason::OldEdition => "old-edition",
            SkipReason::Print => "print",
            SkipReason::Toc => "toc",
            SkipReason::Translation => "translation",
            SkipReason::Source => "source",
            SkipReason::NoIndex => "noindex",
        }
    }

    /// How a report describes `n` pages skipped for this reason ("3 redirect pages").
    pub fn describe(self, n: u64) -> String {
        let what = match self {
            SkipReason::Redirect => "redirect page",
            SkipReason::OldEdition => "old-edition copy",
            SkipReason::Print => "print.html (whole book)",
            SkipReason::Toc => "toc.html",
            SkipReason::Translation => "translated page",
            SkipReason::Source => "source listing",
            SkipReason::NoIndex if n == 1 => return "1 page marked noindex".into(),
            SkipReason::NoIndex => return format!("{n} pages marked noindex"),
        };
        let plural = if n == 1 || what.ends_with(')') || what.ends_with(".html") {
            ""
        } else if let Some(stem) = what.strip_suffix('y') {
            return format!("{n} {stem}ies");
        } else {
            "s"
        };
        format!("{n} {what}{plural}")
    }
}

/// Why the page at `path` (relative to the corpus, `/`-separated) is skipped, from its path
/// alone: [`SkipReason::OldEdition`], [`SkipReason::Print`], [`SkipReason::Toc`] or
/// [`SkipReason::Source`]. Checked before the page is read.
///
/// ```
/// use wasmlink_search::{SkipReason, skip_reason_for_path};
/// assert_eq!(skip_reason_for_path("book/print.html"), Some(SkipReason::Print));
/// assert_eq!(skip_reason_for_path("book/2018-edition/ch01.html"), Some(SkipReason::OldEdition));
/// assert_eq!(skip_reason_for_path("src/std/lib.rs.html"), Some(SkipReason::Source));
/// assert_eq!(skip_reason_for_path("std/src/index.html"), None);
/// assert_eq!(skip_reason_for_path("book/ch04-01-what-is-ownership.html"), None);
/// ```
pub fn skip_reason_for_path(path: &str) -> Option<SkipReason> {
    let mut parts = path.split('/');
    let name = parts.next_back()?;
    let dirs: Vec<&str> = parts.collect();
    if dirs
        .iter()
        .any(|d| matches!(*d, "first-edition" | "second-edition" | "2018-edition"))
    {
        return Some(SkipReason::OldEdition);
    }
    match name {
        "print.html" => Some(SkipReason::Print),
        "toc.html" => Some(SkipReason::Toc),
        _ if name.ends_with(".rs.html") && dirs.contains(&"src") => Some(SkipReason::Source),
        _ => None,
    }
}

/// Why the page at `path`, extracted as `doc`, is skipped: the rules of
/// [`skip_reason_for_path`], then [`SkipReason::Redirect`], [`SkipReason::NoIndex`] and
/// [`SkipReason::Translation`].
pub fn skip_reason(path: &str, doc: &Doc) -> Option<SkipReason> {
    if let Some(reason) = skip_reason_for_path(path) {
        return Some(reason);
    }
    if doc.redirect.is_some() {
        return Some(SkipReason::Redirect);
    }
    if doc.noindex {
        return Some(SkipReason::NoIndex);
    }
    match doc.lang.as_deref() {
        Some(lang) if !is_english(lang) => Some(SkipReason::Translation),
        _ => None,
    }
}

/// `en`, `EN`, `en-US`, ...; an empty `lang` says nothing, so it counts as English.
fn is_english(lang: &str) -> bool {
    let primary = lang.trim().split(['-', '_']).next().unwrap_or("");
    primary.is_empty() || primary.eq_ignore_ascii_case("en")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DocKind, extract};

    #[test]
    fn rules() {
        for (path, reason) in [
            (
                "book/first-edition/closures.html",
                Some(SkipReason::OldEdition),
            ),
            (
                "book/second-edition/ch04-01.html",
                Some(SkipReason::OldEdition),
            ),
            ("print.html", Some(SkipReason::Print)),
            ("reference/toc.html", Some(SkipReason::Toc)),
            ("src/core/option.rs.html", Some(SkipReason::Source)),
            ("std/option/enum.Option.html", None),
            ("edition-guide/editions/index.html", None),
            ("book/print.html.md", None),
        ] {
            assert_eq!(skip_reason_for_path(path), reason, "{path}");
        }
        let es = extract(b"<html lang=\"es\"><main><p>Hola</p></main>", DocKind::Html);
        assert_eq!(es.lang.as_deref(), Some("es"));
        assert_eq!(
            skip_reason("a/index.html", &es),
            Some(SkipReason::Translation)
        );
        for page in [
            "<html lang=\"en\"><p>Hi</p>",
            "<html lang=en-US><p>Hi</p>",
            "<html lang=\"\"><p>Hi</p>",
            "<html><p>Hi</p>",
        ] {
            let doc = extract(page.as_bytes(), DocKind::Html);
            assert_eq!(skip_reason("a/index.html", &doc), None, "{page}");
        }
        let redirect = extract(
            b"<meta http-equiv=refresh content=\"0; URL=x.html\">",
            DocKind::Html,
        );
        assert_eq!(skip_reason("x.html", &redirect), Some(SkipReason::Redirect));
        assert_eq!(SkipReason::Redirect.describe(2), "2 redirect pages");
        assert_eq!(SkipReason::OldEdition.describe(3), "3 old-edition copies");
        assert_eq!(SkipReason::Print.describe(4), "4 print.html (whole book)");
    }

    #[test]
    fn a_page_marked_noindex_is_skipped_and_counted_as_such() {
        // The shape of the Rust book's old-link stubs (book/unsafe.html and 66 others).
        let stub = extract(
            b"<html lang=\"en\"><head><title>Unsafe Rust</title>\
              <meta name=\"robots\" content=\"noindex,follow\"></head>\
              <body><h1>Unsafe Rust</h1><p>There is a new edition of the book.</p></body>",
            DocKind::Html,
        );
        assert!(stub.noindex);
        assert_eq!(
            skip_reason("book/unsafe.html", &stub),
            Some(SkipReason::NoIndex)
        );
        for page in [
            "<meta content=\"NOINDEX\" name=\"ROBOTS\"><p>x</p>",
            "<meta name=robots content=\"follow, none\"><p>x</p>",
        ] {
            let doc = extract(page.as_bytes(), DocKind::Html);
            assert!(doc.noindex, "{page}");
        }
        for page in [
            "<meta name=\"robots\" content=\"index,follow\"><p>x</p>",
            "<meta name=\"description\" content=\"noindex\"><p>x</p>",
            "<meta name=\"robots\"><meta content=\"noindex\"><p>x</p>",
            "<p>noindex</p>",
        ] {
            let doc = extract(page.as_bytes(), DocKind::Html);
            assert!(!doc.noindex, "{page}");
            assert_eq!(skip_reason("a.html", &doc), None, "{page}");
        }
        // print.html is marked noindex too, and keeps its own reason.
        let print = extract(
            b"<meta name=robots content=noindex><p>all</p>",
            DocKind::Html,
        );
        assert_eq!(
            skip_reason("book/print.html", &print),
            Some(SkipReason::Print)
        );
        assert_eq!(SkipReason::NoIndex.describe(1), "1 page marked noindex");
        assert_eq!(SkipReason::NoIndex.describe(67), "67 pages marked noindex");
        assert_eq!(SkipReason::NoIndex.name(), "noindex");
    }
}
