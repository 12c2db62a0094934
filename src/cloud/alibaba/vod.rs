//! `alibaba-vod`: one VOD domain's HTTPS certificate, set with SetVodDomainSSLCertificate
//! (SSLProtocol on, `upload` or `cas`, optional `Env = staging`) and read back with
//! DescribeVodDomainCertificateInfo. VOD domain APIs live only in cn-shanghai.
//!
//! An `upload` that VOD refuses as a duplicate (seed 001: `CertNameAlreadyExists`,
//! `Certificate.Duplicated`, `CertificateContent.Duplicated`) never parks the target: the
//! live state decides. A domain already serving the certificate (a replay whose first reply
//! was lost) is done; otherwise the certificate VOD already holds is ours or an identical
//! copy, and the same domain is set through the documented `cas` path instead (the bundle
//! uploaded once to cas, referenced by `CertId`), which no name or content check refuses.

use super::cas;
use super::cdn::{
    already_served, cert_name, cert_region, live_from_cert_infos, validate_cert_region,
    validate_domain, CertType, DUPLICATE_CODES,
};
use super::client::{AlibabaClient, Product};
use crate::cert::CertificateBundle;
use crate::cloud::{LiveCertificate, Target};
use crate::error::CloudError;
use crate::settings::ConfigIssue;
use async_trait::async_trait;
use std::sync::Arc;

/// Where the certificate goes live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VodEnv {
    #[default]
    Production,
    /// The canary environment (`Env=staging`).
    Staging,
}

/// The kind-specific keys of an `alibaba-vod` target.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VodSettings {
    pub domain: String,
    #[serde(default)]
    pub cert_type: CertType,
    #[serde(default)]
    pub env: VodEnv,
    #[serde(default)]
    pub cert_region: Option<String>,
}

impl VodSettings {
    pub fn validate(&self, path: &str, issues: &mut Vec<ConfigIssue>) {
        validate_domain(&format!("{path}.domain"), &self.domain, issues);
        validate_cert_region(path, self.cert_region.as_deref(), self.cert_type, issues);
    }
}

pub struct VodTarget {
    name: String,
    settings: VodSettings,
    client: Arc<AlibabaClient>,
}

impl VodTarget {
    pub fn new(name: impl Into<String>, settings: VodSettings, client: Arc<AlibabaClient>) -> Self {
        Self {
            name: name.into(),
            settings,
            client,
        }
    }
}

#[async_trait]
impl Target for VodTarget {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "alibaba-vod"
    }

    async fn observe(&self) -> Result<LiveCertificate, CloudError> {
        let reply = self
            .client
            .call(
                Product::Vod,
                "DescribeVodDomainCertificateInfo",
                &[("DomainName", self.settings.domain.clone())],
            )
            .await?;
        live_from_cert_infos("DescribeVodDomainCertificateInfo", &reply)
    }

    async fn deploy(&self, bundle: &CertificateBundle) -> Result<(), CloudError> {
        let sent = self.set(bundle, self.settings.cert_type).await;
        match sent {
            Err(error)
                if self.settings.cert_type == CertType::Upload
                    && DUPLICATE_CODES.contains(&error.code.as_str()) =>
            {
                self.converge_after_duplicate(bundle, error).await
            }
            other => other,
        }
    }
}

impl VodTarget {
    /// SetVodDomainSSLCertificate with `bundle` as `cert_type` says.
    async fn set(&self, bundle: &CertificateBundle, cert_type: CertType) -> Result<(), CloudError> {
        let mut params = vec![
            ("DomainName", self.settings.domain.clone()),
            ("SSLProtocol", "on".to_owned()),
            ("CertType", cert_type.as_str().to_owned()),
        ];
        match cert_type {
            CertType::Upload => {
                params.push(("CertName", cert_name(bundle)));
                params.push(("SSLPub", bundle.fullchain_pem()));
                params.push(("SSLPri", bundle.key_pem.expose().to_owned()));
            }
            CertType::Cas => {
                let region = cert_region(self.settings.cert_region.as_deref());
                let id = cas::ensure_uploaded(&self.client, region, bundle).await?;
                params.push(("CertId", id));
                params.push(("CertRegion", region.to_owned()));
            }
        }
        if self.settings.env == VodEnv::Staging {
            params.push(("Env", "staging".to_owned()));
        }
        self.client
            .call(Product::Vod, "SetVodDomainSSLCertificate", &params)
            .await?;
        Ok(())
    }

    /// A duplicate refusal of an upload: done when the domain already serves `bundle`, else
    /// the domain is set through cas (see the module doc). What cas refuses is returned.
    async fn converge_after_duplicate(
        &self,
        bundle: &CertificateBundle,
        error: CloudError,
    ) -> Result<(), CloudError> {
        if already_served(self, bundle, &error).await? {
            return Ok(());
        }
        tracing::info!(
            target = %self.name,
            code = %error.code,
            "VOD holds this certificate already: setting the domain through cas instead"
        );
        self.set(bundle, CertType::Cas).await
    }
}

/// `kind = "alibaba-vod"`: its line in `cloud::registry::TARGETS`.
pub const PRODUCT: crate::cloud::registry::TargetKind = crate::cloud::registry::TargetKind {
    kind: "alibaba-vod",
    variant: "AlibabaVod",
    vendor: "alibaba",
    provider: Some(crate::cloud::account::Provider::Alibaba),
    parse: crate::cloud::registry::parse_settings::<VodSettings>,
};

impl crate::cloud::registry::TargetProduct for VodSettings {
    fn check(&self, path: &str, issues: &mut Vec<ConfigIssue>) {
        self.validate(path, issues);
    }

    fn build(
        &self,
        spec: crate::cloud::registry::TargetSpec<'_>,
        _window: Option<crate::window::MaintenanceWindow>,
        accounts: &dyn crate::cloud::registry::Accounts,
    ) -> Result<Arc<dyn Target>, String> {
        let client = accounts.alibaba(spec.credentials)?;
        Ok(Arc::new(VodTarget::new(spec.name, self.clone(), client)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_and_validate() {
        let settings: VodSettings =
            toml::from_str("domain = \"v.example.com\"\nenv = \"staging\"").unwrap();
        assert_eq!(settings.env, VodEnv::Staging);
        let mut issues = Vec::new();
        settings.validate("target[0]", &mut issues);
        assert!(issues.is_empty());
        let bad: VodSettings =
            toml::from_str("domain = \"v.example.com\"\ncert_region = \"cn-hangzhou\"").unwrap();
        bad.validate("target[1]", &mut issues);
        assert_eq!(issues[0].path, "target[1].cert_region");
    }
}
