//! Secret hygiene: a full rollout through the `certkeeper` binary at trace log level (every
//! crate, the HTTP stack included), against the in-process simulator with every vendor and
//! both Huawei authentication methods, with faults injected so the error paths log too.
//! Every credential kind takes part: Alibaba `sts` (keys and token from files),
//! `ram_role_arn`, `ecs_ram_role`, `oidc_role_arn`; Huawei `ecs_metadata`, `iam_temporary`.
//! Afterwards no access key secret, Huawei password or IAM token, security token (the
//! simulator's all start with `CAIS`), OIDC token, QingCloud secret or private key material
//! may appear in the logs, `/metrics`, `certkeeper status` (table and JSON) or
//! `certkeeper check` (including its error messages for broken configs). The daemon's store
//! is sealed (`[store] key_file`): the store key never appears either, nor in the errors of
//! a refused start, a wrong or malformed key, or `store backup`.

#![cfg(feature = "sim")]

mod support;

use certkeeper::cloud::sim::FaultRule;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::{certkeeper_command, free_port, http_get, start_sim, status_json, ChildGuard};

const ALIBABA_SECRET: &str = "hygiene-alibaba-secret-Q7x";
const HUAWEI_SK: &str = "hygiene-huawei-sk-Z3k";
const HUAWEI_PASSWORD: &str = "hygiene-huawei-password-M4p";
const QINGCLOUD_SECRET: &str = "hygiene-qingcloud-secret-W9d";
const LITERAL_SECRET: &str = "hygiene-literal-secret-J2v";
/// A password written without quotes: TOML reads it as an integer.
const NUMERIC_PASSWORD: &str = "8675309123";
/// Every IAM token the simulator issues starts with this (`MIIsim` + a UUID).
const TOKEN_PREFIX: &str = "MIIsim";
/// Every security token the simulator issues (STS, instance roles, Huawei temporary AK/SK).
const SECURITY_TOKEN_PREFIX: &str = "CAIS";
const OIDC_TOKEN: &str = "hygiene-oidc-token-V6s";
const ROLE: &str = "acs:ram::1234567890123456:role/hygiene";
const OIDC_PROVIDER: &str = "acs:ram::1234567890123456:oidc-provider/hygiene";
const GAUSSDB_META: &str = "9255f8d4d0a4549898e55be8bf1b8ea6in07";
const GAUSSDB_IAM: &str = "a366f8d4d0a4549898e55be8bf1b8ea6in07";
const PROJECT: &str = "619d3e78f61b4be68bc5aa0b59edcf7b";
const GAUSSDB_TOKEN: &str = "7033e7c3cf93438797d44ad7ae0a7d95in07";
const GAUSSDB_AKSK: &str = "8144f8d4d0a4549898e55be8bf1b8ea6in07";
/// The store key (base64 of the 32 bytes below), in a 0600 file named by `[store] key_file`.
const STORE_KEY: &str = "aHlnaWVuZS1zdG9yZS1rZXktMzItYnl0ZXMtbG9uZyE=";
const STORE_KEY_BYTES: &str = "hygiene-store-key-32-bytes-long!";
/// A store key that is not the store's, and text that is no key at all.
const OTHER_STORE_KEY: &str = "b3RoZXItaHlnaWVuZS1zdG9yZS1rZXktMzItYnl0ZXM=";
const NOT_A_STORE_KEY: &str = "hygiene-not-a-store-key-K5r";
const KMS_KEY: &str = "b82fa43f-f6e8-4ec4-9c31-231bc547c526";
const CLUSTER: &str = "cl-hygiene1";

fn seed() -> String {
    format!(
        r#"
[[alibaba.accounts]]
access_key_id = "LTAIhygiene"
access_key_secret = "{ALIBABA_SECRET}"

[alibaba]
cdn_domains = ["www.example.com", "sts.example.com", "ram.example.com", "ecs.example.com", "oidc.example.com"]
vod_domains = ["v.example.com"]
throttle_retry_after_ms = 50

[alibaba.sts]
roles = ["{ROLE}"]
ecs_role_name = "hygiene-role"

[[alibaba.sts.oidc_providers]]
arn = "{OIDC_PROVIDER}"
tokens = ["{OIDC_TOKEN}"]

[huawei]
kms_keys = ["{KMS_KEY}"]

[[huawei.accounts]]
access_key_id = "HWHYGIENE"
secret_access_key = "{HUAWEI_SK}"
project_id = "{PROJECT}"

[[huawei.users]]
domain = "hygiene-domain"
name = "deployer"
password = "{HUAWEI_PASSWORD}"
project_id = "{PROJECT}"

[[huawei.gaussdb_instances]]
id = "{GAUSSDB_TOKEN}"
backup_encryption = "off"
project_id = "{PROJECT}"

[[huawei.gaussdb_instances]]
id = "{GAUSSDB_AKSK}"
backup_encryption = "off"
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
access_key_id = "QYHYGIENE"
secret_access_key = "{QINGCLOUD_SECRET}"

[[qingcloud.mysql_plus_clusters]]
id = "{CLUSTER}"
zone = "pek3"
ssl = false
"#
    )
}

/// The daemon's config; `secrets` is the credentials part, so `check` can be run on
/// variants that write the secrets literally.
fn config(sim: &str, directory: &Path, metrics_port: u16, secrets: &Secrets) -> String {
    format!(
        r#"
[daemon]
state_dir = "{state}"
metrics_listen = "127.0.0.1:{metrics_port}"
scan_schedule = "* * * * * *"

[credentials.ali]
provider = "alibaba"
access_key_id = "LTAIhygiene"
{ali}
endpoint = "{sim}"

[credentials.hw-token]
provider = "huawei"
auth = "token"
domain_name = "hygiene-domain"
user_name = "deployer"
{hw_password}
region = "cn-north-4"
project_id = "{PROJECT}"
endpoint = "{sim}"

[credentials.hw-aksk]
provider = "huawei"
access_key_id = "HWHYGIENE"
{hw_sk}
region = "cn-north-4"
project_id = "{PROJECT}"
endpoint = "{sim}"

[credentials.qc]
provider = "qingcloud"
access_key_id = "QYHYGIENE"
{qc}
zone = "pek3"
endpoint = "{sim}"

[credentials.ali-sts]
provider = "alibaba"
type = "sts"
access_key_id_file = "{sts_dir}/id"
access_key_secret_file = "{sts_dir}/secret"
security_token_file = "{sts_dir}/token"
endpoint = "{sim}"

[credentials.ali-ram]
provider = "alibaba"
type = "ram_role_arn"
access_key_id = "LTAIhygiene"
{ali}
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
role_arn = "{ROLE}"
oidc_provider_arn = "{OIDC_PROVIDER}"
oidc_token_file = "{sts_dir}/oidc-token"
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
domain_name = "hygiene-domain"
user_name = "deployer"
{hw_password}
region = "cn-north-4"
project_id = "{PROJECT}"
endpoint = "{sim}"

[local_ca.internal]
leaf_lifetime = "30d"

[[certificate]]
name = "www"
domains = ["www.example.com", "v.example.com"]
source = {{ local_ca = "internal" }}
deploy_to = ["cdn-www", "vod-v", "files"]

[[certificate]]
name = "roles"
domains = ["sts.example.com", "ram.example.com", "ecs.example.com", "oidc.example.com"]
source = {{ local_ca = "internal" }}
deploy_to = ["cdn-sts", "cdn-ram", "cdn-ecs", "cdn-oidc"]

[[target]]
name = "cdn-sts"
kind = "alibaba-cdn"
credentials = "ali-sts"
domain = "sts.example.com"

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

[[target]]
name = "cdn-www"
kind = "alibaba-cdn"
credentials = "ali"
domain = "www.example.com"

[[target]]
name = "vod-v"
kind = "alibaba-vod"
credentials = "ali"
domain = "v.example.com"

[[target]]
name = "files"
kind = "file"
directory = "{files}"

[[policy]]
name = "gaussdb-token"
kind = "huawei-gaussdb-backup-encryption"
credentials = "hw-token"
resources = ["{GAUSSDB_TOKEN}"]
mode = "enforce"
desired = "on"
kms_key_id = "{KMS_KEY}"

[[policy]]
name = "gaussdb-aksk"
kind = "huawei-gaussdb-backup-encryption"
credentials = "hw-aksk"
resources = ["{GAUSSDB_AKSK}"]
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
        files = directory.join("tls").display(),
        sts_dir = directory.join("sts").display(),
        ali = secrets.ali,
        hw_password = secrets.hw_password,
        hw_sk = secrets.hw_sk,
        qc = secrets.qc,
    )
}

struct Secrets {
    ali: String,
    hw_password: String,
    hw_sk: String,
    qc: String,
}

impl Secrets {
    /// Read from the environment, as the docs recommend.
    fn from_env() -> Self {
        Self {
            ali: "access_key_secret_env = \"HYGIENE_ALIBABA_SECRET\"".into(),
            hw_password: "password_env = \"HYGIENE_HUAWEI_PASSWORD\"".into(),
            hw_sk: "access_key_secret_env = \"HYGIENE_HUAWEI_SK\"".into(),
            qc: "access_key_secret_env = \"HYGIENE_QINGCLOUD_SECRET\"".into(),
        }
    }

    /// Written into the file (allowed, with a warning).
    fn literal() -> Self {
        Self {
            ali: format!("access_key_secret = \"{ALIBABA_SECRET}\""),
            hw_password: format!("password = \"{HUAWEI_PASSWORD}\""),
            hw_sk: format!("access_key_secret = \"{HUAWEI_SK}\""),
            qc: format!("access_key_secret = \"{QINGCLOUD_SECRET}\""),
        }
    }
}

/// Runs a CLI subcommand; returns stdout and stderr together.
fn cli(args: &[&str], config_path: &Path) -> String {
    let output = support::certkeeper(config_path, args, &[]);
    format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn converged(view: &serde_json::Value) -> bool {
    let targets = view["targets"].as_array().is_some_and(|targets| {
        targets.len() == 7 && targets.iter().all(|target| target["in_sync"] == true)
    });
    let policies = view["policies"].as_array().is_some_and(|policies| {
        policies.len() == 5 && policies.iter().all(|policy| policy["compliant"] == true)
    });
    targets && policies
}

fn fault(vendor: &str, action: &str, status: u16, code: &str) -> FaultRule {
    FaultRule {
        vendor: vendor.into(),
        action: Some(action.into()),
        status,
        code: Some(code.into()),
        message: None,
        count: Some(1),
        probability: None,
        delay_ms: None,
    }
}

/// The base64 lines of every PEM private key in `pem`, long enough to be meaningful.
fn key_body_lines(pem: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut inside = false;
    for line in pem.lines() {
        if line.contains("PRIVATE KEY-----") {
            inside = line.starts_with("-----BEGIN");
            continue;
        }
        if inside && line.len() >= 16 {
            lines.push(line.trim().to_owned());
        }
    }
    lines
}

/// Fails naming the first forbidden text found in `output`.
fn assert_clean(what: &str, output: &str, forbidden: &[String]) {
    for needle in forbidden {
        assert!(
            !output.contains(needle.as_str()),
            "{what} leaks `{needle}`:\n{}",
            excerpt(output, needle)
        );
    }
    for marker in ["PRIVATE KEY", TOKEN_PREFIX, SECURITY_TOKEN_PREFIX] {
        assert!(
            !output.contains(marker),
            "{what} contains `{marker}`:\n{}",
            excerpt(output, marker)
        );
    }
}

fn excerpt(output: &str, needle: &str) -> String {
    output
        .lines()
        .filter(|line| line.contains(needle))
        .take(3)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn no_secret_reaches_logs_metrics_status_or_check() {
    let sim = start_sim(&seed());
    let simulator = sim.simulator.clone();
    let sim_url = sim.url.clone();
    // Error paths on every vendor: retried in the operation (deploys) or failing one policy
    // pass (policies are checked again on the next scan).
    simulator.add_faults(vec![
        fault(
            "alibaba",
            "SetCdnDomainSSLCertificate",
            503,
            "ServiceUnavailable",
        ),
        fault(
            "alibaba",
            "SetVodDomainSSLCertificate",
            400,
            "Throttling.User",
        ),
        fault(
            "alibaba",
            "DescribeDomainCertificateInfo",
            500,
            "InternalError",
        ),
        fault(
            "huawei",
            "KeystoneCreateUserTokenByPassword",
            429,
            "APIGW.0308",
        ),
        fault("huawei", "DescribeBackupEncryptStatus", 500, "DBS.108000"),
        fault("huawei", "ModifyBackupEncryptStatus", 409, "DBS.200019"),
        fault("qingcloud", "DescribeClusters", 200, "5100"),
        fault("qingcloud", "RunClusterCustomService", 200, "JobFailed"),
    ]);

    let directory = tempfile::tempdir().unwrap();
    let sts_keys = write_sts_files(&sim_url, &directory.path().join("sts"));
    let config_path = directory.path().join("certkeeper.toml");
    let metrics_port = free_port();
    std::fs::write(
        &config_path,
        config(
            &sim_url,
            directory.path(),
            metrics_port,
            &Secrets::from_env(),
        ),
    )
    .unwrap();
    let store_key_file = directory.path().join("store.key");
    std::fs::write(&store_key_file, format!("{STORE_KEY}\n")).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&store_key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let mut sealed_config = std::fs::read_to_string(&config_path).unwrap();
    sealed_config.push_str(&format!(
        "\n[store]\nkey_file = \"{}\"\n",
        store_key_file.display()
    ));
    std::fs::write(&config_path, sealed_config).unwrap();
    let log_path = directory.path().join("daemon.log");
    let log_file = std::fs::File::create(&log_path).unwrap();
    let mut daemon = ChildGuard(
        certkeeper_command()
            .args([
                "run",
                "--log-format",
                "json",
                "--log-level",
                // A bare `trace` leaves the HTTP stack at WARN: name it to audit it too.
                "trace,hyper=trace,hyper_util=trace,reqwest=trace,rustls=trace,h2=trace",
                "--config",
            ])
            .arg(&config_path)
            .env_remove("RUST_LOG")
            .env("HYGIENE_ALIBABA_SECRET", ALIBABA_SECRET)
            .env("HYGIENE_HUAWEI_SK", HUAWEI_SK)
            .env("HYGIENE_HUAWEI_PASSWORD", HUAWEI_PASSWORD)
            .env("HYGIENE_QINGCLOUD_SECRET", QINGCLOUD_SECRET)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file))
            .spawn()
            .unwrap(),
    );

    // Deploys run at once; scans (and so policy checks) also run after each reload, which
    // is how this test drives the policies' second pass without waiting for a tick.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut last_hup = Instant::now();
    loop {
        if converged(&status_json(&config_path)) {
            break;
        }
        assert!(
            daemon.0.try_wait().unwrap().is_none(),
            "the daemon exited: {}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        assert!(
            Instant::now() < deadline,
            "no convergence: {:#}\n{}",
            status_json(&config_path),
            simulator.stats_json()
        );
        if last_hup.elapsed() > Duration::from_secs(3) {
            daemon.signal("HUP");
            last_hup = Instant::now();
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    // Each injected fault was met, so its error path ran.
    let stats = simulator.stats_json();
    for (vendor, action, code) in [
        (
            "alibaba",
            "SetCdnDomainSSLCertificate",
            "ServiceUnavailable",
        ),
        ("alibaba", "SetVodDomainSSLCertificate", "Throttling.User"),
        ("huawei", "KeystoneCreateUserTokenByPassword", "APIGW.0308"),
        ("huawei", "DescribeBackupEncryptStatus", "DBS.108000"),
        ("qingcloud", "DescribeClusters", "5100"),
    ] {
        assert_eq!(stats[vendor][action][code], 1, "{vendor} {action}: {stats}");
    }
    assert!(
        stats["huawei"]["KeystoneCreateUserTokenByPassword"]["ok"]
            .as_u64()
            .unwrap_or(0)
            >= 1,
        "token auth was used: {stats}"
    );

    let (_, metrics) = http_get(metrics_port, "/metrics").unwrap();
    assert!(
        metrics.contains("certkeeper_errors_total"),
        "errors were counted: {metrics}"
    );
    let status_text = cli(&["status"], &config_path);
    let status_json_text = cli(&["status", "--json"], &config_path);
    let check_text = cli(&["check", "--offline"], &config_path);
    assert!(check_text.contains(": ok ("), "{check_text}");
    let backup_text = cli(
        &[
            "store",
            "backup",
            directory.path().join("backup.db").to_str().unwrap(),
        ],
        &config_path,
    );
    assert!(
        backup_text.contains("keys sealed with store key"),
        "{backup_text}"
    );

    // A bad config on SIGHUP is refused and logged.
    let good = std::fs::read_to_string(&config_path).unwrap();
    let broken_line = format!("access_key_secret = \"{LITERAL_SECRET}\n");
    std::fs::write(
        &config_path,
        good.replacen(
            "access_key_secret_env = \"HYGIENE_ALIBABA_SECRET\"\n",
            &broken_line,
            1,
        ),
    )
    .unwrap();
    daemon.signal("HUP");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !http_get(metrics_port, "/metrics").is_some_and(|(_, text)| {
        text.contains(r#"certkeeper_config_reloads_total{result="failure"} 1"#)
    }) {
        assert!(
            Instant::now() < deadline,
            "the broken reload was not counted"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    daemon.signal("TERM");
    assert!(
        daemon.wait_timeout(Duration::from_secs(30)).is_some(),
        "daemon did not stop on SIGTERM"
    );
    let logs = std::fs::read_to_string(&log_path).unwrap();
    // Trace for every crate (the HTTP stack included), not only certkeeper's own.
    assert!(
        logs.contains("\"level\":\"TRACE\"") && logs.contains("\"target\":\"hyper"),
        "trace logging was on"
    );
    assert!(logs.contains("reload refused"), "the refusal was logged");

    // `check` on configs with literal secrets: valid, a TOML syntax error on the secret's
    // line, a wrong type on a secret key, and a semantic error elsewhere.
    let literal = config(
        &sim_url,
        directory.path(),
        metrics_port,
        &Secrets::literal(),
    );
    let variants = [
        ("literal", literal.clone()),
        (
            "unterminated string",
            literal.replacen(
                &format!("access_key_secret = \"{ALIBABA_SECRET}\""),
                &format!("access_key_secret = \"{ALIBABA_SECRET}"),
                1,
            ),
        ),
        (
            "missing equals",
            literal.replacen(
                &format!("access_key_secret = \"{HUAWEI_SK}\""),
                &format!("access_key_secret \"{HUAWEI_SK}\""),
                1,
            ),
        ),
        (
            "wrong type",
            literal.replacen(
                &format!("access_key_secret = \"{QINGCLOUD_SECRET}\""),
                &format!("access_key_secret = [\"{QINGCLOUD_SECRET}\"]"),
                1,
            ),
        ),
        (
            "secret under a wrong key",
            literal.replacen(
                &format!("password = \"{HUAWEI_PASSWORD}\""),
                &format!("pasword = \"{HUAWEI_PASSWORD}\""),
                1,
            ),
        ),
        (
            "secret in a non-secret key",
            literal.replacen(
                "region = \"cn-north-4\"",
                &format!("region = 7\nzone = [\"{HUAWEI_PASSWORD}\"]"),
                1,
            ),
        ),
        (
            "unquoted numeric password",
            literal.replacen(
                &format!("password = \"{HUAWEI_PASSWORD}\""),
                &format!("password = {NUMERIC_PASSWORD}"),
                1,
            ),
        ),
        (
            "semantic error",
            literal.replacen("leaf_lifetime = \"30d\"", "leaf_lifetime = \"soon\"", 1),
        ),
    ];
    let store_key_variants = [
        (
            "literal store key, not the store's",
            format!("{literal}\n[store]\nkey = \"{OTHER_STORE_KEY}\"\n"),
        ),
        (
            "literal text that is no store key",
            format!("{literal}\n[store]\nkey = \"{NOT_A_STORE_KEY}\"\n"),
        ),
        ("no store key for a sealed store", literal.clone()),
    ];
    let mut check_outputs = Vec::new();
    for (name, text) in variants.into_iter().chain(store_key_variants) {
        let path = directory
            .path()
            .join(format!("{}.toml", name.replace(' ', "-")));
        std::fs::write(&path, text).unwrap();
        check_outputs.push((name, cli(&["check"], &path)));
    }
    // A refused start with each store key variant.
    let mut refused_starts = Vec::new();
    for name in [
        "literal store key, not the store's",
        "literal text that is no store key",
        "no store key for a sealed store",
    ] {
        let path = directory
            .path()
            .join(format!("{}.toml", name.replace(' ', "-")));
        let output = cli(&["run"], &path);
        assert!(output.contains("store"), "{name}: {output}");
        refused_starts.push((name, output));
    }

    // What must never appear: every secret, the key material of the issued certificate and
    // of the local CA, and any IAM token.
    let mut forbidden: Vec<String> = [
        STORE_KEY,
        STORE_KEY_BYTES,
        OTHER_STORE_KEY,
        NOT_A_STORE_KEY,
        ALIBABA_SECRET,
        HUAWEI_SK,
        HUAWEI_PASSWORD,
        QINGCLOUD_SECRET,
        LITERAL_SECRET,
        NUMERIC_PASSWORD,
        OIDC_TOKEN,
    ]
    .map(str::to_owned)
    .to_vec();
    forbidden.extend(sts_keys);
    // Every temporary kind fetched its keys (so its paths ran), several times.
    let state = simulator.state_json();
    assert!(
        state["alibaba"]["sts_keys_issued"].as_u64().unwrap_or(0) >= 4,
        "{state}"
    );
    assert!(
        state["huawei"]["temporary_keys_issued"]
            .as_u64()
            .unwrap_or(0)
            >= 2,
        "{state}"
    );
    let key_pem = std::fs::read_to_string(directory.path().join("tls/key.pem")).unwrap();
    forbidden.extend(key_body_lines(&key_pem));
    let raw_store =
        certkeeper::store::sqlite::SqliteStore::open(&directory.path().join("state")).unwrap();
    let store_key = certkeeper::store::seal::StoreKey::from_text(&STORE_KEY.into(), "k").unwrap();
    let (store, _) =
        certkeeper::store::seal::prepare(std::sync::Arc::new(raw_store), Some(store_key)).unwrap();
    let root = store.local_ca("internal").unwrap().unwrap();
    forbidden.extend(key_body_lines(root.key_pem.expose()));
    let versions = store.latest_certificate_versions().unwrap();
    assert!(!versions.is_empty());
    for version in &versions {
        forbidden.extend(key_body_lines(version.key_pem.expose()));
    }
    assert!(forbidden.len() > 10, "{forbidden:?}");

    // The store's error records: the event log, the ledger's last errors, policy statuses
    // and the attempt history (error messages as the vendors and the engine wrote them).
    let events = store.tail_events(100_000).unwrap();
    assert!(
        events.iter().any(|event| event.kind == "deploy.succeeded"),
        "{events:?}"
    );
    let mut records = serde_json::to_string(&events).unwrap();
    records.push_str(&serde_json::to_string(&store.deployments().unwrap()).unwrap());
    records.push_str(&serde_json::to_string(&store.policy_statuses().unwrap()).unwrap());
    for subject in [
        "cdn-www", "vod-v", "files", "cdn-sts", "cdn-ram", "cdn-ecs", "cdn-oidc",
    ] {
        let attempts = store
            .attempts(certkeeper::store::SubjectKind::Target, subject)
            .unwrap();
        records.push_str(&serde_json::to_string(&attempts).unwrap());
    }
    assert_clean(
        "the store's event log and error records",
        &records,
        &forbidden,
    );

    assert_clean("the daemon log", &logs, &forbidden);
    assert_clean("/metrics", &metrics, &forbidden);
    assert_clean("certkeeper status", &status_text, &forbidden);
    assert_clean("certkeeper status --json", &status_json_text, &forbidden);
    assert_clean("certkeeper check", &check_text, &forbidden);
    for (name, output) in &check_outputs {
        assert_clean(&format!("certkeeper check ({name})"), output, &forbidden);
    }
    assert_clean("certkeeper store backup", &backup_text, &forbidden);
    for (name, output) in &refused_starts {
        assert_clean(&format!("certkeeper run ({name})"), output, &forbidden);
    }
    // The broken variants were refused, each with a message.
    for (name, output) in &check_outputs[1..] {
        assert!(!output.contains(": ok ("), "{name}: {output}");
    }
}

/// Keys for the `sts` section: fetched from the simulator's instance metadata service, as a
/// sidecar would, and written to `directory` (with the OIDC token file); returns the secret
/// and the token, which must never show.
fn write_sts_files(sim_url: &str, directory: &Path) -> Vec<String> {
    use certkeeper::cloud::credentials::CredentialSource;
    use certkeeper::config::credentials::{
        CredentialKind, Provider, ResolvedCredentials, TemporarySettings,
    };
    std::fs::create_dir_all(directory).unwrap();
    let account = ResolvedCredentials::new("sidecar", Provider::Alibaba, "", "").with_kind(
        CredentialKind::EcsRamRole,
        TemporarySettings {
            metadata_endpoint: Some(sim_url.to_owned()),
            ..TemporarySettings::default()
        },
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let keys = runtime
        .block_on(
            certkeeper::cloud::alibaba::sts::EcsRamRole::new(&account)
                .fetch(&reqwest::Client::new(), time::OffsetDateTime::now_utc()),
        )
        .unwrap();
    let token = keys.security_token.clone().unwrap();
    // Debug of everything that holds them redacts.
    let settings = TemporarySettings {
        security_token: Some(token.clone()),
        ..TemporarySettings::default()
    };
    for debug in [format!("{keys:?}"), format!("{settings:?}")] {
        assert!(
            !debug.contains(keys.secret.expose()) && !debug.contains(token.expose()),
            "{debug}"
        );
    }
    std::fs::write(directory.join("id"), &keys.access_key_id).unwrap();
    std::fs::write(directory.join("secret"), keys.secret.expose()).unwrap();
    std::fs::write(directory.join("token"), token.expose()).unwrap();
    std::fs::write(directory.join("oidc-token"), OIDC_TOKEN).unwrap();
    vec![keys.secret.expose().to_owned(), token.expose().to_owned()]
}
