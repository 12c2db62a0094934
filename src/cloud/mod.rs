//! Everything certkeeper drives in a cloud: the [`Target`], [`Policy`] and [`DnsSolver`]
//! traits each vendor implements with the types they exchange, the vendor registry
//! (`registry`) and the simulator frame. Nothing here decides when to write: the engine's
//! `converge` and `apply_policy` do. Vendors live one per folder; each folder holds its
//! signer, client (the only code that classifies vendor errors), products and simulator.

pub mod account;
pub mod alibaba;
pub mod credentials;
pub mod error_table;
pub mod file;
pub mod http;
pub mod huawei;
pub mod qingcloud;
pub mod registry;
#[cfg(feature = "sim")]
pub mod sim;
#[cfg(feature = "sim")]
pub mod sim_keys;

use crate::cert::CertificateBundle;
use crate::error::CloudError;
use crate::window::MaintenanceWindow;
use async_trait::async_trait;
use time::OffsetDateTime;

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
    /// (job polled to its end), but does not verify: `engine::converge::apply_policy` reads back.
    async fn remediate(&self, resource: &str) -> Result<Remediation, CloudError>;
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
