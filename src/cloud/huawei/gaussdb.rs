//! Huawei Cloud GaussDB backup encryption policy.

use crate::config::ConfigIssue;
use serde::Deserialize;

/// Kind-specific keys of this entry in the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GaussDbBackupEncryptionSettings {
    pub encryption: String,
    pub kms_key_id: Option<String>,
}

impl GaussDbBackupEncryptionSettings {
    /// Pure checks of these keys; problems are pushed with their key path under `path`.
    pub fn validate(&self, path: &str, issues: &mut Vec<ConfigIssue>) {
        if self.encryption == "on" && self.kms_key_id.is_none() {
            issues.push(ConfigIssue::new(
                format!("{path}.kms_key_id"),
                "is required when encryption = \"on\"",
            ));
        }
    }
}
