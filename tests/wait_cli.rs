//! `certkeeper wait --certificate NAME`: for init containers and startup ordering. It exits 0
//! once the daemon stored (and, with `--deployed`, deployed) a version, 1 on timeout naming
//! what is missing, 64 for a certificate the config does not have.

mod support;

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::{certkeeper, certkeeper_command, spawn_daemon, write_local_ca_config, ChildGuard};

#[test]
fn unknown_certificate_is_a_usage_error() {
    let directory = tempfile::tempdir().unwrap();
    let config = write_local_ca_config(directory.path());
    let output = certkeeper(&config, &["wait", "--certificate", "nope"], &[]);
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("no [[certificate]] named `nope`"),
        "{stderr}"
    );
}

#[test]
fn times_out_with_exit_1_naming_what_is_missing() {
    let directory = tempfile::tempdir().unwrap();
    let config = write_local_ca_config(directory.path());
    let started = Instant::now();
    let output = certkeeper(
        &config,
        &["wait", "--certificate", "internal", "--timeout", "1s"],
        &[],
    );
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("timed out after 1s: internal has no stored version yet"),
        "{stderr}"
    );
    // Only a guard against a hang: the timeout is 1 s.
    assert!(started.elapsed() < Duration::from_secs(60));
    // Read-only: waiting created no store.
    assert!(!directory.path().join("state/state.db").exists());
}

#[test]
fn returns_once_the_daemon_deployed_the_first_version() {
    let directory = tempfile::tempdir().unwrap();
    let config = write_local_ca_config(directory.path());
    // Started before the daemon, as an init container or ExecStartPre of a web server is.
    let mut waiting = ChildGuard(
        certkeeper_command()
            .args([
                "wait",
                "--certificate",
                "internal",
                "--deployed",
                "--timeout",
                "5m",
                "--config",
            ])
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let _daemon = spawn_daemon(&config, &[]);
    let status = waiting
        .wait_timeout(Duration::from_secs(120))
        .expect("wait returned once the certificate was deployed");
    let mut stdout = String::new();
    waiting
        .0
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let mut stderr = String::new();
    waiting
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("internal: version "), "{stdout}");
    assert!(stdout.contains("deployed to 1 target(s)"), "{stdout}");
    // What a web server started next finds.
    assert!(directory.path().join("tls/cert.pem").is_file());
    assert!(directory.path().join("tls/key.pem").is_file());
}
