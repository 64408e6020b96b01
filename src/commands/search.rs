//! `wasmlink search`: answer a query over an index built by `wasmlink index`, by running the
//! search engine's query module (guest/search/query) under a policy that grants the index
//! directory read-only and nothing else.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use wasmlink::plugin::{HostConfig, PluginHost};

use crate::flags::ModulesFlag;
use crate::input::CliError;
use crate::output::{diag, print};
use crate::search_modules::load_module;

/// Search an index built by `wasmlink index` (BM25, best first).
#[derive(clap::Args)]
#[command(after_help = "\
The query module (target/guest-modules/query.wasm) runs under examples/search/query.toml: the
index directory read-only at /index, nothing else. Modules are looked up in --modules DIR,
then $WASMLINK_MODULES, then target/guest-modules/ of the build tree this wasmlink binary is
in; build them with `bash scripts/build-guests.sh`.

Query syntax: words are OR-ed and ranked (BM25 over the page's body and its title, the title
weighted 2x); \"lifetime elision\" is a phrase results must contain; -word (or -\"some words\")
excludes; title:word (or title:\"some words\") requires the words in the title. Each result
prints its title, its file (absolute: the corpus root recorded by `wasmlink index` joined with
the page's path; --relative prints the path under the root) and a snippet of its text with the
matched words in bold on a terminal (plain otherwise; --json gives the snippet's highlighted
byte ranges).

Examples:
  wasmlink search target/demo/book-index \"ownership borrowing\"
  wasmlink search target/demo/book-index '\"lifetime elision\" -nomicon'
  wasmlink search -k 3 --json target/demo/book-index \"trait objects dyn\"

Exit status: 0 results printed (possibly none); 2 bad usage, no index, a module error, or
stdout cannot be written.")]
pub struct Args {
    /// The index directory (written by `wasmlink index --out`).
    index: PathBuf,
    /// The query (tokenized and normalised like the documents).
    query: String,
    /// How many results (1 to 100000).
    #[arg(short, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=MAX_K))]
    k: u64,
    /// Print the results as JSON Lines: rank, score, title, path, file, snippet, highlights.
    #[arg(long)]
    json: bool,
    /// Print each result's path relative to the corpus root instead of the whole path.
    #[arg(long)]
    relative: bool,
    /// Print no snippets (the pages' stored text is not read: faster).
    #[arg(long)]
    no_snippets: bool,
    /// Where the search engine's modules are.
    #[command(flatten)]
    modules: ModulesFlag,
    /// Run the query N more times on the same instance and print its latency (p50, p99) on
    /// stderr (N up to 1000000).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(0..=MAX_REPEAT))]
    repeat: Option<u64>,
}

/// The largest `-k`.
const MAX_K: u64 = 100_000;
/// The largest `--repeat`.
const MAX_REPEAT: u64 = 1_000_000;

/// One result line of the query module.
#[derive(serde::Deserialize)]
struct Hit {
    rank: usize,
    score: f64,
    title: String,
    path: String,
    #[serde(default)]
    file: Option<String>,
    #[serde(default)]
    snippet: Option<String>,
    #[serde(default)]
    highlights: Option<Vec<(usize, usize)>>,
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
    let request =
        serde_json::json!({ "query": args.query, "k": args.k, "snippets": !args.no_snippets })
            .to_string();
    let mut instance = plugin
        .instance()
        .map_err(|e| CliError::Other(e.to_string()))?;
    let started = Instant::now();
    let out = instance
        .call_str("search", &request)
        .map_err(|e| CliError::Other(format!("{}: {e}", args.index.display())))?;
    let first = started.elapsed();

    // Why nothing matched, when the reason is the query itself: every word is a stop word,
    // dropped from queries as from documents (wasmlink_search::STOP_WORDS).
    let why_none = || {
        wasmlink_search::stop_words_only(&args.query).map(|words| {
            format!(
                "no results: every term of the query is a stop word ({})",
                words.join(", ")
            )
        })
    };
    if args.json {
        print(&out)?;
        if out.trim().is_empty()
            && let Some(why) = why_none()
        {
            diag(format_args!("{why}"));
        }
    } else {
        let bold = std::io::IsTerminal::is_terminal(&std::io::stdout());
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
            let shown = match (&hit.file, args.relative) {
                (Some(file), false) => file,
                _ => &hit.path,
            };
            text.push_str(&format!(
                "{:>3}. {:>8.4}  {title}\n              {shown}\n",
                hit.rank, hit.score
            ));
            if let Some(snippet) = &hit.snippet {
                text.push_str("              ");
                text.push_str(&marked(
                    snippet,
                    hit.highlights.as_deref().unwrap_or(&[]),
                    bold,
                ));
                text.push('\n');
            }
        }
        if text.is_empty() {
            text.push_str(&why_none().unwrap_or_else(|| "no results".into()));
            text.push('\n');
        }
        print(&text)?;
    }

    if let Some(n) = args.repeat {
        let mut times = Vec::with_capacity(n as usize);
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
        diag(format_args!(
            "query latency over {n} runs: p50 {:.3} ms, p99 {:.3} ms (first call, opening the \
             index: {:.3} ms)",
            pct(0.50),
            pct(0.99),
            first.as_secs_f64() * 1e3
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// `snippet` with its highlighted byte ranges in bold (ANSI) when `bold`, else as is. Ranges
/// that are not on character boundaries (a bad module) are left unmarked.
fn marked(snippet: &str, highlights: &[(usize, usize)], bold: bool) -> String {
    let mut out = String::with_capacity(snippet.len() + 8 * highlights.len());
    let mut at = 0;
    for &(a, b) in highlights {
        if !bold || a < at || b < a || !snippet.is_char_boundary(a) || !snippet.is_char_boundary(b)
        {
            continue;
        }
        out.push_str(&snippet[at..a]);
        out.push_str("\x1b[1m");
        out.push_str(&snippet[a..b]);
        out.push_str("\x1b[0m");
        at = b;
    }
    out.push_str(snippet.get(at..).unwrap_or(""));
    out
}
