//! `certkeeper check` through the binary: the example config passes, and each bad config is
//! refused with exit code 78 and a message naming file:line:column, the key path and, where
//! one applies, the nearest valid key.

use std::process::Command;

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

fn check(text: &str) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("certkeeper.toml");
    std::fs::write(&path, text).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_certkeeper"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
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
