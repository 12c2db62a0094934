//! The Engine issue's acceptance, end to end through the binary: a fleet of 200 Alibaba CDN
//! domains, 20 VOD domains and 3 RDS instances, 2 Huawei GaussDB instances under the backup
//! encryption policy and 2 QingCloud MySQL Plus clusters under the SSL policy (both enforced,
//! one resource of each initially non-compliant), with one certificate from a watched file
//! pair and one from the local CA, against the in-process simulator. Covered: convergence
//! (every target serves the newest version, every policy resource compliant), a replaced
//! certificate file rolling out (with `certkeeper plan` before and after), faults (30 %
//! transient errors, throttling bursts, RDS busy) whose classes all reach the store's attempt
//! history, a bad config sent with SIGHUP refused while the daemon keeps running on the old
//! one, and `kill -9` at random moments during a rollout.
//!
//! The chaos test kills `CERTKEEPER_CHAOS_KILLS` times (default 20: the chaos suite, about a
//! minute, so it runs in the suite); `CERTKEEPER_CHAOS_SEED` replays the moments of a logged
//! run:
//!
//! ```text
//! CERTKEEPER_CHAOS_SEED=1234 cargo test --test engine_fleet -- chaos --nocapture
//! ```

#![cfg(feature = "sim")]

mod support;

use certkeeper::cert::bundle::testing::TestChain;
use certkeeper::cert::LeafInfo;
use certkeeper::cloud::sim::{FaultRule, Simulator};
use certkeeper::error::ErrorClass;
use certkeeper::store::sqlite::SqliteStore;
use certkeeper::store::{StateStore, SubjectKind};
use rand::{Rng, SeedableRng};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{certkeeper_command, free_port, http_get, start_sim, wait_for, ChildGuard, Sim};
use time::OffsetDateTime;

const CDN_DOMAINS: usize = 200;
const VOD_DOMAINS: usize = 20;
const RDS_INSTANCES: usize = 3;
const ALIBABA_SECRET: &str = "fleet-alibaba-secret";
const HUAWEI_SECRET: &str = "fleet-huawei-secret";
const QINGCLOUD_SECRET: &str = "fleet-qingcloud-secret";
const PROJECT: &str = "619d3e78f61b4be68bc5aa0b59edcf7b";
const KMS_KEY: &str = "b82fa43f-f6e8-4ec4-9c31-231bc547c526";
/// GaussDB instance ids: 32 hex digits and `in07`.
const GAUSSDB: [&str; 2] = [
    "00000000000000000000000000000001in07",
    "00000000000000000000000000000002in07",
];
const CLUSTERS: [&str; 2] = ["cl-fleet001", "cl-fleet002"];
/// Every wait for convergence: the daemon may still reconcile on a 30 s tick and check
/// policies once a minute, and failures back off for 30 s to 2 min.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(240);

fn cdn_domain(index: usize) -> String {
    format!("cdn{index}.cdn.fleet.example")
}

fn vod_domain(index: usize) -> String {
    format!("vod{index}.vod.fleet.example")
}

fn rds_id(index: usize) -> String {
    format!("rm-fleet{index}")
}

fn rds_connection(index: usize) -> String {
    format!("rm-fleet{index}.mysql.rds.aliyuncs.com")
}

fn quoted(items: impl Iterator<Item = String>) -> String {
    items
        .map(|item| format!("\"{item}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The simulator's fleet: GaussDB instance 1 and cluster 1 are compliant, 2 are not.
fn seed() -> String {
    let mut text = format!(
        r#"
[[alibaba.accounts]]
access_key_id = "LTAIfleet"
access_key_secret = "{ALIBABA_SECRET}"

[alibaba]
cdn_domains = [{cdn}]
vod_domains = [{vod}]
rds_ssl_delay_ms = 200
throttle_retry_after_ms = 300

[huawei]
kms_keys = ["{KMS_KEY}"]

[[huawei.accounts]]
access_key_id = "HWFLEET"
secret_access_key = "{HUAWEI_SECRET}"
project_id = "{PROJECT}"

[[huawei.gaussdb_instances]]
id = "{g1}"
backup_encryption = "on"
kms_key_id = "{KMS_KEY}"
project_id = "{PROJECT}"

[[huawei.gaussdb_instances]]
id = "{g2}"
backup_encryption = "off"
project_id = "{PROJECT}"

[qingcloud]
job_phase_ms = 200

[[qingcloud.accounts]]
access_key_id = "QYFLEET"
secret_access_key = "{QINGCLOUD_SECRET}"

[[qingcloud.mysql_plus_clusters]]
id = "{c1}"
zone = "pek3"
ssl = true

[[qingcloud.mysql_plus_clusters]]
id = "{c2}"
zone = "pek3"
ssl = false
"#,
        cdn = quoted((0..CDN_DOMAINS).map(cdn_domain)),
        vod = quoted((0..VOD_DOMAINS).map(vod_domain)),
        g1 = GAUSSDB[0],
        g2 = GAUSSDB[1],
        c1 = CLUSTERS[0],
        c2 = CLUSTERS[1],
    );
    for index in 0..RDS_INSTANCES {
        text.push_str(&format!(
            "\n[[alibaba.rds_instances]]\nid = \"{}\"\nengine = \"MySQL\"\nconnection_string = \"{}\"\n",
            rds_id(index),
            rds_connection(index)
        ));
    }
    text
}

/// The daemon's config: certificate `edge` (file source) goes to every CDN domain and RDS
/// instance, certificate `video` (local CA) to every VOD domain.
fn config(fleet: &Fleet) -> String {
    let edge_targets = (0..CDN_DOMAINS)
        .map(|index| format!("cdn-{index}"))
        .chain((0..RDS_INSTANCES).map(|index| format!("rds-{index}")));
    let mut text = format!(
        r#"
[daemon]
state_dir = "{state}"
metrics_listen = "127.0.0.1:{port}"
scan_schedule = "* * * * *"

[credentials.ali]
provider = "alibaba"
access_key_id = "LTAIfleet"
access_key_secret_env = "FLEET_ALIBABA_SECRET"
endpoint = "{sim}"

[credentials.hw]
provider = "huawei"
access_key_id = "HWFLEET"
access_key_secret_env = "FLEET_HUAWEI_SECRET"
region = "cn-north-4"
project_id = "{PROJECT}"
endpoint = "{sim}"

[credentials.qc]
provider = "qingcloud"
access_key_id = "QYFLEET"
access_key_secret_env = "FLEET_QINGCLOUD_SECRET"
zone = "pek3"
endpoint = "{sim}"

[local_ca.fleet]
leaf_lifetime = "30d"

[[certificate]]
name = "edge"
domains = ["*.cdn.fleet.example", "*.mysql.rds.aliyuncs.com"]
source = {{ file = {{ cert = "{cert}", key = "{key}" }} }}
deploy_to = [{edge}]

[[certificate]]
name = "video"
domains = ["*.vod.fleet.example"]
source = {{ local_ca = "fleet" }}
deploy_to = [{video}]

[[policy]]
name = "gaussdb-backup-encryption"
kind = "huawei-gaussdb-backup-encryption"
credentials = "hw"
resources = [{gaussdb}]
mode = "enforce"
desired = "on"
kms_key_id = "{KMS_KEY}"

[[policy]]
name = "mysql-plus-ssl"
kind = "qingcloud-mysql-plus-ssl"
credentials = "qc"
resources = [{clusters}]
mode = "enforce"
ssl = true
job_poll = {{ interval = "1s", max_interval = "1s", deadline = "1m" }}
"#,
        state = fleet.state_dir.display(),
        port = fleet.metrics_port,
        sim = fleet.sim_url,
        cert = fleet.cert_path.display(),
        key = fleet.key_path.display(),
        edge = quoted(edge_targets),
        video = quoted((0..VOD_DOMAINS).map(|index| format!("vod-{index}"))),
        gaussdb = quoted(GAUSSDB.iter().map(|id| id.to_string())),
        clusters = quoted(CLUSTERS.iter().map(|id| id.to_string())),
    );
    for index in 0..CDN_DOMAINS {
        text.push_str(&format!(
            "\n[[target]]\nname = \"cdn-{index}\"\nkind = \"alibaba-cdn\"\ncredentials = \"ali\"\ndomain = \"{}\"\n",
            cdn_domain(index)
        ));
    }
    for index in 0..VOD_DOMAINS {
        text.push_str(&format!(
            "\n[[target]]\nname = \"vod-{index}\"\nkind = \"alibaba-vod\"\ncredentials = \"ali\"\ndomain = \"{}\"\n",
            vod_domain(index)
        ));
    }
    for index in 0..RDS_INSTANCES {
        text.push_str(&format!(
            "\n[[target]]\nname = \"rds-{index}\"\nkind = \"alibaba-rds\"\ncredentials = \"ali\"\ninstance_id = \"{}\"\nconnection_string = \"{}\"\npoll_interval_secs = 0.2\nwait_timeout_secs = 60\n",
            rds_id(index),
            rds_connection(index)
        ));
    }
    text
}

/// One simulated fleet: the simulator, a scratch directory with the config, the watched
/// certificate files, the state directory and the daemons' log.
struct Fleet {
    simulator: Arc<Simulator>,
    sim_url: String,
    _directory: tempfile::TempDir,
    config_path: PathBuf,
    state_dir: PathBuf,
    cert_path: PathBuf,
    key_path: PathBuf,
    log_path: PathBuf,
    metrics_port: u16,
    /// Serves the simulator; dropped last.
    _sim: Sim,
}

impl Fleet {
    /// Starts the simulator (with `faults` from its first request), writes the first
    /// certificate files and the config. Returns the fleet and the file's fingerprint.
    fn new(faults: Vec<FaultRule>) -> (Self, String) {
        let sim = start_sim(&seed());
        // No request has reached the simulator yet: the faults apply from the first one.
        sim.simulator.add_faults(faults);
        let directory = tempfile::tempdir().unwrap();
        let watched = directory.path().join("import");
        std::fs::create_dir_all(&watched).unwrap();
        let fleet = Fleet {
            simulator: sim.simulator.clone(),
            sim_url: sim.url.clone(),
            config_path: directory.path().join("certkeeper.toml"),
            state_dir: directory.path().join("state"),
            cert_path: watched.join("edge.crt"),
            key_path: watched.join("edge.key"),
            log_path: directory.path().join("daemon.log"),
            metrics_port: free_port(),
            _directory: directory,
            _sim: sim,
        };
        let fingerprint = fleet.replace_edge_certificate("v1");
        std::fs::write(&fleet.config_path, config(&fleet)).unwrap();
        (fleet, fingerprint)
    }

    /// Writes a new CA-signed certificate for the `edge` names over the watched pair, each
    /// file atomically (write a temporary file, then rename it over the old one). Returns
    /// the new leaf's fingerprint.
    fn replace_edge_certificate(&self, label: &str) -> String {
        let now = OffsetDateTime::now_utc();
        let chain = TestChain::named(
            &format!("fleet {label}"),
            &["*.cdn.fleet.example", "*.mysql.rds.aliyuncs.com"],
            now - time::Duration::hours(1),
            now + time::Duration::days(90),
        );
        let fingerprint = LeafInfo::from_pem("leaf", &chain.leaf).unwrap().fingerprint;
        let replace = |path: &Path, text: &str| {
            let temporary = path.with_extension("tmp");
            std::fs::write(&temporary, text).unwrap();
            std::fs::rename(&temporary, path).unwrap();
        };
        replace(&self.key_path, chain.key.expose());
        replace(
            &self.cert_path,
            &format!("{}{}", chain.leaf, chain.intermediate),
        );
        fingerprint
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = certkeeper_command();
        command
            .args(args)
            .arg("--config")
            .arg(&self.config_path)
            .env("FLEET_ALIBABA_SECRET", ALIBABA_SECRET)
            .env("FLEET_HUAWEI_SECRET", HUAWEI_SECRET)
            .env("FLEET_QINGCLOUD_SECRET", QINGCLOUD_SECRET);
        command
    }

    /// `certkeeper run`, logging (appended) to the fleet's log file.
    fn start(&self) -> Daemon {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap();
        Daemon(ChildGuard(
            self.command(&["run", "--log-format", "json"])
                .stdout(Stdio::null())
                .stderr(Stdio::from(log))
                .spawn()
                .unwrap(),
        ))
    }

    fn status(&self) -> Value {
        let output = self.command(&["status", "--json"]).output().unwrap();
        serde_json::from_slice(&output.stdout).unwrap_or(Value::Null)
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Whether every target serves the newest version of its certificate (by the store and
    /// by the simulator), `edge` being `edge_fingerprint`, and every policy resource is
    /// compliant (by the store and by the simulator). `Err` says what is still missing.
    fn converged(&self, edge_fingerprint: &str) -> Result<Value, String> {
        let status = self.status();
        let newest = |name: &str| -> Option<String> {
            status["certificates"]
                .as_array()?
                .iter()
                .find(|row| row["name"] == name)?["fingerprint"]
                .as_str()
                .map(str::to_owned)
        };
        let edge = newest("edge").ok_or("no edge version stored yet")?;
        if edge != edge_fingerprint {
            return Err(format!(
                "edge: the store's newest is {edge}, not the file's {edge_fingerprint}"
            ));
        }
        let video = newest("video").ok_or("no video version stored yet")?;
        let targets = status["targets"].as_array().ok_or("no targets in status")?;
        if targets.len() != CDN_DOMAINS + VOD_DOMAINS + RDS_INSTANCES {
            return Err(format!("{} targets in status", targets.len()));
        }
        let lagging: Vec<&str> = targets
            .iter()
            .filter(|row| {
                let wanted = if row["certificate"] == "edge" {
                    &edge
                } else {
                    &video
                };
                !(row["in_sync"] == true
                    && row["desired_fingerprint"] == wanted.as_str()
                    && row["observed_fingerprint"] == wanted.as_str())
            })
            .filter_map(|row| row["name"].as_str())
            .collect();
        if !lagging.is_empty() {
            return Err(format!(
                "{} targets not in sync with the newest version per the store, e.g. {:?}",
                lagging.len(),
                &lagging[..lagging.len().min(5)]
            ));
        }
        let policies = status["policies"].as_array().ok_or("no policies")?;
        if policies.len() != 4 || policies.iter().any(|row| row["compliant"] != true) {
            return Err(format!("policies per the store: {policies:?}"));
        }

        let state = self.simulator.state_json();
        let served = |section: &str, key: &str| -> Option<String> {
            state["alibaba"][section][key]["fingerprint"]
                .as_str()
                .map(str::to_owned)
        };
        let mut wrong = Vec::new();
        for index in 0..CDN_DOMAINS {
            if served("cdn_domains", &cdn_domain(index)).as_deref() != Some(edge.as_str()) {
                wrong.push(cdn_domain(index));
            }
        }
        for index in 0..VOD_DOMAINS {
            if served("vod_domains", &vod_domain(index)).as_deref() != Some(video.as_str()) {
                wrong.push(vod_domain(index));
            }
        }
        for index in 0..RDS_INSTANCES {
            if served("rds_instances", &rds_id(index)).as_deref() != Some(edge.as_str()) {
                wrong.push(rds_id(index));
            }
        }
        if !wrong.is_empty() {
            return Err(format!(
                "{} simulated targets do not serve the newest version, e.g. {:?}",
                wrong.len(),
                &wrong[..wrong.len().min(5)]
            ));
        }
        for id in GAUSSDB {
            let instance = &state["huawei"]["gaussdb_instances"][id];
            if instance["backup_encryption"] != "on" || instance["kms_key_id"] != KMS_KEY {
                return Err(format!("GaussDB {id} in the simulator: {instance}"));
            }
        }
        let clusters = state["qingcloud"]["mysql_plus_clusters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if clusters.len() != 2 || clusters.iter().any(|cluster| cluster["ssl"] != true) {
            return Err(format!(
                "MySQL Plus clusters in the simulator: {clusters:?}"
            ));
        }
        Ok(status)
    }

    /// Polls [`converged`](Self::converged) every 500 ms until it holds.
    fn wait_converged(&self, edge_fingerprint: &str, what: &str) -> Value {
        let started = Instant::now();
        let mut last = String::new();
        while started.elapsed() < CONVERGE_TIMEOUT {
            match self.converged(edge_fingerprint) {
                Ok(status) => {
                    eprintln!("{what}: converged in {:.1?}", started.elapsed());
                    return status;
                }
                Err(reason) => last = reason,
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        panic!(
            "{what}: not converged after {CONVERGE_TIMEOUT:?}: {last}\ndaemon log tail:\n{}",
            self.log_tail()
        );
    }

    /// `certkeeper plan --json`, checking that it wrote nothing.
    fn plan(&self) -> Value {
        let writes_before = self.write_calls();
        let stored_before = self.stored_versions();
        let output = self.command(&["plan", "--json"]).output().unwrap();
        assert!(
            matches!(output.status.code(), Some(0 | 2)),
            "certkeeper plan: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let view: Value = serde_json::from_slice(&output.stdout).unwrap();
        // The exit code says whether anything would change (0 none, 2 some).
        let changed = view["changes"].as_u64() != Some(0);
        assert_eq!(
            output.status.code(),
            Some(if changed { 2 } else { 0 }),
            "{view}"
        );
        assert_eq!(self.write_calls(), writes_before, "plan wrote to a target");
        assert_eq!(
            self.stored_versions(),
            stored_before,
            "plan stored a version"
        );
        view
    }

    /// Every successful write call the simulator answered, of any vendor.
    fn write_calls(&self) -> Value {
        let state = self.simulator.state_json();
        let writes = |section: &str| -> Vec<Value> {
            state["alibaba"][section]
                .as_object()
                .map(|items| items.values().map(|item| item["writes"].clone()).collect())
                .unwrap_or_default()
        };
        serde_json::json!({
            "cdn": writes("cdn_domains"),
            "vod": writes("vod_domains"),
            "rds": writes("rds_instances"),
            "huawei": state["huawei"]["write_calls_total"],
            "qingcloud": state["qingcloud"]["write_calls"],
        })
    }

    /// How many versions of each certificate the store holds (none without a store).
    fn stored_versions(&self) -> Vec<usize> {
        match SqliteStore::open_existing(&self.state_dir).unwrap() {
            Some(store) => ["edge", "video"]
                .iter()
                .map(|name| store.certificate_versions(name).unwrap().len())
                .collect(),
            None => Vec::new(),
        }
    }

    /// Opens the daemon's store from the test (the daemon must not be running).
    fn store(&self) -> SqliteStore {
        SqliteStore::open_existing(&self.state_dir)
            .unwrap()
            .expect("a store in the state directory")
    }

    fn alibaba_writes(&self, section: &str, key: &str) -> u64 {
        self.simulator.state_json()["alibaba"][section][key]["writes"]
            .as_u64()
            .unwrap_or(0)
    }
}

/// A running `certkeeper run`; killed (SIGKILL) when dropped.
struct Daemon(ChildGuard);

impl Daemon {
    fn signal(&self, name: &str) {
        self.0.signal(name);
    }

    /// SIGTERM, then waits for a clean exit.
    fn stop(mut self) {
        self.signal("TERM");
        let status = self
            .0
            .wait_timeout(Duration::from_secs(60))
            .expect("daemon did not stop on SIGTERM");
        assert!(status.success(), "daemon exit after SIGTERM: {status:?}");
    }

    /// Asserts the process has not exited.
    fn still_running(mut self) -> Self {
        assert!(self.0 .0.try_wait().unwrap().is_none(), "daemon exited");
        self
    }

    /// `kill -9`: no chance to clean up.
    fn kill_9(mut self) {
        self.0 .0.kill().unwrap();
        self.0 .0.wait().unwrap();
    }
}

fn edge_targets() -> BTreeSet<String> {
    (0..CDN_DOMAINS)
        .map(|index| format!("cdn-{index}"))
        .chain((0..RDS_INSTANCES).map(|index| format!("rds-{index}")))
        .collect()
}

/// The plan right after the watched file was replaced: every `edge` target would get the
/// new version, nothing else would change.
fn assert_plan_shows_rollout(plan: &Value, new_edge: &str) {
    let targets = plan["targets"].as_array().expect("plan targets");
    assert_eq!(
        targets.len(),
        CDN_DOMAINS + VOD_DOMAINS + RDS_INSTANCES,
        "{}",
        summary(plan)
    );
    let edge = edge_targets();
    for row in targets {
        let name = row["target"].as_str().unwrap_or_default();
        if edge.contains(name) {
            assert_eq!(row["certificate"], "edge", "{row}");
            assert_eq!(row["desired"], new_edge, "{row}");
            assert_ne!(row["observed"], new_edge, "{row}");
            assert_ne!(row["action"], "none", "{row}");
        } else {
            assert_eq!(row["certificate"], "video", "{row}");
            assert_eq!(row["action"], "none", "{row}");
        }
    }
    for row in plan["policies"].as_array().expect("plan policies") {
        assert_eq!(row["compliant"], true, "{row}");
        assert_eq!(row["action"], "none", "{row}");
    }
    // The files changed (one import) and every edge target would be deployed.
    let certificates = plan["certificates"].as_array().expect("plan certificates");
    let edge_certificate = certificates
        .iter()
        .find(|row| row["certificate"] == "edge")
        .expect("edge in the plan");
    assert_eq!(edge_certificate["action"], "import", "{edge_certificate}");
    assert_eq!(edge_certificate["desired"], new_edge, "{edge_certificate}");
    assert_eq!(plan["changes"], edge.len() + 1, "{}", summary(plan));
}

/// The plan without its per-target rows (which run to hundreds).
fn summary(plan: &Value) -> String {
    format!(
        "changes {} certificates {} policies {}",
        plan["changes"], plan["certificates"], plan["policies"]
    )
}

/// The plan of a converged fleet: nothing to do.
fn assert_plan_empty(plan: &Value) {
    assert_eq!(plan["changes"], 0, "{}", summary(plan));
    let targets = plan["targets"].as_array().expect("plan targets");
    assert_eq!(targets.len(), CDN_DOMAINS + VOD_DOMAINS + RDS_INSTANCES);
    for row in targets {
        assert_eq!(row["action"], "none", "{row}");
        assert_eq!(row["desired"], row["observed"], "{row}");
    }
    let policies = plan["policies"].as_array().expect("plan policies");
    assert_eq!(policies.len(), 4, "{plan}");
    for row in policies {
        assert_eq!(row["compliant"], true, "{row}");
        assert_eq!(row["action"], "none", "{row}");
    }
}

/// Scenarios 1 and 2: the fleet converges, the policies are enforced on exactly the
/// non-compliant resources, a replaced certificate file rolls out while the daemon runs,
/// one replaced while it is down rolls out on start, and `plan` shows the difference and
/// then nothing.
#[test]
fn fleet_converges_and_rolls_out_a_replaced_certificate_file() {
    let (fleet, v1) = Fleet::new(Vec::new());
    let daemon = fleet.start();
    fleet.wait_converged(&v1, "first rollout");

    let state = fleet.simulator.state_json();
    assert_eq!(
        state["huawei"]["write_calls_total"], 1,
        "only the non-compliant GaussDB instance is changed: {}",
        state["huawei"]
    );
    assert_eq!(
        state["qingcloud"]["jobs_started"], 1,
        "only the non-compliant cluster gets a job: {}",
        state["qingcloud"]
    );
    for index in 0..CDN_DOMAINS {
        assert_eq!(fleet.alibaba_writes("cdn_domains", &cdn_domain(index)), 1);
    }
    for index in 0..VOD_DOMAINS {
        assert_eq!(fleet.alibaba_writes("vod_domains", &vod_domain(index)), 1);
    }
    assert_plan_empty(&fleet.plan());

    // A bad config sent with SIGHUP is refused; the daemon keeps running on the old one
    // (and goes on rolling out below).
    let good_config = std::fs::read_to_string(&fleet.config_path).unwrap();
    std::fs::write(&fleet.config_path, "[daemon\nbroken").unwrap();
    daemon.signal("HUP");
    let started = Instant::now();
    while !http_get(fleet.metrics_port, "/metrics").is_some_and(|(_, text)| {
        text.contains(r#"certkeeper_config_reloads_total{result="failure"} 1"#)
    }) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the refused reload was not counted\n{}",
            fleet.log_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::fs::write(&fleet.config_path, good_config).unwrap();
    let daemon = daemon.still_running();

    // Replaced while the daemon runs: the watched file's new version rolls out.
    let v2 = fleet.replace_edge_certificate("v2");
    fleet.wait_converged(&v2, "rollout of a replaced file");
    for index in 0..CDN_DOMAINS {
        assert_eq!(fleet.alibaba_writes("cdn_domains", &cdn_domain(index)), 2);
    }
    for index in 0..VOD_DOMAINS {
        assert_eq!(
            fleet.alibaba_writes("vod_domains", &vod_domain(index)),
            1,
            "the local CA certificate did not change"
        );
    }
    daemon.stop();

    // Replaced while it is down: `plan` shows every edge target changing, a start rolls it
    // out, and `plan` then shows nothing.
    let v3 = fleet.replace_edge_certificate("v3");
    assert_plan_shows_rollout(&fleet.plan(), &v3);
    let daemon = fleet.start();
    fleet.wait_converged(&v3, "rollout of a file replaced while stopped");
    assert_plan_empty(&fleet.plan());
    daemon.stop();

    let store = fleet.store();
    let versions = store.certificate_versions("edge").unwrap();
    let fingerprints: Vec<&str> = versions
        .iter()
        .map(|version| version.fingerprint.as_str())
        .collect();
    assert_eq!(fingerprints, [v3.as_str(), &v2, &v1], "newest first");
    assert_eq!(store.certificate_versions("video").unwrap().len(), 1);
    let logs = std::fs::read_to_string(&fleet.log_path).unwrap();
    for secret in [
        ALIBABA_SECRET,
        HUAWEI_SECRET,
        QINGCLOUD_SECRET,
        "PRIVATE KEY",
    ] {
        assert!(!logs.contains(secret), "`{secret}` in the daemon's log");
    }
}

fn fault(action: &str, status: u16, code: &str) -> FaultRule {
    vendor_fault("alibaba", action, status, code)
}

fn vendor_fault(vendor: &str, action: &str, status: u16, code: &str) -> FaultRule {
    FaultRule {
        vendor: vendor.into(),
        action: Some(action.into()),
        status,
        code: Some(code.into()),
        message: None,
        count: None,
        probability: None,
        delay_ms: None,
    }
}

fn counted(rule: FaultRule, count: u64) -> FaultRule {
    FaultRule {
        count: Some(count),
        ..rule
    }
}

fn likely(rule: FaultRule, probability: f64) -> FaultRule {
    FaultRule {
        probability: Some(probability),
        ..rule
    }
}

/// Scenario 3: with 30 % transient errors on every write (and a read), throttling bursts
/// and busy RDS instances from the first request on, the fleet still converges, and each
/// failure's class and code is in the store's attempt history.
#[test]
fn fleet_converges_through_transient_errors_throttling_and_busy_rds() {
    // The first matching rule answers, so the counted bursts come before the odds.
    let faults = vec![
        counted(
            fault("SetCdnDomainSSLCertificate", 400, "Throttling.User"),
            30,
        ),
        counted(
            fault("DescribeDomainCertificateInfo", 400, "Throttling.User"),
            10,
        ),
        counted(fault("ModifyDBInstanceSSL", 400, "IncorrectDBSslStatus"), 2),
        likely(
            fault("SetCdnDomainSSLCertificate", 503, "ServiceUnavailable"),
            0.3,
        ),
        likely(
            fault("SetVodDomainSSLCertificate", 503, "ServiceUnavailable"),
            0.3,
        ),
        likely(fault("ModifyDBInstanceSSL", 503, "ServiceUnavailable"), 0.3),
        likely(
            fault("DescribeVodDomainCertificateInfo", 500, "InternalError"),
            0.3,
        ),
        // The policies' reads fail too: a TaurusDB internal error, QingCloud "server busy".
        counted(
            vendor_fault("huawei", "DescribeBackupEncryptStatus", 500, "DBS.108000"),
            2,
        ),
        counted(
            vendor_fault("qingcloud", "DescribeClusters", 200, "5100"),
            2,
        ),
    ];
    let (fleet, v1) = Fleet::new(faults);
    let daemon = fleet.start();
    fleet.wait_converged(&v1, "rollout under faults");
    daemon.stop();

    let stats = fleet.simulator.stats_json();
    let answered = |action: &str, outcome: &str| stats["alibaba"][action][outcome].as_u64();
    // At least the burst; the simulator's own rate limit may add a few.
    assert!(
        answered("SetCdnDomainSSLCertificate", "Throttling.User") >= Some(30),
        "{stats}"
    );
    assert!(
        answered("SetCdnDomainSSLCertificate", "ServiceUnavailable").is_some(),
        "{stats}"
    );
    assert_eq!(
        stats["huawei"]["DescribeBackupEncryptStatus"]["DBS.108000"], 2,
        "{stats}"
    );
    assert_eq!(stats["qingcloud"]["DescribeClusters"]["5100"], 2, "{stats}");

    // Injected faults answer before the simulator acts: exactly one write per target, so
    // no retry wrote twice.
    for index in 0..CDN_DOMAINS {
        assert_eq!(fleet.alibaba_writes("cdn_domains", &cdn_domain(index)), 1);
    }
    for index in 0..VOD_DOMAINS {
        assert_eq!(fleet.alibaba_writes("vod_domains", &vod_domain(index)), 1);
    }
    for index in 0..RDS_INSTANCES {
        assert_eq!(fleet.alibaba_writes("rds_instances", &rds_id(index)), 1);
    }

    let store = fleet.store();
    let mut seen: BTreeMap<(ErrorClass, String), BTreeSet<String>> = BTreeMap::new();
    let names = (0..CDN_DOMAINS)
        .map(|index| format!("cdn-{index}"))
        .chain((0..VOD_DOMAINS).map(|index| format!("vod-{index}")))
        .chain((0..RDS_INSTANCES).map(|index| format!("rds-{index}")));
    for name in names {
        for attempt in store.attempts(SubjectKind::Target, &name).unwrap() {
            if let (Some(class), Some(code)) = (attempt.class, attempt.code) {
                seen.entry((class, code)).or_default().insert(name.clone());
            }
        }
    }
    let subjects = |class: ErrorClass, code: &str| {
        seen.get(&(class, code.to_owned()))
            .cloned()
            .unwrap_or_default()
    };
    let summary = format!("{seen:?}");
    assert!(
        subjects(ErrorClass::Throttled, "Throttling.User")
            .iter()
            .any(|name| name.starts_with("cdn-")),
        "throttling in the history: {summary}"
    );
    assert!(
        subjects(ErrorClass::Transient, "ServiceUnavailable")
            .iter()
            .any(|name| name.starts_with("cdn-")),
        "transient write errors in the history: {summary}"
    );
    assert!(
        subjects(ErrorClass::Transient, "InternalError")
            .iter()
            .any(|name| name.starts_with("vod-")),
        "transient read errors in the history: {summary}"
    );
    assert_eq!(
        subjects(ErrorClass::Busy, "IncorrectDBSslStatus")
            .iter()
            .filter(|name| name.starts_with("rds-"))
            .count(),
        2,
        "each busy RDS reply in the history: {summary}"
    );
    let policy_failures = |policy: &str, resources: &[&str]| {
        resources
            .iter()
            .flat_map(|resource| {
                store
                    .attempts(SubjectKind::Policy, &format!("{policy}/{resource}"))
                    .unwrap()
            })
            .filter_map(|attempt| attempt.class.zip(attempt.code))
            .collect::<Vec<_>>()
    };
    let gaussdb = policy_failures("gaussdb-backup-encryption", &GAUSSDB);
    assert!(
        gaussdb.contains(&(ErrorClass::Transient, "DBS.108000".to_owned())),
        "{gaussdb:?}"
    );
    let mysql = policy_failures("mysql-plus-ssl", &CLUSTERS);
    assert!(
        mysql.contains(&(ErrorClass::Transient, "5100".to_owned())),
        "{mysql:?}"
    );
    for target in ["cdn-0", "vod-0", "rds-0"] {
        let record = store
            .deployment(
                target,
                if target.starts_with("vod") {
                    "video"
                } else {
                    "edge"
                },
            )
            .unwrap()
            .unwrap();
        assert_eq!(record.last_error, None, "{target}: {record:?}");
    }
}

fn chaos_setting(name: &str) -> Option<u64> {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
}

/// What the store holds between two daemon runs.
struct StoreCheck {
    versions: BTreeMap<String, Vec<String>>,
    targets_in_sync: usize,
    /// A few targets not in sync with the newest version, with their ledger status.
    lagging: Vec<String>,
}

/// Opens the store after a `kill -9`: the integrity check passes, no version that was
/// there before is gone, and every version's key still parses and matches its certificate.
fn check_store(fleet: &Fleet, before: &BTreeMap<String, Vec<String>>) -> StoreCheck {
    let store = fleet.store();
    store.integrity_check().expect("PRAGMA integrity_check");
    let mut versions = BTreeMap::new();
    for name in ["edge", "video"] {
        let stored = store.certificate_versions(name).unwrap();
        for version in &stored {
            let bundle = version.to_bundle().expect("a stored version parses");
            let der = pem::parse(&bundle.leaf_pem).unwrap();
            assert!(
                certkeeper::cert::key_matches_certificate(
                    "stored key",
                    &version.key_pem,
                    der.contents()
                )
                .expect("a stored key parses"),
                "{name}: the stored key belongs to its certificate"
            );
        }
        let fingerprints: Vec<String> = stored
            .iter()
            .rev()
            .map(|version| version.fingerprint.clone())
            .collect();
        let old = before.get(name).cloned().unwrap_or_default();
        assert!(
            fingerprints.starts_with(&old),
            "{name}: versions before {old:?}, after {fingerprints:?}"
        );
        versions.insert(name.to_owned(), fingerprints);
    }
    let records = store.deployments().unwrap();
    let (in_sync, lagging): (Vec<_>, Vec<_>) = records.iter().partition(|record| {
        record.status == certkeeper::store::DeployStatus::InSync
            && versions
                .get(&record.certificate)
                .and_then(|list| list.last())
                == record.desired_fingerprint.as_ref()
    });
    StoreCheck {
        versions,
        targets_in_sync: in_sync.len(),
        lagging: lagging
            .iter()
            .take(6)
            .map(|record| format!("{} {}", record.target, record.status))
            .collect(),
    }
}

/// Scenario 4: `kill -9` at random moments during a rollout (the first one, and the one of
/// a certificate file replaced half way through), restarting each time: the fleet
/// converges, the store passes its integrity check, and no version or key is lost.
#[test]
fn chaos_fleet_converges_after_kill_9_at_random_moments() {
    let kills = chaos_setting("CERTKEEPER_CHAOS_KILLS").unwrap_or(20);
    let seed = chaos_setting("CERTKEEPER_CHAOS_SEED").unwrap_or_else(rand::random);
    eprintln!("chaos: {kills} kills, CERTKEEPER_CHAOS_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (fleet, v1) = Fleet::new(Vec::new());
    let total = CDN_DOMAINS + VOD_DOMAINS + RDS_INSTANCES;
    let mut edge = v1;
    let mut versions = BTreeMap::new();
    let mut interrupted = 0;
    for kill in 0..kills {
        if kill == kills / 2 {
            edge = fleet.replace_edge_certificate("v2");
        }
        let daemon = fleet.start();
        let moment = Duration::from_millis(rng.gen_range(300..4000));
        std::thread::sleep(moment);
        daemon.kill_9();
        let check = check_store(&fleet, &versions);
        eprintln!(
            "chaos: kill {} after {moment:?}: {}/{total} targets in sync with the newest version; lagging e.g. {:?}",
            kill + 1,
            check.targets_in_sync,
            check.lagging
        );
        if check.targets_in_sync < total {
            interrupted += 1;
        }
        // A local CA certificate, once stored, is never obtained again.
        if let (Some(old), Some(new)) = (versions.get("video"), check.versions.get("video")) {
            if !Vec::<String>::is_empty(old) {
                assert_eq!(old, new, "the local CA certificate was obtained again");
            }
        }
        versions = check.versions;
    }
    assert!(
        kills == 0 || interrupted > 0,
        "no kill landed during a rollout"
    );
    let daemon = fleet.start();
    fleet.wait_converged(&edge, "chaos");
    // The store can show the fleet converged before this daemon has installed its signal
    // handlers (when the last kill landed after the rollout finished): a SIGTERM then kills
    // it outright. Ready (first pass done) comes after the handlers.
    wait_for(
        "the last daemon to be ready",
        Duration::from_secs(60),
        || http_get(fleet.metrics_port, "/readyz").is_some_and(|(status, _)| status == 200),
    );
    daemon.stop();
    let check = check_store(&fleet, &versions);
    assert_eq!(check.targets_in_sync, total);
    assert_eq!(check.versions["video"].len(), 1, "{:?}", check.versions);
    // Resumed, not repeated: a target is written at most once per version (the local CA's
    // one version, the file's two).
    for index in 0..VOD_DOMAINS {
        assert_eq!(fleet.alibaba_writes("vod_domains", &vod_domain(index)), 1);
    }
    for index in 0..CDN_DOMAINS {
        let writes = fleet.alibaba_writes("cdn_domains", &cdn_domain(index));
        assert!(
            (1..=2).contains(&writes),
            "{}: {writes} writes",
            cdn_domain(index)
        );
    }
    for index in 0..RDS_INSTANCES {
        let writes = fleet.alibaba_writes("rds_instances", &rds_id(index));
        assert!(
            (1..=2).contains(&writes),
            "{}: {writes} writes",
            rds_id(index)
        );
    }
    assert_eq!(
        check.versions["edge"].last(),
        Some(&edge),
        "{:?}",
        check.versions
    );
}
