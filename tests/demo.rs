//! `certkeeper demo --once` on a fresh directory: the offline demo rolls a certificate out to
//! every simulated target and makes both policies compliant.

#![cfg(feature = "sim")]

use std::process::Command;

#[test]
fn demo_converges_offline() {
    let directory = tempfile::tempdir().unwrap();
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = Command::new(env!("CARGO_BIN_EXE_certkeeper"))
        .args([
            "demo",
            "--once",
            "--cdn-domains",
            "5",
            "--log-level",
            "warn",
            "--directory",
        ])
        .arg(directory.path().join("demo"))
        .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout
            .contains("rollout: 8/8 targets in sync, 0 failing; policies: 2/2 resources compliant"),
        "{stdout}"
    );
    for secret in [
        "demo-alibaba-secret",
        "demo-huawei-secret",
        "demo-qingcloud-secret",
    ] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "secret leaked"
        );
    }
    let files = directory.path().join("demo/tls");
    assert!(std::fs::read_to_string(files.join("fullchain.pem"))
        .unwrap()
        .contains("BEGIN CERTIFICATE"));
}
