//! Integration tests, one binary split by area.

mod apply_e2e;
mod cli;
mod facts_fixtures;
mod invariants;
mod preflight;
mod profiles;
mod selection;
mod support;
