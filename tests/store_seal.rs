//! Keys sealed at rest, as the operator lives it through the real binary: a daemon with
//! `[store] key_file` leaves no PEM private key in `state.db` or its WAL; an existing plain
//! store is sealed on the first start with a key; a sealed store started without its key or
//! with another is refused (exit 78, a message saying which) and left byte for byte as it
//! was; `store rekey` moves the keys to a new key, refused while the daemon runs, and the
//! daemon starts with the new key; `check` reports all of it.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;
use support::store::*;
use support::{certkeeper, spawn_daemon, status_json, wait_for};

#[test]
fn a_sealed_daemon_leaves_no_pem_private_key_in_the_database_or_its_wal() {
    let directory = tempfile::tempdir().unwrap();
    let key_file = directory.path().join("store.key");
    let key = write_key(&key_file);
    let config = config_with_key(directory.path(), Some(&key_file));

    let checked = certkeeper(&config, &["check"], &[]);
    let stdout = text(&checked.stdout);
    assert!(
        stdout.contains("state store: none yet; keys will be sealed with store key "),
        "{stdout}"
    );
    let mut daemon = spawn_daemon(&config, &[]);
    wait_for("the daemon to deploy", Duration::from_secs(120), || {
        in_sync(&config)
    });
    // While it runs, with its WAL in use.
    let running = raw_store(directory.path());
    assert!(!holds(&running, "PRIVATE KEY"));
    assert!(holds(&running, "certkeeper-sealed:v1:"));
    let (status, logs) = daemon.stop_and_read_logs();
    assert_eq!(status.and_then(|status| status.code()), Some(0), "{logs}");
    assert!(!logs.contains(key.trim()), "the store key reached the logs");
    let stopped = raw_store(directory.path());
    assert!(!holds(&stopped, "PRIVATE KEY"));

    // The file target's key is written as before: plain PEM, 0600.
    let tls = directory.path().join("tls");
    let key_pem = std::fs::read_dir(&tls)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| std::fs::read_to_string(path).is_ok_and(|text| text.contains("PRIVATE KEY")))
        .expect("the file target wrote a key");
    assert_eq!(
        std::fs::metadata(&key_pem).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // check names the key the store is sealed with.
    let checked = certkeeper(&config, &["check"], &[]);
    assert_eq!(checked.status.code(), Some(0), "{}", text(&checked.stderr));
    let stdout = text(&checked.stdout);
    assert!(stdout.contains("state store: "), "{stdout}");
    assert!(stdout.contains("sealed with store key "), "{stdout}");
    assert!(!stdout.contains(key.trim()));
}

#[test]
fn a_plain_store_is_sealed_on_the_first_start_with_a_key() {
    let directory = tempfile::tempdir().unwrap();
    let config = config_with_key(directory.path(), None);
    converge(&config);
    assert!(holds(&raw_store(directory.path()), "PRIVATE KEY"));
    let before = status_json(&config);

    let key_file = directory.path().join("store.key");
    write_key(&key_file);
    set_key(&config, Some(&key_file));
    let checked = certkeeper(&config, &["check"], &[]);
    let stdout = text(&checked.stdout);
    assert!(stdout.contains("in plain text"), "{stdout}");
    assert!(
        stdout.contains("the daemon seals them when it starts"),
        "{stdout}"
    );

    let logs = converge(&config);
    assert!(
        logs.contains("sealed the plain-text keys of the state store"),
        "{logs}"
    );
    assert!(!holds(&raw_store(directory.path()), "PRIVATE KEY"));
    // The same certificate: nothing was issued again to get there.
    assert_eq!(status_json(&config)["certificates"], before["certificates"]);
}

#[test]
fn a_sealed_store_started_without_its_key_or_with_another_is_refused_unchanged() {
    let directory = tempfile::tempdir().unwrap();
    let key_file = directory.path().join("store.key");
    let key = write_key(&key_file);
    let config = config_with_key(directory.path(), Some(&key_file));
    converge(&config);
    let database = directory.path().join("state/state.db");
    let before = std::fs::read(&database).unwrap();

    set_key(&config, None);
    let refused = certkeeper(&config, &["run"], &[]);
    let stderr = text(&refused.stderr);
    assert_eq!(refused.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("is sealed with store key"), "{stderr}");
    assert!(stderr.contains("no store key is configured"), "{stderr}");
    assert!(stderr.contains("nothing was changed"), "{stderr}");
    assert_eq!(std::fs::read(&database).unwrap(), before);
    let checked = certkeeper(&config, &["check"], &[]);
    assert_eq!(checked.status.code(), Some(78));
    assert!(text(&checked.stderr).contains("no store key is configured"));

    let wrong_file = directory.path().join("wrong.key");
    let wrong = write_key(&wrong_file);
    set_key(&config, Some(&wrong_file));
    let refused = certkeeper(&config, &["run"], &[]);
    let stderr = text(&refused.stderr);
    assert_eq!(refused.status.code(), Some(78), "{stderr}");
    assert!(
        stderr.contains("is not the key the state store is sealed with"),
        "{stderr}"
    );
    for secret in [&key, &wrong] {
        assert!(!stderr.contains(secret.trim()), "a key reached stderr");
    }
    assert_eq!(std::fs::read(&database).unwrap(), before);

    // A key file others can read is refused before anything is opened.
    set_key(&config, Some(&key_file));
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refused = certkeeper(&config, &["run"], &[]);
    let stderr = text(&refused.stderr);
    assert_eq!(refused.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("store.key_file"), "{stderr}");
    assert!(stderr.contains("chmod 600"), "{stderr}");
    assert_eq!(std::fs::read(&database).unwrap(), before);
}

#[test]
fn rekey_moves_the_store_to_a_new_key_and_the_daemon_restarts_with_it() {
    let directory = tempfile::tempdir().unwrap();
    let old_file = directory.path().join("old.key");
    write_key(&old_file);
    let config = config_with_key(directory.path(), Some(&old_file));
    let new_file = directory.path().join("new.key");
    let new = write_key(&new_file);
    let new_flag = format!("--new-key-file={}", new_file.display());

    // Refused while the daemon runs.
    let mut daemon = spawn_daemon(&config, &[]);
    wait_for("the daemon to deploy", Duration::from_secs(120), || {
        in_sync(&config)
    });
    let refused = certkeeper(&config, &["store", "rekey", &new_flag], &[]);
    assert_eq!(refused.status.code(), Some(74), "{}", text(&refused.stderr));
    assert!(text(&refused.stderr).contains("another certkeeper daemon is running"));
    let (status, logs) = daemon.stop_and_read_logs();
    assert_eq!(status.and_then(|status| status.code()), Some(0), "{logs}");
    let before = status_json(&config);

    let rekeyed = certkeeper(&config, &["store", "rekey", &new_flag], &[]);
    let stdout = text(&rekeyed.stdout);
    assert_eq!(rekeyed.status.code(), Some(0), "{}", text(&rekeyed.stderr));
    assert!(stdout.contains("rekeyed 2 keys"), "{stdout}");
    assert!(!stdout.contains(new.trim()));

    // The old key no longer opens the store; the new one does.
    let refused = certkeeper(&config, &["run"], &[]);
    assert_eq!(refused.status.code(), Some(78), "{}", text(&refused.stderr));
    set_key(&config, Some(&new_file));
    let logs = converge(&config);
    assert!(!logs.contains(new.trim()));

    // Again, the current key given on the command line (the config still names the old).
    set_key(&config, Some(&old_file));
    let third_file = directory.path().join("third.key");
    write_key(&third_file);
    let rekeyed = certkeeper(
        &config,
        &[
            "store",
            "rekey",
            &format!("--old-key-file={}", new_file.display()),
            &format!("--new-key-file={}", third_file.display()),
        ],
        &[],
    );
    assert_eq!(rekeyed.status.code(), Some(0), "{}", text(&rekeyed.stderr));
    set_key(&config, Some(&third_file));
    converge(&config);
    assert!(!holds(&raw_store(directory.path()), "PRIVATE KEY"));
    assert_eq!(status_json(&config)["certificates"], before["certificates"]);
}

#[test]
fn renew_in_process_uses_the_store_key_like_the_daemon() {
    let directory = tempfile::tempdir().unwrap();
    let key_file = directory.path().join("store.key");
    write_key(&key_file);
    let config = config_with_key(directory.path(), Some(&key_file));
    converge(&config);
    let before = status_json(&config)["certificates"][0]["fingerprint"].clone();

    let renewed = certkeeper(&config, &["renew", "internal"], &[]);
    assert_eq!(renewed.status.code(), Some(0), "{}", text(&renewed.stderr));
    let after = status_json(&config)["certificates"][0]["fingerprint"].clone();
    assert_ne!(after, before);
    assert!(!holds(&raw_store(directory.path()), "PRIVATE KEY"));

    set_key(&config, None);
    let refused = certkeeper(&config, &["renew", "internal"], &[]);
    let stderr = text(&refused.stderr);
    assert_eq!(refused.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("no store key is configured"), "{stderr}");
    assert_eq!(
        status_json(&config)["certificates"][0]["fingerprint"],
        after
    );

    // A key file that cannot be used: refused like `run` (78), naming the key.
    set_key(&config, Some(&directory.path().join("missing.key")));
    let refused = certkeeper(&config, &["renew", "internal"], &[]);
    let stderr = text(&refused.stderr);
    assert_eq!(refused.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("store.key_file"), "{stderr}");
}
