#!/usr/bin/env bash
# Issue 14's performance figures for WASI 0.2 (BENCHMARKS.md, "Session 6: WASI 0.2 for core
# modules"):
#   1. WASI 0.2 calls through wasmlink-wasi's glue against a component on wasmtime-wasi
#      (cargo bench --bench wasi; skip with SKIP_CALLS=1);
#   2. loading the 11 corpus libraries in a fresh process from the on-disk compiled-code cache
#      (`wasmlink ldd -r`, which links without running constructors, and `wasmlink run`, which
#      runs them), against native `python3 -c pass` in the same run, alternating A B A B.
#      The anchor is the system interpreter (/usr/bin/python3 when it exists), not a version
#      manager's shim: a pyenv shim is a shell script that costs 5x the interpreter.
# Usage: scripts/bench-wasi.sh [RUNS]   (default 15 runs of each command)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-15}
CORPUS=target/corpus
WASMLINK=target/release/wasmlink

if [ "${SKIP_CALLS:-0}" != 1 ]; then
    cargo bench --bench wasi
fi

cargo build --release --bin wasmlink
[ -f "$CORPUS/libpython3.14.so" ] || cargo run -p wasmlink-xtask -- corpus

# A PIE main that needs every corpus library and does nothing else (dylink.0 needed list).
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
python3 - "$WORK/all11.wasm" $(cd "$CORPUS" && ls -- *.so | sort) <<'EOF'
import sys
def uleb(n):
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)
def name(s):
    b = s.encode()
    return uleb(len(b)) + b
def sec(i, p):
    return bytes([i]) + uleb(len(p)) + p
needed = sys.argv[2:]
assert len(needed) == 11, needed
mem = uleb(0) * 4
nd = uleb(len(needed)) + b"".join(name(n) for n in needed)
dylink = name("dylink.0") + b"\x01" + uleb(len(mem)) + mem + b"\x02" + uleb(len(nd)) + nd
imports = (uleb(2) + name("env") + name("memory") + b"\x02\x00\x01"
           + name("env") + name("__indirect_function_table") + b"\x01\x70\x00\x00")
body = b"\x00\x41\x00\x0b"  # main: i32.const 0
module = (b"\x00asm\x01\x00\x00\x00" + sec(0, dylink) + sec(1, b"\x01\x60\x00\x01\x7f")
          + sec(2, imports) + sec(3, b"\x01\x00") + sec(7, b"\x01" + name("main") + b"\x00\x00")
          + sec(10, b"\x01" + uleb(len(body)) + body))
open(sys.argv[1], "wb").write(module)
EOF

LDD_ALL=("$WASMLINK" ldd -r -L "$CORPUS" "$WORK/all11.wasm")
LDD_PY=("$WASMLINK" ldd -r -L "$CORPUS" "$CORPUS/libpython3.14.so")
RUN_ALL=("$WASMLINK" run -L "$CORPUS" "$WORK/all11.wasm")
# Warm the on-disk cache (the first load compiles: about 15 s here).
"${LDD_ALL[@]}" >/dev/null
"${RUN_ALL[@]}" >/dev/null

# Whole-process wall time, A and the native anchor in turn; medians and the pairwise ratio.
ANCHOR=python3
[ -x /usr/bin/python3 ] && ANCHOR=/usr/bin/python3
python3 - "$RUNS" "$ANCHOR" <<EOF
import statistics, subprocess, sys, time
runs = int(sys.argv[1])
anchor = [sys.argv[2], "-c", "pass"]
cases = {
    "ldd -r all 11": """${LDD_ALL[*]}""".split(),
    "ldd -r libpython3.14.so": """${LDD_PY[*]}""".split(),
    "run all11 (constructors too)": """${RUN_ALL[*]}""".split(),
}
def wall(cmd):
    t = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - t
print(f"load average: {open('/proc/loadavg').read().split()[:3]}")
for label, cmd in cases.items():
    a, b, r = [], [], []
    for _ in range(runs):
        x, y = wall(cmd), wall(anchor)
        a.append(x); b.append(y); r.append(x / y)
    print(f"{label}: median {statistics.median(a)*1e3:.1f} ms (min {min(a)*1e3:.1f}, max {max(a)*1e3:.1f}); "
          f"{anchor[0]} -c pass {statistics.median(b)*1e3:.1f} ms; ratio median {statistics.median(r):.2f}x")
EOF
