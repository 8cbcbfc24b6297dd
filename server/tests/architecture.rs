//! The map in docs/ARCHITECTURE.md names every module of the three
//! crates, so that it stays true as modules come and go.

use std::{fs, path::Path};

/// The modules directly under `src` of `krate`: its files and folders,
/// but the crate roots and the binaries.
fn modules(krate: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(krate.join("src"))
        .expect("a src folder")
        .filter_map(Result::ok)
        .map(|e| {
            e.file_name()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_owned()
        })
        .filter(|n| !["lib", "main", "bin"].contains(&n.as_str()))
        .collect();
    names.sort();
    names
}

#[test]
fn every_module_is_on_the_map() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let map = fs::read_to_string(root.join("docs/ARCHITECTURE.md")).expect("the map");
    // Each crate's own section: from its heading to the next.
    let section = |name: &str| {
        let start = map.find(&format!("\n## {name}\n")).expect(name);
        let rest = &map[start + 1..];
        let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
        rest[..end].to_owned()
    };
    let mut missing = Vec::new();
    for krate in ["common", "server", "client"] {
        let section = section(krate);
        for module in modules(&root.join(krate)) {
            if !section.contains(&format!("`{module}`")) {
                missing.push(format!("{krate}::{module}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "not on docs/ARCHITECTURE.md: {missing:?}"
    );
}
