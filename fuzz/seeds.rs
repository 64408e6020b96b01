//! Writes the seed corpora: `cargo run --example seeds` (from `fuzz/`).
//!
//! - `corpus/parse_module/`: the 11 real-world libraries of `../target/corpus` (if present),
//!   plus small modules assembled from the WAT below (every module kind, every dylink.0
//!   subsection, the legacy `dylink` section, memory64, tags, GOT/WASI imports, a component);
//! - `corpus/dylink_section/`: the `dylink.0` payload of every module above, and a few legacy
//!   `dylink` payloads, each prefixed with the offset byte the target expects.
//!
//! Seeds are generated, never committed (`corpus/` is gitignored).

use std::path::{Path, PathBuf};

const WAT: &[(&str, &str)] = &[
    (
        "shared_all_subsections",
        r#"(module
          (@dylink.0 (mem-info (memory 16 4) (table 2 0)) (needed "libc.so" "libc.so")
            (export-info "tls_x" 0x100) (import-info "env" "weak_f" 0x1)
            (runtime-path "$ORIGIN/lib"))
          (import "env" "memory" (memory 1))
          (import "env" "__indirect_function_table" (table 0 funcref))
          (import "env" "__memory_base" (global i32))
          (import "env" "__table_base" (global i32))
          (import "env" "__stack_pointer" (global (mut i32)))
          (import "env" "__tls_base" (global i32))
          (import "GOT.mem" "errno" (global (mut i32)))
          (import "GOT.func" "cb" (global (mut i32)))
          (import "env" "weak_f" (func (param i32)))
          (import "env" "ext_g" (global i32))
          (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
          (import "wasi:cli/environment@0.2.0" "get-environment" (func (param i32)))
          (global (export "data_x") i32 (i32.const 8))
          (global (export "tls_x") i32 (i32.const 0))
          (global (export "mut_g") (mut i64) (i64.const 0))
          (func (export "__wasm_call_ctors"))
          (func (export "__wasm_init_tls") (param i32))
          (func (export "f") (param i64 f64 v128) (result f32) f32.const 0))"#,
    ),
    (
        "pie",
        r#"(module (@dylink.0 (mem-info (memory 0 0)))
             (import "env" "memory" (memory 1)) (import "env" "puts" (func (param i32) (result i32)))
             (func (export "main") (param i32 i32) (result i32) i32.const 0))"#,
    ),
    (
        "static_program",
        r#"(module (memory (export "memory") 1) (table (export "__indirect_function_table") 1 funcref)
             (global (export "__stack_pointer") (mut i32) (i32.const 1024))
             (func $s) (start $s) (func (export "_start")))"#,
    ),
    (
        "plain",
        r#"(module $plain (import "math" "add" (func (param i32 i32) (result i32)))
             (memory (export "memory") 1) (data (i32.const 0) "hi"))"#,
    ),
    (
        "memory64",
        r#"(module (@dylink.0 (mem-info (memory 8 3)))
             (import "env" "memory" (memory i64 1))
             (import "env" "__memory_base" (global i64))
             (global (export "p") i64 (i64.const 16)))"#,
    ),
    (
        "legacy_dylink",
        r#"(module (@custom "dylink" "\20\02\01\00\01\07liba.so")
             (import "env" "memory" (memory 1)) (func (export "g")))"#,
    ),
    (
        "tags_and_refs",
        r#"(module (@dylink.0 (needed "libc++abi.so"))
             (type $t (func (param i32)))
             (import "env" "__cpp_exception" (tag (type $t)))
             (import "env" "ext" (func (param externref funcref) (result i32)))
             (import "env" "tbl" (table 1 10 funcref))
             (memory 1 2 shared)
             (tag (export "my_tag") (param i64))
             (func (export "h") (param i32)))"#,
    ),
    (
        "unknown_subsection",
        r#"(module (@custom "dylink.0" "\01\04\10\02\00\00\09\03\01\02\03\02\01\07libx.so")
             (import "env" "memory" (memory 1)))"#,
    ),
];

fn main() {
    let fuzz = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let modules = fuzz.join("corpus/parse_module");
    let sections = fuzz.join("corpus/dylink_section");
    std::fs::create_dir_all(&modules).unwrap();
    std::fs::create_dir_all(&sections).unwrap();

    let mut all: Vec<(String, Vec<u8>)> = Vec::new();
    let real = fuzz.join("../target/corpus");
    match std::fs::read_dir(&real) {
        Ok(dir) => {
            let mut names: Vec<PathBuf> = dir.map(|e| e.unwrap().path()).collect();
            names.sort();
            for p in names
                .into_iter()
                .filter(|p| p.extension().is_some_and(|e| e == "so"))
            {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                all.push((name, std::fs::read(&p).unwrap()));
            }
        }
        Err(e) => eprintln!(
            "note: {} not readable ({e}); run `cargo test --test all corpus` in the main \
             workspace first to fetch the real-world libraries",
            real.display()
        ),
    }
    for (name, src) in WAT {
        all.push((format!("{name}.wasm"), wat::parse_str(src).unwrap()));
    }
    // A component and a few broken headers, so the error paths are seeded too.
    all.push(("component.wasm".into(), b"\0asm\x0d\0\x01\0".to_vec()));
    all.push(("version2.wasm".into(), b"\0asm\x02\0\0\0".to_vec()));
    all.push(("header_only.wasm".into(), b"\0asm\x01\0\0\0".to_vec()));

    for (name, bytes) in &all {
        write(&modules.join(name), bytes);
        for (i, (format, payload)) in dylink_payloads(bytes).into_iter().enumerate() {
            let mut seed = vec![(i as u8) & 0x7f];
            seed.extend_from_slice(payload);
            write(&sections.join(format!("{name}.{format}")), &seed);
        }
    }
    // Legacy payloads: memsize, align, tablesize, align, needed count, names.
    write(&sections.join("legacy_empty"), b"\0\0\0\0\0\0");
    write(
        &sections.join("legacy_two"),
        b"\x05\x80\x02\x03\x01\x00\x02\x07liba.so\x07libb.so",
    );
    println!("seeded {} modules into {}", all.len(), modules.display());
    println!("seeded dylink payloads into {}", sections.display());
}

/// The payloads of the `dylink.0` / `dylink` custom sections of a module.
fn dylink_payloads(bytes: &[u8]) -> Vec<(&'static str, &[u8])> {
    let mut out = Vec::new();
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let Ok(payload) = payload else { break };
        if let wasmparser::Payload::CustomSection(c) = payload {
            match c.name() {
                "dylink.0" => out.push(("dylink.0", c.data())),
                "dylink" => out.push(("dylink", c.data())),
                _ => {}
            }
        }
    }
    out
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::write(path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}
