//! `kstrap import compose`: read the compose files, ask the cluster for infrastructure when
//! `--discover` says so, convert, write the stack folder, print the report.

use super::{Exit, Failure, load_profiles};
use crate::cli::{ComposeArgs, GlobalArgs, ImportArgs, ImportCommand};
use crate::import::{self, ImportError, Level, Options};
use crate::ui::Printer;
use serde_json::json;

pub fn run(global: &GlobalArgs, args: &ImportArgs, printer: &Printer) -> Result<Exit, Failure> {
    match &args.what {
        ImportCommand::Compose(c) => compose(global, c, printer),
    }
}

fn failure(e: ImportError) -> Failure {
    if e.is_input() {
        Failure::usage(e.to_string())
    } else {
        Failure::failed(e.to_string())
    }
}

fn compose(global: &GlobalArgs, args: &ComposeArgs, printer: &Printer) -> Result<Exit, Failure> {
    let profiles = load_profiles(global)?;
    let mut opts = Options {
        files: args.files.clone(),
        env_files: args.env_files.clone(),
        name: args.name.clone(),
        namespace: args.namespace.clone(),
        bind_mounts: args.bind_mounts,
        discovered: Vec::new(),
    };
    if !args.out.is_dir() {
        return Err(Failure::usage(format!(
            "--out {}: not a folder; create it first",
            args.out.display()
        )));
    }
    let env = |k: &str| std::env::var(k).ok();
    // A first pass tells the namespace (and checks the files) before the cluster is asked.
    let first = import::import(&opts, &env, &profiles).map_err(failure)?;
    if args.discover {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Failure::failed(format!("cannot start the async runtime: {e}")))?;
        let (kubeconfig, context) = (args.kube.kubeconfig.as_deref(), args.kube.context.as_deref());
        let found = runtime.block_on(async {
            let client = crate::kube::client_from(kubeconfig, context)
                .await
                .map_err(|e| Failure::usage(e.to_string()))?;
            import::discover::scan(client, &first.namespace).await.map_err(|e| {
                Failure::failed(format!(
                    "--discover: cannot list the Services of namespace {}: {e}",
                    first.namespace
                ))
            })
        })?;
        opts.discovered = found;
    }
    let imported = if args.discover {
        import::import(&opts, &env, &profiles).map_err(failure)?
    } else {
        first
    };
    let dir = import::write(&args.out, &imported).map_err(failure)?;
    if printer.json_mode() {
        printer.json(&json!({
            "stack": imported.name,
            "namespace": imported.namespace,
            "dir": dir.display().to_string(),
            "stack_dir": args.out.display().to_string(),
            "stages": imported.stages,
            "notes": imported.notes,
            "images": imported.images.iter().map(|(k, d)| json!({"key": k, "description": d})).collect::<Vec<_>>(),
            "secrets": imported.secrets.iter().map(|(k, g)| json!({"key": k, "generated": g})).collect::<Vec<_>>(),
        }));
        return Ok(Exit::Ok);
    }
    let mut out = format!(
        "Imported stack {} into {} (namespace {}).\n",
        imported.name,
        dir.display(),
        imported.namespace
    );
    out.push_str(&format!("Stages: {}\n", imported.stages.join(", ")));
    let warnings: Vec<&import::Note> = imported.notes.iter().filter(|n| n.level == Level::Warning).collect();
    if !warnings.is_empty() {
        out.push_str("\nWhat was not carried over as it is:\n");
        for n in warnings {
            out.push_str(&format!("  {n}\n"));
        }
    }
    if !imported.images.is_empty() {
        out.push_str("\nImages to name when applying (--image KEY=REF):\n");
        for (k, d) in &imported.images {
            out.push_str(&format!("  {k}: {d}\n"));
        }
    }
    if !imported.secrets.is_empty() {
        out.push_str("\nSecrets read when applying (environment variable or --secret-file KEY=PATH):\n");
        for (k, g) in &imported.secrets {
            out.push_str(&format!(
                "  {k}{}\n",
                if *g { " (generated when not given)" } else { "" }
            ));
        }
    }
    out.push_str(&format!(
        "\nNext: kstrap plan --stack-dir {0} --stack {1}\n      kstrap apply --stack-dir {0} --stack {1}\n",
        args.out.display(),
        imported.name
    ));
    printer.stdout(&out);
    Ok(Exit::Ok)
}
