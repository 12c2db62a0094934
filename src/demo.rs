//! `certkeeper demo`: the whole product offline on one machine. It starts the cloud
//! simulator on a loopback port with a small fleet (CDN and VOD domains, an RDS instance, a
//! GaussDB instance with backup encryption off, a MySQL Plus cluster with SSL off), writes a
//! config that points every vendor at it, and runs the real daemon loop: a certificate from
//! the local CA rolls out to every target and both policies are enforced. It prints the
//! rollout as it converges and serves the metrics until interrupted (or exits with `--once`).

use crate::cloud::sim::{serve, SimSeed, Simulator};
use crate::config::credentials::ProcessEnvironment;
use std::path::Path;
use std::sync::Arc;

const ALIBABA_SECRET: &str = "demo-alibaba-secret";
const HUAWEI_SECRET: &str = "demo-huawei-secret";
const QINGCLOUD_SECRET: &str = "demo-qingcloud-secret";
const PROJECT: &str = "619d3e78f61b4be68bc5aa0b59edcf7b";
const GAUSSDB: &str = "7033e7c3cf93438797d44ad7ae0a7d95in07";
const KMS_KEY: &str = "b82fa43f-f6e8-4ec4-9c31-231bc547c526";

fn seed(cdn: &[String]) -> String {
    let cdn_list = cdn
        .iter()
        .map(|domain| format!("\"{domain}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"
[[alibaba.accounts]]
access_key_id = "LTAIdemo"
access_key_secret = "{ALIBABA_SECRET}"

[alibaba]
cdn_domains = [{cdn_list}]
vod_domains = ["video.demo.example"]
rds_ssl_delay_ms = 300

[[alibaba.rds_instances]]
id = "rm-demo1"
engine = "MySQL"
connection_string = "rm-demo1.mysql.rds.aliyuncs.com"

[huawei]
kms_keys = ["{KMS_KEY}"]

[[huawei.accounts]]
access_key_id = "HWDEMO"
secret_access_key = "{HUAWEI_SECRET}"
project_id = "{PROJECT}"

[[huawei.gaussdb_instances]]
id = "{GAUSSDB}"
backup_encryption = "off"
project_id = "{PROJECT}"

[qingcloud]
job_phase_ms = 300

[[qingcloud.accounts]]
access_key_id = "QYDEMO"
secret_access_key = "{QINGCLOUD_SECRET}"

[[qingcloud.mysql_plus_clusters]]
id = "cl-demo0001"
zone = "pek3"
ssl = false
"#
    )
}

fn config(
    sim: &str,
    state_dir: &Path,
    files: &Path,
    secrets: &Path,
    metrics_listen: &str,
    cdn: &[String],
) -> String {
    let mut text = format!(
        r#"
[daemon]
state_dir = "{state}"
metrics_listen = "{metrics_listen}"
scan_schedule = "* * * * *"

[credentials.ali]
provider = "alibaba"
access_key_id = "LTAIdemo"
access_key_secret_file = "{secrets}/alibaba"
endpoint = "{sim}"

[credentials.hw]
provider = "huawei"
access_key_id = "HWDEMO"
access_key_secret_file = "{secrets}/huawei"
region = "cn-north-4"
project_id = "{PROJECT}"
endpoint = "{sim}"

[credentials.qc]
provider = "qingcloud"
access_key_id = "QYDEMO"
access_key_secret_file = "{secrets}/qingcloud"
zone = "pek3"
endpoint = "{sim}"

[local_ca.demo]
leaf_lifetime = "30d"

[[certificate]]
name = "demo"
domains = ["*.demo.example", "rm-demo1.mysql.rds.aliyuncs.com"]
source = {{ local_ca = "demo" }}
deploy_to = [{targets}"vod-video", "rds-demo1", "files"]

[[target]]
name = "vod-video"
kind = "alibaba-vod"
credentials = "ali"
domain = "video.demo.example"

[[target]]
name = "rds-demo1"
kind = "alibaba-rds"
credentials = "ali"
instance_id = "rm-demo1"
connection_string = "rm-demo1.mysql.rds.aliyuncs.com"

[[target]]
name = "files"
kind = "file"
directory = "{files}"

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
resources = ["cl-demo0001"]
mode = "enforce"
ssl = true
job_poll = {{ interval = "1s", max_interval = "2s", deadline = "1m" }}
"#,
        state = state_dir.display(),
        files = files.display(),
        secrets = secrets.display(),
        targets = cdn
            .iter()
            .enumerate()
            .map(|(index, _)| format!("\"cdn-{index}\", "))
            .collect::<String>(),
    );
    for (index, domain) in cdn.iter().enumerate() {
        text.push_str(&format!(
            "\n[[target]]\nname = \"cdn-{index}\"\nkind = \"alibaba-cdn\"\ncredentials = \"ali\"\ndomain = \"{domain}\"\n"
        ));
    }
    text
}

/// Writes the simulator's (made-up) secrets as 0600 files under `secrets`, which the
/// config names by absolute path: `certkeeper check`/`run --config` on the demo's config
/// then work without any environment, as a real deployment's `*_file` secrets do.
fn write_secrets(secrets: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(secrets)?;
    for (name, secret) in [
        ("alibaba", ALIBABA_SECRET),
        ("huawei", HUAWEI_SECRET),
        ("qingcloud", QINGCLOUD_SECRET),
    ] {
        crate::fsutil::write_atomic(&secrets.join(name), secret.as_bytes(), 0o600)?;
    }
    Ok(())
}

/// Runs the demo in `directory` (created if missing; a relative path is taken from the
/// current directory); with `once`, returns after the first converged pass instead of
/// serving until Ctrl-C.
pub async fn run(
    directory: &Path,
    metrics_listen: &str,
    cdn_domains: usize,
    once: bool,
) -> anyhow::Result<()> {
    use anyhow::Context;
    // The config needs absolute paths (`daemon.state_dir`); a relative `--directory` (the
    // default) means "here", wherever the demo is started from.
    let directory = &std::path::absolute(directory)
        .with_context(|| format!("resolving {}", directory.display()))?;
    std::fs::create_dir_all(directory)
        .with_context(|| format!("creating {}", directory.display()))?;
    let cdn: Vec<String> = (0..cdn_domains)
        .map(|index| format!("cdn{index}.demo.example"))
        .collect();
    let simulator = Arc::new(Simulator::new(
        SimSeed::from_toml(&seed(&cdn)).context("demo seed")?,
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding the simulator")?;
    let sim_url = format!(
        "http://{}",
        listener.local_addr().context("simulator address")?
    );
    tokio::spawn(serve(listener, simulator.clone(), std::future::pending()));
    println!("simulator: {sim_url} (state: {sim_url}/__sim/state)");

    let config_path = directory.join("certkeeper.toml");
    let secrets = directory.join("secrets");
    write_secrets(&secrets).with_context(|| format!("writing {}", secrets.display()))?;
    let text = config(
        &sim_url,
        &directory.join("state"),
        &directory.join("tls"),
        &secrets,
        metrics_listen,
        &cdn,
    );
    std::fs::write(&config_path, &text)
        .with_context(|| format!("writing {}", config_path.display()))?;
    let loaded = crate::config::load(&config_path).context("demo config")?;
    println!("config:    {}", config_path.display());
    println!("metrics:   http://{metrics_listen}/metrics");
    crate::app::run_with(
        config_path,
        loaded,
        Arc::new(ProcessEnvironment),
        once,
        Some(Box::new(move |report: &str| println!("{report}"))),
    )
    .await
}
