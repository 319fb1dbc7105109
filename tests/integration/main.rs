//! Integration tests, one binary split by area.

mod cli;
mod facts_fixtures;
mod invariants;
mod preflight;
mod profiles;
mod selection;
mod stacks;
mod support;
