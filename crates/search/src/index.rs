//! Building, writing and reading the inverted index.
//!
//! # On-disk format (version 3)
//!
//! An index is a directory with five files:
//!
//! | file | contents |
//! | --- | --- |
//! | `manifest.json` | [`Manifest`]: format name and version, counts, and the length and CRC-32 of each file below |
//! | `docs.bin` | magic `WLSIDOC1`, then postcard `Vec<DocInfo>` (index = [`DocId`]) |
//! | `terms.bin` | magic `WLSITRM1`, then postcard `Vec<TermEntry>` sorted by term (bytewise) |
//! | `postings.bin` | magic `WLSIPST2`, then one list per term at the entry's offset: its length, a skip table (a list longer than 128 entries: each block of 128 entries' last doc id and end offset), then the (doc id delta, term frequency) pairs as varints, the first delta from 0 ([`postings`] describes it) |
//! | `text.bin` | magic `WLSITXT1`, then each document's text, LZ4-compressed (a block with its length prepended, `lz4_flex`), in document order; [`DocInfo::text_bytes`] is each block's length (0: no text stored) |
//!
//! The dictionary holds two fields: the body's terms as they are, and the title's terms
//! prefixed with `title:` (a term never contains `:`, which the tokenizer splits at). The
//! stored text is what snippets show and what phrase queries are checked against.
//! The manifest also records the corpus root (when the indexer was told it) and how many
//! pages were skipped for each [`SkipReason`](crate::SkipReason).
//!
//! postcard writes integers as LEB128 varints and strings as length + UTF-8, so delta-coded
//! postings take 2 to 3 bytes each (and 8 bytes of skip table per 128 of a long list). The
//! CRC-32 (ISO-HDLC, as zlib) covers the whole file, magic included. A query decodes only the
//! postings of its terms, and of a common term's list only the blocks that hold the
//! documents it still needs.
//!
//! [`IndexWriter::write_dir`] first removes `manifest.json`, then writes each data file to a
//! temporary name, syncs it and renames it into place, and writes the manifest the same way
//! last. The manifest is the commit point: a directory whose write was interrupted has no
//! manifest (and [`Index::open`] says so), and a data file from another write fails the
//! manifest's length or CRC check. One writer per directory at a time.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A document's number in an index: 0, 1, 2, ... in the order documents were added.
pub type DocId = u32;

/// The `format` field of every manifest.
pub const FORMAT_NAME: &str = "wasmlink-search-index";
/// The version of the on-disk format this crate writes and reads.
pub const FORMAT_VERSION: u32 = 3;

const MANIFEST: &str = "manifest.json";
const DOCS: &str = "docs.bin";
const TERMS: &str = "terms.bin";
const POSTINGS: &str = "postings.bin";
const TEXT: &str = "text.bin";
const DOCS_MAGIC: &[u8; 8] = b"WLSIDOC1";
const TERMS_MAGIC: &[u8; 8] = b"WLSITRM1";
const POSTINGS_MAGIC: &[u8; 8] = b"WLSIPST2";
const TEXT_MAGIC: &[u8; 8] = b"WLSITXT1";
/// The prefix of the title field's terms in the dictionary.
pub(crate) const TITLE_PREFIX: &str = "title:";

/// The dictionary key of `term` in the title field.
pub(crate) fn title_key(term: &str) -> String {
    format!("{TITLE_PREFIX}{term}")
}
/// The index files' checksum. Slice-by-16 tables: the crate's default (one table, a byte at a
/// time) made checking and writing the files' CRCs two fifths of the merge's time in the index
/// module.
pub(crate) static CRC32: crc::Crc<u32, crc::Table<16>> =
    crc::Crc::<u32, crc::Table<16>>::new(&crc::CRC_32_ISO_HDLC);

/// A hasher without a seed (rustc-hash's FxHash, several times faster than SipHash on short
/// words), so that nothing depends on a random seed and a wasm guest needs no `random_get`.
/// Iteration order is never observable: terms are sorted before writing. Like any unseeded
/// hasher it does not resist chosen collisions; the term map is bounded by the input's size.
type FixedState = rustc_hash::FxBuildHasher;

/// What the index keeps about one document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocInfo {
    /// The document's title.
    pub title: String,
    /// Where the document came from: a path relative to the corpus, or a URL.
    pub path: String,
    /// The number of terms indexed for it (its length for BM25).
    pub len: u32,
    /// The number of terms of its title (the title field's length for BM25).
    pub title_len: u32,
    /// The length of its compressed text in `text.bin` (0: no text stored).
    pub text_bytes: u32,
}

/// One entry of a postings list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Posting {
    /// The document.
    pub doc: DocId,
    /// How many times the term occurs in it (at least 1).
    pub tf: u32,
}

/// An error reading, writing or building an index.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// A file of the index is missing, unreadable, truncated or corrupt.
    #[error("index file {}: {message}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// An I/O error on a file of the index.
    #[error("index file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The index would exceed a limit of the format (2^32 - 1 documents, or a document of
    /// 2^32 - 1 terms).
    #[error("index too large: {0}")]
    TooLarge(String),
    /// A query that cannot be read.
    #[error(transparent)]
    Query(#[from] crate::query::QueryError),
}

fn file_error(path: &Path, message: impl Into<String>) -> IndexError {
    IndexError::File {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

fn io_error(path: &Path, source: std::io::Error) -> IndexError {
    IndexError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Builds an index in memory, one document at a time.
///
/// Several builders (one per batch or per worker) are combined with [`merge`](Self::merge).
/// Merging builders in the order of their documents gives exactly the index (and the same
/// bytes on disk) as adding all documents to one builder.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexBuilder {
    docs: Vec<DocInfo>,
    postings: HashMap<String, Vec<Posting>, FixedState>,
    total_terms: u64,
    total_title_terms: u64,
    /// The documents' compressed texts, one after the other.
    text: Vec<u8>,
    skipped: BTreeMap<String, u64>,
    root: Option<String>,
}

impl IndexBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a document with its terms (from [`normalize`](crate::normalize) or
    /// [`analyze`](crate::analyze)) and returns its id, which is the number of documents added
    /// before it. The document's length is `terms.len()`. The title's terms
    /// ([`analyze`](crate::analyze)d here) go to the title field. No text is stored: use
    /// [`add_with_text`](Self::add_with_text) for snippets and exact phrase matching.
    pub fn add<S: AsRef<str>>(
        &mut self,
        title: &str,
        path: &str,
        terms: &[S],
    ) -> Result<DocId, IndexError> {
        self.add_with_text(title, path, terms, "")
    }

    /// [`add`](Self::add), storing `text` (the text `terms` came from) for snippets and
    /// phrase queries.
    pub fn add_with_text<S: AsRef<str>>(
        &mut self,
        title: &str,
        path: &str,
        terms: &[S],
        text: &str,
    ) -> Result<DocId, IndexError> {
        let doc = DocId::try_from(self.docs.len())
            .ok()
            .filter(|&d| d != DocId::MAX)
            .ok_or_else(|| {
                IndexError::TooLarge(format!("more than {} documents", DocId::MAX - 1))
            })?;
        let len = u32::try_from(terms.len()).map_err(|_| {
            IndexError::TooLarge(format!("document {path} has {} terms", terms.len()))
        })?;
        let title_terms = crate::analyze(title);
        let title_len = u32::try_from(title_terms.len()).map_err(|_| {
            IndexError::TooLarge(format!(
                "document {path}: title has {} terms",
                title_terms.len()
            ))
        })?;
        let compressed = if text.is_empty() {
            Vec::new()
        } else {
            lz4_flex::block::compress_prepend_size(text.as_bytes())
        };
        let text_bytes = u32::try_from(compressed.len()).map_err(|_| {
            IndexError::TooLarge(format!("document {path}: text of {} bytes", text.len()))
        })?;
        let mut counts: HashMap<&str, u32, FixedState> = HashMap::default();
        for term in terms {
            *counts.entry(term.as_ref()).or_insert(0) += 1;
        }
        for (term, tf) in counts {
            self.push_posting(term, Posting { doc, tf });
        }
        let mut title_counts: HashMap<&str, u32, FixedState> = HashMap::default();
        for term in &title_terms {
            *title_counts.entry(term.as_str()).or_insert(0) += 1;
        }
        for (term, tf) in title_counts {
            self.push_posting(&title_key(term), Posting { doc, tf });
        }
        self.docs.push(DocInfo {
            title: title.to_owned(),
            path: path.to_owned(),
            len,
            title_len,
            text_bytes,
        });
        self.text.extend_from_slice(&compressed);
        self.total_terms += u64::from(len);
        self.total_title_terms += u64::from(title_len);
        Ok(doc)
    }

    fn push_posting(&mut self, term: &str, posting: Posting) {
        match self.postings.get_mut(term) {
            Some(list) => list.push(posting),
            None => {
                self.postings.insert(term.to_owned(), vec![posting]);
            }
        }
    }

    /// Counts a page that was not indexed, by reason (a [`SkipReason`](crate::SkipReason)'s
    /// name); the counts go into the manifest.
    pub fn skip(&mut self, reason: &str) {
        *self.skipped.entry(reason.to_owned()).or_insert(0) += 1;
    }

    /// Records the corpus root (an absolute path or URL that documents' paths are relative
    /// to) in the manifest.
    pub fn set_root(&mut self, root: Option<String>) {
        self.root = root;
    }

    /// Appends the documents of `other` after this builder's; their ids are shifted by the
    /// number of documents this builder had.
    pub fn merge(&mut self, other: IndexBuilder) -> Result<(), IndexError> {
        let offset = self.offset_for(other.docs.len())?;
        for (term, list) in other.postings {
            self.append_shifted(term, list, offset);
        }
        self.docs.extend(other.docs);
        self.total_terms += other.total_terms;
        self.total_title_terms += other.total_title_terms;
        self.text.extend_from_slice(&other.text);
        for (reason, n) in other.skipped {
            *self.skipped.entry(reason).or_insert(0) += n;
        }
        Ok(())
    }

    /// Appends the documents of `index` after this builder's, as
    /// `self.merge(IndexBuilder::from_index(index)?)` does, without building that intermediate
    /// builder (no copy of each term, no second hash map): how segments on disk are merged.
    /// On an error nothing is appended.
    pub fn merge_index(&mut self, index: &Index) -> Result<(), IndexError> {
        let offset = self.offset_for(index.docs.len())?;
        let decoded = index
            .terms
            .iter()
            .map(|entry| index.decode_postings(entry))
            .collect::<Result<Vec<_>, _>>()?;
        for (entry, list) in index.terms.iter().zip(decoded) {
            self.append_shifted(&entry.term, list, offset);
        }
        self.docs.extend_from_slice(&index.docs);
        self.total_terms += index.total_terms;
        self.total_title_terms += index.total_title_terms;
        self.text.extend_from_slice(&index.text[TEXT_MAGIC.len()..]);
        for (reason, n) in &index.skipped {
            *self.skipped.entry(reason.clone()).or_insert(0) += n;
        }
        Ok(())
    }

    /// A builder holding everything in `index`, to add to or merge with (for example segments
    /// written by several workers, merged into one index).
    pub fn from_index(index: &Index) -> Result<Self, IndexError> {
        let mut builder = IndexBuilder::new();
        builder.merge_index(index)?;
        Ok(builder)
    }

    /// The id the first of `more` appended documents gets.
    fn offset_for(&self, more: usize) -> Result<DocId, IndexError> {
        let total = self.docs.len() + more;
        match DocId::try_from(self.docs.len()) {
            Ok(offset) if total < DocId::MAX as usize => Ok(offset),
            _ => Err(IndexError::TooLarge(format!(
                "merging gives {total} documents"
            ))),
        }
    }

    /// Appends `list`, its ids shifted by `offset`, to the postings of `term`.
    fn append_shifted<T: AsRef<str> + Into<String>>(
        &mut self,
        term: T,
        list: Vec<Posting>,
        offset: DocId,
    ) {
        let shifted = list.into_iter().map(|p| Posting {
            doc: p.doc + offset,
            tf: p.tf,
        });
        match self.postings.get_mut(term.as_ref()) {
            Some(mine) => mine.extend(shifted),
            None => {
                self.postings.insert(term.into(), shifted.collect());
            }
        }
    }

    /// The number of documents.
    pub fn num_docs(&self) -> usize {
        self.docs.len()
    }

    /// The number of distinct terms.
    pub fn num_terms(&self) -> usize {
        self.postings.len()
    }

    /// The documents, indexed by [`DocId`].
    pub fn docs(&self) -> &[DocInfo] {
        &self.docs
    }

    /// The postings of `term`, by increasing document id.
    pub fn postings(&self, term: &str) -> &[Posting] {
        self.postings.get(term).map_or(&[], Vec::as_slice)
    }
}

/// The manifest of an index directory (`manifest.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT_NAME`].
    pub format: String,
    /// [`FORMAT_VERSION`] of the writer.
    pub version: u32,
    /// Number of documents.
    pub docs: u64,
    /// Number of distinct terms.
    pub terms: u64,
    /// Number of postings (document, term) pairs.
    pub postings: u64,
    /// Sum of the documents' lengths.
    pub total_terms: u64,
    /// Sum of the documents' title lengths.
    pub title_terms: u64,
    /// The directory (or URL) the documents' paths are relative to, if the indexer was told.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    /// Pages not indexed, by reason ([`SkipReason::name`](crate::SkipReason::name)).
    #[serde(default)]
    pub skipped: BTreeMap<String, u64>,
    /// `docs.bin`.
    pub docs_file: FileInfo,
    /// `terms.bin`.
    pub terms_file: FileInfo,
    /// `postings.bin`.
    pub postings_file: FileInfo,
    /// `text.bin`.
    pub text_file: FileInfo,
}

/// Length and checksum of one data file, as recorded in the manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileInfo {
    /// Length in bytes.
    pub bytes: u64,
    /// CRC-32 (ISO-HDLC, as zlib's `crc32`) of the whole file.
    pub crc32: u32,
}

impl FileInfo {
    fn of(bytes: &[u8]) -> Self {
        FileInfo {
            bytes: bytes.len() as u64,
            crc32: CRC32.checksum(bytes),
        }
    }
}

/// A term of the dictionary in `terms.bin`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct TermEntry {
    term: String,
    /// Document frequency: the length of the postings list.
    df: u32,
    /// Byte range of the postings list in `postings.bin`, after the magic.
    offset: u64,
    len: u64,
}

/// The documents' lengths and mean length in the body and the title field, for the impacts a
/// postings list records.
struct Fields {
    body: Vec<u32>,
    title: Vec<u32>,
    body_avgdl: f64,
    title_avgdl: f64,
}

impl Fields {
    fn new(lens: impl Iterator<Item = (u32, u32)>, total: u64, title_total: u64) -> Fields {
        let (body, title): (Vec<u32>, Vec<u32>) = lens.unzip();
        // As ranking computes them (query.rs).
        let n = body.len() as f64;
        Fields {
            body,
            title,
            body_avgdl: total as f64 / n,
            title_avgdl: title_total as f64 / n,
        }
    }

    /// The lengths and mean length of the field of dictionary key `term`.
    fn of(&self, term: &str) -> (&[u32], f64) {
        if term.starts_with(TITLE_PREFIX) {
            (&self.title, self.title_avgdl)
        } else {
            (&self.body, self.body_avgdl)
        }
    }
}

/// An index encoded in the on-disk format, ready to be written.
#[derive(Clone, Debug)]
pub struct IndexWriter {
    manifest: Manifest,
    manifest_json: Vec<u8>,
    docs: Vec<u8>,
    terms: Vec<u8>,
    postings: Vec<u8>,
    text: Vec<u8>,
}

fn postcard_encode<T: Serialize + ?Sized>(
    magic: &[u8; 8],
    value: &T,
    out: Vec<u8>,
) -> Result<Vec<u8>, IndexError> {
    let mut out = out;
    out.extend_from_slice(magic);
    postcard::to_extend(value, out).map_err(|e| IndexError::TooLarge(format!("encoding: {e}")))
}

impl IndexWriter {
    /// Encodes the index held by `builder`.
    pub fn new(builder: &IndexBuilder) -> Result<Self, IndexError> {
        let docs = postcard_encode(DOCS_MAGIC, &builder.docs, Vec::new())?;

        let mut sorted: Vec<(&String, &Vec<Posting>)> = builder.postings.iter().collect();
        sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let mut postings = Vec::from(*POSTINGS_MAGIC);
        let mut entries = Vec::with_capacity(sorted.len());
        let mut entries_bytes = Vec::new();
        let mut num_postings = 0u64;
        let fields = Fields::new(
            builder.docs.iter().map(|d| (d.len, d.title_len)),
            builder.total_terms,
            builder.total_title_terms,
        );
        for (term, list) in sorted {
            entries_bytes.clear();
            postings::put_entries(list, &mut entries_bytes);
            let offset = (postings.len() - POSTINGS_MAGIC.len()) as u64;
            let (lens, avgdl) = fields.of(term);
            postings::put_list(
                list.len() as u64,
                &entries_bytes,
                lens,
                avgdl,
                &mut postings,
            )
            .map_err(|e| IndexError::TooLarge(format!("encoding postings of {term:?}: {e}")))?;
            let len = (postings.len() - POSTINGS_MAGIC.len()) as u64 - offset;
            let df = u32::try_from(list.len()).map_err(|_| {
                IndexError::TooLarge(format!("term {term:?} in too many documents"))
            })?;
            num_postings += u64::from(df);
            entries.push(TermEntry {
                term: term.clone(),
                df,
                offset,
                len,
            });
        }
        let terms = postcard_encode(TERMS_MAGIC, &entries, Vec::new())?;
        let mut text = Vec::with_capacity(TEXT_MAGIC.len() + builder.text.len());
        text.extend_from_slice(TEXT_MAGIC);
        text.extend_from_slice(&builder.text);
        let manifest = Manifest {
            format: FORMAT_NAME.to_owned(),
            version: FORMAT_VERSION,
            docs: builder.docs.len() as u64,
            terms: entries.len() as u64,
            postings: num_postings,
            total_terms: builder.total_terms,
            title_terms: builder.total_title_terms,
            root: builder.root.clone(),
            skipped: builder.skipped.clone(),
            docs_file: FileInfo::of(&docs),
            terms_file: FileInfo::of(&terms),
            postings_file: FileInfo::of(&postings),
            text_file: FileInfo::of(&text),
        };
        let mut manifest_json = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| IndexError::TooLarge(format!("encoding the manifest: {e}")))?;
        manifest_json.push(b'\n');
        Ok(IndexWriter {
            manifest,
            manifest_json,
            docs,
            terms,
            postings,
            text,
        })
    }

    /// The manifest that will be written.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The files of the index as (file name, contents), the manifest last. A guest that hands
    /// its output to the host as bytes instead of writing a directory can use these.
    pub fn files(&self) -> [(&'static str, &[u8]); 5] {
        [
            (DOCS, &self.docs),
            (TERMS, &self.terms),
            (POSTINGS, &self.postings),
            (TEXT, &self.text),
            (MANIFEST, &self.manifest_json),
        ]
    }

    /// Writes the index into `dir` (created if missing), replacing an index already there.
    /// Atomic for readers: they see the old index, no index, or the new one, never a mix
    /// (`manifest.json` is removed first, each data file renamed into place, the manifest last).
    pub fn write_dir(&self, dir: impl AsRef<Path>) -> Result<(), IndexError> {
        self.write_dir_inner(dir.as_ref(), true)
    }

    /// [`write_dir`](Self::write_dir) without syncing the files or the directory: the same
    /// renames (readers still see a whole index or none), but after a crash the files may be
    /// lost or empty, which [`Index::open`]'s length and CRC checks report. For scratch
    /// segments that are merged into a synced index afterwards: `wasmlink index` writes one
    /// per batch, and five `fsync`s per batch were most of its index stage's time.
    pub fn write_dir_unsynced(&self, dir: impl AsRef<Path>) -> Result<(), IndexError> {
        self.write_dir_inner(dir.as_ref(), false)
    }

    fn write_dir_inner(&self, dir: &Path, sync: bool) -> Result<(), IndexError> {
        fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        let manifest = dir.join(MANIFEST);
        match fs::remove_file(&manifest) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(&manifest, e)),
        }
        for (name, bytes) in self.files() {
            let path = dir.join(name);
            let tmp = dir.join(format!(".{name}.tmp"));
            let mut file = fs::File::create(&tmp).map_err(|e| io_error(&tmp, e))?;
            file.write_all(bytes).map_err(|e| io_error(&tmp, e))?;
            if sync {
                file.sync_all().map_err(|e| io_error(&tmp, e))?;
            }
            drop(file);
            fs::rename(&tmp, &path).map_err(|e| io_error(&path, e))?;
        }
        // Make the renames durable. Best effort: not every platform (or WASI host) can open a
        // directory as a file.
        if sync && let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    }

    /// Reads back the encoded index without touching the file system.
    pub fn to_index(&self) -> Result<Index, IndexError> {
        Index::from_files(
            Path::new(""),
            &self.manifest_json,
            &self.docs,
            &self.terms,
            self.postings.clone(),
            self.text.clone(),
        )
    }
}

/// An index opened for queries.
///
/// Documents and the term dictionary are decoded when it is opened; the postings stay encoded
/// in memory and a query decodes those of its terms only.
#[derive(Clone, Debug)]
pub struct Index {
    pub(crate) docs: Vec<DocInfo>,
    terms: Vec<TermEntry>,
    postings: Vec<u8>,
    pub(crate) total_terms: u64,
    pub(crate) total_title_terms: u64,
    /// `text.bin`, magic included, and where each document's block starts in it.
    text: Vec<u8>,
    text_starts: Vec<usize>,
    /// Each document's body and title length ([`DocInfo::len`], [`DocInfo::title_len`]), in
    /// arrays of their own: ranking reads them for every posting, and `docs` is 15 times larger.
    pub(crate) body_lens: Vec<u32>,
    pub(crate) title_lens: Vec<u32>,
    root: Option<String>,
    skipped: BTreeMap<String, u64>,
    dir: PathBuf,
    /// Ranking's per-document accumulators, reused by the next query.
    pub(crate) scratch: crate::query::ScratchCell,
}

fn check_file(
    path: &Path,
    bytes: &[u8],
    info: &FileInfo,
    magic: &[u8; 8],
) -> Result<(), IndexError> {
    let len = bytes.len() as u64;
    if len < info.bytes {
        return Err(file_error(
            path,
            format!("truncated: {len} bytes, the manifest says {}", info.bytes),
        ));
    }
    if len > info.bytes {
        return Err(file_error(
            path,
            format!(
                "{len} bytes, the manifest says {}; not from the same write",
                info.bytes
            ),
        ));
    }
    let crc = CRC32.checksum(bytes);
    if crc != info.crc32 {
        return Err(file_error(
            path,
            format!(
                "corrupt: CRC-32 {crc:08x}, the manifest says {:08x}",
                info.crc32
            ),
        ));
    }
    if !bytes.starts_with(magic) {
        return Err(file_error(
            path,
            format!(
                "not a wasmlink-search file (expected magic {:?})",
                String::from_utf8_lossy(magic)
            ),
        ));
    }
    Ok(())
}

fn postcard_decode<'a, T: Deserialize<'a>>(
    path: &Path,
    payload: &'a [u8],
) -> Result<T, IndexError> {
    let (value, rest) = postcard::take_from_bytes(payload)
        .map_err(|e| file_error(path, format!("cannot decode: {e}")))?;
    if !rest.is_empty() {
        return Err(file_error(
            path,
            format!("{} bytes of garbage after the data", rest.len()),
        ));
    }
    Ok(value)
}

impl Index {
    /// Opens the index in `dir`, checking every file against the manifest.
    pub fn open(dir: impl AsRef<Path>) -> Result<Index, IndexError> {
        let dir = dir.as_ref();
        let read = |name: &str| -> Result<Vec<u8>, IndexError> {
            let path = dir.join(name);
            fs::read(&path).map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound && name == MANIFEST {
                    file_error(
                        &path,
                        "missing: not an index directory, or its write did not finish",
                    )
                } else if e.kind() == std::io::ErrorKind::NotFound {
                    file_error(&path, "missing")
                } else {
                    io_error(&path, e)
                }
            })
        };
        let manifest = read(MANIFEST)?;
        let docs = read(DOCS)?;
        let terms = read(TERMS)?;
        let postings = read(POSTINGS)?;
        let text = read(TEXT)?;
        Index::from_files(dir, &manifest, &docs, &terms, postings, text)
    }

    /// Decodes an index from the contents of its five files; `dir` is only used to name files
    /// in errors.
    pub fn from_files(
        dir: &Path,
        manifest: &[u8],
        docs: &[u8],
        terms: &[u8],
        postings: Vec<u8>,
        text: Vec<u8>,
    ) -> Result<Index, IndexError> {
        let manifest_path = dir.join(MANIFEST);
        // An index of another version is named before its fields are checked: its manifest
        // may not parse as this version's.
        let version = serde_json::from_slice::<serde_json::Value>(manifest)
            .ok()
            .and_then(|v| v.get("version").and_then(serde_json::Value::as_u64));
        if let Some(v) = version.filter(|&v| v != u64::from(FORMAT_VERSION)) {
            return Err(file_error(
                &manifest_path,
                format!(
                    "format version {v} is not supported (this build reads {FORMAT_VERSION}): \
                     index the corpus again with `wasmlink index`"
                ),
            ));
        }
        let m: Manifest = serde_json::from_slice(manifest)
            .map_err(|e| file_error(&manifest_path, format!("invalid: {e}")))?;
        if m.format != FORMAT_NAME {
            return Err(file_error(
                &manifest_path,
                format!("format is {:?}, expected {FORMAT_NAME:?}", m.format),
            ));
        }
        if m.version != FORMAT_VERSION {
            return Err(file_error(
                &manifest_path,
                format!(
                    "format version {} is not supported (this build reads {FORMAT_VERSION}): \
                     index the corpus again with `wasmlink index`",
                    m.version
                ),
            ));
        }
        let docs_path = dir.join(DOCS);
        let terms_path = dir.join(TERMS);
        let postings_path = dir.join(POSTINGS);
        check_file(&docs_path, docs, &m.docs_file, DOCS_MAGIC)?;
        check_file(&terms_path, terms, &m.terms_file, TERMS_MAGIC)?;
        check_file(&postings_path, &postings, &m.postings_file, POSTINGS_MAGIC)?;
        let text_path = dir.join(TEXT);
        check_file(&text_path, &text, &m.text_file, TEXT_MAGIC)?;

        let docs: Vec<DocInfo> = postcard_decode(&docs_path, &docs[DOCS_MAGIC.len()..])?;
        if docs.len() as u64 != m.docs {
            return Err(file_error(
                &docs_path,
                format!("{} documents, the manifest says {}", docs.len(), m.docs),
            ));
        }
        let total: u64 = docs.iter().map(|d| u64::from(d.len)).sum();
        if total != m.total_terms {
            return Err(file_error(
                &docs_path,
                format!(
                    "document lengths add up to {total}, the manifest says {}",
                    m.total_terms
                ),
            ));
        }
        let title_total: u64 = docs.iter().map(|d| u64::from(d.title_len)).sum();
        if title_total != m.title_terms {
            return Err(file_error(
                &docs_path,
                format!(
                    "title lengths add up to {title_total}, the manifest says {}",
                    m.title_terms
                ),
            ));
        }
        let mut text_starts = Vec::with_capacity(docs.len());
        let mut at = TEXT_MAGIC.len();
        for d in &docs {
            text_starts.push(at);
            at += d.text_bytes as usize;
        }
        if at != text.len() {
            return Err(file_error(
                &text_path,
                format!(
                    "{} bytes of text, the documents say {}",
                    text.len() - TEXT_MAGIC.len(),
                    at - TEXT_MAGIC.len()
                ),
            ));
        }
        let terms: Vec<TermEntry> = postcard_decode(&terms_path, &terms[TERMS_MAGIC.len()..])?;
        if terms.len() as u64 != m.terms {
            return Err(file_error(
                &terms_path,
                format!("{} terms, the manifest says {}", terms.len(), m.terms),
            ));
        }
        let payload = (postings.len() - POSTINGS_MAGIC.len()) as u64;
        let mut num_postings = 0u64;
        for (i, t) in terms.iter().enumerate() {
            if i > 0 && terms[i - 1].term >= t.term {
                return Err(file_error(
                    &terms_path,
                    format!("terms not sorted at {:?}", t.term),
                ));
            }
            if t.offset.checked_add(t.len).is_none_or(|end| end > payload) || t.df == 0 {
                return Err(file_error(
                    &terms_path,
                    format!(
                        "term {:?}: postings range {}+{} outside postings.bin",
                        t.term, t.offset, t.len
                    ),
                ));
            }
            num_postings += u64::from(t.df);
        }
        if num_postings != m.postings {
            return Err(file_error(
                &terms_path,
                format!("{num_postings} postings, the manifest says {}", m.postings),
            ));
        }
        let body_lens = docs.iter().map(|d| d.len).collect();
        let title_lens = docs.iter().map(|d| d.title_len).collect();
        Ok(Index {
            docs,
            terms,
            postings,
            total_terms: m.total_terms,
            total_title_terms: m.title_terms,
            text,
            text_starts,
            body_lens,
            title_lens,
            root: m.root,
            skipped: m.skipped,
            dir: dir.to_path_buf(),
            scratch: Default::default(),
        })
    }

    /// The corpus root recorded by the indexer, if any: documents' paths are relative to it.
    pub fn root(&self) -> Option<&str> {
        self.root.as_deref()
    }

    /// Pages not indexed, by reason.
    pub fn skipped(&self) -> &BTreeMap<String, u64> {
        &self.skipped
    }

    /// The stored text of `doc`: `None` if none was stored (or `doc` is out of range).
    pub fn doc_text(&self, doc: DocId) -> Result<Option<String>, IndexError> {
        let Some(info) = self.docs.get(doc as usize) else {
            return Ok(None);
        };
        if info.text_bytes == 0 {
            return Ok(None);
        }
        let start = self.text_starts[doc as usize];
        let block = &self.text[start..start + info.text_bytes as usize];
        let bad = |what: String| {
            file_error(
                &self.dir.join(TEXT),
                format!("text of {}: {what}", info.path),
            )
        };
        // The size prefix is bounded by what LZ4 can expand the block to (at most 255 bytes
        // per input byte), so a crafted file cannot make it allocate without limit.
        let (size, body) = match block.split_first_chunk::<4>() {
            Some((size, body)) => (u32::from_le_bytes(*size) as usize, body),
            None => return Err(bad("block shorter than its size prefix".into())),
        };
        if size > body.len().saturating_mul(255) + 16 {
            return Err(bad(format!(
                "size {size} is more than the block can expand to"
            )));
        }
        let bytes = lz4_flex::block::decompress(body, size)
            .map_err(|e| bad(format!("cannot decompress: {e}")))?;
        String::from_utf8(bytes)
            .map(Some)
            .map_err(|e| bad(format!("not UTF-8: {e}")))
    }

    /// The number of documents.
    pub fn num_docs(&self) -> usize {
        self.docs.len()
    }

    /// The number of distinct terms.
    pub fn num_terms(&self) -> usize {
        self.terms.len()
    }

    /// Sum of the documents' lengths.
    pub fn total_terms(&self) -> u64 {
        self.total_terms
    }

    /// A document, if `doc` is in range.
    pub fn doc(&self, doc: DocId) -> Option<&DocInfo> {
        self.docs.get(doc as usize)
    }

    /// The documents, indexed by [`DocId`].
    pub fn docs(&self) -> &[DocInfo] {
        &self.docs
    }

    /// The postings of `term` (an index term, already normalised), by increasing document id;
    /// empty if the term is not in the index.
    pub fn postings(&self, term: &str) -> Result<Vec<Posting>, IndexError> {
        match self.terms.binary_search_by(|e| e.term.as_str().cmp(term)) {
            Ok(i) => self.decode_postings(&self.terms[i]),
            Err(_) => Ok(Vec::new()),
        }
    }

    /// The number of documents containing `term`.
    pub fn doc_freq(&self, term: &str) -> u32 {
        self.terms
            .binary_search_by(|e| e.term.as_str().cmp(term))
            .map_or(0, |i| self.terms[i].df)
    }

    fn decode_postings(&self, entry: &TermEntry) -> Result<Vec<Posting>, IndexError> {
        let mut out = Vec::new();
        self.list_of(entry)?.decode_all(&mut out)?;
        Ok(out)
    }

    /// The postings list of `term` (an index term, already normalised), undecoded; `None` if
    /// the term is not in the index.
    pub(crate) fn list(&self, term: &str) -> Result<Option<postings::List<'_>>, IndexError> {
        match self.terms.binary_search_by(|e| e.term.as_str().cmp(term)) {
            Ok(i) => self.list_of(&self.terms[i]).map(Some),
            Err(_) => Ok(None),
        }
    }

    fn list_of<'a>(&'a self, entry: &'a TermEntry) -> Result<postings::List<'a>, IndexError> {
        // In range: checked when the index was opened.
        let start = POSTINGS_MAGIC.len() + entry.offset as usize;
        let bytes = &self.postings[start..start + entry.len as usize];
        postings::List::open(&entry.term, &self.dir, bytes, entry.df, self.docs.len())
    }
}

mod merge;
pub(crate) mod postings;
pub use merge::{
    PostingsPart, Segment, TextPart, merge_commit, merge_postings, merge_segments, merge_text,
};

#[cfg(test)]
mod tests;
