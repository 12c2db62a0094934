//! The state gauges of the metric contract (METRICS.md) rebuilt from the store, so every
//! configured certificate, target and policy resource has its series from the moment the
//! daemon is ready, after a restart as after a reload, whatever its backoff. The pass keeps
//! them current where each outcome is decided (`deploy`, `policy`, the obtain code in `app`);
//! the pure helpers here give both the same reading of the store.

use crate::cloud::{Policy, PolicyMode};
use crate::engine::backoff;
use crate::engine::renewal::{renewal_time, RenewalInputs, RenewalRule};
use crate::store::{
    Attempt, CertificateVersion, DeployStatus, DeploymentRecord, PolicyStatus, StateStore,
    StoreError, SubjectKind,
};
use crate::telemetry::metrics::{
    CertificateState, Configured, Failing, Metrics, PolicyResourceState, TargetState, Validity,
};
use crate::window::MaintenanceWindow;
use std::collections::HashMap;
use std::time::Duration;
use time::OffsetDateTime;

/// A configured certificate and how its renewal point is computed.
pub struct CertificateItem<'a> {
    pub name: &'a str,
    pub rule: RenewalRule,
}

/// A configured target, its kind label and the certificates deployed to it.
pub struct TargetItem<'a> {
    pub name: &'a str,
    pub kind: &'a str,
    pub certificates: Vec<&'a str>,
}

/// A configured policy (its resources, mode and window come from the built policy).
pub struct PolicyItem<'a> {
    pub name: &'a str,
    pub policy: &'a dyn Policy,
}

/// Everything configured, as far as the gauges care.
#[derive(Default)]
pub struct Inventory<'a> {
    pub certificates: Vec<CertificateItem<'a>>,
    pub targets: Vec<TargetItem<'a>>,
    pub policies: Vec<PolicyItem<'a>>,
}

/// The validity of a stored version, in Unix seconds.
pub fn validity(version: &CertificateVersion) -> Validity {
    Validity {
        not_before: version.not_before.unix_timestamp(),
        not_after: version.not_after.unix_timestamp(),
    }
}

/// The failure run an attempt history (oldest first) ends with: failed passes (retries
/// inside one pass share its time) and the last class. `None` when it ends in a success.
pub fn failing(history: &[Attempt]) -> Option<Failing> {
    backoff::trailing_failures(history).map(|(class, passes, _)| Failing {
        consecutive: passes,
        class,
    })
}

/// The newest successful attempt of `history` (inputs markers are not attempts).
pub fn last_success(history: &[Attempt]) -> Option<OffsetDateTime> {
    history
        .iter()
        .rev()
        .find(|attempt| {
            attempt.class.is_none() && attempt.operation != crate::engine::inputs::OPERATION
        })
        .map(|attempt| attempt.at)
}

/// When `version` is due for renewal: its persisted plan, or (a plan from an older run, or
/// none) `rule` without jitter.
pub fn planned_renewal(
    store: &dyn StateStore,
    certificate: &str,
    rule: RenewalRule,
    version: &CertificateVersion,
) -> Result<OffsetDateTime, StoreError> {
    Ok(match store.renewal_plan(certificate)? {
        Some(plan) if plan.fingerprint == version.fingerprint => plan.renewal_at,
        _ => renewal_time(&RenewalInputs {
            not_before: version.not_before,
            not_after: version.not_after,
            rule,
            ari_point: None,
            jitter: Duration::ZERO,
        }),
    })
}

/// The key of [`PolicyStatus::observed`] that keeps when a check first found the resource
/// non-compliant (Unix seconds), so "overdue" survives restarts.
pub const NONCOMPLIANT_SINCE: &str = "noncompliant_since";

/// When a check first found the resource non-compliant, if it still is.
pub fn noncompliant_since(status: &PolicyStatus) -> Option<OffsetDateTime> {
    if status.compliant {
        return None;
    }
    crate::engine::policy::Observed::read(&status.observed).noncompliant_since
}

/// Whether a non-compliant resource needs a human: always in audit mode; in enforce mode
/// once the maintenance window in which it should have been corrected has closed (without
/// a window, as soon as a pass that should have corrected it has not).
pub fn remediation_overdue(
    status: &PolicyStatus,
    mode: PolicyMode,
    window: Option<&MaintenanceWindow>,
    now: OffsetDateTime,
) -> bool {
    let Some(since) = noncompliant_since(status) else {
        return false;
    };
    let Some(window) = window.filter(|_| mode == PolicyMode::Enforce) else {
        return true;
    };
    let length = time::Duration::try_from(window.duration()).unwrap_or(time::Duration::HOUR);
    let closes = window
        .current_close(since)
        .or_else(|| window.next_open(since).map(|opens| opens + length));
    closes.is_some_and(|closes| closes <= now)
}

/// The gauges of one policy resource from its status row and attempt history.
pub fn policy_resource_state(
    status: Option<&PolicyStatus>,
    history: &[Attempt],
    policy: &dyn Policy,
    now: OffsetDateTime,
) -> PolicyResourceState {
    let checked = last_success(history)
        .into_iter()
        .chain(
            status
                .filter(|status| status.last_error.is_none())
                .map(|status| status.last_checked),
        )
        .max();
    PolicyResourceState {
        compliant: status.is_some_and(|status| status.compliant),
        last_check: checked.map_or(0, OffsetDateTime::unix_timestamp),
        remediation_overdue: status.is_some_and(|status| {
            remediation_overdue(status, policy.mode(), policy.maintenance_window(), now)
        }),
        failing: failing(history),
    }
}

/// Sets the gauges of every configured certificate, target and policy resource from the
/// store and removes those of anything no longer configured. Run before `READY=1` and after
/// each reload.
pub fn restore(
    store: &dyn StateStore,
    metrics: &Metrics,
    inventory: &Inventory<'_>,
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    let mut configured = Configured::default();
    let latest: HashMap<String, CertificateVersion> = store
        .latest_certificate_versions()?
        .into_iter()
        .map(|version| (version.certificate.clone(), version))
        .collect();
    for item in &inventory.certificates {
        configured.certificates.insert(item.name.to_owned());
        let state = certificate_state(store, item, latest.get(item.name))?;
        metrics.set_certificate_state(item.name, &state);
    }
    let ledger = store.deployments()?;
    let mut rows: HashMap<&str, Vec<&DeploymentRecord>> = HashMap::new();
    for record in &ledger {
        rows.entry(record.target.as_str()).or_default().push(record);
    }
    for item in &inventory.targets {
        configured
            .targets
            .insert((item.name.to_owned(), item.kind.to_owned()));
        let mine = rows.get(item.name).map(Vec::as_slice).unwrap_or_default();
        let state = target_state(store, item, mine, &latest)?;
        metrics.set_target_state(item.name, item.kind, &state);
    }
    let statuses: HashMap<(String, String), PolicyStatus> = store
        .policy_statuses()?
        .into_iter()
        .map(|status| ((status.policy.clone(), status.resource.clone()), status))
        .collect();
    for item in &inventory.policies {
        for resource in item.policy.resources() {
            let subject = crate::engine::policy::subject(item.name, &resource);
            let history = store.attempts(SubjectKind::Policy, &subject)?;
            let key = (item.name.to_owned(), resource);
            if let Some(note) = statuses
                .get(&key)
                .and_then(|status| status.observed["account_note"].as_str())
            {
                item.policy.restore_account_note(note);
            }
            let state = policy_resource_state(statuses.get(&key), &history, item.policy, now);
            metrics.set_policy_resource_state(&key.0, &key.1, &state);
            configured.resources.insert(key);
        }
    }
    metrics.retain_objects(&configured);
    Ok(())
}

/// Re-evaluates `certkeeper_policy_remediation_overdue` of every configured resource: a
/// window can close between two checks. Cheap (one read), run after each pass.
pub fn refresh_remediation_overdue(
    store: &dyn StateStore,
    metrics: &Metrics,
    policies: &[PolicyItem<'_>],
    now: OffsetDateTime,
) -> Result<(), StoreError> {
    let statuses = store.policy_statuses()?;
    for item in policies {
        for status in statuses.iter().filter(|status| status.policy == item.name) {
            if !item.policy.resources().contains(&status.resource) {
                continue;
            }
            let overdue = remediation_overdue(
                status,
                item.policy.mode(),
                item.policy.maintenance_window(),
                now,
            );
            metrics
                .policy_remediation_overdue
                .with_label_values(&[item.name, status.resource.as_str()])
                .set(i64::from(overdue));
        }
    }
    Ok(())
}

fn certificate_state(
    store: &dyn StateStore,
    item: &CertificateItem<'_>,
    latest: Option<&CertificateVersion>,
) -> Result<CertificateState, StoreError> {
    let history = store.attempts(SubjectKind::Certificate, item.name)?;
    let renewal_at = match latest {
        Some(version) => planned_renewal(store, item.name, item.rule, version)?.unix_timestamp(),
        None => 0,
    };
    let last_success = last_success(&history)
        .into_iter()
        .chain(latest.map(|version| version.obtained_at))
        .max();
    Ok(CertificateState {
        newest: latest.map(validity),
        renewal_at,
        last_success: last_success.map_or(0, OffsetDateTime::unix_timestamp),
        failing: failing(&history),
    })
}

/// A target is in sync when, for every certificate deployed to it that has a version, its
/// ledger row is in sync with the newest version.
fn target_state(
    store: &dyn StateStore,
    item: &TargetItem<'_>,
    rows: &[&DeploymentRecord],
    latest: &HashMap<String, CertificateVersion>,
) -> Result<TargetState, StoreError> {
    let rows: Vec<&DeploymentRecord> = rows
        .iter()
        .copied()
        .filter(|record| item.certificates.contains(&record.certificate.as_str()))
        .collect();
    let wanted: Vec<&CertificateVersion> = item
        .certificates
        .iter()
        .filter_map(|certificate| latest.get(*certificate))
        .collect();
    let in_sync = !wanted.is_empty()
        && wanted.iter().all(|version| {
            rows.iter().any(|record| {
                record.certificate == version.certificate
                    && record.status == DeployStatus::InSync
                    && record.desired_fingerprint.as_deref() == Some(version.fingerprint.as_str())
            })
        });
    let failing = rows
        .iter()
        .filter(|record| record.status != DeployStatus::InSync && record.attempts > 0)
        .filter_map(|record| {
            Some(Failing {
                consecutive: record.attempts,
                class: record.last_error.as_ref()?.class,
            })
        })
        .max_by_key(|failing| failing.consecutive);
    let mut served = None;
    for record in &rows {
        let Some(observed) = record.observed_fingerprint.as_deref() else {
            continue;
        };
        served = match latest.get(&record.certificate) {
            Some(version) if version.fingerprint == observed => Some(validity(version)),
            _ => store
                .certificate_versions(&record.certificate)?
                .iter()
                .find(|version| version.fingerprint == observed)
                .map(validity),
        };
        if served.is_some() {
            break;
        }
    }
    // While in sync, every read that proves it updates the row. Otherwise the last
    // successful deploy in the attempt history (indexed by target, so a fleet restarting
    // with many failing targets stays cheap); a target only ever found in sync by a read,
    // and failing since, reads 0.
    let last_success = if in_sync {
        rows.iter().map(|record| record.updated_at).max()
    } else if rows.is_empty() {
        // Never deployed (a fleet's first start): no history to read.
        None
    } else {
        last_success(&store.attempts(SubjectKind::Target, item.name)?)
    };
    Ok(TargetState {
        in_sync,
        served,
        last_success: last_success.map_or(0, OffsetDateTime::unix_timestamp),
        parked: rows
            .iter()
            .any(|record| record.status == DeployStatus::Parked),
        failing,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::bundle::testing;
    use crate::cloud::{PolicyFinding, Remediation};
    use crate::error::{CloudError, ErrorClass};
    use crate::store::{LastError, RenewalPlan, SqliteStore};
    use async_trait::async_trait;
    use time::macros::datetime;

    /// A policy that is never called: the restore only asks for its mode, window and
    /// resources.
    struct Described {
        mode: PolicyMode,
        window: Option<MaintenanceWindow>,
        resources: Vec<String>,
    }

    #[async_trait]
    impl Policy for Described {
        fn name(&self) -> &str {
            "ssl"
        }
        fn kind(&self) -> &'static str {
            "test"
        }
        fn mode(&self) -> PolicyMode {
            self.mode
        }
        fn maintenance_window(&self) -> Option<&MaintenanceWindow> {
            self.window.as_ref()
        }
        fn resources(&self) -> Vec<String> {
            self.resources.clone()
        }
        async fn check(&self, _resource: &str) -> Result<PolicyFinding, CloudError> {
            unreachable!("the restore never checks")
        }
        async fn remediate(&self, _resource: &str) -> Result<Remediation, CloudError> {
            unreachable!("the restore never remediates")
        }
    }

    fn attempt(kind: SubjectKind, subject: &str, class: Option<ErrorClass>, at: i64) -> Attempt {
        Attempt {
            subject_kind: kind,
            subject: subject.to_owned(),
            operation: if class.is_some() { "Describe" } else { "check" }.to_owned(),
            class,
            code: class.map(|_| "InvalidAccessKeyId.NotFound".to_owned()),
            at: OffsetDateTime::from_unix_timestamp(at).unwrap(),
        }
    }

    fn ledger_row(
        target: &str,
        version: &CertificateVersion,
        status: DeployStatus,
        attempts: u32,
        class: Option<ErrorClass>,
        at: OffsetDateTime,
    ) -> DeploymentRecord {
        DeploymentRecord {
            target: target.to_owned(),
            certificate: version.certificate.clone(),
            desired_fingerprint: Some(version.fingerprint.clone()),
            observed_fingerprint: (status == DeployStatus::InSync)
                .then(|| version.fingerprint.clone()),
            status,
            attempts,
            last_error: class.map(|class| LastError {
                class,
                code: "Code".into(),
                message: "failed".into(),
            }),
            next_attempt_at: None,
            updated_at: at,
        }
    }

    #[test]
    fn restore_sets_every_series_from_the_store_and_drops_removed_objects() {
        let directory = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(directory.path()).unwrap();
        let metrics = Metrics::new().unwrap();
        let now = datetime!(2026-11-23 12:00 UTC);
        let bundle = testing::self_signed(
            &["www.example.com"],
            now - time::Duration::days(5),
            now + time::Duration::days(25),
        );
        let obtained = now - time::Duration::days(5);
        let version = CertificateVersion::from_bundle("www", &bundle, "local_ca:x", obtained);
        store
            .insert_certificate_version(&version, &["cdn".into(), "bad".into()])
            .unwrap();
        let renewal_at = datetime!(2026-12-08 00:00 UTC);
        store
            .put_renewal_plan(&RenewalPlan {
                certificate: "www".into(),
                fingerprint: version.fingerprint.clone(),
                renewal_at,
                ari_window: None,
                ari_next_check_at: None,
                updated_at: obtained,
            })
            .unwrap();
        let seconds = |at: OffsetDateTime| at.unix_timestamp();
        // `www` obtained once, then refused twice by the CA.
        for (class, at) in [
            (None, seconds(obtained)),
            (Some(ErrorClass::Auth), seconds(now) - 7200),
            (Some(ErrorClass::Auth), seconds(now) - 3600),
        ] {
            store
                .record_attempt(&attempt(SubjectKind::Certificate, "www", class, at))
                .unwrap();
        }
        store
            .put_deployment(&ledger_row(
                "cdn",
                &version,
                DeployStatus::InSync,
                0,
                None,
                now - time::Duration::minutes(3),
            ))
            .unwrap();
        store
            .put_deployment(&ledger_row(
                "bad",
                &version,
                DeployStatus::Failed,
                3,
                Some(ErrorClass::Auth),
                now,
            ))
            .unwrap();
        store
            .put_policy_status(&PolicyStatus {
                policy: "ssl".into(),
                resource: "db-1".into(),
                compliant: false,
                observed: serde_json::json!({"observed": "off", NONCOMPLIANT_SINCE: seconds(now) - 600}),
                last_checked: now - time::Duration::minutes(10),
                last_job_id: None,
                last_error: None,
            })
            .unwrap();
        store
            .record_attempt(&attempt(
                SubjectKind::Policy,
                "ssl/db-1",
                None,
                seconds(now) - 600,
            ))
            .unwrap();
        store
            .record_attempt(&attempt(
                SubjectKind::Policy,
                "ssl/db-1",
                Some(ErrorClass::Busy),
                seconds(now) - 60,
            ))
            .unwrap();
        let policy = Described {
            mode: PolicyMode::Audit,
            window: None,
            resources: vec!["db-1".into(), "db-2".into()],
        };
        let inventory = Inventory {
            certificates: vec![
                CertificateItem {
                    name: "www",
                    rule: RenewalRule::default(),
                },
                CertificateItem {
                    name: "new",
                    rule: RenewalRule::default(),
                },
            ],
            targets: ["cdn", "bad", "idle"]
                .into_iter()
                .map(|name| TargetItem {
                    name,
                    kind: "alibaba-cdn",
                    certificates: if name == "idle" {
                        vec!["new"]
                    } else {
                        vec!["www"]
                    },
                })
                .collect(),
            policies: vec![PolicyItem {
                name: "ssl",
                policy: &policy,
            }],
        };
        restore(&store, &metrics, &inventory, now).unwrap();

        let gauge = |family: &prometheus::GaugeVec, labels: &[&str]| {
            family.with_label_values(labels).get() as i64
        };
        let int = |family: &prometheus::IntGaugeVec, labels: &[&str]| {
            family.with_label_values(labels).get()
        };
        // The per-target families live in the metrics' compact target table.
        let target_gauge = |family: &crate::telemetry::metrics::TargetGauge, labels: &[&str]| {
            family.with_label_values(labels).get() as i64
        };
        let target_int = |family: &crate::telemetry::metrics::TargetIntGauge, labels: &[&str]| {
            family.with_label_values(labels).get()
        };
        // Certificates: validity and plan of the newest version; a new one is due now.
        assert_eq!(
            gauge(&metrics.certificate_expiration, &["www"]),
            seconds(version.not_after)
        );
        assert_eq!(
            gauge(&metrics.certificate_not_before, &["www"]),
            seconds(version.not_before)
        );
        assert_eq!(
            gauge(&metrics.certificate_renewal, &["www"]),
            seconds(renewal_at)
        );
        assert_eq!(gauge(&metrics.certificate_renewal, &["new"]), 0);
        assert_eq!(
            gauge(&metrics.certificate_last_success, &["www"]),
            seconds(obtained)
        );
        assert_eq!(int(&metrics.certificate_consecutive_failures, &["www"]), 2);
        assert_eq!(int(&metrics.certificate_last_error, &["www", "auth"]), 1);
        assert_eq!(gauge(&metrics.certificate_last_success, &["new"]), 0);
        // Targets: in sync with what it serves; failing with its class; never deployed.
        let cdn = ["cdn", "alibaba-cdn"];
        assert_eq!(target_int(&metrics.target_in_sync, &cdn), 1);
        assert_eq!(
            target_gauge(&metrics.target_last_success, &cdn),
            seconds(now) - 180
        );
        assert_eq!(
            target_gauge(&metrics.target_certificate_not_before, &cdn),
            seconds(version.not_before)
        );
        let bad = ["bad", "alibaba-cdn"];
        assert_eq!(target_int(&metrics.target_in_sync, &bad), 0);
        assert_eq!(target_int(&metrics.target_consecutive_failures, &bad), 3);
        assert_eq!(target_int(&metrics.target_parked, &bad), 0);
        assert_eq!(
            target_int(&metrics.target_last_error, &["bad", "alibaba-cdn", "auth"]),
            1
        );
        assert_eq!(target_gauge(&metrics.target_last_success, &bad), 0);
        let idle = ["idle", "alibaba-cdn"];
        assert_eq!(target_int(&metrics.target_in_sync, &idle), 0);
        assert_eq!(target_int(&metrics.target_consecutive_failures, &idle), 0);
        // Policy resources: audit finding overdue at once; an unchecked one is all zeros.
        let db1 = ["ssl", "db-1"];
        assert_eq!(int(&metrics.policy_compliant, &db1), 0);
        assert_eq!(int(&metrics.policy_remediation_overdue, &db1), 1);
        assert_eq!(int(&metrics.policy_consecutive_failures, &db1), 1);
        assert_eq!(int(&metrics.policy_last_error, &["ssl", "db-1", "busy"]), 1);
        assert_eq!(gauge(&metrics.policy_last_check, &db1), seconds(now) - 600);
        let text = metrics.encode().unwrap();
        assert!(
            text.contains("certkeeper_policy_last_check_timestamp_seconds{policy=\"ssl\",resource=\"db-2\"} 0"),
            "{text}"
        );

        // A reload without `bad`, `new` (and so `idle`'s certificate) and db-2.
        let inventory = Inventory {
            certificates: inventory.certificates.into_iter().take(1).collect(),
            targets: inventory.targets.into_iter().take(1).collect(),
            policies: inventory.policies,
        };
        let policy_without_db2 = Described {
            mode: PolicyMode::Audit,
            window: None,
            resources: vec!["db-1".into()],
        };
        let inventory = Inventory {
            policies: vec![PolicyItem {
                name: "ssl",
                policy: &policy_without_db2,
            }],
            ..inventory
        };
        restore(&store, &metrics, &inventory, now).unwrap();
        let text = metrics.encode().unwrap();
        for gone in [
            "target=\"bad\"",
            "target=\"idle\"",
            "certificate=\"new\"",
            "resource=\"db-2\"",
        ] {
            assert!(!text.contains(gone), "{gone} still exported:\n{text}");
        }
        assert!(text.contains("certkeeper_target_in_sync{kind=\"alibaba-cdn\",target=\"cdn\"} 1"));
    }

    #[test]
    fn enforce_mode_is_overdue_once_the_window_closes_uncorrected() {
        let found = datetime!(2026-11-23 12:00 UTC);
        let status = PolicyStatus {
            policy: "ssl".into(),
            resource: "db-1".into(),
            compliant: false,
            observed: serde_json::json!({ NONCOMPLIANT_SINCE: found.unix_timestamp() }),
            last_checked: found,
            last_job_id: None,
            last_error: None,
        };
        let window = MaintenanceWindow::new("0 2 * * *", Duration::from_secs(3600)).unwrap();
        let overdue = |mode, window: Option<&MaintenanceWindow>, at| {
            remediation_overdue(&status, mode, window, at)
        };
        let closes = datetime!(2026-11-24 03:00 UTC);
        assert!(!overdue(
            PolicyMode::Enforce,
            Some(&window),
            closes - time::Duration::seconds(1)
        ));
        assert!(overdue(PolicyMode::Enforce, Some(&window), closes));
        assert!(overdue(PolicyMode::Audit, Some(&window), found));
        assert!(overdue(PolicyMode::Enforce, None, found));
        // Found during an open window: overdue when that one closes.
        let inside = PolicyStatus {
            observed: serde_json::json!({ NONCOMPLIANT_SINCE: datetime!(2026-11-24 02:30 UTC).unix_timestamp() }),
            ..status.clone()
        };
        assert!(remediation_overdue(
            &inside,
            PolicyMode::Enforce,
            Some(&window),
            closes
        ));
        let compliant = PolicyStatus {
            compliant: true,
            ..status
        };
        assert!(!remediation_overdue(
            &compliant,
            PolicyMode::Audit,
            None,
            closes
        ));
    }
}
