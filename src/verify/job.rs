//! The verification Job: one pod, no retries, the checker script given inline (no ConfigMap to
//! keep in step), the stack's resolved checks in its environment. Its pods carry
//! `app.kubernetes.io/name: kstrap-verify`, the label the stack's policies admit.

use super::{Checker, LABEL, NAME, Resolved};
use serde_json::{Value, json};

/// Label on the Job naming the stack it verifies.
pub const STACK_LABEL: &str = "kstrap.dev/verify-stack";

/// The Job for `stack` in `namespace` (a `generateName`: each run makes a new one).
pub fn job(stack: &str, namespace: &str, r: &Resolved) -> Value {
    let command = match r.checker {
        Checker::Python => json!(["python", "-c", super::script(Checker::Python)]),
        Checker::Sh => json!(["sh", "-c", super::script(Checker::Sh)]),
    };
    let env: Vec<Value> = r.env.iter().map(|(k, v)| json!({"name": k, "value": v})).collect();
    let labels = json!({LABEL: NAME, "app.kubernetes.io/managed-by": "kstrap", STACK_LABEL: stack});
    json!({
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"generateName": format!("{NAME}-"), "namespace": namespace, "labels": labels},
        "spec": {
            // One try: a failure is the answer, not something to retry.
            "backoffLimit": 0,
            "activeDeadlineSeconds": r.timeout_s,
            "template": {
                "metadata": {"labels": {LABEL: NAME, STACK_LABEL: stack}},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": false,
                    "enableServiceLinks": false,
                    "securityContext": {
                        "runAsNonRoot": true,
                        "runAsUser": 65532,
                        "runAsGroup": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"}
                    },
                    "containers": [{
                        "name": "check",
                        "image": r.image,
                        // The image is one the node already has (a service of the stack runs it).
                        "imagePullPolicy": "IfNotPresent",
                        "command": command,
                        "env": env,
                        // The report is the termination message; if the checker dies before it
                        // writes one, the kubelet takes the end of its output instead. The kubelet
                        // bind-mounts /dev/termination-log from a host file it chmods to 0666
                        // (kubernetes pkg/kubelet/kuberuntime/kuberuntime_container.go,
                        // `makeMounts`), so uid 65532 may write it under a read-only root.
                        "terminationMessagePolicy": "FallbackToLogsOnError",
                        "resources": {
                            "requests": {"cpu": "10m", "memory": "32Mi"},
                            "limits": {"cpu": "500m", "memory": "256Mi"}
                        },
                        "securityContext": {
                            "allowPrivilegeEscalation": false,
                            "readOnlyRootFilesystem": true,
                            "capabilities": {"drop": ["ALL"]}
                        }
                    }]
                }
            }
        }
    })
}
