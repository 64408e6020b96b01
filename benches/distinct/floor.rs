//! The floor under issue 18 item 1: what raw wasmtime, with no wasmlink in the way, costs to
//! load N distinct side modules, cold (compiled in memory) and warm (mapped from serialized
//! artifacts), each instantiated against placeholder imports.
//!
//! ```text
//! cargo build --release --example load-floor
//! target/release/examples/load-floor DIR N SCRATCH [cranelift|cranelift-serial|winch]
//! ```
//!
//! DIR holds `lib_0.so` .. `lib_{N-1}.so` (scripts/bench-distinct.sh builds them); SCRATCH is
//! an empty directory for the warm pass's artifacts. Prints, per library (mean, microseconds):
//!
//! - `cold_us`: read the file, `Module::new` (compile), instantiate;
//! - `warm_us`: `Module::deserialize_file` of the artifact `Module::serialize` wrote (untimed),
//!   instantiate.
//!
//! Nothing else a loader must do is timed: no search path, no dylink.0 parse, no hashing, no
//! symbol resolution, no relocations, no constructor, no call. So wasmlink can at best approach
//! these figures; the script prints them beside wasmlink's, native `dlopen` and Emscripten's in
//! the same run, which says how much of a gap is wasmtime's own.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use wasmtime::{
    Config, Engine, ExternType, Func, Global, Linker, Memory, MemoryType, Module, Store, Strategy,
    Table, TableType, Val, ValType,
};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: load-floor DIR N SCRATCH [cranelift|cranelift-serial|winch]");
        std::process::exit(2);
    }
    let dir = PathBuf::from(&args[1]);
    let n: usize = args[2].parse().unwrap_or_else(|_| {
        eprintln!("load-floor: N: not a number: {}", args[2]);
        std::process::exit(2)
    });
    let scratch = PathBuf::from(&args[3]);
    let compiler = args.get(4).map_or("cranelift", String::as_str);
    let mut config = Config::new();
    match compiler {
        "cranelift" => {}
        "cranelift-serial" => {
            config.parallel_compilation(false);
        }
        "winch" => {
            config.strategy(Strategy::Winch);
        }
        other => {
            eprintln!("load-floor: unknown compiler {other}");
            std::process::exit(2);
        }
    }
    let engine = Engine::new(&config).unwrap_or_else(|e| {
        eprintln!("load-floor: {compiler}: {e}");
        std::process::exit(2)
    });
    let libs: Vec<PathBuf> = (0..n).map(|i| dir.join(format!("lib_{i}.so"))).collect();

    // Cold: every module compiled in memory (distinct bytes: no cache could answer).
    let mut world = World::new(&engine);
    let t = Instant::now();
    for lib in &libs {
        let bytes = std::fs::read(lib).unwrap_or_else(|e| fail(lib, e));
        let module = Module::new(&engine, &bytes).unwrap_or_else(|e| fail(lib, e));
        world.instantiate(&module, lib);
    }
    let cold = t.elapsed().as_secs_f64() * 1e6 / n as f64;

    // Warm: the artifacts written first (untimed), then mapped, in a fresh store.
    let artifacts: Vec<PathBuf> = libs
        .iter()
        .enumerate()
        .map(|(i, lib)| {
            let bytes = std::fs::read(lib).unwrap_or_else(|e| fail(lib, e));
            let art = scratch.join(format!("lib_{i}.cwasm"));
            let ser = engine
                .precompile_module(&bytes)
                .unwrap_or_else(|e| fail(lib, e));
            std::fs::write(&art, ser).unwrap_or_else(|e| fail(&art, e));
            art
        })
        .collect();
    let mut world = World::new(&engine);
    let t = Instant::now();
    for art in &artifacts {
        // SAFETY: the artifacts were written by this engine just above, in a private directory.
        #[allow(unsafe_code, reason = "mapping artifacts this program wrote")]
        let module =
            unsafe { Module::deserialize_file(&engine, art) }.unwrap_or_else(|e| fail(art, e));
        world.instantiate(&module, art);
    }
    let warm = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    println!("compiler {compiler}");
    println!("cold_us {cold:.1}");
    println!("warm_us {warm:.1}");
}

fn fail(path: &Path, e: impl std::fmt::Display) -> ! {
    eprintln!("load-floor: {}: {e}", path.display());
    std::process::exit(1)
}

/// One store with one memory and one table, as a dynamic-linking process has, and a
/// placeholder for every other import (globals of the imported type, functions returning zeros).
struct World {
    store: Store<()>,
    linker: Linker<()>,
    defined: HashSet<(String, String)>,
    memory: Memory,
    table: Table,
}

impl World {
    fn new(engine: &Engine) -> World {
        let mut store = Store::new(engine, ());
        let memory = Memory::new(&mut store, MemoryType::new(256, None)).expect("memory");
        let table = Table::new(
            &mut store,
            TableType::new(wasmtime::RefType::FUNCREF, 4096, None),
            wasmtime::Ref::Func(None),
        )
        .expect("table");
        let mut linker = Linker::new(engine);
        linker.allow_shadowing(true);
        World {
            store,
            linker,
            defined: HashSet::new(),
            memory,
            table,
        }
    }

    fn instantiate(&mut self, module: &Module, path: &Path) {
        for import in module.imports() {
            let key = (import.module().to_string(), import.name().to_string());
            if self.defined.contains(&key) {
                continue;
            }
            let (m, name) = (import.module(), import.name());
            let r = match import.ty() {
                ExternType::Memory(_) => self.linker.define(&mut self.store, m, name, self.memory),
                ExternType::Table(_) => self.linker.define(&mut self.store, m, name, self.table),
                ExternType::Global(g) => {
                    let v = zero(g.content());
                    let g = Global::new(&mut self.store, g.clone(), v).expect("global");
                    self.linker.define(&mut self.store, m, name, g)
                }
                ExternType::Func(f) => {
                    let zeros: Vec<Val> = f.results().map(|t| zero(&t)).collect();
                    let f = Func::new(&mut self.store, f.clone(), move |_, _, results| {
                        results.clone_from_slice(&zeros);
                        Ok(())
                    });
                    self.linker.define(&mut self.store, m, name, f)
                }
                ExternType::Tag(_) => continue,
            };
            r.unwrap_or_else(|e| fail(path, e));
            self.defined.insert(key);
        }
        self.linker
            .instantiate(&mut self.store, module)
            .unwrap_or_else(|e| fail(path, e));
    }
}

fn zero(t: &ValType) -> Val {
    match t {
        ValType::I64 => Val::I64(0),
        ValType::F32 => Val::F32(0),
        ValType::F64 => Val::F64(0),
        _ => Val::I32(0),
    }
}
