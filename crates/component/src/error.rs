//! Errors of loading, describing and calling components: each one line that names the
//! component, the function, the parameter or the import.

use std::path::PathBuf;

/// Why a component could not be loaded, described or called.
#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    #[error("{path}: {message}", path = path.display())]
    Io { path: PathBuf, message: String },
    #[error("not a valid component: {message}")]
    Invalid { message: String },
    #[error("{path}: cannot compile: {message}", path = path.display())]
    Compile { path: PathBuf, message: String },
    /// The policy refuses the component (`integrity.sha256`).
    #[error("{message}")]
    Denied { message: String },
    /// An import the host does not provide, or another instantiation failure.
    #[error("{path}: {message}", path = path.display())]
    Link { path: PathBuf, message: String },
    #[error("no exported function {name} (exported functions: {available})")]
    NoSuchFunction { name: String, available: String },
    #[error("{function} takes {expected}, {given} given")]
    Arity {
        function: String,
        expected: String,
        given: usize,
    },
    #[error("{function}: argument {param}: expected {ty}: {message}")]
    Argument {
        function: String,
        param: String,
        ty: String,
        message: String,
    },
    /// The guest trapped (or hit a limit) in `function`.
    #[error("{function}: {message}")]
    Trap { function: String, message: String },
    /// A limit stopped the guest in `function` (`--timeout`, `--fuel`).
    #[error("{function}: {message}")]
    Limit { function: String, message: String },
    /// An earlier call failed inside the guest (a trap, a limit, an exit): the instance is not
    /// entered again.
    #[error("{path}: the instance is poisoned: an earlier call of {function} failed ({reason}); load the component again", path = path.display())]
    Poisoned {
        path: PathBuf,
        function: String,
        reason: String,
    },
    /// A hot swap refused: the new component does not export the same functions with the same
    /// types as the one it would replace.
    #[error("{path}: cannot replace {old}: function {function}: {message}", path = path.display(), old = old.display())]
    Incompatible {
        path: PathBuf,
        old: PathBuf,
        function: String,
        message: String,
    },
    /// A component providing one of the imports (composition at run time) failed in the call:
    /// `message` names it; `limit` if a limit of its own policy stopped it. It is poisoned, and
    /// so is the caller.
    #[error("{function}: {message}")]
    Dependency {
        function: String,
        message: String,
        limit: bool,
    },
    /// An import that is neither WASI 0.2 nor exported by a component given to satisfy it.
    /// `given` lists the components given to satisfy imports (`none`, or their files).
    #[error("{path}: import {import} is not WASI 0.2 and no component given exports it (--with: {given})", path = path.display())]
    Unsatisfied {
        path: PathBuf,
        import: String,
        given: String,
    },
    /// A component exports an interface the other imports, with other types.
    #[error("{path}: import {interface} does not match the export of {dependency}: {message}", path = path.display(), dependency = dependency.display())]
    TypeMismatch {
        path: PathBuf,
        interface: String,
        dependency: PathBuf,
        message: String,
    },
    /// An import takes or returns a resource, which cannot cross between two stores.
    #[error("{path}: import {interface}: {item} cannot cross between components in separate stores (a resource is a handle into one store's table); join them with `wasmlink compose`", path = path.display())]
    ResourceCrossing {
        path: PathBuf,
        interface: String,
        item: String,
    },
    /// `wasmlink compose`: no export of the dependencies matched an import of the main
    /// component.
    #[error("{path}: none of its imports is exported by {dependencies}", path = path.display())]
    NothingPlugged { path: PathBuf, dependencies: String },
    /// `wasmlink compose`: wac-graph could not build or encode the composition.
    #[error("{path}: cannot compose: {message}", path = path.display())]
    Compose { path: PathBuf, message: String },
    /// The component exited through `wasi:cli/exit` with this status.
    #[error("exit {0}")]
    Exit(i32),
}
