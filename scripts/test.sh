#!/usr/bin/env bash
# README's test command: set up a fresh machine, fetch the real-world corpus, run every test.
set -euo pipefail
# One-shot builds gain nothing from incremental caches, which take gigabytes of disk.
export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo run -q -p wasmlink-xtask -- corpus
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# With the `cluster` feature (implies `sql`): the DataFusion and Ballista tests run too
# (docs/sql.md; built without optimisation, see Cargo.toml's profile overrides).
cargo test --no-fail-fast --features cluster 2>&1 | tee "$log"
# The installed binary: under 50 MB, runs the main job with no checkout (a release build).
bash scripts/check-install.sh 2>&1 | tee -a "$log"
# One closing line for the whole run (cargo prints one per test binary, the last often "0 passed").
awk '/^test result:/ { p += $4; f += $6 } END { printf "total: %d passed, %d failed\n", p, f }' "$log"
