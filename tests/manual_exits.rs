//! `certkeeper renew` and `certkeeper deploy` tell the truth in their exit code and print
//! each target's outcome: with a wrong access key for one CDN target, both exit 1 and name
//! that target's failure class and code while the healthy targets read `in sync`; files
//! the source rejects fail `renew`; an unknown name is a usage error (64). Checked both
//! in-process (no daemon) and through a running daemon's control socket. `plan` exits like
//! terraform's `-detailed-exitcode`: 0 no change, 2 changes, 1 something unreadable.

#![cfg(feature = "sim")]

mod support;

use std::path::Path;
use std::time::Duration;
use support::{certkeeper, spawn_daemon, start_sim, wait_for};

const SEED: &str = r#"
[[alibaba.accounts]]
access_key_id = "LTAImanual"
access_key_secret = "manual-good-secret"

[alibaba]
cdn_domains = ["good.example.com", "bad.example.com"]
"#;

const ENV: &[(&str, &str)] = &[
    ("TEST_GOOD_SECRET", "manual-good-secret"),
    ("TEST_WRONG_SECRET", "manual-wrong-secret"),
];

fn write_config(directory: &Path, sim: &str) -> std::path::PathBuf {
    let path = directory.join("certkeeper.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[daemon]
state_dir = "{state}"
metrics_listen = "127.0.0.1:{port}"

[credentials.good]
provider = "alibaba"
access_key_id = "LTAImanual"
access_key_secret_env = "TEST_GOOD_SECRET"
endpoint = "{sim}"

[credentials.wrong]
provider = "alibaba"
access_key_id = "LTAImanual"
access_key_secret_env = "TEST_WRONG_SECRET"
endpoint = "{sim}"

[local_ca.internal]
leaf_lifetime = "30d"

[[certificate]]
name = "www"
domains = ["good.example.com", "bad.example.com"]
source = {{ local_ca = "internal" }}
deploy_to = ["cdn-good", "cdn-bad", "files"]

[[certificate]]
name = "imported"
domains = ["imported.example.com"]
source = {{ file = {{ cert = "{broken}/cert.pem", key = "{broken}/key.pem" }} }}
deploy_to = []

[[target]]
name = "cdn-good"
kind = "alibaba-cdn"
credentials = "good"
domain = "good.example.com"

[[target]]
name = "cdn-bad"
kind = "alibaba-cdn"
credentials = "wrong"
domain = "bad.example.com"

[[target]]
name = "files"
kind = "file"
directory = "{files}"
"#,
            state = directory.join("state").display(),
            port = support::free_port(),
            files = directory.join("tls").display(),
            broken = directory.join("broken").display(),
        ),
    )
    .unwrap();
    std::fs::create_dir_all(directory.join("broken")).unwrap();
    std::fs::write(directory.join("broken/cert.pem"), "not a certificate\n").unwrap();
    std::fs::write(directory.join("broken/key.pem"), "not a key\n").unwrap();
    path
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The outcome lines a `renew`/`deploy` run printed for the failing and healthy targets.
fn assert_bad_target_reported(stdout: &str) {
    let bad = stdout
        .lines()
        .find(|line| line.trim_start().starts_with("cdn-bad:"))
        .unwrap_or_else(|| panic!("no line for cdn-bad: {stdout}"));
    assert!(bad.contains("failed: auth "), "class named: {bad}");
}

#[test]
fn renew_and_deploy_exit_1_naming_the_failing_target_in_process() {
    let sim = start_sim(SEED);
    let directory = tempfile::tempdir().unwrap();
    let config = write_config(directory.path(), &sim.url);

    // `plan` cannot read cdn-bad: 1, whatever else would change.
    let planned = certkeeper(&config, &["plan"], ENV);
    assert_eq!(planned.status.code(), Some(1), "{planned:?}");
    assert!(
        text(&planned.stdout).contains("1 could not be read"),
        "{planned:?}"
    );

    let renewed = certkeeper(&config, &["renew", "www"], ENV);
    let (stdout, stderr) = (text(&renewed.stdout), text(&renewed.stderr));
    assert_eq!(renewed.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("www: stored a new version; newest version "),
        "{stderr}"
    );
    assert!(stderr.contains("a deploy failed"), "{stderr}");
    assert_bad_target_reported(&stdout);
    assert!(stdout.contains("  cdn-good: in sync: "), "{stdout}");
    assert!(stdout.contains("  files: in sync: "), "{stdout}");

    let healthy = certkeeper(&config, &["deploy", "files"], ENV);
    assert_eq!(healthy.status.code(), Some(0), "{healthy:?}");
    assert!(
        text(&healthy.stdout).contains("files: in sync with "),
        "{healthy:?}"
    );

    let failing = certkeeper(&config, &["deploy", "cdn-bad"], ENV);
    let (stdout, stderr) = (text(&failing.stdout), text(&failing.stderr));
    assert_eq!(failing.status.code(), Some(1), "{stdout}\n{stderr}");
    assert_bad_target_reported(&stdout);
    assert!(stderr.contains("cdn-bad: failed: auth "), "{stderr}");

    let rejected = certkeeper(&config, &["renew", "imported"], ENV);
    let stderr = text(&rejected.stderr);
    assert_eq!(rejected.status.code(), Some(1), "{rejected:?}");
    assert!(stderr.contains("imported: "), "{stderr}");
    assert!(stderr.contains("(rejected)"), "{stderr}");

    let unknown = certkeeper(&config, &["deploy", "nope"], ENV);
    assert_eq!(unknown.status.code(), Some(64), "{unknown:?}");
}

#[test]
fn deploy_through_the_daemon_exits_1_for_a_wrong_key() {
    let sim = start_sim(SEED);
    let directory = tempfile::tempdir().unwrap();
    let config = write_config(directory.path(), &sim.url);
    let mut daemon = spawn_daemon(&config, ENV);
    let socket = directory.path().join("state/control.sock");
    wait_for("the control socket", Duration::from_secs(60), || {
        socket.exists()
    });

    let failing = certkeeper(&config, &["deploy", "cdn-bad"], ENV);
    let (stdout, stderr) = (text(&failing.stdout), text(&failing.stderr));
    assert_eq!(failing.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        !stderr.contains("no daemon is running"),
        "answered by the daemon: {stderr}"
    );
    assert_bad_target_reported(&stdout);

    let healthy = certkeeper(&config, &["deploy", "cdn-good"], ENV);
    assert_eq!(healthy.status.code(), Some(0), "{healthy:?}");
    assert!(
        text(&healthy.stdout).contains("  cdn-good: in sync: "),
        "{healthy:?}"
    );

    daemon.signal("TERM");
    assert!(
        daemon.wait_timeout(Duration::from_secs(60)).is_some(),
        "the daemon stops on SIGTERM"
    );
}

#[test]
fn plan_exits_2_with_changes_and_0_once_converged() {
    let directory = tempfile::tempdir().unwrap();
    let config = support::write_local_ca_config(directory.path());
    let before = certkeeper(&config, &["plan"], &[]);
    assert_eq!(before.status.code(), Some(2), "{before:?}");
    assert!(text(&before.stdout).contains("obtain"), "{before:?}");
    let renewed = certkeeper(&config, &["renew", "internal"], &[]);
    assert_eq!(renewed.status.code(), Some(0), "{renewed:?}");
    let after = certkeeper(&config, &["plan"], &[]);
    assert_eq!(after.status.code(), Some(0), "{after:?}");
    assert!(text(&after.stdout).contains("No changes"), "{after:?}");
}
