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
# The flags the tests build their C fixtures with (one table: xtask/src/cflags.rs): compile
# with -O2 -c, link without -O, so clang never runs a wasm-opt that happens to be installed.
flags() { cargo run -q -p wasmlink-xtask -- cflags "$1"; }
CF=$(flags compile)
LD=$(flags link)
LIB=$(flags shared)
PIE=$(flags pie)
W=target/debug/wasmlink
OUT=target/demo
mkdir -p "$OUT"
( cd "$OUT"
  for c in greet shout main; do clang-19 $CF -c -o $c.o ../../examples/c/$c.c; done
  clang-19 $LD $LIB -o libgreet.so greet.o 2>/dev/null
  clang-19 $LD $LIB -o libshout.so shout.o 2>/dev/null
  clang-19 $LD $PIE -o main.wasm main.o libgreet.so 2>/dev/null )
echo "== wasmlink ldd $OUT/main.wasm"
"$W" ldd -L "$OUT" "$OUT/main.wasm"
echo "== wasmlink run -L $OUT $OUT/main.wasm -- wasm"
"$W" run -L "$OUT" "$OUT/main.wasm" -- wasm
echo "== wasmlink inspect target/corpus/libpython3.14.so"
"$W" inspect target/corpus/libpython3.14.so
echo "== wasmlink ldd -L target/corpus target/corpus/libpython3.14.so"
"$W" ldd -L target/corpus target/corpus/libpython3.14.so
