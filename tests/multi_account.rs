//! Many accounts at once: a fleet spread over four Alibaba accounts (credentials with
//! distinct `account` keys, so four sets of token buckets in the daemon and in the
//! simulator) with a Huawei GaussDB and a QingCloud MySQL Plus policy beside it. The
//! accounts' targets come in contiguous blocks in config order, the order that serialises
//! them if anything queues one account behind another. Asserted from the simulator's own
//! counters, not from timings: every account's rollout overlaps every other's (a moment
//! when each of the four has some but not all of its domains written), and not one reply in
//! the whole run is a throttle.
#![cfg(feature = "sim")]

mod support;

use serde_json::Value;
use std::time::{Duration, Instant};
use support::{free_port, spawn_daemon_logging_to, start_sim};

const ACCOUNTS: usize = 4;
/// Per account: 40 domains at 30 writes/s is over a second of rollout each.
const DOMAINS: usize = 40;
const SECRET: &str = "multi-alibaba-secret";
const HUAWEI_SECRET: &str = "multi-huawei-secret";
const QINGCLOUD_SECRET: &str = "multi-qingcloud-secret";
const PROJECT: &str = "619d3e78f61b4be68bc5aa0b59edcf7b";
const KMS_KEY: &str = "b82fa43f-f6e8-4ec4-9c31-231bc547c526";
const GAUSSDB: &str = "00000000000000000000000000000002in07";
const CLUSTER: &str = "cl-multi002";
/// Guards against a hang only: the rollout takes seconds.
const DEADLINE: Duration = Duration::from_secs(240);

fn domain(account: usize, index: usize) -> String {
    format!("d{index}.acct{account}.multi.example")
}

fn seed() -> String {
    let mut text = String::new();
    for account in 0..ACCOUNTS {
        text.push_str(&format!(
            "[[alibaba.accounts]]\naccess_key_id = \"LTAImulti{account}\"\naccess_key_secret = \"{SECRET}\"\n\n"
        ));
    }
    let domains: Vec<String> = (0..ACCOUNTS)
        .flat_map(|account| {
            (0..DOMAINS).map(move |index| format!("\"{}\"", domain(account, index)))
        })
        .collect();
    text.push_str(&format!(
        "[alibaba]\ncdn_domains = [{}]\n\n",
        domains.join(", ")
    ));
    text.push_str("[alibaba.key_accounts]\n");
    for account in 0..ACCOUNTS {
        text.push_str(&format!("LTAImulti{account} = \"uid-{account}\"\n"));
    }
    text.push_str(&format!(
        r#"
[huawei]
kms_keys = ["{KMS_KEY}"]

[[huawei.accounts]]
access_key_id = "HWMULTI"
secret_access_key = "{HUAWEI_SECRET}"
project_id = "{PROJECT}"

[[huawei.gaussdb_instances]]
id = "{GAUSSDB}"
backup_encryption = "off"
project_id = "{PROJECT}"

[qingcloud]
job_phase_ms = 200

[[qingcloud.accounts]]
access_key_id = "QYMULTI"
secret_access_key = "{QINGCLOUD_SECRET}"

[[qingcloud.mysql_plus_clusters]]
id = "{CLUSTER}"
zone = "pek3"
ssl = false
"#
    ));
    text
}

fn config(sim: &str, state_dir: &std::path::Path, metrics_port: u16) -> String {
    let targets: Vec<String> = (0..ACCOUNTS)
        .flat_map(|account| (0..DOMAINS).map(move |index| format!("cdn-{account}-{index}")))
        .collect();
    let mut text = format!(
        r#"
[daemon]
state_dir = "{state}"
metrics_listen = "127.0.0.1:{metrics_port}"

[credentials.hw]
provider = "huawei"
access_key_id = "HWMULTI"
access_key_secret_env = "MULTI_HUAWEI_SECRET"
region = "cn-north-4"
project_id = "{PROJECT}"
endpoint = "{sim}"

[credentials.qc]
provider = "qingcloud"
access_key_id = "QYMULTI"
access_key_secret_env = "MULTI_QINGCLOUD_SECRET"
zone = "pek3"
endpoint = "{sim}"

[local_ca.multi]
leaf_lifetime = "30d"

[[certificate]]
name = "edge"
domains = ["*.acct0.multi.example", "*.acct1.multi.example", "*.acct2.multi.example", "*.acct3.multi.example"]
source = {{ local_ca = "multi" }}
deploy_to = [{deploy_to}]

[[policy]]
name = "gaussdb-backup-encryption"
kind = "huawei-gaussdb-backup-encryption"
credentials = "hw"
resources = ["{GAUSSDB}"]
mode = "enforce"
desired = "on"
kms_key_id = "{KMS_KEY}"

[[policy]]
name = "mysql-plus-ssl"
kind = "qingcloud-mysql-plus-ssl"
credentials = "qc"
resources = ["{CLUSTER}"]
mode = "enforce"
ssl = true
job_poll = {{ interval = "1s", max_interval = "1s", deadline = "1m" }}
"#,
        state = state_dir.display(),
        deploy_to = targets
            .iter()
            .map(|name| format!("\"{name}\""))
            .collect::<Vec<_>>()
            .join(", "),
    );
    for account in 0..ACCOUNTS {
        text.push_str(&format!(
            "\n[credentials.ali{account}]\nprovider = \"alibaba\"\naccess_key_id = \"LTAImulti{account}\"\naccess_key_secret_env = \"MULTI_ALIBABA_SECRET\"\naccount = \"uid-{account}\"\nendpoint = \"{sim}\"\n"
        ));
    }
    for account in 0..ACCOUNTS {
        for index in 0..DOMAINS {
            text.push_str(&format!(
                "\n[[target]]\nname = \"cdn-{account}-{index}\"\nkind = \"alibaba-cdn\"\ncredentials = \"ali{account}\"\ndomain = \"{}\"\n",
                domain(account, index)
            ));
        }
    }
    text
}

/// How many of each account's domains the simulator has seen written.
fn written_per_account(state: &Value) -> [usize; ACCOUNTS] {
    let mut written = [0; ACCOUNTS];
    for (account, count) in written.iter_mut().enumerate() {
        *count = (0..DOMAINS)
            .filter(|index| {
                state["alibaba"]["cdn_domains"][domain(account, *index)]["writes"]
                    .as_u64()
                    .is_some_and(|writes| writes > 0)
            })
            .count();
    }
    written
}

/// Every reply the simulator counted whose outcome is a throttle, by vendor and action.
fn throttled(stats: &Value) -> Vec<String> {
    let mut found = Vec::new();
    for (vendor, actions) in stats.as_object().into_iter().flatten() {
        for (action, outcomes) in actions.as_object().into_iter().flatten() {
            for (outcome, count) in outcomes.as_object().into_iter().flatten() {
                if outcome.to_ascii_lowercase().contains("throttl") {
                    found.push(format!("{vendor} {action} {outcome}: {count}"));
                }
            }
        }
    }
    found
}

#[test]
fn four_accounts_roll_out_at_once_beside_policies_without_a_throttled_reply() {
    let sim = start_sim(&seed());
    let directory = tempfile::tempdir().unwrap();
    let config_path = directory.path().join("certkeeper.toml");
    let log_path = directory.path().join("daemon.log");
    std::fs::write(
        &config_path,
        config(&sim.url, &directory.path().join("state"), free_port()),
    )
    .unwrap();
    let _daemon = spawn_daemon_logging_to(
        &config_path,
        &log_path,
        &[
            ("MULTI_ALIBABA_SECRET", SECRET),
            ("MULTI_HUAWEI_SECRET", HUAWEI_SECRET),
            ("MULTI_QINGCLOUD_SECRET", QINGCLOUD_SECRET),
        ],
    );

    // Sampled as fast as the simulator answers (in-process, no HTTP): a serialised rollout
    // never shows all four accounts in flight, however slow or fast the machine.
    let started = Instant::now();
    let mut all_in_flight = 0;
    let mut first_write: [Option<Duration>; ACCOUNTS] = [None; ACCOUNTS];
    let mut last_write: [Option<Duration>; ACCOUNTS] = [None; ACCOUNTS];
    loop {
        let written = written_per_account(&sim.simulator.state_json());
        let at = started.elapsed();
        for account in 0..ACCOUNTS {
            if written[account] > 0 && first_write[account].is_none() {
                first_write[account] = Some(at);
            }
            if written[account] == DOMAINS && last_write[account].is_none() {
                last_write[account] = Some(at);
            }
        }
        if written.iter().all(|count| (1..DOMAINS).contains(count)) {
            all_in_flight += 1;
        }
        if written.iter().all(|count| *count == DOMAINS) {
            break;
        }
        assert!(
            at < DEADLINE,
            "rollout unfinished after {at:?}: {written:?} of {DOMAINS} per account\n{}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let windows: Vec<String> = (0..ACCOUNTS)
        .map(|account| {
            format!(
                "uid-{account}: {:?}..{:?}",
                first_write[account], last_write[account]
            )
        })
        .collect();
    eprintln!(
        "per-account write windows: {windows:?}; samples with all four in flight: {all_in_flight}"
    );
    assert!(
        all_in_flight > 0,
        "the accounts' rollouts never overlapped (one waited for another): {windows:?}"
    );
    // Each account's first write came before any account had finished.
    let first_finish = last_write.iter().flatten().min().copied().unwrap();
    for (account, first) in first_write.iter().enumerate() {
        assert!(
            first.unwrap() < first_finish,
            "uid-{account} started after another account finished: {windows:?}"
        );
    }

    // The policies beside the rollout converge too.
    let deadline = Instant::now() + DEADLINE;
    loop {
        let state = sim.simulator.state_json();
        let gaussdb = &state["huawei"]["gaussdb_instances"][GAUSSDB];
        let clusters = state["qingcloud"]["mysql_plus_clusters"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if gaussdb["backup_encryption"] == "on"
            && clusters.iter().all(|cluster| cluster["ssl"] == true)
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "policies not remediated: {gaussdb} {clusters:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let stats = sim.simulator.stats_json();
    assert_eq!(
        throttled(&stats),
        Vec::<String>::new(),
        "throttled replies: {stats}"
    );
    let sets = stats["alibaba"]["SetCdnDomainSSLCertificate"]["ok"].as_u64();
    assert_eq!(sets, Some((ACCOUNTS * DOMAINS) as u64), "{stats}");
}
