//! Unit tests of building, writing and reading the index.

use super::*;
use crate::analyze;

const CORPUS: [(&str, &str, &str); 5] = [
    (
        "Ownership",
        "ch04.html",
        "Ownership rules: each value has an owner. Owners drop values.",
    ),
    (
        "Borrowing",
        "ch04-02.html",
        "References borrow a value without taking ownership.",
    ),
    (
        "Traits",
        "ch10-02.html",
        "Traits define shared behaviour; a value's type implements traits.",
    ),
    ("Empty", "empty.html", ""),
    (
        "Closures",
        "ch13-01.html",
        "Closures capture values from their environment by borrowing.",
    ),
];

fn build(range: std::ops::Range<usize>) -> IndexBuilder {
    let mut b = IndexBuilder::new();
    for &(title, path, text) in &CORPUS[range] {
        b.add(title, path, &analyze(text)).unwrap();
    }
    b
}

#[test]
fn builder_counts_terms_and_lengths() {
    let b = build(0..5);
    assert_eq!(b.num_docs(), 5);
    assert_eq!(
        b.docs()[0],
        DocInfo {
            title: "Ownership".into(),
            path: "ch04.html".into(),
            len: 9,
            title_len: 1,
            text_bytes: 0,
        }
    );
    assert_eq!(b.docs()[3].len, 0);
    assert_eq!(
        b.postings("valu"),
        [
            Posting { doc: 0, tf: 2 },
            Posting { doc: 1, tf: 1 },
            Posting { doc: 2, tf: 1 },
            Posting { doc: 4, tf: 1 }
        ]
    );
    assert_eq!(b.postings("owner"), [Posting { doc: 0, tf: 2 }]);
    assert_eq!(b.postings("missing"), []);
}

#[test]
fn round_trip_through_a_directory() {
    let b = build(0..5);
    let dir = tempfile::tempdir().unwrap();
    let idx_dir = dir.path().join("nested/index");
    let writer = IndexWriter::new(&b).unwrap();
    writer.write_dir(&idx_dir).unwrap();
    let mut names: Vec<String> = fs::read_dir(&idx_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "docs.bin",
            "manifest.json",
            "postings.bin",
            "terms.bin",
            "text.bin"
        ]
    );

    let index = Index::open(&idx_dir).unwrap();
    assert_eq!(index.docs(), b.docs());
    assert_eq!(index.num_terms(), b.num_terms());
    assert_eq!(index.total_terms(), 9 + 6 + 8 + 6);
    for term in b.postings.keys() {
        assert_eq!(index.postings(term).unwrap(), b.postings(term), "{term}");
        assert_eq!(index.doc_freq(term) as usize, b.postings(term).len());
    }
    assert_eq!(index.postings("missing").unwrap(), []);
    assert_eq!(IndexBuilder::from_index(&index).unwrap(), b);

    let m: Manifest = serde_json::from_slice(&fs::read(idx_dir.join(MANIFEST)).unwrap()).unwrap();
    assert_eq!(&m, writer.manifest());
    assert_eq!((m.format.as_str(), m.version, m.docs), (FORMAT_NAME, 3, 5));
    assert_eq!(
        m.postings,
        b.postings.values().map(|l| l.len() as u64).sum::<u64>()
    );

    // Writing again over it replaces it and leaves no temporary files.
    let b2 = build(0..2);
    IndexWriter::new(&b2).unwrap().write_dir(&idx_dir).unwrap();
    assert_eq!(Index::open(&idx_dir).unwrap().docs(), b2.docs());
    assert_eq!(fs::read_dir(&idx_dir).unwrap().count(), 5);
}

#[test]
fn merge_equals_one_builder() {
    let whole = build(0..5);
    for split in 0..=5 {
        let mut merged = build(0..split);
        merged.merge(build(split..5)).unwrap();
        assert_eq!(merged, whole, "split at {split}");
        let a = IndexWriter::new(&merged).unwrap();
        let b = IndexWriter::new(&whole).unwrap();
        assert_eq!(a.files(), b.files(), "split at {split}");
    }
    // Three segments, merged from disk; the middle one written as the index stage writes
    // its scratch segments (no fsync), which must read back the same.
    let dir = tempfile::tempdir().unwrap();
    for (i, r) in [0..1, 1..4, 4..5].into_iter().enumerate() {
        let writer = IndexWriter::new(&build(r)).unwrap();
        let seg = dir.path().join(format!("seg{i}"));
        if i == 1 {
            writer.write_dir_unsynced(&seg).unwrap();
        } else {
            writer.write_dir(&seg).unwrap();
        }
    }
    let mut merged = IndexBuilder::new();
    let mut merged_in_place = IndexBuilder::new();
    for i in 0..3 {
        let seg = Index::open(dir.path().join(format!("seg{i}"))).unwrap();
        merged
            .merge(IndexBuilder::from_index(&seg).unwrap())
            .unwrap();
        merged_in_place.merge_index(&seg).unwrap();
    }
    assert_eq!(merged, whole);
    assert_eq!(merged_in_place, whole);
}

fn written() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("idx");
    IndexWriter::new(&build(0..5))
        .unwrap()
        .write_dir(&path)
        .unwrap();
    (dir, path)
}

fn open_err(path: &Path) -> String {
    Index::open(path).unwrap_err().to_string()
}

#[test]
fn truncated_file_is_named() {
    let (_tmp, path) = written();
    let postings = path.join(POSTINGS);
    let bytes = fs::read(&postings).unwrap();
    fs::write(&postings, &bytes[..bytes.len() - 3]).unwrap();
    assert_eq!(
        open_err(&path),
        format!(
            "index file {}: truncated: {} bytes, the manifest says {}",
            postings.display(),
            bytes.len() - 3,
            bytes.len()
        )
    );
}

#[test]
fn corrupt_missing_and_foreign_files_are_named() {
    let (_tmp, path) = written();
    let docs = path.join(DOCS);
    let mut bytes = fs::read(&docs).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x55;
    fs::write(&docs, &bytes).unwrap();
    let err = open_err(&path);
    assert!(
        err.starts_with(&format!("index file {}: corrupt: CRC-32 ", docs.display())),
        "{err}"
    );

    let (_tmp, path) = written();
    fs::remove_file(path.join(TERMS)).unwrap();
    assert_eq!(
        open_err(&path),
        format!("index file {}: missing", path.join(TERMS).display())
    );

    let (_tmp, path) = written();
    fs::remove_file(path.join(MANIFEST)).unwrap();
    assert_eq!(
        open_err(&path),
        format!(
            "index file {}: missing: not an index directory, or its write did not finish",
            path.join(MANIFEST).display()
        )
    );

    let (_tmp, path) = written();
    let manifest = path.join(MANIFEST);
    let text = fs::read_to_string(&manifest)
        .unwrap()
        .replace("\"version\": 3", "\"version\": 7");
    fs::write(&manifest, text).unwrap();
    assert_eq!(
        open_err(&path),
        format!(
            "index file {}: format version 7 is not supported (this build reads 3): index \
             the corpus again with `wasmlink index`",
            manifest.display()
        )
    );

    fs::write(&manifest, b"{\"format\": \"x\"").unwrap();
    assert!(
        open_err(&path).starts_with(&format!("index file {}: invalid: ", manifest.display())),
        "{}",
        open_err(&path)
    );

    // A data file from another write of the same size still fails the checksum; one of
    // another size fails the length check.
    let (_tmp, path) = written();
    let (_tmp2, other) = {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("idx");
        IndexWriter::new(&build(0..2))
            .unwrap()
            .write_dir(&p)
            .unwrap();
        (dir, p)
    };
    fs::copy(other.join(DOCS), path.join(DOCS)).unwrap();
    let err = open_err(&path);
    assert!(
        err.contains("not from the same write") || err.contains("truncated"),
        "{err}"
    );
}

#[test]
fn from_files_rejects_bad_postcard_with_a_valid_checksum() {
    // A hand-made docs.bin whose checksum matches but whose payload is garbage.
    let writer = IndexWriter::new(&build(0..2)).unwrap();
    let mut docs = DOCS_MAGIC.to_vec();
    docs.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    let mut m = writer.manifest().clone();
    m.docs_file = FileInfo::of(&docs);
    let json = serde_json::to_vec(&m).unwrap();
    let [_, (_, terms), (_, postings), (_, text), _] = writer.files();
    let err = Index::from_files(
        Path::new("seg"),
        &json,
        &docs,
        terms,
        postings.to_vec(),
        text.to_vec(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("index file seg/docs.bin: cannot decode: "),
        "{err}"
    );
}

/// A corpus of `n` documents whose words repeat across documents (and so across segments).
fn generated(range: std::ops::Range<usize>) -> IndexBuilder {
    let words = [
        "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta",
    ];
    let mut b = IndexBuilder::new();
    for d in range {
        let text: Vec<&str> = (0..(d % 7) * 3)
            .map(|i| words[(d * 5 + i * i) % words.len()])
            .collect();
        let text = text.join(" ");
        let title = format!("Page {} {}", d, words[d % words.len()]);
        b.add_with_text(&title, &format!("p{d:03}.html"), &analyze(&text), &text)
            .unwrap();
        if d % 4 == 0 {
            b.skip("redirect");
        }
    }
    b
}

#[test]
fn streaming_merge_writes_the_same_bytes_as_the_builder() {
    let dir = tempfile::tempdir().unwrap();
    let cuts = [0, 1, 9, 10, 23, 40, 41, 60];
    let mut whole = generated(0..60);
    whole.skip("print-page");
    whole.set_root(Some("/corpus".into()));
    let mut segments = Vec::new();
    for (i, w) in cuts.windows(2).enumerate() {
        // Directories and segment files, as both can be merged.
        let seg = dir.path().join(format!("seg{i}"));
        let writer = IndexWriter::new(&generated(w[0]..w[1])).unwrap();
        if i % 2 == 0 {
            writer.write_segment_file(&seg).unwrap();
        } else {
            writer.write_dir_unsynced(&seg).unwrap();
        }
        segments.push(Segment::open(&seg).unwrap());
    }
    // A segment whose pages were all skipped: only its count matters.
    let mut empty = IndexBuilder::new();
    empty.skip("print-page");
    let seg = dir.path().join("empty");
    IndexWriter::new(&empty).unwrap().write_dir(&seg).unwrap();
    segments.push(Segment::open(&seg).unwrap());

    let out = dir.path().join("out");
    let manifest = merge_segments(&segments, Some("/corpus".into()), &out, true).unwrap();
    let expected = IndexWriter::new(&whole).unwrap();
    assert_eq!(&manifest, expected.manifest());
    for (name, bytes) in expected.files() {
        assert_eq!(fs::read(out.join(name)).unwrap(), bytes, "{name}");
    }
    let index = Index::open(&out).unwrap();
    assert_eq!(index.postings("alpha").unwrap(), whole.postings("alpha"));
    assert!(index.doc_text(59).unwrap().is_some_and(|t| t.contains(' ')));
    assert_eq!(
        fs::read_dir(&out).unwrap().count(),
        5,
        "no temporary files left"
    );
}

/// The two halves of a merge run on two threads at once, then committed, give the same
/// files as `merge_segments`; a committed part whose file changed since is refused, naming
/// the file, and leaves no manifest.
#[test]
fn merge_parts_in_parallel_equal_one_merge_and_a_changed_part_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cuts = [0, 7, 30, 31, 50];
    let mut segments = Vec::new();
    for (i, w) in cuts.windows(2).enumerate() {
        let seg = dir.path().join(format!("seg{i}.seg"));
        IndexWriter::new(&generated(w[0]..w[1]))
            .unwrap()
            .write_segment_file(&seg)
            .unwrap();
        segments.push(Segment::open(&seg).unwrap());
    }
    let one = dir.path().join("one");
    merge_segments(&segments, Some("/r".into()), &one, false).unwrap();

    let two = dir.path().join("two");
    let (text, postings) = std::thread::scope(|s| {
        let text = s.spawn(|| merge_text(&segments, &two, false));
        let postings = merge_postings(&segments, &two, false);
        (text.join().unwrap().unwrap(), postings.unwrap())
    });
    // The parts travel as JSON between the instances that write them and the one that commits.
    let text: TextPart = serde_json::from_str(&serde_json::to_string(&text).unwrap()).unwrap();
    let manifest = merge_commit(&two, Some("/r".into()), &text, &postings, false).unwrap();
    assert_eq!(manifest.docs, 50);
    for name in [
        "manifest.json",
        "docs.bin",
        "terms.bin",
        "postings.bin",
        "text.bin",
    ] {
        assert_eq!(
            fs::read(one.join(name)).unwrap(),
            fs::read(two.join(name)).unwrap(),
            "{name}"
        );
    }

    let three = dir.path().join("three");
    let text = merge_text(&segments, &three, false).unwrap();
    let postings = merge_postings(&segments, &three, false).unwrap();
    // Another merge into the same directory rewrote text.bin's temporary file meanwhile.
    fs::write(three.join(".text.bin.tmp"), b"WLSITXT1").unwrap();
    let err = merge_commit(&three, None, &text, &postings, false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(".text.bin.tmp") && err.contains("8 bytes"),
        "{err}"
    );
    assert!(!three.join("manifest.json").exists());
    fs::remove_file(three.join(".postings.bin.tmp")).unwrap();
    let err = merge_commit(&three, None, &text, &postings, false)
        .unwrap_err()
        .to_string();
    assert!(err.contains(".postings.bin.tmp"), "{err}");
}

#[test]
fn streaming_merge_names_a_broken_segment() {
    let dir = tempfile::tempdir().unwrap();
    let seg = dir.path().join("seg");
    IndexWriter::new(&generated(0..10))
        .unwrap()
        .write_dir_unsynced(&seg)
        .unwrap();
    let segments = vec![Segment::open(&seg).unwrap()];
    fs::write(seg.join("text.bin"), b"WLSITXT1").unwrap();
    let err = merge_segments(&segments, None, dir.path().join("out"), false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("text.bin") && err.contains("truncated"),
        "{err}"
    );
    fs::remove_file(seg.join("postings.bin")).unwrap();
    let err = Segment::open(&seg).unwrap_err().to_string();
    assert!(
        err.contains("postings.bin") && err.contains("missing"),
        "{err}"
    );
}

#[test]
fn a_broken_segment_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let seg = dir.path().join("a.seg");
    IndexWriter::new(&generated(0..10))
        .unwrap()
        .write_segment_file(&seg)
        .unwrap();
    let bytes = fs::read(&seg).unwrap();
    assert!(Segment::open(&seg).is_ok());
    assert_eq!(
        fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temporary file left"
    );
    fs::write(&seg, &bytes[..bytes.len() - 1]).unwrap();
    let err = Segment::open(&seg).unwrap_err().to_string();
    assert!(err.contains("a.seg") && err.contains("truncated"), "{err}");
    let mut flipped = bytes.clone();
    let at = flipped.len() - 3;
    flipped[at] ^= 1;
    fs::write(&seg, &flipped).unwrap();
    let segments = vec![Segment::open(&seg).unwrap()];
    let err = merge_segments(&segments, None, dir.path().join("out"), false)
        .unwrap_err()
        .to_string();
    assert!(err.contains("a.seg") && err.contains("corrupt"), "{err}");
    fs::write(
        &seg,
        b"not a segment at all, but long enough for a header......",
    )
    .unwrap();
    let err = Segment::open(&seg).unwrap_err().to_string();
    assert!(err.contains("bad magic"), "{err}");
}

#[test]
fn streaming_merge_recomputes_skip_tables_across_segments() {
    // Lists of several blocks, cut at segment boundaries that are not multiples of a block.
    let dir = tempfile::tempdir().unwrap();
    let cuts = [0, 100, 129, 300, 555, 700];
    let whole = generated(0..700);
    assert!(whole.postings(&title_key("page")).len() > 3 * postings::BLOCK);
    assert!(
        whole
            .postings
            .values()
            .filter(|l| l.len() > postings::BLOCK)
            .count()
            > 3
    );
    let mut segments = Vec::new();
    for (i, w) in cuts.windows(2).enumerate() {
        let seg = dir.path().join(format!("seg{i}"));
        IndexWriter::new(&generated(w[0]..w[1]))
            .unwrap()
            .write_segment_file(&seg)
            .unwrap();
        segments.push(Segment::open(&seg).unwrap());
    }
    let out = dir.path().join("out");
    merge_segments(&segments, None, &out, false).unwrap();
    let expected = IndexWriter::new(&whole).unwrap();
    for (name, bytes) in expected.files() {
        assert_eq!(fs::read(out.join(name)).unwrap(), bytes, "{name}");
    }
    let index = Index::open(&out).unwrap();
    for term in whole.postings.keys() {
        assert_eq!(
            index.postings(term).unwrap(),
            whole.postings(term),
            "{term}"
        );
    }
}

/// An index of `n` documents where "alpha" is in every one: a list of several blocks.
fn long_lists(n: usize) -> IndexWriter {
    let mut b = IndexBuilder::new();
    for d in 0..n {
        let text = format!("alpha {}", if d % 3 == 0 { "beta" } else { "gamma gamma" });
        b.add("Page", &format!("p{d}"), &analyze(&text)).unwrap();
    }
    IndexWriter::new(&b).unwrap()
}

/// Opens `writer`'s files with `postings.bin` changed by `edit` (given the bytes and where
/// the list of `term` starts), the manifest's checksum made to match.
fn with_edited_list(
    writer: &IndexWriter,
    term: &str,
    edit: impl FnOnce(&mut Vec<u8>, usize),
) -> Index {
    let index = writer.to_index().unwrap();
    let entry = index.terms.iter().find(|e| e.term == term).unwrap();
    let files = writer.files();
    let get = |name: &str| files.iter().find(|f| f.0 == name).unwrap().1.to_vec();
    let mut postings = get(POSTINGS);
    edit(&mut postings, POSTINGS_MAGIC.len() + entry.offset as usize);
    let mut m = writer.manifest().clone();
    m.postings_file = FileInfo::of(&postings);
    let json = serde_json::to_vec(&m).unwrap();
    Index::from_files(
        Path::new("idx"),
        &json,
        &get(DOCS),
        &get(TERMS),
        postings,
        get(TEXT),
    )
    .unwrap()
}

#[test]
fn corrupt_skip_entries_are_one_line_errors() {
    let writer = long_lists(1000);
    let list = writer.to_index().unwrap();
    assert_eq!(list.postings("alpha").unwrap().len(), 1000);
    // The list: df (2 bytes of varint), the greatest impact (4), then 8 skip entries of 12.
    let skip = |b: usize, field: usize| 2 + 4 + 12 * b + 4 * field;
    type Edit = Box<dyn Fn(&mut Vec<u8>, usize)>;
    let cases: [(&str, Edit); 6] = [
        (
            "bad skip entry 0 (last document 4294967295",
            Box::new(move |p, at| p[at + skip(0, 0)..at + skip(0, 0) + 4].fill(0xff)),
        ),
        (
            "bad skip entry 3 (last document 0,",
            Box::new(move |p, at| p[at + skip(3, 0)..at + skip(3, 0) + 4].fill(0)),
        ),
        (
            "bad skip entry 7 (last document 999, end 0,",
            Box::new(move |p, at| p[at + skip(7, 1)..at + skip(7, 1) + 4].fill(0)),
        ),
        (
            "impact NaN)",
            Box::new(move |p, at| p[at + skip(2, 2)..at + skip(2, 2) + 4].fill(0xff)),
        ),
        (
            // A last document that keeps the table in order but is not the block's.
            " ends at document ",
            Box::new(move |p, at| p[at + skip(1, 0)] -= 2),
        ),
        (
            "greatest impact",
            Box::new(move |p, at| p[at + 2..at + 6].copy_from_slice(&2f32.to_le_bytes())),
        ),
    ];
    for (want, edit) in cases {
        let index = with_edited_list(&writer, "alpha", edit);
        // Whichever way the list is read: whole, or block by block for candidates.
        for query in ["alpha", "beta alpha", "gamma alpha"] {
            let err = index.search(query, 3).unwrap_err().to_string();
            assert!(
                err.starts_with("index file idx/postings.bin: postings of \"alpha\": ")
                    && err.contains(want)
                    && !err.contains('\n'),
                "{query}: {err} (want {want})"
            );
        }
    }
}
