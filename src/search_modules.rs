//! The search engine's modules (guest/search): where `index` and `search` find them (built into
//! the binary by build.rs, or files: [`ModulesFlag::find`]), and the
//! policy each runs under (examples/search/*.toml, compiled in).

use std::path::Path;

use wasmlink::plugin::{Plugin, PluginHost};
use wasmlink::policy::{HumanDuration, Policy};

use crate::flags::{ModuleSource, ModulesFlag};
use crate::input::CliError;

/// The policy of search-engine module `name` (examples/search/NAME.toml, compiled in). For the
/// index and query modules, `index_dir` replaces the granted directory's host path.
pub fn module_policy(name: &str, index_dir: Option<&Path>) -> Result<Policy, CliError> {
    let (origin, text) = match name {
        "extract" => (
            "examples/search/extract.toml",
            include_str!("../examples/search/extract.toml"),
        ),
        "analyze" => (
            "examples/search/analyze.toml",
            include_str!("../examples/search/analyze.toml"),
        ),
        "index" => (
            "examples/search/index.toml",
            include_str!("../examples/search/index.toml"),
        ),
        "query" => (
            "examples/search/query.toml",
            include_str!("../examples/search/query.toml"),
        ),
        other => return Err(CliError::Other(format!("no policy for module `{other}`"))),
    };
    let mut policy = Policy::from_toml(text, origin).map_err(|e| CliError::Other(e.to_string()))?;
    if let Some(dir) = index_dir {
        let abs = std::path::absolute(dir)
            .map_err(|e| CliError::Other(format!("{}: {e}", dir.display())))?;
        for grant in &mut policy.dirs {
            grant.host = abs.clone();
        }
    }
    Ok(policy)
}

/// Loads search-engine module `name` under its policy.
pub fn load_module(
    host: &PluginHost,
    modules: &ModulesFlag,
    name: &str,
    index_dir: Option<&Path>,
) -> Result<Plugin, CliError> {
    load_module_timeout(host, modules, name, index_dir, None)
}

/// [`load_module`], with `limits.timeout` replaced when `timeout` is given.
pub fn load_module_timeout(
    host: &PluginHost,
    modules: &ModulesFlag,
    name: &str,
    index_dir: Option<&Path>,
    timeout: Option<HumanDuration>,
) -> Result<Plugin, CliError> {
    let source = modules.find(name)?;
    let mut policy = module_policy(name, index_dir)?;
    if timeout.is_some() {
        policy.limits.timeout = timeout;
    }
    match source {
        ModuleSource::File(path) => host.load_file(&path, policy),
        ModuleSource::Embedded(bytes) => host.load(name, &bytes, policy),
    }
    .map_err(|e| CliError::Other(e.to_string()))
}
