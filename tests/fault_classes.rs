//! The fault suite: for each error class a representative documented vendor code is injected
//! through the simulator's fault rules, and the engine's documented retry behaviour is read
//! back from the store's attempt history, the deployment ledger and the metrics. The engine
//! is driven through the library (`reconcile_target`) with chosen `now` values, so the
//! backoff across operations is asserted to the second without sleeping; the in-operation
//! loop uses a policy with millisecond delays, except where the vendor's retry-after hint is
//! what is being tested.

#![cfg(feature = "sim")]

use certkeeper::cert::bundle::testing;
use certkeeper::cert::CertificateBundle;
use certkeeper::cloud::alibaba::cdn::{CdnSettings, CdnTarget};
use certkeeper::cloud::alibaba::client::{default_rate_limits, AlibabaClient};
use certkeeper::cloud::alibaba::sim::{AccountSeed, Seed};
use certkeeper::cloud::sim::{serve, FaultRule, SimSeed, Simulator};
use certkeeper::config::credentials::{Provider, ResolvedCredentials};
use certkeeper::engine::backoff::next_delay;
use certkeeper::engine::deploy::{
    reconcile_target, reconcile_target_with_inputs, refresh_retry_pending, DeployContext,
    DeployOutcome, TargetHandle,
};
use certkeeper::error::{CloudError, ErrorClass};
use certkeeper::retry::RetryPolicy;
use certkeeper::store::sqlite::SqliteStore;
use certkeeper::store::{
    Attempt, CertificateVersion, DeployStatus, DeploymentRecord, StateStore, SubjectKind,
};
use certkeeper::telemetry::metrics::Metrics;
use std::sync::Arc;
use std::time::{Duration, Instant};
use time::OffsetDateTime;

const ID: &str = "LTAIfaultsuite";
const SECRET: &str = "fault-suite-secret";
const DOMAIN: &str = "www.example.com";
const TARGET: &str = "cdn-www";
const SET: &str = "SetCdnDomainSSLCertificate";
const DESCRIBE: &str = "DescribeDomainCertificateInfo";

/// The in-operation loop with millisecond waits: the classes' schedules are asserted on
/// `RetryPolicy::default()` below, the behaviour here.
fn fast_policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 5,
        throttle_base: Duration::from_millis(1),
        throttle_cap: Duration::from_millis(4),
        transient_base: Duration::from_millis(1),
        transient_cap: Duration::from_millis(4),
    }
}

struct Harness {
    sim: Arc<Simulator>,
    _stop: tokio::sync::oneshot::Sender<()>,
    _directory: tempfile::TempDir,
    store: Arc<SqliteStore>,
    metrics: Metrics,
    context: DeployContext,
    handle: TargetHandle,
    version: CertificateVersion,
    now: OffsetDateTime,
}

impl Harness {
    async fn start(throttle_retry_after_ms: u64) -> Self {
        let seed = SimSeed {
            alibaba: Seed {
                accounts: vec![AccountSeed {
                    access_key_id: ID.into(),
                    access_key_secret: SECRET.into(),
                }],
                cdn_domains: vec![DOMAIN.into()],
                throttle_retry_after_ms,
                ..Seed::default()
            },
            ..SimSeed::default()
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let sim = Arc::new(Simulator::new(seed));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, sim.clone(), async move {
            let _ = stopped.await;
        }));

        let directory = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&directory.path().join("state")).unwrap());
        let metrics = Metrics::new().unwrap();
        let creds =
            ResolvedCredentials::new("ali", Provider::Alibaba, ID, SECRET).with_endpoint(&base);
        let http = certkeeper::cloud::http::client(Default::default()).unwrap();
        // As the daemon builds it: single attempts in the client (the engine retries) and
        // every call observed into the metrics.
        let client = Arc::new(
            AlibabaClient::new(creds, http, default_rate_limits())
                .with_observer(Arc::new(metrics.clone())),
        );
        let settings: CdnSettings = toml::from_str(&format!("domain = \"{DOMAIN}\"")).unwrap();
        let handle = TargetHandle {
            name: TARGET.into(),
            kind: "alibaba-cdn",
            vendor: "alibaba",
            target: Arc::new(CdnTarget::new(TARGET, settings, client)),
            window: None,
        };
        let context = DeployContext {
            store: store.clone(),
            metrics: metrics.clone(),
            retry: fast_policy(),
            grace: Duration::from_secs(86_400),
        };
        let now = OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
        let version = Self::new_version(&store, now);
        Self {
            sim,
            _stop: stop,
            _directory: directory,
            store,
            metrics,
            context,
            handle,
            version,
            now,
        }
    }

    fn new_version(store: &SqliteStore, now: OffsetDateTime) -> CertificateVersion {
        let bundle: CertificateBundle = testing::fresh(&[DOMAIN]);
        let version = CertificateVersion::from_bundle("www", &bundle, "local_ca:test", now);
        let id = store
            .insert_certificate_version(&version, &[TARGET.into()])
            .unwrap();
        store.certificate_version(id).unwrap().unwrap()
    }

    fn fault(&self, action: &str, status: u16, code: &str, count: Option<u64>) {
        self.sim.add_faults(vec![FaultRule {
            vendor: "alibaba".into(),
            action: Some(action.into()),
            status,
            code: Some(code.into()),
            message: Some(format!("injected {code}")),
            count,
            probability: None,
            delay_ms: None,
        }]);
    }

    /// One engine pass at `offset` seconds after the start.
    async fn pass_at(&self, offset: i64) -> DeployOutcome {
        self.pass_with(&self.version, offset).await
    }

    async fn pass_with(&self, version: &CertificateVersion, offset: i64) -> DeployOutcome {
        let names = vec![DOMAIN.to_owned()];
        let at = self.at(offset);
        reconcile_target(&self.context, &self.handle, version, &names, at, false)
            .await
            .unwrap()
    }

    fn at(&self, offset: i64) -> OffsetDateTime {
        self.now + time::Duration::seconds(offset)
    }

    fn record(&self) -> DeploymentRecord {
        self.store
            .deployment(TARGET, &self.version.certificate)
            .unwrap()
            .unwrap()
    }

    fn attempts(&self) -> Vec<Attempt> {
        self.store.attempts(SubjectKind::Target, TARGET).unwrap()
    }

    /// (operation, class, code) of every attempt, oldest first.
    fn history(&self) -> Vec<(String, Option<ErrorClass>, Option<String>)> {
        self.attempts()
            .into_iter()
            .map(|attempt| (attempt.operation, attempt.class, attempt.code))
            .collect()
    }

    /// Calls the simulator answered for `action` with `outcome` (`ok` or a vendor code).
    fn calls(&self, action: &str, outcome: &str) -> u64 {
        self.sim.stats_json()["alibaba"][action][outcome]
            .as_u64()
            .unwrap_or(0)
    }

    fn errors(&self, operation: &str, class: ErrorClass, code: &str) -> u64 {
        self.metrics
            .errors
            .with_label_values(&["alibaba", operation, class.as_str(), code])
            .get()
    }

    fn deployments(&self, result: &str) -> u64 {
        self.metrics
            .deployments
            .with_label_values(&[TARGET, "alibaba-cdn", result])
            .get()
    }

    fn requests(&self, action: &str, outcome: &str) -> u64 {
        self.metrics
            .cloud_requests
            .with_label_values(&["alibaba", action, outcome])
            .get()
    }

    /// `certkeeper_retry_pending{class}` after a refresh from the store.
    fn pending(&self, class: ErrorClass) -> i64 {
        refresh_retry_pending(self.store.as_ref(), &self.metrics).unwrap();
        self.metrics
            .retry_pending
            .with_label_values(&[class.as_str()])
            .get()
    }

    fn served_fingerprint(&self) -> Option<String> {
        self.sim.state_json()["alibaba"]["cdn_domains"][DOMAIN]["fingerprint"]
            .as_str()
            .map(str::to_owned)
    }
}

fn failed(class: ErrorClass, code: &str, retry_at: Option<OffsetDateTime>) -> DeployOutcome {
    DeployOutcome::Failed {
        class,
        code: code.into(),
        retry_at,
    }
}

fn entry(
    operation: &str,
    class: Option<ErrorClass>,
    code: Option<&str>,
) -> (String, Option<ErrorClass>, Option<String>) {
    (operation.into(), class, code.map(str::to_owned))
}

fn ok_deploy() -> (String, Option<ErrorClass>, Option<String>) {
    entry("deploy", None, None)
}

#[test]
fn documented_schedules() {
    // Within one operation (retry): throttled without a hint 1 s doubling toward
    // 60 s, a retry-after hint wins; transient full jitter under 2 s doubling to 5 min, five
    // attempts in all; every other class is not retried in the operation.
    let policy = RetryPolicy::default();
    let mut rng = rand::thread_rng();
    let error = |class| CloudError::new("alibaba", SET, class, "Code", "message");
    for (attempt, secs) in [(1, 1), (2, 2), (3, 4), (4, 8)] {
        assert_eq!(
            policy.delay(&error(ErrorClass::Throttled), attempt, &mut rng),
            Some(Duration::from_secs(secs)),
            "throttled attempt {attempt}"
        );
    }
    let hinted = error(ErrorClass::Throttled).with_retry_after(Some(Duration::from_millis(2500)));
    assert_eq!(
        policy.delay(&hinted, 1, &mut rng),
        Some(Duration::from_millis(2500))
    );
    for (attempt, ceiling) in [(1, 2), (2, 4), (3, 8), (4, 16)] {
        for _ in 0..50 {
            let delay = policy
                .delay(&error(ErrorClass::Transient), attempt, &mut rng)
                .unwrap();
            assert!(delay <= Duration::from_secs(ceiling), "{delay:?}");
        }
    }
    assert_eq!(
        policy.delay(&error(ErrorClass::Transient), 5, &mut rng),
        None
    );
    let long = RetryPolicy {
        max_attempts: 20,
        ..RetryPolicy::default()
    };
    assert_eq!(
        long.delay(&error(ErrorClass::Throttled), 10, &mut rng),
        Some(Duration::from_secs(60))
    );
    for _ in 0..50 {
        assert!(
            long.delay(&error(ErrorClass::Transient), 12, &mut rng)
                .unwrap()
                <= Duration::from_secs(300)
        );
    }
    for class in [
        ErrorClass::Busy,
        ErrorClass::Invalid,
        ErrorClass::Auth,
        ErrorClass::Billing,
        ErrorClass::NotFound,
        ErrorClass::Unsupported,
    ] {
        assert_eq!(policy.delay(&error(class), 1, &mut rng), None, "{class}");
    }

    // Across operations (engine::backoff): busy 30 s doubling to 30 min; auth, billing,
    // not_found and unsupported 1 h doubling to 32 h; invalid parked.
    let secs = |class, attempts| next_delay(class, attempts).map(|delay| delay.as_secs());
    let busy: Vec<_> = (1..=8).map(|n| secs(ErrorClass::Busy, n)).collect();
    assert_eq!(
        busy,
        [30, 60, 120, 240, 480, 960, 1800, 1800].map(Some).to_vec()
    );
    for class in [
        ErrorClass::Auth,
        ErrorClass::Billing,
        ErrorClass::NotFound,
        ErrorClass::Unsupported,
    ] {
        let hours: Vec<_> = (1..=8)
            .map(|n| secs(class, n).map(|secs| secs / 3600))
            .collect();
        assert_eq!(
            hours,
            [1, 2, 4, 8, 16, 32, 32, 32].map(Some).to_vec(),
            "{class}"
        );
        assert_eq!(secs(class, u32::MAX), Some(32 * 3600), "{class}");
    }
    for attempts in [1, 2, 100] {
        assert_eq!(secs(ErrorClass::Invalid, attempts), None);
    }
}

#[tokio::test]
async fn throttled_is_retried_in_the_operation_honouring_retry_after() {
    // Throttling.User carries `x-acs-retry-after: 300` (ms); the policy's own throttle
    // wait is 1 ms, so only the hint explains the time the pass takes.
    let harness = Harness::start(300).await;
    harness.fault(DESCRIBE, 400, "Throttling.User", Some(1));
    harness.fault(SET, 400, "Throttling.User", Some(2));
    let started = Instant::now();
    assert_eq!(harness.pass_at(0).await, DeployOutcome::Deployed);
    assert!(
        started.elapsed() >= Duration::from_millis(3 * 300),
        "three waits of the vendor's retry-after: {:?}",
        started.elapsed()
    );
    assert_eq!(
        harness.history(),
        vec![
            entry(
                DESCRIBE,
                Some(ErrorClass::Throttled),
                Some("Throttling.User")
            ),
            entry(SET, Some(ErrorClass::Throttled), Some("Throttling.User")),
            entry(SET, Some(ErrorClass::Throttled), Some("Throttling.User")),
            ok_deploy(),
        ]
    );
    let record = harness.record();
    assert_eq!(record.status, DeployStatus::InSync);
    assert_eq!(record.attempts, 0);
    assert_eq!(record.next_attempt_at, None);
    assert_eq!(
        harness.served_fingerprint().as_deref(),
        Some(harness.version.fingerprint.as_str())
    );
    assert_eq!(harness.calls(SET, "Throttling.User"), 2);
    assert_eq!(harness.calls(SET, "ok"), 1);
    assert_eq!(
        harness.errors(SET, ErrorClass::Throttled, "Throttling.User"),
        2
    );
    assert_eq!(
        harness.errors(DESCRIBE, ErrorClass::Throttled, "Throttling.User"),
        1
    );
    assert_eq!(harness.requests(SET, "throttled"), 2);
    assert_eq!(harness.requests(SET, "ok"), 1);
    assert_eq!(harness.deployments("success"), 1);
    assert_eq!(harness.deployments("failure"), 0);
}

#[tokio::test]
async fn transient_is_retried_up_to_five_attempts_then_waits_for_the_next_pass() {
    let harness = Harness::start(1).await;
    // Four failures fit in the five attempts of one operation.
    harness.fault(SET, 503, "ServiceUnavailable", Some(4));
    assert_eq!(harness.pass_at(0).await, DeployOutcome::Deployed);
    let mut expected = vec![entry(SET, Some(ErrorClass::Transient), Some("ServiceUnavailable")); 4];
    expected.push(ok_deploy());
    assert_eq!(harness.history(), expected);
    assert_eq!(harness.calls(SET, "ServiceUnavailable"), 4);
    assert_eq!(harness.calls(SET, "ok"), 1);

    // A new version against five failures: the fifth ends the operation.
    let harness = Harness::start(1).await;
    harness.fault(SET, 500, "InternalError", Some(5));
    assert_eq!(
        harness.pass_at(0).await,
        failed(ErrorClass::Transient, "InternalError", Some(harness.at(60)))
    );
    assert_eq!(
        harness.calls(SET, "InternalError"),
        5,
        "five attempts, no sixth"
    );
    assert_eq!(harness.calls(SET, "ok"), 0);
    assert_eq!(
        harness.history(),
        vec![entry(SET, Some(ErrorClass::Transient), Some("InternalError")); 5]
    );
    assert_eq!(
        harness.errors(SET, ErrorClass::Transient, "InternalError"),
        5
    );
    assert_eq!(harness.deployments("failure"), 1);
    let record = harness.record();
    assert_eq!(record.status, DeployStatus::Failed);
    assert_eq!(record.attempts, 1);
    assert_eq!(record.next_attempt_at, Some(harness.at(60)));
    let last = record.last_error.unwrap();
    assert_eq!(
        (last.class, last.code.as_str()),
        (ErrorClass::Transient, "InternalError")
    );
    // Not due before the next attempt time: no call at all.
    let describes = harness.calls(DESCRIBE, "ok");
    assert_eq!(harness.pass_at(59).await, DeployOutcome::Skipped);
    assert_eq!(harness.calls(DESCRIBE, "ok"), describes);
    // Due: the vendor has recovered and the deploy goes through, resetting the backoff.
    assert_eq!(harness.pass_at(60).await, DeployOutcome::Deployed);
    let record = harness.record();
    assert_eq!((record.status, record.attempts), (DeployStatus::InSync, 0));
    assert_eq!(record.last_error, None);
}

#[tokio::test]
async fn busy_fails_the_operation_and_backs_off_from_thirty_seconds() {
    let harness = Harness::start(1).await;
    // The CDN domain is being configured (seed 001: InvalidDomain.notOnline).
    harness.fault(SET, 400, "InvalidDomain.notOnline", None);
    assert_eq!(
        harness.pass_at(0).await,
        failed(
            ErrorClass::Busy,
            "InvalidDomain.notOnline",
            Some(harness.at(30))
        )
    );
    assert_eq!(
        harness.calls(SET, "InvalidDomain.notOnline"),
        1,
        "not retried in the operation"
    );
    assert_eq!(harness.pass_at(29).await, DeployOutcome::Skipped);
    assert_eq!(harness.calls(SET, "InvalidDomain.notOnline"), 1);
    assert_eq!(
        harness.pass_at(30).await,
        failed(
            ErrorClass::Busy,
            "InvalidDomain.notOnline",
            Some(harness.at(90))
        )
    );
    assert_eq!(
        harness.pass_at(90).await,
        failed(
            ErrorClass::Busy,
            "InvalidDomain.notOnline",
            Some(harness.at(210))
        )
    );
    assert_eq!(harness.record().attempts, 3);
    assert_eq!(harness.pending(ErrorClass::Busy), 1);
    assert_eq!(harness.calls(SET, "InvalidDomain.notOnline"), 3);
    assert_eq!(
        harness.errors(SET, ErrorClass::Busy, "InvalidDomain.notOnline"),
        3
    );
    assert_eq!(harness.deployments("failure"), 3);
    // The domain comes back online: the next due pass deploys and resets the backoff.
    harness.sim.clear_faults();
    assert_eq!(harness.pass_at(209).await, DeployOutcome::Skipped);
    assert_eq!(harness.pass_at(210).await, DeployOutcome::Deployed);
    let mut expected = vec![entry(SET, Some(ErrorClass::Busy), Some("InvalidDomain.notOnline")); 3];
    expected.push(ok_deploy());
    assert_eq!(harness.history(), expected);
    let record = harness.record();
    assert_eq!(
        (record.status, record.attempts, record.next_attempt_at),
        (DeployStatus::InSync, 0, None)
    );
    assert_eq!(harness.pending(ErrorClass::Busy), 0);
}

#[tokio::test]
async fn auth_billing_not_found_and_unsupported_wait_an_hour_doubling_to_32_hours() {
    for (class, status, code) in [
        (ErrorClass::Auth, 403, "Forbidden.RAM"),
        (ErrorClass::Auth, 404, "InvalidAccessKeyId.NotFound"),
        (ErrorClass::Billing, 400, "Order.NoRealNameAuthentication"),
        (ErrorClass::NotFound, 404, "InvalidDomain.NotFound"),
        (ErrorClass::Unsupported, 400, "Api.NotSupport"),
    ] {
        let harness = Harness::start(1).await;
        harness.fault(SET, status, code, Some(2));
        assert_eq!(
            harness.pass_at(0).await,
            failed(class, code, Some(harness.at(3600))),
            "{code}"
        );
        assert_eq!(
            harness.calls(SET, code),
            1,
            "{code}: one call per operation"
        );
        assert_eq!(
            harness.pass_at(3599).await,
            DeployOutcome::Skipped,
            "{code}"
        );
        assert_eq!(
            harness.pass_at(3600).await,
            failed(class, code, Some(harness.at(3600 + 7200))),
            "{code}"
        );
        assert_eq!(harness.calls(SET, code), 2, "{code}");
        assert_eq!(harness.pending(class), 1, "{code}");
        assert_eq!(harness.errors(SET, class, code), 2, "{code}");
        assert_eq!(harness.requests(SET, class.as_str()), 2, "{code}");
        // Fixed by the operator: the next due pass deploys.
        assert_eq!(
            harness.pass_at(3600 + 7200).await,
            DeployOutcome::Deployed,
            "{code}"
        );
        assert_eq!(
            harness.history(),
            vec![
                entry(SET, Some(class), Some(code)),
                entry(SET, Some(class), Some(code)),
                ok_deploy()
            ],
            "{code}"
        );
    }

    // A fault that never clears: the wait doubles and stays at 32 h.
    let harness = Harness::start(1).await;
    harness.fault(SET, 403, "Forbidden.RAM", None);
    let mut at = 0;
    let mut waits = Vec::new();
    for _ in 0..8 {
        let outcome = harness.pass_at(at).await;
        let DeployOutcome::Failed {
            retry_at: Some(retry_at),
            ..
        } = outcome
        else {
            panic!("{outcome:?}")
        };
        let next = (retry_at - harness.now).whole_seconds();
        waits.push((next - at) / 3600);
        at = next;
    }
    assert_eq!(waits, [1, 2, 4, 8, 16, 32, 32, 32]);
    assert_eq!(harness.record().attempts, 8);
    assert_eq!(harness.calls(SET, "Forbidden.RAM"), 8);
}

#[tokio::test]
async fn invalid_is_parked_until_the_certificate_changes() {
    let harness = Harness::start(1).await;
    // The vendor refuses the pair (seed 001: Certificate.MissMatch).
    harness.fault(SET, 400, "Certificate.MissMatch", Some(1));
    assert_eq!(
        harness.pass_at(0).await,
        failed(ErrorClass::Invalid, "Certificate.MissMatch", None)
    );
    let record = harness.record();
    assert_eq!(record.status, DeployStatus::Parked);
    assert_eq!(record.next_attempt_at, None);
    assert_eq!(
        harness.pending(ErrorClass::Invalid),
        0,
        "parked, not pending"
    );
    // Parked: no call however long we wait.
    let describes = harness.calls(DESCRIBE, "ok");
    for offset in [30, 3600, 40 * 86_400] {
        assert_eq!(harness.pass_at(offset).await, DeployOutcome::Skipped);
    }
    assert_eq!(harness.calls(DESCRIBE, "ok"), describes);
    assert_eq!(harness.calls(SET, "Certificate.MissMatch"), 1);
    assert_eq!(
        harness.errors(SET, ErrorClass::Invalid, "Certificate.MissMatch"),
        1
    );
    assert_eq!(
        harness.history(),
        vec![entry(
            SET,
            Some(ErrorClass::Invalid),
            Some("Certificate.MissMatch")
        )]
    );
    // A new certificate version is a new input: deployed at once, history kept.
    let renewed = Harness::new_version(&harness.store, harness.at(60));
    assert_eq!(
        harness.pass_with(&renewed, 60).await,
        DeployOutcome::Deployed
    );
    assert_eq!(
        harness.served_fingerprint().as_deref(),
        Some(renewed.fingerprint.as_str())
    );
    let record = harness.record();
    assert_eq!(record.status, DeployStatus::InSync);
    assert_eq!(
        record.desired_fingerprint.as_deref(),
        Some(renewed.fingerprint.as_str())
    );
    assert_eq!(harness.attempts().len(), 2);
}

#[tokio::test]
async fn invalid_is_parked_until_the_config_changes() {
    let harness = Harness::start(1).await;
    // The vendor refuses the request as configured (seed 001).
    harness.fault(SET, 400, "InvalidSSLProtocol.ValueNotSupported", Some(1));
    let names = vec![DOMAIN.to_owned()];
    let pass = |inputs: &'static str, offset: i64| {
        let (harness, names) = (&harness, &names);
        async move {
            reconcile_target_with_inputs(
                &harness.context,
                &harness.handle,
                &harness.version,
                names,
                Some(inputs),
                harness.at(offset),
                false,
            )
            .await
            .unwrap()
        }
    };
    assert_eq!(
        pass("config-1", 0).await,
        failed(
            ErrorClass::Invalid,
            "InvalidSSLProtocol.ValueNotSupported",
            None
        )
    );
    assert_eq!(pass("config-1", 86_400).await, DeployOutcome::Skipped);
    assert_eq!(
        harness.calls(SET, "InvalidSSLProtocol.ValueNotSupported"),
        1
    );
    // The operator edits the target: the fingerprint changes and the deploy runs at once.
    assert_eq!(pass("config-2", 86_401).await, DeployOutcome::Deployed);
    let record = harness.record();
    assert_eq!((record.status, record.attempts), (DeployStatus::InSync, 0));
    let operations: Vec<_> = harness
        .history()
        .into_iter()
        .map(|(operation, class, _)| (operation, class))
        .collect();
    assert_eq!(
        operations,
        vec![
            ("inputs".to_owned(), None),
            (SET.to_owned(), Some(ErrorClass::Invalid)),
            ("inputs".to_owned(), None),
            ("deploy".to_owned(), None),
        ]
    );
}

mod policies {
    //! The same classes through a policy pass (Huawei TaurusDB backup encryption): the
    //! attempt history of `policy/resource` carries the schedule.

    use super::*;
    use certkeeper::cloud::huawei::client::{system_clock, HuaweiClient};
    use certkeeper::cloud::huawei::gaussdb::{
        EncryptionStatus, GaussDbBackupEncryptionPolicy, GaussDbBackupEncryptionSettings,
    };
    use certkeeper::cloud::{Policy, PolicyMode};
    use certkeeper::engine::converge::PolicyOutcome;
    use certkeeper::engine::policy::{reconcile_policy, PolicyContext, PolicyPass};

    const PROJECT: &str = "619d3e78f61b4be68bc5aa0b59edcf7b";
    const INSTANCE: &str = "7033e7c3cf93438797d44ad7ae0a7d95in07";
    const KEY: &str = "b82fa43f-f6e8-4ec4-9c31-231bc547c526";
    const DISABLED_KEY: &str = "0d0466b0-e727-4d9c-b35d-f84bb474a37f";
    const MODIFY: &str = "ModifyBackupEncryptStatus";
    const DESCRIBE_ENCRYPTION: &str = "DescribeBackupEncryptStatus";

    struct PolicyHarness {
        sim: Arc<Simulator>,
        _stop: tokio::sync::oneshot::Sender<()>,
        _directory: tempfile::TempDir,
        context: PolicyContext,
        client: Arc<HuaweiClient>,
        now: OffsetDateTime,
    }

    impl PolicyHarness {
        async fn start() -> Self {
            let seed = SimSeed::from_toml(&format!(
                r#"
[huawei]
kms_keys = ["{KEY}"]
disabled_kms_keys = ["{DISABLED_KEY}"]

[[huawei.accounts]]
access_key_id = "HWFAULTS"
secret_access_key = "hw-fault-secret"
project_id = "{PROJECT}"

[[huawei.gaussdb_instances]]
id = "{INSTANCE}"
backup_encryption = "off"
project_id = "{PROJECT}"
"#
            ))
            .unwrap();
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let sim = Arc::new(Simulator::new(seed));
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            tokio::spawn(serve(listener, sim.clone(), async move {
                let _ = stopped.await;
            }));
            let directory = tempfile::tempdir().unwrap();
            let store = Arc::new(SqliteStore::open(&directory.path().join("state")).unwrap());
            let mut credentials =
                ResolvedCredentials::new("hw", Provider::Huawei, "HWFAULTS", "hw-fault-secret")
                    .with_endpoint(&base);
            credentials.project_id = Some(PROJECT.into());
            credentials.region = Some("cn-north-4".into());
            let client = Arc::new(
                HuaweiClient::new(&credentials, reqwest::Client::new(), system_clock()).unwrap(),
            );
            Self {
                sim,
                _stop: stop,
                _directory: directory,
                context: PolicyContext {
                    store,
                    metrics: Metrics::new().unwrap(),
                    retry: fast_policy(),
                },
                client,
                now: OffsetDateTime::now_utc().replace_nanosecond(0).unwrap(),
            }
        }

        fn policy(&self, key: &str) -> GaussDbBackupEncryptionPolicy {
            GaussDbBackupEncryptionPolicy::new(
                "backups",
                PolicyMode::Enforce,
                vec![INSTANCE.into()],
                GaussDbBackupEncryptionSettings {
                    desired: EncryptionStatus::On,
                    kms_key_id: Some(key.into()),
                },
                self.client.clone(),
                None,
            )
        }

        fn fault(&self, action: &str, status: u16, code: &str, count: u64) {
            self.sim.add_faults(vec![FaultRule {
                vendor: "huawei".into(),
                action: Some(action.into()),
                status,
                code: Some(code.into()),
                message: None,
                count: Some(count),
                probability: None,
                delay_ms: None,
            }]);
        }

        async fn pass(&self, policy: &dyn Policy, inputs: &str, offset: i64) -> PolicyPass {
            reconcile_policy(
                &self.context,
                "backups",
                policy,
                INSTANCE,
                inputs,
                self.at(offset),
            )
            .await
            .unwrap()
        }

        fn at(&self, offset: i64) -> OffsetDateTime {
            self.now + time::Duration::seconds(offset)
        }

        /// (class, code) of every failed attempt, oldest first.
        fn failures(&self) -> Vec<(ErrorClass, String)> {
            self.context
                .store
                .attempts(
                    SubjectKind::Policy,
                    &certkeeper::engine::policy::subject("backups", INSTANCE),
                )
                .unwrap()
                .into_iter()
                .filter_map(|attempt| Some((attempt.class?, attempt.code?)))
                .collect()
        }

        fn calls(&self, action: &str, outcome: &str) -> u64 {
            self.sim.stats_json()["huawei"][action][outcome]
                .as_u64()
                .unwrap_or(0)
        }

        fn errors(&self, class: ErrorClass, code: &str) -> u64 {
            let text = self.context.metrics.encode().unwrap();
            text.lines()
                .filter(|line| {
                    line.starts_with("certkeeper_errors_total{")
                        && line.contains(&format!("class=\"{class}\""))
                        && line.contains(&format!("code=\"{code}\""))
                })
                .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
                .sum()
        }
    }

    fn remediated(pass: &PolicyPass) -> bool {
        matches!(pass, PolicyPass::Applied(PolicyOutcome::Remediated(_)))
    }

    #[tokio::test]
    async fn transient_is_retried_inside_the_pass() {
        let harness = PolicyHarness::start().await;
        let policy = harness.policy(KEY);
        harness.fault(DESCRIBE_ENCRYPTION, 500, "DBS.108000", 2);
        let pass = harness.pass(&policy, "v1", 0).await;
        assert!(remediated(&pass), "{pass:?}");
        assert_eq!(
            harness.failures(),
            vec![(ErrorClass::Transient, "DBS.108000".to_owned()); 2]
        );
        assert_eq!(harness.calls(DESCRIBE_ENCRYPTION, "DBS.108000"), 2);
        assert_eq!(harness.errors(ErrorClass::Transient, "DBS.108000"), 2);
        let status = harness
            .context
            .store
            .policy_status("backups", INSTANCE)
            .unwrap()
            .unwrap();
        assert!(status.compliant);
        assert!(policy.check(INSTANCE).await.unwrap().compliant);
    }

    #[tokio::test]
    async fn busy_backs_off_from_thirty_seconds() {
        let harness = PolicyHarness::start().await;
        let policy = harness.policy(KEY);
        // Another operation is in progress on the instance (DBS.200019).
        harness.fault(MODIFY, 409, "DBS.200019", 2);
        let busy = |retry_at| PolicyPass::Failed {
            class: ErrorClass::Busy,
            code: "DBS.200019".into(),
            retry_at: Some(retry_at),
        };
        assert_eq!(harness.pass(&policy, "v1", 0).await, busy(harness.at(30)));
        assert_eq!(
            harness.calls(MODIFY, "DBS.200019"),
            1,
            "not retried in the pass"
        );
        assert_eq!(
            harness.pass(&policy, "v1", 29).await,
            PolicyPass::Skipped {
                until: Some(harness.at(30))
            }
        );
        assert_eq!(harness.pass(&policy, "v1", 30).await, busy(harness.at(90)));
        assert_eq!(harness.calls(MODIFY, "DBS.200019"), 2);
        assert!(remediated(&harness.pass(&policy, "v1", 90).await));
        assert_eq!(harness.errors(ErrorClass::Busy, "DBS.200019"), 2);
        let status = harness
            .context
            .store
            .policy_status("backups", INSTANCE)
            .unwrap()
            .unwrap();
        assert!(status.compliant);
        assert_eq!(status.last_error, None);
    }

    #[tokio::test]
    async fn a_disabled_key_is_retried_on_a_timer_not_parked() {
        let harness = PolicyHarness::start().await;
        // Not injected: the simulator refuses a disabled key with KMS.0209, as DEW does.
        // The fix (enabling the key in DEW) happens outside the config (issue 13): busy,
        // retried on the busy backoff with the same config.
        let wrong = harness.policy(DISABLED_KEY);
        let busy = |retry_at| PolicyPass::Failed {
            class: ErrorClass::Busy,
            code: "KMS.0209".into(),
            retry_at: Some(retry_at),
        };
        assert_eq!(
            harness.pass(&wrong, "key=disabled", 0).await,
            busy(harness.at(30))
        );
        assert_eq!(harness.calls(MODIFY, "KMS.0209"), 1);
        assert_eq!(
            harness.pass(&wrong, "key=disabled", 30).await,
            busy(harness.at(90))
        );
        assert_eq!(
            harness.calls(MODIFY, "KMS.0209"),
            2,
            "retried with the same config"
        );
        // What the operator sees: the error series with the vendor's code, and the code and
        // the advice naming the key in the policy status.
        assert_eq!(harness.errors(ErrorClass::Busy, "KMS.0209"), 2);
        let last_error = harness
            .context
            .store
            .policy_status("backups", INSTANCE)
            .unwrap()
            .unwrap()
            .last_error
            .unwrap();
        assert_eq!(last_error.code, "KMS.0209");
        assert!(
            last_error.message.contains(DISABLED_KEY) && last_error.message.contains("enable it"),
            "{}",
            last_error.message
        );
        // The operator configures an enabled key: new inputs, remediated at once.
        let fixed = harness.policy(KEY);
        assert!(remediated(&harness.pass(&fixed, "key=enabled", 31).await));
        assert_eq!(
            harness.failures(),
            vec![
                (ErrorClass::Busy, "KMS.0209".to_owned()),
                (ErrorClass::Busy, "KMS.0209".to_owned())
            ]
        );
    }

    #[tokio::test]
    async fn auth_waits_an_hour_then_two() {
        let harness = PolicyHarness::start().await;
        let policy = harness.policy(KEY);
        harness.fault(DESCRIBE_ENCRYPTION, 401, "APIGW.0301", 2);
        let auth = |retry_at| PolicyPass::Failed {
            class: ErrorClass::Auth,
            code: "APIGW.0301".into(),
            retry_at: Some(retry_at),
        };
        assert_eq!(harness.pass(&policy, "v1", 0).await, auth(harness.at(3600)));
        assert_eq!(
            harness.pass(&policy, "v1", 3600).await,
            auth(harness.at(3 * 3600))
        );
        assert!(remediated(&harness.pass(&policy, "v1", 3 * 3600).await));
    }
}
