//! Crash safety of ACME issuance through the daemon: `certkeeper run` obtains three
//! certificates from the real Pebble (HTTP-01) into file targets while it is `kill -9`ed at
//! random moments and restarted. Each certificate ends with exactly one stored version, every
//! target serves it, the store passes its integrity check, and Pebble saw no more new orders
//! than certificates plus interrupted runs: a finished order is never repeated.
//! `CERTKEEPER_CHAOS_SEED=N` replays the kill moments of a logged run.

mod support;

use certkeeper::source::acme::testing::{Pebble, PebbleOptions};
use certkeeper::store::StateStore;
use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::{certkeeper_command, free_port, status_json, ChildGuard};

const CERTIFICATES: usize = 3;
const KILLS: usize = 8;

fn config(pebble: &Pebble, ca_bundle: &Path, state_dir: &Path, files: &Path) -> String {
    let mut text = format!(
        r#"
[daemon]
state_dir = "{state}"
metrics_listen = "127.0.0.1:{metrics}"

[acme.pebble]
directory = "{directory}"
contact = ["mailto:ops@example.test"]
challenge = "http-01"
http01_listen = "127.0.0.1:{http}"
ca_bundle = "{ca}"
max_concurrent_orders = 1
"#,
        state = state_dir.display(),
        metrics = free_port(),
        directory = pebble.directory,
        http = pebble.http_port,
        ca = ca_bundle.display(),
    );
    for index in 0..CERTIFICATES {
        text.push_str(&format!(
            r#"
[[certificate]]
name = "c{index}"
domains = ["c{index}.chaos.example.test"]
source = {{ acme = "pebble" }}
deploy_to = ["files-{index}"]

[[target]]
name = "files-{index}"
kind = "file"
directory = "{dir}"
"#,
            dir = files.join(format!("c{index}")).display(),
        ));
    }
    text
}

fn start(config_path: &Path, log: &Path) -> ChildGuard {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    ChildGuard(
        certkeeper_command()
            .args(["run", "--log-format", "json", "--config"])
            .arg(config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap(),
    )
}

/// New orders Pebble accepted, from its request log.
fn orders(pebble: &Pebble) -> usize {
    std::fs::read_to_string(pebble.dir.join("pebble.log"))
        .unwrap_or_default()
        .lines()
        .filter(|line| line.contains("POST /order-plz"))
        .count()
}

fn converged(view: &serde_json::Value) -> bool {
    let certificates = view["certificates"].as_array();
    let targets = view["targets"].as_array();
    certificates.is_some_and(|certificates| {
        certificates.len() == CERTIFICATES
            && certificates.iter().all(|c| c["fingerprint"].is_string())
    }) && targets.is_some_and(|targets| {
        targets.len() == CERTIFICATES && targets.iter().all(|t| t["in_sync"] == true)
    })
}

fn versions(state_dir: &Path) -> Vec<usize> {
    let Some(store) = certkeeper::store::sqlite::SqliteStore::open_existing(state_dir).unwrap()
    else {
        return vec![0; CERTIFICATES];
    };
    store.integrity_check().unwrap();
    (0..CERTIFICATES)
        .map(|index| {
            let versions = store.certificate_versions(&format!("c{index}")).unwrap();
            for version in &versions {
                // No key lost: every stored key still matches its certificate.
                version.to_bundle().unwrap();
            }
            versions.len()
        })
        .collect()
}

#[test]
fn kill_9_during_issuance_never_repeats_a_finished_order() {
    let pebble = Pebble::start(PebbleOptions {
        quiet: true,
        ..PebbleOptions::default()
    });
    let directory = tempfile::tempdir().unwrap();
    let ca_bundle: PathBuf = directory.path().join("pebble-ca.pem");
    std::fs::write(&ca_bundle, &pebble.ca_pem).unwrap();
    let state_dir = directory.path().join("state");
    let files = directory.path().join("tls");
    let config_path = directory.path().join("certkeeper.toml");
    let log = directory.path().join("daemon.log");
    std::fs::write(
        &config_path,
        config(&pebble, &ca_bundle, &state_dir, &files),
    )
    .unwrap();

    let seed = std::env::var("CERTKEEPER_CHAOS_SEED")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("acme chaos: {KILLS} kills, CERTKEEPER_CHAOS_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut interrupted = 0;
    for _ in 0..KILLS {
        let before = versions(&state_dir);
        let daemon = start(&config_path, &log);
        std::thread::sleep(Duration::from_millis(rng.gen_range(10..300)));
        drop(daemon);
        let after = versions(&state_dir);
        assert!(
            before.iter().zip(&after).all(|(b, a)| a >= b),
            "no version lost: {before:?} -> {after:?}"
        );
        assert!(
            after.iter().all(|count| *count <= 1),
            "a certificate was issued twice: {after:?}"
        );
        if after.iter().sum::<usize>() < CERTIFICATES {
            interrupted += 1;
        }
    }

    let daemon = start(&config_path, &log);
    let deadline = Instant::now() + Duration::from_secs(120);
    while !converged(&status_json(&config_path)) {
        assert!(
            Instant::now() < deadline,
            "not converged: {}\n{}",
            status_json(&config_path),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    drop(daemon);
    assert_eq!(versions(&state_dir), vec![1; CERTIFICATES]);
    let placed = orders(&pebble);
    eprintln!("acme chaos: {placed} orders, {interrupted} runs killed before every certificate was stored");
    assert!(
        placed <= CERTIFICATES + interrupted,
        "{placed} orders for {CERTIFICATES} certificates and {interrupted} runs killed before all were stored"
    );
    for index in 0..CERTIFICATES {
        let served = std::fs::read_to_string(files.join(format!("c{index}/cert.pem"))).unwrap();
        assert!(served.contains("BEGIN CERTIFICATE"));
    }

    // A clean restart after convergence orders nothing.
    let daemon = start(&config_path, &log);
    let deadline = Instant::now() + Duration::from_secs(30);
    while status_json(&config_path)["targets"].as_array().is_none() {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    drop(daemon);
    assert_eq!(
        orders(&pebble),
        placed,
        "a restart after convergence ordered again"
    );
    assert_eq!(versions(&state_dir), vec![1; CERTIFICATES]);
}
