#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ for a fixed time each and prints one summary line per target.
#   bash scripts/fuzz.sh [SECONDS]        (default 60 per target)
# Needs cargo-fuzz (`cargo install cargo-fuzz`); uses RUSTC_BOOTSTRAP=1 on the stable toolchain
# (see fuzz/README.md). Crashes go to fuzz/artifacts/<target>/, logs to fuzz/fuzz-<target>.log.
# Exit status: 0 if no target found a crash, 1 otherwise, 2 on a usage or setup error.
set -uo pipefail
secs=${1:-60}
case "$secs" in ''|*[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS]" >&2; exit 2 ;; esac
cd "$(dirname "$0")/../fuzz" || exit 2
command -v cargo-fuzz >/dev/null || { echo "fuzz: cargo-fuzz not found (cargo install cargo-fuzz)" >&2; exit 2; }
export RUSTC_BOOTSTRAP=1
targets=$(cargo fuzz list) || exit 2
# Seeds for the dylink targets (the others start from libFuzzer's empty input).
cargo run -q --release --example seeds >/dev/null 2>&1 || echo "fuzz: seeds not written (see fuzz/README.md)" >&2
status=0
summary=()
for t in $targets; do
  mkdir -p "corpus/$t"
  log="fuzz-$t.log"
  cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 -timeout=10 \
    -print_final_stats=1 >"$log" 2>&1
  rc=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
  units=$(find "corpus/$t" -type f | wc -l)
  crashes=$(find "artifacts/$t" -type f 2>/dev/null | wc -l)
  [ "$rc" -eq 0 ] || status=1
  summary+=("$(printf '%-16s rc=%-3s %ss  executions=%-10s %-10s corpus=%-6s artifacts=%s' \
    "$t" "$rc" "$secs" "${execs:-?}" "${cov:-cov: ?}" "$units" "$crashes")")
done
echo "== fuzz summary ($(date -u '+%Y-%m-%d %H:%M UTC'), $secs s per target)"
printf '%s\n' "${summary[@]}"
exit $status
