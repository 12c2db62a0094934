//! End to end against the in-process simulator over loopback HTTP: the official SDK's
//! recorded requests verify (and tampered ones do not), the GaussDB backup-encryption policy
//! in audit and enforce mode with AK/SK and with IAM tokens (including renewal), error
//! classes for unknown keys, unknown instances and busy instances, and DNS-01 TXT records.

#![cfg(feature = "sim")]

use certkeeper::cloud::huawei::client::{system_clock, Clock, HuaweiClient};
use certkeeper::cloud::huawei::dns::HuaweiDnsSolver;
use certkeeper::cloud::huawei::gaussdb::{
    EncryptionStatus, GaussDbBackupEncryptionPolicy, GaussDbBackupEncryptionSettings,
};
use certkeeper::cloud::sim::{serve, FaultRule, SimSeed, Simulator};
use certkeeper::cloud::{DnsSolver, Policy, PolicyMode};
use certkeeper::config::credentials::{AuthMethod, Provider, ResolvedCredentials};
use certkeeper::engine::converge::{apply_policy, PolicyOutcome};
use certkeeper::error::ErrorClass;
use certkeeper::retry::{with_retries, RetryPolicy};
use certkeeper::secret::Secret;
use serde_json::Value;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PROJECT: &str = "619d3e78f61b4be68bc5aa0b59edcf7b";
const INSTANCE: &str = "7033e7c3cf93438797d44ad7ae0a7d95in07";
const OTHER_INSTANCE: &str = "8033e7c3cf93438797d44ad7ae0a7d95in07";
const KEY: &str = "b82fa43f-f6e8-4ec4-9c31-231bc547c526";
const DISABLED_KEY: &str = "0d0466b0-e727-4d9c-b35d-f84bb474a37f";
const UNKNOWN_KEY: &str = "11111111-2222-3333-4444-555555555555";

fn seed() -> SimSeed {
    SimSeed::from_toml(&format!(
        r#"
        [huawei]
        kms_keys = ["{KEY}"]
        disabled_kms_keys = ["{DISABLED_KEY}"]
        dns_zones = ["example.com", "sub.example.com"]
        [[huawei.accounts]]
        access_key_id = "AKSIM"
        secret_access_key = "sk-sim"
        project_id = "{PROJECT}"
        [[huawei.users]]
        domain = "acme"
        name = "deployer"
        password = "pw-sim"
        project_id = "{PROJECT}"
        [[huawei.gaussdb_instances]]
        id = "{INSTANCE}"
        backup_encryption = "off"
        [[huawei.gaussdb_instances]]
        id = "{OTHER_INSTANCE}"
        "#
    ))
    .unwrap()
}

struct Running {
    simulator: Arc<Simulator>,
    url: String,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

async fn start(seed: SimSeed) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let simulator = Arc::new(Simulator::new(seed));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(listener, simulator.clone(), async {
        let _ = rx.await;
    }));
    Running {
        simulator,
        url,
        _shutdown: tx,
    }
}

impl Running {
    fn huawei(&self) -> Value {
        self.simulator.state_json()["huawei"].clone()
    }

    fn writes(&self) -> u64 {
        self.huawei()["write_calls_total"].as_u64().unwrap()
    }

    fn encryption(&self, instance: &str) -> String {
        self.huawei()["gaussdb_instances"][instance]["backup_encryption"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn aksk_client(&self) -> Arc<HuaweiClient> {
        let mut credentials = ResolvedCredentials::new("hw", Provider::Huawei, "AKSIM", "sk-sim")
            .with_endpoint(&self.url);
        credentials.project_id = Some(PROJECT.into());
        credentials.region = Some("cn-north-4".into());
        Arc::new(HuaweiClient::new(&credentials, reqwest::Client::new(), system_clock()).unwrap())
    }

    fn token_client(&self, clock: Clock) -> Arc<HuaweiClient> {
        let mut credentials =
            ResolvedCredentials::new("hw", Provider::Huawei, "", "").with_endpoint(&self.url);
        credentials.auth = AuthMethod::Token;
        credentials.region = Some("cn-north-4".into());
        credentials.domain_name = Some("acme".into());
        credentials.user_name = Some("deployer".into());
        credentials.password = Some(Secret::new("pw-sim"));
        Arc::new(HuaweiClient::new(&credentials, reqwest::Client::new(), clock).unwrap())
    }
}

fn policy(
    client: Arc<HuaweiClient>,
    mode: PolicyMode,
    instance: &str,
    key: &str,
) -> GaussDbBackupEncryptionPolicy {
    GaussDbBackupEncryptionPolicy::new(
        "backups-encrypted",
        mode,
        vec![instance.into()],
        GaussDbBackupEncryptionSettings {
            desired: EncryptionStatus::On,
            kms_key_id: Some(key.into()),
        },
        client,
        None,
    )
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

// ----- signature vectors replayed over HTTP ---------------------------------------------------

fn vectors() -> Vec<Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/vectors/huawei_sdk_hmac_sha256.json"
    );
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Sends the vector's request byte for byte (only `Connection` becomes `close`, it is not
/// signed) and returns the status code. `edit` may change headers and body first.
async fn replay(
    url: &str,
    case: &Value,
    edit: impl Fn(&mut Vec<(String, String)>, &mut String),
) -> u16 {
    let raw = &case["raw_request"];
    let mut headers: Vec<(String, String)> = raw["headers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|pair| {
            (
                pair[0].as_str().unwrap().to_owned(),
                pair[1].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mut body = raw["body"].as_str().unwrap().to_owned();
    edit(&mut headers, &mut body);
    let mut text = format!(
        "{} {} HTTP/1.1\r\n",
        raw["method"].as_str().unwrap(),
        raw["target"].as_str().unwrap()
    );
    for (name, value) in &headers {
        let value = if name == "Connection" { "close" } else { value };
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    text.push_str(&body);
    let address = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
    stream.write_all(text.as_bytes()).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    answer.split(' ').nth(1).unwrap().parse().unwrap()
}

fn vector_seed(secret: &str, skip_date_check: bool) -> SimSeed {
    SimSeed::from_toml(&format!(
        r#"
        [huawei]
        kms_keys = ["5f6a7b8c-1d2e-4f30-9a8b-7c6d5e4f3a2b"]
        skip_sdk_date_check = {skip_date_check}
        [[huawei.accounts]]
        access_key_id = "testAccessKeyId"
        secret_access_key = "{secret}"
        project_id = "0123456789abcdef0123456789abcdef"
        [[huawei.gaussdb_instances]]
        id = "a1b2c3d4e5f64a7b8c9d0e1f2a3b4c5din07"
        "#
    ))
    .unwrap()
}

#[tokio::test]
async fn sdk_requests_are_accepted_and_tampered_ones_refused() {
    let sim = start(vector_seed("testAccessKeySecret", true)).await;
    let cases = vectors();
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        assert_eq!(
            replay(&sim.url, case, |_, _| {}).await,
            200,
            "{name}: as recorded"
        );
        let flipped = replay(&sim.url, case, |headers, _| {
            for (header, value) in headers.iter_mut() {
                if header == "X-Project-Id" {
                    value.replace_range(0..1, "f");
                }
            }
        })
        .await;
        assert_eq!(flipped, 401, "{name}: signed header changed");
    }
    let post = &cases[0];
    let tampered = replay(&sim.url, post, |_, body| {
        *body = body.replace("5f6a7b8c", "5f6a7b8d");
    })
    .await;
    assert_eq!(tampered, 401, "body changed after signing");
    let retyped = replay(&sim.url, post, |headers, _| {
        for (header, value) in headers.iter_mut() {
            if header == "Content-Type" {
                *value = "text/plain".into();
            }
        }
    })
    .await;
    assert_eq!(retyped, 401, "Content-Type changed after signing");
    // The recorded POST switched encryption on; the tampered one did not reach the handler.
    assert_eq!(
        sim.huawei()["gaussdb_instances"]["a1b2c3d4e5f64a7b8c9d0e1f2a3b4c5din07"]
            ["backup_encryption"],
        "on"
    );

    let wrong_secret = start(vector_seed("anotherSecret", true)).await;
    assert_eq!(
        replay(&wrong_secret.url, post, |_, _| {}).await,
        401,
        "wrong secret"
    );
    let with_skew_check = start(vector_seed("testAccessKeySecret", false)).await;
    assert_eq!(
        replay(&with_skew_check.url, post, |_, _| {}).await,
        401,
        "X-Sdk-Date from 2024 is far outside 15 minutes"
    );
    assert_eq!(with_skew_check.writes(), 0);
}

/// Sends a request signed by the client's signer over `signed`, then adds `unsigned`.
async fn send_signed(
    url: &str,
    method: reqwest::Method,
    path: &str,
    body: &str,
    signed: &[(&str, &str)],
    unsigned: &[(&str, &str)],
) -> (u16, Value) {
    let host = url.trim_start_matches("http://").to_owned();
    let mut headers: Vec<(String, String)> = signed
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    headers.push(("Host".into(), host));
    certkeeper::cloud::huawei::client::sign_headers(
        &mut headers,
        method.as_str(),
        path,
        "",
        body.as_bytes(),
        &certkeeper::cloud::huawei::signer::format_sdk_date(OffsetDateTime::now_utc()),
        "AKSIM",
        &Secret::new("sk-sim"),
    );
    let mut request = reqwest::Client::new()
        .request(method, format!("{url}{path}"))
        .body(body.to_owned());
    for (name, value) in headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .chain(unsigned.iter().copied())
    {
        request = request.header(name, value);
    }
    let answer = request.send().await.unwrap();
    let status = answer.status().as_u16();
    (status, answer.json().await.unwrap_or(Value::Null))
}

/// Issue 13: the SDK signs `X-Project-Id` and `Content-Type` whenever it sends them, so the
/// simulator refuses either travelling unsigned, and refuses a body that is not declared
/// JSON; the same request signed as the SDK signs it passes. (The recorded SDK requests
/// still pass: `sdk_requests_are_accepted_and_tampered_ones_refused`.)
#[tokio::test]
async fn unsigned_sdk_headers_and_a_wrong_content_type_are_refused() {
    let sim = start(seed()).await;
    let path = format!("/v3/{PROJECT}/instances/{INSTANCE}/backups/encryption");
    let json = ("Content-Type", "application/json");
    let project = ("X-Project-Id", PROJECT);

    let (status, _) = send_signed(
        &sim.url,
        reqwest::Method::GET,
        &path,
        "",
        &[json, project],
        &[],
    )
    .await;
    assert_eq!(status, 200, "signed as the SDK signs");

    let (status, answer) = send_signed(
        &sim.url,
        reqwest::Method::GET,
        &path,
        "",
        &[json],
        &[project],
    )
    .await;
    assert_eq!(
        (status, answer["error_code"].as_str()),
        (401, Some("APIGW.0301"))
    );
    assert!(
        answer["error_msg"]
            .as_str()
            .unwrap()
            .contains("x-project-id"),
        "{answer}"
    );

    let (status, _) = send_signed(
        &sim.url,
        reqwest::Method::GET,
        &path,
        "",
        &[project],
        &[json],
    )
    .await;
    assert_eq!(status, 401, "Content-Type unsigned");

    let body = format!(r#"{{"encryption_status":"on","type":"kms","kms_key_id":"{KEY}"}}"#);
    for wrong in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/json;charset=latin1",
    ] {
        let (status, answer) = send_signed(
            &sim.url,
            reqwest::Method::POST,
            &path,
            &body,
            &[("Content-Type", wrong), project],
            &[],
        )
        .await;
        assert_eq!(
            (status, answer["error_code"].as_str()),
            (400, Some("DBS.200001")),
            "{wrong}"
        );
    }
    assert_eq!(sim.encryption(INSTANCE), "off");
    let (status, _) = send_signed(
        &sim.url,
        reqwest::Method::POST,
        &path,
        &body,
        &[("Content-Type", "application/json;charset=UTF-8"), project],
        &[],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(sim.encryption(INSTANCE), "on");
}

// ----- GaussDB backup encryption ----------------------------------------------------------------

#[tokio::test]
async fn audit_reports_and_enforce_remediates_once() {
    let sim = start(seed()).await;
    let client = sim.aksk_client();

    let audit = policy(client.clone(), PolicyMode::Audit, INSTANCE, KEY);
    assert_eq!(audit.resources(), vec![INSTANCE.to_owned()]);
    match apply_policy(&audit, INSTANCE, now()).await.unwrap() {
        PolicyOutcome::Reported(finding) => {
            assert!(!finding.compliant);
            assert_eq!(finding.observed, "backup encryption off");
            assert_eq!(finding.desired, "backup encryption on");
        }
        other => panic!("audit must report, got {other:?}"),
    }
    assert_eq!(sim.writes(), 0, "audit mode writes nothing");
    assert_eq!(sim.encryption(INSTANCE), "off");

    let enforce = policy(client, PolicyMode::Enforce, INSTANCE, KEY);
    let outcome = apply_policy(&enforce, INSTANCE, now()).await.unwrap();
    assert!(
        matches!(outcome, PolicyOutcome::Remediated(_)),
        "{outcome:?}"
    );
    assert_eq!(sim.encryption(INSTANCE), "on");
    assert_eq!(
        sim.huawei()["gaussdb_instances"][INSTANCE]["kms_key_id"],
        KEY
    );
    let read_back = enforce.check(INSTANCE).await.unwrap();
    assert!(read_back.compliant);
    assert_eq!(read_back.observed, "backup encryption on");
    assert_eq!(sim.writes(), 1);

    assert_eq!(
        apply_policy(&enforce, INSTANCE, now()).await.unwrap(),
        PolicyOutcome::Compliant
    );
    assert_eq!(sim.writes(), 1, "a compliant instance gets no write call");
}

#[tokio::test]
async fn vendor_errors_surface_with_their_class() {
    let sim = start(seed()).await;
    let client = sim.aksk_client();

    let unknown_key = policy(client.clone(), PolicyMode::Enforce, INSTANCE, UNKNOWN_KEY);
    let error = apply_policy(&unknown_key, INSTANCE, now())
        .await
        .unwrap_err();
    assert_eq!(
        (error.class, error.code.as_str()),
        (ErrorClass::NotFound, "KMS.0207")
    );
    assert_eq!(error.http_status, Some(400));
    assert!(error.request_id.is_some());

    let disabled_key = policy(client.clone(), PolicyMode::Enforce, INSTANCE, DISABLED_KEY);
    let error = apply_policy(&disabled_key, INSTANCE, now())
        .await
        .unwrap_err();
    assert_eq!(
        (error.class, error.code.as_str()),
        (ErrorClass::Busy, "KMS.0209")
    );
    // Neither is retried within the operation: the retry loop gives it back at once.
    let mut retried = 0;
    let error = with_retries(
        &RetryPolicy::default(),
        || apply_policy(&disabled_key, INSTANCE, now()),
        |_, _, _| retried += 1,
    )
    .await
    .unwrap_err();
    assert_eq!((error.class, retried), (ErrorClass::Busy, 0));
    assert_eq!(sim.encryption(INSTANCE), "off");

    let missing = "9999e7c3cf93438797d44ad7ae0a7d95in07";
    let unknown_instance = policy(client.clone(), PolicyMode::Enforce, missing, KEY);
    let error = apply_policy(&unknown_instance, missing, now())
        .await
        .unwrap_err();
    assert_eq!(
        (error.class, error.code.as_str()),
        (ErrorClass::NotFound, "DBS.200002")
    );

    // A busy instance: DBS.200019 twice, then the change goes through.
    sim.simulator.add_faults(vec![FaultRule {
        vendor: "huawei".into(),
        action: Some("ModifyBackupEncryptStatus".into()),
        status: 409,
        code: Some("DBS.200019".into()),
        message: Some("Another operation is in progress.".into()),
        count: Some(2),
        probability: None,
        delay_ms: None,
    }]);
    let enforce = policy(client, PolicyMode::Enforce, INSTANCE, KEY);
    let mut busy = 0;
    let outcome = loop {
        // The engine reschedules busy resources across operations; this loop stands in for it.
        match apply_policy(&enforce, INSTANCE, now()).await {
            Ok(outcome) => break outcome,
            Err(error) => {
                assert_eq!(
                    (error.class, error.code.as_str()),
                    (ErrorClass::Busy, "DBS.200019")
                );
                busy += 1;
                assert!(busy <= 2, "the fault is used up after two answers");
            }
        }
    };
    assert_eq!(busy, 2);
    assert!(
        matches!(outcome, PolicyOutcome::Remediated(_)),
        "{outcome:?}"
    );
    assert_eq!(sim.encryption(INSTANCE), "on");
    let stats = sim.simulator.stats_json();
    assert_eq!(
        stats["huawei"]["ModifyBackupEncryptStatus"]["DBS.200019"],
        2
    );
    assert_eq!(stats["huawei"]["ModifyBackupEncryptStatus"]["ok"], 1);
}

// ----- IAM token auth --------------------------------------------------------------------------

#[tokio::test]
async fn token_auth_works_and_renews_after_401_and_before_expiry() {
    let sim = start(seed()).await;
    let offset_seconds = Arc::new(AtomicI64::new(0));
    let clock: Clock = {
        let offset = offset_seconds.clone();
        Arc::new(move || {
            OffsetDateTime::now_utc() + time::Duration::seconds(offset.load(Ordering::SeqCst))
        })
    };
    let client = sim.token_client(clock);
    // No project id configured: it comes from the token's scope.
    assert_eq!(client.project_id().await.unwrap(), PROJECT);

    let enforce = policy(client, PolicyMode::Enforce, INSTANCE, KEY);
    let outcome = apply_policy(&enforce, INSTANCE, now()).await.unwrap();
    assert!(
        matches!(outcome, PolicyOutcome::Remediated(_)),
        "{outcome:?}"
    );
    assert_eq!(sim.encryption(INSTANCE), "on");
    assert_eq!(
        sim.huawei()["tokens_issued"],
        1,
        "one token, cached across calls"
    );

    // The API rejects the token once (revoked, say): the client fetches a new one and resends.
    let response = reqwest::Client::new()
        .post(format!("{}/__sim/faults", sim.url))
        .json(
            &serde_json::json!({"vendor": "huawei", "action": "DescribeBackupEncryptStatus",
            "status": 401, "code": "APIGW.0301",
            "message": "Incorrect IAM authentication information: token expired", "count": 1}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let finding = enforce.check(INSTANCE).await.unwrap();
    assert!(finding.compliant);
    assert_eq!(sim.huawei()["tokens_issued"], 2, "renewed after the 401");
    let stats = sim.simulator.stats_json();
    assert_eq!(
        stats["huawei"]["DescribeBackupEncryptStatus"]["APIGW.0301"],
        1
    );

    // 23.5 hours later the cached token is within the renewal margin of its 24 h life.
    offset_seconds.store(23 * 3600 + 1800, Ordering::SeqCst);
    assert!(enforce.check(INSTANCE).await.unwrap().compliant);
    assert_eq!(sim.huawei()["tokens_issued"], 3, "renewed before expiry");
    assert!(enforce.check(INSTANCE).await.unwrap().compliant);
    assert_eq!(sim.huawei()["tokens_issued"], 3);
}

#[tokio::test]
async fn wrong_password_is_an_auth_error() {
    let sim = start(seed()).await;
    let mut credentials =
        ResolvedCredentials::new("hw", Provider::Huawei, "", "").with_endpoint(&sim.url);
    credentials.auth = AuthMethod::Token;
    credentials.domain_name = Some("acme".into());
    credentials.user_name = Some("deployer".into());
    credentials.password = Some(Secret::new("hunter2-not-it"));
    credentials.project_id = Some(PROJECT.into());
    let client =
        Arc::new(HuaweiClient::new(&credentials, reqwest::Client::new(), system_clock()).unwrap());
    let error = policy(client, PolicyMode::Audit, INSTANCE, KEY)
        .check(INSTANCE)
        .await
        .unwrap_err();
    assert_eq!(error.class, ErrorClass::Auth);
    assert!(!error.to_string().contains("hunter2"), "{error}");
    let stats = sim.simulator.stats_json();
    assert_eq!(
        stats["huawei"]["KeystoneCreateUserTokenByPassword"]["Unauthorized"], 1,
        "a refused password is not sent again"
    );
    assert!(!format!("{credentials:?}").contains("hunter2"));
}

// ----- DNS-01 ------------------------------------------------------------------------------------

#[tokio::test]
async fn dns01_txt_records_are_created_and_cleaned_up() {
    let sim = start(seed()).await;
    let solver = HuaweiDnsSolver::new(sim.aksk_client(), 60);
    let recordsets = |zone: &str| sim.huawei()["dns_zones"][zone]["recordsets"].clone();

    let first = solver
        .present("_acme-challenge.www.example.com", "token-one")
        .await
        .unwrap();
    assert_eq!(first.zone, "example.com");
    assert_eq!(first.fqdn, "_acme-challenge.www.example.com");
    let sets = recordsets("example.com");
    assert_eq!(sets.as_array().unwrap().len(), 1);
    assert_eq!(sets[0]["name"], "_acme-challenge.www.example.com.");
    assert_eq!(sets[0]["type"], "TXT");
    assert_eq!(sets[0]["records"], serde_json::json!(["\"token-one\""]));
    assert_eq!(sets[0]["ttl"], 60);

    // Same value again: nothing written.
    let writes = sim.writes();
    let again = solver
        .present("_acme-challenge.www.example.com.", "token-one")
        .await
        .unwrap();
    assert_eq!(again.record_id, first.record_id);
    assert_eq!(sim.writes(), writes);

    // A second value for the same name (wildcard + apex) joins the same recordset.
    let second = solver
        .present("_acme-challenge.www.example.com", "token-two")
        .await
        .unwrap();
    assert_eq!(second.record_id, first.record_id);
    assert_eq!(
        recordsets("example.com")[0]["records"],
        serde_json::json!(["\"token-one\"", "\"token-two\""])
    );

    // The longest zone wins.
    let nested = solver
        .present("_acme-challenge.api.sub.example.com", "token-three")
        .await
        .unwrap();
    assert_eq!(nested.zone, "sub.example.com");
    assert_eq!(recordsets("sub.example.com").as_array().unwrap().len(), 1);

    solver.cleanup(&first).await.unwrap();
    assert_eq!(
        recordsets("example.com")[0]["records"],
        serde_json::json!(["\"token-two\""])
    );
    solver.cleanup(&second).await.unwrap();
    solver.cleanup(&nested).await.unwrap();
    assert!(recordsets("example.com").as_array().unwrap().is_empty());
    assert!(recordsets("sub.example.com").as_array().unwrap().is_empty());
    // Cleaning up what is gone already succeeds.
    solver.cleanup(&first).await.unwrap();

    let error = solver
        .present("_acme-challenge.example.org", "x")
        .await
        .unwrap_err();
    assert_eq!(error.class, ErrorClass::NotFound);
    let stats = sim.simulator.stats_json();
    assert_eq!(stats["huawei"]["CreateRecordSet"]["ok"], 2);
    assert_eq!(stats["huawei"]["DeleteRecordSet"]["ok"], 2);
}

// ----- issue 13: KMS keys, the key in use, the restricted API --------------------------------------

const PENDING_DELETION_KEY: &str = "22222222-3333-4444-5555-666666666666";

/// A disabled key (`KMS.0209`) or one pending deletion (`KMS.0210`) is fixed in DEW, not in
/// certkeeper's config: the error is busy, so the engine retries it on a timer instead of
/// parking it, and the message tells the operator which key and what to do.
#[tokio::test]
async fn a_disabled_or_deleted_key_is_retried_on_a_timer_with_advice() {
    let mut seed = seed();
    seed.huawei.pending_deletion_kms_keys = vec![PENDING_DELETION_KEY.into()];
    let sim = start(seed).await;
    let client = sim.aksk_client();
    for (key, code, advice) in [
        (DISABLED_KEY, "KMS.0209", "is disabled: enable it in DEW"),
        (
            PENDING_DELETION_KEY,
            "KMS.0210",
            "is pending deletion: cancel the deletion",
        ),
    ] {
        let policy = policy(client.clone(), PolicyMode::Enforce, INSTANCE, key);
        let error = apply_policy(&policy, INSTANCE, now()).await.unwrap_err();
        assert_eq!((error.class, error.code.as_str()), (ErrorClass::Busy, code));
        assert_eq!(error.http_status, Some(400));
        assert!(error.message.contains(key), "{}", error.message);
        assert!(error.message.contains(advice), "{}", error.message);
        assert!(
            error.message.contains("retried on a timer"),
            "{}",
            error.message
        );
        // The engine's backoff retries busy on a timer; it never parks it.
        for attempt in 1..=20 {
            assert!(
                certkeeper::engine::backoff::next_delay(error.class, attempt).is_some(),
                "{code} attempt {attempt}"
            );
        }
        assert!(certkeeper::cloud::registry::is_known_code("huawei", code));
    }
    assert_eq!(sim.encryption(INSTANCE), "off");
}

/// Where an answer reports the key in use, compliance compares it too: encryption on with
/// another key is a violation that enforce mode corrects.
#[tokio::test]
async fn compliance_compares_the_reported_kms_key() {
    let mut seed = seed();
    seed.huawei.describe_reports_kms_key = true;
    seed.huawei.kms_keys.push(UNKNOWN_KEY.into());
    seed.huawei.gaussdb_instances[0].backup_encryption =
        certkeeper::cloud::huawei::sim::BackupEncryption::On;
    seed.huawei.gaussdb_instances[0].kms_key_id = Some(UNKNOWN_KEY.into());
    let sim = start(seed).await;
    let client = sim.aksk_client();

    let audit = policy(client.clone(), PolicyMode::Audit, INSTANCE, KEY);
    let finding = audit.check(INSTANCE).await.unwrap();
    assert!(!finding.compliant, "{finding:?}");
    assert_eq!(
        finding.observed,
        format!("backup encryption on with KMS key {UNKNOWN_KEY}")
    );
    assert_eq!(
        finding.desired,
        format!("backup encryption on with KMS key {KEY}")
    );

    let enforce = policy(client.clone(), PolicyMode::Enforce, INSTANCE, KEY);
    assert!(matches!(
        apply_policy(&enforce, INSTANCE, now()).await.unwrap(),
        PolicyOutcome::Remediated(_)
    ));
    assert_eq!(
        sim.huawei()["gaussdb_instances"][INSTANCE]["kms_key_id"],
        KEY
    );
    assert!(enforce.check(INSTANCE).await.unwrap().compliant);
    assert_eq!(
        apply_policy(&enforce, INSTANCE, now()).await.unwrap(),
        PolicyOutcome::Compliant
    );
    assert_eq!(sim.writes(), 1);
}

/// The seed marks the API open beta (permission by service ticket). Refused, the policy
/// reports `unsupported` with what to ask Huawei for, and writes nothing.
#[tokio::test]
async fn a_restricted_api_is_unsupported_and_says_what_to_ask_for() {
    let mut seed = seed();
    seed.huawei.backup_encryption_restricted = true;
    let sim = start(seed).await;
    let enforce = policy(sim.aksk_client(), PolicyMode::Enforce, INSTANCE, KEY);
    let error = apply_policy(&enforce, INSTANCE, now()).await.unwrap_err();
    assert_eq!(
        (error.class, error.code.as_str(), error.http_status),
        (ErrorClass::Unsupported, "DBS.200004", Some(403))
    );
    for needed in [
        "service ticket",
        PROJECT,
        "ModifyBackupEncryptStatus",
        "open-beta",
    ] {
        assert!(
            error.message.contains(needed),
            "{needed}: {}",
            error.message
        );
    }
    assert!(error.request_id.is_some());
    assert_eq!(sim.writes(), 0);
}
