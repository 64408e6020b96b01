//! `wasmlink search`: answer a query over an index built by `wasmlink index`, by running the
//! search engine's query module (guest/search/query) under a policy that grants the index
//! directory read-only and nothing else.
//!
//! Also the helpers `wasmlink index` shares: where the modules are, and their policies.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use wasmlink::plugin::{HostConfig, Plugin, PluginHost};
use wasmlink::policy::{HumanDuration, Policy};

use crate::input::{CliError, print};

/// Search an index built by `wasmlink index` (BM25, best first).
#[derive(clap::Args)]
#[command(after_help = "\
The query module (target/guest-modules/query.wasm) runs under examples/search/query.toml: the
index directory read-only at /index, nothing else. Modules are looked up in --modules DIR,
then $WASMLINK_MODULES, then target/guest-modules/ of the build tree this wasmlink binary is
in; build them with `bash scripts/build-guests.sh`.

Examples:
  wasmlink search target/demo/book-index \"ownership borrowing\"
  wasmlink search -k 3 --json target/demo/book-index \"trait objects dyn\"

Exit status: 0 results printed (possibly none); 2 bad usage, no index, or a module error.")]
pub struct Args {
    /// The index directory (written by `wasmlink index --out`).
    index: PathBuf,
    /// The query (tokenized and normalised like the documents).
    query: String,
    /// How many results.
    #[arg(short, default_value_t = 10)]
    k: usize,
    /// Print the results as JSON Lines: rank, score, title, path.
    #[arg(long)]
    json: bool,
    /// Where the search engine's modules are.
    #[command(flatten)]
    modules: ModulesFlag,
    /// Run the query N more times on the same instance and print its latency (p50, p99) on
    /// stderr.
    #[arg(long, value_name = "N")]
    repeat: Option<usize>,
}

/// `--modules DIR` (or `WASMLINK_MODULES`).
#[derive(clap::Args, Clone, Debug)]
pub struct ModulesFlag {
    /// The directory holding the search engine's modules (extract.wasm, tokenize.wasm,
    /// normalize.wasm, index.wasm, query.wasm).
    #[arg(long = "modules", value_name = "DIR", env = "WASMLINK_MODULES")]
    pub dir: Option<PathBuf>,
}

impl ModulesFlag {
    /// The path of module `name` (`name.wasm`), or an error saying how to build it.
    pub fn find(&self, name: &str) -> Result<PathBuf, CliError> {
        let file = format!("{name}.wasm");
        let mut tried = Vec::new();
        if let Some(dir) = &self.dir {
            let p = dir.join(&file);
            if p.is_file() {
                return Ok(p);
            }
            return Err(CliError::Other(format!(
                "{}: module not found (--modules / WASMLINK_MODULES is {}); build the modules \
                 with `bash scripts/build-guests.sh`",
                p.display(),
                dir.display()
            )));
        }
        // The build tree of this binary: target/{debug,release}/wasmlink -> target/guest-modules.
        if let Ok(exe) = std::env::current_exe()
            && let Some(target) = exe.parent().and_then(Path::parent)
        {
            tried.push(target.join("guest-modules"));
        }
        tried.push(Path::new(env!("CARGO_MANIFEST_DIR")).join("target/guest-modules"));
        for dir in &tried {
            let p = dir.join(&file);
            if p.is_file() {
                return Ok(p);
            }
        }
        let dirs: Vec<String> = tried.iter().map(|d| d.display().to_string()).collect();
        Err(CliError::Other(format!(
            "module {file} not found in {}; build the modules with `bash scripts/build-guests.sh` \
             (or pass --modules DIR / set WASMLINK_MODULES)",
            dirs.join(" or ")
        )))
    }
}

/// The policy of search-engine module `name` (examples/search/NAME.toml, compiled in). For the
/// index and query modules, `index_dir` replaces the granted directory's host path.
pub fn module_policy(name: &str, index_dir: Option<&Path>) -> Result<Policy, CliError> {
    let (origin, text) = match name {
        "extract" => (
            "examples/search/extract.toml",
            include_str!("../../examples/search/extract.toml"),
        ),
        "tokenize" => (
            "examples/search/tokenize.toml",
            include_str!("../../examples/search/tokenize.toml"),
        ),
        "normalize" => (
            "examples/search/normalize.toml",
            include_str!("../../examples/search/normalize.toml"),
        ),
        "index" => (
            "examples/search/index.toml",
            include_str!("../../examples/search/index.toml"),
        ),
        "query" => (
            "examples/search/query.toml",
            include_str!("../../examples/search/query.toml"),
        ),
        other => return Err(CliError::Other(format!("no policy for module `{other}`"))),
    };
    let mut policy = Policy::from_toml(text, origin).map_err(|e| CliError::Other(e.0))?;
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
    let path = modules.find(name)?;
    let mut policy = module_policy(name, index_dir)?;
    if timeout.is_some() {
        policy.limits.timeout = timeout;
    }
    host.load_file(&path, policy)
        .map_err(|e| CliError::Other(e.to_string()))
}

/// One result line of the query module.
#[derive(serde::Deserialize)]
struct Hit {
    rank: usize,
    score: f64,
    title: String,
    path: String,
}

pub fn run(args: Args) -> Result<ExitCode, CliError> {
    if !args.index.is_dir() {
        return Err(CliError::Input {
            path: args.index.clone(),
            message: "no such index directory (build one with `wasmlink index --out DIR`)".into(),
        });
    }
    let host = PluginHost::new(HostConfig {
        pool_slots: 0,
        cache_dir: wasmlink::process::default_cache_dir(),
        ..HostConfig::default()
    })
    .map_err(|e| CliError::Other(e.to_string()))?;
    let plugin = load_module(&host, &args.modules, "query", Some(&args.index))?;
    let request = serde_json::json!({ "query": args.query, "k": args.k }).to_string();
    let mut instance = plugin
        .instance()
        .map_err(|e| CliError::Other(e.to_string()))?;
    let started = Instant::now();
    let out = instance
        .call_str("search", &request)
        .map_err(|e| CliError::Other(format!("{}: {e}", args.index.display())))?;
    let first = started.elapsed();

    if args.json {
        print(&out)?;
    } else {
        let mut text = String::new();
        for line in out.lines() {
            let hit: Hit = serde_json::from_str(line).map_err(|e| {
                CliError::Other(format!("the query module returned a bad result line: {e}"))
            })?;
            let title = if hit.title.is_empty() {
                "(untitled)"
            } else {
                &hit.title
            };
            text.push_str(&format!(
                "{:>3}. {:>8.4}  {title}\n              {}\n",
                hit.rank, hit.score, hit.path
            ));
        }
        if text.is_empty() {
            text.push_str("no results\n");
        }
        print(&text)?;
    }

    if let Some(n) = args.repeat {
        let mut times = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            instance
                .call_str("search", &request)
                .map_err(|e| CliError::Other(e.to_string()))?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        let pct = |p: f64| -> f64 {
            if times.is_empty() {
                return 0.0;
            }
            let i = ((p * times.len() as f64).ceil() as usize).clamp(1, times.len()) - 1;
            times[i]
        };
        eprintln!(
            "query latency over {n} runs: p50 {:.3} ms, p99 {:.3} ms (first call, opening the \
             index: {:.3} ms)",
            pct(0.50),
            pct(0.99),
            first.as_secs_f64() * 1e3
        );
    }
    Ok(ExitCode::SUCCESS)
}
