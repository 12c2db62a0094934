//! SIGTERM in the middle of a long rollout: the deploys in flight finish within
//! `shutdown_grace`, and the pass starts no new one (the shutdown token of `engine::pass`).
#![cfg(feature = "sim")]

mod support;

use certkeeper::cloud::sim::FaultRule;
use std::time::{Duration, Instant};
use support::{spawn_daemon, start_sim, status_json, wait_for};

const TARGETS: usize = 6;

fn domain(index: usize) -> String {
    format!("cdn{index}.example.com")
}

#[test]
fn sigterm_starts_no_new_deploy_and_lets_the_running_one_finish() {
    let domains: Vec<String> = (0..TARGETS).map(domain).collect();
    let sim = start_sim(&format!(
        r#"
[[alibaba.accounts]]
access_key_id = "LTAIshutdowntest"
access_key_secret = "shutdown-test-secret"

[alibaba]
cdn_domains = {domains:?}
"#
    ));
    // Every CDN write takes 8 s: the rollout of six targets one at a time takes 48 s, and
    // the daemon is stopped during the first (8 s is far more than reading the status and
    // sending the signal take, so the second cannot have started yet).
    sim.simulator.add_faults(vec![FaultRule {
        vendor: "alibaba".into(),
        action: Some("SetCdnDomainSSLCertificate".into()),
        status: 200,
        code: None,
        message: None,
        count: None,
        probability: None,
        delay_ms: Some(8000),
    }]);
    let directory = tempfile::tempdir().unwrap();
    let targets: String = (0..TARGETS)
        .map(|index| {
            format!(
                "[[target]]\nname = \"cdn-{index}\"\nkind = \"alibaba-cdn\"\ncredentials = \"ali\"\ndomain = \"{}\"\n\n",
                domain(index)
            )
        })
        .collect();
    let deploy_to: Vec<String> = (0..TARGETS).map(|index| format!("cdn-{index}")).collect();
    let config_path = directory.path().join("certkeeper.toml");
    std::fs::write(
        &config_path,
        format!(
            r#"
[daemon]
state_dir = "{state}"
metrics_listen = "127.0.0.1:{port}"
concurrency = 1
shutdown_grace = "60s"

[credentials.ali]
provider = "alibaba"
access_key_id = "LTAIshutdowntest"
access_key_secret_env = "TEST_ALIBABA_SECRET"
endpoint = "{sim}"

[local_ca.internal]
leaf_lifetime = "30d"

[[certificate]]
name = "www"
domains = {domains:?}
source = {{ local_ca = "internal" }}
deploy_to = {deploy_to:?}

{targets}"#,
            state = directory.path().join("state").display(),
            port = support::free_port(),
            sim = sim.url,
        ),
    )
    .unwrap();
    let mut daemon = spawn_daemon(
        &config_path,
        &[("TEST_ALIBABA_SECRET", "shutdown-test-secret")],
    );
    let statuses = |view: &serde_json::Value| -> Vec<String> {
        view["targets"]
            .as_array()
            .map(|targets| {
                targets
                    .iter()
                    .map(|target| target["status"].as_str().unwrap_or("").to_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    wait_for(
        "the first CDN deploy to start",
        Duration::from_secs(60),
        || {
            statuses(&status_json(&config_path))
                .iter()
                .any(|status| status == "deploying")
        },
    );

    let signalled = Instant::now();
    let (exit, logs) = daemon.stop_and_read_logs();
    let stopped_after = signalled.elapsed();
    assert!(
        exit.is_some_and(|exit| exit.success()),
        "the daemon exits 0 on SIGTERM: {exit:?}\n{logs}"
    );
    assert!(
        stopped_after < Duration::from_secs(60),
        "stopped within shutdown_grace, not after it: {stopped_after:?}"
    );

    let view = status_json(&config_path);
    let statuses = statuses(&view);
    assert_eq!(statuses.len(), TARGETS, "{view}");
    assert_eq!(
        statuses
            .iter()
            .filter(|status| *status == "in_sync")
            .count(),
        1,
        "the deploy in flight at SIGTERM finished and was recorded; no other ran: {view}"
    );
    assert!(
        !statuses.iter().any(|status| status == "deploying"),
        "nothing was left half-done: {view}"
    );
    // The simulator counts a write when it answers; the daemon waited for the one in flight.
    let writes = sim.simulator.stats_json()["alibaba"]["SetCdnDomainSSLCertificate"]
        .as_object()
        .map(|outcomes| {
            outcomes
                .values()
                .filter_map(|count| count.as_u64())
                .sum::<u64>()
        })
        .unwrap_or(0);
    assert_eq!(writes, 1, "no CDN write started after SIGTERM");
    let line = logs
        .lines()
        .find(|line| line.contains("targets left unreconciled"))
        .unwrap_or_else(|| {
            panic!("no log line names the targets left for the next start:\n{logs}")
        });
    assert!(line.contains("\"level\":\"INFO\""), "{line}");
    assert!(
        line.contains(&format!("\"not_started\":{}", TARGETS - 1)),
        "{line}"
    );
}
