//! One policy pass over one resource with the same retry rules as a deploy: throttled and
//! transient failures are retried inside the pass (`retry`), other classes wait
//! across passes by class (`engine::backoff`), invalid is parked until the policy's inputs
//! change. The backoff state lives only in the store's attempt history (subject
//! `policy/resource`), so a restart changes nothing: consecutive failed passes are the
//! trailing failed attempts, counted by distinct pass time (retries inside a pass share its
//! time), and an `inputs` attempt with the config fingerprint is written whenever that
//! fingerprint changes, which ends the failure run and so resets the backoff.

use crate::cloud::Policy;
use crate::engine::converge::{apply_policy, remediation_deferred_until, PolicyOutcome};
use crate::engine::event::{Event, Subject};
use crate::engine::{backoff, event, inputs, state};
use crate::error::ErrorClass;
use crate::retry::{with_retries, RetriedErrors, RetryPolicy};
use crate::store::{Attempt, LastError, PolicyStatus, StateStore, StoreError, SubjectKind};
use crate::telemetry::metrics::Metrics;
use std::sync::Arc;
use time::OffsetDateTime;

/// What a policy pass needs.
#[derive(Clone)]
pub struct PolicyContext {
    pub store: Arc<dyn StateStore>,
    pub metrics: Metrics,
    pub retry: RetryPolicy,
}

/// How one pass over one policy resource ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyPass {
    /// The pass ran: compliant, reported, deferred to the window, busy or remediated.
    Applied(PolicyOutcome),
    /// Backing off after failures until the time given, or parked (`None`) until the
    /// inputs change.
    Skipped { until: Option<OffsetDateTime> },
    /// Failed; the next pass is due at `retry_at`, or parked (`None`).
    Failed {
        class: ErrorClass,
        code: String,
        retry_at: Option<OffsetDateTime>,
    },
}

/// The attempt-history subject of one policy resource.
pub fn subject(policy: &str, resource: &str) -> String {
    format!("{policy}/{resource}")
}

/// When the next pass is due after the trailing failures of `history`, and how many failed
/// passes they make. `None` when the history does not end in a failure.
fn backoff_state(history: &[Attempt]) -> Option<(Option<OffsetDateTime>, u32)> {
    let (class, passes, last) = backoff::trailing_failures(history)?;
    Some((
        backoff::next_delay(class, passes).map(|delay| last + delay),
        passes,
    ))
}

/// The keys of [`PolicyStatus::observed`]: what the check saw, written by the pass below
/// and read back only through [`Observed::read`].
pub mod keys {
    /// What the check saw (`encryption off`).
    pub const OBSERVED: &str = "observed";
    /// The resource was busy: the next check comes sooner.
    pub const BUSY: &str = "busy";
    /// When the maintenance window opens (Unix seconds).
    pub const WINDOW_OPENS: &str = "window_opens";
    /// The vendor job of a failed remediation (its id).
    pub const JOB_FAILED: &str = "job_failed";
    /// What the policy learned about its account (`Policy::account_note`).
    pub const ACCOUNT_NOTE: &str = "account_note";
    pub use crate::engine::state::NONCOMPLIANT_SINCE;
}

/// [`PolicyStatus::observed`] read back as types.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    pub busy: bool,
    pub window_opens: Option<OffsetDateTime>,
    /// A remediation's vendor job failed: retried only when the next window opens.
    pub job_failed: bool,
    pub noncompliant_since: Option<OffsetDateTime>,
}

impl Observed {
    pub fn read(observed: &serde_json::Value) -> Self {
        let time = |key: &str| {
            observed[key]
                .as_i64()
                .and_then(|at| OffsetDateTime::from_unix_timestamp(at).ok())
        };
        Self {
            busy: observed[keys::BUSY] == true,
            window_opens: time(keys::WINDOW_OPENS),
            job_failed: !observed[keys::JOB_FAILED].is_null(),
            noncompliant_since: time(keys::NONCOMPLIANT_SINCE),
        }
    }
}

/// The window opening a resource waits for after its vendor job failed (recorded in its
/// status by the failing pass), if any.
pub fn job_failed_until(status: &PolicyStatus) -> Option<OffsetDateTime> {
    let observed = Observed::read(&status.observed);
    observed.window_opens.filter(|_| observed.job_failed)
}

/// When a failed resource may be tried again, from its attempt history; `None` when it is
/// parked or its history does not end in a failure.
pub fn retry_at(history: &[Attempt]) -> Option<OffsetDateTime> {
    backoff_state(history).and_then(|(due, _)| due)
}

/// One pass of `policy` (configured as `name`) over `resource` at `now`. `inputs` is a
/// fingerprint of the policy's configuration ([`inputs::fingerprint`] of its
/// `PolicyConfig`): a change unparks and resets the backoff.
pub async fn reconcile_policy(
    context: &PolicyContext,
    name: &str,
    policy: &dyn Policy,
    resource: &str,
    inputs: &str,
    now: OffsetDateTime,
) -> Result<PolicyPass, StoreError> {
    let store = &context.store;
    let subject = subject(name, resource);
    let attempt = |operation: &str, class: Option<ErrorClass>, code: Option<String>| Attempt {
        subject_kind: SubjectKind::Policy,
        subject: subject.clone(),
        operation: operation.to_owned(),
        class,
        code,
        at: now,
    };
    let mut history = store.attempts(SubjectKind::Policy, &subject)?;
    if let Some(marker) = inputs::note(
        store.as_ref(),
        SubjectKind::Policy,
        &subject,
        &history,
        inputs,
        now,
    )? {
        history.push(marker);
    }
    let previous_passes = match backoff_state(&history) {
        Some((None, _)) => return Ok(PolicyPass::Skipped { until: None }),
        Some((Some(due), _)) if due > now => return Ok(PolicyPass::Skipped { until: Some(due) }),
        Some((Some(_), passes)) => passes,
        None => 0,
    };
    // A vendor job that failed is retried in the next maintenance window, never again in
    // the one it failed in (it may have restarted the database).
    let previous = store.policy_status(name, resource)?;
    let previous_since = previous.as_ref().and_then(state::noncompliant_since);
    if let Some(opens) = previous.as_ref().and_then(job_failed_until) {
        if opens > now {
            return Ok(PolicyPass::Skipped { until: Some(opens) });
        }
    }

    // A remediation whose vendor job ran and failed is not retried inside the pass: such a
    // change may restart a database, so it waits for the next pass (and window).
    let retried = RetriedErrors::default();
    let result = with_retries(
        &context.retry,
        || async {
            match apply_policy(policy, resource, now).await {
                Err(error) if error.job_id.is_some() => Ok(Err(error)),
                Err(error) => Err(error),
                Ok(outcome) => Ok(Ok(outcome)),
            }
        },
        |error, _, _| retried.push(error),
    )
    .await
    .and_then(|inner| inner);
    for error in retried.take() {
        let retrying = Event::Retrying {
            subject: Subject::Policy {
                policy: name,
                resource,
            },
            error: &error,
        };
        event::emit(store.as_ref(), &context.metrics, now, retrying)?;
    }

    let mut status = PolicyStatus {
        policy: name.to_owned(),
        resource: resource.to_owned(),
        compliant: false,
        observed: serde_json::Value::Null,
        last_checked: now,
        last_job_id: previous.and_then(|previous| previous.last_job_id),
        last_error: None,
    };
    // A vendor job that ran and failed shows the check had found it non-compliant.
    let remediation_failed = matches!(&result, Err(error) if error.job_id.is_some());
    let pass = match result {
        Ok(outcome) => {
            match &outcome {
                PolicyOutcome::Compliant => status.compliant = true,
                PolicyOutcome::Remediated(remediation) => {
                    status.compliant = true;
                    status.last_job_id = remediation.job_id.clone();
                    let remediated = Event::PolicyRemediated {
                        policy: name,
                        resource,
                        job_id: remediation.job_id.as_deref(),
                    };
                    event::emit(store.as_ref(), &context.metrics, now, remediated)?;
                }
                PolicyOutcome::Reported(finding) => {
                    status.observed = serde_json::json!({ keys::OBSERVED: finding.observed });
                }
                PolicyOutcome::Busy(finding) => {
                    // `busy` brings the next check forward (engine::schedule).
                    status.observed =
                        serde_json::json!({ keys::OBSERVED: finding.observed, keys::BUSY: true });
                }
                PolicyOutcome::Deferred {
                    finding,
                    window_opens,
                } => {
                    status.observed = serde_json::json!({
                        keys::OBSERVED: finding.observed,
                        keys::WINDOW_OPENS: window_opens.map(|at| at.unix_timestamp()),
                    });
                }
            }
            store.record_attempt(&attempt("check", None, None))?;
            PolicyPass::Applied(outcome)
        }
        Err(error) => {
            let passes = previous_passes.saturating_add(1);
            let retry_at = backoff::next_delay(error.class, passes)
                .map(|delay| now + time::Duration::try_from(delay).unwrap_or(time::Duration::HOUR));
            status.last_error = Some(LastError {
                class: error.class,
                code: error.code.clone(),
                message: error.message.clone(),
            });
            if error.job_id.is_some() {
                status.last_job_id = error.job_id.clone();
            }
            let deferred = remediation_deferred_until(policy, &error, now);
            if let Some(opens) = deferred {
                status.observed = serde_json::json!({
                    keys::JOB_FAILED: error.job_id,
                    keys::WINDOW_OPENS: opens.unix_timestamp(),
                });
            }
            let retry_at = deferred.or(retry_at);
            let failed = Event::PolicyFailed {
                policy: name,
                resource,
                error: &error,
                retry_at,
            };
            event::emit(store.as_ref(), &context.metrics, now, failed)?;
            PolicyPass::Failed {
                class: error.class,
                code: error.code,
                retry_at,
            }
        }
    };
    // A check that found it non-compliant starts (or continues) the clock of
    // `remediation_overdue`; a failed check continues a clock already running.
    let found_noncompliant =
        (matches!(pass, PolicyPass::Applied(_)) || remediation_failed) && !status.compliant;
    let since = previous_since.or(found_noncompliant.then_some(now));
    if let Some(since) = since.filter(|_| !status.compliant) {
        if !status.observed.is_object() {
            status.observed = match status.observed.take() {
                serde_json::Value::Null => serde_json::json!({}),
                observed => serde_json::json!({ keys::OBSERVED: observed }),
            };
        }
        status.observed[keys::NONCOMPLIANT_SINCE] = since.unix_timestamp().into();
    }
    if let Some(note) = policy.account_note() {
        if !status.observed.is_object() {
            status.observed = match status.observed.take() {
                serde_json::Value::Null => serde_json::json!({}),
                observed => serde_json::json!({ keys::OBSERVED: observed }),
            };
        }
        status.observed[keys::ACCOUNT_NOTE] = note.into();
    }
    store.put_policy_status(&status)?;
    let history = store.attempts(SubjectKind::Policy, &subject)?;
    let gauges = state::policy_resource_state(Some(&status), &history, policy, now);
    context
        .metrics
        .set_policy_resource_state(name, resource, &gauges);
    Ok(pass)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::{PolicyFinding, PolicyMode, Remediation};
    use crate::error::CloudError;
    use crate::store::sqlite::SqliteStore;
    use crate::window::MaintenanceWindow;
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    /// A non-compliant resource whose remediation fails `failures` times with `class`.
    struct Flaky {
        class: ErrorClass,
        failures: AtomicU32,
        remediations: AtomicU32,
        fixed: std::sync::atomic::AtomicBool,
        /// A window, and failures that come from a vendor job that ran.
        window: Option<MaintenanceWindow>,
    }

    impl Flaky {
        fn new(class: ErrorClass, failures: u32) -> Arc<Self> {
            Arc::new(Self {
                class,
                failures: AtomicU32::new(failures),
                remediations: AtomicU32::new(0),
                fixed: Default::default(),
                window: None,
            })
        }
    }

    #[async_trait]
    impl Policy for Flaky {
        fn name(&self) -> &str {
            "flaky"
        }
        fn kind(&self) -> &'static str {
            "test"
        }
        fn mode(&self) -> PolicyMode {
            PolicyMode::Enforce
        }
        fn maintenance_window(&self) -> Option<&MaintenanceWindow> {
            self.window.as_ref()
        }
        fn resources(&self) -> Vec<String> {
            vec!["r1".into()]
        }
        async fn check(&self, resource: &str) -> Result<PolicyFinding, CloudError> {
            let compliant = self.fixed.load(Ordering::SeqCst);
            Ok(PolicyFinding {
                resource: resource.to_owned(),
                compliant,
                observed: if compliant { "on" } else { "off" }.into(),
                desired: "on".into(),
                busy: false,
            })
        }
        async fn remediate(&self, _resource: &str) -> Result<Remediation, CloudError> {
            self.remediations.fetch_add(1, Ordering::SeqCst);
            let left = self.failures.load(Ordering::SeqCst);
            if left > 0 {
                self.failures.store(left - 1, Ordering::SeqCst);
                let error = CloudError::new("test", "Modify", self.class, "Code", "failed");
                return Err(match self.window {
                    Some(_) => error.with_job_id(Some("job-1".into())),
                    None => error,
                });
            }
            self.fixed.store(true, Ordering::SeqCst);
            Ok(Remediation { job_id: None })
        }
    }

    fn context(directory: &std::path::Path) -> PolicyContext {
        PolicyContext {
            store: Arc::new(SqliteStore::open(&directory.join("state")).unwrap()),
            metrics: Metrics::new().unwrap(),
            retry: RetryPolicy {
                max_attempts: 5,
                throttle_base: Duration::from_millis(1),
                throttle_cap: Duration::from_millis(2),
                transient_base: Duration::from_millis(1),
                transient_cap: Duration::from_millis(2),
            },
        }
    }

    fn start() -> OffsetDateTime {
        time::macros::datetime!(2026-11-23 12:00 UTC)
    }

    async fn pass(
        context: &PolicyContext,
        policy: &Flaky,
        inputs: &str,
        offset: i64,
    ) -> PolicyPass {
        reconcile_policy(
            context,
            "p",
            policy,
            "r1",
            inputs,
            start() + time::Duration::seconds(offset),
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn a_failed_job_waits_for_the_next_window() {
        let directory = tempfile::tempdir().unwrap();
        let context = context(directory.path());
        let policy = Flaky {
            window: Some(MaintenanceWindow::new("0 12 * * *", Duration::from_secs(3600)).unwrap()),
            ..Arc::into_inner(Flaky::new(ErrorClass::Busy, 1)).unwrap()
        };
        let next_window = start() + time::Duration::days(1);
        let PolicyPass::Failed { retry_at, .. } = pass(&context, &policy, "v1", 0).await else {
            panic!("the job failed");
        };
        assert_eq!(retry_at, Some(next_window));
        let status = context.store.policy_status("p", "r1").unwrap().unwrap();
        assert_eq!(job_failed_until(&status), Some(next_window));
        // Still inside the same window, after the busy backoff: not tried again.
        assert_eq!(
            pass(&context, &policy, "v1", 120).await,
            PolicyPass::Skipped {
                until: Some(next_window)
            }
        );
        assert_eq!(policy.remediations.load(Ordering::SeqCst), 1);
        // The next window: corrected.
        assert!(matches!(
            pass(&context, &policy, "v1", 86_400 + 10).await,
            PolicyPass::Applied(PolicyOutcome::Remediated(_))
        ));
        assert_eq!(policy.remediations.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn transient_is_retried_inside_the_pass() {
        let directory = tempfile::tempdir().unwrap();
        let context = context(directory.path());
        let policy = Flaky::new(ErrorClass::Transient, 2);
        assert!(matches!(
            pass(&context, &policy, "v1", 0).await,
            PolicyPass::Applied(PolicyOutcome::Remediated(_))
        ));
        assert_eq!(policy.remediations.load(Ordering::SeqCst), 3);
        let history = context.store.attempts(SubjectKind::Policy, "p/r1").unwrap();
        let classes: Vec<_> = history
            .iter()
            .map(|a| (a.operation.as_str(), a.class))
            .collect();
        assert_eq!(
            classes,
            [
                ("inputs", None),
                ("Modify", Some(ErrorClass::Transient)),
                ("Modify", Some(ErrorClass::Transient)),
                ("check", None)
            ]
        );
        let status = context.store.policy_status("p", "r1").unwrap().unwrap();
        assert!(status.compliant);
        assert_eq!(
            context
                .metrics
                .errors
                .with_label_values(&["test", "Modify", "transient", "other"])
                .get(),
            2
        );
    }

    #[tokio::test]
    async fn busy_and_auth_back_off_across_passes_and_survive_a_restart() {
        let directory = tempfile::tempdir().unwrap();
        let context = context(directory.path());
        let policy = Flaky::new(ErrorClass::Busy, 2);
        assert_eq!(
            pass(&context, &policy, "v1", 0).await,
            PolicyPass::Failed {
                class: ErrorClass::Busy,
                code: "Code".into(),
                retry_at: Some(start() + time::Duration::seconds(30))
            }
        );
        assert_eq!(
            pass(&context, &policy, "v1", 29).await,
            PolicyPass::Skipped {
                until: Some(start() + time::Duration::seconds(30))
            }
        );
        // A new store handle (a restart) sees the same backoff.
        let reopened = PolicyContext {
            store: Arc::new(SqliteStore::open(&directory.path().join("state")).unwrap()),
            ..context.clone()
        };
        assert_eq!(
            pass(&reopened, &policy, "v1", 30).await,
            PolicyPass::Failed {
                class: ErrorClass::Busy,
                code: "Code".into(),
                retry_at: Some(start() + time::Duration::seconds(90))
            }
        );
        assert_eq!(policy.remediations.load(Ordering::SeqCst), 2);
        assert!(matches!(
            pass(&reopened, &policy, "v1", 90).await,
            PolicyPass::Applied(PolicyOutcome::Remediated(_))
        ));

        let directory = tempfile::tempdir().unwrap();
        let context = self::context(directory.path());
        let policy = Flaky::new(ErrorClass::Auth, 5);
        let PolicyPass::Failed { retry_at, .. } = pass(&context, &policy, "v1", 0).await else {
            panic!()
        };
        assert_eq!(retry_at, Some(start() + time::Duration::hours(1)));
        let PolicyPass::Failed { retry_at, .. } = pass(&context, &policy, "v1", 3600).await else {
            panic!()
        };
        assert_eq!(retry_at, Some(start() + time::Duration::hours(3)));
    }

    #[tokio::test]
    async fn a_failing_remediation_shows_in_the_gauges_until_corrected() {
        let directory = tempfile::tempdir().unwrap();
        let context = context(directory.path());
        // Enforce mode without a window: the check finds it non-compliant and the
        // remediation fails (no vendor job ran), so the pass fails.
        let policy = Flaky::new(ErrorClass::Busy, 1);
        let gauge = |family: &prometheus::IntGaugeVec| family.with_label_values(&["p", "r1"]).get();
        let metrics = &context.metrics;
        assert!(matches!(
            pass(&context, &policy, "v1", 0).await,
            PolicyPass::Failed { .. }
        ));
        assert_eq!(gauge(&metrics.policy_compliant), 0);
        assert_eq!(gauge(&metrics.policy_consecutive_failures), 1);
        assert_eq!(
            metrics
                .policy_last_error
                .with_label_values(&["p", "r1", "busy"])
                .get(),
            1
        );
        // Corrected on the next pass: healthy again.
        assert!(matches!(
            pass(&context, &policy, "v1", 60).await,
            PolicyPass::Applied(PolicyOutcome::Remediated(_))
        ));
        assert_eq!(gauge(&metrics.policy_compliant), 1);
        assert_eq!(gauge(&metrics.policy_consecutive_failures), 0);
        assert_eq!(gauge(&metrics.policy_remediation_overdue), 0);
        assert_eq!(
            metrics
                .policy_last_check
                .with_label_values(&["p", "r1"])
                .get() as i64,
            (start() + time::Duration::seconds(60)).unix_timestamp()
        );
        assert!(!metrics
            .encode()
            .unwrap()
            .contains("certkeeper_policy_last_error_info{"));
    }

    /// An audit-mode policy that always finds `r1` non-compliant.
    struct Auditor;

    #[async_trait]
    impl Policy for Auditor {
        fn name(&self) -> &str {
            "auditor"
        }
        fn kind(&self) -> &'static str {
            "test"
        }
        fn mode(&self) -> PolicyMode {
            PolicyMode::Audit
        }
        fn maintenance_window(&self) -> Option<&MaintenanceWindow> {
            None
        }
        fn resources(&self) -> Vec<String> {
            vec!["r1".into()]
        }
        async fn check(&self, resource: &str) -> Result<PolicyFinding, CloudError> {
            Ok(PolicyFinding {
                resource: resource.to_owned(),
                compliant: false,
                observed: "off".into(),
                desired: "on".into(),
                busy: false,
            })
        }
        async fn remediate(&self, _resource: &str) -> Result<Remediation, CloudError> {
            unreachable!("audit mode never remediates")
        }
    }

    #[tokio::test]
    async fn an_audit_finding_is_overdue_from_the_first_check_and_keeps_its_start() {
        let directory = tempfile::tempdir().unwrap();
        let context = context(directory.path());
        for offset in [0, 3600] {
            let at = start() + time::Duration::seconds(offset);
            reconcile_policy(&context, "p", &Auditor, "r1", "v1", at)
                .await
                .unwrap();
        }
        let status = context.store.policy_status("p", "r1").unwrap().unwrap();
        assert_eq!(state::noncompliant_since(&status), Some(start()));
        assert_eq!(status.observed["observed"], "off");
        assert_eq!(
            context
                .metrics
                .policy_remediation_overdue
                .with_label_values(&["p", "r1"])
                .get(),
            1
        );
    }

    #[tokio::test]
    async fn invalid_is_parked_until_the_inputs_change() {
        let directory = tempfile::tempdir().unwrap();
        let context = context(directory.path());
        let policy = Flaky::new(ErrorClass::Invalid, 1);
        assert_eq!(
            pass(&context, &policy, "v1", 0).await,
            PolicyPass::Failed {
                class: ErrorClass::Invalid,
                code: "Code".into(),
                retry_at: None
            }
        );
        assert_eq!(
            pass(&context, &policy, "v1", 40 * 86_400).await,
            PolicyPass::Skipped { until: None }
        );
        assert_eq!(policy.remediations.load(Ordering::SeqCst), 1);
        // The operator fixes the config: a new fingerprint unparks at once.
        assert!(matches!(
            pass(&context, &policy, "v2", 40 * 86_400 + 1).await,
            PolicyPass::Applied(PolicyOutcome::Remediated(_))
        ));
        assert_eq!(policy.remediations.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn observed_reads_back_what_a_pass_writes() {
        let written = serde_json::json!({
            keys::OBSERVED: "off",
            keys::BUSY: true,
            keys::WINDOW_OPENS: 1_700_000_000,
            keys::JOB_FAILED: "j-1",
            keys::NONCOMPLIANT_SINCE: 1_600_000_000,
        });
        // The stored shape is the one earlier releases wrote.
        assert_eq!(
            written,
            serde_json::json!({"observed": "off", "busy": true, "window_opens": 1_700_000_000,
                "job_failed": "j-1", "noncompliant_since": 1_600_000_000})
        );
        let at = |seconds| OffsetDateTime::from_unix_timestamp(seconds).unwrap();
        assert_eq!(
            Observed::read(&written),
            Observed {
                busy: true,
                window_opens: Some(at(1_700_000_000)),
                job_failed: true,
                noncompliant_since: Some(at(1_600_000_000)),
            }
        );
        assert_eq!(
            Observed::read(&serde_json::Value::Null),
            Observed::default()
        );
        // A deferral without a window writes `window_opens: null`: no time, no job.
        let deferred = serde_json::json!({ keys::OBSERVED: "off", keys::WINDOW_OPENS: null });
        assert_eq!(Observed::read(&deferred), Observed::default());
    }
}
