//! The imports point one way (ARCHITECTURE.md): the vendor layer (`src/cloud/`) and the
//! config (`src/config/`) never import the engine, the leaves (`window`, `ratelimit`,
//! `retry`, `error`, `secret`, `telemetry`) import neither the engine nor a vendor, and the
//! orchestration (converge, apply a policy) lives in the engine, not beside the vendor
//! traits. A line that breaks this fails here with its file and line.

use std::path::{Path, PathBuf};

fn rust_files(directory: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(directory).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            found.push(path);
        }
    }
}

/// `file:line: text` for every code line (comments left out) under `paths` that names one
/// of `forbidden`.
fn offending(paths: &[&str], forbidden: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for path in paths {
        let path = root.join(path);
        if path.is_dir() {
            rust_files(&path, &mut files);
        } else {
            files.push(path);
        }
    }
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for (number, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            if forbidden.iter().any(|name| code.contains(name)) {
                found.push(format!("{}:{}: {}", file.display(), number + 1, code));
            }
        }
    }
    found
}

#[test]
fn cloud_and_config_never_import_the_engine() {
    let found = offending(&["src/cloud", "src/config"], &["crate::engine"]);
    assert!(
        found.is_empty(),
        "imports against the layers:\n{}",
        found.join("\n")
    );
}

#[test]
fn leaves_import_neither_the_engine_nor_a_vendor() {
    let found = offending(
        &[
            "src/window.rs",
            "src/ratelimit.rs",
            "src/retry.rs",
            "src/error.rs",
            "src/secret.rs",
            "src/telemetry",
        ],
        &["crate::engine", "crate::cloud", "crate::app"],
    );
    assert!(
        found.is_empty(),
        "imports against the layers:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_check_sees_a_wrong_way_import() {
    // The check itself: the engine does import the vendor layer, so scanning it must find
    // lines, or the two tests above could pass by reading nothing.
    assert!(!offending(&["src/engine"], &["crate::cloud"]).is_empty());
}

#[test]
fn the_cloud_traits_module_holds_no_free_function() {
    // `src/cloud/mod.rs` declares the traits and the types they exchange; deciding when to
    // write and verifying the result (`converge`, `apply_policy`) is the engine's.
    let text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cloud/mod.rs"))
            .unwrap();
    let free_functions: Vec<&str> = text
        .lines()
        .filter(|line| {
            ["fn ", "pub fn ", "async fn ", "pub async fn "]
                .iter()
                .any(|start| line.starts_with(start))
        })
        .collect();
    assert!(
        free_functions.is_empty(),
        "free functions in src/cloud/mod.rs:\n{}",
        free_functions.join("\n")
    );
    // The check itself: the trait methods it skips are there to skip.
    assert!(text.contains("    async fn observe(&self)"));
}
