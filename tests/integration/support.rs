//! Helpers shared by the integration tests: fixture paths and loading.

use kstrap::facts::HostFacts;
use std::path::PathBuf;

pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/facts")
        .join(format!("{name}.json"))
}

pub fn fixture(name: &str) -> HostFacts {
    match kstrap::facts::load(&fixture_path(name)) {
        Ok(f) => f,
        Err(e) => panic!("fixture {name}: {e}"),
    }
}

/// Every fixture file name (without .json), sorted.
pub fn all_fixtures() -> Vec<String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/facts");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| e.path().file_stem().and_then(|s| s.to_str()).map(str::to_string))
        .collect();
    names.sort();
    names
}
