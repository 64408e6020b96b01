//! Plain-module linking: the host as the linker.
//!
//! Modules without `dylink.0` import functions, globals, memories and tables from other modules
//! by module name (`(import "math" "add" (func ...))`). Each module name is resolved to a file:
//! `--module NAME=PATH` if given, else `NAME.wasm` on the search path. Every module is
//! instantiated once, dependencies first; a cycle is an error that names it. A module's own
//! memory stays its own unless it imports another module's. WASI preview 1 is supplied to all;
//! as in wasmtime-wasi, a module calling WASI must export its memory as `memory` (re-exporting
//! an imported one is fine).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use wasmlink_dylink::{ImportClass, ModuleInfo};
use wasmtime::{Engine, Instance, Linker, Module, Store, Val};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p1::WasiP1Ctx;

use crate::process::{LinkError, ModuleCache, ProcessBuilder};
use crate::resolve::SearchPath;

/// A set of plain modules linked by name, ready to run.
pub struct PlainProgram {
    store: Store<WasiP1Ctx>,
    root: Instance,
    root_name: String,
    /// Module names in instantiation order (dependencies first, root last).
    pub order: Vec<String>,
}

/// Which modules a module imports from (other than `env`, WASI and GOT).
fn module_deps(info: &ModuleInfo) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for i in &info.imports {
        let other = match &i.class {
            ImportClass::Module(_) => true,
            ImportClass::Memory | ImportClass::Table => i.module != "env",
            _ => false,
        };
        if other && !out.contains(&i.module) {
            out.push(i.module.clone());
        }
    }
    out
}

/// Whether `info` imports anything from another module by name.
pub fn imports_other_modules(info: &ModuleInfo) -> bool {
    !module_deps(info).is_empty()
}

struct Node {
    path: PathBuf,
    bytes: Vec<u8>,
    deps: Vec<String>,
}

impl PlainProgram {
    /// Resolves, orders and instantiates `root` and every module it imports from.
    ///
    /// `explicit` maps module names to files (`--module NAME=PATH`); other names are looked up
    /// as `NAME.wasm` in the search path's directories.
    ///
    /// # Errors
    /// A module not found (with the places searched), a cycle (naming it), an invalid module,
    /// or an import the named module does not export (wasmtime's message, with the module).
    pub fn load(
        engine: &Engine,
        root: &Path,
        explicit: &HashMap<String, PathBuf>,
        search: &SearchPath,
        wasi: WasiCtxBuilder,
    ) -> Result<PlainProgram, LinkError> {
        let cache = ModuleCache::global();
        Self::load_with_cache(engine, root, explicit, search, wasi, Some(&cache))
    }

    /// As [`load`](Self::load), with `module_cache` (`None`: none) instead of
    /// [`ModuleCache::global`] for the compiled modules.
    ///
    /// # Errors
    /// As [`load`](Self::load).
    pub fn load_with_cache(
        engine: &Engine,
        root: &Path,
        explicit: &HashMap<String, PathBuf>,
        search: &SearchPath,
        wasi: WasiCtxBuilder,
        module_cache: Option<&ModuleCache>,
    ) -> Result<PlainProgram, LinkError> {
        let mut wasi = wasi;
        let root_name = root
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut nodes: HashMap<String, Node> = HashMap::new();
        let mut todo = vec![(root_name.clone(), root.to_path_buf())];
        while let Some((name, path)) = todo.pop() {
            if nodes.contains_key(&name) {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(|e| LinkError::Io {
                path: path.clone(),
                message: e.to_string().to_lowercase(),
            })?;
            let info = ModuleInfo::parse(&bytes).map_err(|e| LinkError::BadModule {
                path: path.clone(),
                message: e.to_string(),
            })?;
            let deps = module_deps(&info);
            for d in &deps {
                if nodes.contains_key(d) || todo.iter().any(|(n, _)| n == d) {
                    continue;
                }
                let p = match explicit.get(d) {
                    Some(p) => p.clone(),
                    None => find_module(search, d, &path)?,
                };
                todo.push((d.clone(), p));
            }
            nodes.insert(name, Node { path, bytes, deps });
        }
        let order = topo_order(&nodes, &root_name)?;
        let mut linker: Linker<WasiP1Ctx> = Linker::new(engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |c| c)
            .map_err(|e| LinkError::runtime("wasmlink", "wasi setup", e))?;
        let mut store = Store::new(engine, wasi.build_p1());
        let mut root_instance = None;
        for name in &order {
            let node = &nodes[name];
            let compile = || {
                Module::new(engine, &node.bytes).map_err(|e| LinkError::BadModule {
                    path: node.path.clone(),
                    message: format!("{e:#}"),
                })
            };
            let module = match &module_cache {
                Some(c) => c.get_or_compile(engine, &node.bytes, compile)?,
                None => compile()?,
            };
            let instance = linker
                .instantiate(&mut store, &module)
                .map_err(|e| LinkError::runtime(name, "instantiate", e))?;
            if *name == root_name {
                root_instance = Some(instance);
            } else {
                linker
                    .instance(&mut store, name, instance)
                    .map_err(|e| LinkError::runtime(name, "define", e))?;
                // A reactor initialises itself once, before its dependents run.
                if let Some(init) = instance
                    .get_typed_func::<(), ()>(&mut store, "_initialize")
                    .ok()
                {
                    init.call(&mut store, ())
                        .map_err(|e| LinkError::runtime(name, "_initialize", e))?;
                }
            }
            tracing::debug!(target: "wasmlink::libs", "instantiated module {name} from {}", node.path.display());
        }
        Ok(PlainProgram {
            store,
            root: root_instance.expect("root is in the order"),
            root_name,
            order,
        })
    }

    /// Runs the root's `_start` (or `main`), returning the exit status.
    ///
    /// # Errors
    /// A trap, as [`LinkError::Runtime`].
    pub fn run_main(&mut self) -> Result<i32, LinkError> {
        for entry in ["_start", "main"] {
            let Some(f) = self.root.get_func(&mut self.store, entry) else {
                continue;
            };
            let n = f.ty(&self.store).results().len();
            let mut out = vec![Val::I32(0); n];
            let args: Vec<Val> = f.ty(&self.store).params().map(|_| Val::I32(0)).collect();
            return match f.call(&mut self.store, &args, &mut out) {
                Ok(()) => Ok(out.first().and_then(Val::i32).unwrap_or(0)),
                Err(e) => match LinkError::runtime(&self.root_name, entry, e) {
                    LinkError::Exit(code) => Ok(code),
                    other => Err(other),
                },
            };
        }
        Err(LinkError::NoSuchSymbol {
            symbol: "_start".to_string(),
            library: self.root_name.clone(),
        })
    }

    /// Calls an export of the root module.
    ///
    /// # Errors
    /// [`LinkError::NoSuchSymbol`] or a trap.
    pub fn call(&mut self, name: &str, args: &[Val]) -> Result<Vec<Val>, LinkError> {
        let f =
            self.root
                .get_func(&mut self.store, name)
                .ok_or_else(|| LinkError::NoSuchSymbol {
                    symbol: name.to_string(),
                    library: self.root_name.clone(),
                })?;
        let mut out = vec![Val::I32(0); f.ty(&self.store).results().len()];
        f.call(&mut self.store, args, &mut out)
            .map_err(|e| LinkError::runtime(&self.root_name, name, e))?;
        Ok(out)
    }
}

fn find_module(search: &SearchPath, name: &str, requester: &Path) -> Result<PathBuf, LinkError> {
    let file = format!("{name}.wasm");
    let mut searched = Vec::new();
    for dir in search.dirs_for(Some(requester), &[]) {
        let p = dir.join(&file);
        if p.is_file() {
            return Ok(p);
        }
        searched.push(p);
    }
    Err(LinkError::NotFound(crate::resolve::NotFound {
        name: file,
        searched,
        skipped: Vec::new(),
    }))
}

/// Dependencies first; a cycle is an error naming its members in order.
fn topo_order(nodes: &HashMap<String, Node>, root: &str) -> Result<Vec<String>, LinkError> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit(
        n: &str,
        nodes: &HashMap<String, Node>,
        marks: &mut HashMap<String, Mark>,
        stack: &mut Vec<String>,
        out: &mut Vec<String>,
    ) -> Result<(), LinkError> {
        match marks.get(n) {
            Some(Mark::Done) => return Ok(()),
            Some(Mark::Visiting) => {
                let start = stack.iter().position(|s| s == n).unwrap_or(0);
                let mut cycle: Vec<String> = stack[start..].to_vec();
                cycle.push(n.to_string());
                return Err(LinkError::BadModule {
                    path: nodes[n].path.clone(),
                    message: format!("module import cycle: {}", cycle.join(" -> ")),
                });
            }
            None => {}
        }
        marks.insert(n.to_string(), Mark::Visiting);
        stack.push(n.to_string());
        for d in &nodes[n].deps {
            visit(d, nodes, marks, stack, out)?;
        }
        stack.pop();
        marks.insert(n.to_string(), Mark::Done);
        out.push(n.to_string());
        Ok(())
    }
    let mut out = Vec::new();
    visit(root, nodes, &mut HashMap::new(), &mut Vec::new(), &mut out)?;
    Ok(out)
}

impl ProcessBuilder {
    /// Loads plain modules linked by module name (see [`crate::plain`]): `root` and every
    /// module it imports from, `explicit` naming files for some module names.
    ///
    /// # Errors
    /// As [`PlainProgram::load`].
    pub fn load_plain(
        self,
        root: &Path,
        explicit: &HashMap<String, PathBuf>,
    ) -> Result<PlainProgram, LinkError> {
        let engine = self.engine_for_load()?;
        let (wasi, search, cache) = self.parts_for_load()?;
        PlainProgram::load_with_cache(&engine, root, explicit, search, wasi, cache)
    }
}
