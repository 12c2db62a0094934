//! `certkeeper check` through the binary: the example config passes, and each bad config is
//! refused with exit code 78 and a message naming file:line:column, the key path and, where
//! one applies, the nearest valid key. Without `--offline`, `check` also resolves what `run`
//! will need (secrets, certificate files, the state directory) and names what is missing and
//! how it was looked up; `run` exits 78 on the same problems and 74 on an unusable state
//! directory.

mod support;

use std::process::Command;
use std::time::Duration;

const BASE: &str = r#"# certkeeper test config
[daemon]
state_dir = "/var/lib/certkeeper"

[credentials.ali]
provider = "alibaba"
access_key_id = "AK"
access_key_secret_env = "ALI_SECRET"

[[target]]
name = "cdn"
kind = "alibaba-cdn"
credentials = "ali"
domain = "www.example.com"

[[certificate]]
name = "www"
domains = ["www.example.com"]
source = { file = { cert = "/x/c.pem", key = "/x/k.pem" } }
deploy_to = ["cdn"]
"#;

/// `check --offline` (validation only: BASE names secrets and files that do not exist here).
fn check(text: &str) -> (i32, String, String) {
    check_with(text, &["--offline"], &[])
}

/// `check ARGS` of `text` with `envs` set; FILE stands for the config's path in stderr.
fn check_with(text: &str, args: &[&str], envs: &[(&str, &str)]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("certkeeper.toml");
    std::fs::write(&path, text).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_certkeeper"));
    command.arg("check").args(args).arg("--config").arg(&path);
    command.env_remove("CREDENTIALS_DIRECTORY");
    for (key, value) in envs {
        command.env(key, value);
    }
    let output = command.output().unwrap();
    let stderr =
        String::from_utf8_lossy(&output.stderr).replace(&path.display().to_string(), "FILE");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into(),
        stderr,
    )
}

#[test]
fn example_config_is_valid() {
    let output = Command::new(env!("CARGO_BIN_EXE_certkeeper"))
        .args([
            "check",
            "--offline",
            "--config",
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/config/certkeeper.example.toml"
            ),
        ])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn base_config_is_valid() {
    let (code, stdout, stderr) = check(BASE);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("1 certificates, 1 targets"), "{stdout}");
    assert!(stdout.contains("not checked (--offline)"), "{stdout}");
}

/// (name, config text, expected fragments of stderr)
fn bad_configs() -> Vec<(&'static str, String, Vec<&'static str>)> {
    vec![
        ("toml syntax", format!("{BASE}\n[daemon\n"), vec!["FILE:22:8: invalid TOML: invalid table header"]),
        (
            "unknown top-level key",
            format!("{BASE}\n[deamon]\nstate_dir = \"/x\"\n"),
            vec!["FILE:22:2: deamon: unknown key `deamon` (did you mean `daemon`?)"],
        ),
        (
            "unknown daemon key",
            BASE.replace("state_dir =", "state_dri ="),
            vec!["FILE:3:1: daemon.state_dri: unknown key `state_dri` (did you mean `state_dir`?)"],
        ),
        (
            "unknown target key",
            BASE.replace("domain = \"www", "domian = \"www"),
            vec!["FILE:14:1: target[0].domian: unknown key `domian` (did you mean `domain`?)"],
        ),
        (
            "unknown target kind",
            BASE.replace("alibaba-cdn", "alibaba-cnd"),
            vec!["FILE:12:1: target[0].kind: unknown kind `alibaba-cnd` (did you mean `alibaba-cdn`?)"],
        ),
        (
            "deploy_to names a missing target",
            BASE.replace("deploy_to = [\"cdn\"]", "deploy_to = [\"cnd\"]"),
            vec!["FILE:20:14: certificate[0].deploy_to[0]: no target named `cnd` (did you mean `cdn`?)"],
        ),
        (
            "credentials of the wrong vendor",
            BASE.replace("provider = \"alibaba\"", "provider = \"qingcloud\"\nzone = \"pek3\""),
            vec!["FILE:14:1: target[0].credentials: `ali` is a qingcloud account; this kind needs a alibaba one"],
        ),
        (
            "missing credentials reference",
            BASE.replace("credentials = \"ali\"", "credentials = \"aly\""),
            vec!["FILE:13:1: target[0].credentials: no credentials named `aly` (did you mean `ali`?)"],
        ),
        (
            "bad cron",
            BASE.replace("state_dir = \"/var/lib/certkeeper\"", "state_dir = \"/var/lib/certkeeper\"\nscan_schedule = \"every hour\""),
            vec!["FILE:4:1: daemon.scan_schedule: cron expression `every hour` must have 5 fields"],
        ),
        (
            "bad window duration",
            BASE.replace("domain = \"www.example.com\"", "domain = \"www.example.com\"\nmaintenance_window = { schedule = \"0 2 * * *\", duration = \"2 hours\" }"),
            vec!["FILE:15:48: target[0].maintenance_window.duration: `2 hours` is not a duration"],
        ),
        (
            "invalid domain",
            BASE.replace("domains = [\"www.example.com\"]", "domains = [\"www..example.com\"]"),
            vec!["FILE:18:12: certificate[0].domains[0]: `www..example.com` is not a valid domain name"],
        ),
        (
            "missing secret",
            BASE.replace("access_key_secret_env = \"ALI_SECRET\"\n", ""),
            vec!["FILE:5:14: credentials.ali: missing `access_key_secret_env` or `access_key_secret_file`"],
        ),
        (
            "two secret sources",
            BASE.replace("access_key_secret_env = \"ALI_SECRET\"", "access_key_secret_env = \"ALI_SECRET\"\naccess_key_secret_file = \"ali\""),
            vec!["FILE:5:14: credentials.ali.access_key_secret: give only one of"],
        ),
        (
            "duplicate target name",
            format!("{BASE}\n[[target]]\nname = \"cdn\"\nkind = \"alibaba-vod\"\ncredentials = \"ali\"\ndomain = \"v.example.com\"\n"),
            vec!["FILE:23:1: target[1].name: duplicate target name `cdn`"],
        ),
        (
            "renew_ratio out of range",
            BASE.replace("deploy_to = [\"cdn\"]", "deploy_to = [\"cdn\"]\nrenew_ratio = 1.5"),
            vec!["FILE:21:1: certificate[0].renew_ratio: must be between 0 and 1"],
        ),
        (
            "both renew_before and renew_ratio",
            BASE.replace("deploy_to = [\"cdn\"]", "deploy_to = [\"cdn\"]\nrenew_ratio = 0.3\nrenew_before = \"30d\""),
            vec!["FILE:21:1: certificate[0].renew_ratio: give `renew_before` or `renew_ratio`, not both"],
        ),
        (
            "wrong value type",
            BASE.replace("state_dir = \"/var/lib/certkeeper\"", "state_dir = 5"),
            vec!["FILE:3:1: daemon.state_dir: invalid type: integer `5`"],
        ),
        (
            "unknown key type",
            BASE.replace("deploy_to = [\"cdn\"]", "deploy_to = [\"cdn\"]\nkey = \"rsa-1024\""),
            vec!["FILE:21:1: certificate[0].key: unknown variant `rsa-1024`"],
        ),
        (
            "bad metrics address",
            BASE.replace("state_dir = \"/var/lib/certkeeper\"", "state_dir = \"/var/lib/certkeeper\"\nmetrics_listen = \"localhost\""),
            vec!["FILE:4:1: daemon.metrics_listen: `localhost` is not an address and port"],
        ),
        (
            "policy without resources",
            format!("{BASE}\n[credentials.qc]\nprovider = \"qingcloud\"\naccess_key_id = \"Q\"\naccess_key_secret_env = \"Q\"\nzone = \"pek3\"\n\n[[policy]]\nname = \"ssl\"\nkind = \"qingcloud-mysql-plus-ssl\"\ncredentials = \"qc\"\nssl = true\n"),
            vec!["FILE:28:1: policy[0]: missing key `resources`"],
        ),
        (
            "relative state dir",
            BASE.replace("state_dir = \"/var/lib/certkeeper\"", "state_dir = \"state\""),
            vec!["FILE:3:1: daemon.state_dir: must be an absolute path"],
        ),
        (
            "unknown endpoint product",
            BASE.replace("access_key_id = \"AK\"", "access_key_id = \"AK\"\nendpoints = { cnd = \"http://127.0.0.1:8700\" }"),
            vec!["FILE:8:15: credentials.ali.endpoints.cnd: unknown product `cnd` for alibaba"],
        ),
    ]
}

#[test]
fn bad_configs_are_refused_with_located_messages() {
    let mut checked = 0;
    for (name, text, expected) in bad_configs() {
        let (code, _, stderr) = check(&text);
        assert_eq!(code, 78, "{name}: exit code; stderr: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        for fragment in expected {
            assert!(
                stderr.contains(fragment),
                "{name}: expected `{fragment}` in:\n{stderr}"
            );
        }
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} bad configs checked");
}

#[test]
fn wildcard_needs_dns01() {
    let text =
        BASE.replace(
            "source = { file = { cert = \"/x/c.pem\", key = \"/x/k.pem\" } }",
            "source = { acme = \"le\" }",
        )
        .replace(
            "domains = [\"www.example.com\"]",
            "domains = [\"*.example.com\"]",
        ) + "\n[acme.le]\ndirectory = \"https://acme.example/dir\"\n";
    let (code, _, stderr) = check(&text);
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.contains("FILE:18:12: certificate[0].domains[0]: `*.example.com` is a wildcard"),
        "{stderr}"
    );
}

#[test]
fn literal_secret_is_accepted_with_a_warning() {
    let (code, _, stderr) = check(&BASE.replace(
        "access_key_secret_env = \"ALI_SECRET\"",
        "access_key_secret = \"s3cr3t-value\"",
    ));
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("warning: FILE:8:1: credentials.ali.access_key_secret: secret written in the config file"), "{stderr}");
    assert!(!stderr.contains("s3cr3t-value"));
}

#[test]
fn missing_config_file_is_a_config_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_certkeeper"))
        .args(["check", "--config", "/nonexistent/certkeeper.toml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&output.stderr)
        .contains("/nonexistent/certkeeper.toml: cannot read"));
}

#[test]
fn usage_errors_exit_64() {
    let output = Command::new(env!("CARGO_BIN_EXE_certkeeper"))
        .arg("frobnicate")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
}

/// A config whose every secret, file and directory `check` can verify: the secret from
/// `CHECK_TEST_SECRET`, a file source and a state directory under `directory`.
fn resolvable(directory: &std::path::Path) -> String {
    BASE.replace("ALI_SECRET", "CHECK_TEST_SECRET")
        .replace(
            "state_dir = \"/var/lib/certkeeper\"",
            &format!("state_dir = {:?}", directory.join("state")),
        )
        .replace("/x/c.pem", &directory.join("c.pem").display().to_string())
        .replace("/x/k.pem", &directory.join("k.pem").display().to_string())
}

#[test]
fn check_resolves_what_run_will_need() {
    let directory = tempfile::tempdir().unwrap();
    std::fs::write(directory.path().join("c.pem"), "cert").unwrap();
    std::fs::write(directory.path().join("k.pem"), "key").unwrap();
    let text = resolvable(directory.path());
    let (code, stdout, stderr) = check_with(&text, &[], &[("CHECK_TEST_SECRET", "s")]);
    assert_eq!(code, 0, "{stderr}");
    assert!(!stdout.contains("--offline"), "{stdout}");
    assert!(
        !directory.path().join("state").exists(),
        "check creates nothing"
    );

    // The variable is not set.
    let (code, _, stderr) = check_with(&text, &[], &[]);
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.contains("FILE:8:1: credentials.ali.access_key_secret_env: environment variable CHECK_TEST_SECRET is not set"),
        "{stderr}"
    );
    // --offline reads no secret.
    let (code, _, stderr) = check_with(&text, &["--offline"], &[]);
    assert_eq!(code, 0, "{stderr}");

    // A relative secret file without $CREDENTIALS_DIRECTORY, then with it.
    let relative = text.replace(
        "access_key_secret_env = \"CHECK_TEST_SECRET\"",
        "access_key_secret_file = \"alibaba-secret\"",
    );
    let (code, _, stderr) = check_with(&relative, &[], &[]);
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.contains("FILE:8:1: credentials.ali.access_key_secret_file: \"alibaba-secret\" is relative and $CREDENTIALS_DIRECTORY is not set"),
        "{stderr}"
    );
    let credentials = directory.path().join("credentials");
    std::fs::create_dir(&credentials).unwrap();
    let credentials_env = credentials.display().to_string();
    let (code, _, stderr) = check_with(
        &relative,
        &[],
        &[("CREDENTIALS_DIRECTORY", credentials_env.as_str())],
    );
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "FILE:8:1: credentials.ali.access_key_secret_file: cannot read {} (\"alibaba-secret\" in $CREDENTIALS_DIRECTORY): ",
            credentials.join("alibaba-secret").display()
        )),
        "{stderr}"
    );
    std::fs::write(credentials.join("alibaba-secret"), "s\n").unwrap();
    let (code, _, stderr) = check_with(
        &relative,
        &[],
        &[("CREDENTIALS_DIRECTORY", credentials_env.as_str())],
    );
    assert_eq!(code, 0, "{stderr}");

    // A missing key file and a state directory that cannot be created: each named.
    std::fs::remove_file(directory.path().join("k.pem")).unwrap();
    let blocked = text.replace(
        &format!("state_dir = {:?}", directory.path().join("state")),
        &format!("state_dir = {:?}", directory.path().join("c.pem/state")),
    );
    let (code, _, stderr) = check_with(&blocked, &[], &[("CHECK_TEST_SECRET", "s")]);
    assert_eq!(code, 78, "{stderr}");
    assert!(
        stderr.contains(&format!(
            "certificate[0].source.file.key: cannot read {}",
            directory.path().join("k.pem").display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains("FILE:3:1: daemon.state_dir: ") && stderr.contains("is not a directory"),
        "{stderr}"
    );
    assert!(!stderr.contains("environment variable"), "{stderr}");
}

#[test]
fn a_config_that_manages_nothing_is_refused_unless_it_says_so() {
    for text in ["", "[daemon]\nstate_dir = \"/var/lib/certkeeper\"\n"] {
        let (code, _, stderr) = check(text);
        assert_eq!(code, 78, "{text:?}: {stderr}");
        assert!(
            stderr.contains("FILE: manages nothing: no [[certificate]] and no [[policy]]")
                && stderr.contains("allow_empty = true"),
            "{stderr}"
        );
    }
    let (code, stdout, stderr) = check("[daemon]\nallow_empty = true\n");
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("0 certificates"), "{stdout}");
}

/// Runs `certkeeper run` on `text` and waits (at most a minute: a guard against a daemon
/// that unexpectedly starts) for it to exit; its exit code and stderr.
fn run_exit(text: &str, envs: &[(&str, &str)]) -> (Option<i32>, String) {
    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("certkeeper.toml");
    std::fs::write(&path, text).unwrap();
    let stderr_path = directory.path().join("stderr.txt");
    let mut command = support::certkeeper_command();
    command
        .args(["run", "--config"])
        .arg(&path)
        .env_remove("CREDENTIALS_DIRECTORY")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap());
    for (key, value) in envs {
        command.env(key, value);
    }
    let mut child = support::ChildGuard(command.spawn().unwrap());
    let status = child.wait_timeout(Duration::from_secs(60));
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    (status.and_then(|status| status.code()), stderr)
}

#[test]
fn run_exits_78_on_secret_errors_and_74_on_an_unusable_state_directory() {
    let directory = tempfile::tempdir().unwrap();
    std::fs::write(directory.path().join("c.pem"), "cert").unwrap();
    std::fs::write(directory.path().join("k.pem"), "key").unwrap();
    let port = support::free_port();
    let text = resolvable(directory.path()).replace(
        "[credentials.ali]",
        &format!("metrics_listen = \"127.0.0.1:{port}\"\n\n[credentials.ali]"),
    );

    let (code, stderr) = run_exit(&text, &[]);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(
        stderr.contains("credentials.ali.access_key_secret_env: environment variable CHECK_TEST_SECRET is not set"),
        "{stderr}"
    );

    let relative = text.replace(
        "access_key_secret_env = \"CHECK_TEST_SECRET\"",
        "access_key_secret_file = \"alibaba-secret\"",
    );
    let (code, stderr) = run_exit(&relative, &[]);
    assert_eq!(code, Some(78), "{stderr}");
    assert!(
        stderr.contains("credentials.ali.access_key_secret_file: \"alibaba-secret\" is relative and $CREDENTIALS_DIRECTORY is not set"),
        "{stderr}"
    );

    let blocked = text.replace(
        &format!("state_dir = {:?}", directory.path().join("state")),
        &format!("state_dir = {:?}", directory.path().join("c.pem/state")),
    );
    let (code, stderr) = run_exit(&blocked, &[("CHECK_TEST_SECRET", "s")]);
    assert_eq!(code, Some(74), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "opening the state store in {}",
            directory.path().join("c.pem/state").display()
        )),
        "{stderr}"
    );
}
