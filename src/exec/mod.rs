//! The executor: the only place that changes the host. It runs a `Plan`'s steps in order through
//! one host seam (file writes under a root, commands, systemctl), downloads with verification,
//! and reports progress through a small trait the CLI implements.
pub mod download;
