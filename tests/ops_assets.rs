//! Operations assets: the alert rules pass their promtool unit tests, and every metric the
//! alerts and the Grafana dashboard name is one the daemon exports.

use certkeeper::telemetry::metrics::Metrics;
use std::collections::BTreeSet;
use std::process::Command;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn alert_rules_pass_promtool_unit_tests() {
    let output = Command::new("promtool")
        .args(["test", "rules", "alerts_test.yml"])
        .current_dir(format!("{ROOT}/config/prometheus"))
        .output()
        .expect(
            "promtool must be installed (Debian package `prometheus`; scripts/test installs it)",
        );
    assert!(
        output.status.success(),
        "promtool test rules failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let check = Command::new("promtool")
        .args(["check", "rules", "alerts.yml"])
        .current_dir(format!("{ROOT}/config/prometheus"))
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
}

/// Every `certkeeper_*` identifier in a text.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("certkeeper_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

#[test]
fn every_metric_in_alerts_and_dashboard_is_exported() {
    let exported: BTreeSet<String> = Metrics::new().unwrap().family_names().into_iter().collect();
    let alerts = std::fs::read_to_string(format!("{ROOT}/config/prometheus/alerts.yml")).unwrap();
    let dashboard =
        std::fs::read_to_string(format!("{ROOT}/config/grafana/certkeeper.json")).unwrap();
    let dashboard_json: serde_json::Value =
        serde_json::from_str(&dashboard).expect("dashboard is valid JSON");
    assert!(dashboard_json["panels"]
        .as_array()
        .is_some_and(|panels| panels.len() >= 5));
    let mut used = metric_names(&alerts);
    used.extend(metric_names(&dashboard));
    // Alert names (CertkeeperX) are not metrics; only snake_case identifiers count.
    assert!(used.len() >= 10, "{used:?}");
    let missing: Vec<_> = used.difference(&exported).collect();
    assert!(missing.is_empty(), "named but not exported: {missing:?}");
}
