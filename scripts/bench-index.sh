#!/usr/bin/env bash
# Benchmarks `wasmlink index` against the same wasmlink-search code run natively in the same
# process (`--compare-native`), with 1 and 2 workers, and three ways of interrupting a module:
# `default` (the search policies' timeouts: wasmtime epoch checks at every loop header and
# function entry), `fuel` (`--timeout none` with WASMLINK_COUNT_FUEL=1: fuel counting instead,
# with a budget no call reaches) and `none` (`--timeout none`: no checks, a looping module
# would hang). The configurations run in turn, ROUNDS times, so that a noisy neighbour slows
# them all alike; the table shows the median of each figure.
#
#   bash scripts/bench-index.sh [CORPUS_DIR] [ROUNDS]
#   WORKERS="2" bash scripts/bench-index.sh      # only some worker counts
#   MODES="default none" bash scripts/bench-index.sh
#
# CORPUS_DIR defaults to the whole Rust documentation of the local toolchain; ROUNDS to 3.
# Needs the release binary and the guest modules (both built here if missing or stale).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
corpus="${1:-$(rustc --print sysroot)/share/doc/rust/html}"
rounds="${2:-3}"
if [ ! -d "$corpus" ]; then
  echo "bench-index: $corpus: no such directory (rustup component add rust-docs, or pass one)" >&2
  exit 2
fi
cargo build --quiet --release --bin wasmlink
bash scripts/build-guests.sh >/dev/null

out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
time_cmd=()
if [ -x /usr/bin/time ]; then
  time_cmd=(/usr/bin/time -f "peak RSS %M KB")
fi

configs=()
for w in ${WORKERS:-1 2}; do
  for m in ${MODES:-default fuel none}; do configs+=("$w $m"); done
done
uptime
for round in $(seq 1 "$rounds"); do
  for config in "${configs[@]}"; do
    read -r workers timeout <<<"$config"
    extra=()
    fuel=0
    if [ "$timeout" = none ] || [ "$timeout" = fuel ]; then extra=(--timeout none); fi
    if [ "$timeout" = fuel ]; then fuel=1; fi
    log="$out/w$workers-$timeout-r$round.log"
    WASMLINK_COUNT_FUEL="$fuel" "${time_cmd[@]}" target/release/wasmlink index --corpus "$corpus" --out "$out/index" \
      --workers "$workers" --batch-rows 256 --no-progress --compare-native "${extra[@]}" \
      >"$log" 2>&1 || { cat "$log" >&2; exit 1; }
    echo "round $round, $workers worker(s), timeout $timeout: $(grep -o 'in [0-9.]*s' "$log" | head -1)" >&2
  done
done

# One line per run: the figures of its log (wasm s, native s, ratio, analysis ratio, extract
# ratio, peak RSS MiB).
figures() {
  local wasm native ratio analysis extract rss
  wasm="$(grep '^indexed' "$1" | grep -o 'in [0-9.]*s' | head -1 | tr -dc '0-9.')"
  native="$(grep '^native' "$1" | grep -o 'in [0-9.]*s' | head -1 | tr -dc '0-9.')"
  ratio="$(grep '^native' "$1" | grep -o '= [0-9.]*x' | tr -dc '0-9.')"
  extract="$(grep '^per stage' "$1" | grep -o 'native ([0-9.]*x' | head -1 | tr -dc '0-9.')"
  analysis="$(grep '^per stage' "$1" | grep -o 'native ([0-9.]*x' | sed -n 2p | tr -dc '0-9.')"
  rss="$(grep -o 'peak RSS [0-9]*' "$1" | tr -dc '0-9')"
  echo "$wasm $native $ratio $analysis $extract $(( ${rss:-0} / 1024 ))"
}

median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

echo
echo "corpus: $corpus, $rounds round(s), medians"
uptime
printf "%-8s %-8s %10s %10s %10s %16s %10s %10s\n" workers interrupt "wasm (s)" "native (s)" "wasm/nat" "tok+norm+idx" extract "RSS (MiB)"
declare -A total
for config in "${configs[@]}"; do
  read -r workers timeout <<<"$config"
  rows="$(for f in "$out"/w"$workers"-"$timeout"-r*.log; do figures "$f"; done)"
  col() { awk -v c="$1" '{ print $c }' <<<"$rows" | median; }
  total[$config]="$(col 1)"
  printf "%-8s %-8s %10s %10s %9sx %15sx %9sx %10s\n" "$workers" "$timeout" "$(col 1)" "$(col 2)" \
    "$(col 3)" "$(col 4)" "$(col 5)" "$(col 6)"
done
for timeout in ${MODES:-default fuel none}; do
  if [ -z "${total[1 $timeout]:-}" ] || [ -z "${total[2 $timeout]:-}" ]; then continue; fi
  awk -v a="${total[1 $timeout]}" -v b="${total[2 $timeout]}" -v t="$timeout" \
    'BEGIN { printf "2 workers vs 1 (%s): %.2fx\n", t, a / b }'
done
for w in ${WORKERS:-1 2}; do
  if [ -z "${total[$w none]:-}" ]; then continue; fi
  for timeout in ${MODES:-default fuel none}; do
    [ "$timeout" = none ] || [ -z "${total[$w $timeout]:-}" ] && continue
    awk -v a="${total[$w $timeout]}" -v b="${total[$w none]}" -v t="$timeout" -v w="$w" \
      'BEGIN { printf "%s worker(s): %s costs %.2fx the time of none\n", w, t, a / b }'
  done
done
