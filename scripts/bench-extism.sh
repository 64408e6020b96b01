#!/usr/bin/env bash
# Measures Extism's echo for comparison with wasmlink's (`cargo bench --bench plugin -- exchange16`).
#
# benches/extism-echo/ is a cargo workspace of its own (extism pins its own wasmtime major,
# wasmlink is on another). This builds its guest plug-in (extism-pdk, wasm32-unknown-unknown,
# release) and runs its criterion benchmark, which measures in one process: memcpy of 16 MiB,
# Extism's 16 MiB and 64-byte echo, and a raw wasmtime call of a trivial `add`. It prints a
# table and writes a JSON summary (medians in ns) to $EXTISM_ECHO_JSON, default
# target/extism/echo.json. Extra arguments go to criterion (e.g. a filter: `echo16`).
#
# Everything is built into target/extism. The first build compiles wasmtime: 15-25 minutes on
# 2 cores.
set -euo pipefail

# A relative $EXTISM_ECHO_JSON is taken from the caller's directory (the benchmark itself runs
# in benches/extism-echo/).
if [ -n "${EXTISM_ECHO_JSON:-}" ] && [ "${EXTISM_ECHO_JSON#/}" = "$EXTISM_ECHO_JSON" ]; then
  EXTISM_ECHO_JSON="$PWD/$EXTISM_ECHO_JSON"
fi
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
manifest="benches/extism-echo/Cargo.toml"
target_dir="$root/target/extism"

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi

cargo build --release --locked --manifest-path "$manifest" -p extism-echo-guest \
  --target wasm32-unknown-unknown --target-dir "$target_dir"
wasm="$target_dir/wasm32-unknown-unknown/release/extism_echo_guest.wasm"
[ -f "$wasm" ] || { echo "bench-extism: $wasm was not built" >&2; exit 1; }

export EXTISM_ECHO_WASM="$wasm"
export EXTISM_ECHO_JSON="${EXTISM_ECHO_JSON:-$target_dir/echo.json}"
# criterion's output (target/extism/criterion) and the default paths follow CARGO_TARGET_DIR.
export CARGO_TARGET_DIR="$target_dir"
cargo bench --locked --manifest-path "$manifest" -p extism-echo-bench --bench echo -- "$@"
echo "bench-extism: JSON summary in $EXTISM_ECHO_JSON"
