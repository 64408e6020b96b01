//! Link-time stubs of shared libraries, as import libraries are elsewhere.
//!
//! wasm-ld records a library in a program's `dylink.0` NEEDED list when the library is on the
//! link line, and it reads the library's exports to resolve the program's symbols. A real
//! library can carry exports that wasm-ld refuses to take from a shared library: wasi-sdk's
//! `libc.so` exports its own `__wasm_call_dtors`, which wasm-ld also defines for the program,
//! and the link fails with `__wasm_call_dtors must be a function`.
//!
//! [`link_stub`] writes what the link needs and nothing else: a `dylink.0` module with the
//! library's NEEDED list, every exported function with its signature and a body that is
//! `unreachable`, every exported data symbol as an exported immutable address global (value 0;
//! TLS symbols keep their EXPORT_INFO flags), and a MEM_INFO of size 0. The exports that the
//! loader runs rather than links against and the symbols wasm-ld defines for every program
//! ([`DROPPED_EXPORTS`]: constructors, destructors, relocation appliers, entry points,
//! `__memory_base`, ...) are left out, and so are memories, tables, mutable globals and tags,
//! which wasm-ld never takes from a shared library.
//!
//! The stub is for the link line only: wasm-ld records the stub's *file name* as the NEEDED
//! entry, so it must be called as the real library is (`stubs/libc.so`), and at run time the
//! real library is found on the search path (`wasmlink run -L corpus main.wasm`).
//!
//! ```
//! let lib = wat::parse_str(r#"
//!     (module
//!       (@dylink.0 (mem-info (memory 16 2)) (needed "libdep.so"))
//!       (import "env" "memory" (memory 1))
//!       (func (export "add") (param i32 i32) (result i32) local.get 0 local.get 1 i32.add)
//!       (func (export "__wasm_call_dtors"))
//!       (global (export "counter") i32 (i32.const 8)))
//! "#).unwrap();
//! let stub = wasmlink_linker::stub::link_stub(&lib).unwrap();
//! let info = wasmlink_linker::dylink::ModuleInfo::parse(&stub.bytes).unwrap();
//! assert_eq!(info.needed(), ["libdep.so"]);
//! assert!(info.export("add").is_some() && info.export("counter").is_some());
//! assert!(info.export("__wasm_call_dtors").is_none());
//! assert_eq!(stub.dropped, ["__wasm_call_dtors"]);
//! ```

use std::collections::HashMap;

use wasm_encoder::{
    CodeSection, ConstExpr, CustomSection, Encode, ExportKind, ExportSection, Function,
    FunctionSection, GlobalSection, GlobalType, Instruction, Module, RefType, TypeSection,
};
use wasmlink_dylink::{
    AddressWidth, ExportClass, ModuleInfo, ModuleKind, ParseError, Signature, SymbolFlags, ValType,
};

/// Exports a stub leaves out by name: what the loader calls rather than links against
/// (constructors, relocation appliers, `_initialize`, `_start`), and the symbols wasm-ld
/// defines itself for every program. wasm-ld 19 refuses a library that exports
/// `__wasm_call_dtors` (`__wasm_call_dtors must be a function`, whatever its type) or a
/// function named `__memory_base`, `__table_base`, `__stack_pointer` or
/// `__indirect_function_table` (`symbol type mismatch`), or data named
/// `__indirect_function_table`; the rest would let a program bind to the library's copy of a
/// symbol that is its own.
pub const DROPPED_EXPORTS: [&str; 22] = [
    "__wasm_call_ctors",
    "__wasm_call_dtors",
    "__wasm_apply_data_relocs",
    "__wasm_apply_global_relocs",
    "__wasm_apply_tls_relocs",
    "__wasm_init_tls",
    "__wasm_init_memory",
    "__wasm_init_memory_flag",
    "__wasm_first_page_end",
    "_initialize",
    "_start",
    "__stack_pointer",
    "__memory_base",
    "__table_base",
    "__indirect_function_table",
    "__tls_base",
    "__tls_size",
    "__tls_align",
    "__dso_handle",
    "__data_end",
    "__heap_base",
    "__heap_end",
];

/// Why no stub can be written for a module.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StubError {
    /// The bytes are not a core WebAssembly module (or a malformed one, or a component).
    #[error("{0}")]
    Parse(#[from] ParseError),
    /// The module is a valid core module, but not a `dylink.0` shared library.
    #[error(
        "not a shared library (it is a {kind}): a stub is written for a dylink.0 library built with -shared"
    )]
    NotSharedLibrary {
        /// What it is instead.
        kind: &'static str,
    },
    /// An exported function's signature uses a reference type other than `funcref` and
    /// `externref`, which the model does not keep.
    #[error(
        "exported function `{symbol}` has a signature with a reference type a stub cannot reproduce"
    )]
    UnsupportedSignature {
        /// The export's name.
        symbol: String,
    },
}

/// A written stub and what it holds.
#[derive(Debug, Clone)]
pub struct Stub {
    /// The stub module.
    pub bytes: Vec<u8>,
    /// Exported functions kept.
    pub functions: usize,
    /// Exported data (and TLS) symbols kept.
    pub data: usize,
    /// Function exports left out because they are in [`DROPPED_EXPORTS`], in export order.
    pub dropped: Vec<String>,
}

fn encode_val(t: ValType) -> Option<wasm_encoder::ValType> {
    Some(match t {
        ValType::I32 => wasm_encoder::ValType::I32,
        ValType::I64 => wasm_encoder::ValType::I64,
        ValType::F32 => wasm_encoder::ValType::F32,
        ValType::F64 => wasm_encoder::ValType::F64,
        ValType::V128 => wasm_encoder::ValType::V128,
        ValType::Funcref => wasm_encoder::ValType::Ref(RefType::FUNCREF),
        ValType::Externref => wasm_encoder::ValType::Ref(RefType::EXTERNREF),
        ValType::Ref => return None,
    })
}

/// One `dylink.0` subsection: id, size, payload.
fn subsection(out: &mut Vec<u8>, id: u8, payload: &[u8]) {
    out.push(id);
    payload.encode(out);
}

/// Writes the link-time stub of the shared library `bytes` (see the module docs).
///
/// # Errors
/// [`StubError::Parse`] if the bytes are not a valid core module (a component is one),
/// [`StubError::NotSharedLibrary`] if the module has no `dylink.0` section or has an entry
/// point, [`StubError::UnsupportedSignature`] for an exported function whose signature uses
/// a GC reference type.
pub fn link_stub(bytes: &[u8]) -> Result<Stub, StubError> {
    let info = ModuleInfo::parse(bytes)?;
    stub_of(&info)
}

/// [`link_stub`] of a module already parsed.
///
/// # Errors
/// As [`link_stub`], without the parse.
pub fn stub_of(info: &ModuleInfo) -> Result<Stub, StubError> {
    let dylink = match (&info.dylink, info.kind) {
        (Some(d), ModuleKind::SharedLibrary) => d,
        (None, _) => {
            return Err(StubError::NotSharedLibrary {
                kind: if info.kind == ModuleKind::SharedLibrary {
                    "module without a dylink.0 section"
                } else {
                    info.kind.describe()
                },
            });
        }
        (Some(_), kind) => {
            return Err(StubError::NotSharedLibrary {
                kind: kind.describe(),
            });
        }
    };

    let mut types = TypeSection::new();
    let mut type_index: HashMap<&Signature, u32> = HashMap::new();
    let mut funcs = FunctionSection::new();
    let mut code = CodeSection::new();
    let mut globals = GlobalSection::new();
    let mut exports = ExportSection::new();
    let mut export_info: Vec<(&str, SymbolFlags)> = Vec::new();
    let mut stub = Stub {
        bytes: Vec::new(),
        functions: 0,
        data: 0,
        dropped: Vec::new(),
    };
    let address = match info.address_width {
        AddressWidth::Wasm32 => wasm_encoder::ValType::I32,
        AddressWidth::Wasm64 => wasm_encoder::ValType::I64,
    };
    let zero = match info.address_width {
        AddressWidth::Wasm32 => ConstExpr::i32_const(0),
        AddressWidth::Wasm64 => ConstExpr::i64_const(0),
    };
    let mut body = Function::new([]);
    body.instruction(&Instruction::Unreachable);
    body.instruction(&Instruction::End);

    for export in &info.exports {
        if DROPPED_EXPORTS.contains(&export.name.as_str()) {
            stub.dropped.push(export.name.clone());
            continue;
        }
        match export.class {
            ExportClass::Function => {
                let unsupported = || StubError::UnsupportedSignature {
                    symbol: export.name.clone(),
                };
                let sig = export.signature.as_deref().ok_or_else(unsupported)?;
                let ty = match type_index.get(sig) {
                    Some(&i) => i,
                    None => {
                        let params: Option<Vec<_>> =
                            sig.params.iter().copied().map(encode_val).collect();
                        let results: Option<Vec<_>> =
                            sig.results.iter().copied().map(encode_val).collect();
                        let (Some(params), Some(results)) = (params, results) else {
                            return Err(unsupported());
                        };
                        let i = types.len();
                        types.ty().function(params, results);
                        type_index.insert(sig, i);
                        i
                    }
                };
                let index = funcs.len();
                funcs.function(ty);
                code.function(&body);
                exports.export(&export.name, ExportKind::Func, index);
                stub.functions += 1;
            }
            ExportClass::Data | ExportClass::Tls => {
                let index = globals.len();
                globals.global(
                    GlobalType {
                        val_type: address,
                        mutable: false,
                        shared: false,
                    },
                    &zero,
                );
                exports.export(&export.name, ExportKind::Global, index);
                stub.data += 1;
            }
            // The loader's init functions are dropped above by name; anything else of
            // these classes is never a symbol a program links against.
            ExportClass::Init
            | ExportClass::Memory
            | ExportClass::Table
            | ExportClass::Global
            | ExportClass::Tag => continue,
        }
        let flags = dylink.export_flags(&export.name);
        if flags.0 != 0 {
            export_info.push((&export.name, flags));
        }
    }

    let mut section = Vec::new();
    let mut payload = Vec::new();
    for v in [0u32, 0, 0, 0] {
        v.encode(&mut payload);
    }
    subsection(&mut section, 1, &payload);
    if !dylink.needed.is_empty() {
        payload.clear();
        dylink.needed.len().encode(&mut payload);
        for name in &dylink.needed {
            name.as_str().encode(&mut payload);
        }
        subsection(&mut section, 2, &payload);
    }
    if !export_info.is_empty() {
        payload.clear();
        export_info.len().encode(&mut payload);
        for (name, flags) in &export_info {
            name.encode(&mut payload);
            flags.0.encode(&mut payload);
        }
        subsection(&mut section, 3, &payload);
    }

    let mut module = Module::new();
    module.section(&CustomSection {
        name: "dylink.0".into(),
        data: section.into(),
    });
    module.section(&types);
    module.section(&funcs);
    module.section(&globals);
    module.section(&exports);
    module.section(&code);
    stub.bytes = module.finish();
    Ok(stub)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(wat: &str) -> Vec<u8> {
        wat::parse_str(wat).unwrap()
    }

    const LIB: &str = r#"
        (module
          (@dylink.0 (mem-info (memory 100 4) (table 3 0)) (needed "libc.so" "libm.so")
            (export-info "tls_var" tls))
          (import "env" "memory" (memory 1))
          (import "env" "__memory_base" (global i32))
          (import "env" "puts" (func (param i32) (result i32)))
          (func (export "f") (param i32 i64) (result f64) f64.const 1)
          (func (export "g") (param externref) (result funcref) ref.null func)
          (func (export "h") (param i32 i64) (result f64) f64.const 2)
          (func (export "__wasm_call_ctors"))
          (func (export "__wasm_call_dtors"))
          (func (export "__wasm_apply_data_relocs"))
          (func (export "_initialize"))
          (func (export "__memory_base"))
          (global (export "__indirect_function_table") i32 (i32.const 0))
          (global (export "data") i32 (i32.const 64))
          (global (export "tls_var") i32 (i32.const 4))
          (global (export "counter") (mut i32) (i32.const 0)))
    "#;

    #[test]
    fn keeps_needed_functions_and_data_and_drops_the_init_exports() {
        let stub = link_stub(&parse(LIB)).unwrap();
        wasmtime::Module::validate(&wasmtime::Engine::default(), &stub.bytes).unwrap();
        let info = ModuleInfo::parse(&stub.bytes).unwrap();
        assert_eq!(info.kind, ModuleKind::SharedLibrary);
        let d = info.dylink.as_ref().unwrap();
        assert_eq!(d.needed, ["libc.so", "libm.so"]);
        assert_eq!(d.mem_info.memory_size, 0);
        assert_eq!(d.mem_info.table_size, 0);
        assert!(info.imports.is_empty(), "{:?}", info.imports);
        let names: Vec<(&str, ExportClass)> = info
            .exports
            .iter()
            .map(|e| (e.name.as_str(), e.class))
            .collect();
        assert_eq!(
            names,
            [
                ("f", ExportClass::Function),
                ("g", ExportClass::Function),
                ("h", ExportClass::Function),
                ("data", ExportClass::Data),
                ("tls_var", ExportClass::Tls),
            ]
        );
        let sig = |n: &str| {
            info.export(n)
                .unwrap()
                .signature
                .as_deref()
                .unwrap()
                .to_string()
        };
        assert_eq!(sig("f"), "(i32, i64) -> (f64)");
        assert_eq!(sig("g"), "(externref) -> (funcref)");
        assert_eq!(sig("h"), sig("f"));
        assert_eq!(
            stub.dropped,
            [
                "__wasm_call_ctors",
                "__wasm_call_dtors",
                "__wasm_apply_data_relocs",
                "_initialize",
                "__memory_base",
                "__indirect_function_table",
            ]
        );
        assert_eq!((stub.functions, stub.data), (3, 2));
    }

    #[test]
    fn bodies_trap() {
        let stub = link_stub(&parse(LIB)).unwrap();
        let engine = wasmtime::Engine::default();
        let module = wasmtime::Module::new(&engine, &stub.bytes).unwrap();
        let mut store = wasmtime::Store::new(&engine, ());
        let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
        let f = instance
            .get_typed_func::<(i32, i64), f64>(&mut store, "f")
            .unwrap();
        let trap = f.call(&mut store, (1, 2)).unwrap_err();
        assert_eq!(
            trap.downcast_ref::<wasmtime::Trap>(),
            Some(&wasmtime::Trap::UnreachableCodeReached),
            "{trap:?}"
        );
    }

    #[test]
    fn a_library_without_needed_or_exports_gives_an_empty_stub() {
        let stub = link_stub(&parse(
            r#"(module (@dylink.0 (mem-info (memory 0 0))) (import "env" "memory" (memory 1)))"#,
        ))
        .unwrap();
        let info = ModuleInfo::parse(&stub.bytes).unwrap();
        assert_eq!(info.kind, ModuleKind::SharedLibrary);
        assert!(info.needed().is_empty() && info.exports.is_empty());
    }

    #[test]
    fn refuses_what_is_not_a_shared_library() {
        let plain = link_stub(&parse(r#"(module (func (export "f")))"#)).unwrap_err();
        assert!(
            matches!(plain, StubError::NotSharedLibrary { .. }),
            "{plain}"
        );
        assert!(plain.to_string().contains("plain module"), "{plain}");
        let pie = link_stub(&parse(
            r#"(module (@dylink.0 (mem-info (memory 0 0))) (func (export "main") (result i32) i32.const 0))"#,
        ))
        .unwrap_err();
        assert!(pie.to_string().contains("main program"), "{pie}");
        let component = link_stub(&parse("(component)")).unwrap_err();
        assert!(matches!(component, StubError::Parse(_)), "{component}");
        assert!(component.to_string().contains("component"), "{component}");
        let garbage = link_stub(b"\0asm\x01\0\0\0\x01\xff").unwrap_err();
        assert!(matches!(garbage, StubError::Parse(_)), "{garbage}");
        assert!(matches!(link_stub(b""), Err(StubError::Parse(_))));
    }
}
