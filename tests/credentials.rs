//! Production credentials against the simulator: a daemon whose accounts use every
//! temporary kind (Alibaba `ram_role_arn`, `ecs_ram_role`, `oidc_role_arn` from the RRSA
//! environment variables; Huawei `ecs_metadata`, `iam_temporary`) and re-read secret files
//! (QingCloud) rolls out several times while the simulator's keys live three seconds, with
//! an expired-token refusal injected on each vendor: no failed deploy, no `auth` error.
//! A secret file replaced under a running daemon is used by the next call, without SIGHUP.

#![cfg(feature = "sim")]

mod support;

use certkeeper::cloud::sim::FaultRule;
use certkeeper::store::StateStore;
use std::path::Path;
use std::time::{Duration, Instant};
use support::{free_port, http_get, spawn_daemon, start_sim, status_json, ChildGuard};

const SOURCE_SECRET: &str = "creds-source-secret-K8q";
const HUAWEI_PASSWORD: &str = "creds-huawei-password-P2w";
const QINGCLOUD_SECRET: &str = "creds-qingcloud-secret-T5n";
const OIDC_TOKEN: &str = "eyJoidc-token-of-the-pod";
const ROLE: &str = "acs:ram::1234567890123456:role/certkeeper";
const OIDC_PROVIDER: &str = "acs:ram::1234567890123456:oidc-provider/ack-rrsa";
const PROJECT: &str = "0123456789abcdef0123456789abcdef";
const GAUSSDB_META: &str = "a1b2c3d4e5f64a7b8c9d0e1f2a3b4c5din07";
const GAUSSDB_IAM: &str = "b1b2c3d4e5f64a7b8c9d0e1f2a3b4c5din07";
const KMS_KEY: &str = "5f6a7b8c-1d2e-4f30-9a8b-7c6d5e4f3a2b";
const CLUSTER: &str = "cl-creds1";
/// How long the simulator's temporary keys live.
const LIFETIME_SECONDS: u64 = 3;

fn seed() -> String {
    format!(
        r#"
[alibaba]
cdn_domains = ["ram.example.com", "ecs.example.com", "oidc.example.com"]

[[alibaba.accounts]]
access_key_id = "LTAIsource"
access_key_secret = "{SOURCE_SECRET}"

[alibaba.sts]
token_lifetime_secs = {LIFETIME_SECONDS}
roles = ["{ROLE}"]
ecs_role_name = "certkeeper-instance"

[[alibaba.sts.oidc_providers]]
arn = "{OIDC_PROVIDER}"
tokens = ["{OIDC_TOKEN}"]

[huawei]
kms_keys = ["{KMS_KEY}"]

[huawei.temporary]
lifetime_seconds = {LIFETIME_SECONDS}

[[huawei.users]]
domain = "creds-domain"
name = "deployer"
password = "{HUAWEI_PASSWORD}"
project_id = "{PROJECT}"

[[huawei.gaussdb_instances]]
id = "{GAUSSDB_META}"
backup_encryption = "off"
project_id = "{PROJECT}"

[[huawei.gaussdb_instances]]
id = "{GAUSSDB_IAM}"
backup_encryption = "off"
project_id = "{PROJECT}"

[qingcloud]
job_phase_ms = 100

[[qingcloud.accounts]]
access_key_id = "QYCREDS"
secret_access_key = "{QINGCLOUD_SECRET}"

[[qingcloud.mysql_plus_clusters]]
id = "{CLUSTER}"
zone = "pek3"
ssl = false
"#
    )
}

fn config(sim: &str, directory: &Path, metrics_port: u16) -> String {
    format!(
        r#"
[daemon]
state_dir = "{state}"
metrics_listen = "127.0.0.1:{metrics_port}"
scan_schedule = "* * * * * *"

[credentials.ali-ram]
provider = "alibaba"
type = "ram_role_arn"
access_key_id = "LTAIsource"
access_key_secret_env = "CREDS_SOURCE_SECRET"
role_arn = "{ROLE}"
endpoint = "{sim}"

[credentials.ali-ecs]
provider = "alibaba"
type = "ecs_ram_role"
metadata_endpoint = "{sim}"
endpoint = "{sim}"

[credentials.ali-oidc]
provider = "alibaba"
type = "oidc_role_arn"
role_session_name = "certkeeper-pod"
endpoint = "{sim}"

[credentials.hw-meta]
provider = "huawei"
type = "ecs_metadata"
metadata_endpoint = "{sim}"
region = "cn-north-4"
project_id = "{PROJECT}"
endpoint = "{sim}"

[credentials.hw-iam]
provider = "huawei"
type = "iam_temporary"
domain_name = "creds-domain"
user_name = "deployer"
password_env = "CREDS_HUAWEI_PASSWORD"
region = "cn-north-4"
project_id = "{PROJECT}"
endpoint = "{sim}"

[credentials.qc]
provider = "qingcloud"
access_key_id = "QYCREDS"
access_key_secret_file = "{qc_secret}"
zone = "pek3"
endpoint = "{sim}"

[local_ca.internal]
leaf_lifetime = "30d"

[[certificate]]
name = "www"
domains = ["ram.example.com", "ecs.example.com", "oidc.example.com"]
source = {{ local_ca = "internal" }}
deploy_to = ["cdn-ram", "cdn-ecs", "cdn-oidc"]

[[target]]
name = "cdn-ram"
kind = "alibaba-cdn"
credentials = "ali-ram"
domain = "ram.example.com"

[[target]]
name = "cdn-ecs"
kind = "alibaba-cdn"
credentials = "ali-ecs"
domain = "ecs.example.com"

[[target]]
name = "cdn-oidc"
kind = "alibaba-cdn"
credentials = "ali-oidc"
domain = "oidc.example.com"

[[policy]]
name = "gaussdb-meta"
kind = "huawei-gaussdb-backup-encryption"
credentials = "hw-meta"
resources = ["{GAUSSDB_META}"]
mode = "enforce"
desired = "on"
kms_key_id = "{KMS_KEY}"

[[policy]]
name = "gaussdb-iam"
kind = "huawei-gaussdb-backup-encryption"
credentials = "hw-iam"
resources = ["{GAUSSDB_IAM}"]
mode = "enforce"
desired = "on"
kms_key_id = "{KMS_KEY}"

[[policy]]
name = "mysql-plus-ssl"
kind = "qingcloud-mysql-plus-ssl"
credentials = "qc"
resources = ["{CLUSTER}"]
mode = "enforce"
ssl = true
job_poll = {{ interval = "1s", max_interval = "1s", deadline = "1m" }}
"#,
        state = directory.join("state").display(),
        qc_secret = directory.join("qc-secret").display(),
    )
}

fn expired_token(vendor: &str, action: &str, status: u16, code: &str) -> FaultRule {
    FaultRule {
        vendor: vendor.into(),
        action: Some(action.into()),
        status,
        code: Some(code.into()),
        message: Some("Specified SecurityToken is expired.".into()),
        count: Some(1),
        probability: None,
        delay_ms: None,
    }
}

fn converged(view: &serde_json::Value) -> bool {
    let targets = view["targets"].as_array().is_some_and(|targets| {
        targets.len() == 3 && targets.iter().all(|target| target["in_sync"] == true)
    });
    let policies = view["policies"].as_array().is_some_and(|policies| {
        policies.len() == 3 && policies.iter().all(|policy| policy["compliant"] == true)
    });
    targets && policies
}

fn issued(sim: &support::Sim) -> (u64, u64) {
    let state = sim.simulator.state_json();
    (
        state["alibaba"]["sts_keys_issued"].as_u64().unwrap_or(0),
        state["huawei"]["temporary_keys_issued"]
            .as_u64()
            .unwrap_or(0),
    )
}

/// Polls until `check` holds, sending SIGHUP every few seconds (a reload also runs the
/// scans and policy checks at once); panics with `what` and the status after `timeout`.
fn converge(daemon: &ChildGuard, config: &Path, timeout: Duration, what: &str) {
    let deadline = Instant::now() + timeout;
    let mut last_hup = Instant::now();
    while !converged(&status_json(config)) {
        assert!(
            Instant::now() < deadline,
            "{what}: no convergence: {:#}",
            status_json(config)
        );
        if last_hup.elapsed() > Duration::from_secs(3) {
            daemon.signal("HUP");
            last_hup = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn every_kind_rolls_out_while_its_tokens_expire() {
    let sim = start_sim(&seed());
    // One expired-token refusal per vendor, on a write: the client refreshes and retries.
    sim.simulator.add_faults(vec![
        expired_token(
            "alibaba",
            "SetCdnDomainSSLCertificate",
            400,
            "InvalidSecurityToken.Expired",
        ),
        expired_token("huawei", "ModifyBackupEncryptStatus", 401, "APIGW.0301"),
    ]);
    let directory = tempfile::tempdir().unwrap();
    let config_path = directory.path().join("certkeeper.toml");
    let metrics_port = free_port();
    std::fs::write(
        &config_path,
        config(&sim.url, directory.path(), metrics_port),
    )
    .unwrap();
    std::fs::write(directory.path().join("qc-secret"), QINGCLOUD_SECRET).unwrap();
    let token_file = directory.path().join("oidc-token");
    std::fs::write(&token_file, OIDC_TOKEN).unwrap();
    let daemon = spawn_daemon(
        &config_path,
        &[
            ("CREDS_SOURCE_SECRET", SOURCE_SECRET),
            ("CREDS_HUAWEI_PASSWORD", HUAWEI_PASSWORD),
            ("ALIBABA_CLOUD_ROLE_ARN", ROLE),
            ("ALIBABA_CLOUD_OIDC_PROVIDER_ARN", OIDC_PROVIDER),
            (
                "ALIBABA_CLOUD_OIDC_TOKEN_FILE",
                token_file.to_str().unwrap(),
            ),
        ],
    );
    converge(
        &daemon,
        &config_path,
        Duration::from_secs(120),
        "first rollout",
    );
    let started = Instant::now();
    let first = issued(&sim);

    // Three more rollouts, each after the keys in use expired at least once more.
    for round in 1..=3 {
        let before = issued(&sim);
        let deadline = Instant::now() + Duration::from_secs(60);
        // Two refreshes per account: each lives past at least one key's end of life.
        while issued(&sim).0 < before.0 + 6 || issued(&sim).1 < before.1 + 4 {
            assert!(Instant::now() < deadline, "round {round}: no refresh");
            std::thread::sleep(Duration::from_millis(200));
        }
        let renewed = support::certkeeper(&config_path, &["renew", "www"], &[]);
        assert!(
            renewed.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&renewed.stderr)
        );
        converge(&daemon, &config_path, Duration::from_secs(60), "a renewal");
    }
    assert!(
        started.elapsed() > Duration::from_secs(LIFETIME_SECONDS * 3),
        "the run outlived several key lifetimes"
    );
    let last = issued(&sim);
    assert!(last.0 >= first.0 + 18 && last.1 >= first.1 + 12, "{last:?}");

    // The injected refusals were met, and each was answered by a retry that succeeded.
    let stats = sim.simulator.stats_json();
    assert_eq!(
        stats["alibaba"]["SetCdnDomainSSLCertificate"]["InvalidSecurityToken.Expired"], 1,
        "{stats}"
    );
    assert_eq!(
        stats["huawei"]["ModifyBackupEncryptStatus"]["APIGW.0301"], 1,
        "{stats}"
    );
    // Every kind fetched its keys from its own service.
    for (vendor, action) in [
        ("alibaba", "AssumeRole"),
        ("alibaba", "AssumeRoleWithOIDC"),
        ("alibaba", "InstanceMetadata"),
        ("huawei", "ShowMetadataSecurityKey"),
        ("huawei", "CreateTemporaryAccessKeyByToken"),
    ] {
        assert!(
            stats[vendor][action]["ok"].as_u64().unwrap_or(0) >= 2,
            "{vendor} {action}: {stats}"
        );
    }

    // What the operator sees: every version deployed, nothing failed, no auth error.
    let (_, metrics) = http_get(metrics_port, "/metrics").unwrap();
    // Every series naming the auth class (error counters, retry gauges) stays at zero, and
    // no object has an auth `last_error_info`.
    let auth: Vec<&str> = metrics
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| line.contains("class=\"auth\"") || line.contains("outcome=\"auth\""))
        .filter(|line| line.contains("_last_error_info") || !line.ends_with(" 0"))
        .collect();
    assert!(auth.is_empty(), "an auth error was reported: {auth:#?}");
    assert!(metrics.contains("certkeeper_target_in_sync"), "{metrics}");
    drop(daemon);
    let store =
        certkeeper::store::sqlite::SqliteStore::open(&directory.path().join("state")).unwrap();
    let events = store.tail_events(100_000).unwrap();
    let succeeded = events
        .iter()
        .filter(|event| event.kind == "deploy.succeeded")
        .count();
    assert!(
        succeeded >= 12,
        "four rollouts to three targets: {events:?}"
    );
    let failed: Vec<_> = events
        .iter()
        .filter(|event| event.kind.ends_with(".failed"))
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
}

#[test]
fn a_replaced_secret_file_is_used_by_the_next_call() {
    let sim = start_sim(
        r#"
[alibaba]
cdn_domains = ["www.example.com"]

[[alibaba.accounts]]
access_key_id = "LTAIfile"
access_key_secret = "right-secret-R1"
"#,
    );
    let directory = tempfile::tempdir().unwrap();
    let config_path = directory.path().join("certkeeper.toml");
    let secret_path = directory.path().join("ali-secret");
    std::fs::write(&secret_path, "right-secret-R1\n").unwrap();
    std::fs::write(
        &config_path,
        format!(
            r#"
[daemon]
state_dir = "{state}"
metrics_listen = "127.0.0.1:{metrics_port}"
scan_schedule = "* * * * * *"

[credentials.ali]
provider = "alibaba"
access_key_id = "LTAIfile"
access_key_secret_file = "{secret}"
endpoint = "{sim}"

[local_ca.internal]
leaf_lifetime = "30d"

[[certificate]]
name = "www"
domains = ["www.example.com"]
source = {{ local_ca = "internal" }}
deploy_to = ["cdn"]

[[target]]
name = "cdn"
kind = "alibaba-cdn"
credentials = "ali"
domain = "www.example.com"
"#,
            state = directory.path().join("state").display(),
            secret = secret_path.display(),
            sim = sim.url,
            metrics_port = free_port(),
        ),
    )
    .unwrap();
    let _daemon = spawn_daemon(&config_path, &[]);
    let in_sync = |view: serde_json::Value| view["targets"][0]["in_sync"] == true;
    support::wait_for("the first rollout", Duration::from_secs(60), || {
        in_sync(status_json(&config_path))
    });
    let count = |outcome: &str| {
        sim.simulator.stats_json()["alibaba"]["DescribeDomainCertificateInfo"][outcome]
            .as_u64()
            .unwrap_or(0)
    };
    // Replaced the way operators and config managers do it: written aside, renamed over.
    let replace = |text: &str| {
        let aside = directory.path().join("ali-secret.new");
        std::fs::write(&aside, text).unwrap();
        std::fs::rename(&aside, &secret_path).unwrap();
    };
    // A wrong secret is used by the next scan (refused), without SIGHUP...
    replace("wrong-secret-W2\n");
    support::wait_for(
        "a call signed with the new file",
        Duration::from_secs(30),
        || count("SignatureDoesNotMatch") >= 1,
    );
    // ...and so is the right one put back: the refused target is parked (an operator must
    // act), and `certkeeper deploy` is that act; it signs with the restored file.
    replace("right-secret-R1\n");
    let ok_before = count("ok");
    let deployed = support::certkeeper(&config_path, &["deploy", "cdn"], &[]);
    assert!(
        deployed.status.success(),
        "{}",
        String::from_utf8_lossy(&deployed.stderr)
    );
    assert!(count("ok") > ok_before, "{}", sim.simulator.stats_json());
    assert!(in_sync(status_json(&config_path)));
}

/// The QingCloud client re-reads its key files on use: a replaced secret signs the next
/// call.
#[tokio::test]
async fn qingcloud_keys_are_re_read_when_their_file_changes() {
    use certkeeper::cloud::qingcloud::QingCloudClient;
    use certkeeper::config::credentials::{
        CredentialKind, Provider, ResolvedCredentials, TemporarySettings,
    };
    let url = serve_sim(&format!(
        "[[qingcloud.accounts]]\naccess_key_id = \"QYFILE\"\nsecret_access_key = \"{QINGCLOUD_SECRET}\"\n"
    ))
    .await;
    let directory = tempfile::tempdir().unwrap();
    let secret_path = directory.path().join("qc-secret");
    std::fs::write(&secret_path, QINGCLOUD_SECRET).unwrap();
    let mut credentials =
        ResolvedCredentials::new("qc", Provider::Qingcloud, "QYFILE", QINGCLOUD_SECRET)
            .with_endpoint(&url)
            .with_kind(
                CredentialKind::AccessKey,
                TemporarySettings {
                    access_key_secret_file: Some(secret_path.clone()),
                    ..TemporarySettings::default()
                },
            );
    credentials.zone = Some("pek3".into());
    let client = QingCloudClient::new(reqwest::Client::new(), &credentials, None).unwrap();
    client.call("DescribeClusters", &[]).await.unwrap();
    std::fs::write(&secret_path, "not-the-secret").unwrap();
    let refused = client.call("DescribeClusters", &[]).await.unwrap_err();
    assert_eq!(
        refused.class,
        certkeeper::error::ErrorClass::Auth,
        "{refused}"
    );
    assert!(!refused.to_string().contains("not-the-secret"));
    std::fs::write(&secret_path, QINGCLOUD_SECRET).unwrap();
    client.call("DescribeClusters", &[]).await.unwrap();
}

/// The simulator's STS side, as a client meets it: keys from the instance metadata service
/// (IMDSv2 only), then calls with a forged token, without a token, and after expiry, each
/// refused with the vendor's code and classified as an auth failure.
#[tokio::test]
async fn forged_missing_and_expired_tokens_are_refused_with_the_vendor_codes() {
    use certkeeper::cloud::alibaba::client::{AlibabaClient, Product};
    use certkeeper::cloud::credentials::{CredentialProvider, CredentialSource, Credentials};
    use certkeeper::config::credentials::{
        CredentialKind, Provider, ResolvedCredentials, TemporarySettings,
    };
    use certkeeper::secret::Secret;
    let (url, simulator) = serve_sim_with(
        "[alibaba]\ncdn_domains = [\"www.example.com\"]\n\
         [alibaba.sts]\ntoken_lifetime_secs = 2\necs_role_name = \"role\"\n\
         [huawei.temporary]\nlifetime_seconds = 60\n",
    )
    .await;
    let http = reqwest::Client::new();
    // IMDSv2 is enforced: a read without a session token is refused.
    let bare = http
        .get(format!("{url}/latest/meta-data/ram/security-credentials/"))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 401);

    let from_metadata = |provider, kind| {
        ResolvedCredentials::new("metadata", provider, "", "")
            .with_endpoint(&url)
            .with_kind(
                kind,
                TemporarySettings {
                    metadata_endpoint: Some(url.clone()),
                    ..TemporarySettings::default()
                },
            )
    };
    let account = from_metadata(Provider::Alibaba, CredentialKind::EcsRamRole);
    let source = certkeeper::cloud::alibaba::sts::EcsRamRole::new(&account);
    let keys = source
        .fetch(&http, time::OffsetDateTime::now_utc())
        .await
        .unwrap();
    let call = |credentials: Credentials| {
        let client = AlibabaClient::new(
            account.clone(),
            http.clone(),
            certkeeper::ratelimit::RateLimits::default(),
        )
        .with_provider(std::sync::Arc::new(CredentialProvider::fixed(
            "ecs",
            credentials,
        )));
        async move {
            client
                .call(
                    Product::Cdn,
                    "DescribeDomainCertificateInfo",
                    &[("DomainName", "www.example.com".to_owned())],
                )
                .await
        }
    };
    // A token refused as another key's (files caught mid-replacement) is worth one more
    // attempt with what the provider hands out next.
    simulator.add_faults(vec![expired_token(
        "alibaba",
        "DescribeDomainCertificateInfo",
        400,
        "InvalidSecurityToken.MismatchWithAccessKey",
    )]);
    call(keys.clone()).await.unwrap();
    let stats = simulator.stats_json();
    assert_eq!(
        stats["alibaba"]["DescribeDomainCertificateInfo"]
            ["InvalidSecurityToken.MismatchWithAccessKey"],
        1,
        "{stats}"
    );
    let with_token = |token: Option<&str>| Credentials {
        security_token: token.map(Secret::new),
        ..keys.clone()
    };
    let forged = call(with_token(Some("CAISforgedtoken"))).await.unwrap_err();
    assert_eq!(forged.code, "InvalidSecurityToken.Malformed", "{forged}");
    assert_eq!(forged.class, certkeeper::error::ErrorClass::Auth);
    assert!(!forged.to_string().contains("CAISforgedtoken"), "{forged}");
    let missing = call(with_token(None)).await.unwrap_err();
    assert_eq!(missing.code, "MissingSecurityToken", "{missing}");
    let expires_at = keys.expires_at.unwrap();
    support::wait_for("the keys' expiry", Duration::from_secs(30), || {
        time::OffsetDateTime::now_utc() > expires_at
    });
    let expired = call(keys.clone()).await.unwrap_err();
    assert_eq!(expired.code, "InvalidSecurityToken.Expired", "{expired}");
    assert_eq!(expired.class, certkeeper::error::ErrorClass::Auth);

    // Huawei: a forged X-Security-Token on metadata keys is an APIGW.0301.
    let huawei = from_metadata(Provider::Huawei, CredentialKind::EcsMetadata);
    let metadata = certkeeper::cloud::huawei::securitykey::Metadata::new(&huawei);
    let hw_keys = metadata
        .fetch(&http, time::OffsetDateTime::now_utc())
        .await
        .unwrap();
    assert!(hw_keys.access_key_id.starts_with("TMP"));
    let mut project = huawei.clone();
    project.project_id = Some(PROJECT.into());
    project.region = Some("cn-north-4".into());
    let client = certkeeper::cloud::huawei::client::HuaweiClient::new(
        &project,
        http.clone(),
        certkeeper::cloud::huawei::client::system_clock(),
    )
    .unwrap()
    .with_provider(std::sync::Arc::new(CredentialProvider::fixed(
        "hw",
        Credentials {
            security_token: Some(Secret::new("forged")),
            ..hw_keys
        },
    )));
    let request = certkeeper::cloud::huawei::client::ApiRequest {
        operation: "ListGaussMySqlInstances",
        method: reqwest::Method::GET,
        base: url.clone(),
        path: format!("/v3/{PROJECT}/instances"),
        query: Vec::new(),
        body: None,
    };
    let refused = client.send(&request).await.unwrap_err();
    assert_eq!(refused.code, "APIGW.0301", "{refused}");
    assert_eq!(refused.http_status, Some(401));
}

/// Serves a simulator seeded with `seed` on this test's runtime; returns its URL.
async fn serve_sim(seed: &str) -> String {
    serve_sim_with(seed).await.0
}

/// [`serve_sim`], also returning the simulator (for fault rules).
async fn serve_sim_with(seed: &str) -> (String, std::sync::Arc<certkeeper::cloud::sim::Simulator>) {
    let simulator = std::sync::Arc::new(certkeeper::cloud::sim::Simulator::new(
        certkeeper::cloud::sim::SimSeed::from_toml(seed).unwrap(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(certkeeper::cloud::sim::serve(
        listener,
        simulator.clone(),
        std::future::pending(),
    ));
    (url, simulator)
}

/// What the operator sees when STS refuses the configured role: the target's error is an
/// `auth` one naming STS's code (`EntityNotExist.Role`) in `status` and `/metrics`, the
/// daemon keeps running, and the source key's secret appears nowhere.
#[test]
fn a_refused_role_is_an_auth_error_naming_the_sts_code() {
    let sim = start_sim(&format!(
        r#"
[alibaba]
cdn_domains = ["www.example.com"]

[[alibaba.accounts]]
access_key_id = "LTAIsource"
access_key_secret = "{SOURCE_SECRET}"

[alibaba.sts]
roles = ["{ROLE}"]
"#
    ));
    let directory = tempfile::tempdir().unwrap();
    let config_path = directory.path().join("certkeeper.toml");
    let metrics_port = free_port();
    std::fs::write(
        &config_path,
        format!(
            r#"
[daemon]
state_dir = "{state}"
metrics_listen = "127.0.0.1:{metrics_port}"

[credentials.ali]
provider = "alibaba"
type = "ram_role_arn"
access_key_id = "LTAIsource"
access_key_secret_env = "CREDS_SOURCE_SECRET"
role_arn = "acs:ram::1234567890123456:role/not-this-one"
endpoint = "{sim}"

[local_ca.internal]
leaf_lifetime = "30d"

[[certificate]]
name = "www"
domains = ["www.example.com"]
source = {{ local_ca = "internal" }}
deploy_to = ["cdn"]

[[target]]
name = "cdn"
kind = "alibaba-cdn"
credentials = "ali"
domain = "www.example.com"
"#,
            state = directory.path().join("state").display(),
            sim = sim.url,
        ),
    )
    .unwrap();
    let mut daemon = spawn_daemon(&config_path, &[("CREDS_SOURCE_SECRET", SOURCE_SECRET)]);
    let mut view = serde_json::Value::Null;
    support::wait_for("the refused target", Duration::from_secs(60), || {
        view = status_json(&config_path);
        view["targets"][0]["last_error_code"] == "EntityNotExist.Role"
    });
    assert_eq!(view["targets"][0]["last_error_class"], "auth", "{view:#}");
    assert_eq!(view["targets"][0]["in_sync"], false);
    let (_, metrics) = http_get(metrics_port, "/metrics").unwrap();
    assert!(
        metrics.contains(
            r#"certkeeper_target_last_error_info{class="auth",kind="alibaba-cdn",target="cdn"} 1"#
        ),
        "{metrics}"
    );
    assert!(daemon.0.try_wait().unwrap().is_none(), "the daemon runs on");
    let text = serde_json::to_string(&view).unwrap();
    assert!(!text.contains(SOURCE_SECRET) && !metrics.contains(SOURCE_SECRET));
    assert_eq!(
        sim.simulator.stats_json()["alibaba"]["AssumeRole"]["EntityNotExist.Role"]
            .as_u64()
            .map(|count| count >= 1),
        Some(true)
    );
}
