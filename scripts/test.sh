#!/usr/bin/env bash
# README's test command: set up a fresh machine, fetch the real-world corpus, run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo run -q -p wasmlink-xtask -- corpus
cargo test --workspace
