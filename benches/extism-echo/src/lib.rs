//! Empty library: the benchmark is `benches/echo.rs` (run by `scripts/bench-extism.sh`).
