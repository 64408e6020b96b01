//! Builds the search engine's modules into the `wasmlink` binary, so that a copied or
//! `cargo install`ed binary runs `index` and `search` without a checkout (src/search_modules.rs).
//!
//! Each is stored zstd-compressed (level 19: 8.9 MB of wasm become about 1.6 MB, which keeps the
//! release binary under 50 MB) and decompressed when `index` or `search` first needs it.
//!
//! The modules are taken from `$WASMLINK_EMBED_MODULES_DIR`, else `target/guest-modules/` of
//! this checkout; when some are missing there, `scripts/build-guests.sh` builds them (needs
//! rustup's wasm32-wasip1 target; set `WASMLINK_BUILD_GUESTS=0` to skip). If they still cannot
//! be found, the binary is built without them (with a warning) and looks them up at run time as
//! before (`--modules`, `$WASMLINK_MODULES`, the build tree).

use std::path::{Path, PathBuf};

/// The modules `index` and `search` run (src/search_modules.rs).
const MODULES: [&str; 4] = ["extract", "analyze", "index", "query"];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=WASMLINK_EMBED_MODULES_DIR");
    println!("cargo:rerun-if-env-changed=WASMLINK_BUILD_GUESTS");
    // Relative relocations packed as DT_RELR (binutils >= 2.38, glibc >= 2.36 at run time): the
    // executable stays position-independent (ASLR) while its 2.6 MB `.rela.dyn` shrinks to a
    // few kilobytes, part of keeping the installed binary under 50 MB (scripts/check-install.sh).
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").as_deref() == Ok("gnu")
    {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    let dir = match std::env::var_os("WASMLINK_EMBED_MODULES_DIR").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => {
            let dir = root.join("target/guest-modules");
            if !all_present(&dir) && std::env::var("WASMLINK_BUILD_GUESTS").as_deref() != Ok("0") {
                build_guests(&root);
            }
            dir
        }
    };
    let mut code = String::from(
        "/// The search engine's modules built into this binary (build.rs): (name, zstd bytes).\n\
         pub static EMBEDDED: &[(&str, &[u8])] = &[\n",
    );
    if all_present(&dir) {
        for name in MODULES {
            let path = dir.join(format!("{name}.wasm"));
            println!("cargo:rerun-if-changed={}", path.display());
            let wasm = std::fs::read(&path).expect("a module found above is readable");
            let zst = zstd::bulk::compress(&wasm, 19).expect("zstd compresses in memory");
            let packed = out.join(format!("{name}.wasm.zst"));
            std::fs::write(&packed, zst).expect("OUT_DIR is writable");
            code.push_str(&format!("    ({name:?}, include_bytes!({:?})),\n", packed));
        }
    } else {
        // Rerun when they appear.
        println!("cargo:rerun-if-changed={}", dir.display());
        println!(
            "cargo:warning=the search modules are not in {} (run `bash scripts/build-guests.sh`): \
             this wasmlink binary will look them up at run time instead of carrying them",
            dir.display()
        );
    }
    code.push_str("];\n");
    std::fs::write(out.join("embedded_modules.rs"), code).expect("OUT_DIR is writable");
}

fn all_present(dir: &Path) -> bool {
    MODULES
        .iter()
        .all(|m| dir.join(format!("{m}.wasm")).is_file())
}

/// Runs scripts/build-guests.sh (a separate cargo build in target/guest, with its own lock).
fn build_guests(root: &Path) {
    let script = root.join("scripts/build-guests.sh");
    if !script.is_file() {
        return;
    }
    let status = std::process::Command::new("bash")
        .arg(&script)
        .current_dir(root)
        // This build's flags and jobserver are for the host target, not the wasm one.
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_MAKEFLAGS")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .stdout(std::process::Stdio::null())
        .status();
    if !matches!(status, Ok(s) if s.success()) {
        println!("cargo:warning=scripts/build-guests.sh failed ({status:?})");
    }
}
