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

use wasmlink_dylink::{AddressWidth, ImportClass, ModuleInfo};

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
    .ok_or_else(|| "its sections are malformed".to_string())
}

fn read_leb(bytes: &[u8], pos: &mut usize) -> Option<u32> {
    let mut result: u64 = 0;
    let mut shift = 0;
    loop {
        let b = *bytes.get(*pos)?;
        *pos += 1;
        result |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return u32::try_from(result).ok();
        }
        shift += 7;
        if shift > 28 {
            return None;
        }
    }
}

fn write_leb(out: &mut Vec<u8>, mut v: u32) {
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

fn write_name(out: &mut Vec<u8>, s: &str) {
    write_leb(out, s.len() as u32);
    out.extend_from_slice(s.as_bytes());
}

/// Section ids of the type and import sections, and the memory and table sections.
const TYPE: u8 = 1;
const IMPORT: u8 = 2;
const TABLE: u8 = 4;
const MEMORY: u8 = 5;
const CUSTOM: u8 = 0;

/// The type of the one item of a memory or table section (its bytes after the count).
fn single_item(payload: &[u8]) -> Option<&[u8]> {
    let mut pos = 0;
    (read_leb(payload, &mut pos)? == 1).then(|| &payload[pos..])
}

/// Moves the definitions of the memory (`memory`) and of the table (`table`) into the import
/// section as `env.memory` and `env.__indirect_function_table`, with the same types. `None` if
/// the module's sections are malformed.
fn rewrite(bytes: &[u8], memory: bool, table: bool) -> Option<Vec<u8>> {
    let header = bytes.get(..8)?;
    let mut sections: Vec<(u8, &[u8])> = Vec::new();
    let mut pos = 8;
    while pos < bytes.len() {
        let id = bytes[pos];
        pos += 1;
        let len = read_leb(bytes, &mut pos)? as usize;
        let payload = bytes.get(pos..pos.checked_add(len)?)?;
        pos += len;
        sections.push((id, payload));
    }
    let mut entries = Vec::new();
    let mut added = 0;
    if table {
        let (_, p) = sections.iter().find(|(id, _)| *id == TABLE)?;
        write_name(&mut entries, "env");
        write_name(&mut entries, "__indirect_function_table");
        entries.push(0x01);
        entries.extend_from_slice(single_item(p)?);
        added += 1;
    }
    if memory {
        let (_, p) = sections.iter().find(|(id, _)| *id == MEMORY)?;
        write_name(&mut entries, "env");
        write_name(&mut entries, "memory");
        entries.push(0x02);
        entries.extend_from_slice(single_item(p)?);
        added += 1;
    }
    let import_section = |old: Option<&[u8]>| -> Option<Vec<u8>> {
        let (count, rest) = match old {
            Some(p) => {
                let mut at = 0;
                let n = read_leb(p, &mut at)?;
                (n, &p[at..])
            }
            None => (0, &[][..]),
        };
        let mut payload = Vec::new();
        write_leb(&mut payload, count.checked_add(added)?);
        payload.extend_from_slice(rest);
        payload.extend_from_slice(&entries);
        Some(payload)
    };
    let has_imports = sections.iter().any(|(id, _)| *id == IMPORT);
    let mut out = header.to_vec();
    let emit = |out: &mut Vec<u8>, id: u8, payload: &[u8]| {
        out.push(id);
        write_leb(out, payload.len() as u32);
        out.extend_from_slice(payload);
    };
    let mut imports_written = false;
    for &(id, payload) in &sections {
        if !has_imports && !imports_written && id != CUSTOM && id != TYPE {
            emit(&mut out, IMPORT, &import_section(None)?);
            imports_written = true;
        }
        match id {
            IMPORT => emit(&mut out, IMPORT, &import_section(Some(payload))?),
            TABLE if table => {}
            MEMORY if memory => {}
            _ => emit(&mut out, id, payload),
        }
    }
    Some(out)
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
    }
}
