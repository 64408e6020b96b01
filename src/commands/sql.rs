//! `wasmlink sql`: SQL over Parquet, CSV, JSON Lines and Arrow files (Apache DataFusion), with
//! plugins' Arrow functions as scalar functions and the search index as a table function
//! (crates/sql).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use wasmlink::plugin::{HostConfig, PluginHost};
use wasmlink::policy::Policy;
use wasmlink_sql::{OutputFormat, SearchHit, SearchIndex, SqlSession};

use crate::flags::{CacheFlags, ModulesFlag};
use crate::input::CliError;

/// Run a SQL query over data files, with WebAssembly plugins as functions.
#[derive(clap::Args)]
#[command(after_help = "\
Tables: --table NAME=PATH, the format from the extension (.parquet, .csv, .jsonl/.ndjson/.json,
.arrow/.arrows/.ipc) or a Parquet/Arrow file's magic bytes.

Functions: --udf NAME=MODULE:FUNCTION[:POLICY] makes the module's Arrow function FUNCTION the
SQL scalar function NAME. The argument columns go to the module as one record batch per
DataFusion batch (a column argument keeps its name: double(x) sends a column `x`; other
arguments are arg1, arg2, ...), under POLICY (a policy file; default: deny everything, 256 MiB,
30 s per call) and through the one-copy exchange. The module returns a batch of one column with
one value per row; its type is the function's, learnt by calling it once on an empty batch.

search(INDEX, QUERY[, K]) is a table of rank, score, title, path: the search engine's query
module on an index from `wasmlink index` (read-only, as `wasmlink search`).

Output: an aligned table, or --format csv|json|arrow|parquet (json is JSON Lines); -o FILE
writes it (the format from FILE's extension unless --format says otherwise).

Examples:
  wasmlink sql --table t=x.parquet 'SELECT count(*) FROM t'
  wasmlink sql --table t=x.jsonl --udf double=greeter.wasm:double 'SELECT x, double(x) FROM t'
  wasmlink sql \"SELECT title, path FROM search('idx', 'lifetime elision', 5)\"
  wasmlink sql --table t=x.csv --format parquet -o out.parquet 'SELECT * FROM t WHERE x > 1'

Cluster (feature `cluster`): --cluster df://HOST:PORT runs the query on a Ballista cluster
(`wasmlink cluster scheduler|executor`). Table paths must name the same files on every executor
(Parquet, CSV, JSON Lines; not Arrow files). In --udf, MODULE is a file or NAME@VERSION in --repo;
the scheduler and executors load the same module and refuse if their bytes' sha256 differs.
search(...) is not available on a cluster.

Exit status: 0 success; 1 the query failed (a planning error, a failing function); 2 bad
usage or input (a bad --table or --udf, an unreadable file or module, a bad --cluster URL), or
the output cannot be written; 3 the --cluster scheduler cannot be reached.")]
pub struct Args {
    /// The SQL query.
    query: String,
    /// A table: NAME=PATH (repeatable).
    #[arg(long = "table", value_name = "NAME=PATH")]
    tables: Vec<String>,
    /// A plugin function: NAME=MODULE:FUNCTION[:POLICY] (repeatable).
    #[arg(long = "udf", value_name = "NAME=MODULE:FUNCTION[:POLICY]")]
    udfs: Vec<String>,
    /// Output format: table, csv, json (JSON Lines), arrow or parquet.
    #[arg(long, value_parser = ["table", "csv", "json", "arrow", "parquet"])]
    format: Option<String>,
    /// Write the result to FILE (`-`: stdout).
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Threads to run the query on (default: the machine's cores).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: Option<u16>,
    /// Where the search engine's modules are (for search(...)).
    #[command(flatten)]
    modules: ModulesFlag,
    /// Run on a Ballista cluster: its scheduler, df://HOST:PORT (feature `cluster`).
    #[cfg(feature = "cluster")]
    #[arg(long, value_name = "df://HOST:PORT")]
    cluster: Option<String>,
    /// The module repository for --udf modules named NAME@VERSION (with --cluster).
    #[cfg(feature = "cluster")]
    #[arg(long, value_name = "DIR", env = "WASMLINK_REPO", requires = "cluster")]
    repo: Option<PathBuf>,
    #[command(flatten)]
    cache: CacheFlags,
}

/// `NAME=MODULE:FUNCTION[:POLICY]`: the policy is a last part ending in `.toml`.
fn parse_udf(spec: &str) -> Result<(String, PathBuf, String, Option<PathBuf>), CliError> {
    let bad = |why: &str| {
        CliError::Other(format!(
            "--udf `{spec}`: {why} (expected NAME=MODULE:FUNCTION[:POLICY])"
        ))
    };
    let (name, rest) = spec.split_once('=').ok_or_else(|| bad("no `=`"))?;
    let (rest, policy) = match rest.rsplit_once(':') {
        Some((r, p)) if p.ends_with(".toml") => (r, Some(PathBuf::from(p))),
        _ => (rest, None),
    };
    let (module, function) = rest.rsplit_once(':').ok_or_else(|| bad("no `:FUNCTION`"))?;
    if name.is_empty() || module.is_empty() || function.is_empty() {
        return Err(bad("an empty part"));
    }
    Ok((
        name.to_string(),
        PathBuf::from(module),
        function.to_string(),
        policy,
    ))
}

fn format_of(args: &Args) -> Result<OutputFormat, CliError> {
    let by_name = |f: &str| match f {
        "csv" => Some(OutputFormat::Csv),
        "json" | "jsonl" | "ndjson" => Some(OutputFormat::Json),
        "arrow" | "arrows" | "ipc" => Some(OutputFormat::Arrow),
        "parquet" => Some(OutputFormat::Parquet),
        "table" | "txt" => Some(OutputFormat::Table),
        _ => None,
    };
    if let Some(f) = &args.format {
        return by_name(f).ok_or_else(|| CliError::Other(format!("--format {f}: unknown")));
    }
    match args.output.as_deref().filter(|p| p.as_os_str() != "-") {
        Some(p) => {
            let ext = p
                .extension()
                .map(|e| e.to_string_lossy().to_ascii_lowercase())
                .unwrap_or_default();
            by_name(&ext).ok_or_else(|| {
                CliError::Other(format!(
                    "{}: cannot tell the format from the extension: add --format csv|json|arrow|parquet|table",
                    p.display()
                ))
            })
        }
        None => Ok(OutputFormat::Table),
    }
}

/// `search(...)` through the sandboxed query module, as `wasmlink search` runs it.
struct QueryModule {
    host: PluginHost,
    modules: ModulesFlag,
}

#[derive(serde::Deserialize)]
struct Hit {
    rank: u32,
    score: f64,
    title: String,
    path: String,
}

impl SearchIndex for QueryModule {
    fn search(
        &self,
        index: &str,
        query: &str,
        k: usize,
    ) -> Result<Vec<SearchHit>, Box<dyn std::error::Error + Send + Sync>> {
        let dir = Path::new(index);
        if !dir.is_dir() {
            return Err(
                "no such index directory (build one with `wasmlink index --out DIR`)".into(),
            );
        }
        let plugin =
            crate::search_modules::load_module(&self.host, &self.modules, "query", Some(dir))
                .map_err(|e| e.to_string())?;
        let request = serde_json::json!({ "query": query, "k": k }).to_string();
        let out = plugin
            .call_str("search", &request)
            .map_err(|e| e.to_string())?;
        out.lines()
            .map(|l| {
                let h: Hit = serde_json::from_str(l)
                    .map_err(|e| format!("the query module returned a bad line: {e}"))?;
                Ok(SearchHit {
                    rank: h.rank,
                    score: h.score,
                    title: h.title,
                    path: h.path,
                })
            })
            .collect()
    }
}

pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let format = format_of(&args)?;
    if matches!(format, OutputFormat::Arrow | OutputFormat::Parquet)
        && args.output.as_ref().is_none_or(|p| p.as_os_str() == "-")
        && std::io::stdout().is_terminal()
    {
        return Err(CliError::Other(
            "binary output (arrow, parquet) is not written to a terminal: add -o FILE".into(),
        ));
    }
    let threads = args.threads.map_or_else(
        || std::thread::available_parallelism().map_or(2, |n| n.get()),
        usize::from,
    );
    #[cfg(feature = "cluster")]
    if let Some(url) = &args.cluster {
        return run_on_cluster(&args, url, threads, format);
    }
    let session = SqlSession::new(threads).map_err(|e| CliError::Other(e.to_string()))?;
    for t in &args.tables {
        let (name, path) = t
            .split_once('=')
            .ok_or_else(|| CliError::Other(format!("--table `{t}`: expected NAME=PATH")))?;
        session
            .register_table(name, Path::new(path))
            .map_err(|e| CliError::Other(format!("--table: {e}")))?;
    }
    let host = PluginHost::new(HostConfig {
        pool_slots: u32::try_from(threads).unwrap_or(u32::MAX),
        cache_dir: args.cache.dir(),
        ..HostConfig::default()
    })
    .map_err(|e| CliError::Other(e.to_string()))?;
    for spec in &args.udfs {
        let (name, module, function, policy) = parse_udf(spec)?;
        let policy = match &policy {
            Some(p) => Policy::from_file(p).map_err(|e| CliError::Other(e.to_string()))?,
            None => Policy::default(),
        };
        let plugin = host
            .load_file(&module, policy)
            .map_err(|e| CliError::Other(format!("--udf {name}: {e}")))?;
        session
            .register_udf(&name, plugin, &function)
            .map_err(|e| CliError::Other(format!("--udf: {e}")))?;
    }
    let search_host = PluginHost::new(HostConfig {
        pool_slots: 0,
        cache_dir: args.cache.dir(),
        ..HostConfig::default()
    })
    .map_err(|e| CliError::Other(e.to_string()))?;
    session.register_search(Arc::new(QueryModule {
        host: search_host,
        modules: args.modules.clone(),
    }));
    let result = match session.query(&args.query) {
        Ok(r) => r,
        Err(e) => {
            crate::output::error(&e);
            return Ok(ExitCode::from(1));
        }
    };
    let bytes = result
        .encode(format)
        .map_err(|e| CliError::Other(e.to_string()))?;
    crate::output::write_output(args.output.as_deref(), &bytes)?;
    Ok(ExitCode::SUCCESS)
}

/// `--cluster df://HOST:PORT`: the session is a Ballista client; functions travel by module
/// name and hash (crates/cluster).
#[cfg(feature = "cluster")]
fn run_on_cluster(
    args: &Args,
    url: &str,
    threads: usize,
    format: OutputFormat,
) -> Result<ExitCode, CliError> {
    let (session, resolver) = match wasmlink_cluster::connect(url, threads) {
        Ok(s) => s,
        Err(e @ wasmlink_cluster::ClusterError::Address(_))
            if wasmlink_cluster::parse_cluster_url(url).is_ok() =>
        {
            crate::output::error(&e);
            return Ok(ExitCode::from(3));
        }
        Err(e) => return Err(CliError::Other(e.to_string())),
    };
    for t in &args.tables {
        let (name, path) = t
            .split_once('=')
            .ok_or_else(|| CliError::Other(format!("--table `{t}`: expected NAME=PATH")))?;
        if wasmlink_sql::TableFormat::of(Path::new(path))
            == Some(wasmlink_sql::TableFormat::ArrowIpc)
        {
            return Err(CliError::Other(format!(
                "--table `{t}`: an Arrow IPC table cannot run on a cluster (use Parquet, CSV or JSON Lines)"
            )));
        }
        // Executors open the path themselves: make it absolute.
        let abs = std::fs::canonicalize(path).map_err(|e| {
            CliError::Other(format!(
                "--table: table `{name}` ({path}): {}",
                crate::input::io_message(&e)
            ))
        })?;
        session
            .register_table(name, &abs)
            .map_err(|e| CliError::Other(format!("--table: {e}")))?;
    }
    for spec in &args.udfs {
        let (name, module, function, policy) = parse_udf(spec)?;
        let (spec, bytes, policy) = wasmlink_cluster::UdfSpec::from_client(
            &name,
            &module.to_string_lossy(),
            &function,
            policy.as_deref(),
            args.repo.as_deref(),
        )
        .map_err(|e| CliError::Other(e.to_string()))?;
        let plugin = resolver
            .host()
            .load(&spec.plugin_name(), &bytes, policy)
            .map_err(|e| CliError::Other(format!("--udf {name}: {e}")))?;
        wasmlink_cluster::register_cluster_udf(&session, &spec, plugin)
            .map_err(|e| CliError::Other(e.to_string()))?;
    }
    let result = match session.query(&args.query) {
        Ok(r) => r,
        Err(e) => {
            crate::output::error(&tidy_cluster_error(&e.to_string()));
            return Ok(ExitCode::from(1));
        }
    };
    let bytes = result
        .encode(format)
        .map_err(|e| CliError::Other(e.to_string()))?;
    crate::output::write_output(args.output.as_deref(), &bytes)?;
    Ok(ExitCode::SUCCESS)
}

/// Ballista returns a scheduler's error as a gRPC status whose message nests DataFusion errors
/// in escaped `Debug` text; the innermost message is the one that says what went wrong.
#[cfg(feature = "cluster")]
fn tidy_cluster_error(text: &str) -> String {
    if !text.contains("Status {") {
        return text.to_string();
    }
    let mut t = text.to_string();
    loop {
        let u = t.replace("\\\\", "\\").replace("\\\"", "\"");
        if u == t {
            break;
        }
        t = u;
    }
    let Some(start) = t.rfind("(\"") else {
        return t;
    };
    let inner = &t[start + 2..];
    let inner = inner.split("\")").next().unwrap_or(inner);
    format!("the cluster refused the query: {inner}")
}
