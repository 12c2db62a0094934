//! Tests of the PostgreSQL backend against a real server (`tests/support/postgres.rs`, the
//! same harness the integration tests use): the shared conformance suite, migrations from
//! two stores at once, the lease and its fencing, reconnecting after the database restarts.

use super::*;
use crate::store::conformance::conformance;
use std::cell::Cell;
use time::macros::datetime;

/// The one harness, shared with the other library tests that need a server.
#[path = "../../../tests/support/postgres.rs"]
pub(crate) mod server;

use server::PgServer;

const T0: OffsetDateTime = datetime!(2026-01-01 00:00:00 UTC);

/// A loopback port no listener holds now (the server retries nothing: a clash fails loudly).
fn port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn open(url: &str) -> PostgresStore {
    PostgresStore::open(&ConnectOptions {
        url: Secret::new(url),
        ca_file: None,
    })
    .unwrap()
}

fn version(fingerprint: &str) -> CertificateVersion {
    CertificateVersion {
        id: 0,
        certificate: "web".into(),
        chain_pem: "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n".into(),
        key_pem: Secret::new("KEY"),
        fingerprint: fingerprint.into(),
        serial: "01".into(),
        not_before: T0,
        not_after: T0 + time::Duration::days(90),
        source: "file".into(),
        obtained_at: T0,
    }
}

#[test]
fn postgres_passes_the_conformance_suite() {
    let server = PgServer::start(port());
    let next = Cell::new(0);
    conformance(|| {
        next.set(next.get() + 1);
        open(&server.create_database(&format!("case{}", next.get())))
    });
    assert!(next.get() >= 10);
}

#[test]
fn two_stores_migrating_at_once_both_succeed_and_steps_run_once() {
    let server = PgServer::start(port());
    let url = server.create_database("shared");
    let openers: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || open(&url).schema_version().unwrap())
        })
        .collect();
    for opener in openers {
        assert_eq!(opener.join().unwrap(), SCHEMA_VERSION);
    }
    assert_eq!(
        server.sql("shared", "SELECT count(*) FROM certkeeper_schema"),
        "1"
    );
}

#[test]
fn a_newer_schema_is_refused_naming_the_database_not_the_password() {
    let server = PgServer::start(port());
    let url = server.create_database("newer");
    drop(open(&url));
    server.sql("newer", "UPDATE certkeeper_schema SET version = 99");
    let with_password = url.replace("certkeeper@", "certkeeper:hunter2@");
    let error = PostgresStore::open(&ConnectOptions {
        url: Secret::new(with_password),
        ca_file: None,
    })
    .unwrap_err();
    let text = error.to_string();
    assert!(
        matches!(error, StoreError::TooNew { found: 99, .. }),
        "{text}"
    );
    assert!(
        text.contains(&format!("postgresql://127.0.0.1:{}/newer", server.port)),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
}

#[test]
fn the_lease_goes_to_one_holder_and_a_newer_token_fences_the_old_one() {
    let server = PgServer::start(port());
    let url = server.create_database("lease");
    let (first, second) = (open(&url), open(&url));
    let ttl = Duration::from_millis(600);
    let token = first.try_acquire_lease("host-a", ttl).unwrap().unwrap();
    first.set_fencing_token(token);
    assert_eq!(second.try_acquire_lease("host-b", ttl).unwrap(), None);
    assert!(first.renew_lease("host-a", token, ttl).unwrap());
    let leader = second.current_leader().unwrap().unwrap();
    assert_eq!((leader.holder.as_str(), leader.token), ("host-a", token));
    first
        .insert_certificate_version(&version("aa"), &["cdn".into()])
        .unwrap();

    // host-a stops renewing; once its lease expired host-b takes over with a newer token.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let newer = loop {
        if let Some(newer) = second.try_acquire_lease("host-b", ttl).unwrap() {
            break newer;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the lease never expired"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(newer > token);
    second.set_fencing_token(newer);
    assert!(
        !first.renew_lease("host-a", token, ttl).unwrap(),
        "the old holder lost it"
    );

    // Every fenced write of the old leadership is refused and changes nothing.
    let record = first.deployment("cdn", "web").unwrap().unwrap();
    let refusals = [
        first
            .insert_certificate_version(&version("bb"), &["cdn".into()])
            .unwrap_err(),
        first
            .put_deployment(&DeploymentRecord {
                status: DeployStatus::InSync,
                ..record.clone()
            })
            .unwrap_err(),
        first
            .record_attempt(&Attempt {
                subject_kind: SubjectKind::Target,
                subject: "cdn".into(),
                operation: "deploy".into(),
                class: None,
                code: None,
                at: T0,
            })
            .unwrap_err(),
    ];
    for refusal in refusals {
        assert!(
            matches!(refusal, StoreError::Fenced { token: t, current: c, .. } if t == token && c == newer),
            "{refusal}"
        );
        assert!(refusal.to_string().contains("taken over"), "{refusal}");
    }
    assert_eq!(second.deployment("cdn", "web").unwrap().unwrap(), record);
    assert_eq!(second.certificate_versions("web").unwrap().len(), 1);
    assert!(second
        .attempts(SubjectKind::Target, "cdn")
        .unwrap()
        .is_empty());
    // The new leader writes, and its token is on the row.
    second
        .insert_certificate_version(&version("cc"), &["cdn".into()])
        .unwrap();
    assert_eq!(
        server.sql("lease", "SELECT fencing_token FROM deployments"),
        newer.to_string()
    );

    // A released lease is free at once, and the next leadership still gets a higher token.
    second.release_lease("host-b", newer).unwrap();
    assert_eq!(first.current_leader().unwrap(), None);
    let third = first.try_acquire_lease("host-a", ttl).unwrap().unwrap();
    assert!(third > newer);
}

#[test]
fn the_store_reconnects_after_the_database_restarts() {
    let mut server = PgServer::start(port());
    let url = server.create_database("restart");
    let store = open(&url);
    store
        .insert_certificate_version(&version("aa"), &[])
        .unwrap();
    server.stop();
    let error = store.latest_certificate_version("web").unwrap_err();
    assert!(matches!(error, StoreError::Postgres { .. }), "{error}");
    assert!(error.to_string().contains("/restart"), "{error}");
    server.resume();
    let latest = store.latest_certificate_version("web").unwrap().unwrap();
    assert_eq!(latest.fingerprint, "aa");
}

#[test]
fn debug_and_errors_never_show_the_url_password() {
    let store = PostgresStore::open(&ConnectOptions {
        url: Secret::new("postgres://u:s3cret-pw@127.0.0.1:1/db?connect_timeout=2"),
        ca_file: None,
    });
    let error = store.unwrap_err();
    let text = format!("{error} {error:?}");
    assert!(!text.contains("s3cret-pw"), "{text}");
    assert!(text.contains("postgresql://127.0.0.1:1/db"), "{text}");
}

/// A CA and a server certificate for 127.0.0.1 signed by it: `(ca_pem, cert_pem, key_pem)`.
fn tls_material() -> (String, String, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    (ca_pem, leaf.pem(), key.serialize_pem())
}

#[test]
fn tls_to_the_server_is_verified_against_the_configured_ca() {
    let mut server = PgServer::start(port());
    let url = server.create_database("tls");
    let (ca, cert, key) = tls_material();
    server.require_tls(&cert, &key);
    let directory = tempfile::tempdir().unwrap();
    let ca_file = directory.path().join("ca.pem");
    std::fs::write(&ca_file, &ca).unwrap();
    let with_tls = |url: String, ca_file: Option<PathBuf>| {
        PostgresStore::open(&ConnectOptions {
            url: Secret::new(url),
            ca_file,
        })
    };

    let store = with_tls(format!("{url}?sslmode=require"), Some(ca_file.clone())).unwrap();
    store
        .insert_certificate_version(&version("aa"), &[])
        .unwrap();
    assert_eq!(
        store
            .latest_certificate_version("web")
            .unwrap()
            .unwrap()
            .fingerprint,
        "aa"
    );

    // The server allows no plain connection; another CA's certificate is not trusted.
    let plain = with_tls(format!("{url}?sslmode=disable"), None).unwrap_err();
    assert!(matches!(plain, StoreError::Postgres { .. }), "{plain}");
    let (other_ca, _, _) = tls_material();
    let other = directory.path().join("other.pem");
    std::fs::write(&other, other_ca).unwrap();
    let untrusted = with_tls(format!("{url}?sslmode=require"), Some(other)).unwrap_err();
    assert!(
        matches!(untrusted, StoreError::Postgres { .. }),
        "{untrusted}"
    );
    // A CA file with no certificate is named as such.
    let empty = directory.path().join("empty.pem");
    std::fs::write(&empty, "nothing here").unwrap();
    let refused = with_tls(format!("{url}?sslmode=require"), Some(empty)).unwrap_err();
    assert!(refused.to_string().contains("no CERTIFICATE"), "{refused}");
}
