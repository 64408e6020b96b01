//! One module per subcommand.

pub mod inspect;
pub mod ldd;
pub mod nm;
pub mod run;
