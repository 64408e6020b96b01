//! The one integration-test binary (each test binary relinks wasmtime, so there is one).

mod support;

mod architecture;
mod artifacts;
mod cli;
mod cli_exit;
mod cli_hostile;
mod cli_json;
mod cli_product;
#[cfg(feature = "cluster")]
mod cluster;
mod component_api;
mod component_cli;
mod component_compose;
mod component_hostile;
mod component_http;
mod component_repo;
mod component_stage;
mod component_stage_repo;
mod component_swap;
mod corpus;
mod distinct;
mod dlclose_endurance;
mod exchange;
mod exchange_hostile;
mod flat_env;
mod guest_abi;
mod hostile;
mod index_stage;
mod linker;
mod linker_cases;
mod own_memory;
mod parquet;
mod pipeline;
mod pipeline_hostile;
mod pipeline_memory;
mod plugin;
mod policy;
mod python;
mod readme;
mod repo;
mod repo_hostile;
mod robustness;
mod run_limits;
mod search;
mod serve;
#[cfg(feature = "sql")]
mod sql;
mod stub;
mod wasi02;
