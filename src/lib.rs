//! kstrap: detect the host, choose a profile, plan, and (later) execute a single-node Kubernetes
//! install with a local AI stack. See `../shared/design.md` for the architecture: pure facts →
//! selection → plan, then an executor that performs effects.

#![deny(clippy::print_stdout, clippy::print_stderr)]
// Nothing from outside the program may be unwrapped; tests may.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod addons;
pub mod app;
pub mod applyset;
pub mod budget;
pub mod checks;
pub mod cli;
pub mod distro;
pub mod env;
pub mod exec;
pub mod facts;
pub mod finding;
pub mod gpu;
pub mod import;
pub mod kube;
pub mod limits;
pub mod plan;
pub mod profile;
pub mod redact;
pub mod stack;
pub mod ui;
pub mod units;
pub mod verify;
pub mod yaml_words;
