//! What the operator sees when one CDN target has a wrong access key secret and another is
//! healthy (issue 12): within the first pass the bad target reports `in_sync 0`, its
//! consecutive failures and `last_error_info{class="auth"}`, the log has an ERROR line naming
//! it and the vendor code (and no secret), the good target logs its deployment at INFO; after
//! SIGTERM and a restart every certificate and target series is back on /metrics when
//! `READY=1` arrives, restored from the store (the bad target is in its one-hour backoff, so
//! nothing but the restore can have set its series).

#![cfg(feature = "sim")]

mod support;

use std::io::BufRead;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{free_port, http_get, metric_value, spawn_daemon, start_sim, wait_for, ChildGuard};

use support::wrong_key_fleet::{self, GOOD_SECRET, SEED, WRONG_SECRET};

fn config(sim: &str, state_dir: &Path, metrics_port: u16) -> String {
    wrong_key_fleet::config(sim, state_dir, metrics_port, "")
}

/// The daemon's stderr, one JSON log line per entry, collected by a thread.
fn collect_logs(daemon: &mut ChildGuard) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let stderr = daemon.0.stderr.take().expect("stderr is piped");
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

fn parsed(lines: &Mutex<Vec<String>>) -> Vec<serde_json::Value> {
    lines
        .lock()
        .unwrap()
        .iter()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

/// Starts the daemon with its secrets, the notify socket and `RUST_LOG` (empty: the
/// default level).
fn start(config_path: &Path, notify_socket: &Path, rust_log: &str) -> ChildGuard {
    let notify = notify_socket.to_str().unwrap();
    spawn_daemon(
        config_path,
        &[
            wrong_key_fleet::ENVS[0],
            wrong_key_fleet::ENVS[1],
            ("NOTIFY_SOCKET", notify),
            ("RUST_LOG", rust_log),
        ],
    )
}

/// Waits for `READY=1` on the notify socket.
fn wait_ready(socket: &UnixDatagram) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut buffer = [0u8; 4096];
    while Instant::now() < deadline {
        if let Ok(length) = socket.recv(&mut buffer) {
            if String::from_utf8_lossy(&buffer[..length]).contains("READY=1") {
                return;
            }
        }
    }
    panic!("no READY=1 within 60 s");
}

fn scrape(port: u16) -> String {
    match http_get(port, "/metrics") {
        Some((200, text)) => text,
        other => panic!("/metrics did not answer: {other:?}"),
    }
}

fn value(text: &str, series: &str) -> f64 {
    metric_value(text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"))
}

const BAD: &str = r#"{kind="alibaba-cdn",target="cdn-bad"}"#;
const GOOD: &str = r#"{kind="alibaba-cdn",target="cdn-good"}"#;
const WWW: &str = r#"{certificate="www"}"#;

#[test]
fn a_wrong_access_key_shows_within_one_pass_and_every_series_is_back_at_ready() {
    let sim = start_sim(SEED);
    let directory = tempfile::tempdir().unwrap();
    let config_path = directory.path().join("certkeeper.toml");
    let metrics_port = free_port();
    std::fs::write(
        &config_path,
        config(&sim.url, &directory.path().join("state"), metrics_port),
    )
    .unwrap();
    let socket_path = directory.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();

    let mut daemon = start(&config_path, &socket_path, "");
    let logs = collect_logs(&mut daemon);
    wait_ready(&socket);
    // The first pass: the gauges are set by the time it is recorded as finished.
    let mut text = String::new();
    wait_for("the first pass", Duration::from_secs(60), || {
        text = scrape(metrics_port);
        metric_value(&text, "certkeeper_last_reconcile_timestamp_seconds")
            .is_some_and(|at| at > 0.0)
    });
    let bad = |family: &str| value(&text, &format!("{family}{BAD}"));
    assert_eq!(bad("certkeeper_target_in_sync"), 0.0);
    assert!(
        bad("certkeeper_target_consecutive_failures") >= 1.0,
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            r#"certkeeper_target_last_error_info{class="auth",kind="alibaba-cdn",target="cdn-bad"}"#
        ),
        1.0
    );
    assert_eq!(bad("certkeeper_target_parked"), 0.0);
    assert_eq!(bad("certkeeper_target_last_success_timestamp_seconds"), 0.0);
    assert_eq!(
        value(&text, &format!("certkeeper_target_in_sync{GOOD}")),
        1.0
    );
    assert_eq!(
        value(
            &text,
            &format!("certkeeper_target_consecutive_failures{GOOD}")
        ),
        0.0
    );
    assert!(!text.contains(GOOD_SECRET) && !text.contains(WRONG_SECRET));

    // The log: an ERROR line for the bad target with the vendor code, an INFO deployment
    // line for the good one, a stored version; no secret anywhere.
    wait_for(
        "the ERROR and deployment lines",
        Duration::from_secs(30),
        || {
            let lines = parsed(&logs);
            let error = lines.iter().any(|line| {
                line["level"] == "ERROR"
                    && line["target_name"] == "cdn-bad"
                    && line["code"] == "SignatureDoesNotMatch"
            });
            let deployed = lines.iter().any(|line| {
                line["level"] == "INFO"
                    && line["message"] == "deployed"
                    && line["target_name"] == "cdn-good"
                    && line["fingerprint"].is_string()
                    && line["duration_ms"].is_u64()
            });
            error && deployed
        },
    );
    let lines = parsed(&logs);
    assert!(
        lines.iter().any(|line| line["level"] == "INFO"
            && line["message"] == "stored a new certificate version"
            && line["certificate"] == "www"
            && line["serial"].is_string()
            && line["not_after"].is_string()),
        "{lines:?}"
    );
    assert!(
        !lines.iter().any(|line| line["target_name"] == "cdn-bad"
            && line["level"] == "INFO"
            && line["message"] == "deployed"),
        "{lines:?}"
    );
    let everything = logs.lock().unwrap().join("\n");
    assert!(!everything.contains(GOOD_SECRET) && !everything.contains(WRONG_SECRET));
    // INFO: no connection-pool lines from third-party crates.
    assert!(
        !lines.iter().any(|line| line["target"]
            .as_str()
            .is_some_and(|target| target.starts_with("hyper") || target.starts_with("reqwest"))),
        "{lines:?}"
    );

    let before = text;
    daemon.signal("TERM");
    let status = daemon
        .wait_timeout(Duration::from_secs(60))
        .expect("the daemon stops on SIGTERM");
    assert!(status.success(), "{status:?}");

    // Restart (at debug level): every series is on /metrics as READY arrives.
    let mut daemon = start(&config_path, &socket_path, "debug");
    let logs = collect_logs(&mut daemon);
    wait_ready(&socket);
    let text = scrape(metrics_port);
    for series in [
        format!("certkeeper_certificate_expiration_timestamp_seconds{WWW}"),
        format!("certkeeper_certificate_not_before_timestamp_seconds{WWW}"),
        format!("certkeeper_certificate_renewal_timestamp_seconds{WWW}"),
        format!("certkeeper_certificate_last_success_timestamp_seconds{WWW}"),
        format!("certkeeper_certificate_consecutive_failures{WWW}"),
        format!("certkeeper_target_in_sync{BAD}"),
        format!("certkeeper_target_consecutive_failures{BAD}"),
        format!("certkeeper_target_parked{BAD}"),
        format!("certkeeper_target_last_success_timestamp_seconds{BAD}"),
        r#"certkeeper_target_last_error_info{class="auth",kind="alibaba-cdn",target="cdn-bad"}"#
            .to_owned(),
        format!("certkeeper_target_in_sync{GOOD}"),
        format!("certkeeper_target_consecutive_failures{GOOD}"),
        format!("certkeeper_target_certificate_expiration_timestamp_seconds{GOOD}"),
        format!("certkeeper_target_certificate_not_before_timestamp_seconds{GOOD}"),
    ] {
        assert_eq!(
            metric_value(&text, &series),
            metric_value(&before, &series),
            "{series} after the restart:\n{text}\nbefore:\n{before}"
        );
    }
    assert!(
        value(
            &text,
            &format!("certkeeper_certificate_expiration_timestamp_seconds{WWW}")
        ) > 0.0
    );
    assert!(
        value(
            &text,
            &format!("certkeeper_certificate_renewal_timestamp_seconds{WWW}")
        ) > 0.0
    );
    assert!(
        value(
            &text,
            &format!("certkeeper_target_consecutive_failures{BAD}")
        ) >= 1.0
    );
    // The first pass after the start may already have re-read the good target.
    let good_success = format!("certkeeper_target_last_success_timestamp_seconds{GOOD}");
    assert!(value(&text, &good_success) >= value(&before, &good_success));
    assert!(value(&before, &good_success) > 0.0);

    assert!(metric_value(&text, "certkeeper_pass_running_seconds").is_some());

    // A reload without the bad target: its series disappear, the others stay.
    let without_bad = std::fs::read_to_string(&config_path).unwrap().replace(
        r#"deploy_to = ["cdn-good", "cdn-bad"]"#,
        r#"deploy_to = ["cdn-good"]"#,
    );
    let (kept, removed) = without_bad
        .split_once("[[target]]\nname = \"cdn-bad\"")
        .expect("the bad target's table");
    assert!(!removed.contains("[["), "the bad target is the last table");
    std::fs::write(&config_path, kept).unwrap();
    daemon.signal("HUP");
    let mut text = String::new();
    wait_for("the reload", Duration::from_secs(60), || {
        text = scrape(metrics_port);
        metric_value(
            &text,
            r#"certkeeper_config_reloads_total{result="success"}"#,
        ) == Some(1.0)
    });
    assert!(!text.contains(r#"target="cdn-bad""#), "{text}");
    assert_eq!(
        value(&text, &format!("certkeeper_target_in_sync{GOOD}")),
        1.0
    );

    // Debug shows certkeeper's own detail, not the HTTP stack's connection pool.
    wait_for("a pass at debug level", Duration::from_secs(60), || {
        parsed(&logs)
            .iter()
            .any(|line| line["level"] == "DEBUG" && line["message"] == "next pass")
    });
    daemon.signal("TERM");
    assert!(daemon
        .wait_timeout(Duration::from_secs(60))
        .is_some_and(|status| status.success()));
    let lines = parsed(&logs);
    let third_party: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|line| {
            line["level"] == "DEBUG"
                && line["target"].as_str().is_some_and(|target| {
                    ["hyper", "reqwest", "h2", "rustls", "rusqlite"]
                        .iter()
                        .any(|quiet| target.starts_with(quiet))
                })
        })
        .collect();
    assert!(third_party.is_empty(), "{third_party:?}");
}
