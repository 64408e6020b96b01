//! Module names, versions and references (`name@requirement`).

use std::fmt;

use crate::*;

/// Checks a module name: non-empty, at most 128 bytes, only `[a-z0-9._-]`, starting with a
/// letter or digit (so never `.`, `..` or an option-like `-x`).
pub fn validate_name(name: &str) -> Result<()> {
    let bad = |reason| {
        Err(RepoError::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("the name is empty");
    }
    if name.len() > 128 {
        return bad("longer than 128 bytes");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
    {
        return bad("only a-z, 0-9, '.', '_' and '-' are allowed");
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return bad("must start with a letter or digit");
    }
    Ok(())
}

/// Parses a semver version for module `name` (if known), with a one-line error.
pub fn parse_version(text: &str, name: Option<&str>) -> Result<Version> {
    Version::parse(text.trim()).map_err(|e| RepoError::InvalidVersion {
        text: text.to_string(),
        name: name.map(str::to_string),
        message: e.to_string(),
    })
}

/// A reference to a module: `NAME` or `NAME@REQ` (see the module docs for `REQ`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleRef {
    /// The module name.
    pub name: String,
    /// The version requirement (`*` for a bare name).
    pub req: VersionReq,
}

impl ModuleRef {
    /// Parses `NAME` or `NAME@REQ`.
    pub fn parse(text: &str) -> Result<ModuleRef> {
        let (name, req) = match text.split_once('@') {
            Some((n, r)) => (n, Some(r)),
            None => (text, None),
        };
        validate_name(name)?;
        let req = match req {
            None => VersionReq::STAR,
            Some(r) if r.trim().is_empty() => {
                return Err(RepoError::InvalidReference {
                    text: text.to_string(),
                    reason: "nothing after '@' (write NAME, or NAME@REQ such as NAME@^1.2)",
                });
            }
            Some(r) => VersionReq::parse(r).map_err(|e| RepoError::InvalidRequirement {
                text: r.to_string(),
                name: name.to_string(),
                message: e.to_string(),
            })?,
        };
        Ok(ModuleRef {
            name: name.to_string(),
            req,
        })
    }
}

impl fmt::Display for ModuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.req)
    }
}

/// Parses `NAME@VERSION` with an exact version (as `repo remove` takes).
pub fn parse_exact(text: &str) -> Result<(String, Version)> {
    let Some((name, version)) = text.split_once('@') else {
        return Err(RepoError::InvalidReference {
            text: text.to_string(),
            reason: "expected NAME@VERSION, e.g. foo@1.2.3",
        });
    };
    validate_name(name)?;
    let version = parse_version(version.strip_prefix('=').unwrap_or(version), Some(name))?;
    Ok((name.to_string(), version))
}

// ---------------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------------
