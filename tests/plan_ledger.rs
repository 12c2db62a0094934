//! `certkeeper plan` reads the deployment ledger as a pass does (`engine::decide`): a
//! target the pass would leave alone because it is parked says so, instead of promising a
//! deploy the daemon will not make.

mod support;

use std::os::unix::fs::PermissionsExt;

#[test]
fn plan_names_a_parked_target() {
    let directory = tempfile::tempdir().unwrap();
    // A world-writable directory is refused with class `invalid`: the target parks.
    let tls = directory.path().join("tls");
    std::fs::create_dir(&tls).unwrap();
    std::fs::set_permissions(&tls, std::fs::Permissions::from_mode(0o777)).unwrap();
    let target = format!("kind = \"file\"\ndirectory = \"{}\"", tls.display());
    let (config, _) = support::write_local_ca_config_with(directory.path(), "", &target);

    let renewed = support::certkeeper(&config, &["renew", "internal"], &[]);
    let stdout = String::from_utf8_lossy(&renewed.stdout);
    assert_eq!(renewed.status.code(), Some(1), "{renewed:?}");
    assert!(stdout.contains("files: parked: invalid"), "{stdout}");

    let planned = support::certkeeper(&config, &["plan", "--json"], &[]);
    let view: serde_json::Value = serde_json::from_slice(&planned.stdout).unwrap();
    let row = &view["targets"][0];
    assert_eq!(row["target"], "files", "{view}");
    assert_eq!(row["action"], "deploy", "{view}");
    assert!(
        row["detail"]
            .as_str()
            .is_some_and(|detail| detail.starts_with("parked after an invalid failure")),
        "{view}"
    );

    // A new configuration unparks it: the plan no longer says parked.
    std::fs::write(
        &config,
        std::fs::read_to_string(&config).unwrap() + "reload_timeout = \"10s\"\n",
    )
    .unwrap();
    let replanned = support::certkeeper(&config, &["plan", "--json"], &[]);
    let view: serde_json::Value = serde_json::from_slice(&replanned.stdout).unwrap();
    assert_eq!(view["targets"][0]["action"], "deploy", "{view}");
    assert_eq!(
        view["targets"][0]["detail"],
        serde_json::Value::Null,
        "{view}"
    );
}
