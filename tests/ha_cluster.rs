//! Several `certkeeper run` daemons on one real PostgreSQL store and the in-tree simulator
//! (docs/ha.md): one leads and deploys, the others follow and serve metrics and health from
//! the shared store; a paused leader's late writes are fenced off (split brain); a killed
//! leader is replaced within the lease TTL plus a pass (failover); with the database down
//! nobody writes to the cloud and everyone reports not ready, and the rollout resumes when
//! it returns (outage).

#![cfg(feature = "sim")]

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::postgres::PgServer;
use support::{certkeeper_command, free_port, http_get, metric_value, start_sim};

const SECRET_VAR: &str = "TEST_ALIBABA_SECRET";
const SECRET: &str = "ha-test-secret";
const URL_VAR: &str = "CERTKEEPER_TEST_STORE_URL";

/// Generous: the machine is shared and each daemon is a debug build.
const DEADLINE: Duration = Duration::from_secs(120);

/// A short lease keeps the tests quick (the default is 15 s); `CERTKEEPER_HA_LEASE_TTL`
/// (seconds) sets another for a measurement (BENCHMARKS.md).
fn lease_ttl_seconds() -> u64 {
    std::env::var("CERTKEEPER_HA_LEASE_TTL")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(3)
}

fn seed(domains: &[String]) -> String {
    let list = domains
        .iter()
        .map(|domain| format!("{domain:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "[[alibaba.accounts]]\naccess_key_id = \"LTAIhatest\"\naccess_key_secret = \"{SECRET}\"\n\n\
         [alibaba]\ncdn_domains = [{list}]\n"
    )
}

/// One daemon of the cluster: its config, metrics port and log file.
struct Node {
    name: String,
    config: PathBuf,
    metrics_port: u16,
    log: PathBuf,
    url: String,
    process: Option<support::ChildGuard>,
}

impl Node {
    fn new(directory: &Path, name: &str, sim: &str, url: &str, domains: &[String]) -> Self {
        let metrics_port = free_port();
        let state = directory.join(format!("state-{name}"));
        let mut text = format!(
            r#"
[daemon]
state_dir = "{state}"
metrics_listen = "127.0.0.1:{metrics_port}"
scan_schedule = "* * * * *"

[store]
backend = "postgres"
url_env = "{URL_VAR}"
lease_ttl = "{ttl}s"
instance = "{name}"

[credentials.ali]
provider = "alibaba"
access_key_id = "LTAIhatest"
access_key_secret_env = "{SECRET_VAR}"
endpoint = "{sim}"

[local_ca.internal]
leaf_lifetime = "30d"
"#,
            state = state.display(),
            ttl = lease_ttl_seconds(),
        );
        for (index, domain) in domains.iter().enumerate() {
            text.push_str(&format!(
                "\n[[certificate]]\nname = \"c{index}\"\ndomains = [\"{domain}\"]\n\
                 source = {{ local_ca = \"internal\" }}\ndeploy_to = [\"cdn{index}\"]\n\n\
                 [[target]]\nname = \"cdn{index}\"\nkind = \"alibaba-cdn\"\n\
                 credentials = \"ali\"\ndomain = \"{domain}\"\n"
            ));
        }
        let config = directory.join(format!("{name}.toml"));
        std::fs::write(&config, text).unwrap();
        Self {
            name: name.into(),
            config,
            metrics_port,
            log: directory.join(format!("{name}.log")),
            url: url.into(),
            process: None,
        }
    }

    fn start(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = certkeeper_command()
            .args(["run", "--log-format", "json", "--config"])
            .arg(&self.config)
            .env(SECRET_VAR, SECRET)
            .env(URL_VAR, &self.url)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.process = Some(support::ChildGuard(child));
    }

    fn signal(&self, name: &str) {
        self.process.as_ref().unwrap().signal(name);
    }

    fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.signal("KILL");
            process.wait_timeout(DEADLINE).unwrap();
        }
    }

    fn metric(&self, series: &str) -> Option<f64> {
        let (status, text) = http_get(self.metrics_port, "/metrics")?;
        (status == 200).then(|| metric_value(&text, series))?
    }

    fn leads(&self) -> bool {
        self.metric("certkeeper_leader") == Some(1.0)
    }

    fn ready(&self) -> Option<bool> {
        http_get(self.metrics_port, "/readyz").map(|(status, _)| status == 200)
    }

    fn cli(&self, args: &[&str]) -> std::process::Output {
        support::certkeeper(
            &self.config,
            args,
            &[(SECRET_VAR, SECRET), (URL_VAR, self.url.as_str())],
        )
    }

    fn status(&self) -> serde_json::Value {
        let output = self.cli(&["status", "--json"]);
        serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Polls `check` until it holds; on timeout panics with every node's log (what an operator
/// would read first).
fn wait(nodes: &[&Node], what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let logs: Vec<String> = nodes
        .iter()
        .map(|node| format!("--- {} ---\n{}", node.name, node.log()))
        .collect();
    panic!("timed out waiting for {what}\n{}", logs.join("\n"));
}

/// The fingerprint every target of `view` is in sync on, when all are on the newest version.
fn converged_fingerprints(view: &serde_json::Value) -> Option<Vec<String>> {
    let certificates = view["certificates"].as_array()?;
    let targets = view["targets"].as_array()?;
    if targets.is_empty() || !targets.iter().all(|target| target["in_sync"] == true) {
        return None;
    }
    certificates
        .iter()
        .map(|certificate| certificate["fingerprint"].as_str().map(str::to_owned))
        .collect()
}

/// The simulator's successful certificate writes.
fn cdn_writes(simulator: &certkeeper::cloud::sim::Simulator) -> u64 {
    simulator.stats_json()["alibaba"]["SetCdnDomainSSLCertificate"]["ok"]
        .as_u64()
        .unwrap_or(0)
}

/// What the store holds per fencing token: `(table, token, rows)`.
fn rows_by_token(server: &PgServer) -> String {
    server.sql(
        "ha",
        "SELECT string_agg(t || ':' || fencing_token || '=' || n, ' ' ORDER BY t, fencing_token) \
         FROM (SELECT 'attempts' AS t, fencing_token, count(*) AS n FROM attempts GROUP BY 2 \
               UNION ALL SELECT 'versions', fencing_token, count(*) FROM certificate_versions GROUP BY 2 \
               UNION ALL SELECT 'ledger', fencing_token, count(*) FROM deployments GROUP BY 2) AS rows",
    )
}

#[test]
fn split_brain_a_paused_leader_writes_nothing_after_another_took_over() {
    let server = PgServer::start(free_port());
    let url = server.create_database("ha");
    let domains = vec!["www.example.com".to_owned()];
    let sim = start_sim(&seed(&domains));
    let directory = tempfile::tempdir().unwrap();
    let mut a = Node::new(directory.path(), "a", &sim.url, &url, &domains);
    let mut b = Node::new(directory.path(), "b", &sim.url, &url, &domains);

    a.start();
    wait(&[&a], "a to lead and deploy", || {
        a.leads() && converged_fingerprints(&a.status()).is_some()
    });
    let first = converged_fingerprints(&a.status()).unwrap();
    b.start();
    wait(&[&a, &b], "b to follow, ready", || {
        b.ready() == Some(true) && b.metric("certkeeper_leader") == Some(0.0)
    });
    // A follower serves every certificate's expiry from the shared store.
    assert!(
        b.metric("certkeeper_certificate_expiration_timestamp_seconds{certificate=\"c0\"}")
            .is_some_and(|expiry| expiry > 0.0),
        "the follower's gauges come from the store"
    );
    let view = a.status();
    assert_eq!(view["leader"]["instance"], "a", "{view}");
    assert_eq!(cdn_writes(&sim.simulator), 1);

    // Pause the leader past its lease: b takes over and deploys a new version.
    a.signal("STOP");
    let paused = Instant::now();
    wait(&[&b], "b to take over", || b.leads());
    let took_over = paused.elapsed();
    let renewed = b.cli(&["renew", "c0"]);
    assert!(renewed.status.success(), "{renewed:?}\n{}", b.log());
    wait(&[&b], "the new version on the cloud", || {
        converged_fingerprints(&b.status()).is_some_and(|now| now != first)
    });
    let second = converged_fingerprints(&b.status()).unwrap();
    assert_eq!(cdn_writes(&sim.simulator), 2);
    let before = rows_by_token(&server);
    let view = b.status();
    assert_eq!(view["leader"]["instance"], "b", "{view}");

    // The old leader wakes up: it learns it lost the lease and writes nothing.
    a.signal("CONT");
    wait(&[&a, &b], "a to step down", || {
        a.metric("certkeeper_leader") == Some(0.0)
    });
    wait(&[&a], "a to serve health again", || a.ready() == Some(true));
    assert_eq!(
        rows_by_token(&server),
        before,
        "no write of a's leadership landed"
    );
    assert_eq!(converged_fingerprints(&b.status()), Some(second.clone()));
    let state = sim.simulator.state_json().to_string();
    assert!(
        state.contains(&second[0]),
        "the cloud serves the newest: {state}"
    );
    assert_eq!(
        cdn_writes(&sim.simulator),
        2,
        "a wrote nothing to the cloud"
    );
    eprintln!("b took over {took_over:?} after a was paused");
    // `renew` asked of the follower reaches the leader through the store and answers.
    let renewed = a.cli(&["renew", "c0"]);
    assert!(
        renewed.status.success(),
        "{renewed:?}\n{}\n{}",
        a.log(),
        b.log()
    );
    let third = converged_fingerprints(&b.status()).unwrap();
    assert_ne!(third, second, "the leader made a new version");
    assert_eq!(cdn_writes(&sim.simulator), 3, "and deployed it once");
    assert!(a.log().contains("passed a manual request to the leader"));
    // `plan` on a follower reads the shared store: nothing to change.
    let plan = a.cli(&["plan", "--json"]);
    assert!(plan.status.success(), "{plan:?}");

    // No secret in any log (the URL carries none here; the simulator's key must not show).
    for node in [&a, &b] {
        assert!(
            !node.log().contains(SECRET),
            "{} logged the secret",
            node.name
        );
    }
}

/// `certificate.stored` events per certificate: how many versions were ever made.
fn versions_stored(server: &PgServer) -> std::collections::BTreeMap<String, u64> {
    server
        .sql(
            "ha",
            "SELECT subject || '=' || count(*) FROM events \
             WHERE kind = 'certificate.stored' GROUP BY subject",
        )
        .lines()
        .filter_map(|line| {
            let (name, count) = line.split_once('=')?;
            Some((name.to_owned(), count.parse().ok()?))
        })
        .collect()
}

#[test]
fn failover_a_killed_leader_is_replaced_and_the_fleet_converges_without_double_writes() {
    use rand::Rng;
    // `CERTKEEPER_HA_ROUNDS` sets more kills for a measurement (BENCHMARKS.md).
    let rounds: usize = std::env::var("CERTKEEPER_HA_ROUNDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(10);
    let server = PgServer::start(free_port());
    let url = server.create_database("ha");
    let domains: Vec<String> = (0..6)
        .map(|index| format!("d{index}.example.com"))
        .collect();
    let sim = start_sim(&seed(&domains));
    // Every certificate write takes a while, so a kill lands mid-rollout.
    sim.simulator
        .add_faults(vec![certkeeper::cloud::sim::FaultRule {
            vendor: "alibaba".into(),
            action: Some("SetCdnDomainSSLCertificate".into()),
            status: 200,
            code: None,
            message: None,
            count: None,
            probability: None,
            delay_ms: Some(150),
        }]);
    let directory = tempfile::tempdir().unwrap();
    let mut nodes: Vec<Node> = ["a", "b", "c"]
        .iter()
        .map(|name| Node::new(directory.path(), name, &sim.url, &url, &domains))
        .collect();
    for node in &mut nodes {
        node.start();
    }
    let everyone: Vec<&Node> = nodes.iter().collect();
    wait(&everyone, "a first leader and a converged fleet", || {
        nodes.iter().filter(|node| node.leads()).count() == 1
            && converged_fingerprints(&nodes[0].status()).is_some()
    });

    let mut rng = rand::thread_rng();
    let mut failovers = Vec::new();
    let mut first_writes = Vec::new();
    for round in 0..rounds {
        let leader = nodes.iter().position(Node::leads).unwrap();
        // A rollout: renew every certificate on the leader (in the background, as an
        // operator's `renew` would be), then kill the leader at a random moment of it.
        let renewals: Vec<support::ChildGuard> = (0..domains.len())
            .map(|index| {
                support::ChildGuard(
                    certkeeper_command()
                        .args(["renew", &format!("c{index}"), "--config"])
                        .arg(&nodes[leader].config)
                        .env(SECRET_VAR, SECRET)
                        .env(URL_VAR, &url)
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .spawn()
                        .unwrap(),
                )
            })
            .collect();
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..1200)));
        nodes[leader].kill();
        let killed = Instant::now();
        drop(renewals);
        let survivors: Vec<&Node> = nodes.iter().filter(|node| node.process.is_some()).collect();
        wait(
            &survivors,
            &format!("a new leader in round {round}"),
            || survivors.iter().filter(|node| node.leads()).count() == 1,
        );
        failovers.push(killed.elapsed());
        // The new leader's first cloud write, in rounds that left one pending. Counted from
        // when its leadership is seen (a write the killed leader had in flight cannot count),
        // until the next write, or until the fleet converges with nothing left to write.
        let writes_at_takeover = cdn_writes(&sim.simulator);
        let mut first_write = None;
        wait(
            &survivors,
            &format!("a write or a converged fleet after round {round}"),
            || {
                if cdn_writes(&sim.simulator) > writes_at_takeover {
                    first_write = Some(killed.elapsed());
                    return true;
                }
                converged_fingerprints(&nodes[0].status()).is_some_and(|fingerprints| {
                    let state = sim.simulator.state_json();
                    fingerprints.iter().enumerate().all(|(index, fingerprint)| {
                        state["alibaba"]["cdn_domains"][&domains[index]]["fingerprint"]
                            == fingerprint.as_str()
                    })
                })
            },
        );
        first_writes.extend(first_write);
        nodes[leader].start();
    }
    let everyone: Vec<&Node> = nodes.iter().collect();
    wait(
        &everyone,
        "the fleet to converge after the last failover",
        || {
            let view = nodes[0].status();
            converged_fingerprints(&view).is_some_and(|fingerprints| {
                let state = sim.simulator.state_json();
                fingerprints.iter().enumerate().all(|(index, fingerprint)| {
                    state["alibaba"]["cdn_domains"][&domains[index]]["fingerprint"]
                        == fingerprint.as_str()
                })
            })
        },
    );
    assert_eq!(nodes.iter().filter(|node| node.leads()).count(), 1);

    // Each write to a target is a version it had to get; a second write of the same version
    // only after a leader died with that write uncertain (its ledger row left `deploying`),
    // at most once per kill.
    let stored = versions_stored(&server);
    let state = sim.simulator.state_json();
    let mut extra = 0;
    for (index, domain) in domains.iter().enumerate() {
        let writes = state["alibaba"]["cdn_domains"][domain]["writes"]
            .as_u64()
            .unwrap();
        let versions = stored[&format!("c{index}")];
        assert!(writes >= 1, "{domain} was never written");
        extra += writes.saturating_sub(versions);
    }
    assert!(
        extra <= rounds as u64,
        "{extra} writes beyond one per version with {rounds} kills: {state}"
    );
    failovers.sort();
    eprintln!(
        "failover (kill -9 to a new leader) over {rounds} rounds, lease TTL {}s: median {:?}, \
         worst {:?}; {extra} writes beyond one per version",
        lease_ttl_seconds(),
        failovers[rounds / 2],
        failovers[rounds - 1]
    );
    first_writes.sort();
    if let (Some(median), Some(worst)) = (
        first_writes.get(first_writes.len() / 2),
        first_writes.last(),
    ) {
        eprintln!(
            "kill -9 to the new leader's first cloud write, in the {} of {rounds} rounds that \
             left one pending: median {median:?}, worst {worst:?}",
            first_writes.len()
        );
    }
}

#[test]
fn database_outage_no_cloud_writes_not_ready_and_the_rollout_resumes() {
    const OUTAGE: Duration = Duration::from_secs(30);
    let mut server = PgServer::start(free_port());
    let url = server.create_database("ha");
    let domains: Vec<String> = (0..6)
        .map(|index| format!("o{index}.example.com"))
        .collect();
    let sim = start_sim(&seed(&domains));
    sim.simulator
        .add_faults(vec![certkeeper::cloud::sim::FaultRule {
            vendor: "alibaba".into(),
            action: Some("SetCdnDomainSSLCertificate".into()),
            status: 200,
            code: None,
            message: None,
            count: None,
            probability: None,
            delay_ms: Some(300),
        }]);
    let directory = tempfile::tempdir().unwrap();
    let mut nodes: Vec<Node> = ["a", "b"]
        .iter()
        .map(|name| Node::new(directory.path(), name, &sim.url, &url, &domains))
        .collect();
    for node in &mut nodes {
        node.start();
    }
    let everyone: Vec<&Node> = nodes.iter().collect();
    wait(&everyone, "a leader and a converged fleet", || {
        nodes.iter().filter(|node| node.leads()).count() == 1
            && converged_fingerprints(&nodes[0].status()).is_some()
    });
    let leader = nodes.iter().position(Node::leads).unwrap();
    // A rollout: every certificate renewed on the leader; the database goes away once the
    // first new version reached the cloud.
    let writes_before = cdn_writes(&sim.simulator);
    let _renewals: Vec<support::ChildGuard> = (0..domains.len())
        .map(|index| {
            support::ChildGuard(
                certkeeper_command()
                    .args(["renew", &format!("c{index}"), "--config"])
                    .arg(&nodes[leader].config)
                    .env(SECRET_VAR, SECRET)
                    .env(URL_VAR, &url)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    wait(&everyone, "the rollout to start", || {
        cdn_writes(&sim.simulator) > writes_before
    });
    let kept_before = versions_kept(&server);
    server.stop();
    let stopped = Instant::now();

    // Nobody leads, nobody is ready, metrics and health are still served.
    wait(
        &everyone,
        "every daemon to report not ready and not leading",
        || {
            nodes.iter().all(|node| {
                node.ready() == Some(false) && node.metric("certkeeper_leader") == Some(0.0)
            })
        },
    );
    // A write already on the wire when the database went may still land; none after that.
    let writes_during = cdn_writes(&sim.simulator);
    while stopped.elapsed() < OUTAGE {
        for node in &nodes {
            assert_eq!(
                node.ready(),
                Some(false),
                "{} ready without its store",
                node.name
            );
            assert_eq!(node.metric("certkeeper_leader"), Some(0.0), "{}", node.name);
        }
        assert_eq!(
            cdn_writes(&sim.simulator),
            writes_during,
            "a cloud write while the database was down"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    server.resume();
    wait(&everyone, "a leader again, everyone ready", || {
        nodes.iter().filter(|node| node.leads()).count() == 1
            && nodes.iter().all(|node| node.ready() == Some(true))
    });
    wait(&everyone, "the rollout to complete", || {
        converged_fingerprints(&nodes[0].status()).is_some_and(|fingerprints| {
            let state = sim.simulator.state_json();
            fingerprints.iter().enumerate().all(|(index, fingerprint)| {
                state["alibaba"]["cdn_domains"][&domains[index]]["fingerprint"]
                    == fingerprint.as_str()
            })
        })
    });
    // Nothing lost: every version stored before the outage is still there (and every
    // target serves its certificate's newest, above).
    let kept_after = versions_kept(&server);
    assert!(
        kept_before.is_subset(&kept_after),
        "lost: {:?}",
        kept_before.difference(&kept_after).collect::<Vec<_>>()
    );
    assert!(
        kept_before.len() > domains.len(),
        "the rollout had begun: {kept_before:?}"
    );
}

/// The fingerprints of every stored version.
fn versions_kept(server: &PgServer) -> std::collections::BTreeSet<String> {
    server
        .sql("ha", "SELECT fingerprint FROM certificate_versions")
        .lines()
        .map(str::to_owned)
        .collect()
}
