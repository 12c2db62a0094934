//! `certkeeper store copy --from sqlite:PATH --to postgres`: an existing SQLite state, keys
//! included, moves into an empty PostgreSQL store, verified table by table (count and
//! checksum); a second copy into the now non-empty store is refused and changes nothing.

mod support;

use certkeeper::secret::Secret;
use certkeeper::store::postgres::{ConnectOptions, PostgresStore};
use certkeeper::store::{
    AcmeAccount, Attempt, CertificateVersion, Event, EventQuery, LocalCaRoot, SqliteStore,
    StateStore, SubjectKind,
};
use support::postgres::PgServer;
use time::macros::datetime;
use time::OffsetDateTime;

const T0: OffsetDateTime = datetime!(2026-01-01 00:00:00 UTC);

fn version(fingerprint: &str, key: &str) -> CertificateVersion {
    CertificateVersion {
        id: 0,
        certificate: "www".into(),
        chain_pem: format!(
            "-----BEGIN CERTIFICATE-----\n{fingerprint}\n-----END CERTIFICATE-----\n"
        ),
        key_pem: Secret::new(key),
        fingerprint: fingerprint.into(),
        serial: "01".into(),
        not_before: T0,
        not_after: T0 + time::Duration::days(90),
        source: "local_ca:internal".into(),
        obtained_at: T0,
    }
}

#[test]
fn a_sqlite_state_moves_to_postgres_verified_and_only_once() {
    let directory = tempfile::tempdir().unwrap();
    let state = directory.path().join("state");
    let sqlite = SqliteStore::open(&state).unwrap();
    sqlite
        .insert_certificate_version(&version("aa", "KEY-ONE"), &["files".into()])
        .unwrap();
    let newest = sqlite
        .insert_certificate_version(&version("bb", "KEY-TWO"), &["files".into()])
        .unwrap();
    sqlite
        .record_attempt(&Attempt {
            subject_kind: SubjectKind::Target,
            subject: "files".into(),
            operation: "deploy".into(),
            class: None,
            code: None,
            at: T0,
        })
        .unwrap();
    for index in 0..5 {
        sqlite
            .append_event(&Event {
                id: 0,
                at: T0,
                kind: "certificate.stored".into(),
                subject: "www".into(),
                message: format!("event {index}"),
                fields: serde_json::json!({"index": index}),
            })
            .unwrap();
    }
    sqlite
        .put_acme_account(&AcmeAccount {
            directory_url: "https://acme.test/dir".into(),
            account_name: "main".into(),
            credentials: Secret::new("{\"key\":\"ACCOUNT-KEY\"}"),
            created_at: T0,
        })
        .unwrap();
    sqlite
        .put_local_ca(&LocalCaRoot {
            name: "internal".into(),
            cert_pem: "ROOT".into(),
            key_pem: Secret::new("ROOT-KEY"),
            created_at: T0,
        })
        .unwrap();
    drop(sqlite);

    let server = PgServer::start(support::free_port());
    let url = server.create_database("moved");
    let config = directory.path().join("certkeeper.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nstate_dir = \"{}\"\n\n[store]\nbackend = \"postgres\"\n\
             url_env = \"STORE_URL\"\n\n[local_ca.internal]\nleaf_lifetime = \"30d\"\n\n\
             [[certificate]]\nname = \"www\"\ndomains = [\"www.example.com\"]\n\
             source = {{ local_ca = \"internal\" }}\ndeploy_to = [\"files\"]\n\n\
             [[target]]\nname = \"files\"\nkind = \"file\"\ndirectory = \"{}\"\n",
            directory.path().join("other-state").display(),
            directory.path().join("tls").display()
        ),
    )
    .unwrap();
    // `check` (the unit's ExecStartPre) reads the URL like every other secret.
    let unset = support::certkeeper(&config, &["check"], &[]);
    assert_eq!(unset.status.code(), Some(78), "{unset:?}");
    let said = String::from_utf8_lossy(&unset.stderr);
    assert!(
        said.contains("store.url_env") && said.contains("STORE_URL"),
        "{said}"
    );
    let set = support::certkeeper(&config, &["check"], &[("STORE_URL", url.as_str())]);
    assert!(set.status.success(), "{set:?}");

    let from = format!("sqlite:{}", state.display());
    let copy = || {
        support::certkeeper(
            &config,
            &["store", "copy", "--from", &from, "--to", "postgres"],
            &[("STORE_URL", url.as_str())],
        )
    };
    let copied = copy();
    let stdout = String::from_utf8_lossy(&copied.stdout);
    assert!(copied.status.success(), "{copied:?}");
    assert!(
        stdout.contains("certificate_versions: 2 rows, sha256 "),
        "{stdout}"
    );
    assert!(stdout.contains("events: 5 rows"), "{stdout}");
    assert!(
        stdout.contains("every table's count and checksum verified"),
        "{stdout}"
    );
    assert!(!stdout.contains("KEY-TWO"), "no key printed: {stdout}");

    let postgres = PostgresStore::open(&ConnectOptions {
        url: Secret::new(url.clone()),
        ca_file: None,
    })
    .unwrap();
    let latest = postgres.latest_certificate_version("www").unwrap().unwrap();
    assert_eq!(latest.id, newest, "ids are kept");
    assert_eq!(latest.key_pem.expose(), "KEY-TWO", "keys move too");
    assert_eq!(postgres.certificate_versions("www").unwrap().len(), 2);
    let record = postgres.deployment("files", "www").unwrap().unwrap();
    assert_eq!(record.desired_fingerprint.as_deref(), Some("bb"));
    assert_eq!(
        postgres
            .attempts(SubjectKind::Target, "files")
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        postgres
            .acme_account("https://acme.test/dir", "main")
            .unwrap()
            .unwrap()
            .credentials
            .expose(),
        "{\"key\":\"ACCOUNT-KEY\"}"
    );
    assert_eq!(
        postgres
            .local_ca("internal")
            .unwrap()
            .unwrap()
            .key_pem
            .expose(),
        "ROOT-KEY"
    );
    let events = postgres.events(&EventQuery::default()).unwrap();
    assert_eq!(events.len(), 5);
    // New rows continue after the copied ids.
    let next = postgres.append_event(&events[0]).unwrap();
    assert!(next > events[4].id);

    // Copying again would mix two states: refused, naming the table, nothing changed.
    let again = copy();
    assert_eq!(again.status.code(), Some(74), "{again:?}");
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(
        stderr.contains("already holds 2 rows in certificate_versions"),
        "{stderr}"
    );
    assert_eq!(postgres.certificate_versions("www").unwrap().len(), 2);

    // `status` reads the moved state from PostgreSQL.
    let status = support::certkeeper(
        &config,
        &["status", "--json"],
        &[("STORE_URL", url.as_str())],
    );
    let view: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    assert_eq!(view["certificates"][0]["fingerprint"], "bb", "{view}");
    assert_eq!(
        view["leader"]["instance"],
        serde_json::Value::Null,
        "{view}"
    );
}
