//! Hostile probes: the control socket and the metrics port. A flood of idle control
//! connections, garbage on the socket, a slowloris client on the metrics port and a daemon
//! that accepts but never answers: the daemon keeps serving, the abuser gets an answer or is
//! dropped on time, and the CLI gives up with a clear error.

use crate::support;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A daemon config: one local-CA certificate deployed to a file target `files`; its path,
/// the metrics port and the control socket.
fn write_config(directory: &Path) -> (PathBuf, u16, PathBuf) {
    let files = directory.join("tls");
    let target = format!("kind = \"file\"\ndirectory = \"{}\"", files.display());
    let (config, port) = support::write_local_ca_config_with(directory, "", &target);
    (config, port, directory.join("state").join("control.sock"))
}

/// Starts the daemon and waits until its first pass is done.
fn ready_daemon(config: &Path, port: u16) -> support::ChildGuard {
    let daemon = support::spawn_daemon(config, &[]);
    support::wait_for("/readyz", Duration::from_secs(60), || {
        support::http_get(port, "/readyz").is_some_and(|(status, _)| status == 200)
    });
    daemon
}

/// The one reply line the daemon sends on `stream` and whether it then closed the
/// connection; waits at most `timeout`.
fn reply_and_close(stream: UnixStream, timeout: Duration) -> (serde_json::Value, bool) {
    stream.set_read_timeout(Some(timeout)).unwrap();
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    let reply = serde_json::from_str(line.trim()).unwrap_or(serde_json::Value::Null);
    let mut rest = Vec::new();
    // Closed with unread request bytes (an oversize request), the socket resets instead.
    let closed = match reader.read_to_end(&mut rest) {
        Ok(_) => true,
        Err(error) => error.kind() == std::io::ErrorKind::ConnectionReset,
    };
    (reply, closed)
}

#[test]
fn idle_control_connections_neither_block_a_deploy_nor_stay_open() {
    let directory = tempfile::tempdir().unwrap();
    let (config, port, socket) = write_config(directory.path());
    let _daemon = ready_daemon(&config, port);

    // Before the first connect: no idle connection can have been accepted earlier.
    let opened = Instant::now();
    let idle: Vec<UnixStream> = (0..200)
        .map(|_| UnixStream::connect(&socket).unwrap())
        .collect();

    // A real deploy goes through the daemon (not in-process) and succeeds.
    let output = support::certkeeper(&config, &["deploy", "files"], &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("files: in sync"), "{stdout}");
    assert!(!stderr.contains("no daemon is running"), "{stderr}");
    let (status, body) = support::http_get(port, "/healthz").unwrap();
    assert_eq!(status, 200, "{body}");

    // Every idle connection gets one error line and is closed: the oldest when a newcomer
    // needed its place, the rest after the 10 s request timeout.
    let mut displaced = 0;
    let mut timed_out = 0;
    for stream in idle {
        let (reply, closed) = reply_and_close(stream, Duration::from_secs(60));
        assert!(closed, "connection left open after {reply}");
        assert_eq!(reply["ok"], false, "{reply}");
        let message = reply["message"].as_str().unwrap_or_default();
        if message.contains("this one had sent no request") {
            displaced += 1;
        } else if message.starts_with("no request within 10s") {
            timed_out += 1;
        } else {
            panic!("unexpected reply {reply}");
        }
    }
    assert_eq!(displaced + timed_out, 200);
    assert!(
        (1..=64).contains(&timed_out),
        "{displaced} displaced, {timed_out} timed out"
    );
    assert!(
        opened.elapsed() >= Duration::from_secs(10),
        "the survivors waited for the request timeout"
    );
    let (status, _) = support::http_get(port, "/healthz").unwrap();
    assert_eq!(status, 200);
}

#[test]
fn garbage_on_the_control_socket_gets_an_error_reply() {
    let directory = tempfile::tempdir().unwrap();
    let (config, port, socket) = write_config(directory.path());
    let mut daemon = ready_daemon(&config, port);
    let oversize = vec![b'{'; 100_000];
    let cases: [(&[u8], &str); 4] = [
        (b"GET / HTTP/1.1\r\n\r\n", "bad request"),
        (b"{\"command\":\"reboot\"}\n", "unknown variant `reboot`"),
        (b"\x00\xff\x00\xff\n", "not UTF-8"),
        (&oversize, "request longer than 4096 bytes"),
    ];
    for (bytes, expected) in cases {
        let mut stream = UnixStream::connect(&socket).unwrap();
        // The daemon may answer and close before all of an oversize request is written.
        let _ = stream.write_all(bytes);
        let (reply, closed) = reply_and_close(stream, Duration::from_secs(30));
        assert_eq!(reply["ok"], false, "{reply}");
        let message = reply["message"].as_str().unwrap_or_default();
        assert!(message.contains(expected), "{expected}: {reply}");
        assert!(closed);
    }
    // Still serving real requests.
    let output = support::certkeeper(&config, &["deploy", "files"], &[]);
    assert!(output.status.success(), "{output:?}");
    // The operator sees each refusal once, at WARN, with the reason.
    let (_, logs) = daemon.stop_and_read_logs();
    let refusals: Vec<&str> = logs
        .lines()
        .filter(|line| line.contains("control request refused"))
        .collect();
    assert_eq!(refusals.len(), 4, "{logs}");
    assert!(
        refusals
            .iter()
            .all(|line| line.contains("\"level\":\"WARN\"")),
        "{refusals:#?}"
    );
    assert!(
        refusals.iter().any(|line| line.contains("not UTF-8")),
        "{refusals:#?}"
    );
}

#[test]
fn a_slowloris_client_does_not_block_healthz_and_is_dropped() {
    let directory = tempfile::tempdir().unwrap();
    let (config, port, _) = write_config(directory.path());
    let _daemon = ready_daemon(&config, port);

    let mut slow = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n")
        .unwrap();
    // One header byte every 200 ms, for as long as the server takes them.
    let mut trickle = slow.try_clone().unwrap();
    let trickler = std::thread::spawn(move || {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            if trickle.write_all(b"X").is_err() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    });
    let started = Instant::now();
    for _ in 0..5 {
        let (status, body) = support::http_get(port, "/healthz").unwrap();
        assert_eq!(status, 200, "{body}");
    }
    // The header-read timeout (10 s) drops the trickling client: its read ends.
    slow.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut answer = Vec::new();
    let _ = slow.read_to_end(&mut answer);
    let dropped_after = started.elapsed();
    assert!(
        dropped_after < Duration::from_secs(55),
        "held for {dropped_after:?}"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "the slow request was not served: {answer}"
    );
    assert!(trickler.join().unwrap(), "the server stopped taking bytes");
    let (status, _) = support::http_get(port, "/healthz").unwrap();
    assert_eq!(status, 200);
}

#[test]
fn the_cli_gives_up_on_a_daemon_that_never_answers() {
    let directory = tempfile::tempdir().unwrap();
    let (config, _, socket) = write_config(directory.path());
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    // Something holds the socket, accepts and never answers (a wedged daemon).
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let holder = std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten().take(1) {
            held.push(stream);
        }
        held
    });
    let started = Instant::now();
    let output = support::certkeeper(
        &config,
        &["deploy", "files"],
        &[("CERTKEEPER_CONTROL_TIMEOUT", "2s")],
    );
    assert!(started.elapsed() < Duration::from_secs(30), "bounded wait");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(69), "{stderr}");
    assert!(
        stderr.contains("control socket")
            && stderr.contains("the daemon did not answer within 2s")
            && stderr.contains("CERTKEEPER_CONTROL_TIMEOUT"),
        "{stderr}"
    );
    drop(holder.join().unwrap());
}

/// CPU seconds (user + system) the process `pid` has used, from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The fields after the command name, which is in parentheses and may contain spaces.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

#[test]
fn accept_errors_back_off_instead_of_spinning() {
    let directory = tempfile::tempdir().unwrap();
    let (config, port, socket) = write_config(directory.path());
    // A descriptor limit a little above what the idle daemon uses (about 18), so a handful of
    // connections make accept fail with EMFILE.
    let mut command = std::process::Command::new("sh");
    command
        .args([
            "-c",
            r#"ulimit -n 32 && exec "$0" run --log-format json --config "$1""#,
            env!("CARGO_BIN_EXE_certkeeper"),
        ])
        .arg(&config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let mut daemon = support::ChildGuard(command.spawn().unwrap());
    support::wait_for("/readyz", Duration::from_secs(60), || {
        support::http_get(port, "/readyz").is_some_and(|(status, _)| status == 200)
    });

    let cpu_before = cpu_seconds(daemon.id());
    let wall = Instant::now();
    let flood: Vec<UnixStream> = (0..30)
        .map(|_| UnixStream::connect(&socket).unwrap())
        .collect();
    // Every connection is answered in the end: accepted as descriptors free up, each closed
    // by the request timeout.
    for stream in flood {
        let (reply, _) = reply_and_close(stream, Duration::from_secs(120));
        let message = reply["message"].as_str().unwrap_or_default();
        assert!(message.starts_with("no request within 10s"), "{reply}");
    }
    let cpu = cpu_seconds(daemon.id()) - cpu_before;
    let elapsed = wall.elapsed().as_secs_f64();
    // Backing off, the daemon uses next to no CPU here (0.00 s measured); a spinning accept
    // loop burned 8 s of the 20 on a loaded machine.
    assert!(
        cpu < 2.0,
        "{cpu:.2} s of CPU in {elapsed:.1} s: accept is spinning"
    );
    let output = support::certkeeper(&config, &["deploy", "files"], &[]);
    assert!(output.status.success(), "{output:?}");

    let (status, logs) = daemon.stop_and_read_logs();
    assert!(status.is_some_and(|status| status.success()), "{status:?}");
    let warnings: Vec<&str> = logs
        .lines()
        .filter(|line| line.contains("accepting a connection failed"))
        .collect();
    assert!(!warnings.is_empty(), "no accept failure logged:\n{logs}");
    // One WARN per burst of failures, not one per failed accept.
    assert!(warnings.len() <= 3, "{warnings:#?}");
    for warning in &warnings {
        assert!(warning.contains("\"level\":\"WARN\""), "{warning}");
        assert!(warning.contains("\"listener\":\"control\""), "{warning}");
        assert!(warning.contains("Too many open files"), "{warning}");
    }
    assert!(
        logs.contains("accepting connections again"),
        "recovery not logged:\n{logs}"
    );
}
