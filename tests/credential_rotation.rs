//! Rotation without restart (issue 17): a CDN target whose secret file holds a wrong value
//! fails on authentication and waits out its one-hour auth backoff; the operator replaces the
//! file (write beside, rename over) and, without SIGHUP or `certkeeper deploy`, the daemon
//! notices the new secret, says so at INFO, and deploys: the failure series the alerts read
//! (`consecutive_failures`, `last_error_info`, `parked`) go back to healthy.

#![cfg(feature = "sim")]

mod support;

use std::path::Path;
use std::time::Duration;
use support::wrong_key_fleet::{GOOD_SECRET, SEED, WRONG_SECRET};
use support::{free_port, http_get, metric_value, spawn_daemon, start_sim, wait_for};

const TARGET: &str = r#"{kind="alibaba-cdn",target="cdn-rotating"}"#;
const AUTH_ERROR: &str =
    r#"certkeeper_target_last_error_info{class="auth",kind="alibaba-cdn",target="cdn-rotating"}"#;

fn config(sim: &str, state_dir: &Path, metrics_port: u16, secret_file: &Path) -> String {
    format!(
        r#"
[daemon]
state_dir = "{state}"
metrics_listen = "127.0.0.1:{metrics_port}"

[credentials.rotating]
provider = "alibaba"
access_key_id = "LTAIoperatortest"
access_key_secret_file = "{secret}"
endpoint = "{sim}"

[local_ca.internal]
leaf_lifetime = "30d"

[[certificate]]
name = "www"
domains = ["www.example.com"]
source = {{ local_ca = "internal" }}
deploy_to = ["cdn-rotating"]

[[target]]
name = "cdn-rotating"
kind = "alibaba-cdn"
credentials = "rotating"
domain = "www.example.com"
"#,
        state = state_dir.display(),
        secret = secret_file.display(),
    )
}

/// Writes `secret` to `path` as an operator's tooling does: a new file beside it, renamed
/// over the old one (the daemon never sees a half-written secret).
fn replace_secret(path: &Path, secret: &str) {
    use std::os::unix::fs::PermissionsExt;
    let staged = path.with_extension("new");
    std::fs::write(&staged, format!("{secret}\n")).unwrap();
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::rename(&staged, path).unwrap();
}

fn scrape(port: u16) -> String {
    match http_get(port, "/metrics") {
        Some((200, text)) => text,
        other => panic!("/metrics did not answer: {other:?}"),
    }
}

#[test]
fn a_replaced_secret_file_retries_what_its_wrong_value_failed_without_sighup() {
    let sim = start_sim(SEED);
    let directory = tempfile::tempdir().unwrap();
    let secret_file = directory.path().join("alibaba.secret");
    replace_secret(&secret_file, WRONG_SECRET);
    let config_path = directory.path().join("certkeeper.toml");
    let metrics_port = free_port();
    std::fs::write(
        &config_path,
        config(
            &sim.url,
            &directory.path().join("state"),
            metrics_port,
            &secret_file,
        ),
    )
    .unwrap();
    let mut daemon = spawn_daemon(&config_path, &[("RUST_LOG", "")]);

    // The wrong secret: an auth failure, held back by its one-hour backoff.
    let mut text = String::new();
    wait_for("the auth failure", Duration::from_secs(60), || {
        text = http_get(metrics_port, "/metrics")
            .map(|(_, text)| text)
            .unwrap_or_default();
        metric_value(&text, AUTH_ERROR) == Some(1.0)
    });
    let series = |text: &str, family: &str| metric_value(text, &format!("{family}{TARGET}"));
    assert_eq!(series(&text, "certkeeper_target_in_sync"), Some(0.0));
    assert!(series(&text, "certkeeper_target_consecutive_failures").unwrap_or(0.0) >= 1.0);
    assert_eq!(
        series(&text, "certkeeper_target_parked"),
        Some(0.0),
        "an auth failure backs off, it is not parked:\n{text}"
    );

    replace_secret(&secret_file, GOOD_SECRET);
    wait_for(
        "the deploy with the replaced secret",
        Duration::from_secs(60),
        || series(&scrape(metrics_port), "certkeeper_target_in_sync") == Some(1.0),
    );
    let text = scrape(metrics_port);
    assert_eq!(
        series(&text, "certkeeper_target_consecutive_failures"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(
        series(&text, "certkeeper_target_parked"),
        Some(0.0),
        "{text}"
    );
    assert_ne!(
        metric_value(&text, AUTH_ERROR),
        Some(1.0),
        "the auth error is no longer reported:\n{text}"
    );
    assert_eq!(
        metric_value(
            &text,
            r#"certkeeper_config_reloads_total{result="success"}"#
        )
        .unwrap_or(0.0),
        0.0,
        "no reload was involved:\n{text}"
    );

    let (status, logs) = daemon.stop_and_read_logs();
    assert!(status.is_some_and(|status| status.success()), "{logs}");
    let lines: Vec<serde_json::Value> = logs
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let noticed = lines.iter().find(|line| {
        line["message"]
            .as_str()
            .is_some_and(|message| message.contains("changed on disk"))
    });
    let noticed = noticed.unwrap_or_else(|| panic!("no line says why it retried:\n{logs}"));
    assert_eq!(noticed["level"], "INFO", "{noticed}");
    assert!(noticed.to_string().contains("rotating"), "{noticed}");
    // The line's `target` field (the target's name) shares its key with tracing's own
    // target, so the raw line is searched.
    assert!(
        logs.lines().any(|line| line.contains(r#""level":"INFO""#)
            && line.contains(r#""target":"cdn-rotating""#)
            && line.contains("auth backoff reset")),
        "the target's reset is logged:\n{logs}"
    );
    for secret in [GOOD_SECRET, WRONG_SECRET] {
        assert!(!logs.contains(secret), "a secret reached the logs");
    }
}
