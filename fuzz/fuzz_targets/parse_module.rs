//! Fuzz target: `ModuleInfo::parse` on arbitrary bytes, then every accessor of the model.
//!
//! Invariants checked (beyond "no panic, no hang, no runaway allocation"):
//! - every error's `Display` names an offset (`(at offset 0x...)`) within the input;
//! - a parsed model's `size` is the input length and its counts agree with each other;
//! - the model serialises to JSON.
#![no_main]

use std::fmt::Write as _;

use libfuzzer_sys::fuzz_target;
use wasmlink_dylink::{ExportClass, ImportClass, ImportType, ModuleInfo, SymbolFlags};

fuzz_target!(|data: &[u8]| {
    let info = match ModuleInfo::parse(data) {
        Ok(info) => info,
        Err(e) => {
            let shown = e.to_string();
            assert!(
                shown.contains("(at offset 0x"),
                "error without an offset: {shown}"
            );
            assert!(
                e.offset <= data.len(),
                "offset {:#x} past the end: {shown}",
                e.offset
            );
            return;
        }
    };
    exercise(&info, data.len());
});

/// How many by-name lookups (each linear) the harness makes per list.
const LOOKUPS: usize = 32;

fn exercise(info: &ModuleInfo, len: usize) {
    assert_eq!(info.size, len);
    let mut sink = String::new();

    let _ = write!(
        sink,
        "{} {} {}",
        info.kind.describe(),
        info.address_width.as_str(),
        info.is_dynamic()
    );
    let _ = (
        info.name.as_deref(),
        info.start,
        info.defined_functions,
        info.defined_globals,
    );
    let _ = (&info.defined_memories, &info.defined_tables);

    // Summary: its counts must add up to the import/export lists.
    let s = info.summary();
    assert_eq!(s.imports.values().sum::<usize>(), info.imports.len());
    assert_eq!(s.exports.values().sum::<usize>(), info.exports.len());
    assert!(s.weak_imports <= info.imports.len());
    assert!(s.tls_symbols <= info.exports.len());
    for label in s.imports.keys() {
        assert!(ImportClass::LABELS.contains(label), "{label}");
    }
    for label in s.exports.keys() {
        assert!(ExportClass::LABELS.contains(label), "{label}");
    }

    for i in info.undefined_symbols() {
        assert!(i.class.symbol().is_some());
        let _ = write!(sink, "{}.{} {:?}", i.module, i.field, i.flags.names());
    }
    for i in &info.imports {
        let _ = (
            i.class.label(),
            i.class.is_linker_provided(),
            i.is_weak(),
            i.kind,
        );
        names(i.flags, &mut sink);
        match &i.ty {
            ImportType::Func { signature } | ImportType::Tag { signature } => {
                if let Some(sig) = signature {
                    let _ = write!(sink, "{sig}");
                }
            }
            ImportType::Global { ty, .. } => {
                let _ = write!(sink, "{ty}");
            }
            ImportType::Table { limits } | ImportType::Memory { limits, .. } => {
                let _ = write!(sink, "{:?}", limits);
            }
        }
    }
    for e in info.defined_symbols() {
        assert!(matches!(
            e.class,
            ExportClass::Function | ExportClass::Data | ExportClass::Tls | ExportClass::Tag
        ));
    }
    for (n, e) in info.exports.iter().enumerate() {
        let _ = (e.class.label(), e.index, e.value);
        names(e.flags, &mut sink);
        if let Some(sig) = &e.signature {
            let _ = write!(sink, "{sig}");
        }
        // Lookups are linear: a bounded number, so the harness itself stays linear.
        // Exports may repeat names in an unvalidated module: lookup finds the first.
        if n < LOOKUPS {
            let found = info.export(&e.name).expect("export by its own name");
            assert_eq!(found.name, e.name);
        }
    }

    let _ = (info.needed(), info.runtime_path());
    if let Some(d) = &info.dylink {
        let _ = (
            d.format.section_name(),
            d.mem_info.memory_align(),
            d.mem_info.table_align(),
        );
        let unique = d.needed_unique();
        assert!(unique.len() <= d.needed.len());
        for (n, e) in d.export_info.iter().enumerate() {
            names(e.flags, &mut sink);
            if n < LOOKUPS {
                let _ = d.export_flags(&e.name);
            }
        }
        for (n, i) in d.import_info.iter().enumerate() {
            names(i.flags, &mut sink);
            if n < LOOKUPS {
                let _ = d.import_flags(&i.module, &i.field);
            }
        }
        let _ = (&d.runtime_path, &d.unknown_subsections);
    }

    let json = serde_json::to_string(info).expect("the model serialises");
    assert!(json.starts_with('{'));
    let _ = write!(sink, "{info:?}");
    std::hint::black_box(sink);
}

fn names(flags: SymbolFlags, sink: &mut String) {
    let n = flags.names();
    // One name per known bit, plus one hex entry for all unknown bits together.
    assert!(n.len() <= 10);
    assert_eq!(n.is_empty(), flags.0 == 0);
    let _ = (
        flags.is_weak(),
        flags.is_local(),
        flags.is_hidden(),
        flags.is_undefined(),
    );
    let _ = (
        flags.is_exported(),
        flags.is_explicit_name(),
        flags.is_no_strip(),
    );
    let _ = (flags.is_tls(), flags.is_absolute());
    let _ = write!(sink, "{n:?}");
}
