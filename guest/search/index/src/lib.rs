//! The search engine's indexer: terms of documents to an inverted index on disk.
//!
//! The index directory is whatever the policy grants at guest path `/index`, read-write
//! (examples/search/index.toml). Two functions:
//!
//! - `index(batch) -> batch`, an ABI v1 Arrow function (docs/abi.md), usable as a pipeline
//!   stage with any number of workers. Input columns: `path` (Utf8), `title` (Utf8) and `terms`
//!   (List<Utf8>, from the normalize stage); optional `text` (Utf8: stored for snippets and
//!   phrases) and `skip` (Utf8: a non-empty reason means the row is counted as skipped, not
//!   indexed); others are ignored. It indexes the batch's
//!   documents, in order, into a **segment** (a complete index of its own, see
//!   [`wasmlink_search::IndexWriter`]) written atomically (no fsync: it is scratch) as one file `/index/segments/<name>.seg`
//!   ([`IndexWriter::write_segment_file`](wasmlink_search::IndexWriter::write_segment_file)), where
//!   the name is a CRC-64 of the batch's paths and its row count. So a batch is one segment
//!   whichever worker (instance) handles it, and handling it again (a retried or resumed
//!   batch) rewrites the same segment. Output: one row `segment` (Utf8), `docs` (UInt64),
//!   `terms` (UInt64); no row for an empty batch (which writes nothing).
//! - `merge(arg: &str) -> String`, called once after the last batch: merges every segment (a streaming
//!   k-way merge, [`wasmlink_search::merge_segments`]: one segment's text in memory at a time), in
//!   the order of its first document's path, compared component by component (the corpus
//!   order of a directory source, which is sorted by path), into the index at `/index` (written atomically: `manifest.json` last),
//!   then removes `/index/segments`. `arg` is empty or JSON `{"root": "..."}`: the corpus root
//!   to record in the manifest. Returns JSON `{"segments", "docs", "terms", "postings",
//!   "total_terms", "skipped": {reason: count}}`. Fails, changing nothing, if there are no segments or if two segments'
//!   path ranges overlap (segments left over from an earlier run with other batches).
//! - `merge_part(arg)` and `merge_commit(arg)`: the same merge on two cores. `merge_part`
//!   with `{"part": "text"}` writes the documents and texts, with `{"part": "postings"}` the
//!   dictionary and postings (under temporary names; the two may run at once in two instances
//!   and return what they wrote as JSON); `merge_commit` with `{"root", "text", "postings"}`
//!   (those two results) checks the files, writes the manifest last, removes the segments and
//!   returns what `merge` returns. `wasmlink index` merges this way when it has two workers or
//!   more.
//!
//! Document ids in the final index are corpus order, so the index is byte for byte the same
//! with 1 or N workers and any batch size.

use std::fs;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{Array, RecordBatch, StringArray, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
use wasmlink_guest::export;
use wasmlink_search::{
    IndexBuilder, IndexWriter, PostingsPart, Segment, TextPart, merge_postings, merge_segments,
    merge_text,
};

/// Where the policy grants the index directory.
pub const INDEX_DIR: &str = "/index";
/// Where segments go until [`merge`] combines them.
pub const SEGMENTS_DIR: &str = "/index/segments";

const CRC64: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_ECMA_182);

fn utf8_column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a StringArray, String> {
    let column = batch
        .column_by_name(name)
        .ok_or_else(|| format!("input batch has no `{name}` column"))?;
    column
        .as_string_opt::<i32>()
        .ok_or_else(|| format!("column `{name}` is {}, expected Utf8", column.data_type()))
}

/// Indexes one batch into a segment (see the crate documentation).
#[export]
pub fn index(batch: RecordBatch) -> Result<RecordBatch, String> {
    let path = utf8_column(&batch, "path")?;
    let title = utf8_column(&batch, "title")?;
    let terms = batch
        .column_by_name("terms")
        .ok_or("input batch has no `terms` column")?;
    let terms = match terms.data_type() {
        DataType::List(item) if *item.data_type() == DataType::Utf8 => terms.as_list::<i32>(),
        other => return Err(format!("column `terms` is {other}, expected List<Utf8>")),
    };
    let words = terms.values().as_string::<i32>();
    let text = match batch.column_by_name("text") {
        Some(_) => Some(utf8_column(&batch, "text")?),
        None => None,
    };
    let skip = match batch.column_by_name("skip") {
        Some(_) => Some(utf8_column(&batch, "skip")?),
        None => None,
    };
    let offsets = terms.value_offsets();

    let mut builder = IndexBuilder::new();
    let mut digest = CRC64.digest();
    let mut doc_terms: Vec<&str> = Vec::new();
    for row in 0..batch.num_rows() {
        if path.is_null(row) || title.is_null(row) || terms.is_null(row) {
            return Err(format!("row {row}: `path`, `title` or `terms` is null"));
        }
        doc_terms.clear();
        for i in offsets[row] as usize..offsets[row + 1] as usize {
            doc_terms.push(words.value(i));
        }
        let p = path.value(row);
        digest.update(p.as_bytes());
        digest.update(&[0]);
        if let Some(reason) = skip.map(|s| s.value(row)).filter(|r| !r.is_empty()) {
            builder.skip(reason);
            continue;
        }
        let text = text.map_or("", |t| t.value(row));
        builder
            .add_with_text(title.value(row), p, &doc_terms, text)
            .map_err(|e| format!("row {row} ({p:?}): {e}"))?;
    }

    let schema = Arc::new(Schema::new(vec![
        Field::new("segment", DataType::Utf8, false),
        Field::new("docs", DataType::UInt64, false),
        Field::new("terms", DataType::UInt64, false),
    ]));
    let mut out = (Vec::new(), Vec::new(), Vec::new());
    if batch.num_rows() > 0 {
        let name = format!("{:016x}-{}", digest.finalize(), batch.num_rows());
        let writer = IndexWriter::new(&builder).map_err(|e| e.to_string())?;
        // A scratch segment (merged into the synced index at the end): one file, no fsync.
        fs::create_dir_all(SEGMENTS_DIR).map_err(|e| format!("{SEGMENTS_DIR}: {e}"))?;
        writer
            .write_segment_file(format!("{SEGMENTS_DIR}/{name}.seg"))
            .map_err(|e| e.to_string())?;
        out.0.push(name);
        out.1.push(builder.num_docs() as u64);
        out.2.push(builder.num_terms() as u64);
    }
    RecordBatch::try_new(
        schema,
        vec![
            Arc::new(StringArray::from(out.0)),
            Arc::new(UInt64Array::from(out.1)),
            Arc::new(UInt64Array::from(out.2)),
        ],
    )
    .map_err(|e| format!("cannot build the output batch: {e}"))
}

/// Orders `/`-separated paths component by component, as the pipeline's directory source
/// (and `std::path::Path`) does: `a/b.html` comes before `a.html`, whose component `a.html`
/// sorts after the directory `a`.
fn path_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    a.split('/').cmp(b.split('/'))
}

/// The segments under [`SEGMENTS_DIR`] in corpus order (empty ones last), and how many there
/// are; an error if there are none or two overlap (see the crate documentation).
fn ordered_segments() -> Result<(Vec<Segment>, usize), String> {
    let entries = match fs::read_dir(SEGMENTS_DIR) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "{SEGMENTS_DIR}: no segments to merge (run the `index` stage first)"
            ));
        }
        Err(e) => return Err(format!("{SEGMENTS_DIR}: {e}")),
    };
    let mut segments: Vec<(String, String, String, Segment)> = Vec::new();
    // Segments of batches whose pages were all skipped: only their skip counts matter.
    let mut empty: Vec<Segment> = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| format!("{SEGMENTS_DIR}: {e}"))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let index = Segment::open(entry.path()).map_err(|e| e.to_string())?;
        let (Some(first), Some(last)) = (index.docs().first(), index.docs().last()) else {
            empty.push(index);
            continue;
        };
        let (first, last) = (first.path.clone(), last.path.clone());
        segments.push((first, last, name, index));
    }
    if segments.is_empty() && empty.is_empty() {
        return Err(format!(
            "{SEGMENTS_DIR}: no segments to merge (run the `index` stage first)"
        ));
    }
    segments.sort_by(|a, b| path_cmp(&a.0, &b.0).then_with(|| a.2.cmp(&b.2)));
    for pair in segments.windows(2) {
        if path_cmp(&pair[1].0, &pair[0].1).is_le() {
            return Err(format!(
                "{SEGMENTS_DIR}: segments {} and {} overlap ({:?} <= {:?}); stale segments from \
                 an earlier run? remove {SEGMENTS_DIR} and index again",
                pair[0].2, pair[1].2, pair[1].0, pair[0].1
            ));
        }
    }
    let count = segments.len() + empty.len();
    Ok((
        segments.into_iter().map(|s| s.3).chain(empty).collect(),
        count,
    ))
}

/// The summary `merge` and `merge_commit` return.
fn summary(count: usize, m: &wasmlink_search::Manifest) -> String {
    serde_json::json!({
        "segments": count,
        "docs": m.docs,
        "terms": m.terms,
        "postings": m.postings,
        "total_terms": m.total_terms,
        "skipped": m.skipped,
    })
    .to_string()
}

/// Merges the segments into the index (see the crate documentation).
#[export]
pub fn merge(arg: &str) -> Result<String, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct MergeArgs {
        root: Option<String>,
    }
    let root = if arg.trim().is_empty() {
        None
    } else {
        serde_json::from_str::<MergeArgs>(arg)
            .map_err(|e| format!("merge argument: {e}"))?
            .root
    };
    let (ordered, count) = ordered_segments()?;
    // A streaming k-way merge: the segments' dictionaries and postings stay encoded, their
    // texts are copied one at a time (loading every segment into one builder took the
    // process's peak memory).
    let m = merge_segments(&ordered, root, INDEX_DIR, true).map_err(|e| e.to_string())?;
    drop(ordered);
    fs::remove_dir_all(SEGMENTS_DIR).map_err(|e| format!("{SEGMENTS_DIR}: cannot remove: {e}"))?;
    Ok(summary(count, &m))
}

/// One half of [`merge`], for two instances to run at once: `arg` is JSON `{"part": "text"}`
/// (documents and texts) or `{"part": "postings"}` (dictionary and postings). Writes that
/// half's files under temporary names in `/index` and returns what it wrote, as JSON, for
/// [`merge_commit`].
#[export]
pub fn merge_part(arg: &str) -> Result<String, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields, rename_all = "lowercase")]
    enum Part {
        Text,
        Postings,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct PartArgs {
        part: Part,
    }
    let args: PartArgs =
        serde_json::from_str(arg).map_err(|e| format!("merge_part argument: {e}"))?;
    let (ordered, _) = ordered_segments()?;
    let json = match args.part {
        Part::Text => merge_text(&ordered, INDEX_DIR, true)
            .map_err(|e| e.to_string())
            .map(|p| serde_json::to_string(&p)),
        Part::Postings => merge_postings(&ordered, INDEX_DIR, true)
            .map_err(|e| e.to_string())
            .map(|p| serde_json::to_string(&p)),
    }?;
    json.map_err(|e| format!("merge_part: {e}"))
}

/// Ends a merge whose two halves [`merge_part`] wrote: `arg` is JSON `{"root": ...,
/// "text": <the text part's result>, "postings": <the postings part's result>}`. Checks the
/// files are there as the parts wrote them, writes the manifest last, removes
/// `/index/segments` and returns what [`merge`] returns.
#[export]
pub fn merge_commit(arg: &str) -> Result<String, String> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct CommitArgs {
        root: Option<String>,
        text: TextPart,
        postings: PostingsPart,
    }
    let args: CommitArgs =
        serde_json::from_str(arg).map_err(|e| format!("merge_commit argument: {e}"))?;
    let count = fs::read_dir(SEGMENTS_DIR)
        .map_err(|e| format!("{SEGMENTS_DIR}: {e}"))?
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| !e.file_name().to_string_lossy().starts_with('.'))
        })
        .count();
    let m = wasmlink_search::merge_commit(INDEX_DIR, args.root, &args.text, &args.postings, true)
        .map_err(|e| e.to_string())?;
    fs::remove_dir_all(SEGMENTS_DIR).map_err(|e| format!("{SEGMENTS_DIR}: cannot remove: {e}"))?;
    Ok(summary(count, &m))
}
