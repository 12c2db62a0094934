//! `alibaba-rds`: a custom server certificate on an RDS instance via ModifyDBInstanceSSL
//! (CAType custom, ServerCert, ServerKey, ConnectionString, SSLEnabled 1) plus the optional
//! PostgreSQL client-CA options. SQL Server takes its custom certificate only as a PFX file
//! in OSS (`Certificate`, `PassWord`): the target builds the PFX under a fresh random
//! password, uploads it to the configured bucket ([`super::oss`]) and names it. The change can restart the instance, so deploy honours the
//! maintenance window and waits for `Running` before and after (DescribeDBInstanceAttribute).
//! Live state comes from DescribeDBInstanceSSL: `SSLEnabled` (Yes/No or on/off) and
//! `SSLExpireTime`, plus the PEM where PostgreSQL returns it.
//!
//! ModifyDBInstanceSSL's parameters differ per engine ([`ENGINE_PARAMETERS`]). The target
//! learns the engine once (DescribeDBInstanceAttribute `Engine`) and refuses, before any
//! write, a setting the engine cannot take: an `unsupported` error naming the key, which
//! `plan` shows since `observe` checks it first. A config that states `engine` is checked
//! offline by `check` too.

use super::client::{bad_reply, parse_acs_date, str_at, AlibabaClient, Product};
use crate::cert::bundle::LeafInfo;
use crate::cert::CertificateBundle;
use crate::cloud::{LiveCertificate, Target};
use crate::error::{CloudError, ErrorClass};
use crate::settings::ConfigIssue;
use crate::window::MaintenanceWindow;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

/// PostgreSQL authentication methods accepted by `ACL` and `ReplicationACL`.
const ACL_VALUES: [&str; 4] = ["cert", "prefer", "verify-ca", "verify-full"];

/// The engines ModifyDBInstanceSSL serves (seed 000 "适用引擎"), spelled as
/// DescribeDBInstanceAttribute's `Engine` (reference §4.3; `MariaDB` exists but is not served).
pub const ENGINES: &[&str] = &["MySQL", "PostgreSQL", "SQLServer"];

/// Which engines take each setting: (ModifyDBInstanceSSL parameter, config key, engines).
/// `ServerCert` is the custom certificate every deploy sends (with `CAType`, `ServerKey`).
pub const ENGINE_PARAMETERS: &[(&str, &str, &[&str])] = &[
    // Seed 000: CAType, ServerCert, ServerKey "支持 RDS MySQL 和 RDS PostgreSQL 云盘版";
    // SQL Server takes a custom certificate only as a PFX in OSS (`Certificate`, `PassWord`).
    ("ServerCert", "engine", &["MySQL", "PostgreSQL"]),
    // Seed 000 `Certificate` "自定义证书为pfx格式" in OSS; reference §4.1: SQL Server.
    ("Certificate", "oss_bucket", &["SQLServer"]),
    // Seed 000: the client CA, CRL and ACL parameters are "RDS PostgreSQL 云盘版" only.
    ("ClientCACert", "client_ca_cert", &["PostgreSQL"]),
    ("ClientCertRevocationList", "client_crl", &["PostgreSQL"]),
    ("ACL", "acl", &["PostgreSQL"]),
    ("ReplicationACL", "replication_acl", &["PostgreSQL"]),
    // Seed 000 (current zh page) says PostgreSQL cloud disk; reference §4.1: SDK 16.0.2
    // documents MySQL, PostgreSQL and SQL Server. The newer SDK wins: it widens.
    (
        "ForceEncryption",
        "force_encryption",
        &["MySQL", "PostgreSQL", "SQLServer"],
    ),
    // Seed 000 says PostgreSQL cloud disk; reference §4.1/§4.2: SQL Server's minimum TLS.
    ("TlsVersion", "tls_version", &["PostgreSQL", "SQLServer"]),
];

/// The engine name of `ENGINES` that `name` spells (case-insensitively).
pub fn known_engine(name: &str) -> Option<&'static str> {
    ENGINES
        .iter()
        .copied()
        .find(|engine| engine.eq_ignore_ascii_case(name))
}

/// The kind-specific keys of an `alibaba-rds` target.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RdsSettings {
    pub instance_id: String,
    /// The endpoint the server certificate is (re)issued for.
    pub connection_string: String,
    /// PostgreSQL: client CA certificate (PEM text); enables ClientCAEnabled.
    #[serde(default)]
    pub client_ca_cert: Option<String>,
    /// PostgreSQL: client certificate revocation list (PEM); needs `client_ca_cert`.
    #[serde(default)]
    pub client_crl: Option<String>,
    /// PostgreSQL: `cert`, `prefer`, `verify-ca` or `verify-full`; needs `client_ca_cert`.
    #[serde(default)]
    pub acl: Option<String>,
    #[serde(default)]
    pub replication_acl: Option<String>,
    #[serde(default)]
    pub force_encryption: Option<bool>,
    /// Minimum TLS version: `1.0`, `1.1` or `1.2`.
    #[serde(default)]
    pub tls_version: Option<String>,
    /// `MySQL`, `PostgreSQL` or `SQLServer`: lets `check` refuse settings the engine cannot
    /// take before the instance is asked; must match the instance's engine.
    #[serde(default)]
    pub engine: Option<String>,
    /// SQL Server: the OSS bucket the certificate's PFX is uploaded to (with `oss_region`).
    #[serde(default)]
    pub oss_bucket: Option<String>,
    /// SQL Server: the bucket's region, e.g. `cn-beijing`.
    #[serde(default)]
    pub oss_region: Option<String>,
    /// SQL Server: RDS reads the PFX over the bucket's internal endpoint (same region).
    #[serde(default)]
    pub oss_internal: bool,
    /// How often to poll the instance status while it applies the change.
    #[serde(default = "default_poll_secs")]
    pub poll_interval_secs: f64,
    /// How long to wait for `Running` after the change.
    #[serde(default = "default_wait_secs")]
    pub wait_timeout_secs: u64,
}

fn default_poll_secs() -> f64 {
    5.0
}

fn default_wait_secs() -> u64 {
    900
}

impl RdsSettings {
    pub fn validate(&self, path: &str, issues: &mut Vec<ConfigIssue>) {
        if self.instance_id.trim().is_empty() {
            issues.push(ConfigIssue::new(
                format!("{path}.instance_id"),
                "must not be empty",
            ));
        }
        super::cdn::validate_domain(
            &format!("{path}.connection_string"),
            &self.connection_string,
            issues,
        );
        let has_ca = self.client_ca_cert.is_some();
        // ModifyDBInstanceSSL: a CRL and the ACLs are allowed only with a client CA.
        if self.client_crl.is_some() && !has_ca {
            issues.push(ConfigIssue::new(
                format!("{path}.client_crl"),
                "a client CRL needs client_ca_cert",
            ));
        }
        for (key, value) in [
            ("acl", &self.acl),
            ("replication_acl", &self.replication_acl),
        ] {
            if let Some(value) = value {
                if !has_ca {
                    issues.push(ConfigIssue::new(
                        format!("{path}.{key}"),
                        format!("{key} needs client_ca_cert"),
                    ));
                }
                if !ACL_VALUES.contains(&value.as_str()) {
                    issues.push(ConfigIssue::new(
                        format!("{path}.{key}"),
                        format!("must be one of {}", ACL_VALUES.join(", ")),
                    ));
                }
            }
        }
        if let Some(version) = &self.tls_version {
            if !matches!(version.as_str(), "1.0" | "1.1" | "1.2") {
                issues.push(ConfigIssue::new(
                    format!("{path}.tls_version"),
                    "must be \"1.0\", \"1.1\" or \"1.2\"",
                ));
            }
        }
        if let Some(engine) = &self.engine {
            match known_engine(engine) {
                Some(engine) => {
                    for refusal in self.refusals_for(engine) {
                        issues.push(ConfigIssue::new(
                            format!("{path}.{}", refusal.key),
                            refusal.message,
                        ));
                    }
                }
                None => issues.push(ConfigIssue::new(
                    format!("{path}.engine"),
                    format!(
                        "must be one of {} (the engines ModifyDBInstanceSSL serves)",
                        ENGINES.join(", ")
                    ),
                )),
            }
        }
        self.validate_oss(path, issues);
        if self.poll_interval_secs.is_nan() || self.poll_interval_secs <= 0.0 {
            issues.push(ConfigIssue::new(
                format!("{path}.poll_interval_secs"),
                "must be positive",
            ));
        }
    }

    /// `oss_bucket` and `oss_region` come together and have OSS's shapes (bucket names: 3
    /// to 63 lowercase letters, digits and hyphens, not starting or ending with a hyphen).
    fn validate_oss(&self, path: &str, issues: &mut Vec<ConfigIssue>) {
        match (&self.oss_bucket, &self.oss_region) {
            (Some(_), None) => issues.push(ConfigIssue::new(
                format!("{path}.oss_region"),
                "oss_bucket needs oss_region (the bucket's region, e.g. \"cn-beijing\")",
            )),
            (None, Some(_)) => issues.push(ConfigIssue::new(
                format!("{path}.oss_region"),
                "oss_region applies only with oss_bucket",
            )),
            _ => {}
        }
        if let Some(bucket) = &self.oss_bucket {
            let shaped = (3..=63).contains(&bucket.len())
                && bucket
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !bucket.starts_with('-')
                && !bucket.ends_with('-');
            if !shaped {
                issues.push(ConfigIssue::new(
                    format!("{path}.oss_bucket"),
                    "must be 3 to 63 lowercase letters, digits and hyphens (an OSS bucket name)",
                ));
            }
        }
        if let Some(region) = &self.oss_region {
            let shaped = !region.is_empty()
                && region
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !shaped {
                issues.push(ConfigIssue::new(
                    format!("{path}.oss_region"),
                    "must be a region id such as \"cn-beijing\"",
                ));
            }
        }
        if self.oss_internal && self.oss_bucket.is_none() {
            issues.push(ConfigIssue::new(
                format!("{path}.oss_internal"),
                "oss_internal applies only with oss_bucket",
            ));
        }
    }

    /// Where the SQL Server PFX goes, when the config names a bucket.
    fn oss_location(&self) -> Option<super::oss::OssLocation> {
        Some(super::oss::OssLocation {
            region: self.oss_region.clone()?,
            bucket: self.oss_bucket.clone()?,
            internal: self.oss_internal,
        })
    }

    /// Whether the config sets the key of `parameter` (a certificate is always set: as a
    /// PFX in OSS when a bucket is named, else as PEM).
    fn sets(&self, parameter: &str) -> bool {
        match parameter {
            "ServerCert" => self.oss_bucket.is_none(),
            "Certificate" => self.oss_bucket.is_some(),
            "ClientCACert" => self.client_ca_cert.is_some(),
            "ClientCertRevocationList" => self.client_crl.is_some(),
            "ACL" => self.acl.is_some(),
            "ReplicationACL" => self.replication_acl.is_some(),
            "ForceEncryption" => self.force_encryption.is_some(),
            "TlsVersion" => self.tls_version.is_some(),
            _ => false,
        }
    }

    /// What this config asks that `engine` cannot do, by config key.
    pub fn refusals_for(&self, engine: &str) -> Vec<EngineRefusal> {
        ENGINE_PARAMETERS
            .iter()
            .filter(|(parameter, _, engines)| self.sets(parameter) && !engines.contains(&engine))
            .map(|(parameter, key, engines)| EngineRefusal {
                key,
                message: if *parameter == "ServerCert" {
                    format!(
                        "{engine} does not take a custom certificate as PEM (ModifyDBInstanceSSL \
                         ServerCert: {} only); it takes a PFX file in OSS: set oss_bucket and \
                         oss_region, and certkeeper uploads one there",
                        engines.join(", ")
                    )
                } else {
                    format!(
                        "{engine} does not take {key} (ModifyDBInstanceSSL {parameter}: {} only)",
                        engines.join(", ")
                    )
                },
            })
            .collect()
    }

    /// The ModifyDBInstanceSSL parameters for `engine` (already checked to take them).
    fn params(&self, certificate: &Custom<'_>, engine: &str) -> Vec<(&'static str, String)> {
        let mut params = vec![
            ("DBInstanceId", self.instance_id.clone()),
            ("ConnectionString", self.connection_string.clone()),
            ("SSLEnabled", "1".to_owned()),
        ];
        match certificate {
            Custom::Pem(bundle) => {
                params.push(("CAType", "custom".to_owned()));
                params.push(("ServerCert", bundle.fullchain_pem()));
                params.push(("ServerKey", bundle.key_pem.expose().to_owned()));
            }
            Custom::Pfx {
                certificate,
                password,
            } => {
                params.push(("Certificate", certificate.clone()));
                params.push(("PassWord", password.expose().to_owned()));
            }
        }
        if let Some(ca) = &self.client_ca_cert {
            params.push(("ClientCAEnabled", "1".to_owned()));
            params.push(("ClientCACert", ca.clone()));
        }
        if let Some(crl) = &self.client_crl {
            params.push(("ClientCrlEnabled", "1".to_owned()));
            params.push(("ClientCertRevocationList", crl.clone()));
        }
        // PostgreSQL keeps a client CA or CRL set earlier until told otherwise: a config that
        // drops them turns them off (a CRL only while the client CA stays, seed 000).
        if engine == "PostgreSQL" {
            match (&self.client_ca_cert, &self.client_crl) {
                (None, _) => params.push(("ClientCAEnabled", "0".to_owned())),
                (Some(_), None) => params.push(("ClientCrlEnabled", "0".to_owned())),
                (Some(_), Some(_)) => {}
            }
        }
        if let Some(acl) = &self.acl {
            params.push(("ACL", acl.clone()));
        }
        if let Some(acl) = &self.replication_acl {
            params.push(("ReplicationACL", acl.clone()));
        }
        if let Some(force) = self.force_encryption {
            params.push(("ForceEncryption", if force { "1" } else { "0" }.to_owned()));
        }
        if let Some(version) = &self.tls_version {
            params.push(("TlsVersion", version.clone()));
        }
        params
    }
}

/// The custom certificate of a ModifyDBInstanceSSL call: PEM text (MySQL, PostgreSQL) or
/// the OSS location of an uploaded PFX and its password (SQL Server).
enum Custom<'a> {
    Pem(&'a CertificateBundle),
    Pfx {
        certificate: String,
        password: &'a crate::secret::Secret,
    },
}

/// A setting an engine cannot take: the config key and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineRefusal {
    pub key: &'static str,
    pub message: String,
}

pub struct RdsTarget {
    name: String,
    settings: RdsSettings,
    client: Arc<AlibabaClient>,
    window: Option<MaintenanceWindow>,
    /// The instance's engine once learnt (it does not change under an instance id).
    engine: std::sync::Mutex<Option<&'static str>>,
}

impl RdsTarget {
    pub fn new(name: impl Into<String>, settings: RdsSettings, client: Arc<AlibabaClient>) -> Self {
        Self {
            name: name.into(),
            settings,
            client,
            window: None,
            engine: std::sync::Mutex::new(None),
        }
    }

    /// Deploys only while `window` is open (the change may restart the instance).
    pub fn with_maintenance_window(mut self, window: Option<MaintenanceWindow>) -> Self {
        self.window = window;
        self
    }

    /// DescribeDBInstanceAttribute's `Items.DBInstanceAttribute[0].<field>`.
    async fn attribute(&self, field: &str) -> Result<String, CloudError> {
        let reply = self
            .client
            .call(
                Product::Rds,
                "DescribeDBInstanceAttribute",
                &[("DBInstanceId", self.settings.instance_id.clone())],
            )
            .await?;
        reply
            .get("Items")
            .and_then(|items| items.get("DBInstanceAttribute"))
            .and_then(|list| list.as_array())
            .and_then(|list| list.first())
            .and_then(|attribute| str_at(attribute, &[field]))
            .map(str::to_owned)
            .ok_or_else(|| bad_reply("DescribeDBInstanceAttribute", field))
    }

    /// DescribeDBInstanceAttribute → `DBInstanceStatus`.
    pub async fn status(&self) -> Result<String, CloudError> {
        self.attribute("DBInstanceStatus").await
    }

    /// The instance's engine as DescribeDBInstanceAttribute reports it (asked once per
    /// target), `unsupported` when ModifyDBInstanceSSL does not serve it. `check` asks it
    /// too, to refuse what the engine cannot take before `run` does.
    pub async fn reported_engine(&self) -> Result<&'static str, CloudError> {
        let known = *self
            .engine
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(engine) = known {
            return Ok(engine);
        }
        let reported = self.attribute("Engine").await?;
        let engine = known_engine(&reported).ok_or_else(|| {
            self.engine_error(
                ErrorClass::Unsupported,
                format!(
                    "instance {} runs {reported}; ModifyDBInstanceSSL serves {}",
                    self.settings.instance_id,
                    ENGINES.join(", ")
                ),
            )
        })?;
        *self
            .engine
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(engine);
        Ok(engine)
    }

    /// The instance's engine (learnt once), after checking the config asks nothing of it
    /// that it cannot do: `unsupported` naming the key otherwise, before any write.
    pub async fn engine(&self) -> Result<&'static str, CloudError> {
        let engine = self.reported_engine().await?;
        if let Some(configured) = &self.settings.engine {
            if !configured.eq_ignore_ascii_case(engine) {
                return Err(self.engine_error(
                    ErrorClass::Invalid,
                    format!(
                        "target {}: engine = \"{configured}\" but instance {} runs {engine}",
                        self.name, self.settings.instance_id
                    ),
                ));
            }
        }
        let refusals = self.settings.refusals_for(engine);
        if !refusals.is_empty() {
            let list: Vec<String> = refusals
                .iter()
                .map(|refusal| format!("{}: {}", refusal.key, refusal.message))
                .collect();
            return Err(self.engine_error(
                ErrorClass::Unsupported,
                format!(
                    "target {} (instance {}): {}",
                    self.name,
                    self.settings.instance_id,
                    list.join("; ")
                ),
            ));
        }
        Ok(engine)
    }

    fn engine_error(&self, class: ErrorClass, message: String) -> CloudError {
        CloudError::new(
            "alibaba",
            "DescribeDBInstanceAttribute",
            class,
            "EngineMismatch",
            message,
        )
    }

    fn busy(&self, status: &str) -> CloudError {
        CloudError::new(
            "alibaba",
            "DescribeDBInstanceAttribute",
            ErrorClass::Busy,
            "InstanceNotRunning",
            format!(
                "instance {} is {status}, not Running",
                self.settings.instance_id
            ),
        )
    }

    /// Polls until the instance is `Running` again (a status poll, not a retry).
    async fn wait_running(&self) -> Result<(), CloudError> {
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs(self.settings.wait_timeout_secs);
        let interval = Duration::from_secs_f64(self.settings.poll_interval_secs.max(0.001));
        loop {
            let status = self.status().await?;
            if status == "Running" {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(self.busy(&status));
            }
            tokio::time::sleep(interval).await;
        }
    }
}

#[async_trait]
impl Target for RdsTarget {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "alibaba-rds"
    }

    async fn observe(&self) -> Result<LiveCertificate, CloudError> {
        // First, so `plan` and every pass say what the engine cannot do.
        self.engine().await?;
        let reply = self
            .client
            .call(
                Product::Rds,
                "DescribeDBInstanceSSL",
                &[("DBInstanceId", self.settings.instance_id.clone())],
            )
            .await?;
        let enabled = str_at(&reply, &["SSLEnabled"])
            .ok_or_else(|| bad_reply("DescribeDBInstanceSSL", "SSLEnabled"))?;
        // MySQL and SQL Server answer Yes/No, PostgreSQL on/off.
        let ssl_enabled = matches!(enabled.to_ascii_lowercase().as_str(), "yes" | "on" | "1");
        let leaf = str_at(&reply, &["ServerCert"])
            .filter(|pem| pem.contains("BEGIN CERTIFICATE"))
            .and_then(|pem| LeafInfo::from_pem("served certificate", pem).ok());
        Ok(LiveCertificate {
            ssl_enabled,
            fingerprint: leaf.as_ref().map(|leaf| leaf.fingerprint.clone()),
            not_after: str_at(&reply, &["SSLExpireTime"])
                .and_then(parse_acs_date)
                .or(leaf.map(|leaf| leaf.not_after)),
        })
    }

    async fn deploy(&self, bundle: &CertificateBundle) -> Result<(), CloudError> {
        if let Some(window) = &self.window {
            let now = time::OffsetDateTime::now_utc();
            if !window.is_open(now) {
                return Err(CloudError::new(
                    "certkeeper",
                    "ModifyDBInstanceSSL",
                    ErrorClass::Busy,
                    "OutsideMaintenanceWindow",
                    format!(
                        "maintenance window closed; next opens {:?}",
                        window.next_open(now)
                    ),
                ));
            }
        }
        let engine = self.engine().await?;
        let status = self.status().await?;
        if status != "Running" {
            return Err(self.busy(&status));
        }
        match self.settings.oss_location() {
            Some(location) => {
                let pfx = super::oss::build_pfx(bundle)?;
                let object = super::oss::object_name(&self.settings.instance_id, bundle);
                super::oss::put_object(&self.client, &location, &object, pfx.der).await?;
                let certificate = Custom::Pfx {
                    certificate: location.certificate_parameter(&object),
                    password: &pfx.password,
                };
                self.modify(&certificate, engine).await?;
            }
            None => self.modify(&Custom::Pem(bundle), engine).await?,
        }
        self.wait_running().await
    }
}

impl RdsTarget {
    async fn modify(&self, certificate: &Custom<'_>, engine: &str) -> Result<(), CloudError> {
        self.client
            .call(
                Product::Rds,
                "ModifyDBInstanceSSL",
                &self.settings.params(certificate, engine),
            )
            .await?;
        Ok(())
    }
}

/// `kind = "alibaba-rds"`: its line in `cloud::registry::TARGETS`.
pub const PRODUCT: crate::cloud::registry::TargetKind = crate::cloud::registry::TargetKind {
    kind: "alibaba-rds",
    variant: "AlibabaRds",
    vendor: "alibaba",
    provider: Some(crate::cloud::account::Provider::Alibaba),
    parse: crate::cloud::registry::parse_settings::<RdsSettings>,
};

impl crate::cloud::registry::TargetProduct for RdsSettings {
    fn check(&self, path: &str, issues: &mut Vec<ConfigIssue>) {
        self.validate(path, issues);
    }

    fn build(
        &self,
        spec: crate::cloud::registry::TargetSpec<'_>,
        window: Option<crate::window::MaintenanceWindow>,
        accounts: &dyn crate::cloud::registry::Accounts,
    ) -> Result<Arc<dyn Target>, String> {
        let client = accounts.alibaba(spec.credentials)?;
        Ok(Arc::new(
            RdsTarget::new(spec.name, self.clone(), client).with_maintenance_window(window),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dependencies_are_checked_at_validation() {
        let settings: RdsSettings = toml::from_str(
            "instance_id = \"rm-1\"\nconnection_string = \"rm-1.mysql.rds.aliyuncs.com\"\nclient_crl = \"x\"\nacl = \"verify-ca\"\nreplication_acl = \"nope\"\ntls_version = \"1.3\"",
        )
        .unwrap();
        let mut issues = Vec::new();
        settings.validate("target[2]", &mut issues);
        let paths: Vec<_> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "target[2].client_crl",
                "target[2].acl",
                "target[2].replication_acl",
                "target[2].replication_acl",
                "target[2].tls_version"
            ]
        );
        let good: RdsSettings = toml::from_str(
            "instance_id = \"rm-1\"\nconnection_string = \"rm-1.pg.rds.aliyuncs.com\"\nclient_ca_cert = \"pem\"\nclient_crl = \"crl\"\nacl = \"cert\"",
        )
        .unwrap();
        let mut issues = Vec::new();
        good.validate("t", &mut issues);
        assert!(issues.is_empty(), "{issues:?}");
        let bundle = crate::cert::bundle::testing::fresh(&["rm-1.pg.rds.aliyuncs.com"]);
        let params = good.params(&Custom::Pem(&bundle), "PostgreSQL");
        assert!(params.contains(&("ClientCAEnabled", "1".to_owned())));
        assert!(params.contains(&("ClientCrlEnabled", "1".to_owned())));
        // Dropped from the config: turned off on PostgreSQL, never sent to MySQL.
        let plain: RdsSettings = toml::from_str(
            "instance_id = \"rm-1\"\nconnection_string = \"rm-1.pg.rds.aliyuncs.com\"",
        )
        .unwrap();
        assert!(plain
            .params(&Custom::Pem(&bundle), "PostgreSQL")
            .contains(&("ClientCAEnabled", "0".to_owned())));
        assert!(!plain
            .params(&Custom::Pem(&bundle), "MySQL")
            .iter()
            .any(|(name, _)| name.starts_with("Client")));
    }

    #[test]
    fn oss_keys_are_checked_and_choose_the_certificate_form() {
        let parse = |extra: &str| -> RdsSettings {
            toml::from_str(&format!(
                "instance_id = \"rm-1\"\nconnection_string = \"rm-1.sqlserver.rds.aliyuncs.com\"\n{extra}"
            ))
            .unwrap()
        };
        let paths = |settings: RdsSettings| {
            let mut issues = Vec::new();
            settings.validate("t", &mut issues);
            issues.into_iter().map(|i| i.path).collect::<Vec<_>>()
        };
        assert_eq!(paths(parse("oss_bucket = \"certs\"")), ["t.oss_region"]);
        assert_eq!(
            paths(parse("oss_region = \"cn-beijing\"")),
            ["t.oss_region"]
        );
        assert_eq!(
            paths(parse(
                "oss_bucket = \"Bad_Bucket\"\noss_region = \"cn beijing\""
            )),
            ["t.oss_bucket", "t.oss_region"]
        );
        assert_eq!(paths(parse("oss_internal = true")), ["t.oss_internal"]);
        let sqlserver = parse("oss_bucket = \"certs\"\noss_region = \"cn-beijing\"");
        assert!(paths(sqlserver.clone()).is_empty());
        assert!(sqlserver.refusals_for("SQLServer").is_empty());
        let refused: Vec<_> = sqlserver
            .refusals_for("MySQL")
            .into_iter()
            .map(|r| r.key)
            .collect();
        assert_eq!(refused, ["oss_bucket"]);
        let pem = parse("");
        assert_eq!(pem.refusals_for("SQLServer")[0].key, "engine");
        assert!(pem.refusals_for("SQLServer")[0]
            .message
            .contains("oss_bucket"));
        let password = crate::secret::Secret::new("pw");
        let params = sqlserver.params(
            &Custom::Pfx {
                certificate: "oss-cn-beijing.aliyuncs.com:certs:x.pfx".into(),
                password: &password,
            },
            "SQLServer",
        );
        let names: Vec<_> = params.iter().map(|(name, _)| *name).collect();
        assert_eq!(
            names,
            [
                "DBInstanceId",
                "ConnectionString",
                "SSLEnabled",
                "Certificate",
                "PassWord"
            ]
        );
    }
}
