//! QingCloud MySQL Plus SSL policy.

use crate::config::ConfigIssue;
use serde::Deserialize;

/// Kind-specific keys of this entry in the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MysqlPlusSslSettings {
    pub ssl: bool,
}

impl MysqlPlusSslSettings {
    /// Pure checks of these keys; problems are pushed with their key path under `path`.
    pub fn validate(&self, path: &str, issues: &mut Vec<ConfigIssue>) {
        let _ = (path, issues);
    }
}
