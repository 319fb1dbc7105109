//! Integration tests, one binary split by area.

mod apply_e2e;
mod cli;
mod facts_fixtures;
mod invariants;
mod preflight;
mod profiles;
mod selection;
#[path = "../support/sim/mod.rs"]
pub mod sim;
mod sim_selftest;
mod support;
