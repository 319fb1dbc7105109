//! Bad and hostile input, table-driven: every case runs the binary as a user would and asserts
//! the exit code the README documents, the message (one snapshot per group of cases), that with
//! `-o json` stdout holds exactly one JSON document, that no secret of the fixtures shows, and
//! that nothing was written: the fake host root's tree and the fixture folder are the same
//! before and after.

use crate::fake_host::FakeHost;
use crate::support::fixture_path;
use std::path::{Path, PathBuf};

/// Markers planted in fixtures (tokens, passwords, secret files): no output may show them.
const SECRET_MARKERS: &[&str] = &["s3cr3t", "hunter2pw", "tok-3nvy"];

/// One run of the binary.
struct Case {
    name: &'static str,
    args: Vec<String>,
    env: Vec<(String, String)>,
    code: i32,
    /// Lines to show for a run that succeeds (its whole output would bury the point); errors
    /// show everything.
    grep: Option<&'static str>,
}

fn case(name: &'static str, args: &[&str], code: i32) -> Case {
    Case {
        name,
        args: args.iter().map(|s| s.to_string()).collect(),
        env: Vec::new(),
        code,
        grep: None,
    }
}

impl Case {
    fn env(mut self, k: &str, v: &str) -> Case {
        self.env.push((k.to_string(), v.to_string()));
        self
    }
    fn grep(mut self, pattern: &'static str) -> Case {
        self.grep = Some(pattern);
        self
    }
}

/// A fake host and a folder of fixture files beside it (outside the root), with `<T>` standing
/// for that folder in commands and snapshots.
struct Bench {
    host: FakeHost,
    files: PathBuf,
}

impl Bench {
    fn new() -> Bench {
        // A kubeconfig nothing listens behind: no case may get as far as the cluster.
        let host = FakeHost::new(&kubeconfig("https://127.0.0.1:9"));
        let files = host.dir.path().join("in");
        std::fs::create_dir_all(&files).unwrap();
        Bench { host, files }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.files.join(rel)
    }

    fn write(&self, rel: &str, text: &str) -> String {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }

    fn t(&self) -> String {
        self.files.display().to_string()
    }

    /// Everything a run could change: the host root and the fixture folder.
    fn snapshot(&self) -> String {
        format!("{}\n--- fixtures\n{}", self.host.tree(&[]), listing(&self.files))
    }

    /// Runs every case; returns the report to snapshot.
    fn run(&self, cases: Vec<Case>) -> String {
        let mut report = String::new();
        let t = self.t();
        for c in cases {
            let before = self.snapshot();
            let args: Vec<String> = c.args.iter().map(|a| a.replace("<T>", &t)).collect();
            let mut cmd = assert_cmd::Command::cargo_bin("kstrap").unwrap();
            for (k, _) in std::env::vars() {
                if k.starts_with("KSTRAP_") || k == "SUDO_USER" || k == "KUBECONFIG" {
                    cmd.env_remove(k);
                }
            }
            cmd.envs(self.host.envs()).env("COLUMNS", "100");
            for (k, v) in &c.env {
                cmd.env(k, v.replace("<T>", &t));
            }
            let out = cmd
                .args(&args)
                .timeout(std::time::Duration::from_secs(20))
                .output()
                .unwrap();
            let stdout = shown(&String::from_utf8_lossy(&out.stdout), &t);
            let stderr = shown(&String::from_utf8_lossy(&out.stderr), &t);
            let context = format!(
                "case {}: kstrap {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
                c.name,
                args.join(" ")
            );
            assert_eq!(out.status.code(), Some(c.code), "{context}");
            assert!(!stderr.contains("panicked"), "{context}");
            for m in SECRET_MARKERS {
                assert!(
                    !stdout.contains(m) && !stderr.contains(m),
                    "secret {m} shown; {context}"
                );
            }
            let json = args.windows(2).any(|w| w[0] == "-o" && w[1] == "json");
            if json {
                let docs: Vec<serde_json::Value> = serde_json::Deserializer::from_str(&stdout)
                    .into_iter::<serde_json::Value>()
                    .collect::<Result<_, _>>()
                    .unwrap_or_else(|e| panic!("stdout is not JSON ({e}); {context}"));
                assert_eq!(docs.len(), 1, "one JSON document; {context}");
                if c.code != 0 {
                    assert_eq!(docs[0]["exit_code"], c.code, "{context}");
                    assert!(docs[0]["error"].as_str().is_some_and(|e| !e.is_empty()), "{context}");
                }
            }
            if c.code != 0 {
                assert!(stderr.contains("error"), "an error says so on stderr; {context}");
            }
            assert_eq!(before, self.snapshot(), "nothing may be written; {context}");

            let shown_args: Vec<String> = c.args.iter().map(|a| shown(a, &t)).collect();
            report.push_str(&format!(
                "## {} (exit {})\n$ kstrap {}\n",
                c.name,
                c.code,
                shown_args.join(" ")
            ));
            for (k, v) in &c.env {
                report.push_str(&format!("  with {k}={}\n", shown(v, &t)));
            }
            let keep = |text: &str| -> String {
                match c.grep {
                    Some(p) => text
                        .lines()
                        .filter(|l| l.contains(p))
                        .map(|l| format!("{l}\n"))
                        .collect(),
                    None => text.to_string(),
                }
            };
            let (so, se) = (keep(&stdout), keep(&stderr));
            if !(so.trim().is_empty() || json && c.code != 0) {
                report.push_str(&format!("stdout:\n{}\n", so.trim_end()));
            }
            if json && c.code != 0 {
                report.push_str("stdout: one JSON document with error and exit_code\n");
            }
            if !se.trim().is_empty() {
                report.push_str(&format!("stderr:\n{}\n", se.trim_end()));
            }
            report.push('\n');
        }
        report
    }
}

/// Text as the snapshots show it: the fixture folder as `<T>`, the repository as `<repo>`.
fn shown(text: &str, t: &str) -> String {
    text.replace(t, "<T>").replace(env!("CARGO_MANIFEST_DIR"), "<repo>")
}

/// `name size` of every file under `dir`, sorted, to show the fixtures stay as they were.
fn listing(dir: &Path) -> String {
    let mut out = Vec::new();
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(rd) = std::fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            let rel = p.strip_prefix(base).unwrap().display().to_string();
            if meta.is_dir() {
                out.push(format!("{rel}/"));
                walk(base, &p, out);
            } else {
                out.push(format!("{rel} {}", meta.len()));
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out.join("\n")
}

fn kubeconfig(server: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\nusers:\n- name: u\n  user:\n    token: tok-3nvy-s3cr3t\ncurrent-context: x\n"
    )
}

fn fx(name: &str) -> String {
    fixture_path(name).display().to_string()
}

/// A big sparse file (over kstrap's 8 MiB input bound) at `rel`.
fn big_file(b: &Bench, rel: &str) -> String {
    let p = b.path(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    let f = std::fs::File::create(&p).unwrap();
    f.set_len(9 * 1024 * 1024).unwrap();
    p.display().to_string()
}

fn symlink_loop(b: &Bench, rel: &str) {
    let p = b.path(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&p, &p).unwrap();
}

// ---- flags ----------------------------------------------------------------------------------

#[test]
fn flags() {
    let b = Bench::new();
    let rtx = fx("rtx5090-96gb");
    let r = rtx.as_str();
    let max = u64::MAX.to_string();
    let m = max.as_str();
    let cases = vec![
        case("unknown flag", &["plan", "--no-such-flag"], 2),
        case("unknown flag, json", &["plan", "-o", "json", "--no-such-flag"], 2),
        case("unknown subcommand, json", &["-o", "json", "install"], 2),
        case("bad --distro", &["plan", "--facts", r, "--distro", "k8s"], 2),
        case(
            "bad --distro, json",
            &["-o", "json", "plan", "--facts", r, "--distro", "k8s"],
            2,
        ),
        case("bad --output", &["-o", "yaml", "plan"], 2),
        case(
            "--with unknown add-on, json",
            &["-o", "json", "plan", "--facts", r, "--with", "grafana"],
            2,
        ),
        case(
            "apply --timeout 0",
            &["apply", "--facts", r, "--timeout", "0", "--dry-run"],
            2,
        ),
        case(
            "apply --timeout u64::MAX",
            &["apply", "--facts", r, "--timeout", m, "--dry-run"],
            2,
        ),
        case(
            "apply --timeout a day and a second",
            &["apply", "--facts", r, "--timeout", "86401"],
            2,
        ),
        case(
            "apply --timeout negative",
            &["apply", "--facts", r, "--timeout", "-1"],
            2,
        ),
        case(
            "up --dry-run --timeout 0",
            &["up", "--dry-run", "--facts", r, "--timeout", "0"],
            2,
        ),
        case(
            "up --dry-run --timeout u64::MAX",
            &["up", "--dry-run", "--facts", r, "--timeout", m],
            2,
        ),
        case(
            "up --dry-run --timeout u64::MAX, json",
            &["-o", "json", "up", "--dry-run", "--facts", r, "--timeout", m],
            2,
        ),
        case(
            "up --timeout not a number",
            &["up", "--dry-run", "--facts", r, "--timeout", "5m"],
            2,
        ),
        case(
            "plan --cluster-timeout 0",
            &["plan", "--facts", r, "--cluster-timeout", "0"],
            2,
        ),
        case(
            "plan --cluster-timeout u64::MAX",
            &["plan", "--facts", r, "--cluster-timeout", m],
            2,
        ),
        case(
            "up --dry-run --cluster-timeout 0",
            &["up", "--dry-run", "--facts", r, "--cluster-timeout", "0"],
            2,
        ),
        case(
            "--cluster-timeout overflowing u64",
            &["plan", "--facts", r, "--cluster-timeout", "18446744073709551616"],
            2,
        ),
        case(
            "--release-mirror not http",
            &["plan", "--facts", r, "--release-mirror", "ftp://mirror.example"],
            2,
        ),
        case(
            "--release-mirror not http, credentials",
            &[
                "plan",
                "--facts",
                r,
                "--release-mirror",
                "ftp://u:hunter2pw@mirror.example",
            ],
            2,
        ),
        case(
            "--distro-version a channel name",
            &["plan", "--facts", r, "--distro-version", "stable"],
            2,
        ),
        case(
            "--distro-version of the other distribution",
            &["plan", "--facts", r, "--distro-version", "v1.35.3+k0s.0"],
            2,
        ),
        case("--airgap missing", &["plan", "--facts", r, "--airgap", "<T>/nope"], 2),
        case(
            "--airgap a file",
            &["plan", "--facts", r, "--airgap", &b.write("airgap-file", "x")],
            2,
        ),
        case("--profile unknown", &["plan", "--facts", r, "--profile", "rtx-9090"], 2),
        case("--stack unknown", &["plan", "--facts", r, "--stack", "nope"], 2),
        case(
            "--stack with a path",
            &["plan", "--facts", r, "--stack", "../voice-ai"],
            2,
        ),
        case(
            "--image not KEY=REF",
            &["plan", "--facts", r, "--stack", "imagepod", "--image", "API_IMAGE"],
            2,
        ),
        case(
            "--image empty key",
            &["plan", "--facts", r, "--stack", "imagepod", "--image", "=x:1"],
            2,
        ),
        case(
            "--image given twice",
            &[
                "plan",
                "--facts",
                r,
                "--stack",
                "imagepod",
                "--image",
                "API_IMAGE=a/b:1",
                "--image",
                "API_IMAGE=a/b:2",
            ],
            2,
        ),
        case(
            "--image undeclared key",
            &[
                "plan",
                "--facts",
                r,
                "--stack",
                "imagepod",
                "--image",
                "OTHER_IMAGE=a/b:1",
            ],
            2,
        ),
        case(
            "--image uppercase and a space",
            &[
                "plan",
                "--facts",
                r,
                "--stack",
                "imagepod",
                "--image",
                "API_IMAGE=NGINX:1.27 bad",
                "--image",
                "GPU_WORKER_IMAGE=a/w:1",
            ],
            2,
        ),
        case(
            "--image bad digest",
            &[
                "plan",
                "--facts",
                r,
                "--stack",
                "imagepod",
                "--image",
                "API_IMAGE=x@sha256:zz",
                "--image",
                "GPU_WORKER_IMAGE=a/w:1",
            ],
            2,
        ),
        case(
            "--image unpinned",
            &[
                "plan",
                "--facts",
                r,
                "--stack",
                "imagepod",
                "--image",
                "API_IMAGE=team/api",
                "--image",
                "GPU_WORKER_IMAGE=a/w:1",
            ],
            2,
        ),
        case(
            "--image :latest",
            &[
                "plan",
                "--facts",
                r,
                "--stack",
                "imagepod",
                "--image",
                "API_IMAGE=team/api:latest",
                "--image",
                "GPU_WORKER_IMAGE=a/w:1",
            ],
            2,
        ),
        case(
            "--image in up --dry-run, json",
            &[
                "-o",
                "json",
                "up",
                "--dry-run",
                "--facts",
                r,
                "--stack",
                "imagepod",
                "--image",
                "API_IMAGE=x@sha256:zz",
                "--image",
                "GPU_WORKER_IMAGE=a/w:1",
            ],
            2,
        ),
        case("completions for an unknown shell", &["completions", "tcsh"], 2),
        case(
            "up --dry-run with every switch and --timeout 0",
            &[
                "up",
                "--dry-run",
                "--facts",
                r,
                "--yes",
                "--upgrade",
                "--replace",
                "--timeout",
                "0",
            ],
            2,
        ),
    ];
    insta::assert_snapshot!("bad_input_flags", b.run(cases));
}

// ---- environment ----------------------------------------------------------------------------

#[test]
fn environment() {
    let b = Bench::new();
    let rtx = fx("rtx5090-96gb");
    let r = rtx.as_str();
    let cases = vec![
        case("KSTRAP_WITH unknown", &["plan", "--facts", r], 2).env("KSTRAP_WITH", "bogus"),
        case("KSTRAP_WITH unknown, json", &["-o", "json", "plan", "--facts", r], 2)
            .env("KSTRAP_WITH", "monitoring,bogus"),
        case("KSTRAP_DISTRO unknown, json", &["-o", "json", "plan", "--facts", r], 2).env("KSTRAP_DISTRO", "microk8s"),
        case("KSTRAP_PROFILE unknown", &["plan", "--facts", r], 2).env("KSTRAP_PROFILE", "nope"),
        case("KSTRAP_STACK unknown", &["plan", "--facts", r], 2).env("KSTRAP_STACK", "nope"),
        case("KSTRAP_PROFILES_DIR missing", &["plan", "--facts", r], 2).env("KSTRAP_PROFILES_DIR", "<T>/none"),
        case("KSTRAP_STACK_DIR missing", &["plan", "--facts", r], 2).env("KSTRAP_STACK_DIR", "<T>/none"),
        case(
            "KSTRAP_RELEASE_MIRROR with credentials, bad scheme",
            &["plan", "--facts", r],
            2,
        )
        .env("KSTRAP_RELEASE_MIRROR", "gopher://admin:hunter2pw@mirror.example"),
        case("KSTRAP_FACTS missing", &["plan"], 2).env("KSTRAP_FACTS", "<T>/facts.json"),
        case(
            "image from the environment not a reference",
            &["plan", "--facts", r, "--stack", "imagepod"],
            2,
        )
        .env("API_IMAGE", "Team/API:1")
        .env("GPU_WORKER_IMAGE", "a/w:1"),
        case(
            "image from the environment the placeholder",
            &["plan", "--facts", r, "--stack", "imagepod"],
            2,
        )
        .env("API_IMAGE", "kstrap.invalid/required/api:unset")
        .env("GPU_WORKER_IMAGE", "a/w:1"),
        case("KSTRAP_PROFILES_DIR a file", &["plan", "--facts", r], 2)
            .env("KSTRAP_PROFILES_DIR", &b.write("a-file", "x")),
    ];
    insta::assert_snapshot!("bad_input_environment", b.run(cases));
}

// ---- secrets --------------------------------------------------------------------------------

#[test]
fn secret_files() {
    let b = Bench::new();
    let rtx = fx("rtx5090-96gb");
    let r = rtx.as_str();
    let good = b.write("keys/livekit.txt", "kstrap: s3cr3t-livekit-value-0123456789abcdef\n");
    b.write("keys/empty.txt", "");
    std::fs::create_dir_all(b.path("keys/dir")).unwrap();
    symlink_loop(&b, "keys/loop");
    big_file(&b, "keys/big.txt");
    let mut cases = Vec::new();
    for (cmd, extra) in [("up", "--dry-run"), ("apply", "--dry-run")] {
        let base = |name: &'static str, flag: &str| {
            let mut args = vec![cmd, extra, "--facts", r, "--distro", "k3s", "--secret-file"];
            args.push(flag);
            case(name, &args, 2)
        };
        cases.push(base(
            if cmd == "up" {
                "up: missing file"
            } else {
                "apply: missing file"
            },
            "LIVEKIT_KEYS=<T>/keys/none.txt",
        ));
        cases.push(base(
            if cmd == "up" { "up: a folder" } else { "apply: a folder" },
            "LIVEKIT_KEYS=<T>/keys/dir",
        ));
        cases.push(base(
            if cmd == "up" { "up: no =" } else { "apply: no =" },
            "LIVEKIT_KEYS",
        ));
        cases.push(base(
            if cmd == "up" {
                "up: empty key"
            } else {
                "apply: empty key"
            },
            "=<T>/keys/livekit.txt",
        ));
        cases.push(base(
            if cmd == "up" {
                "up: empty path"
            } else {
                "apply: empty path"
            },
            "LIVEKIT_KEYS=",
        ));
        cases.push(base(
            if cmd == "up" {
                "up: undeclared key"
            } else {
                "apply: undeclared key"
            },
            "OPENAI_KEY=<T>/keys/livekit.txt",
        ));
        cases.push(base(
            if cmd == "up" {
                "up: empty file"
            } else {
                "apply: empty file"
            },
            "LIVEKIT_KEYS=<T>/keys/empty.txt",
        ));
        cases.push(base(
            if cmd == "up" {
                "up: a link in a loop"
            } else {
                "apply: a link in a loop"
            },
            "LIVEKIT_KEYS=<T>/keys/loop",
        ));
        cases.push(base(
            if cmd == "up" {
                "up: over 8 MiB"
            } else {
                "apply: over 8 MiB"
            },
            "LIVEKIT_KEYS=<T>/keys/big.txt",
        ));
    }
    cases.push(case(
        "up: a key given twice",
        &[
            "up",
            "--dry-run",
            "--facts",
            r,
            "--secret-file",
            &format!("LIVEKIT_KEYS={good}"),
            "--secret-file",
            &format!("LIVEKIT_KEYS={good}"),
        ],
        2,
    ));
    cases.push(case(
        "up: json, missing file",
        &[
            "-o",
            "json",
            "up",
            "--dry-run",
            "--facts",
            r,
            "--secret-file",
            "LIVEKIT_KEYS=<T>/keys/none.txt",
        ],
        2,
    ));
    cases.push(
        case(
            "up: a declared variable set but empty",
            &["up", "--dry-run", "--facts", r],
            2,
        )
        .env("LIVEKIT_KEYS", ""),
    );
    cases.push(
        case(
            "up: the Grafana password variable set but empty",
            &["up", "--dry-run", "--facts", r, "--with", "monitoring"],
            2,
        )
        .env("KSTRAP_GRAFANA_ADMIN_PASSWORD", ""),
    );
    // A good file passes the dry run and its value shows nowhere.
    cases.push(
        case(
            "up: a good file, dry run",
            &[
                "up",
                "--dry-run",
                "--facts",
                r,
                "--secret-file",
                &format!("LIVEKIT_KEYS={good}"),
            ],
            0,
        )
        .grep("livekit"),
    );
    let mut report = b.run(cases);
    // The kubeconfig up merges its context into is read by the run: a broken one stops the dry
    // run too, before anything is installed.
    std::fs::create_dir_all(b.host.root.join("home/tester/.kube")).unwrap();
    std::fs::write(
        b.host.root.join("home/tester/.kube/config"),
        "clusters: [\n  token: hunter2pw\n",
    )
    .unwrap();
    report.push_str(&b.run(vec![case(
        "up: ~/.kube/config is not YAML",
        &["up", "--dry-run", "--facts", r],
        2,
    )]));
    std::fs::write(b.host.root.join("home/tester/.kube/config"), "clusters: 7\n").unwrap();
    report.push_str(&b.run(vec![
            case(
                "up: ~/.kube/config clusters is not a list",
                &["up", "--dry-run", "--facts", r],
                2,
            ),
            case(
                "up: ~/.kube/config broken, not merged",
                &["up", "--dry-run", "--facts", r, "--no-merge-kubeconfig"],
                0,
            )
            .grep("kubeconfig"),
        ]));
    insta::assert_snapshot!("bad_input_secret_files", report);
}

// ---- profiles -------------------------------------------------------------------------------

const PROFILE: &str = "name: p
description: a test profile
priority: 5
distro: k3s
stack: voice-ai
requires:
  memory_gib: 4
  cpus: 2
  disk_gib: 10
recommends:
  memory_gib: 8
  cpus: 4
  disk_gib: 20
";

#[test]
fn profiles() {
    let b = Bench::new();
    let rtx = fx("rtx5090-96gb");
    let r = rtx.as_str();
    let mut cases = Vec::new();
    let mut one = |name: &'static str, text: &str| {
        let dir = format!("profiles/{}", cases.len());
        b.write(&format!("{dir}/p.yaml"), text);
        cases.push(case(
            name,
            &["plan", "--facts", r, "--profiles-dir", &format!("<T>/{dir}")],
            2,
        ));
    };
    one(
        "duplicate key",
        &PROFILE.replace("priority: 5\n", "priority: 5\npriority: 6\n"),
    );
    one("duplicate top key name", &format!("{PROFILE}name: q\n"));
    one("two documents", &format!("{PROFILE}---\n{PROFILE}"));
    one(
        "tab indentation",
        &PROFILE.replace("  memory_gib: 4", "\tmemory_gib: 4"),
    );
    one("unknown field", &format!("{PROFILE}colour: blue\n"));
    one("missing field", &PROFILE.replace("stack: voice-ai\n", ""));
    one(
        "cpus beyond u32",
        &PROFILE.replace("cpus: 2", "cpus: 99999999999999999999"),
    );
    one("cpus negative", &PROFILE.replace("cpus: 2", "cpus: -2"));
    one("cpus a word", &PROFILE.replace("cpus: 2", "cpus: two"));
    one(
        "memory not a number",
        &PROFILE.replace("memory_gib: 4", "memory_gib: [4]"),
    );
    one(
        "priority quoted word",
        &PROFILE.replace("priority: 5", "priority: high"),
    );
    one("name not its file", &PROFILE.replace("name: p", "name: q"));
    one("name with capitals", &PROFILE.replace("name: p", "name: P"));
    one("unknown distro", &PROFILE.replace("distro: k3s", "distro: k8s"));
    one("empty file", "");
    one("only a comment", "# nothing\n");
    one("a list, not a mapping", "- a\n- b\n");
    one("deeply nested", &format!("{}1{}", "[".repeat(5000), "]".repeat(5000)));
    one(
        "an anchor bomb",
        "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: [*f, *f, *f, *f, *f, *f, *f, *f, *f]\n",
    );
    std::fs::create_dir_all(b.path("profiles/bin")).unwrap();
    std::fs::write(b.path("profiles/bin/p.yaml"), [0xff, 0xfe, 0x00, 0x41]).unwrap();
    cases.push(case(
        "not UTF-8",
        &["plan", "--facts", r, "--profiles-dir", "<T>/profiles/bin"],
        2,
    ));
    big_file(&b, "profiles/big/p.yaml");
    cases.push(case(
        "over 8 MiB",
        &["plan", "--facts", r, "--profiles-dir", "<T>/profiles/big"],
        2,
    ));
    symlink_loop(&b, "profiles/loop/p.yaml");
    cases.push(case(
        "a link in a loop",
        &["plan", "--facts", r, "--profiles-dir", "<T>/profiles/loop"],
        2,
    ));
    std::fs::create_dir_all(b.path("profiles/dirfile/p.yaml")).unwrap();
    cases.push(case(
        "a folder named p.yaml",
        &["plan", "--facts", r, "--profiles-dir", "<T>/profiles/dirfile"],
        2,
    ));
    std::fs::create_dir_all(b.path("profiles/empty")).unwrap();
    cases.push(case(
        "no profile in the folder",
        &["plan", "--facts", r, "--profiles-dir", "<T>/profiles/empty"],
        2,
    ));
    cases.push(case(
        "folder missing",
        &["plan", "--facts", r, "--profiles-dir", "<T>/profiles/none"],
        2,
    ));
    let file = b.write("profiles/a-file", PROFILE);
    cases.push(case(
        "a file, not a folder",
        &["plan", "--facts", r, "--profiles-dir", &file],
        2,
    ));
    cases.push(case(
        "json, duplicate key",
        &["-o", "json", "plan", "--facts", r, "--profiles-dir", "<T>/profiles/0"],
        2,
    ));
    insta::assert_snapshot!("bad_input_profiles", b.run(cases));
}

// ---- facts ----------------------------------------------------------------------------------

#[test]
fn facts_files() {
    let b = Bench::new();
    let good = std::fs::read_to_string(fixture_path("rtx5090-96gb")).unwrap();
    let mut cases = Vec::new();
    let mut one = |name: &'static str, text: &str, code: i32| {
        let f = format!("facts/{}.json", cases.len());
        b.write(&f, text);
        cases.push(case(name, &["plan", "--facts", &format!("<T>/{f}")], code));
    };
    one("empty", "", 2);
    one("not JSON", "memory: 4\n", 2);
    one("a list", "[]", 2);
    one("null", "null", 2);
    one(
        "memory negative",
        &good.replacen("\"total_bytes\": ", "\"total_bytes\": -", 1),
        2,
    );
    one(
        "memory a string",
        &good.replacen("\"total_bytes\": ", "\"total_bytes\": \"lots\", \"x\": ", 1),
        2,
    );
    one(
        "memory beyond u64",
        &good.replacen("\"total_bytes\": ", "\"total_bytes\": 99999999999999999999999", 1),
        2,
    );
    one(
        "schema from the future",
        &good.replacen("\"schema_version\": ", "\"schema_version\": 99, \"_old\": ", 1),
        2,
    );
    one(
        "unsupported architecture",
        &good.replace("\"x86_64\"", "\"riscv64\""),
        3,
    );
    one("truncated", &good[..good.len() / 2], 2);
    one("trailing garbage", &format!("{good}\n}}"), 2);
    one(
        "detect document with broken facts",
        "{\"facts\": {\"schema_version\": 1}}",
        2,
    );
    std::fs::create_dir_all(b.path("facts/dir.json")).unwrap();
    cases.push(case("a folder", &["plan", "--facts", "<T>/facts/dir.json"], 2));
    cases.push(case("missing", &["plan", "--facts", "<T>/facts/none.json"], 2));
    symlink_loop(&b, "facts/loop.json");
    cases.push(case(
        "a link in a loop",
        &["detect", "--facts", "<T>/facts/loop.json"],
        2,
    ));
    big_file(&b, "facts/big.json");
    cases.push(case("over 8 MiB", &["detect", "--facts", "<T>/facts/big.json"], 2));
    cases.push(case(
        "json, unsupported architecture",
        &["-o", "json", "plan", "--facts", "<T>/facts/8.json"],
        3,
    ));
    cases.push(case(
        "up --dry-run, unsupported architecture",
        &["up", "--dry-run", "--facts", "<T>/facts/8.json"],
        3,
    ));
    insta::assert_snapshot!("bad_input_facts", b.run(cases));
}

// ---- stacks ---------------------------------------------------------------------------------

const STACK_YAML: &str = "name: demo
description: a test stack
namespace: demo
stages:
  - {dir: 00-base, name: base, timeout_s: 30, description: namespace}
  - {dir: 10-app, name: app, timeout_s: 30, description: app}
";

const APP: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: app
spec:
  selector: {matchLabels: {app: app}}
  template:
    metadata: {labels: {app: app}}
    spec:
      containers:
        - name: app
          image: nginx:1.27.3
          resources:
            requests: {cpu: 100m, memory: 64Mi}
            limits: {cpu: 500m, memory: 128Mi}
";

/// A stack `demo` in `<T>/stacks/<n>`: stack.yaml plus `extra`, and the app manifest `app`.
fn stack(b: &Bench, n: usize, extra: &str, app: &str) -> String {
    let dir = format!("stacks/{n}");
    b.write(&format!("{dir}/demo/stack.yaml"), &format!("{STACK_YAML}{extra}"));
    b.write(
        &format!("{dir}/demo/00-base/ns.yaml"),
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n",
    );
    b.write(&format!("{dir}/demo/10-app/app.yaml"), app);
    format!("<T>/{dir}")
}

#[test]
fn stacks() {
    let b = Bench::new();
    let laptop = fx("laptop-8gb-nogpu");
    let l = laptop.as_str();
    let mut cases = Vec::new();
    let mut n = 0;
    let mut one = |name: &'static str, extra: &str, app: &str| {
        n += 1;
        let dir = stack(&b, n, extra, app);
        cases.push(case(
            name,
            &["plan", "--facts", l, "--stack-dir", &dir, "--stack", "demo"],
            2,
        ));
    };
    let overlay =
        |body: &str| format!("profiles:\n  laptop-8gb:\n    Deployment/app:\n      containers:\n        app: {body}\n");
    one("stack.yaml duplicate key", "namespace: other\n", APP);
    one("stack.yaml two documents", &format!("---\n{STACK_YAML}"), APP);
    one("stack.yaml unknown field", "colour: blue\n", APP);
    one("stage timeout negative", "", APP);
    one(
        "manifest duplicate key",
        "",
        &APP.replace("  name: app\n", "  name: app\n  name: app2\n"),
    );
    one("image uppercase", "", &APP.replace("nginx:1.27.3", "NGINX:1.27"));
    one(
        "image with a space",
        "",
        &APP.replace("image: nginx:1.27.3", "image: \"nginx:1.27 bad\""),
    );
    one("image bad digest", "", &APP.replace("nginx:1.27.3", "x@sha256:zz"));
    one(
        "image short sha256",
        "",
        &APP.replace("nginx:1.27.3", "nginx@sha256:abcdef0123456789"),
    );
    one(
        "image empty path component",
        "",
        &APP.replace("nginx:1.27.3", "registry.example//nginx:1"),
    );
    one(
        "image tag with a slash-free colon mess",
        "",
        &APP.replace("nginx:1.27.3", "nginx:1.27:3"),
    );
    one("image no tag", "", &APP.replace("nginx:1.27.3", "nginx"));
    one("image :latest", "", &APP.replace("nginx:1.27.3", "nginx:latest"));
    one(
        "nvidia.com/gpu in base limits",
        "",
        &APP.replace(
            "limits: {cpu: 500m, memory: 128Mi}",
            "limits: {cpu: 500m, memory: 128Mi, nvidia.com/gpu: 1}",
        ),
    );
    one(
        "nvidia.com/gpu in base requests",
        "",
        &APP.replace(
            "requests: {cpu: 100m, memory: 64Mi}",
            "requests: {cpu: 100m, memory: 64Mi, nvidia.com/gpu: 1}",
        ),
    );
    one(
        "runtimeClassName in base",
        "",
        &APP.replace(
            "      containers:\n",
            "      runtimeClassName: nvidia\n      containers:\n",
        ),
    );
    one(
        "overlay request above the base limit",
        &overlay("{requests: {cpu: '2'}}"),
        APP,
    );
    one(
        "overlay limit below the base request",
        &overlay("{limits: {memory: 32Mi}}"),
        APP,
    );
    one(
        "overlay request above its own limit",
        &overlay("{requests: {cpu: '2'}, limits: {cpu: '1'}}"),
        APP,
    );
    one("overlay image not a reference", &overlay("{image: 'Nginx:1.27'}"), APP);
    one("overlay image unpinned", &overlay("{image: 'nginx'}"), APP);
    one(
        "overlay gpu under limits",
        &overlay("{limits: {nvidia.com/gpu: '1'}}"),
        APP,
    );
    one(
        "overlay unknown container",
        &overlay("{requests: {cpu: 100m}}").replace("app: {", "nope: {"),
        APP,
    );
    one("overlay bad quantity", &overlay("{requests: {cpu: lots}}"), APP);
    one(
        "Secret with data",
        "",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\ndata:\n  k: czNjcjN0\n",
    );
    one(
        "object name with capitals",
        "",
        &APP.replace("  name: app\n", "  name: App\n"),
    );
    one("manifest not a mapping", "", "- just\n- a list\n");
    one(
        "manifest deeply nested",
        "",
        &format!("a: {}1{}\n", "[".repeat(5000), "]".repeat(5000)),
    );

    // Files that cannot be read are errors, never skipped.
    n += 1;
    let dir = stack(&b, n, "", APP);
    symlink_loop(&b, &format!("stacks/{n}/demo/10-app/loop.yaml"));
    cases.push(case(
        "manifest a link in a loop",
        &["plan", "--facts", l, "--stack-dir", &dir, "--stack", "demo"],
        2,
    ));
    n += 1;
    let dir = stack(&b, n, "", APP);
    std::os::unix::fs::symlink(
        b.path("nowhere.yaml"),
        b.path(&format!("stacks/{n}/demo/10-app/gone.yaml")),
    )
    .unwrap();
    cases.push(case(
        "manifest a dangling link",
        &["plan", "--facts", l, "--stack-dir", &dir, "--stack", "demo"],
        2,
    ));
    n += 1;
    let dir = stack(&b, n, "", APP);
    big_file(&b, &format!("stacks/{n}/demo/10-app/big.yaml"));
    cases.push(case(
        "manifest over 8 MiB",
        &["plan", "--facts", l, "--stack-dir", &dir, "--stack", "demo"],
        2,
    ));
    n += 1;
    let dir = stack(&b, n, "", APP);
    std::fs::write(b.path(&format!("stacks/{n}/demo/10-app/bin.yaml")), [0xff, 0xfe]).unwrap();
    cases.push(case(
        "manifest not UTF-8",
        &["plan", "--facts", l, "--stack-dir", &dir, "--stack", "demo"],
        2,
    ));
    n += 1;
    let dir = stack(&b, n, "", APP);
    b.write(&format!("stacks/{n}/demo/10-app/notes.txt"), "x");
    cases.push(case(
        "a file that is not YAML",
        &["plan", "--facts", l, "--stack-dir", &dir, "--stack", "demo"],
        2,
    ));
    n += 1;
    let dir = stack(&b, n, "", APP);
    symlink_loop(&b, &format!("stacks/{n}/demo/20-loop"));
    cases.push(case(
        "a stage folder a link in a loop",
        &["plan", "--facts", l, "--stack-dir", &dir, "--stack", "demo"],
        2,
    ));
    n += 1;
    std::fs::create_dir_all(b.path(&format!("stacks/{n}"))).unwrap();
    cases.push(case(
        "--stack-dir holds no stack",
        &[
            "plan",
            "--facts",
            l,
            "--stack-dir",
            &format!("<T>/stacks/{n}"),
            "--stack",
            "demo",
        ],
        2,
    ));
    cases.push(case(
        "--stack-dir missing",
        &[
            "plan",
            "--facts",
            l,
            "--stack-dir",
            "<T>/stacks/none",
            "--stack",
            "demo",
        ],
        2,
    ));
    cases.push(case(
        "--stack-dir missing, default stack",
        &["plan", "--facts", l, "--stack-dir", "<T>/stacks/none"],
        2,
    ));
    cases.push(case(
        "json, image uppercase",
        &[
            "-o",
            "json",
            "plan",
            "--facts",
            l,
            "--stack-dir",
            "<T>/stacks/6",
            "--stack",
            "demo",
        ],
        2,
    ));
    cases.push(case(
        "apply --dry-run, image bad digest",
        &[
            "apply",
            "--dry-run",
            "--facts",
            l,
            "--distro",
            "k3s",
            "--stack-dir",
            "<T>/stacks/8",
            "--stack",
            "demo",
        ],
        2,
    ));
    // The negative timeout is written after the stack is made (stack() writes the default).
    std::fs::write(
        b.path("stacks/4/demo/stack.yaml"),
        STACK_YAML.replace("timeout_s: 30, description: app", "timeout_s: -5, description: app"),
    )
    .unwrap();
    insta::assert_snapshot!("bad_input_stacks", b.run(cases));
}

// ---- kubeconfigs ----------------------------------------------------------------------------

#[test]
fn kubeconfigs() {
    let b = Bench::new();
    let good = b.write("kube/good", &kubeconfig("https://127.0.0.1:9"));
    let broken = b.write(
        "kube/broken",
        "apiVersion: v1\nusers:\n- name: u\n  user:\n    token: tok-3nvy-s3cr3t\n  [broken\n",
    );
    let no_current = b.write(
        "kube/no-current",
        &kubeconfig("https://127.0.0.1:9").replace("current-context: x\n", ""),
    );
    std::fs::create_dir_all(b.path("kube/dir")).unwrap();
    big_file(&b, "kube/big");
    symlink_loop(&b, "kube/loop");
    let t = b.t();
    let missing = format!("{t}/kube/none");
    let cases = vec![
        case("--kubeconfig missing", &["status", "--kubeconfig", "<T>/kube/none"], 2),
        case("--kubeconfig a folder", &["status", "--kubeconfig", "<T>/kube/dir"], 2),
        case(
            "--kubeconfig broken YAML holding a token",
            &["status", "--kubeconfig", &broken],
            2,
        ),
        case(
            "--kubeconfig over 8 MiB",
            &["status", "--kubeconfig", "<T>/kube/big"],
            2,
        ),
        case(
            "--kubeconfig a link in a loop",
            &["status", "--kubeconfig", "<T>/kube/loop"],
            2,
        ),
        case(
            "--context unknown",
            &["status", "--kubeconfig", &good, "--context", "nope"],
            2,
        ),
        case("no current context", &["status", "--kubeconfig", &no_current], 2),
        case(
            "json, --context unknown",
            &["-o", "json", "status", "--kubeconfig", &good, "--context", "nope"],
            2,
        ),
        case("KUBECONFIG, every entry missing", &["status"], 2).env("KUBECONFIG", &format!("{missing}:{t}/kube/none2")),
        case("KUBECONFIG, a missing entry skipped, the next broken", &["status"], 2)
            .env("KUBECONFIG", &format!("{missing}:{broken}")),
        case(
            "KUBECONFIG, a missing entry skipped, context unknown",
            &["status", "--context", "nope"],
            2,
        )
        .env("KUBECONFIG", &format!("{missing}:{good}")),
        case("KUBECONFIG, two files, the second broken", &["status"], 2).env("KUBECONFIG", &format!("{good}:{broken}")),
        case(
            "apply --dry-run, KUBECONFIG entry a folder",
            &["apply", "--dry-run", "--facts", &fx("rtx5090-96gb"), "--distro", "k3s"],
            2,
        )
        .env("KUBECONFIG", &format!("{missing}:{t}/kube/dir")),
    ];
    insta::assert_snapshot!("bad_input_kubeconfigs", b.run(cases));
}

// ---- what a plan shows of credentials -------------------------------------------------------

#[test]
fn credentials_in_urls_never_show() {
    let b = Bench::new();
    let rtx = fx("rtx5090-96gb");
    let r = rtx.as_str();
    let mirror = "https://kstrap:hunter2pw@mirror.example/gh";
    let cases = vec![
        case("plan, human", &["plan", "--facts", r, "--release-mirror", mirror], 0).grep("mirror.example"),
        case(
            "plan, json",
            &["-o", "json", "plan", "--facts", r, "--release-mirror", mirror],
            0,
        )
        .grep("mirror.example"),
        case("up --dry-run -vv", &["-vv", "up", "--dry-run", "--facts", r], 0)
            .env("KSTRAP_RELEASE_MIRROR", mirror)
            .grep("mirror.example"),
    ];
    insta::assert_snapshot!("bad_input_credentials", b.run(cases));
}

// ---- KUBECONFIG as kubectl reads it, for the context up merges ------------------------------

#[test]
fn up_merges_into_the_first_existing_kubeconfig_entry() {
    let b = Bench::new();
    std::fs::create_dir_all(b.host.root.join("home/tester/kube")).unwrap();
    std::fs::write(b.host.root.join("home/tester/kube/work"), "").unwrap();
    let rtx = fx("rtx5090-96gb");
    let run = |list: &str| {
        let out = assert_cmd::Command::cargo_bin("kstrap")
            .unwrap()
            .envs(b.host.envs())
            .env("KUBECONFIG", list)
            .args(["-o", "json", "plan", "--facts", &rtx])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let step = plan["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["action"]["type"] == "kubeconfig")
            .cloned()
            .unwrap();
        step["action"]["dest"].as_str().unwrap().to_string()
    };
    // The missing first entry is skipped, as kubectl skips it.
    assert_eq!(
        run("/home/tester/kube/none:/home/tester/kube/work"),
        "/home/tester/kube/work"
    );
    // None exists: the first entry, where kubectl would create it.
    assert_eq!(run("/home/tester/kube/a:/home/tester/kube/b"), "/home/tester/kube/a");
    // Empty entries are no entries: the home default.
    assert_eq!(run("::"), "/home/tester/.kube/config");
}

#[test]
fn a_priority_tie_is_explained_as_a_tie() {
    let b = Bench::new();
    for p in ["rtx-5090", "laptop-8gb", "cpu-fallback"] {
        let text =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("profiles/{p}.yaml"))).unwrap();
        let text = text
            .lines()
            .map(|l| if l.starts_with("priority:") { "priority: 30" } else { l })
            .collect::<Vec<_>>()
            .join("\n");
        b.write(&format!("tie/{p}.yaml"), &text);
    }
    let out = assert_cmd::Command::cargo_bin("kstrap")
        .unwrap()
        .envs(b.host.envs())
        .args([
            "plan",
            "--facts",
            &fx("rtx5090-96gb"),
            "--profiles-dir",
            &format!("{}/tie", b.t()),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("30 > 30"), "{text}");
    assert!(text.contains("same priority 30"), "{text}");
}
