//! End-to-end: the real Alibaba client, targets and DNS solver against the in-process
//! simulator over loopback HTTP.

#![cfg(feature = "sim")]

use certkeeper::cert::bundle::testing;
use certkeeper::cert::CertificateBundle;
use certkeeper::cloud::alibaba::cdn::{CdnSettings, CdnTarget};
use certkeeper::cloud::alibaba::client::{default_rate_limits, AlibabaClient};
use certkeeper::cloud::alibaba::dns::AlidnsSolver;
use certkeeper::cloud::alibaba::rds::{RdsSettings, RdsTarget};
use certkeeper::cloud::alibaba::sim::{AccountSeed, RdsSeed, Seed};
use certkeeper::cloud::alibaba::vod::{VodSettings, VodTarget};
use certkeeper::cloud::sim::{serve, SimSeed, Simulator};
use certkeeper::cloud::{DnsSolver, Target};
use certkeeper::config::credentials::{Provider, ResolvedCredentials};
use certkeeper::engine::converge::{converge, Convergence};
use certkeeper::error::ErrorClass;
use certkeeper::retry::RetryPolicy;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

const ID: &str = "LTAIsimulated";
const SECRET: &str = "sim-secret";

struct Sim {
    base: String,
    sim: Arc<Simulator>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Sim {
    async fn start(seed: Seed) -> Self {
        Self::start_full(SimSeed {
            alibaba: seed,
            ..SimSeed::default()
        })
        .await
    }

    async fn start_full(seed: SimSeed) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let sim = Arc::new(Simulator::new(seed));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, sim.clone(), async move {
            let _ = stopped.await;
        }));
        Self {
            base,
            sim,
            _stop: stop,
        }
    }

    fn client_with(
        &self,
        id: &str,
        secret: &str,
        retry: Option<RetryPolicy>,
    ) -> Arc<AlibabaClient> {
        let creds = ResolvedCredentials::new("ali", Provider::Alibaba, id, secret)
            .with_endpoint(&self.base);
        let http = certkeeper::cloud::http::client(Default::default()).unwrap();
        Arc::new(AlibabaClient::new(creds, http, default_rate_limits()).with_retry_policy(retry))
    }

    fn client(&self) -> Arc<AlibabaClient> {
        self.client_with(ID, SECRET, None)
    }

    fn state(&self) -> Value {
        self.sim.state_json()["alibaba"].clone()
    }

    fn count(&self, action: &str, outcome: &str) -> u64 {
        self.sim.stats_json()["alibaba"][action][outcome]
            .as_u64()
            .unwrap_or(0)
    }

    async fn http_json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut request = reqwest::Client::new().request(method, format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }
}

fn seed() -> Seed {
    Seed {
        accounts: vec![AccountSeed {
            access_key_id: ID.into(),
            access_key_secret: SECRET.into(),
        }],
        cdn_domains: vec!["www.example.com".into()],
        vod_domains: vec!["v.example.com".into()],
        dns_zones: vec!["example.com".into(), "sub.example.com".into()],
        rds_instances: vec![
            RdsSeed {
                id: "rm-test1".into(),
                engine: "MySQL".into(),
                connection_string: "rm-test1.mysql.rds.aliyuncs.com".into(),
            },
            RdsSeed {
                id: "pgm-test2".into(),
                engine: "PostgreSQL".into(),
                connection_string: "pgm-test2.pg.rds.aliyuncs.com".into(),
            },
        ],
        rds_ssl_delay_ms: 150,
        ..Seed::default()
    }
}

fn cdn(toml_text: &str) -> CdnSettings {
    toml::from_str(toml_text).unwrap()
}

fn rds(toml_text: &str) -> RdsSettings {
    toml::from_str(toml_text).unwrap()
}

fn mismatched() -> CertificateBundle {
    let mut bundle = testing::fresh(&["www.example.com"]);
    bundle.key_pem = testing::fresh(&["other.example.com"]).key_pem;
    bundle
}

fn expired() -> CertificateBundle {
    let now = time::OffsetDateTime::now_utc();
    testing::self_signed(
        &["www.example.com"],
        now - time::Duration::days(90),
        now - time::Duration::days(1),
    )
}

/// converge twice: deployed and read back, then no write at all.
async fn converges_once(
    target: &dyn Target,
    sim: &Sim,
    bundle: &CertificateBundle,
    state_path: [&str; 2],
    write_action: &str,
) {
    assert_eq!(
        converge(target, bundle).await.unwrap(),
        Convergence::Deployed
    );
    let live = target.observe().await.unwrap();
    assert!(live.serves(bundle));
    let state = &sim.state()[state_path[0]][state_path[1]];
    assert_eq!(state["fingerprint"], bundle.fingerprint(), "{state}");
    assert_eq!(state["ssl"], true);
    assert_eq!(state["writes"], 1);
    let writes_before = sim.count(write_action, "ok");
    assert_eq!(
        converge(target, bundle).await.unwrap(),
        Convergence::AlreadyInSync
    );
    assert_eq!(sim.count(write_action, "ok"), writes_before);
    assert_eq!(sim.state()[state_path[0]][state_path[1]]["writes"], 1);
}

#[tokio::test]
async fn cdn_upload_deploys_reads_back_and_is_idempotent() {
    let sim = Sim::start(seed()).await;
    let target = CdnTarget::new("site", cdn("domain = \"www.example.com\""), sim.client());
    let bundle = testing::fresh(&["www.example.com"]);
    converges_once(
        &target,
        &sim,
        &bundle,
        ["cdn_domains", "www.example.com"],
        "SetCdnDomainSSLCertificate",
    )
    .await;
    let live = target.observe().await.unwrap();
    assert_eq!(live.fingerprint.as_deref(), Some(bundle.fingerprint()));
    // The admin endpoint serves the same dump.
    let state: Value = sim
        .http_json(reqwest::Method::GET, "/__sim/state", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        state["alibaba"]["cdn_domains"]["www.example.com"]["fingerprint"],
        bundle.fingerprint()
    );
}

#[tokio::test]
async fn cdn_legacy_api_deploys() {
    let sim = Sim::start(seed()).await;
    let target = CdnTarget::new(
        "legacy",
        cdn("domain = \"www.example.com\"\napi = \"legacy\""),
        sim.client(),
    );
    let bundle = testing::fresh(&["www.example.com"]);
    converges_once(
        &target,
        &sim,
        &bundle,
        ["cdn_domains", "www.example.com"],
        "SetDomainServerCertificate",
    )
    .await;
    assert_eq!(sim.count("SetCdnDomainSSLCertificate", "ok"), 0);
}

#[tokio::test]
async fn cdn_cas_uploads_once_reuses_and_cleans_up_only_unused() {
    let sim = Sim::start(seed()).await;
    let target = CdnTarget::new(
        "cas",
        cdn("domain = \"www.example.com\"\ncert_type = \"cas\"\ncleanup = true"),
        sim.client(),
    );
    let first = testing::fresh(&["www.example.com"]);
    converges_once(
        &target,
        &sim,
        &first,
        ["cdn_domains", "www.example.com"],
        "SetCdnDomainSSLCertificate",
    )
    .await;
    assert_eq!(sim.count("UploadUserCertificate", "ok"), 1);
    // An identical upload is reused, not uploaded again.
    target.deploy(&first).await.unwrap();
    assert_eq!(sim.count("UploadUserCertificate", "ok"), 1);
    let second = testing::fresh(&["www.example.com"]);
    assert_eq!(
        converge(&target, &second).await.unwrap(),
        Convergence::Deployed
    );
    let certs = sim.state()["cas_certificates"].as_array().unwrap().clone();
    assert_eq!(
        certs.len(),
        1,
        "old upload deleted after cut-over: {certs:?}"
    );
    assert_eq!(certs[0]["fingerprint"], second.fingerprint());
}

#[tokio::test]
async fn vod_deploys_to_staging_and_is_idempotent() {
    let sim = Sim::start(seed()).await;
    let settings: VodSettings =
        toml::from_str("domain = \"v.example.com\"\nenv = \"staging\"").unwrap();
    let target = VodTarget::new("vod", settings, sim.client());
    let bundle = testing::fresh(&["v.example.com"]);
    converges_once(
        &target,
        &sim,
        &bundle,
        ["vod_domains", "v.example.com"],
        "SetVodDomainSSLCertificate",
    )
    .await;
    assert_eq!(
        sim.state()["vod_domains"]["v.example.com"]["env"],
        "staging"
    );
}

#[tokio::test]
async fn rds_mysql_waits_for_running_and_is_idempotent() {
    let sim = Sim::start(Seed {
        rds_ssl_delay_ms: 600,
        ..seed()
    })
    .await;
    let settings = rds("instance_id = \"rm-test1\"\nconnection_string = \"rm-test1.mysql.rds.aliyuncs.com\"\npoll_interval_secs = 0.05");
    let target = RdsTarget::new("db", settings, sim.client());
    let bundle = testing::fresh(&["rm-test1.mysql.rds.aliyuncs.com"]);
    converges_once(
        &target,
        &sim,
        &bundle,
        ["rds_instances", "rm-test1"],
        "ModifyDBInstanceSSL",
    )
    .await;
    assert_eq!(
        sim.state()["rds_instances"]["rm-test1"]["status"],
        "Running"
    );
    // Polled through the SSL-modifying phase.
    assert!(sim.count("DescribeDBInstanceAttribute", "ok") >= 3);
}

#[tokio::test]
async fn rds_postgres_with_client_ca_and_busy_instance() {
    let sim = Sim::start(Seed {
        rds_ssl_delay_ms: 5000,
        ..seed()
    })
    .await;
    let ca = testing::fresh(&["client-ca.example.com"]);
    let settings = rds(&format!(
        "instance_id = \"pgm-test2\"\nconnection_string = \"pgm-test2.pg.rds.aliyuncs.com\"\nclient_ca_cert = '''{}'''\nacl = \"verify-ca\"\npoll_interval_secs = 0.1",
        ca.leaf_pem
    ));
    let mut issues = Vec::new();
    settings.validate("target[0]", &mut issues);
    assert!(issues.is_empty(), "{issues:?}");
    let client = sim.client();
    let target = RdsTarget::new("pg", settings.clone(), client.clone());
    let bundle = testing::fresh(&["pgm-test2.pg.rds.aliyuncs.com"]);
    assert_eq!(
        converge(&target, &bundle).await.unwrap(),
        Convergence::Deployed
    );
    let live = target.observe().await.unwrap();
    assert_eq!(live.fingerprint.as_deref(), Some(bundle.fingerprint()));
    assert_eq!(sim.state()["rds_instances"]["pgm-test2"]["client_ca"], true);
    // A direct call while the instance applies a change is refused as busy.
    let other = testing::fresh(&["pgm-test2.pg.rds.aliyuncs.com"]);
    let racing = RdsTarget::new("pg2", settings, client.clone());
    let first = tokio::spawn({
        let other = other.clone();
        let client = client.clone();
        async move {
            let settings = rds("instance_id = \"pgm-test2\"\nconnection_string = \"pgm-test2.pg.rds.aliyuncs.com\"\npoll_interval_secs = 0.1");
            RdsTarget::new("pg3", settings, client).deploy(&other).await
        }
    });
    // Wait (generously) until the simulator shows the change in progress.
    let deadline = Instant::now() + Duration::from_secs(30);
    while sim.state()["rds_instances"]["pgm-test2"]["status"] != "SSLModifying" {
        assert!(
            Instant::now() < deadline,
            "instance never started modifying"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let params = [
        ("DBInstanceId", "pgm-test2".to_owned()),
        (
            "ConnectionString",
            "pgm-test2.pg.rds.aliyuncs.com".to_owned(),
        ),
        ("SSLEnabled", "0".to_owned()),
    ];
    let busy = client
        .call(
            certkeeper::cloud::alibaba::Product::Rds,
            "ModifyDBInstanceSSL",
            &params,
        )
        .await
        .unwrap_err();
    assert_eq!(busy.code, "IncorrectDBSslStatus");
    assert_eq!(busy.class, ErrorClass::Busy);
    let refused = racing.deploy(&other).await.unwrap_err();
    assert_eq!(refused.class, ErrorClass::Busy);
    first.await.unwrap().unwrap();
}

#[tokio::test]
async fn rejected_certificates_give_vendor_codes_and_store_nothing() {
    let sim = Sim::start(seed()).await;
    let client = sim.client();
    let cdn_target = CdnTarget::new("c", cdn("domain = \"www.example.com\""), client.clone());
    let vod_target = VodTarget::new(
        "v",
        toml::from_str("domain = \"v.example.com\"").unwrap(),
        client.clone(),
    );
    let rds_target = RdsTarget::new(
        "r",
        rds("instance_id = \"rm-test1\"\nconnection_string = \"rm-test1.mysql.rds.aliyuncs.com\""),
        client.clone(),
    );
    let cases: Vec<(&dyn Target, CertificateBundle, &str, ErrorClass)> = vec![
        (
            &cdn_target,
            mismatched(),
            "Certificate.MissMatch",
            ErrorClass::Invalid,
        ),
        (
            &cdn_target,
            expired(),
            "Certificate.Expired",
            ErrorClass::Invalid,
        ),
        (
            &vod_target,
            mismatched(),
            "Certificate.MissMatch",
            ErrorClass::Invalid,
        ),
        (
            &vod_target,
            expired(),
            "Certificate.Expired",
            ErrorClass::Invalid,
        ),
        (
            &rds_target,
            mismatched(),
            "InvalidServerCertOrPrivateKey",
            ErrorClass::Invalid,
        ),
    ];
    for (target, bundle, code, class) in cases {
        let error = converge(target, &bundle).await.unwrap_err();
        assert_eq!(
            (error.code.as_str(), error.class),
            (code, class),
            "{}: {error}",
            target.kind()
        );
        assert!(error.request_id.is_some());
    }
    let unknown_cdn = CdnTarget::new("u", cdn("domain = \"nope.example.com\""), client.clone());
    let unknown_vod = VodTarget::new(
        "u",
        toml::from_str("domain = \"nope.example.com\"").unwrap(),
        client.clone(),
    );
    let unknown_rds = RdsTarget::new(
        "u",
        rds("instance_id = \"rm-nope\"\nconnection_string = \"rm-nope.mysql.rds.aliyuncs.com\""),
        client.clone(),
    );
    let bundle = testing::fresh(&["nope.example.com"]);
    for (target, code) in [
        (&unknown_cdn as &dyn Target, "InvalidDomain.NotFound"),
        (&unknown_vod, "InvalidDomain.NotFound"),
        (&unknown_rds, "InvalidDBInstanceId.NotFound"),
    ] {
        let error = target.deploy(&bundle).await.unwrap_err();
        assert_eq!(
            (error.code.as_str(), error.class),
            (code, ErrorClass::NotFound)
        );
    }
    let state = sim.state();
    for (kind, name) in [
        ("cdn_domains", "www.example.com"),
        ("vod_domains", "v.example.com"),
        ("rds_instances", "rm-test1"),
    ] {
        assert_eq!(state[kind][name]["writes"], 0, "{kind}");
        assert_eq!(state[kind][name]["fingerprint"], Value::Null, "{kind}");
    }
}

#[tokio::test]
async fn bad_credentials_are_auth_errors() {
    let sim = Sim::start(seed()).await;
    let target = CdnTarget::new(
        "c",
        cdn("domain = \"www.example.com\""),
        sim.client_with(ID, "wrong", None),
    );
    let error = target.observe().await.unwrap_err();
    assert_eq!(
        (error.code.as_str(), error.class),
        ("SignatureDoesNotMatch", ErrorClass::Auth)
    );
    let target = CdnTarget::new(
        "c",
        cdn("domain = \"www.example.com\""),
        sim.client_with("LTAIunknown", SECRET, None),
    );
    let error = target.observe().await.unwrap_err();
    assert_eq!(
        (error.code.as_str(), error.class),
        ("InvalidAccessKeyId.NotFound", ErrorClass::Auth)
    );
    assert!(!error.to_string().contains(SECRET));
}

#[tokio::test]
async fn alidns_solver_presents_dedups_and_cleans_up() {
    let sim = Sim::start(seed()).await;
    let solver = AlidnsSolver::new(sim.client());
    let record = solver
        .present("_acme-challenge.www.sub.example.com", "token-1")
        .await
        .unwrap();
    assert_eq!(record.zone, "sub.example.com");
    let records = sim.state()["dns_zones"]["sub.example.com"].clone();
    assert_eq!(records[0]["rr"], "_acme-challenge.www");
    assert_eq!(records[0]["value"], "token-1");
    // The same record again is a duplicate, treated as present.
    let again = solver
        .present("_acme-challenge.www.sub.example.com", "token-1")
        .await
        .unwrap();
    assert_eq!(again.record_id, record.record_id);
    assert_eq!(sim.count("AddDomainRecord", "DomainRecordDuplicate"), 1);
    solver.cleanup(&record).await.unwrap();
    assert_eq!(
        sim.state()["dns_zones"]["sub.example.com"],
        serde_json::json!([])
    );
    solver.cleanup(&record).await.unwrap();
    let error = solver
        .present("_acme-challenge.example.org", "x")
        .await
        .unwrap_err();
    assert_eq!(error.class, ErrorClass::NotFound);
}

#[tokio::test]
async fn throttled_call_waits_the_retry_after() {
    let sim = Sim::start(Seed {
        throttle_retry_after_ms: 400,
        ..seed()
    })
    .await;
    let response = sim
        .http_json(
            reqwest::Method::POST,
            "/__sim/faults",
            Some(
                serde_json::json!({"vendor": "alibaba", "action": "DescribeDomainCertificateInfo",
                "status": 400, "code": "Throttling.User", "message": "flow control", "count": 1}),
            ),
        )
        .await;
    assert!(response.status().is_success());
    let retry = RetryPolicy {
        max_attempts: 3,
        ..RetryPolicy::default()
    };
    let target = CdnTarget::new(
        "c",
        cdn("domain = \"www.example.com\""),
        sim.client_with(ID, SECRET, Some(retry)),
    );
    let started = Instant::now();
    let live = target.observe().await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    assert!(!live.ssl_enabled);
    assert_eq!(
        sim.count("DescribeDomainCertificateInfo", "Throttling.User"),
        1
    );
    assert_eq!(sim.count("DescribeDomainCertificateInfo", "ok"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_deploys_stay_under_the_limit() {
    let sim = Sim::start(seed()).await;
    let client = sim.client();
    let bundle = testing::fresh(&["www.example.com"]);
    let mut tasks = Vec::new();
    for i in 0..300 {
        let client = client.clone();
        let bundle = bundle.clone();
        tasks.push(tokio::spawn(async move {
            CdnTarget::new(format!("t{i}"), cdn("domain = \"www.example.com\""), client)
                .deploy(&bundle)
                .await
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert_eq!(sim.count("SetCdnDomainSSLCertificate", "ok"), 300);
    assert_eq!(
        sim.count("SetCdnDomainSSLCertificate", "Throttling.User"),
        0
    );
    // Without the client's shaping the simulator does throttle.
    let mut seen_throttle = false;
    let limiter_free = Arc::new(
        AlibabaClient::new(
            ResolvedCredentials::new("ali", Provider::Alibaba, ID, SECRET).with_endpoint(&sim.base),
            certkeeper::cloud::http::client(Default::default()).unwrap(),
            certkeeper::ratelimit::RateLimits::from_defaults(&[(
                "SetCdnDomainSSLCertificate",
                10_000.0,
            )]),
        )
        .with_retry_policy(None),
    );
    let mut tasks = Vec::new();
    for _ in 0..60 {
        let client = limiter_free.clone();
        let bundle = bundle.clone();
        tasks.push(tokio::spawn(async move {
            CdnTarget::new("x", cdn("domain = \"www.example.com\""), client)
                .deploy(&bundle)
                .await
        }));
    }
    for task in tasks {
        if let Err(error) = task.await.unwrap() {
            assert_eq!(error.class, ErrorClass::Throttled);
            assert!(error.retry_after.is_some());
            seen_throttle = true;
        }
    }
    assert!(seen_throttle);
}

fn vector_cases() -> Vec<Value> {
    let mut cases = Vec::new();
    for file in ["alibaba_acs3.json", "alibaba_rpc_v1.json"] {
        let path = format!(
            "{}/tests/fixtures/vectors/{file}",
            env!("CARGO_MANIFEST_DIR")
        );
        let list: Vec<Value> =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        cases.extend(list);
    }
    cases
}

async fn replay(sim: &Sim, case: &Value) -> (u16, String) {
    let raw = &case["raw_request"];
    let url = format!("{}{}", sim.base, raw["target"].as_str().unwrap());
    let mut request = reqwest::Client::new()
        .request(raw["method"].as_str().unwrap().parse().unwrap(), url)
        .body(raw["body"].as_str().unwrap().to_owned());
    for pair in raw["headers"].as_array().unwrap() {
        let name = pair[0].as_str().unwrap();
        if matches!(
            name.to_ascii_lowercase().as_str(),
            "content-length" | "connection"
        ) {
            continue;
        }
        request = request.header(name, pair[1].as_str().unwrap());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (status, body["Code"].as_str().unwrap_or("").to_owned())
}

#[tokio::test]
async fn official_sdk_requests_replayed_are_accepted_and_refused_with_another_secret() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/config/sim-seed.example.toml"
    ))
    .unwrap();
    let mut example = SimSeed::from_toml(&text).unwrap();
    // The recorded requests are old and share one nonce: skip those checks for this replay.
    example.alibaba.check_timestamp = false;
    let sim = Sim::start_full(example.clone()).await;
    let cases = vector_cases();
    assert_eq!(cases.len(), 15);
    let auth_codes = [
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId.NotFound",
        "IncompleteSignature",
        "MissingParameter",
        "InvalidTimeStamp.Expired",
        "SignatureNonceUsed",
    ];
    for case in &cases {
        let (status, code) = replay(&sim, case).await;
        assert!(
            !auth_codes.contains(&code.as_str()),
            "{}: {status} {code}",
            case["name"]
        );
    }
    // The DNS vectors really created records; the fake PEMs were refused as certificates.
    assert!(sim.count("AddDomainRecord", "ok") >= 1);
    assert!(sim.count("SetCdnDomainSSLCertificate", "InvalidSSLPub") >= 1);

    example.alibaba.accounts[0].access_key_secret = "notTheSecret".into();
    let wrong = Sim::start_full(example).await;
    for case in &cases {
        let (_, code) = replay(&wrong, case).await;
        assert_eq!(code, "SignatureDoesNotMatch", "{}", case["name"]);
    }
}

#[tokio::test]
async fn skew_and_nonce_reuse_are_refused() {
    let cases = vector_cases();
    let mut seed = seed();
    seed.accounts.push(AccountSeed {
        access_key_id: "testAccessKeyId".into(),
        access_key_secret: "testAccessKeySecret".into(),
    });
    let old = Sim::start(seed).await;
    let (_, code) = replay(&old, &cases[1]).await;
    assert_eq!(code, "InvalidTimeStamp.Expired");
    // Nonce reuse: our client sends a fresh nonce each time, so send one recorded request
    // twice under a skew limit wide enough to accept its old timestamp.
    let lenient = Sim::start(Seed {
        accounts: vec![AccountSeed {
            access_key_id: "testAccessKeyId".into(),
            access_key_secret: "testAccessKeySecret".into(),
        }],
        max_clock_skew_secs: u64::MAX / 4,
        ..Seed::default()
    })
    .await;
    let (_, first) = replay(&lenient, &cases[7]).await;
    assert_ne!(first, "SignatureNonceUsed");
    let (_, second) = replay(&lenient, &cases[7]).await;
    assert_eq!(second, "SignatureNonceUsed");
}

#[tokio::test]
async fn tampered_requests_are_refused() {
    let sim = Sim::start(Seed {
        accounts: vec![AccountSeed {
            access_key_id: "testAccessKeyId".into(),
            access_key_secret: "testAccessKeySecret".into(),
        }],
        check_timestamp: false,
        cdn_domains: vec!["www.example.com".into(), "evil.example.com".into()],
        ..Seed::default()
    })
    .await;
    let original = vector_cases()[1].clone();
    // A changed parameter breaks the signature.
    let mut changed = original.clone();
    let target = changed["raw_request"]["target"]
        .as_str()
        .unwrap()
        .replace("DomainName=www.example.com", "DomainName=evil.example.com");
    changed["raw_request"]["target"] = Value::String(target);
    assert_eq!(replay(&sim, &changed).await.1, "SignatureDoesNotMatch");
    // A changed signed header too.
    let mut changed = original.clone();
    for pair in changed["raw_request"]["headers"].as_array_mut().unwrap() {
        if pair[0] == "x-acs-version" {
            pair[1] = Value::String("2014-11-11".into());
        }
    }
    assert_eq!(replay(&sim, &changed).await.1, "SignatureDoesNotMatch");
    // Leaving the host out of the signed headers is refused before any signature check.
    let mut changed = original.clone();
    for pair in changed["raw_request"]["headers"].as_array_mut().unwrap() {
        if pair[0] == "Authorization" {
            let value = pair[1].as_str().unwrap().replace("accept;host;", "accept;");
            pair[1] = Value::String(value);
        }
    }
    assert_eq!(replay(&sim, &changed).await.1, "IncompleteSignature");
    // The untouched request still passes the signature check.
    assert_eq!(replay(&sim, &original).await.1, "InvalidSSLPub");
    let state = sim.state();
    assert_eq!(state["cdn_domains"]["evil.example.com"]["writes"], 0);
}

#[tokio::test]
async fn rds_waits_for_its_maintenance_window() {
    let sim = Sim::start(seed()).await;
    let settings = rds("instance_id = \"rm-test1\"\nconnection_string = \"rm-test1.mysql.rds.aliyuncs.com\"\npoll_interval_secs = 0.05");
    let bundle = testing::fresh(&["rm-test1.mysql.rds.aliyuncs.com"]);
    // A one-minute window twelve hours away is closed now.
    let later = time::OffsetDateTime::now_utc() + time::Duration::hours(12);
    let closed = certkeeper::window::MaintenanceWindow::new(
        &format!("{} {} * * *", later.minute(), later.hour()),
        Duration::from_secs(60),
    )
    .unwrap();
    let target =
        RdsTarget::new("db", settings.clone(), sim.client()).with_maintenance_window(Some(closed));
    let error = converge(&target, &bundle).await.unwrap_err();
    assert_eq!(
        (error.code.as_str(), error.class),
        ("OutsideMaintenanceWindow", ErrorClass::Busy)
    );
    assert_eq!(sim.count("ModifyDBInstanceSSL", "ok"), 0);
    // An always-open window lets it through.
    let open =
        certkeeper::window::MaintenanceWindow::new("* * * * *", Duration::from_secs(120)).unwrap();
    let target = RdsTarget::new("db", settings, sim.client()).with_maintenance_window(Some(open));
    assert_eq!(
        converge(&target, &bundle).await.unwrap(),
        Convergence::Deployed
    );
}

/// What our client sends (every parameter, PEM key included, in a signed form body) is
/// accepted; a form body whose `content-type` is left out of the signature is refused, as the
/// V3 doc requires every present common header (and `content-type` when there is a body) to
/// be signed.
#[tokio::test]
async fn form_body_calls_are_accepted_only_with_content_type_signed() {
    use certkeeper::cloud::alibaba::client::{now_acs_date, Product};
    use certkeeper::cloud::alibaba::signer::{
        form_encode, sign_acs3, Acs3Call, CanonicalRequest, FORM_CONTENT_TYPE,
    };
    use sha2::{Digest, Sha256};
    let sim = Sim::start(seed()).await;
    let answer = sim
        .client()
        .call(
            Product::Cdn,
            "DescribeDomainCertificateInfo",
            &[("DomainName", "www.example.com".to_owned())],
        )
        .await
        .unwrap();
    assert!(answer["RequestId"].is_string(), "{answer}");

    let params = vec![("DomainName".to_owned(), "www.example.com".to_owned())];
    let date = now_acs_date();
    let host = sim.base.trim_start_matches("http://").to_owned();
    let call = Acs3Call {
        host: &host,
        action: "DescribeDomainCertificateInfo",
        version: Product::Cdn.version(),
        params: &params,
        date: &date,
        nonce: "form-unsigned-content-type",
    };
    let body = form_encode(&params);
    // Signed headers without content-type (the hash still covers the body).
    let mut signed = call.form_signed_headers(&body);
    signed.retain(|(name, _)| name != "content-type");
    let canonical = CanonicalRequest::new(
        "POST",
        Vec::new(),
        &signed,
        &hex::encode(Sha256::digest(body.as_bytes())),
    );
    let authorization = sign_acs3(ID, SECRET, &canonical);
    let mut request = reqwest::Client::new()
        .post(format!("{}/", sim.base))
        .header("content-type", FORM_CONTENT_TYPE)
        .header("authorization", authorization.to_string())
        .body(body);
    for (name, value) in signed.iter().filter(|(name, _)| name != "host") {
        request = request.header(name.as_str(), value.as_str());
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let refusal: Value = response.json().await.unwrap();
    assert_eq!(refusal["Code"], "IncompleteSignature", "{refusal}");
}

#[tokio::test]
async fn the_client_stamps_each_request_from_its_injected_clock() {
    let sim = Sim::start(seed()).await;
    let creds =
        ResolvedCredentials::new("ali", Provider::Alibaba, ID, SECRET).with_endpoint(&sim.base);
    let http = certkeeper::cloud::http::client(Default::default()).unwrap();
    let hour_behind =
        AlibabaClient::new(creds, http, default_rate_limits()).with_clock(Arc::new(|| {
            time::OffsetDateTime::now_utc() - time::Duration::hours(1)
        }));
    let target = CdnTarget::new(
        "c",
        cdn("domain = \"www.example.com\""),
        Arc::new(hour_behind),
    );
    let skewed = target.observe().await.unwrap_err();
    assert_eq!(skewed.code, "InvalidTimeStamp.Expired", "{skewed}");
    // The same call on the real clock is answered.
    let on_time = CdnTarget::new("c", cdn("domain = \"www.example.com\""), sim.client());
    on_time.observe().await.unwrap();
}
