#!/usr/bin/env bash
# Start-up of CPython under the runtime linker against the native interpreter, same run.
# Usage: scripts/bench-python.sh [RUNS] [WASMLINK]   (default 20, target/release/wasmlink)
# Runs `WASMLINK python -c pass` and `/usr/bin/python3 -c pass` in turn (A B A B ...), after
# one warm-up of each (which also fills the compiled-code and bytecode caches), and prints
# each one's median wall time and the median of the pairwise ratios. Then one run with
# WASMLINK_DEBUG=statistics for the split into load phases and main.
set -euo pipefail
runs=${1:-20}
wl=${2:-target/release/wasmlink}
native=/usr/bin/python3   # not `python3` on PATH, which may be a pyenv shim
now() { date +%s%N; }
"$wl" python -c pass; "$native" -c pass
a=(); b=(); r=()
for _ in $(seq "$runs"); do
  t0=$(now); "$wl" python -c pass; t1=$(now); "$native" -c pass; t2=$(now)
  a+=($(( (t1 - t0) / 1000 ))); b+=($(( (t2 - t1) / 1000 )))
  r+=("$(awk -v x=$((t1 - t0)) -v y=$((t2 - t1)) 'BEGIN{printf "%.3f", x/y}')")
done
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END{print v[int((NR+1)/2)]}'; }
echo "wasmlink python -c pass: median $(median "${a[@]}") us"
echo "$native -c pass: median $(median "${b[@]}") us"
echo "ratio (pairwise median): $(median "${r[@]}")"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
WASMLINK_DEBUG=statistics "$wl" python -c pass
