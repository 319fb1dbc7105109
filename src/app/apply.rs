//! `kstrap apply`: apply a stack to the cluster of the current kubeconfig, stage by stage, wait
//! until each stage is ready, prune what left the stack, and report.
//!
//! Settings are resolved before any cluster call: the stack (named, or the chosen profile's),
//! the secrets it declares (from `--secret-file KEY=PATH` or the environment variable KEY; never
//! printed), the options. The engine (`crate::kube::engine`) runs on a tokio runtime made here;
//! its errors map to exit codes 4 (timed out), 2 (bad kubeconfig or manifests) and 1.

use super::{Exit, Failure, gather_facts, load_profiles, select_error};
use crate::cli::{ApplyArgs, GlobalArgs};
use crate::kube::{ApplyError, ApplyOptions, apply_stack, client_from};
use crate::profile::{self, Overrides};
use crate::stack::{self, Stack};
use crate::ui::Printer;
use crate::ui::stage_progress::{self, Mode, StageProgress};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

pub fn run(global: &GlobalArgs, args: &ApplyArgs, printer: &Printer) -> Result<Exit, Failure> {
    let stack = load_stack(global, args)?;
    let extra = secret_objects(&stack, &args.secret_files, &|k| std::env::var(k).ok())?;
    let opts = options(args)?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::failed(format!("cannot start the async runtime: {e}")))?;
    let progress = StageProgress::new(Mode::for_printer(printer), printer.verbosity, opts.dry_run);
    let result = runtime.block_on(async {
        let client = client_from(args.kube.kubeconfig.as_deref(), args.kube.context.as_deref()).await?;
        apply_stack(client, &stack, extra, &opts, &progress).await
    });
    drop(progress);

    match result {
        Ok(report) => {
            if printer.json_mode() {
                printer.json(&json!({ "ok": true, "report": report }));
            } else {
                printer.stdout(&stage_progress::report(&report, printer.verbosity));
            }
            Ok(Exit::Ok)
        }
        Err(e) => {
            let exit = exit_of(&e);
            printer.error(&stage_progress::failure(&e));
            if printer.json_mode() {
                printer.json(&failure_json(&stack.name, &e));
            }
            Ok(exit)
        }
    }
}

fn exit_of(e: &ApplyError) -> Exit {
    match e.exit_code() {
        4 => Exit::Timeout,
        2 => Exit::Usage,
        _ => Exit::Failed,
    }
}

/// The one JSON document on stdout when applying failed.
fn failure_json(stack: &str, e: &ApplyError) -> Value {
    let (kind, stage) = match e {
        ApplyError::Timeout { stage, .. } => ("timeout", Some(stage.as_str())),
        ApplyError::Failed { stage, .. } => ("failed", Some(stage.as_str())),
        ApplyError::Interrupted { stage, .. } => ("interrupted", Some(stage.as_str())),
        ApplyError::Conflict { .. } => ("conflict", None),
        ApplyError::Kubeconfig { .. } => ("kubeconfig", None),
        ApplyError::UnknownKind { .. } => ("unknown_kind", None),
        ApplyError::Invalid { .. } => ("invalid", None),
        ApplyError::Inventory { .. } => ("inventory", None),
        ApplyError::Api { .. } => ("api", None),
        ApplyError::Network { .. } => ("network", None),
    };
    json!({
        "ok": false,
        "stack": stack,
        "error": kind,
        "stage": stage,
        "message": e.to_string(),
        "exit_code": e.exit_code(),
        "not_ready": e.diagnoses(),
    })
}

/// The named stack, or the one of the profile chosen for this host (or named by --profile).
fn load_stack(global: &GlobalArgs, args: &ApplyArgs) -> Result<Stack, Failure> {
    let name = match &args.stack {
        Some(name) => name.clone(),
        None => {
            let facts = gather_facts(global)?;
            let profiles = load_profiles(global)?;
            // The cluster may be another machine: a named profile is taken as asked.
            let overrides = Overrides {
                profile: args.profile.clone(),
                distro: None,
                force: args.profile.is_some(),
            };
            let selection = profile::select(&facts, &profiles, &overrides).map_err(select_error)?;
            selection.profile.stack.clone()
        }
    };
    stack::load(&name, global.stack_dir.as_deref()).map_err(|e| Failure::usage(e.to_string()))
}

fn options(args: &ApplyArgs) -> Result<ApplyOptions, Failure> {
    if args.timeout == Some(0) {
        return Err(Failure::usage(
            "--timeout 0: give the seconds each stage may take, at least 1",
        ));
    }
    Ok(ApplyOptions {
        force_conflicts: args.force_conflicts,
        prune: !args.no_prune,
        stage_timeout: args.timeout.map(Duration::from_secs),
        dry_run: args.dry_run,
        ..ApplyOptions::default()
    })
}

/// The Secrets the stack declares, each key from `--secret-file KEY=PATH` or the environment
/// variable KEY. Errors name the flag, file or variable; values never appear in them.
pub(crate) fn secret_objects(
    stack: &Stack,
    secret_files: &[String],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Value>, Failure> {
    let declared: Vec<&str> = stack
        .secrets
        .iter()
        .flat_map(|s| s.keys.iter().map(String::as_str))
        .collect();
    let mut files: BTreeMap<String, PathBuf> = BTreeMap::new();
    for spec in secret_files {
        let Some((key, path)) = spec.split_once('=').filter(|(k, p)| !k.is_empty() && !p.is_empty()) else {
            return Err(Failure::usage(format!(
                "--secret-file {spec}: expected KEY=PATH, e.g. --secret-file LIVEKIT_KEYS=./livekit.txt"
            )));
        };
        if !declared.contains(&key) {
            return Err(Failure::usage(format!(
                "--secret-file {key}=…: stack {} declares no secret key {key} (it declares: {})",
                stack.name,
                if declared.is_empty() {
                    "none".to_string()
                } else {
                    declared.join(", ")
                }
            )));
        }
        files.insert(key.to_string(), PathBuf::from(path));
    }
    let mut out = Vec::new();
    for decl in &stack.secrets {
        let mut data = serde_json::Map::new();
        for key in &decl.keys {
            let value = match files.get(key) {
                Some(path) => {
                    let text = std::fs::read_to_string(path).map_err(|e| {
                        Failure::usage(format!("--secret-file {key}={}: cannot read it: {e}", path.display()))
                    })?;
                    // A trailing newline from an editor or `echo` is not part of the secret.
                    text.trim_end_matches(['\n', '\r']).to_string()
                }
                None => env(key).filter(|v| !v.is_empty()).ok_or_else(|| {
                    Failure::usage(format!(
                        "secret {} of stack {} needs {key} ({}): set the environment variable {key} or pass --secret-file {key}=PATH",
                        decl.name, stack.name, decl.description
                    ))
                })?,
            };
            data.insert(key.clone(), Value::String(value));
        }
        out.push(json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": { "name": decl.name, "namespace": stack.namespace },
            "type": "Opaque",
            "stringData": data,
        }));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::SecretDecl;

    fn stack() -> Stack {
        Stack {
            name: "demo".into(),
            description: String::new(),
            namespace: "demo".into(),
            stages: Vec::new(),
            profiles: Default::default(),
            secrets: vec![SecretDecl {
                name: "keys".into(),
                description: "API keys".into(),
                keys: vec!["API_KEY".into(), "OTHER".into()],
            }],
        }
    }

    #[test]
    fn secrets_come_from_files_then_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("k.txt");
        std::fs::write(&file, "from-file\n").unwrap();
        let spec = format!("API_KEY={}", file.display());
        let env = |k: &str| (k == "OTHER").then(|| "from-env".to_string());
        let out = secret_objects(&stack(), &[spec], &env).unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0]["metadata"]["name"], "keys");
        assert_eq!(out[0]["metadata"]["namespace"], "demo");
        assert_eq!(out[0]["stringData"]["API_KEY"], "from-file");
        assert_eq!(out[0]["stringData"]["OTHER"], "from-env");
    }

    #[test]
    fn bad_secret_input_names_the_flag_and_never_the_value() {
        let none = |_: &str| None;
        let e = secret_objects(&stack(), &["API_KEY".into()], &none).unwrap_err();
        assert_eq!(e.exit, Exit::Usage);
        assert!(e.message.contains("expected KEY=PATH"), "{}", e.message);

        let e = secret_objects(&stack(), &["NOPE=/x".into()], &none).unwrap_err();
        assert!(e.message.contains("declares no secret key NOPE"), "{}", e.message);
        assert!(e.message.contains("API_KEY, OTHER"), "{}", e.message);

        let e = secret_objects(&stack(), &["API_KEY=/does/not/exist".into()], &none).unwrap_err();
        assert!(e.message.contains("/does/not/exist"), "{}", e.message);

        let only_one = |k: &str| (k == "API_KEY").then(|| "s3cr3t".to_string());
        let e = secret_objects(&stack(), &[], &only_one).unwrap_err();
        assert!(
            e.message.contains("set the environment variable OTHER"),
            "{}",
            e.message
        );
        assert!(e.message.contains("--secret-file OTHER=PATH"), "{}", e.message);
        assert!(!e.message.contains("s3cr3t"), "{}", e.message);
    }

    #[test]
    fn options_follow_the_flags() {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from([
            "kstrap",
            "apply",
            "--timeout",
            "7",
            "--force-conflicts",
            "--no-prune",
            "--dry-run",
        ])
        .unwrap();
        let crate::cli::Command::Apply(args) = cli.command else {
            panic!("not apply")
        };
        let o = options(&args).unwrap();
        assert_eq!(o.stage_timeout, Some(Duration::from_secs(7)));
        assert!(o.force_conflicts && !o.prune && o.dry_run);
        assert_eq!(o.field_manager, "kstrap");
        assert_eq!(o.concurrency, 8);
        let cli = crate::cli::Cli::try_parse_from(["kstrap", "apply", "--timeout", "0"]).unwrap();
        let crate::cli::Command::Apply(args) = cli.command else {
            panic!("not apply")
        };
        assert_eq!(options(&args).unwrap_err().exit, Exit::Usage);
    }
}
