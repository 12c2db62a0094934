//! The `qingcloud-mysql-plus-ssl` policy driven through the real client against the
//! simulator over loopback: audit, enforce inside and outside the window, a failed job,
//! and how each error class is (or is not) retried.

#![cfg(feature = "sim")]

use certkeeper::cloud::qingcloud::jobs::JobPollSettings;
use certkeeper::cloud::qingcloud::sim::{AccountSeed, ClusterSeed, Seed};
use certkeeper::cloud::qingcloud::{MysqlPlusSslPolicy, MysqlPlusSslSettings, QingCloudClient};
use certkeeper::cloud::sim::{serve, FaultRule, SimSeed, Simulator};
use certkeeper::cloud::{
    apply_policy, remediation_deferred_until, Policy, PolicyMode, PolicyOutcome,
};
use certkeeper::config::credentials::{Provider, ResolvedCredentials};
use certkeeper::engine::retry::{with_retries, RetryPolicy};
use certkeeper::engine::window::MaintenanceWindow;
use certkeeper::error::{CloudError, ErrorClass};
use certkeeper::secret::Secret;
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
    let seed = SimSeed {
        qingcloud: Seed {
            accounts: vec![AccountSeed {
                access_key_id: "QYACCESSKEYIDEXAMPLE".into(),
                secret_access_key: Secret::new("SECRETACCESSKEY"),
            }],
            mysql_plus_clusters: vec![ClusterSeed {
                id: CLUSTER.into(),
                zone: "sh1a".into(),
                ssl: false,
                status: "active".into(),
                transition_status: transition_status.into(),
            }],
            job_phase_ms,
            ..Seed::default()
        },
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
        let settings: MysqlPlusSslSettings = toml::from_str("ssl = true").unwrap();
        let window = MaintenanceWindow::new("0 2 * * Sun", Duration::from_secs(7200)).unwrap();
        MysqlPlusSslPolicy::new(
            "mysql-plus-ssl",
            mode,
            Some(window),
            vec![CLUSTER.into()],
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
