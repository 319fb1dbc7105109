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

/// A stack `name` in a fresh temp dir (the `--stack-dir`): a namespace stage `base`, then a stage
/// `app` holding `app_yaml`; `extra` is appended to stack.yaml (secrets, profiles).
pub fn two_stage_stack(name: &str, description: &str, app_yaml: &str, extra: &str) -> tempfile::TempDir {
    let stacks = tempfile::tempdir().unwrap();
    let root = stacks.path().join(name);
    std::fs::create_dir_all(root.join("00-base")).unwrap();
    std::fs::create_dir_all(root.join("10-app")).unwrap();
    std::fs::write(
        root.join("stack.yaml"),
        format!(
            "name: {name}\ndescription: {description}\nnamespace: {name}\nstages:\n  - {{dir: 00-base, name: base, timeout_s: 30, description: namespace}}\n  - {{dir: 10-app, name: app, timeout_s: 30, description: app}}\n{extra}"
        ),
    )
    .unwrap();
    std::fs::write(
        root.join("00-base/ns.yaml"),
        format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n"),
    )
    .unwrap();
    std::fs::write(root.join("10-app/app.yaml"), app_yaml).unwrap();
    stacks
}
