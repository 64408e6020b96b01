//! The one table of clang/wasm-ld flags that builds wasmlink's C fixtures.
//!
//! Tests (`tests/all/support.rs`, `tests/all/linker_cases.rs`), benchmarks
//! (`benches/support/mod.rs`) and the `hot_swap` example build dylink.0 side modules and PIE
//! main programs from C (and C++) with Debian's clang-19/lld-19. They all take their flags from
//! here; shell scripts get the same lists from `cargo run -p wasmlink-xtask -- cflags KIND`.
//!
//! # Fixtures do not depend on what else is installed
//!
//! When the link step of a clang invocation sees an optimisation flag (`-O1` and above), clang's
//! WebAssembly driver runs `wasm-opt` on the linked module whenever it finds one on `PATH`
//! (Debian's `binaryen`, which emscripten pulls in). `wasm-opt` rewrites the module: it adds a
//! `name` section and table imports, so golden files and symbol listings would change with the
//! machine. clang-19's `--no-wasm-opt` cannot be used instead: Debian's clang 19.1.7 then skips
//! the link altogether and exits 0 without writing the output. So a fixture is built in two
//! steps ([`Build::commands`]): each source is compiled with [`CFLAGS`] (`-O2 -c`), and the
//! objects are linked with [`LDFLAGS`], which carry no `-O` flag. The link runs wasm-ld exactly
//! as the one-step `clang -O2 ... -o OUT SOURCES` does (same arguments), and never `wasm-opt`.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The C compiler driver.
pub const CLANG: &str = "clang-19";

/// The C++ compiler driver (for `.cpp` sources).
pub const CLANGXX: &str = "clang++-19";

/// Compile flags (`-c`) of every fixture source, side module or main program.
pub const CFLAGS: &[&str] = &[
    "--target=wasm32-wasi",
    "-fPIC",
    "-fvisibility=default",
    "-O2",
    "-nostdlib",
];

/// Driver flags of every link step, before [`Link::flags`]. No `-O` flag here: that is what
/// keeps clang from running an installed `wasm-opt` (see the module docs).
pub const LDFLAGS: &[&str] = &["--target=wasm32-wasi", "-nostdlib"];

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

/// How to build one fixture; [`Build::commands`] turns it into clang invocations.
#[derive(Clone, Copy, Debug)]
pub struct Build<'a> {
    /// How the output is linked.
    pub link: Link,
    /// Compile as C++ ([`CLANGXX`] and [`CXXFLAGS`]).
    pub cxx: bool,
    /// The C (or C++) sources.
    pub sources: &'a [PathBuf],
    /// Libraries linked against, in order (recorded as NEEDED, as given: usually plain file
    /// names relative to the working directory the caller runs the commands in).
    pub libs: &'a [&'a str],
    /// The caller's own flags (`-pthread`, `-Wl,--shared-memory`, ...), given to both steps.
    pub extra: &'a [&'a str],
    /// Where the object files go; file names are derived from `out`, so fixtures built into
    /// one directory do not collide.
    pub obj_dir: &'a Path,
    /// The output file. wasm-ld records its file name in the module's `name` section.
    pub out: &'a Path,
}

impl Build<'_> {
    /// One `clang-19 CFLAGS [CXXFLAGS] EXTRA -c SOURCE -o OBJ` per source, then
    /// `clang-19 LDFLAGS LINK EXTRA -o OUT OBJS LIBS`. Run them in order, in the directory the
    /// `libs` are relative to; each must succeed.
    pub fn commands(&self) -> Vec<Command> {
        let stem = self
            .out
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut objects = Vec::new();
        let mut cmds = Vec::new();
        for (i, src) in self.sources.iter().enumerate() {
            let obj = self.obj_dir.join(format!("{stem}.{i}.o"));
            let mut cmd = Command::new(compiler(self.cxx));
            cmd.args(CFLAGS);
            if self.cxx {
                cmd.args(CXXFLAGS);
            }
            cmd.args(UNUSED).args(self.extra).arg("-c").arg(src);
            cmd.arg("-o").arg(&obj);
            cmds.push(cmd);
            objects.push(obj);
        }
        let mut cmd = Command::new(compiler(self.cxx));
        cmd.args(LDFLAGS).args(self.link.flags()).args(UNUSED);
        cmd.args(self.extra).arg("-o").arg(self.out);
        cmd.args(&objects).args(self.libs);
        cmds.push(cmd);
        cmds
    }
}

/// `extra` goes to both steps, where link flags are unused in a compile and compile flags in
/// a link; no warning about that.
const UNUSED: &[&str] = &["-Qunused-arguments"];

/// The flag list named `kind` for `xtask cflags KIND` (shell scripts): `compile` ([`CFLAGS`],
/// with `-c`), `cxx` ([`CXXFLAGS`]), `link` ([`LDFLAGS`], then one of:) `shared`, `pie`,
/// `pie-any-main` or `pie-own-memory` (the link flags of [`Link`]).
pub fn named(kind: &str) -> Option<Vec<&'static str>> {
    Some(match kind {
        "compile" => CFLAGS.to_vec(),
        "cxx" => CXXFLAGS.to_vec(),
        "link" => LDFLAGS.to_vec(),
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
    "link",
    "shared",
    "pie",
    "pie-any-main",
    "pie-own-memory",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn args(cmd: &Command) -> Vec<&str> {
        cmd.get_args().map(|a| a.to_str().unwrap()).collect()
    }

    #[test]
    fn only_the_compile_steps_optimise() {
        let sources = [PathBuf::from("a.cpp"), PathBuf::from("b.cpp")];
        let build = Build {
            link: Link::Shared,
            cxx: true,
            sources: &sources,
            libs: &["libdep.so"],
            extra: &["-pthread"],
            obj_dir: Path::new("/objs"),
            out: Path::new("out/libx.so"),
        };
        let cmds = build.commands();
        assert_eq!(cmds.len(), 3);
        for cmd in &cmds {
            assert_eq!(cmd.get_program(), CLANGXX);
            assert!(args(cmd).contains(&"-pthread"), "{:?}", args(cmd));
        }
        let compile = args(&cmds[1]);
        assert!(
            compile.contains(&"-O2") && compile.contains(&"-c"),
            "{compile:?}"
        );
        assert!(compile.contains(&"-fno-rtti"), "{compile:?}");
        assert!(
            compile.ends_with(&["b.cpp", "-o", "/objs/libx.so.1.o"]),
            "{compile:?}"
        );
        let link = args(&cmds[2]);
        // An -O flag in the link step would make clang run an installed wasm-opt, and
        // clang-19's --no-wasm-opt skips the link.
        assert!(
            !link
                .iter()
                .any(|a| a.starts_with("-O") || a.contains("wasm-opt")),
            "{link:?}"
        );
        assert!(link.contains(&"-shared"), "{link:?}");
        assert!(
            link.ends_with(&[
                "-o",
                "out/libx.so",
                "/objs/libx.so.0.o",
                "/objs/libx.so.1.o",
                "libdep.so"
            ]),
            "{link:?}"
        );
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
