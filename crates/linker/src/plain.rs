//! Plain-module linking: the host as the linker.
//!
//! Modules without `dylink.0` import functions, globals, memories and tables from other modules
//! by module name (`(import "math" "add" (func ...))`). Each module name is resolved to files:
//! those given as `--module NAME=PATH`, else `NAME.wasm` on the search path. Every module is
//! instantiated once, dependencies first; a cycle is an error that names it. A module's own
//! memory stays its own unless it imports another module's. WASI preview 1 is supplied to all;
//! as in wasmtime-wasi, a module calling WASI must export its memory as `memory` (re-exporting
//! an imported one is fine).
//!
//! # A namespace assembled from several modules
//!
//! A name given more than once (`--module env=a.wasm --module env=b.wasm`) is one flat
//! namespace built from the exports of its modules in the order given, a later export replacing
//! an earlier one of the same name, as JavaScript's `Object.assign({}, a.exports, b.exports)`
//! does. Any name works, `env` included: a module importing `env::f` then gets `f` from the
//! last of those modules that exports it. A module of the namespace may import from the
//! namespace itself what the modules before it export. An import that nothing provides fails
//! the load with one line naming the importing file, the module and the field
//! ([`LinkError::UnknownImport`]).

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

/// Which modules a module imports from: other than `env`, WASI and GOT, unless the module
/// name is one of `given` (`--module NAME=PATH`).
fn module_deps(info: &ModuleInfo, given: &[(String, PathBuf)]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for i in &info.imports {
        let other = given.iter().any(|(n, _)| *n == i.module)
            || match &i.class {
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
    !module_deps(info, &[]).is_empty()
}

/// One module name: the files whose exports make up its namespace, in order.
struct Node {
    members: Vec<Member>,
    /// Other module names the members import from.
    deps: Vec<String>,
}

struct Member {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl PlainProgram {
    /// Resolves, orders and instantiates `root` and every module it imports from.
    ///
    /// `explicit` gives files for module names (`--module NAME=PATH`, in order; a name given
    /// more than once is the namespace of all its files, later exports replacing earlier ones);
    /// other names are looked up as `NAME.wasm` in the search path's directories.
    ///
    /// # Errors
    /// A module not found (with the places searched), a cycle (naming it), an invalid module,
    /// an import nothing provides ([`LinkError::UnknownImport`]), or one whose type differs
    /// (wasmtime's message, with the module).
    pub fn load(
        engine: &Engine,
        root: &Path,
        explicit: &[(String, PathBuf)],
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
        explicit: &[(String, PathBuf)],
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
        let mut todo = vec![(root_name.clone(), vec![root.to_path_buf()])];
        while let Some((name, paths)) = todo.pop() {
            if nodes.contains_key(&name) {
                continue;
            }
            let mut node = Node {
                members: Vec::new(),
                deps: Vec::new(),
            };
            for path in paths {
                let bytes = std::fs::read(&path).map_err(|e| LinkError::Io {
                    path: path.clone(),
                    message: e.to_string().to_lowercase(),
                })?;
                let info = ModuleInfo::parse(&bytes).map_err(|e| LinkError::BadModule {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
                // What a member imports from its own namespace comes from the members before it.
                for d in module_deps(&info, explicit) {
                    if d == name || node.deps.contains(&d) {
                        continue;
                    }
                    if !nodes.contains_key(&d) && !todo.iter().any(|(n, _)| *n == d) {
                        let given: Vec<PathBuf> = explicit
                            .iter()
                            .filter(|(n, _)| *n == d)
                            .map(|(_, p)| p.clone())
                            .collect();
                        let files = if given.is_empty() {
                            vec![find_module(search, &d, &path)?]
                        } else {
                            given
                        };
                        todo.push((d.clone(), files));
                    }
                    node.deps.push(d);
                }
                node.members.push(Member { path, bytes });
            }
            nodes.insert(name, node);
        }
        let order = topo_order(&nodes, &root_name)?;
        let mut linker: Linker<WasiP1Ctx> = Linker::new(engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |c| c)
            .map_err(|e| LinkError::runtime("wasmlink", "wasi setup", e))?;
        // A later module of a namespace replaces an earlier one's exports (`Object.assign`).
        linker.allow_shadowing(true);
        let mut store = Store::new(engine, wasi.build_p1());
        let mut root_instance = None;
        for name in &order {
            for (k, member) in nodes[name].members.iter().enumerate() {
                let compile = || {
                    Module::new(engine, &member.bytes).map_err(|e| LinkError::BadModule {
                        path: member.path.clone(),
                        message: format!("{e:#}"),
                    })
                };
                let module = match &module_cache {
                    Some(c) => c.get_or_compile(engine, &member.bytes, compile)?,
                    None => compile()?,
                };
                check_imports(&linker, &mut store, &module, &member.path, |m| {
                    let before = if m == name { k } else { usize::MAX };
                    nodes
                        .get(m)
                        .map(|n| {
                            n.members
                                .iter()
                                .take(before)
                                .map(|x| x.path.clone())
                                .collect()
                        })
                        .unwrap_or_default()
                })?;
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
                    // (`get_func` first: a failed `get_typed_func` builds an error, and
                    // under RUST_BACKTRACE a backtrace, for every module without one.)
                    if let Some(Ok(init)) = instance
                        .get_func(&mut store, "_initialize")
                        .map(|f| f.typed::<(), ()>(&store))
                    {
                        init.call(&mut store, ())
                            .map_err(|e| LinkError::runtime(name, "_initialize", e))?;
                    }
                }
                tracing::debug!(target: "wasmlink::libs", "instantiated module {name} from {}", member.path.display());
            }
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

/// Fails with [`LinkError::UnknownImport`] for the first import of `module` (read from
/// `path`) that nothing defined so far provides; `files(m)` are the files of module name `m`
/// instantiated so far.
fn check_imports(
    linker: &Linker<WasiP1Ctx>,
    store: &mut Store<WasiP1Ctx>,
    module: &Module,
    path: &Path,
    files: impl Fn(&str) -> Vec<PathBuf>,
) -> Result<(), LinkError> {
    for imp in module.imports() {
        if linker.get(&mut *store, imp.module(), imp.name()).is_ok() {
            continue;
        }
        let files = files(imp.module());
        let reason = if files.is_empty() {
            format!(
                "has not been defined (no module provides `{}`; give one with --module {}=FILE)",
                imp.module(),
                imp.module()
            )
        } else {
            let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
            format!("is exported by none of {}", names.join(", "))
        };
        return Err(LinkError::UnknownImport {
            path: path.to_path_buf(),
            module: imp.module().to_string(),
            field: imp.name().to_string(),
            reason,
        });
    }
    Ok(())
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
                    path: nodes[n].members[0].path.clone(),
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
    /// module it imports from, `explicit` naming files for some module names (a name given
    /// more than once is a namespace assembled from all its files, in order).
    ///
    /// # Errors
    /// As [`PlainProgram::load`].
    pub fn load_plain(
        self,
        root: &Path,
        explicit: &[(String, PathBuf)],
    ) -> Result<PlainProgram, LinkError> {
        let engine = self.engine_for_load()?;
        let (wasi, search, cache) = self.parts_for_load()?;
        PlainProgram::load_with_cache(&engine, root, explicit, search, wasi, cache)
    }
}
