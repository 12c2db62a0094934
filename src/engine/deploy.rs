//! Deploying one certificate version to one target, driven by the deployment ledger in the
//! store: desired = the newest version that passes the pre-deploy checks, observed = what
//! the target serves. Deploy when they differ, verify by reading back, record the outcome,
//! and schedule a failure by its class (see [`super::backoff`]). The ledger row is marked
//! `deploying` before any write call, so a crash mid-deploy is found and re-observed on the
//! next start; nothing here depends on memory surviving a restart.

use crate::cloud::Target;
use crate::engine::converge::{converge, deploy_and_verify, Convergence};
use crate::engine::decide::{self, Decision, Hold};
use crate::engine::event::{Event, Subject};
use crate::engine::{backoff, event, inputs, state};
use crate::error::{CloudError, ErrorClass};
use crate::retry::{with_retries, RetriedErrors, RetryPolicy};
use crate::store::{
    Attempt, CertificateVersion, DeployStatus, DeploymentRecord, LastError, StateStore, StoreError,
    SubjectKind,
};
use crate::telemetry::metrics::Metrics;
use crate::window::MaintenanceWindow;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// A configured target ready for the engine.
#[derive(Clone)]
pub struct TargetHandle {
    pub name: String,
    pub kind: &'static str,
    /// The vendor whose concurrency limit and rate limits apply.
    pub vendor: &'static str,
    pub target: Arc<dyn Target>,
    /// Boxed: a schedule is a few hundred bytes, and most of 10,000 targets have none.
    pub window: Option<Box<MaintenanceWindow>>,
}

/// What the engine needs to deploy.
#[derive(Clone)]
pub struct DeployContext {
    pub store: Arc<dyn StateStore>,
    pub metrics: Metrics,
    pub retry: RetryPolicy,
    /// A version with less validity left than this is not deployed (`daemon.grace_period`).
    pub grace: Duration,
}

/// How one pass over one (target, certificate) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeployOutcome {
    InSync,
    Deployed,
    /// Not due yet (backoff) or parked until the inputs change.
    Skipped,
    /// The target's maintenance window is closed; deploy when it opens.
    Deferred(Option<OffsetDateTime>),
    /// Failed; retried at the time given, or parked (`None`).
    Failed {
        class: ErrorClass,
        code: String,
        retry_at: Option<OffsetDateTime>,
    },
}

fn new_record(target: &str, version: &CertificateVersion, now: OffsetDateTime) -> DeploymentRecord {
    DeploymentRecord {
        target: target.to_owned(),
        certificate: version.certificate.clone(),
        desired_fingerprint: Some(version.fingerprint.clone()),
        observed_fingerprint: None,
        status: DeployStatus::Pending,
        attempts: 0,
        last_error: None,
        next_attempt_at: None,
        updated_at: now,
    }
}

/// One pass over one target for one certificate version. `scan` forces a read of the live
/// state even when the ledger says in sync (drift detection). Only a new certificate
/// version resets the backoff here; see [`reconcile_target_with_inputs`] for config changes.
pub async fn reconcile_target(
    context: &DeployContext,
    handle: &TargetHandle,
    version: &CertificateVersion,
    names: &[String],
    now: OffsetDateTime,
    scan: bool,
) -> Result<DeployOutcome, StoreError> {
    reconcile_target_with_inputs(context, handle, version, names, None, now, scan).await
}

/// [`reconcile_target`] that also resets the backoff (and unparks an `invalid` failure)
/// when `inputs`, the fingerprint of the target's configuration
/// ([`inputs::fingerprint`] of its `TargetConfig`), differs from the one last recorded.
pub async fn reconcile_target_with_inputs(
    context: &DeployContext,
    handle: &TargetHandle,
    version: &CertificateVersion,
    names: &[String],
    config_inputs: Option<&str>,
    now: OffsetDateTime,
    scan: bool,
) -> Result<DeployOutcome, StoreError> {
    let store = &context.store;
    let mut record = match store.deployment(&handle.name, &version.certificate)? {
        Some(record) => record,
        None => new_record(&handle.name, version, now),
    };
    let config_changed = match config_inputs {
        Some(fingerprint) => {
            let history = store.attempts(SubjectKind::Target, &handle.name)?;
            inputs::note(
                store.as_ref(),
                SubjectKind::Target,
                &handle.name,
                &history,
                fingerprint,
                now,
            )?
            .is_some()
        }
        None => false,
    };
    if decide::superseded(&record, &version.fingerprint, config_changed) {
        // New inputs: the failure history no longer applies.
        record = DeploymentRecord {
            observed_fingerprint: record.observed_fingerprint,
            ..new_record(&handle.name, version, now)
        };
    }
    match decide::hold(&record, scan, now) {
        Some(Hold::InSync) => return Ok(DeployOutcome::InSync),
        // Parked, deferred to a window or backing off.
        Some(Hold::Parked | Hold::Until(_)) => return Ok(DeployOutcome::Skipped),
        None => {}
    }
    let bundle = match version.to_bundle() {
        Ok(bundle) => bundle,
        Err(error) => {
            let failure = CloudError::new(
                "certkeeper",
                "load",
                ErrorClass::Invalid,
                "BadStoredVersion",
                error.to_string(),
            );
            return fail(context, handle, record, &failure, now).await;
        }
    };
    // Never push an expired, wrong-name, mismatched or too-short-lived certificate.
    let min_remaining = time::Duration::try_from(context.grace).unwrap_or(time::Duration::ZERO);
    if let Err(violation) = crate::cert::check_predeploy(&bundle, names, now, min_remaining) {
        // Time fixes a certificate that is not valid yet (a CA that stamps `not_before`
        // with the issuance second): wait like a busy resource. Anything else is parked.
        let class = match violation.reason {
            crate::cert::checks::ViolationReason::NotYetValid => ErrorClass::Busy,
            _ => ErrorClass::Invalid,
        };
        let failure = CloudError::new(
            "certkeeper",
            "predeploy_check",
            class,
            violation.reason.as_str(),
            violation.detail,
        );
        return fail(context, handle, record, &failure, now).await;
    }
    // A new version for a target whose last read showed the old one: the ledger already
    // knows the target is stale, so the read before the write is skipped (it would halve
    // the write rate where reads and writes share a limit, e.g. VOD). A failed or
    // interrupted (`deploying`) record is always read first.
    let known_stale = record.status == DeployStatus::Pending
        && record.attempts == 0
        && record
            .observed_fingerprint
            .as_deref()
            .is_some_and(|observed| observed != version.fingerprint);
    let mut serves = false;
    if !known_stale {
        // Observe first (never writes), so an in-sync target needs no window and no write call.
        // Retries inside the read count like those of the write: each shows in the attempt
        // history and the error metrics, so a throttled or flaky read is visible too.
        let retried = RetriedErrors::default();
        let observed = with_retries(
            &context.retry,
            || handle.target.observe(),
            |error, _, _| retried.push(error),
        )
        .await;
        record_retried(retried, context, handle, now)?;
        let live = match observed {
            Ok(live) => live,
            Err(error) => return fail(context, handle, record, &error, now).await,
        };
        serves = live.serves(&bundle);
        publish_served(context, handle, version, serves, &live)?;
        if !serves {
            record.observed_fingerprint = live.fingerprint.clone();
        }
    }
    let decision = decide::decide(serves, handle.window.as_deref(), now);
    if decision == Decision::InSync {
        let was_in_sync = record.status == DeployStatus::InSync;
        mark_in_sync(&mut record, version, now);
        store.put_deployment(&record)?;
        context
            .metrics
            .target_proven_in_sync(&handle.name, handle.kind, now.unix_timestamp());
        if !was_in_sync {
            let in_sync = Event::TargetInSync {
                target: handle,
                version,
            };
            event::emit(store.as_ref(), &context.metrics, now, in_sync)?;
        }
        return Ok(DeployOutcome::InSync);
    }
    context
        .metrics
        .target_not_in_sync(&handle.name, handle.kind);
    if let Decision::Deferred(opens) = decision {
        record.status = DeployStatus::Pending;
        record.next_attempt_at = opens;
        record.updated_at = now;
        store.put_deployment(&record)?;
        return Ok(DeployOutcome::Deferred(opens));
    }
    // Marked before any write call: after a crash the row says a deploy may be half done.
    record.status = DeployStatus::Deploying;
    record.updated_at = now;
    store.put_deployment(&record)?;
    let retried = RetriedErrors::default();
    let started = std::time::Instant::now();
    // The first attempt follows a read (or the ledger) that showed a difference, so it
    // writes at once; a retry reads first, since the failed attempt may have written.
    let mut first = true;
    let result = with_retries(
        &context.retry,
        || {
            let fresh = std::mem::replace(&mut first, false);
            let (target, bundle) = (handle.target.as_ref(), &bundle);
            async move {
                if fresh {
                    deploy_and_verify(target, bundle)
                        .await
                        .map(|()| Convergence::Deployed)
                } else {
                    converge(target, bundle).await
                }
            }
        },
        |error, _, _| retried.push(error),
    )
    .await;
    record_retried(retried, context, handle, now)?;
    match result {
        Ok(convergence) => {
            mark_in_sync(&mut record, version, now);
            let attempt = Attempt {
                subject_kind: SubjectKind::Target,
                subject: handle.name.clone(),
                operation: "deploy".into(),
                class: None,
                code: None,
                at: now,
            };
            store.put_deployment_with_attempt(&record, &attempt)?;
            let deployed = Event::Deployed {
                target: handle,
                version,
                elapsed: started.elapsed(),
            };
            event::emit(store.as_ref(), &context.metrics, now, deployed)?;
            Ok(match convergence {
                Convergence::AlreadyInSync => DeployOutcome::InSync,
                Convergence::Deployed => DeployOutcome::Deployed,
            })
        }
        Err(error) => fail(context, handle, record, &error, now).await,
    }
}

/// The ledger row of a target proven to serve `version`: no failure left to back off from.
fn mark_in_sync(record: &mut DeploymentRecord, version: &CertificateVersion, now: OffsetDateTime) {
    record.status = DeployStatus::InSync;
    record.observed_fingerprint = Some(version.fingerprint.clone());
    record.attempts = 0;
    record.last_error = None;
    record.next_attempt_at = None;
    record.updated_at = now;
}

/// Sets what the target is known to serve: the desired version when the read proved it,
/// else the stored version whose fingerprint it serves, else only the expiry the read gave.
fn publish_served(
    context: &DeployContext,
    handle: &TargetHandle,
    version: &CertificateVersion,
    serves: bool,
    live: &crate::cloud::LiveCertificate,
) -> Result<(), StoreError> {
    let served = if serves {
        Some(state::validity(version))
    } else if let Some(fingerprint) = &live.fingerprint {
        context
            .store
            .certificate_versions(&version.certificate)?
            .iter()
            .find(|stored| &stored.fingerprint == fingerprint)
            .map(state::validity)
    } else {
        None
    };
    context
        .metrics
        .set_target_served(&handle.name, handle.kind, served);
    if let (None, Some(not_after)) = (served, live.not_after) {
        context
            .metrics
            .target_certificate_expiration
            .with_label_values(&[handle.name.as_str(), handle.kind])
            .set(not_after.unix_timestamp() as f64);
    }
    Ok(())
}

/// Sets `certkeeper_retry_pending{class}` from the store: the targets and policy resources
/// whose last pass failed and that wait for a retry, by the class of that failure (parked
/// ones wait for new inputs, not a retry, and are not counted). Cheap (two reads), meant to
/// run after each reconcile pass.
pub fn refresh_retry_pending(store: &dyn StateStore, metrics: &Metrics) -> Result<(), StoreError> {
    let mut counts: std::collections::HashMap<ErrorClass, i64> = std::collections::HashMap::new();
    for record in store.deployments()? {
        if let (DeployStatus::Failed, Some(error)) = (record.status, &record.last_error) {
            *counts.entry(error.class).or_default() += 1;
        }
    }
    for status in store.policy_statuses()? {
        if let Some(error) = &status.last_error {
            if backoff::next_delay(error.class, 1).is_some() {
                *counts.entry(error.class).or_default() += 1;
            }
        }
    }
    for class in ErrorClass::ALL {
        metrics
            .retry_pending
            .with_label_values(&[class.as_str()])
            .set(counts.get(&class).copied().unwrap_or(0));
    }
    Ok(())
}

/// Counts and records, as attempts against the target, the failures retried inside one
/// operation.
fn record_retried(
    retried: RetriedErrors,
    context: &DeployContext,
    handle: &TargetHandle,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    for error in retried.take() {
        let retrying = Event::Retrying {
            subject: Subject::Target(handle),
            error: &error,
        };
        event::emit(context.store.as_ref(), &context.metrics, now, retrying)?;
    }
    Ok(())
}

/// Records a failure and schedules the next attempt by class.
async fn fail(
    context: &DeployContext,
    handle: &TargetHandle,
    mut record: DeploymentRecord,
    error: &CloudError,
    now: OffsetDateTime,
) -> Result<DeployOutcome, StoreError> {
    record.attempts = record.attempts.saturating_add(1);
    let delay = backoff::next_delay(error.class, record.attempts);
    let retry_at = delay.map(|delay| {
        let hint = error.retry_after.unwrap_or(Duration::ZERO).max(delay);
        now + time::Duration::try_from(hint).unwrap_or(time::Duration::HOUR)
    });
    record.status = if retry_at.is_some() {
        DeployStatus::Failed
    } else {
        DeployStatus::Parked
    };
    record.next_attempt_at = retry_at;
    record.last_error = Some(LastError {
        class: error.class,
        code: error.code.clone(),
        message: error.message.clone(),
    });
    record.updated_at = now;
    let attempt = Attempt {
        subject_kind: SubjectKind::Target,
        subject: handle.name.clone(),
        operation: error.operation.clone(),
        class: Some(error.class),
        code: Some(error.code.clone()),
        at: now,
    };
    context
        .store
        .put_deployment_with_attempt(&record, &attempt)?;
    let failed = Event::DeployFailed {
        target: handle,
        error,
        attempts: record.attempts,
        retry_at,
    };
    event::emit(context.store.as_ref(), &context.metrics, now, failed)?;
    Ok(DeployOutcome::Failed {
        class: error.class,
        code: error.code.clone(),
        retry_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::bundle::testing;
    use crate::cert::CertificateBundle;
    use crate::cloud::file::{FileSettings, FileTarget};
    use crate::cloud::LiveCertificate;
    use crate::store::sqlite::SqliteStore;
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn context(directory: &std::path::Path) -> DeployContext {
        DeployContext {
            store: Arc::new(SqliteStore::open(&directory.join("state")).unwrap()),
            metrics: Metrics::new().unwrap(),
            retry: RetryPolicy {
                max_attempts: 1,
                ..RetryPolicy::default()
            },
            grace: Duration::from_secs(86_400),
        }
    }

    fn names() -> Vec<String> {
        vec!["www.example.com".to_owned()]
    }

    fn version(bundle: &CertificateBundle) -> CertificateVersion {
        CertificateVersion::from_bundle("www", bundle, "file", OffsetDateTime::now_utc())
    }

    /// A target that always fails with one class, counting deploy calls.
    struct Failing {
        class: ErrorClass,
        deploys: AtomicU32,
    }

    #[async_trait]
    impl Target for Failing {
        fn name(&self) -> &str {
            "failing"
        }
        fn kind(&self) -> &'static str {
            "test"
        }
        async fn observe(&self) -> Result<LiveCertificate, CloudError> {
            Ok(LiveCertificate::default())
        }
        async fn deploy(&self, _bundle: &CertificateBundle) -> Result<(), CloudError> {
            self.deploys.fetch_add(1, Ordering::SeqCst);
            Err(CloudError::new(
                "test", "Deploy", self.class, "Code", "failed",
            ))
        }
    }

    fn handle(target: Arc<dyn Target>, window: Option<MaintenanceWindow>) -> TargetHandle {
        TargetHandle {
            name: target.name().to_owned(),
            kind: target.kind(),
            vendor: "test",
            target,
            window: window.map(Box::new),
        }
    }

    /// A target that serves what it was last given, counting reads and writes.
    #[derive(Default)]
    struct Counting {
        served: std::sync::Mutex<Option<String>>,
        observes: AtomicU32,
        deploys: AtomicU32,
    }

    #[async_trait]
    impl Target for Counting {
        fn name(&self) -> &str {
            "counting"
        }
        fn kind(&self) -> &'static str {
            "test"
        }
        async fn observe(&self) -> Result<LiveCertificate, CloudError> {
            self.observes.fetch_add(1, Ordering::SeqCst);
            let served = self.served.lock().unwrap().clone();
            Ok(LiveCertificate {
                ssl_enabled: served.is_some(),
                fingerprint: served,
                not_after: None,
            })
        }
        async fn deploy(&self, bundle: &CertificateBundle) -> Result<(), CloudError> {
            self.deploys.fetch_add(1, Ordering::SeqCst);
            *self.served.lock().unwrap() = Some(bundle.fingerprint().to_owned());
            Ok(())
        }
    }

    #[tokio::test]
    async fn reads_once_before_and_once_after_a_write_and_not_before_a_known_stale_one() {
        let directory = tempfile::tempdir().unwrap();
        let context = context(directory.path());
        let target = Arc::new(Counting::default());
        let handle = handle(target.clone(), None);
        let now = OffsetDateTime::now_utc();
        let counts = || {
            (
                target.observes.load(Ordering::SeqCst),
                target.deploys.load(Ordering::SeqCst),
            )
        };
        // Unknown target: read, write, read back (not read twice before the write).
        let first = version(&testing::fresh(&["www.example.com"]));
        let outcome = reconcile_target(&context, &handle, &first, &names(), now, false)
            .await
            .unwrap();
        assert_eq!(outcome, DeployOutcome::Deployed);
        assert_eq!(counts(), (2, 1));
        // A new version: the ledger knows the target serves the old one, so write and read
        // back only.
        let second = version(&testing::fresh(&["www.example.com"]));
        assert_ne!(first.fingerprint, second.fingerprint);
        let outcome = reconcile_target(&context, &handle, &second, &names(), now, false)
            .await
            .unwrap();
        assert_eq!(outcome, DeployOutcome::Deployed);
        assert_eq!(counts(), (3, 2));
        // A scan of an in-sync target reads and does not write.
        let outcome = reconcile_target(&context, &handle, &second, &names(), now, true)
            .await
            .unwrap();
        assert_eq!(outcome, DeployOutcome::InSync);
        assert_eq!(counts(), (4, 2));
        let record = context
            .store
            .deployment("counting", &second.certificate)
            .unwrap()
            .unwrap();
        assert_eq!(record.status, DeployStatus::InSync);
        assert_eq!(
            record.observed_fingerprint.as_deref(),
            Some(second.fingerprint.as_str())
        );
    }

    #[tokio::test]
    async fn deploys_once_then_stays_in_sync() {
        let directory = tempfile::tempdir().unwrap();
        let context = context(directory.path());
        let settings = FileSettings {
            directory: directory.path().join("tls"),
            owner: None,
            group: None,
            reload_command: None,
            reload_timeout: None,
        };
        let target = handle(Arc::new(FileTarget::new("files", &settings).unwrap()), None);
        let bundle = testing::fresh(&["www.example.com"]);
        let version = version(&bundle);
        context
            .store
            .insert_certificate_version(&version, &["files".into()])
            .unwrap();
        let now = OffsetDateTime::now_utc();
        assert_eq!(
            reconcile_target(&context, &target, &version, &names(), now, false)
                .await
                .unwrap(),
            DeployOutcome::Deployed
        );
        assert_eq!(
            reconcile_target(&context, &target, &version, &names(), now, false)
                .await
                .unwrap(),
            DeployOutcome::InSync
        );
        assert_eq!(
            reconcile_target(&context, &target, &version, &names(), now, true)
                .await
                .unwrap(),
            DeployOutcome::InSync
        );
        let record = context.store.deployment("files", "www").unwrap().unwrap();
        assert_eq!(record.status, DeployStatus::InSync);
        assert_eq!(
            record.observed_fingerprint.as_deref(),
            Some(bundle.fingerprint())
        );
    }

    #[tokio::test]
    async fn failures_back_off_by_class_and_invalid_parks() {
        let directory = tempfile::tempdir().unwrap();
        let context = context(directory.path());
        let bundle = testing::fresh(&["www.example.com"]);
        let version = version(&bundle);
        let now = OffsetDateTime::now_utc();

        let busy = Arc::new(Failing {
            class: ErrorClass::Busy,
            deploys: AtomicU32::new(0),
        });
        let busy_handle = handle(busy.clone(), None);
        let outcome = reconcile_target(&context, &busy_handle, &version, &names(), now, false)
            .await
            .unwrap();
        let DeployOutcome::Failed {
            class,
            retry_at: Some(retry_at),
            ..
        } = outcome
        else {
            panic!("{outcome:?}")
        };
        assert_eq!(class, ErrorClass::Busy);
        assert_eq!(retry_at, now + time::Duration::seconds(30));
        // Not due yet: no second call.
        assert_eq!(
            reconcile_target(&context, &busy_handle, &version, &names(), now, false)
                .await
                .unwrap(),
            DeployOutcome::Skipped
        );
        assert_eq!(busy.deploys.load(Ordering::SeqCst), 1);
        // Due again: the second failure doubles the wait.
        let later = now + time::Duration::seconds(31);
        let DeployOutcome::Failed {
            retry_at: Some(second),
            ..
        } = reconcile_target(&context, &busy_handle, &version, &names(), later, false)
            .await
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(second, later + time::Duration::seconds(60));
        refresh_retry_pending(context.store.as_ref(), &context.metrics).unwrap();
        let pending = |class: ErrorClass| {
            context
                .metrics
                .retry_pending
                .with_label_values(&[class.as_str()])
                .get()
        };
        assert_eq!(
            (pending(ErrorClass::Busy), pending(ErrorClass::Auth)),
            (1, 0)
        );
        let attempts = context
            .store
            .attempts(SubjectKind::Target, "failing")
            .unwrap();
        assert_eq!(
            attempts
                .iter()
                .filter(|attempt| attempt.class == Some(ErrorClass::Busy))
                .count(),
            2
        );

        let invalid = Arc::new(Failing {
            class: ErrorClass::Invalid,
            deploys: AtomicU32::new(0),
        });
        let invalid_directory = tempfile::tempdir().unwrap();
        let invalid_context = self::context(invalid_directory.path());
        let invalid_handle = handle(invalid.clone(), None);
        let outcome = reconcile_target(
            &invalid_context,
            &invalid_handle,
            &version,
            &names(),
            now,
            false,
        )
        .await
        .unwrap();
        assert!(
            matches!(outcome, DeployOutcome::Failed { retry_at: None, .. }),
            "{outcome:?}"
        );
        let far = now + time::Duration::days(30);
        assert_eq!(
            reconcile_target(
                &invalid_context,
                &invalid_handle,
                &version,
                &names(),
                far,
                false
            )
            .await
            .unwrap(),
            DeployOutcome::Skipped
        );
        assert_eq!(
            invalid.deploys.load(Ordering::SeqCst),
            1,
            "parked: not retried"
        );
        // A new certificate version unparks it.
        let renewed = self::version(&testing::fresh(&["www.example.com"]));
        reconcile_target(
            &invalid_context,
            &invalid_handle,
            &renewed,
            &names(),
            far,
            false,
        )
        .await
        .unwrap();
        assert_eq!(invalid.deploys.load(Ordering::SeqCst), 2);
    }

    /// A target whose first read fails (transient), then serves `fingerprint`.
    struct FlakyRead {
        fingerprint: String,
        reads: AtomicU32,
    }

    #[async_trait]
    impl Target for FlakyRead {
        fn name(&self) -> &str {
            "flaky"
        }
        fn kind(&self) -> &'static str {
            "test"
        }
        async fn observe(&self) -> Result<LiveCertificate, CloudError> {
            if self.reads.fetch_add(1, Ordering::SeqCst) == 0 {
                return Err(CloudError::new(
                    "test",
                    "Describe",
                    ErrorClass::Transient,
                    "ServiceUnavailable",
                    "try later",
                ));
            }
            Ok(LiveCertificate {
                ssl_enabled: true,
                fingerprint: Some(self.fingerprint.clone()),
                not_after: None,
            })
        }
        async fn deploy(&self, _bundle: &CertificateBundle) -> Result<(), CloudError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn retried_reads_show_in_the_attempt_history_and_metrics() {
        let directory = tempfile::tempdir().unwrap();
        let mut context = context(directory.path());
        context.retry = RetryPolicy {
            max_attempts: 5,
            transient_base: Duration::from_millis(1),
            transient_cap: Duration::from_millis(2),
            ..RetryPolicy::default()
        };
        let bundle = testing::fresh(&["www.example.com"]);
        let target = Arc::new(FlakyRead {
            fingerprint: bundle.fingerprint().to_owned(),
            reads: AtomicU32::new(0),
        });
        let outcome = reconcile_target(
            &context,
            &handle(target.clone(), None),
            &version(&bundle),
            &names(),
            OffsetDateTime::now_utc(),
            false,
        )
        .await
        .unwrap();
        assert_eq!(outcome, DeployOutcome::InSync);
        assert_eq!(target.reads.load(Ordering::SeqCst), 2);
        let attempts = context
            .store
            .attempts(SubjectKind::Target, "flaky")
            .unwrap();
        assert_eq!(attempts.len(), 1, "{attempts:?}");
        assert_eq!(attempts[0].operation, "Describe");
        assert_eq!(attempts[0].class, Some(ErrorClass::Transient));
        assert_eq!(
            context
                .metrics
                .errors
                .with_label_values(&["test", "Describe", "transient", "other"])
                .get(),
            1
        );
    }

    /// A target whose every read fails with one class (a wrong access key: `auth`).
    struct Unreadable(ErrorClass);

    #[async_trait]
    impl Target for Unreadable {
        fn name(&self) -> &str {
            "unreadable"
        }
        fn kind(&self) -> &'static str {
            "test"
        }
        async fn observe(&self) -> Result<LiveCertificate, CloudError> {
            Err(CloudError::new(
                "test",
                "DescribeCertificates",
                self.0,
                "SignatureDoesNotMatch",
                "the signature does not match",
            ))
        }
        async fn deploy(&self, _bundle: &CertificateBundle) -> Result<(), CloudError> {
            unreachable!("never deployed without a read")
        }
    }

    #[tokio::test]
    async fn a_failed_first_read_sets_the_state_gauges_at_once() {
        let now = OffsetDateTime::now_utc();
        let version = version(&testing::fresh(&["www.example.com"]));
        for (class, parked) in [(ErrorClass::Auth, 0), (ErrorClass::Invalid, 1)] {
            let directory = tempfile::tempdir().unwrap();
            let context = context(directory.path());
            let handle = handle(Arc::new(Unreadable(class)), None);
            reconcile_target(&context, &handle, &version, &names(), now, false)
                .await
                .unwrap();
            let labels = ["unreadable", "test"];
            let metrics = &context.metrics;
            assert_eq!(metrics.target_in_sync.with_label_values(&labels).get(), 0);
            assert_eq!(
                metrics
                    .target_consecutive_failures
                    .with_label_values(&labels)
                    .get(),
                1
            );
            assert_eq!(
                metrics.target_parked.with_label_values(&labels).get(),
                parked
            );
            assert_eq!(
                metrics
                    .target_last_error
                    .with_label_values(&["unreadable", "test", class.as_str()])
                    .get(),
                1
            );
        }
    }

    #[tokio::test]
    async fn a_config_change_unparks_and_resets_the_backoff() {
        let directory = tempfile::tempdir().unwrap();
        let context = context(directory.path());
        let target = Arc::new(Failing {
            class: ErrorClass::Invalid,
            deploys: AtomicU32::new(0),
        });
        let handle = handle(target.clone(), None);
        let version = version(&testing::fresh(&["www.example.com"]));
        let now = OffsetDateTime::now_utc();
        let pass = |inputs: &'static str, at: OffsetDateTime| {
            let (context, handle, version) = (&context, &handle, &version);
            async move {
                reconcile_target_with_inputs(
                    context,
                    handle,
                    version,
                    &names(),
                    Some(inputs),
                    at,
                    false,
                )
                .await
                .unwrap()
            }
        };
        assert!(matches!(
            pass("a", now).await,
            DeployOutcome::Failed { retry_at: None, .. }
        ));
        assert_eq!(
            pass("a", now + time::Duration::days(3)).await,
            DeployOutcome::Skipped
        );
        assert_eq!(target.deploys.load(Ordering::SeqCst), 1, "parked");
        // The same config after a restart: still parked.
        assert_eq!(
            reconcile_target(&context, &handle, &version, &names(), now, false)
                .await
                .unwrap(),
            DeployOutcome::Skipped
        );
        // The operator edits the target's config: tried again at once.
        assert!(matches!(
            pass("b", now + time::Duration::days(3)).await,
            DeployOutcome::Failed { retry_at: None, .. }
        ));
        assert_eq!(target.deploys.load(Ordering::SeqCst), 2);
        let record = context.store.deployment("failing", "www").unwrap().unwrap();
        assert_eq!(record.attempts, 1, "the count restarted");
    }

    #[tokio::test]
    async fn a_certificate_failing_predeploy_checks_is_never_pushed() {
        let directory = tempfile::tempdir().unwrap();
        let context = context(directory.path());
        let target = Arc::new(Failing {
            class: ErrorClass::Busy,
            deploys: AtomicU32::new(0),
        });
        let now = OffsetDateTime::now_utc();
        let expired = testing::self_signed(
            &["www.example.com"],
            now - time::Duration::days(30),
            now - time::Duration::days(1),
        );
        let wrong_name = testing::fresh(&["other.example.org"]);
        for (bundle, reason) in [(expired, "expired"), (wrong_name, "name_mismatch")] {
            let outcome = reconcile_target(
                &context,
                &handle(target.clone(), None),
                &version(&bundle),
                &names(),
                now,
                false,
            )
            .await
            .unwrap();
            assert_eq!(
                outcome,
                DeployOutcome::Failed {
                    class: ErrorClass::Invalid,
                    code: reason.into(),
                    retry_at: None
                }
            );
        }
        assert_eq!(target.deploys.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_certificate_not_yet_valid_waits_instead_of_parking() {
        let directory = tempfile::tempdir().unwrap();
        let context = context(directory.path());
        let target = Arc::new(Failing {
            class: ErrorClass::Busy,
            deploys: AtomicU32::new(0),
        });
        let now = OffsetDateTime::now_utc();
        let early = testing::self_signed(
            &["www.example.com"],
            now + time::Duration::seconds(5),
            now + time::Duration::days(60),
        );
        let outcome = reconcile_target(
            &context,
            &handle(target.clone(), None),
            &version(&early),
            &names(),
            now,
            false,
        )
        .await
        .unwrap();
        let DeployOutcome::Failed {
            class, retry_at, ..
        } = outcome
        else {
            panic!("{outcome:?}");
        };
        assert_eq!(class, ErrorClass::Busy);
        assert!(retry_at.is_some(), "retried once valid, not parked");
        assert_eq!(target.deploys.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn closed_window_defers_without_writing() {
        let directory = tempfile::tempdir().unwrap();
        let context = context(directory.path());
        let target = Arc::new(Failing {
            class: ErrorClass::Busy,
            deploys: AtomicU32::new(0),
        });
        let window = MaintenanceWindow::new("0 2 * * Sun", Duration::from_secs(3600)).unwrap();
        let now = time::macros::datetime!(2026-11-23 12:00 UTC);
        let bundle = testing::self_signed(
            &["www.example.com"],
            now - time::Duration::days(1),
            now + time::Duration::days(90),
        );
        let outcome = reconcile_target(
            &context,
            &handle(target.clone(), Some(window)),
            &version(&bundle),
            &names(),
            now,
            false,
        )
        .await
        .unwrap();
        assert_eq!(
            outcome,
            DeployOutcome::Deferred(Some(time::macros::datetime!(2026-11-29 02:00 UTC)))
        );
        assert_eq!(target.deploys.load(Ordering::SeqCst), 0);
    }
}
