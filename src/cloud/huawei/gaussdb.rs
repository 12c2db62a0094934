//! Policy `huawei-gaussdb-backup-encryption`: keeps TaurusDB (GaussDB for MySQL) backup
//! encryption of each configured instance in the desired state. `check` reads
//! DescribeBackupEncryptStatus (`GET /v3/{project_id}/instances/{instance_id}/backups/encryption`);
//! `remediate` calls ModifyBackupEncryptStatus (`POST`, same path) with
//! `{"encryption_status":"on","type":"kms","kms_key_id":...}` or `{"encryption_status":"off"}`
//! (https://support.huaweicloud.com/intl/en-us/api-taurusdb/ModifyBackupEncryptStatus.html).
//! The call answers at once; `engine::converge::apply_policy` reads the state back.
//!
//! Compliance compares the switch and, where the answer reports it (`kms_key_id`; the
//! seed's response table has only `encryption_status`), the key in use too.
//!
//! Errors keep the vendor's code and class (`client.rs`), with a message that says what
//! fixes them: a disabled key or one pending deletion (`KMS.0209`, `KMS.0210`, busy: fixed
//! in DEW, retried on a timer) names the key; a refusal classed `unsupported` (the seed
//! marks the API open beta, permission by service ticket) says what to ask Huawei for.

use super::client::{ApiRequest, HuaweiClient};
use crate::cloud::{Policy, PolicyFinding, PolicyMode, Remediation};
use crate::error::{CloudError, ErrorClass};
use crate::settings::ConfigIssue;
use crate::window::MaintenanceWindow;
use async_trait::async_trait;
use reqwest::Method;
use serde::Deserialize;
use std::sync::Arc;

pub const KIND: &str = "huawei-gaussdb-backup-encryption";

/// Backup encryption on or off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EncryptionStatus {
    On,
    Off,
}

impl EncryptionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EncryptionStatus::On => "on",
            EncryptionStatus::Off => "off",
        }
    }

    /// The API treats the value case-insensitively.
    pub fn parse(value: &str) -> Option<Self> {
        match value.to_ascii_lowercase().as_str() {
            "on" => Some(EncryptionStatus::On),
            "off" => Some(EncryptionStatus::Off),
            _ => None,
        }
    }
}

/// `[[policy]]` settings of kind `huawei-gaussdb-backup-encryption`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GaussDbBackupEncryptionSettings {
    /// The wanted state.
    pub desired: EncryptionStatus,
    /// The KMS (DEW) key id; required when `desired = "on"`, not allowed when `off`.
    #[serde(default)]
    pub kms_key_id: Option<String>,
}

fn is_instance_id(id: &str) -> bool {
    id.len() == 36 && id.ends_with("in07") && id.chars().all(|c| c.is_ascii_alphanumeric())
}

fn is_key_id(id: &str) -> bool {
    // KMS key ids are UUIDs: 8-4-4-4-12 hex digits.
    let groups: Vec<&str> = id.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(group, len)| group.len() == len && group.chars().all(|c| c.is_ascii_hexdigit()))
}

impl GaussDbBackupEncryptionSettings {
    /// Pure validation of the kind's own keys; `path` is the policy's key path, e.g. `policy[1]`.
    pub fn validate(&self, path: &str, issues: &mut Vec<ConfigIssue>) {
        match (self.desired, &self.kms_key_id) {
            (EncryptionStatus::On, None) => issues.push(ConfigIssue::new(
                format!("{path}.kms_key_id"),
                "required when desired = \"on\": the KMS key that encrypts the backups",
            )),
            (EncryptionStatus::On, Some(key)) if !is_key_id(key) => issues.push(ConfigIssue::new(
                format!("{path}.kms_key_id"),
                format!("`{key}` is not a KMS key id (a UUID)"),
            )),
            (EncryptionStatus::Off, Some(_)) => issues.push(ConfigIssue::new(
                format!("{path}.kms_key_id"),
                "only used when desired = \"on\"; remove it",
            )),
            _ => {}
        }
    }

    /// Pure validation of the policy's `resources`: TaurusDB instance ids.
    pub fn validate_instances(instances: &[String], path: &str, issues: &mut Vec<ConfigIssue>) {
        if instances.is_empty() {
            issues.push(ConfigIssue::new(
                format!("{path}.resources"),
                "list at least one TaurusDB instance id",
            ));
        }
        for (index, id) in instances.iter().enumerate() {
            if !is_instance_id(id) {
                issues.push(ConfigIssue::new(
                    format!("{path}.resources[{index}]"),
                    format!("`{id}` is not a TaurusDB instance id (36 letters and digits ending in `in07`)"),
                ));
            }
            if instances[..index].contains(id) {
                issues.push(ConfigIssue::new(
                    format!("{path}.resources[{index}]"),
                    format!("`{id}` is listed twice"),
                ));
            }
        }
    }
}

/// The policy, built from validated settings and a client for its account.
pub struct GaussDbBackupEncryptionPolicy {
    name: String,
    mode: PolicyMode,
    instances: Vec<String>,
    settings: GaussDbBackupEncryptionSettings,
    client: Arc<HuaweiClient>,
    window: Option<MaintenanceWindow>,
}

impl GaussDbBackupEncryptionPolicy {
    pub fn new(
        name: &str,
        mode: PolicyMode,
        instances: Vec<String>,
        settings: GaussDbBackupEncryptionSettings,
        client: Arc<HuaweiClient>,
        window: Option<MaintenanceWindow>,
    ) -> Self {
        Self {
            name: name.to_owned(),
            mode,
            instances,
            settings,
            client,
            window,
        }
    }

    async fn request(
        &self,
        operation: &'static str,
        method: Method,
        instance: &str,
        body: Option<serde_json::Value>,
    ) -> Result<ApiRequest, CloudError> {
        let project_id = self.client.project_id().await?;
        Ok(ApiRequest {
            operation,
            method,
            base: self.client.gaussdb_endpoint(),
            path: format!("/v3/{project_id}/instances/{instance}/backups/encryption"),
            query: Vec::new(),
            body,
        })
    }

    /// Adds to `error` what fixes it, for the operator; code, class and request id stay.
    fn explain(&self, error: CloudError, project_id: &str) -> CloudError {
        let key = self.settings.kms_key_id.as_deref().unwrap_or("(none)");
        let advice = match (error.class, error.code.as_str()) {
            (_, "KMS.0209") => format!(
                "KMS key {key} is disabled: enable it in DEW or configure another kms_key_id; \
                 retried on a timer"
            ),
            (_, "KMS.0210") => format!(
                "KMS key {key} is pending deletion: cancel the deletion in DEW or configure \
                 another kms_key_id; retried on a timer"
            ),
            (ErrorClass::Unsupported, _) => format!(
                "TaurusDB backup encryption is an open-beta API: ask Huawei Cloud, by a \
                 service ticket, to grant project {project_id} permission for \
                 ModifyBackupEncryptStatus and DescribeBackupEncryptStatus (IAM action \
                 gaussdb:backup:encrypt) in this region"
            ),
            _ => return error,
        };
        let message = if error.message.is_empty() {
            advice
        } else {
            format!("{} ({advice})", error.message)
        };
        CloudError { message, ..error }
    }

    /// Sends `request` and explains a failure (see [`Self::explain`]).
    async fn send(&self, request: &ApiRequest) -> Result<super::client::ApiResponse, CloudError> {
        let project_id = self.client.project_id().await?;
        self.client
            .send(request)
            .await
            .map_err(|error| self.explain(error, &project_id))
    }

    /// The modify body for the desired state (pure).
    pub fn modify_body(&self) -> serde_json::Value {
        match (self.settings.desired, &self.settings.kms_key_id) {
            (EncryptionStatus::On, Some(key)) => serde_json::json!({
                "encryption_status": "on",
                "type": "kms",
                "kms_key_id": key,
            }),
            // Validation demands a key for `on`; sent without one, the API answers with
            // its own parameter error, which is the honest outcome.
            (EncryptionStatus::On, None) => serde_json::json!({"encryption_status": "on"}),
            (EncryptionStatus::Off, _) => serde_json::json!({"encryption_status": "off"}),
        }
    }
}

#[async_trait]
impl Policy for GaussDbBackupEncryptionPolicy {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        KIND
    }

    fn mode(&self) -> PolicyMode {
        self.mode
    }

    fn maintenance_window(&self) -> Option<&MaintenanceWindow> {
        self.window.as_ref()
    }

    fn resources(&self) -> Vec<String> {
        self.instances.clone()
    }

    async fn check(&self, resource: &str) -> Result<PolicyFinding, CloudError> {
        const OPERATION: &str = "DescribeBackupEncryptStatus";
        let request = self.request(OPERATION, Method::GET, resource, None).await?;
        let answer = self.send(&request).await?;
        let observed = answer.body["encryption_status"]
            .as_str()
            .and_then(EncryptionStatus::parse)
            .ok_or_else(|| {
                CloudError::new(
                    super::client::VENDOR,
                    OPERATION,
                    ErrorClass::Transient,
                    "MalformedResponse",
                    "answer has no encryption_status of on or off",
                )
            })?;
        // The seed's answer has no key; compared only where an answer reports one.
        let reported_key = answer.body["kms_key_id"]
            .as_str()
            .filter(|key| !key.is_empty() && observed == EncryptionStatus::On)
            .map(|key| key.chars().take(64).collect::<String>());
        let describe = |status: EncryptionStatus, key: Option<&str>| match key {
            Some(key) => format!("backup encryption {} with KMS key {key}", status.as_str()),
            None => format!("backup encryption {}", status.as_str()),
        };
        let wanted_key = self.settings.kms_key_id.as_deref();
        let key_differs = match (reported_key.as_deref(), wanted_key) {
            (Some(reported), Some(wanted)) => !reported.eq_ignore_ascii_case(wanted),
            _ => false,
        };
        Ok(PolicyFinding {
            resource: resource.to_owned(),
            compliant: observed == self.settings.desired && !key_differs,
            observed: describe(observed, reported_key.as_deref()),
            desired: describe(
                self.settings.desired,
                wanted_key.filter(|_| reported_key.is_some()),
            ),
            busy: false,
        })
    }

    async fn remediate(&self, resource: &str) -> Result<Remediation, CloudError> {
        const OPERATION: &str = "ModifyBackupEncryptStatus";
        let request = self
            .request(OPERATION, Method::POST, resource, Some(self.modify_body()))
            .await?;
        let answer = self.send(&request).await?;
        Ok(Remediation {
            job_id: answer.request_id,
        })
    }
}

/// `kind = "huawei-gaussdb-backup-encryption"`: its line in `cloud::registry::POLICIES`.
pub const PRODUCT: crate::cloud::registry::PolicyKind = crate::cloud::registry::PolicyKind {
    kind: "huawei-gaussdb-backup-encryption",
    variant: "HuaweiGaussdbBackupEncryption",
    vendor: "huawei",
    provider: Some(crate::cloud::account::Provider::Huawei),
    parse: crate::cloud::registry::parse_policy_settings::<GaussDbBackupEncryptionSettings>,
};

impl crate::cloud::registry::PolicyProduct for GaussDbBackupEncryptionSettings {
    fn check(&self, path: &str, resources: &[String], issues: &mut Vec<ConfigIssue>) {
        self.validate(path, issues);
        Self::validate_instances(resources, path, issues);
    }

    fn build(
        &self,
        spec: crate::cloud::registry::PolicySpec<'_>,
        window: Option<MaintenanceWindow>,
        accounts: &dyn crate::cloud::registry::Accounts,
    ) -> Result<Arc<dyn Policy>, String> {
        let client = accounts.huawei(spec.credentials)?;
        Ok(Arc::new(GaussDbBackupEncryptionPolicy::new(
            spec.name,
            spec.mode,
            spec.resources.to_vec(),
            self.clone(),
            client,
            window,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(toml_text: &str) -> Result<GaussDbBackupEncryptionSettings, toml::de::Error> {
        toml::from_str(toml_text)
    }

    #[test]
    fn valid_settings_have_no_issues() {
        let settings = settings(
            r#"
            desired = "on"
            kms_key_id = "b82fa43f-f6e8-4ec4-9c31-231bc547c526"
            "#,
        )
        .unwrap();
        let mut issues = Vec::new();
        settings.validate("policy[0]", &mut issues);
        GaussDbBackupEncryptionSettings::validate_instances(
            &["7033e7c3cf93438797d44ad7ae0a7d95in07".to_owned()],
            "policy[0]",
            &mut issues,
        );
        assert!(issues.is_empty(), "{issues:?}");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let error = settings(
            r#"
            desired = "on"
            kms_key = "x"
            "#,
        )
        .unwrap_err();
        assert!(error.to_string().contains("kms_key"), "{error}");
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let settings = settings(
            r#"
            desired = "on"
            kms_key_id = "not-a-uuid"
            "#,
        )
        .unwrap();
        let mut issues = Vec::new();
        settings.validate("policy[2]", &mut issues);
        GaussDbBackupEncryptionSettings::validate_instances(
            &["nope".to_owned(), "nope".to_owned()],
            "policy[2]",
            &mut issues,
        );
        let paths: Vec<&str> = issues.iter().map(|issue| issue.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "policy[2].kms_key_id",
                "policy[2].resources[0]",
                "policy[2].resources[1]",
                "policy[2].resources[1]"
            ]
        );
        let mut issues = Vec::new();
        GaussDbBackupEncryptionSettings {
            desired: EncryptionStatus::On,
            kms_key_id: None,
        }
        .validate("p", &mut issues);
        assert_eq!(issues[0].path, "p.kms_key_id");
        let mut issues = Vec::new();
        GaussDbBackupEncryptionSettings {
            desired: EncryptionStatus::Off,
            kms_key_id: Some("b82fa43f-f6e8-4ec4-9c31-231bc547c526".into()),
        }
        .validate("p", &mut issues);
        assert_eq!(issues.len(), 1);
    }

    #[test]
    fn status_parsing_ignores_case() {
        assert_eq!(EncryptionStatus::parse("ON"), Some(EncryptionStatus::On));
        assert_eq!(EncryptionStatus::parse("off"), Some(EncryptionStatus::Off));
        assert_eq!(EncryptionStatus::parse("maybe"), None);
    }
}
