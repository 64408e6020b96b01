//! One term's postings list in `postings.bin` (format version 3): the document frequency, the
//! list's greatest impact, a skip table for lists longer than one block, then the entries.
//!
//! ```text
//! varint df
//! f32 LE      the greatest impact in the list
//! if df > BLOCK: ceil(df / BLOCK) skip entries of 12 bytes: the block's last document id
//!                (u32 LE), where the block's entries end in the entries part (u32 LE), and
//!                the greatest impact in the block (f32 LE)
//! df entries: varint doc id delta, varint term frequency (the first delta from 0; each
//!             block's first delta from the previous block's last document)
//! ```
//!
//! An entry's impact is `tf / (tf + k1 * (1 - b + b * dl / avgdl))` with the default
//! [`Bm25`] parameters, `dl` the document's length in the term's field and `avgdl` the
//! field's mean length in this index: its BM25 score divided by `idf * (k1 + 1)`. Stored
//! rounded up, a maximum bounds what the list or block can add to a document's score, which
//! max-score pruning needs (with other parameters ranking bounds it by 1).
//!
//! Block `b` holds entries `b * BLOCK ..` up to `BLOCK` of them. The deltas run on across
//! blocks, so a list's entries are the same bytes as in version 2 (postcard's `Vec<(u32, u32)>`
//! without its length), and a reader that wants one document decodes only the block whose
//! range holds it: ranking looks up its few remaining candidates in the long lists of common
//! terms instead of decoding them whole. Every skip entry is checked against its neighbours
//! when a list is opened, and against the entries when its block is decoded.

use std::path::Path;

use super::{DocId, IndexError, POSTINGS, Posting, file_error};
use crate::query::Bm25;

/// Entries per block.
pub(crate) const BLOCK: usize = 128;
/// Bytes per skip entry.
const SKIP: usize = 12;

/// The impact of an entry (see the module documentation).
pub(crate) fn impact(tf: u32, dl: u32, avgdl: f64) -> f64 {
    let Bm25 { k1, b } = Bm25::default();
    let tf = f64::from(tf);
    tf / (tf + k1 * (1.0 - b + b * f64::from(dl) / avgdl))
}

/// `x` as an `f32` no smaller than it.
fn round_up(x: f64) -> f32 {
    let f = x as f32;
    if f64::from(f) < x { f.next_up() } else { f }
}

/// Reads one LEB128 varint of at most 5 bytes (a postcard `u32` or, on wasm32, `usize`) from
/// `bytes` at `*at`, advancing `*at`; `None` if it is truncated or longer than 32 bits.
#[inline]
pub(crate) fn read_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    read_leb128::<5>(bytes, at).filter(|&v| v <= u64::from(u32::MAX))
}

/// Reads one LEB128 varint of at most 10 bytes (a postcard `u64`), as [`read_varint`].
#[inline]
pub(crate) fn read_varint_u64(bytes: &[u8], at: &mut usize) -> Option<u64> {
    read_leb128::<10>(bytes, at)
}

/// The one LEB128 decoder: at most `MAX` bytes (10 at most, 70 bits, of which a `u64` keeps
/// the low 64), `None` if truncated or longer.
#[inline]
fn read_leb128<const MAX: u32>(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in 0..MAX {
        let b = *bytes.get(*at)?;
        *at += 1;
        value |= u64::from(b & 0x7f) << (7 * shift);
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// Appends `v` as a LEB128 varint (as postcard writes integers).
pub(crate) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends the entries of `list` (document ids increasing) to `out` as varint pairs.
pub(crate) fn put_entries(list: &[Posting], out: &mut Vec<u8>) {
    let mut prev = 0;
    for p in list {
        put_varint(out, u64::from(p.doc - prev));
        put_varint(out, u64::from(p.tf));
        prev = p.doc;
    }
}

/// Appends a whole list to `out`: `df`, the greatest impact, the skip table computed from
/// `entries` (`df` varint pairs, as [`put_entries`] writes them), then `entries`. `lens` are
/// the documents' lengths in the term's field, `avgdl` their mean. `Err` names what is wrong
/// with `entries` (too few or bad varints, a document without a length, a block past 4 GiB).
pub(crate) fn put_list(
    df: u64,
    entries: &[u8],
    lens: &[u32],
    avgdl: f64,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    put_varint(out, df);
    let df = usize::try_from(df).map_err(|_| format!("{df} entries"))?;
    let (mut at, mut doc) = (0usize, 0u64);
    let mut skips = Vec::new();
    let (mut list_max, mut block_max) = (0f64, 0f64);
    for i in 0..df {
        let (Some(delta), Some(tf)) =
            (read_varint(entries, &mut at), read_varint(entries, &mut at))
        else {
            return Err(format!("entry {i}: truncated or bad varint"));
        };
        doc += delta;
        let dl = usize::try_from(doc)
            .ok()
            .and_then(|d| lens.get(d))
            .ok_or_else(|| format!("entry {i}: document {doc} out of range"))?;
        block_max = block_max.max(impact(tf as u32, *dl, avgdl));
        if df > BLOCK && (i % BLOCK == BLOCK - 1 || i == df - 1) {
            let (Ok(last), Ok(end)) = (u32::try_from(doc), u32::try_from(at)) else {
                return Err(format!(
                    "entry {i}: document {doc} or offset {at} past 32 bits"
                ));
            };
            skips.extend_from_slice(&last.to_le_bytes());
            skips.extend_from_slice(&end.to_le_bytes());
            skips.extend_from_slice(&round_up(block_max).to_le_bytes());
            list_max = list_max.max(block_max);
            block_max = 0.0;
        }
    }
    if at != entries.len() {
        return Err(format!("{} bytes after the entries", entries.len() - at));
    }
    list_max = list_max.max(block_max);
    out.extend_from_slice(&round_up(list_max).to_le_bytes());
    out.extend_from_slice(&skips);
    out.extend_from_slice(entries);
    Ok(())
}

/// Splits an encoded list into its greatest impact, its skip table and its entries, checking
/// its length against `df` (from `terms.bin`) and that the skip table fits. No entry is
/// decoded.
pub(crate) fn split_list(bytes: &[u8], df: u64) -> Result<(f32, &[u8], &[u8]), String> {
    let mut at = 0;
    let len = read_varint(bytes, &mut at).ok_or("cannot decode: bad length")?;
    if len != df {
        return Err(format!("{len} entries, terms.bin says {df}"));
    }
    let max = bytes
        .get(at..at + 4)
        .ok_or("truncated before its greatest impact")?;
    let max = f32::from_le_bytes([max[0], max[1], max[2], max[3]]);
    if !(0.0..=1.0).contains(&max) {
        return Err(format!("greatest impact {max} outside 0..=1"));
    }
    at += 4;
    let blocks = if df as usize > BLOCK {
        (df as usize).div_ceil(BLOCK)
    } else {
        0
    };
    let skips = blocks
        .checked_mul(SKIP)
        .and_then(|n| bytes.get(at..at.checked_add(n)?))
        .ok_or("skip table truncated")?;
    Ok((max, skips, &bytes[at + skips.len()..]))
}

/// A postings list in the index's bytes, its skip table checked.
#[derive(Clone, Copy)]
pub(crate) struct List<'a> {
    term: &'a str,
    dir: &'a Path,
    df: usize,
    n_docs: usize,
    max: f32,
    skips: &'a [u8],
    entries: &'a [u8],
}

impl<'a> List<'a> {
    /// Opens the list of `term` (`df` entries) from its bytes, in an index of `n_docs`
    /// documents in `dir` (for errors). Checks the skip table: last documents increasing and
    /// in range, block ends increasing, the last one at the end of the entries.
    pub(crate) fn open(
        term: &'a str,
        dir: &'a Path,
        bytes: &'a [u8],
        df: u32,
        n_docs: usize,
    ) -> Result<List<'a>, IndexError> {
        let bad = |what: String| bad_list(dir, term, what);
        let (max, skips, entries) = split_list(bytes, u64::from(df)).map_err(bad)?;
        let list = List {
            term,
            dir,
            df: df as usize,
            n_docs,
            max,
            skips,
            entries,
        };
        let (mut prev_last, mut prev_end) = (None, 0usize);
        for b in 0..list.skips.len() / SKIP {
            let (last, end) = list.skip(b);
            let impact = list.block_impact(b);
            let blocks = list.skips.len() / SKIP;
            if (last as usize) >= n_docs
                || !(0.0..=max).contains(&impact)
                || prev_last.is_some_and(|p| last <= p)
                || end <= prev_end
                || end > entries.len()
                || (b + 1 == blocks && end != entries.len())
            {
                return Err(bad(format!(
                    "bad skip entry {b} (last document {last}, end {end}, impact {impact})"
                )));
            }
            (prev_last, prev_end) = (Some(last), end);
        }
        Ok(list)
    }

    /// The number of entries.
    pub(crate) fn len(&self) -> usize {
        self.df
    }

    /// The greatest impact of an entry (rounded up).
    pub(crate) fn max_impact(&self) -> f64 {
        f64::from(self.max)
    }

    /// The greatest impact in block `b` (rounded up).
    fn block_impact(&self, b: usize) -> f32 {
        let e = &self.skips[b * SKIP + 8..b * SKIP + 12];
        f32::from_le_bytes([e[0], e[1], e[2], e[3]])
    }

    fn blocks(&self) -> usize {
        if self.skips.is_empty() {
            1
        } else {
            self.skips.len() / SKIP
        }
    }

    /// Block `b`'s (last document, end of its entries).
    fn skip(&self, b: usize) -> (DocId, usize) {
        let e = &self.skips[b * SKIP..b * SKIP + SKIP];
        let word = |i: usize| u32::from_le_bytes([e[i], e[i + 1], e[i + 2], e[i + 3]]);
        (word(0), word(4) as usize)
    }

    fn error(&self, what: String) -> IndexError {
        bad_list(self.dir, self.term, what)
    }

    /// Decodes block `b` into `out` (cleared first).
    pub(crate) fn decode_block(&self, b: usize, out: &mut Vec<Posting>) -> Result<(), IndexError> {
        out.clear();
        let (mut doc, start) = if b == 0 {
            (0, 0)
        } else {
            let (last, end) = self.skip(b - 1);
            (u64::from(last), end)
        };
        let (count, end) = if self.skips.is_empty() {
            (self.df, self.entries.len())
        } else {
            (BLOCK.min(self.df - b * BLOCK), self.skip(b).1)
        };
        let bytes = &self.entries[..end];
        let mut at = start;
        for j in 0..count {
            let i = b * BLOCK + j;
            let (Some(delta), Some(tf)) =
                (read_varint(bytes, &mut at), read_varint(bytes, &mut at))
            else {
                return Err(self.error(format!("cannot decode entry {i}: truncated or bad varint")));
            };
            if (i > 0 && delta == 0) || tf == 0 || doc + delta >= self.n_docs as u64 {
                return Err(self.error(format!("bad entry {i} (delta {delta}, tf {tf})")));
            }
            doc += delta;
            out.push(Posting {
                doc: doc as DocId,
                tf: tf as u32,
            });
        }
        if at != end {
            return Err(self.error(format!(
                "block {b}: {} bytes of garbage after its entries",
                end - at
            )));
        }
        if !self.skips.is_empty() && doc != u64::from(self.skip(b).0) {
            return Err(self.error(format!(
                "block {b} ends at document {doc}, its skip entry says {}",
                self.skip(b).0
            )));
        }
        Ok(())
    }

    /// Decodes the whole list into `out` (cleared first).
    pub(crate) fn decode_all(&self, out: &mut Vec<Posting>) -> Result<(), IndexError> {
        out.clear();
        out.reserve(self.df);
        let mut block = Vec::with_capacity(BLOCK.min(self.df));
        for b in 0..self.blocks() {
            self.decode_block(b, &mut block)?;
            out.extend_from_slice(&block);
        }
        Ok(())
    }

    /// Finds each of `docs` (increasing) in the list: for `docs[i]`, first asks
    /// `visit(i, Step::Block(impact))` whether an entry with the greatest impact of the block
    /// that would hold it could matter, and if so, decodes that block (once) and calls
    /// `visit(i, Step::Found(tf))` if the document is there. `block` is scratch space.
    pub(crate) fn lookup(
        &self,
        docs: &[DocId],
        block: &mut Vec<Posting>,
        mut visit: impl FnMut(usize, Step) -> bool,
    ) -> Result<(), IndexError> {
        let blocks = self.blocks();
        let (mut b, mut decoded, mut at) = (0usize, usize::MAX, 0usize);
        for (i, &doc) in docs.iter().enumerate() {
            if self.skips.is_empty() {
                if !visit(i, Step::Block(self.max_impact())) {
                    continue;
                }
            } else {
                while b < blocks && self.skip(b).0 < doc {
                    b += 1;
                }
                if b == blocks {
                    break;
                }
                if !visit(i, Step::Block(f64::from(self.block_impact(b)))) {
                    continue;
                }
            }
            if decoded != b {
                self.decode_block(b, block)?;
                (decoded, at) = (b, 0);
            }
            while at < block.len() && block[at].doc < doc {
                at += 1;
            }
            if let Some(p) = block.get(at)
                && p.doc == doc
            {
                visit(i, Step::Found(p.tf));
            }
        }
        Ok(())
    }
}

/// What [`List::lookup`] tells its visitor.
pub(crate) enum Step {
    /// The greatest impact of the block that would hold the document.
    Block(f64),
    /// The document is in the list, with this term frequency.
    Found(u32),
}

fn bad_list(dir: &Path, term: &str, what: String) -> IndexError {
    file_error(&dir.join(POSTINGS), format!("postings of {term:?}: {what}"))
}
