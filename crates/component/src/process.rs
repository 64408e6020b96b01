//! A component instantiated with WASI 0.2, called with WAVE values.

use std::path::{Path, PathBuf};
use std::time::Duration;

use wasmtime::component::{Component, Func, Instance, Linker, ResourceTable, Val};
use wasmtime::{Engine, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wit_parser::decoding::DecodedWasm;
use wit_parser::WorldItem;

use crate::describe::type_name;
use crate::error::ComponentError;

/// Limits of one component instance. Fuel and the timeout need an engine that meters them
/// (`wasmlink_engine::shared_engine_with` with fuel or epoch metering).
#[derive(Debug, Clone, Default)]
pub struct ComponentLimits {
    /// Linear memory per memory, in bytes.
    pub memory: Option<usize>,
    /// Fuel for the instance's whole life.
    pub fuel: Option<u64>,
    /// Wall-clock time for the instance's whole life.
    pub timeout: Option<Duration>,
}

struct Ctx {
    wasi: WasiCtx,
    table: ResourceTable,
    limits: StoreLimits,
}

impl WasiView for Ctx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// An exported function's parameters as WIT: `(name, type)`.
type Params = Vec<(String, String)>;

/// A component instantiated in its own store, with WASI 0.2 from the given context.
pub struct ComponentProcess {
    path: PathBuf,
    store: Store<Ctx>,
    component: Component,
    instance: Instance,
    /// Exported functions (`greet`, `ns:pkg/iface@1.0.0#func`) and their WIT parameters.
    functions: Vec<(String, Params)>,
    limits: ComponentLimits,
}

impl ComponentProcess {
    /// Reads, compiles and instantiates the component at `path`. Its WASI 0.2 imports are
    /// wasmtime-wasi's, on the context `wasi` builds; any other import is an error naming it.
    ///
    /// # Errors
    /// [`ComponentError::Io`], [`ComponentError::Invalid`], [`ComponentError::Compile`] or
    /// [`ComponentError::Link`].
    pub fn load(
        engine: &Engine,
        path: &Path,
        mut wasi: WasiCtxBuilder,
        limits: ComponentLimits,
    ) -> Result<Self, ComponentError> {
        let bytes = std::fs::read(path).map_err(|e| ComponentError::Io {
            path: path.to_path_buf(),
            message: e.to_string().to_lowercase(),
        })?;
        if !crate::is_component(&bytes) {
            return Err(ComponentError::Invalid {
                message: format!("{}: not a WebAssembly component", path.display()),
            });
        }
        let functions = exported_functions(&bytes).map_err(|message| ComponentError::Invalid {
            message: format!("{}: {message}", path.display()),
        })?;
        let component = Component::new(engine, &bytes).map_err(|e| ComponentError::Compile {
            path: path.to_path_buf(),
            message: format!("{e:#}"),
        })?;
        let mut linker: Linker<Ctx> = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| ComponentError::Link {
            path: path.to_path_buf(),
            message: format!("{e:#}"),
        })?;
        let mut store_limits = StoreLimitsBuilder::new();
        if let Some(m) = limits.memory {
            store_limits = store_limits.memory_size(m);
        }
        let mut store = Store::new(
            engine,
            Ctx {
                wasi: wasi.build(),
                table: ResourceTable::new(),
                limits: store_limits.build(),
            },
        );
        store.limiter(|c| &mut c.limits);
        if let Some(fuel) = limits.fuel {
            store.set_fuel(fuel).map_err(|e| ComponentError::Link {
                path: path.to_path_buf(),
                message: format!("--fuel needs an engine that counts fuel: {e}"),
            })?;
        }
        if let Some(t) = limits.timeout {
            store.set_epoch_deadline(1);
            store.epoch_deadline_trap();
            let engine = engine.clone();
            std::thread::spawn(move || {
                std::thread::sleep(t);
                engine.increment_epoch();
            });
        }
        let instance = linker
            .instantiate(&mut store, &component)
            .map_err(|e| ComponentError::Link {
                path: path.to_path_buf(),
                message: one_line(&format!("{e:#}")),
            })?;
        Ok(Self {
            path: path.to_path_buf(),
            store,
            component,
            instance,
            functions,
            limits,
        })
    }

    /// The exported functions, as callers name them, with their WIT parameters.
    pub fn functions(&self) -> impl Iterator<Item = (&str, &[(String, String)])> {
        self.functions.iter().map(|(n, p)| (n.as_str(), p.as_slice()))
    }

    /// Finds an exported function: `greet` (exported by the world), `ns:pkg/iface#func` or
    /// `ns:pkg/iface@1.0.0#func` (an exported interface's), or `iface#func` when one exported
    /// interface is called `iface`.
    fn find(&mut self, name: &str) -> Result<(String, Func), ComponentError> {
        let full = self
            .functions
            .iter()
            .map(|(n, _)| n)
            .find(|n| *n == name || matches_short(n, name))
            .cloned()
            .ok_or_else(|| ComponentError::NoSuchFunction {
                name: name.to_string(),
                available: self.available(),
            })?;
        let func = match full.split_once('#') {
            None => self.instance.get_func(&mut self.store, &full),
            Some((iface, f)) => {
                let idx = self
                    .component
                    .get_export_index(None, iface)
                    .and_then(|i| self.component.get_export_index(Some(&i), f));
                idx.and_then(|i| self.instance.get_func(&mut self.store, &i))
            }
        };
        let func = func.ok_or_else(|| ComponentError::NoSuchFunction {
            name: name.to_string(),
            available: self.available(),
        })?;
        Ok((full, func))
    }

    fn available(&self) -> String {
        let names: Vec<&str> = self.functions.iter().map(|(n, _)| n.as_str()).collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    }

    /// Calls `name` with arguments in WAVE text, each checked against its parameter's type, and
    /// returns the results in WAVE text (an `err(...)` result is a value, not a failure).
    ///
    /// # Errors
    /// [`ComponentError::NoSuchFunction`], [`ComponentError::Arity`],
    /// [`ComponentError::Argument`] (naming the parameter and its WIT type),
    /// [`ComponentError::Trap`], or [`ComponentError::Exit`] if the guest exits.
    pub fn call_wave(&mut self, name: &str, args: &[String]) -> Result<Vec<String>, ComponentError> {
        let (full, func) = self.find(name)?;
        let wit: Params = self
            .functions
            .iter()
            .find(|(n, _)| *n == full)
            .map(|(_, p)| p.clone())
            .unwrap_or_default();
        let ty = func.ty(&self.store);
        let params: Vec<(String, wasmtime::component::Type)> =
            ty.params().map(|(n, t)| (n.to_string(), t)).collect();
        if params.len() != args.len() {
            let list: Vec<String> = wit.iter().map(|(n, t)| format!("{n}: {t}")).collect();
            let n = params.len();
            return Err(ComponentError::Arity {
                function: full,
                expected: format!(
                    "{n} argument{} ({})",
                    if n == 1 { "" } else { "s" },
                    list.join(", ")
                ),
                given: args.len(),
            });
        }
        let mut vals = Vec::with_capacity(args.len());
        for (i, ((pname, pty), arg)) in params.iter().zip(args).enumerate() {
            let v = Val::from_wave(pty, arg).map_err(|e| ComponentError::Argument {
                function: full.clone(),
                param: pname.clone(),
                ty: wit.get(i).map_or_else(|| format!("{pty:?}"), |(_, t)| t.clone()),
                message: one_line(&e.to_string()),
            })?;
            vals.push(v);
        }
        let mut results = vec![Val::Bool(false); ty.results().len()];
        func.call(&mut self.store, &vals, &mut results)
            .map_err(|e| self.trap(&full, e))?;
        results
            .iter()
            .map(|v| {
                v.to_wave().map_err(|e| ComponentError::Trap {
                    function: full.clone(),
                    message: format!("cannot print a result as WAVE: {e}"),
                })
            })
            .collect()
    }

    /// Runs a `wasi:cli/command` component (`wasi:cli/run#run`): exit status 0 for `ok`, 1 for
    /// `err`, or the status given to `wasi:cli/exit`.
    ///
    /// # Errors
    /// [`ComponentError::NoSuchFunction`] if it is not a command; [`ComponentError::Trap`].
    pub fn run_command(&mut self) -> Result<i32, ComponentError> {
        let run = self
            .functions
            .iter()
            .map(|(n, _)| n.clone())
            .find(|n| n.starts_with("wasi:cli/run@") && n.ends_with("#run"))
            .ok_or_else(|| ComponentError::NoSuchFunction {
                name: "wasi:cli/run#run (not a wasi:cli/command component; use --invoke FUNC)"
                    .into(),
                available: self.available(),
            })?;
        let (full, func) = self.find(&run)?;
        let mut results = [Val::Bool(false)];
        match func.call(&mut self.store, &[], &mut results) {
            Ok(()) => Ok(match &results[0] {
                Val::Result(Err(_)) => 1,
                _ => 0,
            }),
            Err(e) => match self.trap(&full, e) {
                ComponentError::Exit(code) => Ok(code),
                other => Err(other),
            },
        }
    }

    fn trap(&self, function: &str, e: wasmtime::Error) -> ComponentError {
        if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
            return ComponentError::Exit(exit.0);
        }
        let function = format!("{}: {function}", self.path.display());
        let limit = match e.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::Interrupt) => Some(format!(
                "stopped after the {:?} time limit (--timeout)",
                self.limits.timeout.unwrap_or_default()
            )),
            Some(wasmtime::Trap::OutOfFuel) => Some(format!(
                "stopped after {} units of fuel (--fuel)",
                self.limits.fuel.unwrap_or_default()
            )),
            _ => None,
        };
        match limit {
            Some(message) => ComponentError::Limit { function, message },
            None => ComponentError::Trap {
                function,
                message: one_line(&format!("{e:#}")),
            },
        }
    }
}

/// `iface#func` names `ns:pkg/iface@1.0.0#func`; `ns:pkg/iface#func` names it too.
fn matches_short(full: &str, name: &str) -> bool {
    let (Some((fi, ff)), Some((ni, nf))) = (full.split_once('#'), name.split_once('#')) else {
        return false;
    };
    if ff != nf {
        return false;
    }
    let unversioned = fi.split('@').next().unwrap_or(fi);
    let bare = unversioned.rsplit('/').next().unwrap_or(unversioned);
    ni == unversioned || ni == bare
}

/// The functions a component exports, decoded from its own type information, with their WIT
/// parameters.
fn exported_functions(bytes: &[u8]) -> Result<Vec<(String, Params)>, String> {
    let (resolve, world) = match wit_parser::decoding::decode(bytes).map_err(|e| one_line(&e.to_string()))? {
        DecodedWasm::Component(r, w) => (r, w),
        DecodedWasm::WitPackage(..) => return Err("a WIT package, not a component".into()),
    };
    let params = |f: &wit_parser::Function| -> Params {
        f.params
            .iter()
            .map(|p| (p.name.clone(), type_name(&resolve, &p.ty)))
            .collect()
    };
    let mut out = Vec::new();
    for (key, item) in &resolve.worlds[world].exports {
        let name = resolve.name_world_key(key);
        match item {
            WorldItem::Function(f) => out.push((name, params(f))),
            WorldItem::Interface { id, .. } => {
                for f in resolve.interfaces[*id].functions.values() {
                    out.push((format!("{name}#{}", f.name), params(f)));
                }
            }
            WorldItem::Type { .. } => {}
        }
    }
    Ok(out)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
