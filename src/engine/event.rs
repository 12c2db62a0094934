//! What the engine reports about an outcome, in one place: [`emit`] takes a typed
//! [`Event`] and records it in the store once (the event log entry, or the attempt that is
//! its record), logs it once (at ERROR when a human must act, from the error class; see
//! `telemetry::logging::needs_human`) and updates the metrics once. An error is labelled
//! here with whether its code is documented (`cloud::registry`), so telemetry counts it
//! without knowing the vendors.

use crate::engine::deploy::TargetHandle;
use crate::engine::state;
use crate::error::CloudError;
use crate::source::SourceError;
use crate::store::{
    Attempt, CertificateVersion, Event as StoredEvent, StateStore, StoreError, SubjectKind,
};
use crate::telemetry::logging::{failure, needs_human};
use crate::telemetry::metrics::{Failing, Metrics};
use std::time::Duration;
use time::OffsetDateTime;

/// The log targets the lines kept from before they were written here, so a filter such
/// as `RUST_LOG=certkeeper::engine::deploy=warn` still selects them.
const DEPLOY_LOG: &str = "certkeeper::engine::deploy";
const POLICY_LOG: &str = "certkeeper::engine::policy";
const OBTAIN_LOG: &str = "certkeeper::engine::obtain";

/// Whose operation an in-operation retry belongs to.
#[derive(Clone, Copy)]
pub enum Subject<'a> {
    Target(&'a TargetHandle),
    Policy { policy: &'a str, resource: &'a str },
}

/// One outcome of obtaining a certificate, a deploy or a policy pass.
pub enum Event<'a> {
    /// A new version of `certificate` was stored (obtained or imported), due for renewal
    /// at `renewal_at`; `source` is the source's label (`acme:NAME`, `file`, ...).
    CertificateStored {
        certificate: &'a str,
        version: &'a CertificateVersion,
        renewal_at: OffsetDateTime,
        source: &'a str,
    },
    /// An issuer answered with a certificate; `source_kind` is `acme`, `local_ca`, ...
    Obtained {
        certificate: &'a str,
        source_kind: &'static str,
    },
    /// An issuer failed to give a certificate.
    ObtainFailed {
        certificate: &'a str,
        source_kind: &'static str,
        error: &'a SourceError,
    },
    /// Watched files were refused (the file source has logged it with the file's path).
    ImportRejected {
        certificate: &'a str,
        error: &'a SourceError,
    },
    /// A call failed and is retried inside the same operation.
    Retrying {
        subject: Subject<'a>,
        error: &'a CloudError,
    },
    /// A read showed the target already serves `version` (it was not known in sync).
    TargetInSync {
        target: &'a TargetHandle,
        version: &'a CertificateVersion,
    },
    /// `version` was deployed to the target and read back.
    Deployed {
        target: &'a TargetHandle,
        version: &'a CertificateVersion,
        elapsed: Duration,
    },
    /// A deploy failed; `attempts` in a row now, retried at `retry_at` or parked (`None`).
    DeployFailed {
        target: &'a TargetHandle,
        error: &'a CloudError,
        attempts: u32,
        retry_at: Option<OffsetDateTime>,
    },
    /// A policy resource was corrected and read back compliant.
    PolicyRemediated {
        policy: &'a str,
        resource: &'a str,
        job_id: Option<&'a str>,
    },
    /// A policy pass failed; retried at `retry_at` or parked (`None`).
    PolicyFailed {
        policy: &'a str,
        resource: &'a str,
        error: &'a CloudError,
        retry_at: Option<OffsetDateTime>,
    },
}

/// Records, logs and counts `event`, in that order: a store that refuses the record of a
/// deploy or policy outcome ends the operation before anything claims the outcome
/// happened. An obtain outcome is already in the store as an attempt, so its event log
/// entry is best effort: a refused one is logged and the outcome still reported.
pub fn emit(
    store: &dyn StateStore,
    metrics: &Metrics,
    now: OffsetDateTime,
    event: Event<'_>,
) -> Result<(), StoreError> {
    match event {
        Event::CertificateStored {
            certificate,
            version,
            renewal_at,
            source,
        } => {
            best_effort(store.append_event(&stored(
                now,
                "certificate.stored",
                certificate,
                format!("stored a new version of {certificate}"),
                serde_json::json!({"fingerprint": version.fingerprint, "source": source, "not_after": version.not_after.unix_timestamp()}),
            )));
            tracing::info!(
                target: OBTAIN_LOG,
                certificate = %certificate,
                fingerprint = %version.fingerprint,
                serial = %version.serial,
                not_after = %version.not_after,
                renewal_at = %renewal_at,
                source = %source,
                "stored a new certificate version"
            );
        }
        Event::Obtained {
            certificate,
            source_kind,
        } => {
            metrics
                .renewals
                .with_label_values(&[certificate, source_kind, "success"])
                .inc();
        }
        Event::ObtainFailed {
            certificate,
            source_kind,
            error,
        } => {
            best_effort(store.append_event(&stored(
                now,
                "certificate.obtain_failed",
                certificate,
                error.to_string(),
                serde_json::json!({"class": error.class.as_str(), "code": error.code}),
            )));
            failure!(
                needs_human(error.class, false),
                target: OBTAIN_LOG,
                certificate = %certificate, class = %error.class, code = %error.code,
                error = %error, "obtaining a certificate failed"
            );
            metrics
                .renewals
                .with_label_values(&[certificate, source_kind, "failure"])
                .inc();
        }
        Event::ImportRejected { certificate, error } => {
            best_effort(store.append_event(&stored(
                now,
                "certificate.rejected",
                certificate,
                error.to_string(),
                serde_json::json!({"code": error.code, "class": error.class.as_str()}),
            )));
            metrics
                .renewals
                .with_label_values(&[certificate, "file", "failure"])
                .inc();
        }
        Event::Retrying { subject, error } => {
            let (kind, name) = match subject {
                Subject::Target(target) => (SubjectKind::Target, target.name.clone()),
                Subject::Policy { policy, resource } => (
                    SubjectKind::Policy,
                    super::policy::subject(policy, resource),
                ),
            };
            store.record_attempt(&failed_attempt(kind, name, error, now))?;
            let request_id = error.request_id.as_deref().unwrap_or("");
            // Only throttled and transient failures are retried: never one for a human.
            match subject {
                Subject::Target(target) => failure!(
                    needs_human(error.class, false),
                    target: DEPLOY_LOG,
                    target_name = %target.name, class = %error.class, code = %error.code,
                    request_id, error = %error, "retrying a failed call"
                ),
                Subject::Policy { policy, resource } => failure!(
                    needs_human(error.class, false),
                    target: POLICY_LOG,
                    policy = %policy, resource = %resource, class = %error.class,
                    code = %error.code, request_id, error = %error, "retrying a failed call"
                ),
            }
            count_error(metrics, error);
        }
        Event::TargetInSync { target, version } => {
            store.append_event(&stored(
                now,
                "deploy.in_sync",
                &target.name,
                "target already serves the desired certificate".into(),
                serde_json::json!({"fingerprint": version.fingerprint}),
            ))?;
            tracing::info!(target: DEPLOY_LOG, target_name = %target.name, kind = target.kind, certificate = %version.certificate, fingerprint = %version.fingerprint, "target serves the desired certificate");
        }
        Event::Deployed {
            target,
            version,
            elapsed,
        } => {
            store.append_event(&stored(
                now,
                "deploy.succeeded",
                &target.name,
                format!("deployed {} to {}", version.certificate, target.name),
                serde_json::json!({"fingerprint": version.fingerprint, "certificate": version.certificate}),
            ))?;
            tracing::info!(
                target: DEPLOY_LOG,
                target_name = %target.name,
                kind = target.kind,
                certificate = %version.certificate,
                fingerprint = %version.fingerprint,
                serial = %version.serial,
                duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
                "deployed"
            );
            metrics
                .deployments
                .with_label_values(&[target.name.as_str(), target.kind, "success"])
                .inc();
            metrics.target_proven_in_sync(&target.name, target.kind, now.unix_timestamp());
            metrics.set_target_served(&target.name, target.kind, Some(state::validity(version)));
        }
        Event::DeployFailed {
            target,
            error,
            attempts,
            retry_at,
        } => {
            store.append_event(&stored(
                now,
                "deploy.failed",
                &target.name,
                format!(
                    "deploy to {} failed: {} {}",
                    target.name, error.class, error.code
                ),
                serde_json::json!({
                    "class": error.class.as_str(),
                    "code": error.code,
                    "request_id": error.request_id,
                    "message": error.message,
                    "retry_at": retry_at.map(|at| at.unix_timestamp()),
                }),
            ))?;
            let parked = retry_at.is_none();
            failure!(
                needs_human(error.class, parked),
                target: DEPLOY_LOG,
                target_name = %target.name, kind = target.kind, class = %error.class, code = %error.code,
                request_id = error.request_id.as_deref().unwrap_or(""), parked,
                retry_at = retry_at.map_or(0, OffsetDateTime::unix_timestamp), error = %error,
                "deploy failed"
            );
            metrics.set_target_failing(
                &target.name,
                target.kind,
                Some(Failing {
                    consecutive: attempts,
                    class: error.class,
                }),
                parked,
            );
            metrics
                .deployments
                .with_label_values(&[target.name.as_str(), target.kind, "failure"])
                .inc();
            count_error(metrics, error);
        }
        Event::PolicyRemediated {
            policy,
            resource,
            job_id,
        } => {
            store.append_event(&stored(
                now,
                "policy.remediated",
                policy,
                format!("{resource} corrected"),
                serde_json::json!({"resource": resource, "job_id": job_id}),
            ))?;
            tracing::info!(target: POLICY_LOG, policy = %policy, resource = %resource, job_id = job_id.unwrap_or(""), "policy remediated");
            metrics
                .policy_remediations
                .with_label_values(&[policy, "success"])
                .inc();
        }
        Event::PolicyFailed {
            policy,
            resource,
            error,
            retry_at,
        } => {
            let subject = super::policy::subject(policy, resource);
            store.record_attempt(&failed_attempt(SubjectKind::Policy, subject, error, now))?;
            failure!(
                needs_human(error.class, retry_at.is_none()),
                target: POLICY_LOG,
                policy = %policy, resource = %resource, class = %error.class, code = %error.code,
                request_id = error.request_id.as_deref().unwrap_or(""), error = %error,
                "policy pass failed"
            );
            count_error(metrics, error);
            metrics
                .policy_remediations
                .with_label_values(&[policy, "failure"])
                .inc();
        }
    }
    Ok(())
}

/// Logs an event log entry the store refused, for outcomes that go on without it.
fn best_effort(appended: Result<i64, StoreError>) {
    if let Err(error) = appended {
        tracing::error!(target: "certkeeper::engine::pass", error = %error, "cannot append to the event log");
    }
}

/// The attempt that records `error` against `subject`.
fn failed_attempt(
    kind: SubjectKind,
    subject: String,
    error: &CloudError,
    now: OffsetDateTime,
) -> Attempt {
    Attempt {
        subject_kind: kind,
        subject,
        operation: error.operation.clone(),
        class: Some(error.class),
        code: Some(error.code.clone()),
        at: now,
    }
}

fn stored(
    at: OffsetDateTime,
    kind: &str,
    subject: &str,
    message: String,
    fields: serde_json::Value,
) -> StoredEvent {
    StoredEvent {
        id: 0,
        at,
        kind: kind.to_owned(),
        subject: subject.to_owned(),
        message,
        fields,
    }
}

/// Counts `error` in `certkeeper_errors_total`, its code label bounded by the vendor tables.
fn count_error(metrics: &Metrics, error: &CloudError) {
    let mut labelled = error.clone();
    labelled.code_documented = crate::cloud::registry::is_known_code(error.vendor, &error.code);
    metrics.count_error(&labelled);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::file::{FileSettings, FileTarget};
    use crate::error::ErrorClass;
    use crate::store::sqlite::SqliteStore;
    use crate::store::EventQuery;
    use std::sync::Arc;

    fn handle(directory: &std::path::Path) -> TargetHandle {
        let settings = FileSettings {
            directory: directory.join("tls"),
            owner: None,
            group: None,
            reload_command: None,
            reload_timeout: None,
        };
        TargetHandle {
            name: "files".into(),
            kind: "file",
            vendor: "file",
            target: Arc::new(FileTarget::new("files", &settings).unwrap()),
            window: None,
        }
    }

    #[test]
    fn a_failed_deploy_is_recorded_and_counted_once_with_a_bounded_code() {
        let directory = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&directory.path().join("state")).unwrap();
        let metrics = Metrics::new().unwrap();
        let target = handle(directory.path());
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let documented = CloudError::new(
            "alibaba",
            "SetCdnDomainSSLCertificate",
            ErrorClass::Throttled,
            "Throttling.User",
            "slow down",
        );
        let invented = CloudError::new(
            "alibaba",
            "SetCdnDomainSSLCertificate",
            ErrorClass::Invalid,
            "Made.Up.By.A.Server",
            "no",
        );
        for (error, retry_at) in [(&documented, Some(now)), (&invented, None)] {
            let failed = Event::DeployFailed {
                target: &target,
                error,
                attempts: 1,
                retry_at,
            };
            emit(&store, &metrics, now, failed).unwrap();
        }
        let text = metrics.encode().unwrap();
        for code in ["Throttling.User", "other"] {
            assert!(
                text.contains(&format!("code=\"{code}\"")),
                "{code} in\n{text}"
            );
        }
        assert!(!text.contains("Made.Up.By.A.Server"), "{text}");
        let failures = metrics
            .deployments
            .with_label_values(&["files", "file", "failure"])
            .get();
        assert_eq!(failures, 2);
        let events = store
            .events(&EventQuery {
                kind: Some("deploy.failed".into()),
                ..EventQuery::default()
            })
            .unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].fields["retry_at"], serde_json::Value::Null);
    }

    #[test]
    fn a_retried_call_is_an_attempt_of_its_subject() {
        let directory = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&directory.path().join("state")).unwrap();
        let metrics = Metrics::new().unwrap();
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let error = CloudError::new(
            "qingcloud",
            "DescribeClusters",
            ErrorClass::Transient,
            "5100",
            "busy",
        );
        let subject = Subject::Policy {
            policy: "ssl",
            resource: "cl-1",
        };
        let retrying = Event::Retrying {
            subject,
            error: &error,
        };
        emit(&store, &metrics, now, retrying).unwrap();
        let attempts = store.attempts(SubjectKind::Policy, "ssl/cl-1").unwrap();
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0].code.as_deref(), Some("5100"));
        assert!(metrics.encode().unwrap().contains("code=\"5100\""));
    }

    #[test]
    fn an_obtain_failure_is_recorded_and_counted_once() {
        let directory = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&directory.path().join("state")).unwrap();
        let metrics = Metrics::new().unwrap();
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        let error = SourceError::new(
            "acme",
            "newOrder",
            ErrorClass::Throttled,
            "rateLimited",
            "too many orders",
        );
        let failed = Event::ObtainFailed {
            certificate: "www",
            source_kind: "acme",
            error: &error,
        };
        emit(&store, &metrics, now, failed).unwrap();
        let rejected = Event::ImportRejected {
            certificate: "edge",
            error: &error,
        };
        emit(&store, &metrics, now, rejected).unwrap();
        let renewals = |certificate: &str, kind: &str| {
            metrics
                .renewals
                .with_label_values(&[certificate, kind, "failure"])
                .get()
        };
        assert_eq!((renewals("www", "acme"), renewals("edge", "file")), (1, 1));
        let events = store.events(&EventQuery::default()).unwrap();
        let kinds: Vec<&str> = events.iter().map(|event| event.kind.as_str()).collect();
        assert_eq!(kinds, ["certificate.obtain_failed", "certificate.rejected"]);
        assert_eq!(events[0].fields["code"], "rateLimited");
    }
}
