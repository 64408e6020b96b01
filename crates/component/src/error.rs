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
    /// The component exited through `wasi:cli/exit` with this status.
    #[error("exit {0}")]
    Exit(i32),
}
