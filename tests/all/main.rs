//! The one integration-test binary (each test binary relinks wasmtime, so there is one).

mod support;

mod cli;
mod corpus;
mod linker;
mod linker_cases;
mod robustness;
