//! `certkeeper status` through the binary, on an empty and on a populated state directory,
//! as a table and as JSON; and the daemon's systemd `STATUS=` line after a pass.

mod support;

use certkeeper::cert::bundle::testing;
use certkeeper::error::ErrorClass;
use certkeeper::store::sqlite::SqliteStore;
use certkeeper::store::{
    CertificateVersion, DeployStatus, DeploymentRecord, LastError, StateStore,
};
use std::process::Command;
use time::OffsetDateTime;

fn config(state_dir: &std::path::Path) -> String {
    format!(
        r#"
[daemon]
state_dir = "{}"

[credentials.ali]
provider = "alibaba"
access_key_id = "AK"
access_key_secret_env = "ALI_SECRET"

[[target]]
name = "cdn-www"
kind = "alibaba-cdn"
credentials = "ali"
domain = "www.example.com"

[[target]]
name = "files"
kind = "file"
directory = "/tmp/certkeeper-status-test"

[[certificate]]
name = "www"
domains = ["www.example.com"]
source = {{ file = {{ cert = "/x/c.pem", key = "/x/k.pem" }} }}
deploy_to = ["cdn-www", "files"]
"#,
        state_dir.display()
    )
}

fn status(config_path: &std::path::Path, json: bool) -> (i32, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_certkeeper"));
    command.arg("status").arg("--config").arg(config_path);
    if json {
        command.arg("--json");
    }
    let output = command.output().unwrap();
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn empty_state_dir_lists_configured_items_and_creates_nothing() {
    let directory = tempfile::tempdir().unwrap();
    let state_dir = directory.path().join("state");
    let config_path = directory.path().join("certkeeper.toml");
    std::fs::write(&config_path, config(&state_dir)).unwrap();

    let (code, stdout, stderr) = status(&config_path, false);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("CERTIFICATE"), "{stdout}");
    assert!(
        stdout
            .lines()
            .any(|line| line.starts_with("www ") && line.contains("not obtained")),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|line| line.starts_with("cdn-www") && line.contains("no (never_deployed)")),
        "{stdout}"
    );
    assert!(
        !state_dir.exists(),
        "status must not create the state directory"
    );

    let (code, stdout, _) = status(&config_path, true);
    assert_eq!(code, 0);
    let view: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(view["certificates"][0]["name"], "www");
    assert!(view["certificates"][0]["fingerprint"].is_null());
    assert_eq!(view["targets"].as_array().unwrap().len(), 2);
    assert_eq!(view["targets"][0]["in_sync"], false);
}

#[test]
fn populated_state_dir_shows_versions_sync_and_errors() {
    let directory = tempfile::tempdir().unwrap();
    let state_dir = directory.path().join("state");
    let config_path = directory.path().join("certkeeper.toml");
    std::fs::write(&config_path, config(&state_dir)).unwrap();
    let bundle = testing::fresh(&["www.example.com"]);
    let now = OffsetDateTime::now_utc();
    {
        let store = SqliteStore::open(&state_dir).unwrap();
        let version = CertificateVersion::from_bundle("www", &bundle, "file", now);
        store
            .insert_certificate_version(&version, &["cdn-www".into(), "files".into()])
            .unwrap();
        let mut synced = store.deployment("files", "www").unwrap().unwrap();
        synced.status = DeployStatus::InSync;
        synced.observed_fingerprint = Some(bundle.fingerprint().to_owned());
        store.put_deployment(&synced).unwrap();
        let failed = DeploymentRecord {
            status: DeployStatus::Failed,
            attempts: 2,
            last_error: Some(LastError {
                class: ErrorClass::Throttled,
                code: "Throttling.User".into(),
                message: "Request was denied due to user flow control.".into(),
            }),
            ..store.deployment("cdn-www", "www").unwrap().unwrap()
        };
        store.put_deployment(&failed).unwrap();
    }

    let (code, stdout, stderr) = status(&config_path, false);
    assert_eq!(code, 0, "{stderr}");
    let www = stdout
        .lines()
        .find(|line| line.starts_with("www "))
        .unwrap();
    assert!(
        www.contains("file") && (www.contains(" 89 ") || www.contains(" 90 ")),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|line| line.starts_with("files") && line.contains("yes")),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|line| line.starts_with("cdn-www") && line.contains("throttled Throttling.User")),
        "{stdout}"
    );

    let (code, stdout, _) = status(&config_path, true);
    assert_eq!(code, 0);
    let view: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(view["certificates"][0]["fingerprint"], bundle.fingerprint());
    let cdn = view["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|target| target["name"] == "cdn-www")
        .unwrap();
    assert_eq!(cdn["status"], "failed");
    assert_eq!(cdn["last_error_class"], "throttled");
    assert_eq!(cdn["attempts"], 2);
    assert!(
        !stdout.contains("PRIVATE KEY"),
        "no key material in status output"
    );
}

/// After each pass the daemon tells systemd its state in words (what `systemctl status`
/// shows): targets in sync, the next renewal as a span, failures; never a raw timestamp.
#[test]
fn systemd_status_line_reads_in_words() {
    use std::os::unix::net::UnixDatagram;
    use std::time::{Duration, Instant};
    let directory = tempfile::tempdir().unwrap();
    let socket_path = directory.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let config_path = support::write_local_ca_config(directory.path());
    let mut daemon = support::ChildGuard(
        support::certkeeper_command()
            .args(["run", "--config"])
            .arg(&config_path)
            .env("NOTIFY_SOCKET", &socket_path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut buffer = [0u8; 4096];
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let line = loop {
        assert!(Instant::now() < deadline, "no converged STATUS: {seen:?}");
        let Ok(length) = socket.recv(&mut buffer) else {
            continue;
        };
        let message = String::from_utf8_lossy(&buffer[..length]).into_owned();
        let status = message
            .lines()
            .find_map(|line| line.strip_prefix("STATUS="))
            .map(str::to_owned);
        seen.push(message);
        if let Some(status) = status.filter(|status| status.starts_with("1/1 in sync")) {
            break status;
        }
    };
    // A 30-day leaf renews at about two thirds of its life: 19 or 20 days from now.
    let (before, after) = line
        .split_once(", next renewal internal in ")
        .unwrap_or_else(|| panic!("{line}"));
    assert_eq!(before, "1/1 in sync", "{line}");
    let days = after
        .strip_suffix("d, 0 failing")
        .and_then(|days| days.parse::<u32>().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!((15..=20).contains(&days), "{line}");
    daemon.signal("TERM");
    assert!(daemon.wait_timeout(Duration::from_secs(60)).is_some());
}
