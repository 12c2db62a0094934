//! The ACME source against the real Pebble (Debian package `pebble`): HTTP-01 for a two-name
//! certificate, DNS-01 (with a wildcard) through challtestsrv, account reuse across source
//! instances and after Pebble forgets the account, External Account Binding, a failed
//! validation classified as invalid with its records cleaned up, concurrent orders, and ARI
//! against a fake renewalInfo endpoint in front of Pebble's directory.

use certkeeper::error::ErrorClass;
use certkeeper::source::acme::testing::{ChalltestsrvDns, Pebble, PebbleOptions};
use certkeeper::source::acme::{
    ari, AcmeEvent, AcmeSettings, AcmeSource, ChallengeSolver, Http01Responder,
};
use certkeeper::source::{CertificateRequest, Issued, MemoryStore, Source, SourceStore};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn settings(pebble: &Pebble, account: &str) -> AcmeSettings {
    let mut settings = AcmeSettings::new(account, pebble.directory.clone());
    settings.contact = vec!["mailto:ops@example.test".into()];
    settings.ca_bundle_pem = Some(pebble.ca_pem.clone());
    settings
}

async fn http01(pebble: &Pebble) -> Arc<Http01Responder> {
    Http01Responder::bind(format!("127.0.0.1:{}", pebble.http_port).parse().unwrap())
        .await
        .unwrap()
}

fn request(name: &str, domains: &[&str]) -> CertificateRequest {
    CertificateRequest::new(name, domains.iter().map(|d| d.to_string()).collect())
}

fn ders(pem_text: &str) -> Vec<Vec<u8>> {
    pem::parse_many(pem_text)
        .unwrap()
        .into_iter()
        .filter(|block| block.tag() == "CERTIFICATE")
        .map(|block| block.contents().to_vec())
        .collect()
}

/// Checks names, that every certificate is signed by the next and the last by Pebble's
/// root, and that the key belongs to the leaf.
async fn verify(pebble: &Pebble, issued: &Issued, names: &[&str]) {
    use x509_parser::prelude::*;
    let bundle = issued.bundle().unwrap();
    for name in names {
        assert!(
            bundle.info.names.contains(&name.to_string()),
            "{name} missing from {:?}",
            bundle.info.names
        );
    }
    let mut chain = ders(&issued.chain_pem);
    assert!(
        chain.len() >= 2,
        "expected leaf + intermediate, got {}",
        chain.len()
    );
    chain.extend(ders(&pebble.issuing_root().await));
    for pair in chain.windows(2) {
        let (_, child) = X509Certificate::from_der(&pair[0]).unwrap();
        let (_, parent) = X509Certificate::from_der(&pair[1]).unwrap();
        child
            .verify_signature(Some(parent.public_key()))
            .expect("chain signature");
    }
    let key = rcgen::KeyPair::from_pem(issued.key_pem.expose()).unwrap();
    let (_, leaf) = X509Certificate::from_der(&chain[0]).unwrap();
    assert_eq!(
        rcgen::PublicKeyData::subject_public_key_info(&key),
        leaf.public_key().raw
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http01_issues_a_two_name_certificate_with_full_chain() {
    let pebble = Pebble::start(PebbleOptions::default());
    let responder = http01(&pebble).await;
    let store = Arc::new(MemoryStore::new());
    let source = AcmeSource::new(
        settings(&pebble, "pebble"),
        store,
        ChallengeSolver::Http01(responder.clone()),
    )
    .unwrap();
    let names = ["a.example.test", "b.example.test"];
    let issued = match source.obtain(&request("web", &names)).await {
        Ok(issued) => issued,
        Err(error) => panic!("{error}\n{}", pebble.logs()),
    };
    verify(&pebble, &issued, &names).await;
    // Pebble 2.4 offers no ARI: no renewal point, lifetime fallback.
    assert!(issued.renewal.is_none());
    assert_eq!(responder.in_flight(), 0, "tokens must be withdrawn");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns01_issues_a_wildcard_and_always_cleans_up() {
    let pebble = Pebble::start(PebbleOptions::default());
    let dns = Arc::new(ChalltestsrvDns::new(&pebble));
    let source = AcmeSource::new(
        settings(&pebble, "pebble"),
        Arc::new(MemoryStore::new()),
        ChallengeSolver::Dns01 {
            solver: dns.clone(),
            propagation_wait: Duration::ZERO,
        },
    )
    .unwrap();
    let names = ["*.wild.test", "wild.test"];
    let issued = match source.obtain(&request("wild", &names)).await {
        Ok(issued) => issued,
        Err(error) => panic!("{error}\n{}", pebble.logs()),
    };
    verify(&pebble, &issued, &names).await;
    let log = dns.log.lock().unwrap().clone();
    let presented = log.iter().filter(|l| l.starts_with("present")).count();
    let cleaned = log.iter().filter(|l| l.starts_with("cleanup")).count();
    // A fresh account has no authorization to reuse: both names were challenged, and
    // every record was removed.
    assert_eq!((presented, cleaned), (2, 2), "{log:?}");
}

/// A solver that publishes the wrong value: Pebble's VA must reject it.
struct WrongValue(Arc<ChalltestsrvDns>);

#[async_trait::async_trait]
impl certkeeper::cloud::DnsSolver for WrongValue {
    async fn present(
        &self,
        fqdn: &str,
        _value: &str,
    ) -> Result<certkeeper::cloud::DnsRecord, certkeeper::error::CloudError> {
        self.0.present(fqdn, "not-the-right-digest").await
    }
    async fn cleanup(
        &self,
        record: &certkeeper::cloud::DnsRecord,
    ) -> Result<(), certkeeper::error::CloudError> {
        self.0.cleanup(record).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_validation_is_invalid_and_still_cleans_up() {
    let pebble = Pebble::start(PebbleOptions::default());
    let dns = Arc::new(ChalltestsrvDns::new(&pebble));
    let source = AcmeSource::new(
        settings(&pebble, "pebble"),
        Arc::new(MemoryStore::new()),
        ChallengeSolver::Dns01 {
            solver: Arc::new(WrongValue(dns.clone())),
            propagation_wait: Duration::ZERO,
        },
    )
    .unwrap();
    let error = source
        .obtain(&request("bad", &["bad.example.test"]))
        .await
        .unwrap_err();
    assert_eq!(error.class, ErrorClass::Invalid, "{error}");
    // Parked by the engine, never retried within the operation: no tight loop.
    assert!(!error.class.retry_within_operation());
    let log = dns.log.lock().unwrap().clone();
    assert_eq!(
        log,
        vec![
            "present _acme-challenge.bad.example.test".to_string(),
            "cleanup _acme-challenge.bad.example.test".to_string()
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_account_is_created_once_and_reused_by_a_restarted_source() {
    let pebble = Pebble::start(PebbleOptions::default());
    let responder = http01(&pebble).await;
    let store = Arc::new(MemoryStore::new());
    let (events, mut seen) = tokio::sync::mpsc::unbounded_channel();

    let first = AcmeSource::with_events(
        settings(&pebble, "pebble"),
        store.clone(),
        ChallengeSolver::Http01(responder.clone()),
        Some(events.clone()),
    )
    .unwrap();
    first
        .obtain(&request("one", &["one.example.test"]))
        .await
        .unwrap();
    let url = first.account_url().await.unwrap();
    let stored = store.load_account("pebble").unwrap().unwrap();
    drop(first);

    // A "restarted daemon": a new source on the same store.
    let second = AcmeSource::with_events(
        settings(&pebble, "pebble"),
        store.clone(),
        ChallengeSolver::Http01(responder.clone()),
        Some(events),
    )
    .unwrap();
    second
        .obtain(&request("two", &["two.example.test"]))
        .await
        .unwrap();
    assert_eq!(second.account_url().await.unwrap(), url);
    assert_eq!(store.load_account("pebble").unwrap().unwrap(), stored);
    assert_eq!(store.account_writes(), 1, "no second newAccount");
    let mut created = 0;
    let mut reused = 0;
    while let Ok(event) = seen.try_recv() {
        match event {
            AcmeEvent::AccountCreated { .. } => created += 1,
            AcmeEvent::AccountReused {
                url: reused_url, ..
            } => {
                assert_eq!(reused_url, url);
                reused += 1
            }
            _ => {}
        }
    }
    assert_eq!((created, reused), (1, 1));
}

/// The daemon's wiring: the account lives in the SQLite state store, and a restarted daemon
/// (a new store handle on the same file, a new source) reuses it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_account_survives_reopening_the_sqlite_store() {
    use certkeeper::source::persist::StateSourceStore;
    use certkeeper::store::{SqliteStore, StateStore};
    let pebble = Pebble::start(PebbleOptions::default());
    let responder = http01(&pebble).await;
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        let sqlite: Arc<dyn StateStore> = Arc::new(SqliteStore::open(dir.path()).unwrap());
        Arc::new(
            StateSourceStore::new(sqlite).with_acme_directory("pebble", pebble.directory.clone()),
        )
    };
    let (events, mut seen) = tokio::sync::mpsc::unbounded_channel();

    let url = {
        let first = AcmeSource::with_events(
            settings(&pebble, "pebble"),
            open(),
            ChallengeSolver::Http01(responder.clone()),
            Some(events.clone()),
        )
        .unwrap();
        first
            .obtain(&request("one", &["one.example.test"]))
            .await
            .unwrap();
        first.account_url().await.unwrap()
    };
    let stored = SqliteStore::open(dir.path())
        .unwrap()
        .acme_account(&pebble.directory, "pebble")
        .unwrap()
        .expect("account row under the directory URL");

    let store = open();
    let second = AcmeSource::with_events(
        settings(&pebble, "pebble"),
        store.clone(),
        ChallengeSolver::Http01(responder.clone()),
        Some(events),
    )
    .unwrap();
    let issued = second
        .obtain(&request("two", &["two.example.test"]))
        .await
        .unwrap();
    verify(&pebble, &issued, &["two.example.test"]).await;
    assert_eq!(second.account_url().await.unwrap(), url);
    assert_eq!(
        store.load_account("pebble").unwrap().unwrap(),
        stored.credentials,
        "credentials unchanged: no second registration"
    );
    let mut created = 0;
    let mut reused = 0;
    while let Ok(event) = seen.try_recv() {
        match event {
            AcmeEvent::AccountCreated { .. } => created += 1,
            AcmeEvent::AccountReused {
                url: reused_url, ..
            } => {
                assert_eq!(reused_url, url);
                reused += 1
            }
            _ => {}
        }
    }
    assert_eq!((created, reused), (1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_pebble_restart_the_account_is_registered_again() {
    let mut pebble = Pebble::start(PebbleOptions::default());
    let responder = http01(&pebble).await;
    let store = Arc::new(MemoryStore::new());
    let source = AcmeSource::new(
        settings(&pebble, "pebble"),
        store.clone(),
        ChallengeSolver::Http01(responder.clone()),
    )
    .unwrap();
    source
        .obtain(&request("before", &["before.example.test"]))
        .await
        .unwrap();
    let before = store.load_account("pebble").unwrap().unwrap();

    // Pebble keeps state in memory: after a restart the stored account is unknown
    // (`accountDoesNotExist`) and must be registered again, once.
    tokio::task::block_in_place(|| pebble.restart());
    let restarted = AcmeSource::new(
        settings(&pebble, "pebble"),
        store.clone(),
        ChallengeSolver::Http01(responder),
    )
    .unwrap();
    let issued = restarted
        .obtain(&request("after", &["after.example.test"]))
        .await;
    assert!(issued.is_ok(), "{:?}\n{}", issued.err(), pebble.logs());
    verify(&pebble, &issued.unwrap(), &["after.example.test"]).await;
    assert_eq!(
        store.account_writes(),
        2,
        "created, then re-registered once"
    );
    assert_ne!(store.load_account("pebble").unwrap().unwrap(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_account_binding_is_required_and_used() {
    // Pebble's example EAB key.
    let kid = "kid-1";
    let key = "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W";
    let pebble = Pebble::start(PebbleOptions {
        eab_keys: vec![(kid.into(), key.into())],
        ..Default::default()
    });
    let responder = http01(&pebble).await;

    let without = AcmeSource::new(
        settings(&pebble, "no-eab"),
        Arc::new(MemoryStore::new()),
        ChallengeSolver::Http01(responder.clone()),
    )
    .unwrap();
    let error = without.account_url().await.unwrap_err();
    assert_eq!(error.class, ErrorClass::Auth, "{error}");

    let mut with_eab = settings(&pebble, "eab");
    with_eab.eab = Some(certkeeper::source::acme::Eab {
        kid: kid.into(),
        hmac_key: key.into(),
    });
    let source = AcmeSource::new(
        with_eab,
        Arc::new(MemoryStore::new()),
        ChallengeSolver::Http01(responder),
    )
    .unwrap();
    let issued = source.obtain(&request("eab", &["eab.example.test"])).await;
    assert!(issued.is_ok(), "{:?}\n{}", issued.err(), pebble.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_orders_run_at_once_within_the_limit() {
    let pebble = Pebble::start(PebbleOptions::default());
    let responder = http01(&pebble).await;
    let mut settings = settings(&pebble, "pebble");
    settings.max_concurrent_orders = 3;
    let source = Arc::new(
        AcmeSource::new(
            settings,
            Arc::new(MemoryStore::new()),
            ChallengeSolver::Http01(responder.clone()),
        )
        .unwrap(),
    );
    let mut tasks = Vec::new();
    for index in 0..6 {
        let source = source.clone();
        tasks.push(tokio::spawn(async move {
            let name = format!("c{index}.example.test");
            source.obtain(&request(&name, &[&name])).await
        }));
    }
    for task in tasks {
        let issued = task.await.unwrap();
        assert!(issued.is_ok(), "{:?}", issued.err());
    }
    assert_eq!(responder.in_flight(), 0);
}

/// RSA and ECDSA P-384 orders: the key is generated by the cert module, the CSR signed with
/// it, and the issued leaf carries that very key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsa_2048_and_ecdsa_p384_orders_are_issued() {
    use certkeeper::cert::key::{KeyAlgorithm as Found, PrivateKey};
    use certkeeper::config::KeyAlgorithm;
    let pebble = Pebble::start(PebbleOptions::default());
    let responder = http01(&pebble).await;
    let source = AcmeSource::new(
        settings(&pebble, "pebble"),
        Arc::new(MemoryStore::new()),
        ChallengeSolver::Http01(responder.clone()),
    )
    .unwrap();
    for (wanted, found, name) in [
        (KeyAlgorithm::Rsa2048, Found::Rsa, "rsa.example.test"),
        (
            KeyAlgorithm::EcdsaP384,
            Found::EcdsaP384,
            "p384.example.test",
        ),
    ] {
        let mut req = request(name, &[name]);
        req.key = wanted;
        let issued = match source.obtain(&req).await {
            Ok(issued) => issued,
            Err(error) => panic!("{wanted:?}: {error}\n{}", pebble.logs()),
        };
        let key = PrivateKey::from_pem("issued", issued.key_pem.expose()).unwrap();
        assert_eq!(key.algorithm(), found);
        let bundle = issued.bundle().unwrap();
        assert!(certkeeper::cert::key_matches_certificate(
            "issued",
            &issued.key_pem,
            &ders(&issued.chain_pem)[0]
        )
        .unwrap());
        assert!(bundle.info.names.contains(&name.to_string()));
    }
}

/// A fake ARI server: serves Pebble's directory with `renewalInfo` added, and answers
/// renewalInfo requests with a fixed window and Retry-After.
async fn ari_front(pebble: &Pebble, hits: Arc<AtomicUsize>) -> String {
    use axum::routing::get;
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pebble.ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let mut directory: serde_json::Value = client
        .get(&pebble.directory)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    directory["renewalInfo"] = format!("{base}/ari").into();
    let app = axum::Router::new()
        .route(
            "/dir",
            get(move || {
                let directory = directory.clone();
                async move { axum::Json(directory) }
            }),
        )
        .route(
            "/ari/{id}",
            get(
                move |axum::extract::Path(_id): axum::extract::Path<String>| {
                    let hits = hits.clone();
                    async move {
                        hits.fetch_add(1, Ordering::SeqCst);
                        (
                            [("Retry-After", "21600")],
                            axum::Json(serde_json::json!({
                                "suggestedWindow": {
                                    "start": "2030-01-01T00:00:00Z",
                                    "end": "2030-01-03T00:00:00Z"
                                }
                            })),
                        )
                    }
                },
            ),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("{base}/dir")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ari_point_is_chosen_once_persisted_and_replaces_is_sent() {
    let pebble = Pebble::start(PebbleOptions::default());
    let responder = http01(&pebble).await;
    let hits = Arc::new(AtomicUsize::new(0));
    let directory = ari_front(&pebble, hits.clone()).await;
    let store = Arc::new(MemoryStore::new());
    let (events, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let mut settings = settings(&pebble, "ari");
    settings.directory = directory;
    let source = AcmeSource::with_events(
        settings,
        store.clone(),
        ChallengeSolver::Http01(responder),
        Some(events),
    )
    .unwrap();

    let first = source
        .obtain(&request("site", &["ari.example.test"]))
        .await
        .unwrap();
    let point = first.renewal.clone().expect("ARI point");
    let start = time::macros::datetime!(2030-01-01 00:00:00 UTC);
    let end = time::macros::datetime!(2030-01-03 00:00:00 UTC);
    assert!(point.renew_at >= start && point.renew_at <= end);
    assert_eq!(point.renew_at.nanosecond(), 0);
    assert_eq!(
        store.load_renewal_point("site").unwrap(),
        Some(point.clone())
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // Asking again before Retry-After: the persisted point, no new request, no new draw.
    let leaf = first.bundle().unwrap().leaf_pem;
    let again = source.renewal_point("site", &leaf).await.unwrap();
    assert_eq!(again, Some(point.clone()));
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // Once Retry-After has passed the window is fetched again; it did not move, so the
    // chosen instant stays and only the next poll time advances.
    let mut due = point.clone();
    due.next_poll = time::OffsetDateTime::now_utc() - time::Duration::seconds(1);
    store.save_renewal_point("site", &due).unwrap();
    let repolled = source.renewal_point("site", &leaf).await.unwrap().unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 2);
    assert_eq!(repolled.renew_at, point.renew_at);
    assert!(repolled.next_poll > time::OffsetDateTime::now_utc() + time::Duration::hours(5));

    // Renewal: `replaces` carries the old certificate's ARI id. Pebble 2.4 does not know
    // ARI and does not reflect it, which counts as a refusal: the order is retried without.
    let mut renewal = request("site", &["ari.example.test"]);
    renewal.previous_leaf_pem = Some(leaf.clone());
    let second = source.obtain(&renewal).await.unwrap();
    assert_ne!(
        second.bundle().unwrap().fingerprint(),
        first.bundle().unwrap().fingerprint()
    );
    let expected_id = ari::cert_id(&leaf).unwrap().to_string();
    let mut refused = Vec::new();
    while let Ok(event) = seen.try_recv() {
        if let AcmeEvent::ReplacesRefused { cert_id, .. } = event {
            refused.push(cert_id);
        }
    }
    assert_eq!(refused, vec![expected_id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_benchmark_measures_every_certificate() {
    let pebble = Pebble::start(PebbleOptions {
        quiet: true,
        ..Default::default()
    });
    let report = certkeeper::source::acme::testing::bench_issue(&pebble, 4, 2)
        .await
        .unwrap();
    assert_eq!(report.per_certificate.len(), 4);
    assert!(report.wall >= report.median());
    assert!(report.to_string().contains("4 certificates, 2 at once"));
}
