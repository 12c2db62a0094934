//! `certkeeper run` end to end against the in-tree simulator: a certificate from the local CA
//! converges on a CDN domain, a VOD domain and a file target; /metrics and /readyz answer; a
//! bad config sent with SIGHUP is refused while the daemon keeps running; SIGTERM stops it
//! cleanly.

#![cfg(feature = "sim")]

mod support;

use std::process::Stdio;
use std::time::Duration;
use support::{
    certkeeper_command, free_port, http_get, start_sim, status_json, wait_for, ChildGuard,
};

const SEED: &str = r#"
[[alibaba.accounts]]
access_key_id = "LTAIdaemontest"
access_key_secret = "daemon-test-secret"

[alibaba]
cdn_domains = ["www.example.com"]
vod_domains = ["v.example.com"]
"#;

fn config(
    sim: &str,
    state_dir: &std::path::Path,
    files: &std::path::Path,
    metrics_port: u16,
) -> String {
    format!(
        r#"
[daemon]
state_dir = "{state}"
metrics_listen = "127.0.0.1:{metrics_port}"
scan_schedule = "* * * * *"

[credentials.ali]
provider = "alibaba"
access_key_id = "LTAIdaemontest"
access_key_secret_env = "TEST_ALIBABA_SECRET"
endpoint = "{sim}"

[local_ca.internal]
leaf_lifetime = "30d"

[[certificate]]
name = "www"
domains = ["www.example.com", "v.example.com"]
source = {{ local_ca = "internal" }}
deploy_to = ["cdn-www", "vod-v", "files"]

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
"#,
        state = state_dir.display(),
        files = files.display(),
    )
}

/// `certkeeper ARGS --config CONFIG` with the simulator account's secret in the environment.
fn certkeeper(config_path: &std::path::Path, args: &[&str]) -> std::process::Output {
    support::certkeeper(
        config_path,
        args,
        &[("TEST_ALIBABA_SECRET", "daemon-test-secret")],
    )
}

#[test]
fn daemon_converges_reloads_safely_and_stops() {
    let sim = start_sim(SEED);
    let simulator = sim.simulator.clone();
    let sim_url = sim.url.clone();

    let directory = tempfile::tempdir().unwrap();
    let state_dir = directory.path().join("state");
    let files = directory.path().join("tls");
    let config_path = directory.path().join("certkeeper.toml");
    let metrics_port = free_port();
    std::fs::write(
        &config_path,
        config(&sim_url, &state_dir, &files, metrics_port),
    )
    .unwrap();

    let mut daemon = ChildGuard(
        certkeeper_command()
            .args([
                "run",
                "--log-format",
                "json",
                "--log-level",
                "debug",
                "--config",
            ])
            .arg(&config_path)
            .env("TEST_ALIBABA_SECRET", "daemon-test-secret")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );

    wait_for("every target in sync", Duration::from_secs(60), || {
        let view = status_json(&config_path);
        view["targets"].as_array().is_some_and(|targets| {
            targets.len() == 3 && targets.iter().all(|t| t["in_sync"] == true)
        })
    });
    let view = status_json(&config_path);
    let fingerprint = view["certificates"][0]["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    let state = simulator.state_json().to_string();
    assert!(
        state.contains(&fingerprint),
        "the simulator serves the stored version: {state}"
    );
    let served = std::fs::read_to_string(files.join("cert.pem")).unwrap();
    assert!(served.contains("BEGIN CERTIFICATE"));

    let (status, _) = http_get(metrics_port, "/readyz").unwrap();
    assert_eq!(status, 200);
    let (_, metrics) = http_get(metrics_port, "/metrics").unwrap();
    assert!(
        metrics.contains(r#"certkeeper_target_in_sync{kind="alibaba-cdn",target="cdn-www"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics
            .contains("certkeeper_certificate_expiration_timestamp_seconds{certificate=\"www\"}"),
        "{metrics}"
    );

    let healthcheck = certkeeper_command()
        .args(["healthcheck", "--config"])
        .arg(&config_path)
        .status()
        .unwrap();
    assert!(
        healthcheck.success(),
        "certkeeper healthcheck against the running daemon"
    );

    assert!(
        metrics.contains(r#"certkeeper_cloud_requests_total{action="SetCdnDomainSSLCertificate",outcome="ok",vendor="alibaba"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"certkeeper_cloud_request_duration_seconds_count{action="DescribeDomainCertificateInfo",vendor="alibaba"}"#),
        "{metrics}"
    );

    // A second daemon on the same state directory is refused.
    let second = certkeeper_command()
        .args(["run", "--config"])
        .arg(&config_path)
        .env("TEST_ALIBABA_SECRET", "daemon-test-secret")
        .output()
        .unwrap();
    assert!(!second.status.success(), "{second:?}");
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("another certkeeper daemon is running"),
        "{second:?}"
    );

    // `plan` reads every target's live state: nothing to change once converged.
    let plan = certkeeper(&config_path, &["plan", "--json"]);
    assert!(plan.status.success(), "{plan:?}");
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(plan["changes"], 0, "{plan}");
    assert_eq!(plan["targets"].as_array().map(Vec::len), Some(3), "{plan}");

    // Manual work goes to the running daemon over its socket.
    let renewed = certkeeper(&config_path, &["renew", "www"]);
    assert!(renewed.status.success(), "{renewed:?}");
    let message = String::from_utf8_lossy(&renewed.stdout).to_string();
    assert!(
        message.contains("newest version") && !message.contains(&fingerprint),
        "renew obtained a new version: {message}"
    );
    wait_for(
        "the renewed version in sync",
        Duration::from_secs(60),
        || {
            let view = status_json(&config_path);
            view["certificates"][0]["fingerprint"].as_str() != Some(fingerprint.as_str())
                && view["targets"]
                    .as_array()
                    .is_some_and(|targets| targets.iter().all(|t| t["in_sync"] == true))
        },
    );
    let fingerprint = status_json(&config_path)["certificates"][0]["fingerprint"]
        .as_str()
        .unwrap()
        .to_owned();
    let deployed = certkeeper(&config_path, &["deploy", "cdn-www"]);
    assert!(deployed.status.success(), "{deployed:?}");
    assert!(
        String::from_utf8_lossy(&deployed.stdout).contains(&fingerprint),
        "{deployed:?}"
    );
    let unknown = certkeeper(&config_path, &["renew", "nope"]);
    assert_eq!(unknown.status.code(), Some(64), "{unknown:?}");
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no certificate named `nope`"));
    let view = status_json(&config_path);
    assert_eq!(
        view["targets"][0]["next_action"], "verify on the next drift scan",
        "{view}"
    );

    // A bad config on SIGHUP is refused; the daemon keeps running on the old one.
    std::fs::write(&config_path, "[daemon\nbroken").unwrap();
    daemon.signal("HUP");
    wait_for(
        "the refused reload to be counted",
        Duration::from_secs(20),
        || {
            http_get(metrics_port, "/metrics").is_some_and(|(_, text)| {
                text.contains(r#"certkeeper_config_reloads_total{result="failure"} 1"#)
            })
        },
    );
    assert!(
        daemon.0.try_wait().unwrap().is_none(),
        "daemon still running"
    );
    assert_eq!(
        http_get(metrics_port, "/healthz").map(|(status, _)| status),
        Some(200)
    );

    // A good config on SIGHUP is taken.
    std::fs::write(
        &config_path,
        config(&sim_url, &state_dir, &files, metrics_port),
    )
    .unwrap();
    daemon.signal("HUP");
    wait_for("the reload to be counted", Duration::from_secs(20), || {
        http_get(metrics_port, "/metrics").is_some_and(|(_, text)| {
            text.contains(r#"certkeeper_config_reloads_total{result="success"} 1"#)
        })
    });

    daemon.signal("TERM");
    let exit = daemon
        .wait_timeout(Duration::from_secs(20))
        .expect("daemon did not stop on SIGTERM");
    assert!(exit.success(), "{exit:?}");
    let mut logs = String::new();
    use std::io::Read;
    daemon
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    assert!(
        !logs.contains("daemon-test-secret"),
        "the access key secret must never be logged"
    );
    assert!(
        !logs.contains("PRIVATE KEY"),
        "key material must never be logged"
    );
    assert!(
        !state_dir.join("control.sock").exists(),
        "the control socket is removed on a clean stop"
    );

    // Without a daemon, `deploy` runs one pass in-process.
    let deployed = certkeeper(&config_path, &["deploy", "files"]);
    assert!(deployed.status.success(), "{deployed:?}");
    assert!(String::from_utf8_lossy(&deployed.stderr).contains("no daemon is running"));

    // A restart resumes from the store: same certificate, no new write to any target.
    let writes = |stats: &serde_json::Value| {
        ["SetCdnDomainSSLCertificate", "SetVodDomainSSLCertificate"]
            .iter()
            .map(|action| stats["alibaba"][action]["ok"].as_u64().unwrap_or(0))
            .sum::<u64>()
    };
    let writes_before = writes(&simulator.stats_json());
    assert!(writes_before >= 2, "{}", simulator.stats_json());
    let restarted = ChildGuard(
        certkeeper_command()
            .args(["run", "--config"])
            .arg(&config_path)
            .env("TEST_ALIBABA_SECRET", "daemon-test-secret")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for(
        "the restarted daemon to be ready",
        Duration::from_secs(60),
        || http_get(metrics_port, "/readyz").is_some_and(|(status, _)| status == 200),
    );
    let view = status_json(&config_path);
    assert_eq!(
        view["certificates"][0]["fingerprint"].as_str(),
        Some(fingerprint.as_str()),
        "no re-issuance after a restart"
    );
    assert_eq!(
        writes(&simulator.stats_json()),
        writes_before,
        "no write call after a restart"
    );
    drop(restarted);
}

#[test]
fn sigterm_lets_an_in_flight_deploy_finish() {
    use certkeeper::cloud::sim::FaultRule;
    let sim = start_sim(SEED);
    let simulator = sim.simulator.clone();
    let sim_url = sim.url.clone();
    // Every CDN write takes 3 s: long enough to stop the daemon in the middle of one.
    simulator.add_faults(vec![FaultRule {
        vendor: "alibaba".into(),
        action: Some("SetCdnDomainSSLCertificate".into()),
        status: 200,
        code: None,
        message: None,
        count: Some(1),
        probability: None,
        delay_ms: Some(3000),
    }]);
    let directory = tempfile::tempdir().unwrap();
    let state_dir = directory.path().join("state");
    let files = directory.path().join("tls");
    let config_path = directory.path().join("certkeeper.toml");
    std::fs::write(
        &config_path,
        config(&sim_url, &state_dir, &files, free_port()),
    )
    .unwrap();
    let mut daemon = ChildGuard(
        certkeeper_command()
            .args(["run", "--config"])
            .arg(&config_path)
            .env("TEST_ALIBABA_SECRET", "daemon-test-secret")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("the CDN deploy to start", Duration::from_secs(60), || {
        status_json(&config_path)["targets"]
            .as_array()
            .is_some_and(|targets| {
                targets
                    .iter()
                    .any(|t| t["name"] == "cdn-www" && t["status"] == "deploying")
            })
    });
    daemon.signal("TERM");
    let exit = daemon
        .wait_timeout(Duration::from_secs(30))
        .expect("daemon did not stop on SIGTERM");
    assert!(exit.success(), "{exit:?}");
    let view = status_json(&config_path);
    let cdn = view["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "cdn-www")
        .unwrap()
        .clone();
    assert_eq!(
        cdn["status"], "in_sync",
        "the write in flight at SIGTERM finished and was recorded: {view}"
    );
}
