//! The exports manifest: what each data-exchange function of a plugin takes.
//!
//! At the core-module level every ABI function is `(i32, i32) -> i32`, whatever it takes; the
//! guest SDK's `#[export]` (and `WASMLINK_EXPORT` in `guest/include/wasmlink.h`) therefore also
//! writes one record per function into a custom section named `wasmlink.exports`:
//! `CONVENTION \t INPUT \t NAME \n` (docs/abi.md, "The exports manifest"). wasm-ld
//! concatenates the sections of all objects, so records come in no particular order.
//!
//! The section is the module's own claim, used to describe it and to pick the right `call`
//! flag, never to decide what the host checks: a module that lies gets the same checks as one
//! that tells the truth.

use std::collections::BTreeMap;
use std::fmt;

/// The custom section's name.
pub const SECTION: &str = "wasmlink.exports";

/// How a function passes data (the policy's `abi`, for the older conventions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Convention {
    /// wasmlink ABI v1: `f(ptr, len) -> &result_record`.
    Abi,
    /// `f(ptr, len) -> &(ptr, len)` (`abi = "seed"`).
    Seed,
    /// NUL-terminated strings (`abi = "cstring"`).
    Cstring,
    /// `(ptr << 32) | len` as an i64 (`abi = "ptrlen"`).
    Ptrlen,
}

/// What a function takes as its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Input {
    /// Nothing (its input is ignored).
    None,
    /// UTF-8 text.
    String,
    /// Any bytes.
    Bytes,
    /// An Arrow record batch (IPC stream), returning a new one.
    Arrow,
    /// An Arrow record batch rewritten in place.
    ArrowInPlace,
}

/// One function's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExportKind {
    /// How data is passed.
    pub convention: Convention,
    /// What it takes.
    pub input: Input,
}

impl Convention {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "abi" => Self::Abi,
            "seed" => Self::Seed,
            "cstring" => Self::Cstring,
            "ptrlen" => Self::Ptrlen,
            _ => return None,
        })
    }

    /// The spelling of the policy's `abi` field (and of the manifest).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Abi => "abi",
            Self::Seed => "seed",
            Self::Cstring => "cstring",
            Self::Ptrlen => "ptrlen",
        }
    }
}

impl Input {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "none" => Self::None,
            "string" => Self::String,
            "bytes" => Self::Bytes,
            "arrow" => Self::Arrow,
            "arrow-in-place" => Self::ArrowInPlace,
            _ => return None,
        })
    }

    /// The manifest's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::String => "string",
            Self::Bytes => "bytes",
            Self::Arrow => "arrow",
            Self::ArrowInPlace => "arrow-in-place",
        }
    }

    /// Whether the input is an Arrow batch (`call --arrow`).
    pub fn is_arrow(self) -> bool {
        matches!(self, Self::Arrow | Self::ArrowInPlace)
    }
}

impl fmt::Display for ExportKind {
    /// `arrow`, `string`, `bytes (seed)`: the input, and the convention unless it is ABI v1.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.input.as_str())?;
        if self.convention != Convention::Abi {
            write!(f, " ({})", self.convention.as_str())?;
        }
        Ok(())
    }
}

/// The records of a module, by export name. Malformed records (unknown words, not UTF-8, a
/// name given twice with different kinds) are skipped and counted, never an error: the
/// section only describes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    /// Function name -> its kind.
    pub exports: BTreeMap<String, ExportKind>,
    /// Records that could not be read.
    pub skipped: usize,
}

impl Manifest {
    /// The manifest of a module's bytes: empty when the module has no `wasmlink.exports`
    /// section or is not a module that parses.
    pub fn of_module(bytes: &[u8]) -> Manifest {
        let mut m = Manifest::default();
        for payload in wasmparser::Parser::new(0).parse_all(bytes) {
            match payload {
                Ok(wasmparser::Payload::CustomSection(c)) if c.name() == SECTION => {
                    m.add_section(c.data());
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        m
    }

    /// Adds the records of one section's contents.
    pub fn add_section(&mut self, data: &[u8]) {
        for line in data.split(|&b| b == b'\n') {
            if line.is_empty() {
                continue;
            }
            match parse_record(line) {
                Some((name, kind)) => match self.exports.get(name) {
                    Some(k) if *k != kind => {
                        self.exports.remove(name);
                        self.skipped += 2;
                    }
                    _ => {
                        self.exports.insert(name.to_string(), kind);
                    }
                },
                None => self.skipped += 1,
            }
        }
    }

    /// The kind of `name`, if recorded.
    pub fn get(&self, name: &str) -> Option<ExportKind> {
        self.exports.get(name).copied()
    }
}

fn parse_record(line: &[u8]) -> Option<(&str, ExportKind)> {
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.splitn(3, '\t');
    let convention = Convention::parse(parts.next()?)?;
    let input = Input::parse(parts.next()?)?;
    let name = parts.next()?;
    if name.is_empty() || input.is_arrow() && convention != Convention::Abi {
        return None;
    }
    Some((name, ExportKind { convention, input }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_read_in_any_order_and_bad_ones_skipped() {
        let mut m = Manifest::default();
        m.add_section(b"abi\tarrow\tdouble\nseed\tstring\tgreet_seed\n");
        m.add_section(
            b"abi\tstring\tgreet\nbogus\tstring\tx\nabi\tstring\t\n\xff\xfe\nseed\tarrow\ty\n",
        );
        assert_eq!(m.exports.len(), 3);
        assert_eq!(m.skipped, 4);
        assert_eq!(m.get("double").unwrap().to_string(), "arrow");
        assert_eq!(m.get("greet_seed").unwrap().to_string(), "string (seed)");
        assert_eq!(m.get("greet").unwrap().input, Input::String);
    }

    #[test]
    fn a_name_claimed_twice_with_different_kinds_is_dropped() {
        let mut m = Manifest::default();
        m.add_section(b"abi\tarrow\tf\nabi\tarrow\tf\nabi\tbytes\tg\nabi\tstring\tg\n");
        assert_eq!(m.get("f").unwrap().input, Input::Arrow);
        assert_eq!(m.get("g"), None);
    }

    #[test]
    fn a_module_with_a_section_is_read_and_one_without_is_empty() {
        let wat = r#"(module (@custom "wasmlink.exports" "abi\09bytes\09echo\0a"))"#;
        let bytes = wat::parse_str(wat).unwrap();
        assert_eq!(
            Manifest::of_module(&bytes).get("echo").unwrap().input,
            Input::Bytes
        );
        let bytes = wat::parse_str("(module)").unwrap();
        assert!(Manifest::of_module(&bytes).exports.is_empty());
        assert!(Manifest::of_module(b"not wasm").exports.is_empty());
    }
}
