//! wasmlink's SQL on an Apache Ballista cluster: `wasmlink cluster scheduler`, `wasmlink cluster
//! executor` and `wasmlink sql --cluster df://HOST:PORT`.
//!
//! Ballista 55 (on DataFusion 55, arrow 59, like crates/sql) moves plans between processes as
//! protobuf. A wasm scalar function (`wasmlink_sql::WasmUdf`) crosses as a [`UdfSpec`]: the
//! SQL name, the module's exported function, where the module is (`NAME@=VERSION` in the module
//! repository, or an absolute path), the sha256 of the bytes the client loaded, and the policy
//! text. The scheduler and every executor decode it with [`WasmLogicalCodec`] /
//! [`WasmPhysicalCodec`]: they load the module from their own `--repo` or file system, in their
//! own plugin host (sandbox), and refuse with one line naming the module and both hashes when
//! their bytes differ from the client's. So every process runs exactly the same bytes.
//!
//! Tables are files: each executor opens the path the client named, so the path must mean the
//! same file on every executor (one machine, or a shared file system). Parquet, CSV and JSON
//! Lines tables only (an Arrow IPC table is held in the client's memory and cannot be shipped).

mod codec;
mod spec;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ballista_core::extension::SessionConfigExt;
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use wasmlink_host::policy::Policy;
use wasmlink_sql::SqlSession;

pub use codec::{WasmLogicalCodec, WasmPhysicalCodec};
pub use spec::{ModuleResolver, UdfSpec};

/// What can go wrong; each message is one line.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A bad address or URL.
    #[error("{0}")]
    Address(String),
    /// A bad `--udf` or module.
    #[error("{0}")]
    Udf(String),
    /// The scheduler or executor failed to start or stopped with an error.
    #[error("{0}")]
    Service(String),
}

/// One line of an error's text.
pub(crate) fn one_line(e: &dyn std::fmt::Display) -> String {
    e.to_string()
        .split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(": ")
}

fn runtime(threads: usize, name: &str) -> Result<tokio::runtime::Runtime, ClusterError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads.max(2))
        .thread_name(name)
        .thread_stack_size(16 * 1024 * 1024)
        .enable_all()
        .build()
        .map_err(|e| ClusterError::Service(format!("cannot start the runtime: {e}")))
}

/// `HOST:PORT` as one socket address.
pub fn parse_addr(what: &str, text: &str) -> Result<SocketAddr, ClusterError> {
    let bad = |why: String| ClusterError::Address(format!("{what} `{text}`: {why}"));
    let mut addrs = text
        .to_socket_addrs()
        .map_err(|e| bad(format!("not HOST:PORT ({e})")))?;
    addrs
        .next()
        .ok_or_else(|| bad("resolves to no address".into()))
}

/// `df://HOST:PORT` (the scheduler of `--cluster`) as `HOST:PORT`.
pub fn parse_cluster_url(url: &str) -> Result<SocketAddr, ClusterError> {
    let rest = url.strip_prefix("df://").ok_or_else(|| {
        ClusterError::Address(format!("--cluster `{url}`: expected df://HOST:PORT"))
    })?;
    parse_addr("--cluster", rest.trim_end_matches('/'))
}

/// How a scheduler runs.
pub struct SchedulerOptions {
    /// Where to listen (port 0: any free port; the chosen one is reported).
    pub listen: SocketAddr,
    /// The module repository wasm functions named `NAME@VERSION` come from.
    pub repo: Option<PathBuf>,
    /// wasmtime's compiled-code cache.
    pub cache_dir: Option<PathBuf>,
    /// Seconds without a heartbeat after which an executor is dead and its tasks run elsewhere.
    pub executor_timeout_seconds: u64,
    /// The most a client's wasm function may be granted here ([`Policy::within`]).
    pub ceiling: Policy,
}

/// Runs a scheduler until the process ends. `on_listening` is called with the bound address
/// once it accepts connections.
pub fn run_scheduler(
    opts: SchedulerOptions,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<(), ClusterError> {
    let resolver = Arc::new(
        ModuleResolver::new("scheduler", opts.repo.clone(), opts.cache_dir.clone(), 2)?
            .with_ceiling(opts.ceiling.clone()),
    );
    let rt = runtime(2, "wasmlink-scheduler")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(opts.listen)
            .await
            .map_err(|e| ClusterError::Service(format!("cannot listen on {}: {e}", opts.listen)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| ClusterError::Service(e.to_string()))?;
        let mut config = ballista_scheduler::config::SchedulerConfig::default()
            .with_hostname(addr.ip().to_string())
            .with_port(addr.port())
            .with_remove_executor_wait_secs(0)
            .with_no_executors_grace_period_seconds(opts.executor_timeout_seconds);
        config.bind_host = addr.ip().to_string();
        config.executor_timeout_seconds = opts.executor_timeout_seconds;
        config.expire_dead_executor_interval_seconds = 1;
        config.override_logical_codec = Some(Arc::new(WasmLogicalCodec::new(resolver.clone())));
        config.override_physical_codec = Some(Arc::new(WasmPhysicalCodec::new(resolver)));
        let cluster = ballista_scheduler::cluster::BallistaCluster::new_from_config(&config)
            .await
            .map_err(|e| ClusterError::Service(one_line(&e)))?;
        let scheduler = ballista_scheduler::scheduler_process::create_scheduler::<
            LogicalPlanNode,
            PhysicalPlanNode,
        >(cluster, Arc::new(config))
        .await
        .map_err(|e| ClusterError::Service(one_line(&e)))?;
        on_listening(addr);
        ballista_scheduler::scheduler_process::start_grpc_service_with_listener(listener, scheduler)
            .await
            .map_err(|e| ClusterError::Service(one_line(&e)))
    })
}

/// How an executor runs.
pub struct ExecutorOptions {
    /// The scheduler to register with.
    pub scheduler: SocketAddr,
    /// Where to serve Arrow Flight (results and shuffle data); a fixed port.
    pub listen: SocketAddr,
    /// The executor's gRPC port (tasks from the scheduler); default: the Flight port + 1.
    pub grpc_port: Option<u16>,
    /// Concurrent tasks (default: the machine's cores).
    pub slots: Option<usize>,
    /// The module repository wasm functions named `NAME@VERSION` come from.
    pub repo: Option<PathBuf>,
    /// wasmtime's compiled-code cache.
    pub cache_dir: Option<PathBuf>,
    /// Shuffle files go here (default: a temporary directory).
    pub work_dir: Option<PathBuf>,
    /// Seconds between heartbeats to the scheduler.
    pub heartbeat_seconds: u64,
    /// The most a client's wasm function may be granted here ([`Policy::within`]).
    pub ceiling: Policy,
}

/// Runs an executor until the process ends or the scheduler cannot be reached.
/// `on_listening` is called once its Flight port accepts connections.
pub fn run_executor(
    opts: ExecutorOptions,
    on_listening: impl FnOnce(SocketAddr) + Send + 'static,
) -> Result<(), ClusterError> {
    if opts.listen.port() == 0 {
        return Err(ClusterError::Address(
            "--listen: an executor needs a fixed port (it tells the scheduler where it is)".into(),
        ));
    }
    let grpc_port = match opts.grpc_port {
        Some(p) => p,
        None => opts.listen.port().checked_add(1).ok_or_else(|| {
            ClusterError::Address(
                "--listen: port 65535 leaves no room for the gRPC port (add --grpc-port)".into(),
            )
        })?,
    };
    let slots = opts
        .slots
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let resolver = Arc::new(
        ModuleResolver::new(
            "executor",
            opts.repo.clone(),
            opts.cache_dir.clone(),
            // Instances for every task slot, with room for DataFusion running a task's
            // partitions' batches at once.
            u32::try_from(slots.saturating_mul(4)).unwrap_or(u32::MAX),
        )?
        .with_ceiling(opts.ceiling.clone()),
    );
    let host = opts.listen.ip().to_string();
    let config = ballista_executor::executor_process::ExecutorProcessConfig {
        bind_host: host.clone(),
        external_host: Some(host),
        port: opts.listen.port(),
        grpc_port,
        scheduler_host: opts.scheduler.ip().to_string(),
        scheduler_port: opts.scheduler.port(),
        vcores: slots,
        work_dir: opts.work_dir.map(|p| p.to_string_lossy().into_owned()),
        print_thread_info: false,
        executor_heartbeat_interval_seconds: opts.heartbeat_seconds.max(1),
        override_logical_codec: Some(Arc::new(WasmLogicalCodec::new(resolver.clone()))),
        override_physical_codec: Some(Arc::new(WasmPhysicalCodec::new(resolver))),
        ..Default::default()
    };
    let rt = runtime(slots, "wasmlink-executor")?;
    let listen = opts.listen;
    let scheduler = opts.scheduler;
    rt.block_on(async move {
        let process = tokio::spawn(ballista_executor::executor_process::start_executor_process(
            Arc::new(config),
        ));
        let mut on_listening = Some(on_listening);
        let mut process = process;
        loop {
            tokio::select! {
                done = &mut process => {
                    return match done {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(e)) => Err(ClusterError::Service(format!(
                            "executor (scheduler {scheduler}): {}", one_line(&e)
                        ))),
                        Err(e) => Err(ClusterError::Service(format!("executor: {e}"))),
                    };
                }
                _ = tokio::time::sleep(Duration::from_millis(100)), if on_listening.is_some() => {
                    if tokio::net::TcpStream::connect(listen).await.is_ok()
                        && let Some(f) = on_listening.take()
                    {
                        f(listen);
                    }
                }
            }
        }
    })
}

/// A SQL session whose queries run on the cluster whose scheduler is at `url`
/// (`df://HOST:PORT`). Register tables and functions on it as on a local one; functions must be
/// registered with [`register_cluster_udf`] so executors can load their modules.
pub fn connect(
    url: &str,
    threads: usize,
) -> Result<(SqlSession, Arc<ModuleResolver>), ClusterError> {
    let addr = parse_cluster_url(url)?;
    // Ballista's client only connects when a query runs; fail early and in one line.
    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).map_err(|e| {
        ClusterError::Address(format!(
            "--cluster {url}: cannot reach the scheduler at {addr}: {e}"
        ))
    })?;
    let resolver = Arc::new(ModuleResolver::new("client", None, None, 1)?);
    let rt = runtime(threads, "wasmlink-sql")?;
    let config = SessionConfig::new_with_ballista()
        .with_target_partitions(threads.max(1))
        .with_ballista_logical_extension_codec(Arc::new(WasmLogicalCodec::new(resolver.clone())))
        .with_ballista_physical_extension_codec(Arc::new(WasmPhysicalCodec::new(resolver.clone())));
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_config(config)
        .build();
    let ctx = rt
        .block_on(
            <SessionContext as ballista::prelude::SessionContextExt>::remote_with_state(
                &format!("df://{addr}"),
                state,
            ),
        )
        .map_err(|e| ClusterError::Address(format!("--cluster {url}: {}", one_line(&e))))?;
    Ok((SqlSession::from_context(ctx, rt), resolver))
}

/// Registers a wasm function for a cluster session: `spec` says where every process finds the
/// module; `plugin` is the client's copy (its bytes hash to `spec.sha256`).
pub fn register_cluster_udf(
    session: &SqlSession,
    spec: &UdfSpec,
    plugin: wasmlink_host::plugin::Plugin,
) -> Result<(), ClusterError> {
    let origin = serde_json::to_string(spec).map_err(|e| ClusterError::Udf(e.to_string()))?;
    session
        .register_udf_with_origin(&spec.name, plugin, &spec.function, Some(origin))
        .map_err(|e| ClusterError::Udf(format!("--udf: {e}")))
}
