//! The README of an imported stack: how to apply it, what the user gives, and the import report.

use super::service::{Image, Service};
use super::{Level, Note};

pub fn readme(
    name: &str,
    namespace: &str,
    services: &[Service],
    notes: &[Note],
    images: &[(String, String)],
    secrets: &[(String, bool)],
) -> String {
    let mut s = format!(
        "# {name}\n\nImported from Docker Compose by `kstrap import compose`, into namespace `{namespace}`.\n\n\
         ```\nkstrap plan  --stack-dir <this folder's parent> --stack {name}\nkstrap apply --stack-dir <this folder's parent> --stack {name}\n```\n\n\
         | service | workload | image | ports |\n|---|---|---|---|\n"
    );
    for sv in services {
        let kind = match sv.workload {
            super::service::Workload::Job => "Job",
            _ if sv.statefulset => "StatefulSet",
            _ => "Deployment",
        };
        let image = match &sv.image {
            Image::Given(i) => format!("`{i}`"),
            Image::Declared { key, .. } => format!("yours: `{key}`"),
        };
        let ports: Vec<String> = sv
            .ports
            .iter()
            .map(|p| match p.published.filter(|_| p.public()) {
                Some(h) => format!("{} `{}` (published on {h})", p.container, p.name),
                None => format!("{} `{}`", p.container, p.name),
            })
            .collect();
        s.push_str(&format!(
            "| `{}` | {kind} | {image} | {} |\n",
            sv.name,
            ports.join(", ")
        ));
    }
    if !images.is_empty() {
        s.push_str("\n## Images you name\n\nGive each with `--image KEY=REF` (a release tag or a digest) or the variable KEY:\n\n");
        for (k, d) in images {
            s.push_str(&format!("- `{k}`: {d}\n"));
        }
    }
    if !secrets.is_empty() {
        s.push_str("\n## Secrets\n\nNo secret value is in this folder. Each is read when the stack is applied from the variable of that name or `--secret-file KEY=PATH`; those marked generated are made up (32 letters and digits) when not given, and kept on re-runs.\n\n");
        for (k, g) in secrets {
            s.push_str(&format!(
                "- `{k}`{}\n",
                if *g { " (generated when not given)" } else { "" }
            ));
        }
    }
    s.push_str("\n## Security\n\nThe namespace denies all traffic by default and allows DNS; each service admits the services that depend on it, link to it or name it in a variable, on its ports, and may reach those it names, plus HTTP(S) outside the cluster. Published ports admit anyone (a LoadBalancer Service `<service>-public`; on k0s, which has no load balancer, it is left out: use `kubectl port-forward`). Pods run with RuntimeDefault seccomp, no privilege escalation, no service-account token, and only the capabilities an image that starts as root needs to step down to its user (none with a numeric `user:`). Every container has requests and limits (from `deploy.resources`, else defaults), scaled per profile to fit it.\n");
    if !notes.is_empty() {
        s.push_str("\n## Import report\n\n");
        for n in notes {
            let tag = match n.level {
                Level::Warning => "warning",
                Level::Refusal => "refused",
            };
            s.push_str(&format!(
                "- {tag}: {}{}: {} ({})\n",
                n.service.as_deref().map(|x| format!("{x}: ")).unwrap_or_default(),
                n.feature,
                n.what,
                n.at
            ));
        }
    }
    s
}
