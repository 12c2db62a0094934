//! The `file` target: certificate files written into a directory, then an optional reload command.

use crate::config::ConfigIssue;
use serde::Deserialize;

/// Kind-specific keys of this entry in the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    pub directory: std::path::PathBuf,
    pub owner: Option<String>,
    pub group: Option<String>,
    pub reload_command: Option<Vec<String>>,
    pub reload_timeout: Option<String>,
}

impl FileSettings {
    /// Pure checks of these keys; problems are pushed with their key path under `path`.
    pub fn validate(&self, path: &str, issues: &mut Vec<ConfigIssue>) {
        if !self.directory.is_absolute() {
            issues.push(ConfigIssue::new(
                format!("{path}.directory"),
                "must be an absolute path",
            ));
        }
        if let Some(command) = &self.reload_command {
            if command.is_empty() {
                issues.push(ConfigIssue::new(
                    format!("{path}.reload_command"),
                    "must name a program: [\"systemctl\", \"reload\", \"nginx\"]",
                ));
            }
        }
        if let Some(timeout) = &self.reload_timeout {
            if let Err(error) = crate::config::duration::parse_duration(timeout) {
                issues.push(ConfigIssue::new(format!("{path}.reload_timeout"), error));
            }
        }
    }
}
