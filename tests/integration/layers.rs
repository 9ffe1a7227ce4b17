//! The layer rule, checked on the source so it cannot regress: api uses
//! engine, engine uses actors, actors use store, providers and routing, and
//! everything uses domain; nothing imports upward, and modules of one layer
//! do not import each other.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Top-level modules of `src/`, lowest layer first. A module may use
/// modules of a strictly lower layer, and itself.
const LAYERS: &[&[&str]] = &[
    &["domain"],
    &["clock", "telemetry"],
    &["resilience", "providers", "store"],
    &["routing"],
    &["config", "error"],
    // The span export (feature `otlp`): masks with config's mask_urls.
    &["otlp"],
    &["messages"],
    &["actors"],
    &["engine"],
    &["api"],
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|layer| layer.contains(&module))
}

fn rust_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read src") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, found);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            found.push(path);
        }
    }
}

/// The modules `text` names as `crate::<module>`.
fn crate_paths(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            names.push(name);
        }
        rest = after;
    }
    names
}

#[test]
fn nothing_imports_upward() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = BTreeMap::new();
    for file in &files {
        let relative = file.strip_prefix(&src).expect("under src");
        let first = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .expect("a path");
        let module = first.trim_end_matches(".rs");
        // The binary (`main.rs` and its `cli/` subcommands) sits above
        // every layer and reaches the library only through `payments::`.
        if module == "lib" || module == "main" || module == "cli" {
            continue;
        }
        let own = layer_of(module)
            .unwrap_or_else(|| panic!("src/{first} is in no layer: add it to LAYERS"));
        let text = std::fs::read_to_string(file).expect("read source");
        for used in crate_paths(&text) {
            let Some(layer) = layer_of(&used) else {
                continue;
            };
            if used != module && layer >= own {
                violations
                    .entry(relative.display().to_string())
                    .or_insert_with(Vec::new)
                    .push(used);
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports that go up or across layers (file: modules): {violations:#?}"
    );
}

#[test]
fn the_check_sees_an_upward_import() {
    // The check above must be able to fail: a file in `store` naming
    // `crate::actors` is a violation by its rule.
    let used = crate_paths("use crate::actors::registry;\nfn f() { crate::domain::x(); }");
    assert_eq!(used, ["actors", "domain"]);
    let (store, actors) = (layer_of("store"), layer_of("actors"));
    assert!(actors > store, "actors sit above store");
}
