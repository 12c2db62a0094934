//! The generated manual pages render with `man -l` without warnings and document every
//! subcommand; the generated bash completion completes subcommands in a real bash.

mod support;

use std::process::{Command, Output};
use support::{bash_complete, render_man_page, visible_subcommands};

fn certkeeper(args: &[&str]) -> Output {
    let output = Command::new(env!("CARGO_BIN_EXE_certkeeper"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "certkeeper {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[test]
fn man_pages_render_without_warnings_and_cover_every_subcommand() {
    let directory = tempfile::tempdir().unwrap();
    let pages = directory.path().join("man");
    certkeeper(&["generate", "man", pages.to_str().unwrap()]);

    let command_page = render_man_page(&pages.join("certkeeper.1"));
    assert!(command_page.contains("certkeeper(1)"), "{command_page}");
    let commands = command_page
        .split("\nCOMMANDS")
        .nth(1)
        .expect("a COMMANDS section");
    for subcommand in visible_subcommands() {
        assert!(
            commands.contains(&format!("\n   {subcommand}\n")),
            "no subsection for `{subcommand}` in:\n{commands}"
        );
    }
    assert!(
        commands.contains("--offline"),
        "check's option is documented"
    );
    assert!(
        !commands.contains("generate"),
        "the hidden subcommand stays hidden"
    );

    let config_page = render_man_page(&pages.join("certkeeper.toml.5"));
    for expected in [
        "CERTKEEPER.TOML(5)",
        "[daemon]",
        "state_dir = \"/var/lib/certkeeper\"",
        "[[target]]",
        "reload_timeout",
        "LoadCredential=",
    ] {
        assert!(
            config_page.contains(expected),
            "{expected} missing:\n{config_page}"
        );
    }
}

#[test]
fn bash_completion_completes_subcommands_and_their_options() {
    let directory = tempfile::tempdir().unwrap();
    let script = directory.path().join("certkeeper.bash");
    std::fs::write(
        &script,
        certkeeper(&["generate", "completions", "bash"]).stdout,
    )
    .unwrap();

    let all = bash_complete(&script, &["certkeeper", ""]);
    for subcommand in visible_subcommands() {
        assert!(
            all.contains(&subcommand),
            "`{subcommand}` not offered: {all:?}"
        );
    }

    assert_eq!(bash_complete(&script, &["certkeeper", "chec"]), ["check"]);
    let check_options = bash_complete(&script, &["certkeeper", "check", "--"]);
    assert!(
        check_options.contains(&"--offline".to_owned()),
        "{check_options:?}"
    );
}

#[test]
fn zsh_and_fish_completions_name_every_subcommand() {
    for shell in ["zsh", "fish"] {
        let script =
            String::from_utf8(certkeeper(&["generate", "completions", shell]).stdout).unwrap();
        for subcommand in visible_subcommands() {
            assert!(
                script.contains(&subcommand),
                "{shell} completion lacks `{subcommand}`"
            );
        }
    }
}
