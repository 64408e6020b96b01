//! Robustness of [`ModuleInfo::parse`]: whatever the bytes, it returns (never panics, never
//! hangs, never allocates without bound), and every error says where.
//!
//! The inputs are the 11 real-world libraries of the corpus, damaged deterministically:
//! - every truncation in the first 4 KiB, inside the `dylink.0` section and around every section
//!   boundary, plus evenly spread cuts (fewer for the big libraries); a cut strictly inside a
//!   section must be an error;
//! - bit flips (1..=8 bits, and a few "interesting byte" overwrites such as `0x80`/`0xff` that
//!   turn LEB128 counts into huge ones), mostly in the first 64 KiB where the `dylink.0`, type,
//!   import and export sections are, from a small xorshift PRNG seeded per library;
//! - the same mutations on each library's *skeleton* (the same module without its function,
//!   code, data and element sections), which is small, parses to the same imports and exports,
//!   and so lets mutated modules reach the model-building code cheaply and often.
//!
//! Hand-made modules then check the documented bounds: counts of `u32::MAX` fail quickly with
//! little memory; and the model-building stays linear in time and memory (regression tests for
//! quadratic lookups and per-import signature copies, found while writing these tests: the
//! fuzzers' random mutations do not build inputs regular enough to hit them).
//!
//! Memory is measured with a counting allocator that tracks the current thread's live bytes, so
//! tests running in parallel do not disturb each other's figures.
//!
//! The coverage-guided fuzzers for the same function are in `fuzz/` (see `fuzz/README.md`).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use wasmlink_dylink::{ModuleInfo, ParseError};

use crate::support;

/// Counts the bytes each thread has live, and the peak since [`meter::peak`] began.
mod meter {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    // Signed: a thread may free memory another thread allocated, taking its count below zero.
    thread_local! {
        static LIVE: Cell<isize> = const { Cell::new(0) };
        static PEAK: Cell<isize> = const { Cell::new(0) };
    }

    fn grow(n: usize) {
        LIVE.with(|l| {
            let v = l.get().wrapping_add(n as isize);
            l.set(v);
            PEAK.with(|p| p.set(p.get().max(v)));
        });
    }

    fn shrink(n: usize) {
        LIVE.with(|l| l.set(l.get().wrapping_sub(n as isize)));
    }

    /// The system allocator, counting.
    pub struct Meter;

    // The one unsafe item of the test suite: a pass-through to `System` that counts bytes in
    // const-initialised thread-locals (no allocation, no destructor).
    #[allow(unsafe_code)]
    unsafe impl GlobalAlloc for Meter {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let p = unsafe { System.alloc(layout) };
            if !p.is_null() {
                grow(layout.size());
            }
            p
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            let p = unsafe { System.alloc_zeroed(layout) };
            if !p.is_null() {
                grow(layout.size());
            }
            p
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            unsafe { System.dealloc(ptr, layout) };
            shrink(layout.size());
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            let p = unsafe { System.realloc(ptr, layout, new_size) };
            if !p.is_null() {
                shrink(layout.size());
                grow(new_size);
            }
            p
        }
    }

    /// Runs `f` and returns its result with the peak number of bytes this thread had allocated
    /// at once while it ran, beyond what was live before.
    pub fn peak<R>(f: impl FnOnce() -> R) -> (R, usize) {
        let base = LIVE.with(Cell::get);
        PEAK.with(|p| p.set(base));
        let r = f();
        let peak = PEAK.with(Cell::get).saturating_sub(base);
        (r, peak.max(0) as usize)
    }
}

#[global_allocator]
static METER: meter::Meter = meter::Meter;

/// The bound the crate documents as "a small multiple of the input's size": the model of a
/// module full of 3-byte exports and 4-byte imports legitimately takes ~50 bytes per input
/// byte; 128 leaves room for that and none for anything that grows faster than the input.
const MEMORY_FACTOR: usize = 128;

fn memory_bound(input_len: usize) -> usize {
    MEMORY_FACTOR * input_len + (1 << 20)
}

// ---------------------------------------------------------------------------------------------
// The corpus, its section layout, and skeletons.

struct Library {
    name: String,
    bytes: Vec<u8>,
    sections: Vec<Section>,
}

/// A section of a module, by its byte range in the file.
#[derive(Debug, Clone)]
struct Section {
    id: u8,
    /// The custom section's name (custom sections only).
    name: String,
    /// Offset of the id byte.
    start: usize,
    /// One past the last payload byte.
    end: usize,
}

fn leb_u32(bytes: &[u8], pos: &mut usize) -> u32 {
    let mut v = 0u32;
    for shift in (0..35).step_by(7) {
        let b = bytes[*pos];
        *pos += 1;
        v |= u32::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
    }
    v
}

fn put_leb(mut v: u32, out: &mut Vec<u8>) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// The sections of a well-formed module, read directly from the binary format.
fn sections(bytes: &[u8]) -> Vec<Section> {
    assert_eq!(&bytes[..8], b"\0asm\x01\0\0\0");
    let mut out = Vec::new();
    let mut pos = 8;
    while pos < bytes.len() {
        let start = pos;
        let id = bytes[pos];
        pos += 1;
        let size = leb_u32(bytes, &mut pos) as usize;
        let end = pos + size;
        let name = if id == 0 {
            let mut p = pos;
            let n = leb_u32(bytes, &mut p) as usize;
            String::from_utf8_lossy(&bytes[p..p + n]).into_owned()
        } else {
            String::new()
        };
        out.push(Section {
            id,
            name,
            start,
            end,
        });
        pos = end;
    }
    assert_eq!(pos, bytes.len());
    out
}

fn corpus() -> Vec<Library> {
    let dir = support::corpus();
    let mut libs: Vec<Library> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "so"))
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            Library {
                name: p.file_name().unwrap().to_string_lossy().into_owned(),
                sections: sections(&bytes),
                bytes,
            }
        })
        .collect();
    libs.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(
        libs.len(),
        11,
        "the corpus has 11 libraries in {}",
        dir.display()
    );
    libs
}

/// The module without its function, code, data, data-count and element sections and without
/// custom sections other than `dylink.0`/`dylink`: small, but with the same imports and exports.
fn skeleton(lib: &Library) -> Vec<u8> {
    let mut out = b"\0asm\x01\0\0\0".to_vec();
    for s in &lib.sections {
        let keep = match s.id {
            0 => s.name == "dylink.0" || s.name == "dylink",
            3 | 9 | 10 | 11 | 12 => false,
            _ => true,
        };
        if keep {
            out.extend_from_slice(&lib.bytes[s.start..s.end]);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Checking one parse.

/// A deterministic xorshift64* generator.
struct Rng(u64);

impl Rng {
    fn for_name(name: &str) -> Rng {
        // FNV-1a of the name, never zero.
        let mut h = 0xcbf2_9ce4_8422_2325u64;
        for b in name.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        Rng(h | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Failures collected across one test, reported together.
#[derive(Default)]
struct Failures {
    list: Vec<String>,
    parses: usize,
    errors: usize,
}

impl Failures {
    fn push(&mut self, msg: String) {
        if self.list.len() < 20 {
            self.list.push(msg);
        }
    }

    fn assert_none(&self, what: &str) {
        assert!(
            self.list.is_empty(),
            "{what}: {} failure(s) in {} parses, first ones:\n  {}",
            self.list.len(),
            self.parses,
            self.list.join("\n  ")
        );
    }
}

/// Parses `bytes` under `catch_unwind`; records a panic, or an error without an offset, against
/// `what` (library, mutation, offsets). Returns the result, `None` after a panic.
fn check(
    fail: &mut Failures,
    what: &dyn Fn() -> String,
    bytes: &[u8],
) -> Option<Result<ModuleInfo, ParseError>> {
    fail.parses += 1;
    let r = match catch_unwind(AssertUnwindSafe(|| ModuleInfo::parse(bytes))) {
        Ok(r) => r,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            fail.push(format!("{}: PANIC: {msg}", what()));
            return None;
        }
    };
    match &r {
        Ok(info) => {
            if info.size != bytes.len() {
                fail.push(format!(
                    "{}: size {} for {} bytes",
                    what(),
                    info.size,
                    bytes.len()
                ));
            }
            // The accessors must cope with whatever parsed.
            let s = info.summary();
            let _ = (
                info.undefined_symbols().count(),
                info.defined_symbols().count(),
                s.uses_tls,
            );
            let _ = info.dylink.as_ref().map(|d| d.needed_unique());
        }
        Err(e) => {
            fail.errors += 1;
            let shown = e.to_string();
            if !shown.contains("(at offset 0x") {
                fail.push(format!("{}: error without an offset: {shown}", what()));
            }
            if e.offset > bytes.len() {
                fail.push(format!(
                    "{}: offset past the end ({} bytes): {shown}",
                    what(),
                    bytes.len()
                ));
            }
        }
    }
    Some(r)
}

/// Applies one random mutation to `bytes`, mostly within the first `window` bytes; describes it.
fn mutate(rng: &mut Rng, bytes: &mut [u8], window: usize) -> String {
    let len = bytes.len();
    let window = window.min(len);
    let pick = |rng: &mut Rng| {
        if rng.below(4) == 0 {
            rng.below(len)
        } else {
            rng.below(window)
        }
    };
    let mut desc = Vec::new();
    if rng.below(8) == 0 {
        // Overwrite a byte with one that makes LEB128 values long or huge, or a count zero.
        const INTERESTING: [u8; 6] = [0x00, 0x7f, 0x80, 0xff, 0x60, 0x01];
        let at = pick(rng);
        let v = INTERESTING[rng.below(INTERESTING.len())];
        desc.push(format!("set {at:#x}={v:#04x} (was {:#04x})", bytes[at]));
        bytes[at] = v;
    } else {
        for _ in 0..1 + rng.below(8) {
            let at = pick(rng);
            let bit = rng.below(8);
            bytes[at] ^= 1 << bit;
            desc.push(format!("flip {at:#x}.{bit}"));
        }
    }
    desc.join(", ")
}

/// How many full-size parses a library of `len` bytes gets: thousands for the small ones,
/// a few dozen for libpython (each of its parses walks 9 MB).
fn budget(len: usize, total_bytes: usize, min: usize, max: usize) -> usize {
    (total_bytes / len.max(1)).clamp(min, max)
}

// ---------------------------------------------------------------------------------------------
// The corpus, damaged.

#[test]
fn corpus_libraries_parse_within_memory_bound() {
    for lib in corpus() {
        let (r, peak) = meter::peak(|| ModuleInfo::parse(&lib.bytes));
        let info = r.unwrap_or_else(|e| panic!("{}: {e}", lib.name));
        assert!(info.dylink.is_some(), "{}", lib.name);
        eprintln!(
            "{}: {} bytes, {peak} bytes allocated at most",
            lib.name,
            lib.bytes.len()
        );
        assert!(
            peak <= memory_bound(lib.bytes.len()),
            "{}: {peak} bytes allocated to parse {} bytes",
            lib.name,
            lib.bytes.len()
        );
        // The skeleton keeps every import and export.
        let skel = ModuleInfo::parse(&skeleton(&lib))
            .unwrap_or_else(|e| panic!("{} skeleton: {e}", lib.name));
        assert_eq!(skel.imports, info.imports, "{} skeleton imports", lib.name);
        assert_eq!(
            skel.exports.len(),
            info.exports.len(),
            "{} skeleton exports",
            lib.name
        );
        assert_eq!(skel.dylink, info.dylink, "{} skeleton dylink.0", lib.name);
    }
}

#[test]
fn truncated_corpus_libraries_fail_with_an_offset() {
    let mut fail = Failures::default();
    for lib in corpus() {
        let len = lib.bytes.len();
        let mut cuts: Vec<usize> = (0..len.min(4096)).collect();
        for s in &lib.sections {
            if s.id == 0 && (s.name == "dylink.0" || s.name == "dylink") {
                cuts.extend(s.start..=s.end);
            }
            // Around every boundary (big sections: the parse up to there is the cost).
            let around = if s.end < 1 << 20 { 64 } else { 8 };
            cuts.extend(s.start.saturating_sub(around)..(s.start + around).min(len));
            cuts.extend(s.end.saturating_sub(around)..(s.end + around).min(len));
        }
        // Evenly spread cuts: ~500 for the small libraries, fewer where each parse is long.
        let spread = budget(len, 400 << 20, 40, 500);
        cuts.extend((1..spread).map(|i| i * len / spread));
        cuts.sort_unstable();
        cuts.dedup();

        for &cut in &cuts {
            let what = || format!("{} cut at {cut:#x} of {len:#x}", lib.name);
            let Some(r) = check(&mut fail, &what, &lib.bytes[..cut]) else {
                continue;
            };
            // A cut strictly inside a section (after its id byte, before its end) is an error.
            let inside = lib.sections.iter().find(|s| s.start < cut && cut < s.end);
            if let (Ok(_), Some(s)) = (&r, inside) {
                fail.push(format!(
                    "{}: parsed, though inside section {} at {:#x}..{:#x}",
                    what(),
                    s.id,
                    s.start,
                    s.end
                ));
            }
            if cut < 8 && r.is_ok() {
                fail.push(format!("{}: parsed without a header", what()));
            }
        }
        eprintln!("{}: {} truncations", lib.name, cuts.len());
    }
    eprintln!(
        "truncations: {} parses, {} errors",
        fail.parses, fail.errors
    );
    fail.assert_none("truncated corpus libraries");
}

#[test]
fn bit_flipped_corpus_libraries_do_not_panic() {
    let mut fail = Failures::default();
    for lib in corpus() {
        let mut rng = Rng::for_name(&lib.name);
        // ~3000 mutations of each small library; ~40 of libpython's 9 MB.
        let n = budget(lib.bytes.len(), 1 << 30, 40, 3000);
        let mut bytes = lib.bytes.clone();
        for i in 0..n {
            let desc = mutate(&mut rng, &mut bytes, 64 << 10);
            let what = || format!("{} mutation #{i}: {desc}", lib.name);
            check(&mut fail, &what, &bytes);
            bytes.copy_from_slice(&lib.bytes);
        }
        eprintln!("{}: {n} mutations", lib.name);
    }
    eprintln!("bit flips: {} parses, {} errors", fail.parses, fail.errors);
    fail.assert_none("bit-flipped corpus libraries");
}

#[test]
fn bit_flipped_skeletons_do_not_panic() {
    let mut fail = Failures::default();
    let mut parsed = 0;
    for lib in corpus() {
        let skel = skeleton(&lib);
        let mut rng = Rng::for_name(&format!("skeleton {}", lib.name));
        let n = budget(skel.len(), 1 << 29, 300, 3000);
        let mut bytes = skel.clone();
        for i in 0..n {
            let desc = mutate(&mut rng, &mut bytes, usize::MAX);
            let what = || format!("skeleton of {} mutation #{i}: {desc}", lib.name);
            if let Some(Ok(_)) = check(&mut fail, &what, &bytes) {
                parsed += 1;
            }
            bytes.copy_from_slice(&skel);
        }
        eprintln!(
            "{} skeleton ({} bytes): {n} mutations",
            lib.name,
            skel.len()
        );
    }
    eprintln!(
        "skeleton flips: {} parses, {} errors, {parsed} parsed",
        fail.parses, fail.errors
    );
    fail.assert_none("bit-flipped skeletons");
    // Many mutations must reach the model building, or the test exercises little of it.
    assert!(
        parsed * 10 > fail.parses,
        "only {parsed} of {} mutated skeletons parsed",
        fail.parses
    );
}

/// [`ModuleInfo::parse_reader`] (the loader's parse of a stamped library, the code section
/// skipped) against [`ModuleInfo::parse`] on the corpus and on mutated skeletons: never a
/// panic, the same model whenever `parse` succeeds, and an error with an offset otherwise
/// (it may accept what `parse` rejects only inside the skipped function bodies, which a
/// skeleton does not have).
#[test]
fn parse_reader_agrees_with_parse() {
    use std::io::Cursor;
    let mut checked = 0;
    for lib in corpus() {
        let whole = ModuleInfo::parse(&lib.bytes).unwrap();
        let read = ModuleInfo::parse_reader(Cursor::new(&lib.bytes))
            .unwrap_or_else(|e| panic!("{}: {e}", lib.name));
        assert_eq!(read, whole, "{}", lib.name);
        let skel = skeleton(&lib);
        let mut rng = Rng::for_name(&format!("parse_reader {}", lib.name));
        let mut bytes = skel.clone();
        for i in 0..300 {
            let desc = mutate(&mut rng, &mut bytes, usize::MAX);
            let a = ModuleInfo::parse(&bytes);
            let b = catch_unwind(AssertUnwindSafe(|| {
                ModuleInfo::parse_reader(Cursor::new(&bytes))
            }))
            .unwrap_or_else(|_| {
                panic!("{} mutation #{i} ({desc}): parse_reader panicked", lib.name)
            });
            match (a, b) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{} mutation #{i} ({desc})", lib.name),
                (Err(_), Err(e)) => assert!(
                    e.to_string().contains("(at offset 0x"),
                    "{} mutation #{i} ({desc}): {e}",
                    lib.name
                ),
                (a, b) => panic!(
                    "{} mutation #{i} ({desc}): parse {:?}, parse_reader {:?}",
                    lib.name,
                    a.map(|_| "ok"),
                    b.map(|_| "ok")
                ),
            }
            checked += 1;
            bytes.copy_from_slice(&skel);
        }
    }
    assert!(checked > 0, "no corpus: nothing checked");
}

// ---------------------------------------------------------------------------------------------
// Hand-made modules: huge counts, and the linear-time / linear-memory regressions.

fn section(id: u8, body: &[u8], out: &mut Vec<u8>) {
    out.push(id);
    put_leb(body.len() as u32, out);
    out.extend_from_slice(body);
}

fn custom(name: &str, body: &[u8], out: &mut Vec<u8>) {
    let mut b = Vec::new();
    put_leb(name.len() as u32, &mut b);
    b.extend_from_slice(name.as_bytes());
    b.extend_from_slice(body);
    section(0, &b, out);
}

fn module(sections: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut m = b"\0asm\x01\0\0\0".to_vec();
    for (id, body) in sections {
        section(*id, body, &mut m);
    }
    m
}

/// A section body: `count` followed by `items`.
fn counted(count: u32, items: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    put_leb(count, &mut b);
    b.extend_from_slice(items);
    b
}

/// A dylink.0 subsection.
fn sub(id: u8, body: &[u8]) -> Vec<u8> {
    let mut b = vec![id];
    put_leb(body.len() as u32, &mut b);
    b.extend_from_slice(body);
    b
}

fn dylink0_module(subsections: &[Vec<u8>], rest: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut m = b"\0asm\x01\0\0\0".to_vec();
    custom("dylink.0", &subsections.concat(), &mut m);
    for (id, body) in rest {
        section(*id, body, &mut m);
    }
    m
}

/// Parses `bytes` on another thread; fails the test if that takes longer than `limit` (the
/// stuck thread is left to run until the test process exits).
fn parse_within(
    what: &str,
    bytes: Vec<u8>,
    limit: Duration,
) -> (Result<ModuleInfo, ParseError>, usize) {
    let (tx, rx) = mpsc::channel();
    let start = Instant::now();
    std::thread::spawn(move || {
        let r = meter::peak(|| ModuleInfo::parse(&bytes));
        let _ = tx.send(r);
    });
    match rx.recv_timeout(limit) {
        Ok(r) => r,
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: parse still running after {limit:?} (super-linear time?)")
        }
        Err(e) => panic!("{what}: parse thread died after {:?}: {e}", start.elapsed()),
    }
}

#[test]
fn counts_of_u32_max_fail_fast_with_little_memory() {
    let max = u32::MAX;
    let func_type = [0x60, 0x00, 0x00];
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        ("types", module(&[(1, counted(max, &func_type))])),
        (
            "func params",
            module(&[(1, counted(1, &[0x60, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x7f]))]),
        ),
        (
            "rec group",
            module(&[(1, counted(1, &[0x4e, 0xff, 0xff, 0xff, 0xff, 0x0f]))]),
        ),
        (
            "imports",
            module(&[(2, counted(max, &[1, b'a', 1, b'b', 0, 0]))]),
        ),
        ("functions", module(&[(3, counted(max, &[0]))])),
        ("tables", module(&[(4, counted(max, &[0x70, 0, 1]))])),
        ("memories", module(&[(5, counted(max, &[0, 1]))])),
        (
            "globals",
            module(&[(6, counted(max, &[0x7f, 0, 0x41, 0, 0x0b]))]),
        ),
        ("exports", module(&[(7, counted(max, &[1, b'e', 0, 0]))])),
        ("elements", module(&[(9, counted(max, &[]))])),
        (
            "code",
            module(&[(3, counted(1, &[0])), (10, counted(max, &[]))]),
        ),
        ("data", module(&[(11, counted(max, &[]))])),
        ("tags", module(&[(13, counted(max, &[0, 0]))])),
        (
            "dylink.0 NEEDED",
            dylink0_module(&[sub(2, &counted(max, b"\x01a"))], &[]),
        ),
        (
            "dylink.0 EXPORT_INFO",
            dylink0_module(&[sub(3, &counted(max, b"\x01a\x00"))], &[]),
        ),
        (
            "dylink.0 IMPORT_INFO",
            dylink0_module(&[sub(4, &counted(max, b"\x01a\x01b\x00"))], &[]),
        ),
        (
            "dylink.0 RUNTIME_PATH",
            dylink0_module(&[sub(5, &counted(max, b"\x01a"))], &[]),
        ),
        ("dylink.0 subsection size", {
            let mut m = b"\0asm\x01\0\0\0".to_vec();
            custom("dylink.0", &[2, 0xff, 0xff, 0xff, 0xff, 0x0f, 0], &mut m);
            m
        }),
        (
            "section size",
            b"\0asm\x01\0\0\0\x01\xff\xff\xff\xff\x0f\x01".to_vec(),
        ),
        (
            "string length",
            module(&[(2, counted(1, &[0xff, 0xff, 0xff, 0xff, 0x0f, b'a']))]),
        ),
    ];
    // Legacy `dylink`: mem info, then a needed count of u32::MAX.
    let mut legacy = b"\0asm\x01\0\0\0".to_vec();
    custom(
        "dylink",
        &[0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, b'a'],
        &mut legacy,
    );
    cases.push(("legacy dylink needed", legacy));
    // A name section claiming u32::MAX function names.
    let mut name = b"\0asm\x01\0\0\0".to_vec();
    custom("name", &[1, 6, 0xff, 0xff, 0xff, 0xff, 0x0f, 0], &mut name);
    cases.push(("name section", name));

    let start = Instant::now();
    let mut fail = Failures::default();
    for (what, bytes) in &cases {
        let len = bytes.len();
        let t = Instant::now();
        let (r, peak) = meter::peak(|| check(&mut fail, &|| what.to_string(), bytes));
        // The model skips the data, tag and name sections (wasmtime validates them when it
        // compiles), so those may parse; everything it reads must fail.
        let skipped = ["data", "tags", "name section"];
        if let Some(Ok(_)) = r
            && !skipped.contains(what)
        {
            fail.push(format!("{what}: parsed"));
        }
        if peak > 64 << 10 {
            fail.push(format!(
                "{what}: {peak} bytes allocated for a {len}-byte module"
            ));
        }
        if t.elapsed() > Duration::from_secs(1) {
            fail.push(format!("{what}: took {:?}", t.elapsed()));
        }
    }
    fail.assert_none("counts of u32::MAX");
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );

    // A huge count followed by many real entries: linear work, bounded memory, then an error.
    let entries = 100_000;
    let imports = counted(max, &[0, 0, 0, 0].repeat(entries));
    let bytes = module(&[(1, counted(1, &func_type)), (2, imports)]);
    let len = bytes.len();
    let (r, peak) = parse_within(
        "u32::MAX imports, 100000 present",
        bytes,
        Duration::from_secs(20),
    );
    let e = r.unwrap_err();
    assert!(e.to_string().contains("(at offset 0x"), "{e}");
    assert!(
        peak <= memory_bound(len),
        "{peak} bytes allocated for a {len}-byte module"
    );
}

/// `n` function imports `"" ""` of type 0 (4 bytes each).
fn func_imports(n: u32) -> Vec<u8> {
    counted(n, &[0, 0, 0x00, 0].repeat(n as usize))
}

/// `n` exports named `""` of function `index`.
fn func_exports(n: u32, index: u32) -> Vec<u8> {
    let mut item = vec![0, 0x00];
    put_leb(index, &mut item);
    counted(n, &item.repeat(n as usize))
}

/// Regression: each export of an imported function looked its signature up by walking the
/// imports (`.filter(is func).nth(index)`), O(imports x exports): 1 MB of imports and exports
/// of the last import took ~50 s (release build).
///
/// Reproducer (n = 50000): `00 61 73 6d 01 00 00 00  01 04 01 60 00 00` (one type `() -> ()`),
/// an import section of n × `00 00 00 00`, an export section of n × `00 00 cf 86 03`
/// (export `""` = func n-1).
#[test]
fn exports_of_imported_functions_take_linear_time() {
    let n = 50_000;
    let bytes = module(&[
        (1, counted(1, &[0x60, 0, 0])),
        (2, func_imports(n)),
        (7, func_exports(n, n - 1)),
    ]);
    let t = Instant::now();
    let (r, _) = parse_within(
        "exports of the last imported function",
        bytes,
        Duration::from_secs(15),
    );
    eprintln!(
        "{n} exports of the last of {n} imported functions: {:?}",
        t.elapsed()
    );
    let info = r.unwrap();
    assert_eq!(
        (info.imports.len(), info.exports.len()),
        (n as usize, n as usize)
    );
    assert_eq!(
        info.exports[0].signature.as_ref().unwrap().to_string(),
        "() -> ()"
    );
}

/// Regression: each export looked its flags up by scanning dylink.0 EXPORT_INFO, and each import
/// scanned IMPORT_INFO: O(entries x exports) and O(entries x imports), ~25-45 s for 1 MB.
///
/// Reproducers (n = 50000): a `dylink.0` section whose EXPORT_INFO has n × `01 61 00` ("a",
/// flags 0) followed by an export section of n × `00 03 00` (global 0 named "");
/// and one whose IMPORT_INFO has n × `01 61 00 00` followed by n imports `00 00 03 7f 00`.
#[test]
fn dylink_flags_lookups_take_linear_time() {
    let n = 50_000u32;
    let exports = dylink0_module(
        &[sub(3, &counted(n, &b"\x01a\x00".repeat(n as usize)))],
        &[(7, counted(n, &[0, 0x03, 0].repeat(n as usize)))],
    );
    let t = Instant::now();
    let (r, _) = parse_within("EXPORT_INFO x exports", exports, Duration::from_secs(15));
    eprintln!("{n} EXPORT_INFO entries, {n} exports: {:?}", t.elapsed());
    assert_eq!(r.unwrap().exports.len(), n as usize);

    let imports = dylink0_module(
        &[sub(4, &counted(n, &b"\x01a\x00\x00".repeat(n as usize)))],
        &[(2, counted(n, &[0, 0, 0x03, 0x7f, 0].repeat(n as usize)))],
    );
    let t = Instant::now();
    let (r, _) = parse_within("IMPORT_INFO x imports", imports, Duration::from_secs(15));
    eprintln!("{n} IMPORT_INFO entries, {n} imports: {:?}", t.elapsed());
    assert_eq!(r.unwrap().imports.len(), n as usize);
}

/// Regression: every import and export of a function got its own copy of the signature, so a
/// type of 1000 params and 1000 results (2 KB) referenced by 4-byte imports and 3-byte exports
/// made the model ~600 times the size of the input (1 MB in, 600 MB allocated).
///
/// Reproducer (n = 20000): type section `01 60 e8 07 <1000 × 7f> e8 07 <1000 × 7f>`, an import
/// section of n × `00 00 00 00`, an export section of n × `00 00 00` (export "" = func 0).
#[test]
fn shared_signatures_take_linear_memory() {
    let n = 20_000;
    let mut ty = vec![0x60];
    for _ in 0..2 {
        put_leb(1000, &mut ty);
        ty.extend(std::iter::repeat_n(0x7f, 1000));
    }
    let bytes = module(&[
        (1, counted(1, &ty)),
        (2, func_imports(n)),
        (7, func_exports(n, 0)),
    ]);
    let len = bytes.len();
    let (r, peak) = parse_within(
        "2000-value signature x 40000 uses",
        bytes,
        Duration::from_secs(15),
    );
    let info = r.unwrap();
    eprintln!("{len}-byte module: {peak} bytes allocated at most");
    assert_eq!(
        info.exports[0].signature.as_ref().unwrap().params.len(),
        1000
    );
    assert!(
        peak <= memory_bound(len),
        "{peak} bytes allocated for a {len}-byte module (bound {})",
        memory_bound(len)
    );
}

// ---------------------------------------------------------------------------------------------
// Hand-made libraries given to `ldd` and the loader (issue 13, items 5 and 6).

/// Runs `wasmlink ARGS`, killing it and failing the test if it has not finished after `limit`.
fn wasmlink_within(args: &[String], limit: Duration) -> std::process::Output {
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_wasmlink"))
        .args(args)
        .env_remove("WASMLINK_LIBRARY_PATH")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Drain the pipes on threads so a chatty child never blocks on a full pipe.
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut out, &mut b).map(|_| b)
    });
    let err = std::thread::spawn(move || {
        let mut b = Vec::new();
        std::io::Read::read_to_end(&mut err, &mut b).map(|_| b)
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            child.kill().unwrap();
            let _ = child.wait();
            panic!("wasmlink {args:?}: still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    std::process::Output {
        status,
        stdout: out.join().unwrap().unwrap(),
        stderr: err.join().unwrap().unwrap(),
    }
}

/// A MEM_INFO subsection: memorysize, memoryalignment, tablesize, tablealignment.
fn mem_info(fields: [u32; 4]) -> Vec<u8> {
    let mut b = Vec::new();
    for v in fields {
        put_leb(v, &mut b);
    }
    sub(1, &b)
}

/// A NEEDED subsection.
fn needed(names: impl IntoIterator<Item = String>) -> Vec<u8> {
    let mut items = Vec::new();
    let mut n = 0;
    for name in names {
        put_leb(name.len() as u32, &mut items);
        items.extend_from_slice(name.as_bytes());
        n += 1;
    }
    sub(2, &counted(n, &items))
}

/// Regression (issue 13, item 5): MEM_INFO's table alignment was not bounded, so a library of
/// a few dozen bytes made `ldd -r` and `run` grow the table by 2^28 slots (3.1 GB), 2^30 (over
/// 6 GB) or spin at 100% CPU for 2^31 and above. The model now refuses alignments above 2^16
/// and table sizes above 10,000,000 slots, naming the field, so no consumer sees them.
#[test]
fn huge_mem_info_alignments_are_refused_by_the_model_and_ldd() {
    // The parse: field, section and offset. The library is `\0asm 01000000` (0x0..0x8), the
    // custom section's id, size, name length and `dylink.0` (0x8..0x13), then MEM_INFO: id
    // 0x13, size 0x14, memorysize 0x15, memoryalignment 0x16, tablesize 0x17,
    // tablealignment 0x18.
    for p2align in [17, 28, 30, 31, 32, u32::MAX] {
        let lib = dylink0_module(&[mem_info([0, 0, 1, p2align])], &[]);
        let e = ModuleInfo::parse(&lib).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "dylink.0 section, MEM_INFO subsection: tablealignment {p2align} (2^{p2align} \
                 slots) is above the limit of 16 (2^16 slots) (at offset 0x18)"
            )
        );
        let lib = dylink0_module(&[mem_info([0, p2align, 0, 0])], &[]);
        let e = ModuleInfo::parse(&lib).unwrap_err();
        assert!(e.message.starts_with("memoryalignment"), "{e}");
        assert_eq!(e.offset, 0x16, "{e}");
    }
    let lib = dylink0_module(&[mem_info([0, 0, u32::MAX, 0])], &[]);
    let e = ModuleInfo::parse(&lib).unwrap_err();
    assert!(e.message.starts_with("tablesize 4294967295 slots"), "{e}");
    let ok = dylink0_module(&[mem_info([1 << 20, 16, 10_000_000, 16])], &[]);
    ModuleInfo::parse(&ok).unwrap();

    // The command line: `ldd -r` of a program needing such a library skips it (naming the
    // field) and fails at once; `ldd` of the library itself is a bad-input error (exit 2).
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("libbig.so");
    std::fs::write(&lib, dylink0_module(&[mem_info([0, 0, 1, 28])], &[])).unwrap();
    let main = dir.path().join("main.wasm");
    std::fs::write(
        &main,
        dylink0_module(&[needed(["libbig.so".to_string()])], &[]),
    )
    .unwrap();
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let o = wasmlink_within(
        &[
            "ldd".into(),
            "-r".into(),
            "--no-default-dirs".into(),
            "-L".into(),
            s(dir.path()),
            s(&main),
        ],
        Duration::from_secs(60),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "skipped {}: dylink.0 section, MEM_INFO subsection: tablealignment 28 (2^28 slots) \
             is above the limit of 16 (2^16 slots) (at offset 0x18)",
            lib.display()
        )),
        "{err}"
    );
    let o = wasmlink_within(&["ldd".into(), s(&lib)], Duration::from_secs(60));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("tablealignment 28"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// Regression (issue 13, item 6): `ldd` looked each missing library's entry up by name among
/// all entries, O(NEEDED²): 1e4 entries took 0.2 s, 1e5 15 s, 1e6 did not finish. 300,000
/// missing libraries (a 3.4 MB module) would take about ten minutes that way in a debug
/// build; linear, a few seconds. The limit is far from both.
#[test]
fn ldd_of_many_needed_libraries_takes_linear_time() {
    let n = 300_000;
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("main.wasm");
    // Every name twice: the closure lists each once.
    let names = (0..n).chain(0..n).map(|i| format!("lib{i}.so"));
    std::fs::write(&main, dylink0_module(&[needed(names)], &[])).unwrap();

    // The dependency tree itself.
    let info = std::sync::Arc::new(ModuleInfo::parse(&std::fs::read(&main).unwrap()).unwrap());
    let mut search = wasmlink::resolve::SearchPath::new();
    search.set_default_dirs(Vec::new()).add_dir(dir.path());
    let t = Instant::now();
    let tree = wasmlink::resolve::DependencyTree::resolve(&main, info, &search);
    eprintln!(
        "{n} missing libraries: dependency tree in {:?}",
        t.elapsed()
    );
    assert_eq!(tree.entries.len(), n + 1);
    assert_eq!(tree.missing().count(), n);
    assert!(t.elapsed() < Duration::from_secs(60), "{:?}", t.elapsed());

    // `ldd`: one stdout line and one stderr line per library, in NEEDED order.
    let t = Instant::now();
    let o = wasmlink_within(
        &[
            "ldd".into(),
            "--no-default-dirs".into(),
            main.to_str().unwrap().into(),
        ],
        Duration::from_secs(60),
    );
    eprintln!("{n} missing libraries: ldd in {:?}", t.elapsed());
    assert_eq!(o.status.code(), Some(1));
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(out.lines().count(), n);
    assert_eq!(err.lines().count(), n);
    assert_eq!(
        out.lines().last().unwrap(),
        format!("\tlib{}.so => not found", n - 1)
    );
    assert_eq!(
        err.lines().next().unwrap(),
        format!(
            "wasmlink: lib0.so (needed by {}): not found; searched nothing (the search path \
             is empty)",
            main.display()
        )
    );
}

/// Regression: the dependency closure read and parsed a library once per NEEDED name that led
/// to it, so a small module naming one large library under many spellings of its path
/// (`DIR//./libbig.so`, ...) made `ldd` read it thousands of times. Each file is now read
/// once per resolution (`LibraryCache`): 2,000 spellings of an 8 MB library are 16 GB of
/// reads that way, one read now.
#[test]
fn a_library_named_many_ways_is_read_once() {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("libbig.so");
    let mut pad = vec![0u8; 8 << 20];
    pad[0] = 3;
    pad[1..4].copy_from_slice(b"pad");
    std::fs::write(
        &lib,
        dylink0_module(
            &[mem_info([0, 0, 0, 0])],
            &[
                (1, counted(1, &[0x60, 0, 0])),
                (2, func_imports(20_000)),
                (7, func_exports(20_000, 0)),
                (0, pad),
            ],
        ),
    )
    .unwrap();
    let base = dir.path().to_str().unwrap();
    let names: Vec<String> = (0..40)
        .flat_map(|i| {
            (0..50).map(move |j| format!("{base}/{}{}libbig.so", "/".repeat(i), "./".repeat(j)))
        })
        .collect();
    let n = names.len();
    let main = dir.path().join("main.wasm");
    std::fs::write(&main, dylink0_module(&[needed(names)], &[])).unwrap();
    let info = std::sync::Arc::new(ModuleInfo::parse(&std::fs::read(&main).unwrap()).unwrap());
    let mut search = wasmlink::resolve::SearchPath::new();
    search.set_default_dirs(Vec::new());
    let (tx, rx) = mpsc::channel();
    let t = Instant::now();
    std::thread::spawn(move || {
        let _ = tx.send(wasmlink::resolve::DependencyTree::resolve(
            &main, info, &search,
        ));
    });
    let tree = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the dependency tree of 2,000 names for one library took over 60 s");
    eprintln!("{n} names of one 8 MB library: {:?}", t.elapsed());
    assert_eq!(tree.entries.len(), n + 1);
    let first = tree.entries[1].result.as_ref().unwrap();
    for e in &tree.entries[2..] {
        assert_eq!(e.duplicate_of, Some(1), "{}", e.name);
        // The same model and bytes, shared.
        let f = e.result.as_ref().unwrap();
        assert!(std::sync::Arc::ptr_eq(&f.info, &first.info));
    }
}
