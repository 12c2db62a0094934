//! A refused reload is state, not only a counter: `certkeeper_config_last_reload_successful`
//! drops to 0 while the daemon keeps running its previous config (and
//! `certkeeper_config_last_reload_timestamp_seconds` keeps saying when that one was
//! loaded); the next good reload sets both back. The alert `CertkeeperConfigReloadFailed`
//! reads the gauge (config/prometheus/alerts_test.yml replays it).

mod support;

use std::time::Duration;
use support::{
    certkeeper, http_get, metric_value, spawn_daemon, status_json, wait_for,
    write_local_ca_config_with,
};

const SUCCESSFUL: &str = "certkeeper_config_last_reload_successful";
const LOADED_AT: &str = "certkeeper_config_last_reload_timestamp_seconds";

fn scrape(port: u16) -> String {
    match http_get(port, "/metrics") {
        Some((200, text)) => text,
        other => panic!("/metrics did not answer: {other:?}"),
    }
}

#[test]
fn a_refused_reload_shows_as_a_gauge_until_a_good_one() {
    let directory = tempfile::tempdir().unwrap();
    let target = format!(
        "kind = \"file\"\ndirectory = \"{}\"",
        directory.path().join("tls").display()
    );
    let (config_path, port) = write_local_ca_config_with(directory.path(), "", &target);
    let good = std::fs::read_to_string(&config_path).unwrap();
    let mut daemon = spawn_daemon(&config_path, &[]);
    wait_for("the target in sync", Duration::from_secs(60), || {
        status_json(&config_path)["targets"][0]["in_sync"] == true
    });
    let text = scrape(port);
    assert_eq!(metric_value(&text, SUCCESSFUL), Some(1.0), "{text}");
    let loaded_at = metric_value(&text, LOADED_AT).unwrap_or(0.0);
    assert!(loaded_at > 1.7e9, "the start counts as a load: {text}");

    // A config that names a target nobody defines: refused on SIGHUP.
    std::fs::write(
        &config_path,
        good.replace(
            "deploy_to = [\"files\"]",
            "deploy_to = [\"files\", \"nowhere\"]",
        ),
    )
    .unwrap();
    daemon.signal("HUP");
    let mut text = String::new();
    wait_for("the refused reload", Duration::from_secs(60), || {
        text = scrape(port);
        metric_value(
            &text,
            r#"certkeeper_config_reloads_total{result="failure"}"#,
        ) == Some(1.0)
    });
    assert_eq!(metric_value(&text, SUCCESSFUL), Some(0.0), "{text}");
    assert_eq!(
        metric_value(&text, LOADED_AT),
        Some(loaded_at),
        "the running config is still the one loaded at start"
    );
    // The previous config keeps running (`status` would read the broken file: the
    // daemon's own series say it).
    assert_eq!(
        metric_value(
            &text,
            r#"certkeeper_target_in_sync{kind="file",target="files"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert!(
        daemon.0.try_wait().unwrap().is_none(),
        "the daemon still runs"
    );

    // Fixed and reloaded through the control socket: the gauge is back.
    std::fs::write(&config_path, &good).unwrap();
    let taken = certkeeper(&config_path, &["reload"], &[]);
    assert_eq!(taken.status.code(), Some(0), "{taken:?}");
    let text = scrape(port);
    assert_eq!(metric_value(&text, SUCCESSFUL), Some(1.0), "{text}");
    assert!(
        metric_value(&text, LOADED_AT).is_some_and(|at| at >= loaded_at),
        "{text}"
    );

    let (status, logs) = daemon.stop_and_read_logs();
    assert!(status.is_some_and(|status| status.success()), "{logs}");
    assert!(
        logs.lines().any(|line| line.contains(r#""level":"ERROR""#)
            && line.contains("reload refused")
            && line.contains("nowhere")),
        "the refusal is logged at ERROR naming the cause:\n{logs}"
    );
}
