//! Unit tests of the module model.

use super::*;

fn parse(wat: &str) -> ModuleInfo {
    ModuleInfo::parse(&wat::parse_str(wat).unwrap()).unwrap()
}

#[test]
fn shared_library() {
    let m = parse(
        r#"(module
          (@dylink.0 (mem-info (memory 16 4) (table 2 0)) (needed "libc.so" "libc.so")
            (export-info "tls_x" 0x100) (import-info "env" "weak_f" 0x1))
          (import "env" "memory" (memory 1))
          (import "env" "__indirect_function_table" (table 0 funcref))
          (import "env" "__memory_base" (global i32))
          (import "env" "__table_base" (global i32))
          (import "env" "__stack_pointer" (global (mut i32)))
          (import "GOT.mem" "errno" (global (mut i32)))
          (import "GOT.func" "cb" (global (mut i32)))
          (import "env" "weak_f" (func (param i32)))
          (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) (result i32)))
          (global (export "data_x") i32 (i32.const 8))
          (global (export "tls_x") i32 (i32.const 0))
          (func (export "__wasm_call_ctors"))
          (func (export "f") (param i64) (result f32) f32.const 0))"#,
    );
    assert_eq!(m.kind, ModuleKind::SharedLibrary);
    assert_eq!(m.address_width, AddressWidth::Wasm32);
    let d = m.dylink.as_ref().unwrap();
    assert_eq!(d.mem_info.memory_size, 16);
    assert_eq!(d.mem_info.memory_align_log2, 4);
    assert_eq!(d.needed_unique(), ["libc.so"]);
    assert!(
        m.imports
            .iter()
            .find(|i| i.field == "weak_f")
            .unwrap()
            .is_weak()
    );
    assert_eq!(m.export("tls_x").unwrap().class, ExportClass::Tls);
    let data = m.export("data_x").unwrap();
    assert_eq!((data.class, data.value), (ExportClass::Data, Some(8)));
    assert_eq!(
        m.export("__wasm_call_ctors").unwrap().class,
        ExportClass::Init
    );
    let f = m.export("f").unwrap();
    assert_eq!(f.signature.as_ref().unwrap().to_string(), "(i64) -> (f32)");
    let s = m.summary();
    assert_eq!(s.imports["got-mem"], 1);
    assert_eq!(s.imports["got-func"], 1);
    assert_eq!(s.imports["wasi-p1"], 1);
    assert_eq!(s.imports["stack-pointer"], 1);
    assert!(s.uses_tls);
    assert_eq!(m.undefined_symbols().count(), 3);
}

#[test]
fn kinds() {
    let pie = parse(
        r#"(module (@dylink.0 (mem-info (memory 0 0)))
             (import "env" "memory" (memory 1)) (func (export "main")))"#,
    );
    assert_eq!(pie.kind, ModuleKind::PieProgram);
    let stat = parse(
        r#"(module (memory (export "memory") 1) (table (export "__indirect_function_table") 1 funcref)
             (global (export "__stack_pointer") (mut i32) (i32.const 1024)))"#,
    );
    assert_eq!(stat.kind, ModuleKind::StaticProgram);
    assert_eq!(
        stat.export("__stack_pointer").unwrap().class,
        ExportClass::Global
    );
    let plain = parse(r#"(module (import "math" "add" (func)) (memory (export "memory") 1))"#);
    assert_eq!(plain.kind, ModuleKind::Plain);
    assert_eq!(
        plain.imports[0].class,
        ImportClass::Module("math.add".into())
    );
    let w64 = parse(r#"(module (import "env" "memory" (memory i64 1)))"#);
    assert_eq!(w64.address_width, AddressWidth::Wasm64);
}

#[test]
fn bad_inputs_say_where() {
    let e = ModuleInfo::parse(b"").unwrap_err();
    assert!(e.message.contains("empty"));
    let e = ModuleInfo::parse(b"\x7fELF\x02\x01\x01\0").unwrap_err();
    assert!(e.message.contains("bad magic"));
    let e = ModuleInfo::parse(b"\0asm\x0d\0\x01\0").unwrap_err();
    assert!(e.message.contains("component"), "{e}");
    let good = wat::parse_str(r#"(module (import "env" "f" (func)) (func (export "g")))"#).unwrap();
    // A cut exactly at a section boundary is a shorter valid module (or lacks its code
    // section); anywhere else it is an error that says where.
    let mut boundaries = vec![8];
    for p in Parser::new(0).parse_all(&good) {
        if let Some((_, r)) = p.unwrap().as_section() {
            boundaries.push(r.end);
        }
    }
    for cut in 1..good.len() {
        match ModuleInfo::parse(&good[..cut]) {
            Ok(_) => assert!(boundaries.contains(&cut), "cut at {cut} parsed"),
            Err(e) => assert!(cut < 8 || e.to_string().contains("(at offset 0x"), "{e}"),
        }
    }
    let no_code = &good[..boundaries[3]];
    let e = ModuleInfo::parse(no_code).unwrap_err();
    assert!(e.message.contains("code section is absent"), "{e}");
}

#[test]
fn parse_reader_skips_the_code_and_agrees_with_parse() {
    let good = wat::parse_str(
        r#"(module
          (@dylink.0 (mem-info (memory 16 4) (table 2 0)) (needed "libc.so")
            (export-info "f" 0x100) (import-info "env" "weak_f" 0x1))
          (import "env" "memory" (memory 1))
          (import "env" "__indirect_function_table" (table 2 funcref))
          (import "env" "__memory_base" (global i32))
          (import "env" "weak_f" (func $w (param i32) (result i32)))
          (global $g (mut i32) (i32.const 7))
          (elem (i32.const 0) $f $h)
          (func $f (export "f") (param i32) (result i32)
            (call $w (i32.add (local.get 0) (i32.const 1))))
          (func $h (export "h") (result i64) (i64.const 5))
          (start $s)
          (func $s)
          (data (i32.const 16) "hello")
          (data (i32.const 32) "world")
          (@custom "name" "\00\06\05hello"))"#,
    )
    .unwrap();
    let whole = ModuleInfo::parse(&good).unwrap();
    assert!(!whole.exports.is_empty() && whole.dylink.is_some());
    assert_eq!(
        ModuleInfo::parse_reader(std::io::Cursor::new(&good)).unwrap(),
        whole
    );
    // Every truncation: both fail (naming an offset), or both give the same model.
    for cut in 0..good.len() {
        let a = ModuleInfo::parse(&good[..cut]);
        let b = ModuleInfo::parse_reader(std::io::Cursor::new(&good[..cut]));
        match (a, b) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "cut at {cut}"),
            (Err(_), Err(e)) => assert!(cut < 8 || e.to_string().contains("offset"), "{e}"),
            (a, b) => panic!("cut at {cut}: parse {a:?}, parse_reader {b:?}"),
        }
    }
    // The code section is not read: a reader whose code bytes are garbage (same sizes)
    // gives the same model.
    let mut code = None;
    for p in Parser::new(0).parse_all(&good) {
        if let Payload::CodeSectionStart { range, .. } = p.unwrap() {
            code = Some(range);
        }
    }
    let code = code.unwrap();
    let mut scrambled = good.clone();
    // Past the count and the first body's size: the body bytes.
    for byte in &mut scrambled[code.start + 2..code.end] {
        *byte = 0xff;
    }
    assert_eq!(
        ModuleInfo::parse_reader(std::io::Cursor::new(&scrambled)).unwrap(),
        whole
    );
    assert!(ModuleInfo::parse(&scrambled).is_err());
}

/// A reader that counts the bytes read through it.
struct Counting<R> {
    inner: R,
    read: u64,
}

impl<R: std::io::Read> std::io::Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

impl<R: std::io::Seek> std::io::Seek for Counting<R> {
    fn seek(&mut self, pos: std::io::SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(pos)
    }
}

#[test]
fn parse_reader_does_not_read_the_data_segments_bytes() {
    // 2 MiB of data in three segments (active at a constant, active at __memory_base + 8,
    // passive), then a name section after the data section.
    let big = "\\00".repeat(1 << 20);
    let text = format!(
        r#"(module
          (@dylink.0 (mem-info (memory 3145728 4)))
          (import "env" "memory" (memory 64))
          (import "env" "__memory_base" (global $mb i32))
          (data (i32.const 16) "{big}")
          (data (offset (i32.add (global.get $mb) (i32.const 8))) "{big}")
          (data "xyz")
          (@custom "name" "\00\06\05hello"))"#
    );
    let good = wat::parse_str(&text).unwrap();
    let whole = ModuleInfo::parse(&good).unwrap();
    assert_eq!(whole.data_segments.len(), 2);
    assert_eq!(whole.data_segments[0], (Some(16), 1 << 20));
    let mut counting = Counting {
        inner: std::io::Cursor::new(&good),
        read: 0,
    };
    assert_eq!(ModuleInfo::parse_reader(&mut counting).unwrap(), whole);
    assert!(
        counting.read < 256 << 10,
        "{} of {} bytes read",
        counting.read,
        good.len()
    );
    // Truncated inside the data: both refuse it.
    for cut in [good.len() / 2, good.len() - 40] {
        assert!(ModuleInfo::parse(&good[..cut]).is_err());
        let e = ModuleInfo::parse_reader(std::io::Cursor::new(&good[..cut])).unwrap_err();
        assert!(e.to_string().contains("offset"), "{e}");
    }
}

#[test]
fn legacy_dylink_section() {
    // (@custom "dylink" ...) : memsize 32, align 2, table 1, align 0, needed ["liba.so"]
    let m = parse(
        r#"(module (@custom "dylink" "\20\02\01\00\01\07liba.so")
             (import "env" "memory" (memory 1)))"#,
    );
    let d = m.dylink.unwrap();
    assert_eq!(d.format, crate::DylinkFormat::Legacy);
    assert_eq!(d.needed, ["liba.so"]);
    assert_eq!(d.mem_info.memory_size, 32);
}
