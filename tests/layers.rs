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

/// The product files under `src/cloud/`: those that declare a registry entry (`PRODUCT`) or
/// implement a product's settings, as (module path such as `alibaba::cdn`, text).
fn product_files() -> Vec<(String, String)> {
    let cloud = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cloud");
    let mut files = Vec::new();
    rust_files(&cloud, &mut files);
    let mut products = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let declares = [
            "pub const PRODUCT:",
            "TargetProduct for",
            "PolicyProduct for",
        ]
        .iter()
        .any(|mark| text.contains(mark));
        if file.ends_with("registry.rs") || !declares {
            continue;
        }
        let module = file
            .strip_prefix(&cloud)
            .unwrap()
            .with_extension("")
            .components()
            .map(|part| part.as_os_str().to_str().unwrap().to_owned())
            .collect::<Vec<_>>()
            .join("::");
        products.push((module, text));
    }
    products.sort();
    products
}

#[test]
fn the_registry_lists_every_product_file() {
    let registry = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src/cloud/registry.rs"),
    )
    .unwrap();
    let products = product_files();
    // The six products of today at least; a new file only adds to them.
    assert!(
        products.len() >= 6,
        "{:?}",
        products.iter().map(|p| &p.0).collect::<Vec<_>>()
    );
    for (module, text) in &products {
        assert!(
            text.contains("pub const PRODUCT:"),
            "src/cloud/{module}.rs implements a product but declares no `PRODUCT` entry"
        );
        assert!(
            registry.contains(&format!("{module}::PRODUCT,")),
            "src/cloud/registry.rs does not list `{module}::PRODUCT`"
        );
    }
}

#[test]
fn the_config_and_the_build_name_no_product() {
    // Parsing, validating and constructing go through the registry: neither file names a
    // product module outside its tests.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let products = product_files();
    for file in ["src/config/mod.rs", "src/app/build.rs"] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap();
        for (module, _) in &products {
            // `vendor::product` also as `product::` inside a grouped import; a product
            // beside the vendors (`file`) only by its full path (`source::file` is another).
            let mut mentions = vec![format!("cloud::{module}")];
            if let Some((_, name)) = module.rsplit_once("::") {
                mentions.push(format!("{name}::"));
            }
            for mention in mentions {
                assert!(
                    !code.contains(&mention),
                    "{file} names the product `{module}` (`{mention}`)"
                );
            }
        }
    }
}
