//! Alibaba Cloud CDN domains as deployment targets.

use crate::config::ConfigIssue;
use serde::Deserialize;

/// Kind-specific keys of this entry in the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CdnSettings {
    pub domain: String,
}

impl CdnSettings {
    /// Pure checks of these keys; problems are pushed with their key path under `path`.
    pub fn validate(&self, path: &str, issues: &mut Vec<ConfigIssue>) {
        crate::config::check_domain(&self.domain, &format!("{path}.domain"), false, issues);
    }
}
