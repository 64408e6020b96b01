//! The one integration-test binary (each test binary relinks wasmtime, so there is one).

mod support;

mod cli;
mod corpus;
mod guest_abi;
mod exchange;
mod exchange_hostile;
mod hostile;
mod linker;
mod linker_cases;
mod policy;
mod parquet;
mod pipeline;
mod plugin;
mod repo;
mod search;
mod robustness;
