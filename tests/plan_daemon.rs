//! `certkeeper plan` beside a running daemon asks the daemon over the control socket, so its
//! reads spend the daemon's token buckets: a plan in the middle of a rollout causes no
//! throttled reply (the simulator counts them), and prints what it printed before, with the
//! same exit codes (2 changes, 0 none, 1 unreadable). Without a daemon it runs in-process.
#![cfg(feature = "sim")]

mod support;

use certkeeper::cloud::sim::FaultRule;
use serde_json::Value;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};
use support::{certkeeper_command, free_port, spawn_daemon_logging_to, start_sim};

/// 300 writes at the documented 30/s: a rollout of about ten seconds, and with the
/// daemon's two reads per first deploy the account's 100/s read limit has no room for a
/// second client's 300 reads.
const DOMAINS: usize = 300;
const SECRET: &str = "plan-daemon-secret";
/// Guards against a hang only.
const DEADLINE: Duration = Duration::from_secs(300);

fn domain(index: usize) -> String {
    format!("d{index}.plan.example")
}

fn seed() -> String {
    let domains: Vec<String> = (0..DOMAINS)
        .map(|index| format!("\"{}\"", domain(index)))
        .collect();
    format!(
        "[[alibaba.accounts]]\naccess_key_id = \"LTAIplan\"\naccess_key_secret = \"{SECRET}\"\n\n[alibaba]\ncdn_domains = [{}]\n",
        domains.join(", ")
    )
}

fn config(sim: &str, state_dir: &Path) -> String {
    let names: Vec<String> = (0..DOMAINS)
        .map(|index| format!("\"cdn-{index}\""))
        .collect();
    let mut text = format!(
        r#"
[daemon]
state_dir = "{state}"
metrics_listen = "127.0.0.1:{port}"

[credentials.ali]
provider = "alibaba"
access_key_id = "LTAIplan"
access_key_secret_env = "PLAN_ALIBABA_SECRET"
endpoint = "{sim}"

[local_ca.plan]
leaf_lifetime = "30d"

[[certificate]]
name = "edge"
domains = ["*.plan.example"]
source = {{ local_ca = "plan" }}
deploy_to = [{names}]
"#,
        state = state_dir.display(),
        port = free_port(),
        names = names.join(", "),
    );
    for index in 0..DOMAINS {
        text.push_str(&format!(
            "\n[[target]]\nname = \"cdn-{index}\"\nkind = \"alibaba-cdn\"\ncredentials = \"ali\"\ndomain = \"{}\"\n",
            domain(index)
        ));
    }
    text
}

fn plan(config: &Path, args: &[&str]) -> Output {
    certkeeper_command()
        .arg("plan")
        .args(args)
        .arg("--config")
        .arg(config)
        .env("PLAN_ALIBABA_SECRET", SECRET)
        .output()
        .unwrap()
}

fn written(state: &Value) -> usize {
    (0..DOMAINS)
        .filter(|index| {
            state["alibaba"]["cdn_domains"][domain(*index)]["writes"]
                .as_u64()
                .is_some_and(|writes| writes > 0)
        })
        .count()
}

fn throttled(stats: &Value) -> u64 {
    stats["alibaba"]
        .as_object()
        .into_iter()
        .flatten()
        .flat_map(|(_, outcomes)| outcomes.as_object().into_iter().flatten())
        .filter(|(outcome, _)| outcome.starts_with("Throttling"))
        .filter_map(|(_, count)| count.as_u64())
        .sum()
}

/// The top-level shape of `plan --json`, as before the daemon answered it.
fn assert_plan_shape(stdout: &[u8]) -> Value {
    let view: Value = serde_json::from_slice(stdout).unwrap_or_else(|error| {
        panic!(
            "plan --json printed no JSON ({error}): {}",
            String::from_utf8_lossy(stdout)
        )
    });
    let keys: Vec<&str> = view
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["certificates", "changes", "policies", "targets"]);
    assert_eq!(view["targets"].as_array().unwrap().len(), DOMAINS);
    assert_eq!(view["certificates"][0]["certificate"], "edge");
    view
}

#[test]
fn plan_beside_a_daemon_mid_rollout_spends_its_buckets_and_keeps_its_output() {
    let sim = start_sim(&seed());
    let directory = tempfile::tempdir().unwrap();
    let config_path = directory.path().join("certkeeper.toml");
    let log_path = directory.path().join("daemon.log");
    std::fs::write(
        &config_path,
        config(&sim.url, &directory.path().join("state")),
    )
    .unwrap();
    let mut daemon =
        spawn_daemon_logging_to(&config_path, &log_path, &[("PLAN_ALIBABA_SECRET", SECRET)]);
    let log_text = || std::fs::read_to_string(&log_path).unwrap_or_default();

    // Mid-rollout: some domains written, most not.
    let started = Instant::now();
    while written(&sim.simulator.state_json()) < 10 {
        assert!(started.elapsed() < DEADLINE, "no rollout:\n{}", log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
    let planned = plan(&config_path, &["--json"]);
    let written_after_plan = written(&sim.simulator.state_json());
    // A domain still unwritten when the answer came was unwritten when the plan read it, so
    // the plan must want to deploy it; only if the rollout outran the plan may it say 0.
    let expected: &[i32] = if written_after_plan < DOMAINS {
        &[2]
    } else {
        &[0, 2]
    };
    assert!(
        planned
            .status
            .code()
            .is_some_and(|code| expected.contains(&code)),
        "exit {:?} with {written_after_plan}/{DOMAINS} written: {}",
        planned.status,
        String::from_utf8_lossy(&planned.stderr)
    );
    let view = assert_plan_shape(&planned.stdout);
    assert_eq!(
        view["changes"].as_u64().unwrap() > 0,
        planned.status.code() == Some(2),
        "{view}"
    );
    assert!(
        log_text().contains("plan requested on the control socket"),
        "the plan was not made by the daemon:\n{}",
        log_text()
    );
    eprintln!(
        "plan answered {:?} after the rollout began; {written_after_plan}/{DOMAINS} written then",
        started.elapsed()
    );

    // Converged: no change, in the human format.
    while written(&sim.simulator.state_json()) < DOMAINS {
        assert!(
            started.elapsed() < DEADLINE,
            "rollout unfinished:\n{}",
            log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let deadline = Instant::now() + DEADLINE;
    let calm = loop {
        let output = plan(&config_path, &[]);
        if output.status.code() == Some(0) {
            break output;
        }
        // The last read-backs may still be landing in the ledger.
        assert!(
            Instant::now() < deadline,
            "plan never settled: {:?}\n{}",
            output.status,
            String::from_utf8_lossy(&output.stdout)
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(
        String::from_utf8_lossy(&calm.stdout).starts_with("No changes: every target serves"),
        "{}",
        String::from_utf8_lossy(&calm.stdout)
    );

    // Reads the vendor refuses: exit 1, each target's row says why. Every read is refused
    // while the rule stands (a rule for one read could be spent by the daemon's own work).
    sim.simulator.add_faults(vec![FaultRule {
        vendor: "alibaba".into(),
        action: Some("DescribeDomainCertificateInfo".into()),
        status: 400,
        code: Some("SignatureDoesNotMatch".into()),
        message: None,
        count: None,
        probability: None,
        delay_ms: None,
    }]);
    let unreadable = plan(&config_path, &["--json"]);
    sim.simulator.clear_faults();
    assert_eq!(unreadable.status.code(), Some(1));
    let view = assert_plan_shape(&unreadable.stdout);
    for row in view["targets"].as_array().unwrap() {
        assert_eq!(row["action"], "error", "{row}");
        assert!(
            row["detail"]
                .as_str()
                .is_some_and(|detail| detail.contains("SignatureDoesNotMatch")),
            "{row}"
        );
    }

    let stats = sim.simulator.stats_json();
    assert_eq!(throttled(&stats), 0, "throttled replies: {stats}");

    // Without a daemon: in-process, same answer.
    daemon.signal("TERM");
    assert!(
        daemon.wait_timeout(DEADLINE).is_some(),
        "the daemon did not stop"
    );
    let alone = plan(&config_path, &["--json"]);
    assert_eq!(
        alone.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&alone.stderr)
    );
    assert_eq!(assert_plan_shape(&alone.stdout)["changes"], 0);
}
