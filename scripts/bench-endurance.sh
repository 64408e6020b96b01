#!/usr/bin/env bash
# Memory and endurance (issue 18 item 6): is peak memory set by the batch size and queue depth,
# or does it grow with the corpus? Runs `wasmlink index` (2 workers, 256 documents per batch,
# the search policies' timeouts, no native comparison in the process) on the Rust book, on the
# whole Rust docs and on the docs 4 times (target/e18-docs4: four symlinks to the docs, so
# 4x the files, the documents and the postings), and prints each run's peak RSS
# (/usr/bin/time -v, "Maximum resident set size") and the peak per MB of input.
# Then, unless SKIP_CARGO=1: the plugin bench's 1,000,000 calls from 2 threads (RSS every
# 100,000 calls) and the linker bench's 100,000 dlopen/dlsym/call/dlclose cycles (RSS, table,
# memory and instances before and after).
#
#   bash scripts/bench-endurance.sh              # ~3 minutes of indexing, then the two benches
#   SKIP_CARGO=1 bash scripts/bench-endurance.sh # only the three indexing runs
#   WORKERS=1 BATCH=64 bash scripts/bench-endurance.sh
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
html="$(rustc --print sysroot)/share/doc/rust/html"
workers="${WORKERS:-2}"
batch="${BATCH:-256}"
if [ ! -d "$html/book" ]; then
  echo "bench-endurance: $html: no Rust docs (rustup component add rust-docs)" >&2
  exit 2
fi
if [ ! -x /usr/bin/time ]; then
  echo "bench-endurance: /usr/bin/time is missing (apt-get install time)" >&2
  exit 2
fi
cargo build --quiet --release --bin wasmlink
docs4="$root/target/e18-docs4"
mkdir -p "$docs4"
for c in a b c d; do
  [ -e "$docs4/$c" ] || ln -s "$html" "$docs4/$c"
done
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT

uptime
printf "%-10s %9s %9s %10s %9s %13s %11s\n" corpus files MB documents "secs" "peak RSS MiB" "KiB per MB"
for name in book docs docs4; do
  case "$name" in
    book) corpus="$html/book" ;;
    docs) corpus="$html" ;;
    docs4) corpus="$docs4" ;;
  esac
  rm -rf "$out/index"
  /usr/bin/time -v -o "$out/time" target/release/wasmlink index --corpus "$corpus" \
    --out "$out/index" --workers "$workers" --batch-rows "$batch" --no-progress --json \
    >"$out/json" 2>"$out/log" || { cat "$out/log" "$out/time" >&2; exit 1; }
  rss="$(grep 'Maximum resident set size' "$out/time" | grep -o '[0-9]*$')"
  wall="$(grep 'Elapsed (wall clock)' "$out/time" | grep -o '[0-9:.]*$')"
  num() { grep -o "\"$1\": *[0-9]*" "$out/json" | head -1 | grep -o '[0-9]*$'; }
  files="$(num files_read)"
  bytes="$(num bytes_read)"
  docs="$(num documents)"
  awk -v n="$name" -v f="$files" -v b="$bytes" -v d="$docs" -v w="$wall" -v r="$rss" 'BEGIN {
    printf "%-10s %9d %9.1f %10d %9s %13.1f %11.1f\n", n, f, b / 1e6, d, w, r / 1024, r / (b / 1e6)
  }'
done
uptime

if [ "${SKIP_CARGO:-0}" = 1 ]; then exit 0; fi
echo
echo "== plugin: 1,000,000 calls from 2 threads (the criterion benches filtered out)"
cargo bench --quiet --bench plugin -- no-criterion-bench-matches-this 2>/dev/null \
  | sed -n '/^RSS over/,/delta first/p'
uptime
echo
echo "== linker: 100,000 dlopen/dlsym/call/dlclose cycles"
WASMLINK_BENCH_GROWTH_ONLY=1 cargo bench --quiet --bench linker 2>/dev/null | grep -v '^$'
uptime
