//! Watches of the simulated API server (test double): newline-delimited JSON `WatchEvent`s over a
//! chunked HTTP/1.1 response, like kube-apiserver's watch cache: resume from a resourceVersion out
//! of a bounded history (older → an `ERROR` event carrying `410 Expired` inside a 200 stream),
//! synthetic ADDED events for "now" watches, selector transitions as ADDED/DELETED, periodic
//! BOOKMARKs, `timeoutSeconds`, `sendInitialEvents` (with the `k8s.io/initial-events-end`
//! bookmark), and the `EndWatchAfter`/`GoneOnWatch` faults.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::Response;
use hyper::body::Frame;
use serde_json::{Value, json};

use super::discovery::ResourceType;
use super::faults::Fault;
use super::http::{Body, matching, status_json};
use super::store::{Event, FieldSelector, LabelSelector, Shared};

pub struct WatchParams {
    pub rt: ResourceType,
    pub namespace: Option<String>,
    pub resource_version: Option<String>,
    pub bookmarks: bool,
    pub bookmark_interval: Duration,
    pub timeout: Option<Duration>,
    pub label: LabelSelector,
    pub field: FieldSelector,
    pub send_initial_events: bool,
}

impl WatchParams {
    fn selects(&self, obj: &Value) -> bool {
        self.label.matches(obj) && self.field.matches(obj)
    }

    fn translate(&self, ev: &Event) -> Option<(&'static str, Value)> {
        if ev.key.api_version != self.rt.api_version() || ev.key.kind != self.rt.kind {
            return None;
        }
        if let Some(ns) = &self.namespace
            && ev.key.namespace.as_deref() != Some(ns.as_str())
        {
            return None;
        }
        let now = self.selects(&ev.object);
        let etype = match ev.etype {
            "MODIFIED" => {
                let was = ev.prev.as_ref().is_some_and(|p| self.selects(p));
                match (was, now) {
                    (true, true) => "MODIFIED",
                    (false, true) => "ADDED",
                    (true, false) => "DELETED",
                    (false, false) => return None,
                }
            }
            other if now => other,
            _ => return None,
        };
        Some((etype, ev.object.clone()))
    }
}

fn line(etype: &str, object: &Value) -> Bytes {
    let mut b = serde_json::to_vec(&json!({"type": etype, "object": object})).unwrap_or_default();
    b.push(b'\n');
    Bytes::from(b)
}

struct OpenGuard(Arc<Shared>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open_watches.fetch_sub(1, Ordering::SeqCst);
    }
}

struct Stream {
    params: WatchParams,
    queue: VecDeque<(bool, Bytes)>,
    rx: tokio::sync::broadcast::Receiver<Arc<Event>>,
    last_rv: u64,
    deadline: Option<tokio::time::Instant>,
    next_bookmark: tokio::time::Instant,
    end_after: Option<u32>,
    sent: u32,
    done: bool,
    _guard: OpenGuard,
}

impl Stream {
    fn bookmark(&self, initial_end: bool) -> Bytes {
        let mut meta = json!({"resourceVersion": self.last_rv.to_string()});
        if initial_end {
            meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        line(
            "BOOKMARK",
            &json!({"kind": self.params.rt.kind, "apiVersion": self.params.rt.api_version(), "metadata": meta}),
        )
    }

    /// Count an object event; true when the EndWatchAfter fault says to close after it.
    fn count(&mut self, object_event: bool) {
        if object_event {
            self.sent += 1;
            if self.end_after.is_some_and(|n| self.sent >= n) {
                self.done = true;
            }
        }
    }

    async fn next(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        if let Some((obj_event, b)) = self.queue.pop_front() {
            self.count(obj_event);
            return Some(b);
        }
        loop {
            let deadline = self.deadline;
            let sleep_deadline = async move {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending::<()>().await,
                }
            };
            let bookmarks = self.params.bookmarks;
            let next_bm = self.next_bookmark;
            let bookmark_tick = async move {
                if bookmarks {
                    tokio::time::sleep_until(next_bm).await
                } else {
                    std::future::pending::<()>().await
                }
            };
            tokio::select! {
                _ = sleep_deadline => return None,
                _ = bookmark_tick => {
                    self.next_bookmark = tokio::time::Instant::now() + self.params.bookmark_interval;
                    return Some(self.bookmark(false));
                }
                ev = self.rx.recv() => match ev {
                    Ok(ev) => {
                        self.last_rv = self.last_rv.max(ev.rv);
                        if let Some((etype, obj)) = self.params.translate(&ev) {
                            self.count(true);
                            return Some(line(etype, &obj));
                        }
                    }
                    // Too slow a reader: close, the client resumes from its last resourceVersion.
                    Err(_) => return None,
                }
            }
        }
    }
}

pub fn start(shared: Arc<Shared>, params: WatchParams) -> Response<Body> {
    let mut queue: VecDeque<(bool, Bytes)> = VecDeque::new();
    let (rx, last_rv, end_after) = {
        let mut st = shared.lock();
        let rx = st.tx.subscribe();
        let end_after = st.faults.iter().find_map(|f| match f {
            Fault::EndWatchAfter { events } => Some(*events),
            _ => None,
        });
        let rv_param = params.resource_version.clone();
        let resume = rv_param.as_deref().filter(|r| *r != "0" && !params.send_initial_events);
        match resume {
            None => {
                for obj in matching(
                    &st,
                    &params.rt,
                    params.namespace.as_deref(),
                    &params.label,
                    &params.field,
                ) {
                    queue.push_back((true, line("ADDED", obj)));
                }
            }
            Some(rv) => {
                let gone_fault = st.faults.iter_mut().find_map(|f| match f {
                    Fault::GoneOnWatch { times } if *times > 0 => {
                        *times -= 1;
                        Some(())
                    }
                    _ => None,
                });
                match rv.parse::<u64>() {
                    Ok(n) if n >= st.history_floor && gone_fault.is_none() => {
                        for ev in st.history.iter().filter(|e| e.rv > n) {
                            if let Some((etype, obj)) = params.translate(ev) {
                                queue.push_back((true, line(etype, &obj)));
                            }
                        }
                    }
                    Ok(n) => {
                        let status = status_json(
                            410,
                            "Expired",
                            &format!("too old resource version: {n} ({})", st.history_floor.max(n + 1)),
                            None,
                        );
                        queue.push_back((false, line("ERROR", &status)));
                    }
                    Err(_) => {
                        let status = status_json(
                            400,
                            "BadRequest",
                            &format!("resourceVersion: Invalid value: {rv:?}: must be a valid resource version"),
                            None,
                        );
                        queue.push_back((false, line("ERROR", &status)));
                    }
                }
            }
        }
        (rx, st.rv, end_after)
    };
    shared.open_watches.fetch_add(1, Ordering::SeqCst);
    let errored = queue.iter().any(|(obj, _)| !obj);
    let mut stream = Stream {
        queue,
        rx,
        last_rv,
        deadline: params.timeout.map(|t| tokio::time::Instant::now() + t),
        next_bookmark: tokio::time::Instant::now() + params.bookmark_interval,
        end_after,
        sent: 0,
        done: false,
        params,
        _guard: OpenGuard(shared),
    };
    if stream.params.send_initial_events && !errored {
        let b = stream.bookmark(true);
        stream.queue.push_back((false, b));
    }
    let body_stream = futures::stream::unfold((stream, errored), |(mut s, errored)| async move {
        if errored && s.queue.is_empty() {
            return None;
        }
        let b = s.next().await?;
        Some((Ok::<_, std::convert::Infallible>(Frame::data(b)), (s, errored)))
    });
    let body = BodyExt::boxed_unsync(StreamBody::new(body_stream.boxed()));
    Response::builder()
        .status(200)
        .header("Content-Type", "application/json")
        .header("Transfer-Encoding", "chunked")
        .body(body)
        .unwrap_or_else(|_| Response::new(super::http::full("")))
}
