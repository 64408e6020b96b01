//! Hot swap: replace a shared library's code while the program that uses it keeps running.
//!
//! Builds `libplugin.so` twice (examples/c/plugin_v1.c and plugin_v2.c) and a program that
//! calls it (examples/c/host_app.c) with clang-19, loads the program with hot swap on, calls
//! it, reloads the plugin from the second build, and calls it again: direct calls and function
//! pointers both reach the new code, through the same table slots.
//!
//! Run: `cargo run --example hot_swap` (needs clang-19/lld-19: `bash scripts/setup.sh`).

use std::path::Path;

use wasmlink::ProcessBuilder;
use wasmlink::resolve::SearchPath;
use wasmlink_xtask::cflags::{self, Link};
use wasmtime::Val;

/// Builds `out` in `dir` from `inputs` (`examples/c/*.c` sources and libraries in `dir`) with
/// the flags the tests use (`wasmlink_xtask::cflags`).
fn clang(dir: &Path, link: Link, out: &str, inputs: &[&str]) -> Result<(), String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/c");
    let (sources, libs): (Vec<&str>, Vec<&str>) = inputs.iter().partition(|i| i.ends_with(".c"));
    let sources: Vec<_> = sources.iter().map(|s| src.join(s)).collect();
    let build = cflags::Build {
        link,
        cxx: false,
        sources: &sources,
        libs: &libs,
        extra: &[],
        obj_dir: dir,
        out: Path::new(out),
    };
    for mut cmd in build.commands() {
        let o = cmd
            .current_dir(dir)
            .output()
            .map_err(|e| format!("{}: {e} (run scripts/setup.sh)", cflags::CLANG))?;
        if !o.status.success() {
            return Err(String::from_utf8_lossy(&o.stderr).into_owned());
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::temp_dir().join(format!("wasmlink-hot-swap-{}", std::process::id()));
    std::fs::create_dir_all(dir.join("v2"))?;
    clang(&dir, Link::Shared, "libplugin.so", &["plugin_v1.c"])?;
    clang(&dir, Link::Shared, "v2/libplugin.so", &["plugin_v2.c"])?;
    clang(&dir, Link::Pie, "app.wasm", &["host_app.c", "libplugin.so"])?;

    let mut search = SearchPath::new();
    search.add_dir(&dir);
    let mut p = ProcessBuilder::new()
        .search_path(search)
        .hot_swap(true)
        .load(&dir.join("app.wasm"))?;
    let call = |p: &mut wasmlink::Process,
                f: &str,
                args: &[Val]|
     -> Result<i32, wasmlink::LinkError> { Ok(p.call(f, args)?[0].unwrap_i32()) };
    println!(
        "before: version {}, score(4) = {}",
        call(&mut p, "app_version", &[])?,
        call(&mut p, "app_score", &[Val::I32(4)])?
    );
    let rebound = p.reload("libplugin.so", &dir.join("v2/libplugin.so"))?;
    println!("reloaded libplugin.so, rebound {}", rebound.join(", "));
    println!(
        "after:  version {}, score(4) = {}",
        call(&mut p, "app_version", &[])?,
        call(&mut p, "app_score", &[Val::I32(4)])?
    );
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
