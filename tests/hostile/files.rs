//! Hostile probes: files. A FIFO where a certificate file belongs, a world-writable target
//! directory, symlinks planted where the file target writes, a world-writable state
//! directory; each against the daemon binary, checked as the operator sees it (readiness,
//! metrics, `status`, log lines, exit status, file modes and owners).

use crate::support::{
    certkeeper_command, free_port, http_get, spawn_daemon, status_json, wait_for, ChildGuard,
};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

/// How long the daemon may take to stop on SIGTERM: the `shutdown_grace` the configs set.
const GRACE: Duration = Duration::from_secs(20);
/// Generous deadline for the daemon to start and finish its first pass on a busy machine.
const START: Duration = Duration::from_secs(90);

/// `[daemon]` plus a local CA; `rest` adds certificates and targets. A config with nothing
/// in `rest` (the state-directory probes) says explicitly that it manages nothing, as `check`
/// requires.
fn config(state_dir: &Path, metrics_port: u16, rest: &str) -> String {
    format!(
        r#"
[daemon]
state_dir = "{state}"
metrics_listen = "127.0.0.1:{metrics_port}"
shutdown_grace = "{grace}s"
allow_empty = {allow_empty}

[local_ca.internal]
leaf_lifetime = "30d"
{rest}"#,
        state = state_dir.display(),
        grace = GRACE.as_secs(),
        allow_empty = rest.is_empty(),
    )
}

/// A `[[certificate]]` from the local CA, deployed to `targets`.
fn internal_certificate(targets: &[&str]) -> String {
    format!(
        "\n[[certificate]]\nname = \"internal\"\ndomains = [\"db.internal.test\"]\n\
         source = {{ local_ca = \"internal\" }}\ndeploy_to = {targets:?}\n"
    )
}

/// A `kind = "file"` `[[target]]`; `extra` adds keys (owner, group).
fn file_target(name: &str, directory: &Path, extra: &str) -> String {
    format!(
        "\n[[target]]\nname = \"{name}\"\nkind = \"file\"\ndirectory = \"{}\"\n{extra}",
        directory.display()
    )
}

/// The `status --json` row of target `name` (`Null` when absent).
fn target_row(view: &serde_json::Value, name: &str) -> serde_json::Value {
    view["targets"]
        .as_array()
        .and_then(|targets| {
            targets
                .iter()
                .find(|row| row["name"].as_str() == Some(name))
        })
        .cloned()
        .unwrap_or_default()
}

fn write_config(directory: &Path, text: &str) -> std::path::PathBuf {
    let path = directory.join("certkeeper.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn make_fifo(path: &Path) {
    use rustix::fs::{FileType, Mode, CWD};
    rustix::fs::mknodat(CWD, path, FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap();
}

fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

/// The daemon, with its stderr drained by a thread (a full pipe would stall its logging).
struct Daemon {
    child: ChildGuard,
    stderr: std::thread::JoinHandle<String>,
}

fn start(config_path: &Path) -> Daemon {
    use std::io::Read;
    let mut child = spawn_daemon(config_path, &[]);
    let mut pipe = child.0.stderr.take().expect("piped stderr");
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    });
    Daemon { child, stderr }
}

/// SIGTERM, then the exit status within the grace period and everything logged on stderr.
fn stop(daemon: Daemon) -> (std::process::ExitStatus, String) {
    let Daemon { mut child, stderr } = daemon;
    child.signal("TERM");
    let status = child
        .wait_timeout(GRACE)
        .expect("the daemon exits within its shutdown grace after SIGTERM");
    (status, stderr.join().unwrap())
}

/// The JSON log lines at `level` whose text contains every one of `needles`.
fn logged(stderr: &str, level: &str, needles: &[&str]) -> bool {
    stderr
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .any(|line| {
            let text = line.to_string();
            line["level"].as_str() == Some(level) && needles.iter().all(|n| text.contains(n))
        })
}

/// The sum of the samples of `family` on /metrics whose labels include all of `labels`
/// (`name="value"`), whatever the other labels; 0 when none (or no answer).
fn counted(metrics_port: u16, family: &str, labels: &[&str]) -> f64 {
    let Some((_, exposition)) = http_get(metrics_port, "/metrics") else {
        return 0.0;
    };
    exposition
        .lines()
        .filter(|line| {
            line.strip_prefix(family)
                .is_some_and(|rest| rest.starts_with('{'))
                && labels.iter().all(|label| line.contains(label))
        })
        .filter_map(|line| line.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

fn ready(metrics_port: u16) -> bool {
    http_get(metrics_port, "/readyz").is_some_and(|(status, _)| status == 200)
}

/// A FIFO as a certificate file used to wedge both async workers on a blocking open: no
/// readiness, no deploys, no clean stop. Now the FIFO is refused with its path named, the
/// local CA certificate still reaches its file target, `/readyz` turns ready and SIGTERM
/// ends the daemon within the grace period with status 0.
#[test]
fn a_fifo_certificate_is_refused_while_the_other_certificate_deploys() {
    let directory = tempfile::tempdir().unwrap();
    let root = directory.path();
    let incoming = root.join("incoming");
    std::fs::create_dir(&incoming).unwrap();
    let fifo = incoming.join("site.crt");
    make_fifo(&fifo);
    std::fs::write(
        incoming.join("site.key"),
        "not read: the certificate fails first\n",
    )
    .unwrap();
    let metrics_port = free_port();
    let site = format!(
        r#"
[[certificate]]
name = "site"
domains = ["www.example.test"]
source = {{ file = {{ cert = "{cert}", key = "{key}" }} }}
deploy_to = ["site-files"]
"#,
        cert = fifo.display(),
        key = incoming.join("site.key").display(),
    );
    let text = config(
        &root.join("state"),
        metrics_port,
        &[
            internal_certificate(&["internal-files"]),
            site,
            file_target("internal-files", &root.join("internal"), ""),
            file_target("site-files", &root.join("site"), ""),
        ]
        .concat(),
    );
    let config_path = write_config(root, &text);
    let daemon = start(&config_path);

    wait_for("/readyz to turn ready", START, || ready(metrics_port));
    wait_for("the local CA certificate in its file target", START, || {
        std::fs::read_to_string(root.join("internal/cert.pem"))
            .is_ok_and(|pem| pem.contains("BEGIN CERTIFICATE"))
    });
    wait_for("the FIFO certificate counted as a failure", START, || {
        counted(
            metrics_port,
            "certkeeper_renewals_total",
            &[r#"certificate="site""#, r#"result="failure""#],
        ) >= 1.0
    });
    assert!(
        !root.join("site/cert.pem").exists(),
        "nothing deployed from a FIFO"
    );
    let view = status_json(&config_path);
    assert_eq!(
        target_row(&view, "internal-files")["in_sync"],
        true,
        "{view}"
    );
    // The control socket still serves: `deploy` through the daemon answers.
    let mut deploy = ChildGuard(
        certkeeper_command()
            .args(["deploy", "internal-files", "--config"])
            .arg(&config_path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let deployed = deploy
        .wait_timeout(START)
        .expect("`certkeeper deploy` answers while a FIFO sits in the file source");
    let mut deploy_stderr = String::new();
    if let Some(mut pipe) = deploy.0.stderr.take() {
        std::io::Read::read_to_string(&mut pipe, &mut deploy_stderr).unwrap();
    }
    assert!(deployed.success(), "{deployed:?}: {deploy_stderr}");
    assert!(
        !deploy_stderr.contains("no daemon is running"),
        "went through the daemon: {deploy_stderr}"
    );
    // A process of the same user can no longer read the daemon's memory (PR_SET_DUMPABLE
    // 0 makes its /proc entries root's); as root there is nothing to tell apart.
    if !rustix::process::geteuid().is_root() {
        let proc_entry = std::fs::metadata(format!("/proc/{}", daemon.child.id())).unwrap();
        assert_eq!(proc_entry.uid(), 0, "the daemon is not dumpable");
    }

    let (status, stderr) = stop(daemon);
    assert!(status.success(), "{status:?}\n{stderr}");
    let fifo_path = fifo.display().to_string();
    assert!(
        logged(&stderr, "WARN", &["site", &fifo_path, "is a FIFO"]),
        "a WARN line names the FIFO:\n{stderr}"
    );
}

/// The file target refuses a world-writable directory (class `invalid`, the directory and
/// its mode in the error `status` shows) and never follows a symlink planted at a file it
/// writes: the link is replaced, the file it pointed to keeps its contents, mode and
/// owner, and the new files get the configured owner and modes.
#[test]
fn a_shared_target_directory_is_refused_and_planted_symlinks_are_replaced() {
    let directory = tempfile::tempdir().unwrap();
    let root = directory.path();
    let shared = root.join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
    let planted = root.join("planted");
    std::fs::create_dir(&planted).unwrap();
    let victim = root.join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o640)).unwrap();
    for name in ["cert.pem", "key.pem"] {
        std::os::unix::fs::symlink(&victim, planted.join(name)).unwrap();
    }
    let victim_before = std::fs::metadata(&victim).unwrap();
    // As root, hand the files to `nobody`, which the victim must never become; otherwise
    // to ourselves (the only owner we may give).
    let (owner, group) = if rustix::process::geteuid().is_root() {
        (65534, 65534)
    } else {
        (victim_before.uid(), victim_before.gid())
    };
    let metrics_port = free_port();
    let text = config(
        &root.join("state"),
        metrics_port,
        &[
            internal_certificate(&["shared-files", "planted-files"]),
            file_target("shared-files", &shared, ""),
            file_target(
                "planted-files",
                &planted,
                &format!("owner = \"{owner}\"\ngroup = \"{group}\"\n"),
            ),
        ]
        .concat(),
    );
    let config_path = write_config(root, &text);
    let daemon = start(&config_path);

    wait_for("the planted target deployed", START, || {
        target_row(&status_json(&config_path), "planted-files")["in_sync"] == true
    });
    wait_for("the shared target refused", START, || {
        target_row(&status_json(&config_path), "shared-files")["last_error_class"] == "invalid"
    });
    let refused = target_row(&status_json(&config_path), "shared-files");
    let message = refused["last_error"].as_str().unwrap_or_default();
    assert!(
        message.contains(&shared.display().to_string())
            && message.contains("mode 0777")
            && message.contains("world-writable"),
        "{refused}"
    );
    assert_eq!(
        std::fs::read_dir(&shared).unwrap().count(),
        0,
        "nothing written into the shared directory"
    );
    // The refusal is counted: an error of class `invalid` from the file target, and the
    // target is out of sync.
    wait_for("the refusal counted", START, || {
        counted(
            metrics_port,
            "certkeeper_errors_total",
            &[r#"vendor="file""#, r#"class="invalid""#],
        ) >= 1.0
    });
    assert_eq!(
        counted(
            metrics_port,
            "certkeeper_target_in_sync",
            &[r#"target="shared-files""#]
        ),
        0.0
    );
    assert_eq!(
        counted(
            metrics_port,
            "certkeeper_target_in_sync",
            &[r#"target="planted-files""#]
        ),
        1.0
    );

    let victim_after = std::fs::metadata(&victim).unwrap();
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
    assert_eq!(victim_after.mode() & 0o7777, 0o640);
    assert_eq!(
        (victim_after.uid(), victim_after.gid()),
        (victim_before.uid(), victim_before.gid()),
        "the planted link's target keeps its owner"
    );
    for (name, mode) in [("cert.pem", 0o644), ("key.pem", 0o600)] {
        let path = planted.join(name);
        let written = std::fs::symlink_metadata(&path).unwrap();
        assert!(written.is_file(), "{name}: the symlink was replaced");
        assert_eq!(mode_of(&path), mode, "{name}");
        assert_eq!((written.uid(), written.gid()), (owner, group), "{name}");
    }
    let (status, stderr) = stop(daemon);
    assert!(status.success(), "{status:?}\n{stderr}");
}

/// A state directory we own at 0777 (another user could replace `control.sock` or the
/// store) is tightened to 0700 at start, with a WARN line saying so and the old mode.
#[test]
fn a_world_writable_state_directory_we_own_is_tightened_at_start() {
    let directory = tempfile::tempdir().unwrap();
    let root = directory.path();
    let state = root.join("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
    let metrics_port = free_port();
    let config_path = write_config(root, &config(&state, metrics_port, ""));
    let daemon = start(&config_path);
    wait_for("/readyz to turn ready", START, || ready(metrics_port));
    assert_eq!(mode_of(&state), 0o700);
    let (status, stderr) = stop(daemon);
    assert!(status.success(), "{status:?}\n{stderr}");
    assert!(
        logged(&stderr, "WARN", &["tightened the state directory", "0777"]),
        "{stderr}"
    );
}

/// A group- or world-writable state directory owned by another user (we cannot tighten
/// it, and that user or anyone could replace `control.sock` or the store) stops the start:
/// exit 74 (an unusable state directory) naming the directory, its owner and mode, and nothing written into it.
/// As root we make one (owned by `nobody`); otherwise /tmp is one (root's, 1777).
#[test]
fn a_shared_state_directory_owned_by_another_user_stops_the_start() {
    let directory = tempfile::tempdir().unwrap();
    let root = directory.path();
    let state = if rustix::process::geteuid().is_root() {
        let state = root.join("state");
        std::fs::create_dir(&state).unwrap();
        std::os::unix::fs::chown(&state, Some(65534), Some(65534)).unwrap();
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o1777)).unwrap();
        state
    } else {
        std::path::PathBuf::from("/tmp")
    };
    let config_path = write_config(root, &config(&state, free_port(), ""));
    let mut daemon = start(&config_path);
    let status = daemon
        .child
        .wait_timeout(START)
        .expect("the daemon refuses to start, promptly");
    let stderr = daemon.stderr.join().unwrap();
    assert_eq!(status.code(), Some(74), "{stderr}");
    assert!(
        stderr.contains(&state.display().to_string())
            && stderr.contains("world-writable (mode 1777)")
            && stderr.contains("owned by uid"),
        "{stderr}"
    );
    // By name: other processes may use /tmp meanwhile.
    for name in ["state.db", "daemon.lock", "control.sock"] {
        assert!(!state.join(name).exists(), "{name} written into it");
    }
}
