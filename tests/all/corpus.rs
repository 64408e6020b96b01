//! The real-world corpus: componentize-py's 11 wasi-sdk shared libraries.
//!
//! Two independent witnesses check the model (`wasmlink_dylink::ModuleInfo`) and the CLI:
//! figures measured by hand with `wasm-objdump -x` (libpython3.14.so's MEM_INFO, libc.so's 114
//! WASI 0.2 imports and 173 re-exported `env` functions, the weak IMPORT_INFO entries), and
//! [`raw`], a minimal section reader written here from the binary format (not on wasmparser),
//! whose imports, exports, start function and dylink.0 contents must match the model item by
//! item.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::path::{Path, PathBuf};

use wasmlink_dylink::{EntityKind, ExportClass, ImportClass, ModuleInfo, ModuleKind};

use crate::support::{self, stderr, stdout, wasmlink_in};

/// The 11 libraries, by file name.
const LIBRARIES: [&str; 11] = [
    "libc++.so",
    "libc++abi.so",
    "libc.so",
    "libcomponentize_py_runtime_async.so",
    "libcomponentize_py_runtime_sync.so",
    "libdl.so",
    "libpython3.14.so",
    "libwasi-emulated-getpid.so",
    "libwasi-emulated-mman.so",
    "libwasi-emulated-process-clocks.so",
    "libwasi-emulated-signal.so",
];

/// A minimal reader of the binary format, independent of wasmparser: just enough of the import,
/// function, export and start sections and of `dylink.0` to cross-check the model.
mod raw {
    use wasmlink_dylink::EntityKind;

    #[derive(Debug, Default)]
    pub struct Module {
        pub imports: Vec<(String, String, EntityKind)>,
        pub exports: Vec<(String, EntityKind, u32)>,
        pub functions: u32,
        pub start: Option<u32>,
        pub dylink0: bool,
        /// The module name from the `name` section.
        pub name: Option<String>,
        /// memory size, memory align, table size, table align
        pub mem_info: Option<[u32; 4]>,
        pub needed: Vec<String>,
        pub export_info: Vec<(String, u32)>,
        pub import_info: Vec<(String, String, u32)>,
        pub runtime_path: Vec<String>,
    }

    struct Reader<'a> {
        b: &'a [u8],
        pos: usize,
    }

    impl<'a> Reader<'a> {
        fn byte(&mut self) -> u8 {
            let v = self.b[self.pos];
            self.pos += 1;
            v
        }
        fn leb(&mut self) -> u64 {
            let (mut v, mut shift) = (0u64, 0);
            loop {
                let b = self.byte();
                v |= u64::from(b & 0x7f) << shift;
                shift += 7;
                if b & 0x80 == 0 {
                    return v;
                }
            }
        }
        fn u32(&mut self) -> u32 {
            u32::try_from(self.leb()).unwrap()
        }
        fn bytes(&mut self, n: usize) -> &'a [u8] {
            let s = &self.b[self.pos..self.pos + n];
            self.pos += n;
            s
        }
        fn name(&mut self) -> String {
            let n = self.u32() as usize;
            String::from_utf8(self.bytes(n).to_vec()).unwrap()
        }
        fn limits(&mut self) {
            let flags = self.byte();
            self.leb();
            if flags & 1 != 0 {
                self.leb();
            }
        }
        fn valtype(&mut self) {
            // (ref null? ht) carries a heap type; every other value type is one byte.
            if matches!(self.byte(), 0x63 | 0x64) {
                self.leb();
            }
        }
        fn kind(&mut self) -> EntityKind {
            match self.byte() {
                0 => EntityKind::Func,
                1 => EntityKind::Table,
                2 => EntityKind::Memory,
                3 => EntityKind::Global,
                4 => EntityKind::Tag,
                k => panic!("unknown external kind {k}"),
            }
        }
    }

    pub fn read(bytes: &[u8]) -> Module {
        assert_eq!(&bytes[..8], b"\0asm\x01\0\0\0");
        let mut m = Module::default();
        let mut r = Reader { b: bytes, pos: 8 };
        while r.pos < bytes.len() {
            let id = r.byte();
            let size = r.u32() as usize;
            let end = r.pos + size;
            let mut s = Reader {
                b: &bytes[..end],
                pos: r.pos,
            };
            let custom = if id == 0 { s.name() } else { String::new() };
            match id {
                0 if custom == "dylink.0" => {
                    m.dylink0 = true;
                    while s.pos < end {
                        let sub = s.byte();
                        let len = s.u32() as usize;
                        let sub_end = s.pos + len;
                        match sub {
                            1 => m.mem_info = Some([s.u32(), s.u32(), s.u32(), s.u32()]),
                            2 | 5 => {
                                let list: Vec<String> = (0..s.u32()).map(|_| s.name()).collect();
                                if sub == 2 {
                                    m.needed.extend(list)
                                } else {
                                    m.runtime_path.extend(list)
                                }
                            }
                            3 => {
                                for _ in 0..s.u32() {
                                    m.export_info.push((s.name(), s.u32()));
                                }
                            }
                            4 => {
                                for _ in 0..s.u32() {
                                    m.import_info.push((s.name(), s.name(), s.u32()));
                                }
                            }
                            _ => {}
                        }
                        s.pos = sub_end;
                    }
                }
                // The module name is subsection 0, first if present.
                0 if custom == "name" && s.pos < end && s.byte() == 0 => {
                    s.u32();
                    m.name = Some(s.name());
                }
                2 => {
                    for _ in 0..s.u32() {
                        let (module, field) = (s.name(), s.name());
                        let kind = s.kind();
                        match kind {
                            EntityKind::Func => {
                                s.u32();
                            }
                            EntityKind::Table => {
                                s.valtype();
                                s.limits();
                            }
                            EntityKind::Memory => s.limits(),
                            EntityKind::Global => {
                                s.valtype();
                                s.byte();
                            }
                            EntityKind::Tag => {
                                s.byte();
                                s.u32();
                            }
                        }
                        m.imports.push((module, field, kind));
                    }
                    assert_eq!(s.pos, end, "import section length");
                }
                3 => m.functions = s.u32(),
                7 => {
                    for _ in 0..s.u32() {
                        let name = s.name();
                        let kind = s.kind();
                        m.exports.push((name, kind, s.u32()));
                    }
                    assert_eq!(s.pos, end, "export section length");
                }
                8 => m.start = Some(s.u32()),
                _ => {}
            }
            r.pos = end;
        }
        m
    }
}

fn path(lib: &str) -> PathBuf {
    support::corpus().join(lib)
}

fn load(lib: &str) -> (ModuleInfo, raw::Module) {
    let bytes = std::fs::read(path(lib)).unwrap();
    (
        ModuleInfo::parse(&bytes).unwrap_or_else(|e| panic!("{lib}: {e}")),
        raw::read(&bytes),
    )
}

fn inspect_json(lib: &str) -> serde_json::Value {
    let o = support::wasmlink(&["inspect", "--json", path(lib).to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{lib}: {}", stderr(&o));
    serde_json::from_str(&stdout(&o)).unwrap()
}

/// `wasmlink ARGS` with the corpus directory as working directory.
fn in_corpus(args: &[&str]) -> std::process::Output {
    wasmlink_in(args, Some(&support::corpus()), &[])
}

#[test]
fn libpython_inspect_json() {
    let v = inspect_json("libpython3.14.so");
    assert_eq!(v["format_version"], 1);
    assert_eq!(v["name"], "libpython3.14.so");
    assert_eq!(v["kind"], "shared-library");
    assert_eq!(v["dylink_format"], "dylink.0");
    assert_eq!(v["address_width"], "wasm32");
    assert_eq!(v["size"], 9_388_441);
    assert_eq!(v["memory"]["size"], 3_163_417);
    assert_eq!(v["memory"]["align_log2"], 6);
    assert_eq!(v["memory"]["align"], 64);
    assert_eq!(v["table"]["size"], 4955);
    assert_eq!(v["table"]["align_log2"], 0);
    assert_eq!(
        v["needed"],
        serde_json::json!([
            "libwasi-emulated-signal.so",
            "libwasi-emulated-getpid.so",
            "libwasi-emulated-process-clocks.so",
            "libdl.so",
            "libc.so"
        ])
    );
    assert_eq!(v["runtime_path"], serde_json::json!([]));
    // wasm-objdump -h: Import count 649, Export count 1857; start function 255.
    assert_eq!(v["imports"]["total"], 649);
    assert_eq!(v["exports"]["total"], 1857);
    assert_eq!(v["start_function"], 255);
    assert_eq!(v["tls"]["used"], false);
    // The per-class counts add up to the totals.
    for side in ["imports", "exports"] {
        let sum: u64 = v[side]["by_class"]
            .as_object()
            .unwrap()
            .values()
            .map(|n| n.as_u64().unwrap())
            .sum();
        assert_eq!(serde_json::json!(sum), v[side]["total"], "{side}");
    }
}

#[test]
fn needed_lists_keep_duplicates() {
    // wasm-objdump -x -j dylink.0: libc++.so needs libc++abi.so, libc.so, libc.so.
    let v = inspect_json("libc++.so");
    assert_eq!(
        v["needed"],
        serde_json::json!(["libc++abi.so", "libc.so", "libc.so"])
    );
    let v = inspect_json("libc++abi.so");
    assert_eq!(v["needed"], serde_json::json!(["libc.so", "libc.so"]));
    // ldd lists each library once.
    let o = in_corpus(&["ldd", "--no-default-dirs", "-L", ".", "libc++.so"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(
        stdout(&o),
        "\tlibc++abi.so => ./libc++abi.so\n\tlibc.so => ./libc.so\n"
    );
}

#[test]
fn libc_wasi_02_imports() {
    let (info, raw) = load("libc.so");
    // wasm-objdump -x -j Import libc.so | grep -c '<- wasi:' gives 114, all functions.
    let raw_wasi: Vec<_> = raw
        .imports
        .iter()
        .filter(|(m, _, _)| m.starts_with("wasi:"))
        .collect();
    assert_eq!(raw_wasi.len(), 114);
    assert!(raw_wasi.iter().all(|(_, _, k)| *k == EntityKind::Func));
    let model: Vec<_> = info
        .imports
        .iter()
        .filter(|i| matches!(i.class, ImportClass::Wasi2(_)))
        .collect();
    assert_eq!(model.len(), 114);
    assert!(
        model.iter().all(|i| i.module.ends_with("@0.2.0")),
        "all wasi:*@0.2.0"
    );
    let sockets = model
        .iter()
        .filter(|i| i.module.starts_with("wasi:sockets/"))
        .count();
    assert!(sockets > 40, "{sockets} wasi:sockets imports");
    assert_eq!(
        inspect_json("libc.so")["imports"]["by_class"]["wasi-0.2"],
        114
    );
    // No preview 1 imports: the corpus targets wasm32-wasip2.
    assert_eq!(inspect_json("libc.so")["imports"]["by_class"]["wasi-p1"], 0);
}

#[test]
fn weak_imports_from_import_info() {
    // wasm-objdump -x -j dylink.0 libc.so:
    //   env.__main_argc_argv [ undefined binding=weak vis=default ]
    //   env.__stack_high [ undefined binding=weak vis=default ]
    //   env.__stack_low [ undefined binding=weak vis=default ]
    // and libc++abi.so: env.__cxa_thread_atexit_impl [ undefined binding=weak vis=default ].
    let (info, raw) = load("libc.so");
    let d = info.dylink.as_ref().unwrap();
    let entries: Vec<(&str, &str, bool, bool)> = d
        .import_info
        .iter()
        .map(|e| {
            (
                e.module.as_str(),
                e.field.as_str(),
                e.flags.is_weak(),
                e.flags.is_undefined(),
            )
        })
        .collect();
    assert_eq!(
        entries,
        [
            ("env", "__main_argc_argv", true, true),
            ("env", "__stack_high", true, true),
            ("env", "__stack_low", true, true)
        ]
    );
    assert_eq!(raw.import_info.len(), 3);
    // __main_argc_argv is imported as a function: weak. __stack_high/__stack_low are data,
    // imported only as GOT.mem entries.
    let main = info
        .imports
        .iter()
        .find(|i| i.module == "env" && i.field == "__main_argc_argv")
        .unwrap();
    assert!(main.is_weak());
    assert_eq!(
        main.class,
        ImportClass::EnvFunction("__main_argc_argv".into())
    );
    for f in ["__stack_high", "__stack_low"] {
        let got = info
            .imports
            .iter()
            .find(|i| i.module == "GOT.mem" && i.field == f)
            .unwrap();
        assert_eq!(got.class, ImportClass::GotMem(f.into()));
        // IMPORT_INFO names the symbol as `env.X`; its GOT import carries the weak binding.
        assert!(got.is_weak(), "{f}");
    }
    let nm = in_corpus(&["nm", "--undefined-only", "libc.so"]);
    assert!(
        stdout(&nm).contains("         w function __main_argc_argv (i32, i32) -> (i32)\n"),
        "{}",
        stdout(&nm)
    );

    let (abi, _) = load("libc++abi.so");
    let weak: Vec<&str> = abi
        .imports
        .iter()
        .filter(|i| i.is_weak())
        .map(|i| i.field.as_str())
        .collect();
    // Weak as a call (env) and as an address (GOT.func).
    assert_eq!(
        weak,
        ["__cxa_thread_atexit_impl", "__cxa_thread_atexit_impl"]
    );
    // The other libraries declare no weak imports.
    for lib in LIBRARIES
        .iter()
        .filter(|l| !matches!(**l, "libc.so" | "libc++abi.so"))
    {
        let (info, raw) = load(lib);
        assert!(raw.import_info.is_empty(), "{lib}");
        assert_eq!(
            info.imports.iter().filter(|i| i.is_weak()).count(),
            0,
            "{lib}"
        );
    }
}

#[test]
fn libc_env_functions_it_also_exports() {
    let (info, raw) = load("libc.so");
    // From the model: env function imports whose name is also a defined export.
    let defined: BTreeSet<&str> = info.defined_symbols().map(|e| e.name.as_str()).collect();
    let env_funcs: Vec<&str> = info
        .imports
        .iter()
        .filter_map(|i| match &i.class {
            ImportClass::EnvFunction(s) => Some(s.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(env_funcs.len(), 174);
    let reexported: Vec<&str> = env_funcs
        .iter()
        .copied()
        .filter(|s| defined.contains(s))
        .collect();
    assert_eq!(reexported.len(), 173);
    let not: Vec<&str> = env_funcs
        .iter()
        .copied()
        .filter(|s| !defined.contains(s))
        .collect();
    assert_eq!(not, ["__main_argc_argv"]);
    for s in ["pthread_self", "strchrnul", "isatty", "lseek", "newlocale"] {
        assert!(reexported.contains(&s), "{s}");
    }
    // The same from the raw sections (wasm-objdump -x agrees: 174 env functions, 173 exported).
    let raw_exports: BTreeSet<&str> = raw.exports.iter().map(|(n, _, _)| n.as_str()).collect();
    let raw_count = raw
        .imports
        .iter()
        .filter(|(m, f, k)| {
            m == "env" && *k == EntityKind::Func && raw_exports.contains(f.as_str())
        })
        .count();
    assert_eq!(raw_count, 173);
}

#[test]
fn model_matches_raw_sections() {
    for lib in LIBRARIES {
        let (info, raw) = load(lib);
        assert!(raw.dylink0, "{lib}");
        let imports: Vec<(String, String, EntityKind)> = info
            .imports
            .iter()
            .map(|i| (i.module.clone(), i.field.clone(), i.kind))
            .collect();
        assert_eq!(imports, raw.imports, "{lib}: imports");
        let exports: Vec<(String, EntityKind, u32)> = info
            .exports
            .iter()
            .map(|e| (e.name.clone(), e.kind, e.index))
            .collect();
        assert_eq!(exports, raw.exports, "{lib}: exports");
        assert_eq!(info.start, raw.start, "{lib}: start");
        assert_eq!(
            info.defined_functions, raw.functions,
            "{lib}: defined functions"
        );
        let d = info.dylink.as_ref().unwrap();
        let m = d.mem_info;
        assert_eq!(
            Some([
                m.memory_size,
                m.memory_align_log2,
                m.table_size,
                m.table_align_log2
            ]),
            raw.mem_info,
            "{lib}: mem_info"
        );
        assert_eq!(d.needed, raw.needed, "{lib}: needed");
        assert_eq!(d.runtime_path, raw.runtime_path, "{lib}: runtime_path");
        let ei: Vec<(String, u32)> = d
            .export_info
            .iter()
            .map(|e| (e.name.clone(), e.flags.0))
            .collect();
        assert_eq!(ei, raw.export_info, "{lib}: export_info");
        let ii: Vec<(String, String, u32)> = d
            .import_info
            .iter()
            .map(|e| (e.module.clone(), e.field.clone(), e.flags.0))
            .collect();
        assert_eq!(ii, raw.import_info, "{lib}: import_info");
        assert!(d.unknown_subsections.is_empty(), "{lib}");
        assert_eq!(info.name, raw.name, "{lib}: name section");
        assert_eq!(
            info.size as u64,
            std::fs::metadata(path(lib)).unwrap().len()
        );
        // The CLI's totals are the same counts.
        let v = inspect_json(lib);
        assert_eq!(v["imports"]["total"], raw.imports.len(), "{lib}");
        assert_eq!(v["exports"]["total"], raw.exports.len(), "{lib}");
    }
}

#[test]
fn every_library_is_a_shared_library() {
    for lib in LIBRARIES {
        let (info, raw) = load(lib);
        // None of them exports `_start` or `main`.
        assert!(
            !raw.exports
                .iter()
                .any(|(n, _, _)| n == "_start" || n == "main"),
            "{lib}"
        );
        if lib == "libc.so" {
            // wasi-libc's `__main_void` helper is exported, but it is not an entry point.
            assert!(raw.exports.iter().any(|(n, _, _)| n == "__main_void"));
        }
        assert_eq!(info.kind, ModuleKind::SharedLibrary, "{lib}");
        assert_eq!(inspect_json(lib)["kind"], "shared-library", "{lib}");
    }
}

/// The transitive closure of NEEDED from the raw sections, breadth first, each name once.
fn closure(root: &str, raws: &HashMap<&str, raw::Module>) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    let mut queue = VecDeque::from([root.to_string()]);
    while let Some(lib) = queue.pop_front() {
        for n in &raws[lib.as_str()].needed {
            if !seen.contains(n) {
                seen.push(n.clone());
                queue.push_back(n.clone());
            }
        }
    }
    seen
}

#[test]
fn ldd_libpython() {
    let o = in_corpus(&["ldd", "--no-default-dirs", "-L", ".", "libpython3.14.so"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stderr(&o), "");
    assert_eq!(
        stdout(&o),
        "\tlibwasi-emulated-signal.so => ./libwasi-emulated-signal.so\n\
         \tlibwasi-emulated-getpid.so => ./libwasi-emulated-getpid.so\n\
         \tlibwasi-emulated-process-clocks.so => ./libwasi-emulated-process-clocks.so\n\
         \tlibdl.so => ./libdl.so\n\
         \tlibc.so => ./libc.so\n"
    );
    // With -L naming the corpus by absolute path, from elsewhere.
    let corpus = support::corpus();
    let o = wasmlink_in(
        &[
            "ldd",
            "-L",
            corpus.to_str().unwrap(),
            corpus.join("libpython3.14.so").to_str().unwrap(),
        ],
        Some(Path::new("/")),
        &[],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o).lines().count(), 5);
    assert!(stdout(&o).contains(&format!(
        "\tlibc.so => {}\n",
        corpus.join("libc.so").display()
    )));
}

#[test]
fn ldd_every_library() {
    let raws: HashMap<&str, raw::Module> = LIBRARIES
        .iter()
        .map(|l| (*l, raw::read(&std::fs::read(path(l)).unwrap())))
        .collect();
    let mut total = 0;
    for lib in LIBRARIES {
        let o = in_corpus(&["ldd", "--no-default-dirs", "-L", ".", lib]);
        assert_eq!(o.status.code(), Some(0), "{lib}: {}", stderr(&o));
        assert_eq!(stderr(&o), "", "{lib}");
        let expected: String = closure(lib, &raws)
            .iter()
            .map(|n| format!("\t{n} => ./{n}\n"))
            .collect();
        assert_eq!(stdout(&o), expected, "{lib}");
        total += expected.lines().count();
    }
    // libc.so needs nothing; the componentize-py runtimes pull in libpython and its five.
    assert_eq!(closure("libc.so", &raws).len(), 0);
    assert_eq!(
        closure("libcomponentize_py_runtime_sync.so", &raws).len(),
        6
    );
    assert!(total > 20, "{total}");
}

/// What `nm` must list as undefined, from the raw import section: every import except the
/// linker-provided memory, table and `env` globals.
fn raw_undefined(raw: &raw::Module) -> usize {
    const LINKER_GLOBALS: [&str; 8] = [
        "__stack_pointer",
        "__memory_base",
        "__table_base",
        "__tls_base",
        "__heap_base",
        "__heap_end",
        "__stack_high",
        "__stack_low",
    ];
    raw.imports
        .iter()
        .filter(|(m, f, k)| match k {
            EntityKind::Memory => false,
            EntityKind::Table => !(m == "env" || f == "__indirect_function_table"),
            EntityKind::Global => !(m == "env" && LINKER_GLOBALS.contains(&f.as_str())),
            EntityKind::Func | EntityKind::Tag => true,
        })
        .count()
}

#[test]
fn nm_every_library() {
    for lib in LIBRARIES {
        let (info, raw) = load(lib);
        let o = in_corpus(&["nm", lib]);
        assert_eq!(o.status.code(), Some(0), "{lib}: {}", stderr(&o));
        assert_eq!(stderr(&o), "", "{lib}");
        let out = stdout(&o);
        assert!(!out.is_empty(), "{lib}");
        let mut letters: BTreeMap<char, usize> = BTreeMap::new();
        for line in out.lines() {
            let letter = line.chars().nth(9).unwrap();
            *letters.entry(letter).or_default() += 1;
        }
        let undefined =
            letters.get(&'U').copied().unwrap_or(0) + letters.get(&'w').copied().unwrap_or(0);
        let wasi = info
            .imports
            .iter()
            .filter(|i| {
                matches!(
                    i.class,
                    ImportClass::WasiP1(_) | ImportClass::Wasi2(_) | ImportClass::Module(_)
                )
            })
            .count();
        assert_eq!(
            undefined,
            info.undefined_symbols().count() + wasi,
            "{lib}: {letters:?}"
        );
        assert_eq!(undefined, raw_undefined(&raw), "{lib}: {letters:?}");
        // Every export but memories and tables is listed as defined.
        let defined = out.lines().count() - undefined;
        let raw_defined = raw
            .exports
            .iter()
            .filter(|(_, k, _)| !matches!(k, EntityKind::Memory | EntityKind::Table))
            .count();
        assert_eq!(defined, raw_defined, "{lib}: {letters:?}");
        assert_eq!(
            defined,
            info.exports
                .iter()
                .filter(|e| !matches!(e.class, ExportClass::Memory | ExportClass::Table))
                .count()
        );
        // Defined lines carry an 8-digit hex value, undefined lines none.
        for line in out.lines() {
            let (value, rest) = line.split_at(8);
            let letter = rest.chars().nth(1).unwrap();
            if matches!(letter, 'U' | 'w') {
                assert_eq!(value, "        ", "{lib}: {line}");
            } else {
                assert!(
                    value.chars().all(|c| c.is_ascii_hexdigit()),
                    "{lib}: {line}"
                );
            }
        }
    }
    // Spot checks against wasm-objdump -x -j Export / -j Import.
    let nm = stdout(&in_corpus(&["nm", "libc.so"]));
    assert!(
        nm.contains("00000162 T function __main_void () -> (i32)\n"),
        "func[354]"
    );
    assert!(
        nm.contains("00000123 T init     _initialize () -> ()\n"),
        "func[291]"
    );
    assert!(nm.contains("         U got-mem  errno\n"));
    assert!(nm.contains("         U got-func __wasilibc_find_relpath_alloc\n"));
    assert!(
        nm.contains(
            "         U wasi-0.2 wasi:cli/environment@0.2.0::get-environment (i32) -> ()\n"
        )
    );
}
