//! Helpers of the `store_*` tests (`support::store`): a local CA daemon with or without a
//! store key, run until it has deployed, and the raw bytes of its store.

use crate::support::{http_get, spawn_daemon, status_json, wait_for, write_local_ca_config};
use base64::Engine;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Writes a random store key (base64, 0600) to `path` and returns its text.
pub fn write_key(path: &Path) -> String {
    let text = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 32]>());
    std::fs::write(path, format!("{text}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    text
}

/// The local CA config with `[store] key_file = KEY` appended (or without `[store]`).
pub fn config_with_key(directory: &Path, key: Option<&Path>) -> PathBuf {
    let path = write_local_ca_config(directory);
    let mut text = std::fs::read_to_string(&path).unwrap();
    if let Some(key) = key {
        text.push_str(&format!("\n[store]\nkey_file = \"{}\"\n", key.display()));
    }
    std::fs::write(&path, text).unwrap();
    path
}

pub fn set_key(config: &Path, key: Option<&Path>) {
    let text = std::fs::read_to_string(config).unwrap();
    let base = text.split("\n[store]").next().unwrap().to_owned();
    let text = match key {
        Some(key) => format!("{base}\n[store]\nkey_file = \"{}\"\n", key.display()),
        None => base,
    };
    std::fs::write(config, text).unwrap();
}

/// Every target serves the certificate and the daemon finished its first pass (so its
/// signal handlers are in place).
pub fn in_sync(config: &Path) -> bool {
    let text = std::fs::read_to_string(config).unwrap();
    let port: u16 = text
        .split("metrics_listen = \"127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .and_then(|port| port.parse().ok())
        .expect("the config names its metrics port");
    http_get(port, "/readyz").is_some_and(|(status, _)| status == 200)
        && status_json(config)["targets"]
            .as_array()
            .is_some_and(|rows| !rows.is_empty() && rows.iter().all(|row| row["in_sync"] == true))
}

/// Runs the daemon until the certificate is deployed; returns its logs after SIGTERM.
pub fn converge(config: &Path) -> String {
    let mut daemon = spawn_daemon(config, &[]);
    wait_for("the daemon to deploy", Duration::from_secs(120), || {
        in_sync(config)
    });
    let (status, logs) = daemon.stop_and_read_logs();
    assert_eq!(status.and_then(|status| status.code()), Some(0), "{logs}");
    logs
}

/// `state.db` and its WAL (when there is one), as raw bytes.
pub fn raw_store(directory: &Path) -> Vec<u8> {
    let state = directory.join("state");
    let mut bytes = std::fs::read(state.join("state.db")).unwrap();
    if let Ok(wal) = std::fs::read(state.join("state.db-wal")) {
        bytes.extend(wal);
    }
    bytes
}

pub fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
