//! `alibaba-cdn`: one CDN domain's HTTPS certificate. Live state from
//! DescribeDomainCertificateInfo (the served PEM, parsed locally: no serial is returned);
//! deploy with SetCdnDomainSSLCertificate (2018-05-10), PEMs inline (`upload`) or by cas id
//! (`cas`), or with the deprecated SetDomainServerCertificate (2018-05-10, `ForceSet=1`) when
//! `api = "legacy"`.

use super::cas;
use super::client::{bad_reply, str_at, AlibabaClient, Product};
use crate::cert::bundle::LeafInfo;
use crate::cert::CertificateBundle;
use crate::cloud::{LiveCertificate, Target};
use crate::error::{CloudError, ErrorClass};
use crate::settings::ConfigIssue;
use async_trait::async_trait;
use std::sync::Arc;

/// How the certificate reaches the domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertType {
    /// PEMs inline in the set call.
    #[default]
    Upload,
    /// Uploaded to the SSL Certificates Service once, referenced by CertId.
    Cas,
}

impl CertType {
    pub fn as_str(self) -> &'static str {
        match self {
            CertType::Upload => "upload",
            CertType::Cas => "cas",
        }
    }
}

/// Which CDN API sets the certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CdnApi {
    /// SetCdnDomainSSLCertificate (2018-05-10).
    #[default]
    Current,
    /// SetDomainServerCertificate (deprecated; called in 2018-05-10, which has `ForceSet`).
    Legacy,
}

/// The kind-specific keys of an `alibaba-cdn` target.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CdnSettings {
    pub domain: String,
    #[serde(default)]
    pub cert_type: CertType,
    #[serde(default)]
    pub api: CdnApi,
    /// With `cas`: delete certificates this daemon uploaded once unused.
    #[serde(default)]
    pub cleanup: bool,
    /// With `cas`: `cn-hangzhou` (default) or `ap-southeast-1`.
    #[serde(default)]
    pub cert_region: Option<String>,
}

impl CdnSettings {
    pub fn validate(&self, path: &str, issues: &mut Vec<ConfigIssue>) {
        validate_domain(&format!("{path}.domain"), &self.domain, issues);
        if self.api == CdnApi::Legacy && self.cert_type == CertType::Cas {
            issues.push(ConfigIssue::new(
                format!("{path}.cert_type"),
                "api = \"legacy\" supports only cert_type = \"upload\"",
            ));
        }
        if self.cleanup && self.cert_type != CertType::Cas {
            issues.push(ConfigIssue::new(
                format!("{path}.cleanup"),
                "cleanup applies only to cert_type = \"cas\"",
            ));
        }
        validate_cert_region(path, self.cert_region.as_deref(), self.cert_type, issues);
    }
}

/// The `CertRegion` values SetCdnDomainSSLCertificate and SetVodDomainSSLCertificate take
/// (the first is the default): the cas regions a certificate can be uploaded to.
pub const CERT_REGIONS: &[&str] = &["cn-hangzhou", "ap-southeast-1"];

/// The cas region of a target: its `cert_region`, else the documented default.
pub fn cert_region(configured: Option<&str>) -> &str {
    configured.unwrap_or(CERT_REGIONS[0])
}

pub(crate) fn validate_cert_region(
    path: &str,
    region: Option<&str>,
    cert_type: CertType,
    issues: &mut Vec<ConfigIssue>,
) {
    if let Some(region) = region {
        if !CERT_REGIONS.contains(&region) {
            issues.push(ConfigIssue::new(
                format!("{path}.cert_region"),
                "must be \"cn-hangzhou\" or \"ap-southeast-1\"",
            ));
        } else if cert_type != CertType::Cas {
            issues.push(ConfigIssue::new(
                format!("{path}.cert_region"),
                "applies only to cert_type = \"cas\"",
            ));
        }
    }
}

/// Checks a domain name with the config's shared syntax rules (no wildcard).
pub fn validate_domain(path: &str, domain: &str, issues: &mut Vec<ConfigIssue>) {
    crate::settings::check_domain(domain, path, false, issues);
}

/// The certificate name for the set call: unique per certificate, at most 128 characters.
pub fn cert_name(bundle: &CertificateBundle) -> String {
    let fingerprint = bundle.fingerprint();
    format!(
        "certkeeper-{}-{}",
        &fingerprint[..fingerprint.len().min(16)],
        bundle.info.not_after.unix_timestamp()
    )
}

/// Reads `CertInfos.CertInfo[0]` of a Describe…CertificateInfo reply (CDN and VOD share it).
pub(crate) fn live_from_cert_infos(
    operation: &str,
    reply: &serde_json::Value,
) -> Result<LiveCertificate, CloudError> {
    let info = reply
        .get("CertInfos")
        .and_then(|infos| infos.get("CertInfo"))
        .and_then(|list| list.as_array())
        .and_then(|list| list.first());
    let Some(info) = info else {
        if reply.get("CertInfos").is_some() {
            return Ok(LiveCertificate::default());
        }
        return Err(bad_reply(operation, "CertInfos"));
    };
    let ssl_enabled = str_at(info, &["ServerCertificateStatus"])
        .is_some_and(|status| status.eq_ignore_ascii_case("on"));
    let leaf = str_at(info, &["ServerCertificate"])
        .filter(|pem| !pem.trim().is_empty())
        .and_then(|pem| LeafInfo::from_pem("served certificate", pem).ok());
    Ok(LiveCertificate {
        ssl_enabled,
        fingerprint: leaf.as_ref().map(|leaf| leaf.fingerprint.clone()),
        not_after: leaf
            .map(|leaf| leaf.not_after)
            .or_else(|| str_at(info, &["CertExpireTime"]).and_then(super::client::parse_acs_date)),
    })
}

pub struct CdnTarget {
    name: String,
    settings: CdnSettings,
    client: Arc<AlibabaClient>,
}

impl CdnTarget {
    pub fn new(name: impl Into<String>, settings: CdnSettings, client: Arc<AlibabaClient>) -> Self {
        Self {
            name: name.into(),
            settings,
            client,
        }
    }

    /// SetCdnDomainSSLCertificate with `bundle` as `cert_type` says; the cas id when cas.
    async fn set_current(
        &self,
        bundle: &CertificateBundle,
        cert_type: CertType,
    ) -> Result<Option<String>, CloudError> {
        let mut params = vec![
            ("DomainName", self.settings.domain.clone()),
            ("SSLProtocol", "on".to_owned()),
            ("CertType", cert_type.as_str().to_owned()),
        ];
        let mut cas_id = None;
        match cert_type {
            CertType::Upload => {
                params.push(("CertName", cert_name(bundle)));
                params.push(("SSLPub", bundle.fullchain_pem()));
                params.push(("SSLPri", bundle.key_pem.expose().to_owned()));
            }
            CertType::Cas => {
                let region = cert_region(self.settings.cert_region.as_deref());
                let id = cas::ensure_uploaded(&self.client, region, bundle).await?;
                params.push(("CertId", id.clone()));
                params.push(("CertRegion", region.to_owned()));
                cas_id = Some(id);
            }
        }
        self.client
            .call(Product::Cdn, "SetCdnDomainSSLCertificate", &params)
            .await?;
        Ok(cas_id)
    }

    async fn set_legacy(&self, bundle: &CertificateBundle) -> Result<(), CloudError> {
        let name = cert_name(bundle);
        let sent = self
            .client
            .call(
                Product::Cdn,
                "SetDomainServerCertificate",
                &[
                    ("DomainName", self.settings.domain.clone()),
                    ("ServerCertificateStatus", "on".to_owned()),
                    ("CertType", "upload".to_owned()),
                    ("CertName", name.clone()),
                    ("ServerCertificate", bundle.fullchain_pem()),
                    ("PrivateKey", bundle.key_pem.expose().to_owned()),
                    // Seed 002: "1" skips the duplicate-name check and overwrites the
                    // certificate of that name. Our names are one per certificate, so the
                    // only same-name certificate is this one: a replay or a second domain.
                    ("ForceSet", "1".to_owned()),
                ],
            )
            .await;
        match sent {
            Err(error) if DUPLICATE_CODES.contains(&error.code.as_str()) => {
                self.converge_after_duplicate(bundle, &name, error).await
            }
            other => other.map(|_| ()),
        }
    }

    /// A duplicate refusal of the legacy set: done if the domain already serves `bundle`
    /// (the earlier call of a replay took effect); else a name duplicate is ours (our names
    /// are one per certificate) and is retried on a timer, never parked until a config
    /// change. A content duplicate under another name is not ours and stays `invalid`.
    async fn converge_after_duplicate(
        &self,
        bundle: &CertificateBundle,
        name: &str,
        mut error: CloudError,
    ) -> Result<(), CloudError> {
        if already_served(self, bundle, &error).await? {
            return Ok(());
        }
        if error.code == "CertificateContent.Duplicated" {
            error.message = format!(
                "{} (the same certificate is stored in CDN under another name than {name}: \
                 delete that copy in the CDN console, or use cert_type = \"cas\")",
                error.message
            );
        } else {
            error.class = ErrorClass::Transient;
            error.message = format!(
                "{} (certificate {name} is ours; the domain does not serve it yet: retrying)",
                error.message
            );
        }
        Err(error)
    }
}

/// Whether `target` already serves `bundle` after the duplicate refusal `error` (the
/// earlier call of a replay took effect), logged as the reason to ignore the refusal.
pub(crate) async fn already_served(
    target: &dyn Target,
    bundle: &CertificateBundle,
    error: &CloudError,
) -> Result<bool, CloudError> {
    let served = target.observe().await?.serves(bundle);
    if served {
        tracing::info!(
            target = %target.name(),
            code = %error.code,
            "the domain already serves the certificate: duplicate refusal ignored"
        );
    }
    Ok(served)
}

/// The duplicate refusals of an uploaded certificate: SetDomainServerCertificate's (seed
/// 002) and SetVodDomainSSLCertificate's (seed 001, which adds `CertNameAlreadyExists`).
pub const DUPLICATE_CODES: &[&str] = &[
    "Certificate.Duplicated",
    "CertNameAlreadyExists",
    "CertificateContent.Duplicated",
];

#[async_trait]
impl Target for CdnTarget {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "alibaba-cdn"
    }

    async fn observe(&self) -> Result<LiveCertificate, CloudError> {
        let reply = self
            .client
            .call(
                Product::Cdn,
                "DescribeDomainCertificateInfo",
                &[("DomainName", self.settings.domain.clone())],
            )
            .await?;
        live_from_cert_infos("DescribeDomainCertificateInfo", &reply)
    }

    async fn deploy(&self, bundle: &CertificateBundle) -> Result<(), CloudError> {
        match self.settings.api {
            CdnApi::Legacy => self.set_legacy(bundle).await,
            CdnApi::Current => {
                let cas_id = match self.set_current(bundle, self.settings.cert_type).await {
                    // An upload refused as a duplicate (the seeds list these codes for the
                    // upload APIs): done when already served, else set through cas, as VOD.
                    Err(error)
                        if self.settings.cert_type == CertType::Upload
                            && DUPLICATE_CODES.contains(&error.code.as_str()) =>
                    {
                        if already_served(self, bundle, &error).await? {
                            return Ok(());
                        }
                        tracing::info!(
                            target = %self.name,
                            code = %error.code,
                            "CDN holds this certificate already: setting the domain through cas instead"
                        );
                        self.set_current(bundle, CertType::Cas).await?
                    }
                    other => other?,
                };
                // Cleanup only after the cut-over is verified, so a failed switch never
                // leaves the domain pointing at a deleted certificate.
                if let (true, Some(id)) = (self.settings.cleanup, cas_id) {
                    if self.observe().await?.serves(bundle) {
                        let region = cert_region(self.settings.cert_region.as_deref());
                        let deleted = cas::cleanup(&self.client, region, &id).await?;
                        tracing::info!(target = %self.name, deleted, "cleaned up old certificates");
                    }
                }
                Ok(())
            }
        }
    }
}

/// `kind = "alibaba-cdn"`: its line in `cloud::registry::TARGETS`.
pub const PRODUCT: crate::cloud::registry::TargetKind = crate::cloud::registry::TargetKind {
    kind: "alibaba-cdn",
    variant: "AlibabaCdn",
    vendor: "alibaba",
    provider: Some(crate::cloud::account::Provider::Alibaba),
    parse: crate::cloud::registry::parse_settings::<CdnSettings>,
};

impl crate::cloud::registry::TargetProduct for CdnSettings {
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
        Ok(Arc::new(CdnTarget::new(spec.name, self.clone(), client)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(toml_text: &str) -> CdnSettings {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn validation_reports_each_problem() {
        let mut issues = Vec::new();
        settings("domain = \"www.example.com\"").validate("target[0]", &mut issues);
        assert!(issues.is_empty(), "{issues:?}");
        settings("domain = \"bad_domain\"\napi = \"legacy\"\ncert_type = \"cas\"\ncleanup = true")
            .validate("target[1]", &mut issues);
        let paths: Vec<_> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            ["target[1].domain", "target[1].cert_type"],
            "{issues:?}"
        );
        assert!(toml::from_str::<CdnSettings>("domain = \"a.b\"\nbogus = 1").is_err());
    }

    #[test]
    fn cert_names_fit_the_limit() {
        let bundle = crate::cert::bundle::testing::fresh(&["www.example.com"]);
        assert!(cert_name(&bundle).len() <= 128);
        assert!(cas::cas_name(&bundle).len() <= 63);
    }
}
