//! A fixed secret takes effect at once: a daemon whose CDN target fails on a wrong secret
//! file (auth error, one hour of backoff) converges within a pass of the SIGHUP that follows
//! the fix, and says so at INFO. The secret never reaches the logs.

mod support;

use std::io::Read;
use std::time::Duration;
use support::{certkeeper, free_port, spawn_daemon, start_sim, status_json, wait_for};

const RIGHT_SECRET: &str = "reload-right-secret-4711";
const WRONG_SECRET: &str = "reload-wrong-secret-0815";

const SEED: &str = r#"
[[alibaba.accounts]]
access_key_id = "LTAIreloadtest"
access_key_secret = "reload-right-secret-4711"

[alibaba]
cdn_domains = ["www.example.com"]
"#;

fn config(
    sim: &str,
    directory: &std::path::Path,
    secret_file: &std::path::Path,
    port: u16,
) -> String {
    format!(
        r#"
[daemon]
state_dir = "{state}"
metrics_listen = "127.0.0.1:{port}"

[credentials.ali]
provider = "alibaba"
access_key_id = "LTAIreloadtest"
access_key_secret_file = "{secret}"
endpoint = "{sim}"

[local_ca.internal]
leaf_lifetime = "30d"

[[certificate]]
name = "www"
domains = ["www.example.com"]
source = {{ local_ca = "internal" }}
deploy_to = ["cdn-www"]

[[target]]
name = "cdn-www"
kind = "alibaba-cdn"
credentials = "ali"
domain = "www.example.com"
"#,
        state = directory.join("state").display(),
        secret = secret_file.display(),
    )
}

fn target(config_path: &std::path::Path) -> serde_json::Value {
    status_json(config_path)["targets"][0].clone()
}

#[test]
fn a_fixed_secret_file_takes_effect_on_sighup() {
    assert!(
        SEED.contains(RIGHT_SECRET),
        "the simulator knows the right secret"
    );
    let sim = start_sim(SEED);
    let directory = tempfile::tempdir().unwrap();
    let secret_file = directory.path().join("alibaba-secret");
    std::fs::write(&secret_file, WRONG_SECRET).unwrap();
    let config_path = directory.path().join("certkeeper.toml");
    let port = free_port();
    std::fs::write(
        &config_path,
        config(&sim.url, directory.path(), &secret_file, port),
    )
    .unwrap();
    let mut daemon = spawn_daemon(&config_path, &[]);

    wait_for("the target fails on auth", Duration::from_secs(60), || {
        target(&config_path)["last_error_class"] == "auth"
    });
    let failing = target(&config_path);
    assert_eq!(failing["in_sync"], false, "{failing}");

    std::fs::write(&secret_file, RIGHT_SECRET).unwrap();
    daemon.signal("HUP");
    // Within a pass of the reload, not after the hour of auth backoff.
    wait_for(
        "the target converges after the fix",
        Duration::from_secs(60),
        || target(&config_path)["in_sync"] == true,
    );

    daemon.signal("TERM");
    let status = daemon
        .wait_timeout(Duration::from_secs(30))
        .expect("the daemon stops on SIGTERM");
    assert!(status.success(), "{status:?}");
    let mut logs = String::new();
    daemon
        .0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    let reset = logs
        .lines()
        .find(|line| line.contains("auth backoff reset"))
        .unwrap_or_else(|| panic!("no reset logged:\n{logs}"));
    assert!(reset.contains("\"level\":\"INFO\""), "{reset}");
    assert!(
        reset.contains("cdn-www") && reset.contains("\"credentials\":\"ali\""),
        "{reset}"
    );
    for secret in [RIGHT_SECRET, WRONG_SECRET] {
        assert!(!logs.contains(secret), "a secret reached the logs");
    }
    let check = certkeeper(&config_path, &["check"], &[]);
    assert_eq!(check.status.code(), Some(0), "{check:?}");
}

#[test]
fn environment_secrets_leave_the_environment_and_survive_a_reload() {
    const VARIABLE: &str = "RELOAD_TEST_ENV_SECRET";
    const VALUE: &str = "reload-env-secret-2718";
    let directory = tempfile::tempdir().unwrap();
    let child_env = directory.path().join("child-env.txt");
    let port = free_port();
    let text = format!(
        r#"
[daemon]
state_dir = "{state}"
metrics_listen = "127.0.0.1:{port}"

[credentials.ali]
provider = "alibaba"
access_key_id = "LTAIreloadtest"
access_key_secret_env = "{VARIABLE}"
endpoint = "http://127.0.0.1:9"

[local_ca.internal]

[[certificate]]
name = "internal"
domains = ["internal.example.com"]
source = {{ local_ca = "internal" }}
deploy_to = ["files"]

[[target]]
name = "files"
kind = "file"
directory = "{files}"
# What a child of the daemon inherits.
reload_command = ["/bin/sh", "-c", "env > {child_env}"]
"#,
        state = directory.path().join("state").display(),
        files = directory.path().join("tls").display(),
        child_env = child_env.display(),
    );
    let config_path = directory.path().join("certkeeper.toml");
    std::fs::write(&config_path, text).unwrap();
    let mut daemon = spawn_daemon(&config_path, &[(VARIABLE, VALUE)]);

    wait_for(
        "the file target's reload command ran",
        Duration::from_secs(60),
        || std::fs::read_to_string(&child_env).is_ok_and(|text| text.contains("PATH=")),
    );
    let inherited = std::fs::read_to_string(&child_env).unwrap();
    assert!(
        !inherited.contains(VARIABLE) && !inherited.contains(VALUE),
        "the secret variable was passed on to a child"
    );

    // The reload resolves the secret again from the process-wide cache.
    daemon.signal("HUP");
    wait_for("the reload succeeded", Duration::from_secs(60), || {
        support::http_get(port, "/metrics").is_some_and(|(_, text)| {
            support::metric_value(
                &text,
                r#"certkeeper_config_reloads_total{result="success"}"#,
            ) == Some(1.0)
        })
    });
    daemon.signal("TERM");
    let status = daemon
        .wait_timeout(Duration::from_secs(30))
        .expect("the daemon stops on SIGTERM");
    assert!(status.success(), "{status:?}");
}
