//! Fuzz target: the payload parsers of the `dylink.0` and legacy `dylink` custom sections,
//! fed directly (no module around them), so every byte reaches the subsection readers.
//!
//! The first byte picks a file offset for the payload (errors must report offsets at or past
//! it, and within the payload's end); the rest is the payload, given to both parsers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmlink_dylink::{
    DylinkFormat, DylinkInfo, MAX_MEMORY_ALIGN_LOG2, MAX_TABLE_ALIGN_LOG2, MAX_TABLE_SIZE,
    ParseError, parse_dylink0, parse_legacy_dylink,
};

fuzz_target!(|data: &[u8]| {
    let Some((&first, payload)) = data.split_first() else {
        return;
    };
    // Offsets near 0 and near the top of the address space, to catch offset arithmetic.
    let offset = match first {
        0..=127 => usize::from(first) * 0x101,
        _ => usize::MAX / 2 + usize::from(first),
    };
    check(
        parse_dylink0(payload, offset),
        DylinkFormat::Dylink0,
        offset,
        payload.len(),
    );
    check(
        parse_legacy_dylink(payload, offset),
        DylinkFormat::Legacy,
        offset,
        payload.len(),
    );
});

fn check(r: Result<DylinkInfo, ParseError>, format: DylinkFormat, offset: usize, len: usize) {
    match r {
        Ok(d) => {
            assert_eq!(d.format, format);
            // The documented MEM_INFO bounds hold for every accepted section.
            let m = d.mem_info;
            assert!(m.memory_align_log2 <= MAX_MEMORY_ALIGN_LOG2, "{m:?}");
            assert!(m.table_align_log2 <= MAX_TABLE_ALIGN_LOG2, "{m:?}");
            assert!(m.table_size <= MAX_TABLE_SIZE, "{m:?}");
            let _ = (
                d.mem_info.memory_align(),
                d.mem_info.table_align(),
                d.needed_unique(),
            );
            // By-name lookups are linear: a bounded number keeps the harness linear.
            for (n, e) in d.export_info.iter().enumerate() {
                let _ = e.flags.names();
                if n < 32 {
                    let _ = d.export_flags(&e.name);
                }
            }
            for (n, i) in d.import_info.iter().enumerate() {
                let _ = i.flags.names();
                if n < 32 {
                    let _ = d.import_flags(&i.module, &i.field);
                }
            }
            for u in &d.unknown_subsections {
                assert!(
                    u.offset >= offset && u.offset + u.len <= offset + len,
                    "{u:?}"
                );
            }
            serde_json::to_string(&d).expect("serialises");
        }
        Err(e) => {
            let shown = e.to_string();
            assert!(shown.contains("(at offset 0x"), "{shown}");
            assert!(
                e.offset >= offset && e.offset <= offset + len,
                "offset {:#x}: {shown}",
                e.offset
            );
        }
    }
}
