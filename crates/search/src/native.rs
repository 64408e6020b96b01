//! The native comparison harness: the work of `wasmlink index` (extract, tokenize, normalize,
//! index) done by this crate's code in the calling process, with threads, for the throughput
//! ratio that `wasmlink index --compare-native` and `benches/index_native.rs` report.
//!
//! Not compiled for wasm targets (the guests never run it: it uses threads and the filesystem).

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::{
    DocKind, IndexBuilder, IndexError, IndexWriter, Normalizer, extract, skip_reason,
    skip_reason_for_path, tokens,
};

/// What a native run did and how long it took.
#[derive(Debug, Clone, PartialEq)]
pub struct NativeRun {
    /// Documents indexed (pages of [`skip_reason`] are skipped, as the extract module skips
    /// them).
    pub docs: u64,
    /// Pages skipped.
    pub skipped: u64,
    /// Bytes of input read.
    pub bytes: u64,
    /// Wall-clock seconds, reading included.
    pub secs: f64,
    /// Time in [`extract`], summed over threads.
    pub extract_secs: f64,
    /// Time in tokenize + normalize + [`IndexBuilder::add`], summed over threads (the final
    /// merge and encode are not in it; the wasm index stage's per-batch segment encoding is).
    pub analysis_secs: f64,
}

/// Why a native run failed.
#[derive(Debug, thiserror::Error)]
pub enum NativeError {
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A document could not be indexed, or the builders not merged or encoded.
    #[error("{what}: {source}")]
    Index {
        /// The document's relative path, or `native merge` / `native encode`.
        what: String,
        /// The error.
        source: IndexError,
    },
}

/// Indexes `files` (relative path, full path; in corpus order) natively: `workers` threads
/// take batches of `batch_rows` files in turn, read, extract, analyze and index each batch
/// into a builder; the builders are merged in corpus order and encoded (not written).
///
/// # Errors
///
/// The first file that cannot be read or document that cannot be indexed.
pub fn index_files(
    files: &[(String, PathBuf)],
    batch_rows: usize,
    workers: usize,
) -> Result<NativeRun, NativeError> {
    let started = Instant::now();
    let batches: Vec<&[(String, PathBuf)]> = files.chunks(batch_rows.max(1)).collect();
    let next = AtomicUsize::new(0);
    let (extract_ns, analysis_ns) = (AtomicU64::new(0), AtomicU64::new(0));
    let results: Mutex<Vec<(usize, IndexBuilder, u64)>> = Mutex::new(Vec::new());
    let error: Mutex<Option<NativeError>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..workers.max(1) {
            s.spawn(|| {
                let mut normalizer = Normalizer::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(batch) = batches.get(i) else { break };
                    let mut builder = IndexBuilder::new();
                    let mut bytes = 0u64;
                    let (mut extract_t, mut analysis_t) = (Duration::ZERO, Duration::ZERO);
                    for (rel, path) in batch.iter() {
                        let content = match std::fs::read(path) {
                            Ok(c) => c,
                            Err(source) => {
                                *error.lock().unwrap_or_else(|p| p.into_inner()) =
                                    Some(NativeError::Read {
                                        path: path.clone(),
                                        source,
                                    });
                                return;
                            }
                        };
                        bytes += content.len() as u64;
                        if let Some(reason) = skip_reason_for_path(rel) {
                            builder.skip(reason.name());
                            continue;
                        }
                        let t0 = Instant::now();
                        let doc =
                            extract(&content, DocKind::from_path(rel).unwrap_or(DocKind::Text));
                        let t1 = Instant::now();
                        extract_t += t1 - t0;
                        if let Some(reason) = skip_reason(rel, &doc) {
                            builder.skip(reason.name());
                            continue;
                        }
                        let terms = normalizer.normalize_all(tokens(&doc.text));
                        if let Err(source) =
                            builder.add_with_text(&doc.title, rel, &terms, &doc.text)
                        {
                            *error.lock().unwrap_or_else(|p| p.into_inner()) =
                                Some(NativeError::Index {
                                    what: rel.clone(),
                                    source,
                                });
                            return;
                        }
                        analysis_t += t1.elapsed();
                    }
                    extract_ns.fetch_add(extract_t.as_nanos() as u64, Ordering::Relaxed);
                    analysis_ns.fetch_add(analysis_t.as_nanos() as u64, Ordering::Relaxed);
                    results
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push((i, builder, bytes));
                }
            });
        }
    });
    if let Some(e) = error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    let mut results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    results.sort_by_key(|r| r.0);
    let mut all = IndexBuilder::new();
    let mut bytes = 0;
    for (_, builder, b) in results {
        bytes += b;
        all.merge(builder).map_err(|source| NativeError::Index {
            what: "native merge".into(),
            source,
        })?;
    }
    let writer = IndexWriter::new(&all).map_err(|source| NativeError::Index {
        what: "native encode".into(),
        source,
    })?;
    std::hint::black_box(writer.files());
    Ok(NativeRun {
        docs: all.num_docs() as u64,
        skipped: writer.manifest().skipped.values().sum(),
        bytes,
        secs: started.elapsed().as_secs_f64(),
        extract_secs: extract_ns.load(Ordering::Relaxed) as f64 / 1e9,
        analysis_secs: analysis_ns.load(Ordering::Relaxed) as f64 / 1e9,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_files_in_batches_and_names_an_unreadable_one() {
        let d = tempfile::tempdir().unwrap();
        let mut files = Vec::new();
        for i in 0..5 {
            let rel = format!("doc{i}.md");
            let path = d.path().join(&rel);
            std::fs::write(&path, format!("# Title {i}\n\nCrabs are running {i}.\n")).unwrap();
            files.push((rel, path));
        }
        let run = index_files(&files, 2, 2).unwrap();
        assert_eq!(run.docs, 5);
        assert_eq!(
            run.bytes,
            files
                .iter()
                .map(|(_, p)| std::fs::metadata(p).unwrap().len())
                .sum::<u64>()
        );
        files.push(("gone.md".into(), d.path().join("gone.md")));
        let err = index_files(&files, 2, 2).unwrap_err();
        assert!(
            matches!(&err, NativeError::Read { path, .. } if path.ends_with("gone.md")),
            "{err}"
        );
    }
}
