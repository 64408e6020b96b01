#!/usr/bin/env bash
# Start-up of CPython under the runtime linker against the native interpreter, same run.
# Usage: scripts/bench-python.sh [RUNS] [WASMLINK] [BASELINE]
#   RUNS       pairs to run (default 20)
#   WASMLINK   the binary to time (default target/release/wasmlink)
#   BASELINE   the command to pair it with (default `/usr/bin/python3 -c pass`; e.g.
#              '/tmp/wasmlink-before python -c pass' to compare two builds)
# Runs `WASMLINK python -c pass` (A) and BASELINE (B) in turn (A B A B ...), after one
# warm-up of each (which also fills the compiled-code and bytecode caches), and prints each
# one's median cpu (user + system, from the kernel's accounting of the finished process,
# wait4) and wall time, and the medians of the pairwise ratios A/B (scripts/ab.py). Then one run with
# WASMLINK_DEBUG=statistics for the split into load phases and main.
# RUST_BACKTRACE is unset for both: with it set, wasmtime captures a backtrace for every WASI
# error CPython's start-up receives (about 4% here; BENCHMARKS.md).
set -euo pipefail
runs=${1:-20}
wl=${2:-target/release/wasmlink}
baseline=${3:-/usr/bin/python3 -c pass}   # not `python3` on PATH, which may be a pyenv shim
unset RUST_BACKTRACE
python3 "$(dirname "$0")/ab.py" -n "$runs" "$wl python -c pass" "$baseline"
WASMLINK_DEBUG=statistics "$wl" python -c pass
