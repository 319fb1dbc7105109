//! Integration tests, one binary split by area.

mod addons_e2e;
mod apply_e2e;
mod bad_input;
mod cli;
mod controller_standins;
mod data_dir;
mod databases;
mod databases_e2e;
mod down;
mod down_host;
mod down_hostile;
mod download;
mod facts_fixtures;
#[path = "../support/fake_host/mod.rs"]
pub mod fake_host;
mod fuzz;
mod glibc_floor;
mod gpu_driver;
mod gpu_e2e;
mod gpu_images;
mod hosts;
mod import_compose;
mod import_e2e;
mod invariants;
mod join_e2e;
mod join_hosts;
#[path = "../support/k3s_supervisor/mod.rs"]
pub mod k3s_supervisor;
mod kept_plan_e2e;
mod node_standin;
mod noop_e2e;
mod outage_e2e;
mod preflight;
mod profiles;
#[path = "../support/proxy/mod.rs"]
pub mod proxy;
#[path = "../support/real/mod.rs"]
pub mod real;
mod reboot_e2e;
#[path = "../support/release_server/mod.rs"]
pub mod release_server;
mod rerun_network;
mod selection;
mod stacks;
mod stacks_e2e;
mod status_e2e;
mod support;
mod up_e2e;
mod upgrade_plan;
mod upstream;
mod upstream_flags;
mod verify_checker;
mod verify_e2e;
#[path = "../support/voice_apis.rs"]
pub mod voice_apis;
mod voice_e2e;
mod vram_budget;
