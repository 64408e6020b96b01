//! Own-memory main programs: wasm-ld's default `-pie` output (without `-Wl,--import-memory`),
//! like an Emscripten `MAIN_MODULE`, defines and exports its own memory (and may define its own
//! table) instead of importing them.
//!
//! Such a main's memory and table become the process's, as in Emscripten's loader. The loader
//! turns the main's memory (and table) definition into an import of `env.memory`
//! (`env.__indirect_function_table`) of exactly the declared type, so that the process creates
//! them, with the main's limits, before anything is laid out in them: the main's data goes at its
//! `__memory_base`, the stack and heap follow it, and side modules are laid out above, growing the
//! memory and the table as they need. Nothing else in the module changes (index spaces included:
//! the one defined memory becomes the one imported memory, index 0).
//!
//! What cannot be run that way fails the load with one line that says why and which flags to
//! rebuild with ([`REBUILD`]).

use wasm_encoder::reencode::{Reencode, RoundtripReencoder};
use wasm_encoder::{EntityType, ImportSection, Module, RawSection, SectionId};
use wasmlink_dylink::{AddressWidth, ImportClass, ModuleInfo};
use wasmparser::{Parser, Payload, TableInit};

/// The flags that make wasm-ld emit a main the linker can always run.
pub const REBUILD: &str = "rebuild it with -Wl,--import-memory -Wl,--import-table";

/// Whether `info` is a dynamic main program that defines its memory or table itself.
pub(super) fn defines_own(info: &ModuleInfo) -> bool {
    info.is_dynamic() && (!info.defined_memories.is_empty() || !info.defined_tables.is_empty())
}

/// Rewrites an own-memory main so that its memory (and table) are imports of the same type.
///
/// # Errors
/// One line saying why the main cannot share its memory with side modules (without the
/// [`REBUILD`] hint, which the caller adds).
pub(super) fn import_own(bytes: &[u8], info: &ModuleInfo) -> Result<Vec<u8>, String> {
    let imports = |c: fn(&ImportClass) -> bool| info.imports.iter().filter(|i| c(&i.class)).count();
    let imported_memories = imports(|c| matches!(c, ImportClass::Memory));
    let imported_tables = imports(|c| matches!(c, ImportClass::Table));
    let memories = info.defined_memories.len() + imported_memories;
    if memories > 1 {
        return Err(format!(
            "it has {memories} memories; a process shares exactly one"
        ));
    }
    if let Some(m) = info.defined_memories.first() {
        if m.shared {
            return Err("it defines a shared memory, which side modules cannot import".into());
        }
        if info.address_width == AddressWidth::Wasm64 {
            return Err("it defines a 64-bit memory, which wasmlink does not share".into());
        }
        let has_data = info.data_segments.iter().any(|&(_, len)| len > 0);
        if has_data && imports(|c| matches!(c, ImportClass::MemoryBase)) == 0 {
            return Err("its data is at fixed addresses (it does not import __memory_base)".into());
        }
    }
    let tables = info.defined_tables.len() + imported_tables;
    if tables > 1 {
        return Err(format!(
            "it has {tables} tables; a process shares exactly one"
        ));
    }
    rewrite(
        bytes,
        !info.defined_memories.is_empty(),
        !info.defined_tables.is_empty(),
    )
}

/// Moves the definitions of the memory (`memory`) and of the table (`table`) into the import
/// section as `env.memory` and `env.__indirect_function_table`, with the same types; every other
/// section is copied as it is. `Err` names what is malformed.
fn rewrite(bytes: &[u8], memory: bool, table: bool) -> Result<Vec<u8>, String> {
    let malformed = |e: wasmparser::BinaryReaderError| format!("it is malformed: {e}");
    let mut rc = RoundtripReencoder;
    // One pass over the module: the sections to write, and the defined table and memory (which
    // come after the imports), imported in that order after the existing imports.
    let mut sections = Vec::new();
    let mut imports = None;
    let mut added = Vec::new();
    for payload in Parser::new(0).parse_all(bytes) {
        let payload = payload.map_err(malformed)?;
        let Some((id, range)) = payload.as_section() else {
            continue;
        };
        match payload {
            Payload::ImportSection(r) => imports = Some((sections.len(), r)),
            Payload::TableSection(r) if table => {
                let t = r.into_iter().next().ok_or("its table section is empty")?;
                let t = t.map_err(malformed)?;
                if !matches!(t.init, TableInit::RefNull) {
                    return Err(
                        "its table has an initializer expression, which an import cannot carry"
                            .into(),
                    );
                }
                let ty = rc.table_type(t.ty).map_err(|e| format!("its table: {e}"))?;
                added.push(("__indirect_function_table", EntityType::Table(ty)));
                continue;
            }
            Payload::MemorySection(r) if memory => {
                let m = r.into_iter().next().ok_or("its memory section is empty")?;
                let ty = rc
                    .memory_type(m.map_err(malformed)?)
                    .map_err(|e| format!("its memory: {e}"))?;
                added.push(("memory", EntityType::Memory(ty)));
                continue;
            }
            _ => {}
        }
        sections.push((id, range));
    }
    // Without an import section, the new one goes before the first section after the types.
    let (at, old) = match imports {
        Some((at, r)) => (at, Some(r)),
        None => {
            let skip = [SectionId::Custom as u8, SectionId::Type as u8];
            let at = sections.iter().position(|(id, _)| !skip.contains(id));
            (at.unwrap_or(sections.len()), None)
        }
    };
    let mut import_section = ImportSection::new();
    if let Some(r) = old {
        rc.parse_import_section(&mut import_section, r)
            .map_err(|e| format!("its import section: {e}"))?;
        sections.remove(at);
    }
    for (name, ty) in &added {
        import_section.import("env", name, *ty);
    }
    let raw = |(id, range): (u8, std::ops::Range<usize>)| RawSection {
        id,
        data: &bytes[range],
    };
    let mut out = Module::new();
    let mut sections = sections.into_iter();
    for section in sections.by_ref().take(at) {
        out.section(&raw(section));
    }
    out.section(&import_section);
    for section in sections {
        out.section(&raw(section));
    }
    Ok(out.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(wat: &str) -> (Vec<u8>, ModuleInfo) {
        let bytes = wat::parse_str(wat).unwrap();
        let info = ModuleInfo::parse(&bytes).unwrap();
        (bytes, info)
    }

    #[test]
    fn memory_and_table_become_imports_of_the_same_type() {
        let (bytes, i) = info(
            r#"(module
                 (import "env" "f" (func $f))
                 (import "env" "__memory_base" (global i32))
                 (table 3 7 funcref)
                 (memory 2 9)
                 (export "memory" (memory 0))
                 (data (global.get 0) "x"))"#,
        );
        let out = import_own(&bytes, &i).unwrap();
        let want = wat::parse_str(
            r#"(module
                 (import "env" "f" (func $f))
                 (import "env" "__memory_base" (global i32))
                 (import "env" "__indirect_function_table" (table 3 7 funcref))
                 (import "env" "memory" (memory 2 9))
                 (export "memory" (memory 0))
                 (data (global.get 0) "x"))"#,
        )
        .unwrap();
        assert_eq!(out, want);
    }

    #[test]
    fn an_import_section_is_added_where_none_was() {
        let (bytes, i) = info(r#"(module (type (func)) (memory 1) (func (type 0)))"#);
        let out = import_own(&bytes, &i).unwrap();
        let want = wat::parse_str(
            r#"(module (type (func)) (import "env" "memory" (memory 1)) (func (type 0)))"#,
        )
        .unwrap();
        assert_eq!(out, want);
    }

    #[test]
    fn truncated_or_corrupted_mains_are_errors_not_panics() {
        let (bytes, _) = info(
            r#"(module
                 (import "env" "__memory_base" (global i32))
                 (table 3 7 funcref)
                 (memory 2 9)
                 (func (export "f") (result i32) i32.const 7)
                 (data (global.get 0) "xyz"))"#,
        );
        let mut rewritten = 0;
        let mut check = |b: &[u8]| {
            // As a load does: the model first, then the rewrite of what the model accepted.
            if let Ok(i) = ModuleInfo::parse(b)
                && import_own(b, &i).is_ok()
            {
                rewritten += 1;
            }
        };
        for len in 0..bytes.len() {
            check(&bytes[..len]);
        }
        for at in 8..bytes.len() {
            for flip in [0x01, 0x80, 0xff] {
                let mut b = bytes.clone();
                b[at] ^= flip;
                check(&b);
            }
        }
        // Some corruptions (in names, constants) still leave a module to rewrite.
        assert!(rewritten > 0);
    }

    #[test]
    fn what_cannot_be_shared_is_refused_with_the_reason() {
        let (bytes, i) = info(r#"(module (memory 1 1 shared))"#);
        assert!(
            import_own(&bytes, &i)
                .unwrap_err()
                .contains("shared memory")
        );
        let (bytes, i) = info(r#"(module (memory 1) (data (i32.const 1024) "x"))"#);
        assert!(
            import_own(&bytes, &i)
                .unwrap_err()
                .contains("fixed addresses")
        );
        let (bytes, i) = info(r#"(module (import "env" "memory" (memory 1)) (memory 1))"#);
        assert!(import_own(&bytes, &i).unwrap_err().contains("2 memories"));
        let (bytes, i) = info(r#"(module (func $f) (table 1 funcref (ref.func $f)))"#);
        let err = import_own(&bytes, &i).unwrap_err();
        assert!(err.contains("table has an initializer expression"), "{err}");
    }
}
