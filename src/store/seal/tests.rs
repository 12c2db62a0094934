//! The sealing layer: the conformance suite through it, the cipher's guarantees (a value
//! bound to its record, a wrong key told apart), migration, refusal and rekey on SQLite.

use super::*;
use crate::store::conformance::conformance;
use crate::store::sqlite::SqliteStore;
use std::cell::Cell;
use time::macros::datetime;

const T0: OffsetDateTime = datetime!(2026-01-01 00:00:00 UTC);
const KEY_PEM: &str =
    "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n";

fn key(byte: u8) -> StoreKey {
    StoreKey::from_bytes([byte; 32])
}

fn version(name: &str, fingerprint: &str) -> CertificateVersion {
    CertificateVersion {
        id: 0,
        certificate: name.into(),
        chain_pem: "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n".into(),
        key_pem: Secret::new(KEY_PEM),
        fingerprint: fingerprint.into(),
        serial: "01".into(),
        not_before: T0,
        not_after: T0 + time::Duration::days(90),
        source: "file".into(),
        obtained_at: T0,
    }
}

/// A plain store with one of each key-bearing record.
fn populated(dir: &std::path::Path) -> SqliteStore {
    let store = SqliteStore::open(dir).unwrap();
    store
        .insert_certificate_version(&version("web", "aa"), &[])
        .unwrap();
    store
        .put_acme_account(&AcmeAccount {
            directory_url: "https://acme.test/dir".into(),
            account_name: "main".into(),
            credentials: Secret::new(r#"{"key_pkcs8":"c2VjcmV0"}"#),
            created_at: T0,
        })
        .unwrap();
    store
        .put_local_ca(&LocalCaRoot {
            name: "internal".into(),
            cert_pem: "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n".into(),
            key_pem: Secret::new(KEY_PEM),
            created_at: T0,
        })
        .unwrap();
    store
}

/// Every key-bearing value as stored, in a fixed order.
fn stored(store: &SqliteStore) -> Vec<String> {
    let mut values = Vec::new();
    store
        .rewrite_secrets(&mut |field| {
            values.push(field.stored.expose().to_owned());
            Ok(None)
        })
        .unwrap();
    values
}

fn raw_bytes(dir: &std::path::Path) -> Vec<u8> {
    let mut bytes = std::fs::read(dir.join("state.db")).unwrap();
    if let Ok(wal) = std::fs::read(dir.join("state.db-wal")) {
        bytes.extend(wal);
    }
    bytes
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle.as_bytes())
}

#[test]
fn sealed_store_passes_the_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let next = Cell::new(0);
    conformance(|| {
        next.set(next.get() + 1);
        let path = dir.path().join(format!("case{}", next.get()));
        let inner = SqliteStore::open(&path).unwrap();
        SealedStore::new(Arc::new(inner), key(7), path)
    });
    assert!(next.get() >= 10);
}

#[test]
fn a_sealed_value_opens_only_for_its_record_and_key() {
    let identity = ["web", "aa"];
    let sealed = seal(&key(1), SecretKind::CertificateKey, &identity, KEY_PEM).unwrap();
    assert!(sealed.starts_with(SEALED_PREFIX), "{sealed}");
    assert!(!sealed.contains("PRIVATE KEY"));
    assert_eq!(sealed_key_id(&sealed), Some(key(1).id()));
    let opened = open(&key(1), SecretKind::CertificateKey, &identity, &sealed).unwrap();
    assert_eq!(opened.expose(), KEY_PEM);
    // Random nonces: sealing twice gives two different values.
    assert_ne!(
        sealed,
        seal(&key(1), SecretKind::CertificateKey, &identity, KEY_PEM).unwrap()
    );

    let moved = open(&key(1), SecretKind::CertificateKey, &["web", "bb"], &sealed).unwrap_err();
    assert!(matches!(moved, SealError::Tampered { .. }), "{moved}");
    assert!(moved.to_string().contains("fingerprint bb"), "{moved}");
    let other_kind = open(&key(1), SecretKind::LocalCaKey, &["web"], &sealed).unwrap_err();
    assert!(matches!(other_kind, SealError::Tampered { .. }));
    let wrong = open(&key(2), SecretKind::CertificateKey, &identity, &sealed).unwrap_err();
    assert!(matches!(wrong, SealError::WrongKey { .. }), "{wrong}");
    let flipped = {
        let mut bytes = sealed.clone().into_bytes();
        let last = bytes.len() - 2;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        String::from_utf8(bytes).unwrap()
    };
    let altered = open(&key(1), SecretKind::CertificateKey, &identity, &flipped).unwrap_err();
    assert!(matches!(altered, SealError::Tampered { .. }), "{altered}");
    let plain = open(&key(1), SecretKind::CertificateKey, &identity, KEY_PEM).unwrap_err();
    assert!(matches!(plain, SealError::Plaintext { .. }));
    for error in [moved, other_kind, wrong, altered, plain] {
        assert!(!error.to_string().contains("PRIVATE KEY"), "{error}");
    }
}

#[test]
fn keys_are_read_as_base64_or_hex_and_never_shown() {
    let bytes = [0x5au8; 32];
    let base64 = base64::engine::general_purpose::STANDARD.encode(bytes);
    let from_base64 = StoreKey::from_text(&Secret::new(format!("{base64}\n")), "k").unwrap();
    let from_hex = StoreKey::from_text(&Secret::new(hex::encode(bytes)), "k").unwrap();
    assert_eq!(from_base64.id(), from_hex.id());
    assert_eq!(from_base64.id(), StoreKey::from_bytes(bytes).id());
    assert_ne!(from_base64.id(), key(1).id());
    let debug = format!("{from_base64:?}");
    assert_eq!(debug, format!("StoreKey({})", from_base64.id()));
    assert!(!debug.contains(&base64[..8]));
    let dir = tempfile::tempdir().unwrap();
    let store = SealedStore::new(
        Arc::new(SqliteStore::open(dir.path()).unwrap()),
        from_base64,
        dir.path().into(),
    );
    let debug = format!("{store:?}");
    assert!(debug.contains("StoreKey("), "{debug}");
    assert!(!debug.contains(&base64[..8]), "{debug}");
    assert!(!debug.contains("90, 90"), "{debug}");

    for bad in ["", "c2hvcnQ=", "not base64 at all!", &"zz".repeat(32)] {
        let error = StoreKey::from_text(&Secret::new(bad), "store.key_file").unwrap_err();
        assert!(matches!(error, SealError::BadKey { .. }), "{error}");
        let text = error.to_string();
        assert!(
            text.starts_with("store.key_file: not a store key"),
            "{text}"
        );
        if !bad.is_empty() {
            assert!(!text.contains(bad), "{text}");
        }
    }
}

#[test]
fn first_start_with_a_key_seals_a_plain_store_and_leaves_no_plain_text() {
    let dir = tempfile::tempdir().unwrap();
    let store = populated(dir.path());
    assert!(contains(&raw_bytes(dir.path()), "PRIVATE KEY"));
    let (sealed, survey) = prepare(Arc::new(store), Some(key(1))).unwrap();
    assert_eq!(survey.sealed_now, 3);
    assert_eq!(survey.plain, 0);
    assert_eq!(survey.sealed.get(key(1).id()), Some(&3));
    // Read back through the layer: the keys as they were.
    let version = sealed.latest_certificate_version("web").unwrap().unwrap();
    assert_eq!(version.key_pem.expose(), KEY_PEM);
    let account = sealed
        .acme_account("https://acme.test/dir", "main")
        .unwrap()
        .unwrap();
    assert_eq!(account.credentials.expose(), r#"{"key_pkcs8":"c2VjcmV0"}"#);
    let root = sealed.local_ca("internal").unwrap().unwrap();
    assert_eq!(root.key_pem.expose(), KEY_PEM);
    drop(sealed);

    let raw = raw_bytes(dir.path());
    assert!(!contains(&raw, "PRIVATE KEY"));
    assert!(!contains(&raw, "c2VjcmV0"));
    let reopened = SqliteStore::open(dir.path()).unwrap();
    assert!(stored(&reopened)
        .iter()
        .all(|value| value.starts_with(SEALED_PREFIX)));
    // A second start finds nothing to seal and everything opening.
    let (_, again) = prepare(Arc::new(reopened), Some(key(1))).unwrap();
    assert_eq!(again.sealed_now, 0);
    assert_eq!(again.sealed.get(key(1).id()), Some(&3));
}

#[test]
fn a_sealed_store_without_its_key_or_with_another_is_refused_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    prepare(Arc::new(populated(dir.path())), Some(key(1))).unwrap();
    let before = stored(&SqliteStore::open(dir.path()).unwrap());

    let missing = prepare(Arc::new(SqliteStore::open(dir.path()).unwrap()), None)
        .map(|_| ())
        .unwrap_err();
    let StoreError::Sealing { source, .. } = &missing else {
        panic!("{missing}")
    };
    assert!(matches!(source, SealError::KeyMissing { .. }), "{missing}");
    assert!(source.is_config());
    assert!(
        missing.to_string().contains("no store key is configured"),
        "{missing}"
    );
    assert!(missing.to_string().contains(key(1).id()), "{missing}");

    let wrong = prepare(
        Arc::new(SqliteStore::open(dir.path()).unwrap()),
        Some(key(2)),
    )
    .map(|_| ())
    .unwrap_err();
    let StoreError::Sealing { source, .. } = &wrong else {
        panic!("{wrong}")
    };
    assert!(matches!(source, SealError::WrongKey { .. }), "{wrong}");
    assert!(source.is_config());
    assert_eq!(stored(&SqliteStore::open(dir.path()).unwrap()), before);
}

#[test]
fn a_sealed_value_moved_to_another_row_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let store = populated(dir.path());
    store
        .insert_certificate_version(&version("api", "bb"), &[])
        .unwrap();
    prepare(Arc::new(store), Some(key(1))).unwrap();
    let conn = rusqlite::Connection::open(dir.path().join("state.db")).unwrap();
    conn.execute(
        "UPDATE certificate_versions SET key_pem = \
         (SELECT key_pem FROM certificate_versions WHERE certificate = 'web') \
         WHERE certificate = 'api'",
        [],
    )
    .unwrap();
    drop(conn);
    let error = prepare(
        Arc::new(SqliteStore::open(dir.path()).unwrap()),
        Some(key(1)),
    )
    .map(|_| ())
    .unwrap_err();
    let StoreError::Sealing { source, .. } = &error else {
        panic!("{error}")
    };
    assert!(matches!(source, SealError::Tampered { .. }), "{error}");
    assert!(!source.is_config());
    assert!(error.to_string().contains("certificate `api`"), "{error}");
}

#[test]
fn rekey_moves_every_value_to_the_new_key_in_one_go() {
    let dir = tempfile::tempdir().unwrap();
    prepare(Arc::new(populated(dir.path())), Some(key(1))).unwrap();
    let store = SqliteStore::open(dir.path()).unwrap();

    // Without the old key, or with a wrong one: refused, nothing changed.
    let before = stored(&store);
    assert!(rekey(&store, None, &key(3)).is_err());
    assert!(rekey(&store, Some(&key(2)), &key(3)).is_err());
    assert_eq!(stored(&store), before);

    assert_eq!(rekey(&store, Some(&key(1)), &key(3)).unwrap(), 3);
    assert!(stored(&store)
        .iter()
        .all(|value| sealed_key_id(value) == Some(key(3).id())));
    // Running it again (the new key already in place) rewrites nothing.
    assert_eq!(rekey(&store, Some(&key(1)), &key(3)).unwrap(), 0);
    assert!(prepare(
        Arc::new(SqliteStore::open(dir.path()).unwrap()),
        Some(key(1))
    )
    .is_err());
    let (sealed, _) = prepare(Arc::new(store), Some(key(3))).unwrap();
    assert_eq!(
        sealed
            .local_ca("internal")
            .unwrap()
            .unwrap()
            .key_pem
            .expose(),
        KEY_PEM
    );
}

#[test]
fn rekey_seals_a_plain_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = populated(dir.path());
    assert_eq!(rekey(&store, None, &key(4)).unwrap(), 3);
    let survey = inspect(&store, Some(&key(4))).unwrap();
    assert_eq!(survey.sealed.get(key(4).id()), Some(&3));
    assert_eq!(inspect_plain(&store).unwrap().plain, 0);
}

#[test]
fn a_rekey_that_fails_on_a_late_record_changes_none_of_the_earlier_ones() {
    let dir = tempfile::tempdir().unwrap();
    prepare(Arc::new(populated(dir.path())), Some(key(1))).unwrap();
    // The local CA's key (the last record walked) no longer opens.
    let conn = rusqlite::Connection::open(dir.path().join("state.db")).unwrap();
    conn.execute(
        "UPDATE local_cas SET key_pem = (SELECT key_pem FROM certificate_versions LIMIT 1)",
        [],
    )
    .unwrap();
    drop(conn);
    let store = SqliteStore::open(dir.path()).unwrap();
    let before = stored(&store);
    let error = rekey(&store, Some(&key(1)), &key(2)).unwrap_err();
    assert!(error.to_string().contains("local CA `internal`"), "{error}");
    assert_eq!(stored(&store), before);
    assert!(before
        .iter()
        .all(|value| sealed_key_id(value) == Some(key(1).id())));
}
