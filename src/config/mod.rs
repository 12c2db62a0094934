//! The configuration users write (TOML), and its validation.

pub mod credentials;
pub mod duration;

/// One problem found by validation, located by its key path (`target[2].domain`).
/// The loader turns the path into file:line:column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// Dotted key path, with `[i]` for array entries: `target[2].maintenance_window.schedule`.
    pub path: String,
    pub message: String,
}

impl ConfigIssue {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}
