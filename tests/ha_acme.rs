//! ACME in a cluster (docs/ha.md, "HTTP-01 in a cluster"): two `certkeeper run` daemons on one
//! real PostgreSQL store and the real Pebble, one certificate by HTTP-01 deployed to a file
//! target. Pebble's validation requests reach the *follower* through a small load balancer
//! in this test, so the answer can only come from the tokens the leader put in the store.
//! Pebble records exactly one order for the first issuance and exactly one more for a
//! `renew` asked of the follower (passed to the leader through the store); only the leader's
//! log shows the orders.

mod support;

use certkeeper::source::acme::testing::{Pebble, PebbleOptions};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::postgres::PgServer;
use support::{certkeeper_command, free_port, http_get, metric_value, ChildGuard};

const URL_VAR: &str = "CERTKEEPER_TEST_STORE_URL";
const DOMAIN: &str = "ha.example.test";

/// Generous: the machine is shared and each daemon is a debug build.
const DEADLINE: Duration = Duration::from_secs(120);

/// One daemon of the cluster.
struct Node {
    name: &'static str,
    config: PathBuf,
    metrics_port: u16,
    http01_port: u16,
    log: PathBuf,
    url: String,
    process: Option<ChildGuard>,
}

impl Node {
    fn new(directory: &Path, name: &'static str, pebble: &Pebble, url: &str) -> Self {
        let metrics_port = free_port();
        let http01_port = free_port();
        let ca_bundle = directory.join("pebble-ca.pem");
        std::fs::write(&ca_bundle, &pebble.ca_pem).unwrap();
        // The lease TTL is longer than ha_cluster's: nothing here waits for a failover, and a
        // leadership lost mid-order on a busy machine would make a second order legitimately.
        let text = format!(
            r#"
[daemon]
state_dir = "{state}"
metrics_listen = "127.0.0.1:{metrics_port}"

[store]
backend = "postgres"
url_env = "{URL_VAR}"
lease_ttl = "10s"
instance = "{name}"

[acme.pebble]
directory = "{directory_url}"
contact = ["mailto:ops@example.test"]
challenge = "http-01"
http01_listen = "127.0.0.1:{http01_port}"
ca_bundle = "{ca}"

[[certificate]]
name = "c0"
domains = ["{DOMAIN}"]
source = {{ acme = "pebble" }}
deploy_to = ["files"]

[[target]]
name = "files"
kind = "file"
directory = "{files}"
"#,
            state = directory.join(format!("state-{name}")).display(),
            directory_url = pebble.directory,
            ca = ca_bundle.display(),
            files = directory.join("tls").display(),
        );
        let config = directory.join(format!("{name}.toml"));
        std::fs::write(&config, text).unwrap();
        Self {
            name,
            config,
            metrics_port,
            http01_port,
            log: directory.join(format!("{name}.log")),
            url: url.into(),
            process: None,
        }
    }

    fn start(&mut self) {
        let log = std::fs::File::create(&self.log).unwrap();
        let child = certkeeper_command()
            .args(["run", "--log-format", "json", "--config"])
            .arg(&self.config)
            .env(URL_VAR, &self.url)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.process = Some(ChildGuard(child));
    }

    fn metric(&self, series: &str) -> Option<f64> {
        let (status, text) = http_get(self.metrics_port, "/metrics")?;
        (status == 200).then(|| metric_value(&text, series))?
    }

    fn leads(&self) -> bool {
        self.metric("certkeeper_leader") == Some(1.0)
    }

    fn follows(&self) -> bool {
        self.metric("certkeeper_leader") == Some(0.0)
            && http_get(self.metrics_port, "/readyz").is_some_and(|(status, _)| status == 200)
    }

    fn cli(&self, args: &[&str]) -> std::process::Output {
        support::certkeeper(&self.config, args, &[(URL_VAR, self.url.as_str())])
    }

    fn status(&self) -> serde_json::Value {
        let output = self.cli(&["status", "--json"]);
        serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Polls `check` until it holds; on timeout panics with both logs and Pebble's.
fn wait(nodes: &[&Node], pebble: &Pebble, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let logs: Vec<String> = nodes
        .iter()
        .map(|node| format!("--- {} ---\n{}", node.name, node.log()))
        .collect();
    panic!(
        "timed out waiting for {what}\n{}\n--- pebble ---\n{}",
        logs.join("\n"),
        pebble.logs()
    );
}

/// Pebble's log (requests and what it did).
fn pebble_log(pebble: &Pebble) -> String {
    std::fs::read_to_string(pebble.dir.join("pebble.log")).unwrap_or_default()
}

/// Orders Pebble created, in its own words (`Added order "ID" to the db`).
fn orders(pebble: &Pebble) -> usize {
    pebble_log(pebble).matches("Added order").count()
}

/// The serials Pebble issued (`Issued certificate serial HEX for order ID`), in order.
fn issued_serials(pebble: &Pebble) -> Vec<String> {
    pebble_log(pebble)
        .lines()
        .filter_map(|line| line.split("Issued certificate serial ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        // Pebble pads to whole bytes; the comparison is on the number.
        .map(|hex| hex.trim_start_matches('0').to_owned())
        .collect()
}

/// The certificate's fingerprint once its one target is in sync with it.
fn deployed_fingerprint(view: &serde_json::Value) -> Option<String> {
    let targets = view["targets"].as_array()?;
    if targets.len() != 1 || targets[0]["in_sync"] != true {
        return None;
    }
    view["certificates"][0]["fingerprint"]
        .as_str()
        .map(str::to_owned)
}

/// Where the load balancer sent each HTTP-01 request: `(instance, request line, status line)`.
type Routed = Arc<Mutex<Vec<(String, String, String)>>>;

/// A load balancer in front of the cluster on the port Pebble's VA dials: every connection
/// goes to the instance that does *not* lead at that moment.
fn balance_to_follower(port: u16, nodes: Vec<(&'static str, u16, u16)>) -> Routed {
    let routed: Routed = Arc::default();
    let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
    let record = routed.clone();
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let nodes = nodes.clone();
            let record = record.clone();
            std::thread::spawn(move || forward_to_follower(client, &nodes, &record));
        }
    });
    routed
}

/// `nodes`: `(name, metrics port, HTTP-01 port)`.
fn forward_to_follower(mut client: TcpStream, nodes: &[(&'static str, u16, u16)], record: &Routed) {
    let leader_gauge = |metrics: u16| {
        http_get(metrics, "/metrics").and_then(|(_, text)| metric_value(&text, "certkeeper_leader"))
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let (name, backend) = loop {
        // The follower is the instance that says it does not lead while the other says it
        // does: an instance not answering yet is neither.
        let gauges: Vec<Option<f64>> = nodes
            .iter()
            .map(|(_, metrics, _)| leader_gauge(*metrics))
            .collect();
        let follower = nodes
            .iter()
            .zip(&gauges)
            .find(|(_, gauge)| **gauge == Some(0.0))
            .filter(|_| gauges.contains(&Some(1.0)))
            .map(|(node, _)| node);
        if let Some((name, _, http01)) = follower {
            if let Ok(backend) = TcpStream::connect(("127.0.0.1", *http01)) {
                break (*name, backend);
            }
        }
        if Instant::now() > deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // One request per connection is all the VA sends; read it, pass it on, return the answer.
    client
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut request = Vec::new();
    let mut buffer = [0u8; 4096];
    while !request.windows(4).any(|window| window == b"\r\n\r\n") {
        match client.read(&mut buffer) {
            Ok(0) | Err(_) => return,
            Ok(read) => request.extend_from_slice(&buffer[..read]),
        }
    }
    let mut backend = backend;
    backend.write_all(&request).unwrap();
    backend
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = Vec::new();
    let _ = backend.read_to_end(&mut answer);
    let first_line = |bytes: &[u8]| {
        String::from_utf8_lossy(bytes)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    record
        .lock()
        .unwrap()
        .push((name.to_owned(), first_line(&request), first_line(&answer)));
    // Recorded before Pebble sees the answer, so every validation is listed once it is valid.
    let _ = client.write_all(&answer);
}

/// The deployed leaf's serial (lower-case hex without leading zeros), issuer (Pebble's
/// intermediate) and names.
fn deployed_leaf(directory: &Path) -> (String, String, Vec<String>) {
    use x509_parser::prelude::*;
    let pem_text = std::fs::read_to_string(directory.join("tls/cert.pem")).unwrap();
    let block = ::pem::parse_many(&pem_text)
        .unwrap()
        .into_iter()
        .find(|block| block.tag() == "CERTIFICATE")
        .unwrap();
    let (_, leaf) = X509Certificate::from_der(block.contents()).unwrap();
    let names = leaf
        .subject_alternative_name()
        .unwrap()
        .map(|extension| {
            extension
                .value
                .general_names
                .iter()
                .map(|name| name.to_string())
                .collect()
        })
        .unwrap_or_default();
    (
        format!("{:x}", leaf.serial),
        leaf.issuer().to_string(),
        names,
    )
}

#[test]
fn two_daemons_one_order_per_renewal_and_the_follower_answers_http01_from_the_store() {
    let pebble = Pebble::start(PebbleOptions {
        // No random badNonce rejections (a rejected newOrder is a second `POST /order-plz`)
        // and no authorization reuse: the renewal is validated again, through the follower.
        quiet: true,
        ..PebbleOptions::default()
    });
    let server = PgServer::start(free_port());
    let url = server.create_database("ha");
    let directory = tempfile::tempdir().unwrap();
    let mut a = Node::new(directory.path(), "a", &pebble, &url);
    let mut b = Node::new(directory.path(), "b", &pebble, &url);
    let routed = balance_to_follower(
        pebble.http_port,
        vec![
            ("a", a.metrics_port, a.http01_port),
            ("b", b.metrics_port, b.http01_port),
        ],
    );
    a.start();
    b.start();
    let nodes = [&a, &b];

    wait(
        &nodes,
        &pebble,
        "one leader, one follower, deployed",
        || {
            ((a.leads() && b.follows()) || (b.leads() && a.follows()))
                && deployed_fingerprint(&a.status()).is_some()
        },
    );
    let (leader, follower) = if a.leads() { (&a, &b) } else { (&b, &a) };
    let first = deployed_fingerprint(&leader.status()).unwrap();
    assert_eq!(
        orders(&pebble),
        1,
        "one order for the first issuance\n{}",
        pebble.logs()
    );
    let (serial, issuer, names) = deployed_leaf(directory.path());
    assert!(issuer.contains("Pebble"), "issued by Pebble: {issuer}");
    assert_eq!(
        issued_serials(&pebble),
        vec![serial.clone()],
        "the file target serves Pebble's one certificate"
    );
    assert!(names.iter().any(|name| name.contains(DOMAIN)), "{names:?}");
    let view = follower.status();
    assert_eq!(view["leader"]["instance"], leader.name, "{view}");

    // Every validation reached the follower and was answered from the store.
    let answered =
        |routed: &Routed| -> Vec<(String, String, String)> { routed.lock().unwrap().clone() };
    let validations = answered(&routed);
    assert!(
        !validations.is_empty(),
        "Pebble validated through the balancer"
    );
    for (instance, request, status) in &validations {
        assert_eq!(instance, follower.name, "{validations:?}");
        assert!(
            request.starts_with("GET /.well-known/acme-challenge/"),
            "{request}"
        );
        assert!(status.contains(" 200"), "{validations:?}");
    }
    let stored = "stored a new certificate version";
    assert_eq!(leader.log().matches(stored).count(), 1, "{}", leader.log());
    assert_eq!(
        follower.log().matches(stored).count(),
        0,
        "{}",
        follower.log()
    );

    // A renewal asked of the follower: passed to the leader, which orders once more.
    let renewed = follower.cli(&["renew", "c0"]);
    assert!(
        renewed.status.success(),
        "{renewed:?}\n{}\n{}",
        follower.log(),
        leader.log()
    );
    assert!(follower
        .log()
        .contains("passed a manual request to the leader"));
    wait(&nodes, &pebble, "the renewed certificate deployed", || {
        deployed_fingerprint(&follower.status()).is_some_and(|now| now != first)
    });
    assert_eq!(
        orders(&pebble),
        2,
        "exactly one more order for the renewal\n{}",
        pebble.logs()
    );
    assert_eq!(leader.log().matches(stored).count(), 2, "{}", leader.log());
    assert_eq!(follower.log().matches(stored).count(), 0);
    for log in [follower.log(), leader.log()] {
        assert!(!log.contains("\"level\":\"ERROR\""), "{log}");
    }
    assert!(
        !follower.log().contains("registered ACME account"),
        "the follower never spoke to the CA"
    );
    let after = answered(&routed);
    assert!(
        after.len() > validations.len(),
        "the renewal was validated again: {after:?}"
    );
    assert!(
        after
            .iter()
            .all(|(instance, _, status)| instance == follower.name && status.contains(" 200")),
        "{after:?}"
    );
    let (renewed_serial, issuer, _) = deployed_leaf(directory.path());
    assert!(issuer.contains("Pebble"), "{issuer}");
    assert_eq!(
        issued_serials(&pebble),
        vec![serial, renewed_serial],
        "the file target serves the renewal's certificate"
    );
    let view = leader.status();
    assert_ne!(deployed_fingerprint(&view), Some(first), "{view}");
    assert_eq!(
        leader.metric("certkeeper_leader"),
        Some(1.0),
        "the same leader throughout"
    );
}
