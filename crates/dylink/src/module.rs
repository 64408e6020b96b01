//! The module-level model: kind, imports, exports, and the parse that builds them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::Serialize;
use wasmparser::{
    CompositeInnerType, Encoding, ExternalKind, KnownCustom, Name, Operator, Parser, Payload,
    TypeRef,
};

use crate::classify::{EntityKind, ExportClass, INIT_EXPORTS, ImportClass, classify_import};
use crate::error::ParseError;
use crate::section::{DylinkInfo, SymbolFlags, parse_dylink0, parse_legacy_dylink};

/// What role a module plays in a linked process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModuleKind {
    /// A `dylink.0` module without an entry point: a shared library (`-shared`).
    SharedLibrary,
    /// A `dylink.0` module with an entry point (`_start`, `main` or `__main_argc_argv`): a
    /// position-independent main program (`-pie`). (`__main_void` is not one: wasi-libc's
    /// libc.so exports it as the helper that calls the program's `main`.)
    PieProgram,
    /// No `dylink.0`, but it defines and exports its memory, its function table and
    /// `__stack_pointer`: a static main program whose memory becomes the process memory.
    StaticProgram,
    /// Any other module: linked by module name, with the host as the linker.
    Plain,
}

impl ModuleKind {
    /// Human-readable description.
    pub fn describe(self) -> &'static str {
        match self {
            ModuleKind::SharedLibrary => "shared library",
            ModuleKind::PieProgram => "position-independent main program",
            ModuleKind::StaticProgram => "static main program",
            ModuleKind::Plain => "plain module",
        }
    }
}

/// Pointer width of the module's linear memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum AddressWidth {
    /// 32-bit memory (the default).
    Wasm32,
    /// 64-bit memory (memory64).
    Wasm64,
}

impl AddressWidth {
    /// `wasm32` or `wasm64`.
    pub fn as_str(self) -> &'static str {
        match self {
            AddressWidth::Wasm32 => "wasm32",
            AddressWidth::Wasm64 => "wasm64",
        }
    }
}

/// A wasm value type, simplified to what a linker compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ValType {
    /// i32
    I32,
    /// i64
    I64,
    /// f32
    F32,
    /// f64
    F64,
    /// v128
    V128,
    /// funcref
    Funcref,
    /// externref
    Externref,
    /// any other reference type
    Ref,
}

impl From<wasmparser::ValType> for ValType {
    fn from(v: wasmparser::ValType) -> Self {
        use wasmparser::ValType as V;
        match v {
            V::I32 => ValType::I32,
            V::I64 => ValType::I64,
            V::F32 => ValType::F32,
            V::F64 => ValType::F64,
            V::V128 => ValType::V128,
            V::Ref(r) if r == wasmparser::RefType::FUNCREF => ValType::Funcref,
            V::Ref(r) if r == wasmparser::RefType::EXTERNREF => ValType::Externref,
            V::Ref(_) => ValType::Ref,
        }
    }
}

impl std::fmt::Display for ValType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            ValType::I32 => "i32",
            ValType::I64 => "i64",
            ValType::F32 => "f32",
            ValType::F64 => "f64",
            ValType::V128 => "v128",
            ValType::Funcref => "funcref",
            ValType::Externref => "externref",
            ValType::Ref => "ref",
        };
        f.write_str(s)
    }
}

/// A function signature.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize)]
pub struct Signature {
    /// Parameter types.
    pub params: Vec<ValType>,
    /// Result types.
    pub results: Vec<ValType>,
}

impl std::fmt::Display for Signature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let list = |v: &[ValType]| {
            v.iter()
                .map(|t| t.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        write!(f, "({}) -> ({})", list(&self.params), list(&self.results))
    }
}

/// Minimum and optional maximum of a memory (in 64 KiB pages) or table (in elements).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// Initial size.
    pub initial: u64,
    /// Maximum size, if bounded.
    pub maximum: Option<u64>,
    /// Shared between threads (memories only).
    pub shared: bool,
}

/// The type of an import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ImportType {
    /// A function with this signature (`None` if its type index is not a function type).
    Func {
        /// The signature (shared by every item of the same type).
        signature: Option<Arc<Signature>>,
    },
    /// A table.
    Table {
        /// Its limits.
        limits: Limits,
    },
    /// A memory.
    Memory {
        /// Its limits, in pages.
        limits: Limits,
        /// memory64.
        memory64: bool,
    },
    /// A global.
    Global {
        /// Value type.
        ty: ValType,
        /// Mutable.
        mutable: bool,
    },
    /// An exception tag.
    Tag {
        /// The tag's signature.
        signature: Option<Arc<Signature>>,
    },
}

/// One import, classified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Import {
    /// Module name (`env`, `GOT.mem`, `wasi_snapshot_preview1`, ...).
    pub module: String,
    /// Field name.
    pub field: String,
    /// Entity kind.
    pub kind: EntityKind,
    /// What it asks the linker for.
    #[serde(flatten)]
    pub class: ImportClass,
    /// Flags from the `dylink.0` IMPORT_INFO (e.g. weak), if any.
    pub flags: SymbolFlags,
    /// The full type.
    #[serde(rename = "type")]
    pub ty: ImportType,
}

impl Import {
    /// Weak: may stay unresolved (0 for data, a trap for functions).
    pub fn is_weak(&self) -> bool {
        self.flags.is_weak()
    }
}

/// One export, classified.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Export {
    /// Export name.
    pub name: String,
    /// Entity kind.
    pub kind: EntityKind,
    /// What it offers.
    pub class: ExportClass,
    /// Index in its index space.
    pub index: u32,
    /// Flags from the `dylink.0` EXPORT_INFO, if any.
    pub flags: SymbolFlags,
    /// For data and TLS symbols: the constant address (relative to `__memory_base` or
    /// `__tls_base` in a position-independent module); `None` if not a constant.
    pub value: Option<i64>,
    /// For functions: the signature (shared by every item of the same type).
    pub signature: Option<Arc<Signature>>,
}

/// Everything a linker needs from one module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModuleInfo {
    /// What role it plays.
    pub kind: ModuleKind,
    /// wasm32 or wasm64.
    pub address_width: AddressWidth,
    /// The dynamic-linking section, if present.
    pub dylink: Option<DylinkInfo>,
    /// Module name from the `name` section, if present.
    pub name: Option<String>,
    /// Imports in declaration order.
    pub imports: Vec<Import>,
    /// Exports in declaration order.
    pub exports: Vec<Export>,
    /// Index of the start function, if any.
    pub start: Option<u32>,
    /// Functions defined (not imported).
    pub defined_functions: u32,
    /// Memories defined (not imported), with their limits.
    pub defined_memories: Vec<Limits>,
    /// Tables defined (not imported), with their limits.
    pub defined_tables: Vec<Limits>,
    /// Globals defined (not imported).
    pub defined_globals: u32,
    /// Functions the module's active element segments place in table 0: `(offset, function
    /// index)`, the offset relative to `__table_base` in a position-independent module. A
    /// linker uses it to give a function the same table slot everywhere.
    #[serde(skip)]
    pub table_functions: Vec<(u32, u32)>,
    /// Active data segments of memory 0: `(offset, length)`, the offset relative to
    /// `__memory_base` in a position-independent module (`None` if not a constant). A linker
    /// checks them against the MEM_INFO size it reserves.
    #[serde(skip)]
    pub data_segments: Vec<(Option<i64>, u32)>,
    /// Size of the module in bytes.
    pub size: usize,
}

/// What the parser learnt about the global index space, for export classification.
#[derive(Clone, Copy)]
struct GlobalDesc {
    ty: ValType,
    mutable: bool,
    value: Option<i64>,
}

#[derive(Default)]
struct Builder {
    types: Vec<Option<Arc<Signature>>>,
    func_types: Vec<u32>,
    globals: Vec<GlobalDesc>,
    imported_funcs: u32,
    raw_exports: Vec<(String, ExternalKind, u32)>,
    imports: Vec<(String, String, TypeRef)>,
    memories: Vec<(Limits, bool)>,
    tables: Vec<Limits>,
    memory64: bool,
    start: Option<u32>,
    dylink: Option<DylinkInfo>,
    name: Option<String>,
    table_functions: Vec<(u32, u32)>,
    data_segments: Vec<(Option<i64>, u32)>,
}

fn limits_mem(m: &wasmparser::MemoryType) -> Limits {
    Limits {
        initial: m.initial,
        maximum: m.maximum,
        shared: m.shared,
    }
}

fn limits_table(t: &wasmparser::TableType) -> Limits {
    Limits {
        initial: t.initial,
        maximum: t.maximum,
        shared: t.shared,
    }
}

/// The constant of `i32.const N` / `i64.const N`, alone or added to a `global.get` of a base;
/// a `global.get` alone is 0 (relative to that base).
fn const_value(expr: &wasmparser::ConstExpr<'_>) -> Option<i64> {
    let mut value = None;
    let mut ops = expr.get_operators_reader();
    // A constant expression is a handful of operators; stop early on anything longer.
    for _ in 0..8 {
        match ops.read().ok()? {
            Operator::I32Const { value: v } => value = Some(i64::from(v)),
            Operator::I64Const { value: v } => value = Some(v),
            // `global.get __memory_base` (or `__table_base`) alone is offset 0 from the base.
            Operator::GlobalGet { .. } => {
                value.get_or_insert(0);
            }
            Operator::I32Add | Operator::I64Add => {}
            Operator::End => return value,
            _ => return None,
        }
    }
    None
}

impl ModuleInfo {
    /// Reads a core WebAssembly module.
    ///
    /// # Errors
    /// A [`ParseError`] naming the section and byte offset when the bytes are not a core module
    /// (empty, bad magic, a component, truncated, or a malformed section).
    pub fn parse(bytes: &[u8]) -> Result<ModuleInfo, ParseError> {
        if bytes.is_empty() {
            return Err(ParseError::new(
                "",
                0,
                "empty file, not a WebAssembly module",
            ));
        }
        if bytes.len() < 4 || &bytes[..4] != b"\0asm" {
            return Err(ParseError::new(
                "",
                0,
                "not a WebAssembly module (bad magic number)",
            ));
        }
        let mut b = Builder::default();
        let mut section = "module header";
        for payload in Parser::new(0).parse_all(bytes) {
            let payload = payload.map_err(|e| ParseError::from_wasmparser(section, e))?;
            section = b.payload(payload)?;
        }
        b.finish(bytes.len())
    }

    /// Whether the module carries a `dylink.0` or `dylink` section.
    pub fn is_dynamic(&self) -> bool {
        self.dylink.is_some()
    }

    /// Imports that name a symbol to resolve against other modules (functions, globals,
    /// tags and GOT entries), i.e. what `nm` prints as `U`.
    pub fn undefined_symbols(&self) -> impl Iterator<Item = &Import> {
        self.imports.iter().filter(|i| i.class.symbol().is_some())
    }

    /// Exports other modules can link against (functions, data, TLS, tags).
    pub fn defined_symbols(&self) -> impl Iterator<Item = &Export> {
        self.exports.iter().filter(|e| {
            matches!(
                e.class,
                ExportClass::Function | ExportClass::Data | ExportClass::Tls | ExportClass::Tag
            )
        })
    }

    /// Needed libraries (empty for modules without a dylink section).
    pub fn needed(&self) -> &[String] {
        self.dylink.as_ref().map_or(&[], |d| &d.needed)
    }

    /// Runtime path (empty for modules without a dylink section).
    pub fn runtime_path(&self) -> &[String] {
        self.dylink.as_ref().map_or(&[], |d| &d.runtime_path)
    }

    /// The export called `name`, if any.
    pub fn export(&self, name: &str) -> Option<&Export> {
        self.exports.iter().find(|e| e.name == name)
    }

    /// Counts of imports and exports per class, for `inspect`.
    pub fn summary(&self) -> Summary {
        let mut imports: BTreeMap<&'static str, usize> = BTreeMap::new();
        for i in &self.imports {
            *imports.entry(i.class.label()).or_default() += 1;
        }
        let mut exports: BTreeMap<&'static str, usize> = BTreeMap::new();
        for e in &self.exports {
            *exports.entry(e.class.label()).or_default() += 1;
        }
        Summary {
            imports,
            exports,
            weak_imports: self.imports.iter().filter(|i| i.is_weak()).count(),
            tls_symbols: self
                .exports
                .iter()
                .filter(|e| e.class == ExportClass::Tls)
                .count(),
            uses_tls: self.exports.iter().any(|e| e.class == ExportClass::Tls)
                || self.imports.iter().any(|i| i.class == ImportClass::TlsBase)
                || self.export("__wasm_init_tls").is_some(),
        }
    }
}

/// Counts per class, as `inspect` reports them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Imports per [`ImportClass::label`].
    pub imports: BTreeMap<&'static str, usize>,
    /// Exports per [`ExportClass::label`].
    pub exports: BTreeMap<&'static str, usize>,
    /// Imports marked weak.
    pub weak_imports: usize,
    /// Exported TLS symbols.
    pub tls_symbols: usize,
    /// Whether the module uses thread-local storage at all.
    pub uses_tls: bool,
}

impl Builder {
    fn payload(&mut self, payload: Payload<'_>) -> Result<&'static str, ParseError> {
        let wp = ParseError::from_wasmparser;
        match payload {
            Payload::Version {
                encoding,
                num,
                range,
            } => {
                if encoding == Encoding::Component {
                    return Err(ParseError::new(
                        "module header",
                        range.start,
                        "this is a WebAssembly component, not a core module",
                    ));
                }
                if num != 1 {
                    return Err(ParseError::new(
                        "module header",
                        range.start,
                        format!("unsupported WebAssembly version {num}"),
                    ));
                }
                return Ok("section header");
            }
            Payload::TypeSection(r) => {
                for group in r {
                    let group = group.map_err(|e| wp("type section", e))?;
                    for sub in group.types() {
                        self.types.push(match &sub.composite_type.inner {
                            CompositeInnerType::Func(f) => Some(Arc::new(Signature {
                                params: f.params().iter().map(|v| (*v).into()).collect(),
                                results: f.results().iter().map(|v| (*v).into()).collect(),
                            })),
                            _ => None,
                        });
                    }
                }
            }
            Payload::ImportSection(r) => {
                for import in r.into_imports() {
                    let i = import.map_err(|e| wp("import section", e))?;
                    match i.ty {
                        TypeRef::Func(_) | TypeRef::FuncExact(_) => self.imported_funcs += 1,
                        TypeRef::Global(g) => self.globals.push(GlobalDesc {
                            ty: g.content_type.into(),
                            mutable: g.mutable,
                            value: None,
                        }),
                        TypeRef::Memory(m) => self.memory64 |= m.memory64,
                        _ => {}
                    }
                    self.imports
                        .push((i.module.to_string(), i.name.to_string(), i.ty));
                }
            }
            Payload::FunctionSection(r) => {
                for f in r {
                    self.func_types
                        .push(f.map_err(|e| wp("function section", e))?);
                }
            }
            Payload::TableSection(r) => {
                for t in r {
                    let t = t.map_err(|e| wp("table section", e))?;
                    self.tables.push(limits_table(&t.ty));
                }
            }
            Payload::MemorySection(r) => {
                for m in r {
                    let m = m.map_err(|e| wp("memory section", e))?;
                    self.memory64 |= m.memory64;
                    self.memories.push((limits_mem(&m), m.memory64));
                }
            }
            Payload::GlobalSection(r) => {
                for g in r {
                    let g = g.map_err(|e| wp("global section", e))?;
                    self.globals.push(GlobalDesc {
                        ty: g.ty.content_type.into(),
                        mutable: g.ty.mutable,
                        value: const_value(&g.init_expr),
                    });
                }
            }
            Payload::ExportSection(r) => {
                for e in r {
                    let e = e.map_err(|e| wp("export section", e))?;
                    self.raw_exports.push((e.name.to_string(), e.kind, e.index));
                }
            }
            Payload::StartSection { func, .. } => self.start = Some(func),
            Payload::DataSection(r) => {
                for d in r {
                    let d = d.map_err(|e| wp("data section", e))?;
                    if let wasmparser::DataKind::Active {
                        memory_index: 0,
                        offset_expr,
                    } = d.kind
                    {
                        self.data_segments
                            .push((const_value(&offset_expr), d.data.len() as u32));
                    }
                }
            }
            Payload::ElementSection(r) => {
                for e in r {
                    let e = e.map_err(|e| wp("element section", e))?;
                    let wasmparser::ElementKind::Active {
                        table_index,
                        offset_expr,
                    } = e.kind
                    else {
                        continue;
                    };
                    let (Some(0) | None) = table_index else {
                        continue;
                    };
                    let wasmparser::ElementItems::Functions(funcs) = e.items else {
                        continue;
                    };
                    let Some(base) = const_value(&offset_expr) else {
                        continue;
                    };
                    for (i, f) in funcs.into_iter().enumerate() {
                        let f = f.map_err(|e| wp("element section", e))?;
                        let slot = u32::try_from(base.wrapping_add(i as i64)).unwrap_or(u32::MAX);
                        self.table_functions.push((slot, f));
                    }
                }
            }
            Payload::CustomSection(c) => {
                let offset = c.data_offset();
                match c.as_known() {
                    KnownCustom::Dylink0(_) => {
                        if self.dylink.is_some() {
                            return Err(ParseError::new(
                                "dylink.0 section",
                                offset,
                                "more than one dylink section",
                            ));
                        }
                        self.dylink = Some(parse_dylink0(c.data(), offset)?);
                    }
                    KnownCustom::Name(names) => {
                        // Only the module name is wanted; it is the first subsection.
                        if let Some(Ok(Name::Module { name, .. })) = names.into_iter().next() {
                            self.name = Some(name.to_string());
                        }
                    }
                    _ if c.name() == "dylink" => {
                        if self.dylink.is_some() {
                            return Err(ParseError::new(
                                "dylink section",
                                offset,
                                "more than one dylink section",
                            ));
                        }
                        self.dylink = Some(parse_legacy_dylink(c.data(), offset)?);
                    }
                    _ => {}
                }
            }
            Payload::CodeSectionStart { count, range, .. } => {
                if count as usize != self.func_types.len() {
                    return Err(ParseError::new(
                        "code section",
                        range.start,
                        format!(
                            "{count} function bodies for {} declared functions",
                            self.func_types.len()
                        ),
                    ));
                }
                return Ok("code section");
            }
            Payload::CodeSectionEntry(_) => return Ok("code section"),
            _ => {}
        }
        Ok("section header")
    }

    fn finish(self, size: usize) -> Result<ModuleInfo, ParseError> {
        // Signatures are shared (Arc) and flags are looked up through maps, so the model costs
        // linear time and memory whatever the counts in the module.
        let sig = |ty: u32| self.types.get(ty as usize).cloned().flatten();
        let dylink = self.dylink;
        let mut export_flags: HashMap<&str, SymbolFlags> = HashMap::new();
        let mut import_flags: HashMap<(&str, &str), SymbolFlags> = HashMap::new();
        if let Some(d) = &dylink {
            for e in &d.export_info {
                export_flags.entry(e.name.as_str()).or_insert(e.flags);
            }
            for i in &d.import_info {
                import_flags
                    .entry((i.module.as_str(), i.field.as_str()))
                    .or_insert(i.flags);
            }
        }
        let imported_func_types: Vec<u32> = self
            .imports
            .iter()
            .filter_map(|(_, _, t)| match t {
                TypeRef::Func(t) | TypeRef::FuncExact(t) => Some(*t),
                _ => None,
            })
            .collect();
        let imports: Vec<Import> = self
            .imports
            .iter()
            .map(|(module, field, ty)| {
                let (kind, ity) = match *ty {
                    TypeRef::Func(t) | TypeRef::FuncExact(t) => {
                        (EntityKind::Func, ImportType::Func { signature: sig(t) })
                    }
                    TypeRef::Table(t) => (
                        EntityKind::Table,
                        ImportType::Table {
                            limits: limits_table(&t),
                        },
                    ),
                    TypeRef::Memory(m) => (
                        EntityKind::Memory,
                        ImportType::Memory {
                            limits: limits_mem(&m),
                            memory64: m.memory64,
                        },
                    ),
                    TypeRef::Global(g) => (
                        EntityKind::Global,
                        ImportType::Global {
                            ty: g.content_type.into(),
                            mutable: g.mutable,
                        },
                    ),
                    TypeRef::Tag(t) => (
                        EntityKind::Tag,
                        ImportType::Tag {
                            signature: sig(t.func_type_idx),
                        },
                    ),
                };
                // IMPORT_INFO names the symbol as `env.X` even when the import that refers to
                // it is `GOT.mem.X` or `GOT.func.X` (that is how lld marks weak data).
                let key_module = match module.as_str() {
                    "GOT.mem" | "GOT.func" => "env",
                    m => m,
                };
                let flags = import_flags
                    .get(&(key_module, field.as_str()))
                    .copied()
                    .unwrap_or_default();
                Import {
                    module: module.clone(),
                    field: field.clone(),
                    kind,
                    class: classify_import(module, field, kind),
                    flags,
                    ty: ity,
                }
            })
            .collect();

        let func_sig = |index: u32| -> Option<Arc<Signature>> {
            match imported_func_types.get(index as usize) {
                Some(t) => sig(*t),
                None => sig(*self
                    .func_types
                    .get((index - self.imported_funcs) as usize)?),
            }
        };

        let exports: Vec<Export> = self
            .raw_exports
            .iter()
            .map(|(name, kind, index)| {
                let flags = export_flags.get(name.as_str()).copied().unwrap_or_default();
                let (kind, class, value, signature) = match kind {
                    ExternalKind::Func | ExternalKind::FuncExact => {
                        let class = if INIT_EXPORTS.contains(&name.as_str()) {
                            ExportClass::Init
                        } else {
                            ExportClass::Function
                        };
                        (EntityKind::Func, class, None, func_sig(*index))
                    }
                    ExternalKind::Table => (EntityKind::Table, ExportClass::Table, None, None),
                    ExternalKind::Memory => (EntityKind::Memory, ExportClass::Memory, None, None),
                    ExternalKind::Tag => (EntityKind::Tag, ExportClass::Tag, None, None),
                    ExternalKind::Global => {
                        let g = self.globals.get(*index as usize);
                        let is_addr = g.is_some_and(|g| {
                            !g.mutable && matches!(g.ty, ValType::I32 | ValType::I64)
                        });
                        let class = if flags.is_tls() {
                            ExportClass::Tls
                        } else if is_addr {
                            ExportClass::Data
                        } else {
                            ExportClass::Global
                        };
                        (EntityKind::Global, class, g.and_then(|g| g.value), None)
                    }
                };
                Export {
                    name: name.clone(),
                    kind,
                    class,
                    index: *index,
                    flags,
                    value,
                    signature,
                }
            })
            .collect();

        let exports_entry = exports.iter().any(|e| {
            e.kind == EntityKind::Func
                && matches!(e.name.as_str(), "_start" | "main" | "__main_argc_argv")
        });
        let exports_kind = |k: EntityKind| exports.iter().any(|e| e.kind == k);
        let kind = if dylink.is_some() {
            if exports_entry {
                ModuleKind::PieProgram
            } else {
                ModuleKind::SharedLibrary
            }
        } else if !self.memories.is_empty()
            && !self.tables.is_empty()
            && exports_kind(EntityKind::Memory)
            && exports_kind(EntityKind::Table)
            && exports
                .iter()
                .any(|e| e.name == "__stack_pointer" && e.kind == EntityKind::Global)
        {
            ModuleKind::StaticProgram
        } else {
            ModuleKind::Plain
        };
        let memory64 = self.memory64
            || imports.iter().any(|i| {
                i.class == ImportClass::MemoryBase
                    && matches!(
                        i.ty,
                        ImportType::Global {
                            ty: ValType::I64,
                            ..
                        }
                    )
            });

        Ok(ModuleInfo {
            kind,
            address_width: if memory64 {
                AddressWidth::Wasm64
            } else {
                AddressWidth::Wasm32
            },
            dylink,
            name: self.name,
            imports,
            exports,
            start: self.start,
            defined_functions: self.func_types.len() as u32,
            defined_memories: self.memories.iter().map(|(l, _)| *l).collect(),
            defined_tables: self.tables,
            table_functions: self.table_functions,
            data_segments: self.data_segments,
            defined_globals: (self.globals.len()
                - self
                    .imports
                    .iter()
                    .filter(|(_, _, t)| matches!(t, TypeRef::Global(_)))
                    .count()) as u32,
            size,
        })
    }
}

mod reader;

#[cfg(test)]
mod tests;
