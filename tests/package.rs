//! The Debian package (`scripts/package-deb`, built here around the binary cargo built for
//! the tests): its metadata, paths and modes, `lintian`, and the installed result as an
//! operator meets it: installed with `dpkg --root` into a scratch root (as root; otherwise
//! unpacked with `dpkg-deb -x`), the conffile passes `check` as an unprivileged user like the
//! service's dynamic user, both man pages render, the bash completion completes, and the
//! installed unit verifies. Also: the unit and the example config agree on how secrets
//! arrive, and the unit's reload refuses a config that does not validate.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const CONFFILE: &str = "etc/certkeeper/certkeeper.toml";
const UNIT: &str = "usr/lib/systemd/system/certkeeper.service";

fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run(command: &mut Command) -> Output {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{command:?} failed ({:?}):\n{}{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn stdout(command: &mut Command) -> String {
    String::from_utf8(run(command).stdout).unwrap()
}

/// The package, built once per test process.
fn package() -> &'static Path {
    static PACKAGE: OnceLock<PathBuf> = OnceLock::new();
    PACKAGE.get_or_init(|| {
        // One directory, emptied first, so repeated runs do not pile up packages.
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("package-deb");
        let _ = std::fs::remove_dir_all(&out);
        let printed = stdout(
            Command::new(repository().join("scripts/package-deb"))
                .args(["--binary", env!("CARGO_BIN_EXE_certkeeper"), "--out"])
                .arg(&out),
        );
        let deb = PathBuf::from(printed.trim());
        assert!(deb.is_file(), "scripts/package-deb printed {printed:?}");
        deb
    })
}

fn running_as_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The package installed into a fresh scratch root.
fn install(root: &Path) {
    if running_as_root() {
        for directory in ["info", "updates", "triggers"] {
            std::fs::create_dir_all(root.join("var/lib/dpkg").join(directory)).unwrap();
        }
        std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
        // --force-depends: the scratch root has no libc6 package (the binary runs on the
        // host's libc).
        run(Command::new("dpkg")
            .arg(format!("--root={}", root.display()))
            .args(["--force-depends", "--log=/dev/null", "-i"])
            .arg(package()));
        let conffiles =
            std::fs::read_to_string(root.join("var/lib/dpkg/info/certkeeper.conffiles")).unwrap();
        assert_eq!(conffiles.trim(), format!("/{CONFFILE}"));
    } else {
        run(Command::new("dpkg-deb").arg("-x").arg(package()).arg(root));
    }
}

/// Runs the installed binary as `nobody` (no supplementary groups, like a dynamic user) when
/// this test is root, else as the unprivileged user running it.
fn as_service_user(root: &Path, args: &[&str]) -> Command {
    let binary = root.join("usr/bin/certkeeper");
    let mut command = if running_as_root() {
        let mut command = Command::new("setpriv");
        command
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
            .arg(binary);
        command
    } else {
        Command::new(binary)
    };
    command.args(args).env_remove("CREDENTIALS_DIRECTORY");
    command
}

#[test]
fn package_metadata_paths_and_modes() {
    let info = stdout(Command::new("dpkg-deb").arg("-I").arg(package()));
    for expected in [
        "Package: certkeeper",
        &format!("Version: {}", env!("CARGO_PKG_VERSION")),
        "Depends: libc6 (>= 2.",
        "Section: admin",
    ] {
        assert!(info.contains(expected), "{expected} missing from:\n{info}");
    }
    let conffiles = stdout(
        Command::new("dpkg-deb")
            .args(["--info"])
            .arg(package())
            .arg("conffiles"),
    );
    assert_eq!(conffiles.trim(), format!("/{CONFFILE}"));

    let listing = stdout(Command::new("dpkg-deb").arg("-c").arg(package()));
    let entry = |path: &str| -> (String, String) {
        let line = listing
            .lines()
            .find(|line| line.ends_with(&format!(" ./{path}")))
            .unwrap_or_else(|| panic!("{path} not in the package:\n{listing}"));
        let mut fields = line.split_whitespace();
        let mode = fields.next().unwrap().to_owned();
        let owner = fields.next().unwrap().to_owned();
        (mode, owner)
    };
    for (path, mode) in [
        ("usr/bin/certkeeper", "-rwxr-xr-x"),
        (UNIT, "-rw-r--r--"),
        (CONFFILE, "-rw-r--r--"),
        // Secrets for LoadCredential=: the service manager (root) reads them, nobody else.
        ("etc/certkeeper/credentials/", "drwx------"),
        ("usr/share/man/man1/certkeeper.1.gz", "-rw-r--r--"),
        ("usr/share/man/man5/certkeeper.toml.5.gz", "-rw-r--r--"),
        (
            "usr/share/bash-completion/completions/certkeeper",
            "-rw-r--r--",
        ),
        ("usr/share/zsh/vendor-completions/_certkeeper", "-rw-r--r--"),
        (
            "usr/share/fish/vendor_completions.d/certkeeper.fish",
            "-rw-r--r--",
        ),
        ("usr/share/doc/certkeeper/copyright", "-rw-r--r--"),
        (
            "usr/share/doc/certkeeper/examples/certkeeper.example.toml",
            "-rw-r--r--",
        ),
        (
            "usr/share/doc/certkeeper/examples/certkeeper-reload-nginx.path",
            "-rw-r--r--",
        ),
        (
            "usr/share/doc/certkeeper/examples/sim-seed.example.toml",
            "-rw-r--r--",
        ),
    ] {
        assert_eq!(
            entry(path),
            (mode.to_owned(), "root/root".to_owned()),
            "{path}"
        );
    }
    // The state directory is systemd's (StateDirectory= with DynamicUser=), not the package's.
    assert!(!listing.contains("./var/lib/certkeeper"), "{listing}");
    // No maintainer scripts: installing enables and starts nothing.
    let control = stdout(Command::new("dpkg-deb").arg("-I").arg(package()));
    for script in ["postinst", "preinst", "prerm", "postrm"] {
        assert!(!control.contains(script), "{script} shipped:\n{control}");
    }
}

#[test]
fn package_is_lintian_clean() {
    // Every override is explained in packaging/deb/lintian-overrides.
    let output = Command::new("lintian")
        .args(["--fail-on", "error,warning"])
        .arg(package())
        .output()
        .expect("lintian is installed (scripts/test installs it)");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "lintian failed:\n{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !text
            .lines()
            .any(|line| line.starts_with("E:") || line.starts_with("W:")),
        "{text}"
    );
}

#[test]
fn installed_package_checks_renders_completes_and_verifies() {
    let scratch = tempfile::tempdir().unwrap();
    let root = scratch.path().join("root");
    install(&root);

    // The installed files are what the repository holds.
    assert_eq!(
        std::fs::read_to_string(root.join(UNIT)).unwrap(),
        std::fs::read_to_string(repository().join("systemd/certkeeper.service")).unwrap()
    );
    assert_eq!(
        std::fs::read_to_string(root.join(CONFFILE)).unwrap(),
        std::fs::read_to_string(repository().join("packaging/deb/certkeeper.toml")).unwrap()
    );

    // The conffile validates as an unprivileged user: offline as installed...
    let conffile = root.join(CONFFILE);
    let checked = run(as_service_user(&root, &["check", "--offline", "--config"]).arg(&conffile));
    let text = String::from_utf8_lossy(&checked.stdout);
    assert!(
        text.contains("certkeeper.toml: ok (0 certificates"),
        "{text}"
    );
    // ...and fully (secrets, files, a writable state directory) with the state directory
    // systemd would create for the service (StateDirectory=) standing in for it.
    let state = scratch.path().join("state");
    std::fs::create_dir(&state).unwrap();
    if running_as_root() {
        run(Command::new("chown").arg("nobody:nogroup").arg(&state));
        run(Command::new("chmod").arg("0755").arg(scratch.path()));
    }
    let config = std::fs::read_to_string(&conffile).unwrap().replace(
        "state_dir = \"/var/lib/certkeeper\"",
        &format!("state_dir = \"{}\"", state.display()),
    );
    let full = scratch.path().join("certkeeper.toml");
    std::fs::write(&full, config).unwrap();
    let checked = run(as_service_user(&root, &["check", "--config"]).arg(&full));
    let text = String::from_utf8_lossy(&checked.stdout);
    assert!(
        text.contains(": ok (") && !text.contains("--offline"),
        "{text}"
    );

    // Both man pages render from their installed, gzipped files.
    let command_page = support::render_man_page(&root.join("usr/share/man/man1/certkeeper.1.gz"));
    assert!(command_page.contains("COMMANDS"), "{command_page}");
    let config_page =
        support::render_man_page(&root.join("usr/share/man/man5/certkeeper.toml.5.gz"));
    assert!(config_page.contains("[daemon]"), "{config_page}");

    // The installed bash completion completes subcommands.
    let completion = root.join("usr/share/bash-completion/completions/certkeeper");
    let offered = support::bash_complete(&completion, &["certkeeper", ""]);
    for subcommand in support::visible_subcommands() {
        assert!(
            offered.contains(&subcommand),
            "{subcommand} not in {offered:?}"
        );
    }
    assert_eq!(
        support::bash_complete(&completion, &["certkeeper", "stat"]),
        ["status"]
    );

    // The installed unit verifies, its Documentation= man pages found in the package.
    let unit = std::fs::read_to_string(root.join(UNIT)).unwrap().replace(
        "/usr/bin/certkeeper",
        root.join("usr/bin/certkeeper").to_str().unwrap(),
    );
    let unit_path = scratch.path().join("certkeeper.service");
    std::fs::write(&unit_path, unit).unwrap();
    assert_units_verify(&[&unit_path], Some(&root.join("usr/share/man")));
}

/// `systemd-analyze verify` of `units` succeeds without a word about them; `man_path` is
/// where their Documentation= pages are (None: not checked).
fn assert_units_verify(units: &[&Path], man_path: Option<&Path>) {
    let mut command = Command::new("systemd-analyze");
    command.arg("verify").args(units);
    match man_path {
        Some(path) => command.env("MANPATH", path),
        None => command.arg("--man=no"),
    };
    let verify = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    let names: Vec<String> = units
        .iter()
        .map(|unit| unit.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(
        verify.status.success() && !names.iter().any(|name| text.contains(name.as_str())),
        "systemd-analyze verify {names:?}:\n{text}"
    );
}

/// The unit's `LoadCredential=` lines as (ID, PATH).
fn unit_credentials(unit: &str) -> Vec<(String, String)> {
    unit.lines()
        .filter_map(|line| line.trim().strip_prefix("LoadCredential="))
        .filter_map(|value| value.split_once(':'))
        .map(|(id, path)| (id.to_owned(), path.to_owned()))
        .collect()
}

#[test]
fn example_config_secrets_arrive_through_the_units_credentials() {
    let unit = std::fs::read_to_string(repository().join("systemd/certkeeper.service")).unwrap();
    // The environment carries tuning only (the allocator's arena count), never a secret.
    let environment: Vec<&str> = unit
        .lines()
        .filter_map(|line| line.trim().strip_prefix("Environment="))
        .collect();
    assert!(
        environment
            .iter()
            .all(|assignment| assignment.starts_with("MALLOC_ARENA_MAX=")),
        "the unit passes something other than allocator tuning through the environment: \
         {environment:?}"
    );
    assert!(
        !unit.contains("EnvironmentFile="),
        "the unit passes secrets through an environment file"
    );
    let credentials = unit_credentials(&unit);
    assert_eq!(
        credentials,
        [(
            "certkeeper".to_owned(),
            "/etc/certkeeper/credentials".to_owned()
        )]
    );

    // Lay out $CREDENTIALS_DIRECTORY as systemd does for a directory: ID_FILENAME.
    let example =
        std::fs::read_to_string(repository().join("config/certkeeper.example.toml")).unwrap();
    let parsed: toml::Table = toml::from_str(&example).unwrap();
    let accounts = parsed["credentials"].as_table().unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let etc_credentials = scratch.path().join("etc-credentials");
    let credentials_directory = scratch.path().join("credentials");
    std::fs::create_dir(&etc_credentials).unwrap();
    std::fs::create_dir(&credentials_directory).unwrap();
    let mut names = Vec::new();
    for (account, settings) in accounts {
        for (key, value) in settings.as_table().unwrap() {
            assert!(
                !key.ends_with("_env"),
                "credentials.{account}.{key}: the unit passes no environment"
            );
            if let Some(name) = key.strip_suffix("_file").and(value.as_str()) {
                let file = name
                    .strip_prefix("certkeeper_")
                    .unwrap_or_else(|| panic!("{account}.{key} = {name:?} is no unit credential"));
                std::fs::write(etc_credentials.join(file), format!("secret-of-{account}")).unwrap();
                names.push(name.to_owned());
            }
        }
    }
    assert_eq!(
        names.len(),
        accounts.len(),
        "every account's secret is a file"
    );

    // The example's accounts, alone in a config, pass the full check once the files
    // systemd would load are there, and fail naming the missing one when they are not.
    let mut config = toml::Table::new();
    let mut daemon = toml::Table::new();
    let state = scratch.path().join("state");
    daemon.insert("state_dir".into(), state.display().to_string().into());
    daemon.insert("allow_empty".into(), true.into());
    config.insert("daemon".into(), daemon.into());
    config.insert("credentials".into(), accounts.clone().into());
    let config_path = scratch.path().join("certkeeper.toml");
    std::fs::write(&config_path, toml::to_string(&config).unwrap()).unwrap();
    let credentials_env = credentials_directory.to_str().unwrap().to_owned();

    let missing = support::certkeeper(
        &config_path,
        &["check"],
        &[("CREDENTIALS_DIRECTORY", &credentials_env)],
    );
    assert_eq!(missing.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains(&names[0]), "{stderr}");

    for entry in std::fs::read_dir(&etc_credentials).unwrap() {
        let entry = entry.unwrap();
        let id = format!("certkeeper_{}", entry.file_name().to_string_lossy());
        std::fs::copy(entry.path(), credentials_directory.join(id)).unwrap();
    }
    let passed = support::certkeeper(
        &config_path,
        &["check"],
        &[("CREDENTIALS_DIRECTORY", &credentials_env)],
    );
    assert_eq!(
        passed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&passed.stderr)
    );
}

#[test]
fn unit_reload_waits_for_the_daemons_answer() {
    let unit = std::fs::read_to_string(repository().join("systemd/certkeeper.service")).unwrap();
    let reload: Vec<&str> = unit
        .lines()
        .filter_map(|line| line.trim().strip_prefix("ExecReload="))
        .collect();
    // One command that fails when the daemon refuses the file (tests/config_reload.rs runs
    // it against a daemon); a bare `kill -HUP` would report success whatever happened.
    assert_eq!(
        reload,
        ["/usr/bin/certkeeper reload --config /etc/certkeeper/certkeeper.toml"],
    );
}

/// The Dockerfile's instructions, continuation lines joined.
fn dockerfile_instructions() -> Vec<String> {
    let text = std::fs::read_to_string(repository().join("Dockerfile")).unwrap();
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || trimmed.is_empty() {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(trimmed);
                instructions.push(std::mem::take(&mut current));
            }
        }
    }
    instructions
}

#[test]
fn dockerfile_caches_dependencies_labels_the_version_and_runs_unprivileged() {
    let instructions = dockerfile_instructions();
    let position = |prefix: &str| {
        instructions
            .iter()
            .position(|instruction| instruction.starts_with(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` in the Dockerfile: {instructions:#?}"))
    };
    // The dependency layer: manifests copied and built before any source is copied.
    let manifests = position("COPY Cargo.toml Cargo.lock");
    let dependencies = position("RUN mkdir src");
    let sources = position("COPY src ");
    assert!(manifests < dependencies && dependencies < sources);
    assert!(instructions[dependencies].contains("cargo build --release --locked"));
    // Stale stub artifacts would make cargo skip the real build.
    assert!(instructions[dependencies].contains(".fingerprint/certkeeper-*"));

    // Every COPY from the build context names something the repository has.
    for instruction in &instructions {
        let Some(arguments) = instruction.strip_prefix("COPY ") else {
            continue;
        };
        if arguments.starts_with("--from") {
            continue;
        }
        let parts: Vec<&str> = arguments.split_whitespace().collect();
        for source in &parts[..parts.len() - 1] {
            assert!(repository().join(source).exists(), "COPY {source}: missing");
        }
    }

    // The OCI version label is the crate's version.
    assert!(instructions.contains(&format!("ARG VERSION={}", env!("CARGO_PKG_VERSION"))));
    let labels = &instructions[position("LABEL ")];
    for label in [
        "org.opencontainers.image.version=\"${VERSION}\"",
        "org.opencontainers.image.title=",
        "org.opencontainers.image.source=",
        "org.opencontainers.image.licenses=\"Apache-2.0\"",
    ] {
        assert!(labels.contains(label), "{label} missing: {labels}");
    }

    // Non-root, numerically (Kubernetes' runAsNonRoot checks the number).
    let user = instructions
        .iter()
        .rev()
        .find_map(|i| i.strip_prefix("USER "))
        .unwrap();
    let uid: u32 = user.split(':').next().unwrap().parse().unwrap();
    assert_ne!(uid, 0);
    assert_eq!(
        instructions.last().map(String::as_str),
        Some("CMD [\"run\"]")
    );
    assert!(instructions.contains(&"ENTRYPOINT [\"/usr/bin/certkeeper-entrypoint\"]".to_owned()));
}

/// The container's entrypoint with its absolute paths pointed at this checkout's files.
fn entrypoint_in(directory: &Path) -> PathBuf {
    let script = std::fs::read_to_string(repository().join("packaging/container/entrypoint"))
        .unwrap()
        .replace(
            "/usr/share/certkeeper/default.toml",
            repository()
                .join("packaging/container/default.toml")
                .to_str()
                .unwrap(),
        )
        .replace(
            "/usr/bin/certkeeper ",
            &format!("{} ", env!("CARGO_BIN_EXE_certkeeper")),
        );
    let path = directory.join("entrypoint");
    std::fs::write(&path, script).unwrap();
    path
}

#[test]
fn container_entrypoint_runs_the_default_config_with_a_message_when_none_is_mounted() {
    let scratch = tempfile::tempdir().unwrap();
    let entrypoint = entrypoint_in(scratch.path());
    let missing = scratch.path().join("not-mounted.toml");
    let output = run(Command::new("sh")
        .arg(&entrypoint)
        .args(["check", "--offline"])
        .env("CERTKEEPER_CONFIG", &missing));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("no config at {}", missing.display()))
            && stderr.contains("manages nothing"),
        "{stderr}"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("default.toml: ok (0 certificates"),
        "{stdout}"
    );

    // A mounted config is used as is, without the message.
    let mounted = scratch.path().join("certkeeper.toml");
    std::fs::write(
        &mounted,
        "[daemon]\nstate_dir = \"/var/lib/certkeeper\"\nallow_empty = true\n",
    )
    .unwrap();
    let output = run(Command::new("sh")
        .arg(&entrypoint)
        .args(["check", "--offline"])
        .env("CERTKEEPER_CONFIG", &mounted));
    assert!(
        output.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("certkeeper.toml: ok ("));

    // The default listens where a probe or Prometheus outside the container can reach it.
    let default: toml::Table = toml::from_str(
        &std::fs::read_to_string(repository().join("packaging/container/default.toml")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        default["daemon"]["metrics_listen"].as_str(),
        Some("0.0.0.0:9464")
    );
}

#[test]
fn nginx_reload_path_unit_example_verifies_and_watches_the_example_target() {
    let scratch = tempfile::tempdir().unwrap();
    for name in [
        "certkeeper-reload-nginx.path",
        "certkeeper-reload-nginx.service",
    ] {
        // verify checks that ExecStart's binary exists; this machine has no nginx.
        let unit = std::fs::read_to_string(repository().join("systemd").join(name))
            .unwrap()
            .replace("/usr/sbin/nginx", "/bin/true");
        std::fs::write(scratch.path().join(name), unit).unwrap();
    }
    assert_units_verify(
        &[
            &scratch.path().join("certkeeper-reload-nginx.path"),
            &scratch.path().join("certkeeper-reload-nginx.service"),
        ],
        None,
    );

    // The watched file is the one the file target renames into place last, after the key
    // (src/cloud/file.rs), in the example config's file target directory.
    let path_unit =
        std::fs::read_to_string(repository().join("systemd/certkeeper-reload-nginx.path")).unwrap();
    let example: toml::Table = toml::from_str(
        &std::fs::read_to_string(repository().join("config/certkeeper.example.toml")).unwrap(),
    )
    .unwrap();
    let directory = example["target"]
        .as_array()
        .unwrap()
        .iter()
        .find(|target| target["kind"].as_str() == Some("file"))
        .and_then(|target| target["directory"].as_str())
        .unwrap();
    assert!(
        path_unit.contains(&format!("PathChanged={directory}/cert.pem")),
        "{path_unit}"
    );
}

/// The README's config for trying the installed service against the simulator.
#[cfg(feature = "sim")]
fn readme_simulator_config() -> String {
    let readme = std::fs::read_to_string(repository().join("README.md")).unwrap();
    let after = readme
        .split("To try the installed service against the simulator")
        .nth(1)
        .expect("the README's simulator recipe");
    after
        .split("```toml\n")
        .nth(1)
        .and_then(|block| block.split("```").next())
        .expect("a toml block in the simulator recipe")
        .to_owned()
}

#[cfg(feature = "sim")]
#[test]
fn readme_simulator_config_runs_under_the_units_credentials_and_shows_the_fleet() {
    let seed = std::fs::read_to_string(repository().join("config/sim-seed.example.toml")).unwrap();
    let sim = support::start_sim(&seed);
    let scratch = tempfile::tempdir().unwrap();
    let port = support::free_port();
    // What the README says to put in place, with this test's directories and ports.
    let config = readme_simulator_config()
        .replace(
            "state_dir = \"/var/lib/certkeeper\"",
            &format!("state_dir = \"{}\"", scratch.path().join("state").display()),
        )
        .replace("127.0.0.1:9464", &format!("127.0.0.1:{port}"))
        .replace("http://127.0.0.1:8700", &sim.url);
    let config_path = scratch.path().join("certkeeper.toml");
    std::fs::write(&config_path, config).unwrap();
    // The unit's LoadCredential=certkeeper:/etc/certkeeper/credentials, for the README's
    // /etc/certkeeper/credentials/sim-secret.
    let credentials = scratch.path().join("credentials");
    std::fs::create_dir(&credentials).unwrap();
    std::fs::write(
        credentials.join("certkeeper_sim-secret"),
        "testAccessKeySecret",
    )
    .unwrap();
    let credentials_env = credentials.to_str().unwrap();

    let checked = support::certkeeper(
        &config_path,
        &["check"],
        &[("CREDENTIALS_DIRECTORY", credentials_env)],
    );
    assert_eq!(
        checked.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    let _daemon =
        support::spawn_daemon(&config_path, &[("CREDENTIALS_DIRECTORY", credentials_env)]);
    support::wait_for(
        "both README targets in sync on /metrics",
        std::time::Duration::from_secs(60),
        || {
            let Some((200, metrics)) = support::http_get(port, "/metrics") else {
                return false;
            };
            [
                r#"certkeeper_target_in_sync{kind="alibaba-cdn",target="cdn-www"}"#,
                r#"certkeeper_target_in_sync{kind="alibaba-vod",target="vod-video"}"#,
            ]
            .iter()
            .all(|series| support::metric_value(&metrics, series) == Some(1.0))
        },
    );
}

/// Whether a process named `name` runs in process group `group` (from /proc/PID/stat).
fn group_runs(group: u32, name: &str) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // PID (COMM) STATE PPID PGRP ...: COMM may hold spaces, so split after its ')'.
        let Some((head, rest)) = stat.rsplit_once(") ") else {
            return false;
        };
        let comm = head.split_once(" (").map(|(_, comm)| comm);
        let pgrp = rest.split_whitespace().nth(2);
        comm == Some(name) && pgrp == Some(group.to_string().as_str())
    })
}

/// The shell script of docs/sidecar.md's `web` container (the `args: - |` block).
fn sidecar_web_script() -> String {
    let doc = std::fs::read_to_string(repository().join("docs/sidecar.md")).unwrap();
    let mut lines = doc.lines().skip_while(|line| line.trim() != "- |").skip(1);
    let mut script = String::new();
    for line in lines.by_ref() {
        match line.strip_prefix("          ") {
            Some(body) => {
                script.push_str(body);
                script.push('\n');
            }
            None => break,
        }
    }
    assert!(
        script.contains("exec nginx"),
        "no web script in docs/sidecar.md"
    );
    script
}

#[test]
fn sidecar_web_script_waits_for_the_first_certificate_and_reloads_on_change() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    use std::time::{Duration, SystemTime};

    let scratch = tempfile::tempdir().unwrap();
    let tls = scratch.path().join("tls");
    std::fs::create_dir(&tls).unwrap();
    // A stand-in nginx on PATH: logs its arguments; `-g` is the server, which stays up.
    let bin = scratch.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let log = scratch.path().join("nginx.log");
    std::fs::write(
        bin.join("nginx"),
        format!(
            "#!/bin/sh\necho \"$*\" >>'{}'\n[ \"$1\" = -g ] && exec sleep 120\nexit 0\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(bin.join("nginx"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let script = sidecar_web_script()
        .replace(
            "tls=/etc/nginx/tls/live",
            &format!("tls='{}'", tls.display()),
        )
        .replace("interval=30", "interval=0.2");
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap());
    // The script, the watcher and the stand-in server, stopped together by group id.
    struct Group(std::process::Child);
    impl Drop for Group {
        fn drop(&mut self) {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.0.id())])
                .status();
            let _ = self.0.wait();
        }
    }
    let script_group = Group(
        Command::new("sh")
            .args(["-c", &script])
            .env("PATH", path)
            .process_group(0)
            .spawn()
            .unwrap(),
    );
    let logged = || std::fs::read_to_string(&log).unwrap_or_default();

    // Without a certificate, the script polls (a `sleep` of its group runs) and nginx is
    // not started.
    support::wait_for(
        "the script to poll for cert.pem",
        Duration::from_secs(30),
        || group_runs(script_group.0.id(), "sleep"),
    );
    assert_eq!(logged(), "", "nginx started before the certificate");

    std::fs::write(tls.join("key.pem"), "key").unwrap();
    std::fs::write(tls.join("cert.pem"), "cert").unwrap();
    support::wait_for("nginx to start", Duration::from_secs(30), || {
        logged().contains("-g daemon off;")
    });
    assert!(!logged().contains("-s reload"), "{}", logged());

    // A deploy renames a new cert.pem into place: nginx is tested, then reloaded.
    let replacement = tls.join(".cert.pem.new");
    std::fs::write(&replacement, "cert 2").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&replacement)
        .unwrap()
        .set_modified(SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    std::fs::rename(&replacement, tls.join("cert.pem")).unwrap();
    support::wait_for("nginx to reload", Duration::from_secs(30), || {
        logged().contains("-s reload")
    });
    let log_text = logged();
    let test = log_text.find("-t -q").expect("nginx -t before the reload");
    assert!(test < log_text.find("-s reload").unwrap(), "{log_text}");
}
