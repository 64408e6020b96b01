//! What each import and export of a module means to a dynamic linker.
//!
//! The names come from the tool-conventions: DynamicLinking.md (`env.memory`,
//! `env.__indirect_function_table`, `__memory_base`, `GOT.mem`, `GOT.func`, ...), wasi-libc's
//! linker-defined symbols (`__heap_base`, `__stack_high`, ...), WASI preview 1's
//! `wasi_snapshot_preview1` module and WASI 0.2's `wasi:pkg/interface@version` modules.

use serde::Serialize;

/// Module name of WASI preview 1 imports.
pub const WASI_P1: &str = "wasi_snapshot_preview1";
/// Module name of the pre-snapshot WASI imports.
pub const WASI_UNSTABLE: &str = "wasi_unstable";

/// What an import asks the linker for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "class", content = "symbol", rename_all = "kebab-case")]
pub enum ImportClass {
    /// The shared linear memory (`env.memory`, or any memory import of a dylink module).
    Memory,
    /// The shared function table (`env.__indirect_function_table`, or any table import).
    Table,
    /// `env.__stack_pointer`: the shadow-stack pointer global.
    StackPointer,
    /// `env.__memory_base`: where this module's data region starts.
    MemoryBase,
    /// `env.__table_base`: where this module's table region starts.
    TableBase,
    /// `env.__tls_base`: the thread's TLS block.
    TlsBase,
    /// `env.__heap_base`: first byte of the heap.
    HeapBase,
    /// `env.__heap_end`: end of the heap.
    HeapEnd,
    /// `env.__stack_high`: top of the stack region.
    StackHigh,
    /// `env.__stack_low`: bottom of the stack region.
    StackLow,
    /// `GOT.mem.X`: a mutable global receiving the address of data symbol X.
    GotMem(String),
    /// `GOT.func.X`: a mutable global receiving the table slot of function X.
    GotFunc(String),
    /// An undefined function resolved from the global scope (`env.X`).
    EnvFunction(String),
    /// An undefined global resolved from the global scope (`env.X`).
    EnvGlobal(String),
    /// An exception tag shared across modules.
    Tag(String),
    /// A WASI preview 1 function.
    WasiP1(String),
    /// A WASI 0.2 interface function in canonical-ABI lowered form.
    Wasi2(String),
    /// An item from another module named in the import (plain-module linking).
    Module(String),
}

impl ImportClass {
    /// A short stable label, used for counts and in `nm`.
    pub fn label(&self) -> &'static str {
        match self {
            ImportClass::Memory => "memory",
            ImportClass::Table => "table",
            ImportClass::StackPointer => "stack-pointer",
            ImportClass::MemoryBase => "memory-base",
            ImportClass::TableBase => "table-base",
            ImportClass::TlsBase => "tls-base",
            ImportClass::HeapBase => "heap-base",
            ImportClass::HeapEnd => "heap-end",
            ImportClass::StackHigh => "stack-high",
            ImportClass::StackLow => "stack-low",
            ImportClass::GotMem(_) => "got-mem",
            ImportClass::GotFunc(_) => "got-func",
            ImportClass::EnvFunction(_) => "function",
            ImportClass::EnvGlobal(_) => "global",
            ImportClass::Tag(_) => "tag",
            ImportClass::WasiP1(_) => "wasi-p1",
            ImportClass::Wasi2(_) => "wasi-0.2",
            ImportClass::Module(_) => "module",
        }
    }

    /// Every label, in the order `inspect` prints counts.
    pub const LABELS: [&'static str; 18] = [
        "memory",
        "table",
        "stack-pointer",
        "memory-base",
        "table-base",
        "tls-base",
        "heap-base",
        "heap-end",
        "stack-high",
        "stack-low",
        "got-mem",
        "got-func",
        "function",
        "global",
        "tag",
        "wasi-p1",
        "wasi-0.2",
        "module",
    ];

    /// The symbol this import resolves against, if it names one.
    pub fn symbol(&self) -> Option<&str> {
        match self {
            ImportClass::GotMem(s)
            | ImportClass::GotFunc(s)
            | ImportClass::EnvFunction(s)
            | ImportClass::EnvGlobal(s)
            | ImportClass::Tag(s) => Some(s),
            _ => None,
        }
    }

    /// True for the linker-provided items (memory, table, bases, stack and heap bounds).
    pub fn is_linker_provided(&self) -> bool {
        matches!(
            self,
            ImportClass::Memory
                | ImportClass::Table
                | ImportClass::StackPointer
                | ImportClass::MemoryBase
                | ImportClass::TableBase
                | ImportClass::TlsBase
                | ImportClass::HeapBase
                | ImportClass::HeapEnd
                | ImportClass::StackHigh
                | ImportClass::StackLow
        )
    }
}

/// The kind of entity an import or export is, as wasm sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntityKind {
    /// A function.
    Func,
    /// A table.
    Table,
    /// A linear memory.
    Memory,
    /// A global.
    Global,
    /// An exception tag.
    Tag,
}

/// Classifies import `module.field` of kind `kind`.
pub fn classify_import(module: &str, field: &str, kind: EntityKind) -> ImportClass {
    match (module, kind) {
        ("GOT.mem", EntityKind::Global) => return ImportClass::GotMem(field.to_string()),
        ("GOT.func", EntityKind::Global) => return ImportClass::GotFunc(field.to_string()),
        (WASI_P1 | WASI_UNSTABLE, EntityKind::Func) => {
            return ImportClass::WasiP1(field.to_string());
        }
        (m, EntityKind::Func) if m.starts_with("wasi:") => {
            return ImportClass::Wasi2(format!("{m}#{field}"));
        }
        _ => {}
    }
    if module != "env" {
        return match kind {
            EntityKind::Memory => ImportClass::Memory,
            EntityKind::Table if field == "__indirect_function_table" => ImportClass::Table,
            _ => ImportClass::Module(format!("{module}.{field}")),
        };
    }
    match kind {
        EntityKind::Memory => ImportClass::Memory,
        EntityKind::Table => ImportClass::Table,
        EntityKind::Func => ImportClass::EnvFunction(field.to_string()),
        EntityKind::Tag => ImportClass::Tag(field.to_string()),
        EntityKind::Global => match field {
            "__stack_pointer" => ImportClass::StackPointer,
            "__memory_base" => ImportClass::MemoryBase,
            "__table_base" => ImportClass::TableBase,
            "__tls_base" => ImportClass::TlsBase,
            "__heap_base" => ImportClass::HeapBase,
            "__heap_end" => ImportClass::HeapEnd,
            "__stack_high" => ImportClass::StackHigh,
            "__stack_low" => ImportClass::StackLow,
            other => ImportClass::EnvGlobal(other.to_string()),
        },
    }
}

/// What an export offers to other modules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExportClass {
    /// A function symbol.
    Function,
    /// A data symbol: an immutable integer global holding an address (relative to
    /// `__memory_base` in a position-independent module).
    Data,
    /// A thread-local data symbol: an offset from `__tls_base`.
    Tls,
    /// A linear memory.
    Memory,
    /// A table.
    Table,
    /// A mutable global (e.g. `__stack_pointer` of a static program).
    Global,
    /// An exception tag.
    Tag,
    /// A symbol the loader calls rather than links against (`__wasm_call_ctors`,
    /// `__wasm_apply_data_relocs`, `__wasm_init_tls`, `_initialize`, ...).
    Init,
}

impl ExportClass {
    /// A short stable label.
    pub fn label(self) -> &'static str {
        match self {
            ExportClass::Function => "function",
            ExportClass::Data => "data",
            ExportClass::Tls => "tls",
            ExportClass::Memory => "memory",
            ExportClass::Table => "table",
            ExportClass::Global => "global",
            ExportClass::Tag => "tag",
            ExportClass::Init => "init",
        }
    }

    /// Every label, in the order `inspect` prints counts.
    pub const LABELS: [&'static str; 8] = [
        "function", "data", "tls", "memory", "table", "global", "tag", "init",
    ];
}

/// Exports the loader runs rather than binds.
pub const INIT_EXPORTS: [&str; 7] = [
    "__wasm_call_ctors",
    "__wasm_apply_data_relocs",
    "__wasm_apply_global_relocs",
    "__wasm_apply_tls_relocs",
    "__wasm_init_tls",
    "__wasm_init_memory",
    "_initialize",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        use EntityKind::*;
        assert_eq!(
            classify_import("env", "memory", Memory),
            ImportClass::Memory
        );
        assert_eq!(
            classify_import("env", "__indirect_function_table", Table),
            ImportClass::Table
        );
        assert_eq!(
            classify_import("env", "__stack_pointer", Global),
            ImportClass::StackPointer
        );
        assert_eq!(
            classify_import("env", "__memory_base", Global),
            ImportClass::MemoryBase
        );
        assert_eq!(
            classify_import("env", "__table_base", Global),
            ImportClass::TableBase
        );
        assert_eq!(
            classify_import("env", "__heap_end", Global),
            ImportClass::HeapEnd
        );
        assert_eq!(
            classify_import("env", "__stack_low", Global),
            ImportClass::StackLow
        );
        assert_eq!(
            classify_import("GOT.mem", "x", Global),
            ImportClass::GotMem("x".into())
        );
        assert_eq!(
            classify_import("GOT.func", "f", Global),
            ImportClass::GotFunc("f".into())
        );
        assert_eq!(
            classify_import("env", "malloc", Func),
            ImportClass::EnvFunction("malloc".into())
        );
        assert_eq!(
            classify_import("env", "__cpp_exception", Tag),
            ImportClass::Tag("__cpp_exception".into())
        );
        assert_eq!(
            classify_import(WASI_P1, "fd_write", Func),
            ImportClass::WasiP1("fd_write".into())
        );
        assert_eq!(
            classify_import("wasi:cli/environment@0.2.0", "get-environment", Func),
            ImportClass::Wasi2("wasi:cli/environment@0.2.0#get-environment".into())
        );
        assert_eq!(
            classify_import("math", "add", Func),
            ImportClass::Module("math.add".into())
        );
        assert_eq!(ImportClass::LABELS.len(), 18);
    }
}
