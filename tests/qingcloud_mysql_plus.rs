//! The `qingcloud-mysql-plus-ssl` policy driven through the real client against the
//! simulator over loopback: audit, enforce inside and outside the window, a failed job,
//! and how each error class is (or is not) retried.

#![cfg(feature = "sim")]

use certkeeper::cloud::qingcloud::jobs::JobPollSettings;
use certkeeper::cloud::qingcloud::mysql_plus::ConfigsslForm;
use certkeeper::cloud::qingcloud::sim::{AccountSeed, ClusterSeed, Seed};
use certkeeper::cloud::qingcloud::{MysqlPlusSslPolicy, MysqlPlusSslSettings, QingCloudClient};
use certkeeper::cloud::sim::{serve, FaultRule, SimSeed, Simulator};
use certkeeper::cloud::{Policy, PolicyMode};
use certkeeper::config::credentials::{Provider, ResolvedCredentials};
use certkeeper::engine::converge::{apply_policy, remediation_deferred_until, PolicyOutcome};
use certkeeper::error::{CloudError, ErrorClass};
use certkeeper::retry::{with_retries, RetryPolicy};
use certkeeper::secret::Secret;
use certkeeper::window::MaintenanceWindow;
use std::sync::Arc;
use std::time::Duration;
use time::macros::datetime;
use time::OffsetDateTime;

const CLUSTER: &str = "cl-ouhutv70";
/// Sundays 02:00 UTC for two hours. 2026-11-22 is a Sunday.
const INSIDE: OffsetDateTime = datetime!(2026-11-22 02:30 UTC);
const OUTSIDE: OffsetDateTime = datetime!(2026-11-23 12:00 UTC);

struct Harness {
    base: String,
    simulator: Arc<Simulator>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(transition_status: &str) -> Harness {
    start_with(transition_status, 40).await
}

async fn start_with(transition_status: &str, job_phase_ms: u64) -> Harness {
    start_seeded(Seed {
        accounts: vec![AccountSeed {
            access_key_id: "QYACCESSKEYIDEXAMPLE".into(),
            secret_access_key: Secret::new("SECRETACCESSKEY"),
        }],
        mysql_plus_clusters: vec![cluster(CLUSTER, transition_status)],
        job_phase_ms,
        ..Seed::default()
    })
    .await
}

fn cluster(id: &str, transition_status: &str) -> ClusterSeed {
    ClusterSeed {
        id: id.into(),
        zone: "sh1a".into(),
        ssl: false,
        status: "active".into(),
        transition_status: transition_status.into(),
        configssl_values: None,
    }
}

async fn start_seeded(qingcloud: Seed) -> Harness {
    let seed = SimSeed {
        qingcloud,
        ..SimSeed::default()
    };
    let simulator = Arc::new(Simulator::new(seed));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, simulator.clone(), async move {
        let _ = stopped.await;
    }));
    Harness {
        base: format!("http://{address}"),
        simulator,
        _stop: stop,
    }
}

impl Harness {
    fn client(&self, secret: &str) -> QingCloudClient {
        let mut credentials =
            ResolvedCredentials::new("qc", Provider::Qingcloud, "QYACCESSKEYIDEXAMPLE", secret)
                .with_endpoint(&self.base);
        // Upper case on purpose: the client must send it lower case.
        credentials.zone = Some("SH1A".into());
        let http = certkeeper::cloud::http::client(Default::default()).unwrap();
        QingCloudClient::new(http, &credentials, None).unwrap()
    }

    fn policy(&self, mode: PolicyMode) -> MysqlPlusSslPolicy {
        self.policy_with(mode, "ssl = true", &[CLUSTER])
    }

    fn policy_with(
        &self,
        mode: PolicyMode,
        settings: &str,
        clusters: &[&str],
    ) -> MysqlPlusSslPolicy {
        let settings: MysqlPlusSslSettings = toml::from_str(settings).unwrap();
        let window = MaintenanceWindow::new("0 2 * * Sun", Duration::from_secs(7200)).unwrap();
        MysqlPlusSslPolicy::new(
            "mysql-plus-ssl",
            mode,
            Some(window),
            clusters.iter().map(|id| (*id).to_owned()).collect(),
            self.client("SECRETACCESSKEY"),
            &settings,
        )
        .unwrap()
        .with_poll_settings(JobPollSettings {
            interval: Duration::from_millis(10),
            max_interval: Duration::from_millis(40),
            deadline: Duration::from_secs(20),
        })
    }

    fn state(&self) -> serde_json::Value {
        self.simulator.state_json()["qingcloud"].clone()
    }

    fn fault(&self, action: &str, code: &str) {
        self.simulator.add_faults(vec![FaultRule {
            vendor: "qingcloud".into(),
            action: Some(action.into()),
            status: 200,
            code: Some(code.into()),
            message: Some("injected".into()),
            count: Some(1),
            probability: None,
            delay_ms: None,
        }]);
    }

    fn calls(&self, action: &str) -> u64 {
        self.simulator.stats_json()["qingcloud"][action]
            .as_object()
            .map(|outcomes| outcomes.values().filter_map(|count| count.as_u64()).sum())
            .unwrap_or(0)
    }
}

/// Fast in-operation retries, so the transient case does not wait seconds.
fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        throttle_base: Duration::from_millis(5),
        throttle_cap: Duration::from_millis(20),
        transient_base: Duration::from_millis(5),
        transient_cap: Duration::from_millis(20),
    }
}

#[tokio::test]
async fn audit_reports_and_writes_nothing() {
    let harness = start("").await;
    let policy = harness.policy(PolicyMode::Audit);
    let outcome = apply_policy(&policy, CLUSTER, INSIDE).await.unwrap();
    let PolicyOutcome::Reported(finding) = outcome else {
        panic!("expected a report, got {outcome:?}");
    };
    assert!(!finding.compliant);
    assert_eq!(finding.observed, "ssl off");
    assert_eq!(finding.desired, "ssl on");
    let state = harness.state();
    assert_eq!(state["write_calls"], 0);
    assert_eq!(state["jobs_started"], 0);
    assert_eq!(harness.calls("RunClusterCustomService"), 0);
}

#[tokio::test]
async fn enforce_inside_the_window_runs_one_job_and_reads_ssl_back() {
    let harness = start("").await;
    let policy = harness.policy(PolicyMode::Enforce);
    let outcome = apply_policy(&policy, CLUSTER, INSIDE).await.unwrap();
    let PolicyOutcome::Remediated(remediation) = outcome else {
        panic!("expected a remediation, got {outcome:?}");
    };
    let job_id = remediation
        .job_id
        .expect("the job id goes to the event log");
    let state = harness.state();
    assert_eq!(state["jobs_started"], 1);
    assert_eq!(state["write_calls"], 1);
    assert_eq!(state["jobs"][0]["job_id"], job_id.as_str());
    assert_eq!(state["jobs"][0]["status"], "successful");
    assert_eq!(state["mysql_plus_clusters"][0]["ssl"], true);
    assert_eq!(state["mysql_plus_clusters"][0]["transition_status"], "");
    // The job was polled through pending/working, not read once.
    assert!(harness.calls("DescribeJobs") >= 3);
    // A second pass finds it compliant and writes nothing more.
    assert_eq!(
        apply_policy(&policy, CLUSTER, INSIDE).await.unwrap(),
        PolicyOutcome::Compliant
    );
    assert_eq!(harness.state()["write_calls"], 1);
}

#[tokio::test]
async fn enforce_outside_the_window_writes_nothing_and_says_when_it_opens() {
    let harness = start("").await;
    let policy = harness.policy(PolicyMode::Enforce);
    let outcome = apply_policy(&policy, CLUSTER, OUTSIDE).await.unwrap();
    let PolicyOutcome::Deferred {
        finding,
        window_opens,
    } = outcome
    else {
        panic!("expected deferral, got {outcome:?}");
    };
    assert!(!finding.compliant);
    assert_eq!(window_opens, Some(datetime!(2026-11-29 02:00 UTC)));
    assert_eq!(harness.state()["write_calls"], 0);
}

#[tokio::test]
async fn a_busy_cluster_gets_no_job() {
    let harness = start("updating").await;
    let policy = harness.policy(PolicyMode::Enforce);
    let outcome = apply_policy(&policy, CLUSTER, INSIDE).await.unwrap();
    let PolicyOutcome::Busy(finding) = outcome else {
        panic!("expected busy, got {outcome:?}");
    };
    assert!(finding.observed.contains("transition_status updating"));
    assert_eq!(harness.state()["write_calls"], 0);
}

#[tokio::test]
async fn a_failed_job_is_reported_with_its_id_and_waits_for_the_next_window() {
    let harness = start("").await;
    let policy = harness.policy(PolicyMode::Enforce);
    harness.fault("RunClusterCustomService", "JobFailed");
    let mut retried = 0;
    // Even under the in-operation retry loop, a failed job is not started again.
    let error = with_retries(
        &quick_retries(),
        || apply_policy(&policy, CLUSTER, INSIDE),
        |_, _, _| retried += 1,
    )
    .await
    .unwrap_err();
    assert_eq!(retried, 0);
    assert_eq!(error.code, "JobFailed");
    assert_eq!(error.class, ErrorClass::Busy);
    let job_id = error.job_id.clone().expect("the failed job is named");
    assert!(error.to_string().contains(&job_id), "{error}");
    let state = harness.state();
    assert_eq!(state["jobs_started"], 1);
    assert_eq!(state["jobs"][0]["status"], "failed");
    assert_eq!(state["mysql_plus_clusters"][0]["ssl"], false);

    // The engine defers the next attempt to the next window, not later in this one.
    let next = remediation_deferred_until(&policy, &error, INSIDE).unwrap();
    assert_eq!(next, datetime!(2026-11-29 02:00 UTC));
    let window = policy.maintenance_window().unwrap();
    assert!(next > window.current_close(INSIDE).unwrap());
    // In that window the same policy succeeds with a second (and last) job.
    let outcome = apply_policy(&policy, CLUSTER, next).await.unwrap();
    assert!(
        matches!(outcome, PolicyOutcome::Remediated(_)),
        "{outcome:?}"
    );
    assert_eq!(harness.state()["jobs_started"], 2);
}

#[tokio::test]
async fn server_busy_5100_is_retried_and_succeeds() {
    let harness = start("").await;
    let policy = harness.policy(PolicyMode::Audit);
    harness.fault("DescribeClusters", "5100");
    let mut retried = Vec::new();
    let finding = with_retries(
        &quick_retries(),
        || policy.check(CLUSTER),
        |error, attempt, _| retried.push((error.code.clone(), error.class, attempt)),
    )
    .await
    .unwrap();
    assert_eq!(finding.observed, "ssl off");
    assert_eq!(retried, vec![("5100".to_owned(), ErrorClass::Transient, 1)]);
    assert_eq!(harness.calls("DescribeClusters"), 2);
}

async fn not_retried(harness: &Harness, policy: &MysqlPlusSslPolicy) -> (CloudError, u32) {
    let mut retried = 0;
    let error = with_retries(
        &quick_retries(),
        || apply_policy(policy, CLUSTER, INSIDE),
        |_, _, _| retried += 1,
    )
    .await
    .unwrap_err();
    let _ = harness;
    (error, retried)
}

#[tokio::test]
async fn auth_1200_and_billing_2400_are_not_retried_and_keep_their_class() {
    let harness = start("").await;
    let policy = harness.policy(PolicyMode::Enforce);

    harness.fault("DescribeClusters", "1200");
    let (error, retried) = not_retried(&harness, &policy).await;
    assert_eq!(
        (error.class, error.code.as_str(), retried),
        (ErrorClass::Auth, "1200", 0)
    );
    assert!(error.request_id.is_some(), "our req_id is kept for support");
    // No job ran: the ordinary per-class backoff applies, not the next-window rule.
    assert_eq!(remediation_deferred_until(&policy, &error, INSIDE), None);

    harness.fault("RunClusterCustomService", "2400");
    let (error, retried) = not_retried(&harness, &policy).await;
    assert_eq!(
        (error.class, error.code.as_str(), retried),
        (ErrorClass::Billing, "2400", 0)
    );
    assert_eq!(harness.calls("RunClusterCustomService"), 1);
    assert_eq!(harness.state()["jobs_started"], 0);
}

#[tokio::test]
async fn a_wrong_secret_or_a_skewed_clock_is_refused_by_the_simulator() {
    let harness = start("").await;
    let wrong = harness.client("not-the-secret");
    let error = wrong
        .call("DescribeClusters", &[("clusters.1", CLUSTER.into())])
        .await
        .unwrap_err();
    assert_eq!(
        (error.class, error.code.as_str()),
        (ErrorClass::Auth, "1200")
    );
    assert!(!error.to_string().contains("not-the-secret"));

    let skewed = harness.client("SECRETACCESSKEY").with_clock(Arc::new(|| {
        OffsetDateTime::now_utc() - time::Duration::hours(1)
    }));
    let error = skewed.call("DescribeJobs", &[]).await.unwrap_err();
    assert_eq!(
        (error.class, error.code.as_str()),
        (ErrorClass::Auth, "1300")
    );
}

#[tokio::test]
async fn long_parameters_go_as_a_signed_post() {
    let harness = start("").await;
    let client = harness.client("SECRETACCESSKEY");
    let long = "j-".to_owned() + &"x".repeat(3000);
    let answer = client
        .call("DescribeJobs", &[("jobs.1", long)])
        .await
        .unwrap();
    assert_eq!(answer["total_count"], 0);
    assert_eq!(harness.calls("DescribeJobs"), 1);
    assert_eq!(harness.state()["post_requests"], 1);
    // Short calls stay GETs.
    client.call("DescribeJobs", &[]).await.unwrap();
    assert_eq!(harness.state()["post_requests"], 1);
}

#[tokio::test]
async fn a_job_past_its_deadline_keeps_the_cluster_busy_and_no_second_job_starts() {
    // Jobs take a minute in this simulator; the policy waits only 100 ms.
    let harness = start_with("", 60_000).await;
    let policy = harness
        .policy(PolicyMode::Enforce)
        .with_poll_settings(JobPollSettings {
            interval: Duration::from_millis(10),
            max_interval: Duration::from_millis(20),
            deadline: Duration::from_millis(100),
        });
    let error = apply_policy(&policy, CLUSTER, INSIDE).await.unwrap_err();
    assert_eq!(
        (error.class, error.code.as_str()),
        (ErrorClass::Busy, "JobTimeout")
    );
    let job_id = error.job_id.clone().unwrap();
    assert!(remediation_deferred_until(&policy, &error, INSIDE).is_some());

    // The next pass sees the running job and does not start another.
    let outcome = apply_policy(&policy, CLUSTER, INSIDE).await.unwrap();
    let PolicyOutcome::Busy(finding) = outcome else {
        panic!("expected busy, got {outcome:?}");
    };
    assert!(finding.observed.contains(&job_id), "{}", finding.observed);
    assert!(finding.observed.contains("transition_status updating"));
    assert_eq!(harness.state()["jobs_started"], 1);

    // Asked directly, the API refuses a second job with 1400, read as a state conflict.
    let error = harness
        .client("SECRETACCESSKEY")
        .call(
            "RunClusterCustomService",
            &[
                ("cluster", CLUSTER.into()),
                ("role", "maininstance".into()),
                ("service", "configuring_SSL".into()),
                ("service_params", r#"{"configssl":"YES"}"#.into()),
            ],
        )
        .await
        .unwrap_err();
    assert_eq!(
        (error.class, error.code.as_str()),
        (ErrorClass::Busy, "1400")
    );
    assert_eq!(harness.state()["jobs_started"], 1);
}

#[tokio::test]
async fn done_with_failure_counts_as_a_failed_job() {
    let harness = start("").await;
    let policy = harness.policy(PolicyMode::Enforce);
    harness.fault("RunClusterCustomService", "JobDoneWithFailure");
    let error = apply_policy(&policy, CLUSTER, INSIDE).await.unwrap_err();
    assert_eq!(error.code, "JobFailed");
    assert!(
        error.message.contains("done with failure"),
        "{}",
        error.message
    );
    assert!(error.job_id.is_some());
    assert_eq!(harness.state()["mysql_plus_clusters"][0]["ssl"], false);
}

/// Issue 13: 1400 covers "no permission" and "resource state forbids it" alike, and only
/// prose tells them apart. Whatever the prose (English, Chinese, no hint at all), the
/// client answers with a timed retry (busy), keeps the vendor's message, and the
/// in-operation retry loop does not hammer the API with it.
#[tokio::test]
async fn ret_code_1400_is_a_timed_retry_whatever_its_prose() {
    let harness = start("").await;
    let client = harness.client("SECRETACCESSKEY");
    let params = [("clusters.1", CLUSTER.to_owned())];
    for prose in [
        "PermissionDenied, 集群 [cl-ouhutv70] 正在执行其他任务",
        "PermissionDenied, you are not the owner of this resource",
        "",
    ] {
        harness.simulator.add_faults(vec![FaultRule {
            vendor: "qingcloud".into(),
            action: Some("DescribeClusters".into()),
            status: 200,
            code: Some("1400".into()),
            message: Some(prose.into()),
            count: Some(1),
            probability: None,
            delay_ms: None,
        }]);
        let mut retried = 0;
        let error = with_retries(
            &quick_retries(),
            || client.call("DescribeClusters", &params),
            |_, _, _| retried += 1,
        )
        .await
        .unwrap_err();
        assert_eq!(
            (error.class, error.code.as_str(), retried),
            (ErrorClass::Busy, "1400", 0),
            "{prose}"
        );
        assert_eq!(error.message, prose);
    }
}

/// Issue 13: the API refuses a `time_stamp` more than 60 s from its clock (1300), and so
/// does the simulator now (it allowed 300 s); a clock 30 s off still passes.
#[tokio::test]
async fn a_time_stamp_more_than_60_seconds_off_is_refused() {
    let harness = start("").await;
    for (offset, refused) in [(-90, true), (90, true), (-30, false), (30, false)] {
        let client = harness
            .client("SECRETACCESSKEY")
            .with_clock(Arc::new(move || {
                OffsetDateTime::now_utc() + time::Duration::seconds(offset)
            }));
        let outcome = client.call("DescribeJobs", &[]).await;
        match outcome {
            Err(error) if refused => assert_eq!(
                (error.class, error.code.as_str()),
                (ErrorClass::Auth, "1300"),
                "{offset}"
            ),
            Ok(_) if !refused => {}
            other => panic!("offset {offset}: {other:?}"),
        }
    }
}

fn account() -> Vec<AccountSeed> {
    vec![AccountSeed {
        access_key_id: "QYACCESSKEYIDEXAMPLE".into(),
        secret_access_key: Secret::new("SECRETACCESSKEY"),
    }]
}

/// Issue 13: the page's prose says YES/NO, its example ON. The documented YES/NO is sent
/// first; a cluster that refuses it as an invalid value (1100, no job started) is asked
/// once more with ON, and the account's form is remembered: the next cluster of the account
/// gets ON at once, and every finding says so.
#[tokio::test]
async fn a_cluster_that_refuses_yes_gets_on_once_and_the_account_remembers() {
    let on_off = |id: &str| ClusterSeed {
        configssl_values: Some(vec!["ON".into(), "OFF".into()]),
        ..cluster(id, "")
    };
    let harness = start_seeded(Seed {
        accounts: account(),
        mysql_plus_clusters: vec![on_off(CLUSTER), on_off("cl-second01")],
        job_phase_ms: 40,
        ..Seed::default()
    })
    .await;
    let policy = harness.policy_with(PolicyMode::Enforce, "ssl = true", &[CLUSTER, "cl-second01"]);
    assert_eq!(
        policy.configssl_form(),
        ConfigsslForm::YesNo,
        "documented first"
    );

    // (refused 1100, accepted) RunClusterCustomService calls after remediating `cluster`.
    let remediate = |cluster: &'static str| {
        let policy = &policy;
        let simulator = harness.simulator.clone();
        async move {
            let outcome = apply_policy(policy, cluster, INSIDE).await.unwrap();
            assert!(
                matches!(outcome, PolicyOutcome::Remediated(_)),
                "{outcome:?}"
            );
            let runs = &simulator.stats_json()["qingcloud"]["RunClusterCustomService"];
            (runs["1100"].as_u64(), runs["ok"].as_u64())
        }
    };
    assert_eq!(remediate(CLUSTER).await, (Some(1), Some(1)));
    assert_eq!(policy.configssl_form(), ConfigsslForm::OnOff);

    let finding = policy.check("cl-second01").await.unwrap();
    assert!(
        finding.observed.contains("account takes configssl ON/OFF"),
        "{}",
        finding.observed
    );
    assert_eq!(
        remediate("cl-second01").await,
        (Some(1), Some(2)),
        "the second cluster got ON at once"
    );
    let state = harness.state();
    assert_eq!(state["jobs_started"], 2);
    assert_eq!(state["mysql_plus_clusters"][0]["ssl"], true);
    assert_eq!(state["mysql_plus_clusters"][1]["ssl"], true);
}

/// A cluster that takes neither form: asked twice at most, no job, the error keeps the
/// vendor's code and says both forms were refused.
#[tokio::test]
async fn a_cluster_refusing_both_forms_is_reported_once_asked_twice() {
    let harness = start_seeded(Seed {
        accounts: account(),
        mysql_plus_clusters: vec![ClusterSeed {
            configssl_values: Some(vec!["enabled".into()]),
            ..cluster(CLUSTER, "")
        }],
        job_phase_ms: 40,
        ..Seed::default()
    })
    .await;
    let policy = harness.policy(PolicyMode::Enforce);
    let error = apply_policy(&policy, CLUSTER, INSIDE).await.unwrap_err();
    assert_eq!(
        (error.class, error.code.as_str()),
        (ErrorClass::Invalid, "1100")
    );
    assert!(
        error
            .message
            .contains("refused in both forms, YES/NO and ON/OFF"),
        "{}",
        error.message
    );
    assert_eq!(harness.calls("RunClusterCustomService"), 2);
    assert_eq!(harness.state()["jobs_started"], 0);
    assert_eq!(policy.configssl_form(), ConfigsslForm::YesNo);
}

/// Issue 13: the environment key holding SSL is not documented. When the cluster reports
/// none the policy knows, the check fails `unsupported`, names what it looked for and the
/// keys the cluster does report; configured with the right `ssl_env_key`, it reads it.
#[tokio::test]
async fn ssl_state_absent_from_the_environment_is_unsupported_and_lists_the_keys() {
    let harness = start_seeded(Seed {
        accounts: account(),
        mysql_plus_clusters: vec![cluster(CLUSTER, "")],
        job_phase_ms: 40,
        ssl_env_key: "require_secure_transport".into(),
        ..Seed::default()
    })
    .await;
    let error = harness
        .policy(PolicyMode::Audit)
        .check(CLUSTER)
        .await
        .unwrap_err();
    assert_eq!(
        (error.class, error.code.as_str()),
        (ErrorClass::Unsupported, "SslStateNotReported")
    );
    for needed in [
        "no environment key `configssl`",
        "[max_connections, require_secure_transport]",
        "set ssl_env_key",
    ] {
        assert!(
            error.message.contains(needed),
            "{needed}: {}",
            error.message
        );
    }
    let configured = harness.policy_with(
        PolicyMode::Audit,
        "ssl = true\nssl_env_key = \"REQUIRE_SECURE_TRANSPORT\"",
        &[CLUSTER],
    );
    let finding = configured.check(CLUSTER).await.unwrap();
    assert_eq!(
        (finding.compliant, finding.observed.as_str()),
        (false, "ssl off")
    );
}

/// The learned form is recorded with the policy status and shown by `certkeeper status`
/// (text and JSON), for every resource of the account's policies.
#[tokio::test]
async fn the_learned_configssl_form_is_visible_in_status() {
    use certkeeper::engine::policy::{reconcile_policy, PolicyContext};
    use certkeeper::store::sqlite::SqliteStore;
    use certkeeper::store::StateStore;

    let harness = start_on_off_cluster().await;
    let directory = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(directory.path()).unwrap());
    let context = PolicyContext {
        store: store.clone(),
        metrics: certkeeper::telemetry::metrics::Metrics::new().unwrap(),
        retry: quick_retries(),
    };
    let policy = harness.policy(PolicyMode::Enforce);
    let pass = reconcile_policy(&context, "mysql-ssl", &policy, CLUSTER, "v1", INSIDE)
        .await
        .unwrap();
    assert!(
        matches!(
            pass,
            certkeeper::engine::policy::PolicyPass::Applied(PolicyOutcome::Remediated(_))
        ),
        "{pass:?}"
    );
    let status = store.policy_status("mysql-ssl", CLUSTER).unwrap().unwrap();
    let note = status.observed["account_note"].as_str().unwrap().to_owned();
    assert_eq!(
        note,
        "clusters of this account refused configssl YES/NO; certkeeper sends ON/OFF"
    );

    let config = certkeeper::config::load_str(
        "test.toml",
        &format!(
            r#"
[daemon]
state_dir = "{}"

[credentials.qc]
provider = "qingcloud"
access_key_id = "QYACCESSKEYIDEXAMPLE"
access_key_secret_env = "QC_SECRET_UNUSED"
zone = "sh1a"

[[policy]]
name = "mysql-ssl"
kind = "qingcloud-mysql-plus-ssl"
credentials = "qc"
mode = "enforce"
resources = ["{CLUSTER}"]
ssl = true
"#,
            directory.path().display()
        ),
    )
    .unwrap()
    .config;
    let mut text = Vec::new();
    certkeeper::status::print(&config, false, &mut text).unwrap();
    let text = String::from_utf8(text).unwrap();
    assert!(
        text.contains(&format!("note: mysql-ssl {CLUSTER}: {note}")),
        "{text}"
    );
    let mut json = Vec::new();
    certkeeper::status::print(&config, true, &mut json).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(json["policies"][0]["account_note"], note.as_str());
}

/// The learned form survives a restart: the state gauges' restore reads the account note the
/// store kept and hands it back to the policy, so the first remediation of the new process
/// sends ON/OFF at once (one call, no refused YES/NO) and the note stays visible.
#[tokio::test]
async fn the_learned_configssl_form_survives_a_restart() {
    use certkeeper::engine::state::{restore, Inventory, PolicyItem};
    use certkeeper::store::sqlite::SqliteStore;
    use certkeeper::store::{PolicyStatus, StateStore};

    let harness = start_on_off_cluster().await;
    // What the previous process stored with the policy status.
    let note = "clusters of this account refused configssl YES/NO; certkeeper sends ON/OFF";
    let directory = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(directory.path()).unwrap();
    store
        .put_policy_status(&PolicyStatus {
            policy: "mysql-ssl".into(),
            resource: CLUSTER.into(),
            compliant: false,
            observed: serde_json::json!({ "account_note": note }),
            last_checked: INSIDE,
            last_job_id: None,
            last_error: None,
        })
        .unwrap();
    let policy = harness.policy(PolicyMode::Enforce);
    assert_eq!(policy.configssl_form(), ConfigsslForm::YesNo);
    let inventory = Inventory {
        policies: vec![PolicyItem {
            name: "mysql-ssl",
            policy: &policy,
        }],
        ..Inventory::default()
    };
    let metrics = certkeeper::telemetry::metrics::Metrics::new().unwrap();
    restore(&store, &metrics, &inventory, INSIDE).unwrap();
    assert_eq!(policy.configssl_form(), ConfigsslForm::OnOff);
    assert_eq!(policy.account_note().as_deref(), Some(note));
    let outcome = apply_policy(&policy, CLUSTER, INSIDE).await.unwrap();
    assert!(
        matches!(outcome, PolicyOutcome::Remediated(_)),
        "{outcome:?}"
    );
    assert_eq!(harness.calls("RunClusterCustomService"), 1);
}

/// A simulator whose cluster takes `configssl` only as ON/OFF.
async fn start_on_off_cluster() -> Harness {
    start_seeded(Seed {
        accounts: account(),
        mysql_plus_clusters: vec![ClusterSeed {
            configssl_values: Some(vec!["ON".into(), "OFF".into()]),
            ..cluster(CLUSTER, "")
        }],
        job_phase_ms: 40,
        ..Seed::default()
    })
    .await
}
