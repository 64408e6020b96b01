#!/usr/bin/env bash
# README's first command: wasmlink's main job on a built-in default. On a fresh machine it sets
# up what it needs (scripts/setup.sh), builds wasmlink (release) and the search engine's modules
# from source (scripts/build-guests.sh), indexes the Rust book shipped with the local toolchain
# by streaming it through the modules (extract -> analyze -> index, each isolated
# under its own policy), and answers three queries with ranked, titled results.
#
#   CORPUS=DIR bash scripts/demo.sh     index another directory of HTML/Markdown/text instead
#
# The dynamic linker demo is scripts/demo-linker.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if ! rustup component list --installed 2>/dev/null | grep -q '^rust-docs'; then
  rustup component add rust-docs
fi
cargo build -q --release --bin wasmlink
bash scripts/build-guests.sh >/dev/null
W=target/release/wasmlink
OUT=target/demo/book-index
corpus=()
if [ -n "${CORPUS:-}" ]; then corpus=(--corpus "$CORPUS"); fi
echo "== wasmlink index ${corpus[*]} --out $OUT"
"$W" index "${corpus[@]}" --out "$OUT"
for q in "ownership borrowing" "lifetime elision" "trait objects dyn"; do
  echo
  echo "== wasmlink search $OUT \"$q\" -k 5"
  "$W" search "$OUT" "$q" -k 5
done
