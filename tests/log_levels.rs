//! `--log-level trace` is certkeeper's trace, not the HTTP stack's: hyper, reqwest, rustls
//! and the other connection-level crates stay at WARN unless the filter names them. The
//! daemon deploys to the simulator (so reqwest opens connections, which it logs at DEBUG)
//! once with a bare `trace` and once with `RUST_LOG` naming reqwest and hyper.

#![cfg(feature = "sim")]

mod support;

use std::path::Path;
use std::time::Duration;
use support::wrong_key_fleet::{self, SEED};
use support::{free_port, http_get, metric_value, spawn_daemon, start_sim, wait_for};

/// The crates a bare `trace` must leave at WARN (the quiet list of src/telemetry/logging.rs).
const QUIET: [&str; 6] = ["hyper", "hyper_util", "reqwest", "rustls", "h2", "tower"];

/// Runs the daemon through its first pass with `args` after `run` and `RUST_LOG` set to
/// `rust_log`, and returns its JSON log lines.
fn first_pass_logs(extra_args: &[&str], rust_log: &str) -> Vec<serde_json::Value> {
    let sim = start_sim(SEED);
    let directory = tempfile::tempdir().unwrap();
    let config_path = directory.path().join("certkeeper.toml");
    let metrics_port = free_port();
    std::fs::write(
        &config_path,
        wrong_key_fleet::config(&sim.url, &directory.path().join("state"), metrics_port, ""),
    )
    .unwrap();
    let mut envs = wrong_key_fleet::ENVS.to_vec();
    envs.push(("RUST_LOG", rust_log));
    let mut daemon = spawn_daemon_with(&config_path, extra_args, &envs);
    wait_for("the first pass", Duration::from_secs(60), || {
        http_get(metrics_port, "/metrics").is_some_and(|(_, text)| {
            metric_value(&text, "certkeeper_last_reconcile_timestamp_seconds")
                .is_some_and(|at| at > 0.0)
        })
    });
    let (status, logs) = daemon.stop_and_read_logs();
    assert!(status.is_some(), "the daemon did not stop:\n{logs}");
    logs.lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

fn spawn_daemon_with(
    config: &Path,
    extra_args: &[&str],
    envs: &[(&str, &str)],
) -> support::ChildGuard {
    if extra_args.is_empty() {
        return spawn_daemon(config, envs);
    }
    let mut command = support::certkeeper_command();
    command
        .args(["run", "--log-format", "json"])
        .args(extra_args)
        .arg("--config")
        .arg(config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for (key, value) in envs {
        command.env(key, value);
    }
    support::ChildGuard(command.spawn().unwrap())
}

fn target(line: &serde_json::Value) -> &str {
    line["target"].as_str().unwrap_or_default()
}

fn level(line: &serde_json::Value) -> &str {
    line["level"].as_str().unwrap_or_default()
}

fn from_quiet_crate(line: &serde_json::Value) -> bool {
    let target = target(line);
    QUIET.iter().any(|quiet| {
        target == *quiet
            || target
                .strip_prefix(quiet)
                .is_some_and(|rest| rest.starts_with("::"))
    })
}

#[test]
fn a_bare_trace_level_keeps_the_http_stack_at_warn() {
    let lines = first_pass_logs(&["--log-level", "trace"], "");
    assert!(
        lines.iter().any(
            |line| target(line).starts_with("certkeeper") && level(line) == "DEBUG"
                || target(line).starts_with("certkeeper") && level(line) == "TRACE"
        ),
        "certkeeper's own debug lines are on at trace: {lines:#?}"
    );
    let noisy: Vec<_> = lines
        .iter()
        .filter(|line| from_quiet_crate(line) && matches!(level(line), "TRACE" | "DEBUG" | "INFO"))
        .collect();
    assert!(noisy.is_empty(), "third-party lines below WARN: {noisy:#?}");
}

#[test]
fn rust_log_naming_the_http_stack_turns_it_on() {
    let lines = first_pass_logs(&[], "trace,reqwest=trace,hyper_util=trace,hyper=trace");
    assert!(
        lines
            .iter()
            .any(|line| from_quiet_crate(line) && matches!(level(line), "TRACE" | "DEBUG")),
        "naming the crates shows their debug lines (the first test's negative means something)"
    );
}
