//! Every command of README.md's ```sh blocks runs as written, in order, from a fresh
//! temporary directory that is not the repository, and does what the README says (exit code
//! and key output). So the README never needs the repository as its working directory and
//! never drifts from the binary.
//!
//! What differs from a reader's shell, and why:
//! - `cargo run --release --` and `cargo run --` are replaced by the binary cargo built for
//!   this test (`CARGO_BIN_EXE_certkeeper`): running cargo from a directory outside the
//!   repository is exactly what the README does not ask for, and a nested cargo build would
//!   fight the outer one for the target directory.
//! - The long-running `demo` (serving until Ctrl-C) is run with `--once` appended, which the
//!   README's first block shows; `$CERTKEEPER_DEMO_METRICS_LISTEN` gives each demo a free
//!   loopback port so parallel tests never collide on the documented default.
//! - `scripts/test` is not run: it is the whole suite (this test included, so it would
//!   recurse) and installs Pebble and promtool from the network.
//!
//! A command this test has no expectation for fails it: a new README command gets one here.

#![cfg(feature = "sim")]

mod support;

use std::process::Command;

/// The commands of every ```sh block, in order.
fn readme_commands() -> Vec<String> {
    let readme = include_str!("../README.md");
    let mut commands = Vec::new();
    let mut in_sh = false;
    for line in readme.lines() {
        let trimmed = line.trim();
        if in_sh {
            if trimmed == "```" {
                in_sh = false;
            } else if !trimmed.is_empty() && !trimmed.starts_with('#') {
                commands.push(trimmed.to_owned());
            }
        } else if trimmed == "```sh" {
            in_sh = true;
        }
    }
    commands
}

/// What a README command must do: its exit code and a piece of what it prints.
fn expectation(subcommand: &str) -> (i32, &'static str) {
    match subcommand {
        "demo" => (
            0,
            "targets in sync, 0 failing; policies: 2/2 resources compliant",
        ),
        "check" => (0, "certkeeper.toml: ok ("),
        "status" => (0, "CERTIFICATE"),
        "events" => (0, "  deploy.succeeded  "),
        other => panic!("README command `{other}` has no expectation in tests/readme_commands.rs"),
    }
}

#[test]
fn every_readme_command_runs_as_written_outside_the_repository() {
    let binary = env!("CARGO_BIN_EXE_certkeeper");
    let directory = tempfile::tempdir().unwrap();
    let repository = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    assert!(!directory.path().starts_with(repository));
    let mut ran = Vec::new();
    for command in readme_commands() {
        if command == "scripts/test" {
            continue;
        }
        let rest = command
            .strip_prefix("cargo run --release -- ")
            .or_else(|| command.strip_prefix("cargo run -- "))
            .unwrap_or_else(|| panic!("README command `{command}` is not `cargo run`"));
        let subcommand = rest.split_whitespace().next().unwrap_or_default();
        let mut line = format!("'{binary}' {rest}");
        if subcommand == "demo" && !rest.contains("--once") {
            line.push_str(" --once");
        }
        let output = Command::new("sh")
            .args(["-c", &line])
            .current_dir(directory.path())
            .env(
                "CERTKEEPER_DEMO_METRICS_LISTEN",
                format!("127.0.0.1:{}", support::free_port()),
            )
            .env_remove("CERTKEEPER_CONFIG")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let (code, shows) = expectation(subcommand);
        assert_eq!(
            output.status.code(),
            Some(code),
            "`{command}`\n{stdout}\n{stderr}"
        );
        assert!(
            stdout.contains(shows),
            "`{command}` should print `{shows}`:\n{stdout}\n{stderr}"
        );
        ran.push(subcommand.to_owned());
    }
    for needed in ["demo", "check", "status", "events"] {
        assert!(
            ran.iter().any(|subcommand| subcommand == needed),
            "the README shows `{needed}`: {ran:?}"
        );
    }
}
