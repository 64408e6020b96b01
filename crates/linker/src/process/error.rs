//! Typed link and load errors: each names the library and the symbol.

use std::path::PathBuf;

use crate::resolve::NotFound;

/// Why a program or library could not be loaded, linked, initialised or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// The policy given to the process asks for something a linked process cannot do.
    #[error("policy: {message}")]
    Policy {
        /// The field and why.
        message: String,
    },
    /// A needed library is on no directory of the search path.
    #[error("error while loading shared libraries: {0}")]
    NotFound(#[from] NotFound),
    /// A file could not be read.
    #[error("{}: {message}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A module is not valid, or not of a kind that can be loaded there.
    #[error("{}: {message}", path.display())]
    BadModule {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A symbol that must resolve at load time (data, or any symbol with `--bind-now`) did not.
    #[error("symbol lookup error: undefined symbol: {symbol} ({library})")]
    Undefined {
        /// The symbol.
        symbol: String,
        /// The library that needs it.
        library: String,
    },
    /// An import and the definition it resolves to disagree on type.
    #[error(
        "{library}: type mismatch for {symbol}: imported as {expected}, defined in {definer} as {actual}"
    )]
    TypeMismatch {
        /// The symbol.
        symbol: String,
        /// The library importing it.
        library: String,
        /// The import's type.
        expected: String,
        /// The library defining it.
        definer: String,
        /// The definition's type.
        actual: String,
    },
    /// `--strict`: a symbol is defined by two libraries.
    #[error("{library}: duplicate definition of {symbol} (first defined in {first})")]
    Duplicate {
        /// The symbol.
        symbol: String,
        /// The second definer.
        library: String,
        /// The first definer.
        first: String,
    },
    /// Instantiation, a relocation, a constructor or an entry point trapped or failed.
    #[error("{library}: {stage}: {message}")]
    Runtime {
        /// The library.
        library: String,
        /// What was running (`instantiate`, `constructor`, `main`, `__wasm_apply_data_relocs`...).
        stage: String,
        /// The trap or error, with the wasm backtrace where available.
        message: String,
    },
    /// The process ran out of linear memory or table space.
    #[error("{library}: out of {what}: {message}")]
    Exhausted {
        /// The library being loaded.
        library: String,
        /// `linear memory`, `table slots` or `instances`.
        what: &'static str,
        /// Details.
        message: String,
    },
    /// A handle passed to `dlsym`/`dlclose` is not (or no longer) open.
    #[error("invalid handle {0}")]
    BadHandle(u32),
    /// A symbol asked of `dlsym` or `call` does not exist.
    #[error("{library}: undefined symbol: {symbol}")]
    NoSuchSymbol {
        /// The symbol.
        symbol: String,
        /// Where it was looked up.
        library: String,
    },
    /// An import of a plain module that no module (and not the host) provides.
    #[error("{}: unknown import: `{module}::{field}` {reason}", path.display())]
    UnknownImport {
        /// The importing module's file.
        path: PathBuf,
        /// The import's module name.
        module: String,
        /// The import's field name.
        field: String,
        /// Which modules were asked, or what to give.
        reason: String,
    },
    /// A path given to `dlopen` is outside the allowed directories.
    #[error("{}: refused: outside the library search path", path.display())]
    Refused {
        /// The path.
        path: PathBuf,
    },
    /// The program called `exit`/`proc_exit`.
    #[error("exit with status {0}")]
    Exit(i32),
    /// A limit of the process (time, fuel, memory) stopped the program.
    #[error("{library}: {stage}: {limit}")]
    Limit {
        /// The library that was running.
        library: String,
        /// What was running (`_start`, `constructor`, ...).
        stage: String,
        /// Which limit.
        limit: super::limits::Limit,
    },
}

impl LinkError {
    pub(crate) fn runtime(library: &str, stage: &str, err: wasmtime::Error) -> LinkError {
        if let Some(exit) = err.downcast_ref::<wasmtime_wasi::I32Exit>() {
            return LinkError::Exit(exit.0);
        }
        if let Some(limit) = super::limits::classify(&err) {
            return LinkError::Limit {
                library: library.to_string(),
                stage: stage.to_string(),
                limit,
            };
        }
        // The trap or host error itself, then the wasm backtrace (never a Rust backtrace).
        let mut message = err.root_cause().to_string();
        if let Some(bt) = err.downcast_ref::<wasmtime::WasmBacktrace>() {
            let frames = bt.to_string();
            let frames: Vec<&str> = frames.lines().filter(|l| !l.trim().is_empty()).collect();
            if !frames.is_empty() {
                message.push_str("\n    ");
                message.push_str(&frames.join("\n    "));
            }
        }
        LinkError::Runtime {
            library: library.to_string(),
            stage: stage.to_string(),
            message,
        }
    }
}

impl From<wasmlink_engine::EngineError> for LinkError {
    fn from(e: wasmlink_engine::EngineError) -> LinkError {
        use wasmlink_engine::EngineError;
        match e {
            EngineError::CacheDir { dir, message } => LinkError::Io {
                path: dir,
                message: format!("cannot use as compiled-code cache: {message}"),
            },
            // "engine: set-up: ...": the CLI's own "wasmlink: " prefix is enough.
            EngineError::Config { message } => LinkError::Runtime {
                library: "engine".into(),
                stage: "set-up".into(),
                message,
            },
            other => LinkError::Runtime {
                library: "engine".into(),
                stage: "set-up".into(),
                message: other.to_string(),
            },
        }
    }
}
