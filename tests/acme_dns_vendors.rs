//! DNS-01 against the real Pebble with the vendors' own DNS solvers (Alibaba Cloud DNS and
//! Huawei Cloud DNS) talking to the in-process simulator. Pebble's VA only asks
//! pebble-challtestsrv, so the test bridges: after the vendor solver created the TXT record
//! in the simulator, the same record is mirrored into challtestsrv, and it is cleared there
//! after the vendor cleanup. The test proves, through the simulator's `/__sim/state`, that
//! the record was in the vendor's zone while Pebble validated and is gone afterwards.

#![cfg(feature = "sim")]

use async_trait::async_trait;
use certkeeper::cloud::alibaba::client::{default_rate_limits, AlibabaClient};
use certkeeper::cloud::alibaba::dns::AlidnsSolver;
use certkeeper::cloud::alibaba::sim::{AccountSeed, Seed};
use certkeeper::cloud::huawei::client::{system_clock, HuaweiClient};
use certkeeper::cloud::huawei::dns::HuaweiDnsSolver;
use certkeeper::cloud::sim::{serve, SimSeed, Simulator};
use certkeeper::cloud::{DnsRecord, DnsSolver};
use certkeeper::config::credentials::{Provider, ResolvedCredentials};
use certkeeper::error::CloudError;
use certkeeper::source::acme::testing::{ChalltestsrvDns, Pebble, PebbleOptions};
use certkeeper::source::acme::{AcmeSettings, AcmeSource, ChallengeSolver};
use certkeeper::source::{CertificateRequest, MemoryStore, Source};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The simulator on a loopback port.
struct Sim {
    base: String,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start_sim(seed: SimSeed) -> Sim {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(
        listener,
        Arc::new(Simulator::new(seed)),
        async move {
            let _ = stopped.await;
        },
    ));
    Sim { base, _stop: stop }
}

/// `GET /__sim/state`, the vendor's part, as text (TXT values are unique digests, so a
/// substring test is exact enough).
async fn vendor_state(base: &str, vendor: &str) -> String {
    let state: serde_json::Value = reqwest::get(format!("{base}/__sim/state"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    state[vendor].to_string()
}

/// The vendor solver, mirrored into challtestsrv for Pebble's VA. Notes, at cleanup time
/// (validation is over by then), whether the record was in the simulator's zone.
struct Bridge {
    vendor: Arc<dyn DnsSolver>,
    vendor_name: &'static str,
    sim_base: String,
    mirror: ChalltestsrvDns,
    /// (fqdn, value, seen in the simulator before cleanup).
    seen: Mutex<Vec<(String, String, bool)>>,
}

#[async_trait]
impl DnsSolver for Bridge {
    async fn present(&self, fqdn: &str, value: &str) -> Result<DnsRecord, CloudError> {
        let record = self.vendor.present(fqdn, value).await?;
        self.mirror.present(fqdn, value).await?;
        Ok(record)
    }

    async fn cleanup(&self, record: &DnsRecord) -> Result<(), CloudError> {
        let present = vendor_state(&self.sim_base, self.vendor_name)
            .await
            .contains(&record.value);
        self.seen
            .lock()
            .unwrap()
            .push((record.fqdn.clone(), record.value.clone(), present));
        let result = self.vendor.cleanup(record).await;
        self.mirror.cleanup(record).await?;
        result
    }
}

async fn issue_through(vendor: Arc<dyn DnsSolver>, vendor_name: &'static str, sim: &Sim) {
    let pebble = Pebble::start(PebbleOptions::default());
    let bridge = Arc::new(Bridge {
        vendor,
        vendor_name,
        sim_base: sim.base.clone(),
        mirror: ChalltestsrvDns::new(&pebble),
        seen: Mutex::new(Vec::new()),
    });
    let mut settings = AcmeSettings::new("pebble", pebble.directory.clone());
    settings.ca_bundle_pem = Some(pebble.ca_pem.clone());
    let source = AcmeSource::new(
        settings,
        Arc::new(MemoryStore::new()),
        ChallengeSolver::Dns01 {
            solver: bridge.clone(),
            propagation_wait: Duration::ZERO,
        },
    )
    .unwrap();
    let names = ["www.example.com", "*.sub.example.com"];
    let request = CertificateRequest::new("web", names.iter().map(|n| n.to_string()).collect());
    let issued = match source.obtain(&request).await {
        Ok(issued) => issued,
        Err(error) => panic!("{error}\n{}", pebble.logs()),
    };
    let bundle = issued.bundle().unwrap();
    for name in names {
        assert!(bundle.info.names.contains(&name.to_string()), "{name}");
    }

    let seen = bridge.seen.lock().unwrap().clone();
    let mut fqdns: Vec<&str> = seen.iter().map(|(fqdn, _, _)| fqdn.as_str()).collect();
    fqdns.sort();
    assert_eq!(
        fqdns,
        [
            "_acme-challenge.sub.example.com",
            "_acme-challenge.www.example.com"
        ]
    );
    let after = vendor_state(&sim.base, vendor_name).await;
    for (fqdn, value, present) in &seen {
        assert!(
            present,
            "{fqdn} was not in the {vendor_name} zone during validation"
        );
        assert!(
            !after.contains(value.as_str()),
            "{fqdn} left behind: {after}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns01_through_alidns_in_the_simulator() {
    let sim = start_sim(SimSeed {
        alibaba: Seed {
            accounts: vec![AccountSeed {
                access_key_id: "LTAIsimulated".into(),
                access_key_secret: "sim-secret".into(),
            }],
            dns_zones: vec!["example.com".into(), "sub.example.com".into()],
            ..Seed::default()
        },
        ..SimSeed::default()
    })
    .await;
    let credentials =
        ResolvedCredentials::new("ali", Provider::Alibaba, "LTAIsimulated", "sim-secret")
            .with_endpoint(&sim.base);
    let http = certkeeper::cloud::http::client(Default::default()).unwrap();
    let client = Arc::new(AlibabaClient::new(credentials, http, default_rate_limits()));
    issue_through(Arc::new(AlidnsSolver::new(client)), "alibaba", &sim).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns01_through_huawei_dns_in_the_simulator() {
    let project = "619d3e78f61b4be68bc5aa0b59edcf7b";
    let sim = start_sim(
        SimSeed::from_toml(&format!(
            r#"
            [huawei]
            dns_zones = ["example.com", "sub.example.com"]
            [[huawei.accounts]]
            access_key_id = "AKSIM"
            secret_access_key = "sk-sim"
            project_id = "{project}"
            "#
        ))
        .unwrap(),
    )
    .await;
    let mut credentials = ResolvedCredentials::new("hw", Provider::Huawei, "AKSIM", "sk-sim")
        .with_endpoint(&sim.base);
    credentials.project_id = Some(project.into());
    credentials.region = Some("cn-north-4".into());
    let client =
        Arc::new(HuaweiClient::new(&credentials, reqwest::Client::new(), system_clock()).unwrap());
    issue_through(Arc::new(HuaweiDnsSolver::new(client, 60)), "huawei", &sim).await;
}
