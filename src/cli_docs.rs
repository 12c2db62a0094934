//! Manual pages and shell completions, generated from the sources they document so they
//! cannot drift: `certkeeper(1)` and the completions from the clap definition of the
//! command line, `certkeeper.toml(5)` from `config/certkeeper.example.toml` (the documented
//! example, which `check --offline` validates in the tests).
//!
//! Reached through the hidden `certkeeper generate` subcommand, which packaging runs
//! (`scripts/package-deb`).

use clap_complete::Shell;
use roff::{bold, italic, roman, Inline, Roff};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The example configuration the file-format page is generated from.
const EXAMPLE_CONFIG: &str = include_str!("../config/certkeeper.example.toml");

/// The man pages `write_man_pages` writes, by file name.
pub const MAN_PAGES: [&str; 2] = ["certkeeper.1", "certkeeper.toml.5"];

/// Writes `certkeeper.1` and `certkeeper.toml.5` into `directory` (created if missing) and
/// returns their paths.
pub fn write_man_pages(command: clap::Command, directory: &Path) -> std::io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(directory)?;
    let command_page = directory.join(MAN_PAGES[0]);
    let mut file = std::fs::File::create(&command_page)?;
    render_command_page(command, &mut file)?;
    file.sync_all()?;
    let config_page = directory.join(MAN_PAGES[1]);
    std::fs::write(&config_page, render_config_page(EXAMPLE_CONFIG))?;
    Ok(vec![command_page, config_page])
}

/// Writes the completion script for `shell` to `out`.
pub fn write_completions(mut command: clap::Command, shell: Shell, out: &mut dyn Write) {
    let name = command.get_name().to_owned();
    clap_complete::generate(shell, &mut command, name, out);
}

/// `certkeeper(1)`: clap_mangen's title, name, synopsis, description and global options,
/// then one subsection per visible subcommand with its usage, description and arguments
/// (clap_mangen alone would only list the subcommands and point to pages we do not ship).
fn render_command_page(command: clap::Command, out: &mut dyn Write) -> std::io::Result<()> {
    let mut command = command.disable_help_subcommand(true);
    command.build();
    let man = clap_mangen::Man::new(command.clone());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;

    let mut roff = Roff::new();
    roff.control("SH", ["COMMANDS"]);
    for subcommand in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
        let usage = subcommand.clone().render_usage().to_string();
        let usage = usage.strip_prefix("Usage: ").unwrap_or(&usage).to_owned();
        roff.control("SS", [subcommand.get_name()]);
        roff.text([bold(usage)]);
        if let Some(about) = subcommand.get_long_about().or(subcommand.get_about()) {
            roff.control("PP", []);
            roff.text([roman(about.to_string())]);
        }
        let arguments = subcommand
            .get_arguments()
            .filter(|argument| !argument.is_hide_set() && !argument.is_global_set())
            .filter(|argument| !matches!(argument.get_id().as_str(), "help" | "version"));
        for argument in arguments {
            roff.control("TP", []);
            roff.text(argument_label(argument));
            let mut help = argument
                .get_long_help()
                .or(argument.get_help())
                .map(|help| help.to_string())
                .unwrap_or_default();
            let defaults: Vec<String> = argument
                .get_default_values()
                .iter()
                .map(|value| value.to_string_lossy().into_owned())
                .collect();
            if !defaults.is_empty() && argument.get_action().takes_values() {
                help.push_str(&format!(" [default: {}]", defaults.join(", ")));
            }
            if let Some(variable) = argument.get_env() {
                help.push_str(&format!(" [env: {}]", variable.to_string_lossy()));
            }
            roff.text([roman(help)]);
        }
    }
    roff.control("SH", ["EXIT STATUS"]);
    roff.text([roman(
        "0 success; 1 failure; 64 usage error; 69 a service is unavailable; 70 internal \
         error; 74 I/O error; 78 configuration error (sysexits(3)). \
         plan exits 2 when a pass would change something.",
    )]);
    roff.control("SH", ["FILES"]);
    roff.control("TP", []);
    roff.text([italic("/etc/certkeeper/certkeeper.toml")]);
    roff.text([roman("The configuration, see certkeeper.toml(5).")]);
    roff.control("TP", []);
    roff.text([italic("/var/lib/certkeeper/state.db")]);
    roff.text([roman(
        "The store: certificate versions, keys, the deployment ledger and the event log.",
    )]);
    roff.control("SH", ["SEE ALSO"]);
    roff.text([
        bold("certkeeper.toml"),
        roman("(5), "),
        bold("systemd.exec"),
        roman("(5)"),
    ]);
    let version = command.get_version().unwrap_or_default().to_owned();
    roff.control("SH", ["VERSION"]);
    roff.text([roman(version)]);
    roff.to_writer(out)
}

/// `--name <VALUE>` / `-f, --follow` / `<CERTIFICATE>` in bold and italics.
fn argument_label(argument: &clap::Arg) -> Vec<Inline> {
    let value_name = argument
        .get_value_names()
        .and_then(|names| names.first())
        .map(|name| name.to_string())
        .unwrap_or_else(|| argument.get_id().as_str().to_uppercase());
    if argument.is_positional() {
        return vec![italic(format!("<{value_name}>"))];
    }
    let mut label = Vec::new();
    if let Some(short) = argument.get_short() {
        label.push(bold(format!("-{short}")));
        label.push(roman(", "));
    }
    if let Some(long) = argument.get_long() {
        label.push(bold(format!("--{long}")));
    }
    if argument.get_action().takes_values() {
        label.push(roman(" "));
        label.push(italic(format!("<{value_name}>")));
    }
    label
}

/// `certkeeper.toml(5)` from the commented example: the comments before the first table
/// describe the file, each table header becomes a subsection (grouped in sections by the
/// header's first name), each `key = value` an item carrying the comments above it and its
/// trailing comment. Commented-out settings (`# key = value`) stay verbatim, unfilled.
pub fn render_config_page(example: &str) -> String {
    let mut roff = Roff::new();
    roff.control(
        "TH",
        [
            "CERTKEEPER.TOML",
            "5",
            "",
            concat!("certkeeper ", env!("CARGO_PKG_VERSION")),
            "File Formats",
        ],
    );
    roff.control("SH", ["NAME"]);
    roff.text([roman("certkeeper.toml - certkeeper configuration file")]);
    roff.control("SH", ["SYNOPSIS"]);
    roff.text([italic("/etc/certkeeper/certkeeper.toml")]);
    roff.control("SH", ["DESCRIPTION"]);
    roff.text([roman(
        "certkeeper reads one TOML file (--config, $CERTKEEPER_CONFIG, default \
         /etc/certkeeper/certkeeper.toml). The sections below are the annotated example \
         shipped as certkeeper.example.toml; values are examples.",
    )]);

    let mut comments: Vec<&str> = Vec::new();
    let mut section = String::new();
    for line in example.lines() {
        let trimmed = line.trim();
        if let Some(comment) = trimmed.strip_prefix('#') {
            comments.push(comment.strip_prefix(' ').unwrap_or(comment));
        } else if trimmed.is_empty() {
            if !comments.is_empty() {
                // A paragraph of its own, not the body of the item above.
                roff.control("PP", []);
                emit_comments(&mut roff, &comments, false);
                comments.clear();
            }
        } else if trimmed.starts_with('[') {
            let name = trimmed.trim_matches(|c| c == '[' || c == ']');
            let group = name.split('.').next().unwrap_or(name).to_uppercase();
            if group != section {
                roff.control("SH", [group.as_str()]);
                section = group;
            }
            roff.control("SS", [trimmed]);
            emit_comments(&mut roff, &comments, false);
            comments.clear();
        } else {
            let (setting, trailing) = split_trailing_comment(trimmed);
            let (key, value) = setting.split_once('=').unwrap_or((setting, ""));
            roff.control("TP", []);
            roff.text([bold(key.trim()), roman(" = "), roman(value.trim())]);
            if let Some(trailing) = trailing {
                comments.insert(0, trailing);
            }
            emit_comments(&mut roff, &comments, true);
            comments.clear();
        }
    }
    emit_comments(&mut roff, &comments, false);

    roff.control("SH", ["SECRETS"]);
    roff.text([roman(
        "Under systemd, hand secrets over with LoadCredential= (see systemd.exec(5)) and name \
         them with *_file keys: a relative *_file is read from $CREDENTIALS_DIRECTORY. *_env \
         keys name environment variables, which `run` reads once and removes.",
    )]);
    roff.control("SH", ["SEE ALSO"]);
    roff.text([
        bold("certkeeper"),
        roman("(1), "),
        bold("systemd.exec"),
        roman("(5)"),
    ]);
    roff.render()
}

/// Prose comment lines are filled into a paragraph; commented-out settings (`key = value`
/// lines that parse as TOML) are kept line by line, indented. Prose after such a block
/// stays in the item's body when the comments belong to an item.
fn emit_comments(roff: &mut Roff, comments: &[&str], in_item: bool) {
    let mut prose: Vec<&str> = Vec::new();
    let mut index = 0;
    let mut after_settings = false;
    let flush = |roff: &mut Roff, prose: &mut Vec<&str>, after_settings: bool| {
        if !prose.is_empty() {
            if after_settings {
                roff.control(if in_item { "IP" } else { "PP" }, []);
            }
            roff.text([roman(prose.join(" "))]);
            prose.clear();
        }
    };
    while index < comments.len() {
        if is_setting(comments[index]) {
            flush(roff, &mut prose, after_settings);
            roff.control("IP", []);
            roff.control("nf", []);
            while index < comments.len() && is_setting(comments[index]) {
                roff.text([roman(comments[index])]);
                index += 1;
            }
            roff.control("fi", []);
            after_settings = true;
        } else {
            prose.push(comments[index]);
            index += 1;
        }
    }
    flush(roff, &mut prose, after_settings);
}

/// `endpoint = "http://127.0.0.1:8700"`: a commented-out setting, not a sentence that
/// happens to contain ` = `.
fn is_setting(comment: &str) -> bool {
    comment.contains(" = ") && comment.parse::<toml::Table>().is_ok()
}

/// Splits `value  # comment` at the first `#` outside a string.
fn split_trailing_comment(line: &str) -> (&str, Option<&str>) {
    let mut in_string = false;
    for (index, character) in line.char_indices() {
        match character {
            '"' => in_string = !in_string,
            '#' if !in_string => {
                let comment = line[index + 1..].trim();
                return (line[..index].trim_end(), Some(comment));
            }
            _ => {}
        }
    }
    (line, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_comments_split_outside_strings_only() {
        assert_eq!(
            split_trailing_comment(r##"a = "x#y"   # why"##),
            (r#"a = "x#y""#, Some("why"))
        );
        assert_eq!(split_trailing_comment("a = 1"), ("a = 1", None));
    }

    #[test]
    fn every_key_of_the_example_is_documented_in_the_config_page() {
        let page = render_config_page(EXAMPLE_CONFIG);
        let example: toml::Table = toml::from_str(EXAMPLE_CONFIG).unwrap();
        let mut keys = Vec::new();
        for (name, value) in &example {
            let tables: Vec<&toml::Table> = match value {
                toml::Value::Table(table) if name == "daemon" => vec![table],
                toml::Value::Table(table) => table
                    .values()
                    .filter_map(|inner| inner.as_table())
                    .collect(),
                toml::Value::Array(array) => {
                    array.iter().filter_map(|inner| inner.as_table()).collect()
                }
                _ => Vec::new(),
            };
            for table in tables {
                keys.extend(table.keys().cloned());
            }
        }
        assert!(keys.len() > 40, "too few keys found: {keys:?}");
        for key in keys {
            let item = format!("\\fB{}\\fR = ", key);
            assert!(page.contains(&item), "{key} missing from the page");
        }
    }
}
