#!/usr/bin/env bash
# Builds the guest modules from source (guest/: the Rust SDK examples, the search engine's
# modules and the C example) and
# copies them to target/guest-modules/, printing their paths. Idempotent and quick when nothing
# changed (cargo's own freshness check; the C module is rebuilt only when its sources change).
#
# Needs: rustup's wasm32-wasip1 target (added here if missing), clang-19 + wasi-libc for the C
# example (scripts/setup.sh installs them; without clang-19 the C example is skipped with a note).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="target/guest-modules"
mkdir -p "$out"

if ! rustup target list --installed | grep -qx wasm32-wasip1; then
  rustup target add wasm32-wasip1
fi

# LLVM inlines more in the guests than its default threshold (225): in wasm every call pays a
# prologue and an interruption-epoch check, and html5gum's tokenizer calls a function per state.
# Indexing the Rust docs: the stages' busy time 4.3 -> 4.05 s, wall 2.51 -> 2.40 s; the modules
# grow by about a third (BENCHMARKS.md). A RUSTFLAGS of your own replaces it.
export CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS="${CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS:--C llvm-args=-inline-threshold=1000}"
cargo build --quiet --release --target wasm32-wasip1 --target-dir target/guest \
  --manifest-path guest/Cargo.toml

# Copies $1 to $out/$2 unless the copy is already identical (keeps mtimes stable).
install_module() {
  if ! cmp -s "$1" "$out/$2"; then
    cp "$1" "$out/$2.tmp.$$" && mv -f "$out/$2.tmp.$$" "$out/$2"
  fi
  echo "$root/$out/$2"
}

# The search engine's modules (guest/search/*, one per stage; see examples/search/).
for name in greeter docproc extract tokenize normalize analyze index query; do
  install_module "target/guest/wasm32-wasip1/release/$name.wasm" "$name.wasm"
done

c_src="guest/examples/c-upper/upper.c"
c_out="target/guest/c-upper/upper.wasm"
if command -v clang-19 >/dev/null; then
  if [ ! -f "$c_out" ] || [ "$c_src" -nt "$c_out" ] || [ guest/include/wasmlink.h -nt "$c_out" ]; then
    mkdir -p "$(dirname "$c_out")"
    # Debian's wasi-libc lives under the wasm32-wasi triple (the same wasip1 module format).
    clang-19 --target=wasm32-wasi -O2 -Wall -Wextra -Werror -nostartfiles -Wl,--no-entry \
      -I guest/include -o "$c_out.tmp.$$" "$c_src"
    mv -f "$c_out.tmp.$$" "$c_out"
  fi
  install_module "$c_out" "c-upper.wasm"
else
  echo "build-guests: clang-19 not found, skipping the C example (run scripts/setup.sh)" >&2
fi
