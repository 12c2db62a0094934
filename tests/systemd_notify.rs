//! The daemon speaks the systemd notify protocol: READY (with STATUS), WATCHDOG keep-alives,
//! RELOADING on SIGHUP and STOPPING on SIGTERM, in that order, on `$NOTIFY_SOCKET`; a pass that
//! stops making progress stops the keep-alives and turns `/healthz` red.

mod support;

use std::os::unix::net::UnixDatagram;
use std::process::Stdio;
use std::time::{Duration, Instant};

#[test]
fn notify_sequence_ready_status_watchdog_reloading_stopping() {
    let directory = tempfile::tempdir().unwrap();
    let (socket_path, socket) = bind_notify_socket(directory.path(), Duration::from_millis(200));
    let config_path = support::write_local_ca_config(directory.path());
    let mut child = support::ChildGuard(
        support::certkeeper_command()
            .args(["run", "--config"])
            .arg(&config_path)
            .env("NOTIFY_SOCKET", &socket_path)
            .env("WATCHDOG_USEC", "200000")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );

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
            child.signal("HUP");
            sent_hup = true;
        } else if sent_hup && !sent_term && seen("RELOADING=1") {
            child.signal("TERM");
            sent_term = true;
        }
    }
    let status = child.0.wait().unwrap();
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

/// A notify socket in `directory` (path and socket) whose reads wait at most `read_timeout`.
fn bind_notify_socket(
    directory: &std::path::Path,
    read_timeout: Duration,
) -> (std::path::PathBuf, UnixDatagram) {
    let path = directory.join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(read_timeout)).unwrap();
    (path, socket)
}

/// A vendor endpoint that accepts connections and never answers, for as long as the process.
fn silent_endpoint() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    url
}

/// Every notify message that arrives within `window`.
fn messages_within(socket: &UnixDatagram, window: Duration) -> Vec<String> {
    let mut messages = Vec::new();
    let mut buffer = [0u8; 4096];
    let until = Instant::now() + window;
    while Instant::now() < until {
        if let Ok(length) = socket.recv(&mut buffer) {
            messages.push(String::from_utf8_lossy(&buffer[..length]).into_owned());
        }
    }
    messages
}

#[test]
fn a_stuck_pass_turns_healthz_red_and_starves_the_watchdog() {
    let directory = tempfile::tempdir().unwrap();
    let (socket_path, socket) = bind_notify_socket(directory.path(), Duration::from_millis(100));
    let (config_path, metrics_port) = support::write_local_ca_config_with(
        directory.path(),
        "stall_timeout = \"2s\"\nshutdown_grace = \"1s\"",
        r#"kind = "alibaba-cdn"
credentials = "ali"
domain = "svc.internal.example""#,
    );
    // The credentials the target uses: a vendor endpoint that never answers.
    let mut config = std::fs::read_to_string(&config_path).unwrap();
    config.push_str(&format!(
        r#"
[credentials.ali]
provider = "alibaba"
access_key_id = "LTAIstalltest"
access_key_secret_env = "TEST_ALIBABA_SECRET"
endpoint = "{}"
"#,
        silent_endpoint()
    ));
    std::fs::write(&config_path, config).unwrap();
    let mut daemon = support::spawn_daemon(
        &config_path,
        &[
            ("NOTIFY_SOCKET", socket_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "200000"),
            ("TEST_ALIBABA_SECRET", "stall-test-secret"),
        ],
    );

    // The pass starts at once and makes progress until its first vendor call, which hangs:
    // the watchdog is fed at first.
    let mut early = Vec::new();
    support::wait_for("READY=1 and WATCHDOG=1", Duration::from_secs(60), || {
        early.extend(messages_within(&socket, Duration::from_millis(100)));
        let seen = |needle: &str| early.iter().any(|message| message.contains(needle));
        seen("READY=1") && seen("WATCHDOG=1")
    });
    let stalled = || {
        support::http_get(metrics_port, "/healthz").is_some_and(|(status, body)| {
            status == 503
                && body.contains("reconcile pass stalled: no progress for")
                && body.contains("(budget 2s)")
        })
    };
    // The call has a 30 s request timeout; the 2 s budget runs out long before it.
    support::wait_for(
        "/healthz to name the stall",
        Duration::from_secs(20),
        stalled,
    );
    // Stalled: no keep-alive over many watchdog intervals (0.1 s each), /healthz still red.
    messages_within(&socket, Duration::from_millis(300));
    let later = messages_within(&socket, Duration::from_millis(1_500));
    assert!(
        later.iter().all(|message| !message.contains("WATCHDOG=1")),
        "a stalled pass must not feed the watchdog: {later:?}"
    );
    assert!(stalled(), "the stall is still reported");
    // The container health check says why.
    let check = support::certkeeper(&config_path, &["healthcheck"], &[]);
    let check_error = String::from_utf8_lossy(&check.stderr);
    assert_eq!(check.status.code(), Some(1), "{check_error}");
    assert!(
        check_error.contains("/healthz answered 503: reconcile pass stalled"),
        "{check_error}"
    );

    let (status, logs) = daemon.stop_and_read_logs();
    assert!(
        status.is_some_and(|status| status.success()),
        "the daemon stops on SIGTERM despite the stuck pass: {status:?}"
    );
    let stall_line = logs
        .lines()
        .find(|line| line.contains("no longer feeding the watchdog"))
        .unwrap_or_else(|| panic!("no stall log line in:\n{logs}"));
    assert!(stall_line.contains("\"level\":\"ERROR\""), "{stall_line}");
    assert!(stall_line.contains("\"budget_seconds\":2"), "{stall_line}");
    assert!(
        !logs.contains("stall-test-secret"),
        "the secret leaked into logs"
    );
}
