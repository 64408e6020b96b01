//! `wasmlink compose`: one component whose imports are plugged with other components' exports,
//! written as a single composed component (wac-graph, as `wac plug` does).
//!
//! Unlike `wac plug`, an export whose name matches an import but whose type does not is an
//! error naming the interface (wac skips it silently), and the imports left over are reported.

use std::path::{Path, PathBuf};

use wac_graph::types::{Package, SubtypeChecker};
use wac_graph::{CompositionGraph, EncodeOptions};

use crate::describe::ComponentSummary;
use crate::error::ComponentError;

/// A composed component and what went into it.
#[derive(Debug)]
pub struct Composed {
    /// The composed component's bytes.
    pub bytes: Vec<u8>,
    /// Each plugged import of the main component and the dependency that exports it.
    pub plugged: Vec<(String, PathBuf)>,
    /// The composed component's imports (those of the main component no dependency exported,
    /// and the dependencies' own).
    pub imports: Vec<String>,
}

/// Plugs the exports of `deps` (each `(path, bytes)`) into the imports of `main`. An import two
/// dependencies export is taken from the first one given.
///
/// # Errors
/// [`ComponentError::Invalid`] for an input that is not a component,
/// [`ComponentError::TypeMismatch`] naming the interface whose types differ,
/// [`ComponentError::NothingPlugged`] when no export matches an import,
/// [`ComponentError::Compose`] when wac-graph cannot encode the result.
pub fn compose(main: (&Path, &[u8]), deps: &[(&Path, &[u8])]) -> Result<Composed, ComponentError> {
    let (main_path, main_bytes) = main;
    let wac = |e: &dyn std::fmt::Display| ComponentError::Compose {
        path: main_path.to_path_buf(),
        message: one_line(&e.to_string()),
    };
    let mut graph = CompositionGraph::new();
    let register =
        |graph: &mut CompositionGraph, name: String, path: &Path, bytes: &[u8]| {
            if !crate::is_component(bytes) {
                return Err(ComponentError::Invalid {
                    message: format!("{}: not a WebAssembly component", path.display()),
                });
            }
            let package = Package::from_bytes(&name, None, bytes.to_vec(), graph.types_mut())
                .map_err(|e| ComponentError::Invalid {
                    message: format!("{}: {}", path.display(), one_line(&format!("{e:#}"))),
                })?;
            graph.register_package(package).map_err(|e| wac(&e))
        };
    let socket_pkg = register(&mut graph, "wasmlink:main".into(), main_path, main_bytes)?;
    let mut plug_pkgs = Vec::with_capacity(deps.len());
    for (i, (path, bytes)) in deps.iter().enumerate() {
        plug_pkgs.push(register(
            &mut graph,
            format!("wasmlink:dep{i}"),
            path,
            bytes,
        )?);
    }
    let socket = graph.instantiate(socket_pkg);
    let mut plugged: Vec<(String, PathBuf)> = Vec::new();
    for (pkg, (dep_path, _)) in plug_pkgs.iter().zip(deps) {
        let exports: Vec<_> = graph.types()[graph[*pkg].ty()]
            .exports
            .iter()
            .map(|(n, t)| (n.clone(), *t))
            .collect();
        let mut instance = None;
        for (name, export_ty) in exports {
            let Some(import_ty) = graph.types()[graph[socket_pkg].ty()]
                .imports
                .get(&name)
                .copied()
            else {
                continue;
            };
            if plugged.iter().any(|(n, _)| *n == name) {
                continue;
            }
            let mut cache = Default::default();
            let mut checker = SubtypeChecker::new(&mut cache);
            if let Err(e) = checker.is_subtype(export_ty, graph.types(), import_ty, graph.types()) {
                return Err(ComponentError::TypeMismatch {
                    path: main_path.to_path_buf(),
                    interface: name,
                    dependency: dep_path.to_path_buf(),
                    message: one_line(&format!("{e:#}")),
                });
            }
            let inst = *instance.get_or_insert_with(|| graph.instantiate(*pkg));
            let export = graph
                .alias_instance_export(inst, &name)
                .map_err(|e| wac(&e))?;
            graph
                .set_instantiation_argument(socket, &name, export)
                .map_err(|e| wac(&e))?;
            plugged.push((name, dep_path.to_path_buf()));
        }
    }
    if plugged.is_empty() {
        let names: Vec<String> = deps.iter().map(|(p, _)| p.display().to_string()).collect();
        return Err(ComponentError::NothingPlugged {
            path: main_path.to_path_buf(),
            dependencies: names.join(", "),
        });
    }
    let exports: Vec<String> = graph.types()[graph[socket_pkg].ty()]
        .exports
        .keys()
        .cloned()
        .collect();
    for name in exports {
        let export = graph
            .alias_instance_export(socket, &name)
            .map_err(|e| wac(&e))?;
        graph.export(export, &name).map_err(|e| wac(&e))?;
    }
    let bytes = graph
        .encode(EncodeOptions::default())
        .map_err(|e| wac(&format!("{e:#}")))?;
    let imports = ComponentSummary::parse(&bytes)?
        .imports
        .into_iter()
        .map(|i| i.name)
        .collect();
    Ok(Composed {
        bytes,
        plugged,
        imports,
    })
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
