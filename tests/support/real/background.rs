//! The stand-ins (node, controllers) and the fault proxy each run on a thread of their own with a
//! tokio runtime of their own, so that they keep running whichever runtime a test uses (or none),
//! and report over a channel whether they started. [`in_background`] is that, once.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

/// Stops a background service when dropped; [`Stop::detach`] lets it run for the whole process.
pub struct Stop(Option<tokio::sync::oneshot::Sender<()>>);

impl Stop {
    /// The service runs until the process ends.
    pub fn detach(mut self) {
        // Dropping the sender without sending closes the channel, which stops nothing.
        drop(self.0.take());
    }
}

impl Drop for Stop {
    fn drop(&mut self) {
        if let Some(stop) = self.0.take() {
            let _ = stop.send(());
        }
    }
}

/// Runs a service named `name` on its own thread and multi-thread runtime: `start` gets a client
/// of `kubeconfig`, sets up (an `Err` is reported as the failure to start) and returns the value
/// for the caller and the future that is the service's work. Returns once `start` has returned,
/// or fails when it did not within `within`.
pub fn in_background<T, S, Fut, Work>(
    name: &str,
    kubeconfig: &Path,
    within: Duration,
    start: S,
) -> Result<(T, Stop), String>
where
    T: Send + 'static,
    S: FnOnce(kube::Client) -> Fut + Send + 'static,
    Fut: Future<Output = Result<(T, Work), String>>,
    Work: Future<Output = ()>,
{
    let (tx, rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let kubeconfig = kubeconfig.to_path_buf();
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = tx.send(Err(format!("runtime: {e}")));
                    return;
                }
            };
            rt.block_on(async move {
                let client = match kstrap::kube::client_from(Some(&kubeconfig), None).await {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = tx.send(Err(format!("{}: {e}", kubeconfig.display())));
                        return;
                    }
                };
                let work = match start(client).await {
                    Ok((value, work)) => {
                        let _ = tx.send(Ok(value));
                        work
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        return;
                    }
                };
                tokio::select! {
                    _ = work => {}
                    // Sent only by a `Stop` dropped; a detached one closes the channel instead.
                    Ok(()) = stop_rx => {}
                }
            });
        })
        .map_err(|e| format!("{name}: thread: {e}"))?;
    let value = rx
        .recv_timeout(within)
        .map_err(|_| format!("{name} did not start within {} s", within.as_secs()))??;
    Ok((value, Stop(Some(stop_tx))))
}
