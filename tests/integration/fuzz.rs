//! A bounded fuzz run of the parsers that read what users write: profiles, stacks (stack.yaml and
//! manifests), facts files and kubeconfigs. Each starts from a real, valid file and applies random
//! edits (cut, insert YAML/JSON punctuation and hostile values, duplicate or swap lines); every
//! result must parse or be refused with an error that names the file, never panic. A few hundred
//! cases per parser keep the run to seconds.

use proptest::prelude::*;
use std::path::Path;

/// Pieces that break YAML and JSON in the ways people and attackers do.
const TOKENS: &[&str] = &[
    ":",
    "\n",
    "- ",
    "---\n",
    "\t",
    "&a ",
    "*a",
    "{",
    "}",
    "[",
    "]",
    "\"",
    "'",
    "-1",
    "0",
    "99999999999999999999",
    "1e999",
    "~",
    "null",
    "true",
    "? ",
    "!!binary ",
    "#",
    ",",
    "\u{feff}",
    "\0",
    "nvidia.com/gpu: 1",
    "image: NGINX:1 bad",
    "x@sha256:zz",
    "name: name\nname: x",
    "<<: *a",
    "%YAML 1.2\n",
];

#[derive(Debug, Clone)]
enum Edit {
    Cut(usize, usize),
    Insert(usize, usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 0usize..40).prop_map(|(a, n)| Edit::Cut(a, n)),
        (any::<usize>(), 0..TOKENS.len()).prop_map(|(a, t)| Edit::Insert(a, t)),
        any::<usize>().prop_map(Edit::DuplicateLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
    ]
}

/// `seed` with `edits` applied (positions taken modulo the text's length, on char boundaries).
fn mutate(seed: &str, edits: &[Edit]) -> String {
    let mut text = seed.to_string();
    let boundary = |t: &str, at: usize| {
        let mut i = if t.is_empty() { 0 } else { at % (t.len() + 1) };
        while !t.is_char_boundary(i) {
            i -= 1;
        }
        i
    };
    for e in edits {
        match e {
            Edit::Cut(at, n) => {
                let a = boundary(&text, *at);
                let b = boundary(&text, (a + n).min(text.len()));
                if b > a {
                    text.replace_range(a..b, "");
                }
            }
            Edit::Insert(at, t) => {
                let a = boundary(&text, *at);
                text.insert_str(a, TOKENS[*t]);
            }
            Edit::DuplicateLine(i) | Edit::SwapLines(i, _) if text.lines().count() == 0 => {
                let _ = i;
            }
            Edit::DuplicateLine(i) => {
                let mut lines: Vec<&str> = text.lines().collect();
                let i = i % lines.len();
                lines.insert(i, lines[i]);
                text = lines.join("\n");
            }
            Edit::SwapLines(i, j) => {
                let mut lines: Vec<&str> = text.lines().collect();
                let (i, j) = (i % lines.len(), j % lines.len());
                lines.swap(i, j);
                text = lines.join("\n");
            }
        }
    }
    text
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn repo_file(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn profile_parser_never_panics_and_names_the_file(edits in prop::collection::vec(edit(), 1..6)) {
        let text = mutate(&repo_file("profiles/rtx-5090.yaml"), &edits);
        if let Err(e) = kstrap::profile::parse("fuzz/rtx-5090.yaml", Some("rtx-5090"), &text) {
            let msg = e.to_string();
            prop_assert!(msg.contains("fuzz/rtx-5090.yaml"), "{}", msg);
            prop_assert!(!msg.contains("DuplicateKeyPolicy") && !msg.contains("from_str_multiple"), "{}", msg);
        }
    }

    #[test]
    fn facts_parser_never_panics_and_names_the_file(edits in prop::collection::vec(edit(), 1..6)) {
        let seed = repo_file("tests/fixtures/facts/rtx5090-96gb.json");
        let text = mutate(&seed, &edits);
        if let Err(e) = kstrap::facts::from_json("fuzz/facts.json", &text) {
            prop_assert!(e.to_string().contains("fuzz/facts.json"), "{}", e);
        }
    }

    #[test]
    fn kubeconfig_merge_never_panics_and_names_the_file(edits in prop::collection::vec(edit(), 1..6)) {
        use kstrap::exec::kubeconfig::{kstrap_entries, merge, remove};
        let admin = "apiVersion: v1\nkind: Config\nclusters:\n- name: default\n  cluster:\n    server: https://127.0.0.1:6443\n    certificate-authority-data: Q0E=\ncontexts:\n- name: default\n  context:\n    cluster: default\n    user: default\ncurrent-context: default\nusers:\n- name: default\n  user:\n    client-certificate-data: Q0VSVA==\n    client-key-data: S0VZ\n";
        let existing = "apiVersion: v1\nkind: Config\nclusters:\n- name: work\n  cluster:\n    server: https://10.0.0.1:6443\ncontexts:\n- name: work\n  context:\n    cluster: work\n    user: work\ncurrent-context: work\nusers:\n- name: work\n  user:\n    token: abc\n";
        let broken_admin = mutate(admin, &edits);
        if let Err(e) = kstrap_entries(&broken_admin, "/etc/rancher/k3s/k3s.yaml", "kstrap") {
            prop_assert!(e.to_string().contains("/etc/rancher/k3s/k3s.yaml"), "{}", e);
        }
        let entries = kstrap_entries(admin, "admin", "kstrap").unwrap();
        let broken = mutate(existing, &edits);
        match merge(Some(&broken), "/home/u/.kube/config", &entries, "kstrap") {
            Err(e) => prop_assert!(e.to_string().contains("/home/u/.kube/config"), "{}", e),
            Ok(merged) => {
                // What kstrap wrote, it can read back and remove again.
                prop_assert!(remove(&merged, "/home/u/.kube/config", "kstrap").is_ok());
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn stack_loader_never_panics_and_names_the_file(
        stack_edits in prop::collection::vec(edit(), 0..4),
        manifest_edits in prop::collection::vec(edit(), 0..6),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("voice-ai");
        // The built-in voice-ai stack, copied, with its stack.yaml and one manifest mutated.
        copy(&Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/voice-ai"), &root);
        let stack_yaml = mutate(&repo_file("manifests/voice-ai/stack.yaml"), &stack_edits);
        std::fs::write(root.join("stack.yaml"), stack_yaml).unwrap();
        let manifest = root.join("20-ai/ollama.yaml");
        let text = mutate(&std::fs::read_to_string(&manifest).unwrap(), &manifest_edits);
        std::fs::write(&manifest, text).unwrap();
        if let Err(e) = kstrap::stack::load("voice-ai", Some(dir.path())) {
            let msg = e.to_string();
            prop_assert!(msg.contains("voice-ai/"), "{}", msg);
            prop_assert!(msg.contains("fix:"), "{}", msg);
        }
    }
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}
