#!/usr/bin/env bash
# The dynamic linker tour (README, "A short tour"): set up the machine, build wasmlink, then
# run a C program split into a main program and two shared libraries (one dlopen'ed), compiled
# with clang-19 and run by `wasmlink run`; then wasmlink's view of real wasi-sdk libraries
# (componentize-py's libpython3.14.so and its needed libraries).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build -q --bin wasmlink
cargo run -q -p wasmlink-xtask -- corpus >/dev/null
# The flags the tests build their C fixtures with (one table: xtask/src/cflags.rs).
flags() { cargo run -q -p wasmlink-xtask -- cflags "$1"; }
CF=$(flags compile)
LIB=$(flags shared)
PIE=$(flags pie)
W=target/debug/wasmlink
OUT=target/demo
mkdir -p "$OUT"
( cd "$OUT"
  clang-19 $CF $LIB -o libgreet.so ../../examples/c/greet.c 2>/dev/null
  clang-19 $CF $LIB -o libshout.so ../../examples/c/shout.c 2>/dev/null
  clang-19 $CF $PIE -o main.wasm ../../examples/c/main.c libgreet.so 2>/dev/null )
echo "== wasmlink ldd $OUT/main.wasm"
"$W" ldd -L "$OUT" "$OUT/main.wasm"
echo "== wasmlink run -L $OUT $OUT/main.wasm -- wasm"
"$W" run -L "$OUT" "$OUT/main.wasm" -- wasm
echo "== wasmlink inspect target/corpus/libpython3.14.so"
"$W" inspect target/corpus/libpython3.14.so
echo "== wasmlink ldd -L target/corpus target/corpus/libpython3.14.so"
"$W" ldd -L target/corpus target/corpus/libpython3.14.so
