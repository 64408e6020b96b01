//! End-to-end check of the real corpus (needs pip and the package registry, or a cached wheel).
//!
//! Ignored by default because, unless the wheel is already cached next to the default corpus
//! directory (any earlier `cargo run -p wasmlink-xtask -- corpus` leaves it there), it downloads
//! the componentize-py wheel with pip.

use std::fs;

use wasmlink_xtask::{
    EXPECTED_LIBRARIES, WHEEL_FILE_NAME, default_corpus_dir, ensure_corpus, scan, verify_corpus,
};

#[test]
fn real_corpus_from_many_threads() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("corpus");
    // Reuse the wheel cached by the default corpus, if any, to avoid a download.
    if let Some(cached) = default_corpus_dir()
        .parent()
        .map(|p| p.join(WHEEL_FILE_NAME))
        && cached.is_file()
    {
        fs::copy(&cached, tmp.path().join(WHEEL_FILE_NAME)).unwrap();
    }

    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4).map(|_| s.spawn(|| ensure_corpus(&dir))).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect()
    });
    assert!(results.windows(2).all(|w| w[0] == w[1]));
    assert_eq!(verify_corpus(&dir).unwrap(), results[0]);

    for (entry, expected) in results[0].iter().zip(EXPECTED_LIBRARIES) {
        assert_eq!(entry.name, expected.name);
        let bytes = entry.read().unwrap();
        assert!(scan::inspect_module(&bytes).has_dylink, "{}", entry.name);
        wasmparser::Validator::new()
            .validate_all(&bytes)
            .unwrap_or_else(|e| panic!("{}: {e}", entry.name));
    }
}
