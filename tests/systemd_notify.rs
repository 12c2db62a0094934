//! The daemon speaks the systemd notify protocol: READY (with STATUS), WATCHDOG keep-alives,
//! RELOADING on SIGHUP and STOPPING on SIGTERM, in that order, on `$NOTIFY_SOCKET`.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn notify_sequence_ready_status_watchdog_reloading_stopping() {
    let directory = tempfile::tempdir().unwrap();
    let socket_path = directory.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let config_path = directory.path().join("certkeeper.toml");
    std::fs::write(
        &config_path,
        format!(
            r#"
[daemon]
state_dir = "{state}"
metrics_listen = "127.0.0.1:{port}"

[local_ca.internal]

[[certificate]]
name = "internal"
domains = ["svc.internal.example"]
source = {{ local_ca = "internal" }}
deploy_to = ["files"]

[[target]]
name = "files"
kind = "file"
directory = "{files}"
"#,
            state = directory.path().join("state").display(),
            port = free_port(),
            files = directory.path().join("tls").display(),
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_certkeeper"))
        .args(["run", "--config"])
        .arg(&config_path)
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "200000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    let mut messages: Vec<String> = Vec::new();
    let mut buffer = [0u8; 4096];
    let mut sent_hup = false;
    let mut sent_term = false;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline
        && !messages
            .iter()
            .any(|message| message.contains("STOPPING=1"))
    {
        if let Ok(length) = socket.recv(&mut buffer) {
            messages.push(String::from_utf8_lossy(&buffer[..length]).into_owned());
        }
        let seen = |needle: &str| messages.iter().any(|message| message.contains(needle));
        if !sent_hup && seen("READY=1") && seen("WATCHDOG=1") {
            Command::new("kill")
                .arg("-HUP")
                .arg(child.id().to_string())
                .status()
                .unwrap();
            sent_hup = true;
        } else if sent_hup && !sent_term && seen("RELOADING=1") {
            Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status()
                .unwrap();
            sent_term = true;
        }
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    let position = |needle: &str| {
        messages
            .iter()
            .position(|message| message.contains(needle))
            .unwrap_or_else(|| panic!("no {needle} in {messages:?}"))
    };
    let ready = position("READY=1");
    // STATUS travels with READY and after every reconcile.
    assert!(messages[ready].contains("STATUS="), "{messages:?}");
    assert!(
        messages[ready + 1..]
            .iter()
            .any(|message| message.contains("STATUS=")),
        "{messages:?}"
    );
    let watchdog = position("WATCHDOG=1");
    let reloading = position("RELOADING=1");
    let stopping = position("STOPPING=1");
    assert!(
        ready < watchdog && watchdog < reloading && reloading < stopping,
        "{messages:?}"
    );
    assert!(
        messages[reloading].contains("MONOTONIC_USEC="),
        "RELOADING carries MONOTONIC_USEC: {messages:?}"
    );
}
