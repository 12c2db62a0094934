//! Alibaba Cloud RDS instances as deployment targets.

use crate::config::ConfigIssue;
use serde::Deserialize;

/// Kind-specific keys of this entry in the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RdsSettings {
    pub instance_id: String,
    pub connection_string: String,
}

impl RdsSettings {
    /// Pure checks of these keys; problems are pushed with their key path under `path`.
    pub fn validate(&self, path: &str, issues: &mut Vec<ConfigIssue>) {
        if self.instance_id.trim().is_empty() {
            issues.push(ConfigIssue::new(
                format!("{path}.instance_id"),
                "must not be empty",
            ));
        }
    }
}
