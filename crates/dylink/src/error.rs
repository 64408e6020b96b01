//! The one error type of the model: where in the file, and what is wrong.

use std::fmt;

/// A module could not be read.
///
/// Every error names the part of the module being read (`"import section"`,
/// `"dylink.0 section, NEEDED subsection"`, ...) and the byte offset in the file,
/// like wasmparser's own errors, so a user can find the bad bytes with a hex dump.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ParseError {
    /// What was being read, e.g. `"import section"`.
    pub context: String,
    /// Byte offset in the file where the problem was found.
    pub offset: usize,
    /// What is wrong, lowercase, no trailing period.
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(
        context: impl Into<String>,
        offset: usize,
        message: impl Into<String>,
    ) -> Self {
        ParseError {
            context: context.into(),
            offset,
            message: message.into(),
        }
    }

    pub(crate) fn from_wasmparser(
        context: impl Into<String>,
        err: wasmparser::BinaryReaderError,
    ) -> Self {
        ParseError::new(context, err.offset(), err.message().to_string())
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.context.is_empty() {
            write!(f, "{} (at offset 0x{:x})", self.message, self.offset)
        } else {
            write!(
                f,
                "{}: {} (at offset 0x{:x})",
                self.context, self.message, self.offset
            )
        }
    }
}
