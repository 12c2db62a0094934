//! One policy resource checked (and in enforce mode corrected) the way a target is deployed:
//! `apply_policy` runs inside the in-operation retry loop (throttled and transient errors),
//! and every failure, retried or final, goes to the store's attempt history under the
//! subject `POLICY/RESOURCE`, with a success recorded too, so the fault suite and `status`
//! see each failure's class for policies as for targets. A remediation whose vendor job ran
//! and failed is not retried here: it waits for the next window
//! ([`crate::cloud::remediation_deferred_until`]).

use crate::cloud::{apply_policy, Policy, PolicyOutcome};
use crate::engine::retry::{with_retries, RetryPolicy};
use crate::error::CloudError;
use crate::store::{Attempt, StateStore, StoreError, SubjectKind};
use crate::telemetry::metrics::Metrics;
use time::OffsetDateTime;

/// The attempt-history subject of one resource under one policy.
pub fn attempt_subject(policy: &str, resource: &str) -> String {
    format!("{policy}/{resource}")
}

/// Runs [`apply_policy`] for `resource` with in-operation retries and records the attempts.
/// The outer `Result` is the store's; the inner one is the policy's outcome. Retried errors
/// are counted in `certkeeper_errors_total` here; the final one is left to the caller.
pub async fn apply_recorded(
    store: &dyn StateStore,
    metrics: &Metrics,
    retry: &RetryPolicy,
    policy_name: &str,
    policy: &dyn Policy,
    resource: &str,
    now: OffsetDateTime,
) -> Result<Result<PolicyOutcome, CloudError>, StoreError> {
    let retried = std::sync::Mutex::new(Vec::new());
    let outcome = with_retries(
        retry,
        || async {
            match apply_policy(policy, resource, now).await {
                // A job that ran and failed restarted (or may have restarted) a database:
                // it is handed back as a value so the loop does not run it again now.
                Err(error) if error.job_id.is_some() => Ok(Err(error)),
                Err(error) => Err(error),
                Ok(outcome) => Ok(Ok(outcome)),
            }
        },
        |error, _, _| {
            if let Ok(mut list) = retried.lock() {
                list.push(error.clone());
            }
        },
    )
    .await
    .and_then(|inner| inner);
    let subject = attempt_subject(policy_name, resource);
    let retried = retried.into_inner().unwrap_or_default();
    // The final error is counted by the caller, which also logs it; retried ones only here.
    for error in &retried {
        metrics
            .errors
            .with_label_values(&[
                error.vendor,
                &error.operation,
                error.class.as_str(),
                crate::cloud::code_label(error.vendor, &error.code),
            ])
            .inc();
    }
    for error in retried.iter().chain(outcome.as_ref().err()) {
        store.record_attempt(&Attempt {
            subject_kind: SubjectKind::Policy,
            subject: subject.clone(),
            operation: error.operation.clone(),
            class: Some(error.class),
            code: Some(error.code.clone()),
            at: now,
        })?;
    }
    if outcome.is_ok() {
        store.record_attempt(&Attempt {
            subject_kind: SubjectKind::Policy,
            subject,
            operation: policy.kind().to_owned(),
            class: None,
            code: None,
            at: now,
        })?;
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::{PolicyFinding, PolicyMode, Remediation};
    use crate::engine::window::MaintenanceWindow;
    use crate::error::ErrorClass;
    use crate::store::sqlite::SqliteStore;
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::time::Duration;

    /// Non-compliant until remediated; `check` fails with the queued errors first.
    struct Flaky {
        errors: std::sync::Mutex<Vec<CloudError>>,
        remediated: AtomicU32,
    }

    #[async_trait]
    impl Policy for Flaky {
        fn name(&self) -> &str {
            "flaky"
        }
        fn kind(&self) -> &'static str {
            "test-policy"
        }
        fn mode(&self) -> PolicyMode {
            PolicyMode::Enforce
        }
        fn maintenance_window(&self) -> Option<&MaintenanceWindow> {
            None
        }
        fn resources(&self) -> Vec<String> {
            vec!["r1".into()]
        }
        async fn check(&self, resource: &str) -> Result<PolicyFinding, CloudError> {
            if let Some(error) = self.errors.lock().unwrap().pop() {
                return Err(error);
            }
            Ok(PolicyFinding {
                resource: resource.into(),
                compliant: self.remediated.load(Ordering::SeqCst) > 0,
                observed: "off".into(),
                desired: "on".into(),
                busy: false,
            })
        }
        async fn remediate(&self, _resource: &str) -> Result<Remediation, CloudError> {
            self.remediated.fetch_add(1, Ordering::SeqCst);
            Ok(Remediation { job_id: None })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retried_failures_and_the_success_reach_the_history() {
        let directory = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(directory.path()).unwrap();
        let policy = Flaky {
            errors: std::sync::Mutex::new(vec![
                CloudError::new("test", "Describe", ErrorClass::Throttled, "Throttling", "t")
                    .with_retry_after(Some(Duration::from_millis(10))),
                CloudError::new("test", "Describe", ErrorClass::Transient, "5100", "busy"),
            ]),
            remediated: AtomicU32::new(0),
        };
        let outcome = apply_recorded(
            &store,
            &Metrics::new().unwrap(),
            &RetryPolicy::default(),
            "flaky",
            &policy,
            "r1",
            OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
        assert!(
            matches!(outcome, Ok(PolicyOutcome::Remediated(_))),
            "{outcome:?}"
        );
        let classes: Vec<_> = store
            .attempts(SubjectKind::Policy, &attempt_subject("flaky", "r1"))
            .unwrap()
            .into_iter()
            .map(|attempt| attempt.class)
            .collect();
        assert_eq!(classes.len(), 3, "{classes:?}");
        assert!(classes.contains(&Some(ErrorClass::Transient)));
        assert!(classes.contains(&Some(ErrorClass::Throttled)));
        assert!(classes.contains(&None));
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_job_is_not_run_again_in_the_same_operation() {
        struct FailedJob(AtomicU32);
        #[async_trait]
        impl Policy for FailedJob {
            fn name(&self) -> &str {
                "job"
            }
            fn kind(&self) -> &'static str {
                "test-policy"
            }
            fn mode(&self) -> PolicyMode {
                PolicyMode::Enforce
            }
            fn maintenance_window(&self) -> Option<&MaintenanceWindow> {
                None
            }
            fn resources(&self) -> Vec<String> {
                vec!["r1".into()]
            }
            async fn check(&self, resource: &str) -> Result<PolicyFinding, CloudError> {
                Ok(PolicyFinding {
                    resource: resource.into(),
                    compliant: false,
                    observed: "off".into(),
                    desired: "on".into(),
                    busy: false,
                })
            }
            async fn remediate(&self, _resource: &str) -> Result<Remediation, CloudError> {
                self.0.fetch_add(1, Ordering::SeqCst);
                Err(
                    CloudError::new("test", "Job", ErrorClass::Transient, "JobFailed", "failed")
                        .with_job_id(Some("j-1".into())),
                )
            }
        }
        let directory = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(directory.path()).unwrap();
        let policy = FailedJob(AtomicU32::new(0));
        let outcome = apply_recorded(
            &store,
            &Metrics::new().unwrap(),
            &RetryPolicy::default(),
            "job",
            &policy,
            "r1",
            OffsetDateTime::now_utc(),
        )
        .await
        .unwrap();
        assert_eq!(outcome.unwrap_err().job_id.as_deref(), Some("j-1"));
        assert_eq!(policy.0.load(Ordering::SeqCst), 1);
        assert_eq!(
            store.attempts(SubjectKind::Policy, "job/r1").unwrap().len(),
            1
        );
    }
}
