//! Merging segments on disk into one index without loading them all: a k-way merge of the
//! segments' sorted term dictionaries, the postings written as they are merged, the texts
//! copied one segment at a time.
//!
//! [`Segment::open`] keeps a segment's documents and its `terms.bin` and `postings.bin` as
//! encoded bytes (no `String` per term, no decoded postings), and reads its text only when
//! [`merge_segments`] copies it. The entries of a segment's postings list are copied byte for
//! byte after the first, whose delta is recomputed against the last document before it; the
//! entries are still decoded (not copied blindly), so a bad segment is named, not merged. The
//! merged list's skip table is computed from its entries (one term's list in memory at a
//! time), as blocks span segments.
//! The result is byte for byte what [`IndexBuilder::merge`] and [`IndexWriter::new`] give.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use super::{
    CRC32, DOCS, DOCS_MAGIC, DocInfo, FORMAT_NAME, FORMAT_VERSION, Fields, FileInfo, IndexError,
    IndexWriter, MANIFEST, Manifest, POSTINGS, POSTINGS_MAGIC, TERMS, TERMS_MAGIC, TEXT,
    TEXT_MAGIC, check_file, file_error, io_error, postcard_decode, postcard_encode, postings,
};
use postings::{put_varint, read_varint_u64};
use serde::{Deserialize, Serialize};

/// A segment (an index directory) opened for merging: its documents decoded, its dictionary
/// and postings kept encoded, its text left on disk.
#[derive(Debug)]
pub struct Segment {
    dir: PathBuf,
    manifest: Manifest,
    docs: Vec<DocInfo>,
    terms: Vec<u8>,
    postings: Vec<u8>,
    /// For a segment file: where its text part starts in it.
    text_at: Option<u64>,
}

/// The magic of a segment file ([`IndexWriter::write_segment_file`]).
const SEGMENT_MAGIC: &[u8; 8] = b"WLSISEG1";
/// The magic and the five parts' lengths.
const SEGMENT_HEADER: usize = 8 + 5 * 8;

impl IndexWriter {
    /// Writes the index as one segment file at `path` (a temporary name, then a rename; no
    /// fsync), for [`Segment::open`] and [`merge_segments`]: magic `WLSISEG1`, the byte lengths
    /// of the manifest, `docs.bin`, `terms.bin`, `postings.bin` and `text.bin` (u64
    /// little-endian each), then those five in that order, each exactly as in an index
    /// directory. One file instead of a directory of five: `wasmlink index` writes one segment
    /// per batch, and creating, renaming and later deleting six entries per batch was a
    /// large part of the index stage's and the merge's time.
    pub fn write_segment_file(&self, path: impl AsRef<Path>) -> Result<(), IndexError> {
        let path = path.as_ref();
        let parts = [
            &self.manifest_json,
            &self.docs,
            &self.terms,
            &self.postings,
            &self.text,
        ];
        let mut bytes =
            Vec::with_capacity(SEGMENT_HEADER + parts.iter().map(|p| p.len()).sum::<usize>());
        bytes.extend_from_slice(SEGMENT_MAGIC);
        for p in parts {
            bytes.extend_from_slice(&(p.len() as u64).to_le_bytes());
        }
        for p in parts {
            bytes.extend_from_slice(p);
        }
        let name = path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let tmp = path.with_file_name(format!(".{name}.tmp"));
        fs::write(&tmp, &bytes).map_err(|e| io_error(&tmp, e))?;
        fs::rename(&tmp, path).map_err(|e| io_error(path, e))
    }
}

fn read_file(dir: &Path, name: &str) -> Result<Vec<u8>, IndexError> {
    let path = dir.join(name);
    fs::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound if name == MANIFEST => file_error(
            &path,
            "missing: not an index directory, or its write did not finish",
        ),
        std::io::ErrorKind::NotFound => file_error(&path, "missing"),
        _ => io_error(&path, e),
    })
}

impl Segment {
    /// Opens the segment in `dir`, checking its manifest, documents, dictionary and postings
    /// files (lengths, CRC-32, magic); the text is checked when it is merged.
    pub fn open(dir: impl AsRef<Path>) -> Result<Segment, IndexError> {
        let dir = dir.as_ref();
        if dir.is_file() {
            return Self::open_file(dir);
        }
        let manifest = read_file(dir, MANIFEST)?;
        let docs = read_file(dir, DOCS)?;
        let terms = read_file(dir, TERMS)?;
        let postings = read_file(dir, POSTINGS)?;
        Self::from_parts(dir, None, &manifest, &docs, terms, postings)
    }

    /// Opens a segment file ([`IndexWriter::write_segment_file`]); its text is read when
    /// it is merged.
    fn open_file(path: &Path) -> Result<Segment, IndexError> {
        use std::io::Read;
        let bad = |what: String| file_error(path, what);
        let mut file = fs::File::open(path).map_err(|e| io_error(path, e))?;
        let size = file.metadata().map_err(|e| io_error(path, e))?.len();
        let mut header = [0u8; SEGMENT_HEADER];
        file.read_exact(&mut header)
            .map_err(|_| bad(format!("{size} bytes: too short for a segment file")))?;
        if &header[..8] != SEGMENT_MAGIC {
            return Err(bad("not a wasmlink-search segment file (bad magic)".into()));
        }
        let mut lens = [0u64; 5];
        for (i, l) in lens.iter_mut().enumerate() {
            *l = u64::from_le_bytes(header[8 + 8 * i..16 + 8 * i].try_into().expect("8 bytes"));
        }
        let total = lens
            .iter()
            .try_fold(SEGMENT_HEADER as u64, |a, &l| a.checked_add(l));
        if total != Some(size) {
            return Err(bad(format!(
                "{size} bytes, its header says {total:?}: truncated or not from one write"
            )));
        }
        let head = (lens[0] + lens[1] + lens[2] + lens[3]) as usize;
        let mut bytes = vec![0u8; head];
        file.read_exact(&mut bytes).map_err(|e| io_error(path, e))?;
        let (m, rest) = bytes.split_at(lens[0] as usize);
        let (d, rest) = rest.split_at(lens[1] as usize);
        let (t, p) = rest.split_at(lens[2] as usize);
        Self::from_parts(
            path,
            Some(SEGMENT_HEADER as u64 + head as u64),
            m,
            d,
            t.to_vec(),
            p.to_vec(),
        )
    }

    /// A segment from its manifest, documents, dictionary and postings; `dir` names it in
    /// errors (the segment file itself when `text_at` is set).
    fn from_parts(
        dir: &Path,
        text_at: Option<u64>,
        manifest: &[u8],
        docs: &[u8],
        terms: Vec<u8>,
        postings: Vec<u8>,
    ) -> Result<Segment, IndexError> {
        let manifest_path = dir.join(MANIFEST);
        let manifest: Manifest = serde_json::from_slice(manifest)
            .map_err(|e| file_error(&manifest_path, format!("invalid: {e}")))?;
        if manifest.format != FORMAT_NAME || manifest.version != FORMAT_VERSION {
            return Err(file_error(
                &manifest_path,
                format!(
                    "format {:?} version {}, expected {FORMAT_NAME:?} version {FORMAT_VERSION}",
                    manifest.format, manifest.version
                ),
            ));
        }
        let docs_path = dir.join(DOCS);
        check_file(&docs_path, docs, &manifest.docs_file, DOCS_MAGIC)?;
        let docs: Vec<DocInfo> = postcard_decode(&docs_path, &docs[DOCS_MAGIC.len()..])?;
        let lens: u64 = docs.iter().map(|d| u64::from(d.len)).sum();
        let title_lens: u64 = docs.iter().map(|d| u64::from(d.title_len)).sum();
        if docs.len() as u64 != manifest.docs
            || lens != manifest.total_terms
            || title_lens != manifest.title_terms
        {
            return Err(file_error(
                &docs_path,
                "documents, lengths or title lengths differ from the manifest's counts",
            ));
        }
        check_file(&dir.join(TERMS), &terms, &manifest.terms_file, TERMS_MAGIC)?;
        check_file(
            &dir.join(POSTINGS),
            &postings,
            &manifest.postings_file,
            POSTINGS_MAGIC,
        )?;
        Ok(Segment {
            dir: dir.to_path_buf(),
            manifest,
            docs,
            terms,
            postings,
            text_at,
        })
    }

    /// The segment's `text.bin`, read now.
    fn read_text(&self) -> Result<Vec<u8>, IndexError> {
        let Some(at) = self.text_at else {
            return read_file(&self.dir, TEXT);
        };
        use std::io::{Read, Seek, SeekFrom};
        let path = &self.dir;
        let mut file = fs::File::open(path).map_err(|e| io_error(path, e))?;
        file.seek(SeekFrom::Start(at))
            .map_err(|e| io_error(path, e))?;
        let mut bytes = Vec::with_capacity(self.manifest.text_file.bytes as usize);
        file.read_to_end(&mut bytes)
            .map_err(|e| io_error(path, e))?;
        Ok(bytes)
    }

    /// The segment's documents, in order.
    pub fn docs(&self) -> &[DocInfo] {
        &self.docs
    }

    /// The directory it was opened from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// A cursor over the entries of a segment's `terms.bin` (postcard `Vec<TermEntry>`).
struct Terms<'a> {
    seg: &'a Segment,
    bytes: &'a [u8],
    at: usize,
    left: u64,
    prev: Option<&'a [u8]>,
}

/// One dictionary entry, borrowed from the encoded bytes.
struct Entry<'a> {
    term: &'a [u8],
    df: u64,
    offset: u64,
    len: u64,
}

impl<'a> Terms<'a> {
    fn new(seg: &'a Segment) -> Result<Self, IndexError> {
        let bytes = &seg.terms[TERMS_MAGIC.len()..];
        let mut at = 0;
        let left =
            read_varint_u64(bytes, &mut at).ok_or_else(|| seg.bad_terms("bad length".into()))?;
        if left != seg.manifest.terms {
            return Err(seg.bad_terms(format!(
                "{left} terms, the manifest says {}",
                seg.manifest.terms
            )));
        }
        Ok(Terms {
            seg,
            bytes,
            at,
            left,
            prev: None,
        })
    }

    fn next(&mut self) -> Result<Option<Entry<'a>>, IndexError> {
        if self.left == 0 {
            if self.at != self.bytes.len() {
                return Err(self.seg.bad_terms("garbage after the dictionary".into()));
            }
            return Ok(None);
        }
        self.left -= 1;
        let (seg, at0) = (self.seg, self.at);
        let bad = || seg.bad_terms(format!("bad entry at byte {at0}"));
        let n = read_varint_u64(self.bytes, &mut self.at).ok_or_else(bad)? as usize;
        let term = self
            .bytes
            .get(self.at..self.at.wrapping_add(n))
            .ok_or_else(bad)?;
        self.at += n;
        let (Some(df), Some(offset), Some(len)) = (
            read_varint_u64(self.bytes, &mut self.at),
            read_varint_u64(self.bytes, &mut self.at),
            read_varint_u64(self.bytes, &mut self.at),
        ) else {
            return Err(bad());
        };
        let payload = (self.seg.postings.len() - POSTINGS_MAGIC.len()) as u64;
        if std::str::from_utf8(term).is_err()
            || self.prev.is_some_and(|p| term <= p)
            || df == 0
            || df > u64::from(u32::MAX)
            || offset.checked_add(len).is_none_or(|end| end > payload)
        {
            return Err(self.seg.bad_terms(format!(
                "term {:?}: not sorted, no documents, or postings outside postings.bin",
                String::from_utf8_lossy(term)
            )));
        }
        self.prev = Some(term);
        Ok(Some(Entry {
            term,
            df,
            offset,
            len,
        }))
    }
}

impl Segment {
    fn bad_terms(&self, what: String) -> IndexError {
        file_error(&self.dir.join(TERMS), what)
    }

    /// Appends the entries of `entry`'s list, document ids shifted by `base`, to `out`, the first
    /// delta taken from `*last` (the last document written for this term, `None` before the
    /// first); sets `*last` to this list's last document.
    fn copy_postings(
        &self,
        entry: &Entry<'_>,
        base: u64,
        last: &mut Option<u64>,
        out: &mut Vec<u8>,
    ) -> Result<(), IndexError> {
        let start = POSTINGS_MAGIC.len() + entry.offset as usize;
        let bytes = &self.postings[start..start + entry.len as usize];
        let bad = |what: &str| {
            file_error(
                &self.dir.join(POSTINGS),
                format!(
                    "postings of {:?}: {what}",
                    String::from_utf8_lossy(entry.term)
                ),
            )
        };
        let (_, _, bytes) = postings::split_list(bytes, entry.df).map_err(|e| bad(&e))?;
        let mut at = 0;
        let n_docs = self.docs.len() as u64;
        let mut doc = 0u64;
        let mut rest = 0;
        for i in 0..entry.df {
            let (Some(delta), Some(tf)) = (
                read_varint_u64(bytes, &mut at),
                read_varint_u64(bytes, &mut at),
            ) else {
                return Err(bad("truncated or bad varint"));
            };
            if (i > 0 && delta == 0) || tf == 0 || tf > u64::from(u32::MAX) {
                return Err(bad("bad entry"));
            }
            doc += delta;
            if doc >= n_docs {
                return Err(bad("document out of range"));
            }
            if i == 0 {
                let shifted = base + doc;
                put_varint(out, shifted - last.unwrap_or(0));
                put_varint(out, tf);
                rest = at;
            }
        }
        if at != bytes.len() {
            return Err(bad("garbage after the list"));
        }
        out.extend_from_slice(&bytes[rest..]);
        *last = Some(base + doc);
        Ok(())
    }
}

/// A file written through a buffer, its length and CRC-32 kept as it goes.
struct Out {
    path: PathBuf,
    tmp: PathBuf,
    file: BufWriter<fs::File>,
    digest: crc::Digest<'static, u32, crc::Table<16>>,
    bytes: u64,
}

impl Out {
    /// The temporary name of file `name` until it is renamed into place.
    fn tmp_path(dir: &Path, name: &str) -> PathBuf {
        dir.join(format!(".{name}.tmp"))
    }

    fn create(dir: &Path, name: &str) -> Result<Out, IndexError> {
        let tmp = Self::tmp_path(dir, name);
        let file = fs::File::create(&tmp).map_err(|e| io_error(&tmp, e))?;
        Ok(Out {
            path: dir.join(name),
            tmp,
            file: BufWriter::with_capacity(1 << 16, file),
            digest: CRC32.digest(),
            bytes: 0,
        })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), IndexError> {
        self.digest.update(bytes);
        self.bytes += bytes.len() as u64;
        self.file
            .write_all(bytes)
            .map_err(|e| io_error(&self.tmp, e))
    }

    /// Flushes (and syncs) the temporary file; returns what the manifest records and the
    /// (temporary, final) names to rename.
    fn finish(self, sync: bool) -> Result<(FileInfo, PathBuf, PathBuf), IndexError> {
        let file = self
            .file
            .into_inner()
            .map_err(|e| io_error(&self.tmp, e.into_error()))?;
        if sync {
            file.sync_all().map_err(|e| io_error(&self.tmp, e))?;
        }
        let info = FileInfo {
            bytes: self.bytes,
            crc32: self.digest.finalize(),
        };
        Ok((info, self.tmp, self.path))
    }
}

/// Merges `segments`, in this order (document ids follow it), into the index in `dir`
/// (created if missing), with `root` recorded in its manifest. The files are written as
/// [`IndexWriter::write_dir`](super::IndexWriter::write_dir) writes them (temporary names,
/// the manifest removed before the first rename and written last; synced if `sync`), so
/// readers see the old index, none, or the new one. Memory: the segments' documents and
/// encoded dictionaries and postings (as opened), the merged dictionary, one segment's text
/// and one term's postings at a time. Returns the manifest written.
///
/// The same as [`merge_text`], then [`merge_postings`], then [`merge_commit`]; the two parts
/// write different files and may run at the same time (in two processes or instances over
/// the same directory), which is how `wasmlink index` merges on two cores.
pub fn merge_segments(
    segments: &[Segment],
    root: Option<String>,
    dir: impl AsRef<Path>,
    sync: bool,
) -> Result<Manifest, IndexError> {
    let dir = dir.as_ref();
    let text = merge_text(segments, dir, sync)?;
    let postings = merge_postings(segments, dir, sync)?;
    merge_commit(dir, root, &text, &postings, sync)
}

/// What [`merge_text`] wrote (under temporary names) and counted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextPart {
    /// Documents.
    pub docs: u64,
    /// Terms in all documents' bodies, and in their titles.
    pub total_terms: u64,
    /// Terms in all documents' titles.
    pub title_terms: u64,
    /// Pages not indexed, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// `docs.bin`.
    pub docs_file: FileInfo,
    /// `text.bin`.
    pub text_file: FileInfo,
}

/// What [`merge_postings`] wrote (under temporary names) and counted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostingsPart {
    /// Distinct terms.
    pub terms: u64,
    /// Postings (document, term) in all lists.
    pub postings: u64,
    /// `terms.bin`.
    pub terms_file: FileInfo,
    /// `postings.bin`.
    pub postings_file: FileInfo,
}

fn check_docs(segments: &[Segment]) -> Result<u64, IndexError> {
    let num_docs: u64 = segments.iter().map(|s| s.docs.len() as u64).sum();
    if num_docs >= u64::from(u32::MAX) {
        return Err(IndexError::TooLarge(format!(
            "merging gives {num_docs} documents"
        )));
    }
    Ok(num_docs)
}

/// The first half of [`merge_segments`]: the documents (`docs.bin`) and their texts
/// (`text.bin`, each segment's checked and copied in turn), under temporary names in `dir`.
pub fn merge_text(
    segments: &[Segment],
    dir: impl AsRef<Path>,
    sync: bool,
) -> Result<TextPart, IndexError> {
    let dir = dir.as_ref();
    fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    let num_docs = check_docs(segments)?;

    // Texts, one segment at a time.
    let mut text = Out::create(dir, TEXT)?;
    text.write(TEXT_MAGIC)?;
    for seg in segments {
        let path = seg.dir.join(TEXT);
        let bytes = seg.read_text()?;
        check_file(&path, &bytes, &seg.manifest.text_file, TEXT_MAGIC)?;
        let stored: u64 = seg.docs.iter().map(|d| u64::from(d.text_bytes)).sum();
        if stored != (bytes.len() - TEXT_MAGIC.len()) as u64 {
            return Err(file_error(
                &path,
                "length differs from the documents' text sizes",
            ));
        }
        text.write(&bytes[TEXT_MAGIC.len()..])?;
    }
    let (text_file, _, _) = text.finish(sync)?;

    let mut all_docs = Vec::with_capacity(num_docs as usize);
    let mut skipped = BTreeMap::new();
    let (mut total_terms, mut title_terms) = (0u64, 0u64);
    for seg in segments {
        all_docs.extend_from_slice(&seg.docs);
        total_terms += seg.manifest.total_terms;
        title_terms += seg.manifest.title_terms;
        for (reason, n) in &seg.manifest.skipped {
            *skipped.entry(reason.clone()).or_insert(0) += n;
        }
    }
    let docs = postcard_encode(DOCS_MAGIC, &all_docs, Vec::new())?;
    drop(all_docs);
    let mut out = Out::create(dir, DOCS)?;
    out.write(&docs)?;
    let (docs_file, _, _) = out.finish(sync)?;
    Ok(TextPart {
        docs: num_docs,
        total_terms,
        title_terms,
        skipped,
        docs_file,
        text_file,
    })
}

/// The second half of [`merge_segments`]: a k-way merge of the segments' dictionaries into
/// `terms.bin` and `postings.bin` (each list's skip table and impacts computed again), under
/// temporary names in `dir`.
pub fn merge_postings(
    segments: &[Segment],
    dir: impl AsRef<Path>,
    sync: bool,
) -> Result<PostingsPart, IndexError> {
    let dir = dir.as_ref();
    fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    check_docs(segments)?;
    let too_large = |what: String| IndexError::TooLarge(what);
    // Postings: a k-way merge of the dictionaries, smallest term first, segments in order.
    let mut bases = Vec::with_capacity(segments.len());
    let mut base = 0u64;
    for seg in segments {
        bases.push(base);
        base += seg.docs.len() as u64;
    }
    let mut cursors = segments
        .iter()
        .map(Terms::new)
        .collect::<Result<Vec<_>, _>>()?;
    let mut heads: Vec<Option<Entry<'_>>> = Vec::with_capacity(cursors.len());
    let mut heap = BinaryHeap::with_capacity(cursors.len());
    for (i, c) in cursors.iter_mut().enumerate() {
        let head = c.next()?;
        if let Some(e) = &head {
            heap.push(Reverse((e.term, i)));
        }
        heads.push(head);
    }
    let fields = Fields::new(
        segments
            .iter()
            .flat_map(|s| s.docs.iter().map(|d| (d.len, d.title_len))),
        segments.iter().map(|s| s.manifest.total_terms).sum(),
        segments.iter().map(|s| s.manifest.title_terms).sum(),
    );
    let mut postings = Out::create(dir, POSTINGS)?;
    postings.write(POSTINGS_MAGIC)?;
    let mut entries = Vec::new();
    let mut num_terms = 0u64;
    let mut num_postings = 0u64;
    let mut list = Vec::new();
    let mut pairs = Vec::new();
    let mut group = Vec::new();
    while let Some(Reverse((term, first))) = heap.pop() {
        group.clear();
        group.push(first);
        while let Some(Reverse((t, i))) = heap.peek()
            && *t == term
        {
            group.push(*i);
            heap.pop();
        }
        let mut df = 0u64;
        for &i in &group {
            df += heads[i].as_ref().map_or(0, |e| e.df);
        }
        let df32 = u32::try_from(df).map_err(|_| {
            too_large(format!(
                "term {:?} in too many documents",
                String::from_utf8_lossy(term)
            ))
        })?;
        pairs.clear();
        let mut last = None;
        for &i in &group {
            let entry = heads[i].take().expect("a segment in the heap has a head");
            segments[i].copy_postings(&entry, bases[i], &mut last, &mut pairs)?;
            heads[i] = cursors[i].next()?;
            if let Some(e) = &heads[i] {
                heap.push(Reverse((e.term, i)));
            }
        }
        list.clear();
        let (lens, avgdl) = fields.of(std::str::from_utf8(term).unwrap_or(""));
        postings::put_list(df, &pairs, lens, avgdl, &mut list).map_err(|e| {
            too_large(format!(
                "postings of {:?}: {e}",
                String::from_utf8_lossy(term)
            ))
        })?;
        let offset = postings.bytes - POSTINGS_MAGIC.len() as u64;
        postings.write(&list)?;
        // A TermEntry as postcard writes it: the term (length, bytes), df, offset, len.
        put_varint(&mut entries, term.len() as u64);
        entries.extend_from_slice(term);
        put_varint(&mut entries, u64::from(df32));
        put_varint(&mut entries, offset);
        put_varint(&mut entries, list.len() as u64);
        num_terms += 1;
        num_postings += df;
    }
    let mut terms = Vec::with_capacity(TERMS_MAGIC.len() + 10 + entries.len());
    terms.extend_from_slice(TERMS_MAGIC);
    put_varint(&mut terms, num_terms);
    terms.extend_from_slice(&entries);
    drop(entries);

    let mut out = Out::create(dir, TERMS)?;
    out.write(&terms)?;
    let (terms_file, _, _) = out.finish(sync)?;
    let (postings_file, _, _) = postings.finish(sync)?;
    Ok(PostingsPart {
        terms: num_terms,
        postings: num_postings,
        terms_file,
        postings_file,
    })
}

/// Ends a merge that [`merge_text`] and [`merge_postings`] wrote into `dir`: checks that their
/// four temporary files are there with the lengths the parts report, writes the manifest
/// (with `root`), removes the old one and renames the files into place, the manifest last.
/// A missing or resized file (a part that failed, or that another merge overwrote) is an error
/// naming it, and nothing is renamed.
pub fn merge_commit(
    dir: impl AsRef<Path>,
    root: Option<String>,
    text: &TextPart,
    postings: &PostingsPart,
    sync: bool,
) -> Result<Manifest, IndexError> {
    let dir = dir.as_ref();
    let files = [
        (DOCS, text.docs_file),
        (TERMS, postings.terms_file),
        (POSTINGS, postings.postings_file),
        (TEXT, text.text_file),
    ];
    for (name, info) in files {
        let tmp = Out::tmp_path(dir, name);
        let len = fs::metadata(&tmp).map_err(|e| io_error(&tmp, e))?.len();
        if len != info.bytes {
            return Err(file_error(
                &tmp,
                format!(
                    "{len} bytes, the merge wrote {}: overwritten by another merge?",
                    info.bytes
                ),
            ));
        }
    }
    let manifest = Manifest {
        format: FORMAT_NAME.to_owned(),
        version: FORMAT_VERSION,
        docs: text.docs,
        terms: postings.terms,
        postings: postings.postings,
        total_terms: text.total_terms,
        title_terms: text.title_terms,
        root,
        skipped: text.skipped.clone(),
        docs_file: text.docs_file,
        terms_file: postings.terms_file,
        postings_file: postings.postings_file,
        text_file: text.text_file,
    };
    let mut json = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| IndexError::TooLarge(format!("encoding the manifest: {e}")))?;
    json.push(b'\n');
    let manifest_path = dir.join(MANIFEST);
    match fs::remove_file(&manifest_path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(&manifest_path, e)),
    }
    let mut mf = Out::create(dir, MANIFEST)?;
    mf.write(&json)?;
    let (_, mf_tmp, mf_path) = mf.finish(sync)?;
    for (name, _) in files {
        let (tmp, path) = (Out::tmp_path(dir, name), dir.join(name));
        fs::rename(&tmp, &path).map_err(|e| io_error(&path, e))?;
    }
    fs::rename(&mf_tmp, &mf_path).map_err(|e| io_error(&mf_path, e))?;
    if sync && let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(manifest)
}
