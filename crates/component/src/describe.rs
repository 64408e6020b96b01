//! What a component is: its world's imports and exports printed as WIT (decoded with
//! wit-parser from the component's own type information), and the core modules and instances
//! inside it (walked with wasmparser).

use serde::Serialize;
use wit_parser::decoding::DecodedWasm;
use wit_parser::{Function, FunctionKind, Handle, Resolve, Type, TypeDefKind, WorldItem};

use crate::error::ComponentError;

/// One import or export of a component's world.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Item {
    /// `wasi:cli/environment@0.2.0`, or a plain name (`greet`).
    pub name: String,
    /// `interface`, `function` or `type`.
    pub kind: &'static str,
    /// Its functions as WIT (`greet: func(name: string) -> string`): the function itself for a
    /// `function`, the interface's functions for an `interface`.
    pub functions: Vec<String>,
}

/// A core module embedded in the component.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CoreModule {
    /// Its index among the component's core modules (nested components included, in order).
    pub index: usize,
    /// Its size in bytes.
    pub size: usize,
}

/// A component's summary, as `wasmlink inspect` prints it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ComponentSummary {
    /// The decoded world's name.
    pub world: String,
    pub imports: Vec<Item>,
    pub exports: Vec<Item>,
    pub core_modules: Vec<CoreModule>,
    /// Core instances created (`instantiate` and bags of exports), nested components included.
    pub core_instances: usize,
    /// Nested components.
    pub components: usize,
    /// Component instances.
    pub component_instances: usize,
}

impl ComponentSummary {
    /// Decodes a component's world and walks its sections.
    ///
    /// # Errors
    /// [`ComponentError::Invalid`] if the bytes are not a valid component.
    pub fn parse(bytes: &[u8]) -> Result<Self, ComponentError> {
        let invalid = |e: &dyn std::fmt::Display| ComponentError::Invalid {
            message: e.to_string(),
        };
        let mut validator =
            wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::all());
        validator.validate_all(bytes).map_err(|e| invalid(&e))?;
        let (resolve, world) = match wit_parser::decoding::decode(bytes).map_err(|e| invalid(&e))? {
            DecodedWasm::Component(r, w) => (r, w),
            DecodedWasm::WitPackage(..) => {
                return Err(ComponentError::Invalid {
                    message: "a WIT package, not a component".into(),
                });
            }
        };
        let w = &resolve.worlds[world];
        let items = |map: &wit_parser::IndexMap<wit_parser::WorldKey, WorldItem>| {
            map.iter()
                .map(|(key, item)| {
                    let name = resolve.name_world_key(key);
                    match item {
                        WorldItem::Interface { id, .. } => Item {
                            name,
                            kind: "interface",
                            functions: resolve.interfaces[*id]
                                .functions
                                .values()
                                .map(|f| signature(&resolve, f))
                                .collect(),
                        },
                        WorldItem::Function(f) => Item {
                            name,
                            kind: "function",
                            functions: vec![signature(&resolve, f)],
                        },
                        WorldItem::Type { .. } => Item {
                            name,
                            kind: "type",
                            functions: vec![],
                        },
                    }
                })
                .collect::<Vec<_>>()
        };
        let (imports, exports) = (items(&w.imports), items(&w.exports));
        let mut summary = ComponentSummary {
            world: w.name.clone(),
            imports,
            exports,
            core_modules: Vec::new(),
            core_instances: 0,
            components: 0,
            component_instances: 0,
        };
        summary.walk(bytes).map_err(|e| invalid(&e))?;
        Ok(summary)
    }

    fn walk(&mut self, bytes: &[u8]) -> Result<(), wasmparser::BinaryReaderError> {
        use wasmparser::Payload;
        for payload in wasmparser::Parser::new(0).parse_all(bytes) {
            match payload? {
                Payload::ModuleSection {
                    unchecked_range, ..
                } => self.core_modules.push(CoreModule {
                    index: self.core_modules.len(),
                    size: unchecked_range.end - unchecked_range.start,
                }),
                Payload::InstanceSection(s) => self.core_instances += s.count() as usize,
                Payload::ComponentSection { .. } => self.components += 1,
                Payload::ComponentInstanceSection(s) => {
                    self.component_instances += s.count() as usize
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The human-readable form (`wasmlink inspect`).
    pub fn to_text(&self, size: usize) -> String {
        let mut s = String::new();
        let line = |s: &mut String, k: &str, v: String| s.push_str(&format!("{k:<16}{v}\n"));
        line(&mut s, "kind:", "component".into());
        line(&mut s, "size:", format!("{size} bytes"));
        line(&mut s, "world:", self.world.clone());
        let sizes: Vec<String> = self
            .core_modules
            .iter()
            .map(|m| m.size.to_string())
            .collect();
        line(
            &mut s,
            "core modules:",
            if sizes.is_empty() {
                "0".into()
            } else {
                format!("{} ({} bytes)", sizes.len(), sizes.join(", "))
            },
        );
        line(&mut s, "core instances:", self.core_instances.to_string());
        if self.components > 0 || self.component_instances > 0 {
            line(
                &mut s,
                "components:",
                format!(
                    "{} nested, {} instances",
                    self.components, self.component_instances
                ),
            );
        }
        for (title, items) in [("imports", &self.imports), ("exports", &self.exports)] {
            s.push_str(&format!("{title}: {}\n", items.len()));
            for i in items {
                match i.kind {
                    "function" => s.push_str(&format!("  {}\n", i.functions[0])),
                    _ => {
                        s.push_str(&format!("  {} ({})\n", i.name, i.kind));
                        for f in &i.functions {
                            s.push_str(&format!("    {f}\n"));
                        }
                    }
                }
            }
        }
        s
    }
}

/// A function as WIT: `greet: func(name: string) -> string`; methods as `[method]r.m: ...`.
pub fn signature(resolve: &Resolve, f: &Function) -> String {
    let params: Vec<String> = f
        .params
        .iter()
        .filter(|p| !(matches!(f.kind, FunctionKind::Method(_)) && p.name == "self"))
        .map(|p| format!("{}: {}", p.name, type_name(resolve, &p.ty)))
        .collect();
    let result = f
        .result
        .as_ref()
        .map(|t| format!(" -> {}", type_name(resolve, t)))
        .unwrap_or_default();
    let name = match &f.kind {
        FunctionKind::Constructor(_) => "constructor".to_string(),
        _ => f.name.clone(),
    };
    format!("{name}: func({}){result}", params.join(", "))
}

/// A type as WIT: named types by name, anonymous ones spelled out.
pub fn type_name(resolve: &Resolve, ty: &Type) -> String {
    match ty {
        Type::Bool => "bool".into(),
        Type::U8 => "u8".into(),
        Type::U16 => "u16".into(),
        Type::U32 => "u32".into(),
        Type::U64 => "u64".into(),
        Type::S8 => "s8".into(),
        Type::S16 => "s16".into(),
        Type::S32 => "s32".into(),
        Type::S64 => "s64".into(),
        Type::F32 => "f32".into(),
        Type::F64 => "f64".into(),
        Type::Char => "char".into(),
        Type::String => "string".into(),
        Type::ErrorContext => "error-context".into(),
        Type::Id(id) => {
            let t = &resolve.types[*id];
            if let Some(name) = &t.name {
                return name.clone();
            }
            let n = |t: &Type| type_name(resolve, t);
            let opt = |t: &Option<Type>| t.as_ref().map_or("_".to_string(), n);
            match &t.kind {
                TypeDefKind::List(t) => format!("list<{}>", n(t)),
                TypeDefKind::FixedLengthList(t, len) => format!("list<{}, {len}>", n(t)),
                TypeDefKind::Map(k, v) => format!("map<{}, {}>", n(k), n(v)),
                TypeDefKind::Option(t) => format!("option<{}>", n(t)),
                TypeDefKind::Result(r) => match (&r.ok, &r.err) {
                    (None, None) => "result".into(),
                    (Some(ok), None) => format!("result<{}>", n(ok)),
                    _ => format!("result<{}, {}>", opt(&r.ok), opt(&r.err)),
                },
                TypeDefKind::Tuple(t) => {
                    format!(
                        "tuple<{}>",
                        t.types.iter().map(n).collect::<Vec<_>>().join(", ")
                    )
                }
                TypeDefKind::Handle(Handle::Own(r)) => type_name(resolve, &Type::Id(*r)),
                TypeDefKind::Handle(Handle::Borrow(r)) => {
                    format!("borrow<{}>", type_name(resolve, &Type::Id(*r)))
                }
                TypeDefKind::Future(t) => format!("future<{}>", opt(t)),
                TypeDefKind::Stream(t) => format!("stream<{}>", opt(t)),
                TypeDefKind::Type(t) => n(t),
                other => other.as_str().to_string(),
            }
        }
    }
}
