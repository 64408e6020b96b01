//! A component instantiated with WASI 0.2, called with WAVE values.
//!
//! [`ComponentPre`] is a compiled component with its imports resolved (wasmtime's
//! `InstancePre`); each [`ComponentProcess`] is one instance of it in its own store. Limits are
//! per call (fuel, wall-clock time) or per store (memory, table elements, instances). A call
//! that fails inside the guest (a trap, a limit, an exit, a result that cannot be lifted)
//! poisons the instance: later calls fail with [`ComponentError::Poisoned`] instead of running
//! on a broken instance.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, mpsc};
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Func, Instance, InstancePre, Linker, ResourceTable, Val};
use wasmtime::{Engine, ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wit_parser::WorldItem;
use wit_parser::decoding::DecodedWasm;

mod typed;
pub use typed::TypedCall;

use crate::describe::type_name;
use crate::error::ComponentError;

/// How often the epoch advances while a component with a timeout is loaded.
const TICK: Duration = Duration::from_millis(10);

/// The time as the epoch tickers last saw it, in milliseconds since [`CLOCK_ORIGIN`]: arming a
/// call's deadline reads this instead of the system clock (a clock read, ~50 ns here, was most
/// of what a typed call added to a raw wasmtime call: benches/component.rs). A deadline is this plus the timeout plus one tick, so a call is
/// never stopped before its time while the tickers keep up; stops are checked every tick anyway.
static COARSE_MS: AtomicU64 = AtomicU64::new(0);
static CLOCK_ORIGIN: OnceLock<Instant> = OnceLock::new();

fn clock_origin() -> Instant {
    *CLOCK_ORIGIN.get_or_init(Instant::now)
}

/// Advances the coarse clock to now (by the tickers).
fn tick_coarse_clock() {
    let ms = u64::try_from(clock_origin().elapsed().as_millis()).unwrap_or(u64::MAX);
    COARSE_MS.fetch_max(ms, Ordering::Relaxed);
}

/// The coarse clock: at most a tick behind while a ticker runs.
fn coarse_now() -> Instant {
    clock_origin() + Duration::from_millis(COARSE_MS.load(Ordering::Relaxed))
}

/// Limits of one component instance. Fuel and the timeout need an engine that meters them
/// (`wasmlink_engine::shared_engine_with` with fuel or epoch metering).
#[derive(Debug, Clone, Default)]
pub struct ComponentLimits {
    /// Linear memory per memory, in bytes: growing past it traps (`limits.memory`).
    pub memory: Option<usize>,
    /// Elements per table: growing past it traps (`limits.table-elements`).
    pub table_elements: Option<usize>,
    /// Core instances (and as many memories, four times as many tables) per store.
    pub instances: Option<usize>,
    /// Fuel per call.
    pub fuel: Option<u64>,
    /// Wall-clock time per call (instantiation included), checked every 10 ms.
    pub timeout: Option<Duration>,
    /// Bytes of WAVE text one call may hand back (`limits.output`).
    pub output: Option<usize>,
}

/// A limit the store's limiter enforced.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct LimitExceeded(String);

/// The wall-clock limit of one call ran out: its own (`false`), or that of the component
/// whose call was forwarded to this one (`true`, composition at run time).
#[derive(Debug, thiserror::Error)]
#[error("time limit")]
struct TimeUp(bool);

struct Limiter {
    memory: Option<usize>,
    table_elements: Option<usize>,
    instances: usize,
    /// Bytes the store's linear memories hold now (initial sizes plus every growth allowed).
    memory_bytes: u64,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        match self.memory {
            Some(max) if desired > max => Err(LimitExceeded(format!(
                "memory grows to {desired} bytes, past the {max}-byte limit (limits.memory)"
            ))
            .into()),
            _ => {
                self.memory_bytes = self
                    .memory_bytes
                    .saturating_add(desired.saturating_sub(current) as u64);
                Ok(true)
            }
        }
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        match self.table_elements {
            Some(max) if desired > max => Err(LimitExceeded(format!(
                "a table grows to {desired} elements, past the limit of {max} (limits.table-elements)"
            ))
            .into()),
            _ => Ok(true),
        }
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn memories(&self) -> usize {
        self.instances
    }

    fn tables(&self) -> usize {
        self.instances.saturating_mul(4)
    }
}

pub(crate) struct Ctx {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: Limiter,
    /// When the current call must stop, while one runs under a timeout (its own, or the
    /// calling component's for a forwarded call), and whether it is the caller's.
    deadline: Option<(Instant, bool)>,
    /// wasi:http, for components that import it ([`crate::http`]).
    http: wasmtime_wasi_http::WasiHttpCtx,
    http_hooks: crate::http::Hooks,
}

impl wasmtime_wasi_http::WasiHttpView for Ctx {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        // A request sent now must end by the running call's deadline.
        self.http_hooks.deadline = self.deadline.map(|(d, _)| d);
        wasmtime_wasi_http::WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.http_hooks,
        }
    }
}

impl Ctx {
    /// The deadline of the call running in this store, if it has one: a call forwarded to a
    /// providing component must end by then too ([`crate::link`]).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline.map(|(d, _)| d)
    }
}

impl WasiView for Ctx {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// An exported function's parameters as WIT: `(name, type)`.
type Params = Vec<(String, String)>;

/// A compiled component whose imports are resolved against wasmtime-wasi's WASI 0.2: ready to
/// be instantiated any number of times ([`ComponentPre::instantiate`], [`crate::ComponentPool`]).
pub struct ComponentPre {
    path: PathBuf,
    engine: Engine,
    component: Component,
    pre: InstancePre<Ctx>,
    /// Exported functions (`greet`, `ns:pkg/iface@1.0.0#func`) and their WIT parameters.
    functions: Vec<(String, Params)>,
    /// Each exported function's type with named types spelled out (`func(a: r{x: u32}) ->
    /// string`), in the order of `functions`: what [`ComponentPre::check_compatible`] compares.
    shapes: Vec<String>,
    limits: ComponentLimits,
    /// The outgoing HTTP requests its instances may send (deny by default).
    http: crate::http::HttpAccess,
    /// Keeps the epoch ticker running (it stops when this is dropped).
    _ticker: Option<mpsc::Sender<()>>,
}

impl ComponentPre {
    /// Reads the component at `path` and prepares it ([`ComponentPre::new`]).
    ///
    /// # Errors
    /// [`ComponentError::Io`], and those of [`ComponentPre::new`].
    pub fn load(
        engine: &Engine,
        path: &Path,
        limits: ComponentLimits,
    ) -> Result<Self, ComponentError> {
        let bytes = std::fs::read(path).map_err(|e| ComponentError::Io {
            path: path.to_path_buf(),
            message: e.to_string().to_lowercase(),
        })?;
        Self::new(engine, path, &bytes, limits)
    }

    /// Compiles `bytes` (named `path` in errors) and resolves its imports: its WASI 0.2 imports
    /// are wasmtime-wasi's; any other import is an error naming it.
    ///
    /// # Errors
    /// [`ComponentError::Invalid`], [`ComponentError::Compile`] or [`ComponentError::Link`].
    pub fn new(
        engine: &Engine,
        path: &Path,
        bytes: &[u8],
        limits: ComponentLimits,
    ) -> Result<Self, ComponentError> {
        Self::with_providers(engine, path, bytes, limits, &[])
    }

    /// As [`ComponentPre::new`], with the imports that `providers` export satisfied by them
    /// (composition at run time, [`crate::link`]): each provider keeps its own store, WASI
    /// context and limits; a call crossing to one copies its arguments and results.
    ///
    /// # Errors
    /// As [`ComponentPre::new`]; [`ComponentError::Unsatisfied`] for an import that is neither
    /// WASI 0.2 nor exported by a provider, [`ComponentError::TypeMismatch`] when a provider's
    /// export does not have the imported type, [`ComponentError::ResourceCrossing`] when an
    /// import takes or returns a resource.
    pub fn with_providers(
        engine: &Engine,
        path: &Path,
        bytes: &[u8],
        limits: ComponentLimits,
        providers: &[crate::Provider],
    ) -> Result<Self, ComponentError> {
        let link = |e: &dyn std::fmt::Display| ComponentError::Link {
            path: path.to_path_buf(),
            message: one_line(&e.to_string()),
        };
        if !crate::is_component(bytes) {
            return Err(ComponentError::Invalid {
                message: format!("{}: not a WebAssembly component", path.display()),
            });
        }
        let (functions, shapes) =
            exported_functions(bytes).map_err(|message| ComponentError::Invalid {
                message: format!("{}: {message}", path.display()),
            })?;
        let component = Component::new(engine, bytes).map_err(|e| ComponentError::Compile {
            path: path.to_path_buf(),
            message: format!("{e:#}"),
        })?;
        let mut linker: Linker<Ctx> = Linker::new(engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| link(&format!("{e:#}")))?;
        if crate::http::imports_http(engine, &component) {
            wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut linker)
                .map_err(|e| link(&format!("{e:#}")))?;
        }
        crate::link::define_imports(engine, &mut linker, path, &component, providers)?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| link(&format!("{e:#}")))?;
        let ticker = match limits.timeout {
            Some(_) => Some(
                start_ticker(engine)
                    .map_err(|e| link(&format!("cannot start the timeout thread: {e}")))?,
            ),
            None => None,
        };
        Ok(Self {
            path: path.to_path_buf(),
            engine: engine.clone(),
            component,
            pre,
            functions,
            shapes,
            limits,
            http: crate::http::HttpAccess::default(),
            _ticker: ticker,
        })
    }

    /// Lets its instances send the outgoing HTTP requests `access` allows
    /// (`wasi:http/outgoing-handler`); without this, every request is denied with the
    /// `wasi:http` error `HTTP-request-denied`. Set before instantiating.
    #[must_use]
    pub fn with_http(mut self, access: crate::http::HttpAccess) -> Self {
        self.http = access;
        self
    }

    /// The exported functions, as callers name them, with their WIT parameters.
    pub fn functions(&self) -> impl Iterator<Item = (&str, &[(String, String)])> {
        self.functions
            .iter()
            .map(|(n, p)| (n.as_str(), p.as_slice()))
    }

    /// The exported function `name` names as [`ComponentProcess::call_wave`] finds it (`greet`,
    /// `ns:pkg/iface#func`, `iface#func`): its full name and WIT parameters.
    pub fn function(&self, name: &str) -> Option<(&str, &[(String, String)])> {
        self.functions()
            .find(|(n, _)| *n == name || matches_short(n, name))
    }

    /// The component's file (or the name it was given), as errors name it.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn engine(&self) -> &Engine {
        &self.engine
    }

    pub(crate) fn component(&self) -> &Component {
        &self.component
    }

    /// Whether `next` can replace this component under its callers (a hot swap,
    /// [`crate::ComponentPool::swap`]): it exports the same functions with the same types
    /// (named types compared by their structure, not only their names).
    ///
    /// # Errors
    /// [`ComponentError::Incompatible`] naming the first function that is missing, changed or
    /// new in `next`.
    pub fn check_compatible(&self, next: &ComponentPre) -> Result<(), ComponentError> {
        let incompatible = |function: &str, message: String| ComponentError::Incompatible {
            path: next.path.clone(),
            old: self.path.clone(),
            function: function.to_string(),
            message,
        };
        let shape_of = |pre: &ComponentPre, name: &str| {
            pre.functions
                .iter()
                .position(|(n, _)| n == name)
                .map(|i| pre.shapes[i].clone())
        };
        for ((name, _), old) in self.functions.iter().zip(&self.shapes) {
            match shape_of(next, name) {
                None => return Err(incompatible(name, "not exported".into())),
                Some(new) if new != *old => {
                    return Err(incompatible(
                        name,
                        format!("its type changed from `{old}` to `{new}`"),
                    ));
                }
                Some(_) => {}
            }
        }
        if let Some((name, _)) = next
            .functions
            .iter()
            .find(|(n, _)| shape_of(self, n).is_none())
        {
            return Err(incompatible(
                name,
                "exported only by the new component".into(),
            ));
        }
        Ok(())
    }

    /// Instantiates the component in a new store whose WASI 0.2 context `wasi` builds.
    ///
    /// # Errors
    /// [`ComponentError::Link`] if instantiation fails, [`ComponentError::Limit`] if it hits a
    /// limit.
    pub fn instantiate(
        self: &Arc<Self>,
        mut wasi: WasiCtxBuilder,
    ) -> Result<ComponentProcess, ComponentError> {
        let limits = &self.limits;
        let mut store = Store::new(
            &self.engine,
            Ctx {
                wasi: wasi.build(),
                table: ResourceTable::new(),
                limiter: Limiter {
                    memory: limits.memory,
                    table_elements: limits.table_elements,
                    instances: limits.instances.unwrap_or(10_000),
                    memory_bytes: 0,
                },
                deadline: None,
                http: wasmtime_wasi_http::WasiHttpCtx::new(),
                http_hooks: crate::http::Hooks::new(
                    self.http.clone(),
                    self.path.display().to_string().into(),
                ),
            },
        );
        store.limiter(|c| &mut c.limiter);
        // Installed whatever the limits: an engine shared with a component that has a timeout
        // interrupts this one too, and a call forwarded from such a component carries its
        // deadline ([`crate::link`]).
        store.epoch_deadline_callback(move |ctx| match ctx.data().deadline {
            Some((d, outer)) if Instant::now() >= d => Err(TimeUp(outer).into()),
            _ => Ok(UpdateDeadline::Continue(1)),
        });
        let unlimited_fuel = limits.fuel.is_none() && store.get_fuel().is_ok();
        let mut process = ComponentProcess {
            pre: Arc::clone(self),
            store,
            instance: None,
            poisoned: None,
            unlimited_fuel,
        };
        process.arm().map_err(|message| ComponentError::Link {
            path: self.path.clone(),
            message,
        })?;
        let instance = self.pre.instantiate(&mut process.store);
        process.disarm();
        match instance {
            Ok(i) => process.instance = Some(i),
            Err(e) => {
                return Err(match process.classify("instantiation", e) {
                    ComponentError::Trap { function, message } => ComponentError::Link {
                        path: self.path.clone(),
                        message: format!("{function}: {message}"),
                    },
                    other => other,
                });
            }
        }
        Ok(process)
    }
}

/// Advances `engine`'s epoch every [`TICK`] until the returned sender is dropped.
fn start_ticker(engine: &Engine) -> std::io::Result<mpsc::Sender<()>> {
    let (tx, rx) = mpsc::channel::<()>();
    let engine = engine.clone();
    tick_coarse_clock();
    std::thread::Builder::new()
        .name("wasmlink-component-epoch".into())
        .spawn(move || {
            while rx.recv_timeout(TICK) == Err(mpsc::RecvTimeoutError::Timeout) {
                tick_coarse_clock();
                engine.increment_epoch();
            }
        })?;
    Ok(tx)
}

/// A component instantiated in its own store, with WASI 0.2 from the given context.
pub struct ComponentProcess {
    pre: Arc<ComponentPre>,
    store: Store<Ctx>,
    /// Set once instantiation succeeded.
    instance: Option<Instance>,
    /// The function whose failure poisoned the instance, and why.
    poisoned: Option<(String, String)>,
    /// The engine counts fuel but this component has no fuel limit (it shares the engine of a
    /// component that has one, [`crate::link`]): each call gets all the fuel there is.
    unlimited_fuel: bool,
}

impl ComponentProcess {
    /// Reads, compiles and instantiates the component at `path`. Its WASI 0.2 imports are
    /// wasmtime-wasi's, on the context `wasi` builds; any other import is an error naming it.
    ///
    /// # Errors
    /// [`ComponentError::Io`], [`ComponentError::Invalid`], [`ComponentError::Compile`] or
    /// [`ComponentError::Link`].
    pub fn load(
        engine: &Engine,
        path: &Path,
        wasi: WasiCtxBuilder,
        limits: ComponentLimits,
    ) -> Result<Self, ComponentError> {
        Arc::new(ComponentPre::load(engine, path, limits)?).instantiate(wasi)
    }

    /// As [`ComponentProcess::load`], from bytes already read (and checked: a repository's
    /// object, a policy's sha256); `path` names the component in errors.
    ///
    /// # Errors
    /// As [`ComponentProcess::load`].
    pub fn from_bytes(
        engine: &Engine,
        path: &Path,
        bytes: &[u8],
        wasi: WasiCtxBuilder,
        limits: ComponentLimits,
    ) -> Result<Self, ComponentError> {
        Arc::new(ComponentPre::new(engine, path, bytes, limits)?).instantiate(wasi)
    }

    /// The exported functions, as callers name them, with their WIT parameters.
    pub fn functions(&self) -> impl Iterator<Item = (&str, &[(String, String)])> {
        self.pre.functions()
    }

    /// The compiled component this is an instance of.
    pub fn pre(&self) -> &Arc<ComponentPre> {
        &self.pre
    }

    /// Bytes of linear memory the instance's core memories hold (they never shrink): what a
    /// pipeline worker checks to replace an instance grown too large.
    pub fn memory_bytes(&self) -> u64 {
        self.store.data().limiter.memory_bytes
    }

    /// Whether a failed call poisoned this instance (no further call runs on it).
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }

    /// Whether this is an instance of `pre` (and not of another component, say one swapped
    /// out of a pool).
    pub fn is_instance_of(&self, pre: &Arc<ComponentPre>) -> bool {
        Arc::ptr_eq(&self.pre, pre)
    }

    /// Arms the per-call limits: fuel refilled, the timeout's clock started.
    fn arm(&mut self) -> Result<(), String> {
        self.arm_by(None)
    }

    /// As [`Self::arm`]; `outer` is the deadline of the calling component for a forwarded
    /// call (composition at run time), kept if it comes first.
    fn arm_by(&mut self, outer: Option<Instant>) -> Result<(), String> {
        if let Some(fuel) = self.pre.limits.fuel {
            self.store
                .set_fuel(fuel)
                .map_err(|e| format!("--fuel needs an engine that counts fuel: {e}"))?;
        } else if self.unlimited_fuel {
            self.store.set_fuel(u64::MAX).map_err(|e| e.to_string())?;
        }
        // Every component with a timeout has a ticker running (ComponentPre::new), which
        // keeps the coarse clock within a tick of the time.
        let own = self.pre.limits.timeout.map(|t| coarse_now() + t + TICK);
        let deadline = match (own, outer) {
            (Some(o), Some(c)) if c < o => Some((c, true)),
            (Some(o), _) => Some((o, false)),
            (None, Some(c)) => Some((c, true)),
            (None, None) => None,
        };
        self.store.data_mut().deadline = deadline;
        self.store.set_epoch_deadline(1);
        Ok(())
    }

    fn disarm(&mut self) {
        self.store.data_mut().deadline = None;
    }

    fn check_poisoned(&self) -> Result<(), ComponentError> {
        match &self.poisoned {
            Some((function, reason)) => Err(ComponentError::Poisoned {
                path: self.pre.path.clone(),
                function: function.clone(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Finds an exported function: `greet` (exported by the world), `ns:pkg/iface#func` or
    /// `ns:pkg/iface@1.0.0#func` (an exported interface's), or `iface#func` when one exported
    /// interface is called `iface`.
    fn find(&mut self, name: &str) -> Result<(String, Func), ComponentError> {
        let missing = |this: &Self| ComponentError::NoSuchFunction {
            name: name.to_string(),
            available: this.available(),
        };
        let full = self
            .pre
            .functions
            .iter()
            .map(|(n, _)| n)
            .find(|n| *n == name || matches_short(n, name))
            .cloned()
            .ok_or_else(|| missing(self))?;
        let Some(instance) = self.instance else {
            return Err(missing(self));
        };
        let component = &self.pre.component;
        let func = match full.split_once('#') {
            None => instance.get_func(&mut self.store, &full),
            Some((iface, f)) => {
                let idx = component
                    .get_export_index(None, iface)
                    .and_then(|i| component.get_export_index(Some(&i), f));
                idx.and_then(|i| instance.get_func(&mut self.store, i))
            }
        };
        let func = func.ok_or_else(|| missing(self))?;
        Ok((full, func))
    }

    fn available(&self) -> String {
        let names: Vec<&str> = self.pre.functions.iter().map(|(n, _)| n.as_str()).collect();
        if names.is_empty() {
            "none".into()
        } else {
            names.join(", ")
        }
    }

    /// Runs `func` under the per-call limits; a failure poisons the instance.
    fn enter(
        &mut self,
        full: &str,
        func: Func,
        args: &[Val],
        results: &mut [Val],
    ) -> Result<(), ComponentError> {
        self.enter_by(full, func, args, results, None)
    }

    /// As [`Self::enter`], ending by `outer` at the latest (the calling component's deadline).
    fn enter_by(
        &mut self,
        full: &str,
        func: Func,
        args: &[Val],
        results: &mut [Val],
        outer: Option<Instant>,
    ) -> Result<(), ComponentError> {
        self.guarded(full, outer, |store| func.call(store, args, results))
    }

    /// Runs `call` on the store under the per-call limits (ending by `outer` at the latest);
    /// a failure poisons the instance. The one step every call path (WAVE, `Val`s, typed,
    /// forwarded) goes through.
    pub(super) fn guarded<T>(
        &mut self,
        full: &str,
        outer: Option<Instant>,
        call: impl FnOnce(&mut Store<Ctx>) -> wasmtime::Result<T>,
    ) -> Result<T, ComponentError> {
        self.arm_by(outer)
            .map_err(|message| ComponentError::Limit {
                function: format!("{}: {full}", self.pre.path.display()),
                message,
            })?;
        let r = call(&mut self.store);
        self.disarm();
        r.map_err(|e| {
            let err = self.classify(full, e);
            self.poisoned = Some((full.to_string(), poison_reason(&err)));
            err
        })
    }

    /// Calls `name` with arguments in WAVE text, each checked against its parameter's type, and
    /// returns the results in WAVE text (an `err(...)` result is a value, not a failure).
    ///
    /// # Errors
    /// [`ComponentError::Poisoned`] after an earlier failed call, [`ComponentError::NoSuchFunction`],
    /// [`ComponentError::Arity`], [`ComponentError::Argument`] (naming the parameter and its
    /// WIT type), [`ComponentError::Trap`], [`ComponentError::Limit`], or
    /// [`ComponentError::Exit`] if the guest exits.
    pub fn call_wave(
        &mut self,
        name: &str,
        args: &[String],
    ) -> Result<Vec<String>, ComponentError> {
        self.check_poisoned()?;
        let (full, func) = self.find(name)?;
        let wit: Params = self
            .pre
            .functions
            .iter()
            .find(|(n, _)| *n == full)
            .map(|(_, p)| p.clone())
            .unwrap_or_default();
        let ty = func.ty(&self.store);
        let params: Vec<(String, wasmtime::component::Type)> =
            ty.params().map(|(n, t)| (n.to_string(), t)).collect();
        if params.len() != args.len() {
            let list: Vec<String> = wit.iter().map(|(n, t)| format!("{n}: {t}")).collect();
            let n = params.len();
            return Err(ComponentError::Arity {
                function: full,
                expected: format!(
                    "{n} argument{} ({})",
                    if n == 1 { "" } else { "s" },
                    list.join(", ")
                ),
                given: args.len(),
            });
        }
        let mut vals = Vec::with_capacity(args.len());
        for (i, ((pname, pty), arg)) in params.iter().zip(args).enumerate() {
            let v = Val::from_wave(pty, arg).map_err(|e| ComponentError::Argument {
                function: full.clone(),
                param: pname.clone(),
                ty: wit
                    .get(i)
                    .map_or_else(|| format!("{pty:?}"), |(_, t)| t.clone()),
                message: one_line(&e.to_string()),
            })?;
            vals.push(v);
        }
        let mut results = vec![Val::Bool(false); ty.results().len()];
        self.enter(&full, func, &vals, &mut results)?;
        let cap = self.pre.limits.output.unwrap_or(usize::MAX);
        let mut total = 0usize;
        let mut out = Vec::with_capacity(results.len());
        for v in &results {
            let text = v.to_wave().map_err(|e| ComponentError::Trap {
                function: full.clone(),
                message: format!("cannot print a result as WAVE: {e}"),
            })?;
            total = total.saturating_add(text.len());
            if total > cap {
                return Err(ComponentError::Limit {
                    function: format!("{}: {full}", self.pre.path.display()),
                    message: format!(
                        "its results take more than the {cap}-byte output limit as WAVE text (limits.output)"
                    ),
                });
            }
            out.push(text);
        }
        Ok(out)
    }

    /// Calls `name` with typed arguments (wasmtime component values) and returns its results
    /// as values: for hosts that convert their own data to and from a function's WIT types
    /// (the pipeline's component stages). wasmtime checks the arguments against the
    /// function's parameter types; a mismatch fails the call like a trap.
    ///
    /// # Errors
    /// As [`ComponentProcess::call_wave`], without the WAVE parsing ones.
    pub fn call_vals(&mut self, name: &str, args: &[Val]) -> Result<Vec<Val>, ComponentError> {
        self.check_poisoned()?;
        let (full, func) = self.find(name)?;
        let n = func.ty(&self.store).results().len();
        let mut results = vec![Val::Bool(false); n];
        self.enter(&full, func, args, &mut results)?;
        Ok(results)
    }

    /// An exported function looked up once (composition at run time: a provider's function,
    /// found when the main component is linked), with its full name.
    pub(crate) fn lookup(&mut self, name: &str) -> Result<(String, Func), ComponentError> {
        self.find(name)
    }

    /// Calls a function [`Self::lookup`] found, ending by `outer` at the latest: a call
    /// forwarded from another component, under this component's limits and its caller's
    /// deadline.
    pub(crate) fn call_forwarded(
        &mut self,
        full: &str,
        func: Func,
        args: &[Val],
        results: &mut [Val],
        outer: Option<Instant>,
    ) -> Result<(), ComponentError> {
        self.check_poisoned()?;
        self.enter_by(full, func, args, results, outer)
    }

    /// Runs a `wasi:cli/command` component (`wasi:cli/run#run`): exit status 0 for `ok`, 1 for
    /// `err`, or the status given to `wasi:cli/exit`.
    ///
    /// # Errors
    /// [`ComponentError::Poisoned`], [`ComponentError::NoSuchFunction`] if it is not a command;
    /// [`ComponentError::Trap`], [`ComponentError::Limit`].
    pub fn run_command(&mut self) -> Result<i32, ComponentError> {
        self.check_poisoned()?;
        let run = self
            .pre
            .functions
            .iter()
            .map(|(n, _)| n.clone())
            .find(|n| n.starts_with("wasi:cli/run@") && n.ends_with("#run"))
            .ok_or_else(|| ComponentError::NoSuchFunction {
                name: "wasi:cli/run#run (not a wasi:cli/command component; use --invoke FUNC)"
                    .into(),
                available: self.available(),
            })?;
        let (full, func) = self.find(&run)?;
        let mut results = [Val::Bool(false)];
        match self.enter(&full, func, &[], &mut results) {
            Ok(()) => Ok(match &results[0] {
                Val::Result(Err(_)) => 1,
                _ => 0,
            }),
            Err(ComponentError::Exit(code)) => Ok(code),
            Err(other) => Err(other),
        }
    }

    /// What a failure inside the guest was: an exit, a limit, or a trap.
    fn classify(&self, function: &str, e: wasmtime::Error) -> ComponentError {
        if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
            return ComponentError::Exit(exit.0);
        }
        let limits = &self.pre.limits;
        let function = format!("{}: {function}", self.pre.path.display());
        if let Some(dep) = crate::link::dependency_failure(&e) {
            return ComponentError::Dependency {
                function,
                message: dep.to_string(),
                limit: matches!(dep, ComponentError::Limit { .. }),
            };
        }
        let limit = if let Some(TimeUp(true)) = e.downcast_ref::<TimeUp>() {
            Some("stopped by the time limit of the component that called it (--timeout)".into())
        } else if e.downcast_ref::<TimeUp>().is_some()
            || matches!(
                e.downcast_ref::<wasmtime::Trap>(),
                Some(wasmtime::Trap::Interrupt)
            )
        {
            Some(format!(
                "stopped after the {:?} time limit (--timeout)",
                limits.timeout.unwrap_or_default()
            ))
        } else if matches!(
            e.downcast_ref::<wasmtime::Trap>(),
            Some(wasmtime::Trap::OutOfFuel)
        ) {
            Some(format!(
                "stopped after {} units of fuel (--fuel)",
                limits.fuel.unwrap_or_default()
            ))
        } else {
            e.downcast_ref::<LimitExceeded>()
                .map(|l| format!("stopped: {}", l.0))
        };
        match limit {
            Some(message) => ComponentError::Limit { function, message },
            None => ComponentError::Trap {
                function,
                message: one_line(&format!("{e:#}")),
            },
        }
    }
}

/// Why a failed call poisons its instance, in a few words.
fn poison_reason(e: &ComponentError) -> String {
    match e {
        ComponentError::Exit(code) => format!("it exited with status {code}"),
        ComponentError::Limit { message, .. } | ComponentError::Trap { message, .. } => {
            message.clone()
        }
        other => other.to_string(),
    }
}

/// `iface#func` names `ns:pkg/iface@1.0.0#func`; `ns:pkg/iface#func` names it too.
fn matches_short(full: &str, name: &str) -> bool {
    let (Some((fi, ff)), Some((ni, nf))) = (full.split_once('#'), name.split_once('#')) else {
        return false;
    };
    if ff != nf {
        return false;
    }
    let unversioned = fi.split('@').next().unwrap_or(fi);
    let bare = unversioned.rsplit('/').next().unwrap_or(unversioned);
    ni == unversioned || ni == bare
}

/// A component's exported functions with their WIT parameters, and each one's type with named
/// types spelled out.
type Exported = (Vec<(String, Params)>, Vec<String>);

/// The functions a component exports, decoded from its own type information, with their WIT
/// parameters; and each one's type with named types spelled out ([`shape`]).
fn exported_functions(bytes: &[u8]) -> Result<Exported, String> {
    let (resolve, world) =
        match wit_parser::decoding::decode(bytes).map_err(|e| one_line(&e.to_string()))? {
            DecodedWasm::Component(r, w) => (r, w),
            DecodedWasm::WitPackage(..) => return Err("a WIT package, not a component".into()),
        };
    let params = |f: &wit_parser::Function| -> Params {
        f.params
            .iter()
            .map(|p| (p.name.clone(), type_name(&resolve, &p.ty)))
            .collect()
    };
    let func_shape = |f: &wit_parser::Function| -> String {
        let ps: Vec<String> = f
            .params
            .iter()
            .map(|p| format!("{}: {}", p.name, shape(&resolve, &p.ty)))
            .collect();
        let result = f
            .result
            .as_ref()
            .map(|t| format!(" -> {}", shape(&resolve, t)))
            .unwrap_or_default();
        format!("func({}){result}", ps.join(", "))
    };
    let mut out = Vec::new();
    let mut shapes = Vec::new();
    for (key, item) in &resolve.worlds[world].exports {
        let name = resolve.name_world_key(key);
        match item {
            WorldItem::Function(f) => {
                out.push((name, params(f)));
                shapes.push(func_shape(f));
            }
            WorldItem::Interface { id, .. } => {
                for f in resolve.interfaces[*id].functions.values() {
                    out.push((format!("{name}#{}", f.name), params(f)));
                    shapes.push(func_shape(f));
                }
            }
            WorldItem::Type { .. } => {}
        }
    }
    Ok((out, shapes))
}

/// A type as WIT with every named record, variant, enum and flags spelled out
/// (`point{x: u32, y: u32}`), so two components' types compare by structure.
fn shape(resolve: &wit_parser::Resolve, ty: &wit_parser::Type) -> String {
    use wit_parser::{Handle, Type, TypeDefKind};
    let Type::Id(id) = ty else {
        return type_name(resolve, ty);
    };
    let t = &resolve.types[*id];
    let n = |t: &Type| shape(resolve, t);
    let opt = |t: &Option<Type>| t.as_ref().map_or("_".to_string(), n);
    let name = t.name.clone().unwrap_or_default();
    match &t.kind {
        TypeDefKind::Record(r) => {
            let f: Vec<String> = r
                .fields
                .iter()
                .map(|f| format!("{}: {}", f.name, n(&f.ty)))
                .collect();
            format!("{name}{{{}}}", f.join(", "))
        }
        TypeDefKind::Variant(v) => {
            let c: Vec<String> = v
                .cases
                .iter()
                .map(|c| format!("{}({})", c.name, opt(&c.ty)))
                .collect();
            format!("{name}<{}>", c.join(", "))
        }
        TypeDefKind::Enum(e) => {
            let c: Vec<&str> = e.cases.iter().map(|c| c.name.as_str()).collect();
            format!("{name}<{}>", c.join(", "))
        }
        TypeDefKind::Flags(f) => {
            let c: Vec<&str> = f.flags.iter().map(|c| c.name.as_str()).collect();
            format!("{name}[{}]", c.join(", "))
        }
        TypeDefKind::List(t) => format!("list<{}>", n(t)),
        TypeDefKind::FixedLengthList(t, len) => format!("list<{}, {len}>", n(t)),
        TypeDefKind::Map(k, v) => format!("map<{}, {}>", n(k), n(v)),
        TypeDefKind::Option(t) => format!("option<{}>", n(t)),
        TypeDefKind::Result(r) => format!("result<{}, {}>", opt(&r.ok), opt(&r.err)),
        TypeDefKind::Tuple(t) => {
            format!(
                "tuple<{}>",
                t.types.iter().map(n).collect::<Vec<_>>().join(", ")
            )
        }
        TypeDefKind::Handle(Handle::Borrow(r)) => format!("borrow<{}>", n(&Type::Id(*r))),
        TypeDefKind::Handle(Handle::Own(r)) => n(&Type::Id(*r)),
        TypeDefKind::Type(inner) => n(inner),
        _ => type_name(resolve, ty),
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
