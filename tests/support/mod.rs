//! Helpers shared by the integration tests: loopback ports, the in-tree simulator, the
//! `certkeeper` binary as a child process, HTTP probes and polling. Each test file that needs
//! them says `mod support;`; not every file uses every helper, hence the `dead_code` allowance.
#![allow(dead_code)]

#[cfg(feature = "sim")]
use certkeeper::cloud::sim::{serve, SimSeed, Simulator};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
#[cfg(feature = "sim")]
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A loopback port nobody listens on now and no other test of this process was given: the
/// tests run in parallel, and the kernel may hand a just-released port out again.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("binding a loopback port")
            .local_addr()
            .expect("reading the bound port")
            .port();
        if GIVEN.lock().expect("port registry").insert(port) {
            return port;
        }
    }
}

/// The simulator served on a loopback port by its own runtime, for as long as this lives.
#[cfg(feature = "sim")]
pub struct Sim {
    pub url: String,
    pub simulator: Arc<Simulator>,
    _runtime: tokio::runtime::Runtime,
}

/// Starts the simulator from a seed written in the documented TOML format.
#[cfg(feature = "sim")]
pub fn start_sim(seed_toml: &str) -> Sim {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime for the simulator");
    let simulator = Arc::new(Simulator::new(
        SimSeed::from_toml(seed_toml).expect("a valid simulator seed"),
    ));
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("binding the simulator");
    let url = format!(
        "http://{}",
        listener.local_addr().expect("simulator address")
    );
    runtime.spawn(serve(listener, simulator.clone(), std::future::pending()));
    Sim {
        url,
        simulator,
        _runtime: runtime,
    }
}

/// A child process killed and reaped when the test ends, however it ends.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    pub fn id(&self) -> u32 {
        self.0.id()
    }

    /// Sends a signal by name (`TERM`, `HUP`, ...) with kill(1).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.0.id().to_string())
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -{name} failed");
    }

    /// Waits up to `timeout` for the child to exit; `None` if it is still running.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `certkeeper` binary under test.
pub fn certkeeper_command() -> Command {
    Command::new(env!("CARGO_BIN_EXE_certkeeper"))
}

/// Runs `certkeeper ARGS --config CONFIG` with `envs` set and waits for it.
pub fn certkeeper(config: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut command = certkeeper_command();
    command.args(args).arg("--config").arg(config);
    for (key, value) in envs {
        command.env(key, value);
    }
    command.output().expect("running certkeeper")
}

/// Starts `certkeeper run --config CONFIG` (JSON logs on stderr, piped) with `envs` set.
pub fn spawn_daemon(config: &Path, envs: &[(&str, &str)]) -> ChildGuard {
    let mut command = certkeeper_command();
    command
        .args(["run", "--log-format", "json", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (key, value) in envs {
        command.env(key, value);
    }
    ChildGuard(command.spawn().expect("starting the daemon"))
}

/// GET `path` on a loopback port; the status and the whole answer, or `None` if nobody
/// answered within 5 s.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, text))
}

/// Polls `check` every 100 ms until it holds; panics naming `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for {what}");
}

/// `certkeeper status --json` for CONFIG, or `Null` when it printed no JSON.
pub fn status_json(config: &Path) -> serde_json::Value {
    let output = certkeeper(config, &["status", "--json"], &[]);
    serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null)
}

/// The value of the first sample of `series` (name with its labels, as exposed) in a
/// Prometheus text exposition.
pub fn metric_value(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok())?
        })
}

/// Writes `DIRECTORY/certkeeper.toml`: one certificate `internal` from a local CA (30-day
/// leaves) deployed to one file target `files` (`DIRECTORY/tls`), state in
/// `DIRECTORY/state`, metrics on a free loopback port. The smallest config a daemon
/// converges with, no simulator needed.
pub fn write_local_ca_config(directory: &Path) -> std::path::PathBuf {
    let target = format!(
        "kind = \"file\"\ndirectory = \"{}\"",
        directory.join("tls").display()
    );
    write_local_ca_config_with(directory, "", &target).0
}

/// [`write_local_ca_config`] with `daemon_extra` lines in `[daemon]` and `target` as the body
/// of the `files` target's table (any kind); returns the config path and the metrics port.
pub fn write_local_ca_config_with(
    directory: &Path,
    daemon_extra: &str,
    target: &str,
) -> (std::path::PathBuf, u16) {
    let port = free_port();
    let path = directory.join("certkeeper.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[daemon]
state_dir = "{state}"
metrics_listen = "127.0.0.1:{port}"
{daemon_extra}

[local_ca.internal]
leaf_lifetime = "30d"

[[certificate]]
name = "internal"
domains = ["svc.internal.example"]
source = {{ local_ca = "internal" }}
deploy_to = ["files"]

[[target]]
name = "files"
{target}
"#,
            state = directory.join("state").display(),
        ),
    )
    .expect("writing the config");
    (path, port)
}

impl ChildGuard {
    /// Sends SIGTERM, waits up to 60 s for the child to exit, and returns how it exited (`None`
    /// if it is still running) with everything it wrote on its piped stderr.
    pub fn stop_and_read_logs(&mut self) -> (Option<std::process::ExitStatus>, String) {
        use std::io::Read;
        self.signal("TERM");
        let status = self.wait_timeout(Duration::from_secs(60));
        let mut logs = String::new();
        if let Some(mut stderr) = self.0.stderr.take() {
            // The child has exited (or is killed when the guard drops): the pipe ends.
            let _ = stderr.read_to_string(&mut logs);
        }
        (status, logs)
    }
}

/// `man -l PAGE` (a roff or gzipped roff file) as plain text; panics on any warning from man
/// or groff, so a page that renders with warnings fails the test that renders it.
pub fn render_man_page(page: &Path) -> String {
    let output = Command::new("man")
        .args(["--warnings", "-E", "UTF-8", "-l"])
        .arg(page)
        .env("MANWIDTH", "100")
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .env("LC_ALL", "C.UTF-8")
        .output()
        .expect("man (man-db) is installed");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "man -l {page:?} failed: {stderr}");
    assert!(
        stderr.trim().is_empty(),
        "man -l {page:?} warned:\n{stderr}"
    );
    String::from_utf8(output.stdout).expect("man prints UTF-8")
}

/// Sources a bash completion script for `certkeeper`, "types" `words` (the last one being
/// completed) and returns bash's candidates (`COMPREPLY`).
pub fn bash_complete(script: &Path, words: &[&str]) -> Vec<String> {
    let line = words.join(" ");
    let words_array: Vec<String> = words.iter().map(|word| format!("'{word}'")).collect();
    let program = format!(
        "source '{}' || exit 3\n\
         complete -p certkeeper >/dev/null || exit 4\n\
         COMP_WORDS=({}); COMP_CWORD={}; COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}\n\
         _certkeeper certkeeper '{}' '{}'\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        words_array.join(" "),
        words.len() - 1,
        words[words.len() - 1],
        words[words.len() - 2],
    );
    let output = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program])
        .output()
        .expect("bash is installed");
    assert!(
        output.status.success(),
        "bash completion from {script:?} failed ({:?}): {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|candidate| !candidate.is_empty())
        .map(str::to_owned)
        .collect()
}

/// The visible subcommands, as `certkeeper --help` lists them.
pub fn visible_subcommands() -> Vec<String> {
    let output = certkeeper_command()
        .arg("--help")
        .output()
        .expect("running certkeeper --help");
    let help = String::from_utf8_lossy(&output.stdout).into_owned();
    let commands = help
        .split("Commands:\n")
        .nth(1)
        .expect("--help lists commands")
        .split("\n\n")
        .next()
        .unwrap_or_default();
    let names: Vec<String> = commands
        .lines()
        .filter(|line| line.starts_with("  ") && !line.starts_with("   "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect();
    assert!(names.len() >= 10, "too few subcommands parsed: {names:?}");
    names
}

/// Issue 12's wrong-key scenario: one certificate from the local CA deployed to two CDN
/// domains of one simulated Alibaba account, `cdn-good` with the account's secret and
/// `cdn-bad` with a wrong one (the vendor answers `SignatureDoesNotMatch`, class auth). The
/// secrets reach the daemon through [`wrong_key_fleet::ENVS`].
pub mod wrong_key_fleet {
    use std::path::Path;

    pub const GOOD_TARGET: &str = "cdn-good";
    pub const BAD_TARGET: &str = "cdn-bad";
    pub const GOOD_SECRET: &str = "operator-good-secret-5f1e";
    pub const WRONG_SECRET: &str = "operator-wrong-secret-9c3a";

    /// The simulator's seed: the account whose secret is [`GOOD_SECRET`].
    pub const SEED: &str = r#"
[[alibaba.accounts]]
access_key_id = "LTAIoperatortest"
access_key_secret = "operator-good-secret-5f1e"

[alibaba]
cdn_domains = ["www.example.com", "bad.example.com"]
"#;

    /// The environment the daemon and the CLI need for [`config`].
    pub const ENVS: [(&str, &str); 2] = [
        ("OPERATOR_GOOD_SECRET", GOOD_SECRET),
        ("OPERATOR_WRONG_SECRET", WRONG_SECRET),
    ];

    /// The config; `daemon_extra` adds lines to `[daemon]`. The bad target's table is the
    /// last one, so a test can cut it off to remove the target.
    pub fn config(sim: &str, state_dir: &Path, metrics_port: u16, daemon_extra: &str) -> String {
        format!(
            r#"
[daemon]
state_dir = "{state}"
metrics_listen = "127.0.0.1:{metrics_port}"
{daemon_extra}

[credentials.good]
provider = "alibaba"
access_key_id = "LTAIoperatortest"
access_key_secret_env = "OPERATOR_GOOD_SECRET"
endpoint = "{sim}"

[credentials.wrong]
provider = "alibaba"
access_key_id = "LTAIoperatortest"
access_key_secret_env = "OPERATOR_WRONG_SECRET"
endpoint = "{sim}"

[local_ca.internal]
leaf_lifetime = "30d"

[[certificate]]
name = "www"
domains = ["www.example.com", "bad.example.com"]
source = {{ local_ca = "internal" }}
deploy_to = ["{GOOD_TARGET}", "{BAD_TARGET}"]

[[target]]
name = "{GOOD_TARGET}"
kind = "alibaba-cdn"
credentials = "good"
domain = "www.example.com"

[[target]]
name = "{BAD_TARGET}"
kind = "alibaba-cdn"
credentials = "wrong"
domain = "bad.example.com"
"#,
            state = state_dir.display(),
        )
    }
}

/// Starts `certkeeper run --config CONFIG` with `envs` set, its JSON log written to
/// `log_path` (a file, not a pipe: a fleet's log outgrows a pipe nobody drains).
pub fn spawn_daemon_logging_to(
    config: &Path,
    log_path: &Path,
    envs: &[(&str, &str)],
) -> ChildGuard {
    let log = std::fs::File::create(log_path).expect("creating the daemon's log");
    let mut command = certkeeper_command();
    command
        .args(["run", "--log-format", "json", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(Stdio::from(log));
    for (key, value) in envs {
        command.env(key, value);
    }
    ChildGuard(command.spawn().expect("starting the daemon"))
}

pub mod store;
