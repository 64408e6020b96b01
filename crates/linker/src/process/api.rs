//! [`Process`]: the API of a loaded process (calls, symbols, dlopen, hot swap, memory).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmlink_dylink::{ImportClass, ModuleInfo};
use wasmtime::{AsContextMut, Func, FuncType, Memory, Ref, Store, Table, Val};

use super::bind::linker_symbol;
use super::error::LinkError;
use super::load::{add_library, load_tree_from};
use super::resources::alloc_region;
use super::state::read;
use super::state::{Def, Host, LibId, Symbol};

/// A handle to a running linked process.
pub struct Process {
    pub(super) store: Store<Host>,
    pub(super) main: LibId,
}

/// A library of a process, as [`Process::libraries`] lists it.
#[derive(Debug, Clone)]
pub struct LibraryInfo {
    /// Name (as needed, or the file name).
    pub name: String,
    /// Where it was loaded from.
    pub path: PathBuf,
    /// Start of its data region.
    pub memory_base: u32,
    /// Size of its data region.
    pub memory_size: u32,
    /// First slot of its table region.
    pub table_base: u32,
    /// Open count.
    pub refcount: u32,
}

impl Process {
    /// The store, for calls the API does not wrap.
    pub fn store_mut(&mut self) -> &mut Store<Host> {
        &mut self.store
    }

    /// The process's linear memory.
    pub fn memory(&self) -> Memory {
        self.store
            .data()
            .dl
            .memory
            .expect("a loaded process has a memory")
    }

    /// The process's function table.
    pub fn table(&self) -> Table {
        self.store
            .data()
            .dl
            .table
            .expect("a loaded process has a table")
    }

    /// The wasmtime instances the process's store holds (libraries, thunk modules, WASI shims),
    /// bounded by [`ProcessBuilder::max_instances`](super::ProcessBuilder::max_instances). A
    /// library dlopen'ed again after `dlclose` reuses its parked instance, so repeated cycles
    /// do not raise it.
    pub fn instance_count(&self) -> usize {
        self.store.data().dl.instances
    }

    /// Loaded libraries, main program first.
    pub fn libraries(&self) -> Vec<LibraryInfo> {
        self.store
            .data()
            .dl
            .libs
            .iter()
            .flatten()
            .map(|l| LibraryInfo {
                name: l.name.clone(),
                path: l.path.clone(),
                memory_base: l.memory_base,
                memory_size: l.memory_len,
                table_base: l.table_base,
                refcount: l.refcount,
            })
            .collect()
    }

    /// Calls the main program's entry point: `_start`, or `main`/`__main_argc_argv` with the
    /// builder's arguments, and returns its exit status. Runs `atexit` handlers afterwards.
    ///
    /// # Errors
    /// A trap in the program, as [`LinkError::Runtime`].
    pub fn run_main(&mut self) -> Result<i32, LinkError> {
        let main_has_start = {
            let l = self.store.data().dl.lib(self.main);
            l.module.get_export("_start").is_some()
        };
        let cx = self.store.as_context_mut();
        let started = std::time::Instant::now();
        let before = cx.data().dl.stats.get();
        let status = super::lifecycle::run_entry(cx, self.main);
        if super::stats::enabled() {
            self.store.data().dl.stats.get().report_since(&before);
            // `exit()` ends the entry point with LinkError::Exit: the time is still the main's.
            tracing::debug!(
                target: super::stats::TARGET,
                "main (entry point until it returns or exits): {}",
                super::stats::ms(started.elapsed()).trim_start()
            );
        }
        let finish = super::lifecycle::run_atexit(self.store.as_context_mut(), None);
        let status = match status {
            // `exit()` flushed and ran its handlers before `proc_exit`.
            Err(LinkError::Exit(code)) => return finish.map(|()| code),
            other => other,
        }?;
        finish?;
        super::fini::run_fini(self.store.as_context_mut(), self.main, main_has_start)?;
        Ok(status)
    }

    /// Looks `symbol` up in the global scope and calls it.
    ///
    /// # Errors
    /// [`LinkError::NoSuchSymbol`] if it is not a function; [`LinkError::Runtime`] on a trap.
    pub fn call(&mut self, symbol: &str, args: &[Val]) -> Result<Vec<Val>, LinkError> {
        let f = self.func(symbol)?;
        let n = f.ty(&self.store).results().len();
        let mut results = vec![Val::I32(0); n];
        f.call(&mut self.store, args, &mut results)
            .map_err(|e| LinkError::runtime(symbol, "call", e))?;
        Ok(results)
    }

    /// The function `symbol` resolves to in the global scope.
    ///
    /// # Errors
    /// [`LinkError::NoSuchSymbol`] if no loaded library defines it as a function.
    pub fn func(&mut self, symbol: &str) -> Result<Func, LinkError> {
        let dl = &self.store.data().dl;
        let Some(Def::Func { lib, .. }) = dl.lookup(symbol, Some(self.main)) else {
            return Err(LinkError::NoSuchSymbol {
                symbol: symbol.to_string(),
                library: dl.lib_name(self.main),
            });
        };
        let inst = dl
            .lib(lib)
            .instance
            .expect("defining library is instantiated");
        inst.get_func(&mut self.store, symbol)
            .ok_or_else(|| LinkError::NoSuchSymbol {
                symbol: symbol.to_string(),
                library: self.store.data().dl.lib_name(lib),
            })
    }

    /// Opens a library as `dlopen` does; returns its handle.
    ///
    /// # Errors
    /// As `dlopen` would report through `dlerror`.
    pub fn dlopen(&mut self, name: &str, flags: i32) -> Result<u32, LinkError> {
        super::libdl::open(self.store.as_context_mut(), name, flags, None)
    }

    /// Looks a symbol up as `dlsym` does (`handle` 0 is `RTLD_DEFAULT`).
    ///
    /// # Errors
    /// [`LinkError::BadHandle`] or [`LinkError::NoSuchSymbol`].
    pub fn dlsym(&mut self, handle: u32, name: &str) -> Result<Symbol, LinkError> {
        super::libdl::lookup_sym(self.store.as_context_mut(), handle, name, None)
    }

    /// Closes a handle as `dlclose` does; at count 0 the library is unloaded.
    ///
    /// # Errors
    /// [`LinkError::BadHandle`] for a handle that is not open.
    pub fn dlclose(&mut self, handle: u32) -> Result<(), LinkError> {
        super::libdl::close(self.store.as_context_mut(), handle)
    }

    /// Loads a new build of the loaded library `name` from `path` and rebinds each function it
    /// exports that the old build defined (with the same type) to the new code. Returns the
    /// names rebound. The old build's data stays where it was (the new build has its own,
    /// initialised by its constructors); its code stays in the store.
    ///
    /// Every function pointer sees the new code; cross-library calls do too when the process
    /// was built with [`ProcessBuilder::hot_swap`](crate::ProcessBuilder::hot_swap).
    ///
    /// # Errors
    /// [`LinkError::NoSuchSymbol`] if `name` is not loaded; load errors of the new build.
    pub fn reload(&mut self, name: &str, path: &Path) -> Result<Vec<String>, LinkError> {
        let old = {
            let dl = &self.store.data().dl;
            dl.libs
                .iter()
                .position(|l| l.as_ref().is_some_and(|l| l.name == name))
        }
        .ok_or_else(|| LinkError::NoSuchSymbol {
            symbol: name.to_string(),
            library: "reload".to_string(),
        })?;
        let bytes = read(path)?;
        let info = Arc::new(ModuleInfo::parse(&bytes).map_err(|e| LinkError::BadModule {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?);
        let generation = self.store.data().dl.libs.len();
        let new_name = format!("{name}#{generation}");
        let new = add_library(
            self.store.as_context_mut(),
            new_name,
            crate::resolve::Found {
                path: path.to_path_buf(),
                info,
                bytes: Some(bytes.into()),
                stamp: None,
            },
        )?;
        // The new build resolves its own imports against the process, but it is not in any
        // scope: callers keep finding the old definitions, whose slots now hold the new code.
        load_tree_from(self.store.as_context_mut(), new)?;
        let inst = self
            .store
            .data()
            .dl
            .lib(new)
            .instance
            .expect("instantiated");
        let old_funcs = self.store.data().dl.lib(old).functions();
        let mut rebound = Vec::new();
        for (f, _) in old_funcs {
            let Some(func) = inst.get_func(&mut self.store, &f) else {
                continue;
            };
            if self.store.data().dl.lookup(&f, None).map(Def::lib) != Some(old) {
                continue;
            }
            self.rebind(&f, func)?;
            rebound.push(f);
        }
        rebound.sort();
        Ok(rebound)
    }

    /// Replaces the function behind `symbol`'s canonical table slot: every function pointer to
    /// it and every call bound through a thunk now reaches `new`.
    ///
    /// # Errors
    /// [`LinkError::NoSuchSymbol`] if the symbol has no slot; [`LinkError::TypeMismatch`] if
    /// `new` has another type.
    pub fn rebind(&mut self, symbol: &str, new: Func) -> Result<(), LinkError> {
        let slot = super::libdl::func_slot(self.store.as_context_mut(), symbol, None)?;
        let table = self.table();
        let old = table.get(&mut self.store, u64::from(slot));
        if let Some(Ref::Func(Some(old))) = old {
            let (a, b) = (old.ty(&self.store), new.ty(&self.store));
            if !FuncType::eq(&a, &b) {
                return Err(LinkError::TypeMismatch {
                    symbol: symbol.to_string(),
                    library: "rebind".to_string(),
                    expected: format!("{a}"),
                    definer: "new definition".to_string(),
                    actual: format!("{b}"),
                });
            }
        }
        table
            .set(&mut self.store, u64::from(slot), Ref::Func(Some(new)))
            .map_err(|e| LinkError::runtime(symbol, "rebind", e))
    }

    /// Reserves `size` bytes of linear memory owned by the linker (e.g. to pass a string to a
    /// function under test).
    ///
    /// # Errors
    /// [`LinkError::Exhausted`] when memory cannot grow.
    pub fn alloc(&mut self, size: u32, align: u32) -> Result<u32, LinkError> {
        alloc_region(
            self.store.as_context_mut(),
            "host",
            u64::from(size),
            u64::from(align.max(1)),
        )
    }

    /// Reads `len` bytes at `addr`.
    ///
    /// # Errors
    /// [`LinkError::Runtime`] if the range is out of bounds.
    pub fn read(&self, addr: u32, len: usize) -> Result<Vec<u8>, LinkError> {
        let mut buf = vec![0; len];
        self.memory()
            .read(&self.store, addr as usize, &mut buf)
            .map_err(|e| LinkError::runtime("memory", "read", e.into()))?;
        Ok(buf)
    }

    /// Writes `bytes` at `addr`.
    ///
    /// # Errors
    /// [`LinkError::Runtime`] if the range is out of bounds.
    pub fn write(&mut self, addr: u32, bytes: &[u8]) -> Result<(), LinkError> {
        let m = self.memory();
        m.write(&mut self.store, addr as usize, bytes)
            .map_err(|e| LinkError::runtime("memory", "write", e.into()))
    }

    /// Reads a NUL-terminated string at `addr` (at most `max` bytes).
    ///
    /// # Errors
    /// As [`read`](Self::read).
    pub fn read_cstr(&self, addr: u32, max: usize) -> Result<String, LinkError> {
        super::libdl::read_cstr(self.memory().data(&self.store), addr, max).ok_or_else(|| {
            LinkError::runtime(
                "memory",
                "read",
                wasmtime::format_err!("string at {addr:#x} out of bounds"),
            )
        })
    }

    /// Symbols that no loaded library (nor the linker) defines, per library:
    /// `(library, symbol, weak)`, and imports from modules that are not libraries
    /// (`module.field`). What `ldd -r` prints.
    pub fn unresolved(&self) -> Vec<(String, String, bool)> {
        let dl = &self.store.data().dl;
        let mut out = Vec::new();
        for (id, l) in dl.libs.iter().enumerate() {
            let Some(l) = l else { continue };
            for i in &l.info.imports {
                if let ImportClass::Module(what) = &i.class {
                    out.push((l.name.clone(), what.clone(), false));
                    continue;
                }
                let Some(sym) = i.class.symbol() else {
                    continue;
                };
                let defined = dl.lookup(sym, Some(id)).is_some()
                    || super::libdl::is_host_symbol(sym)
                    || linker_symbol(&dl.bounds, sym).is_some();
                if !defined {
                    out.push((l.name.clone(), sym.to_string(), i.is_weak()));
                }
            }
        }
        out
    }
}
