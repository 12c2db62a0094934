//! The behaviour every [`StateStore`] backend must show, written once against the trait:
//! the SQLite tests call [`conformance`] with a factory of fresh stores, and a PostgreSQL
//! backend will call it the same way. Each case gets its own empty store from `make`.

use super::*;
use serde_json::json;
use time::macros::datetime;

/// Runs every case; panics (test failure) on the first broken expectation.
pub fn conformance<S: StateStore>(make: impl Fn() -> S) {
    empty_store_is_empty(&make());
    certificate_versions_round_trip(&make());
    new_version_resets_the_ledger(&make());
    failed_multi_statement_write_changes_nothing(&make());
    prune_keeps_versions_in_use(&make());
    deployments_round_trip(&make());
    attempts_round_trip(&make());
    policy_status_round_trip(&make());
    acme_accounts_round_trip(&make());
    acme_accounts_can_be_deleted(&make());
    ari_points_round_trip(&make());
    local_cas_round_trip(&make());
    renewal_plans_round_trip(&make());
    events_round_trip(&make());
    events_since_and_pruned_by_age(&make());
    retention_keeps_what_targets_serve(&make());
    status_report_joins_plans(&make());
}

const T0: OffsetDateTime = datetime!(2026-01-01 00:00:00 UTC);

fn version(
    name: &str,
    fingerprint: &str,
    key: &str,
    obtained_at: OffsetDateTime,
) -> CertificateVersion {
    CertificateVersion {
        id: 0,
        certificate: name.to_owned(),
        chain_pem: format!(
            "-----BEGIN CERTIFICATE-----\n{fingerprint}\n-----END CERTIFICATE-----\n"
        ),
        key_pem: Secret::new(key),
        fingerprint: fingerprint.to_owned(),
        serial: format!("0{fingerprint}"),
        not_before: obtained_at - time::Duration::hours(1),
        not_after: obtained_at + time::Duration::days(90),
        source: "acme:letsencrypt".to_owned(),
        obtained_at,
    }
}

fn targets(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| name.to_string()).collect()
}

fn empty_store_is_empty(store: &dyn StateStore) {
    store.integrity_check().unwrap();
    assert!(store.schema_version().unwrap() >= 1);
    assert!(store.latest_certificate_versions().unwrap().is_empty());
    assert!(store.latest_certificate_version("web").unwrap().is_none());
    assert!(store.certificate_version(1).unwrap().is_none());
    assert!(store.deployments().unwrap().is_empty());
    assert!(store.policy_statuses().unwrap().is_empty());
    assert!(store.renewal_plans().unwrap().is_empty());
    assert!(store.tail_events(10).unwrap().is_empty());
    assert!(store
        .acme_account("https://x/dir", "main")
        .unwrap()
        .is_none());
    assert_eq!(status_report(store).unwrap(), StatusReport::default());
}

fn certificate_versions_round_trip(store: &dyn StateStore) {
    let first = version("web", "aa11", "KEY-ONE", T0);
    let first_id = store.insert_certificate_version(&first, &[]).unwrap();
    let second = version("web", "bb22", "KEY-TWO", T0 + time::Duration::days(60));
    let second_id = store.insert_certificate_version(&second, &[]).unwrap();
    let other_id = store
        .insert_certificate_version(&version("api", "cc33", "KEY-API", T0), &[])
        .unwrap();
    assert!(first_id < second_id && second_id < other_id);

    let stored = store.certificate_version(first_id).unwrap().unwrap();
    assert_eq!(
        stored,
        CertificateVersion {
            id: first_id,
            ..first.clone()
        }
    );
    assert_eq!(stored.key_pem.expose(), "KEY-ONE");

    let latest = store.latest_certificate_version("web").unwrap().unwrap();
    assert_eq!(latest.id, second_id);
    assert_eq!(latest.key_pem.expose(), "KEY-TWO");

    let all = store.certificate_versions("web").unwrap();
    assert_eq!(
        all.iter().map(|v| v.id).collect::<Vec<_>>(),
        vec![second_id, first_id]
    );

    let newest = store.latest_certificate_versions().unwrap();
    assert_eq!(
        newest
            .iter()
            .map(|v| (v.certificate.as_str(), v.id))
            .collect::<Vec<_>>(),
        vec![("api", other_id), ("web", second_id)]
    );

    // Sub-second parts are truncated, never rounded up or rejected.
    let precise = version(
        "precise",
        "dd44",
        "K",
        T0 + time::Duration::milliseconds(1500),
    );
    let id = store.insert_certificate_version(&precise, &[]).unwrap();
    let back = store.certificate_version(id).unwrap().unwrap();
    assert_eq!(back.obtained_at, T0 + time::Duration::seconds(1));
}

fn new_version_resets_the_ledger(store: &dyn StateStore) {
    store
        .insert_certificate_version(&version("web", "aa11", "K1", T0), &targets(&["cdn", "vod"]))
        .unwrap();
    let cdn = store.deployment("cdn", "web").unwrap().unwrap();
    assert_eq!(cdn.desired_fingerprint.as_deref(), Some("aa11"));
    assert_eq!(cdn.status, DeployStatus::Pending);
    assert_eq!(cdn.updated_at, T0);

    // The cdn deploy fails and backs off; a new version must start it over.
    store
        .put_deployment(&DeploymentRecord {
            status: DeployStatus::Failed,
            attempts: 3,
            observed_fingerprint: Some("old".into()),
            last_error: Some(LastError {
                class: ErrorClass::Busy,
                code: "InstanceBusy".into(),
                message: "instance is restarting".into(),
            }),
            next_attempt_at: Some(T0 + time::Duration::hours(1)),
            ..cdn
        })
        .unwrap();
    let later = T0 + time::Duration::days(60);
    store
        .insert_certificate_version(&version("web", "bb22", "K2", later), &targets(&["cdn"]))
        .unwrap();
    let cdn = store.deployment("cdn", "web").unwrap().unwrap();
    assert_eq!(cdn.desired_fingerprint.as_deref(), Some("bb22"));
    assert_eq!(
        cdn.observed_fingerprint.as_deref(),
        Some("old"),
        "observation is kept"
    );
    assert_eq!(cdn.status, DeployStatus::Pending);
    assert_eq!(cdn.attempts, 0);
    assert_eq!(cdn.last_error, None);
    assert_eq!(cdn.next_attempt_at, None);
    assert_eq!(cdn.updated_at, later);
    // vod was not in deploy_to this time: untouched.
    let vod = store.deployment("vod", "web").unwrap().unwrap();
    assert_eq!(vod.desired_fingerprint.as_deref(), Some("aa11"));
}

/// The second statement of a certificate write fails (an empty target name breaks a
/// constraint): the version inserted by the first statement must not survive either.
fn failed_multi_statement_write_changes_nothing(store: &dyn StateStore) {
    let id = store
        .insert_certificate_version(&version("web", "aa11", "K1", T0), &targets(&["cdn"]))
        .unwrap();
    let result = store.insert_certificate_version(
        &version("web", "bb22", "K2", T0 + time::Duration::days(1)),
        &targets(&["vod", ""]),
    );
    assert!(result.is_err(), "an empty target name must be refused");
    let latest = store.latest_certificate_version("web").unwrap().unwrap();
    assert_eq!(latest.id, id);
    assert_eq!(latest.key_pem.expose(), "K1");
    assert_eq!(store.certificate_versions("web").unwrap().len(), 1);
    assert!(
        store.deployment("vod", "web").unwrap().is_none(),
        "first ledger row rolled back"
    );
    assert_eq!(
        store
            .deployment("cdn", "web")
            .unwrap()
            .unwrap()
            .desired_fingerprint
            .as_deref(),
        Some("aa11")
    );
}

fn prune_keeps_versions_in_use(store: &dyn StateStore) {
    let ids: Vec<i64> = ["f1", "f2", "f3", "f4", "f5"]
        .iter()
        .enumerate()
        .map(|(day, fp)| {
            store
                .insert_certificate_version(
                    &version("web", fp, "K", T0 + time::Duration::days(day as i64)),
                    &[],
                )
                .unwrap()
        })
        .collect();
    store
        .insert_certificate_version(&version("api", "a1", "K", T0), &[])
        .unwrap();
    // A target still serves f1.
    store
        .put_deployment(&DeploymentRecord {
            target: "cdn".into(),
            certificate: "web".into(),
            desired_fingerprint: Some("f5".into()),
            observed_fingerprint: Some("f1".into()),
            status: DeployStatus::Pending,
            attempts: 0,
            last_error: None,
            next_attempt_at: None,
            updated_at: T0,
        })
        .unwrap();
    assert_eq!(store.prune_certificate_versions("web", 2).unwrap(), 2);
    let left: Vec<i64> = store
        .certificate_versions("web")
        .unwrap()
        .iter()
        .map(|v| v.id)
        .collect();
    assert_eq!(left, vec![ids[4], ids[3], ids[0]]);
    assert_eq!(
        store.certificate_versions("api").unwrap().len(),
        1,
        "other names untouched"
    );
    assert_eq!(store.prune_certificate_versions("web", 2).unwrap(), 0);
}

fn deployments_round_trip(store: &dyn StateStore) {
    let failed = DeploymentRecord {
        target: "rds-main".into(),
        certificate: "db".into(),
        desired_fingerprint: Some("aa".into()),
        observed_fingerprint: None,
        status: DeployStatus::Failed,
        attempts: 2,
        last_error: Some(LastError {
            class: ErrorClass::Throttled,
            code: "Throttling.User".into(),
            message: "Request was denied due to user flow control.".into(),
        }),
        next_attempt_at: Some(T0 + time::Duration::minutes(30)),
        updated_at: T0,
    };
    let in_sync = DeploymentRecord {
        target: "cdn".into(),
        certificate: "web".into(),
        desired_fingerprint: Some("bb".into()),
        observed_fingerprint: Some("bb".into()),
        status: DeployStatus::InSync,
        attempts: 0,
        last_error: None,
        next_attempt_at: None,
        updated_at: T0,
    };
    let parked = DeploymentRecord {
        target: "vod".into(),
        status: DeployStatus::Parked,
        ..in_sync.clone()
    };
    let pending = DeploymentRecord {
        target: "file".into(),
        status: DeployStatus::Pending,
        ..in_sync.clone()
    };
    let deploying = DeploymentRecord {
        target: "edge".into(),
        status: DeployStatus::Deploying,
        ..in_sync.clone()
    };
    for record in [&failed, &in_sync, &parked, &pending, &deploying] {
        store.put_deployment(record).unwrap();
    }
    assert_eq!(
        store.deployment("rds-main", "db").unwrap().as_ref(),
        Some(&failed)
    );
    assert_eq!(store.deployment("rds-main", "web").unwrap(), None);
    let all = store.deployments().unwrap();
    assert_eq!(
        all.iter()
            .map(|r| (r.certificate.as_str(), r.target.as_str()))
            .collect::<Vec<_>>(),
        vec![
            ("db", "rds-main"),
            ("web", "cdn"),
            ("web", "edge"),
            ("web", "file"),
            ("web", "vod")
        ]
    );
    for status in DeployStatus::ALL {
        assert!(all.iter().any(|r| r.status == status), "{status} stored");
    }

    // Due: pending now; failed only once its backoff has passed.
    let due: Vec<String> = store
        .due_deployments(T0)
        .unwrap()
        .into_iter()
        .map(|r| r.target)
        .collect();
    assert_eq!(due, vec!["file"]);
    let due: Vec<String> = store
        .due_deployments(T0 + time::Duration::minutes(30))
        .unwrap()
        .into_iter()
        .map(|r| r.target)
        .collect();
    assert_eq!(due, vec!["rds-main", "file"]);

    // Replacing a row keeps one row per pair.
    let fixed = DeploymentRecord {
        status: DeployStatus::InSync,
        observed_fingerprint: Some("aa".into()),
        attempts: 0,
        last_error: None,
        next_attempt_at: None,
        ..failed
    };
    store.put_deployment(&fixed).unwrap();
    assert_eq!(store.deployment("rds-main", "db").unwrap(), Some(fixed));
    assert_eq!(store.deployments().unwrap().len(), 5);
}

fn attempts_round_trip(store: &dyn StateStore) {
    let fail = Attempt {
        subject_kind: SubjectKind::Target,
        subject: "cdn".into(),
        operation: "SetCdnDomainSSLCertificate".into(),
        class: Some(ErrorClass::Transient),
        code: Some("ServiceUnavailable".into()),
        at: T0,
    };
    let ok = Attempt {
        class: None,
        code: None,
        at: T0 + time::Duration::seconds(5),
        ..fail.clone()
    };
    let policy = Attempt {
        subject_kind: SubjectKind::Policy,
        subject: "cdn".into(),
        operation: "ModifyBackupEncryption".into(),
        class: Some(ErrorClass::Busy),
        code: Some("DBS.200019".into()),
        at: T0,
    };
    store.record_attempt(&fail).unwrap();
    store.record_attempt(&policy).unwrap();
    let record = DeploymentRecord {
        target: "cdn".into(),
        certificate: "web".into(),
        desired_fingerprint: Some("aa".into()),
        observed_fingerprint: Some("aa".into()),
        status: DeployStatus::InSync,
        attempts: 0,
        last_error: None,
        next_attempt_at: None,
        updated_at: ok.at,
    };
    store.put_deployment_with_attempt(&record, &ok).unwrap();
    assert_eq!(
        store.attempts(SubjectKind::Target, "cdn").unwrap(),
        vec![fail, ok]
    );
    assert_eq!(
        store.attempts(SubjectKind::Policy, "cdn").unwrap(),
        vec![policy]
    );
    assert!(store
        .attempts(SubjectKind::Target, "vod")
        .unwrap()
        .is_empty());
    assert_eq!(store.deployment("cdn", "web").unwrap(), Some(record));
}

fn policy_status_round_trip(store: &dyn StateStore) {
    let compliant = PolicyStatus {
        policy: "mysql-ssl".into(),
        resource: "cl-abc".into(),
        compliant: true,
        observed: json!({"ssl": true, "tls_versions": ["TLSv1.2"]}),
        last_checked: T0,
        last_job_id: Some("j-123".into()),
        last_error: None,
    };
    let failing = PolicyStatus {
        policy: "gauss-backup".into(),
        resource: "inst-1".into(),
        compliant: false,
        observed: json!({"encryption": "off"}),
        last_checked: T0,
        last_job_id: None,
        last_error: Some(LastError {
            class: ErrorClass::Unsupported,
            code: "DBS.280238".into(),
            message: "engine version does not support this".into(),
        }),
    };
    store.put_policy_status(&compliant).unwrap();
    store.put_policy_status(&failing).unwrap();
    assert_eq!(
        store.policy_status("mysql-ssl", "cl-abc").unwrap().as_ref(),
        Some(&compliant)
    );
    assert_eq!(store.policy_status("mysql-ssl", "cl-xyz").unwrap(), None);
    assert_eq!(
        store.policy_statuses().unwrap(),
        vec![failing.clone(), compliant]
    );
    let now_ok = PolicyStatus {
        compliant: true,
        last_error: None,
        last_checked: T0 + time::Duration::hours(1),
        ..failing
    };
    store.put_policy_status(&now_ok).unwrap();
    assert_eq!(
        store.policy_status("gauss-backup", "inst-1").unwrap(),
        Some(now_ok)
    );
    assert_eq!(store.policy_statuses().unwrap().len(), 2);
}

fn acme_accounts_round_trip(store: &dyn StateStore) {
    let account = AcmeAccount {
        directory_url: "https://acme.test/directory".into(),
        account_name: "main".into(),
        credentials: Secret::new(r#"{"id":"https://acme.test/acct/1","key_pkcs8":"MIG..."}"#),
        created_at: T0,
    };
    store.put_acme_account(&account).unwrap();
    let staging = AcmeAccount {
        directory_url: "https://staging.acme.test/directory".into(),
        credentials: Secret::new("{}"),
        ..account.clone()
    };
    store.put_acme_account(&staging).unwrap();
    let back = store
        .acme_account(&account.directory_url, "main")
        .unwrap()
        .unwrap();
    assert_eq!(back, account);
    assert_eq!(back.credentials.expose(), account.credentials.expose());
    assert_eq!(
        store.acme_account(&staging.directory_url, "main").unwrap(),
        Some(staging)
    );
    assert_eq!(
        store.acme_account(&account.directory_url, "other").unwrap(),
        None
    );
    let rotated = AcmeAccount {
        credentials: Secret::new(r#"{"id":"https://acme.test/acct/2"}"#),
        ..account
    };
    store.put_acme_account(&rotated).unwrap();
    assert_eq!(
        store.acme_account(&rotated.directory_url, "main").unwrap(),
        Some(rotated)
    );
}

fn acme_accounts_can_be_deleted(store: &dyn StateStore) {
    let account = AcmeAccount {
        directory_url: "https://acme.test/directory".into(),
        account_name: "main".into(),
        credentials: Secret::new("{}"),
        created_at: T0,
    };
    store.put_acme_account(&account).unwrap();
    let other = AcmeAccount {
        account_name: "other".into(),
        ..account.clone()
    };
    store.put_acme_account(&other).unwrap();
    store
        .delete_acme_account(&account.directory_url, "main")
        .unwrap();
    assert_eq!(
        store.acme_account(&account.directory_url, "main").unwrap(),
        None
    );
    assert_eq!(
        store.acme_account(&account.directory_url, "other").unwrap(),
        Some(other)
    );
    // Deleting what is not there is not an error.
    store
        .delete_acme_account(&account.directory_url, "main")
        .unwrap();
}

fn ari_points_round_trip(store: &dyn StateStore) {
    assert_eq!(store.ari_point("web").unwrap(), None);
    let point = AriPoint {
        certificate: "web".into(),
        cert_id: "aki.serial".into(),
        window_start: T0,
        window_end: T0 + time::Duration::days(2),
        renew_at: T0 + time::Duration::hours(30),
        next_poll: T0 + time::Duration::hours(6),
    };
    store.put_ari_point(&point).unwrap();
    assert_eq!(store.ari_point("web").unwrap(), Some(point.clone()));
    let moved = AriPoint {
        cert_id: "aki.serial2".into(),
        renew_at: T0 + time::Duration::hours(40),
        ..point
    };
    store.put_ari_point(&moved).unwrap();
    assert_eq!(store.ari_point("web").unwrap(), Some(moved));
    assert_eq!(store.ari_point("api").unwrap(), None);
}

fn local_cas_round_trip(store: &dyn StateStore) {
    assert_eq!(store.local_ca("ops").unwrap(), None);
    let root = LocalCaRoot {
        name: "ops".into(),
        cert_pem: "-----BEGIN CERTIFICATE-----\nAA\n-----END CERTIFICATE-----\n".into(),
        key_pem: Secret::new("ROOT-KEY"),
        created_at: T0,
    };
    store.put_local_ca(&root).unwrap();
    let back = store.local_ca("ops").unwrap().unwrap();
    assert_eq!(back, root);
    assert_eq!(back.key_pem.expose(), "ROOT-KEY");
    assert_eq!(store.local_ca("dev").unwrap(), None);
}

fn renewal_plans_round_trip(store: &dyn StateStore) {
    let plain = RenewalPlan {
        certificate: "web".into(),
        fingerprint: "aa".into(),
        renewal_at: T0 + time::Duration::days(60),
        ari_window: None,
        ari_next_check_at: None,
        updated_at: T0,
    };
    let ari = RenewalPlan {
        certificate: "api".into(),
        fingerprint: "bb".into(),
        renewal_at: T0 + time::Duration::days(61) + time::Duration::seconds(4321),
        ari_window: Some(AriWindow {
            start: T0 + time::Duration::days(61),
            end: T0 + time::Duration::days(62),
        }),
        ari_next_check_at: Some(T0 + time::Duration::hours(6)),
        updated_at: T0,
    };
    store.put_renewal_plan(&plain).unwrap();
    store.put_renewal_plan(&ari).unwrap();
    assert_eq!(store.renewal_plan("web").unwrap().as_ref(), Some(&plain));
    assert_eq!(store.renewal_plan("api").unwrap().as_ref(), Some(&ari));
    assert_eq!(store.renewal_plan("db").unwrap(), None);
    assert_eq!(store.renewal_plans().unwrap(), vec![ari, plain.clone()]);
    let moved = RenewalPlan {
        fingerprint: "cc".into(),
        renewal_at: T0 + time::Duration::days(120),
        ..plain
    };
    store.put_renewal_plan(&moved).unwrap();
    assert_eq!(store.renewal_plan("web").unwrap(), Some(moved));
    assert_eq!(store.renewal_plans().unwrap().len(), 2);
}

fn events_round_trip(store: &dyn StateStore) {
    let mut ids = Vec::new();
    for n in 0..6i64 {
        let event = Event {
            id: 0,
            at: T0 + time::Duration::seconds(n),
            kind: if n % 2 == 0 {
                "deploy.succeeded"
            } else {
                "deploy.failed"
            }
            .into(),
            subject: if n < 3 { "cdn" } else { "vod" }.into(),
            message: format!("event {n}"),
            fields: json!({"n": n, "class": "busy"}),
        };
        ids.push(store.append_event(&event).unwrap());
    }
    assert!(ids.windows(2).all(|pair| pair[0] < pair[1]), "{ids:?}");

    let all = store.events(&EventQuery::default()).unwrap();
    assert_eq!(all.len(), 6);
    assert_eq!(all[2].id, ids[2]);
    assert_eq!(all[2].at, T0 + time::Duration::seconds(2));
    assert_eq!(all[2].kind, "deploy.succeeded");
    assert_eq!(all[2].subject, "cdn");
    assert_eq!(all[2].message, "event 2");
    assert_eq!(all[2].fields, json!({"n": 2, "class": "busy"}));

    let messages = |events: Vec<Event>| events.into_iter().map(|e| e.message).collect::<Vec<_>>();
    let failed = store
        .events(&EventQuery {
            kind: Some("deploy.failed".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(messages(failed), vec!["event 1", "event 3", "event 5"]);
    let vod_failed = store
        .events(&EventQuery {
            kind: Some("deploy.failed".into()),
            subject: Some("vod".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(messages(vod_failed), vec!["event 3", "event 5"]);
    let page = store
        .events(&EventQuery {
            after_id: Some(ids[1]),
            limit: Some(2),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(messages(page), vec!["event 2", "event 3"]);
    assert_eq!(
        messages(store.tail_events(2).unwrap()),
        vec!["event 4", "event 5"]
    );
    assert_eq!(store.tail_events(100).unwrap().len(), 6);
    assert!(store.tail_events(0).unwrap().is_empty());
}

fn events_since_and_pruned_by_age(store: &dyn StateStore) {
    for day in 0..5i64 {
        store
            .append_event(&Event {
                id: 0,
                at: T0 + time::Duration::days(day),
                kind: "deploy.succeeded".into(),
                subject: "cdn".into(),
                message: format!("day {day}"),
                fields: json!({}),
            })
            .unwrap();
    }
    let messages = |events: Vec<Event>| events.into_iter().map(|e| e.message).collect::<Vec<_>>();
    let since = |at: OffsetDateTime| {
        messages(
            store
                .events(&EventQuery {
                    since: Some(at),
                    ..Default::default()
                })
                .unwrap(),
        )
    };
    assert_eq!(
        since(T0 + time::Duration::days(3)),
        vec!["day 3", "day 4"],
        "since is inclusive"
    );
    assert_eq!(
        since(T0 + time::Duration::days(3) + time::Duration::SECOND),
        vec!["day 4"]
    );
    assert_eq!(
        store.prune_events(T0 + time::Duration::days(2)).unwrap(),
        2,
        "strictly older events go"
    );
    assert_eq!(
        messages(store.events(&EventQuery::default()).unwrap()),
        vec!["day 2", "day 3", "day 4"]
    );
    assert_eq!(store.prune_events(T0).unwrap(), 0);
    // Ids keep increasing after a prune, so a follower's cursor stays valid.
    let next = store
        .append_event(&Event {
            id: 0,
            at: T0 + time::Duration::days(5),
            kind: "deploy.failed".into(),
            subject: "cdn".into(),
            message: "day 5".into(),
            fields: json!({}),
        })
        .unwrap();
    assert!(store.tail_events(2).unwrap()[0].id < next);
}

fn retention_keeps_what_targets_serve(store: &dyn StateStore) {
    let now = T0 + time::Duration::days(365);
    // Six versions of web, one a month; the CDN still serves the oldest (a failed rollout).
    let fingerprints = ["w0", "w1", "w2", "w3", "w4", "w5"];
    for (month, fingerprint) in fingerprints.iter().enumerate() {
        store
            .insert_certificate_version(
                &version(
                    "web",
                    fingerprint,
                    "K",
                    T0 + time::Duration::days(30 * month as i64),
                ),
                &targets(&["cdn", "files"]),
            )
            .unwrap();
    }
    let mut cdn = store.deployment("cdn", "web").unwrap().unwrap();
    cdn.observed_fingerprint = Some("w0".into());
    cdn.status = DeployStatus::Failed;
    store.put_deployment(&cdn).unwrap();
    store
        .insert_certificate_version(&version("gone", "g0", "K", T0), &[])
        .unwrap();
    for (age, message) in [(100, "old"), (89, "recent")] {
        store
            .append_event(&Event {
                id: 0,
                at: now - time::Duration::days(age),
                kind: "deploy.succeeded".into(),
                subject: "cdn".into(),
                message: message.into(),
                fields: json!({}),
            })
            .unwrap();
    }

    let pruned = apply_retention(store, ["web"], now).unwrap();
    assert_eq!(
        pruned,
        Pruned {
            events: 1,
            versions: 2
        }
    );
    let left: Vec<String> = store
        .certificate_versions("web")
        .unwrap()
        .into_iter()
        .map(|v| v.fingerprint)
        .collect();
    assert_eq!(
        left,
        vec!["w5", "w4", "w3", "w0"],
        "newest three and the served one"
    );
    assert_eq!(
        store.certificate_versions("gone").unwrap().len(),
        1,
        "only the certificates named are pruned"
    );
    let events = store.events(&EventQuery::default()).unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].message, "recent");
    assert_eq!(
        apply_retention(store, ["web"], now).unwrap(),
        Pruned::default(),
        "a second run finds nothing"
    );
}

fn status_report_joins_plans(store: &dyn StateStore) {
    let old = version("web", "aa", "K1", T0);
    store
        .insert_certificate_version(&old, &targets(&["cdn"]))
        .unwrap();
    let new = version("web", "bb", "K2", T0 + time::Duration::days(60));
    let new_id = store
        .insert_certificate_version(&new, &targets(&["cdn"]))
        .unwrap();
    store
        .insert_certificate_version(&version("api", "cc", "K3", T0), &[])
        .unwrap();
    // A plan for the current version of web, a stale one for api.
    store
        .put_renewal_plan(&RenewalPlan {
            certificate: "web".into(),
            fingerprint: "bb".into(),
            renewal_at: T0 + time::Duration::days(120),
            ari_window: None,
            ari_next_check_at: None,
            updated_at: T0,
        })
        .unwrap();
    store
        .put_renewal_plan(&RenewalPlan {
            certificate: "api".into(),
            fingerprint: "old".into(),
            renewal_at: T0,
            ari_window: None,
            ari_next_check_at: None,
            updated_at: T0,
        })
        .unwrap();
    let report = status_report(store).unwrap();
    assert_eq!(report.certificates.len(), 2);
    assert_eq!(report.certificates[0].name, "api");
    assert_eq!(
        report.certificates[0].renewal_at, None,
        "stale plan ignored"
    );
    assert_eq!(report.certificates[1].version_id, new_id);
    assert_eq!(report.certificates[1].fingerprint, "bb");
    assert_eq!(
        report.certificates[1].renewal_at,
        Some(T0 + time::Duration::days(120))
    );
    assert_eq!(report.deployments.len(), 1);
    assert_eq!(
        report.deployments[0].desired_fingerprint.as_deref(),
        Some("bb")
    );

    let json = serde_json::to_value(&report).unwrap();
    let text = json.to_string();
    assert!(!text.contains("K2"), "no keys in status JSON: {text}");
    assert_eq!(json["certificates"][1]["not_after"], "2026-05-31T00:00:00Z");
    assert_eq!(json["deployments"][0]["status"], "pending");
}
