//! Everything certkeeper drives in a cloud: the [`Target`], [`Policy`] and [`DnsSolver`]
//! traits each vendor implements, the shared convergence logic (describe → compare → deploy
//! → verify) and the simulator frame. Vendors live one per folder; each folder holds its
//! signer, client (the only code that classifies vendor errors), products and simulator.

pub mod alibaba;
pub mod credentials;
pub mod file;
pub mod http;
pub mod huawei;
pub mod qingcloud;
#[cfg(feature = "sim")]
pub mod sim;
#[cfg(feature = "sim")]
pub mod sim_keys;

use crate::cert::CertificateBundle;
use crate::error::{CloudError, ErrorClass};
use crate::window::MaintenanceWindow;
use async_trait::async_trait;
use time::OffsetDateTime;

/// Codes certkeeper itself reports (transport failures, verification, pre-deploy checks).
const LOCAL_CODES: &[&str] = &[
    "Network",
    "Timeout",
    "Redirect",
    "ReplyTooLarge",
    "VerificationFailed",
    "BadStoredVersion",
    "ReloadFailed",
    "SpawnFailed",
    "JobFailed",
    "JobDoneWithFailure",
    "expired",
    "not_yet_valid",
    "key_mismatch",
    "name_mismatch",
    "chain_broken",
    "weak_key",
    "expires_too_soon",
];

/// Whether `code` is one of the vendor's documented codes (or one of ours), so it may be a
/// metric label; anything else is counted as `other` to keep label sets bounded.
pub fn is_known_code(vendor: &str, code: &str) -> bool {
    LOCAL_CODES.contains(&code)
        || match vendor {
            "alibaba" => alibaba::client::is_known_code(code),
            "huawei" => huawei::client::class_of(code).is_some(),
            "qingcloud" => qingcloud::client::is_known_code(code),
            _ => false,
        }
}

/// The `code` label for `certkeeper_errors_total`.
pub fn code_label<'a>(vendor: &str, code: &'a str) -> &'a str {
    if is_known_code(vendor, code) {
        code
    } else {
        "other"
    }
}

/// What a target serves right now, as read back from the vendor.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LiveCertificate {
    /// Whether TLS is switched on at all.
    pub ssl_enabled: bool,
    /// SHA-256 of the served leaf, when the vendor returns the certificate itself.
    pub fingerprint: Option<String>,
    /// Expiry of the served leaf, when known (RDS returns only this).
    pub not_after: Option<OffsetDateTime>,
}

impl LiveCertificate {
    /// Whether the target already serves `bundle`. Compared by fingerprint when the vendor
    /// returns the certificate; otherwise by expiry to the second, the only fact some
    /// vendors (RDS) return.
    pub fn serves(&self, bundle: &CertificateBundle) -> bool {
        if !self.ssl_enabled {
            return false;
        }
        match (&self.fingerprint, self.not_after) {
            (Some(fingerprint), _) => fingerprint.eq_ignore_ascii_case(bundle.fingerprint()),
            (None, Some(not_after)) => {
                not_after.unix_timestamp() == bundle.info.not_after.unix_timestamp()
            }
            (None, None) => false,
        }
    }
}

/// One place a certificate is deployed to (a CDN domain, a VOD domain, an RDS instance, a
/// directory). Implementations only talk to the vendor and classify its errors; retries,
/// rate limits and metrics are layered on by the engine.
#[async_trait]
pub trait Target: Send + Sync {
    /// The configured name.
    fn name(&self) -> &str;
    /// The configured kind, e.g. `alibaba-cdn`.
    fn kind(&self) -> &'static str;
    /// Reads what the target serves now. Never writes.
    async fn observe(&self) -> Result<LiveCertificate, CloudError>;
    /// Pushes `bundle`. Called only after `observe` showed a difference.
    async fn deploy(&self, bundle: &CertificateBundle) -> Result<(), CloudError>;
}

/// How a convergence ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Convergence {
    /// The target already served the bundle: no write call was made.
    AlreadyInSync,
    /// The bundle was deployed and read back.
    Deployed,
}

/// Describe → compare → deploy → verify by reading back. Idempotent: a target that already
/// serves `bundle` gets no write call.
pub async fn converge(
    target: &dyn Target,
    bundle: &CertificateBundle,
) -> Result<Convergence, CloudError> {
    if target.observe().await?.serves(bundle) {
        return Ok(Convergence::AlreadyInSync);
    }
    deploy_and_verify(target, bundle).await?;
    Ok(Convergence::Deployed)
}

/// The second half of [`converge`]: deploy, then verify by reading back. For callers that
/// have just observed a difference, so the read before the write is not paid twice.
pub async fn deploy_and_verify(
    target: &dyn Target,
    bundle: &CertificateBundle,
) -> Result<(), CloudError> {
    target.deploy(bundle).await?;
    let live = target.observe().await?;
    if live.serves(bundle) {
        Ok(())
    } else {
        Err(CloudError::new(
            "certkeeper",
            format!("verify {}", target.kind()),
            ErrorClass::Invalid,
            "VerificationFailed",
            format!(
                "target {} does not serve certificate {} after deploy",
                target.name(),
                bundle.fingerprint()
            ),
        ))
    }
}

/// Whether a policy only reports or also corrects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyMode {
    Audit,
    Enforce,
}

/// The state of one resource under a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyFinding {
    pub resource: String,
    pub compliant: bool,
    /// Short, bounded description of what was observed (e.g. `encryption off`).
    pub observed: String,
    /// Short description of what the policy wants.
    pub desired: String,
    /// The resource is in a state (restarting, a job running) that forbids a change now.
    pub busy: bool,
}

/// What a remediation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remediation {
    /// The vendor's job or request id, for the event log.
    pub job_id: Option<String>,
}

/// A continuously checked compliance rule over a set of cloud resources.
#[async_trait]
pub trait Policy: Send + Sync {
    fn name(&self) -> &str;
    fn kind(&self) -> &'static str;
    fn mode(&self) -> PolicyMode;
    fn maintenance_window(&self) -> Option<&MaintenanceWindow>;
    fn resources(&self) -> Vec<String>;
    /// Reads the resource's state. Never writes.
    async fn check(&self, resource: &str) -> Result<PolicyFinding, CloudError>;
    /// What the policy learned about its vendor account that an operator should see in
    /// `status` (e.g. which spelling of a value the account's clusters take); stored with
    /// the resource's policy status as `account_note`.
    fn account_note(&self) -> Option<String> {
        None
    }
    /// Takes back a note [`account_note`](Self::account_note) gave before a restart (read
    /// from the store), so what was learned is not paid for again.
    fn restore_account_note(&self, _note: &str) {}
    /// Changes the resource to the desired state and waits until the change has finished
    /// (job polled to its end), but does not verify: [`apply_policy`] reads back.
    async fn remediate(&self, resource: &str) -> Result<Remediation, CloudError>;
}

/// The result of one policy pass over one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyOutcome {
    Compliant,
    /// Audit mode: violation reported, nothing written.
    Reported(PolicyFinding),
    /// Enforce mode outside the window: nothing written; the window opens at this time.
    Deferred {
        finding: PolicyFinding,
        window_opens: Option<OffsetDateTime>,
    },
    /// Enforce mode, but the resource is busy now.
    Busy(PolicyFinding),
    /// Corrected and read back compliant.
    Remediated(Remediation),
}

/// check → (audit: report) | (enforce: window open and resource idle → remediate → verify).
pub async fn apply_policy(
    policy: &dyn Policy,
    resource: &str,
    now: OffsetDateTime,
) -> Result<PolicyOutcome, CloudError> {
    let finding = policy.check(resource).await?;
    if finding.compliant {
        return Ok(PolicyOutcome::Compliant);
    }
    if policy.mode() == PolicyMode::Audit {
        return Ok(PolicyOutcome::Reported(finding));
    }
    if let Some(window) = policy.maintenance_window() {
        if !window.is_open(now) {
            let window_opens = window.next_open(now);
            return Ok(PolicyOutcome::Deferred {
                finding,
                window_opens,
            });
        }
    }
    if finding.busy {
        return Ok(PolicyOutcome::Busy(finding));
    }
    let remediation = policy.remediate(resource).await?;
    let after = policy.check(resource).await?;
    if after.compliant {
        Ok(PolicyOutcome::Remediated(remediation))
    } else {
        Err(CloudError::new(
            "certkeeper",
            format!("verify {}", policy.kind()),
            ErrorClass::Invalid,
            "VerificationFailed",
            format!("{} still {} after remediation", resource, after.observed),
        ))
    }
}

/// When the engine may next remediate a resource after `apply_policy` failed with `error`.
///
/// A remediation whose vendor job ran and failed (or outlived its deadline) returns an
/// error carrying `job_id`. Such a change restarts a database, so it is retried in the
/// *next* maintenance window, never again in the current one: this returns when that
/// window opens. The engine keeps checking (and reporting) the resource meanwhile but does
/// not call `remediate` before this time. `None` means the error follows the ordinary
/// per-class backoff (no job ran, or the policy has no window).
pub fn remediation_deferred_until(
    policy: &dyn Policy,
    error: &CloudError,
    now: OffsetDateTime,
) -> Option<OffsetDateTime> {
    error.job_id.as_ref()?;
    let window = policy.maintenance_window()?;
    // Inside an open window `next_open` is the start of the following occurrence.
    window.next_open(now)
}

/// A TXT record created for a DNS-01 challenge, enough to delete it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsRecord {
    /// The zone (domain) the record was created in, without a trailing dot.
    pub zone: String,
    /// The vendor's id of the zone, where it has one.
    pub zone_id: Option<String>,
    /// The vendor's id of the record.
    pub record_id: String,
    /// The full name, e.g. `_acme-challenge.www.example.com`, no trailing dot.
    pub fqdn: String,
    pub value: String,
}

/// Publishes and removes `_acme-challenge` TXT records for ACME DNS-01.
#[async_trait]
pub trait DnsSolver: Send + Sync {
    /// Creates a TXT record `fqdn` (e.g. `_acme-challenge.www.example.com`) holding `value`.
    /// A record that already exists with the same value counts as created.
    async fn present(&self, fqdn: &str, value: &str) -> Result<DnsRecord, CloudError>;
    /// Deletes a record made by `present`. Deleting one that is gone already succeeds.
    async fn cleanup(&self, record: &DnsRecord) -> Result<(), CloudError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::bundle::testing;

    #[test]
    fn error_code_labels_are_bounded_by_the_vendor_tables() {
        assert_eq!(code_label("alibaba", "Throttling.User"), "Throttling.User");
        assert_eq!(code_label("huawei", "DBS.200019"), "DBS.200019");
        assert_eq!(code_label("qingcloud", "5100"), "5100");
        assert_eq!(code_label("certkeeper", "key_mismatch"), "key_mismatch");
        assert_eq!(code_label("alibaba", "Made.Up.By.A.Server"), "other");
        assert_eq!(code_label("qingcloud", "not a number"), "other");
    }

    #[test]
    fn serves_compares_fingerprint_then_expiry() {
        let bundle = testing::fresh(&["www.example.com"]);
        let by_fingerprint = LiveCertificate {
            ssl_enabled: true,
            fingerprint: Some(bundle.fingerprint().to_uppercase()),
            not_after: None,
        };
        assert!(by_fingerprint.serves(&bundle));
        let by_expiry = LiveCertificate {
            ssl_enabled: true,
            fingerprint: None,
            not_after: Some(bundle.info.not_after),
        };
        assert!(by_expiry.serves(&bundle));
        let disabled = LiveCertificate {
            ssl_enabled: false,
            ..by_fingerprint
        };
        assert!(!disabled.serves(&bundle));
        assert!(!LiveCertificate::default().serves(&bundle));
    }
}
