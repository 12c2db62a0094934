//! The state that must survive a crash: certificate versions (with their keys), the
//! per-target deployment ledger, attempt history, policy status, ACME accounts, renewal plans
//! and an event log (never edited; pruned by age, see [`apply_retention`]). Everything goes
//! through the [`StateStore`] trait so a PostgreSQL backend can join the embedded SQLite one
//! ([`sqlite::SqliteStore`]) under the same conformance suite; the record types are plain
//! data, `Serialize` for `certkeeper status --json` with every secret skipped, and their
//! `Debug` never shows a key.
//!
//! Threading: the trait is synchronous on purpose (SQLite does blocking file I/O and `fsync`
//! on every commit). Async code holds an `Arc<dyn StateStore>` and calls it through
//! `tokio::task::spawn_blocking` (or from one dedicated store thread); each call is short and
//! is one transaction, so no call ever leaves half a write behind.
//!
//! Timestamps are stored as whole Unix seconds: sub-second parts are truncated on write
//! (renewal points are truncated to seconds anyway, cert-manager style), which keeps the
//! schema portable to PostgreSQL `BIGINT` columns and sortable.

pub mod copy;
pub mod lease;
pub mod postgres;
pub mod seal;
pub mod sqlite;

#[cfg(test)]
pub(crate) mod conformance;

use crate::cert::bundle::{CertError, CertificateBundle};
use crate::error::ErrorClass;
use crate::secret::Secret;
use serde::Serialize;
use std::fmt;
use std::path::PathBuf;
use time::OffsetDateTime;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Why the store could not be opened, read or written. Every variant names the store file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A key could not be sealed or opened, or the store key does not fit the store
    /// ([`seal`]).
    #[error("{}: {source}", path.display())]
    Sealing {
        path: PathBuf,
        #[source]
        source: seal::SealError,
    },
    #[error("{}: cannot prepare the state store: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: state store error while {operation}: {source}", path.display())]
    Sqlite {
        path: PathBuf,
        operation: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "{}: written by a newer certkeeper (schema version {found}, this binary knows up to \
         {known}); upgrade certkeeper or restore a backup of the state store",
        path.display()
    )]
    TooNew {
        path: PathBuf,
        found: u32,
        known: u32,
    },
    #[error(
        "{}: integrity check failed ({report}); restore a backup of the state store",
        path.display()
    )]
    Corrupt { path: PathBuf, report: String },
    #[error("{}: invalid value stored in {what}: {reason}", path.display())]
    BadValue {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
    /// The PostgreSQL store failed (`database` is `postgresql://host:port/name`, never the
    /// password); a connection error means the database is unreachable for now.
    #[error("{database}: state store error while {operation}: {source}")]
    Postgres {
        database: String,
        operation: &'static str,
        #[source]
        source: ::postgres::Error,
    },
    /// A write by a leadership that another instance has since replaced (docs/ha.md).
    #[error(
        "{database}: refused {operation}: this instance's leadership (fencing token {token}) \
         was taken over by another instance (token {current})"
    )]
    Fenced {
        database: String,
        operation: &'static str,
        token: i64,
        current: i64,
    },
    /// A leader-only write from an instance whose lease is not current (docs/ha.md).
    #[error(
        "{database}: refused {operation}: this instance does not hold the leader lease (not \
         renewed in time, or another instance leads)"
    )]
    NotLeader {
        database: String,
        operation: &'static str,
    },
}

/// One certificate as obtained: leaf plus intermediates, its private key and the facts the
/// engine and `status` need without parsing PEM again. Versions are immutable once stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertificateVersion {
    /// Assigned by the store on insert (ignored when inserting), increasing per store.
    pub id: i64,
    /// The configured `[[certificate]]` name.
    pub certificate: String,
    /// Leaf followed by the intermediates, PEM.
    pub chain_pem: String,
    #[serde(skip)]
    pub key_pem: Secret,
    /// Lower-case hex SHA-256 of the leaf's DER.
    pub fingerprint: String,
    /// Lower-case hex serial number.
    pub serial: String,
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// Where it came from, e.g. `acme:letsencrypt`, `file`, `local_ca:internal`.
    pub source: String,
    #[serde(with = "time::serde::rfc3339")]
    pub obtained_at: OffsetDateTime,
}

impl CertificateVersion {
    /// A version ready to insert (id 0) from a parsed bundle.
    pub fn from_bundle(
        certificate: impl Into<String>,
        bundle: &CertificateBundle,
        source: impl Into<String>,
        obtained_at: OffsetDateTime,
    ) -> Self {
        Self {
            id: 0,
            certificate: certificate.into(),
            chain_pem: bundle.fullchain_pem(),
            key_pem: bundle.key_pem.clone(),
            fingerprint: bundle.info.fingerprint.clone(),
            serial: bundle.info.serial.clone(),
            not_before: bundle.info.not_before,
            not_after: bundle.info.not_after,
            source: source.into(),
            obtained_at,
        }
    }

    /// The stored PEM split back into leaf, chain and key.
    pub fn to_bundle(&self) -> Result<CertificateBundle, CertError> {
        const END: &str = "-----END CERTIFICATE-----";
        let (leaf, chain) = match self.chain_pem.find(END) {
            Some(at) => self.chain_pem.split_at(at + END.len()),
            None => (self.chain_pem.as_str(), ""),
        };
        CertificateBundle::from_pem(leaf, chain, self.key_pem.clone())
    }
}

/// Where a (target, certificate) pair stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeployStatus {
    /// The target serves the desired fingerprint.
    InSync,
    /// A deploy is wanted and has not started (or will be retried at `next_attempt_at`).
    Pending,
    /// A deploy started; after a crash the engine finds the row here and re-observes.
    Deploying,
    /// The last deploy failed; retried at `next_attempt_at`.
    Failed,
    /// Failed with an `invalid` class error: waits until the certificate or config changes.
    Parked,
}

impl DeployStatus {
    pub const ALL: [DeployStatus; 5] = [
        DeployStatus::InSync,
        DeployStatus::Pending,
        DeployStatus::Deploying,
        DeployStatus::Failed,
        DeployStatus::Parked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeployStatus::InSync => "in_sync",
            DeployStatus::Pending => "pending",
            DeployStatus::Deploying => "deploying",
            DeployStatus::Failed => "failed",
            DeployStatus::Parked => "parked",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == value)
    }
}

impl fmt::Display for DeployStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The last failure kept on a ledger or policy row, as data (class decides the retry rule).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastError {
    pub class: ErrorClass,
    pub code: String,
    pub message: String,
}

/// One row of the deployment ledger: what a target should serve for a certificate and what
/// it was last seen serving.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeploymentRecord {
    pub target: String,
    pub certificate: String,
    pub desired_fingerprint: Option<String>,
    pub observed_fingerprint: Option<String>,
    pub status: DeployStatus,
    /// Failed attempts since the desired fingerprint last changed.
    pub attempts: u32,
    pub last_error: Option<LastError>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_attempt_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// Whether an attempt was made against a deploy target, a policy or (obtaining) a
/// certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    Target,
    Policy,
    Certificate,
}

impl SubjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::Target => "target",
            SubjectKind::Policy => "policy",
            SubjectKind::Certificate => "certificate",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "target" => Some(SubjectKind::Target),
            "policy" => Some(SubjectKind::Policy),
            "certificate" => Some(SubjectKind::Certificate),
            _ => None,
        }
    }
}

/// One operation tried against a target or policy (history for the fault suite and status).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Attempt {
    pub subject_kind: SubjectKind,
    /// The configured target or policy name.
    pub subject: String,
    /// The step, e.g. `deploy`, `observe`, `SetCdnDomainSSLCertificate`.
    pub operation: String,
    /// `None` when the attempt succeeded.
    pub class: Option<ErrorClass>,
    /// The vendor or local error code when it failed.
    pub code: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// What a policy last found on one resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyStatus {
    pub policy: String,
    /// The vendor resource id (instance id, cluster id).
    pub resource: String,
    pub compliant: bool,
    /// The observed state as the policy reports it (never secrets).
    pub observed: serde_json::Value,
    #[serde(with = "time::serde::rfc3339")]
    pub last_checked: OffsetDateTime,
    /// The vendor job started by the last enforcement, if any.
    pub last_job_id: Option<String>,
    pub last_error: Option<LastError>,
}

/// An ACME account's credentials, keyed by directory URL and configured account name, so a
/// restart reuses the account instead of registering a new one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AcmeAccount {
    pub directory_url: String,
    pub account_name: String,
    /// The serialized account credentials (private key included), JSON.
    #[serde(skip)]
    pub credentials: Secret,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// The ACME Renewal Information window the CA suggested (RFC 9773 section 4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct AriWindow {
    #[serde(with = "time::serde::rfc3339")]
    pub start: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub end: OffsetDateTime,
}

/// When a certificate is to be renewed. The point is chosen once (randomly inside the ARI
/// window when there is one) and persisted, so restarts do not re-roll it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RenewalPlan {
    pub certificate: String,
    /// The version the plan was computed for; a new version makes the plan stale.
    pub fingerprint: String,
    /// The chosen renewal point.
    #[serde(with = "time::serde::rfc3339")]
    pub renewal_at: OffsetDateTime,
    pub ari_window: Option<AriWindow>,
    /// When to ask the CA for renewal information again (its Retry-After).
    #[serde(with = "time::serde::rfc3339::option")]
    pub ari_next_check_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// The ARI point the ACME source chose for a certificate: the CA's window, the instant drawn
/// inside it, when to ask again, and the ARI identifier of the leaf it was computed for (a
/// new leaf makes it stale). Kept apart from [`RenewalPlan`], which is per stored version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AriPoint {
    pub certificate: String,
    pub cert_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub window_start: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub window_end: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub renew_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub next_poll: OffsetDateTime,
}

/// A local CA's root certificate and key, generated once and reused across restarts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocalCaRoot {
    pub name: String,
    pub cert_pem: String,
    #[serde(skip)]
    pub key_pem: Secret,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// One entry of the event log (never edited; deleted only by the retention). Callers never put secrets in `message` or
/// `fields`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// Assigned by the store on append (ignored when appending), increasing.
    pub id: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// A bounded name such as `certificate.obtained`, `deploy.failed`.
    pub kind: String,
    /// The certificate, target or policy concerned.
    pub subject: String,
    pub message: String,
    pub fields: serde_json::Value,
}

/// Filters for [`StateStore::events`]; every field is optional and they combine with AND.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventQuery {
    /// Only events with an id greater than this (a cursor for followers).
    pub after_id: Option<i64>,
    pub kind: Option<String>,
    pub subject: Option<String>,
    /// Only events at or after this instant (whole seconds, as stored).
    pub since: Option<OffsetDateTime>,
    /// At most this many (the oldest matching ones first).
    pub limit: Option<usize>,
}

/// The state store. Every method is one transaction: a write is either wholly visible or not
/// at all, and readers never see half of it. Implementations must pass
/// `store::conformance::conformance`.
pub trait StateStore: Send + Sync {
    /// Runs the backend's full consistency check; `Err(StoreError::Corrupt)` when it fails.
    fn integrity_check(&self) -> Result<(), StoreError>;

    /// The schema version this store is at.
    fn schema_version(&self) -> Result<u32, StoreError>;

    /// Stores a new version (its `id` is ignored) and returns the assigned id. In the same
    /// transaction every ledger row `(target, version.certificate)` for `deploy_to` gets the
    /// new desired fingerprint, status `pending`, zero attempts and no error or backoff (the
    /// inputs changed, so the failure backoff starts over); missing rows are created.
    fn insert_certificate_version(
        &self,
        version: &CertificateVersion,
        deploy_to: &[String],
    ) -> Result<i64, StoreError>;

    fn certificate_version(&self, id: i64) -> Result<Option<CertificateVersion>, StoreError>;

    /// The newest version of one certificate.
    fn latest_certificate_version(
        &self,
        certificate: &str,
    ) -> Result<Option<CertificateVersion>, StoreError>;

    /// All versions of one certificate, newest first.
    fn certificate_versions(
        &self,
        certificate: &str,
    ) -> Result<Vec<CertificateVersion>, StoreError>;

    /// The newest version of every certificate, ordered by name.
    fn latest_certificate_versions(&self) -> Result<Vec<CertificateVersion>, StoreError>;

    /// Deletes all but the newest `keep` versions of a certificate, never one whose
    /// fingerprint a ledger row still desires or observes (it may be needed for a rollback or
    /// is what a target serves). Returns how many were deleted.
    fn prune_certificate_versions(
        &self,
        certificate: &str,
        keep: usize,
    ) -> Result<usize, StoreError>;

    /// Inserts or replaces the ledger row for `(record.target, record.certificate)`.
    fn put_deployment(&self, record: &DeploymentRecord) -> Result<(), StoreError>;

    /// [`put_deployment`](Self::put_deployment) and [`record_attempt`](Self::record_attempt)
    /// in one transaction.
    fn put_deployment_with_attempt(
        &self,
        record: &DeploymentRecord,
        attempt: &Attempt,
    ) -> Result<(), StoreError>;

    fn deployment(
        &self,
        target: &str,
        certificate: &str,
    ) -> Result<Option<DeploymentRecord>, StoreError>;

    /// Every ledger row, ordered by certificate then target.
    fn deployments(&self) -> Result<Vec<DeploymentRecord>, StoreError>;

    /// Rows the engine should work on at `now`: `pending` or `failed`, with no
    /// `next_attempt_at` or one not after `now`. Ordered like [`deployments`](Self::deployments).
    fn due_deployments(&self, now: OffsetDateTime) -> Result<Vec<DeploymentRecord>, StoreError>;

    fn record_attempt(&self, attempt: &Attempt) -> Result<(), StoreError>;

    /// The attempts against one target or policy, oldest first.
    fn attempts(&self, kind: SubjectKind, subject: &str) -> Result<Vec<Attempt>, StoreError>;

    /// Inserts or replaces the status of `(status.policy, status.resource)`.
    fn put_policy_status(&self, status: &PolicyStatus) -> Result<(), StoreError>;

    fn policy_status(
        &self,
        policy: &str,
        resource: &str,
    ) -> Result<Option<PolicyStatus>, StoreError>;

    /// Every policy status row, ordered by policy then resource.
    fn policy_statuses(&self) -> Result<Vec<PolicyStatus>, StoreError>;

    /// Inserts or replaces an ACME account's credentials.
    fn put_acme_account(&self, account: &AcmeAccount) -> Result<(), StoreError>;

    fn acme_account(
        &self,
        directory_url: &str,
        account_name: &str,
    ) -> Result<Option<AcmeAccount>, StoreError>;

    /// Removes an ACME account (the CA no longer knows it); absent is fine.
    fn delete_acme_account(
        &self,
        directory_url: &str,
        account_name: &str,
    ) -> Result<(), StoreError>;

    /// Inserts or replaces the ARI point of `point.certificate`.
    fn put_ari_point(&self, point: &AriPoint) -> Result<(), StoreError>;

    fn ari_point(&self, certificate: &str) -> Result<Option<AriPoint>, StoreError>;

    /// Inserts or replaces the root of local CA `root.name`.
    fn put_local_ca(&self, root: &LocalCaRoot) -> Result<(), StoreError>;

    fn local_ca(&self, name: &str) -> Result<Option<LocalCaRoot>, StoreError>;

    /// Inserts or replaces the renewal plan of `plan.certificate`.
    fn put_renewal_plan(&self, plan: &RenewalPlan) -> Result<(), StoreError>;

    fn renewal_plan(&self, certificate: &str) -> Result<Option<RenewalPlan>, StoreError>;

    /// Every renewal plan, ordered by certificate.
    fn renewal_plans(&self) -> Result<Vec<RenewalPlan>, StoreError>;

    /// Appends an event (its `id` is ignored) and returns the assigned id. Events are never
    /// updated; only [`prune_events`](Self::prune_events) deletes them.
    fn append_event(&self, event: &Event) -> Result<i64, StoreError>;

    /// Deletes the events older than `before` (the retention); returns how many.
    fn prune_events(&self, before: OffsetDateTime) -> Result<usize, StoreError>;

    /// Matching events, oldest first.
    fn events(&self, query: &EventQuery) -> Result<Vec<Event>, StoreError>;

    /// The newest `count` events, oldest first (like `tail`).
    fn tail_events(&self, count: usize) -> Result<Vec<Event>, StoreError>;
}

/// One line of the `status` certificate table: the newest version and its renewal point.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertificateStatus {
    pub name: String,
    pub version_id: i64,
    pub fingerprint: String,
    pub serial: String,
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    pub source: String,
    #[serde(with = "time::serde::rfc3339")]
    pub obtained_at: OffsetDateTime,
    /// From the renewal plan, when one exists for this very version.
    #[serde(with = "time::serde::rfc3339::option")]
    pub renewal_at: Option<OffsetDateTime>,
}

/// Everything `certkeeper status` prints, human or `--json`. Holds no secrets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct StatusReport {
    pub certificates: Vec<CertificateStatus>,
    pub deployments: Vec<DeploymentRecord>,
    pub policies: Vec<PolicyStatus>,
}

/// Gathers the `status` view from any store.
pub fn status_report(store: &dyn StateStore) -> Result<StatusReport, StoreError> {
    let plans = store.renewal_plans()?;
    let certificates = store
        .latest_certificate_versions()?
        .into_iter()
        .map(|version| {
            let renewal_at = plans
                .iter()
                .find(|plan| {
                    plan.certificate == version.certificate
                        && plan.fingerprint == version.fingerprint
                })
                .map(|plan| plan.renewal_at);
            CertificateStatus {
                name: version.certificate,
                version_id: version.id,
                fingerprint: version.fingerprint,
                serial: version.serial,
                not_before: version.not_before,
                not_after: version.not_after,
                source: version.source,
                obtained_at: version.obtained_at,
                renewal_at,
            }
        })
        .collect();
    Ok(StatusReport {
        certificates,
        deployments: store.deployments()?,
        policies: store.policy_statuses()?,
    })
}

/// How long the event log keeps an event (README, "Retention").
pub const EVENT_RETENTION: time::Duration = time::Duration::days(90);

/// How many of a certificate's newest versions (with their keys) are kept; older ones go
/// unless a target still serves or is meant to serve them.
pub const KEEP_VERSIONS: usize = 3;

/// What one retention run deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub events: usize,
    pub versions: usize,
}

/// The retention: events older than [`EVENT_RETENTION`] and, per certificate in
/// `certificates`, versions beyond the newest [`KEEP_VERSIONS`], never one a ledger row
/// desires or observes (see [`StateStore::prune_certificate_versions`]).
pub fn apply_retention<'a>(
    store: &dyn StateStore,
    certificates: impl IntoIterator<Item = &'a str>,
    now: OffsetDateTime,
) -> Result<Pruned, StoreError> {
    let mut pruned = Pruned {
        events: store.prune_events(now - EVENT_RETENTION)?,
        versions: 0,
    };
    for certificate in certificates {
        pruned.versions += store.prune_certificate_versions(certificate, KEEP_VERSIONS)?;
    }
    Ok(pruned)
}

/// Drops the sub-second part, as the store does on write.
pub fn truncate_to_seconds(at: OffsetDateTime) -> OffsetDateTime {
    at.replace_nanosecond(0).unwrap_or(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_names_round_trip() {
        for status in DeployStatus::ALL {
            assert_eq!(DeployStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(DeployStatus::parse("in-sync"), None);
        assert_eq!(SubjectKind::parse("policy"), Some(SubjectKind::Policy));
        assert_eq!(SubjectKind::parse("cert"), None);
    }

    #[test]
    fn secrets_never_in_debug_or_json() {
        let bundle = crate::cert::bundle::testing::fresh(&["a.example.com"]);
        let version =
            CertificateVersion::from_bundle("web", &bundle, "file", OffsetDateTime::now_utc());
        let key = version.key_pem.expose().to_owned();
        let debug = format!("{version:?}");
        assert!(!debug.contains(&key));
        assert!(debug.contains("** REDACTED **"));
        let json = serde_json::to_string(&version).unwrap();
        assert!(!json.contains("PRIVATE KEY"), "{json}");
        assert!(json.contains(&version.fingerprint));

        let account = AcmeAccount {
            directory_url: "https://acme.test/dir".into(),
            account_name: "main".into(),
            credentials: Secret::new(r#"{"key_pkcs8":"c2VjcmV0"}"#),
            created_at: OffsetDateTime::UNIX_EPOCH,
        };
        assert!(!format!("{account:?}").contains("c2VjcmV0"));
        assert!(!serde_json::to_string(&account)
            .unwrap()
            .contains("c2VjcmV0"));
    }

    #[test]
    fn version_splits_back_into_a_bundle() {
        let bundle = crate::cert::bundle::testing::fresh(&["a.example.com"]);
        let version =
            CertificateVersion::from_bundle("web", &bundle, "file", OffsetDateTime::now_utc());
        let back = version.to_bundle().unwrap();
        assert_eq!(back.fingerprint(), bundle.fingerprint());
        assert_eq!(back.key_pem, bundle.key_pem);
        assert_eq!(back.fullchain_pem(), bundle.fullchain_pem());
    }
}
