//! The imports point one way (ARCHITECTURE.md): the vendor layer (`src/cloud/`) and the
//! config (`src/config/`) never import the engine, the vendor layer never imports the
//! config, the leaves (`window`, `ratelimit`, `retry`, `error`, `secret`, `settings`,
//! `telemetry`) import neither the engine nor a vendor, no two folders import each other
//! (directly or around a circle), and the orchestration (converge, apply a policy) lives in
//! the engine, not beside the vendor traits. A line that breaks this fails here with its
//! file and line.

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
            "src/settings",
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

#[test]
fn cloud_never_imports_the_config() {
    // The config sits above the vendor layer: it reads the file and knows the products
    // through `cloud::registry`; the products read their settings through `settings` and
    // their accounts through `cloud::account`.
    let found = offending(&["src/cloud"], &["crate::config"]);
    assert!(
        found.is_empty(),
        "imports against the layers:\n{}",
        found.join("\n")
    );
}

/// The top-level modules of the crate: `src/X.rs` and `src/X/` (not `lib` or `main`).
fn top_level_modules(source: &Path) -> std::collections::BTreeSet<String> {
    let mut modules = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(source).unwrap() {
        let path = entry.unwrap().path();
        let name = if path.is_dir() {
            path.file_name().unwrap().to_str().unwrap().to_owned()
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            path.file_stem().unwrap().to_str().unwrap().to_owned()
        } else {
            continue;
        };
        if name != "lib" && name != "main" {
            modules.insert(name);
        }
    }
    modules
}

/// The top-level modules a code line names: `crate::X` and the `X` of `crate::{X, ...}`.
fn modules_named(code: &str) -> Vec<String> {
    let mut named = Vec::new();
    for (start, _) in code.match_indices("crate::") {
        let rest = &code[start + "crate::".len()..];
        let mut heads = Vec::new();
        if let Some(group) = rest.strip_prefix('{') {
            // The heads of a grouped import, at depth one of the braces.
            let mut depth = 1;
            let mut head_next = true;
            for (offset, character) in group.char_indices() {
                match character {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 1 => head_next = true,
                    _ if head_next && (character.is_alphanumeric() || character == '_') => {
                        heads.push(&group[offset..]);
                        head_next = false;
                    }
                    _ => {}
                }
                if depth == 0 {
                    break;
                }
            }
        } else {
            heads.push(rest);
        }
        for head in heads {
            let end = head
                .find(|character: char| !(character.is_alphanumeric() || character == '_'))
                .unwrap_or(head.len());
            named.push(head[..end].to_owned());
        }
    }
    named
}

/// Who imports whom among the top-level modules, from the code lines (comments left out)
/// of every file under `src/`: module -> (imported module -> first `file:line` naming it).
fn folder_imports(
    source: &Path,
) -> std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>> {
    let modules = top_level_modules(source);
    let mut files = Vec::new();
    rust_files(source, &mut files);
    let mut graph = std::collections::BTreeMap::<_, std::collections::BTreeMap<_, _>>::new();
    for file in files {
        let relative = file.strip_prefix(source).unwrap();
        let first = relative.components().next().unwrap();
        let first = Path::new(first.as_os_str());
        let module = first.file_stem().unwrap().to_str().unwrap().to_owned();
        if !modules.contains(&module) {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        for (number, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            for named in modules_named(code) {
                if named != module && modules.contains(&named) {
                    graph
                        .entry(module.clone())
                        .or_default()
                        .entry(named)
                        .or_insert_with(|| format!("{}:{}", file.display(), number + 1));
                }
            }
        }
    }
    graph
}

/// One cycle of `graph` as `a -> b (file:line) -> ... -> a`, if there is one.
fn a_cycle(
    graph: &std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
) -> Option<String> {
    // Depth-first search; a back edge to a module on the current path closes a cycle.
    fn visit(
        module: &str,
        graph: &std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
        path: &mut Vec<String>,
        done: &mut std::collections::BTreeSet<String>,
    ) -> Option<String> {
        if let Some(start) = path.iter().position(|on_path| on_path == module) {
            let mut cycle: Vec<String> = path[start..].to_vec();
            cycle.push(module.to_owned());
            let steps: Vec<String> = cycle
                .windows(2)
                .map(|pair| format!("{} -> {} ({})", pair[0], pair[1], graph[&pair[0]][&pair[1]]))
                .collect();
            return Some(steps.join("\n"));
        }
        if done.contains(module) {
            return None;
        }
        path.push(module.to_owned());
        for imported in graph.get(module).into_iter().flat_map(|edges| edges.keys()) {
            if let Some(cycle) = visit(imported, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(module.to_owned());
        None
    }
    let mut done = std::collections::BTreeSet::new();
    graph
        .keys()
        .find_map(|module| visit(module, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_import_circle_between_folders() {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let graph = folder_imports(&source);
    // The check itself: the graph was read (the engine imports the vendor layer, the
    // config the registry) and grouped imports are seen.
    assert!(graph["engine"].contains_key("cloud"), "{graph:?}");
    assert!(graph["config"].contains_key("cloud"), "{graph:?}");
    assert_eq!(
        modules_named("use crate::{cloud::registry, config::{self, Config}, window};"),
        ["cloud", "config", "window"]
    );
    if let Some(cycle) = a_cycle(&graph) {
        panic!("an import circle between folders:\n{cycle}");
    }
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    let mut graph = std::collections::BTreeMap::new();
    for (from, to) in [
        ("config", "cloud"),
        ("cloud", "settings"),
        ("cloud", "config"),
    ] {
        graph
            .entry(from.to_owned())
            .or_insert_with(std::collections::BTreeMap::new)
            .insert(to.to_owned(), format!("{from}.rs:1"));
    }
    let cycle = a_cycle(&graph).unwrap();
    assert!(cycle.contains("cloud -> config (cloud.rs:1)"), "{cycle}");
    assert!(cycle.contains("config -> cloud (config.rs:1)"), "{cycle}");
    graph.get_mut("cloud").unwrap().remove("config");
    assert_eq!(a_cycle(&graph), None);
}
