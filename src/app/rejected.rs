//! The re-run of `kstrap up` and `kstrap apply` clears the pods of kstrap's stacks that the
//! kubelet rejected at admission (`crate::kube::admission`: started after a reboot before the GPU
//! device plugin registered) before applying, and says which it deleted.

use crate::kube::admission;
use crate::ui::Printer;

/// Deletes the rejected pods of kstrap's stacks and says what it cleared. Not being able to look
/// is a warning, not a failure: the stack's wait then names any such pod itself.
pub(crate) async fn clear(client: &::kube::Client, printer: &Printer) -> Vec<admission::RejectedPod> {
    match admission::clear(client).await {
        Ok(cleared) => {
            // With -o json, stderr carries JSON lines only.
            if !printer.json_mode() {
                for r in &cleared {
                    printer.info(&admission::cleared_line(r));
                }
            }
            cleared
        }
        Err(e) => {
            if !printer.json_mode() {
                printer.warn(&format!(
                    "could not look for pods the kubelet rejected at admission: {e}"
                ));
            }
            Vec::new()
        }
    }
}
