//! The generated manual pages render with `man -l` without warnings and document every
//! subcommand; the generated bash completion completes subcommands in a real bash.

use std::path::Path;
use std::process::{Command, Output};

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

/// The visible subcommands, as `certkeeper --help` lists them (so a new subcommand is
/// checked without editing this test).
fn visible_subcommands() -> Vec<String> {
    let help = String::from_utf8(certkeeper(&["--help"]).stdout).unwrap();
    let commands = help
        .split("Commands:\n")
        .nth(1)
        .expect("--help lists commands")
        .split("\n\n")
        .next()
        .unwrap();
    let names: Vec<String> = commands
        .lines()
        .filter(|line| line.starts_with("  ") && !line.starts_with("   "))
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_owned)
        .collect();
    assert!(names.len() >= 10, "too few subcommands parsed: {names:?}");
    names
}

/// `man -l PAGE` as plain text; fails on any groff/man warning.
fn render_page(page: &Path) -> String {
    let output = Command::new("man")
        .args(["--warnings", "-E", "UTF-8", "-l"])
        .arg(page)
        .env("MANWIDTH", "100")
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .env("LC_ALL", "C.UTF-8")
        .output()
        .expect("man (man-db) is installed");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "man -l {page:?} failed: {stderr}");
    assert!(
        stderr.trim().is_empty(),
        "man -l {page:?} warned:\n{stderr}"
    );
    String::from_utf8(output.stdout).unwrap()
}

#[test]
fn man_pages_render_without_warnings_and_cover_every_subcommand() {
    let directory = tempfile::tempdir().unwrap();
    let pages = directory.path().join("man");
    certkeeper(&["generate", "man", pages.to_str().unwrap()]);

    let command_page = render_page(&pages.join("certkeeper.1"));
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

    let config_page = render_page(&pages.join("certkeeper.toml.5"));
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

/// Runs the generated bash completion for the words typed so far and returns its replies.
fn bash_complete(script: &Path, words: &[&str]) -> Vec<String> {
    let line = words.join(" ");
    let words_array = words
        .iter()
        .map(|word| format!("'{word}'"))
        .collect::<Vec<_>>()
        .join(" ");
    let program = format!(
        "source '{}' || exit 3\n\
         complete -p certkeeper || exit 4\n\
         COMP_WORDS=({words_array}); COMP_CWORD={}; COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}\n\
         _certkeeper certkeeper '{}' '{}'\n\
         printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        words.len() - 1,
        words[words.len() - 1],
        words[words.len() - 2],
    );
    let output = Command::new("bash")
        .args(["--norc", "--noprofile", "-c", &program])
        .output()
        .expect("bash is installed");
    assert!(
        output.status.success(),
        "bash completion failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .skip(1) // `complete -p`'s line
        .map(str::to_owned)
        .collect()
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
