//! A pool of pre-instantiated components, as the plugin host pools core instances: `size`
//! instances of one [`ComponentPre`] are created up front, a caller checks one out, calls it
//! and gives it back by dropping the guard. A poisoned instance (a trap, a limit, an exit) is
//! never handed out again: it is replaced by a fresh one on return.
//!
//! [`ComponentPool::swap`] replaces the component behind the pool (hot swap), as
//! `Plugin::swap` does for core plugins: the new one must export the same functions with the
//! same types, and is instantiated once before it goes in. Calls in flight finish on the old
//! component; its instances are dropped as they come back (drained), never handed out again.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use wasmtime_wasi::WasiCtxBuilder;

use crate::error::ComponentError;
use crate::process::{ComponentPre, ComponentProcess};

/// Builds each instance's WASI 0.2 context (the policy's grants).
type WasiFactory = Box<dyn Fn() -> WasiCtxBuilder + Send + Sync>;

/// `size` warm instances of one component. See the module docs.
pub struct ComponentPool {
    /// The current component: instances of an earlier one are not handed out again.
    pre: RwLock<Arc<ComponentPre>>,
    wasi: WasiFactory,
    idle: Mutex<Vec<ComponentProcess>>,
    size: usize,
}

impl ComponentPool {
    /// Instantiates `size` instances of `pre`, each with the context `wasi` builds.
    ///
    /// # Errors
    /// The first instantiation error ([`ComponentPre::instantiate`]).
    pub fn new(
        pre: Arc<ComponentPre>,
        size: usize,
        wasi: impl Fn() -> WasiCtxBuilder + Send + Sync + 'static,
    ) -> Result<Self, ComponentError> {
        let wasi: WasiFactory = Box::new(wasi);
        let idle = (0..size)
            .map(|_| pre.instantiate(wasi()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            pre: RwLock::new(pre),
            wasi,
            idle: Mutex::new(idle),
            size,
        })
    }

    /// A warm instance, or a new one when all `size` are checked out.
    ///
    /// # Errors
    /// An instantiation error when a new instance is needed.
    pub fn checkout(&self) -> Result<Pooled<'_>, ComponentError> {
        let current = self.current();
        let warm = {
            let mut idle = self.lock();
            // Instances of a component swapped out since they went idle are dropped here.
            idle.retain(|p| p.is_instance_of(&current));
            idle.pop()
        };
        let process = match warm {
            Some(p) => p,
            None => current.instantiate((self.wasi)())?,
        };
        Ok(Pooled {
            pool: self,
            process: Some(process),
        })
    }

    /// Instances waiting to be checked out.
    pub fn idle(&self) -> usize {
        self.lock().len()
    }

    /// The component the pool hands out instances of now.
    pub fn current(&self) -> Arc<ComponentPre> {
        match self.pre.read() {
            Ok(g) => Arc::clone(&g),
            Err(p) => Arc::clone(&p.into_inner()),
        }
    }

    /// Replaces the component behind the pool (hot swap). `next` must export the same
    /// functions with the same types ([`ComponentPre::check_compatible`]) and is instantiated
    /// once before it goes in; on error the old component keeps serving. Calls in flight finish
    /// on the old component; checkouts that start afterwards get the new one, and the old
    /// instances are dropped as they come back.
    ///
    /// # Errors
    /// [`ComponentError::Incompatible`] naming the first differing function, or the new
    /// component's instantiation error.
    pub fn swap(&self, next: Arc<ComponentPre>) -> Result<(), ComponentError> {
        self.current().check_compatible(&next)?;
        let warm = next.instantiate((self.wasi)())?;
        match self.pre.write() {
            Ok(mut g) => *g = next,
            Err(p) => *p.into_inner() = next,
        }
        let mut idle = self.lock();
        idle.clear();
        idle.push(warm);
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<ComponentProcess>> {
        // A panic elsewhere while holding the lock leaves a valid Vec.
        self.idle.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn give_back(&self, process: ComponentProcess) {
        let current = self.current();
        if !process.is_instance_of(&current) {
            // Swapped out while it was checked out: drained.
            return;
        }
        let process = if process.is_poisoned() {
            drop(process);
            // If a fresh instance cannot be made now, the pool shrinks; `checkout` makes one
            // on demand (and reports the error there).
            match current.instantiate((self.wasi)()) {
                Ok(p) => p,
                Err(_) => return,
            }
        } else {
            process
        };
        let mut idle = self.lock();
        if idle.len() < self.size {
            idle.push(process);
        }
    }
}

/// An instance checked out of a [`ComponentPool`]; returned to it when dropped.
pub struct Pooled<'a> {
    pool: &'a ComponentPool,
    process: Option<ComponentProcess>,
}

impl Deref for Pooled<'_> {
    type Target = ComponentProcess;
    fn deref(&self) -> &ComponentProcess {
        self.process.as_ref().expect("present until drop")
    }
}

impl DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut ComponentProcess {
        self.process.as_mut().expect("present until drop")
    }
}

impl Pooled<'_> {
    /// Drops the instance instead of returning it to the pool (its memory goes back to the
    /// system; the pool makes a fresh one when next needed): for an instance whose linear
    /// memory has grown past what its caller wants to keep.
    pub fn discard(mut self) {
        drop(self.process.take());
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(p) = self.process.take() {
            self.pool.give_back(p);
        }
    }
}
