//! `wasmlink serve`: pipelines served over Arrow Flight (crates/flight).

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use wasmlink::plugin::{HostConfig, PluginHost};
use wasmlink_flight::{Flights, read_token, serve};

use crate::flags::CacheFlags;
use crate::input::CliError;
use crate::output::diag;

/// Serve pipeline files over Arrow Flight: clients stream batches through them (DoExchange).
#[derive(clap::Args)]
#[command(after_help = "\
Each FILE (a pipeline file, docs/pipeline.md) is the flight [STEM] (its file name without the
extension), and each of its stages the flight [STEM, STAGE]. The file's source and sink are
not used: DoExchange streams the client's batches through the stages and the results back in
order; a batch whose call fails comes back as a message with no data and app_metadata
{\"dead_letter\": {\"batch\", \"rows\", \"stage\", \"error\"}}. A schema a stage refuses (called
on an empty batch of it) is InvalidArgument. An exchange holds at most the pipeline's
queue-depth batches. ListFlights and GetFlightInfo describe the flights (output schema, and
the input schema in app_metadata, when known).

Binding an address other than loopback needs --token-file: every call must then carry
`authorization: Bearer TOKEN`, else Unauthenticated. The bound address is printed on stderr
as `listening on HOST:PORT` (port 0 picks a free port).

Examples:
  wasmlink serve examples/search/pipeline.toml
  wasmlink serve --listen 0.0.0.0:50051 --token-file token.txt a.toml b.toml

Exit status: 2 bad pipeline file, bad token file, non-loopback address without a token, or
the address cannot be bound; otherwise it serves until killed.")]
pub struct Args {
    /// The pipeline files (TOML).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:50051", value_name = "HOST:PORT")]
    listen: SocketAddr,
    /// A file holding the bearer token clients must send (required off loopback).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Log what the server does (tracing) on stderr.
    #[arg(short, long)]
    verbose: bool,
    #[command(flatten)]
    cache: CacheFlags,
}

pub fn run(args: Args) -> Result<ExitCode, CliError> {
    if args.verbose {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("wasmlink=debug"))
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .try_init();
    }
    let token = match &args.token_file {
        Some(path) => Some(read_token(path).map_err(|e| CliError::Other(e.to_string()))?),
        None => None,
    };
    if !args.listen.ip().is_loopback() && token.is_none() {
        // Checked again by `serve`; said here before the modules are compiled.
        return Err(CliError::Other(
            wasmlink_flight::ServeError::TokenRequired { addr: args.listen }.to_string(),
        ));
    }
    let host = PluginHost::new(HostConfig {
        cache_dir: args.cache.dir(),
        ..HostConfig::default()
    })
    .map_err(|e| CliError::Other(e.to_string()))?;
    let flights = Flights::load(&args.files, &host).map_err(|e| CliError::Other(e.to_string()))?;
    let names: Vec<String> = flights.flights().iter().map(|f| f.path.join("/")).collect();
    serve(args.listen, flights, token, |addr| {
        diag(&format!("listening on {addr}: {}", names.join(", ")));
    })
    .map_err(|e| CliError::Other(e.to_string()))?;
    Ok(ExitCode::SUCCESS)
}
