//! Sizes and durations as a policy writes them (`"64 MiB"`, `"250ms"`, `"none"`): parsing,
//! display, serde and JSON schema.

use std::fmt;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

/// A size or a duration that does not parse. `Display` quotes the text and says what was
/// expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// Not a number with an optional unit.
    #[error("`{0}` is not a size (expected e.g. 65536, \"64 MiB\")")]
    NotASize(String),
    /// A unit this parser does not know.
    #[error("`{text}`: unknown size unit `{unit}` (use B, KiB, MiB, GiB, kB, MB, GB)")]
    UnknownUnit {
        /// The whole text.
        text: String,
        /// The unit, lowercased.
        unit: String,
    },
    /// More bytes than a u64 holds.
    #[error("`{0}` is too large")]
    TooLarge(String),
    /// Not a duration.
    #[error("`{0}` is not a duration (expected e.g. \"250ms\", \"2s\", \"1m\", \"none\")")]
    NotADuration(String),
}

/// A size in bytes, written as an integer or as `"64 MiB"`, `"512KiB"`, `"1GB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// Parses `"64 MiB"`, `"512k"`, `"1048576"`.
    pub fn parse(text: &str) -> Result<ByteSize, ValueError> {
        let t = text.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '_'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let num: u64 = num
            .replace('_', "")
            .parse()
            .map_err(|_| ValueError::NotASize(text.to_string()))?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" => 1_000,
            "kib" => 1 << 10,
            "m" | "mb" => 1_000_000,
            "mib" => 1 << 20,
            "g" | "gb" => 1_000_000_000,
            "gib" => 1 << 30,
            other => {
                return Err(ValueError::UnknownUnit {
                    text: text.to_string(),
                    unit: other.to_string(),
                });
            }
        };
        num.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| ValueError::TooLarge(text.to_string()))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        if b >= 1 << 30 && b.is_multiple_of(1 << 30) {
            write!(f, "{} GiB", b >> 30)
        } else if b >= 1 << 20 && b.is_multiple_of(1 << 20) {
            write!(f, "{} MiB", b >> 20)
        } else if b >= 1 << 10 && b.is_multiple_of(1 << 10) {
            write!(f, "{} KiB", b >> 10)
        } else {
            write!(f, "{b} bytes")
        }
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d).map_err(|_| {
            serde::de::Error::custom("expected a size: an integer or a string like \"64 MiB\"")
        })? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Text(t) => ByteSize::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ByteSize".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Bytes: an integer, or a string such as \"64 MiB\", \"512KiB\", \"1GB\".",
            "anyOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": "^\\s*[0-9_]+\\s*([kKmMgG]i?[bB]?|[bB])?\\s*$" }
            ]
        })
    }
}

/// A duration written as `"250ms"`, `"2s"`, `"1m"`, or `"none"` ([`HumanDuration::NONE`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// `"none"`: no limit at all (`Duration::MAX`).
    pub const NONE: HumanDuration = HumanDuration(Duration::MAX);

    /// Whether this is [`HumanDuration::NONE`].
    pub fn is_none(self) -> bool {
        self == Self::NONE
    }

    /// Parses `"250ms"`, `"2s"`, `"1.5s"`, `"1m"`, and `"none"`.
    pub fn parse(text: &str) -> Result<HumanDuration, ValueError> {
        let t = text.trim();
        if t == "none" {
            return Ok(Self::NONE);
        }
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (num, unit) = t.split_at(split);
        let bad = || ValueError::NotADuration(text.to_string());
        let n: f64 = num.parse().map_err(|_| bad())?;
        let secs = match unit.trim() {
            "ms" => n / 1000.0,
            "s" => n,
            "m" | "min" => n * 60.0,
            "us" | "µs" => n / 1_000_000.0,
            _ => return Err(bad()),
        };
        Duration::try_from_secs_f64(secs)
            .map(HumanDuration)
            .map_err(|_| bad())
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_none() {
            return f.write_str("none");
        }
        let ms = self.0.as_millis();
        if ms.is_multiple_of(1000) && ms > 0 {
            write!(f, "{}s", ms / 1000)
        } else {
            write!(f, "{ms}ms")
        }
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let t = String::deserialize(d)
            .map_err(|_| serde::de::Error::custom("expected a duration string like \"2s\""))?;
        HumanDuration::parse(&t).map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for HumanDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A duration such as \"250ms\", \"2s\", \"1.5s\", \"1m\", or \"none\" (no limit).",
            "type": "string",
            "pattern": "^\\s*(none|[0-9.]+\\s*(ms|s|m|min|us|µs))\\s*$"
        })
    }
}
