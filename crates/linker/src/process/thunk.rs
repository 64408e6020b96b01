//! Call-indirect thunks: how an import is bound before its definition exists.
//!
//! A library that imports its own exports (a real libc.so does this 173 times), libraries that
//! need each other, and symbols that only a later `dlopen` provides cannot be bound to a
//! function at instantiation, because the function does not exist yet. Every function symbol has
//! one canonical slot in the shared table; such an import is bound to a small generated function
//! that calls through that slot:
//!
//! ```wat
//! (func (param i32 i64) (result i32)
//!   local.get 0 local.get 1 i32.const SLOT call_indirect (type $t))
//! ```
//!
//! The slot is filled when the definition is instantiated (or holds a function that traps with
//! "undefined symbol" until then). This costs one `call_indirect` per call, and no host call.
//! All thunks a module needs are generated as one module, compiled once per load.

use wasm_encoder::{
    CodeSection, EntityType, ExportKind, ExportSection, Function, FunctionSection, ImportSection,
    Instruction, Module, RefType, TableType, TypeSection, ValType,
};

/// One thunk to generate: its signature and the table slot it calls through.
pub struct Thunk {
    /// Parameter types.
    pub params: Vec<wasmtime::ValType>,
    /// Result types.
    pub results: Vec<wasmtime::ValType>,
    /// Table slot to call.
    pub slot: u32,
}

fn val(t: &wasmtime::ValType) -> Option<ValType> {
    Some(match t {
        wasmtime::ValType::I32 => ValType::I32,
        wasmtime::ValType::I64 => ValType::I64,
        wasmtime::ValType::F32 => ValType::F32,
        wasmtime::ValType::F64 => ValType::F64,
        wasmtime::ValType::V128 => ValType::V128,
        wasmtime::ValType::Ref(_) => return None,
    })
}

/// Builds a module importing `env.__indirect_function_table` and exporting thunk `i` as `"i"`.
///
/// Returns `None` if a signature uses reference types (which cannot be called through a
/// funcref table of this process in a portable way).
pub fn build(thunks: &[Thunk]) -> Option<Vec<u8>> {
    let mut types = TypeSection::new();
    let mut imports = ImportSection::new();
    let mut funcs = FunctionSection::new();
    let mut exports = ExportSection::new();
    let mut code = CodeSection::new();
    imports.import(
        "env",
        "__indirect_function_table",
        EntityType::Table(TableType {
            element_type: RefType::FUNCREF,
            minimum: 0,
            maximum: None,
            table64: false,
            shared: false,
        }),
    );
    for (i, t) in thunks.iter().enumerate() {
        let params: Vec<ValType> = t.params.iter().map(val).collect::<Option<_>>()?;
        let results: Vec<ValType> = t.results.iter().map(val).collect::<Option<_>>()?;
        let ty = i as u32;
        types.ty().function(params.clone(), results);
        funcs.function(ty);
        exports.export(&i.to_string(), ExportKind::Func, i as u32);
        let mut f = Function::new([]);
        for p in 0..params.len() as u32 {
            f.instruction(&Instruction::LocalGet(p));
        }
        f.instruction(&Instruction::I32Const(t.slot as i32));
        f.instruction(&Instruction::CallIndirect {
            type_index: ty,
            table_index: 0,
        });
        f.instruction(&Instruction::End);
        code.function(&f);
    }
    let mut m = Module::new();
    m.section(&types)
        .section(&imports)
        .section(&funcs)
        .section(&exports)
        .section(&code);
    Some(m.finish())
}

/// Builds a module that forwards `names` (imported from `module`, with types `types`) and
/// re-exports `env.memory` as `memory`.
///
/// WASI preview 1 host functions find the caller's memory through its `memory` export; a
/// library that imports the shared memory exports none, so its WASI imports are bound through
/// this shim, whose instance exports the shared memory. One direct call more per WASI call.
pub fn wasi_shim(module: &str, funcs: &[(String, wasmtime::FuncType)]) -> Option<Vec<u8>> {
    let mut types = TypeSection::new();
    let mut imports = ImportSection::new();
    let mut fsec = FunctionSection::new();
    let mut exports = ExportSection::new();
    let mut code = CodeSection::new();
    imports.import(
        "env",
        "memory",
        EntityType::Memory(wasm_encoder::MemoryType {
            minimum: 0,
            maximum: None,
            memory64: false,
            shared: false,
            page_size_log2: None,
        }),
    );
    exports.export("memory", ExportKind::Memory, 0);
    let n = funcs.len() as u32;
    for (i, (name, ty)) in funcs.iter().enumerate() {
        let params: Vec<ValType> = ty.params().map(|t| val(&t)).collect::<Option<_>>()?;
        let results: Vec<ValType> = ty.results().map(|t| val(&t)).collect::<Option<_>>()?;
        types.ty().function(params.clone(), results);
        imports.import(module, name, EntityType::Function(i as u32));
    }
    for (i, (name, _)) in funcs.iter().enumerate() {
        let i = i as u32;
        fsec.function(i);
        exports.export(name, ExportKind::Func, n + i);
        let nparams = funcs[i as usize].1.params().len() as u32;
        let mut f = Function::new([]);
        for p in 0..nparams {
            f.instruction(&Instruction::LocalGet(p));
        }
        f.instruction(&Instruction::Call(i));
        f.instruction(&Instruction::End);
        code.function(&f);
    }
    let mut m = Module::new();
    m.section(&types)
        .section(&imports)
        .section(&fsec)
        .section(&exports)
        .section(&code);
    Some(m.finish())
}
