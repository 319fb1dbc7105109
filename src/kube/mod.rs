//! Talking to the cluster: readiness rules now; server-side apply and the watch-based waiter later.

pub mod readiness;
