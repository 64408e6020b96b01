//! Generates the canonical-ABI glue between core modules' lowered `wasi:*@0.2.x` imports and
//! wasmtime-wasi's WASI 0.2 host traits, from the vendored WIT in `wit/`.
//!
//! For every function of every interface the `core-imports` world imports (and for every
//! resource's `[resource-drop]`), it emits one `Linker::func_wrap` whose closure
//! 1. lifts the flat core parameters into the Rust values wasmtime-wasi's bindings expect
//!    (strings, lists and records read from guest memory, handles looked up in the
//!    process's handle table, discriminants checked),
//! 2. calls the host trait method (`bindings::sync` for the interfaces wasmtime-wasi
//!    implements asynchronously, the plain bindings elsewhere), converting trappable errors
//!    to their WIT error codes,
//! 3. lowers the result: one flat value returned, or stored at the caller's return pointer,
//!    with strings and lists allocated through the caller's `cabi_realloc`.
//!
//! Sizes, alignments, field and payload offsets and the flattening of every type come from
//! wit-parser (`SizeAlign`, `Resolve::wasm_signature`, `Resolve::push_flat`); nothing about
//! a WASI type is written by hand. The runtime half (bounds-checked loads and stores, the
//! handle table, `cabi_realloc`) is `src/rt.rs`.

use std::fmt::Write as _;
use std::path::PathBuf;

use heck::{ToShoutySnakeCase, ToSnakeCase, ToUpperCamelCase};
use wit_parser::abi::{AbiVariant, FlatTypes, WasmType};
use wit_parser::{
    Function, FunctionKind, Handle, InterfaceId, Resolve, SizeAlign, Type, TypeDefKind, TypeId,
    TypeOwner, WorldItem,
};

/// The flat core types: pointers and lengths are `i32` in a 32-bit memory.
#[derive(Clone, Copy, PartialEq, Debug)]
enum W {
    I32,
    I64,
    F32,
    F64,
}

impl W {
    fn of(t: WasmType) -> W {
        match t {
            WasmType::I32 | WasmType::Pointer | WasmType::Length => W::I32,
            WasmType::I64 | WasmType::PointerOrI64 => W::I64,
            WasmType::F32 => W::F32,
            WasmType::F64 => W::F64,
        }
    }
    fn rust(self) -> &'static str {
        match self {
            W::I32 => "i32",
            W::I64 => "i64",
            W::F32 => "f32",
            W::F64 => "f64",
        }
    }
}

/// Interfaces whose functions are called through wasmtime-wasi's `bindings::sync` (the ones it
/// implements asynchronously); the others' plain bindings are synchronous already.
const SYNC_INTERFACES: &[&str] = &[
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:filesystem/types",
    "wasi:sockets/tcp",
    "wasi:sockets/udp",
    "wasi:sockets/udp-create-socket",
];

/// Interfaces the `bindings::sync` generation maps onto the plain bindings (`with:`), so their
/// types are the plain ones even in a synchronous context.
fn mapped_in_sync(iface: &str) -> bool {
    iface.starts_with("wasi:clocks/")
        || iface.starts_with("wasi:random/")
        || iface.starts_with("wasi:cli/")
        || matches!(
            iface,
            "wasi:filesystem/preopens" | "wasi:sockets/network" | "wasi:io/error"
        )
}

/// Error types that wasmtime-wasi's bindings make trappable (`trappable_error_type`).
const TRAPPABLE: &[&str] = &[
    "wasi:io/streams.stream-error",
    "wasi:filesystem/types.error-code",
    "wasi:sockets/network.error-code",
];

fn ident(name: &str) -> String {
    let s = name.to_snake_case();
    match s.as_str() {
        "as" | "break" | "const" | "continue" | "crate" | "else" | "enum" | "extern" | "false"
        | "fn" | "for" | "if" | "impl" | "in" | "let" | "loop" | "match" | "mod" | "move"
        | "mut" | "pub" | "ref" | "return" | "self" | "static" | "struct" | "super" | "trait"
        | "true" | "type" | "unsafe" | "use" | "where" | "while" | "async" | "await" | "dyn"
        | "abstract" | "become" | "box" | "do" | "final" | "macro" | "override" | "priv"
        | "typeof" | "unsized" | "virtual" | "yield" | "try" | "gen" => format!("{s}_"),
        _ => s,
    }
}

fn camel(name: &str) -> String {
    match name {
        "host" => "Host_".into(),
        s => s.to_upper_camel_case(),
    }
}

struct Gen<'a> {
    r: &'a Resolve,
    sizes: SizeAlign,
    out: String,
    fresh: usize,
    /// Functions generated, as (module without version, field): listed in `FUNCTIONS`.
    names: Vec<(String, String)>,
}

impl<'a> Gen<'a> {
    fn var(&mut self, stem: &str) -> String {
        self.fresh += 1;
        format!("{stem}{}", self.fresh)
    }

    /// `wasi:io/streams` (no version).
    fn iface_name(&self, id: InterfaceId) -> String {
        let i = &self.r.interfaces[id];
        let p = &self.r.packages[i.package.expect("interface in a package")];
        format!(
            "{}:{}/{}",
            p.name.namespace,
            p.name.name,
            i.name.as_deref().expect("named interface")
        )
    }

    fn iface_path(&self, id: InterfaceId, sync: bool) -> String {
        let i = &self.r.interfaces[id];
        let p = &self.r.packages[i.package.expect("package")];
        let base = if sync && !mapped_in_sync(&self.iface_name(id)) {
            "wasmtime_wasi::p2::bindings::sync"
        } else {
            "wasmtime_wasi::p2::bindings"
        };
        format!(
            "{base}::{}::{}",
            ident(&p.name.name),
            ident(i.name.as_deref().expect("named"))
        )
    }

    fn dealias(&self, ty: &Type) -> Type {
        let mut t = *ty;
        while let Type::Id(id) = t {
            match &self.r.types[id].kind {
                TypeDefKind::Type(inner) => t = *inner,
                _ => break,
            }
        }
        t
    }

    fn dealias_id(&self, id: TypeId) -> TypeId {
        match self.dealias(&Type::Id(id)) {
            Type::Id(id) => id,
            _ => unreachable!("a type id dealiases to a type id"),
        }
    }

    /// `wasi:io/streams.stream-error`.
    fn qualified(&self, id: TypeId) -> String {
        let t = &self.r.types[id];
        match t.owner {
            TypeOwner::Interface(i) => format!(
                "{}.{}",
                self.iface_name(i),
                t.name.as_deref().expect("named type")
            ),
            _ => panic!("type {:?} not owned by an interface", t.name),
        }
    }

    fn type_path(&self, id: TypeId, sync: bool) -> String {
        let id = self.dealias_id(id);
        let t = &self.r.types[id];
        match t.owner {
            TypeOwner::Interface(i) => format!(
                "{}::{}",
                self.iface_path(i, sync),
                camel(t.name.as_deref().expect("named type"))
            ),
            _ => panic!("type {:?} not owned by an interface", t.name),
        }
    }

    fn flat(&self, ty: &Type) -> Vec<W> {
        let mut storage = [WasmType::I32; 64];
        let mut f = FlatTypes::new(&mut storage);
        assert!(self.r.push_flat(ty, &mut f), "type too wide to flatten");
        f.to_vec().into_iter().map(W::of).collect()
    }

    fn size(&self, ty: &Type) -> u32 {
        self.sizes.size(ty).size_wasm32() as u32
    }

    fn align(&self, ty: &Type) -> u32 {
        self.sizes.align(ty).align_wasm32() as u32
    }

    /// The resource a handle type refers to, as its tag in the handle table.
    fn handle_tag(&self, h: &Handle) -> String {
        let (Handle::Own(id) | Handle::Borrow(id)) = h;
        self.qualified(self.dealias_id(*id))
    }

    fn tag_width(cases: usize) -> u32 {
        if cases <= 1 << 8 {
            1
        } else if cases <= 1 << 16 {
            2
        } else {
            4
        }
    }

    // ---- lifting from flat values ----------------------------------------------------

    /// A Rust expression of the slot `(expr, slot type)` as the flat type `want`, undoing the
    /// variant join (`i32` carrying an `f32`, `i64` carrying an `i32`, ...).
    fn cast(expr: &str, have: W, want: W) -> String {
        match (have, want) {
            (a, b) if a == b => expr.to_string(),
            (W::I64, W::I32) => format!("({expr} as i32)"),
            (W::I32, W::F32) => format!("f32::from_bits({expr} as u32)"),
            (W::I64, W::F32) => format!("f32::from_bits({expr} as u32)"),
            (W::I64, W::F64) => format!("f64::from_bits({expr} as u64)"),
            (a, b) => panic!("no cast from {a:?} to {b:?}"),
        }
    }

    fn lift_flat(&mut self, ty: &Type, vals: &[(String, W)], sync: bool, what: &str) -> String {
        let want = self.flat(ty);
        assert_eq!(want.len(), vals.len(), "flat arity of {what}");
        let v = |i: usize| Self::cast(&vals[i].0, vals[i].1, want[i]);
        match self.dealias(ty) {
            Type::Bool => format!("({} != 0)", v(0)),
            Type::U8 => format!("({} as u8)", v(0)),
            Type::S8 => format!("({} as i8)", v(0)),
            Type::U16 => format!("({} as u16)", v(0)),
            Type::S16 => format!("({} as i16)", v(0)),
            Type::U32 => format!("({} as u32)", v(0)),
            Type::S32 => v(0),
            Type::U64 => format!("({} as u64)", v(0)),
            Type::S64 => v(0),
            Type::F32 | Type::F64 => v(0),
            Type::Char => format!("cx.char({} as u32, {what:?})?", v(0)),
            Type::String => format!("cx.string({} as u32, {} as u32, {what:?})?", v(0), v(1)),
            Type::ErrorContext => panic!("error-context in WASI 0.2"),
            Type::Id(id) => {
                let kind = self.r.types[id].kind.clone();
                match kind {
                    TypeDefKind::List(elem) => {
                        let (p, l) = (format!("({} as u32)", v(0)), format!("({} as u32)", v(1)));
                        self.lift_list(&elem, &p, &l, sync, what)
                    }
                    TypeDefKind::Handle(h) => self.lift_handle(&h, &v(0), what),
                    TypeDefKind::Record(rec) => {
                        let mut s = format!("{} {{ ", self.type_path(id, sync));
                        let mut at = 0;
                        for f in &rec.fields {
                            let n = self.flat(&f.ty).len();
                            let e = self.lift_flat(&f.ty, &vals[at..at + n], sync, what);
                            write!(s, "{}: {e}, ", ident(&f.name)).unwrap();
                            at += n;
                        }
                        s + "}"
                    }
                    TypeDefKind::Tuple(t) => {
                        let mut s = "(".to_string();
                        let mut at = 0;
                        for ty in &t.types {
                            let n = self.flat(ty).len();
                            let e = self.lift_flat(ty, &vals[at..at + n], sync, what);
                            write!(s, "{e}, ").unwrap();
                            at += n;
                        }
                        s + ")"
                    }
                    TypeDefKind::Flags(fl) => {
                        assert!(fl.flags.len() <= 32, "flags wider than 32 bits");
                        let path = self.type_path(id, sync);
                        let b = self.var("bits");
                        let mut s = format!(
                            "{{ let {b} = {} as u32; let mut f = {path}::empty(); ",
                            v(0)
                        );
                        for (i, flag) in fl.flags.iter().enumerate() {
                            write!(
                                s,
                                "if {b} & (1 << {i}) != 0 {{ f |= {path}::{}; }} ",
                                flag.name.to_shouty_snake_case()
                            )
                            .unwrap();
                        }
                        s + "f }"
                    }
                    TypeDefKind::Enum(e) => {
                        let path = self.type_path(id, sync);
                        let mut s = format!("match {} as u32 {{ ", v(0));
                        for (i, c) in e.cases.iter().enumerate() {
                            write!(s, "{i} => {path}::{}, ", camel(&c.name)).unwrap();
                        }
                        s + &format!("d => return Err(cx.bad_discriminant({what:?}, d)) }}")
                    }
                    TypeDefKind::Option(t) => {
                        let payload = &vals[1..1 + self.flat(&t).len()];
                        let some = self.lift_flat(&t, payload, sync, what);
                        format!(
                            "match {} as u32 {{ 0 => None, 1 => Some({some}), d => return Err(cx.bad_discriminant({what:?}, d)) }}",
                            v(0)
                        )
                    }
                    TypeDefKind::Result(res) => {
                        let arm = |g: &mut Self, t: &Option<Type>| match t {
                            Some(t) => {
                                let n = g.flat(t).len();
                                g.lift_flat(t, &vals[1..1 + n], sync, what)
                            }
                            None => "()".to_string(),
                        };
                        let ok = arm(self, &res.ok);
                        let err = arm(self, &res.err);
                        format!(
                            "match {} as u32 {{ 0 => Ok({ok}), 1 => Err({err}), d => return Err(cx.bad_discriminant({what:?}, d)) }}",
                            v(0)
                        )
                    }
                    TypeDefKind::Variant(var) => {
                        let path = self.type_path(id, sync);
                        let mut s = format!("match {} as u32 {{ ", v(0));
                        for (i, c) in var.cases.iter().enumerate() {
                            match &c.ty {
                                Some(t) => {
                                    let n = self.flat(t).len();
                                    let e = self.lift_flat(t, &vals[1..1 + n], sync, what);
                                    write!(s, "{i} => {path}::{}({e}), ", camel(&c.name)).unwrap();
                                }
                                None => write!(s, "{i} => {path}::{}, ", camel(&c.name)).unwrap(),
                            }
                        }
                        s + &format!("d => return Err(cx.bad_discriminant({what:?}, d)) }}")
                    }
                    k => panic!("cannot lift {} in {what}", k.as_str()),
                }
            }
        }
    }

    fn lift_handle(&self, h: &Handle, v: &str, what: &str) -> String {
        let tag = self.handle_tag(h);
        match h {
            Handle::Own(_) => format!("cx.take_own({v} as u32, {tag:?}, {what:?})?"),
            Handle::Borrow(_) => format!("cx.borrow({v} as u32, {tag:?}, {what:?})?"),
        }
    }

    /// A list whose `(ptr, len)` are the u32 expressions `p`, `l`.
    fn lift_list(&mut self, elem: &Type, p: &str, l: &str, sync: bool, what: &str) -> String {
        if matches!(self.dealias(elem), Type::U8) {
            return format!("cx.list_u8({p}, {l}, {what:?})?");
        }
        let (size, align) = (self.size(elem), self.align(elem));
        let (ptr, len, out, i) = (
            self.var("ptr"),
            self.var("len"),
            self.var("list"),
            self.var("i"),
        );
        let at = self.var("at");
        let e = self.lift_mem(elem, &at, 0, sync, what);
        format!(
            "{{ let ({ptr}, {len}) = ({p}, {l}); cx.check_list({ptr}, {len}, {size}, {align}, {what:?})?; \
             let mut {out} = Vec::with_capacity({len} as usize); \
             for {i} in 0..{len} {{ let {at} = {ptr} + {i} * {size}; {out}.push({e}); }} {out} }}"
        )
    }

    // ---- lifting from memory -----------------------------------------------------------

    fn lift_mem(&mut self, ty: &Type, base: &str, off: u32, sync: bool, what: &str) -> String {
        let load = |w: u32| format!("cx.load_u{}({base}, {off}, {what:?})?", w * 8);
        match self.dealias(ty) {
            Type::Bool => format!("({} != 0)", load(1)),
            Type::U8 => load(1),
            Type::S8 => format!("({} as i8)", load(1)),
            Type::U16 => load(2),
            Type::S16 => format!("({} as i16)", load(2)),
            Type::U32 => load(4),
            Type::S32 => format!("({} as i32)", load(4)),
            Type::U64 => load(8),
            Type::S64 => format!("({} as i64)", load(8)),
            Type::F32 => format!("f32::from_bits({})", load(4)),
            Type::F64 => format!("f64::from_bits({})", load(8)),
            Type::Char => format!("{{ let c = {}; cx.char(c, {what:?})? }}", load(4)),
            Type::String => {
                let (p, l) = (self.var("p"), self.var("l"));
                format!(
                    "{{ let {p} = {}; let {l} = cx.load_u32({base}, {}, {what:?})?; cx.string({p}, {l}, {what:?})? }}",
                    load(4),
                    off + 4
                )
            }
            Type::ErrorContext => panic!("error-context in WASI 0.2"),
            Type::Id(id) => {
                let kind = self.r.types[id].kind.clone();
                match kind {
                    TypeDefKind::List(elem) => {
                        let (p, l) = (self.var("p"), self.var("l"));
                        let inner = self.lift_list(&elem, &p, &l, sync, what);
                        format!(
                            "{{ let {p} = {}; let {l} = cx.load_u32({base}, {}, {what:?})?; {inner} }}",
                            load(4),
                            off + 4
                        )
                    }
                    TypeDefKind::Handle(h) => {
                        let hv = self.var("h");
                        let e = self.lift_handle(&h, &hv, what);
                        format!("{{ let {hv} = {}; {e} }}", load(4))
                    }
                    TypeDefKind::Record(rec) => {
                        let offs: Vec<u32> = self
                            .sizes
                            .field_offsets(rec.fields.iter().map(|f| &f.ty))
                            .iter()
                            .map(|(o, _)| o.size_wasm32() as u32)
                            .collect();
                        let mut s = format!("{} {{ ", self.type_path(id, sync));
                        for (f, o) in rec.fields.iter().zip(offs) {
                            let e = self.lift_mem(&f.ty, base, off + o, sync, what);
                            write!(s, "{}: {e}, ", ident(&f.name)).unwrap();
                        }
                        s + "}"
                    }
                    TypeDefKind::Tuple(t) => {
                        let offs: Vec<u32> = self
                            .sizes
                            .field_offsets(t.types.iter())
                            .iter()
                            .map(|(o, _)| o.size_wasm32() as u32)
                            .collect();
                        let mut s = "(".to_string();
                        for (ty, o) in t.types.iter().zip(offs) {
                            let e = self.lift_mem(ty, base, off + o, sync, what);
                            write!(s, "{e}, ").unwrap();
                        }
                        s + ")"
                    }
                    TypeDefKind::Flags(fl) => {
                        let w = self.size(&Type::Id(id));
                        let vals = [(format!("({} as i32)", load(w)), W::I32)];
                        assert!(fl.flags.len() <= 32, "flags wider than 32 bits");
                        self.lift_flat(&Type::Id(id), &vals, sync, what)
                    }
                    TypeDefKind::Enum(e) => {
                        let w = Self::tag_width(e.cases.len());
                        let vals = [(format!("({} as i32)", load(w)), W::I32)];
                        self.lift_flat(&Type::Id(id), &vals, sync, what)
                    }
                    TypeDefKind::Option(t) => {
                        let payload = self.payload_off(&[None, Some(t)]);
                        let some = self.lift_mem(&t, base, off + payload, sync, what);
                        format!(
                            "match {} {{ 0 => None, 1 => Some({some}), d => return Err(cx.bad_discriminant({what:?}, d as u32)) }}",
                            load(1)
                        )
                    }
                    TypeDefKind::Result(res) => {
                        let payload = self.payload_off(&[res.ok, res.err]);
                        let arm = |g: &mut Self, t: &Option<Type>| match t {
                            Some(t) => g.lift_mem(t, base, off + payload, sync, what),
                            None => "()".to_string(),
                        };
                        let ok = arm(self, &res.ok);
                        let err = arm(self, &res.err);
                        format!(
                            "match {} {{ 0 => Ok({ok}), 1 => Err({err}), d => return Err(cx.bad_discriminant({what:?}, d as u32)) }}",
                            load(1)
                        )
                    }
                    TypeDefKind::Variant(var) => {
                        let path = self.type_path(id, sync);
                        let tys: Vec<Option<Type>> = var.cases.iter().map(|c| c.ty).collect();
                        let payload = self.payload_off(&tys);
                        let w = Self::tag_width(var.cases.len());
                        let mut s = format!("match {} as u32 {{ ", load(w));
                        for (i, c) in var.cases.iter().enumerate() {
                            match &c.ty {
                                Some(t) => {
                                    let e = self.lift_mem(t, base, off + payload, sync, what);
                                    write!(s, "{i} => {path}::{}({e}), ", camel(&c.name)).unwrap();
                                }
                                None => write!(s, "{i} => {path}::{}, ", camel(&c.name)).unwrap(),
                            }
                        }
                        s + &format!("d => return Err(cx.bad_discriminant({what:?}, d)) }}")
                    }
                    k => panic!("cannot lift {} from memory in {what}", k.as_str()),
                }
            }
        }
    }

    fn payload_off(&self, cases: &[Option<Type>]) -> u32 {
        let tag = match cases.len() {
            n if n <= 1 << 8 => wit_parser::Int::U8,
            n if n <= 1 << 16 => wit_parser::Int::U16,
            _ => wit_parser::Int::U32,
        };
        self.sizes
            .payload_offset(tag, cases.iter().map(|c| c.as_ref()))
            .size_wasm32() as u32
    }

    // ---- lowering into memory -----------------------------------------------------------

    /// Statements that store the Rust value `val` (an expression, evaluated once) at
    /// `base + off` in guest memory.
    fn store(
        &mut self,
        ty: &Type,
        val: &str,
        base: &str,
        off: u32,
        sync: bool,
        what: &str,
    ) -> String {
        let st = |w: u32, v: String| format!("cx.store_u{}({base}, {off}, {v}, {what:?})?;", w * 8);
        match self.dealias(ty) {
            Type::Bool => st(1, format!("{val} as u8")),
            Type::U8 => st(1, val.to_string()),
            Type::S8 => st(1, format!("{val} as u8")),
            Type::U16 => st(2, val.to_string()),
            Type::S16 => st(2, format!("{val} as u16")),
            Type::U32 => st(4, val.to_string()),
            Type::S32 => st(4, format!("{val} as u32")),
            Type::U64 => st(8, val.to_string()),
            Type::S64 => st(8, format!("{val} as u64")),
            Type::F32 => st(4, format!("{val}.to_bits()")),
            Type::F64 => st(8, format!("{val}.to_bits()")),
            Type::Char => st(4, format!("{val} as u32")),
            Type::String => {
                let (s, p) = (self.var("s"), self.var("p"));
                format!(
                    "{{ let {s}: String = {val}; let {p} = cx.alloc_bytes(1, {s}.as_bytes(), {what:?})?; \
                     cx.store_u32({base}, {off}, {p}, {what:?})?; cx.store_u32({base}, {}, cx.len32({s}.len(), {what:?})?, {what:?})?; }}",
                    off + 4
                )
            }
            Type::ErrorContext => panic!("error-context in WASI 0.2"),
            Type::Id(id) => {
                let kind = self.r.types[id].kind.clone();
                match kind {
                    TypeDefKind::List(elem) => {
                        let (v, p, n) = (self.var("v"), self.var("p"), self.var("n"));
                        if matches!(self.dealias(&elem), Type::U8) {
                            return format!(
                                "{{ let {v}: Vec<u8> = {val}; let {p} = cx.alloc_bytes(1, &{v}, {what:?})?; \
                                 cx.store_u32({base}, {off}, {p}, {what:?})?; cx.store_u32({base}, {}, cx.len32({v}.len(), {what:?})?, {what:?})?; }}",
                                off + 4
                            );
                        }
                        let (size, align) = (self.size(&elem), self.align(&elem));
                        let (i, e, at) = (self.var("i"), self.var("e"), self.var("at"));
                        let body = self.store(&elem, &e, &at, 0, sync, what);
                        format!(
                            "{{ let {v} = {val}; let {n} = cx.len32({v}.len(), {what:?})?; \
                             let {p} = cx.alloc_list({align}, {n}, {size}, {what:?})?; \
                             for ({i}, {e}) in {v}.into_iter().enumerate() {{ let {at} = {p} + ({i} as u32) * {size}; {body} }} \
                             cx.store_u32({base}, {off}, {p}, {what:?})?; cx.store_u32({base}, {}, {n}, {what:?})?; }}",
                            off + 4
                        )
                    }
                    TypeDefKind::Handle(Handle::Own(_)) => {
                        let tag = self.handle_tag_of(id).expect("handle");
                        let h = self.var("h");
                        format!(
                            "{{ let {h} = cx.new_own({val}, {tag:?}, {what:?})?; cx.store_u32({base}, {off}, {h}, {what:?})?; }}"
                        )
                    }
                    TypeDefKind::Handle(Handle::Borrow(_)) => {
                        panic!("a borrowed handle in a result ({what})")
                    }
                    TypeDefKind::Record(rec) => {
                        let r = self.var("r");
                        let offs: Vec<u32> = self
                            .sizes
                            .field_offsets(rec.fields.iter().map(|f| &f.ty))
                            .iter()
                            .map(|(o, _)| o.size_wasm32() as u32)
                            .collect();
                        let mut s = format!("{{ let {r} = {val}; ");
                        for (f, o) in rec.fields.iter().zip(offs) {
                            let e = self.store(
                                &f.ty,
                                &format!("{r}.{}", ident(&f.name)),
                                base,
                                off + o,
                                sync,
                                what,
                            );
                            s += &e;
                        }
                        s + " }"
                    }
                    TypeDefKind::Tuple(t) => {
                        let r = self.var("r");
                        let offs: Vec<u32> = self
                            .sizes
                            .field_offsets(t.types.iter())
                            .iter()
                            .map(|(o, _)| o.size_wasm32() as u32)
                            .collect();
                        let mut s = format!("{{ let {r} = {val}; ");
                        for (k, (ty, o)) in t.types.iter().zip(offs).enumerate() {
                            let e = self.store(ty, &format!("{r}.{k}"), base, off + o, sync, what);
                            s += &e;
                        }
                        s + " }"
                    }
                    TypeDefKind::Flags(_) => {
                        let w = self.size(&Type::Id(id));
                        let bits = self.lower_flat1(&Type::Id(id), val, sync, what);
                        let ty = ["", "u8", "u16", "", "u32"][w as usize];
                        st(w, format!("({bits} as {ty})"))
                    }
                    TypeDefKind::Enum(e) => {
                        let w = Self::tag_width(e.cases.len());
                        let d = self.lower_flat1(&Type::Id(id), val, sync, what);
                        let ty = ["", "u8", "u16", "", "u32"][w as usize];
                        st(w, format!("({d} as {ty})"))
                    }
                    TypeDefKind::Option(t) => {
                        let payload = self.payload_off(&[None, Some(t)]);
                        let x = self.var("x");
                        let some = self.store(&t, &x, base, off + payload, sync, what);
                        format!(
                            "match {val} {{ None => {{ cx.store_u8({base}, {off}, 0, {what:?})?; }} Some({x}) => {{ cx.store_u8({base}, {off}, 1, {what:?})?; {some} }} }}"
                        )
                    }
                    TypeDefKind::Result(res) => {
                        let payload = self.payload_off(&[res.ok, res.err]);
                        let x = self.var("x");
                        let arm = |g: &mut Self, t: &Option<Type>| match t {
                            Some(t) => g.store(t, &x, base, off + payload, sync, what),
                            None => String::new(),
                        };
                        let ok = arm(self, &res.ok);
                        let err = arm(self, &res.err);
                        let okp = if res.ok.is_some() {
                            x.clone()
                        } else {
                            "_".into()
                        };
                        let errp = if res.err.is_some() {
                            x.clone()
                        } else {
                            "_".into()
                        };
                        format!(
                            "match {val} {{ Ok({okp}) => {{ cx.store_u8({base}, {off}, 0, {what:?})?; {ok} }} Err({errp}) => {{ cx.store_u8({base}, {off}, 1, {what:?})?; {err} }} }}"
                        )
                    }
                    TypeDefKind::Variant(var) => {
                        let path = self.type_path(id, sync);
                        let tys: Vec<Option<Type>> = var.cases.iter().map(|c| c.ty).collect();
                        let payload = self.payload_off(&tys);
                        let w = Self::tag_width(var.cases.len());
                        let ty = ["", "u8", "u16", "", "u32"][w as usize];
                        let x = self.var("x");
                        let mut s = format!("match {val} {{ ");
                        for (i, c) in var.cases.iter().enumerate() {
                            let tag = format!(
                                "cx.store_u{}({base}, {off}, {i} as {ty}, {what:?})?;",
                                w * 8
                            );
                            match &c.ty {
                                Some(t) => {
                                    let e = self.store(t, &x, base, off + payload, sync, what);
                                    write!(
                                        s,
                                        "{path}::{}({x}) => {{ {tag} {e} }} ",
                                        camel(&c.name)
                                    )
                                    .unwrap();
                                }
                                None => {
                                    write!(s, "{path}::{} => {{ {tag} }} ", camel(&c.name)).unwrap()
                                }
                            }
                        }
                        s + "}"
                    }
                    k => panic!("cannot store {} ({what})", k.as_str()),
                }
            }
        }
    }

    /// The tag of the resource an `own`/`borrow` type id (possibly an alias) refers to.
    fn handle_tag_of(&self, id: TypeId) -> Option<String> {
        match &self.r.types[self.dealias_id(id)].kind {
            TypeDefKind::Handle(h) => Some(self.handle_tag(h)),
            _ => None,
        }
    }

    /// An expression of the single flat value of `ty` (a type that flattens to one value).
    fn lower_flat1(&mut self, ty: &Type, val: &str, sync: bool, what: &str) -> String {
        let flat = self.flat(ty);
        assert_eq!(flat.len(), 1, "lower_flat1 on a wide type ({what})");
        match self.dealias(ty) {
            Type::Bool => format!("({val} as i32)"),
            Type::U8 | Type::S8 | Type::U16 | Type::S16 | Type::U32 | Type::S32 | Type::Char => {
                format!("({val} as i32)")
            }
            Type::U64 | Type::S64 => format!("({val} as i64)"),
            Type::F32 | Type::F64 => val.to_string(),
            Type::Id(id) => {
                let kind = self.r.types[id].kind.clone();
                match kind {
                    TypeDefKind::Handle(Handle::Own(_)) => {
                        let tag = self.handle_tag_of(id).expect("handle");
                        format!("(cx.new_own({val}, {tag:?}, {what:?})? as i32)")
                    }
                    TypeDefKind::Enum(e) => {
                        let path = self.type_path(id, sync);
                        let mut s = format!("(match {val} {{ ");
                        for (i, c) in e.cases.iter().enumerate() {
                            write!(s, "{path}::{} => {i}i32, ", camel(&c.name)).unwrap();
                        }
                        s + "})"
                    }
                    TypeDefKind::Flags(fl) => {
                        let path = self.type_path(id, sync);
                        let (f, b) = (self.var("f"), self.var("b"));
                        let mut s = format!("{{ let {f} = {val}; let mut {b} = 0u32; ");
                        for (i, flag) in fl.flags.iter().enumerate() {
                            write!(
                                s,
                                "if {f}.contains({path}::{}) {{ {b} |= 1 << {i}; }} ",
                                flag.name.to_shouty_snake_case()
                            )
                            .unwrap();
                        }
                        s + &format!("{b} as i32 }}")
                    }
                    TypeDefKind::Record(rec) if rec.fields.len() == 1 => {
                        let inner = format!("{val}.{}", ident(&rec.fields[0].name));
                        self.lower_flat1(&rec.fields[0].ty, &inner, sync, what)
                    }
                    TypeDefKind::Tuple(t) if t.types.len() == 1 => {
                        self.lower_flat1(&t.types[0], &format!("{val}.0"), sync, what)
                    }
                    k => panic!("cannot lower {} to one flat value ({what})", k.as_str()),
                }
            }
            _ => panic!("cannot lower to one flat value ({what})"),
        }
    }

    // ---- functions ---------------------------------------------------------------------

    /// The host view (`self` type of the host traits) for an interface, and the expression
    /// that makes it from the store data (`cx.data()`).
    fn view(&self, iface: &str) -> (&'static str, &'static str) {
        let pkg = iface.split('/').next().unwrap();
        match pkg {
            "wasi:cli" => (
                "wasmtime_wasi::cli::WasiCliCtxView<'_>",
                "&mut wasmtime_wasi::cli::WasiCliView::cli(cx.data())",
            ),
            "wasi:clocks" => (
                "wasmtime_wasi::clocks::WasiClocksCtxView<'_>",
                "&mut wasmtime_wasi::clocks::WasiClocksView::clocks(cx.data())",
            ),
            "wasi:filesystem" => (
                "wasmtime_wasi::filesystem::WasiFilesystemCtxView<'_>",
                "&mut wasmtime_wasi::filesystem::WasiFilesystemView::filesystem(cx.data())",
            ),
            "wasi:sockets" => (
                "wasmtime_wasi::sockets::WasiSocketsCtxView<'_>",
                "&mut wasmtime_wasi::sockets::WasiSocketsView::sockets(cx.data())",
            ),
            "wasi:random" => (
                "wasmtime_wasi::random::WasiRandomCtx",
                "&mut *wasmtime_wasi::random::WasiRandomView::random(cx.data())",
            ),
            "wasi:io" => (
                "wasmtime_wasi::ResourceTable",
                "wasmtime_wasi::WasiView::ctx(cx.data()).table",
            ),
            p => panic!("no host view for package {p}"),
        }
    }

    fn trappable_error(&self, func: &Function) -> Option<TypeId> {
        let Type::Id(id) = self.dealias(func.result.as_ref()?) else {
            return None;
        };
        let TypeDefKind::Result(res) = &self.r.types[id].kind else {
            return None;
        };
        let Type::Id(err) = self.dealias(res.err.as_ref()?) else {
            return None;
        };
        TRAPPABLE
            .contains(&self.qualified(err).as_str())
            .then_some(err)
    }

    fn function(&mut self, iface: InterfaceId, func: &Function, version: &str) {
        let name = self.iface_name(iface);
        let sync = SYNC_INTERFACES.contains(&name.as_str());
        let what_fn = format!("{name}#{}", func.name);
        let sig = self.r.wasm_signature(AbiVariant::GuestImport, func);
        assert!(
            !sig.indirect_params,
            "{what_fn}: more than 16 flat parameters"
        );
        let params: Vec<W> = sig.params.iter().map(|t| W::of(*t)).collect();
        let results: Vec<W> = sig.results.iter().map(|t| W::of(*t)).collect();
        let mut s = String::new();
        write!(
            s,
            "    linker.func_wrap({:?}, {:?}, |caller: wasmtime::Caller<'_, T>",
            format!("{name}@{version}"),
            func.name
        )
        .unwrap();
        for (i, w) in params.iter().enumerate() {
            write!(s, ", p{i}: {}", w.rust()).unwrap();
        }
        let ret = match results.as_slice() {
            [] => "()".to_string(),
            [w] => w.rust().to_string(),
            _ => panic!("{what_fn}: several flat results"),
        };
        writeln!(s, "| -> wasmtime::Result<{ret}> {{").unwrap();
        writeln!(
            s,
            "        let mut cx = crate::rt::Cx::new(caller, {what_fn:?});"
        )
        .unwrap();
        // Parameters.
        let mut at = 0;
        let mut args = Vec::new();
        for (k, p) in func.params.iter().enumerate() {
            let n = self.flat(&p.ty).len();
            let vals: Vec<(String, W)> =
                (at..at + n).map(|i| (format!("p{i}"), params[i])).collect();
            let what = format!("argument {}", p.name);
            let e = self.lift_flat(&p.ty, &vals, sync, &what);
            writeln!(s, "        let a{k} = {e};").unwrap();
            args.push(format!("a{k}"));
            at += n;
        }
        // The call.
        let (trait_name, method) = match &func.kind {
            FunctionKind::Freestanding => ("Host".to_string(), ident(&func.name)),
            FunctionKind::Method(res) | FunctionKind::Static(res) => {
                let rname = self.r.types[*res].name.clone().expect("resource name");
                let m = func.name.split_once('.').expect("method name").1;
                (format!("Host{}", camel(&rname)), ident(m))
            }
            FunctionKind::Constructor(res) => {
                let rname = self.r.types[*res].name.clone().expect("resource name");
                (format!("Host{}", camel(&rname)), "new".to_string())
            }
            k => panic!("{what_fn}: unsupported function kind {k:?}"),
        };
        let (view_ty, view) = self.view(&name);
        let path = self.iface_path(iface, sync);
        let call = format!(
            "<{view_ty} as {path}::{trait_name}>::{method}(h, {})",
            args.join(", ")
        );
        match self.trappable_error(func) {
            Some(err) => {
                let ename = self.qualified(err);
                let eiface = ename.split('.').next().unwrap().to_string();
                let (eview_ty, eview) = self.view(&eiface);
                let eiface_id = match self.r.types[err].owner {
                    TypeOwner::Interface(i) => i,
                    _ => unreachable!(),
                };
                let epath = self.iface_path(eiface_id, sync);
                let conv = ident(&format!(
                    "convert-{}",
                    self.r.types[err].name.as_deref().unwrap()
                ));
                writeln!(
                    s,
                    "        let r = {{ let h = {view}; {call} }};\n        \
                     let r = match r {{ Ok(v) => Ok(v), Err(e) => {{ let h = {eview}; Err(<{eview_ty} as {epath}::Host>::{conv}(h, e)?) }} }};"
                )
                .unwrap();
            }
            None => {
                writeln!(s, "        let r = {{ let h = {view}; {call}? }};").unwrap();
            }
        }
        // The result.
        match (&func.result, results.len(), sig.retptr) {
            (None, 0, false) => writeln!(s, "        let () = r;\n        Ok(())").unwrap(),
            (Some(ty), 1, false) => {
                let e = self.lower_flat1(ty, "r", sync, "result");
                writeln!(s, "        Ok({e})").unwrap();
            }
            (Some(ty), 0, true) => {
                let retp = format!("p{}", params.len() - 1);
                let (size, align) = (self.size(ty), self.align(ty));
                writeln!(
                    s,
                    "        let ret = {retp} as u32; cx.check_ptr(ret, {size}, {align}, \"return area\")?;"
                )
                .unwrap();
                let st = self.store(ty, "r", "ret", 0, sync, "result");
                writeln!(s, "        {st}\n        Ok(())").unwrap();
            }
            other => panic!("{what_fn}: unexpected result shape {other:?}"),
        }
        writeln!(s, "    }})?;").unwrap();
        self.out += &s;
        self.names.push((name, func.name.clone()));
    }

    fn resource_drop(&mut self, iface: InterfaceId, resource: TypeId, version: &str) {
        let name = self.iface_name(iface);
        let sync = SYNC_INTERFACES.contains(&name.as_str());
        let rname = self.r.types[resource].name.clone().expect("resource name");
        let field = format!("[resource-drop]{rname}");
        let what_fn = format!("{name}#{field}");
        let tag = self.qualified(resource);
        let (view_ty, view) = self.view(&name);
        let path = self.iface_path(iface, sync);
        writeln!(
            self.out,
            "    linker.func_wrap({:?}, {field:?}, |caller: wasmtime::Caller<'_, T>, p0: i32| -> wasmtime::Result<()> {{\n        \
             let mut cx = crate::rt::Cx::new(caller, {what_fn:?});\n        \
             let a0 = cx.take_own(p0 as u32, {tag:?}, \"argument self\")?;\n        \
             let h = {view};\n        \
             <{view_ty} as {path}::Host{}>::drop(h, a0)\n    }})?;",
            format!("{name}@{version}"),
            camel(&rname)
        )
        .unwrap();
        self.names.push((name, field));
    }
}

fn main() {
    println!("cargo:rerun-if-changed=wit");
    println!("cargo:rerun-if-changed=build.rs");
    let mut resolve = Resolve::default();
    let (pkg, _) = resolve.push_dir("wit").expect("vendored WIT parses");
    let world = resolve
        .select_world(&[pkg], Some("core-imports"))
        .expect("world core-imports");
    let mut sizes = SizeAlign::default();
    sizes.fill(&resolve);
    let mut g = Gen {
        r: &resolve,
        sizes,
        out: String::new(),
        fresh: 0,
        names: Vec::new(),
    };
    let mut version = String::new();
    let imports: Vec<InterfaceId> = resolve.worlds[world]
        .imports
        .values()
        .filter_map(|item| match item {
            WorldItem::Interface { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    g.out +=
        "/// Defines every generated function in `linker`, under the vendored WIT's version.\n";
    g.out += "pub fn add_to_linker<T: crate::WasiHost>(linker: &mut wasmtime::Linker<T>) -> wasmtime::Result<()> {\n";
    for id in &imports {
        let i = &resolve.interfaces[*id];
        let p = &resolve.packages[i.package.unwrap()];
        version = p.name.version.as_ref().expect("versioned WIT").to_string();
        for (_, func) in &i.functions {
            g.function(*id, func, &version);
        }
        for (_, ty) in &i.types {
            if matches!(resolve.types[*ty].kind, TypeDefKind::Resource) {
                g.resource_drop(*id, *ty, &version);
            }
        }
    }
    g.out += "    Ok(())\n}\n\n";
    let v = semver_parts(&version);
    writeln!(
        g.out,
        "/// The version of the vendored WASI WIT.\npub const WIT_VERSION: (u64, u64, u64) = ({}, {}, {});\n",
        v.0, v.1, v.2
    )
    .unwrap();
    g.out += "/// Every function `add_to_linker` defines, as (interface without version, field).\n";
    g.out += "pub const FUNCTIONS: &[(&str, &str)] = &[\n";
    for (m, f) in &g.names {
        writeln!(g.out, "    ({m:?}, {f:?}),").unwrap();
    }
    g.out += "];\n";
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("glue.rs");
    std::fs::write(out, g.out).unwrap();
}

fn semver_parts(v: &str) -> (u64, u64, u64) {
    let mut it = v.split(['.', '-']).map(|x| x.parse().unwrap_or(0));
    (
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
    )
}
