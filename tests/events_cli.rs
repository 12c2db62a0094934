//! `certkeeper events` through the binary: the history a pass left (issued, deployed) as
//! lines and as JSON lines, filtered by certificate, target and time; usage errors exit 64;
//! `--follow` shows events logged after it started, and stops cleanly on SIGTERM.

mod support;

use std::io::BufRead;
use std::process::Stdio;
use std::time::Duration;
use support::{certkeeper, certkeeper_command, write_local_ca_config, ChildGuard};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn events_show_what_a_pass_did_and_filter_it() {
    let directory = tempfile::tempdir().unwrap();
    let config = write_local_ca_config(directory.path());

    // No store yet: nothing to show, and nothing created.
    let empty = certkeeper(&config, &["events"], &[]);
    assert_eq!(empty.status.code(), Some(0), "{empty:?}");
    assert!(empty.stdout.is_empty(), "{empty:?}");
    assert!(!directory.path().join("state").exists());

    let renewed = certkeeper(&config, &["renew", "internal"], &[]);
    assert_eq!(renewed.status.code(), Some(0), "{renewed:?}");

    let all = certkeeper(&config, &["events"], &[]);
    let stdout = text(&all.stdout);
    assert_eq!(all.status.code(), Some(0), "{all:?}");
    let stored = stdout
        .lines()
        .find(|line| line.contains("  certificate.stored  internal  "))
        .unwrap_or_else(|| panic!("the new version is in the log: {stdout}"));
    // `2026-11-29T03:12:45Z  kind  subject  message`
    let (at, _) = stored.split_once("  ").unwrap();
    assert!(
        time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).is_ok(),
        "{stored}"
    );
    assert!(
        stdout.contains("  deploy.succeeded  files  "),
        "the deploy is in the log: {stdout}"
    );

    let json = certkeeper(&config, &["events", "--json"], &[]);
    assert_eq!(json.status.code(), Some(0), "{json:?}");
    let objects: Vec<serde_json::Value> = text(&json.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(objects.len(), stdout.lines().count());
    assert!(objects
        .iter()
        .any(|event| event["kind"] == "deploy.succeeded" && event["subject"] == "files"));

    let target = certkeeper(&config, &["events", "--target", "files"], &[]);
    let lines = text(&target.stdout);
    assert!(!lines.is_empty(), "{target:?}");
    assert!(
        lines.lines().all(|line| line.contains("  files  ")),
        "{lines}"
    );
    // A certificate's events include those of its targets.
    let certificate = certkeeper(&config, &["events", "--certificate", "internal"], &[]);
    assert_eq!(text(&certificate.stdout), stdout);

    let recent = certkeeper(&config, &["events", "--since", "1h"], &[]);
    assert_eq!(
        text(&recent.stdout),
        stdout,
        "everything is from the last hour"
    );
    let future = certkeeper(&config, &["events", "--since", "2999-01-01T00:00:00Z"], &[]);
    assert_eq!(future.status.code(), Some(0), "{future:?}");
    assert!(future.stdout.is_empty(), "{future:?}");

    for (args, named) in [
        (
            &["events", "--target", "nope"][..],
            "no target named `nope`",
        ),
        (
            &["events", "--since", "yesterday"][..],
            "--since `yesterday`",
        ),
    ] {
        let refused = certkeeper(&config, args, &[]);
        assert_eq!(refused.status.code(), Some(64), "{refused:?}");
        assert!(text(&refused.stderr).contains(named), "{refused:?}");
    }
}

#[test]
fn follow_prints_new_events_until_sigterm() {
    let directory = tempfile::tempdir().unwrap();
    let config = write_local_ca_config(directory.path());
    // Started before any store exists: it waits for one.
    let mut follower = ChildGuard(
        certkeeper_command()
            .args(["events", "--follow", "--config"])
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = follower.0.stdout.take().unwrap();
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });

    let renewed = certkeeper(&config, &["renew", "internal"], &[]);
    assert_eq!(renewed.status.code(), Some(0), "{renewed:?}");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    while !seen
        .iter()
        .any(|line: &String| line.contains("  deploy.succeeded  files  "))
    {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines_rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("the follower never showed the deploy: {seen:?}"),
        }
    }

    follower.signal("TERM");
    let status = follower
        .wait_timeout(Duration::from_secs(30))
        .expect("the follower stops on SIGTERM");
    assert!(status.success(), "{status:?}");
}

/// The daemon applies the retention after its first pass: an event older than 90 days is
/// gone from `certkeeper events`, a recent one stays.
#[test]
fn the_daemon_prunes_events_past_the_retention() {
    use certkeeper::store::{Event, StateStore};
    let directory = tempfile::tempdir().unwrap();
    let config = write_local_ca_config(directory.path());
    {
        let store = certkeeper::store::SqliteStore::open(&directory.path().join("state")).unwrap();
        let now = time::OffsetDateTime::now_utc();
        for (age, message) in [(91, "from last season"), (1, "from yesterday")] {
            store
                .append_event(&Event {
                    id: 0,
                    at: now - time::Duration::days(age),
                    kind: "deploy.succeeded".into(),
                    subject: "files".into(),
                    message: message.into(),
                    fields: serde_json::json!({}),
                })
                .unwrap();
        }
    }
    let before = text(&certkeeper(&config, &["events"], &[]).stdout);
    assert!(before.contains("from last season"), "{before}");

    let mut daemon = support::spawn_daemon(&config, &[]);
    support::wait_for("the old event pruned", Duration::from_secs(60), || {
        !text(&certkeeper(&config, &["events"], &[]).stdout).contains("from last season")
    });
    let after = text(&certkeeper(&config, &["events"], &[]).stdout);
    assert!(after.contains("from yesterday"), "{after}");
    daemon.signal("TERM");
    assert!(daemon.wait_timeout(Duration::from_secs(60)).is_some());
}
