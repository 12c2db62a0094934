//! Acceptance of issue 12 (operator truth) for a wrong access key: the real daemon against the
//! simulator, one CDN target with credentials the vendor rejects. Within one pass the target
//! reads `certkeeper_target_in_sync 0`; `certkeeper deploy` of it exits 1; and the project's
//! own alert rules, fed that daemon's own `/metrics` over six hours of the documented auth
//! backoff (computed with the crate's backoff function, no success ever), fire the
//! target-failing alert within 4 h while no certificate alert fires.

#![cfg(feature = "sim")]

mod support;

use certkeeper::engine::backoff::next_delay;
use certkeeper::error::ErrorClass;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use support::wrong_key_fleet::{self, BAD_TARGET, ENVS, GOOD_TARGET, SEED};
/// How long the replayed scenario runs, in minutes of promtool time.
const SCENARIO_MINUTES: u64 = 6 * 60;
/// The issue's bound: the alert fires within 4 h of the first failure.
const FIRES_WITHIN_MINUTES: u64 = 4 * 60;

fn config(sim: &str, state_dir: &Path, metrics_port: u16) -> String {
    wrong_key_fleet::config(
        sim,
        state_dir,
        metrics_port,
        r#"scan_schedule = "* * * * *""#,
    )
}

/// One sample of a text exposition: the series as exposed (name and labels) and its value.
fn samples(exposition: &str) -> Vec<(String, f64)> {
    exposition
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let value: f64 = value.parse().ok()?;
            value.is_finite().then(|| (series.to_owned(), value))
        })
        .collect()
}

/// The series with the labels Prometheus adds to everything it scrapes from one target.
fn with_scrape_labels(series: &str, instance: &str) -> String {
    let scrape_labels = format!(r#"job="certkeeper",instance="{instance}""#);
    match series.split_once('{') {
        Some((name, labels)) => format!("{name}{{{scrape_labels},{labels}"),
        None => format!("{series}{{{scrape_labels}}}"),
    }
}

/// A promtool value string for one value per minute, run-length encoded (`vxN` is N+1
/// samples of v).
fn run_length(values: &[f64]) -> String {
    let mut runs: Vec<(f64, usize)> = Vec::new();
    for &value in values {
        match runs.last_mut() {
            Some((last, count)) if *last == value => *count += 1,
            _ => runs.push((value, 1)),
        }
    }
    runs.iter()
        .map(|(value, count)| format!("{value}x{}", count - 1))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The bad target's consecutive failures minute by minute: `first` at minute 0 (what the
/// daemon reported after its first pass), one more at every retry of the auth backoff.
fn failures_under_auth_backoff(first: u32, minutes: u64) -> Vec<f64> {
    let mut retries = Vec::new();
    let mut attempts = first;
    let mut at = Duration::ZERO;
    while let Some(delay) = next_delay(ErrorClass::Auth, attempts) {
        at += delay;
        if at.as_secs() > minutes * 60 {
            break;
        }
        attempts += 1;
        retries.push(at.as_secs() / 60);
    }
    (0..=minutes)
        .map(|minute| f64::from(first) + retries.iter().filter(|&&at| at <= minute).count() as f64)
        .collect()
}

#[test]
fn a_wrong_access_key_reads_out_of_sync_fails_deploy_and_fires_the_target_alert_within_4h() {
    let sim = support::start_sim(SEED);
    let directory = tempfile::tempdir().unwrap();
    let config_path = directory.path().join("certkeeper.toml");
    let metrics_port = support::free_port();
    std::fs::write(
        &config_path,
        config(&sim.url, &directory.path().join("state"), metrics_port),
    )
    .unwrap();
    let _daemon = support::spawn_daemon(&config_path, &ENVS);

    // The first pass is over once the loop has stamped its end.
    let mut exposition = String::new();
    support::wait_for(
        "the daemon's first pass",
        Duration::from_secs(90),
        || match support::http_get(metrics_port, "/metrics") {
            Some((200, answer)) => {
                let body = answer
                    .split_once("\r\n\r\n")
                    .map_or("", |(_, body)| body)
                    .to_owned();
                let done =
                    support::metric_value(&body, "certkeeper_last_reconcile_timestamp_seconds")
                        .is_some_and(|finished| finished > 0.0);
                exposition = body;
                done
            }
            _ => false,
        },
    );
    let scraped_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();

    let target_series =
        |family: &str, target: &str| format!(r#"{family}{{kind="alibaba-cdn",target="{target}"}}"#);
    assert_eq!(
        support::metric_value(
            &exposition,
            &target_series("certkeeper_target_in_sync", BAD_TARGET)
        ),
        Some(0.0),
        "the target with the wrong key is out of sync after one pass:\n{exposition}"
    );
    assert_eq!(
        support::metric_value(
            &exposition,
            &target_series("certkeeper_target_in_sync", GOOD_TARGET)
        ),
        Some(1.0),
        "the other target converged in the same pass:\n{exposition}"
    );
    assert!(
        exposition.contains(&format!(
            r#"certkeeper_target_last_error_info{{class="auth",kind="alibaba-cdn",target="{BAD_TARGET}"}} 1"#
        )),
        "the class of the failure is exported:\n{exposition}"
    );
    let first_failures = support::metric_value(
        &exposition,
        &target_series("certkeeper_target_consecutive_failures", BAD_TARGET),
    )
    .expect("the bad target's consecutive failures are exported");
    assert!(first_failures >= 1.0, "{exposition}");

    let deploy = support::certkeeper(&config_path, &["deploy", BAD_TARGET], &ENVS);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&deploy.stdout),
        String::from_utf8_lossy(&deploy.stderr)
    );
    assert_eq!(deploy.status.code(), Some(1), "deploy {BAD_TARGET}: {said}");
    assert!(
        said.contains(BAD_TARGET),
        "the outcome names the target: {said}"
    );

    let rules = format!(
        "{}/config/prometheus/alerts.yml",
        env!("CARGO_MANIFEST_DIR")
    );
    let test_file = directory.path().join("operator_alerts_test.yml");
    std::fs::write(
        &test_file,
        promtool_test(
            &exposition,
            scraped_at,
            first_failures,
            metrics_port,
            &rules,
        ),
    )
    .unwrap();
    let promtool = std::process::Command::new("promtool")
        .args(["test", "rules"])
        .arg(&test_file)
        .output()
        .expect(
            "promtool must be installed (Debian package `prometheus`; scripts/test installs it)",
        );
    assert!(
        promtool.status.success(),
        "the alert rules fed the daemon's own metrics:\n{}{}",
        String::from_utf8_lossy(&promtool.stdout),
        String::from_utf8_lossy(&promtool.stderr)
    );
}

/// A promtool unit test (JSON is YAML) that replays the scraped exposition for six hours as
/// Prometheus would have stored it: timestamps shifted so that promtool's time 0 is the
/// scrape, every series constant except the bad target's failure count, which follows the
/// auth backoff.
fn promtool_test(
    exposition: &str,
    scraped_at: f64,
    first_failures: f64,
    metrics_port: u16,
    rules: &str,
) -> String {
    let instance = format!("127.0.0.1:{metrics_port}");
    let failing = format!(
        r#"certkeeper_target_consecutive_failures{{kind="alibaba-cdn",target="{BAD_TARGET}"}}"#
    );
    let first = u32::try_from(first_failures as i64).unwrap();
    let mut input_series = vec![serde_json::json!({
        "series": format!(r#"up{{job="certkeeper",instance="{instance}"}}"#),
        "values": format!("1x{SCENARIO_MINUTES}"),
    })];
    for (series, value) in samples(exposition) {
        let values = if series == failing {
            run_length(&failures_under_auth_backoff(first, SCENARIO_MINUTES))
        } else {
            // A timestamp gauge is seconds since the epoch; 0 means "never" and stays 0.
            let value = if series.contains("_timestamp_seconds") && value > 0.0 {
                value - scraped_at
            } else {
                value
            };
            format!("{value}x{SCENARIO_MINUTES}")
        };
        input_series.push(serde_json::json!({
            "series": with_scrape_labels(&series, &instance),
            "values": values,
        }));
    }
    let failing_alert = format!(
        r#"count(ALERTS{{alertname="CertkeeperTargetFailing",alertstate="firing",target="{BAD_TARGET}"}})"#
    );
    let test = serde_json::json!({
        "rule_files": [rules],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": input_series,
            "promql_expr_test": [
                {
                    "expr": failing_alert,
                    "eval_time": format!("{FIRES_WITHIN_MINUTES}m"),
                    "exp_samples": [{ "labels": "{}", "value": 1 }],
                },
                {
                    "expr": failing_alert,
                    "eval_time": format!("{SCENARIO_MINUTES}m"),
                    "exp_samples": [{ "labels": "{}", "value": 1 }],
                },
                {
                    "expr": format!(
                        r#"count_over_time(ALERTS{{alertstate="firing",certificate!=""}}[{SCENARIO_MINUTES}m])"#
                    ),
                    "eval_time": format!("{SCENARIO_MINUTES}m"),
                    "exp_samples": [],
                },
            ],
        }],
    });
    serde_json::to_string_pretty(&test).unwrap()
}

#[test]
fn the_auth_backoff_replay_counts_one_failure_per_retry() {
    let minutes = failures_under_auth_backoff(1, SCENARIO_MINUTES);
    assert_eq!(minutes.len(), 361);
    // Retries 1 h, 2 h then 4 h apart: at 60, 180 and 420 min (the last one past the end).
    assert_eq!(minutes[59], 1.0);
    assert_eq!(minutes[60], 2.0);
    assert_eq!(minutes[179], 2.0);
    assert_eq!(minutes[180], 3.0);
    assert_eq!(minutes[360], 3.0);
    assert_eq!(run_length(&minutes), "1x59 2x119 3x180");
}
