#!/usr/bin/env bash
# wasmlink's data exchange against Extism's, in one run (BENCHMARKS.md, "Data exchange"):
#
#   1. `cargo bench --bench plugin` for the 16 MiB echoes and the 64-byte call
#      (wasmlink, wasmtime 48), with memcpy of 16 MiB as the reference;
#   2. scripts/bench-extism.sh for Extism's echoes (extism 1.30, wasmtime 43, its own
#      workspace), with memcpy of 16 MiB measured again as its reference;
#   3. a table of both, each echo also as a multiple of the memcpy measured in its own process.
#
# The first run builds two wasmtimes in release (30-50 minutes on 2 cores); later runs take a
# few minutes. Needs python3 (for the table).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

cargo bench --bench plugin -- \
  'exchange16/(memcpy|memcpy_x2|echo_arrow|echo_copy_arrow|echo_bytes|echo_bytes_with)$|bytes64/(raw_typed_epoch|call_bytes_held|call_bytes_with_held)$'
EXTISM_ECHO_JSON="$root/target/extism/echo.json" bash scripts/bench-extism.sh \
  'echo16/(memcpy|extism_echo|extism_echo_vec)$|call/(extism_echo64|raw_add_epoch)$'

python3 - "$root" <<'EOF'
import json, sys, os
root = sys.argv[1]
def crit(group, name):
    p = os.path.join(root, "target/criterion", group, name, "new/estimates.json")
    with open(p) as f:
        return json.load(f)["median"]["point_estimate"]
ex = json.load(open(os.path.join(root, "target/extism/echo.json")))
mib16 = 16 * 1024 * 1024
wl_memcpy = crit("exchange16", "memcpy")
rows = [
    ("wasmlink", "memcpy of 16 MiB (reference)", wl_memcpy, wl_memcpy),
    ("wasmlink", "memcpy of 16 MiB twice (reference for copy in + copy out)", crit("exchange16", "memcpy_x2"), wl_memcpy),
    ("wasmlink", "call_arrow(\"echo_copy_arrow\") (a new batch: copy in, copy out)", crit("exchange16", "echo_copy_arrow"), wl_memcpy),
    ("wasmlink", "call_arrow(\"echo_arrow\") (in place: the input batch passed through)", crit("exchange16", "echo_arrow"), wl_memcpy),
    ("wasmlink", "call_bytes_with(\"echo\") (output borrowed)", crit("exchange16", "echo_bytes_with"), wl_memcpy),
    ("wasmlink", "call_bytes(\"echo\") (output copied to a Vec)", crit("exchange16", "echo_bytes"), wl_memcpy),
    ("extism", "memcpy of 16 MiB (reference)", ex["memcpy_ns"], ex["memcpy_ns"]),
    ("extism", "call::<&[u8], &[u8]>(\"echo\") (output borrowed)", ex["extism_echo16_ns"], ex["memcpy_ns"]),
    ("extism", "call::<&[u8], Vec<u8>>(\"echo\") (output copied)", ex["extism_echo16_vec_ns"], ex["memcpy_ns"]),
]
print("\n16 MiB echo (GB/s = 16 MiB / median, 1 GB = 1e9 B)")
print("| process | measurement | median | GB/s | vs memcpy of its process |")
print("|---|---|---|---|---|")
for who, what, ns, ref in rows:
    if ns is None:
        print(f"| {who} | {what} | (not run) | | |")
        continue
    print(f"| {who} | {what} | {ns/1e6:.2f} ms | {mib16/ns:.2f} | {ns/ref:.2f}x |")
def ratio(a, b):
    return "n/a" if a is None or b is None else f"{b/a:.1f}x"
print()
print("byte echo vs byte echo (same guest work: the input copied into a new output)")
print("wasmlink vs Extism, borrowed output:", ratio(crit("exchange16", "echo_bytes_with"), ex["extism_echo16_ns"]), "faster")
print("wasmlink vs Extism, output copied:  ", ratio(crit("exchange16", "echo_bytes"), ex["extism_echo16_vec_ns"]), "faster")
# Extism has no Arrow call: the Arrow rows are wasmlink's own, against its memcpys only.
print("wasmlink Arrow new batch vs two memcpys:", f'{crit("exchange16", "memcpy_x2")/crit("exchange16", "echo_copy_arrow"):.2f}x their speed')
b64 = crit("bytes64", "call_bytes_held")
print(f"\n64-byte echo: wasmlink call_bytes {b64/1e3:.2f} us, call_bytes_with {crit('bytes64', 'call_bytes_with_held')/1e3:.2f} us, "
      f"raw TypedFunc {crit('bytes64', 'raw_typed_epoch'):.1f} ns; Extism {ex['extism_echo64_ns']/1e3:.2f} us "
      f"(raw TypedFunc on its wasmtime {ex['raw_call_epoch_ns']:.1f} ns): {ratio(b64, ex['extism_echo64_ns'])} faster")
EOF
