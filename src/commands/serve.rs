//! `wasmlink serve`: pipelines served over Arrow Flight (crates/flight).

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use wasmlink::plugin::{HostConfig, PluginHost};
use wasmlink_flight::{Flights, Security, read_tls, read_token, serve};

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
`authorization: Bearer TOKEN`, else Unauthenticated. With --tls-cert and --tls-key (PEM) the
server speaks only TLS (clients use grpc+tls://), so the token and the rows are encrypted; off
loopback without them a warning says the token travels in clear. The bound address is printed
on stderr as `listening on HOST:PORT` (port 0 picks a free port), with `(TLS)` when it is on.

Examples:
  wasmlink serve examples/search/pipeline.toml
  wasmlink serve --listen 0.0.0.0:50051 --token-file token.txt \\
      --tls-cert server.pem --tls-key server.key a.toml b.toml

Exit status: 2 bad pipeline file, bad token file, bad certificate or key file (or a key that
is not the certificate's), non-loopback address without a token, or the address cannot be
bound; otherwise it serves until killed.")]
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
    /// The server's certificate chain, PEM: the server then speaks only TLS.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert, PEM (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
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
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            Some(read_tls(cert, key).map_err(|e| CliError::Other(e.to_string()))?)
        }
        _ => None,
    };
    if !args.listen.ip().is_loopback() && tls.is_none() {
        diag(format!(
            "wasmlink: warning: {}: the bearer token and the rows travel in clear text; \
             add --tls-cert and --tls-key",
            args.listen
        ));
    }
    let secure = if tls.is_some() { " (TLS)" } else { "" };
    let host = PluginHost::new(HostConfig {
        cache_dir: args.cache.dir(),
        ..HostConfig::default()
    })
    .map_err(|e| CliError::Other(e.to_string()))?;
    let flights = Flights::load(&args.files, &host).map_err(|e| CliError::Other(e.to_string()))?;
    let names: Vec<String> = flights.flights().iter().map(|f| f.path.join("/")).collect();
    serve(args.listen, flights, Security { token, tls }, |addr| {
        diag(format!("listening on {addr}{secure}: {}", names.join(", ")));
    })
    .map_err(|e| CliError::Other(e.to_string()))?;
    Ok(ExitCode::SUCCESS)
}
