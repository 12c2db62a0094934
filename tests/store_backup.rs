//! `certkeeper store backup` and `store restore` through the real binary: a backup taken
//! while the daemon runs is a 0600 file whose keys stay sealed; restored into an empty state
//! directory it gives the same `status --json` and the daemon carries on from it; restore is
//! refused while a daemon runs, and a damaged, foreign or newer backup is refused before
//! anything is replaced.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;
use support::store::*;
use support::{certkeeper, spawn_daemon, status_json, wait_for};

/// A sealed daemon run until it deployed, stopped; returns its config.
fn sealed_and_converged(directory: &Path) -> std::path::PathBuf {
    let key_file = directory.join("store.key");
    write_key(&key_file);
    let config = config_with_key(directory, Some(&key_file));
    converge(&config);
    config
}

#[test]
fn a_backup_taken_while_the_daemon_runs_restores_into_an_empty_state_dir() {
    let directory = tempfile::tempdir().unwrap();
    let key_file = directory.path().join("store.key");
    write_key(&key_file);
    let config = config_with_key(directory.path(), Some(&key_file));
    let backups = directory.path().join("backups");
    std::fs::create_dir(&backups).unwrap();
    let backup = backups.join("certkeeper.db");

    let mut daemon = spawn_daemon(&config, &[]);
    wait_for("the daemon to deploy", Duration::from_secs(120), || {
        in_sync(&config)
    });
    let taken = certkeeper(&config, &["store", "backup", backup.to_str().unwrap()], &[]);
    assert_eq!(taken.status.code(), Some(0), "{}", text(&taken.stderr));
    let stdout = text(&taken.stdout);
    assert!(stdout.contains("backed up"), "{stdout}");
    assert!(stdout.contains("keys sealed with store key"), "{stdout}");
    let (status, logs) = daemon.stop_and_read_logs();
    assert_eq!(status.and_then(|status| status.code()), Some(0), "{logs}");

    assert_eq!(
        std::fs::metadata(&backup).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let copied = std::fs::read(&backup).unwrap();
    assert!(!holds(&copied, "PRIVATE KEY"));
    assert!(holds(&copied, "certkeeper-sealed:v1:"));
    // Nothing but the backup was left in its directory (no temporary file).
    assert_eq!(std::fs::read_dir(&backups).unwrap().count(), 1);
    let before = status_json(&config);
    assert!(
        before["certificates"][0]["fingerprint"].is_string(),
        "{before}"
    );

    // A new host: the state directory is gone.
    std::fs::rename(
        directory.path().join("state"),
        directory.path().join("lost"),
    )
    .unwrap();
    let restored = certkeeper(
        &config,
        &["store", "restore", backup.to_str().unwrap()],
        &[],
    );
    assert_eq!(
        restored.status.code(),
        Some(0),
        "{}",
        text(&restored.stderr)
    );
    let stdout = text(&restored.stdout);
    assert!(stdout.contains("restored"), "{stdout}");
    assert!(
        !stdout.contains("note:"),
        "the configured key fits: {stdout}"
    );
    assert_eq!(status_json(&config), before);
    let state = directory.path().join("state");
    assert_eq!(
        std::fs::metadata(&state).unwrap().permissions().mode() & 0o077,
        0
    );
    assert_eq!(
        std::fs::metadata(state.join("state.db"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );

    // The daemon carries on from the restored store with the same key: no new certificate.
    converge(&config);
    assert_eq!(status_json(&config)["certificates"], before["certificates"]);
}

#[test]
fn restore_is_refused_while_a_daemon_runs() {
    let directory = tempfile::tempdir().unwrap();
    let config = sealed_and_converged(directory.path());
    let backup = directory.path().join("backup.db");
    let taken = certkeeper(&config, &["store", "backup", backup.to_str().unwrap()], &[]);
    assert_eq!(taken.status.code(), Some(0), "{}", text(&taken.stderr));

    let mut daemon = spawn_daemon(&config, &[]);
    wait_for("the daemon to be ready", Duration::from_secs(120), || {
        in_sync(&config)
    });
    let refused = certkeeper(
        &config,
        &["store", "restore", backup.to_str().unwrap()],
        &[],
    );
    let stderr = text(&refused.stderr);
    assert_eq!(refused.status.code(), Some(74), "{stderr}");
    assert!(
        stderr.contains("another certkeeper daemon is running"),
        "{stderr}"
    );
    assert!(stderr.contains("stop it first"), "{stderr}");
    let (status, logs) = daemon.stop_and_read_logs();
    assert_eq!(status.and_then(|status| status.code()), Some(0), "{logs}");
    assert!(!directory
        .path()
        .join("state/state.db.before-restore")
        .exists());
}

#[test]
fn a_damaged_foreign_or_newer_backup_is_refused_and_nothing_replaced() {
    let directory = tempfile::tempdir().unwrap();
    let config = sealed_and_converged(directory.path());
    let backup = directory.path().join("backup.db");
    let taken = certkeeper(&config, &["store", "backup", backup.to_str().unwrap()], &[]);
    assert_eq!(taken.status.code(), Some(0), "{}", text(&taken.stderr));
    let database = directory.path().join("state/state.db");
    let before = std::fs::read(&database).unwrap();

    let foreign = directory.path().join("notes.txt");
    std::fs::write(&foreign, "these are not the droids\n".repeat(200)).unwrap();

    let damaged = directory.path().join("damaged.db");
    let mut bytes = std::fs::read(&backup).unwrap();
    // Page 2 onwards: the schema page stays readable, the tables' pages do not.
    let page = 4096.min(bytes.len() / 2);
    for byte in &mut bytes[page..page + 200] {
        *byte = 0xa5;
    }
    std::fs::write(&damaged, bytes).unwrap();

    let newer = directory.path().join("newer.db");
    std::fs::copy(&backup, &newer).unwrap();
    rusqlite::Connection::open(&newer)
        .unwrap()
        .pragma_update(None, "user_version", 999)
        .unwrap();

    // A backup sealed with another key than the configured one: restored, and said so.
    let other_key = directory.path().join("other.key");
    write_key(&other_key);
    let elsewhere = tempfile::tempdir().unwrap();
    let other_config = config_with_key(elsewhere.path(), Some(&other_key));
    let restored = certkeeper(
        &other_config,
        &["store", "restore", backup.to_str().unwrap()],
        &[],
    );
    let stdout = text(&restored.stdout);
    assert_eq!(
        restored.status.code(),
        Some(0),
        "{}",
        text(&restored.stderr)
    );
    assert!(stdout.contains("not with the configured key"), "{stdout}");

    for (file, expected) in [
        (&foreign, "not a database"),
        (&damaged, "integrity check failed"),
        (&newer, "written by a newer certkeeper"),
    ] {
        let refused = certkeeper(&config, &["store", "restore", file.to_str().unwrap()], &[]);
        let stderr = text(&refused.stderr);
        assert_eq!(
            refused.status.code(),
            Some(74),
            "{}: {stderr}",
            file.display()
        );
        assert!(stderr.contains(expected), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "{} not restored, the state store is unchanged: {}",
                file.display(),
                file.display()
            )),
            "{stderr}"
        );
        assert_eq!(std::fs::read(&database).unwrap(), before);
        assert!(!directory
            .path()
            .join("state/state.db.before-restore")
            .exists());
        let leftovers: Vec<_> = std::fs::read_dir(directory.path().join("state"))
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.contains("restore"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}
