//! Statically typed calls: the fast path for Rust hosts that know a function's WIT signature.
//!
//! [`ComponentProcess::call_wave`] and [`ComponentProcess::call_vals`] convert every argument
//! and result to a dynamic [`wasmtime::component::Val`]; a [`TypedCall`] lowers and lifts Rust
//! values directly (wasmtime's `TypedFunc`), under the same per-call limits and with the same
//! poisoning on failure. The signature is checked once, when the handle is made.

use wasmtime::component::{ComponentNamedList, Lift, Lower, TypedFunc};

use super::ComponentProcess;
use crate::error::ComponentError;

/// An exported function of one [`ComponentProcess`] with a Rust signature checked against its
/// WIT type: `P` is the tuple of parameters (`(String,)`, `(u32, u32)`), `R` the tuple of
/// results. It borrows the instance it was found on, so it can only call into that one.
pub struct TypedCall<'a, P, R> {
    process: &'a mut ComponentProcess,
    full: String,
    func: TypedFunc<P, R>,
}

impl ComponentProcess {
    /// Looks up `name` (as [`ComponentProcess::call_wave`] names functions) and checks that it
    /// takes `P` and returns `R`.
    ///
    /// # Errors
    /// [`ComponentError::NoSuchFunction`]; [`ComponentError::Argument`] naming the function
    /// and its WIT parameters when the Rust types do not match them.
    pub fn typed<P, R>(&mut self, name: &str) -> Result<TypedCall<'_, P, R>, ComponentError>
    where
        P: ComponentNamedList + Lower,
        R: ComponentNamedList + Lift,
    {
        let (full, func) = self.find(name)?;
        let func = func.typed::<P, R>(&self.store).map_err(|e| {
            let wit = self
                .pre
                .functions
                .iter()
                .find(|(n, _)| *n == full)
                .map(|(_, ps)| {
                    ps.iter()
                        .map(|(n, t)| format!("{n}: {t}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            ComponentError::Argument {
                function: full.clone(),
                param: "(all)".into(),
                ty: format!("({wit})"),
                message: super::one_line(&format!("{e:#}")),
            }
        })?;
        Ok(TypedCall {
            process: self,
            full,
            func,
        })
    }
}

impl<P, R> TypedCall<'_, P, R>
where
    P: ComponentNamedList + Lower,
    R: ComponentNamedList + Lift,
{
    /// The function's full name (`ns:pkg/iface#func` for an interface's).
    pub fn name(&self) -> &str {
        &self.full
    }

    /// Calls the function under the component's limits (fuel refilled, the timeout started);
    /// a failure poisons the instance.
    ///
    /// # Errors
    /// [`ComponentError::Poisoned`] after an earlier failed call, [`ComponentError::Trap`],
    /// [`ComponentError::Limit`], [`ComponentError::Exit`].
    pub fn call(&mut self, params: P) -> Result<R, ComponentError> {
        let p = &mut *self.process;
        p.check_poisoned()?;
        let func = &self.func;
        p.guarded(&self.full, None, |store| func.call(store, params))
    }
}
