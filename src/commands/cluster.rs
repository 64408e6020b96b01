//! `wasmlink cluster scheduler|executor`: an Apache Ballista cluster that runs `wasmlink sql
//! --cluster df://HOST:PORT` queries, wasm functions included (crates/cluster; docs/sql.md).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::flags::CacheFlags;
use crate::input::CliError;

/// Run a Ballista scheduler or executor for `wasmlink sql --cluster`.
#[derive(clap::Args)]
#[command(after_help = "\
A cluster is one scheduler and any number of executors:
  wasmlink cluster scheduler --listen 127.0.0.1:50050 --repo DIR
  wasmlink cluster executor --scheduler 127.0.0.1:50050 --listen 127.0.0.1:50051 --repo DIR
  wasmlink sql --cluster df://127.0.0.1:50050 --repo DIR --table t=/data/t.parquet \\
      --udf f=mymod@1.0.0:f 'SELECT f(x) FROM t'

Each process prints one line `wasmlink cluster ROLE: listening on HOST:PORT` to stdout when it
accepts connections. Wasm functions travel with the plan as module name and sha256: the
scheduler and each executor load the module from their own --repo (NAME@VERSION) or file system
(a path) and refuse, naming the module and both hashes, if their bytes differ. Table paths
must name the same files on every executor. A function's policy travels with it and is
admitted only within the process's own --policy (default: no directories, network, inherited
environment or host functions; the default limits), so a client cannot grant itself the
executors' files or network.

Exit status: 0 stopped (Ctrl-C); 1 the service failed (cannot listen, the scheduler cannot be
reached); 2 bad usage (a bad address, a bad --policy file).")]
pub struct Args {
    #[command(subcommand)]
    role: Role,
}

#[derive(clap::Subcommand)]
enum Role {
    /// Plan queries and hand tasks to executors.
    Scheduler {
        /// Where to listen (port 0: any free port, printed on the listening line).
        #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:50050")]
        listen: String,
        /// The module repository for wasm functions named NAME@VERSION.
        #[arg(long, value_name = "DIR", env = "WASMLINK_REPO")]
        repo: Option<PathBuf>,
        /// Seconds without a heartbeat before an executor is dead and its tasks move.
        #[arg(long, value_name = "SECONDS", default_value_t = 30)]
        executor_timeout: u64,
        /// The most a client's wasm function may be granted here (a policy file): a function
        /// whose policy grants more (directories, network, inherited environment, host
        /// functions, inherited stdio) is refused, and its limits are capped by this one's.
        /// Default: no grants, the default limits (256 MiB, 30 s a call).
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        #[command(flatten)]
        cache: CacheFlags,
    },
    /// Run tasks: register with a scheduler, serve results over Arrow Flight.
    Executor {
        /// The scheduler's HOST:PORT.
        #[arg(long, value_name = "HOST:PORT")]
        scheduler: String,
        /// Where to serve Arrow Flight (a fixed port; gRPC for tasks uses --grpc-port).
        #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:50051")]
        listen: String,
        /// The port tasks arrive on (default: the --listen port + 1).
        #[arg(long, value_name = "PORT")]
        grpc_port: Option<u16>,
        /// Concurrent tasks (default: the machine's cores).
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
        slots: Option<u16>,
        /// The module repository for wasm functions named NAME@VERSION.
        #[arg(long, value_name = "DIR", env = "WASMLINK_REPO")]
        repo: Option<PathBuf>,
        /// Shuffle files go here (default: a temporary directory).
        #[arg(long, value_name = "DIR")]
        work_dir: Option<PathBuf>,
        /// Seconds between heartbeats to the scheduler.
        #[arg(long, value_name = "SECONDS", default_value_t = 5)]
        heartbeat: u64,
        /// The most a client's wasm function may be granted here (a policy file): a function
        /// whose policy grants more (directories, network, inherited environment, host
        /// functions, inherited stdio) is refused, and its limits are capped by this one's.
        /// Default: no grants, the default limits (256 MiB, 30 s a call).
        #[arg(long, value_name = "FILE")]
        policy: Option<PathBuf>,
        #[command(flatten)]
        cache: CacheFlags,
    },
}

fn listening(role: &'static str) -> impl FnOnce(std::net::SocketAddr) + Send + 'static {
    move |addr| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "wasmlink cluster {role}: listening on {addr}");
        let _ = out.flush();
    }
}

/// The process's `--policy`, or the default policy.
fn ceiling(path: Option<&std::path::Path>) -> Result<wasmlink::policy::Policy, CliError> {
    match path {
        Some(p) => {
            wasmlink::policy::Policy::from_file(p).map_err(|e| CliError::Other(e.to_string()))
        }
        None => Ok(wasmlink::policy::Policy::default()),
    }
}

fn bad(e: wasmlink_cluster::ClusterError) -> CliError {
    CliError::Other(e.to_string())
}

pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let result = match args.role {
        Role::Scheduler {
            listen,
            repo,
            executor_timeout,
            policy,
            cache,
        } => {
            let listen = wasmlink_cluster::parse_addr("--listen", &listen).map_err(bad)?;
            wasmlink_cluster::run_scheduler(
                wasmlink_cluster::SchedulerOptions {
                    listen,
                    repo,
                    cache_dir: cache.dir(),
                    executor_timeout_seconds: executor_timeout.max(1),
                    ceiling: ceiling(policy.as_deref())?,
                },
                listening("scheduler"),
            )
        }
        Role::Executor {
            scheduler,
            listen,
            grpc_port,
            slots,
            repo,
            work_dir,
            heartbeat,
            policy,
            cache,
        } => {
            let scheduler = wasmlink_cluster::parse_addr("--scheduler", &scheduler).map_err(bad)?;
            let listen = wasmlink_cluster::parse_addr("--listen", &listen).map_err(bad)?;
            wasmlink_cluster::run_executor(
                wasmlink_cluster::ExecutorOptions {
                    scheduler,
                    listen,
                    grpc_port,
                    slots: slots.map(usize::from),
                    repo,
                    cache_dir: cache.dir(),
                    work_dir,
                    heartbeat_seconds: heartbeat,
                    ceiling: ceiling(policy.as_deref())?,
                },
                listening("executor"),
            )
        }
    };
    match result {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e @ wasmlink_cluster::ClusterError::Address(_)) => Err(bad(e)),
        Err(e) => {
            crate::output::error(&e);
            Ok(ExitCode::from(1))
        }
    }
}
