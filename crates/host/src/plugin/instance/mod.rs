//! Instances of a plugin: creation under the policy's limits, checkout and return, calls, and
//! turning every way a call can fail into a [`PluginError`].

use std::collections::HashMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use wasmtime::{
    Engine, Func, FuncType, Memory, ResourceLimiter, Store, StoreContextMut, Trap, UpdateDeadline,
    Val, WasmParams, WasmResults,
};
use wasmtime_wasi::p1::WasiP1Ctx;

pub mod exchange;

use super::error::{AbiViolation, OutputTooLarge, PluginError, one_line};
use crate::policy::{ByteSize, CapturePipe, EffectiveLimits, Isolation, OutputMode, Policy};

/// The deepest `limits.stack` whose calls run on the caller's own thread. A deeper one runs
/// each call on a helper thread with a stack that holds it: the caller's thread (2 MiB for a
/// spawned Rust thread, 8 MiB for `main`) would overflow before wasmtime's limit did.
pub(super) const INLINE_STACK: u64 = 1 << 20;
/// Stack a helper thread keeps for the host (wasmtime's entry, host functions, WASI) on top of
/// `limits.stack`; also the margin between an engine's wasm stack and its async stack size.
pub(super) const HOST_STACK: u64 = 2 << 20;

/// Runs `f`, which enters the guest, with panics caught, on a stack deep enough for a wasm
/// stack of `stack` bytes (see [`INLINE_STACK`]).
fn enter<T: Send>(
    stack: u64,
    f: impl FnOnce() -> wasmtime::Result<T> + Send,
) -> std::thread::Result<wasmtime::Result<T>> {
    if stack <= INLINE_STACK {
        return catch_unwind(AssertUnwindSafe(f));
    }
    let size = stack.saturating_add(HOST_STACK);
    std::thread::scope(|scope| {
        let spawned = std::thread::Builder::new()
            .name("wasmlink-call".into())
            .stack_size(usize::try_from(size).unwrap_or(usize::MAX))
            .spawn_scoped(scope, move || catch_unwind(AssertUnwindSafe(f)));
        match spawned {
            Ok(handle) => handle.join().unwrap_or_else(Err),
            Err(e) => Ok(Err(wasmtime::Error::msg(format!(
                "cannot start a thread with a {} stack for the call (limits.stack): {e}",
                ByteSize(size)
            )))),
        }
    })
}

/// One loaded module and its policy: what every instance of a plugin is made from, shared by
/// the handles of a [`super::Plugin`] and the instances checked out of it.
pub(super) struct PluginInner {
    /// What the module's `wasmlink.exports` section says its functions take.
    pub(super) manifest: Arc<super::manifest::Manifest>,
    pub(super) name: String,
    pub(super) sha256: String,
    pub(super) policy: Policy,
    pub(super) limits: EffectiveLimits,
    /// `limits.timeout` in epoch ticks, computed once; `None` for `timeout = "none"` (an
    /// engine without epoch checks).
    pub(super) ticks: Option<u64>,
    /// The host's tick clock (see [`timeout_watch`]).
    pub(super) clock: Arc<AtomicU64>,
    pub(super) engine: Engine,
    pub(super) pre: wasmtime::InstancePre<PluginState>,
    pub(super) exports: HashMap<String, FuncType>,
    /// The module's `_initialize` and `memory` exports, found once (a lookup by index, not by
    /// name, for each new instance).
    pub(super) initialize: Option<wasmtime::ModuleExport>,
    pub(super) memory_export: Option<wasmtime::ModuleExport>,
    /// Whether the module imports WASI preview 1 (otherwise its stores get no WASI context).
    pub(super) uses_wasi: bool,
    /// Whether the module imports any function, so a call can run host code that might panic.
    /// A module that imports none reaches only the limiter and the timeout's epoch callback
    /// (this file; neither can panic), so its typed calls skip the panic guard, which cost
    /// about 4 ns, 15% of a small call (BENCHMARKS.md, issue 18 item 3).
    pub(super) imports_functions: bool,
    /// Idle instances, reused by the next checkout.
    pub(super) pool: Mutex<Vec<Ready>>,
    /// How many idle instances the pool keeps.
    pub(super) idle: usize,
    /// The host that loaded the plugin, kept alive (with its epoch timer) as long as the plugin.
    #[allow(dead_code)]
    pub(super) keepalive: Arc<dyn std::any::Any + Send + Sync>,
}

/// What a limit hit was, recorded by the limiter so the error can say exactly which.
#[derive(Debug, Clone, Copy)]
enum Hit {
    Memory { requested: u64 },
    Table { requested: u64 },
}

/// Enforces `limits.memory`, `limits.table-elements` and `limits.instances` for one store.
struct Limiter {
    memory: u64,
    table_elements: u64,
    instances: u64,
    hit: Option<Hit>,
    /// Bytes of linear memory the store's memories hold now (their initial sizes and every
    /// growth allowed since; linear memories never shrink).
    memory_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
#[error("resource limit exceeded")]
struct LimitExceeded;

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.memory {
            self.hit = Some(Hit::Memory {
                requested: desired as u64,
            });
            return Err(LimitExceeded.into());
        }
        self.memory_bytes = self
            .memory_bytes
            .saturating_add(desired.saturating_sub(current) as u64);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired as u64 > self.table_elements {
            self.hit = Some(Hit::Table {
                requested: desired as u64,
            });
            return Err(LimitExceeded.into());
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        self.instances as usize
    }

    fn memories(&self) -> usize {
        self.instances as usize
    }

    fn tables(&self) -> usize {
        self.instances as usize * 4
    }
}

/// The data of a plugin instance's Store: its WASI context (as the policy grants), its limiter,
/// and its captured output.
pub struct PluginState {
    /// `None` for a module that imports no WASI function (nothing can reach it; building one
    /// is most of what a fresh instance costs).
    pub(super) wasi: Option<WasiP1Ctx>,
    limiter: Limiter,
    stdout: Option<CapturePipe>,
    stderr: Option<CapturePipe>,
    taken_out: usize,
    taken_err: usize,
    /// The host's tick clock when the running call started (see [`timeout_watch`]).
    call_start: u64,
}

impl PluginState {
    /// What every call does first: notes when it started (one relaxed load of the host's
    /// clock) for the timeout, and forgets the last limit hit.
    #[inline]
    fn new_call(&mut self, clock: &AtomicU64) {
        self.call_start = clock.load(Ordering::Relaxed);
        self.limiter.hit = None;
    }
}

/// How often a running call's age is looked at, per timeout: a call is stopped after at least
/// its `limits.timeout` and at most `1 + 1/TIMEOUT_CHECKS` times it.
const TIMEOUT_CHECKS: u64 = 4;

/// `limits.timeout` (`ticks` epoch ticks) on a store, without re-arming the deadline on every
/// call: each call notes the host's tick clock when it starts ([`PluginState::new_call`]); the
/// epoch deadline comes every `step` ticks (returned with the callback, which extends it), and
/// the callback stops the call once the clock is `ticks` past its start. So a call runs at
/// least its timeout and at most `ticks + step` (time blocked in a host call counts, as wall
/// time should). Re-arming per call (`Store::set_epoch_deadline`) cost a typed call about 8 ns,
/// 45% of a raw `TypedFunc::call` here (BENCHMARKS.md, "Item 3 again: typed calls without
/// re-arming").
fn timeout_watch(
    ticks: u64,
    clock: Arc<AtomicU64>,
) -> (
    u64,
    impl FnMut(StoreContextMut<'_, PluginState>) -> wasmtime::Result<UpdateDeadline>
    + Send
    + Sync
    + 'static,
) {
    let step = (ticks / TIMEOUT_CHECKS).max(1);
    let watch = move |ctx: StoreContextMut<'_, PluginState>| {
        let ran = clock
            .load(Ordering::Relaxed)
            .saturating_sub(ctx.data().call_start);
        if ran >= ticks {
            return Err(Trap::Interrupt.into());
        }
        Ok(UpdateDeadline::Continue(step.min(ticks - ran)))
    };
    (step, watch)
}

/// A live instance with its store.
pub(super) struct Ready {
    store: Store<PluginState>,
    instance: wasmtime::Instance,
    memory: Option<Memory>,
    /// Exports the data-exchange ABI looked up once per instance, not once per call.
    abi: AbiCache,
}

/// Typed handles of the ABI exports of one instance, found on first use.
#[derive(Default)]
struct AbiCache {
    alloc_free: Option<(AllocFunc, FreeFunc)>,
    functions: HashMap<String, AbiFunc>,
}

/// `wasmlink_alloc(size, align) -> ptr`.
type AllocFunc = wasmtime::TypedFunc<(i32, i32), i32>;
/// `wasmlink_free(ptr, size, align)`.
type FreeFunc = wasmtime::TypedFunc<(i32, i32, i32), ()>;
/// An ABI function `f(in_ptr, in_len) -> *const ResultRecord`.
type AbiFunc = wasmtime::TypedFunc<(i32, i32), i32>;

/// The allocator pair of an [`AbiCache`], borrowed.
#[derive(Clone, Copy)]
struct AbiPair<'a> {
    alloc: &'a AllocFunc,
    free: &'a FreeFunc,
}

impl AbiCache {
    /// The allocator pair and `function`, once looked up (an internal error otherwise).
    fn get(&self, function: &str) -> wasmtime::Result<(AbiPair<'_>, &AbiFunc)> {
        let missing = || wasmtime::Error::msg("internal error: ABI exports used before lookup");
        let (alloc, free) = self.alloc_free.as_ref().ok_or_else(missing)?;
        let f = self.functions.get(function).ok_or_else(missing)?;
        Ok((AbiPair { alloc, free }, f))
    }
}

/// An instance checked out of a plugin's pool, for calls on one thread. Dropping it returns it
/// to the pool, unless a call on it failed (then it is thrown away).
pub struct Instance {
    plugin: Arc<PluginInner>,
    ready: Option<Ready>,
    failed: bool,
}

impl Instance {
    pub(super) fn checkout(plugin: Arc<PluginInner>) -> Result<Instance, PluginError> {
        // `isolation = "fresh"`: never reuse; the pool stays empty (see Drop).
        let pooled = match plugin.limits.isolation {
            Isolation::Warm => plugin.pool.lock().ok().and_then(|mut p| p.pop()),
            Isolation::Fresh => None,
        };
        let ready = match pooled {
            Some(r) => r,
            None => create(&plugin)?,
        };
        Ok(Instance {
            plugin,
            ready: Some(ready),
            failed: false,
        })
    }

    fn ready(&mut self) -> &mut Ready {
        // `ready` is only None after drop.
        self.ready.get_or_insert_with(unreachable_ready)
    }

    /// The plugin's name.
    pub fn plugin_name(&self) -> &str {
        &self.plugin.name
    }

    /// The limits in force.
    pub fn limits(&self) -> EffectiveLimits {
        self.plugin.limits
    }

    /// Arms the per-call limits (timeout and fuel).
    fn arm(&mut self) {
        let plugin = &self.plugin;
        let Some(r) = self.ready.as_mut() else {
            return;
        };
        if let Some(f) = plugin.limits.fuel {
            let _ = r.store.set_fuel(f);
        }
        r.store.data_mut().new_call(&plugin.clock);
    }

    fn func(&mut self, function: &str) -> Result<Func, PluginError> {
        // The plugin's name is cloned only for the error.
        let Some(r) = self.ready.as_mut() else {
            return Err(unreachable_err(&self.plugin.name));
        };
        r.instance
            .get_func(&mut r.store, function)
            .ok_or_else(|| PluginError::NoSuchFunction {
                plugin: self.plugin.name.clone(),
                function: function.to_string(),
                available: {
                    let mut v: Vec<String> = self.plugin.exports.keys().cloned().collect();
                    v.sort();
                    v
                },
            })
    }

    /// Calls `function` with dynamically typed arguments.
    pub fn call(&mut self, function: &str, args: &[Val]) -> Result<Vec<Val>, PluginError> {
        let func = self.func(function)?;
        let ty = func.ty(&self.ready().store);
        let expected: Vec<_> = ty.params().collect();
        let matches = expected.len() == args.len()
            && expected
                .iter()
                .zip(args)
                .all(|(t, a)| a.matches_ty(&self.ready().store, t).unwrap_or(false));
        if !matches {
            return Err(PluginError::Signature {
                plugin: self.plugin.name.clone(),
                function: function.to_string(),
                expected: format!(
                    "({})",
                    args.iter()
                        .map(|a| val_type_name(a))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                actual: func_type_string(&ty),
            });
        }
        let mut results = vec![Val::I32(0); ty.results().len()];
        self.arm();
        let r = self.ready.as_mut().map(|r| &mut r.store);
        let Some(store) = r else {
            return Err(unreachable_err(&self.plugin.name));
        };
        let outcome = enter(self.plugin.limits.stack, || {
            func.call(&mut *store, args, &mut results)
        });
        self.finish(function, outcome)?;
        Ok(results)
    }

    /// A typed handle to `function`, checked once; its calls cost one typed wasmtime call plus
    /// arming the timeout.
    pub fn typed<P: WasmParams, R: WasmResults>(
        &mut self,
        function: &str,
    ) -> Result<TypedCall<'_, P, R>, PluginError> {
        let func = self.func(function)?;
        let Some(r) = self.ready.as_ref() else {
            return Err(unreachable_err(&self.plugin.name));
        };
        let typed = func
            .typed::<P, R>(&r.store)
            .map_err(|_| PluginError::Signature {
                plugin: self.plugin.name.clone(),
                function: function.to_string(),
                expected: std::any::type_name::<(P, R)>().to_string(),
                actual: func_type_string(&func.ty(&r.store)),
            })?;
        Ok(TypedCall {
            fuel: self.plugin.limits.fuel,
            stack: self.plugin.limits.stack,
            clock: self.plugin.clock.clone(),
            guard: self.plugin.imports_functions,
            instance: self,
            func: typed,
            name: function.to_string(),
        })
    }

    /// Maps a call's outcome; any failure marks the instance as failed (never reused).
    fn finish<T>(
        &mut self,
        function: &str,
        outcome: std::thread::Result<wasmtime::Result<T>>,
    ) -> Result<T, PluginError> {
        let result = match outcome {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(self.classify(function, e)),
            Err(panic) => Err(PluginError::HostPanic {
                plugin: self.plugin.name.clone(),
                function: function.to_string(),
                message: panic_message(&panic),
            }),
        };
        if result.is_err() {
            self.failed = true;
        }
        result
    }

    fn classify(&mut self, function: &str, e: wasmtime::Error) -> PluginError {
        let plugin = self.plugin.name.clone();
        let function = function.to_string();
        let limits = self.plugin.limits;
        let hit = self
            .ready
            .as_mut()
            .and_then(|r| r.store.data_mut().limiter.hit.take());
        classify_error(&plugin, &function, &limits, hit, e)
    }

    /// The linear memory the module exports as `memory`, if any.
    pub fn memory(&mut self) -> Option<Memory> {
        self.ready().memory
    }

    /// Bytes of linear memory this instance holds: every memory's size, grown or not (wasm
    /// memories never shrink, so this is also the most it has held). A pipeline worker uses it
    /// to replace an instance that has grown too large.
    pub fn memory_bytes(&self) -> u64 {
        self.ready
            .as_ref()
            .map_or(0, |r| r.store.data().limiter.memory_bytes)
    }

    /// Drops the instance without returning it to the pool (its memory is given back), for an
    /// instance that is healthy but should not be reused: one grown past a bound, say.
    pub fn discard(mut self) {
        self.failed = true;
    }

    /// The store, for direct access to memory and functions. A caller that traps through it
    /// should call [`Instance::poison`] so the instance is not reused.
    pub fn store_mut(&mut self) -> &mut Store<PluginState> {
        &mut self.ready().store
    }

    /// Marks the instance as failed: it will be thrown away rather than reused.
    pub fn poison(&mut self) {
        self.failed = true;
    }

    /// Whether a call on this instance has failed.
    pub fn is_poisoned(&self) -> bool {
        self.failed
    }

    /// Output captured (policy `stdio.stdout = "capture"`) since the last take.
    pub fn take_stdout(&mut self) -> Vec<u8> {
        let s = self.ready().store.data_mut();
        take(&s.stdout, &mut s.taken_out)
    }

    /// Error output captured since the last take.
    pub fn take_stderr(&mut self) -> Vec<u8> {
        let s = self.ready().store.data_mut();
        take(&s.stderr, &mut s.taken_err)
    }

    /// Runs a closure that calls into the guest with the per-call limits armed and panics in
    /// host functions caught; any failure poisons the instance.
    fn guarded<T: Send>(
        &mut self,
        function: &str,
        f: impl FnOnce(&mut Store<PluginState>) -> wasmtime::Result<T> + Send,
    ) -> Result<T, PluginError> {
        self.arm();
        let Some(r) = self.ready.as_mut() else {
            return Err(unreachable_err(&self.plugin.name));
        };
        let outcome = enter(self.plugin.limits.stack, || f(&mut r.store));
        self.finish(function, outcome)
    }

    /// [`Instance::guarded`], with the instance's ABI exports lent alongside the store (they
    /// are called by reference: cloning a `TypedFunc` clones its registered type, which cost
    /// more than the rest of a small call).
    fn guarded_abi<T: Send>(
        &mut self,
        function: &str,
        f: impl FnOnce(&mut Store<PluginState>, &AbiCache) -> wasmtime::Result<T> + Send,
    ) -> Result<T, PluginError> {
        self.arm();
        let Some(r) = self.ready.as_mut() else {
            return Err(unreachable_err(&self.plugin.name));
        };
        let outcome = enter(self.plugin.limits.stack, || f(&mut r.store, &r.abi));
        self.finish(function, outcome)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let Some(ready) = self.ready.take() else {
            return;
        };
        if self.failed || self.plugin.limits.isolation == Isolation::Fresh {
            // Dropping the store gives the pool slot back; its memory is reset to the
            // module's copy-on-write image before the slot is used again.
            return;
        }
        // An instance whose captured output is half full is replaced rather than reused.
        let cap = self.plugin.limits.output as usize;
        let d = ready.store.data();
        let used = |p: &Option<CapturePipe>| p.as_ref().map_or(0, CapturePipe::len);
        if used(&d.stdout) > cap / 2 || used(&d.stderr) > cap / 2 {
            return;
        }
        if let Ok(mut pool) = self.plugin.pool.lock()
            && pool.len() < self.plugin.idle
        {
            pool.push(ready);
        }
    }
}

/// A typed function of an [`Instance`].
pub struct TypedCall<'a, P, R> {
    instance: &'a mut Instance,
    func: wasmtime::TypedFunc<P, R>,
    /// The function's name, for errors only (never cloned on the way of a call that succeeds).
    name: String,
    /// The per-call limits, copied here so a call reads them without going through the plugin.
    fuel: Option<u64>,
    stack: u64,
    /// The host's tick clock, held here: one load per call instead of three dependent ones
    /// (instance, plugin, clock).
    clock: Arc<AtomicU64>,
    /// Whether a host-function panic must be caught (see `PluginInner::imports_functions`).
    guard: bool,
}

impl<P: WasmParams + Send, R: WasmResults + Send> TypedCall<'_, P, R> {
    /// Calls it: notes the host's tick clock for the timeout (`timeout_watch`: one relaxed
    /// load, no deadline re-armed), re-arms the fuel, resets the limiter's record, and catches
    /// host-function panics (for a module that imports a function: one that imports none
    /// cannot reach one). Nothing is allocated or cloned.
    #[inline]
    pub fn call(&mut self, args: P) -> Result<R, PluginError> {
        let Some(r) = self.instance.ready.as_mut() else {
            return Err(unreachable_err(&self.instance.plugin.name));
        };
        if let Some(f) = self.fuel {
            let _ = r.store.set_fuel(f);
        }
        r.store.data_mut().new_call(&self.clock);
        let func = &self.func;
        let outcome = if self.stack > INLINE_STACK {
            enter(self.stack, || func.call(&mut r.store, args))
        } else if self.guard {
            catch_unwind(AssertUnwindSafe(|| func.call(&mut r.store, args)))
        } else {
            // No function imported: no host code that could panic runs inside this call.
            Ok(func.call(&mut r.store, args))
        };
        match outcome {
            Ok(Ok(v)) => Ok(v),
            failed => self.instance.finish(&self.name, failed),
        }
    }
}

fn take(pipe: &Option<CapturePipe>, taken: &mut usize) -> Vec<u8> {
    let Some(p) = pipe else { return Vec::new() };
    let all = p.contents();
    let out = all.get(*taken..).unwrap_or_default().to_vec();
    *taken = all.len();
    out
}

fn unreachable_ready() -> Ready {
    // Never called: `ready` is Some for the whole life of an Instance outside Drop.
    panic!("wasmlink: instance used after it was returned to the pool")
}

fn unreachable_err(plugin: &str) -> PluginError {
    PluginError::Load {
        plugin: plugin.to_string(),
        message: "instance used after it was returned to the pool".into(),
    }
}

/// Creates a fresh instance of `plugin` in a new store, under its policy.
fn create(plugin: &Arc<PluginInner>) -> Result<Ready, PluginError> {
    let limits = plugin.limits;
    let cap = limits.output.min(usize::MAX as u64) as usize;
    let stdout = (plugin.policy.stdio.stdout == OutputMode::Capture).then(|| CapturePipe::new(cap));
    let stderr = (plugin.policy.stdio.stderr == OutputMode::Capture).then(|| CapturePipe::new(cap));
    let wasi = match plugin.uses_wasi {
        // File calls on the granted directories run on the calling thread, reading straight
        // into linear memory: a call blocks its thread anyway, and through tokio's blocking pool
        // every read and write was a thread hand-off and a copy (the index module's merge reads
        // and writes tens of MB).
        true => Some(
            plugin
                .policy
                .wasi_builder_with(
                    &format!("plugin `{}`", plugin.name),
                    stdout.as_ref(),
                    stderr.as_ref(),
                    true,
                )?
                .build_p1(),
        ),
        false => None,
    };
    let state = PluginState {
        wasi,
        limiter: Limiter {
            memory: limits.memory,
            table_elements: limits.table_elements,
            instances: limits.instances,
            hit: None,
            memory_bytes: 0,
        },
        stdout,
        stderr,
        taken_out: 0,
        taken_err: 0,
        call_start: plugin.clock.load(Ordering::Relaxed),
    };
    let mut store = Store::new(&plugin.engine, state);
    store.limiter(|s| &mut s.limiter);
    if let Some(ticks) = plugin.ticks {
        let (step, watch) = timeout_watch(ticks, plugin.clock.clone());
        store.set_epoch_deadline(step);
        store.epoch_deadline_callback(watch);
    }
    if let Some(f) = limits.fuel {
        let _ = store.set_fuel(f);
    }
    let name = plugin.name.clone();
    let outcome = enter(limits.stack, || plugin.pre.instantiate(&mut store));
    let instance = match outcome {
        Ok(Ok(i)) => i,
        Ok(Err(e)) => {
            let hit = store.data_mut().limiter.hit.take();
            return Err(instantiate_error(&name, &limits, hit, e));
        }
        Err(p) => {
            return Err(PluginError::HostPanic {
                plugin: name,
                function: "start".into(),
                message: panic_message(&p),
            });
        }
    };
    // A reactor's constructors run once, before the first call.
    let init = plugin
        .initialize
        .as_ref()
        .and_then(|e| instance.get_module_export(&mut store, e))
        .and_then(wasmtime::Extern::into_func);
    if let Some(init) = init {
        store.data_mut().new_call(&plugin.clock);
        let outcome = enter(limits.stack, || init.call(&mut store, &[], &mut []));
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                let hit = store.data_mut().limiter.hit.take();
                return Err(classify_error(&name, "_initialize", &limits, hit, e));
            }
            Err(p) => {
                return Err(PluginError::HostPanic {
                    plugin: name,
                    function: "_initialize".into(),
                    message: panic_message(&p),
                });
            }
        }
    }
    let memory = plugin
        .memory_export
        .as_ref()
        .and_then(|e| instance.get_module_export(&mut store, e))
        .and_then(wasmtime::Extern::into_memory);
    Ok(Ready {
        store,
        instance,
        memory,
        abi: AbiCache::default(),
    })
}

fn instantiate_error(
    plugin: &str,
    limits: &EffectiveLimits,
    hit: Option<Hit>,
    e: wasmtime::Error,
) -> PluginError {
    // A start function's failure reads as a failure of `start`.
    let msg = one_line(&e);
    if hit.is_none()
        && e.downcast_ref::<Trap>().is_none()
        && e.downcast_ref::<wasmtime_wasi::I32Exit>().is_none()
    {
        if msg.contains("maximum concurrent")
            || msg.contains("pooling")
            || msg.contains("instance count")
        {
            return PluginError::InstanceLimit {
                plugin: plugin.to_string(),
                message: format!(
                    "cannot create an instance: {msg} (limits.instances, or the host's pool_slots)"
                ),
            };
        }
        return PluginError::Load {
            plugin: plugin.to_string(),
            message: format!("cannot instantiate: {msg}"),
        };
    }
    classify_error(plugin, "start", limits, hit, e)
}

fn classify_error(
    plugin: &str,
    function: &str,
    limits: &EffectiveLimits,
    hit: Option<Hit>,
    e: wasmtime::Error,
) -> PluginError {
    let plugin = plugin.to_string();
    let function = function.to_string();
    match hit {
        Some(Hit::Memory { requested }) => {
            return PluginError::MemoryLimit {
                plugin,
                function,
                limit: limits.memory,
                requested,
            };
        }
        Some(Hit::Table { requested }) => {
            return PluginError::TableLimit {
                plugin,
                function,
                limit: limits.table_elements,
                requested,
            };
        }
        None => {}
    }
    if let Some(exit) = e.downcast_ref::<wasmtime_wasi::I32Exit>() {
        return PluginError::Exit {
            plugin,
            function,
            code: exit.0,
        };
    }
    if let Some(trap) = e.downcast_ref::<Trap>() {
        match trap {
            Trap::Interrupt => {
                return PluginError::Timeout {
                    plugin,
                    function,
                    limit: limits.timeout,
                };
            }
            Trap::OutOfFuel => {
                return PluginError::OutOfFuel {
                    plugin,
                    function,
                    fuel: limits.fuel.unwrap_or(0),
                };
            }
            Trap::StackOverflow => {
                return PluginError::StackOverflow {
                    plugin,
                    function,
                    limit: limits.stack,
                };
            }
            _ => {}
        }
    }
    if let Some(v) = e.downcast_ref::<AbiViolation>() {
        return PluginError::Abi {
            plugin,
            function,
            message: v.0.clone(),
        };
    }
    if e.downcast_ref::<OutputTooLarge>().is_some() {
        return PluginError::OutputLimit {
            plugin,
            function,
            what: "returned data".into(),
            limit: limits.output,
        };
    }
    let msg = one_line(&e);
    if msg.contains("write beyond capacity of MemoryOutputPipe") {
        return PluginError::OutputLimit {
            plugin,
            function,
            what: "captured output".into(),
            limit: limits.output,
        };
    }
    let backtrace = e
        .downcast_ref::<wasmtime::WasmBacktrace>()
        .map(|bt| format!("{bt}"))
        .filter(|s| !s.trim().is_empty());
    let trap = match e.downcast_ref::<Trap>() {
        Some(t) => t.to_string().trim_start_matches("wasm trap: ").to_string(),
        None => msg,
    };
    PluginError::Trap {
        plugin,
        function,
        trap,
        backtrace,
    }
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "(non-string panic payload)".to_string()
    }
}

fn val_type_name(v: &Val) -> &'static str {
    match v {
        Val::I32(_) => "i32",
        Val::I64(_) => "i64",
        Val::F32(_) => "f32",
        Val::F64(_) => "f64",
        Val::V128(_) => "v128",
        _ => "ref",
    }
}

/// `(i32, i32) -> i64` style text of a function type.
fn func_type_string(ty: &wasmtime::FuncType) -> String {
    let list = |it: &mut dyn Iterator<Item = wasmtime::ValType>| {
        it.map(|t| t.to_string()).collect::<Vec<_>>().join(", ")
    };
    format!(
        "({}) -> ({})",
        list(&mut ty.params()),
        list(&mut ty.results())
    )
}

impl std::fmt::Debug for Instance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instance")
            .field("plugin", &self.plugin.name)
            .field("poisoned", &self.failed)
            .finish_non_exhaustive()
    }
}

impl PluginState {
    /// The WASI context, for the WASI functions of the linker. Only a module that imports WASI
    /// can call them, and its stores always have one; should that ever not hold, the call gets
    /// the context of the deny-everything default policy, never more.
    pub(super) fn wasi_mut(&mut self) -> &mut WasiP1Ctx {
        self.wasi.get_or_insert_with(|| {
            let b = Policy::default().wasi_builder("plugin", None, None);
            b.unwrap_or_else(|_| wasmtime_wasi::WasiCtxBuilder::new())
                .build_p1()
        })
    }
}
