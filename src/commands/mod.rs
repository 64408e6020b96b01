//! One module per subcommand.

pub mod call;
#[cfg(feature = "cluster")]
pub mod cluster;
pub mod completions;
pub mod compose;
pub mod index;
pub mod inspect;
pub mod keygen;
pub mod ldd;
pub mod man;
pub mod nm;
pub mod pipeline;
pub mod policy;
pub mod python;
pub mod repo;
pub mod run;
pub mod search;
#[cfg(feature = "flight")]
pub mod serve;
#[cfg(feature = "sql")]
pub mod sql;
pub mod stub;
