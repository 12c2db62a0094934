//! A fixed secret takes effect at once: a daemon whose CDN target fails on a wrong secret
//! file (auth error, one hour of backoff) converges within a pass of the SIGHUP that follows
//! the fix, and says so at INFO. The secret never reaches the logs.

#![cfg(feature = "sim")]

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

/// A local CA certificate deployed to a file target under `directory` (plus
/// `target_extra` lines in the target), with an Alibaba account whose secret comes from
/// the environment variable `variable` (resolved at every build, never used on the wire).
fn file_target_config(
    directory: &std::path::Path,
    port: u16,
    variable: &str,
    target_extra: &str,
) -> String {
    format!(
        r#"
[daemon]
state_dir = "{state}"
metrics_listen = "127.0.0.1:{port}"

[credentials.ali]
provider = "alibaba"
access_key_id = "LTAIreloadtest"
access_key_secret_env = "{variable}"
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
{target_extra}
"#,
        state = directory.join("state").display(),
        files = directory.join("tls").display(),
    )
}

#[test]
fn environment_secrets_leave_the_environment_and_survive_a_reload() {
    const VARIABLE: &str = "RELOAD_TEST_ENV_SECRET";
    const VALUE: &str = "reload-env-secret-2718";
    let directory = tempfile::tempdir().unwrap();
    let child_env = directory.path().join("child-env.txt");
    let port = free_port();
    // What a child of the daemon inherits.
    let text = file_target_config(
        directory.path(),
        port,
        VARIABLE,
        &format!(
            "reload_command = [\"/bin/sh\", \"-c\", \"env > {}\"]",
            child_env.display()
        ),
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

/// Secrets whose lookup blocks while `hold` is set: a reload stuck reading a secret.
struct HeldSecrets {
    hold: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    reads_while_held: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl certkeeper::config::credentials::SecretEnvironment for HeldSecrets {
    fn var(&self, _: &str) -> Option<String> {
        let (held, released) = &*self.hold;
        let mut held = held.lock().unwrap();
        if *held {
            self.reads_while_held
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        // Bounded, so a broken test cannot hang forever.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while *held && std::time::Instant::now() < deadline {
            held = released
                .wait_timeout(held, Duration::from_millis(100))
                .unwrap()
                .0;
        }
        Some("secret".into())
    }

    fn credentials_directory(&self) -> Option<std::path::PathBuf> {
        None
    }
}

/// The daemon runs in this process (its SIGHUP handler is this process's); while a reload
/// is stuck reading a secret, the loop still answers the control socket, and the reload
/// completes once the secret can be read.
#[test]
fn a_stuck_reload_does_not_hold_the_loop() {
    use certkeeper::control::{send, ControlRequest};
    let directory = tempfile::tempdir().unwrap();
    let state_dir = directory.path().join("state");
    let port = free_port();
    let text = file_target_config(directory.path(), port, "HELD_SECRET", "");
    let config_path = directory.path().join("certkeeper.toml");
    std::fs::write(&config_path, &text).unwrap();
    let loaded = certkeeper::config::load_str("certkeeper.toml", &text).unwrap();
    let hold = std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
    let reads_while_held = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let environment = std::sync::Arc::new(HeldSecrets {
        hold: hold.clone(),
        reads_while_held: reads_while_held.clone(),
    });
    // One worker: a reload that blocked a worker while reading secrets would stop the loop.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime.spawn(certkeeper::app::run_with(
        config_path,
        loaded,
        environment,
        false,
        None,
    ));
    wait_for("the daemon is ready", Duration::from_secs(60), || {
        support::http_get(port, "/readyz").is_some_and(|(status, _)| status == 200)
    });

    *hold.0.lock().unwrap() = true;
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    wait_for(
        "the reload is reading the secret",
        Duration::from_secs(30),
        || reads_while_held.load(std::sync::atomic::Ordering::SeqCst) > 0,
    );

    // The loop takes a control request and answers it after a pass, reload still stuck.
    let (answer_tx, answer_rx) = std::sync::mpsc::channel();
    let socket_dir = state_dir.clone();
    std::thread::spawn(move || {
        let answer = send(
            &socket_dir,
            &ControlRequest::Deploy {
                target: "files".into(),
            },
        );
        let _ = answer_tx.send(format!("{answer:?}"));
    });
    let answer = answer_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the control socket answers while a reload is stuck");
    assert!(answer.contains("ok: true"), "{answer}");
    let reloads = |result: &str| {
        support::http_get(port, "/metrics").and_then(|(_, text)| {
            support::metric_value(
                &text,
                &format!("certkeeper_config_reloads_total{{result=\"{result}\"}}"),
            )
        })
    };
    assert_eq!(reloads("success"), None, "the reload is still stuck");

    *hold.0.lock().unwrap() = false;
    hold.1.notify_all();
    wait_for("the reload completes", Duration::from_secs(30), || {
        reloads("success") == Some(1.0)
    });
    drop(runtime);
}

/// `certkeeper reload` (the unit's `ExecReload=`) tells the truth: 0 when the daemon took the
/// file, 1 when it refused it (here a secret file that is gone: only the daemon's build
/// finds that) or when the file does not even load, 69 when no daemon runs.
#[test]
fn reload_answers_whether_the_daemon_took_the_file() {
    let sim = start_sim(SEED);
    let directory = tempfile::tempdir().unwrap();
    let secret_file = directory.path().join("alibaba-secret");
    std::fs::write(&secret_file, RIGHT_SECRET).unwrap();
    let config_path = directory.path().join("certkeeper.toml");
    let good = config(&sim.url, directory.path(), &secret_file, free_port());
    std::fs::write(&config_path, &good).unwrap();

    let nobody = certkeeper(&config_path, &["reload"], &[]);
    assert_eq!(nobody.status.code(), Some(69), "{nobody:?}");

    let mut daemon = spawn_daemon(&config_path, &[]);
    wait_for("the target in sync", Duration::from_secs(60), || {
        target(&config_path)["in_sync"] == true
    });

    let taken = certkeeper(&config_path, &["reload"], &[]);
    assert_eq!(taken.status.code(), Some(0), "{taken:?}");
    assert!(String::from_utf8_lossy(&taken.stdout).contains("configuration reloaded"));

    let gone = directory.path().join("no-such-secret");
    std::fs::write(
        &config_path,
        good.replace(
            &secret_file.display().to_string(),
            &gone.display().to_string(),
        ),
    )
    .unwrap();
    let refused = certkeeper(&config_path, &["reload"], &[]);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("reload refused") && stderr.contains("no-such-secret"),
        "{stderr}"
    );

    std::fs::write(&config_path, "[daemon\n").unwrap();
    let unreadable = certkeeper(&config_path, &["reload"], &[]);
    assert_eq!(unreadable.status.code(), Some(1), "{unreadable:?}");

    // The refused file changed nothing: the daemon still serves, on its first config.
    std::fs::write(&config_path, &good).unwrap();
    let again = certkeeper(&config_path, &["reload"], &[]);
    assert_eq!(again.status.code(), Some(0), "{again:?}");
    assert_eq!(target(&config_path)["in_sync"], true);

    daemon.signal("TERM");
    let status = daemon
        .wait_timeout(Duration::from_secs(30))
        .expect("the daemon stops on SIGTERM");
    assert!(status.success(), "{status:?}");
}
