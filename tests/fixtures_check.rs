//! Guard: no source or test reads the workspace's shared folder at run time. A clean clone
//! (CI, a release build) has only this crate, so vectors and seed facts live under
//! `tests/fixtures/` with their source named in `tests/fixtures/README.md`.

use std::path::{Path, PathBuf};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Paths that only exist next to this crate in the development workspace. Spelled in pieces
/// so that this file does not trip its own check.
fn outside_paths() -> [String; 2] {
    [format!("..{}", "/shared"), format!("/work{}", "/shared")]
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("listing {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files_under(&path, out);
        } else {
            out.push(path);
        }
    }
}

/// True when the hit at byte `at` of a Rust `line` sits in a comment: the line is a comment,
/// or a `//` precedes the hit outside a string literal (an even count of quotes before it).
fn in_rust_comment(line: &str, at: usize) -> bool {
    let trimmed = line.trim_start();
    // `*` alone would also match a dereference (`*slot = ...`): only a block comment's
    // continuation line, `* text`, counts.
    if ["//", "/*", "* ", "*/"]
        .iter()
        .any(|p| trimmed.starts_with(p))
        || trimmed == "*"
    {
        return true;
    }
    let before = &line[..at];
    before
        .match_indices("//")
        .any(|(slash, _)| before[..slash].matches('"').count().is_multiple_of(2))
}

/// Every `file:line` of `text` that names an outside path in code (Rust) or at all (other
/// text files, such as configs a test loads). Markdown is prose about provenance: skipped.
fn offending_lines(path: &Path, text: &str, needles: &[String]) -> Vec<String> {
    let is_rust = path.extension().is_some_and(|e| e == "rs");
    let mut found = Vec::new();
    for (number, line) in text.lines().enumerate() {
        for needle in needles {
            let in_code = line
                .match_indices(needle.as_str())
                .any(|(at, _)| !is_rust || !in_rust_comment(line, at));
            if in_code {
                let shown = path.strip_prefix(ROOT).unwrap_or(path);
                found.push(format!(
                    "{}:{}: {}",
                    shown.display(),
                    number + 1,
                    line.trim()
                ));
            }
        }
    }
    found
}

#[test]
fn no_source_or_test_reads_the_shared_workspace_folder() {
    let needles = outside_paths();
    let mut files = Vec::new();
    for dir in ["src", "tests"] {
        files_under(&Path::new(ROOT).join(dir), &mut files);
    }
    assert!(files.len() > 20, "walked too few files: {}", files.len());
    let mut offenders = Vec::new();
    for path in &files {
        if path.extension().is_some_and(|e| e == "md") {
            continue;
        }
        // Binary fixtures (DER, keys) are not text and cannot name a path we read.
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        offenders.extend(offending_lines(path, &text, &needles));
    }
    assert!(
        offenders.is_empty(),
        "these read the workspace's shared folder, absent on a clean clone; copy the facts \
         into tests/fixtures/ instead:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_comment_rule_tells_code_from_comments() {
    let needles = outside_paths();
    let path = Path::new("x.rs");
    let hits = |text: &str| offending_lines(path, text, &needles).len();
    let dir = &needles[0];
    assert_eq!(hits(&format!("//! See `{dir}/reference`.")), 0);
    assert_eq!(hits(&format!("    /// from {dir}/seeds")), 0);
    assert_eq!(hits(&format!(" * {dir}/x in a block comment")), 0);
    assert_eq!(hits(&format!("let a = 1; // was {dir}/x")), 0);
    assert_eq!(hits(&format!("let p = \"{dir}/vectors/x.json\";")), 1);
    assert_eq!(hits(&format!("let p = \"http://h/{dir}/x\";")), 1);
    assert_eq!(hits(&format!("concat!(env!(\"D\"), \"/{dir}/x\")")), 1);
    assert_eq!(hits(&format!("*slot = \"{dir}/x\";")), 1);
    assert_eq!(
        offending_lines(Path::new("x.toml"), &format!("p = '{dir}'"), &needles).len(),
        1
    );
}
