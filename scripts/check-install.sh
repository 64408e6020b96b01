#!/usr/bin/env bash
# Issue 16's "done when", checked for real: the binary that `cargo install --path .` installs is
# under 50 MB and runs wasmlink's main job (index, then search) from a directory with no
# checkout, no build tree and an empty environment, on the search modules built into it.
#
# It builds in release mode into target/ (`--target-dir target`, so it shares the release build
# with scripts/demo.sh): minutes the first time, seconds after. scripts/test.sh runs it after the
# tests; run it alone with `bash scripts/check-install.sh`.
set -euo pipefail
cd "$(dirname "$0")/.."
limit_mb=50

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "check-install: cargo install --path . (release; minutes on a first build)" >&2
cargo install --quiet --locked --path . --root "$tmp/prefix" --target-dir target --force
bin="$tmp/prefix/bin/wasmlink"

size=$(stat -c %s "$bin")
mb=$(awk -v s="$size" 'BEGIN { printf "%.1f", s / 1e6 }')
if [ "$size" -ge $((limit_mb * 1000 * 1000)) ]; then
  echo "check-install: FAILED: the installed wasmlink is $mb MB, not under $limit_mb MB" >&2
  exit 1
fi

# A copy of the binary far from the checkout, run with an empty environment: it can only use
# the modules built into it.
mkdir -p "$tmp/away/corpus" "$tmp/away/home"
cp "$bin" "$tmp/away/wasmlink"
printf '# Borrowing\n\nA reference borrows a value without taking ownership of it.\n' \
  >"$tmp/away/corpus/borrow.md"
printf '# Traits\n\nA trait defines shared behaviour.\n' >"$tmp/away/corpus/traits.md"
run() { (cd "$tmp/away" && env -i PATH=/usr/bin:/bin HOME="$tmp/away/home" ./wasmlink "$@"); }
if ! out=$(run index --corpus corpus --out idx --no-progress 2>&1); then
  echo "check-install: FAILED: wasmlink index outside the checkout: $out" >&2
  exit 1
fi
if ! hits=$(run search idx "borrowing" 2>&1) || ! grep -q "borrow.md" <<<"$hits"; then
  echo "check-install: FAILED: wasmlink search did not find borrow.md: $hits" >&2
  exit 1
fi
echo "check-install: ok: the installed wasmlink is $mb MB (under $limit_mb MB) and indexes and searches with no checkout"
