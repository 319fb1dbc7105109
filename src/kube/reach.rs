//! Whether the API server answers: a quick check before `apply` starts (so a cluster that is not
//! running is said at once, naming the server and the kubeconfig), and the bookkeeping that lets
//! a stage wait say when a server that answered before has gone silent ("the API server at … has
//! not answered for 12 s; retrying") while its watchers keep retrying.

use std::path::Path;
use std::time::{Duration, Instant};

/// After this long without an answer, and again after each further period, a wait says so.
pub const SILENCE_REPORT: Duration = Duration::from_secs(12);

/// How long the first check waits for an answer before calling the server unreachable.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// An error that means the server did not answer at all (refused, reset, DNS, TLS, timeout), as
/// opposed to an answer with an error status.
pub fn is_unanswered(e: &::kube::Error) -> bool {
    matches!(e, ::kube::Error::HyperError(_) | ::kube::Error::Service(_))
}

/// [`is_unanswered`], and a stream whose connection broke while it was read.
fn stream_unanswered(e: &::kube::Error) -> bool {
    is_unanswered(e) || matches!(e, ::kube::Error::ReadEvents(_))
}

/// [`is_unanswered`] for a watcher's errors.
pub fn watch_unanswered(e: &::kube::runtime::watcher::Error) -> bool {
    use ::kube::runtime::watcher::Error as W;
    match e {
        W::InitialListFailed(e) | W::WatchStartFailed(e) | W::WatchFailed(e) => stream_unanswered(e),
        W::WatchError(_) | W::NoResourceVersion => false,
    }
}

/// How long the server has been silent, and when that is worth saying.
#[derive(Debug, Default)]
pub struct Silence {
    since: Option<Instant>,
    /// How many [`SILENCE_REPORT`] periods of this silence were reported.
    reported: u32,
}

impl Silence {
    /// A request or watch got no answer.
    pub fn unanswered(&mut self, now: Instant) {
        if self.since.is_none() {
            self.since = Some(now);
            self.reported = 0;
        }
    }

    /// The server answered: the silence is over.
    pub fn answered(&mut self) {
        self.since = None;
        self.reported = 0;
    }

    /// How long the server has been silent, once per [`SILENCE_REPORT`] period (12 s, 24 s, …);
    /// `None` when there is nothing new to say.
    pub fn due(&mut self, now: Instant) -> Option<Duration> {
        let silent = now.saturating_duration_since(self.since?);
        let periods = (silent.as_secs() / SILENCE_REPORT.as_secs()) as u32;
        if periods > self.reported {
            self.reported = periods;
            Some(silent)
        } else {
            None
        }
    }
}

/// The silence that calls (not waits) meet while they retry: shared by every call of one
/// [`reporting_call_silence`] scope, so that concurrent calls say it once per period.
struct CallSilence {
    silence: std::sync::Mutex<Silence>,
    report: tokio::sync::mpsc::UnboundedSender<Duration>,
}

tokio::task_local! {
    static CALLS: std::sync::Arc<CallSilence>;
}

/// Runs `work`, calling `report` with the length of the silence each time the calls it makes
/// (through [`super::ops::retry`]) have met a server that has not answered for another
/// [`SILENCE_REPORT`] period. Outside such a scope, calls retry silently.
pub async fn reporting_call_silence<F: std::future::Future>(work: F, report: impl Fn(Duration)) -> F::Output {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let shared = std::sync::Arc::new(CallSilence {
        silence: std::sync::Mutex::new(Silence::default()),
        report: tx,
    });
    let work = CALLS.scope(shared, work);
    tokio::pin!(work);
    loop {
        tokio::select! {
            out = &mut work => return out,
            Some(silent) = rx.recv() => report(silent),
        }
    }
}

/// A call got no answer; says the silence when another period of it is due.
pub(crate) fn call_unanswered() {
    let _ = CALLS.try_with(|c| {
        let now = Instant::now();
        if let Ok(mut s) = c.silence.lock() {
            s.unanswered(now);
            if let Some(silent) = s.due(now) {
                let _ = c.report.send(silent);
            }
        }
    });
}

/// A call got an answer (of any kind): the silence is over.
pub(crate) fn call_answered() {
    let _ = CALLS.try_with(|c| {
        if let Ok(mut s) = c.silence.lock() {
            s.answered();
        }
    });
}

/// The words for a silent server: "the API server at URL has not answered for 12 s; retrying".
pub fn silence_message(server: &str, silent: Duration) -> String {
    format!(
        "the API server at {server} has not answered for {} s; retrying",
        silent.as_secs()
    )
}

/// The server URL of a kubeconfig (and context), for messages. `None` when it cannot be read
/// (the client could not be built either, and that error is said instead).
pub async fn server_url(kubeconfig: Option<&Path>, context: Option<&str>) -> Option<String> {
    let options = ::kube::config::KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    let config = match kubeconfig {
        Some(path) => {
            let kc = ::kube::config::Kubeconfig::read_from(path).ok()?;
            ::kube::Config::from_custom_kubeconfig(kc, &options).await.ok()?
        }
        None => ::kube::Config::from_kubeconfig(&options).await.ok()?,
    };
    Some(config.cluster_url.to_string().trim_end_matches('/').to_string())
}

/// Asks the server for its version once (bounded by [`PROBE_TIMEOUT`]). An answer of any kind,
/// even an error status, means it is there; no answer is an error in words that name the server
/// and the kubeconfig and say what to check.
pub async fn probe(client: &::kube::Client, server: &str, kubeconfig: &str) -> Result<(), String> {
    let unreachable = |why: String| {
        let fix = if why.contains("certificate") {
            "the kubeconfig's certificate authority does not match the server: take the kubeconfig again from this cluster (`sudo kstrap up` merges it as context kstrap)"
        } else {
            "is the cluster running? try `sudo systemctl status k3s` (k3s) or `sudo systemctl status k0scontroller` (k0s), and check that the kubeconfig's server address is this cluster's"
        };
        format!("cannot reach the API server at {server} (kubeconfig {kubeconfig}): {why}\n  fix: {fix}")
    };
    match tokio::time::timeout(PROBE_TIMEOUT, client.apiserver_version()).await {
        Err(_) => Err(unreachable(format!("no answer within {} s", PROBE_TIMEOUT.as_secs()))),
        Ok(Err(e)) if is_unanswered(&e) => Err(unreachable(chain(&e))),
        Ok(_) => Ok(()),
    }
}

/// An error and its sources in one line, each cause once.
fn chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let t = s.to_string();
        if !parts.iter().any(|p| p.contains(&t)) {
            parts.push(t);
        }
        source = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_is_reported_every_twelve_seconds_until_an_answer() {
        let t0 = Instant::now();
        let mut s = Silence::default();
        assert_eq!(s.due(t0 + Duration::from_secs(60)), None, "no silence yet");
        s.unanswered(t0);
        s.unanswered(t0 + Duration::from_secs(5));
        assert_eq!(s.due(t0 + Duration::from_secs(11)), None);
        assert_eq!(s.due(t0 + Duration::from_secs(12)), Some(Duration::from_secs(12)));
        assert_eq!(s.due(t0 + Duration::from_secs(13)), None, "once per period");
        assert_eq!(s.due(t0 + Duration::from_secs(25)), Some(Duration::from_secs(25)));
        s.answered();
        assert_eq!(s.due(t0 + Duration::from_secs(40)), None);
        s.unanswered(t0 + Duration::from_secs(40));
        assert_eq!(s.due(t0 + Duration::from_secs(52)), Some(Duration::from_secs(12)));
    }

    #[test]
    fn the_message_names_the_server() {
        assert_eq!(
            silence_message("https://127.0.0.1:6443", Duration::from_millis(12_400)),
            "the API server at https://127.0.0.1:6443 has not answered for 12 s; retrying"
        );
    }

    #[tokio::test]
    async fn a_server_that_is_not_there_is_named_with_the_kubeconfig() {
        // A port nothing listens on: bind, learn the port, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config");
        std::fs::write(
            &path,
            format!("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\nusers:\n- name: u\n  user:\n    token: s3cr3t\ncurrent-context: x\n"),
        )
        .unwrap();
        let server = server_url(Some(&path), None).await.unwrap();
        assert_eq!(server, format!("http://127.0.0.1:{port}"));
        let client = crate::kube::client_from(Some(&path), None).await.unwrap();
        let started = Instant::now();
        let e = probe(&client, &server, "/k/config").await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(3), "fails fast");
        assert!(e.contains(&format!("API server at http://127.0.0.1:{port}")), "{e}");
        assert!(e.contains("kubeconfig /k/config"), "{e}");
        assert!(e.contains("is the cluster running?"), "{e}");
        assert!(!e.contains("s3cr3t"), "{e}");
    }
}
