//! The one table of clang/wasm-ld flags that builds wasmlink's C fixtures.
//!
//! Tests (`tests/all/support.rs`, `tests/all/linker_cases.rs`), benchmarks
//! (`benches/support/mod.rs`) and the `hot_swap` example build dylink.0 side modules and PIE
//! main programs from C (and C++) with Debian's clang-19/lld-19. They all take their flags from
//! here; shell scripts get the same lists from `cargo run -p wasmlink-xtask -- cflags KIND`.
//!
//! # Fixtures do not depend on what else is installed
//!
//! At `-O1` and above, clang's WebAssembly driver runs `wasm-opt` after linking whenever it finds
//! one on `PATH` (Debian's `binaryen`, which emscripten pulls in). `wasm-opt` rewrites the module:
//! it adds a `name` section and table imports, so golden files and symbol listings would change
//! with the machine. [`CFLAGS`] therefore passes `--no-wasm-opt`: the bytes a fixture gets
//! depend only on clang-19 and lld-19.

use std::process::Command;

/// The C compiler driver.
pub const CLANG: &str = "clang-19";

/// The C++ compiler driver (for `.cpp` sources).
pub const CLANGXX: &str = "clang++-19";

/// Compile flags of every fixture, side module or main program.
pub const CFLAGS: &[&str] = &[
    "--target=wasm32-wasi",
    "-fPIC",
    "-fvisibility=default",
    "-O2",
    "-nostdlib",
    // Never run a `wasm-opt` that happens to be installed (see the module docs).
    "--no-wasm-opt",
];

/// Added to [`CFLAGS`] for C++ sources: the fixtures use neither exceptions nor RTTI, and the
/// wasm32-wasi C++ runtime is not linked (`-nostdlib`).
pub const CXXFLAGS: &[&str] = &["-fno-exceptions", "-fno-rtti"];

/// Link flags of a side module (`lib*.so`): undefined symbols become dylink.0 imports.
pub const SHARED: &[&str] = &[
    "-shared",
    "-Wl,--no-entry",
    "-Wl,--export-if-defined=__wasm_call_ctors",
    "-Wl,--unresolved-symbols=import-dynamic",
];

/// Link flags of a position-independent main program that imports its memory and table; the
/// main function export is added by [`Link::Pie`] or [`Link::PieAnyMain`].
pub const PIE_BASE: &[&str] = &[
    "-Wl,-pie",
    "-Wl,--experimental-pic",
    "-Wl,--import-memory",
    "-Wl,--import-table",
    "-Wl,--no-entry",
    "-Wl,--export-dynamic",
    "-Wl,--export-if-defined=__wasm_call_ctors",
    "-Wl,--unresolved-symbols=import-dynamic",
];

/// Link flags of a position-independent main program that defines and exports its own memory:
/// wasm-ld's default `-pie` output, as Emscripten's `MAIN_MODULE` is ([`PIE_BASE`] without
/// `--import-memory` and `--import-table`). The runtime linker makes its memory the process's.
pub const PIE_OWN_MEMORY: &[&str] = &[
    "-Wl,-pie",
    "-Wl,--experimental-pic",
    "-Wl,--no-entry",
    "-Wl,--export-dynamic",
    "-Wl,--export-if-defined=__wasm_call_ctors",
    "-Wl,--unresolved-symbols=import-dynamic",
];

/// [`Link::Pie`]'s main export: `int main(void)`, which must exist.
pub const EXPORT_MAIN: &[&str] = &["-Wl,--export=main"];

/// [`Link::PieAnyMain`]'s main exports: clang names `main(void)` `main` and
/// `main(argc, argv)` `__main_argc_argv`; whichever is defined is exported.
pub const EXPORT_ANY_MAIN: &[&str] = &[
    "-Wl,--export-if-defined=main",
    "-Wl,--export-if-defined=__main_argc_argv",
];

/// How a C fixture is linked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Link {
    /// `-shared`: a side module ([`SHARED`]).
    Shared,
    /// A PIE main program exporting `main` ([`PIE_BASE`] + [`EXPORT_MAIN`]).
    Pie,
    /// A PIE main program exporting `main` or `__main_argc_argv`, whichever it defines
    /// ([`PIE_BASE`] + [`EXPORT_ANY_MAIN`]).
    PieAnyMain,
    /// A PIE main program that defines its own memory, exporting `main`
    /// ([`PIE_OWN_MEMORY`] + [`EXPORT_MAIN`]).
    PieOwnMemory,
}

impl Link {
    /// The link flags, to follow [`CFLAGS`] (and [`CXXFLAGS`]).
    pub fn flags(self) -> Vec<&'static str> {
        match self {
            Link::Shared => SHARED.to_vec(),
            Link::Pie => [PIE_BASE, EXPORT_MAIN].concat(),
            Link::PieAnyMain => [PIE_BASE, EXPORT_ANY_MAIN].concat(),
            Link::PieOwnMemory => [PIE_OWN_MEMORY, EXPORT_MAIN].concat(),
        }
    }
}

/// The compiler driver for a fixture: [`CLANGXX`] if `cxx`, else [`CLANG`].
pub fn compiler(cxx: bool) -> &'static str {
    if cxx { CLANGXX } else { CLANG }
}

/// A `clang-19` (`clang++-19` if `cxx`) command with the compile and link flags of `link`;
/// the caller adds its own flags, `-o OUT` and the inputs.
pub fn command(link: Link, cxx: bool) -> Command {
    let mut cmd = Command::new(compiler(cxx));
    cmd.args(CFLAGS);
    if cxx {
        cmd.args(CXXFLAGS);
    }
    cmd.args(link.flags());
    cmd
}

/// The flag list named `kind` for `xtask cflags KIND` (shell scripts): `compile` ([`CFLAGS`]),
/// `cxx` ([`CXXFLAGS`]), `shared`, `pie`, `pie-any-main` or `pie-own-memory` (the link flags
/// of [`Link`]).
pub fn named(kind: &str) -> Option<Vec<&'static str>> {
    Some(match kind {
        "compile" => CFLAGS.to_vec(),
        "cxx" => CXXFLAGS.to_vec(),
        "shared" => Link::Shared.flags(),
        "pie" => Link::Pie.flags(),
        "pie-any-main" => Link::PieAnyMain.flags(),
        "pie-own-memory" => Link::PieOwnMemory.flags(),
        _ => return None,
    })
}

/// The kinds [`named`] accepts.
pub const KINDS: &[&str] = &[
    "compile",
    "cxx",
    "shared",
    "pie",
    "pie-any-main",
    "pie-own-memory",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fixture_is_built_without_wasm_opt() {
        let cmd = command(Link::Shared, true);
        let args: Vec<_> = cmd.get_args().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(cmd.get_program(), CLANGXX);
        assert!(args.contains(&"--no-wasm-opt"), "{args:?}");
        assert!(args.contains(&"-fno-rtti"), "{args:?}");
        assert!(args.contains(&"-shared"), "{args:?}");
    }

    #[test]
    fn pie_variants_differ_only_in_the_main_export() {
        let pie = Link::Pie.flags();
        let any = Link::PieAnyMain.flags();
        assert!(pie.contains(&"-Wl,--export=main"));
        assert!(!any.contains(&"-Wl,--export=main"));
        assert!(any.contains(&"-Wl,--export-if-defined=__main_argc_argv"));
        assert_eq!(pie[..PIE_BASE.len()], any[..PIE_BASE.len()]);
    }

    #[test]
    fn every_kind_has_a_list() {
        for kind in KINDS {
            assert!(named(kind).is_some_and(|f| !f.is_empty()), "{kind}");
        }
        assert_eq!(named("bogus"), None);
    }
}
