//! Tests of the SQLite backend: the shared conformance suite, plus what only a file can show
//! (modes, migrations, refusal of newer or corrupt files, crash safety, WAL readers).

use super::*;
use crate::store::conformance::conformance;
use std::cell::Cell;
use std::os::unix::fs::PermissionsExt;
use time::macros::datetime;

const T0: OffsetDateTime = datetime!(2026-01-01 00:00:00 UTC);

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn version(fingerprint: &str, key: &str) -> CertificateVersion {
    CertificateVersion {
        id: 0,
        certificate: "web".into(),
        chain_pem: "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n".into(),
        key_pem: Secret::new(key),
        fingerprint: fingerprint.into(),
        serial: "01".into(),
        not_before: T0,
        not_after: T0 + time::Duration::days(90),
        source: "file".into(),
        obtained_at: T0,
    }
}

/// A raw connection to the file, as another process (or a crashing writer) would have.
fn raw(path: &Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn
}

#[test]
fn sqlite_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let next = Cell::new(0);
    conformance(|| {
        next.set(next.get() + 1);
        SqliteStore::open(&dir.path().join(format!("case{}", next.get()))).unwrap()
    });
    assert!(next.get() >= 10);
}

#[test]
fn creates_dir_0700_and_file_0600_whatever_the_umask_allows() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("var").join("certkeeper");
    let store = SqliteStore::open(&state).unwrap();
    assert_eq!(store.path(), state.join("state.db"));
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&state.join("state.db")), 0o600);
    // Writing creates the WAL file: SQLite gives it the database's mode.
    store.append_event(&event("x")).unwrap();
    let wal = state.join("state.db-wal");
    assert!(wal.exists());
    assert_eq!(mode(&wal) & 0o077, 0, "wal mode {:o}", mode(&wal));
}

#[test]
fn open_existing_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    assert!(SqliteStore::open_existing(&state).unwrap().is_none());
    assert!(!state.exists(), "no directory left behind");
    drop(SqliteStore::open(&state).unwrap());
    let store = SqliteStore::open_existing(&state).unwrap().unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
}

#[test]
fn two_processes_opening_a_new_file_at_once_both_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    std::fs::File::create(&path).unwrap();
    let openers: Vec<_> = (0..4)
        .map(|_| {
            let path = path.clone();
            std::thread::spawn(move || SqliteStore::open_file(&path).map(|_| ()))
        })
        .collect();
    for opener in openers {
        opener.join().unwrap().unwrap();
    }
    let store = SqliteStore::open_file(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
}

#[test]
fn an_existing_file_with_loose_mode_is_tightened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    std::fs::write(&path, b"").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    SqliteStore::open(dir.path()).unwrap();
    assert_eq!(mode(&path), 0o600);
}

#[test]
fn migrates_an_empty_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    std::fs::File::create(&path).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    let store = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    store.integrity_check().unwrap();
    let id = store
        .insert_certificate_version(&version("aa", "K"), &[])
        .unwrap();
    assert_eq!(
        store.certificate_version(id).unwrap().unwrap().fingerprint,
        "aa"
    );
    let journal: String = raw(&path)
        .pragma_query_value(None, "journal_mode", |row| row.get(0))
        .unwrap();
    assert_eq!(journal, "wal");
}

#[test]
fn a_version_1_file_is_migrated_and_keeps_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        // A file as the first release wrote it: only step 1 applied.
        let conn = raw(&path);
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO acme_accounts VALUES ('https://acme.test/dir', 'main', '{}', 0)",
            [],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO attempts (subject_kind, subject, operation, class, code, at) \
             VALUES ('target', 'cdn', 'deploy', 'busy', 'X', 0)",
            [],
        )
        .unwrap();
    }
    let store = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    const { assert!(SCHEMA_VERSION >= 3) };
    // Step 3 copied the attempt history and now takes certificate attempts too.
    assert_eq!(store.attempts(SubjectKind::Target, "cdn").unwrap().len(), 1);
    store
        .record_attempt(&Attempt {
            subject_kind: SubjectKind::Certificate,
            subject: "www".into(),
            operation: "obtain".into(),
            class: None,
            code: None,
            at: OffsetDateTime::UNIX_EPOCH,
        })
        .unwrap();
    assert_eq!(
        store
            .attempts(SubjectKind::Certificate, "www")
            .unwrap()
            .len(),
        1
    );
    assert!(store
        .acme_account("https://acme.test/dir", "main")
        .unwrap()
        .is_some());
    let root = LocalCaRoot {
        name: "ops".into(),
        cert_pem: "C".into(),
        key_pem: Secret::new("K"),
        created_at: OffsetDateTime::UNIX_EPOCH,
    };
    store.put_local_ca(&root).unwrap();
    drop(store);
    let store = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(store.local_ca("ops").unwrap(), Some(root));
    store.integrity_check().unwrap();
}

#[test]
fn reopening_keeps_data_and_does_not_migrate_again() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let store = SqliteStore::open(dir.path()).unwrap();
        store
            .insert_certificate_version(&version("aa", "K1"), &[])
            .unwrap()
    };
    let store = SqliteStore::open(dir.path()).unwrap();
    assert_eq!(store.schema_version().unwrap(), SCHEMA_VERSION);
    let back = store.certificate_version(id).unwrap().unwrap();
    assert_eq!(back.key_pem.expose(), "K1");
}

#[test]
fn a_newer_schema_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    drop(SqliteStore::open(dir.path()).unwrap());
    raw(&path).pragma_update(None, "user_version", 99).unwrap();
    let error = SqliteStore::open(dir.path()).unwrap_err();
    assert!(
        matches!(error, StoreError::TooNew { found: 99, .. }),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("schema version 99"), "{message}");
    assert!(
        message.contains(&format!("knows up to {SCHEMA_VERSION}")),
        "{message}"
    );
    assert!(message.contains("newer certkeeper"), "{message}");
    let found: u32 = raw(&path)
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .unwrap();
    assert_eq!(found, 99);
}

#[test]
fn a_file_that_is_not_a_database_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    let error = SqliteStore::open(dir.path()).unwrap_err();
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        vec![0x5a; 8192],
        "not overwritten"
    );
}

#[test]
fn a_corrupt_page_is_refused_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let store = SqliteStore::open(dir.path()).unwrap();
        for n in 0..400 {
            store
                .append_event(&event(&format!("event number {n} with some padding text")))
                .unwrap();
        }
        // Fold the WAL into the main file so the damage below hits real pages.
        store
            .lock()
            .pragma_update(None, "wal_checkpoint", "TRUNCATE")
            .unwrap();
    }
    let mut bytes = std::fs::read(&path).unwrap();
    let page = 4096;
    assert!(bytes.len() > 8 * page, "file too small: {}", bytes.len());
    // Scribble over the b-tree headers of every other page past the schema page (page 1):
    // some are on the freelist after migrations, but the event log's pages are hit.
    for n in (3..bytes.len() / page).step_by(2) {
        for byte in &mut bytes[n * page..n * page + 12] {
            *byte = 0xff;
        }
    }
    std::fs::write(&path, &bytes).unwrap();
    let error = SqliteStore::open(dir.path()).unwrap_err();
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("integrity check failed"), "{message}");
    assert!(matches!(error, StoreError::Corrupt { .. }), "{error:?}");
}

#[test]
fn integrity_check_passes_on_a_used_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    store
        .insert_certificate_version(&version("aa", "K"), &["cdn".into()])
        .unwrap();
    store.append_event(&event("hello")).unwrap();
    store.integrity_check().unwrap();
}

#[test]
fn an_uncommitted_write_leaves_the_previous_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = SqliteStore::open(dir.path()).unwrap();
    let id = store
        .insert_certificate_version(&version("aa", "OLD-KEY"), &[])
        .unwrap();
    {
        // A writer that dies between its statements: version row in, never committed.
        let mut conn = raw(&path);
        let tx = conn.transaction().unwrap();
        tx.execute(
            "INSERT INTO certificate_versions (certificate, chain_pem, key_pem, fingerprint, \
             serial, not_before, not_after, source, obtained_at) \
             VALUES ('web', 'half', 'NEW-KEY', 'bb', '02', 0, 0, 'file', 1)",
            [],
        )
        .unwrap();
        tx.execute("UPDATE certificate_versions SET key_pem = 'CLOBBERED'", [])
            .unwrap();
        drop(tx);
        drop(conn);
    }
    drop(store);
    let store = SqliteStore::open(dir.path()).unwrap();
    let latest = store.latest_certificate_version("web").unwrap().unwrap();
    assert_eq!(latest.id, id);
    assert_eq!(latest.fingerprint, "aa");
    assert_eq!(latest.key_pem.expose(), "OLD-KEY");
    assert_eq!(store.certificate_versions("web").unwrap().len(), 1);
}

#[test]
fn a_killed_writer_with_a_hot_journal_leaves_the_previous_version() {
    // Copy the files as they are while a transaction is open and written to: what a power
    // cut at that instant leaves on disk. Opening the copy must show only committed data.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let store = SqliteStore::open(dir.path()).unwrap();
    store
        .insert_certificate_version(&version("aa", "OLD-KEY"), &[])
        .unwrap();
    let wal = dir.path().join("state.db-wal");
    let wal_before = std::fs::metadata(&wal).unwrap().len();
    let mut conn = raw(&path);
    conn.pragma_update(None, "cache_size", 1).unwrap();
    let tx = conn.transaction().unwrap();
    for n in 0..200 {
        // Enough data to spill the page cache into the WAL before commit.
        tx.execute(
            "INSERT INTO certificate_versions (certificate, chain_pem, key_pem, fingerprint, \
             serial, not_before, not_after, source, obtained_at) \
             VALUES ('web', ?1, 'NEW-KEY', 'bb', '02', 0, 0, 'file', 1)",
            [format!("{n}{}", "x".repeat(2000))],
        )
        .unwrap();
    }
    assert!(
        std::fs::metadata(&wal).unwrap().len() > wal_before,
        "uncommitted pages reached the WAL"
    );
    let crash = tempfile::tempdir().unwrap();
    for name in ["state.db", "state.db-wal"] {
        let from = dir.path().join(name);
        if from.exists() {
            std::fs::copy(&from, crash.path().join(name)).unwrap();
        }
    }
    drop(tx);
    let copy = SqliteStore::open(crash.path()).unwrap();
    let latest = copy.latest_certificate_version("web").unwrap().unwrap();
    assert_eq!(latest.key_pem.expose(), "OLD-KEY");
    assert_eq!(copy.certificate_versions("web").unwrap().len(), 1);
}

#[test]
fn events_are_never_edited_in_the_file() {
    // Retention may delete old events (schema step 4 dropped the delete trigger); an event
    // that stays is never changed.
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    store.append_event(&event("kept")).unwrap();
    let conn = raw(&dir.path().join("state.db"));
    assert!(conn
        .execute("UPDATE events SET message = 'changed'", [])
        .is_err());
    assert_eq!(store.tail_events(5).unwrap()[0].message, "kept");
}

#[test]
fn a_reader_sees_committed_state_while_a_writer_holds_a_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let daemon = SqliteStore::open(dir.path()).unwrap();
    daemon
        .insert_certificate_version(&version("aa", "K1"), &[])
        .unwrap();
    // A second store on the same file, as `certkeeper status` next to the daemon.
    let cli = SqliteStore::open(dir.path()).unwrap();

    // A writer in the middle of a transaction does not block readers (WAL).
    let mut writer = raw(&path);
    let tx = writer
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .unwrap();
    tx.execute(
        "INSERT INTO certificate_versions (certificate, chain_pem, key_pem, fingerprint, \
         serial, not_before, not_after, source, obtained_at) \
         VALUES ('web', 'c', 'K2', 'bb', '02', 0, 0, 'file', 1)",
        [],
    )
    .unwrap();
    assert_eq!(
        cli.latest_certificate_version("web")
            .unwrap()
            .unwrap()
            .fingerprint,
        "aa"
    );
    tx.commit().unwrap();
    assert_eq!(
        cli.latest_certificate_version("web")
            .unwrap()
            .unwrap()
            .fingerprint,
        "bb"
    );

    // And a reader holding a snapshot does not block the daemon's writes.
    let mut reader = raw(&path);
    let snapshot = reader.transaction().unwrap();
    let before: i64 = snapshot
        .query_row("SELECT count(*) FROM certificate_versions", [], |row| {
            row.get(0)
        })
        .unwrap();
    daemon
        .insert_certificate_version(&version("cc", "K3"), &[])
        .unwrap();
    let during: i64 = snapshot
        .query_row("SELECT count(*) FROM certificate_versions", [], |row| {
            row.get(0)
        })
        .unwrap();
    assert_eq!(before, during, "the reader keeps its snapshot");
    drop(snapshot);
    assert_eq!(cli.certificate_versions("web").unwrap().len(), 3);
}

#[test]
fn concurrent_threads_share_one_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = std::sync::Arc::new(SqliteStore::open(dir.path()).unwrap());
    let writers: Vec<_> = (0..4)
        .map(|thread| {
            let store = store.clone();
            std::thread::spawn(move || {
                for n in 0..25 {
                    store
                        .append_event(&event(&format!("{thread}-{n}")))
                        .unwrap();
                }
            })
        })
        .collect();
    let other = SqliteStore::open(dir.path()).unwrap();
    for _ in 0..20 {
        other.tail_events(10).unwrap();
    }
    for writer in writers {
        writer.join().unwrap();
    }
    assert_eq!(other.events(&EventQuery::default()).unwrap().len(), 100);
}

#[test]
fn errors_name_the_file_and_never_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    let mut bad = version("aa", "SECRET-KEY-MATERIAL");
    bad.certificate = String::new();
    let error = store.insert_certificate_version(&bad, &[]).unwrap_err();
    let text = format!("{error} {error:?}");
    assert!(text.contains("state.db"), "{text}");
    assert!(text.contains("storing a certificate version"), "{text}");
    assert!(!text.contains("SECRET-KEY-MATERIAL"), "{text}");
}

#[test]
fn unreadable_state_dir_is_an_io_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"").unwrap();
    let error = SqliteStore::open(&blocker.join("state")).unwrap_err();
    assert!(matches!(error, StoreError::Io { .. }), "{error:?}");
    assert!(error.to_string().contains("state.db"), "{error}");
}

fn event(message: &str) -> Event {
    Event {
        id: 0,
        at: T0,
        kind: "test".into(),
        subject: "store".into(),
        message: message.into(),
        fields: serde_json::json!({}),
    }
}

#[test]
fn backup_copies_the_store_as_it_is_without_migrating_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();
    store
        .insert_certificate_version(&version("aa", "plain key"), &[])
        .unwrap();
    drop(store);
    // As an older certkeeper left it: one schema step behind.
    raw(&dir.path().join(FILE_NAME))
        .pragma_update(None, "user_version", SCHEMA_VERSION - 1)
        .unwrap();
    let backup = dir.path().join("copies/backup.db");
    std::fs::create_dir(dir.path().join("copies")).unwrap();

    let survey = SqliteStore::backup(dir.path(), &backup).unwrap();
    assert_eq!(survey.plain, 1);
    assert!(survey.sealed.is_empty());
    assert_eq!(mode(&backup), 0o600);
    let version_of = |path: &Path| -> u32 {
        raw(path)
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap()
    };
    assert_eq!(version_of(&dir.path().join(FILE_NAME)), SCHEMA_VERSION - 1);
    assert_eq!(version_of(&backup), SCHEMA_VERSION - 1);
    // Only the backup in its directory: the temporary file was renamed, not left.
    assert_eq!(
        std::fs::read_dir(dir.path().join("copies"))
            .unwrap()
            .count(),
        1
    );

    // Undo the pretence (the tables are this schema's), then restore the copy.
    raw(&backup)
        .pragma_update(None, "user_version", SCHEMA_VERSION)
        .unwrap();
    let target = tempfile::tempdir().unwrap();
    assert_eq!(
        SqliteStore::restore(target.path(), &backup).unwrap(),
        SCHEMA_VERSION
    );
    let restored = SqliteStore::open(target.path()).unwrap();
    let back = restored.latest_certificate_version("web").unwrap().unwrap();
    assert_eq!(back.key_pem.expose(), "plain key");
}
