//! Integration tests, one binary split by area.

mod addons_e2e;
mod apply_e2e;
mod bad_input;
mod cli;
mod controller_standins;
#[path = "../support/counting.rs"]
pub mod counting;
mod down;
mod down_host;
mod down_hostile;
mod download;
mod facts_fixtures;
#[path = "../support/fake_host/mod.rs"]
pub mod fake_host;
mod fuzz;
mod glibc_floor;
mod gpu_e2e;
mod hosts;
mod invariants;
mod node_standin;
mod noop_e2e;
mod outage_e2e;
mod preflight;
mod profiles;
#[path = "../support/proxy/mod.rs"]
pub mod proxy;
#[path = "../support/real/mod.rs"]
pub mod real;
#[path = "../support/recording_proxy/mod.rs"]
pub mod recording_proxy;
#[path = "../support/release_server/mod.rs"]
pub mod release_server;
mod selection;
#[path = "../support/sim/mod.rs"]
pub mod sim;
mod sim_selftest;
mod stacks;
mod stacks_e2e;
mod status_e2e;
mod support;
mod up_e2e;
mod upstream;
mod voice_e2e;
