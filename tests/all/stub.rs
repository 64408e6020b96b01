//! `wasmlink stub`: link-time stubs of shared libraries, so wasm-ld can record `NEEDED libc.so`.
//!
//! wasm-ld 19 refuses to link a PIE main against wasi-sdk's real `libc.so` (it exports its own
//! `__wasm_call_dtors`); the stub keeps the library's NEEDED list and exported symbols and
//! leaves out what wasm-ld refuses. A C program is linked with clang-19 against the stub and
//! run against the real library. Hostile inputs get one line naming the file and exit 2.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use wasmlink_dylink::{ExportClass, ModuleInfo, ModuleKind};
use wasmlink_xtask::cflags::{self, Link};

use crate::support::{self, stderr, stdout, wasmlink_in};

fn stub_in(dir: &Path, args: &[&str]) -> Output {
    let mut all = vec!["stub"];
    all.extend_from_slice(args);
    wasmlink_in(&all, Some(dir), &[])
}

/// The link flags of a PIE main as a user writes them: the repository's ([`Link::Pie`])
/// without `--export-if-defined=__wasm_call_ctors`. Then wasm-ld 19 makes the program a
/// command (each export runs the constructors, and `__wasm_call_dtors` if something defines
/// one) and looks `__wasm_call_dtors` up: the one in the real libc.so is refused.
fn user_pie_flags() -> Vec<&'static str> {
    let flags: Vec<&str> = Link::Pie
        .flags()
        .into_iter()
        .filter(|f| !f.contains("__wasm_call_ctors"))
        .collect();
    assert_eq!(flags.len() + 1, Link::Pie.flags().len());
    flags
}

/// Compiles `sources` in `dir` with the repository's compile flags and links them as a PIE
/// main with `link` flags and `libs`; returns the output path and the last clang's output.
fn build_main(
    dir: &Path,
    sources: &[PathBuf],
    out: &str,
    link: &[&str],
    libs: &[&str],
) -> (PathBuf, Output) {
    let run = |cmd: &mut Command| {
        cmd.current_dir(dir)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", cflags::CLANG))
    };
    let mut objects = Vec::new();
    for (i, src) in sources.iter().enumerate() {
        let obj = dir.join(format!("{out}.{i}.o"));
        let o = run(Command::new(cflags::CLANG)
            .args(cflags::CFLAGS)
            .arg("-c")
            .arg(src)
            .arg("-o")
            .arg(&obj));
        assert!(o.status.success(), "{}", stderr(&o));
        objects.push(obj);
    }
    let path = dir.join(out);
    let o = run(Command::new(cflags::CLANG)
        .args(cflags::LDFLAGS)
        .args(link)
        .arg("-o")
        .arg(&path)
        .args(&objects)
        .args(libs));
    (path, o)
}

fn libc_main() -> Vec<PathBuf> {
    vec![support::fixtures_src().join("c/stub_libc_main.c")]
}

/// The error line of a failed `wasmlink stub`: exit 2, one line, naming `name`.
fn one_line_error(o: &Output, name: &str) -> String {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    assert!(o.stdout.is_empty(), "stdout: {}", stdout(o));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("wasmlink: ") && err.contains(name), "{err}");
    err
}

#[test]
fn a_c_main_linked_against_the_stub_of_libc_records_needed_libc_and_runs_on_the_real_one() {
    let corpus = support::corpus();
    let real = corpus.join("libc.so");
    let dir = tempfile::tempdir().unwrap();

    // The problem: wasm-ld refuses the real library.
    let (_, o) = build_main(
        dir.path(),
        &libc_main(),
        "direct.wasm",
        &user_pie_flags(),
        &["-L", corpus.to_str().unwrap(), "-lc"],
    );
    assert!(!o.status.success(), "wasm-ld now links the real libc.so");
    assert!(
        stderr(&o).contains("__wasm_call_dtors must be a function"),
        "{}",
        stderr(&o)
    );

    // The stub, at its default place (stubs/libc.so: wasm-ld records the file name).
    let o = stub_in(dir.path(), &[real.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("stubs/libc.so: ") && stdout(&o).contains("__wasm_call_dtors"),
        "{}",
        stdout(&o)
    );
    let stub = dir.path().join("stubs/libc.so");
    let info = ModuleInfo::parse(&std::fs::read(&stub).unwrap()).unwrap();
    assert_eq!(info.kind, ModuleKind::SharedLibrary);
    assert_eq!(info.dylink.as_ref().unwrap().mem_info.memory_size, 0);

    let (main, o) = build_main(
        dir.path(),
        &libc_main(),
        "main.wasm",
        &user_pie_flags(),
        &["-Lstubs", "-lc"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let main_info = ModuleInfo::parse(&std::fs::read(&main).unwrap()).unwrap();
    assert_eq!(main_info.kind, ModuleKind::PieProgram);
    assert_eq!(main_info.needed(), ["libc.so"]);
    // errno is a libc data symbol: the stub's exported global made it a GOT.mem import.
    assert!(
        main_info
            .imports
            .iter()
            .any(|i| i.module == "GOT.mem" && i.field == "errno"),
        "{:?}",
        main_info.imports
    );

    let lib_dir = corpus.to_str().unwrap();
    let o = wasmlink_in(&["ldd", "-L", lib_dir, "main.wasm"], Some(dir.path()), &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        format!("\tlibc.so => {}\n", real.display()),
        "{}",
        stderr(&o)
    );

    // At run time the real libc.so comes from the search path; the stub is not on it.
    let o = wasmlink_in(&["run", "-L", lib_dir, "main.wasm"], Some(dir.path()), &[]);
    assert_eq!(o.status.code(), Some(47), "stderr: {}", stderr(&o));

    // With the repository's own flags (the constructors exported for the loader to run),
    // the stub links and runs the same way.
    let (main, o) = build_main(
        dir.path(),
        &libc_main(),
        "main2.wasm",
        &Link::Pie.flags(),
        &["-Lstubs", "-lc"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let main_info = ModuleInfo::parse(&std::fs::read(&main).unwrap()).unwrap();
    assert_eq!(main_info.needed(), ["libc.so"]);
    let o = wasmlink_in(&["run", "-L", lib_dir, "main2.wasm"], Some(dir.path()), &[]);
    assert_eq!(o.status.code(), Some(47), "stderr: {}", stderr(&o));
}

#[test]
fn every_corpus_library_gets_a_stub_with_its_needed_list_and_symbols() {
    let corpus = support::corpus();
    let dir = tempfile::tempdir().unwrap();
    let mut names: Vec<_> = std::fs::read_dir(&corpus)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".so"))
        .collect();
    names.sort();
    assert_eq!(names.len(), 11, "{names:?}");
    for name in &names {
        let real = ModuleInfo::parse(&std::fs::read(corpus.join(name)).unwrap()).unwrap();
        let out = format!("out/{name}");
        std::fs::create_dir_all(dir.path().join("out")).unwrap();
        let o = stub_in(
            dir.path(),
            &[corpus.join(name).to_str().unwrap(), "-o", &out],
        );
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let stub = ModuleInfo::parse(&std::fs::read(dir.path().join(&out)).unwrap()).unwrap();
        assert_eq!(stub.kind, ModuleKind::SharedLibrary, "{name}");
        assert_eq!(stub.needed(), real.needed(), "{name}");
        assert!(stub.imports.is_empty(), "{name}: {:?}", stub.imports);
        let symbols = |m: &ModuleInfo| -> Vec<(String, ExportClass, Option<String>)> {
            m.defined_symbols()
                .filter(|e| e.class != ExportClass::Tag)
                .filter(|e| !wasmlink::stub::DROPPED_EXPORTS.contains(&e.name.as_str()))
                .map(|e| {
                    (
                        e.name.clone(),
                        e.class,
                        e.signature.as_ref().map(|s| s.to_string()),
                    )
                })
                .collect()
        };
        assert_eq!(symbols(&stub), symbols(&real), "{name}");
        for dropped in [
            "__wasm_call_dtors",
            "_initialize",
            "__wasm_apply_data_relocs",
        ] {
            assert!(stub.export(dropped).is_none(), "{name}: {dropped}");
        }
    }
}

#[test]
fn exports_wasm_ld_refuses_from_a_library_are_left_out_of_the_stub() {
    let dir = tempfile::tempdir().unwrap();
    // Each of these alone makes wasm-ld 19 refuse the library (found by experiment).
    let lib = wat::parse_str(
        r#"(module
          (@dylink.0 (mem-info (memory 16 2)) (needed "libdep.so"))
          (func (export "foo") (result i32) i32.const 7)
          (func (export "__wasm_call_dtors"))
          (func (export "__memory_base"))
          (func (export "__table_base"))
          (func (export "__stack_pointer"))
          (global (export "__indirect_function_table") i32 (i32.const 0)))"#,
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("real")).unwrap();
    std::fs::write(dir.path().join("real/libfoo.so"), &lib).unwrap();
    let main_src = dir.path().join("m.c");
    std::fs::write(
        &main_src,
        "int foo(void);\nint main(void) { return foo(); }\n",
    )
    .unwrap();
    let flags = user_pie_flags();
    let link = |libs: &[&str], out: &str| {
        build_main(
            dir.path(),
            std::slice::from_ref(&main_src),
            out,
            &flags,
            libs,
        )
    };
    let (_, o) = link(&["real/libfoo.so"], "direct.wasm");
    assert!(!o.status.success(), "wasm-ld now takes these exports");

    let o = stub_in(dir.path(), &["real/libfoo.so"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "stubs/libfoo.so: 1 functions, 0 data symbols, 1 needed; left out __wasm_call_dtors, \
         __memory_base, __table_base, __stack_pointer, __indirect_function_table\n"
    );
    let (main, o) = link(&["stubs/libfoo.so"], "main.wasm");
    assert!(o.status.success(), "{}", stderr(&o));
    let info = ModuleInfo::parse(&std::fs::read(main).unwrap()).unwrap();
    assert_eq!(info.needed(), ["libfoo.so"]);
}

#[test]
fn hostile_inputs_are_one_line_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let write = |name: &str, bytes: &[u8]| std::fs::write(d.join(name), bytes).unwrap();
    write("text.so", b"this is not wasm\n");
    write("empty.so", b"");
    write(
        "component.so",
        &wat::parse_str("(component (core module))").unwrap(),
    );
    write(
        "plain.so",
        &wat::parse_str(r#"(module (func (export "f")))"#).unwrap(),
    );
    write(
        "pie.wasm",
        &wat::parse_str(
            r#"(module (@dylink.0 (mem-info (memory 0 0)))
                 (func (export "main") (result i32) i32.const 0))"#,
        )
        .unwrap(),
    );
    let libc = std::fs::read(support::corpus().join("libc.so")).unwrap();
    write("truncated.so", &libc[..libc.len() / 3]);
    let mut bad_section = libc.clone();
    // MEM_INFO's size byte (after the section header and its name): past the section's end.
    assert_eq!(&bad_section[8..20], b"\0M\x08dylink.0\x01");
    bad_section[20] = 0x7f;
    write("mutated.so", &bad_section);
    std::fs::create_dir(d.join("adir")).unwrap();

    for (file, what) in [
        ("text.so", "magic"),
        ("empty.so", "empty"),
        ("component.so", "component"),
        ("plain.so", "not a shared library (it is a plain module)"),
        (
            "pie.wasm",
            "not a shared library (it is a position-independent main program)",
        ),
        ("truncated.so", "offset"),
        ("mutated.so", "offset"),
        ("missing.so", "no such file"),
        ("adir", "directory"),
    ] {
        let o = stub_in(d, &[file, "-o", "out.so"]);
        let err = one_line_error(&o, file);
        assert!(err.contains(what), "{file}: {err}");
        assert!(!d.join("out.so").exists(), "{file}: wrote a stub");
    }
    // Nothing was written for the bad inputs, not even the default directory.
    let o = stub_in(d, &["plain.so"]);
    one_line_error(&o, "plain.so");
    assert!(!d.join("stubs").exists());
}

#[test]
fn the_output_is_never_the_input_nor_anything_but_a_regular_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let lib = wat::parse_str(
        r#"(module (@dylink.0 (mem-info (memory 4 0))) (func (export "f") (result i32) i32.const 1))"#,
    )
    .unwrap();
    std::fs::write(d.join("libf.so"), &lib).unwrap();

    // -o naming the input (directly or through a symlink) would replace the real library.
    std::os::unix::fs::symlink("libf.so", d.join("link.so")).unwrap();
    for out in ["libf.so", "./libf.so", "link.so"] {
        let o = stub_in(d, &["libf.so", "-o", out]);
        let err = one_line_error(&o, out);
        assert!(err.contains("is the input library"), "{err}");
        assert_eq!(std::fs::read(d.join("libf.so")).unwrap(), lib, "{out}");
    }
    // Run from inside stubs/ with the default output: stubs/libf.so is a new file, fine; but
    // a library already in stubs/ named as input with the default output is itself.
    std::fs::create_dir(d.join("stubs")).unwrap();
    std::fs::write(d.join("stubs/libg.so"), &lib).unwrap();
    let o = stub_in(d, &["stubs/libg.so"]);
    one_line_error(&o, "stubs/libg.so");
    assert_eq!(std::fs::read(d.join("stubs/libg.so")).unwrap(), lib);

    // A directory or a device is refused, never replaced.
    std::fs::create_dir(d.join("outdir")).unwrap();
    let o = stub_in(d, &["libf.so", "-o", "outdir"]);
    let err = one_line_error(&o, "outdir");
    assert!(err.contains("not a regular file"), "{err}");
    let o = stub_in(d, &["libf.so", "-o", "/dev/null"]);
    one_line_error(&o, "/dev/null");
    // A missing directory in -o is one line, not a panic.
    let o = stub_in(d, &["libf.so", "-o", "no/such/dir/libf.so"]);
    one_line_error(&o, "no/such/dir/libf.so");

    // An existing regular file is replaced (through a rename: no temporary file is left).
    std::fs::write(d.join("old.so"), b"old").unwrap();
    let o = stub_in(d, &["libf.so", "-o", "old.so"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let info = ModuleInfo::parse(&std::fs::read(d.join("old.so")).unwrap()).unwrap();
    assert!(info.export("f").is_some());
    let leftovers: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with(".wasmlink-stub-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
