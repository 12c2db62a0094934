//! The shipped systemd unit passes `systemd-analyze verify`, scores at most 2.0 on
//! `systemd-analyze security --offline=true`, and sets the process limits and restart policy
//! the daemon relies on.

use std::process::Command;

fn unit_with_built_binary(directory: &std::path::Path) -> std::path::PathBuf {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/certkeeper.service"
    ))
    .unwrap();
    // verify checks that ExecStart's binary exists: point it at the one cargo built.
    let unit = unit.replace("/usr/bin/certkeeper", env!("CARGO_BIN_EXE_certkeeper"));
    let path = directory.join("certkeeper.service");
    std::fs::write(&path, unit).unwrap();
    path
}

#[test]
fn unit_verifies_and_is_hardened() {
    let directory = tempfile::tempdir().unwrap();
    let unit = unit_with_built_binary(directory.path());
    // Documentation= names man pages this machine has not installed (tests/package.rs checks
    // them against the package's).
    let verify = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze is installed");
    let verify_text = format!(
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(verify.status.success(), "verify failed:\n{verify_text}");
    assert!(
        !verify_text.contains("certkeeper.service:"),
        "verify warned:\n{verify_text}"
    );

    let security = Command::new("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(&unit)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&security.stdout);
    let score: f64 = text
        .lines()
        .find_map(|line| {
            line.split("Overall exposure level for certkeeper.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("no exposure score in:\n{text}"));
    assert!(score <= 2.0, "exposure {score} > 2.0:\n{text}");
}

/// The value of `key` in the unit (the last assignment wins, as in systemd).
fn setting(unit: &str, key: &str) -> Option<String> {
    unit.lines()
        .rev()
        .find_map(|line| line.trim().strip_prefix(key)?.strip_prefix('='))
        .map(|value| value.trim().to_owned())
}

#[test]
fn unit_limits_and_restart_policy() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/systemd/certkeeper.service"
    ))
    .unwrap();
    // No core dumps: they would hold private keys and secrets.
    assert_eq!(setting(&unit, "LimitCORE").as_deref(), Some("0"));
    // Enough descriptors for the connection caps, yet bounded.
    let files: u64 = setting(&unit, "LimitNOFILE")
        .and_then(|value| value.parse().ok())
        .expect("LimitNOFILE is a number");
    let caps = (certkeeper::control::MAX_CONNECTIONS
        + certkeeper::telemetry::server::MAX_CONNECTIONS) as u64;
    assert!(files >= 4 * caps && files <= 65_536, "LimitNOFILE={files}");
    // Exit codes a restart cannot fix stop the restarts; internal errors (70) do not.
    let prevented: Vec<String> = setting(&unit, "RestartPreventExitStatus")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(prevented, ["64", "65", "74", "78"]);
    assert_eq!(setting(&unit, "Restart").as_deref(), Some("on-failure"));
    // The watchdog is armed, so a stalled pass (no WATCHDOG=1) gets the service restarted.
    assert!(setting(&unit, "WatchdogSec").is_some());
}
