//! Hostile probes: config. A 50,000-line config with 50,000 bad references is refused with
//! exit 78 and every issue located at its own `file:line:column:`, and `check` finishes:
//! locating issues must not re-parse the document per issue (that took minutes). Sent to a
//! running daemon with SIGHUP, the same config is refused with a bounded log line while the
//! daemon keeps serving. A FIFO as a secret file is refused by `check` and `run`, not waited on.

use super::support::{certkeeper_command, free_port, http_get, metric_value, wait_for, ChildGuard};
use std::process::Stdio;
use std::time::Duration;

/// Bad references in the generated config, one per line.
const BAD_REFERENCES: usize = 50_000;

/// Lines before the first element of `deploy_to` in the generated config.
const HEADER_LINES: usize = 13;

/// `certkeeper ARGS CONFIG` with stderr in the file `stderr` (a pipe nobody reads while the
/// test waits would fill up and stall the child).
fn spawn_logging_to(
    args: &[&str],
    config: &std::path::Path,
    stderr: &std::path::Path,
) -> ChildGuard {
    ChildGuard(
        certkeeper_command()
            .args(args)
            .arg(config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(stderr).unwrap())
            .spawn()
            .unwrap(),
    )
}

/// A file target and one certificate whose `deploy_to` names `count` targets that do not
/// exist, each on its own line (`  "missing-000001",` at column 3).
fn config_with_bad_references(count: usize) -> String {
    let mut text = String::from(
        "[daemon]\nstate_dir = \"/var/lib/certkeeper\"\n\n[[target]]\nname = \"web\"\nkind = \"file\"\ndirectory = \"/etc/tls/web\"\n\n[[certificate]]\nname = \"www\"\ndomains = [\"www.example.com\"]\nsource = { local_ca = \"internal\" }\ndeploy_to = [\n",
    );
    assert_eq!(text.lines().count(), HEADER_LINES);
    for index in 1..=count {
        text.push_str(&format!("  \"missing-{index:06}\",\n"));
    }
    text.push_str("]\n\n[local_ca.internal]\n");
    text
}

#[test]
fn a_50000_line_bad_config_is_refused_with_every_issue_located() {
    let directory = tempfile::tempdir().unwrap();
    let config = directory.path().join("bad.toml");
    std::fs::write(&config, config_with_bad_references(BAD_REFERENCES)).unwrap();
    // Issues go to a file: 50,000 lines would fill a pipe nobody reads while we wait.
    let stderr_path = directory.path().join("stderr.txt");
    let mut child = spawn_logging_to(&["check", "--config"], &config, &stderr_path);
    // A guard against a hang or a quadratic blow-up (it took minutes), not a speed test:
    // the linear version takes well under a second.
    let status = child
        .wait_timeout(Duration::from_secs(30))
        .expect("check of a 50,000-line bad config did not finish within 30 s");
    assert_eq!(status.code(), Some(78));

    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    let file = config.display().to_string();
    let issues: Vec<&str> = stderr
        .lines()
        .filter(|line| line.contains("no target named"))
        .collect();
    assert_eq!(issues.len(), BAD_REFERENCES, "one line per bad reference");
    assert_eq!(
        issues[0],
        format!(
            "{file}:{}:3: certificate[0].deploy_to[0]: no target named `missing-000001`",
            HEADER_LINES + 1
        )
    );
    let last = BAD_REFERENCES - 1;
    assert_eq!(
        issues[last],
        format!(
            "{file}:{}:3: certificate[0].deploy_to[{last}]: no target named `missing-{BAD_REFERENCES:06}`",
            HEADER_LINES + BAD_REFERENCES
        )
    );
    // Every issue has its own line, in order.
    for (index, issue) in issues.iter().enumerate().step_by(997) {
        let line = HEADER_LINES + 1 + index;
        assert!(
            issue.starts_with(&format!(
                "{file}:{line}:3: certificate[0].deploy_to[{index}]: "
            )),
            "{issue}"
        );
    }
}

#[test]
fn typos_among_many_names_keep_their_suggestion() {
    // The suggestion budget only runs out for absurd configs: one typo is still helped.
    let mut text =
        config_with_bad_references(0).replace("deploy_to = [\n]", "deploy_to = [\"wbe\"]");
    text.push('\n');
    let directory = tempfile::tempdir().unwrap();
    let config = directory.path().join("typo.toml");
    std::fs::write(&config, text).unwrap();
    let output = certkeeper_command()
        .args(["check", "--offline", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            ":13:14: certificate[0].deploy_to[0]: no target named `wbe` (did you mean `web`?)"
        ),
        "{stderr}"
    );
}

#[test]
fn a_50000_line_bad_config_sent_by_sighup_is_refused_and_the_daemon_keeps_serving() {
    let directory = tempfile::tempdir().unwrap();
    let port = free_port();
    let good = format!(
        "[daemon]\nstate_dir = {:?}\nmetrics_listen = \"127.0.0.1:{port}\"\n\n[local_ca.internal]\n\n\
         [[certificate]]\nname = \"www\"\ndomains = [\"www.example.com\"]\nsource = {{ local_ca = \"internal\" }}\ndeploy_to = [\"web\"]\n\n\
         [[target]]\nname = \"web\"\nkind = \"file\"\ndirectory = {:?}\n",
        directory.path().join("state").display().to_string(),
        directory.path().join("tls").display().to_string(),
    );
    let config = directory.path().join("certkeeper.toml");
    std::fs::write(&config, good).unwrap();
    let logs = directory.path().join("daemon.log");
    let mut daemon = spawn_logging_to(&["run", "--log-format", "json", "--config"], &config, &logs);
    wait_for("the daemon is ready", Duration::from_secs(60), || {
        http_get(port, "/readyz").is_some_and(|(status, _)| status == 200)
    });

    std::fs::write(&config, config_with_bad_references(BAD_REFERENCES)).unwrap();
    daemon.signal("HUP");
    wait_for("the reload is refused", Duration::from_secs(30), || {
        http_get(port, "/metrics").is_some_and(|(_, text)| {
            metric_value(
                &text,
                r#"certkeeper_config_reloads_total{result="failure"}"#,
            ) == Some(1.0)
        })
    });
    let (status, _) = http_get(port, "/healthz").expect("the daemon still answers");
    assert_eq!(status, 200);
    assert!(
        std::fs::read_to_string(directory.path().join("tls/cert.pem"))
            .is_ok_and(|pem| pem.contains("BEGIN CERTIFICATE")),
        "the previous configuration keeps running"
    );

    daemon.signal("TERM");
    let exit = daemon
        .wait_timeout(Duration::from_secs(30))
        .expect("the daemon stops on SIGTERM");
    assert!(exit.success(), "{exit:?}");
    let logs = std::fs::read_to_string(&logs).unwrap();
    let refusal = logs
        .lines()
        .find(|line| line.contains("reload refused"))
        .unwrap_or_else(|| panic!("no refusal logged:\n{logs}"));
    assert!(refusal.contains("\"level\":\"ERROR\""), "{refusal}");
    assert!(
        refusal.contains("deploy_to[0]: no target named `missing-000001`")
            && refusal.contains("and 49980 more issues"),
        "{refusal}"
    );
    assert!(
        refusal.len() < 10_000,
        "the log line is bounded: {} bytes",
        refusal.len()
    );
}

#[test]
fn a_fifo_as_a_secret_file_is_refused_not_waited_on() {
    let directory = tempfile::tempdir().unwrap();
    let fifo = directory.path().join("alibaba-secret");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo");
    let port = free_port();
    let config = directory.path().join("certkeeper.toml");
    std::fs::write(
        &config,
        format!(
            "[daemon]\nstate_dir = {state:?}\nmetrics_listen = \"127.0.0.1:{port}\"\n\n\
             [credentials.ali]\nprovider = \"alibaba\"\naccess_key_id = \"AK\"\naccess_key_secret_file = {fifo:?}\n\n\
             [local_ca.internal]\n\n\
             [[certificate]]\nname = \"www\"\ndomains = [\"www.example.com\"]\nsource = {{ local_ca = \"internal\" }}\n",
            state = directory.path().join("state").display().to_string(),
            fifo = fifo.display().to_string(),
        ),
    )
    .unwrap();
    for command in ["check", "run"] {
        let stderr_path = directory.path().join(format!("{command}.stderr"));
        let mut child = spawn_logging_to(&[command, "--config"], &config, &stderr_path);
        // Opening a FIFO nobody writes to blocks forever: the guard catches that.
        let status = child
            .wait_timeout(Duration::from_secs(30))
            .unwrap_or_else(|| panic!("`{command}` waited on the FIFO"));
        assert_eq!(status.code(), Some(78), "{command}");
        let stderr = std::fs::read_to_string(&stderr_path).unwrap();
        assert!(
            stderr.contains(&format!(
                "credentials.ali.access_key_secret_file: cannot read {}: not a regular file",
                fifo.display()
            )),
            "{command}: {stderr}"
        );
    }
}
