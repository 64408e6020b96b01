//! Composition at run time: one component's imports satisfied by other components' exports
//! when it is loaded, without writing a composed file first.
//!
//! Each component keeps its own store, so its own WASI context (the policy's directories,
//! environment, network rules) and its own limits (memory, fuel, timeout). An import of the
//! main component that a [`Provider`] exports is defined in the main component's linker with
//! `func_new`: the host function copies the main component's arguments (already lifted into
//! [`Val`](wasmtime::component::Val)s) into a call of the provider's export and copies its results back, a copy at the
//! boundary as the canonical ABI makes between two components anyway.
//!
//! What cannot cross: resources (`own<T>`, `borrow<T>`) are handles into one store's table,
//! meaningless in another store; an import whose functions take or return one is refused when
//! the main component is linked ([`ComponentError::ResourceCrossing`]), and `wasmlink compose`
//! (one store) is the way to join such components. A provider's failure (a trap, a limit, an
//! exit) poisons the provider and fails the main component's call with an error naming the
//! provider ([`ComponentError::Dependency`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use wasmtime::component::types::{ComponentFunc, ComponentItem};
use wasmtime::component::{Linker, Type};

use crate::error::ComponentError;
use crate::process::{ComponentProcess, Ctx};

/// A component instance whose exported interfaces satisfy another component's imports
/// ([`crate::ComponentPre::with_providers`]); it runs in its own store, under its own policy.
#[derive(Clone)]
pub struct Provider {
    path: PathBuf,
    process: Arc<Mutex<ComponentProcess>>,
    /// Exported interfaces (`wasmlink:demo/text`) and their functions' types.
    interfaces: Arc<Vec<Interface>>,
}

/// An exported interface's name and its functions' names and types.
type Interface = (String, Vec<(String, ComponentFunc)>);

/// A provider's failure, carried through the main component's stack as a trap.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct DependencyFailed(pub(crate) ComponentError);

impl Provider {
    /// Makes an instantiated component a provider of its exported interfaces.
    pub fn new(process: ComponentProcess) -> Self {
        let pre = process.pre();
        let engine = pre.engine();
        let mut interfaces = Vec::new();
        for (name, item) in pre.component().component_type().exports(engine) {
            if let ComponentItem::ComponentInstance(inst) = item.ty {
                let functions = inst
                    .exports(engine)
                    .filter_map(|(f, e)| match e.ty {
                        ComponentItem::ComponentFunc(ty) => Some((f.to_string(), ty)),
                        _ => None,
                    })
                    .collect();
                interfaces.push((name.to_string(), functions));
            }
        }
        Self {
            path: pre.path().to_path_buf(),
            process: Arc::new(Mutex::new(process)),
            interfaces: Arc::new(interfaces),
        }
    }

    /// The component's file, as errors name it.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The interfaces it exports (`wasmlink:demo/text`).
    pub fn interfaces(&self) -> impl Iterator<Item = &str> {
        self.interfaces.iter().map(|(n, _)| n.as_str())
    }

    /// Whether a failed call poisoned the provider's instance.
    pub fn is_poisoned(&self) -> bool {
        self.process.lock().map_or(true, |p| p.is_poisoned())
    }

    fn interface(&self, name: &str) -> Option<&[(String, ComponentFunc)]> {
        self.interfaces
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, f)| f.as_slice())
    }
}

/// Defines in `linker` each import of `component` (the main one, `path` in errors) that one of
/// `providers` exports (the first that does), forwarding its calls to that provider. Returns
/// the imports left to WASI.
///
/// # Errors
/// [`ComponentError::TypeMismatch`], [`ComponentError::ResourceCrossing`],
/// [`ComponentError::Unsatisfied`] for an import that is neither WASI 0.2 nor provided.
pub(crate) fn define_imports(
    engine: &wasmtime::Engine,
    linker: &mut Linker<Ctx>,
    path: &Path,
    component: &wasmtime::component::Component,
    providers: &[Provider],
) -> Result<(), ComponentError> {
    let link = |message: String| ComponentError::Link {
        path: path.to_path_buf(),
        message,
    };
    linker.allow_shadowing(true);
    for (import, item) in component.component_type().imports(engine) {
        let provider = providers
            .iter()
            .find_map(|p| p.interface(import).map(|f| (p, f)));
        let Some((provider, exported)) = provider else {
            // An interface of types only (`wasmlink:pipeline/types`, which every stage
            // component imports for `batch`) has nothing to supply.
            let types_only = match &item.ty {
                ComponentItem::ComponentInstance(i) => i
                    .exports(engine)
                    .all(|(_, e)| matches!(e.ty, ComponentItem::Type(_))),
                _ => false,
            };
            if !import.starts_with("wasi:") && !types_only {
                let given: Vec<String> = providers
                    .iter()
                    .map(|p| p.path.display().to_string())
                    .collect();
                return Err(ComponentError::Unsatisfied {
                    path: path.to_path_buf(),
                    import: import.to_string(),
                    given: if given.is_empty() {
                        "none".into()
                    } else {
                        given.join(", ")
                    },
                });
            }
            continue;
        };
        let ComponentItem::ComponentInstance(wanted) = item.ty else {
            continue;
        };
        let mut instance = linker
            .instance(import)
            .map_err(|e| link(format!("{import}: {e:#}")))?;
        for (fname, e) in wanted.exports(engine) {
            let fty = match e.ty {
                ComponentItem::ComponentFunc(f) => f,
                ComponentItem::Resource(_) => {
                    return Err(ComponentError::ResourceCrossing {
                        path: path.to_path_buf(),
                        interface: import.to_string(),
                        item: format!("resource {fname}"),
                    });
                }
                _ => continue,
            };
            let want = signature(&fty);
            if want.contains("own<") || want.contains("borrow<") {
                return Err(ComponentError::ResourceCrossing {
                    path: path.to_path_buf(),
                    interface: import.to_string(),
                    item: format!("function {fname} passes a resource, which"),
                });
            }
            let Some((_, have)) = exported.iter().find(|(n, _)| n == fname) else {
                return Err(ComponentError::TypeMismatch {
                    path: path.to_path_buf(),
                    interface: import.to_string(),
                    dependency: provider.path.clone(),
                    message: format!("it imports function {fname}, which is not exported"),
                });
            };
            let have = signature(have);
            if have != want {
                return Err(ComponentError::TypeMismatch {
                    path: path.to_path_buf(),
                    interface: import.to_string(),
                    dependency: provider.path.clone(),
                    message: format!("{fname}: imported as {want}, exported as {have}"),
                });
            }
            let target = Arc::clone(&provider.process);
            // The provider's function is found once, here, not by name on every call.
            let (full, func) = target
                .lock()
                .map_err(|_| {
                    link(format!(
                        "{import}#{fname}: the providing component panicked"
                    ))
                })?
                .lookup(&format!("{import}#{fname}"))
                .map_err(|e| link(format!("{}: {e}", provider.path.display())))?;
            instance
                .func_new(fname, move |store, _ty, args, results| {
                    // The caller's deadline goes with the call: a provider that loops is
                    // stopped by the main component's --timeout too.
                    let deadline = store.data().deadline();
                    let mut dep = target.lock().map_err(|_| {
                        DependencyFailed(ComponentError::Invalid {
                            message: format!("{full}: the providing component panicked"),
                        })
                    })?;
                    dep.call_forwarded(&full, func, args, results, deadline)
                        .map_err(DependencyFailed)?;
                    Ok(())
                })
                .map_err(|e| link(format!("{import}#{fname}: {e:#}")))?;
        }
    }
    Ok(())
}

/// A function's type as text, structural (records, variants and enums spelled out, so two
/// components' types compare by shape rather than by name).
pub(crate) fn signature(f: &ComponentFunc) -> String {
    let params: Vec<String> = f
        .params()
        .map(|(n, t)| format!("{n}: {}", shape(&t)))
        .collect();
    let results: Vec<String> = f.results().map(|t| shape(&t)).collect();
    match results.as_slice() {
        [] => format!("func({})", params.join(", ")),
        _ => format!("func({}) -> {}", params.join(", "), results.join(", ")),
    }
}

fn shape(t: &Type) -> String {
    let opt = |t: Option<Type>| t.map_or_else(|| "_".to_string(), |t| shape(&t));
    match t {
        Type::Bool => "bool".into(),
        Type::S8 => "s8".into(),
        Type::U8 => "u8".into(),
        Type::S16 => "s16".into(),
        Type::U16 => "u16".into(),
        Type::S32 => "s32".into(),
        Type::U32 => "u32".into(),
        Type::S64 => "s64".into(),
        Type::U64 => "u64".into(),
        Type::Float32 => "f32".into(),
        Type::Float64 => "f64".into(),
        Type::Char => "char".into(),
        Type::String => "string".into(),
        Type::List(l) => format!("list<{}>", shape(&l.ty())),
        Type::Record(r) => {
            let f: Vec<String> = r
                .fields()
                .map(|f| format!("{}: {}", f.name, shape(&f.ty)))
                .collect();
            format!("record {{{}}}", f.join(", "))
        }
        Type::Tuple(t) => {
            let f: Vec<String> = t.types().map(|t| shape(&t)).collect();
            format!("tuple<{}>", f.join(", "))
        }
        Type::Variant(v) => {
            let c: Vec<String> = v
                .cases()
                .map(|c| format!("{}({})", c.name, opt(c.ty)))
                .collect();
            format!("variant {{{}}}", c.join(", "))
        }
        Type::Enum(e) => format!("enum {{{}}}", e.names().collect::<Vec<_>>().join(", ")),
        Type::Flags(f) => format!("flags {{{}}}", f.names().collect::<Vec<_>>().join(", ")),
        Type::Option(o) => format!("option<{}>", shape(&o.ty())),
        Type::Result(r) => format!("result<{}, {}>", opt(r.ok()), opt(r.err())),
        Type::Own(_) => "own<resource>".into(),
        Type::Borrow(_) => "borrow<resource>".into(),
        // Async and newer types are handles or store-bound too: they cannot cross either.
        other => format!("own<{other:?}>"),
    }
}

/// The error a provider's failure became, if `e` is one.
pub(crate) fn dependency_failure(e: &wasmtime::Error) -> Option<&ComponentError> {
    e.downcast_ref::<DependencyFailed>().map(|d| &d.0)
}
