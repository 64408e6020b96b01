//! The `dylink.0` custom section (and the older `dylink` section) as an owned model.
//!
//! Format: WebAssembly tool-conventions, DynamicLinking.md. `dylink.0` is a sequence of
//! subsections `(id: u8, size: varuint32, payload)`; `dylink` (the format before
//! LLVM 13) is a fixed record of memory/table needs followed by the needed list.

use serde::Serialize;
use wasmparser::{BinaryReader, Dylink0SectionReader, Dylink0Subsection};

use crate::error::ParseError;

/// Which section carried the dynamic-linking metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DylinkFormat {
    /// The current `dylink.0` section with subsections.
    #[serde(rename = "dylink.0")]
    Dylink0,
    /// The legacy `dylink` section (LLVM 12 and earlier).
    #[serde(rename = "dylink")]
    Legacy,
}

impl DylinkFormat {
    /// The section's name: `dylink.0` or `dylink`.
    pub fn section_name(self) -> &'static str {
        match self {
            DylinkFormat::Dylink0 => "dylink.0",
            DylinkFormat::Legacy => "dylink",
        }
    }
}

/// WASM_DYLINK_MEM_INFO: what the loader must reserve for the module.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MemInfo {
    /// Bytes of linear memory to reserve; the region starts at `__memory_base`.
    pub memory_size: u32,
    /// Alignment of that region as a power of two (`6` means 64 bytes).
    pub memory_align_log2: u32,
    /// Table slots to reserve; the region starts at `__table_base`.
    pub table_size: u32,
    /// Alignment of the table region as a power of two, in slots.
    pub table_align_log2: u32,
}

/// The largest memory alignment a MEM_INFO may ask for, as a power of two: 2^16 bytes, one
/// wasm page. Toolchains ask for the largest alignment of the library's data (wasi-sdk
/// libraries: 2^6 at most); a larger one only makes the loader grow memory to pad.
pub const MAX_MEMORY_ALIGN_LOG2: u32 = 16;

/// The largest table alignment a MEM_INFO may ask for, as a power of two: 2^16 slots.
/// wasm-ld always writes 0. Padding to an alignment costs table slots, so an unbounded one let
/// a 500-byte library make the loader grow the table by up to 2^31 slots (gigabytes).
pub const MAX_TABLE_ALIGN_LOG2: u32 = 16;

/// The most table slots a MEM_INFO may reserve: 10,000,000, the limit wasmparser puts on a
/// table's declared size (wasi-sdk's libpython reserves 4,955).
pub const MAX_TABLE_SIZE: u32 = 10_000_000;

impl MemInfo {
    /// The memory alignment in bytes. A parsed module never exceeds
    /// 2^[`MAX_MEMORY_ALIGN_LOG2`]; a `MemInfo` built by hand is saturated there.
    pub fn memory_align(&self) -> u64 {
        1u64 << self.memory_align_log2.min(MAX_MEMORY_ALIGN_LOG2)
    }

    /// The table alignment in slots. A parsed module never exceeds 2^[`MAX_TABLE_ALIGN_LOG2`];
    /// a `MemInfo` built by hand is saturated there.
    pub fn table_align(&self) -> u64 {
        1u64 << self.table_align_log2.min(MAX_TABLE_ALIGN_LOG2)
    }

    /// Checks the bounds above. `offsets` are the file offsets of the four fields, in order
    /// (memorysize, memoryalignment, tablesize, tablealignment); the error names the field.
    fn check(&self, context: &str, offsets: [usize; 4]) -> Result<(), ParseError> {
        let over = |at: usize, message: String| Err(ParseError::new(context, at, message));
        if self.memory_align_log2 > MAX_MEMORY_ALIGN_LOG2 {
            return over(
                offsets[1],
                format!(
                    "memoryalignment {} (2^{} bytes) is above the limit of {MAX_MEMORY_ALIGN_LOG2} \
                     (2^{MAX_MEMORY_ALIGN_LOG2} bytes, one wasm page)",
                    self.memory_align_log2, self.memory_align_log2
                ),
            );
        }
        if self.table_size > MAX_TABLE_SIZE {
            return over(
                offsets[2],
                format!(
                    "tablesize {} slots is above the limit of {MAX_TABLE_SIZE}",
                    self.table_size
                ),
            );
        }
        if self.table_align_log2 > MAX_TABLE_ALIGN_LOG2 {
            return over(
                offsets[3],
                format!(
                    "tablealignment {} (2^{} slots) is above the limit of {MAX_TABLE_ALIGN_LOG2} \
                     (2^{MAX_TABLE_ALIGN_LOG2} slots)",
                    self.table_align_log2, self.table_align_log2
                ),
            );
        }
        Ok(())
    }
}

/// Reads the four varuint32 fields of a MEM_INFO record with their file offsets.
fn read_mem_info(r: &mut BinaryReader<'_>) -> wasmparser::Result<(MemInfo, [usize; 4])> {
    let mut offsets = [0; 4];
    let mut fields = [0; 4];
    for (field, at) in fields.iter_mut().zip(&mut offsets) {
        *at = r.original_position();
        *field = r.read_var_u32()?;
    }
    let [memory_size, memory_align_log2, table_size, table_align_log2] = fields;
    Ok((
        MemInfo {
            memory_size,
            memory_align_log2,
            table_size,
            table_align_log2,
        },
        offsets,
    ))
}

/// Symbol flags of EXPORT_INFO / IMPORT_INFO entries (the `WASM_SYM_*` values of the linking
/// convention).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct SymbolFlags(pub u32);

impl SymbolFlags {
    /// `WASM_SYM_BINDING_WEAK`
    pub const WEAK: u32 = 0x1;
    /// `WASM_SYM_BINDING_LOCAL`
    pub const LOCAL: u32 = 0x2;
    /// `WASM_SYM_VISIBILITY_HIDDEN`
    pub const HIDDEN: u32 = 0x4;
    /// `WASM_SYM_UNDEFINED`
    pub const UNDEFINED: u32 = 0x10;
    /// `WASM_SYM_EXPORTED`
    pub const EXPORTED: u32 = 0x20;
    /// `WASM_SYM_EXPLICIT_NAME`
    pub const EXPLICIT_NAME: u32 = 0x40;
    /// `WASM_SYM_NO_STRIP`
    pub const NO_STRIP: u32 = 0x80;
    /// `WASM_SYM_TLS`
    pub const TLS: u32 = 0x100;
    /// `WASM_SYM_ABSOLUTE`
    pub const ABSOLUTE: u32 = 0x200;

    const NAMES: [(u32, &'static str); 9] = [
        (Self::WEAK, "weak"),
        (Self::LOCAL, "local"),
        (Self::HIDDEN, "hidden"),
        (Self::UNDEFINED, "undefined"),
        (Self::EXPORTED, "exported"),
        (Self::EXPLICIT_NAME, "explicit-name"),
        (Self::NO_STRIP, "no-strip"),
        (Self::TLS, "tls"),
        (Self::ABSOLUTE, "absolute"),
    ];

    fn has(self, bit: u32) -> bool {
        self.0 & bit != 0
    }
    /// Weak binding: an undefined weak symbol may stay unresolved.
    pub fn is_weak(self) -> bool {
        self.has(Self::WEAK)
    }
    /// Local binding: not visible to other modules.
    pub fn is_local(self) -> bool {
        self.has(Self::LOCAL)
    }
    /// Hidden visibility.
    pub fn is_hidden(self) -> bool {
        self.has(Self::HIDDEN)
    }
    /// The symbol is undefined in this module.
    pub fn is_undefined(self) -> bool {
        self.has(Self::UNDEFINED)
    }
    /// Explicitly exported.
    pub fn is_exported(self) -> bool {
        self.has(Self::EXPORTED)
    }
    /// The import/export name differs from the symbol name.
    pub fn is_explicit_name(self) -> bool {
        self.has(Self::EXPLICIT_NAME)
    }
    /// Kept by the linker even if unreferenced.
    pub fn is_no_strip(self) -> bool {
        self.has(Self::NO_STRIP)
    }
    /// A thread-local symbol: its address is relative to `__tls_base`.
    pub fn is_tls(self) -> bool {
        self.has(Self::TLS)
    }
    /// An absolute address, not relative to `__memory_base`.
    pub fn is_absolute(self) -> bool {
        self.has(Self::ABSOLUTE)
    }

    /// The names of the set flags, in bit order; unknown bits appear as `0x...`.
    pub fn names(self) -> Vec<String> {
        let mut out: Vec<String> = Self::NAMES
            .iter()
            .filter(|(bit, _)| self.has(*bit))
            .map(|(_, n)| (*n).to_string())
            .collect();
        let known = Self::NAMES.iter().fold(0, |acc, (b, _)| acc | b);
        let unknown = self.0 & !known;
        if unknown != 0 {
            out.push(format!("{unknown:#x}"));
        }
        out
    }
}

impl Serialize for SymbolFlags {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.names().serialize(s)
    }
}

/// One EXPORT_INFO entry: flags for a symbol the module exports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportInfo {
    /// The export's name.
    pub name: String,
    /// Its flags (e.g. TLS).
    pub flags: SymbolFlags,
}

/// One IMPORT_INFO entry: flags for a symbol the module imports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportInfo {
    /// The import's module name (usually `env`).
    pub module: String,
    /// The import's field name.
    pub field: String,
    /// Its flags (e.g. weak).
    pub flags: SymbolFlags,
}

/// A subsection this model does not know, kept by id and position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnknownSubsection {
    /// Subsection id.
    pub id: u8,
    /// Offset of its payload in the file.
    pub offset: usize,
    /// Payload length in bytes.
    pub len: usize,
}

/// Everything the dynamic-linking section of a module says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DylinkInfo {
    /// `dylink.0` or the legacy `dylink`.
    pub format: DylinkFormat,
    /// Memory and table needs (zero if the section has no MEM_INFO).
    pub mem_info: MemInfo,
    /// NEEDED: libraries to load first, in order, duplicates kept as written.
    pub needed: Vec<String>,
    /// EXPORT_INFO entries.
    pub export_info: Vec<ExportInfo>,
    /// IMPORT_INFO entries.
    pub import_info: Vec<ImportInfo>,
    /// RUNTIME_PATH entries (may contain `$ORIGIN`).
    pub runtime_path: Vec<String>,
    /// Subsections skipped because their id is unknown.
    pub unknown_subsections: Vec<UnknownSubsection>,
}

impl DylinkInfo {
    fn empty(format: DylinkFormat) -> Self {
        DylinkInfo {
            format,
            mem_info: MemInfo::default(),
            needed: Vec::new(),
            export_info: Vec::new(),
            import_info: Vec::new(),
            runtime_path: Vec::new(),
            unknown_subsections: Vec::new(),
        }
    }

    /// Flags recorded for export `name` in EXPORT_INFO, if any.
    pub fn export_flags(&self, name: &str) -> SymbolFlags {
        self.export_info
            .iter()
            .find(|e| e.name == name)
            .map(|e| e.flags)
            .unwrap_or_default()
    }

    /// Flags recorded for import `module.field` in IMPORT_INFO, if any.
    pub fn import_flags(&self, module: &str, field: &str) -> SymbolFlags {
        self.import_info
            .iter()
            .find(|e| e.module == module && e.field == field)
            .map(|e| e.flags)
            .unwrap_or_default()
    }

    /// Needed libraries with duplicates removed, first occurrence kept.
    pub fn needed_unique(&self) -> Vec<&str> {
        let mut seen = std::collections::HashSet::new();
        self.needed
            .iter()
            .map(String::as_str)
            .filter(|n| seen.insert(*n))
            .collect()
    }
}

const SUBSECTION_NAMES: [&str; 6] = [
    "",
    "MEM_INFO subsection",
    "NEEDED subsection",
    "EXPORT_INFO subsection",
    "IMPORT_INFO subsection",
    "RUNTIME_PATH subsection",
];

/// Parses the payload of a `dylink.0` custom section that starts at `offset` in the file.
pub fn parse_dylink0(data: &[u8], offset: usize) -> Result<DylinkInfo, ParseError> {
    let mut info = DylinkInfo::empty(DylinkFormat::Dylink0);
    let mut reader = Dylink0SectionReader::new(BinaryReader::new(data, offset));
    loop {
        // Peek the id so an error inside a subsection names it.
        let pos = reader.original_position();
        let rel = pos - offset;
        let Some(item) = reader.next() else { break };
        let id = data.get(rel).copied().unwrap_or(0);
        let context = match SUBSECTION_NAMES.get(id as usize) {
            Some(n) if id != 0 => format!("dylink.0 section, {n}"),
            _ => "dylink.0 section".to_string(),
        };
        let sub = item.map_err(|e| ParseError::from_wasmparser(context.clone(), e))?;
        match sub {
            Dylink0Subsection::MemInfo(_) => {
                // Read the fields again for their offsets: id byte, size, then the record.
                let mut r = BinaryReader::new(data.get(rel + 1..).unwrap_or_default(), pos + 1);
                let (mem_info, offsets) = r
                    .read_var_u32()
                    .and_then(|_| read_mem_info(&mut r))
                    .map_err(|e| ParseError::from_wasmparser(context.clone(), e))?;
                mem_info.check(&context, offsets)?;
                info.mem_info = mem_info;
            }
            Dylink0Subsection::Needed(names) => {
                info.needed.extend(names.into_iter().map(str::to_string))
            }
            Dylink0Subsection::ExportInfo(items) => {
                info.export_info
                    .extend(items.into_iter().map(|e| ExportInfo {
                        name: e.name.to_string(),
                        flags: SymbolFlags(e.flags.bits()),
                    }))
            }
            Dylink0Subsection::ImportInfo(items) => {
                info.import_info
                    .extend(items.into_iter().map(|e| ImportInfo {
                        module: e.module.to_string(),
                        field: e.field.to_string(),
                        flags: SymbolFlags(e.flags.bits()),
                    }))
            }
            Dylink0Subsection::RuntimePath(paths) => info
                .runtime_path
                .extend(paths.into_iter().map(str::to_string)),
            Dylink0Subsection::Unknown { ty, range, .. } => {
                info.unknown_subsections.push(UnknownSubsection {
                    id: ty,
                    offset: range.start,
                    len: range.len(),
                })
            }
        }
    }
    Ok(info)
}

/// Parses the payload of a legacy `dylink` custom section that starts at `offset` in the file.
///
/// Layout: memorysize, memoryalignment, tablesize, tablealignment (varuint32 each), then a
/// count of needed libraries and their names.
pub fn parse_legacy_dylink(data: &[u8], offset: usize) -> Result<DylinkInfo, ParseError> {
    let ctx = "dylink section";
    let err = |e| ParseError::from_wasmparser(ctx, e);
    let mut r = BinaryReader::new(data, offset);
    let mut info = DylinkInfo::empty(DylinkFormat::Legacy);
    let (mem_info, offsets) = read_mem_info(&mut r).map_err(err)?;
    mem_info.check(ctx, offsets)?;
    info.mem_info = mem_info;
    let count = r.read_var_u32().map_err(err)?;
    for _ in 0..count {
        // Each name takes at least one byte, so a bogus count ends at the end of the data.
        info.needed
            .push(r.read_unlimited_string().map_err(err)?.to_string());
    }
    if !r.eof() {
        return Err(ParseError::new(
            ctx,
            r.original_position(),
            format!("{} unexpected trailing bytes", r.bytes_remaining()),
        ));
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leb(mut v: u32, out: &mut Vec<u8>) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                break;
            }
            out.push(b | 0x80);
        }
    }
    fn string(s: &str, out: &mut Vec<u8>) {
        leb(s.len() as u32, out);
        out.extend_from_slice(s.as_bytes());
    }
    fn sub(id: u8, body: Vec<u8>, out: &mut Vec<u8>) {
        out.push(id);
        leb(body.len() as u32, out);
        out.extend(body);
    }

    #[test]
    fn every_subsection() {
        let mut d = Vec::new();
        let mut b = Vec::new();
        for v in [300, 4, 7, 0] {
            leb(v, &mut b);
        }
        sub(1, b, &mut d);
        let mut b = Vec::new();
        leb(2, &mut b);
        string("libc.so", &mut b);
        string("libm.so", &mut b);
        sub(2, b, &mut d);
        let mut b = Vec::new();
        leb(1, &mut b);
        string("tls_var", &mut b);
        leb(SymbolFlags::TLS, &mut b);
        sub(3, b, &mut d);
        let mut b = Vec::new();
        leb(1, &mut b);
        string("env", &mut b);
        string("maybe", &mut b);
        leb(SymbolFlags::WEAK | SymbolFlags::UNDEFINED, &mut b);
        sub(4, b, &mut d);
        sub(9, vec![1, 2, 3], &mut d);
        let mut b = Vec::new();
        leb(1, &mut b);
        string("$ORIGIN/lib", &mut b);
        sub(5, b, &mut d);

        let info = parse_dylink0(&d, 100).unwrap();
        assert_eq!(info.mem_info.memory_size, 300);
        assert_eq!(info.mem_info.memory_align(), 16);
        assert_eq!(info.mem_info.table_size, 7);
        assert_eq!(info.needed, ["libc.so", "libm.so"]);
        assert!(info.export_flags("tls_var").is_tls());
        let f = info.import_flags("env", "maybe");
        assert!(f.is_weak() && f.is_undefined() && !f.is_tls());
        assert_eq!(f.names(), ["weak", "undefined"]);
        assert_eq!(info.runtime_path, ["$ORIGIN/lib"]);
        assert_eq!(info.unknown_subsections.len(), 1);
        assert_eq!(info.unknown_subsections[0].id, 9);
        assert_eq!(info.unknown_subsections[0].len, 3);
    }

    #[test]
    fn truncated_subsection_names_it() {
        let mut d = Vec::new();
        let mut b = Vec::new();
        leb(5, &mut b); // five names promised, none present
        sub(2, b, &mut d);
        let e = parse_dylink0(&d, 0x40).unwrap_err();
        assert!(e.context.contains("NEEDED"), "{e}");
        assert!(e.to_string().contains("(at offset 0x"), "{e}");
    }

    #[test]
    fn huge_counts_do_not_allocate() {
        let mut d = Vec::new();
        let mut b = Vec::new();
        leb(u32::MAX, &mut b);
        sub(3, b, &mut d);
        assert!(parse_dylink0(&d, 0).is_err());
        let mut l = Vec::new();
        for v in [0, 0, 0, 0, u32::MAX] {
            leb(v, &mut l);
        }
        assert!(parse_legacy_dylink(&l, 0).is_err());
    }

    fn mem_info(fields: [u32; 4]) -> Vec<u8> {
        let mut b = Vec::new();
        for v in fields {
            leb(v, &mut b);
        }
        let mut d = Vec::new();
        sub(1, b, &mut d);
        d
    }

    #[test]
    fn mem_info_bounds_name_the_field_and_its_offset() {
        // id at 0x100, size at 0x101, memorysize 300 (2 bytes) at 0x102, memoryalignment at
        // 0x104, tablesize at 0x105, tablealignment at 0x106.
        let e = parse_dylink0(&mem_info([300, 2, 1, 28]), 0x100).unwrap_err();
        assert_eq!(
            e.to_string(),
            "dylink.0 section, MEM_INFO subsection: tablealignment 28 (2^28 slots) is above \
             the limit of 16 (2^16 slots) (at offset 0x106)"
        );
        for p2align in [17, 30, 31, 32, u32::MAX] {
            assert!(parse_dylink0(&mem_info([0, 0, 0, p2align]), 0).is_err());
            let e = parse_dylink0(&mem_info([0, p2align, 0, 0]), 0).unwrap_err();
            assert!(e.message.starts_with("memoryalignment "), "{e}");
            assert_eq!(e.offset, 3, "{e}");
        }
        let e = parse_dylink0(&mem_info([0, 0, MAX_TABLE_SIZE + 1, 0]), 0).unwrap_err();
        assert!(e.message.starts_with("tablesize 10000001 slots"), "{e}");
        // The bounds themselves are accepted.
        let ok = parse_dylink0(&mem_info([u32::MAX, 16, MAX_TABLE_SIZE, 16]), 0).unwrap();
        assert_eq!(ok.mem_info.table_align(), 1 << 16);
        assert_eq!(ok.mem_info.memory_align(), 1 << 16);
        // The legacy section has the same bounds, at the field's offset.
        let mut l = Vec::new();
        for v in [0, 0, 0, 40, 0] {
            leb(v, &mut l);
        }
        let e = parse_legacy_dylink(&l, 0x20).unwrap_err();
        assert_eq!(e.context, "dylink section");
        assert_eq!(e.offset, 0x23);
        // A MemInfo built by hand saturates at the bound.
        let hand = MemInfo {
            table_align_log2: 40,
            memory_align_log2: 40,
            ..MemInfo::default()
        };
        assert_eq!(hand.table_align(), 1 << MAX_TABLE_ALIGN_LOG2);
        assert_eq!(hand.memory_align(), 1 << MAX_MEMORY_ALIGN_LOG2);
    }

    #[test]
    fn legacy_section() {
        let mut l = Vec::new();
        for v in [1024, 3, 2, 0, 1] {
            leb(v, &mut l);
        }
        string("libfoo.so", &mut l);
        let info = parse_legacy_dylink(&l, 0).unwrap();
        assert_eq!(info.format, DylinkFormat::Legacy);
        assert_eq!(info.mem_info.memory_size, 1024);
        assert_eq!(info.mem_info.memory_align(), 8);
        assert_eq!(info.needed, ["libfoo.so"]);
        l.push(0);
        assert!(
            parse_legacy_dylink(&l, 0)
                .unwrap_err()
                .message
                .contains("trailing")
        );
    }
}
